//! Words and numbers that agree with each other (issue 23 §5): the severity vocabulary of
//! `oci_registry_check_info`, the alerts and the dashboards' colours; what a dashboard panel
//! says a 1 means against docs/metrics.md; every documented form of `checks`; the log level
//! of a warning and the words of the start-up line.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Exporter, config_from_toml};
use oci_registry_exporter::Config;
use oci_registry_exporter::metrics::METRICS;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let doc = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                doc,
            ));
        }
    }
    assert!(!out.is_empty());
    out
}

/// Every panel, nested rows included.
fn panels(doc: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = doc["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        out.push(p);
    }
    out
}

/// The value-mapping keys a dashboard's field overrides give the field named `field`.
fn value_mapping_keys(doc: &Value, field: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for p in panels(doc) {
        for o in p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if o["matcher"]["id"] != "byName" || o["matcher"]["options"] != field {
                continue;
            }
            for prop in o["properties"].as_array().into_iter().flatten() {
                if prop["id"] != "mappings" {
                    continue;
                }
                for m in prop["value"].as_array().into_iter().flatten() {
                    if m["type"] == "value" {
                        keys.extend(m["options"].as_object().unwrap().keys().cloned());
                    }
                }
            }
        }
    }
    keys
}

/// One severity vocabulary: what `oci_registry_check_info{severity}` really serves (read
/// from a running exporter's /metrics) is what the alert rules route on, and exactly what
/// the dashboards colour. Before, the exporter served fail/warn/info and the colours
/// expected critical/warning, so they never applied.
#[tokio::test]
async fn check_severities_are_the_alerts_and_the_dashboards_words() {
    let exporter = Exporter::start(config_from_toml(
        "mode = \"scrape\"\n[[registries]]\nname = \"r\"\nurl = \"http://127.0.0.1:1\"\n",
    ))
    .await;
    let metrics = exporter.metrics().await;
    exporter.stop().await;
    let served: BTreeSet<String> = metrics
        .lines()
        .filter(|l| l.starts_with("oci_registry_check_info{"))
        .map(|l| {
            l.split("severity=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no severity on {l}"))
                .to_string()
        })
        .collect();
    assert_eq!(
        served,
        BTreeSet::from(["critical".into(), "info".into(), "warning".into()]),
        "{metrics}"
    );

    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("alerts/oci-registry-exporter.rules.yml")).unwrap(),
    )
    .unwrap();
    let alert_severities: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r["labels"]["severity"].as_str().map(String::from))
        .collect();
    assert!(
        served.is_subset(&alert_severities),
        "the exporter serves severities {served:?}, the alerts use {alert_severities:?}"
    );

    let mut mapped_somewhere = false;
    for (file, doc) in dashboards() {
        let keys = value_mapping_keys(&doc, "severity");
        if keys.is_empty() {
            continue;
        }
        mapped_somewhere = true;
        assert_eq!(
            keys, served,
            "{file}: the severity colours map {keys:?}, the exporter serves {served:?}"
        );
    }
    assert!(mapped_somewhere, "no dashboard colours the severity column");
}

/// The first clause of a metric's help in docs/metrics.md ("1 when ..."), by name.
fn help_of(metric: &str) -> &'static str {
    METRICS
        .iter()
        .find(|m| m.name == metric)
        .unwrap_or_else(|| panic!("{metric} is not declared"))
        .help
}

/// A panel that says what a 1 means says what docs/metrics.md (the metric's help) says: the
/// "Push uploads cancelled" panel said "had to cancel" where 1 means the cancel succeeded.
#[test]
fn a_panel_says_what_a_one_means_as_the_metric_does() {
    let mut checked = 0;
    for (file, doc) in dashboards() {
        for p in panels(&doc) {
            let description = p["description"].as_str().unwrap_or_default();
            if !description.starts_with("1 when") {
                continue;
            }
            let metrics: BTreeSet<String> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .flat_map(|e| {
                    e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| w.starts_with("oci_registry_"))
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect();
            let [metric] = metrics.iter().collect::<Vec<_>>()[..] else {
                continue;
            };
            let help = help_of(metric);
            let clause = help.split(',').next().unwrap();
            assert!(
                description.contains(clause),
                "{file}: panel {:?} says {description:?}; docs/metrics.md says of {metric}: {help:?}",
                p["title"]
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no panel says what a 1 means");
}

/// Every `checks` form config/reference.toml and config/reference.yaml write (the key's
/// line and the examples in its comment) loads, `"all"` as a plain string included (it was
/// refused with "expected a sequence").
#[test]
fn every_documented_form_of_checks_parses() {
    let dir = tempfile::tempdir().unwrap();
    let mut forms = Vec::new();
    for (file, key, ext) in [
        ("config/reference.toml", "checks = ", "toml"),
        ("config/reference.yaml", "checks: ", "yaml"),
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for line in text.lines() {
            let line = line.trim().trim_start_matches('#').trim();
            let Some(value) = line.strip_prefix(key) else {
                continue;
            };
            forms.push((file, ext, value.to_string()));
        }
    }
    for (file, ext, value) in &forms {
        let config = match *ext {
            "toml" => format!(
                "[[registries]]\nname = \"r\"\nurl = \"https://r.example.com\"\nchecks = {value}\n"
            ),
            _ => format!(
                "registries:\n  - name: r\n    url: https://r.example.com\n    checks: {value}\n"
            ),
        };
        let path = dir.path().join(format!("c.{ext}"));
        std::fs::write(&path, &config).unwrap();
        let loaded = Config::load(Some(&path))
            .unwrap_or_else(|e| panic!("{file}: `checks` written as {value} is refused: {e}"));
        assert!(!loaded.registries[0].checks.is_empty());
        if value.trim_matches(|c| c == '"' || c == '[' || c == ']') == "all" {
            assert_eq!(
                loaded.registries[0].checks.len(),
                oci_registry_exporter::checks::CheckKind::ALL.len(),
                "{file}: {value}"
            );
        }
    }
    for needed in ["\"all\"", "all"] {
        assert!(
            forms.iter().any(|(_, _, v)| v == needed),
            "the references do not show checks = {needed}: {forms:?}"
        );
    }
}

/// Reads the exporter's stderr until every needle has been seen on some line, or panics
/// after `limit` with what it read.
fn wait_for_lines(
    child: &mut std::process::Child,
    needles: &[&[&str]],
    limit: Duration,
) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut found = vec![None; needles.len()];
    while found.iter().any(Option::is_none) {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                for (i, n) in needles.iter().enumerate() {
                    if found[i].is_none() && n.iter().all(|w| line.contains(w)) {
                        found[i] = Some(line.clone());
                    }
                }
                lines.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "not every expected log line within {limit:?}: wanted {needles:?}, got:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// A `warn` result is logged at `warn` (it was `info`), and the start-up line says
/// `mode=interval`, the configuration's word (it said `mode=Interval`).
#[tokio::test]
async fn a_warning_is_logged_at_warn_and_the_mode_in_the_configurations_word() {
    let mut server = mockito::Server::new_async().await;
    // 418 on /v2/: the registry check warns (unexpected_status).
    server
        .mock("GET", "/v2/")
        .with_status(418)
        .create_async()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\n[[registries]]\nname = \"teapot\"\nurl = \"{}\"\nchecks = [\"registry\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .arg("--config")
        .arg(&config)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "logfmt",
        ])
        .env_remove("OCI__RegistryUrl")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let found = tokio::task::spawn_blocking(move || {
        let found = wait_for_lines(
            &mut child,
            &[
                &["listening", "mode=interval"],
                &["registry=teapot", "status=warn"],
            ],
            Duration::from_secs(20),
        );
        let _ = child.kill();
        let _ = child.wait();
        found
    })
    .await
    .unwrap();
    assert!(found[0].contains("level=info"), "{}", found[0]);
    assert!(
        found[1].contains("level=warn"),
        "a warning is not logged at warn: {}",
        found[1]
    );
    let _: &Path = dir.path();
}

/// config/schema.json, the configuration's JSON Schema for editors (taplo,
/// yaml-language-server) and the base of the chart's, is the one generated from the types
/// (`UPDATE_SCHEMA=1` rewrites it).
#[test]
fn the_shipped_config_schema_is_generated_from_the_types() {
    let path = root().join("config/schema.json");
    let generated = oci_registry_exporter::config::json_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let shipped: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        shipped, generated,
        "config/schema.json is stale: run UPDATE_SCHEMA=1 cargo test --test words"
    );
}

/// `PYTHON`, else scripts/test's virtual environment, else `python3`: one with `jsonschema`
/// (kubernetes-validate brings it).
fn python_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join("target/tools/venv/bin/python3");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Every example configuration (config/*.toml, config/*.yaml), which the exporter loads
/// (tests/suite/config/examples.rs), is valid against config/schema.json, and a misspelt key is
/// not: the schema refuses only what the exporter refuses. Validated by Python's
/// `jsonschema`, as editors and Helm validate, not by our own code.
#[test]
fn the_schema_accepts_every_example_and_refuses_a_typo() {
    const SCRIPT: &str = r#"
import json, sys, tomllib
import jsonschema, yaml
schema = json.load(open(sys.argv[1]))
bad = 0
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f) if path.endswith(".toml") else yaml.safe_load(f)
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    print(path, "ok" if not errors else "INVALID: " + "; ".join(errors))
    bad += bool(errors)
sys.exit(1 if bad else 0)
"#;
    let dir = tempfile::tempdir().unwrap();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() > 5, "{examples:?}");
    let run = |files: &[PathBuf]| {
        let out = Command::new(python_bin())
            .arg("-c")
            .arg(SCRIPT)
            .arg(root().join("config/schema.json"))
            .args(files)
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("ModuleNotFoundError"),
            "python needs jsonschema and PyYAML (scripts/test installs them into target/tools/venv):\n{text}"
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&examples);
    assert!(
        ok,
        "an example the exporter loads is refused by the schema:\n{text}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[defaults]\nintervall = \"1m\"\n[[registries]]\nname = \"r\"\nurl = \"https://r.example.com\"\n",
    )
    .unwrap();
    let (ok, text) = run(std::slice::from_ref(&typo));
    assert!(!ok && text.contains("intervall"), "{text}");
}

/// The placeholders of fix steps, filled from a configured URL: the URL without its
/// trailing slash (a path prefix kept), `docker login`'s host[:port], and the port a TLS
/// client would use when none is written; what is unknown stays.
#[test]
fn fix_steps_name_the_registry_they_are_about() {
    use oci_registry_exporter::report::fill_in;
    let url = url::Url::parse("https://harbor.example.com/mirror/").unwrap();
    assert_eq!(
        fill_in("curl -v <url>/v2/", Some(&url)),
        "curl -v https://harbor.example.com/mirror/v2/"
    );
    assert_eq!(
        fill_in("docker login <registry>", Some(&url)),
        "docker login harbor.example.com"
    );
    assert_eq!(
        fill_in(
            "openssl s_client -connect <host>:<port> -servername <host>",
            Some(&url)
        ),
        "openssl s_client -connect harbor.example.com:443 -servername harbor.example.com"
    );
    let local = url::Url::parse("http://127.0.0.1:15443").unwrap();
    assert_eq!(
        fill_in("docker login <registry>", Some(&local)),
        "docker login 127.0.0.1:15443"
    );
    assert_eq!(
        fill_in("echo <host> | docker-credential-<name> get", Some(&local)),
        "echo 127.0.0.1 | docker-credential-<name> get"
    );
    assert_eq!(fill_in("curl -v <url>/v2/", None), "curl -v <url>/v2/");
}
