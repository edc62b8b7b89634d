//! Hostile servers and faulty files (issue 12): a token answer that overflows time
//! arithmetic, secret files that are FIFOs or endless devices, a credential helper that
//! hangs with a child, descriptor exhaustion, a registry that echoes credentials, an HTTPS
//! registry naming a plain-HTTP token realm, and an unreadable challenge. Every server is
//! on 127.0.0.1 and every wait is bounded.
//!
//! Reasons added for these faults are compared by name (`reason.as_str()`), so that each
//! test also compiles, and fails, against the code before its fix.

use super::an_unusable_challenge_is_an_invalid_response;
use crate::common;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use common::{Exporter, basic_challenge, config_from_toml, reason_of, run_one};
use mockito::Matcher;
use oci_registry_exporter::checks::{self, CheckKind, Reason, Status};
use oci_registry_exporter::client::RegistryClient;

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

fn bin() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"));
    c.env_remove("OCI__RegistryUrl")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs the doctor with `--format json` (at most `limit`) and returns its exit code and JSON.
async fn doctor_json(
    mut cmd: tokio::process::Command,
    config: &Path,
    limit: Duration,
) -> (Option<i32>, serde_json::Value, String) {
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .arg("--format")
        .arg("json");
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the doctor did not finish within {limit:?}"))
        .expect("the doctor starts");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        json,
        format!("{stdout}\n--- stderr\n{stderr}"),
    )
}

fn results(json: &serde_json::Value) -> Vec<&serde_json::Value> {
    json["results"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. A token lifetime that overflows `Instant + Duration`.

const HUGE_EXPIRES_IN: &str = r#"{"token":"tok-huge-lifetime","expires_in":18446744073709551615}"#;

/// A token registry on mockito whose token service answers `body`; `token_expect` is how
/// many token requests it must see.
async fn token_registry(body: &str, token_expect: usize) -> (mockito::ServerGuard, mockito::Mock) {
    let mut server = mockito::Server::new_async().await;
    let realm = format!("{}/token", server.url());
    server
        .mock("GET", "/v2/")
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header(
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\",service=\"hostile\""),
        )
        .expect_at_least(0)
        .create_async()
        .await;
    server
        .mock("GET", "/v2/")
        .match_header("authorization", "Bearer tok-huge-lifetime")
        .with_status(200)
        .expect_at_least(0)
        .create_async()
        .await;
    let token = server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(body)
        .expect(token_expect)
        .create_async()
        .await;
    (server, token)
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_capped_and_the_check_passes() {
    let (server, token) = token_registry(HUGE_EXPIRES_IN, 1).await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\n",
        server.url()
    ));
    let target = &cfg.registries[0];
    let client = Arc::new(RegistryClient::new(target).expect("client builds"));
    let before = SystemTime::now();
    let r = checks::run_check(CheckKind::Credentials, target, &client).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    // The lifetime is capped at 24 h: not u64::MAX seconds, not the 60 s default.
    let expiry = r
        .facts
        .token_expiry
        .expect("the token's expiry is reported");
    let lives = expiry
        .duration_since(before)
        .expect("expiry after the start");
    let day = Duration::from_secs(24 * 3600);
    assert!(
        lives <= day + Duration::from_secs(5) && lives >= day - Duration::from_secs(60),
        "token lives {lives:?}, want the 24 h cap"
    );
    // A second run reuses the cached token: it lives the capped time, not zero.
    let r = checks::run_check(CheckKind::Credentials, target, &client).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    assert!(
        r.requests
            .iter()
            .any(|q| q.note.as_deref() == Some("cached token")),
        "{:?}",
        r.requests
    );
    token.assert_async().await;
}

#[tokio::test]
async fn the_doctor_reports_that_token_answer_instead_of_exiting_101() {
    let (server, _token) = token_registry(HUGE_EXPIRES_IN, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registries]]\nname = \"huge\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"pw\"\nchecks = [\"registry\", \"credentials\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let (code, json, out) = doctor_json(bin(), &cfg, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{out}");
    let res = results(&json);
    assert_eq!(res.len(), 2, "{out}");
    assert!(res.iter().all(|r| r["status"] == "pass"), "{out}");
}

// ---------------------------------------------------------------------------------------
// 2. Secret files that block or never end.

/// Keeps a FIFO from blocking a reader for ever: after `after`, opens it read-write (which
/// never blocks on Linux) and writes a line, again and again until dropped. Only code that
/// opens the FIFO (the code before the fix) is released by it; it keeps such a test bounded.
struct FifoReleaser {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FifoReleaser {
    fn start(path: PathBuf, after: Duration) -> FifoReleaser {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if started.elapsed() >= after {
                    use std::io::Write as _;
                    use std::os::unix::fs::OpenOptionsExt as _;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)
                    {
                        let _ = f.write_all(b"pw\n");
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        FifoReleaser {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FifoReleaser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_password_file_fails_promptly_and_the_exporter_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("password");
    mkfifo(&fifo);
    let _release = FifoReleaser::start(fifo.clone(), Duration::from_secs(8));
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let text = format!(
        "[[registries]]\nname = \"fifo\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"1s\"\nusername = \"alice\"\npassword_file = \"{}\"\nchecks = [\"credentials\"]\n",
        server.url(),
        fifo.display()
    );
    // Loading reads the secret once (a warning if unreadable): bounded too.
    let started = Instant::now();
    let cfg = config_from_toml(&text);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "loading took {:?}",
        started.elapsed()
    );
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("not a regular file")),
        "{:?}",
        cfg.warnings
    );

    let started = Instant::now();
    let r = run_one(&cfg, CheckKind::Credentials).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the check took {:?}",
        started.elapsed()
    );
    assert_eq!(
        (r.status, r.reason),
        (Status::Fail, Reason::SecretUnreadable),
        "{}",
        r.message
    );
    assert!(
        r.message.contains(&fifo.display().to_string()),
        "{}",
        r.message
    );
    assert!(r.message.contains("FIFO"), "{}", r.message);

    let exporter = Exporter::start(cfg).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut seen = None;
    while Instant::now() < deadline {
        let healthy = http
            .get(exporter.url("/-/healthy"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(healthy.ok(), Some(200), "/-/healthy stopped answering");
        if let Ok(resp) = http.get(exporter.url("/metrics")).send().await {
            let body = resp.text().await.unwrap_or_default();
            seen = reason_of(&body, "fifo", "credentials");
            if seen.as_deref() == Some("secret_unreadable") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.as_deref(), Some("secret_unreadable"));
    tokio::time::timeout(Duration::from_secs(12), exporter.stop())
        .await
        .expect("the exporter stops");
}

/// Caps the doctor's address space: code that reads `/dev/zero` to the end dies of it
/// quickly instead of taking the machine's memory.
fn with_address_space_limit(cmd: &mut tokio::process::Command, bytes: u64) {
    cmd.env("MALLOC_ARENA_MAX", "2");
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[tokio::test]
async fn dev_zero_as_password_file_is_refused_with_a_clear_message() {
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registries]]\nname = \"zero\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword_file = \"/dev/zero\"\nchecks = [\"credentials\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let mut cmd = bin();
    with_address_space_limit(&mut cmd, 1 << 30);
    let (code, json, out) = doctor_json(cmd, &cfg, Duration::from_secs(30)).await;
    assert_eq!(code, Some(2), "{out}");
    let res = results(&json);
    assert_eq!(res.len(), 1, "{out}");
    assert_eq!(res[0]["reason"], "secret_unreadable", "{out}");
    let message = res[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/dev/zero") && message.contains("not a regular file"),
        "{message}"
    );
}

#[tokio::test]
async fn a_password_file_behind_symlinks_is_read_as_kubernetes_mounts_it() {
    // A Kubernetes secret volume: password -> ..data/password, ..data -> ..2024_01_01/.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("..2024_01_01");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("password"), "pw\n").unwrap();
    std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/password", dir.path().join("password")).unwrap();

    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    let ok = server
        .mock("GET", "/v2/")
        .match_header(
            "authorization",
            support::basic_authorization("alice", "pw").as_str(),
        )
        .with_status(200)
        .create_async()
        .await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"k8s\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword_file = \"{}\"\n",
        server.url(),
        dir.path().join("password").display()
    ));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let r = run_one(&cfg, CheckKind::Credentials).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Pass, Reason::Ok),
        "{}",
        r.message
    );
    ok.assert_async().await;
}

// ---------------------------------------------------------------------------------------
// 7. A credential helper that hangs with a child, or talks without end.

fn write_helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether `pid` is a live process (a zombie counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

/// A doctor config whose only registry takes credentials from a Docker config naming
/// `helper` as its credsStore.
fn helper_config(dir: &Path, url: &str, helper: &str) -> PathBuf {
    let docker = dir.join("docker-config.json");
    std::fs::write(&docker, format!("{{\"credsStore\":\"{helper}\"}}")).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registries]]\nname = \"helper\"\nurl = \"{url}\"\ntimeout = \"10s\"\ndocker_config = \"{}\"\nchecks = [\"credentials\"]\n",
            docker.display()
        ),
    )
    .unwrap();
    cfg
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn a_hung_credential_helper_leaves_no_process_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    write_helper(
        dir.path(),
        "hang",
        "#!/bin/sh\nsleep 300 &\necho $! > \"$HOSTILE_CHILD_PIDFILE\"\nsleep 300\n",
    );
    let cfg = helper_config(dir.path(), "http://127.0.0.1:9", "hang");
    let mut cmd = bin();
    cmd.env("PATH", path_with(dir.path()))
        .env("HOSTILE_CHILD_PIDFILE", &pidfile);
    let (code, json, out) = doctor_json(cmd, &cfg, Duration::from_secs(30)).await;
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(results(&json)[0]["reason"], "secret_unreadable", "{out}");
    let child: i32 = std::fs::read_to_string(&pidfile)
        .expect("the helper recorded its child")
        .trim()
        .parse()
        .expect("a pid");
    // SIGKILL is delivered at once, but give the reaper a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(child) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survived = alive(child);
    if survived {
        // Clean up the orphan this test made (by its pid) before failing.
        // SAFETY: kill with a pid this test recorded; no memory is involved.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    assert!(!survived, "the helper's child {child} survived the helper");
}

#[tokio::test]
async fn a_credential_helper_that_talks_without_end_is_cut_off_promptly() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "chatty",
        "#!/bin/sh\nexec yes '{\"Username\":\"a\"'\n",
    );
    let cfg = helper_config(dir.path(), "http://127.0.0.1:9", "chatty");
    let mut cmd = bin();
    cmd.env("PATH", path_with(dir.path()));
    let started = Instant::now();
    let (code, json, out) = doctor_json(cmd, &cfg, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}: {out}",
        started.elapsed()
    );
    assert_eq!(code, Some(2), "{out}");
    let r = &results(&json)[0];
    assert_eq!(r["reason"], "secret_unreadable", "{out}");
    assert!(
        r["message"].as_str().unwrap_or_default().contains("64 KiB"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Descriptor exhaustion is the exporter's problem, not the registry's.

/// A registry on 127.0.0.1 that answers every request 200 and keeps each connection open
/// (HTTP/1.1 keep-alive), so every client of the exporter holds a descriptor.
async fn keep_alive_registry() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        if stream.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn running_out_of_descriptors_is_local_resource_exhausted() {
    let (url, server) = keep_alive_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let mut text = String::from("max_concurrency = 64\n");
    for i in 0..120 {
        text.push_str(&format!(
            "[[registries]]\nname = \"r{i}\"\nurl = \"{url}\"\ntimeout = \"5s\"\nchecks = [\"registry\"]\n"
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = bin();
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, json, out) = doctor_json(cmd, &cfg, Duration::from_secs(60)).await;
    let res = results(&json);
    assert_eq!(res.len(), 120, "{out}");
    let reasons: Vec<&str> = res
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(
        !reasons.contains(&"connection_error"),
        "descriptor exhaustion blamed on the registry: {reasons:?}"
    );
    let exhausted: Vec<_> = res
        .iter()
        .filter(|r| r["reason"] == "local_resource_exhausted")
        .collect();
    assert!(!exhausted.is_empty(), "{reasons:?}\n{out}");
    assert_eq!(code, Some(2), "{out}");
    let message = exhausted[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("file descriptors") && message.contains("LimitNOFILE"),
        "{message}"
    );
    assert!(out.contains("file descriptors"), "no error log line: {out}");
    server.abort();
}

// ---------------------------------------------------------------------------------------
// 9. A registry that echoes the credential into a header the debug output keeps.

fn all_kept_headers(r: &oci_registry_exporter::checks::CheckResult) -> String {
    r.requests
        .iter()
        .flat_map(|q| q.headers.iter())
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

#[tokio::test]
async fn a_basic_credential_echoed_in_kept_headers_is_redacted() {
    let password = "s3cr3t-echo-password";
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let mut server = mockito::Server::new_async().await;
    basic_challenge(&mut server).await;
    server
        .mock("HEAD", MANIFEST)
        .match_header("authorization", Matcher::Regex("^Basic ".into()))
        .with_status(200)
        .with_header("docker-content-digest", "sha256:abc")
        // The whole Authorization value, the raw password and the base64 alone, in
        // headers the debug output keeps.
        .with_header_from_request("www-authenticate", |req| {
            req.header("authorization")
                .first()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        })
        .with_header("content-type", &format!("text/plain; echo={password}"))
        .with_header("location", &format!("/v2/echo/{encoded}/x?q=1"))
        .create_async()
        .await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"echo\"\nurl = \"{}\"\ntimeout = \"5s\"\nusername = \"alice\"\npassword = \"{password}\"\npull_blob = false\n",
        server.url()
    ));
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let kept = all_kept_headers(&r);
    let mut debug = String::new();
    oci_registry_exporter::report::result_debug(&mut debug, "echo", &r);
    for text in [&kept, &debug] {
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains(&encoded), "{text}");
    }
    assert!(kept.contains("www-authenticate: [redacted]"), "{kept}");
    assert!(kept.contains("content-type: [redacted]"), "{kept}");
    assert!(kept.contains("location: [redacted]"), "{kept}");
    assert!(
        kept.contains("docker-content-digest: sha256:abc"),
        "harmless headers stay: {kept}"
    );
}

#[tokio::test]
async fn an_obtained_token_echoed_in_kept_headers_is_redacted() {
    let token = "tok-echoed-0123456789";
    let mut server = mockito::Server::new_async().await;
    let realm = format!("{}/token", server.url());
    server
        .mock("GET", "/v2/")
        .with_status(401)
        .with_header(
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\",service=\"echo\""),
        )
        .create_async()
        .await;
    server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(format!("{{\"token\":\"{token}\",\"expires_in\":300}}"))
        .create_async()
        .await;
    server
        .mock("HEAD", MANIFEST)
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header(
            "www-authenticate",
            &format!(
                "Bearer realm=\"{realm}\",service=\"echo\",scope=\"repository:library/alpine:pull\""
            ),
        )
        .create_async()
        .await;
    server
        .mock("HEAD", MANIFEST)
        .match_header("authorization", format!("Bearer {token}").as_str())
        .with_status(200)
        .with_header("www-authenticate", &format!("Bearer echo=\"{token}\""))
        .create_async()
        .await;
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"echo\"\nurl = \"{}\"\ntimeout = \"5s\"\npull_blob = false\n",
        server.url()
    ));
    let r = run_one(&cfg, CheckKind::Pull).await;
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let kept = all_kept_headers(&r);
    assert!(!kept.contains(token), "{kept}");
    assert!(kept.contains("www-authenticate: [redacted]"), "{kept}");
}

// ---------------------------------------------------------------------------------------
// 10. An HTTPS registry naming a plain-HTTP token realm.

/// An HTTPS server on 127.0.0.1 (certificate from a generated CA) that answers every
/// request with 401 and a Bearer challenge naming `realm`. Returns its URL and CA PEM.
async fn tls_registry_naming(realm: String) -> (String, String, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let material = support::tls::server_tls();
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let realm = realm.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"tls\"\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (
        format!("https://127.0.0.1:{}", addr.port()),
        material.ca_pem,
        task,
    )
}

#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
    let mut token = mockito::Server::new_async().await;
    let leaked = token
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(r#"{"token":"t","expires_in":300}"#)
        .expect(0)
        .create_async()
        .await;
    let (url, ca_pem, task) = tls_registry_naming(format!("{}/token", token.url())).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let cfg = config_from_toml(&format!(
        "[[registries]]\nname = \"downgrade\"\nurl = \"{url}\"\ntimeout = \"5s\"\nca_file = \"{}\"\nusername = \"alice\"\npassword = \"clear-text-password\"\n",
        ca.display()
    ));
    for kind in [CheckKind::Credentials, CheckKind::Pull] {
        let r = run_one(&cfg, kind).await;
        assert_eq!(r.status, Status::Fail, "{kind:?}: {}", r.message);
        assert_eq!(
            r.reason.as_str(),
            "insecure_token_realm",
            "{kind:?}: {}",
            r.message
        );
        assert!(
            r.message.contains("http://") && r.message.contains("https://"),
            "the message names the realm and the fix: {}",
            r.message
        );
        assert!(!r.message.contains("clear-text-password"), "{}", r.message);
    }
    leaked.assert_async().await;
    task.abort();
}

// ---------------------------------------------------------------------------------------
// 12b. An unreadable challenge is an invalid response, not invalid credentials.

#[tokio::test]
async fn a_non_ascii_challenge_is_an_invalid_response() {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/")
        .with_status(401)
        .with_header(
            "www-authenticate",
            "Bearer realm=\"http://127.0.0.1:9/tökén\"",
        )
        .create_async()
        .await;
    // HEAD and GET alike: a bodiless HEAD refusal is asked again with GET.
    for method in ["HEAD", "GET"] {
        server
            .mock(method, MANIFEST)
            .with_status(401)
            .with_header(
                "www-authenticate",
                "Bearer realm=\"http://127.0.0.1:9/tökén\"",
            )
            .create_async()
            .await;
    }
    an_unusable_challenge_is_an_invalid_response(&server.url(), "garbled").await;
}
