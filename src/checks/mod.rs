//! The checks: their names, their one shape, and the typed result they produce.
//!
//! Each check lives in its own file with one entry point,
//! `pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult`. Checks make
//! requests through [`CheckContext::client`] and return a result; they never touch metrics
//! (see `metrics.rs`) and never write to a registry except the push test repository.

pub mod capabilities;
pub mod credentials;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use serde::Serialize;
use tracing::Instrument as _;

use crate::catalogue::Diagnosis;
use crate::client::{RegistryClient, Request, RequestError, RequestRecord, Response, Trail};
use crate::config::Target;

/// Every check this exporter knows, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Registry,
    Credentials,
    Pull,
    Push,
    Capabilities,
    Referrers,
}

impl EncodeLabelValue for CheckKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.short_name())
    }
}

impl CheckKind {
    pub const ALL: &'static [CheckKind] = &[
        CheckKind::Registry,
        CheckKind::Credentials,
        CheckKind::Pull,
        CheckKind::Push,
        CheckKind::Capabilities,
        CheckKind::Referrers,
    ];

    /// The short name: config key values, the `check` label, `/probe?check=`.
    pub fn short_name(self) -> &'static str {
        match self {
            CheckKind::Registry => "registry",
            CheckKind::Credentials => "credentials",
            CheckKind::Pull => "pull",
            CheckKind::Push => "push",
            CheckKind::Capabilities => "capabilities",
            CheckKind::Referrers => "referrers",
        }
    }

    /// The stable id, e.g. `check.integration.oci.registry`.
    pub fn id(self) -> &'static str {
        match self {
            CheckKind::Registry => "check.integration.oci.registry",
            CheckKind::Credentials => "check.integration.oci.credentials",
            CheckKind::Pull => "check.integration.oci.pull",
            CheckKind::Push => "check.integration.oci.push",
            CheckKind::Capabilities => "check.integration.oci.capabilities",
            CheckKind::Referrers => "check.integration.oci.referrers",
        }
    }

    /// Accepts the short name or the id.
    pub fn parse(name: &str) -> Option<CheckKind> {
        let name = name.trim();
        CheckKind::ALL
            .iter()
            .copied()
            .find(|c| c.short_name() == name || c.id() == name)
    }
}

/// Declares a label enum with its list of values and their names, so the names live once.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// The outcome class of one check run.
    Status {
        Pass => "pass",
        Info => "info",
        Warn => "warn",
        Fail => "fail",
        Skip => "skip",
    }
}

label_enum! {
    /// A bounded, machine-readable reason for a status: a label value, never free text.
    Reason {
        Ok => "ok",
        ConnectionRefused => "connection_refused",
        Dns => "dns",
        Tls => "tls",
        Timeout => "timeout",
        ConnectionError => "connection_error",
        Unauthorized => "unauthorized",
        InvalidCredentials => "invalid_credentials",
        Forbidden => "forbidden",
        NotFound => "not_found",
        /// Something answers, but not as an OCI registry does.
        NotARegistry => "not_a_registry",
        UnexpectedStatus => "unexpected_status",
        ServerError => "server_error",
        RateLimited => "rate_limited",
        InvalidResponse => "invalid_response",
        TokenEndpointUnreachable => "token_endpoint_unreachable",
        TokenEndpointError => "token_endpoint_error",
        MissingPassword => "missing_password",
        SecretUnreadable => "secret_unreadable",
        /// A write check was skipped because no credentials are configured.
        NoCredentials => "no_credentials",
        /// The registry refuses writes (HTTP 405): read-only or maintenance mode.
        ReadOnly => "read_only",
        /// The registry lacks an API or capability the check looks for.
        Unsupported => "unsupported",
    }
}

label_enum! {
    /// A registry capability probed by the capabilities check.
    Capability {
        ApiVersion => "api_version",
        Referrers => "referrers",
        ChunkedUpload => "chunked_upload",
        CrossRepoMount => "cross_repo_mount",
        Delete => "delete",
    }
}

label_enum! {
    /// What a capability probe found.
    CapabilityStatus {
        Supported => "supported",
        Unsupported => "unsupported",
        /// No permission to probe it: no credentials, or an insufficient scope.
        Denied => "denied",
        Error => "error",
    }
}

label_enum! {
    /// How the exporter authenticates to a registry (a label value).
    AuthMethod {
        Anonymous => "anonymous",
        Basic => "basic",
        Bearer => "bearer",
        DockerConfig => "docker_config",
        CredentialHelper => "credential_helper",
        IdentityToken => "identity_token",
    }
}

/// Typed facts a check (or its client) learned besides its status, each exported by
/// `Metrics::record` when present. `None` and empty mean "not observed in this run".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// Credentials check: the authentication method in use.
    pub auth_method: Option<AuthMethod>,
    /// How long the last token exchange took.
    #[serde(with = "humantime_serde")]
    pub token_request_duration: Option<Duration>,
    /// When the token obtained in this run expires, if the token server said.
    #[serde(with = "humantime_serde")]
    pub token_expiry: Option<SystemTime>,
    /// Earliest `notAfter` of the registry's certificate chain.
    #[serde(with = "humantime_serde")]
    pub tls_certificate_expiry: Option<SystemTime>,
    /// Earliest `notAfter` of the token endpoint's certificate chain.
    #[serde(with = "humantime_serde")]
    pub token_endpoint_tls_certificate_expiry: Option<SystemTime>,
    /// `RateLimit-Limit` and `RateLimit-Remaining`, when the registry sends them.
    pub rate_limit: Option<RateLimit>,
    /// `Retry-After` of a 429, for the scheduler.
    #[serde(with = "humantime_serde")]
    pub retry_after: Option<Duration>,
    /// Push check: whether the upload session it opened was cancelled.
    pub upload_cancelled: Option<bool>,
    /// Capabilities check: the state of each capability it probed.
    pub capabilities: Vec<(Capability, CapabilityStatus)>,
    /// Referrers check: how many referrers the test image has.
    pub referrers_count: Option<u64>,
}

/// A registry's advertised request budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateLimit {
    pub limit: f64,
    pub remaining: f64,
}

/// What one check run found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub status: Status,
    pub reason: Reason,
    /// One line in plain words, free of secrets.
    pub message: String,
    /// The HTTP status that decided the outcome; `None` when no response came.
    pub http_status: Option<u16>,
    /// The registry's API version header, when it looked like one.
    pub api_version: Option<String>,
    /// Typed facts for metrics beyond status (tokens, TLS, rate limits, capabilities).
    pub facts: Facts,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(with = "humantime_serde")]
    pub finished_at: SystemTime,
    /// Facts for logs and debug output (digest, media type, API version, auth method).
    pub evidence: BTreeMap<&'static str, String>,
    /// Every HTTP request the check made, in order.
    pub requests: Vec<RequestRecord>,
    /// The likely cause and its fix steps, for results that are not a pass.
    pub diagnosis: Option<Diagnosis>,
    /// The runbook section for this check and reason.
    pub runbook_url: String,
}

impl CheckResult {
    pub fn new(
        check: CheckKind,
        status: Status,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        CheckResult {
            check,
            status,
            reason,
            message: message.into(),
            http_status: None,
            api_version: None,
            facts: Facts::default(),
            duration: Duration::ZERO,
            finished_at: SystemTime::now(),
            evidence: BTreeMap::new(),
            requests: Vec::new(),
            diagnosis: None,
            runbook_url: String::new(),
        }
    }

    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub fn with_evidence(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.evidence.insert(key, value.into());
        self
    }

    /// The failed result for a request that got no usable answer.
    pub fn from_request_error(check: CheckKind, what: &str, err: &RequestError) -> Self {
        CheckResult::new(check, Status::Fail, err.reason(), format!("{what}: {err}"))
    }
}

/// What a check gets besides its target: the shared client for that registry, and the
/// trail of requests made so far (kept outside the check's future, so a timed-out check
/// still shows what it did).
pub struct CheckContext {
    pub client: Arc<RegistryClient>,
    trail: Trail,
}

impl CheckContext {
    /// Whether a token was requested during this run (the credentials check reports it).
    pub fn trail_has_token_request(&self) -> bool {
        self.trail.has_token_request()
    }

    pub fn new(client: Arc<RegistryClient>) -> Self {
        CheckContext {
            client,
            trail: Trail::default(),
        }
    }

    /// Sends one request through the registry's client, recording it in the trail.
    pub async fn send(&self, request: Request) -> Result<Response, RequestError> {
        self.client.send(request, &self.trail).await
    }
}

/// Adds what the client learned to what the check found; the check's own facts win.
fn merge_facts(into: &mut Facts, from: Facts) {
    into.auth_method = into.auth_method.or(from.auth_method);
    into.token_request_duration = into.token_request_duration.or(from.token_request_duration);
    into.token_expiry = into.token_expiry.or(from.token_expiry);
    into.tls_certificate_expiry = into.tls_certificate_expiry.or(from.tls_certificate_expiry);
    into.token_endpoint_tls_certificate_expiry = into
        .token_endpoint_tls_certificate_expiry
        .or(from.token_endpoint_tls_certificate_expiry);
    into.rate_limit = into.rate_limit.or(from.rate_limit);
    into.retry_after = into.retry_after.or(from.retry_after);
    into.upload_cancelled = into.upload_cancelled.or(from.upload_cancelled);
    if into.capabilities.is_empty() {
        into.capabilities = from.capabilities;
    }
    into.referrers_count = into.referrers_count.or(from.referrers_count);
}

/// Runs one check with the target's timeout and fills in duration and request trail.
///
/// The run is the span `check` (see `telemetry`); its requests are child spans.
pub async fn run_check(
    kind: CheckKind,
    target: &Target,
    client: &Arc<RegistryClient>,
) -> CheckResult {
    let span = tracing::info_span!(
        "check",
        registry = %target.name,
        check = kind.short_name(),
        status = tracing::field::Empty,
        reason = tracing::field::Empty,
        http_status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let cx = CheckContext::new(client.clone());
    let started = Instant::now();
    let fut = async {
        match kind {
            CheckKind::Registry => registry::run(target, &cx).await,
            CheckKind::Credentials => credentials::run(target, &cx).await,
            CheckKind::Pull => pull::run(target, &cx).await,
            CheckKind::Push => push::run(target, &cx).await,
            CheckKind::Capabilities => capabilities::run(target, &cx).await,
            CheckKind::Referrers => referrers::run(target, &cx).await,
        }
    }
    .instrument(span.clone());
    let mut result = match tokio::time::timeout(target.timeout, fut).await {
        Ok(result) => result,
        Err(_) => CheckResult::new(
            kind,
            Status::Fail,
            Reason::Timeout,
            format!(
                "no answer within the timeout of {}; the registry is slow or unreachable (raise `timeout` if it is just slow)",
                humantime::format_duration(target.timeout)
            ),
        ),
    };
    result.duration = started.elapsed();
    result.finished_at = SystemTime::now();
    span.record("status", result.status.as_str());
    span.record("reason", result.reason.as_str());
    if let Some(code) = result.http_status {
        span.record("http_status", code);
    }
    span.record("duration_ms", result.duration.as_millis() as u64);
    if result.status == Status::Fail {
        span.record("otel.status_code", "error");
    }
    let (requests, facts) = cx.trail.take();
    result.requests = requests;
    merge_facts(&mut result.facts, facts);
    result
        .evidence
        .entry("auth_method")
        .or_insert_with(|| target.credentials.method().to_string());
    result
}
