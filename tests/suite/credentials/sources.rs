//! The credentials check and every way users hold registry secrets, against real
//! Distribution registries (htpasswd, token auth with a token server, TLS) and mockito
//! for what they do not produce (rate-limit headers, 429 with Retry-After).

use crate::common;
use crate::common::mock::answer;
use crate::support;

use std::time::Duration;

use base64::Engine as _;
use common::{Exporter, config_from_toml, reason_of, run_one, sample, status_of};
use oci_registry_exporter::checks::{AuthMethod, CheckKind, Reason, Status};
use support::{Kind, TestRegistry};

fn toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n")
}

fn basic(user: &str, password: &str) -> String {
    format!("username = \"{user}\"\npassword = \"{password}\"")
}

#[tokio::test]
async fn htpasswd_registry_right_wrong_anonymous_and_missing_password() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let r = run_one(
        &config_from_toml(&toml("b", &reg.url, &basic("alice", "wonderland"))),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert_eq!(r.facts.auth_method, Some(AuthMethod::Basic));

    let r = run_one(
        &config_from_toml(&toml("b", &reg.url, &basic("alice", "rotated-away"))),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::InvalidCredentials, Some(401))
    );

    let r = run_one(
        &config_from_toml(&toml("b", &reg.url, "")),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Info, Reason::Unauthorized),
        "{}",
        r.message
    );
    assert_eq!(r.facts.auth_method, Some(AuthMethod::Anonymous));

    let r = run_one(
        &config_from_toml(&toml("b", &reg.url, "username = \"alice\"")),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::MissingPassword)
    );
    assert!(
        r.requests.is_empty(),
        "no request without a password: {:?}",
        r.requests
    );
    assert!(
        r.message
            .contains("secret reference probably failed to resolve"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn token_registry_users_anonymous_static_bearer_and_token_server_down() {
    let reg = TestRegistry::start(Kind::Token).await;
    let run = |extra: String| {
        let cfg = config_from_toml(&toml("t", &reg.url, &extra));
        async move { run_one(&cfg, CheckKind::Credentials).await }
    };
    let r = run(basic(
        support::TOKEN_ADMIN_USER,
        support::TOKEN_ADMIN_PASSWORD,
    ))
    .await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert!(r.message.contains("token service"), "{}", r.message);
    assert!(r.facts.token_request_duration.is_some());
    let expiry = r
        .facts
        .token_expiry
        .expect("the token server says expires_in");
    let left = expiry.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(250) && left <= Duration::from_secs(300),
        "{left:?}"
    );

    let r = run(basic(
        support::TOKEN_READER_USER,
        support::TOKEN_READER_PASSWORD,
    ))
    .await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);

    let r = run(basic("bob", "not-bobs-password")).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidCredentials),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("rejected the credentials"),
        "{}",
        r.message
    );

    let r = run(String::new()).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert!(r.message.contains("anonymous tokens"), "{}", r.message);

    // A static bearer token is sent as is.
    let minted = reg.mint_token(Some("bob"), &[]);
    let r = run(format!("token = \"{minted}\"")).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert_eq!(r.facts.auth_method, Some(AuthMethod::Bearer));
    let r = run("token = \"garbage-token\"".into()).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::InvalidCredentials, Some(401))
    );

    reg.stop_token_server();
    let r = run(basic(
        support::TOKEN_ADMIN_USER,
        support::TOKEN_ADMIN_PASSWORD,
    ))
    .await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::TokenEndpointUnreachable, None),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn open_registry_needs_no_credentials() {
    let reg = TestRegistry::start(Kind::Open).await;
    let r = run_one(
        &config_from_toml(&toml("o", &reg.url, "")),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(200))
    );
    assert!(r.message.contains("open"), "{}", r.message);
}

#[tokio::test]
async fn a_rotated_password_file_is_picked_up_without_restart() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "old-password\n").unwrap();
    let config = config_from_toml(&toml(
        "b",
        &reg.url,
        &format!(
            "username = \"alice\"\npassword_file = \"{}\"",
            file.display()
        ),
    ));
    let exporter = Exporter::start(config).await;
    let (_, body) = exporter.get("/probe?target=b&check=credentials").await;
    assert_eq!(
        reason_of(&body, "b", "credentials").as_deref(),
        Some("invalid_credentials")
    );
    std::fs::write(&file, "wonderland\n").unwrap();
    let (_, body) = exporter.get("/probe?target=b&check=credentials").await;
    assert_eq!(
        status_of(&body, "b", "credentials").as_deref(),
        Some("pass"),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "oci_registry_auth_method_info",
            &[("registry", "b"), ("method", "basic")]
        ),
        Some(1.0)
    );
    std::fs::remove_file(&file).unwrap();
    let (_, body) = exporter.get("/probe?target=b&check=credentials").await;
    assert_eq!(
        reason_of(&body, "b", "credentials").as_deref(),
        Some("secret_unreadable")
    );
    exporter.stop().await;
}

fn write_docker_config(dir: &std::path::Path, json: &str) -> std::path::PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[tokio::test]
async fn docker_config_auths_username_password_and_identity_token() {
    let basic_reg = TestRegistry::start(Kind::Basic).await;
    let token_reg = TestRegistry::start(Kind::Token).await;
    let dir = tempfile::tempdir().unwrap();
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    let path = write_docker_config(
        dir.path(),
        &format!(
            r#"{{"auths": {{
                "http://{basic}/v2/": {{"auth": "{auth}"}},
                "{token}": {{"identitytoken": "{refresh}"}}
            }}}}"#,
            basic = host(&basic_reg.url),
            token = host(&token_reg.url),
            refresh = support::BOB_REFRESH_TOKEN
        ),
    );
    let docker = format!("docker_config = \"{}\"", path.display());
    let cfg = config_from_toml(&toml("b", &basic_reg.url, &docker));
    let r = run_one(&cfg, CheckKind::Credentials).await;
    assert_eq!(
        (r.status, r.facts.auth_method),
        (Status::Pass, Some(AuthMethod::DockerConfig)),
        "{}",
        r.message
    );
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);

    let cfg = config_from_toml(&toml("t", &token_reg.url, &docker));
    let r = run_one(&cfg, CheckKind::Credentials).await;
    assert_eq!(
        (r.status, r.facts.auth_method),
        (Status::Pass, Some(AuthMethod::IdentityToken)),
        "{}",
        r.message
    );
    assert!(
        r.requests.iter().any(|q| q.method == "POST"),
        "refresh_token grant is a POST: {:?}",
        r.requests
    );
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);

    // username/password fields, and an identity token the server does not know.
    write_docker_config(
        dir.path(),
        &format!(
            r#"{{"auths": {{"{basic}": {{"username": "alice", "password": "wrong"}},
                 "{token}": {{"identitytoken": "revoked"}}}}}}"#,
            basic = host(&basic_reg.url),
            token = host(&token_reg.url)
        ),
    );
    let r = run_one(
        &config_from_toml(&toml("b", &basic_reg.url, &docker)),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidCredentials)
    );
    let r = run_one(
        &config_from_toml(&toml("t", &token_reg.url, &docker)),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidCredentials),
        "{}",
        r.message
    );

    // No entry for the host: anonymous, as docker does.
    write_docker_config(
        dir.path(),
        r#"{"auths": {"elsewhere.example.com": {"auth": "eDp5"}}}"#,
    );
    let r = run_one(
        &config_from_toml(&toml("b", &basic_reg.url, &docker)),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.facts.auth_method),
        (Status::Info, Some(AuthMethod::Anonymous))
    );

    write_docker_config(dir.path(), "{not json");
    let r = run_one(
        &config_from_toml(&toml("b", &basic_reg.url, &docker)),
        CheckKind::Credentials,
    )
    .await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::SecretUnreadable)
    );
    assert!(r.message.contains("is not valid JSON"), "{}", r.message);
}

/// A credential helper on PATH and DOCKER_CONFIG discovery, through the real binary (the
/// environment is the process's, so this runs in a child process).
#[tokio::test]
async fn credential_helper_and_docker_config_env_through_the_binary() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-exportertest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\necho \"$host\" >> \"$(dirname \"$0\")/asked\"\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"wonderland\"}' \"$host\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = reg.url.trim_start_matches("http://").to_string();
    write_docker_config(
        dir.path(),
        &format!(r#"{{"credHelpers": {{"{host}": "exportertest"}}}}"#),
    );
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("OCI__RegistryUrl", &reg.url)
        .env("DOCKER_CONFIG", dir.path())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(resp) = client
            .get(format!(
                "http://127.0.0.1:{port}/probe?target=default&check=credentials"
            ))
            .send()
            .await
        {
            body = resp.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status_of(&body, "default", "credentials").as_deref(),
        Some("pass"),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "oci_registry_auth_method_info",
            &[("registry", "default"), ("method", "credential_helper")]
        ),
        Some(1.0),
        "{body}"
    );
    let asked = std::fs::read_to_string(bin.join("asked")).unwrap();
    assert_eq!(asked.trim(), host, "the helper is asked for host:port");
}

#[tokio::test]
async fn tls_certificate_expiry_is_exported() {
    let reg = TestRegistry::start(Kind::Tls).await;
    let ca = reg.ca_file.clone().unwrap();
    let cfg = config_from_toml(&toml(
        "tls",
        &reg.url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    let exporter = Exporter::start(cfg).await;
    let (_, body) = exporter.get("/probe?target=tls&check=registry").await;
    let expiry = sample(
        &body,
        "oci_registry_tls_certificate_expiry_timestamp_seconds",
        &[("registry", "tls")],
    )
    .expect("expiry exported");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now,
        "the test certificate is valid: {expiry} vs {now}"
    );
    exporter.stop().await;
}

#[tokio::test]
async fn the_tls_expiry_is_the_earliest_of_the_chain() {
    // The intermediate expires on 1 January next year; the leaf (rcgen's default) in 4096.
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let year: i32 = now[..4].parse().unwrap();
    let reg = TestRegistry::start_with(
        Kind::Tls,
        support::Options {
            intermediate_not_after: Some((year + 1, 1, 1)),
            ..Default::default()
        },
    )
    .await;
    let ca = reg.ca_file.clone().unwrap();
    let cfg = config_from_toml(&toml(
        "chain",
        &reg.url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    let r = run_one(&cfg, CheckKind::Registry).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let expiry = r
        .facts
        .tls_certificate_expiry
        .expect("an expiry is recorded");
    let expected = humantime::parse_rfc3339(&format!("{}-01-01T00:00:00Z", year + 1)).unwrap();
    assert_eq!(
        expiry, expected,
        "the intermediate's notAfter, not the leaf's"
    );
}

/// A registry with its own interval, timeout and checks (`toml` fixes the timeout).
fn toml_every_second(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"1s\"\nchecks = [\"registry\"]\n{extra}\n"
    )
}

#[tokio::test]
async fn registries_on_one_host_share_a_client_and_each_reports_its_own_certificate_expiry() {
    // Two TLS registries on 127.0.0.1, on two ports, whose chains expire on 1 January of the
    // next year and of the year after (their intermediates).
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let year: i32 = now[..4].parse().unwrap();
    let start = |y: i32| {
        TestRegistry::start_with(
            Kind::Tls,
            support::Options {
                intermediate_not_after: Some((y, 1, 1)),
                ..Default::default()
            },
        )
    };
    let (a, b) = tokio::join!(start(year + 1), start(year + 2));
    // One trust file for both: the same TLS settings, so one HTTP client and one verifier,
    // which is told the server name only, and 127.0.0.1 is both.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("both.pem");
    let pem = |r: &TestRegistry| std::fs::read_to_string(r.ca_file.as_ref().unwrap()).unwrap();
    std::fs::write(&ca, pem(&a) + &pem(&b)).unwrap();
    let ca_line = format!("ca_file = \"{}\"", ca.display());
    let config = config_from_toml(&format!(
        "{}{}",
        toml_every_second("a", &a.url, &ca_line),
        toml_every_second("b", &b.url, &ca_line)
    ));
    let app = oci_registry_exporter::App::new(config.clone()).unwrap();
    assert_eq!(app.current().http_clients(), 1, "one client for both");

    let exporter = Exporter::start(config).await;
    // After the first round, each registry's requests go over its pooled connection, with
    // no handshake in between: the expiry must still be its own chain's.
    let runs = |body: &str, r: &str| {
        sample(
            body,
            "oci_registry_check_runs_total",
            &[("registry", r), ("check", "registry"), ("status", "pass")],
        )
        .unwrap_or(0.0)
    };
    let mut body = String::new();
    for _ in 0..100 {
        body = exporter.metrics().await;
        if runs(&body, "a") >= 3.0 && runs(&body, "b") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        runs(&body, "a") >= 3.0 && runs(&body, "b") >= 3.0,
        "three rounds each within 10 s:\n{body}"
    );
    let expiry = |r: &str| {
        sample(
            &body,
            "oci_registry_tls_certificate_expiry_timestamp_seconds",
            &[("registry", r)],
        )
    };
    let new_year = |y: i32| {
        humantime::parse_rfc3339(&format!("{y}-01-01T00:00:00Z"))
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert_eq!(expiry("a"), Some(new_year(year + 1)), "a's chain");
    assert_eq!(expiry("b"), Some(new_year(year + 2)), "b's chain");
    exporter.stop().await;
}

#[tokio::test]
async fn registries_share_one_http_client_per_distinct_tls_setting() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca_x = write("x.pem", &support::tls::server_tls().ca_pem);
    let ca_y = write("y.pem", &support::tls::server_tls().ca_pem);
    let client = support::tls::client_tls();
    let cert = write("client.pem", &client.cert_pem);
    let key = write("client.key", &client.key_pem);
    let reg = |name: &str, url: &str, extra: &str| {
        format!("[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
    };
    let config = config_from_toml(
        &[
            // Timeouts and intervals are set per request and per loop: they do not split.
            reg("a", "https://a.example.com", "timeout = \"3s\""),
            reg("b", "https://b.example.com", "interval = \"5m\""),
            reg("c", "http://127.0.0.1:1", ""),
            reg("d", "https://d.example.com", "insecure_skip_verify = true"),
            reg("e", "https://e.example.com", &format!("ca_file = \"{ca_x}\"")),
            reg("f", "https://f.example.com:5000", &format!("ca_file = \"{ca_x}\"")),
            reg("g", "https://g.example.com", &format!("ca_file = \"{ca_y}\"")),
            reg(
                "h",
                "https://h.example.com",
                &format!(
                    "ca_file = \"{ca_x}\"\nclient_cert_file = \"{cert}\"\nclient_key_file = \"{key}\""
                ),
            ),
        ]
        .concat(),
    );
    let app = oci_registry_exporter::App::new(config).unwrap();
    let generation = app.current();
    let client = |name: &str| generation.target(name).unwrap().client.clone();
    let shares = |x: &str, y: &str| client(x).shares_http_client_with(&client(y));
    assert!(
        shares("a", "b") && shares("b", "c"),
        "default TLS settings: one client"
    );
    assert!(shares("e", "f"), "the same ca_file: one client");
    for (x, y) in [("a", "d"), ("a", "e"), ("e", "g"), ("e", "h")] {
        assert!(!shares(x, y), "{x} and {y} have different TLS settings");
    }
    assert_eq!(
        generation.http_clients(),
        5,
        "{{a,b,c}}, {{d}}, {{e,f}}, {{g}}, {{h}}"
    );
}

#[tokio::test]
async fn an_https_token_endpoint_has_its_certificate_expiry_exported() {
    let reg = TestRegistry::start_with(
        Kind::Token,
        support::Options {
            token_tls: true,
            ..Default::default()
        },
    )
    .await;
    assert!(reg.token_url.as_deref().unwrap().starts_with("https://"));
    let ca = reg.ca_file.clone().unwrap();
    let with_ca = config_from_toml(&toml(
        "t",
        &reg.url,
        &format!(
            "{}\nca_file = \"{}\"",
            basic("bob", "bobsecret"),
            ca.display()
        ),
    ));
    let r = run_one(&with_ca, CheckKind::Credentials).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    assert!(r.facts.token_endpoint_tls_certificate_expiry.is_some());
    assert!(
        r.facts.tls_certificate_expiry.is_none(),
        "the registry itself is plain HTTP"
    );
    // Without the CA the token endpoint's certificate is refused.
    let without = config_from_toml(&toml("t", &reg.url, &basic("bob", "bobsecret")));
    let r = run_one(&without, CheckKind::Credentials).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::TokenEndpointUnreachable),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn rate_limit_headers_and_retry_after_are_honoured() {
    let mut server = mockito::Server::new_async().await;
    answer(
        &mut server,
        "GET",
        "/v2/",
        200,
        &[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "76;w=21600"),
        ],
        "",
    )
    .await;
    let limited = server
        .mock("HEAD", "/v2/library/alpine/manifests/latest")
        .with_status(429)
        .with_header("retry-after", "30")
        .expect(1)
        .create_async()
        .await;
    // The shortest interval allowed (1 s), and a timeout no longer than it.
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"hub\"\nurl = \"{}\"\ntimeout = \"1s\"\ninterval = \"1s\"\nchecks = [\"registry\", \"pull\"]\n",
        server.url()
    ));
    let exporter = Exporter::start(cfg).await;
    exporter.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = exporter.metrics().await;
    assert_eq!(
        sample(
            &body,
            "oci_registry_rate_limit_limit",
            &[("registry", "hub")]
        ),
        Some(100.0)
    );
    assert_eq!(
        sample(
            &body,
            "oci_registry_rate_limit_remaining",
            &[("registry", "hub")]
        ),
        Some(76.0)
    );
    assert_eq!(
        reason_of(&body, "hub", "pull").as_deref(),
        Some("rate_limited")
    );
    // At a 1 s interval the pull would have run ~3 times; Retry-After: 30 held it to one.
    limited.assert_async().await;
    exporter.stop().await;
}

#[tokio::test]
async fn mutual_tls_with_and_without_a_client_certificate() {
    let reg = TestRegistry::start_with(
        Kind::Tls,
        support::Options {
            require_client_cert: true,
            ..Default::default()
        },
    )
    .await;
    let ca = reg.ca_file.clone().unwrap();
    let (cert, key) = reg.client_cert.clone().unwrap();
    let with = config_from_toml(&toml(
        "mtls",
        &reg.url,
        &format!(
            "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            ca.display(),
            cert.display(),
            key.display()
        ),
    ));
    for kind in [CheckKind::Registry, CheckKind::Credentials, CheckKind::Pull] {
        let r = run_one(&with, kind).await;
        assert_eq!(r.status, Status::Pass, "{kind:?}: {}", r.message);
    }
    let without = config_from_toml(&toml(
        "mtls",
        &reg.url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    let r = run_one(&without, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.http_status),
        (Status::Fail, None),
        "{}",
        r.message
    );
    // Under TLS 1.3 the server refuses the missing certificate after the client has
    // finished its handshake, so the client sees either a TLS alert or a closed connection.
    assert!(
        matches!(r.reason, Reason::Tls | Reason::ConnectionError),
        "{:?}: {}",
        r.reason,
        r.message
    );
}

#[tokio::test]
async fn a_refused_cached_token_is_dropped_and_renewed_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut server = mockito::Server::new_async().await;
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"mock\",scope=\"repository:library/alpine:pull\"",
        server.url()
    );
    let issued = Arc::new(AtomicUsize::new(0));
    let issued2 = issued.clone();
    let token_endpoint = server
        .mock("GET", "/token")
        .match_query(mockito::Matcher::Any)
        .with_body_from_request(move |_| {
            let n = issued2.fetch_add(1, Ordering::SeqCst);
            format!("{{\"token\":\"t{n}\",\"expires_in\":300}}").into_bytes()
        })
        .expect(2)
        .create_async()
        .await;
    // t0 works once, then the registry revokes it; t1 works.
    let t0_uses = Arc::new(AtomicUsize::new(0));
    let uses = t0_uses.clone();
    server
        .mock("HEAD", "/v2/library/alpine/manifests/latest")
        .with_status_code_from_request(move |req| {
            match req
                .header("authorization")
                .first()
                .and_then(|v| v.to_str().ok())
            {
                Some("Bearer t0") if uses.fetch_add(1, Ordering::SeqCst) == 0 => 200,
                Some("Bearer t1") => 200,
                _ => 401,
            }
        })
        .with_header("www-authenticate", &challenge)
        .create_async()
        .await;
    // Scrape mode: no background round may use the cache between the two probes. The
    // manifest alone is the subject: no blob download (pull_blob, tests/suite/pull/blob.rs).
    let cfg = config_from_toml(&format!(
        "mode = \"scrape\"\n{}",
        toml(
            "mock",
            &server.url(),
            "checks = [\"pull\"]\npull_blob = false"
        )
    ));
    let exporter = Exporter::start(cfg).await;
    let (_, first) = exporter.get("/probe?target=mock&check=pull").await;
    assert_eq!(
        status_of(&first, "mock", "pull").as_deref(),
        Some("pass"),
        "{first}"
    );
    let (_, second) = exporter.get("/probe?target=mock&check=pull").await;
    assert_eq!(
        status_of(&second, "mock", "pull").as_deref(),
        Some("pass"),
        "{second}"
    );
    token_endpoint.assert_async().await;
    assert_eq!(
        t0_uses.load(Ordering::SeqCst),
        2,
        "t0 was used from the cache once more"
    );
    exporter.stop().await;
}
