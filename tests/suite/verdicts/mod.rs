//! A registry's answer turned into a verdict: the rules over emulated behaviours
//! (`emulated`), real vendors' answers (`vendors`), answers no real registry here gives
//! (`http_answers`), skopeo as the oracle (`skopeo_oracle`), the product recognised
//! (`implementation`), and every check end to end against real Distribution in its open,
//! htpasswd, token, read-only and TLS setups (`real_registries`).

mod emulated;
mod http_answers;
mod implementation;
mod real_registries;
mod skopeo_oracle;
mod vendors;
