//! Background retries of call-context writes that failed or ran out of time on the request path.
//!
//! The caller is answered first; the context is written later so the post-call webhook still finds
//! it. Retries are bounded in number and in concurrency: when Redis is down under load, writes are
//! dropped (and counted) instead of piling up without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relay_domain::{CallContext, CallSid, ConversationId};
use relay_ports::CallContextCache;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// How failed context writes are retried in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the failed one on the request path.
    pub attempts: u32,
    /// Delay before the first retry; doubled before each later one.
    pub first_delay: Duration,
    /// Time allowed to one attempt.
    pub attempt_timeout: Duration,
    /// Writes that may wait for a retry at once; more are dropped.
    pub max_pending: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 0.2 s + 0.4 s + 0.8 s + 1.6 s + 3.2 s: a Redis failover of a few seconds is covered.
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(1),
            max_pending: 10_000,
        }
    }
}

/// Counts of background context writes since start.
#[derive(Debug, Default)]
pub struct BackgroundWriteStats {
    retried: AtomicU64,
    recovered: AtomicU64,
    dropped: AtomicU64,
}

impl BackgroundWriteStats {
    /// Writes handed to the background after failing on the request path.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Background writes that finally succeeded.
    pub fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
    }

    /// Writes given up: every retry failed, or too many were pending.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Clones share the bound on pending writes and the counts.
#[derive(Debug, Clone)]
pub(crate) struct BackgroundWriter {
    policy: RetryPolicy,
    pending: Arc<Semaphore>,
    stats: Arc<BackgroundWriteStats>,
}

impl BackgroundWriter {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            pending: Arc::new(Semaphore::new(policy.max_pending)),
            policy,
            stats: Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> &Arc<BackgroundWriteStats> {
        &self.stats
    }

    /// Retries `context` in a background task. Must be called within a tokio runtime.
    pub(crate) fn schedule(&self, cache: Arc<dyn CallContextCache>, context: CallContext) {
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = Arc::clone(&self.pending).try_acquire_owned() else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                conversation_id = context.conversation_id.as_ref().map(ConversationId::as_str),
                call_sid = context.call_sid.as_ref().map(CallSid::as_str),
                "call context dropped: too many background writes pending"
            );
            return;
        };
        let policy = self.policy;
        let stats = Arc::clone(&self.stats);
        // Its own span, linked to the request that failed to write, so the retries' dependency
        // spans land in one trace instead of each starting a new one.
        let span = tracing::info_span!(
            "call_context_retry",
            conversation_id = context.conversation_id.as_ref().map(ConversationId::as_str),
            call_sid = context.call_sid.as_ref().map(CallSid::as_str)
        );
        span.follows_from(tracing::Span::current());
        tokio::spawn(
            async move {
                let _permit = permit;
                let mut delay = policy.first_delay;
                for attempt in 1..=policy.attempts {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    match tokio::time::timeout(
                        policy.attempt_timeout,
                        cache.put(&context, CallContext::TTL),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            stats.recovered.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(
                                conversation_id =
                                    context.conversation_id.as_ref().map(ConversationId::as_str),
                                call_sid = context.call_sid.as_ref().map(CallSid::as_str),
                                attempt,
                                "call context written on retry"
                            );
                            return;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(attempt, error = %error, "context retry failed");
                        }
                        Err(_) => tracing::debug!(attempt, "context retry timed out"),
                    }
                }
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    conversation_id = context.conversation_id.as_ref().map(ConversationId::as_str),
                    call_sid = context.call_sid.as_ref().map(CallSid::as_str),
                    attempts = policy.attempts,
                    "call context dropped: every retry failed"
                );
            }
            .instrument(span),
        );
    }

    /// Waits until no write is pending, or `limit` has passed. Returns how many are still pending.
    pub(crate) async fn drain(&self, limit: Duration) -> usize {
        let all = u32::try_from(self.policy.max_pending).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, self.pending.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                drop(permits);
                0
            }
            _ => self.policy.max_pending - self.pending.available_permits(),
        }
    }
}
