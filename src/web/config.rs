//! The web config file as written: its keys and their types, relative paths resolved, the
//! values of `http_server_config.headers` checked, and [`WebConfigError`], whose text names
//! the file, the key, the problem and the fix.
//!
//! Reads only the web config file itself. Does not read the files it names (certificates and
//! keys are `tls`'s), check bcrypt hashes (`auth`'s) or decide when to reload (`mod.rs`).

use std::path::{Path, PathBuf};

use http::header::{HeaderName, HeaderValue};
use serde_yaml_ng::{Mapping, Value};

/// Headers that may be configured, with their allowed values (empty: any), as exporter-toolkit.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

const TOP_KEYS: &[&str] = &[
    "tls_server_config",
    "http_server_config",
    "basic_auth_users",
    "rate_limit",
];
const TLS_KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
];
const HTTP_KEYS: &[&str] = &["http2", "headers"];

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

#[derive(Default)]
pub(super) struct RawTls {
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) client_auth_type: Option<String>,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) cipher_suites: Option<Vec<String>>,
    pub(super) curve_preferences: Option<Vec<String>>,
    pub(super) min_version: Option<String>,
    pub(super) max_version: Option<String>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
    pub(super) client_allowed_sans: Option<Vec<String>>,
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

    /// Rejects keys not in `known`.
    fn check_keys(
        &self,
        section: &str,
        map: &Mapping,
        known: &[&str],
    ) -> Result<(), WebConfigError> {
        for k in map.keys() {
            let name = match k.as_str() {
                Some(s) => s.to_string(),
                None => format!("{k:?}"),
            };
            if !known.contains(&name.as_str()) {
                let key = if section.is_empty() {
                    name
                } else {
                    format!("{section}.{name}")
                };
                let where_ = if section.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {section}")
                };
                return Err(self.invalid(
                    key,
                    "unknown key",
                    format!(
                        "remove it or use one of the keys allowed {where_}: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A section: a mapping, or absent/null.
    fn section<'v>(
        &self,
        map: &'v Mapping,
        key: &str,
    ) -> Result<Option<&'v Mapping>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid(
                key,
                "is not a mapping",
                "write it as `key: value` lines indented under it",
            )),
        }
    }

    /// A string; empty counts as absent (as in exporter-toolkit).
    fn string(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<String>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a string",
                "quote the value",
            )),
        }
    }

    fn bool(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<bool>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a boolean",
                "use true or false",
            )),
        }
    }

    fn list(
        &self,
        map: &Mapping,
        section: &str,
        key: &str,
    ) -> Result<Option<Vec<String>>, WebConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        self.invalid(
                            format!("{section}.{key}"),
                            "holds an item that is not a string",
                            "write a list of names",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.invalid(
                format!("{section}.{key}"),
                "is not a list",
                "write a list, e.g. [a, b]",
            )),
        }
    }

    /// A mapping of strings to strings, in file order.
    fn string_map(
        &self,
        map: &Mapping,
        key: &str,
        what: &str,
    ) -> Result<Option<Vec<(String, String)>>, WebConfigError> {
        let Some(m) = self.section(map, key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (k, v) in m {
            let Some(k) = k.as_str() else {
                return Err(self.invalid(
                    key,
                    format!("holds a {what} name that is not a string"),
                    "quote the name",
                ));
            };
            let Some(v) = v.as_str() else {
                if what == "user" {
                    return Err(not_bcrypt(self, &format!("{key}.{k}")));
                }
                return Err(self.invalid(
                    format!("{key}.{k}"),
                    "is not a string",
                    "quote the value",
                ));
            };
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Some(out))
    }
}

/// Relative paths are relative to the web config file's directory.
fn resolve(config: &Path, file: Option<String>) -> Option<PathBuf> {
    let file = PathBuf::from(file?);
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
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| WebConfigError::Syntax {
        path: shown.clone(),
        problem: e.to_string(),
    })?;
    let cx = Ctx { path };
    let top = match value {
        Value::Null => return Ok(Raw::default()),
        Value::Mapping(m) => m,
        _ => {
            return Err(WebConfigError::Syntax {
                path: shown,
                problem: "the file is not a mapping of keys".into(),
            });
        }
    };
    cx.check_keys("", &top, TOP_KEYS)?;
    if top.contains_key("rate_limit") {
        return Err(cx.invalid(
            "rate_limit",
            "is not supported by oci-registry-exporter",
            "remove it; put a reverse proxy in front of the exporter to limit request rates",
        ));
    }
    let mut raw = Raw::default();
    if let Some(tls) = cx.section(&top, "tls_server_config")? {
        cx.check_keys("tls_server_config", tls, TLS_KEYS)?;
        let s = "tls_server_config";
        raw.tls = RawTls {
            cert: cx.string(tls, s, "cert")?,
            key: cx.string(tls, s, "key")?,
            client_ca: cx.string(tls, s, "client_ca")?,
            cert_file: resolve(path, cx.string(tls, s, "cert_file")?),
            key_file: resolve(path, cx.string(tls, s, "key_file")?),
            client_auth_type: cx.string(tls, s, "client_auth_type")?,
            client_ca_file: resolve(path, cx.string(tls, s, "client_ca_file")?),
            cipher_suites: cx.list(tls, s, "cipher_suites")?,
            curve_preferences: cx.list(tls, s, "curve_preferences")?,
            min_version: cx.string(tls, s, "min_version")?,
            max_version: cx.string(tls, s, "max_version")?,
            prefer_server_cipher_suites: cx.bool(tls, s, "prefer_server_cipher_suites")?,
            client_allowed_sans: cx.list(tls, s, "client_allowed_sans")?,
        };
    }
    if let Some(http) = cx.section(&top, "http_server_config")? {
        cx.check_keys("http_server_config", http, HTTP_KEYS)?;
        raw.http2 = cx.bool(http, "http_server_config", "http2")?;
        let headers = cx
            .string_map(http, "headers", "header")
            .map_err(|e| prefix_key(e, "http_server_config."))?;
        raw.headers = headers.unwrap_or_default();
    }
    raw.users = cx.string_map(&top, "basic_auth_users", "user")?;
    Ok(raw)
}

fn prefix_key(e: WebConfigError, prefix: &str) -> WebConfigError {
    match e {
        WebConfigError::Invalid {
            path,
            key,
            problem,
            fix,
        } => WebConfigError::Invalid {
            path,
            key: format!("{prefix}{key}"),
            problem,
            fix,
        },
        other => other,
    }
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
    use std::path::{Path, PathBuf};

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
}
