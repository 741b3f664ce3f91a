//! [`MemoryKeeper`]: the returning-caller memory's retention and erasure. SQLite has one writer,
//! so a purge never runs beside another.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{ContactId, E164, OrgId};
use relay_ports::{AdminError, Entity, Forgotten, MemoryKeeper, Purged, RepositoryError};
use uuid::fmt::Hyphenated;

use crate::rows::micros;
use crate::{SqliteStore, repo_error};

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// The Postgres adapter's purge of memories, in SQLite's types: `?1` now, `?2` the batch.
const PURGE_MEMORIES: &str = "
DELETE FROM caller_memory
 WHERE (org_id, phone_e164) IN (
       SELECT m.org_id, m.phone_e164
         FROM caller_memory m
         JOIN organizations o ON o.id = m.org_id
        WHERE o.memory_retention_days = 0
           OR m.last_activity_at < ?1 - o.memory_retention_days * ?3
           OR (NOT o.memory_unknown_callers
               AND NOT EXISTS (SELECT 1 FROM contacts c
                                WHERE c.org_id = m.org_id AND c.phone_e164 = m.phone_e164))
        LIMIT ?2)";

/// The Postgres adapter's purge of summaries.
const PURGE_SUMMARIES: &str = "
UPDATE calls SET summary = NULL
 WHERE id IN (
       SELECT c.id
         FROM calls c
         JOIN organizations o ON o.id = c.org_id
        WHERE c.summary IS NOT NULL
          AND o.memory_retention_days > 0
          AND c.event_at < ?1 - o.memory_retention_days * ?3
        LIMIT ?2)";

#[async_trait]
impl MemoryKeeper for SqliteStore {
    #[tracing::instrument(name = "sqlite.purge_expired", skip_all, fields(batch))]
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, RepositoryError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let mut purge = async |sql| {
            sqlx::query(sql)
                .bind(micros(now))
                .bind(i64::from(batch))
                .bind(MICROS_PER_DAY)
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
                .map_err(repo_error)
        };
        let memories = purge(PURGE_MEMORIES).await?;
        let summaries = purge(PURGE_SUMMARIES).await?;
        tx.commit().await.map_err(repo_error)?;
        Ok(Purged {
            memories,
            summaries,
            ran: true,
        })
    }

    #[tracing::instrument(name = "sqlite.forget_caller", skip_all, fields(org_id = %org))]
    async fn forget_caller(&self, org: OrgId, phone: &E164) -> Result<Forgotten, AdminError> {
        let org_id = org.to_string();
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = ?1")
            .bind(&org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(repo_error)?;
        if exists.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let contacts: Vec<Hyphenated> = sqlx::query_scalar(
            "SELECT id FROM contacts WHERE org_id = ?1 AND phone_e164 = ?2 ORDER BY id",
        )
        .bind(&org_id)
        .bind(phone.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(repo_error)?;
        // The records first: deleting the contacts would unlink them (ON DELETE SET NULL).
        let calls = sqlx::query(
            "UPDATE calls
                SET summary = NULL, external_number = NULL, caller_e164 = NULL,
                    agent_number = NULL, contact_id = NULL
              WHERE org_id = ?1
                AND (caller_e164 = ?2
                     OR contact_id IN (SELECT id FROM contacts WHERE org_id = ?1 AND phone_e164 = ?2))",
        )
        .bind(&org_id)
        .bind(phone.as_str())
        .execute(&mut *tx)
        .await
        .map_err(repo_error)?
        .rows_affected();
        sqlx::query("DELETE FROM contacts WHERE org_id = ?1 AND phone_e164 = ?2")
            .bind(&org_id)
            .bind(phone.as_str())
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        let memories =
            sqlx::query("DELETE FROM caller_memory WHERE org_id = ?1 AND phone_e164 = ?2")
                .bind(&org_id)
                .bind(phone.as_str())
                .execute(&mut *tx)
                .await
                .map_err(repo_error)?
                .rows_affected();
        tx.commit().await.map_err(repo_error)?;
        Ok(Forgotten {
            contacts: contacts
                .into_iter()
                .map(|id| ContactId::from_uuid(id.into_uuid()))
                .collect(),
            memories,
            calls,
        })
    }
}
