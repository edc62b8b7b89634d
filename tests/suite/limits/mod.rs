//! Bounds that hold against hostile peers and files: hostile servers, credential files and
//! helpers (`hostile`), an oversized challenge (`oversized_challenge`), a connection flood
//! (`server`) and scrapers that never read (`slow_readers`). The daemon stays up and its
//! verdicts unchanged.

mod hostile;
mod oversized_challenge;
mod server;
mod slow_readers;

use crate::common::{config_from_toml, run_one};
use oci_registry_exporter::checks::{CheckKind, Reason, Status};

/// The registry `name` at `url` sent a challenge no client can use (`hostile`'s garbled one,
/// `oversized_challenge`'s 64 KiB one): with credentials and without, the credentials and
/// pull checks fail as an invalid response naming `WWW-Authenticate`, not as an unreachable
/// token service.
async fn an_unusable_challenge_is_an_invalid_response(url: &str, name: &str) {
    let with_credentials = config_from_toml(&format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\n"
    ));
    let anonymous = config_from_toml(&format!(
        "[[registries]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"
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
