//! The layering rules of ARCHITECTURE.md ("Layers, one way" and its table of ranks),
//! checked on the sources: a rule that only lives in prose erodes with the first
//! convenient import.

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

/// A module's rank from ARCHITECTURE.md's "Layers by rank" table: a module may name only
/// modules of a lower rank.
fn ranks() -> Vec<(String, u32)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let text = read(&path);
    let table = text
        .split("<!-- BEGIN LAYER RANKS -->")
        .nth(1)
        .and_then(|t| t.split("<!-- END LAYER RANKS -->").next())
        .expect("ARCHITECTURE.md has the layer ranks between their markers");
    let mut out = Vec::new();
    for row in table.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(rank) = cells[0].parse::<u32>() else {
            continue; // the header and its rule
        };
        for module in cells[1].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(!module.is_empty(), "an empty module name in the row {row}");
            out.push((module.to_string(), rank));
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to (`checks/pull.rs` → `checks`); the
/// crate's root is `lib`.
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().expect("a path under src/");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// Every `.rs` file under `src/`, but `main.rs` (the binary, which reaches the library
/// by its crate name, not `crate::`).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &mut out);
    out.retain(|p| p.file_name().is_some_and(|n| n != "main.rs"));
    out.sort();
    out
}

#[test]
fn every_module_has_a_rank_and_every_rank_a_module() {
    let ranks = ranks();
    let mut modules: Vec<String> = sources()
        .iter()
        .map(|p| module_of(p.strip_prefix(src()).unwrap()))
        .collect();
    modules.sort();
    modules.dedup();
    for m in &modules {
        assert!(
            ranks.iter().any(|(r, _)| r == m),
            "src/ module {m} has no rank in ARCHITECTURE.md's layer table: give it one"
        );
    }
    for (r, _) in &ranks {
        assert!(
            modules.contains(r),
            "ARCHITECTURE.md ranks {r}, which is not a module of src/"
        );
    }
}

/// ARCHITECTURE.md, "Layers by rank": every `crate::` path in `src/` (imports and paths
/// in code, tests included) names a module of a lower rank than its own, so the layers
/// have no circle.
#[test]
fn every_crate_path_names_a_lower_rank() {
    let ranks = ranks();
    let rank = |m: &str| ranks.iter().find(|(r, _)| r == m).map(|(_, n)| *n);
    let mut wrong = Vec::new();
    for path in sources() {
        let module = module_of(path.strip_prefix(src()).unwrap());
        let Some(own) = rank(&module) else {
            continue; // every_module_has_a_rank_and_every_rank_a_module says so
        };
        for used in crate_paths(&read(&path)) {
            if used == module {
                continue; // a module's own items, by their full path
            }
            // An item of the crate's root (`crate::X`) belongs to `lib`.
            let target = if rank(&used).is_some() {
                used
            } else {
                "lib".to_string()
            };
            let theirs = rank(&target).unwrap_or(u32::MAX);
            if theirs >= own {
                wrong.push(format!(
                    "{}: {module} (rank {own}) names crate::{target} (rank {theirs})",
                    path.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways (ARCHITECTURE.md, \"Layers by rank\"): move the \
         item down, or pass it in from above:\n{}",
        wrong.join("\n")
    );
}

/// Code without comments and string literals, as one text (a `use` may span lines).
fn code_only(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut bare = String::new();
        let mut in_string = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
                bare.push(' ');
            } else if !in_string {
                bare.push(c);
            }
            prev = c;
        }
        out.push_str(bare.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The top-level modules (or root items) a file names through `crate::`, in `use` trees
/// (`crate::{a, b::c}`) as in paths in code.
fn crate_paths(text: &str) -> Vec<String> {
    let code = code_only(text);
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.trim_start().strip_prefix('{') {
            // The group's top-level items, each up to its comma.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(ident(&item));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
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
fn the_rank_scanner_sees_use_trees_and_paths_in_code() {
    let text = "use crate::outcome::X;\nuse crate::{\n    report,\n    web::{a, b},\n};\n// use crate::app::Y;\nlet s = \"crate::server\";\nlet n = crate::shard::of(x);\npub(crate) fn f() {}\nlet d = doc(crate::EXIT_USAGE);";
    assert_eq!(
        crate_paths(text),
        ["outcome", "report", "web", "shard", "EXIT_USAGE"]
    );
}

#[test]
fn the_scanner_sees_imports() {
    let text = "use crate::checks::Status;\n// use crate::client::X;\nuse super::pull::Y;";
    assert_eq!(names(text, "crate::"), ["checks"]);
    assert_eq!(names(text, "super::"), ["pull"]);
}
