//! The web configuration file (`--web.config.file`): TLS, basic auth and extra response
//! headers, with the keys of the Prometheus exporter-toolkit, so a file written for any
//! Prometheus exporter works here.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # or `cert:` with the PEM inline
//!   key_file: server.key           # or `key:` with the PEM inline
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt         # or `client_ca:` with the PEM inline
//!   min_version: TLS12             # TLS12 (default) | TLS13; TLS10/TLS11 mean TLS12
//!   max_version: TLS13
//!   cipher_suites: [...]           # TLS 1.2 suites, Go names; TLS 1.3 suites are fixed
//!   curve_preferences: [X25519, CurveP256, CurveP384]
//!   prefer_server_cipher_suites: true
//!   client_allowed_sans: [prometheus.example.com]
//! http_server_config:
//!   http2: true
//!   headers: { Strict-Transport-Security: max-age=31536000 }
//! basic_auth_users:
//!   alice: $2y$10$...              # bcrypt hashes: htpasswd -nBC 10 "" | tr -d ':\n'
//! ```
//!
//! Relative paths are relative to the web config file's directory. Unknown keys are errors;
//! so is `rate_limit` (not supported: put a proxy in front). `client_auth_type` is
//! `NoClientCert` (default), `RequestClientCert`, `RequireAnyClientCert`,
//! `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`; the two verifying types need a
//! client CA. Headers are limited to exporter-toolkit's list (Strict-Transport-Security,
//! X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy).
//!
//! **What basic auth protects**: every path (`/metrics`, `/probe` with or without
//! `debug=true`, `/result`, `/`, `/-/reload`, unknown paths) except `/-/healthy` and
//! `/-/ready`, which stay open so that Kubernetes probes need no credentials. Successful
//! verifications are cached (user + SHA-256 of the password, never the password) so a scrape
//! does not cost a bcrypt; failures are never cached. bcrypt runs off the async threads, a
//! few at a time (one per core, at most 4), and the clients waiting take turns by address
//! (an IPv6 /64 counts as one), so a flood of wrong passwords from one place delays a login
//! from elsewhere by about one verification, not by the length of the flood. An unknown user
//! costs one verification too, against a dummy hash as dear as the dearest configured one,
//! the first time as every time (no user enumeration by timing). Neither the password nor
//! the `Authorization` header is ever logged.
//!
//! **Reloading**: [`Web::acceptor`] and [`Web::check_auth`] stat the web config file and the
//! files it names (cheap) and rebuild everything when one changed, so a rotated certificate
//! serves the next connection and a changed user list the next request. A broken change is
//! logged (once) and the previous good configuration keeps serving. Switching between TLS and
//! plain HTTP needs a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// How long a client gets to complete the TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The paths that never need credentials: liveness and readiness probes.
pub const UNAUTHENTICATED_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// The realm sent with a 401.
const REALM: &str = "oci-registry-exporter";

/// Successful verifications kept; the cache is emptied when it is full.
const AUTH_CACHE_LIMIT: usize = 1024;

/// Most bcrypt verifications at once, whatever the number of cores: each keeps a core busy.
const MAX_BCRYPT_PARALLELISM: usize = 4;

/// A valid bcrypt hash (of "oci-registry-exporter: no such user", with a fixed salt) after
/// `$2b$NN$`: unknown users are verified against it at the configured cost, so they cost
/// what a wrong password costs without hashing anything first.
const DUMMY_HASH_TAIL: &str = "abcdefghijklmnopqrstuutLBWyGJLxiYcaQhW5ScfOiGHLTYMiyi";

/// Headers that may be configured, with their allowed values (empty: any), as exporter-toolkit.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

const TOP_KEYS: &[&str] = &[
    "tls_server_config",
    "http_server_config",
    "basic_auth_users",
    "rate_limit",
];
const TLS_KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
];
const HTTP_KEYS: &[&str] = &["http2", "headers"];

const CLIENT_AUTH_TYPES: &[&str] = &[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

/// A web config file that could not be used. The text names the file and the key, never a
/// secret (a password hash, a private key).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot be read ({problem}); check the --web.config.file path")]
    Read { path: String, problem: String },
    #[error("{path}: not valid YAML ({problem}); fix the syntax")]
    Syntax { path: String, problem: String },
    #[error("{path}: {key}: {problem}; {fix}")]
    Invalid {
        path: String,
        key: String,
        problem: String,
        fix: String,
    },
}

/// The web configuration in use, re-read when its files change.
pub struct Web {
    path: PathBuf,
    state: Mutex<State>,
    /// The bcrypt verifications running at once and the clients waiting their turn.
    bcrypt_gate: Arc<FairGate>,
}

/// Who waits for a bcrypt verification: a client address, an IPv6 /64 as one (a single
/// host usually holds a whole /64), or "unknown" without an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
    Unknown,
}

impl Client {
    fn of(peer: Option<IpAddr>) -> Client {
        match peer.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Client::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => Client::V6Prefix((u128::from(v6) >> 64) as u64),
            None => Client::Unknown,
        }
    }
}

/// A semaphore whose waiters take turns by client: a permit set free goes to the next
/// client in a round robin, not to the longest waiter, so one client's hundred requests
/// wait behind each other, not in front of everyone else.
struct FairGate {
    // std Mutex: never held across .await.
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    /// Clients with waiters, in turn order; each client appears at most once.
    turns: VecDeque<Client>,
    waiting: HashMap<Client, VecDeque<oneshot::Sender<Grant>>>,
}

/// A permit of a [`FairGate`], handed to the next waiter when dropped.
struct Grant {
    gate: Option<Arc<FairGate>>,
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl FairGate {
    fn new(permits: usize) -> Arc<FairGate> {
        Arc::new(FairGate {
            state: Mutex::new(GateState {
                free: permits,
                turns: VecDeque::new(),
                waiting: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a permit; cancel-safe (a waiter dropped before its turn loses nothing).
    async fn acquire(self: &Arc<Self>, client: Client) -> Grant {
        let rx = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                return Grant {
                    gate: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = state.waiting.entry(client).or_default();
            queue.push_back(tx);
            if queue.len() == 1 {
                state.turns.push_back(client);
            }
            rx
        };
        // The sender is dropped only after handing over a grant, or with the gate itself,
        // which this waiter keeps alive; a grant is always sent.
        rx.await.unwrap_or(Grant { gate: None })
    }

    /// A permit came back: the next client in turn gets it, or it is free again.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(client) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&client) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&client);
            } else {
                state.turns.push_back(client);
            }
            let Some(tx) = next else { continue };
            let grant = Grant {
                gate: Some(self.clone()),
            };
            match tx.send(grant) {
                Ok(()) => return,
                // That waiter gave up: defuse the grant (this loop passes it on) and go on.
                Err(mut unsent) => unsent.gate = None,
            }
        }
        state.free += 1;
    }
}

/// Verifications at once: one per core, at least one, at most [`MAX_BCRYPT_PARALLELISM`].
fn bcrypt_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_BCRYPT_PARALLELISM)
}

struct State {
    current: Arc<Snapshot>,
    /// The files whose change triggers a reload: the web config file first.
    watched: Vec<PathBuf>,
    /// Their stamps when last loaded (or last tried, so a broken file warns once).
    seen: Vec<Stamp>,
}

/// One loaded configuration.
struct Snapshot {
    tls: Option<TlsAcceptor>,
    tls_summary: String,
    http2: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<Arc<BasicAuth>>,
}

/// What tells a changed file: modification and change times, size, inode and device.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(i64, i64, i64, i64, u64, u64, u64)>);

fn stamp(path: &Path) -> Stamp {
    Stamp(std::fs::metadata(path).ok().map(|m| {
        (
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.len(),
            m.ino(),
            m.dev(),
        )
    }))
}

impl fmt::Debug for Web {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Web")
            .field("path", &self.path)
            .field("summary", &self.summary())
            .finish_non_exhaustive()
    }
}

impl Web {
    /// Reads and validates the web config file and everything it names.
    pub fn load(path: &Path) -> Result<Web, WebConfigError> {
        let attempt = attempt(path);
        let current = Arc::new(attempt.result?);
        Ok(Web {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                current,
                watched: attempt.watched,
                seen: attempt.seen,
            }),
            bcrypt_gate: FairGate::new(bcrypt_parallelism()),
        })
    }

    /// The web config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether connections are TLS (fixed for the life of the process).
    pub fn tls_enabled(&self) -> bool {
        self.snapshot().tls.is_some()
    }

    /// Whether HTTP/2 may be used (`http_server_config.http2`, default true).
    pub fn http2(&self) -> bool {
        self.snapshot().http2
    }

    /// One line for logs and `--check-config`: what is on.
    pub fn summary(&self) -> String {
        let s = self.snapshot();
        let auth = match &s.auth {
            None => "no basic auth".to_string(),
            Some(a) => format!(
                "basic auth ({} user{})",
                a.users.len(),
                if a.users.len() == 1 { "" } else { "s" }
            ),
        };
        format!(
            "{}, {auth}, {} extra header{}",
            s.tls_summary,
            s.headers.len(),
            if s.headers.len() == 1 { "" } else { "s" }
        )
    }

    /// The TLS acceptor for a new connection (rebuilt first if a file changed), or `None`
    /// for plain HTTP.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current().tls.clone()
    }

    /// Checks the request's basic auth credentials where the path needs them. The error is
    /// the 401 to send (pass it through [`Web::decorate`] like any other response). `peer`,
    /// the client's address, decides whose turn it is when verifications queue.
    pub async fn check_auth(
        &self,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<(), Response<Full<Bytes>>> {
        let Some(auth) = self.current().auth.clone() else {
            return Ok(());
        };
        if UNAUTHENTICATED_PATHS.contains(&path) {
            return Ok(());
        }
        let Some((user, password)) = basic_credentials(headers) else {
            tracing::debug!(path, "request without basic auth credentials refused");
            return Err(unauthorized());
        };
        let key: CacheKey = (user, Sha256::digest(&password).into());
        if auth.is_cached(&key) {
            return Ok(());
        }
        let permit = self.bcrypt_gate.acquire(Client::of(peer)).await;
        // Another request may have verified the same credentials while this one waited.
        if auth.is_cached(&key) {
            return Ok(());
        }
        let verifier = auth.clone();
        let user = key.0.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verifier.verify(&user, &password)
        })
        .await
        .unwrap_or(false);
        if ok {
            auth.remember(key);
            Ok(())
        } else {
            tracing::debug!(path, "request with wrong basic auth credentials refused");
            Err(unauthorized())
        }
    }

    /// Adds the configured `http_server_config.headers` to a response.
    pub fn decorate<B>(&self, response: &mut Response<B>) {
        let s = self.snapshot();
        for (name, value) in &s.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }

    /// The configuration in use, without looking at the files.
    fn snapshot(&self) -> Arc<Snapshot> {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration in use, reloaded first if one of its files changed.
    fn current(&self) -> Arc<Snapshot> {
        let mut state = self.lock();
        let now: Vec<Stamp> = state.watched.iter().map(|p| stamp(p)).collect();
        if now == state.seen {
            return state.current.clone();
        }
        let attempt = attempt(&self.path);
        state.watched = attempt.watched;
        state.seen = attempt.seen;
        match attempt.result {
            Ok(next) if next.tls.is_some() != state.current.tls.is_some() => {
                tracing::warn!(
                    path = %self.path.display(),
                    "web config changed between TLS and plain HTTP, which needs a restart; keeping the previous web config"
                );
            }
            Ok(next) => {
                tracing::info!(path = %self.path.display(), "web config reloaded");
                state.current = Arc::new(next);
            }
            Err(e) => {
                tracing::warn!(error = %e, "web config changed but is invalid; keeping the previous web config");
            }
        }
        state.current.clone()
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, format!("Basic realm=\"{REALM}\""))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"unauthorized\n")))
        .expect("static headers are valid")
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

type CacheKey = (String, [u8; 32]);

struct BasicAuth {
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    verified: Mutex<HashSet<CacheKey>>,
    /// Verified against for unknown users, at the highest configured cost.
    dummy: String,
}

impl BasicAuth {
    fn is_cached(&self, key: &CacheKey) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    fn remember(&self, key: CacheKey) {
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= AUTH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key);
    }

    /// A bcrypt verification (blocking, slow by design).
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }
}

/// The outcome of reading the web config: the files to watch and their stamps in any case.
struct Attempt {
    watched: Vec<PathBuf>,
    seen: Vec<Stamp>,
    result: Result<Snapshot, WebConfigError>,
}

fn attempt(path: &Path) -> Attempt {
    let config_stamp = stamp(path);
    let mut watched = vec![path.to_path_buf()];
    let mut seen = vec![config_stamp];
    let result = parse(path).and_then(|raw| {
        // Stamped before they are read, so a write during the read is seen next time.
        for file in raw.files() {
            seen.push(stamp(&file));
            watched.push(file);
        }
        build(path, &raw)
    });
    Attempt {
        watched,
        seen,
        result,
    }
}

/// The file's content, keys checked and paths resolved; nothing else read yet.
#[derive(Default)]
struct Raw {
    tls: RawTls,
    http2: Option<bool>,
    headers: Vec<(String, String)>,
    users: Option<Vec<(String, String)>>,
}

#[derive(Default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

impl RawTls {
    /// exporter-toolkit's rule: any of these turns TLS on.
    fn enabled(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.client_ca.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca_file.is_some()
            || self.client_auth_type.is_some()
    }
}

impl Raw {
    fn files(&self) -> Vec<PathBuf> {
        [
            &self.tls.cert_file,
            &self.tls.key_file,
            &self.tls.client_ca_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// Builds errors that name the file.
struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> WebConfigError {
        WebConfigError::Invalid {
            path: self.path.display().to_string(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Rejects keys not in `known`.
    fn check_keys(
        &self,
        section: &str,
        map: &Mapping,
        known: &[&str],
    ) -> Result<(), WebConfigError> {
        for k in map.keys() {
            let name = match k.as_str() {
                Some(s) => s.to_string(),
                None => format!("{k:?}"),
            };
            if !known.contains(&name.as_str()) {
                let key = if section.is_empty() {
                    name
                } else {
                    format!("{section}.{name}")
                };
                let where_ = if section.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {section}")
                };
                return Err(self.invalid(
                    key,
                    "unknown key",
                    format!(
                        "remove it or use one of the keys allowed {where_}: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A section: a mapping, or absent/null.
    fn section<'v>(
        &self,
        map: &'v Mapping,
        key: &str,
    ) -> Result<Option<&'v Mapping>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid(
                key,
                "is not a mapping",
                "write it as `key: value` lines indented under it",
            )),
        }
    }

    /// A string; empty counts as absent (as in exporter-toolkit).
    fn string(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<String>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a string",
                "quote the value",
            )),
        }
    }

    fn bool(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<bool>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a boolean",
                "use true or false",
            )),
        }
    }

    fn list(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<Vec<String>>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        self.invalid(
                            format!("{section}.{key}"),
                            "holds an item that is not a string",
                            "write a list of names",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a list",
                "write a list, e.g. [a, b]",
            )),
        }
    }

    /// A mapping of strings to strings, in file order.
    fn string_map(
        &self,
        map: &Mapping,
        key: &str,
        what: &str,
    ) -> Result<Option<Vec<(String, String)>>, WebConfigError> {
        let Some(m) = self.section(map, key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (k, v) in m {
            let Some(k) = k.as_str() else {
                return Err(self.invalid(
                    key,
                    format!("holds a {what} name that is not a string"),
                    "quote the name",
                ));
            };
            let Some(v) = v.as_str() else {
                if what == "user" {
                    return Err(not_bcrypt(self, &format!("{key}.{k}")));
                }
                return Err(self.invalid(
                    format!("{key}.{k}"),
                    "is not a string",
                    "quote the value",
                ));
            };
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Some(out))
    }
}

/// Relative paths are relative to the web config file's directory.
fn resolve(config: &Path, file: Option<String>) -> Option<PathBuf> {
    let file = PathBuf::from(file?);
    Some(if file.is_absolute() {
        file
    } else {
        config.parent().unwrap_or(Path::new("")).join(file)
    })
}

fn parse(path: &Path) -> Result<Raw, WebConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Read {
        path: shown.clone(),
        problem: io_problem(&e),
    })?;
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| WebConfigError::Syntax {
        path: shown.clone(),
        problem: e.to_string(),
    })?;
    let cx = Ctx { path };
    let top = match value {
        Value::Null => return Ok(Raw::default()),
        Value::Mapping(m) => m,
        _ => {
            return Err(WebConfigError::Syntax {
                path: shown,
                problem: "the file is not a mapping of keys".into(),
            });
        }
    };
    cx.check_keys("", &top, TOP_KEYS)?;
    if top.contains_key("rate_limit") {
        return Err(cx.invalid(
            "rate_limit",
            "is not supported by oci-registry-exporter",
            "remove it; put a reverse proxy in front of the exporter to limit request rates",
        ));
    }
    let mut raw = Raw::default();
    if let Some(tls) = cx.section(&top, "tls_server_config")? {
        cx.check_keys("tls_server_config", tls, TLS_KEYS)?;
        let s = "tls_server_config";
        raw.tls = RawTls {
            cert: cx.string(tls, s, "cert")?,
            key: cx.string(tls, s, "key")?,
            client_ca: cx.string(tls, s, "client_ca")?,
            cert_file: resolve(path, cx.string(tls, s, "cert_file")?),
            key_file: resolve(path, cx.string(tls, s, "key_file")?),
            client_auth_type: cx.string(tls, s, "client_auth_type")?,
            client_ca_file: resolve(path, cx.string(tls, s, "client_ca_file")?),
            cipher_suites: cx.list(tls, s, "cipher_suites")?,
            curve_preferences: cx.list(tls, s, "curve_preferences")?,
            min_version: cx.string(tls, s, "min_version")?,
            max_version: cx.string(tls, s, "max_version")?,
            prefer_server_cipher_suites: cx.bool(tls, s, "prefer_server_cipher_suites")?,
            client_allowed_sans: cx.list(tls, s, "client_allowed_sans")?,
        };
    }
    if let Some(http) = cx.section(&top, "http_server_config")? {
        cx.check_keys("http_server_config", http, HTTP_KEYS)?;
        raw.http2 = cx.bool(http, "http_server_config", "http2")?;
        let headers = cx
            .string_map(http, "headers", "header")
            .map_err(|e| prefix_key(e, "http_server_config."))?;
        raw.headers = headers.unwrap_or_default();
    }
    raw.users = cx.string_map(&top, "basic_auth_users", "user")?;
    Ok(raw)
}

fn prefix_key(e: WebConfigError, prefix: &str) -> WebConfigError {
    match e {
        WebConfigError::Invalid {
            path,
            key,
            problem,
            fix,
        } => WebConfigError::Invalid {
            path,
            key: format!("{prefix}{key}"),
            problem,
            fix,
        },
        other => other,
    }
}

fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string().to_lowercase(),
    }
}

fn build(path: &Path, raw: &Raw) -> Result<Snapshot, WebConfigError> {
    let cx = Ctx { path };
    let http2 = raw.http2.unwrap_or(true);
    let headers = build_headers(&cx, &raw.headers)?;
    let auth = match &raw.users {
        Some(users) if !users.is_empty() => Some(Arc::new(build_auth(&cx, users)?)),
        _ => None,
    };
    let (tls, tls_summary) = if raw.tls.enabled() {
        let (config, summary) = build_tls(&cx, &raw.tls, http2)?;
        (Some(TlsAcceptor::from(Arc::new(config))), summary)
    } else {
        (None, "plain HTTP (no TLS)".to_string())
    };
    Ok(Snapshot {
        tls,
        tls_summary,
        http2,
        headers,
        auth,
    })
}

fn build_headers(
    cx: &Ctx<'_>,
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let allowed: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    for (name, value) in headers {
        let key = format!("http_server_config.headers.{name}");
        let Some((canonical, values)) = ALLOWED_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            return Err(cx.invalid(
                key,
                "this header cannot be configured",
                format!("use one of {}", allowed.join(", ")),
            ));
        };
        if !values.is_empty() && !values.contains(&value.as_str()) {
            return Err(cx.invalid(
                key,
                format!("{value:?} is not an allowed value"),
                format!("use one of {}", values.join(", ")),
            ));
        }
        let Ok(value) = HeaderValue::from_str(value) else {
            return Err(cx.invalid(
                key,
                "the value holds characters not allowed in an HTTP header",
                "use visible ASCII characters only",
            ));
        };
        out.push((HeaderName::from_static(lower(canonical)), value));
    }
    Ok(out)
}

/// `HeaderName::from_static` wants lowercase.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn not_bcrypt(cx: &Ctx<'_>, key: &str) -> WebConfigError {
    cx.invalid(
        key,
        "is not a bcrypt hash (the value must be a hash such as $2y$10$..., never the password itself)",
        "generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` and paste it",
    )
}

fn build_auth(cx: &Ctx<'_>, users: &[(String, String)]) -> Result<BasicAuth, WebConfigError> {
    let mut map = HashMap::new();
    // The dummy hash for unknown users costs as much as the dearest real one.
    let mut cost = 0;
    for (user, hash) in users {
        let key = format!("basic_auth_users.{user}");
        let parts: bcrypt::HashParts = hash.parse().map_err(|_| not_bcrypt(cx, &key))?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(cx.invalid(
                &key,
                format!("bcrypt cost {} is out of range", parts.get_cost()),
                "use a cost between 4 and 31 (10 is usual)",
            ));
        }
        if map.insert(user.clone(), hash.clone()).is_some() {
            return Err(cx.invalid(&key, "appears twice", "keep one entry per user"));
        }
        cost = cost.max(parts.get_cost());
    }
    Ok(BasicAuth {
        users: map,
        verified: Mutex::new(HashSet::new()),
        dummy: format!("$2b${cost:02}${DUMMY_HASH_TAIL}"),
    })
}

fn tls_version(
    cx: &Ctx<'_>,
    key: &str,
    value: Option<&str>,
    default: u8,
) -> Result<u8, WebConfigError> {
    match value {
        None => Ok(default),
        Some("TLS10") => Ok(10),
        Some("TLS11") => Ok(11),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(cx.invalid(
            format!("tls_server_config.{key}"),
            format!("unknown TLS version {other:?}"),
            "use TLS12 or TLS13",
        )),
    }
}

/// Reads a PEM file or takes the inline text; never shows the content.
fn pem_source(
    cx: &Ctx<'_>,
    inline_key: &str,
    inline: &Option<String>,
    file_key: &str,
    file: &Option<PathBuf>,
) -> Result<Option<(Vec<u8>, String)>, WebConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(cx.invalid(
            format!("tls_server_config.{file_key}"),
            format!("both {inline_key} and {file_key} are set"),
            format!("keep one: {file_key} (a path) or {inline_key} (the PEM inline)"),
        )),
        (Some(text), None) => Ok(Some((text.as_bytes().to_vec(), format!("tls_server_config.{inline_key}")))),
        (None, Some(path)) => std::fs::read(path)
            .map(|bytes| Some((bytes, format!("tls_server_config.{file_key}"))))
            .map_err(|e| {
                cx.invalid(
                    format!("tls_server_config.{file_key}"),
                    format!("cannot read {} ({})", path.display(), io_problem(&e)),
                    "check the path (relative paths are relative to the web config file's directory) and its permissions",
                )
            }),
        (None, None) => Ok(None),
    }
}

fn certificates(
    cx: &Ctx<'_>,
    key: &str,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            cx.invalid(
                key,
                "is not valid PEM",
                "use a PEM file with BEGIN CERTIFICATE blocks",
            )
        })?;
    if certs.is_empty() {
        return Err(cx.invalid(
            key,
            "holds no PEM certificate",
            "use a PEM file with BEGIN CERTIFICATE blocks",
        ));
    }
    Ok(certs)
}

fn build_tls(
    cx: &Ctx<'_>,
    t: &RawTls,
    http2: bool,
) -> Result<(ServerConfig, String), WebConfigError> {
    let cert = pem_source(cx, "cert", &t.cert, "cert_file", &t.cert_file)?;
    let key = pem_source(cx, "key", &t.key, "key_file", &t.key_file)?;
    let client_ca = pem_source(
        cx,
        "client_ca",
        &t.client_ca,
        "client_ca_file",
        &t.client_ca_file,
    )?;
    let Some((cert_pem, cert_key)) = cert else {
        return Err(cx.invalid(
            "tls_server_config.cert_file",
            "missing: TLS is configured but there is no server certificate",
            "set cert_file to the server certificate (PEM), or cert to the PEM itself",
        ));
    };
    let Some((key_pem, key_key)) = key else {
        return Err(cx.invalid(
            "tls_server_config.key_file",
            "missing: TLS is configured but there is no private key",
            "set key_file to the server certificate's private key (PEM), or key to the PEM itself",
        ));
    };
    let chain = certificates(cx, &cert_key, &cert_pem)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        cx.invalid(
            &key_key,
            "holds no PEM private key",
            "use the PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) of the certificate",
        )
    })?;

    // Versions: rustls speaks TLS 1.2 and 1.3 only.
    let min = tls_version(cx, "min_version", t.min_version.as_deref(), 12)?;
    let max = tls_version(cx, "max_version", t.max_version.as_deref(), 13)?;
    if max < 12 {
        return Err(cx.invalid(
            "tls_server_config.max_version",
            "TLS 1.0 and 1.1 are not supported",
            "use TLS12 or TLS13",
        ));
    }
    if min > max {
        return Err(cx.invalid(
            "tls_server_config.min_version",
            "is above max_version",
            "set min_version at or below max_version",
        ));
    }
    if min < 12 {
        tracing::warn!(
            path = %cx.path.display(),
            "tls_server_config.min_version TLS10/TLS11 means TLS12 here: TLS 1.0 and 1.1 are not supported"
        );
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }

    let mut provider = aws_lc_rs::default_provider();
    if let Some(names) = &t.cipher_suites {
        provider.cipher_suites = cipher_suites(cx, names)?;
    }
    if let Some(names) = &t.curve_preferences {
        provider.kx_groups = curves(cx, names)?;
    }
    let algorithms = provider.signature_verification_algorithms;
    let provider = Arc::new(provider);

    // Client certificates.
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let auth_type = match auth_type {
        "RequireClientCert" => "RequireAnyClientCert", // exporter-toolkit's old name
        other => other,
    };
    if !CLIENT_AUTH_TYPES.contains(&auth_type) {
        return Err(cx.invalid(
            "tls_server_config.client_auth_type",
            format!("unknown client auth type {auth_type:?}"),
            format!("use one of {}", CLIENT_AUTH_TYPES.join(", ")),
        ));
    }
    let roots = match &client_ca {
        None => None,
        Some((pem, key)) => {
            let mut store = RootCertStore::empty();
            for c in certificates(cx, key, pem)? {
                store.add(c).map_err(|_| {
                    cx.invalid(
                        key,
                        "holds a certificate that is not a valid CA certificate",
                        "use the PEM of the CA that signs the client certificates",
                    )
                })?;
            }
            Some(Arc::new(store))
        }
    };
    if roots.is_some() && auth_type == "NoClientCert" {
        return Err(cx.invalid(
            "tls_server_config.client_auth_type",
            "a client CA is configured but client_auth_type is NoClientCert (the default)",
            "set client_auth_type, e.g. RequireAndVerifyClientCert, or remove client_ca_file",
        ));
    }
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth_type {
        "NoClientCert" => None,
        "RequestClientCert" | "RequireAnyClientCert" => Some(Arc::new(AnyClientCert {
            mandatory: auth_type == "RequireAnyClientCert",
            algorithms,
        })),
        _ => {
            let Some(roots) = roots else {
                return Err(cx.invalid(
                    "tls_server_config.client_ca_file",
                    format!("missing: client_auth_type {auth_type} verifies client certificates against a CA"),
                    "set client_ca_file to the PEM of the CA that signs the client certificates",
                ));
            };
            let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if auth_type == "VerifyClientCertIfGiven" {
                builder = builder.allow_unauthenticated();
            }
            Some(builder.build().map_err(|e| {
                cx.invalid(
                    "tls_server_config.client_ca_file",
                    format!("cannot be used to verify client certificates ({e})"),
                    "use the PEM of the CA that signs the client certificates",
                )
            })?)
        }
    };
    let verifier = match (&t.client_allowed_sans, verifier) {
        (Some(sans), Some(inner))
            if matches!(
                auth_type,
                "RequireAnyClientCert" | "RequireAndVerifyClientCert"
            ) =>
        {
            Some(Arc::new(AllowedSans {
                inner,
                allowed: sans.clone(),
            }) as Arc<dyn ClientCertVerifier>)
        }
        (Some(_), _) => {
            return Err(cx.invalid(
                "tls_server_config.client_allowed_sans",
                format!("has no effect with client_auth_type {auth_type}"),
                "set client_auth_type to RequireAnyClientCert or RequireAndVerifyClientCert",
            ));
        }
        (None, v) => v,
    };

    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            cx.invalid(
                "tls_server_config",
                format!("no usable TLS setup ({e})"),
                "check min_version, max_version, cipher_suites and curve_preferences together",
            )
        })?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => cx.invalid(
                &key_key,
                format!("does not match the certificate in {cert_key}"),
                "use the private key the certificate was issued for",
            ),
            other => cx.invalid(
                &key_key,
                format!("cannot be used with the certificate ({other})"),
                "use a PEM certificate and its PEM private key (RSA, ECDSA or Ed25519)",
            ),
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let summary = format!(
        "TLS (TLS{}{}, client certificates: {auth_type})",
        if min <= 12 { "1.2" } else { "1.3" },
        if max >= 13 && min <= 12 { "-1.3" } else { "" },
    );
    Ok((config, summary))
}

/// Go's TLS 1.3 suite names: accepted and ignored, as in Go (TLS 1.3 suites are fixed).
const GO_TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn cipher_suites(
    cx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, WebConfigError> {
    let all = aws_lc_rs::ALL_CIPHER_SUITES;
    let tls12_names = || {
        all.iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .map(|s| format!("{:?}", s.suite()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // TLS 1.3 suites stay as the provider has them.
    let mut out: Vec<_> = aws_lc_rs::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
        .collect();
    for name in names {
        if GO_TLS13_SUITES.contains(&name.as_str()) {
            continue;
        }
        let Some(suite) = all.iter().find(|s| {
            matches!(s, rustls::SupportedCipherSuite::Tls12(_))
                && format!("{:?}", s.suite()) == *name
        }) else {
            return Err(cx.invalid(
                "tls_server_config.cipher_suites",
                format!("cipher suite {name:?} is not supported"),
                format!("use TLS 1.2 suites from: {}", tls12_names()),
            ));
        };
        if !out.contains(suite) {
            out.push(*suite);
        }
    }
    Ok(out)
}

fn curves(
    cx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
    use aws_lc_rs::kx_group;
    names
        .iter()
        .map(|name| match name.as_str() {
            "X25519" => Ok(kx_group::X25519),
            "CurveP256" => Ok(kx_group::SECP256R1),
            "CurveP384" => Ok(kx_group::SECP384R1),
            "X25519MLKEM768" => Ok(kx_group::X25519MLKEM768),
            other => Err(cx.invalid(
                "tls_server_config.curve_preferences",
                format!("curve {other:?} is not supported"),
                "use X25519, CurveP256, CurveP384 or X25519MLKEM768",
            )),
        })
        .collect()
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is asked for (and
/// required by the second) but not verified against a CA; its handshake signature is.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: the client certificate must carry one of these SANs (DNS name,
/// email, IP address or URI), after the inner verifier accepted it.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            tracing::debug!(found = ?sans, "client certificate has none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// DNS names, emails, IP addresses and URIs of a certificate, as Go writes them.
fn subject_alt_names(der: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let Some(ext) = cert.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    Some(
        ext.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some(s.to_string())
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", text);
        Web::load(&p)
            .expect_err("should be rejected")
            .to_string()
            .replace(&p.display().to_string(), "web.yml")
    }

    #[test]
    fn empty_file_means_nothing_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", "");
        let web = Web::load(&p).unwrap();
        assert!(!web.tls_enabled());
        assert_eq!(
            web.summary(),
            "plain HTTP (no TLS), no basic auth, 0 extra headers"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(
            err("tls_server_config:\n  cert_flie: x\n"),
            "web.yml: tls_server_config.cert_flie: unknown key; remove it or use one of the keys allowed in tls_server_config: cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, cipher_suites, curve_preferences, min_version, max_version, prefer_server_cipher_suites, client_allowed_sans"
        );
        assert!(err("basic_auth:\n  a: b\n").starts_with("web.yml: basic_auth: unknown key; "));
        assert!(
            err("rate_limit:\n  burst: 1\n").starts_with("web.yml: rate_limit: is not supported")
        );
    }

    #[test]
    fn headers_are_limited_as_in_exporter_toolkit() {
        assert!(
            err("http_server_config:\n  headers:\n    Content-Type: x\n")
                .starts_with("web.yml: http_server_config.headers.Content-Type: this header cannot be configured; ")
        );
        assert_eq!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web.yml: http_server_config.headers.X-Frame-Options: \"allow\" is not an allowed value; use one of deny, sameorigin"
        );
    }

    #[test]
    fn a_password_is_never_echoed() {
        let e = err("basic_auth_users:\n  alice: hunter2\n");
        assert!(
            e.starts_with("web.yml: basic_auth_users.alice: is not a bcrypt hash"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn credentials_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic YWxpY2U6cDpx"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".into(), b"p:q".to_vec()))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer YWxpY2U6cDpx"),
        );
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn the_dummy_hash_is_valid_at_every_cost() {
        for cost in [4, 10, 12] {
            let dummy = format!("$2b${cost:02}${DUMMY_HASH_TAIL}");
            let parts: bcrypt::HashParts = dummy.parse().unwrap();
            assert_eq!(parts.get_cost(), cost);
            if cost == 4 {
                // An error would make unknown users cheaper than wrong passwords.
                assert!(matches!(bcrypt::verify("x", &dummy), Ok(false)));
            }
        }
    }

    #[tokio::test]
    async fn the_bcrypt_gate_takes_turns_by_client() {
        let gate = FairGate::new(1);
        let flood = Client::of(Some(IpAddr::from([127, 0, 0, 1])));
        let other = Client::of(Some(IpAddr::from([127, 0, 0, 2])));
        let held = gate.acquire(flood).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // Ten waiters of one client, then one of another.
        for (i, client) in (0..10).map(|i| (i, flood)).chain([(10, other)]) {
            let (g, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _grant = g.acquire(client).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
            while gate
                .lock()
                .waiting
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
                <= i
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order.iter().position(|&i| i == 10),
            Some(1),
            "the other client goes second, not eleventh: {order:?}"
        );
        // Every permit came back.
        assert_eq!(gate.lock().free, 1);
    }

    #[tokio::test]
    async fn verified_credentials_are_cached_and_changes_reload() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        );
        let web = Web::load(&p).unwrap();
        let auth = |user: &str, pw: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
            );
            h
        };
        assert!(
            web.check_auth("/metrics", &HeaderMap::new(), None)
                .await
                .is_err()
        );
        assert!(
            web.check_auth("/-/healthy", &HeaderMap::new(), None)
                .await
                .is_ok()
        );
        assert!(
            web.check_auth("/metrics", &auth("alice", "wrong"), None)
                .await
                .is_err()
        );
        assert!(
            web.check_auth("/metrics", &auth("bob", "secret"), None)
                .await
                .is_err()
        );
        assert!(
            web.check_auth("/metrics", &auth("alice", "secret"), None)
                .await
                .is_ok()
        );
        let cached = web.snapshot().auth.clone().unwrap();
        assert_eq!(cached.verified.lock().unwrap().len(), 1);
        let key = ("alice".to_string(), Sha256::digest(b"secret").into());
        assert!(
            cached.is_cached(&key),
            "keyed by user and SHA-256 of the password"
        );

        // A new hash for alice: the old password (cached before) no longer works.
        let hash = bcrypt::hash("other", 4).unwrap();
        std::fs::write(
            &p,
            format!("basic_auth_users:\n  alice: '{hash}'\n# changed\n"),
        )
        .unwrap();
        assert!(
            web.check_auth("/metrics", &auth("alice", "secret"), None)
                .await
                .is_err()
        );
        assert!(
            web.check_auth("/metrics", &auth("alice", "other"), None)
                .await
                .is_ok()
        );

        // A broken change keeps the previous config.
        std::fs::write(&p, "basic_auth_users:\n  alice: plaintext\n").unwrap();
        assert!(
            web.check_auth("/metrics", &auth("alice", "other"), None)
                .await
                .is_ok()
        );
    }
}
