//! `check.integration.oci.registry`: is `GET /v2/` reachable.
//!
//! Owns the meaning of the API root's answer. It sends no credentials: whether they are
//! accepted is the credentials check's question, so a 401 here means "reachable".

use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::client::Challenges;
use crate::config::Target;
use crate::distribution::{Answer, Class};

const KIND: CheckKind = CheckKind::Registry;

pub async fn run(_target: &Target, cx: &CheckContext) -> CheckResult {
    let resp = match cx.api().ping(true).await {
        Ok(resp) => resp,
        Err(e) => return CheckResult::from_request_error(KIND, "registry API root GET /v2/", &e),
    };
    let answer = Answer::of(&resp);
    let code = answer.status;
    let api_version = resp.api_version();
    let (status, reason, message) = match (code, answer.class) {
        (_, Class::Success) => (
            Status::Pass,
            Reason::Ok,
            "registry API /v2/ is reachable and open to anonymous clients".to_string(),
        ),
        (401, _) => {
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
        (_, Class::RateLimited) => (
            Status::Warn,
            Reason::RateLimited,
            format!(
                "registry API /v2/ answered {}: the exporter is rate limited; raise `interval`",
                answer.describe()
            ),
        ),
        (404, _) => (
            Status::Warn,
            Reason::NotARegistry,
            "GET /v2/ answered 404: the URL does not point at an OCI registry; check `url`".into(),
        ),
        (_, Class::ServerError) => (
            Status::Warn,
            Reason::ServerError,
            format!("registry API /v2/ answered HTTP {code}: the registry is unhealthy"),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!(
                "registry API /v2/ answered {}, expected 200 or 401",
                answer.describe()
            ),
        ),
    };
    let mut result = CheckResult::new(KIND, status, reason, message).with_http_status(code);
    if let Some(v) = api_version {
        result.api_version = Some(v.clone());
        result = result.with_evidence("api_version", v);
    }
    result
}
