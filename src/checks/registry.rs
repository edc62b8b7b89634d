//! `check.integration.oci.registry`: is `GET /v2/` reachable.
//!
//! Owns the meaning of the API root's answer. It sends no credentials: whether they are
//! accepted is the credentials check's question, so a 401 here means "reachable".

use reqwest::Method;

use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::client::{Challenges, Request};
use crate::config::Target;

const KIND: CheckKind = CheckKind::Registry;

pub async fn run(_target: &Target, cx: &CheckContext) -> CheckResult {
    let resp = match cx.send(Request::new(Method::GET, "v2/").anonymous()).await {
        Ok(resp) => resp,
        Err(e) => return CheckResult::from_request_error(KIND, "registry API root GET /v2/", &e),
    };
    let code = resp.status.as_u16();
    let api_version = resp.api_version();
    let (status, reason, message) = match code {
        200..=299 => (
            Status::Pass,
            Reason::Ok,
            "registry API /v2/ is reachable and open to anonymous clients".to_string(),
        ),
        401 => {
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
        429 => (
            Status::Warn,
            Reason::RateLimited,
            "registry API /v2/ answered 429: the exporter is rate limited; raise `interval`".into(),
        ),
        404 => (
            Status::Warn,
            Reason::NotARegistry,
            "GET /v2/ answered 404: the URL does not point at an OCI registry; check `url`".into(),
        ),
        500..=599 => (
            Status::Warn,
            Reason::ServerError,
            format!("registry API /v2/ answered HTTP {code}: the registry is unhealthy"),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("registry API /v2/ answered HTTP {code}, expected 200 or 401"),
        ),
    };
    let mut result = CheckResult::new(KIND, status, reason, message).with_http_status(code);
    if let Some(v) = api_version {
        result.api_version = Some(v.clone());
        result = result.with_evidence("api_version", v);
    }
    result
}
