//! The pull: the blob download through redirects to storage hosts (`blob`) and credentials
//! that stay with their registry across hosts (`cross_host`). The pull's verdicts on
//! registries' answers are `verdicts`.

mod blob;
mod cross_host;
