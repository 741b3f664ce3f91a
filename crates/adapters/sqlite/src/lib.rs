//! Embedded SQLite adapter: the same ports as the Postgres adapter, in one file on disk, for a
//! zero-setup local run or a small single-box deployment. Proven equal to Postgres by the ports'
//! conformance suite.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    Contact, ContactId, E164, NewContact, OrgId, OrgName, Organization, Region, SecretId,
    SecretInfo, TokenDigest,
};
use relay_ports::{
    AdminError, BoxError, ContactDirectory, ContactImport, OrganizationAdmin,
    OrganizationDirectory, PoolStats, Probe, RepositoryError, UpsertSummary,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../../migrations/sqlite");

/// The database URL could not be read.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL is not a valid SQLite URL")]
pub struct InvalidUrl;

/// Organizations, secrets and contacts in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed, when `create` is true) the database at
    /// `url` (`sqlite://path/to/file.db`). Returns the store and whether the file was new.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when the file cannot be opened or created.
    pub async fn open(url: &SecretString, create: bool) -> Result<(Self, bool), RepositoryError> {
        let options = SqliteConnectOptions::from_str(url.expose_secret())
            .map_err(|_| RepositoryError::Unexpected(Box::new(InvalidUrl)))?;
        let path = options.get_filename().to_owned();
        let fresh = !path.exists();
        if create
            && fresh
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| RepositoryError::Unavailable(Box::new(e)))?;
        }
        let options = options
            .create_if_missing(create)
            .foreign_keys(true)
            // WAL lets the webhook read while an import writes.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(repo_error)?;
        Ok((Self { pool }, fresh && create))
    }

    /// A store whose file is opened on first use (the service starts even if it cannot be).
    ///
    /// # Errors
    /// [`InvalidUrl`].
    pub fn open_lazy(url: &SecretString) -> Result<Self, InvalidUrl> {
        let options = SqliteConnectOptions::from_str(url.expose_secret())
            .map_err(|_| InvalidUrl)?
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// The pool, for raw access (tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies the pending migrations of `migrations/sqlite`.
    ///
    /// # Errors
    /// The migration error.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }
}

fn repo_error(e: sqlx::Error) -> RepositoryError {
    use sqlx::Error as E;
    match &e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            RepositoryError::Unavailable(Box::new(e))
        }
        E::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            // BUSY, LOCKED, IOERR, FULL, CANTOPEN: the file, not the data, is the problem.
            if matches!(primary, Some(5 | 6 | 10 | 13 | 14)) {
                RepositoryError::Unavailable(Box::new(e))
            } else {
                RepositoryError::Unexpected(Box::new(e))
            }
        }
        _ => RepositoryError::Unexpected(Box::new(e)),
    }
}

fn unexpected(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(what.to_string().into())
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(m: i64) -> Result<DateTime<Utc>, RepositoryError> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| unexpected(format!("bad timestamp {m}")))
}

fn now_micros() -> i64 {
    micros(Utc::now())
}

fn uuid_col(row: &SqliteRow, name: &str) -> Result<Uuid, RepositoryError> {
    let text: String = row.try_get(name).map_err(repo_error)?;
    Uuid::parse_str(&text).map_err(|e| unexpected(format!("{name}: {e}")))
}

fn org_from_row(row: &SqliteRow) -> Result<Organization, RepositoryError> {
    let id = uuid_col(row, "id")?;
    let name: String = row.try_get("name").map_err(repo_error)?;
    let region: String = row.try_get("default_region").map_err(repo_error)?;
    Ok(Organization {
        id: OrgId::from_uuid(id),
        name: OrgName::parse(&name).map_err(|e| unexpected(format!("organization {id}: {e}")))?,
        default_region: Region::parse(&region)
            .map_err(|e| unexpected(format!("organization {id}: {e}")))?,
    })
}

fn secret_from_row(row: &SqliteRow) -> Result<SecretInfo, RepositoryError> {
    let revoked: Option<i64> = row.try_get("revoked_at").map_err(repo_error)?;
    Ok(SecretInfo {
        id: SecretId::from_uuid(uuid_col(row, "id")?),
        org_id: OrgId::from_uuid(uuid_col(row, "org_id")?),
        created_at: from_micros(row.try_get("created_at").map_err(repo_error)?)?,
        revoked_at: revoked.map(from_micros).transpose()?,
    })
}

const SELECT_NEWEST_CONTACT: &str = "SELECT id, first_name, last_name, phone_raw, updated_at
       FROM contacts
      WHERE org_id = ?1 AND phone_e164 = ?2
      ORDER BY updated_at DESC, id DESC
      LIMIT 1";

/// Waiters are not counted: the embedded store is for one machine, not for a fleet to watch.
#[async_trait]
impl Probe for SqliteStore {
    async fn ping(&self) -> Result<(), BoxError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: self.pool.options().get_max_connections(),
            open,
            in_use: open.saturating_sub(idle),
            waiting: None,
        })
    }
}

#[async_trait]
impl OrganizationDirectory for SqliteStore {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.default_region
               FROM organization_secrets s
               JOIN organizations o ON o.id = s.org_id
              WHERE s.digest = ?1 AND s.revoked_at IS NULL",
        )
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        row.as_ref().map(org_from_row).transpose()
    }
}

#[async_trait]
impl ContactDirectory for SqliteStore {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let row = sqlx::query(SELECT_NEWEST_CONTACT)
            .bind(org.to_string())
            .bind(phone.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(repo_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Contact {
            id: ContactId::from_uuid(uuid_col(&row, "id")?),
            org_id: org,
            first_name: row.try_get("first_name").map_err(repo_error)?,
            last_name: row.try_get("last_name").map_err(repo_error)?,
            phone: phone.clone(),
            updated_at: from_micros(row.try_get("updated_at").map_err(repo_error)?)?,
        }))
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
        let rows = sqlx::query(
            "SELECT id, name, default_region FROM organizations ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(rows.iter().map(org_from_row).collect::<Result<_, _>>()?)
    }

    async fn add_secret(&self, org: OrgId, digest: &TokenDigest) -> Result<SecretInfo, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound("organization"));
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
            return Err(AdminError::NotFound("organization"));
        }
        let rows = sqlx::query(
            "SELECT id, org_id, created_at, revoked_at FROM organization_secrets
              WHERE org_id = ?1 ORDER BY created_at, id",
        )
        .bind(org.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(rows.iter().map(secret_from_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        let row = sqlx::query(
            "UPDATE organization_secrets SET revoked_at = COALESCE(revoked_at, ?2)
              WHERE id = ?1
             RETURNING id, org_id, created_at, revoked_at",
        )
        .bind(secret.to_string())
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        let row = row.ok_or(AdminError::NotFound("secret"))?;
        Ok(secret_from_row(&row)?)
    }

    async fn find_organization(&self, org: OrgId) -> Result<Option<Organization>, AdminError> {
        let row = sqlx::query("SELECT id, name, default_region FROM organizations WHERE id = ?1")
            .bind(org.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(repo_error)?;
        Ok(row.as_ref().map(org_from_row).transpose()?)
    }
}

#[async_trait]
impl ContactImport for SqliteStore {
    #[tracing::instrument(name = "sqlite.upsert_contacts", skip_all, fields(org_id = %org, batch = contacts.len()))]
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        let org_text = org.to_string();
        // One write transaction per batch: all of it or none, and one writer at a time.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(repo_error)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = ?1")
            .bind(&org_text)
            .fetch_optional(&mut *tx)
            .await
            .map_err(repo_error)?;
        if exists.is_none() {
            return Err(AdminError::NotFound("organization"));
        }
        let now = now_micros();
        let mut summary = UpsertSummary::default();
        for c in contacts {
            let existing = sqlx::query(SELECT_NEWEST_CONTACT)
                .bind(&org_text)
                .bind(c.phone.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(repo_error)?;
            match existing {
                Some(row) => {
                    let same = row
                        .try_get::<Option<String>, _>("first_name")
                        .map_err(repo_error)?
                        == c.first_name
                        && row
                            .try_get::<Option<String>, _>("last_name")
                            .map_err(repo_error)?
                            == c.last_name
                        && row.try_get::<String, _>("phone_raw").map_err(repo_error)?
                            == c.phone_raw;
                    if same {
                        summary.unchanged += 1;
                        continue;
                    }
                    let id: String = row.try_get("id").map_err(repo_error)?;
                    sqlx::query(
                        "UPDATE contacts SET first_name = ?2, last_name = ?3, phone_raw = ?4, updated_at = ?5
                          WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(c.first_name.as_deref())
                    .bind(c.last_name.as_deref())
                    .bind(&c.phone_raw)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(repo_error)?;
                    summary.updated += 1;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO contacts
                           (id, org_id, first_name, last_name, phone_raw, phone_e164, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    )
                    .bind(Uuid::new_v4().to_string())
                    .bind(&org_text)
                    .bind(c.first_name.as_deref())
                    .bind(c.last_name.as_deref())
                    .bind(&c.phone_raw)
                    .bind(c.phone.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(repo_error)?;
                    summary.inserted += 1;
                }
            }
        }
        tx.commit().await.map_err(repo_error)?;
        Ok(summary)
    }
}
