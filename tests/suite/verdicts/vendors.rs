//! How real registries other than CNCF Distribution answer, and the verdicts we give.
//!
//! Each test is named after one registry behaviour and cites its public source. The
//! registries themselves do not run here, so their answers are emulated with mockito on
//! 127.0.0.1, exactly as the cited reports describe them; where a real Distribution
//! registry can show the same thing, the test uses it. docs/compatibility.md links here.

use crate::common;
use crate::common::mock::{answer, unauthorized};
use crate::support;

use common::{basic_challenge, config_from_toml};
use mockito::Matcher;
use oci_registry_exporter::catalogue;
use oci_registry_exporter::checks::{self, CapabilityStatus, CheckKind, Reason, Status};
use oci_registry_exporter::checks::{Capability, CheckResult};
use oci_registry_exporter::client::RegistryClient;
use oci_registry_exporter::outcome::AuthUsed;
use sha2::Digest as _;
use std::sync::Arc;
use support::{Kind, TestRegistry};

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";
const DIGEST: &str = "sha256:16a06f27aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const PUSH_UPLOADS: &str = "/v2/probe/push/blobs/uploads/";

/// For emulated registries that answer the manifest only: the pull check's blob download
/// (tests/suite/pull/blob.rs) is not their subject.
const MANIFEST_ONLY: &str = "pull_blob = false";

fn config(url: &str, extra: &str) -> oci_registry_exporter::Config {
    config_from_toml(&format!(
        "[[registries]]\nname = \"r\"\nurl = \"{url}\"\ntimeout = \"5s\"\npush_test_repository = \"probe/push\"\n{extra}\n"
    ))
}

const LOGIN: &str = "username = \"robot\"\npassword = \"s3cret-value\"";

/// Runs one check and adds its likely cause and fix, as the daemon and the doctor do.
async fn run(config: &oci_registry_exporter::Config, kind: CheckKind) -> CheckResult {
    let target = &config.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    let mut r = checks::run_check(kind, target, &client).await;
    catalogue::annotate(&mut r, catalogue::DEFAULT_RUNBOOK_BASE_URL);
    r
}

fn outcome(r: &CheckResult) -> (Status, Reason, Option<u16>) {
    (r.status, r.reason, r.http_status)
}

fn cause(r: &CheckResult) -> &str {
    r.diagnosis.as_ref().map(|d| d.cause).unwrap_or("")
}

fn fixes(r: &CheckResult) -> String {
    r.diagnosis
        .as_ref()
        .map(|d| d.fix.join(" | "))
        .unwrap_or_default()
}

fn referrers_path() -> String {
    format!("/v2/library/alpine/referrers/{DIGEST}")
}

/// The test manifest, answered to HEAD with its digest as Distribution does.
async fn server_with_manifest(server: &mut mockito::ServerGuard) {
    answer(
        server,
        "HEAD",
        MANIFEST,
        200,
        &[
            ("docker-content-digest", DIGEST),
            ("content-type", OCI_MANIFEST),
        ],
        "",
    )
    .await;
}

fn oci_error(code: &str, message: &str) -> String {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}","detail":null}}]}}"#)
}

// GHCR answers Basic credentials sent before any challenge with 403 DENIED and no
// WWW-Authenticate (renovatebot/renovate#11446). Docker, containers/image and skopeo ping
// /v2/ first and follow the Bearer challenge to the token service.
#[tokio::test]
async fn ghcr_refuses_preemptive_basic_with_403_denied() {
    let mut server = mockito::Server::new_async().await;
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"ghcr.io\",scope=\"repository:user/image:pull\"",
        server.url()
    );
    // Any registry request that carries Basic is refused the GHCR way; none may come.
    let preemptive = server
        .mock("HEAD", Matcher::Any)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .with_body(oci_error(
            "DENIED",
            "requested access to the resource is denied",
        ))
        .expect(0)
        .create_async()
        .await;
    let preemptive_get = server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .expect(0)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("www-authenticate", &challenge)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer ghcr-token")
        .with_status(200)
        .create_async()
        .await;
    let token = server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_body(r#"{"token":"ghcr-token","expires_in":300}"#)
        .expect_at_least(1)
        .create_async()
        .await;
    server
        .mock("HEAD", MANIFEST)
        .match_header("authorization", "Bearer ghcr-token")
        .with_status(200)
        .with_header("docker-content-digest", DIGEST)
        .with_header("content-type", OCI_MANIFEST)
        .create_async()
        .await;
    let cfg = config(&server.url(), &format!("{LOGIN}\n{MANIFEST_ONLY}"));
    for kind in [CheckKind::Credentials, CheckKind::Pull] {
        let r = run(&cfg, kind).await;
        assert_eq!(r.status, Status::Pass, "{kind:?}: {}", r.message);
        assert_eq!(
            r.requests.first().map(|q| (q.method.as_str(), q.auth)),
            Some(("GET", AuthUsed::None)),
            "{kind:?}: the first request is the anonymous ping"
        );
    }
    preemptive.assert_async().await;
    preemptive_get.assert_async().await;
    token.assert_async().await;
}

// The same negotiation against a real htpasswd Distribution registry: credentials are sent
// only after its Basic challenge, and a wrong password is a credentials verdict on every
// check it affects (never "no credentials are configured").
#[tokio::test]
async fn distribution_htpasswd_gets_credentials_only_after_its_challenge() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let right = config(
        &reg.url,
        &format!(
            "username = \"{}\"\npassword = \"{}\"",
            support::BASIC_USER,
            support::BASIC_PASSWORD
        ),
    );
    let r = run(&right, CheckKind::Pull).await;
    assert_eq!(outcome(&r).0, Status::Pass, "{}", r.message);
    let trail: Vec<_> = r
        .requests
        .iter()
        .map(|q| (q.method.clone(), q.status, q.auth))
        .collect();
    assert_eq!(
        trail,
        [
            ("GET".to_string(), Some(401), AuthUsed::None),
            ("HEAD".to_string(), Some(200), AuthUsed::Basic),
            // The manifest by digest, and its config blob: a pull downloads them.
            ("GET".to_string(), Some(200), AuthUsed::Basic),
            ("GET".to_string(), Some(200), AuthUsed::Basic),
        ]
    );

    // skopeo, an independent client, agrees: the right password pulls the manifest.
    assert!(skopeo_inspect(
        &reg,
        support::BASIC_USER,
        support::BASIC_PASSWORD
    ));

    let wrong = config(&reg.url, "username = \"alice\"\npassword = \"not-it\"");
    assert!(
        !skopeo_inspect(&reg, "alice", "not-it"),
        "skopeo is refused the wrong password too"
    );
    for kind in [
        CheckKind::Credentials,
        CheckKind::Pull,
        CheckKind::Push,
        CheckKind::Capabilities,
        CheckKind::Referrers,
    ] {
        let r = run(&wrong, kind).await;
        assert_eq!(
            r.reason,
            Reason::InvalidCredentials,
            "{kind:?}: {}",
            r.message
        );
        assert!(
            cause(&r).contains("credentials rejected"),
            "{kind:?}: {}",
            cause(&r)
        );
        assert!(!cause(&r).contains("no credentials are configured"));
    }
}

/// `skopeo inspect --raw` of the seed image with these credentials: whether it succeeded.
/// skopeo comes with the registry (scripts/test installs both).
fn skopeo_inspect(reg: &TestRegistry, user: &str, password: &str) -> bool {
    let image = format!(
        "docker://{}/{}:{}",
        reg.url.trim_start_matches("http://"),
        support::SEED_REPO,
        support::SEED_TAG
    );
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{user}:{password}"))
        .arg(&image)
        // Only 127.0.0.1 is contacted: no proxy, no credentials from the environment.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .expect("skopeo runs (scripts/test installs it)");
    out.status.success()
}

// ECR does not create repositories on push: an upload into a missing one is 404
// NAME_UNKNOWN "The repository with name '...' does not exist in the registry with id"
// (docs.aws.amazon.com/AmazonECR/latest/userguide/common-errors-docker.html).
#[tokio::test]
async fn ecr_push_into_missing_repository_is_repository_not_found() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    server
        .mock("POST", PUSH_UPLOADS)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(404)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body(oci_error(
            "NAME_UNKNOWN",
            "The repository with name 'probe/push' does not exist in the registry with id '123456789012'",
        ))
        .create_async()
        .await;
    let r = run(&config(&server.url(), LOGIN), CheckKind::Push).await;
    assert_eq!(
        outcome(&r),
        (Status::Fail, Reason::RepositoryNotFound, Some(404))
    );
    assert!(r.message.contains("push_test_repository"), "{}", r.message);
    assert!(fixes(&r).contains("create the repository"), "{}", fixes(&r));
}

// 404 NAME_UNKNOWN to a delete probe says the repository is missing, nothing about whether
// deletes are enabled; Distribution answers MANIFEST_UNKNOWN/BLOB_UNKNOWN when they are
// (../shared/reference/distribution-2.8-facts.md §3.11; OCI distribution-spec error codes).
#[tokio::test]
async fn delete_probe_answered_name_unknown_proves_nothing() {
    let mut server = mockito::Server::new_async().await;
    answer(&mut server, "GET", "/v2/", 200, &[], "").await;
    for path in ["manifests", "blobs"] {
        server
            .mock(
                "DELETE",
                Matcher::Regex(format!("^/v2/probe/push/{path}/sha256:")),
            )
            .with_status(404)
            .with_body(oci_error(
                "NAME_UNKNOWN",
                "repository name not known to registry",
            ))
            .create_async()
            .await;
    }
    let r = run(&config(&server.url(), ""), CheckKind::Capabilities).await;
    let delete = r
        .facts
        .capabilities
        .iter()
        .find(|(c, _)| *c == Capability::Delete)
        .map(|(_, s)| *s);
    assert_eq!(delete, Some(CapabilityStatus::Error), "{}", r.message);
    let evidence = r.evidence.get("delete").cloned().unwrap_or_default();
    assert!(
        evidence.contains("NAME_UNKNOWN") && evidence.contains("cannot be told"),
        "{evidence}"
    );
}

// Harbor's read-only mode answers writes with 403 DENIED "The system is in read only
// mode. Any modification is prohibited." (goharbor/harbor src/server/middleware/readonly).
#[tokio::test]
async fn harbor_read_only_403_denied_is_read_only_not_forbidden() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    server
        .mock("POST", PUSH_UPLOADS)
        .with_status(403)
        .with_body(oci_error(
            "DENIED",
            "The system is in read only mode. Any modification is prohibited.",
        ))
        .create_async()
        .await;
    let r = run(&config(&server.url(), LOGIN), CheckKind::Push).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::ReadOnly, Some(403)));
    assert!(r.message.contains("read only mode"), "{}", r.message);
    assert!(cause(&r).contains("read-only"), "{}", cause(&r));
}

// ECR's authorization tokens last 12 hours; a stale one is 403 DENIED "Your authorization
// token has expired. Reauthenticate and try again." (awslabs/amazon-ecr-credential-helper#7).
#[tokio::test]
async fn ecr_expired_token_403_is_credentials_expired() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let expired = oci_error(
        "DENIED",
        "Your authorization token has expired. Reauthenticate and try again.",
    );
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .with_body(&expired)
        .create_async()
        .await;
    answer(&mut server, "HEAD", MANIFEST, 403, &[], &expired).await;
    // A HEAD answer has no body to carry the message, so the credentials check (a GET of
    // /v2/) is the one that can tell an expired token from a missing permission.
    let cfg = config(
        &server.url(),
        "username = \"AWS\"\npassword = \"ecr-token\"",
    );
    let r = run(&cfg, CheckKind::Credentials).await;
    assert_eq!(
        outcome(&r),
        (Status::Fail, Reason::CredentialsExpired, Some(403))
    );
    assert!(cause(&r).contains("expired"), "{}", cause(&r));
    assert!(fixes(&r).contains("credential helper"), "{}", fixes(&r));
    assert!(!fixes(&r).contains("mistyped"), "{}", fixes(&r));
}

// Nexus (with some storage back-ends) and registry.redhat.io answer HEAD on a manifest
// without Docker-Content-Digest, which the spec only says SHOULD be sent
// (regclient/regclient#363, distribution/distribution#3849). skopeo and regclient then GET
// the manifest and hash it.
#[tokio::test]
async fn nexus_head_without_docker_content_digest_falls_back_to_get() {
    let mut server = mockito::Server::new_async().await;
    let body = support::seed_manifest();
    let hex: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha256:{hex}");
    answer(
        &mut server,
        "HEAD",
        MANIFEST,
        200,
        &[("content-type", OCI_MANIFEST)],
        "",
    )
    .await;
    answer(
        &mut server,
        "GET",
        MANIFEST,
        200,
        &[("content-type", OCI_MANIFEST)],
        body,
    )
    .await;
    let referrers = server
        .mock(
            "GET",
            format!("/v2/library/alpine/referrers/{digest}").as_str(),
        )
        .with_status(200)
        .with_header("content-type", OCI_INDEX)
        .with_body(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#
        ))
        .create_async()
        .await;
    let cfg = config(&server.url(), MANIFEST_ONLY);
    let r = run(&cfg, CheckKind::Referrers).await;
    referrers.assert_async().await;
    assert_eq!(
        outcome(&r),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert_eq!(r.evidence.get("digest"), Some(&digest));
    assert!(r.evidence.contains_key("digest_source"));
    let r = run(&cfg, CheckKind::Pull).await;
    assert_eq!(outcome(&r), (Status::Pass, Reason::Ok, Some(200)));
    assert_eq!(r.evidence.get("digest"), Some(&digest));
}

// Harbor 2.9–2.10 serves a valid OCI index from the referrers API with Content-Type
// application/json (goharbor/harbor#19690, fixed in 2.11); oras-go then falls back to the
// tag schema (oras-project/oras-go#633). A warning with the Content-Type as evidence.
#[tokio::test]
async fn harbor_referrers_index_as_application_json_is_a_warning() {
    let mut server = mockito::Server::new_async().await;
    server_with_manifest(&mut server).await;
    server
        .mock("GET", referrers_path().as_str())
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#
        ))
        .create_async()
        .await;
    let r = run(&config(&server.url(), ""), CheckKind::Referrers).await;
    assert_eq!(
        outcome(&r),
        (Status::Warn, Reason::Nonconformant, Some(200))
    );
    assert_eq!(
        r.evidence.get("content_type").map(String::as_str),
        Some("application/json")
    );
    assert!(fixes(&r).contains("Harbor 2.11"), "{}", fixes(&r));
}

// An optional API answered by something that is not the API (here a redirect to a sign-in
// page, as registries behind an SSO proxy do) is `unsupported`: clients fall back to tags.
#[tokio::test]
async fn referrers_redirected_to_a_sign_in_page_is_unsupported_not_failed() {
    let mut server = mockito::Server::new_async().await;
    server_with_manifest(&mut server).await;
    answer(
        &mut server,
        "GET",
        referrers_path().as_str(),
        302,
        &[("location", "/login?next=/v2/")],
        "",
    )
    .await;
    answer(
        &mut server,
        "GET",
        Matcher::Regex("^/login".into()),
        200,
        &[("content-type", "text/html")],
        "<html><body>Sign in</body></html>",
    )
    .await;
    let r = run(&config(&server.url(), ""), CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(200)));
}

// GHCR's token service refuses an anonymous token for a private package. Without
// credentials configured there is no password to check: the advice is to configure some.
#[tokio::test]
async fn ghcr_private_package_without_credentials_is_unauthorized_not_a_bad_password() {
    let mut server = mockito::Server::new_async().await;
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"ghcr.io\",scope=\"repository:library/alpine:pull\"",
        server.url()
    );
    unauthorized(&mut server, "GET", "/v2/", &challenge, "").await;
    unauthorized(&mut server, "HEAD", MANIFEST, &challenge, "").await;
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(403)
        .with_body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
        .create_async()
        .await;
    let r = run(&config(&server.url(), ""), CheckKind::Pull).await;
    assert_eq!((r.status, r.reason), (Status::Fail, Reason::Unauthorized));
    assert!(r.message.contains("configure credentials"), "{}", r.message);
    let advice = format!("{} {}", cause(&r), fixes(&r)).to_lowercase();
    assert!(advice.contains("no credentials are configured"), "{advice}");
    assert!(!advice.contains("check username and password"), "{advice}");
    assert!(!advice.contains("rotated"), "{advice}");
}

// Artifactory serves Docker repositories under a path prefix
// (`https://host/artifactory/api/docker/<repo-key>/v2/...`, JFrog's "Repository Path"
// method): every request, the auth ping included, keeps the prefix.
#[tokio::test]
async fn artifactory_path_prefix_is_kept_in_every_request() {
    let mut server = mockito::Server::new_async().await;
    let prefix = "/artifactory/api/docker/docker-local";
    let ping = server
        .mock("GET", format!("{prefix}/v2/").as_str())
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("www-authenticate", "Basic realm=\"Artifactory Realm\"")
        .expect_at_least(1)
        .create_async()
        .await;
    let head = server
        .mock("HEAD", format!("{prefix}{MANIFEST}").as_str())
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(200)
        .with_header("docker-content-digest", DIGEST)
        .with_header("content-type", OCI_MANIFEST)
        .create_async()
        .await;
    let cfg = config(
        &format!("{}{prefix}", server.url()),
        &format!("{LOGIN}\n{MANIFEST_ONLY}"),
    );
    let r = run(&cfg, CheckKind::Pull).await;
    assert_eq!(
        outcome(&r),
        (Status::Pass, Reason::Ok, Some(200)),
        "{}",
        r.message
    );
    assert!(
        r.requests.iter().all(|q| q.path.starts_with(prefix)),
        "{:?}",
        r.requests
    );
    ping.assert_async().await;
    head.assert_async().await;
}
