//! A real TLS Distribution registry checked with its CA, without it, and with `insecure`.

use crate::common;
use crate::support;

use common::{config_from_toml, registry_toml, run_one};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};
use support::{Kind, TestRegistry};

#[tokio::test]
async fn tls_registry_with_ca_without_and_insecure() {
    let reg = TestRegistry::start(Kind::Tls).await;
    let ca = reg.ca_file.clone().unwrap();
    let with_ca = config_from_toml(&registry_toml(
        "tls",
        &reg.url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    for kind in [CheckKind::Registry, CheckKind::Pull] {
        let r = run_one(&with_ca, kind).await;
        assert_eq!(r.status, Status::Pass, "{kind:?}: {}", r.message);
    }
    let without = config_from_toml(&registry_toml("tls", &reg.url, ""));
    let r = run_one(&without, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.reason, r.http_status),
        (Status::Fail, Reason::Tls, None),
        "{}",
        r.message
    );
    let insecure = config_from_toml(&registry_toml(
        "tls",
        &reg.url,
        "insecure_skip_verify = true",
    ));
    let r = run_one(&insecure, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    // Plain HTTP to the TLS port: Go answers 400 "client sent an HTTP request to an HTTPS server".
    let http = config_from_toml(&registry_toml(
        "tls",
        &reg.url.replace("https://", "http://"),
        "",
    ));
    let r = run_one(&http, CheckKind::Registry).await;
    assert_eq!(
        (r.status, r.http_status),
        (Status::Warn, Some(400)),
        "{}",
        r.message
    );
}
