//! `check.integration.oci.push`: may the configured credentials push.
//!
//! Owns the verdict on pushing: an upload session is opened in `push_test_repository`
//! (`POST /v2/<repo>/blobs/uploads/`, which writes no blob, manifest or tag) and cancelled
//! at once. Nothing is ever committed.

use super::{CheckContext, CheckKind, CheckResult, Reason, Status, refused};
use crate::config::Target;
use crate::distribution::{Answer, Class, Scope, UploadSession};

const KIND: CheckKind = CheckKind::Push;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.push_test_repository;
    // A Docker config without an entry for this registry resolves to anonymous too.
    let anonymous = match cx.anonymous(KIND).await {
        Ok(anonymous) => anonymous,
        Err(failed) => return failed,
    };
    if anonymous {
        return CheckResult::new(
            KIND,
            Status::Skip,
            Reason::NoCredentials,
            "no credentials are configured, so push is not checked; set username and password_file (or token_file) to check it",
        );
    }
    let api = cx.api();
    let (resp, scope) = match api.start_upload(repo, &Scope::write(repo, None)).await {
        Ok(answer) => answer,
        Err(e) => {
            return CheckResult::from_request_error(
                KIND,
                &format!("open an upload session in {repo}"),
                &e,
            );
        }
    };
    let answer = Answer::upload(&resp);
    let mut result = if answer.session_opened() {
        let cancel = UploadSession::opened(&resp, scope.clone())
            .cancel(&api)
            .await;
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
        .with_http_status(answer.status)
        .with_evidence("upload_cancel", cancel.detail);
        result.facts.upload_cancelled = Some(cancel.cancelled);
        result
    } else if answer.class == Class::Success {
        CheckResult::new(
            KIND,
            Status::Warn,
            Reason::UnexpectedStatus,
            format!(
                "the registry answered HTTP {} to an upload in {repo}, expected 202",
                answer.status
            ),
        )
        .with_http_status(answer.status)
    } else {
        refused(
            KIND,
            &answer,
            cx.acting(false),
            &format!("opening an upload session in {repo}"),
            repo,
        )
    };
    result = result
        .with_evidence("repository", repo.clone())
        .with_evidence("scope", scope.as_str());
    result.api_version = resp.api_version();
    result
}
