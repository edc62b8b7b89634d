//! `check.integration.oci.referrers`: does the registry serve the OCI referrers API.
//!
//! Owns the referrers probe: resolve the digest of `test_repository:test_tag` (a HEAD, as
//! the pull check does), then `GET /v2/<repo>/referrers/<digest>` asking for an OCI image
//! index. An index (200, or a 404 whose body is one) means the API exists; the router's
//! plain 404 means it does not, and clients (oras, cosign, notation) fall back to the tag
//! schema `sha256-<hex>`, whose presence this check reports as evidence. The capabilities
//! check reuses [`resolve_test_digest`] and [`query`].

use reqwest::Method;
use serde::Deserialize;

use super::pull::MANIFEST_MEDIA_TYPES;
use super::push::{insufficient_scope, same_origin};
use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::client::{Request, RequestError, Response};
use crate::config::{Credentials, Target};

const KIND: CheckKind = CheckKind::Referrers;

/// The media type of an OCI image index, which the referrers API answers with.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A referrers list longer than this many pages is counted up to here: a registry that
/// paginates forever cannot hold the check.
const MAX_PAGES: usize = 10;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.test_repository;
    let image = format!("{repo}:{}", target.test_tag);
    let resp = match resolve_test_digest(cx, target).await {
        Ok(resp) => resp,
        Err(e) => {
            return CheckResult::from_request_error(KIND, &format!("resolve {image}"), &e);
        }
    };
    let code = resp.status.as_u16();
    let api_version = resp.api_version();
    let anonymous = matches!(target.credentials, Credentials::Anonymous);
    let digest = match code {
        200..=299 => match content_digest(&resp) {
            Some(d) => d,
            None => {
                return CheckResult::new(
                    KIND,
                    Status::Fail,
                    Reason::InvalidResponse,
                    format!(
                        "the registry sent no valid Docker-Content-Digest for {image}, so its referrers cannot be listed"
                    ),
                )
                .with_http_status(code);
            }
        },
        _ => {
            let (status, reason, message) = manifest_failure(code, &image, anonymous, &resp);
            let mut result = CheckResult::new(KIND, status, reason, message).with_http_status(code);
            result.api_version = api_version;
            return result;
        }
    };

    let answer = match query(cx, repo, &digest).await {
        Ok(answer) => answer,
        Err(e) => {
            return CheckResult::from_request_error(
                KIND,
                &format!("list the referrers of {image}"),
                &e,
            )
            .with_evidence("digest", digest);
        }
    };
    let mut result = match answer {
        Referrers::Index {
            status: code,
            count,
            filters_applied,
            truncated,
        } => {
            let mut r = CheckResult::new(
                KIND,
                Status::Pass,
                Reason::Ok,
                format!(
                    "the referrers API lists {count}{} referrer(s) of {image}",
                    if truncated { "+" } else { "" }
                ),
            )
            .with_http_status(code)
            .with_evidence("referrers_count", count.to_string());
            if let Some(f) = filters_applied {
                r = r.with_evidence("filters_applied", f);
            }
            r.facts.referrers_count = Some(count);
            r
        }
        Referrers::NotAnIndex { status: code, why } => CheckResult::new(
            KIND,
            Status::Fail,
            Reason::InvalidResponse,
            format!(
                "the referrers API of {repo} answered HTTP {code} but not with an OCI image index ({why}); clients will fail instead of falling back"
            ),
        )
        .with_http_status(code),
        Referrers::Unsupported { status: code } => {
            let tag = fallback_tag(&digest);
            let fallback = match cx
                .send(
                    Request::new(Method::HEAD, format!("v2/{repo}/manifests/{tag}"))
                        .accept(MANIFEST_MEDIA_TYPES)
                        .scope(format!("repository:{repo}:pull")),
                )
                .await
            {
                Ok(r) if r.status.is_success() => "present".to_string(),
                Ok(r) if r.status.as_u16() == 404 => "absent".to_string(),
                Ok(r) => format!("unknown (HTTP {})", r.status.as_u16()),
                Err(e) => format!("unknown ({e})"),
            };
            CheckResult::new(
                KIND,
                Status::Warn,
                Reason::Unsupported,
                format!(
                    "the registry has no referrers API (GET /v2/{repo}/referrers/<digest> answered HTTP {code} without an OCI index); clients fall back to the tag schema {tag}, which is {fallback} for {image}; signatures and SBOMs still work that way, but upgrade to an OCI 1.1 registry for the API"
                ),
            )
            .with_http_status(code)
            .with_evidence("fallback_tag", format!("{tag}: {fallback}"))
        }
        Referrers::Denied {
            status: code,
            insufficient,
        } => {
            let (reason, message) = if (insufficient && !anonymous) || code == 403 {
                (
                    Reason::Forbidden,
                    format!(
                        "valid credentials, no permission to list the referrers of {image} (HTTP {code}); grant pull on {repo}"
                    ),
                )
            } else if anonymous {
                (
                    Reason::Unauthorized,
                    format!(
                        "listing the referrers of {image} requires authentication and none is configured; set username and password_file (or token_file)"
                    ),
                )
            } else {
                (
                    Reason::Unauthorized,
                    format!(
                        "the registry rejected the credentials when listing the referrers of {image} (HTTP 401)"
                    ),
                )
            };
            CheckResult::new(KIND, Status::Fail, reason, message).with_http_status(code)
        }
        Referrers::Other { status: code } => {
            let (status, reason) = match code {
                429 => (Status::Fail, Reason::RateLimited),
                500..=599 => (Status::Fail, Reason::ServerError),
                _ => (Status::Warn, Reason::UnexpectedStatus),
            };
            CheckResult::new(
                KIND,
                status,
                reason,
                format!(
                    "the referrers API of {repo} answered HTTP {code}, expected 200 with an OCI image index"
                ),
            )
            .with_http_status(code)
        }
    };
    result = result.with_evidence("digest", digest);
    result.api_version = api_version;
    result
}

/// HEAD of `test_repository:test_tag` with every manifest media type, scope pull.
pub(crate) async fn resolve_test_digest(
    cx: &CheckContext,
    target: &Target,
) -> Result<Response, RequestError> {
    let repo = &target.test_repository;
    cx.send(
        Request::new(
            Method::HEAD,
            format!("v2/{repo}/manifests/{}", target.test_tag),
        )
        .accept(MANIFEST_MEDIA_TYPES)
        .scope(format!("repository:{repo}:pull")),
    )
    .await
}

/// The manifest digest of a successful HEAD, if it looks like a digest (it goes into a
/// URL path, so anything else is refused).
pub(crate) fn content_digest(resp: &Response) -> Option<String> {
    resp.header("docker-content-digest")
        .map(str::trim)
        .filter(|d| is_digest(d))
        .map(str::to_string)
}

/// `algorithm:encoded` as the OCI image spec defines a digest, bounded in length.
pub(crate) fn is_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    s.len() <= 200
        && !algorithm.is_empty()
        && !encoded.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
}

/// The tag a client without the referrers API uses for `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// What the referrers API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Referrers {
    /// An OCI image index: the API exists.
    Index {
        status: u16,
        count: u64,
        filters_applied: Option<String>,
        /// More pages than [`MAX_PAGES`] were offered.
        truncated: bool,
    },
    /// A 200 that is not an image index.
    NotAnIndex { status: u16, why: String },
    /// A 404 without an index: no referrers API.
    Unsupported { status: u16 },
    /// 401 or 403.
    Denied { status: u16, insufficient: bool },
    /// Anything else (429, 5xx, ...).
    Other { status: u16 },
}

/// `GET /v2/<repo>/referrers/<digest>`, following `Link: rel="next"` pages on the same
/// registry up to [`MAX_PAGES`].
pub(crate) async fn query(
    cx: &CheckContext,
    repo: &str,
    digest: &str,
) -> Result<Referrers, RequestError> {
    let scope = format!("repository:{repo}:pull");
    let mut path = format!("v2/{repo}/referrers/{digest}");
    let mut count = 0u64;
    let mut filters_applied = None;
    for page in 0..MAX_PAGES {
        let resp = cx
            .send(
                Request::new(Method::GET, path.as_str())
                    .accept(&[OCI_INDEX_MEDIA_TYPE])
                    .scope(scope.as_str()),
            )
            .await?;
        let code = resp.status.as_u16();
        let parsed = parse_index(&resp.body);
        match code {
            200 => {
                let content_type = media_type(&resp);
                if content_type != OCI_INDEX_MEDIA_TYPE {
                    return Ok(Referrers::NotAnIndex {
                        status: code,
                        why: format!(
                            "Content-Type is \"{}\", expected {OCI_INDEX_MEDIA_TYPE}",
                            content_type.chars().take(80).collect::<String>()
                        ),
                    });
                }
                match parsed {
                    Ok(n) => count += n,
                    Err(why) => return Ok(Referrers::NotAnIndex { status: code, why }),
                }
            }
            // Early OCI 1.1 drafts answered a missing subject with 404 and an empty index;
            // the router's plain 404 (Distribution 2.8) means there is no such API.
            404 => match parsed {
                Ok(n) if page == 0 => count += n,
                _ => return Ok(Referrers::Unsupported { status: code }),
            },
            401 | 403 => {
                return Ok(Referrers::Denied {
                    status: code,
                    insufficient: insufficient_scope(&resp),
                });
            }
            _ => return Ok(Referrers::Other { status: code }),
        }
        if filters_applied.is_none() {
            filters_applied = resp
                .header("oci-filters-applied")
                .map(|f| f.chars().take(100).collect());
        }
        let next = next_link(&resp).and_then(|l| same_origin(cx.client.base_url(), &l).ok());
        match next {
            Some(url) if code == 200 => path = url.to_string(),
            _ => {
                return Ok(Referrers::Index {
                    status: code,
                    count,
                    filters_applied,
                    truncated: false,
                });
            }
        }
    }
    Ok(Referrers::Index {
        status: 200,
        count,
        filters_applied,
        truncated: true,
    })
}

/// The media type of a response without parameters, lower-cased.
fn media_type(resp: &Response) -> String {
    resp.header("content-type")
        .and_then(|ct| ct.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The number of descriptors in an OCI image index, or why the body is not one.
fn parse_index(body: &[u8]) -> Result<u64, String> {
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
    if index
        .media_type
        .as_deref()
        .is_some_and(|m| m != OCI_INDEX_MEDIA_TYPE)
    {
        return Err("its mediaType is not an OCI image index".into());
    }
    let manifests = index
        .manifests
        .ok_or_else(|| "it has no `manifests` list".to_string())?;
    Ok(u64::try_from(manifests.len()).unwrap_or(u64::MAX))
}

/// The target of `Link: <...>; rel="next"`, as OCI pagination sends it.
fn next_link(resp: &Response) -> Option<String> {
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

/// Status, reason and message when the test manifest could not be resolved.
fn manifest_failure(
    code: u16,
    image: &str,
    anonymous: bool,
    resp: &Response,
) -> (Status, Reason, String) {
    match code {
        404 => (
            Status::Fail,
            Reason::NotFound,
            format!(
                "test image {image} not found, so its referrers cannot be listed; push it or set `test_repository` and `test_tag` to an image that exists"
            ),
        ),
        401 if insufficient_scope(resp) && !anonymous => (
            Status::Fail,
            Reason::Forbidden,
            format!("valid credentials, but no pull permission on {image}; grant pull"),
        ),
        401 if anonymous => (
            Status::Fail,
            Reason::Unauthorized,
            format!(
                "reading {image} requires authentication and none is configured; set username and password_file (or token_file)"
            ),
        ),
        401 => (
            Status::Fail,
            Reason::Unauthorized,
            format!("the registry rejected the credentials when reading {image} (HTTP 401)"),
        ),
        403 => (
            Status::Fail,
            Reason::Forbidden,
            format!("valid credentials, but no pull permission on {image} (HTTP 403)"),
        ),
        429 => (
            Status::Fail,
            Reason::RateLimited,
            format!("reading {image} is rate limited (HTTP 429)"),
        ),
        500..=599 => (
            Status::Fail,
            Reason::ServerError,
            format!("the registry answered HTTP {code} for {image}"),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("the registry answered HTTP {code} for the manifest of {image}, expected 200"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn digests_are_checked_before_they_go_into_a_path() {
        assert!(is_digest(
            "sha256:16a06f27aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
        assert!(is_digest("sha512+b64u:abc_-="));
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:../x",
            "SHA256:ab",
            "a:b c",
        ] {
            assert!(!is_digest(bad), "{bad}");
        }
        assert_eq!(fallback_tag("sha256:abc"), "sha256-abc");
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
        };
        assert_eq!(
            next_link(&resp).as_deref(),
            Some("/v2/a/referrers/sha256:x?n=1&last=y")
        );
    }
}
