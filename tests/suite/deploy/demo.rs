//! scripts/demo, the first command of the README: it runs, ends `--once` with a status
//! table (registry × check), prints the Prometheus alerts page that exists on the installed
//! Prometheus, writes the logs to files, and never touches a server it did not start.
//!
//! The demo builds the exporter unless `EXPORTER_BIN` names a binary: the tests pass the one
//! cargo built for them. Each run is bounded in time.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo");
const TIME_LIMIT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the demo with `--once`, killed after TIME_LIMIT.
fn run_demo(envs: &[(&str, String)], logs: &Path) -> Output {
    let mut cmd = Command::new(DEMO);
    cmd.arg("--once")
        .env("EXPORTER_BIN", env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .env("DEMO_LOG_DIR", logs)
        .env_remove("REGISTRY_PORT")
        .env_remove("DEMO_PORT")
        .env_remove("PROMETHEUS_PORT")
        .env_remove("NO_PROMETHEUS")
        .env_remove("DEMO_REGISTRY_DEFAULT_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run scripts/demo");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > TIME_LIMIT {
            // SIGTERM: the demo's trap stops what it started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "scripts/demo --once did not finish within {TIME_LIMIT:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status table's row of `registry`: its cells, by column name.
fn table_row(stdout: &str, registry: &str) -> std::collections::BTreeMap<String, String> {
    let header = stdout
        .lines()
        .find(|l| l.starts_with("registry \\ check"))
        .unwrap_or_else(|| panic!("no status table in:\n{stdout}"));
    let columns: Vec<&str> = header
        .trim_start_matches("registry \\ check")
        .split_whitespace()
        .collect();
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(registry))
        .unwrap_or_else(|| panic!("no row for {registry} in:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().skip(1).collect();
    assert_eq!(cells.len(), columns.len(), "row {row:?} under {header:?}");
    columns
        .iter()
        .zip(cells)
        .map(|(c, v)| (c.to_string(), v.to_string()))
        .collect()
}

fn assert_demo_statuses(stdout: &str) {
    let local = table_row(stdout, "local");
    assert_eq!(local["registry"], "pass", "{stdout}");
    assert_eq!(local["pull"], "pass", "{stdout}");
    assert_eq!(table_row(stdout, "local-missing-image")["pull"], "info");
    assert_eq!(table_row(stdout, "unreachable")["registry"], "fail");
    assert!(
        !stdout.contains("oci_registry_check_status{"),
        "raw metric lines instead of the table:\n{stdout}"
    );
}

#[test]
fn the_readme_demo_command_runs() {
    let logs = tempfile::tempdir().unwrap();
    let prometheus_port = free_port().to_string();
    let out = run_demo(
        &[
            ("DEMO_PORT", free_port().to_string()),
            ("REGISTRY_PORT", free_port().to_string()),
            ("PROMETHEUS_PORT", prometheus_port.clone()),
        ],
        logs.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_demo_statuses(&stdout);

    // The alerts page of the installed Prometheus: Debian's build has no React UI, so
    // /alerts is a 404 there and the page is /classic/alerts. The demo checked the page
    // answered; the test checks it picked the one this Prometheus has.
    let version = Command::new("prometheus")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let debian = version.contains("+ds");
    let alerts_page = format!(
        "http://127.0.0.1:{prometheus_port}{}/alerts ",
        if debian { "/classic" } else { "" }
    );
    assert!(
        stdout.contains(&alerts_page),
        "the demo does not print the alerts page {alerts_page} of {version}:\n{stdout}"
    );

    // Logs go to files, not to the terminal.
    for file in ["registry.log", "exporter.log", "prometheus.log"] {
        assert!(logs.path().join(file).is_file(), "no {file}");
    }
    let exporter_log = std::fs::read_to_string(logs.path().join("exporter.log")).unwrap();
    assert!(
        exporter_log.contains("unreachable"),
        "the exporter's log has no line about the failing registry:\n{exporter_log}"
    );
    assert!(
        !stderr.contains("level=") && !stdout.contains("level="),
        "exporter log lines on the terminal:\n{stdout}\n{stderr}"
    );
}

/// A server on a port the OS picked, recording every byte it is sent; the demo is told to
/// try that port first (`DEMO_REGISTRY_DEFAULT_PORT`), as it would try 5001, so the test
/// needs no fixed port whatever else listens on this machine (kind's registry takes 5001).
struct Occupant {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Occupant {
    fn start() -> Occupant {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, c) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream): std::io::Result<TcpStream> = stream else {
                    continue;
                };
                *c.lock().unwrap() += 1;
                let r = r.clone();
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Occupant {
            port,
            received,
            connections,
        }
    }
}

#[test]
fn the_demo_never_writes_to_a_server_on_its_registry_port() {
    let occupant = Occupant::start();
    let logs = tempfile::tempdir().unwrap();
    let out = run_demo(
        &[
            ("DEMO_REGISTRY_DEFAULT_PORT", occupant.port.to_string()),
            ("DEMO_PORT", free_port().to_string()),
            ("NO_PROMETHEUS", "1".to_string()),
        ],
        logs.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("port {} is taken", occupant.port)),
        "the demo does not say the port is taken:\n{stderr}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("registry:"))
        .unwrap_or_else(|| panic!("no registry line:\n{stdout}"));
    assert!(
        line.contains("http://127.0.0.1:") && !line.contains(&format!(":{}", occupant.port)),
        "the demo's registry is on the occupied port: {line}"
    );
    assert_demo_statuses(&stdout);
    // Give a stray request time to arrive, then: not one byte was sent to the occupant
    // (the demo may only have connected, to see that the port is taken).
    std::thread::sleep(Duration::from_millis(500));
    let received = occupant.received.lock().unwrap().clone();
    assert!(
        received.is_empty(),
        "the demo sent {} bytes to the server it did not start ({} connections):\n{}",
        received.len(),
        occupant.connections.lock().unwrap(),
        String::from_utf8_lossy(&received)
    );

    // And a port set explicitly that is taken is refused, with nothing sent either.
    let out = run_demo(
        &[
            ("REGISTRY_PORT", occupant.port.to_string()),
            ("DEMO_PORT", free_port().to_string()),
            ("NO_PROMETHEUS", "1".to_string()),
        ],
        logs.path(),
    );
    assert!(!out.status.success(), "the demo used a taken REGISTRY_PORT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("REGISTRY_PORT={} is taken", occupant.port)),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(occupant.received.lock().unwrap().is_empty());
}
