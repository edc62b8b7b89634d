//! The metrics text streamed to scrapers: [`Encodings`] (the encodings alive, shared by the
//! scrapes of the next [`SHARE_FOR`], at most [`MAX_ENCODINGS`], the oldest evicted),
//! `Encoding` (pieces written by a blocking encoder that keeps at most [`AHEAD`] pieces
//! ahead of its fastest reader, each freed once every reader has passed it) and
//! [`Streamed`], the hyper body that hands a scrape its pieces as they are written.
//!
//! It does not decide what is encoded (`metrics`) or when a scrape runs rounds first
//! (`routes`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tokio_util::sync::CancellationToken;

use crate::metrics::Format;

use super::admission::Activity;

/// What a body hands on: a piece of text, or the end. A stream that ends without `End`
/// means the encoding stopped early (or was evicted).
pub(super) enum Piece {
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
/// apart). With [`MAX_ENCODINGS`] and [`FREEING_PER_SHARE`], a scrape has at least this long
/// to read its text before a flood of newer ones can evict it (27.5 MB, 10,000 registries,
/// is read in well under a second on a local network).
pub const SHARE_FOR: Duration = Duration::from_secs(2);

/// How many encodings of one format, started within one [`SHARE_FOR`], free the pieces
/// their readers have passed. A freeing encoding can be joined only while its first piece
/// is held (a late scrape must get the whole text), so a scrape that arrives later starts
/// an encoding of its own; past this many in one sharing time (a flood of scrapes), the
/// next keeps every piece and is shared by every scrape of its sharing time, so a flood
/// costs at most this many plus one encodings per [`SHARE_FOR`], not one per scrape.
///
/// Why free at all: at 10,000 registries a text is 27.5 MB, as much as the exporter's
/// whole state; a scrape that held all of it until its last byte was sent set the
/// exporter's peak memory (docs/benchmarks.md, "Against a real Distribution").
pub const FREEING_PER_SHARE: usize = 2;

/// How many pieces an encoding that frees what its readers passed may hold beyond what its
/// fastest reader has taken; its encoder then waits until that reader is within
/// [`RESUME_AT`]. With 256 KiB pieces (`metrics::CHUNK`), a scrape holds at most about
/// 512 KiB of text beyond its reader however large the whole is (27.5 MB at 10,000
/// registries), plus what hyper has taken and not yet sent. Without it the encoder, faster
/// than any socket, wrote most of the text before the scraper had read its start, and that
/// text set the exporter's peak memory (docs/benchmarks.md, "Against a real
/// Distribution"). A window of 512 KiB rather than 256: with 64 KiB pieces, 4 of them
/// made the encoder and the connection wake each other every few pieces, and a scrape of
/// 10,000 registries took 60-90 ms against 47-66 ms with 8.
pub const AHEAD: usize = 2;

/// The distance to the fastest reader at which a waiting encoder goes on: half the window,
/// so that it writes the next piece while the connection still sends the one before.
const RESUME_AT: usize = AHEAD / 2;

/// How many pieces an encoder writes beyond its fastest reader before it wakes the readers
/// waiting for them (the end always wakes them). A reader waits only once it has taken
/// every piece written, so it is then woken for two pieces instead of one: each wake-up of
/// a connection was a thread woken across cores, about a fifth of the exporter's time in a
/// scrape of 10,000 registries, where the encoder is slower than the connection and the
/// connection waited after every piece (docs/benchmarks.md, "Woken for two pieces"). The
/// encoder waits only past [`AHEAD`], so it never waits for a reader it has not woken.
const WAKE_AT: usize = 2;
const _: () = assert!(
    WAKE_AT <= AHEAD,
    "an encoder would wait for readers it never woke"
);

/// How far one encoding has got: pieces written, and `Some(whole)` once it ended.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    pub(super) written: usize,
    pub(super) end: Option<bool>,
}

/// The pieces of one encoding still held, and where its readers are.
#[derive(Default)]
struct Held {
    /// The pieces from `first` on; those before it were passed by every reader.
    pieces: VecDeque<Bytes>,
    /// The index in the text of `pieces[0]`.
    first: usize,
    /// Each reader's next piece, by reader; `None` for a reader gone.
    readers: Vec<Option<usize>>,
    /// Whether pieces every reader has passed are freed (see [`FREEING_PER_SHARE`]); such
    /// an encoding's encoder also waits for its fastest reader (see [`AHEAD`]).
    freeing: bool,
    /// Whether the encoder waits for a reader to take pieces (see [`AHEAD`]).
    encoder_waits: bool,
}

impl Held {
    /// Frees the pieces every reader has passed. Nothing is freed when no reader is left:
    /// the encoder then stops at its next piece, and the pieces go with the encoding.
    fn free_passed(&mut self) {
        if !self.freeing {
            return;
        }
        if let Some(slowest) = self.readers.iter().flatten().min().copied() {
            let passed = slowest.saturating_sub(self.first).min(self.pieces.len());
            self.pieces.drain(..passed);
            self.first += passed;
        }
    }

    /// How many pieces the encoder is ahead of its fastest reader; 0 with no reader left.
    fn ahead(&self) -> usize {
        let fastest = self.readers.iter().flatten().max().copied();
        // Every piece written is held from `first` on or was passed by every reader.
        let written = self.first + self.pieces.len();
        fastest.map_or(0, |f| written.saturating_sub(f))
    }
}

/// One encoding of the metrics text, shared by every scrape that joins it. Its encoder, on
/// a blocking thread, appends pieces; a piece every reader has passed is freed, and the
/// encoder waits while it is [`AHEAD`] pieces ahead of its fastest reader. An encoding that
/// keeps its pieces for a flood's late scrapes (see [`FREEING_PER_SHARE`]) neither frees
/// nor waits.
///
/// So a scraper that never reads holds a blocking thread and [`AHEAD`] pieces until its
/// connection's idle timeout drops it, or a newer encoding evicts this one: at most
/// [`MAX_ENCODINGS`] threads, however many such scrapers there are.
pub(super) struct Encoding {
    pub(super) format: Format,
    pub(super) started: std::time::Instant,
    // std Mutex: held to push, take or free pieces, never across an .await.
    held: Mutex<Held>,
    /// Wakes an encoder waiting for its fastest reader: a reader took pieces or left, or the
    /// encoding was evicted.
    taken: std::sync::Condvar,
    pub(super) progress: tokio::sync::watch::Sender<Progress>,
    /// Cancelled to cut off the scrapes still reading this encoding (see [`MAX_ENCODINGS`]).
    pub(super) evicted: CancellationToken,
}

impl Encoding {
    pub(super) fn new(format: Format, freeing: bool) -> Arc<Encoding> {
        Arc::new(Encoding {
            format,
            started: std::time::Instant::now(),
            held: Mutex::new(Held {
                freeing,
                ..Held::default()
            }),
            taken: std::sync::Condvar::new(),
            progress: tokio::sync::watch::Sender::new(Progress::default()),
            evicted: CancellationToken::new(),
        })
    }

    /// Cuts off the scrapes still reading this encoding, and stops its encoder.
    pub(super) fn evict(&self) {
        self.evicted.cancel();
        // Taken under the lock, so an encoder about to wait sees the eviction or is woken.
        let _held = self.held();
        self.taken.notify_all();
    }

    /// Wakes the encoder if it waits and the fastest reader is back within [`RESUME_AT`].
    fn wake_encoder(&self, held: &mut Held) {
        if held.encoder_waits && held.ahead() <= RESUME_AT {
            held.encoder_waits = false;
            self.taken.notify_all();
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reader from the first piece, or `None` once the first piece was freed (a
    /// scrape must get the whole text).
    pub(super) fn join(self: &Arc<Self>) -> Option<Reader> {
        let mut held = self.held();
        if held.first > 0 {
            return None;
        }
        let id = held.readers.len();
        held.readers.push(Some(0));
        Some(Reader {
            encoding: self.clone(),
            id,
        })
    }

    /// Piece `i` for reader `id`, which has then passed it (hyper holds its own reference
    /// to the bytes until they are sent); the pieces every reader has passed are freed.
    fn take(&self, id: usize, i: usize) -> Option<Bytes> {
        let mut held = self.held();
        let piece = held.pieces.get(i.checked_sub(held.first)?).cloned()?;
        held.readers[id] = Some(i + 1);
        held.free_passed();
        self.wake_encoder(&mut held);
        Some(piece)
    }

    /// How many pieces are held (tests).
    #[cfg(test)]
    pub(super) fn held_pieces(&self) -> usize {
        self.held().pieces.len()
    }

    /// Appends a piece, then waits while [`AHEAD`] pieces are ahead of the fastest reader;
    /// false when nobody reads this encoding any more (`self` is the encoder's reference)
    /// or it was evicted: the encoder then stops.
    pub(super) fn push(self: &Arc<Self>, piece: Bytes) -> bool {
        let gone = |e: &Arc<Self>| e.evicted.is_cancelled() || Arc::strong_count(e) == 1;
        if gone(self) {
            return false;
        }
        let mut held = self.held();
        held.pieces.push_back(piece);
        let wake = held.ahead() >= WAKE_AT;
        // Under the same lock as the piece (a reader reads the progress, then takes the
        // lock, never both at once): one lock a piece.
        self.progress.send_if_modified(|p| {
            p.written += 1;
            wake
        });
        while held.freeing && held.ahead() > AHEAD {
            if gone(self) {
                return false;
            }
            held.encoder_waits = true;
            // Woken by a reader's take, a reader's leaving or an eviction; the timeout is
            // a backstop for the one wake-up not sent under the lock (the last reader's
            // Arc dropped just after its Reader left).
            held = self
                .taken
                .wait_timeout(held, Duration::from_millis(100))
                .map(|(held, _)| held)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    pub(super) fn end(&self, whole: bool) {
        self.progress.send_if_modified(|p| {
            let first = p.end.is_none();
            if first {
                p.end = Some(whole);
            }
            first
        });
    }
}

/// One scrape's place in an [`Encoding`]: the pieces before it may be freed. Leaves the
/// encoding when dropped (the scrape ended or went away), so it holds nothing back.
pub(super) struct Reader {
    encoding: Arc<Encoding>,
    id: usize,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut held = self.encoding.held();
        held.readers[self.id] = None;
        held.free_passed();
        // The encoder may have waited for this reader: it goes on for the others, or
        // learns that nobody reads any more.
        held.encoder_waits = false;
        self.encoding.taken.notify_all();
    }
}

impl Reader {
    /// The pieces for one scrape, from the first, as they are written.
    pub(super) fn pieces(self) -> futures_util::stream::BoxStream<'static, Piece> {
        use futures_util::StreamExt as _;
        let progress = self.encoding.progress.subscribe();
        futures_util::stream::unfold(
            (self, progress, 0usize, false),
            |(reader, mut progress, next, ended)| async move {
                if ended {
                    return None;
                }
                let enc = &reader.encoding;
                loop {
                    if enc.evicted.is_cancelled() {
                        return None;
                    }
                    // Seen before the pieces are looked at: a piece written after this
                    // marks the progress changed, so the wait below cannot miss it.
                    let end = progress.borrow_and_update().end;
                    if let Some(piece) = enc.take(reader.id, next) {
                        return Some((Piece::Data(piece), (reader, progress, next + 1, false)));
                    }
                    match end {
                        Some(true) => return Some((Piece::End, (reader, progress, next, true))),
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
pub(super) struct EndOnDrop(Arc<Encoding>, bool);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// The encodings alive (see [`MAX_ENCODINGS`]): one per server.
pub(crate) struct Encodings {
    // std Mutex: never held across an .await. Oldest first.
    pub(super) live: Mutex<VecDeque<std::sync::Weak<Encoding>>>,
    /// [`SHARE_FOR`] (shorter in tests).
    pub(super) share_for: Duration,
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
        let young: Vec<Arc<Encoding>> = live
            .iter()
            .rev()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|e| e.format == format && e.started.elapsed() < self.share_for)
            .collect();
        let joined = young
            .iter()
            .filter(|e| fresh_since.is_none_or(|t| e.started >= t))
            .find_map(Encoding::join);
        let reader = match joined {
            Some(reader) => reader,
            None => {
                while live.len() >= MAX_ENCODINGS {
                    if let Some(oldest) = live.pop_front().and_then(|w| w.upgrade()) {
                        tracing::debug!("a scrape still reading an old metrics text is cut off");
                        oldest.evict();
                    }
                }
                let encoding = Encoding::new(format, young.len() < FREEING_PER_SHARE);
                live.push_back(Arc::downgrade(&encoding));
                // Joined before the encoder starts, so no piece is freed before it.
                let reader = encoding
                    .join()
                    .expect("a new encoding holds its first piece: nothing was freed yet");
                Streamed::start(encoding, encode);
                reader
            }
        };
        Streamed {
            pieces: reader.pieces(),
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
    pub(super) pieces: futures_util::stream::BoxStream<'static, Piece>,
    pub(super) ended: bool,
    /// The connection's activity, marked at every piece taken; set by the connection.
    pub(super) activity: Option<Arc<Activity>>,
}

/// A streamed body that ended before its end: the encoder panicked (see the log), was
/// stopped or evicted. hyper then cuts the connection instead of ending the body, so a
/// scraper never takes a truncated text for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("the metrics encoder stopped before the end of the text; see the exporter's log")]
pub(crate) struct Truncated;

impl Streamed {
    /// Runs `encode` for `encoding` on a blocking thread, which it holds while it writes
    /// and while its fastest reader is [`AHEAD`] pieces behind (see [`Encoding`]).
    pub(super) fn start<F>(encoding: Arc<Encoding>, encode: F) -> tokio::task::JoinHandle<bool>
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
    pub(super) fn spawn<F>(encode: F) -> (Streamed, tokio::task::JoinHandle<bool>)
    where
        F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static,
    {
        let (body, handle, _) = Streamed::spawn_watched(encode);
        (body, handle)
    }

    /// A body of its own encoding, and the encoding (tests).
    #[cfg(test)]
    pub(super) fn spawn_watched<F>(
        encode: F,
    ) -> (Streamed, tokio::task::JoinHandle<bool>, Arc<Encoding>)
    where
        F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static,
    {
        let encoding = Encoding::new(Format::Classic, true);
        let reader = encoding
            .join()
            .expect("a new encoding holds its first piece: nothing was freed yet");
        let handle = Streamed::start(encoding.clone(), encode);
        let body = Streamed {
            pieces: reader.pieces(),
            ended: false,
            activity: None,
        };
        (body, handle, encoding)
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
