use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CallKey, CallSid, ContactId, ConversationId, E164, OrgId};

/// What we knew when a call connected, kept for the post-call webhook that arrives later.
///
/// It is stored for every authenticated, valid personalization request, matched or not, so the
/// post-call webhook can tell which organization (and contact, if any) a conversation belongs to.
/// It is found by each of its keys ([`CallContext::keys`]): the conversation id, the call sid, or
/// both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    /// The conversation the context belongs to, when the webhook sent one.
    pub conversation_id: Option<ConversationId>,
    /// The telephony provider's call id, when the webhook sent one (ElevenLabs' own initiation
    /// webhook sends this and no conversation id). Absent from entries written before it existed.
    #[serde(default)]
    pub call_sid: Option<CallSid>,
    /// The organization the call was for.
    pub org_id: OrgId,
    /// The matched contact, if the caller was recognized.
    pub contact_id: Option<ContactId>,
    /// The caller's number, if it was a valid number.
    pub caller_number: Option<E164>,
    /// The number that was called, as sent.
    pub called_number: Option<String>,
    /// The ElevenLabs agent that took the call, as sent.
    pub agent_id: Option<String>,
    /// When the personalization request arrived.
    pub received_at: DateTime<Utc>,
}

impl CallContext {
    /// How long a context is kept: 24 hours, enough for any post-call webhook.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

    /// Every key the context can be found by: the conversation id first, then the call sid.
    /// Empty when the webhook sent neither (such a context is not stored).
    pub fn keys(&self) -> Vec<CallKey> {
        let mut keys = Vec::with_capacity(2);
        if let Some(id) = &self.conversation_id {
            keys.push(CallKey::Conversation(id.clone()));
        }
        if let Some(sid) = &self.call_sid {
            keys.push(CallKey::CallSid(sid.clone()));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Region;

    #[test]
    fn serializes_to_the_documented_shape() {
        let org = "0190a1b2-0000-7000-8000-000000000001".parse().unwrap();
        let ctx = CallContext {
            conversation_id: Some(ConversationId::parse("conv_1").unwrap()),
            call_sid: Some(CallSid::parse("CA1").unwrap()),
            org_id: org,
            contact_id: None,
            caller_number: Some(
                E164::parse("+14165550100", &Region::parse("CA").unwrap()).unwrap(),
            ),
            called_number: Some("+12362320246".into()),
            agent_id: None,
            received_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "conversation_id": "conv_1",
                "call_sid": "CA1",
                "org_id": "0190a1b2-0000-7000-8000-000000000001",
                "contact_id": null,
                "caller_number": "+14165550100",
                "called_number": "+12362320246",
                "agent_id": null,
                "received_at": "2023-11-14T22:13:20Z"
            })
        );
        let back: CallContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, ctx);
        assert_eq!(
            ctx.keys(),
            vec![
                CallKey::Conversation(ConversationId::parse("conv_1").unwrap()),
                CallKey::CallSid(CallSid::parse("CA1").unwrap()),
            ]
        );
    }

    #[test]
    fn entries_written_before_call_sids_still_read() {
        let old = serde_json::json!({
            "conversation_id": "conv_1",
            "org_id": "0190a1b2-0000-7000-8000-000000000001",
            "contact_id": null,
            "caller_number": null,
            "called_number": null,
            "agent_id": null,
            "received_at": "2023-11-14T22:13:20Z"
        });
        let ctx: CallContext = serde_json::from_value(old).unwrap();
        assert_eq!(ctx.call_sid, None);
        assert_eq!(ctx.keys().len(), 1);
    }
}
