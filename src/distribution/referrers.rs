//! The referrers API: `GET /v2/<repo>/referrers/<digest>` with its pages
//! ([`Api::referrers`] → [`Referrers`]), and the reading of an OCI image index
//! ([`parse_index`], [`index_descriptors`]) and of `Link: rel="next"` ([`next_link`]).

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Request, RequestError, Response};

use super::answer::media_type;
use super::{Answer, Api, Digest, OCI_INDEX, OciError, Scope, same_origin};

/// A referrers list longer than this many pages is counted up to here: a registry that
/// paginates forever cannot hold a check.
const MAX_REFERRER_PAGES: usize = 10;

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

impl Api<'_> {
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
                        wrong_content_type = wrong_content_type.or_else(|| not_an_index(&resp));
                    }
                    Err(why) => return Ok(Referrers::NotTheApi { status: code, why }),
                },
                // Early OCI 1.1 drafts answered a missing subject with 404 and an empty
                // index; the router's plain 404 (Distribution 2.8) means there is no API.
                404 if page == 0 && parsed.is_ok() => seen.extend(parsed.unwrap_or_default()),
                400 | 404 | 405 | 406 | 501 => return Ok(not_the_api(code, &resp.body)),
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
}

/// The content type of a page that parsed as an index, when it is not the index's own
/// (none shown as "(none)", at most 80 characters).
fn not_an_index(resp: &Response) -> Option<String> {
    let ct = media_type(resp);
    match ct.as_str() {
        OCI_INDEX => None,
        "" => Some("(none)".to_string()),
        ct => Some(ct.chars().take(80).collect()),
    }
}

/// A refusal that says the referrers API is not there, with the registry's OCI error code
/// when it sent one.
fn not_the_api(code: u16, body: &[u8]) -> Referrers {
    Referrers::NotTheApi {
        status: code,
        why: match OciError::parse(body) {
            Some(e) => format!("HTTP {code} {}", e.code.as_str()),
            None => format!("HTTP {code} without an OCI image index"),
        },
    }
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
#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

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
