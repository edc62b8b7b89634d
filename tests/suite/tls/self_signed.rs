//! TLS against real Distribution registries served with certificates made the way people
//! make them, and the words the exporter uses when TLS fails.
//!
//! Docker's registry documentation ("Test an insecure registry", section "Use self-signed
//! certificates", docs.docker.com/registry/insecure/) makes the registry's certificate with
//! `openssl req -x509 -newkey rsa:4096 -nodes -sha256 ... -addext "subjectAltName = ..."`.
//! OpenSSL marks such a certificate `CA:TRUE`. With it in their trust file, Go clients, curl
//! and skopeo reach the registry; webpki refuses a CA certificate as the server's own
//! (`CaUsedAsEndEntity`, rustls/webpki#205, seanmonstar/reqwest#2041). The exporter accepts
//! it when that exact certificate is in `ca_file`, and still checks its names and dates.

use crate::common;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{config_from_toml, run_one};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};
use support::{Kind, Options, ServerCert, TestRegistry};

fn registry_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n")
}

fn ca_file_line(path: &Path) -> String {
    format!("ca_file = \"{}\"", path.display())
}

/// Docker's recipe, run with the `openssl` binary: a self-signed RSA certificate for
/// `/CN=localhost` with the given subjectAltName, written as `<stem>.crt` and `<stem>.key`.
fn openssl_req_x509(dir: &Path, stem: &str, san: &str) -> ServerCert {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-sha256"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "365", "-subj", "/CN=localhost", "-addext"])
        .arg(format!("subjectAltName = {san}"))
        .output()
        .expect("run openssl (the Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req -x509 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("run openssl x509");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:TRUE"),
        "the recipe is meant to give a CA certificate, as OpenSSL's defaults do:\n{text}"
    );
    ServerCert { cert, key }
}

async fn registry_with(cert: &ServerCert) -> TestRegistry {
    TestRegistry::start_with(
        Kind::Tls,
        Options {
            server_cert: Some(cert.clone()),
            ..Default::default()
        },
    )
    .await
}

/// `skopeo inspect` with `cert_dir` as its `--cert-dir`; None when skopeo is not installed
/// (scripts/test installs it with the registry).
fn skopeo_inspect(reg: &TestRegistry, cert_dir: &Path) -> Option<std::process::Output> {
    let image = format!(
        "docker://{}/{}:{}",
        reg.host(),
        support::SEED_REPO,
        support::SEED_TAG
    );
    match Command::new("skopeo")
        .arg("inspect")
        .arg("--cert-dir")
        .arg(cert_dir)
        .arg(&image)
        // Only 127.0.0.1 is contacted: no proxy, no credentials from the environment.
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skopeo is not installed: the comparison with skopeo is left out");
            None
        }
        Err(e) => panic!("run skopeo: {e}"),
    }
}

/// A `--cert-dir` holding `cert` as a CA (containers/image reads `*.crt` as CAs).
fn cert_dir_with(dir: &Path, cert: &Path) -> PathBuf {
    let d = dir.join("certs.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(cert, d.join("ca.crt")).unwrap();
    d
}

// Docker's "Use self-signed certificates" recipe (docs.docker.com/registry/insecure/) gives a
// CA:TRUE certificate that webpki refuses as the server's own (rustls/webpki#205); listed in
// ca_file, it is trusted as Go clients, curl and skopeo trust it.
#[tokio::test]
async fn self_signed_certificate_from_dockers_recipe_is_trusted_when_it_is_in_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_req_x509(dir.path(), "domain", "IP:127.0.0.1,DNS:localhost");
    let reg = registry_with(&cert).await;
    let config = config_from_toml(&registry_toml(
        "selfsigned",
        &reg.url,
        &ca_file_line(&cert.cert),
    ));
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&config, kind).await;
        assert_eq!(
            (r.status, r.reason),
            (Status::Pass, Reason::Ok),
            "{kind:?}: {}",
            r.message
        );
    }
    // The expiry of an accepted self-signed certificate is recorded like any other.
    let r = run_one(&config, CheckKind::Registry).await;
    let expiry = r
        .facts
        .tls_certificate_expiry
        .expect("the certificate's expiry is recorded");
    let days = expiry
        .duration_since(SystemTime::now())
        .expect("expires in the future")
        .as_secs()
        / 86_400;
    assert!((363..=365).contains(&days), "-days 365, got {days} days");

    if let Some(out) = skopeo_inspect(&reg, &cert_dir_with(dir.path(), &cert.cert)) {
        assert!(
            out.status.success(),
            "skopeo trusts what the exporter trusts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// Same recipe (docs.docker.com/registry/insecure/), but the subjectAltName names another host:
// listing the certificate in ca_file does not waive the name check (rustls/webpki#205 asks
// for trust, not for skipping verification).
#[tokio::test]
async fn self_signed_certificate_in_ca_file_that_does_not_name_the_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_req_x509(dir.path(), "other", "DNS:registry.example.com");
    let reg = registry_with(&cert).await;
    let config = config_from_toml(&registry_toml(
        "wrongname",
        &reg.url,
        &ca_file_line(&cert.cert),
    ));
    let r = run_one(&config, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Tls, None),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("does not name 127.0.0.1"),
        "{}",
        r.message
    );
    if let Some(out) = skopeo_inspect(&reg, &cert_dir_with(dir.path(), &cert.cert)) {
        assert!(
            !out.status.success(),
            "skopeo refuses it too: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

// Same recipe (docs.docker.com/registry/insecure/): a self-signed certificate is trusted only
// when that very certificate is listed, not because ca_file holds some other self-signed one.
#[tokio::test]
async fn self_signed_certificate_not_in_ca_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let served = openssl_req_x509(dir.path(), "served", "IP:127.0.0.1,DNS:localhost");
    let listed = openssl_req_x509(dir.path(), "listed", "IP:127.0.0.1,DNS:localhost");
    let reg = registry_with(&served).await;
    for (name, extra) in [
        ("other", ca_file_line(&listed.cert)),
        ("none", String::new()),
    ] {
        let config = config_from_toml(&registry_toml(name, &reg.url, &extra));
        let r = run_one(&config, CheckKind::Registry).await;
        assert_eq!(
            (r.status, r.reason, r.http_status),
            (Status::Fail, Reason::Tls, None),
            "{name}: {}",
            r.message
        );
        assert!(
            r.message
                .contains("the certificate is a CA certificate used as a server certificate"),
            "{name}: {}",
            r.message
        );
    }
}

// rustls/webpki#205 asks for trust in a listed certificate, not for ignoring its dates: an
// expired self-signed CA:TRUE certificate in ca_file is refused. (OpenSSL 3.0's `req -x509`
// cannot backdate, so this one is made with rcgen in the same shape.)
#[tokio::test]
async fn expired_self_signed_certificate_in_ca_file_is_refused() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let files = ServerCert {
        cert: dir.path().join("expired.crt"),
        key: dir.path().join("expired.key"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let reg = registry_with(&files).await;
    let config = config_from_toml(&registry_toml(
        "expired",
        &reg.url,
        &ca_file_line(&files.cert),
    ));
    let r = run_one(&config, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Tls, None),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("the certificate has expired"),
        "{}",
        r.message
    );
}

// An https:// url on a port that speaks plain HTTP: rustls reads "HTTP/1.1 400" as a record of
// an unknown content type ("received corrupt message"); say what it means instead.
#[tokio::test]
async fn https_url_on_a_plain_http_registry_says_the_port_speaks_plain_http() {
    let reg = TestRegistry::start(Kind::Open).await;
    let url = reg.url.replace("http://", "https://");
    let config = config_from_toml(&registry_toml("plain", &url, ""));
    let r = run_one(&config, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Tls, None),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("the port speaks plain HTTP, not TLS; use http:// in url"),
        "{}",
        r.message
    );
}

// The doctor's output is its report: rustls's `logging` records (and the platform verifier's
// "failed to verify TLS certificate") must not land on stderr next to it unless asked for.
#[tokio::test]
async fn doctor_shows_a_readable_tls_error_and_no_rustls_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_req_x509(dir.path(), "domain", "IP:127.0.0.1,DNS:localhost");
    let reg = registry_with(&cert).await;
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        registry_toml("selfsigned", &reg.url, "checks = [\"registry\"]"),
    )
    .unwrap();
    let run = |level: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
        c.env_remove("OCI__RegistryUrl")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .arg("check")
            .arg("--config")
            .arg(&cfg);
        if let Some(level) = level {
            c.arg("--log.level").arg(level);
        }
        c.output().expect("run the doctor")
    };
    let out = run(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a failure exits 2:\n{stdout}");
    assert!(
        stdout.contains("the certificate is a CA certificate used as a server certificate"),
        "{stdout}"
    );
    assert!(!stdout.contains("CaUsedAsEndEntity"), "{stdout}");
    let noise: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("rustls") || l.contains("certificate"))
        .collect();
    assert!(
        noise.is_empty(),
        "no TLS library lines on stderr: {noise:?}"
    );

    // Asked for by name, they are there.
    let out = run(Some("warn,rustls=debug"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("rustls")),
        "--log.level names rustls, so its lines are shown:\n{stderr}"
    );
}
