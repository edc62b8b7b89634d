//! Interval mode: when each registry's rounds run.
//!
//! Owns timing only. Every registry has a phase: its rounds run at `anchor + (phase + k) ×
//! interval`, and the phases of the registries that share an interval are spread evenly
//! over it (the i-th of n at i/n), so that 1,000 registries checked every minute make about
//! 17 rounds a second, not bursts. Each round starts up to 5 % of the interval late (jitter
//! that does not add up) and on a 10 ms tick, so one timer wake starts the rounds of a tick.
//! A registry without a result yet (at start-up, or added by a reload) has its first round
//! early instead (10 ms apart, closer if needed to fit all in [`START_SPREAD`]), so that the
//! exporter is ready (every registry checked once, see `App::is_ready`) within seconds, not
//! an interval; its next round is the first phase slot at least half an interval later. A
//! registry whose settings a reload changed goes on from its last round the same way (an
//! unchanged one keeps its loop and its round in flight), and a 429's `Retry-After`
//! postpones the next round. Loops stop on shutdown or when a reload retires their
//! registry's runtime.
//!
//! One scheduler owns the schedule: [`run`] follows the generations the app publishes
//! (`App::generations`: the first, then each a reload puts in force) and starts the loops of
//! a generation's new runtimes; it imports `app`, and `app` knows nothing of it. One task per
//! registry, which holds its running round boxed: an idle loop keeps its timer and tokens
//! only. A round waiting for its permit is small too: the checks' state (about 4 KiB,
//! measured) is boxed by `App::execute` once the round has its permit. What a round does is
//! `App::round`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Generation, TargetRuntime};
use crate::config::Mode;

/// The longest span over which the first rounds of registries without a result are spread:
/// the exporter is ready within it (plus one round), however long the intervals are.
pub const START_SPREAD: Duration = Duration::from_secs(10);

/// The longest gap between two first rounds: a few registries start at once (ready in well
/// under a second), 1,000 start at 100 a second rather than all in the same instant.
const FIRST_ROUND_GAP: Duration = Duration::from_millis(10);

/// Rounds start on ticks this far apart: the timer then wakes the runtime (and the registries'
/// servers) once for the rounds of a tick, not once per round. Measured at 1,000 registries
/// every 2 s (`scripts/bench`'s scale point, three runs each): spread without ticks, a round
/// cost ~25 % more exporter CPU and 1.7 times the context switches; on 10 ms ticks as
/// little as with the old bursts. A hundredth of the shortest interval: the spread stays even.
const TICK: Duration = Duration::from_millis(10);

/// The jitter on each round's start, as a share of the interval: consecutive rounds are
/// 0.95 to 1.05 intervals apart, so registries sharing a host never fall into lockstep.
const JITTER: f64 = 0.05;

/// The scheduler: until `shutdown`, starts the loops of each generation in force that is in
/// interval mode (the one now, then each a reload publishes). Spawn it on the app's task
/// tracker; the loops it starts run there too, so waiting for the tracker waits for them.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let mut generations = app.generations();
    loop {
        // Marks the generation seen: a reload published after this is a change to follow.
        let generation = generations.borrow_and_update().clone();
        if generation.config.mode == Mode::Interval {
            start(&app, &generation);
        }
        tokio::select! {
            changed = generations.changed() => {
                if changed.is_err() {
                    return; // the app is gone, and its generations with it
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Spawns one loop per registry of `generation` on the app's task tracker, except for the
/// registries whose runtime a reload kept, whose loop goes on. A loop ends when its
/// registry's runtime is retired: by a reload, or by the app's shutdown, which retires
/// every runtime (`App::new`).
fn start(app: &Arc<App>, generation: &Generation) {
    let anchor = Instant::now();
    let intervals: Vec<Duration> = generation
        .targets
        .iter()
        .map(|rt| rt.target.interval)
        .collect();
    let phases = phases(&intervals);
    let carried: Vec<Option<Instant>> = generation
        .targets
        .iter()
        .map(|rt| rt.last_scheduled().map(Instant::from_std))
        .collect();
    let fresh = carried.iter().filter(|c| c.is_none()).count();
    let mut fresh_index = 0;
    for ((rt, phase), carried) in generation.targets.iter().zip(phases).zip(carried) {
        if !rt.start_looping() {
            // Kept by a reload: its loop, and the round it may be running, go on.
            continue;
        }
        let slots = Slots::new(anchor, phase, rt.target.interval);
        let first = match carried {
            Some(last) => slots.on_tick(slots.next_after(last)),
            None => {
                let at = anchor + first_round_offset(fresh_index, fresh, rt.target.interval);
                fresh_index += 1;
                slots.on_tick(at)
            }
        };
        app.tasks
            .spawn(registry_loop(app.clone(), rt.clone(), slots, first));
    }
}

/// One registry's loop: sleep until `next`, run a round, schedule the next; until its
/// runtime is retired (a reload, or shutdown). One token to wait on, not shutdown's and the
/// runtime's: each wait is 72 bytes of every registry's task, idle or not.
async fn registry_loop(app: Arc<App>, rt: Arc<TargetRuntime>, slots: Slots, mut next: Instant) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = rt.retired().cancelled() => return,
        }
        let started = Instant::now();
        // Boxed: the round's state lives on the heap while it runs, and the idle loop stays
        // small. Zero freshness: in interval mode every tick runs a round.
        let round = Box::pin(app.round(&rt, Duration::ZERO));
        let retry_after = tokio::select! {
            r = round => r,
            _ = rt.retired().cancelled() => return,
        };
        rt.scheduled_round_done(started.into_std());
        next = slots.on_tick(slots.next_after(started) + jitter(slots.interval));
        // A registry that answered 429 with Retry-After is not probed again before it said;
        // capped at an hour so a silly value cannot stop monitoring.
        if let Some(after) = retry_after {
            let after = after.min(Duration::from_secs(3600));
            if Instant::now() + after > next {
                tracing::info!(registry = %rt.target.name, retry_after_s = after.as_secs(), "rate limited: honouring Retry-After");
                next = Instant::now() + after;
            }
        }
    }
}

/// The phase of each registry, a share of its interval in `0.0..1.0`: the registries with
/// the same interval are spread evenly over it, in their configured order.
fn phases(intervals: &[Duration]) -> Vec<f64> {
    // Two passes over the registries, whatever the number of distinct intervals.
    let mut count: HashMap<Duration, usize> = HashMap::new();
    for &i in intervals {
        *count.entry(i).or_default() += 1;
    }
    let mut seen: HashMap<Duration, usize> = HashMap::new();
    intervals
        .iter()
        .map(|i| {
            let k = seen.entry(*i).or_default();
            let phase = *k as f64 / count[i] as f64;
            *k += 1;
            phase
        })
        .collect()
}

/// When the `index`-th of `count` registries without a result has its first round, after
/// the start: [`FIRST_ROUND_GAP`] apart, or closer so that all fit in [`START_SPREAD`] (or in
/// the interval, if shorter: then the first rounds are on their phases already).
fn first_round_offset(index: usize, count: usize, interval: Duration) -> Duration {
    let gap = (START_SPREAD.min(interval) / u32::try_from(count.max(1)).unwrap_or(u32::MAX))
        .min(FIRST_ROUND_GAP);
    gap * u32::try_from(index).unwrap_or(u32::MAX)
}

/// A registry's round slots: `anchor + offset + k × interval` for whole k.
#[derive(Debug, Clone, Copy)]
struct Slots {
    anchor: Instant,
    first: Instant,
    interval: Duration,
}

impl Slots {
    fn new(anchor: Instant, phase: f64, interval: Duration) -> Slots {
        Slots {
            anchor,
            first: anchor + interval.mul_f64(phase),
            interval,
        }
    }

    /// `t`, or the first [`TICK`] after it (counted from the anchor).
    fn on_tick(&self, t: Instant) -> Instant {
        let since = t.saturating_duration_since(self.anchor).as_nanos();
        let tick = TICK.as_nanos();
        let late = (tick - since % tick) % tick;
        // Less than a tick, which is a few milliseconds.
        t + Duration::from_nanos(late as u64)
    }

    /// The slot for the round after one that started at `started`: the first at least half
    /// an interval later. On schedule that is the next slot; a round that began late (it
    /// waited for a permit, or a `Retry-After`) keeps to the grid rather than shifting it;
    /// a round that overran its slot has the next one at once if it is already past.
    fn next_after(&self, started: Instant) -> Instant {
        let not_before = started + self.interval / 2;
        if not_before <= self.first {
            return self.first;
        }
        let late = (not_before - self.first).as_nanos();
        let k = late.div_ceil(self.interval.as_nanos());
        // k intervals fit in a u64 of nanoseconds for 584 years from the anchor; beyond, the
        // round comes at `not_before`, which is as good.
        u64::try_from(k * self.interval.as_nanos())
            .ok()
            .and_then(|nanos| self.first.checked_add(Duration::from_nanos(nanos)))
            .unwrap_or(not_before)
    }
}

/// A random delay of up to [`JITTER`] of `interval`.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.0..=JITTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn registries_with_the_same_interval_are_spread_evenly_over_it() {
        let phases = phases(&[S(60), S(10), S(60), S(60), S(10), S(60)]);
        assert_eq!(phases, vec![0.0, 0.0, 0.25, 0.5, 0.5, 0.75]);
    }

    #[test]
    fn first_rounds_come_within_the_start_spread() {
        let ms = Duration::from_millis;
        // A few registries: 10 ms apart.
        let offsets: Vec<Duration> = (0..4).map(|i| first_round_offset(i, 4, S(3600))).collect();
        assert_eq!(offsets, vec![ms(0), ms(10), ms(20), ms(30)]);
        // 5,000: closer, all within 10 s.
        assert_eq!(first_round_offset(4999, 5000, S(60)), ms(9998));
        // 1,000 every 2 s: spread over the interval, i.e. on their phases.
        assert_eq!(first_round_offset(500, 1000, S(2)), S(1));
        assert_eq!(first_round_offset(0, 1, S(60)), S(0));
    }

    #[test]
    fn the_next_round_is_the_first_slot_half_an_interval_on() {
        let anchor = Instant::now();
        // Phase 0.75 of a minute: slots at 45 s, 105 s, 165 s...
        let slots = Slots::new(anchor, 0.75, S(60));
        // A first round early in the start spread: the first slot, 43 s later.
        assert_eq!(slots.next_after(anchor + S(2)), anchor + S(45));
        // A first round less than half an interval before the first slot: the one after.
        assert_eq!(slots.next_after(anchor + S(20)), anchor + S(105));
        // On schedule, jitter included: the next slot; the grid does not drift.
        assert_eq!(slots.next_after(anchor + S(46)), anchor + S(105));
        assert_eq!(slots.next_after(anchor + S(107)), anchor + S(165));
        // A round that began 40 s late (waiting for a permit) keeps to the grid.
        assert_eq!(slots.next_after(anchor + S(205)), anchor + S(285));
        // A registry kept by a reload, last checked 50 s before the new anchor: at once.
        let slots = Slots::new(anchor + S(1000), 0.0, S(60));
        assert_eq!(slots.next_after(anchor + S(950)), anchor + S(1000));
        // Last checked 10 s before: at its first slot after half an interval.
        let slots = Slots::new(anchor + S(1000), 0.5, S(60));
        assert_eq!(slots.next_after(anchor + S(990)), anchor + S(1030));
    }

    /// What a registry holds while its round waits for a permit: its loop, and its round
    /// boxed, without the checks' state.
    #[tokio::test]
    async fn a_registry_waiting_for_its_round_holds_less_than_a_kib() {
        use crate::config::{Config, RawConfig, RawRegistry};
        let raw = RawConfig {
            registries: vec![RawRegistry {
                name: Some("a".into()),
                url: Some("http://127.0.0.1:1".into()),
                ..RawRegistry::default()
            }],
            ..RawConfig::default()
        };
        let app = Arc::new(App::new(Config::resolve(raw).unwrap()).unwrap());
        let generation = app.current();
        let rt = generation.targets[0].clone();
        let round = std::mem::size_of_val(&app.round(&rt, Duration::ZERO));
        let now = Instant::now();
        let idle = std::mem::size_of_val(&registry_loop(
            app.clone(),
            rt.clone(),
            Slots::new(now, 0.0, S(60)),
            now,
        ));
        println!("a registry's loop: {idle} bytes; its round, boxed while it runs: {round} bytes");
        // The checks' state (4 KiB and more) is boxed by `App::execute` only once the round
        // has its permit: 10,000 registries whose first rounds queue behind a slow registry
        // must not each hold it while they wait.
        assert!(
            idle + round <= 1024,
            "a waiting registry holds its loop ({idle} B) and its round ({round} B)"
        );
    }

    #[test]
    fn rounds_start_on_ticks() {
        let ms = Duration::from_millis;
        let anchor = Instant::now();
        let slots = Slots::new(anchor, 0.0, S(2));
        assert_eq!(slots.on_tick(anchor), anchor);
        assert_eq!(slots.on_tick(anchor + ms(1)), anchor + ms(10));
        assert_eq!(slots.on_tick(anchor + ms(20)), anchor + ms(20));
        assert_eq!(
            slots.on_tick(anchor + Duration::from_micros(20_001)),
            anchor + ms(30)
        );
    }

    #[test]
    fn jitter_stays_within_five_percent() {
        for _ in 0..100 {
            assert!(jitter(S(60)) <= S(3));
        }
    }
}
