//! The integration tests: one test binary (issue 22 §4), its modules named by the behaviour
//! they prove, so that a change to the pull is tested in `pull`, whatever registry, emulation
//! or tool a test needs. One binary is one link instead of forty on a 2-core machine.
//!
//! Run one behaviour with a module-path filter: `cargo test --test suite pull::` (libtest
//! takes several). `scripts/test --fast` runs the modules that need no external tool
//! (`project::fast_lane` keeps its list honest). The tests that change process-wide state
//! (the environment, the working directory, the global tracing subscriber) cannot share this
//! process: they are `tests/process_global/`. Environment variables a test needs go to the
//! child processes it starts, never to this process; the floods that time the exporter take
//! `common::TIMED`, so that no two overlap, and so does the `cargo check` that fills both
//! cores.
//!
//! Shared by the behaviours, not tests themselves: `support` (real Distribution registries
//! and the seed image), `common` (the exporter in-process, metrics, Prometheus), `emulations`
//! (registry behaviours no real registry here produces, emulated with mockito).

mod common;
mod emulations;
mod support;

mod alerts;
mod cli;
mod config;
mod credentials;
mod deploy;
mod doctor;
mod exposition;
mod harness;
mod limits;
mod project;
mod proxy;
mod pull;
mod push;
mod reload;
mod schedule;
mod status_page;
mod telemetry;
mod tls;
mod verdicts;
