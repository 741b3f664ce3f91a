//! ElevenLabs' own routes through actix-web's test service, on the real use cases over in-memory
//! fakes: the conversation-initiation webhook (full variable set, call-sid context) and the
//! post-call webhook (signature, idempotency, correlation, outbox).

use crate::world::{WEBHOOK_SECRET, World, world};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use relay_http::{INITIATION_PATH, PERSONALIZATION_PATH, POST_CALL_PATH, test_app};
use relay_ports::fakes::Behaviour;
use relay_usecase::post_call::sign;
use serde_json::{Value, json};

const TRANSCRIPTION: &str =
    include_str!("../../../usecase/tests/fixtures/elevenlabs/post_call_transcription.json");
const INITIATION_FAILURE: &str =
    include_str!("../../../usecase/tests/fixtures/elevenlabs/call_initiation_failure.json");
const AUDIO: &str = include_str!("../../../usecase/tests/fixtures/elevenlabs/post_call_audio.json");
const INITIATION: &str =
    include_str!("../../../usecase/tests/fixtures/elevenlabs/conversation_initiation.json");

/// The fixture's call sid and conversation id.
const CALL_SID: &str = "CA5f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c";
const CONVERSATION: &str = "conv_01jz8q3w4e5r6t7y8u9i0o1p2a";

async fn send(world: &World, req: TestRequest) -> (StatusCode, Value) {
    let app = test::init_service(test_app(world.webhooks(), world.operations.clone())).await;
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let bytes = test::read_body(res).await;
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
    (status, body)
}

fn initiation(token: &str, body: &Value) -> TestRequest {
    TestRequest::post()
        .uri(INITIATION_PATH)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .set_json(body)
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A post-call delivery signed like ElevenLabs does, to `?org=` of the world's organization.
fn signed(world: &World, body: &[u8], secret: &str, t: i64) -> TestRequest {
    signed_with(world, body, &sign(body, secret.as_bytes(), t))
}

fn signed_with(world: &World, body: &[u8], header: &str) -> TestRequest {
    TestRequest::post()
        .uri(&format!("{POST_CALL_PATH}?org={}", world.org.id))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("ElevenLabs-Signature", header.to_owned()))
        .set_payload(body.to_vec())
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

// ---- conversation initiation ----

#[actix_web::test]
async fn initiation_answers_the_full_set_for_a_known_caller_and_caches_by_call_sid() {
    let w = world();
    let (status, body) = send(&w, initiation(w.token.expose(), &fixture(INITIATION))).await;
    assert_eq!(status, StatusCode::OK);
    let (ctx, ttl) = w
        .cache
        .entry_by_call_sid(CALL_SID)
        .expect("cached by call sid");
    assert_eq!(
        body,
        json!({
            "type": "conversation_initiation_client_data",
            "dynamic_variables": {
                "caller_name": "Alex Morgan",
                "caller_first_name": "Alex",
                "caller_last_name": "Morgan",
                "caller_number": "+14165550100",
                "org_name": "Acme Corp",
                "is_known_caller": true,
                "is_returning_caller": false,
                "previous_calls": 0,
                "last_call_at": "",
                "last_call_ago": "",
                "last_call_summary": "",
                "last_call_outcome": "",
                "missed_calls_since_last": 0
            },
            "user_id": ctx.contact_id.expect("matched").to_string()
        }),
        "the memory set (memory is on by default) and the contact's id as user_id"
    );
    assert_eq!(ttl.as_secs(), 86_400);
    assert_eq!(ctx.org_id, w.org.id);
    assert!(ctx.contact_id.is_some());
    assert_eq!(
        ctx.conversation_id, None,
        "ElevenLabs sends no conversation id here"
    );
}

#[actix_web::test]
async fn initiation_answers_the_full_set_with_the_fallback_for_an_unknown_caller() {
    let w = world();
    w.store.set_unknown_caller_name(w.org.id, "there");
    let mut body = fixture(INITIATION);
    body["caller_id"] = json!("+14165550199");
    body["conversation_id"] = json!("conv_unknown_1");
    let (status, answer) = send(&w, initiation(w.token.expose(), &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["dynamic_variables"],
        json!({
            "caller_name": "there",
            "caller_first_name": "there",
            "caller_last_name": "",
            "caller_number": "+14165550199",
            "org_name": "Acme Corp",
            "is_known_caller": false,
            "is_returning_caller": false,
            "previous_calls": 0,
            "last_call_at": "",
            "last_call_ago": "",
            "last_call_summary": "",
            "last_call_outcome": "",
            "missed_calls_since_last": 0
        })
    );
    assert!(answer.get("user_id").is_none(), "no user id for a stranger");
    assert!(
        w.cache.entry("conv_unknown_1").is_some(),
        "also by conversation id"
    );
    assert!(w.cache.entry_by_call_sid(CALL_SID).is_some());
}

#[actix_web::test]
async fn initiation_fails_open_with_every_variable_when_the_store_is_down() {
    let w = world();
    w.store.set_behaviour(Behaviour::Down);
    let (status, answer) = send(&w, initiation(w.token.expose(), &fixture(INITIATION))).await;
    assert_eq!(status, StatusCode::OK);
    let vars = answer["dynamic_variables"].as_object().unwrap();
    assert_eq!(
        vars.len(),
        13,
        "names, number, org and the neutral memory: {vars:?}"
    );
    assert_eq!(vars["is_known_caller"], json!(false));
    assert_eq!(vars["is_returning_caller"], json!(false));
    assert!(
        vars.values()
            .all(|v| v.is_string() || v.is_boolean() || v.is_u64()),
        "only strings, booleans and counts: {vars:?}"
    );
}

#[actix_web::test]
async fn initiation_refuses_a_bad_token_and_a_bad_call_sid() {
    let w = world();
    let (status, body) = send(&w, initiation("not-a-token", &fixture(INITIATION))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"error": "Unauthorized"}));
    let mut bad = fixture(INITIATION);
    bad["call_sid"] = json!("CA 1");
    let (status, body) = send(&w, initiation(w.token.expose(), &bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["field"], "call_sid");
}

// ---- post-call: signatures ----

#[actix_web::test]
async fn a_signed_delivery_is_recorded_and_answers_its_call_id() {
    let w = world();
    let body = TRANSCRIPTION.as_bytes();
    let (status, answer) = send(&w, signed(&w, body, WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let records = w.store.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        answer,
        json!({"received": true, "call_id": records[0].id.to_string()})
    );
    let r = &records[0];
    assert_eq!(r.conversation_id.as_str(), CONVERSATION);
    assert_eq!(r.call_sid.as_ref().unwrap().as_str(), CALL_SID);
    assert_eq!(r.duration_secs, Some(81));
    assert_eq!(r.call_successful.as_deref(), Some("success"));
    assert_eq!(r.direction.as_deref(), Some("inbound"));
}

#[actix_web::test]
async fn bad_signatures_are_refused_and_store_nothing() {
    let w = world();
    let body = TRANSCRIPTION.as_bytes();
    let t = now();
    let tampered = TRANSCRIPTION.replace("\"success\"", "\"failure\"");
    let good = sign(body, WEBHOOK_SECRET.as_bytes(), t);
    for (case, req) in [
        ("wrong secret", signed(&w, body, "wsec_not_the_one", t)),
        ("tampered body", signed_with(&w, tampered.as_bytes(), &good)),
        (
            "31 minutes old",
            signed(&w, body, WEBHOOK_SECRET, t - 31 * 60),
        ),
        ("malformed header", signed_with(&w, body, "v0=abc,t=")),
        (
            "no organization in the URL",
            TestRequest::post()
                .uri(POST_CALL_PATH)
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("ElevenLabs-Signature", good.clone()))
                .set_payload(body.to_vec()),
        ),
        (
            "no credentials at all",
            TestRequest::post()
                .uri(POST_CALL_PATH)
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body.to_vec()),
        ),
    ] {
        let (status, answer) = send(&w, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        assert_eq!(answer, json!({"error": "Unauthorized"}), "{case}");
    }
    assert!(w.store.records().is_empty());
    assert!(w.outbox.entries().is_empty());
}

#[actix_web::test]
async fn the_bearer_tool_secret_is_accepted_too() {
    let w = world();
    let req = TestRequest::post()
        .uri(POST_CALL_PATH)
        .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(TRANSCRIPTION);
    let (status, answer) = send(&w, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["call_id"].is_string());
    assert_eq!(w.store.records().len(), 1);
}

// ---- post-call: idempotency ----

#[actix_web::test]
async fn a_duplicate_delivery_answers_the_same_call_id_and_changes_nothing() {
    let w = world();
    let body = TRANSCRIPTION.as_bytes();
    let (_, first) = send(&w, signed(&w, body, WEBHOOK_SECRET, now())).await;
    let before = w.store.records();
    let mut changed = fixture(TRANSCRIPTION);
    changed["data"]["analysis"]["transcript_summary"] = json!("a second, different summary");
    let (status, second) = send(&w, signed(&w, &bytes(&changed), WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first, second);
    assert_eq!(w.store.records(), before, "the duplicate changed nothing");
}

#[actix_web::test]
async fn concurrent_duplicate_deliveries_store_one_record() {
    let w = world();
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    let body = TRANSCRIPTION.as_bytes();
    let t = now();
    let answers = futures_util::future::join_all(
        (0..16).map(|_| test::call_service(&app, signed(&w, body, WEBHOOK_SECRET, t).to_request())),
    )
    .await;
    let mut ids = Vec::new();
    for res in answers {
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = test::read_body_json(res).await;
        ids.push(v["call_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every delivery answers the one record's id");
    assert_eq!(w.store.records().len(), 1);
}

// ---- post-call: correlation ----

#[actix_web::test]
async fn correlation_by_conversation_id_uses_the_contact_matched_at_the_start() {
    let w = world();
    // The contract route caches the context by conversation id.
    let personalize = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
        .set_json(json!({"conversation_id": CONVERSATION, "caller_id": "(416) 555-0100"}));
    assert_eq!(send(&w, personalize).await.0, StatusCode::OK);
    let matched = w.cache.entry(CONVERSATION).unwrap().0.contact_id;
    assert!(matched.is_some());
    // The post-call payload carries no usable number: only the context can link it.
    let mut event = fixture(TRANSCRIPTION);
    event["data"]["metadata"]["phone_call"]["external_number"] = json!("anonymous");
    event["data"]["metadata"]["phone_call"]["call_sid"] = json!("CA_other");
    let (status, _) = send(&w, signed(&w, &bytes(&event), WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.store.records()[0].contact_id, matched);
}

#[actix_web::test]
async fn correlation_by_call_sid_uses_the_contact_matched_by_the_initiation_route() {
    let w = world();
    assert_eq!(
        send(&w, initiation(w.token.expose(), &fixture(INITIATION)))
            .await
            .0,
        StatusCode::OK
    );
    let matched = w.cache.entry_by_call_sid(CALL_SID).unwrap().0.contact_id;
    assert!(matched.is_some());
    let mut event = fixture(TRANSCRIPTION);
    event["data"]["metadata"]["phone_call"]["external_number"] = json!("anonymous");
    let (status, _) = send(&w, signed(&w, &bytes(&event), WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.store.records()[0].contact_id, matched);
}

#[actix_web::test]
async fn after_the_context_expired_the_caller_is_matched_by_number() {
    let w = world();
    assert!(
        w.cache.is_empty(),
        "no initiation: as if the context expired"
    );
    let (status, _) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let record = &w.store.records()[0];
    assert!(record.contact_id.is_some(), "Alex, by +14165550100");

    let mut stranger = fixture(TRANSCRIPTION);
    stranger["data"]["conversation_id"] = json!("conv_stranger");
    stranger["data"]["metadata"]["phone_call"]["external_number"] = json!("+14165550199");
    send(&w, signed(&w, &bytes(&stranger), WEBHOOK_SECRET, now())).await;
    assert_eq!(
        w.store.records()[1].contact_id,
        None,
        "an unknown number links nothing"
    );
}

// ---- post-call: event types, limits, outbox ----

#[actix_web::test]
async fn a_failed_initiation_is_a_missed_call_and_audio_is_acknowledged_unstored() {
    let w = world();
    let (status, answer) = send(
        &w,
        signed(&w, INITIATION_FAILURE.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let missed = &w.store.records()[0];
    assert_eq!(missed.kind, relay_domain::CallKind::Missed);
    assert_eq!(missed.status.as_deref(), Some("no-answer"));
    assert!(missed.contact_id.is_some(), "matched by Twilio's From");

    let (status, answer) = send(&w, signed(&w, AUDIO.as_bytes(), WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"received": true}));
    assert_eq!(w.store.records().len(), 1, "the recording is not stored");
}

#[actix_web::test]
async fn an_oversized_body_is_413_and_a_signed_non_event_is_400() {
    let w = world();
    let huge = vec![b' '; relay_http::MAX_POST_CALL_BODY_BYTES + 1];
    let (status, answer) = send(&w, signed(&w, &huge, WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["code"], "payload_too_large");
    let (status, answer) = send(&w, signed(&w, b"[1,2,3]", WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "invalid_request");
}

/// A delivery while the store is up, so this replica has seen it confirm the organization's
/// webhook secret (a recording: acknowledged, nothing stored).
async fn seen_recently(w: &World) {
    let (status, _) = send(w, signed(w, AUDIO.as_bytes(), WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn with_the_store_down_a_delivery_is_queued_and_replayed_later() {
    let w = world();
    seen_recently(&w).await;
    w.store.set_behaviour(Behaviour::Down);
    let (status, answer) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer, json!({"received": true, "queued": true}));
    assert_eq!(w.outbox.entries().len(), 1);
    assert!(w.store.records().is_empty());

    let report = w.record_call().replay_queued(10).await.unwrap();
    assert!(report.store_down, "still down: nothing replayed");
    assert_eq!(w.outbox.entries().len(), 1, "and nothing lost");

    w.store.set_behaviour(Behaviour::Healthy);
    let report = w.record_call().replay_queued(10).await.unwrap();
    assert_eq!((report.replayed, report.rejected), (1, 0));
    assert!(w.outbox.entries().is_empty());
    assert_eq!(w.store.records().len(), 1);
    assert_eq!(w.store.records()[0].conversation_id.as_str(), CONVERSATION);
}

#[actix_web::test]
async fn a_hung_store_is_treated_as_down_within_the_budget() {
    let w = world();
    seen_recently(&w).await;
    w.store
        .set_behaviour(Behaviour::Slow(std::time::Duration::from_secs(60)));
    let started = std::time::Instant::now();
    let (status, _) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "queued, not left hanging");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered within the 300 ms budget (generous margin): {:?}",
        started.elapsed()
    );
    assert_eq!(w.outbox.entries().len(), 1);
}

#[actix_web::test]
async fn with_the_store_and_the_outbox_down_the_delivery_is_refused_with_503() {
    let w = world();
    seen_recently(&w).await;
    w.store.set_behaviour(Behaviour::Down);
    w.outbox.set_behaviour(Behaviour::Down);
    let (status, answer) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer["code"], "unavailable");
    assert!(w.outbox.entries().is_empty());
}

#[actix_web::test]
async fn a_context_without_a_contact_falls_back_to_the_number() {
    let w = world();
    // A withheld caller id at call start: a context, but no contact in it.
    let personalize = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
        .set_json(json!({"conversation_id": CONVERSATION, "caller_id": "anonymous"}));
    send(&w, personalize).await;
    assert_eq!(w.cache.entry(CONVERSATION).unwrap().0.contact_id, None);
    let (status, _) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        w.store.records()[0].contact_id.is_some(),
        "Alex, by the number the post-call payload carries"
    );
}

#[actix_web::test]
async fn credentials_are_checked_before_a_large_body_is_read() {
    let w = world();
    let huge = vec![b' '; relay_http::MAX_POST_CALL_BODY_BYTES + 1];
    let bad_token = TestRequest::post()
        .uri(POST_CALL_PATH)
        .insert_header(("Authorization", "Bearer not-a-token"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(huge.clone());
    assert_eq!(send(&w, bad_token).await.0, StatusCode::UNAUTHORIZED);
    let stale = signed(&w, &huge, WEBHOOK_SECRET, now() - 3_600);
    assert_eq!(send(&w, stale).await.0, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn while_the_store_is_down_only_verified_deliveries_are_queued() {
    let w = world();
    seen_recently(&w).await;
    w.store.set_behaviour(Behaviour::Down);
    let body = TRANSCRIPTION.as_bytes();
    let stale = signed(&w, body, WEBHOOK_SECRET, now() - 31 * 60);
    assert_eq!(send(&w, stale).await.0, StatusCode::UNAUTHORIZED);
    let malformed = signed_with(&w, body, "t=1,v0=xyz");
    assert_eq!(send(&w, malformed).await.0, StatusCode::UNAUTHORIZED);
    // The replica remembers the sealed secret, so a forged signature is caught now, not queued.
    let forged = signed(&w, body, "wsec_forged", now());
    assert_eq!(send(&w, forged).await.0, StatusCode::UNAUTHORIZED);
    let not_an_event = signed(&w, b"{\"hello\":1}", WEBHOOK_SECRET, now());
    assert_eq!(send(&w, not_an_event).await.0, StatusCode::BAD_REQUEST);
    let (status, answer) = send(&w, signed(&w, AUDIO.as_bytes(), WEBHOOK_SECRET, now())).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"received": true}))
    );
    assert!(w.outbox.entries().is_empty(), "none of these was queued");

    let (status, _) = send(&w, signed(&w, body, WEBHOOK_SECRET, now())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the genuine one is");
    assert_eq!(w.outbox.entries().len(), 1);
}

#[actix_web::test]
async fn while_the_store_is_down_credentials_never_confirmed_are_refused_unread() {
    let w = world();
    w.store.set_behaviour(Behaviour::Down);
    // Never seen by this replica: neither the organization's secret nor this token.
    let (status, answer) = send(
        &w,
        signed(&w, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET, now()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer["code"], "unverifiable");
    let random_token = TestRequest::post()
        .uri(POST_CALL_PATH)
        .insert_header(("Authorization", "Bearer rlk_random_guess"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(TRANSCRIPTION);
    let (status, answer) = send(&w, random_token).await;
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unverifiable"))
    );
    let random_org = TestRequest::post()
        .uri(&format!(
            "{POST_CALL_PATH}?org=0190a1b2-0000-7000-8000-00000000dead"
        ))
        .insert_header(("Content-Type", "application/json"))
        .insert_header((
            "ElevenLabs-Signature",
            sign(TRANSCRIPTION.as_bytes(), b"guess", now()),
        ))
        .set_payload(TRANSCRIPTION);
    assert_eq!(
        send(&w, random_org).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        w.outbox.entries().is_empty(),
        "nothing unverified is queued"
    );
}

#[actix_web::test]
async fn the_org_parameter_is_one_hyphenated_uuid_or_the_request_is_invalid() {
    let w = world();
    let body = TRANSCRIPTION.as_bytes();
    let header = sign(body, WEBHOOK_SECRET.as_bytes(), now());
    let simple = w.org.id.to_string().replace('-', "");
    for query in [
        format!("org={simple}"),
        "org=not-a-uuid".to_owned(),
        format!("org={}&org={}", w.org.id, w.org.id),
        format!("org=%7B{}%7D", w.org.id),
    ] {
        let req = TestRequest::post()
            .uri(&format!("{POST_CALL_PATH}?{query}"))
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("ElevenLabs-Signature", header.clone()))
            .set_payload(body.to_vec());
        let (status, answer) = send(&w, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer["details"][0]["field"], "org", "{query}");
    }
    // Other parameters are ignored.
    let req = TestRequest::post()
        .uri(&format!("{POST_CALL_PATH}?utm=x&org={}", w.org.id))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("ElevenLabs-Signature", header))
        .set_payload(body.to_vec());
    assert_eq!(send(&w, req).await.0, StatusCode::OK);
    assert!(w.store.records().len() == 1);
}
