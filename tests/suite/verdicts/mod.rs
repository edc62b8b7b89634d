//! A registry's answer turned into a verdict: the rules over emulated behaviours
//! (`emulated`), real vendors' answers (`vendors`), answers no real registry here gives
//! (`http_answers`), skopeo as the oracle (`skopeo_oracle`), the product recognised
//! (`implementation`). What real Distribution does in each setup is tested with the
//! behaviour it shows: `credentials::auth`, `tls::ca`, `pull::read_only`,
//! `exposition::endpoints`, `schedule::modes`.

mod emulated;
mod http_answers;
mod implementation;
mod skopeo_oracle;
mod vendors;
