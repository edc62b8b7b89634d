//! What a user sees on `/metrics` and `/probe` with the exporter against real CNCF
//! Distribution registries: every check's series end to end, the classic text format linted
//! by promtool and OpenMetrics negotiated, one registry per probe.

use crate::common;
use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Exporter, config_from_toml, reason_of, registry_toml, sample, status_of};
use support::{Kind, TestRegistry};

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
