//! The in-memory call-context and idempotency cache, with per-entry TTLs on tokio's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use relay_domain::{CallContext, CallKey, CallSid, ContactId, ConversationId, E164, OrgId};
use tokio::time::Instant;

use super::{Behaviour, lock};
use crate::{
    BoxError, CacheError, CallContextCache, Claim, IdempotencyCache, PoolStats, Probe,
    StoredResponse,
};

#[derive(Debug)]
struct CacheEntry {
    context: CallContext,
    ttl: Duration,
    /// `None`: a TTL too long to reach.
    expires_at: Option<Instant>,
}

impl CacheEntry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// What an `Idempotency-Key` holds.
#[derive(Debug)]
struct HeldKey {
    fingerprint: [u8; 32],
    /// `None` while the request that reserved it runs.
    response: Option<StoredResponse>,
    /// `None`: a TTL too long to reach.
    expires_at: Option<Instant>,
}

impl HeldKey {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

#[derive(Debug, Default)]
struct CacheData {
    entries: HashMap<(OrgId, CallKey), CacheEntry>,
    /// Idempotency keys by (scope, key).
    idempotency: HashMap<(String, String), HeldKey>,
    behaviour: Behaviour,
    puts: usize,
}

/// An in-memory call-context cache that records the TTL of each entry and expires the entry
/// once its TTL has passed, on tokio's clock (on a paused clock, when the test advances it).
#[derive(Debug, Clone, Default)]
pub struct InMemoryCache {
    data: Arc<Mutex<CacheData>>,
}

impl InMemoryCache {
    /// An empty, healthy cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call behave like this.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.data).behaviour = behaviour;
    }

    /// The live entry some organization stored for a conversation and the TTL it was stored with
    /// (tests with one organization; see [`Self::entry_of`]).
    pub fn entry(&self, conversation_id: &str) -> Option<(CallContext, Duration)> {
        let id = ConversationId::parse(conversation_id).ok()?;
        self.find(&CallKey::Conversation(id), None)
    }

    /// The live entry `org` stored for a conversation and the TTL it was stored with.
    pub fn entry_of(&self, org: OrgId, conversation_id: &str) -> Option<(CallContext, Duration)> {
        let id = ConversationId::parse(conversation_id).ok()?;
        self.find(&CallKey::Conversation(id), Some(org))
    }

    /// The live entry some organization stored for a call sid and the TTL it was stored with.
    pub fn entry_by_call_sid(&self, call_sid: &str) -> Option<(CallContext, Duration)> {
        let sid = CallSid::parse(call_sid).ok()?;
        self.find(&CallKey::CallSid(sid), None)
    }

    fn find(&self, key: &CallKey, org: Option<OrgId>) -> Option<(CallContext, Duration)> {
        let now = Instant::now();
        lock(&self.data)
            .entries
            .iter()
            .find(|((o, k), e)| k == key && org.is_none_or(|org| org == *o) && e.is_live(now))
            .map(|(_, e)| (e.context.clone(), e.ttl))
    }

    /// How many `put` calls were made, failed or not.
    pub fn puts(&self) -> usize {
        lock(&self.data).puts
    }

    /// How many live entries are stored (one per key: a context with a conversation id and a
    /// call sid counts twice).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        lock(&self.data)
            .entries
            .values()
            .filter(|e| e.is_live(now))
            .count()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl CallContextCache for InMemoryCache {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        let behaviour = {
            let mut data = lock(&self.data);
            data.puts += 1;
            data.behaviour
        };
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let now = Instant::now();
        let mut data = lock(&self.data);
        data.entries.retain(|_, e| e.is_live(now));
        for key in context.keys() {
            let entry = CacheEntry {
                context: context.clone(),
                ttl,
                expires_at: now.checked_add(ttl),
            };
            data.entries.insert((context.org_id, key), entry);
        }
        Ok(())
    }

    async fn get(&self, org: OrgId, key: &CallKey) -> Result<Option<CallContext>, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let now = Instant::now();
        Ok(lock(&self.data)
            .entries
            .get(&(org, key.clone()))
            .filter(|e| e.is_live(now))
            .map(|e| e.context.clone()))
    }

    async fn forget_caller(
        &self,
        org: OrgId,
        phone: &E164,
        contacts: &[ContactId],
    ) -> Result<u64, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let mut data = lock(&self.data);
        let before = data.entries.len();
        data.entries.retain(|(owner, _), e| {
            !(*owner == org
                && (e.context.caller_number.as_ref() == Some(phone)
                    || e.context.contact_id.is_some_and(|c| contacts.contains(&c))))
        });
        Ok((before - data.entries.len()) as u64)
    }
}

#[async_trait]
impl IdempotencyCache for InMemoryCache {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        ttl: Duration,
    ) -> Result<Claim, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let now = Instant::now();
        // One lock for the look and the reservation: concurrent claims are serialized.
        let mut data = lock(&self.data);
        data.idempotency.retain(|_, held| held.is_live(now));
        let scoped = (scope.to_owned(), key.to_owned());
        if let Some(held) = data.idempotency.get(&scoped) {
            return Ok(if held.fingerprint != *fingerprint {
                Claim::Mismatch
            } else {
                held.response
                    .clone()
                    .map_or(Claim::InProgress, Claim::Completed)
            });
        }
        data.idempotency.insert(
            scoped,
            HeldKey {
                fingerprint: *fingerprint,
                response: None,
                expires_at: now.checked_add(ttl),
            },
        );
        Ok(Claim::Reserved)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let now = Instant::now();
        let mut data = lock(&self.data);
        data.idempotency.retain(|_, held| held.is_live(now));
        let scoped = (scope.to_owned(), key.to_owned());
        // A key held by another request (another fingerprint) stays theirs.
        if data
            .idempotency
            .get(&scoped)
            .is_none_or(|held| held.fingerprint == *fingerprint)
        {
            data.idempotency.insert(
                scoped,
                HeldKey {
                    fingerprint: *fingerprint,
                    response: Some(response.clone()),
                    expires_at: now.checked_add(ttl),
                },
            );
        }
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        lock(&self.data)
            .idempotency
            .remove(&(scope.to_owned(), key.to_owned()));
        Ok(())
    }
}

/// Pings follow the behaviour; the fake has no pool.
#[async_trait]
impl Probe for InMemoryCache {
    async fn ping(&self) -> Result<(), BoxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}
