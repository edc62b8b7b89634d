//! The doctor CLI (`oci-registry-exporter check`), `/probe?debug=true` and the status
//! page's history, against real Distribution registries.

use crate::common;
use crate::common::mock::answer;
use crate::support;

use std::process::Command;

use common::{Exporter, config_from_toml};
use support::{Kind, TestRegistry};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
    c.env_remove("OCI__RegistryUrl").env("NO_COLOR", "1");
    c
}

/// `oci-registry-exporter check` with `args` and `--config config`, run to its end.
fn doctor(args: &[&str], config: &std::path::Path) -> std::process::Output {
    bin()
        .arg("check")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn two_registries(url: &str) -> String {
    format!(
        r#"
[[registries]]
name = "good"
url = "{url}"
username = "alice"
password = "wonderland"
checks = ["registry", "credentials", "pull"]

[[registries]]
name = "bad"
url = "{url}"
username = "alice"
password = "stale-password"
checks = ["registry", "credentials", "pull"]
"#
    )
}

#[tokio::test]
async fn exit_codes_text_and_json() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &two_registries(&reg.url));

    let out = doctor(&[], &cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "a failure exits 2:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour without a terminal:\n{text}"
    );
    assert!(
        text.contains("PASS  good  check.integration.oci.pull"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  bad   check.integration.oci.credentials"),
        "{text}"
    );
    assert!(
        text.contains("likely cause: credentials rejected: rotated or revoked"),
        "{text}"
    );
    assert!(
        text.contains("docs/runbooks/credentials.md#invalid_credentials"),
        "{text}"
    );
    assert!(!text.contains("stale-password"), "{text}");

    let out = doctor(
        &[
            "--registry",
            "good",
            "--check",
            "check.integration.oci.pull",
            "--format",
            "json",
        ],
        &cfg,
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["exit_code"], 0);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["registry"], "good");
    assert_eq!(r["check_id"], "check.integration.oci.pull");
    assert_eq!(r["status"], "pass");
    assert_eq!(r["reason"], "ok");
    assert_eq!(r["http_status"], 200);
    assert_eq!(r["severity"], "critical");
    assert_eq!(r["evidence"]["digest"], support::seed_manifest_digest());
    assert_eq!(doc["summary"]["pass"], 1);

    let out = doctor(
        &["--registry", "bad", "--check", "pull", "--format", "json"],
        &cfg,
    );
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &doc["results"][0];
    assert_eq!(r["reason"], "invalid_credentials");
    assert!(
        r["cause"]
            .as_str()
            .unwrap()
            .contains("credentials rejected")
    );
    assert!(!r["fix"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn usage_errors_exit_three_and_warnings_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = mockito::Server::new_async().await;
    // A 5xx at /v2/ is a warning (a 404 there is not the API: a failure).
    answer(&mut server, "GET", "/v2/", 502, &[], "").await;
    let cfg = write_config(
        &dir,
        &format!(
            "[[registries]]\nname = \"web\"\nurl = \"{}\"\n",
            server.url()
        ),
    );
    let out = doctor(&["--check", "registry"], &cfg);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = doctor(&["--check", "bogus"], &cfg);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--check \"bogus\": unknown check"));
    let out = doctor(&["--registry", "nope"], &cfg);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry \"nope\": no such registry"));
    let out = doctor(&["--format", "yaml"], &cfg);
    assert_eq!(out.status.code(), Some(3));
    let bad = write_config(&dir, "[[registries]]\nname = \"x\"\n");
    let out = doctor(&[], &bad);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("invalid config: registries[0].url: missing")
    );
}

#[tokio::test]
async fn seed_environment_alone_drives_the_doctor() {
    let reg = TestRegistry::start(Kind::Open).await;
    let out = bin()
        .env("OCI__RegistryUrl", &reg.url)
        .args(["check", "--check", "check.integration.oci.pull"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS  default  check.integration.oci.pull")
    );
}

#[tokio::test]
async fn probe_debug_shows_the_trail_and_history_keeps_results() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let exporter = Exporter::start(config_from_toml(&two_registries(&reg.url))).await;
    let (code, body) = exporter
        .get("/probe?target=bad&check=pull&debug=true")
        .await;
    assert_eq!(code, 200);
    assert!(
        body.starts_with("probe of registry \"bad\" at http://127.0.0.1:"),
        "{body}"
    );
    assert!(
        body.contains("HEAD /v2/library/alpine/manifests/latest -> 401"),
        "{body}"
    );
    assert!(
        body.contains("www-authenticate: Basic realm=\"regharness-basic\""),
        "{body}"
    );
    assert!(
        body.contains("likely cause: credentials rejected"),
        "{body}"
    );
    assert!(body.contains("runbook: https://"), "{body}");
    // The fix names this registry, as the doctor's does.
    assert!(
        body.contains(&format!("docker login 127.0.0.1:{}", reg.port()))
            && !body.contains("<registry>"),
        "{body}"
    );
    assert!(body.contains("== metrics\n# HELP"), "{body}");
    assert!(!body.contains("stale-password"));

    exporter.wait_ready().await;
    let (_, page) = exporter.get("/").await;
    assert!(page.contains("Recent results"), "{page}");
    let link = page
        .split("href=\"/result?id=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a history link");
    let (code, text) = exporter.get(&format!("/result?id={link}")).await;
    assert_eq!(code, 200);
    assert!(text.starts_with("== check.integration.oci."), "{text}");
    let (code, _) = exporter.get("/result?id=999999").await;
    assert_eq!(code, 404);
    exporter.stop().await;
}

/// With a wrong password on the htpasswd registry, every check the password affects gives
/// credential advice, and the root cause is named once, at its own check, with the checks
/// it explains; the others are marked as its consequences instead of repeating it.
#[tokio::test]
async fn wrong_password_names_the_root_cause_once_and_gives_credential_advice() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "[[registries]]\nname = \"bad\"\nurl = \"{}\"\nusername = \"alice\"\npassword = \"stale-password\"\n",
            reg.url
        ),
    );
    let out = doctor(&[], &cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("stale-password"), "{text}");
    assert_eq!(
        text.matches("ROOT CAUSE").count(),
        1,
        "the root cause is said once:\n{text}"
    );
    let root = text
        .lines()
        .find(|l| l.contains("ROOT CAUSE"))
        .unwrap_or_default();
    assert!(root.contains("check.integration.oci.credentials"), "{text}");
    assert!(
        text.contains("also explains: pull, push, capabilities, referrers"),
        "{text}"
    );
    for check in ["pull", "push", "capabilities", "referrers"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("check.integration.oci.{check} ")))
            .unwrap_or_else(|| panic!("no line for {check}:\n{text}"));
        assert!(line.ends_with("[consequence of credentials]"), "{line}");
    }
    assert_eq!(
        text.matches("likely cause:").count(),
        1,
        "consequences do not repeat the cause:\n{text}"
    );
    assert!(text.contains("credentials rejected"), "{text}");
    assert!(!text.contains("no credentials are configured"), "{text}");

    // The JSON says the same: every affected check has credential advice and points at
    // its root cause.
    let out = doctor(&["--format", "json"], &cfg);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in doc["results"].as_array().unwrap() {
        if r["status"] == "pass" {
            continue;
        }
        assert!(
            r["cause"]
                .as_str()
                .unwrap_or("")
                .contains("credentials rejected"),
            "{r}"
        );
        if r["check"] != "credentials" {
            assert_eq!(
                r["consequence_of"], "check.integration.oci.credentials",
                "{r}"
            );
        }
    }
}

/// The doctor over every kind of real registry, configured as its users would (right
/// credentials, the CA for TLS): read as the on-call engineer would, no line may be a false
/// alarm. The only failure is the true one: the read-only registry refuses pushes. The text
/// is printed so a person can read it (`cargo test --test doctor -- --nocapture`).
#[tokio::test]
async fn every_kind_of_registry_gets_no_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut registries = Vec::new();
    for kind in Kind::ALL {
        registries.push((kind, TestRegistry::start(kind).await));
    }
    for (kind, reg) in &registries {
        let name = format!("{kind:?}").to_lowercase();
        let login = match kind {
            Kind::Basic => format!(
                "username = \"{}\"\npassword = \"{}\"\n",
                support::BASIC_USER,
                support::BASIC_PASSWORD
            ),
            Kind::Token => format!(
                "username = \"{}\"\npassword = \"{}\"\n",
                support::TOKEN_ADMIN_USER,
                support::TOKEN_ADMIN_PASSWORD
            ),
            // Open, read-only and TLS registries take anyone; push needs some credentials.
            _ => "username = \"monitor\"\npassword = \"any\"\n".to_string(),
        };
        let ca = reg
            .ca_file
            .as_ref()
            .map(|p| format!("ca_file = \"{}\"\n", p.display()))
            .unwrap_or_default();
        text.push_str(&format!(
            "[[registries]]\nname = \"{name}\"\nurl = \"{}\"\n{login}{ca}",
            reg.url
        ));
    }
    let cfg = write_config(&dir, &text);
    let out = doctor(&[], &cfg);
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    let out = doctor(&["--format", "json"], &cfg);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in doc["results"].as_array().unwrap() {
        let (registry, check, status) = (
            r["registry"].as_str().unwrap(),
            r["check"].as_str().unwrap(),
            r["status"].as_str().unwrap(),
        );
        let advice = format!("{} {}", r["cause"], r["fix"]);
        assert!(
            !advice.contains("no credentials are configured"),
            "{registry}/{check}: credentials are configured: {r}"
        );
        match (registry, check) {
            ("readonly", "push") => {
                assert_eq!(
                    (status, r["reason"].as_str()),
                    ("fail", Some("read_only")),
                    "{r}"
                );
            }
            // Distribution 2.8 has no referrers API: an optional feature it lacks, `info`,
            // never a warning or a failure (docs/checks.md, "A healthy registry is green").
            (_, "referrers" | "capabilities") => assert_eq!(
                (status, r["reason"].as_str()),
                ("info", Some("unsupported")),
                "{r}"
            ),
            _ => assert!(
                matches!(status, "pass" | "info"),
                "{registry}/{check} is a false alarm: {r}\n{report}"
            ),
        }
    }
}

/// `--check a,b`, repeated `--check`, and `--config.file` (Prometheus' spelling) all work;
/// `--version` names the source revision and the compiler (issue 14's conventions).
#[tokio::test]
async fn check_lists_config_file_alias_and_version() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!("[[registries]]\nname = \"open\"\nurl = \"{}\"\n", reg.url),
    );
    let checks_of = |args: &[&str]| {
        let out = bin()
            .args(["check", "--format", "json"])
            .args(args)
            .arg("--config.file")
            .arg(&cfg)
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["check"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        checks_of(&["--check", "pull,registry"]),
        ["pull", "registry"]
    );
    assert_eq!(
        checks_of(&[
            "--check",
            "pull",
            "--check",
            "check.integration.oci.registry"
        ]),
        ["pull", "registry"]
    );
    let out = bin().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("revision:") && text.contains("rustc"),
        "{text}"
    );
    assert!(
        !text.contains("revision:   unknown"),
        "built in a git checkout, the revision is known:\n{text}"
    );
}

/// Issue 23 §2: a healthy Distribution 2.8 with its default configuration (delete disabled,
/// no referrers API) and the exporter's defaults (a URL and nothing else) is green
/// everywhere a result is summed up: the doctor exits 0, `/probe` says `probe_success 1`,
/// and the `/` page counts it ok. A missing optional feature is `info`, not a warning.
#[tokio::test]
async fn a_healthy_distribution_with_defaults_is_green() {
    let reg = TestRegistry::start_with(
        Kind::Open,
        support::Options {
            // Distribution's own default (`storage.delete.enabled` unset).
            delete_enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[registries]]\nname = \"healthy\"\nurl = \"{}\"\n",
        reg.url
    );
    let cfg = write_config(&dir, &text);
    let out = doctor(&[], &cfg);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "the doctor exits 0:\n{report}");
    assert!(
        report.contains("INFO  healthy  check.integration.oci.referrers"),
        "{report}"
    );

    let exporter = Exporter::start(config_from_toml(&text)).await;
    exporter.wait_ready().await;
    let (code, body) = exporter.get("/probe?target=healthy").await;
    assert_eq!(code, 200);
    assert_eq!(
        common::sample(&body, "probe_success", &[]),
        Some(1.0),
        "{body}"
    );
    let mut page = String::new();
    for _ in 0..100 {
        page = exporter.get("/").await.1;
        if !page.contains("not checked yet") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        page.contains("1 registry: 0 failing, 0 warning, 1 ok"),
        "the page does not count the healthy registry ok:\n{page}"
    );
    exporter.stop().await;
}

/// `probe_success` is 0 only for a failure: a check that warns (here the registry check,
/// on a `/v2/` that answers 418) still leaves it at 1.
#[tokio::test]
async fn probe_success_is_one_unless_a_check_fails() {
    let mut server = mockito::Server::new_async().await;
    answer(
        &mut server,
        "GET",
        "/v2/",
        418,
        &[("docker-distribution-api-version", "registry/2.0")],
        "",
    )
    .await;
    let config = config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"teapot\"\nurl = \"{}\"\nchecks = [\"registry\"]\n",
        server.url()
    ));
    let exporter = Exporter::start(config).await;
    let (_, body) = exporter.get("/probe?target=teapot").await;
    assert_eq!(
        common::status_of(&body, "teapot", "registry").as_deref(),
        Some("warn"),
        "{body}"
    );
    assert_eq!(
        common::sample(&body, "probe_success", &[]),
        Some(1.0),
        "{body}"
    );
    exporter.stop().await;
}

/// Issue 23 §5: the doctor's fixes name the registry they are about (no `<url>` or
/// `<registry>` to fill in by hand), each problem shows its registry's URL, the problems
/// come most severe first with root causes before the rest, and a closing line counts the
/// registries as the `/` page does.
#[tokio::test]
async fn the_doctor_fills_in_the_url_orders_by_severity_and_sums_up() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    // A gateway whose registry back end is down: 502 at /v2/, a warning (emulated: a real
    // Distribution never answers 502 for itself).
    let mut gateway = mockito::Server::new_async().await;
    answer(&mut gateway, "GET", "/v2/", 502, &[], "").await;
    let checks = "checks = [\"registry\", \"credentials\", \"pull\"]\n";
    // Configured warning first, so the order cannot come from the configuration.
    let text = format!(
        "[[registries]]\nname = \"warned\"\nurl = \"{warned}\"\nchecks = [\"registry\"]\n\
         [[registries]]\nname = \"good\"\nurl = \"{url}\"\nusername = \"{user}\"\npassword = \"{password}\"\n{checks}\
         [[registries]]\nname = \"bad\"\nurl = \"{url}\"\nusername = \"{user}\"\npassword = \"stale-password\"\n{checks}\
         [[registries]]\nname = \"down\"\nurl = \"http://127.0.0.1:1\"\n{checks}",
        url = reg.url,
        warned = gateway.url(),
        user = support::BASIC_USER,
        password = support::BASIC_PASSWORD,
    );
    let cfg = write_config(&dir, &text);
    let out = doctor(&[], &cfg);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{report}");
    let host = format!("127.0.0.1:{}", reg.port());
    assert!(
        report.contains(&format!("docker login {host}")),
        "the credentials fix names the registry:\n{report}"
    );
    assert!(
        report.contains("curl -v http://127.0.0.1:1/v2/"),
        "the connection fix names the URL:\n{report}"
    );
    assert!(
        !report.contains("<url>") && !report.contains("<registry>"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "check.integration.oci.credentials on bad (http://{host}/): "
        )),
        "each problem shows its registry's URL:\n{report}"
    );
    // Problems: failures (root causes first) before the warning.
    let headers: Vec<&str> = report.lines().filter(|l| l.contains(" (reason ")).collect();
    let first_warn = headers
        .iter()
        .position(|l| l.starts_with("WARN "))
        .unwrap_or_else(|| panic!("no warning problem:\n{report}"));
    assert!(
        headers[..first_warn].len() >= 2
            && headers[..first_warn]
                .iter()
                .all(|l| l.starts_with("ROOT CAUSE FAIL")),
        "the failures' root causes come first: {headers:#?}"
    );
    assert!(
        headers[first_warn..].iter().all(|l| !l.contains("FAIL")),
        "{headers:#?}"
    );
    assert_eq!(
        report.trim_end().lines().last(),
        Some("4 registries: 2 failing, 1 warning, 1 ok"),
        "{report}"
    );

    let out = doctor(&["--format", "json"], &cfg);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in doc["results"].as_array().unwrap() {
        let fix = r["fix"].to_string();
        assert!(!fix.contains("<url>") && !fix.contains("<registry>"), "{r}");
        assert!(
            r["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{r}"
        );
    }
}
