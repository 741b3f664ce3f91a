//! The returning-caller memory's privacy controls: retention (a bounded purge, run periodically
//! by the service) and erasure on request (`relay contacts forget`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_domain::{CallerNumber, E164, OrgId, PhoneError};
use relay_ports::{
    AdminError, CacheError, CallContextCache, Entity, Forgotten, MemoryKeeper, OrganizationAdmin,
    Purged, RepositoryError,
};

/// Rows one purge statement removes at most: short transactions, so the purge never holds the
/// tables for long.
pub const PURGE_BATCH: u32 = 1_000;

/// Batches one purge run takes at most; the rest waits for the next run.
pub const PURGE_MAX_BATCHES: u32 = 100;

/// How often the service purges expired memory by default.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

/// Deletes memory and call summaries past each organization's retention.
pub struct Retention {
    keeper: Arc<dyn MemoryKeeper>,
    batch: u32,
    max_batches: u32,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("batch", &self.batch)
            .field("max_batches", &self.max_batches)
            .finish_non_exhaustive()
    }
}

impl Retention {
    /// Purges through `keeper` in batches of [`PURGE_BATCH`], at most [`PURGE_MAX_BATCHES`] per
    /// run.
    pub fn new(keeper: Arc<dyn MemoryKeeper>) -> Self {
        Self::with_bounds(keeper, PURGE_BATCH, PURGE_MAX_BATCHES)
    }

    /// Purges in batches of `batch`, at most `max_batches` per run.
    pub fn with_bounds(keeper: Arc<dyn MemoryKeeper>, batch: u32, max_batches: u32) -> Self {
        Self {
            keeper,
            batch: batch.max(1),
            max_batches: max_batches.max(1),
        }
    }

    /// One bounded run at `now`: batches until one removes less than a full batch, another
    /// process is found purging (`ran: false`), or the run's bound is reached.
    ///
    /// # Errors
    /// The store failed; what earlier batches removed stays removed.
    pub async fn purge(&self, now: DateTime<Utc>) -> Result<Purged, RepositoryError> {
        let mut total = Purged::default();
        for _ in 0..self.max_batches {
            let batch = self.keeper.purge_expired(now, self.batch).await?;
            total += batch;
            if !batch.ran
                || (batch.memories < u64::from(self.batch)
                    && batch.summaries < u64::from(self.batch))
            {
                break;
            }
        }
        Ok(total)
    }
}

/// What [`ForgetCaller::forget`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// What the store removed.
    pub stored: Forgotten,
    /// Cached call-context entries deleted.
    pub cached_contexts: u64,
}

impl ForgetReport {
    /// Whether nothing was left to remove (a repeated request).
    pub fn is_empty(&self) -> bool {
        self.stored == Forgotten::default() && self.cached_contexts == 0
    }
}

/// Erasure could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The number is not a phone number in the organization's region.
    #[error("not a phone number: {0}")]
    Phone(PhoneError),
    /// The organization does not exist, or the store failed.
    #[error(transparent)]
    Store(#[from] AdminError),
    /// The store's part is done; the cache could not be reached, so cached call contexts may
    /// remain until they expire (24 h). Running the command again finishes it.
    #[error("the cache could not be reached; run the command again")]
    Cache(#[source] CacheError, Box<ForgetReport>),
}

/// Erasure on request: everything kept of a caller of an organization.
pub struct ForgetCaller {
    orgs: Arc<dyn OrganizationAdmin>,
    keeper: Arc<dyn MemoryKeeper>,
    cache: Arc<dyn CallContextCache>,
}

impl std::fmt::Debug for ForgetCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgetCaller").finish_non_exhaustive()
    }
}

impl ForgetCaller {
    /// Erases through these ports.
    pub fn new(
        orgs: Arc<dyn OrganizationAdmin>,
        keeper: Arc<dyn MemoryKeeper>,
        cache: Arc<dyn CallContextCache>,
    ) -> Self {
        Self {
            orgs,
            keeper,
            cache,
        }
    }

    /// Deletes the contacts of `org` with the number `phone` (any format, read in the
    /// organization's region), the number's memory, the caller's details in its call records,
    /// and its cached call contexts. Idempotent.
    ///
    /// # Errors
    /// [`ForgetError`].
    pub async fn forget(&self, org: OrgId, phone: &str) -> Result<ForgetReport, ForgetError> {
        let organization = self
            .orgs
            .find_organization(org)
            .await?
            .ok_or(AdminError::NotFound(Entity::Organization))?;
        let number: E164 =
            match CallerNumber::from_caller_id(Some(phone), &organization.default_region) {
                CallerNumber::Known(number) => number,
                CallerNumber::Unusable(reason) => return Err(ForgetError::Phone(reason)),
            };
        let stored = self.keeper.forget_caller(org, &number).await?;
        let mut report = ForgetReport {
            stored,
            cached_contexts: 0,
        };
        match self
            .cache
            .forget_caller(org, &number, &report.stored.contacts)
            .await
        {
            Ok(deleted) => {
                report.cached_contexts = deleted;
                Ok(report)
            }
            Err(error) => Err(ForgetError::Cache(error, Box::new(report))),
        }
    }
}
