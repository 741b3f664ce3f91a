//! `POST /api/webhook/elevenlabs`: ElevenLabs' post-call webhook.
//!
//! Credentials first: `Authorization: Bearer <tool secret>`, or `ElevenLabs-Signature` with the
//! organization named in the URL (`?org=<uuid>`); neither is 401 before the body is read. Then the
//! content type (415) and the body, bounded by [`MAX_POST_CALL_BODY_BYTES`] (413): recordings
//! (`post_call_audio`) are large base64 and are held in memory while verified. The use case verifies and records; the answer is
//!
//! - 200 `{"received":true,"call_id":"..."}` once the record is committed (the same id for a
//!   duplicate delivery);
//! - 200 `{"received":true}` for an event that is not stored (a recording, an unknown type);
//! - 202 `{"received":true,"queued":true}` when the store is down and the delivery waits in the
//!   durable outbox for replay;
//! - 401 / 400 / 503 in the error envelope otherwise.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use relay_domain::OrgId;
use relay_observability::Metrics;
use relay_usecase::post_call::{Credentials, Delivered, Delivery, RecordCall, Refused};
use serde::Serialize;

use crate::auth::bearer_token;
use crate::body::{read_body, require_json};
use crate::error::{ApiError, FieldIssue};

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
    large_bodies: web::Data<LargeBodies>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    let started = Instant::now();
    let result = respond(&req, payload, &record, &large_bodies).await;
    let (response, outcome) = match &result {
        Ok(delivered) => (render(delivered), delivered.outcome()),
        Err(error) => (
            actix_web::ResponseError::error_response(error),
            match error {
                ApiError::Unauthorized => "unauthorized",
                ApiError::ServiceUnavailable => "unavailable",
                _ => "invalid",
            },
        ),
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

/// The organization named in the query string (`?org=<uuid>`), for signed deliveries.
fn org_in_query(req: &HttpRequest) -> Option<OrgId> {
    req.query_string()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "org")
        .and_then(|(_, value)| value.parse().ok())
}

fn credentials(req: &HttpRequest) -> Result<Credentials, ApiError> {
    if let Some(token) = bearer_token(req) {
        return Ok(Credentials::Bearer {
            digest: token.digest(),
        });
    }
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let org = org_in_query(req).ok_or(ApiError::Unauthorized)?;
    Ok(Credentials::Signature {
        org,
        header: header.to_owned(),
    })
}

/// Bodies above this size (or of unknown size) are read under [`LargeBodies`].
const LARGE_BODY_BYTES: usize = 1024 * 1024;

/// How many large post-call bodies one process holds at once (each up to
/// [`MAX_POST_CALL_BODY_BYTES`]), so recordings cannot exhaust the memory limit.
const MAX_LARGE_BODIES: usize = 4;

/// How long a large body waits for its turn before the answer is 503.
const LARGE_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The permits of [`MAX_LARGE_BODIES`], one set per server, shared by its workers.
#[derive(Debug)]
pub(crate) struct LargeBodies(std::sync::Arc<tokio::sync::Semaphore>);

impl Default for LargeBodies {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(
            MAX_LARGE_BODIES,
        )))
    }
}

async fn respond(
    req: &HttpRequest,
    payload: web::Payload,
    record: &RecordCall,
    large_bodies: &LargeBodies,
) -> Result<Delivered, ApiError> {
    let received_at = chrono::Utc::now();
    let credentials = credentials(req)?;
    require_json(req)?;
    // Before the body is read: an unauthenticated sender must not make us buffer it.
    let prechecked = record
        .precheck(&credentials, received_at)
        .await
        .map_err(refusal)?;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let _permit = if declared.is_none_or(|n| n > LARGE_BODY_BYTES) {
        Some(
            tokio::time::timeout(LARGE_BODY_WAIT, Arc::clone(&large_bodies.0).acquire_owned())
                .await
                .map_err(|_| ApiError::ServiceUnavailable)?
                .map_err(|_| ApiError::ServiceUnavailable)?,
        )
    } else {
        None
    };
    let body = read_body(req, payload, MAX_POST_CALL_BODY_BYTES).await?;
    let delivery = Delivery {
        credentials,
        body: body.into(),
        received_at,
    };
    record.deliver(delivery, prechecked).await.map_err(refusal)
}

fn refusal(refused: Refused) -> ApiError {
    match refused {
        Refused::Unauthorized(reason) => {
            tracing::info!(reason, "post-call credentials refused");
            ApiError::Unauthorized
        }
        Refused::Invalid(e) => ApiError::InvalidRequest(vec![FieldIssue {
            field: None,
            message: e.0,
        }]),
        Refused::Unavailable => ApiError::ServiceUnavailable,
    }
}
