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

use super::{
    AuthMethod, Capability, CapabilityStatus, CheckContext, CheckKind, CheckResult, Reason, Status,
    refusal,
};
use crate::client::{RequestError, Response};
use crate::config::{Credentials, Target};
use crate::distribution::{
    Answer, Class, Digest, Lookup, ManifestRef, Reference, Referrers, Scope, UploadSession,
};

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
        subject_refused: None,
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
    /// Why the test image could not be read, when it was refused (its reason and note):
    /// the mount probe, which needs it, is denied for the same reason.
    subject_refused: Option<(Reason, String)>,
}

impl Probing<'_> {
    async fn probe_all(&mut self) -> Result<(), Abort> {
        self.probe_api_version().await?;
        let subject = self.probe_referrers().await?;
        self.probe_chunked_upload().await?;
        self.probe_mount(subject.as_ref()).await?;
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

    /// Records a probe's answer other than success, as [`Self::refusal`] judges it.
    fn push_refusal(&mut self, capability: Capability, answer: &Answer, repo: &str, writes: bool) {
        let probe = self.refusal(capability, answer, repo, writes);
        self.probes.push(probe);
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
            .api()
            .ping(true)
            .await
            .map_err(Self::abort(cap, "registry API root GET /v2/"))?;
        let answer = Answer::api_root(&resp);
        let code = answer.status;
        self.auth_required = answer.challenges() || answer.class == Class::NoChallenge;
        match resp
            .api_version()
            .filter(|_| answer.class != Class::NotTheApi)
        {
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
                let (state, reason) = match answer.class {
                    _ if self.auth_required => (CapabilityStatus::Unsupported, Reason::Unsupported),
                    Class::Success => (CapabilityStatus::Unsupported, Reason::Unsupported),
                    Class::NotTheApi => (CapabilityStatus::Error, Reason::NotARegistry),
                    Class::RateLimited => (CapabilityStatus::Error, Reason::RateLimited),
                    Class::ServerError => (CapabilityStatus::Error, Reason::ServerError),
                    _ => (CapabilityStatus::Error, Reason::UnexpectedStatus),
                };
                self.push(
                    cap,
                    state,
                    Some(code),
                    reason,
                    format!(
                        "{} (GET /v2/ answered {} without a well-formed OCI-Distribution-API-Version or Docker-Distribution-API-Version header)",
                        state.as_str(),
                        answer.describe()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Asks the referrers API about the test image; returns the test manifest's digest when
    /// it could be resolved (the mount probe reads its blob from it).
    async fn probe_referrers(&mut self) -> Result<Option<Digest>, Abort> {
        let cap = Capability::Referrers;
        let target = self.target;
        let image = format!("{}:{}", target.test_repository, target.test_tag);
        let Some((digest, subject)) = self.referrers_subject(&image).await? else {
            return Ok(None);
        };
        let answer = self
            .cx
            .api()
            .referrers(&target.test_repository, &digest)
            .await
            .map_err(Self::abort(cap, format!("list the referrers of {image}")))?;
        self.referrers_answer(answer);
        Ok(subject)
    }

    /// The digest to ask the referrers API about, and again when it names the test image
    /// (else [`NOWHERE_DIGEST`], which still shows whether the API exists). `None` when
    /// reading the image was denied: so is the probe, and later the mount probe.
    async fn referrers_subject(
        &mut self,
        image: &str,
    ) -> Result<Option<(Digest, Option<Digest>)>, Abort> {
        let cap = Capability::Referrers;
        let target = self.target;
        let lookup = self
            .cx
            .api()
            .resolve_manifest(&target.test_repository, &Reference::Tag(&target.test_tag))
            .await
            .map_err(Self::abort(cap, format!("resolve {image}")))?;
        let nowhere =
            || Digest::parse(NOWHERE_DIGEST).expect("NOWHERE_DIGEST is well-formed (tested)");
        let (digest, subject, why) = match lookup {
            Lookup::Found(ManifestRef {
                digest: Some(digest),
                ..
            }) => (digest.clone(), Some(digest), String::new()),
            Lookup::Found(found) => (
                nowhere(),
                None,
                format!(
                    "HTTP {} without a valid Docker-Content-Digest, and the manifest could not be read",
                    found.status
                ),
            ),
            Lookup::Refused(answer, _) => {
                let mut probe = self.refusal(cap, &answer, &target.test_repository, false);
                if probe.state == CapabilityStatus::Denied {
                    probe.note = format!("{} reading the test image {image}", probe.note);
                    self.subject_refused = Some((probe.reason, probe.note.clone()));
                    self.probes.push(probe);
                    return Ok(None);
                }
                (nowhere(), None, answer.describe())
            }
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
        Ok(Some((digest, subject)))
    }

    /// Records what the referrers API answered: supported with its count of referrers,
    /// unsupported when the answer is not the API, or a refusal.
    fn referrers_answer(&mut self, answer: Referrers) {
        let cap = Capability::Referrers;
        match answer {
            Referrers::Index {
                status,
                count,
                filters_applied,
                truncated,
                wrong_content_type,
            } => {
                if let Some(f) = filters_applied {
                    self.evidence.insert("filters_applied", f);
                }
                if let Some(ct) = wrong_content_type {
                    self.evidence.insert(
                        "referrers_content_type",
                        format!("{ct} (not the OCI index type; some clients fall back to tags)"),
                    );
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
            Referrers::NotTheApi { status, why } => self.push(
                cap,
                CapabilityStatus::Unsupported,
                Some(status),
                Reason::Unsupported,
                format!("unsupported ({why}; clients fall back to sha256-<hex> tags)"),
            ),
            Referrers::Refused(answer) => {
                let target = self.target;
                self.push_refusal(cap, &answer, &target.test_repository, false);
            }
        }
    }

    async fn probe_chunked_upload(&mut self) -> Result<(), Abort> {
        let cap = Capability::ChunkedUpload;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let repo = self.target.push_test_repository.clone();
        let api = self.cx.api();
        let (resp, scope) = api
            .start_upload(&repo, &Scope::write(&repo, None))
            .await
            .map_err(Self::abort(
                cap,
                format!("open an upload session in {repo}"),
            ))?;
        let answer = Answer::upload(&resp);
        let code = answer.status;
        if !answer.session_opened() {
            self.push_refusal(cap, &answer, &repo, true);
            return Ok(());
        }
        if let Some(min) = resp.header("oci-chunk-min-length") {
            self.evidence
                .insert("chunk_min_length", min.chars().take(20).collect());
        }
        let cancel = UploadSession::opened(&resp, scope).cancel(&api).await;
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

    /// Mounts the test image's config blob ([`Self::mount_blob`]) into the push test
    /// repository, having looked whether the repository held it already.
    async fn probe_mount(&mut self, subject: Option<&Digest>) -> Result<(), Abort> {
        let cap = Capability::CrossRepoMount;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let Some(blob) = self.mount_blob(subject).await? else {
            return Ok(());
        };
        let target = self.target;
        let (from, repo) = (&target.test_repository, &target.push_test_repository);
        let api = self.cx.api();
        let scopes = Scope::write(repo, Some(&Scope::pull(from)));
        // A blob the push repository held before the probe is not ours to remove afterwards.
        let (before, _) = api
            .head_blob(repo, &blob, &scopes)
            .await
            .map_err(Self::abort(
                cap,
                format!("look up the mount blob in {repo}"),
            ))?;
        let ours = matches!(
            Answer::of(&before).class,
            Class::NotFound | Class::RepositoryUnknown
        );
        let (resp, scope) = api
            .mount(repo, &blob, from, &scopes)
            .await
            .map_err(Self::abort(
                cap,
                format!("mount a blob from {from} into {repo}"),
            ))?;
        self.mount_answer(&resp, scope, &blob, ours).await;
        Ok(())
    }

    /// The blob to mount: the config blob of the test manifest `subject`. `None`, with the
    /// probe recorded unsent, without one: denied for the reason reading the test image was,
    /// or an error when the image or its config blob could not be resolved.
    async fn mount_blob(&mut self, subject: Option<&Digest>) -> Result<Option<Digest>, Abort> {
        let cap = Capability::CrossRepoMount;
        let target = self.target;
        let from = &target.test_repository;
        if let (None, Some((reason, note))) = (subject, self.subject_refused.clone()) {
            self.push(cap, CapabilityStatus::Denied, None, reason, note);
            return Ok(None);
        }
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
            return Ok(None);
        };
        let read = self.cx.api().config_blob(from, manifest).await;
        match read.map_err(Self::abort(
            cap,
            format!("read the test manifest in {from}"),
        ))? {
            Ok(blob) => Ok(Some(blob)),
            Err(why) => {
                self.push(
                    cap,
                    CapabilityStatus::Error,
                    None,
                    Reason::InvalidResponse,
                    format!("error (not probed: {why})"),
                );
                Ok(None)
            }
        }
    }

    /// Records what the mount answered: 201 supported (its blob link removed when `ours`),
    /// 202 an upload session instead (cancelled; unsupported), anything else a refusal.
    async fn mount_answer(&mut self, resp: &Response, scope: Scope, blob: &Digest, ours: bool) {
        let cap = Capability::CrossRepoMount;
        let target = self.target;
        let repo = &target.push_test_repository;
        let answer = Answer::upload(resp);
        let code = answer.status;
        match answer {
            _ if answer.mounted() => {
                let cleanup = if ours {
                    self.cx.api().remove_blob_link(repo, blob, &scope).await
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
            _ if answer.session_opened() => {
                let cancel = UploadSession::opened(resp, scope)
                    .cancel(&self.cx.api())
                    .await;
                self.evidence.insert("mount_upload_cancel", cancel.detail);
                self.push(
                    cap,
                    CapabilityStatus::Unsupported,
                    Some(code),
                    Reason::Unsupported,
                    "unsupported (HTTP 202: the registry opened an ordinary upload session instead of mounting)",
                );
            }
            _ => self.push_refusal(cap, &answer, repo, true),
        }
    }

    /// An `OPTIONS` (evidence only), then DELETEs of a manifest and a blob whose digest names
    /// nothing; their answers become one probe ([`combined`]).
    async fn probe_delete(&mut self) -> Result<(), Abort> {
        let cap = Capability::Delete;
        if self.writes_denied(cap) {
            return Ok(());
        }
        let repo = self.target.push_test_repository.clone();
        let api = self.cx.api();
        let nowhere =
            Digest::parse(NOWHERE_DIGEST).expect("NOWHERE_DIGEST is well-formed (tested)");
        // The same scope as the upload probes, so the cached token is reused.
        let [scope, _] = Scope::write(&repo, None);
        let options = api
            .options_manifest(&repo, &nowhere, &scope)
            .await
            .map_err(Self::abort(cap, format!("OPTIONS on a manifest in {repo}")))?;
        self.evidence.insert(
            "options_allow",
            match options.header("allow") {
                Some(allow) => format!(
                    "{} (evidence only: Distribution lists DELETE even with delete disabled)",
                    allow.chars().take(100).collect::<String>()
                ),
                None => format!("{}, no Allow header", Answer::of(&options).describe()),
            },
        );
        let mut outcomes = Vec::new();
        for kind in ["manifests", "blobs"] {
            let sent = if kind == "manifests" {
                api.delete_manifest(&repo, &nowhere, &scope).await
            } else {
                api.delete_blob(&repo, &nowhere, &scope).await
            };
            let resp = sent.map_err(Self::abort(
                cap,
                format!("DELETE of an absent {kind} digest in {repo}"),
            ))?;
            outcomes.push((kind, self.delete_answer(&Answer::of(&resp), &repo)));
        }
        if let Some(probe) = combined(outcomes) {
            self.probes.push(probe);
        }
        Ok(())
    }

    /// What one DELETE of an absent digest says: success or 404 that delete is enabled,
    /// 405 (or `UNSUPPORTED`) that it is not, NAME_UNKNOWN nothing; else a refusal.
    fn delete_answer(&self, answer: &Answer, repo: &str) -> Probe {
        let cap = Capability::Delete;
        let code = answer.status;
        match answer.class {
            // Delete is enabled: the digest names nothing (MANIFEST_UNKNOWN, BLOB_UNKNOWN).
            Class::Success | Class::NotFound => Probe {
                capability: cap,
                state: CapabilityStatus::Supported,
                code: Some(code),
                reason: Reason::Ok,
                note: format!("supported ({})", answer.describe()),
            },
            // NAME_UNKNOWN: the repository is missing, which proves nothing about delete.
            Class::RepositoryUnknown => Probe {
                capability: cap,
                state: CapabilityStatus::Error,
                code: Some(code),
                reason: Reason::RepositoryNotFound,
                note: format!(
                    "unknown ({}: {repo} does not exist, so delete support cannot be told; create it or set `push_test_repository`)",
                    answer.describe()
                ),
            },
            Class::Unsupported => Probe {
                capability: cap,
                state: CapabilityStatus::Unsupported,
                code: Some(code),
                reason: Reason::Unsupported,
                note: format!("unsupported ({}: delete is disabled)", answer.describe()),
            },
            _ => self.refusal(cap, answer, repo, true),
        }
    }

    /// A probe's answer other than success, judged by the one table every check uses
    /// (`checks::refusal`): denied when it blames the credentials or a permission,
    /// unsupported when the registry refuses the operation itself, an error otherwise.
    /// `writes` for the write probes (upload, mount, delete).
    fn refusal(&self, capability: Capability, answer: &Answer, repo: &str, writes: bool) -> Probe {
        let what = answer.describe();
        // The capability is switched off: not a refusal of the account.
        if answer.class == Class::Unsupported {
            return Probe {
                capability,
                state: CapabilityStatus::Unsupported,
                code: Some(answer.status),
                reason: Reason::Unsupported,
                note: format!("unsupported ({what}: the registry has it disabled)"),
            };
        }
        let judged = refusal(
            KIND,
            writes,
            answer,
            self.cx.acting(self.anonymous),
            &format!("probing {}", capability.as_str()),
            repo,
        );
        let state = match judged.reason {
            Reason::Unauthorized
            | Reason::InvalidCredentials
            | Reason::CredentialsExpired
            | Reason::Forbidden => CapabilityStatus::Denied,
            Reason::ReadOnly => CapabilityStatus::Unsupported,
            _ => CapabilityStatus::Error,
        };
        let said = answer
            .message()
            .map(|m| format!(": \"{m}\""))
            .unwrap_or_default();
        let why = match judged.reason {
            Reason::Unauthorized => "no credentials are configured".to_string(),
            Reason::InvalidCredentials => "the credentials were rejected".to_string(),
            Reason::CredentialsExpired => "the credentials have expired".to_string(),
            Reason::Forbidden => format!("the credentials lack the permission on {repo}"),
            Reason::ReadOnly if answer.class == Class::ProxyCache => {
                "a pull-through cache (proxy-cache project) refuses every push".to_string()
            }
            Reason::ReadOnly => "the registry is in read-only or maintenance mode".to_string(),
            Reason::RepositoryNotFound => {
                format!("{repo} does not exist; create it or set `push_test_repository`")
            }
            _ => String::new(),
        };
        let sep = if why.is_empty() { "" } else { "; " };
        Probe {
            capability,
            state,
            code: Some(answer.status),
            reason: judged.reason,
            note: format!("{} ({what}{said}{sep}{why})", state.as_str()),
        }
    }

    /// Turns the probes into the check's result.
    fn finish(mut self, aborted: Option<Abort>) -> CheckResult {
        let failure = self.complete(aborted);
        let (status, reason, code, message) = self.verdict(failure.as_ref());
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

    /// Every capability gets a probe, in [`Capability::ALL`]'s order: the one an error
    /// aborted says so (and is returned), the ones never reached "not probed".
    fn complete(&mut self, aborted: Option<Abort>) -> Option<Abort> {
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
        failure
    }

    /// The check's status, reason, HTTP status and message from the complete probes: an
    /// abort fails; the referrers API missing, or any other capability, is `info`.
    fn verdict(&self, failure: Option<&Abort>) -> (Status, Reason, Option<u16>, String) {
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

        if let Some(abort) = failure {
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
            // An optional feature the registry lacks is `info`, like the other capabilities
            // (docs/checks.md, "A healthy registry is green"); a capability lost is paged on
            // by the alerts, which see its history (OciRegistryCapabilityScoreDropped).
            (
                Status::Info,
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
        }
    }
}

/// The delete probe's one outcome from its answers, one per kind (manifests, blobs): the
/// worst state decides (supported, unsupported, denied, error, in that order; the later
/// answer on a tie), with its note when all states agree and each kind's note when not.
fn combined(outcomes: Vec<(&str, Probe)>) -> Option<Probe> {
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
    let (_, mut worst) = outcomes.into_iter().max_by_key(|(_, p)| rank(p.state))?;
    worst.note = note;
    Some(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CapabilityStatus::{Denied as D, Supported as S, Unsupported as U};

    #[test]
    fn the_nowhere_digest_is_well_formed() {
        assert!(Digest::parse(NOWHERE_DIGEST).is_some());
        assert_eq!(NOWHERE_DIGEST.len(), "sha256:".len() + 64);
    }

    /// One DELETE's probe: `state` on HTTP `code`, its note naming both.
    fn probe(kind: &'static str, state: CapabilityStatus, code: u16) -> (&'static str, Probe) {
        let note = format!("{} (HTTP {code})", state.as_str());
        let (capability, reason, code) = (Capability::Delete, Reason::Ok, Some(code));
        let probe = Probe {
            capability,
            state,
            code,
            reason,
            note,
        };
        (kind, probe)
    }

    #[test]
    fn the_worse_delete_answer_decides_and_differing_notes_are_both_kept() {
        let one = combined(vec![probe("manifests", S, 404), probe("blobs", D, 403)]);
        let one = one.expect("two answers make one probe");
        assert_eq!((one.state, one.code), (D, Some(403)));
        assert_eq!(
            one.note,
            "manifests: supported (HTTP 404), blobs: denied (HTTP 403)"
        );
        // Alike: the later answer, with the first one's note.
        let one = combined(vec![probe("manifests", U, 405), probe("blobs", U, 400)]);
        let one = one.expect("two answers make one probe");
        assert_eq!(
            (one.code, one.note.as_str()),
            (Some(400), "unsupported (HTTP 405)")
        );
        assert!(combined(Vec::new()).is_none());
    }
}
