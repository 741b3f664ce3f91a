use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CallId, CallSid, ContactId, ConversationId, E164, OrgId, StoredDataError};

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
    /// The other party's number in E.164 (read in the organization's region): the key of the
    /// caller's memory, and how erasure finds the record.
    pub caller: Option<E164>,
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

/// A call record's fields as storage holds them, before [`CallRecord::from_stored`] checks them:
/// ids, conversation id, call sid and kind as text, the duration as a signed integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    /// See [`CallRecord::id`].
    pub id: CallId,
    /// See [`CallRecord::org_id`].
    pub org_id: OrgId,
    /// See [`CallRecord::contact_id`].
    pub contact_id: Option<ContactId>,
    /// See [`CallRecord::conversation_id`].
    pub conversation_id: String,
    /// See [`CallRecord::call_sid`].
    pub call_sid: Option<String>,
    /// See [`CallRecord::agent_id`].
    pub agent_id: Option<String>,
    /// See [`CallRecord::kind`]: [`CallKind::as_str`].
    pub kind: String,
    /// See [`CallRecord::direction`].
    pub direction: Option<String>,
    /// See [`CallRecord::external_number`].
    pub external_number: Option<String>,
    /// See [`CallRecord::caller`].
    pub caller: Option<String>,
    /// See [`CallRecord::agent_number`].
    pub agent_number: Option<String>,
    /// See [`CallRecord::status`].
    pub status: Option<String>,
    /// See [`CallRecord::call_successful`].
    pub call_successful: Option<String>,
    /// See [`CallRecord::summary`].
    pub summary: Option<String>,
    /// See [`CallRecord::duration_secs`].
    pub duration_secs: Option<i64>,
    /// See [`CallRecord::started_at`].
    pub started_at: Option<DateTime<Utc>>,
    /// See [`CallRecord::event_at`].
    pub event_at: DateTime<Utc>,
    /// See [`CallRecord::received_at`].
    pub received_at: DateTime<Utc>,
}

impl CallRecord {
    /// Rebuilds a call record read back from storage, checking its conversation id, call sid,
    /// kind and duration as they were checked when it was recorded.
    ///
    /// # Errors
    /// [`StoredDataError`] naming the first field that is not valid.
    pub fn from_stored(stored: StoredCall) -> Result<Self, StoredDataError> {
        let StoredCall {
            id,
            org_id,
            contact_id,
            conversation_id,
            call_sid,
            agent_id,
            kind,
            direction,
            external_number,
            caller,
            agent_number,
            status,
            call_successful,
            summary,
            duration_secs,
            started_at,
            event_at,
            received_at,
        } = stored;
        let bad = |field| StoredDataError::new("call", id, field);
        Ok(Self {
            id,
            org_id,
            contact_id,
            conversation_id: ConversationId::parse(conversation_id)
                .map_err(|e| bad("conversation_id").because(e))?,
            call_sid: call_sid
                .map(CallSid::parse)
                .transpose()
                .map_err(|e| bad("call_sid").because(e))?,
            agent_id,
            kind: CallKind::parse(&kind).ok_or_else(|| bad("kind"))?,
            direction,
            external_number,
            caller: caller
                .as_deref()
                .map(E164::parse_e164)
                .transpose()
                .map_err(|e| bad("caller_e164").because(e))?,
            agent_number,
            status,
            call_successful,
            summary,
            duration_secs: duration_secs
                .map(u32::try_from)
                .transpose()
                .map_err(|_| bad("duration_secs"))?,
            started_at,
            event_at,
            received_at,
        })
    }
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

    fn stored() -> StoredCall {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        StoredCall {
            id: CallId::from_uuid(uuid::Uuid::from_u128(3)),
            org_id: OrgId::from_uuid(uuid::Uuid::from_u128(1)),
            contact_id: Some(ContactId::from_uuid(uuid::Uuid::from_u128(2))),
            conversation_id: "conv_1".into(),
            call_sid: Some("CA123".into()),
            agent_id: Some("agent_1".into()),
            kind: "missed".into(),
            direction: Some("inbound".into()),
            external_number: Some("+14165550100".into()),
            caller: Some("+14165550100".into()),
            agent_number: Some("+12362320246".into()),
            status: Some("busy".into()),
            call_successful: None,
            summary: None,
            duration_secs: Some(42),
            started_at: None,
            event_at: at,
            received_at: at,
        }
    }

    #[test]
    fn a_stored_call_is_rebuilt_field_for_field() {
        let s = stored();
        let call = CallRecord::from_stored(s.clone()).unwrap();
        assert_eq!(
            call,
            CallRecord {
                id: s.id,
                org_id: s.org_id,
                contact_id: s.contact_id,
                conversation_id: ConversationId::parse("conv_1").unwrap(),
                call_sid: Some(CallSid::parse("CA123").unwrap()),
                agent_id: s.agent_id,
                kind: CallKind::Missed,
                direction: s.direction,
                external_number: s.external_number,
                caller: Some(E164::parse_e164("+14165550100").unwrap()),
                agent_number: s.agent_number,
                status: s.status,
                call_successful: None,
                summary: None,
                duration_secs: Some(42),
                started_at: None,
                event_at: s.event_at,
                received_at: s.received_at,
            }
        );
    }

    #[test]
    fn a_stored_call_with_a_bad_field_names_it() {
        let id = stored().id;
        for (field, broken) in [
            (
                "conversation_id",
                StoredCall {
                    conversation_id: "has space".into(),
                    ..stored()
                },
            ),
            (
                "call_sid",
                StoredCall {
                    call_sid: Some(String::new()),
                    ..stored()
                },
            ),
            (
                "caller_e164",
                StoredCall {
                    caller: Some("4165550100".into()),
                    ..stored()
                },
            ),
            (
                "kind",
                StoredCall {
                    kind: "answered".into(),
                    ..stored()
                },
            ),
            (
                "duration_secs",
                StoredCall {
                    duration_secs: Some(-1),
                    ..stored()
                },
            ),
            (
                "duration_secs",
                StoredCall {
                    duration_secs: Some(i64::from(u32::MAX) + 1),
                    ..stored()
                },
            ),
        ] {
            let e = CallRecord::from_stored(broken).unwrap_err();
            assert_eq!((e.record(), e.field()), ("call", field));
            assert!(
                e.to_string()
                    .starts_with(&format!("call {id}: bad {field}")),
                "{e}"
            );
        }
    }
}
