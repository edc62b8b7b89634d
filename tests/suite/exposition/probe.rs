//! `/probe` under load, in-process on 127.0.0.1: concurrent probes of one target share one
//! run, probes have their own concurrency budget so a flood cannot starve the schedule, the
//! scrape-timeout header bounds a probe, a probe answer holds the registry's series only
//! (plus `probe_success` and `probe_duration_seconds`), and an unknown target's 400 stays
//! short.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Exporter, config_from_toml, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A registry on 127.0.0.1 that answers every request `200 {}` after `delay`, one request
/// per connection, and counts the requests. Abort the handle when done.
async fn counting_registry(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                // Read the request head (bounded: 64 KiB).
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                          Docker-Distribution-API-Version: registry/2.0\r\n\
                          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, count, task)
}

/// A black-holed registry: a listener that never accepts. Connections complete in the
/// kernel's backlog and requests are never answered, so every check runs to its timeout.
async fn black_hole() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn concurrent_probes_of_one_target_share_one_run() {
    let (addr, count, task) = counting_registry(Duration::from_millis(1500)).await;
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"counted\"\nurl = \"http://{addr}\"\ntimeout = \"10s\"\nchecks = [\"registry\"]\n"
    ));
    let exporter = Arc::new(Exporter::start(config).await);
    // One probe alone, twice (the second one is what a run costs once warmed up).
    for _ in 0..2 {
        count.store(0, Ordering::SeqCst);
        let (code, body) = exporter.get("/probe?target=counted").await;
        assert_eq!(code, 200, "{body}");
    }
    let one_run = count.load(Ordering::SeqCst);
    assert!(one_run >= 1);

    count.store(0, Ordering::SeqCst);
    let probes: Vec<_> = (0..50)
        .map(|_| {
            let exporter = exporter.clone();
            tokio::spawn(async move { exporter.get("/probe?target=counted").await })
        })
        .collect();
    let mut answers = Vec::new();
    for probe in probes {
        answers.push(probe.await.unwrap());
    }
    let flood = count.load(Ordering::SeqCst);
    println!("one run: {one_run} request(s); 50 concurrent probes: {flood} request(s)");
    assert_eq!(
        flood, one_run,
        "50 concurrent probes of one target must cost the registry one run"
    );
    for (code, body) in answers {
        assert_eq!(code, 200);
        assert_eq!(
            sample(&body, "probe_success", &[]),
            Some(1.0),
            "every probe gets the shared run's results:\n{body}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn a_probe_flood_does_not_starve_the_schedule() {
    let _alone = common::TIMED.lock().await;
    let hole = black_hole().await;
    let hole_addr = hole.local_addr().unwrap();
    // "good" refuses connections at once, so each of its rounds takes milliseconds and its
    // run counter shows whether its schedule keeps up. Two permits for scheduled checks:
    // "hole" takes one for its first round, "good" needs the other.
    let config = config_from_toml(&format!(
        "max_concurrency = 2\n\
         [[registries]]\nname = \"hole\"\nurl = \"http://{hole_addr}\"\ninterval = \"1h\"\ntimeout = \"3s\"\nchecks = [\"registry\"]\n\
         [[registries]]\nname = \"good\"\nurl = \"http://127.0.0.1:1\"\ninterval = \"1s\"\ntimeout = \"1s\"\nchecks = [\"registry\"]\n"
    ));
    let exporter = Arc::new(Exporter::start(config).await);
    exporter.wait_ready().await;
    let runs = |body: &str| {
        sample(
            body,
            "oci_registry_check_runs_total",
            &[("registry", "good"), ("check", "registry")],
        )
        .unwrap_or(0.0)
    };
    let before = runs(&exporter.metrics().await);

    // 48 probes of "hole", over all six check selections, each hanging for 3 s.
    let selections = [
        "registry",
        "credentials",
        "pull",
        "push",
        "capabilities",
        "referrers",
    ];
    let flood: Vec<_> = (0..48)
        .map(|i| {
            let exporter = exporter.clone();
            let check = selections[i % selections.len()];
            tokio::spawn(async move {
                exporter
                    .get(&format!("/probe?target=hole&check={check}"))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let after = runs(&exporter.metrics().await);
    println!(
        "good's scheduled runs during 4.5 s of probe flood: {}",
        after - before
    );
    assert!(
        after - before >= 3.0,
        "good ran {} times in 4.5 s at a 1 s interval while /probe flooded another registry",
        after - before
    );
    for probe in flood {
        probe.abort();
    }
    drop(hole);
}

#[tokio::test]
async fn the_scrape_timeout_header_bounds_a_probe() {
    let hole = black_hole().await;
    let addr = hole.local_addr().unwrap();
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"hole\"\nurl = \"http://{addr}\"\ntimeout = \"8s\"\nchecks = [\"registry\"]\n"
    ));
    let exporter = Exporter::start(config).await;
    let started = Instant::now();
    let (code, _, body) = exporter
        .get_with(
            "/probe?target=hole",
            &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
        )
        .await;
    let took = started.elapsed();
    println!("probe with a 2 s scrape timeout answered after {took:?}");
    assert_eq!(code, 200);
    assert!(
        took < Duration::from_millis(2500),
        "a probe with a 2 s scrape timeout took {took:?}"
    );
    assert_eq!(sample(&body, "probe_success", &[]), Some(0.0), "{body}");
    assert!(
        sample(&body, "probe_duration_seconds", &[]).is_some(),
        "{body}"
    );
    exporter.stop().await;
    drop(hole);
}

#[tokio::test]
async fn a_probe_answer_holds_the_registry_series_and_probe_success_only() {
    let (addr, _count, task) = counting_registry(Duration::ZERO).await;
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"r\"\nurl = \"http://{addr}\"\ntimeout = \"5s\"\nchecks = [\"registry\"]\n\
         [[registries]]\nname = \"down\"\nurl = \"http://127.0.0.1:1\"\ntimeout = \"5s\"\nchecks = [\"registry\"]\n"
    ));
    let exporter = Exporter::start(config).await;
    let (code, body) = exporter.get("/probe?target=r").await;
    assert_eq!(code, 200);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with("probe_") || line.contains("registry=\"r\""),
            "a probe answer holds only that registry's series, found: {line}\n{body}"
        );
    }
    assert!(
        !body.contains("oci_registry_exporter_"),
        "the exporter's own gauges belong to /metrics:\n{body}"
    );
    assert_eq!(sample(&body, "probe_success", &[]), Some(1.0), "{body}");
    let duration = sample(&body, "probe_duration_seconds", &[]).expect("probe_duration_seconds");
    assert!((0.0..5.0).contains(&duration), "{duration}");
    let (_, body) = exporter.get("/probe?target=down").await;
    assert_eq!(sample(&body, "probe_success", &[]), Some(0.0), "{body}");
    // /metrics keeps the exporter's own gauges and has no probe series.
    let metrics = exporter.metrics().await;
    assert!(metrics.contains("oci_registry_exporter_config_last_reload_successful 1"));
    assert!(!metrics.contains("probe_success"), "{metrics}");
    exporter.stop().await;
    task.abort();
}

#[tokio::test]
async fn an_unknown_target_names_a_few_registries_and_the_count() {
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!(
            "[[registries]]\nname = \"r{i:02}\"\nurl = \"http://127.0.0.1:1\"\n"
        ));
    }
    let exporter = Exporter::start(config_from_toml(&format!("mode = \"scrape\"\n{text}"))).await;
    let (code, body) = exporter.get("/probe?target=nope").await;
    assert_eq!(code, 400);
    assert_eq!(
        body.trim_end(),
        "unknown target \"nope\": /probe only reaches configured registries; 20 are configured, e.g. r00, r01, r02, r03, r04; see / for all of them"
    );
    exporter.stop().await;
}
