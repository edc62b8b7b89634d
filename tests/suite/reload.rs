//! Configuration reload through SIGHUP and POST /-/reload, against the real binary and a
//! real registry: removed registries and checks leave /metrics, added ones start at once,
//! kept ones keep their schedule, an invalid config is refused and the running one stays.

use crate::common;
use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{sample, status_of};
use support::{Kind, TestRegistry};

struct Daemon {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(config)
            .env_remove("OCI__RegistryUrl")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon {
            child,
            port,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        for _ in 0..100 {
            if let Ok(resp) = self
                .http
                .get(format!("http://127.0.0.1:{}{path}", self.port))
                .send()
                .await
            {
                return (resp.status().as_u16(), resp.text().await.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the exporter never answered {path}");
    }

    async fn post(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Polls /metrics until `pred` holds (at most 10 s).
    async fn metrics_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut body = String::new();
        for _ in 0..100 {
            body = self.get("/metrics").await.1;
            if pred(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} never happened:\n{body}");
    }
}

fn registry(name: &str, url: &str, checks: &str) -> String {
    format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ninterval = \"1s\"\nchecks = [{checks}]\n"
    )
}

#[tokio::test]
async fn sighup_and_post_reload_apply_or_refuse() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let both = "\"registry\", \"pull\"";
    std::fs::write(
        &path,
        format!(
            "{}{}",
            registry("a", &reg.url, both),
            registry("b", &reg.url, both)
        ),
    )
    .unwrap();
    let d = Daemon::start(&path);
    let body = d
        .metrics_until("a first round of a and b", |m| {
            status_of(m, "a", "pull").is_some() && status_of(m, "b", "pull").is_some()
        })
        .await;
    assert_eq!(
        sample(
            &body,
            "oci_registry_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    let first_success = sample(
        &body,
        "oci_registry_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    // SIGHUP: b removed, c added, a loses its pull check.
    std::fs::write(
        &path,
        format!(
            "{}{}",
            registry("a", &reg.url, "\"registry\""),
            registry("c", &reg.url, both)
        ),
    )
    .unwrap();
    d.hup();
    let body = d
        .metrics_until("c checked and b gone", |m| {
            status_of(m, "c", "pull").as_deref() == Some("pass") && !m.contains("registry=\"b\"")
        })
        .await;
    assert!(
        !body.contains("registry=\"a\",check=\"pull\""),
        "a's dropped check left /metrics:\n{body}"
    );
    assert_eq!(status_of(&body, "a", "registry").as_deref(), Some("pass"));
    let (code, _) = d.get("/probe?target=b").await;
    assert_eq!(code, 400, "b is no longer configured");

    // An invalid config is refused with its message; the running one stays.
    std::fs::write(&path, "[[registries]]\nname = \"a\"\nurl = \"not a url\"\n").unwrap();
    let (code, text) = d.post("/-/reload").await;
    assert_eq!(code, 500);
    assert_eq!(
        text.trim(),
        "invalid config: registries[0].url: \"not a url\" is not a valid URL (relative URL without a base); write an absolute URL such as \"https://registry.example.com\"; the running configuration stays in force"
    );
    let body = d.get("/metrics").await.1;
    assert_eq!(
        sample(
            &body,
            "oci_registry_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(d.get("/probe?target=c").await.0, 200, "c still configured");
    d.hup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        d.get("/probe?target=c").await.0,
        200,
        "a refused SIGHUP reload changes nothing"
    );

    let (code, _) = d.get("/-/reload").await;
    assert_eq!(code, 405, "GET /-/reload is not allowed");

    std::fs::write(&path, registry("a", &reg.url, both)).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, text) = d.post("/-/reload").await;
    assert_eq!((code, text.trim()), (200, "config reloaded"));
    let body = d
        .metrics_until("c gone after the good reload", |m| {
            !m.contains("registry=\"c\"")
        })
        .await;
    assert_eq!(
        sample(
            &body,
            "oci_registry_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    let later = sample(
        &body,
        "oci_registry_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(later > first_success, "{later} > {first_success}");
}

/// Scrape mode: a round still in flight when a reload removes its registry must not record
/// anything afterwards (it used to bring the removed registry back into /metrics as `fail`).
#[tokio::test]
async fn a_scrape_round_in_flight_never_reaches_the_next_generation() {
    // A registry that accepts connections and never answers: its check runs to its timeout.
    let (addr, hold) = common::hanging_server(Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "mode = \"scrape\"\n[[registries]]\nname = \"hang\"\nurl = \"http://{addr}\"\ntimeout = \"2s\"\nchecks = [\"registry\"]\n"
        ),
    )
    .unwrap();
    let config = oci_registry_exporter::Config::load(Some(&path)).unwrap();
    let exporter = common::Exporter::start(config).await;
    // This scrape gives up after 0.5 s; the round goes on in the background.
    let (code, _, body) = exporter
        .get_with("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "1")])
        .await;
    assert_eq!(code, 200);
    assert_eq!(status_of(&body, "hang", "registry"), None, "still running");

    // The reload removes "hang" while its round is in flight; the new registry refuses at once.
    std::fs::write(
        &path,
        "mode = \"scrape\"\n[[registries]]\nname = \"other\"\nurl = \"http://127.0.0.1:1\"\nchecks = [\"registry\"]\n",
    )
    .unwrap();
    assert_eq!(exporter.post("/-/reload").await.0, 200);

    // Past the old round's timeout: had it survived, it would have recorded by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = exporter.metrics().await;
    assert!(
        !body.contains("registry=\"hang\""),
        "the removed registry came back from a round of the old generation:\n{body}"
    );
    assert!(status_of(&body, "other", "registry").is_some(), "{body}");
    let (_, page) = exporter.get("/").await;
    assert!(!page.contains(">hang<"), "the status page lists it too");
    exporter.stop().await;
    hold.abort();
}

/// Interval mode: a reload starts the added registries at once, and the kept ones go on
/// with their schedule rather than all running a round at the same moment.
#[tokio::test]
async fn a_reload_starts_added_registries_and_keeps_the_schedule_of_the_others() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let hourly = |name: &str| {
        format!(
            "[[registries]]\nname = \"{name}\"\nurl = \"{}\"\ninterval = \"1h\"\nchecks = [\"registry\"]\n",
            reg.url
        )
    };
    std::fs::write(&path, hourly("kept")).unwrap();
    let config = oci_registry_exporter::Config::load(Some(&path)).unwrap();
    let exporter = common::Exporter::start(config).await;
    exporter.wait_ready().await;
    let runs = |body: &str, r: &str| {
        sample(
            body,
            "oci_registry_check_runs_total",
            &[("registry", r), ("check", "registry"), ("status", "pass")],
        )
    };
    assert_eq!(runs(&exporter.metrics().await, "kept"), Some(1.0));

    std::fs::write(&path, hourly("kept") + &hourly("added")).unwrap();
    assert_eq!(exporter.post("/-/reload").await.0, 200);
    let mut body = String::new();
    for _ in 0..100 {
        body = exporter.metrics().await;
        if runs(&body, "added").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        runs(&body, "added"),
        Some(1.0),
        "added: checked at once\n{body}"
    );
    // A round of `kept` started by the reload (within a second, as before) would be done.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = exporter.metrics().await;
    assert_eq!(
        runs(&body, "kept"),
        Some(1.0),
        "kept: its next round is an hour after its first, not at the reload\n{body}"
    );
    assert_eq!(exporter.get("/-/ready").await.0, 200);
    exporter.stop().await;
}

/// A server on 127.0.0.1 that accepts connections and never answers, for as long as the
/// handle is not aborted (at most 256 connections held): a black-holed registry.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            if held.len() > 256 {
                held.remove(0);
            }
        }
    });
    (addr, hold)
}

/// Interval mode with a reload every 2 s (a config-reloader sidecar, a GitOps loop): a dead
/// registry whose settings do not change keeps its round across the reloads, so its result
/// keeps updating; one whose settings change at each reload restarts its round each time,
/// and no result of a retired configuration is recorded (issue 24 §3).
#[tokio::test]
async fn reloads_every_two_seconds_leave_an_unchanged_dead_registrys_result_updating() {
    let (dead, hold) = black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // Three checks, each running into its 1 s timeout: a round lasts about 3 s, longer
    // than the time between two reloads.
    // Two more over TLS, each naming a CA bundle: one left as it is, one renewed (rewritten,
    // another size) before every reload, which a reload must take in with a new client.
    let ca = support::tls::server_tls().ca_pem;
    let (kept_ca, renewed_ca) = (dir.path().join("kept.pem"), dir.path().join("renewed.pem"));
    std::fs::write(&kept_ca, &ca).unwrap();
    let config = |tag: u32| {
        format!(
            "[[registries]]\nname = \"unchanged\"\nurl = \"http://{dead}\"\ninterval = \"3s\"\ntimeout = \"1s\"\nchecks = [\"registry\", \"pull\", \"referrers\"]\n\
             [[registries]]\nname = \"changing\"\nurl = \"http://{dead}\"\ninterval = \"3s\"\ntimeout = \"1s\"\nchecks = [\"registry\", \"pull\", \"referrers\"]\ntest_tag = \"t{tag}\"\n\
             [[registries]]\nname = \"unchanged-tls\"\nurl = \"https://{dead}\"\ninterval = \"3s\"\ntimeout = \"1s\"\nchecks = [\"registry\", \"pull\", \"referrers\"]\nca_file = \"{}\"\n\
             [[registries]]\nname = \"renewed-ca\"\nurl = \"https://{dead}\"\ninterval = \"3s\"\ntimeout = \"1s\"\nchecks = [\"registry\", \"pull\", \"referrers\"]\nca_file = \"{}\"\n",
            kept_ca.display(),
            renewed_ca.display()
        )
    };
    let renew = |tag: u32| {
        std::fs::write(&renewed_ca, ca.repeat(1 + tag as usize % 2)).unwrap();
    };
    renew(0);
    std::fs::write(&path, config(0)).unwrap();
    let exporter =
        common::Exporter::start(oci_registry_exporter::Config::load(Some(&path)).unwrap()).await;
    let runs = |body: &str, registry: &str| {
        sample(
            body,
            "oci_registry_check_runs_total",
            &[
                ("registry", registry),
                ("check", "registry"),
                ("status", "fail"),
            ],
        )
    };
    let mut seen = Vec::new();
    let mut seen_tls = Vec::new();
    for tag in 1..=7 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::fs::write(&path, config(tag)).unwrap();
        renew(tag);
        assert_eq!(exporter.post("/-/reload").await.0, 200);
        let body = exporter.metrics().await;
        seen.push((runs(&body, "unchanged"), runs(&body, "changing")));
        seen_tls.push((runs(&body, "unchanged-tls"), runs(&body, "renewed-ca")));
    }
    let (unchanged, changing) = seen.last().copied().unwrap();
    let (unchanged_tls, renewed) = seen_tls.last().copied().unwrap();
    assert!(
        unchanged_tls.unwrap_or(0.0) >= 2.0,
        "a registry whose CA bundle is unchanged keeps its rounds too ({seen_tls:?})"
    );
    assert_eq!(
        renewed, None,
        "a renewed CA bundle restarts the registry's round at each reload ({seen_tls:?})"
    );
    assert!(
        unchanged.unwrap_or(0.0) >= 2.0,
        "the unchanged registry's rounds go on across the reloads (runs after each reload: {seen:?})"
    );
    assert_eq!(
        changing, None,
        "the changing registry's rounds restart at each reload, and none of a retired configuration is recorded ({seen:?})"
    );
    exporter.stop().await;
    hold.abort();
}
