//! Connection admission: `Admission` (a cap on the connections served at once with a
//! reserve for health checks; at the cap a newcomer takes the slot of the oldest connection
//! without a complete request, else of the one idle the longest), its `Slot`s, and
//! `Activity`, by which a connection's idle time is measured (a piece of a streamed body
//! taken counts as activity).
//!
//! It does not serve a connection (`mod.rs`, `connection`) or answer requests (`routes`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::RESERVED_CONNECTIONS;

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
pub(super) struct Admission {
    pub(super) general: Arc<Semaphore>,
    // std Mutex: never held across .await.
    pub(super) inner: Mutex<AdmissionInner>,
    pub(super) next_id: AtomicU64,
}

#[derive(Default)]
pub(super) struct AdmissionInner {
    /// Incomplete connections, oldest first: their id, what closes them, and their general
    /// permit (`None` in the reserve).
    pub(super) incomplete: VecDeque<Incomplete>,
    /// The connections that completed a request, by id: their general permit, what closes
    /// them, and their activity.
    pub(super) complete: HashMap<u64, Complete>,
}

pub(super) struct Complete {
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) evicted: CancellationToken,
    pub(super) activity: Arc<Activity>,
}

pub(super) struct Incomplete {
    pub(super) id: u64,
    pub(super) evicted: CancellationToken,
    pub(super) permit: Option<OwnedSemaphorePermit>,
}

/// A connection's place: a general slot, or a reserved one (see [`Admission`]); `evicted` is
/// cancelled to close it when a newer connection needs its slot. Dropping it frees the slot.
pub(super) struct Slot {
    pub(super) admission: Arc<Admission>,
    pub(super) id: u64,
    pub(super) reserved: bool,
    pub(super) evicted: CancellationToken,
}

impl Admission {
    pub(super) fn new(cap: usize) -> Arc<Admission> {
        Arc::new(Admission {
            general: Arc::new(Semaphore::new(cap)),
            inner: Mutex::new(AdmissionInner::default()),
            next_id: AtomicU64::new(0),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Never refuses: over the cap, the oldest incomplete connection gives up its slot.
    pub(super) fn admit(self: &Arc<Self>) -> Slot {
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
    pub(super) fn complete(&self, id: u64, activity: &Arc<Activity>) {
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
    pub(super) fn release(&self, id: u64) {
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
    pub(super) in_flight: AtomicUsize,
    // std Mutex: never held across .await.
    pub(super) last: Mutex<tokio::time::Instant>,
}

impl Activity {
    /// Marks activity now.
    pub(super) fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// When the connection has been idle for `idle`, as far as is known now.
    pub(super) fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now + idle;
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) + idle
    }
}

/// Marks a request in progress until dropped.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn start(activity: &Arc<Activity>) -> InFlight {
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
