//! The rows the port modules read, as Postgres types them, and their conversion into domain
//! values. The checks (names, regions, numbers, ids, kinds) are the domain's `from_stored`
//! constructors, which the SQLite adapter calls too; a row they refuse is
//! [`RepositoryError::Unexpected`].

use std::fmt;

use chrono::{DateTime, Utc};
use relay_domain::{
    Actor, ApiKeyId, ApiKeyInfo, AuditEntry, CallId, CallRecord, CallerMemory, Contact,
    ContactDraft, ContactId, ExternalId, KeyLabel, KeyScope, ManagedContact, OrgId, Organization,
    SecretId, SecretInfo, StoredCall, StoredMemory,
};
use relay_ports::RepositoryError;
use sqlx::types::Uuid;

use crate::unexpected;

/// The columns [`OrgRow`] reads (a macro, so queries stay `&'static str`).
macro_rules! org_columns {
    () => {
        "id, name, default_region, unknown_caller_name, memory_retention_days, memory_unknown_callers"
    };
}
pub(crate) use org_columns;

/// The columns [`SecretRow`] reads.
macro_rules! secret_columns {
    () => {
        "id, org_id, created_at, revoked_at"
    };
}
pub(crate) use secret_columns;

/// The columns [`CallRow`] reads, in insert order.
macro_rules! call_columns {
    () => {
        "id, org_id, contact_id, conversation_id, call_sid, agent_id, kind, direction, \
         external_number, caller_e164, agent_number, status, call_successful, summary, \
         duration_secs, started_at, event_at, received_at"
    };
}
pub(crate) use call_columns;

/// The columns [`ManagedContactRow`] reads.
macro_rules! managed_contact_columns {
    () => {
        "id, first_name, last_name, phone_e164, updated_at, phone_raw, external_id, created_at, \
         version"
    };
}
pub(crate) use managed_contact_columns;

/// The columns [`KeyRow`] reads.
macro_rules! key_columns {
    () => {
        "id, org_id, label, created_at, revoked_at"
    };
}
pub(crate) use key_columns;

/// The columns [`AuditRow`] reads.
macro_rules! audit_columns {
    () => {
        "seq, at, actor, org_id, action, target"
    };
}
pub(crate) use audit_columns;

/// A stored field of a management record (external id, key label, audit actor) the domain
/// refuses, worded as the domain's `StoredDataError`: the record, its id and the field, never the
/// value.
#[derive(Debug, thiserror::Error)]
#[error("{record} {id}: bad {field}: {reason}")]
struct BadField {
    record: &'static str,
    id: String,
    field: &'static str,
    reason: String,
}

/// [`RepositoryError::Unexpected`] for a refused field.
fn bad_field(
    record: &'static str,
    id: impl fmt::Display,
    field: &'static str,
    reason: impl fmt::Display,
) -> RepositoryError {
    RepositoryError::Unexpected(Box::new(BadField {
        record,
        id: id.to_string(),
        field,
        reason: reason.to_string(),
    }))
}

/// An `organizations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: Uuid,
    name: String,
    default_region: String,
    unknown_caller_name: String,
    memory_retention_days: i32,
    memory_unknown_callers: bool,
}

impl TryFrom<OrgRow> for Organization {
    type Error = RepositoryError;

    fn try_from(row: OrgRow) -> Result<Self, Self::Error> {
        Organization::from_stored(
            OrgId::from_uuid(row.id),
            &row.name,
            &row.default_region,
            &row.unknown_caller_name,
            i64::from(row.memory_retention_days),
            row.memory_unknown_callers,
        )
        .map_err(unexpected)
    }
}

/// An organization with its sealed webhook secret.
#[derive(sqlx::FromRow)]
pub(crate) struct SignerRow {
    #[sqlx(flatten)]
    pub(crate) org: OrgRow,
    pub(crate) webhook_secret_sealed: Vec<u8>,
}

/// An `organization_secrets` row (never its digest).
#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    id: Uuid,
    org_id: Uuid,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<SecretRow> for SecretInfo {
    fn from(row: SecretRow) -> Self {
        Self {
            id: SecretId::from_uuid(row.id),
            org_id: OrgId::from_uuid(row.org_id),
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// The newest `contacts` row of a number.
#[derive(sqlx::FromRow)]
pub(crate) struct ContactRow {
    id: Uuid,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_e164: String,
    updated_at: DateTime<Utc>,
}

impl ContactRow {
    /// The contact, of `org` (the organization the query was scoped to).
    pub(crate) fn into_contact(self, org: OrgId) -> Result<Contact, RepositoryError> {
        Contact::from_stored(
            ContactId::from_uuid(self.id),
            org,
            self.first_name,
            self.last_name,
            &self.phone_e164,
            self.updated_at,
        )
        .map_err(unexpected)
    }
}

/// The caller lookup's one row: the newest contact of the number (if any) beside the number's
/// memory (if any, and asked for).
#[derive(sqlx::FromRow)]
pub(crate) struct CallerRow {
    pub(crate) id: Option<Uuid>,
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) phone_e164: Option<String>,
    pub(crate) updated_at: Option<DateTime<Utc>>,
    pub(crate) completed_calls: Option<i32>,
    pub(crate) last_call_at: Option<DateTime<Utc>>,
    pub(crate) last_summary: Option<String>,
    pub(crate) last_outcome: Option<String>,
    pub(crate) missed_since_last: Option<i32>,
}

impl CallerRow {
    /// The contact (when the row has one) of `org`.
    pub(crate) fn contact(&self, org: OrgId) -> Result<Option<Contact>, RepositoryError> {
        let (Some(id), Some(phone), Some(updated_at)) =
            (self.id, &self.phone_e164, self.updated_at)
        else {
            return Ok(None);
        };
        Contact::from_stored(
            ContactId::from_uuid(id),
            org,
            self.first_name.clone(),
            self.last_name.clone(),
            phone,
            updated_at,
        )
        .map(Some)
        .map_err(unexpected)
    }

    /// The memory (when the row has one) of `org`.
    pub(crate) fn memory(self, org: OrgId) -> Result<Option<CallerMemory>, RepositoryError> {
        let (Some(completed_calls), Some(missed_since_last)) =
            (self.completed_calls, self.missed_since_last)
        else {
            return Ok(None);
        };
        CallerMemory::from_stored(
            org,
            StoredMemory {
                completed_calls: i64::from(completed_calls),
                last_call_at: self.last_call_at,
                last_summary: self.last_summary,
                last_outcome: self.last_outcome,
                missed_since_last: i64::from(missed_since_last),
            },
        )
        .map(Some)
        .map_err(unexpected)
    }
}

/// A `calls` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    id: Uuid,
    org_id: Uuid,
    contact_id: Option<Uuid>,
    conversation_id: String,
    call_sid: Option<String>,
    agent_id: Option<String>,
    kind: String,
    direction: Option<String>,
    external_number: Option<String>,
    caller_e164: Option<String>,
    agent_number: Option<String>,
    status: Option<String>,
    call_successful: Option<String>,
    summary: Option<String>,
    duration_secs: Option<i32>,
    started_at: Option<DateTime<Utc>>,
    event_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

impl TryFrom<CallRow> for CallRecord {
    type Error = RepositoryError;

    fn try_from(row: CallRow) -> Result<Self, Self::Error> {
        CallRecord::from_stored(StoredCall {
            id: CallId::from_uuid(row.id),
            org_id: OrgId::from_uuid(row.org_id),
            contact_id: row.contact_id.map(ContactId::from_uuid),
            conversation_id: row.conversation_id,
            call_sid: row.call_sid,
            agent_id: row.agent_id,
            kind: row.kind,
            direction: row.direction,
            external_number: row.external_number,
            caller: row.caller_e164,
            agent_number: row.agent_number,
            status: row.status,
            call_successful: row.call_successful,
            summary: row.summary,
            duration_secs: row.duration_secs.map(i64::from),
            started_at: row.started_at,
            event_at: row.event_at,
            received_at: row.received_at,
        })
        .map_err(unexpected)
    }
}

/// A `contacts` row as the management API reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct ManagedContactRow {
    #[sqlx(flatten)]
    contact: ContactRow,
    phone_raw: String,
    external_id: Option<String>,
    created_at: DateTime<Utc>,
    version: i64,
}

impl ManagedContactRow {
    /// The contact's id.
    pub(crate) fn id(&self) -> Uuid {
        self.contact.id
    }

    /// The contact's version.
    pub(crate) fn version(&self) -> i64 {
        self.version
    }

    /// The contact's normalized number.
    pub(crate) fn phone_e164(&self) -> &str {
        &self.contact.phone_e164
    }

    /// Whether the row already holds exactly `draft` (names, both numbers, external id).
    pub(crate) fn holds(&self, draft: &ContactDraft) -> bool {
        self.contact.first_name == draft.first_name
            && self.contact.last_name == draft.last_name
            && self.phone_raw == draft.phone_raw
            && self.contact.phone_e164 == draft.phone.as_str()
            && self.external_id.as_deref() == draft.external_id.as_ref().map(ExternalId::as_str)
    }

    /// The contact, of `org` (the organization the query was scoped to).
    pub(crate) fn into_managed(self, org: OrgId) -> Result<ManagedContact, RepositoryError> {
        let id = self.contact.id;
        let external_id = self
            .external_id
            .map(|raw| {
                ExternalId::parse(&raw).map_err(|e| bad_field("contact", id, "external_id", e))
            })
            .transpose()?;
        Ok(ManagedContact {
            contact: self.contact.into_contact(org)?,
            external_id,
            phone_raw: self.phone_raw,
            created_at: self.created_at,
            version: self.version,
        })
    }
}

/// A `management_keys` row (never its digest).
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: Uuid,
    org_id: Option<Uuid>,
    label: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<KeyRow> for ApiKeyInfo {
    type Error = RepositoryError;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let label =
            KeyLabel::parse(&row.label).map_err(|e| bad_field("key", row.id, "label", e))?;
        Ok(Self {
            id: ApiKeyId::from_uuid(row.id),
            scope: row.org_id.map_or(KeyScope::Operator, |org| {
                KeyScope::Organization(OrgId::from_uuid(org))
            }),
            label,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// An `audit_log` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    org_id: Option<Uuid>,
    action: String,
    target: Option<String>,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = RepositoryError;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        let actor = Actor::from_stored(&row.actor).ok_or_else(|| {
            bad_field(
                "audit entry",
                row.seq,
                "actor",
                "neither `cli` nor `key:<uuid>`",
            )
        })?;
        Ok(Self {
            seq: row.seq,
            at: row.at,
            actor,
            org_id: row.org_id.map(OrgId::from_uuid),
            action: row.action,
            target: row.target,
        })
    }
}

/// What one batch of the contact upsert did, as Postgres counts it.
#[derive(sqlx::FromRow)]
pub(crate) struct UpsertCounts {
    pub(crate) inserted: i64,
    pub(crate) updated: i64,
    pub(crate) matched: i64,
}

/// Converts each row, stopping at the first the domain refuses.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, RepositoryError>
where
    T: TryFrom<R, Error = RepositoryError>,
{
    rows.into_iter().map(T::try_from).collect()
}
