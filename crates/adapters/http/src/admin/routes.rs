//! The management routes: parse, call the one management operation, render. Every answer (an
//! error included) carries the key's `RateLimit-*` headers, is logged with the acting key's id
//! and counted.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, HeaderValue, IF_MATCH, LOCATION};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use relay_domain::{ApiKeyId, CallId, ContactId, OrgId, SecretId};
use relay_observability::Metrics;
use relay_ports::{RepositoryError, Upserted};
use relay_usecase::{
    ContactInput, ContactPatch, ContactSearch, ManageError, Management, OrgChange, Principal,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use validator::Validate;

use super::guard::Caller;
use super::idempotency::{Answer, creating};
use super::json::{
    AuditJson, CallJson, ContactBody, ContactJson, ContactPatchBody, KeyJson, ListJson, NewKey,
    NewOrg, OrgJson, OrgPatch, SecretJson, WebhookSecretBody,
};
use crate::body::{parse, read_body, require_json};
use crate::error::{ApiError, FieldIssue};

/// Largest JSON body a management route reads.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// The error a management operation's failure is answered with.
pub(crate) fn api_error(error: ManageError) -> ApiError {
    match error {
        ManageError::Forbidden(why) => ApiError::Forbidden(why),
        ManageError::NotFound(_) => ApiError::NotFound,
        ManageError::Invalid { field, reason } => ApiError::InvalidRequest(vec![FieldIssue {
            field: Some(field.to_owned()),
            message: reason,
        }]),
        ManageError::ExternalIdTaken => ApiError::Conflict {
            code: "external_id_taken",
            detail: "another contact of this organization already has this external_id".into(),
        },
        ManageError::VersionMismatch(_) => ApiError::PreconditionFailed,
        ManageError::NotConfigured(why) => ApiError::Conflict {
            code: "not_configured",
            detail: why.to_owned(),
        },
        ManageError::Store(RepositoryError::Unavailable(error)) => {
            tracing::warn!(error = %error, "management request: store unavailable");
            ApiError::ServiceUnavailable
        }
        ManageError::Store(error @ RepositoryError::Unexpected(_)) => {
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "management request: unexpected data");
            ApiError::Internal
        }
    }
}

/// The answer of a management route, finished: rate-limit headers, log line, metrics.
pub(super) fn reply(
    req: &HttpRequest,
    caller: &Caller,
    route: &'static str,
    started: Instant,
    result: Result<HttpResponse, ApiError>,
) -> HttpResponse {
    let (mut response, outcome) = match result {
        Ok(response) => (response, "ok"),
        Err(error) => (error.error_response(), error.outcome()),
    };
    if let Some(limit) = caller.rate_limit {
        limit.apply(&mut response);
    }
    let status = response.status().as_u16();
    tracing::info!(
        method = %req.method(),
        route,
        status,
        outcome,
        actor = %caller.principal.actor,
        latency_ms = started.elapsed().as_secs_f64() * 1_000.0,
        "management request"
    );
    if let Some(metrics) = req.app_data::<web::Data<Metrics>>() {
        metrics.observe_request(route, status, outcome, started.elapsed());
    }
    response
}

/// Runs a route: `handle` gets the manager and the principal and returns the response.
macro_rules! route {
    ($req:expr, $caller:expr, $route:literal, $body:expr) => {{
        let started = Instant::now();
        let result: Result<HttpResponse, ApiError> = async { $body }.await;
        reply(&$req, &$caller, $route, started, result)
    }};
}

pub(super) fn manager(req: &HttpRequest) -> Result<web::Data<Management>, ApiError> {
    req.app_data::<web::Data<Management>>()
        .cloned()
        .ok_or(ApiError::Internal)
}

/// A path segment naming an id: one that is not an id names nothing (404).
pub(super) fn id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

async fn json_body<T: DeserializeOwned + Validate>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    require_json(req)?;
    let bytes = read_body(req, payload, MAX_ADMIN_BODY_BYTES).await?;
    parse(&bytes)
}

/// The body as it came (a creating request's, which its `Idempotency-Key` fingerprints).
async fn raw_body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, ApiError> {
    Ok(read_body(req, payload, MAX_ADMIN_BODY_BYTES)
        .await?
        .freeze())
}

fn json_from<T: DeserializeOwned + Validate>(
    req: &HttpRequest,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_json(req)?;
    parse(bytes)
}

fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::InvalidRequest(vec![FieldIssue {
                field: None,
                message: format!("query string: {e}"),
            }])
        })
}

/// `If-Match`: `None` for none or `*`; the version a strong `"<version>"` names. A tag that
/// can never match (weak, malformed, a list) is a 412.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed)?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or(ApiError::PreconditionFailed)
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn contact_response(status: StatusCode, contact: &relay_domain::ManagedContact) -> HttpResponse {
    let mut response = json(status, &ContactJson::from(contact));
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", contact.version)) {
        response.headers_mut().insert(ETAG, tag);
    }
    response
}

/// Where contact `id` of `org` is read.
fn contact_location(org: OrgId, id: relay_domain::ContactId) -> String {
    format!("/admin/v1/organizations/{org}/contacts/{id}")
}

fn with_location(mut response: HttpResponse, location: &str) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

// ---- organizations ----

pub(crate) async fn list_orgs(req: HttpRequest, caller: Caller) -> HttpResponse {
    route!(req, caller, "admin_organizations", {
        let orgs = manager(&req)?
            .list_organizations(&caller.principal)
            .await
            .map_err(api_error)?;
        Ok(json(
            StatusCode::OK,
            &ListJson {
                items: orgs.iter().map(OrgJson::from).collect(),
                next_cursor: None,
            },
        ))
    })
}

pub(crate) async fn create_org(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_organizations", {
        let bytes = raw_body(&req, payload).await?;
        let (req, caller) = (&req, &caller);
        creating(req, caller, bytes, Answer::Plain, |bytes| async move {
            let body: NewOrg = json_from(req, &bytes)?;
            let org = manager(req)?
                .create_organization(&caller.principal, &body.name, &body.default_region)
                .await
                .map_err(api_error)?;
            Ok(with_location(
                json(StatusCode::CREATED, &OrgJson::from(&org)),
                &format!("/admin/v1/organizations/{}", org.id),
            ))
        })
        .await
    })
}

pub(crate) async fn get_org(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_organization", {
        let org = manager(&req)?
            .organization(&caller.principal, id(&path)?)
            .await
            .map_err(api_error)?;
        Ok(json(StatusCode::OK, &OrgJson::from(&org)))
    })
}

pub(crate) async fn update_org(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_organization", {
        let org: OrgId = id(&path)?;
        let body: OrgPatch = json_body(&req, payload).await?;
        let memory = body.memory.unwrap_or_default();
        let change = OrgChange {
            name: body.name,
            default_region: body.default_region,
            unknown_caller_name: body.unknown_caller_name,
            memory_retention_days: memory.retention_days,
            memory_unknown_callers: memory.unknown_callers,
        };
        let org = manager(&req)?
            .update_organization(&caller.principal, org, change)
            .await
            .map_err(api_error)?;
        Ok(json(StatusCode::OK, &OrgJson::from(&org)))
    })
}

pub(crate) async fn delete_org(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_organization", {
        manager(&req)?
            .delete_organization(&caller.principal, id(&path)?)
            .await
            .map_err(api_error)?;
        Ok(HttpResponse::NoContent().finish())
    })
}

// ---- tool secrets, webhook secret ----

pub(crate) async fn list_secrets(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_secrets", {
        let secrets = manager(&req)?
            .list_secrets(&caller.principal, id(&path)?)
            .await
            .map_err(api_error)?;
        Ok(json(
            StatusCode::OK,
            &ListJson {
                items: secrets.iter().map(|s| SecretJson::new(s, None)).collect(),
                next_cursor: None,
            },
        ))
    })
}

pub(crate) async fn issue_secret(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_secrets", {
        let org: OrgId = id(&path)?;
        let bytes = raw_body(&req, payload).await?;
        creating(&req, &caller, bytes, Answer::HoldsSecret, |_| async {
            let issued = manager(&req)?
                .issue_secret(&caller.principal, org)
                .await
                .map_err(api_error)?;
            Ok(json(
                StatusCode::CREATED,
                &SecretJson::new(&issued.info, Some(issued.token.expose().to_owned())),
            ))
        })
        .await
    })
}

pub(crate) async fn revoke_secret(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    route!(req, caller, "admin_secret", {
        let (org, secret) = path.into_inner();
        let secret: SecretId = id(&secret)?;
        let info = manager(&req)?
            .revoke_secret(&caller.principal, id(&org)?, secret)
            .await
            .map_err(api_error)?;
        Ok(json(StatusCode::OK, &SecretJson::new(&info, None)))
    })
}

pub(crate) async fn set_webhook_secret(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_webhook_secret", {
        let org: OrgId = id(&path)?;
        let body: WebhookSecretBody = json_body(&req, payload).await?;
        manager(&req)?
            .set_webhook_secret(&caller.principal, org, &SecretString::from(body.secret))
            .await
            .map_err(api_error)?;
        Ok(HttpResponse::NoContent().finish())
    })
}

// ---- keys ----

async fn keys_of(
    req: &HttpRequest,
    principal: &Principal,
    org: Option<OrgId>,
) -> Result<HttpResponse, ApiError> {
    let keys = manager(req)?
        .list_keys(principal, org)
        .await
        .map_err(api_error)?;
    Ok(json(
        StatusCode::OK,
        &ListJson {
            items: keys.iter().map(|k| KeyJson::new(k, None)).collect(),
            next_cursor: None,
        },
    ))
}

async fn issue_key(
    req: &HttpRequest,
    caller: &Caller,
    org: Option<OrgId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = raw_body(req, payload).await?;
    creating(
        req,
        caller,
        bytes,
        Answer::HoldsSecret,
        |bytes| async move {
            let body: NewKey = json_from(req, &bytes)?;
            let issued = manager(req)?
                .create_key(&caller.principal, org, &body.label)
                .await
                .map_err(api_error)?;
            Ok(json(
                StatusCode::CREATED,
                &KeyJson::new(&issued.info, Some(issued.token.expose().to_owned())),
            ))
        },
    )
    .await
}

pub(crate) async fn list_operator_keys(req: HttpRequest, caller: Caller) -> HttpResponse {
    route!(req, caller, "admin_keys", {
        keys_of(&req, &caller.principal, None).await
    })
}

pub(crate) async fn create_operator_key(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_keys", {
        issue_key(&req, &caller, None, payload).await
    })
}

pub(crate) async fn list_org_keys(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_keys", {
        keys_of(&req, &caller.principal, Some(id(&path)?)).await
    })
}

pub(crate) async fn create_org_key(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_keys", {
        issue_key(&req, &caller, Some(id(&path)?), payload).await
    })
}

pub(crate) async fn revoke_key(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_key", {
        let key: ApiKeyId = id(&path)?;
        let info = manager(&req)?
            .revoke_key(&caller.principal, key)
            .await
            .map_err(api_error)?;
        Ok(json(StatusCode::OK, &KeyJson::new(&info, None)))
    })
}

// ---- contacts ----

fn input(body: ContactBody) -> ContactInput {
    ContactInput {
        first_name: body.first_name,
        last_name: body.last_name,
        phone: body.phone,
        external_id: body.external_id,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactListQuery {
    phone: Option<String>,
    name: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list_contacts(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_contacts", {
        let org: OrgId = id(&path)?;
        let q: ContactListQuery = query(&req)?;
        let page = manager(&req)?
            .list_contacts(
                &caller.principal,
                org,
                ContactSearch {
                    phone: q.phone,
                    name: q.name,
                    cursor: q.cursor,
                    limit: q.limit,
                },
            )
            .await
            .map_err(api_error)?;
        Ok(json(
            StatusCode::OK,
            &ListJson {
                items: page.items.iter().map(ContactJson::from).collect(),
                next_cursor: page.next_cursor,
            },
        ))
    })
}

pub(crate) async fn create_contact(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_contacts", {
        let org: OrgId = id(&path)?;
        let bytes = raw_body(&req, payload).await?;
        let (req, caller) = (&req, &caller);
        creating(req, caller, bytes, Answer::Plain, |bytes| async move {
            let body: ContactBody = json_from(req, &bytes)?;
            let contact = manager(req)?
                .create_contact(&caller.principal, org, input(body))
                .await
                .map_err(api_error)?;
            Ok(with_location(
                contact_response(StatusCode::CREATED, &contact),
                &contact_location(org, contact.contact.id),
            ))
        })
        .await
    })
}

pub(crate) async fn get_contact(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    route!(req, caller, "admin_contact", {
        let (org, contact) = path.into_inner();
        let contact: ContactId = id(&contact)?;
        let found = manager(&req)?
            .contact(&caller.principal, id(&org)?, contact)
            .await
            .map_err(api_error)?;
        Ok(contact_response(StatusCode::OK, &found))
    })
}

pub(crate) async fn update_contact(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_contact", {
        let (org, contact) = path.into_inner();
        let (org, contact): (OrgId, ContactId) = (id(&org)?, id(&contact)?);
        let expected = if_match(&req)?;
        let body: ContactPatchBody = json_body(&req, payload).await?;
        let patch = ContactPatch {
            first_name: body.first_name,
            last_name: body.last_name,
            phone: body.phone,
            external_id: body.external_id,
        };
        let updated = manager(&req)?
            .update_contact(&caller.principal, org, contact, patch, expected)
            .await
            .map_err(api_error)?;
        Ok(contact_response(StatusCode::OK, &updated))
    })
}

pub(crate) async fn delete_contact(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    route!(req, caller, "admin_contact", {
        let (org, contact) = path.into_inner();
        let (org, contact): (OrgId, ContactId) = (id(&org)?, id(&contact)?);
        let expected = if_match(&req)?;
        manager(&req)?
            .delete_contact(&caller.principal, org, contact, expected)
            .await
            .map_err(api_error)?;
        Ok(HttpResponse::NoContent().finish())
    })
}

pub(crate) async fn put_contact(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    route!(req, caller, "admin_contact_by_external_id", {
        let (org, external_id) = path.into_inner();
        let org: OrgId = id(&org)?;
        let expected = if_match(&req)?;
        let body: ContactBody = json_body(&req, payload).await?;
        if body
            .external_id
            .as_deref()
            .is_some_and(|e| e != external_id)
        {
            return Err(ApiError::InvalidRequest(vec![FieldIssue {
                field: Some("external_id".into()),
                message: "differs from the external id in the path".into(),
            }]));
        }
        let (contact, outcome) = manager(&req)?
            .put_contact(&caller.principal, org, &external_id, input(body), expected)
            .await
            .map_err(api_error)?;
        let status = match outcome {
            Upserted::Created => StatusCode::CREATED,
            Upserted::Updated | Upserted::Unchanged => StatusCode::OK,
        };
        Ok(with_location(
            contact_response(status, &contact),
            &contact_location(org, contact.contact.id),
        ))
    })
}

// ---- calls, audit ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallListQuery {
    since: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list_calls(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> HttpResponse {
    route!(req, caller, "admin_calls", {
        let org: OrgId = id(&path)?;
        let q: CallListQuery = query(&req)?;
        let page = manager(&req)?
            .list_calls(
                &caller.principal,
                org,
                q.since,
                q.cursor.as_deref(),
                q.limit,
            )
            .await
            .map_err(api_error)?;
        Ok(json(
            StatusCode::OK,
            &ListJson {
                items: page.items.iter().map(CallJson::from).collect(),
                next_cursor: page.next_cursor,
            },
        ))
    })
}

pub(crate) async fn get_call(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    route!(req, caller, "admin_call", {
        let (org, call) = path.into_inner();
        let call: CallId = id(&call)?;
        let record = manager(&req)?
            .call(&caller.principal, id(&org)?, call)
            .await
            .map_err(api_error)?;
        Ok(json(StatusCode::OK, &CallJson::from(&record)))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    org: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn audit(req: HttpRequest, caller: Caller) -> HttpResponse {
    route!(req, caller, "admin_audit", {
        let q: AuditQuery = query(&req)?;
        let org = q
            .org
            .as_deref()
            .map(|raw| {
                raw.parse::<OrgId>().map_err(|_| {
                    ApiError::InvalidRequest(vec![FieldIssue {
                        field: Some("org".into()),
                        message: "not an organization id".into(),
                    }])
                })
            })
            .transpose()?;
        let page = manager(&req)?
            .audit_trail(&caller.principal, org, q.cursor.as_deref(), q.limit)
            .await
            .map_err(api_error)?;
        Ok(json(
            StatusCode::OK,
            &ListJson {
                items: page.items.iter().map(AuditJson::from).collect(),
                next_cursor: page.next_cursor,
            },
        ))
    })
}
