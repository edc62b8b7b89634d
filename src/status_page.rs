//! The `/` status page: what a person who opens the exporter in a browser sees first.
//!
//! Owns the page's HTML: a header with the exporter's version and a one-line summary
//! (registries failing, warning, ok; with sharding, which shard this replica is and how many
//! of the configured registries it checks), the latest result of every registry × check with
//! failing and warning rows first, relative times with the absolute time in a `title`, the
//! likely cause and fix of every non-pass row (or the check whose failure explains it), a
//! link from each registry to its `/probe?debug=true` view, and the recent results with
//! repeats collapsed. It reads results only through `App::current`, `Store::latest` and
//! `Store::history`; it does not route (`server` does), run checks or touch metrics.
//!
//! Everything that comes from configuration or from a registry (names, messages, URLs) is
//! HTML-escaped on the way out. No JavaScript.
//!
//! Built for thousands of registries: one pass over the results into compact rows (the
//! store's latest results carry no request trail or evidence; the history, whole but
//! bounded by `history_size`, is collapsed into runs), no sort (a row goes into
//! the bucket of its status, in configuration order), one output buffer written in place,
//! and at most [`ROW_CAP`] rows of latest results unless `?all=true`. Trouble comes first,
//! so the cap cuts passing rows first, and a note says what it cut.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use html_escape::{
    encode_double_quoted_attribute_to_string as attr_to, encode_text_to_string as text_to,
};

use crate::app::App;
use crate::outcome::{CheckKind, CheckResult, Diagnosis, Reason, Status};
use crate::report;

/// Rows of latest results shown without `?all=true`: a page a browser lays out at once and a
/// person can still scroll; past that nobody reads it, and `/metrics` has every result.
/// Measured (`bench_driver page`, release build, a tenth of the registries failing all but
/// one check): 1,000 registries × 6 checks render in 12.5 ms as 484 KiB capped, 21 ms and
/// 1.9 MiB with `?all=true`; 5,000 × 6 in 88 ms as 611 KiB capped, 130 ms and 9.2 MiB all.
pub const ROW_CAP: usize = 1000;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{margin:0 0 .2em}h1 small{font-size:.5em;color:#666;font-weight:normal}\
#summary{font-size:1.2em;margin:.3em 0}\
table{border-collapse:collapse}td,th{padding:4px 8px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}\
.s{color:#fff;padding:2px 6px;border-radius:3px}\
.pass{background:#2e7d32}.info{background:#1565c0}.warn{background:#f9a825}.fail{background:#c62828}.skip{background:#757575}\
tr.fail td:first-child{border-left:4px solid #c62828}tr.warn td:first-child{border-left:4px solid #f9a825}\
b.fail{color:#c62828}b.warn{color:#b07800}\
.why{margin-top:.3em;color:#444}ol{margin:.2em 0;padding-left:1.5em}.note{color:#666}";

/// Renders the page. `query` is the request's query (`all=true` lifts [`ROW_CAP`]);
/// `telemetry_path` is where the metrics are served; `now` is what times are relative to.
pub fn render(app: &App, query: &str, telemetry_path: &str, now: SystemTime) -> String {
    let all = url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "all" && matches!(v.as_ref(), "true" | "1"));
    let generation = app.current();
    let mut latest = Latest::default();
    for rt in &generation.targets {
        latest.add(
            &rt.target.name,
            app.store
                .latest(&rt.target.name, &generation.config.runbook_base_url),
        );
    }
    let history = app.store.history();
    let groups = collapse(&history);

    // About 300 bytes a row; reserved once, so the buffer is rarely grown.
    let rows = latest.len().min(if all { usize::MAX } else { ROW_CAP });
    let mut out = String::with_capacity(4096 + 300 * (rows + groups.len()));
    head(&mut out, &latest.summary);
    out.push_str("<body><header><h1>OCI registry exporter <small>");
    let _ = write!(
        out,
        "{} · revision {}",
        env!("CARGO_PKG_VERSION"),
        env!("ORE_BUILD_REVISION")
    );
    out.push_str("</small></h1>");
    latest.summary.write_line(&mut out);
    let shard = generation.config.shard;
    if shard.is_sharded() {
        let _ = write!(
            out,
            "<p id=\"shard\">Shard {} of {} (<code>--shard</code>, <code>--total-shards</code>): \
             this replica checks {} of the {} configured registries; the other shards check the \
             rest. <code>/probe</code> answers for every registry.</p>",
            shard.index(),
            shard.total(),
            generation.targets.len(),
            generation.config.registries.len()
        );
    }
    out.push_str("<nav><a href=\"");
    attr_to(telemetry_path, &mut out);
    out.push_str(
        "\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></nav></header>\
         <h2>Latest results</h2><p class=\"note\">Failing and warning rows first. A registry's name \
         runs its checks now and shows every request they make (the debug view).</p>\
         <table><tr><th>Registry</th><th>Check</th><th>Status</th><th>Reason</th><th>HTTP</th>\
         <th>Last run</th><th>Message</th></tr>",
    );
    for line in latest.lines().take(rows) {
        line.write(&mut out, now);
    }
    out.push_str("</table>");
    if rows < latest.len() {
        latest.write_cap_note(&mut out, rows, telemetry_path);
    }
    write_implementations(&mut out, app, &generation);
    write_history(&mut out, &groups, now);
    out.push_str("</body></html>\n");
    out
}

/// Which product each registry runs, and what in its answers says so: the fixes above are
/// worded for it.
fn write_implementations(out: &mut String, app: &App, generation: &crate::app::Generation) {
    let mut first = true;
    for rt in &generation.targets {
        let Some(seen) = app.store.implementation(&rt.target.name) else {
            continue;
        };
        if first {
            out.push_str(
                "<h2>Implementations</h2><p class=\"note\">Recognised from the registries' answers; \
                 the fixes are worded for the product, the verdicts do not depend on it.</p><ul id=\"implementations\">",
            );
            first = false;
        }
        out.push_str("<li>");
        text_to(&rt.target.name, out);
        out.push_str(": ");
        text_to(crate::implementation::describe(&seen), out);
        out.push_str("</li>");
    }
    if !first {
        out.push_str("</ul>");
    }
}

/// How many registries are in each state: a registry is failing when any of its checks
/// fails, warning when one warns and none fails, ok otherwise (pass, info, skip).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Summary {
    registries: usize,
    failing: usize,
    warning: usize,
    ok: usize,
    waiting: usize,
}

impl Summary {
    fn write_line(&self, out: &mut String) {
        let _ = write!(
            out,
            "<p id=\"summary\">{} registr{}: ",
            self.registries,
            if self.registries == 1 { "y" } else { "ies" }
        );
        let part = |out: &mut String, n: usize, class: &str, words: &str| {
            if n > 0 {
                let _ = write!(out, "<b class=\"{class}\">{n} {words}</b>");
            } else {
                let _ = write!(out, "0 {words}");
            }
        };
        part(out, self.failing, "fail", "failing");
        out.push_str(", ");
        part(out, self.warning, "warn", "warning");
        let _ = write!(out, ", {} ok", self.ok);
        if self.waiting > 0 {
            let _ = write!(out, ", {} not checked yet", self.waiting);
        }
        out.push_str("</p>");
    }
}

fn head(out: &mut String, summary: &Summary) {
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    // The tab's title leads with trouble, so a pinned tab shows it.
    out.push_str("<title>");
    match (summary.failing, summary.warning) {
        (0, 0) => {}
        (f, 0) => {
            let _ = write!(out, "{f} failing · ");
        }
        (0, w) => {
            let _ = write!(out, "{w} warning · ");
        }
        (f, w) => {
            let _ = write!(out, "{f} failing, {w} warning · ");
        }
    }
    out.push_str("OCI registry exporter</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head>");
}

/// What the page shows of one latest result; the rest of the result is dropped.
struct Row<'a> {
    registry: &'a str,
    check: CheckKind,
    status: Status,
    reason: Reason,
    http_status: Option<u16>,
    finished_at: SystemTime,
    message: String,
    diagnosis: Option<Diagnosis>,
    runbook_url: String,
    /// The check of the same registry whose failure explains this one.
    consequence_of: Option<CheckKind>,
}

/// A line of the latest-results table: a result, or a registry without one yet.
enum Line<'a> {
    Result(Row<'a>),
    Waiting(&'a str),
}

/// The latest results in three buckets, each in configuration order: failing rows,
/// warning rows, and the rest (pass, info, skip, and registries not checked yet).
#[derive(Default)]
struct Latest<'a> {
    fail: Vec<Line<'a>>,
    warn: Vec<Line<'a>>,
    rest: Vec<Line<'a>>,
    summary: Summary,
}

impl<'a> Latest<'a> {
    fn add(&mut self, registry: &'a str, results: Vec<CheckResult>) {
        self.summary.registries += 1;
        if results.is_empty() {
            self.summary.waiting += 1;
            self.rest.push(Line::Waiting(registry));
            return;
        }
        if results.iter().any(|r| r.status == Status::Fail) {
            self.summary.failing += 1;
        } else if results.iter().any(|r| r.status == Status::Warn) {
            self.summary.warning += 1;
        } else {
            self.summary.ok += 1;
        }
        let roots: Vec<Option<CheckKind>> = results
            .iter()
            .map(|r| report::root_cause(r, &results))
            .collect();
        for (r, consequence_of) in results.into_iter().zip(roots) {
            let bucket = match r.status {
                Status::Fail => &mut self.fail,
                Status::Warn => &mut self.warn,
                Status::Pass | Status::Info | Status::Skip => &mut self.rest,
            };
            bucket.push(Line::Result(Row {
                registry,
                check: r.check,
                status: r.status,
                reason: r.reason,
                http_status: r.http_status,
                finished_at: r.finished_at,
                message: r.message,
                diagnosis: r.diagnosis,
                runbook_url: r.runbook_url,
                consequence_of,
            }));
        }
    }

    fn len(&self) -> usize {
        self.fail.len() + self.warn.len() + self.rest.len()
    }

    fn lines(&self) -> impl Iterator<Item = &Line<'a>> {
        self.fail.iter().chain(&self.warn).chain(&self.rest)
    }

    /// Says how many rows of each kind the cap left out (the first `shown` are shown).
    fn write_cap_note(&self, out: &mut String, shown: usize, telemetry_path: &str) {
        let hidden = |before: usize, len: usize| len.saturating_sub(shown.saturating_sub(before));
        let fail = hidden(0, self.fail.len());
        let warn = hidden(self.fail.len(), self.warn.len());
        let rest = hidden(self.fail.len() + self.warn.len(), self.rest.len());
        let _ = write!(
            out,
            "<p class=\"note\" id=\"cap\">Showing {shown} of {} rows: {} more not shown \
             ({fail} failing, {warn} warning, {rest} other). <a href=\"/?all=true\">Show every row</a>, \
             or query <a href=\"",
            self.len(),
            fail + warn + rest,
        );
        attr_to(telemetry_path, out);
        out.push_str("\">the metrics</a>.</p>");
    }
}

impl Line<'_> {
    fn write(&self, out: &mut String, now: SystemTime) {
        let row = match self {
            Line::Waiting(registry) => {
                out.push_str("<tr><td>");
                registry_link(out, registry);
                out.push_str("</td><td colspan=\"6\">no result yet</td></tr>");
                return;
            }
            Line::Result(row) => row,
        };
        let status = row.status.as_str();
        let _ = write!(out, "<tr class=\"{status}\"><td>");
        registry_link(out, row.registry);
        let _ = write!(
            out,
            "</td><td>{}</td><td><span class=\"s {status}\">{status}</span></td><td>{}</td><td>",
            row.check.short_name(),
            row.reason.as_str(),
        );
        match row.http_status {
            Some(code) => {
                let _ = write!(out, "{code}");
            }
            None => out.push('–'),
        }
        out.push_str("</td><td>");
        write_time(out, row.finished_at, now);
        out.push_str("</td><td>");
        text_to(&row.message, out);
        if let Some(root) = row.consequence_of {
            let _ = write!(
                out,
                "<div class=\"why\">follows from this registry's <b>{}</b> failure: fix that first</div>",
                root.short_name()
            );
        } else if let Some(d) = &row.diagnosis {
            out.push_str("<div class=\"why\">likely cause: ");
            text_to(d.cause, out);
            out.push_str("</div>");
            if !d.fix.is_empty() {
                out.push_str("<ol class=\"fix\">");
                for step in d.fix {
                    out.push_str("<li>");
                    text_to(step, out);
                    out.push_str("</li>");
                }
                out.push_str("</ol>");
            }
            if !row.runbook_url.is_empty() {
                out.push_str("<a href=\"");
                attr_to(&row.runbook_url, out);
                out.push_str("\">runbook</a>");
            }
        }
        out.push_str("</td></tr>");
    }
}

/// The registry's name, linked to its debug view (`/probe?target=NAME&debug=true`).
fn registry_link(out: &mut String, registry: &str) {
    out.push_str("<a href=\"/probe?target=");
    for part in url::form_urlencoded::byte_serialize(registry.as_bytes()) {
        // Form encoding leaves only [A-Za-z0-9*-._+%]: nothing an attribute must escape.
        out.push_str(part);
    }
    out.push_str("&amp;debug=true\">");
    text_to(registry, out);
    out.push_str("</a>");
}

/// `12 s ago`, with the absolute time (RFC 3339, UTC) as `datetime` and `title`.
fn write_time(out: &mut String, at: SystemTime, now: SystemTime) {
    let stamp = report::rfc3339(at);
    let _ = write!(out, "<time datetime=\"{stamp}\" title=\"{stamp}\">");
    write_ago(out, now.duration_since(at).unwrap_or_default());
    out.push_str("</time>");
}

/// How long ago, in the largest whole unit: `just now`, `12 s ago`, `3 min ago`, `5 h ago`,
/// `2 d ago`.
fn write_ago(out: &mut String, elapsed: Duration) {
    if elapsed.as_secs() == 0 {
        out.push_str("just now");
    } else {
        write_span(out, elapsed);
        out.push_str(" ago");
    }
}

/// A span of time in the largest whole unit: `12 s`, `4 min`, `5 h`, `2 d` (`under 1 s`
/// when shorter).
fn write_span(out: &mut String, span: Duration) {
    let s = span.as_secs();
    let _ = match s {
        0 => write!(out, "under 1 s"),
        1..60 => write!(out, "{s} s"),
        60..3600 => write!(out, "{} min", s / 60),
        3600..86400 => write!(out, "{} h", s / 3600),
        _ => write!(out, "{} d", s / 86400),
    };
}

/// A run of identical results of one registry × check in the history: same status and
/// reason, one after the other in that series. Shown once, with its count and time span.
#[derive(Debug)]
struct Group<'a> {
    /// The newest entry of the run: its id (for `/result?id=`), registry and result.
    id: u64,
    registry: &'a str,
    newest: &'a CheckResult,
    count: usize,
    /// When the oldest entry of the run finished.
    oldest_at: SystemTime,
}

/// Collapses the history (newest first, as `Store::history` gives it) into runs: an entry
/// joins the run its series (registry × check) is in when status and reason are the same,
/// however many entries of other series lie between; otherwise it starts a new run. The
/// runs come in the order of their newest entry.
fn collapse(history: &[(u64, String, CheckResult)]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    // The run each series is in, as far as the walk has gone (its oldest end so far).
    let mut open: HashMap<(&str, CheckKind), usize> = HashMap::new();
    for (id, registry, r) in history {
        let key = (registry.as_str(), r.check);
        if let Some(&i) = open.get(&key) {
            let run = &mut groups[i];
            if run.newest.status == r.status && run.newest.reason == r.reason {
                run.count += 1;
                run.oldest_at = r.finished_at;
                continue;
            }
        }
        open.insert(key, groups.len());
        groups.push(Group {
            id: *id,
            registry,
            newest: r,
            count: 1,
            oldest_at: r.finished_at,
        });
    }
    groups
}

fn write_history(out: &mut String, groups: &[Group<'_>], now: SystemTime) {
    out.push_str(
        "<h2>Recent results</h2><p class=\"note\">Newest first. Repeats (the same registry, \
         check, status and reason one after the other) are shown once, with their count and time \
         span. Failures are kept longer than other results, so older stretches may show only \
         failures. The time links to the result's requests and evidence.</p>\
         <table><tr><th>When</th><th>Registry</th><th>Check</th><th>Status</th><th>Reason</th>\
         <th>Repeats</th><th>Message</th></tr>",
    );
    for g in groups {
        let r = g.newest;
        let status = r.status.as_str();
        let _ = write!(
            out,
            "<tr class=\"{status}\"><td><a href=\"/result?id={}\">",
            g.id
        );
        write_time(out, r.finished_at, now);
        out.push_str("</a></td><td>");
        text_to(g.registry, out);
        let _ = write!(
            out,
            "</td><td>{}</td><td><span class=\"s {status}\">{status}</span></td><td>{}</td><td>",
            r.check.short_name(),
            r.reason.as_str(),
        );
        if g.count > 1 {
            let from = report::rfc3339(g.oldest_at);
            let to = report::rfc3339(r.finished_at);
            let _ = write!(
                out,
                "<span class=\"repeats\" title=\"from {from} to {to}\">×{} over ",
                g.count
            );
            write_span(
                out,
                r.finished_at
                    .duration_since(g.oldest_at)
                    .unwrap_or_default(),
            );
            out.push_str("</span>");
        }
        out.push_str("</td><td>");
        text_to(&r.message, out);
        out.push_str("</td></tr>");
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn result(check: CheckKind, status: Status, reason: Reason, at: u64) -> CheckResult {
        let mut r = CheckResult::new(check, status, reason, "m");
        r.finished_at = UNIX_EPOCH + Duration::from_secs(at);
        r
    }

    /// A history, newest first, as `Store::history` gives it.
    fn history(entries: &[(&str, CheckKind, Status, u64)]) -> Vec<(u64, String, CheckResult)> {
        let n = entries.len() as u64;
        entries
            .iter()
            .enumerate()
            .map(|(i, (reg, check, status, at))| {
                let reason = if *status == Status::Pass {
                    Reason::Ok
                } else {
                    Reason::Timeout
                };
                (
                    n - i as u64,
                    reg.to_string(),
                    result(*check, *status, reason, *at),
                )
            })
            .collect()
    }

    #[test]
    fn runs_collapse_within_a_series_across_other_series() {
        use CheckKind::{Pull, Registry};
        use Status::{Fail, Pass};
        let h = history(&[
            ("a", Pull, Pass, 50),
            ("a", Registry, Pass, 49),
            ("a", Pull, Pass, 40),
            ("b", Pull, Pass, 39),
            ("a", Pull, Fail, 30),
            ("a", Pull, Fail, 20),
            ("a", Registry, Pass, 19),
            ("a", Pull, Pass, 10),
        ]);
        let got: Vec<(u64, &str, CheckKind, Status, usize, u64)> = collapse(&h)
            .iter()
            .map(|g| {
                let oldest = g.oldest_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
                (
                    g.id,
                    g.registry,
                    g.newest.check,
                    g.newest.status,
                    g.count,
                    oldest,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (8, "a", Pull, Pass, 2, 40),
                (7, "a", Registry, Pass, 2, 19),
                (5, "b", Pull, Pass, 1, 39),
                (4, "a", Pull, Fail, 2, 20),
                (1, "a", Pull, Pass, 1, 10),
            ]
        );
    }

    #[test]
    fn another_reason_starts_a_new_run() {
        let h = vec![
            (
                2,
                "a".to_string(),
                result(CheckKind::Pull, Status::Fail, Reason::Timeout, 2),
            ),
            (
                1,
                "a".to_string(),
                result(CheckKind::Pull, Status::Fail, Reason::Dns, 1),
            ),
        ];
        assert_eq!(collapse(&h).len(), 2);
    }

    #[test]
    fn times_read_in_their_largest_unit() {
        let ago = |s: u64| {
            let mut out = String::new();
            write_ago(&mut out, Duration::from_secs(s));
            out
        };
        assert_eq!(
            [0, 12, 59, 60, 3599, 3600, 86399, 86400 * 3].map(ago),
            [
                "just now",
                "12 s ago",
                "59 s ago",
                "1 min ago",
                "59 min ago",
                "1 h ago",
                "23 h ago",
                "3 d ago"
            ]
        );
        let mut out = String::new();
        // A result from the future (the clock stepped back) reads as now, not a panic.
        write_time(&mut out, UNIX_EPOCH + Duration::from_secs(100), UNIX_EPOCH);
        assert_eq!(
            out,
            "<time datetime=\"1970-01-01T00:01:40Z\" title=\"1970-01-01T00:01:40Z\">just now</time>"
        );
    }

    /// The cap cuts from the end of the trouble-first order, and the note counts what it cut
    /// by kind.
    #[test]
    fn the_cap_note_counts_the_rows_it_cut() {
        let mut latest = Latest::default();
        let results = |status: Status, n: usize| -> Vec<CheckResult> {
            CheckKind::ALL[..n]
                .iter()
                .map(|c| result(*c, status, Reason::Ok, 0))
                .collect()
        };
        latest.add("passing", results(Status::Pass, 4));
        latest.add("failing", results(Status::Fail, 3));
        latest.add("warning", results(Status::Warn, 2));
        latest.add("new", Vec::new());
        assert_eq!(
            latest.summary,
            Summary {
                registries: 4,
                failing: 1,
                warning: 1,
                ok: 1,
                waiting: 1
            }
        );
        let order: Vec<&str> = latest
            .lines()
            .map(|l| match l {
                Line::Result(r) => r.registry,
                Line::Waiting(r) => r,
            })
            .collect();
        assert_eq!(
            order,
            [
                "failing", "failing", "failing", "warning", "warning", "passing", "passing",
                "passing", "passing", "new"
            ]
        );
        let note = |shown: usize| {
            let mut out = String::new();
            latest.write_cap_note(&mut out, shown, "/m");
            out
        };
        assert!(
            note(4)
                .contains("Showing 4 of 10 rows: 6 more not shown (0 failing, 1 warning, 5 other)"),
            "{}",
            note(4)
        );
        assert!(
            note(2)
                .contains("Showing 2 of 10 rows: 8 more not shown (1 failing, 2 warning, 5 other)"),
            "{}",
            note(2)
        );
    }
}
