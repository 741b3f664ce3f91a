//! `POST /api/webhook/elevenlabs/personalization`.
//!
//! Checks run cheapest first and each answers with its own status: credentials present (401),
//! content type (415), size (413), JSON (400), fields (400). Only then does the use case run, which
//! checks the token against the store (401) and answers 200 whatever its dependencies do.

use std::time::Instant;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use relay_domain::{ConversationId, MAX_CONVERSATION_ID_CHARS, mask_phone};
use relay_observability::Metrics;
use relay_usecase::{Answer, DependencyFailure, PersonalizationRequest, PersonalizeCall};
use serde::Deserialize;
use validator::{Validate, ValidationError};

use crate::auth::bearer_token;
use crate::error::{ApiError, FieldIssue};

/// The route, as in the contract.
pub const PERSONALIZATION_PATH: &str = "/api/webhook/elevenlabs/personalization";

/// Largest body accepted: 64 KiB. A real one is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest phone-number field accepted, in characters.
const MAX_NUMBER_CHARS: u64 = 64;

/// Longest agent id accepted, in characters.
const MAX_AGENT_ID_CHARS: u64 = 256;

/// The request body of the contract (`ElevenLabsPersonalizationRequest`). Other properties are
/// allowed and ignored.
#[derive(Debug, Deserialize, Validate)]
struct Body {
    #[validate(
        required(message = "is required"),
        length(min = 1, max = 256, message = "must be 1 to 256 characters"),
        custom(function = "no_whitespace_or_control")
    )]
    conversation_id: Option<String>,
    #[validate(length(max = MAX_NUMBER_CHARS, message = "must be at most 64 characters"))]
    caller_id: Option<String>,
    #[validate(length(max = MAX_NUMBER_CHARS, message = "must be at most 64 characters"))]
    called_id: Option<String>,
    /// ElevenLabs' own name for `called_id`; `called_id` wins when both are sent.
    #[validate(length(max = MAX_NUMBER_CHARS, message = "must be at most 64 characters"))]
    called_number: Option<String>,
    #[validate(length(max = MAX_AGENT_ID_CHARS, message = "must be at most 256 characters"))]
    agent_id: Option<String>,
}

const _: () = assert!(
    MAX_CONVERSATION_ID_CHARS == 256,
    "keep the validator's limit in step"
);

fn no_whitespace_or_control(value: &str) -> Result<(), ValidationError> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        let mut error = ValidationError::new("forbidden_character");
        error.message = Some("must not contain whitespace or control characters".into());
        return Err(error);
    }
    Ok(())
}

pub(crate) async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    personalize: web::Data<PersonalizeCall>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    let started = Instant::now();
    let result = respond(&req, payload, &personalize).await;
    let (response, outcome) = match &result {
        Ok((_, answer)) => (HttpResponse::Ok().json(&answer.variables), answer.outcome()),
        Err(error) => (
            actix_web::ResponseError::error_response(error),
            if *error == ApiError::Unauthorized {
                "unauthorized"
            } else {
                "invalid"
            },
        ),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe_request(PERSONALIZATION_PATH, status, outcome, elapsed);
    // The server span (tracing-actix-web's root span) is the current span here.
    tracing::Span::current().record("outcome", outcome);
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    match result {
        Ok((request_fields, answer)) => {
            log_answer(&request_fields, &answer, latency_ms);
        }
        Err(error) => {
            tracing::info!(
                target: "relay::request",
                outcome,
                status = actix_web::ResponseError::status_code(&error).as_u16(),
                code = error.code(),
                fields = ?invalid_fields(&error),
                latency_ms,
                "personalization request refused"
            );
        }
    }
    response
}

/// What the request log may say about a request: never the whole number, never a name.
struct LoggedRequest {
    conversation_id: String,
    caller: Option<String>,
}

fn log_answer(request: &LoggedRequest, answer: &Answer, latency_ms: f64) {
    let outcome = answer.outcome();
    let store = answer.store_failure.map(DependencyFailure::as_str);
    let cache = answer.cache_failure.map(DependencyFailure::as_str);
    let org_id = answer.org_id.map(|id| id.to_string());
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "relay::request",
                $level,
                outcome,
                status = 200u16,
                org_id,
                conversation_id = %request.conversation_id,
                caller = request.caller.as_deref(),
                match_result = ?answer.matched,
                store_failure = store,
                cache_failure = cache,
                latency_ms,
                "personalization answered"
            )
        };
    }
    if outcome == "degraded" {
        event!(tracing::Level::WARN);
    } else {
        event!(tracing::Level::INFO);
    }
}

fn invalid_fields(error: &ApiError) -> Vec<&str> {
    match error {
        ApiError::InvalidRequest(issues) => {
            issues.iter().filter_map(|i| i.field.as_deref()).collect()
        }
        _ => Vec::new(),
    }
}

async fn respond(
    req: &HttpRequest,
    payload: web::Payload,
    personalize: &PersonalizeCall,
) -> Result<(LoggedRequest, Answer), ApiError> {
    let token = bearer_token(req).ok_or(ApiError::Unauthorized)?;
    require_json(req)?;
    let bytes = read_body(req, payload).await?;
    let body = parse(&bytes)?;

    let conversation_id = body.conversation_id.unwrap_or_default();
    let logged = LoggedRequest {
        conversation_id: conversation_id.clone(),
        caller: body.caller_id.as_deref().map(mask_phone),
    };
    let request = PersonalizationRequest {
        token,
        // Validation above already enforced the same rules; the type re-checks them.
        conversation_id: ConversationId::parse(conversation_id).map_err(|e| {
            ApiError::InvalidRequest(vec![FieldIssue {
                field: Some("conversation_id".into()),
                message: e.to_string(),
            }])
        })?,
        caller_id: body.caller_id,
        called_number: body.called_id.or(body.called_number),
        agent_id: body.agent_id,
    };
    let answer = personalize
        .personalize(request)
        .await
        .map_err(|_| ApiError::Unauthorized)?;
    Ok((logged, answer))
}

fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let mime = req
        .mime_type()
        .map_err(|_| ApiError::UnsupportedMediaType)?;
    match mime {
        Some(m)
            if m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")) =>
        {
            Ok(())
        }
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::InvalidJson(FieldIssue {
                field: None,
                message: format!("the body could not be read: {e}"),
            })
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
    // serde would also read a struct from a JSON array; the contract wants an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(e) => ApiError::InvalidJson(FieldIssue {
                    field: None,
                    message: e.to_string(),
                }),
                Ok(_) => ApiError::InvalidRequest(vec![FieldIssue {
                    field: None,
                    message: "the body must be a JSON object".into(),
                }]),
            },
        );
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let body: Body = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let issue = FieldIssue {
            field: (path != ".").then_some(path),
            message: inner.to_string(),
        };
        if inner.is_data() {
            ApiError::InvalidRequest(vec![issue])
        } else {
            ApiError::InvalidJson(issue)
        }
    })?;
    body.validate().map_err(|errors| {
        let mut issues: Vec<FieldIssue> = errors
            .field_errors()
            .into_iter()
            .flat_map(|(field, errs)| {
                errs.iter().map(move |e| FieldIssue {
                    field: Some(field.to_string()),
                    message: e.message.as_deref().unwrap_or(&e.code).to_owned(),
                })
            })
            .collect();
        issues.sort_by(|a, b| a.field.cmp(&b.field));
        ApiError::InvalidRequest(issues)
    })?;
    Ok(body)
}
