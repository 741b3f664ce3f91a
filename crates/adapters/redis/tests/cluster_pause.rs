//! Readiness on a Redis Cluster means every master answers. This pauses one master of the shared
//! test cluster, so it lives in a test binary of its own: cargo runs test binaries one after
//! another, and no other test sees the pause.

use std::time::Duration;

use relay_ports::Probe as _;
use relay_redis::testing::{TestRedis, redis};
use relay_redis::{PoolSettings, RedisCache};
use secrecy::ExposeSecret as _;

#[tokio::test]
async fn ping_fails_while_one_master_does_not_answer() {
    let redis = TestRedis::create_cluster().await;
    let cache = RedisCache::cluster(
        &[redis.url()],
        redis.prefix(),
        PoolSettings {
            max_size: 4,
            timeout: Duration::from_millis(500),
        },
    )
    .unwrap();
    cache.ping().await.expect("every master answers");

    // Pause a master other than the seed for 2 s; a PING to every master cannot succeed meanwhile.
    let urls = redis.cluster_urls();
    let paused = urls.expose_secret().split(',').nth(1).unwrap().to_owned();
    let mut conn = redis::Client::open(paused.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2_000)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let during = tokio::time::timeout(Duration::from_secs(1), cache.ping()).await;
    assert!(
        !matches!(during, Ok(Ok(()))),
        "PING succeeded while master {paused} was paused"
    );

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cache.ping().await.expect("every master answers again");
}
