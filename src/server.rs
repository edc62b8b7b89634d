//! The HTTP endpoints: the metrics (`/metrics`, or `--web.telemetry-path`), `/probe`,
//! `/result`, `/-/healthy`, `/-/ready`, `/-/reload` and the `/` page.
//!
//! Owns routing, query parsing, content negotiation, the telemetry path and its validation
//! ([`TelemetryPath`]), the connections' limits (header-read and idle timeouts, a cap with a
//! reserve for health checks) and graceful shutdown. It does not run checks itself: it asks
//! the app (scrape mode, `/probe`), serves what the metrics module encodes, and routes `/`
//! to `status_page`, which renders it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, Generation};
use crate::checks::{CheckKind, Status};
use crate::config::Mode;
use crate::metrics::{self, Format};
use crate::store::Store;
use crate::{report, status_page};

/// Subtracted from Prometheus' scrape timeout, so the answer is sent before it gives up.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// How long a scrape waits for due checks when Prometheus does not say.
const DEFAULT_SCRAPE_WAIT: Duration = Duration::from_secs(10);

/// A response body: whole (every answer but the metrics), or the metrics streamed from the
/// encoder as it writes them ([`Streamed`]).
type Body = Either<Full<Bytes>, Streamed>;

/// What a body hands on: a piece of text, or the end. A stream that ends without `End`
/// means the encoding stopped early (or was evicted).
enum Piece {
    Data(Bytes),
    End,
}

/// Encodings of the metrics text alive at once (being written, or held by scrapes still
/// reading them). A scrape joins the newest encoding of its format if it started less than
/// [`SHARE_FOR`] ago; otherwise it starts one, and when this many are alive the oldest is
/// evicted: the scrapes still reading it are cut off, and its memory goes with them. So
/// memory is bounded by this many texts, however many scrapers there are and however
/// slowly they read, and a flood of scrapes costs at most one encoding per [`SHARE_FOR`].
pub const MAX_ENCODINGS: usize = 4;

/// How long an encoding is shared with the scrapes that arrive after it started: how old a
/// text may be when a scrape gets it (results change once a round, at least a second
/// apart). With [`MAX_ENCODINGS`], a scrape has at least three times this to read its text
/// before a flood of newer ones can evict it (27.5 MB, 10,000 registries, is read in well
/// under a second on a local network).
pub const SHARE_FOR: Duration = Duration::from_secs(2);

/// How far one encoding has got: pieces written, and `Some(whole)` once it ended.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    written: usize,
    end: Option<bool>,
}

/// One encoding of the metrics text, shared by every scrape that joins it. Its encoder, on
/// a blocking thread, never waits for a reader: it appends pieces and goes on, so a scraper
/// that never reads holds memory (this text, shared), never a thread.
struct Encoding {
    format: Format,
    started: std::time::Instant,
    // std Mutex: held to push or clone a piece, never across an .await.
    pieces: Mutex<Vec<Bytes>>,
    progress: tokio::sync::watch::Sender<Progress>,
    /// Cancelled to cut off the scrapes still reading this encoding (see [`MAX_ENCODINGS`]).
    evicted: CancellationToken,
}

impl Encoding {
    fn piece(&self, i: usize) -> Option<Bytes> {
        self.pieces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(i)
            .cloned()
    }

    /// Appends a piece; false when nobody reads this encoding any more (`self` is the
    /// encoder's reference) or it was evicted: the encoder then stops.
    fn push(self: &Arc<Self>, piece: Bytes) -> bool {
        if self.evicted.is_cancelled() || Arc::strong_count(self) == 1 {
            return false;
        }
        self.pieces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(piece);
        self.progress.send_modify(|p| p.written += 1);
        true
    }

    fn end(&self, whole: bool) {
        self.progress.send_if_modified(|p| {
            let first = p.end.is_none();
            if first {
                p.end = Some(whole);
            }
            first
        });
    }

    /// The pieces for one scrape, from the first, as they are written.
    fn reader(self: Arc<Self>) -> futures_util::stream::BoxStream<'static, Piece> {
        use futures_util::StreamExt as _;
        let progress = self.progress.subscribe();
        futures_util::stream::unfold(
            (self, progress, 0usize, false),
            |(enc, mut progress, next, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    if enc.evicted.is_cancelled() {
                        return None;
                    }
                    // Seen before the pieces are looked at: a piece written after this
                    // marks the progress changed, so the wait below cannot miss it.
                    let end = progress.borrow_and_update().end;
                    if let Some(piece) = enc.piece(next) {
                        return Some((Piece::Data(piece), (enc, progress, next + 1, false)));
                    }
                    match end {
                        Some(true) => return Some((Piece::End, (enc, progress, next, true))),
                        Some(false) => return None,
                        None => {}
                    }
                    tokio::select! {
                        changed = progress.changed() => {
                            // The sender lives as long as `enc`: cannot fail; stop if it did.
                            if changed.is_err() {
                                return None;
                            }
                        }
                        _ = enc.evicted.cancelled() => return None,
                    }
                }
            },
        )
        .boxed()
    }
}

/// Sets an encoding's end when its encoder returns or panics.
struct EndOnDrop(Arc<Encoding>, bool);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// The encodings alive (see [`MAX_ENCODINGS`]): one per server.
pub(crate) struct Encodings {
    // std Mutex: never held across an .await. Oldest first.
    live: Mutex<VecDeque<std::sync::Weak<Encoding>>>,
    /// [`SHARE_FOR`] (shorter in tests).
    share_for: Duration,
}

impl Encodings {
    pub(crate) fn new(share_for: Duration) -> Arc<Encodings> {
        Arc::new(Encodings {
            live: Mutex::new(VecDeque::with_capacity(MAX_ENCODINGS + 1)),
            share_for,
        })
    }

    /// A body for one scrape in `format`: it joins the newest encoding of that format that
    /// started less than the sharing time ago and not before `fresh_since` (scrape mode: when
    /// this scrape's due rounds were recorded, which the text must hold), or starts one with
    /// `encode` on a blocking thread (which gets a `send` returning false once nobody reads
    /// the text, and returns whether it wrote all of it).
    pub(crate) fn scrape<F>(
        &self,
        format: Format,
        fresh_since: Option<std::time::Instant>,
        encode: F,
    ) -> Streamed
    where
        F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static,
    {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        let joined = live
            .iter()
            .rev()
            .filter_map(std::sync::Weak::upgrade)
            .find(|e| {
                e.format == format
                    && e.started.elapsed() < self.share_for
                    && fresh_since.is_none_or(|t| e.started >= t)
            });
        let encoding = match joined {
            Some(encoding) => encoding,
            None => {
                while live.len() >= MAX_ENCODINGS {
                    if let Some(oldest) = live.pop_front().and_then(|w| w.upgrade()) {
                        tracing::debug!("a scrape still reading an old metrics text is cut off");
                        oldest.evicted.cancel();
                    }
                }
                let encoding = Arc::new(Encoding {
                    format,
                    started: std::time::Instant::now(),
                    pieces: Mutex::new(Vec::new()),
                    progress: tokio::sync::watch::Sender::new(Progress::default()),
                    evicted: CancellationToken::new(),
                });
                live.push_back(Arc::downgrade(&encoding));
                Streamed::start(encoding.clone(), encode);
                encoding
            }
        };
        Streamed {
            pieces: encoding.reader(),
            ended: false,
            activity: None,
        }
    }
}

/// The metrics text of one scrape, as its shared [`Encoding`] is written: a scraper reads
/// the first piece while the rest is written.
///
/// How long a scraper may hold memory: every piece it takes counts as the connection's
/// activity, so one that stops taking them is closed by the idle timeout
/// (`--web.idle-timeout`) and a grace period, which drops this body; or sooner, when
/// [`MAX_ENCODINGS`] newer encodings evict its own.
pub(crate) struct Streamed {
    pieces: futures_util::stream::BoxStream<'static, Piece>,
    ended: bool,
    /// The connection's activity, marked at every piece taken; set by the connection.
    activity: Option<Arc<Activity>>,
}

/// A streamed body that ended before its end: the encoder panicked (see the log), was
/// stopped or evicted. hyper then cuts the connection instead of ending the body, so a
/// scraper never takes a truncated text for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("the metrics encoder stopped before the end of the text; see the exporter's log")]
pub(crate) struct Truncated;

impl Streamed {
    /// Runs `encode` for `encoding` on a blocking thread, which it holds only while it
    /// writes (milliseconds), never while a reader waits.
    fn start<F>(encoding: Arc<Encoding>, encode: F) -> tokio::task::JoinHandle<bool>
    where
        F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            // The encoder's one reference, which ends the encoding as truncated should
            // `encode` panic.
            let mut end = EndOnDrop(encoding, false);
            let whole = {
                let encoding = &end.0;
                let mut send = |piece: Bytes| encoding.push(piece);
                encode(&mut send)
            };
            end.1 = whole;
            whole
        })
    }

    /// A body of its own encoding (tests).
    #[cfg(test)]
    fn spawn<F>(encode: F) -> (Streamed, tokio::task::JoinHandle<bool>)
    where
        F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static,
    {
        let encoding = Arc::new(Encoding {
            format: Format::Classic,
            started: std::time::Instant::now(),
            pieces: Mutex::new(Vec::new()),
            progress: tokio::sync::watch::Sender::new(Progress::default()),
            evicted: CancellationToken::new(),
        });
        let handle = Streamed::start(encoding.clone(), encode);
        let body = Streamed {
            pieces: encoding.reader(),
            ended: false,
            activity: None,
        };
        (body, handle)
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Truncated;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Truncated>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let piece = std::task::ready!(futures_util::StreamExt::poll_next_unpin(
            &mut self.pieces,
            cx
        ));
        if let Some(activity) = &self.activity {
            activity.touch();
        }
        Poll::Ready(match piece {
            Some(Piece::Data(data)) => Some(Ok(Frame::data(data))),
            Some(Piece::End) => {
                self.ended = true;
                None
            }
            None => {
                self.ended = true;
                tracing::error!("the metrics encoder stopped before the end of the text");
                Some(Err(Truncated))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

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

/// Which slots connections hold: up to the cap, then the reserve.
///
/// A connection is *incomplete* until its first request head arrives (its TLS handshake
/// done). When the cap is reached, a new connection takes the slot of the oldest incomplete
/// one, which is closed: connections that completed a request (the scrapes of a configured
/// Prometheus, kept alive) are never displaced by ones that did not, and a flood of slow
/// senders cannot hold the slots (with TLS and basic auth, it locked the authenticated
/// scrape out). With no incomplete one, the complete connection idle the longest (no
/// request in progress, no piece of an answer taken lately) gives way: a flood of complete
/// requests kept alive cannot hold the slots either, and a connection serving a request is
/// never closed for another. Only when every slot serves a request does a new connection go
/// to the reserve, which answers `/-/healthy` and `/-/ready` alone.
struct Admission {
    general: Arc<Semaphore>,
    // std Mutex: never held across .await.
    inner: Mutex<AdmissionInner>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct AdmissionInner {
    /// Incomplete connections, oldest first: their id, what closes them, and their general
    /// permit (`None` in the reserve).
    incomplete: VecDeque<Incomplete>,
    /// The connections that completed a request, by id: their general permit, what closes
    /// them, and their activity.
    complete: HashMap<u64, Complete>,
}

struct Complete {
    permit: OwnedSemaphorePermit,
    evicted: CancellationToken,
    activity: Arc<Activity>,
}

struct Incomplete {
    id: u64,
    evicted: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
}

/// A connection's place: a general slot, or a reserved one (see [`Admission`]); `evicted` is
/// cancelled to close it when a newer connection needs its slot. Dropping it frees the slot.
struct Slot {
    admission: Arc<Admission>,
    id: u64,
    reserved: bool,
    evicted: CancellationToken,
}

impl Admission {
    fn new(cap: usize) -> Arc<Admission> {
        Arc::new(Admission {
            general: Arc::new(Semaphore::new(cap)),
            inner: Mutex::new(AdmissionInner::default()),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Never refuses: over the cap, the oldest incomplete connection gives up its slot.
    fn admit(self: &Arc<Self>) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut inner = self.lock();
        let permit = match self.general.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            // Full: the oldest incomplete connection with a general slot hands it over, or
            // else the complete one idle the longest.
            Err(_) => inner
                .incomplete
                .iter()
                .position(|c| c.permit.is_some())
                .and_then(|i| inner.incomplete.remove(i))
                .and_then(|oldest| {
                    oldest.evicted.cancel();
                    oldest.permit
                })
                .or_else(|| {
                    let idlest = inner
                        .complete
                        .iter()
                        .filter(|(_, c)| c.activity.in_flight.load(Ordering::Acquire) == 0)
                        .min_by_key(|(_, c)| {
                            *c.activity.last.lock().unwrap_or_else(|p| p.into_inner())
                        })
                        .map(|(id, _)| *id)?;
                    let idlest = inner.complete.remove(&idlest)?;
                    idlest.evicted.cancel();
                    Some(idlest.permit)
                }),
        };
        let reserved = permit.is_none();
        inner.incomplete.push_back(Incomplete {
            id,
            evicted: evicted.clone(),
            permit,
        });
        if reserved {
            let waiting = inner
                .incomplete
                .iter()
                .filter(|c| c.permit.is_none())
                .count();
            if waiting > RESERVED_CONNECTIONS
                && let Some(i) = inner.incomplete.iter().position(|c| c.permit.is_none())
                && let Some(oldest) = inner.incomplete.remove(i)
            {
                oldest.evicted.cancel();
            }
        }
        Slot {
            admission: self.clone(),
            id,
            reserved,
            evicted,
        }
    }

    /// A connection's first request head arrived: it is answered, and evicted only when idle
    /// (see [`Admission`]).
    fn complete(&self, id: u64, activity: &Arc<Activity>) {
        let mut inner = self.lock();
        if let Some(i) = inner.incomplete.iter().position(|c| c.id == id)
            && let Some(done) = inner.incomplete.remove(i)
            && let Some(permit) = done.permit
        {
            inner.complete.insert(
                id,
                Complete {
                    permit,
                    evicted: done.evicted,
                    activity: activity.clone(),
                },
            );
        }
    }

    /// A connection ended: its slot is free.
    fn release(&self, id: u64) {
        let mut inner = self.lock();
        if inner.complete.remove(&id).is_none() {
            inner.incomplete.retain(|c| c.id != id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

/// Requests in progress on one connection and when the last one ended (or a streamed body
/// last sent a piece), for the idle timeout.
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    // std Mutex: never held across .await.
    last: Mutex<tokio::time::Instant>,
}

impl Activity {
    /// Marks activity now.
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// When the connection has been idle for `idle`, as far as is known now.
    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now + idle;
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) + idle
    }
}

/// Marks a request in progress until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
/// client never holds up the accept loop.
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
    let handshake = async {
        match web.as_ref().and_then(|w| w.acceptor()) {
            None => Some(tokio_util::either::Either::Left(stream)),
            Some(acceptor) => {
                let deadline =
                    head_deadline.min(tokio::time::Instant::now() + crate::web::HANDSHAKE_TIMEOUT);
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
        }
    };
    let io = tokio::select! {
        io = handshake => io,
        _ = evicted.cancelled() => None,
        _ = app.shutdown.cancelled() => None,
    };
    let Some(io) = io else { return };

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
    if web.as_ref().is_some_and(|w| !w.http2()) {
        builder = builder.http1_only();
    }
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
            let app = app.clone();
            let web = web.clone();
            let telemetry_path = telemetry_path.clone();
            let encodings = encodings.clone();
            let in_flight = InFlight::start(&activity);
            // The first request head: the connection is complete, evicted only when idle.
            if !first_head.swap(true, Ordering::AcqRel) {
                admission.complete(id, &activity);
            }
            let activity = activity.clone();
            async move {
                let _in_flight = in_flight;
                let mut response = async {
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
                .await;
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
            // (HTTP/2's first HEADERS included): closed.
            _ = tokio::time::sleep_until(head_deadline), if !first_head.load(Ordering::Acquire) => {
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

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    telemetry_path: &TelemetryPath,
    encodings: &Encodings,
) -> Response<Body> {
    if req.uri().path() == "/-/reload" {
        if req.method() != Method::POST && req.method() != Method::PUT {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use POST /-/reload\n");
            resp.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST, PUT"));
            return resp;
        }
        return match app.reload().await {
            Ok(()) => text(StatusCode::OK, "config reloaded\n"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{e}; the running configuration stays in force\n"),
            ),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let path = req.uri().path();
    if path == telemetry_path.as_str() {
        let mut fresh_since = None;
        if app.current().config.mode == Mode::Scrape {
            let wait = scrape_wait(req.headers());
            app.refresh_due(wait).await;
            // The rounds this scrape waited for are recorded: an older text lacks them.
            fresh_since = Some(std::time::Instant::now());
        }
        // Encoding thousands of registries takes milliseconds: off the async workers, so a
        // scrape never delays the checks' I/O; shared by the scrapes that arrive while it is
        // written, and never waiting for a reader, so slow scrapers hold no thread.
        let encoder = app.clone();
        let body = encodings.scrape(format, fresh_since, move |send| {
            encoder.metrics.encode_chunks(&encoder.store, format, send)
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, format.content_type())
            .body(Either::Right(body))
            .expect("static headers are valid");
    }
    match path {
        "/probe" => {
            let wait = scrape_timeout(req.headers());
            probe(&app, req.uri().query().unwrap_or(""), format, wait).await
        }
        "/-/healthy" => text(StatusCode::OK, "healthy\n"),
        "/-/ready" => {
            if app.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the first round of checks is still running\n",
                )
            }
        }
        "/" => html(status_page::render(
            &app,
            req.uri().query().unwrap_or(""),
            telemetry_path.as_str(),
            SystemTime::now(),
        )),
        "/result" => result_page(&app, req.uri().query().unwrap_or("")),
        _ => text(
            StatusCode::NOT_FOUND,
            &format!(
                "not found; try {}, /probe?target=NAME or /\n",
                telemetry_path.as_str()
            ),
        ),
    }
}

fn scrape_wait(headers: &http::HeaderMap) -> Duration {
    scrape_timeout(headers).unwrap_or(DEFAULT_SCRAPE_WAIT)
}

/// How long Prometheus waits for this answer (`X-Prometheus-Scrape-Timeout-Seconds`), less
/// the margin that gets the answer to it in time; `None` without the header.
fn scrape_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|d| d.saturating_sub(SCRAPE_TIMEOUT_OFFSET))
        .map(|d| d.max(Duration::from_millis(100)))
}

/// How many registry names the 400 for an unknown `/probe` target lists: enough to spot a
/// typo, bounded however many registries are configured.
const UNKNOWN_TARGET_EXAMPLES: usize = 5;

/// The 400 for a `/probe` of no configured registry: a few of the configured names (of every
/// shard), enough to spot a typo, and their number.
fn unknown_target(generation: &Generation, name: &str) -> Response<Body> {
    let registries = &generation.config.registries;
    let examples: Vec<&str> = registries
        .iter()
        .take(UNKNOWN_TARGET_EXAMPLES)
        .map(|t| t.name.as_str())
        .collect();
    let n = registries.len();
    let configured = if n == 1 {
        format!("1 is configured: {}", examples.join(", "))
    } else if n <= UNKNOWN_TARGET_EXAMPLES {
        format!("{n} are configured: {}", examples.join(", "))
    } else if generation.config.shard.is_sharded() {
        format!(
            "{n} are configured, e.g. {}; --check-config lists them all",
            examples.join(", ")
        )
    } else {
        format!(
            "{n} are configured, e.g. {}; see / for all of them",
            examples.join(", ")
        )
    };
    text(
        StatusCode::BAD_REQUEST,
        &format!(
            "unknown target {name:?}: /probe only reaches configured registries; {configured}\n"
        ),
    )
}

/// What a `/probe` query string asks for (the last of a repeated key counts; unknown keys
/// are ignored).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeQuery {
    pub(crate) target: Option<String>,
    pub(crate) check: Option<String>,
    pub(crate) debug: bool,
}

impl ProbeQuery {
    pub(crate) fn parse(query: &str) -> ProbeQuery {
        let mut q = ProbeQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "target" => q.target = Some(v.into_owned()),
                "check" => q.check = Some(v.into_owned()),
                "debug" => q.debug = matches!(v.as_ref(), "true" | "1"),
                _ => {}
            }
        }
        q
    }
}

/// The checks a `/probe`'s `check` selects (`None`: the configured ones), or the 400's text
/// for an unknown one.
pub(crate) fn probe_checks(check: Option<&str>) -> Result<Option<Vec<CheckKind>>, String> {
    match check {
        None | Some("") => Ok(None),
        Some(c) => match CheckKind::parse(c) {
            Some(kind) => Ok(Some(vec![kind])),
            None => {
                let known: Vec<&str> = CheckKind::ALL.iter().map(|c| c.short_name()).collect();
                Err(format!(
                    "unknown check {c:?}; use one of {}\n",
                    known.join(", ")
                ))
            }
        },
    }
}

/// `/probe?target=NAME[&check=C][&debug=true]`: that registry's checks, now, through
/// [`App::probe`] (concurrent probes share one run), answered within `wait` when
/// Prometheus said how long it waits; a run that takes longer goes on for the probes that
/// come next, and this one answers `probe_success 0`.
async fn probe(
    app: &Arc<App>,
    query: &str,
    format: Format,
    wait: Option<Duration>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let ProbeQuery {
        target,
        check,
        debug,
    } = ProbeQuery::parse(query);
    let Some(name) = target.filter(|t| !t.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "target parameter is missing; use /probe?target=<registry name>\n",
        );
    };
    let generation = app.current();
    // Any configured registry, of any shard: a Probe reaches the replicas through a Service
    // that picks one, so the answer must not depend on which (docs/operations.md).
    let rt = match generation.probe_target(&name) {
        Some(Ok(rt)) => rt,
        Some(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        None => return unknown_target(&generation, &name),
    };
    let only = match probe_checks(check.as_deref()) {
        Ok(only) => only,
        Err(unknown) => return text(StatusCode::BAD_REQUEST, &unknown),
    };
    let run = app.probe(&rt, only);
    let results = match wait {
        Some(wait) => tokio::time::timeout(wait, run).await.ok().flatten(),
        None => run.await,
    };
    let success = results
        .as_deref()
        .is_some_and(|results| results.iter().all(|r| r.status != Status::Fail));
    // The probe's own table: this registry's results only, never `/metrics`' store.
    let store = Store::new(0);
    store.declare(&rt.target);
    for result in results.iter().flat_map(|r| r.iter()) {
        store.put(&rt.target.name, result.clone());
    }
    let duration = started.elapsed();
    let encode = |format| metrics::encode_probe(&store, success, duration, format);
    if debug {
        let Some(results) = results else {
            let body = format!(
                "the checks of {name:?} did not finish within the scrape timeout (less {} ms), or a reload or shutdown stopped them; a probe joining the run still going gets its results\n\n{}",
                SCRAPE_TIMEOUT_OFFSET.as_millis(),
                encode(Format::Classic)
            );
            return text(StatusCode::OK, &body);
        };
        // blackbox_exporter's habit: the request trail and each verdict, then the metrics.
        let body = report::probe_debug(
            &rt.target.name,
            rt.client.base_url().as_str(),
            &results,
            &encode(Format::Classic),
        );
        return text(StatusCode::OK, &body);
    }
    metrics_response(format, encode(format))
}

fn result_page(app: &App, query: &str) -> Response<Body> {
    let id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let Some(id) = id else {
        return text(
            StatusCode::BAD_REQUEST,
            "id parameter is missing; follow a link from the / page\n",
        );
    };
    match app.store.history_entry(id) {
        Some((registry, result)) => {
            let mut body = String::new();
            report::result_debug(&mut body, &registry, &result);
            text(StatusCode::OK, &body)
        }
        None => text(
            StatusCode::NOT_FOUND,
            &format!("result {id} is no longer kept; the / page lists the ones that are\n"),
        ),
    }
}

fn metrics_response(format: Format, body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("static headers are valid")
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from(body.to_string()))))
        .expect("static headers are valid")
}

fn html(body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn pieces(n: usize) -> impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static {
        move |send| (0..n).all(|i| send(Bytes::from(format!("piece {i}\n"))))
    }

    #[tokio::test]
    async fn a_streamed_body_carries_every_piece_then_ends() {
        let (body, encoder) = Streamed::spawn(pieces(50));
        let text = body.collect().await.unwrap().to_bytes();
        let expected: String = (0..50).map(|i| format!("piece {i}\n")).collect();
        assert_eq!(text, expected.as_bytes());
        assert!(encoder.await.unwrap());
    }

    #[test]
    fn a_probe_query_is_read_as_the_server_reads_it() {
        let q = ProbeQuery::parse("target=a%20b&check=pull&debug=1&target=c&x=y");
        assert_eq!(
            q,
            ProbeQuery {
                target: Some("c".into()),
                check: Some("pull".into()),
                debug: true
            }
        );
        assert_eq!(probe_checks(Some("pull")), Ok(Some(vec![CheckKind::Pull])));
        assert_eq!(probe_checks(Some("")), Ok(None));
        assert!(
            probe_checks(Some("nope"))
                .unwrap_err()
                .contains("use one of")
        );
        assert_eq!(ProbeQuery::parse("%ff%fe=&&=="), ProbeQuery::default());
    }

    #[tokio::test]
    async fn a_scrape_mode_scrape_never_joins_a_text_older_than_its_rounds() {
        use std::sync::atomic::AtomicUsize;
        let runs = Arc::new(AtomicUsize::new(0));
        let encodings = Encodings::new(Duration::from_secs(60));
        let counting = |runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move |send: &mut dyn FnMut(Bytes) -> bool| {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                send(Bytes::from(format!("run {n}\n")))
            }
        };
        let first = encodings.scrape(Format::Classic, None, counting(&runs));
        // Shared while young...
        let joined = encodings.scrape(Format::Classic, None, counting(&runs));
        // ...but not by a scrape whose rounds were recorded after it started.
        let rounds_recorded = std::time::Instant::now();
        let fresh = encodings.scrape(Format::Classic, Some(rounds_recorded), counting(&runs));
        assert_eq!(first.collect().await.unwrap().to_bytes(), &b"run 0\n"[..]);
        assert_eq!(joined.collect().await.unwrap().to_bytes(), &b"run 0\n"[..]);
        assert_eq!(fresh.collect().await.unwrap().to_bytes(), &b"run 1\n"[..]);
    }

    #[tokio::test]
    async fn an_encoder_never_waits_for_its_reader() {
        // A scraper that never reads holds the text, not the encoder's thread.
        let (body, encoder) = Streamed::spawn(pieces(10_000));
        let whole = tokio::time::timeout(Duration::from_secs(5), encoder)
            .await
            .expect("the encoder waited for a reader")
            .unwrap();
        assert!(whole);
        let text = body.collect().await.unwrap().to_bytes();
        assert!(text.ends_with(b"piece 9999\n"));
    }

    #[tokio::test]
    async fn a_dropped_body_stops_the_encoder() {
        // The scraper went away after the first piece: the encoder learns it at its next
        // piece and stops instead of writing a text nobody reads.
        let (mut body, encoder) = Streamed::spawn(|send| {
            (0..100_000).all(|i| {
                std::thread::sleep(Duration::from_millis(1));
                send(Bytes::from(format!("piece {i}\n")))
            })
        });
        let first = body.frame().await;
        assert!(first.is_some_and(|f| f.is_ok()));
        drop(body);
        let whole = tokio::time::timeout(Duration::from_secs(5), encoder)
            .await
            .expect("the encoder went on after its body was dropped")
            .unwrap();
        assert!(!whole);
    }

    #[tokio::test]
    async fn concurrent_scrapes_share_one_encoding_and_the_oldest_is_evicted() {
        use std::sync::atomic::AtomicUsize;
        let runs = Arc::new(AtomicUsize::new(0));
        let encodings = Encodings::new(Duration::from_millis(100));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let slow = |runs: &Arc<AtomicUsize>, gate: &Arc<Mutex<std::sync::mpsc::Receiver<()>>>| {
            let (runs, gate) = (runs.clone(), gate.clone());
            move |send: &mut dyn FnMut(Bytes) -> bool| {
                runs.fetch_add(1, Ordering::SeqCst);
                send(Bytes::from_static(b"a 1\n"));
                // Held in progress until the test lets it end.
                let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(5));
                send(Bytes::from_static(b"b 2\n"))
            }
        };
        let first = encodings.scrape(Format::Classic, None, slow(&runs, &gate));
        let second = encodings.scrape(Format::Classic, None, slow(&runs, &gate));
        release.send(()).unwrap();
        let (a, b) = (first.collect().await, second.collect().await);
        assert_eq!(a.unwrap().to_bytes(), &b"a 1\nb 2\n"[..]);
        assert_eq!(b.unwrap().to_bytes(), &b"a 1\nb 2\n"[..]);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "one encoding for both scrapes"
        );

        // Finished encodings held by scrapers that do not read: the oldest is cut off when
        // a newer one needs its place.
        let whole = |send: &mut dyn FnMut(Bytes) -> bool| send(Bytes::from_static(b"c 3\n"));
        let mut held = Vec::new();
        for _ in 0..MAX_ENCODINGS {
            held.push(encodings.scrape(Format::Classic, None, whole));
            // Past the sharing time: each scrape starts an encoding of its own.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let newest = encodings.scrape(Format::Classic, None, whole);
        assert!(
            held.remove(0).collect().await.is_err(),
            "the oldest is evicted"
        );
        assert!(held.remove(0).collect().await.is_ok());
        assert!(newest.collect().await.is_ok());
    }

    #[tokio::test]
    async fn an_encoder_that_stops_early_cuts_the_body_instead_of_ending_it() {
        // A panic or a stop before the end must not look like a whole text to the scraper.
        let (body, _) = Streamed::spawn(|send| {
            send(Bytes::from_static(b"a_metric 1\n"));
            false
        });
        assert!(body.collect().await.is_err());
        let (body, _) = Streamed::spawn(|send| {
            send(Bytes::from_static(b"a_metric 1\n"));
            panic!("a bug in the encoder")
        });
        assert!(body.collect().await.is_err());
    }
}
