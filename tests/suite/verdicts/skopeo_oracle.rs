//! skopeo as the oracle: for every registry behaviour the project emulates
//! (`tests/emulations`) and for the real Distribution registries (`tests/support`: open,
//! htpasswd, token auth, read-only, TLS), skopeo is run with the same credentials and
//! trust, and the exporter's pull verdict must agree with what skopeo experiences.
//!
//! Agreement: the pull check passes or warns (a warning means the pull works for a client
//! that GETs manifests, as skopeo does, but not for every client) exactly when skopeo
//! succeeds. The pull verdict is the one of a round (registry, credentials, pull, root
//! causes followed), as the daemon and the doctor give it. A disagreement fails the test
//! unless it is deliberate: named in [`DELIBERATE`] and listed with its reason in
//! docs/compatibility.md ("Where the exporter and skopeo deliberately disagree").
//!
//! skopeo 1.9 (Debian) is installed by scripts/test; emulations are asked with
//! `skopeo inspect` (it reads the manifest and the config blob), real registries with
//! `skopeo copy … dir:` (every blob). Only 127.0.0.1 is contacted.

use crate::common;
use crate::emulations;
use crate::support;

use std::path::Path;
use std::sync::Arc;

use common::config_from_toml;
use emulations::*;
use oci_registry_exporter::checks::{self, CheckKind, CheckResult, Status};
use oci_registry_exporter::client::RegistryClient;
use support::{Kind, TestRegistry};

/// Behaviours where the exporter and skopeo deliberately disagree, each listed with its
/// reason in docs/compatibility.md.
const DELIBERATE: &[&str] = &[
    // skopeo (containers/image) takes a manifest fetched by tag as it comes; docker pull and
    // containerd verify it against the digest the registry sent.
    "digest_mismatch",
];

/// The exporter's pull verdict in a round, as the daemon gives it.
async fn exporter_pull(url: &str, extra: &str) -> CheckResult {
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"r\"\nurl = \"{url}\"\ntimeout = \"10s\"\n{extra}\n"
    ));
    let target = &cfg.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    let mut results = Vec::new();
    for kind in [CheckKind::Registry, CheckKind::Credentials, CheckKind::Pull] {
        results.push(checks::run_check(kind, target, &client).await);
    }
    checks::follow_root_causes(&mut results);
    results.pop().expect("the pull ran")
}

/// Configuration lines and `user:password` for the same credentials.
type Login = (String, String);

/// How skopeo is asked.
enum Ask<'a> {
    /// `skopeo inspect` (manifest and config blob), plain HTTP allowed.
    Inspect,
    /// `skopeo copy … dir:` (every blob), plain HTTP allowed, or TLS trusting `cert_dir`.
    Copy { cert_dir: Option<&'a Path> },
}

/// Runs skopeo on the seed image at `host` with `creds` (`user:password`, or anonymous);
/// whether it succeeded, and its error output.
async fn skopeo(host: &str, creds: Option<&str>, ask: Ask<'_>) -> (bool, String) {
    let image = format!("docker://{host}/library/alpine:latest");
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.args(["--command-timeout", "60s"]);
    match ask {
        Ask::Inspect => {
            cmd.args(["inspect", "--no-tags", "--tls-verify=false"]);
            match creds {
                Some(c) => cmd.args(["--creds", c]),
                None => cmd.arg("--no-creds"),
            };
            cmd.arg(&image);
        }
        Ask::Copy { cert_dir } => {
            cmd.args(["--insecure-policy", "copy"]);
            match cert_dir {
                Some(dir) => cmd.arg("--src-cert-dir").arg(dir),
                None => cmd.arg("--src-tls-verify=false"),
            };
            match creds {
                Some(c) => cmd.args(["--src-creds", c]),
                None => cmd.arg("--src-no-creds"),
            };
            cmd.arg(&image)
                .arg(format!("dir:{}", out_dir.path().display()));
        }
    }
    let out = cmd
        // Only 127.0.0.1 is contacted: no proxy, no credentials from the environment.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("REGISTRY_AUTH_FILE")
        .kill_on_drop(true)
        .output()
        .await
        .expect("skopeo runs (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One behaviour's comparison: `None` when they agree, the disagreement otherwise.
fn compare(name: &str, pull: &CheckResult, skopeo: &(bool, String)) -> Option<String> {
    let exporter_ok = matches!(pull.status, Status::Pass | Status::Warn);
    // The figures, for `cargo test --test skopeo_oracle -- --nocapture`.
    eprintln!(
        "{name}: exporter pull {} {}; skopeo {}",
        pull.status.as_str(),
        pull.reason.as_str(),
        if skopeo.0 {
            "succeeds".to_string()
        } else {
            format!("fails: {}", skopeo.1.trim())
        }
    );
    (exporter_ok != skopeo.0).then(|| {
        format!(
            "{name}: the exporter's pull is {} {} ({}), skopeo {} ({})",
            pull.status.as_str(),
            pull.reason.as_str(),
            pull.message,
            if skopeo.0 { "succeeds" } else { "fails" },
            skopeo.1.trim()
        )
    })
}

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
}

/// Asserts that every disagreement is deliberate and that the deliberate ones are
/// documented.
fn assert_agreement(disagreements: Vec<(String, String)>) {
    let undocumented: Vec<&String> = disagreements
        .iter()
        .filter(|(name, _)| !DELIBERATE.contains(&name.as_str()))
        .map(|(_, why)| why)
        .collect();
    assert!(
        undocumented.is_empty(),
        "the exporter and skopeo disagree:\n{}",
        undocumented
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md"),
    )
    .expect("docs/compatibility.md");
    for name in DELIBERATE {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is a deliberate disagreement but docs/compatibility.md does not list it"
        );
    }
}

#[tokio::test]
async fn skopeo_agrees_with_the_pull_verdict_on_every_emulated_behaviour() {
    let mut disagreements = Vec::new();
    macro_rules! case {
        ($name:literal, $creds:expr, |$server:ident| $setup:expr) => {{
            let mut $server = mockito::Server::new_async().await;
            // Held to the end of the case: a dropped mock is removed from its server.
            let _kept = $setup;
            let extra = if $creds.is_some() { LOGIN } else { "" };
            let pull = exporter_pull(&$server.url(), extra).await;
            let seen = skopeo(host(&$server.url()), $creds, Ask::Inspect).await;
            if let Some(why) = compare($name, &pull, &seen) {
                disagreements.push(($name.to_string(), why));
            }
        }};
    }
    let some = Some(CREDS);
    let none: Option<&str> = None;

    // A sign-in proxy in front of the registry: a login page on another host, and
    // oauth2-proxy's own /oauth2/sign_in.
    {
        let mut proxy = mockito::Server::new_async().await;
        let mut sso = mockito::Server::new_async().await;
        sign_in_proxy(&mut proxy, &mut sso, "/login").await;
        for (name, creds) in [("sign_in_proxy", some), ("sign_in_proxy_anonymous", none)] {
            let extra = if creds.is_some() { LOGIN } else { "" };
            let pull = exporter_pull(&proxy.url(), extra).await;
            let seen = skopeo(host(&proxy.url()), creds, Ask::Inspect).await;
            if let Some(why) = compare(name, &pull, &seen) {
                disagreements.push((name.to_string(), why));
            }
        }
    }
    {
        let mut proxy = mockito::Server::new_async().await;
        let mut same = mockito::Server::new_async().await;
        sign_in_proxy(&mut proxy, &mut same, "/oauth2/sign_in").await;
        let pull = exporter_pull(&proxy.url(), "").await;
        let seen = skopeo(host(&proxy.url()), None, Ask::Inspect).await;
        if let Some(why) = compare("oauth2_proxy_sign_in", &pull, &seen) {
            disagreements.push(("oauth2_proxy_sign_in".to_string(), why));
        }
    }
    case!("no_challenge", some, |server| stripping_proxy(
        &mut server,
        None
    )
    .await);
    case!("empty_challenge", some, |server| stripping_proxy(
        &mut server,
        Some("")
    )
    .await);
    case!("ecr_expired_token", some, |server| ecr_expired(&mut server)
        .await);
    case!("robot_without_permission", some, |server| {
        robot_without_permission(&mut server).await
    });
    case!("invalid_token", some, |server| invalid_token(&mut server)
        .await);
    case!("head_refused_get_works", none, |server| {
        head_refused_get_works(&mut server).await
    });
    case!("digest_mismatch", none, |server| digest_mismatch(
        &mut server
    )
    .await);
    case!("manifest_404_without_oci_body", none, |server| {
        manifest_404_without_oci_body(&mut server).await
    });
    case!("token_service_429", some, |server| token_rate_limited(
        &mut server,
        "1"
    )
    .await);
    case!("unavailable_503", none, |server| unavailable(
        &mut server,
        "1"
    )
    .await);
    case!("basic_protected_anonymous", none, |server| {
        basic_protected(&mut server).await
    });
    case!("ghcr_token_flow", some, |server| ghcr_token_flow(
        &mut server
    )
    .await);
    case!("nexus_head_without_digest", none, |server| {
        nexus_head_without_digest(&mut server).await
    });
    case!("ghcr_private_package_anonymous", none, |server| {
        ghcr_private_package(&mut server).await
    });
    case!("manifest_403_denied", none, |server| manifest_refused(
        &mut server,
        403,
        r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
    )
    .await);
    case!("manifest_429", none, |server| manifest_refused(
        &mut server,
        429,
        r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit exceeded"}]}"#
    )
    .await);
    case!("manifest_500", none, |server| manifest_refused(
        &mut server,
        500,
        r#"{"errors":[{"code":"UNKNOWN","message":"storage backend unavailable"}]}"#
    )
    .await);
    assert_agreement(disagreements);
}

#[tokio::test]
async fn skopeo_agrees_with_the_pull_verdict_on_the_real_distribution_registries() {
    let mut disagreements = Vec::new();
    let login = |user: &str, password: &str| {
        (
            format!("username = \"{user}\"\npassword = \"{password}\""),
            format!("{user}:{password}"),
        )
    };
    let open = TestRegistry::start(Kind::Open).await;
    let basic = TestRegistry::start(Kind::Basic).await;
    let token = TestRegistry::start(Kind::Token).await;
    let read_only = TestRegistry::start(Kind::ReadOnly).await;
    let alice = login(support::BASIC_USER, support::BASIC_PASSWORD);
    let wrong = login(support::BASIC_USER, "not-the-password");
    let bob = login(support::TOKEN_ADMIN_USER, support::TOKEN_ADMIN_PASSWORD);
    let reader = login(support::TOKEN_READER_USER, support::TOKEN_READER_PASSWORD);
    let bob_wrong = login(support::TOKEN_ADMIN_USER, "not-bobs-password");
    let cases: Vec<(&str, &TestRegistry, Option<&Login>)> = vec![
        ("distribution_open", &open, None),
        ("distribution_htpasswd", &basic, Some(&alice)),
        ("distribution_htpasswd_wrong_password", &basic, Some(&wrong)),
        ("distribution_htpasswd_anonymous", &basic, None),
        ("distribution_token_admin", &token, Some(&bob)),
        ("distribution_token_reader", &token, Some(&reader)),
        (
            "distribution_token_wrong_password",
            &token,
            Some(&bob_wrong),
        ),
        ("distribution_token_anonymous", &token, None),
        ("distribution_read_only", &read_only, None),
    ];
    for (name, reg, creds) in cases {
        let pull = exporter_pull(&reg.url, creds.map(|c| c.0.as_str()).unwrap_or("")).await;
        let seen = skopeo(
            host(&reg.url),
            creds.map(|c| c.1.as_str()),
            Ask::Copy { cert_dir: None },
        )
        .await;
        if let Some(why) = compare(name, &pull, &seen) {
            disagreements.push((name.to_string(), why));
        }
    }

    // TLS with a private CA: the exporter trusts `ca_file`, skopeo the same CA in its
    // --cert-dir.
    let tls = TestRegistry::start(Kind::Tls).await;
    let ca = tls.ca_file.clone().expect("the TLS registry has a CA");
    let certs = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(&ca, certs.path().join("ca.crt")).expect("copy the CA");
    let pull = exporter_pull(&tls.url, &format!("ca_file = \"{}\"", ca.display())).await;
    let seen = skopeo(
        host(&tls.url),
        None,
        Ask::Copy {
            cert_dir: Some(certs.path()),
        },
    )
    .await;
    if let Some(why) = compare("distribution_tls_private_ca", &pull, &seen) {
        disagreements.push(("distribution_tls_private_ca".to_string(), why));
    }
    assert_agreement(disagreements);
}
