//! The tests that change process-wide state, kept out of `tests/suite/` on purpose: the one
//! other test binary (issue 22 §4, ARCHITECTURE.md).
//!
//! - `config_env` sets environment variables and changes the working directory (figment's
//!   `Jail`) while `Config::load` reads them. In the suite, every test that loads a
//!   configuration or starts a child process at that moment would see them (an extra
//!   `default` registry from `OCI__RegistryUrl`, a relative testdata path that no longer
//!   resolves).
//! - `no_leak` installs the process's global tracing subscriber at TRACE, and the `log`
//!   bridge, and asserts that no secret appears in what it caught. In the suite it would
//!   catch every concurrent test's logs, their own test passwords included.
//!
//! They share this process one at a time: each takes [`PROCESS_STATE`].

#[path = "../suite/common/mod.rs"]
mod common;
#[path = "../suite/support/mod.rs"]
mod support;

mod config_env;
mod no_leak;

/// Held by every test here for its whole run, so that the environment `config_env` sets
/// is never read by `no_leak`'s exporter, nor its working directory used.
/// A tokio mutex: `no_leak` holds it across its awaits, and a test that fails while holding
/// it does not poison it for the next.
static PROCESS_STATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// [`PROCESS_STATE`] for a test that runs no runtime of its own (`config_env`).
fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    PROCESS_STATE.blocking_lock()
}
