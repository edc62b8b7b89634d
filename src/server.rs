//! The HTTP endpoints: `/metrics`, `/probe`, `/-/healthy`, `/-/ready` and the `/` page.
//!
//! Owns routing, query parsing, content negotiation and graceful shutdown of connections.
//! It does not run checks itself: it asks the app (scrape mode, `/probe`) and renders what
//! the metrics module encodes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::checks::{CheckKind, Status};
use crate::config::Mode;
use crate::metrics::{Format, Metrics};
use crate::report;

/// Subtracted from Prometheus' scrape timeout, so the answer is sent before it gives up.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// How long a scrape waits for due checks when Prometheus does not say.
const DEFAULT_SCRAPE_WAIT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// Serves until the app's shutdown token is cancelled, then lets open requests finish.
/// With a web config (`--web.config.file`, see `crate::web`): TLS, basic auth checked before
/// routing (except `/-/healthy` and `/-/ready`), and its extra headers on every response.
pub async fn serve(app: Arc<App>, listener: TcpListener, web: Option<Arc<crate::web::Web>>) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = app.shutdown.cancelled() => break,
        };
        let app = app.clone();
        let web = web.clone();
        let watcher = graceful.watcher();
        // The TLS handshake runs in the connection's own task: a slow or broken client
        // never holds up the accept loop, and a failed handshake only drops its connection.
        tokio::spawn(async move {
            let io = match web.as_ref().and_then(|w| w.acceptor()) {
                None => tokio_util::either::Either::Left(stream),
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(crate::web::HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => tokio_util::either::Either::Right(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if web.as_ref().is_some_and(|w| !w.http2()) {
                builder = builder.http1_only();
            }
            let service = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                let web = web.clone();
                async move {
                    let Some(web) = web else {
                        return Ok::<_, Infallible>(handle(app, req).await);
                    };
                    let mut response = match web.check_auth(req.uri().path(), req.headers()).await {
                        Ok(()) => handle(app, req).await,
                        Err(denied) => denied,
                    };
                    web.decorate(&mut response);
                    Ok(response)
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Open connections get a few seconds to finish their request.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/-/reload" {
        if req.method() != Method::POST && req.method() != Method::PUT {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use POST /-/reload\n");
            resp.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST, PUT"));
            return resp;
        }
        return match app.reload().await {
            Ok(()) => text(StatusCode::OK, "config reloaded\n"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{e}; the running configuration stays in force\n"),
            ),
        };
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
    match req.uri().path() {
        "/metrics" => {
            if app.current().config.mode == Mode::Scrape {
                let wait = scrape_wait(req.headers());
                app.refresh_due(wait).await;
            }
            metrics_response(format, app.metrics.encode(format))
        }
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
        "/" => html(index_page(&app)),
        "/result" => result_page(&app, req.uri().query().unwrap_or("")),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /probe?target=NAME or /\n",
        ),
    }
}

fn scrape_wait(headers: &http::HeaderMap) -> Duration {
    scrape_timeout(headers).unwrap_or(DEFAULT_SCRAPE_WAIT)
}

/// How long Prometheus waits for this answer (`X-Prometheus-Scrape-Timeout-Seconds`), less
/// the margin that gets the answer to it in time; `None` without the header.
fn scrape_timeout(headers: &http::HeaderMap) -> Option<Duration> {
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
const UNKNOWN_TARGET_EXAMPLES: usize = 5;

/// `/probe?target=NAME[&check=C][&debug=true]`: that registry's checks, now, through
/// [`App::probe`] (concurrent probes share one run), answered within `wait` when
/// Prometheus said how long it waits; a run that takes longer goes on for the probes that
/// come next, and this one answers `probe_success 0`.
async fn probe(
    app: &Arc<App>,
    query: &str,
    format: Format,
    wait: Option<Duration>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let mut target = None;
    let mut check = None;
    let mut debug = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "target" => target = Some(v.into_owned()),
            "check" => check = Some(v.into_owned()),
            "debug" => debug = matches!(v.as_ref(), "true" | "1"),
            _ => {}
        }
    }
    let Some(name) = target.filter(|t| !t.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "target parameter is missing; use /probe?target=<registry name>\n",
        );
    };
    let generation = app.current();
    let Some(rt) = generation.target(&name) else {
        let examples: Vec<&str> = generation
            .targets
            .iter()
            .take(UNKNOWN_TARGET_EXAMPLES)
            .map(|t| t.target.name.as_str())
            .collect();
        let n = generation.targets.len();
        let configured = if n == 1 {
            format!("1 is configured: {}", examples.join(", "))
        } else if n <= UNKNOWN_TARGET_EXAMPLES {
            format!("{n} are configured: {}", examples.join(", "))
        } else {
            format!(
                "{n} are configured, e.g. {}; see / for all of them",
                examples.join(", ")
            )
        };
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown target {name:?}: /probe only reaches configured registries; {configured}\n"
            ),
        );
    };
    let only = match check.as_deref() {
        None | Some("") => None,
        Some(c) => match CheckKind::parse(c) {
            Some(kind) => Some(vec![kind]),
            None => {
                let known: Vec<&str> = CheckKind::ALL.iter().map(|c| c.short_name()).collect();
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown check {c:?}; use one of {}\n", known.join(", ")),
                );
            }
        },
    };
    let run = app.probe(rt, only);
    let results = match wait {
        Some(wait) => tokio::time::timeout(wait, run).await.ok().flatten(),
        None => run.await,
    };
    let metrics = Metrics::for_probe();
    metrics.declare_target(&rt.target);
    let success = results.as_deref().is_some_and(|results| {
        results
            .iter()
            .all(|r| matches!(r.status, Status::Pass | Status::Info | Status::Skip))
    });
    for result in results.iter().flat_map(|r| r.iter()) {
        metrics.record(&rt.target.name, result);
    }
    metrics.record_probe(success, started.elapsed());
    if debug {
        let Some(results) = results else {
            let body = format!(
                "the checks of {name:?} did not finish within the scrape timeout (less {} ms), or a reload or shutdown stopped them; a probe joining the run still going gets its results\n\n{}",
                SCRAPE_TIMEOUT_OFFSET.as_millis(),
                metrics.encode(Format::Classic)
            );
            return text(StatusCode::OK, &body);
        };
        // blackbox_exporter's habit: the request trail and each verdict, then the metrics.
        let body = report::probe_debug(
            &rt.target.name,
            rt.client.base_url().as_str(),
            &results,
            &metrics.encode(Format::Classic),
        );
        return text(StatusCode::OK, &body);
    }
    metrics_response(format, metrics.encode(format))
}

fn result_page(app: &App, query: &str) -> Response<Body> {
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

fn metrics_response(format: Format, body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static headers are valid")
}

fn html(body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

fn status_colour(s: Status) -> &'static str {
    match s {
        Status::Pass => "#2e7d32",
        Status::Info => "#1565c0",
        Status::Warn => "#f9a825",
        Status::Fail => "#c62828",
        Status::Skip => "#757575",
    }
}

fn index_page(app: &App) -> String {
    use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};
    use std::fmt::Write;
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>OCI registry exporter</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;text-align:left;border-bottom:1px solid #ddd}\
         .s{color:#fff;padding:2px 6px;border-radius:3px}</style></head><body>\
         <h1>OCI registry exporter</h1><p><a href=\"/metrics\">Metrics</a> · \
         <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\
         <table><tr><th>Registry</th><th>Check</th><th>Status</th><th>Reason</th><th>HTTP</th><th>Last run</th><th>Message</th></tr>",
    );
    for rt in &app.current().targets {
        let name = &rt.target.name;
        let results = app.store.latest(name);
        let probe = format!(
            "/probe?target={}",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        if results.is_empty() {
            let _ = write!(
                out,
                "<tr><td><a href=\"{}\">{}</a></td><td colspan=\"6\">no result yet</td></tr>",
                attr(&probe),
                esc(name)
            );
        }
        for r in results {
            let when = r
                .finished_at
                .duration_since(UNIX_EPOCH)
                .map(|d| {
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(d.as_secs()))
                        .to_string()
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td><span class=\"s\" style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                attr(&probe),
                esc(name),
                r.check.short_name(),
                status_colour(r.status),
                r.status.as_str(),
                r.reason.as_str(),
                r.http_status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "–".into()),
                when,
                esc(&r.message),
            );
        }
    }
    out.push_str("</table><h2>Recent results</h2><p>Failures are kept longer than other results.</p>\
        <table><tr><th>Time</th><th>Registry</th><th>Check</th><th>Status</th><th>Reason</th><th>Message</th></tr>");
    for (id, registry, r) in app.store.history() {
        let when = humantime::format_rfc3339_seconds(
            UNIX_EPOCH
                + Duration::from_secs(
                    r.finished_at
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                ),
        );
        let _ = write!(
            out,
            "<tr><td><a href=\"/result?id={id}\">{when}</a></td><td>{}</td><td>{}</td><td><span class=\"s\" style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td></tr>",
            esc(&registry),
            r.check.short_name(),
            status_colour(r.status),
            r.status.as_str(),
            r.reason.as_str(),
            esc(&r.message),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
