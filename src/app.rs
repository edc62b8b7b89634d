//! The running exporter's shared state: targets with their clients, the latest results,
//! the metrics, and the bound on concurrent checks.
//!
//! Owns how a round of checks runs for one registry ([`App::execute`]) and where its results
//! go ([`App::record`]: the store, the metrics, the log). It does not decide when rounds run:
//! that is the scheduler (interval mode) or the HTTP handlers (scrape mode, `/probe`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue;
use crate::checks::{self, CheckKind, CheckResult, Status};
use crate::client::{ClientBuildError, RegistryClient};
use crate::config::{Config, Mode, Target};
use crate::metrics::Metrics;

/// One configured registry and what runs against it.
pub struct TargetRuntime {
    pub target: Arc<Target>,
    pub client: Arc<RegistryClient>,
    /// Serialises rounds of one registry, so two scrapes never probe it twice at once.
    round: tokio::sync::Mutex<Option<Instant>>,
    first_round_done: AtomicBool,
}

/// The latest result of each check of each registry, and a bounded history for the
/// status page: the last `size` failures and, apart, the last `size` other results, so
/// failures stay visible longer than the successes around them.
pub struct Store {
    // std Mutex: never held across .await.
    results: Mutex<HashMap<String, BTreeMap<CheckKind, CheckResult>>>,
    history: Mutex<History>,
}

struct History {
    size: usize,
    next_id: u64,
    failures: VecDeque<(u64, String, CheckResult)>,
    others: VecDeque<(u64, String, CheckResult)>,
}

impl Store {
    pub fn new(history_size: usize) -> Store {
        Store {
            results: Mutex::new(HashMap::new()),
            history: Mutex::new(History {
                size: history_size,
                next_id: 1,
                failures: VecDeque::new(),
                others: VecDeque::new(),
            }),
        }
    }

    pub fn put(&self, registry: &str, result: CheckResult) {
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let id = h.next_id;
            h.next_id += 1;
            let size = h.size;
            let ring = if result.status == Status::Fail {
                &mut h.failures
            } else {
                &mut h.others
            };
            ring.push_back((id, registry.to_string(), result.clone()));
            while ring.len() > size {
                ring.pop_front();
            }
        }
        let mut map = self.results.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(registry.to_string())
            .or_default()
            .insert(result.check, result);
    }

    /// The kept results, newest first.
    pub fn history(&self) -> Vec<(u64, String, CheckResult)> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = h.failures.iter().chain(h.others.iter()).cloned().collect();
        all.sort_by(|a, b| b.0.cmp(&a.0));
        all
    }

    pub fn history_entry(&self, id: u64) -> Option<(String, CheckResult)> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.failures
            .iter()
            .chain(h.others.iter())
            .find(|(i, _, _)| *i == id)
            .map(|(_, reg, r)| (reg.clone(), r.clone()))
    }

    pub fn latest(&self, registry: &str) -> Vec<CheckResult> {
        let map = self.results.lock().unwrap_or_else(|p| p.into_inner());
        map.get(registry)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

pub struct App {
    pub config: Config,
    pub targets: Vec<TargetRuntime>,
    pub metrics: Metrics,
    pub store: Store,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    permits: Semaphore,
}

impl App {
    pub fn new(config: Config) -> Result<App, ClientBuildError> {
        let metrics = Metrics::new(&config.runbook_base_url);
        let store = Store::new(config.history_size);
        let mut targets = Vec::with_capacity(config.registries.len());
        for target in &config.registries {
            metrics.declare_target(target);
            targets.push(TargetRuntime {
                target: target.clone(),
                client: Arc::new(RegistryClient::new(target)?),
                round: tokio::sync::Mutex::new(None),
                first_round_done: AtomicBool::new(false),
            });
        }
        Ok(App {
            permits: Semaphore::new(config.max_concurrency),
            config,
            targets,
            metrics,
            store,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    pub fn target(&self, name: &str) -> Option<&TargetRuntime> {
        self.targets.iter().find(|t| t.target.name == name)
    }

    /// Ready once every registry has finished its first round (interval mode), at once
    /// in scrape mode, where rounds happen only when asked for.
    pub fn is_ready(&self) -> bool {
        self.config.mode == Mode::Scrape
            || self
                .targets
                .iter()
                .all(|t| t.first_round_done.load(Ordering::Acquire))
    }

    /// Runs the given checks (default: the configured ones) of one registry, one after the
    /// other, each holding a permit of the global concurrency bound. Records nothing.
    pub async fn execute(
        &self,
        rt: &TargetRuntime,
        only: Option<&[CheckKind]>,
    ) -> Vec<CheckResult> {
        let checks = only.unwrap_or(&rt.target.checks);
        let mut results = Vec::with_capacity(checks.len());
        for &kind in checks {
            // The semaphore is never closed, so acquire cannot fail.
            let _permit = self
                .permits
                .acquire()
                .await
                .expect("semaphore is never closed");
            let mut result = checks::run_check(kind, &rt.target, &rt.client).await;
            catalogue::annotate(&mut result, &self.config.runbook_base_url);
            results.push(result);
        }
        results
    }

    /// Stores, exports and logs a round's results: the one sink for scheduled results.
    pub fn record(&self, rt: &TargetRuntime, results: Vec<CheckResult>) {
        for result in results {
            log_result(&rt.target.name, &result);
            self.metrics.record(&rt.target.name, &result);
            self.store.put(&rt.target.name, result);
        }
        rt.first_round_done.store(true, Ordering::Release);
    }

    /// A full round for one registry, recorded. Skipped when another round finished less
    /// than `fresh_for` ago (scrape mode's `min_interval`): waiting on the lock then finding
    /// fresh results is how two concurrent scrapes share one round.
    ///
    /// Returns the longest `Retry-After` a 429 asked for, so the scheduler can honour it.
    pub async fn round(&self, rt: &TargetRuntime, fresh_for: Duration) -> Option<Duration> {
        let mut last = rt.round.lock().await;
        if last.is_some_and(|t| t.elapsed() < fresh_for) {
            return None;
        }
        let results = self.execute(rt, None).await;
        let retry_after = results.iter().filter_map(|r| r.facts.retry_after).max();
        self.record(rt, results);
        *last = Some(Instant::now());
        retry_after
    }

    /// Scrape mode: runs the rounds that are due, waiting at most `deadline`. Rounds that
    /// outlast it go on in the background and are served by a later scrape.
    pub async fn refresh_due(self: &Arc<Self>, deadline: Duration) {
        let mut handles = Vec::new();
        for idx in 0..self.targets.len() {
            let app = self.clone();
            let fresh_for = self.config.min_interval;
            handles.push(self.tasks.spawn(async move {
                let rt = &app.targets[idx];
                tokio::select! {
                    _ = app.round(rt, fresh_for) => {}
                    _ = app.shutdown.cancelled() => {}
                }
            }));
        }
        let all = futures_util::future::join_all(handles);
        let _ = tokio::time::timeout(deadline, all).await;
    }
}

fn log_result(registry: &str, r: &CheckResult) {
    let duration_ms = r.duration.as_millis() as u64;
    let http_status = r.http_status.unwrap_or(0);
    macro_rules! log {
        ($level:ident) => {
            tracing::$level!(
                registry,
                check = r.check.short_name(),
                status = r.status.as_str(),
                reason = r.reason.as_str(),
                http_status,
                duration_ms,
                evidence = ?r.evidence,
                "{}",
                r.message
            )
        };
    }
    match r.status {
        Status::Fail => log!(warn),
        Status::Warn => log!(info),
        _ => log!(debug),
    }
}
