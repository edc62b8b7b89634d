//! The real binary's telemetry: spans exported over OTLP/HTTP to a receiver in this test
//! (decoded with `opentelemetry-proto`), the flush on SIGTERM, and log lines in logfmt and
//! JSON that parse and carry no secret, at trace level.

use crate::common::mock::answer;
use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mockito::Matcher;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";
const USERNAME: &str = "otel-alice";
const PASSWORD: &str = "pw-9c1e-never-logged";
const TOKEN: &str = "tok-5b7d-never-exported";

// ---------------------------------------------------------------------------------------
// An OTLP/HTTP receiver: POST /v1/traces, bodies kept as they came.

#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Bytes>>>,
    port: u16,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            bodies: Arc::default(),
            port: listener.local_addr().unwrap().port(),
        };
        let bodies = receiver.bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let bodies = bodies.clone();
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/v1/traces";
                            let body = req.into_body().collect().await?.to_bytes();
                            if ok {
                                bodies.lock().unwrap().push(body);
                            }
                            // An empty ExportTraceServiceResponse is an empty message.
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(if ok { 200 } else { 404 })
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn raw(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }

    /// Every span received so far, decoded.
    fn spans(&self) -> Vec<SpanInfo> {
        let mut spans = Vec::new();
        for body in self.raw() {
            let req = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf body");
            for rs in req.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        spans.push(SpanInfo {
                            name: s.name,
                            trace_id: s.trace_id,
                            span_id: s.span_id,
                            parent_span_id: s.parent_span_id,
                            attrs: attributes(&s.attributes),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        spans
    }
}

#[derive(Debug, Clone)]
struct SpanInfo {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attrs: HashMap<String, String>,
    resource: HashMap<String, String>,
}

impl SpanInfo {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    fn is_child_of(&self, parent: &SpanInfo) -> bool {
        self.trace_id == parent.trace_id && self.parent_span_id == parent.span_id
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_to_string(kv.value.as_ref())))
        .collect()
}

fn any_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// A mock registry and the exporter binary.

/// Answers GET /v2/ and HEAD of the test manifest with 200; with `auth`, only after the
/// token flow: 401 with a Bearer challenge, a token endpoint that wants basic credentials.
async fn mock_registry(auth: bool) -> mockito::ServerGuard {
    let mut server = mockito::Server::new_async().await;
    if !auth {
        answer(&mut server, "GET", "/v2/", 200, &[], "").await;
        server
            .mock("HEAD", MANIFEST)
            .with_status(200)
            .with_header("content-type", "application/vnd.oci.image.index.v1+json")
            .with_header(
                "docker-content-digest",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            )
            .create_async()
            .await;
        return server;
    }
    let challenge = format!(
        r#"Bearer realm="{}/token",service="mock",scope="repository:library/alpine:pull""#,
        server.url()
    );
    let bearer = format!("Bearer {TOKEN}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"))
    );
    for (method, path) in [("GET", "/v2/"), ("HEAD", MANIFEST)] {
        server
            .mock(method, path)
            .match_header("authorization", bearer.as_str())
            .with_status(200)
            .with_header("content-type", "application/vnd.oci.image.index.v1+json")
            .with_header(
                "docker-content-digest",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            )
            .create_async()
            .await;
        // Without credentials, or with basic ones sent up front: the challenge.
        for unauthorised in [Matcher::Missing, Matcher::Regex("^Basic ".into())] {
            server
                .mock(method, path)
                .match_header("authorization", unauthorised)
                .with_status(401)
                .with_header("www-authenticate", &challenge)
                .create_async()
                .await;
        }
    }
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .match_header("authorization", basic.as_str())
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
        .create_async()
        .await;
    server
}

/// The exporter binary, killed if a test fails before it stops it.
struct Exporter {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _home: tempfile::TempDir,
}

impl Exporter {
    fn start(registry_url: &str, auth: bool, args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let home = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
        // Nothing from the outer environment configures this run.
        for (key, _) in std::env::vars() {
            let k = key.to_ascii_uppercase();
            if k.starts_with("OTEL_")
                || k.starts_with("OCI__")
                || k.starts_with("REGISTRY__")
                || k.starts_with("OCI_REGISTRY_EXPORTER_")
                || k == "RUST_LOG"
            {
                cmd.env_remove(&key);
            }
        }
        // The mock answers the manifest only: no blob download (tests/suite/pull/blob.rs).
        cmd.env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path())
            .env("OCI__RegistryUrl", registry_url)
            .env("OCI_REGISTRY_EXPORTER_DEFAULTS__PULL_BLOB", "false");
        if auth {
            cmd.env("OCI__Username", USERNAME)
                .env("OCI__Password", PASSWORD);
        }
        cmd.envs(env.iter().copied())
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the exporter binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Exporter {
            child,
            port,
            stderr,
            _home: home,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most 20 s) until /metrics holds a result of the pull check: by then its
    /// `check` span has ended.
    async fn wait_for_pull_result(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the exporter exited ({status}): {}", self.stderr());
            }
            if let Ok(resp) = http
                .get(format!("http://127.0.0.1:{}/metrics", self.port))
                .send()
                .await
                && let Ok(body) = resp.text().await
                && body.lines().any(|l| {
                    l.starts_with("oci_registry_check_status{") && l.contains("check=\"pull\"")
                })
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no pull result within 20 s: {}", self.stderr());
    }

    /// SIGTERM, then waits (at most 15 s) for a clean exit.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}: {}", self.stderr());
                // Let the reader thread take the last bytes.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit 15 s after SIGTERM: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_for_spans(receiver: &Receiver, what: impl Fn(&[SpanInfo]) -> bool) -> Vec<SpanInfo> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        if what(&spans) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "the spans did not arrive within 20 s; got {:#?}",
            spans
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find<'a>(spans: &'a [SpanInfo], name: &str, check: &str) -> Option<&'a SpanInfo> {
    spans
        .iter()
        .find(|s| s.name == name && s.attr("check") == Some(check))
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_request_spans_reach_the_otlp_endpoint() {
    let receiver = Receiver::start().await;
    let registry = mock_registry(false).await;
    let endpoint = receiver.endpoint();
    let mut exporter = Exporter::start(
        &registry.url(),
        false,
        &["--otlp.endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "200")],
    );
    let spans = wait_for_spans(&receiver, |spans| {
        find(spans, "check", "pull").is_some_and(|check| {
            spans
                .iter()
                .any(|s| s.name == "http.request" && s.is_child_of(check))
        })
    })
    .await;
    exporter.terminate();

    let check = find(&spans, "check", "pull").unwrap();
    assert_eq!(check.attr("registry"), Some("default"), "{check:#?}");
    assert_eq!(check.attr("status"), Some("pass"), "{check:#?}");
    assert_eq!(check.attr("reason"), Some("ok"), "{check:#?}");
    assert_eq!(check.attr("http_status"), Some("200"), "{check:#?}");
    assert!(check.attr("duration_ms").is_some(), "{check:#?}");
    assert_eq!(
        check.resource.get("service.name").map(String::as_str),
        Some("oci-registry-exporter")
    );

    let request = spans
        .iter()
        .find(|s| s.name == "http.request" && s.is_child_of(check))
        .unwrap();
    assert_eq!(request.attr("method"), Some("HEAD"), "{request:#?}");
    assert_eq!(request.attr("path"), Some(MANIFEST), "{request:#?}");
    assert_eq!(request.attr("status"), Some("200"), "{request:#?}");

    let registry_check = find(&spans, "check", "registry").expect("the registry check's span");
    assert_eq!(registry_check.attr("status"), Some("pass"));
    assert!(
        spans
            .iter()
            .all(|s| s.resource.get("service.name").map(String::as_str)
                == Some("oci-registry-exporter")),
        "every span names the service"
    );
    // Only this crate's spans: none of the HTTP stack's own (hyper, h2, reqwest).
    for s in &spans {
        assert!(
            ["check", "http.request", "token.request"].contains(&s.name.as_str()),
            "unexpected span {s:#?}"
        );
    }
}

/// With a 10-minute batch delay only the shutdown can send the spans: SIGTERM flushes
/// them. Also the token flow's span, the standard endpoint variable, and no secret in
/// anything exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_queued_spans_without_secrets() {
    let receiver = Receiver::start().await;
    let registry = mock_registry(true).await;
    let endpoint = receiver.endpoint();
    let mut exporter = Exporter::start(
        &registry.url(),
        true,
        &["--log.level", "warn"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    exporter.wait_for_pull_result().await;
    assert!(
        receiver.raw().is_empty(),
        "nothing is sent before the delay"
    );
    exporter.terminate();

    let spans = receiver.spans();
    let check = find(&spans, "check", "pull").expect("the pull check's span, flushed on exit");
    assert_eq!(check.attr("status"), Some("pass"), "{spans:#?}");
    let token = spans
        .iter()
        .find(|s| s.name == "token.request")
        .unwrap_or_else(|| panic!("a token.request span: {spans:#?}"));
    let host = registry.host_with_port();
    assert_eq!(token.attr("realm_host"), Some(host.as_str()), "{token:#?}");
    assert_eq!(token.attr("realm_path"), Some("/token"), "{token:#?}");
    assert_eq!(token.attr("method"), Some("GET"), "{token:#?}");
    assert_eq!(token.attr("status"), Some("200"), "{token:#?}");
    assert!(
        spans.iter().any(|s| s.name == "http.request"
            && s.attr("status") == Some("401")
            && s.attr("path") == Some("/v2/")),
        "the challenge is a request span too"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    for body in receiver.raw() {
        for secret in [PASSWORD, TOKEN, basic.as_str(), "scope=", "service=mock"] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} was exported"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Log lines.

/// Parses one logfmt line into its pairs, in order; `None` if it is not logfmt.
fn parse_logfmt(line: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            if c == '"' {
                return None;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'u' => {
                            // \u{…}
                            if chars.next()? != '{' {
                                return None;
                            }
                            let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                            value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(' ')) {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '=' {
                    return None;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
}

#[test]
fn the_logfmt_parser_of_this_test_works() {
    let pairs = parse_logfmt(r#"ts=1 level=info msg="a \"b\" c\n" k=v e="""#).unwrap();
    assert_eq!(
        pairs,
        [
            ("ts", "1"),
            ("level", "info"),
            ("msg", "a \"b\" c\n"),
            ("k", "v"),
            ("e", "")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(parse_logfmt("no pairs here").is_none());
}

/// Runs the binary at trace level against the token-flow registry until the pull check
/// has a result, and returns its stderr.
async fn trace_logs(format: &str) -> String {
    let registry = mock_registry(true).await;
    let mut exporter = Exporter::start(
        &registry.url(),
        true,
        &["--log.level", "trace", "--log.format", format],
        &[],
    );
    exporter.wait_for_pull_result().await;
    exporter.terminate();
    exporter.stderr()
}

fn assert_no_secret(logs: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    for secret in [PASSWORD, TOKEN, basic.as_str()] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logfmt_lines_parse_and_carry_no_secret_at_trace_level() {
    let logs = trace_logs("logfmt").await;
    assert!(logs.lines().count() > 20, "trace level logs a lot: {logs}");
    let mut in_check_span = false;
    for line in logs.lines() {
        let pairs = parse_logfmt(line).unwrap_or_else(|| panic!("not logfmt: {line}"));
        let keys: Vec<&str> = pairs.iter().take(3).map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ts", "level", "msg"], "{line}");
        assert!(
            humantime::parse_rfc3339(&pairs[0].1).is_ok(),
            "ts is RFC 3339: {line}"
        );
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&pairs[1].1.as_str()),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "no ANSI colours: {line}");
        let has = |k: &str, v: &str| pairs.iter().any(|(pk, pv)| pk == k && pv == v);
        in_check_span |= has("registry", "default") && has("check", "pull");
    }
    assert!(
        in_check_span,
        "events inside a check span carry its fields: {logs}"
    );
    assert!(logs.contains("msg=listening"), "{logs}");
    assert_no_secret(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_parse_and_carry_no_secret_at_trace_level() {
    let logs = trace_logs("json").await;
    assert!(logs.lines().count() > 20, "trace level logs a lot: {logs}");
    let mut listening = false;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        listening |= v["message"] == "listening";
    }
    assert!(listening, "event fields are flattened: {logs}");
    assert_no_secret(&logs);
}
