//! The checks: their names, their one shape, and the typed result they produce.
//!
//! Each check lives in its own file with one entry point,
//! `pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult`. Checks make
//! requests through [`CheckContext::client`] and return a result; they never touch metrics
//! (see `metrics/`) and never write to a registry except the push test repository.

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

    /// Who acted, for [`refused`]: without credentials, or with credentials that the token
    /// service or a Basic-authenticated request accepted earlier in this run. Read it after
    /// the requests it judges.
    pub fn acting(&self, anonymous: bool) -> Acting {
        Acting {
            anonymous,
            credentials_accepted: !anonymous && self.trail.credentials_accepted(),
        }
    }
}

/// Who made the requests an answer refused: what [`refused`] needs to blame the right
/// thing. A bare `bool` is "anonymous or not", with no evidence about the credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acting {
    /// No credentials were configured.
    pub anonymous: bool,
    /// The token service issued a token for the credentials in this run, or a request
    /// carrying them was answered 2xx: they are good, so a 401/403 on a repository is a
    /// missing permission (Quay and Harbor answer a robot without the permission with
    /// `401 UNAUTHORIZED`, no `insufficient_scope`).
    pub credentials_accepted: bool,
}

impl From<bool> for Acting {
    fn from(anonymous: bool) -> Acting {
        Acting {
            anonymous,
            credentials_accepted: false,
        }
    }
}

/// The status, reason and words for an answer that is not a success: one table for every
/// check, from the answer's class (status, OCI error code and message, challenge, content)
/// and who acted (see [`Acting`]). `doing` names the act ("pulling a:b"), `repo` the
/// repository it concerned. Every refusal quotes the registry's own message (bounded, one
/// line; `run_check` redacts it) and the fix never contradicts it.
pub(crate) fn refused(
    kind: CheckKind,
    answer: &Answer,
    acting: impl Into<Acting>,
    doing: &str,
    repo: &str,
) -> CheckResult {
    let writes = kind == CheckKind::Push;
    refusal(kind, writes, answer, acting.into(), doing, repo)
}

/// [`refused`] for an act that writes (`writes`) or reads, whatever the check: the
/// capabilities check's write probes are judged as the push check's request is. Each
/// class of answer is worded by one of three tables ([`Refusal`]).
pub(crate) fn refusal(
    kind: CheckKind,
    writes: bool,
    answer: &Answer,
    acting: Acting,
    doing: &str,
    repo: &str,
) -> CheckResult {
    let words = Refusal {
        answer,
        acting,
        writes,
        doing,
        repo,
        what: answer.describe(),
        said: quoted_message(answer),
    };
    let (status, reason, message) = match answer.class {
        Class::Success
        | Class::NotTheApi
        | Class::Malformed
        | Class::NoChallenge
        | Class::BadChallenge
        | Class::RateLimited
        | Class::ServerError
        | Class::Unexpected => words.answered(),
        Class::Unauthenticated | Class::NotPermitted | Class::CredentialsExpired => {
            words.credentials()
        }
        Class::ProxyCache
        | Class::ReadOnly
        | Class::Unsupported
        | Class::RepositoryUnknown
        | Class::NotFound => words.repository(),
    };
    let mut result =
        CheckResult::new(kind, status, reason, message).with_http_status(answer.status);
    result.facts.error_code = answer.error.as_ref().map(|e| e.code.clone());
    with_answer_evidence(result, answer)
}

/// A verdict's status, reason and message.
type Verdict = (Status, Reason, String);

/// What [`refusal`] words a verdict from: the answer, who acted, the act and its words.
struct Refusal<'a> {
    answer: &'a Answer,
    acting: Acting,
    writes: bool,
    doing: &'a str,
    repo: &'a str,
    /// The answer, described ("HTTP 403 DENIED").
    what: String,
    /// The registry's own message, quoted (`: "..."`), or empty.
    said: String,
}

impl Refusal<'_> {
    /// The pull or push permission the act needs.
    fn permission(&self) -> &'static str {
        if self.writes { "push" } else { "pull" }
    }

    /// An answer the act does not expect (also what a class routed to the wrong table
    /// would get, rather than a panic).
    fn unexpected(&self) -> Verdict {
        let (doing, what, said) = (self.doing, &self.what, &self.said);
        (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!(
                "the registry answered {what} when {doing}{said}, which the check does not expect"
            ),
        )
    }

    /// What answered, and how: the API or not, its challenge, limits, health.
    fn answered(&self) -> Verdict {
        let (doing, what, said) = (self.doing, &self.what, &self.said);
        match self.answer.class {
            Class::Success => (
                Status::Pass,
                Reason::Ok,
                format!("{doing} succeeded ({what})"),
            ),
            Class::NotTheApi => {
                let (who, excerpt) = match &self.answer.foreign {
                    Some(f) => (f.describe(), format!("; {}", f.excerpt())),
                    None => (
                        "something that is not the registry API".to_string(),
                        String::new(),
                    ),
                };
                (
                    Status::Fail,
                    Reason::NotARegistry,
                    format!(
                        "{doing} got {who} instead of the registry API (HTTP {}{excerpt}); registry clients fail the same way: point `url` at the registry's API, or exempt /v2/ from whatever answers in front of it",
                        self.answer.status
                    ),
                )
            }
            Class::Malformed => (
                Status::Fail,
                Reason::InvalidResponse,
                format!(
                    "{doing}: {} (HTTP {})",
                    self.answer
                        .foreign
                        .as_ref()
                        .map(|f| f.why.clone())
                        .unwrap_or_else(|| "a malformed answer".into()),
                    self.answer.status
                ),
            ),
            Class::NoChallenge => (
                Status::Fail,
                Reason::NoChallenge,
                format!(
                    "the registry answered {what} when {doing}{said}: without a challenge no client (docker, containerd, skopeo) knows how to authenticate, so none sends credentials; a reverse proxy or load balancer in front of the registry most likely strips the header (nginx proxy_hide_header, a header policy): let WWW-Authenticate through"
                ),
            ),
            Class::BadChallenge => (
                Status::Fail,
                Reason::InvalidResponse,
                format!(
                    "the registry answered {what} when {doing}: its WWW-Authenticate challenge cannot be parsed (bytes outside ASCII or broken quoting), so neither the credentials nor their absence can be judged; check the auth configuration of the registry or of the proxy in front of it"
                ),
            ),
            Class::RateLimited => (
                Status::Fail,
                Reason::RateLimited,
                format!("{doing} is rate limited ({what}{said}); users are limited too"),
            ),
            Class::ServerError => (
                Status::Fail,
                Reason::ServerError,
                format!("the registry answered {what} when {doing}{said}: it is unhealthy"),
            ),
            _ => self.unexpected(),
        }
    }

    /// The credentials: none, rejected, expired, or accepted without the permission.
    fn credentials(&self) -> Verdict {
        let (doing, repo, what, said) = (self.doing, self.repo, &self.what, &self.said);
        let permission = self.permission();
        match self.answer.class {
            Class::Unauthenticated | Class::NotPermitted if self.acting.anonymous => (
                Status::Fail,
                Reason::Unauthorized,
                format!(
                    "{doing} requires authentication and no credentials are configured ({what}{said}); configure credentials: username and password_file, token_file or docker_config"
                ),
            ),
            // `invalid_token` names the token itself as bad, whatever was accepted before.
            Class::Unauthenticated
                if self.acting.credentials_accepted && !invalid_token(self.answer) =>
            {
                (
                    Status::Fail,
                    Reason::Forbidden,
                    format!(
                        "the credentials were accepted (the token service issued a token for them, or the registry took them), but {doing} was refused ({what}{said}): they have no {permission} permission on {repo}; grant {permission} on the repository"
                    ),
                )
            }
            Class::Unauthenticated => (
                Status::Fail,
                Reason::InvalidCredentials,
                format!(
                    "the registry rejected the credentials when {doing} ({what}{said}): they are wrong, rotated or revoked"
                ),
            ),
            Class::NotPermitted => (
                Status::Fail,
                Reason::Forbidden,
                format!(
                    "{doing} was refused ({what}{said}): valid credentials, but no {permission} permission on {repo}; grant {permission} on the repository"
                ),
            ),
            Class::CredentialsExpired => (
                Status::Fail,
                Reason::CredentialsExpired,
                format!(
                    "the registry says the credentials have expired when {doing} ({what}{said}); refresh them"
                ),
            ),
            _ => self.unexpected(),
        }
    }

    /// The repository or image: a pull-through cache, read-only, missing.
    fn repository(&self) -> Verdict {
        let (doing, repo, what, said) = (self.doing, self.repo, &self.what, &self.said);
        match self.answer.class {
            Class::ProxyCache => (
                Status::Fail,
                Reason::ReadOnly,
                format!(
                    "the registry refuses writes to {repo} ({what}{said}): it belongs to a pull-through (proxy-cache) project, which nobody can push to; point `push_test_repository` at a repository in an ordinary project"
                ),
            ),
            Class::ReadOnly if self.writes => (
                Status::Fail,
                Reason::ReadOnly,
                format!(
                    "the registry refuses writes to {repo} ({what}{said}): it is in read-only or maintenance mode, so pushes by users fail too"
                ),
            ),
            Class::Unsupported if self.writes => (
                Status::Fail,
                Reason::ReadOnly,
                format!("the registry does not accept uploads to {repo} ({what}{said})"),
            ),
            Class::RepositoryUnknown | Class::NotFound if self.writes => (
                Status::Fail,
                Reason::RepositoryNotFound,
                format!(
                    "{repo} does not exist ({what}{said}) and the registry does not create repositories on push; create the repository or point `push_test_repository` at one"
                ),
            ),
            Class::RepositoryUnknown => (
                Status::Info,
                Reason::NotFound,
                format!(
                    "{doing} found no repository {repo} ({what}{said}), so this cannot be verified; push a test image or set `test_repository` and `test_tag` to an image that exists"
                ),
            ),
            Class::NotFound => (
                Status::Info,
                Reason::NotFound,
                format!(
                    "{doing} found no such image ({what}{said}), so this cannot be verified; push it or set `test_repository` and `test_tag` to an image that exists"
                ),
            ),
            _ => self.unexpected(),
        }
    }
}

/// The registry's own message and, for an answer that is not the API's, what answered:
/// as evidence, so logs and the debug output carry them apart from the message.
pub(crate) fn with_answer_evidence(mut result: CheckResult, answer: &Answer) -> CheckResult {
    if let Some(message) = answer.message() {
        result = result.with_evidence("registry_message", message);
    }
    if let Some(f) = &answer.foreign {
        if let Some(ct) = &f.content_type {
            result = result.with_evidence("content_type", ct.clone());
        }
        if !f.first_bytes.is_empty() {
            result = result.with_evidence("body_start", f.first_bytes.clone());
        }
        if let Some(url) = &f.final_url {
            result = result.with_evidence("final_url", url.clone());
        }
    }
    result
}

/// A 401 whose Bearer challenge says the token itself is invalid (RFC 6750 §3.1).
fn invalid_token(answer: &Answer) -> bool {
    answer.challenge_error.as_deref() == Some("invalid_token")
}

/// `: "<registry's message>"`, or nothing.
fn quoted_message(answer: &Answer) -> String {
    match answer.message() {
        Some(m) => format!(": \"{m}\""),
        None => String::new(),
    }
}

/// Reasons with which the registry check names `/v2/` itself as the cause: nothing
/// answers, something else answers, or the registry is down.
const REGISTRY_ROOTS: &[Reason] = &[
    Reason::ConnectionRefused,
    Reason::Dns,
    Reason::Tls,
    Reason::Timeout,
    Reason::ConnectionError,
    Reason::NotARegistry,
    Reason::NoChallenge,
    Reason::ServerError,
    // The forward proxy every request goes through: the registry check names it first.
    Reason::ProxyUnreachable,
    Reason::ProxyAuthRequired,
    Reason::ProxyError,
];

/// No answer at all: what the registry check's transport failure explains.
const UNREACHABLE: &[Reason] = &[
    Reason::ConnectionRefused,
    Reason::Dns,
    Reason::Tls,
    Reason::Timeout,
    Reason::ConnectionError,
    Reason::TokenEndpointUnreachable,
    Reason::ProxyUnreachable,
    Reason::ProxyAuthRequired,
    Reason::ProxyError,
];

/// What a failing registry (5xx at `/v2/`) explains: its other failures, not a refusal
/// another request got an answer for.
const SERVER_CONSEQUENCES: &[Reason] = &[
    Reason::ServerError,
    Reason::UnexpectedStatus,
    Reason::InvalidResponse,
    Reason::NotARegistry,
    Reason::ConnectionRefused,
    Reason::Dns,
    Reason::Tls,
    Reason::Timeout,
    Reason::ConnectionError,
];

/// Whether a root cause found with `root` (a reason of [`REGISTRY_ROOTS`] or
/// [`CREDENTIAL_ROOTS`]) explains a result with `reason`. A `/v2/` that is not the API or
/// gives no challenge explains everything; an unreachable or failing `/v2/` explains only
/// failures of the same kind (a pull that got a 403 meanwhile was answered: that stands).
fn explains(root: Reason, reason: Reason) -> bool {
    match root {
        Reason::NotARegistry | Reason::NoChallenge => true,
        Reason::ServerError => SERVER_CONSEQUENCES.contains(&reason),
        Reason::InvalidCredentials | Reason::CredentialsExpired => {
            CREDENTIAL_CONSEQUENCES.contains(&reason)
        }
        _ => UNREACHABLE.contains(&reason),
    }
}

/// Reasons with which the credentials check names the credentials as the cause.
const CREDENTIAL_ROOTS: &[Reason] = &[Reason::InvalidCredentials, Reason::CredentialsExpired];

/// Reasons a check gives on its own that bad credentials explain: a refusal, a missing
/// image it could not see, an answer it did not expect.
const CREDENTIAL_CONSEQUENCES: &[Reason] = &[
    Reason::Unauthorized,
    Reason::InvalidCredentials,
    Reason::CredentialsExpired,
    Reason::Forbidden,
    Reason::NotFound,
    Reason::RepositoryNotFound,
    Reason::TokenEndpointError,
    Reason::UnexpectedStatus,
    Reason::InvalidResponse,
];

/// One finding per cause, the same in every check: when the registry check found that
/// `/v2/` is unreachable, not the API, without a challenge or failing (5xx), or the
/// credentials check found the credentials expired or rejected, every other result of the
/// round that is not a pass and that cause explains ([`explains`]) takes that cause's
/// reason, says so, and names the root in `consequence_of`, instead of a verdict of its
/// own ("grant pull" for an expired ECR token). Called on a round's results before they are annotated and recorded, so the
/// metrics, the `/` page and the doctor show the same.
pub fn follow_root_causes(results: &mut [CheckResult]) {
    let root = results
        .iter()
        .find(|r| {
            r.check == CheckKind::Registry
                && matches!(r.status, Status::Fail | Status::Warn)
                && REGISTRY_ROOTS.contains(&r.reason)
        })
        .or_else(|| {
            results.iter().find(|r| {
                r.check == CheckKind::Credentials
                    && r.status == Status::Fail
                    && CREDENTIAL_ROOTS.contains(&r.reason)
            })
        })
        .map(|r| (r.check, r.reason, r.status, r.message.clone()));
    let Some((root, reason, root_status, root_message)) = root else {
        return;
    };
    for r in results.iter_mut() {
        let explained = r.check != root
            && !matches!(r.status, Status::Pass | Status::Skip)
            && explains(reason, r.reason);
        if !explained {
            continue;
        }
        // The root's finding, not this check's own guess at a cause (which may contradict
        // it: "grant pull" for an expired token); what this check got stays visible.
        let got = match r.http_status {
            Some(code) => format!("HTTP {code}"),
            None => r.reason.as_str().replace('_', " "),
        };
        r.message = format!(
            "consequence of {}: {root_message} (this check got {got})",
            root.id()
        );
        r.reason = reason;
        // A consequence is never milder than its cause, except that a check which only
        // informs (capabilities) keeps informing.
        if r.status == Status::Warn && root_status == Status::Fail {
            r.status = Status::Fail;
        }
        r.consequence_of = Some(root);
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
    let span = check_span(kind, target);
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
        Err(_) => timed_out(kind, target, client),
    };
    result.duration = started.elapsed();
    result.finished_at = SystemTime::now();
    record_on(&span, &result);
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

/// The span `check` a run is: its outcome's fields stay empty until [`record_on`] fills them.
fn check_span(kind: CheckKind, target: &Target) -> tracing::Span {
    tracing::info_span!(
        "check",
        registry = %target.name,
        check = kind.short_name(),
        status = tracing::field::Empty,
        reason = tracing::field::Empty,
        http_status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// The failed result of a check that did not finish within the target's timeout.
fn timed_out(kind: CheckKind, target: &Target, client: &RegistryClient) -> CheckResult {
    CheckResult::new(
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
    )
}

/// Writes a finished check's outcome into its span (a failure marks the span an error).
fn record_on(span: &tracing::Span, result: &CheckResult) {
    span.record("status", result.status.as_str());
    span.record("reason", result.reason.as_str());
    if let Some(code) = result.http_status {
        span.record("http_status", code);
    }
    span.record("duration_ms", result.duration.as_millis() as u64);
    if result.status == Status::Fail {
        span.record("otel.status_code", "error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(check: CheckKind, status: Status, reason: Reason) -> CheckResult {
        CheckResult::new(
            check,
            status,
            reason,
            format!("{} said so", check.short_name()),
        )
    }

    #[test]
    fn a_root_cause_is_followed_by_what_it_explains_only() {
        use CheckKind as K;
        // Expired credentials explain the pull's "forbidden", not the referrers'
        // "unsupported", and a pass stays a pass.
        let mut round = vec![
            result(K::Registry, Status::Pass, Reason::Ok),
            result(K::Credentials, Status::Fail, Reason::CredentialsExpired),
            result(K::Pull, Status::Fail, Reason::Forbidden),
            result(K::Push, Status::Pass, Reason::Ok),
            result(K::Referrers, Status::Warn, Reason::Unsupported),
        ];
        follow_root_causes(&mut round);
        assert_eq!(
            (round[2].reason, round[2].consequence_of),
            (Reason::CredentialsExpired, Some(K::Credentials))
        );
        assert!(
            round[2].message.starts_with(
                "consequence of check.integration.oci.credentials: credentials said so"
            )
        );
        assert_eq!(
            (round[3].status, round[3].consequence_of),
            (Status::Pass, None)
        );
        assert_eq!(
            (round[4].reason, round[4].consequence_of),
            (Reason::Unsupported, None)
        );
        assert_eq!(round[1].consequence_of, None);

        // A /v2/ that timed out does not overrule a pull that was answered 403 meanwhile;
        // a /v2/ that is not the API explains everything, and comes before the credentials.
        let mut round = vec![
            result(K::Registry, Status::Fail, Reason::Timeout),
            result(K::Pull, Status::Fail, Reason::Forbidden),
            result(K::Push, Status::Fail, Reason::ConnectionError),
        ];
        follow_root_causes(&mut round);
        assert_eq!(round[1].consequence_of, None);
        assert_eq!(
            (round[2].reason, round[2].consequence_of),
            (Reason::Timeout, Some(K::Registry))
        );
        let mut round = vec![
            result(K::Registry, Status::Fail, Reason::NotARegistry),
            result(K::Credentials, Status::Fail, Reason::InvalidCredentials),
            result(K::Pull, Status::Warn, Reason::UnexpectedStatus),
        ];
        follow_root_causes(&mut round);
        assert_eq!(
            (round[1].reason, round[1].consequence_of),
            (Reason::NotARegistry, Some(K::Registry))
        );
        assert_eq!(
            (round[2].status, round[2].reason),
            (Status::Fail, Reason::NotARegistry)
        );
    }

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
