//! Postgres adapter: implements the organization, contact and admin ports with sqlx.
//!
//! Queries are checked at run time (no compile-time database needed to build); the adapter tests
//! run every query against a real Postgres. Driver errors become port errors here, at the seam.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
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
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Uuid;
use sqlx::{PgPool, Postgres, Row};

#[cfg(feature = "test-helpers")]
pub mod testing;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../../migrations/postgres");

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a query may wait for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// The database URL could not be read.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL is not a valid Postgres URL: {0}")]
pub struct InvalidUrl(String);

/// Organizations, secrets and contacts in Postgres.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Webhook-path queries waiting for a connection now (sqlx does not count its waiters).
    waiting: Arc<AtomicU32>,
}

impl PgStore {
    /// A store whose pool connects on first use: the service starts (and answers `{}`) even while
    /// Postgres is down, and recovers by itself when it is back.
    ///
    /// # Errors
    /// [`InvalidUrl`] when the URL cannot be parsed.
    pub fn connect_lazy(url: &SecretString, settings: PoolSettings) -> Result<Self, InvalidUrl> {
        let options = connect_options(url)?;
        let pool = pool_options(settings)
            .min_connections(0)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    /// A store that checks the connection now (for CLI commands, which should fail at once).
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when Postgres cannot be reached; `Unexpected` for a bad URL.
    pub async fn connect(
        url: &SecretString,
        settings: PoolSettings,
    ) -> Result<Self, RepositoryError> {
        let options = connect_options(url).map_err(|e| RepositoryError::Unexpected(Box::new(e)))?;
        let pool = pool_options(settings)
            .connect_with(options)
            .await
            .map_err(repo_error)?;
        Ok(Self::from_pool(pool))
    }

    /// Creates the database named in `url` when it does not exist yet (for local development;
    /// production databases are created by their operators). Returns whether it was created.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when the server cannot be reached or refuses.
    pub async fn create_database_if_missing(url: &SecretString) -> Result<bool, RepositoryError> {
        use sqlx::migrate::MigrateDatabase as _;
        let url = url.expose_secret();
        if sqlx::Postgres::database_exists(url)
            .await
            .map_err(repo_error)?
        {
            return Ok(false);
        }
        sqlx::Postgres::create_database(url)
            .await
            .map_err(repo_error)?;
        Ok(true)
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            waiting: Arc::default(),
        }
    }

    /// The pool, for callers that need raw access (tests, health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for a webhook-path query, counted in [`PoolStats::waiting`] while it waits.
    async fn acquire(&self) -> Result<PoolConnection<Postgres>, RepositoryError> {
        struct Waiting<'a>(&'a AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // Decremented when acquired, failed, or abandoned because the caller's budget ran out.
        let _waiting = Waiting(&self.waiting);
        self.pool.acquire().await.map_err(repo_error)
    }

    /// Applies the pending migrations of `migrations/postgres`.
    ///
    /// # Errors
    /// The migration error, with the failing version.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }
}

/// A pooled connection idle at least this long is pinged before it is lent out.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The pool's settings. sqlx pings every connection before lending it by default: a round trip
/// per query, which doubles the webhook's Postgres round trips. Only a connection that sat idle
/// for [`PING_IF_IDLE_FOR`] is pinged here (after a quiet spell, when Postgres may have restarted
/// or a proxy dropped it); one in steady use proves itself by its queries, and if it breaks, that
/// query fails, the connection is discarded, and the call answers within its budget.
fn pool_options(settings: PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

fn connect_options(url: &SecretString) -> Result<PgConnectOptions, InvalidUrl> {
    PgConnectOptions::from_str(url.expose_secret())
        // The sqlx error may quote the URL, password included: keep only its kind.
        .map_err(|e| InvalidUrl(error_kind(&e).to_owned()))
        .map(|o| o.application_name("relay"))
}

fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "bad configuration",
        _ => "unreadable",
    }
}

/// Translates a driver error into the port's terms.
fn repo_error(e: sqlx::Error) -> RepositoryError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => RepositoryError::Unavailable(Box::new(e)),
        E::Database(db) => match db.code().as_deref() {
            // connection exceptions, insufficient resources, operator intervention (shutdown),
            // statement timeout / query canceled
            Some(code)
                if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") =>
            {
                RepositoryError::Unavailable(Box::new(e))
            }
            _ => RepositoryError::Unexpected(Box::new(e)),
        },
        _ => RepositoryError::Unexpected(Box::new(e)),
    }
}

fn admin_error(e: sqlx::Error, missing: &'static str) -> AdminError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return AdminError::NotFound(missing);
    }
    AdminError::Repository(repo_error(e))
}

fn unexpected(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(what.to_string().into())
}

fn org_from_row(row: &sqlx::postgres::PgRow) -> Result<Organization, RepositoryError> {
    let id: Uuid = row.try_get("id").map_err(repo_error)?;
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

fn call_from_row(row: &sqlx::postgres::PgRow) -> Result<CallRecord, RepositoryError> {
    let id: Uuid = row.try_get("id").map_err(repo_error)?;
    let bad = |what: &str| unexpected(format!("call {id}: bad {what}"));
    let conversation: String = row.try_get("conversation_id").map_err(repo_error)?;
    let call_sid: Option<String> = row.try_get("call_sid").map_err(repo_error)?;
    let kind: String = row.try_get("kind").map_err(repo_error)?;
    let duration: Option<i32> = row.try_get("duration_secs").map_err(repo_error)?;
    Ok(CallRecord {
        id: CallId::from_uuid(id),
        org_id: OrgId::from_uuid(row.try_get("org_id").map_err(repo_error)?),
        contact_id: row
            .try_get::<Option<Uuid>, _>("contact_id")
            .map_err(repo_error)?
            .map(ContactId::from_uuid),
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
        started_at: row.try_get("started_at").map_err(repo_error)?,
        event_at: row.try_get("event_at").map_err(repo_error)?,
        received_at: row.try_get("received_at").map_err(repo_error)?,
    })
}

fn secret_from_row(row: &sqlx::postgres::PgRow) -> Result<SecretInfo, RepositoryError> {
    Ok(SecretInfo {
        id: SecretId::from_uuid(row.try_get("id").map_err(repo_error)?),
        org_id: OrgId::from_uuid(row.try_get("org_id").map_err(repo_error)?),
        created_at: row.try_get("created_at").map_err(repo_error)?,
        revoked_at: row.try_get("revoked_at").map_err(repo_error)?,
    })
}

#[async_trait]
impl Probe for PgStore {
    async fn ping(&self) -> Result<(), BoxError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: self.pool.options().get_max_connections(),
            open,
            in_use: open.saturating_sub(idle),
            waiting: Some(self.waiting.load(Ordering::Relaxed)),
        })
    }
}

#[async_trait]
impl OrganizationDirectory for PgStore {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.default_region, o.unknown_caller_name
               FROM organization_secrets s
               JOIN organizations o ON o.id = s.org_id
              WHERE s.digest = $1 AND s.revoked_at IS NULL",
        )
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(repo_error)?;
        row.as_ref().map(org_from_row).transpose()
    }
}

#[async_trait]
impl ContactDirectory for PgStore {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let row = sqlx::query(
            "SELECT id, first_name, last_name, phone_e164, updated_at
               FROM contacts
              WHERE org_id = $1 AND phone_e164 = $2
              ORDER BY updated_at DESC, id DESC
              LIMIT 1",
        )
        .bind(org.as_uuid())
        .bind(phone.as_str())
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(repo_error)?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("phone_e164").map_err(repo_error)?;
        Ok(Some(Contact {
            id: ContactId::from_uuid(row.try_get("id").map_err(repo_error)?),
            org_id: org,
            first_name: row.try_get("first_name").map_err(repo_error)?,
            last_name: row.try_get("last_name").map_err(repo_error)?,
            phone: E164::from_normalized(&stored)
                .map_err(|e| unexpected(format!("contact number: {e}")))?,
            updated_at: row
                .try_get::<DateTime<Utc>, _>("updated_at")
                .map_err(repo_error)?,
        }))
    }
}

#[async_trait]
impl OrganizationAdmin for PgStore {
    async fn create_organization(
        &self,
        name: &OrgName,
        default_region: Region,
    ) -> Result<Organization, AdminError> {
        let row = sqlx::query(concat!(
            "INSERT INTO organizations (name, default_region) VALUES ($1, $2)
                 RETURNING ",
            org_columns!()
        ))
        .bind(name.as_str())
        .bind(default_region.code())
        .fetch_one(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(org_from_row(&row)?)
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
        let row = sqlx::query(
            "INSERT INTO organization_secrets (org_id, digest) VALUES ($1, $2)
             RETURNING id, org_id, created_at, revoked_at",
        )
        .bind(org.as_uuid())
        .bind(digest.as_bytes().as_slice())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| admin_error(e, "organization"))?;
        Ok(secret_from_row(&row)?)
    }

    async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError> {
        if self.find_organization(org).await?.is_none() {
            return Err(AdminError::NotFound("organization"));
        }
        let rows = sqlx::query(
            "SELECT id, org_id, created_at, revoked_at FROM organization_secrets
              WHERE org_id = $1 ORDER BY created_at, id",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(rows.iter().map(secret_from_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        let row = sqlx::query(
            "UPDATE organization_secrets SET revoked_at = COALESCE(revoked_at, now())
              WHERE id = $1
             RETURNING id, org_id, created_at, revoked_at",
        )
        .bind(secret.as_uuid())
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
            " FROM organizations WHERE id = $1"
        ))
        .bind(org.as_uuid())
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
            "UPDATE organizations SET unknown_caller_name = $2 WHERE id = $1
             RETURNING ",
            org_columns!()
        ))
        .bind(org.as_uuid())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(repo_error)?;
        let row = row.ok_or(AdminError::NotFound("organization"))?;
        Ok(org_from_row(&row)?)
    }

    async fn set_webhook_secret(&self, org: OrgId, sealed: &[u8]) -> Result<(), AdminError> {
        let updated =
            sqlx::query("UPDATE organizations SET webhook_secret_sealed = $2 WHERE id = $1")
                .bind(org.as_uuid())
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
            return Err(AdminError::NotFound("organization"));
        }
        let rows = sqlx::query(concat!(
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
        Ok(rows.iter().map(call_from_row).collect::<Result<_, _>>()?)
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        let row = sqlx::query(concat!(
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
            org: org_from_row(&row)?,
            sealed_secret: row.try_get("webhook_secret_sealed").map_err(repo_error)?,
        }))
    }
}

/// One statement per batch: find the newest existing contact of each number, update those whose
/// data changed, insert the numbers not seen before, and count each kind.
const UPSERT_CONTACTS: &str = r"
WITH input AS (
    SELECT * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[])
             AS i(first_name, last_name, phone_raw, phone_e164)
), target AS (
    SELECT DISTINCT ON (c.phone_e164) c.id, c.phone_e164, c.first_name, c.last_name, c.phone_raw
      FROM contacts c
      JOIN input i ON c.phone_e164 = i.phone_e164
     WHERE c.org_id = $1
     ORDER BY c.phone_e164, c.updated_at DESC, c.id DESC
), changed AS (
    UPDATE contacts c
       SET first_name = i.first_name, last_name = i.last_name, phone_raw = i.phone_raw,
           updated_at = now()
      FROM target t
      JOIN input i ON i.phone_e164 = t.phone_e164
     WHERE c.id = t.id
       AND (t.first_name, t.last_name, t.phone_raw) IS DISTINCT FROM (i.first_name, i.last_name, i.phone_raw)
    RETURNING 1
), inserted AS (
    INSERT INTO contacts (org_id, first_name, last_name, phone_raw, phone_e164)
    SELECT $1, i.first_name, i.last_name, i.phone_raw, i.phone_e164
      FROM input i
     WHERE NOT EXISTS (SELECT 1 FROM target t WHERE t.phone_e164 = i.phone_e164)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM changed)  AS updated,
       (SELECT count(*) FROM target)   AS matched";

#[async_trait]
impl ContactImport for PgStore {
    #[tracing::instrument(name = "postgres.upsert_contacts", skip_all, fields(org_id = %org, batch = contacts.len()))]
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        let mut first = Vec::with_capacity(contacts.len());
        let mut last = Vec::with_capacity(contacts.len());
        let mut raw = Vec::with_capacity(contacts.len());
        let mut e164 = Vec::with_capacity(contacts.len());
        for c in contacts {
            first.push(c.first_name.as_deref());
            last.push(c.last_name.as_deref());
            raw.push(c.phone_raw.as_str());
            e164.push(c.phone.as_str());
        }
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        // Two imports into one organization at once would both insert a new number; take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(org.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        let row = sqlx::query(UPSERT_CONTACTS)
            .bind(org.as_uuid())
            .bind(&first)
            .bind(&last)
            .bind(&raw)
            .bind(&e164)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| admin_error(e, "organization"))?;
        tx.commit().await.map_err(repo_error)?;
        let count = |name: &str| -> Result<u64, AdminError> {
            let n: i64 = row.try_get(name).map_err(repo_error)?;
            Ok(u64::try_from(n).unwrap_or_default())
        };
        let matched = count("matched")?;
        let updated = count("updated")?;
        Ok(UpsertSummary {
            inserted: count("inserted")?,
            updated,
            unchanged: matched - updated,
        })
    }
}
