//! Sharding across replicas: `--shard=N --total-shards=M`, as kube-state-metrics has. Every
//! replica loads the same configuration and checks only the registries of its shard.
//!
//! Owns the shard's validation (the flags' error texts) and the assignment of a registry to
//! a shard by a fixed hash of its name ([`shard_of`]). It does not decide what the split
//! means for the rest: `app::Generation` keeps this shard's registries as its targets (what
//! the scheduler, scrape-mode rounds, the metrics, readiness and the `/` page see) and the
//! others for `/probe` alone, which answers for every configured registry on every replica
//! (see `app::Generation::probe_target` and docs/operations.md, "Sizing and sharding").

use std::fmt;

use md5::{Digest, Md5};

/// Which registries this replica checks: shard `index` of `total`. The default, 0 of 1, is
/// every registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    total: u64,
}

/// Flags that name no shard; the texts name the flags, as the user typed them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(
        "--total-shards=0: the number of shards must be at least 1 (1, the default, is no sharding); set it to the number of replicas sharing the registries"
    )]
    NoShards,
    #[error(
        "--shard={index} is out of range for --total-shards={total}: it must be below --total-shards, from 0 to {last}, a different number for each replica",
        last = total - 1
    )]
    OutOfRange { index: u64, total: u64 },
}

impl Shard {
    /// No sharding: the one shard, which owns every registry.
    pub const ALL: Shard = Shard { index: 0, total: 1 };

    /// Shard `index` of `total`: `total` at least 1 and `index` below it.
    pub fn new(index: u64, total: u64) -> Result<Shard, ShardError> {
        if total == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= total {
            return Err(ShardError::OutOfRange { index, total });
        }
        Ok(Shard { index, total })
    }

    pub fn index(self) -> u64 {
        self.index
    }

    pub fn total(self) -> u64 {
        self.total
    }

    /// More than one shard: this replica checks only some of the registries.
    pub fn is_sharded(self) -> bool {
        self.total > 1
    }

    /// Whether this shard checks the registry named `registry`.
    pub fn owns(self, registry: &str) -> bool {
        shard_of(registry, self.total) == self.index
    }
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of {}", self.index, self.total)
    }
}

/// The shard, among `total` (at least 1), of the registry named `registry`.
///
/// The hash is MD5 of the name's UTF-8 bytes, of which the last 8 bytes, read as a big-endian
/// integer, are taken modulo `total`: exactly Prometheus' `hashmod` relabelling of the name
/// with `modulus: total` (its `sum64(md5.Sum(...))`). Why this one:
/// - The assignment must be the same in every replica, on every platform, across versions
///   and restarts: std's `DefaultHasher` promises none of that, and `Hash for str` feeds a
///   hasher more than the bytes. MD5 is a published, fixed algorithm (RFC 1321) over the
///   bytes alone; `md-5` is RustCrypto's implementation, the family of the `sha2` used here.
/// - It spreads names evenly whatever M, in every bit (FNV-1a's low bit, say, is the parity
///   of the bytes' low bits, which matters for even M).
/// - Prometheus computes the same number, so relabelling can tell which shard owns a
///   registry (`hashmod` of the name, `modulus: M`), and `printf %s NAME | md5sum` shows it
///   by hand (the last 16 hex digits, modulo M).
///
/// MD5's weakness, chosen collisions, does not matter: names come from the configuration,
/// and a collision only puts two registries in one shard. kube-state-metrics hashes object
/// UIDs with FNV-32a; matching Prometheus was worth more here than matching it.
pub fn shard_of(registry: &str, total: u64) -> u64 {
    let digest = Md5::digest(registry.as_bytes());
    let (_, low) = digest.split_at(8);
    let low: [u8; 8] = low
        .try_into()
        .expect("an MD5 digest is 16 bytes, so its half is 8");
    u64::from_be_bytes(low) % total.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        // Names as people write them: words, hosts, numbered ones.
        let mut out: Vec<String> = [
            "docker-hub",
            "registry.example.com",
            "harbor.internal:8443",
            "Quay_EU",
            "nexus",
            "ü-mirror",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        out.extend((0..n).map(|i| format!("registry-{i}")));
        out
    }

    #[test]
    fn shards_partition_the_registries_exactly() {
        let all = names(500);
        for total in [1, 2, 3, 4, 5, 7, 10, 16] {
            let shards: Vec<Shard> = (0..total).map(|i| Shard::new(i, total).unwrap()).collect();
            let mut sizes = vec![0usize; total as usize];
            for name in &all {
                let owners: Vec<u64> = shards
                    .iter()
                    .filter(|s| s.owns(name))
                    .map(|s| s.index())
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "{name} with {total} shards: owners {owners:?}"
                );
                assert_eq!(owners[0], shard_of(name, total));
                sizes[owners[0] as usize] += 1;
            }
            // Even enough to be worth it: no shard gets less than half or more than twice
            // its share of 506 names (a broken hash, one taking a constant or only a few
            // bits, puts them all in a few shards).
            let share = all.len() / total as usize;
            for (i, n) in sizes.iter().enumerate() {
                assert!(
                    *n >= share / 2 && *n <= share * 2,
                    "{total} shards: shard {i} got {n} of {} names: {sizes:?}",
                    all.len()
                );
            }
        }
    }

    /// Pinned: a change of the hash moves registries between replicas at an upgrade, and
    /// breaks the promise that Prometheus' `hashmod` computes the same. The values were
    /// computed apart from this code: `printf %s NAME | md5sum`, the last 16 hex digits
    /// modulo 3.
    #[test]
    fn assignment_is_pinned() {
        for (name, shard) in [
            ("docker-hub", 0),
            ("ghcr", 2),
            ("harbor", 0),
            ("quay", 2),
            ("ecr", 0),
            ("gitlab", 1),
            ("r1", 1),
            ("zot", 2),
        ] {
            assert_eq!(shard_of(name, 3), shard, "{name}");
        }
        // And the integer itself, for one name: 0x811e9b5dde67d88d mod 5 = 4.
        assert_eq!(shard_of("docker-hub", 5), 4);
        assert_eq!(shard_of("docker-hub", u64::MAX), 0x811e_9b5d_de67_d88d_u64);
    }

    #[test]
    fn one_shard_owns_everything() {
        for name in names(20) {
            assert!(Shard::ALL.owns(&name));
            assert!(Shard::default().owns(&name));
        }
        assert!(!Shard::ALL.is_sharded());
    }

    #[test]
    fn bad_flags_are_refused_naming_them() {
        assert_eq!(
            Shard::new(0, 0).unwrap_err().to_string(),
            "--total-shards=0: the number of shards must be at least 1 (1, the default, is no sharding); set it to the number of replicas sharing the registries"
        );
        assert_eq!(
            Shard::new(3, 3).unwrap_err().to_string(),
            "--shard=3 is out of range for --total-shards=3: it must be below --total-shards, from 0 to 2, a different number for each replica"
        );
        assert_eq!(
            Shard::new(1, 1).unwrap_err(),
            ShardError::OutOfRange { index: 1, total: 1 }
        );
        let s = Shard::new(2, 3).unwrap();
        assert_eq!((s.index(), s.total(), s.is_sharded()), (2, 3, true));
        assert_eq!(s.to_string(), "shard 2 of 3");
    }
}
