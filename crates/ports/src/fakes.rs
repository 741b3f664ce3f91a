//! In-memory fakes of the ports for tests of the layers above (`test-helpers` feature).
//!
//! Each fake follows the contract of its port and can be told to fail or to be slow, so flow
//! tests can exercise degraded paths without a real database or cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    CallContext, CallKey, CallRecord, CallSid, Contact, ContactId, ConversationId, E164, OrgId,
    OrgName, Organization, Region, TokenDigest, ToolToken,
};
use tokio::time::Instant;

use crate::{
    AdminError, Appended, BoxError, CacheError, CallContextCache, CallLog, ContactDirectory,
    DeliveryOutbox, OrganizationDirectory, OutboxBound, OutboxEntry, OutboxLimits, OutboxUsage,
    PoolStats, Probe, Recorded, RepositoryError, WebhookSigner,
};

/// How a fake behaves on each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers at once.
    #[default]
    Healthy,
    /// Fails every call as unreachable.
    Down,
    /// Answers after this delay (use a paused tokio clock to keep tests fast).
    Slow(Duration),
}

impl Behaviour {
    async fn apply(self) -> Result<(), BoxError> {
        match self {
            Self::Healthy => Ok(()),
            Self::Down => Err("fake dependency is down".into()),
            Self::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct StoreData {
    orgs: Vec<Organization>,
    secrets: HashMap<TokenDigest, (OrgId, bool)>,
    contacts: Vec<Contact>,
    records: Vec<CallRecord>,
    webhook_secrets: HashMap<OrgId, Vec<u8>>,
    behaviour: Behaviour,
    calls: usize,
}

/// An in-memory organization and contact store.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    data: Arc<Mutex<StoreData>>,
}

impl InMemoryStore {
    /// An empty, healthy store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an organization and returns it with a fresh live token.
    pub fn add_org(&self, name: &str, region: &str) -> (Organization, ToolToken) {
        let org = Organization {
            id: OrgId::from_uuid(uuid_from_counter(lock(&self.data).orgs.len() as u128 + 1)),
            name: OrgName::parse(name).expect("valid org name"),
            default_region: Region::parse(region).expect("valid region"),
            unknown_caller_name: String::new(),
        };
        let token = self.add_secret(org.id);
        lock(&self.data).orgs.push(org.clone());
        (org, token)
    }

    /// Adds another live token to `org`.
    pub fn add_secret(&self, org: OrgId) -> ToolToken {
        let mut data = lock(&self.data);
        let seed = (data.secrets.len() as u8).wrapping_add(1);
        let mut bytes = [seed; ToolToken::RANDOM_BYTES];
        bytes[..16].copy_from_slice(&org.as_uuid().into_bytes());
        let token = ToolToken::from_random_bytes(&bytes);
        data.secrets.insert(token.digest(), (org, true));
        token
    }

    /// Revokes a token: it stops authenticating.
    pub fn revoke(&self, token: &ToolToken) {
        if let Some(entry) = lock(&self.data).secrets.get_mut(&token.digest()) {
            entry.1 = false;
        }
    }

    /// Adds a contact of `org` with a number already in E.164 form.
    pub fn add_contact(
        &self,
        org: OrgId,
        first: Option<&str>,
        last: Option<&str>,
        e164: &str,
    ) -> Contact {
        let mut data = lock(&self.data);
        let contact = Contact {
            id: ContactId::from_uuid(uuid_from_counter(1_000 + data.contacts.len() as u128)),
            org_id: org,
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            phone: E164::from_normalized(e164).expect("E.164 test number"),
            updated_at: Utc::now(),
        };
        data.contacts.push(contact.clone());
        contact
    }

    /// Sets what an unknown caller of `org` is called (as `relay org set-fallback` does).
    pub fn set_unknown_caller_name(&self, org: OrgId, name: &str) {
        if let Some(o) = lock(&self.data).orgs.iter_mut().find(|o| o.id == org) {
            o.unknown_caller_name = name.to_owned();
        }
    }

    /// Stores a sealed webhook secret of `org` (as `relay org set-webhook-secret` does).
    pub fn set_sealed_webhook_secret(&self, org: OrgId, sealed: Vec<u8>) {
        lock(&self.data).webhook_secrets.insert(org, sealed);
    }

    /// Every call record stored, in insertion order.
    pub fn records(&self) -> Vec<CallRecord> {
        lock(&self.data).records.clone()
    }

    /// Makes every later call behave like this.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.data).behaviour = behaviour;
    }

    /// How many port calls this store has answered or failed.
    pub fn calls(&self) -> usize {
        lock(&self.data).calls
    }

    fn begin(&self) -> Behaviour {
        let mut data = lock(&self.data);
        data.calls += 1;
        data.behaviour
    }
}

fn uuid_from_counter(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

#[async_trait]
impl OrganizationDirectory for InMemoryStore {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let data = lock(&self.data);
        Ok(match data.secrets.get(digest) {
            Some((org_id, true)) => data.orgs.iter().find(|o| o.id == *org_id).cloned(),
            _ => None,
        })
    }
}

#[async_trait]
impl ContactDirectory for InMemoryStore {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let data = lock(&self.data);
        Ok(data
            .contacts
            .iter()
            .filter(|c| c.org_id == org && c.phone == *phone)
            .max_by_key(|c| (c.updated_at, c.id))
            .cloned())
    }
}

#[async_trait]
impl CallLog for InMemoryStore {
    async fn record_call(&self, record: &CallRecord) -> Result<Recorded, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let mut data = lock(&self.data);
        if let Some(existing) = data
            .records
            .iter()
            .find(|r| r.org_id == record.org_id && r.conversation_id == record.conversation_id)
        {
            return Ok(Recorded {
                id: existing.id,
                inserted: false,
            });
        }
        let mut record = record.clone();
        if !data
            .contacts
            .iter()
            .any(|c| Some(c.id) == record.contact_id && c.org_id == record.org_id)
        {
            record.contact_id = None;
        }
        let id = record.id;
        data.records.push(record);
        Ok(Recorded { id, inserted: true })
    }

    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        self.begin()
            .apply()
            .await
            .map_err(|e| AdminError::Repository(RepositoryError::Unavailable(e)))?;
        let data = lock(&self.data);
        if !data.orgs.iter().any(|o| o.id == org) {
            return Err(AdminError::NotFound("organization"));
        }
        let mut records: Vec<CallRecord> = data
            .records
            .iter()
            .filter(|r| r.org_id == org && since.is_none_or(|s| r.received_at >= s))
            .cloned()
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        records.truncate(limit as usize);
        Ok(records)
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let data = lock(&self.data);
        let sealed = data.webhook_secrets.get(&org).cloned();
        let org = data.orgs.iter().find(|o| o.id == org).cloned();
        Ok(org
            .zip(sealed)
            .map(|(org, sealed_secret)| WebhookSigner { org, sealed_secret }))
    }
}

/// Pings follow the behaviour but are not counted as port calls; the fake has no pool.
#[async_trait]
impl Probe for InMemoryStore {
    async fn ping(&self) -> Result<(), BoxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

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

#[derive(Debug, Default)]
struct CacheData {
    entries: HashMap<(OrgId, CallKey), CacheEntry>,
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

#[derive(Debug, Default)]
struct OutboxData {
    entries: Vec<OutboxEntry>,
    dead: Vec<(OutboxEntry, String)>,
    next: u64,
    behaviour: Behaviour,
}

/// An in-memory delivery outbox (not durable: for tests of the use case only).
#[derive(Debug, Clone, Default)]
pub struct InMemoryOutbox {
    data: Arc<Mutex<OutboxData>>,
}

impl InMemoryOutbox {
    /// An empty, healthy outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call behave like this.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.data).behaviour = behaviour;
    }

    /// The entries waiting.
    pub fn entries(&self) -> Vec<OutboxEntry> {
        lock(&self.data).entries.clone()
    }

    /// The dead-lettered entries, with their reasons.
    pub fn dead_letters(&self) -> Vec<(OutboxEntry, String)> {
        lock(&self.data).dead.clone()
    }
}

/// Bytes the fake counts for a set of entries: their payloads.
fn payload_bytes<'a>(entries: impl Iterator<Item = &'a OutboxEntry>) -> u64 {
    entries.map(|e| e.payload.len() as u64).sum()
}

#[async_trait]
impl DeliveryOutbox for InMemoryOutbox {
    async fn append(&self, payload: &[u8], limits: OutboxLimits) -> Result<Appended, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let mut data = lock(&self.data);
        if data.entries.len() as u64 >= limits.max_entries {
            return Ok(Appended::Full(OutboxBound::Entries));
        }
        if payload_bytes(data.entries.iter()) + payload.len() as u64 > limits.max_bytes {
            return Ok(Appended::Full(OutboxBound::Bytes));
        }
        data.next += 1;
        let id = format!("{}-0", data.next);
        data.entries.push(OutboxEntry {
            id,
            payload: payload.to_vec(),
        });
        Ok(Appended::Stored)
    }

    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        Ok(lock(&self.data).entries.iter().take(max).cloned().collect())
    }

    async fn remove(&self, id: &str) -> Result<(), CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        lock(&self.data).entries.retain(|e| e.id != id);
        Ok(())
    }

    async fn dead_letter(
        &self,
        entry: &OutboxEntry,
        reason: &str,
        limits: OutboxLimits,
    ) -> Result<u64, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let mut data = lock(&self.data);
        data.entries.retain(|e| e.id != entry.id);
        data.dead.push((entry.clone(), reason.to_owned()));
        let mut dropped = 0;
        while data.dead.len() > 1
            && (data.dead.len() as u64 > limits.max_entries
                || payload_bytes(data.dead.iter().map(|(e, _)| e)) > limits.max_bytes)
        {
            data.dead.remove(0);
            dropped += 1;
        }
        Ok(dropped)
    }

    async fn usage(&self) -> Result<OutboxUsage, CacheError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(CacheError::Unavailable)?;
        let data = lock(&self.data);
        Ok(OutboxUsage {
            entries: data.entries.len() as u64,
            bytes: payload_bytes(data.entries.iter()),
        })
    }
}
