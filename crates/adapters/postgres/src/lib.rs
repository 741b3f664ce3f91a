//! Postgres adapter: implements the organization, contact, admin and management ports with sqlx.
//!
//! Queries are checked at run time (no compile-time database needed to build); the adapter tests
//! run every query against a real Postgres. Driver errors become port errors here, at the seam.
//!
//! This module holds the store, its pool (connect, migrate) and the error translation; each port
//! is implemented in a module of its own, and `rows` turns the rows they read into domain values
//! through the domain's `from_stored` constructors (shared with the SQLite adapter).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use relay_domain::StoredDataError;
use relay_ports::{AdminError, Entity, RepositoryError};
use secrecy::{ExposeSecret, SecretString};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

mod calls;
mod contact_admin;
mod contacts;
mod management;
mod memory;
mod organizations;
mod probe;
mod rows;
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

/// Organizations, secrets, contacts, call records, management keys and the audit trail in
/// Postgres.
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
        Ok(Self::with_pool(pool))
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
        Ok(Self::with_pool(pool))
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

    fn with_pool(pool: PgPool) -> Self {
        Self {
            pool,
            waiting: Arc::default(),
        }
    }

    /// Wraps an existing pool (`test-helpers`: tests build their own).
    #[cfg(feature = "test-helpers")]
    pub fn from_pool(pool: PgPool) -> Self {
        Self::with_pool(pool)
    }

    /// The pool, for raw fixture SQL and for holding connections in tests (`test-helpers`: the
    /// driver stays behind the ports everywhere else).
    #[cfg(feature = "test-helpers")]
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

fn admin_error(e: sqlx::Error, missing: Entity) -> AdminError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return AdminError::NotFound(missing);
    }
    AdminError::Repository(repo_error(e))
}

/// The unique index that keeps an external id to one contact of an organization.
const EXTERNAL_ID_INDEX: &str = "contacts_org_external_id_idx";

/// Translates the error of a statement writing a contact: its external id taken by another
/// contact of the organization, or (an insert's) organization missing.
fn contact_write_error(e: sqlx::Error) -> AdminError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
        && db.constraint() == Some(EXTERNAL_ID_INDEX)
    {
        return AdminError::ExternalIdTaken;
    }
    admin_error(e, Entity::Organization)
}

/// A stored row the domain refuses: data this service cannot read.
fn unexpected(e: StoredDataError) -> RepositoryError {
    RepositoryError::Unexpected(Box::new(e))
}
