//! Administration: organizations and their tool secrets.

use std::sync::Arc;

use relay_domain::{
    OrgId, OrgName, Organization, Region, SecretId, SecretInfo, ToolToken, sanitize_name,
};
use relay_ports::{AdminError, OrganizationAdmin};
use secrecy::{ExposeSecret as _, SecretString};

use crate::post_call::SecretSealer;

/// Longest webhook secret accepted, in bytes.
pub const MAX_WEBHOOK_SECRET_BYTES: usize = 1_024;

/// A post-call webhook secret as an operator gave it: trimmed, 1 to
/// [`MAX_WEBHOOK_SECRET_BYTES`] bytes, one word (no whitespace, control or invisible character
/// inside). `Debug` is redacted.
#[derive(Debug)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    /// Checks and wraps a secret (surrounding whitespace, e.g. a trailing newline, is trimmed).
    ///
    /// # Errors
    /// See [`WebhookSecretError`].
    pub fn parse(raw: &SecretString) -> Result<Self, WebhookSecretError> {
        let trimmed = raw.expose_secret().trim();
        if trimmed.is_empty() {
            return Err(WebhookSecretError::Empty);
        }
        if trimmed.len() > MAX_WEBHOOK_SECRET_BYTES {
            return Err(WebhookSecretError::TooLong);
        }
        // Two lines pasted, or a byte-order mark from an editor, would be stored as part of the
        // secret and every signature would then fail to verify, long after this command said OK.
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err(WebhookSecretError::InnerWhitespace);
        }
        Ok(Self(SecretString::from(trimmed.to_owned())))
    }
}

/// Characters that print as nothing (zero-width, bidi controls, byte-order mark) but are neither
/// whitespace nor `char::is_control`.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// A webhook secret was refused before it reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    /// Empty after trimming.
    #[error("the webhook secret is empty")]
    Empty,
    /// Longer than [`MAX_WEBHOOK_SECRET_BYTES`].
    #[error("the webhook secret is longer than 1024 bytes")]
    TooLong,
    /// Holds a line break, a space, a control or an invisible character after trimming.
    #[error(
        "the webhook secret holds a line break, a space, a control or an invisible character \
         (give the secret alone, on one line)"
    )]
    InnerWhitespace,
}

/// A new tool secret: its bookkeeping and the token, which exists in clear only here.
#[derive(Debug)]
pub struct IssuedSecret {
    /// What is stored about the secret.
    pub info: SecretInfo,
    /// The token to hand to ElevenLabs; it cannot be shown again.
    pub token: ToolToken,
}

/// Organization and secret administration, over the admin port.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn OrganizationAdmin>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// Administration over `store`.
    pub fn new(store: Arc<dyn OrganizationAdmin>) -> Self {
        Self { store }
    }

    /// Creates an organization.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn create_organization(
        &self,
        name: &OrgName,
        region: Region,
    ) -> Result<Organization, AdminError> {
        self.store.create_organization(name, region).await
    }

    /// All organizations, oldest first.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn list_organizations(&self) -> Result<Vec<Organization>, AdminError> {
        self.store.list_organizations().await
    }

    /// The organization with this id.
    ///
    /// # Errors
    /// `NotFound("organization")` when there is none; the store's errors.
    pub async fn organization(&self, org: OrgId) -> Result<Organization, AdminError> {
        self.store
            .find_organization(org)
            .await?
            .ok_or(AdminError::NotFound("organization"))
    }

    /// Issues a new tool secret of `org` from 32 bytes of the operating system's random source.
    /// Earlier secrets stay live, so ElevenLabs can be switched over without downtime.
    ///
    /// # Errors
    /// `NotFound("organization")`; the store's errors.
    pub async fn issue_secret(&self, org: OrgId) -> Result<IssuedSecret, AdminError> {
        let mut bytes = [0u8; ToolToken::RANDOM_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| {
            AdminError::Repository(relay_ports::RepositoryError::Unexpected(
                format!("no random source: {e}").into(),
            ))
        })?;
        let token = ToolToken::from_random_bytes(&bytes);
        let info = self.store.add_secret(org, &token.digest()).await?;
        Ok(IssuedSecret { info, token })
    }

    /// The secrets of `org` (never the tokens).
    ///
    /// # Errors
    /// `NotFound("organization")`; the store's errors.
    pub async fn list_secrets(&self, org: OrgId) -> Result<Vec<SecretInfo>, AdminError> {
        self.store.list_secrets(org).await
    }

    /// Revokes a secret at once.
    ///
    /// # Errors
    /// `NotFound("secret")`; the store's errors.
    pub async fn revoke_secret(&self, secret: SecretId) -> Result<SecretInfo, AdminError> {
        self.store.revoke_secret(secret).await
    }

    /// Sets what ElevenLabs' initiation route calls an unrecognized caller of `org`, sanitized
    /// like any name that reaches the prompt (one line, at most 64 characters); blank clears it.
    ///
    /// # Errors
    /// `NotFound("organization")`; the store's errors.
    pub async fn set_unknown_caller_name(
        &self,
        org: OrgId,
        name: &str,
    ) -> Result<Organization, AdminError> {
        let name = sanitize_name(name).unwrap_or_default();
        self.store.set_unknown_caller_name(org, &name).await
    }

    /// Seals `secret` (the post-call webhook's HMAC secret, as ElevenLabs shows it) for `org`
    /// and stores it, replacing any earlier one.
    ///
    /// # Errors
    /// `NotFound("organization")`; the store's errors.
    pub async fn set_webhook_secret(
        &self,
        org: OrgId,
        secret: &WebhookSecret,
        sealer: &SecretSealer,
    ) -> Result<(), AdminError> {
        let sealed = sealer.seal(org, &secret.0);
        self.store.set_webhook_secret(org, &sealed).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use relay_ports::MockOrganizationAdmin;

    use super::*;

    #[tokio::test]
    async fn issued_secrets_are_random_and_only_their_digest_is_stored() {
        let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
        let mut store = MockOrganizationAdmin::new();
        let stored = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&stored);
        store
            .expect_add_secret()
            .times(2)
            .returning(move |org_id, digest| {
                seen.lock().unwrap().push(*digest);
                Ok(SecretInfo {
                    id: SecretId::from_uuid(uuid::Uuid::from_u128(9)),
                    org_id,
                    created_at: Utc::now(),
                    revoked_at: None,
                })
            });
        let admin = Admin::new(Arc::new(store));
        let a = admin.issue_secret(org).await.unwrap();
        let b = admin.issue_secret(org).await.unwrap();
        assert_ne!(a.token.expose(), b.token.expose());
        assert_eq!(
            *stored.lock().unwrap(),
            vec![a.token.digest(), b.token.digest()]
        );
        assert_eq!(a.info.org_id, org);
    }

    fn secret(raw: &str) -> Result<WebhookSecret, WebhookSecretError> {
        WebhookSecret::parse(&SecretString::from(raw.to_owned()))
    }

    #[test]
    fn webhook_secret_is_trimmed_and_a_trailing_newline_is_normal() {
        let parsed = secret("  wsec_abc123\r\n").unwrap();
        assert_eq!(parsed.0.expose_secret(), "wsec_abc123");
    }

    #[test]
    fn webhook_secret_with_a_line_break_or_whitespace_inside_is_refused() {
        for raw in [
            "wsec_abc\nwsec_def\n",
            "wsec_abc\r\nsecond line",
            "wsec abc",
            "wsec\tabc",
            "wsec_\u{a0}abc",
            "wsec_\u{7}abc",
            "\u{feff}wsec_abc",
            "wsec_\u{200b}abc",
        ] {
            assert_eq!(
                secret(raw).unwrap_err(),
                WebhookSecretError::InnerWhitespace,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn webhook_secret_errors_never_echo_the_secret() {
        for raw in ["", "wsec_abc\nwsec_def", &"x".repeat(1_025)] {
            let message = secret(raw).unwrap_err().to_string();
            assert!(!message.contains("wsec"), "{message}");
            assert!(!message.contains("xxxx"), "{message}");
        }
        assert_eq!(secret(" \n ").unwrap_err(), WebhookSecretError::Empty);
        assert_eq!(
            secret(&"x".repeat(1_025)).unwrap_err(),
            WebhookSecretError::TooLong
        );
    }

    #[tokio::test]
    async fn missing_organization_is_not_found() {
        let mut store = MockOrganizationAdmin::new();
        store.expect_find_organization().returning(|_| Ok(None));
        let admin = Admin::new(Arc::new(store));
        let err = admin
            .organization(OrgId::from_uuid(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::NotFound("organization")));
    }
}
