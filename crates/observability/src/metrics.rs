//! The service's metrics, in one Prometheus registry.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use relay_ports::{PoolStats, Probe};

/// The `Content-Type` of [`Metrics::render`]: the Prometheus text format 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds. The webhook answers in about a millisecond, so the buckets
/// resolve 100 µs steps below 1 ms, and still reach the 800 ms lookup budget and beyond.
const LATENCY_BUCKETS: [f64; 18] = [
    0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005, 0.007_5, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
    operation: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemoryLabels {
    route: &'static str,
    memory: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    store: &'static str,
    cache: &'static str,
}

/// How a dependency call ended: its `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// It answered; the label says how (`found`, `not_found`, `ok`, `inserted`, `duplicate`,
    /// `full`).
    Answered(&'static str),
    /// It failed (`error`).
    Failed,
    /// The caller's budget ran out first (`timeout`).
    TimedOut,
}

impl CallResult {
    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Answered(label) => label,
            Self::Failed => "error",
            Self::TimedOut => "timeout",
        }
    }

    /// Whether it counts in `relay_dependency_errors_total`.
    pub fn is_error(self) -> bool {
        !matches!(self, Self::Answered(_))
    }
}

/// The pools read at each scrape, by dependency label.
type Pools = Arc<Mutex<Vec<(&'static str, Arc<dyn Probe>)>>>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the service exports. Build it at start, register the pools and counters that
/// are read at scrape time, then share it (`Arc`) with the adapters.
pub struct Metrics {
    /// Locked only to register collectors and to render a scrape; requests record into the
    /// families, which need no lock here.
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RequestLabels>,
    dependency_duration: HistogramFamily<DependencyLabels>,
    dependency_errors: Family<DependencyLabels, Counter>,
    memory_answers: Family<MemoryLabels, Counter>,
    purge_runs: Family<ResultLabels, Counter>,
    purged: Family<KindLabels, Counter>,
    /// Read at each scrape by one collector, so each pool metric is one family.
    pools: Pools,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The registry with the request and dependency families and `relay_build_info`.
    /// `store` and `cache` name the adapters chosen (`postgres`, `redis`, ...).
    pub fn new(version: &'static str, store: &'static str, cache: &'static str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "relay_http_requests",
            "Webhook requests answered, by route, status and outcome (matched, no_match, \
             degraded, unauthorized, invalid)",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "relay_http_request_duration_seconds",
            "Time from the request's arrival at the handler to its answer, in seconds",
            request_duration.clone(),
        );
        let dependency_duration: HistogramFamily<DependencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "relay_dependency_duration_seconds",
            "Calls to Postgres/SQLite and Redis/in-process cache on the webhook path, by \
             dependency, operation and result (found, not_found, ok, error, timeout), in seconds",
            dependency_duration.clone(),
        );
        let dependency_errors = Family::<DependencyLabels, Counter>::default();
        registry.register(
            "relay_dependency_errors",
            "Failed dependency calls, by dependency, operation and result (error: the \
             dependency failed; timeout: the request's budget ran out first)",
            dependency_errors.clone(),
        );
        let memory_answers = Family::<MemoryLabels, Counter>::default();
        registry.register(
            "relay_memory_answers",
            "Personalization answers by route and what the caller's memory gave (remembered, \
             none, off, unreadable)",
            memory_answers.clone(),
        );
        let purge_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "relay_memory_purge_runs",
            "Runs of the memory retention purge, by result (ran, skipped: another replica was \
             purging, failed)",
            purge_runs.clone(),
        );
        let purged = Family::<KindLabels, Counter>::default();
        registry.register(
            "relay_memory_purged",
            "What the retention purge removed, by kind (memories, summaries)",
            purged.clone(),
        );
        registry.register(
            "relay_build",
            "The running version and the adapters chosen by configuration",
            Info::new(BuildLabels {
                version,
                store,
                cache,
            }),
        );
        let pools: Pools = Arc::default();
        registry.register_collector(Box::new(PoolCollector {
            pools: Arc::clone(&pools),
        }));
        Self {
            pools,
            registry: Mutex::new(registry),
            requests,
            request_duration,
            dependency_duration,
            dependency_errors,
            memory_answers,
            purge_runs,
            purged,
        }
    }

    /// Counts what one personalization answer's memory lookup gave on `route`.
    pub fn observe_memory(&self, route: &'static str, memory: &'static str) {
        self.memory_answers
            .get_or_create(&MemoryLabels { route, memory })
            .inc();
    }

    /// Counts one run of the retention purge (`ran`, `skipped`, `failed`) and what it removed.
    pub fn observe_purge(&self, result: &'static str, memories: u64, summaries: u64) {
        self.purge_runs
            .get_or_create(&ResultLabels { result })
            .inc();
        self.purged
            .get_or_create(&KindLabels { kind: "memories" })
            .inc_by(memories);
        self.purged
            .get_or_create(&KindLabels { kind: "summaries" })
            .inc_by(summaries);
    }

    /// Reports the connection pool of `dependency` at each scrape:
    /// `relay_pool_connections{dependency,state="open|in_use"}`, `relay_pool_max_connections`
    /// and, where the adapter counts them, `relay_pool_waiters`. Pools registered under one
    /// dependency are reported as one (their sums).
    pub fn register_pool(&self, dependency: &'static str, probe: Arc<dyn Probe>) {
        self.pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((dependency, probe));
    }

    /// Creates the zero series of `relay_dependency_errors_total` for these operations of
    /// `dependency`, so `rate()` and `absent()` alerts work before the first error.
    pub fn declare_dependency(&self, dependency: &'static str, operations: &[&'static str]) {
        for &operation in operations {
            for result in ["error", "timeout"] {
                let _ = self.dependency_errors.get_or_create(&DependencyLabels {
                    dependency,
                    operation,
                    result,
                });
            }
        }
    }

    pub(crate) fn register_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: Box<dyn Fn() -> u64 + Send + Sync>,
        gauge: bool,
    ) {
        self.registry().register_collector(Box::new(ScrapedFn {
            name,
            help,
            read,
            gauge,
        }));
    }

    /// Counts one answered webhook request and its latency.
    pub fn observe_request(
        &self,
        route: &'static str,
        status: u16,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            route,
            status,
            outcome,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one dependency call and its latency; a failed or timed-out call also counts as
    /// an error.
    pub fn observe_dependency(
        &self,
        dependency: &'static str,
        operation: &'static str,
        result: CallResult,
        elapsed: Duration,
    ) {
        let labels = DependencyLabels {
            dependency,
            operation,
            result: result.label(),
        };
        self.dependency_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if result.is_error() {
            self.dependency_errors.get_or_create(&labels).inc();
        }
    }

    /// Every metric in the Prometheus text format ([`PROMETHEUS_CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry());
        out
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    dependency: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    dependency: &'static str,
    state: &'static str,
}

struct PoolCollector {
    pools: Pools,
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCollector").finish_non_exhaustive()
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A dependency may have several pools (each HTTP worker's own, beside the shared
        // one): each series is their sum.
        let mut stats: Vec<(&'static str, PoolStats)> = Vec::new();
        for (dependency, probe) in self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let Some(pool) = probe.pool_stats() else {
                continue;
            };
            match stats.iter_mut().find(|(d, _)| d == dependency) {
                Some((_, sum)) => {
                    sum.max += pool.max;
                    sum.open += pool.open;
                    sum.in_use += pool.in_use;
                    sum.waiting = match (sum.waiting, pool.waiting) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                    };
                }
                None => stats.push((dependency, pool)),
            }
        }
        if stats.is_empty() {
            return Ok(());
        }
        {
            let mut family = encoder.encode_descriptor(
                "relay_pool_connections",
                "Open connections of a dependency's pool, by state (open = idle + in use)",
                None,
                MetricType::Gauge,
            )?;
            for (dependency, pool) in &stats {
                for (state, value) in [("open", pool.open), ("in_use", pool.in_use)] {
                    ConstGauge::new(i64::from(value))
                        .encode(family.encode_family(&PoolStateLabels { dependency, state })?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "relay_pool_max_connections",
                "Most connections a dependency's pool may open",
                None,
                MetricType::Gauge,
            )?;
            for (dependency, pool) in &stats {
                ConstGauge::new(i64::from(pool.max))
                    .encode(family.encode_family(&PoolLabels { dependency })?)?;
            }
        }
        if stats.iter().any(|(_, pool)| pool.waiting.is_some()) {
            let mut family = encoder.encode_descriptor(
                "relay_pool_waiters",
                "Calls waiting for a connection of a dependency's pool (Postgres: webhook-path \
                 lookups; Redis: every call, including readiness pings and background writes)",
                None,
                MetricType::Gauge,
            )?;
            for (dependency, pool) in &stats {
                if let Some(waiting) = pool.waiting {
                    ConstGauge::new(i64::from(waiting))
                        .encode(family.encode_family(&PoolLabels { dependency })?)?;
                }
            }
        }
        Ok(())
    }
}

struct ScrapedFn {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
    gauge: bool,
}

impl std::fmt::Debug for ScrapedFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapedFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for ScrapedFn {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = (self.read)();
        if self.gauge {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric =
                encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
            return gauge.encode(metric);
        }
        let counter = ConstCounter::new(value);
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}
