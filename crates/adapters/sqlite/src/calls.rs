//! [`CallLog`]: the post-call webhook's records (one per organization and conversation), their
//! listing and reading one by id, and the organization's sealed webhook secret that signs them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{CallId, CallKind, CallOutcome, CallRecord, CallSid, CallSummary, OrgId};
use relay_ports::{
    AdminError, CallCursor, CallLog, Entity, OrganizationAdmin as _, Recorded, RepositoryError,
    WebhookSigner,
};
use uuid::fmt::Hyphenated;

use crate::rows::{CallRow, SignerRow, call_columns, convert, micros, org_columns};
use crate::{SqliteStore, repo_error};

/// The Postgres adapter's `REMEMBER`, in SQLite's types (times in microseconds).
const REMEMBER: &str = "
INSERT INTO caller_memory AS m (org_id, phone_e164, completed_calls, last_call_at, last_summary,
                                last_outcome, missed_since_last, last_missed_at, last_activity_at)
VALUES (?1, ?2,
        CASE WHEN ?3 THEN 1 ELSE 0 END,
        CASE WHEN ?3 THEN ?4 END,
        CASE WHEN ?3 THEN ?5 END,
        CASE WHEN ?3 THEN ?6 END,
        CASE WHEN ?3 THEN 0 ELSE 1 END,
        CASE WHEN ?3 THEN NULL ELSE ?4 END,
        ?4)
ON CONFLICT (org_id, phone_e164) DO UPDATE SET
    completed_calls = m.completed_calls + excluded.completed_calls,
    last_call_at = CASE WHEN ?3 AND (m.last_call_at IS NULL OR ?4 >= m.last_call_at)
                        THEN ?4 ELSE m.last_call_at END,
    last_summary = CASE WHEN ?3 AND (m.last_call_at IS NULL OR ?4 >= m.last_call_at)
                        THEN ?5 ELSE m.last_summary END,
    last_outcome = CASE WHEN ?3 AND (m.last_call_at IS NULL OR ?4 >= m.last_call_at)
                        THEN ?6 ELSE m.last_outcome END,
    missed_since_last = CASE
        WHEN ?3 AND (m.last_call_at IS NULL OR ?4 >= m.last_call_at)
            THEN CASE WHEN m.last_missed_at > ?4 THEN m.missed_since_last ELSE 0 END
        WHEN NOT ?3 AND (m.last_call_at IS NULL OR ?4 > m.last_call_at)
            THEN m.missed_since_last + 1
        ELSE m.missed_since_last END,
    last_missed_at = CASE WHEN NOT ?3 AND (m.last_missed_at IS NULL OR ?4 > m.last_missed_at)
                          THEN ?4 ELSE m.last_missed_at END,
    last_activity_at = max(m.last_activity_at, ?4)";

#[async_trait]
impl CallLog for SqliteStore {
    async fn record_call(
        &self,
        r: &CallRecord,
        remember: bool,
    ) -> Result<Recorded, RepositoryError> {
        // BEGIN IMMEDIATE would be stricter; SQLite has one writer, so the insert and the
        // memory update of one transaction cannot interleave with another's.
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ")
             VALUES (?1, ?2,
                     (SELECT id FROM contacts WHERE id = ?3 AND org_id = ?2), ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (org_id, conversation_id) DO NOTHING
             RETURNING id"
        ))
        .bind(r.id.to_string())
        .bind(r.org_id.to_string())
        .bind(r.contact_id.map(|c| c.to_string()))
        .bind(r.conversation_id.as_str())
        .bind(r.call_sid.as_ref().map(CallSid::as_str))
        .bind(r.agent_id.as_deref())
        .bind(r.kind.as_str())
        .bind(r.direction.as_deref())
        .bind(r.external_number.as_deref())
        .bind(r.caller.as_ref().map(|c| c.as_str()))
        .bind(r.agent_number.as_deref())
        .bind(r.status.as_deref())
        .bind(r.call_successful.as_deref())
        .bind(r.summary.as_deref())
        .bind(r.duration_secs.map(i64::from))
        .bind(r.started_at.map(micros))
        .bind(micros(r.event_at))
        .bind(micros(r.received_at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(repo_error)?;
        if inserted.is_some() {
            if remember && let Some(caller) = &r.caller {
                sqlx::query(REMEMBER)
                    .bind(r.org_id.to_string())
                    .bind(caller.as_str())
                    .bind(r.kind == CallKind::Completed)
                    .bind(micros(r.event_at))
                    .bind(
                        r.summary
                            .as_deref()
                            .and_then(CallSummary::from_untrusted)
                            .map(|s| s.as_str().to_owned()),
                    )
                    .bind(CallOutcome::from_evaluation(r.call_successful.as_deref()).as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(repo_error)?;
            }
            tx.commit().await.map_err(repo_error)?;
            return Ok(Recorded {
                id: r.id,
                inserted: true,
            });
        }
        let existing: Hyphenated =
            sqlx::query_scalar("SELECT id FROM calls WHERE org_id = ?1 AND conversation_id = ?2")
                .bind(r.org_id.to_string())
                .bind(r.conversation_id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(repo_error)?;
        tx.commit().await.map_err(repo_error)?;
        Ok(Recorded {
            id: CallId::from_uuid(existing.into_uuid()),
            inserted: false,
        })
    }

    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        before: Option<CallCursor>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let rows: Vec<CallRow> = sqlx::query_as(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls
              WHERE org_id = ?1 AND received_at >= ?2
                AND (?3 IS NULL OR received_at < ?3 OR (received_at = ?3 AND id < ?4))
              ORDER BY received_at DESC, id DESC
              LIMIT ?5"
        ))
        .bind(org.to_string())
        .bind(since.map_or(i64::MIN, micros))
        .bind(before.map(|b| micros(b.received_at)))
        .bind(before.map(|b| b.id.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        let row: Option<SignerRow> = sqlx::query_as(concat!(
            "SELECT ",
            org_columns!(),
            ", webhook_secret_sealed FROM organizations
              WHERE id = ?1 AND webhook_secret_sealed IS NOT NULL"
        ))
        .bind(org.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(WebhookSigner {
            org: row.org.try_into()?,
            sealed_secret: row.webhook_secret_sealed,
        }))
    }

    async fn get_call(&self, org: OrgId, call: CallId) -> Result<Option<CallRecord>, AdminError> {
        let row: Option<CallRow> = sqlx::query_as(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE id = ?1 AND org_id = ?2"
        ))
        .bind(call.to_string())
        .bind(org.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(CallRecord::try_from).transpose()?)
    }
}
