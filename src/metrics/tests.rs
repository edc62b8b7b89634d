//! Unit tests of the metrics: the streamed body, the families written from the store, the
//! declarations against what is written, and content negotiation.

use super::declared::Writer;
use super::exposition::{Heads, REQUEST_BUCKET_LABELS, Row, escaped, push_seconds};
use super::*;
use crate::outcome::{AuthMethod, CheckKind, CheckResult, Reason, Status};
use crate::outcome::{Capability, CapabilityStatus};
use crate::process::Figure;
use crate::store::REQUEST_BUCKETS;

fn store_with(results: &[(&str, CheckResult)]) -> Store {
    let store = Store::new(10);
    for (registry, r) in results {
        store.put(registry, r.clone());
    }
    store
}

/// `n` registries, each with a registry-check result: a text of many pieces.
fn many_registries(n: usize) -> Store {
    let store = Store::new(0);
    for i in 0..n {
        let r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "ok");
        store.put(&format!("registry-{i}"), r);
    }
    store
}

#[test]
fn streamed_pieces_join_to_the_whole_text_and_stay_bounded() {
    let store = many_registries(3_000);
    let m = Metrics::new("https://example.invalid/runbooks");
    for format in [Format::Classic, Format::OpenMetrics] {
        let mut pieces = Vec::new();
        assert!(m.encode_chunks(&store, format, &mut |p| {
            pieces.push(p);
            true
        }));
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let whole = m.encode(&store, format);
        // The exporter's own series hold the process' CPU time, which moves: compare
        // the registries' part, and that both end alike.
        let cut = |t: &str| t[..t.find("# HELP oci_registry_check_info").unwrap()].to_string();
        let joined = String::from_utf8(joined).unwrap();
        assert_eq!(cut(&joined), cut(&whole), "{format:?}");
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        for p in &pieces[..pieces.len() - 1] {
            assert!(
                (CHUNK - CHUNK_SLACK..=CHUNK).contains(&p.len()),
                "a piece of {} bytes",
                p.len()
            );
        }
    }
}

#[test]
fn a_refused_piece_stops_the_encoder() {
    let store = many_registries(3_000);
    let m = Metrics::new("https://example.invalid/runbooks");
    let mut offered = 0;
    let whole = m.encode_chunks(&store, Format::Classic, &mut |_| {
        offered += 1;
        offered < 3
    });
    assert!(!whole);
    assert_eq!(
        offered, 3,
        "the encoder went on after its piece was refused"
    );
}

#[test]
fn a_family_is_skipped_only_when_it_has_no_series() {
    use crate::outcome::{Capability, CapabilityStatus, RateLimit};
    let mut rich = CheckResult::new(CheckKind::Capabilities, Status::Warn, Reason::Ok, "x");
    rich.api_version = Some("registry/2.0".into());
    rich.facts.auth_method = Some(AuthMethod::Bearer);
    rich.facts.token_request_duration = Some(Duration::from_millis(3));
    rich.facts.token_expiry = Some(SystemTime::now());
    rich.facts.tls_certificate_expiry = Some(SystemTime::now());
    rich.facts.token_endpoint_tls_certificate_expiry = Some(SystemTime::now());
    rich.facts.rate_limit = Some(RateLimit {
        limit: 100.0,
        remaining: 5.0,
    });
    rich.facts.upload_cancelled = Some(true);
    rich.facts.capabilities = vec![(Capability::ALL[0], CapabilityStatus::ALL[0])];
    rich.facts.referrers_count = Some(2);
    rich.facts.blob_duration = Some(Duration::from_millis(4));
    rich.facts.implementation = Some(crate::outcome::Recognition {
        implementation: crate::outcome::Implementation::Harbor,
        evidence: "x",
    });
    let bare = CheckResult::new(CheckKind::Registry, Status::Fail, Reason::Timeout, "x");
    let store = store_with(&[("rich", rich), ("bare", bare)]);
    let mut seen = 0;
    for e in store.entries() {
        let (mut checks, mut runs, mut text) = (Vec::new(), Vec::new(), String::new());
        let slots = e.lock();
        let row = Row::of(&slots, &mut checks, &mut runs, &mut text);
        let has: Vec<bool> = METRICS
            .iter()
            .filter_map(|d| match d.writer {
                Writer::Registry(family) => Some(family.has_series(&row, &slots)),
                _ => None,
            })
            .collect();
        drop(slots);
        let families = METRICS.iter().filter_map(|d| match d.writer {
            Writer::Registry(family) => Some((d, family)),
            _ => None,
        });
        for ((d, family), has_series) in families.zip(has) {
            let mut text = String::new();
            // A fact family locks the entry itself.
            family.write(&mut text, &Heads::of(d), &escaped(&e.name), &row, &e);
            assert_eq!(!text.is_empty(), has_series, "{} of {}", d.name, e.name);
            seen += usize::from(!text.is_empty());
        }
    }
    assert!(seen > 25, "the samples cover too few families: {seen}");
}

#[test]
fn classic_names_counters_with_total_and_drops_eof() {
    let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let r = CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x");
    let store = store_with(&[("hub", r)]);
    let om = m.encode(&store, Format::OpenMetrics);
    assert!(om.contains("# TYPE oci_registry_check_runs counter"));
    assert!(om.contains("# HELP oci_registry_check_runs "));
    assert!(
        om.contains(
            "oci_registry_check_runs_total{registry=\"hub\",check=\"pull\",status=\"fail\"} 1"
        ),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
    assert_eq!(om.matches("# EOF").count(), 1);
    let classic = m.encode(&store, Format::Classic);
    assert!(classic.contains("# TYPE oci_registry_check_runs_total counter"));
    assert!(classic.contains("# HELP oci_registry_check_runs_total "));
    assert!(
        classic.contains("# TYPE oci_registry_exporter_local_resource_exhausted_total counter")
    );
    assert!(classic.contains(
        "oci_registry_check_runs_total{registry=\"hub\",check=\"pull\",status=\"fail\"} 1"
    ));
    assert!(!classic.contains("# EOF"));
}

// Issue 12 (8): running out of descriptors is the exporter's own problem, so it is
// counted at the exporter level as well as reported on the check.
#[test]
fn local_resource_exhaustion_is_counted_for_the_exporter() {
    let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let store = Store::new(0);
    let line = "oci_registry_exporter_local_resource_exhausted_total ";
    assert!(
        m.encode(&store, Format::Classic)
            .contains(&format!("{line}0"))
    );
    for reason in [
        Reason::LocalResourceExhausted,
        Reason::LocalResourceExhausted,
        Reason::Timeout,
    ] {
        m.note(&CheckResult::new(
            CheckKind::Pull,
            Status::Fail,
            reason,
            "x",
        ));
    }
    assert!(
        m.encode(&store, Format::Classic)
            .contains(&format!("{line}2"))
    );
}

#[test]
fn state_set_and_single_reason() {
    let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let store = store_with(&[
        (
            "hub",
            CheckResult::new(CheckKind::Pull, Status::Fail, Reason::Forbidden, "x"),
        ),
        (
            "hub",
            CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "x"),
        ),
    ]);
    let text = m.encode(&store, Format::Classic);
    let status_ones = text
        .lines()
        .filter(|l| l.starts_with("oci_registry_check_status{") && l.ends_with(" 1"))
        .count();
    let status_all = text
        .lines()
        .filter(|l| l.starts_with("oci_registry_check_status{"))
        .count();
    assert_eq!((status_ones, status_all), (1, 5));
    let reasons: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("oci_registry_check_reason{"))
        .collect();
    assert_eq!(
        reasons,
        vec!["oci_registry_check_reason{registry=\"hub\",check=\"pull\",reason=\"ok\"} 1"]
    );
    store.retain(&[]);
    let text = m.encode(&store, Format::Classic);
    assert!(!text.contains("registry=\"hub\""), "{text}");
}

#[test]
fn histogram_is_per_registry_with_cumulative_buckets() {
    let mut r = CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "x");
    for ms in [3, 300] {
        r.requests.push(crate::outcome::RequestRecord {
            method: "GET".into(),
            path: "/v2/".into(),
            status: Some(200),
            duration: Duration::from_millis(ms),
            auth: crate::outcome::AuthUsed::None,
            note: None,
            headers: Vec::new(),
        });
    }
    let store = store_with(&[("hub", r)]);
    let text = encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
    for expected in [
        "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.005\"} 1\n",
        "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.25\"} 1\n",
        "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"0.5\"} 2\n",
        "oci_registry_request_duration_seconds_bucket{registry=\"hub\",le=\"+Inf\"} 2\n",
        "oci_registry_request_duration_seconds_count{registry=\"hub\"} 2\n",
        "oci_registry_request_duration_seconds_sum{registry=\"hub\"} 0.303\n",
        "probe_success 1\n",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("oci_registry_exporter_"), "{text}");
}

// Issue 13: at most 100 series per registry with all six checks, healthy, as the
// benchmark's steady state has them (every check passed once, a request each).
#[test]
fn a_registry_with_all_six_checks_stays_within_the_series_budget() {
    let store = Store::new(0);
    for &kind in CheckKind::ALL {
        let mut r = CheckResult::new(kind, Status::Pass, Reason::Ok, "x").with_http_status(200);
        r.api_version = Some("registry/2.0".into());
        r.facts.implementation = Some(crate::outcome::Recognition {
            implementation: crate::outcome::Implementation::Distribution,
            evidence: "x",
        });
        match kind {
            CheckKind::Credentials => r.facts.auth_method = Some(AuthMethod::Anonymous),
            CheckKind::Push => r.facts.upload_cancelled = Some(true),
            CheckKind::Capabilities => {
                r.facts.capabilities = Capability::ALL
                    .iter()
                    .map(|&c| (c, CapabilityStatus::Supported))
                    .collect()
            }
            CheckKind::Referrers => r.facts.referrers_count = Some(0),
            CheckKind::Pull => r.facts.blob_duration = Some(Duration::from_millis(4)),
            _ => {}
        }
        store.put("hub", r);
    }
    let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let text = m.encode(&store, Format::Classic);
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("registry=\"hub\""))
        .count();
    assert!(series <= 100, "{series} series:\n{text}");
    // Every check is there, and the blob download and the implementation (issue 21):
    // the budget was not met by leaving something out.
    for family in [
        "oci_registry_pull_blob_duration_seconds{",
        "oci_registry_implementation_info{",
    ] {
        assert!(text.contains(family), "{family}");
    }
    for &kind in CheckKind::ALL {
        let needle = format!("check=\"{}\"", kind.short_name());
        assert!(text.contains(&needle), "{needle}");
    }
}

/// The labels a writer writes are the ones its declaration (and docs/metrics.md) lists,
/// in that order (a histogram's buckets add `le`).
#[test]
fn every_series_has_the_declared_labels() {
    use crate::outcome::{Capability, CapabilityStatus, RateLimit};
    let mut r = CheckResult::new(CheckKind::Pull, Status::Warn, Reason::Ok, "x");
    r.api_version = Some("registry/2.0".into());
    r.facts.auth_method = Some(AuthMethod::Bearer);
    r.facts.token_request_duration = Some(Duration::from_millis(3));
    r.facts.token_expiry = Some(SystemTime::now());
    r.facts.tls_certificate_expiry = Some(SystemTime::now());
    r.facts.token_endpoint_tls_certificate_expiry = Some(SystemTime::now());
    r.facts.rate_limit = Some(RateLimit {
        limit: 100.0,
        remaining: 5.0,
    });
    r.facts.upload_cancelled = Some(true);
    r.facts.capabilities = vec![(Capability::ALL[0], CapabilityStatus::ALL[0])];
    r.facts.referrers_count = Some(2);
    r.facts.blob_duration = Some(Duration::from_millis(4));
    r.facts.implementation = Some(crate::outcome::Recognition {
        implementation: crate::outcome::Implementation::Harbor,
        evidence: "x",
    });
    r.requests.push(crate::outcome::RequestRecord {
        method: "GET".into(),
        path: "/v2/".into(),
        status: Some(200),
        duration: Duration::from_millis(3),
        auth: crate::outcome::AuthUsed::None,
        note: None,
        headers: Vec::new(),
    });
    let store = store_with(&[("hub", r)]);
    store.entries()[0].lock().interval = Some(Duration::from_secs(60));
    let m = Metrics::new(crate::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let text = m.encode(&store, Format::Classic)
        + &encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
    let mut seen = HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(['{', ' ']).next().unwrap();
        let d = METRICS
            .iter()
            .find(|d| {
                series == d.name
                    || d.kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| series.strip_prefix(d.name) == Some(s))
            })
            .unwrap_or_else(|| panic!("{series} is not declared"));
        let keys: Vec<&str> = match line.split_once('{') {
            Some((_, rest)) => rest
                .split("\",")
                .filter_map(|kv| kv.split_once("=\"").map(|(k, _)| k))
                .filter(|&k| k != "le")
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(keys, d.labels, "{line}");
        seen.insert(d.name);
    }
    // The process' series depend on /proc (and max_fds on a limit): not required here.
    for d in METRICS
        .iter()
        .filter(|d| !matches!(d.writer, Writer::Process(_)))
    {
        assert!(seen.contains(d.name), "{} wrote no series", d.name);
    }
}

#[test]
fn bucket_labels_are_the_buckets() {
    for (label, bound) in REQUEST_BUCKET_LABELS.iter().zip(REQUEST_BUCKETS) {
        assert_eq!(label.parse::<f64>().unwrap(), bound);
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let mut r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "x");
    r.api_version = Some("registry/2.0\"x".into());
    let store = store_with(&[("hub", r)]);
    let text = encode_probe(&store, true, Duration::from_millis(1), Format::Classic);
    assert!(
        text.contains(
            "oci_registry_distribution_api_version_info{registry=\"hub\",version=\"registry/2.0\\\"x\"} 1\n"
        ),
        "{text}"
    );
}

/// A writer named by two declarations would write its series twice, under two names;
/// a process figure no declaration names would never be served.
#[test]
fn each_writer_and_name_is_declared_once() {
    for (i, a) in METRICS.iter().enumerate() {
        for b in &METRICS[i + 1..] {
            assert_ne!(a.name, b.name);
            assert_ne!(a.writer, b.writer, "{} and {}", a.name, b.name);
        }
    }
    for &figure in Figure::ALL {
        assert!(
            METRICS.iter().any(|d| d.writer == Writer::Process(figure)),
            "{figure:?} is not declared in METRICS"
        );
    }
}

#[test]
fn negotiation_follows_accept() {
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        Format::OpenMetrics
    );
    assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
    assert_eq!(Format::negotiate(None), Format::Classic);
}

fn seconds_text(d: std::time::Duration) -> String {
    let mut out = String::new();
    push_seconds(&mut out, d);
    out
}

fn float_text(v: f64) -> String {
    let mut out = String::new();
    push_f64(&mut out, v);
    out
}

#[test]
fn a_duration_under_a_second_is_written_as_the_value_of_its_float() {
    use std::time::Duration;
    // Every digit count and position of the nanoseconds, then a spread of values.
    let mut nanos: Vec<u32> = (0..9).map(|e| 10u32.pow(e)).collect();
    nanos.extend([
        0,
        5_730_300,
        9_892_388,
        999_999_999,
        100_000_001,
        120_000_000,
    ]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        // A linear congruential walk: deterministic, and over every digit count.
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let n = (x >> 33) as u32 % 1_000_000_000;
        nanos.push(n >> ((x >> 20) % 30));
    }
    for n in nanos {
        let d = Duration::from_nanos(u64::from(n));
        let (exact, float) = (seconds_text(d), float_text(d.as_secs_f64()));
        assert_eq!(exact.parse::<f64>(), Ok(d.as_secs_f64()), "{n} ns");
        // The float's text has an exponent under 10 µs (`1e-9`); the same text otherwise.
        if !float.contains('e') {
            assert_eq!(exact, float, "{n} ns");
        }
    }
    assert_eq!(seconds_text(Duration::from_secs(60)), float_text(60.0));
}

#[test]
fn a_timestamp_is_written_to_the_nanosecond() {
    use std::time::Duration;
    let d = Duration::new(1_796_678_405, 251_877_523);
    assert_eq!(seconds_text(d), "1796678405.251877523");
    assert_eq!(
        seconds_text(Duration::new(1_796_678_405, 20_000)),
        "1796678405.00002"
    );
    let read: f64 = seconds_text(d).parse().expect("a decimal");
    assert!((read - d.as_secs_f64()).abs() < 1e-6, "{read}");
}
