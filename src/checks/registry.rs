//! `check.integration.oci.registry`: is `GET /v2/` reachable.
//!
//! Owns the meaning of the API root's answer. It sends no credentials: whether they are
//! accepted is the credentials check's question, so a 401 with a challenge here means
//! "reachable". An answer that is not the API's (a sign-in page reached by redirect, an
//! HTML page, a 404) fails: it is the root cause of every other check's failure then.

use super::{CheckContext, CheckKind, CheckResult, Reason, Status, with_answer_evidence};
use crate::client::{Challenges, Response};
use crate::config::Target;
use crate::distribution::{Answer, Class};

const KIND: CheckKind = CheckKind::Registry;

pub async fn run(_target: &Target, cx: &CheckContext) -> CheckResult {
    let resp = match cx.api().ping(true).await {
        Ok(resp) => resp,
        Err(e) => return CheckResult::from_request_error(KIND, "registry API root GET /v2/", &e),
    };
    let answer = Answer::api_root(&resp);
    let code = answer.status;
    let api_version = resp.api_version();
    let (status, reason, message) = verdict(&answer, &resp);
    let mut result = with_answer_evidence(
        CheckResult::new(KIND, status, reason, message).with_http_status(code),
        &answer,
    );
    if let Some(v) = api_version {
        result.api_version = Some(v.clone());
        result = result.with_evidence("api_version", v);
    }
    result
}

/// The verdict on the API root's answer to an anonymous `GET /v2/`: open, or asking for
/// credentials by a challenge (both pass), or what stands in the way. A table, one arm per
/// class of answer.
fn verdict(answer: &Answer, resp: &Response) -> (Status, Reason, String) {
    match answer.class {
        Class::Success => (
            Status::Pass,
            Reason::Ok,
            "registry API /v2/ is reachable and open to anonymous clients".to_string(),
        ),
        Class::NotTheApi => (
            Status::Fail,
            Reason::NotARegistry,
            format!(
                "GET /v2/ answered {} instead of the registry API{}; registry clients (docker, skopeo) fail here too: point `url` at the registry's API, or exempt /v2/ from whatever answers in front of it",
                answer.describe(),
                answer
                    .foreign
                    .as_ref()
                    .map(|f| format!(" ({})", f.excerpt()))
                    .unwrap_or_default()
            ),
        ),
        Class::NoChallenge => (
            Status::Fail,
            Reason::NoChallenge,
            "GET /v2/ answered HTTP 401 without a WWW-Authenticate challenge: no client (docker, containerd, skopeo) can tell how to authenticate, so none sends credentials; a reverse proxy or load balancer in front of the registry most likely strips the header: let WWW-Authenticate through".to_string(),
        ),
        _ if answer.challenges() => {
            let ch = Challenges::parse(&resp.headers);
            let scheme = match (&ch.bearer, ch.basic) {
                (Some(_), _) => "token (Bearer)",
                (None, true) => "Basic",
                (None, false) => "an unnamed scheme",
            };
            (
                Status::Pass,
                Reason::Ok,
                format!("registry API /v2/ is reachable and requires {scheme} authentication"),
            )
        }
        Class::RateLimited => (
            Status::Warn,
            Reason::RateLimited,
            format!(
                "registry API /v2/ answered {}: the exporter is rate limited; raise `interval`",
                answer.describe()
            ),
        ),
        Class::ServerError => (
            Status::Warn,
            Reason::ServerError,
            format!(
                "registry API /v2/ answered {}{}: the registry is unhealthy",
                answer.describe(),
                answer
                    .message()
                    .map(|m| format!(": \"{m}\""))
                    .unwrap_or_default()
            ),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!(
                "registry API /v2/ answered {}, expected 200 or 401",
                answer.describe()
            ),
        ),
    }
}
