//! Embedded SQLite adapter: the same ports as the Postgres adapter, in one file on disk, for a
//! zero-setup local run or a small single-box deployment. Proven equal to Postgres by the ports'
//! conformance suite.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    CallId, CallKind, CallRecord, CallSid, Contact, ContactId, ConversationId, E164, NewContact,
    OrgId, OrgName, Organization, Region, SecretId, SecretInfo, TokenDigest,
};
use relay_ports::{
    AdminError, BoxError, CallLog, ContactDirectory, ContactImport, OrganizationAdmin,
    OrganizationDirectory, PoolStats, Probe, Recorded, RepositoryError, UpsertSummary,
    WebhookSigner,
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
        unknown_caller_name: row.try_get("unknown_caller_name").map_err(repo_error)?,
    })
}

/// The organization columns [`org_from_row`] reads (a macro, so queries stay `&'static str`).
macro_rules! org_columns {
    () => {
        "id, name, default_region, unknown_caller_name"
    };
}

/// The call columns [`call_from_row`] reads, in insert order.
macro_rules! call_columns {
    () => {
        "id, org_id, contact_id, conversation_id, call_sid, agent_id, kind, direction, \
         external_number, agent_number, status, call_successful, summary, duration_secs, \
         started_at, event_at, received_at"
    };
}

fn call_from_row(row: &SqliteRow) -> Result<CallRecord, RepositoryError> {
    let id = uuid_col(row, "id")?;
    let bad = |what: &str| unexpected(format!("call {id}: bad {what}"));
    let conversation: String = row.try_get("conversation_id").map_err(repo_error)?;
    let call_sid: Option<String> = row.try_get("call_sid").map_err(repo_error)?;
    let contact: Option<String> = row.try_get("contact_id").map_err(repo_error)?;
    let kind: String = row.try_get("kind").map_err(repo_error)?;
    let duration: Option<i64> = row.try_get("duration_secs").map_err(repo_error)?;
    let started: Option<i64> = row.try_get("started_at").map_err(repo_error)?;
    Ok(CallRecord {
        id: CallId::from_uuid(id),
        org_id: OrgId::from_uuid(uuid_col(row, "org_id")?),
        contact_id: contact
            .map(|c| Uuid::parse_str(&c).map(ContactId::from_uuid))
            .transpose()
            .map_err(|_| bad("contact id"))?,
        conversation_id: ConversationId::parse(conversation).map_err(|_| bad("conversation id"))?,
        call_sid: call_sid
            .map(CallSid::parse)
            .transpose()
            .map_err(|_| bad("call sid"))?,
        agent_id: row.try_get("agent_id").map_err(repo_error)?,
        kind: CallKind::parse(&kind).ok_or_else(|| bad("kind"))?,
        direction: row.try_get("direction").map_err(repo_error)?,
        external_number: row.try_get("external_number").map_err(repo_error)?,
        agent_number: row.try_get("agent_number").map_err(repo_error)?,
        status: row.try_get("status").map_err(repo_error)?,
        call_successful: row.try_get("call_successful").map_err(repo_error)?,
        summary: row.try_get("summary").map_err(repo_error)?,
        duration_secs: duration
            .map(u32::try_from)
            .transpose()
            .map_err(|_| bad("duration"))?,
        started_at: started.map(from_micros).transpose()?,
        event_at: from_micros(row.try_get("event_at").map_err(repo_error)?)?,
        received_at: from_micros(row.try_get("received_at").map_err(repo_error)?)?,
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
            "SELECT o.id, o.name, o.default_region, o.unknown_caller_name
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
            unknown_caller_name: String::new(),
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM organizations ORDER BY created_at, id"
        ))
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
        let row = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM organizations WHERE id = ?1"
        ))
        .bind(org.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(row.as_ref().map(org_from_row).transpose()?)
    }

    async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &str,
    ) -> Result<Organization, AdminError> {
        let row = sqlx::query(concat!(
            "UPDATE organizations SET unknown_caller_name = ?2 WHERE id = ?1
             RETURNING ",
            org_columns!()
        ))
        .bind(org.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        let row = row.ok_or(AdminError::NotFound("organization"))?;
        Ok(org_from_row(&row)?)
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
            return Err(AdminError::NotFound("organization"));
        }
        Ok(())
    }
}

#[async_trait]
impl CallLog for SqliteStore {
    async fn record_call(&self, r: &CallRecord) -> Result<Recorded, RepositoryError> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ")
             VALUES (?1, ?2,
                     (SELECT id FROM contacts WHERE id = ?3 AND org_id = ?2), ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
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
        .bind(r.agent_number.as_deref())
        .bind(r.status.as_deref())
        .bind(r.call_successful.as_deref())
        .bind(r.summary.as_deref())
        .bind(r.duration_secs.map(i64::from))
        .bind(r.started_at.map(micros))
        .bind(micros(r.event_at))
        .bind(micros(r.received_at))
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        if inserted.is_some() {
            return Ok(Recorded {
                id: r.id,
                inserted: true,
            });
        }
        let row = sqlx::query("SELECT id FROM calls WHERE org_id = ?1 AND conversation_id = ?2")
            .bind(r.org_id.to_string())
            .bind(r.conversation_id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(repo_error)?;
        Ok(Recorded {
            id: CallId::from_uuid(uuid_col(&row, "id")?),
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
            return Err(AdminError::NotFound("organization"));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls
              WHERE org_id = ?1 AND received_at >= ?2
              ORDER BY received_at DESC, id DESC
              LIMIT ?3"
        ))
        .bind(org.to_string())
        .bind(since.map_or(i64::MIN, micros))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(rows.iter().map(call_from_row).collect::<Result<_, _>>()?)
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        let row = sqlx::query(concat!(
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
            org: org_from_row(&row)?,
            sealed_secret: row.try_get("webhook_secret_sealed").map_err(repo_error)?,
        }))
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
