//! Values read back from storage: the error every `from_stored` constructor answers when a stored
//! field breaks the rule it was checked against when it was written.
//!
//! The storage adapters (Postgres, SQLite) decode their rows in their own dialect and hand the
//! fields to [`crate::Organization::from_stored`], [`crate::Contact::from_stored`] and
//! [`crate::CallRecord::from_stored`], so what a valid stored organization, contact or call is
//! is written once, here, and both adapters turn a [`StoredDataError`] into the same port error.

use std::fmt;

/// A stored field does not hold a valid value: a row this service did not write, or one written
/// before a rule it now breaks. Retrying does not help. The message names the record, its id and
/// the field, never a name or a number it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record} {id}: bad {field}{}", Reason(.reason))]
pub struct StoredDataError {
    record: &'static str,
    id: String,
    field: &'static str,
    reason: Option<String>,
}

impl StoredDataError {
    /// `field` of the `record` with this `id` is not valid.
    pub(crate) fn new(record: &'static str, id: impl fmt::Display, field: &'static str) -> Self {
        Self {
            record,
            id: id.to_string(),
            field,
            reason: None,
        }
    }

    /// The same, with the check's own message (which must not quote a name or a number).
    pub(crate) fn because(mut self, reason: impl fmt::Display) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// The kind of record: `organization`, `contact` or `call`.
    pub fn record(&self) -> &'static str {
        self.record
    }

    /// The field that is not valid, e.g. `default_region`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

struct Reason<'a>(&'a Option<String>);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_record_id_and_field() {
        let e = StoredDataError::new("call", "c1", "kind");
        assert_eq!(e.to_string(), "call c1: bad kind");
        assert_eq!(
            e.because("not one of completed, missed").to_string(),
            "call c1: bad kind: not one of completed, missed"
        );
    }
}
