//! The client's unit tests: challenges parsed, tokens parsed and bounded, refusals quoted,
//! secrets redacted, `Retry-After` bounded.

use reqwest::header::{self, HeaderMap};

use super::redact::replace_words;
use super::request::MAX_RETRY_AFTER;
use secrecy::ExposeSecret;
use std::time::Duration;

use super::token::{
    DEFAULT_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME, credentials_may_go_to, token_refusal_message,
};
use super::*;

fn headers(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(header::WWW_AUTHENTICATE, v.parse().unwrap());
    }
    h
}

#[test]
fn bearer_challenge_with_commas_inside_quotes() {
    let h = headers(&[
        r#"Bearer realm="http://127.0.0.1:5005/token",service="regharness",scope="repository:library/alpine:pull,push",error="insufficient_scope""#,
    ]);
    let c = Challenges::parse(&h);
    assert_eq!(
        c.bearer,
        Some(BearerChallenge {
            realm: "http://127.0.0.1:5005/token".into(),
            service: Some("regharness".into()),
            scope: Some("repository:library/alpine:pull,push".into()),
            error: Some("insufficient_scope".into()),
        })
    );
    assert!(!c.basic);
}

#[test]
fn several_challenges_in_one_header_and_across_headers() {
    let c = Challenges::parse(&headers(&[
        r#"Basic realm="a, b", Bearer realm="https://auth.example.com/token",service="reg""#,
    ]));
    assert!(c.basic);
    assert_eq!(c.bearer.unwrap().realm, "https://auth.example.com/token");
    let c = Challenges::parse(&headers(&[
        r#"Basic realm="regharness-basic""#,
        r#"bearer realm="https://x/token""#,
    ]));
    assert!(c.basic);
    assert_eq!(c.bearer.unwrap().service, None);
}

#[test]
fn garbage_challenges_are_ignored_and_noted() {
    let c = Challenges::parse(&headers(&["Bearer realm=\"unterminated", "=,=,"]));
    assert_eq!(
        c,
        Challenges {
            unreadable: true,
            ..Challenges::default()
        }
    );
    let mut h = HeaderMap::new();
    h.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_bytes("Bearer realm=\"http://x/tökén\"".as_bytes()).unwrap(),
    );
    let c = Challenges::parse(&h);
    assert!(c.unreadable && c.bearer.is_none() && !c.basic, "{c:?}");
}

#[test]
fn token_response_accepts_token_or_access_token() {
    let t = parse_token(br#"{"token":"a","expires_in":300}"#).unwrap();
    assert_eq!(t.token.expose_secret(), "a");
    assert_eq!(t.expires_in, Duration::from_secs(300));
    assert!(t.stated_lifetime);
    let t = parse_token(br#"{"access_token":"b"}"#).unwrap();
    assert_eq!(t.token.expose_secret(), "b");
    assert_eq!(t.expires_in, DEFAULT_TOKEN_LIFETIME);
    assert!(!t.stated_lifetime);
    assert!(parse_token(br#"{"token":""}"#).is_err());
    assert!(parse_token(b"<html>").is_err());
}

#[test]
fn credentials_never_go_from_https_to_a_plain_http_realm() {
    let url = |s: &str| Url::parse(s).unwrap();
    let https = url("https://registry.example.com/");
    let http = url("http://registry.example.com/");
    assert!(!credentials_may_go_to(
        &https,
        &url("http://auth.example.com/token")
    ));
    assert!(credentials_may_go_to(
        &https,
        &url("https://auth.example.com/token")
    ));
    assert!(credentials_may_go_to(
        &http,
        &url("http://auth.example.com/token")
    ));
    assert!(credentials_may_go_to(
        &http,
        &url("https://auth.example.com/token")
    ));
    assert_eq!(
        TokenError::InsecureRealm {
            realm: "http://auth.example.com/token".into()
        }
        .reason(),
        Reason::InsecureTokenRealm
    );
}

#[test]
fn secrets_are_scrubbed_as_whole_words() {
    let r = Redactor {
        needles: vec![SecretString::from("b"), SecretString::from("s3cr3t")],
    };
    assert_eq!(
        r.scrub("but a b, echo=s3cr3t; xs3cr3t"),
        "but a [redacted], echo=[redacted]; xs3cr3t"
    );
    assert_eq!(r.scrub("bb b"), "bb [redacted]");
    assert_eq!(replace_words("ébé", "b", "X"), "ébé");
    assert!(r.finds("xs3cr3tx"), "headers are blanked on any occurrence");
}

#[test]
fn a_token_service_refusal_is_quoted() {
    assert_eq!(
        token_refusal_message(
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#
        ),
        ": \"invalid username or password\""
    );
    assert_eq!(
        token_refusal_message(
            br#"{"error":"invalid_grant","error_description":"refresh token expired"}"#
        ),
        ": \"refresh token expired\""
    );
    assert_eq!(token_refusal_message(b"<html>"), "");
}

#[test]
fn retry_after_is_bounded() {
    let trail = Trail::default();
    let mut h = HeaderMap::new();
    h.insert(header::RETRY_AFTER, "18446744073709551615".parse().unwrap());
    observe_limits(&h, StatusCode::TOO_MANY_REQUESTS, &trail);
    assert_eq!(trail.take().1.retry_after, Some(MAX_RETRY_AFTER));
}

#[test]
fn token_lifetimes_are_bounded() {
    let lifetime = |json: &str| {
        let t = parse_token(format!(r#"{{"token":"a","expires_in":{json}}}"#).as_bytes())
            .expect("a token answer");
        (t.expires_in, t.stated_lifetime)
    };
    assert_eq!(lifetime("18446744073709551615"), (MAX_TOKEN_LIFETIME, true));
    assert_eq!(lifetime("1e300"), (MAX_TOKEN_LIFETIME, true));
    assert_eq!(lifetime("86401"), (MAX_TOKEN_LIFETIME, true));
    assert_eq!(lifetime("299.9"), (Duration::from_secs(299), true));
    for spec_default in ["0", "-1", "-9223372036854775808", "0.5", "-1e300"] {
        assert_eq!(
            lifetime(spec_default),
            (DEFAULT_TOKEN_LIFETIME, false),
            "{spec_default}"
        );
    }
}
