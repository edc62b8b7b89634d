//! Auth negotiation for one registry: credentials resolved as they stand at each request
//! (files, Docker config and its helpers re-read, cached 60 s), what the registry said about
//! authentication (the anonymous `GET /v2/` ping, challenges learnt), and which [`Auth`] a
//! request carries: Basic only after a Basic challenge, a token only after a Bearer one, a
//! static bearer as configured.
//!
//! It does not talk to token services (`token`) or send requests itself (`transport`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Credentials;
use crate::docker_config;
use crate::docker_config::DockerAuth;
use crate::outcome::{AuthMethod, Reason};

use super::RegistryClient;
use super::challenge::{BearerChallenge, Challenges};
use super::redact::Redactor;
use super::request::{Request, RequestError, Response, Trail};

/// Credentials as they stand at the moment of a request (files and helpers are re-read).
#[derive(Clone)]
pub(super) enum Resolved {
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
pub(super) enum Negotiated {
    /// `GET /v2/` answered 2xx without credentials.
    Open,
    /// A `Basic` challenge.
    Basic,
    /// A `Bearer` challenge: the token flow. Boxed: most registries are open or Basic, and
    /// every registry's client holds one of these.
    Bearer(Box<BearerChallenge>),
}

/// How long credentials from a Docker config or helper are reused before a fresh lookup.
pub(super) const DOCKER_CONFIG_CACHE: Duration = Duration::from_secs(60);

pub(super) enum Auth {
    None,
    Basic(String, SecretString),
    Bearer(SecretString),
    Token(SecretString),
}

impl RegistryClient {
    /// The authentication method in use now (a Docker config may resolve to a helper,
    /// an identity token, or nothing at all).
    pub async fn auth_method(&self) -> Result<AuthMethod, RequestError> {
        Ok(self.resolve().await?.1)
    }

    pub(super) async fn resolve(&self) -> Result<(Resolved, AuthMethod), RequestError> {
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

    pub(super) async fn resolve_now(&self) -> Result<(Resolved, AuthMethod), RequestError> {
        match &self.target.credentials {
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
                let docker = self
                    .docker
                    .as_deref()
                    .expect("build_all gives a client with Docker-config credentials its cache");
                let cached = || {
                    docker
                        .last
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
                let _one = docker.lookup.lock().await;
                if let Some((_, resolved, method)) = cached() {
                    return Ok((resolved, method));
                }
                let (resolved, method) = match docker_config::lookup(path, &self.target.url).await?
                {
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
                *docker.last.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), resolved.clone(), method));
                Ok((resolved, method))
            }
        }
    }

    /// What the registry has said about authentication so far.
    pub(super) fn known(&self) -> Option<Negotiated> {
        self.challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_known(&self, negotiated: Negotiated) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(negotiated);
    }

    /// Learns from an answer to a request sent without credentials: a challenge says how
    /// to authenticate; a 2xx on `/v2/` says the registry is open.
    pub(super) fn learn(&self, resp: &Response, api_root: bool) {
        if resp.status == StatusCode::UNAUTHORIZED {
            let ch = Challenges::parse(&resp.headers);
            if let Some(bearer) = ch.bearer {
                self.set_known(Negotiated::Bearer(Box::new(bearer)));
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
    pub(super) async fn ping(&self, trail: &Trail) -> Result<(), RequestError> {
        let req = Request::new(Method::GET, "v2/").anonymous();
        let url = self
            .target
            .url
            .join("v2/")
            .map_err(|e| RequestError::Transport {
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

    pub(super) async fn auth_for(
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
}
