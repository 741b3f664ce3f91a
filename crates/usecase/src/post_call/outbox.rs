//! The outbox side of recording: a verified delivery the store cannot take is queued, within the
//! outbox's bounds; the replay records queued deliveries once the store is back (verifying them
//! against the store again), and dead-letters those that can never be recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relay_ports::{Appended, OutboxBound, OutboxError};

use super::{
    AuthFailure, Credentials, Delivered, Delivery, Failure, MAX_QUEUED_BODY_BYTES, RecordCall,
    Refused,
};

/// Longest one replay round (a batch) may take: each delivery's store work has its budget, this
/// bounds the outbox's own commands, so a Redis that hangs cannot stall the replay for good.
const REPLAY_ROUND_LIMIT: Duration = Duration::from_secs(60);

/// Most queued deliveries replayed per round.
pub const REPLAY_BATCH: usize = 100;

/// What a replay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Deliveries recorded (or acknowledged) and removed from the outbox.
    pub replayed: usize,
    /// Deliveries that can never be recorded (refused credentials, invalid body, unreadable
    /// entry, refused by the store), moved to the dead letters.
    pub rejected: usize,
    /// The store was still down: the round stopped and the rest waits.
    pub store_down: bool,
}

/// Counts of the outbox's traffic, read by the metrics.
#[derive(Debug, Default)]
pub struct OutboxStats {
    queued: AtomicU64,
    replayed: AtomicU64,
    rejected: AtomicU64,
    full: AtomicU64,
    dead_letters_dropped: AtomicU64,
    backlog: AtomicU64,
    backlog_bytes: AtomicU64,
}

impl OutboxStats {
    /// Deliveries appended to the outbox because the store was down.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queued deliveries recorded by the replay.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Queued deliveries the replay dead-lettered (refused credentials, invalid, unreadable,
    /// refused by the store).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Deliveries refused because the outbox was at one of its bounds.
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Oldest dead letters dropped to keep the dead letters within their bounds.
    pub fn dead_letters_dropped(&self) -> u64 {
        self.dead_letters_dropped.load(Ordering::Relaxed)
    }

    /// Deliveries waiting in the outbox when it was last read (every replay round).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// The bytes those deliveries take in the outbox, as its byte bound counts them.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog_bytes.load(Ordering::Relaxed)
    }
}

impl RecordCall {
    /// Appends a verified delivery the store could not take to the outbox, within its bounds.
    pub(super) async fn queue(&self, delivery: &Delivery) -> Result<Delivered, Refused> {
        let Some(outbox) = &self.ports.outbox else {
            return Err(Refused::Unavailable);
        };
        if delivery.body.len() > MAX_QUEUED_BODY_BYTES {
            tracing::error!(
                bytes = delivery.body.len(),
                max = MAX_QUEUED_BODY_BYTES,
                "the post-call delivery is too large to queue; refused"
            );
            return Err(Refused::Unavailable);
        }
        let payload = serde_json::to_vec(delivery).map_err(|_| Refused::Unavailable)?;
        match tokio::time::timeout(
            self.settings.budget,
            outbox.append(&payload, self.settings.outbox),
        )
        .await
        {
            Ok(Ok(Appended::Stored)) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Delivered::Queued)
            }
            Ok(Ok(Appended::Full(bound))) => {
                self.stats.full.fetch_add(1, Ordering::Relaxed);
                let (max_entries, max_bytes) = match bound {
                    OutboxBound::Entries => (Some(self.settings.outbox.max_entries), None),
                    OutboxBound::Bytes => (None, Some(self.settings.outbox.max_bytes)),
                };
                tracing::error!(
                    bound = bound.as_str(),
                    max_entries,
                    max_bytes,
                    "the post-call outbox is full; the delivery is refused"
                );
                Err(Refused::Unavailable)
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "outbox unavailable too; the post-call delivery is refused");
                Err(Refused::Unavailable)
            }
            Err(_) => {
                tracing::error!("outbox did not answer in time; the post-call delivery is refused");
                Err(Refused::Unavailable)
            }
        }
    }

    /// Replays up to `max` queued deliveries, oldest first, each verified against the store
    /// again: each one recorded (or acknowledged) is removed, each one that can never be
    /// recorded is moved to the dead letters with its reason; the round stops at the first the
    /// store still cannot take.
    ///
    /// # Errors
    /// The outbox cannot be read.
    pub async fn replay_queued(&self, max: usize) -> Result<ReplayReport, OutboxError> {
        let Some(outbox) = &self.ports.outbox else {
            return Ok(ReplayReport::default());
        };
        let mut report = ReplayReport::default();
        for entry in outbox.pending(max).await? {
            let reason = match serde_json::from_slice::<Delivery>(&entry.payload) {
                Err(error) => {
                    tracing::error!(entry = %entry.id, bytes = entry.payload.len(), error = %error, "unreadable outbox entry");
                    "unreadable entry".to_owned()
                }
                Ok(delivery) => match self.within_budget(self.replay(&delivery)).await {
                    Ok(Ok(delivered)) => {
                        tracing::info!(entry = %entry.id, outcome = delivered.outcome(), "queued post-call delivery replayed");
                        outbox.remove(&entry.id).await?;
                        report.replayed += 1;
                        self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(Err(Failure::StoreDown(_))) | Err(_) => {
                        report.store_down = true;
                        break;
                    }
                    Ok(Err(Failure::Refused(refused))) => refused.to_string(),
                    Ok(Err(Failure::StoreRefused(error))) => {
                        format!("the store refused it: {error}")
                    }
                },
            };
            tracing::warn!(entry = %entry.id, reason, "queued post-call delivery dead-lettered");
            let dropped = outbox
                .dead_letter(&entry, &reason, self.settings.dead_letters)
                .await?;
            if dropped > 0 {
                self.stats
                    .dead_letters_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
                tracing::warn!(
                    dropped,
                    max_entries = self.settings.dead_letters.max_entries,
                    max_bytes = self.settings.dead_letters.max_bytes,
                    "the dead letters are full; their oldest were dropped"
                );
            }
            report.rejected += 1;
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(usage) = outbox.usage().await {
            self.stats.backlog.store(usage.entries, Ordering::Relaxed);
            self.stats
                .backlog_bytes
                .store(usage.bytes, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// How many deliveries wait in the outbox (0 without one).
    ///
    /// # Errors
    /// The outbox cannot be read.
    pub async fn queued(&self) -> Result<u64, OutboxError> {
        match &self.ports.outbox {
            Some(outbox) => Ok(outbox.usage().await?.entries),
            None => Ok(0),
        }
    }

    /// Every `interval`, replays queued deliveries batch after batch until the outbox is empty
    /// or the store is still down; never returns (abort its task to stop it). Returns at once
    /// without an outbox. Several replicas may replay at once: recording is idempotent, and an
    /// entry recorded but not yet removed when a round is cut is replayed again.
    pub async fn replay_periodically(&self, interval: Duration) {
        if !self.has_outbox() {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            while self.replay_round().await {}
        }
    }

    /// One batch, bounded by [`REPLAY_ROUND_LIMIT`]; `true` when another should follow at once
    /// (the batch was full and the store answered).
    async fn replay_round(&self) -> bool {
        let round = tokio::time::timeout(REPLAY_ROUND_LIMIT, self.replay_queued(REPLAY_BATCH));
        let report = match round.await {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the post-call outbox cannot be read");
                return false;
            }
            Err(_) => {
                tracing::warn!(
                    limit_s = REPLAY_ROUND_LIMIT.as_secs(),
                    "a post-call replay round ran out of time; the rest waits for the next"
                );
                return false;
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
        !report.store_down && report.replayed + report.rejected >= REPLAY_BATCH
    }

    /// A queued delivery, verified against the store (never against memory) and recorded.
    async fn replay(&self, delivery: &Delivery) -> Result<Delivered, Failure> {
        let org = match &delivery.credentials {
            Credentials::Bearer { digest } => self
                .ports
                .orgs
                .find_by_secret_digest(digest)
                .await
                .map_err(Failure::store)?
                .ok_or(AuthFailure::UnknownToken)?,
            Credentials::Signature { org, header } => {
                let signer = self
                    .ports
                    .calls
                    .webhook_signer(*org)
                    .await
                    .map_err(Failure::store)?
                    .ok_or(AuthFailure::NoWebhookSecret)?;
                self.check_signature(delivery, header, signer)?
            }
        };
        self.record(delivery, &org).await
    }
}
