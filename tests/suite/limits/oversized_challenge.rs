//! A 64 KiB `WWW-Authenticate` is an unusable challenge (issue 24 §5): it was reported as
//! `token_endpoint_unreachable` ("Parsed Url is not a valid Uri"), which sends the reader to
//! the network, while the registry's answer is what is wrong. Emulated with mockito: no real
//! registry sends one, a broken or hostile proxy in front of one may.

use crate::common;
use crate::common::mock::unauthorized;

use common::{config_from_toml, run_one};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

#[tokio::test]
async fn a_64_kib_challenge_is_an_invalid_response_not_an_unreachable_token_service() {
    let mut server = mockito::Server::new_async().await;
    let huge = format!(
        "Bearer realm=\"http://127.0.0.1:9/{}\",service=\"huge\"",
        "a".repeat(64 * 1024)
    );
    for (method, path) in [("GET", "/v2/"), ("HEAD", MANIFEST), ("GET", MANIFEST)] {
        unauthorized(&mut server, method, path, &huge, "").await;
    }
    let with_credentials = config_from_toml(&format!(
        "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\n",
        server.url()
    ));
    let anonymous = config_from_toml(&format!(
        "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
        server.url()
    ));
    for (cfg, kind) in [
        (&with_credentials, CheckKind::Credentials),
        (&with_credentials, CheckKind::Pull),
        (&anonymous, CheckKind::Credentials),
        (&anonymous, CheckKind::Pull),
    ] {
        let r = run_one(cfg, kind).await;
        assert_eq!(
            (r.status, r.reason),
            (Status::Fail, Reason::InvalidResponse),
            "{kind:?}: {}",
            r.message
        );
        assert!(r.message.contains("WWW-Authenticate"), "{}", r.message);
    }
}
