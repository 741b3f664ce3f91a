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
mod outbox;
mod outcome;
mod sealing;
mod signature;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_domain::{CallId, CallKey, CallRecord, CallerNumber, ContactId, E164, Organization};
use relay_ports::{
    CallContextCache, CallLog, ContactDirectory, DeliveryOutbox, OrganizationDirectory,
    OutboxLimits, RepositoryError, WebhookSigner,
};
use secrecy::ExposeSecret as _;

pub use event::{EventType, InvalidEvent, MAX_SUMMARY_CHARS, PostCallEvent};
pub use outbox::{OutboxStats, REPLAY_BATCH, ReplayReport};
pub use outcome::{AuthFailure, Delivered, Prechecked, Refused};
pub use sealing::{InvalidSealingKey, SecretSealer, UnsealError};
pub use signature::{
    MAX_CLOCK_AHEAD, MAX_SIGNATURE_AGE, SignatureError, check_header, sign, verify,
};
pub use wire::{Credentials, Delivery};

use outcome::{Failure, Known};

use crate::KnownCredentials;

/// Largest delivery appended to the outbox; larger ones (recordings) are refused when the store is
/// down rather than filling Redis.
pub const MAX_QUEUED_BODY_BYTES: usize = 1024 * 1024;

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

    /// Reads the event and stores its record for `org`, whose credentials were verified.
    async fn record(&self, delivery: &Delivery, org: &Organization) -> Result<Delivered, Failure> {
        let event = PostCallEvent::parse(&delivery.body)?;
        let (Some(kind), Some(conversation_id)) =
            (event.event_type.call_kind(), event.conversation_id.clone())
        else {
            return Ok(Delivered::Acknowledged(event.event_type));
        };
        let (contact_id, caller) = self.find_contact(org, &event).await?;
        // Memory only where the organization keeps it: its contacts, and other callers if it
        // said so.
        let remember = caller.is_some() && org.memory.remembers(contact_id.is_some());
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
            caller,
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
            .record_call(&record, remember)
            .await
            .map_err(Failure::store)?;
        Ok(Delivered::Recorded {
            call_id: recorded.id,
            duplicate: !recorded.inserted,
            org_id: org.id,
            contact_id,
        })
    }

    /// The contact the call was with, and the caller's number (the memory's key):
    ///
    /// 1. the contact matched when the call connected (the cached context, by conversation id,
    ///    else call sid);
    /// 2. when the context is gone or had none, `data.user_id`, which the initiation route
    ///    answered with the contact's id;
    /// 3. else the organization's contact with the caller's number.
    ///
    /// The number is the one ElevenLabs sent (`external_number`), else the one the initiation
    /// route answered and ElevenLabs echoed, else the cached context's; read in the
    /// organization's region.
    async fn find_contact(
        &self,
        org: &Organization,
        event: &PostCallEvent,
    ) -> Result<(Option<ContactId>, Option<E164>), Failure> {
        let sent = [&event.external_number, &event.echoed_caller_number]
            .into_iter()
            .find_map(|raw| {
                CallerNumber::from_caller_id(raw.as_deref(), &org.default_region)
                    .number()
                    .cloned()
            });
        let keys = event
            .conversation_id
            .clone()
            .map(CallKey::Conversation)
            .into_iter()
            .chain(event.call_sid.clone().map(CallKey::CallSid));
        let mut cached = None;
        for key in keys {
            match self.ports.cache.get(org.id, &key).await {
                // Only this organization's context: the port promises it, and checking again
                // costs nothing. A context without a contact (unknown caller, or the store
                // failed at call start) falls through.
                Ok(Some(context)) if context.org_id == org.id => {
                    cached = Some(context);
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "call context lookup failed; matching by user id or number");
                    break;
                }
            }
        }
        let caller = sent.or_else(|| cached.as_ref().and_then(|c| c.caller_number.clone()));
        if let Some(contact) = cached.and_then(|c| c.contact_id) {
            return Ok((Some(contact), caller));
        }
        // The record links it only if it is this organization's contact.
        let user = event
            .user_id
            .as_deref()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(ContactId::from_uuid);
        if user.is_some() {
            return Ok((user, caller));
        }
        let Some(number) = caller else {
            return Ok((None, None));
        };
        let contact = self
            .ports
            .contacts
            .find_by_phone(org.id, &number)
            .await
            .map_err(Failure::store)?;
        Ok((contact.map(|c| c.id), Some(number)))
    }
}
