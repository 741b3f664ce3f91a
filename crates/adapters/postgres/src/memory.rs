//! [`MemoryKeeper`]: the returning-caller memory's retention (a bounded purge that one replica
//! runs at a time) and erasure on request.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{ContactId, E164, OrgId};
use relay_ports::{AdminError, Entity, Forgotten, MemoryKeeper, Purged, RepositoryError};
use sqlx::types::Uuid;

use crate::{PgStore, repo_error};

/// Deletes at most `$2` memories past their organization's window at `$1`, all of an
/// organization whose memory is off, and those of callers who are not contacts where the
/// organization no longer remembers them.
const PURGE_MEMORIES: &str = "
WITH doomed AS (
    SELECT m.org_id, m.phone_e164
      FROM caller_memory m
      JOIN organizations o ON o.id = m.org_id
     WHERE o.memory_retention_days = 0
        OR m.last_activity_at < $1 - make_interval(days => o.memory_retention_days)
        OR (NOT o.memory_unknown_callers
            AND NOT EXISTS (SELECT 1 FROM contacts c
                             WHERE c.org_id = m.org_id AND c.phone_e164 = m.phone_e164))
     LIMIT $2
)
DELETE FROM caller_memory m
 USING doomed d
 WHERE m.org_id = d.org_id AND m.phone_e164 = d.phone_e164";

/// Removes at most `$2` summaries of call records past their organization's window at `$1`.
const PURGE_SUMMARIES: &str = "
WITH doomed AS (
    SELECT c.id
      FROM calls c
      JOIN organizations o ON o.id = c.org_id
     WHERE c.summary IS NOT NULL
       AND o.memory_retention_days > 0
       AND c.event_at < $1 - make_interval(days => o.memory_retention_days)
     LIMIT $2
)
UPDATE calls c SET summary = NULL FROM doomed d WHERE c.id = d.id";

#[async_trait]
impl MemoryKeeper for PgStore {
    #[tracing::instrument(name = "postgres.purge_expired", skip_all, fields(batch))]
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, RepositoryError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        // One purging replica at a time; the others skip this round rather than queue.
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('relay:memory-purge', 0))",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(repo_error)?;
        if !locked {
            return Ok(Purged::default());
        }
        let memories = sqlx::query(PURGE_MEMORIES)
            .bind(now)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?
            .rows_affected();
        let summaries = sqlx::query(PURGE_SUMMARIES)
            .bind(now)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?
            .rows_affected();
        tx.commit().await.map_err(repo_error)?;
        Ok(Purged {
            memories,
            summaries,
            ran: true,
        })
    }

    #[tracing::instrument(name = "postgres.forget_caller", skip_all, fields(org_id = %org))]
    async fn forget_caller(&self, org: OrgId, phone: &E164) -> Result<Forgotten, AdminError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1")
            .bind(org.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(repo_error)?;
        if exists.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let contacts: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM contacts WHERE org_id = $1 AND phone_e164 = $2 ORDER BY id",
        )
        .bind(org.as_uuid())
        .bind(phone.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(repo_error)?;
        // The records first: deleting the contacts would unlink them (ON DELETE SET NULL).
        let calls = sqlx::query(
            "UPDATE calls
                SET summary = NULL, external_number = NULL, caller_e164 = NULL,
                    agent_number = NULL, contact_id = NULL
              WHERE org_id = $1 AND (caller_e164 = $2 OR contact_id = ANY($3))",
        )
        .bind(org.as_uuid())
        .bind(phone.as_str())
        .bind(&contacts)
        .execute(&mut *tx)
        .await
        .map_err(repo_error)?
        .rows_affected();
        sqlx::query("DELETE FROM contacts WHERE org_id = $1 AND id = ANY($2)")
            .bind(org.as_uuid())
            .bind(&contacts)
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        let memories =
            sqlx::query("DELETE FROM caller_memory WHERE org_id = $1 AND phone_e164 = $2")
                .bind(org.as_uuid())
                .bind(phone.as_str())
                .execute(&mut *tx)
                .await
                .map_err(repo_error)?
                .rows_affected();
        tx.commit().await.map_err(repo_error)?;
        Ok(Forgotten {
            contacts: contacts.into_iter().map(ContactId::from_uuid).collect(),
            memories,
            calls,
        })
    }
}
