//! Hostile servers and faulty files (issue 12): a token answer that overflows time
//! arithmetic, secret files that are FIFOs or endless devices, a credential helper that
//! hangs with a child, descriptor exhaustion, a registry that echoes credentials, an HTTPS
//! registry naming a plain-HTTP token realm, and an unreadable challenge. Every server is
//! on 127.0.0.1 and every wait is bounded.
//!
//! Reasons added for these faults are compared by name (`reason.as_str()`), so that each
//! test also compiles, and fails, against the code before its fix.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use common::{Exporter, basic_challenge, config_from_toml, reason_of, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::{self, CheckKind, Reason, Status};
use oci_registry_exporter::client::RegistryClient;

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

fn bin() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
    c.env_remove("OCI__RegistryUrl")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs the doctor with `--format json` (at most `limit`) and returns its exit code and JSON.
async fn doctor_json(
    mut cmd: tokio::process::Command,
    config: &Path,
    limit: Duration,
) -> (Option<i32>, serde_json::Value, String) {
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .arg("--format")
        .arg("json");
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the doctor did not finish within {limit:?}"))
        .expect("the doctor starts");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        json,
        format!("{stdout}\n--- stderr\n{stderr}"),
    )
}

fn results(json: &serde_json::Value) -> Vec<&serde_json::Value> {
    json["results"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. A token lifetime that overflows `Instant + Duration`.

const HUGE_EXPIRES_IN: &str = r#"{"token":"tok-huge-lifetime","expires_in":18446744073709551615}"#;

/// A token registry on mockito whose token service answers `body`; `token_expect` is how
/// many token requests it must see.
async fn token_registry(body: &str, token_expect: usize) -> (mockito::ServerGuard, mockito::Mock) {
    let mut server = mockito::Server::new_async().await;
    let realm = format!("{}/token", server.url());
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header(
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\",service=\"hostile\""),
        )
        .expect_at_least(0)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer tok-huge-lifetime")
        .with_status(200)
        .expect_at_least(0)
        .create_async()
        .await;
    let token = server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(body)
        .expect(token_expect)
        .create_async()
        .await;
    (server, token)
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_capped_and_the_check_passes() {
    let (server, token) = token_registry(HUGE_EXPIRES_IN, 1).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\n",
        server.url()
    ));
    let target = &cfg.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    let before = SystemTime::now();
    let r = checks::run_check(CheckKind::Credentials, target, &client).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    // The lifetime is capped at 24 h: not u64::MAX seconds, not the 60 s default.
    let expiry = r
        .facts
        .token_expiry
        .expect("the token's expiry is reported");
    let lives = expiry
        .duration_since(before)
        .expect("expiry after the start");
    let day = Duration::from_secs(24 * 3600);
    assert!(
        lives <= day + Duration::from_secs(5) && lives >= day - Duration::from_secs(60),
        "token lives {lives:?}, want the 24 h cap"
    );
    // A second run reuses the cached token: it lives the capped time, not zero.
    let r = checks::run_check(CheckKind::Credentials, target, &client).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert!(
        r.requests
            .iter()
            .any(|q| q.note.as_deref() == Some("cached token")),
        "{:?}",
        r.requests
    );
    token.assert_async().await;
}

#[tokio::test]
async fn the_doctor_reports_that_token_answer_instead_of_exiting_101() {
    let (server, _token) = token_registry(HUGE_EXPIRES_IN, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\nchecks = [\"registry\", \"credentials\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let (code, json, out) = doctor_json(bin(), &cfg, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{out}");
    let res = results(&json);
    assert_eq!(res.len(), 2, "{out}");
    assert!(res.iter().all(|r| r["status"] == "pass"), "{out}");
}
