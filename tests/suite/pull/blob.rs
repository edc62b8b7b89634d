//! A pull is more than its manifest: the pull check downloads the test image's config blob
//! as a client does, through the registry's redirect to another host (S3, GCS, a CDN) and
//! without credentials there, and verifies its digest (issue 21).
//!
//! The registry is emulated (mockito): no Distribution here redirects blob downloads to
//! another host, as Docker Hub (to Cloudflare R2 / `production.cloudflare.docker.com`),
//! ECR and Artifact Registry (to presigned storage URLs) and Distribution with the
//! `redirect` storage middleware do (distribution docs, "storage.redirect";
//! docker/hub-feedback#2442: `dial tcp …cloudflarestorage.com: no route to host` after the
//! manifest resolved; docker/for-mac#7306; docker/build-push-action#1162). skopeo, a real
//! client, is the oracle: it must agree with the verdict.

use crate::common;
use crate::common::mock::{answer, basic_required};

use std::process::Command;

use common::{basic_challenge, config_from_toml, free_port, hanging_server, run_one};
use mockito::{Matcher, Server, ServerGuard};
use oci_registry_exporter::checks::{CheckKind, CheckResult, Reason, Status};
use sha2::{Digest as _, Sha256};

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
const LAYER: &[u8] = b"not really a tarball, but skopeo copies blobs as they are";

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn manifest() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        sha256(CONFIG),
        CONFIG.len(),
        sha256(LAYER),
        LAYER.len()
    )
}

/// The registry: manifest by tag and by digest (HEAD and GET), and both blobs answered by
/// a 307 to `blob_host` with a presigned-looking query, as S3 presigned URLs look. With
/// `basic`, everything but the redirect target asks for Basic credentials.
async fn registry(blob_host: &str, basic: bool) -> ServerGuard {
    let mut server = Server::new_async().await;
    // mockito's `Any` wants the header present: without auth, match its absence or presence.
    let auth = move || {
        if basic {
            Matcher::Regex("^Basic ".into())
        } else {
            Matcher::AnyOf(vec![Matcher::Missing, Matcher::Any])
        }
    };
    if basic {
        basic_challenge(&mut server).await;
    } else {
        answer(
            &mut server,
            "GET",
            "/v2/",
            200,
            &[("docker-distribution-api-version", "registry/2.0")],
            "{}",
        )
        .await;
    }
    let manifest = manifest();
    let digest = sha256(manifest.as_bytes());
    for path in [
        "/v2/library/alpine/manifests/latest".to_string(),
        format!("/v2/library/alpine/manifests/{digest}"),
    ] {
        for method in ["HEAD", "GET"] {
            server
                .mock(method, path.as_str())
                .match_header("authorization", auth())
                .with_status(200)
                .with_header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .with_header("docker-content-digest", &digest)
                .with_body(&manifest)
                .create_async()
                .await;
        }
        if basic {
            basic_required(&mut server, "HEAD", path.as_str()).await;
            basic_required(&mut server, "GET", path.as_str()).await;
        }
    }
    for blob in [sha256(CONFIG), sha256(LAYER)] {
        let path = format!("/v2/library/alpine/blobs/{blob}");
        if basic {
            basic_required(&mut server, "GET", path.as_str()).await;
        }
        server
            .mock("GET", path.as_str())
            .match_header("authorization", auth())
            .with_status(307)
            .with_header(
                "location",
                &format!("{blob_host}/store/{blob}?X-Amz-Signature=deadbeef&X-Amz-Expires=600"),
            )
            .create_async()
            .await;
    }
    server
}

fn config(url: &str, extra: &str) -> oci_registry_exporter::Config {
    config_from_toml(&format!(
        "[[registries]]\nname = \"redirecting\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n"
    ))
}

/// `skopeo copy` of the image into a directory: whether it worked, and what it said.
fn skopeo_copy(registry: &str, creds: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false", "--retry-times=0"]);
    if let Some(creds) = creds {
        cmd.args(["--src-creds", creds]);
    }
    let host = registry.trim_start_matches("http://");
    let out = cmd
        .arg(format!("docker://{host}/library/alpine:latest"))
        .arg(format!("dir:{}", dir.path().join("image").display()))
        .output()
        .expect("skopeo runs (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn evidence<'a>(r: &'a CheckResult, key: &str) -> Option<&'a str> {
    r.evidence.get(key).map(String::as_str)
}

#[tokio::test]
async fn a_blob_redirect_to_a_refusing_host_fails_the_pull_naming_that_host_and_skopeo_agrees() {
    // A port that was free a moment ago and that nothing listens on: connections are refused.
    let refusing = format!("http://127.0.0.1:{}", free_port());
    let server = registry(&refusing, false).await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::BlobUnreachable),
        "{}",
        r.message
    );
    assert!(r.message.contains(&refusing), "{}", r.message);
    assert!(r.message.contains("connection refused"), "{}", r.message);
    assert!(
        r.message.contains("allow that host in the firewall"),
        "{}",
        r.message
    );
    assert_eq!(evidence(&r, "blob_host"), Some(refusing.as_str()));
    assert_eq!(evidence(&r, "config_blob"), Some(sha256(CONFIG).as_str()));
    assert!(r.facts.blob_duration.is_some());
    // The presigned query never reaches the result.
    assert!(!format!("{r:?}").contains("X-Amz-Signature"), "{r:?}");

    let (ok, said) = skopeo_copy(&server.url(), None);
    assert!(
        !ok,
        "skopeo pulled what the exporter calls unpullable: {said}"
    );
    let port = refusing.rsplit(':').next().unwrap();
    assert!(
        said.contains(&format!("127.0.0.1:{port}")) && said.contains("connection refused"),
        "skopeo fails elsewhere than the exporter: {said}"
    );
}

#[tokio::test]
async fn with_the_blob_host_up_the_pull_passes_the_digest_is_verified_and_no_credentials_follow() {
    let mut storage = Server::new_async().await;
    for (bytes, times) in [(CONFIG, 1..=2), (LAYER, 0..=1)] {
        storage
            .mock("GET", format!("/store/{}", sha256(bytes)).as_str())
            .match_query(Matcher::Regex("X-Amz-Signature=deadbeef".into()))
            // The registry's credentials stay with the registry.
            .match_header("authorization", Matcher::Missing)
            .with_status(200)
            .with_body(bytes)
            .expect_at_least(*times.start())
            .expect_at_most(*times.end())
            .create_async()
            .await;
    }
    let server = registry(&storage.url(), true).await;
    let cfg = config(&server.url(), "username = \"alice\"\npassword = \"pw\"");
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert!(r.message.contains("digest verified"), "{}", r.message);
    assert!(r.message.contains(&storage.url()), "{}", r.message);
    assert_eq!(
        evidence(&r, "blob_host"),
        Some(format!("{} (redirected from the registry)", storage.url()).as_str())
    );
    assert!(r.facts.blob_duration.is_some());
    // The trail says where the download went, and that no credentials went with it.
    let blob = r
        .requests
        .iter()
        .find(|q| q.path.starts_with("/store/") && q.status == Some(200))
        .expect("the blob download is in the trail");
    assert!(
        blob.note
            .as_deref()
            .is_some_and(|n| n.contains("without credentials")),
        "{blob:?}"
    );
    assert_eq!(blob.auth, oci_registry_exporter::outcome::AuthUsed::None);
    assert!(
        r.requests
            .iter()
            .any(|q| q.path.contains("/blobs/") && q.status == Some(307)),
        "the registry's redirect is in the trail: {:?}",
        r.requests
    );

    let (ok, said) = skopeo_copy(&server.url(), Some("alice:pw"));
    assert!(
        ok,
        "skopeo cannot pull what the exporter calls pullable: {said}"
    );
}

#[tokio::test]
async fn a_blob_whose_bytes_do_not_match_its_digest_fails() {
    let mut storage = Server::new_async().await;
    storage
        .mock("GET", format!("/store/{}", sha256(CONFIG)).as_str())
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(b"{\"tampered\":true}")
        .create_async()
        .await;
    let server = registry(&storage.url(), false).await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::BlobDigestMismatch),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(&sha256(b"{\"tampered\":true}")),
        "{}",
        r.message
    );
    assert!(r.message.contains(&storage.url()), "{}", r.message);
}

#[tokio::test]
async fn a_storage_host_answering_403_fails_the_pull_naming_that_host() {
    // An expired presigned URL (clock skew): S3 answers 403 AccessDenied "Request has
    // expired" (AWS S3 docs, "Sharing objects with presigned URLs").
    let mut storage = Server::new_async().await;
    storage
        .mock("GET", format!("/store/{}", sha256(CONFIG)).as_str())
        .match_query(Matcher::Any)
        .with_status(403)
        .with_header("content-type", "application/xml")
        .with_body("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        .create_async()
        .await;
    let server = registry(&storage.url(), false).await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::BlobUnreachable, Some(403)),
        "{}",
        r.message
    );
    assert!(r.message.contains(&storage.url()), "{}", r.message);
    assert!(r.message.contains("HTTP 403"), "{}", r.message);
}

#[tokio::test]
async fn pull_blob_false_keeps_the_pull_to_its_manifest() {
    let refusing = format!("http://127.0.0.1:{}", free_port());
    let server = registry(&refusing, false).await;
    let r = run_one(&config(&server.url(), "pull_blob = false"), CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert!(r.requests.iter().all(|q| !q.path.contains("/blobs/")));
    assert!(r.facts.blob_duration.is_none());
}

#[tokio::test]
async fn an_index_is_followed_to_the_configured_platform() {
    let mut server = Server::new_async().await;
    let config_json = CONFIG;
    let arm = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{}","size":{}}},"layers":[]}}"#,
        sha256(config_json),
        config_json.len()
    );
    let arm_digest = sha256(arm.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"digest":"sha256:{}","platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"digest":"{arm_digest}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
        "0".repeat(64)
    );
    let index_digest = sha256(index.as_bytes());
    for (path, body, ct) in [
        (
            "/v2/library/alpine/manifests/latest".to_string(),
            index.clone(),
            "application/vnd.oci.image.index.v1+json",
        ),
        (
            format!("/v2/library/alpine/manifests/{index_digest}"),
            index.clone(),
            "application/vnd.oci.image.index.v1+json",
        ),
        (
            format!("/v2/library/alpine/manifests/{arm_digest}"),
            arm.clone(),
            "application/vnd.oci.image.manifest.v1+json",
        ),
    ] {
        for method in ["HEAD", "GET"] {
            answer(
                &mut server,
                method,
                path.as_str(),
                200,
                &[
                    ("content-type", ct),
                    ("docker-content-digest", &sha256(body.as_bytes())),
                ],
                &body,
            )
            .await;
        }
    }
    let blob = server
        .mock(
            "GET",
            format!("/v2/library/alpine/blobs/{}", sha256(config_json)).as_str(),
        )
        .with_status(200)
        .with_body(config_json)
        .create_async()
        .await;
    let r = run_one(
        &config(&server.url(), "pull_platform = \"linux/arm64\""),
        CheckKind::Pull,
    )
    .await;
    blob.assert_async().await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert_eq!(evidence(&r, "platform"), Some("linux/arm64/v8"));
    assert_eq!(evidence(&r, "platform_fallback"), None);
}

#[tokio::test]
async fn a_blob_host_that_drops_the_traffic_fails_as_that_hosts_timeout_within_the_check() {
    // A firewall that drops (rather than refuses) the storage host's packets: the connection
    // is accepted by nothing that answers. The download gets half the check's timeout, so
    // the verdict still names the host, not a bare check timeout.
    let (addr, hold) = hanging_server(std::time::Duration::from_secs(10)).await;
    let silent = format!("http://{addr}");
    let server = registry(&silent, false).await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Pull).await;
    hold.abort();
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::BlobUnreachable),
        "{}",
        r.message
    );
    assert!(r.message.contains(&silent), "{}", r.message);
    // The registry's timeout here is 5s: the storage host had 2s 500ms.
    assert!(
        r.message.contains("no answer within 2s 500ms"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn a_registry_missing_the_blob_its_manifest_names_fails_the_pull() {
    // A registry answers 404 BLOB_UNKNOWN for a blob its storage lacks (OCI distribution
    // spec, "Pulling blobs": 404 when the blob is not found). Distribution's garbage
    // collection docs warn that an upload during a collection can lose its layers, leaving
    // such a manifest (distribution.github.io/distribution/about/garbage-collection).
    let mut server = Server::new_async().await;
    let manifest = manifest();
    let digest = sha256(manifest.as_bytes());
    for path in [
        "/v2/library/alpine/manifests/latest".to_string(),
        format!("/v2/library/alpine/manifests/{digest}"),
    ] {
        for method in ["HEAD", "GET"] {
            answer(
                &mut server,
                method,
                path.as_str(),
                200,
                &[
                    ("content-type", "application/vnd.oci.image.manifest.v1+json"),
                    ("docker-content-digest", &digest),
                ],
                &manifest,
            )
            .await;
        }
    }
    server
        .mock(
            "GET",
            format!("/v2/library/alpine/blobs/{}", sha256(CONFIG)).as_str(),
        )
        .with_status(404)
        .with_header("content-type", "application/json")
        .with_body(r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#)
        .create_async()
        .await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::BlobUnreachable, Some(404)),
        "{}",
        r.message
    );
    assert!(r.message.contains("BLOB_UNKNOWN"), "{}", r.message);
    assert!(
        r.message
            .contains(&format!("the registry ({})", server.url())),
        "{}",
        r.message
    );
    assert!(r.message.contains("storage back-end"), "{}", r.message);
    assert!(!r.message.contains("firewall"), "{}", r.message);
}

#[tokio::test]
async fn the_manifest_is_downloaded_once_per_digest_and_the_blob_every_round() {
    // Docker Hub counts a manifest GET as a pull, a HEAD and a blob GET not
    // (docs.docker.com/docker-hub/usage/pulls): while the tag's digest stays the same, a
    // round costs a HEAD and the blob only.
    let mut server = Server::new_async().await;
    let manifest = manifest();
    let digest = sha256(manifest.as_bytes());
    server
        .mock("HEAD", "/v2/library/alpine/manifests/latest")
        .with_status(200)
        .with_header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .with_header("docker-content-digest", &digest)
        .expect(3)
        .create_async()
        .await;
    let get = server
        .mock(
            "GET",
            format!("/v2/library/alpine/manifests/{digest}").as_str(),
        )
        .with_status(200)
        .with_header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .with_body(&manifest)
        .expect(1)
        .create_async()
        .await;
    let blob = server
        .mock(
            "GET",
            format!("/v2/library/alpine/blobs/{}", sha256(CONFIG)).as_str(),
        )
        .with_status(200)
        .with_body(CONFIG)
        .expect(3)
        .create_async()
        .await;
    let cfg = config(&server.url(), "");
    let target = &cfg.registries[0];
    let client = std::sync::Arc::new(
        oci_registry_exporter::client::RegistryClient::new(target).expect("client builds"),
    );
    for _ in 0..3 {
        let r = oci_registry_exporter::checks::run_check(CheckKind::Pull, target, &client).await;
        assert_eq!(
            (r.status, r.reason),
            (Status::Pass, Reason::Ok),
            "{}",
            r.message
        );
        assert_eq!(evidence(&r, "config_blob"), Some(sha256(CONFIG).as_str()));
    }
    get.assert_async().await;
    blob.assert_async().await;
}
