//! The world HTTP tests run in: the real use case over in-memory fakes, one organization with one
//! contact (Alex Morgan, +14165550100, region CA).
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part"
)]

use std::sync::Arc;
use std::time::Duration;

use relay_domain::{Organization, ToolToken};
use relay_http::{Access, Operations, Webhooks};
use relay_observability::Metrics;
use relay_ports::OutboxLimits;
use relay_ports::Probe;
use relay_ports::fakes::{InMemoryCache, InMemoryOutbox, InMemoryStore};
use relay_usecase::post_call::{PostCallPorts, PostCallSettings, RecordCall, SecretSealer};
use relay_usecase::{KnownCredentials, PersonalizeCall, Readiness, RetryPolicy};
use secrecy::SecretString;

/// The organization's post-call webhook secret (as ElevenLabs would show it).
pub const WEBHOOK_SECRET: &str = "wsec_7d1f0c3b9a5e4d2f8c6b1a0e9d8c7b6a";

pub struct World {
    pub store: InMemoryStore,
    pub cache: InMemoryCache,
    pub outbox: InMemoryOutbox,
    pub org: Organization,
    pub token: ToolToken,
    pub personalize: Arc<PersonalizeCall>,
    pub record_call: Arc<RecordCall>,
    pub known: Arc<KnownCredentials>,
    /// One throttle for every request of the world, as one server has.
    pub access: Arc<Access>,
    pub operations: Operations,
}

/// Roomy outbox bounds for tests that are not about them.
pub const OUTBOX_LIMITS: OutboxLimits = OutboxLimits {
    max_entries: 1_000,
    max_bytes: 64 * 1024 * 1024,
};

impl World {
    /// The use cases, as the routes get them.
    pub fn webhooks(&self) -> Webhooks {
        Webhooks::new(
            Arc::clone(&self.personalize),
            Arc::clone(&self.record_call),
            Arc::clone(&self.access),
        )
    }
}

pub fn world() -> World {
    let store = InMemoryStore::new();
    let cache = InMemoryCache::new();
    let outbox = InMemoryOutbox::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let sealer = Arc::new(
        SecretSealer::from_base64(&SecretString::from(
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ))
        .expect("a 32-byte key"),
    );
    store.set_sealed_webhook_secret(
        org.id,
        sealer.seal(org.id, &SecretString::from(WEBHOOK_SECRET)),
    );
    let known = Arc::new(KnownCredentials::new(Duration::from_secs(3_600), 100));
    let record_call = Arc::new(RecordCall::new(
        PostCallPorts {
            orgs: Arc::new(store.clone()),
            contacts: Arc::new(store.clone()),
            calls: Arc::new(store.clone()),
            cache: Arc::new(cache.clone()),
            outbox: Some(Arc::new(outbox.clone())),
        },
        PostCallSettings {
            budget: Duration::from_millis(300),
            outbox: OUTBOX_LIMITS,
            dead_letters: OUTBOX_LIMITS,
        },
        Some(sealer),
        Arc::clone(&known),
    ));
    let personalize = Arc::new(PersonalizeCall::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(cache.clone()),
        Duration::from_millis(800),
        RetryPolicy::default(),
        Arc::clone(&known),
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
        outbox,
        org,
        token,
        personalize,
        record_call,
        known,
        access: Arc::new(Access::default()),
        operations: Operations {
            metrics: Arc::new(Metrics::new("0.0.0-test", "postgres", "redis")),
            readiness: Arc::new(readiness),
            trace_requests: true,
        },
    }
}
