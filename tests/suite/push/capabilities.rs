//! The push, capabilities and referrers checks: against real CNCF Distribution registries
//! (open with delete, htpasswd without delete, read-only, token auth with a pull-only and a
//! pull+push+delete user) for every outcome they produce, against mockito for the answers
//! Distribution 2.8 never gives (a referrers API, 403, 5xx, a mount answered 202), and the
//! proof that 200 rounds of probing leave no artifact behind.

use crate::common;
use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock::{answer, reply};
use common::{basic_challenge, config_from_toml, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::capabilities::NOWHERE_DIGEST;
use oci_registry_exporter::checks::{
    self, Capability, CapabilityStatus, CheckKind, CheckResult, Reason, Status,
};
use oci_registry_exporter::client::RegistryClient;
use oci_registry_exporter::config::Config;
use oci_registry_exporter::outcome::AuthUsed;
use support::{Kind, Options, TestRegistry};

use CapabilityStatus::{Denied as D, Error as E, Supported as S, Unsupported as U};

const PUSH_REPO: &str = "stellaops/doctor-test";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn config(url: &str, extra: &str) -> Config {
    config_from_toml(&format!(
        "[[registries]]\nname = \"r\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{extra}\n"
    ))
}

fn login(user: &str, password: &str) -> String {
    format!("username = \"{user}\"\npassword = \"{password}\"")
}

fn alice() -> String {
    login(support::BASIC_USER, support::BASIC_PASSWORD)
}

/// The capability states in the order api_version, referrers, chunked_upload,
/// cross_repo_mount, delete.
fn states(r: &CheckResult) -> Vec<CapabilityStatus> {
    let order: Vec<Capability> = r.facts.capabilities.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, Capability::ALL, "every capability, in order");
    r.facts.capabilities.iter().map(|(_, s)| *s).collect()
}

fn outcome(r: &CheckResult) -> (Status, Reason, Option<u16>) {
    (r.status, r.reason, r.http_status)
}

/// The status, reason and HTTP status of `r` are `want`; the check's message when not.
#[track_caller]
fn assert_outcome(r: &CheckResult, want: (Status, Reason, Option<u16>)) {
    assert_eq!(outcome(r), want, "{}", r.message);
}

/// "METHOD path" of every request the check made.
fn requests(r: &CheckResult) -> Vec<String> {
    r.requests
        .iter()
        .map(|q| format!("{} {}", q.method, q.path))
        .collect()
}

fn ev<'a>(r: &'a CheckResult, key: &str) -> &'a str {
    r.evidence.get(key).map(String::as_str).unwrap_or("")
}

/// Every `link` file under a repository's `_layers` (the blobs the repository references).
fn blob_links(root: &Path, repo: &str) -> Vec<PathBuf> {
    files(&repo_dir(root, repo).join("_layers"))
        .into_iter()
        .filter(|p| p.ends_with("link"))
        .collect()
}

fn repo_dir(root: &Path, repo: &str) -> PathBuf {
    root.join("docker/registry/v2/repositories").join(repo)
}

/// Every file below `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Path and content of every file below `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files(dir)
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).unwrap_or_default();
            (p, content)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Real registries
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn open_registry_with_delete() {
    let reg = TestRegistry::start(Kind::Open).await;
    let anonymous = config(&reg.url, "");

    let r = run_one(&anonymous, CheckKind::Push).await;
    assert_eq!(outcome(&r), (Status::Skip, Reason::NoCredentials, None));
    assert!(r.requests.is_empty(), "a skipped push sends nothing");
    assert_eq!(r.facts.upload_cancelled, None);

    // An open registry ignores credentials; configured ones make the push check run.
    let r = run_one(&config(&reg.url, &login("any", "thing")), CheckKind::Push).await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(true));
    assert!(r.message.contains("cancelled"), "{}", r.message);
    // The ping learns that /v2/ is open, so no credentials are sent at all.
    assert!(r.requests.iter().all(|q| q.auth == AuthUsed::None));
    assert_eq!(
        requests(&r),
        [
            "GET /v2/".to_string(),
            format!("POST /v2/{PUSH_REPO}/blobs/uploads/"),
            format!(
                "DELETE /v2/{PUSH_REPO}/blobs/uploads/{}",
                r.requests[2].path.rsplit('/').next().unwrap()
            ),
        ]
    );
    assert_eq!(r.requests[2].status, Some(204));

    // Anonymous writes work here, so every write probe is sent.
    let r = run_one(&anonymous, CheckKind::Capabilities).await;
    assert_outcome(&r, (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, S, S, S], "{}", r.message);
    assert_eq!(r.api_version.as_deref(), Some("registry/2.0"));
    assert!(
        r.message.contains("referrers API is missing"),
        "{}",
        r.message
    );
    assert!(
        ev(&r, "mount_cleanup").contains("deleted"),
        "{:?}",
        r.evidence
    );
    assert!(
        ev(&r, "options_allow").contains("DELETE"),
        "{:?}",
        r.evidence
    );
    assert!(
        ev(&r, "upload_cancel").contains("cancelled"),
        "{:?}",
        r.evidence
    );
    assert!(blob_links(&reg.root, PUSH_REPO).is_empty());

    let r = run_one(&anonymous, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    let tag = format!("sha256-{}", &support::seed_manifest_digest()[7..]);
    assert_eq!(ev(&r, "fallback_tag"), format!("{tag}: absent"));
    assert!(r.message.contains(&tag), "{}", r.message);
    assert_eq!(r.facts.referrers_count, None);

    // Where a client stored referrers under the fallback tag, the check says so.
    reg.push_manifest(
        support::SEED_REPO,
        &tag,
        support::OCI_MANIFEST_MEDIA_TYPE,
        support::seed_manifest(),
    )
    .await;
    let r = run_one(&anonymous, CheckKind::Referrers).await;
    assert_eq!(ev(&r, "fallback_tag"), format!("{tag}: present"));

    // A missing test tag: referrers cannot be verified (info, as for pull); capabilities
    // still probes the API with a digest that names nothing, and cannot probe a mount.
    let missing = config(&reg.url, "test_tag = \"no-such-tag\"");
    let r = run_one(&missing, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::NotFound, Some(404)));
    assert!(r.message.contains("no-such-tag"), "{}", r.message);
    let r = run_one(&missing, CheckKind::Capabilities).await;
    assert_eq!(states(&r), [S, U, S, E, S], "{}", r.message);
    assert!(
        ev(&r, "referrers_subject").starts_with(NOWHERE_DIGEST),
        "{:?}",
        r.evidence
    );
}

#[tokio::test]
async fn basic_auth_registry_without_delete() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let right = config(&reg.url, &alice());

    // Cancelling an upload is not a delete: it works with delete disabled.
    let r = run_one(&right, CheckKind::Push).await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(true));

    let wrong = config(&reg.url, &login(support::BASIC_USER, "not-it"));
    let r = run_one(&wrong, CheckKind::Push).await;
    assert_eq!(
        outcome(&r),
        (Status::Fail, Reason::InvalidCredentials, Some(401))
    );
    assert!(!r.message.contains("not-it"));

    let anonymous = config(&reg.url, "");
    let r = run_one(&anonymous, CheckKind::Push).await;
    assert_eq!(outcome(&r), (Status::Skip, Reason::NoCredentials, None));

    let r = run_one(&right, CheckKind::Capabilities).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, S, S, U], "{}", r.message);
    assert!(ev(&r, "delete").contains("UNSUPPORTED"), "{:?}", r.evidence);
    // OPTIONS claims DELETE although delete is disabled: evidence only.
    assert!(
        ev(&r, "options_allow").contains("DELETE"),
        "{:?}",
        r.evidence
    );
    // The mount's blob link cannot be removed here (documented in docs/checks.md).
    assert!(ev(&r, "mount_cleanup").contains("405"), "{:?}", r.evidence);
    let links = blob_links(&reg.root, PUSH_REPO);
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(
        links[0]
            .to_string_lossy()
            .contains(&support::seed_config_digest()[7..])
    );
    // The next run finds the link already there, and leaves it as it was.
    let r = run_one(&right, CheckKind::Capabilities).await;
    assert_eq!(states(&r), [S, U, S, S, U]);
    assert!(
        ev(&r, "mount_cleanup").contains("held the blob before"),
        "{:?}",
        r.evidence
    );
    assert_eq!(blob_links(&reg.root, PUSH_REPO).len(), 1);

    // Without credentials on a registry that demands them: no write is even sent. The
    // referrers probe's anonymous 401 is `unauthorized`, as in every other check.
    let r = run_one(&anonymous, CheckKind::Capabilities).await;
    assert_outcome(&r, (Status::Info, Reason::Unauthorized, Some(401)));
    assert_eq!(states(&r), [S, D, D, D, D], "{}", r.message);
    assert!(
        requests(&r)
            .iter()
            .all(|q| q.starts_with("GET ") || q.starts_with("HEAD ")),
        "{:?}",
        requests(&r)
    );

    let r = run_one(&anonymous, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::Unauthorized, Some(401)));
    let r = run_one(&right, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
}

#[tokio::test]
async fn read_only_registry() {
    let reg = TestRegistry::start(Kind::ReadOnly).await;
    let r = run_one(&config(&reg.url, &login("any", "thing")), CheckKind::Push).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::ReadOnly, Some(405)));
    assert!(r.message.contains("read-only"), "{}", r.message);
    assert_eq!(r.facts.upload_cancelled, None);

    let anonymous = config(&reg.url, "");
    let r = run_one(&anonymous, CheckKind::Capabilities).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, U, U, U], "{}", r.message);
    assert!(
        ev(&r, "chunked_upload").contains("read-only"),
        "{:?}",
        r.evidence
    );
    assert!(ev(&r, "delete").contains("read-only"), "{:?}", r.evidence);
    assert!(
        ev(&r, "options_allow").starts_with("GET, HEAD"),
        "{:?}",
        r.evidence
    );

    let r = run_one(&anonymous, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
}

#[tokio::test]
async fn token_registry_reader_pusher_and_anonymous() {
    let reg = TestRegistry::start(Kind::Token).await;
    let bob = config(
        &reg.url,
        &login(support::TOKEN_ADMIN_USER, support::TOKEN_ADMIN_PASSWORD),
    );
    let reader = config(
        &reg.url,
        &login(support::TOKEN_READER_USER, support::TOKEN_READER_PASSWORD),
    );
    let anonymous = config(&reg.url, "");

    // bob may delete, so the token asked with delete cancels the session.
    let r = run_one(&bob, CheckKind::Push).await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(true));
    assert_eq!(
        ev(&r, "scope"),
        format!("repository:{PUSH_REPO}:pull,push,delete")
    );

    // reader gets pull only: the insufficient_scope challenge names the problem.
    let r = run_one(&reader, CheckKind::Push).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::Forbidden, Some(401)));
    assert!(r.message.contains("no push permission"), "{}", r.message);
    // The scope without delete was tried too.
    assert_eq!(ev(&r, "scope"), format!("repository:{PUSH_REPO}:pull,push"));

    let wrong = config(
        &reg.url,
        &login(support::TOKEN_ADMIN_USER, "not-bobs-password"),
    );
    let r = run_one(&wrong, CheckKind::Push).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::InvalidCredentials)
    );
    assert!(!r.message.contains("not-bobs-password"));

    let r = run_one(&bob, CheckKind::Capabilities).await;
    assert_outcome(&r, (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, S, S, S], "{}", r.message);
    assert!(
        ev(&r, "mount_cleanup").contains("deleted"),
        "{:?}",
        r.evidence
    );
    assert!(blob_links(&reg.root, PUSH_REPO).is_empty());

    let r = run_one(&reader, CheckKind::Capabilities).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, D, D, D], "{}", r.message);
    assert!(
        ev(&r, "chunked_upload").contains("lack the permission"),
        "{:?}",
        r.evidence
    );

    // Anonymous pull works on library/*, but the registry demands auth: writes not sent.
    let r = run_one(&anonymous, CheckKind::Capabilities).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    assert_eq!(states(&r), [S, U, D, D, D], "{}", r.message);
    assert!(
        !requests(&r)
            .iter()
            .any(|q| q.starts_with("POST ") || q.starts_with("DELETE ") || q.contains(PUSH_REPO)),
        "{:?}",
        requests(&r)
    );

    for cfg in [&reader, &anonymous] {
        let r = run_one(cfg, CheckKind::Referrers).await;
        assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(404)));
    }
}

// ---------------------------------------------------------------------------------------
// Nothing left behind
// ---------------------------------------------------------------------------------------

/// Runs push and capabilities `rounds` times with one shared client (as the exporter has).
async fn hammer(reg: &TestRegistry, creds: &str, rounds: usize) -> Duration {
    // A longer timeout than elsewhere: a loaded test machine must not fail a round.
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"r\"\nurl = \"{}\"\ntimeout = \"15s\"\n{creds}\n",
        reg.url
    ));
    let target = cfg.registries[0].clone();
    let client = Arc::new(RegistryClient::new(&target).unwrap());
    let started = Instant::now();
    for round in 0..rounds {
        // The two checks run side by side, as a round of the exporter may run them; the
        // capabilities check itself never overlaps with another run of itself.
        let (push, caps) = tokio::join!(
            checks::run_check(CheckKind::Push, &target, &client),
            checks::run_check(CheckKind::Capabilities, &target, &client),
        );
        for q in push.requests.iter().chain(caps.requests.iter()) {
            if q.duration > Duration::from_secs(1) {
                eprintln!(
                    "slow request in round {round}: {} {} {:?} took {:?}",
                    q.method, q.path, q.status, q.duration
                );
            }
        }
        assert_eq!(push.status, Status::Pass, "round {round}: {}", push.message);
        assert_eq!(
            push.facts.upload_cancelled,
            Some(true),
            "round {round}: {}",
            push.message
        );
        assert_eq!(caps.status, Status::Info, "round {round}: {}", caps.message);
        assert_eq!(
            states(&caps)[2..4],
            [S, S],
            "round {round}: {}",
            caps.message
        );
    }
    started.elapsed()
}

async fn leaves_nothing_behind(kind: Kind, delete: bool, creds: String) -> Duration {
    let reg = TestRegistry::start_with(
        kind,
        Options {
            delete_enabled: Some(delete),
            seed: true,
            ..Default::default()
        },
    )
    .await;
    let v2 = reg.root.join("docker/registry/v2");
    let test_repo_before = snapshot(&repo_dir(&reg.root, support::SEED_REPO));
    let blobs_before = files(&v2.join("blobs"));

    let took = hammer(&reg, &creds, 200).await;

    // The test repository: not a byte changed, and no blob was added anywhere.
    assert_eq!(
        snapshot(&repo_dir(&reg.root, support::SEED_REPO)),
        test_repo_before,
        "{kind:?}: the test repository changed"
    );
    assert_eq!(
        files(&v2.join("blobs")),
        blobs_before,
        "{kind:?}: a blob was stored"
    );
    // The push test repository: no manifest, no tag, no upload data.
    let push_dir = repo_dir(&reg.root, PUSH_REPO);
    assert!(
        files(&push_dir.join("_manifests")).is_empty(),
        "{kind:?}: a manifest or tag was written"
    );
    let upload_data: Vec<_> = files(&push_dir.join("_uploads"))
        .into_iter()
        .filter(|p| p.ends_with("data") || p.ends_with("startedat"))
        .collect();
    assert!(
        upload_data.is_empty(),
        "{kind:?}: an upload session was not cancelled: {upload_data:?}"
    );
    // What Distribution itself keeps of a cancelled session (documented in docs/checks.md):
    // a hash state file per session, until upload purging removes it.
    let hashstates = files(&push_dir.join("_uploads")).len();
    eprintln!("{kind:?}: {hashstates} hash state files of cancelled upload sessions");
    assert!(hashstates <= 200 * 2, "{kind:?}: {hashstates}");
    // Blob links: none where delete works; the one mounted config blob where it does not.
    let links = blob_links(&reg.root, PUSH_REPO);
    if delete {
        assert!(links.is_empty(), "{kind:?}: blob links left: {links:?}");
    } else {
        assert_eq!(links.len(), 1, "{kind:?}: {links:?}");
        assert!(
            links[0]
                .to_string_lossy()
                .contains(&support::seed_config_digest()[7..])
        );
    }

    // The same through the API.
    let http = reg.client();
    let get = |path: String| {
        let mut req = http.get(format!("{}{path}", reg.url));
        if let Some(auth) = reg.admin_authorization(&[
            &format!("repository:{PUSH_REPO}:pull"),
            &format!("repository:{}:pull", support::SEED_REPO),
        ]) {
            req = req.header("Authorization", auth);
        }
        req.send()
    };
    let resp = get(format!("/v2/{PUSH_REPO}/tags/list")).await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert!(
        code == 404 || body.contains("\"tags\":null") || body.contains("\"tags\":[]"),
        "{kind:?}: tags in {PUSH_REPO}: {code} {body}"
    );
    let body = get(format!("/v2/{}/tags/list", support::SEED_REPO))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("[\"latest\"]"), "{kind:?}: {body}");
    let config_blob = get(format!(
        "/v2/{PUSH_REPO}/blobs/{}",
        support::seed_config_digest()
    ))
    .await
    .unwrap()
    .status()
    .as_u16();
    assert_eq!(config_blob, if delete { 404 } else { 200 }, "{kind:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_rounds_leave_nothing_behind() {
    let bob = login(support::TOKEN_ADMIN_USER, support::TOKEN_ADMIN_PASSWORD);
    let (with_delete, without_delete) = tokio::join!(
        leaves_nothing_behind(Kind::Token, true, bob),
        leaves_nothing_behind(Kind::Basic, false, alice()),
    );
    eprintln!(
        "200 rounds: token registry with delete {with_delete:?}, basic registry without delete {without_delete:?}"
    );
    let slowest = with_delete.max(without_delete);
    assert!(slowest < Duration::from_secs(30), "took {slowest:?}");
}

// ---------------------------------------------------------------------------------------
// mockito: answers Distribution 2.8 does not give
// ---------------------------------------------------------------------------------------

const MANIFEST_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const CONFIG_DIGEST: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn referrers_path() -> String {
    format!("/v2/library/alpine/referrers/{MANIFEST_DIGEST}")
}

fn index_body(n: usize) -> String {
    index_body_at(0, n)
}

/// An index of `n` descriptors, the first numbered `first` (pages of one list name
/// different referrers).
fn index_body_at(first: usize, n: usize) -> String {
    let entries = (first..first + n)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{i:064}","size":1,"artifactType":"application/example"}}"#
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{entries}]}}"#)
}

/// The push test repository's upload path, and a session `name` under it.
fn uploads() -> String {
    format!("/v2/{PUSH_REPO}/blobs/uploads/")
}

fn session(name: &str) -> String {
    format!("{}{name}", uploads())
}

/// `kind` (`manifests` or `blobs`) of the push test repository named by a digest that
/// names nothing: what the delete probe asks to delete.
fn nowhere(kind: &str) -> String {
    format!("/v2/{PUSH_REPO}/{kind}/{NOWHERE_DIGEST}")
}

async fn mock_manifest_head(server: &mut mockito::ServerGuard) -> mockito::Mock {
    let headers = [
        ("docker-content-digest", MANIFEST_DIGEST),
        ("content-type", "application/vnd.oci.image.manifest.v1+json"),
    ];
    answer(
        server,
        "HEAD",
        "/v2/library/alpine/manifests/latest",
        200,
        &headers,
        "",
    )
    .await
}

/// The referrers list answered `status` as `content_type`, with `body`.
async fn referrers(
    server: &mut mockito::ServerGuard,
    status: usize,
    content_type: &str,
    body: &str,
) -> mockito::Mock {
    let path = referrers_path();
    answer(
        server,
        "GET",
        path.as_str(),
        status,
        &[("content-type", content_type)],
        body,
    )
    .await
}

/// The push test repository's uploads answered `status` to a POST, with `headers`.
async fn upload_answer(
    server: &mut mockito::ServerGuard,
    status: usize,
    headers: &[(&str, &str)],
) -> mockito::Mock {
    answer(server, "POST", uploads().as_str(), status, headers, "").await
}

/// Both delete probes (manifest and blob) answered `status`.
async fn delete_probes(server: &mut mockito::ServerGuard, status: usize) {
    for kind in ["manifests", "blobs"] {
        answer(server, "DELETE", nowhere(kind).as_str(), status, &[], "").await;
    }
}

#[tokio::test]
async fn referrers_api_index_filters_and_pages() {
    let mut server = mockito::Server::new_async().await;
    mock_manifest_head(&mut server).await;
    let next = format!("<{}?n=2&last=x>; rel=\"next\"", referrers_path());
    let headers = [
        ("content-type", INDEX),
        ("oci-filters-applied", "artifactType"),
        ("link", next.as_str()),
    ];
    let page1 = reply(&mut server, "GET", referrers_path().as_str(), 200, &headers)
        .match_header("accept", INDEX)
        .with_body(index_body(2))
        .create_async()
        .await;
    let page2_path = format!("{}?n=2&last=x", referrers_path());
    let charset = format!("{INDEX}; charset=utf-8");
    let page2 = answer(
        &mut server,
        "GET",
        page2_path.as_str(),
        200,
        &[("content-type", charset.as_str())],
        &index_body_at(2, 1),
    )
    .await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Referrers).await;
    page1.assert_async().await;
    page2.assert_async().await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(200)));
    assert_eq!(r.facts.referrers_count, Some(3));
    assert_eq!(ev(&r, "referrers_count"), "3");
    assert_eq!(ev(&r, "filters_applied"), "artifactType");
    assert_eq!(ev(&r, "digest"), MANIFEST_DIGEST);
}

/// A `Link: rel="next"` that points back at the page itself (issue 24 §5): the list is read
/// once and its referrers counted once, not ten times over the page bound.
#[tokio::test]
async fn a_self_pointing_referrers_link_counts_each_referrer_once() {
    let mut server = mockito::Server::new_async().await;
    mock_manifest_head(&mut server).await;
    let itself = format!("<{}>; rel=\"next\"", referrers_path());
    let headers = [("content-type", INDEX), ("link", itself.as_str())];
    let page = reply(&mut server, "GET", referrers_path().as_str(), 200, &headers)
        .with_body(index_body(1))
        .expect_at_most(2)
        .create_async()
        .await;
    let r = run_one(&config(&server.url(), ""), CheckKind::Referrers).await;
    page.assert_async().await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(200)));
    assert_eq!(r.facts.referrers_count, Some(1), "{}", r.message);
}

#[tokio::test]
async fn referrers_404_with_an_index_is_supported_and_other_answers_are_not() {
    let mut server = mockito::Server::new_async().await;
    mock_manifest_head(&mut server).await;
    let cfg = config(&server.url(), "");

    // An early OCI 1.1 answer: 404 with an empty index.
    let m = referrers(&mut server, 404, INDEX, &index_body(0)).await;
    let r = run_one(&cfg, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Pass, Reason::Ok, Some(404)));
    assert_eq!(r.facts.referrers_count, Some(0));
    m.remove_async().await;

    // 200 and an index, but the wrong Content-Type: the API is there, not quite right.
    let m = referrers(&mut server, 200, "application/json", &index_body(1)).await;
    let r = run_one(&cfg, CheckKind::Referrers).await;
    assert_eq!(
        outcome(&r),
        (Status::Warn, Reason::Nonconformant, Some(200))
    );
    assert!(r.message.contains("Content-Type"), "{}", r.message);
    m.remove_async().await;
    let m = referrers(&mut server, 200, INDEX, "{\"errors\":[]}").await;
    // 200 but no index: not the API, so clients fall back to tags.
    let r = run_one(&cfg, CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Info, Reason::Unsupported, Some(200)));
    m.remove_async().await;

    for (code, status, reason) in [
        (403, Status::Fail, Reason::Forbidden),
        (503, Status::Fail, Reason::ServerError),
        (429, Status::Fail, Reason::RateLimited),
        (418, Status::Warn, Reason::UnexpectedStatus),
    ] {
        let m = answer(&mut server, "GET", referrers_path().as_str(), code, &[], "").await;
        let r = run_one(
            &config(&server.url(), &login("a", "b")),
            CheckKind::Referrers,
        )
        .await;
        assert_eq!(
            outcome(&r),
            (status, reason, Some(code as u16)),
            "HTTP {code}"
        );
        m.remove_async().await;
    }

    let r = run_one(&config("http://127.0.0.1:1", ""), CheckKind::Referrers).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::ConnectionRefused, None));
}

#[tokio::test]
async fn push_answers_403_5xx_and_refused() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let cfg = config(&server.url(), &login("a", "b"));
    for (code, status, reason) in [
        (403, Status::Fail, Reason::Forbidden),
        (500, Status::Fail, Reason::ServerError),
        (429, Status::Fail, Reason::RateLimited),
        (405, Status::Fail, Reason::ReadOnly),
        (404, Status::Fail, Reason::RepositoryNotFound),
        (200, Status::Warn, Reason::UnexpectedStatus),
    ] {
        let m = reply(&mut server, "POST", uploads().as_str(), code, &[])
            .match_header("authorization", Matcher::Regex("^Basic ".into()))
            .create_async()
            .await;
        let r = run_one(&cfg, CheckKind::Push).await;
        assert_eq!(
            outcome(&r),
            (status, reason, Some(code as u16)),
            "HTTP {code}"
        );
        // The ping, then the POST: nothing to cancel.
        assert_eq!(r.requests.len(), 2, "HTTP {code}: nothing to cancel");
        m.remove_async().await;
    }
    let r = run_one(
        &config("http://127.0.0.1:1", &login("a", "b")),
        CheckKind::Push,
    )
    .await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::ConnectionRefused, None));
}

#[tokio::test]
async fn push_cancels_on_the_registry_only_and_reports_a_refused_cancel() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let cfg = config(&server.url(), &login("a", "b"));
    let session = session("u-1");

    // A relative Location, with its _state query kept.
    let location = format!("{session}?_state=abc%3D");
    let post = upload_answer(&mut server, 202, &[("location", location.as_str())]).await;
    let cancel = reply(&mut server, "DELETE", session.as_str(), 204, &[])
        .match_query(Matcher::UrlEncoded("_state".into(), "abc=".into()))
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .create_async()
        .await;
    let r = run_one(&cfg, CheckKind::Push).await;
    post.assert_async().await;
    cancel.assert_async().await;
    assert_eq!(outcome(&r), (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(true));
    post.remove_async().await;
    cancel.remove_async().await;

    // A Location on another host is never followed: no credentials go there.
    let mut elsewhere = mockito::Server::new_async().await;
    let foreign = elsewhere
        .mock("DELETE", Matcher::Any)
        .expect(0)
        .create_async()
        .await;
    let location = format!("{}{session}?_state=x", elsewhere.url());
    upload_answer(&mut server, 202, &[("location", location.as_str())]).await;
    let r = run_one(&cfg, CheckKind::Push).await;
    foreign.assert_async().await;
    assert_eq!(outcome(&r), (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(false));
    assert!(
        r.message.contains("could not be cancelled") && r.message.contains("not at the registry"),
        "{}",
        r.message
    );
    // The ping and the POST; no DELETE went elsewhere.
    assert_eq!(r.requests.len(), 2);
    server.reset();
    basic_challenge(&mut server).await;

    // The cancel refused for want of delete (Distribution's token auth): still a pass.
    let location = format!("{}{session}", server.url());
    upload_answer(&mut server, 202, &[("location", location.as_str())]).await;
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"s\",scope=\"repository:{PUSH_REPO}:delete\",error=\"insufficient_scope\"",
        server.url()
    );
    let headers = [("www-authenticate", challenge.as_str())];
    answer(&mut server, "DELETE", session.as_str(), 401, &headers, "").await;
    let token = reply(&mut server, "GET", "/token", 200, &[])
        .match_query(Matcher::Any)
        .with_body(r#"{"token":"push-only"}"#)
        .create_async()
        .await;
    let r = run_one(&cfg, CheckKind::Push).await;
    token.assert_async().await;
    assert_eq!(outcome(&r), (Status::Pass, Reason::Ok, Some(202)));
    assert_eq!(r.facts.upload_cancelled, Some(false));
    assert!(
        r.message.contains("insufficient_scope") && r.message.contains("delete"),
        "{}",
        r.message
    );
}

/// A registry mock where every probe succeeds.
async fn capable_registry(server: &mut mockito::ServerGuard) {
    let api = [("oci-distribution-api-version", "oci/1.1")];
    answer(server, "GET", "/v2/", 200, &api, "").await;
    mock_manifest_head(server).await;
    referrers(server, 200, INDEX, &index_body(1)).await;
    let manifest = format!("/v2/library/alpine/manifests/{MANIFEST_DIGEST}");
    let manifest_type = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    let body = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{CONFIG_DIGEST}","size":2}},"layers":[]}}"#
    );
    answer(server, "GET", manifest.as_str(), 200, &manifest_type, &body).await;
    let config_blob = format!("/v2/{PUSH_REPO}/blobs/{CONFIG_DIGEST}");
    answer(server, "HEAD", config_blob.as_str(), 404, &[], "").await;
    let location = session("s-1");
    let headers = [
        ("location", location.as_str()),
        ("oci-chunk-min-length", "1048576"),
    ];
    upload_answer(server, 202, &headers).await;
    answer(server, "DELETE", location.as_str(), 204, &[], "").await;
    let allow = [("allow", "DELETE, GET, HEAD, PUT")];
    let options = format!("/v2/{PUSH_REPO}/manifests/{NOWHERE_DIGEST}");
    answer(server, "OPTIONS", options.as_str(), 200, &allow, "").await;
    delete_probes(server, 404).await;
}

fn mount_query() -> Matcher {
    Matcher::AllOf(vec![
        Matcher::UrlEncoded("mount".into(), CONFIG_DIGEST.into()),
        Matcher::UrlEncoded("from".into(), "library/alpine".into()),
    ])
}

/// The cross-repository mount of the config blob answered `status` with `location`.
async fn mount_answer(
    server: &mut mockito::ServerGuard,
    status: usize,
    location: &str,
) -> mockito::Mock {
    reply(
        server,
        "POST",
        uploads().as_str(),
        status,
        &[("location", location)],
    )
    .match_query(mount_query())
    .create_async()
    .await
}

#[tokio::test]
async fn capabilities_all_supported_then_a_mount_answered_202() {
    let mut server = mockito::Server::new_async().await;
    capable_registry(&mut server).await;
    let mounted = format!("/v2/{PUSH_REPO}/blobs/{CONFIG_DIGEST}");
    let mount = mount_answer(&mut server, 201, &mounted).await;
    let unlink = reply(&mut server, "DELETE", mounted.as_str(), 202, &[])
        .expect(1)
        .create_async()
        .await;
    let cfg = config(&server.url(), &login("a", "b"));
    let r = run_one(&cfg, CheckKind::Capabilities).await;
    mount.assert_async().await;
    unlink.assert_async().await;
    assert_outcome(&r, (Status::Pass, Reason::Ok, Some(200)));
    assert_eq!(states(&r), [S, S, S, S, S]);
    assert_eq!(r.api_version.as_deref(), Some("oci/1.1"));
    assert_eq!(ev(&r, "chunk_min_length"), "1048576");
    assert!(
        ev(&r, "mount_cleanup").contains("deleted"),
        "{:?}",
        r.evidence
    );
    mount.remove_async().await;
    unlink.remove_async().await;

    // 202 to a mount is the spec's fallback to an ordinary upload: unsupported, and the
    // session it opened is cancelled.
    let opened = session("m-1?_state=q");
    let fallback = mount_answer(&mut server, 202, &opened).await;
    let cancel = reply(&mut server, "DELETE", opened.as_str(), 204, &[])
        .expect(1)
        .create_async()
        .await;
    let r = run_one(&cfg, CheckKind::Capabilities).await;
    fallback.assert_async().await;
    cancel.assert_async().await;
    assert_outcome(&r, (Status::Info, Reason::Unsupported, Some(202)));
    assert_eq!(states(&r), [S, S, S, U, S]);
    assert!(
        ev(&r, "mount_upload_cancel").contains("cancelled"),
        "{:?}",
        r.evidence
    );
}

#[tokio::test]
async fn capabilities_write_probes_403_and_5xx() {
    let mut server = mockito::Server::new_async().await;
    let any_upload = || Matcher::Regex(format!("^{}", uploads()));
    // Registered first, so the all-supported mocks below do not shadow them.
    answer(&mut server, "POST", any_upload(), 403, &[], "").await;
    delete_probes(&mut server, 403).await;
    capable_registry(&mut server).await;
    let cfg = config(&server.url(), &login("a", "b"));
    let r = run_one(&cfg, CheckKind::Capabilities).await;
    assert_outcome(&r, (Status::Info, Reason::Forbidden, Some(403)));
    assert_eq!(states(&r), [S, S, D, D, D]);

    server.reset();
    answer(&mut server, "POST", any_upload(), 503, &[], "").await;
    capable_registry(&mut server).await;
    let r = run_one(&cfg, CheckKind::Capabilities).await;
    assert_outcome(&r, (Status::Info, Reason::ServerError, Some(503)));
    assert_eq!(states(&r), [S, S, E, E, S]);

    let r = run_one(&config("http://127.0.0.1:1", ""), CheckKind::Capabilities).await;
    assert_eq!(outcome(&r), (Status::Fail, Reason::ConnectionRefused, None));
    assert_eq!(states(&r), [E, E, E, E, E]);
}
