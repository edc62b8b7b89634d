//! Every metric's declaration: name, type, labels, help and its writer, in [`METRICS`].
//!
//! Owns the list of metrics, a contract with the dashboards, the alert rules and
//! docs/metrics.md (generated from it). Each declaration names how its series are written
//! ([`Writer`]): the writer's `match` is exhaustive, so a metric without a writer does not
//! compile, and the endpoint that serves it follows from the writer. It writes nothing
//! itself: `exposition.rs` writes the registries' families, `mod.rs` the exporter's own and
//! a probe's.

use super::exposition::{CheckFamily, FactFamily, RegistryFamily};
use crate::process::Figure;

/// One metric's documentation: the source of the help text and of docs/metrics.md.
pub struct MetricDoc {
    /// The name as scraped (counters with their `_total`).
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// How its series are written, which also decides where they are served.
    pub(super) writer: Writer,
}

/// How a metric's series are written. Each declaration in [`METRICS`] names its writer,
/// so no metric can lack one, and each writer's `match` is exhaustive; a writer no
/// declaration names is dead code, which the lints refuse. No name is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// A registry's series, from the store, on `/metrics` and on its `/probe` answers.
    Registry(RegistryFamily),
    /// The exporter's own, through prometheus-client (`/metrics` only).
    Own(Own),
    /// The process collector's (`/metrics` only).
    Process(Figure),
    /// A probe answer's own, as blackbox_exporter's (`/probe` only).
    Probe(ProbeSeries),
}

/// The exporter's own series, registered with prometheus-client in [`super::Metrics::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Own {
    CheckInfo,
    ReloadSuccessful,
    ReloadSuccessTime,
    LocalResourceExhausted,
    ShardOrdinal,
    TotalShards,
    BuildInfo,
}

/// A `/probe` answer's own series, written by [`super::encode_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeSeries {
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
    pub(super) fn registered_name(&self) -> &'static str {
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
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Status)),
    },
    MetricDoc {
        name: "oci_registry_check_reason",
        kind: "gauge",
        labels: &["registry", "check", "reason"],
        help: "1 for the reason of the last result; only the current reason has a series",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Reason)),
    },
    MetricDoc {
        name: "oci_registry_check_duration_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "How long the last run of the check took, all its requests included",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Duration)),
    },
    MetricDoc {
        name: "oci_registry_check_http_status_code",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "HTTP status code that decided the last result; 0 when no response came",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::HttpStatus)),
    },
    MetricDoc {
        name: "oci_registry_check_last_run_timestamp_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "Unix time at which the last run of the check finished",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::LastRun)),
    },
    MetricDoc {
        name: "oci_registry_check_interval_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Configured interval between two rounds of the registry's checks, for staleness alerts",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Interval)),
    },
    MetricDoc {
        name: "oci_registry_check_runs_total",
        kind: "counter",
        labels: &["registry", "check", "status"],
        help: "Check runs since the exporter started, by resulting status",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Runs)),
    },
    MetricDoc {
        name: "oci_registry_request_duration_seconds",
        kind: "histogram",
        labels: &["registry"],
        help: "Duration of every HTTP request the checks of a registry made, token requests included (per check: oci_registry_check_duration_seconds)",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Requests)),
    },
    MetricDoc {
        name: "oci_registry_distribution_api_version_info",
        kind: "gauge",
        labels: &["registry", "version"],
        help: "1 with the registry's Docker-/OCI-Distribution-API-Version header as the version label",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::ApiVersion)),
    },
    MetricDoc {
        name: "oci_registry_auth_method_info",
        kind: "gauge",
        labels: &["registry", "method"],
        help: "1 with the authentication method the credentials check found (anonymous, basic, bearer, docker_config, credential_helper, identity_token)",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::AuthMethod)),
    },
    MetricDoc {
        name: "oci_registry_token_request_duration_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Duration of the last token exchange with the registry's token endpoint",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::TokenDuration)),
    },
    MetricDoc {
        name: "oci_registry_token_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time at which the last token obtained expires, when the token endpoint says",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::TokenExpiry)),
    },
    MetricDoc {
        name: "oci_registry_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the registry's TLS certificate chain",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::TlsExpiry)),
    },
    MetricDoc {
        name: "oci_registry_token_endpoint_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the token endpoint's TLS certificate chain",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::TokenTlsExpiry)),
    },
    MetricDoc {
        name: "oci_registry_rate_limit_limit",
        kind: "gauge",
        labels: &["registry"],
        help: "Request budget the registry advertises in RateLimit-Limit",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::RateLimit)),
    },
    MetricDoc {
        name: "oci_registry_rate_limit_remaining",
        kind: "gauge",
        labels: &["registry"],
        help: "Requests left in the current window, from RateLimit-Remaining",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::RateRemaining)),
    },
    MetricDoc {
        name: "oci_registry_push_upload_cancelled",
        kind: "gauge",
        labels: &["registry"],
        help: "1 when the push check cancelled the upload session it opened, 0 when the registry refused the cancel",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::UploadCancelled)),
    },
    MetricDoc {
        name: "oci_registry_capability_status",
        kind: "gauge",
        labels: &["registry", "capability", "status"],
        help: "State set per capability (api_version, referrers, chunked_upload, cross_repo_mount, delete): one series per status (supported, unsupported, denied, error), exactly one is 1",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::Capability)),
    },
    MetricDoc {
        name: "oci_registry_capability_score",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of supported capabilities, 0 to 5",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::CapabilityScore)),
    },
    MetricDoc {
        name: "oci_registry_referrers_count",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of referrers of the test image, from the referrers API",
        writer: Writer::Registry(RegistryFamily::Facts(FactFamily::Referrers)),
    },
    MetricDoc {
        name: "oci_registry_implementation_info",
        kind: "gauge",
        labels: &["registry", "implementation"],
        help: "1 with the product the registry runs, recognised from its answers (distribution, docker_hub, ghcr, harbor, quay, gitlab, ecr, ecr_public, artifact_registry, acr, artifactory, nexus, zot, unknown); it words advice, never a verdict",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::Implementation)),
    },
    MetricDoc {
        name: "oci_registry_pull_blob_duration_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "How long the pull check's download of the test image's config blob took, redirect to a storage or CDN host included",
        writer: Writer::Registry(RegistryFamily::Checks(CheckFamily::BlobDuration)),
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
