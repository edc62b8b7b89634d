//! When checks run, against real Distribution registries: scrape mode runs on a scrape and
//! reuses fresh results, interval mode repeats, readiness waits for every first round, and
//! a scrape waits no longer than Prometheus allows.

use crate::common;
use crate::support;

use std::time::Duration;

use common::{Exporter, config_from_toml, every_second_toml, registry_toml, sample, status_of};
use support::{Kind, TestRegistry};

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
