//! Per-test isolation on the shared Redis (`test-helpers` feature).
//!
//! Tests read `REDIS_URL` (default `redis://127.0.0.1:6379`) and, for the cluster, the
//! comma-separated `REDIS_CLUSTER_URLS` (default the three loopback masters that
//! `scripts/redis-cluster.sh` starts on ports 7101–7103). Each test gets its own key prefix
//! `relay-test:<uuid>:`, and every key under it is deleted when the [`TestRedis`] is dropped, also
//! when the test panics. An unreachable Redis fails the test loudly.

pub use deadpool_redis::redis;
use secrecy::SecretString;

use crate::{PoolSettings, RedisCache};

/// The server tests use when `REDIS_URL` is not set.
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The cluster tests use when `REDIS_CLUSTER_URLS` is not set.
pub const DEFAULT_TEST_REDIS_CLUSTER_URLS: &str =
    "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103";

/// A key prefix that exists for one test.
#[derive(Debug)]
pub struct TestRedis {
    /// One URL per node whose keys are cleaned up (every master the cluster reports).
    urls: Vec<String>,
    prefix: String,
    cache: RedisCache,
}

fn fresh_prefix() -> String {
    format!("relay-test:{}:", uuid::Uuid::new_v4().simple())
}

impl TestRedis {
    /// Picks a fresh prefix on the single Redis and checks that it answers.
    ///
    /// # Panics
    /// When Redis is unreachable: the test must not pass without it.
    pub async fn create() -> Self {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned());
        let prefix = fresh_prefix();
        let cache = RedisCache::new(
            &SecretString::from(url.clone()),
            &prefix,
            PoolSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Self::checked(
            vec![url],
            prefix,
            cache,
            "REDIS_URL",
            DEFAULT_TEST_REDIS_URL,
        )
        .await
    }

    /// Picks a fresh prefix on the Redis Cluster and checks that every master answers.
    ///
    /// # Panics
    /// When the cluster is unreachable (start it with `scripts/redis-cluster.sh start`).
    pub async fn create_cluster() -> Self {
        let urls: Vec<String> = std::env::var("REDIS_CLUSTER_URLS")
            .unwrap_or_else(|_| DEFAULT_TEST_REDIS_CLUSTER_URLS.to_owned())
            .split(',')
            .map(|u| u.trim().to_owned())
            .collect();
        let prefix = fresh_prefix();
        let secrets: Vec<SecretString> = urls.iter().cloned().map(SecretString::from).collect();
        let cache = RedisCache::cluster(&secrets, &prefix, PoolSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut redis = Self::checked(
            urls,
            prefix,
            cache,
            "REDIS_CLUSTER_URLS",
            DEFAULT_TEST_REDIS_CLUSTER_URLS,
        )
        .await;
        // Clean up and count on every master the cluster reports, whatever seeds were given.
        let nodes: String = redis
            .cache
            .query(redis::cmd("CLUSTER").arg("NODES"))
            .await
            .expect("CLUSTER NODES");
        redis.urls = masters(&nodes);
        assert!(
            !redis.urls.is_empty(),
            "no master in CLUSTER NODES:\n{nodes}"
        );
        redis
    }

    async fn checked(
        urls: Vec<String>,
        prefix: String,
        cache: RedisCache,
        variable: &str,
        default: &str,
    ) -> Self {
        let pong: String = cache.query(&redis::cmd("PING")).await.unwrap_or_else(|e| {
            panic!(
                "tests need Redis at {variable} (default {default}): {e}: {:?}",
                std::error::Error::source(&e)
            )
        });
        assert_eq!(pong, "PONG");
        Self {
            urls,
            prefix,
            cache,
        }
    }

    /// The cache under this test's prefix.
    pub fn cache(&self) -> RedisCache {
        self.cache.clone()
    }

    /// This test's key prefix, for a child process's `REDIS_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis URL (the first master's, on a cluster), for a child process's `REDIS_URL`.
    pub fn url(&self) -> SecretString {
        SecretString::from(self.urls[0].clone())
    }

    /// Every master's URL, comma-separated, for a child process's `REDIS_CLUSTER_URLS`.
    pub fn cluster_urls(&self) -> SecretString {
        SecretString::from(self.urls.join(","))
    }

    /// How many keys under this test's prefix each master holds (one count per master).
    ///
    /// # Panics
    /// When a node cannot be reached.
    pub fn keys_per_node(&self) -> Vec<usize> {
        let pattern = format!("{}*", self.prefix);
        let urls = self.urls.clone();
        std::thread::spawn(move || {
            urls.iter()
                .map(|url| {
                    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
                    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
                    Ok(keys.len())
                })
                .collect::<redis::RedisResult<Vec<usize>>>()
        })
        .join()
        .expect("count thread")
        .expect("count keys on each node")
    }
}

/// `redis://host:port` of each master in a `CLUSTER NODES` answer
/// (`<id> <host:port@bus> <flags> ...`, flags such as `myself,master`).
fn masters(nodes: &str) -> Vec<String> {
    let mut masters: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            is_master.then(|| format!("redis://{}", address.split('@').next().unwrap_or(address)))
        })
        .collect();
    masters.sort();
    masters
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let urls = self.urls.clone();
        let pattern = format!("{}*", self.prefix);
        // Each node deletes only the keys it holds (on a cluster a node refuses others' keys).
        let cleaned = std::thread::spawn(move || -> redis::RedisResult<()> {
            for url in urls {
                let mut conn = redis::Client::open(url)?.get_connection()?;
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
                for key in keys {
                    redis::cmd("DEL").arg(key).query::<()>(&mut conn)?;
                }
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
