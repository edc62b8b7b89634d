//! Verdicts a real client would agree with (issue 20): an answer counts only when it is the
//! registry API's answer, credentials are blamed only on evidence, one cause is named once,
//! and the registry's own words are quoted.
//!
//! Each test is named after one behaviour and cites its public source. What no real
//! registry here produces (a sign-in proxy, a proxy stripping `WWW-Authenticate`, ECR, Quay,
//! Harbor) is emulated with mockito on 127.0.0.1 as the cited sources describe it.
//! `tests/suite/verdicts/skopeo_oracle.rs` runs skopeo against the same emulations.

use crate::common;
use crate::common::mock::{answer, unauthorized};
use crate::emulations;
use crate::support;

use std::sync::Arc;

use common::config_from_toml;
use emulations::*;
use mockito::Matcher;
use oci_registry_exporter::catalogue;
use oci_registry_exporter::checks::{self, CheckKind, CheckResult, Reason, Status};
use oci_registry_exporter::client::RegistryClient;
use oci_registry_exporter::report;

fn config(url: &str, extra: &str) -> oci_registry_exporter::Config {
    config_from_toml(&format!(
        "[[registries]]\nname = \"r\"\nurl = \"{url}\"\ntimeout = \"5s\"\npush_test_repository = \"probe/push\"\n{extra}\n"
    ))
}

/// A round as the daemon and the doctor run it: every check in order on one client, the
/// root cause followed, then annotated.
async fn round(cfg: &oci_registry_exporter::Config, kinds: &[CheckKind]) -> Vec<CheckResult> {
    let target = &cfg.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    let mut results = Vec::new();
    for &kind in kinds {
        results.push(checks::run_check(kind, target, &client).await);
    }
    checks::follow_root_causes(&mut results);
    for r in &mut results {
        catalogue::annotate(r, catalogue::DEFAULT_RUNBOOK_BASE_URL);
    }
    results
}

fn of(results: &[CheckResult], kind: CheckKind) -> &CheckResult {
    results
        .iter()
        .find(|r| r.check == kind)
        .expect("the check ran")
}

fn fixes(r: &CheckResult) -> String {
    r.diagnosis
        .as_ref()
        .map(|d| format!("{} | {}", d.cause, d.fix.join(" | ")))
        .unwrap_or_default()
}

/// The doctor's text names exactly one root cause for the round.
fn assert_one_root_cause(results: &[CheckResult]) {
    let named: Vec<(String, CheckResult)> = results
        .iter()
        .map(|r| ("r".to_string(), r.clone()))
        .collect();
    let text = report::doctor_text(&named, &report::Urls::new());
    assert_eq!(text.matches("ROOT CAUSE").count(), 1, "{text}");
}

// Authelia (https://www.authelia.com/integration/proxies/introduction/) and oauth2-proxy
// (https://oauth2-proxy.github.io/oauth2-proxy/behaviour: "when authentication is missing
// but required, the user is redirected to the configured Identity Provider login page")
// put every path behind a browser login: a registry client following the redirect gets a
// sign-in page with 200 text/html. skopeo and docker fail; no check may pass.
#[tokio::test]
async fn a_sign_in_proxy_redirecting_to_a_200_login_page_is_not_the_registry_api() {
    let mut proxy = mockito::Server::new_async().await;
    let mut sso = mockito::Server::new_async().await;
    sign_in_proxy(&mut proxy, &mut sso, "/login").await;
    let cfg = config(&proxy.url(), LOGIN);
    let results = round(
        &cfg,
        &[
            CheckKind::Registry,
            CheckKind::Credentials,
            CheckKind::Pull,
            CheckKind::Push,
            CheckKind::Capabilities,
            CheckKind::Referrers,
        ],
    )
    .await;
    for r in &results {
        assert_ne!(r.status, Status::Pass, "{:?}: {}", r.check, r.message);
    }
    let registry = of(&results, CheckKind::Registry);
    assert_eq!(
        (registry.status, registry.reason),
        (Status::Fail, Reason::NotARegistry),
        "{}",
        registry.message
    );
    assert!(
        registry
            .message
            .contains(&format!("a sign-in page at {}/login", sso.url())),
        "{}",
        registry.message
    );
    assert_eq!(
        registry.evidence.get("final_url").map(String::as_str),
        Some(format!("{}/login", sso.url()).as_str())
    );
    assert_eq!(
        registry.evidence.get("content_type").map(String::as_str),
        Some("text/html")
    );
    assert!(registry.evidence["body_start"].starts_with("<!DOCTYPE html>"));
    // The others follow the one cause.
    for kind in [CheckKind::Credentials, CheckKind::Pull, CheckKind::Push] {
        let r = of(&results, kind);
        assert_eq!(
            (r.status, r.reason, r.consequence_of),
            (
                Status::Fail,
                Reason::NotARegistry,
                Some(CheckKind::Registry)
            ),
            "{kind:?}: {}",
            r.message
        );
    }
    assert_one_root_cause(&results);
}

// oauth2-proxy on the registry's own host: the sign-in page is its `/oauth2/sign_in`
// endpoint (https://oauth2-proxy.github.io/oauth2-proxy/features/endpoints). The pull
// alone, without the registry check, must not pass either.
#[tokio::test]
async fn an_oauth2_proxy_sign_in_page_on_the_same_host_fails_the_pull() {
    let mut proxy = mockito::Server::new_async().await;
    let mut same = mockito::Server::new_async().await;
    // The login page lives on a second server only because mockito cannot redirect to
    // itself before the mock exists; its path is oauth2-proxy's.
    sign_in_proxy(&mut proxy, &mut same, "/oauth2/sign_in").await;
    let cfg = config(&proxy.url(), "");
    let results = round(&cfg, &[CheckKind::Pull]).await;
    let pull = of(&results, CheckKind::Pull);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Fail, Reason::NotARegistry),
        "{}",
        pull.message
    );
    assert!(pull.message.contains("sign-in page"), "{}", pull.message);
    assert!(pull.message.contains("/oauth2/sign_in"), "{}", pull.message);
}

// A reverse proxy that strips `WWW-Authenticate` (nginx `proxy_hide_header`, header
// policies; oauth2-proxy's own 401 for `Accept: application/json` requests carries none,
// https://oauth2-proxy.github.io/oauth2-proxy/behaviour). Docker and containers/image
// send credentials only after a challenge (containers/image docker_client.go: the auth
// scheme comes from the ping's challenges), so skopeo fails with the same credentials.
#[tokio::test]
async fn a_401_without_a_challenge_fails_and_no_basic_is_sent_anyway() {
    let mut server = mockito::Server::new_async().await;
    let never = stripping_proxy(&mut server, None).await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(
        &cfg,
        &[CheckKind::Registry, CheckKind::Credentials, CheckKind::Pull],
    )
    .await;
    for r in &results {
        assert_eq!(
            (r.status, r.reason),
            (Status::Fail, Reason::NoChallenge),
            "{:?}: {}",
            r.check,
            r.message
        );
    }
    let registry = of(&results, CheckKind::Registry);
    assert!(
        registry
            .message
            .contains("without a WWW-Authenticate challenge")
            && registry.message.contains("strips"),
        "{}",
        registry.message
    );
    assert!(
        fixes(registry).contains("proxy_hide_header"),
        "{}",
        fixes(registry)
    );
    assert_eq!(
        of(&results, CheckKind::Pull).consequence_of,
        Some(CheckKind::Registry)
    );
    assert_one_root_cause(&results);
    for m in never {
        m.assert_async().await;
    }
}

// A proxy that blanks the header instead of removing it sends `WWW-Authenticate:` with an
// empty value: that is no challenge, not "broken quoting" (an unreadable challenge).
#[tokio::test]
async fn an_empty_challenge_is_no_challenge_not_an_unreadable_one() {
    let mut server = mockito::Server::new_async().await;
    stripping_proxy(&mut server, Some("")).await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(&cfg, &[CheckKind::Registry, CheckKind::Pull]).await;
    for r in &results {
        assert_eq!(
            (r.status, r.reason),
            (Status::Fail, Reason::NoChallenge),
            "{:?}: {}",
            r.check,
            r.message
        );
        assert!(!r.message.contains("cannot be parsed"), "{}", r.message);
    }
}

// awslabs/amazon-ecr-credential-helper#7: ECR's answer to a token older than 12 h. The
// HEAD's 403 has no body, so the pull asks again with GET and reads the message; every
// check follows the credentials check's finding instead of "grant pull".
#[tokio::test]
async fn an_expired_ecr_token_is_one_cause_not_a_missing_pull_permission() {
    let mut server = mockito::Server::new_async().await;
    ecr_expired(&mut server).await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(
        &cfg,
        &[
            CheckKind::Registry,
            CheckKind::Credentials,
            CheckKind::Pull,
            CheckKind::Referrers,
        ],
    )
    .await;
    assert_eq!(of(&results, CheckKind::Registry).status, Status::Pass);
    let creds = of(&results, CheckKind::Credentials);
    assert_eq!(
        (creds.status, creds.reason),
        (Status::Fail, Reason::CredentialsExpired),
        "{}",
        creds.message
    );
    for kind in [CheckKind::Pull, CheckKind::Referrers] {
        let r = of(&results, kind);
        assert_eq!(
            (r.status, r.reason, r.consequence_of),
            (
                Status::Fail,
                Reason::CredentialsExpired,
                Some(CheckKind::Credentials)
            ),
            "{kind:?}: {}",
            r.message
        );
        assert!(!r.message.contains("grant pull"), "{}", r.message);
        assert!(!fixes(r).contains("grant pull"), "{}", fixes(r));
        assert!(
            r.message.contains("Your authorization token has expired"),
            "{}",
            r.message
        );
    }
    assert_one_root_cause(&results);
}

// Quay answers a robot account that lacks a permission with 401 UNAUTHORIZED "access to
// the requested resource is not authorized" (quay/quay endpoints/v2/errors.py,
// `Unauthorized`, raised by `_require_repo_permission`), without insufficient_scope, after
// its token service accepted the same credentials; Harbor does the same for robots
// (issue 20). The credentials are good: the verdict is a missing permission.
#[tokio::test]
async fn a_401_after_the_token_service_accepted_the_credentials_is_a_missing_permission() {
    let mut server = mockito::Server::new_async().await;
    robot_without_permission(&mut server).await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(&cfg, &[CheckKind::Credentials, CheckKind::Pull]).await;
    assert_eq!(of(&results, CheckKind::Credentials).status, Status::Pass);
    let pull = of(&results, CheckKind::Pull);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Fail, Reason::Forbidden),
        "{}",
        pull.message
    );
    assert!(!pull.message.contains("wrong, rotated"), "{}", pull.message);
    assert!(
        pull.message
            .contains("\"access to the requested resource is not authorized\""),
        "{}",
        pull.message
    );
}

// RFC 6750 §3.1: `error="invalid_token"` names the token itself as bad; a 401 with it is
// bad credentials even after the token service issued the token.
#[tokio::test]
async fn an_invalid_token_401_is_bad_credentials() {
    let mut server = mockito::Server::new_async().await;
    invalid_token(&mut server).await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(&cfg, &[CheckKind::Pull]).await;
    assert_eq!(
        of(&results, CheckKind::Pull).reason,
        Reason::InvalidCredentials
    );
}

// HEAD is an optimisation: a registry (or a proxy) that refuses the manifest HEAD with a
// bodiless 405 while GET works is pulled fine by docker and skopeo (they GET), but
// containerd resolves with HEAD (containerd remotes/docker/resolver.go) and fails. A
// warning naming containerd; not a failure, not a pass.
#[tokio::test]
async fn a_manifest_head_refused_with_405_while_get_works_warns_naming_containerd() {
    let mut server = mockito::Server::new_async().await;
    head_refused_get_works(&mut server).await;
    let cfg = config(&server.url(), "");
    let results = round(&cfg, &[CheckKind::Registry, CheckKind::Pull]).await;
    let pull = of(&results, CheckKind::Pull);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Warn, Reason::Nonconformant),
        "{}",
        pull.message
    );
    assert!(pull.message.contains("containerd"), "{}", pull.message);
    assert_eq!(
        pull.evidence.get("digest").map(String::as_str),
        Some(manifest_digest().as_str())
    );
}

// A manifest whose bytes do not hash to the digest sent with them is refused by every
// client (containers/image verifies the digest of what it GETs): not a pass.
#[tokio::test]
async fn a_manifest_whose_bytes_do_not_match_its_digest_fails() {
    let mut server = mockito::Server::new_async().await;
    digest_mismatch(&mut server).await;
    let cfg = config(&server.url(), "");
    let results = round(&cfg, &[CheckKind::Pull]).await;
    let pull = of(&results, CheckKind::Pull);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Fail, Reason::InvalidResponse),
        "{}",
        pull.message
    );
    assert!(pull.message.contains("hash to"), "{}", pull.message);
}

// A 404 is MANIFEST_UNKNOWN only when the OCI error body says so: a web server's 404 page
// for the manifest path is not the registry saying "no such image".
#[tokio::test]
async fn a_manifest_404_without_an_oci_error_body_is_not_the_registry_api() {
    let mut server = mockito::Server::new_async().await;
    manifest_404_without_oci_body(&mut server).await;
    let cfg = config(&server.url(), "");
    let pull = round(&cfg, &[CheckKind::Pull]).await.remove(0);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Fail, Reason::NotARegistry),
        "{}",
        pull.message
    );
}

// Docker Hub's token service (auth.docker.io) limits token requests with 429 and
// `Retry-After` (https://docs.docker.com/docker-hub/usage/): that is a rate limit named
// after the token host, not "check realm/service".
#[tokio::test]
async fn a_token_service_429_is_rate_limited_naming_the_token_host() {
    let mut server = mockito::Server::new_async().await;
    token_rate_limited(&mut server, "120").await;
    let cfg = config(&server.url(), LOGIN);
    let results = round(&cfg, &[CheckKind::Credentials, CheckKind::Pull]).await;
    for r in &results {
        assert_eq!(
            (r.status, r.reason),
            (Status::Fail, Reason::RateLimited),
            "{:?}: {}",
            r.check,
            r.message
        );
        let host = server.url().trim_start_matches("http://").to_string();
        assert!(r.message.contains(&host), "{}", r.message);
        assert_eq!(
            r.facts.retry_after,
            Some(std::time::Duration::from_secs(120))
        );
    }
}

// RFC 9110 §10.2.3: Retry-After rides on 503 too, as seconds or an HTTP-date.
#[tokio::test]
async fn retry_after_on_a_503_is_honoured_as_an_http_date() {
    let mut server = mockito::Server::new_async().await;
    let later =
        httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(300));
    unavailable(&mut server, &later).await;
    let cfg = config(&server.url(), "");
    let r = round(&cfg, &[CheckKind::Registry]).await.remove(0);
    assert_eq!(r.reason, Reason::ServerError);
    let after = r.facts.retry_after.expect("Retry-After is honoured");
    assert!(
        after > std::time::Duration::from_secs(200) && after <= std::time::Duration::from_secs(300),
        "{after:?}"
    );
}

// goharbor/harbor src/server/middleware/repoproxy/proxy.go: a proxy-cache project refuses
// every push with 403 DENIED "can not push artifact to a proxy project". Granting push
// cannot help, so neither the message nor the fix may say so.
#[tokio::test]
async fn harbor_refusing_a_push_to_a_proxy_cache_project_is_quoted_and_not_fixed_by_granting_push()
{
    let mut server = mockito::Server::new_async().await;
    common::basic_challenge(&mut server).await;
    answer(&mut server, "POST", "/v2/probe/push/blobs/uploads/", 403, &[("content-type", "application/json")], r#"{"errors":[{"code":"DENIED","message":"can not push artifact to a proxy project: probe"}]}"#).await;
    let cfg = config(&server.url(), LOGIN);
    let push = round(&cfg, &[CheckKind::Push]).await.remove(0);
    assert_eq!(push.status, Status::Fail, "{}", push.message);
    assert!(
        push.message
            .contains("\"can not push artifact to a proxy project: probe\""),
        "{}",
        push.message
    );
    assert_eq!(
        push.evidence.get("registry_message").map(String::as_str),
        Some("can not push artifact to a proxy project: probe")
    );
    assert!(!push.message.contains("grant push"), "{}", push.message);
    assert!(!fixes(&push).contains("grant push"), "{}", fixes(&push));
    assert!(fixes(&push).contains("proxy project"), "{}", fixes(&push));
}

// Capabilities judges refusals with the same table as every other check: an anonymous 401
// is `unauthorized` there as in pull (it was `no_credentials` in a table of its own).
#[tokio::test]
async fn capabilities_and_pull_give_an_anonymous_401_the_same_reason() {
    let mut server = mockito::Server::new_async().await;
    common::basic_challenge(&mut server).await;
    for method in ["GET", "HEAD"] {
        server
            .mock(method, MANIFEST_PATH)
            .with_status(401)
            .with_header("www-authenticate", "Basic realm=\"mock\"")
            .with_body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .create_async()
            .await;
    }
    let cfg = config(&server.url(), "");
    let results = round(&cfg, &[CheckKind::Pull, CheckKind::Capabilities]).await;
    assert_eq!(of(&results, CheckKind::Pull).reason, Reason::Unauthorized);
    let caps = of(&results, CheckKind::Capabilities);
    let referrers = &caps.evidence["referrers"];
    assert!(referrers.starts_with("denied"), "{referrers}");
    assert!(
        referrers.contains("no credentials are configured"),
        "{referrers}"
    );
    // The probe's reason, when it decides the check's status.
    assert_ne!(caps.reason, Reason::NoCredentials, "{}", caps.message);
}

// The same one cause reaches the daemon's metrics: `reason` of the dependent checks
// follows the root, so an alert on pull says what the credentials check says.
#[tokio::test]
async fn the_daemon_exports_the_root_cause_as_the_reason_of_its_consequences() {
    let mut server = mockito::Server::new_async().await;
    ecr_expired(&mut server).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"ecr\"\nurl = \"{}\"\ntimeout = \"5s\"\n{LOGIN}\nchecks = [\"registry\", \"credentials\", \"pull\"]\n",
        server.url()
    ));
    let exporter = common::Exporter::start(cfg).await;
    exporter.wait_ready().await;
    let body = exporter.metrics().await;
    assert_eq!(
        common::reason_of(&body, "ecr", "credentials").as_deref(),
        Some("credentials_expired")
    );
    assert_eq!(
        common::reason_of(&body, "ecr", "pull").as_deref(),
        Some("credentials_expired"),
        "{body}"
    );
    // The `/` page shows the pull as the credentials' consequence.
    let (_, page) = exporter.get("/").await;
    assert!(
        page.contains("consequence of check.integration.oci.credentials"),
        "{page}"
    );
    exporter.stop().await;
}

// The Docker token spec's refusal carries `{"errors":[{"message"}]}`; the real token
// server of the token registry (tests/suite/support/token_server.rs, as the reference facts
// observed) answers a wrong password with 401 "invalid username or password". The
// registry's own words are quoted, not only the status.
#[tokio::test]
async fn a_token_service_refusal_quotes_its_message() {
    let reg = support::TestRegistry::start(support::Kind::Token).await;
    let cfg = config(
        &reg.url,
        &format!(
            "username = \"{}\"\npassword = \"not-bobs-password\"",
            support::TOKEN_ADMIN_USER
        ),
    );
    let results = round(&cfg, &[CheckKind::Credentials, CheckKind::Pull]).await;
    let creds = of(&results, CheckKind::Credentials);
    assert_eq!(
        creds.reason,
        Reason::InvalidCredentials,
        "{}",
        creds.message
    );
    assert!(
        creds.message.contains("\"invalid username or password\""),
        "{}",
        creds.message
    );
    let pull = of(&results, CheckKind::Pull);
    assert_eq!(pull.consequence_of, Some(CheckKind::Credentials));
}

// The doctor itself (the `check` subcommand, through App::execute) against the three
// answers of issue 20: a sign-in page, a proxy stripping WWW-Authenticate and an expired
// ECR token. Its text names one root cause, and no check passes where skopeo fails.
#[tokio::test]
async fn the_doctor_names_one_root_cause_for_each_of_the_three_answers() {
    let mut sign_in = mockito::Server::new_async().await;
    let mut sso = mockito::Server::new_async().await;
    sign_in_proxy(&mut sign_in, &mut sso, "/login").await;
    let mut stripping = mockito::Server::new_async().await;
    let _never = stripping_proxy(&mut stripping, None).await;
    let mut ecr = mockito::Server::new_async().await;
    ecr_expired(&mut ecr).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, url) in [
        ("sign-in", sign_in.url()),
        ("stripping", stripping.url()),
        ("ecr", ecr.url()),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{LOGIN}\nchecks = [\"registry\", \"credentials\", \"pull\", \"referrers\"]\n"
            ),
        )
        .expect("write the configuration");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
            .env_remove("OCI__RegistryUrl")
            .env("NO_COLOR", "1")
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .await
            .expect("the doctor runs");
        let text = String::from_utf8_lossy(&out.stdout);
        // For `-- --nocapture`: what an on-call engineer reads.
        eprintln!("== {name}\n{text}");
        assert_eq!(text.matches("ROOT CAUSE").count(), 1, "{name}:\n{text}");
        // The registry check may pass (skopeo's ping passes too); the pull never does.
        let pull = text
            .lines()
            .find(|l| l.contains("check.integration.oci.pull"))
            .expect("the pull ran");
        assert!(pull.starts_with("FAIL"), "{name}:\n{text}");
        assert_ne!(out.status.code(), Some(0), "{name}:\n{text}");
    }
}

// A front end that answers every HEAD with an empty 200 (no manifest type, no digest) but
// serves its HTML page to GET: the HEAD proves nothing, the GET decides. skopeo GETs and
// fails on the HTML.
#[tokio::test]
async fn a_catch_all_head_200_without_a_manifest_type_does_not_make_a_pull_pass() {
    let mut server = mockito::Server::new_async().await;
    answer(
        &mut server,
        "HEAD",
        MANIFEST_PATH,
        200,
        &[("content-type", "text/plain")],
        "",
    )
    .await;
    answer(
        &mut server,
        "GET",
        MANIFEST_PATH,
        200,
        &[("content-type", "text/html")],
        SIGN_IN_PAGE,
    )
    .await;
    let cfg = config(&server.url(), "");
    let pull = round(&cfg, &[CheckKind::Pull]).await.remove(0);
    assert_eq!(
        (pull.status, pull.reason),
        (Status::Fail, Reason::NotARegistry),
        "{}",
        pull.message
    );
}

// Credentials are blamed only on evidence: when the token service issued a token for them
// and the registry refuses that token at /v2/ without `invalid_token`, the token service
// and the registry disagree (a wrong `service` or issuer): not "wrong, rotated or revoked".
#[tokio::test]
async fn a_token_refused_at_the_api_root_after_the_token_service_issued_it_is_not_bad_credentials()
{
    let mut server = mockito::Server::new_async().await;
    let challenge = format!("Bearer realm=\"{}/auth\",service=\"reg\"", server.url());
    server
        .mock("GET", "/auth")
        .match_query(Matcher::Any)
        .with_body(r#"{"token":"t","expires_in":300}"#)
        .create_async()
        .await;
    unauthorized(
        &mut server,
        "GET",
        "/v2/",
        &challenge,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
    .await;
    let cfg = config(&server.url(), LOGIN);
    let creds = round(&cfg, &[CheckKind::Credentials]).await.remove(0);
    assert_eq!(
        (creds.status, creds.reason),
        (Status::Fail, Reason::TokenEndpointError),
        "{}",
        creds.message
    );
    assert!(!creds.message.contains("rotated"), "{}", creds.message);
}
