//! The composition root: one place builds the whole service from its configuration.
//!
//! [`Service`] is the wired service without a socket: every port wrapped by [`Observed`] (so each
//! dependency call is timed, counted and traced), the organization cache in front of the store,
//! the use cases, the metrics, readiness, and the background loops (post-call replay). The HTTP
//! tests run the routes on it in process, over fakes or real adapters.
//!
//! [`Application`] is the [`Service`] listening on `LISTEN_ADDR`: `relay serve` is
//! `Application::build(config)` then [`Application::run_until_stopped`], which drains and stops
//! on the signals it is given. The end-to-end tests run the binary, hence this same code.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use relay_domain::Region;
use relay_http::admin::{Guard, ManagementApi};
use relay_http::{Access, Operations, PerWorker, ServerSettings, Webhooks};
use relay_memory_cache::{CachedOrganizations, DEFAULT_MAX_ORGANIZATIONS};
use relay_observability::{ContextWriteCounts, Metrics, Observed, OutboxCounts};
use relay_ports::{
    AuditLog, CallContextCache, CallLog, ContactAdmin, ContactDirectory, ContactImport,
    DeliveryOutbox, IdempotencyCache, ManagementKeys, MemoryKeeper, OrganizationAdmin,
    OrganizationDirectory, Probe,
};
use relay_usecase::post_call::{PostCallPorts, PostCallSettings, RecordCall};
use relay_usecase::{
    KnownCredentials, MAX_KNOWN_CREDENTIALS, Management, ManagementPorts, PersonalizeCall,
    Readiness, Retention, RetryPolicy,
};
use tokio::task::JoinHandle;

use crate::adapters::{Adapters, CacheKind, OpenPerWorker, WorkerAdapters};
use crate::config::{RedisTarget, ServeConfig, redacted_url};
use crate::demo;
use crate::failure::Failure;

/// How long a stopping service waits for context writes still being retried.
const BACKGROUND_DRAIN: Duration = Duration::from_secs(5);

/// The service wired on its adapters, without a socket.
pub struct Service {
    personalize: Arc<PersonalizeCall>,
    /// Builds each HTTP worker's own personalization use case, when the adapters open
    /// connections per worker.
    per_worker: Option<PerWorker>,
    record_call: Arc<RecordCall>,
    access: Arc<Access>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    management: ManagementApi,
    trace_requests: bool,
    /// The post-call replay loop; aborted when the service is dropped.
    replay: JoinHandle<()>,
    /// The memory retention loop; aborted when the service is dropped.
    purge: JoinHandle<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("record_call", &self.record_call)
            .finish_non_exhaustive()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.replay.abort();
        self.purge.abort();
    }
}

impl Service {
    /// Wires the use cases on `adapters` as `config` says, every port observed, and starts the
    /// background loops (on the current Tokio runtime). `trace_requests`: OpenTelemetry export
    /// is on, so each request gets a root span.
    pub fn build(config: &ServeConfig, adapters: &Adapters, trace_requests: bool) -> Self {
        let (store_label, cache_label) =
            (adapters.store_kind.as_str(), adapters.cache_kind.as_str());
        let metrics = Arc::new(Metrics::new(
            env!("CARGO_PKG_VERSION"),
            store_label,
            cache_label,
        ));
        let store_probe = Arc::clone(&adapters.store) as Arc<dyn Probe>;
        let cache_probe = Arc::clone(&adapters.cache) as Arc<dyn Probe>;
        metrics.register_pool(store_label, Arc::clone(&store_probe));
        metrics.register_pool(cache_label, Arc::clone(&cache_probe));
        metrics.register_malformed_requests(crate::telemetry::malformed_requests);

        // Every port the use cases get is observed: each call timed, counted and traced.
        let observe = |label| Observer {
            label,
            metrics: Arc::clone(&metrics),
        };
        let (store, cache) = (observe(store_label), observe(cache_label));
        let mut orgs: Arc<dyn OrganizationDirectory> =
            store.wrap(Arc::clone(&adapters.store) as Arc<dyn OrganizationDirectory>);
        if !config.org_cache_ttl.is_zero() {
            // In front of the observed store: only misses are store calls, timed and traced.
            orgs = Arc::new(CachedOrganizations::new(
                orgs,
                config.org_cache_ttl,
                DEFAULT_MAX_ORGANIZATIONS,
            ));
        }
        let contacts: Arc<dyn ContactDirectory> =
            store.wrap(Arc::clone(&adapters.store) as Arc<dyn ContactDirectory>);
        let calls: Arc<dyn CallLog> = store.wrap(Arc::clone(&adapters.store) as Arc<dyn CallLog>);
        let contexts: Arc<dyn CallContextCache> =
            cache.wrap(Arc::clone(&adapters.cache) as Arc<dyn CallContextCache>);
        let outbox: Option<Arc<dyn DeliveryOutbox>> = adapters
            .outbox
            .clone()
            .map(|outbox| cache.wrap(outbox) as Arc<dyn DeliveryOutbox>);
        metrics.declare_dependency(
            store_label,
            &[
                "find_organization",
                "find_caller",
                "find_contact",
                "record_call",
                "find_webhook_signer",
            ],
        );
        metrics.declare_dependency(cache_label, &["put_call_context", "get_call_context"]);
        if outbox.is_some() {
            metrics.declare_dependency(cache_label, &["append_outbox", "read_outbox"]);
        }

        // Credentials the store confirmed, shared by both routes: they verify post-call
        // deliveries while the store is down.
        let known = Arc::new(KnownCredentials::new(
            config.known_credentials_max_age,
            MAX_KNOWN_CREDENTIALS,
        ));
        let personalize = Arc::new(PersonalizeCall::new(
            Arc::clone(&orgs),
            Arc::clone(&contacts),
            Arc::clone(&contexts),
            config.lookup_timeout,
            RetryPolicy::default(),
            Arc::clone(&known),
        ));
        let per_worker = adapters.per_worker.clone().map(|open| {
            per_worker_personalize(
                &open,
                &personalize,
                (store.clone(), store_label),
                (cache.clone(), cache_label),
                (Arc::clone(&contacts), Arc::clone(&contexts)),
            )
        });
        let writes = personalize.background_stats();
        metrics.register_context_writes(move || ContextWriteCounts {
            retried: writes.retried(),
            recovered: writes.recovered(),
            dropped: writes.dropped(),
        });
        let record_call = Arc::new(RecordCall::new(
            PostCallPorts {
                orgs,
                contacts,
                calls,
                cache: contexts,
                outbox,
            },
            PostCallSettings {
                budget: config.post_call_budget,
                outbox: config.outbox_limits,
                dead_letters: config.outbox_limits,
            },
            config.webhook_sealer.clone(),
            known,
        ));
        let outbox_stats = record_call.stats();
        metrics.register_post_call_outbox(move || OutboxCounts {
            queued: outbox_stats.queued(),
            replayed: outbox_stats.replayed(),
            rejected: outbox_stats.rejected(),
            full: outbox_stats.full(),
            dead_letters_dropped: outbox_stats.dead_letters_dropped(),
            backlog: outbox_stats.backlog(),
            backlog_bytes: outbox_stats.backlog_bytes(),
        });
        let replay = {
            let record_call = Arc::clone(&record_call);
            let interval = config.post_call_replay_interval;
            tokio::spawn(async move { record_call.replay_periodically(interval).await })
        };
        let purge = {
            let keeper: Arc<dyn MemoryKeeper> =
                store.wrap(Arc::clone(&adapters.store) as Arc<dyn MemoryKeeper>);
            tokio::spawn(purge_periodically(
                Retention::new(keeper),
                config.memory_purge_interval,
                Arc::clone(&metrics),
            ))
        };
        let readiness = Arc::new(Readiness::new(
            vec![(store_label, store_probe), (cache_label, cache_probe)],
            config.readiness_timeout,
        ));
        let management = ManagementApi {
            manage: Arc::new(Management::new(
                ManagementPorts {
                    orgs: store.wrap(Arc::clone(&adapters.store) as Arc<dyn OrganizationAdmin>),
                    contacts: store.wrap(Arc::clone(&adapters.store) as Arc<dyn ContactAdmin>),
                    import: store.wrap(Arc::clone(&adapters.store) as Arc<dyn ContactImport>),
                    keys: store.wrap(Arc::clone(&adapters.store) as Arc<dyn ManagementKeys>),
                    audit: store.wrap(Arc::clone(&adapters.store) as Arc<dyn AuditLog>),
                    calls: store.wrap(Arc::clone(&adapters.store) as Arc<dyn CallLog>),
                    cache: cache.wrap(Arc::clone(&adapters.cache) as Arc<dyn CallContextCache>),
                },
                config.webhook_sealer.clone(),
            )),
            guard: Arc::new(Guard::new(
                config.trusted_proxies.clone(),
                config.auth_throttle,
                config.admin_budget,
            )),
            metrics: Arc::clone(&metrics),
            idempotency: cache.wrap(Arc::clone(&adapters.cache) as Arc<dyn IdempotencyCache>),
        };
        {
            let manage = Arc::clone(&management.manage);
            metrics.register_audit_failures(move || manage.audit_failures());
        }
        Self {
            management,
            personalize,
            per_worker,
            record_call,
            access: Arc::new(Access::new(
                config.trusted_proxies.clone(),
                config.auth_throttle,
            )),
            metrics,
            readiness,
            trace_requests,
            replay,
            purge,
        }
    }

    /// The webhook routes' use cases and throttle.
    pub fn webhooks(&self) -> Webhooks {
        let webhooks = Webhooks::new(
            Arc::clone(&self.personalize),
            Arc::clone(&self.record_call),
            Arc::clone(&self.access),
        );
        match &self.per_worker {
            Some(build) => webhooks.per_worker(Arc::clone(build)),
            None => webhooks,
        }
    }

    /// The management API's operations and guard (served on `ADMIN_LISTEN_ADDR`).
    pub fn management(&self) -> ManagementApi {
        self.management.clone()
    }

    /// The probe and metrics routes' state.
    pub fn operations(&self) -> Operations {
        Operations {
            metrics: Arc::clone(&self.metrics),
            readiness: Arc::clone(&self.readiness),
            trace_requests: self.trace_requests,
        }
    }

    /// The post-call use case (for tests that replay its outbox at a time of their choosing).
    pub fn record_call(&self) -> &Arc<RecordCall> {
        &self.record_call
    }

    /// Readiness (for tests that drain without a signal).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }
}

/// Runs the retention purge at start and then every `interval` (never when it is zero). Each
/// replica runs it; the store lets one purge at a time, and the others count a `skipped` run.
async fn purge_periodically(retention: Retention, interval: Duration, metrics: Arc<Metrics>) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        match retention.purge(chrono::Utc::now()).await {
            Ok(purged) if !purged.ran => metrics.observe_purge("skipped", 0, 0),
            Ok(purged) => {
                metrics.observe_purge("ran", purged.memories, purged.summaries);
                if purged.memories > 0 || purged.summaries > 0 {
                    tracing::info!(
                        memories = purged.memories,
                        summaries = purged.summaries,
                        "memory past its retention purged"
                    );
                }
            }
            Err(error) => {
                metrics.observe_purge("failed", 0, 0);
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "memory purge failed; retrying at the next interval");
            }
        }
    }
}

/// Each HTTP worker's personalization use case: `base` over the worker's own store and cache
/// (opened by `open` on the worker's thread), observed and their pools reported under the same
/// labels as the shared ones; the shared port where the worker has none of its own.
fn per_worker_personalize(
    open: &OpenPerWorker,
    base: &Arc<PersonalizeCall>,
    (store, store_label): (Observer, &'static str),
    (cache, cache_label): (Observer, &'static str),
    (contacts, contexts): (Arc<dyn ContactDirectory>, Arc<dyn CallContextCache>),
) -> PerWorker {
    let (open, base) = (Arc::clone(open), Arc::clone(base));
    Arc::new(move || {
        let local = open();
        warm_up(&local);
        let contacts = local.store.map_or_else(
            || Arc::clone(&contacts),
            |own| {
                store
                    .metrics
                    .register_pool(store_label, Arc::clone(&own) as Arc<dyn Probe>);
                store.wrap(own as Arc<dyn ContactDirectory>) as Arc<dyn ContactDirectory>
            },
        );
        let contexts = local.cache.map_or_else(
            || Arc::clone(&contexts),
            |own| {
                cache
                    .metrics
                    .register_pool(cache_label, Arc::clone(&own) as Arc<dyn Probe>);
                cache.wrap(own as Arc<dyn CallContextCache>) as Arc<dyn CallContextCache>
            },
        );
        base.with_ports(contacts, contexts)
    })
}

/// Opens one connection of each of a worker's own pools on the worker's runtime (where it is
/// called from), so its first caller does not pay for the handshakes. Failures are only logged
/// at debug level: the shared adapters' warm-up already reports an unreachable dependency.
fn warm_up(local: &WorkerAdapters) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let probes = [
        local.store.clone().map(|s| s as Arc<dyn Probe>),
        local.cache.clone().map(|c| c as Arc<dyn Probe>),
    ];
    for probe in probes.into_iter().flatten() {
        runtime.spawn(async move {
            if let Err(error) = probe.ping().await {
                tracing::debug!(%error, "a worker's own connection could not be opened yet");
            }
        });
    }
}

/// Wraps ports in [`Observed`] under one dependency label.
#[derive(Clone)]
struct Observer {
    label: &'static str,
    metrics: Arc<Metrics>,
}

impl Observer {
    fn wrap<P: ?Sized>(&self, port: Arc<P>) -> Arc<Observed<P>> {
        Arc::new(Observed::new(port, self.label, Arc::clone(&self.metrics)))
    }
}

/// What stops a running [`Application`]: the process's signals, or a test's.
pub trait StopSignals {
    /// Waits for the next stop request; returns its name for the log (`SIGTERM`).
    fn next(&mut self) -> impl Future<Output = &'static str>;
}

/// The [`Service`] listening on `LISTEN_ADDR`.
pub struct Application {
    service: Service,
    server: actix_web::dev::Server,
    addr: SocketAddr,
    /// The management server and its address, when `ADMIN_LISTEN_ADDR` is set.
    admin: Option<(actix_web::dev::Server, SocketAddr)>,
    shutdown_drain: Duration,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the service `relay serve` runs: the adapters `config` names (connecting in the
    /// background), wired by [`Service::build`], listening on `config.listen_addr`. A fresh
    /// embedded store gets the demo organization.
    ///
    /// # Errors
    /// A configuration the adapters refuse, the address cannot be bound, the demo cannot be
    /// seeded.
    pub async fn build(config: ServeConfig, trace_requests: bool) -> Result<Self, Failure> {
        // The phone-number metadata loads on first use (a few hundred ms): pay that now, not
        // while the first caller waits.
        if let Ok(us) = Region::parse("US") {
            let _ = relay_domain::E164::parse("+14165550100", &us);
        }
        let adapters = Adapters::open(&config).await?;
        adapters.warm_up();
        Self::build_with(&config, &adapters, trace_requests).await
    }

    /// [`Application::build`] on adapters the caller chose (fakes, or real ones set up by a
    /// test).
    ///
    /// # Errors
    /// The address cannot be bound; the demo cannot be seeded.
    pub async fn build_with(
        config: &ServeConfig,
        adapters: &Adapters,
        trace_requests: bool,
    ) -> Result<Self, Failure> {
        let service = Service::build(config, adapters, trace_requests);
        let listener = TcpListener::bind(config.listen_addr)
            .with_context(|| format!("cannot listen on LISTEN_ADDR {}", config.listen_addr))?;
        let addr = listener.local_addr().context("listener address")?;
        let server = relay_http::server(
            listener,
            service.webhooks(),
            service.operations(),
            ServerSettings {
                workers: config.http_workers,
                shutdown_timeout: config.shutdown_timeout,
            },
        )
        .context("cannot start the HTTP server")?;
        let admin = match config.admin_listen_addr {
            None => None,
            Some(admin_addr) => {
                let listener = TcpListener::bind(admin_addr)
                    .with_context(|| format!("cannot listen on ADMIN_LISTEN_ADDR {admin_addr}"))?;
                let bound = listener.local_addr().context("admin listener address")?;
                let server = relay_http::admin_server(
                    listener,
                    service.management(),
                    ServerSettings {
                        // Management traffic is light: one worker keeps the webhooks' cores free.
                        workers: Some(1),
                        shutdown_timeout: config.shutdown_timeout,
                    },
                )
                .context("cannot start the management server")?;
                Some((server, bound))
            }
        };
        log_start(config, adapters, addr, &service, trace_requests);
        if let Some((_, admin_addr)) = &admin {
            tracing::info!(
                admin_listen_addr = %admin_addr,
                admin_requests_per_minute = config.admin_budget.per_minute,
                admin_request_burst = config.admin_budget.burst,
                "management API listening on {admin_addr}"
            );
        }
        if adapters.fresh {
            demo::seed(Arc::clone(&adapters.store), addr)
                .await
                .context("cannot seed the demo organization")?;
        }
        Ok(Self {
            service,
            server,
            addr,
            admin,
            shutdown_drain: config.shutdown_drain,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The address it listens on (the port chosen when `LISTEN_ADDR` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The management API's address, when `ADMIN_LISTEN_ADDR` is set (the port chosen when it
    /// asked for port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr)| *addr)
    }

    /// The wired service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until `signals` asks it to stop, then stops gracefully: readiness turns 503 while
    /// connections are still accepted for `SHUTDOWN_DRAIN_SECONDS` (so load balancers stop
    /// routing here first), then no new connections and up to `SHUTDOWN_TIMEOUT_SECONDS` for the
    /// requests in flight, then pending context writes get a few seconds. A second signal cuts
    /// the drain short; a third closes the requests in flight at once.
    ///
    /// # Errors
    /// The HTTP server failed or stopped by itself.
    pub async fn run_until_stopped(self, signals: &mut impl StopSignals) -> Result<(), Failure> {
        let Self {
            service,
            server,
            admin,
            shutdown_drain,
            shutdown_timeout,
            ..
        } = self;
        let handle = server.handle();
        let mut running = tokio::spawn(server);
        let admin = admin.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let signal = tokio::select! {
            signal = signals.next() => signal,
            ended = &mut running => {
                // The server stops by itself only when it failed.
                ended.context("HTTP server task failed")?.context("HTTP server failed")?;
                return Err(anyhow::anyhow!("HTTP server stopped unexpectedly").into());
            }
        };
        service.readiness.start_draining();
        tracing::info!(
            signal,
            drain_s = shutdown_drain.as_secs(),
            "shutdown: readiness is 503, still serving during the drain delay"
        );
        tokio::select! {
            () = tokio::time::sleep(shutdown_drain) => {}
            again = signals.next() => tracing::warn!(signal = again, "second signal: drain cut short"),
        }
        tracing::info!(
            shutdown_timeout_s = shutdown_timeout.as_secs(),
            "no longer accepting connections; finishing the requests in flight"
        );
        // Both listeners stop together: the management one's requests in flight (a bulk import
        // included) get the same SHUTDOWN_TIMEOUT_SECONDS.
        let admin_handle = admin.as_ref().map(|(handle, _)| handle.clone());
        let stop = |graceful: bool| {
            let (handle, admin_handle) = (handle.clone(), admin_handle.clone());
            async move {
                let admin = async {
                    if let Some(admin) = admin_handle {
                        admin.stop(graceful).await;
                    }
                };
                tokio::join!(handle.stop(graceful), admin);
            }
        };
        let forced = tokio::select! {
            () = stop(true) => false,
            again = signals.next() => {
                tracing::warn!(signal = again, "another signal: closing the requests in flight now");
                stop(false).await;
                true
            }
        };
        running
            .await
            .context("HTTP server task failed")?
            .context("HTTP server failed")?;
        if let Some((_, running)) = admin {
            running
                .await
                .context("management server task failed")?
                .context("management server failed")?;
        }
        service.replay.abort();
        let pending = if forced {
            0
        } else {
            service
                .personalize
                .drain_background_writes(BACKGROUND_DRAIN)
                .await
        };
        let stats = service.personalize.background_stats();
        tracing::info!(
            forced,
            pending,
            context_writes_retried = stats.retried(),
            context_writes_dropped = stats.dropped() + pending as u64,
            "relay stopped"
        );
        Ok(())
    }
}

/// The start-up line: what was chosen and every setting that shapes behaviour (no secrets).
fn log_start(
    config: &ServeConfig,
    adapters: &Adapters,
    addr: SocketAddr,
    service: &Service,
    trace_requests: bool,
) {
    let (store, cache) = (adapters.store_kind.as_str(), adapters.cache_kind.as_str());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen_addr = %addr,
        store,
        cache,
        database_url = %redacted_url(&config.store.database_url),
        redis_url = config.redis.as_ref().map(RedisTarget::redacted),
        redis_cluster = matches!(adapters.cache_kind, CacheKind::Redis { cluster: true }),
        redis_key_prefix = %config.redis_key_prefix,
        lookup_timeout_ms = millis(config.lookup_timeout),
        readiness_timeout_ms = millis(config.readiness_timeout),
        org_cache_ttl_s = config.org_cache_ttl.as_secs(),
        post_call_signatures = config.webhook_sealer.is_some(),
        post_call_outbox = service.record_call.has_outbox(),
        post_call_outbox_max_entries = config.outbox_limits.max_entries,
        post_call_outbox_max_bytes = config.outbox_limits.max_bytes,
        known_credentials_max_age_s = config.known_credentials_max_age.as_secs(),
        trusted_proxies = !config.trusted_proxies.is_empty(),
        auth_failures_per_minute = config.auth_throttle.failures_per_minute,
        auth_failure_burst = config.auth_throttle.burst,
        shutdown_drain_s = config.shutdown_drain.as_secs(),
        shutdown_timeout_s = config.shutdown_timeout.as_secs(),
        database_max_connections = config.store.max_connections,
        redis_pool_size = config.redis_pool_size,
        http_workers = config.http_workers,
        otel_tracing = trace_requests,
        "relay listening on {addr}"
    );
    if adapters.store_kind == crate::adapters::StoreKind::Sqlite
        || adapters.cache_kind == CacheKind::InProcess
    {
        tracing::info!(
            "embedded mode: store {store} at DATABASE_URL, call contexts {cache}; set DATABASE_URL=postgres://... and REDIS_URL for production"
        );
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
