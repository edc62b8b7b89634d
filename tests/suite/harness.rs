//! Smoke tests proving the test-support harness starts real, correctly
//! configured Distribution registries.

use crate::support;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use support::*;

fn manifest_url(reg: &TestRegistry) -> String {
    format!("{}/v2/{SEED_REPO}/manifests/{SEED_TAG}", reg.url)
}

fn uploads_url(reg: &TestRegistry) -> String {
    format!("{}/v2/{SEED_REPO}/blobs/uploads/", reg.url)
}

/// HEAD the seeded manifest with an OCI Accept header and check the digest.
async fn assert_seed_manifest(reg: &TestRegistry, authorization: Option<&str>) {
    let mut req = reg
        .client()
        .head(manifest_url(reg))
        .header(ACCEPT, OCI_MANIFEST_MEDIA_TYPE);
    if let Some(a) = authorization {
        req = req.header(AUTHORIZATION, a);
    }
    let resp = req.send().await.expect("HEAD manifest");
    assert_eq!(resp.status(), StatusCode::OK, "{:?}: {:?}", reg.kind, resp);
    assert_eq!(
        resp.headers()["Docker-Content-Digest"].to_str().unwrap(),
        seed_manifest_digest()
    );
    assert_eq!(
        resp.headers()["Content-Type"].to_str().unwrap(),
        OCI_MANIFEST_MEDIA_TYPE
    );
}

fn header(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn fetch_token(
    reg: &TestRegistry,
    creds: Option<(&str, &str)>,
    scope: &str,
) -> reqwest::Response {
    let mut req = reg
        .client()
        .get(reg.token_url.as_deref().unwrap())
        .query(&[("service", TOKEN_SERVICE), ("scope", scope)]);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.expect("GET token")
}

async fn token_for(reg: &TestRegistry, creds: Option<(&str, &str)>, scope: &str) -> String {
    let resp = fetch_token(reg, creds, scope).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].is_string());
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().unwrap().to_string()
}

#[test]
fn seed_is_deterministic_and_consistent() {
    let manifest: serde_json::Value = serde_json::from_slice(seed_manifest()).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["digest"], seed_config_digest());
    assert_eq!(manifest["config"]["size"], seed_config().len());
    assert_eq!(manifest["layers"][0]["digest"], seed_layer_digest());
    assert_eq!(manifest["layers"][0]["size"], seed_layer().len());
    let config: serde_json::Value = serde_json::from_slice(seed_config()).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(seed_manifest_digest(), sha256_digest(seed_manifest()));
    assert!(seed_manifest_digest().starts_with("sha256:"));
    assert_eq!(seed_manifest_digest().len(), 7 + 64);
}

#[tokio::test]
async fn open_registry_is_seeded_and_deletable() {
    let reg = TestRegistry::start(Kind::Open).await;
    assert!(reg.url.starts_with("http://127.0.0.1:"));
    assert!(!reg.url.ends_with('/'));
    assert!(
        reg.root
            .join("docker/registry/v2/repositories/library/alpine")
            .is_dir()
    );
    assert_seed_manifest(&reg, None).await;

    let client = reg.client();
    let resp = client
        .head(format!(
            "{}/v2/{SEED_REPO}/blobs/{}",
            reg.url,
            seed_layer_digest()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Delete enabled: DELETE of an absent digest is 404, not 405.
    let absent = format!("sha256:{}", "0".repeat(64));
    let resp = client
        .delete(format!("{}/v2/{SEED_REPO}/manifests/{absent}", reg.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn basic_registry_requires_alice() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let client = reg.client();
    let resp = client.get(format!("{}/v2/", reg.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        format!("Basic realm=\"{BASIC_REALM}\"")
    );
    let resp = client
        .head(manifest_url(&reg))
        .header(ACCEPT, OCI_MANIFEST_MEDIA_TYPE)
        .basic_auth(BASIC_USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let alice = basic_authorization(BASIC_USER, BASIC_PASSWORD);
    assert_seed_manifest(&reg, Some(&alice)).await;

    // Delete disabled: 405 UNSUPPORTED.
    let absent = format!("sha256:{}", "0".repeat(64));
    let resp = client
        .delete(format!("{}/v2/{SEED_REPO}/manifests/{absent}", reg.url))
        .header(AUTHORIZATION, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.text().await.unwrap().contains("UNSUPPORTED"));
}

#[tokio::test]
async fn readonly_registry_is_seeded_but_refuses_uploads() {
    let reg = TestRegistry::start(Kind::ReadOnly).await;
    assert_seed_manifest(&reg, None).await;
    let resp = reg.client().post(uploads_url(&reg)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&resp, "Allow"), "GET, HEAD");
}

#[tokio::test]
async fn token_registry_enforces_scopes() {
    let reg = TestRegistry::start(Kind::Token).await;
    let realm = reg.token_url.clone().unwrap();
    let client = reg.client();

    let resp = client.get(format!("{}/v2/", reg.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        format!("Bearer realm=\"{realm}\",service=\"{TOKEN_SERVICE}\"")
    );
    assert_eq!(reg.token_requests(), 0, "seeding must not count");

    // Anonymous pull token on library/*.
    let anon = token_for(&reg, None, "repository:library/alpine:pull").await;
    assert_seed_manifest(&reg, Some(&format!("Bearer {anon}"))).await;

    // reader: pull only, so an upload is refused with insufficient_scope.
    let push_scope = "repository:library/alpine:pull,push";
    let reader = token_for(
        &reg,
        Some((TOKEN_READER_USER, TOKEN_READER_PASSWORD)),
        push_scope,
    )
    .await;
    let resp = client
        .post(uploads_url(&reg))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&resp, WWW_AUTHENTICATE).contains("error=\"insufficient_scope\""));

    // bob: pull,push.
    let bob = token_for(
        &reg,
        Some((TOKEN_ADMIN_USER, TOKEN_ADMIN_PASSWORD)),
        push_scope,
    )
    .await;
    let resp = client
        .post(uploads_url(&reg))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(reg.token_requests(), 3);

    // Wrong password: 401 with the token server's own Basic challenge.
    let resp = fetch_token(&reg, Some((TOKEN_ADMIN_USER, "nope")), push_scope).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        format!("Basic realm=\"{TOKEN_BASIC_REALM}\"")
    );
    // Wrong service: 400.
    let resp = client
        .get(&realm)
        .query(&[("service", "other"), ("scope", push_scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // OAuth2 password grant with a refresh token, then the refresh grant.
    let resp = client
        .post(&realm)
        .form(&[
            ("grant_type", "password"),
            ("service", TOKEN_SERVICE),
            ("client_id", "harness"),
            ("access_type", "offline"),
            ("username", TOKEN_ADMIN_USER),
            ("password", TOKEN_ADMIN_PASSWORD),
            ("scope", "repository:library/alpine:pull registry:catalog:*"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["refresh_token"], BOB_REFRESH_TOKEN);
    let catalog = client
        .get(format!("{}/v2/_catalog", reg.url))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.status(), StatusCode::OK);
    let resp = client
        .post(&realm)
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", TOKEN_SERVICE),
            ("refresh_token", BOB_REFRESH_TOKEN),
            ("scope", "repository:library/alpine:pull"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_seed_manifest(
        &reg,
        Some(&format!(
            "Bearer {}",
            body["access_token"].as_str().unwrap()
        )),
    )
    .await;
    let resp = client
        .post(&realm)
        .form(&[
            ("grant_type", "password"),
            ("service", TOKEN_SERVICE),
            ("username", TOKEN_ADMIN_USER),
            ("password", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    // The registry accepts the key named by x5c alone and by kid alone.
    let pull = [Access {
        typ: "repository".into(),
        name: SEED_REPO.into(),
        actions: vec!["pull".into()],
    }];
    for key_ref in [KeyRef::X5c, KeyRef::Kid] {
        let jwt = reg.token_issuer().sign("bob", &pull, key_ref, 60);
        assert_seed_manifest(&reg, Some(&format!("Bearer {jwt}"))).await;
    }
    // An expired token (beyond the 60 s leeway) is refused.
    let jwt = reg.token_issuer().sign("bob", &pull, KeyRef::Both, -300);
    let resp = client
        .head(manifest_url(&reg))
        .header(ACCEPT, OCI_MANIFEST_MEDIA_TYPE)
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Token server down: its port refuses connections, the registry still
    // honours existing tokens.
    reg.stop_token_server();
    let err = fetch_token_err(&reg).await;
    assert!(err.is_connect(), "expected a connect error, got {err:?}");
    assert_seed_manifest(&reg, Some(&format!("Bearer {anon}"))).await;
}

async fn fetch_token_err(reg: &TestRegistry) -> reqwest::Error {
    reg.client()
        .get(reg.token_url.as_deref().unwrap())
        .query(&[("service", TOKEN_SERVICE)])
        .send()
        .await
        .expect_err("token server should be unreachable")
}

#[tokio::test]
async fn tls_registry_is_reachable_with_the_generated_ca() {
    let reg = TestRegistry::start(Kind::Tls).await;
    assert!(reg.url.starts_with("https://127.0.0.1:"));
    let ca = std::fs::read_to_string(reg.ca_file.as_ref().unwrap()).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert_seed_manifest(&reg, None).await;

    // Also by name (DNS:localhost SAN).
    let by_name = reg.url.replace("127.0.0.1", "localhost");
    let resp = reg
        .client()
        .get(format!("{by_name}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Without the CA the certificate is rejected.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let err = plain
        .get(format!("{}/v2/", reg.url))
        .send()
        .await
        .expect_err("untrusted certificate must fail");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn start_with_overrides_delete_and_seed() {
    let reg = TestRegistry::start_with(
        Kind::Open,
        Options {
            delete_enabled: Some(false),
            seed: false,
            ..Default::default()
        },
    )
    .await;
    assert!(!reg.delete_enabled);
    let resp = reg
        .client()
        .head(manifest_url(&reg))
        .header(ACCEPT, OCI_MANIFEST_MEDIA_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let absent = format!("sha256:{}", "0".repeat(64));
    let resp = reg
        .client()
        .delete(format!("{}/v2/{SEED_REPO}/manifests/{absent}", reg.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}
