//! Readiness: may this replica take webhook calls? Its dependencies answer, and it is not
//! shutting down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use relay_ports::Probe;

/// How one dependency answered its readiness ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// It answered.
    Up,
    /// It failed (refused, error).
    Down,
    /// It did not answer within the readiness timeout.
    Timeout,
}

impl CheckResult {
    /// `up`, `down` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Timeout => "timeout",
        }
    }
}

/// The answer of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    /// The replica is shutting down: it must get no new traffic, whatever its dependencies do.
    pub draining: bool,
    /// Each dependency by name, in the order they were registered; empty when draining.
    pub checks: Vec<(&'static str, CheckResult)>,
}

impl ReadinessReport {
    /// Ready: not draining, and every dependency answered.
    pub fn is_ready(&self) -> bool {
        !self.draining && self.checks.iter().all(|(_, r)| *r == CheckResult::Up)
    }
}

/// Checks the dependencies on demand and remembers whether shutdown has begun.
pub struct Readiness {
    probes: Vec<(&'static str, Arc<dyn Probe>)>,
    timeout: Duration,
    draining: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "probes",
                &self.probes.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Readiness {
    /// Checks `probes` (named `postgres`, `redis`, ...) with `timeout` for each ping.
    pub fn new(probes: Vec<(&'static str, Arc<dyn Probe>)>, timeout: Duration) -> Self {
        Self {
            probes,
            timeout,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on the replica reports not ready (shutdown has begun). Idempotent.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Pings every dependency at once, each bounded by the timeout. Draining answers at once
    /// without pinging.
    pub async fn check(&self) -> ReadinessReport {
        if self.is_draining() {
            return ReadinessReport {
                draining: true,
                checks: Vec::new(),
            };
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (_, probe)) in self.probes.iter().enumerate() {
            let probe = Arc::clone(probe);
            let timeout = self.timeout;
            tasks.spawn(async move {
                let result = match tokio::time::timeout(timeout, probe.ping()).await {
                    Ok(Ok(())) => CheckResult::Up,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "readiness ping failed");
                        CheckResult::Down
                    }
                    Err(_) => CheckResult::Timeout,
                };
                (index, result)
            });
        }
        // A probe whose task panicked keeps `Down`.
        let mut results = vec![CheckResult::Down; self.probes.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = result;
            } else {
                tracing::error!("a readiness probe panicked");
            }
        }
        ReadinessReport {
            draining: false,
            checks: self
                .probes
                .iter()
                .zip(results)
                .map(|((name, _), result)| (*name, result))
                .collect(),
        }
    }
}
