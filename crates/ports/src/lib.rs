//! Ports: what the use cases need from the outside world, as traits.
//!
//! Each method's doc comment is its contract: what it returns for each case and which error it
//! may give. Adapters translate their driver errors (sqlx, Redis, ...) into the errors here, at
//! the seam, so nothing above this crate knows which database or cache is behind a port.
//!
//! With the `mocks` feature every trait has a mockall mock (`MockContactDirectory`, ...).
#![warn(missing_docs)]

use std::time::Duration;

#[cfg(feature = "test-helpers")]
pub mod conformance;
#[cfg(feature = "test-helpers")]
pub mod fakes;
mod management;

pub use management::{
    AuditLog, Claim, ContactAdmin, ContactUpsert, IdempotencyCache, ManagementKeys, StoredResponse,
    Upserted,
};
#[cfg(feature = "mocks")]
pub use management::{MockAuditLog, MockContactAdmin, MockIdempotencyCache, MockManagementKeys};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    CallContext, CallId, CallKey, CallRecord, CallerMemory, Contact, ContactId, E164, FallbackName,
    MemorySettings, NewContact, OrgId, OrgName, Organization, Region, SecretId, SecretInfo,
    TokenDigest,
};

/// The error a driver gave, kept as the source of a port error for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage port failed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The store could not be reached or did not answer (connection refused, pool timed out,
    /// connection lost mid-query). Retrying later may succeed.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// The store answered with data this service cannot read (a broken row, a failed
    /// constraint we did not expect). Retrying will not help.
    #[error("storage returned unexpected data")]
    Unexpected(#[source] BoxError),
}

/// What an administrative operation named that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// An organization.
    Organization,
    /// A tool secret.
    Secret,
    /// A contact.
    Contact,
    /// A management API key.
    Key,
    /// A call record.
    Call,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Organization => "organization",
            Self::Secret => "secret",
            Self::Contact => "contact",
            Self::Key => "key",
            Self::Call => "call",
        })
    }
}

/// An administrative storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The organization or secret named does not exist.
    #[error("{0} not found")]
    NotFound(Entity),
    /// Another contact of the organization already has this external id; nothing was changed.
    #[error("another contact already has this external id")]
    ExternalIdTaken,
    /// The object's version is not the one the change was conditioned on (`If-Match`);
    /// nothing was changed.
    #[error("{0} was changed since it was read")]
    VersionMismatch(Entity),
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The delivery outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox could not be reached or did not answer. Retrying later may succeed.
    #[error("outbox unavailable")]
    Unavailable(#[source] BoxError),
}

/// The call-context cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache could not be reached or did not answer. Retrying later may succeed.
    #[error("cache unavailable")]
    Unavailable(#[source] BoxError),
    /// A stored entry could not be read back (not the JSON of a [`CallContext`]).
    #[error("cached entry is corrupt")]
    Corrupt(#[source] BoxError),
}

/// Finds the organization a tool secret belongs to. Used on every webhook call.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrganizationDirectory: Send + Sync {
    /// The organization owning a live secret with this digest.
    ///
    /// - MUST return `Ok(None)` when no secret has this digest, or when that secret was revoked.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError>;
}

/// Finds an organization's contacts by phone number. Used on every webhook call.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ContactDirectory: Send + Sync {
    /// The contact of `org` whose normalized number equals `phone`.
    ///
    /// - MUST only ever return a contact of `org` (tenant isolation).
    /// - When several contacts share the number, MUST return the most recently updated one, and
    ///   among equal update times the one with the greatest id, so the answer is deterministic.
    /// - MUST return `Ok(None)` when `org` has no contact with this number.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError>;

    /// The caller with this number, as the personalization routes need them, in one round trip:
    /// the contact [`ContactDirectory::find_by_phone`] would return, and what is remembered of
    /// the number's calls ([`CallLog::record_call`]) when its last activity is at or after
    /// `memory_since` (`None`: memory is off, none is read).
    ///
    /// - MUST follow [`ContactDirectory::find_by_phone`]'s rules for the contact, and return
    ///   memory of `org` only, whether or not the number is a contact's.
    /// - MUST return `Ok` with `memory: Err(_)` when the contact could be read but the memory
    ///   could not (a stored memory this service cannot read): the caller is still answered.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn find_caller(
        &self,
        org: OrgId,
        phone: &E164,
        memory_since: Option<DateTime<Utc>>,
    ) -> Result<Caller, RepositoryError>;
}

/// What [`ContactDirectory::find_caller`] found.
#[derive(Debug)]
pub struct Caller {
    /// The organization's contact with the number.
    pub contact: Option<Contact>,
    /// What is remembered of the number's calls; `Ok(None)` for nothing (or memory off).
    pub memory: Result<Option<CallerMemory>, RepositoryError>,
}

/// Keeps the context of a call between the personalization webhook and the post-call webhook.
///
/// Every organization has its own key space: conversation ids and call sids come from the
/// caller of the webhook, so one organization naming another's conversation must neither read
/// nor replace that organization's context.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CallContextCache: Send + Sync {
    /// Stores `context` for `ttl` under each of its keys ([`CallContext::keys`]: the
    /// conversation id, the call sid, or both), in the key space of `context.org_id`. A context
    /// without keys is not stored.
    ///
    /// - MUST overwrite an earlier entry of the same organization under the same key, and
    ///   restart its `ttl` (a repeated request is idempotent).
    /// - MUST NOT touch another organization's entry under the same key.
    /// - MUST return `Err(CacheError::Unavailable)` when the cache cannot be reached; an entry
    ///   may then be missing, never half-written.
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError>;

    /// The context `org` stored under `key`.
    ///
    /// - MUST only return a context of `org` (`org_id == org`), never another organization's
    ///   stored under the same key.
    /// - MUST return `Ok(None)` when there is none or it expired.
    /// - MUST return `Err(CacheError::Corrupt)` when the stored entry cannot be read.
    /// - MUST return `Err(CacheError::Unavailable)` when the cache cannot be reached.
    async fn get(&self, org: OrgId, key: &CallKey) -> Result<Option<CallContext>, CacheError>;

    /// Deletes every context of `org` whose caller is `phone` or whose contact is one of
    /// `contacts` (erasure on request), under every key it was stored by. Returns how many
    /// entries were deleted (a context stored under both a conversation id and a call sid is
    /// two).
    ///
    /// - MUST NOT touch another organization's contexts.
    /// - MUST return `Err(CacheError::Unavailable)` when the cache cannot be reached.
    async fn forget_caller(
        &self,
        org: OrgId,
        phone: &E164,
        contacts: &[ContactId],
    ) -> Result<u64, CacheError>;
}

/// Connection-pool gauges of a backing service, read when metrics are scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Most connections the pool may open.
    pub max: u32,
    /// Connections open now (idle and in use).
    pub open: u32,
    /// Connections lent out now.
    pub in_use: u32,
    /// Callers waiting for a connection now, where the adapter counts them.
    pub waiting: Option<u32>,
}

/// The operational side of a backing service: does it answer, and how busy is its pool. Used by
/// the readiness check and the metrics, never on the webhook path.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Probe: Send + Sync {
    /// One round trip to the service (`SELECT 1`, `PING`).
    ///
    /// - MUST return `Err` when the service cannot be reached or answers with an error.
    /// - The caller bounds the time; an implementation need not.
    async fn ping(&self) -> Result<(), BoxError>;

    /// The pool's gauges now; `None` when there is no pool (an in-process cache).
    fn pool_stats(&self) -> Option<PoolStats>;
}

/// A store implementing every storage port and its probe (what the app wires from one database
/// URL).
pub trait Store:
    OrganizationDirectory
    + ContactDirectory
    + OrganizationAdmin
    + ContactImport
    + CallLog
    + MemoryKeeper
    + ContactAdmin
    + ManagementKeys
    + AuditLog
    + Probe
{
}

impl<
    T: OrganizationDirectory
        + ContactDirectory
        + OrganizationAdmin
        + ContactImport
        + CallLog
        + MemoryKeeper
        + ContactAdmin
        + ManagementKeys
        + AuditLog
        + Probe,
> Store for T
{
}

/// The result of [`CallLog::record_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The record's id: the new one, or the first delivery's.
    pub id: CallId,
    /// False when a record of this organization and conversation already existed (a duplicate
    /// delivery, which changed nothing).
    pub inserted: bool,
}

/// Call records from the post-call webhook, and the webhook's signing secrets.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CallLog: Send + Sync {
    /// Stores `record` unless the organization already has a record of its conversation, and
    /// when `remember` is true and the record has a caller number, updates the memory of that
    /// number ([`ContactDirectory::find_caller`]) in the same transaction:
    ///
    /// - a completed call counts once; the newest completed call (by `event_at`) gives the last
    ///   call's time, summary ([`relay_domain::CallSummary`]) and outcome, and clears the missed
    ///   calls that happened before it; an older one arriving late only counts;
    /// - a missed call after the newest completed call counts as missed since the last;
    /// - the memory's last activity is its newest call of either kind.
    ///
    /// - MUST be idempotent per (`org_id`, `conversation_id`): a second call, even concurrent
    ///   with the first, stores nothing, changes nothing (the memory neither) and returns the
    ///   first record's id with `inserted: false`.
    /// - Concurrent records of different conversations of the same number MUST all count.
    /// - MUST return only once the record (and memory) is durable (committed).
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn record_call(
        &self,
        record: &CallRecord,
        remember: bool,
    ) -> Result<Recorded, RepositoryError>;

    /// Records of `org` received at or after `since` (all when `None`), newest first (by
    /// receipt time, then id), at most `limit`, and only those after `before` in that order (the
    /// previous page's last record) when it is set.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        before: Option<CallCursor>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError>;

    /// The organization `org` with its sealed (encrypted) webhook signing secret, as stored by
    /// [`OrganizationAdmin::set_webhook_secret`].
    ///
    /// - MUST return `Ok(None)` when `org` does not exist or has no webhook secret.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError>;

    /// The record `call` of `org`.
    ///
    /// - MUST return `Ok(None)` when `org` has no record with this id (another organization's
    ///   record included).
    async fn get_call(&self, org: OrgId, call: CallId) -> Result<Option<CallRecord>, AdminError>;
}

/// Where a page of [`CallLog::list_calls`] ended: its last record's receipt time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCursor {
    /// The last record's `received_at`.
    pub received_at: DateTime<Utc>,
    /// The last record's id.
    pub id: CallId,
}

/// An organization that can verify signed post-call webhooks ([`CallLog::webhook_signer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSigner {
    /// The organization.
    pub org: Organization,
    /// Its webhook secret, sealed; only the use case holding the key can open it.
    pub sealed_secret: Vec<u8>,
}

/// One delivery waiting in the [`DeliveryOutbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The outbox's id for it (a Redis stream entry id), for [`DeliveryOutbox::remove`].
    pub id: String,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// How much an outbox stream (the pending deliveries, or the dead letters) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most entries.
    pub max_entries: u64,
    /// Most bytes, as the backend counts the stream's memory (entries and their overhead).
    pub max_bytes: u64,
}

/// Which of the [`OutboxLimits`] was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxBound {
    /// `max_entries`.
    Entries,
    /// `max_bytes`.
    Bytes,
}

impl OutboxBound {
    /// `entries` or `bytes`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entries => "entries",
            Self::Bytes => "bytes",
        }
    }
}

/// What [`DeliveryOutbox::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// Not stored: the outbox is at this bound.
    Full(OutboxBound),
}

/// What the pending stream holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxUsage {
    /// Entries waiting.
    pub entries: u64,
    /// Bytes they take, as [`OutboxLimits::max_bytes`] counts them.
    pub bytes: u64,
}

/// Where post-call deliveries wait, durably, while the store is down; replayed when it is back.
///
/// Both its streams are bounded, so whatever reaches them cannot exhaust the backend (and evict
/// the call contexts that share it): a full outbox refuses new deliveries rather than dropping
/// queued ones, and the dead letters drop their oldest to make room.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DeliveryOutbox: Send + Sync {
    /// Appends a delivery unless the outbox is at one of `limits`.
    ///
    /// - MUST return `Ok(Appended::Full(OutboxBound::Entries))`, storing nothing, when it holds
    ///   `max_entries` entries, and `Ok(Appended::Full(OutboxBound::Bytes))` when its bytes plus
    ///   `payload` would exceed `max_bytes`. The check and the append are one atomic step, so
    ///   concurrent appends cannot overshoot.
    /// - MUST return `Ok(Appended::Stored)` only once the entry is stored (as durable as the
    ///   backend is configured).
    /// - MUST return `Err(OutboxError::Unavailable)` when the backend cannot be reached.
    async fn append(&self, payload: &[u8], limits: OutboxLimits) -> Result<Appended, OutboxError>;

    /// Up to `max` entries, oldest first. Entries stay until removed. An entry whose payload
    /// cannot be read back is returned with an empty payload (so it can be dead-lettered, never
    /// blocking the others).
    ///
    /// - MUST return `Err(OutboxError::Unavailable)` when the backend cannot be reached.
    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError>;

    /// Removes an entry; removing a missing entry is not an error.
    ///
    /// - MUST return `Err(OutboxError::Unavailable)` when the backend cannot be reached.
    async fn remove(&self, id: &str) -> Result<(), OutboxError>;

    /// Moves an entry that can never be recorded (refused credentials, invalid, unreadable, or a
    /// store that refuses it) out of the way, with the reason, where an operator can inspect
    /// and re-queue it; it no longer counts as pending. The dead letters then hold at most
    /// `limits`: the oldest are dropped to make room (never the one just moved). Returns how
    /// many were dropped.
    ///
    /// - MUST keep the payload and the reason.
    /// - MUST return `Err(OutboxError::Unavailable)` when the backend cannot be reached; the entry
    ///   then stays pending.
    async fn dead_letter(
        &self,
        entry: &OutboxEntry,
        reason: &str,
        limits: OutboxLimits,
    ) -> Result<u64, OutboxError>;

    /// What waits now.
    ///
    /// - MUST return `Err(OutboxError::Unavailable)` when the backend cannot be reached.
    async fn usage(&self) -> Result<OutboxUsage, OutboxError>;
}

/// A call-context and idempotency cache the service can also probe (what the app wires from
/// `REDIS_URL`, or in process).
pub trait Cache: CallContextCache + IdempotencyCache + Probe {}

impl<T: CallContextCache + IdempotencyCache + Probe> Cache for T {}

/// What one call of [`ContactImport::upsert_contacts`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertSummary {
    /// Contacts that did not exist yet.
    pub inserted: u64,
    /// Existing contacts whose names or raw number changed.
    pub updated: u64,
    /// Existing contacts that already held exactly this data (left untouched).
    pub unchanged: u64,
}

impl std::ops::AddAssign for UpsertSummary {
    fn add_assign(&mut self, rhs: Self) {
        self.inserted += rhs.inserted;
        self.updated += rhs.updated;
        self.unchanged += rhs.unchanged;
    }
}

/// Administration of organizations and their tool secrets (the `relay org` and `relay secret`
/// commands).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrganizationAdmin: Send + Sync {
    /// Creates an organization and returns it with its new id.
    ///
    /// - MUST return `Err(AdminError::Repository(_))` when the store fails.
    async fn create_organization(
        &self,
        name: &OrgName,
        default_region: Region,
    ) -> Result<Organization, AdminError>;

    /// All organizations, oldest first.
    async fn list_organizations(&self) -> Result<Vec<Organization>, AdminError>;

    /// Stores the digest of a new tool secret of `org`; the secret is live at once, beside any
    /// other live secret of `org` (rotation without downtime).
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn add_secret(&self, org: OrgId, digest: &TokenDigest) -> Result<SecretInfo, AdminError>;

    /// The secrets of `org`, live and revoked, oldest first. Never the tokens.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError>;

    /// Revokes a secret: from now on it authenticates nothing. Revoking twice keeps the first
    /// revocation time.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Secret))` when no secret has this id.
    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError>;

    /// The organization with this id.
    ///
    /// - MUST return `Ok(None)` when it does not exist.
    async fn find_organization(&self, org: OrgId) -> Result<Option<Organization>, AdminError>;

    /// Sets what an unrecognized caller is called on ElevenLabs' initiation route
    /// ([`Organization::unknown_caller_name`], empty for none) and returns the updated
    /// organization.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &FallbackName,
    ) -> Result<Organization, AdminError>;

    /// Sets the returning-caller memory rules of `org` and returns the updated organization.
    /// Memory beyond a shorter retention goes with the next purge
    /// ([`MemoryKeeper::purge_expired`]), and is no longer read from now on.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn set_memory(
        &self,
        org: OrgId,
        settings: MemorySettings,
    ) -> Result<Organization, AdminError>;

    /// Renames `org` and returns the updated organization.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn rename_organization(
        &self,
        org: OrgId,
        name: &OrgName,
    ) -> Result<Organization, AdminError>;

    /// Sets the region national-format numbers of `org` are read in (numbers already stored
    /// keep their normalized form) and returns the updated organization.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn set_default_region(
        &self,
        org: OrgId,
        region: Region,
    ) -> Result<Organization, AdminError>;

    /// Deletes `org` and everything it owns, in one transaction: secrets, management keys,
    /// contacts, call records, memory. The audit trail stays.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn delete_organization(&self, org: OrgId) -> Result<(), AdminError>;

    /// Stores the sealed (encrypted) post-call webhook signing secret of `org`, replacing any
    /// earlier one.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn set_webhook_secret(&self, org: OrgId, sealed: &[u8]) -> Result<(), AdminError>;
}

/// Bulk import of contacts (the `relay contacts import` command).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ContactImport: Send + Sync {
    /// Inserts or updates `contacts` of `org`, keyed on the normalized number: a contact whose
    /// number `org` already has updates the most recently updated contact with that number;
    /// any other is inserted. Re-importing the same data changes nothing.
    ///
    /// - The caller MUST NOT pass two contacts with the same number in one batch.
    /// - MUST apply the whole batch or none of it.
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError>;
}

/// What one [`MemoryKeeper::purge_expired`] batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Caller memories whose last activity is past their organization's retention (or whose
    /// organization turned memory off).
    pub memories: u64,
    /// Call records whose summary was past their organization's retention (the summary is
    /// removed, the record stays).
    pub summaries: u64,
    /// False when another process was purging at the same time and this batch did nothing.
    pub ran: bool,
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, rhs: Self) {
        self.memories += rhs.memories;
        self.summaries += rhs.summaries;
        self.ran |= rhs.ran;
    }
}

/// What [`MemoryKeeper::forget_caller`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// The contacts deleted (every contact of the organization with the number).
    pub contacts: Vec<ContactId>,
    /// Caller memories deleted (0 or 1).
    pub memories: u64,
    /// Call records whose summary, numbers and contact link were removed.
    pub calls: u64,
}

/// Keeps the returning-caller memory within each organization's rules: retention and erasure.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MemoryKeeper: Send + Sync {
    /// Deletes at most `batch` expired memories and removes at most `batch` expired summaries
    /// from call records: those whose time (a memory's last activity, a record's `event_at`) is
    /// more than their organization's retention before `now`, every memory of an organization
    /// whose memory is off, and the memory of numbers that are no contact's where the
    /// organization does not remember unknown callers (any more). Run again until a batch
    /// removes less than `batch`.
    ///
    /// - At most one process purges at a time: a concurrent call returns at once with
    ///   `ran: false`.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, RepositoryError>;

    /// Erasure on request, in one transaction: deletes every contact of `org` with the number
    /// `phone` and the memory of that number, and removes the summary, both numbers and the
    /// contact link from every call record of `org` with that caller number or one of those
    /// contacts. Idempotent: a second call removes nothing and says so.
    ///
    /// - MUST NOT touch another organization's data.
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn forget_caller(&self, org: OrgId, phone: &E164) -> Result<Forgotten, AdminError>;
}
