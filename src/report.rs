//! Results rendered for people and scripts: the debug text of `/probe?debug=true` and of
//! the status page's history, and the doctor CLI's text and JSON; and the root-cause rule
//! ([`root_cause`]) those and the `/` page share.
//!
//! Owns formats only. Everything it prints comes from `CheckResult`, whose fields hold no
//! secret (the request trail keeps paths and a list of harmless headers), so nothing here
//! needs redaction of its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::catalogue;
use crate::outcome::{CheckKind, CheckResult, Reason, Status};

/// The version of the doctor's JSON schema; bumped on any incompatible change. 2: `severity`
/// in the alerts' words (critical, warning, info; was fail, warn, info).
pub const JSON_SCHEMA_VERSION: u32 = 2;

/// A time as RFC 3339 to the second; a time before the epoch (a clock set that far back) is
/// shown as the epoch, since humantime's formatter panics on it.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(t.max(UNIX_EPOCH))
}

/// The debug text of one result: status, request trail, evidence, cause, fix, runbook.
pub fn result_debug(out: &mut String, registry: &str, r: &CheckResult) {
    result_debug_at(out, registry, None, r);
}

/// [`result_debug`], with the fix steps naming the registry's URL when it is known.
fn result_debug_at(out: &mut String, registry: &str, url: Option<&url::Url>, r: &CheckResult) {
    let _ = writeln!(
        out,
        "== {} ({}) on registry {:?}: {} / {}, HTTP {}, {} ms, at {}",
        r.check.id(),
        r.check.short_name(),
        registry,
        r.status.as_str(),
        r.reason.as_str(),
        r.http_status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into()),
        r.duration.as_millis(),
        rfc3339(r.finished_at)
    );
    let _ = writeln!(out, "   {}", r.message);
    if !r.requests.is_empty() {
        let _ = writeln!(out, "   requests:");
    }
    for q in &r.requests {
        let _ = writeln!(
            out,
            "     {} {} -> {} ({} ms, auth: {}){}",
            q.method,
            q.path,
            q.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no answer".into()),
            q.duration.as_millis(),
            serde_json::to_value(q.auth)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            q.note
                .as_ref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default()
        );
        for (name, value) in &q.headers {
            let _ = writeln!(out, "         {name}: {value}");
        }
    }
    if !r.evidence.is_empty() {
        let evidence: Vec<String> = r.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "   evidence: {}", evidence.join(" "));
    }
    if let Some(d) = &r.diagnosis {
        let _ = writeln!(out, "   likely cause: {}", d.cause);
        for (i, step) in d.fix.iter().enumerate() {
            let _ = writeln!(out, "   fix {}: {}", i + 1, fill_in(step, url));
        }
    }
    if !r.runbook_url.is_empty() {
        let _ = writeln!(out, "   runbook: {}", r.runbook_url);
    }
}

/// The whole `/probe?debug=true` answer: every result, then the metrics.
pub fn probe_debug(
    registry: &str,
    base_url: &str,
    results: &[CheckResult],
    metrics: &str,
) -> String {
    let mut out = format!("probe of registry {registry:?} at {base_url}\n\n");
    let url = url::Url::parse(base_url).ok();
    for r in results {
        result_debug_at(&mut out, registry, url.as_ref(), r);
        out.push('\n');
    }
    out.push_str("== metrics\n");
    out.push_str(metrics);
    out
}

/// Reasons that mean the registry could not be reached at all.
const UNREACHABLE: &[Reason] = &[
    Reason::ConnectionRefused,
    Reason::Dns,
    Reason::Tls,
    Reason::Timeout,
    Reason::ConnectionError,
];

/// Reasons that mean the configured credentials are the problem.
const CREDENTIALS: &[Reason] = &[
    Reason::InvalidCredentials,
    Reason::CredentialsExpired,
    Reason::Unauthorized,
    Reason::MissingPassword,
    Reason::SecretUnreadable,
    Reason::TokenEndpointUnreachable,
    Reason::TokenEndpointError,
    Reason::InsecureTokenRealm,
];

/// For each result, the check whose failure explains it (its root cause), if another
/// result of the same registry is that root: see [`root_cause`].
pub fn root_causes(results: &[(String, CheckResult)]) -> Vec<Option<CheckKind>> {
    results
        .iter()
        .map(|(registry, r)| {
            let siblings = results
                .iter()
                .filter(move |(reg, _)| reg == registry)
                .map(|(_, s)| s);
            root_cause(r, siblings)
        })
        .collect()
}

/// The check whose failure explains `r`, among `siblings` (the results of `r`'s registry,
/// `r` included or not): the registry check failing to reach `/v2/` explains every other
/// transport failure, and the credentials check rejecting the credentials explains every
/// other authentication failure. A root is never its own consequence.
pub fn root_cause<'a, I>(r: &CheckResult, siblings: I) -> Option<CheckKind>
where
    I: IntoIterator<Item = &'a CheckResult> + Clone,
{
    let root_of = |kind: CheckKind, reasons: &[Reason]| {
        siblings
            .clone()
            .into_iter()
            .any(|s| s.check == kind && s.status == Status::Fail && reasons.contains(&s.reason))
    };
    if matches!(r.status, Status::Pass | Status::Skip) {
        return None;
    }
    // Decided in the round itself (`checks::follow_root_causes`), so metrics, the `/`
    // page and the doctor agree.
    if r.consequence_of.is_some() {
        return r.consequence_of;
    }
    if r.check != CheckKind::Registry
        && UNREACHABLE.contains(&r.reason)
        && root_of(CheckKind::Registry, UNREACHABLE)
    {
        return Some(CheckKind::Registry);
    }
    if r.check != CheckKind::Credentials
        && CREDENTIALS.contains(&r.reason)
        && root_of(CheckKind::Credentials, CREDENTIALS)
    {
        return Some(CheckKind::Credentials);
    }
    None
}

/// The registries' URLs by name, for the doctor's reports (the results carry names only).
pub type Urls = HashMap<String, url::Url>;

/// A fix step with what is known filled in, so it can be pasted as it is: `<url>` is the
/// registry's URL (no trailing slash), `<registry>` its host and port as `docker login`
/// takes them, `<host>` and `<port>` the parts (the port the scheme's when none is written).
/// Other placeholders (a credential helper's `<name>`, a process' `<pid>`) stay: nothing
/// here knows them.
pub fn fill_in(step: &str, url: Option<&url::Url>) -> String {
    let Some(url) = url else {
        return step.to_string();
    };
    let host = url.host_str().unwrap_or_default();
    let registry = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let port = url
        .port_or_known_default()
        .map(|p| p.to_string())
        .unwrap_or_default();
    step.replace("<url>", url.as_str().trim_end_matches('/'))
        .replace("<registry>", &registry)
        .replace("<host>", host)
        .replace("<port>", &port)
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

/// How many registries fail (any check fails), warn (one warns, none fails) or are ok, as
/// the `/` page counts them: "7 registries: 2 failing, 1 warning, 4 ok".
pub fn registries_summary(results: &[(String, CheckResult)]) -> String {
    let mut worst: Vec<(&str, Status)> = Vec::new();
    for (registry, r) in results {
        match worst.iter_mut().find(|(name, _)| name == registry) {
            Some((_, s)) if rank(r.status) < rank(*s) => *s = r.status,
            Some(_) => {}
            None => worst.push((registry, r.status)),
        }
    }
    let count = |s: Status| worst.iter().filter(|(_, w)| *w == s).count();
    let (failing, warning) = (count(Status::Fail), count(Status::Warn));
    format!(
        "{} registr{}: {failing} failing, {warning} warning, {} ok",
        worst.len(),
        if worst.len() == 1 { "y" } else { "ies" },
        worst.len() - failing - warning
    )
}

/// One result in the doctor's JSON.
#[derive(Serialize)]
struct JsonResult<'a> {
    registry: &'a str,
    /// The registry's URL, as configured.
    url: Option<&'a str>,
    check: &'static str,
    check_id: &'static str,
    severity: &'static str,
    status: &'static str,
    reason: &'static str,
    message: &'a str,
    http_status: Option<u16>,
    duration_ms: u128,
    finished_at: String,
    evidence: &'a std::collections::BTreeMap<&'static str, String>,
    cause: Option<&'static str>,
    /// The fix steps, with the registry's URL filled in (see [`fill_in`]).
    fix: Vec<String>,
    runbook_url: &'a str,
    /// The check whose failure explains this result, when another check is its root cause.
    consequence_of: Option<&'static str>,
}

/// The doctor's JSON document (schema in docs/doctor.md).
pub fn doctor_json(results: &[(String, CheckResult)], urls: &Urls, exit_code: u8) -> String {
    let roots = root_causes(results);
    let items: Vec<JsonResult<'_>> = results
        .iter()
        .zip(&roots)
        .map(|((registry, r), root)| JsonResult {
            registry,
            url: urls.get(registry).map(url::Url::as_str),
            check: r.check.short_name(),
            check_id: r.check.id(),
            severity: catalogue::info(r.check).severity.as_str(),
            status: r.status.as_str(),
            reason: r.reason.as_str(),
            message: &r.message,
            http_status: r.http_status,
            duration_ms: r.duration.as_millis(),
            finished_at: rfc3339(r.finished_at).to_string(),
            evidence: &r.evidence,
            cause: r.diagnosis.as_ref().map(|d| d.cause),
            fix: r
                .diagnosis
                .as_ref()
                .map(|d| {
                    d.fix
                        .iter()
                        .map(|s| fill_in(s, urls.get(registry)))
                        .collect()
                })
                .unwrap_or_default(),
            runbook_url: &r.runbook_url,
            consequence_of: root.map(CheckKind::id),
        })
        .collect();
    let mut summary = serde_json::Map::new();
    for s in Status::ALL {
        let n = results.iter().filter(|(_, r)| r.status == *s).count();
        summary.insert(s.as_str().into(), n.into());
    }
    let doc = serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "results": items,
        "summary": summary,
        "exit_code": exit_code,
    });
    // A json! value of strings and numbers always serializes.
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes") + "\n"
}

fn style(status: Status) -> Style {
    let colour = match status {
        Status::Pass => AnsiColor::Green,
        Status::Info => AnsiColor::Blue,
        Status::Warn => AnsiColor::Yellow,
        Status::Fail => AnsiColor::Red,
        Status::Skip => AnsiColor::BrightBlack,
    };
    Style::new().fg_color(Some(colour.into())).bold()
}

/// The doctor's text: a line per check, then the problems, most severe first and root
/// causes (said once, with the checks they explain) before the rest, each with its
/// registry's URL, likely cause, fix (the URL filled in) and runbook; then a closing line
/// counting the registries ("7 registries: 2 failing, 1 warning, 4 ok").
/// Colour codes are written always; the caller's `anstream` writer strips them when the
/// output is not a terminal or `NO_COLOR` is set.
pub fn doctor_text(results: &[(String, CheckResult)], urls: &Urls) -> String {
    let roots = root_causes(results);
    let mut out = String::new();
    let width = results.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    for ((registry, r), root) in results.iter().zip(&roots) {
        let s = style(r.status);
        let because = match root {
            Some(kind) => format!(" [consequence of {}]", kind.short_name()),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{s}{:<4}{s:#}  {registry:<width$}  {:<34}  {}{because}",
            r.status.as_str().to_uppercase(),
            r.check.id(),
            r.message
        );
    }
    let explained_by = |registry: &str, kind: CheckKind| -> Vec<&str> {
        results
            .iter()
            .zip(&roots)
            .filter(|((reg, _), root)| reg == registry && **root == Some(kind))
            .map(|((_, c), _)| c.check.short_name())
            .collect()
    };
    // The problems: most severe first, root causes before the rest, then in the order run.
    let mut problems: Vec<(usize, &String, &CheckResult, Vec<&str>)> = results
        .iter()
        .zip(&roots)
        .enumerate()
        .filter(|(_, ((_, r), root))| {
            !matches!(r.status, Status::Pass | Status::Skip) && root.is_none()
        })
        .map(|(i, ((registry, r), _))| (i, registry, r, explained_by(registry, r.check)))
        .collect();
    problems.sort_by_key(|(i, _, r, explained)| (rank(r.status), explained.is_empty(), *i));
    for (_, registry, r, explained) in problems {
        let s = style(r.status);
        let url = urls.get(registry);
        let at = url.map(|u| format!(" ({u})")).unwrap_or_default();
        let heading = if explained.is_empty() {
            String::new()
        } else {
            "ROOT CAUSE ".to_string()
        };
        let _ = writeln!(
            out,
            "\n{s}{heading}{}{s:#} {} on {registry}{at}: {} (reason {}, HTTP {})",
            r.status.as_str().to_uppercase(),
            r.check.id(),
            r.message,
            r.reason.as_str(),
            r.http_status
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into())
        );
        if !explained.is_empty() {
            let _ = writeln!(
                out,
                "  also explains: {} (fix this first; they follow)",
                explained.join(", ")
            );
        }
        if let Some(d) = &r.diagnosis {
            let _ = writeln!(out, "  likely cause: {}", d.cause);
            for (i, step) in d.fix.iter().enumerate() {
                let _ = writeln!(out, "  {}. {}", i + 1, fill_in(step, url));
            }
        }
        let _ = writeln!(out, "  runbook: {}", r.runbook_url);
    }
    if !results.is_empty() {
        let _ = writeln!(out, "\n{}", registries_summary(results));
    }
    out
}
