//! How a request travels: the shared `reqwest` clients ([`SharedHttp`], one per distinct TLS
//! setting and proxy, with a twin that follows no redirect), the forward proxy a request
//! goes through and how its failures are named ([`ProxyInUse`], `proxy_unreachable`,
//! `proxy_auth_required`, `proxy_error`), one request sent and recorded in the trail
//! (`send_traced`, bounded bodies, the chain expiry of its connection), and transport
//! errors classified into bounded reasons.
//!
//! It does not decide which credentials a request carries (`auth`, `token`): it sends the
//! [`Auth`] it is given.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode, header};
use secrecy::ExposeSecret;
use tracing::Instrument as _;
use url::Url;

use crate::config::{Target, TlsSettings};
use crate::outcome::{AuthUsed, Reason, RequestRecord};
use crate::registry_tls::ChainExpiries;

use super::auth::Auth;
use super::request::{
    MAX_BODY_BYTES, Request, RequestError, Response, Trail, debug_headers, observe_limits,
};
use super::{RegistryClient, origin_of, same_host};

/// The User-Agent the exporter sends, naming itself and its version.
pub const USER_AGENT: &str = concat!("oci-registry-exporter/", env!("CARGO_PKG_VERSION"));

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
pub(super) enum ProxyRoute {
    Configured(Url),
    // Boxed: the matcher is large, and one route lives per shared client.
    Environment(Box<hyper_util::client::proxy::matcher::Matcher>),
}

impl ProxyRoute {
    pub(super) fn for_url(&self, url: &Url) -> Option<ProxyInUse> {
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
pub(super) fn env_proxy_source(scheme: &str) -> &'static str {
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

/// How long a pooled connection may stay idle before it is closed. Long enough for the
/// checks of one round (which run one after the other, each waiting for a permit) and for
/// registries checked every few seconds to reuse their connection; short enough that a
/// registry checked every minute (the default) or less often holds no idle connection
/// between its rounds (about 18 KiB each, measured: at 1,000 such registries that was the
/// largest part of the memory), and shorter than the idle timeouts servers and load
/// balancers commonly use (60 s on AWS load balancers, 75 s in nginx), so the exporter
/// closes an idle connection before a server does it under a request on its way.
pub(super) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `reqwest::Client` (a connection pool and a rustls configuration) and the chain-expiry
/// recorder of its certificate verifier, shared by the registries with the same TLS settings.
pub(super) struct SharedHttp {
    pub(super) http: reqwest::Client,
    /// The same, following no redirect: for [`Request::no_redirects`]. Its pool is used by
    /// blob downloads only.
    pub(super) manual: reqwest::Client,
    pub(super) chain_expiries: Arc<ChainExpiries>,
    /// Which proxy its requests go through, to name it when it fails.
    pub(super) proxy: ProxyRoute,
}

impl SharedHttp {
    /// The client for `targets`, which all have the TLS settings `tls`. `max_idle_per_host`
    /// bounds the idle connections kept per host: more than the checks that can run at once
    /// could never all be used again.
    pub(super) fn build(
        tls: &TlsSettings,
        proxy: Option<&Url>,
        targets: &[&Target],
        max_idle_per_host: usize,
    ) -> Result<SharedHttp, String> {
        // A registry and its token endpoint present a leaf each; a few more leave room for
        // certificate renewals and redirects.
        let chains = 16 + 4 * targets.len();
        let (tls, chain_expiries) =
            crate::registry_tls::client_config(tls, chains).map_err(|e| e.to_string())?;
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
                // Trust, client certificate and the chain-expiry recorder: see `registry_tls`.
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

pub(super) async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Bytes, RequestError> {
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
/// came: hyper's "connection closed before message completed", or a reset. A peer that
/// closed a kept-alive connection answers a request sent on it with a reset when the
/// request reached it after the close (seen through tinyproxy: "Connection reset by peer"
/// on the pull's manifest request, right after the ping on the same connection); Go's
/// net/http retries an idempotent request after any read error on a reused connection
/// before the answer began (`shouldRetryRequest`), and so does the caller here, once. A
/// registry that resets every connection still fails: the second try is reset too.
pub(super) fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Maps a transport error to a bounded reason and a short text without the URL.
pub(super) fn transport_error(e: &reqwest::Error) -> RequestError {
    let (reason, detail) = classify(e);
    RequestError::Transport { reason, detail }
}

pub(super) fn classify(e: &reqwest::Error) -> (Reason, String) {
    if e.is_timeout() {
        return (Reason::Timeout, "timed out waiting for the registry".into());
    }
    // A rustls error anywhere in the chain decides, in words that name the fix; this also
    // covers an https:// url on a plain-HTTP port, which rustls sees as a corrupt message.
    if let Some(text) = crate::registry_tls::describe_error(e) {
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

impl RegistryClient {
    /// A transport failure in words that name the proxy when one carried the request:
    /// with a proxy every connection goes to it, so a refused or unresolvable connection is
    /// the proxy's, not the registry's (reqwest's tunnel errors say which step failed).
    pub(super) fn failure(&self, e: &reqwest::Error, at: &Url) -> RequestError {
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
    pub(super) fn chain_expiry(&self, resp: &reqwest::Response) -> Option<SystemTime> {
        let leaf = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()?
            .peer_certificate()?;
        self.shared.chain_expiries.get(leaf)
    }

    /// A request through the shared client, bounded by this registry's timeout (from
    /// connecting to the end of the body).
    pub(super) fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.shared
            .http
            .request(method, url.clone())
            .timeout(self.target.timeout)
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
        let limit = self.target.timeout / 2;
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
    pub(super) async fn send_once(
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
    pub(super) async fn send_traced(
        &self,
        req: &Request,
        url: &Url,
        auth: &Auth,
        trail: &Trail,
        note: Option<String>,
    ) -> Result<(Response, Option<Url>), RequestError> {
        let (builder, auth_used) = self.builder_for(req, url, auth);
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
        // The path only: the query and the headers (credentials) never go into a span.
        let span = tracing::info_span!(
            "http.request",
            otel.kind = "client",
            method = %req.method,
            path = url.path(),
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut seen = Seen::default();
        let result = self
            .exchange(builder, req, url, trail, &mut seen)
            .instrument(span.clone())
            .await;
        record.duration = started.elapsed();
        record.status = result.as_ref().ok().map(|r: &Response| r.status.as_u16());
        match record.status {
            Some(code) => span.record("status", code),
            None => span.record("otel.status_code", "error"),
        };
        record.headers = seen.kept_headers;
        if let Some(other) = &seen.elsewhere {
            // Scheme, host and port: where the answer came from, never the path or query
            // (signed URLs). The client drops Authorization on a redirect to another host.
            let via = format!(
                "answered by {} after a redirect, without credentials",
                origin_of(other)
            );
            record.note = Some(match record.note.take() {
                Some(note) => format!("{note}; {via}"),
                None => via,
            });
        }
        // Credentials the registry itself took (Basic, or a static bearer token).
        let accepted = matches!(auth, Auth::Basic(..) | Auth::Bearer(_))
            && result.as_ref().is_ok_and(|r| r.status.is_success());
        trail.push(record);
        if accepted {
            trail.with(|t| t.credentials_accepted = true);
        }
        result.map(|resp| (resp, seen.elsewhere))
    }

    /// The request `req` to `url` with `auth`, on the client that follows redirects or the
    /// one that does not, and how it authenticates (for the record).
    fn builder_for(
        &self,
        req: &Request,
        url: &Url,
        auth: &Auth,
    ) -> (reqwest::RequestBuilder, AuthUsed) {
        let mut builder = if req.follow_redirects {
            self.request(req.method.clone(), url)
        } else {
            self.shared
                .manual
                .request(req.method.clone(), url.clone())
                .timeout(self.target.timeout)
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
        (builder, auth_used)
    }

    /// Sends the request and reads its answer (the body bounded), noting in `seen` what
    /// the record keeps even when reading the body fails.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        req: &Request,
        url: &Url,
        trail: &Trail,
        seen: &mut Seen,
    ) -> Result<Response, RequestError> {
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
        let status = resp.status();
        // A 407 is the proxy's answer (plain-HTTP requests go through it as they are),
        // never the registry's.
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
            && let Some(proxy) = self.proxy_for(resp.url())
        {
            return Err(RequestError::Transport {
                reason: Reason::ProxyAuthRequired,
                detail: format!("{proxy} asks for credentials (407 Proxy Authentication Required)"),
            });
        }
        if !same_host(url, resp.url()) {
            seen.elsewhere = Some(resp.url().clone());
        }
        if let Some(expiry) = self.chain_expiry(&resp) {
            trail.facts(|f| f.tls_certificate_expiry = Some(expiry));
        }
        let headers = std::mem::take(resp.headers_mut());
        observe_limits(&headers, status, trail);
        seen.kept_headers = debug_headers(&headers, &self.redactor());
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
}

/// What [`RegistryClient::exchange`] saw of an answer that the request's record keeps, whether
/// or not reading it then failed: the headers kept for debugging, and where a redirect
/// led the answer when that is another host.
#[derive(Default)]
struct Seen {
    kept_headers: Vec<(String, String)>,
    elsewhere: Option<Url>,
}
