//! No credential, token or Authorization header appears in logs at any level, in
//! /metrics, /probe, the status page, check messages, Debug output or --check-config.
//!
//! One test in its own binary: it installs a process-wide TRACE subscriber (the `log`
//! records of reqwest and hyper included) that writes into a buffer it then searches.

use crate::common;
use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{Exporter, config_from_toml};
use support::{Kind, TestRegistry};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_output() {
    let _process = crate::PROCESS_STATE.lock().await;
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber in this test binary");

    let basic = TestRegistry::start(Kind::Basic).await;
    let token = TestRegistry::start(Kind::Token).await;
    let static_token = token.mint_token(Some("bob"), &["repository:library/alpine:pull"]);
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, "wonderland\n").unwrap();
    let docker_config = dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"{}"}}}}}}"#,
            token.url.trim_start_matches("http://"),
            support::BOB_REFRESH_TOKEN
        ),
    )
    .unwrap();

    let config_text = format!(
        r#"
[defaults]
interval = "2s"
timeout = "2s"

[[registries]]
name = "basic-inline"
url = "{b}"
username = "alice"
password = "wonderland"

[[registries]]
name = "basic-wrong"
url = "{b}"
username = "alice"
password = "wrong-pass-7f3a"

[[registries]]
name = "basic-file"
url = "{b}"
username = "alice"
password_file = "{pf}"

[[registries]]
name = "token-bob"
url = "{t}"
username = "bob"
password = "bobsecret"

[[registries]]
name = "token-static"
url = "{t}"
token = "{st}"

[[registries]]
name = "token-identity"
url = "{t}"
docker_config = "{dc}"
"#,
        b = basic.url,
        t = token.url,
        pf = password_file.display(),
        st = static_token,
        dc = docker_config.display(),
    );
    let config = config_from_toml(&config_text);
    let debug_config = format!("{config:?}");
    let exporter = Exporter::start(config).await;
    exporter.wait_ready().await;
    // Several rounds: cached tokens, renewals and failures all get logged.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut outputs = vec![
        ("debug of config", debug_config),
        ("/metrics", exporter.metrics().await),
        ("/", exporter.get("/").await.1),
    ];
    for id in 1..40 {
        let (code, body) = exporter.get(&format!("/result?id={id}")).await;
        if code == 200 {
            outputs.push(("/result", body));
        }
    }
    for target in [
        "basic-inline",
        "basic-wrong",
        "basic-file",
        "token-bob",
        "token-static",
        "token-identity",
    ] {
        let (code, body) = exporter.get(&format!("/probe?target={target}")).await;
        assert_eq!(code, 200);
        outputs.push(("/probe", body));
        let (code, body) = exporter
            .get(&format!("/probe?target={target}&debug=true"))
            .await;
        assert_eq!(code, 200);
        assert!(body.contains("requests:"), "{body}");
        outputs.push(("/probe?debug=true", body));
    }
    exporter.stop().await;

    let cfg_path = dir.path().join("c.toml");
    std::fs::write(&cfg_path, &config_text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .args(["--check-config", "--log.level", "trace", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    outputs.push((
        "--check-config stdout",
        String::from_utf8_lossy(&out.stdout).into(),
    ));
    outputs.push((
        "--check-config stderr",
        String::from_utf8_lossy(&out.stderr).into(),
    ));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("basic-wrong") && logs.contains("TRACE") && logs.contains("hyper"),
        "the capture works: trace logs of the checks and of hyper are there"
    );
    outputs.push(("logs", logs));

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = [
        "wonderland".to_string(),
        "wrong-pass-7f3a".to_string(),
        "bobsecret".to_string(),
        static_token.clone(),
        support::BOB_REFRESH_TOKEN.to_string(),
        b64("alice:wonderland"),
        b64("alice:wrong-pass-7f3a"),
        b64("bob:bobsecret"),
        // Every JWT (ours and the ones the exporter fetched) starts like this.
        "eyJ".to_string(),
    ];
    for (what, text) in &outputs {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret ({}…) appears in {what}",
                &secret[..secret.len().min(4)]
            );
        }
        assert!(
            !text.to_ascii_lowercase().contains("authorization: "),
            "an Authorization header appears in {what}"
        );
    }
}
