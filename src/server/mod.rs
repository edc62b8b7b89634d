//! The HTTP endpoints: the metrics (`/metrics`, or `--web.telemetry-path`), `/probe`,
//! `/result`, `/-/healthy`, `/-/ready`, `/-/reload` and the `/` page.
//!
//! Owns routing, query parsing, content negotiation, the telemetry path and its validation
//! ([`TelemetryPath`]), the connections' limits (header-read and idle timeouts, a cap with a
//! reserve for health checks) and graceful shutdown. It does not run checks itself: it asks
//! the app (scrape mode, `/probe`), serves what the metrics module encodes, and routes `/`
//! to `status_page`, which renders it.
//!
//! # Layout
//!
//! - `mod.rs` — [`serve`] (the accept loop), a connection served under its limits
//!   (`connection`: header-read and idle timeouts, HTTP/2 bounds, graceful close),
//!   [`Limits`], [`connection_cap`], [`TelemetryPath`], [`Options`].
//! - `admission.rs` — which connections are served at the cap, and their activity.
//! - `routes.rs` — the endpoints and `/probe`'s query.
//! - `streamed.rs` — the shared `/metrics` encodings and the streamed body.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::metrics;

mod admission;
mod routes;
mod streamed;
#[cfg(test)]
mod tests;

pub(crate) use routes::{ProbeQuery, probe_checks};
pub use streamed::{AHEAD, FREEING_PER_SHARE, MAX_ENCODINGS, SHARE_FOR};
pub(crate) use streamed::{Encodings, Streamed};

use admission::{Activity, Admission, InFlight, Slot};
use routes::{handle, text};

/// A response body: whole (every answer but the metrics), or the metrics streamed from the
/// encoder as it writes them ([`Streamed`]).
type Body = Either<Full<Bytes>, Streamed>;

/// The HTTP server's limits: `--web.read-header-timeout`, `--web.idle-timeout` and
/// `--web.max-connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a complete request head: for a new connection,
    /// counted from its accept, TLS handshake included (in HTTP/2, until its first request's
    /// headers). In HTTP/1.1 hyper also counts it from when the server starts waiting for a
    /// next head, so it closes a kept-alive connection that sends none for that long.
    pub read_header_timeout: Duration,
    /// A connection with no request in progress for this long is closed: an idle HTTP/2
    /// connection, an idle HTTP/1.1 one, one whose reader stopped taking the answer. (One
    /// that never sends a byte has no complete request head: `read_header_timeout`.)
    pub idle_timeout: Duration,
    /// Connections served at once, besides the [`RESERVED_CONNECTIONS`]; lowered to fit the
    /// descriptor limit (see [`connection_cap`]).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Where the metrics are served: `--web.telemetry-path`, as Prometheus exporters call it
/// (default `/metrics`). Checked when parsed, so it never hides another endpoint and can
/// match a request's path at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryPath(Arc<str>);

/// Why a `--web.telemetry-path` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryPathError {
    #[error("--web.telemetry-path {0:?} does not start with \"/\"; give a path such as /metrics")]
    NotAbsolute(String),
    #[error(
        "--web.telemetry-path {path:?} contains {found:?}, which a request path cannot match; use letters, digits and - . _ ~ / only"
    )]
    Character { path: String, found: char },
    #[error(
        "--web.telemetry-path {path:?} is taken by {by}; choose another path, such as /metrics"
    )]
    Taken { path: String, by: &'static str },
}

impl TelemetryPath {
    /// Prometheus exporters' default.
    pub const DEFAULT: &'static str = "/metrics";

    /// Accepts a path that starts with `/`, holds only characters a request path carries
    /// as they are (RFC 3986 `pchar`s: no space, `?` or `#`, nothing outside ASCII), and is
    /// none of the other endpoints: `/`, `/probe`, `/result` or anything under `/-/`.
    pub fn parse(path: &str) -> Result<TelemetryPath, TelemetryPathError> {
        if !path.starts_with('/') {
            return Err(TelemetryPathError::NotAbsolute(path.to_string()));
        }
        if let Some(found) = path
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(*c)))
        {
            return Err(TelemetryPathError::Character {
                path: path.to_string(),
                found,
            });
        }
        let by = match path {
            "/" => Some("the status page"),
            "/probe" => Some("/probe"),
            "/result" => Some("/result (the history's debug pages)"),
            _ if path.starts_with("/-/") => Some("the /-/ endpoints (health, readiness, reload)"),
            _ => None,
        };
        if let Some(by) = by {
            return Err(TelemetryPathError::Taken {
                path: path.to_string(),
                by,
            });
        }
        Ok(TelemetryPath(Arc::from(path)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TelemetryPath {
    fn default() -> TelemetryPath {
        TelemetryPath(Arc::from(TelemetryPath::DEFAULT))
    }
}

/// What the command line tells the server: its [`Limits`] and the [`TelemetryPath`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    pub telemetry_path: TelemetryPath,
}

/// Connections kept for `/-/healthy` and `/-/ready` when every other slot holds a
/// connection serving a request (see [`Admission`]). A connection beyond those takes
/// one of these slots, evicting the oldest that has not sent a complete request head yet, so
/// half-sent requests cannot hold them: a health check, which sends its request at once,
/// always gets through.
pub const RESERVED_CONNECTIONS: usize = 16;
/// How long a reserved connection may take to send its request head.
const RESERVED_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 streams served at once on one connection (hyper's default is 200; Go's 250):
/// Prometheus sends one request at a time, a browser a few.
pub const H2_MAX_STREAMS: u32 = 16;
/// How long a connection asked to close (idle, shutdown) may take to finish its request.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The connections served at once: `configured`, at most half the open-files limit less
/// the reserve, leaving the other half for registry connections, files and the reserve
/// (1,137 half-sent requests exhausted a 1,024 limit and silenced `/-/healthy`).
pub fn connection_cap(configured: usize) -> usize {
    match crate::process::max_open_files() {
        Some(limit) => {
            let fits = (limit / 2)
                .saturating_sub(RESERVED_CONNECTIONS as u64)
                .max(1);
            configured.min(usize::try_from(fits).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// Serves until the app's shutdown token is cancelled, then lets open requests finish.
/// With a web config (`--web.config.file`, see `crate::web`): TLS, basic auth checked before
/// routing (except `/-/healthy` and `/-/ready`), and its extra headers on every response.
/// The accept loop never stops: [`Limits`] bound how long a connection may dawdle and how
/// many are served, and [`RESERVED_CONNECTIONS`] keep room for the health checks.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    web: Option<Arc<crate::web::Web>>,
    options: Options,
) {
    let Options {
        limits,
        telemetry_path,
    } = options;
    let cap = connection_cap(limits.max_connections);
    tracing::info!(
        max_connections = cap,
        reserved = RESERVED_CONNECTIONS,
        read_header_timeout_s = limits.read_header_timeout.as_secs_f64(),
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        telemetry_path = telemetry_path.as_str(),
        "serving HTTP"
    );
    crate::secret_file::start_verdict_pool();
    let admission = Admission::new(cap);
    let encodings = Encodings::new(SHARE_FOR);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = app.shutdown.cancelled() => break,
        };
        // Pieces of a streamed body go out as written: without this, Nagle's algorithm holds
        // a piece's tail until the client's delayed ACK, 40 ms on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "setting TCP_NODELAY failed");
        }
        let slot = admission.admit();
        connections.spawn(connection(
            app.clone(),
            web.clone(),
            stream,
            peer,
            slot,
            limits,
            (telemetry_path.clone(), encodings.clone()),
        ));
    }
    // Open connections get a few seconds to finish their request.
    connections.close();
    let _ = tokio::time::timeout(CLOSE_GRACE, connections.wait()).await;
}

/// One connection, from the TLS handshake to its close: on its own task, so a slow or broken
/// client never holds up the accept loop. Its steps are [`handshake`], [`http_builder`] and
/// [`Asked::respond`]; what stays here (about 100 lines) is the connection's life in one
/// place: the service that counts its activity, and the loop whose arms are the five ways
/// it ends (done, evicted, no head in time, shutdown, idle), which share its state.
async fn connection(
    app: Arc<App>,
    web: Option<Arc<crate::web::Web>>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: Slot,
    limits: Limits,
    (telemetry_path, encodings): (TelemetryPath, Arc<Encodings>),
) {
    let evicted = slot.evicted.clone();
    let reserved = slot.reserved;
    // The TLS handshake and the first request head, together, within the header-read
    // timeout (a reserved slot's shorter one): a slow sender cannot hold a slot longer,
    // whatever the protocol, and an incomplete connection may be evicted before.
    let head_timeout = if reserved {
        limits.read_header_timeout.min(RESERVED_HEADER_TIMEOUT)
    } else {
        limits.read_header_timeout
    };
    let head_deadline = tokio::time::Instant::now() + head_timeout;
    let first_head = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = tokio::select! {
        io = handshake(web.as_deref(), stream, peer, head_deadline) => io,
        _ = evicted.cancelled() => None,
        _ = app.shutdown.cancelled() => None,
    };
    let Some(io) = io else { return };
    let builder = http_builder(web.as_deref(), head_timeout, reserved);
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(tokio::time::Instant::now()),
    });
    let service = {
        let activity = activity.clone();
        let app = app.clone();
        let first_head = first_head.clone();
        let (admission, id) = (slot.admission.clone(), slot.id);
        service_fn(move |req: Request<Incoming>| {
            let asked = Asked {
                app: app.clone(),
                web: web.clone(),
                peer,
                reserved,
                telemetry_path: telemetry_path.clone(),
                encodings: encodings.clone(),
            };
            let in_flight = InFlight::start(&activity);
            // The first request head: the connection is complete, evicted only when idle.
            if !first_head.swap(true, Ordering::AcqRel) {
                admission.complete(id, &activity);
            }
            let activity = activity.clone();
            async move {
                let _in_flight = in_flight;
                let mut response = asked.respond(req).await;
                // The request has its answer's head; a streamed body goes on, and each
                // piece it sends keeps the connection from counting as idle.
                if let Either::Right(body) = response.body_mut() {
                    body.activity = Some(activity);
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let idle_at = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            // Evicted while incomplete: a newer connection needs the slot.
            _ = evicted.cancelled() => break,
            // No complete request head within the header-read timeout of the accept
            // (HTTP/2's first HEADERS included): closed. `select!` tests a branch's
            // condition once, when it starts waiting, so a head that came during this wait
            // is tested again here: without it, every connection was cut at the timeout
            // after its accept, mid-answer too, however many requests it had carried.
            _ = tokio::time::sleep_until(head_deadline), if !first_head.load(Ordering::Acquire) => {
                if first_head.load(Ordering::Acquire) {
                    continue;
                }
                tracing::debug!(%peer, "closing a connection that sent no complete request in time");
                break;
            }
            _ = app.shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(idle_at), if closing.is_none() => {
                if activity.idle_deadline(limits.idle_timeout) <= tokio::time::Instant::now() {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            // A request that does not finish within the grace period is cut off.
            _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => break,
        }
    }
    drop(slot);
}

/// A connection's stream: plain TCP, or TLS over it.
type Io = tokio_util::either::Either<
    tokio::net::TcpStream,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
>;

/// The TLS handshake when the web config has TLS (by `head_deadline`, and within
/// [`crate::web::HANDSHAKE_TIMEOUT`]), else the plain stream; `None` when it failed.
async fn handshake(
    web: Option<&crate::web::Web>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    head_deadline: tokio::time::Instant,
) -> Option<Io> {
    let Some(acceptor) = web.and_then(|w| w.acceptor()) else {
        return Some(tokio_util::either::Either::Left(stream));
    };
    let deadline = head_deadline.min(tokio::time::Instant::now() + crate::web::HANDSHAKE_TIMEOUT);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tokio_util::either::Either::Right(tls)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// The HTTP/1.1 and HTTP/2 server for one connection, under its limits.
fn http_builder(
    web: Option<&crate::web::Web>,
    head_timeout: Duration,
    reserved: bool,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        // A reserved slot answers one request and is given back.
        .keep_alive(!reserved);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Streams are requests in progress: bounded per connection as the connections are,
        // and each holds at most a piece of text in its send buffer, so a client that opens
        // streams and grants no flow-control window holds little.
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(metrics::CHUNK);
    if web.is_some_and(|w| !w.http2()) {
        builder = builder.http1_only();
    }
    builder
}

/// What one request on a connection is answered with: the app, the web config, who asked
/// and on which kind of slot.
struct Asked {
    app: Arc<App>,
    web: Option<Arc<crate::web::Web>>,
    peer: std::net::SocketAddr,
    reserved: bool,
    telemetry_path: TelemetryPath,
    encodings: Arc<Encodings>,
}

impl Asked {
    /// The answer to `req`: on a reserved slot only the health checks; else after the web
    /// config's auth, with its headers.
    async fn respond(self, req: Request<Incoming>) -> http::Response<Body> {
        let Asked {
            app,
            web,
            peer,
            reserved,
            telemetry_path,
            encodings,
        } = self;
        if reserved && !crate::web::UNAUTHENTICATED_PATHS.contains(&req.uri().path()) {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections: only /-/healthy and /-/ready are answered now; retry later, or raise --web.max-connections and the open-files limit\n",
            );
        }
        let Some(web) = web else {
            return handle(app, req, &telemetry_path, &encodings).await;
        };
        let mut response = match web
            .check_auth(req.uri().path(), req.headers(), Some(peer.ip()))
            .await
        {
            Ok(()) => handle(app, req, &telemetry_path, &encodings).await,
            Err(denied) => denied.map(Either::Left),
        };
        web.decorate(&mut response);
        response
    }
}
