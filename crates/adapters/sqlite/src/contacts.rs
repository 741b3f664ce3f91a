//! [`ContactDirectory`] (the webhook's lookup of a caller by number) and [`ContactImport`] (one
//! write transaction per batch of an import; a contact it changes gets a new version).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{Contact, E164, NewContact, OrgId};
use relay_ports::{
    AdminError, Caller, ContactDirectory, ContactImport, Entity, RepositoryError, UpsertSummary,
};
use uuid::Uuid;

use crate::rows::{ContactRow, ExistingContact, MemoryRow, micros, now_micros};
use crate::{SqliteStore, repo_error};

/// The newest contact of a number: what the webhook finds, and what an import updates.
const SELECT_NEWEST_CONTACT: &str =
    "SELECT id, first_name, last_name, phone_raw, phone_e164, updated_at
       FROM contacts
      WHERE org_id = ?1 AND phone_e164 = ?2
      ORDER BY updated_at DESC, id DESC
      LIMIT 1";

#[async_trait]
impl ContactDirectory for SqliteStore {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let row: Option<ContactRow> = sqlx::query_as(SELECT_NEWEST_CONTACT)
            .bind(org.to_string())
            .bind(phone.as_str())
            .fetch_optional(&self.pool)
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
        // In process there is no round trip to save: two indexed reads on one connection.
        let mut conn = self.pool.acquire().await.map_err(repo_error)?;
        let contact: Option<ContactRow> = sqlx::query_as(SELECT_NEWEST_CONTACT)
            .bind(org.to_string())
            .bind(phone.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(repo_error)?;
        let contact = contact.map(|row| row.into_contact(org)).transpose()?;
        let Some(since) = memory_since else {
            return Ok(Caller {
                contact,
                memory: Ok(None),
            });
        };
        let memory: Option<MemoryRow> = sqlx::query_as(
            "SELECT completed_calls, last_call_at, last_summary, last_outcome, missed_since_last
               FROM caller_memory
              WHERE org_id = ?1 AND phone_e164 = ?2 AND last_activity_at >= ?3",
        )
        .bind(org.to_string())
        .bind(phone.as_str())
        .bind(micros(since))
        .fetch_optional(&mut *conn)
        .await
        .map_err(repo_error)?;
        Ok(Caller {
            contact,
            memory: memory.map(|row| row.into_memory(org)).transpose(),
        })
    }
}

#[async_trait]
impl ContactImport for SqliteStore {
    #[tracing::instrument(name = "sqlite.upsert_contacts", skip_all, fields(org_id = %org, batch = contacts.len()))]
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        let org_text = org.to_string();
        // One write transaction per batch: all of it or none, and one writer at a time.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(repo_error)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = ?1")
            .bind(&org_text)
            .fetch_optional(&mut *tx)
            .await
            .map_err(repo_error)?;
        if exists.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let now = now_micros();
        let mut summary = UpsertSummary::default();
        for c in contacts {
            let existing: Option<ExistingContact> = sqlx::query_as(SELECT_NEWEST_CONTACT)
                .bind(&org_text)
                .bind(c.phone.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(repo_error)?;
            match existing {
                Some(existing) => {
                    if existing.same_as(c) {
                        summary.unchanged += 1;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE contacts
                            SET first_name = ?2, last_name = ?3, phone_raw = ?4, updated_at = ?5,
                                version = version + 1
                          WHERE id = ?1",
                    )
                    .bind(existing.id)
                    .bind(c.first_name.as_deref())
                    .bind(c.last_name.as_deref())
                    .bind(&c.phone_raw)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(repo_error)?;
                    summary.updated += 1;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO contacts
                           (id, org_id, first_name, last_name, phone_raw, phone_e164, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    )
                    .bind(Uuid::new_v4().to_string())
                    .bind(&org_text)
                    .bind(c.first_name.as_deref())
                    .bind(c.last_name.as_deref())
                    .bind(&c.phone_raw)
                    .bind(c.phone.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(repo_error)?;
                    summary.inserted += 1;
                }
            }
        }
        tx.commit().await.map_err(repo_error)?;
        Ok(summary)
    }
}
