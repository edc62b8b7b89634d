//! The Distribution API's value types: digests, manifest references, media types and
//! token scopes.
//!
//! Owns their syntax (what may go into a URL path or a token request) and nothing else:
//! no requests are made here.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index: also what the referrers API answers with.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types a pulling client accepts: an OCI-stored image is a 404 to a
/// client that asks only for Docker types (see the reference facts).
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A content digest, `algorithm:encoded` as the OCI image spec defines it, bounded in
/// length. It goes into URL paths, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses a digest, refusing anything that is not one.
    pub fn parse(s: &str) -> Option<Digest> {
        let s = s.trim();
        let (algorithm, encoded) = s.split_once(':')?;
        let ok = s.len() <= 200
            && !algorithm.is_empty()
            && !encoded.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        ok.then(|| Digest(s.to_string()))
    }

    /// The SHA-256 digest of `content`, as a registry computes a manifest's digest.
    pub fn sha256_of(content: &[u8]) -> Digest {
        let hash = Sha256::digest(content);
        let mut hex = String::with_capacity(64);
        for byte in hash {
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        Digest(format!("sha256:{hex}"))
    }

    /// The SHA-512 digest of `content`.
    pub fn sha512_of(content: &[u8]) -> Digest {
        use std::fmt::Write as _;
        let hash = sha2::Sha512::digest(content);
        let mut hex = String::with_capacity(128);
        for byte in hash {
            // Writing into a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        Digest(format!("sha512:{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag a client without the referrers API uses for this digest: `sha256-<hex>`.
    pub fn fallback_tag(&self) -> String {
        self.0.replacen(':', "-", 1)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest reference: a tag or a digest (both already validated by config or parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

impl fmt::Display for Reference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

/// A token scope: one or more `repository:<name>:<actions>` entries, as the Docker token
/// spec sends them (space-separated in one challenge, repeated `scope` parameters in a
/// token request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// `repository:<repo>:pull`.
    pub fn pull(repo: &str) -> Scope {
        Scope(format!("repository:{repo}:pull"))
    }

    /// The scopes for a write to `repo`, best first. The first asks for `delete` too:
    /// Distribution's token auth wants it to cancel an upload or remove a blob link, and a
    /// token service grants the intersection with what the user may do. The second omits
    /// it, for token services that refuse the whole request instead (the pull,push,delete →
    /// pull,push fallback). `also` is added to both (a mount needs pull on its source).
    pub fn write(repo: &str, also: Option<&Scope>) -> [Scope; 2] {
        let with = |s: String| match also {
            Some(extra) => Scope(format!("{s} {}", extra.0)),
            None => Scope(s),
        };
        [
            with(format!("repository:{repo}:pull,push,delete")),
            with(format!("repository:{repo}:pull,push")),
        ]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_before_they_go_into_a_path() {
        assert!(
            Digest::parse(
                "sha256:16a06f27aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            )
            .is_some()
        );
        assert!(Digest::parse("sha512+b64u:abc_-=").is_some());
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:../x",
            "SHA256:ab",
            "a:b c",
        ] {
            assert!(Digest::parse(bad).is_none(), "{bad}");
        }
        let d = Digest::parse("sha256:abc").unwrap();
        assert_eq!(d.fallback_tag(), "sha256-abc");
    }

    #[test]
    fn sha256_of_matches_the_known_empty_digest() {
        assert_eq!(
            Digest::sha256_of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn write_scopes_ask_for_delete_first() {
        let [a, b] = Scope::write("a/b", Some(&Scope::pull("c/d")));
        assert_eq!(
            a.as_str(),
            "repository:a/b:pull,push,delete repository:c/d:pull"
        );
        assert_eq!(b.as_str(), "repository:a/b:pull,push repository:c/d:pull");
    }
}
