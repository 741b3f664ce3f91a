//! The two personalization routes, one use case:
//!
//! - `POST /api/webhook/elevenlabs/personalization`: our contract (conversation id required,
//!   the variables of a match or `{}`).
//! - `POST /api/webhook/elevenlabs/conversation-initiation`: ElevenLabs' own Twilio/SIP
//!   "conversation initiation client data" webhook (call sid, no conversation id), answering
//!   `{"type":"conversation_initiation_client_data","dynamic_variables":{...},"user_id":"..."}`
//!   with the full variable set every time, and the matched contact's id as `user_id` (so
//!   ElevenLabs groups a person's conversations; never a number or a name).
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
use relay_usecase::{
    Answer, AnswerOutcome, DependencyFailure, MemoryOutcome, PersonalizationRequest,
    PersonalizeCall,
};
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
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

fn render_initiation(answer: &Answer) -> HttpResponse {
    HttpResponse::Ok().json(InitiationResponse {
        r#type: "conversation_initiation_client_data",
        dynamic_variables: answer.initiation_variables(),
        user_id: answer.user_id(),
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
        Ok((_, answer)) => ((route.render)(answer), answer.outcome().as_str()),
        Err(error) => (crate::error::refusal_response(error, &req), error.outcome()),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe_request(route.path, status, outcome, elapsed);
    if let Ok((_, answer)) = &result
        && let Some(memory) = answer.memory
    {
        metrics.observe_memory(route.path, memory.as_str());
    }
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
    let degraded = answer.outcome() == AnswerOutcome::Degraded;
    let outcome = answer.outcome().as_str();
    let store = answer.store_failure.map(DependencyFailure::as_str);
    let cache = answer.cache_failure.map(DependencyFailure::as_str);
    let org_id = answer.org_id().map(|id| id.to_string());
    let memory = answer.memory.map(MemoryOutcome::as_str);
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
                memory,
                latency_ms,
                "personalization answered"
            )
        };
    }
    if degraded {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;
    use crate::body::tests::{contract_id_pattern, contract_patterns};

    fn is_400(error: &ApiError) -> bool {
        matches!(
            error,
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_)
        )
    }

    /// Text of every length the rules care about, with and without forbidden characters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9_+()-]{0,4}",
            "[a-z_0-9\\s\\p{Cc}\\p{Zs}]{1,6}",
            // Either side of each limit, in characters of one to four bytes.
            (
                prop::sample::select(&[1usize, 63, 64, 65, 255, 256, 257][..]),
                "[a-z\u{e9}\u{1F600}]",
            )
                .prop_map(|(n, c)| c.repeat(n)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
            6 => text().prop_map(Value::String),
            1 => prop::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
            1 => Just(Value::Object(Map::new())),
        ]
    }

    const FIELDS: [&str; 6] = [
        "conversation_id",
        "call_sid",
        "caller_id",
        "called_id",
        "called_number",
        "agent_id",
    ];

    /// A body both routes accept, with up to three of its fields replaced by anything (or
    /// removed), and other properties beside: each case differs from a valid request in a few
    /// places, so one wrong rule is enough to tell the server from the contract.
    fn body() -> impl Strategy<Value = Map<String, Value>> {
        let changes = prop::collection::vec(
            (
                prop::sample::select(&FIELDS[..]),
                prop::option::weighted(0.9, value()),
            ),
            1..=3,
        );
        let extra = prop::collection::vec((any::<String>(), value()), 0..3);
        (changes, extra).prop_map(|(changes, extra)| {
            let mut body: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [
                ("conversation_id", "conv_1"),
                ("call_sid", "CA1"),
                ("caller_id", "+14165550100"),
                ("called_id", "+12362320246"),
                ("called_number", "+12362320246"),
                ("agent_id", "agent_1"),
            ] {
                body.insert(name.into(), value.into());
            }
            for (name, value) in changes {
                match value {
                    Some(value) => body.insert(name.into(), value),
                    None => body.remove(name),
                };
            }
            body
        })
    }

    /// docs/openapi.yaml's rule for an optional string property: absent, null, or a string of
    /// `min..=max` characters matching `pattern`.
    fn optional_text(
        body: &Map<String, Value>,
        name: &str,
        min: usize,
        max: usize,
        id: bool,
    ) -> bool {
        match body.get(name) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => {
                (min..=max).contains(&s.chars().count())
                    && (!id || contract_id_pattern().is_match(s))
            }
            Some(_) => false,
        }
    }

    /// `ElevenLabsPersonalizationRequest`, as the contract states it.
    fn contract_accepts(body: &Map<String, Value>) -> bool {
        body.get("conversation_id").is_some_and(Value::is_string)
            && optional_text(body, "conversation_id", 1, 256, true)
            && ["caller_id", "called_id", "called_number"]
                .iter()
                .all(|name| optional_text(body, name, 0, 64, false))
            && optional_text(body, "agent_id", 0, 256, false)
    }

    /// `ConversationInitiationRequest`, as the contract states it.
    fn initiation_accepts(body: &Map<String, Value>) -> bool {
        ["call_sid", "conversation_id"]
            .iter()
            .all(|name| optional_text(body, name, 1, 256, true))
            && ["caller_id", "called_number"]
                .iter()
                .all(|name| optional_text(body, name, 0, 64, false))
            && optional_text(body, "agent_id", 0, 256, false)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_a_request_or_a_400(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            for read in [read_contract, read_initiation] {
                if let Err(e) = read(&bytes) {
                    prop_assert!(is_400(&e), "{e:?}");
                }
            }
        }

        #[test]
        fn a_json_object_is_accepted_exactly_when_the_contract_says_so(body in body()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            for (route, read, accepts) in [
                ("personalization", read_contract as fn(&[u8]) -> Result<Fields, ApiError>, contract_accepts as fn(&Map<String, Value>) -> bool),
                ("conversation-initiation", read_initiation, initiation_accepts),
            ] {
                match read(&bytes) {
                    Ok(_) => prop_assert!(accepts(&body), "{route} accepted {body:?}"),
                    Err(e) => {
                        prop_assert!(is_400(&e), "{e:?}");
                        prop_assert!(!accepts(&body), "{route} refused {body:?}: {e:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn each_length_limit_is_the_contracts_in_characters() {
        for (name, _, _) in [
            ("conversation_id", 1, 256),
            ("call_sid", 1, 256),
            ("caller_id", 0, 64),
            ("called_id", 0, 64),
            ("called_number", 0, 64),
            ("agent_id", 0, 256),
        ] {
            for n in [0, 1, 63, 64, 65, 255, 256, 257] {
                for c in ["a", "\u{e9}", "\u{1F600}"] {
                    let mut body = Map::new();
                    body.insert("conversation_id".into(), "conv_1".into());
                    body.insert(name.into(), c.repeat(n).into());
                    let bytes = serde_json::to_vec(&body).unwrap();
                    assert_eq!(
                        read_contract(&bytes).is_ok(),
                        contract_accepts(&body),
                        "{name}: {n} x {c}"
                    );
                    assert_eq!(
                        read_initiation(&bytes).is_ok(),
                        initiation_accepts(&body),
                        "{name}: {n} x {c}"
                    );
                }
            }
        }
    }

    /// What docs/openapi.yaml says of JSON itself (its `info`).
    #[test]
    fn json_rules_the_contract_states() {
        let deep = format!(
            r#"{{"conversation_id":"c","x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for ignored in [
            r#"{"conversation_id":"c","x":1,"x":2}"#,
            r#"{"conversation_id":"c","x":1e400}"#,
            &deep,
        ] {
            assert!(read_contract(ignored.as_bytes()).is_ok(), "{ignored}");
        }
        for (body, code) in [
            (
                r#"{"conversation_id":"c","conversation_id":"d"}"#,
                "invalid_request",
            ),
            (r#"{"conversation_id":"c"} {}"#, "invalid_json"),
            (r#"{"conversation_id":"\ud800"}"#, "invalid_json"),
            ("\u{feff}{\"conversation_id\":\"c\"}", "invalid_json"),
        ] {
            let error = read_contract(body.as_bytes()).err();
            assert_eq!(
                error.as_ref().and_then(ApiError::code),
                Some(code),
                "{body}"
            );
        }
    }

    #[test]
    fn null_reads_as_absent_and_lengths_count_characters() {
        let nulls = br#"{"conversation_id":"c","caller_id":null,"called_id":null,"called_number":null,"agent_id":null,"call_sid":null}"#;
        assert!(read_contract(nulls).is_ok());
        assert!(read_initiation(nulls).is_ok());
        let wide = format!(
            r#"{{"conversation_id":"{}","caller_id":"{}"}}"#,
            "\u{1F600}".repeat(256),
            "\u{e9}".repeat(64)
        );
        assert!(read_contract(wide.as_bytes()).is_ok());
        assert!(read_initiation(wide.as_bytes()).is_ok());
    }

    fn caller_number_patterns() -> Vec<regex::Regex> {
        contract_patterns()
            .into_iter()
            .filter(|(owner, _)| owner == "caller_number")
            .map(|(_, pattern)| regex::Regex::new(&pattern).unwrap())
            .collect()
    }

    #[test]
    fn only_the_initiation_route_may_answer_an_empty_caller_number() {
        let patterns = caller_number_patterns();
        assert_eq!(
            patterns.len(),
            2,
            "the contract's and the initiation route's"
        );
        // The contract leaves a missing number out; the initiation route sends "".
        assert_eq!(patterns.iter().filter(|p| p.is_match("")).count(), 1);
    }

    proptest! {
        #[test]
        fn the_contract_caller_number_patterns_are_e164_as_the_server_writes_it(
            number in "[+]{0,2}[0-9\u{661}a ]{0,17}",
        ) {
            prop_assume!(!number.is_empty());
            let server = relay_domain::E164::parse_e164(&number).is_ok();
            for pattern in caller_number_patterns() {
                prop_assert_eq!(pattern.is_match(&number), server, "{:?} against {}", number, pattern);
            }
        }
    }
}
