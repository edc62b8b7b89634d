//! A read-only real Distribution registry still serves pulls.

use crate::common;
use crate::support;

use common::{config_from_toml, registry_toml, run_one};
use oci_registry_exporter::checks::{CheckKind, Status};
use support::{Kind, TestRegistry};

#[tokio::test]
async fn read_only_registry_still_serves_pulls() {
    let reg = TestRegistry::start(Kind::ReadOnly).await;
    let config = config_from_toml(&registry_toml("ro", &reg.url, ""));
    let r = run_one(&config, CheckKind::Pull).await;
    assert_eq!(
        (r.status, r.http_status),
        (Status::Pass, Some(200)),
        "{}",
        r.message
    );
}
