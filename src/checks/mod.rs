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

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::FutureExt as _;
use tracing::Instrument as _;

use crate::client::{RegistryClient, RequestError, Trail};
use crate::config::Target;
use crate::distribution::{Answer, Api, Class};
pub use crate::outcome::{
    AuthMethod, Capability, CapabilityStatus, CheckKind, CheckResult, Facts, RateLimit, Reason,
    Status,
};

// An inherent impl outside `outcome`, so that the leaf module need not know `client`.
impl CheckResult {
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

    /// The Distribution API of the registry, its requests recorded in this run's trail.
    pub fn api(&self) -> Api<'_> {
        Api::new(&self.client, &self.trail)
    }

    /// Whether the check acts without credentials (none configured, or a Docker config
    /// without an entry for this registry); the failed result when they cannot be read.
    pub async fn anonymous(&self, kind: CheckKind) -> Result<bool, CheckResult> {
        match self.client.auth_method().await {
            Ok(method) => Ok(method == AuthMethod::Anonymous),
            Err(e) => Err(CheckResult::from_request_error(
                kind,
                "reading the credentials",
                &e,
            )),
        }
    }

    /// Whether any request of this run so far carried credentials or a token.
    pub fn sent_credentials(&self) -> bool {
        self.trail.sent_credentials()
    }
}

/// The status, reason and words for an answer that is not a success: one table for every
/// check, from the answer's class (status, OCI error code and message, challenge) and
/// whether the check acted with credentials. `doing` names the act ("pulling a:b"),
/// `repo` the repository it concerned.
pub(crate) fn refused(
    kind: CheckKind,
    answer: &Answer,
    anonymous: bool,
    doing: &str,
    repo: &str,
) -> CheckResult {
    let what = answer.describe();
    let writes = kind == CheckKind::Push;
    let permission = if writes { "push" } else { "pull" };
    let (status, reason, message) = match answer.class {
        Class::Success => (
            Status::Pass,
            Reason::Ok,
            format!("{doing} succeeded ({what})"),
        ),
        Class::BadChallenge => (
            Status::Fail,
            Reason::InvalidResponse,
            format!(
                "the registry answered {what} when {doing}: its WWW-Authenticate challenge cannot be parsed (bytes outside ASCII or broken quoting), so neither the credentials nor their absence can be judged; check the auth configuration of the registry or of the proxy in front of it"
            ),
        ),
        Class::Unauthenticated | Class::NotPermitted if anonymous => (
            Status::Fail,
            Reason::Unauthorized,
            format!(
                "{doing} requires authentication and no credentials are configured ({what}); configure credentials: username and password_file, token_file or docker_config"
            ),
        ),
        Class::Unauthenticated => (
            Status::Fail,
            Reason::InvalidCredentials,
            format!(
                "the registry rejected the credentials when {doing} ({what}): they are wrong, rotated or revoked"
            ),
        ),
        Class::NotPermitted => (
            Status::Fail,
            Reason::Forbidden,
            format!(
                "valid credentials, but no {permission} permission on {repo} ({what}); grant {permission} on the repository"
            ),
        ),
        Class::CredentialsExpired => (
            Status::Fail,
            Reason::CredentialsExpired,
            format!(
                "the registry says the credentials have expired when {doing} ({what}{}); refresh them",
                quoted_message(answer)
            ),
        ),
        Class::ReadOnly if writes => (
            Status::Fail,
            Reason::ReadOnly,
            format!(
                "the registry refuses writes to {repo} ({what}{}): it is in read-only or maintenance mode, so pushes by users fail too",
                quoted_message(answer)
            ),
        ),
        Class::Unsupported if writes => (
            Status::Fail,
            Reason::ReadOnly,
            format!("the registry does not accept uploads to {repo} ({what})"),
        ),
        Class::RepositoryUnknown | Class::NotFound if writes => (
            Status::Fail,
            Reason::RepositoryNotFound,
            format!(
                "{repo} does not exist ({what}) and the registry does not create repositories on push; create the repository or point `push_test_repository` at one"
            ),
        ),
        Class::RepositoryUnknown => (
            Status::Info,
            Reason::NotFound,
            format!(
                "{doing} found no repository {repo} ({what}), so this cannot be verified; push a test image or set `test_repository` and `test_tag` to an image that exists"
            ),
        ),
        Class::NotFound => (
            Status::Info,
            Reason::NotFound,
            format!(
                "{doing} found no such image ({what}), so this cannot be verified; push it or set `test_repository` and `test_tag` to an image that exists"
            ),
        ),
        Class::RateLimited => (
            Status::Fail,
            Reason::RateLimited,
            format!("{doing} is rate limited ({what}); users are limited too"),
        ),
        Class::ServerError => (
            Status::Fail,
            Reason::ServerError,
            format!("the registry answered {what} when {doing}: it is unhealthy"),
        ),
        Class::ReadOnly | Class::Unsupported | Class::Unexpected => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("the registry answered {what} when {doing}, which the check does not expect"),
        ),
    };
    let mut result =
        CheckResult::new(kind, status, reason, message).with_http_status(answer.status);
    result.facts.error_code = answer.error.as_ref().map(|e| e.code.clone());
    result
}

/// `: "<registry's message>"`, or nothing.
fn quoted_message(answer: &Answer) -> String {
    match &answer.error {
        Some(e) if !e.message.is_empty() => format!(": \"{}\"", e.message),
        _ => String::new(),
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
    into.error_code = into.error_code.take().or(from.error_code);
    into.blob_duration = into.blob_duration.or(from.blob_duration);
    into.implementation = into.implementation.or(from.implementation);
}

/// The longest panic message kept in a result.
const MAX_PANIC_TEXT: usize = 200;

/// Runs a check's future and turns a panic into a `fail` result with reason
/// `internal_error` and an error log line: one check's bug never takes its registry's
/// schedule, a `/probe` answer or the doctor's report down with it.
///
/// `AssertUnwindSafe` holds because what a check shares outlives it only behind mutexes
/// whose every user recovers from poisoning (`RegistryClient`'s caches, the `Trail`), and
/// a half-written cache entry is at worst a token fetched again.
pub(crate) async fn contain_panic<F>(kind: CheckKind, registry: &str, fut: F) -> CheckResult
where
    F: Future<Output = CheckResult>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            let text: String = text.chars().take(MAX_PANIC_TEXT).collect();
            tracing::error!(
                registry,
                check = kind.short_name(),
                panic = %text,
                "a check panicked: a bug in the exporter, not a registry fault; the check fails with reason internal_error and runs again at its next turn"
            );
            CheckResult::new(
                kind,
                Status::Fail,
                Reason::InternalError,
                format!(
                    "the check panicked ({text}): a bug in the exporter, not a registry fault; report it with this message and the exporter's version"
                ),
            )
        }
    }
}

/// Runs one check with the target's timeout and fills in duration and request trail.
///
/// The run is the span `check` (see `telemetry`); its requests are child spans. A panic
/// in the check becomes a `fail` result (see [`contain_panic`]).
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
    let contained = contain_panic(kind, &target.name, fut);
    let mut result = match tokio::time::timeout(target.timeout, contained).await {
        Ok(result) => result,
        Err(_) => CheckResult::new(
            kind,
            Status::Fail,
            Reason::Timeout,
            format!(
                "no answer within the timeout of {}; the registry is slow or unreachable (raise `timeout` if it is just slow){}",
                humantime::format_duration(target.timeout),
                // With a proxy, the stuck party may be the proxy: name it.
                client
                    .proxy_for(&target.url)
                    .map(|p| format!("; the requests went through {p}"))
                    .unwrap_or_default()
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
    let (mut requests, facts) = cx.trail.take();
    // A registry may echo a credential into what becomes a message, evidence or a note
    // (a Content-Type, a challenge's scope); headers were redacted as they were kept.
    let redactor = client.redactor();
    result.message = redactor.scrub(&result.message);
    for value in result.evidence.values_mut() {
        *value = redactor.scrub(value);
    }
    for note in requests.iter_mut().filter_map(|r| r.note.as_mut()) {
        *note = redactor.scrub(note);
    }
    result.requests = requests;
    merge_facts(&mut result.facts, facts);
    // Advice depends on the method in use (a Docker config may resolve to a helper or to
    // nothing), so every result carries it. Not when resolving is what just failed: a hung
    // credential helper would cost its timeout a second time, outside the check's.
    if result.facts.auth_method.is_none() && result.reason != Reason::SecretUnreadable {
        result.facts.auth_method = client.auth_method().await.ok();
    }
    result
        .evidence
        .entry("auth_method")
        .or_insert_with(|| target.credentials.method().to_string());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_check_becomes_fail_internal_error() {
        let panicking = async {
            // The real panic issue 12 found: an `Instant` pushed past its range.
            let _ = Instant::now() + std::time::Duration::from_secs(u64::MAX);
            CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "unreachable")
        };
        let r = contain_panic(CheckKind::Pull, "reg", panicking).await;
        assert_eq!(
            (r.check, r.status, r.reason),
            (CheckKind::Pull, Status::Fail, Reason::InternalError)
        );
        assert!(r.message.contains("overflow"), "{}", r.message);
        assert!(r.message.contains("bug in the exporter"), "{}", r.message);

        let fine = async { CheckResult::new(CheckKind::Pull, Status::Pass, Reason::Ok, "ok") };
        let r = contain_panic(CheckKind::Pull, "reg", fine).await;
        assert_eq!((r.status, r.reason), (Status::Pass, Reason::Ok));
    }
}
