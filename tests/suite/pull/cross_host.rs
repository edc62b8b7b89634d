//! Credentials stay with their registry across a redirect (issue 24, §4).
//!
//! A registry that redirects a request to a second host, which answers with its own Bearer
//! challenge, must not get the first registry's username, password or token sent to the
//! second host or its token service. go-containerregistry tests the same:
//! `TestBearerTokenNotLeakedOnCrossHostChallenge` (pkg/v1/remote/transport/bearer_test.go);
//! containerd's docker authorizer looks credentials up by the host that challenged. The
//! second host is a plain TCP server on 127.0.0.1 (another port, so another host for the
//! redirect) that records every request it gets; every wait is bounded.

use crate::common;
use crate::common::mock::unauthorized;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{config_from_toml, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::{CheckKind, Status};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";
const PASSWORD: &str = "only-for-registry-a-7d1c";
const REGISTRY_TOKEN: &str = "tok-of-registry-a-55e2";
const ANONYMOUS_TOKEN: &str = "anonymous-token-of-host-b";

/// The second host: answers `/v2/…` with 401 and a Bearer challenge naming its own realm
/// unless the request carries its anonymous token, and its realm with that token when
/// `anonymous_ok`, else 401. Every request's head is kept, lower-cased.
struct SecondHost {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn second_host(anonymous_ok: bool) -> SecondHost {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (realm, kept) = (format!("{url}/token"), seen.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (realm, kept) = (realm.clone(), kept.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                kept.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                let with_token = head.contains(&format!(
                    "authorization: bearer {}",
                    ANONYMOUS_TOKEN.to_ascii_lowercase()
                ));
                let answer = if path.starts_with("/token") && anonymous_ok {
                    let body = format!(r#"{{"token":"{ANONYMOUS_TOKEN}","expires_in":300}}"#);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else if path.starts_with("/token") {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else if with_token {
                    "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:2b2a5ed6ea4e2b3d8e7f7cd0f1a4a0b5cf3bb8cd6e0b0e3d2c1b0a9f8e7d6c5b\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"second-host\",scope=\"repository:library/alpine:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    SecondHost { url, seen, task }
}

/// The first registry, which wants `scheme` ("basic" or "bearer") and redirects every
/// manifest request to `to`.
async fn first_registry(scheme: &str, to: &str) -> mockito::ServerGuard {
    let mut server = mockito::Server::new_async().await;
    let challenge = if scheme == "basic" {
        "Basic realm=\"registry-a\"".to_string()
    } else {
        format!(
            "Bearer realm=\"{}/token\",service=\"registry-a\"",
            server.url()
        )
    };
    unauthorized(&mut server, "GET", "/v2/", &challenge, "").await;
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(format!(
            r#"{{"token":"{REGISTRY_TOKEN}","expires_in":300}}"#
        ))
        .create_async()
        .await;
    for method in ["HEAD", "GET"] {
        server
            .mock(method, MANIFEST)
            .with_status(307)
            .with_header("location", &format!("{to}{MANIFEST}"))
            .create_async()
            .await;
    }
    server
}

/// What of the first registry's credentials reached the second host, if anything.
fn leaked(seen: &[String]) -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("alice:{PASSWORD}"))
        .to_ascii_lowercase();
    let needles = [
        PASSWORD.to_ascii_lowercase(),
        basic,
        REGISTRY_TOKEN.to_ascii_lowercase(),
        "authorization: basic".to_string(),
    ];
    seen.iter()
        .filter(|head| needles.iter().any(|n| head.contains(n.as_str())))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_challenge_from_a_host_reached_by_redirect_gets_no_credentials() {
    for scheme in ["bearer", "basic"] {
        for anonymous_ok in [false, true] {
            let second = second_host(anonymous_ok).await;
            let first = first_registry(scheme, &second.url).await;
            // The manifest's redirect is what this is about: the blob download (a host of
            // its own, always anonymous) is tests/suite/pull/blob.rs's.
            let cfg = config_from_toml(&format!(
                "[[registries]]\nname = \"redirecting\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"{PASSWORD}\"\npull_blob = false\n",
                first.url()
            ));
            let r = run_one(&cfg, CheckKind::Pull).await;
            let seen = second.seen.lock().unwrap().clone();
            let case = format!("{scheme} registry, anonymous token {anonymous_ok}");
            assert!(
                leaked(&seen).is_empty(),
                "{case}: the second host got the first registry's credentials: {:#?}",
                leaked(&seen)
            );
            assert!(
                seen.iter().any(|h| h.starts_with("get /token")),
                "{case}: the second host's realm gets an anonymous token request: {seen:#?}"
            );
            if anonymous_ok {
                assert_eq!(r.status, Status::Pass, "{case}: {}", r.message);
            } else {
                assert_eq!(r.status, Status::Fail, "{case}: {}", r.message);
                assert_eq!(
                    r.reason.as_str(),
                    "redirect_auth_required",
                    "{case}: {}",
                    r.message
                );
                assert!(
                    r.message.contains(&second.url) && r.message.contains("wants authentication"),
                    "{case}: the verdict names the host that wanted authentication: {}",
                    r.message
                );
                assert!(!r.message.contains(PASSWORD), "{}", r.message);
            }
            second.task.abort();
        }
    }
}
