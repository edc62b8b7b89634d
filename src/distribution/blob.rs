//! A pull's path to its config blob: the manifest, the wanted platform's manifest in an
//! index ([`pull_step`]), and the config blob itself, its redirects followed one by one
//! with credentials only on the registry's origin and its digest verified
//! ([`Api::pull_config_blob`] → [`BlobFetch`]); and the config blob the mount probe needs
//! ([`Api::config_blob`], [`manifest_links`]). It does not word results.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Landed, MAX_BODY_BYTES, Request, RequestError, Response};

use super::{Answer, Api, Digest, Reference, Scope, same_origin};

/// The redirects a blob download follows, as many as clients (and reqwest) do.
const MAX_BLOB_REDIRECTS: usize = 5;

/// The config blob a pull downloads: its digest, and which manifest named it.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: Digest,
    /// The platform followed in an index, or `None` for a single-platform manifest.
    pub platform: Option<String>,
    /// Set when the index had no manifest for the wanted platform and another was followed.
    pub platform_fallback: Option<String>,
}

/// What downloading the config blob of a pulled image found.
#[derive(Debug, Clone)]
pub enum BlobFetch {
    /// Downloaded whole from `landed`; `verified` unless its digest algorithm is one the
    /// exporter cannot compute (neither sha256 nor sha512).
    Fetched {
        blob: BlobRef,
        landed: Option<Landed>,
        bytes: usize,
        verified: bool,
        duration: Duration,
    },
    /// Downloaded, and its bytes hash to `actual`, not to its digest.
    Mismatch {
        blob: BlobRef,
        landed: Option<Landed>,
        actual: Digest,
        duration: Duration,
    },
    /// An answer that is not a success, from `landed` (the registry, or where it redirected).
    Refused {
        blob: BlobRef,
        landed: Option<Landed>,
        answer: Answer,
        duration: Duration,
    },
    /// No usable answer: `landed` says where it failed.
    Failed {
        blob: BlobRef,
        landed: Option<Landed>,
        error: RequestError,
        duration: Duration,
    },
    /// The descriptor says the blob is larger than the body bound: not downloaded.
    TooLarge { blob: BlobRef, size: u64 },
    /// A manifest on the way (the tag's, or the platform's in an index) was not handed over.
    ManifestRefused { answer: Answer, response: Response },
    /// A manifest on the way names no config blob the exporter can follow (why).
    NoConfig(String),
}

impl Api<'_> {
    /// The config blob of a manifest (of its first child, for an index).
    pub async fn config_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Result<Digest, String>, RequestError> {
        let mut digest = digest.clone();
        // An index is descended once: its first manifest has a config blob.
        for _ in 0..2 {
            let resp = self.get_manifest(repo, &Reference::Digest(&digest)).await?;
            if !resp.status.is_success() {
                return Ok(Err(format!(
                    "GET of the test manifest {digest} answered {}",
                    Answer::of(&resp).describe()
                )));
            }
            match manifest_links(&resp.body) {
                Err(why) => return Ok(Err(why)),
                Ok((Some(config), _)) => return Ok(Ok(config)),
                Ok((None, Some(child))) => digest = child,
                Ok((None, None)) => break,
            }
        }
        Ok(Err("the test manifest names no config blob to mount".into()))
    }

    /// Downloads the config blob of `repo` at `reference` as a pulling client does: GET the
    /// manifest; in an index, GET the manifest of `platform` (`os/arch[/variant]`; the
    /// first runnable one when it is missing); then GET its config blob with scope pull,
    /// following redirects to other hosts without credentials (reqwest drops
    /// `Authorization` when a redirect leaves the origin), bounded by [`MAX_BODY_BYTES`] and
    /// the registry's timeout, and verify its digest.
    pub async fn pull_config_blob(
        &self,
        repo: &str,
        reference: &Reference<'_>,
        platform: &str,
    ) -> Result<BlobFetch, RequestError> {
        // The same manifest digest as last time: its config blob is known.
        if let Reference::Digest(top) = reference
            && let Some(memo) = self.client.pull_memo(top.as_str(), platform)
            && let Some(digest) = Digest::parse(&memo.config)
        {
            let blob = BlobRef {
                digest,
                platform: memo.platform,
                platform_fallback: memo.fallback,
            };
            return self.fetch_within_limit(repo, blob, memo.config_size).await;
        }
        let mut resp = self.get_manifest(repo, reference).await?;
        let mut chosen = None;
        let mut fallback = None;
        // An index is descended at most twice (an index of indexes is allowed, not more).
        for _ in 0..3 {
            if !resp.status.is_success() {
                return Ok(BlobFetch::ManifestRefused {
                    answer: Answer::of(&resp),
                    response: resp,
                });
            }
            let step = match pull_step(&resp.body, platform) {
                Ok(step) => step,
                Err(why) => return Ok(BlobFetch::NoConfig(why)),
            };
            match step {
                PullStep::Config { digest, size } => {
                    if let Reference::Digest(top) = reference {
                        self.client.remember_pull(crate::client::PullMemo {
                            manifest: top.as_str().to_string(),
                            wanted: platform.to_string(),
                            config: digest.as_str().to_string(),
                            config_size: size,
                            platform: chosen.clone(),
                            fallback: fallback.clone(),
                        });
                    }
                    let blob = BlobRef {
                        digest,
                        platform: chosen,
                        platform_fallback: fallback,
                    };
                    return self.fetch_within_limit(repo, blob, size).await;
                }
                PullStep::Child {
                    digest,
                    platform: found,
                    exact,
                } => {
                    if !exact {
                        fallback = Some(found.clone());
                    }
                    chosen = Some(found);
                    resp = self.get_manifest(repo, &Reference::Digest(&digest)).await?;
                }
            }
        }
        Ok(BlobFetch::NoConfig(
            "the test image nests indexes deeper than clients follow".into(),
        ))
    }

    /// The config blob, unless the manifest gave it a size over [`MAX_BODY_BYTES`].
    async fn fetch_within_limit(
        &self,
        repo: &str,
        blob: BlobRef,
        size: Option<u64>,
    ) -> Result<BlobFetch, RequestError> {
        match size {
            Some(size) if size > MAX_BODY_BYTES as u64 => Ok(BlobFetch::TooLarge { blob, size }),
            _ => self.fetch_blob(repo, blob).await,
        }
    }

    /// GET of a blob, its redirects followed one by one (at most [`MAX_BLOB_REDIRECTS`]):
    /// on the registry's origin with its credentials, elsewhere without any.
    async fn fetch_blob(&self, repo: &str, blob: BlobRef) -> Result<BlobFetch, RequestError> {
        let scope = Scope::pull(repo);
        let started = Instant::now();
        let mut sent = self
            .send(
                Request::new(Method::GET, format!("v2/{repo}/blobs/{}", blob.digest))
                    .scope(scope.as_str())
                    .no_redirects(),
            )
            .await;
        let mut at = self
            .base_url()
            .join(&format!("v2/{repo}/blobs/{}", blob.digest))
            .ok();
        for _ in 0..MAX_BLOB_REDIRECTS {
            let next = match (&sent, &at) {
                (Ok(resp), Some(from)) if resp.status.is_redirection() => resp
                    .header("location")
                    .and_then(|l| from.join(l.trim()).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https")),
                _ => None,
            };
            let Some(next) = next else { break };
            sent = if same_origin(self.base_url(), next.as_str()).is_ok() {
                self.send(
                    Request::new(Method::GET, next.as_str())
                        .scope(scope.as_str())
                        .no_redirects(),
                )
                .await
            } else {
                self.client.send_elsewhere(&next, self.trail).await
            };
            at = Some(next);
        }
        let duration = started.elapsed();
        let landed = at.map(|url| Landed {
            origin: url.origin().ascii_serialization(),
            redirected: url.origin() != self.base_url().origin(),
        });
        let resp = match sent {
            Ok(resp) => resp,
            Err(error) => {
                return Ok(BlobFetch::Failed {
                    blob,
                    landed,
                    error,
                    duration,
                });
            }
        };
        if !resp.status.is_success() {
            return Ok(BlobFetch::Refused {
                blob,
                landed,
                answer: Answer::of(&resp),
                duration,
            });
        }
        let (actual, verified) = match blob.digest.as_str().split_once(':') {
            Some(("sha256", _)) => (Some(Digest::sha256_of(&resp.body)), true),
            Some(("sha512", _)) => (Some(Digest::sha512_of(&resp.body)), true),
            _ => (None, false),
        };
        match actual {
            Some(actual) if actual != blob.digest => Ok(BlobFetch::Mismatch {
                blob,
                landed,
                actual,
                duration,
            }),
            _ => Ok(BlobFetch::Fetched {
                blob,
                landed,
                bytes: resp.body.len(),
                verified,
                duration,
            }),
        }
    }
}

/// The next step of a pull from a manifest's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PullStep {
    /// An image manifest: its config blob.
    Config { digest: Digest, size: Option<u64> },
    /// An index: the child manifest for the platform; `exact` when it is the one wanted.
    Child {
        digest: Digest,
        platform: String,
        exact: bool,
    },
}

/// What a pull does next with this manifest body, wanting `platform` from an index as
/// docker and containerd do (an entry without a variant matches any wanted variant; an
/// `unknown/unknown` entry is an attestation, never run). Lenient on everything else.
pub(crate) fn pull_step(body: &[u8], platform: &str) -> Result<PullStep, String> {
    #[derive(Deserialize)]
    struct Platform {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    #[derive(Deserialize)]
    struct Descriptor {
        digest: String,
        size: Option<u64>,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Manifest {
        config: Option<Descriptor>,
        manifests: Option<Vec<Descriptor>>,
    }
    let manifest = serde_json::from_slice::<Manifest>(body)
        .map_err(|_| "the test manifest is not manifest JSON".to_string())?;
    if let Some(config) = manifest.config {
        let digest = Digest::parse(&config.digest)
            .ok_or("the test manifest's config digest is not a digest")?;
        return Ok(PullStep::Config {
            digest,
            size: config.size,
        });
    }
    let Some(children) = manifest.manifests else {
        return Err(
            "the test manifest has neither a config nor manifests (a schema 1 manifest?)".into(),
        );
    };
    let mut wanted = platform.split('/');
    let (os, arch, variant) = (wanted.next(), wanted.next(), wanted.next());
    let name = |p: &Option<Platform>| match p {
        Some(p) => {
            let mut n = format!(
                "{}/{}",
                p.os.as_deref().unwrap_or("?"),
                p.architecture.as_deref().unwrap_or("?")
            );
            if let Some(v) = &p.variant {
                n.push('/');
                n.push_str(v);
            }
            n.chars().take(60).collect()
        }
        None => "(no platform)".to_string(),
    };
    let runnable = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_none_or(|p| p.os.as_deref() != Some("unknown"))
    };
    let exact = children.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os.as_deref() == os
                && p.architecture.as_deref() == arch
                && (variant.is_none() || p.variant.is_none() || p.variant.as_deref() == variant)
        })
    });
    let (child, exact) = match exact {
        Some(child) => (child, true),
        None => (
            children
                .iter()
                .find(runnable)
                .ok_or("the test image's index lists no runnable manifest")?,
            false,
        ),
    };
    Ok(PullStep::Child {
        digest: Digest::parse(&child.digest).ok_or("an index entry's digest is not a digest")?,
        platform: name(&child.platform),
        exact,
    })
}

/// A manifest's config blob and, for an index, its first child manifest: what the mount
/// probe needs. Lenient on everything else.
pub(crate) fn manifest_links(body: &[u8]) -> Result<(Option<Digest>, Option<Digest>), String> {
    #[derive(Deserialize)]
    struct Descriptor {
        digest: String,
    }
    #[derive(Deserialize)]
    struct Manifest {
        config: Option<Descriptor>,
        manifests: Option<Vec<Descriptor>>,
    }
    let manifest = serde_json::from_slice::<Manifest>(body)
        .map_err(|_| "the test manifest is not manifest JSON".to_string())?;
    Ok((
        manifest.config.and_then(|c| Digest::parse(&c.digest)),
        manifest
            .manifests
            .and_then(|m| m.into_iter().next())
            .and_then(|d| Digest::parse(&d.digest)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_follows_the_wanted_platform_of_an_index() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:aa","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:bb","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:cc","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let child = |digest: &str, platform: &str, exact| PullStep::Child {
            digest: Digest::parse(digest).unwrap(),
            platform: platform.into(),
            exact,
        };
        assert_eq!(
            pull_step(index, "linux/amd64"),
            Ok(child("sha256:bb", "linux/amd64", true))
        );
        assert_eq!(
            pull_step(index, "linux/arm64/v8"),
            Ok(child("sha256:aa", "linux/arm64/v8", true))
        );
        assert_eq!(
            pull_step(index, "linux/arm64"),
            Ok(child("sha256:aa", "linux/arm64/v8", true))
        );
        // Missing: the first runnable entry, said to be a fallback.
        assert_eq!(
            pull_step(index, "windows/amd64"),
            Ok(child("sha256:aa", "linux/arm64/v8", false))
        );
        let only_attestations = br#"{"manifests":[{"digest":"sha256:cc","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        assert!(pull_step(only_attestations, "linux/amd64").is_err());
        assert_eq!(
            pull_step(
                br#"{"config":{"digest":"sha256:dd","size":7}}"#,
                "linux/amd64"
            ),
            Ok(PullStep::Config {
                digest: Digest::parse("sha256:dd").unwrap(),
                size: Some(7)
            })
        );
        assert!(pull_step(b"<html>", "linux/amd64").is_err());
        assert!(pull_step(br#"{"schemaVersion":1,"fsLayers":[]}"#, "linux/amd64").is_err());
    }
}
