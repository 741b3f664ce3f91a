use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest conversation id we accept, in characters.
pub const MAX_CONVERSATION_ID_CHARS: usize = 256;

/// The id ElevenLabs gives a conversation. It becomes part of a cache key, so it is 1 to 256
/// characters with no whitespace and no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

/// Why a conversation id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConversationIdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_CONVERSATION_ID_CHARS`].
    #[error("must be at most 256 characters")]
    TooLong,
    /// The id holds whitespace or a control character.
    #[error("must not contain whitespace or control characters")]
    ForbiddenCharacter,
}

/// The id the telephony provider gives a phone call (Twilio's `CallSid`, a SIP call id), sent by
/// ElevenLabs' own initiation webhook instead of a conversation id. Same rules as
/// [`ConversationId`]: 1 to 256 characters, no whitespace, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallSid(String);

fn check_call_id(raw: String) -> Result<String, ConversationIdError> {
    if raw.is_empty() {
        return Err(ConversationIdError::Empty);
    }
    if raw.chars().count() > MAX_CONVERSATION_ID_CHARS {
        return Err(ConversationIdError::TooLong);
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConversationIdError::ForbiddenCharacter);
    }
    Ok(raw)
}

macro_rules! call_id {
    ($name:ident) => {
        impl $name {
            /// Checks and wraps an id.
            ///
            /// # Errors
            /// See [`ConversationIdError`].
            pub fn parse(raw: impl Into<String>) -> Result<Self, ConversationIdError> {
                check_call_id(raw.into()).map(Self)
            }

            /// The id as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ConversationIdError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

call_id!(ConversationId);
call_id!(CallSid);

/// One way to find a cached call context: the conversation id (our contract's webhook, the
/// post-call webhook) or the provider's call id (ElevenLabs' Twilio initiation webhook).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallKey {
    /// By ElevenLabs conversation id.
    Conversation(ConversationId),
    /// By the telephony provider's call id.
    CallSid(CallSid),
}

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conversation(id) => write!(f, "conversation {id}"),
            Self::CallSid(sid) => write!(f, "call_sid {sid}"),
        }
    }
}

impl From<ConversationId> for CallKey {
    fn from(value: ConversationId) -> Self {
        Self::Conversation(value)
    }
}

impl From<CallSid> for CallKey {
    fn from(value: CallSid) -> Self {
        Self::CallSid(value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_elevenlabs_ids() {
        let id = ConversationId::parse("conv_8f3d1b9c2e7a4f0b9a4d2c1e6e2f8c01").unwrap();
        assert_eq!(id.as_str(), "conv_8f3d1b9c2e7a4f0b9a4d2c1e6e2f8c01");
    }

    #[test]
    fn rejects_empty_long_and_spaced_ids() {
        assert_eq!(ConversationId::parse(""), Err(ConversationIdError::Empty));
        assert_eq!(
            ConversationId::parse("a".repeat(257)),
            Err(ConversationIdError::TooLong)
        );
        assert!(
            ConversationId::parse("é".repeat(256)).is_ok(),
            "the limit counts characters"
        );
        for bad in ["a b", "a\nb", "a\u{0}b", "\u{a0}x", "x\t"] {
            assert_eq!(
                ConversationId::parse(bad),
                Err(ConversationIdError::ForbiddenCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn call_sids_follow_the_same_rules() {
        assert_eq!(
            CallSid::parse("CA1234567890abcdef1234567890abcdef")
                .unwrap()
                .as_str(),
            "CA1234567890abcdef1234567890abcdef"
        );
        assert_eq!(CallSid::parse(""), Err(ConversationIdError::Empty));
        assert_eq!(
            CallSid::parse("CA 1"),
            Err(ConversationIdError::ForbiddenCharacter)
        );
        let json: Result<CallSid, _> = serde_json::from_str("\"a\\nb\"");
        assert!(json.is_err(), "deserializing checks the rules too");
    }

    proptest! {
        #[test]
        fn accepted_ids_are_safe_key_parts(raw in "\\PC{0,300}") {
            if let Ok(id) = ConversationId::parse(raw) {
                prop_assert!(!id.as_str().is_empty());
                prop_assert!(id.as_str().chars().count() <= MAX_CONVERSATION_ID_CHARS);
                prop_assert!(!id.as_str().chars().any(|c| c.is_whitespace() || c.is_control()));
            }
        }
    }
}
