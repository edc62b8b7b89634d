//! The registries' families as text, written at scrape time straight from the store.
//!
//! Owns how a registry's series look: the `# HELP`/`# TYPE` header of a family, one
//! series line (labels escaped where their values come from a registry), the request
//! histogram's `le` labels, and the walk over every registry of the store family by family
//! ([`encode_registries`]). Which families exist and in what order is `declared.rs`'s.

use super::Format;
use super::declared::{METRICS, MetricDoc, Writer};
use crate::outcome::{Capability, CapabilityStatus, CheckKind, Status};
use crate::store::{REQUEST_BUCKETS, Slots, Store, unix};

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

    fn check(&mut self, check: CheckKind) -> &mut Self {
        self.label("check", check.short_name())
    }

    fn f64(&mut self, v: f64) {
        self.out.push_str("} ");
        push_f64(self.out, v);
        self.out.push('\n');
    }

    fn u64(&mut self, v: u64) {
        self.out.push_str("} ");
        push_u64(self.out, v);
        self.out.push('\n');
    }
}

/// The registries' families, each written over every registry; named by their
/// declarations in [`METRICS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RegistryFamily {
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
    BlobDuration,
    Implementation,
}

impl RegistryFamily {
    /// Whether [`RegistryFamily::write`] writes any series of a registry with these slots:
    /// a family no registry has (token, TLS, rate-limit or capability facts, often) is then
    /// not walked over every registry. Agrees with `write` (a unit test holds it).
    pub(super) fn has_series(self, s: &Slots) -> bool {
        use RegistryFamily as F;
        let f = &s.facts;
        let any_latest = || s.checks.iter().any(|c| c.latest.is_some());
        match self {
            F::Status | F::Reason | F::Duration | F::HttpStatus | F::LastRun | F::Requests => {
                any_latest()
            }
            F::Interval => s.interval.is_some(),
            F::Runs => s.checks.iter().any(|c| c.runs.iter().any(|&n| n > 0)),
            F::ApiVersion => f.api_version.is_some(),
            F::AuthMethod => f.auth_method.is_some(),
            F::TokenDuration => f.token_request_duration.is_some(),
            F::TokenExpiry => f.token_expiry.is_some(),
            F::TlsExpiry => f.tls_expiry.is_some(),
            F::TokenTlsExpiry => f.token_tls_expiry.is_some(),
            F::RateLimit | F::RateRemaining => f.rate_limit.is_some(),
            F::UploadCancelled => f.upload_cancelled.is_some(),
            F::Capability => f.capabilities.iter().any(Option::is_some),
            F::CapabilityScore => f.capability_score.is_some(),
            F::Referrers => f.referrers.is_some(),
            F::BlobDuration => f.blob_duration.is_some(),
            F::Implementation => f.implementation.is_some(),
        }
    }

    /// Writes this family's series of one registry; `label` is its `registry="…"`,
    /// escaped ([`registry_label`]).
    pub(super) fn write(self, out: &mut String, name: &str, label: &str, s: &Slots) {
        use RegistryFamily as F;
        let mut l = Line { out };
        let latest = || {
            CheckKind::ALL
                .iter()
                .zip(s.checks.iter())
                .filter_map(|(&k, slot)| slot.latest.as_deref().map(|r| (k, r)))
        };
        let f = &s.facts;
        match self {
            F::Status => {
                for (k, r) in latest() {
                    for &status in Status::ALL {
                        l.start(name, label)
                            .check(k)
                            .label("status", status.as_str())
                            .u64(u64::from(status == r.status));
                    }
                }
            }
            F::Reason => {
                for (k, r) in latest() {
                    l.start(name, label)
                        .check(k)
                        .label("reason", r.reason.as_str())
                        .u64(1);
                }
            }
            F::Duration => {
                for (k, r) in latest() {
                    l.start(name, label).check(k).f64(r.duration.as_secs_f64());
                }
            }
            F::HttpStatus => {
                for (k, r) in latest() {
                    l.start(name, label)
                        .check(k)
                        .u64(u64::from(r.http_status.unwrap_or(0)));
                }
            }
            F::LastRun => {
                for (k, r) in latest() {
                    l.start(name, label).check(k).f64(unix(r.finished_at));
                }
            }
            F::Interval => gauge(&mut l, name, label, s.interval),
            F::Runs => {
                for (&k, slot) in CheckKind::ALL.iter().zip(s.checks.iter()) {
                    for (&status, &n) in Status::ALL.iter().zip(slot.runs.iter()) {
                        if n > 0 {
                            l.start(name, label)
                                .check(k)
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
            F::ApiVersion => {
                // The registry's header, as it sent it: escaped here.
                if let Some(v) = &f.api_version {
                    l.start(name, label).label_escaped("version", v).u64(1);
                }
            }
            F::AuthMethod => {
                if let Some(m) = f.auth_method {
                    l.start(name, label).label("method", m.as_str()).u64(1);
                }
            }
            F::TokenDuration => gauge(&mut l, name, label, f.token_request_duration),
            F::TokenExpiry => gauge(&mut l, name, label, f.token_expiry),
            F::TlsExpiry => gauge(&mut l, name, label, f.tls_expiry),
            F::TokenTlsExpiry => gauge(&mut l, name, label, f.token_tls_expiry),
            F::RateLimit => gauge(&mut l, name, label, f.rate_limit.map(|r| r.0)),
            F::RateRemaining => gauge(&mut l, name, label, f.rate_limit.map(|r| r.1)),
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
            F::BlobDuration => gauge(&mut l, name, label, f.blob_duration),
            F::Implementation => {
                if let Some(r) = f.implementation {
                    l.start(name, label)
                        .label("implementation", r.implementation.as_str())
                        .u64(1);
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
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `registry="<name>"`, escaped.
pub(super) fn registry_label(name: &str) -> String {
    let mut label = String::with_capacity(name.len() + 11);
    label.push_str("registry=\"");
    escape_label_value(name, &mut label);
    label.push('"');
    label
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
    // One pass to learn which families any registry has: each pass over thousands of
    // registries is a cache miss per registry, and most registries lack most facts. A fact
    // first seen after this pass is served at the next scrape, as if it had come just after
    // this one; none goes away meanwhile (facts are kept until the registry is removed).
    let mut present = vec![false; families.len()];
    for e in &entries {
        let slots = e.lock();
        for (p, (_, family)) in present.iter_mut().zip(&families) {
            *p = *p || family.has_series(&slots);
        }
    }
    // Each registry's label, escaped once per scrape: the store keeps names, not text.
    let labels: Vec<String> = entries.iter().map(|e| registry_label(&e.name)).collect();
    for ((d, family), present) in families.into_iter().zip(present) {
        header(out, d, format);
        if !present {
            continue;
        }
        for (e, label) in entries.iter().zip(&labels) {
            {
                let slots = e.lock();
                family.write(out, d.name, label, &slots);
            }
            // The registry's lock is released before the text is handed on, which may wait
            // for the scraper.
            if !flush(out) {
                return false;
            }
        }
    }
    true
}
