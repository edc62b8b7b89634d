//! The metrics text streamed to scrapers: [`Encodings`] (the encodings alive, shared by the
//! scrapes of the next [`SHARE_FOR`], at most [`MAX_ENCODINGS`], the oldest evicted),
//! `Encoding` (pieces written by a blocking encoder that never waits for a reader) and
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
/// apart). With [`MAX_ENCODINGS`], a scrape has at least three times this to read its text
/// before a flood of newer ones can evict it (27.5 MB, 10,000 registries, is read in well
/// under a second on a local network).
pub const SHARE_FOR: Duration = Duration::from_secs(2);

/// How far one encoding has got: pieces written, and `Some(whole)` once it ended.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    pub(super) written: usize,
    pub(super) end: Option<bool>,
}

/// One encoding of the metrics text, shared by every scrape that joins it. Its encoder, on
/// a blocking thread, never waits for a reader: it appends pieces and goes on, so a scraper
/// that never reads holds memory (this text, shared), never a thread.
pub(super) struct Encoding {
    pub(super) format: Format,
    pub(super) started: std::time::Instant,
    // std Mutex: held to push or clone a piece, never across an .await.
    pub(super) pieces: Mutex<Vec<Bytes>>,
    pub(super) progress: tokio::sync::watch::Sender<Progress>,
    /// Cancelled to cut off the scrapes still reading this encoding (see [`MAX_ENCODINGS`]).
    pub(super) evicted: CancellationToken,
}

impl Encoding {
    pub(super) fn piece(&self, i: usize) -> Option<Bytes> {
        self.pieces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(i)
            .cloned()
    }

    /// Appends a piece; false when nobody reads this encoding any more (`self` is the
    /// encoder's reference) or it was evicted: the encoder then stops.
    pub(super) fn push(self: &Arc<Self>, piece: Bytes) -> bool {
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

    pub(super) fn end(&self, whole: bool) {
        self.progress.send_if_modified(|p| {
            let first = p.end.is_none();
            if first {
                p.end = Some(whole);
            }
            first
        });
    }

    /// The pieces for one scrape, from the first, as they are written.
    pub(super) fn reader(self: Arc<Self>) -> futures_util::stream::BoxStream<'static, Piece> {
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
    /// Runs `encode` for `encoding` on a blocking thread, which it holds only while it
    /// writes (milliseconds), never while a reader waits.
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
