//! Logs and traces: the process-wide `tracing` subscriber and the optional OTLP export.
//!
//! Owns how diagnostics leave the process: log lines on stderr (logfmt or JSON, filtered by
//! `--log.level`, never coloured; the TLS and HTTP libraries stay quiet below `debug`
//! unless `--log.level` names them) and, when an OTLP endpoint is configured (`--otlp.endpoint`
//! or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! the export of this crate's spans over OTLP/HTTP (protobuf) with a batch processor.
//! [`init`] installs both; the returned [`TelemetryGuard`] flushes and shuts the exporter
//! down when `main` is done.
//!
//! The spans (created where the work happens, recorded here):
//! - `check` (`checks::run_check`): `registry`, `check`, then after the run `status`,
//!   `reason`, `http_status` (when a response decided it) and `duration_ms`.
//! - `http.request` (`client::RegistryClient::send_once`), a child of `check`: `method`,
//!   `path` (never the query string or headers), `status` once a response arrived.
//! - `token.request` (`client::RegistryClient::fetch_token`), a child of `check`: `method`,
//!   `realm_host`, `realm_path` (never the query, which carries the scope, nor credentials),
//!   `status`.
//!
//! No span field carries a secret: values are configured names, enums, numbers, and URL
//! paths. Only spans from this crate are exported, so the HTTP client of the exporter
//! itself (hyper, h2) cannot feed back into the export.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt as _;
use url::Url;

/// The `service.name` of the exported spans (unless `OTEL_SERVICE_NAME` says otherwise).
pub const SERVICE_NAME: &str = "oci-registry-exporter";

/// The standard OTLP environment variables this exporter honours.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The OTLP/HTTP path for traces, appended to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";
/// How long the exit may wait for the last batch of spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans from this crate (and only them) are exported.
const CRATE_TARGET: &str = "oci_registry_exporter";

/// The format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `ts=… level=… msg=… key=value …`, one event per line.
    Logfmt,
    /// One JSON object per line (tracing-subscriber's JSON, event fields flattened).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            other => Err(TelemetryError::Format(other.to_string())),
        }
    }
}

/// Why logging or tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "--log.level {level:?} is not a level or filter: {detail}; use error, warn, info, debug or trace"
    )]
    Level { level: String, detail: String },
    #[error("--log.format {0:?} is not known; use logfmt or json")]
    Format(String),
    #[error("{origin} {value:?}: {problem}; use e.g. http://otel-collector:4318")]
    Endpoint {
        /// The flag or environment variable that gave it.
        origin: &'static str,
        /// The endpoint as given, credentials removed.
        value: String,
        problem: &'static str,
    },
    #[error("cannot start the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a logger is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Refuses a directive that is a bare word but not a level: `EnvFilter` reads `verbose` as
/// the name of a target to log at every level, which silently turns all other logging off.
fn check_level(level: &str) -> Result<(), TelemetryError> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(TelemetryError::Level {
                level: level.to_string(),
                detail: format!("{directive:?} is neither a level nor target=level"),
            });
        }
    }
    Ok(())
}

/// Keeps the span exporter alive; [`TelemetryGuard::shutdown`] (or dropping it) sends the
/// spans still queued and stops the exporter. Hold it until the program is done.
#[must_use = "dropping the guard stops the span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the queued spans (waiting at most a few seconds) and stops the exporter.
    /// Call it outside the async runtime: the export client blocks.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("warning: the OTLP exporter did not shut down cleanly: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.exporting())
            .finish()
    }
}

/// Installs the global subscriber: log lines on stderr at `level` (a level or an
/// `EnvFilter` directive list) in `format`, and, when `otlp_endpoint` or the standard
/// `OTEL_EXPORTER_OTLP_*ENDPOINT` environment variable is set, the OTLP/HTTP span export.
///
/// Needs no async runtime: the exporter has its own thread and a blocking HTTP client.
pub fn init(
    level: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    check_level(level)?;
    let filter = EnvFilter::builder()
        .parse(quiet_dependencies(level))
        .map_err(|e| TelemetryError::Level {
            level: level.to_string(),
            detail: e.to_string(),
        })?;
    let endpoint = resolve_endpoint(
        otlp_endpoint,
        std::env::var(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            .ok()
            .as_deref(),
        std::env::var(OTEL_EXPORTER_OTLP_ENDPOINT).ok().as_deref(),
    )?;
    let otlp_disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        && otlp_endpoint.is_none();

    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let log_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // No colours anywhere: logfmt and JSON are for machines, and a pipe is no terminal.
        .with_ansi(false);
    layers.push(match format {
        LogFormat::Logfmt => log_layer
            .event_format(LogfmtEvents)
            .fmt_fields(LogfmtFields)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => log_layer
            .json()
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
    });

    let endpoint = endpoint.filter(|_| !otlp_disabled);
    let provider = match &endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint)?;
            let tracer = provider.tracer(SERVICE_NAME);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_threads(false)
                    .with_filter(Targets::new().with_target(CRATE_TARGET, Level::TRACE))
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    if let Some(endpoint) = &endpoint {
        // Credentials in the URL were refused above, so it is safe to show.
        tracing::info!(endpoint = %endpoint, "exporting spans over OTLP/HTTP");
    }
    Ok(TelemetryGuard { provider })
}

/// The TLS and HTTP libraries under the registry client. Their records (rustls's "Sending
/// fatal alert BadCertificate", the platform verifier's "failed to verify TLS certificate")
/// repeat, in their own terms, a failure the check result already states in plain words.
const DEPENDENCY_TARGETS: [&str; 8] = [
    "rustls",
    "rustls_platform_verifier",
    "tokio_rustls",
    "hyper_rustls",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
];

/// `level` with the [`DEPENDENCY_TARGETS`] turned off, unless it asks for them: a global
/// `debug` or `trace` (everything), or a directive for one of them or a prefix of one
/// (`warn,rustls=debug` also covers `rustls_platform_verifier`, as tracing's target
/// prefixes do). A directive narrower than a library (`hyper_util::client=trace`) keeps
/// the library's `off`: the filter applies the most specific directive, so it still wins.
fn quiet_dependencies(level: &str) -> String {
    let directives: Vec<&str> = level.split(',').map(str::trim).collect();
    let verbose = directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("debug") || d.eq_ignore_ascii_case("trace"));
    if verbose {
        return level.to_string();
    }
    let named: Vec<&str> = directives
        .iter()
        .filter_map(|d| {
            let target = d.split(['=', '[']).next()?.trim();
            d.contains('=').then_some(target).filter(|t| !t.is_empty())
        })
        .collect();
    let mut out = level.to_string();
    for dep in DEPENDENCY_TARGETS {
        if !named.iter().any(|t| dep.starts_with(t)) {
            if !out.trim().is_empty() {
                out.push(',');
            }
            out.push_str(dep);
            out.push_str("=off");
        }
    }
    out
}

/// The traces endpoint, or `None` when export is off. The flag wins over the environment;
/// a base URL (the flag, `OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces` appended unless
/// it already ends so; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is, as the
/// OpenTelemetry specification says.
pub fn resolve_endpoint(
    flag: Option<&str>,
    traces_env: Option<&str>,
    base_env: Option<&str>,
) -> Result<Option<String>, TelemetryError> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let (source, value, append) = if let Some(v) = nonempty(flag) {
        ("--otlp.endpoint", v, true)
    } else if let Some(v) = nonempty(traces_env) {
        (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, v, false)
    } else if let Some(v) = nonempty(base_env) {
        (OTEL_EXPORTER_OTLP_ENDPOINT, v, true)
    } else {
        return Ok(None);
    };
    let bad = |problem| TelemetryError::Endpoint {
        origin: source,
        value: redact(value),
        problem,
    };
    const NOT_HTTP: &str = "not an http(s) URL";
    let url = Url::parse(value).map_err(|_| bad(NOT_HTTP))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(NOT_HTTP));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in error messages; headers are the place for them.
        return Err(bad(
            "credentials in the URL are refused (send them with OTEL_EXPORTER_OTLP_HEADERS)",
        ));
    }
    let mut text = url.to_string();
    if append && !url.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        let mut url = url;
        let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        text = url.to_string();
    }
    Ok(Some(text))
}

/// The endpoint as shown in an error: any user and password removed.
fn redact(value: &str) -> String {
    match Url::parse(value) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) if value.contains('@') => "(unparseable URL)".to_string(),
        Err(_) => value.to_string(),
    }
}

fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

// ---------------------------------------------------------------------------------------
// logfmt

/// Formats an event as `ts=<RFC 3339, ms> level=<level> msg=<message> <event fields>
/// <span fields, root first> target=<target>`.
struct LogfmtEvents;

/// Formats span fields as `key=value` pairs (kept per span by tracing-subscriber).
struct LogfmtFields;

impl<S, N> FormatEvent<S, N> for LogfmtEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut visitor = LogfmtVisitor::default();
        event.record(&mut visitor);
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(
            writer,
            "ts={} level={level} msg=",
            humantime::format_rfc3339_millis(SystemTime::now())
        )?;
        write_value(&mut writer, visitor.message.as_deref().unwrap_or(""))?;
        writer.write_str(&visitor.fields)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " {fields}")?;
                }
            }
        }
        writer.write_str(" target=")?;
        // Records of the `log` crate all come from target "log"; show where they came from.
        write_value(
            &mut writer,
            visitor.log_target.as_deref().unwrap_or(meta.target()),
        )?;
        writeln!(writer)
    }
}

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = LogfmtVisitor::default();
        fields.record(&mut visitor);
        if let Some(message) = visitor.message.take() {
            // A span has no message field by convention; keep one if it does.
            visitor.push("message", &message);
        }
        writer.write_str(visitor.fields.trim_start())
    }
}

/// Collects the message apart and every other field as ` key=value`.
#[derive(Default)]
struct LogfmtVisitor {
    message: Option<String>,
    /// `log.target` of a record from the `log` crate.
    log_target: Option<String>,
    fields: String,
}

impl LogfmtVisitor {
    fn push(&mut self, key: &str, value: &str) {
        self.fields.push(' ');
        write_key(&mut self.fields, key);
        self.fields.push('=');
        let _ = write_value(&mut self.fields, value);
    }

    fn push_raw(&mut self, field: &Field, value: impl fmt::Display) {
        if skip(field) {
            return;
        }
        self.fields.push(' ');
        write_key(&mut self.fields, field.name());
        let _ = write!(self.fields, "={value}");
    }
}

/// `log.*` fields (from the `log` bridge) and `otel.*` (span kind and status for the
/// OTLP export) are noise in a log line.
fn skip(field: &Field) -> bool {
    field.name().starts_with("log.") || field.name().starts_with("otel.")
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else if field.name() == "log.target" {
            self.log_target = Some(value.to_string());
        } else if !skip(field) {
            self.push(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push_raw(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push_raw(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push_raw(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push_raw(field, value);
    }
}

/// A logfmt key: characters that would end it or start a value become `_`.
fn write_key(out: &mut String, key: &str) {
    if key.is_empty() {
        out.push('_');
        return;
    }
    out.extend(key.chars().map(|c| {
        if c <= ' ' || c == '=' || c == '"' || c.is_control() {
            '_'
        } else {
            c
        }
    }));
}

/// A logfmt value: bare when it can be, else double-quoted with `\"`, `\\`, `\n`, `\r`,
/// `\t` and `\u{…}` escapes (the go-logfmt rules: quote empty values and any with a space,
/// `=`, `"` or a control character).
fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c.is_control() || c.is_whitespace());
    if !needs_quotes {
        return out.write_str(value);
    }
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:04x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_log_levels_are_refused() {
        for ok in [
            "info",
            "WARN",
            "warn,rustls=debug",
            "oci_registry_exporter=trace",
            "off",
        ] {
            assert!(check_level(ok).is_ok(), "{ok}");
        }
        let err = check_level("verbose").unwrap_err().to_string();
        assert_eq!(
            err,
            "--log.level \"verbose\" is not a level or filter: \"verbose\" is neither a level nor target=level; use error, warn, info, debug or trace"
        );
    }

    fn value(s: &str) -> String {
        let mut out = String::new();
        write_value(&mut out, s).unwrap();
        out
    }

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(value("pass"), "pass");
        assert_eq!(value("/v2/library/alpine"), "/v2/library/alpine");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("two words"), "\"two words\"");
        assert_eq!(value("a=b"), "\"a=b\"");
        assert_eq!(value("say \"hi\"\n"), r#""say \"hi\"\n""#);
        assert_eq!(value("back\\slash x"), r#""back\\slash x""#);
    }

    #[test]
    fn logfmt_keys_are_sanitised() {
        let mut out = String::new();
        write_key(&mut out, "a key=\"x\"");
        assert_eq!(out, "a_key__x_");
    }

    #[test]
    fn endpoint_flag_wins_and_gets_the_traces_path() {
        let r = |f, t, b| resolve_endpoint(f, t, b).unwrap();
        assert_eq!(r(None, None, None), None);
        assert_eq!(r(None, Some(""), Some(" ")), None);
        assert_eq!(
            r(
                Some("http://127.0.0.1:4318"),
                None,
                Some("http://other:4318")
            )
            .as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            r(Some("http://c:4318/otlp/"), None, None).as_deref(),
            Some("http://c:4318/otlp/v1/traces")
        );
        assert_eq!(
            r(Some("https://c/v1/traces"), None, None).as_deref(),
            Some("https://c/v1/traces")
        );
        assert_eq!(
            r(None, Some("http://c:4318/custom"), Some("http://b:4318")).as_deref(),
            Some("http://c:4318/custom")
        );
        assert_eq!(
            r(None, None, Some("http://b:4318")).as_deref(),
            Some("http://b:4318/v1/traces")
        );
    }

    #[test]
    fn endpoint_errors_never_show_credentials() {
        for bad in ["http://user:hunter2@c:4318", "grpc://c:4317", "not a url"] {
            let e = resolve_endpoint(Some(bad), None, None)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("--otlp.endpoint"), "{e}");
        }
    }

    #[test]
    fn tls_and_http_libraries_are_quiet_unless_asked_for() {
        let has = |q: &str, d: &str| q.split(',').any(|x| x == d);
        let q = quiet_dependencies("warn");
        assert!(q.starts_with("warn,"), "{q}");
        for dep in DEPENDENCY_TARGETS {
            assert!(has(&q, &format!("{dep}=off")), "{q}");
        }
        assert!(EnvFilter::builder().parse(&q).is_ok(), "{q}");
        // A global debug or trace asks for everything.
        assert_eq!(quiet_dependencies("debug"), "debug");
        assert_eq!(quiet_dependencies("info,TRACE"), "info,TRACE");
        // Naming a library asks for it (and for what its name is a prefix of).
        let q = quiet_dependencies("warn,rustls=debug");
        assert!(!has(&q, "rustls=off"), "{q}");
        assert!(!has(&q, "rustls_platform_verifier=off"), "{q}");
        assert!(has(&q, "tokio_rustls=off") && has(&q, "hyper=off"), "{q}");
        // A narrower directive is added to, not overridden: the most specific one wins.
        let q = quiet_dependencies("info,hyper_util::client=trace");
        assert!(q.starts_with("info,hyper_util::client=trace,"), "{q}");
        assert!(has(&q, "hyper_util=off") && has(&q, "rustls=off"), "{q}");
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!("logfmt".parse::<LogFormat>().unwrap(), LogFormat::Logfmt);
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("text".parse::<LogFormat>().is_err());
    }
}
