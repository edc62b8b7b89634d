//! oci-registry-exporter: health checks of OCI registries, exported to Prometheus.
//!
//! # Layout
//! - `config`: raw and validated configuration, environment seed keys, every validation rule.
//! - `client`: a registry's client (basic/bearer/token auth, bounded bodies); one HTTP client
//!   and connection pool per distinct TLS setting, shared by the registries that have it.
//! - `docker_config`: credentials from a Docker config.json and credential helpers.
//! - `fuzzing`: entry points for the fuzz targets under `fuzz/` (parsers of remote input).
//! - `outcome`: the result types (check kinds, statuses, reasons, facts, `CheckResult`); a leaf.
//! - `distribution`: the typed OCI Distribution API: digests, scopes, error codes, operations.
//! - `checks`: one file per check, all `run(target, cx) -> CheckResult`; they only classify.
//! - `catalogue`: what each check is, why it matters, likely causes and fixes, runbook links.
//! - `app`: shared state: targets, the concurrency bound, rounds of checks, reloads.
//! - `store`: the one place results live: latest per registry × check, counters, history.
//! - `doctor`: the `check` subcommand: run chosen checks once, exit 0/1/2/3.
//! - `report`: debug text, the doctor's text and JSON.
//! - `scheduler`: interval mode: follows the generations reloads publish; a loop per registry,
//!   spread evenly over intervals.
//! - `secret_file`: bounded reads of secret files and Docker configs, off the async workers.
//! - `shard`: `--shard`/`--total-shards`: which registries this replica checks.
//! - `metrics`: every metric declared once; the store → series; OpenMetrics and classic text.
//! - `process`: the `process_*` metrics (CPU, memory, descriptors, start time) from `/proc`.
//! - `server`: HTTP endpoints: the metrics (`--web.telemetry-path`), `/probe`, `/result`,
//!   `/-/healthy`, `/-/ready`, `/-/reload`, and routing `/` to `status_page`.
//! - `status_page`: the `/` page: summary, trouble first, causes and fixes, recent results.
//! - `telemetry`: log lines (logfmt or JSON), the check and request spans, OTLP export.
//! - `tls_signatures`: the signature methods of a rustls verifier, written once for both sides.
//! - `registry_tls`: the registry client's TLS: trust, client certificate, and the earliest
//!   expiry of each chain, by leaf certificate.
//! - `web`: the exporter-toolkit web config file (`web_config`), the web server's TLS and
//!   client certificates (`server_tls`), basic auth (`auth`), extra headers, reloads.

pub mod app;
pub mod catalogue;
pub mod checks;
pub mod client;
pub mod config;
pub mod distribution;
pub mod docker_config;
pub mod doctor;
pub mod fuzzing;
pub mod implementation;
pub mod metrics;
pub mod outcome;
pub mod process;
pub mod registry_tls;
pub mod report;
pub mod scheduler;
pub mod secret_file;
pub mod server;
pub mod shard;
pub mod status_page;
pub mod store;
pub mod telemetry;
mod tls_signatures;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use app::App;
pub use config::{Config, ConfigError, Mode, RawConfig};

/// The default listen address: port 9793, in Prometheus' exporter range.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9793";

/// The exit code of every usage error, the daemon's and the `check` subcommand's alike
/// (declared with the doctor's exit codes).
pub use doctor::EXIT_USAGE;

/// Why the exporter could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::ClientBuildError),
}

/// SIGHUP reloads the configuration, as Prometheus' own daemons do.
fn reload_on_sighup(app: &Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; use POST /-/reload to reload");
            return;
        }
    };
    let app2 = app.clone();
    app.tasks.spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and exported by reload itself.
                    let _ = app2.reload().await;
                }
                _ = app2.shutdown.cancelled() => return,
            }
        }
    });
}

/// The start-up line of a sharded exporter: which shard, how many registries it checks.
fn log_shard(generation: &app::Generation) {
    let shard = generation.config.shard;
    if !shard.is_sharded() {
        return;
    }
    let checked = generation.targets.len();
    tracing::info!(
        shard = shard.index(),
        total_shards = shard.total(),
        registries = checked,
        configured = generation.config.registries.len(),
        "sharding: this replica checks the registries of its shard"
    );
    if checked == 0 {
        tracing::warn!(
            "sharding: no configured registry falls in this shard, so this replica checks none (it still answers /probe for every registry)"
        );
    }
}

/// Runs the exporter on `listener` until `shutdown` completes, then stops the scheduler
/// and waits for every task it started.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    run_with_web(config, listener, None, shutdown).await
}

/// [`run`] with a web config (`--web.config.file`): TLS, basic auth and extra headers.
pub async fn run_with_web(
    config: Config,
    listener: TcpListener,
    web: Option<web::Web>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    run_with_options(config, listener, web, server::Options::default(), shutdown).await
}

/// [`run_with_web`] with everything the command line tells the server: its limits
/// (`--web.read-header-timeout`, `--web.idle-timeout`, `--web.max-connections`) and the
/// telemetry path (`--web.telemetry-path`).
pub async fn run_with_options(
    config: Config,
    listener: TcpListener,
    web: Option<web::Web>,
    options: server::Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let app = Arc::new(App::new(config)?);
    log_shard(&app.current());
    // The one scheduler: it follows the generations reloads publish (in interval mode).
    app.tasks
        .spawn(scheduler::run(app.clone(), app.shutdown.clone()));
    reload_on_sighup(&app);
    let server = tokio::spawn(server::serve(
        app.clone(),
        listener,
        web.map(Arc::new),
        options,
    ));
    shutdown.await;
    tracing::info!("shutting down");
    app.shutdown.cancel();
    app.tasks.close();
    // The server task only ends by itself; a panic in it is a bug worth surfacing.
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server task failed");
    }
    app.tasks.wait().await;
    Ok(())
}
