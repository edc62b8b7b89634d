//! The pull: the manifest step's answers (`manifest`), the blob download through redirects
//! to storage hosts (`blob`), credentials that stay with their registry across hosts
//! (`cross_host`), and a read-only registry that still serves pulls (`read_only`). The rules
//! that turn any check's answers into verdicts are `verdicts`.

mod blob;
mod cross_host;
mod manifest;
mod read_only;
