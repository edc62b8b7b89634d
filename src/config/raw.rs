//! The configuration as written: [`RawConfig`] and [`RawRegistry`] (serde + figment,
//! `deny_unknown_fields`), their JSON Schema ([`json_schema`]), loading a TOML or YAML file
//! with the environment on top, the seed keys of existing doctor deployments
//! (`OCI__RegistryUrl`, `Registry__Url`, ...), and figment's errors worded by key.
//!
//! Nothing here is validated beyond its type: that is `Config::resolve`'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, ENV_PREFIX, Mode};

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

impl RawRegistry {
    /// This registry's keys over `defaults` (`[defaults]`), key by key, except the
    /// credentials: a registry that sets any of `username`, `password`, `password_file`,
    /// `token` or `token_file` takes its own as a whole and none of the defaults' (mixing
    /// alice's username with the defaults' password would be a surprise). `name` is the
    /// registry's own: a default name would make every registry's the same.
    ///
    /// The one place defaults are merged. The result is a struct literal without `..`, so a
    /// key added to [`RawRegistry`] does not compile until it says here how it takes its
    /// default.
    pub(super) fn over(&self, defaults: &RawRegistry) -> RawRegistry {
        let (own, d) = (self.clone(), defaults.clone());
        let has_credentials = |r: &RawRegistry| {
            r.username.is_some()
                || r.password.is_some()
                || r.password_file.is_some()
                || r.token.is_some()
                || r.token_file.is_some()
        };
        let creds = if has_credentials(&own) { &own } else { &d }.clone();
        RawRegistry {
            name: own.name,
            username: creds.username,
            password: creds.password,
            password_file: creds.password_file,
            token: creds.token,
            token_file: creds.token_file,
            url: own.url.or(d.url),
            test_repository: own.test_repository.or(d.test_repository),
            test_tag: own.test_tag.or(d.test_tag),
            push_test_repository: own.push_test_repository.or(d.push_test_repository),
            checks: own.checks.or(d.checks),
            interval: own.interval.or(d.interval),
            timeout: own.timeout.or(d.timeout),
            ca_file: own.ca_file.or(d.ca_file),
            insecure_skip_verify: own.insecure_skip_verify.or(d.insecure_skip_verify),
            client_cert_file: own.client_cert_file.or(d.client_cert_file),
            client_key_file: own.client_key_file.or(d.client_key_file),
            docker_config: own.docker_config.or(d.docker_config),
            pull_blob: own.pull_blob.or(d.pull_blob),
            pull_platform: own.pull_platform.or(d.pull_platform),
            proxy_url: own.proxy_url.or(d.proxy_url),
        }
    }
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
