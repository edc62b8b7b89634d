//! What the exporter serves: `/metrics` and `/probe` against real registries
//! (`endpoints`), `/probe` under load (`probe`) and the web config file — TLS, basic auth,
//! headers — of the exporter's own server (`web_config`).

mod endpoints;
mod probe;
mod web_config;
