//! The pull: the blob download through redirects to storage hosts (`blob`), credentials
//! that stay with their registry across hosts (`cross_host`), and a read-only registry that
//! still serves pulls (`read_only`). The pull's verdicts on registries' answers are
//! `verdicts`.

mod blob;
mod cross_host;
mod read_only;
