//! [`Observed`]: wraps a dependency port so every call is timed into [`Metrics`] and traced as a
//! client span, in one place for every adapter.
//!
//! A call the use case abandons (its budget ran out, so its future was dropped) is recorded as
//! `timeout`. Span attributes carry the dependency, the operation and the result, never a key,
//! a number or a name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{
    CallContext, CallKey, CallRecord, Contact, ContactId, E164, OrgId, Organization, TokenDigest,
};
use relay_ports::{
    AdminError, Appended, CacheError, CallContextCache, CallLog, Caller, ContactDirectory,
    DeliveryOutbox, Forgotten, MemoryKeeper, OrganizationDirectory, OutboxEntry, OutboxError,
    OutboxLimits, OutboxUsage, Purged, Recorded, RepositoryError, WebhookSigner,
};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::{CallResult, Metrics};

/// The OpenTelemetry `db.system.name` of a dependency label (`postgres` → `postgresql`).
fn db_system(dependency: &str) -> &'static str {
    match dependency {
        "postgres" => "postgresql",
        "sqlite" => "sqlite",
        "redis" => "redis",
        _ => "other",
    }
}

/// A port wrapped so each call is measured. `dependency` is the metric label (`postgres`,
/// `sqlite`, `redis`, `in-process`).
pub struct Observed<P: ?Sized> {
    inner: Arc<P>,
    dependency: &'static str,
    metrics: Arc<Metrics>,
}

impl<P: ?Sized> std::fmt::Debug for Observed<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("dependency", &self.dependency)
            .finish_non_exhaustive()
    }
}

impl<P: ?Sized> Observed<P> {
    /// Wraps `inner`, labelling its calls `dependency`.
    pub fn new(inner: Arc<P>, dependency: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            dependency,
            metrics,
        }
    }

    /// Runs `call` inside a client span, then records its result (`classify` names it and, on
    /// failure, its error type) in the span and the metrics. Dropped unfinished: `timeout`.
    async fn observe<T, E>(
        &self,
        operation: &'static str,
        command: &'static str,
        call: impl Future<Output = Result<T, E>>,
        classify: impl FnOnce(&Result<T, E>) -> (CallResult, Option<&'static str>),
    ) -> Result<T, E> {
        let span = tracing::info_span!(
            "dependency call",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = Empty,
            "db.system.name" = db_system(self.dependency),
            "db.operation.name" = command,
            "relay.dependency" = self.dependency,
            result = Empty,
            "error.type" = Empty,
        );
        let guard = Call {
            metrics: &self.metrics,
            dependency: self.dependency,
            operation,
            started: Instant::now(),
            span: span.clone(),
            finished: false,
        };
        let result = call.instrument(span).await;
        let (outcome, error_type) = classify(&result);
        guard.finish(outcome, error_type);
        result
    }
}

/// One call in flight; records itself when finished, or as `timeout` when dropped unfinished.
struct Call<'a> {
    metrics: &'a Metrics,
    dependency: &'static str,
    operation: &'static str,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl Call<'_> {
    fn finish(mut self, result: CallResult, error_type: Option<&'static str>) {
        self.finished = true;
        self.record(result, error_type, self.started.elapsed());
    }

    fn record(&self, result: CallResult, error_type: Option<&'static str>, elapsed: Duration) {
        self.span.record("result", result.label());
        if let Some(error_type) = error_type {
            self.span.record("error.type", error_type);
            self.span.record("otel.status_code", "ERROR");
        }
        self.metrics
            .observe_dependency(self.dependency, self.operation, result, elapsed);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.record(
                CallResult::TimedOut,
                Some("timeout"),
                self.started.elapsed(),
            );
        }
    }
}

fn outbox_error_type(error: &OutboxError) -> &'static str {
    match error {
        OutboxError::Unavailable(_) => "unavailable",
    }
}

fn repository_error_type(error: &RepositoryError) -> &'static str {
    match error {
        RepositoryError::Unavailable(_) => "unavailable",
        RepositoryError::Unexpected(_) => "unexpected",
    }
}

fn cache_error_type(error: &CacheError) -> &'static str {
    match error {
        CacheError::Unavailable(_) => "unavailable",
        CacheError::Corrupt(_) => "corrupt",
    }
}

/// A lookup's result: `found`, `not_found`, or `error` with the error's type.
fn found<T, E>(
    result: &Result<Option<T>, E>,
    error_type: fn(&E) -> &'static str,
) -> (CallResult, Option<&'static str>) {
    match result {
        Ok(Some(_)) => (CallResult::Answered("found"), None),
        Ok(None) => (CallResult::Answered("not_found"), None),
        Err(e) => (CallResult::Failed, Some(error_type(e))),
    }
}

#[async_trait]
impl OrganizationDirectory for Observed<dyn OrganizationDirectory> {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        let call = self.inner.find_by_secret_digest(digest);
        self.observe("find_organization", "SELECT", call, |r| {
            found(r, repository_error_type)
        })
        .await
    }
}

#[async_trait]
impl ContactDirectory for Observed<dyn ContactDirectory> {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let call = self.inner.find_by_phone(org, phone);
        self.observe("find_contact", "SELECT", call, |r| {
            found(r, repository_error_type)
        })
        .await
    }

    async fn find_caller(
        &self,
        org: OrgId,
        phone: &E164,
        memory_since: Option<DateTime<Utc>>,
    ) -> Result<Caller, RepositoryError> {
        let call = self.inner.find_caller(org, phone, memory_since);
        self.observe("find_caller", "SELECT", call, |r| match r {
            Ok(Caller {
                contact: Some(_), ..
            }) => (CallResult::Answered("found"), None),
            Ok(Caller {
                memory: Ok(Some(_)),
                ..
            }) => (CallResult::Answered("remembered"), None),
            Ok(_) => (CallResult::Answered("not_found"), None),
            Err(e) => (CallResult::Failed, Some(repository_error_type(e))),
        })
        .await
    }
}

/// An administrative call's result: `ok`, `not_found`, or `error` with the error's type.
fn admin_result<T>(result: &Result<T, AdminError>) -> (CallResult, Option<&'static str>) {
    match result {
        Ok(_) => (CallResult::Answered("ok"), None),
        Err(AdminError::Repository(e)) => (CallResult::Failed, Some(repository_error_type(e))),
        Err(AdminError::NotFound(_)) => (CallResult::Answered("not_found"), None),
    }
}

#[async_trait]
impl MemoryKeeper for Observed<dyn MemoryKeeper> {
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, RepositoryError> {
        let call = self.inner.purge_expired(now, batch);
        self.observe("purge_expired", "DELETE", call, |r| match r {
            Ok(purged) if !purged.ran => (CallResult::Answered("skipped"), None),
            Ok(_) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(repository_error_type(e))),
        })
        .await
    }

    async fn forget_caller(&self, org: OrgId, phone: &E164) -> Result<Forgotten, AdminError> {
        let call = self.inner.forget_caller(org, phone);
        self.observe("forget_caller", "DELETE", call, admin_result)
            .await
    }
}

#[async_trait]
impl CallContextCache for Observed<dyn CallContextCache> {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        let call = self.inner.put(context, ttl);
        self.observe("put_call_context", "SET", call, |r| match r {
            Ok(()) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(cache_error_type(e))),
        })
        .await
    }

    async fn get(&self, org: OrgId, key: &CallKey) -> Result<Option<CallContext>, CacheError> {
        let call = self.inner.get(org, key);
        self.observe("get_call_context", "GET", call, |r| {
            found(r, cache_error_type)
        })
        .await
    }

    async fn forget_caller(
        &self,
        org: OrgId,
        phone: &E164,
        contacts: &[ContactId],
    ) -> Result<u64, CacheError> {
        let call = self.inner.forget_caller(org, phone, contacts);
        self.observe("forget_call_contexts", "DEL", call, |r| match r {
            Ok(_) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(cache_error_type(e))),
        })
        .await
    }
}

#[async_trait]
impl CallLog for Observed<dyn CallLog> {
    async fn record_call(
        &self,
        record: &CallRecord,
        remember: bool,
    ) -> Result<Recorded, RepositoryError> {
        let call = self.inner.record_call(record, remember);
        self.observe("record_call", "INSERT", call, |r| match r {
            Ok(recorded) if recorded.inserted => (CallResult::Answered("inserted"), None),
            Ok(_) => (CallResult::Answered("duplicate"), None),
            Err(e) => (CallResult::Failed, Some(repository_error_type(e))),
        })
        .await
    }

    async fn list_calls(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        let call = self.inner.list_calls(org, since, limit);
        self.observe("list_calls", "SELECT", call, admin_result)
            .await
    }

    async fn webhook_signer(&self, org: OrgId) -> Result<Option<WebhookSigner>, RepositoryError> {
        let call = self.inner.webhook_signer(org);
        self.observe("find_webhook_signer", "SELECT", call, |r| {
            found(r, repository_error_type)
        })
        .await
    }
}

/// An outbox command's result: `ok`, or `error` with the error's type.
fn outbox_result<T>(result: &Result<T, OutboxError>) -> (CallResult, Option<&'static str>) {
    match result {
        Ok(_) => (CallResult::Answered("ok"), None),
        Err(e) => (CallResult::Failed, Some(outbox_error_type(e))),
    }
}

#[async_trait]
impl DeliveryOutbox for Observed<dyn DeliveryOutbox> {
    async fn append(&self, payload: &[u8], limits: OutboxLimits) -> Result<Appended, OutboxError> {
        let call = self.inner.append(payload, limits);
        self.observe("append_outbox", "XADD", call, |r| match r {
            Ok(Appended::Stored) => (CallResult::Answered("ok"), None),
            Ok(Appended::Full(_)) => (CallResult::Answered("full"), None),
            Err(e) => (CallResult::Failed, Some(outbox_error_type(e))),
        })
        .await
    }

    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let call = self.inner.pending(max);
        self.observe("read_outbox", "XRANGE", call, outbox_result)
            .await
    }

    async fn remove(&self, id: &str) -> Result<(), OutboxError> {
        let call = self.inner.remove(id);
        self.observe("remove_from_outbox", "XDEL", call, outbox_result)
            .await
    }

    async fn dead_letter(
        &self,
        entry: &OutboxEntry,
        reason: &str,
        limits: OutboxLimits,
    ) -> Result<u64, OutboxError> {
        let call = self.inner.dead_letter(entry, reason, limits);
        self.observe("dead_letter", "XADD", call, outbox_result)
            .await
    }

    async fn usage(&self) -> Result<OutboxUsage, OutboxError> {
        let call = self.inner.usage();
        self.observe("outbox_usage", "XLEN", call, outbox_result)
            .await
    }
}
