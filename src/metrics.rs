//! Every metric the exporter serves, declared once, and the one place state becomes series.
//!
//! Owns the metric names (a contract with dashboards and alerts), their help, and the two
//! text formats: OpenMetrics 1.0 and the classic 0.0.4 format. The registries' series are
//! written at scrape time straight from the [`Store`], the one place results live: each
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

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::outcome::{Capability, CapabilityStatus, CheckKind, CheckResult, Reason, Status};
use crate::process::{self, Figure};
use crate::shard::Shard;
use crate::store::{REQUEST_BUCKETS, Slots, Store, unix};

/// One metric's documentation: the source of the help text and of docs/metrics.md.
pub struct MetricDoc {
    /// The name as scraped (counters with their `_total`).
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// How its series are written, which also decides where they are served.
    writer: Writer,
}

/// How a metric's series are written. Each declaration in [`METRICS`] names its writer,
/// so no metric can lack one, and each writer's `match` is exhaustive; a writer no
/// declaration names is dead code, which the lints refuse. No name is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// A registry's series, from the store, on `/metrics` and on its `/probe` answers.
    Registry(RegistryFamily),
    /// The exporter's own, through prometheus-client (`/metrics` only).
    Own(Own),
    /// The process collector's (`/metrics` only).
    Process(Figure),
    /// A probe answer's own, as blackbox_exporter's (`/probe` only).
    Probe(ProbeSeries),
}

/// The exporter's own series, registered with prometheus-client in [`Metrics::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    CheckInfo,
    ReloadSuccessful,
    ReloadSuccessTime,
    LocalResourceExhausted,
    ShardOrdinal,
    TotalShards,
    BuildInfo,
}

/// A `/probe` answer's own series, written by [`encode_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeSeries {
    Success,
    Duration,
}

/// Which endpoint serves a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedOn {
    /// `/metrics` only: the exporter's own series.
    Metrics,
    /// `/probe` only: `probe_*`, as blackbox_exporter's.
    Probe,
    /// Both: a registry's series.
    Both,
}

impl ServedOn {
    pub fn as_str(self) -> &'static str {
        match self {
            ServedOn::Metrics => "/metrics",
            ServedOn::Probe => "/probe",
            ServedOn::Both => "/metrics, /probe",
        }
    }
}

impl MetricDoc {
    /// Decided by the metric's writer: a registry's series are served on both endpoints,
    /// the exporter's own and the process' on `/metrics`, a probe's on `/probe`.
    pub fn served_on(&self) -> ServedOn {
        match self.writer {
            Writer::Registry(_) => ServedOn::Both,
            Writer::Own(_) | Writer::Process(_) => ServedOn::Metrics,
            Writer::Probe(_) => ServedOn::Probe,
        }
    }

    /// The family's name as prometheus-client registers it: a counter without `_total`,
    /// which it appends itself.
    fn registered_name(&self) -> &'static str {
        match self.kind {
            "counter" => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        }
    }
}

/// Every metric, in the order they are served. A test keeps docs/metrics.md equal to it.
pub const METRICS: &[MetricDoc] = &[
    MetricDoc {
        name: "oci_registry_check_status",
        kind: "gauge",
        labels: &["registry", "check", "status"],
        help: "State set of the last result: one series per status (pass, info, warn, fail, skip), exactly one is 1",
        writer: Writer::Registry(RegistryFamily::Status),
    },
    MetricDoc {
        name: "oci_registry_check_reason",
        kind: "gauge",
        labels: &["registry", "check", "reason"],
        help: "1 for the reason of the last result; only the current reason has a series",
        writer: Writer::Registry(RegistryFamily::Reason),
    },
    MetricDoc {
        name: "oci_registry_check_duration_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "How long the last run of the check took, all its requests included",
        writer: Writer::Registry(RegistryFamily::Duration),
    },
    MetricDoc {
        name: "oci_registry_check_http_status_code",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "HTTP status code that decided the last result; 0 when no response came",
        writer: Writer::Registry(RegistryFamily::HttpStatus),
    },
    MetricDoc {
        name: "oci_registry_check_last_run_timestamp_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "Unix time at which the last run of the check finished",
        writer: Writer::Registry(RegistryFamily::LastRun),
    },
    MetricDoc {
        name: "oci_registry_check_interval_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Configured interval between two rounds of the registry's checks, for staleness alerts",
        writer: Writer::Registry(RegistryFamily::Interval),
    },
    MetricDoc {
        name: "oci_registry_check_runs_total",
        kind: "counter",
        labels: &["registry", "check", "status"],
        help: "Check runs since the exporter started, by resulting status",
        writer: Writer::Registry(RegistryFamily::Runs),
    },
    MetricDoc {
        name: "oci_registry_request_duration_seconds",
        kind: "histogram",
        labels: &["registry"],
        help: "Duration of every HTTP request the checks of a registry made, token requests included (per check: oci_registry_check_duration_seconds)",
        writer: Writer::Registry(RegistryFamily::Requests),
    },
    MetricDoc {
        name: "oci_registry_distribution_api_version_info",
        kind: "gauge",
        labels: &["registry", "version"],
        help: "1 with the registry's Docker-/OCI-Distribution-API-Version header as the version label",
        writer: Writer::Registry(RegistryFamily::ApiVersion),
    },
    MetricDoc {
        name: "oci_registry_auth_method_info",
        kind: "gauge",
        labels: &["registry", "method"],
        help: "1 with the authentication method the credentials check found (anonymous, basic, bearer, docker_config, credential_helper, identity_token)",
        writer: Writer::Registry(RegistryFamily::AuthMethod),
    },
    MetricDoc {
        name: "oci_registry_token_request_duration_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Duration of the last token exchange with the registry's token endpoint",
        writer: Writer::Registry(RegistryFamily::TokenDuration),
    },
    MetricDoc {
        name: "oci_registry_token_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time at which the last token obtained expires, when the token endpoint says",
        writer: Writer::Registry(RegistryFamily::TokenExpiry),
    },
    MetricDoc {
        name: "oci_registry_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the registry's TLS certificate chain",
        writer: Writer::Registry(RegistryFamily::TlsExpiry),
    },
    MetricDoc {
        name: "oci_registry_token_endpoint_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the token endpoint's TLS certificate chain",
        writer: Writer::Registry(RegistryFamily::TokenTlsExpiry),
    },
    MetricDoc {
        name: "oci_registry_rate_limit_limit",
        kind: "gauge",
        labels: &["registry"],
        help: "Request budget the registry advertises in RateLimit-Limit",
        writer: Writer::Registry(RegistryFamily::RateLimit),
    },
    MetricDoc {
        name: "oci_registry_rate_limit_remaining",
        kind: "gauge",
        labels: &["registry"],
        help: "Requests left in the current window, from RateLimit-Remaining",
        writer: Writer::Registry(RegistryFamily::RateRemaining),
    },
    MetricDoc {
        name: "oci_registry_push_upload_cancelled",
        kind: "gauge",
        labels: &["registry"],
        help: "1 when the push check cancelled the upload session it opened, 0 when the registry refused the cancel",
        writer: Writer::Registry(RegistryFamily::UploadCancelled),
    },
    MetricDoc {
        name: "oci_registry_capability_status",
        kind: "gauge",
        labels: &["registry", "capability", "status"],
        help: "State set per capability (api_version, referrers, chunked_upload, cross_repo_mount, delete): one series per status (supported, unsupported, denied, error), exactly one is 1",
        writer: Writer::Registry(RegistryFamily::Capability),
    },
    MetricDoc {
        name: "oci_registry_capability_score",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of supported capabilities, 0 to 5",
        writer: Writer::Registry(RegistryFamily::CapabilityScore),
    },
    MetricDoc {
        name: "oci_registry_referrers_count",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of referrers of the test image, from the referrers API",
        writer: Writer::Registry(RegistryFamily::Referrers),
    },
    MetricDoc {
        name: "oci_registry_implementation_info",
        kind: "gauge",
        labels: &["registry", "implementation"],
        help: "1 with the product the registry runs, recognised from its answers (distribution, docker_hub, ghcr, harbor, quay, gitlab, ecr, ecr_public, artifact_registry, acr, artifactory, nexus, zot, unknown); it words advice, never a verdict",
        writer: Writer::Registry(RegistryFamily::Implementation),
    },
    MetricDoc {
        name: "oci_registry_pull_blob_duration_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "How long the pull check's download of the test image's config blob took, redirect to a storage or CDN host included",
        writer: Writer::Registry(RegistryFamily::BlobDuration),
    },
    MetricDoc {
        name: "oci_registry_check_info",
        kind: "gauge",
        labels: &["check", "check_id", "severity", "category", "runbook_url"],
        help: "1 per check with its id, default severity, category and runbook, to join alerts and dashboards on",
        writer: Writer::Own(Own::CheckInfo),
    },
    MetricDoc {
        name: "oci_registry_exporter_config_last_reload_successful",
        kind: "gauge",
        labels: &[],
        help: "1 when the last configuration load or reload succeeded, 0 when it was refused",
        writer: Writer::Own(Own::ReloadSuccessful),
    },
    MetricDoc {
        name: "oci_registry_exporter_config_last_reload_success_timestamp_seconds",
        kind: "gauge",
        labels: &[],
        help: "Unix time of the last successful configuration load or reload",
        writer: Writer::Own(Own::ReloadSuccessTime),
    },
    MetricDoc {
        name: "oci_registry_exporter_local_resource_exhausted_total",
        kind: "counter",
        labels: &[],
        help: "Check runs that failed because the exporter itself ran out of a local resource (file descriptors), not because of a registry: raise LimitNOFILE",
        writer: Writer::Own(Own::LocalResourceExhausted),
    },
    MetricDoc {
        name: "oci_registry_exporter_shard_ordinal",
        kind: "gauge",
        labels: &[],
        help: "This replica's shard (--shard): it checks the registries whose name hashes to it; 0 when not sharded",
        writer: Writer::Own(Own::ShardOrdinal),
    },
    MetricDoc {
        name: "oci_registry_exporter_total_shards",
        kind: "gauge",
        labels: &[],
        help: "How many shards the registries are split across (--total-shards); 1 when not sharded",
        writer: Writer::Own(Own::TotalShards),
    },
    MetricDoc {
        name: "oci_registry_exporter_build_info",
        kind: "gauge",
        labels: &["version", "revision"],
        help: "1 with the exporter's version and source revision",
        writer: Writer::Own(Own::BuildInfo),
    },
    MetricDoc {
        name: "process_cpu_seconds_total",
        kind: "counter",
        labels: &[],
        help: "Total user and system CPU time spent in seconds",
        writer: Writer::Process(Figure::CpuSeconds),
    },
    MetricDoc {
        name: "process_open_fds",
        kind: "gauge",
        labels: &[],
        help: "Number of open file descriptors",
        writer: Writer::Process(Figure::OpenFds),
    },
    MetricDoc {
        name: "process_max_fds",
        kind: "gauge",
        labels: &[],
        help: "Maximum number of open file descriptors (the soft limit)",
        writer: Writer::Process(Figure::MaxFds),
    },
    MetricDoc {
        name: "process_virtual_memory_bytes",
        kind: "gauge",
        labels: &[],
        help: "Virtual memory size in bytes",
        writer: Writer::Process(Figure::VirtualMemoryBytes),
    },
    MetricDoc {
        name: "process_resident_memory_bytes",
        kind: "gauge",
        labels: &[],
        help: "Resident memory size in bytes",
        writer: Writer::Process(Figure::ResidentMemoryBytes),
    },
    MetricDoc {
        name: "process_start_time_seconds",
        kind: "gauge",
        labels: &[],
        help: "Start time of the process since unix epoch in seconds",
        writer: Writer::Process(Figure::StartTimeSeconds),
    },
    MetricDoc {
        name: "probe_success",
        kind: "gauge",
        labels: &[],
        help: "1 unless a check the probe ran failed (a warn or info is not a failure), 0 when one failed or no answer came within the scrape timeout",
        writer: Writer::Probe(ProbeSeries::Success),
    },
    MetricDoc {
        name: "probe_duration_seconds",
        kind: "gauge",
        labels: &[],
        help: "How long the probe took, from the request to the answer",
        writer: Writer::Probe(ProbeSeries::Duration),
    },
];

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

/// The size of a streamed body's pieces. Below glibc's default mmap threshold (128 KiB),
/// so a piece's memory comes from the heap and is reused by the next, instead of being
/// mapped and faulted in afresh.
pub const CHUNK: usize = 64 * 1024;

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

/// `# HELP` and `# TYPE` of a family. OpenMetrics names a counter's family without
/// `_total` and escapes `"` in help; the classic format does neither.
fn header(out: &mut String, doc: &MetricDoc, format: Format) {
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

fn push_f64(out: &mut String, v: f64) {
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

fn push_u64(out: &mut String, v: u64) {
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
enum RegistryFamily {
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
    fn has_series(self, s: &Slots) -> bool {
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
    fn write(self, out: &mut String, name: &str, label: &str, s: &Slots) {
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
const REQUEST_BUCKET_LABELS: [&str; REQUEST_BUCKETS.len()] = [
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
fn registry_label(name: &str) -> String {
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
fn encode_registries(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{AuthMethod, CheckKind, CheckResult, Reason, Status};

    fn store_with(results: &[(&str, CheckResult)]) -> Store {
        let store = Store::new(10);
        for (registry, r) in results {
            store.put(registry, r.clone());
        }
        store
    }

    /// `n` registries, each with a registry-check result: a text of many pieces.
    fn many_registries(n: usize) -> Store {
        let store = Store::new(0);
        for i in 0..n {
            let r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "ok");
            store.put(&format!("registry-{i}"), r);
        }
        store
    }

    #[test]
    fn streamed_pieces_join_to_the_whole_text_and_stay_bounded() {
        let store = many_registries(3_000);
        let m = Metrics::new("https://example.invalid/runbooks");
        for format in [Format::Classic, Format::OpenMetrics] {
            let mut pieces = Vec::new();
            assert!(m.encode_chunks(&store, format, &mut |p| {
                pieces.push(p);
                true
            }));
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let whole = m.encode(&store, format);
            // The exporter's own series hold the process' CPU time, which moves: compare
            // the registries' part, and that both end alike.
            let cut = |t: &str| t[..t.find("# HELP oci_registry_check_info").unwrap()].to_string();
            let joined = String::from_utf8(joined).unwrap();
            assert_eq!(cut(&joined), cut(&whole), "{format:?}");
            assert!(pieces.len() > 10, "{} pieces", pieces.len());
            for p in &pieces[..pieces.len() - 1] {
                assert!(
                    (CHUNK - CHUNK_SLACK..=CHUNK).contains(&p.len()),
                    "a piece of {} bytes",
                    p.len()
                );
            }
        }
    }

    #[test]
    fn a_refused_piece_stops_the_encoder() {
        let store = many_registries(3_000);
        let m = Metrics::new("https://example.invalid/runbooks");
        let mut offered = 0;
        let whole = m.encode_chunks(&store, Format::Classic, &mut |_| {
            offered += 1;
            offered < 3
        });
        assert!(!whole);
        assert_eq!(
            offered, 3,
            "the encoder went on after its piece was refused"
        );
    }

    #[test]
    fn a_family_is_skipped_only_when_it_has_no_series() {
        use crate::outcome::{Capability, CapabilityStatus, RateLimit};
        let mut rich = CheckResult::new(CheckKind::Capabilities, Status::Warn, Reason::Ok, "x");
        rich.api_version = Some("registry/2.0".into());
        rich.facts.auth_method = Some(AuthMethod::Bearer);
        rich.facts.token_request_duration = Some(Duration::from_millis(3));
        rich.facts.token_expiry = Some(SystemTime::now());
        rich.facts.tls_certificate_expiry = Some(SystemTime::now());
        rich.facts.token_endpoint_tls_certificate_expiry = Some(SystemTime::now());
        rich.facts.rate_limit = Some(RateLimit {
            limit: 100.0,
            remaining: 5.0,
        });
        rich.facts.upload_cancelled = Some(true);
        rich.facts.capabilities = vec![(Capability::ALL[0], CapabilityStatus::ALL[0])];
        rich.facts.referrers_count = Some(2);
        rich.facts.blob_duration = Some(Duration::from_millis(4));
        rich.facts.implementation = Some(crate::outcome::Recognition {
            implementation: crate::outcome::Implementation::Harbor,
            evidence: "x",
        });
        let bare = CheckResult::new(CheckKind::Registry, Status::Fail, Reason::Timeout, "x");
        let store = store_with(&[("rich", rich), ("bare", bare)]);
        let mut seen = 0;
        for e in store.entries() {
            let slots = e.lock();
            for d in METRICS {
                let Writer::Registry(family) = d.writer else {
                    continue;
                };
                let mut text = String::new();
                family.write(&mut text, d.name, &registry_label(&e.name), &slots);
                assert_eq!(
                    !text.is_empty(),
                    family.has_series(&slots),
                    "{} of {}",
                    d.name,
                    e.name
                );
                seen += usize::from(!text.is_empty());
            }
        }
        assert!(seen > 25, "the samples cover too few families: {seen}");
    }

    #[test]
    fn classic_names_counters_with_total_and_drops_eof() {
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let r = CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x");
        let store = store_with(&[("hub", r)]);
        let om = m.encode(&store, Format::OpenMetrics);
        assert!(om.contains("# TYPE oci_registry_check_runs counter"));
        assert!(om.contains("# HELP oci_registry_check_runs "));
        assert!(
            om.contains(
                "oci_registry_check_runs_total{registry=\"hub\",check=\"pull\",status=\"fail\"} 1"
            ),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
        assert_eq!(om.matches("# EOF").count(), 1);
        let classic = m.encode(&store, Format::Classic);
        assert!(classic.contains("# TYPE oci_registry_check_runs_total counter"));
        assert!(classic.contains("# HELP oci_registry_check_runs_total "));
        assert!(
            classic.contains("# TYPE oci_registry_exporter_local_resource_exhausted_total counter")
        );
        assert!(classic.contains(
            "oci_registry_check_runs_total{registry=\"hub\",check=\"pull\",status=\"fail\"} 1"
        ));
        assert!(!classic.contains("# EOF"));
    }

    // Issue 12 (8): running out of descriptors is the exporter's own problem, so it is
    // counted at the exporter level as well as reported on the check.
    #[test]
    fn local_resource_exhaustion_is_counted_for_the_exporter() {
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let store = Store::new(0);
        let line = "oci_registry_exporter_local_resource_exhausted_total ";
        assert!(
            m.encode(&store, Format::Classic)
                .contains(&format!("{line}0"))
        );
        for reason in [
            Reason::LocalResourceExhausted,
            Reason::LocalResourceExhausted,
            Reason::Timeout,
        ] {
            m.note(&CheckResult::new(
                CheckKind::Pull,
                Status::Fail,
                reason,
                "x",
            ));
        }
        assert!(
            m.encode(&store, Format::Classic)
                .contains(&format!("{line}2"))
        );
    }

    #[test]
    fn state_set_and_single_reason() {
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let store = store_with(&[
            (
                "hub",
                CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x"),
            ),
            (
                "hub",
                CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "x"),
            ),
        ]);
        let text = m.encode(&store, Format::Classic);
        let status_ones = text
            .lines()
            .filter(|l| l.starts_with("oci_registry_check_status{") && l.ends_with(" 1"))
            .count();
        let status_all = text
            .lines()
            .filter(|l| l.starts_with("oci_registry_check_status{"))
            .count();
        assert_eq!((status_ones, status_all), (1, 5));
        let reasons: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("oci_registry_check_reason{"))
            .collect();
        assert_eq!(
            reasons,
            vec!["oci_registry_check_reason{registry=\"hub\",check=\"pull\",reason=\"ok\"} 1"]
        );
        store.retain(&[]);
        let text = m.encode(&store, Format::Classic);
        assert!(!text.contains("registry=\"hub\""), "{text}");
    }

    #[test]
    fn histogram_is_per_registry_with_cumulative_buckets() {
        let mut r = CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "x");
        for ms in [3, 300] {
            r.requests.push(crate::outcome::RequestRecord {
                method: "GET".into(),
                path: "/v2/".into(),
                status: Some(200),
                duration: Duration::from_millis(ms),
                auth: crate::outcome::AuthUsed::None,
                note: None,
                headers: Vec::new(),
            });
        }
        let store = store_with(&[("hub", r)]);
        let text = encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
        for expected in [
            "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.005\"} 1\n",
            "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.25\"} 1\n",
            "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.5\"} 2\n",
            "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"+Inf\"} 2\n",
            "oci_registry_request_duration_seconds_count{registry=\"hub\"} 2\n",
            "oci_registry_request_duration_seconds_sum{registry=\"hub\"} 0.303\n",
            "probe_success 1\n",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert!(!text.contains("oci_registry_exporter_"), "{text}");
    }

    // Issue 13: at most 100 series per registry with all six checks, healthy, as the
    // benchmark's steady state has them (every check passed once, a request each).
    #[test]
    fn a_registry_with_all_six_checks_stays_within_the_series_budget() {
        let store = Store::new(0);
        for &kind in CheckKind::ALL {
            let mut r = CheckResult::new(kind, Status::Pass, Reason::Ok, "x").with_http_status(200);
            r.api_version = Some("registry/2.0".into());
            r.facts.implementation = Some(crate::outcome::Recognition {
                implementation: crate::outcome::Implementation::Distribution,
                evidence: "x",
            });
            match kind {
                CheckKind::Credentials => r.facts.auth_method = Some(AuthMethod::Anonymous),
                CheckKind::Push => r.facts.upload_cancelled = Some(true),
                CheckKind::Capabilities => {
                    r.facts.capabilities = Capability::ALL
                        .iter()
                        .map(|&c| (c, CapabilityStatus::Supported))
                        .collect()
                }
                CheckKind::Referrers => r.facts.referrers_count = Some(0),
                CheckKind::Pull => r.facts.blob_duration = Some(Duration::from_millis(4)),
                _ => {}
            }
            store.put("hub", r);
        }
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let text = m.encode(&store, Format::Classic);
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("registry=\"hub\""))
            .count();
        assert!(series <= 100, "{series} series:\n{text}");
        // Every check is there, and the blob download and the implementation (issue 21):
        // the budget was not met by leaving something out.
        for family in [
            "oci_registry_pull_blob_duration_seconds{",
            "oci_registry_implementation_info{",
        ] {
            assert!(text.contains(family), "{family}");
        }
        for &kind in CheckKind::ALL {
            let needle = format!("check=\"{}\"", kind.short_name());
            assert!(text.contains(&needle), "{needle}");
        }
    }

    /// The labels a writer writes are the ones its declaration (and docs/metrics.md) lists,
    /// in that order (a histogram's buckets add `le`).
    #[test]
    fn every_series_has_the_declared_labels() {
        use crate::outcome::{Capability, CapabilityStatus, RateLimit};
        let mut r = CheckResult::new(CheckKind::Pull, Status::Warn, Reason::Ok, "x");
        r.api_version = Some("registry/2.0".into());
        r.facts.auth_method = Some(AuthMethod::Bearer);
        r.facts.token_request_duration = Some(Duration::from_millis(3));
        r.facts.token_expiry = Some(SystemTime::now());
        r.facts.tls_certificate_expiry = Some(SystemTime::now());
        r.facts.token_endpoint_tls_certificate_expiry = Some(SystemTime::now());
        r.facts.rate_limit = Some(RateLimit {
            limit: 100.0,
            remaining: 5.0,
        });
        r.facts.upload_cancelled = Some(true);
        r.facts.capabilities = vec![(Capability::ALL[0], CapabilityStatus::ALL[0])];
        r.facts.referrers_count = Some(2);
        r.facts.blob_duration = Some(Duration::from_millis(4));
        r.facts.implementation = Some(crate::outcome::Recognition {
            implementation: crate::outcome::Implementation::Harbor,
            evidence: "x",
        });
        r.requests.push(crate::outcome::RequestRecord {
            method: "GET".into(),
            path: "/v2/".into(),
            status: Some(200),
            duration: Duration::from_millis(3),
            auth: crate::outcome::AuthUsed::None,
            note: None,
            headers: Vec::new(),
        });
        let store = store_with(&[("hub", r)]);
        store.entries()[0].lock().interval = Some(60.0);
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let text = m.encode(&store, Format::Classic)
            + &encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
        let mut seen = HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let series = line.split(['{', ' ']).next().unwrap();
            let d = METRICS
                .iter()
                .find(|d| {
                    series == d.name
                        || d.kind == "histogram"
                            && ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|s| series.strip_prefix(d.name) == Some(s))
                })
                .unwrap_or_else(|| panic!("{series} is not declared"));
            let keys: Vec<&str> = match line.split_once('{') {
                Some((_, rest)) => rest
                    .split("\",")
                    .filter_map(|kv| kv.split_once("=\"").map(|(k, _)| k))
                    .filter(|&k| k != "le")
                    .collect(),
                None => Vec::new(),
            };
            assert_eq!(keys, d.labels, "{line}");
            seen.insert(d.name);
        }
        // The process' series depend on /proc (and max_fds on a limit): not required here.
        for d in METRICS
            .iter()
            .filter(|d| !matches!(d.writer, Writer::Process(_)))
        {
            assert!(seen.contains(d.name), "{} wrote no series", d.name);
        }
    }

    #[test]
    fn bucket_labels_are_the_buckets() {
        for (label, bound) in REQUEST_BUCKET_LABELS.iter().zip(REQUEST_BUCKETS) {
            assert_eq!(label.parse::<f64>().unwrap(), bound);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(registry_label("a\"b\\c\nd"), "registry=\"a\\\"b\\\\c\\nd\"");
        let mut r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "x");
        r.api_version = Some("registry/2.0\"x".into());
        let store = store_with(&[("hub", r)]);
        let text = encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
        assert!(
            text.contains(
                "oci_registry_distribution_api_version_info{registry=\"hub\",version=\"registry/2.0\\\"x\"} 1\n"
            ),
            "{text}"
        );
    }

    /// A writer named by two declarations would write its series twice, under two names;
    /// a process figure no declaration names would never be served.
    #[test]
    fn each_writer_and_name_is_declared_once() {
        for (i, a) in METRICS.iter().enumerate() {
            for b in &METRICS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.writer, b.writer, "{} and {}", a.name, b.name);
            }
        }
        for &figure in Figure::ALL {
            assert!(
                METRICS.iter().any(|d| d.writer == Writer::Process(figure)),
                "{figure:?} is not declared in METRICS"
            );
        }
    }

    #[test]
    fn negotiation_follows_accept() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
    }
}
