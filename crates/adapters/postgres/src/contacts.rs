//! [`ContactDirectory`] (the webhook's lookup of a caller by number) and [`ContactImport`] (one
//! statement per batch of an import).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{Contact, E164, NewContact, OrgId};
use relay_ports::{
    AdminError, Caller, ContactDirectory, ContactImport, Entity, RepositoryError, UpsertSummary,
};

use crate::rows::{CallerRow, ContactRow, UpsertCounts};
use crate::{PgStore, admin_error, repo_error};

#[async_trait]
impl ContactDirectory for PgStore {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let row: Option<ContactRow> = sqlx::query_as(
            "SELECT id, first_name, last_name, phone_e164, updated_at
               FROM contacts
              WHERE org_id = $1 AND phone_e164 = $2
              ORDER BY updated_at DESC, id DESC
              LIMIT 1",
        )
        .bind(org.as_uuid())
        .bind(phone.as_str())
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(repo_error)?;
        row.map(|row| row.into_contact(org)).transpose()
    }

    async fn find_caller(
        &self,
        org: OrgId,
        phone: &E164,
        memory_since: Option<DateTime<Utc>>,
    ) -> Result<Caller, RepositoryError> {
        // One row, always, in one round trip: the newest contact of the number and its memory,
        // each possibly missing. The memory's index is probed only when memory is on and the
        // contact is marked as having one, or there is no contact: `OFFSET 0` keeps the
        // subquery from being flattened into a join, so that condition gates the scan (a
        // one-time filter) instead of filtering its result.
        let row: CallerRow = sqlx::query_as(
            "SELECT c.id, c.first_name, c.last_name, c.phone_e164, c.updated_at,
                    m.completed_calls, m.last_call_at, m.last_summary, m.last_outcome,
                    m.missed_since_last
               FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (
                    SELECT id, first_name, last_name, phone_e164, updated_at, has_memory
                      FROM contacts
                     WHERE org_id = $1 AND phone_e164 = $2
                     ORDER BY updated_at DESC, id DESC
                     LIMIT 1) AS c ON true
               LEFT JOIN LATERAL (
                    SELECT completed_calls, last_call_at, last_summary, last_outcome,
                           missed_since_last
                      FROM caller_memory
                     WHERE $3::timestamptz IS NOT NULL
                       AND (c.has_memory OR c.id IS NULL)
                       AND org_id = $1 AND phone_e164 = $2 AND last_activity_at >= $3
                    OFFSET 0) AS m ON true",
        )
        .bind(org.as_uuid())
        .bind(phone.as_str())
        .bind(memory_since)
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(repo_error)?;
        let contact = row.contact(org)?;
        Ok(Caller {
            contact,
            memory: row.memory(org),
        })
    }
}

/// One statement per batch: find the newest existing contact of each number, update those whose
/// data changed (a new version), insert the numbers not seen before, and count each kind.
const UPSERT_CONTACTS: &str = r"
WITH input AS (
    SELECT * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[])
             AS i(first_name, last_name, phone_raw, phone_e164)
), target AS (
    SELECT DISTINCT ON (c.phone_e164) c.id, c.phone_e164, c.first_name, c.last_name, c.phone_raw
      FROM contacts c
      JOIN input i ON c.phone_e164 = i.phone_e164
     WHERE c.org_id = $1
     ORDER BY c.phone_e164, c.updated_at DESC, c.id DESC
), changed AS (
    UPDATE contacts c
       SET first_name = i.first_name, last_name = i.last_name, phone_raw = i.phone_raw,
           updated_at = now(), version = c.version + 1
      FROM target t
      JOIN input i ON i.phone_e164 = t.phone_e164
     WHERE c.id = t.id
       AND (t.first_name, t.last_name, t.phone_raw) IS DISTINCT FROM (i.first_name, i.last_name, i.phone_raw)
    RETURNING 1
), inserted AS (
    INSERT INTO contacts (org_id, first_name, last_name, phone_raw, phone_e164, has_memory)
    SELECT $1, i.first_name, i.last_name, i.phone_raw, i.phone_e164,
           EXISTS (SELECT 1 FROM caller_memory m
                    WHERE m.org_id = $1 AND m.phone_e164 = i.phone_e164)
      FROM input i
     WHERE NOT EXISTS (SELECT 1 FROM target t WHERE t.phone_e164 = i.phone_e164)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM changed)  AS updated,
       (SELECT count(*) FROM target)   AS matched";

#[async_trait]
impl ContactImport for PgStore {
    #[tracing::instrument(name = "postgres.upsert_contacts", skip_all, fields(org_id = %org, batch = contacts.len()))]
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        let mut first = Vec::with_capacity(contacts.len());
        let mut last = Vec::with_capacity(contacts.len());
        let mut raw = Vec::with_capacity(contacts.len());
        let mut e164 = Vec::with_capacity(contacts.len());
        for c in contacts {
            first.push(c.first_name.as_deref());
            last.push(c.last_name.as_deref());
            raw.push(c.phone_raw.as_str());
            e164.push(c.phone.as_str());
        }
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        // Two imports into one organization at once would both insert a new number; take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(org.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        let counts: UpsertCounts = sqlx::query_as(UPSERT_CONTACTS)
            .bind(org.as_uuid())
            .bind(&first)
            .bind(&last)
            .bind(&raw)
            .bind(&e164)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| admin_error(e, Entity::Organization))?;
        tx.commit().await.map_err(repo_error)?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        let matched = count(counts.matched);
        let updated = count(counts.updated);
        Ok(UpsertSummary {
            inserted: count(counts.inserted),
            updated,
            unchanged: matched - updated,
        })
    }
}
