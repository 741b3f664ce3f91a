//! The in-memory store: organizations, secrets, contacts and call records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    ApiKeyId, ApiKeyInfo, AuditEntry, CallId, CallKind, CallOutcome, CallRecord, CallSummary,
    CallerMemory, Contact, ContactDraft, ContactId, ContactQuery, E164, ExternalId, FallbackName,
    KeyLabel, KeyScope, ManagedContact, MemorySettings, NewContact, OrgId, OrgName, Organization,
    Region, SecretId, SecretInfo, TokenDigest, ToolToken,
};

use super::{Behaviour, lock};
use crate::{
    AdminError, AuditLog, BoxError, CallCursor, CallLog, Caller, ContactAdmin, ContactDirectory,
    ContactImport, ContactUpsert, Entity, Forgotten, ManagementKeys, MemoryKeeper,
    OrganizationAdmin, OrganizationDirectory, PoolStats, Probe, Purged, Recorded, RepositoryError,
    UpsertSummary, Upserted, WebhookSigner,
};

/// A tool secret as the store keeps it: the digest it authenticates, and its bookkeeping.
#[derive(Debug)]
struct SecretRow {
    digest: TokenDigest,
    info: SecretInfo,
}

/// A contact with what the management API also sees: the number as written, the source's id,
/// the version.
#[derive(Debug)]
struct ContactRow {
    contact: Contact,
    phone_raw: String,
    external_id: Option<ExternalId>,
    created_at: DateTime<Utc>,
    version: i64,
}

impl ContactRow {
    fn new(contact: Contact, phone_raw: String, external_id: Option<ExternalId>) -> Self {
        Self {
            created_at: contact.updated_at,
            contact,
            phone_raw,
            external_id,
            version: 1,
        }
    }

    /// A new contact `id` of `org` holding `draft`, updated now.
    fn from_draft(id: ContactId, org: OrgId, draft: &ContactDraft) -> Self {
        Self::new(
            Contact {
                id,
                org_id: org,
                first_name: draft.first_name.clone(),
                last_name: draft.last_name.clone(),
                phone: draft.phone.clone(),
                updated_at: Utc::now(),
            },
            draft.phone_raw.clone(),
            draft.external_id.clone(),
        )
    }

    fn managed(&self) -> ManagedContact {
        ManagedContact {
            contact: self.contact.clone(),
            external_id: self.external_id.clone(),
            phone_raw: self.phone_raw.clone(),
            created_at: self.created_at,
            version: self.version,
        }
    }

    /// Whether the row already holds exactly `draft` (as the SQL adapters compare).
    fn holds(&self, draft: &ContactDraft) -> bool {
        self.contact.first_name == draft.first_name
            && self.contact.last_name == draft.last_name
            && self.phone_raw == draft.phone_raw
            && self.contact.phone == draft.phone
            && self.external_id == draft.external_id
    }

    /// Writes `draft`: a new version, updated now.
    fn apply(&mut self, draft: &ContactDraft) {
        self.contact.first_name.clone_from(&draft.first_name);
        self.contact.last_name.clone_from(&draft.last_name);
        self.contact.phone = draft.phone.clone();
        self.phone_raw.clone_from(&draft.phone_raw);
        self.external_id.clone_from(&draft.external_id);
        self.contact.updated_at = Utc::now();
        self.version += 1;
    }
}

/// A management key as the store keeps it.
#[derive(Debug)]
struct KeyRow {
    digest: TokenDigest,
    info: ApiKeyInfo,
}

#[derive(Debug, Default)]
struct StoreData {
    /// Oldest first.
    orgs: Vec<Organization>,
    /// Organizations ever created, for fresh ids.
    org_seq: u128,
    /// Oldest first.
    secrets: Vec<SecretRow>,
    contacts: Vec<ContactRow>,
    /// Contacts ever created, for fresh ids.
    contact_seq: u128,
    keys: Vec<KeyRow>,
    audit: Vec<AuditEntry>,
    records: Vec<CallRecord>,
    memories: HashMap<(OrgId, E164), MemoryRow>,
    unreadable_memory: Vec<(OrgId, E164)>,
    webhook_secrets: HashMap<OrgId, Vec<u8>>,
    behaviour: Behaviour,
    calls: usize,
}

impl StoreData {
    fn org_exists(&self, org: OrgId) -> bool {
        self.orgs.iter().any(|o| o.id == org)
    }

    /// The organization to change, or `NotFound` as an admin port answers it.
    fn org_mut(&mut self, org: OrgId) -> Result<&mut Organization, AdminError> {
        self.orgs
            .iter_mut()
            .find(|o| o.id == org)
            .ok_or(AdminError::NotFound(Entity::Organization))
    }

    fn next_org_id(&mut self) -> OrgId {
        // Deleted organizations keep their place: ids are never reused.
        self.org_seq += 1;
        OrgId::from_uuid(uuid_from_counter(self.org_seq))
    }

    fn next_contact_id(&mut self) -> ContactId {
        self.contact_seq += 1;
        ContactId::from_uuid(uuid_from_counter(1_000_000 + self.contact_seq))
    }

    /// Another contact of `org` than `except` already has `external_id`.
    fn external_id_taken(
        &self,
        org: OrgId,
        external_id: Option<&ExternalId>,
        except: Option<ContactId>,
    ) -> bool {
        external_id.is_some_and(|ext| {
            self.contacts.iter().any(|c| {
                c.contact.org_id == org
                    && c.external_id.as_ref() == Some(ext)
                    && Some(c.contact.id) != except
            })
        })
    }

    /// The contact of `org` with this number that a lookup finds: the most recently updated,
    /// then the greatest id.
    fn newest_contact(&mut self, org: OrgId, phone: &E164) -> Option<&mut ContactRow> {
        self.contacts
            .iter_mut()
            .filter(|c| c.contact.org_id == org && c.contact.phone == *phone)
            .max_by_key(|c| (c.contact.updated_at, c.contact.id))
    }

    /// The id of the record `org` already has of this conversation.
    fn recorded(&self, record: &CallRecord) -> Option<CallId> {
        self.records
            .iter()
            .find(|r| r.org_id == record.org_id && r.conversation_id == record.conversation_id)
            .map(|r| r.id)
    }
}

/// A caller's memory as the SQL adapters keep it (one row per organization and number).
#[derive(Debug, Clone)]
struct MemoryRow {
    completed_calls: u32,
    last_call_at: Option<DateTime<Utc>>,
    last_summary: Option<CallSummary>,
    last_outcome: CallOutcome,
    missed_since_last: u32,
    last_missed_at: Option<DateTime<Utc>>,
    last_activity_at: DateTime<Utc>,
}

impl MemoryRow {
    fn new(at: DateTime<Utc>) -> Self {
        Self {
            completed_calls: 0,
            last_call_at: None,
            last_summary: None,
            last_outcome: CallOutcome::Unknown,
            missed_since_last: 0,
            last_missed_at: None,
            last_activity_at: at,
        }
    }

    /// [`CallLog::record_call`]'s rules, as the SQL adapters' upsert applies them.
    fn apply(&mut self, record: &CallRecord) {
        let at = record.event_at;
        match record.kind {
            CallKind::Completed => {
                self.completed_calls += 1;
                if self.last_call_at.is_none_or(|last| at >= last) {
                    self.last_call_at = Some(at);
                    self.last_summary = record
                        .summary
                        .as_deref()
                        .and_then(CallSummary::from_untrusted);
                    self.last_outcome =
                        CallOutcome::from_evaluation(record.call_successful.as_deref());
                    if self.last_missed_at.is_none_or(|missed| missed <= at) {
                        self.missed_since_last = 0;
                    }
                }
            }
            CallKind::Missed => {
                if self.last_call_at.is_none_or(|last| at > last) {
                    self.missed_since_last += 1;
                }
                self.last_missed_at = self.last_missed_at.max(Some(at));
            }
        }
        self.last_activity_at = self.last_activity_at.max(at);
    }

    fn memory(&self) -> CallerMemory {
        CallerMemory {
            previous_calls: self.completed_calls,
            last_call_at: self.last_call_at,
            last_call_summary: self.last_summary.clone(),
            last_call_outcome: self.last_outcome,
            missed_calls_since_last: self.missed_since_last,
        }
    }
}

/// An in-memory store implementing every storage port ([`crate::Store`]).
///
/// Like a database, it records a call in two steps (look up the conversation, then insert
/// re-checking it as a unique constraint does), with other calls free to run in between, so
/// concurrent duplicate deliveries really race.
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
            id: lock(&self.data).next_org_id(),
            name: OrgName::parse(name).expect("valid org name"),
            default_region: Region::parse(region).expect("valid region"),
            unknown_caller_name: FallbackName::default(),
            memory: MemorySettings::default(),
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
        data.secrets.push(SecretRow {
            digest: token.digest(),
            info: new_secret(org),
        });
        token
    }

    /// Revokes a token: it stops authenticating.
    pub fn revoke(&self, token: &ToolToken) {
        let digest = token.digest();
        for secret in lock(&self.data)
            .secrets
            .iter_mut()
            .filter(|s| s.digest == digest)
        {
            secret.info.revoked_at.get_or_insert_with(Utc::now);
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
            id: data.next_contact_id(),
            org_id: org,
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            phone: E164::parse_e164(e164).expect("E.164 test number"),
            updated_at: Utc::now(),
        };
        data.contacts
            .push(ContactRow::new(contact.clone(), e164.to_owned(), None));
        contact
    }

    /// Stores a contact as it is, with its id and update time, bypassing the import rules (as
    /// another system writing to the database might).
    pub fn insert_contact(&self, contact: Contact) {
        let phone_raw = contact.phone.as_str().to_owned();
        lock(&self.data)
            .contacts
            .push(ContactRow::new(contact, phone_raw, None));
    }

    /// Sets what an unknown caller of `org` is called (as `relay org set-fallback` does).
    pub fn set_unknown_caller_name(&self, org: OrgId, name: &str) {
        if let Some(o) = lock(&self.data).orgs.iter_mut().find(|o| o.id == org) {
            o.unknown_caller_name = FallbackName::sanitized(name);
        }
    }

    /// Stores a sealed webhook secret of `org` (as `relay org set-webhook-secret` does).
    pub fn set_sealed_webhook_secret(&self, org: OrgId, sealed: Vec<u8>) {
        lock(&self.data).webhook_secrets.insert(org, sealed);
    }

    /// Makes the memory of `phone` in `org` unreadable, as a broken stored row would be:
    /// [`ContactDirectory::find_caller`] then answers the contact with a memory error.
    pub fn break_memory(&self, org: OrgId, phone: &E164) {
        lock(&self.data)
            .unreadable_memory
            .push((org, phone.clone()));
    }

    /// Whether any memory of `phone` in `org` is kept (expired or not).
    pub fn has_memory(&self, org: OrgId, phone: &E164) -> bool {
        lock(&self.data)
            .memories
            .contains_key(&(org, phone.clone()))
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

    /// [`Self::begin`] and its behaviour, failing as an administrative operation does.
    async fn begin_admin(&self) -> Result<(), AdminError> {
        self.begin()
            .apply()
            .await
            .map_err(|e| AdminError::Repository(RepositoryError::Unavailable(e)))
    }

    /// Applies `change` to organization `org` as an admin operation: the organization as
    /// changed, or `NotFound`.
    async fn change_org(
        &self,
        org: OrgId,
        change: impl FnOnce(&mut Organization),
    ) -> Result<Organization, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let found = data.org_mut(org)?;
        change(found);
        Ok(found.clone())
    }
}

fn uuid_from_counter(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

fn new_secret(org: OrgId) -> SecretInfo {
    SecretInfo {
        id: SecretId::from_uuid(uuid::Uuid::new_v4()),
        org_id: org,
        created_at: Utc::now(),
        revoked_at: None,
    }
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
        Ok(data
            .secrets
            .iter()
            .find(|s| s.digest == *digest && s.info.revoked_at.is_none())
            .and_then(|s| data.orgs.iter().find(|o| o.id == s.info.org_id))
            .cloned())
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
        Ok(lock(&self.data)
            .newest_contact(org, phone)
            .map(|c| c.contact.clone()))
    }

    async fn find_caller(
        &self,
        org: OrgId,
        phone: &E164,
        memory_since: Option<DateTime<Utc>>,
    ) -> Result<Caller, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let mut data = lock(&self.data);
        let contact = data.newest_contact(org, phone).map(|c| c.contact.clone());
        let key = (org, phone.clone());
        let memory = if data.unreadable_memory.contains(&key) {
            Err(RepositoryError::Unexpected(
                "fake memory is unreadable".into(),
            ))
        } else {
            Ok(memory_since.and_then(|since| {
                data.memories
                    .get(&key)
                    .filter(|m| m.last_activity_at >= since)
                    .map(MemoryRow::memory)
            }))
        };
        Ok(Caller { contact, memory })
    }
}

#[async_trait]
impl CallLog for InMemoryStore {
    async fn record_call(
        &self,
        record: &CallRecord,
        remember: bool,
    ) -> Result<Recorded, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        // As a database would: look the conversation up, let other calls run, then insert,
        // re-checking under the lock as a unique constraint does (the loser of a race gets the
        // winner's id, like `ON CONFLICT DO NOTHING` and a second lookup).
        let existing = lock(&self.data).recorded(record);
        if let Some(id) = existing {
            return Ok(Recorded {
                id,
                inserted: false,
            });
        }
        tokio::task::yield_now().await;
        let mut data = lock(&self.data);
        if let Some(id) = data.recorded(record) {
            return Ok(Recorded {
                id,
                inserted: false,
            });
        }
        let mut record = record.clone();
        if !data
            .contacts
            .iter()
            .any(|c| Some(c.contact.id) == record.contact_id && c.contact.org_id == record.org_id)
        {
            record.contact_id = None;
        }
        if remember && let Some(caller) = &record.caller {
            data.memories
                .entry((record.org_id, caller.clone()))
                .or_insert_with(|| MemoryRow::new(record.event_at))
                .apply(&record);
        }
        let id = record.id;
        data.records.push(record);
        Ok(Recorded { id, inserted: true })
    }

    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        before: Option<CallCursor>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        self.begin()
            .apply()
            .await
            .map_err(|e| AdminError::Repository(RepositoryError::Unavailable(e)))?;
        let data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let mut records: Vec<CallRecord> = data
            .records
            .iter()
            .filter(|r| r.org_id == org && since.is_none_or(|s| r.received_at >= s))
            .filter(|r| before.is_none_or(|b| (r.received_at, r.id) < (b.received_at, b.id)))
            .cloned()
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse((r.received_at, r.id)));
        records.truncate(limit as usize);
        Ok(records)
    }

    async fn get_call(&self, org: OrgId, call: CallId) -> Result<Option<CallRecord>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data)
            .records
            .iter()
            .find(|r| r.org_id == org && r.id == call)
            .cloned())
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

#[async_trait]
impl OrganizationAdmin for InMemoryStore {
    async fn create_organization(
        &self,
        name: &OrgName,
        default_region: Region,
    ) -> Result<Organization, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let org = Organization {
            id: data.next_org_id(),
            name: name.clone(),
            default_region,
            unknown_caller_name: FallbackName::default(),
            memory: MemorySettings::default(),
        };
        data.orgs.push(org.clone());
        Ok(org)
    }

    async fn list_organizations(&self) -> Result<Vec<Organization>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data).orgs.clone())
    }

    async fn add_secret(&self, org: OrgId, digest: &TokenDigest) -> Result<SecretInfo, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let info = new_secret(org);
        data.secrets.push(SecretRow {
            digest: *digest,
            info: info.clone(),
        });
        Ok(info)
    }

    async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError> {
        self.begin_admin().await?;
        let data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        Ok(data
            .secrets
            .iter()
            .filter(|s| s.info.org_id == org)
            .map(|s| s.info.clone())
            .collect())
    }

    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let row = data
            .secrets
            .iter_mut()
            .find(|s| s.info.id == secret)
            .ok_or(AdminError::NotFound(Entity::Secret))?;
        row.info.revoked_at.get_or_insert_with(Utc::now);
        Ok(row.info.clone())
    }

    async fn find_organization(&self, org: OrgId) -> Result<Option<Organization>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data).orgs.iter().find(|o| o.id == org).cloned())
    }

    async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &FallbackName,
    ) -> Result<Organization, AdminError> {
        self.change_org(org, |found| found.unknown_caller_name = name.clone())
            .await
    }

    async fn set_memory(
        &self,
        org: OrgId,
        settings: MemorySettings,
    ) -> Result<Organization, AdminError> {
        self.change_org(org, |found| found.memory = settings).await
    }

    async fn rename_organization(
        &self,
        org: OrgId,
        name: &OrgName,
    ) -> Result<Organization, AdminError> {
        self.change_org(org, |found| found.name = name.clone())
            .await
    }

    async fn set_default_region(
        &self,
        org: OrgId,
        region: Region,
    ) -> Result<Organization, AdminError> {
        self.change_org(org, |found| found.default_region = region)
            .await
    }

    async fn delete_organization(&self, org: OrgId) -> Result<(), AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        // What the SQL adapters' foreign keys cascade to; the audit trail stays.
        data.orgs.retain(|o| o.id != org);
        data.secrets.retain(|s| s.info.org_id != org);
        data.keys.retain(|k| k.info.scope.org() != Some(org));
        data.contacts.retain(|c| c.contact.org_id != org);
        data.records.retain(|r| r.org_id != org);
        data.memories.retain(|(o, _), _| *o != org);
        data.webhook_secrets.remove(&org);
        Ok(())
    }

    async fn set_webhook_secret(&self, org: OrgId, sealed: &[u8]) -> Result<(), AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        data.webhook_secrets.insert(org, sealed.to_vec());
        Ok(())
    }
}

/// The whole batch is applied under one lock: all of it or (on an unknown organization) none.
#[async_trait]
impl ContactImport for InMemoryStore {
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let now = Utc::now();
        let mut summary = UpsertSummary::default();
        for c in contacts {
            match data.newest_contact(org, &c.phone) {
                Some(row)
                    if row.contact.first_name == c.first_name
                        && row.contact.last_name == c.last_name
                        && row.phone_raw == c.phone_raw =>
                {
                    summary.unchanged += 1;
                }
                Some(row) => {
                    row.contact.first_name.clone_from(&c.first_name);
                    row.contact.last_name.clone_from(&c.last_name);
                    row.phone_raw.clone_from(&c.phone_raw);
                    row.contact.updated_at = now;
                    row.version += 1;
                    summary.updated += 1;
                }
                None => {
                    let id = data.next_contact_id();
                    data.contacts.push(ContactRow::new(
                        Contact {
                            id,
                            org_id: org,
                            first_name: c.first_name.clone(),
                            last_name: c.last_name.clone(),
                            phone: c.phone.clone(),
                            updated_at: now,
                        },
                        c.phone_raw.clone(),
                        None,
                    ));
                    summary.inserted += 1;
                }
            }
        }
        Ok(summary)
    }
}

/// Purges under the store's one lock, so there is never a concurrent purge to step aside for.
#[async_trait]
impl MemoryKeeper for InMemoryStore {
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let mut data = lock(&self.data);
        let windows: HashMap<OrgId, Option<DateTime<Utc>>> = data
            .orgs
            .iter()
            .map(|o| (o.id, o.memory.window_start(now)))
            .collect();
        let expired = |org: &OrgId, at: DateTime<Utc>| match windows.get(org) {
            Some(Some(start)) => at < *start,
            Some(None) => true,
            None => false,
        };
        let batch = batch as usize;
        let forgets_strangers: Vec<OrgId> = data
            .orgs
            .iter()
            .filter(|o| !o.memory.unknown_callers)
            .map(|o| o.id)
            .collect();
        let stranger = |org: &OrgId, phone: &E164| {
            forgets_strangers.contains(org)
                && !data
                    .contacts
                    .iter()
                    .any(|c| c.contact.org_id == *org && c.contact.phone == *phone)
        };
        let doomed: Vec<(OrgId, E164)> = data
            .memories
            .iter()
            .filter(|((org, phone), m)| expired(org, m.last_activity_at) || stranger(org, phone))
            .map(|(key, _)| key.clone())
            .take(batch)
            .collect();
        for key in &doomed {
            data.memories.remove(key);
        }
        let mut summaries = 0;
        for record in data.records.iter_mut().filter(|r| r.summary.is_some()) {
            let past = matches!(windows.get(&record.org_id), Some(Some(start)) if record.event_at < *start);
            if past && summaries < batch {
                record.summary = None;
                summaries += 1;
            }
        }
        Ok(Purged {
            memories: doomed.len() as u64,
            summaries: summaries as u64,
            ran: true,
        })
    }

    async fn forget_caller(&self, org: OrgId, phone: &E164) -> Result<Forgotten, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let contacts: Vec<ContactId> = data
            .contacts
            .iter()
            .filter(|c| c.contact.org_id == org && c.contact.phone == *phone)
            .map(|c| c.contact.id)
            .collect();
        data.contacts
            .retain(|c| !(c.contact.org_id == org && c.contact.phone == *phone));
        let memories = u64::from(data.memories.remove(&(org, phone.clone())).is_some());
        let mut calls = 0;
        for record in data.records.iter_mut().filter(|r| {
            r.org_id == org
                && (r.caller.as_ref() == Some(phone)
                    || r.contact_id.is_some_and(|c| contacts.contains(&c)))
        }) {
            record.summary = None;
            record.external_number = None;
            record.caller = None;
            record.agent_number = None;
            record.contact_id = None;
            calls += 1;
        }
        Ok(Forgotten {
            contacts,
            memories,
            calls,
        })
    }
}

/// Every change under the store's one lock: as atomic as the SQL adapters' transactions.
#[async_trait]
impl ContactAdmin for InMemoryStore {
    async fn get_contact(
        &self,
        org: OrgId,
        id: ContactId,
    ) -> Result<Option<ManagedContact>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data)
            .contacts
            .iter()
            .find(|c| c.contact.org_id == org && c.contact.id == id)
            .map(ContactRow::managed))
    }

    async fn create_contact(
        &self,
        org: OrgId,
        draft: &ContactDraft,
    ) -> Result<ManagedContact, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        if data.external_id_taken(org, draft.external_id.as_ref(), None) {
            return Err(AdminError::ExternalIdTaken);
        }
        let id = data.next_contact_id();
        let row = ContactRow::from_draft(id, org, draft);
        let managed = row.managed();
        data.contacts.push(row);
        Ok(managed)
    }

    async fn update_contact(
        &self,
        org: OrgId,
        id: ContactId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let taken = data.external_id_taken(org, draft.external_id.as_ref(), Some(id));
        let row = data
            .contacts
            .iter_mut()
            .find(|c| c.contact.org_id == org && c.contact.id == id)
            .ok_or(AdminError::NotFound(Entity::Contact))?;
        if expected.is_some_and(|v| v != row.version) {
            return Err(AdminError::VersionMismatch(Entity::Contact));
        }
        if row.holds(draft) {
            return Ok(row.managed());
        }
        if taken {
            return Err(AdminError::ExternalIdTaken);
        }
        row.apply(draft);
        Ok(row.managed())
    }

    async fn upsert_by_external_id(
        &self,
        org: OrgId,
        external_id: &ExternalId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ContactUpsert, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let draft = ContactDraft {
            external_id: Some(external_id.clone()),
            ..draft.clone()
        };
        let existing = data
            .contacts
            .iter_mut()
            .find(|c| c.contact.org_id == org && c.external_id.as_ref() == Some(external_id));
        match existing {
            Some(row) if expected.is_some_and(|v| v != row.version) => {
                Err(AdminError::VersionMismatch(Entity::Contact))
            }
            Some(row) if row.holds(&draft) => Ok(ContactUpsert {
                contact: row.managed(),
                outcome: Upserted::Unchanged,
            }),
            Some(row) => {
                row.apply(&draft);
                Ok(ContactUpsert {
                    contact: row.managed(),
                    outcome: Upserted::Updated,
                })
            }
            None if expected.is_some() => Err(AdminError::VersionMismatch(Entity::Contact)),
            None => {
                let id = data.next_contact_id();
                let row = ContactRow::from_draft(id, org, &draft);
                let contact = row.managed();
                data.contacts.push(row);
                Ok(ContactUpsert {
                    contact,
                    outcome: Upserted::Created,
                })
            }
        }
    }

    async fn delete_contact(
        &self,
        org: OrgId,
        id: ContactId,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let index = data
            .contacts
            .iter()
            .position(|c| c.contact.org_id == org && c.contact.id == id)
            .ok_or(AdminError::NotFound(Entity::Contact))?;
        if expected.is_some_and(|v| v != data.contacts[index].version) {
            return Err(AdminError::VersionMismatch(Entity::Contact));
        }
        let row = data.contacts.remove(index);
        data.memories.remove(&(org, row.contact.phone.clone()));
        for record in data
            .records
            .iter_mut()
            .filter(|r| r.org_id == org && r.contact_id == Some(id))
        {
            record.contact_id = None;
        }
        Ok(row.managed())
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        query: &ContactQuery,
    ) -> Result<Vec<ManagedContact>, AdminError> {
        self.begin_admin().await?;
        let data = lock(&self.data);
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let name = query.name.as_deref().map(str::to_ascii_lowercase);
        let contains = |field: &Option<String>, needle: &str| {
            field
                .as_deref()
                .is_some_and(|f| f.to_ascii_lowercase().contains(needle))
        };
        let mut page: Vec<ManagedContact> = data
            .contacts
            .iter()
            .filter(|c| c.contact.org_id == org)
            .filter(|c| query.after.is_none_or(|after| c.contact.id > after))
            .filter(|c| query.phone.as_ref().is_none_or(|p| c.contact.phone == *p))
            .filter(|c| {
                name.as_deref().is_none_or(|n| {
                    contains(&c.contact.first_name, n) || contains(&c.contact.last_name, n)
                })
            })
            .map(ContactRow::managed)
            .collect();
        page.sort_by_key(|c| c.contact.id);
        page.truncate(query.limit as usize);
        Ok(page)
    }
}

#[async_trait]
impl ManagementKeys for InMemoryStore {
    async fn create_key(
        &self,
        scope: KeyScope,
        label: &KeyLabel,
        digest: &TokenDigest,
    ) -> Result<ApiKeyInfo, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        if scope.org().is_some_and(|org| !data.org_exists(org)) {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let info = ApiKeyInfo {
            id: ApiKeyId::from_uuid(uuid::Uuid::new_v4()),
            scope,
            label: label.clone(),
            created_at: Utc::now(),
            revoked_at: None,
        };
        data.keys.push(KeyRow {
            digest: *digest,
            info: info.clone(),
        });
        Ok(info)
    }

    async fn find_key(&self, digest: &TokenDigest) -> Result<Option<ApiKeyInfo>, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        Ok(lock(&self.data)
            .keys
            .iter()
            .find(|k| k.digest == *digest && k.info.revoked_at.is_none())
            .map(|k| k.info.clone()))
    }

    async fn get_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyInfo>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data)
            .keys
            .iter()
            .find(|k| k.info.id == id)
            .map(|k| k.info.clone()))
    }

    async fn list_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKeyInfo>, AdminError> {
        self.begin_admin().await?;
        Ok(lock(&self.data)
            .keys
            .iter()
            .filter(|k| k.info.scope.org() == org)
            .map(|k| k.info.clone())
            .collect())
    }

    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKeyInfo, AdminError> {
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let row = data
            .keys
            .iter_mut()
            .find(|k| k.info.id == id)
            .ok_or(AdminError::NotFound(Entity::Key))?;
        row.info.revoked_at.get_or_insert_with(Utc::now);
        Ok(row.info.clone())
    }
}

#[async_trait]
impl AuditLog for InMemoryStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        let mut data = lock(&self.data);
        let seq = data.audit.last().map_or(1, |last| last.seq + 1);
        data.audit.push(AuditEntry {
            seq,
            ..entry.clone()
        });
        Ok(seq)
    }

    async fn list_audit(
        &self,
        org: Option<OrgId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, RepositoryError> {
        self.begin()
            .apply()
            .await
            .map_err(RepositoryError::Unavailable)?;
        Ok(lock(&self.data)
            .audit
            .iter()
            .rev()
            .filter(|e| org.is_none_or(|o| e.org_id == Some(o)))
            .filter(|e| before.is_none_or(|b| e.seq < b))
            .take(limit as usize)
            .cloned()
            .collect())
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
