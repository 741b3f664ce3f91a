//! [`ManagementKeys`] (the management API's keys, digests only) and [`AuditLog`] (its
//! append-only trail, which a trigger keeps from being updated or deleted).

use async_trait::async_trait;
use relay_domain::{ApiKeyId, ApiKeyInfo, AuditEntry, KeyLabel, KeyScope, OrgId, TokenDigest};
use relay_ports::{AdminError, AuditLog, Entity, ManagementKeys, RepositoryError};

use crate::rows::{AuditRow, KeyRow, audit_columns, convert, key_columns};
use crate::{PgStore, admin_error, repo_error};

#[async_trait]
impl ManagementKeys for PgStore {
    async fn create_key(
        &self,
        scope: KeyScope,
        label: &KeyLabel,
        digest: &TokenDigest,
    ) -> Result<ApiKeyInfo, AdminError> {
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO management_keys (org_id, label, digest) VALUES ($1, $2, $3)
             RETURNING ",
            key_columns!()
        ))
        .bind(scope.org().map(|org| org.as_uuid()))
        .bind(label.as_str())
        .bind(digest.as_bytes().as_slice())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| admin_error(e, Entity::Organization))?;
        Ok(row.try_into()?)
    }

    async fn find_key(&self, digest: &TokenDigest) -> Result<Option<ApiKeyInfo>, RepositoryError> {
        // A deleted organization's keys went with it (ON DELETE CASCADE).
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM management_keys WHERE digest = $1 AND revoked_at IS NULL"
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
            " FROM management_keys WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(ApiKeyInfo::try_from).transpose()?)
    }

    async fn list_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKeyInfo>, AdminError> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM management_keys
              WHERE org_id = $1 OR ($1::uuid IS NULL AND org_id IS NULL)
              ORDER BY created_at, id"
        ))
        .bind(org.map(|org| org.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKeyInfo, AdminError> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE management_keys SET revoked_at = COALESCE(revoked_at, now())
              WHERE id = $1
             RETURNING ",
            key_columns!()
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.ok_or(AdminError::NotFound(Entity::Key))?.try_into()?)
    }
}

#[async_trait]
impl AuditLog for PgStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, RepositoryError> {
        sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, org_id, action, target) VALUES ($1, $2, $3, $4, $5)
             RETURNING seq",
        )
        .bind(entry.at)
        .bind(entry.actor.as_stored())
        .bind(entry.org_id.map(|org| org.as_uuid()))
        .bind(entry.action.as_str())
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
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log
              WHERE ($1::uuid IS NULL OR org_id = $1)
                AND ($2::bigint IS NULL OR seq < $2)
              ORDER BY seq DESC
              LIMIT $3"
        ))
        .bind(org.map(|org| org.as_uuid()))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        convert(rows)
    }
}
