//! What a check asks of a registry and what comes back: [`Request`], [`Response`] (a body of
//! at most [`MAX_BODY_BYTES`], where redirects led), the [`Trail`] of [`RequestRecord`]s and
//! facts one check run leaves (rate limits and `Retry-After` by [`observe_limits`], whether
//! the credentials were accepted), the headers kept for debug output, and [`RequestError`]
//! with its bounded [`Reason`]s.
//!
//! It does not send anything (`transport`), authenticate (`auth`, `token`) or judge an
//! answer (`crate::distribution`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, header};
use url::Url;

use crate::config::SecretError;
use crate::docker_config::DockerConfigError;
use crate::outcome::{AuthUsed, Facts, RateLimit, Reason, RequestRecord};

use super::redact::{REDACTED, Redactor};
use super::token::TokenError;

/// One request a check wants made. `path` is relative to the registry's base URL.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub accept: Vec<&'static str>,
    /// The token scope, e.g. `repository:library/alpine:pull`.
    pub scope: Option<String>,
    /// Read the body (bounded). HEAD never has one.
    pub read_body: bool,
    /// Send no credentials at all: for reachability probes.
    pub anonymous: bool,
    /// Follow redirects (up to 5) inside the client; when false, a 3xx is the answer.
    pub follow_redirects: bool,
    /// A shorter bound than the registry's timeout, for this request only.
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            accept: Vec::new(),
            scope: None,
            read_body: true,
            anonymous: false,
            follow_redirects: true,
            timeout: None,
        }
    }

    /// Answers a redirect with the 3xx itself, for the caller to follow.
    pub fn no_redirects(mut self) -> Self {
        self.follow_redirects = false;
        self
    }

    pub fn accept(mut self, media_types: &[&'static str]) -> Self {
        self.accept.extend_from_slice(media_types);
        self
    }

    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// A registry's answer, with a body of at most [`MAX_BODY_BYTES`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Where the answer came from when redirects led away from the URL asked for (its
    /// query and fragment dropped: they may carry state or a return address): a sign-in
    /// page reached by redirect is told apart by it. `None` when no redirect happened.
    pub redirected_to: Option<Url>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's API version from `OCI-Distribution-API-Version` or
    /// `Docker-Distribution-API-Version`, if it looks like one (it becomes a label value).
    pub fn api_version(&self) -> Option<String> {
        let v = self
            .header("oci-distribution-api-version")
            .or_else(|| self.header("docker-distribution-api-version"))?
            .trim();
        let sane = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./-_".contains(&b));
        sane.then(|| v.to_string())
    }
}

/// Response headers kept for debug output. None of them carries a credential by design;
/// `Location` is cut to its path, because its query may hold upload state. A registry may
/// still echo a credential into any of them: [`Redactor`] blanks such values.
pub const DEBUG_HEADERS: &[&str] = &[
    "content-type",
    "docker-content-digest",
    "docker-distribution-api-version",
    "oci-distribution-api-version",
    "www-authenticate",
    "location",
    "ratelimit-limit",
    "ratelimit-remaining",
    "retry-after",
    "oci-chunk-min-length",
    "oci-filters-applied",
    "allow",
    "range",
    // What names the product (`implementation`): never a credential.
    "server",
    "x-jfrog-version",
    "x-artifactory-id",
    "gitlab-container-registry-version",
];

pub(super) fn debug_headers(headers: &HeaderMap, redactor: &Redactor) -> Vec<(String, String)> {
    // One pass over the response's headers (their names are lower case already), rather
    // than a lookup per listed name, which parses each name again on every request.
    let mut out = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !DEBUG_HEADERS.contains(&name) {
            continue;
        }
        let Ok(text) = value.to_str() else { continue };
        let text = if name == "location" {
            text.split('?').next().unwrap_or_default()
        } else {
            text
        };
        // Checked whole, before the cut: a secret straddling the cut is still found.
        if redactor.finds(text) {
            out.push((name.to_string(), REDACTED.to_string()));
            continue;
        }
        // Bounded: a hostile registry cannot bloat the debug output or the history.
        let text: String = text.chars().take(256).collect();
        out.push((name.to_string(), text));
    }
    out
}

/// The requests made by one check run, and the facts the client learned on the way
/// (token timings, certificate expiry, rate limits), which `run_check` moves into the result.
#[derive(Debug, Default)]
pub struct Trail(Mutex<TrailInner>);

#[derive(Debug, Default)]
pub(super) struct TrailInner {
    pub(super) records: Vec<RequestRecord>,
    pub(super) facts: Facts,
    /// Evidence that the configured credentials are good: a token service issued a token
    /// for them, or a request carrying Basic credentials or the static bearer token got a
    /// 2xx.
    pub(super) credentials_accepted: bool,
}

/// Where a request ended up after redirects: the origin that answered it, or at which it
/// failed. A blob download is redirected to a storage or CDN host, whose failure must be
/// named as that host's, not the registry's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// `scheme://host[:port]`: never a path, a query (presigned URLs carry signatures
    /// there) or credentials.
    pub origin: String,
    /// Whether that is another origin than the registry's (a redirect left it).
    pub redirected: bool,
}

impl Trail {
    // std Mutex: held only to push or take, never across an .await.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut TrailInner) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub(super) fn push(&self, record: RequestRecord) {
        self.with(|t| t.records.push(record));
    }

    pub(super) fn facts(&self, f: impl FnOnce(&mut Facts)) {
        self.with(|t| f(&mut t.facts));
    }

    /// Whether any token request was made (a token fetched, not one taken from the cache).
    pub fn has_token_request(&self) -> bool {
        self.with(|t| t.facts.token_request_duration.is_some())
    }

    /// Whether, in this run, the token service issued a token for the configured
    /// credentials or a request carrying Basic credentials was answered 2xx: then a later
    /// 401/403 on a repository is a missing permission, not bad credentials.
    pub fn credentials_accepted(&self) -> bool {
        self.with(|t| t.credentials_accepted)
    }

    /// Whether any request so far carried credentials or a token.
    pub fn sent_credentials(&self) -> bool {
        self.with(|t| t.records.iter().any(|r| r.auth != AuthUsed::None))
    }

    /// The requests made so far, in order, and the facts learned.
    pub fn take(&self) -> (Vec<RequestRecord>, Facts) {
        self.with(|t| (std::mem::take(&mut t.records), std::mem::take(&mut t.facts)))
    }
}

/// Why a request got no usable answer. The text never holds a URL query or a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("{detail}")]
    Transport { reason: Reason, detail: String },
    #[error("the response body exceeds {limit} bytes; is this a registry?")]
    BodyTooLarge { limit: usize },
    #[error(
        "username is set but no password: a secret reference probably failed to resolve; set password or password_file"
    )]
    MissingPassword,
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("{0}")]
    DockerConfig(#[from] DockerConfigError),
    #[error("{0}")]
    Token(#[from] TokenError),
    /// A redirect led to another host, which asked for authentication: the registry's
    /// credentials stay with the registry, and an anonymous token did not do.
    #[error(
        "the registry redirected the request to {host}, which wants authentication ({scheme}) and gives no anonymous access; the exporter sends the registry's credentials to no other host (nor would docker or containerd); make the storage behind the redirect (blob store, CDN) accept the signed redirect without credentials, or point `url` at the host that serves the content"
    )]
    RedirectedHostWantsAuth { host: String, scheme: &'static str },
}

impl RequestError {
    pub fn reason(&self) -> Reason {
        match self {
            RequestError::Transport { reason, .. } => *reason,
            RequestError::BodyTooLarge { .. } => Reason::InvalidResponse,
            RequestError::MissingPassword => Reason::MissingPassword,
            RequestError::Secret(_) | RequestError::DockerConfig(_) => Reason::SecretUnreadable,
            RequestError::Token(t) => t.reason(),
            RequestError::RedirectedHostWantsAuth { .. } => Reason::RedirectAuthRequired,
        }
    }
}

/// Rate-limit headers (`RateLimit-Limit: 100;w=21600`) and the `Retry-After` of a 429 or 503.
pub(crate) fn observe_limits(headers: &HeaderMap, status: StatusCode, trail: &Trail) {
    let number = |name: &str| {
        let v = headers.get(name)?.to_str().ok()?;
        v.split(';')
            .next()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
    };
    if let (Some(limit), Some(remaining)) =
        (number("ratelimit-limit"), number("ratelimit-remaining"))
    {
        trail.facts(|f| f.rate_limit = Some(RateLimit { limit, remaining }));
    }
    // RFC 9110 §10.2.3: Retry-After rides on 503 as well as on 429.
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && let Some(after) = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let after = after.trim();
        let delay = after
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .or_else(|| {
                httpdate::parse_http_date(after)
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::now()).ok())
            });
        if let Some(delay) = delay {
            trail.facts(|f| f.retry_after = Some(delay.min(MAX_RETRY_AFTER)));
        }
    }
}

/// Bodies larger than this are cut off: a registry that streams forever cannot exhaust memory.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest `Retry-After` honoured: the scheduler adds it to `Instant::now()`, so a
/// registry's `Retry-After: 18446744073709551615` must not overflow it, nor silence its
/// own monitoring for longer than an hour.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
