//! A registry's resolution: [`resolve_registry`] turns one `[[registries]]` entry and the
//! `[defaults]` into a [`Target`] (its own keys over the defaults over the built-in values,
//! each validated, errors naming the key and the fix, warnings for what only fails later),
//! with the rules of each key (URL, durations, checks, credentials, TLS files, platform,
//! proxy, repository and tag names).
//!
//! It does not load files or the environment (`raw`), read secrets at check time
//! (`secret`), or check what spans registries (names unique, global keys: `Config::resolve`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::outcome::CheckKind;
use crate::secret_file::{self, FileProblem};

use super::raw::RawRegistry;
use super::{
    ConfigError, Credentials, DEFAULT_INTERVAL, DEFAULT_PULL_PLATFORM, DEFAULT_TIMEOUT,
    MIN_INTERVAL, ProxyUrl, Secret, Target, TlsSettings, proxy_shown,
};

/// One registry's settings, resolved: its own keys over `[defaults]` (merged once, by
/// [`RawRegistry::over`]) over the built-in defaults, each validated; warnings (an
/// unresolved secret, an unreadable Docker config, `insecure_skip_verify`) go to `warnings`.
/// The one function that makes a [`Target`]: it reads as the list of a registry's keys, in
/// the order their errors are reported. `name` is already checked (non-empty, unique) by
/// [`Config::resolve`].
pub(super) fn resolve_registry(
    i: usize,
    name: String,
    reg: &RawRegistry,
    defaults: &RawRegistry,
    warnings: &mut Vec<String>,
) -> Result<Target, ConfigError> {
    let key = |k: &str| format!("registries[{i}].{k}");
    let r = reg.over(defaults);
    let url = resolve_url(&key("url"), r.url.as_deref())?;
    let (interval, timeout) = resolve_timing(&key, r.interval, r.timeout)?;
    let checks = match &r.checks {
        None => CheckKind::ALL.to_vec(),
        Some(names) => resolve_checks(&key("checks"), names)?,
    };
    let credentials = resolve_credentials(&key(""), &r)?;
    warn_about_credentials(&name, &key("password"), &credentials, warnings);
    // Computed once: the warning and the client's TLS settings read the same value.
    let insecure = r.insecure_skip_verify.unwrap_or(false);
    if insecure {
        warnings.push(format!(
            "registry \"{name}\": insecure_skip_verify is set: TLS certificates are not verified; set ca_file instead"
        ));
    }
    if let Some(path) = &r.ca_file {
        validate_ca_file(&key("ca_file"), path)?;
    }
    let client_cert = resolve_client_cert(&key(""), r.client_cert_file, r.client_key_file)?;
    let repository = |value: Option<String>, k: &str, default: &str| {
        let value = value.unwrap_or_else(|| default.into());
        validate_repository(&key(k), &value).map(|_| value)
    };
    let test_repository = repository(r.test_repository, "test_repository", "library/alpine")?;
    let push_test_repository = repository(
        r.push_test_repository,
        "push_test_repository",
        "stellaops/doctor-test",
    )?;
    let test_tag = r.test_tag.unwrap_or_else(|| "latest".into());
    validate_reference(&key("test_tag"), &test_tag)?;
    let pull_platform = r
        .pull_platform
        .unwrap_or_else(|| DEFAULT_PULL_PLATFORM.into());
    validate_platform(&key("pull_platform"), &pull_platform)?;
    let proxy_url = match r.proxy_url.as_deref() {
        None => None,
        Some(text) => Some(ProxyUrl(Box::new(resolve_proxy_url(
            &key("proxy_url"),
            text,
        )?))),
    };
    Ok(Target {
        name,
        url,
        test_repository,
        test_tag,
        push_test_repository,
        credentials,
        checks,
        interval,
        timeout,
        tls: TlsSettings {
            ca_file: r.ca_file,
            insecure_skip_verify: insecure,
            client_cert,
        },
        pull_blob: r.pull_blob.unwrap_or(true),
        pull_platform,
        proxy_url,
    })
}

/// A registry's interval and timeout (after the defaults): an unset timeout is the default,
/// shortened to the interval, as a check must end before the next round of its registry is
/// due; a longer one set explicitly is refused.
fn resolve_timing(
    key: &dyn Fn(&str) -> String,
    interval: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<(Duration, Duration), ConfigError> {
    let interval = interval.unwrap_or(DEFAULT_INTERVAL);
    validate_duration(&key("interval"), Some(interval))?;
    validate_interval(&key("interval"), Some(interval))?;
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT.min(interval));
    validate_duration(&key("timeout"), Some(timeout))?;
    if timeout > interval {
        return Err(ConfigError::invalid(
            key("timeout"),
            format!(
                "{} is longer than the interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
            "set timeout to at most the interval, or lengthen the interval",
        ));
    }
    Ok((interval, timeout))
}

/// The warnings a registry's credentials deserve at load: a username without a password
/// (a secret reference that did not resolve), a secret file or Docker config that cannot
/// be read. Warnings, not errors: one registry's missing secret never stops the others.
fn warn_about_credentials(
    name: &str,
    password_key: &str,
    credentials: &Credentials,
    warnings: &mut Vec<String>,
) {
    match credentials {
        Credentials::Basic { password: None, .. } => warnings.push(format!(
            "{password_key}: registry \"{name}\" has a username but no password or password_file; a secret reference probably failed to resolve (the credentials check will fail)"
        )),
        Credentials::Basic {
            password: Some(s), ..
        }
        | Credentials::Bearer { token: s } => {
            if let Some(e) = s.check_readable() {
                warnings.push(format!("registry \"{name}\": {e}"));
            }
        }
        Credentials::DockerConfig { path } => {
            // Bounded as every read of it is: a FIFO or a hung mount cannot stall loading.
            if let Err(e) = secret_file::read_blocking(path) {
                warnings.push(format!(
                    "registry \"{name}\": cannot read docker config {}: {e}; {}",
                    path.display(),
                    match e {
                        FileProblem::Io(_) => "check docker_config or DOCKER_CONFIG",
                        _ => e.fix(),
                    }
                ));
            }
        }
        Credentials::Anonymous => {}
    }
}

fn resolve_client_cert(
    prefix: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::invalid(
            format!("{prefix}client_key_file"),
            "client_cert_file is set without client_key_file",
            "set both, to PEM files of the client certificate and its private key",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            format!("{prefix}client_cert_file"),
            "client_key_file is set without client_cert_file",
            "set both, to PEM files of the client certificate and its private key",
        )),
        (Some(cert), Some(key)) => {
            let mut pem = Vec::new();
            for (k, path) in [("client_cert_file", &cert), ("client_key_file", &key)] {
                let bytes = std::fs::read(path).map_err(|e| {
                    ConfigError::invalid(
                        format!("{prefix}{k}"),
                        format!("cannot read {} ({})", path.display(), e.kind()),
                        "point it at a readable PEM file",
                    )
                })?;
                pem.extend_from_slice(&bytes);
                pem.push(b'\n');
            }
            // The key's content is never echoed: only that the pair does not parse.
            reqwest::Identity::from_pem(&pem).map_err(|_| {
                ConfigError::invalid(
                    format!("{prefix}client_cert_file"),
                    format!(
                        "{} and {} are not a PEM certificate and private key",
                        cert.display(),
                        key.display()
                    ),
                    "give a PEM certificate (BEGIN CERTIFICATE) and its PEM private key",
                )
            })?;
            Ok(Some((cert, key)))
        }
    }
}

pub(super) fn validate_duration(key: &str, d: Option<Duration>) -> Result<(), ConfigError> {
    match d {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(
            key,
            "must be greater than zero",
            "set a duration such as \"10s\"",
        )),
        _ => Ok(()),
    }
}

/// Intervals of at least [`MIN_INTERVAL`]: `interval = "1ns"` would spin a registry's loop.
pub(super) fn validate_interval(key: &str, d: Option<Duration>) -> Result<(), ConfigError> {
    match d {
        Some(d) if d < MIN_INTERVAL => Err(ConfigError::invalid(
            key,
            format!(
                "{} is shorter than the minimum interval of 1s",
                humantime::format_duration(d)
            ),
            "set a duration of at least \"1s\", such as \"60s\"",
        )),
        _ => Ok(()),
    }
}

fn resolve_url(key: &str, url: Option<&str>) -> Result<Url, ConfigError> {
    let Some(text) = url else {
        return Err(ConfigError::invalid(
            key,
            "missing",
            "set the registry's base URL, e.g. \"https://registry.example.com\"",
        ));
    };
    let mut url = Url::parse(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("\"{text}\" is not a valid URL ({e})"),
            "write an absolute URL such as \"https://registry.example.com\"",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            key,
            format!("\"{text}\" is not an http(s) URL with a host"),
            "write an absolute URL such as \"https://registry.example.com\"",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The text is not echoed: it holds a credential.
        return Err(ConfigError::invalid(
            key,
            "contains credentials",
            "remove them from the URL and set username and password_file (or token_file) instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            format!("\"{text}\" has a query or fragment"),
            "give only the registry's base URL, e.g. \"https://registry.example.com\"",
        ));
    }
    // A registry may live under a path prefix; requests are joined onto it, so it must end in '/'.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    // Users often paste the API root: ".../v2/" would make requests go to /v2/v2/.
    if url.path().ends_with("/v2/") {
        let path = url.path().trim_end_matches("v2/").to_string();
        url.set_path(&path);
    }
    Ok(url)
}

fn resolve_checks(key: &str, names: &[String]) -> Result<Vec<CheckKind>, ConfigError> {
    let mut checks = Vec::new();
    for name in names {
        if name == "all" {
            return Ok(CheckKind::ALL.to_vec());
        }
        let kind = CheckKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = CheckKind::ALL.iter().map(|c| c.short_name()).collect();
            ConfigError::invalid(
                key,
                format!("unknown check \"{name}\""),
                format!(
                    "use \"all\" or any of {} (or their ids, check.integration.oci.<name>)",
                    known.join(", ")
                ),
            )
        })?;
        if !checks.contains(&kind) {
            checks.push(kind);
        }
    }
    if checks.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is empty",
            "list at least one check, or remove the key to run all checks",
        ));
    }
    Ok(checks)
}

/// A registry's credentials from its merged keys (its own credentials or, when it has
/// none, the defaults': [`RawRegistry::over`] never mixes them).
fn resolve_credentials(prefix: &str, src: &RawRegistry) -> Result<Credentials, ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    if src.password.is_some() && src.password_file.is_some() {
        return Err(ConfigError::invalid(
            key("password_file"),
            "both password and password_file are set",
            "keep one of them (password_file is preferred)",
        ));
    }
    if src.token.is_some() && src.token_file.is_some() {
        return Err(ConfigError::invalid(
            key("token_file"),
            "both token and token_file are set",
            "keep one of them (token_file is preferred)",
        ));
    }
    let token = src
        .token
        .clone()
        .map(|t| Secret::Inline(SecretString::from(t)))
        .or(src.token_file.clone().map(Secret::File));
    let password = src
        .password
        .clone()
        .map(|p| Secret::Inline(SecretString::from(p)))
        .or(src.password_file.clone().map(Secret::File));
    match (src.username.clone(), password, token) {
        (Some(_), _, Some(_)) => Err(ConfigError::invalid(
            key("token"),
            "both a token and a username are set",
            "use either token/token_file or username with password/password_file",
        )),
        (None, Some(_), _) => Err(ConfigError::invalid(
            key("username"),
            "a password is set without a username",
            "set username as well",
        )),
        (Some(username), password, None) => Ok(Credentials::Basic { username, password }),
        (None, None, Some(token)) => Ok(Credentials::Bearer { token }),
        (None, None, None) => Ok(match docker_config_path(src) {
            Some(path) => Credentials::DockerConfig { path },
            None => Credentials::Anonymous,
        }),
    }
}

/// The Docker config for a registry without explicit credentials: `docker_config`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, the latter two only if present.
fn docker_config_path(r: &RawRegistry) -> Option<PathBuf> {
    if let Some(path) = r.docker_config.clone() {
        return Some(path);
    }
    let implicit = std::env::var_os("DOCKER_CONFIG")
        .map(|dir| PathBuf::from(dir).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
        })?;
    implicit.is_file().then_some(implicit)
}

fn validate_ca_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("cannot read {} ({})", path.display(), e.kind()),
            "point it at a readable PEM file of CA certificates",
        )
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("{} holds no PEM certificate", path.display()),
            "point it at a PEM file with one or more \"BEGIN CERTIFICATE\" blocks",
        )),
    }
}

/// `os/arch` or `os/arch/variant` as image indexes name platforms (`linux/arm64/v8`).
fn validate_platform(key: &str, platform: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = platform.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("\"{platform}\" is not a platform"),
            "write os/arch or os/arch/variant in lower case, such as \"linux/amd64\" or \"linux/arm64/v8\"",
        ))
    }
}

/// A forward proxy: an http:// or https:// URL with a host and nothing after it. It may
/// carry a user and password (proxies ask for them with 407); they are never echoed.
pub(super) fn resolve_proxy_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim()).ok();
    let shown = url
        .as_ref()
        .map(proxy_shown)
        .unwrap_or_else(|| "the value".into());
    match url {
        Some(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && matches!(url.path(), "" | "/")
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Ok(url)
        }
        // The text is not echoed whole: it may hold the proxy's password.
        _ => Err(ConfigError::invalid(
            key,
            format!("{shown} is not an http(s) proxy URL"),
            "write the proxy as http://host:port (or http://user:password@host:port when it asks for credentials)",
        )),
    }
}

/// Repository names as the distribution spec allows them: lower-case path components.
fn validate_repository(key: &str, name: &str) -> Result<(), ConfigError> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
    };
    if name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("\"{name}\" is not a valid repository name"),
            "use lower-case path components such as \"library/alpine\"",
        ))
    }
}

fn validate_reference(key: &str, tag: &str) -> Result<(), ConfigError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && (tag.starts_with("sha256:")
            || tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("\"{tag}\" is not a valid tag"),
            "use a tag such as \"latest\" or a digest such as \"sha256:...\"",
        ))
    }
}
