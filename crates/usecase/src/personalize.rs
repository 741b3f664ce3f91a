//! "Personalize this call": the one use case on the hot path.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use relay_domain::{
    CallContext, CallSid, CallerNumber, ContactId, ConversationId, DynamicVariables, E164,
    InitiationVariables, OrgId, Organization, PhoneError, ToolToken,
};
use relay_ports::{CallContextCache, Caller, ContactDirectory, OrganizationDirectory};
use tokio::time::{Instant, timeout_at};
use tracing::Instrument as _;

use crate::KnownCredentials;
use crate::background::{BackgroundWriteStats, BackgroundWriter, RetryPolicy};

/// A request whose token was checked, before its body is read: the organization (or why the
/// store could not say), the deadline the rest of the request shares, and its trace span.
#[derive(Debug)]
pub struct Authenticated {
    org: Result<Organization, DependencyFailure>,
    deadline: Instant,
    span: tracing::Span,
}

impl Authenticated {
    /// The organization, when the store could check the token.
    pub fn org(&self) -> Option<&Organization> {
        self.org.as_ref().ok()
    }
}

/// A validated personalization request: what ElevenLabs sent in the body, parsed at the edge.
/// The contract's route always has a conversation id; ElevenLabs' own initiation route has a
/// call sid instead.
#[derive(Debug, Clone, Default)]
pub struct PersonalizationRequest {
    /// The conversation, a key of the cached context.
    pub conversation_id: Option<ConversationId>,
    /// The telephony provider's call id, a key of the cached context.
    pub call_sid: Option<CallSid>,
    /// The caller's number as sent (any format), if any.
    pub caller_id: Option<String>,
    /// The number that was called, as sent.
    pub called_number: Option<String>,
    /// The agent that took the call, as sent.
    pub agent_id: Option<String>,
}

/// The token does not belong to any organization (unknown or revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unauthorized")]
pub struct Unauthorized;

/// Whether the caller was recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchResult {
    /// A contact of the organization has the caller's number.
    Matched(ContactId),
    /// The caller id was missing, withheld or not a valid number.
    NoCallerNumber(PhoneError),
    /// The number is valid but no contact of the organization has it.
    UnknownCaller,
    /// The store failed or ran out of time, so we do not know.
    Unknown,
}

/// How a dependency failed on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyFailure {
    /// It returned an error.
    Error,
    /// It did not answer within the request's budget.
    Timeout,
}

impl DependencyFailure {
    /// `error` or `timeout`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// What to answer, and what happened on the way (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The variables for the agent; empty (`{}`) unless the caller was matched.
    pub variables: DynamicVariables,
    /// The organization, when the token could be checked.
    pub org: Option<Organization>,
    /// The caller's number, when it was a valid one.
    pub caller_number: Option<E164>,
    /// Whether the caller was recognized.
    pub matched: MatchResult,
    /// The organization/contact store failed.
    pub store_failure: Option<DependencyFailure>,
    /// The context write failed on the request path (it is retried in the background).
    pub cache_failure: Option<DependencyFailure>,
    /// What the caller's memory gave; `None` when no lookup was made (no usable number, or
    /// the store failed).
    pub memory: Option<MemoryOutcome>,
}

/// What the returning-caller memory gave an answer ([`Answer::memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryOutcome {
    /// The organization's memory is off (or off for this caller, a stranger).
    Off,
    /// Nothing is remembered of the caller.
    None,
    /// The answer carries what is remembered.
    Remembered,
    /// The memory could not be read; the answer is what it would be without it.
    Unreadable,
}

impl MemoryOutcome {
    /// The label in metrics: `off`, `none`, `remembered` or `unreadable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::None => "none",
            Self::Remembered => "remembered",
            Self::Unreadable => "unreadable",
        }
    }
}

/// What a personalization answer was ([`Answer::outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// The caller is one of the organization's contacts.
    Matched,
    /// Every dependency answered and the caller is not a contact (or withheld the number).
    NoMatch,
    /// A dependency failed or was too slow: the answer is what could be had without it.
    Degraded,
}

impl AnswerOutcome {
    /// The label in logs and metrics: `matched`, `no_match` or `degraded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::NoMatch => "no_match",
            Self::Degraded => "degraded",
        }
    }
}

impl Answer {
    /// What the answer was, for logs and metrics.
    pub fn outcome(&self) -> AnswerOutcome {
        if self.store_failure.is_some() || self.cache_failure.is_some() {
            AnswerOutcome::Degraded
        } else if matches!(self.matched, MatchResult::Matched(_)) {
            AnswerOutcome::Matched
        } else {
            AnswerOutcome::NoMatch
        }
    }

    /// The organization's id, when the token could be checked.
    pub fn org_id(&self) -> Option<OrgId> {
        self.org.as_ref().map(|o| o.id)
    }

    /// The full variable set of ElevenLabs' initiation route, with the organization's
    /// fallbacks for an unrecognized caller.
    pub fn initiation_variables(&self) -> InitiationVariables {
        InitiationVariables::new(
            self.org.as_ref(),
            &self.variables,
            self.caller_number.as_ref(),
        )
    }

    fn degraded_store(failure: DependencyFailure) -> Self {
        Self {
            variables: DynamicVariables::none(),
            org: None,
            caller_number: None,
            matched: MatchResult::Unknown,
            store_failure: Some(failure),
            cache_failure: None,
            memory: None,
        }
    }

    /// The stable identifier ElevenLabs groups a person's conversations by (`user_id`): the
    /// matched contact's id, never a number or a name.
    pub fn user_id(&self) -> Option<String> {
        match self.matched {
            MatchResult::Matched(id) => Some(id.to_string()),
            _ => None,
        }
    }
}

/// The caller id read and, when it gave a number, that number looked up.
enum CallerLookup {
    /// No number to look up: none sent, withheld, or invalid.
    Unusable(PhoneError),
    /// The number, and what the store has for it (or how it failed).
    Looked {
        number: E164,
        found: Result<Caller, DependencyFailure>,
    },
}

impl CallerLookup {
    fn number(&self) -> Option<&E164> {
        match self {
            Self::Unusable(_) => None,
            Self::Looked { number, .. } => Some(number),
        }
    }
}

/// Personalizes calls: authenticate by token digest, match the caller within the organization,
/// cache the call context, answer the dynamic variables.
///
/// A person is waiting on the line, so every dependency call shares one budget: when the store
/// fails or is slow the answer is `{}` (the call goes on without personalization); when the cache
/// fails or is slow the variables are answered anyway and the write is retried in the background.
pub struct PersonalizeCall {
    orgs: Arc<dyn OrganizationDirectory>,
    contacts: Arc<dyn ContactDirectory>,
    cache: Arc<dyn CallContextCache>,
    budget: Duration,
    background: BackgroundWriter,
    known: Arc<KnownCredentials>,
}

impl std::fmt::Debug for PersonalizeCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalizeCall")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl PersonalizeCall {
    /// Wires the use case to its ports. `budget` bounds the time spent on dependencies per call.
    /// Every token the store confirms is remembered in `known` (shared with the post-call
    /// webhook and the failed-authentication throttle).
    pub fn new(
        orgs: Arc<dyn OrganizationDirectory>,
        contacts: Arc<dyn ContactDirectory>,
        cache: Arc<dyn CallContextCache>,
        budget: Duration,
        retry: RetryPolicy,
        known: Arc<KnownCredentials>,
    ) -> Self {
        Self {
            orgs,
            contacts,
            cache,
            budget,
            background: BackgroundWriter::new(retry),
            known,
        }
    }

    /// The same use case over other contact and context ports: the organization lookup, the
    /// budget, the background writer (its bound on pending writes and its counts) and the
    /// confirmed tokens are shared. The service gives each HTTP worker thread its own
    /// connections this way, so a request's Postgres and Redis I/O runs, and is woken, on the
    /// thread that serves it.
    pub fn with_ports(
        &self,
        contacts: Arc<dyn ContactDirectory>,
        cache: Arc<dyn CallContextCache>,
    ) -> Self {
        Self {
            orgs: Arc::clone(&self.orgs),
            contacts,
            cache,
            budget: self.budget,
            background: self.background.clone(),
            known: Arc::clone(&self.known),
        }
    }

    /// Whether the store confirmed this token recently ([`KnownCredentials`]).
    pub fn knows_token(&self, digest: &relay_domain::TokenDigest) -> bool {
        self.known.knows_token(digest)
    }

    /// The dependency budget of one call.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Counts of context writes retried in the background.
    pub fn background_stats(&self) -> Arc<BackgroundWriteStats> {
        Arc::clone(self.background.stats())
    }

    /// Waits up to `limit` for background context writes to finish (at shutdown). Returns how
    /// many were still pending.
    pub async fn drain_background_writes(&self, limit: Duration) -> usize {
        self.background.drain(limit).await
    }

    /// Answers one personalization request: [`Self::authenticate`], then [`Self::answer`].
    ///
    /// # Errors
    /// [`Unauthorized`] when the token belongs to no organization (unknown or revoked).
    pub async fn personalize(
        &self,
        token: &ToolToken,
        request: PersonalizationRequest,
    ) -> Result<Answer, Unauthorized> {
        let authenticated = self.authenticate(token).await?;
        Ok(self.answer(authenticated, request).await)
    }

    /// Checks the token, before the request's body is read: an unknown sender gets its refusal
    /// without the service reading (or buffering) anything it sent. The dependency budget
    /// starts here and covers the rest of the request.
    ///
    /// # Errors
    /// [`Unauthorized`] when the token belongs to no organization (unknown or revoked). A store
    /// that cannot check the token is not an authorization failure: the answer is then `{}`.
    pub async fn authenticate(&self, token: &ToolToken) -> Result<Authenticated, Unauthorized> {
        let deadline = Instant::now() + self.budget;
        let span = tracing::info_span!(
            "personalize_call",
            conversation_id = tracing::field::Empty,
            call_sid = tracing::field::Empty,
        );
        let digest = token.digest();
        let found = timeout_at(deadline, self.orgs.find_by_secret_digest(&digest))
            .instrument(span.clone())
            .await;
        let org = match found {
            Ok(Ok(Some(org))) => {
                self.known.token_confirmed(&digest, &org);
                Ok(org)
            }
            Ok(Ok(None)) => {
                self.known.token_refused(&digest);
                return Err(Unauthorized);
            }
            Ok(Err(error)) => {
                span.in_scope(|| tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "organization lookup failed"));
                Err(DependencyFailure::Error)
            }
            Err(_) => {
                span.in_scope(|| {
                    tracing::warn!(
                        budget_ms = self.budget.as_millis(),
                        "organization lookup timed out"
                    );
                });
                Err(DependencyFailure::Timeout)
            }
        };
        Ok(Authenticated {
            org,
            deadline,
            span,
        })
    }

    /// Answers a request whose token [`Self::authenticate`] checked, within what is left of its
    /// budget. Never fails: a dependency that fails or runs out of time degrades the answer.
    pub async fn answer(
        &self,
        authenticated: Authenticated,
        request: PersonalizationRequest,
    ) -> Answer {
        let Authenticated {
            org,
            deadline,
            span,
        } = authenticated;
        if let Some(id) = &request.conversation_id {
            span.record("conversation_id", id.as_str());
        }
        if let Some(sid) = &request.call_sid {
            span.record("call_sid", sid.as_str());
        }
        match org {
            Ok(org) => {
                self.answer_for(org, request, deadline)
                    .instrument(span)
                    .await
            }
            Err(failure) => Answer::degraded_store(failure),
        }
    }

    async fn answer_for(
        &self,
        org: Organization,
        request: PersonalizationRequest,
        deadline: Instant,
    ) -> Answer {
        let now = Utc::now();
        let lookup = self
            .find_caller(&org, request.caller_id.as_deref(), now, deadline)
            .await;
        let caller_number = lookup.number().cloned();
        let (variables, matched, store_failure, memory) = Self::match_caller(&org, lookup, now);

        let context = CallContext {
            conversation_id: request.conversation_id,
            call_sid: request.call_sid,
            org_id: org.id,
            contact_id: match matched {
                MatchResult::Matched(id) => Some(id),
                _ => None,
            },
            caller_number: caller_number.clone(),
            called_number: request.called_number,
            agent_id: request.agent_id,
            received_at: now,
        };
        let cache_failure = self.store_context(context, deadline).await;

        Answer {
            variables,
            caller_number,
            org: Some(org),
            matched,
            store_failure,
            cache_failure,
            memory,
        }
    }

    /// Reads the caller id and looks the number up.
    ///
    /// A caller id already written as E.164 ([`E164::written`], what telephony providers send)
    /// is looked up as it is, and a contact found that way settles it without the
    /// numbering-plan parser: the stored number is a parser output, which parses back to
    /// itself. Otherwise the caller id is parsed in the organization's region, and the lookup
    /// is reused when the parser gives the same number (or made again when it gives another).
    /// Either way the result is exactly what parsing first would have given.
    async fn find_caller(
        &self,
        org: &Organization,
        raw: Option<&str>,
        now: chrono::DateTime<Utc>,
        deadline: Instant,
    ) -> CallerLookup {
        let since = org.memory.window_start(now);
        let written = raw.and_then(E164::written);
        let mut early = None;
        if let Some(number) = written {
            let found = self.lookup(org.id, &number, since, deadline).await;
            if matches!(&found, Ok(caller) if caller.contact.is_some()) {
                return CallerLookup::Looked { number, found };
            }
            early = Some((number, found));
        }
        let number = match CallerNumber::from_caller_id(raw, &org.default_region) {
            CallerNumber::Known(number) => number,
            CallerNumber::Unusable(reason) => return CallerLookup::Unusable(reason),
        };
        let found = match early {
            Some((looked_up, found)) if looked_up == number => found,
            _ => self.lookup(org.id, &number, since, deadline).await,
        };
        CallerLookup::Looked { number, found }
    }

    /// One lookup of the caller within the request's budget; a failure is logged here.
    async fn lookup(
        &self,
        org: OrgId,
        number: &E164,
        since: Option<chrono::DateTime<Utc>>,
        deadline: Instant,
    ) -> Result<Caller, DependencyFailure> {
        match timeout_at(deadline, self.contacts.find_caller(org, number, since)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "contact lookup failed");
                Err(DependencyFailure::Error)
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.budget.as_millis(),
                    "contact lookup timed out"
                );
                Err(DependencyFailure::Timeout)
            }
        }
    }

    /// What the lookup of the caller (and what is remembered of them) gives the answer. A
    /// memory that cannot be read costs the answer its memory only, never the name.
    fn match_caller(
        org: &Organization,
        lookup: CallerLookup,
        now: chrono::DateTime<Utc>,
    ) -> (
        DynamicVariables,
        MatchResult,
        Option<DependencyFailure>,
        Option<MemoryOutcome>,
    ) {
        let (number, found) = match lookup {
            CallerLookup::Looked {
                number,
                found: Ok(found),
            } => (number, found),
            CallerLookup::Looked {
                found: Err(failure),
                ..
            } => {
                return (
                    DynamicVariables::none(),
                    MatchResult::Unknown,
                    Some(failure),
                    None,
                );
            }
            CallerLookup::Unusable(reason) => {
                return (
                    DynamicVariables::none(),
                    MatchResult::NoCallerNumber(reason),
                    None,
                    None,
                );
            }
        };
        let remembers = org.memory.remembers(found.contact.is_some());
        let (memory, outcome) = match found.memory {
            _ if !remembers => (None, MemoryOutcome::Off),
            Ok(Some(memory)) if memory.has_something_to_say() => {
                (Some(memory), MemoryOutcome::Remembered)
            }
            Ok(_) => (None, MemoryOutcome::None),
            Err(error) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "caller memory unreadable; answering without it");
                (None, MemoryOutcome::Unreadable)
            }
        };
        match found.contact {
            Some(contact) => (
                DynamicVariables::for_match(org, &contact, &number)
                    .with_memory(memory.as_ref(), now),
                MatchResult::Matched(contact.id),
                None,
                Some(outcome),
            ),
            None => (
                DynamicVariables::for_remembered_stranger(org, &number, memory.as_ref(), now),
                MatchResult::UnknownCaller,
                None,
                Some(outcome),
            ),
        }
    }

    /// Writes the context within what is left of the budget; on failure hands it to the
    /// background writer and reports how the request-path write failed.
    async fn store_context(
        &self,
        context: CallContext,
        deadline: Instant,
    ) -> Option<DependencyFailure> {
        if context.keys().is_empty() {
            // Neither id was sent: nothing could find the context later.
            return None;
        }
        let failure = match timeout_at(deadline, self.cache.put(&context, CallContext::TTL)).await {
            Ok(Ok(())) => return None,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "call context write failed; retrying in background");
                DependencyFailure::Error
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.budget.as_millis(),
                    "call context write timed out; retrying in background"
                );
                DependencyFailure::Timeout
            }
        };
        self.background.schedule(Arc::clone(&self.cache), context);
        Some(failure)
    }
}
