//! Readiness: each dependency's ping result, the timeout, and draining, on the fakes and on
//! tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use relay_ports::fakes::{Behaviour, InMemoryCache, InMemoryStore};
use relay_ports::{MockProbe, Probe};
use relay_usecase::{CheckResult, Readiness};

const TIMEOUT: Duration = Duration::from_millis(500);

fn readiness(store: &InMemoryStore, cache: &InMemoryCache) -> Readiness {
    Readiness::new(
        vec![
            ("postgres", Arc::new(store.clone()) as Arc<dyn Probe>),
            ("redis", Arc::new(cache.clone()) as Arc<dyn Probe>),
        ],
        TIMEOUT,
    )
}

#[tokio::test]
async fn ready_when_every_dependency_answers() {
    let report = readiness(&InMemoryStore::new(), &InMemoryCache::new())
        .check()
        .await;
    assert!(report.is_ready());
    assert_eq!(
        report.checks,
        [("postgres", CheckResult::Up), ("redis", CheckResult::Up)]
    );
}

#[tokio::test]
async fn a_dependency_that_fails_is_named_down() {
    let cache = InMemoryCache::new();
    cache.set_behaviour(Behaviour::Down);
    let report = readiness(&InMemoryStore::new(), &cache).check().await;
    assert!(!report.is_ready());
    assert_eq!(
        report.checks,
        [("postgres", CheckResult::Up), ("redis", CheckResult::Down)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dependency_slower_than_the_timeout_is_named_timeout_and_the_check_is_bounded() {
    let store = InMemoryStore::new();
    store.set_behaviour(Behaviour::Slow(Duration::from_secs(30)));
    let cache = InMemoryCache::new();
    // Slow too, but within the timeout: one ping after the other would take 500 + 400 ms.
    cache.set_behaviour(Behaviour::Slow(Duration::from_millis(400)));
    let started = tokio::time::Instant::now();
    let report = readiness(&store, &cache).check().await;
    assert_eq!(
        started.elapsed(),
        TIMEOUT,
        "both pings run at once, each bounded"
    );
    assert_eq!(
        report.checks,
        [
            ("postgres", CheckResult::Timeout),
            ("redis", CheckResult::Up)
        ]
    );
    assert!(!report.is_ready());
}

#[tokio::test]
async fn draining_is_not_ready_without_pinging_anything() {
    let mut probe = MockProbe::new();
    probe.expect_ping().never();
    let readiness = Readiness::new(vec![("postgres", Arc::new(probe))], TIMEOUT);
    assert!(!readiness.is_draining());
    readiness.start_draining();
    let report = readiness.check().await;
    assert!(report.draining);
    assert!(!report.is_ready());
    assert!(report.checks.is_empty());
}

#[tokio::test]
async fn a_probe_that_panics_counts_as_down() {
    let mut probe = MockProbe::new();
    probe.expect_ping().returning(|| panic!("probe bug"));
    let readiness = Readiness::new(vec![("redis", Arc::new(probe))], TIMEOUT);
    assert_eq!(
        readiness.check().await.checks,
        [("redis", CheckResult::Down)]
    );
}
