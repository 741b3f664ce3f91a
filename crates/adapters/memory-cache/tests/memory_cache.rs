//! The in-process cache proves the cache port's contract through the shared conformance suite.

use relay_memory_cache::MemoryCache;
use relay_ports::conformance::CacheFixture;
use relay_ports::{Cache, CallContextCache, IdempotencyCache};

struct MemoryFixture(MemoryCache);

impl CacheFixture for MemoryFixture {
    fn cache(&self) -> &dyn CallContextCache {
        &self.0
    }

    fn idempotency(&self) -> &dyn IdempotencyCache {
        &self.0
    }

    fn dead_cache(&self) -> Option<Box<dyn Cache>> {
        None
    }
}

// No backend to lose: it lives in this process, so the backend-gone case is not generated.
relay_ports::cache_conformance_tests!(in_process: MemoryFixture(MemoryCache::default()));

#[tokio::test]
async fn ping_always_answers_and_there_is_no_pool() {
    use relay_ports::Probe as _;
    let cache = relay_memory_cache::MemoryCache::default();
    assert!(cache.ping().await.is_ok());
    assert_eq!(cache.pool_stats(), None);
}
