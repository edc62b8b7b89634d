//! `check.integration.oci.credentials`: are the configured credentials accepted.
//!
//! Owns the verdict on the credentials themselves: it finds the method in use (basic,
//! bearer, Docker config, credential helper, identity token, anonymous), and validates it
//! against `GET /v2/`, performing the token exchange for real on token registries. What a
//! credential may do with a repository is the pull and push checks' question.

use super::{
    AuthMethod, CheckContext, CheckKind, CheckResult, Reason, Status, refused, with_answer_evidence,
};
use crate::client::{Challenges, RequestError, Response};
use crate::config::Target;
use crate::distribution::{Answer, Class};

const KIND: CheckKind = CheckKind::Credentials;

pub async fn run(_target: &Target, cx: &CheckContext) -> CheckResult {
    let method = match cx.client.auth_method().await {
        Ok(method) => method,
        Err(e) => return unusable(&e),
    };
    let resp = match cx.api().ping(false).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut r = CheckResult::from_request_error(KIND, "validating the credentials", &e);
            r.facts.auth_method = Some(method);
            return r;
        }
    };
    let answer = Answer::api_root(&resp);
    let anonymous = method == AuthMethod::Anonymous;
    let m = method.as_str();
    let (status, reason, message) = match answer.class {
        Class::Success => (Status::Pass, Reason::Ok, accepted(cx, anonymous, m)),
        // Not the API, or no way to authenticate: the table every check shares words it
        // (the registry check names the same cause, and this result follows it).
        Class::NotTheApi | Class::NoChallenge | Class::Malformed => {
            let mut r = refused(
                KIND,
                &answer,
                anonymous,
                &format!("validating the credentials ({m}) with GET /v2/"),
                "",
            );
            r.facts.auth_method = Some(method);
            r.api_version = resp.api_version();
            return r.with_evidence("auth_method", m);
        }
        _ => not_accepted(cx, &answer, &resp, anonymous, m),
    };
    let mut r = with_answer_evidence(
        CheckResult::new(KIND, status, reason, message)
            .with_http_status(answer.status)
            .with_evidence("auth_method", m),
        &answer,
    );
    r.facts.auth_method = Some(method);
    r.facts.error_code = answer.error.map(|e| e.code);
    r.api_version = resp.api_version();
    r
}

/// The message of a `GET /v2/` that succeeded with the credentials of method `m`: by what
/// took them (the token service, the registry), or why none were needed.
fn accepted(cx: &CheckContext, anonymous: bool, m: &str) -> String {
    let used_token = cx.trail_has_token_request();
    if anonymous && used_token {
        "no credentials configured; the registry's token service hands out anonymous tokens"
            .to_string()
    } else if anonymous {
        "no credentials configured and none needed: the registry is open".to_string()
    } else if used_token {
        format!("credentials ({m}) accepted by the registry's token service")
    } else if !cx.sent_credentials() {
        // Nothing asked for credentials, so none were sent (as Docker and skopeo do).
        format!(
            "the registry's API root is open, so the credentials ({m}) were not needed there; they are sent where a repository asks for them"
        )
    } else {
        format!("credentials ({m}) accepted by the registry")
    }
}

/// The verdict on a `GET /v2/` that the API answered without success: the credentials
/// missing, rejected, expired or forbidden, or the registry unable to judge them. A table,
/// one arm per class of answer, as long as the classes need.
fn not_accepted(
    cx: &CheckContext,
    answer: &Answer,
    resp: &Response,
    anonymous: bool,
    m: &str,
) -> (Status, Reason, String) {
    match answer.class {
        Class::BadChallenge => (
            Status::Fail,
            Reason::InvalidResponse,
            format!(
                "GET /v2/ answered {}: the challenge cannot be parsed (bytes outside ASCII or broken quoting), so the credentials ({m}) cannot be judged; check the auth configuration of the registry or of the proxy in front of it",
                answer.describe()
            ),
        ),
        Class::Unauthenticated | Class::NotPermitted if anonymous => {
            let ch = Challenges::parse(&resp.headers);
            let scheme = if ch.bearer.is_some() {
                "token"
            } else {
                "Basic"
            };
            (
                Status::Info,
                Reason::Unauthorized,
                format!(
                    "the registry requires {scheme} authentication and no credentials are configured; set username and password_file, token_file or docker_config"
                ),
            )
        }
        // The token service took the credentials and issued a token, and the registry
        // refused that token without saying it is invalid: the two disagree (service name,
        // issuer, signing certificate), the credentials are not what is wrong.
        Class::Unauthenticated
            if cx.acting(anonymous).credentials_accepted && !super::invalid_token(answer) =>
        {
            (
                Status::Fail,
                Reason::TokenEndpointError,
                format!(
                    "the token service accepted the credentials ({m}) and issued a token, but the registry refused it ({}{}): the token service and the registry disagree (service name, issuer or signing certificate); check the registry's auth.token settings against the token service",
                    answer.describe(),
                    said(answer)
                ),
            )
        }
        Class::Unauthenticated => (
            Status::Fail,
            Reason::InvalidCredentials,
            format!(
                "the registry rejected the credentials ({m}){}: they are wrong, rotated or revoked; update the secret",
                said(answer)
            ),
        ),
        Class::CredentialsExpired => (
            Status::Fail,
            Reason::CredentialsExpired,
            format!(
                "the registry says the credentials ({m}) have expired ({}{}); refresh them",
                answer.describe(),
                said(answer)
            ),
        ),
        Class::NotPermitted | Class::ReadOnly | Class::ProxyCache => (
            Status::Fail,
            Reason::Forbidden,
            format!(
                "the registry accepted the login but forbids access ({}{}); check the account's permissions",
                answer.describe(),
                said(answer)
            ),
        ),
        Class::RateLimited => (
            Status::Warn,
            Reason::RateLimited,
            format!(
                "the registry is rate limiting the exporter ({}); raise `interval`",
                answer.describe()
            ),
        ),
        Class::ServerError => (
            Status::Fail,
            Reason::ServerError,
            format!(
                "the registry answered HTTP {}: credentials cannot be verified",
                answer.status
            ),
        ),
        // `run` words the first four itself; were one routed here, it is unexpected too.
        Class::Success
        | Class::NotTheApi
        | Class::NoChallenge
        | Class::Malformed
        | Class::RepositoryUnknown
        | Class::NotFound
        | Class::Unsupported
        | Class::Unexpected => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!(
                "GET /v2/ answered {}, expected 200 or 401",
                answer.describe()
            ),
        ),
    }
}

/// `: "<registry's message>"`, or nothing.
fn said(answer: &Answer) -> String {
    answer
        .message()
        .map(|m| format!(": \"{m}\""))
        .unwrap_or_default()
}

/// The credentials cannot even be read: no request is made.
fn unusable(e: &RequestError) -> CheckResult {
    let message = match e {
        RequestError::MissingPassword => "a username is configured without a password: a secret reference probably failed to resolve; set password or password_file".to_string(),
        other => other.to_string(),
    };
    CheckResult::new(KIND, Status::Fail, e.reason(), message)
}
