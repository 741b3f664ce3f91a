//! Ports of the management API: contacts one at a time, the API's keys, the audit trail.

use async_trait::async_trait;
use relay_domain::{
    ApiKeyId, ApiKeyInfo, AuditEntry, ContactDraft, ContactId, ContactQuery, ExternalId, KeyLabel,
    KeyScope, ManagedContact, OrgId, TokenDigest,
};

use crate::{AdminError, RepositoryError};

/// What [`ContactAdmin::upsert_by_external_id`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// No contact had the external id: one was created.
    Created,
    /// The contact with the external id was changed (its version incremented).
    Updated,
    /// The contact with the external id already held exactly this data: nothing changed, not
    /// even its version or update time.
    Unchanged,
}

/// The result of [`ContactAdmin::upsert_by_external_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpsert {
    /// The contact as stored now.
    pub contact: ManagedContact,
    /// What happened.
    pub outcome: Upserted,
}

/// One contact at a time, as the system owning the contacts manages them.
///
/// Every method is scoped by `org`: a contact id of another organization is "not found".
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ContactAdmin: Send + Sync {
    /// The contact `id` of `org`.
    ///
    /// - MUST return `Ok(None)` when `org` has no such contact.
    async fn get_contact(
        &self,
        org: OrgId,
        id: ContactId,
    ) -> Result<Option<ManagedContact>, AdminError>;

    /// Creates a contact of `org` at version 1; its number is marked as remembered when the
    /// organization has a memory of that number (as an import does).
    ///
    /// - MUST return `Err(AdminError::ExternalIdTaken)` when another contact of `org` has the
    ///   draft's external id.
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn create_contact(
        &self,
        org: OrgId,
        draft: &ContactDraft,
    ) -> Result<ManagedContact, AdminError>;

    /// Replaces the data of contact `id` of `org` with `draft`, increments its version and sets
    /// its update time, when its version is `expected` (any version when `None`). A draft equal
    /// to the stored data changes nothing and returns the contact as it is.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Contact))` when `org` has no such contact.
    /// - MUST return `Err(AdminError::VersionMismatch(Entity::Contact))`, changing nothing, when
    ///   the version is not `expected`.
    /// - MUST return `Err(AdminError::ExternalIdTaken)` when another contact of `org` has the
    ///   draft's external id.
    async fn update_contact(
        &self,
        org: OrgId,
        id: ContactId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError>;

    /// Creates or replaces the contact of `org` whose external id is `external_id` (the
    /// draft's external id is ignored), atomically: two concurrent upserts of one external id
    /// make one contact. When `expected` is set, the contact must exist at that version.
    ///
    /// - MUST return `Err(AdminError::VersionMismatch(Entity::Contact))`, changing nothing, when
    ///   `expected` is set and the contact does not exist or has another version.
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn upsert_by_external_id(
        &self,
        org: OrgId,
        external_id: &ExternalId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ContactUpsert, AdminError>;

    /// Deletes contact `id` of `org` and the memory of its number, in one transaction; its
    /// call records stay, unlinked. Returns the contact as it was (so cached call contexts can
    /// go too).
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Contact))` when `org` has no such contact.
    /// - MUST return `Err(AdminError::VersionMismatch(Entity::Contact))`, deleting nothing, when
    ///   `expected` is set and the version is another.
    async fn delete_contact(
        &self,
        org: OrgId,
        id: ContactId,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError>;

    /// One page of `org`'s contacts matching `query`, in increasing id order.
    ///
    /// - The name filter MUST match a first or last name containing it, case-insensitively for
    ///   ASCII letters; `%` and `_` in it are literal.
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when `org` does not exist.
    async fn list_contacts(
        &self,
        org: OrgId,
        query: &ContactQuery,
    ) -> Result<Vec<ManagedContact>, AdminError>;
}

/// The management API's keys: only their digests are stored.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ManagementKeys: Send + Sync {
    /// Stores a new key's digest; it authenticates at once.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Organization))` when the scope's
    ///   organization does not exist.
    async fn create_key(
        &self,
        scope: KeyScope,
        label: &KeyLabel,
        digest: &TokenDigest,
    ) -> Result<ApiKeyInfo, AdminError>;

    /// The live key with this digest.
    ///
    /// - MUST return `Ok(None)` when no key has it, or that key was revoked, or its
    ///   organization was deleted.
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn find_key(&self, digest: &TokenDigest) -> Result<Option<ApiKeyInfo>, RepositoryError>;

    /// The key with this id, live or revoked.
    ///
    /// - MUST return `Ok(None)` when there is none.
    async fn get_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyInfo>, AdminError>;

    /// Keys, live and revoked, oldest first: the keys of `org` (`Some`), or the operator keys
    /// (`None`).
    async fn list_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKeyInfo>, AdminError>;

    /// Revokes a key: from now on it authenticates nothing. Revoking twice keeps the first time.
    ///
    /// - MUST return `Err(AdminError::NotFound(Entity::Key))` when no key has this id.
    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKeyInfo, AdminError>;
}

/// The append-only trail of changes made through the management API and the CLI.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `entry` (its `seq` is ignored and assigned) and returns its `seq`, greater than
    /// every earlier entry's.
    ///
    /// - MUST return `Err(RepositoryError::Unavailable)` when the store cannot be reached.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, RepositoryError>;

    /// Entries newest first, at most `limit`, with a `seq` below `before` (all when `None`):
    /// every organization's and none (`org: None`), or those of `org`.
    async fn list_audit(
        &self,
        org: Option<OrgId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, RepositoryError>;
}

/// A response kept for an `Idempotency-Key`: what a retry of the same request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers a retry must see again (`Location`, `ETag`), as name and value.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What [`IdempotencyCache::claim`] found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No request holds the key: it is now reserved for this one, until
    /// [`IdempotencyCache::complete`], [`IdempotencyCache::release`] or the TTL.
    Reserved,
    /// A request with this key and fingerprint is still being handled.
    InProgress,
    /// A request with this key and fingerprint finished: its response.
    Completed(StoredResponse),
    /// The key was used for another request (another fingerprint), finished or not.
    Mismatch,
}

/// Remembers the responses of creating requests by their `Idempotency-Key`, so a client that
/// retries after a lost answer gets the first answer instead of a second object. Shared by the
/// replicas (Redis), or in process for the embedded mode.
///
/// Keys live in the space of one `scope` (a management key's id): two clients using the same
/// `Idempotency-Key` never see each other's responses.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IdempotencyCache: Send + Sync {
    /// Reserves `key` in `scope` for a request with `fingerprint` (a digest of its method, path
    /// and body) for `ttl`, atomically: of concurrent claims of one key exactly one gets
    /// [`Claim::Reserved`].
    ///
    /// - MUST return what is stored under the key otherwise (see [`Claim`]).
    /// - MUST return `Err(CacheError::Unavailable)` when the backend cannot be reached.
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        ttl: std::time::Duration,
    ) -> Result<Claim, crate::CacheError>;

    /// Stores the response of the request that reserved `key`, for `ttl` from now.
    ///
    /// - MUST return `Err(CacheError::Unavailable)` when the backend cannot be reached.
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        ttl: std::time::Duration,
    ) -> Result<(), crate::CacheError>;

    /// Frees `key` (the request failed in a way a retry may fix): the next claim reserves it.
    ///
    /// - MUST return `Err(CacheError::Unavailable)` when the backend cannot be reached.
    async fn release(&self, scope: &str, key: &str) -> Result<(), crate::CacheError>;
}
