//! Test helpers that run the exporter: in-process, on 127.0.0.1, with a bounded wait;
//! `prometheus` runs Prometheus and other daemons as child processes, `promql` reads PromQL,
//! `mock` builds the answers of emulated registries.
#![allow(dead_code)]

pub mod mock;
pub mod prometheus;
pub mod promql;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oci_registry_exporter::checks::{self, CheckKind, CheckResult};
use oci_registry_exporter::client::RegistryClient;
use oci_registry_exporter::config::{Config, Target};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One registry of a configuration: `name` at `url`, a 5 s timeout, and `extra` lines.
pub fn registry_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n")
}

/// A registry checked every second, the shortest interval allowed (the timeout is at most
/// the interval).
pub fn every_second_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"1s\"\ninterval = \"1s\"\n{extra}\n"
    )
}

/// Held by the tests that time the exporter while flooding it (`exposition::web_config`'s
/// login and slow-sender floods, `exposition::probe`'s probe flood, `limits::slow_readers`)
/// and by the one that keeps both cores busy (`deploy::dockerfile`'s `cargo check`): the
/// tests of one binary run two at a time on 2 cores, and two floods at once skew each
/// other's timings (a slow-sender flood beside the probe flood lost its authenticated
/// scrape), which they never met when each file was a binary of its own.
pub static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it), for a server a test
/// starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on 127.0.0.1 that accepts connections and never answers; it holds at most 8
/// connections and stops by itself after `idle` without a new one. Abort the handle when done.
pub async fn hanging_server(idle: Duration) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(idle, listener.accept()).await {
                Ok(Ok((s, _))) => held.push(s),
                _ => break,
            }
        }
    });
    (addr, hold)
}

/// A finished process's exit code (-1 when a signal ended it), stdout and stderr.
pub fn exit_and_output(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses a TOML config text the way `--config` would.
pub fn config_from_toml(text: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"))
}

/// Runs one check of the first registry of `config` directly.
pub async fn run_one(config: &Config, kind: CheckKind) -> CheckResult {
    let target: &Arc<Target> = &config.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    checks::run_check(kind, target, &client).await
}

/// An exporter running in this process until dropped.
pub struct Exporter {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

impl Exporter {
    pub async fn start(config: Config) -> Exporter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            oci_registry_exporter::run(config, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("exporter runs");
        });
        Exporter {
            addr,
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn post(&self, path: &str) -> (u16, String) {
        let resp = self.http.post(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (resp.status().as_u16(), ct, resp.text().await.unwrap())
    }

    /// Waits (at most 15 s) until `/-/ready` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..150 {
            if self.get("/-/ready").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("exporter not ready after 15 s");
    }

    pub async fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics").await;
        assert_eq!(code, 200);
        body
    }

    /// Stops the exporter and waits for it, proving shutdown completes.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("exporter stops within 10 s")
                .unwrap();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The value of the sample `name{labels...}` in a text exposition, if present.
/// Matches when every given label pair is on the series (others may be too).
pub fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}

/// The status of `check` on `registry` according to the state set, or None.
pub fn status_of(body: &str, registry: &str, check: &str) -> Option<String> {
    ["pass", "info", "warn", "fail", "skip"]
        .iter()
        .find(|s| {
            sample(
                body,
                "oci_registry_check_status",
                &[("registry", registry), ("check", check), ("status", s)],
            ) == Some(1.0)
        })
        .map(|s| s.to_string())
}

/// The current reason of `check` on `registry`.
pub fn reason_of(body: &str, registry: &str, check: &str) -> Option<String> {
    body.lines()
        .filter(|l| l.starts_with("oci_registry_check_reason{"))
        .filter(|l| {
            l.contains(&format!("registry=\"{registry}\""))
                && l.contains(&format!("check=\"{check}\""))
                && l.ends_with(" 1")
        })
        .find_map(|l| {
            let start = l.find("reason=\"")? + 8;
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_string())
        })
}

/// Makes `/v2/` ask for Basic, as a htpasswd registry does: the exporter sends credentials
/// only after a challenge (see the auth negotiation in `client`).
#[allow(dead_code)] // Not every test binary that includes `common` uses it.
pub async fn basic_challenge(server: &mut mockito::ServerGuard) {
    server
        .mock("GET", "/v2/")
        .with_status(401)
        .with_header("www-authenticate", "Basic realm=\"mock\"")
        .create_async()
        .await;
}
