//! The in-memory store: organizations, secrets, contacts and call records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    CallId, CallRecord, Contact, ContactId, E164, FallbackName, NewContact, OrgId, OrgName,
    Organization, Region, SecretId, SecretInfo, TokenDigest, ToolToken,
};

use super::{Behaviour, lock};
use crate::{
    AdminError, BoxError, CallLog, ContactDirectory, ContactImport, Entity, OrganizationAdmin,
    OrganizationDirectory, PoolStats, Probe, Recorded, RepositoryError, UpsertSummary,
    WebhookSigner,
};

/// A tool secret as the store keeps it: the digest it authenticates, and its bookkeeping.
#[derive(Debug)]
struct SecretRow {
    digest: TokenDigest,
    info: SecretInfo,
}

/// A contact with the number as it was imported, which an import compares.
#[derive(Debug)]
struct ContactRow {
    contact: Contact,
    phone_raw: String,
}

#[derive(Debug, Default)]
struct StoreData {
    /// Oldest first.
    orgs: Vec<Organization>,
    /// Oldest first.
    secrets: Vec<SecretRow>,
    contacts: Vec<ContactRow>,
    records: Vec<CallRecord>,
    webhook_secrets: HashMap<OrgId, Vec<u8>>,
    behaviour: Behaviour,
    calls: usize,
}

impl StoreData {
    fn org_exists(&self, org: OrgId) -> bool {
        self.orgs.iter().any(|o| o.id == org)
    }

    fn next_org_id(&self) -> OrgId {
        OrgId::from_uuid(uuid_from_counter(self.orgs.len() as u128 + 1))
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
            id: ContactId::from_uuid(uuid_from_counter(1_000 + data.contacts.len() as u128)),
            org_id: org,
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            phone: E164::parse_e164(e164).expect("E.164 test number"),
            updated_at: Utc::now(),
        };
        data.contacts.push(ContactRow {
            phone_raw: e164.to_owned(),
            contact: contact.clone(),
        });
        contact
    }

    /// Stores a contact as it is, with its id and update time, bypassing the import rules (as
    /// another system writing to the database might).
    pub fn insert_contact(&self, contact: Contact) {
        lock(&self.data).contacts.push(ContactRow {
            phone_raw: contact.phone.as_str().to_owned(),
            contact,
        });
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
}

#[async_trait]
impl CallLog for InMemoryStore {
    async fn record_call(&self, record: &CallRecord) -> Result<Recorded, RepositoryError> {
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
        if !data.org_exists(org) {
            return Err(AdminError::NotFound(Entity::Organization));
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
        self.begin_admin().await?;
        let mut data = lock(&self.data);
        let found = data
            .orgs
            .iter_mut()
            .find(|o| o.id == org)
            .ok_or(AdminError::NotFound(Entity::Organization))?;
        found.unknown_caller_name = name.clone();
        Ok(found.clone())
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
                    summary.updated += 1;
                }
                None => {
                    data.contacts.push(ContactRow {
                        contact: Contact {
                            id: ContactId::from_uuid(uuid::Uuid::new_v4()),
                            org_id: org,
                            first_name: c.first_name.clone(),
                            last_name: c.last_name.clone(),
                            phone: c.phone.clone(),
                            updated_at: now,
                        },
                        phone_raw: c.phone_raw.clone(),
                    });
                    summary.inserted += 1;
                }
            }
        }
        Ok(summary)
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
