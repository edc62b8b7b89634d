//! Keeps docs/metrics.md equal to the metrics the code declares.
//! Run with UPDATE_DOCS=1 to regenerate the table after changing `metrics::METRICS`.

use oci_registry_exporter::metrics::METRICS;

const BEGIN: &str = "<!-- BEGIN GENERATED METRICS TABLE -->";
const END: &str = "<!-- END GENERATED METRICS TABLE -->";

fn table() -> String {
    let mut out =
        String::from("| Metric | Type | Labels | Served on | Meaning |\n|---|---|---|---|---|\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() {
            "–".to_string()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {}. |\n",
            m.name,
            m.kind,
            labels,
            m.served_on().as_str(),
            m.help
        ));
    }
    out
}

#[test]
fn metrics_doc_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md exists");
    let (head, rest) = text.split_once(BEGIN).expect("begin marker present");
    let (_, tail) = rest.split_once(END).expect("end marker present");
    let wanted = format!("{head}{BEGIN}\n{}{END}{tail}", table());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &wanted).unwrap();
        return;
    }
    assert_eq!(
        text, wanted,
        "docs/metrics.md is out of date: run `UPDATE_DOCS=1 cargo test --test docs`"
    );
}

#[test]
fn every_reason_is_documented_and_every_metric_is_served() {
    use oci_registry_exporter::checks::{CheckKind, CheckResult, Reason, Status};
    use oci_registry_exporter::metrics::{Format, Metrics, ServedOn};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    for reason in Reason::ALL {
        assert!(
            text.contains(&format!("| `{}` |", reason.as_str())),
            "reason {} is missing from docs/metrics.md",
            reason.as_str()
        );
    }
    let m = Metrics::new(oci_registry_exporter::catalogue::DEFAULT_RUNBOOK_BASE_URL);
    let raw = oci_registry_exporter::RawConfig {
        registries: vec![oci_registry_exporter::config::RawRegistry {
            name: Some("x".into()),
            url: Some("https://x.example.com".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let config = oci_registry_exporter::Config::resolve(raw).unwrap();
    let store = oci_registry_exporter::store::Store::new(10);
    store.declare(&config.registries[0]);
    let mut r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "ok");
    r.api_version = Some("registry/2.0".into());
    // Every fact set, so every metric has a series.
    use oci_registry_exporter::checks::{AuthMethod, Capability, CapabilityStatus, RateLimit};
    let now = std::time::SystemTime::now();
    r.facts.auth_method = Some(AuthMethod::Basic);
    r.facts.token_request_duration = Some(std::time::Duration::from_millis(5));
    r.facts.token_expiry = Some(now);
    r.facts.tls_certificate_expiry = Some(now);
    r.facts.token_endpoint_tls_certificate_expiry = Some(now);
    r.facts.rate_limit = Some(RateLimit {
        limit: 100.0,
        remaining: 99.0,
    });
    r.facts.upload_cancelled = Some(true);
    r.facts.capabilities = vec![(Capability::Referrers, CapabilityStatus::Unsupported)];
    r.facts.referrers_count = Some(0);
    store.put("x", r);
    let probe = oci_registry_exporter::metrics::encode_probe(
        &store,
        true,
        std::time::Duration::from_millis(5),
        Format::Classic,
    );
    for (endpoint, served) in [
        (ServedOn::Metrics, m.encode(&store, Format::Classic)),
        (ServedOn::Probe, probe),
    ] {
        let mut expected = 0;
        for doc in METRICS {
            let here = doc.served_on() == endpoint || doc.served_on() == ServedOn::Both;
            expected += usize::from(here);
            assert_eq!(
                served.contains(&format!("# TYPE {} {}", doc.name, doc.kind)),
                here,
                "{} ({}) is documented as served on {}, {} serves it {}:\n{served}",
                doc.name,
                doc.kind,
                doc.served_on().as_str(),
                endpoint.as_str(),
                if here { "not" } else { "too" },
            );
        }
        let types = served.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(
            types,
            expected,
            "a metric {} serves is missing from METRICS",
            endpoint.as_str()
        );
    }
}

/// docs/compatibility.md: every row of the matrix links a test, and every test it names
/// exists in the file it links (a renamed test would otherwise leave a dead claim).
#[test]
fn every_compatibility_row_links_an_existing_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/compatibility.md")).unwrap();
    let matrix = doc
        .split("## Matrix")
        .nth(1)
        .expect("a Matrix section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let rows: Vec<&str> = matrix
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| registry") && !l.starts_with("|---"))
        .collect();
    assert!(rows.len() >= 12, "the matrix has {} rows", rows.len());
    for row in rows {
        let test_cell = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap_or_default();
        let mut links = 0;
        for part in test_cell.split("](../tests/").skip(1) {
            let file = part.split(')').next().unwrap_or_default();
            assert!(
                root.join("tests").join(file).is_file(),
                "{row}: tests/{file} does not exist"
            );
            links += 1;
        }
        // Each named test, [`name`](../tests/file.rs), exists in its file.
        for piece in test_cell.split("[`").skip(1) {
            let Some((name, rest)) = piece.split_once("`](../tests/") else {
                continue;
            };
            let file = rest.split(')').next().unwrap_or_default();
            let text = std::fs::read_to_string(root.join("tests").join(file)).unwrap();
            assert!(
                text.contains(&format!("fn {name}(")),
                "{row}: tests/{file} has no test named {name}"
            );
        }
        assert!(links > 0, "a row without a test link: {row}");
    }
}
