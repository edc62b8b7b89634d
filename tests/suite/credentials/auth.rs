//! Registry authentication against real CNCF Distribution registries: htpasswd (right,
//! wrong and missing credentials) and token auth (users, a wrong password, the token cache,
//! the token server down), as `/metrics` shows them.

use crate::common;
use crate::support;

use std::time::Duration;

use common::{Exporter, config_from_toml, every_second_toml, registry_toml, run_one, sample};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};
use support::{Kind, TestRegistry};

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
