//! In-process caches (moka).
//!
//! - [`MemoryCache`]: the call-context cache port in this process's memory, entries expiring
//!   after the TTL each was stored with. For a single process only: replicas do not share it, and
//!   a restart empties it.
//! - [`CachedOrganizations`]: a short-lived read-through cache of the organization lookup by
//!   token digest, in front of the store.
//!
//! [`MemoryCache`] is also the idempotency cache port, in this process's memory (a second moka
//! cache, bounded by the bytes its responses take).

mod idempotency;
mod organizations;

pub use organizations::{CachedOrganizations, DEFAULT_MAX_ORGANIZATIONS, MAX_UNKNOWN_TOKENS};

use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use relay_domain::{CallContext, CallKey, ContactId, E164, OrgId};
use relay_ports::{BoxError, CacheError, CallContextCache, PoolStats, Probe};

/// Entries kept at most by default; the least recently used go first beyond it.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Bytes the idempotency responses (and their keys) may take by default; the least recently used
/// go first beyond it.
pub const DEFAULT_MAX_IDEMPOTENCY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone)]
struct Entry {
    context: CallContext,
    ttl: Duration,
}

struct PerEntryTtl;

/// Each organization's entries live under its own keys.
type ScopedKey = (OrgId, CallKey);

impl Expiry<ScopedKey, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &ScopedKey, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &ScopedKey,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        // An overwrite restarts the TTL, as `SET .. EX` does.
        Some(entry.ttl)
    }
}

/// The call-context and idempotency caches in this process's memory.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<ScopedKey, Entry>,
    idempotency: idempotency::Responses,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("idempotency_keys", &self.idempotency.entry_count())
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most `max_entries` contexts, and idempotency responses up to
    /// [`DEFAULT_MAX_IDEMPOTENCY_BYTES`].
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
            idempotency: idempotency::responses(DEFAULT_MAX_IDEMPOTENCY_BYTES),
        }
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

#[async_trait]
impl CallContextCache for MemoryCache {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        for key in context.keys() {
            let entry = Entry {
                context: context.clone(),
                ttl,
            };
            self.entries.insert((context.org_id, key), entry).await;
        }
        Ok(())
    }

    async fn get(&self, org: OrgId, key: &CallKey) -> Result<Option<CallContext>, CacheError> {
        Ok(self
            .entries
            .get(&(org, key.clone()))
            .await
            .map(|e| e.context))
    }

    async fn forget_caller(
        &self,
        org: OrgId,
        phone: &E164,
        contacts: &[ContactId],
    ) -> Result<u64, CacheError> {
        let doomed: Vec<ScopedKey> = self
            .entries
            .iter()
            .filter(|(key, entry)| {
                key.0 == org
                    && (entry.context.caller_number.as_ref() == Some(phone)
                        || entry
                            .context
                            .contact_id
                            .is_some_and(|c| contacts.contains(&c)))
            })
            .map(|(key, _)| (*key).clone())
            .collect();
        for key in &doomed {
            self.entries.invalidate(key).await;
        }
        Ok(doomed.len() as u64)
    }
}

/// In this process: always reachable, no pool.
#[async_trait]
impl Probe for MemoryCache {
    async fn ping(&self) -> Result<(), BoxError> {
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}
