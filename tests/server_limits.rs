//! The HTTP server under a connection flood, against the real binary on 127.0.0.1: half-sent
//! requests are closed after the header-read timeout, idle keep-alive connections after the
//! idle timeout, and however many connections are open, `/-/healthy` still answers (the
//! server caps its connections below its descriptor limit and keeps room for health checks).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oci-registry-exporter");

struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Runs the exporter with at most `nofile` descriptors (soft and hard limit).
    fn start(nofile: u32, args: &[&str]) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(args)
            // A registry that refuses at once: only the exporter's own server is under test.
            .env("OCI__RegistryUrl", "http://127.0.0.1:1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the exporter exited with {status}");
            }
            assert!(Instant::now() < deadline, "the exporter did not listen");
            std::thread::sleep(Duration::from_millis(25));
        }
        daemon
    }

    /// A connection that sent part of a request head and stops there.
    fn half_sent(&self) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        s
    }

    /// GET /-/healthy on a new connection; the status line, or why there was none.
    fn healthy(&self, within: Duration) -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), within)
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(within)).unwrap();
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if answer.is_empty() => return Err(format!("read: {e}")),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&answer);
        Ok(text.lines().next().unwrap_or_default().to_string())
    }
}

/// Seconds until the peer closes `s` (bounded by `max`), reading and discarding anything sent.
fn closed_after(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < max {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn half_sent_requests_never_silence_the_health_check() {
    // 300 half-sent requests against 256 descriptors: without a cap the server runs out of
    // descriptors, stops accepting, and /-/healthy never answers.
    let daemon = Daemon::start(256, &[]);
    assert_eq!(
        daemon.healthy(Duration::from_secs(5)).as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    let held: Vec<TcpStream> = (0..300).map(|_| daemon.half_sent()).collect();
    // Let the server accept all it is going to.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let answer = daemon.healthy(Duration::from_secs(1));
    println!(
        "/-/healthy with 300 half-sent requests open: {answer:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(answer.as_deref(), Ok("HTTP/1.1 200 OK"));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
}

#[test]
fn half_sent_and_idle_connections_are_closed() {
    let daemon = Daemon::start(
        1024,
        &["--web.read-header-timeout=1s", "--web.idle-timeout=3s"],
    );
    let mut half = daemon.half_sent();
    let closed = closed_after(&mut half, Duration::from_secs(6));
    println!("half-sent request closed after {closed:?} (header-read timeout 1 s)");
    assert!(
        closed.is_some_and(|d| d < Duration::from_millis(2500)),
        "a half-sent request was still open after {closed:?}"
    );

    // A connection that never sends a byte is not reading a request head yet (the protocol
    // is not even known): the idle timeout closes it.
    let mut silent = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    let closed = closed_after(&mut silent, Duration::from_secs(8));
    println!("silent connection closed after {closed:?} (idle timeout 3 s)");
    assert!(
        closed.is_some_and(|d| d > Duration::from_millis(2500) && d < Duration::from_secs(6)),
        "a silent connection closed after {closed:?}"
    );

    // A complete request on a kept-alive connection, then silence: in HTTP/1.1 the wait for
    // the next request head is bounded by the header-read timeout (the shorter one here).
    let mut idle = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let closed = closed_after(&mut idle, Duration::from_secs(8));
    println!("idle keep-alive connection closed after {closed:?}");
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(4)),
        "an idle keep-alive connection was still open after {closed:?}"
    );
}
