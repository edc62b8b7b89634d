//! Bounds that hold against hostile peers and files: hostile servers, credential files and
//! helpers (`hostile`), an oversized challenge (`oversized_challenge`), a connection flood
//! (`server`) and scrapers that never read (`slow_readers`). The daemon stays up and its
//! verdicts unchanged.

mod hostile;
mod oversized_challenge;
mod server;
mod slow_readers;
