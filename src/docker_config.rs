//! Credentials from a Docker `config.json`: `auths`, `credHelpers` and `credsStore`.
//!
//! Owns reading the file, matching a registry to its entry the way docker does (scheme and
//! path stripped, `https://index.docker.io/v1/` for Docker Hub), and running credential
//! helpers (`docker-credential-<name> get`, the server on stdin, a timeout, a bounded
//! answer). A Kubernetes image pull secret (`.dockerconfigjson`) mounted as `config.json`
//! is the same format. It does not authenticate: the client uses what it returns.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::outcome::AuthMethod;
use crate::secret_file::{self, FileProblem};

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(5);
/// A helper's answer is small; more than this is refused.
const MAX_HELPER_OUTPUT: u64 = 64 * 1024;
/// Docker Hub's key in `auths` and for helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials found for a registry.
#[derive(Debug)]
pub enum DockerAuth {
    Basic {
        username: String,
        password: SecretString,
    },
    /// An OAuth2 refresh token, exchanged at the token endpoint with the refresh_token grant.
    IdentityToken { token: SecretString },
}

/// What the lookup found and where it came from.
#[derive(Debug)]
pub struct Found {
    pub auth: DockerAuth,
    pub method: AuthMethod,
}

/// The Docker config could not be used. The text never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read docker config {path}: {problem}; {fix}")]
    Read {
        path: String,
        problem: String,
        fix: &'static str,
    },
    #[error("docker config {path} is not valid JSON ({problem}); fix the file")]
    Parse { path: String, problem: String },
    #[error(
        "docker config {path}: the auth entry for {host} is not base64 of user:password; fix the entry"
    )]
    BadAuth { path: String, host: String },
    #[error(
        "credential helper docker-credential-{helper} {problem}; check that it is installed and on PATH"
    )]
    Helper { helper: String, problem: String },
}

#[derive(Deserialize, Default)]
pub(crate) struct File {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The key docker uses for a registry: `host[:port]`, or Docker Hub's legacy URL.
pub fn registry_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        _ => match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        },
    }
}

/// A config key reduced the way docker compares them: scheme and path dropped.
fn normalize(key: &str) -> String {
    if key == DOCKER_HUB_KEY || key.contains("index.docker.io") || key == "docker.io" {
        return DOCKER_HUB_KEY.to_string();
    }
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    no_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn find<'a, T>(map: &'a HashMap<String, T>, key: &str) -> Option<&'a T> {
    map.iter()
        .find(|(k, _)| normalize(k) == key.to_ascii_lowercase())
        .map(|(_, v)| v)
}

/// Looks up credentials for `registry` in the config at `path`. `None` means the file has
/// nothing for it (docker then pulls anonymously, and so do we).
pub async fn lookup(path: &Path, registry: &Url) -> Result<Option<Found>, DockerConfigError> {
    let shown = path.display().to_string();
    // Off the async workers, bounded in time and size, regular files only: see secret_file.
    let text = secret_file::read(path)
        .await
        .map_err(|e| DockerConfigError::Read {
            path: shown.clone(),
            problem: e.to_string(),
            fix: match e {
                FileProblem::Io(_) => "check docker_config or DOCKER_CONFIG",
                _ => e.fix(),
            },
        })?;
    let file = parse(&text, &shown)?;
    let key = registry_key(registry);
    let helper = find(&file.cred_helpers, &key).or(file.creds_store.as_ref());
    if let Some(helper) = helper.filter(|h| !h.is_empty())
        && let Some(found) = run_helper(helper, &key).await?
    {
        return Ok(Some(found));
    }
    from_auths(&file, &key, &shown)
}

/// A Docker config file's JSON.
pub(crate) fn parse(text: &[u8], shown: &str) -> Result<File, DockerConfigError> {
    serde_json::from_slice(text).map_err(|e| DockerConfigError::Parse {
        path: shown.to_string(),
        // serde_json's message names a position and an expectation, never the content.
        problem: format!("line {} column {}", e.line(), e.column()),
    })
}

/// The credentials the `auths` section holds for the registry `key`.
pub(crate) fn from_auths(
    file: &File,
    key: &str,
    shown: &str,
) -> Result<Option<Found>, DockerConfigError> {
    let Some(entry) = find(&file.auths, key) else {
        return Ok(None);
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Found {
            auth: DockerAuth::IdentityToken {
                token: SecretString::from(token.clone()),
            },
            method: AuthMethod::IdentityToken,
        }));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Found {
            auth: DockerAuth::Basic {
                username: u.clone(),
                password: SecretString::from(p.clone()),
            },
            method: AuthMethod::DockerConfig,
        }));
    }
    let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = || DockerConfigError::BadAuth {
        path: shown.to_string(),
        host: key.to_string(),
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Found {
        auth: DockerAuth::Basic {
            username: username.to_string(),
            password: SecretString::from(password.to_string()),
        },
        method: AuthMethod::DockerConfig,
    }))
}

/// Runs `docker-credential-<helper> get` with the server on stdin.
async fn run_helper(helper: &str, key: &str) -> Result<Option<Found>, DockerConfigError> {
    let err = |problem: String| DockerConfigError::Helper {
        helper: helper.to_string(),
        problem,
    };
    // The name becomes part of a program name: no path separators or shell characters.
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(err("has an invalid name".into()));
    }
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so that whatever the helper starts can be killed with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot be started ({})", e.kind())))?;
    // Declared after `child`, so dropped before it when this future is dropped (the
    // check's timeout): the group is killed while its leader is not yet reaped, hence
    // while its id cannot name another group.
    let mut group = HelperGroup(child.id().and_then(|id| libc::pid_t::try_from(id).ok()));
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(key.as_bytes())
                .await
                .map_err(|e| err(format!("did not read its input ({})", e.kind())))?;
        }
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            // One byte past the limit tells an answer that is too long from one that fits.
            stdout
                .take(MAX_HELPER_OUTPUT + 1)
                .read_to_end(&mut out)
                .await
                .map_err(|e| err(format!("output could not be read ({})", e.kind())))?;
        }
        if out.len() as u64 > MAX_HELPER_OUTPUT {
            return Err(err(format!(
                "answered more than {} KiB, which is not a credential",
                MAX_HELPER_OUTPUT / 1024
            )));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| err(format!("could not be waited for ({})", e.kind())))?;
        Ok::<_, DockerConfigError>((status, out))
    };
    let answered = tokio::time::timeout(HELPER_TIMEOUT, run).await;
    if let Ok(Ok(_)) = &answered {
        // The helper exited by itself and is reaped: its group id may no longer be its
        // own, and what it left running on purpose (an agent) is not ours to kill.
        group.disarm();
    }
    // Timed out, or failed before it exited (too much output): kill it and everything it
    // started, which would otherwise survive it, one orphan per run.
    drop(group);
    let (status, out) = answered.map_err(|_| {
        err(format!(
            "did not answer within {}s; it was killed with every process it started",
            HELPER_TIMEOUT.as_secs()
        ))
    })??;
    if !status.success() {
        // The helpers' protocol: "credentials not found in native keychain" means none.
        if String::from_utf8_lossy(&out).contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("failed ({status})")));
    }
    helper_answer(&out).map_err(|()| err("answered something that is not its JSON".into()))
}

/// A credential helper's answer to `get`: `{"Username","Secret"}`; `<token>` as the
/// username means an identity token.
pub(crate) fn helper_answer(out: &[u8]) -> Result<Option<Found>, ()> {
    let answer: HelperAnswer = serde_json::from_slice(out).map_err(|_| ())?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    let auth = if answer.username == "<token>" {
        DockerAuth::IdentityToken {
            token: SecretString::from(answer.secret),
        }
    } else {
        DockerAuth::Basic {
            username: answer.username,
            password: SecretString::from(answer.secret),
        }
    };
    Ok(Some(Found {
        auth,
        method: AuthMethod::CredentialHelper,
    }))
}

/// A running credential helper's process group (its id is the helper's pid); dropping it
/// kills every process in the group, unless disarmed.
struct HelperGroup(Option<libc::pid_t>);

impl HelperGroup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for HelperGroup {
    fn drop(&mut self) {
        // A pid of a child we spawned is > 1; anything else would name our own group or
        // every process, so it is never signalled.
        if let Some(pgid) = self.0.filter(|&p| p > 1) {
            // SAFETY: killpg takes plain integers and touches no memory of ours; the group
            // is the helper's own (`process_group(0)`). ESRCH (already gone) needs nothing.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_docker_matches_them() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            registry_key(&url("https://registry.example.com/")),
            "registry.example.com"
        );
        assert_eq!(
            registry_key(&url("http://127.0.0.1:5000/")),
            "127.0.0.1:5000"
        );
        assert_eq!(
            registry_key(&url("https://registry-1.docker.io/")),
            DOCKER_HUB_KEY
        );
        assert_eq!(
            normalize("https://registry.example.com/v2/"),
            "registry.example.com"
        );
        assert_eq!(normalize("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize("Registry.Example.com"), "registry.example.com");
        assert_eq!(normalize("https://index.docker.io/v1/"), DOCKER_HUB_KEY);
        assert_eq!(normalize("docker.io"), DOCKER_HUB_KEY);
    }
}
