use std::fmt;

use crate::{MemorySettings, OrgId, Region, StoredDataError, sanitize_name};

/// An organization (tenant): the company whose phone line the agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its display name, said by the agent (`org_name`).
    pub name: OrgName,
    /// The region in which national-format numbers of its callers and contacts are read.
    pub default_region: Region,
    /// What ElevenLabs' initiation route answers as `caller_name` (and `caller_first_name`)
    /// when the caller is not recognized: `""` by default, or a word such as `there` ("Hi
    /// there").
    pub unknown_caller_name: FallbackName,
    /// Its returning-caller memory rules.
    pub memory: MemorySettings,
}

impl Organization {
    /// Rebuilds an organization read back from storage, checking its name and region as they
    /// were checked when it was created.
    ///
    /// # Errors
    /// [`StoredDataError`] when the name is not a valid [`OrgName`] or the region not a known
    /// [`Region`].
    pub fn from_stored(
        id: OrgId,
        name: &str,
        default_region: &str,
        unknown_caller_name: &str,
        memory_retention_days: i64,
        memory_unknown_callers: bool,
    ) -> Result<Self, StoredDataError> {
        let bad = |field| StoredDataError::new("organization", id, field);
        Ok(Self {
            id,
            name: OrgName::parse(name).map_err(|e| bad("name").because(e))?,
            default_region: Region::parse(default_region)
                .map_err(|e| bad("default_region").because(e))?,
            unknown_caller_name: FallbackName::sanitized(unknown_caller_name),
            memory: u16::try_from(memory_retention_days)
                .ok()
                .and_then(|days| MemorySettings::new(days, memory_unknown_callers).ok())
                .ok_or_else(|| bad("memory_retention_days"))?,
        })
    }
}

/// What the agent calls a caller it does not recognize ([`Organization::unknown_caller_name`]):
/// always sanitized ([`sanitize_name`]), so it can go into the prompt as it is; empty for none.
///
/// The only constructor sanitizes, so a value stored before the sanitizer learned a rule gets it
/// when it is read back. Whoever sets one refuses what would not reach the agent as typed
/// ([`crate::is_prompt_safe`]) before building it, so nothing is changed silently.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FallbackName(String);

impl FallbackName {
    /// `raw`, sanitized (empty when nothing is left).
    pub fn sanitized(raw: &str) -> Self {
        Self(sanitize_name(raw).unwrap_or_default())
    }

    /// The name, as the agent gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// No fallback: the agent gets `""`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for FallbackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for FallbackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for FallbackName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for FallbackName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An organization's display name: 1 to 200 characters after trimming, one line.
#[derive(Clone, PartialEq, Eq)]
pub struct OrgName(String);

/// The organization name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrgNameError {
    /// Nothing left after trimming.
    #[error("organization name must not be empty")]
    Empty,
    /// Longer than 200 characters.
    #[error("organization name must be at most 200 characters")]
    TooLong,
    /// Holds a line break or another control character.
    #[error("organization name must be one line without control characters")]
    ControlCharacter,
}

impl OrgName {
    /// Longest organization name, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Checks and wraps a name given by an operator.
    ///
    /// # Errors
    /// See [`OrgNameError`].
    pub fn parse(raw: &str) -> Result<Self, OrgNameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(OrgNameError::Empty);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(OrgNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(OrgNameError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrgName").field(&self.0).finish()
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(
            OrgName::parse("  Acme Corp ").unwrap().as_str(),
            "Acme Corp"
        );
        assert_eq!(OrgName::parse("   "), Err(OrgNameError::Empty));
        assert_eq!(OrgName::parse(&"x".repeat(201)), Err(OrgNameError::TooLong));
        assert_eq!(
            OrgName::parse("Acme\nCorp"),
            Err(OrgNameError::ControlCharacter)
        );
    }

    #[test]
    fn a_stored_organization_is_checked_as_when_it_was_created() {
        let id = OrgId::from_uuid(uuid::Uuid::from_u128(1));
        let org = Organization::from_stored(id, "Acme Corp", "ca", "there", 30, true).unwrap();
        assert_eq!(org.id, id);
        assert_eq!(org.name.as_str(), "Acme Corp");
        assert_eq!(org.default_region, Region::parse("CA").unwrap());
        assert_eq!(org.unknown_caller_name, "there");
        assert_eq!(org.memory, MemorySettings::new(30, true).unwrap());

        let bad_name = Organization::from_stored(id, " ", "CA", "", 90, false).unwrap_err();
        assert_eq!(bad_name.field(), "name");
        assert_eq!(
            bad_name.to_string(),
            format!("organization {id}: bad name: organization name must not be empty")
        );
        let bad_region = Organization::from_stored(id, "Acme", "XX", "", 90, false).unwrap_err();
        assert_eq!(
            (bad_region.record(), bad_region.field()),
            ("organization", "default_region")
        );
        for days in [-1, 3651, i64::MAX] {
            let bad_retention =
                Organization::from_stored(id, "Acme", "CA", "", days, false).unwrap_err();
            assert_eq!(bad_retention.field(), "memory_retention_days");
        }
    }
}
