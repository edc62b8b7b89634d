//! The `oci-registry-exporter` binary: flags, logging, signals; the library does the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use oci_registry_exporter::{Config, DEFAULT_LISTEN_ADDRESS, run};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Health-checks OCI registries and exports the results to Prometheus"
)]
struct Cli {
    /// Configuration file (TOML or YAML by extension). Without it, the environment's seed
    /// keys (OCI__RegistryUrl, ...) configure the registry `default`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. ":9793" or "127.0.0.1:9793".
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN_ADDRESS)]
    listen_address: String,
    /// Validate the configuration, print warnings, and exit 0 (valid) or 1 (invalid).
    #[arg(long = "check-config")]
    check_config: bool,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref());
    if cli.check_config {
        return Ok(match config {
            Ok(config) => {
                for w in &config.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "config is valid: {} registr{} ({})",
                    config.registries.len(),
                    if config.registries.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    config
                        .registries
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid config: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let config = config.context("invalid config")?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let addr = parse_listen_address(&cli.listen_address)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; is the port in use? (--web.listen-address)"))?;
        tracing::info!(address = %listener.local_addr()?, registries = config.registries.len(), mode = ?config.mode, "listening");
        run(config, listener, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// ":9793" listens on all interfaces, as Prometheus exporters do.
fn parse_listen_address(text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .with_context(|| format!("--web.listen-address {text:?} is not host:port; use e.g. \":9793\" or \"127.0.0.1:9793\""))
}

/// Installs the SIGTERM and SIGINT handlers now (so a signal that arrives while the
/// exporter starts is not fatal) and returns a future that completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
