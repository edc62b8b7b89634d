//! Entry points for the fuzz targets under `fuzz/`: each feeds arbitrary bytes to one parser
//! of registry- or user-controlled input, the way the exporter calls it.
//!
//! Owns nothing the exporter runs; it exists so that the fuzz targets reach crate-private
//! parsers without making them public API. A panic reached from here is a bug in the
//! parser behind it (see `scripts/fuzz` and docs/operations.md).

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::client::{self, Challenges, Response, Trail};
use crate::distribution::{self, Answer, OciError};
use crate::docker_config;

/// Headers from `data`, one `name: value` per line (invalid ones are skipped, as the HTTP
/// stack would never deliver them).
fn headers(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A response with a status from the first two bytes, headers, and the rest as body.
fn response(data: &[u8]) -> Response {
    let (status, rest) = match data {
        [a, b, rest @ ..] => (100 + (u16::from_be_bytes([*a, *b]) % 500), rest),
        _ => (200, data),
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    Response {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        headers: headers(head),
        body: body.to_vec().into(),
        redirected_to: None,
    }
}

/// `WWW-Authenticate` challenges: one header value per line.
pub fn www_authenticate(data: &[u8]) {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            map.append(reqwest::header::WWW_AUTHENTICATE, value);
        }
    }
    let _ = Challenges::parse(&map);
}

/// An answer as `distribution::Answer::of` reads it: status, OCI error body, challenge.
pub fn registry_answer(data: &[u8]) {
    let _ = OciError::parse(data);
    let resp = response(data);
    let answer = Answer::of(&resp);
    // The per-operation readings too: none may panic on what a registry sends.
    let _ = (
        Answer::api_root(&resp).describe(),
        Answer::manifest(&resp, true).describe(),
        Answer::manifest(&resp, false).describe(),
        Answer::upload(&resp).describe(),
    );
    let _ = answer.describe();
}

/// A referrers index and its `Link` pagination header.
pub fn referrers_index(data: &[u8]) {
    let _ = distribution::parse_index(data);
    let resp = response(data);
    let _ = distribution::parse_index(&resp.body);
    let _ = distribution::next_link(&resp);
}

/// A manifest as the mount probe reads it (config blob, first child).
pub fn manifest(data: &[u8]) {
    let _ = distribution::manifest_links(data);
    // What the pull follows: an index's platform entry, or the config blob.
    let _ = distribution::pull_step(data, "linux/amd64");
    let _ = distribution::pull_step(data, "linux/arm64/v8");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = distribution::Digest::parse(text);
    }
}

/// A `Location` (or `Link` target) joined onto a registry's base URL.
pub fn location(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for base in ["https://registry.example/", "http://127.0.0.1:5000/prefix/"] {
        // The base URLs are literals that parse.
        let base = Url::parse(base).expect("a literal base URL parses");
        let _ = distribution::same_origin(&base, text);
    }
}

/// A token service's answer (`token`/`access_token`, `expires_in`).
pub fn token_answer(data: &[u8]) {
    let _ = client::parse_token(data);
}

/// `RateLimit-Limit`/`RateLimit-Remaining` and a 429's `Retry-After`, as the client reads them.
pub fn rate_limit_headers(data: &[u8]) {
    let map = headers(data);
    let trail = Trail::default();
    client::observe_limits(&map, StatusCode::TOO_MANY_REQUESTS, &trail);
    client::observe_limits(&map, StatusCode::OK, &trail);
}

/// A Docker config.json (the `auths` lookup for a few registry keys) and a credential
/// helper's answer.
pub fn docker_config(data: &[u8]) {
    if let Ok(file) = docker_config::parse(data, "fuzz.json") {
        for url in [
            "https://index.docker.io/v1/",
            "https://ghcr.io/",
            "http://127.0.0.1:5000/",
        ] {
            // The URLs are literals that parse.
            let url = Url::parse(url).expect("a literal URL parses");
            let key = docker_config::registry_key(&url);
            let _ = docker_config::from_auths(&file, &key, "fuzz.json");
        }
    }
    let _ = docker_config::helper_answer(data);
}

/// A web config file (exporter-toolkit format), as `--web.config.file` reads it.
pub fn web_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::web::config_text_accepted(text);
    }
}

/// The configuration loader: a file's text (TOML, or YAML when the first byte is odd) and
/// environment keys, as `--config` and the environment reach `Config::resolve`. Lines
/// before the first empty one are `KEY=VALUE` pairs set in the environment for the load,
/// under one of the exporter's prefixes (`OCI_REGISTRY_EXPORTER_`, `OCI__`, `Registry__`,
/// chosen by the key's first byte), and removed after; the rest is the file.
pub fn config_loader(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (env, file) = text.split_once("\n\n").unwrap_or(("", text));
    let mut keys = Vec::new();
    for line in env.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let prefix = match key.bytes().next().unwrap_or(0) % 3 {
            0 => "OCI_REGISTRY_EXPORTER_",
            1 => "OCI__",
            _ => "Registry__",
        };
        let key = format!("{prefix}{}", key.get(1..).unwrap_or_default());
        // What `set_var` refuses, the environment never holds.
        if key.contains(['=', '\0']) || value.contains('\0') {
            continue;
        }
        // SAFETY: a fuzz target runs its inputs on one thread, and nothing else of the
        // process reads or writes the environment meanwhile.
        unsafe { std::env::set_var(&key, value) };
        keys.push(key);
    }
    if let Ok(raw) = crate::config::RawConfig::load_text(file, selector % 2 == 1) {
        let _ = crate::config::Config::resolve(raw);
    }
    for key in keys {
        // SAFETY: as above.
        unsafe { std::env::remove_var(&key) };
    }
}

/// A `/probe` query string, as the server reads it (target, check selection, debug).
pub fn probe_query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let q = crate::server::ProbeQuery::parse(text);
        let _ = crate::server::probe_checks(q.check.as_deref());
    }
}
