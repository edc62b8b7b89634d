//! `check.integration.oci.pull`: may we pull the test image.
//!
//! Owns the verdict on pulling: the manifest of `test_repository:test_tag` is looked up as
//! a pulling client does (HEAD with every manifest media type in `Accept`, scope pull; a
//! bounded GET when the registry sends no digest on HEAD, refuses the HEAD without a
//! body, or answers it with something that is not a manifest). It downloads no layer.
//! A manifest only GET can fetch is a warning: containerd resolves with HEAD.

use super::{CheckContext, CheckKind, CheckResult, Reason, Status, refused};
use crate::config::Target;
use crate::distribution::{Lookup, Reference};

const KIND: CheckKind = CheckKind::Pull;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.test_repository;
    let image = format!("{repo}:{}", target.test_tag);
    let anonymous = match cx.anonymous(KIND).await {
        Ok(anonymous) => anonymous,
        Err(failed) => return failed,
    };
    let lookup = match cx
        .api()
        .resolve_manifest(repo, &Reference::Tag(&target.test_tag))
        .await
    {
        Ok(lookup) => lookup,
        Err(e) => return CheckResult::from_request_error(KIND, &format!("pull {image}"), &e),
    };
    match lookup {
        Lookup::Found(found) => {
            let mut result = match &found.head_refused {
                None => CheckResult::new(
                    KIND,
                    Status::Pass,
                    Reason::Ok,
                    format!("the test image {image} can be pulled"),
                ),
                Some(head) => CheckResult::new(
                    KIND,
                    Status::Warn,
                    Reason::Nonconformant,
                    format!(
                        "the test image {image} can be pulled with GET, but HEAD of its manifest was refused ({head}): clients that resolve with HEAD (containerd, so Kubernetes nodes, and nerdctl) fail to pull, while docker and skopeo, which GET, succeed; fix the registry or the proxy in front of it so HEAD answers as GET does"
                    ),
                )
                .with_evidence("head_answer", head.clone()),
            }
            .with_http_status(found.status);
            if let Some(digest) = &found.digest {
                result = result.with_evidence("digest", digest.as_str());
            }
            if found.digest_computed && found.digest.is_some() {
                result = result.with_evidence(
                    "digest_source",
                    "computed from the manifest: the registry sent no Docker-Content-Digest on HEAD",
                );
            }
            if let Some(media_type) = found.media_type {
                result = result.with_evidence("media_type", media_type);
            }
            result
        }
        Lookup::Refused(answer, resp) => {
            let mut result = refused(
                KIND,
                &answer,
                cx.acting(anonymous),
                &format!("pulling {image}"),
                repo,
            );
            result.api_version = resp.api_version();
            result
        }
    }
}
