//! The rows the port modules read, as SQLite types them (ids as hyphenated text, times as Unix
//! microseconds), and their conversion into domain values. The checks (names, regions, numbers,
//! ids, kinds) are the domain's `from_stored` constructors, which the Postgres adapter calls too,
//! and for the fields they do not cover, `KeyLabel::parse`, `ExternalId::parse` and
//! `Actor::from_stored`; a row they refuse is [`RepositoryError::Unexpected`].

use chrono::{DateTime, Utc};
use relay_domain::{
    Actor, ApiKeyId, ApiKeyInfo, AuditEntry, CallId, CallRecord, CallerMemory, Contact,
    ContactDraft, ContactId, ExternalId, KeyLabel, KeyScope, LabelError, ManagedContact,
    NewContact, OrgId, Organization, SecretId, SecretInfo, StoredCall, StoredMemory,
};
use relay_ports::RepositoryError;
use uuid::fmt::Hyphenated;

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
        "id, org_id, first_name, last_name, phone_raw, phone_e164, external_id, created_at, \
         updated_at, version"
    };
}
pub(crate) use managed_contact_columns;

/// The columns [`KeyRow`] reads (never the digest).
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

/// A time as stored: Unix microseconds (Postgres' resolution), so ordering is numeric.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Now, as stored.
pub(crate) fn now_micros() -> i64 {
    micros(Utc::now())
}

/// A stored time outside what `DateTime` holds.
#[derive(Debug, thiserror::Error)]
#[error("bad timestamp {0}")]
pub(crate) struct BadTimestamp(i64);

/// A stored field the domain has no `from_stored` for (a key's label, a contact's external id,
/// an audit entry's actor) breaks its rule; the message names the record, its id and the field,
/// as the domain's `StoredDataError` does, never the value.
#[derive(Debug, thiserror::Error)]
#[error("{record} {id}: bad {field}")]
pub(crate) struct BadField {
    record: &'static str,
    id: String,
    field: &'static str,
    #[source]
    reason: Option<LabelError>,
}

impl BadField {
    fn new(record: &'static str, id: impl std::fmt::Display, field: &'static str) -> Self {
        Self {
            record,
            id: id.to_string(),
            field,
            reason: None,
        }
    }

    fn because(mut self, reason: LabelError) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Reads a stored time back.
pub(crate) fn from_micros(m: i64) -> Result<DateTime<Utc>, RepositoryError> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| unexpected(BadTimestamp(m)))
}

/// An `organizations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: Hyphenated,
    name: String,
    default_region: String,
    unknown_caller_name: String,
    memory_retention_days: i64,
    memory_unknown_callers: bool,
}

impl TryFrom<OrgRow> for Organization {
    type Error = RepositoryError;

    fn try_from(row: OrgRow) -> Result<Self, Self::Error> {
        Organization::from_stored(
            OrgId::from_uuid(row.id.into_uuid()),
            &row.name,
            &row.default_region,
            &row.unknown_caller_name,
            row.memory_retention_days,
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
    id: Hyphenated,
    org_id: Hyphenated,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<SecretRow> for SecretInfo {
    type Error = RepositoryError;

    fn try_from(row: SecretRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: SecretId::from_uuid(row.id.into_uuid()),
            org_id: OrgId::from_uuid(row.org_id.into_uuid()),
            created_at: from_micros(row.created_at)?,
            revoked_at: row.revoked_at.map(from_micros).transpose()?,
        })
    }
}

/// The newest `contacts` row of a number.
#[derive(sqlx::FromRow)]
pub(crate) struct ContactRow {
    id: Hyphenated,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_e164: String,
    updated_at: i64,
}

impl ContactRow {
    /// The contact, of `org` (the organization the query was scoped to).
    pub(crate) fn into_contact(self, org: OrgId) -> Result<Contact, RepositoryError> {
        Contact::from_stored(
            ContactId::from_uuid(self.id.into_uuid()),
            org,
            self.first_name,
            self.last_name,
            &self.phone_e164,
            from_micros(self.updated_at)?,
        )
        .map_err(unexpected)
    }
}

/// A `caller_memory` row's remembered part.
#[derive(sqlx::FromRow)]
pub(crate) struct MemoryRow {
    completed_calls: i64,
    last_call_at: Option<i64>,
    last_summary: Option<String>,
    last_outcome: Option<String>,
    missed_since_last: i64,
}

impl MemoryRow {
    /// The memory, of `org`.
    pub(crate) fn into_memory(self, org: OrgId) -> Result<CallerMemory, RepositoryError> {
        CallerMemory::from_stored(
            org,
            StoredMemory {
                completed_calls: self.completed_calls,
                last_call_at: self.last_call_at.map(from_micros).transpose()?,
                last_summary: self.last_summary,
                last_outcome: self.last_outcome,
                missed_since_last: self.missed_since_last,
            },
        )
        .map_err(unexpected)
    }
}

/// The newest `contacts` row of a number, as an import sees it.
#[derive(sqlx::FromRow)]
pub(crate) struct ExistingContact {
    pub(crate) id: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_raw: String,
}

impl ExistingContact {
    /// Whether importing `new` would change nothing.
    pub(crate) fn same_as(&self, new: &NewContact) -> bool {
        self.first_name == new.first_name
            && self.last_name == new.last_name
            && self.phone_raw == new.phone_raw
    }
}

/// A `contacts` row as the management API reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct ManagedContactRow {
    id: Hyphenated,
    org_id: Hyphenated,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_raw: String,
    phone_e164: String,
    external_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    pub(crate) version: i64,
}

impl ManagedContactRow {
    /// The row's id, as stored.
    pub(crate) fn id(&self) -> String {
        self.id.to_string()
    }

    /// Whether the row already holds exactly `draft` with `external_id` (writing it would change
    /// nothing).
    pub(crate) fn holds(&self, draft: &ContactDraft, external_id: Option<&ExternalId>) -> bool {
        self.first_name == draft.first_name
            && self.last_name == draft.last_name
            && self.phone_raw == draft.phone_raw
            && self.phone_e164 == draft.phone.as_str()
            && self.external_id.as_deref() == external_id.map(ExternalId::as_str)
    }
}

impl TryFrom<ManagedContactRow> for ManagedContact {
    type Error = RepositoryError;

    fn try_from(row: ManagedContactRow) -> Result<Self, Self::Error> {
        let id = ContactId::from_uuid(row.id.into_uuid());
        let external_id = row
            .external_id
            .as_deref()
            .map(|raw| {
                ExternalId::parse(raw)
                    .map_err(|e| unexpected(BadField::new("contact", id, "external_id").because(e)))
            })
            .transpose()?;
        Ok(Self {
            contact: Contact::from_stored(
                id,
                OrgId::from_uuid(row.org_id.into_uuid()),
                row.first_name,
                row.last_name,
                &row.phone_e164,
                from_micros(row.updated_at)?,
            )
            .map_err(unexpected)?,
            external_id,
            phone_raw: row.phone_raw,
            created_at: from_micros(row.created_at)?,
            version: row.version,
        })
    }
}

/// A `management_keys` row (never its digest).
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: Hyphenated,
    org_id: Option<Hyphenated>,
    label: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKeyInfo {
    type Error = RepositoryError;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let id = ApiKeyId::from_uuid(row.id.into_uuid());
        Ok(Self {
            id,
            scope: row.org_id.map_or(KeyScope::Operator, |org| {
                KeyScope::Organization(OrgId::from_uuid(org.into_uuid()))
            }),
            label: KeyLabel::parse(&row.label)
                .map_err(|e| unexpected(BadField::new("key", id, "label").because(e)))?,
            created_at: from_micros(row.created_at)?,
            revoked_at: row.revoked_at.map(from_micros).transpose()?,
        })
    }
}

/// An `audit_log` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    at: i64,
    actor: String,
    org_id: Option<Hyphenated>,
    action: String,
    target: Option<String>,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = RepositoryError;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        Ok(Self {
            seq: row.seq,
            at: from_micros(row.at)?,
            actor: Actor::from_stored(&row.actor)
                .ok_or_else(|| unexpected(BadField::new("audit entry", row.seq, "actor")))?,
            org_id: row.org_id.map(|org| OrgId::from_uuid(org.into_uuid())),
            action: row.action,
            target: row.target,
        })
    }
}

/// A `calls` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    id: Hyphenated,
    org_id: Hyphenated,
    contact_id: Option<Hyphenated>,
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
    duration_secs: Option<i64>,
    started_at: Option<i64>,
    event_at: i64,
    received_at: i64,
}

impl TryFrom<CallRow> for CallRecord {
    type Error = RepositoryError;

    fn try_from(row: CallRow) -> Result<Self, Self::Error> {
        CallRecord::from_stored(StoredCall {
            id: CallId::from_uuid(row.id.into_uuid()),
            org_id: OrgId::from_uuid(row.org_id.into_uuid()),
            contact_id: row.contact_id.map(|c| ContactId::from_uuid(c.into_uuid())),
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
            duration_secs: row.duration_secs,
            started_at: row.started_at.map(from_micros).transpose()?,
            event_at: from_micros(row.event_at)?,
            received_at: from_micros(row.received_at)?,
        })
        .map_err(unexpected)
    }
}

/// Converts each row, stopping at the first that cannot be read.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, RepositoryError>
where
    T: TryFrom<R, Error = RepositoryError>,
{
    rows.into_iter().map(T::try_from).collect()
}
