//! What `/metrics` shows after known calls: request and dependency families, the pool gauges
//! and scrape-time counters, read back with `scrape::sample`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relay_domain::TokenDigest;
use relay_observability::scrape::{check_format, sample};
use relay_observability::{Metrics, Observed};
use relay_ports::fakes::{Behaviour, InMemoryStore};
use relay_ports::{MockProbe, OrganizationDirectory, PoolStats};

fn digest() -> TokenDigest {
    relay_domain::ToolToken::from_random_bytes(&[1; 32]).digest()
}

#[test]
fn requests_are_counted_by_route_status_and_outcome_with_sub_millisecond_buckets() {
    let metrics = Metrics::new("9.9.9", "postgres", "redis");
    metrics.observe_request("/hook", 200, "matched", Duration::from_micros(300));
    metrics.observe_request("/hook", 200, "matched", Duration::from_micros(900));
    metrics.observe_request("/hook", 401, "unauthorized", Duration::from_micros(50));
    let text = metrics.render();

    let matched = [
        ("route", "/hook"),
        ("status", "200"),
        ("outcome", "matched"),
    ];
    assert_eq!(
        sample(&text, "relay_http_requests_total", &matched),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "relay_http_requests_total",
            &[("outcome", "unauthorized"), ("status", "401")]
        ),
        Some(1.0)
    );
    let bucket = |le: &str| {
        let mut labels = matched.to_vec();
        labels.push(("le", le));
        sample(&text, "relay_http_request_duration_seconds_bucket", &labels)
    };
    assert_eq!(bucket("0.00025"), Some(0.0));
    assert_eq!(
        bucket("0.0005"),
        Some(1.0),
        "300 µs falls in the 0.5 ms bucket"
    );
    assert_eq!(bucket("0.001"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "relay_build_info",
            &[
                ("version", "9.9.9"),
                ("store", "postgres"),
                ("cache", "redis")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn pool_gauges_and_scrape_time_counters_are_read_at_each_scrape() {
    let metrics = Metrics::new("1.0.0", "postgres", "redis");
    let mut probe = MockProbe::new();
    probe.expect_pool_stats().returning(|| {
        Some(PoolStats {
            max: 10,
            open: 4,
            in_use: 3,
            waiting: Some(2),
        })
    });
    metrics.register_pool("postgres", Arc::new(probe));
    let mut redis = MockProbe::new();
    redis.expect_pool_stats().returning(|| {
        Some(PoolStats {
            max: 16,
            open: 2,
            in_use: 1,
            waiting: Some(0),
        })
    });
    metrics.register_pool("redis", Arc::new(redis));
    let mut no_pool = MockProbe::new();
    no_pool.expect_pool_stats().returning(|| None);
    metrics.register_pool("in-process", Arc::new(no_pool));
    let dropped = Arc::new(AtomicU64::new(0));
    let read = Arc::clone(&dropped);
    metrics.register_context_writes(move || relay_observability::ContextWriteCounts {
        retried: 2,
        recovered: 1,
        dropped: read.load(Ordering::Relaxed),
    });

    dropped.store(7, Ordering::Relaxed);
    let text = metrics.render();
    let pg = ("dependency", "postgres");
    assert_eq!(
        sample(&text, "relay_pool_connections", &[pg, ("state", "open")]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "relay_pool_connections", &[pg, ("state", "in_use")]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "relay_pool_max_connections", &[pg]),
        Some(10.0)
    );
    assert_eq!(sample(&text, "relay_pool_waiters", &[pg]), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "relay_pool_connections",
            &[("dependency", "in-process")]
        ),
        None,
        "no pool, no gauge"
    );
    assert_eq!(
        sample(&text, "relay_call_context_writes_dropped_total", &[]),
        Some(7.0),
        "read at scrape time, not at registration"
    );
    assert_eq!(
        sample(&text, "relay_call_context_writes_retried_total", &[]),
        Some(2.0)
    );
    let redis = ("dependency", "redis");
    assert_eq!(
        sample(&text, "relay_pool_max_connections", &[redis]),
        Some(16.0)
    );
    assert_eq!(
        text.matches("# TYPE relay_pool_connections gauge").count(),
        1,
        "two pools, one family:\n{text}"
    );
    check_format(&text).unwrap();
}

fn observed(store: &InMemoryStore, metrics: &Arc<Metrics>) -> Observed<dyn OrganizationDirectory> {
    Observed::new(
        Arc::new(store.clone()) as Arc<dyn OrganizationDirectory>,
        "postgres",
        Arc::clone(metrics),
    )
}

fn dependency_calls(metrics: &Metrics, result: &str) -> Option<f64> {
    sample(
        &metrics.render(),
        "relay_dependency_duration_seconds_count",
        &[
            ("dependency", "postgres"),
            ("operation", "find_organization"),
            ("result", result),
        ],
    )
}

#[tokio::test]
async fn dependency_calls_are_counted_by_result_and_failures_as_errors() {
    let metrics = Arc::new(Metrics::new("1.0.0", "postgres", "redis"));
    let store = InMemoryStore::new();
    let (_, token) = store.add_org("Acme", "CA");
    let port = observed(&store, &metrics);

    assert!(
        port.find_by_secret_digest(&token.digest())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        port.find_by_secret_digest(&digest())
            .await
            .unwrap()
            .is_none()
    );
    store.set_behaviour(Behaviour::Down);
    assert!(port.find_by_secret_digest(&digest()).await.is_err());

    assert_eq!(dependency_calls(&metrics, "found"), Some(1.0));
    assert_eq!(dependency_calls(&metrics, "not_found"), Some(1.0));
    assert_eq!(dependency_calls(&metrics, "error"), Some(1.0));
    assert_eq!(
        sample(
            &metrics.render(),
            "relay_dependency_errors_total",
            &[("result", "error")]
        ),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_abandoned_when_the_budget_runs_out_is_a_timeout() {
    let metrics = Arc::new(Metrics::new("1.0.0", "postgres", "redis"));
    let store = InMemoryStore::new();
    store.set_behaviour(Behaviour::Slow(Duration::from_secs(5)));
    let port = observed(&store, &metrics);
    let digest = digest();

    let abandoned = tokio::time::timeout(
        Duration::from_millis(800),
        port.find_by_secret_digest(&digest),
    )
    .await;
    assert!(abandoned.is_err());

    assert_eq!(dependency_calls(&metrics, "timeout"), Some(1.0));
    assert_eq!(
        sample(
            &metrics.render(),
            "relay_dependency_errors_total",
            &[("result", "timeout")]
        ),
        Some(1.0)
    );
}

#[test]
fn declared_dependencies_export_zero_error_series_before_any_error() {
    let metrics = Metrics::new("1.0.0", "postgres", "redis");
    metrics.declare_dependency("redis", &["put_call_context"]);
    let text = metrics.render();
    for result in ["error", "timeout"] {
        assert_eq!(
            sample(
                &text,
                "relay_dependency_errors_total",
                &[
                    ("dependency", "redis"),
                    ("operation", "put_call_context"),
                    ("result", result)
                ]
            ),
            Some(0.0)
        );
    }
    check_format(&text).unwrap();
}

#[test]
fn check_format_rejects_a_family_declared_twice() {
    let text = "# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n";
    assert!(check_format(text).unwrap_err().contains("twice"));
    assert!(check_format("# TYPE a gauge\na 1\n# TYPE b gauge\na 2\n").is_err());
    assert!(check_format("# TYPE a gauge\na 1\n").is_ok());
}

#[test]
fn memory_answers_and_purge_runs_are_counted() {
    let metrics = Metrics::new("9.9.9", "postgres", "redis");
    metrics.observe_memory("/hook", "remembered");
    metrics.observe_memory("/hook", "remembered");
    metrics.observe_memory("/hook", "unreadable");
    metrics.observe_purge("ran", 3, 7);
    metrics.observe_purge("ran", 1, 0);
    metrics.observe_purge("skipped", 0, 0);
    let text = metrics.render();
    check_format(&text).expect("valid exposition format");

    let memory = |label| {
        sample(
            &text,
            "relay_memory_answers_total",
            &[("route", "/hook"), ("memory", label)],
        )
    };
    assert_eq!(memory("remembered"), Some(2.0));
    assert_eq!(memory("unreadable"), Some(1.0));
    let runs = |result| {
        sample(
            &text,
            "relay_memory_purge_runs_total",
            &[("result", result)],
        )
    };
    assert_eq!(runs("ran"), Some(2.0));
    assert_eq!(runs("skipped"), Some(1.0));
    let purged = |kind| sample(&text, "relay_memory_purged_total", &[("kind", kind)]);
    assert_eq!(purged("memories"), Some(4.0));
    assert_eq!(purged("summaries"), Some(7.0));
}
