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

/// The places in `text` where a status code is compared or matched, outside comments and
/// string literals: `== 404`, `!= 202`, a match arm `401 =>`, `404 |`, `| 405`, `500..=`,
/// a tuple pattern `(401, ...)`, `.is_success()`, `StatusCode::`, `.as_u16()`.
fn status_decisions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        // String literals are words for people, not decisions.
        let mut bare = String::new();
        let mut in_string = false;
        let mut prev = ' ';
        for c in code.chars() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
                bare.push(' ');
            } else if !in_string {
                bare.push(c);
            }
            prev = c;
        }
        let compact: String = bare.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut hit = ["is_success()", "StatusCode", ".as_u16()"]
            .iter()
            .any(|p| compact.contains(p));
        let words: Vec<&str> = compact.split(' ').collect();
        // A word that starts with a status code (after a `(`): `404`, `500..=599`, `(401,`.
        let is_code = |w: &str| {
            let lead: String = w
                .trim_start_matches('(')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let rest = &w.trim_start_matches('(')[lead.len()..];
            lead.len() == 3
                && ('1'..='5').contains(&lead.chars().next().unwrap_or('0'))
                && !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        };
        for (i, w) in words.iter().enumerate() {
            if !is_code(w) {
                continue;
            }
            let before = if i > 0 { words[i - 1] } else { "" };
            let after = words.get(i + 1).copied().unwrap_or("");
            if matches!(before, "==" | "!=" | "|")
                || matches!(after, "=>" | "|")
                || w.contains("..=")
                || w.starts_with('(') && w.ends_with(',')
            {
                hit = true;
            }
        }
        if hit {
            out.push(format!("{}: {}", n + 1, line.trim()));
        }
    }
    out
}

/// ARCHITECTURE.md: "No check decides a verdict from a status code": answers are judged
/// in `src/distribution/` (`Answer` and its classes) and words chosen in `checks::refused`;
/// the check modules only read classes.
#[test]
fn no_check_decides_from_a_status_code() {
    for check in CHECKS {
        let path = src().join(format!("checks/{check}.rs"));
        let found = status_decisions(&read(&path));
        assert!(
            found.is_empty(),
            "{} decides from a status code; judge the answer in src/distribution/answer.rs and read its Class:\n{}",
            path.display(),
            found.join("\n")
        );
    }
}

#[test]
fn the_status_scanner_sees_status_decisions() {
    let text = "match code {\n    401 => a,\n    500..=599 => b,\n}\nif resp.status.is_success() {}\nlet x = r.status.as_u16() == 404;\nmatch (code, c) { (401, _) => 1 }\n// 404 => in a comment\nlet s = \"HTTP 404 =>\";\nlet n = s.take(200);";
    let found = status_decisions(text);
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(status_decisions("x.with_http_status(answer.status); let y = take(100);").is_empty());
}

#[test]
fn the_scanner_sees_imports() {
    let text = "use crate::checks::Status;\n// use crate::client::X;\nuse super::pull::Y;";
    assert_eq!(names(text, "crate::"), ["checks"]);
    assert_eq!(names(text, "super::"), ["pull"]);
}
