//! Configuration: the raw, as-written form and the validated form.
//!
//! Owns loading (a TOML or YAML file through figment, then environment variables on top),
//! the seed keys of existing doctor deployments (`OCI__RegistryUrl`, `Registry__Url`, ...),
//! and every validation rule. `Config::resolve` is the only way to get a [`Config`], so
//! nothing invalid gets past it. It does not keep secrets: a password file is read when a
//! check needs it (see [`Secret::read`]), so a rotation is picked up and one registry's
//! missing secret never stops the others; loading only reads it once (bounded, see
//! `secret_file`) to warn about an unreadable one.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::outcome::CheckKind;
use crate::secret_file::{self, FileProblem};
use crate::shard::Shard;

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

/// The configuration as written: every key optional, nothing checked beyond its type.
/// Its JSON Schema ([`json_schema`], shipped as config/schema.json and in the Helm chart's
/// values.schema.json) is derived from these types; the doc comments are its descriptions.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "oci-registry-exporter configuration",
    description = "The exporter's configuration file (TOML or YAML); config/reference.toml documents every key."
)]
pub struct RawConfig {
    /// How results reach /metrics: "interval" (a background loop per registry) or "scrape"
    /// (a scrape runs the checks that are due). Default: "interval".
    pub mode: Option<Mode>,
    /// Scrape mode: a result younger than this is served again instead of probing, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<HumanDuration>")]
    pub min_interval: Option<Duration>,
    /// Checks running at once, across all registries; at least 1. Default: 16.
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<usize>,
    /// Base of every runbook link: the folder holding docs/runbooks/'s files.
    pub runbook_base_url: Option<String>,
    /// Results the / page keeps: this many failures and, apart, this many others. Default: 100.
    pub history_size: Option<usize>,
    /// Keys every registry inherits unless it sets them.
    #[serde(default)]
    pub defaults: RawRegistry,
    /// The registries to check.
    #[serde(default)]
    pub registries: Vec<RawRegistry>,
}

/// A duration as humantime writes it: "30s", "1m", "1h 30m", "250ms".
#[derive(JsonSchema)]
#[schemars(
    transparent,
    description = "A duration such as \"30s\", \"1m\", \"1h 30m\" or \"250ms\"."
)]
#[allow(dead_code)] // Only its schema is used.
struct HumanDuration(#[schemars(regex(pattern = r"^\s*[0-9]"))] String);

/// `checks` in the schema: one name, or a list.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(description = "One check name (e.g. \"all\"), or a list of check names.")]
#[allow(dead_code)] // Only its schema is used.
enum CheckNames {
    One(String),
    Many(Vec<String>),
}

/// One registry as written; every key may also stand in `[defaults]`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// The `registry` label; unique, non-empty.
    pub name: Option<String>,
    /// The registry's base URL, http(s)://host[:port][/prefix].
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// The image the pull and referrers checks probe. Default: "library/alpine".
    pub test_repository: Option<String>,
    /// Its tag. Default: "latest".
    pub test_tag: Option<String>,
    /// Where the push and capabilities checks write (upload sessions only).
    pub push_test_repository: Option<String>,
    /// The user name of Basic or token auth.
    pub username: Option<String>,
    /// A password inline (prefer password_file).
    pub password: Option<String>,
    /// A file holding the password, read at each use.
    pub password_file: Option<PathBuf>,
    /// A static bearer token inline (prefer token_file).
    pub token: Option<String>,
    /// A file holding a static bearer token, read at each use.
    pub token_file: Option<PathBuf>,
    /// The checks to run: short names (registry, credentials, pull, push, capabilities,
    /// referrers), ids (check.integration.oci.<name>) or "all"; a list, or one name as a
    /// string. Default: all checks.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(with = "Option<CheckNames>")]
    pub checks: Option<Vec<String>>,
    /// Time between two rounds of this registry's checks, e.g. "60s".
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<HumanDuration>")]
    pub interval: Option<Duration>,
    /// Time one check may take, all its requests included, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<HumanDuration>")]
    pub timeout: Option<Duration>,
    /// PEM file of CA certificates trusted besides the platform's.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (logged as a warning at every load).
    pub insecure_skip_verify: Option<bool>,
    /// PEM client certificate for mutual TLS (with client_key_file).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of client_cert_file.
    pub client_key_file: Option<PathBuf>,
    /// A Docker config.json (or its directory) whose auths or credential helpers give the
    /// credentials.
    pub docker_config: Option<PathBuf>,
    /// Whether the pull check downloads the test image's config blob (default true).
    pub pull_blob: Option<bool>,
    /// The platform whose manifest the pull check follows in an index, `os/arch[/variant]`.
    pub pull_platform: Option<String>,
    /// A forward proxy for every request to this registry (instead of the environment's).
    pub proxy_url: Option<String>,
}

/// The JSON Schema (draft-07, what editors and Helm read) of the configuration file,
/// generated from [`RawConfig`]: shipped as config/schema.json for editors and embedded in
/// the Helm chart's values.schema.json under `config`; tests keep both equal to this.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    let mut value = serde_json::to_value(schema).expect("a generated schema serializes to JSON");
    // `defaults` would show every key as null: its default says nothing a reader needs.
    if let Some(defaults) = value
        .pointer_mut("/properties/defaults")
        .and_then(serde_json::Value::as_object_mut)
    {
        defaults.remove("default");
    }
    value
}

/// `checks`: a list of names, or a single name as a string (`"all"`, as config/reference.toml
/// documents it, or `"pull"`).
fn one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a check name such as \"all\" or a list of check names")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![v.to_string()]))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(name);
            }
            Ok(Some(names))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(OneOrMany)
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

/// The seed keys, as figment hands them over: lower-cased, not snake-cased
/// (`OCI__TestRepository` arrives as `testrepository`).
#[derive(Debug, Default, Deserialize)]
struct SeedKeys {
    registryurl: Option<String>,
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    testrepository: Option<String>,
    testtag: Option<String>,
    pushtestrepository: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SeedEnv {
    #[serde(default)]
    oci: SeedKeys,
    #[serde(default)]
    registry: SeedKeys,
}

impl SeedEnv {
    /// The registry `default` the seed keys describe; `OCI__*` wins over `Registry__*`.
    fn into_registry(self) -> Option<RawRegistry> {
        let (o, r) = (self.oci, self.registry);
        let url = o.registryurl.or(o.url).or(r.url).or(r.registryurl);
        let raw = RawRegistry {
            name: None,
            url,
            username: o.username.or(r.username),
            password: o.password.or(r.password),
            token: o.token.or(r.token),
            test_repository: o.testrepository.or(r.testrepository),
            test_tag: o.testtag.or(r.testtag),
            push_test_repository: o.pushtestrepository.or(r.pushtestrepository),
            ..RawRegistry::default()
        };
        let any = raw.url.is_some()
            || raw.username.is_some()
            || raw.password.is_some()
            || raw.token.is_some()
            || raw.test_repository.is_some()
            || raw.test_tag.is_some()
            || raw.push_test_repository.is_some();
        any.then_some(raw)
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

impl RawConfig {
    /// Reads the file (TOML or YAML by extension, if any), then the environment on top.
    pub fn load(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = path {
            let shown = path.display().to_string();
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: shown,
                    message: "cannot be read (no such file); check the --config path".into(),
                });
            }
            figment = match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => figment.merge(Toml::file_exact(path)),
                Some("yaml" | "yml") => figment.merge(Yaml::file_exact(path)),
                _ => {
                    return Err(ConfigError::File {
                        path: shown,
                        message: "unknown format; name the file *.toml, *.yaml or *.yml".into(),
                    });
                }
            };
        }
        Self::with_environment(figment)
    }

    /// [`RawConfig::load`] of a file's text (TOML, or YAML when `yaml`), for the fuzz
    /// targets: the same providers, the environment on top.
    pub(crate) fn load_text(text: &str, yaml: bool) -> Result<RawConfig, ConfigError> {
        let figment = Figment::from(Serialized::defaults(RawConfig::default()));
        let figment = if yaml {
            figment.merge(Yaml::string(text))
        } else {
            figment.merge(Toml::string(text))
        };
        Self::with_environment(figment)
    }

    /// The environment's keys merged onto `figment` (the file), extracted, and the seed
    /// keys applied.
    fn with_environment(mut figment: Figment) -> Result<RawConfig, ConfigError> {
        // The exporter's own keys: OCI_REGISTRY_EXPORTER_MODE, ..._DEFAULTS__TIMEOUT, ...
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut raw: RawConfig = figment.extract().map_err(|e| figment_error(&e))?;

        let seed: SeedEnv = Figment::from(
            Env::raw()
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k.starts_with("oci__") || k.starts_with("registry__")
                })
                .split("__"),
        )
        .extract()
        .map_err(|e| figment_error(&e))?;
        if let Some(seed) = seed.into_registry() {
            raw.apply_seed(seed);
        }
        Ok(raw)
    }

    /// The seed keys define the registry `default`, or override its keys if the file has one.
    fn apply_seed(&mut self, seed: RawRegistry) {
        let existing = self
            .registries
            .iter_mut()
            .find(|r| r.name.as_deref() == Some("default"));
        match existing {
            Some(r) => {
                let s = seed;
                r.url = s.url.or(r.url.take());
                r.username = s.username.or(r.username.take());
                r.password = s.password.or(r.password.take());
                r.token = s.token.or(r.token.take());
                r.test_repository = s.test_repository.or(r.test_repository.take());
                r.test_tag = s.test_tag.or(r.test_tag.take());
                r.push_test_repository = s.push_test_repository.or(r.push_test_repository.take());
            }
            None => self.registries.push(RawRegistry {
                name: Some("default".into()),
                ..seed
            }),
        }
    }
}

fn figment_error(e: &figment::Error) -> ConfigError {
    use figment::error::Kind;
    // `registries.0.url` is shown as `registries[0].url`, as the validation rules write it.
    let key_of = |path: &[String]| {
        let mut key = String::new();
        for seg in path {
            if seg.parse::<usize>().is_ok() {
                key.push_str(&format!("[{seg}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(seg);
            }
        }
        if key.is_empty() {
            "config".to_string()
        } else {
            key
        }
    };
    let key = key_of(&e.path);
    match &e.kind {
        Kind::UnknownField(field, expected) => ConfigError::invalid(
            key_of(&e.path[..e.path.len().saturating_sub(1)]),
            format!("unknown key `{field}`"),
            format!(
                "remove it or fix its spelling (known keys: {})",
                expected.join(", ")
            ),
        ),
        Kind::UnknownVariant(found, expected) => ConfigError::invalid(
            key,
            format!("unknown value `{found}`"),
            format!("use one of: {}", expected.join(", ")),
        ),
        kind => {
            let last = e.path.last().map(String::as_str).unwrap_or("");
            let fix = if matches!(last, "interval" | "timeout" | "min_interval") {
                "write a duration such as \"30s\" or \"1m 30s\""
            } else {
                "fix the value's type"
            };
            ConfigError::invalid(key, kind.to_string(), fix)
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
/// scheme, host and port, so no `{:?}` of a target leaks them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl(Url);

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

/// A secret value, inline or in a file that is read at each use.
#[derive(Clone)]
pub enum Secret {
    Inline(SecretString),
    File(PathBuf),
}

/// The same inline value, or the same file (read at each use, so its content is not part
/// of the setting).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        match (self, other) {
            (Secret::Inline(a), Secret::Inline(b)) => a.expose_secret() == b.expose_secret(),
            (Secret::File(a), Secret::File(b)) => a == b,
            _ => false,
        }
    }
}

// Hand-written so a secret never reaches a log through `{:?}`.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline([redacted])"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
        }
    }
}

/// A secret that could not be read. Its text names the file and the fix, never the content.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read secret file {path}: {problem}; {fix}")]
pub struct SecretError {
    pub path: String,
    pub problem: String,
    pub fix: String,
}

impl SecretError {
    fn of(path: &Path, problem: FileProblem) -> SecretError {
        SecretError {
            path: path.display().to_string(),
            problem: problem.to_string(),
            fix: problem.fix().to_string(),
        }
    }
}

/// A secret file's content without one trailing newline (as `echo` and Kubernetes tooling
/// write it).
fn secret_text(path: &Path, bytes: Vec<u8>) -> Result<SecretString, SecretError> {
    let text = String::from_utf8(bytes).map_err(|_| SecretError {
        path: path.display().to_string(),
        problem: "it is not UTF-8 text".into(),
        fix: "write the secret as text".into(),
    })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(SecretString::from(trimmed.to_string()))
}

impl Secret {
    /// The current value, for async code: a file is read on every call (so a rotated
    /// secret is picked up) off the async workers, bounded as `secret_file` says.
    pub async fn read(&self) -> Result<SecretString, SecretError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(path) => {
                let bytes = secret_file::read(path)
                    .await
                    .map_err(|p| SecretError::of(path, p))?;
                secret_text(path, bytes)
            }
        }
    }

    /// The current value, for synchronous code (loading the config, tests). It blocks the
    /// caller for at most `secret_file::READ_TIMEOUT`; async code uses [`Secret::read`].
    pub fn expose(&self) -> Result<SecretString, SecretError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(path) => {
                let bytes =
                    secret_file::read_blocking(path).map_err(|p| SecretError::of(path, p))?;
                secret_text(path, bytes)
            }
        }
    }

    fn check_readable(&self) -> Option<SecretError> {
        match self.expose() {
            Err(e) => Some(e),
            Ok(s) if s.expose_secret().is_empty() => Some(SecretError {
                path: match self {
                    Secret::File(p) => p.display().to_string(),
                    Secret::Inline(_) => "(inline)".into(),
                },
                problem: "empty".into(),
                fix: "write the secret into it".into(),
            }),
            Ok(_) => None,
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
            let d = &raw.defaults;
            let url = resolve_url(&key("url"), reg.url.as_deref().or(d.url.as_deref()))?;
            let interval = reg.interval.or(d.interval).unwrap_or(DEFAULT_INTERVAL);
            validate_duration(&key("interval"), Some(interval))?;
            validate_interval(&key("interval"), Some(interval))?;
            // An unset timeout is the default, shortened to the interval: a check must end
            // before the next round of its registry is due.
            let timeout = reg
                .timeout
                .or(d.timeout)
                .unwrap_or(DEFAULT_TIMEOUT.min(interval));
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
            let checks = match reg.checks.as_ref().or(d.checks.as_ref()) {
                None => CheckKind::ALL.to_vec(),
                Some(names) => resolve_checks(&key("checks"), names)?,
            };
            let credentials = resolve_credentials(&key(""), reg, d)?;
            match &credentials {
                Credentials::Basic { password: None, .. } => warnings.push(format!(
                    "{}: registry \"{name}\" has a username but no password or password_file; a secret reference probably failed to resolve (the credentials check will fail)",
                    key("password")
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
            if insecure_of(reg, d) {
                warnings.push(format!(
                    "registry \"{name}\": insecure_skip_verify is set: TLS certificates are not verified; set ca_file instead"
                ));
            }
            let ca_file = reg.ca_file.clone().or(d.ca_file.clone());
            if let Some(path) = &ca_file {
                validate_ca_file(&key("ca_file"), path)?;
            }
            let client_cert = resolve_client_cert(
                &key(""),
                reg.client_cert_file.clone().or(d.client_cert_file.clone()),
                reg.client_key_file.clone().or(d.client_key_file.clone()),
            )?;
            let insecure = reg
                .insecure_skip_verify
                .or(d.insecure_skip_verify)
                .unwrap_or(false);
            let repo = |v: &Option<String>, dv: &Option<String>, k: &str, default: &str| {
                let value = v.clone().or(dv.clone()).unwrap_or_else(|| default.into());
                validate_repository(&key(k), &value).map(|_| value)
            };
            let test_repository = repo(
                &reg.test_repository,
                &d.test_repository,
                "test_repository",
                "library/alpine",
            )?;
            let push_test_repository = repo(
                &reg.push_test_repository,
                &d.push_test_repository,
                "push_test_repository",
                "stellaops/doctor-test",
            )?;
            let test_tag = reg
                .test_tag
                .clone()
                .or(d.test_tag.clone())
                .unwrap_or_else(|| "latest".into());
            validate_reference(&key("test_tag"), &test_tag)?;
            let pull_blob = reg.pull_blob.or(d.pull_blob).unwrap_or(true);
            let pull_platform = reg
                .pull_platform
                .clone()
                .or(d.pull_platform.clone())
                .unwrap_or_else(|| DEFAULT_PULL_PLATFORM.into());
            validate_platform(&key("pull_platform"), &pull_platform)?;
            let proxy_url = match reg.proxy_url.as_deref().or(d.proxy_url.as_deref()) {
                None => None,
                Some(text) => Some(ProxyUrl(resolve_proxy_url(&key("proxy_url"), text)?)),
            };
            registries.push(Arc::new(Target {
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
                    ca_file,
                    insecure_skip_verify: insecure,
                    client_cert,
                },
                pull_blob,
                pull_platform,
                proxy_url,
            }));
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

fn insecure_of(reg: &RawRegistry, d: &RawRegistry) -> bool {
    reg.insecure_skip_verify
        .or(d.insecure_skip_verify)
        .unwrap_or(false)
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

fn validate_duration(key: &str, d: Option<Duration>) -> Result<(), ConfigError> {
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
fn validate_interval(key: &str, d: Option<Duration>) -> Result<(), ConfigError> {
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

fn resolve_credentials(
    prefix: &str,
    reg: &RawRegistry,
    d: &RawRegistry,
) -> Result<Credentials, ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    // A registry's own credentials replace the defaults' as a whole, never key by key:
    // mixing alice's username with the defaults' password would be a surprise.
    let own = reg.username.is_some()
        || reg.password.is_some()
        || reg.password_file.is_some()
        || reg.token.is_some()
        || reg.token_file.is_some();
    let src = if own { reg } else { d };
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
        (None, None, None) => Ok(match docker_config_path(reg, d) {
            Some(path) => Credentials::DockerConfig { path },
            None => Credentials::Anonymous,
        }),
    }
}

/// The Docker config for a registry without explicit credentials: `docker_config`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, the latter two only if present.
fn docker_config_path(reg: &RawRegistry, d: &RawRegistry) -> Option<PathBuf> {
    if let Some(path) = reg.docker_config.clone().or(d.docker_config.clone()) {
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
fn resolve_proxy_url(key: &str, text: &str) -> Result<Url, ConfigError> {
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

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn a_proxy_password_never_reaches_debug_output() {
        let url = resolve_proxy_url("proxy_url", "http://monitor:hunter2@proxy.example.com:3128")
            .expect("a proxy URL with credentials is accepted");
        let shown = format!("{:?}", ProxyUrl(url));
        assert_eq!(shown, "ProxyUrl(http://proxy.example.com:3128)");
    }
}
