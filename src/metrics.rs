//! Every metric the exporter serves, declared once, and the one place results become metrics.
//!
//! Owns the metric names (a contract with dashboards and alerts), their typed label sets,
//! [`Metrics::record`] (the only function that turns a [`CheckResult`] into series), and
//! the two text formats: OpenMetrics 1.0 (prometheus-client's own) and the classic 0.0.4
//! format, derived from it for scrapers that do not ask for OpenMetrics. It does not run
//! checks or decide statuses.
//!
//! Two sets of series: `/metrics` ([`Metrics::new`]) serves the registries' series and the
//! exporter's own; a `/probe` answer ([`Metrics::for_probe`]) serves one registry's series
//! and `probe_success`/`probe_duration_seconds`, never the exporter's own, so that alerts
//! on the exporter never fire from a Probe job. [`MetricDoc::served_on`] says which.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::checks::{
    AuthMethod, Capability, CapabilityStatus, CheckKind, CheckResult, Facts, Reason, Status,
};
use crate::config::Target;

/// One metric's documentation: the source of the help text and of docs/metrics.md.
pub struct MetricDoc {
    /// The name as scraped (counters with their `_total`).
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
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
    /// Decided by the name, so that a new metric lands on the right endpoint without more
    /// bookkeeping: `oci_registry_exporter_*` and the check catalogue are the exporter's
    /// own (`/metrics` only), `probe_*` belongs to a probe answer, the rest to a registry.
    pub fn served_on(&self) -> ServedOn {
        if self.name.starts_with("probe_") {
            ServedOn::Probe
        } else if self.name.starts_with("oci_registry_exporter_")
            || self.name == "oci_registry_check_info"
        {
            ServedOn::Metrics
        } else {
            ServedOn::Both
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
    },
    MetricDoc {
        name: "oci_registry_check_reason",
        kind: "gauge",
        labels: &["registry", "check", "reason"],
        help: "1 for the reason of the last result; only the current reason has a series",
    },
    MetricDoc {
        name: "oci_registry_check_duration_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "How long the last run of the check took, all its requests included",
    },
    MetricDoc {
        name: "oci_registry_check_http_status_code",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "HTTP status code that decided the last result; 0 when no response came",
    },
    MetricDoc {
        name: "oci_registry_check_last_run_timestamp_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "Unix time at which the last run of the check finished",
    },
    MetricDoc {
        name: "oci_registry_check_interval_seconds",
        kind: "gauge",
        labels: &["registry", "check"],
        help: "Configured interval between two runs of the check, for staleness alerts",
    },
    MetricDoc {
        name: "oci_registry_check_runs_total",
        kind: "counter",
        labels: &["registry", "check", "status"],
        help: "Check runs since the exporter started, by resulting status",
    },
    MetricDoc {
        name: "oci_registry_request_duration_seconds",
        kind: "histogram",
        labels: &["registry", "check"],
        help: "Duration of every HTTP request a check made, token requests included",
    },
    MetricDoc {
        name: "oci_registry_distribution_api_version_info",
        kind: "gauge",
        labels: &["registry", "version"],
        help: "1 with the registry's Docker-/OCI-Distribution-API-Version header as the version label",
    },
    MetricDoc {
        name: "oci_registry_auth_method_info",
        kind: "gauge",
        labels: &["registry", "method"],
        help: "1 with the authentication method the credentials check found (anonymous, basic, bearer, docker_config, credential_helper, identity_token)",
    },
    MetricDoc {
        name: "oci_registry_token_request_duration_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Duration of the last token exchange with the registry's token endpoint",
    },
    MetricDoc {
        name: "oci_registry_token_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time at which the last token obtained expires, when the token endpoint says",
    },
    MetricDoc {
        name: "oci_registry_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the registry's TLS certificate chain",
    },
    MetricDoc {
        name: "oci_registry_token_endpoint_tls_certificate_expiry_timestamp_seconds",
        kind: "gauge",
        labels: &["registry"],
        help: "Unix time of the earliest notAfter in the token endpoint's TLS certificate chain",
    },
    MetricDoc {
        name: "oci_registry_rate_limit_limit",
        kind: "gauge",
        labels: &["registry"],
        help: "Request budget the registry advertises in RateLimit-Limit",
    },
    MetricDoc {
        name: "oci_registry_rate_limit_remaining",
        kind: "gauge",
        labels: &["registry"],
        help: "Requests left in the current window, from RateLimit-Remaining",
    },
    MetricDoc {
        name: "oci_registry_push_upload_cancelled",
        kind: "gauge",
        labels: &["registry"],
        help: "1 when the push check cancelled the upload session it opened, 0 when the registry refused the cancel",
    },
    MetricDoc {
        name: "oci_registry_capability_status",
        kind: "gauge",
        labels: &["registry", "capability", "status"],
        help: "State set per capability (api_version, referrers, chunked_upload, cross_repo_mount, delete): one series per status (supported, unsupported, denied, error), exactly one is 1",
    },
    MetricDoc {
        name: "oci_registry_capability_score",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of supported capabilities, 0 to 5",
    },
    MetricDoc {
        name: "oci_registry_referrers_count",
        kind: "gauge",
        labels: &["registry"],
        help: "Number of referrers of the test image, from the referrers API",
    },
    MetricDoc {
        name: "oci_registry_check_info",
        kind: "gauge",
        labels: &["check", "check_id", "severity", "category", "runbook_url"],
        help: "1 per check with its id, default severity, category and runbook, to join alerts and dashboards on",
    },
    MetricDoc {
        name: "oci_registry_exporter_config_last_reload_successful",
        kind: "gauge",
        labels: &[],
        help: "1 when the last configuration load or reload succeeded, 0 when it was refused",
    },
    MetricDoc {
        name: "oci_registry_exporter_config_last_reload_success_timestamp_seconds",
        kind: "gauge",
        labels: &[],
        help: "Unix time of the last successful configuration load or reload",
    },
    MetricDoc {
        name: "oci_registry_exporter_local_resource_exhausted_total",
        kind: "counter",
        labels: &[],
        help: "Check runs that failed because the exporter itself ran out of a local resource (file descriptors), not because of a registry: raise LimitNOFILE",
    },
    MetricDoc {
        name: "oci_registry_exporter_build_info",
        kind: "gauge",
        labels: &["version", "revision"],
        help: "1 with the exporter's version and source revision",
    },
    MetricDoc {
        name: "probe_success",
        kind: "gauge",
        labels: &[],
        help: "1 when every check the probe ran passed or was info or skip, 0 otherwise (a fail or warn, or no answer within the scrape timeout)",
    },
    MetricDoc {
        name: "probe_duration_seconds",
        kind: "gauge",
        labels: &[],
        help: "How long the probe took, from the request to the answer",
    },
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    registry: String,
    check: CheckKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    registry: String,
    check: CheckKind,
    status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    registry: String,
    check: CheckKind,
    reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    registry: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    registry: String,
    method: AuthMethod,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    registry: String,
    capability: Capability,
    status: CapabilityStatus,
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

/// Buckets for request durations: 5 ms to 10 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

/// The exporter's series. One instance backs `/metrics`; `/probe` builds a fresh one with
/// [`Metrics::for_probe`].
pub struct Metrics {
    registry: Registry,
    status: Family<StatusLabels, Gauge>,
    reason: Family<ReasonLabels, Gauge>,
    duration: Family<CheckLabels, FloatGauge>,
    http_status: Family<CheckLabels, Gauge>,
    last_run: Family<CheckLabels, FloatGauge>,
    interval: Family<CheckLabels, FloatGauge>,
    runs: Family<StatusLabels, Counter>,
    requests: Family<CheckLabels, Histogram, fn() -> Histogram>,
    api_version: Family<VersionLabels, Gauge>,
    auth_method: Family<MethodLabels, Gauge>,
    token_duration: Family<RegistryLabels, FloatGauge>,
    token_expiry: Family<RegistryLabels, FloatGauge>,
    tls_expiry: Family<RegistryLabels, FloatGauge>,
    token_tls_expiry: Family<RegistryLabels, FloatGauge>,
    rate_limit: Family<RegistryLabels, FloatGauge>,
    rate_remaining: Family<RegistryLabels, FloatGauge>,
    upload_cancelled: Family<RegistryLabels, Gauge>,
    capability: Family<CapabilityLabels, Gauge>,
    capability_score: Family<RegistryLabels, Gauge>,
    referrers: Family<RegistryLabels, Gauge>,
    reload_ok: Gauge,
    /// Runs that ended `local_resource_exhausted`: the exporter's fault, counted apart.
    exhausted: Counter,
    reload_time: FloatGauge,
    probe_success: Gauge,
    probe_duration: FloatGauge,
    // std Mutex: never held across .await. The current reason per registry × check.
    reasons: Mutex<HashMap<(String, CheckKind), Reason>>,
    // std Mutex: never held across .await. The last version label per registry, so an old
    // version's series can be removed when the registry is upgraded or forgotten.
    versions: Mutex<HashMap<String, String>>,
}

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

/// Whether `endpoint` serves the metric `name` (as registered: counters without `_total`).
fn served_here(name: &str, endpoint: ServedOn) -> bool {
    let doc = METRICS
        .iter()
        .find(|m| m.name == name || m.name.strip_suffix("_total") == Some(name))
        .unwrap_or_else(|| panic!("metric {name} is missing from METRICS"));
    matches!(doc.served_on(), ServedOn::Both) || doc.served_on() == endpoint
}

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|m| m.name == name || m.name.strip_suffix("_total") == Some(name))
        .map(|m| m.help)
        .unwrap_or_else(|| panic!("metric {name} is missing from METRICS"))
}

impl Metrics {
    /// The series of `/metrics`; `runbook_base_url` is used by `oci_registry_check_info`.
    pub fn new(runbook_base_url: &str) -> Metrics {
        Metrics::build(ServedOn::Metrics, runbook_base_url)
    }

    /// The series of one `/probe` answer: the registry's, `probe_success` and
    /// `probe_duration_seconds` (see [`Metrics::record_probe`]), none of the exporter's own.
    pub fn for_probe() -> Metrics {
        Metrics::build(ServedOn::Probe, "")
    }

    /// Registers what `endpoint` serves: every metric of [`METRICS`] whose
    /// [`MetricDoc::served_on`] is `endpoint` or [`ServedOn::Both`].
    fn build(endpoint: ServedOn, runbook_base_url: &str) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            status: Family::default(),
            reason: Family::default(),
            duration: Family::default(),
            http_status: Family::default(),
            last_run: Family::default(),
            interval: Family::default(),
            runs: Family::default(),
            requests: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            api_version: Family::default(),
            auth_method: Family::default(),
            token_duration: Family::default(),
            token_expiry: Family::default(),
            tls_expiry: Family::default(),
            token_tls_expiry: Family::default(),
            rate_limit: Family::default(),
            rate_remaining: Family::default(),
            upload_cancelled: Family::default(),
            capability: Family::default(),
            capability_score: Family::default(),
            referrers: Family::default(),
            versions: Mutex::new(HashMap::new()),
            reload_ok: Gauge::default(),
            exhausted: Counter::default(),
            reasons: Mutex::new(HashMap::new()),
            reload_time: FloatGauge::default(),
            probe_success: Gauge::default(),
            probe_duration: FloatGauge::default(),
            registry: Registry::default(),
        };
        // Registers a metric when `endpoint` serves it.
        macro_rules! reg {
            ($name:literal, $metric:expr) => {
                if served_here($name, endpoint) {
                    registry.register($name, help($name), $metric.clone())
                }
            };
        }
        reg!("oci_registry_check_status", m.status);
        reg!("oci_registry_check_reason", m.reason);
        reg!("oci_registry_check_duration_seconds", m.duration);
        reg!("oci_registry_check_http_status_code", m.http_status);
        reg!("oci_registry_check_last_run_timestamp_seconds", m.last_run);
        reg!("oci_registry_check_interval_seconds", m.interval);
        // prometheus-client appends `_total` to counters itself.
        reg!("oci_registry_check_runs", m.runs);
        reg!("oci_registry_request_duration_seconds", m.requests);
        reg!("oci_registry_distribution_api_version_info", m.api_version);
        reg!("oci_registry_auth_method_info", m.auth_method);
        reg!(
            "oci_registry_token_request_duration_seconds",
            m.token_duration
        );
        reg!(
            "oci_registry_token_expiry_timestamp_seconds",
            m.token_expiry
        );
        reg!(
            "oci_registry_tls_certificate_expiry_timestamp_seconds",
            m.tls_expiry
        );
        reg!(
            "oci_registry_token_endpoint_tls_certificate_expiry_timestamp_seconds",
            m.token_tls_expiry
        );
        reg!("oci_registry_rate_limit_limit", m.rate_limit);
        reg!("oci_registry_rate_limit_remaining", m.rate_remaining);
        reg!("oci_registry_push_upload_cancelled", m.upload_cancelled);
        reg!("oci_registry_capability_status", m.capability);
        reg!("oci_registry_capability_score", m.capability_score);
        reg!("oci_registry_referrers_count", m.referrers);
        reg!(
            "oci_registry_exporter_config_last_reload_successful",
            m.reload_ok
        );
        reg!(
            "oci_registry_exporter_config_last_reload_success_timestamp_seconds",
            m.reload_time
        );
        reg!(
            "oci_registry_exporter_local_resource_exhausted",
            m.exhausted
        );
        reg!("probe_success", m.probe_success);
        reg!("probe_duration_seconds", m.probe_duration);
        if endpoint == ServedOn::Probe {
            return Metrics { registry, ..m };
        }
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
        registry.register(
            "oci_registry_check_info",
            help("oci_registry_check_info"),
            info,
        );
        registry.register(
            "oci_registry_exporter_build_info",
            help("oci_registry_exporter_build_info"),
            build,
        );
        Metrics { registry, ..m }
    }

    /// Declares a target's configured checks, so staleness can be judged before a first run.
    pub fn declare_target(&self, target: &Target) {
        for &check in &target.checks {
            self.interval
                .get_or_create(&CheckLabels {
                    registry: target.name.clone(),
                    check,
                })
                .set(target.interval.as_secs_f64());
        }
    }

    /// Turns one result into series: the one place that writes check metrics.
    pub fn record(&self, registry: &str, result: &CheckResult) {
        let check = result.check;
        if result.reason == Reason::LocalResourceExhausted {
            self.exhausted.inc();
        }
        let labels = CheckLabels {
            registry: registry.to_string(),
            check,
        };
        for &status in Status::ALL {
            let l = StatusLabels {
                registry: registry.to_string(),
                check,
                status,
            };
            self.status
                .get_or_create(&l)
                .set(i64::from(status == result.status));
        }
        // Only the previous reason has a series to remove: the last one is remembered
        // rather than trying every reason on each result (a hot path at scale).
        let previous = self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((registry.to_string(), check), result.reason);
        if let Some(previous) = previous.filter(|p| *p != result.reason) {
            self.reason.remove(&ReasonLabels {
                registry: registry.to_string(),
                check,
                reason: previous,
            });
        }
        self.reason
            .get_or_create(&ReasonLabels {
                registry: registry.to_string(),
                check,
                reason: result.reason,
            })
            .set(1);
        self.duration
            .get_or_create(&labels)
            .set(result.duration.as_secs_f64());
        self.http_status
            .get_or_create(&labels)
            .set(i64::from(result.http_status.unwrap_or(0)));
        let finished = result
            .finished_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_run.get_or_create(&labels).set(finished);
        self.runs
            .get_or_create(&StatusLabels {
                registry: registry.to_string(),
                check,
                status: result.status,
            })
            .inc();
        let histogram = self.requests.get_or_create(&labels);
        for request in &result.requests {
            histogram.observe(request.duration.as_secs_f64());
        }
        drop(histogram);
        self.record_facts(registry, &result.facts);
        if let Some(version) = &result.api_version {
            let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = versions.insert(registry.to_string(), version.clone())
                && &old != version
            {
                self.api_version.remove(&VersionLabels {
                    registry: registry.to_string(),
                    version: old,
                });
            }
            self.api_version
                .get_or_create(&VersionLabels {
                    registry: registry.to_string(),
                    version: version.clone(),
                })
                .set(1);
        }
    }

    fn record_facts(&self, registry: &str, facts: &Facts) {
        let reg = RegistryLabels {
            registry: registry.to_string(),
        };
        let unix = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        if let Some(method) = facts.auth_method {
            for &m in AuthMethod::ALL {
                let l = MethodLabels {
                    registry: registry.to_string(),
                    method: m,
                };
                if m == method {
                    self.auth_method.get_or_create(&l).set(1);
                } else {
                    self.auth_method.remove(&l);
                }
            }
        }
        if let Some(d) = facts.token_request_duration {
            self.token_duration.get_or_create(&reg).set(d.as_secs_f64());
        }
        if let Some(t) = facts.token_expiry {
            self.token_expiry.get_or_create(&reg).set(unix(t));
        }
        if let Some(t) = facts.tls_certificate_expiry {
            self.tls_expiry.get_or_create(&reg).set(unix(t));
        }
        if let Some(t) = facts.token_endpoint_tls_certificate_expiry {
            self.token_tls_expiry.get_or_create(&reg).set(unix(t));
        }
        if let Some(rl) = facts.rate_limit {
            self.rate_limit.get_or_create(&reg).set(rl.limit);
            self.rate_remaining.get_or_create(&reg).set(rl.remaining);
        }
        if let Some(cancelled) = facts.upload_cancelled {
            self.upload_cancelled
                .get_or_create(&reg)
                .set(i64::from(cancelled));
        }
        if !facts.capabilities.is_empty() {
            let mut score = 0;
            for &(capability, state) in &facts.capabilities {
                score += i64::from(state == CapabilityStatus::Supported);
                for &s in CapabilityStatus::ALL {
                    self.capability
                        .get_or_create(&CapabilityLabels {
                            registry: registry.to_string(),
                            capability,
                            status: s,
                        })
                        .set(i64::from(s == state));
                }
            }
            self.capability_score.get_or_create(&reg).set(score);
        }
        if let Some(n) = facts.referrers_count {
            self.referrers
                .get_or_create(&reg)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A probe's verdict: `success` when every check it ran passed or was info or skip.
    pub fn record_probe(&self, success: bool, duration: std::time::Duration) {
        self.probe_success.set(i64::from(success));
        self.probe_duration.set(duration.as_secs_f64());
    }

    /// Records the outcome of a configuration load or reload.
    pub fn record_reload(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.reload_time.set(now);
        }
    }

    /// Removes the series of one check of a registry (a reload dropped the check).
    pub fn forget_check(&self, registry: &str, check: CheckKind) {
        self.reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(registry.to_string(), check));
        let labels = CheckLabels {
            registry: registry.to_string(),
            check,
        };
        self.duration.remove(&labels);
        self.http_status.remove(&labels);
        self.last_run.remove(&labels);
        self.interval.remove(&labels);
        self.requests.remove(&labels);
        for &status in Status::ALL {
            let l = StatusLabels {
                registry: registry.to_string(),
                check,
                status,
            };
            self.status.remove(&l);
            self.runs.remove(&l);
        }
        for &reason in Reason::ALL {
            self.reason.remove(&ReasonLabels {
                registry: registry.to_string(),
                check,
                reason,
            });
        }
    }

    /// Removes every series of a registry (after a reload dropped it or changed its checks).
    pub fn forget(&self, registry: &str) {
        for &check in CheckKind::ALL {
            self.forget_check(registry, check);
        }
        let reg = RegistryLabels {
            registry: registry.to_string(),
        };
        for family in [
            &self.token_duration,
            &self.token_expiry,
            &self.tls_expiry,
            &self.token_tls_expiry,
            &self.rate_limit,
            &self.rate_remaining,
        ] {
            family.remove(&reg);
        }
        for family in [
            &self.upload_cancelled,
            &self.capability_score,
            &self.referrers,
        ] {
            family.remove(&reg);
        }
        for &method in AuthMethod::ALL {
            self.auth_method.remove(&MethodLabels {
                registry: registry.to_string(),
                method,
            });
        }
        for &capability in Capability::ALL {
            for &status in CapabilityStatus::ALL {
                self.capability.remove(&CapabilityLabels {
                    registry: registry.to_string(),
                    capability,
                    status,
                });
            }
        }
        let old = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(registry);
        if let Some(version) = old {
            self.api_version.remove(&VersionLabels {
                registry: registry.to_string(),
                version,
            });
        }
    }

    /// Renders every series in the requested format.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail: fmt::Write for String is infallible.
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::Classic => openmetrics_to_classic(&out),
        }
    }
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
    use crate::checks::{CheckKind, CheckResult, Reason, Status};

    #[test]
    fn classic_names_counters_with_total_and_drops_eof() {
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let r = CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x");
        m.record("hub", &r);
        let om = m.encode(Format::OpenMetrics);
        assert!(om.contains("# TYPE oci_registry_check_runs counter"));
        assert!(om.ends_with("# EOF\n"));
        let classic = m.encode(Format::Classic);
        assert!(classic.contains("# TYPE oci_registry_check_runs_total counter"));
        assert!(classic.contains("# HELP oci_registry_check_runs_total "));
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
        let line = "oci_registry_exporter_local_resource_exhausted_total ";
        assert!(m.encode(Format::Classic).contains(&format!("{line}0")));
        for _ in 0..2 {
            m.record(
                "hub",
                &CheckResult::new(
                    CheckKind::Pull,
                    Status::Fail,
                    Reason::LocalResourceExhausted,
                    "x",
                ),
            );
        }
        m.record(
            "hub",
            &CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Timeout, "x"),
        );
        assert!(m.encode(Format::Classic).contains(&format!("{line}2")));
    }

    #[test]
    fn state_set_and_single_reason() {
        let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        m.record(
            "hub",
            &CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x"),
        );
        m.record(
            "hub",
            &CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "x"),
        );
        let text = m.encode(Format::Classic);
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
        m.forget("hub");
        let text = m.encode(Format::Classic);
        assert!(!text.contains("registry=\"hub\""), "{text}");
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
