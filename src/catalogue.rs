//! The check catalogue: what each check is, why it matters, and what to do when it is red.
//!
//! Owns the static description of every check (id, short name, category, default severity,
//! tags, why it matters, runbook) and [`diagnose`], which picks a likely cause and its fix
//! steps from a result's check, reason and evidence. It does not run checks; the runbooks
//! in `docs/runbooks/` carry the long form, and a test keeps them and this file in step.

use serde::Serialize;

pub use crate::outcome::Diagnosis;
use crate::outcome::{AuthMethod, CheckKind, CheckResult, ErrorCode, Reason, Status};

/// Where runbooks live unless `runbook_base_url` says otherwise.
pub const DEFAULT_RUNBOOK_BASE_URL: &str =
    "https://github.com/oci-registry-exporter/oci-registry-exporter/blob/main/docs/runbooks/";

/// How loud a failing check is by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warn,
    Fail,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            // The alerts' words (and Alertmanager's routing, and the dashboards' colours):
            // one vocabulary for a check's default severity and an alert's severity.
            Severity::Info => "info",
            Severity::Warn => "warning",
            Severity::Fail => "critical",
        }
    }
}

/// The static description of one check.
#[derive(Debug, Serialize)]
pub struct CheckInfo {
    pub id: &'static str,
    pub short_name: &'static str,
    pub plugin: &'static str,
    pub category: &'static str,
    pub severity: Severity,
    pub tags: &'static [&'static str],
    pub what: &'static str,
    pub why: &'static str,
    /// File under `docs/runbooks/`.
    pub runbook: &'static str,
}

/// The description of `kind`.
pub fn info(kind: CheckKind) -> CheckInfo {
    let (severity, tags, what, why): (
        Severity,
        &'static [&'static str],
        &'static str,
        &'static str,
    ) = match kind {
        CheckKind::Registry => (
            Severity::Warn,
            &["registry", "oci", "connectivity"],
            "GET /v2/ without credentials: is the registry's API reachable at all.",
            "Every pull and push starts at /v2/. When it is unreachable, deployments cannot pull images, CI cannot push them, and nodes that restart cannot start their pods.",
        ),
        CheckKind::Credentials => (
            Severity::Fail,
            &["registry", "oci", "credentials", "auth"],
            "GET /v2/ with the configured credentials, including the token exchange on token registries.",
            "Rotated, revoked or mistyped credentials make every authenticated pull and push fail, usually at the worst moment: the next deploy or the next node that pulls.",
        ),
        CheckKind::Pull => (
            Severity::Fail,
            &["registry", "oci", "pull"],
            "HEAD of the test image's manifest with every manifest media type accepted.",
            "A failing pull means pods stay in ImagePullBackOff and scaling or rescheduling stops; the manifest HEAD is the first request of every pull.",
        ),
        CheckKind::Push => (
            Severity::Fail,
            &["registry", "oci", "push"],
            "Opens a blob upload session in the push test repository and cancels it.",
            "When pushes fail, CI pipelines and release jobs cannot publish images; read-only maintenance mode and lost push permission both show here first.",
        ),
        CheckKind::Capabilities => (
            Severity::Info,
            &["registry", "oci", "capabilities"],
            "Probes API version, referrers API, chunked upload, cross-repository mount and delete: a score out of 5.",
            "Clients behave differently on registries without these features (slower pushes without mount, signatures and SBOMs stored as tags without referrers, no garbage collection without delete); a dropped score after an upgrade is a regression.",
        ),
        CheckKind::Referrers => (
            Severity::Warn,
            &["registry", "oci", "referrers", "supply-chain"],
            "Calls the OCI referrers API for the test image's digest.",
            "Signatures, SBOMs and attestations (cosign, notation, oras) are found through the referrers API; without it clients fall back to the sha256-<hex> tag schema, and admission policies that verify signatures may fail.",
        ),
    };
    CheckInfo {
        id: kind.id(),
        short_name: kind.short_name(),
        plugin: "oci",
        category: "integration",
        severity,
        tags,
        what,
        why,
        runbook: runbook_file(kind),
    }
}

fn runbook_file(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Registry => "registry.md",
        CheckKind::Credentials => "credentials.md",
        CheckKind::Pull => "pull.md",
        CheckKind::Push => "push.md",
        CheckKind::Capabilities => "capabilities.md",
        CheckKind::Referrers => "referrers.md",
    }
}

/// The runbook URL of a check, on `base` (which ends in `/`), at the section for `reason`.
pub fn runbook_url(base: &str, kind: CheckKind, reason: Option<Reason>) -> String {
    let mut url = format!("{base}{}", runbook_file(kind));
    // The runbooks have a `### `<reason>`` heading per reason; its anchor is the name itself.
    if let Some(reason) = reason.filter(|r| *r != Reason::Ok) {
        url.push('#');
        url.push_str(reason.as_str());
    }
    url
}

/// Every reason a check can report besides `ok`: its runbook has a section for each.
pub fn reasons(kind: CheckKind) -> &'static [Reason] {
    use Reason as R;
    // Every check can meet the transport failures, the generic answers and the exporter's
    // own faults; every check that sends credentials can meet the authentication failures
    // too.
    macro_rules! list {
        (@ $($r:ident),*) => {{
            const L: &[Reason] = &[
                R::ConnectionRefused, R::Dns, R::Tls, R::Timeout, R::ConnectionError,
                R::ServerError, R::RateLimited, R::UnexpectedStatus, R::InvalidResponse,
                R::InternalError, R::LocalResourceExhausted, R::NotARegistry, R::NoChallenge,
                R::ProxyUnreachable, R::ProxyAuthRequired, R::ProxyError,
                $(R::$r),*
            ];
            L
        }};
        (authenticated; $($r:ident),*) => {
            list!(@ Unauthorized, InvalidCredentials, CredentialsExpired, Forbidden,
                MissingPassword, SecretUnreadable, TokenEndpointUnreachable, TokenEndpointError,
                InsecureTokenRealm, RedirectAuthRequired
                $(, $r)*)
        };
        ($($r:ident),*) => { list!(@ $($r),*) };
    }
    match kind {
        CheckKind::Registry => list!(),
        CheckKind::Credentials => list!(authenticated;),
        CheckKind::Pull => {
            list!(authenticated; NotFound, Nonconformant, BlobUnreachable, BlobDigestMismatch)
        }
        CheckKind::Push => list!(authenticated; NoCredentials, RepositoryNotFound, ReadOnly),
        CheckKind::Capabilities => {
            list!(authenticated; Unsupported, NoCredentials, ReadOnly, NotFound,
                RepositoryNotFound)
        }
        CheckKind::Referrers => list!(authenticated; Unsupported, NotFound, Nonconformant),
    }
}

/// Adds the likely cause, its fix steps and the runbook link to a finished result.
pub fn annotate(result: &mut CheckResult, runbook_base_url: &str) {
    result.diagnosis = diagnose(result);
    result.runbook_url = runbook_url(runbook_base_url, result.check, Some(result.reason));
}

/// Picks the likely cause of a non-pass result from its typed facts: check × reason ×
/// authentication method × OCI error code. No string in the evidence is consulted.
pub fn diagnose(result: &CheckResult) -> Option<Diagnosis> {
    let generic = diagnose_generic(result)?;
    // The product's own steps, when it is known and has some for this reason.
    let product = result
        .facts
        .implementation
        .and_then(|r| crate::implementation::fix(r.implementation, result.check, result.reason));
    Some(match product {
        Some(fix) => Diagnosis { fix, ..generic },
        None => generic,
    })
}

/// The cause and fix of [`diagnose`] for any product: one arm per reason, by the group
/// whose table words it (every reason is routed, so a new one does not compile until it
/// has words).
fn diagnose_generic(result: &CheckResult) -> Option<Diagnosis> {
    if matches!(result.status, Status::Pass) {
        return None;
    }
    use Reason as R;
    match result.reason {
        R::Ok => None,
        R::ConnectionRefused
        | R::Dns
        | R::Tls
        | R::Timeout
        | R::ConnectionError
        | R::ProxyUnreachable
        | R::ProxyAuthRequired
        | R::ProxyError
        | R::LocalResourceExhausted
        | R::InternalError => reaching(result),
        R::NotARegistry
        | R::NoChallenge
        | R::ServerError
        | R::RateLimited
        | R::InvalidResponse
        | R::UnexpectedStatus
        | R::Unsupported
        | R::Nonconformant => answers(result),
        R::MissingPassword
        | R::SecretUnreadable
        | R::TokenEndpointUnreachable
        | R::TokenEndpointError
        | R::Unauthorized
        | R::InvalidCredentials
        | R::CredentialsExpired
        | R::InsecureTokenRealm
        | R::NoCredentials => credentials(result),
        R::Forbidden
        | R::RepositoryNotFound
        | R::NotFound
        | R::ReadOnly
        | R::RedirectAuthRequired
        | R::BlobUnreachable
        | R::BlobDigestMismatch => access(result),
    }
}

/// A cause and its fix steps, as the tables below write them.
fn d(cause: &'static str, fix: &'static [&'static str]) -> Option<Diagnosis> {
    Some(Diagnosis { cause, fix })
}

/// Reaching the registry: the network, TLS, a forward proxy, and the exporter's own limits
/// and bugs. `None` for a reason [`diagnose_generic`] routes elsewhere. A table (one arm
/// per cause with its steps), as long as its reasons need.
fn reaching(result: &CheckResult) -> Option<Diagnosis> {
    use Reason as R;
    match (result.check, result.reason) {
        (_, R::ConnectionRefused) => d(
            "nothing listens at the registry's address: the registry is down, or `url` names the wrong host or port",
            &[
                "check that the registry process or pod is running and listening",
                "compare `url` with the address the registry really serves on (scheme, host, port)",
                "from the exporter's host: curl -v <url>/v2/",
            ],
        ),
        (_, R::Dns) => d(
            "the registry's host name does not resolve from the exporter",
            &[
                "check the spelling of the host in `url`",
                "check the resolver the exporter uses (/etc/resolv.conf, the cluster DNS)",
            ],
        ),
        (_, R::Tls) => d(
            "the TLS handshake failed: the certificate is not trusted, expired, or does not name the host",
            &[
                "for a private CA, set `ca_file` to its PEM bundle",
                "check the certificate's expiry and names: openssl s_client -connect <host>:<port> -servername <host>",
                "if the registry requires a client certificate, set client_cert_file and client_key_file",
            ],
        ),
        (_, R::Timeout) => d(
            "no answer within the timeout: the registry is overloaded, or a firewall drops the traffic",
            &[
                "check the registry's load and its storage backend",
                "check firewalls and network policies between the exporter and the registry",
                "if the registry is only slow, raise `timeout`",
            ],
        ),
        (_, R::ConnectionError) => d(
            "the connection failed before an HTTP answer (reset, closed, or refused by a proxy)",
            &[
                "check proxies and load balancers in front of the registry",
                "if the registry requires a client certificate, set client_cert_file and client_key_file",
            ],
        ),
        (_, R::LocalResourceExhausted) => d(
            "the exporter ran out of file descriptors (EMFILE/ENFILE): its own limit, not a fault of the registry",
            &[
                "raise the exporter's descriptor limit: LimitNOFILE= in its systemd unit, ulimit -n, or the container runtime's nofile limit",
                "lower max_concurrency, or split the registries over several exporters",
                "compare ls /proc/<pid>/fd | wc -l with the limit in /proc/<pid>/limits; a count that only grows is a leak worth reporting",
            ],
        ),
        (_, R::InternalError) => d(
            "the check panicked: a bug in the exporter, not a fault of the registry; the other checks and registries kept running",
            &[
                "report it with the message and the exporter's error log line (`a check panicked`), and the exporter's version",
                "the check runs again at its next turn; if it keeps panicking, remove it from `checks` for this registry until a fix is released",
            ],
        ),
        (_, R::ProxyUnreachable) => d(
            "the forward proxy the requests go through cannot be reached (refused, timed out, or its host does not resolve): the registry itself was never asked",
            &[
                "check that the proxy named in the message is running and listening",
                "check where it is configured: `proxy_url` for this registry, or HTTPS_PROXY / HTTP_PROXY / NO_PROXY in the exporter's environment",
                "if the registry must be reached directly, add its host to NO_PROXY",
            ],
        ),
        (_, R::ProxyAuthRequired) => d(
            "the forward proxy asks for credentials (HTTP 407) and none or wrong ones were given",
            &[
                "put the proxy's user and password into the proxy URL (`proxy_url = \"http://user:password@proxy:3128\"`, or HTTPS_PROXY)",
                "or ask the proxy's administrators to allow the exporter's address without credentials",
            ],
        ),
        (_, R::ProxyError) => d(
            "the forward proxy was reached but would not carry the request to the registry (it refused the CONNECT tunnel)",
            &[
                "check the proxy's logs and rules: is the registry's host and port allowed (many proxies allow CONNECT only to port 443)",
                "check that the proxy itself can reach the registry",
            ],
        ),
        _ => None,
    }
}

/// What answered, and how: not the API, no challenge, errors, limits, missing or
/// nonconformant features. `None` for a reason [`diagnose_generic`] routes elsewhere. A
/// table (one arm per cause with its steps), as long as its reasons need.
fn answers(result: &CheckResult) -> Option<Diagnosis> {
    use CheckKind as K;
    use Reason as R;
    match (result.check, result.reason) {
        (_, R::NotARegistry) => d(
            "what answered is not the registry API: a sign-in page (an SSO or OAuth proxy such as oauth2-proxy or Authelia in front of the registry), a web UI, an HTML error page, or a 404 at /v2/ (a wrong host or path prefix)",
            &[
                "read final_url, content_type and body_start in the evidence: they name what answered",
                "exempt the registry's /v2/ paths from browser sign-in (registry clients cannot log in through a web page), or point `url` at the registry's API base, the one docker login uses",
                "for registries under a path prefix, include the prefix in `url`",
            ],
        ),
        (_, R::NoChallenge) => d(
            "the registry answered 401 without a WWW-Authenticate challenge: no client can tell how to authenticate, so docker, containerd and skopeo fail too; a reverse proxy or load balancer in front of the registry usually strips the header",
            &[
                "compare curl -sI <url>/v2/ from the exporter's host with the same request to the registry directly (bypassing the proxy): the header should be there",
                "let WWW-Authenticate through the proxy (nginx: remove proxy_hide_header WWW-Authenticate; check header-rewriting policies)",
            ],
        ),
        (_, R::ServerError) => d(
            "the registry answered 5xx: it or its storage backend is unhealthy",
            &[
                "read the registry's logs around the time of the failure",
                "check its storage backend (disk space, object store credentials)",
            ],
        ),
        (_, R::RateLimited) => d(
            "the registry is rate limiting the exporter (HTTP 429)",
            &[
                "raise `interval` for this registry",
                "authenticate: anonymous clients get the smallest limits",
                "watch oci_registry_rate_limit_remaining",
            ],
        ),
        (K::Referrers, R::Unsupported) => d(
            "the registry has no OCI referrers API (an OCI distribution spec 1.1 feature); clients such as cosign, notation and oras fall back to sha256-<hex> tags",
            &[
                "upgrade the registry to a version with the referrers API (Distribution 3, Harbor 2.8+, Zot, ...)",
                "until then, make sure signing and verification tools use the tag fallback",
            ],
        ),
        (K::Pull, R::Nonconformant) => d(
            "the registry (or a proxy in front of it) refuses HEAD on manifests while GET works: docker and skopeo, which GET, pull fine; containerd (Kubernetes nodes, nerdctl), which resolves with HEAD, fails",
            &[
                "compare curl -sI and curl -s with the same Accept header on <url>/v2/<repo>/manifests/<tag>: HEAD must answer as GET does",
                "check the proxy or load balancer in front of the registry for rules that block HEAD",
            ],
        ),
        (_, R::Nonconformant) => d(
            "the registry serves the referrers API, but not as the OCI spec says: the index comes with another Content-Type (Harbor 2.9 and 2.10 send application/json)",
            &[
                "upgrade the registry (Harbor 2.11 fixed it)",
                "meanwhile, clients that check the type (oras-go) fall back to sha256-<hex> tags: make sure signing and verification use the fallback",
            ],
        ),
        (_, R::Unsupported) => d(
            "the registry does not support a capability clients may rely on",
            &[
                "see which capability in oci_registry_capability_status",
                "upgrade the registry, or accept the client fallback described in the runbook",
            ],
        ),
        (_, R::InvalidResponse) => d(
            "the registry's answer could not be used (too large or malformed): a proxy or non-registry answers",
            &["check what answers at `url` with curl -v"],
        ),
        (_, R::UnexpectedStatus) => d(
            "the registry answered a status the check does not expect",
            &[
                "check the HTTP status in oci_registry_check_http_status_code and the registry's logs",
            ],
        ),
        _ => None,
    }
}

/// The credentials: missing, unreadable, rejected, expired, or a token service that fails;
/// worded by the authentication method used. `None` for a reason [`diagnose_generic`]
/// routes elsewhere. A table (one arm per cause with its steps), as long as its reasons
/// need.
fn credentials(result: &CheckResult) -> Option<Diagnosis> {
    let method = result.facts.auth_method.unwrap_or(AuthMethod::Anonymous);
    let anonymous = method == AuthMethod::Anonymous;
    use AuthMethod as M;
    use CheckKind as K;
    use Reason as R;
    match (result.check, result.reason) {
        (_, R::MissingPassword) => d(
            "a username is configured without a password: a secret reference probably failed to resolve (an unset environment variable, a secret not mounted)",
            &[
                "set password_file to the mounted secret, or OCI__Password in the environment",
                "check that the secret exists and is mounted into the exporter",
            ],
        ),
        (_, R::SecretUnreadable) => d(
            "a password file, token file or Docker config cannot be read",
            &[
                "check the path and the file's permissions for the exporter's user",
                "in Kubernetes, check the secret's volume mount and its items",
            ],
        ),
        (_, R::TokenEndpointUnreachable) => d(
            "the token service the registry names in its Bearer challenge cannot be reached from the exporter",
            &[
                "check that the token service (realm) is up",
                "check that the realm's host resolves and is reachable from the exporter's network",
            ],
        ),
        (_, R::TokenEndpointError) => d(
            "the token service answered an error or something that is not a token",
            &[
                "read the token service's logs",
                "check the registry's auth configuration (realm, service)",
            ],
        ),
        // Without credentials there is no password to check: the advice is to configure some.
        (_, R::Unauthorized | R::InvalidCredentials) if anonymous => d(
            "the registry requires authentication and no credentials are configured",
            &[
                "create a read-only robot account for monitoring",
                "set username and password_file (or token_file, or docker_config) for this registry",
            ],
        ),
        (_, R::InvalidCredentials | R::Unauthorized) => match method {
            M::Bearer => d(
                "the static bearer token was rejected: it expired or was revoked",
                &[
                    "issue a new token and update token_file (the file is re-read, no restart needed)",
                ],
            ),
            M::DockerConfig | M::CredentialHelper | M::IdentityToken => d(
                "the credentials from the Docker config were rejected: rotated, revoked, or an expired identity token",
                &[
                    "log in again to refresh the Docker config (docker login), or update the pull secret",
                    "for a credential helper, check that it returns current credentials: echo <host> | docker-credential-<name> get",
                ],
            ),
            M::Basic | M::Anonymous => d(
                "credentials rejected: rotated or revoked, or a mistyped username or password",
                &[
                    "verify them by hand: docker login <registry>",
                    "update password_file (re-read at each use, no restart needed) or OCI__Password",
                ],
            ),
        },
        (_, R::CredentialsExpired) => match method {
            M::CredentialHelper | M::DockerConfig => d(
                "the registry's temporary token has expired and the Docker config or credential helper handed out a stale one",
                &[
                    "check that the credential helper fetches fresh tokens: echo <host> | docker-credential-<name> get",
                    "for ECR, use docker-credential-ecr-login in credHelpers rather than a token written into config.json",
                ],
            ),
            _ => d(
                "the credentials are a temporary token that has expired (ECR's authorization tokens last 12 hours)",
                &[
                    "use a credential helper that refreshes the token (docker_config with credHelpers, e.g. ecr-login for ECR)",
                    "or refresh the password file on a schedule shorter than the token's lifetime",
                ],
            ),
        },
        (K::Capabilities, R::NoCredentials) => d(
            "the write probes (upload, mount, delete) need credentials on this registry and none are configured",
            &[
                "configure credentials with push permission on `push_test_repository`",
                "or accept a lower score: the read probes still run",
            ],
        ),
        (_, R::NoCredentials) => d(
            "the push check needs credentials and none are configured",
            &[
                "configure credentials with push permission on `push_test_repository`",
                "or remove `push` from `checks` for this registry",
            ],
        ),
        (_, R::InsecureTokenRealm) => d(
            "the registry is reached over HTTPS but names a plain-HTTP token realm in its Bearer challenge: the credentials would travel in clear text, so the exporter does not send them",
            &[
                "configure the registry's token realm with an https:// URL (Distribution: auth.token.realm; behind a proxy, check that it rewrites the challenge to https)",
                "read the realm the registry names: curl -sI <url>/v2/ | grep -i www-authenticate",
            ],
        ),
        _ => None,
    }
}

/// Permission and content: forbidden, missing repositories or images, read-only registries,
/// blobs that cannot be downloaded or verified. `None` for a reason [`diagnose_generic`]
/// routes elsewhere. A table (one arm per cause with its steps), as long as its reasons
/// need.
fn access(result: &CheckResult) -> Option<Diagnosis> {
    use CheckKind as K;
    use Reason as R;
    match (result.check, result.reason) {
        (K::Push, R::Forbidden) => d(
            "valid credentials without push permission on the push test repository",
            &[
                "grant push on `push_test_repository` to the monitoring account",
                "or point `push_test_repository` at a repository the account may push to",
            ],
        ),
        (K::Capabilities, R::Forbidden) => d(
            "valid credentials without a permission a capability probe needs (pull on `test_repository`, push and delete on `push_test_repository`)",
            &[
                "grant the monitoring account pull on `test_repository` and push on `push_test_repository`",
                "grant delete too, so probes can clean up after themselves",
            ],
        ),
        (K::Credentials, R::Forbidden) => d(
            "the registry accepted the login but forbids the account access",
            &[
                "check the account's permissions and whether it is disabled",
                "for organisation registries, check that the account is a member with access",
            ],
        ),
        (_, R::Forbidden) => d(
            "valid credentials without permission on the repository",
            &[
                "grant pull on `test_repository` to the monitoring account",
                "or point `test_repository` at a repository the account may read",
            ],
        ),
        (_, R::RepositoryNotFound) => d(
            "`push_test_repository` does not exist, and the registry does not create repositories on push (ECR; Harbor and GitLab need the project to exist)",
            &[
                "create the repository (ECR: aws ecr create-repository; Harbor: create the project)",
                "or point `push_test_repository` at a repository that exists and the account may push to",
            ],
        ),
        (_, R::NotFound) if result.facts.error_code == Some(ErrorCode::NameUnknown) => d(
            "the test repository does not exist, so this check has nothing to verify",
            &[
                "push a small image to `test_repository`:`test_tag`",
                "or set `test_repository` and `test_tag` to an image that exists",
            ],
        ),
        (K::Pull, R::NotFound) => d(
            "the test image does not exist, so pulls cannot be verified",
            &[
                "push a small image to `test_repository`:`test_tag`",
                "or set `test_repository` and `test_tag` to an image that exists",
            ],
        ),
        (_, R::NotFound) => d(
            "the test image does not exist, so this check has nothing to verify",
            &[
                "push a small image to `test_repository`:`test_tag`",
                "or set `test_repository` and `test_tag` to an image that exists",
            ],
        ),
        (_, R::ReadOnly) => d(
            "the registry refuses writes: it is in read-only (maintenance) mode, or the push test repository is a pull-through cache (a Harbor proxy-cache project) that nobody can push to; the registry's message in the result says which",
            &[
                "if the message names a proxy project, point `push_test_repository` at a repository in an ordinary project",
                "if maintenance is over, turn read-only mode off (Distribution: storage.maintenance.readonly.enabled); otherwise expect pushes to fail until it ends",
            ],
        ),
        (_, R::RedirectAuthRequired) => d(
            "the registry redirected a request to another host (blob storage, a CDN), which asked for authentication: the exporter, like docker and containerd, sends the registry's credentials to no other host, and that host gives no anonymous access",
            &[
                "see where the redirect leads: curl -sI -u <user> <url>/v2/<repository>/manifests/<tag> | grep -i location",
                "make the storage behind the redirect accept the registry's signed redirect without credentials (Distribution: the storage driver's redirect settings)",
                "or disable redirects in the registry (Distribution: storage.redirect.disable: true)",
            ],
        ),
        (_, R::BlobUnreachable) => d(
            "the manifest resolves but its blobs cannot be downloaded from the host the download went to (often a storage or CDN host the registry redirects to): every pull fails after the manifest",
            &[
                "allow the blob host named in the message in the firewall, network policy and proxy (besides the registry's own host)",
                "check the registry's storage back-end (S3, GCS, Azure Blob, a CDN) and its credentials; a 403 from a storage host is often an expired presigned URL: check the clocks (NTP) of the registry and the storage",
                "try it as a client does: curl -vL <url>/v2/<test_repository>/blobs/<digest> (the digest is in the message)",
            ],
        ),
        (_, R::BlobDigestMismatch) => d(
            "the config blob downloaded, but its bytes do not match its digest: clients refuse it, so pulls fail",
            &[
                "find what altered the bytes: a proxy or CDN that rewrites or truncates answers, or corrupt storage",
                "compare: curl -sL <url>/v2/<test_repository>/blobs/<digest> | sha256sum",
                "if the storage is corrupt, push the image again",
            ],
        ),
        _ => None,
    }
}
