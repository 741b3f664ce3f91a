//! Which adapters back the ports: chosen by configuration only, in this one place.
//!
//! `DATABASE_URL`'s scheme picks Postgres or the embedded SQLite file; `REDIS_URL` picks one Redis,
//! `REDIS_CLUSTER_URLS` a Redis Cluster, neither the in-process cache. The post-call outbox is
//! the Redis one when there is a Redis (a process's memory is not durable), else none.

use std::sync::Arc;

use anyhow::Context as _;
use relay_memory_cache::MemoryCache;
use relay_ports::{Cache, DeliveryOutbox, Store};
use relay_postgres::{PgStore, PoolSettings as PgPoolSettings};
use relay_redis::{PoolSettings as RedisPoolSettings, RedisCache};
use relay_sqlite::SqliteStore;

use crate::config::{Backend, ConfigError, RedisTarget, ServeConfig, StoreConfig};
use crate::failure::Failure;

/// Which store backs the organization, contact and call-log ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A Postgres server.
    Postgres,
    /// The embedded SQLite file.
    Sqlite,
}

impl StoreKind {
    /// The metric label and log name: `postgres` or `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Which cache backs the call-context port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Redis, one server or a cluster.
    Redis {
        /// A Redis Cluster.
        cluster: bool,
    },
    /// This process's memory.
    InProcess,
}

impl CacheKind {
    /// The metric label and log name: `redis` or `in-process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::InProcess => "in-process",
        }
    }
}

/// The adapters the service runs on, behind their ports.
pub struct Adapters {
    /// Organizations, contacts, call records; also its `Probe`.
    pub store: Arc<dyn Store>,
    /// Which store it is.
    pub store_kind: StoreKind,
    /// Call contexts; also its `Probe`.
    pub cache: Arc<dyn Cache>,
    /// Which cache it is.
    pub cache_kind: CacheKind,
    /// Where post-call deliveries wait while the store is down; `None`: they are refused.
    pub outbox: Option<Arc<dyn DeliveryOutbox>>,
    /// The embedded file was created just now (first start): seed the demo.
    pub fresh: bool,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field("store", &self.store_kind)
            .field("cache", &self.cache_kind)
            .field("outbox", &self.outbox.is_some())
            .field("fresh", &self.fresh)
            .finish_non_exhaustive()
    }
}

impl Adapters {
    /// The adapters `serve` runs on. Postgres and Redis connect on first use, so the service
    /// starts (and answers `{}`) while they are down and recovers by itself; the embedded file
    /// is opened, created and migrated now.
    ///
    /// # Errors
    /// A URL that does not parse ([`Failure::Config`]); the embedded file cannot be opened.
    pub async fn open(config: &ServeConfig) -> Result<Self, Failure> {
        let (store, store_kind, fresh) = match config.store.backend {
            Backend::Postgres => {
                let store =
                    PgStore::connect_lazy(&config.store.database_url, pg_settings(&config.store))
                        .map_err(|e| ConfigError::Invalid {
                        name: "DATABASE_URL",
                        reason: e.to_string(),
                    })?;
                (
                    Arc::new(store) as Arc<dyn Store>,
                    StoreKind::Postgres,
                    false,
                )
            }
            Backend::Sqlite => {
                let (store, fresh) = open_sqlite(&config.store).await?;
                (Arc::new(store) as Arc<dyn Store>, StoreKind::Sqlite, fresh)
            }
        };
        let Some(target) = &config.redis else {
            return Ok(Self {
                store,
                store_kind,
                cache: Arc::new(MemoryCache::default()),
                cache_kind: CacheKind::InProcess,
                outbox: None,
                fresh,
            });
        };
        let redis = redis(target, config)?;
        let cluster = redis.is_cluster();
        Ok(Self {
            store,
            store_kind,
            cache: Arc::new(redis.clone()),
            cache_kind: CacheKind::Redis { cluster },
            outbox: Some(Arc::new(redis)),
            fresh,
        })
    }

    /// Opens one connection to each dependency in the background, so the first call does not
    /// pay for the handshakes. Failures are only logged: a dependency that is down must not stop
    /// the start.
    pub fn warm_up(&self) {
        let store = Arc::clone(&self.store);
        let store_kind = self.store_kind;
        tokio::spawn(async move {
            if let Err(error) = store.ping().await {
                tracing::warn!(%error, store = store_kind.as_str(), "the store is not reachable yet; webhook calls answer {{}} until it is");
            }
        });
        let cache = Arc::clone(&self.cache);
        let cache_kind = self.cache_kind;
        tokio::spawn(async move {
            if let Err(error) = cache.ping().await {
                tracing::warn!(%error, cache = cache_kind.as_str(), "the cache is not reachable yet; call contexts are retried in the background");
            }
        });
    }
}

fn pg_settings(config: &StoreConfig) -> PgPoolSettings {
    PgPoolSettings {
        max_connections: config.max_connections,
        ..PgPoolSettings::default()
    }
}

fn redis(target: &RedisTarget, config: &ServeConfig) -> Result<RedisCache, Failure> {
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
    Ok(redis.map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?)
}

/// The store for an admin command: connected now, so a bad URL or an unreachable server fails at
/// once. The embedded file is created and migrated if needed (zero setup).
///
/// # Errors
/// The store cannot be reached or opened.
pub async fn for_command(config: &StoreConfig) -> Result<Arc<dyn Store>, Failure> {
    Ok(match config.backend {
        Backend::Postgres => Arc::new(connect_postgres(config).await?),
        Backend::Sqlite => Arc::new(open_sqlite(config).await?.0),
    })
}

async fn connect_postgres(config: &StoreConfig) -> Result<PgStore, Failure> {
    Ok(PgStore::connect(&config.database_url, pg_settings(config))
        .await
        .context("cannot connect to Postgres at DATABASE_URL")?)
}

/// The embedded store, opened (created if missing) and migrated; `true` when created now.
async fn open_sqlite(config: &StoreConfig) -> Result<(SqliteStore, bool), Failure> {
    let (store, fresh) = SqliteStore::open(&config.database_url, true)
        .await
        .context("cannot open the SQLite database at DATABASE_URL")?;
    store
        .migrate()
        .await
        .context("cannot migrate the SQLite database")?;
    Ok((store, fresh))
}

/// Applies the store's migrations (creating the Postgres database first if asked).
///
/// # Errors
/// The database cannot be created, reached or migrated.
pub async fn migrate(config: &StoreConfig, create_database: bool) -> Result<(), Failure> {
    match config.backend {
        Backend::Postgres => {
            if create_database
                && PgStore::create_database_if_missing(&config.database_url)
                    .await
                    .context("cannot create the database named in DATABASE_URL")?
            {
                tracing::warn!("created the database named in DATABASE_URL");
            }
            connect_postgres(config)
                .await?
                .migrate()
                .await
                .context("migration failed")?;
        }
        // Opening the embedded store migrates it.
        Backend::Sqlite => drop(open_sqlite(config).await?),
    }
    Ok(())
}
