//! Registry behaviours no real registry here produces, emulated with mockito on 127.0.0.1
//! as their public sources describe them. Shared by `tests/suite/verdicts/emulated.rs` (the exporter's
//! verdict on each) and `tests/suite/verdicts/skopeo_oracle.rs` (skopeo's experience of each, compared
//! with the exporter's pull verdict). Each function cites its source.

// Not every test binary that includes this module uses every emulation.
#![allow(dead_code)]

use mockito::{Matcher, Mock, ServerGuard};
use sha2::Digest as _;

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
    server
        .mock("GET", "/v2/")
        .with_status(200)
        .with_header("docker-distribution-api-version", "registry/2.0")
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body("{}")
        .create_async()
        .await;
}

/// What a client reads once the tag is resolved: the manifest by its digest (containerd,
/// and the exporter's pull, GET it so) and its config blob (skopeo inspect, the pull's blob
/// step).
pub async fn config_blob(server: &mut ServerGuard) {
    server
        .mock(
            "GET",
            format!("/v2/library/alpine/manifests/{}", manifest_digest()).as_str(),
        )
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_header("docker-content-digest", &manifest_digest())
        .with_body(MANIFEST_BODY)
        .create_async()
        .await;
    for method in ["GET", "HEAD"] {
        server
            .mock(method, CONFIG_BLOB_PATH)
            .with_status(200)
            .with_header("content-type", "application/octet-stream")
            .with_header(
                "docker-content-digest",
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            )
            .with_body("{}")
            .create_async()
            .await;
    }
}

pub const SIGN_IN_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=\"post\"><input name=\"username\"><input type=\"password\" name=\"password\"><button>Sign in</button></form></body></html>";

/// A sign-in proxy in front of the registry: Authelia
/// (https://www.authelia.com/integration/proxies/introduction/) and oauth2-proxy
/// (https://oauth2-proxy.github.io/oauth2-proxy/behaviour: "when authentication is missing
/// but required, the user is redirected to the configured Identity Provider login page").
/// Every method on every `/v2/` path of `proxy` redirects to `login_path` on `login` (the
/// return address in `rd=`), whose page answers 200 text/html.
pub async fn sign_in_proxy(proxy: &mut ServerGuard, login: &mut ServerGuard, login_path: &str) {
    let login_url = format!("{}{login_path}", login.url());
    for method in ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"] {
        proxy
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .with_status(302)
            .with_header("location", &format!("{login_url}?rd=%2Fv2%2F"))
            .create_async()
            .await;
    }
    for method in ["GET", "HEAD"] {
        login
            .mock(method, login_path)
            .match_query(Matcher::Any)
            .with_status(200)
            .with_header("content-type", "text/html; charset=utf-8")
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
        never.push(
            server
                .mock(method, path)
                .match_header("authorization", Matcher::Regex("^Basic ".into()))
                .with_status(200)
                .with_header("content-type", content_type)
                .with_header("docker-content-digest", &manifest_digest())
                .with_body(body)
                .expect(0)
                .create_async()
                .await,
        );
        let mut m = server
            .mock(method, path)
            .match_header("authorization", Matcher::Missing)
            .with_status(401)
            .with_header("content-type", "application/json")
            .with_body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        if let Some(value) = www_authenticate {
            m = m.with_header("www-authenticate", value);
        }
        m.create_async().await;
    }
    never
}

/// ECR with an expired authorization token (awslabs/amazon-ecr-credential-helper#7):
/// `/v2/` challenges Basic; the expired token is refused with 403 DENIED "Your
/// authorization token has expired" on GET, and with a bodiless 403 on HEAD.
pub async fn ecr_expired(server: &mut ServerGuard) {
    let expired = r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header(
            "www-authenticate",
            "Basic realm=\"https://012345678910.dkr.ecr.us-east-1.amazonaws.com/\",service=\"ecr.amazonaws.com\"",
        )
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body(expired)
        .create_async()
        .await;
    server
        .mock("HEAD", Matcher::Regex("^/v2/.+/manifests/".into()))
        .with_status(403)
        .create_async()
        .await;
    server
        .mock("GET", Matcher::Regex("^/v2/.+/manifests/".into()))
        .with_status(403)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body(expired)
        .create_async()
        .await;
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
    server
        .mock("GET", "/auth")
        .match_query(Matcher::Any)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_header("content-type", "application/json")
        .with_body(r#"{"token":"robot-token","expires_in":300}"#)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer robot-token")
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body("{}")
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("www-authenticate", &challenge)
        .create_async()
        .await;
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/.+/manifests/".into()))
            .with_status(401)
            .with_header("www-authenticate", &challenge)
            .with_header("content-type", "application/json")
            .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized","detail":{}}]}"#)
            .create_async()
            .await;
    }
}

/// RFC 6750 §3.1: a token service that issues a token the registry then refuses with
/// `error="invalid_token"`.
pub async fn invalid_token(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/auth\",service=\"reg\",error=\"invalid_token\"",
        server.url()
    );
    server
        .mock("GET", "/auth")
        .match_query(Matcher::Any)
        .with_body(r#"{"token":"t","expires_in":300}"#)
        .create_async()
        .await;
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .with_status(401)
            .with_header("www-authenticate", &challenge)
            .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid token"}]}"#)
            .create_async()
            .await;
    }
}

/// A registry or proxy that refuses the manifest HEAD with a bodiless 405 while GET works
/// (containerd resolves with HEAD: containerd remotes/docker/resolver.go; docker and
/// skopeo GET).
pub async fn head_refused_get_works(server: &mut ServerGuard) {
    open_api_root(server).await;
    server
        .mock("HEAD", MANIFEST_PATH)
        .with_status(405)
        .create_async()
        .await;
    server
        .mock("GET", MANIFEST_PATH)
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_header("docker-content-digest", &manifest_digest())
        .with_body(MANIFEST_BODY)
        .create_async()
        .await;
    config_blob(server).await;
}

/// A manifest whose bytes do not hash to the `Docker-Content-Digest` sent with them (a
/// caching proxy serving a stale or altered copy). HEAD sends no digest (as Nexus does,
/// see [`nexus_head_without_digest`]), so the check GETs the manifest and sees it.
pub async fn digest_mismatch(server: &mut ServerGuard) {
    open_api_root(server).await;
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    server
        .mock("HEAD", MANIFEST_PATH)
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .create_async()
        .await;
    server
        .mock("GET", MANIFEST_PATH)
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_header("docker-content-digest", wrong)
        .with_body(MANIFEST_BODY)
        .create_async()
        .await;
    config_blob(server).await;
}

/// A web server's 404 page for the manifest path: not an OCI error body.
pub async fn manifest_404_without_oci_body(server: &mut ServerGuard) {
    open_api_root(server).await;
    server
        .mock("HEAD", MANIFEST_PATH)
        .with_status(404)
        .create_async()
        .await;
    server
        .mock("GET", MANIFEST_PATH)
        .with_status(404)
        .with_header("content-type", "text/plain")
        .with_body("404 page not found")
        .create_async()
        .await;
}

/// Docker Hub's token service (auth.docker.io) limiting token requests with 429 and
/// `Retry-After` (https://docs.docker.com/docker-hub/usage/).
pub async fn token_rate_limited(server: &mut ServerGuard, retry_after: &str) {
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"registry.docker.io\"",
        server.url()
    );
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .match_header("authorization", Matcher::Missing)
            .with_status(401)
            .with_header("www-authenticate", &challenge)
            .create_async()
            .await;
    }
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(429)
        .with_header("retry-after", retry_after)
        .with_body("Too Many Requests")
        .create_async()
        .await;
}

/// `/v2/` answers 503 with a `Retry-After` (RFC 9110 §10.2.3), as a registry in
/// maintenance behind a load balancer does.
pub async fn unavailable(server: &mut ServerGuard, retry_after: &str) {
    server
        .mock("GET", Matcher::Regex("^/v2/.*".into()))
        .with_status(503)
        .with_header("retry-after", retry_after)
        .create_async()
        .await;
    server
        .mock("HEAD", Matcher::Regex("^/v2/.*".into()))
        .with_status(503)
        .with_header("retry-after", retry_after)
        .create_async()
        .await;
}

/// A Basic-protected registry (htpasswd) asked without credentials: 401 with the
/// challenge and an OCI error body, on HEAD and GET alike.
pub async fn basic_protected(server: &mut ServerGuard) {
    for (method, path) in [
        ("GET", "/v2/"),
        ("HEAD", MANIFEST_PATH),
        ("GET", MANIFEST_PATH),
    ] {
        server
            .mock(method, path)
            .with_status(401)
            .with_header("www-authenticate", "Basic realm=\"mock\"")
            .with_body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .create_async()
            .await;
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
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_body(r#"{"token":"ghcr-token","expires_in":300}"#)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer ghcr-token")
        .with_status(200)
        .with_header("content-type", "application/json")
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
        server
            .mock(method, path)
            .match_header("authorization", "Bearer ghcr-token")
            .with_status(200)
            .with_header("content-type", OCI_MANIFEST)
            .with_header("docker-content-digest", &manifest_digest())
            .with_body(MANIFEST_BODY)
            .create_async()
            .await;
    }
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/library/alpine/blobs/".into()))
            .match_header("authorization", "Bearer ghcr-token")
            .with_status(200)
            .with_header("content-type", "application/octet-stream")
            .with_body("{}")
            .create_async()
            .await;
    }
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .match_header("authorization", Matcher::Regex("^Basic ".into()))
            .with_status(403)
            .with_body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
            .create_async()
            .await;
        server
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .match_header("authorization", Matcher::Missing)
            .with_status(401)
            .with_header("www-authenticate", &challenge)
            .create_async()
            .await;
    }
}

/// Nexus and registry.redhat.io answer HEAD on a manifest without
/// `Docker-Content-Digest` (regclient/regclient#363, distribution/distribution#3849).
pub async fn nexus_head_without_digest(server: &mut ServerGuard) {
    open_api_root(server).await;
    server
        .mock("HEAD", MANIFEST_PATH)
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .create_async()
        .await;
    server
        .mock("GET", MANIFEST_PATH)
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_body(MANIFEST_BODY)
        .create_async()
        .await;
    config_blob(server).await;
}

/// GHCR's token service refuses an anonymous token for a private package (403 DENIED);
/// `/v2/` and the manifest challenge Bearer.
pub async fn ghcr_private_package(server: &mut ServerGuard) {
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"ghcr.io\",scope=\"repository:library/alpine:pull\"",
        server.url()
    );
    for method in ["GET", "HEAD"] {
        server
            .mock(method, Matcher::Regex("^/v2/.*".into()))
            .with_status(401)
            .with_header("www-authenticate", &challenge)
            .create_async()
            .await;
    }
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(403)
        .with_body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
        .create_async()
        .await;
}

/// An open registry whose manifest answers `status` with `body` on HEAD (no body) and GET:
/// a 403 DENIED (a repository policy), a 429 TOOMANYREQUESTS, a 500.
pub async fn manifest_refused(server: &mut ServerGuard, status: usize, body: &str) {
    open_api_root(server).await;
    server
        .mock("HEAD", MANIFEST_PATH)
        .with_status(status)
        .create_async()
        .await;
    let mut get = server
        .mock("GET", MANIFEST_PATH)
        .with_status(status)
        .with_header("content-type", "application/json")
        .with_body(body);
    if status == 429 {
        // containers/image retries a 429 after its Retry-After (30 s without one).
        get = get.with_header("retry-after", "1");
    }
    get.create_async().await;
}
