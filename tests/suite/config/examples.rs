//! The configuration examples in config/: one per kind of registry, and
//! config/reference.toml (with its YAML twin, config/reference.yaml) listing every key.
//!
//! * The exporter binary's `--check-config` accepts every file. The secret files the
//!   examples name do not exist here: `--check-config` prints that as a warning and exits 0,
//!   which passes; an error (exit 1) fails. TLS files (ca_file, client_cert_file,
//!   client_key_file) are read and checked at load, so for the examples naming
//!   /etc/oci-registry-exporter/tls/ the test makes a CA and a client certificate and points
//!   a copy of the example at them.
//! * No example holds an inline password or token, and each cites its vendor's
//!   documentation.
//! * reference.toml and reference.yaml load to the same configuration; every key of
//!   `RawConfig` and `RawRegistry` (taken from their serde serialization, so a new key
//!   fails this test until it is documented) appears in both, with a `Default:` in the
//!   comment above it in reference.toml; and the values it sets as defaults are the
//!   exporter's defaults.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_registry_exporter::config::{
    Config, DEFAULT_INTERVAL, DEFAULT_MAX_CONCURRENCY, DEFAULT_MIN_INTERVAL, DEFAULT_TIMEOUT, Mode,
    RawConfig, RawRegistry,
};

/// Where the TLS examples expect their PEM files.
const TLS_DIR: &str = "/etc/oci-registry-exporter/tls/";

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every configuration file in config/, sorted.
fn config_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(config_dir())
        .expect("config/ is readable")
        .map(|e| e.expect("config/ entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "toml" || e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15, "config/ holds only {files:?}");
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The registry examples: every file but the reference.
fn examples() -> Vec<PathBuf> {
    config_files()
        .into_iter()
        .filter(|p| !file_name(p).starts_with("reference."))
        .collect()
}

/// A CA certificate, and a client certificate with its key, in `dir`, as the TLS examples
/// name them (ca.pem, client.pem, client-key.pem).
fn write_tls_files(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["oci-registry-exporter".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client-key.pem"), client_key.serialize_pem()).unwrap();
}

struct Checked {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `--check-config` on `path` with an empty environment (no seed keys, no HOME, so no
/// implicit Docker config).
fn check_config(path: &Path) -> Checked {
    let out = Command::new(env!("CARGO_BIN_EXE_oci-registry-exporter"))
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .env_clear()
        .output()
        .expect("run the exporter");
    Checked {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `path` as the test runs it: a copy with TLS_DIR pointing at `tls` when it names TLS
/// files, else itself.
fn runnable(path: &Path, tls: &Path, tmp: &Path) -> (PathBuf, bool) {
    let text = read(path);
    if !text.contains(TLS_DIR) {
        return (path.to_path_buf(), false);
    }
    let copy = tmp.join(file_name(path));
    let dir = format!("{}/", tls.display());
    std::fs::write(&copy, text.replace(TLS_DIR, &dir)).unwrap();
    (copy, true)
}

#[test]
fn check_config_accepts_every_file_in_config_with_warnings_only_for_absent_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    write_tls_files(&tls);
    let mut with_tls = Vec::new();
    for path in config_files() {
        let name = file_name(&path);
        let (run_path, substituted) = runnable(&path, &tls, tmp.path());
        if substituted {
            with_tls.push(name.clone());
        }
        let c = check_config(&run_path);
        assert!(
            c.ok,
            "--check-config rejects config/{name}:\n{}{}",
            c.stdout, c.stderr
        );
        assert!(
            c.stdout.contains("config is valid"),
            "config/{name}: {}",
            c.stdout
        );
        // Warnings are allowed, but only the ones for secret files absent on this machine.
        for line in c.stderr.lines().filter(|l| !l.trim().is_empty()) {
            let warning = line
                .strip_prefix("warning: ")
                .unwrap_or_else(|| panic!("config/{name}: not a warning: {line}"));
            assert!(
                (warning.contains("cannot read secret file")
                    || warning.contains("cannot read docker config"))
                    && warning.contains("not found"),
                "config/{name}: unexpected warning: {line}"
            );
        }
    }
    for name in ["private-ca.toml", "mtls.toml"] {
        assert!(
            with_tls.iter().any(|n| n == name),
            "{name} names no file under {TLS_DIR}"
        );
    }
}

/// The harness above tells an error from a warning: an invalid file fails.
#[test]
fn check_config_fails_an_example_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("harbor-robot.toml");
    let text = read(&config_dir().join("harbor-robot.toml"));
    std::fs::write(&bad, text.replace("test_tag =", "test_tga =")).unwrap();
    let c = check_config(&bad);
    assert!(!c.ok, "a misspelt key passed:\n{}", c.stdout);
    assert!(c.stderr.contains("unknown key `test_tga`"), "{}", c.stderr);
    // And a TLS example whose files are missing is an error, not a warning.
    let tls = tmp.path().join("no-tls-files");
    let (copy, substituted) = runnable(&config_dir().join("mtls.toml"), &tls, tmp.path());
    assert!(substituted);
    let c = check_config(&copy);
    assert!(!c.ok, "mtls.toml without its files passed:\n{}", c.stdout);
    assert!(c.stderr.contains("ca_file"), "{}", c.stderr);
}

#[test]
fn examples_hold_no_inline_secret_and_cite_their_vendor_docs() {
    for path in config_files() {
        let name = file_name(&path);
        let raw = RawConfig::load(Some(&path))
            .unwrap_or_else(|e| panic!("config/{name} does not load: {e}"));
        for (what, r) in std::iter::once(("defaults".to_string(), &raw.defaults)).chain(
            raw.registries
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("registries[{i}]"), r)),
        ) {
            assert!(
                r.password.is_none() && r.token.is_none(),
                "config/{name} {what}: an inline secret; use password_file or token_file"
            );
        }
    }
    for path in examples() {
        let name = file_name(&path);
        let text = read(&path);
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with('#') && l.contains("https://")),
            "config/{name} cites no documentation URL in a comment"
        );
    }
}

#[test]
fn config_readme_lists_every_example() {
    let readme = read(&config_dir().join("README.md"));
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        // schema.json: the configuration's JSON Schema (tests/suite/project/words.rs keeps it generated).
        assert!(
            name.ends_with(".toml") || name.ends_with(".yaml") || name == "schema.json",
            "config/{name} is neither a configuration, schema.json nor README.md"
        );
        assert!(
            readme.contains(&format!("({name})")),
            "config/README.md does not link {name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The reference

/// Every key of a serde struct, from its serialization (Option fields serialize as null).
fn keys_of<T: serde::Serialize>(value: &T) -> BTreeSet<String> {
    match serde_json::to_value(value).expect("serializes") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not a struct: {other}"),
    }
}

#[test]
fn reference_toml_and_yaml_load_to_the_same_config() {
    let toml = config_dir().join("reference.toml");
    let yaml = config_dir().join("reference.yaml");
    let raw = |p: &Path| {
        serde_json::to_value(RawConfig::load(Some(p)).expect("reference loads")).unwrap()
    };
    assert_eq!(
        raw(&toml),
        raw(&yaml),
        "reference.toml and reference.yaml differ"
    );
    let shown = |p: &Path| {
        let c = Config::load(Some(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        format!(
            "{:?}",
            (
                c.mode,
                c.min_interval,
                c.max_concurrency,
                &c.runbook_base_url,
                c.history_size,
                &c.registries,
                &c.warnings
            )
        )
    };
    assert_eq!(shown(&toml), shown(&yaml));
}

/// `key = ` or `# key = ` (TOML), `key:` or `# key:` or `- key:` (YAML), at any indentation.
fn is_key_line(line: &str, key: &str, sep: char) -> bool {
    let l = line.trim_start();
    let l = l.strip_prefix('#').map_or(l, str::trim_start);
    let l = l.strip_prefix("- ").unwrap_or(l);
    l.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with(sep))
}

#[test]
fn reference_lists_every_key_with_its_default() {
    let top: BTreeSet<String> = keys_of(&RawConfig::default())
        .into_iter()
        .filter(|k| k != "defaults" && k != "registries")
        .collect();
    let per_registry = keys_of(&RawRegistry::default());
    assert!(per_registry.contains("password_file") && top.contains("mode"));

    let text = read(&config_dir().join("reference.toml"));
    let lines: Vec<&str> = text.lines().collect();
    // The TOML section of each line: "" before the first table, else the header.
    let mut section = "";
    let sections: Vec<&str> = lines
        .iter()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('[') {
                section = t;
            }
            section
        })
        .collect();
    let documented = |key: &str, in_section: &dyn Fn(&str) -> bool| {
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| in_section(sections[i]) && is_key_line(lines[i], key, '='))
            .collect();
        assert!(!found.is_empty(), "reference.toml does not list `{key}`");
        // The comment block right above one of its lines says what the default is.
        let with_default = found.iter().any(|&i| {
            lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .any(|l| l.contains("Default"))
                || lines[i].contains("Default")
        });
        assert!(
            with_default,
            "reference.toml: no `Default:` in the comment above `{key}`"
        );
    };
    for key in &top {
        documented(key, &|s| s.is_empty());
    }
    for key in &per_registry {
        documented(key, &|s| s == "[defaults]" || s == "[[registries]]");
    }

    let yaml = read(&config_dir().join("reference.yaml"));
    for key in top.iter().chain(&per_registry) {
        assert!(
            yaml.lines().any(|l| is_key_line(l, key, ':')),
            "reference.yaml does not list `{key}`"
        );
    }
}

/// The values reference.toml sets at the top and in [defaults] are the exporter's defaults,
/// so what it says a default is, is true.
#[test]
fn reference_defaults_are_the_exporters_defaults() {
    let reference = Config::load(Some(&config_dir().join("reference.toml"))).unwrap();
    assert_eq!(reference.mode, Mode::Interval);
    assert_eq!(reference.min_interval, DEFAULT_MIN_INTERVAL);
    assert_eq!(reference.max_concurrency, DEFAULT_MAX_CONCURRENCY);
    assert_eq!(
        reference.runbook_base_url,
        oci_registry_exporter::catalogue::DEFAULT_RUNBOOK_BASE_URL
    );

    let tmp = tempfile::tempdir().unwrap();
    let minimal = tmp.path().join("minimal.toml");
    std::fs::write(
        &minimal,
        "[[registries]]\nname = \"m\"\nurl = \"https://registry.example.com\"\n",
    )
    .unwrap();
    let minimal = Config::load(Some(&minimal)).unwrap();
    assert_eq!(reference.history_size, minimal.history_size);
    let d = &minimal.registries[0];
    assert_eq!((d.interval, d.timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));

    let raw = RawConfig::load(Some(&config_dir().join("reference.toml"))).unwrap();
    let rd = &raw.defaults;
    assert_eq!(rd.interval, Some(d.interval));
    assert_eq!(rd.timeout, Some(d.timeout));
    assert_eq!(
        rd.test_repository.as_deref(),
        Some(d.test_repository.as_str())
    );
    assert_eq!(rd.test_tag.as_deref(), Some(d.test_tag.as_str()));
    assert_eq!(
        rd.push_test_repository.as_deref(),
        Some(d.push_test_repository.as_str())
    );
    assert_eq!(rd.insecure_skip_verify, Some(d.tls.insecure_skip_verify));
}
