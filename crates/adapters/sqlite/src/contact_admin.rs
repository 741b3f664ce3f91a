//! [`ContactAdmin`]: the management API's contacts, one at a time. Every write is one
//! `BEGIN IMMEDIATE` transaction (the write lock is taken first, as an import takes it), so its
//! checks (the organization, the version, the external id) and its change cannot interleave
//! with another write: two upserts of one external id make one contact.
//!
//! SQLite keeps no `has_memory` mark on contacts (the lookup reads `caller_memory` by its key
//! whatever the contact), so a created contact's number needs no marking.

use async_trait::async_trait;
use relay_domain::{ContactDraft, ContactId, ContactQuery, ExternalId, ManagedContact, OrgId};
use relay_ports::{AdminError, ContactAdmin, ContactUpsert, Entity, RepositoryError, Upserted};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use crate::rows::{ManagedContactRow, convert, managed_contact_columns, now_micros};
use crate::{SqliteStore, repo_error};

/// Contact `?2` of organization `?1`.
const SELECT_CONTACT: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts WHERE org_id = ?1 AND id = ?2"
);

/// The contact of organization `?1` with external id `?2`.
const SELECT_BY_EXTERNAL_ID: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts WHERE org_id = ?1 AND external_id = ?2"
);

/// A new contact at version 1 (the column's default), created and updated at `?8`.
const INSERT_CONTACT: &str = concat!(
    "INSERT INTO contacts
       (id, org_id, first_name, last_name, phone_raw, phone_e164, external_id, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
     RETURNING ",
    managed_contact_columns!()
);

/// Replaces the data of contact `?1`: a new version, updated at `?7`.
const REPLACE_CONTACT: &str = concat!(
    "UPDATE contacts
        SET first_name = ?2, last_name = ?3, phone_raw = ?4, phone_e164 = ?5, external_id = ?6,
            updated_at = ?7, version = version + 1
      WHERE id = ?1
     RETURNING ",
    managed_contact_columns!()
);

/// Organization `?1`'s contacts with an id above `?2` (`''` for the first page) whose first or
/// last name matches the `LIKE` pattern `?3` (all when NULL), then `?4` at most: the
/// `contacts_org_id_idx` walk.
const LIST_CONTACTS: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts
      WHERE org_id = ?1 AND id > ?2
        AND (?3 IS NULL OR first_name LIKE ?3 ESCAPE '\\' OR last_name LIKE ?3 ESCAPE '\\')
      ORDER BY id
      LIMIT ?4"
);

/// [`LIST_CONTACTS`] of the number `?5` only: the few contacts of a number, found by
/// `contacts_org_phone_idx` and sorted, rather than by walking every contact of the
/// organization (the unary `+` keeps the planner off `contacts_org_id_idx`, which it prefers
/// without statistics).
const LIST_CONTACTS_OF_NUMBER: &str = concat!(
    "SELECT ",
    managed_contact_columns!(),
    " FROM contacts
      WHERE org_id = ?1 AND phone_e164 = ?5 AND +id > ?2
        AND (?3 IS NULL OR first_name LIKE ?3 ESCAPE '\\' OR last_name LIKE ?3 ESCAPE '\\')
      ORDER BY +id
      LIMIT ?4"
);

/// Whether organization `org` exists.
async fn org_exists(conn: &mut SqliteConnection, org: &str) -> Result<bool, RepositoryError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = ?1")
        .bind(org)
        .fetch_optional(conn)
        .await
        .map_err(repo_error)?;
    Ok(exists.is_some())
}

/// Contact `id` of `org`, as stored.
async fn select_contact(
    conn: &mut SqliteConnection,
    org: &str,
    id: ContactId,
) -> Result<Option<ManagedContactRow>, RepositoryError> {
    sqlx::query_as(SELECT_CONTACT)
        .bind(org)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(repo_error)
}

/// Contact `id` of `org`, read in the write transaction: `NotFound` when there is none,
/// `VersionMismatch` when its version is not `expected` (any when `None`).
async fn contact_at_version(
    conn: &mut SqliteConnection,
    org: &str,
    id: ContactId,
    expected: Option<i64>,
) -> Result<ManagedContactRow, AdminError> {
    let row = select_contact(conn, org, id)
        .await?
        .ok_or(AdminError::NotFound(Entity::Contact))?;
    if expected.is_some_and(|v| v != row.version) {
        return Err(AdminError::VersionMismatch(Entity::Contact));
    }
    Ok(row)
}

/// Whether a contact of `org` other than `except` has `external_id` (never, for none). Run
/// inside the write transaction, so the answer holds until it commits.
async fn external_id_taken(
    conn: &mut SqliteConnection,
    org: &str,
    external_id: Option<&ExternalId>,
    except: Option<&str>,
) -> Result<bool, RepositoryError> {
    let Some(external_id) = external_id else {
        return Ok(false);
    };
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM contacts WHERE org_id = ?1 AND external_id = ?2 AND id IS NOT ?3",
    )
    .bind(org)
    .bind(external_id.as_str())
    .bind(except)
    .fetch_optional(conn)
    .await
    .map_err(repo_error)?;
    Ok(taken.is_some())
}

/// Inserts `draft` as a new contact of `org` with `external_id`.
async fn insert_contact(
    conn: &mut SqliteConnection,
    org: &str,
    draft: &ContactDraft,
    external_id: Option<&ExternalId>,
) -> Result<ManagedContact, RepositoryError> {
    let row: ManagedContactRow = sqlx::query_as(INSERT_CONTACT)
        .bind(Uuid::new_v4().to_string())
        .bind(org)
        .bind(draft.first_name.as_deref())
        .bind(draft.last_name.as_deref())
        .bind(&draft.phone_raw)
        .bind(draft.phone.as_str())
        .bind(external_id.map(ExternalId::as_str))
        .bind(now_micros())
        .fetch_one(conn)
        .await
        .map_err(repo_error)?;
    row.try_into()
}

/// Writes `draft` with `external_id` over the stored contact `id`.
async fn replace_contact(
    conn: &mut SqliteConnection,
    id: &str,
    draft: &ContactDraft,
    external_id: Option<&ExternalId>,
) -> Result<ManagedContact, RepositoryError> {
    let row: ManagedContactRow = sqlx::query_as(REPLACE_CONTACT)
        .bind(id)
        .bind(draft.first_name.as_deref())
        .bind(draft.last_name.as_deref())
        .bind(&draft.phone_raw)
        .bind(draft.phone.as_str())
        .bind(external_id.map(ExternalId::as_str))
        .bind(now_micros())
        .fetch_one(conn)
        .await
        .map_err(repo_error)?;
    row.try_into()
}

/// `needle` as a `LIKE … ESCAPE '\'` pattern matching any text containing it: its `\`, `%`
/// and `_` are literal.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl SqliteStore {
    /// A write transaction, the write lock taken first (`BEGIN IMMEDIATE`).
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, RepositoryError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(repo_error)
    }
}

#[async_trait]
impl ContactAdmin for SqliteStore {
    async fn get_contact(
        &self,
        org: OrgId,
        id: ContactId,
    ) -> Result<Option<ManagedContact>, AdminError> {
        let mut conn = self.pool.acquire().await.map_err(repo_error)?;
        let row = select_contact(&mut conn, &org.to_string(), id).await?;
        Ok(row.map(ManagedContact::try_from).transpose()?)
    }

    #[tracing::instrument(name = "sqlite.create_contact", skip_all, fields(org_id = %org))]
    async fn create_contact(
        &self,
        org: OrgId,
        draft: &ContactDraft,
    ) -> Result<ManagedContact, AdminError> {
        let org = org.to_string();
        let mut tx = self.begin_write().await?;
        if !org_exists(&mut tx, &org).await? {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let external_id = draft.external_id.as_ref();
        if external_id_taken(&mut tx, &org, external_id, None).await? {
            return Err(AdminError::ExternalIdTaken);
        }
        let contact = insert_contact(&mut tx, &org, draft, external_id).await?;
        tx.commit().await.map_err(repo_error)?;
        Ok(contact)
    }

    #[tracing::instrument(name = "sqlite.update_contact", skip_all, fields(org_id = %org, contact_id = %id))]
    async fn update_contact(
        &self,
        org: OrgId,
        id: ContactId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        let org = org.to_string();
        let mut tx = self.begin_write().await?;
        let row = contact_at_version(&mut tx, &org, id, expected).await?;
        let external_id = draft.external_id.as_ref();
        if row.holds(draft, external_id) {
            return Ok(row.try_into()?);
        }
        let row_id = row.id();
        if external_id_taken(&mut tx, &org, external_id, Some(&row_id)).await? {
            return Err(AdminError::ExternalIdTaken);
        }
        let contact = replace_contact(&mut tx, &row_id, draft, external_id).await?;
        tx.commit().await.map_err(repo_error)?;
        Ok(contact)
    }

    #[tracing::instrument(name = "sqlite.upsert_by_external_id", skip_all, fields(org_id = %org))]
    async fn upsert_by_external_id(
        &self,
        org: OrgId,
        external_id: &ExternalId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ContactUpsert, AdminError> {
        let org = org.to_string();
        // The lookup and the insert under one write lock: a concurrent upsert of the same
        // external id waits (busy timeout), then finds this one's contact.
        let mut tx = self.begin_write().await?;
        if !org_exists(&mut tx, &org).await? {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let existing: Option<ManagedContactRow> = sqlx::query_as(SELECT_BY_EXTERNAL_ID)
            .bind(&org)
            .bind(external_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(repo_error)?;
        let upsert = match existing {
            Some(row) if expected.is_some_and(|v| v != row.version) => {
                return Err(AdminError::VersionMismatch(Entity::Contact));
            }
            None if expected.is_some() => {
                return Err(AdminError::VersionMismatch(Entity::Contact));
            }
            Some(row) if row.holds(draft, Some(external_id)) => {
                return Ok(ContactUpsert {
                    contact: row.try_into()?,
                    outcome: Upserted::Unchanged,
                });
            }
            Some(row) => ContactUpsert {
                contact: replace_contact(&mut tx, &row.id(), draft, Some(external_id)).await?,
                outcome: Upserted::Updated,
            },
            None => ContactUpsert {
                contact: insert_contact(&mut tx, &org, draft, Some(external_id)).await?,
                outcome: Upserted::Created,
            },
        };
        tx.commit().await.map_err(repo_error)?;
        Ok(upsert)
    }

    #[tracing::instrument(name = "sqlite.delete_contact", skip_all, fields(org_id = %org, contact_id = %id))]
    async fn delete_contact(
        &self,
        org: OrgId,
        id: ContactId,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        let org = org.to_string();
        let mut tx = self.begin_write().await?;
        let row = contact_at_version(&mut tx, &org, id, expected).await?;
        // Its call records stay, unlinked: `calls.contact_id` is ON DELETE SET NULL.
        sqlx::query("DELETE FROM contacts WHERE id = ?1")
            .bind(row.id())
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        let contact = ManagedContact::try_from(row)?;
        sqlx::query("DELETE FROM caller_memory WHERE org_id = ?1 AND phone_e164 = ?2")
            .bind(&org)
            .bind(contact.contact.phone.as_str())
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
        let org = org.to_string();
        let mut conn = self.pool.acquire().await.map_err(repo_error)?;
        if !org_exists(&mut conn, &org).await? {
            return Err(AdminError::NotFound(Entity::Organization));
        }
        let sql = if query.phone.is_some() {
            LIST_CONTACTS_OF_NUMBER
        } else {
            LIST_CONTACTS
        };
        // Every id is a 36-character UUID, above the empty text.
        let mut list = sqlx::query_as(sql)
            .bind(&org)
            .bind(query.after.map(|id| id.to_string()).unwrap_or_default())
            .bind(query.name.as_deref().map(contains_pattern))
            .bind(i64::from(query.limit));
        if let Some(phone) = &query.phone {
            list = list.bind(phone.as_str());
        }
        let rows: Vec<ManagedContactRow> = list.fetch_all(&mut *conn).await.map_err(repo_error)?;
        Ok(convert(rows)?)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::{LIST_CONTACTS, LIST_CONTACTS_OF_NUMBER, contains_pattern};
    use crate::SqliteStore;

    /// How SQLite would run `sql` (one of this module's constants), one line per step.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let steps: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pool)
                .await
                .expect("plan");
        steps
            .into_iter()
            .map(|(_, _, _, step)| step)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn contact_pages_walk_an_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = SecretString::from(format!("sqlite://{}/relay.db", dir.path().display()));
        let (store, _) = SqliteStore::open(&url, true).await.expect("open");
        store.migrate().await.expect("migrate");
        let all = plan(&store, LIST_CONTACTS).await;
        assert!(
            all.contains("contacts_org_id_idx (org_id=? AND id>?)"),
            "{all}"
        );
        let of_number = plan(&store, LIST_CONTACTS_OF_NUMBER).await;
        assert!(
            of_number.contains("contacts_org_phone_idx (org_id=? AND phone_e164=?)"),
            "{of_number}"
        );
    }

    #[test]
    fn a_name_filter_is_literal_inside_its_like_pattern() {
        assert_eq!(contains_pattern("ann"), "%ann%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
