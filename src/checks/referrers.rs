//! `check.integration.oci.referrers`: does the registry serve the OCI referrers API.
//!
//! Owns the verdict on the referrers API: the digest of `test_repository:test_tag` is
//! resolved (HEAD, or a bounded GET where the registry sends no digest), then
//! `GET /v2/<repo>/referrers/<digest>` asks for an OCI image index. An index means the API
//! exists; an answer that is not the API (a router 404, an HTML page) means it does not,
//! and clients (oras, cosign, notation) fall back to the tag schema `sha256-<hex>`, whose
//! presence this check reports as evidence. A registry without the API is `info`, not a
//! warning: the API is optional (OCI 1.1) and clients fall back. A fail is only for what
//! breaks clients.

use super::{CheckContext, CheckKind, CheckResult, Reason, Status, refused};
use crate::config::Target;
use crate::distribution::{Answer, Class, Digest, Lookup, OCI_INDEX, Reference, Referrers};

const KIND: CheckKind = CheckKind::Referrers;

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    let repo = &target.test_repository;
    let image = format!("{repo}:{}", target.test_tag);
    let anonymous = match cx.anonymous(KIND).await {
        Ok(anonymous) => anonymous,
        Err(failed) => return failed,
    };
    let (digest, digest_computed) = match subject(target, cx, anonymous).await {
        Ok(subject) => subject,
        Err(failed) => return failed,
    };
    let api = cx.api();
    let answer = match api.referrers(repo, &digest).await {
        Ok(answer) => answer,
        Err(e) => {
            return CheckResult::from_request_error(
                KIND,
                &format!("list the referrers of {image}"),
                &e,
            )
            .with_evidence("digest", digest.as_str());
        }
    };
    let mut result = match answer {
        Referrers::Index {
            status,
            count,
            filters_applied,
            truncated,
            wrong_content_type,
        } => listed(
            &image,
            status,
            count,
            filters_applied,
            truncated,
            wrong_content_type,
        ),
        Referrers::NotTheApi { status, why } => {
            let tag = digest.fallback_tag();
            let fallback = fallback_tag_state(cx, repo, &tag).await;
            // A missing optional feature is not ill health (docs/checks.md, "A healthy
            // registry is green"): `info`. Losing the API is a regression the alert
            // OciRegistryReferrersSupportLost pages on, from the capability's history.
            CheckResult::new(
                KIND,
                Status::Info,
                Reason::Unsupported,
                format!(
                    "the registry has no referrers API (GET /v2/{repo}/referrers/<digest>: {why}); clients fall back to the tag schema {tag}, which is {fallback} for {image}; signatures and SBOMs still work that way, but upgrade to an OCI 1.1 registry for the API"
                ),
            )
            .with_http_status(status)
            .with_evidence("fallback_tag", format!("{tag}: {fallback}"))
        }
        Referrers::Refused(answer) => refused(
            KIND,
            &answer,
            cx.acting(anonymous),
            &format!("listing the referrers of {image}"),
            repo,
        ),
    };
    result = result.with_evidence("digest", digest.as_str());
    if digest_computed {
        result = result.with_evidence(
            "digest_source",
            "computed from the manifest: the registry sent no Docker-Content-Digest on HEAD",
        );
    }
    result
}

/// The result of a referrers API that answered with an index of `count` referrers.
fn listed(
    image: &str,
    status: u16,
    count: u64,
    filters_applied: Option<String>,
    truncated: bool,
    wrong_content_type: Option<String>,
) -> CheckResult {
    let plus = if truncated { "+" } else { "" };
    let mut r = match wrong_content_type {
        None => CheckResult::new(
            KIND,
            Status::Pass,
            Reason::Ok,
            format!("the referrers API lists {count}{plus} referrer(s) of {image}"),
        ),
        // Harbor 2.9–2.10 (goharbor/harbor#19690, fixed in 2.11); oras-go then falls
        // back to the tag schema (oras-project/oras-go#633).
        Some(ct) => CheckResult::new(
            KIND,
            Status::Warn,
            Reason::Nonconformant,
            format!(
                "the referrers API lists {count}{plus} referrer(s) of {image}, but with Content-Type \"{ct}\" instead of {OCI_INDEX}; clients that check the type (oras-go) fall back to sha256-<hex> tags"
            ),
        )
        .with_evidence("content_type", ct),
    }
    .with_http_status(status)
    .with_evidence("referrers_count", count.to_string());
    if let Some(f) = filters_applied {
        r = r.with_evidence("filters_applied", f);
    }
    r.facts.referrers_count = Some(count);
    r
}

/// Whether the tag-schema fallback `tag` exists, as a HEAD of it says: "present",
/// "absent", or "unknown (why)".
async fn fallback_tag_state(cx: &CheckContext, repo: &str, tag: &str) -> String {
    match cx.api().head_manifest(repo, &Reference::Tag(tag)).await {
        Ok(r) => {
            let answer = Answer::manifest(&r, false);
            match answer.class {
                Class::Success => "present".to_string(),
                Class::NotFound | Class::RepositoryUnknown => "absent".to_string(),
                _ => format!("unknown ({})", answer.describe()),
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}

/// The digest of the test image whose referrers are listed, and whether it was computed
/// from the manifest (no `Docker-Content-Digest` on HEAD); or the result that ends the
/// check when the image cannot be resolved.
async fn subject(
    target: &Target,
    cx: &CheckContext,
    anonymous: bool,
) -> Result<(Digest, bool), CheckResult> {
    let repo = &target.test_repository;
    let image = format!("{repo}:{}", target.test_tag);
    let found = match cx
        .api()
        .resolve_manifest(repo, &Reference::Tag(&target.test_tag))
        .await
    {
        Ok(Lookup::Found(found)) => found,
        Ok(Lookup::Refused(answer, resp)) => {
            let mut result = refused(
                KIND,
                &answer,
                cx.acting(anonymous),
                &format!("reading {image}"),
                repo,
            );
            result.api_version = resp.api_version();
            return Err(result);
        }
        Err(e) => {
            return Err(CheckResult::from_request_error(
                KIND,
                &format!("resolve {image}"),
                &e,
            ));
        }
    };
    let Some(digest) = found.digest else {
        return Err(CheckResult::new(
            KIND,
            Status::Fail,
            Reason::InvalidResponse,
            format!(
                "the registry sent no valid Docker-Content-Digest for {image} and its manifest could not be read to compute one, so its referrers cannot be listed"
            ),
        )
        .with_http_status(found.status));
    };

    Ok((digest, found.digest_computed))
}
