//! Benchmark helper (not a test): a fast static HTTP endpoint on 127.0.0.1 that answers the
//! two requests of the `registry` and `pull` checks the way a Distribution registry does, for
//! any number of registries told apart by a path prefix (`/r42/v2/`, `/r43/v2/`, ...).
//!
//! - `GET  <prefix>/v2/` → 200 with `Docker-Distribution-API-Version: registry/2.0`
//!   (401 with a Bearer challenge under `--token`).
//! - `HEAD|GET <prefix>/v2/<repo>/manifests/<ref>` → 200 with a digest and an OCI manifest
//!   media type (under `--token`: 401 + Bearer challenge unless a token it issued is sent).
//! - `GET /token` (under `--token`) → `{"token":..,"expires_in":E}`, counted.
//!
//! It counts accepted TCP connections, requests, token requests and 401s, and serves the counts
//! as `name value` lines on a second listener (`--stats-port-file`), so reading them opens no
//! connection on the measured port. Everything listens on 127.0.0.1 only.
//!
//! ```text
//! cargo run --release --example bench_responder -- --port-file P --stats-port-file S [--token] [--expires-in 300] [--threads 1]
//! ```
//! It runs until killed (the bench script's trap), or at most `--max-seconds` (default 3600).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The digest the manifest HEAD answers with (sha256 of nothing in particular).
const DIGEST: &str = "sha256:5c8c2bd28b38a0bcd0a44c3f3db6d5bd1cbbbbd7b3a4d9c6e88f5a2e4f4ad8b1";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Issued tokens start with this; the registry side accepts any token that does.
const TOKEN_PREFIX: &str = "bench-token-";

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    api_root: AtomicU64,
    manifests: AtomicU64,
    token_requests: AtomicU64,
    unauthorized: AtomicU64,
    not_found: AtomicU64,
}

struct Options {
    port_file: Option<String>,
    stats_port_file: Option<String>,
    token: bool,
    expires_in: u64,
    threads: usize,
    max_seconds: u64,
}

fn parse_args() -> Options {
    let mut o = Options {
        port_file: None,
        stats_port_file: None,
        token: false,
        expires_in: 300,
        threads: 1,
        max_seconds: 3600,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--port-file" => o.port_file = Some(value()),
            "--stats-port-file" => o.stats_port_file = Some(value()),
            "--token" => o.token = true,
            "--expires-in" => o.expires_in = value().parse().expect("--expires-in SECONDS"),
            "--threads" => o.threads = value().parse().expect("--threads N"),
            "--max-seconds" => o.max_seconds = value().parse().expect("--max-seconds N"),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

struct State {
    counters: Counters,
    token: bool,
    expires_in: u64,
    challenge: HeaderValue,
    challenge_root: HeaderValue,
}

fn main() {
    let o = parse_args();
    let mut rt = if o.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(o.threads);
        b
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let stats = TcpListener::bind("127.0.0.1:0").await.expect("bind stats");
        let port = listener.local_addr().unwrap().port();
        let realm = format!("http://127.0.0.1:{port}/token");
        let state = Arc::new(State {
            counters: Counters::default(),
            token: o.token,
            expires_in: o.expires_in,
            challenge: HeaderValue::from_str(&format!(
                "Bearer realm=\"{realm}\",service=\"bench\",scope=\"repository:library/alpine:pull\""
            ))
            .unwrap(),
            challenge_root: HeaderValue::from_str(&format!(
                "Bearer realm=\"{realm}\",service=\"bench\""
            ))
            .unwrap(),
        });
        // Port files are written last, so a reader that sees them can connect.
        if let Some(p) = &o.stats_port_file {
            write_atomically(p, &stats.local_addr().unwrap().port().to_string());
        }
        if let Some(p) = &o.port_file {
            write_atomically(p, &port.to_string());
        }
        let stats_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = stats.accept().await else {
                    continue;
                };
                let state = stats_state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let body = render_stats(&state.counters);
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let serve = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                state.counters.connections.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let resp = handle(&state, &req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        };
        // Bounded in time even if nobody kills it.
        let _ = tokio::time::timeout(Duration::from_secs(o.max_seconds), serve).await;
    });
}

fn write_atomically(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).expect("write port file");
    std::fs::rename(&tmp, path).expect("rename port file");
}

fn render_stats(c: &Counters) -> String {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "connections {}\nrequests {}\napi_root {}\nmanifests {}\ntoken_requests {}\nunauthorized {}\nnot_found {}\n",
        g(&c.connections),
        g(&c.requests),
        g(&c.api_root),
        g(&c.manifests),
        g(&c.token_requests),
        g(&c.unauthorized),
        g(&c.not_found),
    )
}

fn handle(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let c = &state.counters;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    if path == "/token" {
        c.token_requests.fetch_add(1, Ordering::Relaxed);
        let n = c.token_requests.load(Ordering::Relaxed);
        let body = format!(
            "{{\"token\":\"{TOKEN_PREFIX}{n}\",\"expires_in\":{},\"issued_at\":\"2025-01-01T00:00:00Z\"}}",
            state.expires_in
        );
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
    }
    let Some(idx) = path.find("/v2/") else {
        return not_found(c);
    };
    let rest = &path[idx + 4..];
    let authorized = !state.token
        || req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.starts_with(TOKEN_PREFIX));
    if rest.is_empty() {
        c.api_root.fetch_add(1, Ordering::Relaxed);
        let mut b = Response::builder()
            .header("docker-distribution-api-version", "registry/2.0")
            .header(header::CONTENT_TYPE, "application/json");
        if !authorized {
            c.unauthorized.fetch_add(1, Ordering::Relaxed);
            b = b
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, state.challenge_root.clone());
            return b
                .body(Full::new(Bytes::from_static(
                    b"{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":null}]}\n",
                )))
                .unwrap();
        }
        return b.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    }
    if rest.contains("/manifests/") && (req.method() == Method::HEAD || req.method() == Method::GET)
    {
        c.manifests.fetch_add(1, Ordering::Relaxed);
        if !authorized {
            c.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("docker-distribution-api-version", "registry/2.0")
                .header(header::WWW_AUTHENTICATE, state.challenge.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(
                    b"{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{\"Type\":\"repository\",\"Name\":\"library/alpine\",\"Action\":\"pull\"}]}]}\n",
                )))
                .unwrap();
        }
        // HEAD: no body, but the length a GET would have, as Distribution answers.
        let mut b = Response::builder();
        if req.method() == Method::HEAD {
            b = b.header(header::CONTENT_LENGTH, "528");
        }
        return b
            .header("docker-distribution-api-version", "registry/2.0")
            .header("docker-content-digest", DIGEST)
            .header(header::ETAG, concat!("\"", "sha256:5c8c", "\""))
            .header(header::CONTENT_TYPE, MANIFEST_TYPE)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    not_found(c)
}

fn not_found(c: &Counters) -> Response<Full<Bytes>> {
    c.not_found.fetch_add(1, Ordering::Relaxed);
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(b"404 page not found\n")))
        .unwrap()
}
