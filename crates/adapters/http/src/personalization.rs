//! The two personalization routes, one use case:
//!
//! - `POST /api/webhook/elevenlabs/personalization`: our contract (conversation id required,
//!   the variables of a match or `{}`).
//! - `POST /api/webhook/elevenlabs/conversation-initiation`: ElevenLabs' own Twilio/SIP
//!   "conversation initiation client data" webhook (call sid, no conversation id), answering
//!   `{"type":"conversation_initiation_client_data","dynamic_variables":{...}}` with the full
//!   variable set every time.
//!
//! Checks run cheapest first, and nothing a stranger sends is read before its token is checked:
//! credentials present (401), the client's failed-authentication budget (429), content type
//! (415), the token against the store (401, or 429 once the budget is spent); only then the body:
//! size (413), arrival rate (408), JSON (400), fields (400). The use case answers 200 whatever its
//! dependencies do.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use relay_domain::{CallSid, ConversationId, MAX_CONVERSATION_ID_CHARS, mask_phone};
use relay_observability::Metrics;
use relay_usecase::{Answer, DependencyFailure, PersonalizationRequest, PersonalizeCall};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::access::Access;
use crate::auth::bearer_token;
use crate::body::{no_whitespace_or_control, parse, read_body, require_json};
use crate::error::{ApiError, FieldIssue};

/// The route, as in the contract.
pub const PERSONALIZATION_PATH: &str = "/api/webhook/elevenlabs/personalization";

/// ElevenLabs' own conversation-initiation webhook route.
pub const INITIATION_PATH: &str = "/api/webhook/elevenlabs/conversation-initiation";

/// Largest body accepted: 64 KiB. A real one is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest phone-number field accepted, in characters.
const MAX_NUMBER_CHARS: u64 = 64;

/// Longest agent id accepted, in characters.
const MAX_AGENT_ID_CHARS: u64 = 256;

/// The request body of the contract (`ElevenLabsPersonalizationRequest`). Other properties are
/// allowed and ignored.
#[derive(Debug, Deserialize, Validate)]
struct ContractBody {
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

/// The body of ElevenLabs' Twilio/SIP initiation webhook. `call_sid` is the cache key; a
/// `conversation_id`, when sent, is a second one. Other properties are allowed and ignored.
#[derive(Debug, Deserialize, Validate)]
struct InitiationBody {
    #[validate(
        length(min = 1, max = 256, message = "must be 1 to 256 characters"),
        custom(function = "no_whitespace_or_control")
    )]
    call_sid: Option<String>,
    #[validate(
        length(min = 1, max = 256, message = "must be 1 to 256 characters"),
        custom(function = "no_whitespace_or_control")
    )]
    conversation_id: Option<String>,
    #[validate(length(max = MAX_NUMBER_CHARS, message = "must be at most 64 characters"))]
    caller_id: Option<String>,
    #[validate(length(max = MAX_NUMBER_CHARS, message = "must be at most 64 characters"))]
    called_number: Option<String>,
    #[validate(length(max = MAX_AGENT_ID_CHARS, message = "must be at most 256 characters"))]
    agent_id: Option<String>,
}

const _: () = assert!(
    MAX_CONVERSATION_ID_CHARS == 256,
    "keep the validator's limit in step"
);

/// What a route read from its body, before the use case.
struct Fields {
    conversation_id: Option<ConversationId>,
    call_sid: Option<CallSid>,
    caller_id: Option<String>,
    called_number: Option<String>,
    agent_id: Option<String>,
}

/// One personalization route: its path (metrics), how it reads its body and how it answers.
pub(crate) struct Route {
    path: &'static str,
    read: fn(&[u8]) -> Result<Fields, ApiError>,
    render: fn(&Answer) -> HttpResponse,
}

pub(crate) const CONTRACT: Route = Route {
    path: PERSONALIZATION_PATH,
    read: read_contract,
    render: |answer| HttpResponse::Ok().json(&answer.variables),
};

pub(crate) const INITIATION: Route = Route {
    path: INITIATION_PATH,
    read: read_initiation,
    render: render_initiation,
};

fn invalid_id(field: &str, e: relay_domain::ConversationIdError) -> ApiError {
    ApiError::InvalidRequest(vec![FieldIssue {
        field: Some(field.into()),
        message: e.to_string(),
    }])
}

fn read_contract(bytes: &[u8]) -> Result<Fields, ApiError> {
    let body: ContractBody = parse(bytes)?;
    Ok(Fields {
        // Validation above already enforced the same rules; the type re-checks them.
        conversation_id: Some(
            ConversationId::parse(body.conversation_id.unwrap_or_default())
                .map_err(|e| invalid_id("conversation_id", e))?,
        ),
        call_sid: None,
        caller_id: body.caller_id,
        called_number: body.called_id.or(body.called_number),
        agent_id: body.agent_id,
    })
}

fn read_initiation(bytes: &[u8]) -> Result<Fields, ApiError> {
    let body: InitiationBody = parse(bytes)?;
    Ok(Fields {
        conversation_id: body
            .conversation_id
            .map(ConversationId::parse)
            .transpose()
            .map_err(|e| invalid_id("conversation_id", e))?,
        call_sid: body
            .call_sid
            .map(CallSid::parse)
            .transpose()
            .map_err(|e| invalid_id("call_sid", e))?,
        caller_id: body.caller_id,
        called_number: body.called_number,
        agent_id: body.agent_id,
    })
}

/// ElevenLabs' response shape for its initiation webhook.
#[derive(Serialize)]
struct InitiationResponse {
    r#type: &'static str,
    dynamic_variables: relay_domain::InitiationVariables,
}

fn render_initiation(answer: &Answer) -> HttpResponse {
    HttpResponse::Ok().json(InitiationResponse {
        r#type: "conversation_initiation_client_data",
        dynamic_variables: answer.initiation_variables(),
    })
}

pub(crate) async fn contract(
    req: HttpRequest,
    payload: web::Payload,
    personalize: web::Data<PersonalizeCall>,
    access: web::Data<Access>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    serve(&CONTRACT, req, payload, &personalize, &access, &metrics).await
}

pub(crate) async fn initiation(
    req: HttpRequest,
    payload: web::Payload,
    personalize: web::Data<PersonalizeCall>,
    access: web::Data<Access>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    serve(&INITIATION, req, payload, &personalize, &access, &metrics).await
}

async fn serve(
    route: &Route,
    req: HttpRequest,
    payload: web::Payload,
    personalize: &PersonalizeCall,
    access: &Access,
    metrics: &Metrics,
) -> HttpResponse {
    let started = Instant::now();
    let client = access.client(&req);
    let result = respond(route, &req, payload, personalize, access, client).await;
    let (response, outcome) = match &result {
        Ok((_, answer)) => ((route.render)(answer), answer.outcome()),
        Err(error) => (crate::error::refusal_response(error, &req), error.outcome()),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe_request(route.path, status, outcome, elapsed);
    // The server span (tracing-actix-web's root span) is the current span here.
    tracing::Span::current().record("outcome", outcome);
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    match result {
        Ok((request_fields, answer)) => {
            log_answer(route.path, &request_fields, &answer, latency_ms);
        }
        Err(error) => {
            tracing::info!(
                target: "relay::request",
                route = route.path,
                outcome,
                status,
                code = error.code(),
                fields = ?invalid_fields(&error),
                client_ip = %client,
                latency_ms,
                "personalization request refused"
            );
        }
    }
    response
}

/// What the request log may say about a request: never the whole number, never a name.
struct LoggedRequest {
    conversation_id: Option<String>,
    call_sid: Option<String>,
    caller: Option<String>,
}

fn log_answer(path: &'static str, request: &LoggedRequest, answer: &Answer, latency_ms: f64) {
    let outcome = answer.outcome();
    let store = answer.store_failure.map(DependencyFailure::as_str);
    let cache = answer.cache_failure.map(DependencyFailure::as_str);
    let org_id = answer.org_id().map(|id| id.to_string());
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "relay::request",
                $level,
                route = path,
                outcome,
                status = 200u16,
                org_id,
                conversation_id = request.conversation_id.as_deref(),
                call_sid = request.call_sid.as_deref(),
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
    route: &Route,
    req: &HttpRequest,
    payload: web::Payload,
    personalize: &PersonalizeCall,
    access: &Access,
    client: std::net::IpAddr,
) -> Result<(LoggedRequest, Answer), ApiError> {
    let Some(token) = bearer_token(req) else {
        access.admit(client, false)?;
        return Err(ApiError::Unauthorized);
    };
    let admitted = access.admit(client, personalize.knows_token(&token.digest()))?;
    require_json(req)?;
    let authenticated = personalize
        .authenticate(&token)
        .await
        .map_err(|_| access.refuse(client, admitted))?;
    let bytes = read_body(req, payload, MAX_BODY_BYTES).await?;
    let fields = (route.read)(&bytes)?;

    let logged = LoggedRequest {
        conversation_id: fields.conversation_id.as_ref().map(ToString::to_string),
        call_sid: fields.call_sid.as_ref().map(ToString::to_string),
        caller: fields.caller_id.as_deref().map(mask_phone),
    };
    let request = PersonalizationRequest {
        conversation_id: fields.conversation_id,
        call_sid: fields.call_sid,
        caller_id: fields.caller_id,
        called_number: fields.called_number,
        agent_id: fields.agent_id,
    };
    let answer = personalize.answer(authenticated, request).await;
    Ok((logged, answer))
}
