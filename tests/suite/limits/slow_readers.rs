//! `/metrics` requested and never read (issue 24 §1), against the real binary on 127.0.0.1:
//! 600 HTTP/1.1 connections that send `GET /metrics` and never read, and an h2c connection
//! that opens streams with a zero flow-control window, leave the exporter's thread count and
//! memory bounded (read from /proc/<pid>/status), a concurrent real scrape complete within
//! its timeout, and no registry's verdict changed: the secret-file reads that decide a
//! verdict do not queue behind serving.

use crate::common;
use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kind, TestRegistry};

const BIN: &str = env!("CARGO_BIN_EXE_oci-registry-exporter");

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/<pid>/status (`Threads`, `VmRSS` in kB).
fn status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A connection that asks for the metrics and never reads a byte of the answer (with a
/// small receive buffer, so the answer soon stops fitting).
async fn never_reading(port: u16) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    Some(stream)
}

/// An h2c (prior knowledge) connection granting every stream a zero window, with as many
/// `GET /metrics` streams open as the server lets it (at most `streams`). Returns the task
/// driving the connection (it ends when the server closes it), what keeps the streams open,
/// and how many were opened.
async fn zero_window_h2(
    port: u16,
    streams: usize,
) -> (
    tokio::task::JoinHandle<()>,
    Vec<Box<dyn std::any::Any + Send>>,
    usize,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .expect("h2c handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let mut opened = 0;
    for _ in 0..streams {
        // The server's stream limit makes `ready` wait: that many are open, then.
        match tokio::time::timeout(Duration::from_millis(500), client.clone().ready()).await {
            Ok(Ok(ready)) => client = ready,
            _ => break,
        }
        let request = http::Request::get(format!("http://127.0.0.1:{port}/metrics"))
            .body(())
            .unwrap();
        match client.send_request(request, true) {
            Ok((response, _)) => {
                held.push(Box::new(response));
                opened += 1;
            }
            Err(_) => break,
        }
    }
    held.push(Box::new(client));
    (driver, held, opened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_scrapers_hold_no_threads_and_change_no_verdict() {
    let _alone = common::TIMED.lock().await;
    let registry = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{}\n", support::BASIC_PASSWORD)).unwrap();
    // 3,000 registries that refuse at once make a text of about 6 MB, more than the sockets
    // of a stalled connection hold; "watched" is a real registry with a password file, read
    // at every check, checked every 2 s.
    let mut text = String::from("[defaults]\nchecks = [\"registry\"]\ninterval = \"1h\"\n");
    text.push_str(&format!(
        "[[registries]]\nname = \"watched\"\nurl = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\ninterval = \"2s\"\ntimeout = \"2s\"\nchecks = [\"registry\", \"credentials\"]\n",
        registry.url,
        support::BASIC_USER,
        password_file.display()
    ));
    for i in 0..3_000 {
        text.push_str(&format!(
            "[[registries]]\nname = \"refusing-{i}\"\nurl = \"http://127.0.0.1:1\"\n"
        ));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let port = common::free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 4096 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--config.file", config.to_str().unwrap()])
        .args(["--web.idle-timeout=4s"])
        .env_remove("OCI__RegistryUrl")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("exporter.log")).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon { child };
    let pid = daemon.child.id();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{url}/-/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = (status_field(pid, "Threads"), status_field(pid, "VmRSS"));
    let whole = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        common::status_of(&whole, "watched", "credentials").as_deref(),
        Some("pass"),
        "before the flood"
    );
    println!(
        "before: {} threads, {} kB resident; a whole scrape {} bytes",
        before.0,
        before.1,
        whole.len()
    );

    // The flood: 600 HTTP/1.1 scrapes never read, and one h2c connection's zero-window
    // streams.
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Some(s) = never_reading(port).await {
            held.push(s);
        }
    }
    let h2_opened = Instant::now();
    let (h2_driver, h2_held, streams) = zero_window_h2(port, 150).await;
    println!(
        "{} never-reading HTTP/1.1 connections, {streams} zero-window h2 streams",
        held.len()
    );
    assert!(held.len() >= 590, "the flood's connections were opened");
    assert!(streams >= 1, "the h2c connection opened streams");

    // For 12 s: threads and memory stay bounded, real scrapes complete in time, and the
    // watched registry's verdict stays pass (its run count keeps going up).
    let mut most = before;
    let mut runs = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        most.0 = most.0.max(status_field(pid, "Threads"));
        most.1 = most.1.max(status_field(pid, "VmRSS"));
        let started = Instant::now();
        let body = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("a real scrape during the flood gets an answer")
            .text()
            .await
            .expect("a real scrape during the flood gets the whole text");
        let took = started.elapsed();
        assert!(
            body.contains("registry=\"refusing-2999\""),
            "the whole text ({} bytes)",
            body.len()
        );
        assert_eq!(
            common::status_of(&body, "watched", "credentials").as_deref(),
            Some("pass"),
            "the watched registry's verdict changed during the flood: {:?}",
            common::reason_of(&body, "watched", "credentials")
        );
        runs.push((
            common::sample(
                &body,
                "oci_registry_check_runs_total",
                &[
                    ("registry", "watched"),
                    ("check", "credentials"),
                    ("status", "pass"),
                ],
            ),
            took,
        ));
        assert!(
            common::sample(
                &body,
                "oci_registry_check_runs_total",
                &[
                    ("registry", "watched"),
                    ("check", "credentials"),
                    ("status", "fail")
                ],
            )
            .is_none(),
            "a credentials check of the watched registry failed during the flood:\n{}",
            std::fs::read_to_string(dir.path().join("exporter.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("watched"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!(
        "during the flood: at most {} threads, {} kB resident; watched runs and scrape times {runs:?}",
        most.0, most.1
    );
    assert!(
        most.0 <= before.0 + 16,
        "threads grew from {} to {} with scrapers that never read",
        before.0,
        most.0
    );
    assert!(
        most.1 <= before.1 + 64 * 1024,
        "resident memory grew from {} kB to {} kB",
        before.1,
        most.1
    );
    let (first, last) = (runs[0].0.unwrap_or(0.0), runs[5].0.unwrap_or(0.0));
    assert!(
        last >= first + 3.0,
        "the watched registry kept being checked ({first} → {last})"
    );
    // The zero-window h2c connection took nothing for longer than the idle timeout (4 s)
    // and the close grace (5 s): the server has closed it, as it closes an HTTP/1.1 one.
    let cut = tokio::time::timeout(Duration::from_secs(5), h2_driver).await;
    println!(
        "the zero-window h2c connection was closed {:?} after it opened its streams",
        h2_opened.elapsed()
    );
    assert!(
        cut.is_ok(),
        "the zero-window h2c connection was still open {:?} after it stopped reading",
        h2_opened.elapsed()
    );
    drop(held);
    drop(h2_held);
}
