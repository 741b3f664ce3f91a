//! [`ContactAdmin`]: the management API's contacts, one at a time (read, create, replace, upsert
//! by external id, delete, list in pages).
//!
//! A change of an existing contact locks its row (`FOR UPDATE`) in a transaction, compares its
//! version and data, then writes, so no other change comes between the check and the write. The
//! unique index `contacts_org_external_id_idx` keeps an external id to one contact of an
//! organization: an insert finds it taken (`ON CONFLICT DO NOTHING`, which waits for a
//! concurrent insert of the same external id), a change fails on it; either is
//! [`AdminError::ExternalIdTaken`], except in an upsert, whose insert yields to the concurrent one
//! and then updates the contact it made.

use async_trait::async_trait;
use relay_domain::{ContactDraft, ContactId, ContactQuery, ExternalId, ManagedContact, OrgId};
use relay_ports::{
    AdminError, ContactAdmin, ContactUpsert, Entity, OrganizationAdmin as _, Upserted,
};
use sqlx::{PgConnection, PgExecutor};

use crate::rows::{ManagedContactRow, managed_contact_columns};
use crate::{PgStore, contact_write_error, repo_error};

/// Inserts the contact `$2`..`$6` (names, raw and normalized number, external id) of `$1`, its
/// number marked as remembered when the organization has a memory of it (as an import does) —
/// unless another contact of the organization has its external id (then no row), after waiting
/// for a concurrent insert of that external id to commit or roll back.
const CREATE: &str = concat!(
    "INSERT INTO contacts (org_id, first_name, last_name, phone_raw, phone_e164, external_id,
                           has_memory)
     VALUES ($1, $2, $3, $4, $5, $6,
             EXISTS (SELECT 1 FROM caller_memory m WHERE m.org_id = $1 AND m.phone_e164 = $5))
     ON CONFLICT (org_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
     RETURNING ",
    managed_contact_columns!()
);

/// Contact `$2` of `$1`, locked until the transaction ends.
const LOCK_BY_ID: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts WHERE org_id = $1 AND id = $2 FOR UPDATE"
);

/// The contact of `$1` with external id `$2`, locked until the transaction ends.
const LOCK_BY_EXTERNAL_ID: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts WHERE org_id = $1 AND external_id = $2 FOR UPDATE"
);

/// Writes `$3`..`$7` over contact `$2` of `$1`: a new version, updated now. A new number is
/// marked as remembered when the organization has a memory of it; the same number keeps its mark.
const REPLACE: &str = concat!(
    "UPDATE contacts c
        SET first_name = $3, last_name = $4, phone_raw = $5, phone_e164 = $6, external_id = $7,
            has_memory = CASE WHEN c.phone_e164 = $6 THEN c.has_memory
                              ELSE EXISTS (SELECT 1 FROM caller_memory m
                                            WHERE m.org_id = $1 AND m.phone_e164 = $6) END,
            version = c.version + 1, updated_at = now()
      WHERE c.org_id = $1 AND c.id = $2
     RETURNING ",
    managed_contact_columns!()
);

/// One page of `$1`'s contacts: with number `$2` (any when null), a first or last name matching
/// the `ILIKE` pattern `$3` (any when null; `\` escapes, the default), an id above `$4` (any
/// when null), at most `$5`, in id order.
const LIST: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts
      WHERE org_id = $1
        AND ($2::text IS NULL OR phone_e164 = $2)
        AND ($3::text IS NULL OR first_name ILIKE $3 OR last_name ILIKE $3)
        AND ($4::uuid IS NULL OR id > $4)
      ORDER BY id
      LIMIT $5"
);

/// The contact `id` of `org`, locked until the transaction ends.
async fn lock_by_id(
    conn: &mut PgConnection,
    org: OrgId,
    id: ContactId,
) -> Result<Option<ManagedContactRow>, AdminError> {
    let row = sqlx::query_as(LOCK_BY_ID)
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(repo_error)?;
    Ok(row)
}

/// Inserts `draft` as a contact of `org`; `None` when its external id is taken ([`CREATE`]).
async fn insert(
    conn: impl PgExecutor<'_>,
    org: OrgId,
    draft: &ContactDraft,
) -> Result<Option<ManagedContactRow>, AdminError> {
    sqlx::query_as(CREATE)
        .bind(org.as_uuid())
        .bind(draft.first_name.as_deref())
        .bind(draft.last_name.as_deref())
        .bind(draft.phone_raw.as_str())
        .bind(draft.phone.as_str())
        .bind(draft.external_id.as_ref().map(ExternalId::as_str))
        .fetch_optional(conn)
        .await
        .map_err(contact_write_error)
}

/// Applies `draft` to the locked contact `current` of `org` when its version is `expected` (any
/// when `None`): unchanged when it already holds the draft. Returns the contact as it is now and
/// whether it changed.
async fn change(
    conn: &mut PgConnection,
    org: OrgId,
    current: ManagedContactRow,
    draft: &ContactDraft,
    expected: Option<i64>,
) -> Result<(ManagedContactRow, bool), AdminError> {
    if expected.is_some_and(|v| v != current.version()) {
        return Err(AdminError::VersionMismatch(Entity::Contact));
    }
    if current.holds(draft) {
        return Ok((current, false));
    }
    let row = sqlx::query_as(REPLACE)
        .bind(org.as_uuid())
        .bind(current.id())
        .bind(draft.first_name.as_deref())
        .bind(draft.last_name.as_deref())
        .bind(draft.phone_raw.as_str())
        .bind(draft.phone.as_str())
        .bind(draft.external_id.as_ref().map(ExternalId::as_str))
        .fetch_one(conn)
        .await
        .map_err(contact_write_error)?;
    Ok((row, true))
}

/// Whether the organization exists (read in the caller's transaction).
async fn org_exists(conn: &mut PgConnection, org: OrgId) -> Result<bool, AdminError> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1")
        .bind(org.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(repo_error)?;
    Ok(exists.is_some())
}

/// `raw` as an `ILIKE` pattern matching any text containing it: its wildcards (`%`, `_`) and the
/// escape character (`\`) escaped, so each matches only itself.
fn contains_pattern(raw: &str) -> String {
    let mut pattern = String::with_capacity(raw.len() + 2);
    pattern.push('%');
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl ContactAdmin for PgStore {
    async fn get_contact(
        &self,
        org: OrgId,
        id: ContactId,
    ) -> Result<Option<ManagedContact>, AdminError> {
        let row: Option<ManagedContactRow> = sqlx::query_as(concat!(
            "SELECT ",
            managed_contact_columns!(),
            " FROM contacts WHERE org_id = $1 AND id = $2"
        ))
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.map(|row| row.into_managed(org)).transpose()?)
    }

    #[tracing::instrument(name = "postgres.create_contact", skip_all, fields(org_id = %org))]
    async fn create_contact(
        &self,
        org: OrgId,
        draft: &ContactDraft,
    ) -> Result<ManagedContact, AdminError> {
        let row = insert(&self.pool, org, draft)
            .await?
            .ok_or(AdminError::ExternalIdTaken)?;
        Ok(row.into_managed(org)?)
    }

    #[tracing::instrument(name = "postgres.update_contact", skip_all, fields(org_id = %org))]
    async fn update_contact(
        &self,
        org: OrgId,
        id: ContactId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let current = lock_by_id(&mut tx, org, id)
            .await?
            .ok_or(AdminError::NotFound(Entity::Contact))?;
        let (row, _) = change(&mut tx, org, current, draft, expected).await?;
        tx.commit().await.map_err(repo_error)?;
        Ok(row.into_managed(org)?)
    }

    #[tracing::instrument(name = "postgres.upsert_by_external_id", skip_all, fields(org_id = %org))]
    async fn upsert_by_external_id(
        &self,
        org: OrgId,
        external_id: &ExternalId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ContactUpsert, AdminError> {
        let draft = ContactDraft {
            external_id: Some(external_id.clone()),
            ..draft.clone()
        };
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        // Round again only when the insert found the external id taken by an insert that
        // committed meanwhile: the next read (a new snapshot) sees that contact and locks it.
        let (row, outcome) = loop {
            let current: Option<ManagedContactRow> = sqlx::query_as(LOCK_BY_EXTERNAL_ID)
                .bind(org.as_uuid())
                .bind(external_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(repo_error)?;
            if let Some(current) = current {
                let (row, changed) = change(&mut tx, org, current, &draft, expected).await?;
                let outcome = if changed {
                    Upserted::Updated
                } else {
                    Upserted::Unchanged
                };
                break (row, outcome);
            }
            if expected.is_some() {
                // No contact is at the expected version; a missing organization says so first.
                if !org_exists(&mut tx, org).await? {
                    return Err(AdminError::NotFound(Entity::Organization));
                }
                return Err(AdminError::VersionMismatch(Entity::Contact));
            }
            if let Some(row) = insert(&mut *tx, org, &draft).await? {
                break (row, Upserted::Created);
            }
        };
        tx.commit().await.map_err(repo_error)?;
        Ok(ContactUpsert {
            contact: row.into_managed(org)?,
            outcome,
        })
    }

    #[tracing::instrument(name = "postgres.delete_contact", skip_all, fields(org_id = %org))]
    async fn delete_contact(
        &self,
        org: OrgId,
        id: ContactId,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        let current = lock_by_id(&mut tx, org, id)
            .await?
            .ok_or(AdminError::NotFound(Entity::Contact))?;
        if expected.is_some_and(|v| v != current.version()) {
            return Err(AdminError::VersionMismatch(Entity::Contact));
        }
        let phone = current.phone_e164().to_owned();
        // Read before deleting: a row this service cannot read is reported, and stays.
        let contact = current.into_managed(org)?;
        // Its call records stay, unlinked (ON DELETE SET NULL).
        sqlx::query("DELETE FROM contacts WHERE org_id = $1 AND id = $2")
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        sqlx::query("DELETE FROM caller_memory WHERE org_id = $1 AND phone_e164 = $2")
            .bind(org.as_uuid())
            .bind(phone)
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        tx.commit().await.map_err(repo_error)?;
        Ok(contact)
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        query: &ContactQuery,
    ) -> Result<Vec<ManagedContact>, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let rows: Vec<ManagedContactRow> = sqlx::query_as(LIST)
            .bind(org.as_uuid())
            .bind(query.phone.as_ref().map(|p| p.as_str()))
            .bind(query.name.as_deref().map(contains_pattern))
            .bind(query.after.map(|id| id.as_uuid()))
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(repo_error)?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_managed(org))
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn a_name_filter_matches_its_wildcards_literally() {
        assert_eq!(contains_pattern("Ada"), "%Ada%");
        assert_eq!(contains_pattern(r"50%_off\"), r"%50\%\_off\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
