//! TLS to registries: a real TLS registry with its CA, without it and `insecure` (`ca`), and
//! certificates made the way people make them, with skopeo's view of the same
//! (`self_signed`).

mod ca;
mod self_signed;
