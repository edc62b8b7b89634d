//! `check.integration.oci.pull`: may we pull the test image.
//!
//! Owns the verdict on pulling: the manifest of `test_repository:test_tag` is looked up as
//! a pulling client does (HEAD with every manifest media type in `Accept`, scope pull; a
//! bounded GET when the registry sends no digest on HEAD, refuses the HEAD without a
//! body, or answers it with something that is not a manifest). A manifest only GET can
//! fetch is a warning: containerd resolves with HEAD. Then, unless `pull_blob = false`,
//! it downloads what a client downloads next, once per round: the manifest (for an index,
//! the one of `pull_platform`) and its config blob, following redirects to storage or CDN
//! hosts without credentials, and verifies the blob's digest ([`blob_step`]). It downloads
//! no layer.

use super::{CheckContext, CheckKind, CheckResult, Reason, Status, refused};
use std::time::Duration;

use crate::client::{Landed, RequestError};
use crate::config::Target;
use crate::distribution::{
    Answer, BlobFetch, BlobRef, Class, Digest, Lookup, ManifestRef, Reference,
};

const KIND: CheckKind = CheckKind::Pull;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.test_repository;
    let image = format!("{repo}:{}", target.test_tag);
    let anonymous = match cx.anonymous(KIND).await {
        Ok(anonymous) => anonymous,
        Err(failed) => return failed,
    };
    let lookup = match cx
        .api()
        .resolve_manifest(repo, &Reference::Tag(&target.test_tag))
        .await
    {
        Ok(lookup) => lookup,
        Err(e) => return CheckResult::from_request_error(KIND, &format!("pull {image}"), &e),
    };
    match lookup {
        Lookup::Found(found) => {
            let mut result = match &found.head_refused {
                None => CheckResult::new(
                    KIND,
                    Status::Pass,
                    Reason::Ok,
                    format!("the test image {image} can be pulled"),
                ),
                Some(head) => CheckResult::new(
                    KIND,
                    Status::Warn,
                    Reason::Nonconformant,
                    format!(
                        "the test image {image} can be pulled with GET, but HEAD of its manifest was refused ({head}): clients that resolve with HEAD (containerd, so Kubernetes nodes, and nerdctl) fail to pull, while docker and skopeo, which GET, succeed; fix the registry or the proxy in front of it so HEAD answers as GET does"
                    ),
                )
                .with_evidence("head_answer", head.clone()),
            }
            .with_http_status(found.status);
            if let Some(digest) = &found.digest {
                result = result.with_evidence("digest", digest.as_str());
            }
            if found.digest_computed && found.digest.is_some() {
                result = result.with_evidence(
                    "digest_source",
                    "computed from the manifest: the registry sent no Docker-Content-Digest on HEAD",
                );
            }
            if let Some(media_type) = &found.media_type {
                result = result.with_evidence("media_type", media_type.clone());
            }
            if target.pull_blob {
                result = blob_step(target, cx, &found, anonymous, result).await;
            }
            result
        }
        Lookup::Refused(answer, resp) => {
            let mut result = refused(
                KIND,
                &answer,
                cx.acting(anonymous),
                &format!("pulling {image}"),
                repo,
            );
            result.api_version = resp.api_version();
            result
        }
    }
}

/// The second half of a pull: the config blob of the image `found` names (see
/// `Api::pull_config_blob`). `resolved` is the passing result of the manifest lookup; it is
/// returned with the blob's evidence when the download works, and replaced by the failure
/// when it does not. A redirect's target is named as the host that failed, never the registry.
pub(crate) async fn blob_step(
    target: &Target,
    cx: &CheckContext,
    found: &ManifestRef,
    anonymous: bool,
    resolved: CheckResult,
) -> CheckResult {
    let words = BlobWords {
        target,
        cx,
        anonymous,
        image: format!("{}:{}", target.test_repository, target.test_tag),
        registry: cx.api().base_url().origin().ascii_serialization(),
    };
    let reference = match &found.digest {
        Some(digest) => Reference::Digest(digest),
        None => Reference::Tag(&target.test_tag),
    };
    let fetched = match cx
        .api()
        .pull_config_blob(&target.test_repository, &reference, &target.pull_platform)
        .await
    {
        Ok(fetched) => fetched,
        Err(e) => {
            return CheckResult::from_request_error(
                KIND,
                &format!("downloading the manifest of {}", words.image),
                &e,
            );
        }
    };
    match fetched {
        BlobFetch::Fetched {
            blob,
            landed,
            bytes,
            verified,
            duration,
        } => words.fetched(resolved, &blob, &landed, bytes, verified, duration),
        BlobFetch::TooLarge { blob, size } => {
            let r = resolved.with_evidence(
                "blob",
                format!(
                    "not downloaded: the config blob is {size} bytes, more than the {} bytes a check downloads",
                    crate::client::MAX_BODY_BYTES
                ),
            );
            words.with_blob(r, &blob)
        }
        BlobFetch::NoConfig(why) => {
            resolved.with_evidence("blob", format!("not downloaded: {why}"))
        }
        BlobFetch::ManifestRefused { answer, response } => {
            let mut r = words.manifest_refused(&answer);
            r.api_version = response.api_version();
            r
        }
        BlobFetch::Refused {
            blob,
            landed,
            answer,
            duration,
        } => {
            let mut r = words.blob_refused(&blob, &landed, &answer);
            r.http_status = Some(answer.status);
            took(r, duration)
        }
        BlobFetch::Failed {
            blob,
            landed,
            error,
            duration,
        } => took(words.failed(&blob, &landed, &error), duration),
        BlobFetch::Mismatch {
            blob,
            landed,
            actual,
            duration,
        } => took(words.mismatch(&blob, &landed, &actual), duration),
    }
}

/// `r` with the time the blob's download took.
fn took(mut r: CheckResult, duration: Duration) -> CheckResult {
    r.facts.blob_duration = Some(duration);
    r
}

/// What [`blob_step`] words its results with: the image, the registry, who acted.
struct BlobWords<'a> {
    target: &'a Target,
    cx: &'a CheckContext,
    anonymous: bool,
    image: String,
    /// The registry's origin, where a download that went nowhere else answered.
    registry: String,
}

impl BlobWords<'_> {
    /// `r` with the blob's evidence: its digest, the platform followed, any fallback.
    fn with_blob(&self, mut r: CheckResult, blob: &BlobRef) -> CheckResult {
        r = r.with_evidence("config_blob", blob.digest.as_str());
        if let Some(p) = &blob.platform {
            r = r.with_evidence("platform", p.clone());
        }
        if let Some(p) = &blob.platform_fallback {
            r = r.with_evidence(
                "platform_fallback",
                format!(
                    "the index has no {} manifest; followed {p}",
                    self.target.pull_platform
                ),
            );
        }
        r
    }

    /// Where the download answered or failed, and whether a redirect took it there.
    fn host_of(&self, landed: &Option<Landed>) -> (String, bool) {
        match landed {
            Some(l) if l.redirected => (l.origin.clone(), true),
            Some(l) => (l.origin.clone(), false),
            None => (self.registry.clone(), false),
        }
    }

    /// The blob cannot be downloaded from `host` (`what` happened there).
    fn unreachable(
        &self,
        blob: &BlobRef,
        host: &str,
        redirected: bool,
        what: String,
    ) -> CheckResult {
        let (whose, fix) = if redirected {
            (
                format!("{host}, where the registry redirected the download"),
                "allow that host in the firewall and proxy, and check the storage back-end",
            )
        } else {
            (
                format!("the registry ({host})"),
                "check the registry's storage back-end and its logs",
            )
        };
        let r = CheckResult::new(
            KIND,
            Status::Fail,
            Reason::BlobUnreachable,
            format!(
                "the manifest of {} resolves but its config blob {} cannot be downloaded from {whose}: {what}; every pull fails the same way: {fix}",
                self.image, blob.digest
            ),
        );
        self.with_blob(r, blob).with_evidence("blob_host", host)
    }

    /// The refusal of `answer`, worded for `doing`, as the pull's acting party met it.
    fn refused(&self, answer: &Answer, doing: &str) -> CheckResult {
        refused(
            KIND,
            answer,
            self.cx.acting(self.anonymous),
            doing,
            &self.target.test_repository,
        )
    }

    /// Downloaded: the manifest lookup's result with the blob's size, host and digest check.
    fn fetched(
        &self,
        mut r: CheckResult,
        blob: &BlobRef,
        landed: &Option<Landed>,
        bytes: usize,
        verified: bool,
        duration: Duration,
    ) -> CheckResult {
        let (host, redirected) = self.host_of(landed);
        let check = if verified {
            "its digest verified"
        } else {
            "its digest not verified (an algorithm other than sha256 and sha512)"
        };
        let via = if redirected {
            format!("{host} (redirected from the registry)")
        } else {
            host.clone()
        };
        r.message = format!(
            "{}: its config blob ({bytes} bytes) downloaded from {via}, {check}",
            r.message
        );
        r.facts.blob_duration = Some(duration);
        self.with_blob(r, blob).with_evidence("blob_host", via)
    }

    /// A manifest on the way to the blob was not handed over.
    fn manifest_refused(&self, answer: &Answer) -> CheckResult {
        let image = &self.image;
        match answer.class {
            // The HEAD found it: a GET that does not is the registry contradicting
            // itself, and a client's pull (which GETs) fails.
            Class::NotFound | Class::RepositoryUnknown => CheckResult::new(
                KIND,
                Status::Fail,
                Reason::UnexpectedStatus,
                format!(
                    "the manifest of {image} answers HEAD but its GET answered {}: clients GET it, so pulls fail",
                    answer.describe()
                ),
            )
            .with_http_status(answer.status),
            _ => self.refused(answer, &format!("downloading the manifest of {image}")),
        }
    }

    /// The blob's download answered something else than the blob.
    fn blob_refused(
        &self,
        blob: &BlobRef,
        landed: &Option<Landed>,
        answer: &Answer,
    ) -> CheckResult {
        let (host, redirected) = self.host_of(landed);
        if redirected {
            return self.unreachable(
                blob,
                &host,
                true,
                format!("it answered {}", answer.describe()),
            );
        }
        match answer.class {
            Class::NotFound | Class::RepositoryUnknown => self.unreachable(
                blob,
                &host,
                false,
                format!(
                    "it answered {}: the manifest names a blob its storage does not hold",
                    answer.describe()
                ),
            ),
            _ => self.with_blob(
                self.refused(
                    answer,
                    &format!("downloading the config blob of {}", self.image),
                ),
                blob,
            ),
        }
    }

    /// The blob's download got no usable answer.
    fn failed(&self, blob: &BlobRef, landed: &Option<Landed>, error: &RequestError) -> CheckResult {
        let (host, redirected) = self.host_of(landed);
        match error {
            // The registry's token service, the secrets or the proxy: their own reasons.
            RequestError::Transport { reason, .. }
                if !matches!(
                    reason,
                    Reason::ProxyUnreachable | Reason::ProxyAuthRequired | Reason::ProxyError
                ) =>
            {
                self.unreachable(blob, &host, redirected, error.to_string())
            }
            RequestError::BodyTooLarge { .. } => {
                self.unreachable(blob, &host, redirected, error.to_string())
            }
            _ => self.with_blob(
                CheckResult::from_request_error(
                    KIND,
                    &format!("downloading the config blob of {}", self.image),
                    error,
                ),
                blob,
            ),
        }
    }

    /// The blob's bytes hash to `actual`, not to its digest.
    fn mismatch(&self, blob: &BlobRef, landed: &Option<Landed>, actual: &Digest) -> CheckResult {
        let (host, _) = self.host_of(landed);
        let r = CheckResult::new(
            KIND,
            Status::Fail,
            Reason::BlobDigestMismatch,
            format!(
                "the config blob {} of {} downloaded from {host} hashes to {actual}: clients refuse bytes that do not match their digest, so pulls fail; something between (a proxy, a CDN) or the storage altered it",
                blob.digest, self.image
            ),
        )
        .with_evidence("blob_host", host);
        self.with_blob(r, blob)
    }
}
