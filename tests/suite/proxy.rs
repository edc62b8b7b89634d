//! Forward proxies (issue 21): the checks go through a real one (Debian's tinyproxy, run on
//! a free 127.0.0.1 port; scripts/test installs it), and when the proxy fails the verdict
//! names the proxy and where it came from (`proxy_url` or the environment), never the
//! registry. What tinyproxy answers: 407 with `Proxy-Authenticate: Basic` under
//! `BasicAuth` (tinyproxy.conf(5)), to a plain request and to a CONNECT alike.

use crate::common;
use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{config_from_toml, free_port, run_one};
use oci_registry_exporter::catalogue;
use oci_registry_exporter::checks::{CheckKind, CheckResult, Reason, Status};
use support::{Kind, TestRegistry};

/// A tinyproxy on 127.0.0.1, killed when dropped.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// `basic_auth`: the user and password it asks for with 407.
    fn start(basic_auth: Option<(&str, &str)>) -> Tinyproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 20\nAllow 127.0.0.1\nLogLevel Connect\nLogFile \"{}\"\n",
            log.display()
        );
        if let Some((user, password)) = basic_auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy runs (scripts/test installs it)");
        // Bounded wait for its port.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Tinyproxy {
                    child,
                    port,
                    log,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tinyproxy did not listen on 127.0.0.1:{port} within 5 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: &str, extra: &str) -> oci_registry_exporter::Config {
    config_from_toml(&format!(
        "[[registries]]\nname = \"proxied\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n"
    ))
}

fn cause(r: &CheckResult) -> String {
    catalogue::diagnose(r)
        .map(|d| d.cause.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_checks_pass_through_a_real_forward_proxy() {
    let reg = TestRegistry::start(Kind::Open).await;
    let proxy = Tinyproxy::start(None);
    let cfg = config(&reg.url, &format!("proxy_url = \"{}\"", proxy.url()));
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&cfg, kind).await;
        assert_eq!(
            (r.status, r.reason),
            (Status::Pass, Reason::Ok),
            "{kind:?}: {}",
            r.message
        );
    }
    // The proxy carried them: the ping, the manifest and the config blob.
    let log = proxy.log();
    let origin = reg.url.trim_end_matches('/');
    for path in [
        "/v2/ ".to_string(),
        "/v2/library/alpine/manifests/latest".to_string(),
        format!("/v2/library/alpine/blobs/{}", support::seed_config_digest()),
    ] {
        assert!(
            log.contains(&format!("{origin}{path}")),
            "tinyproxy did not see {path}:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_proxy_that_is_down_is_named_not_the_registry() {
    let reg = TestRegistry::start(Kind::Open).await;
    let down = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        &reg.url,
        &format!("proxy_url = \"http://monitor:s3cret-proxy@{down}\""),
    );
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&cfg, kind).await;
        assert_eq!(
            (r.status, r.reason, r.http_status),
            (Status::Fail, Reason::ProxyUnreachable, None),
            "{kind:?}: {}",
            r.message
        );
        assert!(
            r.message
                .contains(&format!("the proxy http://{down} (from proxy_url)")),
            "{}",
            r.message
        );
        assert!(r.message.contains("connection refused"), "{}", r.message);
        assert!(!format!("{r:?}").contains("s3cret-proxy"), "{r:?}");
        assert!(cause(&r).contains("proxy"), "{}", cause(&r));
        assert!(!cause(&r).contains("nothing listens at the registry"));
    }
}

#[tokio::test]
async fn a_proxy_asking_for_credentials_is_named_and_its_credentials_work() {
    let proxy = Tinyproxy::start(Some(("monitor", "proxypass")));
    let with_creds = proxy.url().replace("http://", "http://monitor:proxypass@");
    // A plain-HTTP registry: the request goes to the proxy as it is, and the proxy answers
    // 407 itself. An HTTPS registry: the proxy refuses the CONNECT with 407.
    let open = TestRegistry::start(Kind::Open).await;
    let tls = TestRegistry::start(Kind::Tls).await;
    let ca = format!("ca_file = \"{}\"", tls.ca_file.clone().unwrap().display());
    for (url, extra) in [(&open.url, String::new()), (&tls.url, ca)] {
        let without = config(url, &format!("proxy_url = \"{}\"\n{extra}", proxy.url()));
        let r = run_one(&without, CheckKind::Registry).await;
        assert_eq!(
            (r.status, r.reason),
            (Status::Fail, Reason::ProxyAuthRequired),
            "{url}: {}",
            r.message
        );
        assert!(
            r.message
                .contains(&format!("the proxy {} (from proxy_url)", proxy.url())),
            "{}",
            r.message
        );
        assert!(r.message.contains("407"), "{}", r.message);

        let with = config(url, &format!("proxy_url = \"{with_creds}\"\n{extra}"));
        for kind in [CheckKind::Registry, CheckKind::Pull] {
            let r = run_one(&with, kind).await;
            assert_eq!(
                (r.status, r.reason),
                (Status::Pass, Reason::Ok),
                "{url} {kind:?}: {}",
                r.message
            );
            assert!(!format!("{r:?}").contains("proxypass"), "{r:?}");
        }
    }
}

/// The doctor with `HTTP_PROXY` (and `NO_PROXY`) from its environment.
fn doctor_with_env(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
    for key in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "OCI__RegistryUrl",
    ] {
        cmd.env_remove(key);
    }
    let out = cmd
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("the exporter runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn a_proxy_from_the_environment_is_named_with_its_variable() {
    let reg = TestRegistry::start(Kind::Open).await;
    let down = format!("http://127.0.0.1:{}", free_port());
    let cfg = format!(
        "[[registries]]\nname = \"env-proxied\"\nurl = \"{}\"\ntimeout = \"5s\"\nchecks = [\"registry\", \"pull\"]\n",
        reg.url
    );
    // Credentials in the variable are the proxy's: never shown.
    let with_password = down.replace("http://", "http://monitor:env-s3cret@");
    let (code, out) = doctor_with_env(&cfg, &[("HTTP_PROXY", &with_password)]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("proxy_unreachable"), "{out}");
    assert!(
        out.contains(&format!("the proxy {down} (from HTTP_PROXY)")),
        "{out}"
    );
    assert!(!out.contains("env-s3cret"), "{out}");
    // NO_PROXY exempts the registry, as reqwest and curl read it: then it is reached directly.
    let (code, out) = doctor_with_env(&cfg, &[("HTTP_PROXY", &down), ("NO_PROXY", "127.0.0.1")]);
    assert_eq!(code, 0, "{out}");
    // And proxy_url wins over the environment.
    let proxy = Tinyproxy::start(None);
    let cfg = format!("{cfg}proxy_url = \"{}\"\n", proxy.url());
    let (code, out) = doctor_with_env(&cfg, &[("HTTP_PROXY", &down)]);
    assert_eq!(code, 0, "{out}");
    assert!(proxy.log().contains("/v2/"), "{}", proxy.log());
}

#[tokio::test]
async fn a_proxy_that_accepts_and_never_answers_is_named_in_the_timeout() {
    // A proxy that takes the connection and says nothing: it, or the registry behind it, is
    // stuck; which one cannot be told from here, so the reason stays `timeout`, but the
    // words name the proxy the request went through.
    let reg = TestRegistry::start(Kind::Open).await;
    let (addr, hold) = common::hanging_server(Duration::from_secs(10)).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"proxied\"\nurl = \"{}\"\ntimeout = \"1s\"\ninterval = \"1s\"\nproxy_url = \"http://{addr}\"\n",
        reg.url
    ));
    let r = run_one(&cfg, CheckKind::Registry).await;
    hold.abort();
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::Timeout),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains(&format!("the proxy http://{addr} (from proxy_url)")),
        "{}",
        r.message
    );
}
