//! The binary's command line, run as a user runs it: one exit-code scheme for the daemon and
//! the `check` subcommand (docs/operations.md, "Exit codes"), and `--web.telemetry-path`
//! end to end against a real Distribution registry.

use crate::common;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kind, TestRegistry};

const BIN: &str = env!("CARGO_BIN_EXE_oci-registry-exporter");
const USAGE: i32 = 3;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

/// The binary with no configuration from the environment.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("oci__")
            || lower.starts_with("registry__")
            || lower.starts_with("oci_registry_exporter_")
        {
            c.env_remove(key);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

/// A process's exit code (none when a signal ended it) and its stderr, trimmed.
type Exit = (Option<i32>, String);

/// Runs the binary with `args` and returns its exit code and stderr. A usage error must
/// end it at once: one still running after 20 s (it started serving instead) is killed and
/// the test fails.
fn exit_of(args: &[&str]) -> Exit {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Every kind of usage error exits 3, in the daemon, with `--check-config` and in `check`;
/// a failure to run is 1; `--check-config` answers "invalid" with 1; help and version 0.
#[test]
fn usage_errors_exit_3_in_the_daemon_and_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.toml");
    // A registry that refuses at once: a daemon that wrongly starts does no harm.
    std::fs::write(
        &valid,
        "[[registries]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let valid = valid.to_str().unwrap();
    let invalid = testdata("invalid-zero-timeout.toml");
    let invalid = invalid.to_str().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    let invalid_message = "invalid config: registries[0].timeout: must be greater than zero; set a duration such as \"10s\"";
    // The daemon listens here only if a case wrongly starts it.
    let listen = ["--web.listen-address", "127.0.0.1:0"];
    let daemon = |args: &[&str]| {
        let mut all = listen.to_vec();
        all.extend_from_slice(args);
        exit_of(&all)
    };

    // (what, exit code and stderr, expected code, a part of stderr)
    let cases: Vec<(&str, Exit, i32, String)> = vec![
        (
            "daemon: unknown flag",
            daemon(&["--config", valid, "--bogus"]),
            USAGE,
            "unexpected argument '--bogus'".into(),
        ),
        (
            "daemon: bad flag value",
            daemon(&["--config", valid, "--web.max-connections", "0"]),
            USAGE,
            "--web.max-connections".into(),
        ),
        (
            "daemon: unknown log level",
            daemon(&["--config", valid, "--log.level", "verbose"]),
            USAGE,
            "--log.level \"verbose\" is not a level or filter".into(),
        ),
        (
            "daemon: listen address",
            exit_of(&["--config", valid, "--web.listen-address", "nonsense"]),
            USAGE,
            "--web.listen-address \"nonsense\" is not host:port".into(),
        ),
        (
            "daemon: telemetry path",
            daemon(&["--config", valid, "--web.telemetry-path", "/probe"]),
            USAGE,
            "error: --web.telemetry-path \"/probe\" is taken by /probe; choose another path, such as /metrics".into(),
        ),
        (
            "daemon: unreadable config",
            daemon(&["--config", missing]),
            USAGE,
            "error: invalid config: ".into(),
        ),
        (
            "daemon: invalid config",
            daemon(&["--config", invalid]),
            USAGE,
            format!("error: {invalid_message}"),
        ),
        (
            "daemon: unreadable web config",
            daemon(&["--config", valid, "--web.config.file", missing]),
            USAGE,
            "error: invalid web config: ".into(),
        ),
        (
            "--check-config: invalid config is its answer",
            exit_of(&["--check-config", "--config", invalid]),
            1,
            invalid_message.into(),
        ),
        (
            "--check-config: unknown flag",
            exit_of(&["--check-config", "--config", valid, "--bogus"]),
            USAGE,
            "unexpected argument '--bogus'".into(),
        ),
        (
            "--check-config: telemetry path",
            exit_of(&[
                "--check-config",
                "--config",
                valid,
                "--web.telemetry-path",
                "metrics",
            ]),
            USAGE,
            "error: --web.telemetry-path \"metrics\" does not start with \"/\"; give a path such as /metrics".into(),
        ),
        (
            "check: unknown flag",
            exit_of(&["check", "--config", valid, "--bogus"]),
            USAGE,
            "unexpected argument '--bogus'".into(),
        ),
        (
            "check: unknown flag after a global flag",
            exit_of(&["--config", valid, "check", "--bogus"]),
            USAGE,
            "unexpected argument '--bogus'".into(),
        ),
        (
            "check: bad flag value",
            exit_of(&["check", "--config", valid, "--format", "yaml"]),
            USAGE,
            "--format".into(),
        ),
        (
            "check: unknown log level",
            exit_of(&["check", "--config", valid, "--log.level", "verbose"]),
            USAGE,
            "--log.level \"verbose\" is not a level or filter".into(),
        ),
        (
            "check: unreadable config",
            exit_of(&["check", "--config", missing]),
            USAGE,
            "invalid config: ".into(),
        ),
        (
            "check: invalid config",
            exit_of(&["check", "--config", invalid]),
            USAGE,
            invalid_message.into(),
        ),
        (
            "check: unknown --check",
            exit_of(&["check", "--config", valid, "--check", "pull,bogus"]),
            USAGE,
            "--check \"bogus\": unknown check".into(),
        ),
        (
            "--help",
            exit_of(&["--help"]),
            0,
            String::new(),
        ),
        (
            "check --help",
            exit_of(&["check", "--help"]),
            0,
            String::new(),
        ),
        (
            "--version",
            exit_of(&["--version"]),
            0,
            String::new(),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, (code, stderr), want, part) in &cases {
        if *code != Some(*want) || !stderr.contains(part.as_str()) {
            wrong.push(format!(
                "{what}: exit {code:?}, want {want} with {part:?} on stderr; stderr:\n{stderr}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n\n"));
}

/// A daemon that cannot run (its port is taken) exits 1: not a usage error.
#[test]
fn a_taken_port_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[[registries]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, stderr) = exit_of(&[
        "--config",
        cfg.to_str().unwrap(),
        "--web.listen-address",
        &addr,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}; is the port in use?")),
        "{stderr}"
    );
}

/// Every telemetry path that would hide another endpoint, or could never match a request,
/// is refused with a message naming the flag.
#[test]
fn telemetry_paths_that_collide_or_cannot_match_are_refused() {
    let taken = |path: &str, by: &str| {
        format!(
            "error: --web.telemetry-path \"{path}\" is taken by {by}; choose another path, such as /metrics"
        )
    };
    let cases = [
        ("/", taken("/", "the status page")),
        ("/probe", taken("/probe", "/probe")),
        ("/result", taken("/result", "/result (the history's debug pages)")),
        (
            "/-/healthy",
            taken("/-/healthy", "the /-/ endpoints (health, readiness, reload)"),
        ),
        (
            "/-/metrics",
            taken("/-/metrics", "the /-/ endpoints (health, readiness, reload)"),
        ),
        (
            "",
            "error: --web.telemetry-path \"\" does not start with \"/\"; give a path such as /metrics"
                .to_string(),
        ),
        (
            "/metrics?format=x",
            "error: --web.telemetry-path \"/metrics?format=x\" contains '?', which a request path cannot match; use letters, digits and - . _ ~ / only"
                .to_string(),
        ),
        (
            "/my metrics",
            "error: --web.telemetry-path \"/my metrics\" contains ' ', which a request path cannot match; use letters, digits and - . _ ~ / only"
                .to_string(),
        ),
    ];
    for (path, want) in cases {
        let (code, stderr) = exit_of(&[
            "--check-config",
            "--web.telemetry-path",
            path,
            "--web.listen-address",
            "127.0.0.1:0",
        ]);
        assert_eq!(
            (code, stderr.as_str()),
            (Some(USAGE), want.as_str()),
            "{path:?}"
        );
    }
}

/// A running daemon; killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--web.telemetry-path /internal/metrics`: the metrics move there, `/metrics` is a 404
/// whose hint names the new path, and the status page links to it. SIGTERM then stops the
/// daemon with exit 0.
#[tokio::test]
async fn telemetry_path_moves_the_metrics() {
    let reg = TestRegistry::start(Kind::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[[registries]]\nname = \"open\"\nurl = \"{}\"\n", reg.url),
    )
    .unwrap();
    let port = common::free_port();
    let mut daemon = Daemon(
        bin()
            .arg("--config")
            .arg(&cfg)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(["--web.telemetry-path", "/internal/metrics"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let req = http.get(format!("http://127.0.0.1:{port}{path}"));
        async move {
            let resp = req.send().await?;
            let code = resp.status().as_u16();
            Ok::<_, reqwest::Error>((code, resp.text().await?))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((200, _)) = get("/-/ready").await {
            break;
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("the exporter exited with {status}");
        }
        assert!(Instant::now() < deadline, "not ready within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (code, body) = get("/internal/metrics").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        common::status_of(&body, "open", "pull").as_deref(),
        Some("pass"),
        "{body}"
    );
    let (code, body) = get("/metrics").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (
            404,
            "not found; try /internal/metrics, /probe?target=NAME or /\n"
        )
    );
    let (code, page) = get("/").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("<a href=\"/internal/metrics\">Metrics</a>"),
        "{page}"
    );
    assert!(!page.contains("href=\"/metrics\""), "{page}");

    let sent = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "a stop by signal exits 0");
}

#[test]
fn the_binary_stops_gracefully_on_sigterm() {
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .env("OCI__RegistryUrl", "http://127.0.0.1:1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the exporter listens");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(err.contains("shutting down"), "{err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the exporter did not exit within 5 s of SIGTERM");
}
