//! What a check run produces, and nothing else: the check kinds, statuses, reasons,
//! capabilities, authentication methods, typed facts, the request trail's records and the
//! `CheckResult` they make up.
//!
//! A leaf module: it imports nothing from the rest of the crate, so `client`, the
//! Distribution API layer (`distribution`), `catalogue`, `metrics` and `checks` may all use
//! it without depending on one another. It does not run checks, interpret answers or
//! render results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use serde::Serialize;

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
        /// The repository does not exist (404 `NAME_UNKNOWN`), and the registry does not
        /// create repositories on push.
        RepositoryNotFound => "repository_not_found",
        /// The credentials were valid and have expired (ECR's 12-hour tokens).
        CredentialsExpired => "credentials_expired",
        /// The registry serves the API, but not as the spec says (a wrong Content-Type);
        /// some clients cope, some fall back.
        Nonconformant => "nonconformant",
        /// The check panicked: a bug in the exporter, contained to that one result.
        InternalError => "internal_error",
        /// The exporter itself ran out of file descriptors (EMFILE, ENFILE): its own
        /// limit, not a fault of the registry.
        LocalResourceExhausted => "local_resource_exhausted",
        /// An HTTPS registry named a plain-HTTP token realm: the credentials are not sent
        /// there, as they would travel in clear text.
        InsecureTokenRealm => "insecure_token_realm",
        /// A redirect led to another host, which asked for authentication: the registry's
        /// credentials are not sent there, and it gives no anonymous access.
        RedirectAuthRequired => "redirect_auth_required",
        /// A 401 without any `WWW-Authenticate` challenge: no client knows how to
        /// authenticate (a proxy in front of the registry usually strips the header).
        NoChallenge => "no_challenge",
        /// The manifest resolved, but its config blob could not be downloaded: the host the
        /// download went to (often a storage or CDN host the registry redirects to) refused,
        /// failed or was unreachable.
        BlobUnreachable => "blob_unreachable",
        /// The config blob was downloaded, but its bytes do not match its digest.
        BlobDigestMismatch => "blob_digest_mismatch",
        /// The forward proxy (`proxy_url`, or `HTTP(S)_PROXY` from the environment) could not
        /// be reached: refused, timed out or did not resolve. Not the registry's fault.
        ProxyUnreachable => "proxy_unreachable",
        /// The forward proxy asked for credentials (HTTP 407 Proxy Authentication Required).
        ProxyAuthRequired => "proxy_auth_required",
        /// The forward proxy was reached but would not carry the request (a refused tunnel).
        ProxyError => "proxy_error",
    }
}

label_enum! {
    /// The product a registry runs, as recognised from its answers (`implementation`).
    Implementation {
        Distribution => "distribution",
        DockerHub => "docker_hub",
        Ghcr => "ghcr",
        Harbor => "harbor",
        Quay => "quay",
        Gitlab => "gitlab",
        Ecr => "ecr",
        EcrPublic => "ecr_public",
        ArtifactRegistry => "artifact_registry",
        Acr => "acr",
        Artifactory => "artifactory",
        Nexus => "nexus",
        Zot => "zot",
        Unknown => "unknown",
    }
}

/// Which product a registry runs and the evidence it was recognised by (see
/// `implementation::RULES`): it changes the words of advice, never a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recognition {
    pub implementation: Implementation,
    /// What in the answers said so, e.g. "the token realm's path /service/token".
    pub evidence: &'static str,
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
/// the store (and so `/metrics`) when present. `None` and empty mean "not observed in this run".
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
    /// The OCI error code of the answer that decided the result, when it had one.
    pub error_code: Option<ErrorCode>,
    /// Pull check: how long the config blob's download took (redirect included).
    #[serde(with = "humantime_serde")]
    pub blob_duration: Option<Duration>,
    /// The registry's implementation, recognised from the round's answers (set by the
    /// caller of the checks, `App::execute`, not by a check).
    pub implementation: Option<Recognition>,
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
    /// The check whose finding in the same round is this result's cause: set when a
    /// root cause (the API root not answering as the API, the credentials expired or
    /// rejected) explains this result, whose reason then follows the root's.
    pub consequence_of: Option<CheckKind>,
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
            consequence_of: None,
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
}

/// How a request was authenticated, for the trail and the debug output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthUsed {
    None,
    Basic,
    Bearer,
    Token,
}

/// One request as made, for logs, debug output and the request-duration histogram.
/// It holds the path only: never a header value or a query string.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub auth: AuthUsed,
    /// What the auth layer did around this request, e.g. "token fetched for scope ...".
    pub note: Option<String>,
    /// Response headers worth showing in debug output (see [`DEBUG_HEADERS`]); never
    /// `Authorization`, `Set-Cookie` or a URL query.
    pub headers: Vec<(String, String)>,
}

/// A likely cause of a result, and what to do about it (chosen by `catalogue::diagnose`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub cause: &'static str,
    pub fix: &'static [&'static str],
}

/// An OCI distribution-spec error code (plus the Docker extensions registries send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A code outside the spec, upper-cased and bounded (Harbor's `NOT_FOUND`, ...).
    Other(String),
}

impl ErrorCode {
    /// The code of an OCI error body entry; unknown codes are kept, bounded.
    pub fn parse(code: &str) -> ErrorCode {
        match code.trim().to_ascii_uppercase().as_str() {
            "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => ErrorCode::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => ErrorCode::BlobUploadUnknown,
            "DIGEST_INVALID" => ErrorCode::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ErrorCode::ManifestBlobUnknown,
            "MANIFEST_INVALID" => ErrorCode::ManifestInvalid,
            "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
            "NAME_INVALID" => ErrorCode::NameInvalid,
            "NAME_UNKNOWN" => ErrorCode::NameUnknown,
            "SIZE_INVALID" => ErrorCode::SizeInvalid,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "DENIED" => ErrorCode::Denied,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            "TOOMANYREQUESTS" => ErrorCode::TooManyRequests,
            other => ErrorCode::Other(
                other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect(),
            ),
        }
    }

    /// The code as registries spell it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Other(code) => code,
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
