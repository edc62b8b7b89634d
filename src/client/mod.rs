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
//!
//! # Layout
//!
//! - `mod.rs` — [`RegistryClient`] (what belongs to one registry), its construction
//!   (`new`, `build_all`), `send` (negotiation, the token retry) and redirected requests,
//!   [`PullMemo`].
//! - `request.rs` — [`Request`], [`Response`], [`Trail`], [`RequestError`].
//! - `transport.rs` — the shared HTTP clients, proxies, one request sent and recorded,
//!   transport errors classified.
//! - `auth.rs` — credentials resolved, the ping, challenges learnt, what a request carries.
//! - `token.rs` — the token flow and its cache, [`TokenError`].
//! - `challenge.rs` — [`Challenges`] (`WWW-Authenticate` parsing).
//! - `redact.rs` — [`Redactor`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest::StatusCode;
use secrecy::SecretString;
use url::Url;

use crate::config::{Credentials, Target, TlsSettings};
use crate::outcome::{AuthMethod, Reason};

mod auth;
mod challenge;
mod redact;
mod request;
#[cfg(test)]
mod tests;
mod token;
mod transport;

pub use challenge::{BearerChallenge, Challenges, MAX_CHALLENGE_BYTES};
pub use redact::{REDACTED, Redactor};
pub(crate) use request::observe_limits;
pub use request::{DEBUG_HEADERS, Landed, MAX_BODY_BYTES, Request, RequestError, Response, Trail};
pub(crate) use token::parse_token;
pub use token::{MAX_TOKEN_BYTES, TokenError};
pub use transport::{ProxyInUse, USER_AGENT};

use auth::{Auth, Negotiated, Resolved};
use token::CachedToken;
use transport::SharedHttp;

/// The client for one registry, shared by all its checks.
pub struct RegistryClient {
    /// Shared with the other registries of its configuration that have the same TLS settings
    /// (a client built with [`RegistryClient::new`] has its own).
    shared: Arc<SharedHttp>,
    /// The registry's settings, shared with its runtime (not copied: its URL, credentials
    /// and `timeout`, set on each of its requests, are read from there).
    target: Arc<Target>,
    // std Mutex: never held across .await.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// How the registry wants to be authenticated, once it has said so.
    challenge: Mutex<Option<Negotiated>>,
    /// Only with Docker-config credentials: boxed, so the registries without (most) pay a
    /// pointer for it, not 120 bytes.
    docker: Option<Box<DockerCache>>,
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

/// The credentials a Docker config last resolved to, and the lookup in progress.
struct DockerCache {
    // std Mutex: never held across .await.
    last: Mutex<Option<(Instant, Resolved, AuthMethod)>>,
    /// Held while the Docker config is looked up (a tokio mutex: held across the helper).
    lookup: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.target.url.as_str())
            .field("method", &self.target.credentials.method())
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

impl RegistryClient {
    /// The client of one registry on its own, with a connection pool of its own: for tools,
    /// tests, and the runtime `/probe` builds for another shard's registry
    /// (`Generation::probe_target`). The exporter builds its own shard's clients with
    /// [`RegistryClient::build_all`].
    pub fn new(target: &Target) -> Result<RegistryClient, ClientBuildError> {
        let target = Arc::new(target.clone());
        let mut clients =
            Self::build_all(&[&target], crate::config::DEFAULT_MAX_CONCURRENCY)?.into_iter();
        Ok(clients
            .next()
            .expect("build_all returns one client per target, and it was given one"))
    }

    /// The clients of `targets`, in their order. Registries with the same TLS settings share
    /// one HTTP client and its connection pool, which keeps at most `max_idle_per_host` idle
    /// connections per host (the exporter passes `max_concurrency`). The error names the
    /// first registry whose settings cannot make a client.
    pub fn build_all(
        targets: &[&Arc<Target>],
        max_idle_per_host: usize,
    ) -> Result<Vec<RegistryClient>, ClientBuildError> {
        // Registries share a client when their TLS settings and their proxy are equal.
        type Key<'t> = (&'t TlsSettings, Option<&'t Url>);
        fn key(t: &Target) -> Key<'_> {
            (&t.tls, t.proxy_url.as_ref().map(|p| p.url()))
        }
        let mut groups: HashMap<Key<'_>, Vec<&Target>> = HashMap::new();
        for &target in targets {
            groups.entry(key(target)).or_default().push(&**target);
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
                target: target.clone(),
                tokens: Mutex::new(HashMap::new()),
                challenge: Mutex::new(None),
                docker: matches!(target.credentials, Credentials::DockerConfig { .. }).then(|| {
                    Box::new(DockerCache {
                        last: Mutex::new(None),
                        lookup: tokio::sync::Mutex::new(()),
                    })
                }),
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
        &self.target.url
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
            .target
            .url
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
                    self.set_known(Negotiated::Bearer(Box::new(ch.clone())));
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
}
