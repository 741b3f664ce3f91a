use std::fmt;

use chrono::{DateTime, Utc};

use crate::{ContactId, E164, OrgId, StoredDataError};

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

impl Contact {
    /// Rebuilds a contact read back from storage; its number must be E.164 text
    /// ([`E164::parse_e164`]), as it was normalized when it was imported.
    ///
    /// # Errors
    /// [`StoredDataError`] when the stored number is not E.164 text.
    pub fn from_stored(
        id: ContactId,
        org_id: OrgId,
        first_name: Option<String>,
        last_name: Option<String>,
        phone: &str,
        updated_at: DateTime<Utc>,
    ) -> Result<Self, StoredDataError> {
        Ok(Self {
            id,
            org_id,
            first_name,
            last_name,
            phone: E164::parse_e164(phone)
                .map_err(|e| StoredDataError::new("contact", id, "phone_e164").because(e))?,
            updated_at,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_contact_needs_an_e164_number() {
        let id = ContactId::from_uuid(uuid::Uuid::from_u128(2));
        let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let contact =
            Contact::from_stored(id, org, Some("Ada".into()), None, "+14165550100", at).unwrap();
        assert_eq!(
            (contact.id, contact.org_id, contact.updated_at),
            (id, org, at)
        );
        assert_eq!(contact.first_name.as_deref(), Some("Ada"));
        assert_eq!(contact.last_name, None);
        assert_eq!(contact.phone.as_str(), "+14165550100");

        let bad = Contact::from_stored(id, org, None, None, "4165550100", at).unwrap_err();
        assert_eq!(
            bad.to_string(),
            format!("contact {id}: bad phone_e164: not a valid phone number")
        );
    }
}
