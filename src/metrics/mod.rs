//! Every metric the exporter serves, declared once, and the one place state becomes series.
//!
//! Owns the metric names (a contract with dashboards and alerts), their help, and the two
//! text formats: OpenMetrics 1.0 and the classic 0.0.4 format. The registries' series are
//! written at scrape time from the [`Store`], the one place results live (their checks from
//! a copy made in one pass, each registry locked once): each
//! registry's label is escaped once, and a series is a few string copies and a number, not
//! a family lookup (prometheus-client spent ~250 ns per series, issue 13). The exporter's own
//! series (reload state, build and check info, `process_*`) are few and fixed and go
//! through prometheus-client with typed label sets. It does not run checks, decide
//! statuses or keep results.
//!
//! Two sets of series: `/metrics` ([`Metrics::encode_chunks`], streamed) serves the registries' series and
//! the exporter's own; a `/probe` answer ([`encode_probe`]) serves one registry's series and
//! `probe_success`/`probe_duration_seconds`, never the exporter's own, so that alerts on
//! the exporter never fire from a Probe job. [`MetricDoc::served_on`] says which.
//!
//! # Layout
//! - `declared.rs`: [`METRICS`], every metric's declaration with its writer.
//! - `exposition.rs`: the registries' families written from the store as text.
//! - this file: the text [`Format`], the exporter's own series ([`Metrics`]), the
//!   streamed `/metrics` body and a `/probe` answer.

mod declared;
mod exposition;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::outcome::{CheckKind, CheckResult, Reason};
use crate::process;
use crate::shard::Shard;
use crate::store::{Store, unix};

pub use declared::{METRICS, MetricDoc, ServedOn};
use declared::{Own, ProbeSeries, Writer};
use exposition::{encode_registries, header, push_f64, push_u64};

/// The text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// Content negotiation as the Go client does it: OpenMetrics only when asked for.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckInfoLabels {
    check: CheckKind,
    check_id: String,
    severity: String,
    category: String,
    runbook_url: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The exporter's own series and what `/metrics` needs besides the store.
pub struct Metrics {
    /// The exporter's own series (`/metrics` only), through prometheus-client.
    own: Registry,
    reload_ok: Gauge,
    reload_time: FloatGauge,
    /// Runs that ended `local_resource_exhausted`: the exporter's fault, counted apart.
    exhausted: Counter,
    /// `--shard` and `--total-shards`, as kube-state-metrics exports its own: an alert
    /// compares the ordinals that report with the total (OciRegistryExporterShardMissing).
    shard_ordinal: Gauge,
    total_shards: Gauge,
}

impl Metrics {
    /// The exporter's series; `runbook_base_url` is used by `oci_registry_check_info`.
    pub fn new(runbook_base_url: &str) -> Metrics {
        let mut own = Registry::default();
        let m = Metrics {
            own: Registry::default(),
            reload_ok: Gauge::default(),
            reload_time: FloatGauge::default(),
            exhausted: Counter::default(),
            shard_ordinal: Gauge::default(),
            total_shards: Gauge::default(),
        };
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                // Set by build.rs: git's revision, or "unknown" outside a checkout.
                revision: env!("ORE_BUILD_REVISION").into(),
            })
            .set(1);
        let info: Family<CheckInfoLabels, Gauge> = Family::default();
        for &kind in CheckKind::ALL {
            let c = crate::catalogue::info(kind);
            info.get_or_create(&CheckInfoLabels {
                check: kind,
                check_id: c.id.to_string(),
                severity: c.severity.as_str().to_string(),
                category: c.category.to_string(),
                runbook_url: crate::catalogue::runbook_url(runbook_base_url, kind, None),
            })
            .set(1);
        }
        // Names, help texts and order come from METRICS, the one list docs/metrics.md is
        // checked against; each own series is registered by its writer.
        let mut process_series = Vec::new();
        for d in METRICS {
            let name = d.registered_name();
            match d.writer {
                Writer::Own(Own::CheckInfo) => own.register(name, d.help, info.clone()),
                Writer::Own(Own::ReloadSuccessful) => {
                    own.register(name, d.help, m.reload_ok.clone())
                }
                Writer::Own(Own::ReloadSuccessTime) => {
                    own.register(name, d.help, m.reload_time.clone())
                }
                Writer::Own(Own::LocalResourceExhausted) => {
                    own.register(name, d.help, m.exhausted.clone())
                }
                Writer::Own(Own::ShardOrdinal) => {
                    own.register(name, d.help, m.shard_ordinal.clone())
                }
                Writer::Own(Own::TotalShards) => own.register(name, d.help, m.total_shards.clone()),
                Writer::Own(Own::BuildInfo) => own.register(name, d.help, build.clone()),
                Writer::Process(figure) => process_series.push(process::Series {
                    name,
                    help: d.help,
                    figure,
                    counter: d.kind == "counter",
                }),
                Writer::Registry(_) | Writer::Probe(_) => {}
            }
        }
        // After the registered metrics, as prometheus-client encodes collectors.
        process::register(&mut own, process_series);
        let m = Metrics { own, ..m };
        m.set_shard(Shard::ALL);
        m
    }

    /// Exports this replica's shard.
    pub fn set_shard(&self, shard: Shard) {
        // Flag values are small: a replica count, validated by Shard::new.
        self.shard_ordinal
            .set(i64::try_from(shard.index()).unwrap_or(i64::MAX));
        self.total_shards
            .set(i64::try_from(shard.total()).unwrap_or(i64::MAX));
    }

    /// Counts what the exporter itself must know of a result: running out of a local
    /// resource is the exporter's problem, counted apart from the registry's series.
    pub fn note(&self, result: &CheckResult) {
        if result.reason == Reason::LocalResourceExhausted {
            self.exhausted.inc();
        }
    }

    /// Records the outcome of a configuration load or reload.
    pub fn record_reload(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_time.set(unix(SystemTime::now()));
        }
    }

    /// `/metrics` whole: every registry's series from `store`, then the exporter's own.
    /// For callers that want one text; the server streams [`Metrics::encode_chunks`].
    pub fn encode(&self, store: &Store, format: Format) -> String {
        let mut out = String::new();
        encode_registries(&mut out, store, format, &mut |_| true);
        self.encode_own(&mut out, format);
        out
    }

    /// `/metrics` in pieces of about [`CHUNK`] bytes, each handed to `send` once it is
    /// full and the last with the exporter's own series. Returns false, having stopped
    /// early, when `send` does (the scraper went away or stopped reading).
    ///
    /// A streamed body never exists whole: at 10,000 registries it is 27.5 MB, which as
    /// one buffer doubled the exporter's peak memory and spent a third of the encode in
    /// page faults on fresh pages (docs/benchmarks.md, "Scale work").
    pub fn encode_chunks(
        &self,
        store: &Store,
        format: Format,
        send: &mut dyn FnMut(Bytes) -> bool,
    ) -> bool {
        let mut out = String::with_capacity(CHUNK);
        let mut flush = |out: &mut String| {
            if out.len() < CHUNK - CHUNK_SLACK {
                return true;
            }
            send(Bytes::from(std::mem::replace(
                out,
                String::with_capacity(CHUNK),
            )))
        };
        if !encode_registries(&mut out, store, format, &mut flush) {
            return false;
        }
        self.encode_own(&mut out, format);
        send(Bytes::from(out))
    }

    /// The exporter's own series, and the end of the text.
    fn encode_own(&self, out: &mut String, format: Format) {
        let mut own = String::new();
        // Writing into a String cannot fail: fmt::Write for String is infallible.
        text::encode(&mut own, &self.own).expect("writing to a String cannot fail");
        let own = own.strip_suffix("# EOF\n").unwrap_or(&own);
        match format {
            Format::OpenMetrics => {
                out.push_str(own);
                out.push_str("# EOF\n");
            }
            Format::Classic => out.push_str(&openmetrics_to_classic(own)),
        }
    }
}

/// The size of a streamed body's pieces. Each piece costs the connection a wake-up and a
/// write, so 256 KiB rather than 64: at 10,000 registries (27.5 MB) a scrape took 47-64 ms
/// against 57-77 ms with 64 KiB pieces, on a real Distribution (docs/benchmarks.md). Above
/// glibc's initial mmap threshold (128 KiB), so the first pieces are mapped; freeing one
/// raises glibc's threshold past it (its dynamic threshold), and later pieces come from the
/// heap and reuse its memory instead of being mapped and faulted in afresh.
pub const CHUNK: usize = 256 * 1024;

/// A piece is handed on once fewer than this many bytes of room are left: more than one
/// registry's series of one family take (a few hundred bytes; the histogram about 1.5 KiB),
/// so a piece seldom outgrows its buffer.
const CHUNK_SLACK: usize = 4 * 1024;

/// A `/probe` answer: the registry's series from `store` (a table of the probe's own
/// results), then `probe_success` (no check failed) and
/// `probe_duration_seconds`.
pub fn encode_probe(store: &Store, success: bool, duration: Duration, format: Format) -> String {
    let mut out = String::with_capacity(8 * 1024);
    encode_registries(&mut out, store, format, &mut |_| true);
    for d in METRICS {
        let Writer::Probe(series) = d.writer else {
            continue;
        };
        header(&mut out, d, format);
        out.push_str(d.name);
        out.push(' ');
        match series {
            ProbeSeries::Success => push_u64(&mut out, u64::from(success)),
            ProbeSeries::Duration => push_f64(&mut out, duration.as_secs_f64()),
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Rewrites prometheus-client's OpenMetrics text as the classic 0.0.4 text format.
///
/// The differences that matter for what this exporter writes: a counter's family is named
/// without `_total` in OpenMetrics but with it in the classic format, `# UNIT` and `# EOF`
/// do not exist there, and HELP escapes only backslash and newline.
pub fn openmetrics_to_classic(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let tail = if *prefix == "# HELP " {
                tail.replace("\\\"", "\"")
            } else {
                tail.to_string()
            };
            Some(if counters.contains(name) {
                format!("{prefix}{name}_total {tail}")
            } else {
                format!("{prefix}{name} {tail}")
            })
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
