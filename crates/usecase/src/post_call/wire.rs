//! A post-call delivery as the outbox keeps it: the raw body (the signature covers these exact
//! bytes), the credentials it came with (a Bearer token only as its digest) and when it was
//! received. JSON, the body in base64.

use chrono::{DateTime, Utc};
use relay_domain::{OrgId, TokenDigest};
use serde::{Deserialize, Serialize};

/// How a post-call delivery proves where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Credentials {
    /// `Authorization: Bearer <tool secret>`; only the digest is kept (also in the outbox).
    Bearer {
        /// SHA-256 of the token, hex.
        #[serde(with = "digest_hex")]
        digest: TokenDigest,
    },
    /// `ElevenLabs-Signature` under the webhook secret of the organization named in the URL.
    Signature {
        /// The organization the URL names (`?org=`).
        org: OrgId,
        /// The header as sent.
        header: String,
    },
}

mod digest_hex {
    use relay_domain::TokenDigest;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &TokenDigest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d.as_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenDigest, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(TokenDigest::from_bytes(bytes))
    }
}

/// One delivery of the post-call webhook, as received. This is what the outbox keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Who it claims to come from.
    pub credentials: Credentials,
    /// The raw body (the signature covers these exact bytes).
    #[serde(with = "body_base64")]
    pub body: Vec<u8>,
    /// When this service received it; the signature's age is checked against this.
    pub received_at: DateTime<Utc>,
}

mod body_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}
