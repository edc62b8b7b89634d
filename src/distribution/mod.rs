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

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::client::{RegistryClient, Request, RequestError, Response, TokenError, Trail};

/// A referrers list longer than this many pages is counted up to here: a registry that
/// paginates forever cannot hold a check.
const MAX_REFERRER_PAGES: usize = 10;

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
