//! Redis adapter: the call-context cache, one JSON string per conversation with a TTL.
//!
//! Key: `{prefix}call:{conversation_id}` (prefix default `relay:`). Each operation is a single-key
//! command (`SET .. EX`, `GET`), so the keys shard cleanly on a Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use relay_domain::{CallContext, ConversationId};
use relay_ports::{BoxError, CacheError, CallContextCache, PoolStats, Probe};
use secrecy::{ExposeSecret, SecretString};

#[cfg(feature = "test-helpers")]
pub mod testing;

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// How long to wait for a connection (free, new or recycled) before failing.
    pub timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            timeout: Duration::from_secs(1),
        }
    }
}

/// The Redis URL could not be read.
#[derive(Debug, thiserror::Error)]
#[error("REDIS_URL is not a valid Redis URL")]
pub struct InvalidUrl;

/// The call-context cache in Redis.
#[derive(Clone)]
pub struct RedisCache {
    pool: Pool,
    prefix: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache whose connections open on first use: the service starts while Redis is down and
    /// recovers by itself when it is back.
    ///
    /// # Errors
    /// [`InvalidUrl`] when the URL cannot be parsed (the URL itself is never echoed).
    pub fn new(
        url: &SecretString,
        prefix: &str,
        settings: PoolSettings,
    ) -> Result<Self, InvalidUrl> {
        // Parse first: deadpool would only notice a bad URL on first use.
        redis::parse_redis_url(url.expose_secret()).ok_or(InvalidUrl)?;
        let mut config = Config::from_url(url.expose_secret());
        config.pool = Some(PoolConfig {
            max_size: settings.max_size,
            timeouts: Timeouts {
                wait: Some(settings.timeout),
                create: Some(settings.timeout),
                recycle: Some(settings.timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|_| InvalidUrl)?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
        })
    }

    /// The key a conversation's context is stored under.
    pub fn key(&self, conversation_id: &ConversationId) -> String {
        format!("{}call:{}", self.prefix, conversation_id.as_str())
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pool, for raw access (tests, health checks).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, CacheError> {
        self.pool
            .get()
            .await
            .map_err(|e| CacheError::Unavailable(Box::new(e)))
    }
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(Box::new(e))
}

#[async_trait]
impl CallContextCache for RedisCache {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        let json = serde_json::to_string(context).map_err(|e| CacheError::Corrupt(Box::new(e)))?;
        let key = self.key(&context.conversation_id);
        let mut conn = self.connection().await?;
        // One SET with EX: the entry and its expiry land together, or not at all.
        conn.set_ex::<_, _, ()>(key, json, ttl.as_secs().max(1))
            .await
            .map_err(unavailable)
    }

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<CallContext>, CacheError> {
        let mut conn = self.connection().await?;
        let raw: Option<String> = conn
            .get(self.key(conversation_id))
            .await
            .map_err(unavailable)?;
        raw.map(|json| serde_json::from_str(&json).map_err(|e| CacheError::Corrupt(Box::new(e))))
            .transpose()
    }
}

#[async_trait]
impl Probe for RedisCache {
    async fn ping(&self) -> Result<(), BoxError> {
        let mut conn = self.pool.get().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let status = self.pool.status();
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: clamp(status.max_size),
            open: clamp(status.size),
            in_use: clamp(status.size.saturating_sub(status.available)),
            waiting: Some(clamp(status.waiting)),
        })
    }
}
