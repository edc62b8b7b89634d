//! `check.integration.oci.credentials`: are the configured credentials accepted.
//!
//! Owns the verdict on the credentials themselves: it finds the method in use (basic,
//! bearer, Docker config, credential helper, identity token, anonymous), and validates it
//! against `GET /v2/`, performing the token exchange for real on token registries. What a
//! credential may do with a repository is the pull and push checks' question.

use reqwest::Method;

use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::checks::AuthMethod;
use crate::client::{Challenges, Request, RequestError};
use crate::config::Target;

const KIND: CheckKind = CheckKind::Credentials;

pub async fn run(_target: &Target, cx: &CheckContext) -> CheckResult {
    let method = match cx.client.auth_method().await {
        Ok(method) => method,
        Err(e) => return unusable(&e),
    };
    let resp = match cx.send(Request::new(Method::GET, "v2/")).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut r = CheckResult::from_request_error(KIND, "validating the credentials", &e);
            r.facts.auth_method = Some(method);
            return r;
        }
    };
    let code = resp.status.as_u16();
    let used_token = cx.trail_has_token_request();
    let anonymous = method == AuthMethod::Anonymous;
    let (status, reason, message) = match code {
        200..=299 if anonymous && used_token => (
            Status::Pass,
            Reason::Ok,
            "no credentials configured; the registry's token service hands out anonymous tokens".to_string(),
        ),
        200..=299 if anonymous => (
            Status::Pass,
            Reason::Ok,
            "no credentials configured and none needed: the registry is open".to_string(),
        ),
        200..=299 if used_token => (
            Status::Pass,
            Reason::Ok,
            format!("credentials ({}) accepted by the registry's token service", method.as_str()),
        ),
        200..=299 => (
            Status::Pass,
            Reason::Ok,
            format!("credentials ({}) accepted by the registry", method.as_str()),
        ),
        401 if anonymous => {
            let ch = Challenges::parse(&resp.headers);
            let scheme = if ch.bearer.is_some() { "token" } else { "Basic" };
            (
                Status::Info,
                Reason::Unauthorized,
                format!("the registry requires {scheme} authentication and no credentials are configured; set username and password_file, token_file or docker_config"),
            )
        }
        401 => (
            Status::Fail,
            Reason::InvalidCredentials,
            format!("the registry rejected the credentials ({}): they are wrong, rotated or revoked; update the secret", method.as_str()),
        ),
        403 => (
            Status::Fail,
            Reason::Forbidden,
            "the registry accepted the login but forbids access (HTTP 403); check the account's permissions".to_string(),
        ),
        429 => (
            Status::Warn,
            Reason::RateLimited,
            "the registry is rate limiting the exporter (HTTP 429); raise `interval`".to_string(),
        ),
        500..=599 => (
            Status::Fail,
            Reason::ServerError,
            format!("the registry answered HTTP {code}: credentials cannot be verified"),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("GET /v2/ answered HTTP {code}, expected 200 or 401"),
        ),
    };
    let mut r = CheckResult::new(KIND, status, reason, message)
        .with_http_status(code)
        .with_evidence("auth_method", method.as_str());
    r.facts.auth_method = Some(method);
    r.api_version = resp.api_version();
    r
}

/// The credentials cannot even be read: no request is made.
fn unusable(e: &RequestError) -> CheckResult {
    let message = match e {
        RequestError::MissingPassword => "a username is configured without a password: a secret reference probably failed to resolve; set password or password_file".to_string(),
        other => other.to_string(),
    };
    CheckResult::new(KIND, Status::Fail, e.reason(), message)
}
