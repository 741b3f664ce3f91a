//! The management API's vocabulary: who may change what (keys and their scope), contacts as the
//! system owning them sees them (with their source's id and a version), and the audit trail.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::{ApiKeyId, Contact, E164, OrgId};

/// What a management key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// Every organization, and creating and deleting organizations.
    Operator,
    /// One organization's contacts, secrets, keys and calls.
    Organization(OrgId),
}

impl KeyScope {
    /// The organization of an organization key; `None` for an operator key.
    pub const fn org(self) -> Option<OrgId> {
        match self {
            Self::Operator => None,
            Self::Organization(org) => Some(org),
        }
    }

    /// May a holder of this scope read or change `org`'s data?
    pub fn reaches(self, org: OrgId) -> bool {
        match self {
            Self::Operator => true,
            Self::Organization(own) => own == org,
        }
    }
}

/// Longest key label, in characters.
pub const MAX_KEY_LABEL_CHARS: usize = 100;

/// What an operator calls a key ("crm-sync", "alice laptop"): 1 to [`MAX_KEY_LABEL_CHARS`]
/// characters, no control characters, no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabel(String);

impl KeyLabel {
    /// Checks a label.
    ///
    /// # Errors
    /// [`LabelError`] naming the rule broken.
    pub fn parse(raw: &str) -> Result<Self, LabelError> {
        check_text(raw, MAX_KEY_LABEL_CHARS).map(|()| Self(raw.to_owned()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A label or external id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Nothing at all.
    #[error("it is empty")]
    Empty,
    /// Longer than allowed.
    #[error("it is longer than {0} characters")]
    TooLong(usize),
    /// A control character, U+FFFD (bytes that were not UTF-8), or whitespace at either end.
    #[error(
        "it holds a control character or U+FFFD (bytes that were not UTF-8), or starts or ends \
         with whitespace"
    )]
    Unprintable,
}

fn check_text(raw: &str, max: usize) -> Result<(), LabelError> {
    if raw.is_empty() {
        return Err(LabelError::Empty);
    }
    if raw.chars().count() > max {
        return Err(LabelError::TooLong(max));
    }
    // U+FFFD is what a lossy decoding left of bytes that were not UTF-8 (`%FF` in a path):
    // two different ids would read as one.
    if raw
        .chars()
        .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER)
        || raw.starts_with(char::is_whitespace)
        || raw.ends_with(char::is_whitespace)
    {
        return Err(LabelError::Unprintable);
    }
    Ok(())
}

/// What the management API and the CLI show of a key: never the key, only its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The key's id (what the audit trail names, and what revokes it).
    pub id: ApiKeyId,
    /// What it reaches.
    pub scope: KeyScope,
    /// What the operator called it.
    pub label: KeyLabel,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Longest external id, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;

/// The id a contact has in the system that owns it (a CRM's record id): unique per
/// organization, so a sync can upsert by it and a changed number stays the same contact.
/// 1 to [`MAX_EXTERNAL_ID_CHARS`] characters, no control characters, no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);

impl ExternalId {
    /// Checks an external id.
    ///
    /// # Errors
    /// [`LabelError`] naming the rule broken.
    pub fn parse(raw: &str) -> Result<Self, LabelError> {
        check_text(raw, MAX_EXTERNAL_ID_CHARS).map(|()| Self(raw.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A contact as the management API writes it (create, replace, upsert by external id). The
/// number is already normalized in the organization's region.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactDraft {
    /// First name, if any.
    pub first_name: Option<String>,
    /// Last name, if any.
    pub last_name: Option<String>,
    /// The number exactly as the client wrote it.
    pub phone_raw: String,
    /// The number normalized.
    pub phone: E164,
    /// The id in the system that owns the contact, if it has one.
    pub external_id: Option<ExternalId>,
}

impl fmt::Debug for ContactDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactDraft")
            .field("phone", &self.phone)
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

/// A contact as the management API reads it: the contact, its source's id, the number as it
/// was written, and a version that every change increments (the `ETag`).
#[derive(Clone, PartialEq, Eq)]
pub struct ManagedContact {
    /// The contact as the webhook matches it.
    pub contact: Contact,
    /// The id in the system that owns it.
    pub external_id: Option<ExternalId>,
    /// The number as it was written.
    pub phone_raw: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// 1 when created, +1 on every change (an import that changes it included).
    pub version: i64,
}

impl fmt::Debug for ManagedContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedContact")
            .field("contact", &self.contact)
            .field("external_id", &self.external_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Which contacts a list returns: one page of an organization's contacts in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    /// Only contacts with this number.
    pub phone: Option<E164>,
    /// Only contacts whose first or last name contains this, ignoring case.
    pub name: Option<String>,
    /// Only contacts with an id greater than this (the previous page's last).
    pub after: Option<crate::ContactId>,
    /// At most this many.
    pub limit: u32,
}

/// Who made a change: a management key, or the CLI (a shell on the service's image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A management API key.
    Key(ApiKeyId),
    /// The `relay` command line.
    Cli,
}

impl Actor {
    /// `key:<id>` or `cli`, as the audit trail stores it.
    pub fn as_stored(&self) -> String {
        match self {
            Self::Key(id) => format!("key:{id}"),
            Self::Cli => "cli".to_owned(),
        }
    }

    /// Reads back [`Actor::as_stored`].
    pub fn from_stored(raw: &str) -> Option<Self> {
        if raw == "cli" {
            return Some(Self::Cli);
        }
        raw.strip_prefix("key:")?.parse().ok().map(Self::Key)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_stored())
    }
}

/// One change, as the audit trail records it: who, what, on which object, when. Never the data
/// itself (no numbers, names or secrets), only ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its place in the trail (increasing); `0` before it is stored.
    pub seq: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub actor: Actor,
    /// The organization changed, if the change was within one.
    pub org_id: Option<OrgId>,
    /// What was done: `organization.create`, `contact.update`, `key.revoke`, ...
    pub action: String,
    /// The id of what was changed (an organization, contact, secret or key id), if any.
    pub target: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_external_ids_refuse_what_would_not_read_back_as_typed() {
        assert!(ExternalId::parse("crm-00042").is_ok());
        assert!(ExternalId::parse("a b").is_ok());
        assert_eq!(ExternalId::parse(""), Err(LabelError::Empty));
        assert_eq!(ExternalId::parse(" x"), Err(LabelError::Unprintable));
        assert_eq!(ExternalId::parse("x\n"), Err(LabelError::Unprintable));
        assert_eq!(ExternalId::parse("a\u{0}b"), Err(LabelError::Unprintable));
        assert_eq!(
            ExternalId::parse("\u{FFFD}"),
            Err(LabelError::Unprintable),
            "what %FF decodes to"
        );
        assert_eq!(
            ExternalId::parse(&"x".repeat(201)),
            Err(LabelError::TooLong(200))
        );
        assert_eq!(
            KeyLabel::parse(&"x".repeat(101)),
            Err(LabelError::TooLong(100))
        );
    }

    #[test]
    fn an_org_scope_reaches_its_org_only_and_the_operator_every_org() {
        let (a, b) = (
            OrgId::from_uuid(uuid::Uuid::from_u128(1)),
            OrgId::from_uuid(uuid::Uuid::from_u128(2)),
        );
        assert!(KeyScope::Organization(a).reaches(a));
        assert!(!KeyScope::Organization(a).reaches(b));
        assert!(KeyScope::Operator.reaches(b));
    }

    #[test]
    fn actors_read_back_as_stored() {
        let key = Actor::Key(ApiKeyId::from_uuid(uuid::Uuid::from_u128(7)));
        for actor in [key, Actor::Cli] {
            assert_eq!(Actor::from_stored(&actor.as_stored()), Some(actor));
        }
        assert_eq!(Actor::from_stored("key:nope"), None);
        assert_eq!(Actor::from_stored("root"), None);
    }
}
