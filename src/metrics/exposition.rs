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
use crate::store::{REQUEST_BUCKETS, RegistryEntry, Slots, Store, unix};

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

/// One series: `name{registry="r"<extra>} value`. `extra` is either empty or starts with
/// a comma.
struct Line<'a> {
    out: &'a mut String,
}

impl Line<'_> {
    #[inline(always)]
    fn start(&mut self, name: &str, registry_label: &str) -> &mut Self {
        self.out.push_str(name);
        self.out.push('{');
        self.out.push_str(registry_label);
        self
    }

    /// A histogram's series: `name` with `_bucket`, `_sum` or `_count`.
    fn start_sub(&mut self, name: &str, suffix: &str, registry_label: &str) -> &mut Self {
        self.out.push_str(name);
        self.start(suffix, registry_label)
    }

    #[inline(always)]
    fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.out.push(',');
        self.out.push_str(key);
        self.out.push_str("=\"");
        self.out.push_str(value);
        self.out.push('"');
        self
    }

    /// A label whose value may need escaping (it came from a registry).
    fn label_escaped(&mut self, key: &str, value: &str) -> &mut Self {
        self.out.push(',');
        self.out.push_str(key);
        self.out.push_str("=\"");
        escape_label_value(value, self.out);
        self.out.push('"');
        self
    }

    #[inline(always)]
    fn check(&mut self, check: CheckKind) -> &mut Self {
        self.label("check", check.short_name())
    }

    #[inline(always)]
    fn f64(&mut self, v: f64) {
        self.out.push_str("} ");
        push_f64(self.out, v);
        self.out.push('\n');
    }

    #[inline(always)]
    fn u64(&mut self, v: u64) {
        self.out.push_str("} ");
        push_u64(self.out, v);
        self.out.push('\n');
    }
}

/// The registries' families, each written over every registry; named by their
/// declarations in [`METRICS`]. A family is written either from the scrape's [`Snapshot`]
/// of the registries' checks or from each registry's slots in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RegistryFamily {
    Checks(CheckFamily),
    Facts(FactFamily),
}

/// The families written from the scrape's [`Snapshot`]: a registry's checks, and the facts
/// every registry has after its first round (most of a text, each read once per scrape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckFamily {
    Status,
    Reason,
    Duration,
    HttpStatus,
    LastRun,
    Interval,
    ApiVersion,
    AuthMethod,
    BlobDuration,
    Implementation,
}

/// The families written from a registry's slots, locked for each: the run counters and
/// the request histogram (larger than the rest of a copy) and the facts most registries
/// lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FactFamily {
    Runs,
    Requests,
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
    duration: f64,
    finished_at: f64,
}

/// The latest result of one check of one registry as a scrape writes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckRow {
    kind: CheckKind,
    latest: LatestRow,
}

/// What a scrape copies of one registry besides its checks: its interval and the facts
/// every registry has after its first round. The API version, the one text, is kept in
/// the snapshot's `text` (`version` is its range there).
#[derive(Debug, Clone, Copy, Default)]
struct Common {
    interval: Option<f64>,
    version: Option<(usize, usize)>,
    auth_method: Option<AuthMethod>,
    implementation: Option<Implementation>,
    blob_duration: Option<f64>,
}

/// One registry as a scrape writes it from the [`Snapshot`].
pub(super) struct Row<'a> {
    common: Common,
    checks: &'a [CheckRow],
    /// The snapshot's text, which holds the API version.
    text: &'a str,
}

impl<'a> Row<'a> {
    /// The registry's checks with a result or a run, in `CheckKind::ALL`'s order, appended
    /// to `checks`, and its API version to `text`; returns the rest.
    fn copy(slots: &Slots, checks: &mut Vec<CheckRow>, text: &mut String) -> Common {
        let f = &slots.facts;
        let version = f.api_version.as_deref().map(|v| {
            let start = text.len();
            text.push_str(v);
            (start, text.len())
        });
        for (&kind, slot) in CheckKind::ALL.iter().zip(slots.checks.iter()) {
            let Some(r) = slot.latest.as_deref() else {
                continue;
            };
            checks.push(CheckRow {
                kind,
                latest: LatestRow {
                    status: r.status,
                    reason: r.reason,
                    http_status: r.http_status,
                    duration: r.duration.as_secs_f64(),
                    finished_at: unix(r.finished_at),
                },
            });
        }
        Common {
            interval: slots.interval,
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
        text: &'a mut String,
    ) -> Row<'a> {
        checks.clear();
        text.clear();
        let common = Row::copy(slots, checks, text);
        Row {
            common,
            checks,
            text,
        }
    }

    fn api_version(&self) -> Option<&str> {
        let (start, end) = self.common.version?;
        self.text.get(start..end)
    }

    fn latest(&self) -> impl Iterator<Item = (CheckKind, &LatestRow)> {
        self.checks.iter().map(|c| (c.kind, &c.latest))
    }
}

/// Every registry's checks, copied in one pass at the start of a scrape: each registry is
/// locked once for them instead of once per family, so its check series come from one
/// moment (a status and its reason from the same result), and the families' passes read
/// contiguous memory instead of chasing every registry's results through the heap, which
/// was most of an encoding's time at 10,000 registries (docs/benchmarks.md, "Against a
/// real Distribution"). About 150 bytes per registry of two checks, for one scrape.
struct Snapshot {
    checks: Vec<CheckRow>,
    /// Per registry: the end of its rows in `checks`, its `registry="…"` label in `text`,
    /// and the rest.
    registries: Vec<(usize, (usize, usize), Common)>,
    /// The registries' labels (escaped once per scrape: the store keeps names, not text)
    /// and API versions, one after another.
    text: String,
}

impl Snapshot {
    fn row(&self, i: usize) -> Row<'_> {
        let start = i.checked_sub(1).map_or(0, |p| self.registries[p].0);
        let (end, _, common) = self.registries[i];
        Row {
            common,
            checks: &self.checks[start..end],
            text: &self.text,
        }
    }

    fn label(&self, i: usize) -> &str {
        let (start, end) = self.registries[i].1;
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
                C::Status | C::Reason | C::Duration | C::HttpStatus | C::LastRun => {
                    row.latest().next().is_some()
                }
                C::Interval => row.common.interval.is_some(),
                C::ApiVersion => row.common.version.is_some(),
                C::AuthMethod => row.common.auth_method.is_some(),
                C::BlobDuration => row.common.blob_duration.is_some(),
                C::Implementation => row.common.implementation.is_some(),
            },
            Self::Facts(family) => match family {
                F::Runs => s.checks.iter().any(|c| c.runs.iter().any(|&n| n > 0)),
                F::Requests => s.checks.iter().any(|c| c.latest.is_some()),
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

    /// Writes this family's series of one registry; `label` is its `registry="…"`,
    /// escaped ([`registry_label`]). A fact family locks `entry` while it writes.
    pub(super) fn write(
        self,
        out: &mut String,
        name: &str,
        label: &str,
        row: &Row<'_>,
        entry: &RegistryEntry,
    ) {
        let mut l = Line { out };
        match self {
            Self::Checks(family) => family.write(&mut l, name, label, row),
            Self::Facts(family) => family.write(&mut l, name, label, &entry.lock()),
        }
    }
}

impl CheckFamily {
    fn write(self, l: &mut Line<'_>, name: &str, label: &str, row: &Row<'_>) {
        use CheckFamily as C;
        match self {
            C::Status => {
                for (k, r) in row.latest() {
                    for &status in Status::ALL {
                        l.start(name, label)
                            .check(k)
                            .label("status", status.as_str())
                            .u64(u64::from(status == r.status));
                    }
                }
            }
            C::Reason => {
                for (k, r) in row.latest() {
                    l.start(name, label)
                        .check(k)
                        .label("reason", r.reason.as_str())
                        .u64(1);
                }
            }
            C::Duration => {
                for (k, r) in row.latest() {
                    l.start(name, label).check(k).f64(r.duration);
                }
            }
            C::HttpStatus => {
                for (k, r) in row.latest() {
                    l.start(name, label)
                        .check(k)
                        .u64(u64::from(r.http_status.unwrap_or(0)));
                }
            }
            C::LastRun => {
                for (k, r) in row.latest() {
                    l.start(name, label).check(k).f64(r.finished_at);
                }
            }
            C::Interval => gauge(l, name, label, row.common.interval),
            C::ApiVersion => {
                // The registry's header, as it sent it: escaped here.
                if let Some(v) = row.api_version() {
                    l.start(name, label).label_escaped("version", v).u64(1);
                }
            }
            C::AuthMethod => {
                if let Some(m) = row.common.auth_method {
                    l.start(name, label).label("method", m.as_str()).u64(1);
                }
            }
            C::BlobDuration => gauge(l, name, label, row.common.blob_duration),
            C::Implementation => {
                if let Some(i) = row.common.implementation {
                    l.start(name, label)
                        .label("implementation", i.as_str())
                        .u64(1);
                }
            }
        }
    }
}

impl FactFamily {
    fn write(self, l: &mut Line<'_>, name: &str, label: &str, s: &Slots) {
        use FactFamily as F;
        let f = &s.facts;
        match self {
            F::Runs => {
                for (&kind, c) in CheckKind::ALL.iter().zip(s.checks.iter()) {
                    for (&status, &n) in Status::ALL.iter().zip(c.runs.iter()) {
                        if n > 0 {
                            l.start(name, label)
                                .check(kind)
                                .label("status", status.as_str())
                                .u64(n);
                        }
                    }
                }
            }
            F::Requests => {
                if s.checks.iter().all(|c| c.latest.is_none()) {
                    return;
                }
                let h = &s.requests;
                for (&le, &n) in REQUEST_BUCKET_LABELS.iter().zip(h.buckets.iter()) {
                    l.start_sub(name, "_bucket", label).label("le", le).u64(n);
                }
                l.start_sub(name, "_bucket", label)
                    .label("le", "+Inf")
                    .u64(h.count);
                l.start_sub(name, "_sum", label).f64(h.sum);
                l.start_sub(name, "_count", label).u64(h.count);
            }
            F::TokenDuration => gauge(l, name, label, f.token_request_duration),
            F::TokenExpiry => gauge(l, name, label, f.token_expiry),
            F::TlsExpiry => gauge(l, name, label, f.tls_expiry),
            F::TokenTlsExpiry => gauge(l, name, label, f.token_tls_expiry),
            F::RateLimit => gauge(l, name, label, f.rate_limit.map(|r| r.0)),
            F::RateRemaining => gauge(l, name, label, f.rate_limit.map(|r| r.1)),
            F::UploadCancelled => {
                if let Some(c) = f.upload_cancelled {
                    l.start(name, label).u64(u64::from(c));
                }
            }
            F::Capability => {
                for (&c, state) in Capability::ALL.iter().zip(f.capabilities.iter()) {
                    let Some(state) = *state else { continue };
                    for &st in CapabilityStatus::ALL {
                        l.start(name, label)
                            .label("capability", c.as_str())
                            .label("status", st.as_str())
                            .u64(u64::from(st == state));
                    }
                }
            }
            F::CapabilityScore => {
                if let Some(n) = f.capability_score {
                    l.start(name, label).u64(u64::from(n));
                }
            }
            F::Referrers => {
                if let Some(n) = f.referrers {
                    l.start(name, label).u64(n);
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
    while let Some(at) = rest.find(['\\', '"', '\n']) {
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

/// `registry="<name>"`, escaped.
#[cfg(test)]
pub(super) fn registry_label(name: &str) -> String {
    let mut label = String::with_capacity(name.len() + 11);
    push_registry_label(name, &mut label);
    label
}

/// Appends `registry="<name>"`, escaped.
fn push_registry_label(name: &str, out: &mut String) {
    out.push_str("registry=\"");
    escape_label_value(name, out);
    out.push('"');
}

fn gauge(l: &mut Line<'_>, name: &str, label: &str, v: Option<f64>) {
    if let Some(v) = v {
        l.start(name, label).f64(v);
    }
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
    // One pass over the registries, each locked once: it copies their checks (the
    // Snapshot) and learns which families any registry has. A fact first seen after this
    // pass is served at the next scrape, as if it had come just after this one; none goes
    // away meanwhile (facts are kept until the registry is removed).
    let mut snapshot = Snapshot {
        checks: Vec::with_capacity(entries.len() * 2),
        registries: Vec::with_capacity(entries.len()),
        text: String::new(),
    };
    let mut present = vec![false; families.len()];
    for e in &entries {
        let label_start = snapshot.text.len();
        push_registry_label(&e.name, &mut snapshot.text);
        let label = (label_start, snapshot.text.len());
        let slots = e.lock();
        let start = snapshot.checks.len();
        let common = Row::copy(&slots, &mut snapshot.checks, &mut snapshot.text);
        let row = Row {
            common,
            checks: &snapshot.checks[start..],
            text: &snapshot.text,
        };
        for (p, (_, family)) in present.iter_mut().zip(&families) {
            *p = *p || family.has_series(&row, &slots);
        }
        snapshot
            .registries
            .push((snapshot.checks.len(), label, common));
    }
    for ((d, family), present) in families.into_iter().zip(present) {
        header(out, d, format);
        if !present {
            continue;
        }
        for (i, e) in entries.iter().enumerate() {
            // A fact family holds the registry's lock only while it writes, never while
            // the text is handed on, which may wait for the scraper.
            family.write(out, d.name, snapshot.label(i), &snapshot.row(i), e);
            if !flush(out) {
                return false;
            }
        }
    }
    true
}
