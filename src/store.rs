//! The one place results live: for each registry × check the latest result and its run
//! counters, per registry the request-duration histogram and the facts last observed, and a
//! bounded history for the status page.
//!
//! `/metrics` encodes the registries' series from this table at scrape time
//! (`metrics::Metrics::encode`), the `/` page and `/result` read the same entries, and a
//! `/probe` answer is encoded from a table of its own. Removing a registry or a check from
//! the table removes its series: there is no second copy to keep in step. It does not
//! decide what a result means (checks) or how a series is written (metrics): it keeps
//! names and numbers, no exposition text (no escaped labels, no bucket labels).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Target;
use crate::outcome::{
    AuthMethod, Capability, CapabilityStatus, CheckKind, CheckResult, Diagnosis, Facts, Reason,
    Status,
};

/// Upper bounds of the request-duration histogram's buckets: 5 ms to 10 s. Nine, not the
/// Go client's eleven: 0.025 and 2.5 were given up (issue 21) to keep a registry with
/// every check within 100 series while it gained the blob download's duration and the
/// implementation it runs; 0.01–0.05 and 1–5 s stay apart by a factor of five.
pub const REQUEST_BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0];

/// The latest results of every registry, and a bounded history.
pub struct Store {
    // std RwLock: never held across .await. Written when a registry is added or removed;
    // each entry has its own lock, so a scrape reading one registry never waits on another.
    // The key is the entry's own name, shared: one copy of each name.
    table: RwLock<BTreeMap<Arc<str>, Arc<RegistryEntry>>>,
    history: Mutex<History>,
}

/// One registry's state.
pub struct RegistryEntry {
    pub name: Arc<str>,
    // std Mutex: never held across .await; a scrape holds it while writing one family's
    // series of this registry.
    pub(crate) slots: Mutex<Slots>,
}

/// Everything exported about one registry.
#[derive(Default)]
pub(crate) struct Slots {
    /// The configured interval (one for all the registry's checks).
    pub interval: Option<Duration>,
    /// The slots of the checks that have run, read in `CheckKind` order.
    pub checks: CheckSlots,
    pub requests: Histogram,
    pub facts: KnownFacts,
}

/// The check slots of one registry: only those of checks that have a result, as most
/// registries run two or three of the six checks (a slot is 48 bytes; six inline were half
/// a registry's entry). Read as all six in `CheckKind` order, a check without a slot
/// reading as an empty one, so the encoder walks them as it walked the array.
#[derive(Default)]
pub(crate) struct CheckSlots(Box<[(CheckKind, CheckSlot)]>);

/// What a check without a slot reads as: no result, no runs.
static EMPTY_SLOT: CheckSlot = CheckSlot {
    latest: None,
    runs: [0; Status::ALL.len()],
};

impl CheckSlots {
    /// Every check's slot, in `CheckKind::ALL` order (an empty one for a check without).
    pub fn iter(&self) -> impl Iterator<Item = &CheckSlot> + '_ {
        CheckKind::ALL.iter().map(|&k| self.get(k))
    }

    /// The slot of `check`, empty if it has none.
    pub fn get(&self, check: CheckKind) -> &CheckSlot {
        self.0
            .iter()
            .find(|(k, _)| *k == check)
            .map_or(&EMPTY_SLOT, |(_, slot)| slot)
    }

    /// The slot of `check`, made if it has none: once per check of a registry, so the
    /// slots are reallocated rather than given spare room.
    fn get_mut(&mut self, check: CheckKind) -> &mut CheckSlot {
        let i = match self.0.iter().position(|(k, _)| *k == check) {
            Some(i) => i,
            None => {
                let mut slots = std::mem::take(&mut self.0).into_vec();
                slots.push((check, CheckSlot::default()));
                slots.sort_unstable_by_key(|(k, _)| *k as usize);
                self.0 = slots.into_boxed_slice();
                self.0
                    .iter()
                    .position(|(k, _)| *k == check)
                    .expect("the slot was just added")
            }
        };
        &mut self.0[i].1
    }

    /// Where the slots are in memory and how many bytes they take: for a reader that asks
    /// the CPU to load them ahead of use.
    pub fn memory(&self) -> (*const u8, usize) {
        (self.0.as_ptr().cast(), std::mem::size_of_val(&*self.0))
    }

    /// Keeps the slots of the checks `keep` says to.
    fn retain(&mut self, keep: impl Fn(CheckKind) -> bool) {
        if self.0.iter().all(|(k, _)| keep(*k)) {
            return;
        }
        let mut slots = std::mem::take(&mut self.0).into_vec();
        slots.retain(|(k, _)| keep(*k));
        self.0 = slots.into_boxed_slice();
    }
}

/// One check of one registry.
#[derive(Default)]
pub(crate) struct CheckSlot {
    /// The latest result, as much of it as its series and the `/` page show. Inline: a
    /// slot exists only for a check that ran, and a scrape reads every registry's latest
    /// results, so a box would cost it one more wait on memory per check.
    pub latest: Option<Latest>,
    /// Runs by resulting status, indexed by `Status as usize`.
    pub runs: [u64; Status::ALL.len()],
}

/// The latest result of one check as the store keeps it. The rest of a result lives
/// elsewhere: its facts in [`KnownFacts`], its request trail and evidence in the history
/// (whole, for `/result`), and its runbook link is derived again from check and reason.
/// A whole `CheckResult` with its runbook URL cost about 560 bytes per check; this, about
/// 110 (issue 13: thousands of registries in a few MiB).
pub(crate) struct Latest {
    pub status: Status,
    pub reason: Reason,
    pub http_status: Option<u16>,
    pub duration: Duration,
    pub finished_at: SystemTime,
    pub message: Box<str>,
    pub diagnosis: Option<Diagnosis>,
    pub consequence_of: Option<CheckKind>,
}

impl Latest {
    fn of(result: CheckResult) -> Latest {
        Latest {
            status: result.status,
            reason: result.reason,
            http_status: result.http_status,
            duration: result.duration,
            finished_at: result.finished_at,
            message: result.message.into_boxed_str(),
            diagnosis: result.diagnosis,
            consequence_of: result.consequence_of,
        }
    }

    /// The result again, with its runbook link on `runbook_base_url`; without the facts,
    /// trail and evidence the store does not keep.
    fn to_result(&self, check: CheckKind, runbook_base_url: &str) -> CheckResult {
        let mut r = CheckResult::new(check, self.status, self.reason, &*self.message);
        r.http_status = self.http_status;
        r.duration = self.duration;
        r.finished_at = self.finished_at;
        r.diagnosis = self.diagnosis.clone();
        r.consequence_of = self.consequence_of;
        r.runbook_url = crate::catalogue::runbook_url(runbook_base_url, check, Some(self.reason));
        r
    }
}

/// A classic histogram: cumulative counts per bucket of [`REQUEST_BUCKETS`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Histogram {
    pub buckets: [u64; REQUEST_BUCKETS.len()],
    /// Summed exactly, as the durations are (written without a float, see
    /// `metrics::exposition::push_seconds`).
    pub sum: Duration,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let seconds = d.as_secs_f64();
        for (bucket, &le) in self.buckets.iter_mut().zip(REQUEST_BUCKETS.iter()) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        self.sum = self.sum.saturating_add(d);
        self.count += 1;
    }
}

/// The facts last observed for a registry, whichever check observed them: each stays
/// until a later result observes it again (a TLS expiry seen by the registry check is not
/// forgotten when the pull check runs).
#[derive(Default)]
pub(crate) struct KnownFacts {
    /// The API version header's value, as the registry sent it.
    pub api_version: Option<String>,
    pub auth_method: Option<AuthMethod>,
    pub token_request_duration: Option<f64>,
    pub token_expiry: Option<f64>,
    pub tls_expiry: Option<f64>,
    pub token_tls_expiry: Option<f64>,
    pub rate_limit: Option<(f64, f64)>,
    pub upload_cancelled: Option<bool>,
    /// Indexed by `Capability as usize`.
    pub capabilities: [Option<CapabilityStatus>; Capability::ALL.len()],
    pub capability_score: Option<u32>,
    pub referrers: Option<u64>,
    /// The pull check's config-blob download.
    pub blob_duration: Option<Duration>,
    /// The product the registry runs, as last recognised, and the evidence.
    pub implementation: Option<crate::outcome::Recognition>,
}

/// The time since the Unix epoch, as the timestamp series carry it (0 before 1970).
pub(crate) fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// [`since_epoch`] in seconds, for the timestamps kept as `f64`.
pub(crate) fn unix(t: SystemTime) -> f64 {
    since_epoch(t).as_secs_f64()
}

impl KnownFacts {
    fn update(&mut self, api_version: Option<&String>, f: &Facts) {
        if let Some(v) = api_version {
            self.api_version = Some(v.clone());
        }
        if let Some(m) = f.auth_method {
            self.auth_method = Some(m);
        }
        if let Some(d) = f.token_request_duration {
            self.token_request_duration = Some(d.as_secs_f64());
        }
        if let Some(t) = f.token_expiry {
            self.token_expiry = Some(unix(t));
        }
        if let Some(t) = f.tls_certificate_expiry {
            self.tls_expiry = Some(unix(t));
        }
        if let Some(t) = f.token_endpoint_tls_certificate_expiry {
            self.token_tls_expiry = Some(unix(t));
        }
        if let Some(rl) = f.rate_limit {
            self.rate_limit = Some((rl.limit, rl.remaining));
        }
        if let Some(c) = f.upload_cancelled {
            self.upload_cancelled = Some(c);
        }
        if !f.capabilities.is_empty() {
            let mut score = 0;
            for &(capability, state) in &f.capabilities {
                self.capabilities[capability as usize] = Some(state);
                score += u32::from(state == CapabilityStatus::Supported);
            }
            self.capability_score = Some(score);
        }
        if let Some(n) = f.referrers_count {
            self.referrers = Some(n);
        }
        if let Some(d) = f.blob_duration {
            self.blob_duration = Some(d);
        }
        if let Some(r) = f.implementation {
            self.implementation = Some(r);
        }
    }
}

impl RegistryEntry {
    fn new(name: Arc<str>) -> RegistryEntry {
        RegistryEntry {
            name,
            slots: Mutex::new(Slots::default()),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct History {
    size: usize,
    next_id: u64,
    failures: VecDeque<(u64, String, CheckResult)>,
    others: VecDeque<(u64, String, CheckResult)>,
}

impl Store {
    /// A store keeping the last `history_size` failures and, apart, the last
    /// `history_size` other results, so failures stay visible longer than the successes
    /// around them.
    pub fn new(history_size: usize) -> Store {
        Store {
            table: RwLock::new(BTreeMap::new()),
            history: Mutex::new(History {
                size: history_size,
                next_id: 1,
                failures: VecDeque::new(),
                others: VecDeque::new(),
            }),
        }
    }

    fn entry(&self, registry: &str) -> Arc<RegistryEntry> {
        if let Some(e) = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
        {
            return e.clone();
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = table.get(registry) {
            return e.clone();
        }
        let name: Arc<str> = Arc::from(registry);
        let entry = Arc::new(RegistryEntry::new(name.clone()));
        table.insert(name, entry.clone());
        entry
    }

    /// Declares a target with its interval, so staleness can be judged before a first run.
    pub fn declare(&self, target: &Target) {
        let entry = self.entry(&target.name);
        entry.lock().interval = Some(target.interval);
    }

    /// Keeps only the registries and checks of `targets` (after a reload): everything of
    /// a removed registry and the slots of removed checks go, and with them their series.
    /// The history keeps what happened.
    pub fn retain(&self, targets: &[&Target]) {
        // By name, so a reload of 10,000 registries is not 10,000 × 10,000 comparisons
        // under the table's lock.
        let by_name: HashMap<&str, &Target> =
            targets.iter().map(|t| (t.name.as_str(), *t)).collect();
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.retain(|name, entry| {
            let Some(target) = by_name.get(&**name) else {
                return false;
            };
            entry
                .lock()
                .checks
                .retain(|check| target.checks.contains(&check));
            true
        });
    }

    /// Records one result: the latest of its check (as a [`Latest`]), a run counted, its
    /// requests observed, its facts kept, and an entry in the history (whole).
    pub fn put(&self, registry: &str, result: CheckResult) {
        // A probe's store keeps no history: no copy of the result then.
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.size > 0 {
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
        drop(h);
        let entry = self.entry(registry);
        let mut slots = entry.lock();
        for request in &result.requests {
            slots.requests.observe(request.duration);
        }
        slots
            .facts
            .update(result.api_version.as_ref(), &result.facts);
        let slot = slots.checks.get_mut(result.check);
        slot.runs[result.status as usize] += 1;
        slot.latest = Some(Latest::of(result));
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

    /// The latest result of each check of `registry`, in check order, with its runbook
    /// link on `runbook_base_url`, and without facts, request trail and evidence (see
    /// [`Store::history`] for those).
    pub fn latest(&self, registry: &str, runbook_base_url: &str) -> Vec<CheckResult> {
        let entry = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
            .cloned();
        let Some(entry) = entry else {
            return Vec::new();
        };
        let slots = entry.lock();
        CheckKind::ALL
            .iter()
            .zip(slots.checks.iter())
            .filter_map(|(&k, s)| Some(s.latest.as_ref()?.to_result(k, runbook_base_url)))
            .collect()
    }

    /// The product `registry` runs, as last recognised (for the `/` page).
    pub fn implementation(&self, registry: &str) -> Option<crate::outcome::Recognition> {
        let entry = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
            .cloned()?;
        let slots = entry.lock();
        slots.facts.implementation
    }

    /// Every registry, in name order: a snapshot of the table for one scrape, so the
    /// scrape does not hold the table's lock while it writes.
    pub(crate) fn entries(&self) -> Vec<Arc<RegistryEntry>> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_declared_order() {
        for (i, &k) in CheckKind::ALL.iter().enumerate() {
            assert_eq!(k as usize, i);
        }
        for (i, &s) in Status::ALL.iter().enumerate() {
            assert_eq!(s as usize, i);
        }
        for (i, &c) in Capability::ALL.iter().enumerate() {
            assert_eq!(c as usize, i);
        }
    }

    /// Only the checks that ran have a slot, read in check order among empty ones; a
    /// reload that drops a check drops its slot, and with it its runs.
    #[test]
    fn a_registry_keeps_slots_only_for_its_checks_that_ran() {
        let store = Store::new(0);
        for (check, status) in [
            (CheckKind::Pull, Status::Fail),
            (CheckKind::Registry, Status::Pass),
            (CheckKind::Pull, Status::Pass),
        ] {
            store.put(
                "hub",
                CheckResult::new(check, status, crate::outcome::Reason::Ok, "x"),
            );
        }
        let entry = store.entries().pop().unwrap();
        let runs = |entry: &RegistryEntry| -> Vec<(CheckKind, u64)> {
            let slots = entry.lock();
            CheckKind::ALL
                .iter()
                .zip(slots.checks.iter())
                .map(|(&k, slot)| (k, slot.runs.iter().sum()))
                .filter(|&(_, n)| n > 0)
                .collect()
        };
        assert_eq!(slots_held(&entry), 2);
        assert_eq!(
            runs(&entry),
            vec![(CheckKind::Registry, 1), (CheckKind::Pull, 2)]
        );
        {
            let slots = entry.lock();
            let pull = slots.checks.get(CheckKind::Pull);
            assert_eq!(pull.runs[Status::Fail as usize], 1);
            assert_eq!(pull.latest.as_ref().unwrap().status, Status::Pass);
            assert_eq!(slots.checks.iter().count(), CheckKind::ALL.len());
            assert!(slots.checks.get(CheckKind::Push).latest.is_none());
        }
        let mut raw = crate::config::RawConfig::default();
        raw.registries.push(crate::config::RawRegistry {
            name: Some("hub".into()),
            url: Some("http://127.0.0.1:1".into()),
            checks: Some(vec!["registry".into()]),
            ..Default::default()
        });
        let config = crate::config::Config::resolve(raw).unwrap();
        store.retain(&[&config.registries[0]]);
        assert_eq!(slots_held(&entry), 1);
        assert_eq!(runs(&entry), vec![(CheckKind::Registry, 1)]);
    }

    fn slots_held(entry: &RegistryEntry) -> usize {
        entry.lock().checks.0.len()
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(30));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[4], 1, "0.3 is above le=0.25");
        assert_eq!(h.buckets[5], 2);
        assert_eq!(h.buckets[8], 2, "30 s is only in +Inf");
        assert_eq!(h.count, 3);
        assert_eq!(h.sum, Duration::from_millis(30_303), "summed exactly");
    }

    #[test]
    fn the_latest_result_is_kept_without_its_trail_and_the_history_whole() {
        let store = Store::new(5);
        let mut r = CheckResult::new(
            CheckKind::Pull,
            Status::Pass,
            crate::outcome::Reason::Ok,
            "x",
        )
        .with_evidence("digest", "sha256:00");
        r.requests.push(crate::outcome::RequestRecord {
            method: "HEAD".into(),
            path: "/v2/a/manifests/b".into(),
            status: Some(200),
            duration: std::time::Duration::from_millis(2),
            auth: crate::outcome::AuthUsed::None,
            note: None,
            headers: vec![("content-type".into(), "x".into())],
        });
        store.put("hub", r);
        let latest = store.latest("hub", "https://runbooks.example/");
        assert_eq!(latest.len(), 1);
        assert!(latest[0].requests.is_empty() && latest[0].evidence.is_empty());
        assert_eq!(latest[0].message, "x");
        assert_eq!(latest[0].runbook_url, "https://runbooks.example/pull.md");
        let (_, _, kept) = &store.history()[0];
        assert_eq!((kept.requests.len(), kept.evidence.len()), (1, 1));
        // The histogram saw the request before the trail was dropped.
        let entry = store.entries().pop().unwrap();
        assert_eq!(entry.lock().requests.count, 1);
    }
}
