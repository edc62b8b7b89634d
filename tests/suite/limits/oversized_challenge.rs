//! A 64 KiB `WWW-Authenticate` is an unusable challenge (issue 24 §5): it was reported as
//! `token_endpoint_unreachable` ("Parsed Url is not a valid Uri"), which sends the reader to
//! the network, while the registry's answer is what is wrong. Emulated with mockito: no real
//! registry sends one, a broken or hostile proxy in front of one may.

use super::an_unusable_challenge_is_an_invalid_response;
use crate::common::mock::unauthorized;

const MANIFEST: &str = "/v2/library/alpine/manifests/latest";

#[tokio::test]
async fn a_64_kib_challenge_is_an_invalid_response_not_an_unreachable_token_service() {
    let mut server = mockito::Server::new_async().await;
    let huge = format!(
        "Bearer realm=\"http://127.0.0.1:9/{}\",service=\"huge\"",
        "a".repeat(64 * 1024)
    );
    for (method, path) in [("GET", "/v2/"), ("HEAD", MANIFEST), ("GET", MANIFEST)] {
        unauthorized(&mut server, method, path, &huge, "").await;
    }
    an_unusable_challenge_is_an_invalid_response(&server.url(), "huge").await;
}
