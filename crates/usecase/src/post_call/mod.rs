//! "Record this call": ElevenLabs' post-call webhook, turned into one call record per
//! conversation, without losing a delivery when the store is down, and without storing anything
//! a stranger sends.
//!
//! A delivery is authenticated first (the organization's Bearer tool secret, or
//! `ElevenLabs-Signature` under its webhook secret), then read, then linked to the organization's
//! contact through the cached call context (by conversation id, else call sid), falling back to
//! the caller's number among the organization's contacts when the context expired. The record is
//! stored idempotently; only then is the delivery acknowledged.
//!
//! ElevenLabs does not retry, so a delivery the store cannot take is appended, as received, to a
//! durable, bounded outbox (a Redis stream) and acknowledged; [`RecordCall::replay_queued`] runs
//! it through the same steps when the store is back, checking its credentials against the store
//! and its signature against the time it was received. Only a delivery whose credentials were
//! verified (by the store, or during an outage by what this replica recently heard from it:
//! [`KnownCredentials`]) is ever queued; one that cannot be verified is refused
//! ([`Refused::Unverifiable`]).

mod event;
mod sealing;
mod signature;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_domain::{CallId, CallKey, CallRecord, CallerNumber, ContactId, OrgId, Organization};
use relay_ports::{
    Appended, CacheError, CallContextCache, CallLog, ContactDirectory, DeliveryOutbox,
    OrganizationDirectory, OutboxBound, OutboxLimits, RepositoryError, WebhookSigner,
};
use secrecy::ExposeSecret as _;

pub use event::{EventType, InvalidEvent, MAX_SUMMARY_CHARS, PostCallEvent};
pub use sealing::{InvalidSealingKey, SecretSealer, UnsealError};
pub use signature::{
    MAX_CLOCK_AHEAD, MAX_SIGNATURE_AGE, SignatureError, check_header, sign, verify,
};
pub use wire::{Credentials, Delivery};

use crate::KnownCredentials;

/// Largest delivery appended to the outbox; larger ones (recordings) are refused when the store is
/// down rather than filling Redis.
pub const MAX_QUEUED_BODY_BYTES: usize = 1024 * 1024;

/// What became of an accepted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Stored (or already stored by an earlier delivery of the same conversation).
    Recorded {
        /// The record's id (the first delivery's, for a duplicate).
        call_id: CallId,
        /// True when an earlier delivery had stored it already.
        duplicate: bool,
        /// The organization.
        org_id: OrgId,
        /// The linked contact, if any.
        contact_id: Option<ContactId>,
    },
    /// Authenticated and valid, but nothing to store (a recording, an unknown event type).
    Acknowledged(EventType),
    /// The store is down: kept in the outbox, to be recorded by the replay.
    Queued,
}

impl Delivered {
    /// `recorded`, `duplicate`, `acknowledged` or `queued`, for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Recorded {
                duplicate: false, ..
            } => "recorded",
            Self::Recorded {
                duplicate: true, ..
            } => "duplicate",
            Self::Acknowledged(_) => "acknowledged",
            Self::Queued => "queued",
        }
    }
}

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No live tool secret has this token (unknown or revoked).
    #[error("unknown token")]
    UnknownToken,
    /// `WEBHOOK_SECRET_KEY` is not set, so no signature can be checked.
    #[error("signatures are not configured")]
    SignaturesNotConfigured,
    /// The organization named in the URL has no webhook secret (or does not exist).
    #[error("no webhook secret")]
    NoWebhookSecret,
    /// The stored webhook secret does not open with this service's key.
    #[error("webhook secret unreadable")]
    SecretUnreadable,
    /// The signature header is malformed, stale, or does not match the body.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Why a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The credentials are wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(AuthFailure),
    /// The store cannot check the credentials now, and this replica has not seen them confirmed
    /// within [`KnownCredentials::max_age`]: nothing was read or stored.
    #[error("the credentials cannot be verified while the store is down")]
    Unverifiable,
    /// Authenticated, but the body is not a post-call event.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The store is down and the outbox could not take it either (down, full, or the delivery
    /// is too large to queue).
    #[error("neither the store nor the outbox can take the delivery")]
    Unavailable,
}

impl From<AuthFailure> for Refused {
    fn from(value: AuthFailure) -> Self {
        Self::Unauthorized(value)
    }
}

impl From<SignatureError> for Refused {
    fn from(value: SignatureError) -> Self {
        Self::Unauthorized(AuthFailure::Signature(value))
    }
}

/// What one step of recording failed with.
enum Failure {
    Refused(Refused),
    /// The store could not be reached or did not answer in time: retry later.
    StoreDown(RepositoryError),
    /// The store answered with an error retrying will not fix.
    StoreRefused(RepositoryError),
}

impl<E: Into<Refused>> From<E> for Failure {
    fn from(value: E) -> Self {
        Self::Refused(value.into())
    }
}

impl Failure {
    fn store(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => Self::StoreDown(error),
            RepositoryError::Unexpected(_) => Self::StoreRefused(error),
        }
    }
}

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

/// What [`RecordCall::precheck`] verified about a delivery's credentials before its body is
/// read, for [`RecordCall::deliver`].
#[derive(Debug)]
pub struct Prechecked {
    known: Known,
    /// The store answered (rather than this replica's memory of it).
    from_store: bool,
}

impl Prechecked {
    /// The organization the credentials name (a signature is only checked once the body is in).
    pub fn org_id(&self) -> OrgId {
        match &self.known {
            Known::Org(org) => org.id,
            Known::Signer(signer) => signer.org.id,
        }
    }

    /// Whether the store confirmed the credentials now (`false`: it is down, and this replica
    /// recently heard them confirmed).
    pub fn from_store(&self) -> bool {
        self.from_store
    }
}

#[derive(Debug)]
enum Known {
    /// The organization of a Bearer token.
    Org(Organization),
    /// The organization named by `?org=`, with its sealed webhook secret.
    Signer(WebhookSigner),
}

/// The ports [`RecordCall`] works with.
#[derive(Clone)]
pub struct PostCallPorts {
    /// Organizations by token digest.
    pub orgs: Arc<dyn OrganizationDirectory>,
    /// Contacts by number (when the call context is gone).
    pub contacts: Arc<dyn ContactDirectory>,
    /// Where records go, and the webhook secrets.
    pub calls: Arc<dyn CallLog>,
    /// The call contexts the personalization routes wrote.
    pub cache: Arc<dyn CallContextCache>,
    /// Where deliveries wait while the store is down; `None`: they are refused (503).
    pub outbox: Option<Arc<dyn DeliveryOutbox>>,
}

impl std::fmt::Debug for PostCallPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostCallPorts")
            .field("outbox", &self.outbox.is_some())
            .finish_non_exhaustive()
    }
}

/// How [`RecordCall`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostCallSettings {
    /// Bounds the store and cache calls of one delivery: a store slower than that is treated as
    /// down (the delivery is queued) so ElevenLabs is answered before it gives up.
    pub budget: Duration,
    /// What the outbox may hold; beyond, new deliveries are refused.
    pub outbox: OutboxLimits,
    /// What the dead letters may hold; beyond, their oldest are dropped.
    pub dead_letters: OutboxLimits,
}

/// Records post-call webhooks.
pub struct RecordCall {
    stats: Arc<OutboxStats>,
    settings: PostCallSettings,
    ports: PostCallPorts,
    sealer: Option<Arc<SecretSealer>>,
    known: Arc<KnownCredentials>,
}

impl std::fmt::Debug for RecordCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCall")
            .field("settings", &self.settings)
            .field("outbox", &self.ports.outbox.is_some())
            .field("signatures", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl RecordCall {
    /// Wires the use case. Without an outbox a delivery the store cannot take is refused
    /// ([`Refused::Unavailable`]); without a `sealer` only Bearer deliveries are accepted.
    /// `known` is shared with the personalization routes, whose token lookups refresh it too.
    pub fn new(
        ports: PostCallPorts,
        settings: PostCallSettings,
        sealer: Option<Arc<SecretSealer>>,
        known: Arc<KnownCredentials>,
    ) -> Self {
        Self {
            stats: Arc::default(),
            settings,
            ports,
            sealer,
            known,
        }
    }

    /// The outbox counters.
    pub fn stats(&self) -> Arc<OutboxStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the store confirmed these credentials recently ([`KnownCredentials`]): for the
    /// signature, only that its organization has a webhook secret, since the signature itself
    /// covers the body.
    pub fn knows(&self, credentials: &Credentials) -> bool {
        match credentials {
            Credentials::Bearer { digest } => self.known.knows_token(digest),
            Credentials::Signature { org, .. } => self.known.knows_signer(*org),
        }
    }

    /// Whether deliveries the store cannot take are kept for replay.
    pub fn has_outbox(&self) -> bool {
        self.ports.outbox.is_some()
    }

    /// Verifies what can be verified before the body is read, so an unauthenticated sender
    /// cannot make the service buffer a body: a Bearer token must belong to an organization; a
    /// signature header must be well-formed and fresh and its organization must have a webhook
    /// secret (the signature itself covers the body, so it is checked by
    /// [`RecordCall::deliver`]). When the store cannot answer within the budget, what this
    /// replica recently heard from it is used instead.
    ///
    /// # Errors
    /// [`Refused::Unauthorized`] for wrong credentials; [`Refused::Unverifiable`] when neither
    /// the store nor this replica's memory can vouch for them.
    pub async fn precheck(
        &self,
        credentials: &Credentials,
        received_at: DateTime<Utc>,
    ) -> Result<Prechecked, Refused> {
        let from_store = match credentials {
            Credentials::Bearer { digest } => {
                match self
                    .within_budget(self.ports.orgs.find_by_secret_digest(digest))
                    .await
                    .and_then(|found| found)
                {
                    Ok(Some(org)) => {
                        self.known.token_confirmed(digest, &org);
                        Ok(Known::Org(org))
                    }
                    Ok(None) => {
                        self.known.token_refused(digest);
                        return Err(AuthFailure::UnknownToken.into());
                    }
                    Err(error) => Err((error, self.known.token(digest).map(Known::Org))),
                }
            }
            Credentials::Signature { org, header } => {
                if self.sealer.is_none() {
                    return Err(AuthFailure::SignaturesNotConfigured.into());
                }
                check_header(header, received_at)?;
                match self
                    .within_budget(self.ports.calls.webhook_signer(*org))
                    .await
                    .and_then(|found| found)
                {
                    Ok(Some(signer)) => {
                        self.known.signer_confirmed(&signer);
                        Ok(Known::Signer(signer))
                    }
                    Ok(None) => {
                        self.known.signer_refused(*org);
                        return Err(AuthFailure::NoWebhookSecret.into());
                    }
                    Err(error) => Err((error, self.known.signer(*org).map(Known::Signer))),
                }
            }
        };
        match from_store {
            Ok(known) => Ok(Prechecked {
                known,
                from_store: true,
            }),
            Err((error, Some(known))) => {
                tracing::warn!(error = %error, "store down; credentials verified against this replica's memory of it");
                Ok(Prechecked {
                    known,
                    from_store: false,
                })
            }
            Err((error, None)) => {
                tracing::warn!(error = %error, "store down and the credentials were not confirmed recently: the delivery is refused");
                Err(Refused::Unverifiable)
            }
        }
    }

    /// Takes one delivery whose credentials passed [`RecordCall::precheck`]: verified (the
    /// signature over the body), then recorded, acknowledged, or queued for replay when the store
    /// is down.
    ///
    /// # Errors
    /// [`Refused`]: a signature that does not verify, an invalid body, or neither store nor
    /// outbox available.
    #[tracing::instrument(name = "record_call", skip_all)]
    pub async fn deliver(
        &self,
        delivery: Delivery,
        prechecked: Prechecked,
    ) -> Result<Delivered, Refused> {
        let org = self.verify(&delivery, prechecked.known)?;
        match self.within_budget(self.record(&delivery, &org)).await {
            Ok(Ok(delivered)) => return Ok(delivered),
            Ok(Err(Failure::Refused(refused))) => return Err(refused),
            Ok(Err(Failure::StoreDown(error))) | Err(error) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "store down; queueing the post-call delivery");
            }
            Ok(Err(Failure::StoreRefused(error))) => {
                // Kept rather than lost: the replay retries it once and dead-letters it if the
                // store refuses it again.
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "the store refused the call record; queueing the post-call delivery");
            }
        }
        self.queue(&delivery).await
    }

    /// Appends a verified delivery the store could not take to the outbox, within its bounds.
    async fn queue(&self, delivery: &Delivery) -> Result<Delivered, Refused> {
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
    pub async fn replay_queued(&self, max: usize) -> Result<ReplayReport, CacheError> {
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
    pub async fn queued(&self) -> Result<u64, CacheError> {
        match &self.ports.outbox {
            Some(outbox) => Ok(outbox.usage().await?.entries),
            None => Ok(0),
        }
    }

    /// `call` within the budget; running out of it reads as the store being down.
    async fn within_budget<T>(&self, call: impl Future<Output = T>) -> Result<T, RepositoryError> {
        tokio::time::timeout(self.settings.budget, call)
            .await
            .map_err(|_| {
                RepositoryError::Unavailable(
                    format!("no answer within {} ms", self.settings.budget.as_millis()).into(),
                )
            })
    }

    /// The organization a prechecked delivery comes from, once its signature (if any) verifies
    /// over the body.
    fn verify(&self, delivery: &Delivery, known: Known) -> Result<Organization, Refused> {
        match (&delivery.credentials, known) {
            (Credentials::Bearer { .. }, Known::Org(org)) => Ok(org),
            (Credentials::Signature { header, .. }, Known::Signer(signer)) => {
                self.check_signature(delivery, header, signer)
            }
            // precheck answers for the credentials it was given; anything else is a bug, and
            // refusing is the safe answer.
            _ => Err(AuthFailure::UnknownToken.into()),
        }
    }

    fn check_signature(
        &self,
        delivery: &Delivery,
        header: &str,
        signer: WebhookSigner,
    ) -> Result<Organization, Refused> {
        let sealer = self
            .sealer
            .as_ref()
            .ok_or(AuthFailure::SignaturesNotConfigured)?;
        let secret = sealer
            .open(signer.org.id, &signer.sealed_secret)
            .map_err(|_| {
                tracing::error!(org_id = %signer.org.id, "the webhook secret does not open with WEBHOOK_SECRET_KEY");
                AuthFailure::SecretUnreadable
            })?;
        verify(
            header,
            &delivery.body,
            secret.expose_secret().as_bytes(),
            delivery.received_at,
        )?;
        Ok(signer.org)
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

    /// Reads the event and stores its record for `org`, whose credentials were verified.
    async fn record(&self, delivery: &Delivery, org: &Organization) -> Result<Delivered, Failure> {
        let event = PostCallEvent::parse(&delivery.body)?;
        let (Some(kind), Some(conversation_id)) =
            (event.event_type.call_kind(), event.conversation_id.clone())
        else {
            return Ok(Delivered::Acknowledged(event.event_type));
        };
        let contact_id = self.find_contact(org, &event).await?;
        let record = CallRecord {
            id: CallId::from_uuid(uuid::Uuid::new_v4()),
            org_id: org.id,
            contact_id,
            conversation_id,
            call_sid: event.call_sid,
            agent_id: event.agent_id,
            kind,
            direction: event.direction,
            external_number: event.external_number,
            agent_number: event.agent_number,
            status: event.status,
            call_successful: event.call_successful,
            summary: event.summary,
            duration_secs: event.duration_secs,
            started_at: event.started_at,
            event_at: event.event_at.unwrap_or(delivery.received_at),
            received_at: delivery.received_at,
        };
        let recorded = self
            .ports
            .calls
            .record_call(&record)
            .await
            .map_err(Failure::store)?;
        Ok(Delivered::Recorded {
            call_id: recorded.id,
            duplicate: !recorded.inserted,
            org_id: org.id,
            contact_id,
        })
    }

    /// The contact the call was with: the one matched when the call connected (the cached
    /// context, by conversation id, else call sid), or when the context is gone, the
    /// organization's contact with the other party's number.
    async fn find_contact(
        &self,
        org: &Organization,
        event: &PostCallEvent,
    ) -> Result<Option<ContactId>, Failure> {
        let keys = event
            .conversation_id
            .clone()
            .map(CallKey::Conversation)
            .into_iter()
            .chain(event.call_sid.clone().map(CallKey::CallSid));
        for key in keys {
            match self.ports.cache.get(org.id, &key).await {
                // Only this organization's context: the port promises it, and checking again
                // costs nothing. A context without a contact (unknown caller, or the store
                // failed at call start) falls through to the number.
                Ok(Some(context)) if context.org_id == org.id => {
                    if context.contact_id.is_some() {
                        return Ok(context.contact_id);
                    }
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "call context lookup failed; matching by number");
                    break;
                }
            }
        }
        let caller =
            CallerNumber::from_caller_id(event.external_number.as_deref(), &org.default_region);
        let Some(number) = caller.number() else {
            return Ok(None);
        };
        Ok(self
            .ports
            .contacts
            .find_by_phone(org.id, number)
            .await
            .map_err(Failure::store)?
            .map(|c| c.id))
    }
}
