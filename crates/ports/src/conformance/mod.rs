//! Adapter conformance suites (`test-helpers` feature): the contract of each port, written once
//! and run against every implementation of that port (the adapters and the in-memory fakes), so
//! swapping adapters is proven, not hoped.
//!
//! Each suite is one file ([`cache`], [`outbox`], [`store`]) whose cases are defined inside one
//! `cases!` invocation: it defines each case as a `pub async fn` and generates the suite's
//! exported macro (`cache_conformance_tests!`, `outbox_conformance_tests!`,
//! `store_conformance_tests!`) from those same definitions, so a case exists in one place only and
//! cannot be defined without being run. An implementation's test file invokes the macro with an
//! expression that builds a fresh fixture; each case becomes its own `#[tokio::test]`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{CallContext, CallKey, CallSid, ContactId, ConversationId, E164, OrgId};

pub use crate::Store;
use crate::{Cache, CallContextCache, DeliveryOutbox, IdempotencyCache};

/// What the cache suite needs from an adapter's test setup.
#[async_trait]
pub trait CacheFixture: Send + Sync {
    /// A cache on a live backend, isolated from other tests.
    fn cache(&self) -> &dyn CallContextCache;
    /// The same cache as the idempotency cache (its keys as isolated as [`Self::cache`]'s).
    fn idempotency(&self) -> &dyn IdempotencyCache;
    /// A cache whose backend is gone (unreachable); `None` for a cache with no backend to lose
    /// (in-process), whose suite is generated with `cache_conformance_tests!(in_process: ..)`
    /// and so has no backend-gone case.
    fn dead_cache(&self) -> Option<Box<dyn Cache>>;
}

/// What the outbox suite needs from an adapter's test setup.
#[async_trait]
pub trait OutboxFixture: Send + Sync {
    /// An empty outbox on a live backend, isolated from other tests.
    fn outbox(&self) -> &dyn DeliveryOutbox;
    /// The dead letters, oldest first: each payload with its reason.
    async fn dead_letters(&self) -> Vec<(Vec<u8>, String)>;
}

/// What the store suite needs from an adapter's test setup.
#[async_trait]
pub trait StoreFixture: Send + Sync {
    /// A store on a fresh, empty, migrated database.
    fn store(&self) -> &dyn Store;
    /// A store whose backend is gone (unreachable).
    fn dead_store(&self) -> Box<dyn Store>;
    /// Writes a contact the way another system might: no import rules, this id and update time.
    async fn insert_raw_contact(
        &self,
        org: OrgId,
        id: ContactId,
        first_name: &str,
        phone: &E164,
        updated_at: DateTime<Utc>,
    );
}

fn context(conversation: &str, contact: Option<u128>) -> CallContext {
    CallContext {
        conversation_id: Some(ConversationId::parse(conversation).expect("valid id")),
        call_sid: None,
        org_id: org1(),
        contact_id: contact.map(|c| ContactId::from_uuid(uuid::Uuid::from_u128(c))),
        caller_number: Some(e164("+14165550100")),
        called_number: Some("+12362320246".into()),
        agent_id: Some("agent_1".into()),
        received_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("timestamp"),
    }
}

/// The organization of [`context`].
fn org1() -> OrgId {
    OrgId::from_uuid(uuid::Uuid::from_u128(1))
}

fn e164(s: &str) -> E164 {
    E164::parse_e164(s).expect("E.164 test number")
}

fn conv(s: &str) -> CallKey {
    CallKey::Conversation(ConversationId::parse(s).expect("valid id"))
}

fn sid(s: &str) -> CallKey {
    CallKey::CallSid(CallSid::parse(s).expect("valid id"))
}

/// Defines a suite's cases and the exported macro that runs them, from one list.
///
/// ```text
/// cases! {
///     /// Docs of the exported macro.
///     macro some_conformance_tests for some_suite;
///
///     /// A case.
///     pub async fn a_case(f: &impl SomeFixture) { .. }
///
///     needs a backend:
///
///     /// A case that only an implementation with a backend to lose can run.
///     pub async fn gone_backend_is_unavailable(f: &impl SomeFixture) { .. }
/// }
/// ```
///
/// Each case is emitted unchanged as a `pub async fn` of the invoking module, which must be
/// `conformance::some_suite`, and the exported `some_conformance_tests!` generates one
/// `#[tokio::test]` per case defined above: `some_conformance_tests!($fixture)` all of them,
/// `some_conformance_tests!(in_process: $fixture)` all but those after `needs a backend:` (the
/// section is optional).
macro_rules! cases {
    // `$d` is a `$`, for the exported macro's own metavariables.
    (@define ($d:tt)
        $(#[$tests_meta:meta])*
        macro $tests:ident for $suite:ident;
        $(
            $(#[$meta:meta])*
            pub async fn $case:ident $params:tt $body:block
        )+
        needs a backend:
        $(
            $(#[$backend_meta:meta])*
            pub async fn $backend_case:ident $backend_params:tt $backend_body:block
        )*
    ) => {
        $(
            $(#[$meta])*
            pub async fn $case $params $body
        )+
        $(
            $(#[$backend_meta])*
            pub async fn $backend_case $backend_params $backend_body
        )*

        $(#[$tests_meta])*
        #[macro_export]
        macro_rules! $tests {
            (in_process: $d fixture:expr) => {
                $d crate::__conformance_cases!($suite, $d fixture; $($case,)+);
            };
            ($d fixture:expr) => {
                $d crate::__conformance_cases!($suite, $d fixture;
                    $($case,)+ $($backend_case,)*);
            };
        }
    };
    // Without a `needs a backend:` section: an empty one.
    (@define ($d:tt)
        $(#[$tests_meta:meta])*
        macro $tests:ident for $suite:ident;
        $(
            $(#[$meta:meta])*
            pub async fn $case:ident $params:tt $body:block
        )+
    ) => {
        cases! { @define ($d)
            $(#[$tests_meta])*
            macro $tests for $suite;
            $(
                $(#[$meta])*
                pub async fn $case $params $body
            )+
            needs a backend:
        }
    };
    ($($input:tt)+) => {
        cases! { @define ($) $($input)+ }
    };
}

pub mod cache;
pub mod outbox;
pub mod store;

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $fixture:expr; $($case:ident),+ $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = $fixture;
                    $crate::conformance::$suite::$case(&fixture).await;
                }
            )+
        }
    };
}
