//! The running exporter's shared state: the current generation of configuration and
//! targets, the latest results, the metrics, and the bounds on concurrent checks.
//!
//! Owns how a round of checks runs for one registry ([`App::execute`]), where its results
//! go ([`App::record`]: the store, the metrics, the log), `/probe` runs ([`App::probe`]:
//! one shared run per registry and check selection, on the probes' own concurrency budget),
//! and configuration reloads ([`App::reload`]: a new [`Generation`] replaces the old one
//! whole, and nothing of the old one is recorded after). It does not decide when rounds
//! run: that is the scheduler (interval mode) or the HTTP handlers (scrape mode, `/probe`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue;
use crate::checks::{self, CheckKind, CheckResult, Status};
use crate::client::{ClientBuildError, RegistryClient};
use crate::config::{Config, ConfigError, Mode, Target};
use crate::metrics::Metrics;

/// One configured registry and what runs against it.
pub struct TargetRuntime {
    pub target: Arc<Target>,
    pub client: Arc<RegistryClient>,
    /// Serialises rounds of one registry, so two scrapes never probe it twice at once.
    round: tokio::sync::Mutex<Option<Instant>>,
    first_round_done: AtomicBool,
    /// When the scheduler last started a round that was recorded: a reload that keeps the
    /// registry continues its schedule from there (interval mode).
    // std Mutex: held only to read or write, never across an .await.
    last_scheduled: Mutex<Option<Instant>>,
    /// The generation's bound on concurrent scheduled checks (interval and scrape mode),
    /// shared by all its targets.
    permits: Arc<Semaphore>,
    /// The generation's bound on concurrent `/probe` checks: a budget of its own, so a probe
    /// flood (against a black-holed registry, say) cannot starve the schedule.
    probe_permits: Arc<Semaphore>,
    /// The latest `/probe` run per check selection: while one runs, probes of the same
    /// selection wait for it instead of starting another (singleflight).
    // std Mutex: never held across .await.
    probes: Mutex<HashMap<Vec<CheckKind>, ProbeRun>>,
    /// The generation's token: a result of a retired generation is never recorded.
    retired: CancellationToken,
    runbook_base_url: Arc<str>,
}

/// The results of one `/probe` run, shared by every probe that joined it; `None` when
/// shutdown or a reload cancelled the run.
type ProbeResults = Option<Arc<Vec<CheckResult>>>;

struct ProbeRun {
    results: Shared<BoxFuture<'static, ProbeResults>>,
    /// Set by the run's task when it ends: a later probe starts a new run instead of being
    /// served results that may be old by then.
    done: Arc<AtomicBool>,
}

/// One loaded configuration and the runtimes built from it. A reload builds a new one and
/// retires the old: its scheduler loops stop, rounds and probe runs in flight are dropped,
/// and [`App::record`] refuses any result of it that still arrives, so a removed registry
/// cannot bring its series back after the reload.
pub struct Generation {
    pub config: Config,
    pub targets: Vec<Arc<TargetRuntime>>,
    /// Cancelled when a reload replaces this generation.
    pub retired: CancellationToken,
}

impl Generation {
    fn build(config: Config) -> Result<Generation, ClientBuildError> {
        let permits = Arc::new(Semaphore::new(config.max_concurrency));
        // Derived, not configured: probes may run as many checks at once as the schedule.
        let probe_permits = Arc::new(Semaphore::new(config.max_concurrency));
        let retired = CancellationToken::new();
        let runbook_base_url: Arc<str> = Arc::from(config.runbook_base_url.as_str());
        let all: Vec<&Target> = config.registries.iter().map(|t| &**t).collect();
        // One HTTP client per distinct TLS setting, shared by the registries that have it.
        let clients = RegistryClient::build_all(&all, config.max_concurrency)?;
        let mut targets = Vec::with_capacity(config.registries.len());
        for (target, client) in config.registries.iter().zip(clients) {
            targets.push(Arc::new(TargetRuntime {
                target: target.clone(),
                client: Arc::new(client),
                round: tokio::sync::Mutex::new(None),
                first_round_done: AtomicBool::new(false),
                last_scheduled: Mutex::new(None),
                permits: permits.clone(),
                probe_permits: probe_permits.clone(),
                probes: Mutex::new(HashMap::new()),
                retired: retired.clone(),
                runbook_base_url: runbook_base_url.clone(),
            }));
        }
        Ok(Generation {
            config,
            targets,
            retired,
        })
    }

    pub fn target(&self, name: &str) -> Option<&Arc<TargetRuntime>> {
        self.targets.iter().find(|t| t.target.name == name)
    }

    /// How many HTTP clients (connection pools) the registries of this generation use: one
    /// per distinct TLS setting.
    pub fn http_clients(&self) -> usize {
        let mut distinct: Vec<&RegistryClient> = Vec::new();
        for rt in &self.targets {
            if !distinct
                .iter()
                .any(|c| c.shares_http_client_with(&rt.client))
            {
                distinct.push(&rt.client);
            }
        }
        distinct.len()
    }
}

impl TargetRuntime {
    /// When the scheduler last started a round of this registry that was recorded.
    pub fn last_scheduled(&self) -> Option<Instant> {
        *self
            .last_scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that a round started at `at` was recorded (by the scheduler).
    pub fn scheduled_round_done(&self, at: Instant) {
        *self
            .last_scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// A registry kept by a reload: its schedule and readiness continue from the runtime
    /// `old` of the generation being replaced.
    fn continue_from(&self, old: &TargetRuntime) {
        *self
            .last_scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = old.last_scheduled();
        if old.first_round_done.load(Ordering::Acquire) {
            self.first_round_done.store(true, Ordering::Release);
        }
    }
}

/// A reload that was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
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
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
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

    /// Forgets the latest results of a registry (all checks, or only `check`), after a
    /// reload removed it or its check. The history keeps what happened.
    pub fn remove(&self, registry: &str, check: Option<CheckKind>) {
        let mut map = self.results.lock().unwrap_or_else(|p| p.into_inner());
        match check {
            None => {
                map.remove(registry);
            }
            Some(check) => {
                if let Some(m) = map.get_mut(registry) {
                    m.remove(&check);
                }
            }
        }
    }

    pub fn latest(&self, registry: &str) -> Vec<CheckResult> {
        let map = self.results.lock().unwrap_or_else(|p| p.into_inner());
        map.get(registry)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

pub struct App {
    // std RwLock: never held across an .await. Written by a reload to swap generations and
    // forget what the old one exported; read to clone the Arc, and by `record` while it
    // writes, so a result is either recorded before a reload (and forgotten with its
    // registry) or refused after it.
    generation: RwLock<Arc<Generation>>,
    pub metrics: Metrics,
    pub store: Store,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Where the configuration came from, read again on reload.
    source: Option<PathBuf>,
    reloading: tokio::sync::Mutex<()>,
    ever_ready: AtomicBool,
}

impl App {
    /// An app for `config`; a reload reads `config.source` again.
    pub fn new(config: Config) -> Result<App, ClientBuildError> {
        let source = config.source.clone();
        let metrics = Metrics::new(&config.runbook_base_url);
        let store = Store::new(config.history_size);
        for target in &config.registries {
            metrics.declare_target(target);
        }
        metrics.record_reload(true);
        Ok(App {
            generation: RwLock::new(Arc::new(Generation::build(config)?)),
            metrics,
            store,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            source,
            reloading: tokio::sync::Mutex::new(()),
            ever_ready: AtomicBool::new(false),
        })
    }

    /// The generation in force now.
    pub fn current(&self) -> Arc<Generation> {
        self.generation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ready once every registry has finished its first round (interval mode; a reload does
    /// not make the exporter unready again), at once in scrape mode. The scheduler runs the
    /// first rounds within `scheduler::START_SPREAD` (10 s) of the start, whatever the
    /// intervals, and spreads the later rounds over each interval: readiness means "every
    /// registry has a result", and comes within seconds.
    pub fn is_ready(&self) -> bool {
        let generation = self.current();
        if generation.config.mode == Mode::Scrape || self.ever_ready.load(Ordering::Acquire) {
            return true;
        }
        let done = generation
            .targets
            .iter()
            .all(|t| t.first_round_done.load(Ordering::Acquire));
        if done {
            self.ever_ready.store(true, Ordering::Release);
        }
        done
    }

    /// Reads the configuration again and, if valid, puts it in force: removed registries
    /// and checks disappear from `/metrics`, added ones start at once. An invalid one is
    /// refused and the running configuration stays.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let built = Config::load(self.source.as_deref())
            .map_err(ReloadError::from)
            .and_then(|config| Ok(Generation::build(config)?));
        let next = match built {
            Ok(next) => Arc::new(next),
            Err(e) => {
                self.metrics.record_reload(false);
                tracing::error!(error = %e, "config reload failed; the running configuration stays in force");
                return Err(e);
            }
        };
        for w in &next.config.warnings {
            tracing::warn!("{w}");
        }
        // Swap, retire and forget under the write lock: `record` holds the read lock, so no
        // result of the old generation lands after its registry was forgotten.
        let mut current = self.generation.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *current, next.clone());
        old.retired.cancel();
        for rt in &old.targets {
            let name = &rt.target.name;
            match next.target(name) {
                None => {
                    self.metrics.forget(name);
                    self.store.remove(name, None);
                }
                Some(kept) => {
                    kept.continue_from(rt);
                    for &check in &rt.target.checks {
                        if !kept.target.checks.contains(&check) {
                            self.metrics.forget_check(name, check);
                            self.store.remove(name, Some(check));
                        }
                    }
                }
            }
        }
        for rt in &next.targets {
            self.metrics.declare_target(&rt.target);
        }
        drop(current);
        if next.config.mode == Mode::Interval {
            crate::scheduler::start(self, &next);
        }
        self.metrics.record_reload(true);
        tracing::info!(registries = next.targets.len(), "config reloaded");
        Ok(())
    }

    /// Runs the given checks (default: the configured ones) of one registry, one after the
    /// other, each holding a permit of its generation's concurrency bound. Records nothing.
    pub async fn execute(
        &self,
        rt: &TargetRuntime,
        only: Option<&[CheckKind]>,
    ) -> Vec<CheckResult> {
        execute_with(rt, only.unwrap_or(&rt.target.checks), &rt.permits).await
    }

    /// `/probe`: runs the given checks (default: the configured ones) of one registry on the
    /// probes' own concurrency budget. Concurrent probes of the same registry and selection
    /// share one run; it goes on when the probe that started it gives up (a scrape timeout),
    /// so that the probes arriving meanwhile join it rather than start more. `None` when
    /// shutdown or a reload cancelled the run. Records nothing.
    pub async fn probe(
        self: &Arc<Self>,
        rt: &Arc<TargetRuntime>,
        only: Option<Vec<CheckKind>>,
    ) -> ProbeResults {
        let selection = only.unwrap_or_else(|| rt.target.checks.clone());
        let results = {
            let mut runs = rt.probes.lock().unwrap_or_else(|p| p.into_inner());
            match runs.get(&selection) {
                Some(run) if !run.done.load(Ordering::Acquire) => run.results.clone(),
                _ => {
                    let done = Arc::new(AtomicBool::new(false));
                    let task = {
                        let (app, rt, selection, done) =
                            (self.clone(), rt.clone(), selection.clone(), done.clone());
                        self.tasks.spawn(async move {
                            let results = tokio::select! {
                                r = execute_with(&rt, &selection, &rt.probe_permits) => Some(Arc::new(r)),
                                _ = app.shutdown.cancelled() => None,
                                _ = rt.retired.cancelled() => None,
                            };
                            done.store(true, Ordering::Release);
                            results
                        })
                    };
                    // A panicked run (a JoinError) answers like a cancelled one.
                    let results = task.map(|joined| joined.ok().flatten()).boxed().shared();
                    runs.insert(
                        selection,
                        ProbeRun {
                            results: results.clone(),
                            done,
                        },
                    );
                    results
                }
            }
        };
        results.await
    }

    /// Stores, exports and logs a round's results: the one sink for scheduled results.
    /// Results of a generation a reload retired are dropped: the new one owns `/metrics`.
    pub fn record(&self, rt: &TargetRuntime, results: Vec<CheckResult>) {
        // Held while writing, see `generation`.
        let _current = self.generation.read().unwrap_or_else(|p| p.into_inner());
        if rt.retired.is_cancelled() {
            tracing::debug!(
                registry = %rt.target.name,
                "results of a configuration replaced by a reload are dropped"
            );
            return;
        }
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
    /// outlast it go on in the background and are served by a later scrape, unless a reload
    /// retires their generation first: then they are dropped, requests and all.
    pub async fn refresh_due(self: &Arc<Self>, deadline: Duration) {
        let generation = self.current();
        let fresh_for = generation.config.min_interval;
        let mut handles = Vec::new();
        for rt in &generation.targets {
            let app = self.clone();
            let rt = rt.clone();
            handles.push(self.tasks.spawn(async move {
                tokio::select! {
                    _ = app.round(&rt, fresh_for) => {}
                    _ = app.shutdown.cancelled() => {}
                    _ = rt.retired.cancelled() => {}
                }
            }));
        }
        let all = futures_util::future::join_all(handles);
        let _ = tokio::time::timeout(deadline, all).await;
    }
}

/// Runs `checks` of one registry one after the other, each holding a permit of `permits`.
async fn execute_with(
    rt: &TargetRuntime,
    checks: &[CheckKind],
    permits: &Semaphore,
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(checks.len());
    for &kind in checks {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = permits.acquire().await.expect("semaphore is never closed");
        let mut result = checks::run_check(kind, &rt.target, &rt.client).await;
        catalogue::annotate(&mut result, &rt.runbook_base_url);
        results.push(result);
    }
    results
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
