//! The shipped Alertmanager configuration (alerts/alertmanager/alertmanager.yml) with Debian's
//! `prometheus-alertmanager` and `amtool`:
//!
//! * `amtool check-config` accepts it, and `amtool config routes test` sends every alert of
//!   the rules file to the receiver of its severity (critical → pager, warning → ticket,
//!   info → nowhere);
//! * the inhibit rules copied into alerts/alertmanager/README.md are the shipped ones;
//! * every inhibit rule, against a real Alertmanager fed synthetic alerts: what it silences
//!   and what it must leave alone (another registry, another exporter, another job);
//! * repeat and resolution: an alert still firing is notified again after `repeat_interval`
//!   (shortened to 4 s in the test copy), not before, and an alert that ends is notified once
//!   as resolved (the shipped receivers set `send_resolved: true`);
//! * end to end: the exporter checking real registries, a real Prometheus with the shipped
//!   rules (every `for:` shortened, as in tests/suite/alerts/prometheus.rs), and a real Alertmanager with
//!   the shipped inhibit rules posting to a webhook in this test: a stopped registry is one
//!   notification (`OciRegistryUnreachable`), rejected credentials one
//!   (`OciRegistryCredentialsInvalid`), a healthy registry none.
//!
//! The test copy of the configuration changes only the receivers' URLs (to the webhook, on
//! 127.0.0.1) and the group timings; the shipped file keeps its own (group_interval 5m,
//! repeat_interval 4h), and the inhibit rules are loaded from it. Prometheus is started by
//! tests/suite/common/prometheus.rs, shared with tests/suite/alerts/prometheus.rs.

use crate::common;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::prometheus::{self, Prometheus, http, start_daemon};
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

/// Group timings of a test copy of the configuration.
struct Timings {
    group_wait: &'static str,
    group_interval: &'static str,
    repeat_interval: &'static str,
}

/// Notify within a second, never repeat during a test: each notification is news.
const NO_REPEAT: Timings = Timings {
    group_wait: "1s",
    group_interval: "1s",
    repeat_interval: "1h",
};

/// The shipped configuration with every receiver posting to `webhook/<receiver>` and the
/// group timings of `timings`; route tree, receivers' other settings (`send_resolved`) and
/// inhibit rules unchanged.
fn test_config(webhook: &str, timings: &Timings) -> String {
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
    route.insert("group_wait".into(), timings.group_wait.into());
    route.insert("group_interval".into(), timings.group_interval.into());
    route.insert("repeat_interval".into(), timings.repeat_interval.into());
    assert_eq!(doc["inhibit_rules"], shipped["inhibit_rules"]);
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on 127.0.0.1 with the test copy
/// of the shipped configuration, its receivers posting to a [`Webhook`] in this test; killed
/// on drop.
struct Alertmanager {
    url: String,
    hook: Webhook,
    dir: tempfile::TempDir,
    _child: prometheus::KillOnDrop,
}

impl Alertmanager {
    async fn start(timings: &Timings) -> Alertmanager {
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-")
            .tempdir()
            .unwrap();
        let (hook, hook_url) = Webhook::start().await;
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, test_config(&hook_url, timings)).unwrap();
        let storage = dir.path().join("data");
        let (child, url) = start_daemon("prometheus-alertmanager", dir.path(), |port| {
            vec![
                format!("--config.file={}", config_file.display()),
                format!("--storage.path={}", storage.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".to_string(),
                "--log.level=warn".to_string(),
            ]
        })
        .await;
        Alertmanager {
            url,
            hook,
            dir,
            _child: child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus-alertmanager.log"))
            .unwrap_or_default()
    }
}

/// A webhook receiver on 127.0.0.1: every POST's arrival time, path and JSON body, in
/// arrival order.
#[derive(Clone, Default)]
struct Webhook {
    received: Arc<Mutex<Vec<(Instant, String, Json)>>>,
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
                            received.lock().unwrap().push((Instant::now(), path, body));
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
        self.received_at()
            .into_iter()
            .map(|(_, path, body)| (path, body))
            .collect()
    }

    fn received_at(&self) -> Vec<(Instant, String, Json)> {
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
    let alertmanager = Alertmanager::start(&NO_REPEAT).await;
    let am = &alertmanager.url;

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
    let have = post_and_read(am, &alerts).await;
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
    let have = post_and_read(am, &[alert(&[("alertname", "OciRegistryExporterAbsent")])]).await;
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

/// The notifications about the registry `registry` whose alerts have status `status`
/// (`firing` or `resolved`): arrival time, receiver path and the alert.
fn notifications_about(
    hook: &Webhook,
    registry: &str,
    status: &str,
) -> Vec<(Instant, String, Json)> {
    hook.received_at()
        .into_iter()
        .flat_map(|(at, path, body)| {
            body["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["labels"]["registry"] == registry && a["status"] == status)
                .map(move |a| (at, path.clone(), a))
        })
        .collect()
}

/// Repeat and resolution through a real Alertmanager with the shipped route tree and
/// receivers (only the URLs and the group timings shortened): an alert still firing is
/// notified again once `repeat_interval` has passed, and not before; an alert that ends is
/// notified once more, resolved, and then never again. The alert is posted as Prometheus
/// posts it (`endsAt` ahead while firing, `endsAt` now when it resolves); the end-to-end test
/// below proves that Prometheus delivers the shipped rules' alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_is_repeated_and_its_resolution_notified() {
    // Every webhook of the shipped receivers says so itself: a receiver copied to another
    // integration (email defaults to false) keeps telling the on-call that it is over.
    for receiver in shipped_config()["receivers"].as_sequence().unwrap() {
        for hook in receiver["webhook_configs"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            assert_eq!(
                hook["send_resolved"],
                Yaml::Bool(true),
                "receiver {}: set send_resolved: true",
                receiver["name"].as_str().unwrap_or("?")
            );
        }
    }
    // Long against the 1 s group interval: a repeat at every group interval would come
    // after about 1 s. Slack for delivery jitter: 0.5 s early; late, the next group-interval
    // ticks of a loaded machine.
    const REPEAT: Duration = Duration::from_secs(4);
    let timings = Timings {
        group_wait: "1s",
        group_interval: "1s",
        repeat_interval: "4s",
    };
    let alertmanager = Alertmanager::start(&timings).await;
    let (am, hook) = (&alertmanager.url, &alertmanager.hook);
    let labels = a(
        "OciRegistryUnreachable",
        &[
            ("severity", "critical"),
            JOB,
            I1,
            ("registry", "flaky"),
            ("check", "registry"),
        ],
    );
    let starts_at = SystemTime::now();
    let posted = |ends_at: SystemTime| {
        let mut alert = alert(&labels);
        alert["startsAt"] = humantime::format_rfc3339_millis(starts_at)
            .to_string()
            .into();
        alert["endsAt"] = humantime::format_rfc3339_millis(ends_at).to_string().into();
        alert
    };
    post_and_read(am, &[posted(starts_at + Duration::from_secs(300))]).await;

    // Phase 1 (bounded: 150 × 100 ms): the first notification and its repeat.
    let mut firing = Vec::new();
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        firing = notifications_about(hook, "flaky", "firing");
        if firing.len() >= 2 {
            break;
        }
    }
    assert!(
        firing.len() >= 2,
        "no repeat of the firing alert within 15 s: {firing:#?}\nalertmanager log:\n{:?}",
        alertmanager.log()
    );
    let gap = firing[1].0 - firing[0].0;
    assert!(
        gap >= REPEAT - Duration::from_millis(500) && gap <= REPEAT + Duration::from_secs(5),
        "the repeat came {gap:?} after the first notification, want about the repeat \
         interval of {REPEAT:?}"
    );
    eprintln!("repeat after {gap:?} (repeat_interval {REPEAT:?})");
    for (_, path, alert) in &firing {
        assert_eq!(path, "/pager", "{alert}");
        assert_eq!(alert["labels"]["alertname"], "OciRegistryUnreachable");
    }

    // Phase 2 (bounded: 100 × 100 ms): it ends; one resolved notification, to the same
    // receiver, and then (for longer than a repeat interval) nothing more about it.
    post_and_read(am, &[posted(SystemTime::now())]).await;
    let resolved_posted = Instant::now();
    let mut resolved = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        resolved = notifications_about(hook, "flaky", "resolved");
        if !resolved.is_empty() {
            break;
        }
    }
    assert!(
        !resolved.is_empty(),
        "no resolved notification within 10 s of the alert's end\nalertmanager log:\n{:?}",
        alertmanager.log()
    );
    tokio::time::sleep(REPEAT + Duration::from_secs(2)).await;
    let resolved = notifications_about(hook, "flaky", "resolved");
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0].1, "/pager");
    let late_firing: Vec<_> = notifications_about(hook, "flaky", "firing")
        .into_iter()
        .filter(|(at, _, _)| *at > resolved_posted)
        .collect();
    assert!(
        late_firing.is_empty(),
        "firing notifications after the alert ended: {late_firing:#?}"
    );
}

/// Check interval of the exporter (see tests/suite/alerts/prometheus.rs for why not 1 s).
const CHECK_INTERVAL: &str = "2s";

/// The shipped rules with every `for:` shortened to 1 s, as tests/suite/alerts/prometheus.rs loads them,
/// except two whose order against another alert matters:
/// - OciRegistryExporterAbsent: `absent(up)` holds until Prometheus' first scrape, which its
///   real `for: 15m` covers; 10 s covers it here.
/// - OciRegistryCapabilityScoreDropped (`for: 30m`) and OciRegistryCheckFailing (`for:
///   15m`) fire long after OciRegistryUnreachable (`for: 5m`) in production, so the
///   inhibition is in place when they do. With all at 1 s the order was a race: a registry
///   stopped between the registry check and the capabilities check of one round drops the
///   score, and fails capabilities and referrers, a round before it is unreachable, and
///   that reached a person. 12 s keeps the shipped order, with room for a loaded machine
///   (6 s lost the race once with both cores busy).
fn rules_with_short_for() -> String {
    prometheus::rules_with_short_for(
        "1s",
        &[
            ("OciRegistryExporterAbsent", "10s"),
            ("OciRegistryCapabilityScoreDropped", "12s"),
            ("OciRegistryCheckFailing", "12s"),
        ],
    )
}

/// (alertname, registry) of the alerts Prometheus holds firing.
async fn firing_in_prometheus(prometheus: &Prometheus) -> BTreeSet<(String, String)> {
    prometheus
        .alerts()
        .await
        .unwrap_or_default()
        .iter()
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
    let alertmanager = Alertmanager::start(&NO_REPEAT).await;
    let hook = &alertmanager.hook;
    let prometheus = Prometheus::start(
        exporter.addr,
        &rules_with_short_for(),
        Some(&alertmanager.url),
    )
    .await;

    // Phase 1 (bounded: 40 × 500 ms): Prometheus has seen the doomed registry healthy, with
    // its capabilities, for a few scrapes.
    let mut seen_healthy = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let up = prometheus
            .query(
                r#"oci_registry_check_status{registry="doomed", check="registry", status="pass"} == 1
                   and on (registry) oci_registry_capability_score > 0"#,
            )
            .await
            .unwrap_or_default();
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
        prometheus.log(),
        exporter.metrics().await
    );
    doomed.kill();
    let stopped_at = Instant::now();

    // Phase 2 (bounded: 80 × 500 ms): both root causes notified and a dependent alert fired in
    // Prometheus, then 6 s more (many group intervals and evaluations) in which nothing else
    // may arrive.
    let want: BTreeSet<(String, String)> = [
        ("OciRegistryUnreachable", "doomed"),
        ("OciRegistryCredentialsInvalid", "bad-credentials"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    let mut prometheus_fired: BTreeSet<(String, String)> = BTreeSet::new();
    let mut complete_at: Option<Instant> = None;
    // When Prometheus first fired a dependent alert of the stopped registry: the wait goes on
    // 6 s past it too, so that Alertmanager had the time to send it had it not been inhibited.
    let mut dependent_at: Option<Instant> = None;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        prometheus_fired.extend(firing_in_prometheus(&prometheus).await);
        if dependent_at.is_none()
            && prometheus_fired
                .iter()
                .any(|(a, r)| r == "doomed" && a != "OciRegistryUnreachable")
        {
            dependent_at = Some(Instant::now());
        }
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
            Some(t)
                if t.elapsed() >= Duration::from_secs(6)
                    && dependent_at.is_some_and(|d| d.elapsed() >= Duration::from_secs(6)) =>
            {
                break;
            }
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
            let summary = a["annotations"]["summary"].as_str().unwrap_or("");
            if !summary.contains(registry.as_str()) {
                failures.push(format!(
                    "{alert}: summary does not name {registry}: {summary}"
                ));
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
    for q in [
        "min_over_time(up[1m])",
        "count_over_time(up[1m])",
        "changes(oci_registry_check_status{check=\"registry\",status=\"fail\",registry=\"doomed\"}[1m])",
        "count_over_time(oci_registry_check_status{check=\"registry\",status=\"fail\",registry=\"doomed\"}[1m])",
        "scrape_duration_seconds",
        "max_over_time(scrape_duration_seconds[1m])",
    ] {
        eprintln!("DEBUG {q}: {:?}", prometheus.query(q).await);
    }
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
            alertmanager.log(),
            prometheus.log(),
        );
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "the test took {elapsed:?}; keep it well under two minutes"
    );
    exporter.stop().await;
}
