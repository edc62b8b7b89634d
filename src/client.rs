//! The HTTP client for one registry: connection reuse, TLS, bounded bodies, and auth.
//!
//! Owns how a request reaches a registry: the `reqwest` client (one per distinct TLS
//! setting, shared by the registries of a configuration that have it, with one bounded
//! connection pool; another shard's registry, probed rarely, gets one of its own at its first
//! `/probe`; timeouts are set per request), the authentication flows (anonymous,
//! basic, static bearer, and the registry token flow with a per-scope token cache), the
//! classification of transport errors into bounded reasons, and the trail of requests a
//! check made. What belongs to one registry (its token cache, the challenge it sent, its
//! Docker-config lookup, the secrets to redact) stays in its own [`RegistryClient`]. It does
//! not decide what a status code means for a check: that is each check's job.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument as _;
use url::Url;

use crate::config::{Credentials, SecretError, Target, TlsSettings};
use crate::docker_config::{self, DockerAuth, DockerConfigError};
use crate::outcome::{AuthMethod, AuthUsed, Facts, RateLimit, Reason, RequestRecord};
use crate::tls::ChainExpiries;

/// Bodies larger than this are cut off: a registry that streams forever cannot exhaust memory.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Token responses are small; anything larger is refused.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// When a token server does not say how long a token lives, or says zero or less: the
/// Docker token spec's default.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is trusted, whatever the server says: a lifetime near `u64::MAX`
/// seconds overflows time arithmetic, and a day is longer than any real token lives.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest `Retry-After` honoured: the scheduler adds it to `Instant::now()`, so a
/// registry's `Retry-After: 18446744073709551615` must not overflow it, nor silence its
/// own monitoring for longer than an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// A token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(10);

/// The User-Agent the exporter sends, naming itself and its version.
pub const USER_AGENT: &str = concat!("oci-registry-exporter/", env!("CARGO_PKG_VERSION"));

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

fn debug_headers(headers: &HeaderMap, redactor: &Redactor) -> Vec<(String, String)> {
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

/// What replaces a value that holds a secret.
pub const REDACTED: &str = "[redacted]";

/// The secrets a registry could echo back in what it answers: the credentials this client
/// resolved (password, the base64 of `user:password` that Basic auth sends, a static or
/// identity token) and every token it holds. Anything registry-controlled that reaches an
/// output (kept headers, messages, evidence) goes through [`Redactor::finds`] or
/// [`Redactor::scrub`] first.
pub struct Redactor {
    needles: Vec<SecretString>,
}

impl Redactor {
    fn of(resolved: &Resolved) -> Vec<SecretString> {
        let mut out = Vec::new();
        let mut add = |text: String| {
            if !text.is_empty() {
                out.push(SecretString::from(text));
            }
        };
        match resolved {
            Resolved::Anonymous => {}
            Resolved::Basic { username, password } => {
                let password = password.expose_secret();
                // Unpadded: a prefix of the padded form, so an echo without `=` is caught too.
                add(base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(format!("{username}:{password}")));
                add(url::form_urlencoded::byte_serialize(password.as_bytes()).collect());
                add(password.to_string());
            }
            Resolved::Bearer(token) | Resolved::Identity(token) => {
                add(token.expose_secret().to_string());
            }
        }
        out
    }

    /// Whether `text` holds any of the secrets.
    pub fn finds(&self, text: &str) -> bool {
        self.needles
            .iter()
            .any(|n| text.contains(n.expose_secret()))
    }

    /// `text` with every secret in it replaced by [`REDACTED`]. Only whole words count
    /// (no letter or digit on either side): the exporter's own words stay intact when a
    /// secret is short ("b" is not taken out of "but"), and an echo is still caught, as it
    /// always sits between separators (`echo=<secret>`, `Basic <base64>`, a path segment).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            out = replace_words(&out, n.expose_secret(), REDACTED);
        }
        out
    }
}

/// `text` with each occurrence of `word` that has no letter or digit on either side
/// replaced by `with`.
fn replace_words(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() || !text.contains(word) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        // What precedes may already be in `out` when the match starts `rest`.
        let before = rest[..i].chars().next_back().or(out.chars().next_back());
        let after = rest[i + word.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        // Not a whole word: keep its first character and look again after it.
        let keep = if alone {
            0
        } else {
            word.chars().next().map_or(1, char::len_utf8)
        };
        out.push_str(&rest[..i + keep]);
        if alone {
            out.push_str(with);
            rest = &rest[i + word.len()..];
        } else {
            rest = &rest[i + keep..];
        }
    }
    out.push_str(rest);
    out
}

/// The requests made by one check run, and the facts the client learned on the way
/// (token timings, certificate expiry, rate limits), which `run_check` moves into the result.
#[derive(Debug, Default)]
pub struct Trail(Mutex<TrailInner>);

#[derive(Debug, Default)]
struct TrailInner {
    records: Vec<RequestRecord>,
    facts: Facts,
    /// Evidence that the configured credentials are good: a token service issued a token
    /// for them, or a request carrying Basic credentials or the static bearer token got a
    /// 2xx.
    credentials_accepted: bool,
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

/// The forward proxy a request goes through, as it may be shown (no credentials), and
/// where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInUse {
    /// `scheme://host[:port]` of the proxy.
    pub shown: String,
    /// `proxy_url`, or the environment variable it came from (`HTTPS_PROXY`, ...).
    pub source: &'static str,
}

impl fmt::Display for ProxyInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the proxy {} (from {})", self.shown, self.source)
    }
}

/// How a client's requests find their proxy: the registry's `proxy_url`, or the
/// environment's variables as reqwest reads them (with `NO_PROXY`).
enum ProxyRoute {
    Configured(Url),
    // Boxed: the matcher is large, and one route lives per shared client.
    Environment(Box<hyper_util::client::proxy::matcher::Matcher>),
}

impl ProxyRoute {
    fn for_url(&self, url: &Url) -> Option<ProxyInUse> {
        match self {
            ProxyRoute::Configured(proxy) => Some(ProxyInUse {
                shown: crate::config::proxy_shown(proxy),
                source: "proxy_url",
            }),
            ProxyRoute::Environment(matcher) => {
                let uri: http::Uri = url.as_str().parse().ok()?;
                let hit = matcher.intercept(&uri)?;
                let proxy = hit.uri();
                let shown = format!(
                    "{}://{}{}",
                    proxy.scheme_str().unwrap_or("http"),
                    proxy.host().unwrap_or("?"),
                    proxy
                        .port_u16()
                        .map(|p| format!(":{p}"))
                        .unwrap_or_default()
                );
                Some(ProxyInUse {
                    shown,
                    source: env_proxy_source(url.scheme()),
                })
            }
        }
    }
}

/// The variable a proxy for `scheme` comes from, in the order curl and reqwest read them.
fn env_proxy_source(scheme: &str) -> &'static str {
    let names: &[&'static str] = if scheme == "https" {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    names
        .iter()
        .copied()
        .find(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
        .unwrap_or("the environment")
}

impl Trail {
    // std Mutex: held only to push or take, never across an .await.
    fn with<R>(&self, f: impl FnOnce(&mut TrailInner) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn push(&self, record: RequestRecord) {
        self.with(|t| t.records.push(record));
    }

    fn facts(&self, f: impl FnOnce(&mut Facts)) {
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

/// Why the token exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("token endpoint {realm} unreachable: {detail}")]
    Unreachable { realm: String, detail: String },
    /// `said`, here and below: the token service's own message, `: "<message>"` (bounded,
    /// one line; `run_check` redacts it), or empty.
    #[error(
        "token endpoint {realm} rejected the credentials (HTTP {status}{said}); check username and password"
    )]
    Rejected {
        realm: String,
        status: u16,
        said: String,
    },
    /// No credentials are configured and the token service hands out no anonymous token
    /// for the scope (GHCR does so for private packages).
    #[error(
        "token endpoint {realm} refuses an anonymous token (HTTP {status}{said}): the repository is private; configure credentials for this registry"
    )]
    AnonymousRefused {
        realm: String,
        status: u16,
        said: String,
    },
    #[error(
        "token endpoint {realm} answered HTTP {status}{said}; check the registry's token service"
    )]
    Status {
        realm: String,
        status: u16,
        said: String,
    },
    /// The token service answered 429: the exporter (and likely users) are rate limited by
    /// the token host, not by the registry.
    #[error(
        "token endpoint {realm} answered HTTP 429: the token service is rate limiting this client; users of the same account or address are limited too; raise `interval`"
    )]
    RateLimited { realm: String },
    #[error("token endpoint {realm} sent an invalid answer: {detail}")]
    Invalid { realm: String, detail: String },
    #[error("the registry's token realm is not an http(s) URL; refusing to send credentials there")]
    BadRealm,
    /// An HTTPS registry named a plain-HTTP realm: credentials would travel in clear text.
    #[error(
        "the registry is served over https:// but names the plain-HTTP token realm {realm}: the credentials would travel in clear text, so they are not sent; configure the registry's token realm with an https:// URL (Distribution: auth.token.realm)"
    )]
    InsecureRealm { realm: String },
}

impl TokenError {
    pub fn reason(&self) -> Reason {
        match self {
            TokenError::Unreachable { .. } => Reason::TokenEndpointUnreachable,
            TokenError::Rejected { .. } => Reason::InvalidCredentials,
            TokenError::AnonymousRefused { .. } => Reason::Unauthorized,
            TokenError::Status { .. } | TokenError::Invalid { .. } | TokenError::BadRealm => {
                Reason::TokenEndpointError
            }
            TokenError::InsecureRealm { .. } => Reason::InsecureTokenRealm,
            TokenError::RateLimited { .. } => Reason::RateLimited,
        }
    }
}

/// A `Bearer` challenge: where to get a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// The challenges of a `WWW-Authenticate` header, parsed with care for quoting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenges {
    pub bearer: Option<BearerChallenge>,
    pub basic: bool,
    /// A `WWW-Authenticate` value could not be read: bytes outside visible ASCII, or no
    /// challenge syntax (broken quoting). `distribution::Answer::of` judges what that means.
    pub unreadable: bool,
}

/// The longest `WWW-Authenticate` value read as a challenge. Real ones are a few hundred
/// bytes (a realm, a service and a scope or two); a 64 KiB one named a realm no HTTP client
/// can request ("Parsed Url is not a valid Uri"), which read as an unreachable token service
/// and sent the reader to the network. Longer is an unusable challenge.
pub const MAX_CHALLENGE_BYTES: usize = 8 * 1024;

impl Challenges {
    pub fn parse(headers: &HeaderMap) -> Challenges {
        let mut out = Challenges::default();
        for value in headers.get_all(header::WWW_AUTHENTICATE) {
            if value.len() > MAX_CHALLENGE_BYTES {
                out.unreadable = true;
                continue;
            }
            let Ok(text) = value.to_str() else {
                out.unreadable = true;
                continue;
            };
            // An empty value (a proxy that blanks the header rather than removing it) is
            // no challenge at all, not a broken one.
            if text.trim().is_empty() {
                continue;
            }
            let Ok(parsed) = http_auth::parse_challenges(text) else {
                out.unreadable = true;
                continue;
            };
            for c in parsed {
                let param = |name: &str| {
                    c.params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_unescaped())
                };
                if c.scheme.eq_ignore_ascii_case("bearer") {
                    if let Some(realm) = param("realm") {
                        out.bearer.get_or_insert(BearerChallenge {
                            realm,
                            service: param("service"),
                            scope: param("scope"),
                            error: param("error"),
                        });
                    }
                } else if c.scheme.eq_ignore_ascii_case("basic") {
                    out.basic = true;
                }
            }
        }
        out
    }
}

struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

/// Credentials as they stand at the moment of a request (files and helpers are re-read).
#[derive(Clone)]
enum Resolved {
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
    /// A static bearer token: sent as is, no token exchange.
    Bearer(SecretString),
    /// An OAuth2 refresh token: exchanged with the refresh_token grant.
    Identity(SecretString),
}

/// What a registry said about authentication.
#[derive(Debug, Clone)]
enum Negotiated {
    /// `GET /v2/` answered 2xx without credentials.
    Open,
    /// A `Basic` challenge.
    Basic,
    /// A `Bearer` challenge: the token flow.
    Bearer(BearerChallenge),
}

/// How long credentials from a Docker config or helper are reused before a fresh lookup.
const DOCKER_CONFIG_CACHE: Duration = Duration::from_secs(60);

/// How long a pooled connection may stay idle before it is closed. Long enough for the
/// checks of one round (which run one after the other, each waiting for a permit) and for
/// registries checked every few seconds to reuse their connection; short enough that a
/// registry checked every minute (the default) or less often holds no idle connection
/// between its rounds (about 18 KiB each, measured: at 1,000 such registries that was the
/// largest part of the memory), and shorter than the idle timeouts servers and load
/// balancers commonly use (60 s on AWS load balancers, 75 s in nginx), so the exporter
/// closes an idle connection before a server does it under a request on its way.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `reqwest::Client` (a connection pool and a rustls configuration) and the chain-expiry
/// recorder of its certificate verifier, shared by the registries with the same TLS settings.
struct SharedHttp {
    http: reqwest::Client,
    /// The same, following no redirect: for [`Request::no_redirects`]. Its pool is used by
    /// blob downloads only.
    manual: reqwest::Client,
    chain_expiries: Arc<ChainExpiries>,
    /// Which proxy its requests go through, to name it when it fails.
    proxy: ProxyRoute,
}

impl SharedHttp {
    /// The client for `targets`, which all have the TLS settings `tls`. `max_idle_per_host`
    /// bounds the idle connections kept per host: more than the checks that can run at once
    /// could never all be used again.
    fn build(
        tls: &TlsSettings,
        proxy: Option<&Url>,
        targets: &[&Target],
        max_idle_per_host: usize,
    ) -> Result<SharedHttp, String> {
        // A registry and its token endpoint present a leaf each; a few more leave room for
        // certificate renewals and redirects.
        let chains = 16 + 4 * targets.len();
        let (tls, chain_expiries) =
            crate::tls::client_config(tls, chains).map_err(|e| e.to_string())?;
        // Each request carries its registry's own timeout, which bounds its connection too.
        // This bound is for connections a request no longer waits for (hyper finishes a
        // connection it started for a request that got a pooled one meanwhile): the longest
        // timeout of the registries sharing the client, so none is cut short.
        let connect_timeout = targets
            .iter()
            .map(|t| t.timeout)
            .max()
            .unwrap_or(crate::config::DEFAULT_TIMEOUT);
        // A configured proxy replaces the environment's (reqwest then reads no variable).
        let (configured, route) = match proxy {
            Some(url) => {
                let p = reqwest::Proxy::all(url.as_str()).map_err(|_| {
                    format!(
                        "proxy_url {} is not usable as a proxy",
                        crate::config::proxy_shown(url)
                    )
                })?;
                (Some(p), ProxyRoute::Configured(url.clone()))
            }
            None => (
                None,
                ProxyRoute::Environment(Box::new(
                    hyper_util::client::proxy::matcher::Matcher::from_env(),
                )),
            ),
        };
        let build = |redirects: reqwest::redirect::Policy| {
            let mut builder = reqwest::Client::builder();
            if let Some(p) = &configured {
                builder = builder.proxy(p.clone());
            }
            builder
                .user_agent(USER_AGENT)
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(max_idle_per_host.max(1))
                .redirect(redirects)
                // The leaf each connection presented, on every response: the key to its
                // chain's expiry in `chain_expiries`.
                .tls_info(true)
                // Trust, client certificate and the chain-expiry recorder: see `tls`.
                .tls_backend_preconfigured(tls.clone())
                .build()
                .map_err(|e| e.to_string())
        };
        Ok(SharedHttp {
            // The same for every registry, so not part of what tells clients apart. reqwest
            // drops `Authorization` when a redirect leaves the origin, per request.
            http: build(reqwest::redirect::Policy::limited(5))?,
            // A failure after a followed redirect carries the first URL, not the host that
            // failed: blob downloads follow their redirects one by one to name each host.
            manual: build(reqwest::redirect::Policy::none())?,
            chain_expiries,
            proxy: route,
        })
    }
}

/// The client for one registry, shared by all its checks.
pub struct RegistryClient {
    /// Shared with the other registries of its configuration that have the same TLS settings
    /// (a client built with [`RegistryClient::new`] has its own).
    shared: Arc<SharedHttp>,
    /// This registry's `timeout`, set on each of its requests.
    timeout: Duration,
    base: Url,
    credentials: Credentials,
    // std Mutex: never held across .await.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// How the registry wants to be authenticated, once it has said so.
    challenge: Mutex<Option<Negotiated>>,
    docker: Mutex<Option<(Instant, Resolved, AuthMethod)>>,
    /// Held while the Docker config is looked up (a tokio mutex: held across the helper).
    docker_lookup: tokio::sync::Mutex<()>,
    /// The secrets of the credentials last resolved, for the [`Redactor`].
    resolved_secrets: Mutex<Vec<SecretString>>,
    /// What the pull check last learnt from a manifest (see [`PullMemo`]).
    pull_memo: Mutex<Option<PullMemo>>,
}

/// Where a pull's manifest led, remembered by the manifest's digest: a manifest is
/// content-addressed, so while the tag's digest stays the same the pull check downloads
/// only the config blob, not the manifest again (on Docker Hub a manifest GET counts
/// against the pull limit, a blob GET does not). Plain strings: `client` knows no
/// `distribution` types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullMemo {
    /// The digest of the manifest (or index) the tag resolved to.
    pub manifest: String,
    /// The platform wanted (`pull_platform`).
    pub wanted: String,
    pub config: String,
    pub config_size: Option<u64>,
    /// The platform followed in an index, and whether it was a fallback.
    pub platform: Option<String>,
    pub fallback: Option<String>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base.as_str())
            .field("method", &self.credentials.method())
            .finish_non_exhaustive()
    }
}

/// A client could not be built (bad TLS material).
#[derive(Debug, thiserror::Error)]
#[error(
    "registry \"{registry}\": cannot build the HTTP client: {detail}; check ca_file and client_cert_file"
)]
pub struct ClientBuildError {
    pub registry: String,
    pub detail: String,
}

impl RegistryClient {
    /// The client of one registry on its own, with a connection pool of its own: for tools,
    /// tests, and the runtime `/probe` builds for another shard's registry
    /// (`Generation::probe_target`). The exporter builds its own shard's clients with
    /// [`RegistryClient::build_all`].
    pub fn new(target: &Target) -> Result<RegistryClient, ClientBuildError> {
        let mut clients =
            Self::build_all(&[target], crate::config::DEFAULT_MAX_CONCURRENCY)?.into_iter();
        Ok(clients
            .next()
            .expect("build_all returns one client per target, and it was given one"))
    }

    /// The clients of `targets`, in their order. Registries with the same TLS settings share
    /// one HTTP client and its connection pool, which keeps at most `max_idle_per_host` idle
    /// connections per host (the exporter passes `max_concurrency`). The error names the
    /// first registry whose settings cannot make a client.
    pub fn build_all(
        targets: &[&Target],
        max_idle_per_host: usize,
    ) -> Result<Vec<RegistryClient>, ClientBuildError> {
        // Registries share a client when their TLS settings and their proxy are equal.
        type Key<'t> = (&'t TlsSettings, Option<&'t Url>);
        fn key(t: &Target) -> Key<'_> {
            (&t.tls, t.proxy_url.as_ref().map(|p| p.url()))
        }
        let mut groups: HashMap<Key<'_>, Vec<&Target>> = HashMap::new();
        for &target in targets {
            groups.entry(key(target)).or_default().push(target);
        }
        let mut shared: HashMap<Key<'_>, Arc<SharedHttp>> = HashMap::new();
        let mut clients = Vec::with_capacity(targets.len());
        for &target in targets {
            let http = match shared.get(&key(target)) {
                Some(http) => http.clone(),
                None => {
                    let http = SharedHttp::build(
                        &target.tls,
                        target.proxy_url.as_ref().map(|p| p.url()),
                        &groups[&key(target)],
                        max_idle_per_host,
                    )
                    .map(Arc::new)
                    .map_err(|detail| ClientBuildError {
                        registry: target.name.clone(),
                        detail,
                    })?;
                    shared.insert(key(target), http.clone());
                    http
                }
            };
            clients.push(RegistryClient {
                shared: http,
                timeout: target.timeout,
                base: target.url.clone(),
                credentials: target.credentials.clone(),
                tokens: Mutex::new(HashMap::new()),
                challenge: Mutex::new(None),
                docker: Mutex::new(None),
                docker_lookup: tokio::sync::Mutex::new(()),
                resolved_secrets: Mutex::new(Vec::new()),
                pull_memo: Mutex::new(None),
            });
        }
        Ok(clients)
    }

    /// Whether the two clients send their requests through the same HTTP client (the same
    /// connection pool and TLS configuration).
    pub fn shares_http_client_with(&self, other: &RegistryClient) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// What the last pull learnt from the manifest `manifest` for the platform `wanted`.
    pub fn pull_memo(&self, manifest: &str, wanted: &str) -> Option<PullMemo> {
        self.pull_memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|m| m.manifest == manifest && m.wanted == wanted)
    }

    /// Remembers where a pull's manifest led (one entry: the test image's).
    pub fn remember_pull(&self, memo: PullMemo) {
        *self.pull_memo.lock().unwrap_or_else(|p| p.into_inner()) = Some(memo);
    }

    /// The forward proxy requests to `url` go through, if any.
    pub fn proxy_for(&self, url: &Url) -> Option<ProxyInUse> {
        self.shared.proxy.for_url(url)
    }

    /// A transport failure in words that name the proxy when one carried the request:
    /// with a proxy every connection goes to it, so a refused or unresolvable connection is
    /// the proxy's, not the registry's (reqwest's tunnel errors say which step failed).
    fn failure(&self, e: &reqwest::Error, at: &Url) -> RequestError {
        let plain = transport_error(e);
        let Some(proxy) = self.proxy_for(at) else {
            return plain;
        };
        let mut chain = Vec::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            chain.push(err.to_string());
            source = err.source();
        }
        let all = chain.join(": ");
        // hyper-util's `TunnelError` is not exported: its words are what can be read.
        let (reason, detail) = if all.contains("proxy authorization required") {
            (
                Reason::ProxyAuthRequired,
                format!(
                    "{proxy} asks for credentials (407 Proxy Authentication Required) to open a tunnel to the registry"
                ),
            )
        } else if all.contains("tunnel error: unsuccessful")
            || all.contains("tunnel error: unexpected end of file")
            || all.contains("tunnel error: proxy response headers too long")
        {
            (
                Reason::ProxyError,
                format!(
                    "{proxy} would not open a tunnel to {} (it answered CONNECT with an error): the proxy cannot reach the registry or its rules forbid it",
                    at.host_str().unwrap_or("the registry")
                ),
            )
        } else if plain.reason() == Reason::Tls || !e.is_connect() {
            // The registry's own certificate, or a failure after the proxy connected.
            return RequestError::Transport {
                reason: plain.reason(),
                detail: format!("{plain} (through {proxy})"),
            };
        } else {
            (
                Reason::ProxyUnreachable,
                if plain.reason() == Reason::Timeout {
                    format!("{proxy} cannot be reached: it did not answer in time")
                } else {
                    format!("{proxy} cannot be reached: {plain}")
                },
            )
        };
        RequestError::Transport { reason, detail }
    }

    /// The earliest expiry of the certificate chain of the connection `resp` came over, when
    /// that was TLS: found by the leaf certificate the connection presented.
    fn chain_expiry(&self, resp: &reqwest::Response) -> Option<SystemTime> {
        let leaf = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()?
            .peer_certificate()?;
        self.shared.chain_expiries.get(leaf)
    }

    /// The authentication method in use now (a Docker config may resolve to a helper,
    /// an identity token, or nothing at all).
    pub async fn auth_method(&self) -> Result<AuthMethod, RequestError> {
        Ok(self.resolve().await?.1)
    }

    async fn resolve(&self) -> Result<(Resolved, AuthMethod), RequestError> {
        let resolved = self.resolve_now().await?;
        *self
            .resolved_secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Redactor::of(&resolved.0);
        Ok(resolved)
    }

    /// What hides the secrets this client knows from anything a registry sent back.
    pub fn redactor(&self) -> Redactor {
        let mut needles = self
            .resolved_secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        needles.extend(
            self.tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|t| t.token.clone()),
        );
        needles.retain(|n| !n.expose_secret().is_empty());
        Redactor { needles }
    }

    async fn resolve_now(&self) -> Result<(Resolved, AuthMethod), RequestError> {
        match &self.credentials {
            Credentials::Anonymous => Ok((Resolved::Anonymous, AuthMethod::Anonymous)),
            Credentials::Basic { password: None, .. } => Err(RequestError::MissingPassword),
            Credentials::Basic {
                username,
                password: Some(p),
            } => Ok((
                Resolved::Basic {
                    username: username.clone(),
                    password: p.read().await?,
                },
                AuthMethod::Basic,
            )),
            Credentials::Bearer { token } => {
                Ok((Resolved::Bearer(token.read().await?), AuthMethod::Bearer))
            }
            Credentials::DockerConfig { path } => {
                let cached = || {
                    self.docker
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .filter(|(at, _, _)| at.elapsed() < DOCKER_CONFIG_CACHE)
                };
                if let Some((_, resolved, method)) = cached() {
                    return Ok((resolved, method));
                }
                // One lookup at a time: checks of this registry that run at once (a round
                // and a /probe) wait for it rather than each running the credential helper.
                let _one = self.docker_lookup.lock().await;
                if let Some((_, resolved, method)) = cached() {
                    return Ok((resolved, method));
                }
                let (resolved, method) = match docker_config::lookup(path, &self.base).await? {
                    None => (Resolved::Anonymous, AuthMethod::Anonymous),
                    Some(found) => {
                        let resolved = match found.auth {
                            DockerAuth::Basic { username, password } => {
                                Resolved::Basic { username, password }
                            }
                            DockerAuth::IdentityToken { token } => Resolved::Identity(token),
                        };
                        let method = match (&resolved, found.method) {
                            (Resolved::Identity(_), _) => AuthMethod::IdentityToken,
                            (_, m) => m,
                        };
                        (resolved, method)
                    }
                };
                *self.docker.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), resolved.clone(), method));
                Ok((resolved, method))
            }
        }
    }

    /// Sends a request, authenticating as configured, and records it in `trail`.
    ///
    /// Authentication is negotiated as Docker, containers/image and skopeo do it: the
    /// registry is asked first (`GET /v2/` without credentials, once per client; every
    /// later challenge updates what was learnt), and credentials go only where a challenge
    /// asked for them: Basic after a Basic challenge, a token after a Bearer one. GHCR
    /// answers Basic credentials sent before any challenge with 403 DENIED and no
    /// challenge (renovatebot/renovate#11446), so nothing is sent pre-emptively. A static
    /// bearer token (`token`) is sent as configured.
    ///
    /// With the token flow, a 401 carrying a `Bearer` challenge leads to one token
    /// exchange and one retry; a cached token that is refused is dropped and renewed once.
    pub async fn send(&self, req: Request, trail: &Trail) -> Result<Response, RequestError> {
        let url = self
            .base
            .join(&req.path)
            .map_err(|e| RequestError::Transport {
                reason: Reason::ConnectionError,
                detail: format!("cannot build the request URL: {e}"),
            })?;
        if req.anonymous {
            let (resp, elsewhere) = self
                .send_traced(&req, &url, &Auth::None, trail, None)
                .await?;
            // Another host's challenge says nothing about how this registry authenticates.
            if elsewhere.is_none() {
                self.learn(&resp, req.path == "v2/");
            }
            return Ok(resp);
        }
        let (creds, _) = self.resolve().await?;
        let scope_key = req.scope.clone().unwrap_or_default();
        if matches!(creds, Resolved::Basic { .. } | Resolved::Identity(_)) && self.known().is_none()
        {
            self.ping(trail).await?;
        }

        let mut note = None;
        let mut auth = self.auth_for(&creds, &scope_key, trail, &mut note).await?;
        let (mut resp, elsewhere) = self
            .send_traced(&req, &url, &auth, trail, note.take())
            .await?;
        if let Some(other) = elsewhere {
            return self.redirected(&req, other, resp, trail).await;
        }
        if matches!(auth, Auth::None) {
            self.learn(&resp, req.path == "v2/");
        }

        if resp.status == StatusCode::UNAUTHORIZED && !matches!(creds, Resolved::Bearer(_)) {
            let challenges = Challenges::parse(&resp.headers);
            if let Some(ch) = challenges.bearer {
                // An insufficient token will stay insufficient: retrying cannot help.
                let insufficient = ch.error.as_deref() == Some("insufficient_scope")
                    && matches!(auth, Auth::Token(_));
                if !insufficient {
                    self.forget_token(&scope_key);
                    let scope = req.scope.clone().or(ch.scope.clone());
                    self.set_known(Negotiated::Bearer(ch.clone()));
                    let token = self
                        .fetch_token(&creds, &ch, scope.as_deref(), trail)
                        .await?;
                    self.store_token(&scope_key, &token);
                    auth = Auth::Token(token.token);
                    let note = Some(format!(
                        "token fetched for scope \"{}\" after a Bearer challenge",
                        scope.unwrap_or_default()
                    ));
                    let (again, elsewhere) =
                        self.send_traced(&req, &url, &auth, trail, note).await?;
                    if let Some(other) = elsewhere {
                        return self.redirected(&req, other, again, trail).await;
                    }
                    resp = again;
                }
            } else if let (true, Auth::None, Resolved::Basic { username, password }) =
                (challenges.basic, &auth, &creds)
            {
                // The registry asked for Basic on this request (open at /v2/, protected
                // per repository): answer the challenge once.
                self.set_known(Negotiated::Basic);
                auth = Auth::Basic(username.clone(), password.clone());
                let note = Some("credentials sent after a Basic challenge".to_string());
                let (again, elsewhere) = self.send_traced(&req, &url, &auth, trail, note).await?;
                if let Some(other) = elsewhere {
                    return self.redirected(&req, other, again, trail).await;
                }
                resp = again;
            }
        }
        Ok(resp)
    }

    /// An answer that a redirect brought from `other`, a host that is not the registry's
    /// (blob storage, a CDN, or a hostile registry's accomplice). reqwest sent it no
    /// `Authorization`; a challenge it answers with is its own, so it gets what a client
    /// holding no credentials for that host sends: an anonymous token request to the realm
    /// it names, and the redirected request again with that token, directly. Never the
    /// configured credentials nor this registry's tokens (go-containerregistry,
    /// `TestBearerTokenNotLeakedOnCrossHostChallenge`; containerd looks credentials up by
    /// the host that challenged), and nothing of it is learnt as this registry's challenge.
    /// When that host still wants authentication, the error says so.
    async fn redirected(
        &self,
        req: &Request,
        other: Url,
        resp: Response,
        trail: &Trail,
    ) -> Result<Response, RequestError> {
        if resp.status != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let host = origin_of(&other);
        let challenges = Challenges::parse(&resp.headers);
        let refused = |scheme: &'static str| RequestError::RedirectedHostWantsAuth {
            host: host.clone(),
            scheme,
        };
        let Some(ch) = challenges.bearer else {
            return Err(refused(if challenges.basic {
                "a Basic challenge"
            } else {
                "HTTP 401 without a usable challenge"
            }));
        };
        let scope = ch.scope.clone().or(req.scope.clone());
        let token = match self
            .fetch_token(&Resolved::Anonymous, &ch, scope.as_deref(), trail)
            .await
        {
            Ok(token) => token,
            // Refused, unreachable or garbled: that host wants what only credentials for
            // it could give.
            Err(_) => {
                return Err(refused(
                    "a Bearer challenge, and its token service refuses an anonymous token",
                ));
            }
        };
        let note = Some(format!(
            "anonymous token for {host}, where the registry redirected the request"
        ));
        let (again, _) = self
            .send_traced(req, &other, &Auth::Token(token.token), trail, note)
            .await?;
        if again.status == StatusCode::UNAUTHORIZED {
            return Err(refused(
                "a Bearer challenge, and it refuses an anonymous token",
            ));
        }
        Ok(again)
    }

    /// What the registry has said about authentication so far.
    fn known(&self) -> Option<Negotiated> {
        self.challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_known(&self, negotiated: Negotiated) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(negotiated);
    }

    /// Learns from an answer to a request sent without credentials: a challenge says how
    /// to authenticate; a 2xx on `/v2/` says the registry is open.
    fn learn(&self, resp: &Response, api_root: bool) {
        if resp.status == StatusCode::UNAUTHORIZED {
            let ch = Challenges::parse(&resp.headers);
            if let Some(bearer) = ch.bearer {
                self.set_known(Negotiated::Bearer(bearer));
            } else if ch.basic {
                self.set_known(Negotiated::Basic);
            }
            // A 401 that names no scheme (a proxy stripped `WWW-Authenticate`) teaches
            // nothing: Docker, containerd and skopeo send no credentials without a
            // challenge, so neither does the exporter (`Class::NoChallenge` judges it).
        } else if api_root && resp.status.is_success() {
            self.set_known(Negotiated::Open);
        }
    }

    /// `GET /v2/` without credentials, to learn how the registry wants to be addressed.
    async fn ping(&self, trail: &Trail) -> Result<(), RequestError> {
        let req = Request::new(Method::GET, "v2/").anonymous();
        let url = self.base.join("v2/").map_err(|e| RequestError::Transport {
            reason: Reason::ConnectionError,
            detail: format!("cannot build the request URL: {e}"),
        })?;
        let note = Some("ping: how does the registry want to authenticate".to_string());
        let (resp, elsewhere) = self
            .send_traced(&req, &url, &Auth::None, trail, note)
            .await?;
        if elsewhere.is_none() {
            self.learn(&resp, true);
        }
        Ok(())
    }

    async fn auth_for(
        &self,
        creds: &Resolved,
        scope_key: &str,
        trail: &Trail,
        note: &mut Option<String>,
    ) -> Result<Auth, RequestError> {
        if let Resolved::Bearer(token) = creds {
            return Ok(Auth::Bearer(token.clone()));
        }
        if let Some(token) = self.cached_token(scope_key) {
            *note = Some("cached token".into());
            return Ok(Auth::Token(token));
        }
        match (self.known(), creds) {
            // Once the registry has said it wants tokens, fetch one up front for a new
            // scope instead of paying a 401 round trip each time.
            (Some(Negotiated::Bearer(ch)), _) => {
                let scope = (!scope_key.is_empty()).then_some(scope_key);
                let token = self.fetch_token(creds, &ch, scope, trail).await?;
                self.store_token(scope_key, &token);
                *note = Some(format!("token fetched for scope \"{scope_key}\""));
                Ok(Auth::Token(token.token))
            }
            (Some(Negotiated::Basic), Resolved::Basic { username, password }) => {
                Ok(Auth::Basic(username.clone(), password.clone()))
            }
            _ => Ok(Auth::None),
        }
    }

    /// A request through the shared client, bounded by this registry's timeout (from
    /// connecting to the end of the body).
    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.shared
            .http
            .request(method, url.clone())
            .timeout(self.timeout)
    }

    /// Sends a GET to another origin than the registry's (where a registry redirected a
    /// download): never with credentials, following no redirect (the caller follows them
    /// one by one), recorded in `trail` with the path only.
    ///
    /// It gets half the registry's timeout: a storage host behind a firewall that drops
    /// packets must fail as that host's timeout while the check still has time to say so.
    pub async fn send_elsewhere(&self, url: &Url, trail: &Trail) -> Result<Response, RequestError> {
        let mut req = Request::new(Method::GET, url.as_str())
            .anonymous()
            .no_redirects();
        let limit = self.timeout / 2;
        req.timeout = Some(limit);
        let note = Some(format!(
            "redirected to {}, without credentials",
            url.origin().ascii_serialization()
        ));
        self.send_once(&req, url, &Auth::None, trail, note)
            .await
            .map_err(|e| match e {
                // Not "the registry": another host did not answer.
                RequestError::Transport {
                    reason: Reason::Timeout,
                    ..
                } => RequestError::Transport {
                    reason: Reason::Timeout,
                    detail: format!(
                        "no answer within {} (half the registry's timeout)",
                        humantime::format_duration(limit)
                    ),
                },
                e => e,
            })
    }

    /// One request, recorded in `trail`: the answer, wherever it came from.
    async fn send_once(
        &self,
        req: &Request,
        url: &Url,
        auth: &Auth,
        trail: &Trail,
        note: Option<String>,
    ) -> Result<Response, RequestError> {
        self.send_traced(req, url, auth, trail, note)
            .await
            .map(|(resp, _)| resp)
    }

    /// One request, recorded in `trail`; with the answer, where it came from when a redirect
    /// led it to another host than `url`'s (`None` when it came from `url`'s host and port).
    async fn send_traced(
        &self,
        req: &Request,
        url: &Url,
        auth: &Auth,
        trail: &Trail,
        note: Option<String>,
    ) -> Result<(Response, Option<Url>), RequestError> {
        let mut builder = if req.follow_redirects {
            self.request(req.method.clone(), url)
        } else {
            self.shared
                .manual
                .request(req.method.clone(), url.clone())
                .timeout(self.timeout)
        };
        if let Some(limit) = req.timeout {
            builder = builder.timeout(limit);
        }
        if !req.accept.is_empty() {
            // One header with a comma list: Distribution parses it (see the reference facts).
            builder = builder.header(header::ACCEPT, req.accept.join(", "));
        }
        let auth_used = match auth {
            Auth::None => AuthUsed::None,
            Auth::Basic(user, password) => {
                builder = builder.basic_auth(user, Some(password.expose_secret()));
                AuthUsed::Basic
            }
            Auth::Bearer(token) => {
                builder = builder.bearer_auth(token.expose_secret());
                AuthUsed::Bearer
            }
            Auth::Token(token) => {
                builder = builder.bearer_auth(token.expose_secret());
                AuthUsed::Token
            }
        };
        let started = Instant::now();
        let mut record = RequestRecord {
            method: req.method.to_string(),
            path: url.path().to_string(),
            status: None,
            duration: Duration::ZERO,
            auth: auth_used,
            note,
            headers: Vec::new(),
        };
        let mut kept_headers = Vec::new();
        let mut redirected_to = None;
        // The path only: the query and the headers (credentials) never go into a span.
        let span = tracing::info_span!(
            "http.request",
            otel.kind = "client",
            method = %req.method,
            path = url.path(),
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut elsewhere = None;
        let result = async {
            // A reused connection the other end closed meanwhile (forward proxies such as
            // tinyproxy close theirs after each answer): an idempotent request is sent once
            // more on a fresh one, as Go's net/http does, rather than failing the check.
            let again = builder
                .try_clone()
                .filter(|_| matches!(req.method, Method::GET | Method::HEAD));
            let mut sent = builder.send().await;
            if let (Err(e), Some(again)) = (&sent, again)
                && closed_before_answer(e)
            {
                sent = again.send().await;
            }
            let mut resp = sent.map_err(|e| self.failure(&e, e.url().unwrap_or(url)))?;
            if resp.url().origin() != url.origin() {
                redirected_to = Some(resp.url().origin().ascii_serialization());
            }
            let status = resp.status();
            // A 407 is the proxy's answer (plain-HTTP requests go through it as they are),
            // never the registry's.
            if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
                && let Some(proxy) = self.proxy_for(resp.url())
            {
                return Err(RequestError::Transport {
                    reason: Reason::ProxyAuthRequired,
                    detail: format!(
                        "{proxy} asks for credentials (407 Proxy Authentication Required)"
                    ),
                });
            }
            if !same_host(url, resp.url()) {
                elsewhere = Some(resp.url().clone());
            }
            if let Some(expiry) = self.chain_expiry(&resp) {
                trail.facts(|f| f.tls_certificate_expiry = Some(expiry));
            }
            let headers = std::mem::take(resp.headers_mut());
            observe_limits(&headers, status, trail);
            kept_headers = debug_headers(&headers, &self.redactor());
            let body = if req.read_body && req.method != Method::HEAD {
                read_bounded(&mut resp, MAX_BODY_BYTES).await?
            } else {
                Bytes::new()
            };
            let redirected_to = Some(resp.url().clone()).filter(|u| u != url).map(|mut u| {
                u.set_query(None);
                u.set_fragment(None);
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u
            });
            Ok(Response {
                status,
                headers,
                body,
                redirected_to,
            })
        }
        .instrument(span.clone())
        .await;
        record.duration = started.elapsed();
        record.status = result.as_ref().ok().map(|r: &Response| r.status.as_u16());
        match record.status {
            Some(code) => span.record("status", code),
            None => span.record("otel.status_code", "error"),
        };
        record.headers = kept_headers;
        if let Some(other) = &elsewhere {
            // Scheme, host and port: where the answer came from, never the path or query
            // (signed URLs).
            let via = format!("answered by {} after a redirect", origin_of(other));
            record.note = Some(match record.note.take() {
                Some(note) => format!("{note}; {via}"),
                None => via,
            });
        }
        // Credentials the registry itself took (Basic, or a static bearer token).
        let accepted = matches!(auth, Auth::Basic(..) | Auth::Bearer(_))
            && result.as_ref().is_ok_and(|r| r.status.is_success());
        if let Some(origin) = redirected_to {
            let redirect = format!("redirected to {origin}, without credentials");
            record.note = Some(match record.note.take() {
                Some(note) => format!("{note}; {redirect}"),
                None => redirect,
            });
        }
        trail.push(record);
        if accepted {
            trail.with(|t| t.credentials_accepted = true);
        }
        result.map(|resp| (resp, elsewhere))
    }

    fn cached_token(&self, scope_key: &str) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope_key)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.token.clone())
    }

    fn store_token(&self, scope_key: &str, token: &FetchedToken) {
        // `parse_token` bounds the lifetime; checked all the same, so no answer can panic.
        let lifetime = token.expires_in.min(MAX_TOKEN_LIFETIME);
        let now = Instant::now();
        let renew_at = now
            .checked_add(lifetime.saturating_sub(TOKEN_RENEW_MARGIN.min(lifetime / 2)))
            .unwrap_or(now);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                scope_key.to_string(),
                CachedToken {
                    token: token.token.clone(),
                    renew_at,
                },
            );
    }

    fn forget_token(&self, scope_key: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope_key);
    }

    /// The registry token flow: GET the realm with service and scope (basic credentials
    /// when configured), or POST the OAuth2 refresh_token grant for an identity token.
    /// Accepts `token` or `access_token`.
    async fn fetch_token(
        &self,
        creds: &Resolved,
        ch: &BearerChallenge,
        scope: Option<&str>,
        trail: &Trail,
    ) -> Result<FetchedToken, RequestError> {
        let mut realm = Url::parse(&ch.realm).map_err(|_| TokenError::BadRealm)?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(TokenError::BadRealm.into());
        }
        let scope = scope.filter(|s| !s.is_empty());
        let shown = format!(
            "{}://{}{}",
            realm.scheme(),
            realm.host_str().unwrap_or_default(),
            realm.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + realm.path();
        if !matches!(creds, Resolved::Anonymous) && !credentials_may_go_to(&self.base, &realm) {
            return Err(TokenError::InsecureRealm { realm: shown }.into());
        }
        let (builder, auth_used) = match creds {
            Resolved::Identity(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.expose_secret().to_string()),
                    ("client_id", "oci-registry-exporter".to_string()),
                ];
                if let Some(service) = &ch.service {
                    form.push(("service", service.clone()));
                }
                // Several scopes travel as repeated `scope` parameters (Docker token spec).
                for scope in scope.iter().flat_map(|s| s.split_whitespace()) {
                    form.push(("scope", scope.to_string()));
                }
                (
                    self.request(Method::POST, &realm).form(&form),
                    AuthUsed::Token,
                )
            }
            _ => {
                {
                    let mut q = realm.query_pairs_mut();
                    if let Some(service) = &ch.service {
                        q.append_pair("service", service);
                    }
                    // Several scopes travel as repeated `scope` parameters (Docker token spec).
                    for scope in scope.iter().flat_map(|s| s.split_whitespace()) {
                        q.append_pair("scope", scope);
                    }
                }
                let builder = self.request(Method::GET, &realm);
                match creds {
                    Resolved::Basic { username, password } => (
                        builder.basic_auth(username, Some(password.expose_secret())),
                        AuthUsed::Basic,
                    ),
                    _ => (builder, AuthUsed::None),
                }
            }
        };
        let started = Instant::now();
        // Host and path of the realm: never its query (service, scope) nor credentials.
        let span = tracing::info_span!(
            "token.request",
            otel.kind = "client",
            method = if matches!(creds, Resolved::Identity(_)) { "POST" } else { "GET" },
            realm_host = %format_args!(
                "{}{}",
                realm.host_str().unwrap_or_default(),
                realm.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            realm_path = realm.path(),
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut record = RequestRecord {
            method: if matches!(creds, Resolved::Identity(_)) {
                "POST"
            } else {
                "GET"
            }
            .into(),
            path: realm.path().to_string(),
            status: None,
            duration: Duration::ZERO,
            auth: auth_used,
            note: Some(format!("token request to {shown}")),
            headers: Vec::new(),
        };
        let result = async {
            let mut resp = builder.send().await.map_err(|e| TokenError::Unreachable {
                realm: shown.clone(),
                detail: transport_error(&e).to_string(),
            })?;
            if let Some(expiry) = self.chain_expiry(&resp) {
                trail.facts(|f| f.token_endpoint_tls_certificate_expiry = Some(expiry));
            }
            let status = resp.status();
            // A token service's `Retry-After` counts like the registry's.
            observe_limits(resp.headers(), status, trail);
            // Docker Hub's auth.docker.io and other token services limit token requests
            // too: that is a rate limit, not a broken token service.
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(TokenError::RateLimited {
                    realm: shown.clone(),
                }
                .into());
            }
            // The token service's own words, for the error: a refusal says why.
            let said = if status.is_success() {
                String::new()
            } else {
                read_bounded(&mut resp, MAX_TOKEN_BYTES)
                    .await
                    .map(|body| token_refusal_message(&body))
                    .unwrap_or_default()
            };
            // 400 is how OAuth2 servers refuse a refresh token (`invalid_grant`).
            let rejected = status == StatusCode::UNAUTHORIZED
                || status == StatusCode::FORBIDDEN
                || (status == StatusCode::BAD_REQUEST && matches!(creds, Resolved::Identity(_)));
            if rejected && matches!(creds, Resolved::Anonymous) {
                return Err(TokenError::AnonymousRefused {
                    realm: shown.clone(),
                    status: status.as_u16(),
                    said,
                }
                .into());
            }
            if rejected {
                return Err(TokenError::Rejected {
                    realm: shown.clone(),
                    status: status.as_u16(),
                    said,
                }
                .into());
            }
            if !status.is_success() {
                return Err(TokenError::Status {
                    realm: shown.clone(),
                    status: status.as_u16(),
                    said,
                }
                .into());
            }
            // What answered, for the error: an HTML page here is a sign-in page or a web
            // UI, not a token service.
            let content_type: String = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect();
            let body = read_bounded(&mut resp, MAX_TOKEN_BYTES)
                .await
                .map_err(|e| TokenError::Invalid {
                    realm: shown.clone(),
                    detail: e.to_string(),
                })?;
            parse_token(&body).map_err(|detail| {
                RequestError::from(TokenError::Invalid {
                    realm: shown.clone(),
                    detail: format!("{detail}; Content-Type {content_type}"),
                })
            })
        }
        .instrument(span.clone())
        .await;
        record.duration = started.elapsed();
        record.status = match &result {
            Ok(_) => Some(200),
            Err(RequestError::Token(TokenError::Rejected { status, .. }))
            | Err(RequestError::Token(TokenError::AnonymousRefused { status, .. }))
            | Err(RequestError::Token(TokenError::Status { status, .. })) => Some(*status),
            Err(RequestError::Token(TokenError::RateLimited { .. })) => Some(429),
            Err(_) => None,
        };
        if let Some(code) = record.status {
            span.record("status", code);
        }
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        let took = record.duration;
        trail.push(record);
        if result.is_ok() && !matches!(creds, Resolved::Anonymous) {
            trail.with(|t| t.credentials_accepted = true);
        }
        trail.facts(|f| {
            f.token_request_duration = Some(took);
            if let Ok(t) = &result {
                f.token_expiry = t
                    .stated_lifetime
                    .then(|| SystemTime::now().checked_add(t.expires_in))
                    .flatten();
            }
        });
        result
    }
}

/// Whether credentials may be sent to the token `realm` of the registry at `registry`:
/// not in clear text when the registry itself is reached over TLS. A plain-HTTP registry
/// sends its own credentials in clear text anyway, so its plain-HTTP realm changes nothing.
fn credentials_may_go_to(registry: &Url, realm: &Url) -> bool {
    registry.scheme() != "https" || realm.scheme() == "https"
}

/// Whether `to` is on the host and port of `from`: where reqwest keeps the `Authorization`
/// header across a redirect, and where a challenge speaks for the registry itself.
fn same_host(from: &Url, to: &Url) -> bool {
    from.host_str() == to.host_str() && from.port_or_known_default() == to.port_or_known_default()
}

/// `scheme://host[:port]` of `url`: no path, query or user info.
fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

enum Auth {
    None,
    Basic(String, SecretString),
    Bearer(SecretString),
    Token(SecretString),
}

pub(crate) struct FetchedToken {
    token: SecretString,
    /// How long the token lives: what the server said, within 1 s ..= [`MAX_TOKEN_LIFETIME`],
    /// or [`DEFAULT_TOKEN_LIFETIME`].
    expires_in: Duration,
    /// Whether the server stated a usable lifetime (only then is an expiry reported).
    stated_lifetime: bool,
}

/// The lifetime a token server states in `expires_in`, bounded: zero, negative or not a
/// number means the spec's default; more than [`MAX_TOKEN_LIFETIME`] is cut to it.
fn token_lifetime(expires_in: Option<&serde_json::Number>) -> Option<Duration> {
    let n = expires_in?;
    let secs = match (n.as_u64(), n.as_f64()) {
        (Some(secs), _) => secs,
        // A fraction or a number beyond u64 (1e300): whole seconds, saturating.
        (None, Some(f)) if f.is_finite() && f >= 1.0 => f.min(u64::MAX as f64) as u64,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME))
}

pub(crate) fn parse_token(body: &[u8]) -> Result<FetchedToken, String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        // Any JSON number: a negative or huge one must not make the whole answer invalid.
        expires_in: Option<serde_json::Number>,
    }
    // serde_json's error names a position, never the content: no token leaks through it.
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| format!("not token JSON ({e})"))?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or("neither `token` nor `access_token` is set")?;
    let stated = token_lifetime(parsed.expires_in.as_ref());
    Ok(FetchedToken {
        token: SecretString::from(token),
        expires_in: stated.unwrap_or(DEFAULT_TOKEN_LIFETIME),
        stated_lifetime: stated.is_some(),
    })
}

/// A token service's refusal in its own words, as `: "<message>"` (at most 200 characters,
/// one line), or empty: the first OCI error's message (`{"errors":[{"message"}]}`, the
/// Docker token spec), else OAuth2's `error_description` or `error` (RFC 6749 §5.2).
fn token_refusal_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Entry {
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        errors: Option<Vec<Entry>>,
        error_description: Option<String>,
        error: Option<serde_json::Value>,
        details: Option<String>,
    }
    let Ok(r) = serde_json::from_slice::<Refusal>(body) else {
        return String::new();
    };
    let text = r
        .errors
        .and_then(|e| e.into_iter().find_map(|e| e.message))
        .or(r.error_description)
        .or(r.details)
        .or(r.error.and_then(|e| e.as_str().map(str::to_string)))
        .unwrap_or_default();
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": \"{}\"", text.trim())
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

async fn read_bounded(resp: &mut reqwest::Response, limit: usize) -> Result<Bytes, RequestError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
        if buf.len() + chunk.len() > limit {
            return Err(RequestError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Whether a request failed because its (pooled) connection was closed before any answer
/// came: hyper's "connection closed before message completed".
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Maps a transport error to a bounded reason and a short text without the URL.
fn transport_error(e: &reqwest::Error) -> RequestError {
    let (reason, detail) = classify(e);
    RequestError::Transport { reason, detail }
}

fn classify(e: &reqwest::Error) -> (Reason, String) {
    if e.is_timeout() {
        return (Reason::Timeout, "timed out waiting for the registry".into());
    }
    // A rustls error anywhere in the chain decides, in words that name the fix; this also
    // covers an https:// url on a plain-HTTP port, which rustls sees as a corrupt message.
    if let Some(text) = crate::tls::describe_error(e) {
        return (Reason::Tls, format!("TLS failed: {text}"));
    }
    let mut texts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // The exporter's own descriptor limit: no registry is at fault, and reporting
            // it as one (connection_error) sends operators to the wrong place.
            if let Some(code @ (libc::EMFILE | libc::ENFILE)) = io.raw_os_error() {
                let scope = if code == libc::EMFILE {
                    "the process's"
                } else {
                    "the system's"
                };
                tracing::error!(
                    error = %io,
                    "the exporter ran out of file descriptors ({scope} limit); requests to registries fail until it has some again: raise LimitNOFILE (systemd) or ulimit -n, or lower max_concurrency"
                );
                return (
                    Reason::LocalResourceExhausted,
                    format!(
                        "the exporter ran out of file descriptors ({scope} limit, \"{io}\"): its own problem, not the registry's; raise LimitNOFILE in its systemd unit or ulimit -n (the container's nofile limit), or lower max_concurrency"
                    ),
                );
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return (Reason::ConnectionRefused, "connection refused".into());
                }
                std::io::ErrorKind::TimedOut => {
                    return (Reason::Timeout, "connection timed out".into());
                }
                _ => {}
            }
        }
        texts.push(err.to_string());
        source = err.source();
    }
    let innermost = texts.last().cloned().unwrap_or_default();
    let all = texts.join(": ").to_ascii_lowercase();
    if all.contains("dns error") || all.contains("failed to lookup address") {
        (Reason::Dns, format!("DNS lookup failed: {innermost}"))
    } else if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("invalid peer")
    {
        (Reason::Tls, format!("TLS failed: {innermost}"))
    } else {
        (
            Reason::ConnectionError,
            format!("connection failed: {innermost}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::WWW_AUTHENTICATE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_challenge_with_commas_inside_quotes() {
        let h = headers(&[
            r#"Bearer realm="http://127.0.0.1:5005/token",service="regharness",scope="repository:library/alpine:pull,push",error="insufficient_scope""#,
        ]);
        let c = Challenges::parse(&h);
        assert_eq!(
            c.bearer,
            Some(BearerChallenge {
                realm: "http://127.0.0.1:5005/token".into(),
                service: Some("regharness".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
                error: Some("insufficient_scope".into()),
            })
        );
        assert!(!c.basic);
    }

    #[test]
    fn several_challenges_in_one_header_and_across_headers() {
        let c = Challenges::parse(&headers(&[
            r#"Basic realm="a, b", Bearer realm="https://auth.example.com/token",service="reg""#,
        ]));
        assert!(c.basic);
        assert_eq!(c.bearer.unwrap().realm, "https://auth.example.com/token");
        let c = Challenges::parse(&headers(&[
            r#"Basic realm="regharness-basic""#,
            r#"bearer realm="https://x/token""#,
        ]));
        assert!(c.basic);
        assert_eq!(c.bearer.unwrap().service, None);
    }

    #[test]
    fn garbage_challenges_are_ignored_and_noted() {
        let c = Challenges::parse(&headers(&["Bearer realm=\"unterminated", "=,=,"]));
        assert_eq!(
            c,
            Challenges {
                unreadable: true,
                ..Challenges::default()
            }
        );
        let mut h = HeaderMap::new();
        h.append(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_bytes("Bearer realm=\"http://x/tökén\"".as_bytes()).unwrap(),
        );
        let c = Challenges::parse(&h);
        assert!(c.unreadable && c.bearer.is_none() && !c.basic, "{c:?}");
    }

    #[test]
    fn token_response_accepts_token_or_access_token() {
        let t = parse_token(br#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.token.expose_secret(), "a");
        assert_eq!(t.expires_in, Duration::from_secs(300));
        assert!(t.stated_lifetime);
        let t = parse_token(br#"{"access_token":"b"}"#).unwrap();
        assert_eq!(t.token.expose_secret(), "b");
        assert_eq!(t.expires_in, DEFAULT_TOKEN_LIFETIME);
        assert!(!t.stated_lifetime);
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn credentials_never_go_from_https_to_a_plain_http_realm() {
        let url = |s: &str| Url::parse(s).unwrap();
        let https = url("https://registry.example.com/");
        let http = url("http://registry.example.com/");
        assert!(!credentials_may_go_to(
            &https,
            &url("http://auth.example.com/token")
        ));
        assert!(credentials_may_go_to(
            &https,
            &url("https://auth.example.com/token")
        ));
        assert!(credentials_may_go_to(
            &http,
            &url("http://auth.example.com/token")
        ));
        assert!(credentials_may_go_to(
            &http,
            &url("https://auth.example.com/token")
        ));
        assert_eq!(
            TokenError::InsecureRealm {
                realm: "http://auth.example.com/token".into()
            }
            .reason(),
            Reason::InsecureTokenRealm
        );
    }

    #[test]
    fn secrets_are_scrubbed_as_whole_words() {
        let r = Redactor {
            needles: vec![SecretString::from("b"), SecretString::from("s3cr3t")],
        };
        assert_eq!(
            r.scrub("but a b, echo=s3cr3t; xs3cr3t"),
            "but a [redacted], echo=[redacted]; xs3cr3t"
        );
        assert_eq!(r.scrub("bb b"), "bb [redacted]");
        assert_eq!(replace_words("ébé", "b", "X"), "ébé");
        assert!(r.finds("xs3cr3tx"), "headers are blanked on any occurrence");
    }

    #[test]
    fn a_token_service_refusal_is_quoted() {
        assert_eq!(
            token_refusal_message(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#
            ),
            ": \"invalid username or password\""
        );
        assert_eq!(
            token_refusal_message(
                br#"{"error":"invalid_grant","error_description":"refresh token expired"}"#
            ),
            ": \"refresh token expired\""
        );
        assert_eq!(token_refusal_message(b"<html>"), "");
    }

    #[test]
    fn retry_after_is_bounded() {
        let trail = Trail::default();
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "18446744073709551615".parse().unwrap());
        observe_limits(&h, StatusCode::TOO_MANY_REQUESTS, &trail);
        assert_eq!(trail.take().1.retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        let lifetime = |json: &str| {
            let t = parse_token(format!(r#"{{"token":"a","expires_in":{json}}}"#).as_bytes())
                .expect("a token answer");
            (t.expires_in, t.stated_lifetime)
        };
        assert_eq!(lifetime("18446744073709551615"), (MAX_TOKEN_LIFETIME, true));
        assert_eq!(lifetime("1e300"), (MAX_TOKEN_LIFETIME, true));
        assert_eq!(lifetime("86401"), (MAX_TOKEN_LIFETIME, true));
        assert_eq!(lifetime("299.9"), (Duration::from_secs(299), true));
        for spec_default in ["0", "-1", "-9223372036854775808", "0.5", "-1e300"] {
            assert_eq!(
                lifetime(spec_default),
                (DEFAULT_TOKEN_LIFETIME, false),
                "{spec_default}"
            );
        }
    }
}
