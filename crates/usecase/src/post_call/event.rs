//! ElevenLabs' post-call webhook body, read leniently: unknown fields are ignored, a known field
//! of an unexpected type reads as absent, free text is bounded. Only the event type and the
//! conversation id are required, so a payload that grew or changed shape still lands as a record.

use chrono::{DateTime, Utc};
use relay_domain::{CallKind, CallSid, ConversationId};
use serde::Deserialize;
use serde_json::Value;

/// Longest summary kept, in characters.
pub const MAX_SUMMARY_CHARS: usize = 10_000;
/// Longest short text field kept (status, direction, numbers, ids), in characters.
const MAX_FIELD_CHARS: usize = 256;

/// What kind of event a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `post_call_transcription`: a conversation took place.
    Transcription,
    /// `call_initiation_failure`: the call never reached the agent.
    InitiationFailure,
    /// `post_call_audio`: the recording; acknowledged, not stored.
    Audio,
    /// A type this service does not know (yet); acknowledged, not stored.
    Other,
}

impl EventType {
    /// The `type` as ElevenLabs names it, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transcription => "post_call_transcription",
            Self::InitiationFailure => "call_initiation_failure",
            Self::Audio => "post_call_audio",
            Self::Other => "other",
        }
    }

    /// The record kind of an event that is stored.
    pub fn call_kind(self) -> Option<CallKind> {
        match self {
            Self::Transcription => Some(CallKind::Completed),
            Self::InitiationFailure => Some(CallKind::Missed),
            Self::Audio | Self::Other => None,
        }
    }
}

/// A post-call event, read from its body.
#[derive(Debug, Clone, PartialEq)]
pub struct PostCallEvent {
    /// The event type.
    pub event_type: EventType,
    /// `data.conversation_id`; `None` only for types that are not stored.
    pub conversation_id: Option<ConversationId>,
    /// `event_timestamp`.
    pub event_at: Option<DateTime<Utc>>,
    /// `data.agent_id`.
    pub agent_id: Option<String>,
    /// `data.status`, or `data.failure_reason` of a failed initiation.
    pub status: Option<String>,
    /// `data.metadata.phone_call.call_sid`, or Twilio's `CallSid` of a failed initiation.
    pub call_sid: Option<CallSid>,
    /// `inbound` / `outbound`.
    pub direction: Option<String>,
    /// The other party's number.
    pub external_number: Option<String>,
    /// The agent's number.
    pub agent_number: Option<String>,
    /// `data.analysis.call_successful`.
    pub call_successful: Option<String>,
    /// `data.analysis.transcript_summary`.
    pub summary: Option<String>,
    /// `data.metadata.call_duration_secs`.
    pub duration_secs: Option<u32>,
    /// `data.metadata.start_time_unix_secs`.
    pub started_at: Option<DateTime<Utc>>,
}

/// The body is not a post-call event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    event_timestamp: Option<Value>,
    #[serde(default)]
    data: Option<RawData>,
}

#[derive(Deserialize, Default)]
struct RawData {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    agent_id: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    failure_reason: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    analysis: Option<Value>,
}

fn text(value: Option<&Value>, max: usize) -> Option<String> {
    let s = match value? {
        // Postgres text cannot hold NUL: dropped rather than losing the record.
        Value::String(s) => s.trim().replace('\0', ""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    if s.is_empty() {
        return None;
    }
    Some(s.chars().take(max).collect())
}

fn seconds(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn timestamp(value: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds(value)?, 0)
}

impl PostCallEvent {
    /// Reads a body.
    ///
    /// # Errors
    /// [`InvalidEvent`] when it is not a JSON object with a `type`, or when an event that is
    /// stored has no valid `data.conversation_id`.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| InvalidEvent(format!("not a post-call event: {e}")))?;
        let event_type = match raw.event_type.as_str() {
            "post_call_transcription" => EventType::Transcription,
            "call_initiation_failure" => EventType::InitiationFailure,
            "post_call_audio" => EventType::Audio,
            _ => EventType::Other,
        };
        let data = raw.data.unwrap_or_default();
        let conversation_id = match text(data.conversation_id.as_ref(), usize::MAX) {
            Some(id) => Some(
                ConversationId::parse(id)
                    .map_err(|e| InvalidEvent(format!("data.conversation_id {e}")))?,
            ),
            None => None,
        };
        if event_type.call_kind().is_some() && conversation_id.is_none() {
            return Err(InvalidEvent("data.conversation_id is required".into()));
        }
        let metadata = data.metadata.as_ref();
        let phone_call = metadata.and_then(|m| m.get("phone_call"));
        // A failed Twilio initiation carries Twilio's own request in `metadata.body`.
        let twilio = metadata.and_then(|m| m.get("body"));
        let field = |call_key: &str, twilio_key: &str| {
            text(phone_call.and_then(|p| p.get(call_key)), MAX_FIELD_CHARS)
                .or_else(|| text(twilio.and_then(|t| t.get(twilio_key)), MAX_FIELD_CHARS))
        };
        let analysis = data.analysis.as_ref();
        Ok(Self {
            event_type,
            conversation_id,
            event_at: timestamp(raw.event_timestamp.as_ref()),
            agent_id: text(data.agent_id.as_ref(), MAX_FIELD_CHARS),
            status: text(data.status.as_ref(), MAX_FIELD_CHARS)
                .or_else(|| text(data.failure_reason.as_ref(), MAX_FIELD_CHARS)),
            call_sid: field("call_sid", "CallSid").and_then(|s| CallSid::parse(s).ok()),
            direction: field("direction", "Direction"),
            external_number: field("external_number", "From"),
            agent_number: field("agent_number", "To"),
            call_successful: text(
                analysis.and_then(|a| a.get("call_successful")),
                MAX_FIELD_CHARS,
            ),
            summary: text(
                analysis.and_then(|a| a.get("transcript_summary")),
                MAX_SUMMARY_CHARS,
            ),
            duration_secs: seconds(metadata.and_then(|m| m.get("call_duration_secs")))
                .and_then(|s| u32::try_from(s).ok()),
            started_at: timestamp(metadata.and_then(|m| m.get("start_time_unix_secs"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcription_reads_every_field_and_ignores_unknown_ones() {
        let body = br#"{
            "type": "post_call_transcription",
            "event_timestamp": 1739537297,
            "brand_new_top_level": {"x": 1},
            "data": {
                "agent_id": "agent_1",
                "conversation_id": "conv_1",
                "status": "done",
                "transcript": [{"role": "agent", "message": "Hi Alex"}],
                "metadata": {
                    "start_time_unix_secs": 1739537200,
                    "call_duration_secs": 74.6,
                    "phone_call": {
                        "direction": "inbound",
                        "external_number": "+14165550100",
                        "agent_number": "+12362320246",
                        "call_sid": "CA123",
                        "type": "twilio",
                        "new_field": true
                    }
                },
                "analysis": {"call_successful": "success", "transcript_summary": "Booked."}
            }
        }"#;
        let e = PostCallEvent::parse(body).unwrap();
        assert_eq!(e.event_type, EventType::Transcription);
        assert_eq!(e.conversation_id.unwrap().as_str(), "conv_1");
        assert_eq!(e.call_sid.unwrap().as_str(), "CA123");
        assert_eq!(e.direction.as_deref(), Some("inbound"));
        assert_eq!(e.external_number.as_deref(), Some("+14165550100"));
        assert_eq!(e.agent_number.as_deref(), Some("+12362320246"));
        assert_eq!(e.status.as_deref(), Some("done"));
        assert_eq!(e.call_successful.as_deref(), Some("success"));
        assert_eq!(e.summary.as_deref(), Some("Booked."));
        assert_eq!(e.duration_secs, Some(74));
        assert_eq!(e.started_at.unwrap().timestamp(), 1_739_537_200);
        assert_eq!(e.event_at.unwrap().timestamp(), 1_739_537_297);
    }

    #[test]
    fn a_failed_initiation_reads_twilio_fields() {
        let body = br#"{"type":"call_initiation_failure","event_timestamp":1739537297,
            "data":{"agent_id":"agent_1","conversation_id":"conv_2","failure_reason":"busy",
            "metadata":{"type":"twilio","body":{"CallSid":"CA9","From":"+14165550100","To":"+12362320246","Direction":"inbound"}}}}"#;
        let e = PostCallEvent::parse(body).unwrap();
        assert_eq!(e.event_type.call_kind(), Some(CallKind::Missed));
        assert_eq!(e.status.as_deref(), Some("busy"));
        assert_eq!(e.call_sid.unwrap().as_str(), "CA9");
        assert_eq!(e.external_number.as_deref(), Some("+14165550100"));
    }

    #[test]
    fn a_changed_field_type_reads_as_absent_and_text_is_bounded() {
        let long = "s".repeat(MAX_SUMMARY_CHARS + 50);
        let body = format!(
            r#"{{"type":"post_call_transcription","data":{{"conversation_id":"conv_3",
            "status":{{"now":"an object"}},"metadata":{{"call_duration_secs":"12"}},
            "analysis":{{"transcript_summary":"{long}"}}}}}}"#
        );
        let e = PostCallEvent::parse(body.as_bytes()).unwrap();
        assert_eq!(e.status, None);
        assert_eq!(e.duration_secs, Some(12));
        assert_eq!(e.summary.unwrap().chars().count(), MAX_SUMMARY_CHARS);
        assert_eq!(e.event_at, None);
    }

    #[test]
    fn a_stored_event_needs_a_conversation_id_and_other_types_do_not() {
        for body in [
            &br#"{"type":"post_call_transcription","data":{}}"#[..],
            br#"{"type":"call_initiation_failure","data":{"conversation_id":"a b"}}"#,
            br#"{"data":{"conversation_id":"conv_1"}}"#,
            br#"[1,2]"#,
            b"not json",
        ] {
            assert!(
                PostCallEvent::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let audio =
            PostCallEvent::parse(br#"{"type":"post_call_audio","data":{"full_audio":"AAAA"}}"#)
                .unwrap();
        assert_eq!(audio.event_type, EventType::Audio);
        let future = PostCallEvent::parse(br#"{"type":"post_call_something_new"}"#).unwrap();
        assert_eq!(future.event_type, EventType::Other);
    }
}
