//! The registries' families as text, written at scrape time from the store.
//!
//! Owns how a registry's series look: the `# HELP`/`# TYPE` header of a family, one
//! series line (labels escaped where their values come from a registry), the request
//! histogram's `le` labels, the scrape's copy of every registry's checks (`Snapshot`), and
//! the walk over every registry family by family ([`encode_registries`]). Which families exist and in what order is `declared.rs`'s.

use super::Format;
use super::declared::{METRICS, MetricDoc, Writer};
use crate::outcome::{
    AuthMethod, Capability, CapabilityStatus, CheckKind, Implementation, Reason, Status,
};
use std::sync::LazyLock;
use std::time::Duration;

use crate::store::{Histogram, REQUEST_BUCKETS, RegistryEntry, Slots, Store, since_epoch};

/// `# HELP` and `# TYPE` of a family. OpenMetrics names a counter's family without
/// `_total` and escapes `"` in help; the classic format does neither.
pub(super) fn header(out: &mut String, doc: &MetricDoc, format: Format) {
    let family = match (format, doc.kind) {
        (Format::OpenMetrics, "counter") => doc.name.strip_suffix("_total").unwrap_or(doc.name),
        _ => doc.name,
    };
    out.push_str("# HELP ");
    out.push_str(family);
    out.push(' ');
    for c in doc.help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(family);
    out.push(' ');
    out.push_str(doc.kind);
    out.push('\n');
}

pub(super) fn push_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

pub(super) fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// `d` in seconds, written exactly from its whole seconds and nanoseconds (`0.0057303`,
/// `1796678405.251877523`, `60.0`) instead of through an `f64`: float formatting was a
/// tenth of a scrape's time at 10,000 registries, where each registry has seven values in
/// seconds (its checks' durations and last-run timestamps, its interval, its pull's blob
/// download, its requests' summed duration), all of them durations (docs/benchmarks.md,
/// "Exact seconds"). A duration under a second reads back as the same `f64` as
/// `as_secs_f64`, and from 10 µs up it is the same text as [`push_f64`]'s, which below that
/// uses an exponent (`1e-9`); unit tests hold both. A timestamp gets its nanoseconds, which
/// an `f64` rounds to about a quarter of a microsecond.
pub(super) fn push_seconds(out: &mut String, d: Duration) {
    out.push_str(itoa::Buffer::new().format(d.as_secs()));
    let mut nanos = d.subsec_nanos();
    if nanos == 0 {
        out.push_str(".0");
        return;
    }
    // Nine digits after the point, of which the trailing zeros are dropped and the leading
    // ones written before the rest.
    let mut digits = 9;
    while nanos.is_multiple_of(10) {
        nanos /= 10;
        digits -= 1;
    }
    let mut buffer = itoa::Buffer::new();
    let rest = buffer.format(nanos);
    out.push('.');
    for _ in rest.len()..digits {
        out.push('0');
    }
    out.push_str(rest);
}

/// The end of a series' label set after the registry's name, when it has no other label.
const CLOSE: &str = "\"} ";

/// What follows a registry's name in a series line, up to the value, for each label set the
/// families write (`",check="pull",status="pass"} `), built once per process. With them a
/// line is the family's head, the registry's name, one of these and the value: three
/// copies and a number instead of a dozen small pushes, which were most of an encoding's
/// own time at 10,000 registries (docs/benchmarks.md, "Lines from three copies").
struct Tails {
    /// By `CheckKind`: `",check="pull"} `.
    check: Vec<String>,
    /// By `CheckKind`, then `Status`: `",check="pull",status="pass"} `.
    check_status: Vec<Vec<String>>,
    /// By `CheckKind`: `",check="pull",reason="`, the reason to follow.
    check_reason: Vec<String>,
    /// By bucket of [`REQUEST_BUCKETS`], then `+Inf`: `",le="0.005"} `.
    le: Vec<String>,
    /// By `Capability`, then `CapabilityStatus`: `",capability="delete",status="denied"} `.
    capability_status: Vec<Vec<String>>,
}

static TAILS: LazyLock<Tails> = LazyLock::new(|| {
    let check = |k: CheckKind| format!("\",check=\"{}\"", k.short_name());
    Tails {
        check: CheckKind::ALL.iter().map(|&k| check(k) + "} ").collect(),
        check_status: CheckKind::ALL
            .iter()
            .map(|&k| {
                let check = check(k);
                Status::ALL
                    .iter()
                    .map(|s| format!("{check},status=\"{}\"}} ", s.as_str()))
                    .collect()
            })
            .collect(),
        check_reason: CheckKind::ALL
            .iter()
            .map(|&k| check(k) + ",reason=\"")
            .collect(),
        le: REQUEST_BUCKET_LABELS
            .iter()
            .chain(["+Inf"].iter())
            .map(|le| format!("\",le=\"{le}\"}} "))
            .collect(),
        capability_status: Capability::ALL
            .iter()
            .map(|c| {
                CapabilityStatus::ALL
                    .iter()
                    .map(|s| {
                        format!(
                            "\",capability=\"{}\",status=\"{}\"}} ",
                            c.as_str(),
                            s.as_str()
                        )
                    })
                    .collect()
            })
            .collect(),
    }
});

/// A family's series names up to the registry's name: `name{registry="`, and for a
/// histogram its `_bucket`, `_sum` and `_count` series'.
pub(super) struct Heads {
    main: String,
    bucket: String,
    sum: String,
    count: String,
}

impl Heads {
    pub(super) fn of(doc: &MetricDoc) -> Heads {
        let head = |suffix: &str| format!("{}{suffix}{{registry=\"", doc.name);
        let histogram = doc.kind == "histogram";
        let sub = |suffix: &str| {
            if histogram {
                head(suffix)
            } else {
                String::new()
            }
        };
        Heads {
            main: head(""),
            bucket: sub("_bucket"),
            sum: sub("_sum"),
            count: sub("_count"),
        }
    }
}

/// One family's series of one registry: each line is `<head><name><tail><value>\n`, where
/// `name` is the registry's name, escaped, and `tail` one of [`Tails`] (or [`CLOSE`]).
struct Lines<'a> {
    out: &'a mut String,
    heads: &'a Heads,
    name: &'a str,
}

impl Lines<'_> {
    /// One line: `head`, the registry's name, `tail`, what `value` writes, a line feed.
    #[inline(always)]
    fn line(&mut self, head: &str, tail: &str, value: impl FnOnce(&mut String)) {
        self.out.push_str(head);
        self.out.push_str(self.name);
        self.out.push_str(tail);
        value(self.out);
        self.out.push('\n');
    }

    #[inline(always)]
    fn u64(&mut self, tail: &str, v: u64) {
        let heads = self.heads;
        self.line(&heads.main, tail, |out| push_u64(out, v));
    }

    #[inline(always)]
    fn f64(&mut self, tail: &str, v: f64) {
        let heads = self.heads;
        self.line(&heads.main, tail, |out| push_f64(out, v));
    }

    #[inline(always)]
    fn seconds(&mut self, tail: &str, d: Duration) {
        let heads = self.heads;
        self.line(&heads.main, tail, |out| push_seconds(out, d));
    }

    /// A series of a state set or an info metric: 1 or 0.
    #[inline(always)]
    fn one(&mut self, tail: &str, one: bool) {
        let heads = self.heads;
        self.line(&heads.main, tail, |out| {
            out.push(if one { '1' } else { '0' })
        });
    }

    /// An info series: `tail` ends in a label's opening quote, `value` is that label's
    /// value (escaped here when it came from a registry), and the series is 1.
    fn info(&mut self, tail: &str, value: &str, escape: bool) {
        let heads = self.heads;
        self.line(&heads.main, tail, |out| {
            if escape {
                escape_label_value(value, out);
            } else {
                out.push_str(value);
            }
            out.push_str(CLOSE);
            out.push('1');
        });
    }

    fn gauge(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.f64(CLOSE, v);
        }
    }

    /// A gauge of a registry in seconds, when it has one.
    fn seconds_gauge(&mut self, d: Option<Duration>) {
        if let Some(d) = d {
            self.seconds(CLOSE, d);
        }
    }
}

/// The registries' families, each written over every registry; named by their
/// declarations in [`METRICS`]. A family is written either from the scrape's [`Snapshot`]
/// or from each registry's slots in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RegistryFamily {
    Checks(CheckFamily),
    Facts(FactFamily),
}

/// The families written from the scrape's [`Snapshot`]: a registry's checks, their run
/// counters and requests, and the facts every registry has after its first round (most of
/// a text, each read once per scrape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckFamily {
    Status,
    Reason,
    Duration,
    HttpStatus,
    LastRun,
    Interval,
    Runs,
    Requests,
    ApiVersion,
    AuthMethod,
    BlobDuration,
    Implementation,
}

/// The families written from a registry's slots, locked for each: the facts most
/// registries lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FactFamily {
    TokenDuration,
    TokenExpiry,
    TlsExpiry,
    TokenTlsExpiry,
    RateLimit,
    RateRemaining,
    UploadCancelled,
    Capability,
    CapabilityScore,
    Referrers,
}

/// The latest result of one check as a scrape writes it.
#[derive(Debug, Clone, Copy)]
struct LatestRow {
    status: Status,
    reason: Reason,
    http_status: Option<u16>,
    duration: Duration,
    /// Since the Unix epoch.
    finished_at: Duration,
}

/// The latest result of one check of one registry as a scrape writes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckRow {
    kind: CheckKind,
    latest: LatestRow,
}

/// A check's runs that ended in one status, when there were any.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunRow {
    kind: CheckKind,
    status: Status,
    runs: u64,
}

/// What a scrape copies of one registry besides its checks and runs: its interval, its
/// request histogram and the facts every registry has after its first round. The API
/// version, the one text, is kept in the snapshot's `text` (`version` is its range there).
#[derive(Debug, Clone, Copy, Default)]
struct Common {
    interval: Option<Duration>,
    requests: Histogram,
    version: Option<(usize, usize)>,
    auth_method: Option<AuthMethod>,
    implementation: Option<Implementation>,
    blob_duration: Option<Duration>,
}

/// One registry as a scrape writes it from the [`Snapshot`].
pub(super) struct Row<'a> {
    common: Common,
    checks: &'a [CheckRow],
    runs: &'a [RunRow],
    /// The snapshot's text, which holds the API version.
    text: &'a str,
}

impl<'a> Row<'a> {
    /// The registry's checks with a result, in `CheckKind::ALL`'s order, appended to
    /// `checks`, its runs to `runs` and its API version to `text`; returns the rest.
    fn copy(
        slots: &Slots,
        checks: &mut Vec<CheckRow>,
        runs: &mut Vec<RunRow>,
        text: &mut String,
    ) -> Common {
        let f = &slots.facts;
        let version = f.api_version.as_deref().map(|v| {
            let start = text.len();
            text.push_str(v);
            (start, text.len())
        });
        for (&kind, slot) in CheckKind::ALL.iter().zip(slots.checks.iter()) {
            for (&status, &n) in Status::ALL.iter().zip(slot.runs.iter()) {
                if n > 0 {
                    runs.push(RunRow {
                        kind,
                        status,
                        runs: n,
                    });
                }
            }
            let Some(r) = slot.latest.as_ref() else {
                continue;
            };
            checks.push(CheckRow {
                kind,
                latest: LatestRow {
                    status: r.status,
                    reason: r.reason,
                    http_status: r.http_status,
                    duration: r.duration,
                    finished_at: since_epoch(r.finished_at),
                },
            });
        }
        Common {
            interval: slots.interval,
            requests: slots.requests,
            version,
            auth_method: f.auth_method,
            implementation: f.implementation.map(|r| r.implementation),
            blob_duration: f.blob_duration,
        }
    }

    /// A registry's row read straight from its slots (tests).
    #[cfg(test)]
    pub(super) fn of(
        slots: &Slots,
        checks: &'a mut Vec<CheckRow>,
        runs: &'a mut Vec<RunRow>,
        text: &'a mut String,
    ) -> Row<'a> {
        checks.clear();
        runs.clear();
        text.clear();
        let common = Row::copy(slots, checks, runs, text);
        Row {
            common,
            checks,
            runs,
            text,
        }
    }

    fn api_version(&self) -> Option<&str> {
        let (start, end) = self.common.version?;
        self.text.get(start..end)
    }
}

/// One registry's place in the [`Snapshot`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The end of its rows in `checks` and in `runs`.
    checks_end: usize,
    runs_end: usize,
    /// Its name, escaped, in `text`.
    name: (usize, usize),
    common: Common,
}

/// Every registry's checks, runs and common facts, copied in one pass at the start of a
/// scrape: each registry is locked once for them instead of once per family, so its series
/// come from one moment (a status, its reason and its run counters from the same result),
/// and the families' passes read contiguous memory instead of chasing every registry's
/// results through the heap, which was most of an encoding's time at 10,000 registries
/// (docs/benchmarks.md, "Against a real Distribution"). About 300 bytes per registry of
/// two checks, for one scrape.
struct Snapshot {
    checks: Vec<CheckRow>,
    runs: Vec<RunRow>,
    registries: Vec<Entry>,
    /// The registries' names (escaped once per scrape: the store keeps names, not text)
    /// and API versions, one after another.
    text: String,
}

impl Snapshot {
    fn row(&self, i: usize) -> Row<'_> {
        let (checks_start, runs_start) = i.checked_sub(1).map_or((0, 0), |p| {
            (self.registries[p].checks_end, self.registries[p].runs_end)
        });
        let e = &self.registries[i];
        Row {
            common: e.common,
            checks: &self.checks[checks_start..e.checks_end],
            runs: &self.runs[runs_start..e.runs_end],
            text: &self.text,
        }
    }

    fn name(&self, i: usize) -> &str {
        let (start, end) = self.registries[i].name;
        self.text.get(start..end).unwrap_or("")
    }
}

impl RegistryFamily {
    /// Whether [`RegistryFamily::write`] writes any series of a registry with this row and
    /// these slots: a family no registry has (token, TLS, rate-limit or capability facts,
    /// often) is then not walked over every registry. Agrees with `write` (a unit test
    /// holds it).
    pub(super) fn has_series(self, row: &Row<'_>, s: &Slots) -> bool {
        use CheckFamily as C;
        use FactFamily as F;
        let f = &s.facts;
        match self {
            Self::Checks(family) => match family {
                C::Status | C::Reason | C::Duration | C::HttpStatus | C::LastRun | C::Requests => {
                    !row.checks.is_empty()
                }
                C::Runs => !row.runs.is_empty(),
                C::Interval => row.common.interval.is_some(),
                C::ApiVersion => row.common.version.is_some(),
                C::AuthMethod => row.common.auth_method.is_some(),
                C::BlobDuration => row.common.blob_duration.is_some(),
                C::Implementation => row.common.implementation.is_some(),
            },
            Self::Facts(family) => match family {
                F::TokenDuration => f.token_request_duration.is_some(),
                F::TokenExpiry => f.token_expiry.is_some(),
                F::TlsExpiry => f.tls_expiry.is_some(),
                F::TokenTlsExpiry => f.token_tls_expiry.is_some(),
                F::RateLimit | F::RateRemaining => f.rate_limit.is_some(),
                F::UploadCancelled => f.upload_cancelled.is_some(),
                F::Capability => f.capabilities.iter().any(Option::is_some),
                F::CapabilityScore => f.capability_score.is_some(),
                F::Referrers => f.referrers.is_some(),
            },
        }
    }

    /// Writes this family's series of one registry; `name` is its name, escaped. A fact
    /// family locks `entry` while it writes.
    pub(super) fn write(
        self,
        out: &mut String,
        heads: &Heads,
        name: &str,
        row: &Row<'_>,
        entry: &RegistryEntry,
    ) {
        match self {
            Self::Checks(family) => family.write(&mut Lines { out, heads, name }, row),
            Self::Facts(_) => self.write_locked(out, heads, name, row, &entry.lock()),
        }
    }

    /// As [`RegistryFamily::write`], with the registry's slots locked by the caller.
    fn write_locked(self, out: &mut String, heads: &Heads, name: &str, row: &Row<'_>, s: &Slots) {
        let mut l = Lines { out, heads, name };
        match self {
            Self::Checks(family) => family.write(&mut l, row),
            Self::Facts(family) => family.write(&mut l, s),
        }
    }
}

impl CheckFamily {
    fn write(self, l: &mut Lines<'_>, row: &Row<'_>) {
        use CheckFamily as C;
        let tails = &*TAILS;
        let latest = row.checks.iter().map(|c| (c.kind as usize, &c.latest));
        match self {
            C::Status => {
                for (k, r) in latest {
                    for (&status, tail) in Status::ALL.iter().zip(&tails.check_status[k]) {
                        l.one(tail, status == r.status);
                    }
                }
            }
            C::Reason => {
                for (k, r) in latest {
                    l.info(&tails.check_reason[k], r.reason.as_str(), false);
                }
            }
            C::Duration => {
                for (k, r) in latest {
                    l.seconds(&tails.check[k], r.duration);
                }
            }
            C::HttpStatus => {
                for (k, r) in latest {
                    l.u64(&tails.check[k], u64::from(r.http_status.unwrap_or(0)));
                }
            }
            C::LastRun => {
                for (k, r) in latest {
                    l.seconds(&tails.check[k], r.finished_at);
                }
            }
            C::Interval => l.seconds_gauge(row.common.interval),
            C::Runs => {
                for r in row.runs {
                    l.u64(
                        &tails.check_status[r.kind as usize][r.status as usize],
                        r.runs,
                    );
                }
            }
            C::Requests => {
                if row.checks.is_empty() {
                    return;
                }
                let h = &row.common.requests;
                let heads = l.heads;
                let counts = h.buckets.iter().chain([&h.count]);
                for (&n, le) in counts.zip(&tails.le) {
                    l.line(&heads.bucket, le, |out| push_u64(out, n));
                }
                l.line(&heads.sum, CLOSE, |out| push_seconds(out, h.sum));
                l.line(&heads.count, CLOSE, |out| push_u64(out, h.count));
            }
            // The registry's header, as it sent it: escaped here.
            C::ApiVersion => {
                if let Some(v) = row.api_version() {
                    l.info("\",version=\"", v, true);
                }
            }
            C::AuthMethod => {
                if let Some(m) = row.common.auth_method {
                    l.info("\",method=\"", m.as_str(), false);
                }
            }
            C::BlobDuration => l.seconds_gauge(row.common.blob_duration),
            C::Implementation => {
                if let Some(i) = row.common.implementation {
                    l.info("\",implementation=\"", i.as_str(), false);
                }
            }
        }
    }
}

impl FactFamily {
    fn write(self, l: &mut Lines<'_>, s: &Slots) {
        use FactFamily as F;
        let f = &s.facts;
        match self {
            F::TokenDuration => l.gauge(f.token_request_duration),
            F::TokenExpiry => l.gauge(f.token_expiry),
            F::TlsExpiry => l.gauge(f.tls_expiry),
            F::TokenTlsExpiry => l.gauge(f.token_tls_expiry),
            F::RateLimit => l.gauge(f.rate_limit.map(|r| r.0)),
            F::RateRemaining => l.gauge(f.rate_limit.map(|r| r.1)),
            F::UploadCancelled => {
                if let Some(c) = f.upload_cancelled {
                    l.u64(CLOSE, u64::from(c));
                }
            }
            F::Capability => {
                let tails = &*TAILS;
                for (tails, state) in tails.capability_status.iter().zip(f.capabilities.iter()) {
                    let Some(state) = *state else { continue };
                    for (&st, tail) in CapabilityStatus::ALL.iter().zip(tails) {
                        l.one(tail, st == state);
                    }
                }
            }
            F::CapabilityScore => {
                if let Some(n) = f.capability_score {
                    l.u64(CLOSE, u64::from(n));
                }
            }
            F::Referrers => {
                if let Some(n) = f.referrers {
                    l.u64(CLOSE, n);
                }
            }
        }
    }
}

/// [`REQUEST_BUCKETS`] as `le` label values, written once rather than at every scrape.
pub(super) const REQUEST_BUCKET_LABELS: [&str; REQUEST_BUCKETS.len()] = [
    "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1.0", "5.0", "10.0",
];

/// Escapes a label value for both text formats: backslash, double quote and line feed.
/// The runs between them are copied whole (most values have none).
fn escape_label_value(value: &str, out: &mut String) {
    let mut rest = value;
    // The three are ASCII, so a byte position is a char boundary.
    while let Some(at) = rest.bytes().position(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// A registry's name as a label value, escaped.
#[cfg(test)]
pub(super) fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    escape_label_value(name, &mut out);
    out
}

/// How many registries ahead of the one it copies the copy pass asks the CPU to load an
/// entry; half as far ahead it asks for that entry's name and check slots, which it can
/// only find once the entry is loaded.
const AHEAD_OF_COPY: usize = 8;

/// Asks the CPU to load what the copy pass will read of registries `i + AHEAD_OF_COPY`
/// (its entry) and `i + AHEAD_OF_COPY / 2` (its name, check slots and API version). Each
/// registry is four allocations; at 10,000 registries they are not in cache, and reading
/// them one after another waited on memory for most of the pass.
fn ask_ahead(entries: &[std::sync::Arc<RegistryEntry>], i: usize) {
    if let Some(e) = entries.get(i + AHEAD_OF_COPY) {
        prefetch(std::sync::Arc::as_ptr(e).cast(), size_of::<RegistryEntry>());
    }
    if let Some(e) = entries.get(i + AHEAD_OF_COPY / 2) {
        prefetch(e.name.as_ptr(), e.name.len());
        // Not waited for: a registry being written is read when the pass comes to it.
        if let Ok(slots) = e.slots.try_lock() {
            let (p, len) = slots.checks.memory();
            prefetch(p, len);
            if let Some(v) = &slots.facts.api_version {
                prefetch(v.as_ptr(), v.len());
            }
        }
    }
}

/// Asks the CPU to start loading `len` bytes at `p` into its cache, and goes on without
/// waiting. A hint only: nothing is read, and elsewhere than on x86_64 it does nothing.
#[inline(always)]
fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // SAFETY: SSE, which the intrinsic requires, is part of x86_64's baseline; a
        // prefetch reads nothing architecturally and never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(offset).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Every registry family of [`METRICS`], in order, over every registry of `store`.
/// `flush` is offered the text after each registry's series of a family; it may hand it on
/// and empty it, and stops the encoding by returning false (then so does this).
pub(super) fn encode_registries(
    out: &mut String,
    store: &Store,
    format: Format,
    flush: &mut dyn FnMut(&mut String) -> bool,
) -> bool {
    let entries = store.entries();
    let families: Vec<(&MetricDoc, RegistryFamily)> = METRICS
        .iter()
        .filter_map(|d| match d.writer {
            Writer::Registry(family) => Some((d, family)),
            _ => None,
        })
        .collect();
    // One pass over the registries, each locked once: it copies their checks, runs and
    // common facts (the Snapshot), learns which families any registry has, and writes the
    // first family, so the text starts on its way while the registries are read (reading
    // them is mostly waiting on memory: 5-10 ms at 10,000 registries). A fact first seen
    // after this pass is served at the next scrape, as if it had come just after this
    // one; none goes away meanwhile (facts are kept until the registry is removed).
    let mut snapshot = Snapshot {
        checks: Vec::with_capacity(entries.len() * 2),
        runs: Vec::with_capacity(entries.len() * 2),
        registries: Vec::with_capacity(entries.len()),
        text: String::with_capacity(entries.len() * 16),
    };
    let mut families = families.into_iter();
    let Some((first_doc, first)) = families.next() else {
        return true;
    };
    header(out, first_doc, format);
    let first_heads = Heads::of(first_doc);
    let mut present = vec![false; families.len()];
    for (i, e) in entries.iter().enumerate() {
        ask_ahead(&entries, i);
        let name_start = snapshot.text.len();
        escape_label_value(&e.name, &mut snapshot.text);
        let name = (name_start, snapshot.text.len());
        let slots = e.lock();
        let common = Row::copy(
            &slots,
            &mut snapshot.checks,
            &mut snapshot.runs,
            &mut snapshot.text,
        );
        snapshot.registries.push(Entry {
            checks_end: snapshot.checks.len(),
            runs_end: snapshot.runs.len(),
            name,
            common,
        });
        let row = snapshot.row(i);
        for (p, (_, family)) in present.iter_mut().zip(families.as_slice()) {
            *p = *p || family.has_series(&row, &slots);
        }
        first.write_locked(out, &first_heads, snapshot.name(i), &row, &slots);
        drop(slots);
        // Handed on with no lock held: it may wait for the scraper.
        if !flush(out) {
            return false;
        }
    }
    for ((d, family), present) in families.zip(present) {
        header(out, d, format);
        if !present {
            continue;
        }
        let heads = Heads::of(d);
        for (i, e) in entries.iter().enumerate() {
            // A fact family holds the registry's lock only while it writes, never while
            // the text is handed on, which may wait for the scraper.
            family.write(out, &heads, snapshot.name(i), &snapshot.row(i), e);
            if !flush(out) {
                return false;
            }
        }
    }
    true
}
