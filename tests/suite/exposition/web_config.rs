//! The web config file (`--web.config.file`, exporter-toolkit keys) against the real binary:
//! basic auth (which paths it protects), TLS, client certificates, extra headers, a rotated
//! certificate picked up without restart, and the errors of invalid files.
//!
//! Certificates are generated with rcgen and bcrypt hashes with cost 4 at test time. The
//! registry (`OCI__RegistryUrl=http://127.0.0.1:1`) is never reachable: only the exporter's
//! own HTTP surface is under test. Where `curl` is installed it is used too.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

const BIN: &str = env!("CARGO_BIN_EXE_oci-registry-exporter");
const REGISTRY: &str = "http://127.0.0.1:1";
const REALM: &str = "Basic realm=\"oci-registry-exporter\"";

// ---------------------------------------------------------------------------------------
// Certificates

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for 127.0.0.1/localhost: (cert PEM, key PEM).
fn server_cert(ca: &Ca, cn: &str, serial: u64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name = dn(cn);
    params.serial_number = Some(SerialNumber::from(serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A client certificate: (cert PEM, key PEM).
fn client_cert(ca: &Ca, cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["prometheus.example.com".to_string()]).unwrap();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

// ---------------------------------------------------------------------------------------
// The exporter

/// The binary, listening on 127.0.0.1 with a web config; killed on drop.
struct Exporter {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Exporter {
    fn start(web_config: &Path) -> Exporter {
        let port = common::free_port();
        let log = web_config.with_extension("log");
        let child = Command::new(BIN)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .arg("--web.config.file")
            .arg(web_config)
            .env("OCI__RegistryUrl", REGISTRY)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut exporter = Exporter { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("exporter exited with {status}:\n{}", exporter.logs());
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not listen:\n{}",
                exporter.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        exporter
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// A fresh client (so a fresh connection) trusting `ca_pem`, optionally with an identity.
fn https_client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    user: Option<(&str, &str)>,
) -> reqwest::Result<reqwest::Response> {
    let mut req = client.get(url);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await
}

async fn status(client: &reqwest::Client, url: &str, user: Option<(&str, &str)>) -> u16 {
    get(client, url, user)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"))
        .status()
        .as_u16()
}

/// The common name of the certificate the server presented.
fn peer_cn(resp: &reqwest::Response) -> String {
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap()
        .to_string()
}

fn have_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `curl -sS` with `args`: (exit success, HTTP code, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn users_yaml(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).unwrap();
    format!("basic_auth_users:\n  {user}: '{hash}'\n")
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn basic_auth_protects_everything_but_health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "web.yml",
        &format!(
            "{}http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n",
            users_yaml("alice", "wonderland")
        ),
    );
    let ex = Exporter::start(&config);
    let c = http_client();
    let alice = Some(("alice", "wonderland"));

    // No credentials: 401 with the challenge, and the extra headers there too.
    let resp = get(&c, &ex.url("http", "/metrics"), None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], REALM);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    for path in [
        "/metrics",
        "/probe?target=default",
        "/probe?target=default&debug=true",
        "/result?id=1",
        "/",
        "/nowhere",
    ] {
        assert_eq!(status(&c, &ex.url("http", path), None).await, 401, "{path}");
    }
    let reload = c.post(ex.url("http", "/-/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 401, "/-/reload");

    // Wrong password, unknown user.
    let url = ex.url("http", "/metrics");
    assert_eq!(status(&c, &url, Some(("alice", "wrong"))).await, 401);
    assert_eq!(status(&c, &url, Some(("bob", "wonderland"))).await, 401);

    // The right credentials (twice: the second is answered from the cache).
    for _ in 0..2 {
        let resp = get(&c, &url, alice).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        assert_eq!(resp.headers()["x-frame-options"], "deny");
        assert!(resp.text().await.unwrap().contains("oci_registry"));
    }
    let probe = get(&c, &ex.url("http", "/probe?target=default"), alice)
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    assert!(probe.text().await.unwrap().contains("registry=\"default\""));
    assert_eq!(status(&c, &ex.url("http", "/"), alice).await, 200);

    // Kubernetes probes need no credentials.
    let healthy = get(&c, &ex.url("http", "/-/healthy"), None).await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.headers()["x-frame-options"], "deny");
    let ready = status(&c, &ex.url("http", "/-/ready"), None).await;
    assert!(ready == 200 || ready == 503, "/-/ready: {ready}");

    if have_curl() {
        let (_, code, err) = curl(&[&url]);
        assert_eq!(code, "401", "curl without credentials: {err}");
        let (_, code, err) = curl(&["-u", "alice:wrong", &url]);
        assert_eq!(code, "401", "curl with a wrong password: {err}");
        let (ok, code, err) = curl(&["-u", "alice:wonderland", &url]);
        assert!(ok && code == "200", "curl with credentials: {code} {err}");
    }

    let logs = ex.logs();
    assert!(
        !logs.contains("wonderland"),
        "the password is never logged:\n{logs}"
    );
}

#[tokio::test]
async fn tls_serves_https_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("web test CA");
    let (cert, key) = server_cert(&ca, "exporter", 1);
    write(dir.path(), "server.crt", &cert);
    write(dir.path(), "server.key", &key);
    let ca_file = write(dir.path(), "ca.crt", &ca.pem);
    // Relative paths: relative to the web config file's directory, not the working one.
    let config = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n{}",
            users_yaml("alice", "wonderland")
        ),
    );
    let ex = Exporter::start(&config);
    let https = https_client(&ca.pem, None);
    let url = ex.url("https", "/metrics");
    let alice = Some(("alice", "wonderland"));

    let resp = get(&https, &url, alice).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cn(&resp), "exporter");
    assert_eq!(status(&https, &url, None).await, 401);
    assert_eq!(
        status(&https, &ex.url("https", "/-/healthy"), None).await,
        200
    );

    // Plain HTTP to the TLS port fails, and the server keeps serving.
    let plain = get(&http_client(), &ex.url("http", "/-/healthy"), None).await;
    assert!(plain.is_err(), "plain HTTP to the TLS port: {plain:?}");
    // HTTP/2 is offered (http_server_config.http2 defaults to true).
    let resp = get(&https_client(&ca.pem, None), &url, alice)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    if have_curl() {
        let ca_arg = ca_file.to_str().unwrap();
        let (ok, code, err) = curl(&["--cacert", ca_arg, "-u", "alice:wonderland", &url]);
        assert!(ok && code == "200", "curl over TLS: {code} {err}");
        let (_, code, err) = curl(&["--cacert", ca_arg, &url]);
        assert_eq!(code, "401", "curl over TLS without credentials: {err}");
        let (ok, _, _) = curl(&[&ex.url("http", "/-/healthy")]);
        assert!(!ok, "curl with plain HTTP to the TLS port succeeded");
    }
}

#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("web test CA");
    let client_ca = ca("web test client CA");
    let other_ca = ca("someone else's CA");
    let (cert, key) = server_cert(&server_ca, "exporter", 1);
    write(dir.path(), "server.crt", &cert);
    write(dir.path(), "server.key", &key);
    write(dir.path(), "client-ca.crt", &client_ca.pem);
    let config = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
    );
    let ex = Exporter::start(&config);
    let url = ex.url("https", "/metrics");
    let (ccert, ckey) = client_cert(&client_ca, "prometheus");
    let (bad_cert, bad_key) = client_cert(&other_ca, "intruder");

    let without = get(&https_client(&server_ca.pem, None), &url, None).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let wrong = get(
        &https_client(&server_ca.pem, Some((&bad_cert, &bad_key))),
        &url,
        None,
    )
    .await;
    assert!(
        wrong.is_err(),
        "a client certificate from another CA: {wrong:?}"
    );
    let with = get(
        &https_client(&server_ca.pem, Some((&ccert, &ckey))),
        &url,
        None,
    )
    .await
    .unwrap();
    assert_eq!(with.status(), 200);

    if have_curl() {
        let ca_file = write(dir.path(), "ca.crt", &server_ca.pem);
        let cert_file = write(dir.path(), "client.crt", &ccert);
        let key_file = write(dir.path(), "client.key", &ckey);
        let ca_arg = ca_file.to_str().unwrap();
        let (ok, _, _) = curl(&["--cacert", ca_arg, &url]);
        assert!(!ok, "curl without a client certificate succeeded");
        let (ok, code, err) = curl(&[
            "--cacert",
            ca_arg,
            "--cert",
            cert_file.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
            &url,
        ]);
        assert!(
            ok && code == "200",
            "curl with a client certificate: {code} {err}"
        );
    }

    // client_allowed_sans, changed in place: the edited web config applies to the next
    // connection, and the certificate's SAN (prometheus.example.com) must be listed.
    let with_sans = |sans: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n  client_allowed_sans: [{sans}]\n"
        )
    };
    std::fs::write(&config, with_sans("grafana.example.com")).unwrap();
    let refused = get(
        &https_client(&server_ca.pem, Some((&ccert, &ckey))),
        &url,
        None,
    )
    .await;
    assert!(
        refused.is_err(),
        "a SAN not in client_allowed_sans: {refused:?}"
    );
    std::fs::write(
        &config,
        with_sans("grafana.example.com, prometheus.example.com"),
    )
    .unwrap();
    let allowed = get(
        &https_client(&server_ca.pem, Some((&ccert, &ckey))),
        &url,
        None,
    )
    .await
    .unwrap();
    assert_eq!(allowed.status(), 200);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("web test CA");
    let (cert, key) = server_cert(&ca, "exporter-one", 1);
    let cert_file = write(dir.path(), "server.crt", &cert);
    let key_file = write(dir.path(), "server.key", &key);
    let config = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  http2: false\n",
    );
    let ex = Exporter::start(&config);
    let url = ex.url("https", "/-/healthy");
    let first = get(&https_client(&ca.pem, None), &url, None).await.unwrap();
    assert_eq!(peer_cn(&first), "exporter-one");
    assert_eq!(first.version(), reqwest::Version::HTTP_11, "http2: false");

    // Rotate in place: same paths, a new key and a certificate with another CN and serial.
    let (cert, key) = server_cert(&ca, "exporter-two", 2);
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let second = get(&https_client(&ca.pem, None), &url, None).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        peer_cn(&second),
        "exporter-two",
        "the new certificate is served"
    );

    if have_curl() {
        let ca_file = write(dir.path(), "ca.crt", &ca.pem);
        let (ok, _, err) = curl(&["-v", "--cacert", ca_file.to_str().unwrap(), &url]);
        assert!(ok, "curl: {err}");
        assert!(
            err.contains("CN=exporter-two"),
            "curl -v sees the new certificate:\n{err}"
        );
    }

    // A broken rotation: the previous good certificate keeps serving, with a warning.
    std::fs::write(&cert_file, "not a certificate\n").unwrap();
    let third = get(&https_client(&ca.pem, None), &url, None).await.unwrap();
    assert_eq!(third.status(), 200);
    assert_eq!(peer_cn(&third), "exporter-two");
    let logs = ex.logs();
    assert!(
        logs.contains("keeping the previous web config")
            && logs.contains("tls_server_config.cert_file"),
        "a warning names the problem:\n{logs}"
    );

    // Fixed: picked up again.
    let (cert, key) = server_cert(&ca, "exporter-three", 3);
    std::fs::write(&key_file, &key).unwrap();
    std::fs::write(&cert_file, &cert).unwrap();
    let fourth = get(&https_client(&ca.pem, None), &url, None).await.unwrap();
    assert_eq!(peer_cn(&fourth), "exporter-three");
}

/// `--check-config --web.config.file PATH`: (exit code, stdout, stderr).
fn check_config(web_config: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["--check-config", "--web.config.file"])
        .arg(web_config)
        .env("OCI__RegistryUrl", REGISTRY)
        .output()
        .unwrap();
    common::exit_and_output(out)
}

#[test]
fn invalid_web_configs_are_named_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("web test CA");
    let (cert, _) = server_cert(&ca, "exporter", 1);
    write(dir.path(), "server.crt", &cert);
    let cases = [
        (
            "unknown-key.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_flie: server.key\n".to_string(),
            "tls_server_config.key_flie: unknown key; remove it or use one of the keys allowed in tls_server_config: cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, cipher_suites, curve_preferences, min_version, max_version, prefer_server_cipher_suites, client_allowed_sans",
        ),
        (
            "missing-key.yml",
            "tls_server_config:\n  cert_file: server.crt\n".to_string(),
            "tls_server_config.key_file: missing: TLS is configured but there is no private key; set key_file to the server certificate's private key (PEM), or key to the PEM itself",
        ),
        (
            "bad-hash.yml",
            "basic_auth_users:\n  alice: wonderland\n".to_string(),
            "basic_auth_users.alice: is not a bcrypt hash (the value must be a hash such as $2y$10$..., never the password itself); generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` and paste it",
        ),
        (
            "missing-cert-file.yml",
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n".to_string(),
            &format!(
                "tls_server_config.cert_file: cannot read {} (no such file); check the path (relative paths are relative to the web config file's directory) and its permissions",
                dir.path().join("nowhere.crt").display()
            ),
        ),
    ];
    for (name, text, expected) in &cases {
        let path = write(dir.path(), name, text);
        let (code, _stdout, stderr) = check_config(&path);
        assert_eq!(code, 1, "{name}: {stderr}");
        let line = format!("invalid web config: {}: {expected}", path.display());
        assert!(
            stderr.lines().any(|l| l == line),
            "{name}: expected the line\n{line}\nin stderr:\n{stderr}"
        );
        assert!(
            !stderr.contains("wonderland"),
            "{name}: a password is never echoed"
        );

        // At startup it is an error too, before anything listens.
        let out = Command::new(BIN)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", common::free_port()),
            ])
            .arg("--web.config.file")
            .arg(&path)
            .env("OCI__RegistryUrl", REGISTRY)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: the exporter started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "invalid web config: {}: {expected}",
                path.display()
            )),
            "{name}: {stderr}"
        );
    }

    // A valid one is reported as such.
    let (_, key) = server_cert(&ca, "exporter", 1);
    write(dir.path(), "server.key", &key);
    let (cert, key) = server_cert(&ca, "exporter", 1);
    write(dir.path(), "server.crt", &cert);
    write(dir.path(), "server.key", &key);
    let path = write(
        dir.path(),
        "valid.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
            users_yaml("alice", "wonderland")
        ),
    );
    let (code, stdout, stderr) = check_config(&path);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("web config is valid: TLS (TLS1.2-1.3, client certificates: NoClientCert), basic auth (1 user), 0 extra headers"),
        "{stdout}"
    );
}

/// What one request cost: its wall time, and the CPU time the exporter spent meanwhile.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall: Duration,
    cpu: Duration,
}

/// The CPU time the exporter's threads have run so far, the sum of their schedstat run
/// times, or utime + stime where the kernel keeps no schedstat (read with `procfs`, as the
/// exporter reads its own). A CPU time compares what two requests cost the exporter whatever
/// else the machine runs meanwhile (a wall time doubles while `cargo check` shares the two
/// cores). The verification threads stay for reuse 10 s, so none exits between two
/// readings here.
fn cpu_time(pid: u32) -> Duration {
    let process = procfs::process::Process::new(pid as i32).expect("the exporter runs");
    let ns: Option<u64> = process
        .tasks()
        .expect("the exporter runs")
        .flatten()
        .map(|t| t.schedstat().ok().map(|s| s.sum_exec_runtime))
        .sum();
    if let Some(ns) = ns {
        return Duration::from_nanos(ns);
    }
    let stat = process.stat().expect("the exporter runs");
    Duration::from_secs_f64((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// One GET with `user` on a new connection, and what it cost.
async fn timed(url: &str, pid: u32, user: (&str, &str)) -> (u16, Cost) {
    let client = http_client();
    let cpu = cpu_time(pid);
    let started = Instant::now();
    let code = status(&client, url, Some(user)).await;
    let wall = started.elapsed();
    (
        code,
        Cost {
            wall,
            cpu: cpu_time(pid).saturating_sub(cpu),
        },
    )
}

/// The median costs (wall and CPU, each its own median) of `n` GETs with each of two
/// credentials, each on a new connection, sent alternately: a change of the machine's load
/// then shifts both alike instead of reading as a difference between them.
async fn median_costs(
    url: &str,
    pid: u32,
    a: (&str, &str),
    b: (&str, &str),
    n: usize,
) -> (Cost, Cost) {
    let mut costs = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (user, into) in [(a, &mut costs.0), (b, &mut costs.1)] {
            let (code, cost) = timed(url, pid, user).await;
            assert!(code == 200 || code == 401, "{code}");
            into.push(cost);
        }
    }
    let median = |costs: &[Cost]| {
        let mut walls: Vec<Duration> = costs.iter().map(|c| c.wall).collect();
        let mut cpus: Vec<Duration> = costs.iter().map(|c| c.cpu).collect();
        walls.sort();
        cpus.sort();
        Cost {
            wall: walls[n / 2],
            cpu: cpus[n / 2],
        }
    };
    (median(&costs.0), median(&costs.1))
}

/// A flood of wrong passwords must not queue a correct login behind it (it used to: bcrypt ran
/// one at a time, first come first served, so 64 flooding threads delayed a login by ~4 s),
/// and an unknown user must cost what a wrong password costs, the first time too.
#[tokio::test]
async fn a_wrong_password_flood_does_not_delay_a_correct_login() {
    let _alone = common::TIMED.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // Cost 8: one verification is tens of milliseconds (hundreds in a debug build), long
    // enough to tell queueing from noise, short enough for a 32-client flood.
    let hash = bcrypt::hash("right", 8).unwrap();
    let config = write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    );
    let exporter = Exporter::start(&config);
    let url = exporter.url("http", "/metrics");

    // Before anything else: the first unknown user costs one verification, not a hash too.
    // Costs are compared in the exporter's CPU time: a lone wall time is at the mercy of
    // whatever else the machine runs (CI failed this on wall times while a `cargo check`
    // shared the cores).
    let pid = exporter.child.id();
    let (code, first_unknown) = timed(&url, pid, ("mallory", "x")).await;
    assert_eq!(code, 401);
    let (wrong, unknown) =
        median_costs(&url, pid, ("alice", "wrong"), ("nobody", "wrong"), 9).await;
    println!(
        "one verification: wrong password {wrong:?}, unknown user {unknown:?}, first unknown user {first_unknown:?}"
    );
    assert!(
        first_unknown.cpu < wrong.cpu.mul_f64(1.7) && unknown.cpu < wrong.cpu.mul_f64(1.5),
        "unknown users must cost the exporter what wrong passwords cost: first unknown {first_unknown:?}, unknown {unknown:?}, wrong {wrong:?}"
    );
    let wrong = wrong.wall;

    // 32 clients sending wrong passwords as fast as answers come, for at most 6 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let url = url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = http_client();
                let deadline = Instant::now() + Duration::from_secs(6);
                let password = format!("wrong-{i}");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let _ = get(&client, &url, Some(("alice", &password))).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The correct login comes from another address, as Prometheus would.
    let prometheus = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let code = status(&prometheus, &url, Some(("alice", "right"))).await;
    let login = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    println!(
        "correct login during a 32-client wrong-password flood: {login:?} ({:.1} verifications)",
        login.as_secs_f64() / wrong.as_secs_f64()
    );
    assert_eq!(code, 200);
    assert!(
        login < wrong * 8,
        "a correct login took {login:?} during the flood, {:.1} times one verification ({wrong:?})",
        login.as_secs_f64() / wrong.as_secs_f64()
    );
}

/// One slow sender, again and again until `stop`: it connects, then sends nothing (`trickle`
/// false: the TLS handshake never starts) or the first bytes of a TLS ClientHello one every
/// half second, and when the server closes it, connects again. Returns how often it was
/// closed.
async fn slow_sender(port: u16, trickle: bool, stop: tokio_util::sync::CancellationToken) -> u32 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A TLS record header and the start of a ClientHello.
    const HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut closed = 0;
    while !stop.is_cancelled() {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut sent = 0;
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return closed,
                read = s.read(&mut buf) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        closed += 1;
                        break;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(500)), if trickle => {
                    if sent < HELLO.len() {
                        if s.write_all(&HELLO[sent..=sent]).await.is_err() {
                            closed += 1;
                            break;
                        }
                        sent += 1;
                    }
                }
            }
        }
    }
    closed
}

/// Slowloris with TLS and basic auth (issue 24 §2): 600 connections that never complete
/// their TLS handshake (half send nothing, half a ClientHello a byte at a time), reopened as
/// soon as they are closed, leave the authenticated scrape and `/-/healthy` answering on
/// fresh connections: a connection that completed no request within the header-read
/// timeout is closed, and a new one takes the slot of the oldest incomplete one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sender_flood_leaves_the_authenticated_scrape_answering() {
    let _alone = common::TIMED.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("web test CA");
    let (cert, key) = server_cert(&ca, "exporter", 1);
    write(dir.path(), "server.crt", &cert);
    write(dir.path(), "server.key", &key);
    let config = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
            users_yaml("alice", "wonderland")
        ),
    );
    let ex = Exporter::start(&config);
    let alice = Some(("alice", "wonderland"));
    assert_eq!(
        status(
            &https_client(&ca.pem, None),
            &ex.url("https", "/metrics"),
            alice
        )
        .await,
        200
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let flood: Vec<_> = (0..600)
        .map(|i| tokio::spawn(slow_sender(ex.port, i % 2 == 1, stop.clone())))
        .collect();
    // Past the first connections' admission; then 15 s of tries, every half second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut scrapes, mut healthy, mut failures) = (0, 0, Vec::new());
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        for (path, user) in [("/metrics", alice), ("/-/healthy", None)] {
            let client = https_client(&ca.pem, None);
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                get(&client, &ex.url("https", path), user),
            )
            .await;
            match answer {
                Ok(Ok(resp)) if resp.status() == 200 => {
                    if path == "/metrics" {
                        scrapes += 1;
                    } else {
                        healthy += 1;
                    }
                }
                other => failures.push(format!(
                    "{path} after {:?}: {:?}",
                    started.elapsed(),
                    other.map(|r| r.map(|r| r.status()))
                )),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    let mut closed = 0;
    for task in flood {
        closed += task.await.unwrap();
    }
    println!(
        "during the flood: {scrapes} authenticated scrapes and {healthy} health checks answered, {} failed; the flood's connections were closed {closed} times",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(scrapes >= 10 && healthy >= 10);
    assert!(
        closed >= 600,
        "the slow senders' connections are closed (header-read timeout or eviction)"
    );
}
