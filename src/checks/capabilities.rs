//! `check.integration.oci.capabilities`: what the registry can do, in five probes.
//!
//! Owns the capability probes and how their outcomes become one status:
//!
//! 1. `api_version`: `GET /v2/` (anonymous) carries `OCI-Distribution-API-Version` or
//!    `Docker-Distribution-API-Version`.
//! 2. `referrers`: the referrers API answers an OCI image index for the test image's digest
//!    (see `referrers.rs`; a well-formed digest that names nothing when the tag is missing).
//! 3. `chunked_upload`: `POST /v2/<push repo>/blobs/uploads/` opens a session (202), which
//!    is cancelled at once.
//! 4. `cross_repo_mount`: `POST ...?mount=<config blob>&from=<test repo>` answers 201. A 202
//!    is the OCI spec's fallback to an ordinary upload session, so it counts as unsupported
//!    (the session is cancelled). The blob link a mount writes is deleted again, unless the
//!    push repository held that blob before the probe (then it is not ours to remove).
//! 5. `delete`: a DELETE of a manifest and of a blob whose digest names nothing: 404 means
//!    deletes are enabled, 405 (or 400 `UNSUPPORTED`) that they are not. `OPTIONS`/`Allow`
//!    is only evidence: Distribution lists DELETE even with delete disabled.
//!
//! Writes go only to `push_test_repository`. Without credentials, when `GET /v2/` says the
//! registry demands authentication, the write probes are `denied` without being sent; on an
//! open registry they are sent anonymously. See `docs/checks.md` for what a probe can leave
//! behind where the registry forbids the cleanup.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;

use super::pull::MANIFEST_MEDIA_TYPES;
use super::push::{cancel_upload, insufficient_scope, send_with_scopes, write_scopes};
use super::referrers::{Referrers, content_digest, is_digest, query, resolve_test_digest};
use super::{Capability, CapabilityStatus, CheckContext, CheckKind, CheckResult, Reason, Status};
use crate::checks::AuthMethod;
use crate::client::{Request, RequestError, Response};
use crate::config::{Credentials, Target};

const KIND: CheckKind = CheckKind::Capabilities;

/// A well-formed digest that names no content (the SHA-256 of a sentence saying so), for
/// probes that must not touch anything that exists.
pub const NOWHERE_DIGEST: &str =
    "sha256:a5d1f996f806f089eb944f5e3dca48864b5d9af00e34b50598068613149b5c32";

pub async fn run(target: &Target, cx: &CheckContext) -> CheckResult {
    // A Docker config without an entry for this registry resolves to anonymous too.
    let anonymous = matches!(target.credentials, Credentials::Anonymous)
        || matches!(cx.client.auth_method().await, Ok(AuthMethod::Anonymous));
    let mut probing = Probing {
        target,
        cx,
        anonymous,
        auth_required: false,
        probes: Vec::new(),
        evidence: BTreeMap::new(),
        api_version: None,
    };
    let aborted = probing.probe_all().await.err();
    probing.finish(aborted)
}

/// One probe's outcome.
struct Probe {
    capability: Capability,
    state: CapabilityStatus,
    /// The HTTP status that decided the state.
    code: Option<u16>,
    /// The reason the check carries when this probe decides its status.
    reason: Reason,
    note: String,
}

/// A request error that ends the probing (the registry or its token service is unreachable).
struct Abort {
    capability: Capability,
    what: String,
    error: RequestError,
}

struct Probing<'a> {
    target: &'a Target,
    cx: &'a CheckContext,
    anonymous: bool,
    /// `GET /v2/` answered 401 to an anonymous client.
    auth_required: bool,
    probes: Vec<Probe>,
    evidence: BTreeMap<&'static str, String>,
    api_version: Option<String>,
}

impl Probing<'_> {
    async fn probe_all(&mut self) -> Result<(), Abort> {
        self.probe_api_version().await?;
        let subject = self.probe_referrers().await?;
        self.probe_chunked_upload().await?;
        self.probe_mount(subject.as_deref()).await?;
        self.probe_delete().await
    }

    fn push(
        &mut self,
        capability: Capability,
        state: CapabilityStatus,
        code: Option<u16>,
        reason: Reason,
        note: impl Into<String>,
    ) {
        self.probes.push(Probe {
            capability,
            state,
            code,
            reason,
            note: note.into(),
        });
    }

    /// Writes are pointless without credentials where the registry demands them.
    fn writes_denied(&mut self, capability: Capability) -> bool {
        let denied = self.anonymous && self.auth_required;
        if denied {
            self.push(
                capability,
                CapabilityStatus::Denied,
                None,
                Reason::NoCredentials,
                "denied (not probed: the registry requires authentication and no credentials are configured)",
            );
        }
        denied
    }

    fn abort(
        capability: Capability,
        what: impl Into<String>,
    ) -> impl FnOnce(RequestError) -> Abort {
        let what = what.into();
        move |error| Abort {
            capability,
            what,
            error,
        }
    }

    async fn probe_api_version(&mut self) -> Result<(), Abort> {
        let cap = Capability::ApiVersion;
        let resp = self
            .cx
            .send(Request::new(Method::GET, "v2/").anonymous())
            .await
            .map_err(Self::abort(cap, "registry API root GET /v2/"))?;
        let code = resp.status.as_u16();
        self.auth_required = code == 401;
        match resp.api_version() {
            Some(v) => {
                self.push(
                    cap,
                    CapabilityStatus::Supported,
                    Some(code),
                    Reason::Ok,
                    format!("supported ({v})"),
                );
                self.api_version = Some(v);
            }
            None => {
                let (state, reason) = match code {
                    200 | 401 => (CapabilityStatus::Unsupported, Reason::Unsupported),
                    404 => (CapabilityStatus::Error, Reason::NotARegistry),
                    429 => (CapabilityStatus::Error, Reason::RateLimited),
                    500..=599 => (CapabilityStatus::Error, Reason::ServerError),
                    _ => (CapabilityStatus::Error, Reason::UnexpectedStatus),
                };
                self.push(
                    cap,
                    state,
                    Some(code),
                    reason,
                    format!(
                        "{} (GET /v2/ answered HTTP {code} without a well-formed OCI-Distribution-API-Version or Docker-Distribution-API-Version header)",
                        state.as_str()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Returns the digest of the test manifest when it could be resolved.
    async fn probe_referrers(&mut self) -> Result<Option<String>, Abort> {
        let cap = Capability::Referrers;
        let target = self.target;
        let image = format!("{}:{}", target.test_repository, target.test_tag);
        let head = resolve_test_digest(self.cx, target)
            .await
            .map_err(Self::abort(cap, format!("resolve {image}")))?;
        let code = head.status.as_u16();
        let (digest, subject, why) = match code {
            200..=299 => match content_digest(&head) {
                Some(d) => (d.clone(), Some(d), String::new()),
                None => (
                    NOWHERE_DIGEST.to_string(),
                    None,
                    format!("HTTP {code} without a valid Docker-Content-Digest"),
                ),
            },
            401 | 403 => {
                let reason = self.denied_reason();
                self.push(
                    cap,
                    CapabilityStatus::Denied,
                    Some(code),
                    reason,
                    format!("denied (HTTP {code} reading the test image {image})"),
                );
                return Ok(None);
            }
            _ => (NOWHERE_DIGEST.to_string(), None, format!("HTTP {code}")),
        };
        self.evidence.insert(
            "referrers_subject",
            match &subject {
                Some(d) => format!("{image} ({d})"),
                None => format!(
                    "{NOWHERE_DIGEST}: the test image {image} could not be resolved ({why}), so a well-formed digest that names nothing was used"
                ),
            },
        );
        let answer = query(self.cx, &target.test_repository, &digest)
            .await
            .map_err(Self::abort(cap, format!("list the referrers of {image}")))?;
        match answer {
            Referrers::Index {
                status,
                count,
                filters_applied,
                truncated,
            } => {
                if let Some(f) = filters_applied {
                    self.evidence.insert("filters_applied", f);
                }
                let count = format!("{count}{}", if truncated { "+" } else { "" });
                self.push(
                    cap,
                    CapabilityStatus::Supported,
                    Some(status),
                    Reason::Ok,
                    format!("supported ({count} referrer(s))"),
                );
            }
            Referrers::NotAnIndex { status, why } => self.push(
                cap,
                CapabilityStatus::Error,
                Some(status),
                Reason::InvalidResponse,
                format!("error (HTTP {status} but not an OCI image index: {why})"),
            ),
            Referrers::Unsupported { status } => self.push(
                cap,
                CapabilityStatus::Unsupported,
                Some(status),
                Reason::Unsupported,
                format!(
                    "unsupported (HTTP {status} without an OCI index; clients fall back to sha256-<hex> tags)"
                ),
            ),
            Referrers::Denied { status, .. } => {
                let reason = self.denied_reason();
                self.push(
                    cap,
                    CapabilityStatus::Denied,
                    Some(status),
                    reason,
                    format!("denied (HTTP {status})"),
                );
            }
            Referrers::Other { status } => self.push(
                cap,
                CapabilityStatus::Error,
                Some(status),
                error_reason(status),
                format!("error (HTTP {status})"),
            ),
        }
        Ok(subject)
    }

    async fn probe_chunked_upload(&mut self) -> Result<(), Abort> {
        let cap = Capability::ChunkedUpload;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let repo = self.target.push_test_repository.clone();
        let (resp, scope) = send_with_scopes(self.cx, &write_scopes(&repo, None), |scope| {
            Request::new(Method::POST, format!("v2/{repo}/blobs/uploads/")).scope(scope)
        })
        .await
        .map_err(Self::abort(
            cap,
            format!("open an upload session in {repo}"),
        ))?;
        let code = resp.status.as_u16();
        if code != 202 {
            let probe = self.refusal(cap, &resp, &repo);
            self.probes.push(probe);
            return Ok(());
        }
        if let Some(min) = resp.header("oci-chunk-min-length") {
            self.evidence
                .insert("chunk_min_length", min.chars().take(20).collect());
        }
        let cancel = cancel_upload(self.cx, &resp, &scope).await;
        self.evidence.insert("upload_cancel", cancel.detail);
        self.push(
            cap,
            CapabilityStatus::Supported,
            Some(code),
            Reason::Ok,
            "supported (HTTP 202, session cancelled at once)",
        );
        Ok(())
    }

    async fn probe_mount(&mut self, subject: Option<&str>) -> Result<(), Abort> {
        let cap = Capability::CrossRepoMount;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let target = self.target;
        let (from, repo) = (&target.test_repository, &target.push_test_repository);
        let Some(manifest) = subject else {
            self.push(
                cap,
                CapabilityStatus::Error,
                None,
                Reason::NotFound,
                format!(
                    "error (not probed: the test image {from}:{} could not be resolved, so there is no blob to mount; push it or set `test_repository` and `test_tag`)",
                    target.test_tag
                ),
            );
            return Ok(());
        };
        let blob = match self.config_blob(manifest).await.map_err(Self::abort(
            cap,
            format!("read the test manifest in {from}"),
        ))? {
            Ok(blob) => blob,
            Err(why) => {
                self.push(
                    cap,
                    CapabilityStatus::Error,
                    None,
                    Reason::InvalidResponse,
                    format!("error (not probed: {why})"),
                );
                return Ok(());
            }
        };
        let scopes = write_scopes(repo, Some(&format!("repository:{from}:pull")));
        // A blob the push repository held before the probe is not ours to remove afterwards.
        let (before, _) = send_with_scopes(self.cx, &scopes, |scope| {
            Request::new(Method::HEAD, format!("v2/{repo}/blobs/{blob}")).scope(scope)
        })
        .await
        .map_err(Self::abort(
            cap,
            format!("look up the mount blob in {repo}"),
        ))?;
        let ours = before.status.as_u16() == 404;
        let (resp, scope) = send_with_scopes(self.cx, &scopes, |scope| {
            Request::new(
                Method::POST,
                format!("v2/{repo}/blobs/uploads/?mount={blob}&from={from}"),
            )
            .scope(scope)
        })
        .await
        .map_err(Self::abort(
            cap,
            format!("mount a blob from {from} into {repo}"),
        ))?;
        let code = resp.status.as_u16();
        match code {
            201 => {
                let cleanup = if ours {
                    self.remove_blob_link(repo, &blob, &scope).await
                } else {
                    format!(
                        "none needed: {repo} held the blob before the probe, so it was left as it was"
                    )
                };
                self.evidence.insert("mount_cleanup", cleanup);
                self.push(
                    cap,
                    CapabilityStatus::Supported,
                    Some(code),
                    Reason::Ok,
                    "supported (HTTP 201)",
                );
            }
            202 => {
                let cancel = cancel_upload(self.cx, &resp, &scope).await;
                self.evidence.insert("mount_upload_cancel", cancel.detail);
                self.push(
                    cap,
                    CapabilityStatus::Unsupported,
                    Some(code),
                    Reason::Unsupported,
                    "unsupported (HTTP 202: the registry opened an ordinary upload session instead of mounting)",
                );
            }
            _ => {
                let probe = self.refusal(cap, &resp, repo);
                self.probes.push(probe);
            }
        }
        Ok(())
    }

    /// Deletes the blob link a mount wrote; returns what happened, in plain words.
    async fn remove_blob_link(&self, repo: &str, blob: &str, scope: &str) -> String {
        let request = Request::new(Method::DELETE, format!("v2/{repo}/blobs/{blob}")).scope(scope);
        match self.cx.send(request).await {
            Ok(r) if r.status.is_success() => {
                format!("the mounted blob link in {repo} was deleted")
            }
            Ok(r) if r.status.as_u16() == 405 => format!(
                "the mounted blob link stays in {repo}: the registry refuses deletes (HTTP 405)"
            ),
            Ok(r) if insufficient_scope(&r) => format!(
                "the mounted blob link stays in {repo}: the credentials lack delete (HTTP 401 insufficient_scope)"
            ),
            Ok(r) => format!(
                "the mounted blob link stays in {repo}: its DELETE answered HTTP {}",
                r.status.as_u16()
            ),
            Err(e) => format!("the mounted blob link stays in {repo}: {e}"),
        }
    }

    /// The config blob of the test image (of its first manifest, for an index).
    async fn config_blob(&self, digest: &str) -> Result<Result<String, String>, RequestError> {
        #[derive(Deserialize)]
        struct Descriptor {
            digest: String,
        }
        #[derive(Deserialize)]
        struct Manifest {
            config: Option<Descriptor>,
            manifests: Option<Vec<Descriptor>>,
        }
        let repo = &self.target.test_repository;
        let mut digest = digest.to_string();
        // An index is descended once: its first manifest has a config blob.
        for _ in 0..2 {
            let resp = self
                .cx
                .send(
                    Request::new(Method::GET, format!("v2/{repo}/manifests/{digest}"))
                        .accept(MANIFEST_MEDIA_TYPES)
                        .scope(format!("repository:{repo}:pull")),
                )
                .await?;
            if !resp.status.is_success() {
                return Ok(Err(format!(
                    "GET of the test manifest {digest} answered HTTP {}",
                    resp.status.as_u16()
                )));
            }
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&resp.body) else {
                return Ok(Err("the test manifest is not manifest JSON".into()));
            };
            if let Some(config) = manifest.config.filter(|c| is_digest(&c.digest)) {
                return Ok(Ok(config.digest));
            }
            match manifest
                .manifests
                .and_then(|m| m.into_iter().next())
                .filter(|d| is_digest(&d.digest))
            {
                Some(child) => digest = child.digest,
                None => break,
            }
        }
        Ok(Err("the test manifest names no config blob to mount".into()))
    }

    async fn probe_delete(&mut self) -> Result<(), Abort> {
        let cap = Capability::Delete;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let repo = self.target.push_test_repository.clone();
        // The same scope as the upload probes, so the cached token is reused.
        let [scope, _] = write_scopes(&repo, None);
        let options = self
            .cx
            .send(
                Request::new(
                    Method::OPTIONS,
                    format!("v2/{repo}/manifests/{NOWHERE_DIGEST}"),
                )
                .scope(scope.as_str()),
            )
            .await
            .map_err(Self::abort(cap, format!("OPTIONS on a manifest in {repo}")))?;
        self.evidence.insert(
            "options_allow",
            match options.header("allow") {
                Some(allow) => format!(
                    "{} (evidence only: Distribution lists DELETE even with delete disabled)",
                    allow.chars().take(100).collect::<String>()
                ),
                None => format!("HTTP {}, no Allow header", options.status.as_u16()),
            },
        );
        let mut outcomes = Vec::new();
        for kind in ["manifests", "blobs"] {
            let resp = self
                .cx
                .send(
                    Request::new(Method::DELETE, format!("v2/{repo}/{kind}/{NOWHERE_DIGEST}"))
                        .scope(scope.as_str()),
                )
                .await
                .map_err(Self::abort(
                    cap,
                    format!("DELETE of an absent {kind} digest in {repo}"),
                ))?;
            let probe = match resp.status.as_u16() {
                code @ (404 | 200..=299) => Probe {
                    capability: cap,
                    state: CapabilityStatus::Supported,
                    code: Some(code),
                    reason: Reason::Ok,
                    note: format!("supported (HTTP {code})"),
                },
                400 if error_codes(&resp.body).iter().any(|c| c == "UNSUPPORTED") => Probe {
                    capability: cap,
                    state: CapabilityStatus::Unsupported,
                    code: Some(400),
                    reason: Reason::Unsupported,
                    note: "unsupported (HTTP 400 UNSUPPORTED: delete is disabled)".into(),
                },
                _ => self.refusal(cap, &resp, &repo),
            };
            outcomes.push((kind, probe));
        }
        let rank = |s: CapabilityStatus| match s {
            CapabilityStatus::Supported => 0,
            CapabilityStatus::Unsupported => 1,
            CapabilityStatus::Denied => 2,
            CapabilityStatus::Error => 3,
        };
        let same = outcomes.windows(2).all(|w| w[0].1.state == w[1].1.state);
        let note = if same {
            outcomes
                .first()
                .map(|(_, p)| p.note.clone())
                .unwrap_or_default()
        } else {
            outcomes
                .iter()
                .map(|(kind, p)| format!("{kind}: {}", p.note))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some((_, mut worst)) = outcomes.into_iter().max_by_key(|(_, p)| rank(p.state)) {
            worst.note = note;
            self.probes.push(worst);
        }
        Ok(())
    }

    /// A write probe's answer other than success: denied, unsupported or an error.
    fn refusal(&self, capability: Capability, resp: &Response, repo: &str) -> Probe {
        let code = resp.status.as_u16();
        let (state, reason, note) = match code {
            401 | 403 => {
                // A 401 without insufficient_scope refused the credentials themselves.
                let rejected = code == 401 && !insufficient_scope(resp);
                let (reason, why) = if self.anonymous {
                    (
                        Reason::NoCredentials,
                        "no credentials are configured".into(),
                    )
                } else if rejected {
                    (Reason::Unauthorized, "the credentials were rejected".into())
                } else {
                    (
                        Reason::Forbidden,
                        format!("the credentials lack the permission on {repo}"),
                    )
                };
                (
                    CapabilityStatus::Denied,
                    reason,
                    format!("denied (HTTP {code}: {why})"),
                )
            }
            405 if error_codes(&resp.body).iter().any(|c| c == "UNSUPPORTED") => (
                CapabilityStatus::Unsupported,
                Reason::Unsupported,
                "unsupported (HTTP 405 UNSUPPORTED: the registry has it disabled)".to_string(),
            ),
            405 => (
                CapabilityStatus::Unsupported,
                Reason::ReadOnly,
                "unsupported (HTTP 405: the registry is in read-only or maintenance mode)"
                    .to_string(),
            ),
            404 => (
                CapabilityStatus::Error,
                Reason::NotFound,
                format!(
                    "error (HTTP 404: {repo} or its project does not exist; create it or set `push_test_repository`)"
                ),
            ),
            _ => (
                CapabilityStatus::Error,
                error_reason(code),
                format!("error (HTTP {code})"),
            ),
        };
        Probe {
            capability,
            state,
            code: Some(code),
            reason,
            note,
        }
    }

    fn denied_reason(&self) -> Reason {
        if self.anonymous {
            Reason::NoCredentials
        } else {
            Reason::Forbidden
        }
    }

    /// Turns the probes into the check's result.
    fn finish(mut self, aborted: Option<Abort>) -> CheckResult {
        let mut failure = None;
        if let Some(abort) = aborted {
            self.push(
                abort.capability,
                CapabilityStatus::Error,
                None,
                abort.error.reason(),
                format!("error ({}: {})", abort.what, abort.error),
            );
            failure = Some(abort);
        }
        for &cap in Capability::ALL {
            if !self.probes.iter().any(|p| p.capability == cap) {
                self.push(
                    cap,
                    CapabilityStatus::Error,
                    None,
                    Reason::ConnectionError,
                    "error (not probed)",
                );
            }
        }
        self.probes
            .sort_by_key(|p| Capability::ALL.iter().position(|c| *c == p.capability));
        let supported = self
            .probes
            .iter()
            .filter(|p| p.state == CapabilityStatus::Supported)
            .count();
        let summary = self
            .probes
            .iter()
            .map(|p| format!("{} {}", p.capability.as_str(), p.note))
            .collect::<Vec<_>>()
            .join("; ");
        let total = Capability::ALL.len();
        let referrers = self
            .probes
            .iter()
            .find(|p| p.capability == Capability::Referrers);
        let missing = self
            .probes
            .iter()
            .filter(|p| p.state != CapabilityStatus::Supported);
        let decisive = missing
            .clone()
            .find(|p| p.reason == Reason::ReadOnly)
            .or_else(|| missing.clone().next());

        let (status, reason, code, message) = if let Some(abort) = &failure {
            (
                Status::Fail,
                abort.error.reason(),
                None,
                format!(
                    "{}: {}; the remaining capabilities were not probed",
                    abort.what, abort.error
                ),
            )
        } else if let Some(r) = referrers.filter(|p| p.state == CapabilityStatus::Unsupported) {
            (
                Status::Warn,
                Reason::Unsupported,
                r.code,
                format!(
                    "{supported} of {total} capabilities supported; the referrers API is missing, so clients fall back to sha256-<hex> tags: {summary}"
                ),
            )
        } else if let Some(p) = decisive {
            (
                Status::Info,
                p.reason,
                p.code,
                format!("{supported} of {total} capabilities supported: {summary}"),
            )
        } else {
            (
                Status::Pass,
                Reason::Ok,
                referrers.and_then(|p| p.code),
                format!("all {total} capabilities supported: {summary}"),
            )
        };
        let mut result = CheckResult::new(KIND, status, reason, message);
        result.http_status = code;
        result.api_version = self.api_version;
        result.facts.capabilities = self
            .probes
            .iter()
            .map(|p| (p.capability, p.state))
            .collect();
        for p in &self.probes {
            result
                .evidence
                .insert(p.capability.as_str(), p.note.clone());
        }
        result.evidence.extend(self.evidence);
        result
    }
}

/// The reason for an answer that is neither success nor a refusal.
fn error_reason(code: u16) -> Reason {
    match code {
        429 => Reason::RateLimited,
        500..=599 => Reason::ServerError,
        _ => Reason::UnexpectedStatus,
    }
}

/// The `code`s of an OCI error body (`{"errors":[{"code":"UNSUPPORTED",...}]}`).
fn error_codes(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: String,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors.into_iter().map(|e| e.code).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nowhere_digest_is_well_formed() {
        assert!(is_digest(NOWHERE_DIGEST));
        assert_eq!(NOWHERE_DIGEST.len(), "sha256:".len() + 64);
    }

    #[test]
    fn error_codes_are_read_from_oci_error_bodies() {
        assert_eq!(
            error_codes(br#"{"errors":[{"code":"UNSUPPORTED","message":"x"}]}"#),
            vec!["UNSUPPORTED".to_string()]
        );
        assert!(error_codes(b"Method not allowed").is_empty());
    }
}
