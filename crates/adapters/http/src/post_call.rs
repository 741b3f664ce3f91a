//! `POST /api/webhook/elevenlabs`: ElevenLabs' post-call webhook.
//!
//! Credentials first: `Authorization: Bearer <tool secret>`, or `ElevenLabs-Signature` with the
//! organization named in the URL (`?org=<uuid>`); neither is 401 (429 once the client failed too
//! often) before the body is read. Then the content type (415), the credentials against the store
//! (401, or 503 `unverifiable` when the store is down and this replica has not seen them
//! confirmed recently), and only then the body: bounded by [`MAX_POST_CALL_BODY_BYTES`] (413), a
//! minimum arrival rate (408) and a memory budget shared per organization (503 when it stays
//! full). Recordings (`post_call_audio`) are large base64 and are held in memory while their
//! signature is verified. The use case verifies and records; the answer is
//!
//! - 200 `{"received":true,"call_id":"..."}` once the record is committed (the same id for a
//!   duplicate delivery);
//! - 200 `{"received":true}` for an event that is not stored (a recording, an unknown type);
//! - 202 `{"received":true,"queued":true}` when the store is down and the delivery waits in the
//!   durable outbox for replay;
//! - 401 / 429 / 400 / 408 / 413 / 415 / 503 in the error envelope otherwise.

use std::time::Instant;

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use relay_domain::OrgId;
use relay_observability::Metrics;
use relay_usecase::post_call::{Credentials, Delivered, Delivery, RecordCall, Refused};
use serde::Serialize;

use crate::access::{Access, Admitted};
use crate::auth::bearer_token;
use crate::body::{BodyReader, declared_length, require_json};
use crate::error::{ApiError, FieldIssue};
use crate::memory::BodyMemory;

/// The route.
pub const POST_CALL_PATH: &str = "/api/webhook/elevenlabs";

/// Largest post-call body accepted: 16 MiB. A transcription is kilobytes; a `post_call_audio`
/// recording is base64 MP3 (about 6 MiB for 10 minutes) and is only acknowledged, so a longer
/// one is refused with 413 rather than held in memory (docs/elevenlabs.md recommends leaving
/// audio delivery off).
pub const MAX_POST_CALL_BODY_BYTES: usize = 16 * 1024 * 1024;

/// ElevenLabs' signature header.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("elevenlabs-signature");

#[derive(Serialize)]
struct Received {
    received: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    queued: bool,
}

pub(crate) async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    record: web::Data<RecordCall>,
    memory: web::Data<BodyMemory>,
    access: web::Data<Access>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    let started = Instant::now();
    let client = access.client(&req);
    let result = respond(&req, payload, &record, &memory, &access, client).await;
    let (response, outcome) = match &result {
        Ok(delivered) => (render(delivered), delivered.outcome()),
        Err(error) => (crate::error::refusal_response(error, &req), error.outcome()),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe_request(POST_CALL_PATH, status, outcome, elapsed);
    tracing::Span::current().record("outcome", outcome);
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    match &result {
        Ok(Delivered::Recorded {
            call_id,
            org_id,
            contact_id,
            ..
        }) => tracing::info!(
            target: "relay::request",
            route = POST_CALL_PATH,
            outcome,
            status,
            org_id = %org_id,
            call_id = %call_id,
            linked_to_contact = contact_id.is_some(),
            latency_ms,
            "post-call webhook recorded"
        ),
        Ok(Delivered::Acknowledged(event_type)) => tracing::info!(
            target: "relay::request",
            route = POST_CALL_PATH,
            outcome,
            status,
            event_type = event_type.as_str(),
            latency_ms,
            "post-call webhook acknowledged, nothing stored"
        ),
        Ok(Delivered::Queued) => tracing::warn!(
            target: "relay::request",
            route = POST_CALL_PATH,
            outcome,
            status,
            latency_ms,
            "post-call webhook queued for replay: the store is down"
        ),
        Err(error) => tracing::warn!(
            target: "relay::request",
            route = POST_CALL_PATH,
            outcome,
            status,
            code = error.code(),
            client_ip = %client,
            latency_ms,
            "post-call webhook refused"
        ),
    }
    response
}

fn render(delivered: &Delivered) -> HttpResponse {
    match delivered {
        Delivered::Recorded { call_id, .. } => HttpResponse::Ok().json(Received {
            received: true,
            call_id: Some(call_id.to_string()),
            queued: false,
        }),
        Delivered::Acknowledged(_) => HttpResponse::Ok().json(Received {
            received: true,
            call_id: None,
            queued: false,
        }),
        Delivered::Queued => HttpResponse::Accepted().json(Received {
            received: true,
            call_id: None,
            queued: true,
        }),
    }
}

/// The organization named in the query string (`?org=<uuid>`, for signed deliveries): at most
/// once, and a UUID in its hyphenated form. Other parameters are ignored.
fn org_in_query(req: &HttpRequest) -> Result<Option<OrgId>, ApiError> {
    let invalid = |message: &str| {
        ApiError::InvalidRequest(vec![FieldIssue {
            field: Some("org".into()),
            message: message.into(),
        }])
    };
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|_| invalid("the query string is not form-encoded"))?;
    let mut values = pairs.iter().filter(|(name, _)| name == "org");
    let Some((_, value)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("must be given once"));
    }
    let hyphenated = value.len() == 36 && value.bytes().filter(|b| *b == b'-').count() == 4;
    match value.parse::<OrgId>() {
        Ok(org) if hyphenated => Ok(Some(org)),
        _ => Err(invalid("must be an organization id (a UUID)")),
    }
}

fn credentials(req: &HttpRequest, org: Option<OrgId>) -> Option<Credentials> {
    if let Some(token) = bearer_token(req) {
        return Some(Credentials::Bearer {
            digest: token.digest(),
        });
    }
    let header = req.headers().get(SIGNATURE_HEADER)?.to_str().ok()?;
    Some(Credentials::Signature {
        org: org?,
        header: header.to_owned(),
    })
}

/// At most this many bytes of post-call bodies are held at once per server, while they are
/// read and verified: four of the largest (recordings).
const BODY_MEMORY: usize = 4 * MAX_POST_CALL_BODY_BYTES;

/// At most this much of [`BODY_MEMORY`] for the deliveries of one organization.
const BODY_MEMORY_PER_ORG: usize = 2 * MAX_POST_CALL_BODY_BYTES;

impl Default for BodyMemory {
    fn default() -> Self {
        Self::new(BODY_MEMORY, BODY_MEMORY_PER_ORG)
    }
}

async fn respond(
    req: &HttpRequest,
    payload: web::Payload,
    record: &RecordCall,
    memory: &BodyMemory,
    access: &Access,
    client: std::net::IpAddr,
) -> Result<Delivered, ApiError> {
    let received_at = chrono::Utc::now();
    let org = org_in_query(req)?;
    let Some(credentials) = credentials(req, org) else {
        access.admit(client, false)?;
        return Err(ApiError::Unauthorized);
    };
    let admitted = access.admit(client, record.knows(&credentials))?;
    require_json(req)?;
    // Before the body is read: an unauthenticated sender must not make us buffer it.
    let prechecked = record
        .precheck(&credentials, received_at)
        .await
        .map_err(|refused| refusal(refused, access, client, admitted))?;
    let reader = BodyReader::new(req, payload, MAX_POST_CALL_BODY_BYTES)?;
    let (body, _room) = memory
        .read(prechecked.org_id(), reader, declared_length(req))
        .await?;
    let delivery = Delivery {
        credentials,
        body: body.into(),
        received_at,
    };
    record
        .deliver(delivery, prechecked)
        .await
        .map_err(|refused| refusal(refused, access, client, admitted))
}

fn refusal(
    refused: Refused,
    access: &Access,
    client: std::net::IpAddr,
    admitted: Admitted,
) -> ApiError {
    match refused {
        Refused::Unauthorized(reason) => {
            tracing::info!(reason = %reason, client_ip = %client, "post-call credentials refused");
            access.refuse(client, admitted)
        }
        Refused::Unverifiable => ApiError::Unverifiable,
        Refused::Invalid(e) => ApiError::InvalidRequest(vec![FieldIssue {
            field: None,
            message: e.0,
        }]),
        Refused::Unavailable => ApiError::ServiceUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    use super::*;
    use crate::body::tests::contract_patterns;

    fn org_pattern() -> regex::Regex {
        let patterns: Vec<String> = contract_patterns()
            .into_iter()
            .filter(|(owner, _)| owner == "org")
            .map(|(_, pattern)| pattern)
            .collect();
        assert_eq!(patterns.len(), 1, "{patterns:?}");
        regex::Regex::new(&patterns[0]).unwrap()
    }

    fn org_of(query: &str) -> Result<Option<OrgId>, ApiError> {
        org_in_query(&TestRequest::with_uri(&format!("{POST_CALL_PATH}?{query}")).to_http_request())
    }

    fn is_invalid_org(error: &ApiError) -> bool {
        matches!(error, ApiError::InvalidRequest(issues)
            if issues.len() == 1 && issues[0].field.as_deref() == Some("org"))
    }

    /// Bytes percent-encoded where a URI's query could not carry them as they are; `%` itself
    /// is kept, so invalid escapes reach the parser too.
    fn query_text(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// Values close to an organization id: UUIDs in every case, cut, grown, braced, simple.
    fn org_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string()),
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n)
                .hyphenated()
                .to_string()
                .to_uppercase()),
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).urn().to_string()),
            "[0-9a-fA-F-]{30,40}",
            "[0-9a-fA-FxXgG]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}",
        ]
    }

    proptest! {
        #[test]
        fn any_query_gives_an_org_nothing_or_a_400_naming_org(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            if let Err(e) = org_of(&query_text(&bytes)) {
                prop_assert!(is_invalid_org(&e), "{e:?}");
            }
        }

        // The contract's pattern for `org` is the server's rule.
        #[test]
        fn an_org_is_accepted_exactly_when_the_contract_pattern_matches(
            value in org_value(),
            // Other parameters, never a second `org` (refused on purpose, tested below).
            others in "(&[a-z]{1,5}=[a-z0-9]{0,5}){0,2}".prop_filter("not org", |s| {
                !s.split('&').any(|pair| pair.split('=').next() == Some("org"))
            }),
        ) {
            let query = format!("org={}{others}", query_text(value.as_bytes()));
            match org_of(&query) {
                Ok(Some(org)) => {
                    prop_assert!(org_pattern().is_match(&value), "{value:?} accepted");
                    prop_assert_eq!(org.to_string(), value.to_lowercase());
                }
                Ok(None) => prop_assert!(false, "org={value:?} ignored"),
                Err(e) => {
                    prop_assert!(is_invalid_org(&e), "{e:?}");
                    prop_assert!(!org_pattern().is_match(&value), "{value:?} refused");
                }
            }
        }
    }

    #[test]
    fn org_is_given_at_most_once_and_other_parameters_are_ignored() {
        let id = "0190a1b2-0000-7000-8000-000000000001";
        assert!(org_of("").unwrap().is_none());
        assert!(org_of("x=1&y").unwrap().is_none());
        assert_eq!(
            org_of(&format!("a=1&org={id}&b"))
                .unwrap()
                .unwrap()
                .to_string(),
            id
        );
        assert!(is_invalid_org(
            &org_of(&format!("org={id}&org={id}")).unwrap_err()
        ));
        assert!(is_invalid_org(&org_of("org=").unwrap_err()));
        assert!(is_invalid_org(&org_of("org").unwrap_err()));
    }
}
