//! The layering rules of ARCHITECTURE.md ("Layers, one way"), checked on the sources: a
//! rule that only lives in prose erodes with the first convenient import.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `crate::<module>` / `super::<module>` paths a file names, outside comments.
fn names(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

const CHECKS: &[&str] = &[
    "registry",
    "credentials",
    "pull",
    "push",
    "capabilities",
    "referrers",
];

#[test]
fn no_check_module_imports_another_check_module() {
    for check in CHECKS {
        let path = src().join(format!("checks/{check}.rs"));
        let text = read(&path);
        let mut used = names(&text, "super::");
        used.extend(names(&text, "checks::"));
        for other in CHECKS {
            assert!(
                !used.iter().any(|u| u == other),
                "{}: imports the {other} check; move what it shares into distribution/ or checks/mod.rs",
                path.display()
            );
        }
    }
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    // (file, crate modules it must not name)
    let rules: &[(&str, &[&str])] = &[
        (
            "outcome.rs",
            &[
                "checks",
                "client",
                "distribution",
                "config",
                "catalogue",
                "app",
                "metrics",
            ],
        ),
        ("client.rs", &["checks", "distribution", "catalogue", "app"]),
        ("distribution/mod.rs", &["checks", "catalogue", "app"]),
        ("distribution/answer.rs", &["checks", "catalogue", "app"]),
        ("distribution/types.rs", &["checks", "client", "catalogue"]),
        ("catalogue.rs", &["checks", "client", "distribution"]),
        (
            "shard.rs",
            &[
                "checks",
                "client",
                "config",
                "distribution",
                "catalogue",
                "outcome",
                "app",
                "metrics",
                "server",
            ],
        ),
        (
            "secret_file.rs",
            &[
                "checks",
                "client",
                "config",
                "docker_config",
                "distribution",
                "catalogue",
                "outcome",
                "app",
            ],
        ),
    ];
    for (file, forbidden) in rules {
        let path = src().join(file);
        let used = names(&read(&path), "crate::");
        for f in *forbidden {
            assert!(
                !used.iter().any(|u| u == f),
                "{}: names crate::{f}, which ARCHITECTURE.md's layers forbid",
                path.display()
            );
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    let text = "use crate::checks::Status;\n// use crate::client::X;\nuse super::pull::Y;";
    assert_eq!(names(text, "crate::"), ["checks"]);
    assert_eq!(names(text, "super::"), ["pull"]);
}
