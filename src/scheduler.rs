//! Interval mode: a background loop per registry that runs its checks every `interval`.
//!
//! Owns timing only: a small random delay before the first round and a few percent of
//! jitter on every period, so registries sharing a host are not hit in lockstep. It stops
//! when the app's shutdown token is cancelled or a reload retires the generation. What a round does is `App::round`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::{App, Generation};

/// The longest delay before a registry's first round.
const MAX_START_DELAY: Duration = Duration::from_secs(1);

/// Spawns one loop per registry of `generation` on the app's task tracker. The loops end
/// on shutdown or when a reload retires the generation.
pub fn start(app: &Arc<App>, generation: &Arc<Generation>) {
    for rt in &generation.targets {
        let app = app.clone();
        let rt = rt.clone();
        let retired = generation.retired.clone();
        app.tasks.clone().spawn(async move {
            let rt = &rt;
            let interval = rt.target.interval;
            let start_delay = random_fraction(MAX_START_DELAY.min(interval / 10), 0.0, 1.0);
            let mut next = Instant::now() + start_delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = app.shutdown.cancelled() => return,
                    _ = retired.cancelled() => return,
                }
                let started = Instant::now();
                let retry_after = tokio::select! {
                    // Zero freshness: in interval mode every tick runs a round.
                    r = app.round(rt, Duration::ZERO) => r,
                    _ = app.shutdown.cancelled() => return,
                    _ = retired.cancelled() => return,
                };
                // ±5 % jitter on the period; a round that overran starts the next at once.
                next = started + random_fraction(interval, 0.95, 1.05);
                // A registry that answered 429 with Retry-After is not probed again before
                // it said; capped at an hour so a silly value cannot stop monitoring.
                if let Some(after) = retry_after {
                    let after = after.min(Duration::from_secs(3600));
                    if Instant::now() + after > next {
                        tracing::info!(registry = %rt.target.name, retry_after_s = after.as_secs(), "rate limited: honouring Retry-After");
                        next = Instant::now() + after;
                    }
                }
            }
        });
    }
}

fn random_fraction(d: Duration, low: f64, high: f64) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rand::random_range(low..=high))
}
