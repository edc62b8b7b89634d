//! `check.integration.oci.pull`: may we pull the test image.
//!
//! Owns the verdict on pulling: the manifest of `test_repository:test_tag` is looked up as
//! a pulling client does (HEAD with every manifest media type in `Accept`, scope pull; a
//! bounded GET when the registry sends no digest on HEAD). It downloads no layer.

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
            let mut result = CheckResult::new(
                KIND,
                Status::Pass,
                Reason::Ok,
                format!("the test image {image} can be pulled"),
            )
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
            let mut result = refused(KIND, &answer, anonymous, &format!("pulling {image}"), repo);
            result.api_version = resp.api_version();
            result
        }
    }
}
