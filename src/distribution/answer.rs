//! What a registry's answer means: the one place where a status code, the OCI error body
//! (`{"errors":[{"code","message","detail"}]}`) and the challenge are read together.
//!
//! Owns [`Answer::of`], which turns any response into a [`Class`]: success, or why the
//! registry refused. Registries differ in how they say the same thing (Harbor's read-only
//! mode is a 403, Distribution's a 405; ECR's expired token is a 403 DENIED), and the
//! differences are absorbed here, each with its public source. It does not word results
//! or pick statuses: the checks do that from the class.

use serde::Deserialize;

use crate::client::{Challenges, Response};
pub use crate::outcome::ErrorCode;

/// The first error of an OCI error body: its code and message (bounded, for evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    pub code: ErrorCode,
    pub message: String,
}

impl OciError {
    /// The first error of `{"errors":[...]}`, or `None` when the body is not one.
    pub fn parse(body: &[u8]) -> Option<OciError> {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            code: String,
            #[serde(default)]
            message: Option<String>,
        }
        let first = serde_json::from_slice::<Errors>(body)
            .ok()?
            .errors
            .into_iter()
            .next()?;
        Some(OciError {
            code: ErrorCode::parse(&first.code),
            // Bounded and single-line: it may be shown as evidence.
            message: first
                .message
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
        })
    }

    fn message_has(&self, needle: &str) -> bool {
        self.message.to_ascii_lowercase().contains(needle)
    }
}

/// What an answer means, whatever the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Success,
    /// 401 without `insufficient_scope`: the credentials, or their absence, were refused.
    Unauthenticated,
    /// 401 whose `WWW-Authenticate` challenge cannot be read (bytes outside visible ASCII,
    /// broken quoting) and names no usable scheme: how to authenticate is unknown, so the
    /// answer says nothing about the credentials. A malformed answer, not a refusal.
    BadChallenge,
    /// 401 `insufficient_scope`, or 403: known, but not allowed to do this.
    NotPermitted,
    /// The credentials were valid once and have expired. ECR answers 403 DENIED "Your
    /// authorization token has expired" (awslabs/amazon-ecr-credential-helper#7).
    CredentialsExpired,
    /// The registry refuses writes: Distribution's read-only mode is 405 `text/plain` with
    /// `Allow: GET, HEAD`; Harbor's is 403 DENIED "The system is in read only mode" (goharbor
    /// harbor's readonly middleware).
    ReadOnly,
    /// 404 `NAME_UNKNOWN`: the repository does not exist. ECR does not create repositories
    /// on push, so a push there is refused this way.
    RepositoryUnknown,
    /// 404 otherwise (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, or a router's plain 404).
    NotFound,
    /// `UNSUPPORTED` (405 or 400): the operation is disabled (Distribution's delete).
    Unsupported,
    /// 429 or `TOOMANYREQUESTS`.
    RateLimited,
    /// 5xx.
    ServerError,
    /// Anything else.
    Unexpected,
}

/// A registry's answer, interpreted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub class: Class,
    /// The first OCI error of the body, when it had one.
    pub error: Option<OciError>,
}

impl Answer {
    /// Interprets `resp` by its status, its OCI error code and message, and its challenge.
    pub fn of(resp: &Response) -> Answer {
        let status = resp.status.as_u16();
        let error = OciError::parse(&resp.body);
        let code = error.as_ref().map(|e| &e.code);
        let says = |needle: &str| error.as_ref().is_some_and(|e| e.message_has(needle));
        let class = match status {
            200..=299 => Class::Success,
            401 if unreadable_challenge(resp) => Class::BadChallenge,
            401 if insufficient_scope(resp) => Class::NotPermitted,
            401 => Class::Unauthenticated,
            403 if says("read only mode") || says("read-only mode") => Class::ReadOnly,
            403 if says("token has expired") || says("token is expired") => {
                Class::CredentialsExpired
            }
            403 if code == Some(&ErrorCode::TooManyRequests) => Class::RateLimited,
            403 => Class::NotPermitted,
            404 if code == Some(&ErrorCode::NameUnknown) => Class::RepositoryUnknown,
            404 => Class::NotFound,
            400 | 405 if code == Some(&ErrorCode::Unsupported) => Class::Unsupported,
            405 => Class::ReadOnly,
            429 => Class::RateLimited,
            _ if code == Some(&ErrorCode::TooManyRequests) => Class::RateLimited,
            500..=599 => Class::ServerError,
            _ => Class::Unexpected,
        };
        Answer {
            status,
            class,
            error,
        }
    }

    /// `HTTP 404 NAME_UNKNOWN` and the like, for messages.
    pub fn describe(&self) -> String {
        // A token without the action: the challenge says so more precisely than the body's
        // UNAUTHORIZED.
        if self.status == 401 && self.class == Class::NotPermitted {
            return "HTTP 401 insufficient_scope".to_string();
        }
        if self.class == Class::BadChallenge {
            return "HTTP 401 with an unreadable WWW-Authenticate challenge".to_string();
        }
        match &self.error {
            // Codes that only restate the status add nothing.
            Some(e)
                if !matches!(
                    (self.status, &e.code),
                    (401, ErrorCode::Unauthorized) | (429, ErrorCode::TooManyRequests)
                ) =>
            {
                format!("HTTP {} {}", self.status, e.code.as_str())
            }
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// A 401 whose challenge cannot be read and names no scheme that could be answered.
fn unreadable_challenge(resp: &Response) -> bool {
    let ch = Challenges::parse(&resp.headers);
    ch.unreadable && ch.bearer.is_none() && !ch.basic
}

/// A 401 whose Bearer challenge says the token lacks an action.
pub fn insufficient_scope(resp: &Response) -> bool {
    Challenges::parse(&resp.headers)
        .bearer
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: &str) -> Answer {
        Answer::of(&Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec().into(),
        })
    }

    #[test]
    fn oci_error_bodies_are_parsed() {
        let e = OciError::parse(br#"{"errors":[{"code":"UNSUPPORTED","message":"x"}]}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert_eq!(e.message, "x");
        assert_eq!(OciError::parse(b"Method not allowed"), None);
        assert_eq!(OciError::parse(br#"{"errors":[]}"#), None);
    }

    // goharbor/harbor src/server/middleware/readonly: 403 DENIED in read-only mode.
    #[test]
    fn harbor_read_only_403_is_read_only() {
        let a = answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"The system is in read only mode. Any modification is prohibited."}]}"#,
        );
        assert_eq!(a.class, Class::ReadOnly);
    }

    // awslabs/amazon-ecr-credential-helper#7: ECR's 403 for a token older than 12 h.
    #[test]
    fn ecr_expired_token_403_is_credentials_expired() {
        let a = answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
        );
        assert_eq!(a.class, Class::CredentialsExpired);
    }

    #[test]
    fn name_unknown_is_not_manifest_unknown() {
        assert_eq!(
            answer(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#).class,
            Class::RepositoryUnknown
        );
        assert_eq!(
            answer(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .class,
            Class::NotFound
        );
        assert_eq!(answer(404, "404 page not found").class, Class::NotFound);
    }

    #[test]
    fn an_unreadable_challenge_is_a_bad_challenge_not_a_refusal() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.append(
                "www-authenticate",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
            Answer::of(&Response {
                status: StatusCode::UNAUTHORIZED,
                headers,
                body: Default::default(),
            })
            .class
        };
        assert_eq!(
            with("Bearer realm=\"http://x/tökén\"".as_bytes()),
            Class::BadChallenge
        );
        assert_eq!(with(b"Bearer realm=\"unterminated"), Class::BadChallenge);
        assert_eq!(with(b"Basic realm=\"x\""), Class::Unauthenticated);
        // No challenge at all is still a plain refusal.
        assert_eq!(answer(401, "").class, Class::Unauthenticated);
    }

    #[test]
    fn the_two_kinds_of_405_differ() {
        assert_eq!(
            answer(
                405,
                r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#
            )
            .class,
            Class::Unsupported
        );
        assert_eq!(answer(405, "Method not allowed").class, Class::ReadOnly);
    }
}
