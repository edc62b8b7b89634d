//! The web config file as written: its keys and their types (serde derive with
//! `deny_unknown_fields`), relative paths resolved, the values of `http_server_config.headers`
//! checked, and [`WebConfigError`], whose text names the file, the key, the problem and the
//! fix.
//!
//! serde's own errors ("unknown field", "invalid type") name neither the key path nor the fix,
//! so [`parse`] takes the path of a failure from `serde_path_to_error` and words the error from
//! [`KEYS`], the table of what each key must hold; the serde structs and that table are kept
//! equal by a test.
//!
//! Reads only the web config file itself. Does not read the files it names (certificates and
//! keys are `server_tls`'s), check bcrypt hashes (`auth`'s) or decide when to reload (`mod.rs`).

use std::path::{Path, PathBuf};

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_path_to_error::Segment;
use serde_yaml_ng::Value;

/// Headers that may be configured, with their allowed values (empty: any), as exporter-toolkit.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// What a key must hold, for the wording of an error at that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A section of `key: value` lines, or a mapping of names to strings.
    Mapping,
    String,
    Bool,
    /// A list of strings.
    List,
    /// Accepted by exporter-toolkit but not here, with any value.
    Refused,
}

/// Every section ("" for the top level) and its keys, in the order error messages list them.
/// Must name exactly the fields of the serde structs below (see the test).
const KEYS: &[(&str, &[(&str, Kind)])] = &[
    (
        "",
        &[
            ("tls_server_config", Kind::Mapping),
            ("http_server_config", Kind::Mapping),
            ("basic_auth_users", Kind::Mapping),
            ("rate_limit", Kind::Refused),
        ],
    ),
    (
        "tls_server_config",
        &[
            ("cert", Kind::String),
            ("key", Kind::String),
            ("client_ca", Kind::String),
            ("cert_file", Kind::String),
            ("key_file", Kind::String),
            ("client_auth_type", Kind::String),
            ("client_ca_file", Kind::String),
            ("cipher_suites", Kind::List),
            ("curve_preferences", Kind::List),
            ("min_version", Kind::String),
            ("max_version", Kind::String),
            ("prefer_server_cipher_suites", Kind::Bool),
            ("client_allowed_sans", Kind::List),
        ],
    ),
    (
        "http_server_config",
        &[("http2", Kind::Bool), ("headers", Kind::Mapping)],
    ),
];

/// A web config file that could not be used. The text names the file and the key, never a
/// secret (a password hash, a private key).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot be read ({problem}); check the --web.config.file path")]
    Read { path: String, problem: String },
    #[error("{path}: not valid YAML ({problem}); fix the syntax")]
    Syntax { path: String, problem: String },
    #[error("{path}: {key}: {problem}; {fix}")]
    Invalid {
        path: String,
        key: String,
        problem: String,
        fix: String,
    },
}

/// The file's content, keys checked and paths resolved; nothing else read yet.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) tls: RawTls,
    pub(super) http2: Option<bool>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) users: Option<Vec<(String, String)>>,
}

/// The file as written. A section that is absent or empty (`key:` alone) is `None`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<HttpServerConfig>,
    basic_auth_users: Option<Pairs>,
    /// Refused whatever it holds, `rate_limit:` alone included: silently serving without the
    /// limit someone asked for would be worse than not starting.
    #[serde(rename = "rate_limit", default, deserialize_with = "refuse")]
    _rate_limit: (),
}

/// `tls_server_config`; an empty string counts as absent, as in exporter-toolkit.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTls {
    #[serde(deserialize_with = "non_empty")]
    pub(super) cert: Option<String>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) key: Option<String>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) client_ca: Option<String>,
    /// Relative to the web config file's directory once [`parse`] resolved it.
    #[serde(deserialize_with = "non_empty")]
    pub(super) cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) key_file: Option<PathBuf>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) client_auth_type: Option<String>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) cipher_suites: Option<Vec<String>>,
    pub(super) curve_preferences: Option<Vec<String>>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) min_version: Option<String>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) max_version: Option<String>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
    pub(super) client_allowed_sans: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpServerConfig {
    http2: Option<bool>,
    headers: Option<Pairs>,
}

/// A mapping of names to strings in file order (`basic_auth_users`, `headers`), so that of
/// two spellings of one header the later wins, as it always has.
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pairs, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    pairs.push((name, map.next_value::<String>()?));
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

fn non_empty<'de, D: Deserializer<'de>, T: From<String>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|s| !s.is_empty())
        .map(T::from))
}

fn refuse<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    IgnoredAny::deserialize(deserializer)?;
    // Worded by `schema_error` from the key's Kind::Refused, like every other error here.
    Err(D::Error::custom("rate_limit is not supported"))
}

impl RawTls {
    /// exporter-toolkit's rule: any of these turns TLS on.
    pub(super) fn enabled(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.client_ca.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca_file.is_some()
            || self.client_auth_type.is_some()
    }
}

impl Raw {
    pub(super) fn files(&self) -> Vec<PathBuf> {
        [
            &self.tls.cert_file,
            &self.tls.key_file,
            &self.tls.client_ca_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// Builds errors that name the file.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> WebConfigError {
        WebConfigError::Invalid {
            path: self.path.display().to_string(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Relative paths are relative to the web config file's directory.
fn resolve(config: &Path, file: Option<PathBuf>) -> Option<PathBuf> {
    let file = file?;
    Some(if file.is_absolute() {
        file
    } else {
        config.parent().unwrap_or(Path::new("")).join(file)
    })
}

pub(super) fn parse(path: &Path) -> Result<Raw, WebConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Read {
        path: shown.clone(),
        problem: io_problem(&e),
    })?;
    parse_text(&text, path)
}

/// Whether the web config `text` is accepted: for the fuzz target (src/fuzzing.rs).
pub(crate) fn accepts(text: &str) -> bool {
    parse_text(text, Path::new("/etc/oci-registry-exporter/web.yml")).is_ok()
}

/// The web config `text` of the file at `path` (which relative file names are joined to).
pub(super) fn parse_text(text: &str, path: &Path) -> Result<Raw, WebConfigError> {
    let shown = path.display().to_string();
    // YAML first, on its own: its errors are syntax errors, worded by the YAML parser; and
    // `schema_error` looks in the tree for a key that is not a string, to name it.
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Syntax {
        path: shown.clone(),
        problem: e.to_string(),
    })?;
    match value {
        // An empty file (or only comments): nothing on.
        Value::Null => return Ok(Raw::default()),
        Value::Mapping(_) => {}
        _ => {
            return Err(WebConfigError::Syntax {
                path: shown,
                problem: "the file is not a mapping of keys".into(),
            });
        }
    }
    let cx = Ctx { path };
    let file: WebFile =
        serde_path_to_error::deserialize(&value).map_err(|e| schema_error(&cx, &value, &e))?;
    let mut tls = file.tls_server_config.unwrap_or_default();
    tls.cert_file = resolve(path, tls.cert_file);
    tls.key_file = resolve(path, tls.key_file);
    tls.client_ca_file = resolve(path, tls.client_ca_file);
    let http = file.http_server_config.unwrap_or_default();
    Ok(Raw {
        tls,
        http2: http.http2,
        headers: http.headers.map(|h| h.0).unwrap_or_default(),
        users: file.basic_auth_users.map(|u| u.0),
    })
}

/// One step of the key path of a serde error.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    /// A key that is not a string (a number, a list...).
    OddKey,
    Item,
}

/// Words a serde error from where it happened and what the key there must hold: serde's
/// message is never shown, as it would quote the value (a password, say).
///
/// Longer than most functions: its `match` has one arm per place in the file an error can
/// be, a table kept whole so that every place's words are read side by side.
fn schema_error(
    cx: &Ctx<'_>,
    root: &Value,
    e: &serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> WebConfigError {
    let steps: Vec<Step<'_>> = e
        .path()
        .iter()
        .map(|segment| match segment {
            Segment::Map { key } => Step::Key(key),
            Segment::Seq { .. } => Step::Item,
            // `Unknown` is a key that is not a string; there are no enums in the file.
            Segment::Enum { .. } | Segment::Unknown => Step::OddKey,
        })
        .collect();
    let not_a = |key: &str, kind: Kind| match kind {
        Kind::Mapping => cx.invalid(
            key,
            "is not a mapping",
            "write it as `key: value` lines indented under it",
        ),
        Kind::String => cx.invalid(key, "is not a string", "quote the value"),
        Kind::Bool => cx.invalid(key, "is not a boolean", "use true or false"),
        Kind::List => cx.invalid(key, "is not a list", "write a list, e.g. [a, b]"),
        Kind::Refused => cx.invalid(
            key,
            "is not supported by oci-registry-exporter",
            "remove it; put a reverse proxy in front of the exporter to limit request rates",
        ),
    };
    match steps.as_slice() {
        // A key of the top level or of a section: unknown, or holding the wrong type.
        [Step::Key(name)] => key_error(cx, root, "", Some(name), not_a),
        [Step::OddKey] => key_error(cx, root, "", None, not_a),
        [
            Step::Key(section @ ("tls_server_config" | "http_server_config")),
            Step::Key(name),
        ] => key_error(cx, root, section, Some(name), not_a),
        [
            Step::Key(section @ ("tls_server_config" | "http_server_config")),
            Step::OddKey,
        ] => key_error(cx, root, section, None, not_a),
        [Step::Key("tls_server_config"), Step::Key(name), Step::Item] => cx.invalid(
            format!("tls_server_config.{name}"),
            "holds an item that is not a string",
            "write a list of names",
        ),
        // The name → string mappings.
        [Step::Key("basic_auth_users"), Step::OddKey] => cx.invalid(
            "basic_auth_users",
            "holds a user name that is not a string",
            "quote the name",
        ),
        [Step::Key("basic_auth_users"), Step::Key(user)] => {
            not_bcrypt(cx, &format!("basic_auth_users.{user}"))
        }
        [
            Step::Key("http_server_config"),
            Step::Key("headers"),
            Step::OddKey,
        ] => cx.invalid(
            "http_server_config.headers",
            "holds a header name that is not a string",
            "quote the name",
        ),
        [
            Step::Key("http_server_config"),
            Step::Key("headers"),
            Step::Key(name),
        ] => cx.invalid(
            format!("http_server_config.headers.{name}"),
            "is not a string",
            "quote the value",
        ),
        // Not reached with the structs above; still an error that names the place.
        _ => cx.invalid(
            if e.path().to_string() == "." {
                "the top level".to_string()
            } else {
                e.path().to_string()
            },
            "does not fit the web config's structure",
            "compare it with the keys and values in the exporter-toolkit web config documentation",
        ),
    }
}

/// An error at a key of the top level or of a section: `name` is `None` for a key that is
/// not a string, shown as YAML's parser sees it (`Number(1)`).
fn key_error(
    cx: &Ctx<'_>,
    root: &Value,
    section: &str,
    name: Option<&str>,
    not_a: impl Fn(&str, Kind) -> WebConfigError,
) -> WebConfigError {
    let keys = KEYS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(&[][..], |(_, keys)| *keys);
    let odd_name = || {
        let map = if section.is_empty() {
            Some(root)
        } else {
            root.get(section)
        };
        map.and_then(Value::as_mapping)
            .and_then(|m| m.keys().find(|k| k.as_str().is_none()))
            .map_or_else(|| "?".to_string(), |k| format!("{k:?}"))
    };
    let name = name.map_or_else(odd_name, str::to_string);
    let key = if section.is_empty() {
        name.clone()
    } else {
        format!("{section}.{name}")
    };
    if let Some((_, kind)) = keys.iter().find(|(k, _)| *k == name) {
        return not_a(&key, *kind);
    }
    let where_ = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {section}")
    };
    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    cx.invalid(
        key,
        "unknown key",
        format!(
            "remove it or use one of the keys allowed {where_}: {}",
            names.join(", ")
        ),
    )
}

pub(super) fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string().to_lowercase(),
    }
}

pub(super) fn build_headers(
    cx: &Ctx<'_>,
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let allowed: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    for (name, value) in headers {
        let key = format!("http_server_config.headers.{name}");
        let Some((canonical, values)) = ALLOWED_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            return Err(cx.invalid(
                key,
                "this header cannot be configured",
                format!("use one of {}", allowed.join(", ")),
            ));
        };
        if !values.is_empty() && !values.contains(&value.as_str()) {
            return Err(cx.invalid(
                key,
                format!("{value:?} is not an allowed value"),
                format!("use one of {}", values.join(", ")),
            ));
        }
        let Ok(value) = HeaderValue::from_str(value) else {
            return Err(cx.invalid(
                key,
                "the value holds characters not allowed in an HTTP header",
                "use visible ASCII characters only",
            ));
        };
        out.push((HeaderName::from_static(lower(canonical)), value));
    }
    Ok(out)
}

/// `HeaderName::from_static` wants lowercase.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

pub(super) fn not_bcrypt(cx: &Ctx<'_>, key: &str) -> WebConfigError {
    cx.invalid(
        key,
        "is not a bcrypt hash (the value must be a hash such as $2y$10$..., never the password itself)",
        "generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` and paste it",
    )
}

#[cfg(test)]
mod tests {
    use super::super::Web;
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", text);
        Web::load(&p)
            .expect_err("should be rejected")
            .to_string()
            .replace(&p.display().to_string(), "web.yml")
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(
            err("tls_server_config:\n  cert_flie: x\n"),
            "web.yml: tls_server_config.cert_flie: unknown key; remove it or use one of the keys allowed in tls_server_config: cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, cipher_suites, curve_preferences, min_version, max_version, prefer_server_cipher_suites, client_allowed_sans"
        );
        assert!(err("basic_auth:\n  a: b\n").starts_with("web.yml: basic_auth: unknown key; "));
        assert!(
            err("rate_limit:\n  burst: 1\n").starts_with("web.yml: rate_limit: is not supported")
        );
    }

    #[test]
    fn headers_are_limited_as_in_exporter_toolkit() {
        assert!(
            err("http_server_config:\n  headers:\n    Content-Type: x\n")
                .starts_with("web.yml: http_server_config.headers.Content-Type: this header cannot be configured; ")
        );
        assert_eq!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web.yml: http_server_config.headers.X-Frame-Options: \"allow\" is not an allowed value; use one of deny, sameorigin"
        );
    }

    #[test]
    fn a_password_is_never_echoed() {
        let e = err("basic_auth_users:\n  alice: hunter2\n");
        assert!(
            e.starts_with("web.yml: basic_auth_users.alice: is not a bcrypt hash"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    /// The wording of the hand-written walker this parser replaced, for each kind of mistake
    /// serde reports (wrong type, unknown or non-string key, bad list item, `rate_limit`).
    #[test]
    fn serde_errors_keep_their_wording() {
        let cases = [
            (
                "tls_server_config: x\n",
                "tls_server_config: is not a mapping; write it as `key: value` lines indented under it",
            ),
            (
                "http_server_config:\n  headers: [a]\n",
                "http_server_config.headers: is not a mapping; write it as `key: value` lines indented under it",
            ),
            (
                "tls_server_config:\n  cert_file: 1\n",
                "tls_server_config.cert_file: is not a string; quote the value",
            ),
            (
                "http_server_config:\n  http2: yes\n",
                "http_server_config.http2: is not a boolean; use true or false",
            ),
            (
                "tls_server_config:\n  cipher_suites: TLS_AES_128_GCM_SHA256\n",
                "tls_server_config.cipher_suites: is not a list; write a list, e.g. [a, b]",
            ),
            (
                "tls_server_config:\n  client_allowed_sans: [a, 1]\n",
                "tls_server_config.client_allowed_sans: holds an item that is not a string; write a list of names",
            ),
            (
                "http_server_config:\n  1: x\n",
                "http_server_config.Number(1): unknown key; remove it or use one of the keys allowed in http_server_config: http2, headers",
            ),
            (
                "~: x\n",
                "Null: unknown key; remove it or use one of the keys allowed at the top level: tls_server_config, http_server_config, basic_auth_users, rate_limit",
            ),
            (
                "basic_auth_users:\n  1: x\n",
                "basic_auth_users: holds a user name that is not a string; quote the name",
            ),
            (
                "basic_auth_users:\n  alice: [hunter2]\n",
                "basic_auth_users.alice: is not a bcrypt hash (the value must be a hash such as $2y$10$..., never the password itself); generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` and paste it",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: [deny]\n",
                "http_server_config.headers.X-Frame-Options: is not a string; quote the value",
            ),
            (
                "http_server_config:\n  headers:\n    true: x\n",
                "http_server_config.headers: holds a header name that is not a string; quote the name",
            ),
            (
                "rate_limit:\n",
                "rate_limit: is not supported by oci-registry-exporter; remove it; put a reverse proxy in front of the exporter to limit request rates",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(text), format!("web.yml: {expected}"), "{text:?}");
        }
        // Empty values count as absent; an empty file turns nothing on.
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: ''\n  min_version:\nhttp_server_config:\nbasic_auth_users: {}\n",
        );
        let raw = parse(&p).unwrap();
        assert!(!raw.tls.enabled() && raw.users.is_some_and(|u| u.is_empty()));
    }

    /// A key a serde struct accepts but [`KEYS`] lacks (or the reverse) would be accepted
    /// without being listed in the unknown-key message, or worded as unknown when it is not.
    #[test]
    fn keys_match_the_serde_structs() {
        // serde's own message lists the fields a struct accepts: "unknown field `zz`,
        // expected one of `a`, `b`".
        fn accepted<T: serde::de::DeserializeOwned>() -> Vec<String> {
            let value: Value = serde_yaml_ng::from_str("zz: 1").unwrap();
            let message = match serde_yaml_ng::from_value::<T>(value) {
                Ok(_) => panic!("an unknown field was accepted"),
                Err(e) => e.to_string(),
            };
            message
                .split('`')
                .skip(3)
                .step_by(2)
                .map(str::to_string)
                .collect()
        }
        let listed = |section: &str| -> Vec<String> {
            KEYS.iter()
                .find(|(s, _)| *s == section)
                .unwrap()
                .1
                .iter()
                .map(|(k, _)| k.to_string())
                .collect()
        };
        assert_eq!(accepted::<WebFile>(), listed(""));
        assert_eq!(accepted::<RawTls>(), listed("tls_server_config"));
        assert_eq!(accepted::<HttpServerConfig>(), listed("http_server_config"));
    }

    /// serde reads through YAML tags (`!foo x` is `x`); the walker it replaced did so only in
    /// basic_auth_users and headers, and skipped a tagged key without a word.
    #[test]
    fn a_tagged_key_is_not_skipped() {
        assert!(err("!foo rate_limit: 1\n").starts_with("web.yml: rate_limit: is not supported"),);
    }
}
