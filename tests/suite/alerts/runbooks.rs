//! The runbooks in docs/runbooks/ kept in step with the check catalogue and the alert rules.
//!
//! Every check has `docs/runbooks/<short name>.md`, naming its id, default severity and the
//! `oci-registry-exporter check` command (and its exit codes, `doctor::EXIT_*`) that
//! verifies a fix; every reason a check can
//! report (`catalogue::reasons`, and every `Reason::` its source names) has a
//! `` ### `<reason>` `` heading, whose GitHub anchor is the reason; every link the catalogue
//! builds (`catalogue::runbook_url`) and every alert's `runbook_url` resolves to a file and a
//! heading; every relative link in the runbooks resolves; and the runbooks only name metrics
//! the exporter serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci_registry_exporter::catalogue::{self, DEFAULT_RUNBOOK_BASE_URL};
use oci_registry_exporter::checks::{CheckKind, Reason};
use oci_registry_exporter::doctor::{EXIT_FAIL, EXIT_OK, EXIT_USAGE, EXIT_WARN};
use oci_registry_exporter::metrics::METRICS;
use serde_yaml_ng::Value as Yaml;

const RUNBOOKS: &str = "docs/runbooks";
const RULES: &str = "alerts/oci-registry-exporter.rules.yml";
const INDEX: &str = "docs/runbooks/README.md";
const ALERT_RUNBOOK: &str = "alerts.md";

/// Reasons a check's source reports that `catalogue::reasons` does not list yet. Their
/// runbook sections exist (the exporter links them), but the catalogue should list them:
/// remove an entry when `src/catalogue.rs` does (the test says so).
const CATALOGUE_GAPS: &[(CheckKind, Reason)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn runbook_path(kind: CheckKind) -> String {
    format!("{RUNBOOKS}/{}.md", kind.short_name())
}

/// GitHub's anchor for a heading's text: lower case; punctuation dropped except `-` and
/// `_`; each space becomes `-` (runs are not collapsed).
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown text that are not inside a fenced code block.
fn prose_lines(markdown: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// ATX headings outside code blocks: (level, text).
fn headings(markdown: &str) -> Vec<(usize, String)> {
    prose_lines(markdown)
        .into_iter()
        .filter_map(|line| {
            let level = line.chars().take_while(|&c| c == '#').count();
            let rest = &line[level..];
            ((1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(' ')))
                .then(|| (level, rest.trim().trim_end_matches('#').trim().to_string()))
        })
        .collect()
}

/// Every anchor GitHub generates for the headings, duplicates suffixed `-1`, `-2`, ...
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, text) in headings(markdown) {
        let base = github_anchor(&text);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// A line with its inline code spans removed (their text is not Markdown).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Targets of inline links `[text](target)` and reference definitions `[x]: target`.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, def)) = trimmed.split_once("]: ")
        {
            targets.push(def.split_whitespace().next().unwrap_or("").to_string());
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].trim();
            let target = target
                .strip_prefix('<')
                .and_then(|t| t.split_once('>'))
                .map(|(t, _)| t)
                .unwrap_or_else(|| target.split_whitespace().next().unwrap_or(""));
            targets.push(target.to_string());
            rest = &after[end.min(after.len())..];
        }
    }
    targets
}

/// `FooBar` → `foo_bar`, `NotARegistry` → `not_a_registry`.
fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `Reason::Variant` named in a check's source file, `ok` excluded. Reasons that come
/// from the client (transport, token, secrets) are not named there; the catalogue lists
/// them for every check.
fn reasons_named_in_source(kind: CheckKind) -> BTreeSet<Reason> {
    let rel = format!("src/checks/{}.rs", kind.short_name());
    let text = read(&rel);
    let mut found = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("Reason::") {
        rest = &rest[i + "Reason::".len()..];
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !ident.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        let name = snake_case(&ident);
        let reason = Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == name)
            .unwrap_or_else(|| panic!("{rel}: Reason::{ident} is not a Reason"));
        if reason != Reason::Ok {
            found.insert(reason);
        }
    }
    found
}

/// The file under docs/runbooks/ and the anchor a runbook URL names, if it points there.
fn split_runbook_url(url: &str) -> Option<(String, Option<String>)> {
    let (location, anchor) = match url.split_once('#') {
        Some((l, a)) => (l, Some(a.to_string())),
        None => (url, None),
    };
    let start = location.find("docs/runbooks/")?;
    Some((location[start..].to_string(), anchor))
}

/// Checks that `path` (relative to the repository root) exists and, for Markdown with an
/// anchor, has a heading with that anchor.
fn resolve(path: &str, anchor: Option<&str>) -> Result<(), String> {
    let full = root().join(path);
    if !full.exists() {
        return Err(format!("{path} does not exist"));
    }
    if let Some(anchor) = anchor.filter(|a| !a.is_empty()) {
        if full.extension().is_none_or(|e| e != "md") {
            return Err(format!(
                "{path} is not Markdown, but the link has #{anchor}"
            ));
        }
        let have = anchors(&read(path));
        if !have.contains(anchor) {
            return Err(format!("{path} has no heading with the anchor #{anchor}"));
        }
    }
    Ok(())
}

/// `a/b/../c` → `a/c`, for paths relative to the repository root.
fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

fn markdown_files_in_runbooks() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(RUNBOOKS))
        .expect("docs/runbooks exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| format!("{RUNBOOKS}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// The exit codes of `oci-registry-exporter check` as every check runbook states them.
fn exit_code_note() -> String {
    format!(
        "# {EXIT_OK} pass/info/skip, {EXIT_WARN} warn, {EXIT_FAIL} fail, {EXIT_USAGE} bad usage"
    )
}

#[test]
fn github_anchors_are_computed_as_github_does() {
    assert_eq!(github_anchor("`not_found`"), "not_found");
    assert_eq!(github_anchor("`connection_refused`"), "connection_refused");
    assert_eq!(github_anchor("Kubernetes / Helm"), "kubernetes--helm");
    assert_eq!(
        github_anchor("OciRegistryUnreachable"),
        "ociregistryunreachable"
    );
    assert_eq!(github_anchor("How to fix"), "how-to-fix");
    assert_eq!(
        anchors("# A\n## Fix\n```\n## Not a heading\n```\n### Fix\n#nope\n"),
        ["a", "fix", "fix-1"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert_eq!(
        link_targets("[a](b.md#c) `[x](not-a-link.md)` [d](<e f.md>) [g](h \"title\")\n[r]: s.md"),
        vec!["b.md#c", "e f.md", "h", "s.md"]
    );
}

#[test]
fn every_check_has_a_runbook_naming_its_id_severity_and_verification() {
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let info = catalogue::info(kind);
        let short = kind.short_name();
        let want = format!("{short}.md");
        if info.runbook != want {
            problems.push(format!(
                "{short}: catalogue runbook is {}, the convention is {want}",
                info.runbook
            ));
        }
        let path = runbook_path(kind);
        if !root().join(&path).is_file() {
            problems.push(format!("{short}: {path} does not exist"));
            continue;
        }
        let text = read(&path);
        let must_contain = [
            kind.id().to_string(),
            format!("**Default severity:** `{}`", info.severity.as_str()),
            "oci-registry-exporter check --config".to_string(),
            format!("--check {}", kind.id()),
            format!("/probe?target=<name>&check={short}"),
            format!("check=\"{short}\""),
            exit_code_note(),
        ];
        for needle in must_contain {
            if !text.contains(&needle) {
                problems.push(format!("{path}: does not mention {needle}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_reason_of_every_check_has_its_heading() {
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let path = runbook_path(kind);
        let text = read(&path);
        let have = anchors(&text);
        let heading_lines: Vec<&str> = prose_lines(&text);
        let listed = catalogue::reasons(kind);
        let unique: BTreeSet<Reason> = listed.iter().copied().collect();
        if unique.len() != listed.len() {
            problems.push(format!(
                "catalogue::reasons({}) lists a reason twice",
                kind.short_name()
            ));
        }
        if listed.contains(&Reason::Ok) {
            problems.push(format!(
                "catalogue::reasons({}) lists ok, which has no section",
                kind.short_name()
            ));
        }
        let all: BTreeSet<Reason> = unique
            .iter()
            .copied()
            .chain(reasons_named_in_source(kind))
            .collect();
        for reason in &all {
            let r = reason.as_str();
            let heading = format!("### `{r}`");
            let count = heading_lines
                .iter()
                .filter(|l| l.trim_end() == heading)
                .count();
            if count != 1 {
                problems.push(format!(
                    "{path}: want exactly one heading {heading}, found {count}"
                ));
            }
            if !have.contains(r) {
                problems.push(format!("{path}: no heading with the anchor #{r}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn reason_sections_name_only_reasons_the_check_reports() {
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let path = runbook_path(kind);
        let known: BTreeSet<&str> = catalogue::reasons(kind)
            .iter()
            .chain(reasons_named_in_source(kind).iter())
            .map(|r| r.as_str())
            .collect();
        let mut in_reasons = false;
        for (level, text) in headings(&read(&path)) {
            if level <= 2 {
                in_reasons = text == "Reasons";
                continue;
            }
            if in_reasons && level == 3 {
                let name = text.strip_prefix('`').and_then(|t| t.strip_suffix('`'));
                if !name.is_some_and(|n| known.contains(n)) {
                    problems.push(format!(
                        "{path}: section {text:?} under Reasons is not a reason the {} check reports",
                        kind.short_name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_catalogue_lists_every_reason_a_check_source_names() {
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let listed: BTreeSet<Reason> = catalogue::reasons(kind).iter().copied().collect();
        let named = reasons_named_in_source(kind);
        for reason in &named {
            let gap = CATALOGUE_GAPS.contains(&(kind, *reason));
            if !listed.contains(reason) && !gap {
                problems.push(format!(
                    "src/checks/{}.rs reports {} but catalogue::reasons({}) does not list it",
                    kind.short_name(),
                    reason.as_str(),
                    kind.short_name()
                ));
            }
        }
    }
    for &(kind, reason) in CATALOGUE_GAPS {
        if catalogue::reasons(kind).contains(&reason) {
            problems.push(format!(
                "catalogue::reasons({}) now lists {}: remove it from CATALOGUE_GAPS",
                kind.short_name(),
                reason.as_str()
            ));
        } else if !reasons_named_in_source(kind).contains(&reason) {
            problems.push(format!(
                "src/checks/{}.rs no longer names {}: remove it from CATALOGUE_GAPS",
                kind.short_name(),
                reason.as_str()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn catalogue_runbook_urls_resolve_to_a_file_and_heading() {
    assert!(
        DEFAULT_RUNBOOK_BASE_URL.ends_with("/docs/runbooks/"),
        "DEFAULT_RUNBOOK_BASE_URL {DEFAULT_RUNBOOK_BASE_URL} must name the docs/runbooks/ folder"
    );
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let file = catalogue::info(kind).runbook;
        let bare = catalogue::runbook_url(DEFAULT_RUNBOOK_BASE_URL, kind, None);
        let ok = catalogue::runbook_url(DEFAULT_RUNBOOK_BASE_URL, kind, Some(Reason::Ok));
        for url in [&bare, &ok] {
            if !url.ends_with(&format!("docs/runbooks/{file}")) {
                problems.push(format!(
                    "{url}: want a link to docs/runbooks/{file} without an anchor"
                ));
            }
        }
        let reasons: BTreeSet<Reason> = catalogue::reasons(kind)
            .iter()
            .copied()
            .chain(reasons_named_in_source(kind))
            .collect();
        for reason in reasons {
            let url = catalogue::runbook_url(DEFAULT_RUNBOOK_BASE_URL, kind, Some(reason));
            let suffix = format!("docs/runbooks/{file}#{}", reason.as_str());
            if !url.ends_with(&suffix) {
                problems.push(format!("{url}: want it to end with {suffix}"));
                continue;
            }
            let Some((path, anchor)) = split_runbook_url(&url) else {
                problems.push(format!("{url}: does not point into docs/runbooks/"));
                continue;
            };
            if let Err(e) = resolve(&path, anchor.as_deref()) {
                problems.push(format!("{url}: {e}"));
            }
        }
        // Another base (an internal wiki) gets the same file and anchor.
        let wiki = catalogue::runbook_url(
            "https://wiki.example.com/runbooks/",
            kind,
            Some(Reason::Timeout),
        );
        if wiki != format!("https://wiki.example.com/runbooks/{file}#timeout") {
            problems.push(format!("runbook_url on another base gave {wiki}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn alert_runbook_urls_resolve_to_a_file_and_heading() {
    let rules: Yaml =
        serde_yaml_ng::from_str(&read(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    let groups = rules
        .get("groups")
        .and_then(Yaml::as_sequence)
        .unwrap_or_else(|| panic!("{RULES}: no groups"));
    let mut problems = Vec::new();
    let mut alerts = 0;
    for group in groups {
        for rule in group
            .get("rules")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let Some(name) = rule.get("alert").and_then(Yaml::as_str) else {
                continue;
            };
            alerts += 1;
            let url = rule
                .get("annotations")
                .and_then(|a| a.get("runbook_url"))
                .and_then(Yaml::as_str);
            let Some(url) = url else {
                problems.push(format!("{name}: no runbook_url annotation"));
                continue;
            };
            let Some((path, anchor)) = split_runbook_url(url) else {
                problems.push(format!(
                    "{name}: runbook_url {url} does not point into docs/runbooks/"
                ));
                continue;
            };
            if anchor.as_deref().is_none_or(str::is_empty) {
                problems.push(format!("{name}: runbook_url {url} has no #anchor"));
            }
            if let Err(e) = resolve(&path, anchor.as_deref()) {
                problems.push(format!("{name}: runbook_url {url}: {e}"));
            }
        }
    }
    assert!(alerts > 0, "{RULES}: no alerting rule found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn relative_links_in_the_runbooks_resolve() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files_in_runbooks() {
        let text = read(&file);
        for target in link_targets(&text) {
            if target.is_empty() {
                problems.push(format!("{file}: a link with an empty target"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                Some(file.clone())
            } else if path.starts_with('/') {
                None
            } else {
                normalize(&Path::new(RUNBOOKS).join(path))
            };
            let Some(resolved) = resolved else {
                problems.push(format!(
                    "{file}: link {target} leaves the repository or is absolute"
                ));
                continue;
            };
            checked += 1;
            if let Err(e) = resolve(&resolved, anchor) {
                problems.push(format!("{file}: link {target}: {e}"));
            }
        }
    }
    assert!(checked > 0, "no relative link found in {RUNBOOKS}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_index_lists_every_runbook_and_explains_runbook_base_url() {
    let text = read(INDEX);
    let targets: BTreeSet<String> = link_targets(&text)
        .into_iter()
        .map(|t| t.split('#').next().unwrap_or("").to_string())
        .collect();
    let mut problems = Vec::new();
    for &kind in CheckKind::ALL {
        let file = catalogue::info(kind).runbook;
        if !targets.contains(file) {
            problems.push(format!("{INDEX}: no link to {file}"));
        }
        if !text.contains(kind.id()) {
            problems.push(format!("{INDEX}: does not name {}", kind.id()));
        }
    }
    if !targets.contains(ALERT_RUNBOOK) {
        problems.push(format!("{INDEX}: no link to {ALERT_RUNBOOK}"));
    }
    for needle in ["runbook_base_url", DEFAULT_RUNBOOK_BASE_URL] {
        if !text.contains(needle) {
            problems.push(format!("{INDEX}: does not mention {needle}"));
        }
    }
    // The exit-code table of the verification command, as `doctor` defines the codes.
    for row in [
        format!("| {EXIT_OK} | `pass`, `info` or `skip` |"),
        format!("| {EXIT_WARN} | `warn` |"),
        format!("| {EXIT_FAIL} | `fail` |"),
        format!("| {EXIT_USAGE} | bad usage"),
    ] {
        if !text.contains(&row) {
            problems.push(format!("{INDEX}: the exit-code table has no row {row:?}"));
        }
    }
    // Every Markdown file in the folder is reachable from the index.
    for file in markdown_files_in_runbooks() {
        let name = file.rsplit('/').next().unwrap_or(&file);
        if name != "README.md" && !targets.contains(name) {
            problems.push(format!("{INDEX}: no link to {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn check_runbooks_name_only_metrics_the_exporter_serves() {
    let mut served: BTreeSet<String> = BTreeSet::new();
    for m in METRICS {
        served.insert(m.name.to_string());
        if m.kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                served.insert(format!("{}{suffix}", m.name));
            }
        }
    }
    let mut files: Vec<String> = CheckKind::ALL.iter().map(|&k| runbook_path(k)).collect();
    files.push(INDEX.to_string());
    let mut problems = Vec::new();
    for file in files {
        let text = read(&file);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("oci_registry_") {
            // Skip matches inside a longer identifier (e.g. a config key).
            let before = rest[..i].chars().next_back();
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[i + name.len().max(1)..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if !served.contains(&name) {
                problems.push(format!(
                    "{file}: {name} is not a metric the exporter serves"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
