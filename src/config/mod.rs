//! Configuration: the raw, as-written form and the validated form.
//!
//! Owns loading (a TOML or YAML file through figment, then environment variables on top),
//! the seed keys of existing doctor deployments (`OCI__RegistryUrl`, `Registry__Url`, ...),
//! and every validation rule. `Config::resolve` is the only way to get a [`Config`], so
//! nothing invalid gets past it. It does not keep secrets: a password file is read when a
//! check needs it (see [`Secret::read`]), so a rotation is picked up and one registry's
//! missing secret never stops the others; loading only reads it once (bounded, see
//! `secret_file`) to warn about an unreadable one.
//!
//! # Layout
//!
//! - `mod.rs` — the validated types ([`Config`], [`Target`], [`Credentials`],
//!   [`TlsSettings`]), [`ConfigError`], and [`Config::resolve`]: the global keys and the
//!   checks across registries (names unique), each registry through `resolve_registry`.
//! - `raw.rs` — the as-written form and its loading.
//! - `registry.rs` — `resolve_registry`, one registry's resolution, and its key rules.
//! - `secret.rs` — [`Secret`], [`SecretError`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::outcome::CheckKind;
use crate::shard::Shard;

mod raw;
mod registry;
mod secret;

pub use raw::{RawConfig, RawRegistry, json_schema};
pub use secret::{Secret, SecretError};

use registry::{resolve_registry, validate_duration, validate_interval};

/// Default interval between two rounds of checks of one registry.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default time one check may take, all its requests included (at most the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest interval allowed: anything shorter turns a registry's loop into a busy loop.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default age under which scrape mode reuses a result instead of probing again.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default bound on checks running at once, across all registries.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Prefix of the environment variables that set this exporter's own keys.
pub const ENV_PREFIX: &str = "OCI_REGISTRY_EXPORTER_";

/// How results reach `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A background scheduler runs the checks; `/metrics` serves cached results.
    #[default]
    Interval,
    /// A scrape runs the checks that are due and waits for them.
    Scrape,
}

impl Mode {
    /// The word the configuration uses (`interval`, `scrape`), also in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Interval => "interval",
            Mode::Scrape => "scrape",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration that could not be loaded or failed validation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{key}: {problem}; {fix}")]
    Invalid {
        key: String,
        problem: String,
        fix: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub min_interval: Duration,
    pub max_concurrency: usize,
    /// Base of the runbook links, ending in `/`.
    pub runbook_base_url: String,
    /// How many recent results the status page keeps (failures separately, so longer).
    pub history_size: usize,
    pub registries: Vec<Arc<Target>>,
    /// The file it was loaded from, read again on reload (None: environment only).
    pub source: Option<PathBuf>,
    /// Which of `registries` this exporter checks: set from `--shard`/`--total-shards`, never
    /// by the file or the environment (every registry when not set). `App` keeps it across
    /// reloads.
    pub shard: Shard,
    /// Problems that do not stop the exporter (a secret that cannot be resolved):
    /// the credentials check reports them, `--check-config` prints them.
    pub warnings: Vec<String>,
}

/// One registry to check, validated. Equal when every setting is (a reload keeps the
/// runtime of a registry whose settings are unchanged: `app::keeps`).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The `registry` label.
    pub name: String,
    /// The base URL, always ending in `/`, without credentials, query or fragment.
    pub url: Url,
    pub test_repository: String,
    pub test_tag: String,
    pub push_test_repository: String,
    pub credentials: Credentials,
    pub checks: Vec<CheckKind>,
    pub interval: Duration,
    pub timeout: Duration,
    pub tls: TlsSettings,
    /// Whether the pull check downloads the config blob (`pull_blob`, default true).
    pub pull_blob: bool,
    /// `os/arch[/variant]`, lower case: the manifest the pull check follows in an index.
    pub pull_platform: String,
    /// `proxy_url`: every request of this registry goes through it, and the environment's
    /// `HTTP(S)_PROXY` is not consulted. Its credentials, if any, never reach an output
    /// (see [`proxy_shown`]).
    pub proxy_url: Option<ProxyUrl>,
}

/// A forward proxy's URL, which may hold its user and password: its `Debug` shows only
/// scheme, host and port, so no `{:?}` of a target leaks them. Boxed: few registries have
/// one, and every target holds the `Option` (88 bytes inline, 8 boxed).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl(Box<Url>);

impl ProxyUrl {
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({})", proxy_shown(&self.0))
    }
}

/// The platform the pull check follows in an index unless `pull_platform` says otherwise,
/// as docker and containerd on most hosts would.
pub const DEFAULT_PULL_PLATFORM: &str = "linux/amd64";

/// A proxy URL as it may be shown: scheme, host and port, never its user or password.
pub fn proxy_shown(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

/// Equal settings share one HTTP client (`client::RegistryClient::build_all`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM bundle of extra roots, read and parsed at load.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Client certificate and key (PEM) for registries that require mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// How the exporter authenticates to one registry.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Anonymous,
    /// `password` is `None` when only a username is configured: a secret reference that
    /// probably failed to resolve, reported by the checks rather than at startup.
    Basic {
        username: String,
        password: Option<Secret>,
    },
    Bearer {
        token: Secret,
    },
    /// A Docker `config.json` (`auths`, `credHelpers`, `credsStore`), read at each use.
    DockerConfig {
        path: PathBuf,
    },
}

impl Credentials {
    /// A bounded name for the configured method, used in evidence.
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Anonymous => "anonymous",
            Credentials::Basic { .. } => "basic",
            Credentials::Bearer { .. } => "bearer",
            Credentials::DockerConfig { .. } => "docker_config",
        }
    }
}

impl Config {
    /// Loads and validates in one step.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Config::resolve(RawConfig::load(path)?)?;
        config.source = path.map(Path::to_path_buf);
        Ok(config)
    }

    /// The registries of this exporter's shard (all of them when not sharded), in the
    /// configuration's order.
    pub fn shard_registries(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.registries.iter().filter(|t| self.shard.owns(&t.name))
    }

    /// Validates a raw configuration: the one place every rule is enforced.
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        let min_interval = raw.min_interval.unwrap_or(DEFAULT_MIN_INTERVAL);
        let max_concurrency = raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 {
            return Err(ConfigError::invalid(
                "max_concurrency",
                "must be at least 1",
                "set it to the number of checks that may run at once, e.g. 16",
            ));
        }
        let runbook_base_url = match raw.runbook_base_url.as_deref() {
            None => crate::catalogue::DEFAULT_RUNBOOK_BASE_URL.to_string(),
            Some(text) => {
                let url = Url::parse(text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                if url.is_none() {
                    return Err(ConfigError::invalid(
                        "runbook_base_url",
                        format!("\"{text}\" is not an http(s) URL"),
                        "point it at the folder holding the runbooks, e.g. \"https://wiki.example.com/runbooks/\"",
                    ));
                }
                if text.ends_with('/') {
                    text.to_string()
                } else {
                    format!("{text}/")
                }
            }
        };
        validate_duration("defaults.interval", raw.defaults.interval)?;
        validate_duration("defaults.timeout", raw.defaults.timeout)?;
        validate_interval("defaults.interval", raw.defaults.interval)?;
        if raw.registries.is_empty() {
            return Err(ConfigError::invalid(
                "registries",
                "no registry is configured",
                "add a [[registries]] entry with name and url, or set OCI__RegistryUrl",
            ));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut registries = Vec::with_capacity(raw.registries.len());
        let mut warnings = Vec::new();
        for (i, reg) in raw.registries.iter().enumerate() {
            let key = |k: &str| format!("registries[{i}].{k}");
            let name = reg.name.clone().unwrap_or_default();
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key("name"),
                    "missing or empty",
                    "give every registry a unique, non-empty name (it becomes the `registry` label)",
                ));
            }
            if let Some(first) = seen.insert(name.clone(), i) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("\"{name}\" is already the name of registries[{first}]"),
                    "give every registry a unique name",
                ));
            }
            registries.push(Arc::new(resolve_registry(
                i,
                name,
                reg,
                &raw.defaults,
                &mut warnings,
            )?));
        }
        Ok(Config {
            mode: raw.mode.unwrap_or_default(),
            min_interval,
            max_concurrency,
            runbook_base_url,
            history_size: raw.history_size.unwrap_or(100),
            source: None,
            shard: Shard::ALL,
            registries,
            warnings,
        })
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::registry::resolve_proxy_url;
    use super::*;

    #[test]
    fn a_proxy_password_never_reaches_debug_output() {
        let url = resolve_proxy_url("proxy_url", "http://monitor:hunter2@proxy.example.com:3128")
            .expect("a proxy URL with credentials is accepted");
        let shown = format!("{:?}", ProxyUrl(Box::new(url)));
        assert_eq!(shown, "ProxyUrl(http://proxy.example.com:3128)");
    }
}
