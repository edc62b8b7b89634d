//! The alert rules and dashboards as shipped: `promtool` lints the rules and runs their unit
//! tests (alerts/tests/*.yml) inside `cargo test`; every alert is fired by some unit test and
//! carries severity, summary, description and a runbook link that resolves to a heading of
//! docs/runbooks/alerts.md, whose index table and PromQL match the rules; every metric the
//! rules and dashboards query is declared by the exporter; and the dashboards follow their
//! conventions (data source variable, job/instance/registry variables, stable uids, tags,
//! units, `$__rate_interval`, value mappings of the status encoding).
//!
//! What the rules and dashboards do against a live exporter is tests/suite/alerts/prometheus.rs.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use oci_registry_exporter::metrics::METRICS;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use common::promql::metric_names;

const RULES: &str = "alerts/oci-registry-exporter.rules.yml";
const RUNBOOKS: &str = "docs/runbooks/alerts.md";

/// Metrics the rules or dashboards query that `metrics::METRICS` does not declare yet: the
/// features that serve them have not landed. Remove an entry when its metric is declared
/// (the test says so); anything else they query must be declared, so a typo cannot hide.
const UNDECLARED_METRICS: &[&str] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .expect("promtool is installed (scripts/test installs Debian's prometheus)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// alerts/tests/*.yml, relative to the repository root, sorted.
fn rule_test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("alerts/tests"))
        .expect("alerts/tests exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .map(|p| format!("alerts/tests/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "alerts/tests holds no *.yml");
    files
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn seq(v: &Yaml) -> &[Yaml] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn text<'a>(v: &'a Yaml, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Yaml::as_str)
}

/// One alerting rule of the rules file.
struct Alert {
    group: String,
    name: String,
    expr: String,
    duration: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn string_map(v: Option<&Yaml>) -> BTreeMap<String, String> {
    v.and_then(Yaml::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Yaml::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The recording rules: (recorded name, expr).
fn recording_rules() -> Vec<(String, String)> {
    let doc = yaml(RULES);
    let mut out = Vec::new();
    for group in seq(&doc["groups"]) {
        for rule in seq(&group["rules"]) {
            if let Some(name) = text(rule, "record") {
                out.push((name.to_string(), text(rule, "expr").unwrap().to_string()));
            }
        }
    }
    out
}

fn alerts() -> Vec<Alert> {
    let doc = yaml(RULES);
    let mut out = Vec::new();
    for group in seq(&doc["groups"]) {
        for rule in seq(&group["rules"]) {
            let Some(name) = text(rule, "alert") else {
                continue;
            };
            out.push(Alert {
                group: text(group, "name").unwrap().to_string(),
                name: name.to_string(),
                expr: text(rule, "expr").unwrap().to_string(),
                duration: text(rule, "for").map(str::to_string),
                labels: string_map(rule.get("labels")),
                annotations: string_map(rule.get("annotations")),
            });
        }
    }
    assert!(!out.is_empty(), "{RULES} holds no alert");
    out
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code && line.starts_with('#') {
            anchors.insert(github_anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

/// The name `METRICS` declares for a scraped series name (histogram suffixes stripped).
fn declared_name(series: &str) -> Option<&'static str> {
    METRICS.iter().map(|m| m.name).find(|&m| {
        m == series
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                series.strip_suffix(suffix) == Some(m)
                    && METRICS.iter().any(|d| d.name == m && d.kind == "histogram")
            })
    })
}

#[test]
fn promtool_checks_the_rules() {
    let (ok, out) = promtool(&["check", "rules", RULES]);
    assert!(ok, "promtool check rules {RULES}:\n{out}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let files = rule_test_files();
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = promtool(&args);
    assert!(ok, "promtool test rules {}:\n{out}", files.join(" "));
}

#[test]
fn every_alert_is_fired_by_a_unit_test() {
    // (alertname, severity) pairs some alert_rule_test expects to fire.
    let mut fired: BTreeSet<(String, String)> = BTreeSet::new();
    for file in rule_test_files() {
        let doc = yaml(&file);
        let rule_files: Vec<&str> = seq(&doc["rule_files"])
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert!(
            rule_files.contains(&"../oci-registry-exporter.rules.yml"),
            "{file} does not test {RULES} (rule_files: {rule_files:?})"
        );
        for test in seq(&doc["tests"]) {
            for case in seq(&test["alert_rule_test"]) {
                let name = text(case, "alertname").expect("alertname");
                for exp in seq(&case["exp_alerts"]) {
                    let severity = exp
                        .get("exp_labels")
                        .and_then(|l| text(l, "severity"))
                        .unwrap_or("")
                        .to_string();
                    fired.insert((name.to_string(), severity));
                }
            }
        }
    }
    let missing: Vec<String> = alerts()
        .iter()
        .filter(|a| {
            let severity = a.labels.get("severity").cloned().unwrap_or_default();
            !fired.contains(&(a.name.clone(), severity))
        })
        .map(|a| format!("{} (severity {:?})", a.name, a.labels.get("severity")))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts no promtool unit test in alerts/tests/ expects to fire (add an alert_rule_test \
         with a non-empty exp_alerts): {missing:?}"
    );
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_heading() {
    let runbook_text = read(RUNBOOKS);
    let anchors = heading_anchors(&runbook_text);
    let mut problems = Vec::new();
    for a in alerts() {
        let n = &a.name;
        if !n.starts_with("OciRegistry") || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(format!("{n}: not a CamelCase name prefixed OciRegistry"));
        }
        match a.labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{n}: severity {other:?}, want critical, warning or info"
            )),
        }
        for key in ["summary", "description", "runbook_url"] {
            if a.annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{n}: annotation {key} missing or empty"));
            }
        }
        let Some(url) = a.annotations.get("runbook_url") else {
            continue;
        };
        let Some((location, anchor)) = url.split_once('#') else {
            problems.push(format!("{n}: runbook_url {url} has no #anchor"));
            continue;
        };
        let Some(start) = location.find("docs/runbooks/") else {
            problems.push(format!(
                "{n}: runbook_url {url} does not point into docs/runbooks/"
            ));
            continue;
        };
        let path = &location[start..];
        if path != RUNBOOKS {
            if !root().join(path).is_file() {
                problems.push(format!("{n}: runbook_url {url}: {path} does not exist"));
            }
            let other = heading_anchors(&read(path));
            if !other.contains(anchor) {
                problems.push(format!(
                    "{n}: runbook_url {url}: no heading #{anchor} in {path}"
                ));
            }
        } else if !anchors.contains(anchor) {
            problems.push(format!(
                "{n}: runbook_url {url}: no heading with anchor #{anchor} in {RUNBOOKS}"
            ));
        }
        if anchor != n.to_lowercase() {
            problems.push(format!(
                "{n}: runbook anchor #{anchor}, the convention is #{}",
                n.to_lowercase()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The label names each alert carries when it fires, as the promtool unit tests expect them:
/// promtool compares `exp_labels` exactly, so these are the labels the alert's expression
/// keeps (plus its own `labels:`), without reading the PromQL here.
fn fired_label_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rule_test_files() {
        let doc = yaml(&file);
        for test in seq(&doc["tests"]) {
            for case in seq(&test["alert_rule_test"]) {
                let name = text(case, "alertname").expect("alertname");
                for exp in seq(&case["exp_alerts"]) {
                    let keys = string_map(exp.get("exp_labels")).into_keys();
                    out.entry(name.to_string()).or_default().extend(keys);
                }
            }
        }
    }
    out
}

/// A template with the blanks inside `{{ }}` removed, so that `{{ $labels.registry }}` and
/// `{{$labels.registry}}` read the same.
fn compact_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut depth = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && chars.peek() == Some(&'{') {
            depth += 1;
        } else if c == '}' && chars.peek() == Some(&'}') && depth > 0 {
            depth -= 1;
        }
        if depth > 0 && c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// What a person reads first names what is broken: the summary of an alert that fires per
/// registry names the registry, of one that fires per check the check, of an exporter-level
/// alert the exporter (instance and job, where it has them); and the description of a
/// registry alert shows the current reason, read from `oci_registry_check_reason` (its
/// series carry no `reason`, so it is queried, never invented).
#[test]
fn summaries_name_the_registry_and_check_and_descriptions_the_reason() {
    let fired = fired_label_names();
    let mut problems = Vec::new();
    for a in alerts() {
        let n = &a.name;
        let Some(keys) = fired.get(n) else {
            problems.push(format!(
                "{n}: no promtool unit test expects it to fire, so its labels are unknown"
            ));
            continue;
        };
        let summary = compact_template(a.annotations.get("summary").map_or("", String::as_str));
        let description =
            compact_template(a.annotations.get("description").map_or("", String::as_str));
        let names = |label: &str| summary.contains(&format!("{{{{$labels.{label}}}}}"));
        if keys.contains("registry") {
            if !names("registry") {
                problems.push(format!(
                    "{n}: fires per registry, but its summary does not name it with \
                     {{{{ $labels.registry }}}}: {summary}"
                ));
            }
            if !description.contains("oci_registry_check_reason{")
                && !description.contains("{{$labels.reason}}")
            {
                problems.push(format!(
                    "{n}: fires per registry, but its description does not show the current \
                     reason (query oci_registry_check_reason): {description}"
                ));
            }
        } else {
            for label in ["instance", "job"] {
                if keys.contains(label) && !names(label) {
                    problems.push(format!(
                        "{n}: an exporter-level alert whose summary does not name the exporter's \
                         {label} with {{{{ $labels.{label} }}}}: {summary}"
                    ));
                }
            }
            if !keys.contains("instance")
                && !keys.contains("job")
                && !summary.contains("oci-registry-exporter")
            {
                problems.push(format!(
                    "{n}: carries no registry, job or instance, so its summary must name the \
                     oci-registry-exporter job: {summary}"
                ));
            }
        }
        if keys.contains("check") && !names("check") {
            problems.push(format!(
                "{n}: fires per check, but its summary does not name it with \
                 {{{{ $labels.check }}}}: {summary}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A rule's summary as the runbook quotes it: every `{{ $labels.x }}` shown as `<x>`, and
/// `{{ $value }}` as `<value>`.
/// docs/runbooks/alerts.md quotes each alert's summary (in a code span) under its heading,
/// so that a person who arrives from a notification recognises it.
fn summary_as_quoted(summary: &str) -> String {
    let mut out = compact_template(summary);
    while let Some(start) = out.find("{{$labels.") {
        let Some(len) = out[start..].find("}}") else {
            break;
        };
        let label = out[start + "{{$labels.".len()..start + len].to_string();
        out.replace_range(start..start + len + 2, &format!("<{label}>"));
    }
    out.replace("{{$value}}", "<value>")
}

#[test]
fn runbook_summaries_quote_the_rules() {
    let mut quoted: BTreeMap<String, String> = BTreeMap::new();
    let mut section = String::new();
    for line in read(RUNBOOKS).lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
        } else if let Some(s) = line.strip_prefix("**Summary:**") {
            quoted.insert(section.clone(), s.trim().to_string());
        }
    }
    let mut problems = Vec::new();
    for a in alerts() {
        // In a code span: a bare `<registry>` would be read as an HTML tag and vanish.
        let want = format!("`{}`", summary_as_quoted(&a.annotations["summary"]));
        match quoted.get(&a.name) {
            Some(have) if *have == want => {}
            have => problems.push(format!(
                "{}: {RUNBOOKS} quotes the summary as {have:?}, the rule says {want:?}",
                a.name
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn runbook_index_matches_the_rules() {
    // The table at the top of docs/runbooks/alerts.md: | [Name](#anchor) | severity | for | group |
    let mut rows: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for line in read(RUNBOOKS).lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() == 4 && cells[0].starts_with("[OciRegistry") {
            let name = cells[0][1..].split(']').next().unwrap().to_string();
            rows.insert(name, (cells[1].into(), cells[2].into(), cells[3].into()));
        }
    }
    let mut wanted: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, String)> =
        BTreeMap::new();
    for a in alerts() {
        let e = wanted
            .entry(a.name.clone())
            .or_insert_with(|| (BTreeSet::new(), BTreeSet::new(), a.group.clone()));
        e.0.insert(a.labels.get("severity").cloned().unwrap_or_default());
        e.1.insert(a.duration.clone().unwrap_or_else(|| "0s".into()));
    }
    let mut problems = Vec::new();
    for (name, (severities, durations, group)) in &wanted {
        let Some((sev, dur, grp)) = rows.get(name) else {
            problems.push(format!("{name}: no row in the index table of {RUNBOOKS}"));
            continue;
        };
        let row_sevs: BTreeSet<String> = sev.split('/').map(|s| s.trim().to_string()).collect();
        let row_durs: BTreeSet<String> = dur.split('/').map(|s| s.trim().to_string()).collect();
        if &row_sevs != severities {
            problems.push(format!(
                "{name}: index says severity {sev}, rules say {severities:?}"
            ));
        }
        if &row_durs != durations {
            problems.push(format!(
                "{name}: index says for {dur}, rules say {durations:?}"
            ));
        }
        if grp != group {
            problems.push(format!("{name}: index says group {grp}, rules say {group}"));
        }
    }
    for name in rows.keys().filter(|n| !wanted.contains_key(*n)) {
        problems.push(format!(
            "{name}: in the index table of {RUNBOOKS} but not in {RULES}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The ```promql blocks of each `## <alert>` section of the runbooks, whitespace collapsed.
fn runbook_promql() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut block: Option<String> = None;
    for line in read(RUNBOOKS).lines() {
        if let Some(b) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let text = b.split_whitespace().collect::<Vec<_>>().join(" ");
                out.entry(section.clone()).or_default().push(text);
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
        } else if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
        } else if line.trim_start().starts_with("```promql") {
            block = Some(String::new());
        }
    }
    out
}

#[test]
fn runbooks_show_the_rules_promql() {
    let blocks = runbook_promql();
    let mut problems = Vec::new();
    for a in alerts() {
        let expr = a.expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown = blocks.get(&a.name).map(Vec::as_slice).unwrap_or(&[]);
        if !shown.iter().any(|b| b.contains(&expr)) {
            problems.push(format!(
                "{}: the PromQL in {RUNBOOKS} differs from the rule's expr:\n  rule: {expr}\n  runbook: {shown:?}",
                a.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Dashboards

const STATUS_CODES: [&str; 5] = ["skip", "pass", "info", "warn", "fail"];

fn dashboards() -> Vec<(String, Json)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .expect("dashboards/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "dashboards/ holds no *.json");
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let json = serde_json::from_str(&std::fs::read_to_string(p).unwrap())
                .unwrap_or_else(|e| panic!("dashboards/{name}: {e}"));
            (name, json)
        })
        .collect()
}

fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for p in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variables(dashboard: &Json) -> &[Json] {
    dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_datasource_variable_ref(ds: &Json) -> bool {
    ds["type"] == "prometheus" && ds["uid"] == "${datasource}"
}

/// Every PromQL text of a dashboard with where it is: panel targets, query variables,
/// annotations.
fn dashboard_exprs(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(e) = t["expr"].as_str() {
                out.push((
                    format!("panel {:?} target {}", p["title"], t["refId"]),
                    e.into(),
                ));
            }
        }
    }
    for v in variables(dashboard) {
        if v["type"] == "query" {
            let q = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .unwrap_or_default();
            out.push((format!("variable {}", v["name"]), q.into()));
        }
    }
    for a in dashboard["annotations"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), e.into()));
        }
    }
    out
}

#[test]
fn every_metric_the_rules_and_dashboards_query_is_declared() {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let recorded: BTreeSet<String> = recording_rules().into_iter().map(|(n, _)| n).collect();
    for (name, expr) in recording_rules() {
        assert!(
            name.split(':').count() == 3,
            "recording rule {name}: not named level:metric:operations"
        );
        for m in metric_names(&expr) {
            used.entry(m).or_default().insert(format!("record {name}"));
        }
    }
    for a in alerts() {
        for m in metric_names(&a.expr) {
            used.entry(m)
                .or_default()
                .insert(format!("alert {}", a.name));
        }
    }
    for (file, d) in dashboards() {
        for (place, e) in dashboard_exprs(&d) {
            for m in metric_names(&e) {
                used.entry(m).or_default().insert(format!("{file} {place}"));
            }
        }
    }
    let mut problems = Vec::new();
    for (metric, places) in &used {
        let declared =
            metric == "up" || declared_name(metric).is_some() || recorded.contains(metric);
        let pending = UNDECLARED_METRICS.contains(&metric.as_str());
        if !declared && !pending {
            problems.push(format!(
                "{metric} is not declared in metrics::METRICS (typo?), used by {places:?}"
            ));
        }
        if declared && pending {
            problems.push(format!(
                "{metric} is declared now: remove it from UNDECLARED_METRICS in tests/suite/alerts/rules.rs"
            ));
        }
    }
    for m in UNDECLARED_METRICS {
        if !used.contains_key(*m) {
            problems.push(format!(
                "{m} is in UNDECLARED_METRICS but nothing queries it: remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `(status="X"} == 1) * N` pairs of the status encoding used by the status panels.
fn status_encoding(expr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for part in expr.split("status=\"").skip(1) {
        let Some((status, rest)) = part.split_once('"') else {
            continue;
        };
        let rest = rest.trim_start_matches('}').trim_start();
        if let Some(after) = rest.strip_prefix("== 1)") {
            let n: String = after
                .trim_start()
                .trim_start_matches('*')
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !n.is_empty() {
                out.insert(n, status.to_string());
            }
        }
    }
    out
}

#[test]
fn dashboards_follow_the_conventions() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let all = dashboards();
    for (file, d) in &all {
        let mut p = |msg: String| problems.push(format!("dashboards/{file}: {msg}"));
        let stem = file.trim_end_matches(".json");
        // Stable identity: a fixed uid (links and provisioning rely on it), no numeric id.
        match d["uid"].as_str() {
            Some(uid) if uid == stem && uid.len() <= 40 => {
                uids.insert(uid.to_string());
            }
            other => p(format!(
                "uid {other:?}: want the file name {stem:?} (at most 40 chars)"
            )),
        }
        if !d["id"].is_null() {
            p(format!("id {} must be null in a shared dashboard", d["id"]));
        }
        let tags: Vec<&str> = d["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if !tags.contains(&"oci-registry-exporter") {
            p(format!(
                "tags {tags:?} lack \"oci-registry-exporter\" (the dashboard links use it)"
            ));
        }
        if d["title"].as_str().is_none_or(str::is_empty) {
            p("no title".into());
        }

        // Variables: the data source, then job → instance → registry, multi-select with All = .+
        let vars = variables(d);
        let var = |name: &str| vars.iter().find(|v| v["name"] == name);
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            other => p(format!(
                "no `datasource` variable of type datasource/prometheus: {other:?}"
            )),
        }
        for (name, parents) in [
            ("job", &[][..]),
            ("instance", &["$job"][..]),
            ("registry", &["$job", "$instance"][..]),
        ] {
            let Some(v) = var(name) else {
                p(format!("no `{name}` variable"));
                continue;
            };
            if v["type"] != "query"
                || v["multi"] != true
                || v["includeAll"] != true
                || v["allValue"] != ".+"
            {
                p(format!(
                    "variable {name}: want type query, multi, includeAll with allValue \".+\""
                ));
            }
            if !is_datasource_variable_ref(&v["datasource"]) {
                p(format!(
                    "variable {name}: data source is not ${{datasource}}"
                ));
            }
            let q = v["query"].as_str().or_else(|| v["query"]["query"].as_str());
            let q = q.unwrap_or_default();
            for parent in parents {
                if !q.contains(parent) {
                    p(format!(
                        "variable {name}: query {q:?} is not filtered by {parent}"
                    ));
                }
            }
        }

        for a in d["annotations"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if a["expr"].is_string() && !is_datasource_variable_ref(&a["datasource"]) {
                p(format!(
                    "annotation {}: data source is not ${{datasource}}",
                    a["name"]
                ));
            }
        }

        let mut ids = BTreeSet::new();
        for panel in panels(d) {
            let title = panel["title"].as_str().unwrap_or("?");
            let mut p =
                |msg: String| problems.push(format!("dashboards/{file}: panel {title:?}: {msg}"));
            if !ids.insert(panel["id"].as_i64().unwrap_or(-1)) {
                p(format!("duplicate or missing panel id {}", panel["id"]));
            }
            if panel["type"] == "row" {
                continue;
            }
            if !is_datasource_variable_ref(&panel["datasource"]) {
                p(format!(
                    "data source {} is not ${{datasource}}",
                    panel["datasource"]
                ));
            }
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if targets.is_empty() {
                p("no targets".into());
            }
            let mut ref_ids = BTreeSet::new();
            for t in targets {
                if !is_datasource_variable_ref(&t["datasource"]) {
                    p(format!(
                        "target {}: data source is not ${{datasource}}",
                        t["refId"]
                    ));
                }
                if !ref_ids.insert(t["refId"].as_str().unwrap_or("").to_string()) {
                    p(format!("duplicate or missing refId {}", t["refId"]));
                }
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.contains("datasource") {
                    p(format!(
                        "target {}: the expression mentions the data source",
                        t["refId"]
                    ));
                }
                // rate-like functions take $__rate_interval, so the window always spans
                // enough scrapes whatever the zoom and scrape interval.
                for f in ["rate(", "irate(", "increase("] {
                    for (i, _) in expr.match_indices(f) {
                        let before = expr[..i].chars().last();
                        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                            continue; // e.g. a longer function name ending in "rate("
                        }
                        let call = &expr[i..];
                        let range = call
                            .find('[')
                            .and_then(|s| call[s..].find(']').map(|e| &call[s + 1..s + e]));
                        if range != Some("$__rate_interval") {
                            p(format!(
                                "target {}: {f}..) over [{}], want [$__rate_interval]",
                                t["refId"],
                                range.unwrap_or("?")
                            ));
                        }
                    }
                }
            }
            // Transformations and overrides name refIds that exist.
            let text = panel.to_string();
            for (i, _) in text.match_indices("Value #") {
                let r: String = text[i + 7..]
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                if !ref_ids.contains(&r) {
                    p(format!("refers to \"Value #{r}\" but has no target {r}"));
                }
            }
            for o in panel["fieldConfig"]["overrides"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if o["matcher"]["id"] == "byFrameRefID" {
                    let r = o["matcher"]["options"].as_str().unwrap_or_default();
                    if !ref_ids.contains(r) {
                        p(format!(
                            "override for frame {r:?}, which no target produces"
                        ));
                    }
                }
            }
            if panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                p("no unit in fieldConfig.defaults".into());
            }

            // Status panels: the numeric encoding of the state set maps back to the five
            // status names, each to the number the expression gives it.
            let mappings = &panel["fieldConfig"]["defaults"]["mappings"];
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                if !expr.contains("oci_registry_check_status") {
                    continue;
                }
                let encoding = status_encoding(expr);
                if encoding.is_empty() {
                    continue;
                }
                let found: BTreeSet<&str> = encoding.values().map(String::as_str).collect();
                if found != STATUS_CODES.iter().copied().collect() {
                    p(format!(
                        "status encoding {encoding:?} does not cover {STATUS_CODES:?}"
                    ));
                }
                for (number, status) in &encoding {
                    let text = mappings
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|m| m["type"] == "value")
                        .find_map(|m| m["options"][number.as_str()]["text"].as_str());
                    if text != Some(status.as_str()) {
                        p(format!(
                            "value mapping {number} → {text:?}, but the expression encodes {status} as {number}"
                        ));
                    }
                }
            }
            // Panels split by status colour each status.
            let by_status = targets.iter().any(|t| {
                let e = t["expr"].as_str().unwrap_or_default();
                e.contains("oci_registry_check_runs_total") && e.contains("status)")
            });
            if by_status {
                let overrides = panel["fieldConfig"]["overrides"].to_string();
                for s in STATUS_CODES {
                    if !overrides.contains(&format!("\"{s}\""))
                        && !overrides.contains(&format!(" {s}$"))
                    {
                        p(format!("split by status, but no colour override for {s}"));
                    }
                }
            }
        }
    }
    // Links between dashboards use /d/<uid>; every such uid exists.
    for (file, d) in &all {
        let text = d.to_string();
        for (i, _) in text.match_indices("/d/") {
            let uid: String = text[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !uids.contains(&uid) {
                problems.push(format!(
                    "dashboards/{file}: link to /d/{uid}, no dashboard has that uid"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn metric_names_are_found_outside_strings_and_matchers() {
    let got = metric_names(
        "sum by (registry) (rate(oci_registry_check_runs_total{check=\"oci_registry_x\"}[5m])) \
         / on (job) group_left up or label_values(oci_registry_check_status{job=~\"$job\"}, job)",
    );
    let want: BTreeSet<String> = [
        "oci_registry_check_runs_total",
        "up",
        "oci_registry_check_status",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        declared_name("oci_registry_request_duration_seconds_bucket"),
        Some("oci_registry_request_duration_seconds")
    );
    assert_eq!(declared_name("oci_registry_check_status_count"), None);
    assert_eq!(
        github_anchor(" OciRegistryUnreachable "),
        "ociregistryunreachable"
    );
    assert_eq!(
        summary_as_quoted("Registry {{ $labels.registry }}: the {{$labels.check}} check"),
        "Registry <registry>: the <check> check"
    );
    assert_eq!(compact_template("a b {{ $x | y }}"), "a b {{$x|y}}");
}

/// What `/probe` serves, scraped by a Probe job, must fire none of the exporter's own alerts
/// (it used to carry `oci_registry_exporter_config_last_reload_successful 0`, which fired
/// OciRegistryExporterConfigReloadFailed for every probe target). The input series are the
/// real answer of `/probe` against a registry on 127.0.0.1, run through promtool.
#[tokio::test]
async fn probe_series_fire_no_exporter_alert() {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/")
        .with_status(200)
        .with_header("docker-distribution-api-version", "registry/2.0")
        .with_body("{}")
        .create_async()
        .await;
    let config = common::config_from_toml(&format!(
        "mode = \"scrape\"\n[[registries]]\nname = \"hub\"\nurl = \"{}\"\nchecks = [\"registry\"]\n",
        server.url()
    ));
    let exporter = common::Exporter::start(config).await;
    let (code, body) = exporter.get("/probe?target=hub").await;
    assert_eq!(code, 200, "{body}");
    exporter.stop().await;

    // Each sample, as Prometheus stores it for the probe job (job and instance added).
    let mut series = String::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name_labels, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let target = "job=\"oci-registry-exporter-probe\", instance=\"hub\"";
        let selector = match name_labels.split_once('{') {
            Some((name, labels)) => format!("{name}{{{target}, {labels}"),
            None => format!("{name_labels}{{{target}}}"),
        };
        series.push_str(&format!(
            "      - series: '{selector}'\n        values: '{value}x60'\n"
        ));
    }
    series.push_str(
        "      - series: 'up{job=\"oci-registry-exporter-probe\", instance=\"hub\"}'\n        values: '1x60'\n",
    );
    let mut alert_tests = String::new();
    for alert in alerts()
        .iter()
        .filter(|a| a.group == "oci-registry-exporter.exporter")
    {
        alert_tests.push_str(&format!(
            "      - eval_time: 40m\n        alertname: {}\n        exp_alerts: []\n",
            alert.name
        ));
    }
    assert!(!alert_tests.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let test_file = dir.path().join("probe.test.yml");
    std::fs::write(
        &test_file,
        format!(
            "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - name: probe series\n    interval: 1m\n    input_series:\n{series}    alert_rule_test:\n{alert_tests}",
            root().join(RULES).display()
        ),
    )
    .unwrap();
    let (ok, out) = promtool(&["test", "rules", test_file.to_str().unwrap()]);
    assert!(
        ok,
        "an exporter-level alert fired from /probe's series:\n{out}\n{body}"
    );
}
