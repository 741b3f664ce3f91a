//! [`ManagementKeys`] (the management API's keys, digests only) and [`AuditLog`] (the
//! append-only trail: the schema's triggers refuse any UPDATE or DELETE of it).

use async_trait::async_trait;
use relay_domain::{ApiKeyId, ApiKeyInfo, AuditEntry, KeyLabel, KeyScope, OrgId, TokenDigest};
use relay_ports::{AdminError, AuditLog, Entity, ManagementKeys, RepositoryError};
use uuid::Uuid;

use crate::rows::{AuditRow, KeyRow, audit_columns, convert, key_columns, micros, now_micros};
use crate::{SqliteStore, repo_error};

/// The trail newest first, below `?1`, at most `?2`: every organization's and none.
const LIST_AUDIT: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
);

/// The same of organization `?3` only (`audit_log_org_seq_idx`).
const LIST_AUDIT_OF_ORG: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE org_id = ?3 AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
);

#[async_trait]
impl ManagementKeys for SqliteStore {
    async fn create_key(
        &self,
        scope: KeyScope,
        label: &KeyLabel,
        digest: &TokenDigest,
    ) -> Result<ApiKeyInfo, AdminError> {
        // One statement: the organization cannot be deleted between the check and the insert.
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "INSERT INTO management_keys (id, org_id, label, digest, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5
              WHERE ?2 IS NULL OR EXISTS (SELECT 1 FROM organizations WHERE id = ?2)
             RETURNING ",
            key_columns!()
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(scope.org().map(|org| org.to_string()))
        .bind(label.as_str())
        .bind(digest.as_bytes().as_slice())
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row
            .ok_or(AdminError::NotFound(Entity::Organization))?
            .try_into()?)
    }

    async fn find_key(&self, digest: &TokenDigest) -> Result<Option<ApiKeyInfo>, RepositoryError> {
        // A deleted organization's keys went with it (ON DELETE CASCADE).
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM management_keys WHERE digest = ?1 AND revoked_at IS NULL"
        ))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        row.map(ApiKeyInfo::try_from).transpose()
    }

    async fn get_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyInfo>, AdminError> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM management_keys WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(ApiKeyInfo::try_from).transpose()?)
    }

    async fn list_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKeyInfo>, AdminError> {
        // `IS`: NULL (the operator keys) equals NULL.
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM management_keys WHERE org_id IS ?1 ORDER BY created_at, id"
        ))
        .bind(org.map(|org| org.to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKeyInfo, AdminError> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE management_keys SET revoked_at = COALESCE(revoked_at, ?2)
              WHERE id = ?1
             RETURNING ",
            key_columns!()
        ))
        .bind(id.to_string())
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.ok_or(AdminError::NotFound(Entity::Key))?.try_into()?)
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, RepositoryError> {
        // AUTOINCREMENT: a seq is never reused, so each is above every earlier one.
        sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, org_id, action, target)
             VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING seq",
        )
        .bind(micros(entry.at))
        .bind(entry.actor.as_stored())
        .bind(entry.org_id.map(|org| org.to_string()))
        .bind(&entry.action)
        .bind(entry.target.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(repo_error)
    }

    async fn list_audit(
        &self,
        org: Option<OrgId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, RepositoryError> {
        let list = sqlx::query_as(if org.is_some() {
            LIST_AUDIT_OF_ORG
        } else {
            LIST_AUDIT
        })
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit));
        let list = match org {
            Some(org) => list.bind(org.to_string()),
            None => list,
        };
        let rows: Vec<AuditRow> = list.fetch_all(&self.pool).await.map_err(repo_error)?;
        convert(rows)
    }
}
