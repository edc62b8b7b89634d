//! Registry behaviours no real registry here produces, emulated with mockito on 127.0.0.1
//! as their public sources describe them. Shared by `tests/suite/verdicts/emulated.rs` (the exporter's
//! verdict on each) and `tests/suite/verdicts/skopeo_oracle.rs` (skopeo's experience of each, compared
//! with the exporter's pull verdict). Each function cites its source.

// Not every emulation is used by a test of the suite at every moment of its history.
#![allow(dead_code)]

use mockito::{Matcher, Mock, ServerGuard};
use sha2::Digest as _;

use crate::common::mock::{answer, reply};

pub const MANIFEST_PATH: &str = "/v2/library/alpine/manifests/latest";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A small but real OCI image manifest: its config is the 2-byte blob `{}`.
pub const MANIFEST_BODY: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
const CONFIG_BLOB_PATH: &str = "/v2/library/alpine/blobs/sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The credentials the emulations expect, as configuration lines and as `user:password`.
pub const LOGIN: &str = "username = \"robot\"\npassword = \"s3cret-value\"";
pub const CREDS: &str = "robot:s3cret-value";

pub fn manifest_digest() -> String {
    let hash = sha2::Sha256::digest(MANIFEST_BODY.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An open `/v2/` as Distribution answers it.
pub async fn open_api_root(server: &mut ServerGuard) {
    let headers = [
        ("docker-distribution-api-version", "registry/2.0"),
        ("content-type", "application/json; charset=utf-8"),
    ];
    answer(server, "GET", "/v2/", 200, &headers, "{}").await;
}

/// The manifest at `path` served 200 by `method` as an OCI manifest, its digest sent when
/// `digest` (the headers Distribution sends).
async fn manifest(server: &mut ServerGuard, method: &str, path: &str, digest: bool) {
    let digest_value = manifest_digest();
    let mut headers = vec![("content-type", OCI_MANIFEST)];
    if digest {
        headers.push(("docker-content-digest", digest_value.as_str()));
    }
    answer(server, method, path, 200, &headers, MANIFEST_BODY).await;
}

/// What a client reads once the tag is resolved: the manifest by its digest (containerd,
/// and the exporter's pull, GET it so) and its config blob (skopeo inspect, the pull's blob
/// step).
pub async fn config_blob(server: &mut ServerGuard) {
    let by_digest = format!("/v2/library/alpine/manifests/{}", manifest_digest());
    manifest(server, "GET", &by_digest, true).await;
    let headers = [
        ("content-type", "application/octet-stream"),
        (
            "docker-content-digest",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ),
    ];
    for method in ["GET", "HEAD"] {
        answer(server, method, CONFIG_BLOB_PATH, 200, &headers, "{}").await;
    }
}

/// Every path under `/v2/`.
fn any_v2() -> Matcher {
    Matcher::Regex("^/v2/.*".into())
}

/// Every manifest path under `/v2/`.
fn any_manifest() -> Matcher {
    Matcher::Regex("^/v2/.+/manifests/".into())
}

/// A request that carries Basic credentials.
fn basic() -> Matcher {
    Matcher::Regex("^Basic ".into())
}

/// GHCR's refusal of a request or a token (an OCI error body).
const DENIED: &str =
    r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;

pub const SIGN_IN_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=\"post\"><input name=\"username\"><input type=\"password\" name=\"password\"><button>Sign in</button></form></body></html>";

/// A sign-in proxy in front of the registry: Authelia
/// (https://www.authelia.com/integration/proxies/introduction/) and oauth2-proxy
/// (https://oauth2-proxy.github.io/oauth2-proxy/behaviour: "when authentication is missing
/// but required, the user is redirected to the configured Identity Provider login page").
/// Every method on every `/v2/` path of `proxy` redirects to `login_path` on `login` (the
/// return address in `rd=`), whose page answers 200 text/html.
pub async fn sign_in_proxy(proxy: &mut ServerGuard, login: &mut ServerGuard, login_path: &str) {
    let login_url = format!("{}{login_path}", login.url());
    let location = format!("{login_url}?rd=%2Fv2%2F");
    for method in ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"] {
        let headers = [("location", location.as_str())];
        answer(proxy, method, any_v2(), 302, &headers, "").await;
    }
    for method in ["GET", "HEAD"] {
        reply(
            login,
            method,
            login_path,
            200,
            &[("content-type", "text/html; charset=utf-8")],
        )
        .match_query(Matcher::Any)
        .with_body(SIGN_IN_PAGE)
        .create_async()
        .await;
    }
}

/// A reverse proxy that strips `WWW-Authenticate` (nginx `proxy_hide_header`, header
/// policies; oauth2-proxy's own 401 for `Accept: application/json` carries none,
/// https://oauth2-proxy.github.io/oauth2-proxy/behaviour) in front of a registry that would
/// accept Basic credentials: `/v2/` and the manifest answer a request without credentials
/// 401 with `www_authenticate` (no header when `None`). The mocks returned answer requests
/// carrying Basic as the registry behind would (200); they must never be hit, since
/// clients send credentials only after a challenge. Keep them alive: a dropped mock is
/// removed.
pub async fn stripping_proxy(
    server: &mut ServerGuard,
    www_authenticate: Option<&str>,
) -> Vec<Mock> {
    let mut never = Vec::new();
    for (method, path) in [
        ("GET", "/v2/"),
        ("HEAD", MANIFEST_PATH),
        ("GET", MANIFEST_PATH),
    ] {
        let (content_type, body) = if path == "/v2/" {
            ("application/json", "{}")
        } else {
            (OCI_MANIFEST, MANIFEST_BODY)
        };
        let digest = manifest_digest();
        let headers = [
            ("content-type", content_type),
            ("docker-content-digest", digest.as_str()),
        ];
        never.push(
            reply(server, method, path, 200, &headers)
                .match_header("authorization", basic())
                .with_body(body)
                .expect(0)
                .create_async()
                .await,
        );
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(www_authenticate.map(|value| ("www-authenticate", value)));
        reply(server, method, path, 401, &headers)
            .match_header("authorization", Matcher::Missing)
            .with_body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .create_async()
            .await;
    }
    never
}

/// ECR with an expired authorization token (awslabs/amazon-ecr-credential-helper#7):
/// `/v2/` challenges Basic; the expired token is refused with 403 DENIED "Your
/// authorization token has expired" on GET, and with a bodiless 403 on HEAD.
pub async fn ecr_expired(server: &mut ServerGuard) {
    let expired = r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;
    let challenge = [(
        "www-authenticate",
        "Basic realm=\"https://012345678910.dkr.ecr.us-east-1.amazonaws.com/\",service=\"ecr.amazonaws.com\"",
    )];
    reply(server, "GET", "/v2/", 401, &challenge)
        .match_header("authorization", Matcher::Missing)
        .create_async()
        .await;
    let json = [("content-type", "application/json; charset=utf-8")];
    reply(server, "GET", "/v2/", 403, &json)
        .match_header("authorization", basic())
        .with_body(expired)
        .create_async()
        .await;
    answer(server, "HEAD", any_manifest(), 403, &[], "").await;
    answer(server, "GET", any_manifest(), 403, &json, expired).await;
}

/// Quay answers a robot account that lacks a permission with 401 UNAUTHORIZED "access to
/// the requested resource is not authorized" (quay/quay endpoints/v2/errors.py,
/// `Unauthorized`, raised by `_require_repo_permission`), with a challenge but no
/// `insufficient_scope`, after its token service accepted the same credentials; Harbor
/// does the same for robots (issue 20).
pub async fn robot_without_permission(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/auth\",service=\"quay.example\"",
        server.url()
    );
    token_service(
        server,
        "/auth",
        "robot-token",
        &[("content-type", "application/json")],
    )
    .await;
    let json = [("content-type", "application/json")];
    reply(server, "GET", "/v2/", 200, &json)
        .match_header("authorization", "Bearer robot-token")
        .with_body("{}")
        .create_async()
        .await;
    let challenged = [("www-authenticate", challenge.as_str())];
    reply(server, "GET", "/v2/", 401, &challenged)
        .match_header("authorization", Matcher::Missing)
        .create_async()
        .await;
    let headers = [
        ("www-authenticate", challenge.as_str()),
        ("content-type", "application/json"),
    ];
    for method in ["GET", "HEAD"] {
        answer(server, method, any_manifest(), 401, &headers, r#"{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized","detail":{}}]}"#).await;
    }
}

/// A token service at `path` that gives `token` (for 300 s) to Basic credentials, its answer
/// with `headers`.
async fn token_service(
    server: &mut ServerGuard,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) {
    let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
    reply(server, "GET", path, 200, headers)
        .match_query(Matcher::Any)
        .match_header("authorization", basic())
        .with_body(body)
        .create_async()
        .await;
}

/// RFC 6750 §3.1: a token service that issues a token the registry then refuses with
/// `error="invalid_token"`.
pub async fn invalid_token(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/auth\",service=\"reg\",error=\"invalid_token\"",
        server.url()
    );
    reply(server, "GET", "/auth", 200, &[])
        .match_query(Matcher::Any)
        .with_body(r#"{"token":"t","expires_in":300}"#)
        .create_async()
        .await;
    let headers = [("www-authenticate", challenge.as_str())];
    for method in ["GET", "HEAD"] {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid token"}]}"#;
        answer(server, method, any_v2(), 401, &headers, body).await;
    }
}

/// A registry or proxy that refuses the manifest HEAD with a bodiless 405 while GET works
/// (containerd resolves with HEAD: containerd remotes/docker/resolver.go; docker and
/// skopeo GET).
pub async fn head_refused_get_works(server: &mut ServerGuard) {
    open_api_root(server).await;
    answer(server, "HEAD", MANIFEST_PATH, 405, &[], "").await;
    manifest(server, "GET", MANIFEST_PATH, true).await;
    config_blob(server).await;
}

/// A manifest whose bytes do not hash to the `Docker-Content-Digest` sent with them (a
/// caching proxy serving a stale or altered copy). HEAD sends no digest (as Nexus does,
/// see [`nexus_head_without_digest`]), so the check GETs the manifest and sees it.
pub async fn digest_mismatch(server: &mut ServerGuard) {
    open_api_root(server).await;
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let oci = [("content-type", OCI_MANIFEST)];
    answer(server, "HEAD", MANIFEST_PATH, 200, &oci, "").await;
    let headers = [
        ("content-type", OCI_MANIFEST),
        ("docker-content-digest", wrong),
    ];
    answer(server, "GET", MANIFEST_PATH, 200, &headers, MANIFEST_BODY).await;
    config_blob(server).await;
}

/// A web server's 404 page for the manifest path: not an OCI error body.
pub async fn manifest_404_without_oci_body(server: &mut ServerGuard) {
    open_api_root(server).await;
    answer(server, "HEAD", MANIFEST_PATH, 404, &[], "").await;
    let text = [("content-type", "text/plain")];
    answer(
        server,
        "GET",
        MANIFEST_PATH,
        404,
        &text,
        "404 page not found",
    )
    .await;
}

/// Docker Hub's token service (auth.docker.io) limiting token requests with 429 and
/// `Retry-After` (https://docs.docker.com/docker-hub/usage/).
pub async fn token_rate_limited(server: &mut ServerGuard, retry_after: &str) {
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"registry.docker.io\"",
        server.url()
    );
    let challenged = [("www-authenticate", challenge.as_str())];
    for method in ["GET", "HEAD"] {
        reply(server, method, any_v2(), 401, &challenged)
            .match_header("authorization", Matcher::Missing)
            .create_async()
            .await;
    }
    reply(
        server,
        "GET",
        "/token",
        429,
        &[("retry-after", retry_after)],
    )
    .match_query(Matcher::Any)
    .with_body("Too Many Requests")
    .create_async()
    .await;
}

/// `/v2/` answers 503 with a `Retry-After` (RFC 9110 §10.2.3), as a registry in
/// maintenance behind a load balancer does.
pub async fn unavailable(server: &mut ServerGuard, retry_after: &str) {
    for method in ["GET", "HEAD"] {
        answer(
            server,
            method,
            any_v2(),
            503,
            &[("retry-after", retry_after)],
            "",
        )
        .await;
    }
}

/// A Basic-protected registry (htpasswd) asked without credentials: 401 with the
/// challenge and an OCI error body, on HEAD and GET alike.
pub async fn basic_protected(server: &mut ServerGuard) {
    for (method, path) in [
        ("GET", "/v2/"),
        ("HEAD", MANIFEST_PATH),
        ("GET", MANIFEST_PATH),
    ] {
        let challenge = [("www-authenticate", "Basic realm=\"mock\"")];
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        answer(server, method, path, 401, &challenge, body).await;
    }
}

/// GHCR's token flow (renovatebot/renovate#11446: Basic sent before any challenge is
/// refused with 403 DENIED): `/v2/` challenges Bearer, the token service takes Basic, the
/// manifest is served to the token.
pub async fn ghcr_token_flow(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"ghcr.io\",scope=\"repository:library/alpine:pull\"",
        server.url()
    );
    // This emulation's token answer has always come without a Content-Type.
    token_service(server, "/token", "ghcr-token", &[]).await;
    reply(
        server,
        "GET",
        "/v2/",
        200,
        &[("content-type", "application/json")],
    )
    .match_header("authorization", "Bearer ghcr-token")
    .with_body("{}")
    .create_async()
    .await;
    // By tag, and by digest as containerd and the pull's blob step GET it.
    let by_digest = format!("/v2/library/alpine/manifests/{}", manifest_digest());
    for (method, path) in [
        ("GET", MANIFEST_PATH),
        ("HEAD", MANIFEST_PATH),
        ("GET", by_digest.as_str()),
    ] {
        let digest = manifest_digest();
        let headers = [
            ("content-type", OCI_MANIFEST),
            ("docker-content-digest", digest.as_str()),
        ];
        reply(server, method, path, 200, &headers)
            .match_header("authorization", "Bearer ghcr-token")
            .with_body(MANIFEST_BODY)
            .create_async()
            .await;
    }
    let blobs = || Matcher::Regex("^/v2/library/alpine/blobs/".into());
    for method in ["GET", "HEAD"] {
        reply(
            server,
            method,
            blobs(),
            200,
            &[("content-type", "application/octet-stream")],
        )
        .match_header("authorization", "Bearer ghcr-token")
        .with_body("{}")
        .create_async()
        .await;
    }
    let challenged = [("www-authenticate", challenge.as_str())];
    for method in ["GET", "HEAD"] {
        reply(server, method, any_v2(), 403, &[])
            .match_header("authorization", basic())
            .with_body(DENIED)
            .create_async()
            .await;
        reply(server, method, any_v2(), 401, &challenged)
            .match_header("authorization", Matcher::Missing)
            .create_async()
            .await;
    }
}

/// Nexus and registry.redhat.io answer HEAD on a manifest without
/// `Docker-Content-Digest` (regclient/regclient#363, distribution/distribution#3849).
pub async fn nexus_head_without_digest(server: &mut ServerGuard) {
    open_api_root(server).await;
    let oci = [("content-type", OCI_MANIFEST)];
    answer(server, "HEAD", MANIFEST_PATH, 200, &oci, "").await;
    manifest(server, "GET", MANIFEST_PATH, false).await;
    config_blob(server).await;
}

/// GHCR's token service refuses an anonymous token for a private package (403 DENIED);
/// `/v2/` and the manifest challenge Bearer.
pub async fn ghcr_private_package(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"ghcr.io\",scope=\"repository:library/alpine:pull\"",
        server.url()
    );
    let challenged = [("www-authenticate", challenge.as_str())];
    for method in ["GET", "HEAD"] {
        answer(server, method, any_v2(), 401, &challenged, "").await;
    }
    reply(server, "GET", "/token", 403, &[])
        .match_query(Matcher::Any)
        .with_body(DENIED)
        .create_async()
        .await;
}

/// An open registry whose manifest answers `status` with `body` on HEAD (no body) and GET:
/// a 403 DENIED (a repository policy), a 429 TOOMANYREQUESTS, a 500.
pub async fn manifest_refused(server: &mut ServerGuard, status: usize, body: &str) {
    open_api_root(server).await;
    answer(server, "HEAD", MANIFEST_PATH, status, &[], "").await;
    let mut headers = vec![("content-type", "application/json")];
    if status == 429 {
        // containers/image retries a 429 after its Retry-After (30 s without one).
        headers.push(("retry-after", "1"));
    }
    answer(server, "GET", MANIFEST_PATH, status, &headers, body).await;
}
