//! What each command does: wire the adapters it needs and call the use cases.

use std::io::IsTerminal as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use relay_domain::{OrgId, OrgName, Region, mask_phone};
use relay_memory_cache::{CachedOrganizations, DEFAULT_MAX_ORGANIZATIONS};
use relay_observability::{Metrics, Observed};
use relay_ports::{
    AdminError, CallContextCache, CallLog, ContactDirectory, DeliveryOutbox, OrganizationDirectory,
    Probe, Store,
};
use relay_postgres::PgStore;
use relay_redis::RedisCache;
use relay_usecase::post_call::{OutboxStats, PostCallPorts, PostCallSettings, RecordCall};
use relay_usecase::{
    Admin, BackgroundWriteStats, ContactImporter, FallbackNameError, KnownCredentials,
    MAX_KNOWN_CREDENTIALS, PersonalizeCall, RawContact, Readiness, RetryPolicy, WebhookSecret,
    WebhookSecretError, check_prompt_text,
};

use crate::cli::{CallsCommand, Command, ContactsCommand, ImportFile, OrgCommand, SecretCommand};
use crate::config::{
    ConfigError, Env, RedisTarget, ServeConfig, StoreConfig, redacted_url, webhook_sealer_from_env,
};
use crate::{csv_source, import_outcome, stores};

/// Rows per upsert round trip during an import.
const IMPORT_BATCH: usize = 2_000;

/// How long a stopping service waits for context writes still being retried.
const BACKGROUND_DRAIN: Duration = Duration::from_secs(5);

/// Why a command failed: configuration (exit 78) or anything else (exit 1).
pub(crate) enum Failure {
    Config(ConfigError),
    Other(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Self::Other(e.into())
    }
}

fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|name: &str| std::env::var(name).ok())
}

pub(crate) async fn run(command: Command, tracing_enabled: bool) -> Result<(), Failure> {
    let env = process_env();
    match command {
        Command::Serve => serve(ServeConfig::from_env(&env)?, tracing_enabled).await,
        Command::Healthcheck => healthcheck(ServeConfig::listen_addr_from_env(&env)?).await,
        Command::Migrate { create_database } => {
            stores::migrate(&StoreConfig::from_env(&env)?, create_database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Org(cmd) => org(cmd, &env).await,
        Command::Calls(cmd) => calls(cmd, &StoreConfig::from_env(&env)?).await,
        Command::Secret(cmd) => secret(cmd, &StoreConfig::from_env(&env)?).await,
        Command::Contacts(ContactsCommand::Import { org_id, file }) => {
            import(org_id, &file, &StoreConfig::from_env(&env)?).await
        }
    }
}

async fn admin_store(config: &StoreConfig) -> Result<Arc<dyn Store>, Failure> {
    Ok(stores::for_command(config).await?.store)
}

async fn serve(config: ServeConfig, tracing_enabled: bool) -> Result<(), Failure> {
    // Installed first: from here on SIGTERM drains instead of killing the process.
    let mut signals = Signals::install().context("cannot install the signal handlers")?;
    // The phone-number metadata loads on first use (a few hundred ms): pay that now, not while
    // the first caller waits.
    let _ = relay_domain::E164::parse(
        "+14165550100",
        &Region::parse("US").expect("US is a region"),
    );
    let opened = stores::for_serve(&config.store).await?;
    let cache = stores::cache(&config)?;
    warm_up(opened.postgres.as_ref(), cache.redis.as_ref());

    let metrics = Arc::new(Metrics::new(
        env!("CARGO_PKG_VERSION"),
        opened.name,
        cache.name,
    ));
    let store_probe: Arc<dyn Probe> = Arc::clone(&opened.store) as Arc<dyn Probe>;
    let cache_probe: Arc<dyn Probe> = Arc::clone(&cache.cache) as Arc<dyn Probe>;
    metrics.register_pool(opened.name, Arc::clone(&store_probe));
    metrics.register_pool(cache.name, Arc::clone(&cache_probe));
    let store = Arc::clone(&opened.store);
    let mut observed_orgs: Arc<dyn OrganizationDirectory> = Arc::new(Observed::new(
        Arc::clone(&store) as Arc<dyn OrganizationDirectory>,
        opened.name,
        Arc::clone(&metrics),
    ));
    if !config.org_cache_ttl.is_zero() {
        // In front of the observed store: only misses are store calls, timed and traced.
        observed_orgs = Arc::new(CachedOrganizations::new(
            observed_orgs,
            config.org_cache_ttl,
            DEFAULT_MAX_ORGANIZATIONS,
        ));
    }
    let observed_contacts: Arc<dyn ContactDirectory> = Arc::new(Observed::new(
        Arc::clone(&store) as Arc<dyn ContactDirectory>,
        opened.name,
        Arc::clone(&metrics),
    ));
    let observed_cache: Arc<dyn CallContextCache> = Arc::new(Observed::new(
        Arc::clone(&cache.cache) as Arc<dyn CallContextCache>,
        cache.name,
        Arc::clone(&metrics),
    ));
    let (personalize_orgs, personalize_contacts, personalize_cache) = (
        Arc::clone(&observed_orgs),
        Arc::clone(&observed_contacts),
        Arc::clone(&observed_cache),
    );
    let known = Arc::new(KnownCredentials::new(
        config.known_credentials_max_age,
        MAX_KNOWN_CREDENTIALS,
    ));
    let personalize = Arc::new(PersonalizeCall::new(
        observed_orgs,
        observed_contacts,
        observed_cache,
        config.lookup_timeout,
        RetryPolicy::default(),
        Arc::clone(&known),
    ));
    register_background_counters(&metrics, &personalize.background_stats());
    let outbox = cache
        .redis
        .clone()
        .map(|redis| Arc::new(redis) as Arc<dyn DeliveryOutbox>);
    let record_call = Arc::new(RecordCall::new(
        PostCallPorts {
            orgs: Arc::clone(&personalize_orgs),
            contacts: Arc::clone(&personalize_contacts),
            calls: Arc::clone(&store) as Arc<dyn CallLog>,
            cache: Arc::clone(&personalize_cache),
            outbox,
        },
        PostCallSettings {
            budget: POST_CALL_BUDGET,
            outbox: config.outbox_limits,
            dead_letters: config.outbox_limits,
        },
        config.webhook_sealer.clone(),
        known,
    ));
    register_outbox_counters(&metrics, &record_call.stats());
    metrics.register_counter_fn(
        "relay_http_malformed_requests",
        "Requests the HTTP server refused before any route saw them (malformed request line or \
         header, too many or too large headers: 400/431 with an empty body)",
        crate::telemetry::malformed_requests,
    );
    let replayer = tokio::spawn(replay_post_calls(
        Arc::clone(&record_call),
        config.post_call_replay_interval,
    ));
    metrics.declare_dependency(opened.name, &["find_organization", "find_contact"]);
    metrics.declare_dependency(cache.name, &["put_call_context"]);
    let readiness = Arc::new(Readiness::new(
        vec![(opened.name, store_probe), (cache.name, cache_probe)],
        config.readiness_timeout,
    ));

    let listener = TcpListener::bind(config.listen_addr)
        .with_context(|| format!("cannot listen on LISTEN_ADDR {}", config.listen_addr))?;
    let addr = listener.local_addr().context("listener address")?;
    let server = relay_http::server(
        listener,
        relay_http::Webhooks::new(
            Arc::clone(&personalize),
            Arc::clone(&record_call),
            Arc::new(relay_http::Access::new(
                config.trusted_proxies.clone(),
                config.auth_throttle,
            )),
        ),
        relay_http::Operations {
            metrics,
            readiness: Arc::clone(&readiness),
            trace_requests: tracing_enabled,
        },
        relay_http::ServerSettings {
            workers: config.http_workers,
            shutdown_timeout: config.shutdown_timeout,
        },
    )
    .context("cannot start the HTTP server")?;
    let handle = server.handle();
    let mut running = tokio::spawn(server);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen_addr = %addr,
        store = opened.name,
        cache = cache.name,
        database_url = %redacted_url(&config.store.database_url),
        redis_url = config.redis.as_ref().map(RedisTarget::redacted),
        redis_cluster = cache.redis.as_ref().is_some_and(RedisCache::is_cluster),
        redis_key_prefix = %config.redis_key_prefix,
        lookup_timeout_ms = millis(config.lookup_timeout),
        readiness_timeout_ms = millis(config.readiness_timeout),
        org_cache_ttl_s = config.org_cache_ttl.as_secs(),
        post_call_signatures = config.webhook_sealer.is_some(),
        post_call_outbox = record_call.has_outbox(),
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
        otel_tracing = tracing_enabled,
        "relay listening on {addr}"
    );
    if opened.name == "sqlite" || cache.name == "in-process" {
        tracing::info!(
            "embedded mode: store {} at DATABASE_URL, call contexts {}; set DATABASE_URL=postgres://... and REDIS_URL for production",
            opened.name,
            cache.name
        );
    }
    if opened.fresh {
        seed_demo(store, addr)
            .await
            .context("cannot seed the demo organization")?;
    }

    let signal = tokio::select! {
        signal = signals.next() => signal,
        ended = &mut running => {
            // The server stops by itself only when it failed.
            ended.context("HTTP server task failed")?.context("HTTP server failed")?;
            return Err(anyhow::anyhow!("HTTP server stopped unexpectedly").into());
        }
    };
    // Readiness turns 503 now; connections are still accepted during the drain delay, so the
    // load balancer has time to stop sending calls here before anything is refused.
    readiness.start_draining();
    tracing::info!(
        signal,
        drain_s = config.shutdown_drain.as_secs(),
        "shutdown: readiness is 503, still serving during the drain delay"
    );
    tokio::select! {
        () = tokio::time::sleep(config.shutdown_drain) => {}
        again = signals.next() => tracing::warn!(signal = again, "second signal: drain cut short"),
    }
    tracing::info!(
        shutdown_timeout_s = config.shutdown_timeout.as_secs(),
        "no longer accepting connections; finishing the requests in flight"
    );
    let forced = tokio::select! {
        () = handle.stop(true) => false,
        again = signals.next() => {
            tracing::warn!(signal = again, "another signal: closing the requests in flight now");
            handle.stop(false).await;
            true
        }
    };
    running
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    replayer.abort();
    let pending = if forced {
        0
    } else {
        personalize.drain_background_writes(BACKGROUND_DRAIN).await
    };
    let stats = personalize.background_stats();
    tracing::info!(
        forced,
        pending,
        context_writes_retried = stats.retried(),
        context_writes_dropped = stats.dropped() + pending as u64,
        "relay stopped"
    );
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A counter read at scrape time: name, help, reader.
type ScrapedCounter<S> = (&'static str, &'static str, fn(&S) -> u64);

fn register_background_counters(metrics: &Metrics, stats: &Arc<BackgroundWriteStats>) {
    let counters: [ScrapedCounter<BackgroundWriteStats>; 3] = [
        (
            "relay_call_context_writes_retried",
            "Call-context writes that failed on the request path and were handed to the background",
            BackgroundWriteStats::retried,
        ),
        (
            "relay_call_context_writes_recovered",
            "Background call-context writes that finally succeeded",
            BackgroundWriteStats::recovered,
        ),
        (
            "relay_call_context_writes_dropped",
            "Call-context writes given up (every retry failed, or too many pending): the \
             post-call webhook will not find these calls",
            BackgroundWriteStats::dropped,
        ),
    ];
    for (name, help, read) in counters {
        let stats = Arc::clone(stats);
        metrics.register_counter_fn(name, help, move || read(&stats));
    }
}

fn register_outbox_counters(metrics: &Metrics, stats: &Arc<OutboxStats>) {
    let counters: [ScrapedCounter<OutboxStats>; 5] = [
        (
            "relay_post_call_queued",
            "Post-call deliveries appended to the Redis outbox because the store was down",
            OutboxStats::queued,
        ),
        (
            "relay_post_call_replayed",
            "Queued post-call deliveries recorded by the replay",
            OutboxStats::replayed,
        ),
        (
            "relay_post_call_replay_rejected",
            "Queued post-call deliveries the replay moved to the dead letters (refused \
             credentials, invalid, unreadable, refused by the store)",
            OutboxStats::rejected,
        ),
        (
            "relay_post_call_outbox_full",
            "Post-call deliveries refused (503) because the outbox was at \
             POST_CALL_OUTBOX_MAX_ENTRIES or POST_CALL_OUTBOX_MAX_MB",
            OutboxStats::full,
        ),
        (
            "relay_post_call_dead_letters_dropped",
            "Oldest dead letters dropped to keep the dead-letter stream within \
             POST_CALL_OUTBOX_MAX_ENTRIES and POST_CALL_OUTBOX_MAX_MB",
            OutboxStats::dead_letters_dropped,
        ),
    ];
    for (name, help, read) in counters {
        let stats = Arc::clone(stats);
        metrics.register_counter_fn(name, help, move || read(&stats));
    }
    let gauges: [ScrapedCounter<OutboxStats>; 2] = [
        (
            "relay_post_call_outbox_backlog",
            "Post-call deliveries waiting in the Redis outbox, as of this replica's last replay \
             round (shared by every replica)",
            OutboxStats::backlog,
        ),
        (
            "relay_post_call_outbox_bytes",
            "Bytes the waiting post-call deliveries take in Redis, as the outbox's byte bound \
             counts them, as of this replica's last replay round",
            OutboxStats::backlog_bytes,
        ),
    ];
    for (name, help, read) in gauges {
        let stats = Arc::clone(stats);
        metrics.register_gauge_fn(name, help, move || read(&stats));
    }
}

/// How long one post-call delivery may wait for Postgres and Redis before it is queued instead.
const POST_CALL_BUDGET: Duration = Duration::from_secs(5);

/// Longest one replay round (a batch) may take.
const REPLAY_ROUND_LIMIT: Duration = Duration::from_secs(60);

/// Most queued deliveries replayed per round.
const REPLAY_BATCH: usize = 100;

/// Every `interval`, replays queued post-call deliveries until the outbox is empty or the store
/// is still down. Several replicas may replay at once: recording is idempotent.
async fn replay_post_calls(record: Arc<RecordCall>, interval: Duration) {
    if !record.has_outbox() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Batch after batch while each one comes back full and the store answers.
        loop {
            // Each delivery's store work has its budget; this bounds the outbox's own commands,
            // so a Redis that hangs cannot stall the replay for good. An entry recorded but not
            // yet removed when the round is cut is replayed again: recording is idempotent.
            let round =
                tokio::time::timeout(REPLAY_ROUND_LIMIT, record.replay_queued(REPLAY_BATCH));
            let report = match round.await {
                Ok(Ok(report)) => report,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the post-call outbox cannot be read");
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        limit_s = REPLAY_ROUND_LIMIT.as_secs(),
                        "a post-call replay round ran out of time; the rest waits for the next"
                    );
                    break;
                }
            };
            if report.replayed + report.rejected > 0 {
                tracing::info!(
                    replayed = report.replayed,
                    rejected = report.rejected,
                    store_down = report.store_down,
                    "post-call outbox replayed (refused ones are in the dead letters)"
                );
            }
            if report.store_down || report.replayed + report.rejected < REPLAY_BATCH {
                break;
            }
        }
    }
}

/// SIGTERM (Kubernetes) and SIGINT (a terminal), installed once at start.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// `GET /healthz` on the loopback address of `listen_addr`'s port, within 2 s.
async fn healthcheck(listen_addr: std::net::SocketAddr) -> Result<(), Failure> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let target = if listen_addr.ip().is_unspecified() {
        std::net::SocketAddr::new(
            if listen_addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            listen_addr.port(),
        )
    } else {
        listen_addr
    };
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .map_err(|_| anyhow::anyhow!("{target} did not answer /healthz within 2 s"))?
        .with_context(|| format!("cannot reach {target}"))?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{target} answered /healthz with {:?}",
            String::from_utf8_lossy(&head)
        )
        .into())
    }
}

/// Opens one connection to each remote dependency in the background, so the first call does
/// not pay for the handshakes. Failures are only logged: a dependency that is down must not stop
/// the start.
fn warm_up(postgres: Option<&PgStore>, redis: Option<&RedisCache>) {
    if let Some(store) = postgres {
        let pool = store.pool().clone();
        tokio::spawn(async move {
            if let Err(error) = pool.acquire().await {
                tracing::warn!(%error, "Postgres is not reachable yet; webhook calls answer {{}} until it is");
            }
        });
    }
    if let Some(cache) = redis {
        let cache = cache.clone();
        tokio::spawn(async move {
            if let Err(error) = relay_ports::Probe::ping(&cache).await {
                tracing::warn!(%error, "Redis is not reachable yet; call contexts are retried in the background");
            }
        });
    }
}

/// First start of a fresh embedded store: a demo organization with one contact and one secret,
/// and a ready-to-paste request. The token exists in clear only in this output.
#[allow(
    clippy::print_stdout,
    reason = "the demo's token and curl are for the person at the terminal"
)]
async fn seed_demo(store: Arc<dyn Store>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let admin = Admin::new(store.clone());
    let name = OrgName::parse("Demo Org").map_err(|e| anyhow::anyhow!(e))?;
    let region = Region::parse("CA").map_err(|e| anyhow::anyhow!(e))?;
    let org = admin.create_organization(&name, region).await?;
    let alex = RawContact {
        line: 1,
        first_name: Some("Alex".into()),
        last_name: Some("Morgan".into()),
        phone: Some("+14165550100".into()),
    };
    ContactImporter::new(store, 1)
        .import(&org, [Ok(alex)], |_| {})
        .await?;
    let issued = admin.issue_secret(org.id).await?;
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    println!(
        "\nFresh embedded store: seeded \"Demo Org\" (region CA) with the contact Alex Morgan, +14165550100.\n\
         Its tool secret is shown this once (`relay secret add {org}` makes another):\n\n    {token}\n\n\
         Try it:\n\n    curl -s http://{host}/api/webhook/elevenlabs/personalization \\\n      \
         -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"conversation_id\":\"demo_1\",\"caller_id\":\"+14165550100\"}}'\n",
        org = org.id,
        token = issued.token.expose(),
    );
    Ok(())
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn org<F: Fn(&str) -> Option<String>>(cmd: OrgCommand, env: &Env<F>) -> Result<(), Failure> {
    if let OrgCommand::SetWebhookSecret { org_id } = cmd {
        return set_webhook_secret(org_id, env).await;
    }
    let admin = Admin::new(admin_store(&StoreConfig::from_env(env)?).await?);
    match cmd {
        OrgCommand::Create { name, region } => {
            // `org_name` reaches the agent's prompt: refuse what it would not get as typed
            // rather than store one name and have the agent say another.
            check_prompt_text(&name)
                .map_err(|e| anyhow::anyhow!("--name refused, nothing stored: {e}"))?;
            let name = OrgName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let region = Region::parse(&region).map_err(|e| anyhow::anyhow!("--region: {e}"))?;
            let org = admin.create_organization(&name, region).await?;
            println!("{}", org.id);
        }
        OrgCommand::List => {
            for org in admin.list_organizations().await? {
                println!("{}\t{}\t{}", org.id, org.default_region, org.name);
            }
        }
        OrgCommand::SetFallback {
            org_id,
            caller_name,
        } => {
            let org = admin
                .set_unknown_caller_name(org_id, &caller_name)
                .await
                .map_err(|e| match e {
                    FallbackNameError::Refused(reason) => Failure::Other(anyhow::anyhow!(
                        "--caller-name refused, nothing stored: {reason}"
                    )),
                    FallbackNameError::Admin(e) => e.into(),
                })?;
            println!("{}\t{:?}", org.id, org.unknown_caller_name);
        }
        OrgCommand::SetWebhookSecret { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `relay org set-webhook-secret`: the key is checked before connecting (a missing key is a
/// configuration error, not a store error), the secret read from all of stdin.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the command's result; the prompt goes to stderr"
)]
async fn set_webhook_secret<F: Fn(&str) -> Option<String>>(
    org_id: OrgId,
    env: &Env<F>,
) -> Result<(), Failure> {
    use secrecy::ExposeSecret as _;
    use std::io::Read as _;
    /// A secret is well under 1 KiB; more on stdin is the wrong file piped in.
    const MAX_STDIN_BYTES: u64 = 4 * 1024;
    let sealer = webhook_sealer_from_env(env)?.ok_or(ConfigError::Invalid {
        name: "WEBHOOK_SECRET_KEY",
        reason: "must be set to store a webhook secret (openssl rand -base64 32)".into(),
    })?;
    if std::io::stdin().is_terminal() {
        eprintln!("paste the webhook secret, then Enter and Ctrl-D");
    }
    // All of stdin, not its first line: a second line would otherwise be dropped without a word.
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut input)
        .context("cannot read the webhook secret from stdin")?;
    let input = secrecy::SecretBox::new(Box::new(input));
    let refused = |why: &str| anyhow::anyhow!("{why}; nothing stored");
    if input.expose_secret().len() as u64 > MAX_STDIN_BYTES {
        return Err(refused("stdin holds more than 4096 bytes, not one webhook secret").into());
    }
    let text = std::str::from_utf8(input.expose_secret())
        .map_err(|_| refused("the webhook secret on stdin is not valid UTF-8"))?;
    let secret = WebhookSecret::parse(&secrecy::SecretString::from(text)).map_err(|e| match e {
        WebhookSecretError::Empty => anyhow::anyhow!(
            "{e}: pipe it on stdin, e.g. `relay org set-webhook-secret {org_id} < secret.txt`; \
             nothing stored"
        ),
        _ => refused(&e.to_string()),
    })?;
    Admin::new(admin_store(&StoreConfig::from_env(env)?).await?)
        .set_webhook_secret(org_id, &secret, &sealer)
        .await?;
    println!("{org_id}\twebhook secret stored (encrypted)");
    Ok(())
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn calls(cmd: CallsCommand, config: &StoreConfig) -> Result<(), Failure> {
    let store = admin_store(config).await?;
    match cmd {
        CallsCommand::List {
            org_id,
            since,
            limit,
        } => {
            let since = since.map(|s| s.resolve(chrono::Utc::now()));
            for call in store.list_calls(org_id, since, limit).await? {
                let one_line = |s: Option<&str>| {
                    s.map_or_else(
                        || "-".to_owned(),
                        |s| s.split_whitespace().collect::<Vec<_>>().join(" "),
                    )
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    call.received_at.to_rfc3339(),
                    call.kind.as_str(),
                    call.id,
                    call.conversation_id,
                    call.contact_id
                        .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    one_line(call.direction.as_deref()),
                    call.external_number
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), mask_phone),
                    one_line(call.status.as_deref()),
                    one_line(call.call_successful.as_deref()),
                    call.duration_secs
                        .map_or_else(|| "-".to_owned(), |d| d.to_string()),
                    one_line(call.summary.as_deref()),
                );
            }
        }
    }
    Ok(())
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the result; notes go to stderr"
)]
async fn secret(cmd: SecretCommand, config: &StoreConfig) -> Result<(), Failure> {
    let admin = Admin::new(admin_store(config).await?);
    match cmd {
        SecretCommand::Add { org_id } => {
            let issued = admin.issue_secret(org_id).await?;
            eprintln!(
                "secret {} created for organization {org_id}; the token below is shown only once",
                issued.info.id
            );
            println!("{}", issued.token.expose());
        }
        SecretCommand::List { org_id } => {
            for s in admin.list_secrets(org_id).await? {
                let revoked = s.revoked_at.map_or_else(
                    || "live".to_owned(),
                    |t| format!("revoked {}", t.to_rfc3339()),
                );
                println!("{}\t{}\t{revoked}", s.id, s.created_at.to_rfc3339());
            }
        }
        SecretCommand::Revoke { secret_id } => {
            let s = admin.revoke_secret(secret_id).await?;
            let at = s.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            println!("{}\t{at}", s.id);
        }
    }
    Ok(())
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the summary; rejections go to stderr"
)]
async fn import(org_id: OrgId, file: &ImportFile, config: &StoreConfig) -> Result<(), Failure> {
    let store = admin_store(config).await?;
    let org = Admin::new(store.clone()).organization(org_id).await?;
    let (rows, stopped) = csv_source::open(&file.path)?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {human_pos} rows  {per_sec}  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let importer = ContactImporter::new(store, IMPORT_BATCH);
    let report = importer
        .import(&org, rows, |n| progress.set_position(n))
        .await?;
    progress.finish_and_clear();

    for line in import_outcome::rejection_lines(&report) {
        eprintln!("{line}");
    }
    eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());
    println!("{}", import_outcome::summary(&report));
    if let Some(error) = stopped.take() {
        return Err(import_outcome::stopped(&file.path, &error, &report).into());
    }
    import_outcome::verdict(&report, file.max_rejected)?;
    Ok(())
}
