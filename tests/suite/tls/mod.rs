//! TLS to registries, with certificates made the way people make them, and skopeo's view
//! of the same (`self_signed`).

mod self_signed;
