//! The management API's JSON: what each resource looks like, and what each request may send.
//! Request bodies refuse unknown fields, so a typo is a 400, not a silently ignored change.

use chrono::{DateTime, Utc};
use relay_domain::{
    ApiKeyInfo, AuditEntry, CallRecord, KeyScope, ManagedContact, Organization, SecretInfo,
};
use serde::{Deserialize, Deserializer, Serialize};
use validator::Validate;

/// An organization.
#[derive(Debug, Serialize)]
pub(crate) struct OrgJson {
    id: String,
    name: String,
    default_region: String,
    unknown_caller_name: String,
    memory: MemoryJson,
}

#[derive(Debug, Serialize)]
struct MemoryJson {
    retention_days: u16,
    unknown_callers: bool,
}

impl From<&Organization> for OrgJson {
    fn from(org: &Organization) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name.as_str().to_owned(),
            default_region: org.default_region.code().to_owned(),
            unknown_caller_name: org.unknown_caller_name.as_str().to_owned(),
            memory: MemoryJson {
                retention_days: org.memory.retention_days,
                unknown_callers: org.memory.unknown_callers,
            },
        }
    }
}

/// `POST /organizations`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrg {
    pub(crate) name: String,
    pub(crate) default_region: String,
}

/// `PATCH /organizations/{org}`: each field present is changed.
#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgPatch {
    pub(crate) name: Option<String>,
    pub(crate) default_region: Option<String>,
    pub(crate) unknown_caller_name: Option<String>,
    pub(crate) memory: Option<MemoryPatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemoryPatch {
    pub(crate) retention_days: Option<u16>,
    pub(crate) unknown_callers: Option<bool>,
}

/// A tool secret; `token` only in the answer that created it.
#[derive(Debug, Serialize)]
pub(crate) struct SecretJson {
    id: String,
    org_id: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl SecretJson {
    pub(crate) fn new(info: &SecretInfo, token: Option<String>) -> Self {
        Self {
            id: info.id.to_string(),
            org_id: info.org_id.to_string(),
            created_at: info.created_at,
            revoked_at: info.revoked_at,
            token,
        }
    }
}

/// `PUT /organizations/{org}/webhook-secret`.
#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSecretBody {
    pub(crate) secret: String,
}

impl std::fmt::Debug for WebhookSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecretBody(..)")
    }
}

/// A management key; `key` only in the answer that created it.
#[derive(Debug, Serialize)]
pub(crate) struct KeyJson {
    id: String,
    scope: &'static str,
    org_id: Option<String>,
    label: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl KeyJson {
    pub(crate) fn new(info: &ApiKeyInfo, key: Option<String>) -> Self {
        Self {
            id: info.id.to_string(),
            scope: match info.scope {
                KeyScope::Operator => "operator",
                KeyScope::Organization(_) => "organization",
            },
            org_id: info.scope.org().map(|o| o.to_string()),
            label: info.label.as_str().to_owned(),
            created_at: info.created_at,
            revoked_at: info.revoked_at,
            key,
        }
    }
}

/// `POST .../keys`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    pub(crate) label: String,
}

/// A contact.
#[derive(Debug, Serialize)]
pub(crate) struct ContactJson {
    id: String,
    external_id: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: String,
    phone_raw: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&ManagedContact> for ContactJson {
    fn from(c: &ManagedContact) -> Self {
        Self {
            id: c.contact.id.to_string(),
            external_id: c.external_id.as_ref().map(ToString::to_string),
            first_name: c.contact.first_name.clone(),
            last_name: c.contact.last_name.clone(),
            phone: c.contact.phone.as_str().to_owned(),
            phone_raw: c.phone_raw.clone(),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.contact.updated_at,
        }
    }
}

/// `POST .../contacts` and `PUT .../contacts/by-external-id/{id}`: the whole contact.
#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactBody {
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) phone: String,
    pub(crate) external_id: Option<String>,
}

impl std::fmt::Debug for ContactBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContactBody(..)")
    }
}

/// `PATCH .../contacts/{id}` (JSON merge patch): an absent field is kept, `null` clears it.
#[derive(Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactPatchBody {
    #[serde(default, deserialize_with = "present")]
    pub(crate) first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) last_name: Option<Option<String>>,
    pub(crate) phone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) external_id: Option<Option<String>>,
}

impl std::fmt::Debug for ContactPatchBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContactPatchBody(..)")
    }
}

/// A field that is present: `Some(None)` for `null`, `Some(Some(v))` for a value (an absent
/// field stays `None` through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A call record.
#[derive(Debug, Serialize)]
pub(crate) struct CallJson {
    id: String,
    org_id: String,
    contact_id: Option<String>,
    conversation_id: String,
    call_sid: Option<String>,
    agent_id: Option<String>,
    kind: &'static str,
    direction: Option<String>,
    caller: Option<String>,
    external_number: Option<String>,
    agent_number: Option<String>,
    status: Option<String>,
    call_successful: Option<String>,
    summary: Option<String>,
    duration_secs: Option<u32>,
    started_at: Option<DateTime<Utc>>,
    event_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

impl From<&CallRecord> for CallJson {
    fn from(r: &CallRecord) -> Self {
        Self {
            id: r.id.to_string(),
            org_id: r.org_id.to_string(),
            contact_id: r.contact_id.map(|c| c.to_string()),
            conversation_id: r.conversation_id.as_str().to_owned(),
            call_sid: r.call_sid.as_ref().map(|s| s.as_str().to_owned()),
            agent_id: r.agent_id.clone(),
            kind: r.kind.as_str(),
            direction: r.direction.clone(),
            caller: r.caller.as_ref().map(|c| c.as_str().to_owned()),
            external_number: r.external_number.clone(),
            agent_number: r.agent_number.clone(),
            status: r.status.clone(),
            call_successful: r.call_successful.clone(),
            summary: r.summary.clone(),
            duration_secs: r.duration_secs,
            started_at: r.started_at,
            event_at: r.event_at,
            received_at: r.received_at,
        }
    }
}

/// An audit entry.
#[derive(Debug, Serialize)]
pub(crate) struct AuditJson {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    org_id: Option<String>,
    action: String,
    target: Option<String>,
}

impl From<&AuditEntry> for AuditJson {
    fn from(e: &AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            actor: e.actor.as_stored(),
            org_id: e.org_id.map(|o| o.to_string()),
            action: e.action.clone(),
            target: e.target.clone(),
        }
    }
}

/// A list: `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize)]
pub(crate) struct ListJson<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_cursor: Option<String>,
}
