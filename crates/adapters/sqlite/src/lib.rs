//! Embedded SQLite adapter: the same ports as the Postgres adapter, in one file on disk, for a
//! zero-setup local run or a small single-box deployment. Proven equal to Postgres by the ports'
//! conformance suite.
//!
//! This module holds the store, its pool (open, migrate) and the error translation; each port is
//! implemented in a module of its own, and `rows` turns the rows they read into domain values
//! through the domain's `from_stored` constructors (shared with the Postgres adapter).

use std::str::FromStr;
use std::time::Duration;

use relay_ports::RepositoryError;
use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

mod calls;
mod contact_admin;
mod contacts;
mod management;
mod memory;
mod organizations;
mod probe;
mod rows;

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

    /// The pool, for raw fixture SQL in tests (`test-helpers`: the driver stays behind the ports
    /// everywhere else).
    #[cfg(feature = "test-helpers")]
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

/// A stored row the domain (or `rows`' time reading) refuses: data this service cannot read.
fn unexpected(e: impl std::error::Error + Send + Sync + 'static) -> RepositoryError {
    RepositoryError::Unexpected(Box::new(e))
}
