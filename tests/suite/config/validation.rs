//! Every validation rule: one small file under tests/testdata and its exact message.

use std::path::PathBuf;
use std::time::Duration;

use oci_registry_exporter::checks::CheckKind;
use oci_registry_exporter::config::{Config, Credentials, Mode};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

fn error_of(name: &str) -> String {
    match Config::load(Some(&testdata(name))) {
        Ok(_) => panic!("{name} was accepted, expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_invalid_rule_has_its_exact_message() {
    let cases: &[(&str, &str)] = &[
        (
            "invalid-unknown-key.toml",
            "registries[0]: unknown key `pasword`; remove it or fix its spelling (known keys: name, url, test_repository, test_tag, push_test_repository, username, password, password_file, token, token_file, checks, interval, timeout, ca_file, insecure_skip_verify, client_cert_file, client_key_file, docker_config, pull_blob, pull_platform, proxy_url)",
        ),
        (
            "invalid-url.toml",
            "registries[0].url: \"registry.example.com:5000\" is not an http(s) URL with a host; write an absolute URL such as \"https://registry.example.com\"",
        ),
        (
            "invalid-url-scheme.yaml",
            "registries[0].url: \"ftp://registry.example.com\" is not an http(s) URL with a host; write an absolute URL such as \"https://registry.example.com\"",
        ),
        (
            "invalid-missing-url.toml",
            "registries[0].url: missing; set the registry's base URL, e.g. \"https://registry.example.com\"",
        ),
        (
            "invalid-url-credentials.toml",
            "registries[0].url: contains credentials; remove them from the URL and set username and password_file (or token_file) instead",
        ),
        (
            "invalid-empty-name.toml",
            "registries[0].name: missing or empty; give every registry a unique, non-empty name (it becomes the `registry` label)",
        ),
        (
            "invalid-duplicate-name.toml",
            "registries[1].name: \"hub\" is already the name of registries[0]; give every registry a unique name",
        ),
        (
            "invalid-unknown-check.toml",
            "registries[0].checks: unknown check \"pul\"; use \"all\" or any of registry, credentials, pull, push, capabilities, referrers (or their ids, check.integration.oci.<name>)",
        ),
        (
            "invalid-zero-timeout.toml",
            "registries[0].timeout: must be greater than zero; set a duration such as \"10s\"",
        ),
        (
            "invalid-zero-interval.toml",
            "defaults.interval: must be greater than zero; set a duration such as \"10s\"",
        ),
        (
            "invalid-short-interval.toml",
            "registries[0].interval: 1ns is shorter than the minimum interval of 1s; set a duration of at least \"1s\", such as \"60s\"",
        ),
        (
            "invalid-timeout-over-interval.toml",
            "registries[0].timeout: 10s is longer than the interval (5s); set timeout to at most the interval, or lengthen the interval",
        ),
        (
            "invalid-bad-duration.toml",
            "registries[0].interval: invalid value string \"every minute\", expected a duration; write a duration such as \"30s\" or \"1m 30s\"",
        ),
        (
            "invalid-no-registries.toml",
            "registries: no registry is configured; add a [[registries]] entry with name and url, or set OCI__RegistryUrl",
        ),
        (
            "invalid-password-and-file.toml",
            "registries[0].password_file: both password and password_file are set; keep one of them (password_file is preferred)",
        ),
        (
            "invalid-password-without-username.toml",
            "registries[0].username: a password is set without a username; set username as well",
        ),
        (
            "invalid-token-and-username.toml",
            "registries[0].token: both a token and a username are set; use either token/token_file or username with password/password_file",
        ),
        (
            "invalid-mode.toml",
            "mode: unknown value `push`; use one of: interval, scrape",
        ),
        (
            "invalid-repository.toml",
            "registries[0].test_repository: \"Library/Alpine\" is not a valid repository name; use lower-case path components such as \"library/alpine\"",
        ),
        (
            "invalid-ca-file.toml",
            "registries[0].ca_file: cannot read /nonexistent/ca.pem (entity not found); point it at a readable PEM file of CA certificates",
        ),
        (
            "invalid-client-cert-without-key.toml",
            "registries[0].client_key_file: client_cert_file is set without client_key_file; set both, to PEM files of the client certificate and its private key",
        ),
        (
            "invalid-pull-platform.toml",
            "registries[0].pull_platform: \"amd64\" is not a platform; write os/arch or os/arch/variant in lower case, such as \"linux/amd64\" or \"linux/arm64/v8\"",
        ),
        (
            "invalid-proxy-url.toml",
            "registries[0].proxy_url: socks5://proxy.example.com:1080 is not an http(s) proxy URL; write the proxy as http://host:port (or http://user:password@host:port when it asks for credentials)",
        ),
        (
            "invalid-max-concurrency.toml",
            "max_concurrency: must be at least 1; set it to the number of checks that may run at once, e.g. 16",
        ),
    ];
    for (file, expected) in cases {
        assert_eq!(&error_of(file), expected, "message for {file}");
    }
    // Every invalid-* file has a case above, so no rule goes untested.
    let dir = testdata("");
    for entry in std::fs::read_dir(&dir).expect("tests/testdata exists") {
        let name = entry.expect("readable dir entry").file_name();
        let name = name.to_string_lossy();
        if name.starts_with("invalid-") {
            assert!(
                cases.iter().any(|(f, _)| *f == name),
                "{name} has no expected message in this test"
            );
        }
    }
}

#[test]
fn an_unset_timeout_is_never_longer_than_the_interval() {
    let config = load_str(
        "toml",
        "[[registries]]\nname = \"a\"\nurl = \"https://a.example.com\"\ninterval = \"3s\"\n",
    );
    assert_eq!(config.registries[0].interval, Duration::from_secs(3));
    assert_eq!(
        config.registries[0].timeout,
        Duration::from_secs(3),
        "the 10s default timeout is shortened to the interval"
    );
}

#[test]
fn the_credential_in_a_url_is_never_echoed() {
    assert!(!error_of("invalid-url-credentials.toml").contains("s3cret-in-url"));
}

#[test]
fn missing_file_and_unknown_extension_are_clear() {
    let e = Config::load(Some(&testdata("does-not-exist.toml")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "config file {}: cannot be read (no such file); check the --config path",
            testdata("does-not-exist.toml").display()
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ini");
    std::fs::write(&path, "x=1").unwrap();
    let e = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        e.ends_with("unknown format; name the file *.toml, *.yaml or *.yml"),
        "{e}"
    );
}

fn load_str(ext: &str, text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("config.{ext}"));
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

#[test]
fn defaults_are_inherited_and_overridden() {
    let config = load_str(
        "toml",
        r#"
mode = "scrape"
min_interval = "1m 30s"

[defaults]
interval = "30s"
timeout = "5s"
checks = ["registry"]
username = "robot"
password = "from-defaults"

[[registries]]
name = "a"
url = "https://a.example.com/v2/"

[[registries]]
name = "b"
url = "http://b.example.com:5000/mirror"
interval = "2m"
checks = ["check.integration.oci.pull", "registry"]
token = "t"
test_repository = "team/app"
test_tag = "v1.2.3"
"#,
    );
    assert_eq!(config.mode, Mode::Scrape);
    assert_eq!(config.min_interval, Duration::from_secs(90));
    let a = &config.registries[0];
    assert_eq!(
        a.url.as_str(),
        "https://a.example.com/",
        "a pasted /v2/ is dropped"
    );
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.timeout, Duration::from_secs(5));
    assert_eq!(a.checks, vec![CheckKind::Registry]);
    assert_eq!(a.test_repository, "library/alpine");
    assert_eq!(a.test_tag, "latest");
    assert_eq!(a.push_test_repository, "stellaops/doctor-test");
    assert!(
        matches!(&a.credentials, Credentials::Basic { username, password: Some(_) } if username == "robot")
    );
    let b = &config.registries[1];
    assert_eq!(b.url.as_str(), "http://b.example.com:5000/mirror/");
    assert_eq!(b.interval, Duration::from_secs(120));
    assert_eq!(b.checks, vec![CheckKind::Pull, CheckKind::Registry]);
    assert!(
        matches!(b.credentials, Credentials::Bearer { .. }),
        "a registry's own credentials replace the defaults' as a whole"
    );
    assert_eq!(b.test_repository, "team/app");
    assert_eq!(b.test_tag, "v1.2.3");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn yaml_works_like_toml() {
    let config = load_str(
        "yaml",
        "registries:\n  - name: y\n    url: https://y.example.com\n    timeout: 3s\n",
    );
    assert_eq!(config.registries[0].name, "y");
    assert_eq!(config.registries[0].timeout, Duration::from_secs(3));
    assert_eq!(config.mode, Mode::Interval);
    assert_eq!(config.registries[0].checks, CheckKind::ALL.to_vec());
}

#[test]
fn an_unresolvable_secret_is_a_warning_not_an_error() {
    let config = load_str(
        "toml",
        r#"
[[registries]]
name = "nopass"
url = "https://a.example.com"
username = "alice"

[[registries]]
name = "badfile"
url = "https://b.example.com"
username = "bob"
password_file = "/nonexistent/password"

[[registries]]
name = "fine"
url = "https://c.example.com"
"#,
    );
    assert_eq!(config.registries.len(), 3, "no registry is dropped");
    assert_eq!(
        config.warnings,
        vec![
            "registries[0].password: registry \"nopass\" has a username but no password or password_file; a secret reference probably failed to resolve (the credentials check will fail)".to_string(),
            "registry \"badfile\": cannot read secret file /nonexistent/password: entity not found; check that the file exists and is readable by the exporter".to_string(),
        ]
    );
}

#[test]
fn check_config_flag_exits_zero_or_one() {
    let bin = env!("CARGO_BIN_EXE_oci-registry-exporter");
    let out = std::process::Command::new(bin)
        .args(["--check-config", "--config"])
        .arg(testdata("invalid-zero-timeout.toml"))
        .env_remove("OCI__RegistryUrl")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "invalid config: registries[0].timeout: must be greater than zero; set a duration such as \"10s\""
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(
        &path,
        "[[registries]]\nname = \"x\"\nurl = \"https://x.example.com\"\nusername = \"u\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "config is valid: 1 registry (x)"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "warning: registries[0].password: registry \"x\" has a username but no password"
        ),
        "the unresolved secret is printed as a warning"
    );
}
