use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CallId, CallSid, ContactId, ConversationId, OrgId};

/// How a call ended, as far as the post-call webhook tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// The conversation took place (`post_call_transcription`).
    Completed,
    /// The call never reached the agent (`call_initiation_failure`): a missed call.
    Missed,
}

impl CallKind {
    /// `completed` or `missed`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Missed => "missed",
        }
    }

    /// Reads a stored value back.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "completed" => Some(Self::Completed),
            "missed" => Some(Self::Missed),
            _ => None,
        }
    }
}

/// One call, recorded once per conversation from ElevenLabs' post-call webhook.
///
/// Free-text fields are kept as ElevenLabs sent them, bounded by the webhook adapter; numbers are
/// kept as sent too (`external_number` is the caller on an inbound call). They are stored, never
/// logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The record's id; a duplicate delivery answers the id of the first.
    pub id: CallId,
    /// The organization the call was for (from the webhook's credentials).
    pub org_id: OrgId,
    /// The contact, when the call was matched (by the cached context or by number).
    pub contact_id: Option<ContactId>,
    /// ElevenLabs' conversation id: one record per organization and conversation.
    pub conversation_id: ConversationId,
    /// The telephony provider's call id, when sent.
    pub call_sid: Option<CallSid>,
    /// The ElevenLabs agent.
    pub agent_id: Option<String>,
    /// Completed or missed.
    pub kind: CallKind,
    /// `inbound` or `outbound`, as sent.
    pub direction: Option<String>,
    /// The other party's number (the caller, on an inbound call), as sent.
    pub external_number: Option<String>,
    /// The agent's number, as sent.
    pub agent_number: Option<String>,
    /// ElevenLabs' conversation status (`done`, `failed`, ...), or the failure reason of a
    /// missed call.
    pub status: Option<String>,
    /// ElevenLabs' evaluation: `success`, `failure` or `unknown`.
    pub call_successful: Option<String>,
    /// ElevenLabs' summary of the conversation.
    pub summary: Option<String>,
    /// Call length in seconds.
    pub duration_secs: Option<u32>,
    /// When the call started, when sent.
    pub started_at: Option<DateTime<Utc>>,
    /// ElevenLabs' `event_timestamp`.
    pub event_at: DateTime<Utc>,
    /// When this service received the webhook.
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_storage_text() {
        for kind in [CallKind::Completed, CallKind::Missed] {
            assert_eq!(CallKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CallKind::parse("answered"), None);
    }
}
