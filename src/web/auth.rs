//! Basic auth: the users' bcrypt hashes, the cache of verified credentials, the dummy hash
//! that makes unknown users cost what wrong passwords cost, and the fair gate that runs a few
//! bcrypt verifications at a time, waiting clients taking turns by address.
//!
//! Does not read the web config file (`web_config` hands it the user list) or decide when the
//! user list is reloaded (`mod.rs`); adding the configured headers to the 401 is the
//! caller's job ([`super::Web::decorate`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use http::header;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::WebConfigError;
use super::web_config::{Ctx, not_bcrypt};

/// The paths that never need credentials: liveness and readiness probes.
pub const UNAUTHENTICATED_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// The realm sent with a 401.
const REALM: &str = "oci-registry-exporter";

/// Successful verifications kept; the cache is emptied when it is full.
const AUTH_CACHE_LIMIT: usize = 1024;

/// Most bcrypt verifications at once, whatever the number of cores: each keeps a core busy.
const MAX_BCRYPT_PARALLELISM: usize = 4;

/// A valid bcrypt hash (of "oci-registry-exporter: no such user", with a fixed salt) after
/// `$2b$NN$`: unknown users are verified against it at the configured cost, so they cost
/// what a wrong password costs without hashing anything first.
const DUMMY_HASH_TAIL: &str = "abcdefghijklmnopqrstuutLBWyGJLxiYcaQhW5ScfOiGHLTYMiyi";

/// Who waits for a bcrypt verification: a client address, an IPv6 /64 as one (a single
/// host usually holds a whole /64), or "unknown" without an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
    Unknown,
}

impl Client {
    fn of(peer: Option<IpAddr>) -> Client {
        match peer.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Client::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => Client::V6Prefix((u128::from(v6) >> 64) as u64),
            None => Client::Unknown,
        }
    }
}

/// A semaphore whose waiters take turns by client: a permit set free goes to the next
/// client in a round robin, not to the longest waiter, so one client's hundred requests
/// wait behind each other, not in front of everyone else.
pub(super) struct FairGate {
    // std Mutex: never held across .await.
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    /// Clients with waiters, in turn order; each client appears at most once.
    turns: VecDeque<Client>,
    waiting: HashMap<Client, VecDeque<oneshot::Sender<Grant>>>,
}

/// A permit of a [`FairGate`], handed to the next waiter when dropped.
struct Grant {
    gate: Option<Arc<FairGate>>,
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl FairGate {
    pub(super) fn new(permits: usize) -> Arc<FairGate> {
        Arc::new(FairGate {
            state: Mutex::new(GateState {
                free: permits,
                turns: VecDeque::new(),
                waiting: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a permit; cancel-safe (a waiter dropped before its turn loses nothing).
    async fn acquire(self: &Arc<Self>, client: Client) -> Grant {
        let rx = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                return Grant {
                    gate: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = state.waiting.entry(client).or_default();
            queue.push_back(tx);
            if queue.len() == 1 {
                state.turns.push_back(client);
            }
            rx
        };
        // The sender is dropped only after handing over a grant, or with the gate itself,
        // which this waiter keeps alive; a grant is always sent.
        rx.await.unwrap_or(Grant { gate: None })
    }

    /// A permit came back: the next client in turn gets it, or it is free again.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(client) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&client) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&client);
            } else {
                state.turns.push_back(client);
            }
            let Some(tx) = next else { continue };
            let grant = Grant {
                gate: Some(self.clone()),
            };
            match tx.send(grant) {
                Ok(()) => return,
                // That waiter gave up: defuse the grant (this loop passes it on) and go on.
                Err(mut unsent) => unsent.gate = None,
            }
        }
        state.free += 1;
    }
}

/// Verifications at once: one per core, at least one, at most [`MAX_BCRYPT_PARALLELISM`].
pub(super) fn bcrypt_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_BCRYPT_PARALLELISM)
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, format!("Basic realm=\"{REALM}\""))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"unauthorized\n")))
        .expect("static headers are valid")
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

type CacheKey = (String, [u8; 32]);

pub(super) struct BasicAuth {
    /// User → bcrypt hash.
    pub(super) users: HashMap<String, String>,
    pub(super) verified: Mutex<HashSet<CacheKey>>,
    /// Verified against for unknown users, at the highest configured cost.
    pub(super) dummy: String,
}

impl BasicAuth {
    /// [`super::Web::check_auth`] once the configuration is known to have basic auth: the
    /// cache first, then a bcrypt verification when the gate lets `peer` through.
    pub(super) async fn check(
        self: &Arc<Self>,
        gate: &Arc<FairGate>,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<(), Response<Full<Bytes>>> {
        if UNAUTHENTICATED_PATHS.contains(&path) {
            return Ok(());
        }
        let Some((user, password)) = basic_credentials(headers) else {
            tracing::debug!(path, "request without basic auth credentials refused");
            return Err(unauthorized());
        };
        let key: CacheKey = (user, Sha256::digest(&password).into());
        if self.is_cached(&key) {
            return Ok(());
        }
        let permit = gate.acquire(Client::of(peer)).await;
        // Another request may have verified the same credentials while this one waited.
        if self.is_cached(&key) {
            return Ok(());
        }
        let verifier = Arc::clone(self);
        let user = key.0.clone();
        // On the verdict pool, not the blocking pool that serving shares (`on_verdict_pool`);
        // the gate's permit bounds how many run at once.
        let ok = crate::secret_file::on_verdict_pool(move || {
            let _permit = permit;
            verifier.verify(&user, &password)
        })
        .await
        .unwrap_or(false);
        if ok {
            self.remember(key);
            Ok(())
        } else {
            tracing::debug!(path, "request with wrong basic auth credentials refused");
            Err(unauthorized())
        }
    }

    pub(super) fn is_cached(&self, key: &CacheKey) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    fn remember(&self, key: CacheKey) {
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= AUTH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key);
    }

    /// A bcrypt verification (blocking, slow by design).
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }
}

pub(super) fn build_auth(
    cx: &Ctx<'_>,
    users: &[(String, String)],
) -> Result<BasicAuth, WebConfigError> {
    let mut map = HashMap::new();
    // The dummy hash for unknown users costs as much as the dearest real one.
    let mut cost = 0;
    for (user, hash) in users {
        let key = format!("basic_auth_users.{user}");
        let parts: bcrypt::HashParts = hash.parse().map_err(|_| not_bcrypt(cx, &key))?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(cx.invalid(
                &key,
                format!("bcrypt cost {} is out of range", parts.get_cost()),
                "use a cost between 4 and 31 (10 is usual)",
            ));
        }
        if map.insert(user.clone(), hash.clone()).is_some() {
            return Err(cx.invalid(&key, "appears twice", "keep one entry per user"));
        }
        cost = cost.max(parts.get_cost());
    }
    Ok(BasicAuth {
        users: map,
        verified: Mutex::new(HashSet::new()),
        dummy: format!("$2b${cost:02}${DUMMY_HASH_TAIL}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn credentials_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic YWxpY2U6cDpx"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".into(), b"p:q".to_vec()))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer YWxpY2U6cDpx"),
        );
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn the_dummy_hash_is_valid_at_every_cost() {
        for cost in [4, 10, 12] {
            let dummy = format!("$2b${cost:02}${DUMMY_HASH_TAIL}");
            let parts: bcrypt::HashParts = dummy.parse().unwrap();
            assert_eq!(parts.get_cost(), cost);
            if cost == 4 {
                // An error would make unknown users cheaper than wrong passwords.
                assert!(matches!(bcrypt::verify("x", &dummy), Ok(false)));
            }
        }
    }

    #[tokio::test]
    async fn the_bcrypt_gate_takes_turns_by_client() {
        let gate = FairGate::new(1);
        let flood = Client::of(Some(IpAddr::from([127, 0, 0, 1])));
        let other = Client::of(Some(IpAddr::from([127, 0, 0, 2])));
        let held = gate.acquire(flood).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // Ten waiters of one client, then one of another.
        for (i, client) in (0..10).map(|i| (i, flood)).chain([(10, other)]) {
            let (g, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _grant = g.acquire(client).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
            while gate
                .lock()
                .waiting
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
                <= i
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order.iter().position(|&i| i == 10),
            Some(1),
            "the other client goes second, not eleventh: {order:?}"
        );
        // Every permit came back.
        assert_eq!(gate.lock().free, 1);
    }
}
