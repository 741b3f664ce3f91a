//! The use cases of the relay, written against the ports only.
//!
//! - [`PersonalizeCall`]: authenticate the organization, match the caller, cache the call
//!   context, answer the agent's dynamic variables, all within a dependency budget.
//! - [`Admin`]: organizations and their tool secrets.
//! - [`ContactImporter`]: bulk contact import with per-row normalization and rejection reasons.
//! - [`post_call::RecordCall`]: ElevenLabs' post-call webhook, one call record per conversation,
//!   queued in a durable outbox while the store is down.
//! - [`CallHistory`]: an organization's call records, newest first.
//! - [`Readiness`]: may this replica take calls (dependencies answer, not shutting down).
//! - [`Retention`] and [`ForgetCaller`]: the returning-caller memory's retention and erasure.
//! - [`Management`]: the management API's and the CLI's operations, one implementation each,
//!   checked against the acting [`Principal`] and written to the audit trail.
#![warn(missing_docs)]

mod admin;
mod background;
mod call_history;
mod credentials;
mod import;
mod management;
mod memory;
mod personalize;
pub mod post_call;
mod readiness;

pub use admin::{
    Admin, FallbackNameError, IssuedSecret, MAX_WEBHOOK_SECRET_BYTES, PromptTextError,
    WebhookSecret, WebhookSecretError, check_prompt_text,
};
pub use background::{BackgroundWriteStats, RetryPolicy};
pub use call_history::CallHistory;
pub use credentials::{KnownCredentials, MAX_KNOWN_CREDENTIALS};
pub use import::{
    ContactImporter, ImportError, ImportReport, MAX_REPORTED_REJECTIONS, RawContact, Rejection,
};
pub use management::{
    ContactInput, ContactPatch, ContactSearch, DEFAULT_PAGE, DeletedContact, IMPORT_BATCH,
    IssuedKey, MANAGEMENT_KEY_PREFIX, MAX_PAGE, ManageError, Management, ManagementPorts,
    OrgChange, Page, Principal,
};
pub use memory::{
    ForgetCaller, ForgetError, ForgetReport, PURGE_BATCH, PURGE_INTERVAL, PURGE_MAX_BATCHES,
    Retention,
};
pub use personalize::{
    Answer, AnswerOutcome, DependencyFailure, MatchResult, MemoryOutcome, PersonalizationRequest,
    PersonalizeCall, Unauthorized,
};
pub use readiness::{CheckResult, Readiness, ReadinessReport};
