//! The endpoints: `handle` routes a request (the metrics at the telemetry path, `/probe`,
//! `/result`, `/-/healthy`, `/-/ready`, `/-/reload`, `/` to `status_page`), with the
//! scrape's wait and timeout from Prometheus' headers, [`ProbeQuery`] and
//! [`probe_checks`] (`/probe`'s query), and the small response builders.
//!
//! It does not accept connections or enforce their limits (`mod.rs`, `admission`), nor
//! stream the metrics text (`streamed`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::app::{App, Generation};
use crate::checks::{CheckKind, Status};
use crate::config::Mode;
use crate::metrics::{self, Format};
use crate::store::Store;
use crate::{report, status_page};

use super::streamed::Encodings;
use super::{Body, TelemetryPath};

/// Subtracted from Prometheus' scrape timeout, so the answer is sent before it gives up.
pub(super) const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// How long a scrape waits for due checks when Prometheus does not say.
pub(super) const DEFAULT_SCRAPE_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    telemetry_path: &TelemetryPath,
    encodings: &Encodings,
) -> Response<Body> {
    if req.uri().path() == "/-/reload" {
        return reload(&app, req.method()).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let path = req.uri().path();
    if path == telemetry_path.as_str() {
        return metrics_text(&app, req.headers(), format, encodings).await;
    }
    match path {
        "/probe" => {
            let wait = scrape_timeout(req.headers());
            probe(&app, req.uri().query().unwrap_or(""), format, wait).await
        }
        "/-/healthy" => text(StatusCode::OK, "healthy\n"),
        "/-/ready" => {
            if app.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the first round of checks is still running\n",
                )
            }
        }
        "/" => html(status_page::render(
            &app,
            req.uri().query().unwrap_or(""),
            telemetry_path.as_str(),
            SystemTime::now(),
        )),
        "/result" => result_page(&app, req.uri().query().unwrap_or("")),
        _ => text(
            StatusCode::NOT_FOUND,
            &format!(
                "not found; try {}, /probe?target=NAME or /\n",
                telemetry_path.as_str()
            ),
        ),
    }
}

/// `/-/reload`: POST or PUT reloads the configuration.
async fn reload(app: &Arc<App>, method: &Method) -> Response<Body> {
    if method != Method::POST && method != Method::PUT {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use POST /-/reload\n");
        resp.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST, PUT"));
        return resp;
    }
    match app.reload().await {
        Ok(()) => text(StatusCode::OK, "config reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{e}; the running configuration stays in force\n"),
        ),
    }
}

/// The metrics at the telemetry path: in scrape mode after the due rounds (waiting at
/// most the scrape's timeout), streamed from a shared encoding.
async fn metrics_text(
    app: &Arc<App>,
    headers: &http::HeaderMap,
    format: Format,
    encodings: &Encodings,
) -> Response<Body> {
    let mut fresh_since = None;
    if app.current().config.mode == Mode::Scrape {
        let wait = scrape_wait(headers);
        app.refresh_due(wait).await;
        // The rounds this scrape waited for are recorded: an older text lacks them.
        fresh_since = Some(std::time::Instant::now());
    }
    // Encoding thousands of registries takes milliseconds: off the async workers, so a
    // scrape never delays the checks' I/O; shared by the scrapes that arrive while it is
    // written, and never waiting for a reader, so slow scrapers hold no thread.
    let encoder = app.clone();
    let body = encodings.scrape(format, fresh_since, move |send| {
        encoder.metrics.encode_chunks(&encoder.store, format, send)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Either::Right(body))
        .expect("static headers are valid")
}

pub(super) fn scrape_wait(headers: &http::HeaderMap) -> Duration {
    scrape_timeout(headers).unwrap_or(DEFAULT_SCRAPE_WAIT)
}

/// How long Prometheus waits for this answer (`X-Prometheus-Scrape-Timeout-Seconds`), less
/// the margin that gets the answer to it in time; `None` without the header.
pub(super) fn scrape_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|d| d.saturating_sub(SCRAPE_TIMEOUT_OFFSET))
        .map(|d| d.max(Duration::from_millis(100)))
}

/// How many registry names the 400 for an unknown `/probe` target lists: enough to spot a
/// typo, bounded however many registries are configured.
pub(super) const UNKNOWN_TARGET_EXAMPLES: usize = 5;

/// The 400 for a `/probe` of no configured registry: a few of the configured names (of every
/// shard), enough to spot a typo, and their number.
pub(super) fn unknown_target(generation: &Generation, name: &str) -> Response<Body> {
    let registries = &generation.config.registries;
    let examples: Vec<&str> = registries
        .iter()
        .take(UNKNOWN_TARGET_EXAMPLES)
        .map(|t| t.name.as_str())
        .collect();
    let n = registries.len();
    let configured = if n == 1 {
        format!("1 is configured: {}", examples.join(", "))
    } else if n <= UNKNOWN_TARGET_EXAMPLES {
        format!("{n} are configured: {}", examples.join(", "))
    } else if generation.config.shard.is_sharded() {
        format!(
            "{n} are configured, e.g. {}; --check-config lists them all",
            examples.join(", ")
        )
    } else {
        format!(
            "{n} are configured, e.g. {}; see / for all of them",
            examples.join(", ")
        )
    };
    text(
        StatusCode::BAD_REQUEST,
        &format!(
            "unknown target {name:?}: /probe only reaches configured registries; {configured}\n"
        ),
    )
}

/// What a `/probe` query string asks for (the last of a repeated key counts; unknown keys
/// are ignored).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeQuery {
    pub(crate) target: Option<String>,
    pub(crate) check: Option<String>,
    pub(crate) debug: bool,
}

impl ProbeQuery {
    pub(crate) fn parse(query: &str) -> ProbeQuery {
        let mut q = ProbeQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "target" => q.target = Some(v.into_owned()),
                "check" => q.check = Some(v.into_owned()),
                "debug" => q.debug = matches!(v.as_ref(), "true" | "1"),
                _ => {}
            }
        }
        q
    }
}

/// The checks a `/probe`'s `check` selects (`None`: the configured ones), or the 400's text
/// for an unknown one.
pub(crate) fn probe_checks(check: Option<&str>) -> Result<Option<Vec<CheckKind>>, String> {
    match check {
        None | Some("") => Ok(None),
        Some(c) => match CheckKind::parse(c) {
            Some(kind) => Ok(Some(vec![kind])),
            None => {
                let known: Vec<&str> = CheckKind::ALL.iter().map(|c| c.short_name()).collect();
                Err(format!(
                    "unknown check {c:?}; use one of {}\n",
                    known.join(", ")
                ))
            }
        },
    }
}

/// `/probe?target=NAME[&check=C][&debug=true]`: that registry's checks, now, through
/// [`App::probe`] (concurrent probes share one run), answered within `wait` when
/// Prometheus said how long it waits; a run that takes longer goes on for the probes that
/// come next, and this one answers `probe_success 0`.
pub(super) async fn probe(
    app: &Arc<App>,
    query: &str,
    format: Format,
    wait: Option<Duration>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let ProbeQuery {
        target,
        check,
        debug,
    } = ProbeQuery::parse(query);
    let Some(name) = target.filter(|t| !t.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "target parameter is missing; use /probe?target=<registry name>\n",
        );
    };
    let generation = app.current();
    // Any configured registry, of any shard: a Probe reaches the replicas through a Service
    // that picks one, so the answer must not depend on which (docs/operations.md).
    let rt = match generation.probe_target(&name) {
        Some(Ok(rt)) => rt,
        Some(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        None => return unknown_target(&generation, &name),
    };
    let only = match probe_checks(check.as_deref()) {
        Ok(only) => only,
        Err(unknown) => return text(StatusCode::BAD_REQUEST, &unknown),
    };
    let run = app.probe(&rt, only);
    let results = match wait {
        Some(wait) => tokio::time::timeout(wait, run).await.ok().flatten(),
        None => run.await,
    };
    let success = results
        .as_deref()
        .is_some_and(|results| results.iter().all(|r| r.status != Status::Fail));
    // The probe's own table: this registry's results only, never `/metrics`' store.
    let store = Store::new(0);
    store.declare(&rt.target);
    for result in results.iter().flat_map(|r| r.iter()) {
        store.put(&rt.target.name, result.clone());
    }
    let duration = started.elapsed();
    let encode = |format| metrics::encode_probe(&store, success, duration, format);
    if debug {
        let Some(results) = results else {
            let body = format!(
                "the checks of {name:?} did not finish within the scrape timeout (less {} ms), or a reload or shutdown stopped them; a probe joining the run still going gets its results\n\n{}",
                SCRAPE_TIMEOUT_OFFSET.as_millis(),
                encode(Format::Classic)
            );
            return text(StatusCode::OK, &body);
        };
        // blackbox_exporter's habit: the request trail and each verdict, then the metrics.
        let body = report::probe_debug(
            &rt.target.name,
            rt.client.base_url().as_str(),
            &results,
            &encode(Format::Classic),
        );
        return text(StatusCode::OK, &body);
    }
    metrics_response(format, encode(format))
}

pub(super) fn result_page(app: &App, query: &str) -> Response<Body> {
    let id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let Some(id) = id else {
        return text(
            StatusCode::BAD_REQUEST,
            "id parameter is missing; follow a link from the / page\n",
        );
    };
    match app.store.history_entry(id) {
        Some((registry, result)) => {
            let mut body = String::new();
            report::result_debug(&mut body, &registry, &result);
            text(StatusCode::OK, &body)
        }
        None => text(
            StatusCode::NOT_FOUND,
            &format!("result {id} is no longer kept; the / page lists the ones that are\n"),
        ),
    }
}

pub(super) fn metrics_response(format: Format, body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("static headers are valid")
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from(body.to_string()))))
        .expect("static headers are valid")
}

pub(super) fn html(body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("static headers are valid")
}
