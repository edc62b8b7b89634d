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
//!
//! # Layout
//! - this file: [`Web`] (load, reload when a file changes, what the server calls) and the
//!   snapshot of one loaded configuration, built from the parts below. It decides when to
//!   load and what to keep; it does not parse the file, build TLS or verify passwords.
//! - `web_config`: the file itself: keys, types, relative paths, header values, and
//!   [`WebConfigError`].
//! - `server_tls`: the server's rustls configuration and the client-certificate verifiers.
//! - `auth`: basic auth: bcrypt hashes, the verification cache and the fair bcrypt gate.

mod auth;
mod web_config;
// For the fuzz target (src/fuzzing.rs): the parser of the web config text.
pub(crate) use web_config::accepts as config_text_accepted;
mod server_tls;

pub use auth::UNAUTHENTICATED_PATHS;
pub use server_tls::HANDSHAKE_TIMEOUT;
pub use web_config::WebConfigError;

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body_util::Full;
use tokio_rustls::TlsAcceptor;

use auth::{BasicAuth, FairGate, bcrypt_parallelism, build_auth};
use server_tls::build_tls;
use web_config::{Ctx, Raw, build_headers, parse};

/// The web configuration in use, re-read when its files change.
pub struct Web {
    path: PathBuf,
    state: Mutex<State>,
    /// The bcrypt verifications running at once and the clients waiting their turn.
    bcrypt_gate: Arc<FairGate>,
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
        auth.check(&self.bcrypt_gate, path, headers, peer).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use http::header;
    use sha2::{Digest, Sha256};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
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
