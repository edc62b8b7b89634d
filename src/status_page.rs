//! The `/` status page: what a person who opens the exporter in a browser sees first.
//!
//! Owns the page's HTML: a header with the exporter's version and a one-line summary
//! (registries failing, warning, ok; with sharding, which shard this replica is and how many
//! of the configured registries it checks), then one row per registry — failing registries
//! first, then warning ones, then the rest — with its state as a badge and a coloured stripe,
//! its checks as badges (worst first), and below them the details of every check that did not
//! pass (root causes before their consequences): message, likely cause, fix (the registry's
//! URL filled in, `report::fill_in`) and runbook, or
//! the check whose failure explains it. Relative times carry the absolute time in a `title`;
//! each registry links to its `/probe?debug=true` view; the recent results follow with
//! repeats collapsed. It reads results only through `App::current`, `Store::latest` and
//! `Store::history`; it does not route (`server` does), run checks or touch metrics.
//!
//! Legible at 3 a.m.: all text is dark on a white or lightly tinted background, and a status
//! is never told by text colour alone but by a badge (white on a dark colour) and the row's
//! stripe; every text/background pair is at least 4.5:1 (WCAG AA), which
//! `tests/suite/status_page.rs` measures in a real browser (headless Chromium).
//!
//! Everything that comes from configuration or from a registry (names, messages, URLs) is
//! HTML-escaped on the way out. No JavaScript.
//!
//! Built for thousands of registries: one pass over the results into compact rows (the
//! store's latest results carry no request trail or evidence; the history, whole but
//! bounded by `history_size`, is collapsed into runs), no global sort (a registry goes into
//! the bucket of its worst status, in configuration order), one output buffer written in
//! place, and at most [`ROW_CAP`] registries unless `?all=true`. Trouble comes first, so the
//! cap cuts passing registries first, and a note says what it cut.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use html_escape::{
    encode_double_quoted_attribute_to_string as attr_to, encode_text_to_string as text_to,
};

use crate::app::App;
use crate::outcome::{CheckKind, CheckResult, Diagnosis, Reason, Status};
use crate::report;

/// Registries shown without `?all=true`: a page a browser lays out at once and a person can
/// still scroll; past that nobody reads it, and `/metrics` has every result. Measured on the
/// earlier one-row-per-check layout (`bench_driver page`, release build, a tenth of the
/// registries failing all but one check): 1,000 registries × 6 checks rendered in 12.5 ms;
/// one row per registry writes less.
pub const ROW_CAP: usize = 1000;

/// Colours (foreground on background, WCAG contrast): body text #1f1f1f on white 16:1;
/// muted #555 on white 7.5:1; links #0645ad on white 7.9:1 and on the tints ≥ 7:1; badges
/// white on #2e7d32 5.1:1, #1565c0 5.8:1, #b45309 5.0:1, #c62828 5.6:1, #616161 6.2:1;
/// the summary's counts #b71c1c 6.6:1 and #8a4b00 6.8:1 on white. Tints #fff4f4 and #fffaf0
/// hold the same text at ≥ 4.5:1. Class names are specific (`.b.fail`, `tr.fail`,
/// `.n.fail`) so no rule colours an element it was not meant for.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f1f1f;background:#fff}\
a{color:#0645ad}\
h1{margin:0 0 .2em}h1 small{font-size:.5em;color:#555;font-weight:normal}\
#summary{font-size:1.2em;margin:.3em 0}.n{font-weight:bold}.n.fail{color:#b71c1c}.n.warn{color:#8a4b00}\
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}\
.b{display:inline-block;color:#fff;background:#616161;padding:1px 6px;margin:1px 2px 1px 0;border-radius:3px;font-size:.9em;white-space:nowrap}\
.b.pass{background:#2e7d32}.b.info{background:#1565c0}.b.warn{background:#b45309}.b.fail{background:#c62828}.b.skip,.b.wait{background:#616161}\
tr.reg>td:first-child{border-left:6px solid #9e9e9e}tr.reg.fail>td:first-child{border-left-color:#c62828}\
tr.reg.warn>td:first-child{border-left-color:#b45309}tr.reg.ok>td:first-child{border-left-color:#2e7d32}\
tr.reg.fail{background:#fff4f4}tr.reg.warn{background:#fffaf0}\
.d{margin:.4em 0 .2em;padding-top:.3em;border-top:1px dotted #ccc}.d .msg{color:#1f1f1f}\
.why{margin-top:.2em;color:#333}ol{margin:.2em 0;padding-left:1.5em}.note{color:#555}td.t{white-space:nowrap}";

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
            Some(&rt.target.url),
            app.store
                .latest(&rt.target.name, &generation.config.runbook_base_url),
        );
    }
    let history = app.store.history();
    let groups = collapse(&history);

    // About 300 bytes a check; reserved once, so the buffer is rarely grown.
    let rows = latest.len().min(if all { usize::MAX } else { ROW_CAP });
    let mut out = String::with_capacity(4096 + 300 * (rows * 3 + groups.len()));
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
         <h2>Latest results</h2><p class=\"note\">One row per registry, failing and warning \
         registries first; each check is a badge, and every check that did not pass is explained \
         below them. A registry's name runs its checks now and shows every request they make \
         (the debug view).</p>\
         <table id=\"latest\"><tr><th>State</th><th>Registry</th><th>Checks</th><th>Last run</th></tr>",
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
                let _ = write!(out, "<span class=\"n {class}\">{n} {words}</span>");
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
struct Row {
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

/// The order of trouble: fail, warn, info, skip, pass.
fn rank(status: Status) -> u8 {
    match status {
        Status::Fail => 0,
        Status::Warn => 1,
        Status::Info => 2,
        Status::Skip => 3,
        Status::Pass => 4,
    }
}

/// A line of the latest-results table: a registry and its results (worst first), or a
/// registry without one yet.
enum Line<'a> {
    /// The registry's name, its URL (to fill in fix steps), its results.
    Registry(&'a str, Option<&'a url::Url>, Vec<Row>),
    Waiting(&'a str),
}

/// The registries in three buckets, each in configuration order: failing, warning, and the
/// rest (pass, info, skip, and registries not checked yet).
#[derive(Default)]
struct Latest<'a> {
    fail: Vec<Line<'a>>,
    warn: Vec<Line<'a>>,
    rest: Vec<Line<'a>>,
    summary: Summary,
}

impl<'a> Latest<'a> {
    fn add(&mut self, registry: &'a str, url: Option<&'a url::Url>, results: Vec<CheckResult>) {
        self.summary.registries += 1;
        if results.is_empty() {
            self.summary.waiting += 1;
            self.rest.push(Line::Waiting(registry));
            return;
        }
        let roots: Vec<Option<CheckKind>> = results
            .iter()
            .map(|r| report::root_cause(r, &results))
            .collect();
        // Into a vector of its own: `collect` would reuse the results' allocation, five
        // times a row's size, and keep it for as long as the page is written (1.5 MB of the
        // page's 2.5 MB at 1,000 registries, by heaptrack).
        let mut rows: Vec<Row> = Vec::with_capacity(results.len());
        rows.extend(results.into_iter().zip(roots).map(|(r, consequence_of)| {
            // A passing check is a badge only (`Row::write_details` is for the others), so
            // its texts are not kept while the page is written.
            let details = r.status != Status::Pass;
            Row {
                check: r.check,
                status: r.status,
                reason: r.reason,
                http_status: r.http_status,
                finished_at: r.finished_at,
                message: if details { r.message } else { String::new() },
                diagnosis: r.diagnosis.filter(|_| details),
                runbook_url: if details {
                    r.runbook_url
                } else {
                    String::new()
                },
                consequence_of,
            }
        }));
        // Worst first; among equals, root causes before their consequences (stable, so
        // otherwise in the configured order). A registry has a handful of checks.
        rows.sort_by_key(|r| (rank(r.status), r.consequence_of.is_some()));
        let bucket = match rows[0].status {
            Status::Fail => {
                self.summary.failing += 1;
                &mut self.fail
            }
            Status::Warn => {
                self.summary.warning += 1;
                &mut self.warn
            }
            Status::Pass | Status::Info | Status::Skip => {
                self.summary.ok += 1;
                &mut self.rest
            }
        };
        bucket.push(Line::Registry(registry, url, rows));
    }

    fn len(&self) -> usize {
        self.fail.len() + self.warn.len() + self.rest.len()
    }

    fn lines(&self) -> impl Iterator<Item = &Line<'a>> {
        self.fail.iter().chain(&self.warn).chain(&self.rest)
    }

    /// Says how many registries of each kind the cap left out (the first `shown` are shown).
    fn write_cap_note(&self, out: &mut String, shown: usize, telemetry_path: &str) {
        let hidden = |before: usize, len: usize| len.saturating_sub(shown.saturating_sub(before));
        let fail = hidden(0, self.fail.len());
        let warn = hidden(self.fail.len(), self.warn.len());
        let rest = hidden(self.fail.len() + self.warn.len(), self.rest.len());
        let _ = write!(
            out,
            "<p class=\"note\" id=\"cap\">Showing {shown} of {} registries: {} more not shown \
             ({fail} failing, {warn} warning, {rest} other). <a href=\"/?all=true\">Show every registry</a>, \
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
        let (registry, url, rows) = match self {
            Line::Waiting(registry) => {
                out.push_str(
                    "<tr class=\"reg wait\"><td><span class=\"b wait\">waiting</span></td><td>",
                );
                registry_link(out, registry);
                out.push_str("</td><td colspan=\"2\">no result yet</td></tr>");
                return;
            }
            Line::Registry(registry, url, rows) => (registry, *url, rows),
        };
        let (state, word) = match rows[0].status {
            Status::Fail => ("fail", "failing"),
            Status::Warn => ("warn", "warning"),
            Status::Pass | Status::Info | Status::Skip => ("ok", "ok"),
        };
        let badge = if state == "ok" { "pass" } else { state };
        let _ = write!(
            out,
            "<tr class=\"reg {state}\"><td><span class=\"b {badge}\">{word}</span></td><td>"
        );
        registry_link(out, registry);
        out.push_str("</td><td>");
        for row in rows {
            let status = row.status.as_str();
            let _ = write!(
                out,
                "<span class=\"b {status}\" title=\"{status}: {}\">{}: {status}</span>",
                row.reason.as_str(),
                row.check.short_name(),
            );
        }
        for row in rows.iter().filter(|r| r.status != Status::Pass) {
            row.write_details(out, url);
        }
        out.push_str("</td><td class=\"t\">");
        // The oldest of its latest results: a check that stopped running shows here.
        let oldest = rows.iter().map(|r| r.finished_at).min().unwrap_or(now);
        write_time(out, oldest, now);
        out.push_str("</td></tr>");
    }
}

impl Row {
    /// A check that did not pass: what it said, and why and what to do (or the check whose
    /// failure explains it).
    fn write_details(&self, out: &mut String, url: Option<&url::Url>) {
        let status = self.status.as_str();
        let _ = write!(
            out,
            "<div class=\"d {status}\"><b>{}</b> {status}, {}",
            self.check.short_name(),
            self.reason.as_str(),
        );
        if let Some(code) = self.http_status {
            let _ = write!(out, ", HTTP {code}");
        }
        out.push_str(": <span class=\"msg\">");
        text_to(&self.message, out);
        out.push_str("</span>");
        if let Some(root) = self.consequence_of {
            let _ = write!(
                out,
                "<div class=\"why\">follows from this registry's <b>{}</b> failure: fix that first</div>",
                root.short_name()
            );
        } else if let Some(d) = &self.diagnosis {
            out.push_str("<div class=\"why\">likely cause: ");
            text_to(d.cause, out);
            out.push_str("</div>");
            if !d.fix.is_empty() {
                out.push_str("<ol class=\"fix\">");
                for step in d.fix {
                    out.push_str("<li>");
                    text_to(report::fill_in(step, url), out);
                    out.push_str("</li>");
                }
                out.push_str("</ol>");
            }
            if !self.runbook_url.is_empty() {
                out.push_str("<a class=\"runbook\" href=\"");
                attr_to(&self.runbook_url, out);
                out.push_str("\">runbook</a>");
            }
        }
        out.push_str("</div>");
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
            "</td><td>{}</td><td><span class=\"b {status}\">{status}</span></td><td>{}</td><td>",
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

    /// The cap cuts registries from the end of the trouble-first order, and the note counts
    /// what it cut by kind; within a registry the worst check comes first.
    #[test]
    fn the_cap_note_counts_the_registries_it_cut() {
        let mut latest = Latest::default();
        let results = |status: Status, n: usize| -> Vec<CheckResult> {
            CheckKind::ALL[..n]
                .iter()
                .map(|c| result(*c, status, Reason::Ok, 0))
                .collect()
        };
        latest.add("passing", None, results(Status::Pass, 4));
        latest.add("failing", None, results(Status::Fail, 3));
        latest.add("warning", None, results(Status::Warn, 2));
        let mixed = vec![
            result(CheckKind::Registry, Status::Pass, Reason::Ok, 0),
            result(CheckKind::Credentials, Status::Info, Reason::Ok, 0),
            result(CheckKind::Pull, Status::Warn, Reason::Ok, 0),
            result(CheckKind::Push, Status::Fail, Reason::Ok, 0),
        ];
        latest.add("mixed", None, mixed);
        latest.add("new", None, Vec::new());
        assert_eq!(
            latest.summary,
            Summary {
                registries: 5,
                failing: 2,
                warning: 1,
                ok: 1,
                waiting: 1
            }
        );
        let order: Vec<&str> = latest
            .lines()
            .map(|l| match l {
                Line::Registry(r, _, _) | Line::Waiting(r) => *r,
            })
            .collect();
        assert_eq!(order, ["failing", "mixed", "warning", "passing", "new"]);
        let Some(Line::Registry("mixed", _, rows)) = latest.lines().nth(1) else {
            panic!("mixed is second");
        };
        let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [Status::Fail, Status::Warn, Status::Info, Status::Pass]
        );
        let note = |shown: usize| {
            let mut out = String::new();
            latest.write_cap_note(&mut out, shown, "/m");
            out
        };
        assert!(
            note(1).contains(
                "Showing 1 of 5 registries: 4 more not shown (1 failing, 1 warning, 2 other)"
            ),
            "{}",
            note(1)
        );
        assert!(
            note(3).contains(
                "Showing 3 of 5 registries: 2 more not shown (0 failing, 0 warning, 2 other)"
            ),
            "{}",
            note(3)
        );
    }

    /// What the page holds per registry while it is written: a row's own size, no more, and
    /// the texts only of checks that did not pass (a passing one is a badge). At 1,000
    /// registries the page raised the exporter's peak by 2.5 MiB when each registry's rows
    /// kept its results' allocation.
    #[test]
    fn a_registry_line_holds_its_rows_and_only_the_texts_it_shows() {
        let mut latest = Latest::default();
        let mut failing = result(CheckKind::Pull, Status::Fail, Reason::Timeout, 0);
        failing.runbook_url = "https://runbooks.example/pull".into();
        let mut passing = result(CheckKind::Registry, Status::Pass, Reason::Ok, 0);
        passing.runbook_url = "https://runbooks.example/registry".into();
        latest.add("r", None, vec![passing, failing]);
        let Some(Line::Registry("r", _, rows)) = latest.lines().next() else {
            panic!("r has results");
        };
        assert_eq!(rows.capacity(), rows.len());
        let (fail, pass) = (&rows[0], &rows[1]);
        assert_eq!((fail.status, pass.status), (Status::Fail, Status::Pass));
        assert_eq!(fail.message, "m");
        assert_eq!(fail.runbook_url, "https://runbooks.example/pull");
        assert!(pass.message.is_empty() && pass.runbook_url.is_empty());
        assert!(pass.diagnosis.is_none());
    }
}
