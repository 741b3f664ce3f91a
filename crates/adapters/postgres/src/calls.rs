//! [`CallLog`]: the post-call webhook's records (one per organization and conversation), their
//! listing, and the organization's sealed webhook secret that signs them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{CallId, CallRecord, CallSid, OrgId};
use relay_ports::{
    AdminError, CallLog, Entity, OrganizationAdmin as _, Recorded, RepositoryError, WebhookSigner,
};
use sqlx::types::Uuid;

use crate::rows::{CallRow, SignerRow, call_columns, convert, org_columns};
use crate::{PgStore, repo_error};

#[async_trait]
impl CallLog for PgStore {
    async fn record_call(&self, r: &CallRecord) -> Result<Recorded, RepositoryError> {
        let mut conn = self.acquire().await?;
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same conversation to commit,
        // so the loser's SELECT below sees the winner's row. A contact deleted since the call
        // started (or not this organization's) is stored as none rather than failing the insert.
        let inserted = sqlx::query(concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ")
             VALUES ($1, $2,
                     (SELECT id FROM contacts WHERE id = $3 AND org_id = $2), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
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
        .fetch_optional(&mut *conn)
        .await
        .map_err(repo_error)?;
        if inserted.is_some() {
            return Ok(Recorded {
                id: r.id,
                inserted: true,
            });
        }
        let existing: Uuid =
            sqlx::query_scalar("SELECT id FROM calls WHERE org_id = $1 AND conversation_id = $2")
                .bind(r.org_id.as_uuid())
                .bind(r.conversation_id.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(repo_error)?;
        Ok(Recorded {
            id: CallId::from_uuid(existing),
            inserted: false,
        })
    }

    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
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
              ORDER BY received_at DESC, id DESC
              LIMIT $3"
        ))
        .bind(org.as_uuid())
        .bind(since)
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
