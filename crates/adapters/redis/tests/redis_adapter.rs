//! The Redis adapter against a real Redis, a unique key prefix per test: the cache port's
//! conformance suite, then what is particular to Redis (key, JSON shape, exact TTL).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use relay_domain::{CallContext, ContactId, ConversationId, E164, OrgId};
use relay_ports::conformance::CacheFixture;
use relay_ports::{CacheError, CallContextCache};
use relay_redis::testing::TestRedis;
use relay_redis::{PoolSettings, RedisCache};
use secrecy::SecretString;

fn context(conversation: &str, contact: Option<u128>) -> CallContext {
    CallContext {
        conversation_id: ConversationId::parse(conversation).unwrap(),
        org_id: OrgId::from_uuid(uuid::Uuid::from_u128(1)),
        contact_id: contact.map(|c| ContactId::from_uuid(uuid::Uuid::from_u128(c))),
        caller_number: Some(E164::from_normalized("+14165550100").unwrap()),
        called_number: Some("+12362320246".into()),
        agent_id: Some("agent_1".into()),
        received_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
    }
}

struct RedisFixture {
    redis: TestRedis,
    cache: RedisCache,
}

impl RedisFixture {
    async fn new() -> Self {
        let redis = TestRedis::create().await;
        let cache = redis.cache();
        Self { redis, cache }
    }
}

impl CacheFixture for RedisFixture {
    fn cache(&self) -> &dyn CallContextCache {
        &self.cache
    }

    fn dead_cache(&self) -> Option<Box<dyn CallContextCache>> {
        let settings = PoolSettings {
            max_size: 1,
            timeout: Duration::from_secs(1),
        };
        let url = SecretString::from("redis://127.0.0.1:1");
        let cache = RedisCache::new(&url, self.redis.prefix(), settings).expect("valid URL");
        Some(Box::new(cache))
    }
}

relay_ports::cache_conformance_tests!(RedisFixture::new().await);

#[tokio::test]
async fn put_stores_json_under_the_prefixed_key_with_the_ttl() {
    let redis = TestRedis::create().await;
    let cache = redis.cache();
    cache
        .put(&context("conv_1", Some(7)), CallContext::TTL)
        .await
        .unwrap();

    let mut conn = redis.connection().await;
    let key = format!("{}call:conv_1", redis.prefix());
    let json: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stored["conversation_id"], "conv_1");
    assert_eq!(stored["org_id"], "00000000-0000-0000-0000-000000000001");
    assert_eq!(stored["contact_id"], "00000000-0000-0000-0000-000000000007");
    assert_eq!(stored["caller_number"], "+14165550100");
    assert_eq!(stored["called_number"], "+12362320246");
    assert_eq!(stored["agent_id"], "agent_1");
    assert_eq!(stored["received_at"], "2023-11-14T22:13:20Z");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((86_399..=86_400).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn an_unreadable_entry_is_corrupt() {
    let redis = TestRedis::create().await;
    let mut conn = redis.connection().await;
    redis::cmd("SET")
        .arg(format!("{}call:conv_5", redis.prefix()))
        .arg("not json")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let err = redis
        .cache()
        .get(&ConversationId::parse("conv_5").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Corrupt(_)), "{err:?}");
}

#[test]
fn invalid_url_is_refused_without_echoing_it() {
    let err = RedisCache::new(
        &SecretString::from("nope://:hunter2@x"),
        "relay:",
        PoolSettings::default(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn ping_answers_and_the_pool_gauges_follow_the_settings() {
    use relay_ports::Probe as _;
    let redis = TestRedis::create().await;
    let cache = RedisCache::new(
        &redis.url(),
        redis.prefix(),
        PoolSettings {
            max_size: 4,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    cache.ping().await.expect("a live Redis answers PING");
    let stats = cache.pool_stats().unwrap();
    assert_eq!(stats.max, 4);
    assert_eq!((stats.open, stats.in_use, stats.waiting), (1, 0, Some(0)));
}

#[tokio::test]
async fn ping_fails_when_redis_is_unreachable() {
    use relay_ports::Probe as _;
    let cache = RedisCache::new(
        &SecretString::from("redis://127.0.0.1:1"),
        "relay:",
        PoolSettings::default(),
    )
    .unwrap();
    assert!(cache.ping().await.is_err());
}
