//! Returning-caller memory: what the agent may know about a caller's previous calls, and the
//! organization's rules for keeping it.
//!
//! The memory of a number within an organization is kept by the post-call webhook (one update per
//! recorded call) and read with the caller's contact on the next call. Its summary comes from
//! what the caller said, so it is untrusted text headed for the next call's prompt: it is
//! cleaned here, by construction ([`CallSummary`]), like every name.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::{OrgId, StoredDataError, sanitize_text};

/// Longest previous-call summary, in characters, that reaches the agent's prompt.
pub const MAX_MEMORY_SUMMARY_CHARS: usize = 400;

/// Longest retention an organization may set, in days (ten years).
pub const MAX_RETENTION_DAYS: u16 = 3650;

/// An organization's memory rules (`relay org set-memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    /// How long the memory of a caller (and the summaries of call records) is kept, in days;
    /// `0` turns memory off.
    pub retention_days: u16,
    /// Whether callers who are not contacts are remembered too.
    pub unknown_callers: bool,
}

impl Default for MemorySettings {
    /// On for contacts, off for other callers, 90 days.
    fn default() -> Self {
        Self {
            retention_days: Self::DEFAULT_RETENTION_DAYS,
            unknown_callers: false,
        }
    }
}

/// A retention longer than [`MAX_RETENTION_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("retention must be 0 (memory off) to 3650 days")]
pub struct RetentionError;

impl MemorySettings {
    /// The retention of an organization that never set one.
    pub const DEFAULT_RETENTION_DAYS: u16 = 90;

    /// Checked settings.
    ///
    /// # Errors
    /// [`RetentionError`] when `retention_days` exceeds [`MAX_RETENTION_DAYS`].
    pub fn new(retention_days: u16, unknown_callers: bool) -> Result<Self, RetentionError> {
        if retention_days > MAX_RETENTION_DAYS {
            return Err(RetentionError);
        }
        Ok(Self {
            retention_days,
            unknown_callers,
        })
    }

    /// Whether anything is remembered at all.
    pub fn is_on(&self) -> bool {
        self.retention_days > 0
    }

    /// Whether a call with this caller is remembered: memory is on, and the caller is a contact
    /// or the organization remembers other callers too.
    pub fn remembers(&self, is_contact: bool) -> bool {
        self.is_on() && (is_contact || self.unknown_callers)
    }

    /// The oldest activity still remembered at `now`; `None` when memory is off.
    pub fn window_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.is_on()
            .then(|| now - TimeDelta::days(i64::from(self.retention_days)))
    }
}

impl fmt::Display for MemorySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_on() {
            return f.write_str("off");
        }
        write!(
            f,
            "{} {}, unknown callers {}",
            self.retention_days,
            if self.retention_days == 1 {
                "day"
            } else {
                "days"
            },
            if self.unknown_callers { "on" } else { "off" }
        )
    }
}

/// ElevenLabs' evaluation of a call (`analysis.call_successful`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// `success`.
    Success,
    /// `failure`.
    Failure,
    /// `unknown`, or anything else ElevenLabs sent.
    Unknown,
}

impl CallOutcome {
    /// Reads ElevenLabs' value (or a stored one): anything but `success` and `failure` is
    /// [`CallOutcome::Unknown`].
    pub fn from_evaluation(raw: Option<&str>) -> Self {
        match raw {
            Some("success") => Self::Success,
            Some("failure") => Self::Failure,
            _ => Self::Unknown,
        }
    }

    /// `success`, `failure` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Unknown => "unknown",
        }
    }
}

/// A previous call's summary as it may reach the prompt: one line, at most
/// [`MAX_MEMORY_SUMMARY_CHARS`] characters, no template braces, no prompt syntax, no control
/// characters ([`crate::sanitize_text`]). The only constructor cleans, so a summary stored before a
/// rule existed gets it when read back. Its `Debug` shows only its length: it is what a caller
/// said.
#[derive(Clone, PartialEq, Eq)]
pub struct CallSummary(String);

impl CallSummary {
    /// `raw` cleaned for the prompt; `None` when nothing is left.
    pub fn from_untrusted(raw: &str) -> Option<Self> {
        sanitize_text(raw, MAX_MEMORY_SUMMARY_CHARS).map(Self)
    }

    /// The summary, as the agent gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CallSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallSummary({} chars)", self.0.chars().count())
    }
}

/// What is remembered of a caller's previous calls, within the organization's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerMemory {
    /// Completed calls remembered.
    pub previous_calls: u32,
    /// When the last completed call happened (ElevenLabs' event time).
    pub last_call_at: Option<DateTime<Utc>>,
    /// The last completed call's summary.
    pub last_call_summary: Option<CallSummary>,
    /// The last completed call's evaluation.
    pub last_call_outcome: CallOutcome,
    /// Calls that never reached the agent since the last completed call.
    pub missed_calls_since_last: u32,
}

/// A memory's fields as storage holds them, before [`CallerMemory::from_stored`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMemory {
    /// See [`CallerMemory::previous_calls`].
    pub completed_calls: i64,
    /// See [`CallerMemory::last_call_at`].
    pub last_call_at: Option<DateTime<Utc>>,
    /// The summary as stored (cleaned again when read).
    pub last_summary: Option<String>,
    /// See [`CallOutcome::as_str`].
    pub last_outcome: Option<String>,
    /// See [`CallerMemory::missed_calls_since_last`].
    pub missed_since_last: i64,
}

impl CallerMemory {
    /// Rebuilds a memory read back from storage. The summary is cleaned again, whatever was
    /// stored.
    ///
    /// # Errors
    /// [`StoredDataError`] when a count is negative or out of range.
    pub fn from_stored(org: OrgId, stored: StoredMemory) -> Result<Self, StoredDataError> {
        let count = |n: i64, field| {
            u32::try_from(n).map_err(|_| StoredDataError::new("caller memory of org", org, field))
        };
        Ok(Self {
            previous_calls: count(stored.completed_calls, "completed_calls")?,
            last_call_at: stored.last_call_at,
            last_call_summary: stored
                .last_summary
                .and_then(|summary| CallSummary::from_untrusted(&summary)),
            last_call_outcome: CallOutcome::from_evaluation(stored.last_outcome.as_deref()),
            missed_calls_since_last: count(stored.missed_since_last, "missed_since_last")?,
        })
    }

    /// Whether there is anything to tell the agent.
    pub fn has_something_to_say(&self) -> bool {
        self.previous_calls > 0 || self.missed_calls_since_last > 0
    }
}

/// How long ago `then` was at `now`, as a short English phrase for a prompt: `just now`,
/// `5 minutes ago`, `3 days ago`, `2 months ago`. A time in the future (clock skew) is
/// `just now`.
pub fn last_call_ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let elapsed = (now - then).to_std().unwrap_or_default();
    let mut formatter = timeago::Formatter::new();
    formatter
        .min_unit(timeago::TimeUnit::Minutes)
        .too_low("just now");
    formatter.convert(elapsed)
}

/// The memory variables the agent gets (both routes; the contract route only when
/// [`CallerMemory::has_something_to_say`]). Strings, numbers and a boolean, as ElevenLabs'
/// dynamic variables allow; a neutral set ([`MemoryVariables::neutral`]) has `false`, `0` and
/// `""`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryVariables {
    /// At least one completed call is remembered.
    pub is_returning_caller: bool,
    /// Completed calls remembered.
    pub previous_calls: u32,
    /// The last completed call's time, RFC 3339 UTC (`2026-12-01T14:03:00Z`), or `""`.
    pub last_call_at: String,
    /// The same as a phrase ("3 days ago"), or `""`.
    pub last_call_ago: String,
    /// The last completed call's summary, cleaned ([`CallSummary`]), or `""`.
    pub last_call_summary: String,
    /// `success`, `failure` or `unknown`; `""` without a previous call.
    pub last_call_outcome: String,
    /// Calls that never reached the agent since the last completed call.
    pub missed_calls_since_last: u32,
}

impl MemoryVariables {
    /// Nothing remembered.
    pub fn neutral() -> Self {
        Self {
            is_returning_caller: false,
            previous_calls: 0,
            last_call_at: String::new(),
            last_call_ago: String::new(),
            last_call_summary: String::new(),
            last_call_outcome: String::new(),
            missed_calls_since_last: 0,
        }
    }

    /// The variables of `memory`, its times told relative to `now`.
    pub fn new(memory: &CallerMemory, now: DateTime<Utc>) -> Self {
        let returning = memory.previous_calls > 0;
        Self {
            is_returning_caller: returning,
            previous_calls: memory.previous_calls,
            last_call_at: memory
                .last_call_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default(),
            last_call_ago: memory
                .last_call_at
                .map(|at| last_call_ago(at, now))
                .unwrap_or_default(),
            last_call_summary: memory
                .last_call_summary
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            last_call_outcome: if returning {
                memory.last_call_outcome.as_str().to_owned()
            } else {
                String::new()
            },
            missed_calls_since_last: memory.missed_calls_since_last,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::PROMPT_SYNTAX;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn defaults_remember_contacts_for_90_days_and_not_strangers() {
        let settings = MemorySettings::default();
        assert_eq!(settings.retention_days, 90);
        assert!(settings.remembers(true));
        assert!(!settings.remembers(false));
        assert_eq!(settings.to_string(), "90 days, unknown callers off");
        let off = MemorySettings::new(0, true).unwrap();
        assert!(!off.remembers(true) && !off.remembers(false));
        assert_eq!(off.window_start(Utc::now()), None);
        assert_eq!(off.to_string(), "off");
        assert_eq!(MemorySettings::new(3651, false), Err(RetentionError));
    }

    #[test]
    fn the_window_starts_retention_days_before_now() {
        let settings = MemorySettings::new(30, false).unwrap();
        assert_eq!(
            settings.window_start(at("2026-12-31T12:00:00Z")),
            Some(at("2026-12-01T12:00:00Z"))
        );
    }

    #[test]
    fn ago_phrases_read_like_a_person_would_say_them() {
        let now = at("2026-12-02T12:00:00Z");
        assert_eq!(last_call_ago(at("2026-12-02T11:59:30Z"), now), "just now");
        assert_eq!(
            last_call_ago(at("2026-12-02T11:55:00Z"), now),
            "5 minutes ago"
        );
        assert_eq!(
            last_call_ago(at("2026-12-02T09:00:00Z"), now),
            "3 hours ago"
        );
        assert_eq!(last_call_ago(at("2026-11-29T12:00:00Z"), now), "3 days ago");
        assert_eq!(
            last_call_ago(at("2026-11-18T12:00:00Z"), now),
            "2 weeks ago"
        );
        assert_eq!(
            last_call_ago(at("2026-12-03T12:00:00Z"), now),
            "just now",
            "a time in the future (clock skew) is not an error"
        );
    }

    #[test]
    fn variables_of_a_returning_caller() {
        let memory = CallerMemory {
            previous_calls: 2,
            last_call_at: Some(at("2026-11-29T10:15:00Z")),
            last_call_summary: CallSummary::from_untrusted("Asked about\nthe {{invoice}}."),
            last_call_outcome: CallOutcome::Success,
            missed_calls_since_last: 1,
        };
        let vars = MemoryVariables::new(&memory, at("2026-12-02T12:00:00Z"));
        assert_eq!(
            serde_json::to_value(&vars).unwrap(),
            serde_json::json!({
                "is_returning_caller": true,
                "previous_calls": 2,
                "last_call_at": "2026-11-29T10:15:00Z",
                "last_call_ago": "3 days ago",
                "last_call_summary": "Asked about the invoice.",
                "last_call_outcome": "success",
                "missed_calls_since_last": 1
            })
        );
    }

    #[test]
    fn only_missed_calls_are_not_a_returning_caller() {
        let memory = CallerMemory {
            previous_calls: 0,
            last_call_at: None,
            last_call_summary: None,
            last_call_outcome: CallOutcome::Unknown,
            missed_calls_since_last: 2,
        };
        assert!(memory.has_something_to_say());
        let vars = MemoryVariables::new(&memory, Utc::now());
        assert!(!vars.is_returning_caller);
        assert_eq!(vars.last_call_outcome, "");
        assert_eq!(vars.missed_calls_since_last, 2);
    }

    #[test]
    fn stored_counts_out_of_range_are_refused_without_quoting_data() {
        let org = OrgId::from_uuid(uuid::Uuid::nil());
        let stored = StoredMemory {
            completed_calls: -1,
            last_call_at: None,
            last_summary: Some("secret words".into()),
            last_outcome: None,
            missed_since_last: 0,
        };
        let error = CallerMemory::from_stored(org, stored).unwrap_err();
        assert_eq!(error.field(), "completed_calls");
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn summaries_do_not_show_in_debug_output() {
        let summary = CallSummary::from_untrusted("Alex wants a refund").unwrap();
        assert_eq!(format!("{summary:?}"), "CallSummary(19 chars)");
    }

    proptest! {
        #[test]
        fn an_injected_summary_is_one_bounded_line_without_template_syntax(
            raw in "\\PC{0,1000}|[a-z {}<>\\n\\r\\t\\u{2028}\\x00-\\x1f\\[\\]|`$\"\\\\]{0,1000}"
        ) {
            if let Some(summary) = CallSummary::from_untrusted(&raw) {
                let s = summary.as_str();
                prop_assert!(s.chars().count() <= MAX_MEMORY_SUMMARY_CHARS);
                let separator = '\u{2028}';
                prop_assert!(!s.chars().any(|c| c.is_control() || c == separator));
                prop_assert!(!s.contains(PROMPT_SYNTAX), "{s:?}");
                prop_assert!(!s.is_empty() && s.trim() == s);
                // Stored and read back, it is the same.
                prop_assert_eq!(CallSummary::from_untrusted(s), Some(summary.clone()));
            }
        }

        #[test]
        fn arbitrary_stored_bytes_never_reach_the_prompt_as_syntax(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000)
        ) {
            let stored = StoredMemory {
                completed_calls: 1,
                last_call_at: None,
                last_summary: Some(String::from_utf8_lossy(&bytes).into_owned()),
                last_outcome: Some("success".into()),
                missed_since_last: 0,
            };
            let memory = CallerMemory::from_stored(OrgId::from_uuid(uuid::Uuid::nil()), stored).unwrap();
            let vars = MemoryVariables::new(&memory, Utc::now());
            let json = serde_json::to_string(&vars).unwrap();
            prop_assert!(!vars.last_call_summary.contains(PROMPT_SYNTAX));
            prop_assert!(!vars.last_call_summary.contains('\n'));
            prop_assert!(!json.contains("{{"));
        }
    }
}
