//! "Which calls did this organization get": the records the post-call webhook stored, for
//! `relay calls list` (and any other reader), through the call-log port.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use relay_domain::{CallRecord, OrgId};
use relay_ports::{AdminError, CallLog};

/// Reads an organization's call records.
pub struct CallHistory {
    calls: Arc<dyn CallLog>,
}

impl std::fmt::Debug for CallHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHistory").finish_non_exhaustive()
    }
}

impl CallHistory {
    /// Reads through `calls`.
    pub fn new(calls: Arc<dyn CallLog>) -> Self {
        Self { calls }
    }

    /// The records of `org` received at or after `since` (all when `None`), newest first, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when the organization does not exist; the store failed.
    pub async fn recent(
        &self,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, AdminError> {
        self.calls.list_calls(org, since, None, limit).await
    }
}
