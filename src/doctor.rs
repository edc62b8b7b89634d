//! The doctor: `oci-registry-exporter check` runs chosen checks once and exits.
//!
//! Owns the selection (`--registry`, `--check`), the run (through the same `App::execute`
//! the daemon uses, so results carry the same causes, fixes and runbooks) and the exit
//! code. Rendering is `report`'s; flags and printing are `main.rs`'s.

use crate::app::App;
use crate::checks::{CheckKind, CheckResult, Status};
use crate::client::ClientBuildError;
use crate::config::Config;

/// Exit codes, documented in docs/operations.md ("Exit codes") and README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_WARN: u8 = 1;
pub const EXIT_FAIL: u8 = 2;
/// The exit code of every usage error, the daemon's and the `check` subcommand's alike: a
/// bad flag or flag value, an unreadable or invalid configuration or web configuration.
/// Not clap's 2, which the doctor gives to a failed check (docs/operations.md, "Exit codes").
/// Declared here, with the doctor's other codes, and re-exported at the crate's root for
/// the daemon (a module never imports the root: `tests/suite/project/layers.rs`).
pub const EXIT_USAGE: u8 = 3;

/// A doctor run that could not start: the message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(
        "--registry {name:?}: no such registry in the configuration (configured: {known}); use one of those names"
    )]
    UnknownRegistry { name: String, known: String },
    #[error(
        "--check {name:?}: unknown check; use a short name ({known}) or an id such as check.integration.oci.pull"
    )]
    UnknownCheck { name: String, known: String },
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// Runs the selected checks of the selected registries once, registries concurrently.
pub async fn run(
    config: Config,
    registry: Option<&str>,
    check: &[String],
) -> Result<Vec<(String, CheckResult)>, DoctorError> {
    // Every --check value, in the order given, each once; none means the configured checks.
    let mut kinds = Vec::new();
    for name in check.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let kind = CheckKind::parse(name).ok_or_else(|| DoctorError::UnknownCheck {
            name: name.to_string(),
            known: CheckKind::ALL
                .iter()
                .map(|c| c.short_name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let only = (!kinds.is_empty()).then_some(kinds);
    if let Some(name) = registry
        && !config.registries.iter().any(|r| r.name == name)
    {
        return Err(DoctorError::UnknownRegistry {
            name: name.to_string(),
            known: config
                .registries
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let app = App::new(config)?;
    let generation = app.current();
    let selected = generation
        .targets
        .iter()
        .filter(|t| registry.is_none_or(|name| t.target.name == name));
    let runs = selected.map(|rt| {
        let app = &app;
        let only = only.as_deref();
        async move {
            let results = app.execute(rt, only).await;
            results
                .into_iter()
                .map(|r| (rt.target.name.clone(), r))
                .collect::<Vec<_>>()
        }
    });
    Ok(futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect())
}

/// 0 when all pass/info/skip, 1 when any warn, 2 when any fail.
pub fn exit_code(results: &[(String, CheckResult)]) -> u8 {
    if results.iter().any(|(_, r)| r.status == Status::Fail) {
        EXIT_FAIL
    } else if results.iter().any(|(_, r)| r.status == Status::Warn) {
        EXIT_WARN
    } else {
        EXIT_OK
    }
}
