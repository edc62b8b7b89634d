//! The `oci-registry-exporter` binary: flags, logging, signals; the library does the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use oci_registry_exporter::shard::Shard;
use oci_registry_exporter::{
    Config, DEFAULT_LISTEN_ADDRESS, EXIT_USAGE, doctor, report, run_with_options, server,
    telemetry, web,
};

/// `--version`: the version, the source revision, the build date and the compiler (build.rs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision:   ",
    env!("ORE_BUILD_REVISION"),
    "\nbuild date: ",
    env!("ORE_BUILD_DATE"),
    "\nrustc:      ",
    env!("ORE_BUILD_RUSTC"),
);

#[derive(Parser, Debug)]
#[command(
    version,
    long_version = LONG_VERSION,
    about = "Health-checks OCI registries and exports the results to Prometheus"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML or YAML by extension). Without it, the environment's seed
    /// keys (OCI__RegistryUrl, ...) configure the registry `default`.
    /// `--config.file` is accepted too, as Prometheus' own daemons spell it.
    #[arg(long, visible_alias = "config.file", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. ":9793" or "127.0.0.1:9793".
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN_ADDRESS)]
    listen_address: String,
    /// Path under which the metrics are served. Not /, /probe, /result or under /-/.
    #[arg(long = "web.telemetry-path", default_value = server::TelemetryPath::DEFAULT)]
    telemetry_path: String,
    /// Web config file (Prometheus exporter-toolkit format): TLS, basic auth, extra headers.
    /// Re-read when it or a file it names changes (certificate rotation).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// How long a client may take to send a request's headers (for a new connection counted
    /// from its accept, TLS handshake included; in HTTP/1.1 also the wait for the next
    /// request on a kept-alive connection), e.g. "10s".
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_duration)]
    read_header_timeout: std::time::Duration,
    /// A connection with no request in progress for this long is closed, e.g. "60s".
    #[arg(long = "web.idle-timeout", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: std::time::Duration,
    /// Connections served at once; lowered to half the open-files limit if that is less.
    /// 16 more are kept for /-/healthy and /-/ready.
    #[arg(long = "web.max-connections", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Validate the configuration, print warnings, and exit 0 (valid) or 1 (invalid); bad
    /// flags still exit 3. With --shard and --total-shards, also list the registries of that
    /// shard.
    #[arg(long = "check-config")]
    check_config: bool,
    /// This replica's shard, from 0 to --total-shards minus 1: it checks only the registries
    /// whose names hash to it, and every replica loads the same configuration
    /// (docs/operations.md, "Sizing and sharding"). In a StatefulSet: --shard=$(POD_INDEX)
    /// with POD_INDEX from the label apps.kubernetes.io/pod-index (Kubernetes 1.28 or later).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = parse_shard)]
    shard: u64,
    /// How many replicas share the registries, each with its own --shard; 1 is no sharding.
    #[arg(long = "total-shards", default_value_t = 1, value_name = "M", value_parser = parse_total_shards)]
    total_shards: u64,
    /// Log level: error, warn, info, debug, trace (or a tracing filter). rustls, hyper, h2
    /// and reqwest log only at debug or trace, or when named (warn,rustls=debug).
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"], global = true)]
    log_format: String,
    /// Export the check and HTTP request spans over OTLP/HTTP (protobuf) to this base URL,
    /// e.g. "http://otel-collector:4318" (/v1/traces is appended). Off unless this or
    /// OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long = "otlp.endpoint", global = true)]
    otlp_endpoint: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Run checks once, print the results with causes and fixes, and exit:
    /// 0 all pass/info/skip, 1 a warning, 2 a failure, 3 bad usage or config (as the daemon).
    Check {
        /// Only this registry (its configured name).
        #[arg(long)]
        registry: Option<String>,
        /// Only these checks: short names (pull) or ids (check.integration.oci.pull),
        /// comma-separated or repeated (--check pull,push or --check pull --check push).
        #[arg(long, value_delimiter = ',')]
        check: Vec<String>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors. Any other is a usage error, exit 3 for the
            // daemon and `check` alike: not clap's 2, which is `check`'s "a check failed"
            // (docs/operations.md, "Exit codes").
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    // Before anything else, in every mode: a bad shard is a usage error.
    let shard = match Shard::new(cli.shard, cli.total_shards) {
        Ok(shard) => shard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(Command::Check {
        registry,
        check,
        format,
    }) = &cli.command
    {
        if shard != Shard::ALL {
            eprintln!(
                "error: --shard and --total-shards apply to the daemon; `check` runs the registry named by --registry, or all of them"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        // The doctor logs only warnings unless asked: its output is the report.
        let level = if cli.log_level == "info" {
            "warn"
        } else {
            &cli.log_level
        };
        let telemetry = match init_logging(&cli, level) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let code = doctor_main(&cli, registry.as_deref(), check, format.as_str());
        telemetry.shutdown();
        return code;
    }
    let telemetry = match init_logging(&cli, &cli.log_level) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let code = match real_main(cli, shard) {
        Ok(code) => code,
        Err(Fatal { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    };
    // `run` has returned and the runtime is gone: send the spans still queued, then exit.
    telemetry.shutdown();
    code
}

fn doctor_main(cli: &Cli, registry: Option<&str>, check: &[String], format: &str) -> ExitCode {
    use std::io::Write;
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid config: {e}");
            return ExitCode::from(doctor::EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(doctor::EXIT_USAGE);
        }
    };
    let urls: report::Urls = config
        .registries
        .iter()
        .map(|t| (t.name.clone(), t.url.clone()))
        .collect();
    let results = match runtime.block_on(doctor::run(config, registry, check)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(doctor::EXIT_USAGE);
        }
    };
    let code = doctor::exit_code(&results);
    let text = if format == "json" {
        report::doctor_json(&results, &urls, code)
    } else {
        report::doctor_text(&results, &urls)
    };
    // anstream drops the colour codes when stdout is not a terminal or NO_COLOR is set.
    let mut out = anstream::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    ExitCode::from(code)
}

/// Log lines on stderr and, when configured, the OTLP span export (see `telemetry`).
fn init_logging(
    cli: &Cli,
    level: &str,
) -> Result<telemetry::TelemetryGuard, telemetry::TelemetryError> {
    telemetry::init(level, cli.log_format.parse()?, cli.otlp_endpoint.as_deref())
}

/// Why the daemon stopped on an error, and its exit code: [`EXIT_USAGE`] for what the user
/// must fix in the flags or the configuration before it can start, 1 for a failure to run
/// (the port is taken, no runtime, no signal handler).
struct Fatal {
    code: u8,
    error: anyhow::Error,
}

impl Fatal {
    fn usage(error: impl Into<anyhow::Error>) -> Fatal {
        Fatal {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }

    fn runtime(error: impl Into<anyhow::Error>) -> Fatal {
        Fatal {
            code: 1,
            error: error.into(),
        }
    }
}

fn real_main(cli: Cli, shard: Shard) -> Result<ExitCode, Fatal> {
    // Flags first, in every mode: a bad flag value is a usage error even with --check-config.
    let telemetry_path = server::TelemetryPath::parse(&cli.telemetry_path).map_err(Fatal::usage)?;
    let addr = parse_listen_address(&cli.listen_address).map_err(Fatal::usage)?;
    let config = Config::load(cli.config.as_deref()).map(|mut config| {
        config.shard = shard;
        config
    });
    // Read before anything listens: an invalid web config is a startup error.
    let web = cli
        .web_config_file
        .as_deref()
        .map(web::Web::load)
        .transpose();
    if cli.check_config {
        return Ok(check_config(config, web, shard));
    }
    let config = config.context("invalid config").map_err(Fatal::usage)?;
    let web = web.context("invalid web config").map_err(Fatal::usage)?;
    if let Some(web) = &web {
        tracing::info!(path = %web.path().display(), "web config: {}", web.summary());
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .map_err(Fatal::runtime)?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(Fatal::runtime)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; is the port in use? (--web.listen-address)"))
            .map_err(Fatal::runtime)?;
        let bound = listener.local_addr().map_err(Fatal::runtime)?;
        tracing::info!(address = %bound, registries = config.registries.len(), mode = %config.mode, "listening");
        let options = server::Options {
            limits: server::Limits {
                read_header_timeout: cli.read_header_timeout,
                idle_timeout: cli.idle_timeout,
                max_connections: cli.max_connections as usize,
            },
            telemetry_path,
        };
        // The only error: a registry's HTTP client cannot be built from its TLS settings.
        run_with_options(config, listener, web, options, shutdown)
            .await
            .map_err(Fatal::usage)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `--check-config`: what the configuration and the web configuration hold, or why they are
/// invalid; nothing is started.
fn check_config(
    config: Result<Config, oci_registry_exporter::config::ConfigError>,
    web: Result<Option<web::Web>, web::WebConfigError>,
    shard: Shard,
) -> ExitCode {
    let code = match config {
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
            if shard.is_sharded() {
                let names: Vec<&str> = config.shard_registries().map(|r| r.name.as_str()).collect();
                println!(
                    "{shard} checks {} of them{}{}",
                    names.len(),
                    if names.is_empty() { "" } else { ": " },
                    names.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid config: {e}");
            ExitCode::FAILURE
        }
    };
    match web {
        Ok(Some(web)) => {
            println!("web config is valid: {}", web.summary());
            code
        }
        Ok(None) => code,
        Err(e) => {
            eprintln!("invalid web config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--shard`: a whole number. An empty or unexpanded `$(POD_INDEX)` is what a pod without
/// the pod-index label passes, so the text says where that label comes from.
fn parse_shard(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) if text.trim().is_empty() || text.contains("$(") => Err(
            "is not a shard number: an empty or unexpanded $(POD_INDEX) means the pod has no label apps.kubernetes.io/pod-index, which StatefulSets set from Kubernetes 1.28 on; write a whole number from 0"
                .into(),
        ),
        Err(_) => Err("is not a shard number; write a whole number from 0 to --total-shards minus 1".into()),
    }
}

/// `--total-shards`: a whole number, at least 1.
fn parse_total_shards(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (1, the default, is no sharding); set it to the number of replicas sharing the registries".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("is not a number; set it to the number of replicas sharing the registries, e.g. 3".into()),
    }
}

/// A positive duration such as "10s" or "1m 30s", for the server's timeouts.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero; write a duration such as \"10s\"".into()),
        Err(e) => Err(format!("{e}; write a duration such as \"10s\"")),
    }
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
