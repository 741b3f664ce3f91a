//! ElevenLabs' post-call webhook body, read leniently: unknown fields are ignored, a known field
//! of an unexpected type reads as absent, free text is bounded. Only the event type and the
//! conversation id are required, so a payload that grew or changed shape still lands as a record.
//! The body and its `data` are JSON objects, and the conversation id a string used as sent.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use relay_domain::{CallKind, CallSid, ConversationId};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
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
    /// `data.user_id`: what the initiation route answered as `user_id` (a contact's id).
    pub user_id: Option<String>,
    /// `data.conversation_initiation_client_data.dynamic_variables.caller_number`: the number
    /// the initiation route answered, echoed back.
    pub echoed_caller_number: Option<String>,
}

/// The body is not a post-call event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// `T` read from a JSON object only. serde's derive also reads a struct from an array (its
/// fields in order), so `["post_call_audio"]` was an event and `"data": ["conv_1"]` a
/// conversation id; the contract (docs/openapi.yaml) says object, and so does this.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    event_timestamp: Option<Value>,
    #[serde(default)]
    data: Option<Object<RawData>>,
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
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    conversation_initiation_client_data: Option<Value>,
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
    /// [`InvalidEvent`] when it is not a JSON object with a string `type` and a `data` that is
    /// an object or null, when `data.conversation_id` is a string that is not a valid
    /// conversation id, or when an event that is stored has none.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        let Object(raw) = serde_json::from_slice::<Object<Raw>>(body)
            .map_err(|e| InvalidEvent(format!("not a post-call event: {e}")))?;
        let event_type = match raw.event_type.as_str() {
            "post_call_transcription" => EventType::Transcription,
            "call_initiation_failure" => EventType::InitiationFailure,
            "post_call_audio" => EventType::Audio,
            _ => EventType::Other,
        };
        let data = raw.data.map(|Object(data)| data).unwrap_or_default();
        // The record's key, and the key the call context was cached under by the other routes,
        // which take ids exactly as sent: not trimmed, not stripped of NULs (two different ids
        // must not become one record), not made from a number. Like any known field, one of
        // another type reads as absent.
        let conversation_id = match data.conversation_id {
            Some(Value::String(id)) => Some(
                ConversationId::parse(id)
                    .map_err(|e| InvalidEvent(format!("data.conversation_id {e}")))?,
            ),
            _ => None,
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
            user_id: text(data.user_id.as_ref(), MAX_FIELD_CHARS),
            echoed_caller_number: text(
                data.conversation_initiation_client_data
                    .as_ref()
                    .and_then(|c| c.get("dynamic_variables"))
                    .and_then(|v| v.get("caller_number")),
                MAX_FIELD_CHARS,
            ),
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

    #[test]
    fn the_body_and_its_data_are_objects_not_arrays() {
        for body in [
            &br#"["post_call_audio"]"#[..],
            br#"["post_call_transcription", 1, ["conv_1"]]"#,
            br#"{"type":"post_call_something_new","data":[]}"#,
            br#"{"type":"post_call_transcription","data":["conv_1"]}"#,
            br#"{"type":"post_call_audio","data":"conv_1"}"#,
            br#"{"type":null}"#,
            br#"{"type":1}"#,
        ] {
            assert!(
                PostCallEvent::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let no_data = PostCallEvent::parse(br#"{"type":"post_call_audio","data":null}"#).unwrap();
        assert_eq!(no_data.conversation_id, None);
    }

    #[test]
    fn the_conversation_id_is_a_string_used_exactly_as_sent() {
        for id in [r#"" conv_1""#, r#""conv_1 ""#, r#""conv\u0000_1""#, r#""""#] {
            for kind in ["post_call_transcription", "post_call_audio", "new_type"] {
                let body = format!(r#"{{"type":"{kind}","data":{{"conversation_id":{id}}}}}"#);
                assert!(PostCallEvent::parse(body.as_bytes()).is_err(), "{body}");
            }
        }
        // Another type reads as absent, like any known field: required for a stored type only.
        for id in ["12345", "true", "{}", "[]", "null"] {
            let stored = format!(
                r#"{{"type":"post_call_transcription","data":{{"conversation_id":{id}}}}}"#
            );
            assert!(PostCallEvent::parse(stored.as_bytes()).is_err(), "{stored}");
            let other =
                format!(r#"{{"type":"post_call_audio","data":{{"conversation_id":{id}}}}}"#);
            let event = PostCallEvent::parse(other.as_bytes()).unwrap();
            assert_eq!(event.conversation_id, None, "{other}");
        }
    }

    /// What docs/openapi.yaml says of the JSON of a post-call body.
    #[test]
    fn numbers_and_nesting_are_limited_only_in_the_fields_read() {
        let deep = |at: &str| {
            format!(
                r#"{{"type":"x",{at}{}1{}}}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )
        };
        for read in [
            r#"{"type":"x","event_timestamp":1e400}"#.to_owned(),
            r#"{"type":"x","data":{"status":1e400}}"#.to_owned(),
            r#"{"type":"x","type":"y"}"#.to_owned(),
            deep(r#""data":{"metadata":"#),
        ] {
            assert!(PostCallEvent::parse(read.as_bytes()).is_err(), "{read}");
        }
        for ignored in [
            r#"{"type":"x","other":1e400,"other":2}"#.to_owned(),
            r#"{"type":"x","data":{"other":1e400}}"#.to_owned(),
            deep(r#""data":{"other":"#),
        ] {
            assert!(
                PostCallEvent::parse(ignored.as_bytes()).is_ok(),
                "{ignored}"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::super::*;

        const TYPES: [&str; 5] = [
            "post_call_transcription",
            "call_initiation_failure",
            "post_call_audio",
            "post_call_something_new",
            "",
        ];

        /// The keys the reader looks for, at any level, so its branches are taken.
        const KEYS: [&str; 23] = [
            "type",
            "event_timestamp",
            "data",
            "conversation_id",
            "agent_id",
            "status",
            "failure_reason",
            "metadata",
            "analysis",
            "phone_call",
            "body",
            "call_sid",
            "CallSid",
            "direction",
            "Direction",
            "external_number",
            "From",
            "agent_number",
            "To",
            "call_successful",
            "transcript_summary",
            "call_duration_secs",
            "start_time_unix_secs",
        ];

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ \\t\\x00a-zA-Z0-9_+-]{0,12}",
                // Either side of each bound, with NULs and spaces that do not count.
                (
                    prop::sample::select(&[255usize, 256, 257, 10_000, 10_001][..]),
                    "[a\\x00 \u{e9}]{1,2}",
                )
                    .prop_map(|(n, s)| s.repeat(n)),
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => prop::sample::select(&KEYS[..]).prop_map(str::to_owned),
                1 => any::<String>(),
            ]
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                text().prop_map(Value::String),
                prop::sample::select(&TYPES[..]).prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..8)
                        .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
                ]
            })
        }

        /// An object with `keys`, each mostly present, mostly text, sometimes anything.
        fn fields(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
            let value = prop_oneof![4 => text().prop_map(Value::String), 1 => json()];
            prop::collection::vec(prop::option::weighted(0.8, value), keys.len()).prop_map(
                move |values| {
                    let pairs = keys.iter().zip(values);
                    Value::Object(
                        pairs
                            .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                            .collect(),
                    )
                },
            )
        }

        /// An object shaped like an event: a likely `type`, and every field the reader looks
        /// for, where it looks for it, mostly text; plus anything at all beside them.
        fn event() -> impl Strategy<Value = Value> {
            let conversation_id = prop_oneof![
                2 => "[a-z0-9_]{1,20}".prop_map(Value::from),
                1 => text().prop_map(Value::from),
                1 => json(),
            ];
            (
                prop_oneof![
                    3 => prop::sample::select(&TYPES[..]).prop_map(Value::from),
                    1 => json(),
                ],
                prop::option::weighted(0.9, conversation_id),
                fields(&["agent_id", "status", "failure_reason"]),
                fields(&["call_sid", "direction", "external_number", "agent_number"]),
                fields(&["CallSid", "Direction", "From", "To"]),
                fields(&["call_successful", "transcript_summary"]),
                fields(&["call_duration_secs", "start_time_unix_secs"]),
                prop::collection::vec((key(), json()), 0..4),
            )
                .prop_map(
                    |(kind, id, data, phone_call, twilio, analysis, times, extra)| {
                        let Value::Object(mut data) = data else {
                            unreachable!()
                        };
                        let Value::Object(mut metadata) = times else {
                            unreachable!()
                        };
                        metadata.insert("phone_call".into(), phone_call);
                        metadata.insert("body".into(), twilio);
                        data.insert("metadata".into(), Value::Object(metadata));
                        data.insert("analysis".into(), analysis);
                        if let Some(id) = id {
                            data.insert("conversation_id".into(), id);
                        }
                        let mut event: Map<String, Value> = extra.into_iter().collect();
                        event.insert("type".into(), kind);
                        event.insert("data".into(), Value::Object(data));
                        Value::Object(event)
                    },
                )
        }

        fn within(field: Option<&String>, max: usize) -> Result<(), TestCaseError> {
            if let Some(value) = field {
                prop_assert!(!value.is_empty());
                prop_assert!(
                    value.chars().count() <= max,
                    "{} chars",
                    value.chars().count()
                );
                prop_assert!(!value.contains('\0'), "a NUL cannot be stored: {value:?}");
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = PostCallEvent::parse(&body);
            }

            #[test]
            fn arbitrary_json_never_panics_and_only_objects_are_events(value in json()) {
                let body = serde_json::to_vec(&value).unwrap();
                let parsed = PostCallEvent::parse(&body);
                if !value.is_object() {
                    prop_assert!(parsed.is_err(), "{value}");
                }
            }

            #[test]
            fn an_accepted_event_keeps_its_text_within_bounds(value in event()) {
                let body = serde_json::to_vec(&value).unwrap();
                let Ok(event) = PostCallEvent::parse(&body) else {
                    return Ok(());
                };
                let kind = value["type"].as_str();
                prop_assert!(kind.is_some(), "the type is a string");
                prop_assert_eq!(event.event_type.as_str() == "other", !TYPES[..3].contains(&kind.unwrap()));
                if event.event_type.call_kind().is_some() {
                    let id = event.conversation_id.as_ref();
                    prop_assert!(id.is_some(), "a stored event has a conversation id");
                    prop_assert_eq!(Some(id.unwrap().as_str()), value["data"]["conversation_id"].as_str());
                }
                for field in [
                    &event.agent_id,
                    &event.status,
                    &event.direction,
                    &event.external_number,
                    &event.agent_number,
                    &event.call_successful,
                ] {
                    within(field.as_ref(), MAX_FIELD_CHARS)?;
                }
                within(event.summary.as_ref(), MAX_SUMMARY_CHARS)?;
            }
        }
    }
}
