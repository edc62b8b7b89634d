//! Registry authentication against real Distribution, htpasswd and token auth (`auth`), and
//! the credentials check with every way users hold registry secrets (`sources`). Secrets kept
//! out of logs is `tests/process_global/no_leak.rs` (it owns the global subscriber); hostile
//! credential files and helpers are `limits::hostile`.

mod auth;
mod sources;
