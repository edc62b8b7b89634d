//! The exporter against real CNCF Distribution registries: open, htpasswd, token auth,
//! read-only and TLS. Asserts what a user sees on /metrics and /probe.

use crate::common;
use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Exporter, config_from_toml, reason_of, run_one, sample, status_of};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};
use support::{Kind, TestRegistry};

fn registry_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n")
}

/// A registry checked every second, the shortest interval allowed (the timeout is at most
/// the interval).
fn every_second_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"1s\"\ninterval = \"1s\"\n{extra}\n"
    )
}

#[tokio::test]
async fn open_registry_metrics_end_to_end() {
    let reg = TestRegistry::start(Kind::Open).await;
    let config = config_from_toml(&format!(
        "{}{}",
        registry_toml("open", &reg.url, ""),
        registry_toml(
            "missing",
            &reg.url,
            "test_repository = \"team/nothing-here\""
        )
    ));
    let exporter = Exporter::start(config).await;
    exporter.wait_ready().await;
    let body = exporter.metrics().await;

    assert_eq!(
        status_of(&body, "open", "registry").as_deref(),
        Some("pass")
    );
    assert_eq!(status_of(&body, "open", "pull").as_deref(), Some("pass"));
    assert_eq!(reason_of(&body, "open", "pull").as_deref(), Some("ok"));
    assert_eq!(status_of(&body, "missing", "pull").as_deref(), Some("info"));
    assert_eq!(
        reason_of(&body, "missing", "pull").as_deref(),
        Some("not_found")
    );
    let code = |reg: &str, check: &str| {
        sample(
            &body,
            "oci_registry_check_http_status_code",
            &[("registry", reg), ("check", check)],
        )
    };
    assert_eq!(code("open", "registry"), Some(200.0));
    assert_eq!(code("open", "pull"), Some(200.0));
    assert_eq!(code("missing", "pull"), Some(404.0));
    let duration = sample(
        &body,
        "oci_registry_check_duration_seconds",
        &[("registry", "open"), ("check", "pull")],
    )
    .unwrap();
    assert!(duration > 0.0 && duration < 5.0, "duration {duration}");
    let last = sample(
        &body,
        "oci_registry_check_last_run_timestamp_seconds",
        &[("registry", "open"), ("check", "pull")],
    )
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 30.0, "last run {last}, now {now}");
    assert_eq!(
        sample(
            &body,
            "oci_registry_distribution_api_version_info",
            &[("registry", "open"), ("version", "registry/2.0")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "oci_registry_check_runs_total",
            &[("registry", "open"), ("check", "pull"), ("status", "pass")]
        ),
        Some(1.0)
    );
    // One histogram per registry, over the requests of all its checks: at least one
    // request per check run, and cumulative buckets ending at the count.
    let requests = sample(
        &body,
        "oci_registry_request_duration_seconds_count",
        &[("registry", "open")],
    )
    .unwrap();
    let runs: f64 = body
        .lines()
        .filter(|l| l.starts_with("oci_registry_check_runs_total{registry=\"open\","))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        runs >= 2.0 && requests >= runs,
        "{requests} requests, {runs} runs"
    );
    let buckets: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.starts_with("oci_registry_request_duration_seconds_bucket{registry=\"open\",")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&requests));
    // No URL, digest or error text in any label value.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("127.0.0.1") && !line.contains("sha256:"),
            "{line}"
        );
    }
    exporter.stop().await;
}

#[tokio::test]
async fn classic_output_lints_clean_with_promtool_and_openmetrics_is_negotiated() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let config = config_from_toml(&format!(
        "{}{}",
        registry_toml(
            "basic",
            &reg.url,
            &format!(
                "username = \"{}\"\npassword = \"{}\"",
                support::BASIC_USER,
                support::BASIC_PASSWORD
            )
        ),
        registry_toml("down", "http://127.0.0.1:1", "")
    ));
    let exporter = Exporter::start(config).await;
    exporter.wait_ready().await;

    let (code, ct, classic) = exporter.get_with("/metrics", &[]).await;
    assert_eq!(
        (code, ct.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test installs Debian's prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(classic.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && printed.trim().is_empty(),
        "promtool: {printed}\n{classic}"
    );

    let (code, ct, om) = exporter
        .get_with(
            "/metrics",
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE oci_registry_check_runs counter"));
    assert_eq!(status_of(&om, "down", "registry").as_deref(), Some("fail"));
    assert_eq!(
        reason_of(&om, "down", "registry").as_deref(),
        Some("connection_refused")
    );
    assert_eq!(status_of(&om, "basic", "pull").as_deref(), Some("pass"));
    exporter.stop().await;
}

#[tokio::test]
async fn basic_auth_right_wrong_and_missing_credentials() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let right = config_from_toml(&registry_toml(
        "basic",
        &reg.url,
        &format!(
            "username = \"{}\"\npassword = \"{}\"",
            support::BASIC_USER,
            support::BASIC_PASSWORD
        ),
    ));
    let r = run_one(&right, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert_eq!(
        r.evidence.get("digest"),
        Some(&support::seed_manifest_digest())
    );
    assert_eq!(
        r.evidence.get("media_type").map(String::as_str),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(
        r.evidence.get("auth_method").map(String::as_str),
        Some("basic")
    );

    let wrong = config_from_toml(&registry_toml(
        "basic",
        &reg.url,
        "username = \"alice\"\npassword = \"not-the-password\"",
    ));
    let r = run_one(&wrong, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::InvalidCredentials, Some(401))
    );
    assert!(!r.message.contains("not-the-password"));

    let anonymous = config_from_toml(&registry_toml("basic", &reg.url, ""));
    let r = run_one(&anonymous, CheckKind::Registry).await;
    assert_eq!((r.status, r.http_status), (Status::Pass, Some(401)));
    assert!(r.message.contains("Basic"), "{}", r.message);
    let r = run_one(&anonymous, CheckKind::Pull).await;
    assert_eq!((r.status, r.reason), (Status::Fail, Reason::Unauthorized));
    assert!(
        r.message.contains("no credentials are configured"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn probe_returns_one_registry_and_rejects_unknown_targets() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let config = config_from_toml(&format!(
        "{}{}",
        registry_toml(
            "good",
            &reg.url,
            &format!(
                "username = \"{}\"\npassword = \"{}\"",
                support::BASIC_USER,
                support::BASIC_PASSWORD
            )
        ),
        registry_toml(
            "bad",
            &reg.url,
            "username = \"alice\"\npassword = \"wrong\""
        )
    ));
    let exporter = Exporter::start(config).await;
    let (code, body) = exporter.get("/probe?target=bad").await;
    assert_eq!(code, 200);
    assert_eq!(status_of(&body, "bad", "pull").as_deref(), Some("fail"));
    assert_eq!(
        reason_of(&body, "bad", "pull").as_deref(),
        Some("invalid_credentials")
    );
    assert_eq!(
        sample(
            &body,
            "oci_registry_check_http_status_code",
            &[("registry", "bad"), ("check", "pull")]
        ),
        Some(401.0)
    );
    assert!(
        !body.contains("registry=\"good\""),
        "only the probed registry: {body}"
    );

    let (code, body) = exporter.get("/probe?target=good&check=pull").await;
    assert_eq!(code, 200);
    assert_eq!(status_of(&body, "good", "pull").as_deref(), Some("pass"));
    assert_eq!(
        status_of(&body, "good", "registry"),
        None,
        "only the asked check ran"
    );

    let (code, body) = exporter.get("/probe?target=http://127.0.0.1:1").await;
    assert_eq!(code, 400);
    assert_eq!(
        body.trim(),
        "unknown target \"http://127.0.0.1:1\": /probe only reaches configured registries; 2 are configured: good, bad"
    );
    let (code, body) = exporter.get("/probe").await;
    assert_eq!(
        (code, body.trim()),
        (
            400,
            "target parameter is missing; use /probe?target=<registry name>"
        )
    );
    let (code, body) = exporter.get("/probe?target=good&check=bogus").await;
    assert_eq!(code, 400);
    assert!(body.starts_with("unknown check \"bogus\""), "{body}");
    exporter.stop().await;
}

#[tokio::test]
async fn token_auth_users_wrong_password_cache_and_token_server_down() {
    let reg = TestRegistry::start(Kind::Token).await;
    let creds = |u: &str, p: &str| format!("username = \"{u}\"\npassword = \"{p}\"");
    let bob = config_from_toml(&registry_toml(
        "tok",
        &reg.url,
        &creds(support::TOKEN_ADMIN_USER, support::TOKEN_ADMIN_PASSWORD),
    ));
    let r = run_one(&bob, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert_eq!(
        r.evidence.get("digest"),
        Some(&support::seed_manifest_digest())
    );

    // Anonymous: the token server hands out anonymous pull tokens on library/*.
    let anon = config_from_toml(&registry_toml("tok", &reg.url, ""));
    let r = run_one(&anon, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);

    let wrong = config_from_toml(&registry_toml("tok", &reg.url, &creds("bob", "wrong")));
    let r = run_one(&wrong, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidCredentials),
        "{}",
        r.message
    );
    assert!(!r.message.contains("wrong\""), "{}", r.message);

    // One token per scope, reused until shortly before expiry: three rounds, one token.
    reg.reset_token_requests();
    let exporter_config = config_from_toml(&every_second_toml(
        "tok",
        &reg.url,
        &format!(
            "{}\nchecks = [\"registry\", \"pull\"]",
            creds("reader", support::TOKEN_READER_PASSWORD)
        ),
    ));
    let exporter = Exporter::start(exporter_config).await;
    exporter.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let body = exporter.metrics().await;
    let runs = sample(
        &body,
        "oci_registry_check_runs_total",
        &[("registry", "tok"), ("check", "pull"), ("status", "pass")],
    )
    .unwrap_or(0.0);
    assert!(runs >= 3.0, "pull ran {runs} times:\n{body}");
    assert_eq!(
        reg.token_requests(),
        1,
        "token fetched once for {runs} pulls"
    );
    exporter.stop().await;

    reg.stop_token_server();
    let r = run_one(&bob, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::TokenEndpointUnreachable, None),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn tls_registry_with_ca_without_and_insecure() {
    let reg = TestRegistry::start(Kind::Tls).await;
    let ca = reg.ca_file.clone().unwrap();
    let with_ca = config_from_toml(&registry_toml(
        "tls",
        &reg.url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&with_ca, kind).await;
        assert_eq!(r.status, Status::Pass, "{kind:?}: {}", r.message);
    }
    let without = config_from_toml(&registry_toml("tls", &reg.url, ""));
    let r = run_one(&without, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Tls, None),
        "{}",
        r.message
    );
    let insecure = config_from_toml(&registry_toml(
        "tls",
        &reg.url,
        "insecure_skip_verify = true",
    ));
    let r = run_one(&insecure, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    // Plain HTTP to the TLS port: Go answers 400 "client sent an HTTP request to an HTTPS server".
    let http = config_from_toml(&registry_toml(
        "tls",
        &reg.url.replace("https://", "http://"),
        "",
    ));
    let r = run_one(&http, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.http_status),
        (Status::Warn, Some(400)),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn read_only_registry_still_serves_pulls() {
    let reg = TestRegistry::start(Kind::ReadOnly).await;
    let config = config_from_toml(&registry_toml("ro", &reg.url, ""));
    let r = run_one(&config, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.http_status),
        (Status::Pass, Some(200)),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn scrape_mode_runs_on_scrape_and_reuses_fresh_results() {
    let reg = TestRegistry::start(Kind::Open).await;
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\nmin_interval = \"1h\"\n{}",
        registry_toml("open", &reg.url, "")
    ));
    let exporter = Exporter::start(config).await;
    assert_eq!(
        exporter.get("/-/ready").await.0,
        200,
        "scrape mode is ready at once"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, page) = exporter.get("/").await;
    assert!(
        page.contains("no result yet"),
        "nothing runs before a scrape: {page}"
    );

    let runs = |body: &str| {
        sample(
            body,
            "oci_registry_check_runs_total",
            &[("registry", "open"), ("check", "pull"), ("status", "pass")],
        )
    };
    let (_, _, first) = exporter
        .get_with("/metrics", &[("x-prometheus-scrape-timeout-seconds", "5")])
        .await;
    assert_eq!(runs(&first), Some(1.0), "{first}");
    let second = exporter.metrics().await;
    assert_eq!(
        runs(&second),
        Some(1.0),
        "a result younger than min_interval is reused"
    );
    exporter.stop().await;
}

#[tokio::test]
async fn interval_mode_repeats_and_status_page_shows_results() {
    let reg = TestRegistry::start(Kind::Open).await;
    let config = config_from_toml(&every_second_toml("open", &reg.url, ""));
    let exporter = Exporter::start(config).await;
    exporter.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let body = exporter.metrics().await;
    let runs = sample(
        &body,
        "oci_registry_check_runs_total",
        &[
            ("registry", "open"),
            ("check", "registry"),
            ("status", "pass"),
        ],
    )
    .unwrap();
    assert!(runs >= 3.0, "ran {runs} times in ~2.8 s at a 1 s interval");
    let (code, page) = exporter.get("/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<td>pull</td>") && page.contains(">pass</span>"),
        "{page}"
    );
    assert!(page.contains("/probe?target=open"));
    assert_eq!(exporter.get("/-/healthy").await.0, 200);
    exporter.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_every_first_round_which_comes_early_even_at_long_intervals() {
    let reg = TestRegistry::start(Kind::Open).await;
    // A registry that accepts connections and never answers: its first round takes 2 s.
    let (addr, hold) = common::hanging_server(Duration::from_secs(20)).await;
    // Hourly checks: later rounds are spread over the hour, first rounds come at once.
    let hourly = |name: &str, url: &str, timeout: &str| {
        format!(
            "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ninterval = \"1h\"\ntimeout = \"{timeout}\"\nchecks = [\"registry\"]\n"
        )
    };
    let config = config_from_toml(
        &[
            hourly("hang", &format!("http://{addr}"), "2s"),
            hourly("a", &reg.url, "5s"),
            hourly("b", &reg.url, "5s"),
            hourly("c", &reg.url, "5s"),
        ]
        .concat(),
    );
    let exporter = Exporter::start(config).await;
    let (code, text) = exporter.get("/-/ready").await;
    assert_eq!(
        code, 503,
        "not ready while a first round still runs: {text}"
    );
    // Within wait_ready's 15 s, not the hour.
    exporter.wait_ready().await;
    let body = exporter.metrics().await;
    assert_eq!(
        status_of(&body, "hang", "registry").as_deref(),
        Some("fail"),
        "{body}"
    );
    for r in ["a", "b", "c"] {
        assert_eq!(
            status_of(&body, r, "registry").as_deref(),
            Some("pass"),
            "{r} has its result when the exporter is ready:\n{body}"
        );
    }
    exporter.stop().await;
    hold.abort();
}

#[tokio::test]
async fn a_scrape_waits_no_longer_than_prometheus_allows() {
    // A registry that accepts connections and never answers.
    let (addr, hold) = common::hanging_server(Duration::from_secs(20)).await;
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"hang\"\nurl = \"http://{addr}\"\ntimeout = \"10s\"\n"
    ));
    let exporter = Exporter::start(config).await;
    let started = std::time::Instant::now();
    let (code, _, _) = exporter
        .get_with(
            "/metrics",
            &[("x-prometheus-scrape-timeout-seconds", "1.5")],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "answered after {took:?}: the scrape timeout minus 0.5 s bounds the wait"
    );
    exporter.stop().await;
    hold.abort();
}

#[test]
fn the_binary_stops_gracefully_on_sigterm() {
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("OCI__RegistryUrl", "http://127.0.0.1:1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the exporter listens");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(err.contains("shutting down"), "{err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the exporter did not exit within 5 s of SIGTERM");
}
