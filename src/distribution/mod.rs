//! The OCI Distribution API, typed: the layer between `client` (how a request travels:
//! TLS, auth, bounds) and the checks (what an outcome means for a user).
//!
//! Owns the API's operations — [`Api::ping`], manifests ([`Api::head_manifest`],
//! [`Api::get_manifest`], [`Api::resolve_manifest`] with its GET fallback for registries
//! that omit `Docker-Content-Digest`), [`Api::referrers`], uploads ([`Api::start_upload`]
//! and [`UploadSession::cancel`], [`Api::mount`]) and the delete probes — plus the value
//! types (`types`) and the one interpretation of an answer (`answer`). It does not word
//! results, pick statuses or touch metrics; it imports nothing from `checks`.
//!
//! By file: `answer.rs` reads an answer, `types.rs` holds the value types, this file the
//! [`Api`], manifests and scoped sends; `blob.rs` the pull's path to its config blob,
//! `referrers.rs` the referrers API, `upload.rs` uploads, mounts and the delete probes.

mod answer;
mod blob;
mod referrers;
mod types;
mod upload;

use answer::media_type;
pub use answer::{Answer, Class, ErrorCode, Foreign, OciError, insufficient_scope};
pub use blob::{BlobFetch, BlobRef};
pub(crate) use blob::{manifest_links, pull_step};
pub use referrers::Referrers;
pub(crate) use referrers::{next_link, parse_index};
pub use types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Digest, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST,
    Reference, Scope,
};
pub use upload::{Cancel, UploadSession};

use reqwest::{Method, StatusCode};
use url::Url;

use crate::client::{RegistryClient, Request, RequestError, Response, TokenError, Trail};

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
}

fn content_type(resp: &Response) -> Option<String> {
    Some(media_type(resp))
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(100).collect())
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
}
