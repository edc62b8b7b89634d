//! The write side: the push, capabilities and referrers checks (`capabilities`).

mod capabilities;
