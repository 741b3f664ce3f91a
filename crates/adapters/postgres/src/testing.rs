//! A fresh, migrated database per test (`test-helpers` feature).
//!
//! Tests read `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) only to reach
//! the server; each test gets its own database `relay_test_<uuid>`, dropped when the [`TestDb`]
//! is dropped, also when the test panics. An unreachable server fails the test loudly.

use std::str::FromStr;

use secrecy::SecretString;
pub use sqlx;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

use crate::PgStore;

/// The server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    admin: PgConnectOptions,
    url: String,
    store: PgStore,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    ///
    /// # Panics
    /// When Postgres is unreachable or the database cannot be created: the test must not pass
    /// without a database.
    pub async fn create() -> Self {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let admin = PgConnectOptions::from_str(&server_url)
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a Postgres URL: {e}"));
        let name = format!("relay_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "tests need Postgres at DATABASE_URL (default {DEFAULT_TEST_DATABASE_URL}): {e}"
                )
            });
        // `name` is our own `relay_test_<uuid>`: nothing from outside reaches this SQL.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        conn.close().await.ok();

        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
        let store = PgStore::from_pool(pool);
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrations failed: {e}"));
        Self {
            name,
            admin,
            url,
            store,
        }
    }

    /// The store on this database.
    pub fn store(&self) -> PgStore {
        self.store.clone()
    }

    /// The pool on this database, for raw fixture SQL.
    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// The URL of this database, for a child process's `DATABASE_URL`.
    pub fn url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop can't await, and it may run inside a runtime that is shutting down: do the
        // teardown on a thread of its own and wait for it, so the database really goes away.
        let name = self.name.clone();
        let admin = self.admin.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // The pool lives on the test's runtime, which this thread blocks: don't touch it.
            // FORCE ends its connections from the server side.
            runtime
                .block_on(async move {
                    let mut conn = PgConnection::connect_with(&admin).await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("test database {} was not dropped: {dropped:?}", self.name);
        }
    }
}
