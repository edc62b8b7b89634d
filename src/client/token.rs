//! The registry token flow: the per-scope token cache, `fetch_token` (GET the realm with
//! service and scope, or POST the OAuth2 refresh_token grant), token answers parsed and
//! their lifetimes bounded ([`parse_token`]), refusals quoted in the service's own words,
//! credentials never sent to a plain-HTTP realm of an HTTPS registry, and [`TokenError`].
//!
//! It does not decide when a token is needed: `auth` and `RegistryClient::send` do.

use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument as _;
use url::Url;

use crate::outcome::{AuthUsed, Reason, RequestRecord};

use super::RegistryClient;
use super::auth::Resolved;
use super::challenge::BearerChallenge;
use super::request::{RequestError, Trail, observe_limits};
use super::transport::{read_bounded, transport_error};

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

pub(super) struct CachedToken {
    pub(super) token: SecretString,
    pub(super) renew_at: Instant,
}

/// Whether credentials may be sent to the token `realm` of the registry at `registry`:
/// not in clear text when the registry itself is reached over TLS. A plain-HTTP registry
/// sends its own credentials in clear text anyway, so its plain-HTTP realm changes nothing.
pub(super) fn credentials_may_go_to(registry: &Url, realm: &Url) -> bool {
    registry.scheme() != "https" || realm.scheme() == "https"
}

pub(crate) struct FetchedToken {
    pub(super) token: SecretString,
    /// How long the token lives: what the server said, within 1 s ..= [`MAX_TOKEN_LIFETIME`],
    /// or [`DEFAULT_TOKEN_LIFETIME`].
    pub(super) expires_in: Duration,
    /// Whether the server stated a usable lifetime (only then is an expiry reported).
    pub(super) stated_lifetime: bool,
}

/// The lifetime a token server states in `expires_in`, bounded: zero, negative or not a
/// number means the spec's default; more than [`MAX_TOKEN_LIFETIME`] is cut to it.
pub(super) fn token_lifetime(expires_in: Option<&serde_json::Number>) -> Option<Duration> {
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
pub(super) fn token_refusal_message(body: &[u8]) -> String {
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

/// Token responses are small; anything larger is refused.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// When a token server does not say how long a token lives, or says zero or less: the
/// Docker token spec's default.
pub(super) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest a token is trusted, whatever the server says: a lifetime near `u64::MAX`
/// seconds overflows time arithmetic, and a day is longer than any real token lives.
pub(super) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token is renewed this long before it expires.
pub(super) const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(10);

impl RegistryClient {
    pub(super) fn cached_token(&self, scope_key: &str) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope_key)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.token.clone())
    }

    pub(super) fn store_token(&self, scope_key: &str, token: &FetchedToken) {
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

    pub(super) fn forget_token(&self, scope_key: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope_key);
    }

    /// The registry token flow: GET the realm with service and scope (basic credentials
    /// when configured), or POST the OAuth2 refresh_token grant for an identity token.
    /// Accepts `token` or `access_token`. The request is recorded in `trail` (the realm's
    /// host and path only) with what it says of the credentials and the token's lifetime.
    pub(super) async fn fetch_token(
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
        if !matches!(creds, Resolved::Anonymous) && !credentials_may_go_to(&self.target.url, &realm)
        {
            return Err(TokenError::InsecureRealm { realm: shown }.into());
        }
        let (builder, auth_used) = self.token_request(creds, ch, scope, &mut realm);
        let method = if matches!(creds, Resolved::Identity(_)) {
            "POST"
        } else {
            "GET"
        };
        let started = Instant::now();
        // Host and path of the realm: never its query (service, scope) nor credentials.
        let span = tracing::info_span!(
            "token.request",
            otel.kind = "client",
            method,
            realm_host = %format_args!(
                "{}{}",
                realm.host_str().unwrap_or_default(),
                realm.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            realm_path = realm.path(),
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let record = RequestRecord {
            method: method.into(),
            path: realm.path().to_string(),
            status: None,
            duration: Duration::ZERO,
            auth: auth_used,
            note: Some(format!("token request to {shown}")),
            headers: Vec::new(),
        };
        let result = self
            .token_answer(builder, creds, &shown, trail)
            .instrument(span.clone())
            .await;
        record_token_request(trail, record, started, &span, creds, &result);
        result
    }

    /// The token request for `creds`: the OAuth2 refresh_token grant (POST) for an identity
    /// token, else a GET of the realm with `service` and `scope` added to its query, with
    /// Basic credentials when configured.
    fn token_request(
        &self,
        creds: &Resolved,
        ch: &BearerChallenge,
        scope: Option<&str>,
        realm: &mut Url,
    ) -> (reqwest::RequestBuilder, AuthUsed) {
        // Several scopes travel as repeated `scope` parameters (Docker token spec).
        let scopes = scope.iter().flat_map(|s| s.split_whitespace());
        if let Resolved::Identity(refresh) = creds {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.expose_secret().to_string()),
                ("client_id", "oci-registry-exporter".to_string()),
            ];
            if let Some(service) = &ch.service {
                form.push(("service", service.clone()));
            }
            form.extend(scopes.map(|scope| ("scope", scope.to_string())));
            return (
                self.request(Method::POST, realm).form(&form),
                AuthUsed::Token,
            );
        }
        {
            let mut q = realm.query_pairs_mut();
            if let Some(service) = &ch.service {
                q.append_pair("service", service);
            }
            for scope in scopes {
                q.append_pair("scope", scope);
            }
        }
        let builder = self.request(Method::GET, realm);
        match creds {
            Resolved::Basic { username, password } => (
                builder.basic_auth(username, Some(password.expose_secret())),
                AuthUsed::Basic,
            ),
            _ => (builder, AuthUsed::None),
        }
    }

    /// Sends the token request and reads its answer: a token, or the [`TokenError`] that
    /// says why not (`shown`: the realm as errors name it), in the token service's words.
    async fn token_answer(
        &self,
        builder: reqwest::RequestBuilder,
        creds: &Resolved,
        shown: &str,
        trail: &Trail,
    ) -> Result<FetchedToken, RequestError> {
        let realm = || shown.to_string();
        let mut resp = builder.send().await.map_err(|e| TokenError::Unreachable {
            realm: realm(),
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
            return Err(TokenError::RateLimited { realm: realm() }.into());
        }
        if !status.is_success() {
            // The token service's own words, for the error: a refusal says why.
            let said = read_bounded(&mut resp, MAX_TOKEN_BYTES)
                .await
                .map(|body| token_refusal_message(&body))
                .unwrap_or_default();
            return Err(refusal(creds, status, realm(), said).into());
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
                realm: realm(),
                detail: e.to_string(),
            })?;
        parse_token(&body).map_err(|detail| {
            RequestError::from(TokenError::Invalid {
                realm: realm(),
                detail: format!("{detail}; Content-Type {content_type}"),
            })
        })
    }
}

/// A token service's refusal (a status that is neither a success nor 429), by who asked:
/// 401 and 403 (and 400, how OAuth2 servers refuse a refresh token: `invalid_grant`)
/// reject the credentials, or refuse an anonymous token; anything else is the service's
/// own failure.
fn refusal(creds: &Resolved, status: StatusCode, realm: String, said: String) -> TokenError {
    let rejected = status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || (status == StatusCode::BAD_REQUEST && matches!(creds, Resolved::Identity(_)));
    let status = status.as_u16();
    match creds {
        Resolved::Anonymous if rejected => TokenError::AnonymousRefused {
            realm,
            status,
            said,
        },
        _ if rejected => TokenError::Rejected {
            realm,
            status,
            said,
        },
        _ => TokenError::Status {
            realm,
            status,
            said,
        },
    }
}

/// Records a token request in `trail` and its span: its status and duration, whether the
/// token service accepted the credentials, and the token's stated lifetime.
fn record_token_request(
    trail: &Trail,
    mut record: RequestRecord,
    started: Instant,
    span: &tracing::Span,
    creds: &Resolved,
    result: &Result<FetchedToken, RequestError>,
) {
    record.duration = started.elapsed();
    record.status = match result {
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
        if let Ok(t) = result {
            f.token_expiry = t
                .stated_lifetime
                .then(|| SystemTime::now().checked_add(t.expires_in))
                .flatten();
        }
    });
}
