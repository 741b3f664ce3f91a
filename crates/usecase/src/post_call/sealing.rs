//! The post-call webhook secret at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`)
//! under a 32-byte key from the environment, a random 24-byte nonce per secret, and the
//! organization id as associated data, so a sealed secret copied to another organization's row
//! does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use relay_domain::OrgId;
use secrecy::{ExposeSecret, SecretBox, SecretString};

const NONCE_BYTES: usize = 24;

/// The key could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("WEBHOOK_SECRET_KEY must be 32 bytes in standard base64 (openssl rand -base64 32)")]
pub struct InvalidSealingKey;

/// A sealed secret could not be opened: another key, another organization, or tampered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook secret cannot be opened with this key")]
pub struct UnsealError;

/// Seals and opens organizations' webhook secrets. `Debug` never shows the key.
pub struct SecretSealer {
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer([REDACTED])")
    }
}

impl SecretSealer {
    /// A sealer from the base64 of a 32-byte key.
    ///
    /// # Errors
    /// [`InvalidSealingKey`] when it is not base64 of exactly 32 bytes.
    pub fn from_base64(key: &SecretString) -> Result<Self, InvalidSealingKey> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| InvalidSealingKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| InvalidSealingKey)?;
        Ok(Self {
            key: SecretBox::new(Box::new(key)),
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }

    /// Seals `secret` for `org`: nonce followed by ciphertext and tag.
    ///
    /// # Panics
    /// When the operating system has no random source (the service cannot run then either).
    pub fn seal(&self, org: OrgId, secret: &SecretString) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let aad = org.as_uuid().into_bytes();
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`SecretSealer::seal`] sealed for `org`.
    ///
    /// # Errors
    /// [`UnsealError`] with another key, for another organization, or when tampered with.
    pub fn open(&self, org: OrgId, sealed: &[u8]) -> Result<SecretString, UnsealError> {
        if sealed.len() < NONCE_BYTES {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| UnsealError)?;
        let aad = org.as_uuid().into_bytes();
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| UnsealError)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| UnsealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> SecretSealer {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        SecretSealer::from_base64(&SecretString::from(key)).unwrap()
    }

    fn org(n: u128) -> OrgId {
        OrgId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_organization() {
        let secret = SecretString::from("wsec_0123456789abcdef");
        let sealed = sealer(1).seal(org(1), &secret);
        assert!(
            !sealed
                .windows(secret.expose_secret().len())
                .any(|w| w == secret.expose_secret().as_bytes()),
            "the secret is not stored in clear"
        );
        assert_eq!(
            sealer(1).open(org(1), &sealed).unwrap().expose_secret(),
            "wsec_0123456789abcdef"
        );
        assert_eq!(sealer(2).open(org(1), &sealed).unwrap_err(), UnsealError);
        assert_eq!(sealer(1).open(org(2), &sealed).unwrap_err(), UnsealError);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer(1).open(org(1), &tampered).unwrap_err(), UnsealError);
        assert_eq!(
            sealer(1).open(org(1), &sealed[..10]).unwrap_err(),
            UnsealError
        );
        assert_ne!(
            sealer(1).seal(org(1), &secret),
            sealed,
            "each sealing uses a fresh nonce"
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_are_never_shown() {
        for bad in ["", "not base64!", "AAAA"] {
            assert_eq!(
                SecretSealer::from_base64(&SecretString::from(bad)).unwrap_err(),
                InvalidSealingKey
            );
        }
        assert_eq!(format!("{:?}", sealer(7)), "SecretSealer([REDACTED])");
    }
}
