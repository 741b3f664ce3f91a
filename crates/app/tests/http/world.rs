//! The world HTTP tests run in: the service as `relay serve` wires it ([`Service::build`]: ports
//! observed, organization cache, use cases, metrics, readiness), on in-memory fakes, with one
//! organization with one contact (Alex Morgan, +14165550100, region CA).
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use relay_app::{Adapters, CacheKind, Env, ServeConfig, Service, StoreKind};
use relay_domain::{Organization, ToolToken};
use relay_http::{Operations, Webhooks};
use relay_ports::fakes::{InMemoryCache, InMemoryOutbox, InMemoryStore};
use relay_usecase::post_call::{RecordCall, SecretSealer};
use secrecy::SecretString;

/// The organization's post-call webhook secret (as ElevenLabs would show it).
pub const WEBHOOK_SECRET: &str = "wsec_7d1f0c3b9a5e4d2f8c6b1a0e9d8c7b6a";

/// `WEBHOOK_SECRET_KEY` of the world.
const SEALING_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub struct World {
    pub store: InMemoryStore,
    pub cache: InMemoryCache,
    pub outbox: InMemoryOutbox,
    pub org: Organization,
    pub token: ToolToken,
    pub service: Service,
    pub operations: Operations,
}

impl World {
    /// The use cases, as the routes get them.
    pub fn webhooks(&self) -> Webhooks {
        self.service.webhooks()
    }

    /// The post-call use case, to replay its outbox.
    pub fn record_call(&self) -> &Arc<RecordCall> {
        self.service.record_call()
    }
}

/// The service's configuration as `relay serve` reads it, from these variables only.
pub fn config(vars: &[(&str, &str)]) -> ServeConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut config =
        ServeConfig::from_env(&Env(|name: &str| vars.get(name).cloned())).expect("valid config");
    // The post-call budget is not a variable (5 s); the tests' failing fakes answer at once,
    // and the slow ones are slower than this.
    config.post_call_budget = Duration::from_millis(300);
    config
}

/// The world with the production defaults, signatures on, roomy outbox bounds.
pub fn world() -> World {
    world_with(&[])
}

/// The world with these variables set on top of the defaults.
pub fn world_with(vars: &[(&str, &str)]) -> World {
    let mut all = vec![
        ("WEBHOOK_SECRET_KEY", SEALING_KEY),
        ("POST_CALL_OUTBOX_MAX_ENTRIES", "1000"),
        ("KNOWN_CREDENTIALS_MAX_AGE_SECONDS", "3600"),
    ];
    all.extend_from_slice(vars);
    let config = config(&all);
    let store = InMemoryStore::new();
    let cache = InMemoryCache::new();
    let outbox = InMemoryOutbox::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let sealer =
        SecretSealer::from_base64(&SecretString::from(SEALING_KEY)).expect("a 32-byte key");
    store.set_sealed_webhook_secret(
        org.id,
        sealer.seal(org.id, &SecretString::from(WEBHOOK_SECRET)),
    );
    let adapters = Adapters {
        store: Arc::new(store.clone()),
        store_kind: StoreKind::Postgres,
        cache: Arc::new(cache.clone()),
        cache_kind: CacheKind::Redis { cluster: false },
        outbox: Some(Arc::new(outbox.clone())),
        fresh: false,
        per_worker: None,
    };
    let service = Service::build(&config, &adapters, true);
    World {
        operations: service.operations(),
        store,
        cache,
        outbox,
        org,
        token,
        service,
    }
}
