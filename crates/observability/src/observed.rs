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
    ApiKeyId, ApiKeyInfo, AuditEntry, CallContext, CallId, CallKey, CallRecord, Contact,
    ContactDraft, ContactId, ContactQuery, E164, ExternalId, FallbackName, KeyLabel, KeyScope,
    ManagedContact, MemorySettings, NewContact, OrgId, OrgName, Organization, Region, SecretId,
    SecretInfo, TokenDigest,
};
use relay_ports::{
    AdminError, Appended, AuditLog, CacheError, CallContextCache, CallCursor, CallLog, Caller,
    Claim, ContactAdmin, ContactDirectory, ContactImport, ContactUpsert, DeliveryOutbox, Forgotten,
    IdempotencyCache, ManagementKeys, MemoryKeeper, OrganizationAdmin, OrganizationDirectory,
    OutboxEntry, OutboxError, OutboxLimits, OutboxUsage, Purged, Recorded, RepositoryError,
    StoredResponse, UpsertSummary, WebhookSigner,
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

/// An administrative call's result: `ok`, `not_found`, `conflict`, or `error` with the error's
/// type.
fn admin_result<T>(result: &Result<T, AdminError>) -> (CallResult, Option<&'static str>) {
    match result {
        Ok(_) => (CallResult::Answered("ok"), None),
        Err(e) => admin_error(e),
    }
}

/// A lookup by an administrative call: `found`, `not_found`, or as [`admin_result`].
fn admin_found<T>(result: &Result<Option<T>, AdminError>) -> (CallResult, Option<&'static str>) {
    match result {
        Ok(Some(_)) => (CallResult::Answered("found"), None),
        Ok(None) => (CallResult::Answered("not_found"), None),
        Err(e) => admin_error(e),
    }
}

fn admin_error(error: &AdminError) -> (CallResult, Option<&'static str>) {
    match error {
        AdminError::Repository(e) => (CallResult::Failed, Some(repository_error_type(e))),
        AdminError::NotFound(_) => (CallResult::Answered("not_found"), None),
        AdminError::ExternalIdTaken | AdminError::VersionMismatch(_) => {
            (CallResult::Answered("conflict"), None)
        }
    }
}

/// Wraps an administrative port method: `$op` is the metric's operation, `$command` the span's.
macro_rules! observe_admin {
    ($self:ident, $op:literal, $command:literal, $call:expr) => {
        $self.observe($op, $command, $call, admin_result).await
    };
}

#[async_trait]
impl OrganizationAdmin for Observed<dyn OrganizationAdmin> {
    async fn create_organization(
        &self,
        name: &OrgName,
        default_region: Region,
    ) -> Result<Organization, AdminError> {
        observe_admin!(
            self,
            "create_organization",
            "INSERT",
            self.inner.create_organization(name, default_region)
        )
    }

    async fn list_organizations(&self) -> Result<Vec<Organization>, AdminError> {
        observe_admin!(
            self,
            "list_organizations",
            "SELECT",
            self.inner.list_organizations()
        )
    }

    async fn add_secret(&self, org: OrgId, digest: &TokenDigest) -> Result<SecretInfo, AdminError> {
        observe_admin!(
            self,
            "add_secret",
            "INSERT",
            self.inner.add_secret(org, digest)
        )
    }

    async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError> {
        observe_admin!(self, "list_secrets", "SELECT", self.inner.list_secrets(org))
    }

    async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        observe_admin!(
            self,
            "revoke_secret",
            "UPDATE",
            self.inner.revoke_secret(secret)
        )
    }

    async fn find_organization(&self, org: OrgId) -> Result<Option<Organization>, AdminError> {
        let call = self.inner.find_organization(org);
        self.observe("get_organization", "SELECT", call, admin_found)
            .await
    }

    async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &FallbackName,
    ) -> Result<Organization, AdminError> {
        observe_admin!(
            self,
            "update_organization",
            "UPDATE",
            self.inner.set_unknown_caller_name(org, name)
        )
    }

    async fn set_memory(
        &self,
        org: OrgId,
        settings: MemorySettings,
    ) -> Result<Organization, AdminError> {
        observe_admin!(
            self,
            "update_organization",
            "UPDATE",
            self.inner.set_memory(org, settings)
        )
    }

    async fn rename_organization(
        &self,
        org: OrgId,
        name: &OrgName,
    ) -> Result<Organization, AdminError> {
        observe_admin!(
            self,
            "update_organization",
            "UPDATE",
            self.inner.rename_organization(org, name)
        )
    }

    async fn set_default_region(
        &self,
        org: OrgId,
        region: Region,
    ) -> Result<Organization, AdminError> {
        observe_admin!(
            self,
            "update_organization",
            "UPDATE",
            self.inner.set_default_region(org, region)
        )
    }

    async fn delete_organization(&self, org: OrgId) -> Result<(), AdminError> {
        observe_admin!(
            self,
            "delete_organization",
            "DELETE",
            self.inner.delete_organization(org)
        )
    }

    async fn set_webhook_secret(&self, org: OrgId, sealed: &[u8]) -> Result<(), AdminError> {
        observe_admin!(
            self,
            "update_organization",
            "UPDATE",
            self.inner.set_webhook_secret(org, sealed)
        )
    }
}

#[async_trait]
impl ContactImport for Observed<dyn ContactImport> {
    async fn upsert_contacts(
        &self,
        org: OrgId,
        contacts: &[NewContact],
    ) -> Result<UpsertSummary, AdminError> {
        observe_admin!(
            self,
            "import_contacts",
            "INSERT",
            self.inner.upsert_contacts(org, contacts)
        )
    }
}

#[async_trait]
impl ContactAdmin for Observed<dyn ContactAdmin> {
    async fn get_contact(
        &self,
        org: OrgId,
        id: ContactId,
    ) -> Result<Option<ManagedContact>, AdminError> {
        let call = self.inner.get_contact(org, id);
        self.observe("get_contact", "SELECT", call, admin_found)
            .await
    }

    async fn create_contact(
        &self,
        org: OrgId,
        draft: &ContactDraft,
    ) -> Result<ManagedContact, AdminError> {
        observe_admin!(
            self,
            "create_contact",
            "INSERT",
            self.inner.create_contact(org, draft)
        )
    }

    async fn update_contact(
        &self,
        org: OrgId,
        id: ContactId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        observe_admin!(
            self,
            "update_contact",
            "UPDATE",
            self.inner.update_contact(org, id, draft, expected)
        )
    }

    async fn upsert_by_external_id(
        &self,
        org: OrgId,
        external_id: &ExternalId,
        draft: &ContactDraft,
        expected: Option<i64>,
    ) -> Result<ContactUpsert, AdminError> {
        observe_admin!(
            self,
            "upsert_contact",
            "INSERT",
            self.inner
                .upsert_by_external_id(org, external_id, draft, expected)
        )
    }

    async fn delete_contact(
        &self,
        org: OrgId,
        id: ContactId,
        expected: Option<i64>,
    ) -> Result<ManagedContact, AdminError> {
        observe_admin!(
            self,
            "delete_contact",
            "DELETE",
            self.inner.delete_contact(org, id, expected)
        )
    }

    async fn list_contacts(
        &self,
        org: OrgId,
        query: &ContactQuery,
    ) -> Result<Vec<ManagedContact>, AdminError> {
        observe_admin!(
            self,
            "list_contacts",
            "SELECT",
            self.inner.list_contacts(org, query)
        )
    }
}

#[async_trait]
impl ManagementKeys for Observed<dyn ManagementKeys> {
    async fn create_key(
        &self,
        scope: KeyScope,
        label: &KeyLabel,
        digest: &TokenDigest,
    ) -> Result<ApiKeyInfo, AdminError> {
        observe_admin!(
            self,
            "create_key",
            "INSERT",
            self.inner.create_key(scope, label, digest)
        )
    }

    async fn find_key(&self, digest: &TokenDigest) -> Result<Option<ApiKeyInfo>, RepositoryError> {
        let call = self.inner.find_key(digest);
        self.observe("find_key", "SELECT", call, |r| {
            found(r, repository_error_type)
        })
        .await
    }

    async fn get_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyInfo>, AdminError> {
        let call = self.inner.get_key(id);
        self.observe("get_key", "SELECT", call, admin_found).await
    }

    async fn list_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKeyInfo>, AdminError> {
        observe_admin!(self, "list_keys", "SELECT", self.inner.list_keys(org))
    }

    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKeyInfo, AdminError> {
        observe_admin!(self, "revoke_key", "UPDATE", self.inner.revoke_key(id))
    }
}

#[async_trait]
impl AuditLog for Observed<dyn AuditLog> {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, RepositoryError> {
        let call = self.inner.append_audit(entry);
        self.observe("append_audit", "INSERT", call, |r| match r {
            Ok(_) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(repository_error_type(e))),
        })
        .await
    }

    async fn list_audit(
        &self,
        org: Option<OrgId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, RepositoryError> {
        let call = self.inner.list_audit(org, before, limit);
        self.observe("list_audit", "SELECT", call, |r| match r {
            Ok(_) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(repository_error_type(e))),
        })
        .await
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
        before: Option<CallCursor>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        let call = self.inner.list_calls(org, since, before, limit);
        self.observe("list_calls", "SELECT", call, admin_result)
            .await
    }

    async fn get_call(&self, org: OrgId, call: CallId) -> Result<Option<CallRecord>, AdminError> {
        let lookup = self.inner.get_call(org, call);
        self.observe("get_call", "SELECT", lookup, admin_found)
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

#[async_trait]
impl IdempotencyCache for Observed<dyn IdempotencyCache> {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        ttl: Duration,
    ) -> Result<Claim, CacheError> {
        let call = self.inner.claim(scope, key, fingerprint, ttl);
        self.observe("claim_idempotency_key", "SET", call, |r| match r {
            Ok(Claim::Reserved) => (CallResult::Answered("reserved"), None),
            Ok(Claim::InProgress) => (CallResult::Answered("in_progress"), None),
            Ok(Claim::Completed(_)) => (CallResult::Answered("replayed"), None),
            Ok(Claim::Mismatch) => (CallResult::Answered("mismatch"), None),
            Err(e) => (CallResult::Failed, Some(cache_error_type(e))),
        })
        .await
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let call = self.inner.complete(scope, key, fingerprint, response, ttl);
        self.observe("complete_idempotency_key", "SET", call, |r| match r {
            Ok(()) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(cache_error_type(e))),
        })
        .await
    }

    async fn release(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        let call = self.inner.release(scope, key);
        self.observe("release_idempotency_key", "DEL", call, |r| match r {
            Ok(()) => (CallResult::Answered("ok"), None),
            Err(e) => (CallResult::Failed, Some(cache_error_type(e))),
        })
        .await
    }
}
