//! Configuration: environment variables, read once at start into a typed [`Config`].
//!
//! A missing or malformed variable is one line that names it; a secret's value is never echoed.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A variable is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
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
pub(crate) struct Env<F>(pub(crate) F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be set.
    pub(crate) fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    /// A secret that must be set.
    pub(crate) fn required_secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    /// A variable parsed as `T`, or `default` when unset.
    pub(crate) fn parsed<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
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
    pub(crate) fn number_in<T>(
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
}

/// Where the data lives: needed by every command.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    /// `DATABASE_URL`.
    pub(crate) database_url: SecretString,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub(crate) max_connections: u32,
}

impl StoreConfig {
    /// Reads the store's variables.
    ///
    /// # Errors
    /// The first missing or malformed variable.
    pub(crate) fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: env.required_secret("DATABASE_URL")?,
            max_connections: env.number_in("DATABASE_MAX_CONNECTIONS", 10, 1..=1_000)?,
        })
    }
}

/// Everything `relay serve` needs.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// The store.
    pub(crate) store: StoreConfig,
    /// `REDIS_URL`.
    pub(crate) redis_url: SecretString,
    /// `REDIS_KEY_PREFIX` (default `relay:`).
    pub(crate) redis_key_prefix: String,
    /// `REDIS_POOL_SIZE` (default 16).
    pub(crate) redis_pool_size: usize,
    /// `LISTEN_ADDR` (default `0.0.0.0:2212`).
    pub(crate) listen_addr: SocketAddr,
    /// `LOOKUP_TIMEOUT_MS` (default 800): the dependency budget of one webhook call.
    pub(crate) lookup_timeout: Duration,
    /// `HTTP_WORKERS` (default: one per physical core).
    pub(crate) http_workers: Option<usize>,
}

impl ServeConfig {
    /// Reads the service's variables.
    ///
    /// # Errors
    /// The first missing or malformed variable.
    pub(crate) fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Self, ConfigError> {
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
            redis_url: env.required_secret("REDIS_URL")?,
            redis_key_prefix: prefix,
            redis_pool_size: env.number_in("REDIS_POOL_SIZE", 16, 1..=1_000)?,
            listen_addr: env.parsed("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 2212)))?,
            lookup_timeout: Duration::from_millis(env.number_in(
                "LOOKUP_TIMEOUT_MS",
                800,
                1..=60_000,
            )?),
            http_workers: (workers > 0).then_some(workers),
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
        assert_eq!(
            config.store.database_url.expose_secret(),
            "postgres://u:pw@h/db"
        );
    }

    #[test]
    fn missing_url_names_the_variable() {
        let err = ServeConfig::from_env(&env(&[("REDIS_URL", "redis://h")])).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL is not set");
        let err = ServeConfig::from_env(&env(&[("DATABASE_URL", "postgres://h")])).unwrap_err();
        assert_eq!(err.to_string(), "REDIS_URL is not set");
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
    fn secrets_are_not_printed_by_debug() {
        let config = ServeConfig::from_env(&env(BASE)).unwrap();
        assert!(!format!("{config:?}").contains("pw@"));
    }
}
