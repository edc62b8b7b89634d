//! [`Redactor`]: the secrets a registry could echo back, and their removal from anything
//! registry-controlled before it reaches an output (kept headers, messages, evidence).
//!
//! It does not know where the secrets come from: `auth` hands it the credentials it resolved
//! and the tokens it holds (`RegistryClient::redactor`).

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::auth::Resolved;

/// What replaces a value that holds a secret.
pub const REDACTED: &str = "[redacted]";

/// The secrets a registry could echo back in what it answers: the credentials this client
/// resolved (password, the base64 of `user:password` that Basic auth sends, a static or
/// identity token) and every token it holds. Anything registry-controlled that reaches an
/// output (kept headers, messages, evidence) goes through [`Redactor::finds`] or
/// [`Redactor::scrub`] first.
pub struct Redactor {
    pub(super) needles: Vec<SecretString>,
}

impl Redactor {
    pub(super) fn of(resolved: &Resolved) -> Vec<SecretString> {
        let mut out = Vec::new();
        let mut add = |text: String| {
            if !text.is_empty() {
                out.push(SecretString::from(text));
            }
        };
        match resolved {
            Resolved::Anonymous => {}
            Resolved::Basic { username, password } => {
                let password = password.expose_secret();
                // Unpadded: a prefix of the padded form, so an echo without `=` is caught too.
                add(base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(format!("{username}:{password}")));
                add(url::form_urlencoded::byte_serialize(password.as_bytes()).collect());
                add(password.to_string());
            }
            Resolved::Bearer(token) | Resolved::Identity(token) => {
                add(token.expose_secret().to_string());
            }
        }
        out
    }

    /// Whether `text` holds any of the secrets.
    pub fn finds(&self, text: &str) -> bool {
        self.needles
            .iter()
            .any(|n| text.contains(n.expose_secret()))
    }

    /// `text` with every secret in it replaced by [`REDACTED`]. Only whole words count
    /// (no letter or digit on either side): the exporter's own words stay intact when a
    /// secret is short ("b" is not taken out of "but"), and an echo is still caught, as it
    /// always sits between separators (`echo=<secret>`, `Basic <base64>`, a path segment).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            out = replace_words(&out, n.expose_secret(), REDACTED);
        }
        out
    }
}

/// `text` with each occurrence of `word` that has no letter or digit on either side
/// replaced by `with`.
pub(super) fn replace_words(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() || !text.contains(word) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        // What precedes may already be in `out` when the match starts `rest`.
        let before = rest[..i].chars().next_back().or(out.chars().next_back());
        let after = rest[i + word.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        // Not a whole word: keep its first character and look again after it.
        let keep = if alone {
            0
        } else {
            word.chars().next().map_or(1, char::len_utf8)
        };
        out.push_str(&rest[..i + keep]);
        if alone {
            out.push_str(with);
            rest = &rest[i + word.len()..];
        } else {
            rest = &rest[i + keep..];
        }
    }
    out.push_str(rest);
    out
}
