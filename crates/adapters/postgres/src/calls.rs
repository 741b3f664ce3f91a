//! [`CallLog`]: the post-call webhook's records (one per organization and conversation), their
//! listing and reading one by id, and the organization's sealed webhook secret that signs them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{CallId, CallKind, CallOutcome, CallRecord, CallSid, CallSummary, OrgId};
use relay_ports::{
    AdminError, CallCursor, CallLog, Entity, OrganizationAdmin as _, Recorded, RepositoryError,
    WebhookSigner,
};
use sqlx::types::Uuid;

use crate::rows::{CallRow, SignerRow, call_columns, convert, org_columns};
use crate::{PgStore, repo_error};

/// Adds one call to the memory of a number ([`CallLog::record_call`]'s rules): `$3` is true for
/// a completed call, `$4` its event time, `$5` its cleaned summary, `$6` its outcome. Every
/// `SET` expression reads the row as it was before this update.
const REMEMBER: &str = "
INSERT INTO caller_memory AS m (org_id, phone_e164, completed_calls, last_call_at, last_summary,
                                last_outcome, missed_since_last, last_missed_at, last_activity_at)
VALUES ($1, $2,
        CASE WHEN $3 THEN 1 ELSE 0 END,
        CASE WHEN $3 THEN $4::timestamptz END,
        CASE WHEN $3 THEN $5::text END,
        CASE WHEN $3 THEN $6::text END,
        CASE WHEN $3 THEN 0 ELSE 1 END,
        CASE WHEN $3 THEN NULL ELSE $4::timestamptz END,
        $4)
ON CONFLICT (org_id, phone_e164) DO UPDATE SET
    completed_calls = m.completed_calls + EXCLUDED.completed_calls,
    last_call_at = CASE WHEN $3 AND (m.last_call_at IS NULL OR $4 >= m.last_call_at)
                        THEN $4 ELSE m.last_call_at END,
    last_summary = CASE WHEN $3 AND (m.last_call_at IS NULL OR $4 >= m.last_call_at)
                        THEN $5 ELSE m.last_summary END,
    last_outcome = CASE WHEN $3 AND (m.last_call_at IS NULL OR $4 >= m.last_call_at)
                        THEN $6 ELSE m.last_outcome END,
    missed_since_last = CASE
        WHEN $3 AND (m.last_call_at IS NULL OR $4 >= m.last_call_at)
            THEN CASE WHEN m.last_missed_at > $4 THEN m.missed_since_last ELSE 0 END
        WHEN NOT $3 AND (m.last_call_at IS NULL OR $4 > m.last_call_at)
            THEN m.missed_since_last + 1
        ELSE m.missed_since_last END,
    last_missed_at = CASE WHEN NOT $3 AND (m.last_missed_at IS NULL OR $4 > m.last_missed_at)
                          THEN $4 ELSE m.last_missed_at END,
    last_activity_at = GREATEST(m.last_activity_at, $4)";

#[async_trait]
impl CallLog for PgStore {
    async fn record_call(
        &self,
        r: &CallRecord,
        remember: bool,
    ) -> Result<Recorded, RepositoryError> {
        let mut conn = self.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(repo_error)?;
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same conversation to commit,
        // so the loser's SELECT below sees the winner's row. A contact deleted since the call
        // started (or not this organization's) is stored as none rather than failing the insert.
        let inserted = sqlx::query(concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ")
             VALUES ($1, $2,
                     (SELECT id FROM contacts WHERE id = $3 AND org_id = $2), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (org_id, conversation_id) DO NOTHING
             RETURNING id"
        ))
        .bind(r.id.as_uuid())
        .bind(r.org_id.as_uuid())
        .bind(r.contact_id.map(|c| c.as_uuid()))
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
        .bind(
            r.duration_secs
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        )
        .bind(r.started_at)
        .bind(r.event_at)
        .bind(r.received_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(repo_error)?;
        if inserted.is_some() {
            if remember && let Some(caller) = &r.caller {
                // An upsert is atomic per row: concurrent calls of one number each add theirs.
                sqlx::query(REMEMBER)
                    .bind(r.org_id.as_uuid())
                    .bind(caller.as_str())
                    .bind(r.kind == CallKind::Completed)
                    .bind(r.event_at)
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
                // The mark that lets the caller lookup probe the memory (once per number).
                sqlx::query(
                    "UPDATE contacts SET has_memory = true
                      WHERE org_id = $1 AND phone_e164 = $2 AND NOT has_memory",
                )
                .bind(r.org_id.as_uuid())
                .bind(caller.as_str())
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
        let existing: Uuid =
            sqlx::query_scalar("SELECT id FROM calls WHERE org_id = $1 AND conversation_id = $2")
                .bind(r.org_id.as_uuid())
                .bind(r.conversation_id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(repo_error)?;
        tx.commit().await.map_err(repo_error)?;
        Ok(Recorded {
            id: CallId::from_uuid(existing),
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
              WHERE org_id = $1 AND ($2::timestamptz IS NULL OR received_at >= $2)
                AND ($3::timestamptz IS NULL OR (received_at, id) < ($3, $4))
              ORDER BY received_at DESC, id DESC
              LIMIT $5"
        ))
        .bind(org.as_uuid())
        .bind(since)
        .bind(before.map(|b| b.received_at))
        .bind(before.map(|b| b.id.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn get_call(&self, org: OrgId, call: CallId) -> Result<Option<CallRecord>, AdminError> {
        let row: Option<CallRow> = sqlx::query_as(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE org_id = $1 AND id = $2"
        ))
        .bind(org.as_uuid())
        .bind(call.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(CallRecord::try_from).transpose()?)
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        let row: Option<SignerRow> = sqlx::query_as(concat!(
            "SELECT ",
            org_columns!(),
            ", webhook_secret_sealed FROM organizations
              WHERE id = $1 AND webhook_secret_sealed IS NOT NULL"
        ))
        .bind(org.as_uuid())
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(repo_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(WebhookSigner {
            org: row.org.try_into()?,
            sealed_secret: row.webhook_secret_sealed,
        }))
    }
}
