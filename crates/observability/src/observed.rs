//! [`Observed`]: wraps a dependency port so every call is timed into [`Metrics`] and traced as a
//! client span, in one place for every adapter.
//!
//! A call the use case abandons (its budget ran out, so its future was dropped) is recorded as
//! `timeout`. Span attributes carry the dependency, the operation and the result, never a key,
//! a number or a name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use relay_domain::{CallContext, Contact, ConversationId, E164, OrgId, Organization, TokenDigest};
use relay_ports::{
    CacheError, CallContextCache, ContactDirectory, OrganizationDirectory, RepositoryError,
};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::Metrics;

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

    fn call(&self, operation: &'static str, command: &'static str) -> Call<'_> {
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
        Call {
            metrics: &self.metrics,
            dependency: self.dependency,
            operation,
            started: Instant::now(),
            span,
            finished: false,
        }
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
    fn finish(mut self, result: &'static str, error_type: Option<&'static str>) {
        self.finished = true;
        self.record(result, error_type, self.started.elapsed());
    }

    fn record(&self, result: &'static str, error_type: Option<&'static str>, elapsed: Duration) {
        self.span.record("result", result);
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
            self.record("timeout", Some("timeout"), self.started.elapsed());
        }
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

fn found<T>(result: &Result<Option<T>, RepositoryError>) -> (&'static str, Option<&'static str>) {
    match result {
        Ok(Some(_)) => ("found", None),
        Ok(None) => ("not_found", None),
        Err(e) => ("error", Some(repository_error_type(e))),
    }
}

#[async_trait]
impl OrganizationDirectory for Observed<dyn OrganizationDirectory> {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        let call = self.call("find_organization", "SELECT");
        let result = self
            .inner
            .find_by_secret_digest(digest)
            .instrument(call.span.clone())
            .await;
        let (outcome, error) = found(&result);
        call.finish(outcome, error);
        result
    }
}

#[async_trait]
impl ContactDirectory for Observed<dyn ContactDirectory> {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        let call = self.call("find_contact", "SELECT");
        let result = self
            .inner
            .find_by_phone(org, phone)
            .instrument(call.span.clone())
            .await;
        let (outcome, error) = found(&result);
        call.finish(outcome, error);
        result
    }
}

#[async_trait]
impl CallContextCache for Observed<dyn CallContextCache> {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        let call = self.call("put_call_context", "SET");
        let result = self
            .inner
            .put(context, ttl)
            .instrument(call.span.clone())
            .await;
        match &result {
            Ok(()) => call.finish("ok", None),
            Err(e) => call.finish("error", Some(cache_error_type(e))),
        }
        result
    }

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<CallContext>, CacheError> {
        let call = self.call("get_call_context", "GET");
        let result = self
            .inner
            .get(conversation_id)
            .instrument(call.span.clone())
            .await;
        match &result {
            Ok(Some(_)) => call.finish("found", None),
            Ok(None) => call.finish("not_found", None),
            Err(e) => call.finish("error", Some(cache_error_type(e))),
        }
        result
    }
}
