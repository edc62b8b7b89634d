//! The shipped Alertmanager configuration (alerts/alertmanager/alertmanager.yml) with Debian's
//! `prometheus-alertmanager` and `amtool`:
//!
//! * `amtool check-config` accepts it, and `amtool config routes test` sends every alert of
//!   the rules file to the receiver of its severity (critical → pager, warning → ticket,
//!   info → nowhere);
//! * the inhibit rules copied into alerts/alertmanager/README.md are the shipped ones;
//! * every inhibit rule, against a real Alertmanager fed synthetic alerts: what it silences
//!   and what it must leave alone (another registry, another exporter, another job);
//! * end to end: the exporter checking real registries, a real Prometheus with the shipped
//!   rules (every `for:` shortened, as in tests/prometheus.rs), and a real Alertmanager with
//!   the shipped inhibit rules posting to a webhook in this test: a stopped registry is one
//!   notification (`OciRegistryUnreachable`), rejected credentials one
//!   (`OciRegistryCredentialsInvalid`), a healthy registry none.
//!
//! The test copy of the configuration changes only the receivers' URLs (to the webhook, on
//! 127.0.0.1) and the group timings; the inhibit rules are loaded from the shipped file.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Exporter, config_from_toml};
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;
use support::{Kind, TestRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_config_path() -> PathBuf {
    root().join("alerts/alertmanager/alertmanager.yml")
}

fn shipped_config() -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(shipped_config_path()).unwrap()).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `(alert name, severity)` of every alert of the shipped rules file.
fn shipped_alerts() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("alerts/oci-registry-exporter.rules.yml")).unwrap();
    let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| {
            Some((
                r["alert"].as_str()?.to_string(),
                r["labels"]["severity"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn amtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("amtool")
        .args(args)
        .output()
        .expect("amtool is installed (Debian's prometheus-alertmanager package)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn amtool_check_config_accepts_the_shipped_configuration() {
    let path = shipped_config_path();
    let (ok, out) = amtool(&["check-config", path.to_str().unwrap()]);
    assert!(ok, "amtool check-config failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(out.contains("5 inhibit rules"), "{out}");
}

#[test]
fn amtool_routes_every_alert_by_severity() {
    let path = shipped_config_path();
    let config = format!("--config.file={}", path.display());
    let receiver_of = |severity: &str| match severity {
        "critical" => "pager",
        "info" => "blackhole",
        _ => "ticket",
    };
    let mut cases: Vec<(Vec<String>, &str)> = shipped_alerts()
        .into_iter()
        .map(|(alert, severity)| {
            let receiver = receiver_of(&severity);
            (
                vec![
                    format!("alertname={alert}"),
                    format!("severity={severity}"),
                    "registry=harbor".to_string(),
                    "job=oci-registry-exporter".to_string(),
                    "instance=10.0.0.1:9898".to_string(),
                ],
                receiver,
            )
        })
        .collect();
    assert!(
        cases.len() >= 20,
        "the rules file lost its alerts? {cases:?}"
    );
    // What the table above must contain, and what falls through to the root route.
    cases.extend([
        (
            vec![
                "alertname=OciRegistryUnreachable".into(),
                "severity=critical".into(),
                "registry=quay".into(),
            ],
            "pager",
        ),
        (
            vec![
                "alertname=OciRegistryCheckWarning".into(),
                "severity=info".into(),
            ],
            "blackhole",
        ),
        (
            vec![
                "alertname=OciRegistryExporterDown".into(),
                "severity=warning".into(),
            ],
            "ticket",
        ),
        // No or an unknown severity: a ticket, never lost.
        (vec!["alertname=SomethingElse".into()], "ticket"),
        (
            vec!["alertname=SomethingElse".into(), "severity=page".into()],
            "ticket",
        ),
    ]);
    let mut failures = Vec::new();
    for (labels, want) in &cases {
        let mut args = vec!["config", "routes", "test", config.as_str()];
        args.extend(labels.iter().map(String::as_str));
        let (ok, out) = amtool(&args);
        let have = out
            .lines()
            .filter(|l| !l.starts_with("Warning:"))
            .collect::<Vec<_>>()
            .join("\n");
        if !ok || have.trim() != *want {
            failures.push(format!("{labels:?}: want {want}, amtool said: {out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn readme_inhibit_rules_are_the_shipped_ones() {
    let readme = std::fs::read_to_string(root().join("alerts/alertmanager/README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .map(|rest| rest.split("```").next().unwrap())
        .find(|b| b.starts_with("inhibit_rules:"))
        .expect("README.md has a ```yaml block starting with inhibit_rules:");
    let copied: Yaml = serde_yaml_ng::from_str(block).unwrap();
    assert_eq!(
        copied["inhibit_rules"],
        shipped_config()["inhibit_rules"],
        "alerts/alertmanager/README.md's inhibit rules differ from alertmanager.yml's"
    );
}

/// The shipped configuration with every receiver posting to `webhook/<receiver>` and short
/// group timings; route tree and inhibit rules unchanged.
fn test_config(webhook: &str) -> String {
    let shipped = shipped_config();
    let mut doc = shipped.clone();
    for receiver in doc["receivers"].as_sequence_mut().unwrap() {
        let name = receiver["name"].as_str().unwrap().to_string();
        if let Some(hooks) = receiver
            .as_mapping_mut()
            .unwrap()
            .get_mut("webhook_configs")
        {
            let hooks = hooks.as_sequence_mut().unwrap();
            assert!(!hooks.is_empty());
            for hook in hooks {
                hook["url"] = format!("{webhook}/{name}").into();
            }
        }
    }
    let route = doc["route"].as_mapping_mut().unwrap();
    route.insert("group_wait".into(), "1s".into());
    route.insert("group_interval".into(), "1s".into());
    route.insert("repeat_interval".into(), "1h".into());
    assert_eq!(doc["inhibit_rules"], shipped["inhibit_rules"]);
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// A child process killed (and reaped) when dropped, also when the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Starts a daemon on a free 127.0.0.1 port (`args(port)`), logging into `dir/<name>.log`,
/// and waits (bounded: 10 s) until `/-/ready` answers 200.
async fn start_daemon(
    program: &str,
    dir: &Path,
    args: impl Fn(u16) -> Vec<String>,
) -> (KillOnDrop, String) {
    let log_path = dir.join(format!("{program}.log"));
    let client = http();
    // A port picked free can be taken before the daemon binds it: try a few.
    for _ in 0..3 {
        let port = free_port();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = KillOnDrop(
            Command::new(program)
                .args(args(port))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{program} is installed: {e}")),
        );
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(Some(_)) = child.0.try_wait() {
                break;
            }
            if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
                && r.status().is_success()
            {
                return (child, url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if !log.contains("address already in use") {
            panic!("{program} did not become ready in 10 s:\n{log}");
        }
    }
    panic!("{program} found no free port in 3 attempts");
}

async fn start_alertmanager(dir: &Path, config: &str) -> (KillOnDrop, String) {
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let config_file = dir.join("alertmanager.yml");
    let storage = dir.join("am-data");
    start_daemon("prometheus-alertmanager", dir, |port| {
        vec![
            format!("--config.file={}", config_file.display()),
            format!("--storage.path={}", storage.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
            "--log.level=warn".to_string(),
        ]
    })
    .await
}

/// A webhook receiver on 127.0.0.1: every POST's path and JSON body, in arrival order.
#[derive(Clone, Default)]
struct Webhook {
    received: Arc<Mutex<Vec<(String, Json)>>>,
}

impl Webhook {
    async fn start() -> (Webhook, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hook = Webhook::default();
        let received = hook.received.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    // Bounded: a request is at most 1 MiB and must arrive within 5 s.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 8192];
                        loop {
                            let n = conn.read(&mut chunk).await.ok()?;
                            if n == 0 || buf.len() > 1 << 20 {
                                return None;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                                continue;
                            };
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            let length: usize = head
                                .lines()
                                .filter_map(|l| l.split_once(':'))
                                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                                .and_then(|(_, v)| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() < end + 4 + length {
                                continue;
                            }
                            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                            let body = serde_json::from_slice(&buf[end + 4..end + 4 + length])
                                .unwrap_or(Json::Null);
                            received.lock().unwrap().push((path, body));
                            let _ = conn
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                            return Some(());
                        }
                    })
                    .await;
                });
            }
        });
        (hook, url)
    }

    fn received(&self) -> Vec<(String, Json)> {
        self.received.lock().unwrap().clone()
    }
}

fn alert(labels: &[(&str, &str)]) -> Json {
    let labels: serde_json::Map<String, Json> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Json::from(*v)))
        .collect();
    json!({ "labels": labels, "annotations": { "summary": "test" } })
}

/// `alertname{label=value,...}` of an alert's labels, sorted, for messages and keys.
fn key(labels: &Json) -> String {
    let map: BTreeMap<&str, &str> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    let name = map.get("alertname").copied().unwrap_or("");
    let rest: Vec<String> = map
        .iter()
        .filter(|(k, _)| **k != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

/// Posts `alerts` and returns, for every alert Alertmanager holds, whether it is inhibited.
async fn post_and_read(am: &str, alerts: &[Json]) -> BTreeMap<String, bool> {
    let client = http();
    let r = client
        .post(format!("{am}/api/v2/alerts"))
        .json(alerts)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST /api/v2/alerts: {r:?}");
    let all: Json = client
        .get(format!("{am}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let inhibited = a["status"]["inhibitedBy"]
                .as_array()
                .is_some_and(|v| !v.is_empty());
            (key(&a["labels"]), inhibited)
        })
        .collect()
}

fn a(
    name: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("alertname", name)];
    l.extend_from_slice(extra);
    l
}

const JOB: (&str, &str) = ("job", "oci-registry-exporter");
const I1: (&str, &str) = ("instance", "10.0.0.1:9898");
const I2: (&str, &str) = ("instance", "10.0.0.2:9898");
const I3: (&str, &str) = ("instance", "10.0.0.3:9898");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inhibit_rule_silences_what_it_should_and_nothing_else() {
    let dir = tempfile::Builder::new()
        .prefix("alertmanager-")
        .tempdir()
        .unwrap();
    let (_hook, hook_url) = Webhook::start().await;
    let (_am, am) = start_alertmanager(dir.path(), &test_config(&hook_url)).await;

    // (labels, inhibited?)
    let cases: Vec<(Vec<(&str, &str)>, bool)> = vec![
        // OciRegistryUnreachable: the registry's other alerts, from any job.
        (
            a(
                "OciRegistryUnreachable",
                &[JOB, I1, ("registry", "down"), ("check", "registry")],
            ),
            false,
        ),
        (
            a(
                "OciRegistryCheckFailing",
                &[JOB, I1, ("registry", "down"), ("check", "pull")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryCapabilityScoreDropped",
                &[JOB, I1, ("registry", "down")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryErrorBudgetBurn",
                &[JOB, I1, ("registry", "down"), ("check", "pull")],
            ),
            true,
        ),
        (
            a(
                "BlackboxProbeFailed",
                &[("job", "blackbox"), ("registry", "down")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryCheckFailing",
                &[JOB, I1, ("registry", "up"), ("check", "pull")],
            ),
            false,
        ),
        // OciRegistryCredentialsInvalid: pull/push/capability/budget alerts of that
        // registry from that exporter; not another exporter's, not TLS expiry.
        (
            a(
                "OciRegistryCredentialsInvalid",
                &[JOB, I1, ("registry", "creds")],
            ),
            false,
        ),
        (
            a(
                "OciRegistryPushDenied",
                &[JOB, I1, ("registry", "creds"), ("check", "push")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryCheckFailing",
                &[JOB, I1, ("registry", "creds"), ("check", "referrers")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryReferrersSupportLost",
                &[JOB, I1, ("registry", "creds")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryErrorBudgetBurnSlow",
                &[JOB, I1, ("registry", "creds"), ("check", "pull")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryPushDenied",
                &[JOB, I2, ("registry", "creds"), ("check", "push")],
            ),
            false,
        ),
        (
            a(
                "OciRegistryTlsCertificateExpiringSoon",
                &[JOB, I1, ("registry", "creds")],
            ),
            false,
        ),
        // OciRegistryExporterDown: that exporter's alerts, not another exporter's, not
        // other alerts about the same target.
        (a("OciRegistryExporterDown", &[JOB, I3]), false),
        (
            a(
                "OciRegistryCheckFailing",
                &[JOB, I3, ("registry", "other"), ("check", "pull")],
            ),
            true,
        ),
        (a("OciRegistryExporterConfigReloadFailed", &[JOB, I3]), true),
        (
            a(
                "OciRegistryCheckFailing",
                &[JOB, I1, ("registry", "other"), ("check", "pull")],
            ),
            false,
        ),
        (a("NodeDown", &[JOB, I3]), false),
        // OciRegistryErrorBudgetBurn: the slow burn of the same path only.
        (
            a(
                "OciRegistryErrorBudgetBurn",
                &[JOB, I1, ("registry", "burn"), ("check", "pull")],
            ),
            false,
        ),
        (
            a(
                "OciRegistryErrorBudgetBurnSlow",
                &[JOB, I1, ("registry", "burn"), ("check", "pull")],
            ),
            true,
        ),
        (
            a(
                "OciRegistryErrorBudgetBurnSlow",
                &[JOB, I1, ("registry", "burn"), ("check", "push")],
            ),
            false,
        ),
    ];
    let alerts: Vec<Json> = cases.iter().map(|(l, _)| alert(l)).collect();
    let have = post_and_read(&am, &alerts).await;
    let mut failures = Vec::new();
    for (labels, want) in &cases {
        let k = key(&alert(labels)["labels"]);
        match have.get(&k) {
            Some(inhibited) if inhibited == want => {}
            Some(inhibited) => failures.push(format!("{k}: inhibited {inhibited}, want {want}")),
            None => failures.push(format!("{k}: not held by Alertmanager")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // OciRegistryExporterAbsent carries no job or instance: every alert of the rule set
    // but the exporter alerts themselves, and no other job's.
    let before = have;
    let have = post_and_read(&am, &[alert(&[("alertname", "OciRegistryExporterAbsent")])]).await;
    let mut failures = Vec::new();
    for (k, inhibited) in &have {
        let exporter_alert = k.starts_with("OciRegistryExporterDown{")
            || k.starts_with("OciRegistryExporterAbsent{");
        let want = before.get(k).copied().unwrap_or(false)
            || (k.starts_with("OciRegistry") && !exporter_alert);
        if *inhibited != want {
            failures.push(format!(
                "with OciRegistryExporterAbsent: {k}: inhibited {inhibited}, want {want}"
            ));
        }
    }
    assert_eq!(have.len(), cases.len() + 1, "{have:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Scrape and rule evaluation interval of the end-to-end test's Prometheus.
const PROMETHEUS_INTERVAL: &str = "1s";
/// Check interval of the exporter (see tests/prometheus.rs for why not 1 s).
const CHECK_INTERVAL: &str = "2s";

/// The shipped rules with every `for:` shortened to 1 s, as tests/prometheus.rs loads them,
/// except OciRegistryExporterAbsent: `absent(up)` holds until Prometheus' first scrape,
/// which its real `for: 15m` covers; 10 s covers it here.
fn rules_with_short_for() -> String {
    let path = root().join("alerts/oci-registry-exporter.rules.yml");
    let mut doc: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for group in doc["groups"].as_sequence_mut().expect("groups") {
        let g = group.as_mapping_mut().unwrap();
        g.remove("interval");
        for rule in g["rules"].as_sequence_mut().unwrap() {
            let absent = rule["alert"].as_str() == Some("OciRegistryExporterAbsent");
            let r = rule.as_mapping_mut().unwrap();
            if r.contains_key("for") {
                r.insert("for".into(), if absent { "10s" } else { "1s" }.into());
            }
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

async fn start_prometheus(
    dir: &Path,
    exporter: SocketAddr,
    alertmanager: &str,
) -> (KillOnDrop, String) {
    std::fs::write(dir.join("rules.yml"), rules_with_short_for()).unwrap();
    let am = alertmanager.trim_start_matches("http://");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {PROMETHEUS_INTERVAL}\n  scrape_timeout: {PROMETHEUS_INTERVAL}\n  \
             evaluation_interval: {PROMETHEUS_INTERVAL}\n\
             rule_files: [rules.yml]\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{targets: [\"{am}\"]}}]\n\
             scrape_configs:\n  - job_name: oci-registry-exporter\n    \
             static_configs: [{{targets: [\"{exporter}\"]}}]\n"
        ),
    )
    .unwrap();
    let config_file = dir.join("prometheus.yml");
    let data = dir.join("prometheus-data");
    start_daemon("prometheus", dir, |port| {
        vec![
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_string(),
        ]
    })
    .await
}

/// An instant query's vector, or nothing.
async fn query(prometheus: &str, promql: &str) -> Vec<Json> {
    let Ok(r) = http()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let body: Json = r.json().await.unwrap_or(Json::Null);
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// (alertname, registry) of the alerts Prometheus holds firing.
async fn firing_in_prometheus(prometheus: &str) -> BTreeSet<(String, String)> {
    let Ok(r) = http()
        .get(format!("{prometheus}/api/v1/alerts"))
        .send()
        .await
    else {
        return BTreeSet::new();
    };
    let body: Json = r.json().await.unwrap_or(Json::Null);
    body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["registry"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// One firing alert as a person receives it: the receiver (webhook path) and the alert.
fn firing_notifications(received: &[(String, Json)]) -> Vec<(String, Json)> {
    received
        .iter()
        .flat_map(|(path, body)| {
            body["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["status"] == "firing")
                .map(move |a| (path.clone(), a.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_gets_one_notification_per_root_cause() {
    let started = Instant::now();
    let (healthy, basic, mut doomed) = tokio::join!(
        TestRegistry::start(Kind::Open),
        TestRegistry::start(Kind::Basic),
        TestRegistry::start(Kind::Open),
    );
    let config = config_from_toml(&format!(
        r#"
[defaults]
interval = "{CHECK_INTERVAL}"
timeout = "2s"

# healthy; an open registry ignores the credentials, which the push check needs
[[registries]]
name = "healthy"
url = "{healthy}"
username = "{user}"
password = "{password}"

# the right user with a wrong password
[[registries]]
name = "bad-credentials"
url = "{basic}"
username = "{user}"
password = "not-{password}"

# healthy until the test stops it
[[registries]]
name = "doomed"
url = "{doomed}"
username = "{user}"
password = "{password}"
"#,
        healthy = healthy.url,
        basic = basic.url,
        doomed = doomed.url,
        user = support::BASIC_USER,
        password = support::BASIC_PASSWORD,
    ));
    let exporter = Exporter::start(config).await;
    let dir = tempfile::Builder::new()
        .prefix("alertmanager-e2e-")
        .tempdir()
        .unwrap();
    let (hook, hook_url) = Webhook::start().await;
    let (_am, am) = start_alertmanager(dir.path(), &test_config(&hook_url)).await;
    let (_prometheus, prometheus) = start_prometheus(dir.path(), exporter.addr, &am).await;
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();

    // Phase 1 (bounded: 40 × 500 ms): Prometheus has seen the doomed registry healthy, with
    // its capabilities, for a few scrapes.
    let mut seen_healthy = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let up = query(
            &prometheus,
            r#"oci_registry_check_status{registry="doomed", check="registry", status="pass"} == 1
               and on (registry) oci_registry_capability_score > 0"#,
        )
        .await;
        if !up.is_empty() {
            seen_healthy += 1;
            if seen_healthy >= 3 {
                break;
            }
        }
    }
    assert!(
        seen_healthy >= 3,
        "Prometheus never saw the doomed registry healthy:\n{}\nexporter /metrics:\n{}",
        log("prometheus.log"),
        exporter.metrics().await
    );
    doomed.kill();
    let stopped_at = Instant::now();

    // Phase 2 (bounded: 60 × 500 ms): both root causes notified, then 6 s more (many group
    // intervals and evaluations) in which nothing else may arrive.
    let want: BTreeSet<(String, String)> = [
        ("OciRegistryUnreachable", "doomed"),
        ("OciRegistryCredentialsInvalid", "bad-credentials"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    let mut prometheus_fired: BTreeSet<(String, String)> = BTreeSet::new();
    let mut complete_at: Option<Instant> = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        prometheus_fired.extend(firing_in_prometheus(&prometheus).await);
        let have: BTreeSet<(String, String)> = firing_notifications(&hook.received())
            .iter()
            .map(|(_, a)| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["labels"]["registry"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        match complete_at {
            None if want.is_subset(&have) => complete_at = Some(Instant::now()),
            Some(t) if t.elapsed() >= Duration::from_secs(6) => break,
            _ => {}
        }
    }
    let received = hook.received();
    let notified = firing_notifications(&received);
    let mut failures = Vec::new();
    if complete_at.is_none() {
        failures.push(format!(
            "not every root cause was notified within 30 s of stopping the registry (after {:?})",
            stopped_at.elapsed()
        ));
    }
    // Exactly one notification per root cause, to the receiver of its severity, as a
    // person reads it.
    for (alert, registry) in &want {
        let matching: Vec<&(String, Json)> = notified
            .iter()
            .filter(|(_, a)| {
                a["labels"]["alertname"] == *alert && a["labels"]["registry"] == *registry
            })
            .collect();
        if matching.len() != 1 {
            failures.push(format!(
                "{alert} for {registry}: {} notifications, want exactly 1",
                matching.len()
            ));
        }
        for (path, a) in matching {
            if path != "/pager" {
                failures.push(format!("{alert}: sent to {path}, want /pager (critical)"));
            }
            for annotation in ["summary", "description", "runbook_url"] {
                let text = a["annotations"][annotation].as_str().unwrap_or("");
                if text.is_empty() {
                    failures.push(format!("{alert}: no {annotation}: {a}"));
                }
            }
            let description = a["annotations"]["description"].as_str().unwrap_or("");
            if !description.contains(registry.as_str()) {
                failures.push(format!(
                    "{alert}: description does not name {registry}: {description}"
                ));
            }
            let runbook = a["annotations"]["runbook_url"].as_str().unwrap_or("");
            if !runbook.ends_with(&format!("#{}", alert.to_lowercase())) {
                failures.push(format!("{alert}: runbook_url {runbook}"));
            }
        }
    }
    // Nothing else: no dependent check of the stopped registry, nothing for the healthy
    // one, nothing about the exporter.
    for (path, a) in &notified {
        let k = (
            a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
            a["labels"]["registry"].as_str().unwrap_or("").to_string(),
        );
        if !want.contains(&k) {
            failures.push(format!(
                "unexpected notification to {path}: {}",
                key(&a["labels"])
            ));
        }
    }
    // The inhibition had work to do: Prometheus fired more than the root causes for the
    // stopped registry (its capability score dropped), and only Alertmanager kept it quiet.
    let dependent: Vec<&(String, String)> = prometheus_fired
        .iter()
        .filter(|(a, r)| r == "doomed" && a != "OciRegistryUnreachable")
        .collect();
    if dependent.is_empty() {
        failures.push(format!(
            "Prometheus fired nothing but OciRegistryUnreachable for the stopped registry, so \
             the test proves no inhibition; fired: {prometheus_fired:?}"
        ));
    }
    let elapsed = started.elapsed();
    eprintln!(
        "after {elapsed:?}: Prometheus fired {prometheus_fired:?}; {} firing alert(s) notified",
        notified.len()
    );
    if !failures.is_empty() {
        panic!(
            "{} problem(s) after {elapsed:?}:\n{}\n\nPrometheus fired: {prometheus_fired:?}\n\
             webhook received: {received:#?}\n\nalertmanager log:\n{}\nprometheus log:\n{}",
            failures.len(),
            failures.join("\n"),
            log("prometheus-alertmanager.log"),
            log("prometheus.log"),
        );
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "the test took {elapsed:?}; keep it well under two minutes"
    );
    exporter.stop().await;
}
