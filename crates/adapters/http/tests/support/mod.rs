//! The world HTTP tests run in: the real use case over in-memory fakes, one organization with one
//! contact (Alex Morgan, +14165550100, region CA).
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part"
)]

use std::sync::Arc;
use std::time::Duration;

use relay_domain::ToolToken;
use relay_http::Operations;
use relay_observability::Metrics;
use relay_ports::Probe;
use relay_ports::fakes::{InMemoryCache, InMemoryStore};
use relay_usecase::{PersonalizeCall, Readiness, RetryPolicy};

pub struct World {
    pub store: InMemoryStore,
    pub cache: InMemoryCache,
    pub token: ToolToken,
    pub personalize: Arc<PersonalizeCall>,
    pub operations: Operations,
}

pub fn world() -> World {
    let store = InMemoryStore::new();
    let cache = InMemoryCache::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let personalize = Arc::new(PersonalizeCall::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(cache.clone()),
        Duration::from_millis(800),
        RetryPolicy::default(),
    ));
    let readiness = Readiness::new(
        vec![
            ("postgres", Arc::new(store.clone()) as Arc<dyn Probe>),
            ("redis", Arc::new(cache.clone()) as Arc<dyn Probe>),
        ],
        Duration::from_millis(500),
    );
    World {
        store,
        cache,
        token,
        personalize,
        operations: Operations {
            metrics: Arc::new(Metrics::new("0.0.0-test", "postgres", "redis")),
            readiness: Arc::new(readiness),
            trace_requests: true,
        },
    }
}
