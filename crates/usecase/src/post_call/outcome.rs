//! What a delivery comes to: accepted ([`Delivered`]) or refused ([`Refused`], with the
//! [`AuthFailure`] behind a refusal of credentials), and what the precheck learned about its
//! credentials before the body was read ([`Prechecked`]).

use relay_domain::{CallId, ContactId, OrgId, Organization};
use relay_ports::{RepositoryError, WebhookSigner};

use super::{EventType, InvalidEvent, SignatureError};

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
pub(super) enum Failure {
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
    pub(super) fn store(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => Self::StoreDown(error),
            RepositoryError::Unexpected(_) => Self::StoreRefused(error),
        }
    }
}

/// What [`RecordCall::precheck`] verified about a delivery's credentials before its body is
/// read, for [`RecordCall::deliver`].
#[derive(Debug)]
pub struct Prechecked {
    pub(super) known: Known,
    /// The store answered (rather than this replica's memory of it).
    pub(super) from_store: bool,
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
pub(super) enum Known {
    /// The organization of a Bearer token.
    Org(Organization),
    /// The organization named by `?org=`, with its sealed webhook secret.
    Signer(WebhookSigner),
}
