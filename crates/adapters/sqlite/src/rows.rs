//! The rows the port modules read, as SQLite types them (ids as hyphenated text, times as Unix
//! microseconds), and their conversion into domain values. The checks (names, regions, numbers,
//! ids, kinds) are the domain's `from_stored` constructors, which the Postgres adapter calls too;
//! a row they refuse is [`RepositoryError::Unexpected`].

use chrono::{DateTime, Utc};
use relay_domain::{
    CallId, CallRecord, CallerMemory, Contact, ContactId, NewContact, OrgId, Organization,
    SecretId, SecretInfo, StoredCall, StoredMemory,
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
