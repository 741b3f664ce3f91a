//! The Redis adapter against a real Redis, a unique key prefix per test: the cache port's
//! conformance suite and what is particular to Redis (key, JSON shape, exact TTL, probe), run
//! twice: on the single server (`REDIS_URL`) and on a three-master Redis Cluster
//! (`REDIS_CLUSTER_URLS`, started by `scripts/redis-cluster.sh`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_domain::{CallContext, CallKey, CallSid, ContactId, ConversationId, E164, OrgId};
use relay_ports::conformance::{CacheFixture, OutboxFixture};
use relay_ports::{
    Cache, CacheError, CallContextCache, DeliveryOutbox, IdempotencyCache, Probe as _,
};
use relay_redis::testing::{TestRedis, redis};
use relay_redis::{PoolSettings, RedisCache};
use secrecy::SecretString;

fn context(conversation: &str, contact: Option<u128>) -> CallContext {
    CallContext {
        conversation_id: Some(ConversationId::parse(conversation).unwrap()),
        call_sid: None,
        org_id: OrgId::from_uuid(uuid::Uuid::from_u128(1)),
        contact_id: contact.map(|c| ContactId::from_uuid(uuid::Uuid::from_u128(c))),
        caller_number: Some(E164::parse_e164("+14165550100").unwrap()),
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
    async fn single() -> Self {
        Self::on(TestRedis::create().await)
    }

    async fn cluster() -> Self {
        Self::on(TestRedis::create_cluster().await)
    }

    fn on(redis: TestRedis) -> Self {
        let cache = redis.cache();
        Self { redis, cache }
    }
}

fn dead_settings() -> PoolSettings {
    PoolSettings {
        max_size: 1,
        timeout: Duration::from_secs(1),
    }
}

impl CacheFixture for RedisFixture {
    fn cache(&self) -> &dyn CallContextCache {
        &self.cache
    }

    fn idempotency(&self) -> &dyn IdempotencyCache {
        &self.cache
    }

    fn dead_cache(&self) -> Option<Box<dyn Cache>> {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let url = SecretString::from("redis://127.0.0.1:1");
        let cache = if self.cache.is_cluster() {
            RedisCache::cluster(&[url], self.redis.prefix(), dead_settings())
        } else {
            RedisCache::new(&url, self.redis.prefix(), dead_settings())
        };
        Some(Box::new(cache.expect("valid URL")))
    }
}

#[async_trait::async_trait]
impl OutboxFixture for RedisFixture {
    fn outbox(&self) -> &dyn DeliveryOutbox {
        &self.cache
    }

    async fn dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        let entries: Vec<(String, Vec<Vec<u8>>)> = self
            .cache
            .query(
                redis::cmd("XRANGE")
                    .arg(self.cache.dead_letter_key())
                    .arg("-")
                    .arg("+"),
            )
            .await
            .unwrap();
        entries
            .into_iter()
            .map(|(_, fields)| {
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|pair| pair[0] == name.as_bytes())
                        .map(|pair| pair[1].clone())
                        .unwrap_or_default()
                };
                (
                    field("payload"),
                    String::from_utf8(field("reason")).unwrap(),
                )
            })
            .collect()
    }
}

async fn put_stores_json_under_the_prefixed_key_with_the_ttl(redis: TestRedis) {
    let cache = redis.cache();
    cache
        .put(&context("conv_1", Some(7)), CallContext::TTL)
        .await
        .unwrap();

    let key = format!(
        "{}org:00000000-0000-0000-0000-000000000001:call:conv_1",
        redis.prefix()
    );
    let json: String = cache.query(redis::cmd("GET").arg(&key)).await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stored["conversation_id"], "conv_1");
    assert_eq!(stored["org_id"], "00000000-0000-0000-0000-000000000001");
    assert_eq!(stored["contact_id"], "00000000-0000-0000-0000-000000000007");
    assert_eq!(stored["caller_number"], "+14165550100");
    assert_eq!(stored["called_number"], "+12362320246");
    assert_eq!(stored["agent_id"], "agent_1");
    assert_eq!(stored["received_at"], "2023-11-14T22:13:20Z");
    let ttl: i64 = cache.query(redis::cmd("TTL").arg(&key)).await.unwrap();
    assert!((86_399..=86_400).contains(&ttl), "ttl {ttl}");
}

async fn a_context_with_a_call_sid_is_also_stored_under_the_sid_key(redis: TestRedis) {
    let cache = redis.cache();
    let mut ctx = context("conv_2", None);
    ctx.call_sid = Some(CallSid::parse("CA42").unwrap());
    cache.put(&ctx, CallContext::TTL).await.unwrap();
    let key = format!(
        "{}org:00000000-0000-0000-0000-000000000001:call-sid:CA42",
        redis.prefix()
    );
    let json: String = cache.query(redis::cmd("GET").arg(&key)).await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stored["call_sid"], "CA42");
    assert_eq!(stored["conversation_id"], "conv_2");
    let ttl: i64 = cache.query(redis::cmd("TTL").arg(&key)).await.unwrap();
    assert!((86_399..=86_400).contains(&ttl), "ttl {ttl}");
}

/// What is particular to Redis: the stream's key, and an entry written by hand without a
/// payload comes back empty (to be dead-lettered) instead of failing the whole read.
async fn an_entry_without_a_payload_comes_back_empty(redis: TestRedis) {
    let fixture = RedisFixture::on(redis);
    let cache = &fixture.cache;
    let key = cache.outbox_key();
    assert!(key.starts_with(fixture.redis.prefix()), "{key}");
    cache
        .query::<String>(redis::cmd("XADD").arg(&key).arg("*").arg("other").arg("x"))
        .await
        .unwrap();
    let all = cache.pending(10).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].payload.is_empty());
    let limits = relay_ports::OutboxLimits {
        max_entries: 10,
        max_bytes: 1 << 20,
    };
    cache
        .dead_letter(&all[0], "unreadable", limits)
        .await
        .unwrap();
    assert_eq!(cache.usage().await.unwrap().entries, 0);
    assert_eq!(
        fixture.dead_letters().await,
        [(Vec::new(), "unreadable".to_owned())]
    );
}

async fn an_unreadable_entry_is_corrupt(redis: TestRedis) {
    let cache = redis.cache();
    let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
    let key = CallKey::Conversation(ConversationId::parse("conv_5").unwrap());
    cache
        .query::<()>(redis::cmd("SET").arg(cache.key(org, &key)).arg("not json"))
        .await
        .unwrap();
    let err = cache.get(org, &key).await.unwrap_err();
    assert!(matches!(err, CacheError::Corrupt(_)), "{err:?}");
}

/// Entries written before keys were scoped by organization (`{prefix}call:{id}`) are still
/// found for the 24 hours they live, by their own organization only, and never written again.
async fn entries_of_the_unscoped_layout_are_read_for_their_organization_only(redis: TestRedis) {
    let cache = redis.cache();
    let old = context("conv_legacy", Some(7));
    let key = CallKey::Conversation(ConversationId::parse("conv_legacy").unwrap());
    let legacy = format!("{}call:conv_legacy", redis.prefix());
    assert_eq!(cache.legacy_key(&key), legacy);
    cache
        .query::<()>(
            redis::cmd("SET")
                .arg(&legacy)
                .arg(serde_json::to_string(&old).unwrap())
                .arg("EX")
                .arg(3_600),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get(old.org_id, &key).await.unwrap(),
        Some(old.clone())
    );
    let other = OrgId::from_uuid(uuid::Uuid::from_u128(2));
    assert_eq!(
        cache.get(other, &key).await.unwrap(),
        None,
        "another organization naming the same conversation does not get it"
    );

    // A new context of the same organization goes to the scoped key and wins from then on.
    let new = context("conv_legacy", Some(8));
    cache.put(&new, CallContext::TTL).await.unwrap();
    assert_eq!(cache.get(old.org_id, &key).await.unwrap(), Some(new));
    let untouched: String = cache.query(redis::cmd("GET").arg(&legacy)).await.unwrap();
    assert_eq!(
        serde_json::from_str::<CallContext>(&untouched).unwrap(),
        old,
        "the old layout is never written"
    );
}

/// An idempotency record is a small JSON object under `{prefix}idem:{scope}:{hex sha256 of the
/// key}`, with the TTL of its last write; a release deletes it.
async fn idempotency_records_are_json_under_a_hashed_key_with_the_ttl(redis: TestRedis) {
    let cache = redis.cache();
    let key = cache.idempotency_key("scope-1", "abc");
    assert_eq!(
        key,
        format!(
            "{}idem:scope-1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            redis.prefix()
        )
    );
    let fp = [0xab; 32];
    let claim = cache
        .claim("scope-1", "abc", &fp, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claim, relay_ports::Claim::Reserved);
    let record = |json: String| serde_json::from_str::<serde_json::Value>(&json).unwrap();
    let pending = record(cache.query(redis::cmd("GET").arg(&key)).await.unwrap());
    assert_eq!(
        pending,
        serde_json::json!({"fp": "ab".repeat(32), "state": "pending"})
    );
    let pttl: i64 = cache.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!((59_000..=60_000).contains(&pttl), "pttl {pttl}");

    let response = relay_ports::StoredResponse {
        status: 201,
        headers: vec![("Location".to_owned(), "/v1/contacts/1".to_owned())],
        body: vec![0xff, 0x00],
    };
    cache
        .complete("scope-1", "abc", &fp, &response, Duration::from_secs(120))
        .await
        .unwrap();
    let done = record(cache.query(redis::cmd("GET").arg(&key)).await.unwrap());
    assert_eq!(
        done,
        serde_json::json!({
            "fp": "ab".repeat(32),
            "state": "done",
            "status": 201,
            "headers": [["Location", "/v1/contacts/1"]],
            "body": "/wA=",
        })
    );
    let pttl: i64 = cache.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!((119_000..=120_000).contains(&pttl), "pttl {pttl}");

    // A completion of another request (another fingerprint) leaves the record alone.
    cache
        .complete(
            "scope-1",
            "abc",
            &[0xcd; 32],
            &response,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        record(cache.query(redis::cmd("GET").arg(&key)).await.unwrap()),
        done
    );

    cache.release("scope-1", "abc").await.unwrap();
    let exists: i64 = cache.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
    assert_eq!(exists, 0);
}

async fn an_unreadable_idempotency_record_is_corrupt(redis: TestRedis) {
    let cache = redis.cache();
    cache
        .query::<()>(
            redis::cmd("SET")
                .arg(cache.idempotency_key("scope-1", "broken"))
                .arg("not json"),
        )
        .await
        .unwrap();
    let err = cache
        .claim("scope-1", "broken", &[1; 32], Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Corrupt(_)), "{err:?}");
}

async fn ping_answers_and_the_pool_gauges_are_reported(redis: TestRedis) {
    let cache = redis.cache();
    cache.ping().await.expect("a live Redis answers PING");
    let stats = cache.pool_stats().unwrap();
    assert_eq!(stats.max, 16);
    assert_eq!((stats.open, stats.in_use, stats.waiting), (1, 0, Some(0)));
}

/// Concurrent commands go through one multiplexed connection (their commands pipelined), not
/// one pooled connection each.
async fn concurrent_commands_share_one_connection(redis: TestRedis) {
    let cache = redis.cache();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..50 {
        let cache = cache.clone();
        writes.spawn(async move {
            cache
                .put(&context(&format!("conv_{i}"), Some(7)), CallContext::TTL)
                .await
        });
    }
    while let Some(result) = writes.join_next().await {
        result.unwrap().unwrap();
    }
    let stats = cache.pool_stats().unwrap();
    assert_eq!(stats.open, 1, "{stats:?}");
    let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
    for i in [0, 49] {
        let key = CallKey::Conversation(ConversationId::parse(format!("conv_{i}")).unwrap());
        assert!(cache.get(org, &key).await.unwrap().is_some(), "conv_{i}");
    }
}

/// When the kept connection dies (here killed by Redis), at most the command in flight fails:
/// the next one takes a new connection from the pool.
async fn a_dropped_connection_costs_at_most_one_command(redis: TestRedis) {
    let cache = redis.cache();
    cache
        .put(&context("conv_before", Some(7)), CallContext::TTL)
        .await
        .unwrap();
    let id: i64 = cache.query(redis::cmd("CLIENT").arg("ID")).await.unwrap();
    let killer = RedisCache::new(&redis.url(), redis.prefix(), PoolSettings::default()).unwrap();
    let killed: i64 = killer
        .query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id))
        .await
        .unwrap();
    assert_eq!(killed, 1);

    let first = cache
        .put(&context("conv_after", Some(7)), CallContext::TTL)
        .await;
    if first.is_err() {
        cache
            .put(&context("conv_after", Some(7)), CallContext::TTL)
            .await
            .expect("the command after a failed one reconnects");
    }
    let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
    let key = CallKey::Conversation(ConversationId::parse("conv_after").unwrap());
    assert!(cache.get(org, &key).await.unwrap().is_some());
    let new_id: i64 = cache.query(redis::cmd("CLIENT").arg("ID")).await.unwrap();
    assert_ne!(new_id, id, "a new connection");
}

mod single {
    use super::*;

    #[tokio::test]
    async fn concurrent_commands_share_one_connection() {
        super::concurrent_commands_share_one_connection(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn a_dropped_connection_costs_at_most_one_command() {
        super::a_dropped_connection_costs_at_most_one_command(TestRedis::create().await).await;
    }

    relay_ports::cache_conformance_tests!(RedisFixture::single().await);

    #[tokio::test]
    async fn idempotency_records_are_json_under_a_hashed_key_with_the_ttl() {
        super::idempotency_records_are_json_under_a_hashed_key_with_the_ttl(
            TestRedis::create().await,
        )
        .await;
    }

    #[tokio::test]
    async fn an_unreadable_idempotency_record_is_corrupt() {
        super::an_unreadable_idempotency_record_is_corrupt(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn put_stores_json_under_the_prefixed_key_with_the_ttl() {
        super::put_stores_json_under_the_prefixed_key_with_the_ttl(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_corrupt() {
        super::an_unreadable_entry_is_corrupt(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn entries_of_the_unscoped_layout_are_read_for_their_organization_only() {
        super::entries_of_the_unscoped_layout_are_read_for_their_organization_only(
            TestRedis::create().await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_context_with_a_call_sid_is_also_stored_under_the_sid_key() {
        super::a_context_with_a_call_sid_is_also_stored_under_the_sid_key(
            TestRedis::create().await,
        )
        .await;
    }

    relay_ports::outbox_conformance_tests!(RedisFixture::single().await);

    #[tokio::test]
    async fn an_entry_without_a_payload_comes_back_empty() {
        super::an_entry_without_a_payload_comes_back_empty(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn ping_answers_and_the_pool_gauges_are_reported() {
        super::ping_answers_and_the_pool_gauges_are_reported(TestRedis::create().await).await;
    }

    #[tokio::test]
    async fn the_pool_size_follows_the_settings() {
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
        assert_eq!(cache.pool_stats().unwrap().max, 4);
    }

    #[tokio::test]
    async fn a_tls_url_is_accepted_and_a_plain_text_server_fails_the_handshake() {
        // rediss:// to the plain-text test server: TLS is compiled in and has a crypto
        // provider (without one rustls would panic), and the failure is an error, not a panic.
        let cache = RedisCache::new(
            &SecretString::from("rediss://127.0.0.1:6379"),
            "relay:",
            dead_settings(),
        )
        .expect("rediss:// is a usable URL");
        assert!(cache.ping().await.is_err());
    }

    #[tokio::test]
    async fn ping_fails_when_redis_is_unreachable() {
        let cache = RedisCache::new(
            &SecretString::from("redis://127.0.0.1:1"),
            "relay:",
            PoolSettings::default(),
        )
        .unwrap();
        assert!(cache.ping().await.is_err());
    }
}

mod cluster {
    use super::*;

    relay_ports::cache_conformance_tests!(RedisFixture::cluster().await);

    #[tokio::test]
    async fn idempotency_records_are_json_under_a_hashed_key_with_the_ttl() {
        super::idempotency_records_are_json_under_a_hashed_key_with_the_ttl(
            TestRedis::create_cluster().await,
        )
        .await;
    }

    #[tokio::test]
    async fn an_unreadable_idempotency_record_is_corrupt() {
        super::an_unreadable_idempotency_record_is_corrupt(TestRedis::create_cluster().await).await;
    }

    #[tokio::test]
    async fn put_stores_json_under_the_prefixed_key_with_the_ttl() {
        super::put_stores_json_under_the_prefixed_key_with_the_ttl(
            TestRedis::create_cluster().await,
        )
        .await;
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_corrupt() {
        super::an_unreadable_entry_is_corrupt(TestRedis::create_cluster().await).await;
    }

    #[tokio::test]
    async fn entries_of_the_unscoped_layout_are_read_for_their_organization_only() {
        super::entries_of_the_unscoped_layout_are_read_for_their_organization_only(
            TestRedis::create_cluster().await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_context_with_a_call_sid_is_also_stored_under_the_sid_key() {
        super::a_context_with_a_call_sid_is_also_stored_under_the_sid_key(
            TestRedis::create_cluster().await,
        )
        .await;
    }

    relay_ports::outbox_conformance_tests!(RedisFixture::cluster().await);

    #[tokio::test]
    async fn an_entry_without_a_payload_comes_back_empty() {
        super::an_entry_without_a_payload_comes_back_empty(TestRedis::create_cluster().await).await;
    }

    #[tokio::test]
    async fn ping_answers_and_the_pool_gauges_are_reported() {
        super::ping_answers_and_the_pool_gauges_are_reported(TestRedis::create_cluster().await)
            .await;
    }

    #[tokio::test]
    async fn contexts_spread_over_every_master_and_each_reads_back() {
        let redis = TestRedis::create_cluster().await;
        let cache = redis.cache();
        let ids: Vec<String> = (0..60).map(|i| format!("conv_{i}")).collect();
        for id in &ids {
            cache
                .put(&context(id, Some(1)), CallContext::TTL)
                .await
                .unwrap();
        }
        let per_node = redis.keys_per_node();
        assert_eq!(per_node.len(), 3, "three masters");
        assert_eq!(per_node.iter().sum::<usize>(), ids.len());
        assert!(
            per_node.iter().all(|n| *n > 0),
            "every master holds some keys: {per_node:?}"
        );
        for id in &ids {
            let got = cache
                .get(
                    OrgId::from_uuid(uuid::Uuid::from_u128(1)),
                    &CallKey::Conversation(ConversationId::parse(id).unwrap()),
                )
                .await
                .unwrap()
                .expect("read back through the cluster");
            assert_eq!(got.conversation_id.unwrap().as_str(), id);
        }
    }
}

#[test]
fn invalid_urls_are_refused_without_echoing_them() {
    let bad = SecretString::from("nope://:hunter2@x");
    let err = RedisCache::new(&bad, "relay:", PoolSettings::default()).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    assert!(err.to_string().starts_with("REDIS_URL"));
    let good = SecretString::from("redis://127.0.0.1:7101");
    let err = RedisCache::cluster(&[good, bad], "relay:", PoolSettings::default()).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    assert!(err.to_string().starts_with("REDIS_CLUSTER_URLS"));
    assert!(RedisCache::cluster(&[], "relay:", PoolSettings::default()).is_err());
}
