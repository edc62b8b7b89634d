//! A real Prometheus (Debian's `prometheus`, as `scripts/demo` runs it) scraping the exporter,
//! which checks real Distribution registries, with the shipped alert rules loaded:
//!
//! * every PromQL query of the shipped dashboards parses and returns data, except the ones
//!   that read a metric of [`PENDING_METRICS`] (not served by the exporter yet);
//! * every rule evaluates without error, the alerts of the broken registries fire, with
//!   their description templates expanded from live series, and no alert fires for the
//!   healthy registries or the exporter itself.
//!
//! The rules' timing (`for:`) is proven by the promtool unit tests (tests/suite/alerts/rules.rs); here
//! the rules are loaded with every `for:` shortened to 1 s so that the test takes seconds.

use crate::common;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::prometheus::{Prometheus, rules_with_short_for};
use common::promql::metric_names;
use common::{Exporter, config_from_toml};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use support::{Kind, TestRegistry};

/// Metrics the dashboards query that the exporter does not serve (yet) for the registries of
/// this test. A dashboard query that returns no data fails the test unless it reads one of
/// these; a metric listed here that Prometheus does receive fails it too, so the list shrinks
/// as features land: remove an entry when the test says it is served.
const PENDING_METRICS: &[&str] = &[];

/// What every `for:` of the rules becomes in the copy loaded into Prometheus.
const SHORT_FOR: &str = "1s";
/// Check interval of the exporter. Not 1 s: OciRegistryCheckStale fires when a check's
/// last run is older than 3 intervals, and scrape plus evaluation delay add up to ~2 s.
const CHECK_INTERVAL: &str = "2s";

/// Grafana's built-in variables with values that make sense for a test that has run for
/// seconds, and the dashboard variables at their "All" value.
const VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "20s"),
    ("__interval", "5s"),
    ("__interval_ms", "5000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("job", ".+"),
    ("instance", ".+"),
    ("registry", ".+"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`) with [`VARIABLES`].
fn substitute(expr: &str) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            let name = braced[..end].split(':').next().unwrap();
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$'); // a regex anchor, not a variable
        } else {
            let value = VARIABLES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("unknown variable ${name}"))?;
            out.push_str(value);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A Grafana query-variable query as PromQL: `label_values(sel, label)` lists the values
/// of `label` on `sel`'s series, i.e. `count by (label) (sel)` must return data.
fn variable_query_as_promql(query: &str) -> Result<String, String> {
    let q = query.trim();
    if let Some(args) = q
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let (selector, label) = match args.rsplit_once(',') {
            Some((s, l)) => (s.trim(), l.trim()),
            None => ("{__name__=~\".+\"}", args.trim()),
        };
        Ok(format!("count by ({label}) ({selector})"))
    } else if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|a| a.strip_suffix(')'))
    {
        Ok(inner.to_string())
    } else {
        Err(format!("unsupported variable query {q:?}"))
    }
}

/// Every query of the dashboards that must return data: (where, PromQL as written).
/// Annotations are only parsed, not required to return data (they mark rare events).
struct DashboardQuery {
    place: String,
    promql: Result<String, String>,
    needs_data: bool,
}

fn dashboard_queries() -> Vec<DashboardQuery> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let d: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
            for p in list.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut panels = Vec::new();
        walk(&d["panels"], &mut panels);
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(DashboardQuery {
                        place: format!("{name}: panel {} target {}", p["title"], t["refId"]),
                        promql: substitute(e),
                        needs_data: true,
                    });
                }
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] == "query" {
                let q = v["query"]
                    .as_str()
                    .or_else(|| v["query"]["query"].as_str())
                    .unwrap_or_default();
                out.push(DashboardQuery {
                    place: format!("{name}: variable {}", v["name"]),
                    promql: variable_query_as_promql(q).and_then(|q| substitute(&q)),
                    needs_data: true,
                });
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(e) = a["expr"].as_str() {
                out.push(DashboardQuery {
                    place: format!("{name}: annotation {}", a["name"]),
                    promql: substitute(e),
                    needs_data: false,
                });
            }
        }
    }
    assert!(
        out.iter().filter(|q| q.needs_data).count() > 10,
        "too few dashboard queries found"
    );
    out
}

fn label<'a>(v: &'a Json, name: &str) -> &'a str {
    v["labels"][name].as_str().unwrap_or("")
}

#[derive(Default)]
struct AlertState {
    /// (alertname, registry or "") → state, as last seen.
    now: BTreeMap<(String, String), String>,
    /// Every (alertname, registry, state) seen during the wait.
    ever: BTreeSet<(String, String, String)>,
    alerts: Vec<Json>,
}

async fn alert_state(prom: &Prometheus, into: &mut AlertState) -> Result<(), String> {
    let alerts = prom.alerts().await?;
    into.now.clear();
    for a in &alerts {
        let key = (
            label(a, "alertname").to_string(),
            label(a, "registry").to_string(),
        );
        let state = a["state"].as_str().unwrap_or("?").to_string();
        into.ever
            .insert((key.0.clone(), key.1.clone(), state.clone()));
        into.now.insert(key, state);
    }
    into.alerts = alerts;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_evaluates_the_rules_and_dashboards_against_the_exporter() {
    let started = Instant::now();
    let (open, basic, read_only, tls, token) = tokio::join!(
        TestRegistry::start(Kind::Open),
        TestRegistry::start(Kind::Basic),
        TestRegistry::start(Kind::ReadOnly),
        TestRegistry::start(Kind::Tls),
        // The token service over HTTPS: the token-endpoint certificate metric.
        TestRegistry::start_with(
            Kind::Token,
            support::Options {
                token_tls: true,
                ..Default::default()
            }
        ),
    );
    // What no Distribution 2.8 here produces: a referrers API and RateLimit headers (as
    // Docker Hub sends them). mockito stands in for such a registry.
    let mut oci = mockito::Server::new_async().await;
    let digest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    oci.mock("GET", "/v2/")
        .with_status(200)
        .with_header("docker-distribution-api-version", "registry/2.0")
        .with_header("ratelimit-limit", "100;w=21600")
        .with_header("ratelimit-remaining", "97;w=21600")
        .create_async()
        .await;
    oci.mock("HEAD", "/v2/library/alpine/manifests/latest")
        .with_status(200)
        .with_header("docker-content-digest", digest)
        .with_header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .create_async()
        .await;
    // What a pull downloads after the HEAD: the manifest and its config blob ("{}").
    let config_blob = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    oci.mock("GET", format!("/v2/library/alpine/manifests/{digest}").as_str())
        .with_status(200)
        .with_header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .with_body(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_blob}","size":2}},"layers":[]}}"#
        ))
        .create_async()
        .await;
    oci.mock(
        "GET",
        format!("/v2/library/alpine/blobs/{config_blob}").as_str(),
    )
    .with_status(200)
    .with_body("{}")
    .create_async()
    .await;
    oci.mock("GET", format!("/v2/library/alpine/referrers/{digest}").as_str())
        .with_status(200)
        .with_header("content-type", "application/vnd.oci.image.index.v1+json")
        .with_body(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9","size":100,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}]}"#,
        )
        .create_async()
        .await;
    let config = config_from_toml(&format!(
        r#"
[defaults]
interval = "{CHECK_INTERVAL}"
timeout = "2s"

# healthy; an open registry ignores the credentials, which the push check needs
[[registries]]
name = "healthy"
url = "{open}"
username = "{user}"
password = "{password}"

# the right user with a wrong password
[[registries]]
name = "bad-credentials"
url = "{basic}"
username = "{user}"
password = "not-{password}"

# storage.maintenance.readonly: pulls work, pushes are refused
[[registries]]
name = "read-only"
url = "{read_only}"
username = "{user}"
password = "{password}"

# nothing listens on port 1
[[registries]]
name = "unreachable"
url = "http://127.0.0.1:1"

# healthy, over HTTPS: the TLS facts
[[registries]]
name = "tls"
url = "{tls}"
ca_file = "{ca}"
username = "{user}"
password = "{password}"

# healthy, token auth: the token facts
[[registries]]
name = "token"
url = "{token}"
username = "{token_user}"
password = "{token_password}"
ca_file = "{token_ca}"

# healthy, with a referrers API and rate-limit headers (mockito)
[[registries]]
name = "oci-mock"
url = "{oci}"
checks = ["registry", "pull", "referrers"]
"#,
        oci = oci.url(),
        open = open.url,
        basic = basic.url,
        user = support::BASIC_USER,
        password = support::BASIC_PASSWORD,
        read_only = read_only.url,
        tls = tls.url,
        ca = tls.ca_file.as_ref().unwrap().display(),
        token = token.url,
        token_ca = token.ca_file.as_ref().unwrap().display(),
        token_user = support::TOKEN_ADMIN_USER,
        token_password = support::TOKEN_ADMIN_PASSWORD,
    ));
    let exporter = Exporter::start(config).await;
    let prom = Prometheus::start(exporter.addr, &rules_with_short_for(SHORT_FOR, &[]), None).await;

    // Registries with no alert, ever, but the expected ones.
    let watched = ["healthy", "tls", "token", "read-only", "oci-mock"];
    let loaded_alerts: BTreeSet<String> = {
        let text =
            std::fs::read_to_string(root().join("alerts/oci-registry-exporter.rules.yml")).unwrap();
        let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        doc["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
            .filter_map(|r| r["alert"].as_str().map(str::to_string))
            .collect()
    };

    // Wait (bounded: 60 × 500 ms) until every rule has been evaluated, the broken
    // registries' alerts fire, and nothing else is active.
    let mut failures: Vec<String> = Vec::new();
    let mut state = AlertState::default();
    // Exactly these alerts, firing: the closed port is unreachable (its other checks fail
    // for the same reason, folded into it), the wrong password is rejected (by the
    // credentials, pull, push and referrers checks: one alert), and the read-only registry
    // refuses the push check's upload.
    let expected: BTreeMap<(String, String), String> = [
        ("OciRegistryUnreachable", "unreachable"),
        ("OciRegistryCredentialsInvalid", "bad-credentials"),
        ("OciRegistryPushDenied", "read-only"),
    ]
    .into_iter()
    .map(|(a, r)| ((a.to_string(), r.to_string()), "firing".to_string()))
    .collect();
    let mut rules_ok = false;
    let mut rule_problems: Vec<String> = Vec::new();
    let mut settled = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;

        if let Ok(groups) = prom.api("/api/v1/rules", &[]).await {
            rule_problems.clear();
            let mut seen = BTreeSet::new();
            for rule in groups["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            {
                let name = rule["name"].as_str().unwrap_or("?");
                seen.insert(name.to_string());
                match rule["health"].as_str() {
                    Some("ok") => {}
                    h => rule_problems.push(format!(
                        "rule {name}: health {h:?}, last error {}",
                        rule["lastError"]
                    )),
                }
            }
            for missing in loaded_alerts.difference(&seen) {
                rule_problems.push(format!("alert {missing} is not loaded"));
            }
            rules_ok = rule_problems.is_empty();
        }
        if let Err(e) = alert_state(&prom, &mut state).await {
            failures.push(format!("/api/v1/alerts: {e}"));
            break;
        }
        if rules_ok && state.now == expected {
            settled = true;
            break;
        }
    }
    let waited = started.elapsed();

    if !settled {
        failures.extend(rule_problems.iter().cloned());
        failures.push(format!(
            "alerts did not settle in 30 s:\n  want {expected:?}\n  have {:?}",
            state.now
        ));
    }
    // The healthy registries never had an active alert, not even briefly, and the
    // read-only one none but the push denial.
    for (alert, registry, s) in &state.ever {
        let allowed = expected.contains_key(&(alert.clone(), registry.clone()));
        if watched.contains(&registry.as_str()) && !allowed {
            failures.push(format!(
                "{alert} was {s} for registry {registry}, where it must never be active"
            ));
        }
        // absent(up) holds until Prometheus' first scrape, which its real `for: 15m`
        // covers but the shortened one does not: that alert counts only at the end.
        if registry.is_empty() && alert != "OciRegistryExporterAbsent" {
            failures.push(format!("{alert} was {s} for the exporter itself"));
        }
    }
    // Descriptions are expanded from live series: no template error, and the queries they
    // make (reason, HTTP status, failing checks) found their series.
    for a in &state.alerts {
        let name = label(a, "alertname");
        for (key, value) in a["annotations"].as_object().into_iter().flatten() {
            let value = value.as_str().unwrap_or("");
            if value.contains("error expanding") || value.contains("<error") {
                failures.push(format!("{name}: annotation {key}: {value}"));
            }
            if key == "description" && value.contains("unknown") {
                failures.push(format!(
                    "{name}: the description's query found nothing: {value}"
                ));
            }
        }
        if a["labels"]["severity"].as_str().is_none() {
            failures.push(format!("{name}: no severity label: {a}"));
        }
    }
    for (alert, wanted) in [
        ("OciRegistryUnreachable", "connection_refused"),
        ("OciRegistryUnreachable", "last HTTP status: 0"),
        (
            "OciRegistryCredentialsInvalid",
            "credentials=invalid_credentials",
        ),
        ("OciRegistryCredentialsInvalid", "pull=invalid_credentials"),
        ("OciRegistryPushDenied", "reason: read_only"),
    ] {
        if let Some(a) = state.alerts.iter().find(|a| label(a, "alertname") == alert) {
            let d = a["annotations"]["description"].as_str().unwrap_or("");
            if !d.contains(wanted) {
                failures.push(format!("{alert}: description lacks {wanted:?}: {d}"));
            }
        }
    }

    // Every dashboard query parses and returns data, unless it reads a pending metric.
    let mut pending_used = BTreeSet::new();
    for q in dashboard_queries() {
        let promql = match &q.promql {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", q.place));
                continue;
            }
        };
        let metrics = metric_names(promql);
        let pending: Vec<&str> = PENDING_METRICS
            .iter()
            .copied()
            .filter(|m| metrics.contains(*m))
            .collect();
        pending_used.extend(pending.iter().copied());
        // Recording rules (the SLO ratios) have data only once their group has evaluated
        // after two scrapes of the counters they rate, which can lag the alerts above on a
        // loaded machine: an empty answer is asked again, boundedly (20 × 500 ms).
        let mut answer = prom.query(promql).await;
        for _ in 0..20 {
            let empty = matches!(&answer, Ok(r) if r.is_empty());
            if !(empty && q.needs_data && pending.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            answer = prom.query(promql).await;
        }
        match answer {
            Err(e) => failures.push(format!("{}: {e}\n    {promql}", q.place)),
            Ok(result) if result.is_empty() && q.needs_data && pending.is_empty() => {
                failures.push(format!(
                    "{}: no data, and none of its metrics {metrics:?} is in PENDING_METRICS\n    {promql}",
                    q.place
                ))
            }
            Ok(_) => {}
        }
    }
    // The pending list holds exactly what is not served yet.
    let served_pending: Vec<String> = prom
        .query(&format!(
            "count by (__name__) ({{__name__=~\"{}\"}})",
            PENDING_METRICS.join("|")
        ))
        .await
        .unwrap_or_default()
        .iter()
        .map(|s| s["metric"]["__name__"].as_str().unwrap_or("?").to_string())
        .collect();
    for m in served_pending {
        failures.push(format!(
            "{m} is served now: remove it from PENDING_METRICS in tests/suite/alerts/prometheus.rs"
        ));
    }
    for m in PENDING_METRICS {
        if !pending_used.contains(m) {
            failures.push(format!(
                "{m} is in PENDING_METRICS, but no dashboard queries it: remove it"
            ));
        }
    }

    let elapsed = started.elapsed();
    if !failures.is_empty() {
        let metrics = exporter.metrics().await;
        panic!(
            "{} problem(s) (alerts settled after {waited:?}, test ran {elapsed:?}):\n{}\n\n\
             active alerts: {:#?}\n\nexporter /metrics:\n{metrics}\nprometheus log:\n{}",
            failures.len(),
            failures.join("\n"),
            state.now,
            prom.log(),
        );
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "the test took {elapsed:?}; keep it well under two minutes"
    );
    drop(prom);
    exporter.stop().await;
}
