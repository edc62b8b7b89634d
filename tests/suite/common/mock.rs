//! Builders for emulated registries (mockito on 127.0.0.1): one call is one canned answer,
//! so that a test's setup reads as the registry's answers, not as the mock library's calls.
//! What a named product answers (GHCR, Harbor, ECR...) is `emulations`, built from these.

use mockito::{Matcher, Mock, ServerGuard};

/// `method path` answered `status` with `headers`, not yet created: add a body, matchers or
/// an expected count, then `create_async`.
pub fn reply(
    server: &mut ServerGuard,
    method: &str,
    path: impl Into<Matcher>,
    status: usize,
    headers: &[(&str, &str)],
) -> Mock {
    headers.iter().fold(
        server.mock(method, path).with_status(status),
        |mock, (name, value)| mock.with_header(*name, value),
    )
}

/// `method path` answered `status` with `headers` and `body`: the whole answer, created.
pub async fn answer(
    server: &mut ServerGuard,
    method: &str,
    path: impl Into<Matcher>,
    status: usize,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Mock {
    reply(server, method, path, status, headers)
        .with_body(body)
        .create_async()
        .await
}

/// `method path` refused 401 with the challenge `www_authenticate` and `body`: how a
/// registry or its token service asks for credentials.
pub async fn unauthorized(
    server: &mut ServerGuard,
    method: &str,
    path: impl Into<Matcher>,
    www_authenticate: &str,
    body: &str,
) -> Mock {
    let headers = [("www-authenticate", www_authenticate)];
    answer(server, method, path, 401, &headers, body).await
}

/// The configuration of one emulated registry named `mock` at `url`, with a 2 s timeout and
/// `extra` lines.
pub fn mock_config(url: &str, extra: &str) -> oci_registry_exporter::Config {
    super::config_from_toml(&format!(
        "[[registries]]\nname = \"mock\"\nurl = \"{url}\"\ntimeout = \"2s\"\n{extra}\n"
    ))
}

/// `method path` asked without credentials: 401 with a Basic challenge, as an htpasswd
/// registry answers before it is sent any.
pub async fn basic_required(
    server: &mut ServerGuard,
    method: &str,
    path: impl Into<Matcher>,
) -> Mock {
    let challenge = [("www-authenticate", "Basic realm=\"mock\"")];
    reply(server, method, path, 401, &challenge)
        .match_header("authorization", Matcher::Missing)
        .create_async()
        .await
}
