//! [`Secret`]: a password or token, inline or in a file read at each use (bounded, through
//! `secret_file`), so a rotation is picked up; its `Debug` is redacted. [`SecretError`]
//! names the file and the fix, never the content.
//!
//! It does not decide which secret a registry uses (`registry`).

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::secret_file::{self, FileProblem};

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

    pub(super) fn check_readable(&self) -> Option<SecretError> {
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
