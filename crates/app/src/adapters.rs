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
    /// Opens the webhook hot path's own connections; `None`: the shared adapters serve it.
    pub per_worker: Option<OpenPerWorker>,
}

/// Opens, on the calling thread, a new Postgres store and Redis cache for the webhook's hot path
/// (the contact lookup and the context write). Each HTTP worker calls it once when it starts, so
/// the sockets are registered with, and their readiness woken on, that worker's own runtime: a
/// request's I/O never hands off to another thread. `None` in a field: the shared adapter serves
/// (the embedded file, the in-process cache: nothing to gain).
pub type OpenPerWorker = Arc<dyn Fn() -> WorkerAdapters + Send + Sync>;

/// One HTTP worker's own adapters ([`OpenPerWorker`]).
pub struct WorkerAdapters {
    /// Its own Postgres pool.
    pub store: Option<Arc<dyn Store>>,
    /// Its own Redis pool.
    pub cache: Option<Arc<dyn Cache>>,
}

impl std::fmt::Debug for WorkerAdapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerAdapters")
            .field("store", &self.store.is_some())
            .field("cache", &self.cache.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field("store", &self.store_kind)
            .field("cache", &self.cache_kind)
            .field("outbox", &self.outbox.is_some())
            .field("fresh", &self.fresh)
            .field("per_worker", &self.per_worker.is_some())
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
            Backend::Postgres => (
                Arc::new(postgres(
                    &config.store,
                    pg_settings(config, PoolShare::Shared),
                )?) as Arc<dyn Store>,
                StoreKind::Postgres,
                false,
            ),
            Backend::Sqlite => {
                let (store, fresh) = open_sqlite(&config.store).await?;
                (Arc::new(store) as Arc<dyn Store>, StoreKind::Sqlite, fresh)
            }
        };
        let redis = config
            .redis
            .as_ref()
            .map(|target| redis_cache(target, config, redis_settings(config, PoolShare::Shared)))
            .transpose()?;
        let per_worker = per_worker(config);
        let Some(redis) = redis else {
            return Ok(Self {
                store,
                store_kind,
                cache: Arc::new(MemoryCache::default()),
                cache_kind: CacheKind::InProcess,
                outbox: None,
                fresh,
                per_worker,
            });
        };
        let cluster = redis.is_cluster();
        Ok(Self {
            store,
            store_kind,
            cache: Arc::new(redis.clone()),
            cache_kind: CacheKind::Redis { cluster },
            outbox: Some(Arc::new(redis)),
            fresh,
            per_worker,
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

/// Which pool a connection budget is for: the shared one (organization lookups, post-call,
/// management, background work) or one HTTP worker's (the webhook's hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolShare {
    Shared,
    Worker,
}

/// How `total` connections are shared out when `workers` HTTP workers each have a pool of their
/// own beside the shared one: each gets an equal part (at least one), the shared pool the rest
/// (at least one). `DATABASE_MAX_CONNECTIONS` and `REDIS_POOL_SIZE` thus stay the most a
/// replica opens, unless they are smaller than the number of pools.
fn pool_share(total: u32, workers: u32, share: PoolShare) -> u32 {
    let per_worker = (total / (workers + 1)).max(1);
    match share {
        PoolShare::Worker => per_worker,
        PoolShare::Shared => total.saturating_sub(per_worker * workers).max(1),
    }
}

/// The HTTP workers that get pools of their own: `HTTP_WORKERS`, or one per CPU; none when
/// neither dependency is a network service.
fn pooled_workers(config: &ServeConfig) -> u32 {
    let networked = config.store.backend == Backend::Postgres || config.redis.is_some();
    if !networked {
        return 0;
    }
    let workers = config
        .http_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    u32::try_from(workers).unwrap_or(u32::MAX)
}

fn pg_settings(config: &ServeConfig, share: PoolShare) -> PgPoolSettings {
    let total = config.store.max_connections;
    let max_connections = if config.store.backend == Backend::Postgres {
        pool_share(total, pooled_workers(config), share)
    } else {
        total
    };
    PgPoolSettings {
        max_connections,
        ..PgPoolSettings::default()
    }
}

fn redis_settings(config: &ServeConfig, share: PoolShare) -> RedisPoolSettings {
    let total = u32::try_from(config.redis_pool_size).unwrap_or(u32::MAX);
    let size = pool_share(total, pooled_workers(config), share);
    RedisPoolSettings {
        max_size: usize::try_from(size).unwrap_or(1),
        ..RedisPoolSettings::default()
    }
}

/// Postgres at `DATABASE_URL`, connecting on first use.
fn postgres(config: &StoreConfig, settings: PgPoolSettings) -> Result<PgStore, Failure> {
    Ok(
        PgStore::connect_lazy(&config.database_url, settings).map_err(|e| {
            ConfigError::Invalid {
                name: "DATABASE_URL",
                reason: e.to_string(),
            }
        })?,
    )
}

/// Each HTTP worker's own Postgres and Redis pools ([`pool_share`]); `None` when neither is a
/// network service. The URLs were checked when the shared adapters were made, so a worker's
/// cannot fail; if one did, the worker would use the shared adapter.
fn per_worker(config: &ServeConfig) -> Option<OpenPerWorker> {
    if pooled_workers(config) == 0 {
        return None;
    }
    let pg = pg_settings(config, PoolShare::Worker);
    let redis_pool = redis_settings(config, PoolShare::Worker);
    let config = config.clone();
    Some(Arc::new(move || WorkerAdapters {
        store: (config.store.backend == Backend::Postgres)
            .then(|| postgres(&config.store, pg).ok())
            .flatten()
            .map(|s| Arc::new(s) as Arc<dyn Store>),
        cache: config
            .redis
            .as_ref()
            .and_then(|target| redis_cache(target, &config, redis_pool).ok())
            .map(|c| Arc::new(c) as Arc<dyn Cache>),
    }))
}

fn redis_cache(
    target: &RedisTarget,
    config: &ServeConfig,
    settings: RedisPoolSettings,
) -> Result<RedisCache, Failure> {
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
    let settings = PgPoolSettings {
        max_connections: config.max_connections,
        ..PgPoolSettings::default()
    };
    Ok(PgStore::connect(&config.database_url, settings)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_is_shared_out_among_the_workers_and_the_shared_pool() {
        // (total, workers) -> (each worker's, the shared pool's)
        for (total, workers, worker, shared) in [
            (10, 2, 3, 4),
            (16, 2, 5, 6),
            (10, 1, 5, 5),
            (10, 8, 1, 2),
            // Fewer connections than pools: one each, the only case above the budget.
            (1, 2, 1, 1),
            (10, 0, 10, 10),
        ] {
            assert_eq!(
                pool_share(total, workers, PoolShare::Worker),
                worker,
                "{total} among {workers}"
            );
            assert_eq!(
                pool_share(total, workers, PoolShare::Shared),
                shared,
                "{total} among {workers}"
            );
            if total > workers {
                assert!(
                    worker * workers + shared <= total,
                    "{total} among {workers}"
                );
            }
        }
    }
}
