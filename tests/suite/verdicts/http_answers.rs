//! Answers no real registry here produces: a non-registry, a hanging server, a refused
//! connection, an endless body, and a redirect to another host. The pull's 403, 5xx and 429
//! are `pull::manifest`.

use crate::common;
use crate::common::mock::{answer, mock_config};

use std::time::Duration;

use common::{basic_challenge, config_from_toml, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::{CheckKind, Reason, Status};

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

#[tokio::test]
async fn a_non_registry_answering_404_on_v2_is_not_the_api_and_fails() {
    let mut server = mockito::Server::new_async().await;
    answer(
        &mut server,
        "GET",
        "/v2/",
        404,
        &[],
        "<html>not here</html>",
    )
    .await;
    let r = run_one(&mock_config(&server.url(), ""), CheckKind::Registry).await;
    // Not the API at /v2/ is a root cause of its own: every client fails there.
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::NotARegistry, Some(404))
    );
    assert_eq!(
        r.evidence.get("body_start").map(String::as_str),
        Some("<html>not here</html>")
    );

    server.reset();
    answer(&mut server, "GET", "/v2/", 502, &[], "").await;
    let r = run_one(&mock_config(&server.url(), ""), CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Warn, Reason::ServerError, Some(502))
    );
}

#[tokio::test]
async fn registry_check_sends_no_credentials_and_a_401_means_reachable() {
    let mut server = mockito::Server::new_async().await;
    let m = server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("www-authenticate", "Basic realm=\"x\"")
        .with_header("docker-distribution-api-version", "registry/2.0")
        .create_async()
        .await;
    let cfg = mock_config(&server.url(), "username = \"alice\"\npassword = \"pw\"");
    let r = run_one(&cfg, CheckKind::Registry).await;
    m.assert_async().await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Pass, Reason::Ok, Some(401))
    );
    assert_eq!(r.api_version.as_deref(), Some("registry/2.0"));
    assert!(r.message.contains("Basic"), "{}", r.message);
}

#[tokio::test]
async fn a_hanging_server_is_a_timeout_within_the_configured_bound() {
    // Accepts connections and never answers.
    let (addr, hold) = common::hanging_server(Duration::from_secs(5)).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"hang\"\nurl = \"http://{addr}\"\ntimeout = \"500ms\"\n"
    ));
    let started = std::time::Instant::now();
    let r = run_one(&cfg, CheckKind::Registry).await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Timeout, None)
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn a_refused_connection_is_fail_connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = mock_config(&format!("http://127.0.0.1:{port}"), "");
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&cfg, kind).await;
        assert_eq!(
            (r.status, r.reason, r.http_status),
            (Status::Fail, Reason::ConnectionRefused, None),
            "{kind:?}: {}",
            r.message
        );
        assert!(r.message.contains("connection refused"), "{}", r.message);
    }
}

#[tokio::test]
async fn an_endless_body_is_cut_off() {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/")
        .with_status(200)
        .with_chunked_body(|w| {
            let chunk = vec![b'x'; 64 * 1024];
            // 4 MiB, past the 1 MiB bound; the client stops reading long before the end.
            for _ in 0..64 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .create_async()
        .await;
    let r = run_one(&mock_config(&server.url(), ""), CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidResponse),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn credentials_are_not_forwarded_on_a_redirect_to_another_host() {
    let mut other = mockito::Server::new_async().await;
    let landed = other
        .mock("HEAD", MANIFEST)
        .match_header("authorization", Matcher::Missing)
        .with_status(200)
        .create_async()
        .await;
    let mut origin = mockito::Server::new_async().await;
    basic_challenge(&mut origin).await;
    let redirected = origin
        .mock("HEAD", MANIFEST)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(307)
        .with_header("location", &format!("{}{MANIFEST}", other.url()))
        .create_async()
        .await;
    let cfg = mock_config(
        &origin.url(),
        "username = \"alice\"\npassword = \"pw\"\npull_blob = false",
    );
    let r = run_one(&cfg, CheckKind::Pull).await;
    redirected.assert_async().await;
    landed.assert_async().await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
}
