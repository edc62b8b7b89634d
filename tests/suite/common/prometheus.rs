//! Real Prometheus-ecosystem daemons for the tests: child processes on 127.0.0.1 with a
//! bounded start-up wait, killed when dropped; and a Prometheus (Debian's `prometheus`)
//! scraping an exporter with the shipped rules, their `for:` shortened.
//!
//! It does not start registries or the exporter (tests/support and `common::Exporter`), and
//! it holds no Alertmanager configuration: tests/suite/alerts/alertmanager.rs starts Alertmanager through
//! [`start_daemon`] with its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// Scrape and rule evaluation interval of the tests' Prometheus.
pub const INTERVAL: &str = "1s";

/// A child process killed (and reaped) when dropped, also when the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP client for the daemons on 127.0.0.1: no proxy, 5 s per request.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client with a timeout and no proxy builds")
}

/// Starts `program` on a free 127.0.0.1 port (`args(port)`), logging into
/// `dir/<program>.log`, and waits (bounded: 10 s per attempt, 3 attempts) until `/-/ready`
/// answers 200. Returns the process and its base URL.
pub async fn start_daemon(
    program: &str,
    dir: &Path,
    args: impl Fn(u16) -> Vec<String>,
) -> (KillOnDrop, String) {
    let log_path = dir.join(format!("{program}.log"));
    let client = http();
    // A port picked free can be taken before the daemon binds it: try a few.
    for _ in 0..3 {
        let port = super::free_port();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = KillOnDrop(
            Command::new(program)
                .args(args(port))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} is installed (scripts/test installs it): {e}")
                }),
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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rules with every `for:` set to `short` (or to the duration `longer` gives
/// that alert) and every group evaluated at the global interval: the rules' timing is
/// proven by the promtool unit tests, a live test only needs them to fire within seconds.
pub fn rules_with_short_for(short: &str, longer: &[(&str, &str)]) -> String {
    let path = root().join("alerts/oci-registry-exporter.rules.yml");
    let mut doc: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for group in doc["groups"].as_sequence_mut().expect("groups") {
        let g = group.as_mapping_mut().unwrap();
        g.remove("interval");
        for rule in g["rules"].as_sequence_mut().unwrap() {
            let duration = longer
                .iter()
                .find(|(alert, _)| rule["alert"].as_str() == Some(alert))
                .map_or(short, |(_, d)| d);
            let r = rule.as_mapping_mut().unwrap();
            if r.contains_key("for") {
                r.insert("for".into(), duration.into());
            }
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// A `prometheus` process on 127.0.0.1 scraping one exporter (job `oci-registry-exporter`)
/// every [`INTERVAL`], with its own data directory; killed on drop.
pub struct Prometheus {
    pub url: String,
    _child: KillOnDrop,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `rules` loaded, sending alerts to `alertmanager` (a base URL)
    /// if given.
    pub async fn start(exporter: SocketAddr, rules: &str, alertmanager: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let alerting = match alertmanager {
            Some(am) => format!(
                "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: [\"{}\"]}}]\n",
                am.trim_start_matches("http://")
            ),
            None => String::new(),
        };
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  \
                 evaluation_interval: {INTERVAL}\n\
                 rule_files: [rules.yml]\n\
                 {alerting}\
                 scrape_configs:\n  - job_name: oci-registry-exporter\n    \
                 static_configs: [{{targets: [\"{exporter}\"]}}]\n"
            ),
        )
        .unwrap();
        let config_file = dir.path().join("prometheus.yml");
        let data = dir.path().join("data");
        let (child, url) = start_daemon("prometheus", dir.path(), |port| {
            vec![
                format!("--config.file={}", config_file.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_string(),
            ]
        })
        .await;
        Prometheus {
            url,
            _child: child,
            http: http(),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; the `data` of a successful answer, or the error Prometheus gave.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Json, String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let body: Json = resp
            .json()
            .await
            .map_err(|e| format!("GET {path}: not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query: its result (a vector's samples; a scalar as one element).
    pub async fn query(&self, promql: &str) -> Result<Vec<Json>, String> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await?;
        Ok(match data["resultType"].as_str() {
            Some("vector" | "matrix") => data["result"].as_array().cloned().unwrap_or_default(),
            _ => vec![data["result"].clone()],
        })
    }

    /// The alerts Prometheus holds (pending and firing), as `/api/v1/alerts` lists them.
    pub async fn alerts(&self) -> Result<Vec<Json>, String> {
        let data = self.api("/api/v1/alerts", &[]).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }
}
