//! The domain of the relay: who is calling which organization, and what the voice agent may say.
//!
//! Everything here is pure: no I/O, no framework, no async runtime. Values are parsed once at the edge
//! into types that can only hold valid data (`E164`, `ConversationId`, `Region`, ...), and the rest of
//! the service trusts them.
#![warn(missing_docs)]

mod call_context;
mod call_record;
mod contact;
mod conversation;
mod ids;
mod management;
mod memory;
mod name;
mod organization;
mod phone;
mod secret;
mod stored;
mod variables;

pub use call_context::CallContext;
pub use call_record::{CallKind, CallRecord, StoredCall};
pub use contact::{Contact, NewContact};
pub use conversation::{
    CallKey, CallSid, ConversationId, ConversationIdError, MAX_CONVERSATION_ID_CHARS,
};
pub use ids::{ApiKeyId, CallId, ContactId, OrgId, SecretId};
pub use management::{
    Actor, ApiKeyInfo, AuditEntry, ContactDraft, ContactQuery, ExternalId, KeyLabel, KeyScope,
    LabelError, MAX_EXTERNAL_ID_CHARS, MAX_KEY_LABEL_CHARS, ManagedContact,
};
pub use memory::{
    CallOutcome, CallSummary, CallerMemory, MAX_MEMORY_SUMMARY_CHARS, MAX_RETENTION_DAYS,
    MemorySettings, MemoryVariables, RetentionError, StoredMemory, last_call_ago,
};
pub use name::{MAX_NAME_CHARS, PROMPT_SYNTAX, is_prompt_safe, sanitize_name, sanitize_text};
pub use organization::{FallbackName, OrgName, OrgNameError, Organization};
#[cfg(any(test, feature = "test-helpers"))]
pub use phone::examples as phone_examples;
pub use phone::{CallerNumber, E164, PhoneError, Region, RegionError, mask_phone};
pub use secret::{SecretInfo, TokenDigest, ToolToken};
pub use stored::StoredDataError;
pub use variables::{DynamicVariables, InitiationVariables};
