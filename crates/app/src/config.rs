//! Configuration: environment variables, read once at start into a typed [`ServeConfig`]
//! (or [`StoreConfig`] for the admin commands).
//!
//! A missing or malformed variable is one line that names it; a secret's value is never echoed.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use relay_http::admin::RequestBudget;
use relay_http::{ThrottleSettings, TrustedProxies};
use relay_ports::OutboxLimits;
use relay_usecase::post_call::SecretSealer;
use secrecy::{ExposeSecret as _, SecretString};

/// A variable is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable does not parse; the message says what was expected.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong, without the secret value.
        reason: String,
    },
}

/// Reads variables through `lookup`, so tests need not touch the process environment.
pub struct Env<F>(pub F);

impl<F> std::fmt::Debug for Env<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A variable as set, or `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A variable parsed as `T`, or `default` when unset.
    pub fn parsed<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: format!("{e} (got {raw:?})"),
                }),
        }
    }

    /// A whole number within `range`, or `default` when unset.
    pub fn number_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let value = self.parsed(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name,
                reason: format!("{value} is outside {}..={}", range.start(), range.end()),
            })
        }
    }

    /// [`Self::number_in`] read as whole seconds.
    pub fn seconds_in(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number_in(name, default, range)
            .map(Duration::from_secs)
    }

    /// [`Self::number_in`] read as milliseconds.
    pub fn millis_in(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number_in(name, default, range)
            .map(Duration::from_millis)
    }
}

/// Query parameters shown as they are in the start-up log; any other value (`password=`,
/// `sslpassword=`, keys, tokens) is replaced by `***`.
const SHOWN_URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "application_name",
    "connect_timeout",
    "statement-cache-capacity",
    "target_session_attrs",
    "dbname",
    "host",
    "port",
    "user",
    "mode",
    "protocol",
];

/// A URL with its password and every query value not known to be harmless replaced by `***`,
/// for the start-up log. A URL that does not parse is not shown at all.
pub fn redacted_url(url: &SecretString) -> String {
    let Ok(mut parsed) = url::Url::parse(url.expose_secret()) else {
        return "<unparsable URL>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let shown = SHOWN_URL_PARAMETERS.contains(&k.as_ref());
                (
                    k.into_owned(),
                    if shown {
                        v.into_owned()
                    } else {
                        "***".to_owned()
                    },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Where `serve` listens when `LISTEN_ADDR` is not set.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 2212);

/// The embedded store used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/relay.db";

/// Which store a `DATABASE_URL` selects, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:` (embedded, one file).
    Sqlite,
}

impl Backend {
    fn of(url: &SecretString) -> Result<Self, ConfigError> {
        let url = url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                reason: "expected a postgres://, postgresql:// or sqlite: URL".into(),
            })
        }
    }
}

/// Where the data lives: needed by every command.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `DATABASE_URL` (default [`DEFAULT_DATABASE_URL`]).
    pub database_url: SecretString,
    /// The store its scheme selects.
    pub backend: Backend,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
}

impl StoreConfig {
    /// Reads the store's variables.
    ///
    /// # Errors
    /// The first missing or malformed variable.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let database_url = env.get("DATABASE_URL").map_or_else(
            || SecretString::from(DEFAULT_DATABASE_URL),
            SecretString::from,
        );
        Ok(Self {
            backend: Backend::of(&database_url)?,
            database_url,
            max_connections: env.number_in("DATABASE_MAX_CONNECTIONS", 10, 1..=1_000)?,
        })
    }
}

/// Where the call contexts go when not in process.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// `REDIS_URL`: one server (or a managed endpoint that hides its failover).
    Single(SecretString),
    /// `REDIS_CLUSTER_URLS`: comma-separated seed nodes of a Redis Cluster.
    Cluster(Vec<SecretString>),
}

impl RedisTarget {
    fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Option<Self>, ConfigError> {
        match (env.get("REDIS_URL"), env.get("REDIS_CLUSTER_URLS")) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                name: "REDIS_CLUSTER_URLS",
                reason: "set either REDIS_URL or REDIS_CLUSTER_URLS, not both".into(),
            }),
            (Some(url), None) => Ok(Some(Self::Single(SecretString::from(url)))),
            (None, Some(urls)) => {
                let urls: Vec<SecretString> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(SecretString::from)
                    .collect();
                if urls.is_empty() {
                    return Err(ConfigError::Invalid {
                        name: "REDIS_CLUSTER_URLS",
                        reason: "expected comma-separated redis:// URLs".into(),
                    });
                }
                Ok(Some(Self::Cluster(urls)))
            }
            (None, None) => Ok(None),
        }
    }

    /// The URLs with passwords redacted, comma-separated, for the start-up log.
    pub fn redacted(&self) -> String {
        match self {
            Self::Single(url) => redacted_url(url),
            Self::Cluster(urls) => urls.iter().map(redacted_url).collect::<Vec<_>>().join(","),
        }
    }
}

/// Everything `relay serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The store.
    pub store: StoreConfig,
    /// `REDIS_URL` or `REDIS_CLUSTER_URLS`; neither selects the in-process cache.
    pub redis: Option<RedisTarget>,
    /// `REDIS_KEY_PREFIX` (default `relay:`).
    pub redis_key_prefix: String,
    /// `REDIS_POOL_SIZE` (default 16).
    pub redis_pool_size: usize,
    /// `LISTEN_ADDR` (default `0.0.0.0:2212`).
    pub listen_addr: SocketAddr,
    /// `ADMIN_LISTEN_ADDR` (default: unset, no management API): where the management API
    /// listens. Never expose it through the webhook ingress.
    pub admin_listen_addr: Option<SocketAddr>,
    /// `ADMIN_REQUESTS_PER_MINUTE` (default 1,200, 0 turns the budget off) and
    /// `ADMIN_REQUEST_BURST` (default 200): requests each management key may make.
    pub admin_budget: RequestBudget,
    /// `LOOKUP_TIMEOUT_MS` (default 800): the dependency budget of one webhook call.
    pub lookup_timeout: Duration,
    /// `HTTP_WORKERS` (default: one per physical core).
    pub http_workers: Option<usize>,
    /// `SHUTDOWN_DRAIN_SECONDS` (default 5): after SIGTERM, how long readiness reports 503 while
    /// new connections are still accepted, so load balancers stop routing here first.
    pub shutdown_drain: Duration,
    /// `SHUTDOWN_TIMEOUT_SECONDS` (default 10): after the drain, how long in-flight requests may
    /// take before their connections are closed.
    pub shutdown_timeout: Duration,
    /// `READINESS_TIMEOUT_MS` (default 500): how long `/readyz` waits for each dependency.
    pub readiness_timeout: Duration,
    /// `ORG_CACHE_TTL_SECONDS` (default 10, 0 turns the cache off): how long the organization
    /// found for a token is kept in memory, hence how long a revoked secret keeps working.
    pub org_cache_ttl: Duration,
    /// `WEBHOOK_SECRET_KEY`: opens the organizations' post-call webhook secrets; unset, only
    /// Bearer-authenticated post-call deliveries are accepted.
    pub webhook_sealer: Option<Arc<SecretSealer>>,
    /// `POST_CALL_REPLAY_INTERVAL_SECONDS` (default 5): how often queued post-call deliveries
    /// are retried against the store.
    pub post_call_replay_interval: Duration,
    /// `MEMORY_PURGE_INTERVAL_SECONDS` (default 3,600, 0 turns the job off): how often the
    /// service deletes returning-caller memory and call summaries past each organization's
    /// retention (one replica at a time).
    pub memory_purge_interval: Duration,
    /// `POST_CALL_OUTBOX_MAX_ENTRIES` (default 10,000) and `POST_CALL_OUTBOX_MAX_MB` (default
    /// 64): the bounds of the post-call outbox, and of its dead letters.
    pub outbox_limits: OutboxLimits,
    /// `TRUSTED_PROXIES` (default none): the proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `AUTH_FAILURES_PER_MINUTE` (default 60, 0 turns throttling off) and `AUTH_FAILURE_BURST`
    /// (default 30): failed authentications allowed per client address.
    pub auth_throttle: ThrottleSettings,
    /// `KNOWN_CREDENTIALS_MAX_AGE_SECONDS` (default 86,400): how long credentials the store
    /// confirmed still verify a post-call delivery while the store is down (and let a throttled
    /// client address through).
    pub known_credentials_max_age: Duration,
    /// How long one post-call delivery may wait for the store and the cache before it is queued
    /// instead (not a variable: [`POST_CALL_BUDGET`], well inside ElevenLabs' wait).
    pub post_call_budget: Duration,
}

/// How long one post-call delivery may wait for Postgres and Redis before it is queued instead.
pub const POST_CALL_BUDGET: Duration = Duration::from_secs(5);

/// `WEBHOOK_SECRET_KEY`, the base64 of 32 random bytes, as a sealer; `None` when unset.
///
/// # Errors
/// It is set but not 32 bytes of base64 (the value is not echoed).
pub fn webhook_sealer_from_env<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<Arc<SecretSealer>>, ConfigError> {
    env.get("WEBHOOK_SECRET_KEY")
        .map(|key| {
            SecretSealer::from_base64(&SecretString::from(key))
                .map(Arc::new)
                .map_err(|e| ConfigError::Invalid {
                    name: "WEBHOOK_SECRET_KEY",
                    reason: e.to_string(),
                })
        })
        .transpose()
}

impl ServeConfig {
    /// Only `LISTEN_ADDR` (for `relay healthcheck`, which needs nothing else).
    ///
    /// # Errors
    /// It is malformed.
    pub fn listen_addr_from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<SocketAddr, ConfigError> {
        env.parsed("LISTEN_ADDR", DEFAULT_LISTEN_ADDR)
    }

    /// Reads the service's variables.
    ///
    /// # Errors
    /// The first missing or malformed variable.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let prefix = env.parsed("REDIS_KEY_PREFIX", "relay:".to_owned())?;
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid {
                name: "REDIS_KEY_PREFIX",
                reason: "must not contain whitespace or control characters".into(),
            });
        }
        let workers = env.number_in("HTTP_WORKERS", 0, 0..=1_024)?;
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            redis: RedisTarget::from_env(env)?,
            redis_key_prefix: prefix,
            redis_pool_size: env.number_in("REDIS_POOL_SIZE", 16, 1..=1_000)?,
            listen_addr: Self::listen_addr_from_env(env)?,
            admin_listen_addr: env
                .get("ADMIN_LISTEN_ADDR")
                .map(|raw| {
                    raw.parse()
                        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                            name: "ADMIN_LISTEN_ADDR",
                            reason: e.to_string(),
                        })
                })
                .transpose()?,
            admin_budget: RequestBudget {
                per_minute: env.number_in("ADMIN_REQUESTS_PER_MINUTE", 1_200, 0..=1_000_000)?,
                burst: env.number_in("ADMIN_REQUEST_BURST", 200, 1..=1_000_000)?,
            },
            lookup_timeout: env.millis_in("LOOKUP_TIMEOUT_MS", 800, 1..=60_000)?,
            http_workers: (workers > 0).then_some(workers),
            org_cache_ttl: env.seconds_in("ORG_CACHE_TTL_SECONDS", 10, 0..=3_600)?,
            shutdown_drain: env.seconds_in("SHUTDOWN_DRAIN_SECONDS", 5, 0..=300)?,
            shutdown_timeout: env.seconds_in("SHUTDOWN_TIMEOUT_SECONDS", 10, 1..=300)?,
            readiness_timeout: env.millis_in("READINESS_TIMEOUT_MS", 500, 1..=30_000)?,
            webhook_sealer: webhook_sealer_from_env(env)?,
            post_call_replay_interval: env.seconds_in(
                "POST_CALL_REPLAY_INTERVAL_SECONDS",
                5,
                1..=3_600,
            )?,
            memory_purge_interval: env.seconds_in(
                "MEMORY_PURGE_INTERVAL_SECONDS",
                3_600,
                0..=86_400,
            )?,
            outbox_limits: OutboxLimits {
                max_entries: env.number_in(
                    "POST_CALL_OUTBOX_MAX_ENTRIES",
                    10_000,
                    1..=10_000_000,
                )?,
                max_bytes: env.number_in("POST_CALL_OUTBOX_MAX_MB", 64, 1..=65_536)? * 1024 * 1024,
            },
            trusted_proxies: env.parsed("TRUSTED_PROXIES", TrustedProxies::none())?,
            auth_throttle: ThrottleSettings {
                failures_per_minute: env.number_in(
                    "AUTH_FAILURES_PER_MINUTE",
                    60,
                    0..=1_000_000,
                )?,
                burst: env.number_in("AUTH_FAILURE_BURST", 30, 1..=1_000_000)?,
            },
            known_credentials_max_age: env.seconds_in(
                "KNOWN_CREDENTIALS_MAX_AGE_SECONDS",
                86_400,
                0..=604_800,
            )?,
            post_call_budget: POST_CALL_BUDGET,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env(move |name: &str| map.get(name).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://u:pw@h/db"),
        ("REDIS_URL", "redis://h"),
    ];

    #[test]
    fn defaults_apply_when_only_urls_are_set() {
        let config = ServeConfig::from_env(&env(BASE)).unwrap();
        assert_eq!(config.listen_addr.to_string(), "0.0.0.0:2212");
        assert_eq!(config.lookup_timeout, Duration::from_millis(800));
        assert_eq!(config.redis_key_prefix, "relay:");
        assert_eq!(config.redis_pool_size, 16);
        assert_eq!(config.store.max_connections, 10);
        assert_eq!(config.http_workers, None);
        assert_eq!(config.shutdown_drain, Duration::from_secs(5));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.readiness_timeout, Duration::from_millis(500));
        assert_eq!(config.org_cache_ttl, Duration::from_secs(10));
        assert!(config.webhook_sealer.is_none());
        assert_eq!(config.post_call_replay_interval, Duration::from_secs(5));
        assert_eq!(config.memory_purge_interval, Duration::from_secs(3_600));
        assert_eq!(
            config.outbox_limits,
            OutboxLimits {
                max_entries: 10_000,
                max_bytes: 64 * 1024 * 1024
            }
        );
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.auth_throttle, ThrottleSettings::default());
        assert_eq!(
            config.known_credentials_max_age,
            Duration::from_secs(86_400)
        );
        assert_eq!(
            config.store.database_url.expose_secret(),
            "postgres://u:pw@h/db"
        );
        assert_eq!(config.store.backend, Backend::Postgres);
        assert!(matches!(config.redis, Some(RedisTarget::Single(_))));
    }

    #[test]
    fn nothing_set_selects_the_embedded_store_and_the_in_process_cache() {
        let config = ServeConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.store.backend, Backend::Sqlite);
        assert_eq!(
            config.store.database_url.expose_secret(),
            DEFAULT_DATABASE_URL
        );
        assert!(config.redis.is_none());
    }

    #[test]
    fn the_url_scheme_selects_the_store() {
        for (url, backend) in [
            ("postgres://h/db", Backend::Postgres),
            ("postgresql://h/db", Backend::Postgres),
            ("sqlite://data/x.db", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
        ] {
            let config = StoreConfig::from_env(&env(&[("DATABASE_URL", url)])).unwrap();
            assert_eq!(config.backend, backend, "{url}");
        }
        let err =
            StoreConfig::from_env(&env(&[("DATABASE_URL", "mysql://u:pw@h/db")])).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is invalid"),
            "{err}"
        );
        assert!(!err.to_string().contains("pw"));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("LOOKUP_TIMEOUT_MS", "soon"),
            ("LOOKUP_TIMEOUT_MS", "0"),
            ("LISTEN_ADDR", "localhost"),
            ("REDIS_POOL_SIZE", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("REDIS_KEY_PREFIX", "a b"),
            ("SHUTDOWN_DRAIN_SECONDS", "301"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "0"),
            ("READINESS_TIMEOUT_MS", "fast"),
            ("WEBHOOK_SECRET_KEY", "c2hvcnQ="),
            ("POST_CALL_REPLAY_INTERVAL_SECONDS", "0"),
            ("POST_CALL_OUTBOX_MAX_ENTRIES", "0"),
            ("POST_CALL_OUTBOX_MAX_MB", "lots"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,ingress"),
            ("AUTH_FAILURES_PER_MINUTE", "-1"),
            ("AUTH_FAILURE_BURST", "0"),
            ("KNOWN_CREDENTIALS_MAX_AGE_SECONDS", "604801"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, value));
            let err = ServeConfig::from_env(&env(&pairs)).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{name} is invalid")),
                "{err}"
            );
        }
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_password() {
        for (url, shown) in [
            (
                "postgres://relay:hunter2@db:5432/relay",
                "postgres://relay:***@db:5432/relay",
            ),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("redis://cache:6379", "redis://cache:6379"),
            ("sqlite://data/relay.db", "sqlite://data/relay.db"),
            (
                "postgres://relay@db/relay?password=hunter2&sslmode=require",
                "postgres://relay@db/relay?password=***&sslmode=require",
            ),
            (
                "postgres://db/relay?sslpassword=hunter2&user=relay",
                "postgres://db/relay?sslpassword=***&user=relay",
            ),
            ("::hunter2::", "<unparsable URL>"),
        ] {
            assert_eq!(redacted_url(&SecretString::from(url)), shown);
        }
    }

    #[test]
    fn cluster_urls_select_the_cluster_and_exclude_redis_url() {
        let config = ServeConfig::from_env(&env(&[(
            "REDIS_CLUSTER_URLS",
            "redis://:pw@a:7000, redis://:pw@b:7000,",
        )]))
        .unwrap();
        let Some(RedisTarget::Cluster(urls)) = &config.redis else {
            panic!("cluster expected: {:?}", config.redis);
        };
        assert_eq!(urls.len(), 2);
        assert_eq!(
            config.redis.as_ref().unwrap().redacted(),
            "redis://:***@a:7000,redis://:***@b:7000"
        );
        let err = ServeConfig::from_env(&env(&[
            ("REDIS_URL", "redis://a"),
            ("REDIS_CLUSTER_URLS", "redis://b:7000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = ServeConfig::from_env(&env(&[("REDIS_CLUSTER_URLS", " , ")])).unwrap_err();
        assert!(
            err.to_string().starts_with("REDIS_CLUSTER_URLS is invalid"),
            "{err}"
        );
    }

    #[test]
    fn every_variable_read_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let sources = [include_str!("config.rs"), include_str!("telemetry.rs")];
        let mut names: Vec<&str> = sources
            .iter()
            .flat_map(|source| source.split('"').skip(1).step_by(2))
            .filter(|token| {
                token.len() > 3
                    && token.contains('_')
                    && !token.starts_with("CARGO_")
                    && token.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.contains(&"DATABASE_URL"), "{names:?}");
        for name in names {
            assert!(
                readme.contains(name),
                "{name} is read but not in the README"
            );
        }
    }

    /// Every variable `ServeConfig::from_env` reads.
    const SERVE_VARIABLES: [&str; 25] = [
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "REDIS_URL",
        "REDIS_CLUSTER_URLS",
        "REDIS_KEY_PREFIX",
        "REDIS_POOL_SIZE",
        "LISTEN_ADDR",
        "ADMIN_LISTEN_ADDR",
        "ADMIN_REQUESTS_PER_MINUTE",
        "ADMIN_REQUEST_BURST",
        "LOOKUP_TIMEOUT_MS",
        "HTTP_WORKERS",
        "ORG_CACHE_TTL_SECONDS",
        "SHUTDOWN_DRAIN_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
        "READINESS_TIMEOUT_MS",
        "WEBHOOK_SECRET_KEY",
        "POST_CALL_REPLAY_INTERVAL_SECONDS",
        "MEMORY_PURGE_INTERVAL_SECONDS",
        "POST_CALL_OUTBOX_MAX_ENTRIES",
        "POST_CALL_OUTBOX_MAX_MB",
        "TRUSTED_PROXIES",
        "AUTH_FAILURES_PER_MINUTE",
        "AUTH_FAILURE_BURST",
        "KNOWN_CREDENTIALS_MAX_AGE_SECONDS",
    ];

    /// The variables whose values must never appear in an error (README: "Secret").
    const SECRET_VARIABLES: [&str; 4] = [
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_CLUSTER_URLS",
        "WEBHOOK_SECRET_KEY",
    ];

    #[test]
    fn the_property_tests_cover_every_variable_read() {
        let source = include_str!("config.rs");
        let body =
            &source[source.find("pub fn from_env").unwrap()..source.find("#[cfg(test)]").unwrap()];
        for name in body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|t| t.ends_with(|c: char| c.is_ascii_uppercase()) && t.contains('_'))
        {
            assert!(
                SERVE_VARIABLES.contains(&name),
                "{name} is read but not fuzzed"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Values as an operator might mistype them, and anything at all.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ ]?-?[0-9]{0,22}[ ]?",
                "[0-9a-f.:/\\[\\], ]{0,40}",
                "(postgres|postgresql|sqlite|redis|mysql)://[^ ]{0,20}",
                "[A-Za-z0-9+/=]{40,48}",
            ]
        }

        /// A secret value no fixed message could contain by chance: whatever its surroundings,
        /// it holds twelve random letters and digits.
        fn secret() -> impl Strategy<Value = String> {
            (value(), "[A-Za-z0-9]{12}", value())
                .prop_map(|(a, marker, b)| format!("{a}{marker}{b}"))
        }

        proptest! {
            #[test]
            fn parsed_and_number_in_give_the_value_or_an_error_naming_the_variable(raw in value()) {
                let pairs = [("LOOKUP_TIMEOUT_MS", raw.as_str())];
                let env = env(&pairs);
                match env.number_in("LOOKUP_TIMEOUT_MS", 7u64, 1..=100) {
                    Ok(n) if raw.trim().is_empty() => prop_assert_eq!(n, 7),
                    Ok(n) => {
                        prop_assert_eq!(raw.trim().parse::<u64>().ok(), Some(n));
                        prop_assert!((1..=100).contains(&n));
                    }
                    Err(e) => prop_assert!(e.to_string().starts_with("LOOKUP_TIMEOUT_MS is invalid: "), "{e}"),
                }
                match env.parsed::<SocketAddr>("LOOKUP_TIMEOUT_MS", DEFAULT_LISTEN_ADDR) {
                    Ok(addr) if raw.trim().is_empty() => prop_assert_eq!(addr, DEFAULT_LISTEN_ADDR),
                    Ok(addr) => prop_assert_eq!(raw.trim().parse::<SocketAddr>().ok(), Some(addr)),
                    Err(e) => prop_assert!(e.to_string().starts_with("LOOKUP_TIMEOUT_MS is invalid: "), "{e}"),
                }
            }

            #[test]
            fn any_value_of_one_variable_is_read_or_refused_by_name(
                name in prop::sample::select(&SERVE_VARIABLES[..]),
                raw in value(),
                secret in secret(),
            ) {
                let is_secret = SECRET_VARIABLES.contains(&name);
                let raw = if is_secret { secret } else { raw };
                if let Err(e) = ServeConfig::from_env(&env(&[(name, raw.as_str())])) {
                    let shown = e.to_string();
                    prop_assert!(shown.starts_with(&format!("{name} is invalid: ")), "{shown}");
                    prop_assert!(!is_secret || !shown.contains(&raw), "{name}'s value in {shown:?}");
                }
            }

            #[test]
            fn any_values_of_all_variables_never_reveal_a_secret(
                values in prop::collection::vec(value(), SERVE_VARIABLES.len()),
                secrets in prop::collection::vec(secret(), SECRET_VARIABLES.len()),
                unset in prop::collection::vec(any::<bool>(), SERVE_VARIABLES.len()),
            ) {
                let mut pairs = Vec::new();
                for (i, name) in SERVE_VARIABLES.iter().enumerate() {
                    if unset[i] {
                        continue;
                    }
                    let value = match SECRET_VARIABLES.iter().position(|s| s == name) {
                        Some(j) => secrets[j].as_str(),
                        None => values[i].as_str(),
                    };
                    pairs.push((*name, value));
                }
                if let Err(e) = ServeConfig::from_env(&env(&pairs)) {
                    let shown = e.to_string();
                    let named = SERVE_VARIABLES.iter().any(|n| shown.starts_with(&format!("{n} is invalid: ")));
                    prop_assert!(named, "{shown}");
                    for (name, value) in &pairs {
                        if SECRET_VARIABLES.contains(name) {
                            prop_assert!(!shown.contains(value), "{name}'s value in {shown:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let mut pairs = BASE.to_vec();
        pairs.push(("WEBHOOK_SECRET_KEY", key));
        let config = ServeConfig::from_env(&env(&pairs)).unwrap();
        assert!(config.webhook_sealer.is_some(), "a 32-byte key is accepted");
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw@"));
        assert!(!shown.contains(key));
        let err =
            webhook_sealer_from_env(&env(&[("WEBHOOK_SECRET_KEY", "hunter2hunter2")])).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
