//! Which adapters back the ports: chosen by configuration only, in this one place.
//!
//! `DATABASE_URL`'s scheme picks Postgres or the embedded SQLite file; `REDIS_URL` picks one Redis,
//! `REDIS_CLUSTER_URLS` a Redis Cluster, neither the in-process cache.

use std::sync::Arc;

use anyhow::Context as _;
use relay_memory_cache::MemoryCache;
use relay_ports::{Cache, Store};
use relay_postgres::{PgStore, PoolSettings as PgPoolSettings};
use relay_redis::{PoolSettings as RedisPoolSettings, RedisCache};
use relay_sqlite::SqliteStore;

use crate::commands::Failure;
use crate::config::{Backend, ConfigError, RedisTarget, ServeConfig, StoreConfig};

/// An opened store and what the service needs to know about it.
pub(crate) struct Opened {
    /// Also its `Probe`, for readiness and pool metrics.
    pub(crate) store: Arc<dyn Store>,
    /// `postgres` or `sqlite`, for the start-up log and metric labels.
    pub(crate) name: &'static str,
    /// The embedded file was created just now (first start): seed the demo.
    pub(crate) fresh: bool,
    /// For warming up a Postgres connection at start.
    pub(crate) postgres: Option<PgStore>,
}

impl Opened {
    fn postgres(store: PgStore) -> Self {
        Self {
            store: Arc::new(store.clone()),
            name: "postgres",
            fresh: false,
            postgres: Some(store),
        }
    }
}

fn pg_settings(config: &StoreConfig) -> PgPoolSettings {
    PgPoolSettings {
        max_connections: config.max_connections,
        ..PgPoolSettings::default()
    }
}

/// The store for an admin command: connected now, so a bad URL or an unreachable server fails at
/// once. The embedded file is created and migrated if needed (zero setup).
pub(crate) async fn for_command(config: &StoreConfig) -> Result<Opened, Failure> {
    match config.backend {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, pg_settings(config))
                .await
                .context("cannot connect to Postgres at DATABASE_URL")?;
            Ok(Opened::postgres(store))
        }
        Backend::Sqlite => open_sqlite(config).await,
    }
}

/// The store for `serve`. Postgres connects on first use, so the service starts (and answers
/// `{}`) while it is down and recovers by itself; the embedded file is opened, created and
/// migrated now.
pub(crate) async fn for_serve(config: &StoreConfig) -> Result<Opened, Failure> {
    match config.backend {
        Backend::Postgres => {
            let store =
                PgStore::connect_lazy(&config.database_url, pg_settings(config)).map_err(|e| {
                    ConfigError::Invalid {
                        name: "DATABASE_URL",
                        reason: e.to_string(),
                    }
                })?;
            Ok(Opened::postgres(store))
        }
        Backend::Sqlite => open_sqlite(config).await,
    }
}

async fn open_sqlite(config: &StoreConfig) -> Result<Opened, Failure> {
    let (store, fresh) = SqliteStore::open(&config.database_url, true)
        .await
        .context("cannot open the SQLite database at DATABASE_URL")?;
    store
        .migrate()
        .await
        .context("cannot migrate the SQLite database")?;
    Ok(Opened {
        store: Arc::new(store),
        name: "sqlite",
        fresh,
        postgres: None,
    })
}

/// Applies the store's migrations (creating the Postgres database first if asked).
pub(crate) async fn migrate(config: &StoreConfig, create_database: bool) -> Result<(), Failure> {
    match config.backend {
        Backend::Postgres => {
            if create_database
                && PgStore::create_database_if_missing(&config.database_url)
                    .await
                    .context("cannot create the database named in DATABASE_URL")?
            {
                tracing::warn!("created the database named in DATABASE_URL");
            }
            let opened = for_command(config).await?;
            if let Some(pg) = opened.postgres {
                pg.migrate().await.context("migration failed")?;
            }
        }
        // Opening the embedded store migrates it.
        Backend::Sqlite => drop(open_sqlite(config).await?),
    }
    Ok(())
}

/// The chosen call-context cache.
pub(crate) struct OpenedCache {
    /// Also its `Probe`, for readiness and pool metrics.
    pub(crate) cache: Arc<dyn Cache>,
    /// `redis` or `in-process`, for the start-up log and metric labels.
    pub(crate) name: &'static str,
    /// For warming up a Redis connection at start.
    pub(crate) redis: Option<RedisCache>,
}

/// The call-context cache: Redis when `REDIS_URL` or `REDIS_CLUSTER_URLS` is set, else in this
/// process.
pub(crate) fn cache(config: &ServeConfig) -> Result<OpenedCache, Failure> {
    let Some(target) = &config.redis else {
        return Ok(OpenedCache {
            cache: Arc::new(MemoryCache::default()),
            name: "in-process",
            redis: None,
        });
    };
    let settings = RedisPoolSettings {
        max_size: config.redis_pool_size,
        ..RedisPoolSettings::default()
    };
    let (redis, name) = match target {
        RedisTarget::Single(url) => (
            RedisCache::new(url, &config.redis_key_prefix, settings),
            "REDIS_URL",
        ),
        RedisTarget::Cluster(urls) => (
            RedisCache::cluster(urls, &config.redis_key_prefix, settings),
            "REDIS_CLUSTER_URLS",
        ),
    };
    let redis = redis.map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    Ok(OpenedCache {
        cache: Arc::new(redis.clone()),
        name: "redis",
        redis: Some(redis),
    })
}
