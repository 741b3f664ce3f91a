use std::fmt;

use chrono::{DateTime, Utc};

use crate::{ContactId, E164, OrgId};

/// A person an organization knows, found by phone number when they call.
///
/// `Debug` leaves the names and number out: a contact never appears whole in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its id.
    pub id: ContactId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// First name as stored (not yet sanitized for the prompt).
    pub first_name: Option<String>,
    /// Last name as stored (not yet sanitized for the prompt).
    pub last_name: Option<String>,
    /// The number, normalized.
    pub phone: E164,
    /// When the contact was last changed; among contacts sharing a number the latest wins.
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("phone", &self.phone)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A contact to import: the number is already normalized in the organization's region.
#[derive(Clone, PartialEq, Eq)]
pub struct NewContact {
    /// First name, if any.
    pub first_name: Option<String>,
    /// Last name, if any.
    pub last_name: Option<String>,
    /// The number exactly as the source wrote it, kept for reference.
    pub phone_raw: String,
    /// The number normalized; the import key within an organization.
    pub phone: E164,
}

impl fmt::Debug for NewContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewContact")
            .field("phone", &self.phone)
            .finish_non_exhaustive()
    }
}
