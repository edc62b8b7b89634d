//! The pull's manifest step against answers no real registry here produces (mockito on
//! 127.0.0.1): 403, 5xx and 429 fail with their reasons, and a manifest's digest and media
//! type are recorded with every manifest type accepted.

use crate::common;
use crate::common::mock::{answer, mock_config};

use common::{basic_challenge, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::{CheckKind, Reason, Status};

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

#[tokio::test]
async fn pull_403_is_fail_forbidden() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let m = server
        .mock("HEAD", MANIFEST)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .create_async()
        .await;
    // The bodiless HEAD refusal is asked again with GET, whose OCI error body is read.
    let get = server
        .mock("GET", MANIFEST)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(403)
        .with_body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
        .create_async()
        .await;
    let cfg = mock_config(&server.url(), "username = \"alice\"\npassword = \"pw\"");
    let r = run_one(&cfg, CheckKind::Pull).await;
    m.assert_async().await;
    get.assert_async().await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Forbidden, Some(403))
    );
    assert!(r.message.contains("no pull permission"), "{}", r.message);
    assert!(
        r.message
            .contains("\"requested access to the resource is denied\""),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn pull_5xx_and_429_fail_with_their_reasons() {
    let mut server = mockito::Server::new_async().await;
    answer(&mut server, "HEAD", MANIFEST, 503, &[], "").await;
    let cfg = mock_config(&server.url(), "");
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::ServerError, Some(503))
    );

    server.reset();
    answer(&mut server, "HEAD", MANIFEST, 429, &[], "").await;
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!((r.status, r.reason), (Status::Fail, Reason::RateLimited));

    server.reset();
    answer(&mut server, "HEAD", MANIFEST, 418, &[], "").await;
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Warn, Reason::UnexpectedStatus, Some(418))
    );
}

#[tokio::test]
async fn pull_records_digest_and_media_type_and_sends_every_manifest_type() {
    let mut server = mockito::Server::new_async().await;
    let m = server
        .mock("HEAD", MANIFEST)
        .match_header(
            "accept",
            Matcher::AllOf(vec![
                Matcher::Regex("application/vnd\\.oci\\.image\\.manifest\\.v1\\+json".into()),
                Matcher::Regex("application/vnd\\.oci\\.image\\.index\\.v1\\+json".into()),
                Matcher::Regex(
                    "application/vnd\\.docker\\.distribution\\.manifest\\.v2\\+json".into(),
                ),
                Matcher::Regex(
                    "application/vnd\\.docker\\.distribution\\.manifest\\.list\\.v2\\+json".into(),
                ),
            ]),
        )
        .match_header(
            "user-agent",
            Matcher::Regex("^oci-registry-exporter/".into()),
        )
        .with_status(200)
        .with_header("docker-content-digest", "sha256:abc")
        .with_header("content-type", "application/vnd.oci.image.index.v1+json")
        .create_async()
        .await;
    // The manifest HEAD alone is the subject (the blob download: tests/suite/pull/blob.rs).
    let r = run_one(
        &mock_config(&server.url(), "pull_blob = false"),
        CheckKind::Pull,
    )
    .await;
    m.assert_async().await;
    assert_eq!(r.status, Status::Pass);
    assert_eq!(
        r.evidence.get("digest").map(String::as_str),
        Some("sha256:abc")
    );
    assert_eq!(
        r.evidence.get("media_type").map(String::as_str),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(r.requests.len(), 1);
}
