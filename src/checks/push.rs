//! `check.integration.oci.push`: may the configured credentials push.
//!
//! Owns the upload-session probe: a POST to `/v2/<push_test_repository>/blobs/uploads/`
//! opens an upload session (it writes no blob, manifest or tag), then a DELETE of the
//! session's `Location` cancels it. Nothing is ever committed.
//!
//! Also owns what the capabilities check shares for writing to the push test repository:
//! the token scopes to ask for (with `delete`, so a probe may clean up after itself, then
//! without it), the same-origin rule for a `Location` (credentials never go elsewhere), and
//! the cancellation of an upload session.

use reqwest::{Method, StatusCode};
use url::Url;

use super::{CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::checks::AuthMethod;
use crate::client::{Challenges, Request, RequestError, Response, TokenError};
use crate::config::Target;

const KIND: CheckKind = CheckKind::Push;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.push_test_repository;
    // A Docker config without an entry for this registry resolves to anonymous too.
    let anonymous = match cx.client.auth_method().await {
        Ok(method) => method == AuthMethod::Anonymous,
        Err(e) => return CheckResult::from_request_error(KIND, "reading the credentials", &e),
    };
    if anonymous {
        return CheckResult::new(
            KIND,
            Status::Skip,
            Reason::NoCredentials,
            "no credentials are configured, so push is not checked; set username and password_file (or token_file) to check it",
        );
    }
    let scopes = write_scopes(repo, None);
    let opened = send_with_scopes(cx, &scopes, |scope| {
        Request::new(Method::POST, format!("v2/{repo}/blobs/uploads/")).scope(scope)
    })
    .await;
    let (resp, scope) = match opened {
        Ok(answer) => answer,
        Err(e) => {
            return CheckResult::from_request_error(
                KIND,
                &format!("open an upload session in {repo}"),
                &e,
            );
        }
    };
    let code = resp.status.as_u16();
    let (status, reason, message) = match code {
        202 => {
            let cancel = cancel_upload(cx, &resp, &scope).await;
            let mut result = CheckResult::new(
                KIND,
                Status::Pass,
                Reason::Ok,
                if cancel.cancelled {
                    format!(
                        "the credentials can push to {repo}: an upload session was opened (HTTP 202) and cancelled"
                    )
                } else {
                    format!(
                        "the credentials can push to {repo}: an upload session was opened (HTTP 202) but could not be cancelled ({}); the registry purges abandoned sessions itself",
                        cancel.detail
                    )
                },
            )
            .with_http_status(code)
            .with_evidence("repository", repo.clone())
            .with_evidence("scope", scope)
            .with_evidence("upload_cancel", cancel.detail);
            result.facts.upload_cancelled = Some(cancel.cancelled);
            result.api_version = resp.api_version();
            return result;
        }
        401 if insufficient_scope(&resp) => (
            Status::Fail,
            Reason::Forbidden,
            format!(
                "valid credentials, no push permission on {repo} (HTTP 401 insufficient_scope); grant push (and delete, so the probe can cancel its upload)"
            ),
        ),
        401 => (
            Status::Fail,
            Reason::Unauthorized,
            format!(
                "the registry rejected the credentials when opening an upload in {repo} (HTTP 401): they are wrong, rotated or revoked"
            ),
        ),
        403 => (
            Status::Fail,
            Reason::Forbidden,
            format!("valid credentials, no push permission on {repo} (HTTP 403); grant push"),
        ),
        405 => (
            Status::Fail,
            Reason::ReadOnly,
            format!(
                "the registry refuses uploads to {repo} (HTTP 405): it is in read-only or maintenance mode, so pushes by users fail too"
            ),
        ),
        404 => (
            Status::Fail,
            Reason::NotFound,
            format!(
                "the registry answered 404 to an upload in {repo}: the repository or its project does not exist; create it or set `push_test_repository`"
            ),
        ),
        429 => (
            Status::Fail,
            Reason::RateLimited,
            format!("uploads to {repo} are rate limited (HTTP 429); pushes by users fail too"),
        ),
        500..=599 => (
            Status::Fail,
            Reason::ServerError,
            format!(
                "the registry answered HTTP {code} to an upload in {repo}: it cannot take pushes"
            ),
        ),
        _ => (
            Status::Warn,
            Reason::UnexpectedStatus,
            format!("the registry answered HTTP {code} to an upload in {repo}, expected 202"),
        ),
    };
    let mut result = CheckResult::new(KIND, status, reason, message)
        .with_http_status(code)
        .with_evidence("repository", repo.clone())
        .with_evidence("scope", scope);
    result.api_version = resp.api_version();
    result
}

/// The token scopes for a write to `repo`, best first. The first asks for `delete` too:
/// Distribution's token auth wants it to cancel an upload or remove a blob link, and a
/// token service grants the intersection with what the user may do. The second omits it,
/// for token services that refuse the whole request instead. `extra` is added to both
/// (a mount also needs pull on its source repository).
pub(crate) fn write_scopes(repo: &str, extra: Option<&str>) -> [String; 2] {
    let with_extra = |s: String| match extra {
        Some(extra) => format!("{s} {extra}"),
        None => s,
    };
    [
        with_extra(format!("repository:{repo}:pull,push,delete")),
        with_extra(format!("repository:{repo}:pull,push")),
    ]
}

/// Sends `build(scope)` with each scope in turn until one is not refused, and returns the
/// answer with the scope it was sent with (follow-up requests reuse that token).
///
/// A scope counts as refused when the token service rejects the request for it or the
/// registry answers 401 `insufficient_scope`. A 401 without a Bearer challenge (Basic
/// auth) is final: the scope plays no part there.
pub(crate) async fn send_with_scopes(
    cx: &CheckContext,
    scopes: &[String],
    build: impl Fn(&str) -> Request,
) -> Result<(Response, String), RequestError> {
    let mut last = None;
    for scope in scopes {
        let answer = cx.send(build(scope)).await;
        let refused = match &answer {
            Err(RequestError::Token(TokenError::Rejected { .. } | TokenError::Status { .. })) => {
                true
            }
            Ok(resp) => resp.status == StatusCode::UNAUTHORIZED && insufficient_scope(resp),
            Err(_) => false,
        };
        let answer = answer.map(|resp| (resp, scope.clone()));
        if !refused {
            return answer;
        }
        last = Some(answer);
    }
    last.unwrap_or_else(|| {
        Err(RequestError::Transport {
            reason: Reason::ConnectionError,
            detail: "no token scope to send the request with".into(),
        })
    })
}

/// A 401 whose Bearer challenge says the token lacks an action.
pub(crate) fn insufficient_scope(resp: &Response) -> bool {
    Challenges::parse(&resp.headers)
        .bearer
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

/// The absolute URL a registry's `Location` names, if it is on the registry's own scheme,
/// host and port: the exporter never sends credentials anywhere else. A relative one is
/// joined onto the registry's base URL; the query (Distribution's `_state`) is kept.
pub(crate) fn same_origin(base: &Url, location: &str) -> Result<Url, String> {
    let mut url = base
        .join(location.trim())
        .map_err(|_| "the Location header is not a URL".to_string())?;
    url.set_fragment(None);
    let same = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if same {
        Ok(url)
    } else {
        Err(format!(
            "the Location points at {}://{}, not at the registry; the exporter sends no credentials there",
            url.scheme(),
            url.host_str().unwrap_or("?")
        ))
    }
}

/// What became of an upload session the exporter opened.
pub(crate) struct Cancel {
    pub cancelled: bool,
    /// Plain words for messages and evidence, e.g. "HTTP 204".
    pub detail: String,
}

/// Cancels the upload session `opened` (a 202 to a POST on `blobs/uploads/`) with a DELETE
/// of its `Location`, authenticated with `scope`.
pub(crate) async fn cancel_upload(cx: &CheckContext, opened: &Response, scope: &str) -> Cancel {
    let refused = |detail: String| Cancel {
        cancelled: false,
        detail,
    };
    let Some(location) = opened.header("location") else {
        return refused("the registry sent no Location for the session".into());
    };
    let url = match same_origin(cx.client.base_url(), location) {
        Ok(url) => url,
        Err(why) => return refused(why),
    };
    let request = Request::new(Method::DELETE, url.as_str()).scope(scope);
    let resp = match cx.send(request).await {
        Ok(resp) => resp,
        Err(e) => return refused(format!("cancelling failed: {e}")),
    };
    let code = resp.status.as_u16();
    match code {
        200..=299 => Cancel {
            cancelled: true,
            detail: format!("cancelled, HTTP {code}"),
        },
        401 if insufficient_scope(&resp) => refused(
            "HTTP 401 insufficient_scope: the token lacks the delete action, which the registry wants for cancelling"
                .into(),
        ),
        401 | 403 => refused(format!("HTTP {code}: no permission to cancel")),
        404 => refused("HTTP 404: the registry no longer knows the session".into()),
        405 => refused("HTTP 405: the registry does not allow cancelling uploads".into()),
        _ => refused(format!("HTTP {code} to the cancel")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_accepts_the_registry_and_refuses_elsewhere() {
        let base = Url::parse("https://reg.example.com/").unwrap();
        let ok = same_origin(&base, "/v2/a/blobs/uploads/u?_state=x").unwrap();
        assert_eq!(
            ok.as_str(),
            "https://reg.example.com/v2/a/blobs/uploads/u?_state=x"
        );
        let ok = same_origin(&base, "https://reg.example.com:443/v2/a/blobs/uploads/u").unwrap();
        assert_eq!(ok.path(), "/v2/a/blobs/uploads/u");
        for foreign in [
            "https://other.example.com/v2/a/blobs/uploads/u",
            "http://reg.example.com/v2/a/blobs/uploads/u",
            "https://reg.example.com:8443/v2/a/blobs/uploads/u",
            "https://user:pw@reg.example.com/v2/a",
        ] {
            let err = same_origin(&base, foreign).unwrap_err();
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[test]
    fn write_scopes_ask_for_delete_first() {
        assert_eq!(
            write_scopes("a/b", Some("repository:c/d:pull")),
            [
                "repository:a/b:pull,push,delete repository:c/d:pull".to_string(),
                "repository:a/b:pull,push repository:c/d:pull".to_string(),
            ]
        );
    }
}
