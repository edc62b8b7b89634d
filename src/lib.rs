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
//! - `app`: shared state: targets, latest results, the concurrency bound, rounds of checks.
//! - `doctor`: the `check` subcommand: run chosen checks once, exit 0/1/2/3.
//! - `report`: debug text, the doctor's text and JSON.
//! - `scheduler`: interval mode's background loop per registry, spread evenly over intervals.
//! - `secret_file`: bounded reads of secret files and Docker configs, off the async workers.
//! - `metrics`: every metric declared once; results → series; OpenMetrics and classic text.
//! - `server`: HTTP endpoints `/metrics`, `/probe`, `/-/healthy`, `/-/ready`, `/`.
//! - `telemetry`: log lines (logfmt or JSON), the check and request spans, OTLP export.
//! - `tls`: client TLS: trust, client certificate, and the earliest expiry of each chain,
//!   by leaf certificate.
//! - `web`: the exporter-toolkit web config file (`config`), server TLS and client certificates
//!   (`tls`), basic auth (`auth`), extra headers, reloads.

pub mod app;
pub mod catalogue;
pub mod checks;
pub mod client;
pub mod config;
pub mod distribution;
pub mod docker_config;
pub mod doctor;
pub mod fuzzing;
pub mod metrics;
pub mod outcome;
pub mod report;
pub mod scheduler;
pub mod secret_file;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use app::App;
pub use config::{Config, ConfigError, Mode, RawConfig};

/// The default listen address: port 9793, in Prometheus' exporter range.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9793";

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
    run_with_limits(config, listener, web, server::Limits::default(), shutdown).await
}

/// [`run_with_web`] with the HTTP server's limits (`--web.read-header-timeout`,
/// `--web.idle-timeout`, `--web.max-connections`).
pub async fn run_with_limits(
    config: Config,
    listener: TcpListener,
    web: Option<web::Web>,
    limits: server::Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let app = Arc::new(App::new(config)?);
    let generation = app.current();
    if generation.config.mode == Mode::Interval {
        scheduler::start(&app, &generation);
    }
    reload_on_sighup(&app);
    let server = tokio::spawn(server::serve(
        app.clone(),
        listener,
        web.map(Arc::new),
        limits,
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
