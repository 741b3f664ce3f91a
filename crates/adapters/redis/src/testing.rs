//! Per-test isolation on the shared Redis (`test-helpers` feature).
//!
//! Tests read `REDIS_URL` (default `redis://127.0.0.1:6379`); each test gets its own key prefix
//! `relay-test:<uuid>:`, and every key under it is deleted when the [`TestRedis`] is dropped, also
//! when the test panics. An unreachable Redis fails the test loudly.

pub use deadpool_redis::redis;
use secrecy::SecretString;

use crate::{PoolSettings, RedisCache};

/// The server tests use when `REDIS_URL` is not set.
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix that exists for one test.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
    cache: RedisCache,
}

impl TestRedis {
    /// Picks a fresh prefix and checks that Redis answers.
    ///
    /// # Panics
    /// When Redis is unreachable: the test must not pass without it.
    pub async fn create() -> Self {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned());
        let prefix = format!("relay-test:{}:", uuid::Uuid::new_v4().simple());
        let cache = RedisCache::new(
            &SecretString::from(url.clone()),
            &prefix,
            PoolSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut conn = cache.pool().get().await.unwrap_or_else(|e| {
            panic!("tests need Redis at REDIS_URL (default {DEFAULT_TEST_REDIS_URL}): {e}")
        });
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("Redis PING");
        assert_eq!(pong, "PONG");
        Self { url, prefix, cache }
    }

    /// The cache under this test's prefix.
    pub fn cache(&self) -> RedisCache {
        self.cache.clone()
    }

    /// This test's key prefix, for a child process's `REDIS_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis URL, for a child process's `REDIS_URL`.
    pub fn url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }

    /// A plain connection for raw commands in assertions.
    pub async fn connection(&self) -> deadpool_redis::Connection {
        self.cache.pool().get().await.expect("Redis connection")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        let cleaned = std::thread::spawn(move || -> redis::RedisResult<()> {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_connection()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
            }
            Ok(())
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) && !std::thread::panicking() {
            panic!(
                "test keys under {} were not deleted: {cleaned:?}",
                self.prefix
            );
        }
    }
}
