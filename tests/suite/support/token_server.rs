//! A small Docker token server (the "token authentication" protocol of the
//! distribution spec), used as the `auth.token.realm` of `Kind::Token`
//! registries.
//!
//! * `GET /token?service=regharness&scope=...[&scope=...][&offline_token=true]`
//!   with optional `Authorization: Basic` credentials.
//!   - right credentials → 200 `{"token","access_token","expires_in":300,"issued_at"}`
//!     (plus `"refresh_token"` when `offline_token=true`);
//!   - wrong password / unknown user / a non-Basic Authorization →
//!     401, `Www-Authenticate: Basic realm="regharness-token"`,
//!     `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`;
//!   - no credentials → 200 with an anonymous token;
//!   - missing or wrong `service` → 400.
//! * `POST /token` (OAuth2, `application/x-www-form-urlencoded`):
//!   - `grant_type=password&username=..&password=..&service=..&scope=..` (scopes
//!     space-separated; `access_type=offline` also returns `refresh_token`);
//!   - `grant_type=refresh_token&refresh_token=..&service=..&scope=..`;
//!   - 200 `{"access_token","scope","expires_in":300,"issued_at"[,"refresh_token"]}`;
//!   - bad credentials or unknown refresh token → 401 `{"error":"invalid_grant",..}`;
//!   - missing fields / wrong service → 400 `{"error":"invalid_request",..}`;
//!     other grant types → 400 `{"error":"unsupported_grant_type",..}`.
//! * anything else → 404 (other path) or 405 (other method).
//!
//! Refresh tokens are fixed and known: [`BOB_REFRESH_TOKEN`] and
//! [`READER_REFRESH_TOKEN`]; they are handed out on `offline_token=true`
//! (GET) / `access_type=offline` (POST password grant), are always accepted by
//! the refresh grant, and every refresh-grant answer repeats the same one.
//!
//! Policy (requested scope ∩ this): `bob` → pull, push, delete on every
//! repository and `registry:catalog:*`; `reader` → pull on every repository and
//! `registry:catalog:*`; anonymous → pull on `library/*` only.
//!
//! JWTs are ES256 (P-256), header `x5c` = [the signer's self-signed
//! certificate, which is also the registry's rootcertbundle] and `kid` = the
//! libtrust fingerprint of the key. Claims: `iss`, `sub` (empty for anonymous),
//! `aud` (a string), `exp`, `nbf`, `iat`, `jti`, `access`.
//!
//! The server runs on its own thread with its own single-threaded tokio
//! runtime, so it works under any test runtime flavour and [`TokenServer::stop`]
//! is synchronous: once it returns, the port refuses connections.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tls::SigningMaterial;

pub const TOKEN_SERVICE: &str = "regharness";
pub const TOKEN_ISSUER: &str = "regharness-token-issuer";
/// Realm of the token server's own Basic challenge.
pub const TOKEN_BASIC_REALM: &str = "regharness-token";
/// Lifetime of every token issued over HTTP, in seconds.
pub const TOKEN_EXPIRES_IN: i64 = 300;

pub const TOKEN_ADMIN_USER: &str = "bob";
pub const TOKEN_ADMIN_PASSWORD: &str = "bobsecret";
pub const TOKEN_READER_USER: &str = "reader";
pub const TOKEN_READER_PASSWORD: &str = "readersecret";
pub const BOB_REFRESH_TOKEN: &str = "regharness-refresh-token-bob";
pub const READER_REFRESH_TOKEN: &str = "regharness-refresh-token-reader";

const USERS: &[(&str, &str, &str)] = &[
    (TOKEN_ADMIN_USER, TOKEN_ADMIN_PASSWORD, BOB_REFRESH_TOKEN),
    (
        TOKEN_READER_USER,
        TOKEN_READER_PASSWORD,
        READER_REFRESH_TOKEN,
    ),
];

fn check_password(user: &str, password: &str) -> bool {
    USERS.iter().any(|(u, p, _)| *u == user && *p == password)
}

fn refresh_token_of(user: &str) -> Option<&'static str> {
    USERS
        .iter()
        .find(|(u, _, _)| *u == user)
        .map(|(_, _, r)| *r)
}

fn user_of_refresh_token(token: &str) -> Option<&'static str> {
    USERS
        .iter()
        .find(|(_, _, r)| *r == token)
        .map(|(u, _, _)| *u)
}

/// Actions the policy allows `user` (None = anonymous) on `typ:name`.
fn allowed_actions(user: Option<&str>, typ: &str, name: &str) -> &'static [&'static str] {
    match (user, typ) {
        (Some(TOKEN_ADMIN_USER), "repository") => &["pull", "push", "delete"],
        (Some(TOKEN_ADMIN_USER | TOKEN_READER_USER), "registry") if name == "catalog" => &["*"],
        (Some(TOKEN_READER_USER), "repository") => &["pull"],
        (None, "repository") if name.starts_with("library/") => &["pull"],
        _ => &[],
    }
}

/// One `access` claim entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub typ: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Parses scope strings (`type:name:action[,action]`, several separated by
/// spaces allowed in one string) and intersects them with the policy.
/// Entries with no granted action are left out.
pub fn grant(user: Option<&str>, scopes: &[String]) -> Vec<Access> {
    // (type, name) -> requested actions, in first-seen order.
    let mut requested: Vec<((String, String), Vec<String>)> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
        let Some((typ, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let key = (typ.to_string(), name.to_string());
        let idx = match requested.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                requested.push((key, Vec::new()));
                requested.len() - 1
            }
        };
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            if !requested[idx].1.iter().any(|a| a == action) {
                requested[idx].1.push(action.to_string());
            }
        }
    }
    requested
        .into_iter()
        .filter_map(|((typ, name), actions)| {
            let allowed = allowed_actions(user, &typ, &name);
            let actions: Vec<String> = actions
                .into_iter()
                .filter(|a| allowed.contains(&a.as_str()))
                .collect();
            (!actions.is_empty()).then_some(Access { typ, name, actions })
        })
        .collect()
}

/// How the JWT header names the signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef {
    /// `x5c` only (certificate chain to the rootcertbundle).
    X5c,
    /// `kid` only (libtrust fingerprint of the public key).
    Kid,
    /// Both (the default for tokens served over HTTP).
    Both,
}

/// libtrust key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
/// base32 (RFC 4648, no padding), in groups of four joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    let bytes = &hash[..30];
    let mut b32 = String::with_capacity(48);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 8];
        buf[3..].copy_from_slice(chunk);
        let n = u64::from_be_bytes(buf);
        for i in (0..8).rev() {
            b32.push(ALPHABET[((n >> (i * 5)) & 31) as usize] as char);
        }
    }
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Signs registry tokens. Shared by the HTTP server and by tests that want a
/// token without going through HTTP ([`TokenIssuer::issue`] is not counted
/// in [`TokenServer::requests`]).
pub struct TokenIssuer {
    key: EncodingKey,
    cert_der_b64: String,
    kid: String,
    /// PEM of the certificate given to the registry as `rootcertbundle`.
    pub cert_pem: String,
    jti: AtomicU64,
}

impl TokenIssuer {
    pub fn new(material: &SigningMaterial) -> TokenIssuer {
        TokenIssuer {
            key: EncodingKey::from_ec_pem(material.key_pem.as_bytes())
                .expect("token signing key PEM"),
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(&material.cert_der),
            kid: libtrust_key_id(&material.spki_der),
            cert_pem: material.cert_pem.clone(),
            jti: AtomicU64::new(1),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// A token for `user` (None = anonymous) with the policy applied to
    /// `scopes`, valid for [`TOKEN_EXPIRES_IN`] seconds.
    pub fn issue(&self, user: Option<&str>, scopes: &[String]) -> String {
        let access = grant(user, scopes);
        self.sign(user.unwrap_or(""), &access, KeyRef::Both, TOKEN_EXPIRES_IN)
    }

    /// Signs exactly the given claims (no policy applied). `expires_in` may be
    /// negative to make an already expired token (Distribution allows 60 s of
    /// leeway on `exp`).
    pub fn sign(
        &self,
        subject: &str,
        access: &[Access],
        key_ref: KeyRef,
        expires_in: i64,
    ) -> String {
        let now = unix_now();
        let jti = self.jti.fetch_add(1, Ordering::Relaxed);
        let access: Vec<Value> = access
            .iter()
            .map(|a| json!({"type": a.typ, "name": a.name, "actions": a.actions}))
            .collect();
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": format!("regharness-{now}-{jti}"),
            "access": access,
        });
        let mut header = Header::new(Algorithm::ES256);
        if matches!(key_ref, KeyRef::X5c | KeyRef::Both) {
            header.x5c = Some(vec![self.cert_der_b64.clone()]);
        }
        if matches!(key_ref, KeyRef::Kid | KeyRef::Both) {
            header.kid = Some(self.kid.clone());
        }
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign JWT")
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn issued_at() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

async fn serve_http<S>(stream: S, ctx: Arc<Ctx>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

/// The token server. Dropping it stops it.
pub struct TokenServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/token`, the realm given to the registry.
    pub realm: String,
    pub issuer: Arc<TokenIssuer>,
    requests: Arc<AtomicUsize>,
    running: Mutex<Option<Running>>,
}

struct Ctx {
    issuer: Arc<TokenIssuer>,
    requests: Arc<AtomicUsize>,
}

impl TokenServer {
    pub fn start(issuer: Arc<TokenIssuer>) -> TokenServer {
        Self::start_with_tls(issuer, None)
    }

    /// Like [`Self::start`], serving HTTPS with `tls` (PEM certificate chain, PEM key).
    pub fn start_with_tls(issuer: Arc<TokenIssuer>, tls: Option<(&str, &str)>) -> TokenServer {
        let acceptor = tls.map(|(cert_pem, key_pem)| {
            use rustls::pki_types::pem::PemObject;
            let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("token server certificate PEM");
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .expect("token server key PEM");
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("token server TLS config");
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server on 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking token listener");
        let addr = listener.local_addr().expect("token server address");
        let requests = Arc::new(AtomicUsize::new(0));
        let ctx = Arc::new(Ctx {
            issuer: issuer.clone(),
            requests: requests.clone(),
        });
        let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("regharness-token-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let ctx = ctx.clone();
                                let acceptor = acceptor.clone();
                                tokio::spawn(async move {
                                    match acceptor {
                                        None => serve_http(stream, ctx).await,
                                        Some(acceptor) => {
                                            if let Ok(tls) = acceptor.accept(stream).await {
                                                serve_http(tls, ctx).await;
                                            }
                                        }
                                    }
                                });
                            }
                        }
                    }
                    // The listener is dropped here; dropping the runtime
                    // below cancels the open connections.
                });
            })
            .expect("spawn token server thread");
        TokenServer {
            addr,
            realm: format!("{scheme}://{addr}/token"),
            issuer,
            requests,
            running: Mutex::new(Some(Running { shutdown, thread })),
        }
    }

    /// Number of HTTP requests served so far (any path, any outcome).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn reset_requests(&self) {
        self.requests.store(0, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// Stops the server: when this returns, the listening socket is closed
    /// (connections to the port are refused) and open connections are
    /// dropped. Idempotent.
    pub fn stop(&self) {
        let running = match self.running.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(Running { shutdown, thread }) = running {
            let _ = shutdown.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop();
    }
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    ctx.requests.fetch_add(1, Ordering::SeqCst);
    if req.uri().path() != "/token" {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"errors":[{"code":"NOT_FOUND","message":"not found"}]}),
        );
    }
    match *req.method() {
        Method::GET => handle_get(ctx, &req),
        Method::POST => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"error":"invalid_request","error_description":"unreadable body"}),
                    );
                }
            };
            handle_post(ctx, &body)
        }
        _ => {
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"errors":[{"code":"UNSUPPORTED","message":"method not allowed"}]}),
            );
            resp.headers_mut()
                .insert("Allow", "GET, POST".parse().expect("header value"));
            resp
        }
    }
}

fn parse_form(data: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(data) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

fn first<'a>(form: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    form.get(key).and_then(|v| v.first()).map(String::as_str)
}

enum Credentials {
    Anonymous,
    User(String),
    Invalid,
}

fn basic_credentials(req: &Request<Incoming>) -> Credentials {
    let Some(value) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return Credentials::Anonymous;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Invalid;
    };
    let Some((scheme, param)) = value.trim().split_once(' ') else {
        return Credentials::Invalid;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Invalid;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(param.trim()) else {
        return Credentials::Invalid;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Credentials::Invalid;
    };
    match decoded.split_once(':') {
        Some((user, password)) if check_password(user, password) => {
            Credentials::User(user.to_string())
        }
        _ => Credentials::Invalid,
    }
}

fn handle_get(ctx: &Ctx, req: &Request<Incoming>) -> Resp {
    let query = parse_form(req.uri().query().unwrap_or("").as_bytes());
    let service = first(&query, "service");
    if service != Some(TOKEN_SERVICE) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"errors":[{"code":"UNSUPPORTED","message":format!("unknown service {:?}, this token server serves {TOKEN_SERVICE:?}", service.unwrap_or(""))}]}),
        );
    }
    let user = match basic_credentials(req) {
        Credentials::Anonymous => None,
        Credentials::User(u) => Some(u),
        Credentials::Invalid => {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}),
            );
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                format!("Basic realm=\"{TOKEN_BASIC_REALM}\"")
                    .parse()
                    .expect("header value"),
            );
            return resp;
        }
    };
    let scopes = query.get("scope").cloned().unwrap_or_default();
    let token = ctx.issuer.issue(user.as_deref(), &scopes);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_EXPIRES_IN,
        "issued_at": issued_at(),
    });
    if first(&query, "offline_token") == Some("true")
        && let Some(refresh) = user.as_deref().and_then(refresh_token_of)
    {
        body["refresh_token"] = json!(refresh);
    }
    json_response(StatusCode::OK, &body)
}

fn handle_post(ctx: &Ctx, body: &[u8]) -> Resp {
    let form = parse_form(body);
    let invalid_request = |msg: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error":"invalid_request","error_description":msg}),
        )
    };
    let invalid_grant = |msg: &str| {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error":"invalid_grant","error_description":msg}),
        )
    };
    if first(&form, "service") != Some(TOKEN_SERVICE) {
        return invalid_request("missing or unknown service");
    }
    let user: &'static str = match first(&form, "grant_type") {
        Some("password") => {
            let (Some(username), Some(password)) =
                (first(&form, "username"), first(&form, "password"))
            else {
                return invalid_request("username and password are required");
            };
            if !check_password(username, password) {
                return invalid_grant("invalid username or password");
            }
            USERS
                .iter()
                .find(|(u, _, _)| *u == username)
                .map(|(u, _, _)| *u)
                .expect("checked user")
        }
        Some("refresh_token") => {
            let Some(refresh) = first(&form, "refresh_token") else {
                return invalid_request("refresh_token is required");
            };
            match user_of_refresh_token(refresh) {
                Some(u) => u,
                None => return invalid_grant("unknown refresh token"),
            }
        }
        Some(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error":"unsupported_grant_type","error_description":"only password and refresh_token grants are supported"}),
            );
        }
        None => return invalid_request("grant_type is required"),
    };
    let scopes: Vec<String> = form
        .get("scope")
        .map(|v| {
            v.iter()
                .flat_map(|s| s.split_whitespace())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let token = ctx.issuer.issue(Some(user), &scopes);
    let mut body = json!({
        "access_token": token,
        "scope": scopes.join(" "),
        "expires_in": TOKEN_EXPIRES_IN,
        "issued_at": issued_at(),
    });
    let offline = first(&form, "access_type") == Some("offline");
    if offline || first(&form, "grant_type") == Some("refresh_token") {
        body["refresh_token"] = json!(refresh_token_of(user));
    }
    json_response(StatusCode::OK, &body)
}
