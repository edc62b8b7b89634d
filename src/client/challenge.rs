//! [`Challenges`]: the `WWW-Authenticate` header parsed (via `http-auth`, with care for
//! quoting, at most [`MAX_CHALLENGE_BYTES`]) into a `Basic` flag and a [`BearerChallenge`].
//!
//! It does not decide what to do with a challenge: `auth` learns from it, `token` follows it.

use reqwest::header;
use reqwest::header::HeaderMap;

/// A `Bearer` challenge: where to get a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// The challenges of a `WWW-Authenticate` header, parsed with care for quoting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenges {
    pub bearer: Option<BearerChallenge>,
    pub basic: bool,
    /// A `WWW-Authenticate` value could not be read: bytes outside visible ASCII, or no
    /// challenge syntax (broken quoting). `distribution::Answer::of` judges what that means.
    pub unreadable: bool,
}

/// The longest `WWW-Authenticate` value read as a challenge. Real ones are a few hundred
/// bytes (a realm, a service and a scope or two); a 64 KiB one named a realm no HTTP client
/// can request ("Parsed Url is not a valid Uri"), which read as an unreachable token service
/// and sent the reader to the network. Longer is an unusable challenge.
pub const MAX_CHALLENGE_BYTES: usize = 8 * 1024;

impl Challenges {
    pub fn parse(headers: &HeaderMap) -> Challenges {
        let mut out = Challenges::default();
        for value in headers.get_all(header::WWW_AUTHENTICATE) {
            if value.len() > MAX_CHALLENGE_BYTES {
                out.unreadable = true;
                continue;
            }
            let Ok(text) = value.to_str() else {
                out.unreadable = true;
                continue;
            };
            // An empty value (a proxy that blanks the header rather than removing it) is
            // no challenge at all, not a broken one.
            if text.trim().is_empty() {
                continue;
            }
            let Ok(parsed) = http_auth::parse_challenges(text) else {
                out.unreadable = true;
                continue;
            };
            for c in parsed {
                let param = |name: &str| {
                    c.params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_unescaped())
                };
                if c.scheme.eq_ignore_ascii_case("bearer") {
                    if let Some(realm) = param("realm") {
                        out.bearer.get_or_insert(BearerChallenge {
                            realm,
                            service: param("service"),
                            scope: param("scope"),
                            error: param("error"),
                        });
                    }
                } else if c.scheme.eq_ignore_ascii_case("basic") {
                    out.basic = true;
                }
            }
        }
        out
    }
}
