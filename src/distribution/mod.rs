//! The OCI Distribution API, typed: the layer between `client` (how a request travels:
//! TLS, auth, bounds) and the checks (what an outcome means for a user).
//!
//! Owns the API's operations — [`Api::ping`], manifests ([`Api::head_manifest`],
//! [`Api::get_manifest`], [`Api::resolve_manifest`] with its GET fallback for registries
//! that omit `Docker-Content-Digest`), [`Api::referrers`], uploads ([`Api::start_upload`]
//! and [`UploadSession::cancel`], [`Api::mount`]) and the delete probes — plus the value
//! types (`types`) and the one interpretation of an answer (`answer`). It does not word
//! results, pick statuses or touch metrics; it imports nothing from `checks`.

mod answer;
mod types;

use answer::media_type;
pub use answer::{Answer, Class, ErrorCode, Foreign, OciError, insufficient_scope};
pub use types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Digest, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST,
    Reference, Scope,
};

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::client::{
    Landed, MAX_BODY_BYTES, RegistryClient, Request, RequestError, Response, TokenError, Trail,
};

/// A referrers list longer than this many pages is counted up to here: a registry that
/// paginates forever cannot hold a check.
const MAX_REFERRER_PAGES: usize = 10;

/// The redirects a blob download follows, as many as clients (and reqwest) do.
const MAX_BLOB_REDIRECTS: usize = 5;

/// The Distribution API of one registry, for one check run (its requests go to `trail`).
pub struct Api<'a> {
    client: &'a RegistryClient,
    trail: &'a Trail,
}

/// A manifest that was found, with its digest.
#[derive(Debug, Clone)]
pub struct ManifestRef {
    /// `None` only when HEAD sent no digest and the GET fallback got no manifest either.
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    /// The registry sent no usable `Docker-Content-Digest` on HEAD, so the digest was
    /// computed from a bounded GET of the manifest, as skopeo and regclient do.
    pub digest_computed: bool,
    /// The status of the answer that found it.
    pub status: u16,
    /// HEAD was refused without a body (401, 403, 404, 405) and GET found the manifest:
    /// the HEAD answer, described. Clients that resolve with HEAD (containerd) fail there.
    pub head_refused: Option<String>,
}

/// What looking up a manifest found.
// One per check run, moved once: boxing the refusal would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(ManifestRef),
    /// The registry did not hand the manifest over; the answer says why.
    Refused(Answer, Response),
}

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

/// What the referrers API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Referrers {
    /// An OCI image index: the API exists.
    Index {
        status: u16,
        count: u64,
        filters_applied: Option<String>,
        /// More pages than the bound were offered.
        truncated: bool,
        /// The `Content-Type` when it was not the OCI index type although the body is an
        /// index (Harbor 2.9–2.10 sends `application/json`, goharbor/harbor#19690).
        wrong_content_type: Option<String>,
    },
    /// Something that is not the API (a router 404, an HTML page, a sign-in page reached
    /// by redirect, a body that is no index): clients fall back to the tag schema.
    NotTheApi { status: u16, why: String },
    /// Refused or failed: 401, 403, 429, 5xx, ...
    Refused(Answer),
}

/// An upload session the registry opened (a 202 to a POST on `blobs/uploads/`).
#[derive(Debug, Clone)]
pub struct UploadSession {
    location: Option<String>,
    scope: Scope,
}

/// What became of an upload session the exporter opened.
#[derive(Debug, Clone)]
pub struct Cancel {
    pub cancelled: bool,
    /// Plain words for messages and evidence, e.g. "cancelled, HTTP 204".
    pub detail: String,
}

impl<'a> Api<'a> {
    pub fn new(client: &'a RegistryClient, trail: &'a Trail) -> Self {
        Api { client, trail }
    }

    pub fn base_url(&self) -> &Url {
        self.client.base_url()
    }

    /// Sends one request, recording it in the run's trail.
    pub async fn send(&self, request: Request) -> Result<Response, RequestError> {
        self.client.send(request, self.trail).await
    }

    /// `GET /v2/`, anonymous (reachability) or with the configured credentials.
    pub async fn ping(&self, anonymous: bool) -> Result<Response, RequestError> {
        let request = Request::new(Method::GET, "v2/");
        self.send(if anonymous {
            request.anonymous()
        } else {
            request
        })
        .await
    }

    fn manifest_request(method: Method, repo: &str, reference: &Reference<'_>) -> Request {
        Request::new(method, format!("v2/{repo}/manifests/{reference}"))
            .accept(MANIFEST_MEDIA_TYPES)
            .scope(Scope::pull(repo).as_str())
    }

    /// `HEAD` of a manifest with every manifest media type accepted, scope pull.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &Reference<'_>,
    ) -> Result<Response, RequestError> {
        self.send(Self::manifest_request(Method::HEAD, repo, reference))
            .await
    }

    /// `GET` of a manifest (body bounded by the client).
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference<'_>,
    ) -> Result<Response, RequestError> {
        self.send(Self::manifest_request(Method::GET, repo, reference))
            .await
    }

    /// Finds a manifest and its digest as a pulling client does: HEAD, and a bounded GET
    /// when the HEAD cannot be taken as it is:
    ///
    /// - the registry sends no usable `Docker-Content-Digest` (which the spec only says
    ///   SHOULD be sent; Nexus and registry.redhat.io omit it: regclient/regclient#363,
    ///   distribution/distribution#3849): the digest is the SHA-256 of the GET's body;
    /// - HEAD is refused without a body (401, 403, 404, 405): HEAD is an optimisation, and
    ///   the GET's OCI error code and message say why (ECR's expired token is a bodiless
    ///   403 on HEAD); when GET works, [`ManifestRef::head_refused`] keeps the HEAD answer;
    /// - HEAD answered something that is not a manifest (an HTML page, another type): the
    ///   GET's body decides.
    pub async fn resolve_manifest(
        &self,
        repo: &str,
        reference: &Reference<'_>,
    ) -> Result<Lookup, RequestError> {
        let head = self.head_manifest(repo, reference).await?;
        let answer = Answer::manifest(&head, false);
        let head_refused = answer.refused_without_body(&head);
        // A HEAD that found a manifest (its type says so, or it names none) stands even if
        // the GET for its digest fails; a HEAD success of another type leaves the verdict
        // to what GET returns.
        let head_found = answer.class == Class::Success && {
            let mt = media_type(&head);
            mt.is_empty() || MANIFEST_MEDIA_TYPES.contains(&mt.as_str())
        };
        if answer.class == Class::Success {
            if let Some(digest) = head.header("docker-content-digest").and_then(Digest::parse) {
                return Ok(Lookup::Found(ManifestRef {
                    digest: Some(digest),
                    media_type: content_type(&head),
                    digest_computed: false,
                    status: head.status.as_u16(),
                    head_refused: None,
                }));
            }
        } else if !head_refused && answer.class != Class::NotTheApi {
            return Ok(Lookup::Refused(answer, head));
        }
        let get = match self.get_manifest(repo, reference).await {
            Ok(get) => get,
            // The HEAD found the manifest: a failing GET does not undo that, it only
            // leaves the digest unknown.
            Err(_) if head_found => {
                return Ok(Lookup::Found(ManifestRef {
                    digest: None,
                    media_type: content_type(&head),
                    digest_computed: true,
                    status: head.status.as_u16(),
                    head_refused: None,
                }));
            }
            Err(e) => return Err(e),
        };
        let got = Answer::manifest(&get, true);
        if got.class != Class::Success {
            if head_found && got.class != Class::Malformed {
                // As above: the HEAD's manifest stands, its digest unknown.
                return Ok(Lookup::Found(ManifestRef {
                    digest: None,
                    media_type: content_type(&head),
                    digest_computed: true,
                    status: head.status.as_u16(),
                    head_refused: None,
                }));
            }
            return Ok(Lookup::Refused(got, get));
        }
        let sent = get.header("docker-content-digest").and_then(Digest::parse);
        Ok(Lookup::Found(ManifestRef {
            digest_computed: sent.is_none(),
            digest: Some(sent.unwrap_or_else(|| Digest::sha256_of(&get.body))),
            media_type: if answer.class == Class::Success {
                content_type(&head)
            } else {
                None
            }
            .or_else(|| content_type(&get)),
            status: get.status.as_u16(),
            head_refused: head_refused.then(|| answer.describe()),
        }))
    }

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
            if memo.config_size.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Ok(BlobFetch::TooLarge {
                    size: memo.config_size.unwrap_or_default(),
                    blob,
                });
            }
            return self.fetch_blob(repo, blob).await;
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
                    if size.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                        return Ok(BlobFetch::TooLarge {
                            blob,
                            size: size.unwrap_or_default(),
                        });
                    }
                    return self.fetch_blob(repo, blob).await;
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

    /// `GET /v2/<repo>/referrers/<digest>`, following `Link: rel="next"` pages on the same
    /// registry up to a bound.
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Referrers, RequestError> {
        let scope = Scope::pull(repo);
        let mut path = format!("v2/{repo}/referrers/{digest}");
        // Distinct descriptors across the pages: a `Link` that points back at a page already
        // read (itself, say) must not count its referrers again.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut visited: Vec<String> = self
            .base_url()
            .join(&path)
            .map(|url| url.to_string())
            .into_iter()
            .collect();
        let mut filters_applied = None;
        let mut wrong_content_type = None;
        for page in 0..MAX_REFERRER_PAGES {
            let resp = self
                .send(
                    Request::new(Method::GET, path.as_str())
                        .accept(&[OCI_INDEX])
                        .scope(scope.as_str()),
                )
                .await?;
            let code = resp.status.as_u16();
            let parsed = index_descriptors(&resp.body);
            match code {
                200 => match parsed {
                    Ok(descriptors) => {
                        seen.extend(descriptors);
                        let ct = media_type(&resp);
                        if ct != OCI_INDEX && wrong_content_type.is_none() {
                            wrong_content_type = Some(if ct.is_empty() {
                                "(none)".to_string()
                            } else {
                                ct.chars().take(80).collect()
                            });
                        }
                    }
                    Err(why) => return Ok(Referrers::NotTheApi { status: code, why }),
                },
                // Early OCI 1.1 drafts answered a missing subject with 404 and an empty
                // index; the router's plain 404 (Distribution 2.8) means there is no API.
                404 if page == 0 && parsed.is_ok() => seen.extend(parsed.unwrap_or_default()),
                400 | 404 | 405 | 406 | 501 => {
                    return Ok(Referrers::NotTheApi {
                        status: code,
                        why: match OciError::parse(&resp.body) {
                            Some(e) => format!("HTTP {code} {}", e.code.as_str()),
                            None => format!("HTTP {code} without an OCI image index"),
                        },
                    });
                }
                _ => return Ok(Referrers::Refused(Answer::of(&resp))),
            }
            if filters_applied.is_none() {
                filters_applied = resp
                    .header("oci-filters-applied")
                    .map(|f| f.chars().take(100).collect());
            }
            let count = u64::try_from(seen.len()).unwrap_or(u64::MAX);
            let next = next_link(&resp)
                .and_then(|l| same_origin(self.base_url(), &l).ok())
                .map(|url| url.to_string())
                // A page already read ends the list: the registry points back at it.
                .filter(|url| !visited.contains(url));
            match next {
                Some(url) if code == 200 => {
                    visited.push(url.clone());
                    path = url;
                }
                _ => {
                    return Ok(Referrers::Index {
                        status: code,
                        count,
                        filters_applied,
                        truncated: false,
                        wrong_content_type,
                    });
                }
            }
        }
        Ok(Referrers::Index {
            status: 200,
            count: u64::try_from(seen.len()).unwrap_or(u64::MAX),
            filters_applied,
            truncated: true,
            wrong_content_type,
        })
    }

    /// Sends `build(scope)` with each scope in turn until one is not refused, and returns
    /// the answer with the scope it was sent with (follow-up requests reuse that token).
    ///
    /// A scope counts as refused when the token service rejects the request for it or the
    /// registry answers 401 `insufficient_scope`. A 401 without a Bearer challenge (Basic
    /// auth) is final: the scope plays no part there.
    pub async fn send_with_scopes(
        &self,
        scopes: &[Scope],
        build: impl Fn(&Scope) -> Request,
    ) -> Result<(Response, Scope), RequestError> {
        let mut last = None;
        for scope in scopes {
            let answer = self.send(build(scope)).await;
            let refused = match &answer {
                Err(RequestError::Token(
                    TokenError::Rejected { .. }
                    | TokenError::AnonymousRefused { .. }
                    | TokenError::Status { .. },
                )) => true,
                Ok(resp) => resp.status == StatusCode::UNAUTHORIZED && insufficient_scope(resp),
                Err(_) => false,
            };
            let answer = answer.map(|resp| (resp, scope.clone()));
            if !refused {
                return answer;
            }
            last = Some(answer);
        }
        last.unwrap_or_else(|| {
            Err(RequestError::Transport {
                reason: crate::outcome::Reason::ConnectionError,
                detail: "no token scope to send the request with".into(),
            })
        })
    }

    /// `POST /v2/<repo>/blobs/uploads/`: opens an upload session (202) and writes nothing.
    pub async fn start_upload(
        &self,
        repo: &str,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(Method::POST, format!("v2/{repo}/blobs/uploads/")).scope(scope.as_str())
        })
        .await
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<blob>&from=<from>`: 201 mounted, 202 an
    /// ordinary upload session instead.
    pub async fn mount(
        &self,
        repo: &str,
        blob: &Digest,
        from: &str,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(
                Method::POST,
                format!("v2/{repo}/blobs/uploads/?mount={blob}&from={from}"),
            )
            .scope(scope.as_str())
        })
        .await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`.
    pub async fn head_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(Method::HEAD, format!("v2/{repo}/blobs/{digest}")).scope(scope.as_str())
        })
        .await
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::DELETE, format!("v2/{repo}/manifests/{digest}"))
                .scope(scope.as_str()),
        )
        .await
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`.
    pub async fn delete_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::DELETE, format!("v2/{repo}/blobs/{digest}")).scope(scope.as_str()),
        )
        .await
    }

    /// `OPTIONS /v2/<repo>/manifests/<digest>`: its `Allow` is evidence only, since
    /// Distribution lists DELETE even with delete disabled.
    pub async fn options_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::OPTIONS, format!("v2/{repo}/manifests/{digest}"))
                .scope(scope.as_str()),
        )
        .await
    }
}

impl UploadSession {
    /// The session a 202 answer opened, to be cancelled with `scope`'s token.
    pub fn opened(resp: &Response, scope: Scope) -> UploadSession {
        UploadSession {
            location: resp.header("location").map(str::to_string),
            scope,
        }
    }

    /// Cancels the session with a DELETE of its `Location`, on the registry's own origin
    /// only (credentials never go elsewhere).
    pub async fn cancel(&self, api: &Api<'_>) -> Cancel {
        let refused = |detail: String| Cancel {
            cancelled: false,
            detail,
        };
        let Some(location) = &self.location else {
            return refused("the registry sent no Location for the session".into());
        };
        let url = match same_origin(api.base_url(), location) {
            Ok(url) => url,
            Err(why) => return refused(why),
        };
        let request = Request::new(Method::DELETE, url.as_str()).scope(self.scope.as_str());
        let resp = match api.send(request).await {
            Ok(resp) => resp,
            Err(e) => return refused(format!("cancelling failed: {e}")),
        };
        let answer = Answer::of(&resp);
        let code = answer.status;
        match answer.class {
            Class::Success => Cancel {
                cancelled: true,
                detail: format!("cancelled, HTTP {code}"),
            },
            _ if code == 401 && insufficient_scope(&resp) => refused(
                "HTTP 401 insufficient_scope: the token lacks the delete action, which the registry wants for cancelling"
                    .into(),
            ),
            Class::Unauthenticated | Class::NotPermitted => {
                refused(format!("HTTP {code}: no permission to cancel"))
            }
            Class::NotFound | Class::RepositoryUnknown => {
                refused(format!("{}: the registry no longer knows the session", answer.describe()))
            }
            _ if code == 405 => {
                refused("HTTP 405: the registry does not allow cancelling uploads".into())
            }
            _ => refused(format!("{} to the cancel", answer.describe())),
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

fn content_type(resp: &Response) -> Option<String> {
    Some(media_type(resp))
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(100).collect())
}

/// The number of descriptors in an OCI image index, or why the body is not one. Lenient
/// on purpose (unknown fields, a missing `mediaType`): only what clients need is checked.
pub(crate) fn parse_index(body: &[u8]) -> Result<u64, String> {
    index_descriptors(body).map(|d| u64::try_from(d.len()).unwrap_or(u64::MAX))
}

/// The descriptors of an OCI image index, each as a key that tells them apart (its digest,
/// or the whole descriptor when it names none), or why the body is not an index (see
/// [`parse_index`]).
pub(crate) fn index_descriptors(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<Vec<serde_json::Value>>,
    }
    let index: Index =
        serde_json::from_slice(body).map_err(|_| "the body is not index JSON".to_string())?;
    if index.schema_version != Some(2) {
        return Err("schemaVersion is not 2".into());
    }
    if index.media_type.as_deref().is_some_and(|m| m != OCI_INDEX) {
        return Err("its mediaType is not an OCI image index".into());
    }
    let manifests = index
        .manifests
        .ok_or_else(|| "it has no `manifests` list".to_string())?;
    Ok(manifests
        .iter()
        .map(|d| match d.get("digest").and_then(|v| v.as_str()) {
            Some(digest) => digest.to_string(),
            None => d.to_string(),
        })
        .collect())
}

/// The target of `Link: <...>; rel="next"`, as OCI pagination sends it.
pub(crate) fn next_link(resp: &Response) -> Option<String> {
    resp.headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.trim().split_once(';')?;
            let next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            next.then(|| target.to_string())
        })
}

/// The absolute URL a registry's `Location` names, if it is on the registry's own scheme,
/// host and port: the exporter never sends credentials anywhere else. A relative one is
/// joined onto the registry's base URL; the query (Distribution's `_state`) is kept.
pub fn same_origin(base: &Url, location: &str) -> Result<Url, String> {
    let mut url = base
        .join(location.trim())
        .map_err(|_| "the Location header is not a URL".to_string())?;
    url.set_fragment(None);
    let same = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if same {
        Ok(url)
    } else {
        Err(format!(
            "the Location points at {}://{}, not at the registry; the exporter sends no credentials there",
            url.scheme(),
            url.host_str().unwrap_or("?")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn same_origin_accepts_the_registry_and_refuses_elsewhere() {
        let base = Url::parse("https://reg.example.com/").unwrap();
        let ok = same_origin(&base, "/v2/a/blobs/uploads/u?_state=x").unwrap();
        assert_eq!(
            ok.as_str(),
            "https://reg.example.com/v2/a/blobs/uploads/u?_state=x"
        );
        let ok = same_origin(&base, "https://reg.example.com:443/v2/a/blobs/uploads/u").unwrap();
        assert_eq!(ok.path(), "/v2/a/blobs/uploads/u");
        for foreign in [
            "https://other.example.com/v2/a/blobs/uploads/u",
            "http://reg.example.com/v2/a/blobs/uploads/u",
            "https://reg.example.com:8443/v2/a/blobs/uploads/u",
            "https://user:pw@reg.example.com/v2/a",
        ] {
            let err = same_origin(&base, foreign).unwrap_err();
            assert!(!err.contains("pw"), "{err}");
        }
    }

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

    #[test]
    fn index_bodies() {
        let ok = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}"#;
        assert_eq!(parse_index(ok), Ok(2));
        assert_eq!(parse_index(br#"{"schemaVersion":2,"manifests":[]}"#), Ok(0));
        assert!(parse_index(b"404 page not found").is_err());
        assert!(parse_index(br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#).is_err());
        assert!(
            parse_index(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#)
                .is_err()
        );
    }

    #[test]
    fn next_links() {
        let mut headers = HeaderMap::new();
        headers.append(
            "link",
            r#"</v2/a/referrers/sha256:x?n=1&last=y>; rel="next""#
                .parse()
                .unwrap(),
        );
        let resp = Response {
            status: StatusCode::OK,
            headers,
            body: Default::default(),
            redirected_to: None,
        };
        assert_eq!(
            next_link(&resp).as_deref(),
            Some("/v2/a/referrers/sha256:x?n=1&last=y")
        );
    }
}
