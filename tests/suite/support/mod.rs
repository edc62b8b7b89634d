//! Test support: real CNCF Distribution registries (`docker-registry`, the
//! Debian package of distribution 2.8) started per test on 127.0.0.1.
//!
//! ```ignore
//! mod support;
//! use support::{Kind, TestRegistry};
//!
//! #[tokio::test]
//! async fn probe() {
//!     let reg = TestRegistry::start(Kind::Basic).await;
//!     // reg.url == "http://127.0.0.1:PORT"; library/alpine:latest is seeded.
//! }
//! ```
//!
//! Every registry has its own temporary storage root, config file and log
//! files; dropping the [`TestRegistry`] kills the process, stops the token
//! server (for [`Kind::Token`]) and removes the directory.
//!
//! The binary is `docker-registry` from `PATH`, or `$REGHARNESS_REGISTRY_BIN`.

#![allow(dead_code, unused_imports)]

pub mod seed;
pub mod tls;
pub mod token_server;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

pub use seed::{
    OCI_CONFIG_MEDIA_TYPE, OCI_LAYER_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, sha256_digest,
};
pub use token_server::{
    Access, BOB_REFRESH_TOKEN, KeyRef, READER_REFRESH_TOKEN, TOKEN_ADMIN_PASSWORD,
    TOKEN_ADMIN_USER, TOKEN_BASIC_REALM, TOKEN_EXPIRES_IN, TOKEN_ISSUER, TOKEN_READER_PASSWORD,
    TOKEN_READER_USER, TOKEN_SERVICE, TokenIssuer, TokenServer,
};

pub const SEED_REPO: &str = "library/alpine";
pub const SEED_TAG: &str = "latest";

pub const BASIC_USER: &str = "alice";
pub const BASIC_PASSWORD: &str = "wonderland";
/// Realm of the registry's htpasswd challenge (`Basic realm="regharness-basic"`).
pub const BASIC_REALM: &str = "regharness-basic";

/// `http.secret` of every test registry.
pub const HTTP_SECRET: &str = "regharness-http-secret-not-for-production";

/// Docker v2 schema 2 manifest media type (for Accept headers in tests).
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Bytes of the seeded manifest (`library/alpine:latest`).
pub fn seed_manifest() -> &'static [u8] {
    &seed::image().manifest
}
/// Bytes of the seeded config blob.
pub fn seed_config() -> &'static [u8] {
    &seed::image().config
}
/// Bytes of the seeded layer blob (a gzip'd tar).
pub fn seed_layer() -> &'static [u8] {
    &seed::image().layer
}
pub fn seed_manifest_digest() -> String {
    sha256_digest(seed_manifest())
}
pub fn seed_config_digest() -> String {
    sha256_digest(seed_config())
}
pub fn seed_layer_digest() -> String {
    sha256_digest(seed_layer())
}

/// `Basic base64(user:password)`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No auth, delete enabled.
    Open,
    /// htpasswd (alice/wonderland, bcrypt), realm `regharness-basic`, delete disabled.
    Basic,
    /// No auth, `storage.maintenance.readonly.enabled: true`, delete disabled
    /// (seeded while writable, then restarted read-only on the same root).
    ReadOnly,
    /// `auth.token` against the in-process token server, delete enabled.
    Token,
    /// HTTPS with a generated CA (see `ca_file`), no auth, delete enabled.
    Tls,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Open,
        Kind::Basic,
        Kind::ReadOnly,
        Kind::Token,
        Kind::Tls,
    ];

    /// `storage.delete.enabled` when [`Options::delete_enabled`] is `None`.
    pub fn default_delete_enabled(self) -> bool {
        matches!(self, Kind::Open | Kind::Token | Kind::Tls)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Overrides the kind's default `storage.delete.enabled`.
    pub delete_enabled: Option<bool>,
    /// Push `library/alpine:latest` after start (default true).
    pub seed: bool,
    /// Tls only: require a client certificate signed by a generated client CA
    /// (`http.tls.clientcas`); see [`TestRegistry::client_cert`].
    pub require_client_cert: bool,
    /// Tls only: serve the leaf with an intermediate CA that expires on this
    /// `(year, month, day)`, before the leaf does (the chain's earliest expiry).
    pub intermediate_not_after: Option<(i32, u8, u8)>,
    /// Token only: the token server speaks HTTPS with a generated CA, which becomes
    /// [`TestRegistry::ca_file`] (the registry itself stays plain HTTP).
    pub token_tls: bool,
    /// Tls only: serve this certificate instead of generating a CA and a leaf, e.g. one
    /// made by `openssl req -x509`. It becomes [`TestRegistry::ca_file`] as it is.
    pub server_cert: Option<ServerCert>,
}

/// PEM files of a server certificate and its private key made outside the harness.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            delete_enabled: None,
            seed: true,
            require_client_cert: false,
            intermediate_not_after: None,
            token_tls: false,
            server_cert: None,
        }
    }
}

/// A running `docker-registry` process. Drop kills it.
pub struct TestRegistry {
    /// `http://127.0.0.1:PORT` (or `https://` for Tls), no trailing slash.
    pub url: String,
    pub kind: Kind,
    /// Filesystem storage root (`storage.filesystem.rootdirectory`).
    pub root: PathBuf,
    /// PEM of the CA that signed the server certificate (Tls only).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key files the registry requires
    /// ([`Options::require_client_cert`]).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Token realm, `http://127.0.0.1:PORT/token` (Token only).
    pub token_url: Option<String>,
    /// Effective `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// The registry's YAML configuration.
    pub config_file: PathBuf,
    /// The registry's stderr (and stdout in `stdout_file`), appended across restarts.
    pub stderr_file: PathBuf,
    pub stdout_file: PathBuf,
    port: u16,
    ca_pem: Option<String>,
    identity_pem: Option<String>,
    /// The harness's own client accepts any server certificate ([`Options::server_cert`]).
    harness_trusts_any: bool,
    child: Option<Child>,
    token_server: Option<TokenServer>,
    // Last, so the directory outlives the process handle on drop.
    dir: tempfile::TempDir,
}

/// Everything that goes into one config file.
struct Spec<'a> {
    root: &'a Path,
    port: u16,
    delete: bool,
    readonly: bool,
    htpasswd: Option<&'a Path>,
    token: Option<(&'a str, &'a Path)>,
    tls: Option<(&'a Path, &'a Path)>,
    client_ca: Option<&'a Path>,
}

fn yaml_str(p: &Path) -> String {
    // A Rust debug string is a valid YAML double-quoted scalar for the
    // plain paths tempfile produces.
    format!("{:?}", p.to_str().expect("UTF-8 temp path"))
}

fn render_config(spec: &Spec<'_>) -> String {
    let mut y = String::new();
    y.push_str("version: 0.1\n");
    y.push_str("log:\n  level: warn\n  accesslog:\n    disabled: true\n");
    y.push_str("storage:\n");
    y.push_str(&format!(
        "  filesystem:\n    rootdirectory: {}\n",
        yaml_str(spec.root)
    ));
    y.push_str("  cache:\n    blobdescriptor: inmemory\n");
    y.push_str(&format!("  delete:\n    enabled: {}\n", spec.delete));
    y.push_str("  maintenance:\n    uploadpurging:\n      enabled: false\n");
    y.push_str(&format!(
        "    readonly:\n      enabled: {}\n",
        spec.readonly
    ));
    y.push_str("http:\n");
    y.push_str(&format!("  addr: 127.0.0.1:{}\n", spec.port));
    y.push_str(&format!("  secret: {HTTP_SECRET}\n"));
    y.push_str("  headers:\n    X-Content-Type-Options: [nosniff]\n");
    if let Some((cert, key)) = spec.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            yaml_str(cert),
            yaml_str(key)
        ));
        if let Some(ca) = spec.client_ca {
            y.push_str(&format!("    clientcas:\n      - {}\n", yaml_str(ca)));
        }
    }
    if let Some(path) = spec.htpasswd {
        y.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: {BASIC_REALM}\n    path: {}\n",
            yaml_str(path)
        ));
    }
    if let Some((realm, bundle)) = spec.token {
        y.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            yaml_str(bundle)
        ));
    }
    y
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn registry_binary() -> String {
    std::env::var("REGHARNESS_REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".to_string())
}

/// The last `max` bytes of a file, lossily decoded.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("<no log file>");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Where registries keep their storage: tmpfs when there is one, since Distribution syncs
/// every write and on a busy disk that stalls requests for seconds.
fn storage_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A reqwest client for a test registry: no proxy, bounded timeouts, and for
/// TLS only the generated CA as trust anchor.
pub fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    http_client_with_identity(ca_pem, None)
}

/// [`http_client`] presenting a client certificate (PEM certificate + key).
pub fn http_client_with_identity(
    ca_pem: Option<&str>,
    identity_pem: Option<&str>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM");
        b = b.tls_certs_only([cert]);
    }
    if let Some(pem) = identity_pem {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("client identity PEM"));
    }
    b.build().expect("build reqwest client")
}

enum Boot {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

const READY_ATTEMPTS: usize = 200;
const READY_INTERVAL: Duration = Duration::from_millis(50);

impl TestRegistry {
    /// Starts a seeded registry of `kind` with its default options.
    pub async fn start(kind: Kind) -> TestRegistry {
        Self::start_with(kind, Options::default()).await
    }

    pub async fn start_with(kind: Kind, opts: Options) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("regharness-")
            // On tmpfs when there is one: Distribution syncs every write, and on a busy
            // disk that stalls requests for seconds.
            .tempdir_in(if Path::new("/dev/shm").is_dir() {
                Path::new("/dev/shm")
            } else {
                std::env::temp_dir().leak()
            })
            .expect("create registry tempdir");
        let root = dir.path().join("storage");
        std::fs::create_dir_all(&root).expect("create storage root");
        let delete_enabled = opts
            .delete_enabled
            .unwrap_or_else(|| kind.default_delete_enabled());

        let mut htpasswd = None;
        let mut token_server = None;
        let mut tls_files = None;
        let mut ca_file = None;
        let mut ca_pem = None;
        let mut bundle = None;
        let mut client_ca = None;
        let mut client_cert = None;
        let mut identity_pem = None;
        let mut harness_trusts_any = false;
        match kind {
            Kind::Basic => {
                let hash = bcrypt::hash_with_result(BASIC_PASSWORD, 4)
                    .expect("bcrypt hash")
                    .format_for_version(bcrypt::Version::TwoY);
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{BASIC_USER}:{hash}\n")).expect("write htpasswd");
                htpasswd = Some(path);
            }
            Kind::Token => {
                let material = tls::signing_material();
                let path = dir.path().join("token-rootcertbundle.pem");
                std::fs::write(&path, &material.cert_pem).expect("write rootcertbundle");
                bundle = Some(path);
                let issuer = Arc::new(TokenIssuer::new(&material));
                if opts.token_tls {
                    let t = tls::server_tls();
                    let ca = dir.path().join("token-ca.pem");
                    std::fs::write(&ca, &t.ca_pem).expect("write token CA");
                    token_server = Some(TokenServer::start_with_tls(
                        issuer,
                        Some((&t.cert_pem, &t.key_pem)),
                    ));
                    ca_file = Some(ca);
                } else {
                    token_server = Some(TokenServer::start(issuer));
                }
            }
            Kind::Tls if opts.server_cert.is_some() => {
                let given = opts.server_cert.clone().expect("checked by the guard");
                ca_file = Some(given.cert.clone());
                tls_files = Some((given.cert, given.key));
                // A certificate from outside may be one rustls refuses (that is what such
                // tests are about), and seeding must not depend on the exporter's verdict.
                harness_trusts_any = true;
            }
            Kind::Tls => {
                let t = match opts.intermediate_not_after {
                    None => tls::server_tls(),
                    Some(date) => tls::server_tls_with_intermediate(date),
                };
                let cert = dir.path().join("server-cert.pem");
                let key = dir.path().join("server-key.pem");
                let ca = dir.path().join("ca.pem");
                std::fs::write(&cert, &t.cert_pem).expect("write server cert");
                std::fs::write(&key, &t.key_pem).expect("write server key");
                std::fs::write(&ca, &t.ca_pem).expect("write CA");
                tls_files = Some((cert, key));
                ca_file = Some(ca);
                ca_pem = Some(t.ca_pem);
                if opts.require_client_cert {
                    let c = tls::client_tls();
                    let cca = dir.path().join("client-ca.pem");
                    let ccert = dir.path().join("client-cert.pem");
                    let ckey = dir.path().join("client-key.pem");
                    std::fs::write(&cca, &c.ca_pem).expect("write client CA");
                    std::fs::write(&ccert, &c.cert_pem).expect("write client cert");
                    std::fs::write(&ckey, &c.key_pem).expect("write client key");
                    identity_pem = Some(format!("{}\n{}", c.cert_pem, c.key_pem));
                    client_ca = Some(cca);
                    client_cert = Some((ccert, ckey));
                }
            }
            Kind::Open | Kind::ReadOnly => {}
        }
        let token_url = token_server.as_ref().map(|t| t.realm.clone());

        let mut reg = TestRegistry {
            url: String::new(),
            kind,
            root: root.clone(),
            ca_file,
            token_url: token_url.clone(),
            delete_enabled,
            config_file: dir.path().join("config.yml"),
            stderr_file: dir.path().join("registry.stderr.log"),
            stdout_file: dir.path().join("registry.stdout.log"),
            port: 0,
            ca_pem,
            client_cert,
            identity_pem,
            harness_trusts_any,
            child: None,
            token_server,
            dir,
        };

        let token = token_url.as_deref().zip(bundle.as_deref());
        let tls = tls_files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let spec = |port: u16, readonly: bool| Spec {
            root: &root,
            port,
            delete: delete_enabled,
            readonly,
            htpasswd: htpasswd.as_deref(),
            token,
            tls,
            client_ca: client_ca.as_deref(),
        };

        if kind == Kind::ReadOnly {
            // Seed while writable, then restart read-only on the same root.
            if opts.seed {
                reg.boot(|port| render_config(&spec(port, false))).await;
                reg.seed().await;
                reg.kill();
            }
            reg.boot(|port| render_config(&spec(port, true))).await;
        } else {
            reg.boot(|port| render_config(&spec(port, false))).await;
            if opts.seed {
                reg.seed().await;
            }
        }
        reg
    }

    /// Writes the config for a fresh port, spawns the registry and waits for
    /// `GET /v2/` to answer. Retries with another port if the one picked was
    /// taken in the meantime.
    async fn boot(&mut self, config_for_port: impl Fn(u16) -> String) {
        let scheme = if self.kind == Kind::Tls {
            "https"
        } else {
            "http"
        };
        let client = self.client();
        for attempt in 1..=3 {
            let port = free_port();
            std::fs::write(&self.config_file, config_for_port(port)).expect("write config");
            self.port = port;
            self.url = format!("{scheme}://127.0.0.1:{port}");
            self.child = Some(self.spawn());
            match self.wait_ready(&client).await {
                Boot::Ready => return,
                Boot::Exited(status) => {
                    self.child = None;
                    let log = tail(&self.stderr_file, 4000);
                    if attempt < 3 && log.contains("address already in use") {
                        continue;
                    }
                    panic!(
                        "docker-registry ({:?}) exited with {status} before becoming ready on {}.\nconfig {}:\n{}\nstderr tail:\n{log}\nstdout tail:\n{}",
                        self.kind,
                        self.url,
                        self.config_file.display(),
                        std::fs::read_to_string(&self.config_file).unwrap_or_default(),
                        tail(&self.stdout_file, 2000),
                    );
                }
                Boot::TimedOut => {
                    self.kill();
                    panic!(
                        "docker-registry ({:?}) did not answer GET {}/v2/ within {:?}.\nconfig {}:\n{}\nstderr tail:\n{}\nstdout tail:\n{}",
                        self.kind,
                        self.url,
                        READY_INTERVAL * READY_ATTEMPTS as u32,
                        self.config_file.display(),
                        std::fs::read_to_string(&self.config_file).unwrap_or_default(),
                        tail(&self.stderr_file, 4000),
                        tail(&self.stdout_file, 2000),
                    );
                }
            }
        }
        unreachable!("boot loop always returns or panics");
    }

    fn spawn(&self) -> Child {
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open registry log file")
        };
        let bin = registry_binary();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg(&self.config_file)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open(&self.stdout_file))
            .stderr(open(&self.stderr_file));
        // Environment variables override the config file in Distribution.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{bin}` not found: the integration tests need CNCF Distribution. \
                 Install it with `apt-get install docker-registry` (scripts/test does this), \
                 or point REGHARNESS_REGISTRY_BIN at a registry binary."
            ),
            Err(e) => panic!(
                "failed to spawn `{bin} serve {}`: {e}",
                self.config_file.display()
            ),
        }
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) -> Boot {
        let probe = format!("{}/v2/", self.url);
        for _ in 0..READY_ATTEMPTS {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Boot::Exited(status);
            }
            // Any HTTP answer (200, or 401 with auth) means it is serving.
            if client
                .get(&probe)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok()
            {
                return Boot::Ready;
            }
            tokio::time::sleep(READY_INTERVAL).await;
        }
        Boot::TimedOut
    }

    /// Kills the registry process (e.g. to test "registry unreachable").
    /// The storage root is kept until drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The temporary directory holding root, config, logs and key material.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PEM of the CA (Tls only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A fresh reqwest client suited to this registry (no proxy; trusts the
    /// generated CA for Tls).
    pub fn client(&self) -> reqwest::Client {
        if self.harness_trusts_any {
            return reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .tls_danger_accept_invalid_certs(true)
                .build()
                .expect("build reqwest client");
        }
        http_client_with_identity(self.ca_pem.as_deref(), self.identity_pem.as_deref())
    }

    /// Last few KB of the registry's stderr.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_file, 4000)
    }

    /// The token server (Token only).
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    fn expect_token_server(&self) -> &TokenServer {
        self.token_server
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} registry has no token server", self.kind))
    }

    /// HTTP requests the token server has served (Token only; 0 otherwise).
    /// Tokens minted by the harness itself (seeding, [`Self::mint_token`])
    /// are not counted.
    pub fn token_requests(&self) -> usize {
        self.token_server.as_ref().map_or(0, TokenServer::requests)
    }

    pub fn reset_token_requests(&self) {
        if let Some(t) = &self.token_server {
            t.reset_requests();
        }
    }

    /// Stops the token server; when this returns its port refuses
    /// connections. The registry keeps running and keeps accepting tokens
    /// issued before. Idempotent; a no-op for other kinds.
    pub fn stop_token_server(&self) {
        if let Some(t) = &self.token_server {
            t.stop();
        }
    }

    /// A token signed by this registry's token issuer for `user` (None =
    /// anonymous) with the policy applied to `scopes`, without any HTTP
    /// request (not counted in [`Self::token_requests`]).
    pub fn mint_token(&self, user: Option<&str>, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.expect_token_server().issuer.issue(user, &scopes)
    }

    /// The token issuer (Token only), e.g. to sign custom or expired tokens.
    pub fn token_issuer(&self) -> &TokenIssuer {
        &self.expect_token_server().issuer
    }

    /// An `Authorization` header value with full rights where auth is on:
    /// alice's Basic credentials, or a bearer token for bob on `scopes`
    /// (minted locally). None for registries without auth.
    pub fn admin_authorization(&self, scopes: &[&str]) -> Option<String> {
        match self.kind {
            Kind::Basic => Some(basic_authorization(BASIC_USER, BASIC_PASSWORD)),
            Kind::Token => Some(format!(
                "Bearer {}",
                self.mint_token(Some(TOKEN_ADMIN_USER), scopes)
            )),
            Kind::Open | Kind::ReadOnly | Kind::Tls => None,
        }
    }

    /// Pushes a blob into `repo` (POST uploads, then PUT ?digest=) with admin
    /// rights; returns its digest. Panics unless the registry answers 202/201.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let client = self.client();
        let scope = format!("repository:{repo}:pull,push");
        let auth = self.admin_authorization(&[&scope]);
        push_blob_with(&client, &self.url, repo, data, auth.as_deref()).await
    }

    /// Pushes a manifest as `repo:reference`; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let client = self.client();
        let scope = format!("repository:{repo}:pull,push");
        let auth = self.admin_authorization(&[&scope]);
        push_manifest_with(
            &client,
            &self.url,
            repo,
            reference,
            media_type,
            body,
            auth.as_deref(),
        )
        .await
    }

    /// Pushes `library/alpine:latest` (config, layer, manifest).
    async fn seed(&self) {
        let img = seed::image();
        let config = self.push_blob(SEED_REPO, &img.config).await;
        assert_eq!(config, seed_config_digest());
        let layer = self.push_blob(SEED_REPO, &img.layer).await;
        assert_eq!(layer, seed_layer_digest());
        let manifest = self
            .push_manifest(SEED_REPO, SEED_TAG, OCI_MANIFEST_MEDIA_TYPE, &img.manifest)
            .await;
        assert_eq!(manifest, seed_manifest_digest());
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
        if let Some(t) = self.token_server.take() {
            t.stop();
        }
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

async fn describe(resp: reqwest::Response) -> String {
    let status = resp.status();
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap_or_default();
    format!("{status} {headers} {body}")
}

/// POST /v2/<repo>/blobs/uploads/ then PUT <Location>&digest=; returns the digest.
pub async fn push_blob_with(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    authorization: Option<&str>,
) -> String {
    let digest = sha256_digest(data);
    let mut post = client.post(format!("{base}/v2/{repo}/blobs/uploads/"));
    if let Some(a) = authorization {
        post = post.header("Authorization", a);
    }
    let resp = post.send().await.expect("POST blob upload");
    if resp.status() != reqwest::StatusCode::ACCEPTED {
        panic!(
            "POST {base}/v2/{repo}/blobs/uploads/: expected 202, got {}",
            describe(resp).await
        );
    }
    let location = resp
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .expect("upload Location header")
        .to_string();
    let mut url = absolute(base, &location);
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(&digest.replace(':', "%3A"));
    let mut put = client
        .put(&url)
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec());
    if let Some(a) = authorization {
        put = put.header("Authorization", a);
    }
    let resp = put.send().await.expect("PUT blob");
    if resp.status() != reqwest::StatusCode::CREATED {
        panic!("PUT {url}: expected 201, got {}", describe(resp).await);
    }
    digest
}

/// PUT /v2/<repo>/manifests/<reference>; returns the manifest digest.
pub async fn push_manifest_with(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
    authorization: Option<&str>,
) -> String {
    let url = format!("{base}/v2/{repo}/manifests/{reference}");
    let mut put = client
        .put(&url)
        .header("Content-Type", media_type)
        .body(body.to_vec());
    if let Some(a) = authorization {
        put = put.header("Authorization", a);
    }
    let resp = put.send().await.expect("PUT manifest");
    if resp.status() != reqwest::StatusCode::CREATED {
        panic!("PUT {url}: expected 201, got {}", describe(resp).await);
    }
    let digest = sha256_digest(body);
    let returned = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        returned, digest,
        "Docker-Content-Digest of the pushed manifest"
    );
    digest
}
