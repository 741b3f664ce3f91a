//! The idempotency cache in this process's memory: a moka cache keyed by (scope, key), each
//! entry expiring after the TTL it was last written with, bounded by the bytes the entries take.
//! Claims and completions go through moka's per-key compute, so concurrent claims of one key are
//! serialized: exactly one finds it empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use relay_ports::{CacheError, Claim, IdempotencyCache, StoredResponse};

use crate::MemoryCache;

/// An `Idempotency-Key` in the key space of its scope.
type Key = (String, String);

#[derive(Clone)]
pub(crate) struct Held {
    fingerprint: [u8; 32],
    /// `None` while the request that reserved the key runs.
    response: Option<Arc<StoredResponse>>,
    ttl: Duration,
}

impl Held {
    fn claim(&self, fingerprint: &[u8; 32]) -> Claim {
        if self.fingerprint != *fingerprint {
            return Claim::Mismatch;
        }
        match &self.response {
            None => Claim::InProgress,
            Some(response) => Claim::Completed(StoredResponse::clone(response)),
        }
    }
}

pub(crate) type Responses = Cache<Key, Held>;

struct HeldTtl;

impl Expiry<Key, Held> for HeldTtl {
    fn expire_after_create(&self, _: &Key, held: &Held, _: Instant) -> Option<Duration> {
        Some(held.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        held: &Held,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        // A completion keeps the response for its own TTL, from now.
        Some(held.ttl)
    }
}

/// What an entry counts against the bound: its key, response and some bookkeeping.
fn weight(key: &Key, held: &Held) -> u32 {
    let response = held.response.as_ref().map_or(0, |r| {
        r.body.len()
            + r.headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    });
    let bytes = key.0.len() + key.1.len() + response + 128;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A cache of at most `max_bytes` (as [`weight`] counts them).
pub(crate) fn responses(max_bytes: u64) -> Responses {
    Cache::builder()
        .max_capacity(max_bytes)
        .weigher(weight)
        .expire_after(HeldTtl)
        .build()
}

fn scoped(scope: &str, key: &str) -> Key {
    (scope.to_owned(), key.to_owned())
}

#[async_trait]
impl IdempotencyCache for MemoryCache {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        ttl: Duration,
    ) -> Result<Claim, CacheError> {
        let reservation = Held {
            fingerprint: *fingerprint,
            response: None,
            ttl,
        };
        let result = self
            .idempotency
            .entry(scoped(scope, key))
            .and_compute_with(|current| {
                std::future::ready(match current {
                    None => Op::Put(reservation),
                    Some(_) => Op::Nop,
                })
            })
            .await;
        Ok(match result {
            CompResult::Unchanged(held) => held.value().claim(fingerprint),
            // Only an empty key is written to: it is ours now.
            CompResult::Inserted(_)
            | CompResult::ReplacedWith(_)
            | CompResult::StillNone(_)
            | CompResult::Removed(_) => Claim::Reserved,
        })
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let done = Held {
            fingerprint: *fingerprint,
            response: Some(Arc::new(response.clone())),
            ttl,
        };
        self.idempotency
            .entry(scoped(scope, key))
            .and_compute_with(|current| {
                std::future::ready(match current {
                    // Another request holds the key: its entry stays.
                    Some(held) if held.value().fingerprint != *fingerprint => Op::Nop,
                    _ => Op::Put(done),
                })
            })
            .await;
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        self.idempotency.invalidate(&scoped(scope, key)).await;
        Ok(())
    }
}
