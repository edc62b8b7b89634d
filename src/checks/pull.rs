//! `check.integration.oci.pull`: may we pull the test image.
//!
//! Owns the manifest probe: a HEAD on `test_repository:test_tag` with every manifest media
//! type in `Accept` (an OCI-stored image is a 404 to a client that asks only for Docker
//! types), authenticated with a `repository:<repo>:pull` scope. It downloads nothing.

use reqwest::Method;

use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::client::{Challenges, Request};
use crate::config::{Credentials, Target};

const KIND: CheckKind = CheckKind::Pull;

/// The manifest media types a pulling client accepts.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let image = format!("{}:{}", target.test_repository, target.test_tag);
    let request = Request::new(
        Method::HEAD,
        format!(
            "v2/{}/manifests/{}",
            target.test_repository, target.test_tag
        ),
    )
    .accept(MANIFEST_MEDIA_TYPES)
    .scope(format!("repository:{}:pull", target.test_repository));
    let resp = match cx.send(request).await {
        Ok(resp) => resp,
        Err(e) => return CheckResult::from_request_error(KIND, &format!("pull {image}"), &e),
    };
    let code = resp.status.as_u16();
    let anonymous = matches!(target.credentials, Credentials::Anonymous);
    let (status, reason, message) = match code {
        200..=299 => (
            Status::Pass,
            Reason::Ok,
            format!("the test image {image} can be pulled"),
        ),
        404 => (
            Status::Info,
            Reason::NotFound,
            format!(
                "test image {image} not found, so pull cannot be verified; push it or set `test_repository` and `test_tag` to an image that exists"
            ),
        ),
        401 => {
            let ch = Challenges::parse(&resp.headers);
            let insufficient = ch
                .bearer
                .as_ref()
                .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"));
            if insufficient && !anonymous {
                (
                    Status::Fail,
                    Reason::Forbidden,
                    format!(
                        "valid credentials, but no pull permission on {}; grant pull on the repository",
                        target.test_repository
                    ),
                )
            } else if anonymous {
                (
                    Status::Fail,
                    Reason::Unauthorized,
                    format!(
                        "pulling {image} requires authentication and none is configured; set username and password_file (or token_file)"
                    ),
                )
            } else {
                (
                    Status::Fail,
                    Reason::Unauthorized,
                    format!(
                        "the registry rejected the credentials when pulling {image} (HTTP 401): they are wrong, rotated or revoked"
                    ),
                )
            }
        }
        403 => (
            Status::Fail,
            Reason::Forbidden,
            format!(
                "valid credentials, but no pull permission on {} (HTTP 403)",
                target.test_repository
            ),
        ),
        429 => (
            Status::Fail,
            Reason::RateLimited,
            format!("pulling {image} is rate limited (HTTP 429); pulls by users fail too"),
        ),
        500..=599 => (
            Status::Fail,
            Reason::ServerError,
            format!("the registry answered HTTP {code} for {image}: it cannot serve pulls"),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("the registry answered HTTP {code} for the manifest of {image}, expected 200"),
        ),
    };
    let mut result = CheckResult::new(KIND, status, reason, message).with_http_status(code);
    if status == Status::Pass {
        if let Some(digest) = resp.header("docker-content-digest") {
            result = result.with_evidence("digest", digest);
        }
        if let Some(media_type) = resp.header("content-type") {
            result = result.with_evidence("media_type", media_type);
        }
    }
    if let Some(v) = resp.api_version() {
        result.api_version = Some(v);
    }
    result
}
