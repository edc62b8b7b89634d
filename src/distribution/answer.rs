//! What a registry's answer means: the one place where a status code, the OCI error body
//! (`{"errors":[{"code","message","detail"}]}`) and the challenge are read together.
//!
//! Owns [`Answer::of`], which turns any response into a [`Class`]: success, or why the
//! registry refused. Registries differ in how they say the same thing (Harbor's read-only
//! mode is a 403, Distribution's a 405; ECR's expired token is a 403 DENIED), and the
//! differences are absorbed here, each with its public source. It does not word results
//! or pick statuses: the checks do that from the class.
//!
//! An answer counts only when it is the API's answer: a 2xx is a success only when its
//! content is what the operation returns ([`Answer::api_root`], [`Answer::manifest`],
//! [`Answer::upload`]); an HTML page, a sign-in page reached by redirect, a body of the
//! wrong type or a 404 without an OCI error body is [`Class::NotTheApi`], with the evidence
//! ([`Foreign`]) a person needs to find what answered instead.

use serde::Deserialize;

use super::types::Digest;
use crate::client::{Challenges, Response};
pub use crate::outcome::ErrorCode;

/// The longest excerpt of a foreign body kept as evidence.
const FIRST_BYTES: usize = 120;

/// What answered instead of the registry API: the evidence a person needs to find what
/// sits in front of the registry (a sign-in proxy, a web UI, a load balancer's page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// Why the answer is not the API's, in plain words.
    pub why: String,
    /// The media type, without parameters, bounded.
    pub content_type: Option<String>,
    /// The body's first bytes, bounded, on one line, control characters dropped.
    pub first_bytes: String,
    /// Where redirects led, when they led away from the URL asked for (no query).
    pub final_url: Option<String>,
    /// It looks like a sign-in page: a password field or a login wording in the page, or a
    /// redirect to a path that names a login (oauth2-proxy's `/oauth2/sign_in`, Authelia's
    /// portal, Keycloak's `/auth/realms/.../login`).
    pub sign_in: bool,
}

impl Foreign {
    /// The evidence of `resp`, which is not the API's answer because of `why`.
    pub fn of(resp: &Response, why: impl Into<String>) -> Foreign {
        let content_type = Some(media_type(resp)).filter(|m| !m.is_empty());
        let head = &resp.body[..resp.body.len().min(64 * 1024)];
        let text = String::from_utf8_lossy(head);
        let mut first_bytes = String::new();
        let mut space = false;
        for c in text.chars() {
            if first_bytes.chars().count() >= FIRST_BYTES {
                break;
            }
            if c.is_whitespace() || c.is_control() {
                space = !first_bytes.is_empty();
                continue;
            }
            if space {
                first_bytes.push(' ');
                space = false;
            }
            first_bytes.push(c);
        }
        let final_url = resp.redirected_to.as_ref().map(|u| {
            let mut shown = format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            );
            shown.extend(u.path().chars().filter(|c| !c.is_control()).take(200));
            shown
        });
        let lower = text.to_ascii_lowercase();
        let page_says = is_html(resp)
            && [
                "type=\"password\"",
                "type='password'",
                "sign in",
                "sign-in",
                "log in",
                "login",
            ]
            .iter()
            .any(|w| lower.contains(w));
        let path_says = resp.redirected_to.as_ref().is_some_and(|u| {
            let path = u.path().to_ascii_lowercase();
            [
                "login",
                "signin",
                "sign_in",
                "sign-in",
                "oauth",
                "sso",
                "authelia",
                "auth/realms",
            ]
            .iter()
            .any(|w| path.contains(w))
        });
        Foreign {
            why: why.into(),
            content_type,
            first_bytes,
            final_url,
            sign_in: page_says || path_says,
        }
    }

    /// What answered, in words: "a sign-in page at https://sso.example/login: something in
    /// front of the registry asks for a browser login".
    pub fn describe(&self) -> String {
        let at = self
            .final_url
            .as_ref()
            .map(|u| format!(" at {u}"))
            .unwrap_or_default();
        if self.sign_in {
            format!(
                "a sign-in page{at}: something in front of the registry (an SSO or OAuth proxy) asks for a browser login, which registry clients cannot do"
            )
        } else if at.is_empty() {
            self.why.clone()
        } else {
            format!("{}, reached by redirect{at}", self.why)
        }
    }

    /// The evidence as one line: content type and first bytes.
    pub fn excerpt(&self) -> String {
        let ct = self.content_type.as_deref().unwrap_or("(none)");
        if self.first_bytes.is_empty() {
            format!("Content-Type {ct}, empty body")
        } else {
            format!("Content-Type {ct}, body starts \"{}\"", self.first_bytes)
        }
    }
}

/// The first error of an OCI error body: its code and message (bounded, for evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    pub code: ErrorCode,
    pub message: String,
}

impl OciError {
    /// The first error of `{"errors":[...]}`, or `None` when the body is not one.
    pub fn parse(body: &[u8]) -> Option<OciError> {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            code: String,
            #[serde(default)]
            message: Option<String>,
        }
        let first = serde_json::from_slice::<Errors>(body)
            .ok()?
            .errors
            .into_iter()
            .next()?;
        Some(OciError {
            code: ErrorCode::parse(&first.code),
            // Bounded and single-line: it may be shown as evidence.
            message: first
                .message
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
        })
    }

    fn message_has(&self, needle: &str) -> bool {
        self.message.to_ascii_lowercase().contains(needle)
    }
}

/// What an answer means, whatever the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx, and (where the operation says what it returns) the API's content.
    Success,
    /// Not the registry API's answer: an HTML page, a sign-in page reached by redirect, a
    /// body of the wrong type, a 404 without an OCI error body. [`Answer::foreign`] holds
    /// the evidence.
    NotTheApi,
    /// The API's answer, but broken: a manifest whose bytes do not match the digest sent
    /// with it, an upload 202 without a `Location`. [`Answer::foreign`] says what.
    Malformed,
    /// 401 without any challenge (no `WWW-Authenticate`, or an empty one): no client can
    /// tell how to authenticate, so Docker, containerd and skopeo stop there. Usually a
    /// reverse proxy that strips the header.
    NoChallenge,
    /// 401 without `insufficient_scope`: the credentials, or their absence, were refused.
    Unauthenticated,
    /// 401 whose `WWW-Authenticate` challenge cannot be read (bytes outside visible ASCII,
    /// broken quoting) and names no usable scheme: how to authenticate is unknown, so the
    /// answer says nothing about the credentials. A malformed answer, not a refusal.
    BadChallenge,
    /// 401 `insufficient_scope`, or 403: known, but not allowed to do this.
    NotPermitted,
    /// The credentials were valid once and have expired. ECR answers 403 DENIED "Your
    /// authorization token has expired" (awslabs/amazon-ecr-credential-helper#7).
    CredentialsExpired,
    /// The registry refuses writes: Distribution's read-only mode is 405 `text/plain` with
    /// `Allow: GET, HEAD`; Harbor's is 403 DENIED "The system is in read only mode" (goharbor
    /// harbor's readonly middleware).
    ReadOnly,
    /// Harbor's proxy-cache project refuses every push: 403 DENIED "can not push artifact
    /// to a proxy project" (goharbor/harbor src/server/middleware/repoproxy/proxy.go,
    /// `DisableBlobAndManifestUploadMiddleware`). Granting push cannot help.
    ProxyCache,
    /// 404 `NAME_UNKNOWN`: the repository does not exist. ECR does not create repositories
    /// on push, so a push there is refused this way.
    RepositoryUnknown,
    /// 404 otherwise (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, or a router's plain 404).
    NotFound,
    /// `UNSUPPORTED` (405 or 400): the operation is disabled (Distribution's delete).
    Unsupported,
    /// 429 or `TOOMANYREQUESTS`.
    RateLimited,
    /// 5xx.
    ServerError,
    /// Anything else.
    Unexpected,
}

/// A registry's answer, interpreted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub class: Class,
    /// The first OCI error of the body, when it had one.
    pub error: Option<OciError>,
    /// For [`Class::NotTheApi`] and [`Class::Malformed`]: what answered, and why it is not
    /// the API's answer.
    pub foreign: Option<Box<Foreign>>,
    /// The `error` of a 401's Bearer challenge (`invalid_token`, `insufficient_scope`).
    pub challenge_error: Option<String>,
}

impl Answer {
    /// Interprets `resp` by its status, its OCI error code and message, and its challenge.
    pub fn of(resp: &Response) -> Answer {
        let status = resp.status.as_u16();
        let error = OciError::parse(&resp.body);
        let code = error.as_ref().map(|e| &e.code);
        let says = |needle: &str| error.as_ref().is_some_and(|e| e.message_has(needle));
        let html = is_html(resp);
        let mut foreign = None;
        let mut not_api = |why: String| {
            foreign = Some(Box::new(Foreign::of(resp, why)));
            Class::NotTheApi
        };
        let class = match status {
            200..=299 if html => not_api(format!("an HTML page (HTTP {status})")),
            200..=299 => Class::Success,
            401 if unreadable_challenge(resp) => Class::BadChallenge,
            401 if insufficient_scope(resp) => Class::NotPermitted,
            // A sign-in proxy's own 401/403 page, not the registry's refusal. (A 401 page
            // with a challenge, nginx's `auth_basic`, is a real challenge.)
            401 if html && error.is_none() && no_challenge(resp) => {
                not_api(format!("an HTML page (HTTP {status})"))
            }
            403..=405 if html && error.is_none() => {
                not_api(format!("an HTML page (HTTP {status})"))
            }
            401 if no_challenge(resp) => Class::NoChallenge,
            401 => Class::Unauthenticated,
            403 if says("read only mode") || says("read-only mode") => Class::ReadOnly,
            403 if says("token has expired") || says("token is expired") => {
                Class::CredentialsExpired
            }
            403 if code == Some(&ErrorCode::TooManyRequests) => Class::RateLimited,
            403 if says("can not push artifact to a proxy project") => Class::ProxyCache,
            403 => Class::NotPermitted,
            404 if code == Some(&ErrorCode::NameUnknown) => Class::RepositoryUnknown,
            // MANIFEST_UNKNOWN, BLOB_UNKNOWN, Harbor's NOT_FOUND: the API says "no such".
            404 if error.is_some() => Class::NotFound,
            // A HEAD has no body to tell: callers that need to know ask again with GET.
            404 if resp.body.is_empty() => Class::NotFound,
            // A router's or a web server's 404 page: the path is not served by the API.
            404 => not_api("HTTP 404 without an OCI error body".to_string()),
            400 | 405 if code == Some(&ErrorCode::Unsupported) => Class::Unsupported,
            405 => Class::ReadOnly,
            429 => Class::RateLimited,
            _ if code == Some(&ErrorCode::TooManyRequests) => Class::RateLimited,
            500..=599 => Class::ServerError,
            _ => Class::Unexpected,
        };
        let challenge_error = if status == 401 {
            Challenges::parse(&resp.headers)
                .bearer
                .and_then(|b| b.error)
                .map(|e| e.chars().take(40).collect())
        } else {
            None
        };
        Answer {
            status,
            class,
            error,
            foreign,
            challenge_error,
        }
    }

    /// The answer to `GET /v2/`: the API's when it is a 2xx carrying
    /// `Docker-Distribution-API-Version` (or `OCI-Distribution-API-Version`) or a JSON
    /// body, or a 401 with a challenge. A 404 there means `url` is not a registry's API.
    pub fn api_root(resp: &Response) -> Answer {
        let mut answer = Answer::of(resp);
        match answer.class {
            // An empty 2xx is let through: nothing in it claims to be something else.
            Class::Success
                if resp.api_version().is_none()
                    && !resp.body.is_empty()
                    && serde_json::from_slice::<serde_json::Value>(&resp.body).is_err() =>
            {
                answer.not_the_api(
                    resp,
                    format!(
                        "HTTP {} without a Docker-Distribution-API-Version header and without a JSON body",
                        answer.status
                    ),
                );
            }
            Class::NotFound | Class::RepositoryUnknown => {
                answer.not_the_api(
                    resp,
                    "nothing serves the registry API there (a wrong host, port or path prefix)"
                        .to_string(),
                );
            }
            _ => {}
        }
        answer
    }

    /// The answer to a manifest HEAD (`with_body` false) or GET: the API's when it is not
    /// an HTML page (HEAD: a sign-in page has no other tell without a body; an unusual
    /// `Content-Type` alone is not judged, as clients disagree on it) and its body parses
    /// as a manifest or an index (GET), and a `Docker-Content-Digest` sent with a body
    /// matches the body's bytes. A GET's 404 is
    /// MANIFEST_UNKNOWN / NAME_UNKNOWN only when the OCI error body says so.
    pub fn manifest(resp: &Response, with_body: bool) -> Answer {
        let mut answer = Answer::of(resp);
        match answer.class {
            Class::Success if with_body => {
                if let Err(why) = manifest_body(&resp.body) {
                    answer.not_the_api(resp, why);
                } else if let Some(sent) = resp
                    .header("docker-content-digest")
                    .and_then(Digest::parse)
                    .filter(|d| d.as_str().starts_with("sha256:"))
                {
                    let actual = Digest::sha256_of(&resp.body);
                    if sent != actual {
                        answer.class = Class::Malformed;
                        answer.foreign = Some(Box::new(Foreign::of(
                            resp,
                            format!(
                                "the manifest's bytes hash to {actual}, not to the Docker-Content-Digest {sent} sent with them: clients refuse it as corrupt"
                            ),
                        )));
                    }
                }
            }
            Class::NotFound if with_body && answer.error.is_none() => {
                answer.not_the_api(resp, "HTTP 404 without an OCI error body".to_string());
            }
            _ => {}
        }
        answer
    }

    /// The answer to opening an upload session: the API's 202 carries a `Location`.
    pub fn upload(resp: &Response) -> Answer {
        let mut answer = Answer::of(resp);
        if answer.class == Class::Success
            && answer.status == 202
            && resp.header("location").is_none_or(|l| l.trim().is_empty())
        {
            answer.class = Class::Malformed;
            answer.foreign = Some(Box::new(Foreign::of(
                resp,
                "HTTP 202 without a Location: there is no session to upload to".to_string(),
            )));
        }
        answer
    }

    /// A 401 that challenges (readable or not): the registry wants authentication. On
    /// `/v2/` without credentials, that is a reachable registry.
    pub fn challenges(&self) -> bool {
        self.status == 401
            && matches!(
                self.class,
                Class::Unauthenticated | Class::NotPermitted | Class::BadChallenge
            )
    }

    /// An upload session was opened: 202 (with a `Location`, see [`Answer::upload`]).
    pub fn session_opened(&self) -> bool {
        self.class == Class::Success && self.status == 202
    }

    /// A cross-repository mount was made: 201 (a 202 is the spec's fallback to an ordinary
    /// upload session, [`Answer::session_opened`]).
    pub fn mounted(&self) -> bool {
        self.class == Class::Success && self.status == 201
    }

    fn not_the_api(&mut self, resp: &Response, why: String) {
        self.class = Class::NotTheApi;
        self.foreign = Some(Box::new(Foreign::of(resp, why)));
    }

    /// The registry's own error message, bounded and on one line, when it sent one.
    pub fn message(&self) -> Option<&str> {
        self.error
            .as_ref()
            .map(|e| e.message.as_str())
            .filter(|m| !m.trim().is_empty())
    }

    /// A HEAD refused without a body (401, 403, 404, 405): the reason is unreadable, so
    /// the same request should be asked again with GET before it is judged.
    pub fn refused_without_body(&self, resp: &Response) -> bool {
        matches!(self.status, 401 | 403 | 404 | 405) && resp.body.is_empty()
    }

    /// `HTTP 404 NAME_UNKNOWN` and the like, for messages.
    pub fn describe(&self) -> String {
        // A token without the action: the challenge says so more precisely than the body's
        // UNAUTHORIZED.
        if self.status == 401 && self.class == Class::NotPermitted {
            return "HTTP 401 insufficient_scope".to_string();
        }
        if self.class == Class::BadChallenge {
            return "HTTP 401 with an unreadable WWW-Authenticate challenge".to_string();
        }
        if self.class == Class::NoChallenge {
            return "HTTP 401 without a WWW-Authenticate challenge".to_string();
        }
        if let (Class::NotTheApi, Some(f)) = (self.class, &self.foreign) {
            return format!("HTTP {} ({})", self.status, f.describe());
        }
        match &self.error {
            // Codes that only restate the status add nothing.
            Some(e)
                if !matches!(
                    (self.status, &e.code),
                    (401, ErrorCode::Unauthorized) | (429, ErrorCode::TooManyRequests)
                ) =>
            {
                format!("HTTP {} {}", self.status, e.code.as_str())
            }
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// A 401 that names no scheme at all and none that could not be read: no header, or an
/// empty one.
fn no_challenge(resp: &Response) -> bool {
    let ch = Challenges::parse(&resp.headers);
    !ch.unreadable && ch.bearer.is_none() && !ch.basic
}

/// The media type of a response without parameters, lower-cased.
pub(crate) fn media_type(resp: &Response) -> String {
    resp.header("content-type")
        .and_then(|ct| ct.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// An HTML page: by its type, or, without one, by its first bytes.
fn is_html(resp: &Response) -> bool {
    let mt = media_type(resp);
    if mt == "text/html" || mt == "application/xhtml+xml" {
        return true;
    }
    if !mt.is_empty() {
        return false;
    }
    let start = &resp.body[..resp.body.len().min(256)];
    let text = String::from_utf8_lossy(start)
        .trim_start()
        .to_ascii_lowercase();
    text.starts_with("<!doctype html") || text.starts_with("<html")
}

/// Whether a body is a manifest or an index, leniently (what clients need to go on:
/// `schemaVersion` and the lists they read), or why not.
fn manifest_body(body: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        layers: Option<Vec<serde_json::Value>>,
        manifests: Option<Vec<serde_json::Value>>,
        /// OCI artifact manifests (1.1 drafts).
        blobs: Option<Vec<serde_json::Value>>,
        /// Docker schema 1.
        #[serde(rename = "fsLayers")]
        fs_layers: Option<Vec<serde_json::Value>>,
    }
    let m: Manifest =
        serde_json::from_slice(body).map_err(|_| "a body that is not manifest JSON".to_string())?;
    if m.schema_version.is_none() {
        return Err("JSON without schemaVersion: not a manifest".into());
    }
    if m.config.is_none()
        && m.layers.is_none()
        && m.manifests.is_none()
        && m.blobs.is_none()
        && m.fs_layers.is_none()
    {
        return Err("JSON with neither layers nor manifests: not a manifest".into());
    }
    Ok(())
}

/// A 401 whose challenge cannot be read and names no scheme that could be answered.
fn unreadable_challenge(resp: &Response) -> bool {
    let ch = Challenges::parse(&resp.headers);
    ch.unreadable && ch.bearer.is_none() && !ch.basic
}

/// A 401 whose Bearer challenge says the token lacks an action.
pub fn insufficient_scope(resp: &Response) -> bool {
    Challenges::parse(&resp.headers)
        .bearer
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCI_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: &str) -> Answer {
        Answer::of(&Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec().into(),
            redirected_to: None,
        })
    }

    #[test]
    fn oci_error_bodies_are_parsed() {
        let e = OciError::parse(br#"{"errors":[{"code":"UNSUPPORTED","message":"x"}]}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert_eq!(e.message, "x");
        assert_eq!(OciError::parse(b"Method not allowed"), None);
        assert_eq!(OciError::parse(br#"{"errors":[]}"#), None);
    }

    // goharbor/harbor src/server/middleware/readonly: 403 DENIED in read-only mode.
    #[test]
    fn harbor_read_only_403_is_read_only() {
        let a = answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"The system is in read only mode. Any modification is prohibited."}]}"#,
        );
        assert_eq!(a.class, Class::ReadOnly);
    }

    // goharbor/harbor src/server/middleware/repoproxy/proxy.go: a proxy-cache project
    // refuses pushes with 403 DENIED and this message.
    #[test]
    fn harbor_proxy_cache_project_refuses_push_as_a_proxy_cache() {
        let a = answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"can not push artifact to a proxy project: dockerhub-proxy"}]}"#,
        );
        assert_eq!(a.class, Class::ProxyCache);
        assert_eq!(
            a.message(),
            Some("can not push artifact to a proxy project: dockerhub-proxy")
        );
    }

    // awslabs/amazon-ecr-credential-helper#7: ECR's 403 for a token older than 12 h.
    #[test]
    fn ecr_expired_token_403_is_credentials_expired() {
        let a = answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
        );
        assert_eq!(a.class, Class::CredentialsExpired);
    }

    #[test]
    fn name_unknown_is_not_manifest_unknown() {
        assert_eq!(
            answer(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#).class,
            Class::RepositoryUnknown
        );
        assert_eq!(
            answer(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .class,
            Class::NotFound
        );
        // A router's page is not the API saying "no such manifest".
        assert_eq!(answer(404, "404 page not found").class, Class::NotTheApi);
        // A HEAD has no body: it says nothing either way, and is asked again with GET.
        assert_eq!(answer(404, "").class, Class::NotFound);
    }

    #[test]
    fn an_unreadable_challenge_is_a_bad_challenge_not_a_refusal() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.append(
                "www-authenticate",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
            Answer::of(&Response {
                status: StatusCode::UNAUTHORIZED,
                headers,
                body: Default::default(),
                redirected_to: None,
            })
            .class
        };
        assert_eq!(
            with("Bearer realm=\"http://x/tökén\"".as_bytes()),
            Class::BadChallenge
        );
        assert_eq!(with(b"Bearer realm=\"unterminated"), Class::BadChallenge);
        assert_eq!(with(b"Basic realm=\"x\""), Class::Unauthenticated);
        // No challenge at all, or an empty one, is no challenge: not broken quoting.
        assert_eq!(answer(401, "").class, Class::NoChallenge);
        assert_eq!(with(b""), Class::NoChallenge);
        assert_eq!(with(b"   "), Class::NoChallenge);
    }

    fn with(status: u16, content_type: &str, body: &[u8], redirected_to: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type", content_type.parse().unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.to_vec().into(),
            redirected_to: redirected_to.map(|u| url::Url::parse(u).unwrap()),
        }
    }

    // oauth2-proxy's and Authelia's sign-in pages: HTML with a password field, reached by
    // redirect. The evidence is bounded, on one line, and names the page.
    #[test]
    fn a_sign_in_page_is_not_the_api_and_says_where_it_is() {
        let page = format!(
            "<!DOCTYPE html>\n<html>\r\n<body>\t<form><input type=\"password\"></form>{}</body></html>",
            "x".repeat(5000)
        );
        let resp = with(
            200,
            "text/html; charset=utf-8",
            page.as_bytes(),
            Some("https://sso.example/oauth2/sign_in"),
        );
        let a = Answer::api_root(&resp);
        assert_eq!(a.class, Class::NotTheApi);
        let f = a.foreign.as_deref().unwrap();
        assert!(f.sign_in);
        assert_eq!(
            f.final_url.as_deref(),
            Some("https://sso.example/oauth2/sign_in")
        );
        assert_eq!(f.content_type.as_deref(), Some("text/html"));
        assert!(
            f.first_bytes
                .starts_with("<!DOCTYPE html> <html> <body> <form>")
        );
        assert!(f.first_bytes.chars().count() <= 120);
        assert!(!f.first_bytes.contains('\n'));
        assert!(
            a.describe()
                .contains("a sign-in page at https://sso.example/oauth2/sign_in")
        );
        // The same page on a manifest GET and an upload.
        assert_eq!(Answer::manifest(&resp, true).class, Class::NotTheApi);
        assert_eq!(Answer::upload(&resp).class, Class::NotTheApi);
    }

    #[test]
    fn the_api_root_needs_the_header_or_json() {
        assert_eq!(
            Answer::api_root(&with(200, "application/json", b"{}", None)).class,
            Class::Success
        );
        assert_eq!(
            Answer::api_root(&with(200, "", b"", None)).class,
            Class::Success
        );
        assert_eq!(
            Answer::api_root(&with(200, "text/plain", b"OK", None)).class,
            Class::NotTheApi
        );
        assert_eq!(
            Answer::api_root(&with(404, "text/plain", b"", None)).class,
            Class::NotTheApi
        );
    }

    #[test]
    fn manifests_must_match_their_digest() {
        let body = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let good = Digest::sha256_of(body);
        let mut resp = with(200, OCI_MANIFEST_TYPE, body, None);
        assert_eq!(Answer::manifest(&resp, true).class, Class::Success);
        resp.headers
            .insert("docker-content-digest", good.as_str().parse().unwrap());
        assert_eq!(Answer::manifest(&resp, true).class, Class::Success);
        let other = Digest::sha256_of(b"other");
        resp.headers
            .insert("docker-content-digest", other.as_str().parse().unwrap());
        assert_eq!(Answer::manifest(&resp, true).class, Class::Malformed);
        assert_eq!(
            Answer::manifest(
                &with(200, "application/json", br#"{"hello":1}"#, None),
                true
            )
            .class,
            Class::NotTheApi
        );
        assert_eq!(
            Answer::upload(&with(202, "", b"", None)).class,
            Class::Malformed
        );
    }

    #[test]
    fn the_two_kinds_of_405_differ() {
        assert_eq!(
            answer(
                405,
                r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#
            )
            .class,
            Class::Unsupported
        );
        assert_eq!(answer(405, "Method not allowed").class, Class::ReadOnly);
    }
}
