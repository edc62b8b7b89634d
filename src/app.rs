//! The running exporter's shared state: the current generation of configuration and
//! targets, the store of results, the exporter's own metrics, and the bounds on
//! concurrent checks.
//!
//! Owns how a round of checks runs for one registry ([`App::execute`]), where its results
//! go ([`App::record`]: the store, the log), `/probe` runs ([`App::probe`]:
//! one shared run per registry and check selection, on the probes' own concurrency budget),
//! and configuration reloads ([`App::reload`]: a new [`Generation`] replaces the old one,
//! keeping the runtimes of registries whose settings are unchanged, and nothing of a
//! runtime it retired is recorded after, and the new generation is published to
//! [`App::generations`]). A generation holds this shard's registries as its targets and the
//! other shards' for `/probe` alone (see `shard`). It does not decide when rounds run: that
//! is the scheduler (interval mode), which follows the published generations, or the HTTP
//! handlers (scrape mode, `/probe`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue;
use crate::checks::{self, CheckKind, CheckResult, Status};
use crate::client::{ClientBuildError, RegistryClient};
use crate::config::{Config, ConfigError, Mode, Target};
use crate::metrics::Metrics;
use crate::store::Store;

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
    /// The generation's bounds and runbook links, one handle for the three.
    bounds: Arc<Bounds>,
    /// The latest `/probe` run per check selection: while one runs, probes of the same
    /// selection wait for it instead of starting another (singleflight).
    // std Mutex: never held across .await.
    probes: Mutex<HashMap<Vec<CheckKind>, ProbeRun>>,
    /// Cancelled when a reload retires this runtime: its loop, rounds and probe runs stop,
    /// and a result of it is never recorded. A registry of this shard has a token of its
    /// own, as a reload that leaves its settings unchanged keeps its runtime (and so its
    /// round in flight, its loop and its probe runs) in the next generation; another
    /// shard's runtime (probes only) has its generation's. Every one is a child of the
    /// app's shutdown token: shutdown retires every runtime, so a registry's loop waits on
    /// this token alone (`scheduler`).
    retired: CancellationToken,
    /// The product last recognised from this registry's answers: a round that shows no
    /// product's mark (a cached token, no challenge) keeps it.
    // std Mutex: held only to read or write, never across an .await.
    implementation: Mutex<Option<crate::outcome::Recognition>>,
    /// Set when the scheduler spawned this runtime's loop: a runtime kept by a reload
    /// already has one.
    looping: AtomicBool,
    /// The TLS files its client was built from as they stood then ([`TlsStamp`]).
    tls_stamp: TlsStamp,
}

/// Size and modification time of each TLS file a registry names (`ca_file`, client
/// certificate and key), taken before its client reads them: a reload keeps a runtime only
/// if they are unchanged, so a renewed certificate or CA bundle is taken in by a reload
/// (Kubernetes swaps a mounted secret's files), without reading a key's content here.
type TlsStamp = Box<[Option<(u64, std::time::SystemTime)>]>;

fn tls_stamp(target: &Target) -> TlsStamp {
    let tls = &target.tls;
    tls.ca_file
        .iter()
        .chain(tls.client_cert.iter().flat_map(|(cert, key)| [cert, key]))
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
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

/// One loaded configuration and the runtimes built from it. A reload builds a new one, which
/// takes over the runtimes of the registries whose settings are unchanged, and retires the
/// others: their scheduler loops stop, rounds and probe runs in flight are dropped, and
/// [`App::record`] refuses any result of them that still arrives, so a removed registry
/// cannot bring its series back after the reload.
pub struct Generation {
    pub config: Config,
    /// The registries of this exporter's shard (every registry when not sharded): what the
    /// scheduler, scrape-mode rounds, readiness, the metrics and the `/` page see.
    pub targets: Vec<Arc<TargetRuntime>>,
    /// Indexes of `targets` in name order, for [`Generation::target`]: a reload of 10,000
    /// registries looks each one up, which a linear search made 10^8 comparisons.
    by_name: Vec<u32>,
    /// The other shards' registries, which only `/probe` reaches ([`Generation::probe_target`]),
    /// in name order.
    others: Vec<OtherShard>,
    /// What every runtime of this generation shares, for those built at a first probe.
    common: Common,
    /// Cancelled when a reload replaces this generation.
    pub retired: CancellationToken,
}

/// A registry of another shard, and its runtime once a probe asked for it: a replica pays
/// for a client only for the registries it checks or is asked to probe.
struct OtherShard {
    target: Arc<Target>,
    runtime: OnceLock<Arc<TargetRuntime>>,
}

/// The generation's bounds and settings that each of its runtimes holds a handle to.
struct Common {
    bounds: Arc<Bounds>,
    retired: CancellationToken,
}

/// What every runtime of a generation shares, behind one handle (three were 32 bytes of
/// every registry's runtime).
struct Bounds {
    /// The bound on concurrent scheduled checks (interval and scrape mode).
    permits: Semaphore,
    /// The bound on concurrent `/probe` checks: a budget of its own, so a probe flood
    /// (against a black-holed registry, say) cannot starve the schedule.
    probe_permits: Semaphore,
    runbook_base_url: Box<str>,
}

impl Common {
    /// A generation's common part for `config`: the bounds of `carried` (the previous
    /// generation's, when its runtimes can go on: then its runbook links are the same),
    /// else new ones.
    fn of(config: &Config, carried: Option<&Common>, retired: &CancellationToken) -> Common {
        Common {
            bounds: carried.map_or_else(
                || {
                    Arc::new(Bounds {
                        permits: Semaphore::new(config.max_concurrency),
                        // Derived, not configured: probes may run as many checks at once as
                        // the schedule.
                        probe_permits: Semaphore::new(config.max_concurrency),
                        runbook_base_url: config.runbook_base_url.as_str().into(),
                    })
                },
                |c| c.bounds.clone(),
            ),
            retired: retired.clone(),
        }
    }

    fn runtime(&self, target: &Arc<Target>, client: RegistryClient) -> TargetRuntime {
        self.runtime_retired_by(target, client, self.retired.clone(), tls_stamp(target))
    }

    fn runtime_retired_by(
        &self,
        target: &Arc<Target>,
        client: RegistryClient,
        retired: CancellationToken,
        tls_stamp: TlsStamp,
    ) -> TargetRuntime {
        TargetRuntime {
            target: target.clone(),
            client: Arc::new(client),
            round: tokio::sync::Mutex::new(None),
            first_round_done: AtomicBool::new(false),
            last_scheduled: Mutex::new(None),
            bounds: self.bounds.clone(),
            probes: Mutex::new(HashMap::new()),
            retired,
            implementation: Mutex::new(None),
            looping: AtomicBool::new(false),
            tls_stamp,
        }
    }
}

/// Indexes of `targets` in name order, for [`Generation::target`]'s binary search. u32,
/// four bytes a registry: no configuration holds 2^32 registries, each costs kilobytes.
/// Names are unique (Config::resolve), so a name finds at most one.
fn name_index(targets: &[Arc<TargetRuntime>]) -> Vec<u32> {
    let mut by_name: Vec<u32> = (0..targets.len() as u32).collect();
    by_name.sort_unstable_by(|&a, &b| {
        targets[a as usize]
            .target
            .name
            .cmp(&targets[b as usize].target.name)
    });
    by_name
}

impl Generation {
    /// The generation of `config`. With `previous` (a reload), a registry whose resolved
    /// settings are unchanged keeps its runtime ([`keeps`]). Its tokens are children of
    /// `shutdown`, the app's.
    fn build(
        config: Config,
        previous: Option<&Generation>,
        shutdown: &CancellationToken,
    ) -> Result<Generation, ClientBuildError> {
        let retired = shutdown.child_token();
        // Kept runtimes hold their generation's semaphores, which the next one then shares.
        let carried = previous.filter(|p| p.same_common_settings(&config));
        let common = Common::of(&config, carried.map(|p| &p.common), &retired);
        let (owned, others): (Vec<&Arc<Target>>, Vec<&Arc<Target>>) = config
            .registries
            .iter()
            .partition(|t| config.shard.owns(&t.name));
        let kept: Vec<Option<Arc<TargetRuntime>>> = owned
            .iter()
            .map(|target| {
                let old = carried?.target(&target.name)?;
                keeps(old, target).then(|| old.clone())
            })
            .collect();
        let fresh: Vec<&Arc<Target>> = owned
            .iter()
            .zip(&kept)
            .filter(|(_, kept)| kept.is_none())
            .map(|(t, _)| *t)
            .collect();
        // One HTTP client per distinct TLS setting, shared by this shard's new registries
        // (a kept registry keeps its client).
        // Before the clients read the files.
        let mut stamps = fresh
            .iter()
            .map(|t| tls_stamp(t))
            .collect::<Vec<_>>()
            .into_iter();
        let mut clients = RegistryClient::build_all(&fresh, config.max_concurrency)?.into_iter();
        let targets: Vec<Arc<TargetRuntime>> = owned
            .into_iter()
            .zip(kept)
            .map(|(target, kept)| {
                kept.unwrap_or_else(|| {
                    let client = clients
                        .next()
                        .expect("build_all returns one client per target not kept");
                    let stamp = stamps.next().unwrap_or_default();
                    Arc::new(common.runtime_retired_by(
                        target,
                        client,
                        shutdown.child_token(),
                        stamp,
                    ))
                })
            })
            .collect();
        let by_name = name_index(&targets);
        let mut others: Vec<OtherShard> = others
            .into_iter()
            .map(|target| OtherShard {
                target: target.clone(),
                runtime: OnceLock::new(),
            })
            .collect();
        others.sort_unstable_by(|a, b| a.target.name.cmp(&b.target.name));
        Ok(Generation {
            config,
            targets,
            by_name,
            others,
            common,
            retired,
        })
    }

    /// Whether the runtimes of `self` can go on in a generation of `config`: the settings
    /// their rounds share (the concurrency bounds, the runbook links, the mode) are the same.
    fn same_common_settings(&self, config: &Config) -> bool {
        let old = &self.config;
        old.mode == config.mode
            && old.max_concurrency == config.max_concurrency
            && old.runbook_base_url == config.runbook_base_url
            && old.min_interval == config.min_interval
    }

    /// Whether `rt` is one of this generation's runtimes (not merely one of the same name).
    fn holds(&self, rt: &Arc<TargetRuntime>) -> bool {
        self.target(&rt.target.name)
            .is_some_and(|mine| Arc::ptr_eq(mine, rt))
    }

    /// A registry of this shard, by name.
    pub fn target(&self, name: &str) -> Option<&Arc<TargetRuntime>> {
        let i = self
            .by_name
            .binary_search_by(|&i| self.targets[i as usize].target.name.as_str().cmp(name))
            .ok()?;
        Some(&self.targets[self.by_name[i] as usize])
    }

    /// `/probe`'s lookup: a configured registry of any shard, by name (`None`: no registry
    /// has that name). Another shard's runtime is built at its first probe and kept for the
    /// generation; building it fails only as building this shard's would have at load (TLS
    /// material that can no longer be read).
    pub fn probe_target(&self, name: &str) -> Option<Result<Arc<TargetRuntime>, ClientBuildError>> {
        if let Some(rt) = self.target(name) {
            return Some(Ok(rt.clone()));
        }
        let other = &self.others[self
            .others
            .binary_search_by(|o| o.target.name.as_str().cmp(name))
            .ok()?];
        if let Some(rt) = other.runtime.get() {
            return Some(Ok(rt.clone()));
        }
        // Its own HTTP client: another shard's registry is probed rarely, if ever.
        let built = match RegistryClient::new(&other.target) {
            Ok(client) => Arc::new(self.common.runtime(&other.target, client)),
            Err(e) => return Some(Err(e)),
        };
        // Two first probes at once may both build one; the first stored is the one both
        // use, so they still share its probe runs.
        Some(Ok(other.runtime.get_or_init(|| built).clone()))
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
    /// Cancelled when a reload retires this runtime (see the field).
    pub fn retired(&self) -> &CancellationToken {
        &self.retired
    }

    /// Marks that a scheduler loop runs for this runtime: `false` when one already did (a
    /// runtime a reload kept).
    pub fn start_looping(&self) -> bool {
        !self.looping.swap(true, Ordering::AcqRel)
    }

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

/// Whether a reload keeps the runtime `old` for `new` (same name): every resolved setting
/// is the same, secrets included, and the TLS files it names are as they were when its
/// client read them ([`TlsStamp`]: a reload is how a renewed certificate or CA bundle is
/// taken in). A kept runtime's round in flight, loop and probe runs go on; anything else
/// restarts.
fn keeps(old: &TargetRuntime, new: &Target) -> bool {
    *old.target == *new && old.tls_stamp == tls_stamp(new)
}

/// A reload that was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

pub struct App {
    /// The generation in force, published: the scheduler follows it ([`App::generations`]).
    /// The channel's lock is never held across an .await. A reload swaps generations and
    /// forgets what the old one exported under its write lock (`send_modify`); `current`
    /// reads it to clone the Arc, and `record` holds it while it writes, so a result is
    /// either recorded before a reload (and forgotten with its registry) or refused after it.
    generation: watch::Sender<Arc<Generation>>,
    pub metrics: Metrics,
    pub store: Store,
    /// Cancelled at shutdown; every runtime's `retired` token is its child, so shutdown
    /// retires them all.
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
        metrics.set_shard(config.shard);
        let store = Store::new(config.history_size);
        // Before the generation: its runtimes' tokens are children of it.
        let shutdown = CancellationToken::new();
        let generation = Generation::build(config, None, &shutdown)?;
        // The generation's targets are this shard's registries, as after a reload.
        for rt in &generation.targets {
            store.declare(&rt.target);
        }
        metrics.record_reload(true);
        Ok(App {
            generation: watch::Sender::new(Arc::new(generation)),
            metrics,
            store,
            shutdown,
            tasks: TaskTracker::new(),
            source,
            reloading: tokio::sync::Mutex::new(()),
            ever_ready: AtomicBool::new(false),
        })
    }

    /// The generation in force now.
    pub fn current(&self) -> Arc<Generation> {
        self.generation.borrow().clone()
    }

    /// The generations as they are put in force: the one now, then each a reload publishes
    /// (a follower that falls behind sees the latest; the runtimes a skipped generation
    /// started are either kept in the latest, and not looping yet, or retired).
    pub fn generations(&self) -> watch::Receiver<Arc<Generation>> {
        self.generation.subscribe()
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
    /// refused and the running configuration stays. The shard stays: an added registry is
    /// checked here only if its name falls in this shard.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        // The shard (`--shard`, `--total-shards`) is the same for every generation.
        let previous = self.current();
        let shard = previous.config.shard;
        let built = Config::load(self.source.as_deref())
            .map_err(ReloadError::from)
            .and_then(|mut config| {
                config.shard = shard;
                Ok(Generation::build(config, Some(&previous), &self.shutdown)?)
            });
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
        // result of the old generation lands after its registry was forgotten. The scheduler
        // is woken once the lock is released, and starts the loops of the new runtimes.
        self.generation.send_modify(|current| {
            let old = std::mem::replace(current, next.clone());
            old.retired.cancel();
            // The runtimes the next generation does not keep stop; the kept ones go on.
            for rt in &old.targets {
                if !next.holds(rt) {
                    rt.retired.cancel();
                }
            }
            // Removed registries and checks leave the store, and with it `/metrics`.
            let kept: Vec<&Target> = next.targets.iter().map(|rt| &*rt.target).collect();
            self.store.retain(&kept);
            // A changed registry continues its schedule and readiness (a kept one has them).
            for rt in &old.targets {
                if let Some(changed) = next.target(&rt.target.name).filter(|n| !Arc::ptr_eq(n, rt))
                {
                    changed.continue_from(rt);
                }
            }
            for rt in &next.targets {
                self.store.declare(&rt.target);
            }
        });
        self.metrics.record_reload(true);
        tracing::info!(
            registries = next.targets.len(),
            configured = next.config.registries.len(),
            shard = shard.index(),
            total_shards = shard.total(),
            "config reloaded"
        );
        Ok(())
    }

    /// Runs the given checks (default: the configured ones) of one registry, one after the
    /// other, holding a permit of its generation's concurrency bound. Records nothing.
    pub async fn execute(
        &self,
        rt: &TargetRuntime,
        only: Option<&[CheckKind]>,
    ) -> Vec<CheckResult> {
        execute_with(rt, only.unwrap_or(&rt.target.checks), &rt.bounds.permits).await
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
                                r = execute_with(&rt, &selection, &rt.bounds.probe_permits) => Some(Arc::new(r)),
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
        let _current = self.generation.borrow();
        if rt.retired.is_cancelled() {
            tracing::debug!(
                registry = %rt.target.name,
                "results of a configuration replaced by a reload are dropped"
            );
            return;
        }
        for result in results {
            log_result(&rt.target.name, &result);
            self.metrics.note(&result);
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

/// Runs `checks` of one registry one after the other, holding one permit of `permits`
/// while they run (checks of a round never run at once, so that bounds the checks running).
///
/// The permit is taken before the checks' state exists, and that state (a few KiB: the
/// requests, their answers, the first checks' results) is boxed only once it has one: a
/// round waiting for a permit holds a few hundred bytes. Against a real Distribution at
/// 10,000 registries the first rounds queue for tens of seconds, and rounds that held their
/// whole state while waiting (taking a permit per check, so each waited twice) were most of
/// the exporter's peak memory (docs/benchmarks.md, "Against a real Distribution").
async fn execute_with(
    rt: &TargetRuntime,
    checks: &[CheckKind],
    permits: &Semaphore,
) -> Vec<CheckResult> {
    let mut results = {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = permits.acquire().await.expect("semaphore is never closed");
        Box::pin(run_checks(rt, checks)).await
    };
    // One finding per cause: results a root cause explains follow it, before they are
    // annotated, recorded or shown anywhere.
    checks::follow_root_causes(&mut results);
    // The product is recognised from the whole round's answers, then every result's advice
    // is worded for it (never its verdict).
    let seen = {
        let fresh = crate::implementation::recognise(&rt.target.url, &results);
        let mut last = rt.implementation.lock().unwrap_or_else(|p| p.into_inner());
        match (*last, fresh.implementation) {
            (Some(known), crate::outcome::Implementation::Unknown) => known,
            _ => {
                *last = Some(fresh);
                fresh
            }
        }
    };
    for result in &mut results {
        result.facts.implementation = Some(seen);
        catalogue::annotate(result, &rt.bounds.runbook_base_url);
    }
    results
}

/// `checks` of one registry, one after the other.
async fn run_checks(rt: &TargetRuntime, checks: &[CheckKind]) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(checks.len());
    for &kind in checks {
        results.push(checks::run_check(kind, &rt.target, &rt.client).await);
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
        // A warning is logged as one, at the level its name says; a failure too (at warn:
        // the exporter itself is fine, the registry is not).
        Status::Fail | Status::Warn => log!(warn),
        _ => log!(debug),
    }
}
