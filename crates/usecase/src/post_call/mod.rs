//! "Record this call": ElevenLabs' post-call webhook, turned into one call record per
//! conversation, without losing a delivery when the store is down.
//!
//! A delivery is authenticated first (the organization's Bearer tool secret, or
//! `ElevenLabs-Signature` under its webhook secret), then read, then linked to the organization's
//! contact through the cached call context (by conversation id, else call sid), falling back to
//! the caller's number among the organization's contacts when the context expired. The record is
//! stored idempotently; only then is the delivery acknowledged.
//!
//! ElevenLabs does not retry, so a delivery the store cannot take is appended, as received, to a
//! durable outbox (a Redis stream) and acknowledged; [`RecordCall::replay_queued`] runs it through
//! the same steps when the store is back, checking its signature against the time it was
//! received.

mod event;
mod sealing;
mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use relay_domain::{
    CallId, CallKey, CallRecord, CallerNumber, ContactId, OrgId, Organization, TokenDigest,
};
use relay_ports::{
    CallContextCache, CallLog, ContactDirectory, DeliveryOutbox, OrganizationDirectory,
    RepositoryError, WebhookSigner,
};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

pub use event::{EventType, InvalidEvent, MAX_SUMMARY_CHARS, PostCallEvent};
pub use sealing::{InvalidSealingKey, SecretSealer, UnsealError};
pub use signature::{
    MAX_CLOCK_AHEAD, MAX_SIGNATURE_AGE, SignatureError, check_header, sign, verify,
};

/// Largest delivery appended to the outbox; larger ones (recordings) are refused when the store is
/// down rather than filling Redis.
pub const MAX_QUEUED_BODY_BYTES: usize = 1024 * 1024;

/// Most deliveries the outbox holds: beyond, new ones are refused (503) rather than evicting
/// genuine ones or exhausting Redis while the credentials cannot be checked.
pub const MAX_QUEUED_DELIVERIES: u64 = 100_000;

/// How a post-call delivery proves where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Credentials {
    /// `Authorization: Bearer <tool secret>`; only the digest is kept (also in the outbox).
    Bearer {
        /// SHA-256 of the token, hex.
        #[serde(with = "digest_hex")]
        digest: TokenDigest,
    },
    /// `ElevenLabs-Signature` under the webhook secret of the organization named in the URL.
    Signature {
        /// The organization the URL names (`?org=`).
        org: OrgId,
        /// The header as sent.
        header: String,
    },
}

mod digest_hex {
    use relay_domain::TokenDigest;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &TokenDigest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d.as_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenDigest, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(TokenDigest::from_bytes(bytes))
    }
}

/// One delivery of the post-call webhook, as received. This is what the outbox keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Who it claims to come from.
    pub credentials: Credentials,
    /// The raw body (the signature covers these exact bytes).
    #[serde(with = "body_base64")]
    pub body: Vec<u8>,
    /// When this service received it; the signature's age is checked against this.
    pub received_at: DateTime<Utc>,
}

mod body_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

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

/// Why a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Unknown or revoked token, no webhook secret, or a signature that does not verify.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the body is not a post-call event.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The store is down and the outbox could not take it either (or it is too large for it).
    #[error("neither the store nor the outbox can take the delivery")]
    Unavailable,
}

/// What one step of [`RecordCall::process`] failed with.
enum Failure {
    Refused(Refused),
    /// The store could not be reached or did not answer in time: retry later.
    StoreDown(RepositoryError),
    /// The store answered with an error retrying will not fix.
    StoreRefused(RepositoryError),
}

impl From<Refused> for Failure {
    fn from(value: Refused) -> Self {
        Self::Refused(value)
    }
}

impl From<RepositoryError> for Failure {
    fn from(value: RepositoryError) -> Self {
        match value {
            RepositoryError::Unavailable(_) => Self::StoreDown(value),
            RepositoryError::Unexpected(_) => Self::StoreRefused(value),
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
    backlog: AtomicU64,
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

    /// Deliveries waiting in the outbox when it was last read (every replay round).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
}

/// What [`RecordCall::precheck`] found in the store for a delivery's credentials, so
/// [`RecordCall::deliver`] does not look it up again. Empty when the store could not answer.
#[derive(Debug, Default)]
pub struct Prechecked(Option<Known>);

#[derive(Debug)]
enum Known {
    /// The organization of a Bearer token.
    Org(Organization),
    /// The organization named by `?org=`, with its sealed webhook secret.
    Signer(WebhookSigner),
}

/// Records post-call webhooks.
pub struct RecordCall {
    stats: Arc<OutboxStats>,
    budget: std::time::Duration,
    orgs: Arc<dyn OrganizationDirectory>,
    contacts: Arc<dyn ContactDirectory>,
    calls: Arc<dyn CallLog>,
    cache: Arc<dyn CallContextCache>,
    outbox: Option<Arc<dyn DeliveryOutbox>>,
    sealer: Option<Arc<SecretSealer>>,
}

impl std::fmt::Debug for RecordCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCall")
            .field("outbox", &self.outbox.is_some())
            .field("signatures", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl RecordCall {
    /// Wires the use case. Without an `outbox` a delivery the store cannot take is refused
    /// ([`Refused::Unavailable`]); without a `sealer` only Bearer deliveries are accepted.
    /// `budget` bounds the store and cache calls of one delivery: a store slower than that is
    /// treated as down (the delivery is queued) so ElevenLabs is answered before it gives up.
    pub fn new(
        orgs: Arc<dyn OrganizationDirectory>,
        contacts: Arc<dyn ContactDirectory>,
        calls: Arc<dyn CallLog>,
        cache: Arc<dyn CallContextCache>,
        outbox: Option<Arc<dyn DeliveryOutbox>>,
        sealer: Option<Arc<SecretSealer>>,
        budget: std::time::Duration,
    ) -> Self {
        Self {
            stats: Arc::default(),
            budget,
            orgs,
            contacts,
            calls,
            cache,
            outbox,
            sealer,
        }
    }

    /// The outbox counters.
    pub fn stats(&self) -> Arc<OutboxStats> {
        Arc::clone(&self.stats)
    }

    /// Whether deliveries the store cannot take are kept for replay.
    pub fn has_outbox(&self) -> bool {
        self.outbox.is_some()
    }

    /// Checks what can be checked before the body is read, so an unauthenticated sender cannot
    /// make the service buffer a large body: a Bearer token must belong to an organization, a
    /// signature header must be well-formed and fresh, and its organization must have a webhook
    /// secret. A store that cannot answer lets the delivery through (it is checked in full, or
    /// queued, later).
    ///
    /// # Errors
    /// [`Refused::Unauthorized`].
    ///
    /// What it found is handed to [`RecordCall::deliver`], which then does not ask the store
    /// again.
    pub async fn precheck(
        &self,
        credentials: &Credentials,
        received_at: DateTime<Utc>,
    ) -> Result<Prechecked, Refused> {
        let lookup = async {
            match credentials {
                Credentials::Bearer { digest } => {
                    match self.orgs.find_by_secret_digest(digest).await {
                        Ok(None) => Err(Refused::Unauthorized("unknown token")),
                        Ok(Some(org)) => Ok(Prechecked(Some(Known::Org(org)))),
                        Err(_) => Ok(Prechecked(None)),
                    }
                }
                Credentials::Signature { org, header } => {
                    if self.sealer.is_none() {
                        return Err(Refused::Unauthorized("signatures are not configured"));
                    }
                    check_header(header, received_at).map_err(signature_refusal)?;
                    match self.calls.webhook_signer(*org).await {
                        Ok(None) => Err(Refused::Unauthorized("no webhook secret")),
                        Ok(Some(signer)) => Ok(Prechecked(Some(Known::Signer(signer)))),
                        Err(_) => Ok(Prechecked(None)),
                    }
                }
            }
        };
        tokio::time::timeout(self.budget, lookup)
            .await
            .unwrap_or(Ok(Prechecked(None)))
    }

    /// Takes one delivery: recorded, acknowledged, or queued for replay when the store is down.
    ///
    /// # Errors
    /// [`Refused`]: bad credentials, invalid body, or neither store nor outbox available.
    #[tracing::instrument(name = "record_call", skip_all)]
    pub async fn deliver(
        &self,
        delivery: Delivery,
        prechecked: Prechecked,
    ) -> Result<Delivered, Refused> {
        match self.process_within_budget(&delivery, prechecked.0).await {
            Ok(delivered) => Ok(delivered),
            Err(Failure::Refused(refused)) => Err(refused),
            Err(Failure::StoreDown(error)) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "store down; queueing the post-call delivery");
                self.queue(&delivery).await
            }
            Err(Failure::StoreRefused(error)) => {
                // Kept rather than lost: the replay retries it once and dead-letters it if the
                // store refuses it again.
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "the store refused the call record; queueing the post-call delivery");
                self.queue(&delivery).await
            }
        }
    }

    /// Appends a delivery the store could not take to the outbox, after the checks that need no
    /// store: size, a readable event, a well-formed and fresh signature header, room left.
    async fn queue(&self, delivery: &Delivery) -> Result<Delivered, Refused> {
        let Some(outbox) = &self.outbox else {
            return Err(Refused::Unavailable);
        };
        if delivery.body.len() > MAX_QUEUED_BODY_BYTES {
            return Err(Refused::Unavailable);
        }
        if let Credentials::Signature { header, .. } = &delivery.credentials {
            check_header(header, delivery.received_at).map_err(signature_refusal)?;
        }
        let event = PostCallEvent::parse(&delivery.body)?;
        if event.event_type.call_kind().is_none() {
            // Nothing would be stored: there is nothing to keep either.
            return Ok(Delivered::Acknowledged(event.event_type));
        }
        let payload = serde_json::to_vec(delivery).map_err(|_| Refused::Unavailable)?;
        let append = async {
            if outbox.count().await? >= MAX_QUEUED_DELIVERIES {
                return Ok(false);
            }
            outbox.append(&payload).await.map(|()| true)
        };
        match tokio::time::timeout(self.budget, append).await {
            Ok(Ok(true)) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Delivered::Queued)
            }
            Ok(Ok(false)) => {
                tracing::error!(
                    max = MAX_QUEUED_DELIVERIES,
                    "the outbox is full; the post-call delivery is refused"
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

    /// Replays up to `max` queued deliveries, oldest first: each one recorded (or acknowledged)
    /// is removed, each one that can never be recorded is moved to the dead letters with its
    /// reason; the round stops at the first the store still cannot take.
    ///
    /// # Errors
    /// The outbox cannot be read ([`relay_ports::CacheError`]).
    pub async fn replay_queued(&self, max: usize) -> Result<ReplayReport, relay_ports::CacheError> {
        let Some(outbox) = &self.outbox else {
            return Ok(ReplayReport::default());
        };
        let mut report = ReplayReport::default();
        for entry in outbox.pending(max).await? {
            let delivery: Delivery = match serde_json::from_slice(&entry.payload) {
                Ok(d) => d,
                Err(error) => {
                    tracing::error!(entry = %entry.id, bytes = entry.payload.len(), error = %error, "unreadable outbox entry dead-lettered");
                    outbox.dead_letter(&entry, "unreadable entry").await?;
                    report.rejected += 1;
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let reason = match self.process_within_budget(&delivery, None).await {
                Ok(delivered) => {
                    tracing::info!(entry = %entry.id, outcome = delivered.outcome(), "queued post-call delivery replayed");
                    outbox.remove(&entry.id).await?;
                    report.replayed += 1;
                    self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(Failure::StoreDown(_)) => {
                    report.store_down = true;
                    break;
                }
                Err(Failure::Refused(refused)) => refused.to_string(),
                Err(Failure::StoreRefused(error)) => format!("the store refused it: {error}"),
            };
            tracing::warn!(entry = %entry.id, reason, "queued post-call delivery dead-lettered");
            outbox.dead_letter(&entry, &reason).await?;
            report.rejected += 1;
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(backlog) = outbox.count().await {
            self.stats.backlog.store(backlog, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// How many deliveries wait in the outbox (0 without one).
    ///
    /// # Errors
    /// The outbox cannot be read.
    pub async fn queued(&self) -> Result<u64, relay_ports::CacheError> {
        match &self.outbox {
            Some(outbox) => outbox.count().await,
            None => Ok(0),
        }
    }

    async fn process_within_budget(
        &self,
        delivery: &Delivery,
        known: Option<Known>,
    ) -> Result<Delivered, Failure> {
        tokio::time::timeout(self.budget, self.process(delivery, known))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::StoreDown(RepositoryError::Unavailable(
                    format!("no answer within {} ms", self.budget.as_millis()).into(),
                )))
            })
    }

    async fn process(
        &self,
        delivery: &Delivery,
        known: Option<Known>,
    ) -> Result<Delivered, Failure> {
        let org = self.authenticate(delivery, known).await?;
        let event = PostCallEvent::parse(&delivery.body).map_err(Refused::Invalid)?;
        let (Some(kind), Some(conversation_id)) =
            (event.event_type.call_kind(), event.conversation_id.clone())
        else {
            return Ok(Delivered::Acknowledged(event.event_type));
        };
        let contact_id = self.find_contact(&org, &event).await?;
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
        let recorded = self.calls.record_call(&record).await?;
        Ok(Delivered::Recorded {
            call_id: recorded.id,
            duplicate: !recorded.inserted,
            org_id: org.id,
            contact_id,
        })
    }

    /// The organization the delivery comes from; `known` is what [`RecordCall::precheck`]
    /// already looked up for these credentials.
    async fn authenticate(
        &self,
        delivery: &Delivery,
        known: Option<Known>,
    ) -> Result<Organization, Failure> {
        match &delivery.credentials {
            Credentials::Bearer { digest } => match known {
                Some(Known::Org(org)) => Ok(org),
                _ => self
                    .orgs
                    .find_by_secret_digest(digest)
                    .await?
                    .ok_or(Failure::Refused(Refused::Unauthorized("unknown token"))),
            },
            Credentials::Signature { org, header } => {
                let sealer = self
                    .sealer
                    .as_ref()
                    .ok_or(Refused::Unauthorized("signatures are not configured"))?;
                let signer = match known {
                    Some(Known::Signer(signer)) if signer.org.id == *org => signer,
                    _ => self
                        .calls
                        .webhook_signer(*org)
                        .await?
                        .ok_or(Refused::Unauthorized("no webhook secret"))?,
                };
                let secret = sealer
                    .open(signer.org.id, &signer.sealed_secret)
                    .map_err(|_| {
                        tracing::error!(org_id = %org, "the webhook secret does not open with WEBHOOK_SECRET_KEY");
                        Refused::Unauthorized("webhook secret unreadable")
                    })?;
                verify(
                    header,
                    &delivery.body,
                    secret.expose_secret().as_bytes(),
                    delivery.received_at,
                )
                .map_err(signature_refusal)?;
                Ok(signer.org)
            }
        }
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
            match self.cache.get(org.id, &key).await {
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
            .contacts
            .find_by_phone(org.id, number)
            .await?
            .map(|c| c.id))
    }
}

fn signature_refusal(error: SignatureError) -> Refused {
    Refused::Unauthorized(match error {
        SignatureError::Malformed => "malformed signature",
        SignatureError::Stale => "stale signature",
        SignatureError::Mismatch => "signature mismatch",
    })
}
