//! [`OrganizationDirectory`] (the webhook's lookup by tool-secret digest) and
//! [`OrganizationAdmin`] (organizations, their tool secrets, their settings).

use async_trait::async_trait;
use relay_domain::{
    FallbackName, MemorySettings, OrgId, OrgName, Organization, Region, SecretId, SecretInfo,
    TokenDigest,
};
use relay_ports::{AdminError, Entity, OrganizationAdmin, OrganizationDirectory, RepositoryError};
use sqlx::{Sqlite, SqlitePool, query::QueryAs, sqlite::SqliteArguments};
use uuid::Uuid;

use crate::rows::{
    OrgRow, SecretRow, convert, from_micros, micros, now_micros, org_columns, secret_columns,
};
use crate::{SqliteStore, repo_error};

/// A query of [`OrgRow`]s, its parameters bound in turn.
type OrgQuery<'q> = QueryAs<'q, Sqlite, OrgRow, SqliteArguments>;

/// Runs `sql`, an `UPDATE organizations … WHERE id = ?1 RETURNING` [`org_columns`] statement,
/// for `org`, its further parameters bound by `bind`: the organization as changed, or
/// `NotFound` when there is none.
async fn update_org<'q>(
    pool: &SqlitePool,
    sql: &'static str,
    org: OrgId,
    bind: impl FnOnce(OrgQuery<'q>) -> OrgQuery<'q>,
) -> Result<Organization, AdminError> {
    let row: Option<OrgRow> = bind(sqlx::query_as(sql).bind(org.to_string()))
        .fetch_optional(pool)
        .await
        .map_err(repo_error)?;
    let row = row.ok_or(AdminError::NotFound(Entity::Organization))?;
    Ok(row.try_into()?)
}

#[async_trait]
impl OrganizationDirectory for SqliteStore {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        let row: Option<OrgRow> = sqlx::query_as(
            "SELECT o.id, o.name, o.default_region, o.unknown_caller_name,
                    o.memory_retention_days, o.memory_unknown_callers
               FROM organization_secrets s
               JOIN organizations o ON o.id = s.org_id
              WHERE s.digest = ?1 AND s.revoked_at IS NULL",
        )
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        row.map(Organization::try_from).transpose()
    }
}

#[async_trait]
impl OrganizationAdmin for SqliteStore {
    async fn create_organization(
        &self,
        name: &OrgName,
        default_region: Region,
    ) -> Result<Organization, AdminError> {
        let org = Organization {
            id: OrgId::from_uuid(Uuid::new_v4()),
            name: name.clone(),
            default_region,
            unknown_caller_name: FallbackName::default(),
            // The schema's defaults.
            memory: MemorySettings::default(),
        };
        sqlx::query(
            "INSERT INTO organizations (id, name, default_region, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(org.id.to_string())
        .bind(name.as_str())
        .bind(default_region.code())
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(org)
    }

    async fn list_organizations(&self) -> Result<Vec<Organization>, AdminError> {
        let rows: Vec<OrgRow> = sqlx::query_as(concat!(
            "SELECT ",
            org_columns!(),
            " FROM organizations ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn add_secret(&self, org: OrgId, digest: &TokenDigest) -> Result<SecretInfo, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let info = SecretInfo {
            id: SecretId::from_uuid(Uuid::new_v4()),
            org_id: org,
            created_at: from_micros(now_micros())?,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO organization_secrets (id, org_id, digest, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(info.id.to_string())
        .bind(org.to_string())
        .bind(digest.as_bytes().as_slice())
        .bind(micros(info.created_at))
        .execute(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(info)
    }

    async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let rows: Vec<SecretRow> = sqlx::query_as(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM organization_secrets
              WHERE org_id = ?1 ORDER BY created_at, id"
        ))
        .bind(org.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(convert(rows)?)
    }

    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        let row: Option<SecretRow> = sqlx::query_as(concat!(
            "UPDATE organization_secrets SET revoked_at = COALESCE(revoked_at, ?2)
              WHERE id = ?1
             RETURNING ",
            secret_columns!()
        ))
        .bind(secret.to_string())
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row
            .ok_or(AdminError::NotFound(Entity::Secret))?
            .try_into()?)
    }

    async fn find_organization(&self, org: OrgId) -> Result<Option<Organization>, AdminError> {
        let row: Option<OrgRow> = sqlx::query_as(concat!(
            "SELECT ",
            org_columns!(),
            " FROM organizations WHERE id = ?1"
        ))
        .bind(org.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(Organization::try_from).transpose()?)
    }

    async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &FallbackName,
    ) -> Result<Organization, AdminError> {
        update_org(
            &self.pool,
            concat!(
                "UPDATE organizations SET unknown_caller_name = ?2 WHERE id = ?1 RETURNING ",
                org_columns!()
            ),
            org,
            |query| query.bind(name.as_str()),
        )
        .await
    }

    async fn set_memory(
        &self,
        org: OrgId,
        settings: MemorySettings,
    ) -> Result<Organization, AdminError> {
        update_org(
            &self.pool,
            concat!(
                "UPDATE organizations SET memory_retention_days = ?2, memory_unknown_callers = ?3
                  WHERE id = ?1
                 RETURNING ",
                org_columns!()
            ),
            org,
            |query| {
                query
                    .bind(i64::from(settings.retention_days))
                    .bind(settings.unknown_callers)
            },
        )
        .await
    }

    async fn rename_organization(
        &self,
        org: OrgId,
        name: &OrgName,
    ) -> Result<Organization, AdminError> {
        update_org(
            &self.pool,
            concat!(
                "UPDATE organizations SET name = ?2 WHERE id = ?1 RETURNING ",
                org_columns!()
            ),
            org,
            |query| query.bind(name.as_str()),
        )
        .await
    }

    async fn set_default_region(
        &self,
        org: OrgId,
        region: Region,
    ) -> Result<Organization, AdminError> {
        update_org(
            &self.pool,
            concat!(
                "UPDATE organizations SET default_region = ?2 WHERE id = ?1 RETURNING ",
                org_columns!()
            ),
            org,
            |query| query.bind(region.code()),
        )
        .await
    }

    #[tracing::instrument(name = "sqlite.delete_organization", skip_all, fields(org_id = %org))]
    async fn delete_organization(&self, org: OrgId) -> Result<(), AdminError> {
        // One statement, so one transaction: the connection enforces foreign keys (`open`), and
        // every table of the organization's data cascades from it (secrets, management keys,
        // contacts, calls, caller memory). The audit trail has no foreign key and stays.
        let deleted = sqlx::query("DELETE FROM organizations WHERE id = ?1")
            .bind(org.to_string())
            .execute(&self.pool)
            .await
            .map_err(repo_error)?;
        if deleted.rows_affected() == 0 {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        Ok(())
    }

    async fn set_webhook_secret(&self, org: OrgId, sealed: &[u8]) -> Result<(), AdminError> {
        let updated =
            sqlx::query("UPDATE organizations SET webhook_secret_sealed = ?2 WHERE id = ?1")
                .bind(org.to_string())
                .bind(sealed)
                .execute(&self.pool)
                .await
                .map_err(repo_error)?;
        if updated.rows_affected() == 0 {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        Ok(())
    }
}
