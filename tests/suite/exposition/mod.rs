//! What the exporter serves: `/probe` under load (`probe`) and the web config file — TLS,
//! basic auth, headers — of the exporter's own server (`web_config`).

mod probe;
mod web_config;
