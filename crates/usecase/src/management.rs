//! The management operations, one implementation each, for both of their adapters: the
//! management HTTP API and the `relay` command line.
//!
//! Every operation takes the [`Principal`] acting (a management key, or the CLI as an operator)
//! and checks its reach first: an organization key reaches its own organization only, and only
//! an operator creates or deletes organizations or reads everything. Every change appends who
//! did what to the audit trail, after the change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use relay_domain::{
    Actor, ApiKeyId, ApiKeyInfo, AuditEntry, CallId, CallRecord, CallerNumber, ContactDraft,
    ContactId, ContactQuery, ExternalId, KeyLabel, KeyScope, ManagedContact, MemorySettings, OrgId,
    OrgName, Organization, Region, SecretId, SecretInfo, ToolToken,
};
use relay_ports::{
    AdminError, AuditLog, CallContextCache, CallCursor, CallLog, ContactAdmin, ContactImport,
    Entity, ManagementKeys, OrganizationAdmin, RepositoryError, Upserted,
};
use secrecy::SecretString;

use crate::admin::{Admin, FallbackNameError, IssuedSecret, WebhookSecret};
use crate::import::{
    ContactImporter, ImportError, ImportReport, RawContact, Rejection, contact_fields,
};
use crate::post_call::SecretSealer;

/// Prefix of every management key, so secret scanners and people can tell one apart.
pub const MANAGEMENT_KEY_PREFIX: &str = "rmk_";

/// Most items one list page returns.
pub const MAX_PAGE: u32 = 500;

/// Rows per upsert round trip (and transaction) during an import: large enough that a batch's
/// fixed costs (a transaction, a commit, planning) are lost in its rows, small enough to keep an
/// import's memory bounded (two batches: one being written, the next being gathered) and the
/// per-organization import lock held under a second.
pub const IMPORT_BATCH: usize = 20_000;

/// Items a list page returns when the client does not say.
pub const DEFAULT_PAGE: u32 = 50;

/// Who is acting: a management key and what it reaches, or the CLI (an operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// Recorded in the audit trail.
    pub actor: Actor,
    /// What it may reach.
    pub scope: KeyScope,
}

impl Principal {
    /// The `relay` command line: a shell on the service's image is an operator.
    pub const CLI: Self = Self {
        actor: Actor::Cli,
        scope: KeyScope::Operator,
    };

    fn reach(&self, org: OrgId) -> Result<(), ManageError> {
        if self.scope.reaches(org) {
            Ok(())
        } else {
            Err(ManageError::Forbidden(
                "this key belongs to another organization",
            ))
        }
    }

    fn operator(&self, what: &'static str) -> Result<(), ManageError> {
        match self.scope {
            KeyScope::Operator => Ok(()),
            KeyScope::Organization(_) => Err(ManageError::Forbidden(what)),
        }
    }
}

/// A management operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The principal does not reach what it named (another organization, or an operator's
    /// operation). Nothing was read or changed.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// What was named does not exist (or, for a contact, key, secret or call, belongs to
    /// another organization).
    #[error("{0} not found")]
    NotFound(Entity),
    /// A value in the request breaks a rule; nothing was changed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as the client named it.
        field: &'static str,
        /// Why, for a person.
        reason: String,
    },
    /// Another contact of the organization already has this external id.
    #[error("another contact already has this external id")]
    ExternalIdTaken,
    /// The object changed since the version the request was conditioned on.
    #[error("{0} was changed since it was read (version mismatch)")]
    VersionMismatch(Entity),
    /// The service is not configured for this operation (e.g. no `WEBHOOK_SECRET_KEY`).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(RepositoryError),
}

impl From<AdminError> for ManageError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound(entity) => Self::NotFound(entity),
            AdminError::ExternalIdTaken => Self::ExternalIdTaken,
            AdminError::VersionMismatch(entity) => Self::VersionMismatch(entity),
            AdminError::Repository(error) => Self::Store(error),
        }
    }
}

impl From<RepositoryError> for ManageError {
    fn from(error: RepositoryError) -> Self {
        Self::Store(error)
    }
}

fn invalid(field: &'static str, reason: impl std::fmt::Display) -> ManageError {
    ManageError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// A change of an organization: each field set is changed, the others kept.
#[derive(Debug, Clone, Default)]
pub struct OrgChange {
    /// A new name.
    pub name: Option<String>,
    /// A new region (ISO 3166-1 alpha-2).
    pub default_region: Option<String>,
    /// What an unrecognized caller is called; `""` for nothing.
    pub unknown_caller_name: Option<String>,
    /// Days the returning-caller memory keeps a number; 0 turns memory off.
    pub memory_retention_days: Option<u16>,
    /// Whether numbers that are no contact's are remembered.
    pub memory_unknown_callers: Option<bool>,
}

/// A contact as a client writes it: the number in any format, read in the organization's
/// region.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContactInput {
    /// First name; blank is none.
    pub first_name: Option<String>,
    /// Last name; blank is none.
    pub last_name: Option<String>,
    /// The number, any format.
    pub phone: String,
    /// The id in the system owning the contact.
    pub external_id: Option<String>,
}

impl std::fmt::Debug for ContactInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactInput")
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

/// A partial change of a contact (JSON merge patch): `None` keeps a field, `Some(None)`
/// clears it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContactPatch {
    /// First name.
    pub first_name: Option<Option<String>>,
    /// Last name.
    pub last_name: Option<Option<String>>,
    /// The number, any format (cannot be cleared).
    pub phone: Option<String>,
    /// The external id.
    pub external_id: Option<Option<String>>,
}

impl std::fmt::Debug for ContactPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactPatch").finish_non_exhaustive()
    }
}

/// Which contacts a list returns.
#[derive(Debug, Clone, Default)]
pub struct ContactSearch {
    /// A number in any format; a number that is not one matches nothing, as on the webhook.
    pub phone: Option<String>,
    /// A part of a first or last name.
    pub name: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`]; [`DEFAULT_PAGE`] when `None`.
    pub limit: Option<u32>,
}

/// One page of a list; `next_cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass it back to get the next page.
    pub next_cursor: Option<String>,
}

/// A new management key: its bookkeeping and the key, which exists in clear only here.
#[derive(Debug)]
pub struct IssuedKey {
    /// What is stored about the key.
    pub info: ApiKeyInfo,
    /// The key; it cannot be shown again.
    pub token: ToolToken,
}

/// What a contact deletion removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedContact {
    /// The contact as it was.
    pub contact: ManagedContact,
    /// Cached call contexts deleted; `None` when the cache could not be reached (they expire
    /// within their TTL).
    pub cached_contexts: Option<u64>,
}

/// The ports the management operations use.
#[derive(Clone)]
pub struct ManagementPorts {
    /// Organizations and tool secrets.
    pub orgs: Arc<dyn OrganizationAdmin>,
    /// Contacts one at a time.
    pub contacts: Arc<dyn ContactAdmin>,
    /// Contacts in bulk.
    pub import: Arc<dyn ContactImport>,
    /// Management keys.
    pub keys: Arc<dyn ManagementKeys>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// Call records.
    pub calls: Arc<dyn CallLog>,
    /// Call contexts, deleted with their contact.
    pub cache: Arc<dyn CallContextCache>,
}

impl std::fmt::Debug for ManagementPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementPorts").finish_non_exhaustive()
    }
}

/// The management operations.
pub struct Management {
    ports: ManagementPorts,
    admin: Admin,
    sealer: Option<Arc<SecretSealer>>,
    audit_failures: AtomicU64,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("webhook_secrets", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl Management {
    /// Operations over `ports`; `sealer` seals webhook secrets (none: setting one is refused).
    pub fn new(ports: ManagementPorts, sealer: Option<Arc<SecretSealer>>) -> Self {
        Self {
            admin: Admin::new(Arc::clone(&ports.orgs)),
            ports,
            sealer,
            audit_failures: AtomicU64::new(0),
        }
    }

    /// Changes whose audit entry could not be written (each is logged at ERROR).
    pub fn audit_failures(&self) -> u64 {
        self.audit_failures.load(Ordering::Relaxed)
    }

    /// The principal a presented management key stands for; `None` for an unknown or revoked
    /// key (or one without the management key prefix, which costs no lookup).
    ///
    /// # Errors
    /// The store failed.
    pub async fn authenticate(
        &self,
        token: &ToolToken,
    ) -> Result<Option<Principal>, RepositoryError> {
        if !token.expose().starts_with(MANAGEMENT_KEY_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .ports
            .keys
            .find_key(&token.digest())
            .await?
            .map(|key| Principal {
                actor: Actor::Key(key.id),
                scope: key.scope,
            }))
    }

    /// Appends the audit entry of a change that was made. A failure does not undo the change:
    /// it is logged at ERROR and counted ([`Management::audit_failures`]).
    async fn audit(
        &self,
        who: &Principal,
        org: Option<OrgId>,
        action: &'static str,
        target: Option<String>,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at: Utc::now(),
            actor: who.actor,
            org_id: org,
            action: action.to_owned(),
            target,
        };
        if let Err(error) = self.ports.audit.append_audit(&entry).await {
            self.audit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                error = %error,
                action,
                actor = %who.actor,
                org_id = ?org,
                "a change was made but its audit entry could not be written"
            );
        }
    }

    // ---- organizations ----

    /// Creates an organization (operators only).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], the store's errors.
    pub async fn create_organization(
        &self,
        who: &Principal,
        name: &str,
        region: &str,
    ) -> Result<Organization, ManageError> {
        who.operator("only an operator key creates organizations")?;
        // Exactly as typed or not at all, as on update: no trimming.
        crate::check_prompt_text(name).map_err(|e| invalid("name", e))?;
        let name = OrgName::parse(name).map_err(|e| invalid("name", e))?;
        let region = Region::parse(region).map_err(|e| invalid("default_region", e))?;
        let org = self.admin.create_organization(&name, region).await?;
        self.audit(
            who,
            Some(org.id),
            "organization.create",
            Some(org.id.to_string()),
        )
        .await;
        Ok(org)
    }

    /// The organizations the principal reaches, oldest first.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn list_organizations(
        &self,
        who: &Principal,
    ) -> Result<Vec<Organization>, ManageError> {
        match who.scope {
            KeyScope::Operator => Ok(self.admin.list_organizations().await?),
            KeyScope::Organization(own) => Ok(vec![self.admin.organization(own).await?]),
        }
    }

    /// One organization.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn organization(
        &self,
        who: &Principal,
        org: OrgId,
    ) -> Result<Organization, ManageError> {
        who.reach(org)?;
        Ok(self.admin.organization(org).await?)
    }

    /// Changes the fields `change` sets, after checking all of them (a bad field changes
    /// nothing).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], [`ManageError::NotFound`], the
    /// store's errors.
    pub async fn update_organization(
        &self,
        who: &Principal,
        org: OrgId,
        change: OrgChange,
    ) -> Result<Organization, ManageError> {
        who.reach(org)?;
        let name = change
            .name
            .as_deref()
            .map(|raw| {
                crate::check_prompt_text(raw).map_err(|e| invalid("name", e))?;
                OrgName::parse(raw).map_err(|e| invalid("name", e))
            })
            .transpose()?;
        let region = change
            .default_region
            .as_deref()
            .map(|raw| Region::parse(raw).map_err(|e| invalid("default_region", e)))
            .transpose()?;
        if let Some(raw) = change
            .unknown_caller_name
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            crate::check_prompt_text(raw).map_err(|e| invalid("unknown_caller_name", e))?;
        }
        let mut current = self.admin.organization(org).await?;
        let memory =
            if change.memory_retention_days.is_some() || change.memory_unknown_callers.is_some() {
                Some(
                    MemorySettings::new(
                        change
                            .memory_retention_days
                            .unwrap_or(current.memory.retention_days),
                        change
                            .memory_unknown_callers
                            .unwrap_or(current.memory.unknown_callers),
                    )
                    .map_err(|e| invalid("memory_retention_days", e))?,
                )
            } else {
                None
            };
        if let Some(name) = name {
            current = self.ports.orgs.rename_organization(org, &name).await?;
        }
        if let Some(region) = region {
            current = self.ports.orgs.set_default_region(org, region).await?;
        }
        if let Some(fallback) = change.unknown_caller_name.as_deref() {
            current = self
                .admin
                .set_unknown_caller_name(org, fallback)
                .await
                .map_err(|e| match e {
                    FallbackNameError::Refused(e) => invalid("unknown_caller_name", e),
                    FallbackNameError::Admin(e) => e.into(),
                })?;
        }
        if let Some(memory) = memory {
            current = self.admin.set_memory(org, memory).await?;
        }
        self.audit(who, Some(org), "organization.update", Some(org.to_string()))
            .await;
        Ok(current)
    }

    /// Deletes an organization and everything it owns (operators only). Its cached call
    /// contexts can no longer be read (no secret authenticates it) and expire within their TTL.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn delete_organization(
        &self,
        who: &Principal,
        org: OrgId,
    ) -> Result<(), ManageError> {
        who.operator("only an operator key deletes organizations")?;
        self.ports.orgs.delete_organization(org).await?;
        self.audit(who, Some(org), "organization.delete", Some(org.to_string()))
            .await;
        Ok(())
    }

    // ---- tool secrets and the webhook secret ----

    /// Issues a new tool secret of `org`; the token is shown once.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn issue_secret(
        &self,
        who: &Principal,
        org: OrgId,
    ) -> Result<IssuedSecret, ManageError> {
        who.reach(org)?;
        let issued = self.admin.issue_secret(org).await?;
        self.audit(
            who,
            Some(org),
            "secret.create",
            Some(issued.info.id.to_string()),
        )
        .await;
        Ok(issued)
    }

    /// The tool secrets of `org`, live and revoked.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn list_secrets(
        &self,
        who: &Principal,
        org: OrgId,
    ) -> Result<Vec<SecretInfo>, ManageError> {
        who.reach(org)?;
        Ok(self.admin.list_secrets(org).await?)
    }

    /// Revokes tool secret `secret` of `org`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`] (a secret of another organization
    /// included), the store's errors.
    pub async fn revoke_secret(
        &self,
        who: &Principal,
        org: OrgId,
        secret: SecretId,
    ) -> Result<SecretInfo, ManageError> {
        who.reach(org)?;
        let owned = self
            .admin
            .list_secrets(org)
            .await?
            .iter()
            .any(|s| s.id == secret);
        if !owned {
            return Err(ManageError::NotFound(Entity::Secret));
        }
        let info = self.admin.revoke_secret(secret).await?;
        self.audit(who, Some(org), "secret.revoke", Some(secret.to_string()))
            .await;
        Ok(info)
    }

    /// Revokes a tool secret by id alone (operators only: the CLI's `secret revoke`).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn revoke_secret_by_id(
        &self,
        who: &Principal,
        secret: SecretId,
    ) -> Result<SecretInfo, ManageError> {
        who.operator("only an operator revokes a secret without its organization")?;
        let info = self.admin.revoke_secret(secret).await?;
        self.audit(
            who,
            Some(info.org_id),
            "secret.revoke",
            Some(secret.to_string()),
        )
        .await;
        Ok(info)
    }

    /// Seals and stores the post-call webhook secret of `org`.
    ///
    /// # Errors
    /// [`ManageError::NotConfigured`] without `WEBHOOK_SECRET_KEY`; [`ManageError::Invalid`];
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn set_webhook_secret(
        &self,
        who: &Principal,
        org: OrgId,
        secret: &SecretString,
    ) -> Result<(), ManageError> {
        who.reach(org)?;
        let sealer = self.sealer.as_ref().ok_or(ManageError::NotConfigured(
            "WEBHOOK_SECRET_KEY is not set, so webhook secrets cannot be stored",
        ))?;
        let secret = WebhookSecret::parse(secret).map_err(|e| invalid("secret", e))?;
        self.admin.set_webhook_secret(org, &secret, sealer).await?;
        self.audit(who, Some(org), "webhook_secret.set", Some(org.to_string()))
            .await;
        Ok(())
    }

    // ---- management keys ----

    /// Issues a management key: an operator key (`org: None`, operators only) or a key of
    /// `org`. The key is shown once.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], [`ManageError::NotFound`], the
    /// store's errors.
    pub async fn create_key(
        &self,
        who: &Principal,
        org: Option<OrgId>,
        label: &str,
    ) -> Result<IssuedKey, ManageError> {
        let scope = match org {
            None => {
                who.operator("only an operator key creates operator keys")?;
                KeyScope::Operator
            }
            Some(org) => {
                who.reach(org)?;
                KeyScope::Organization(org)
            }
        };
        let label = KeyLabel::parse(label).map_err(|e| invalid("label", e))?;
        let token = new_management_key()?;
        let info = self
            .ports
            .keys
            .create_key(scope, &label, &token.digest())
            .await?;
        self.audit(who, org, "key.create", Some(info.id.to_string()))
            .await;
        Ok(IssuedKey { info, token })
    }

    /// The keys of `org`, or the operator keys (`None`, operators only).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], the store's errors.
    pub async fn list_keys(
        &self,
        who: &Principal,
        org: Option<OrgId>,
    ) -> Result<Vec<ApiKeyInfo>, ManageError> {
        match org {
            None => who.operator("only an operator key lists operator keys")?,
            Some(org) => {
                who.reach(org)?;
                self.admin.organization(org).await?;
            }
        }
        Ok(self.ports.keys.list_keys(org).await?)
    }

    /// Revokes a management key the principal reaches.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] (a key of an organization the principal does not reach
    /// included), the store's errors.
    pub async fn revoke_key(
        &self,
        who: &Principal,
        key: ApiKeyId,
    ) -> Result<ApiKeyInfo, ManageError> {
        let found = self
            .ports
            .keys
            .get_key(key)
            .await?
            .filter(|k| match k.scope {
                KeyScope::Operator => who.scope == KeyScope::Operator,
                KeyScope::Organization(org) => who.scope.reaches(org),
            })
            .ok_or(ManageError::NotFound(Entity::Key))?;
        let info = self.ports.keys.revoke_key(key).await?;
        self.audit(who, found.scope.org(), "key.revoke", Some(key.to_string()))
            .await;
        Ok(info)
    }

    // ---- contacts ----

    fn draft(&self, org: &Organization, input: ContactInput) -> Result<ContactDraft, ManageError> {
        let external_id = input
            .external_id
            .as_deref()
            .map(|raw| ExternalId::parse(raw).map_err(|e| invalid("external_id", e)))
            .transpose()?;
        let fields = contact_fields(
            input.first_name,
            input.last_name,
            Some(&input.phone),
            &org.default_region,
        )
        .map_err(|refused| invalid(refused.field, refused.reason))?;
        Ok(ContactDraft {
            first_name: fields.first_name,
            last_name: fields.last_name,
            phone_raw: fields.phone_raw,
            phone: fields.phone,
            external_id,
        })
    }

    /// Creates a contact of `org`; the number is read in the organization's region.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], [`ManageError::ExternalIdTaken`],
    /// [`ManageError::NotFound`], the store's errors.
    pub async fn create_contact(
        &self,
        who: &Principal,
        org: OrgId,
        input: ContactInput,
    ) -> Result<ManagedContact, ManageError> {
        who.reach(org)?;
        let organization = self.admin.organization(org).await?;
        let draft = self.draft(&organization, input)?;
        let contact = self.ports.contacts.create_contact(org, &draft).await?;
        self.audit(
            who,
            Some(org),
            "contact.create",
            Some(contact.contact.id.to_string()),
        )
        .await;
        Ok(contact)
    }

    /// One contact of `org`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn contact(
        &self,
        who: &Principal,
        org: OrgId,
        id: ContactId,
    ) -> Result<ManagedContact, ManageError> {
        who.reach(org)?;
        self.ports
            .contacts
            .get_contact(org, id)
            .await?
            .ok_or(ManageError::NotFound(Entity::Contact))
    }

    /// Applies `patch` to contact `id` of `org`, when its version is `if_match` (any when
    /// `None`).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], [`ManageError::NotFound`],
    /// [`ManageError::VersionMismatch`], [`ManageError::ExternalIdTaken`], the store's errors.
    pub async fn update_contact(
        &self,
        who: &Principal,
        org: OrgId,
        id: ContactId,
        patch: ContactPatch,
        if_match: Option<i64>,
    ) -> Result<ManagedContact, ManageError> {
        who.reach(org)?;
        let organization = self.admin.organization(org).await?;
        let current = self
            .ports
            .contacts
            .get_contact(org, id)
            .await?
            .ok_or(ManageError::NotFound(Entity::Contact))?;
        if if_match.is_some_and(|v| v != current.version) {
            return Err(ManageError::VersionMismatch(Entity::Contact));
        }
        let keeps_number = patch.phone.is_none();
        let input = ContactInput {
            first_name: patch
                .first_name
                .unwrap_or(current.contact.first_name.clone()),
            last_name: patch.last_name.unwrap_or(current.contact.last_name.clone()),
            // A patch without a number keeps the stored one as it is: its E.164 form reads the
            // same in any region, whatever the organization's region is now.
            phone: patch
                .phone
                .unwrap_or_else(|| current.contact.phone.as_str().to_owned()),
            external_id: patch
                .external_id
                .unwrap_or(current.external_id.as_ref().map(ToString::to_string)),
        };
        let mut draft = self.draft(&organization, input)?;
        if keeps_number {
            draft.phone_raw.clone_from(&current.phone_raw);
        }
        // Conditioned on the version read, so a concurrent change is never overwritten with
        // fields merged from before it.
        let updated = self
            .ports
            .contacts
            .update_contact(org, id, &draft, Some(current.version))
            .await?;
        if updated.version != current.version {
            self.audit(who, Some(org), "contact.update", Some(id.to_string()))
                .await;
        }
        Ok(updated)
    }

    /// Creates or replaces the contact of `org` with this external id (a CRM sync's `PUT`).
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], [`ManageError::NotFound`],
    /// [`ManageError::VersionMismatch`], the store's errors.
    pub async fn put_contact(
        &self,
        who: &Principal,
        org: OrgId,
        external_id: &str,
        input: ContactInput,
        if_match: Option<i64>,
    ) -> Result<(ManagedContact, Upserted), ManageError> {
        who.reach(org)?;
        let external_id = ExternalId::parse(external_id).map_err(|e| invalid("external_id", e))?;
        let organization = self.admin.organization(org).await?;
        let draft = self.draft(
            &organization,
            ContactInput {
                external_id: Some(external_id.to_string()),
                ..input
            },
        )?;
        let upsert = self
            .ports
            .contacts
            .upsert_by_external_id(org, &external_id, &draft, if_match)
            .await?;
        let action = match upsert.outcome {
            Upserted::Created => Some("contact.create"),
            Upserted::Updated => Some("contact.update"),
            Upserted::Unchanged => None,
        };
        if let Some(action) = action {
            self.audit(
                who,
                Some(org),
                action,
                Some(upsert.contact.contact.id.to_string()),
            )
            .await;
        }
        Ok((upsert.contact, upsert.outcome))
    }

    /// Deletes contact `id` of `org` (when its version is `if_match`, any when `None`), the
    /// memory of its number and its cached call contexts: the webhook no longer matches it
    /// from the next call on.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], [`ManageError::VersionMismatch`],
    /// the store's errors. A cache that cannot be reached is no error: see
    /// [`DeletedContact::cached_contexts`].
    pub async fn delete_contact(
        &self,
        who: &Principal,
        org: OrgId,
        id: ContactId,
        if_match: Option<i64>,
    ) -> Result<DeletedContact, ManageError> {
        who.reach(org)?;
        let contact = self
            .ports
            .contacts
            .delete_contact(org, id, if_match)
            .await?;
        self.audit(who, Some(org), "contact.delete", Some(id.to_string()))
            .await;
        let cached_contexts = match self
            .ports
            .cache
            .forget_caller(org, &contact.contact.phone, &[id])
            .await
        {
            Ok(deleted) => Some(deleted),
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    contact_id = %id,
                    "contact deleted; its cached call contexts could not be deleted and expire within 24 h"
                );
                None
            }
        };
        Ok(DeletedContact {
            contact,
            cached_contexts,
        })
    }

    /// One page of `org`'s contacts.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`] (a cursor this service did not
    /// give, a limit out of range), [`ManageError::NotFound`], the store's errors.
    pub async fn list_contacts(
        &self,
        who: &Principal,
        org: OrgId,
        search: ContactSearch,
    ) -> Result<Page<ManagedContact>, ManageError> {
        who.reach(org)?;
        let limit = page_limit(search.limit)?;
        let after = search
            .cursor
            .as_deref()
            .map(|c| {
                decode_cursor(c)
                    .and_then(|id| id.parse().ok())
                    .map(ContactId::from_uuid)
            })
            .map(|c| c.ok_or_else(|| invalid("cursor", "not a cursor this service gave")))
            .transpose()?;
        // The organization is read only to know its region; the list itself answers NotFound
        // for a missing organization.
        let phone = match search.phone.as_deref() {
            None => None,
            Some(raw) => {
                let region = self.admin.organization(org).await?.default_region;
                match CallerNumber::from_caller_id(Some(raw), &region) {
                    CallerNumber::Known(number) => Some(number),
                    // What the webhook would match: nothing.
                    CallerNumber::Unusable(_) => {
                        return Ok(Page {
                            items: Vec::new(),
                            next_cursor: None,
                        });
                    }
                }
            }
        };
        let name = search.name.filter(|n| !n.is_empty());
        let mut items = self
            .ports
            .contacts
            .list_contacts(
                org,
                &ContactQuery {
                    phone,
                    name,
                    after,
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            encode_cursor(&items[items.len() - 1].contact.id.to_string())
        });
        Ok(Page { items, next_cursor })
    }

    /// Imports `rows` into `org` with the rules of `relay contacts import` (normalized in the
    /// organization's region, per-row rejections, upserted by number in batches), after
    /// checking the principal reaches `org`: call [`Management::organization`] first to refuse
    /// before reading anything. `progress` is told the rows handled after each batch.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors (batches
    /// written before stay written).
    pub async fn import_contacts<I>(
        &self,
        who: &Principal,
        org: OrgId,
        rows: I,
        progress: impl FnMut(u64) + Send,
    ) -> Result<ImportReport, ManageError>
    where
        I: IntoIterator<Item = Result<RawContact, Rejection>> + Send + 'static,
        I::IntoIter: Send,
    {
        who.reach(org)?;
        let organization = self.admin.organization(org).await?;
        let importer = ContactImporter::new(Arc::clone(&self.ports.import), IMPORT_BATCH);
        let report = importer
            .import(&organization, rows, progress)
            .await
            .map_err(|e| match e {
                ImportError::Store(e) => ManageError::from(e),
                ImportError::WorkerFailed(e) => ManageError::Store(RepositoryError::Unexpected(
                    format!("import worker failed: {e}").into(),
                )),
            })?;
        if report.accepted() > 0 {
            self.audit(who, Some(org), "contacts.import", None).await;
        }
        Ok(report)
    }

    // ---- calls and the audit trail ----

    /// One page of `org`'s call records, newest first, received at or after `since`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`] (a cursor this service did not give,
    /// a limit out of range), [`ManageError::NotFound`], the store's errors.
    pub async fn list_calls(
        &self,
        who: &Principal,
        org: OrgId,
        since: Option<DateTime<Utc>>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<CallRecord>, ManageError> {
        who.reach(org)?;
        let limit = page_limit(limit)?;
        let before = cursor
            .map(|c| {
                decode_cursor(c)
                    .and_then(|key| {
                        let (micros, id) = key.split_once('/')?;
                        Some(CallCursor {
                            received_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                            id: id.parse().ok()?,
                        })
                    })
                    .ok_or_else(|| invalid("cursor", "not a cursor this service gave"))
            })
            .transpose()?;
        let mut items = self
            .ports
            .calls
            .list_calls(org, since, before, limit + 1)
            .await?;
        let next_cursor = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            let last = &items[items.len() - 1];
            encode_cursor(&format!(
                "{}/{}",
                last.received_at.timestamp_micros(),
                last.id
            ))
        });
        Ok(Page { items, next_cursor })
    }

    /// One call record of `org`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::NotFound`], the store's errors.
    pub async fn call(
        &self,
        who: &Principal,
        org: OrgId,
        call: CallId,
    ) -> Result<CallRecord, ManageError> {
        who.reach(org)?;
        self.ports
            .calls
            .get_call(org, call)
            .await?
            .ok_or(ManageError::NotFound(Entity::Call))
    }

    /// One page of the audit trail, newest first: everything (operators), or one
    /// organization's.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`], [`ManageError::Invalid`], the store's errors.
    pub async fn audit_trail(
        &self,
        who: &Principal,
        org: Option<OrgId>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<AuditEntry>, ManageError> {
        let org = match (who.scope, org) {
            (KeyScope::Operator, org) => org,
            (KeyScope::Organization(own), None) => Some(own),
            (KeyScope::Organization(_), Some(org)) => {
                who.reach(org)?;
                Some(org)
            }
        };
        let limit = page_limit(limit)?;
        let before = cursor
            .map(|c| {
                decode_cursor(c)
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| invalid("cursor", "not a cursor this service gave"))
            })
            .transpose()?;
        let mut items = self.ports.audit.list_audit(org, before, limit + 1).await?;
        let next_cursor = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            encode_cursor(&items[items.len() - 1].seq.to_string())
        });
        Ok(Page { items, next_cursor })
    }

    /// Records a change made by another use case for a principal (an import, an erasure).
    pub async fn record(
        &self,
        who: &Principal,
        org: Option<OrgId>,
        action: &'static str,
        target: Option<String>,
    ) {
        self.audit(who, org, action, target).await;
    }
}

fn page_limit(limit: Option<u32>) -> Result<u32, ManageError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n @ 1..=MAX_PAGE) => Ok(n),
        Some(_) => Err(invalid("limit", format!("must be 1 to {MAX_PAGE}"))),
    }
}

/// Cursors are opaque to clients: the last item's key, base64url.
fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

/// A new management key: the prefix and 32 bytes of the operating system's random source.
fn new_management_key() -> Result<ToolToken, ManageError> {
    let mut bytes = [0u8; ToolToken::RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        ManageError::Store(RepositoryError::Unexpected(
            format!("no random source: {e}").into(),
        ))
    })?;
    let key = format!("{MANAGEMENT_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    ToolToken::from_presented(SecretString::from(key)).ok_or_else(|| {
        ManageError::Store(RepositoryError::Unexpected("empty management key".into()))
    })
}
