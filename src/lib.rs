//! oci-registry-exporter: health checks of OCI registries, exported to Prometheus.
//!
//! # Layout
//! - `config`: raw and validated configuration, environment seed keys, every validation rule.
//! - `client`: one HTTP client per registry: TLS, bounded bodies, basic/bearer/token auth.
//! - `docker_config`: credentials from a Docker config.json and credential helpers.
//! - `checks`: one file per check, all `run(target, cx) -> CheckResult`; result types.
//! - `catalogue`: what each check is, why it matters, likely causes and fixes, runbook links.
//! - `app`: shared state: targets, latest results, the concurrency bound, rounds of checks.
//! - `doctor`: the `check` subcommand: run chosen checks once, exit 0/1/2/3.
//! - `report`: debug text, the doctor's text and JSON.
//! - `scheduler`: interval mode's background loop per registry.
//! - `metrics`: every metric declared once; results → series; OpenMetrics and classic text.
//! - `server`: HTTP endpoints `/metrics`, `/probe`, `/-/healthy`, `/-/ready`, `/`.

pub mod app;
pub mod catalogue;
pub mod checks;
pub mod client;
pub mod config;
pub mod docker_config;
pub mod doctor;
pub mod metrics;
pub mod report;
pub mod scheduler;
pub mod server;

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

/// Runs the exporter on `listener` until `shutdown` completes, then stops the scheduler
/// and waits for every task it started.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let app = Arc::new(App::new(config)?);
    if app.config.mode == Mode::Interval {
        scheduler::start(&app);
    }
    let server = tokio::spawn(server::serve(app.clone(), listener));
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
