//! The registry's product, recognised from its answers (issue 21 §3), words the advice in
//! the doctor, on the `/` page and in `/probe?debug=true`, and is exported as
//! `oci_registry_implementation_info`; it never changes a verdict.

use crate::common;
use crate::common::mock::answer;
use crate::support;

use std::process::Command;

use common::{Exporter, config_from_toml};
use mockito::Matcher;
use support::{Kind, TestRegistry};

/// Harbor as its answers show it: `/v2/` challenges with the realm of Harbor's core token
/// service, `/service/token` and service `harbor-registry` (goharbor/harbor#12270), and a
/// robot account without Pull permission gets 403 DENIED on the manifest
/// (goharbor/harbor#14216: "unauthorized to access repository").
async fn harbor_denying_pull() -> mockito::ServerGuard {
    let mut server = mockito::Server::new_async().await;
    let realm = format!("{}/service/token", server.url());
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("docker-distribution-api-version", "registry/2.0")
        .with_header(
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\",service=\"harbor-registry\""),
        )
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer harbor-token")
        .with_status(200)
        .with_header("docker-distribution-api-version", "registry/2.0")
        .with_body("{}")
        .create_async()
        .await;
    server
        .mock("GET", "/service/token")
        .match_query(Matcher::Any)
        .with_body(r#"{"token":"harbor-token","expires_in":1800}"#)
        .create_async()
        .await;
    // Harbor answers GET as HEAD; a HEAD's body never arrives, so the pull asks again with
    // GET to read the error (issue 20 §2).
    for method in ["HEAD", "GET"] {
        answer(&mut server, method, "/v2/library/alpine/manifests/latest", 403, &[("content-type", "application/json; charset=utf-8")], r#"{"errors":[{"code":"DENIED","message":"unauthorized to access repository: library/alpine, action: pull: unauthorized to access repository: library/alpine, action: pull"}]}"#).await;
    }
    server
}

fn harbor_config(url: &str) -> String {
    format!(
        "[[registries]]\nname = \"harbor\"\nurl = \"{url}\"\ntimeout = \"5s\"\nusername = \"robot$monitoring\"\npassword = \"s3cret\"\nchecks = [\"registry\", \"credentials\", \"pull\"]\n"
    )
}

#[tokio::test]
async fn harbor_is_recognised_and_its_fix_reaches_the_doctor_and_the_page() {
    let server = harbor_denying_pull().await;
    let text = harbor_config(&server.url());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .env_remove("OCI__RegistryUrl")
        .env("NO_COLOR", "1")
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("the exporter runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("harbor: implementation Harbor, from the token realm /service/token"),
        "{said}"
    );
    // The verdict is the same as anywhere (forbidden); the fix is Harbor's.
    assert!(said.contains("FAIL"), "{said}");
    assert!(said.contains("Pull Repository permission"), "{said}");
    assert!(said.contains("goharbor.io/docs"), "{said}");

    let exporter = Exporter::start(config_from_toml(&text)).await;
    exporter.wait_ready().await;
    let (_, page) = exporter.get("/").await;
    assert!(page.contains("Pull Repository permission"), "{page}");
    assert!(
        page.contains("harbor: Harbor, from the token realm /service/token"),
        "{page}"
    );
    let metrics = exporter.metrics().await;
    assert!(
        metrics.contains(
            "oci_registry_implementation_info{registry=\"harbor\",implementation=\"harbor\"} 1"
        ),
        "{metrics}"
    );
    let (_, debug) = exporter
        .get("/probe?target=harbor&check=pull&debug=true")
        .await;
    assert!(
        debug.contains("implementation: Harbor, from the token realm /service/token"),
        "{debug}"
    );
    exporter.stop().await;
}

#[tokio::test]
async fn a_real_distribution_is_recognised_and_its_blob_host_shown_in_the_debug_view() {
    let reg = TestRegistry::start(Kind::Open).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"open\"\nurl = \"{}\"\nchecks = [\"registry\", \"pull\"]\n",
        reg.url
    ));
    let exporter = Exporter::start(cfg).await;
    let (_, debug) = exporter.get("/probe?target=open&debug=true").await;
    assert!(
        debug.contains("implementation: CNCF Distribution, from Docker-Distribution-API-Version"),
        "{debug}"
    );
    let origin = reg.url.trim_end_matches('/');
    assert!(debug.contains(&format!("blob_host={origin}")), "{debug}");
    assert!(
        debug.contains(
            "oci_registry_implementation_info{registry=\"open\",implementation=\"distribution\"} 1"
        ),
        "{debug}"
    );
    assert!(
        debug.contains("oci_registry_pull_blob_duration_seconds{registry=\"open\"}"),
        "{debug}"
    );
    exporter.stop().await;
}
