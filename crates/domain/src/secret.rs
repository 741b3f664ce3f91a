//! Tool secrets: the Bearer tokens ElevenLabs sends so we know which organization is calling.
//!
//! A token is 32 random bytes, shown to the operator once. Only its SHA-256 digest is stored, and
//! an organization is found by that digest, so a database leak reveals no usable token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::{OrgId, SecretId};

/// A tool secret in clear, as sent in `Authorization: Bearer ...` or shown once by the CLI.
/// It is never printed: `Debug` is redacted by `secrecy`.
#[derive(Debug, Clone)]
pub struct ToolToken(SecretString);

impl ToolToken {
    /// Number of random bytes in a new token.
    pub const RANDOM_BYTES: usize = 32;

    /// Makes a token from fresh random bytes (the caller owns the random source).
    pub fn from_random_bytes(bytes: &[u8; Self::RANDOM_BYTES]) -> Self {
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a token received from a client. Empty tokens are refused (`None`).
    pub fn from_presented(token: SecretString) -> Option<Self> {
        (!token.expose_secret().is_empty()).then_some(Self(token))
    }

    /// The digest under which this token is stored and looked up.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.expose_secret().as_bytes()).into())
    }

    /// The token in clear, for the one place that shows it to the operator.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// SHA-256 of a tool secret: what storage holds and looks organizations up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Wraps a digest read from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell digests apart in a debugger; it reveals nothing usable.
        write!(
            f,
            "TokenDigest({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// What the operator may see of a tool secret: never the token, only its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The secret's id, used to revoke it.
    pub id: SecretId,
    /// The organization it authenticates.
    pub org_id: OrgId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked secret authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_url_safe_and_digest_is_stable() {
        let token = ToolToken::from_random_bytes(&[7u8; 32]);
        assert_eq!(token.expose().len(), 43);
        assert!(
            token
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let presented =
            ToolToken::from_presented(SecretString::from(token.expose().to_owned())).unwrap();
        assert_eq!(presented.digest(), token.digest());
        assert_ne!(
            ToolToken::from_random_bytes(&[8u8; 32]).digest(),
            token.digest()
        );
    }

    #[test]
    fn empty_token_is_refused() {
        assert!(ToolToken::from_presented(SecretString::from(String::new())).is_none());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ToolToken::from_random_bytes(&[7u8; 32]);
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.expose()), "{debug}");
    }
}
