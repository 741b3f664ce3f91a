//! The in-memory fakes the use-case and HTTP tests rely on follow the same contracts as the real
//! adapters: their conformance suites run here, every case of each (a fake's failure switch
//! stands for a backend that is gone).

use chrono::{DateTime, Utc};
use relay_domain::{Contact, ContactId, E164, OrgId};
use relay_ports::conformance::{CacheFixture, OutboxFixture, Store, StoreFixture};
use relay_ports::fakes::{Behaviour, InMemoryCache, InMemoryOutbox, InMemoryStore};
use relay_ports::{Cache, CallContextCache, DeliveryOutbox, IdempotencyCache};

struct FakeCache(InMemoryCache);

impl CacheFixture for FakeCache {
    fn cache(&self) -> &dyn CallContextCache {
        &self.0
    }

    fn idempotency(&self) -> &dyn IdempotencyCache {
        &self.0
    }

    fn dead_cache(&self) -> Option<Box<dyn Cache>> {
        let dead = InMemoryCache::new();
        dead.set_behaviour(Behaviour::Down);
        Some(Box::new(dead))
    }
}

relay_ports::cache_conformance_tests!(FakeCache(InMemoryCache::new()));

struct FakeOutbox(InMemoryOutbox);

#[async_trait::async_trait]
impl OutboxFixture for FakeOutbox {
    fn outbox(&self) -> &dyn DeliveryOutbox {
        &self.0
    }

    async fn dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        self.0
            .dead_letters()
            .into_iter()
            .map(|(entry, reason)| (entry.payload, reason))
            .collect()
    }
}

relay_ports::outbox_conformance_tests!(FakeOutbox(InMemoryOutbox::new()));

struct FakeStore(InMemoryStore);

#[async_trait::async_trait]
impl StoreFixture for FakeStore {
    fn store(&self) -> &dyn Store {
        &self.0
    }

    fn dead_store(&self) -> Box<dyn Store> {
        let dead = InMemoryStore::new();
        dead.set_behaviour(Behaviour::Down);
        Box::new(dead)
    }

    async fn insert_raw_contact(
        &self,
        org: OrgId,
        id: ContactId,
        first_name: &str,
        phone: &E164,
        updated_at: DateTime<Utc>,
    ) {
        self.0.insert_contact(Contact {
            id,
            org_id: org,
            first_name: Some(first_name.to_owned()),
            last_name: None,
            phone: phone.clone(),
            updated_at,
        });
    }
}

relay_ports::store_conformance_tests!(FakeStore(InMemoryStore::new()));
