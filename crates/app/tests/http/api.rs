//! Every status and envelope of the webhook, through actix-web's test service, on the real use
//! case over in-memory fakes of the ports.

use std::time::Duration;

use crate::world::{World, world};
use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use actix_web::test::{self, TestRequest};
use relay_http::{INITIATION_PATH, MAX_BODY_BYTES, PERSONALIZATION_PATH, POST_CALL_PATH, test_app};
use relay_ports::fakes::Behaviour;
use serde_json::{Value, json};

/// Sends a request and returns status, headers and the body as JSON.
async fn send(
    world: &World,
    req: TestRequest,
) -> (StatusCode, actix_web::http::header::HeaderMap, Value) {
    let app = test::init_service(test_app(world.webhooks(), world.operations.clone())).await;
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = test::read_body(res).await;
    assert_eq!(
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "every answer is JSON"
    );
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
    (status, headers, body)
}

fn post(token: Option<&str>, body: &Value) -> TestRequest {
    let mut req = TestRequest::post().uri(PERSONALIZATION_PATH).set_json(body);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

fn call(caller: &str) -> Value {
    json!({
        "conversation_id": "conv_8f3d1b9c2e7a4f0b9a4d2c1e6e2f8c01",
        "caller_id": caller,
        "called_id": "+12362320246",
        "agent_id": "agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01"
    })
}

#[actix_web::test]
async fn known_caller_gets_name_number_and_org() {
    let w = world();
    let (status, _, body) = send(&w, post(Some(w.token.expose()), &call("(416) 555-0100"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "caller_name": "Alex Morgan",
            "caller_first_name": "Alex",
            "caller_last_name": "Morgan",
            "caller_number": "+14165550100",
            "org_name": "Acme Corp"
        })
    );
    let (ctx, ttl) = w
        .cache
        .entry("conv_8f3d1b9c2e7a4f0b9a4d2c1e6e2f8c01")
        .unwrap();
    assert_eq!(ttl, Duration::from_secs(86_400));
    assert_eq!(ctx.called_number.as_deref(), Some("+12362320246"));
}

#[actix_web::test]
async fn unknown_anonymous_and_missing_callers_get_exactly_an_empty_object() {
    let w = world();
    for caller in [
        Some("+14165550199"),
        Some("anonymous"),
        Some("+266696687"),
        Some(""),
        None,
    ] {
        let mut body = call("x");
        match caller {
            Some(c) => body["caller_id"] = json!(c),
            None => {
                body.as_object_mut().unwrap().remove("caller_id");
            }
        }
        let (status, _, answer) = send(&w, post(Some(w.token.expose()), &body)).await;
        assert_eq!(
            (status, &answer),
            (StatusCode::OK, &json!({})),
            "{caller:?}"
        );
    }
}

#[actix_web::test]
async fn every_authentication_failure_is_the_same_401() {
    let w = world();
    let revoked = w.store.add_secret(w.store.add_org("Other", "US").0.id);
    w.store.revoke(&revoked);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("other scheme", Some(format!("Basic {}", w.token.expose()))),
        ("empty bearer", Some("Bearer ".into())),
        ("unknown token", Some("Bearer not-a-real-token".into())),
        (
            "revoked token",
            Some(format!("Bearer {}", revoked.expose())),
        ),
    ];
    for (case, header) in cases {
        let mut req = TestRequest::post()
            .uri(PERSONALIZATION_PATH)
            .set_json(call("+14165550100"));
        if let Some(h) = header {
            req = req.insert_header(("Authorization", h));
        }
        let (status, headers, body) = send(&w, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(body, json!({"error": "Unauthorized"}), "{case}");
        assert_eq!(headers.get(WWW_AUTHENTICATE).unwrap(), "Bearer", "{case}");
    }
    assert_eq!(
        w.cache.puts(),
        0,
        "nothing is cached for an unauthenticated call"
    );
}

#[actix_web::test]
async fn bearer_scheme_is_case_insensitive() {
    let w = world();
    let req = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("bEaReR {}", w.token.expose())))
        .set_json(call("+14165550100"));
    let (status, _, body) = send(&w, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller_name"], "Alex Morgan");
}

async fn invalid(w: &World, body: Value) -> Value {
    let (status, _, answer) = send(w, post(Some(w.token.expose()), &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(answer["error"], "Invalid request");
    answer
}

fn fields(answer: &Value) -> Vec<String> {
    answer["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap_or("<body>").to_owned())
        .collect()
}

#[actix_web::test]
async fn invalid_fields_are_named_in_a_400() {
    let w = world();
    let cases = [
        (json!({"caller_id": "+14165550100"}), "conversation_id"),
        (json!({"conversation_id": ""}), "conversation_id"),
        (json!({"conversation_id": "a b"}), "conversation_id"),
        (json!({"conversation_id": "a\nb"}), "conversation_id"),
        (
            json!({"conversation_id": "x".repeat(257)}),
            "conversation_id",
        ),
        (json!({"conversation_id": null}), "conversation_id"),
        (json!({"conversation_id": 42}), "conversation_id"),
        (
            json!({"conversation_id": "c", "caller_id": "1".repeat(65)}),
            "caller_id",
        ),
        (
            json!({"conversation_id": "c", "caller_id": 14165550100u64}),
            "caller_id",
        ),
        (
            json!({"conversation_id": "c", "called_id": "1".repeat(65)}),
            "called_id",
        ),
        (
            json!({"conversation_id": "c", "called_number": "1".repeat(65)}),
            "called_number",
        ),
        (
            json!({"conversation_id": "c", "agent_id": "a".repeat(257)}),
            "agent_id",
        ),
    ];
    for (body, field) in cases {
        let answer = invalid(&w, body.clone()).await;
        assert_eq!(answer["code"], "invalid_request", "{body}");
        assert_eq!(fields(&answer), vec![field.to_owned()], "{body}");
        assert!(
            answer["details"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(w.cache.puts(), 0, "nothing is cached for an invalid call");
}

#[actix_web::test]
async fn limits_are_inclusive() {
    let w = world();
    let body = json!({"conversation_id": "x".repeat(256), "caller_id": "1".repeat(64), "agent_id": "a".repeat(256)});
    let (status, _, answer) = send(&w, post(Some(w.token.expose()), &body)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
}

#[actix_web::test]
async fn bodies_that_are_not_json_objects_are_400() {
    let w = world();
    for (raw, code) in [
        ("{\"conversation_id\": ", "invalid_json"),
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("[\"conv_1\"]", "invalid_request"),
        ("\"conv_1\"", "invalid_request"),
        ("null", "invalid_request"),
    ] {
        let req = TestRequest::post()
            .uri(PERSONALIZATION_PATH)
            .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
            .insert_header((CONTENT_TYPE, "application/json"))
            .set_payload(raw);
        let (status, _, body) = send(&w, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}");
        assert_eq!(body["error"], "Invalid request", "{raw:?}");
        assert_eq!(body["code"], code, "{raw:?}");
        assert!(body["details"].is_array(), "{raw:?}");
    }
}

#[actix_web::test]
async fn called_number_is_an_alias_and_extra_properties_are_ignored() {
    let w = world();
    let body = json!({
        "conversation_id": "conv_alias",
        "caller_id": "+14165550100",
        "called_number": "+12362320246",
        "call_sid": "CA123",
        "nested": {"anything": [1, 2, 3]}
    });
    let (status, _, answer) = send(&w, post(Some(w.token.expose()), &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["caller_name"], "Alex Morgan");
    let (ctx, _) = w.cache.entry("conv_alias").unwrap();
    assert_eq!(ctx.called_number.as_deref(), Some("+12362320246"));
}

#[actix_web::test]
async fn non_json_content_type_is_415() {
    let w = world();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = TestRequest::post()
            .uri(PERSONALIZATION_PATH)
            .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
            .set_payload(call("+14165550100").to_string());
        if let Some(ct) = content_type {
            req = req.insert_header((CONTENT_TYPE, ct));
        }
        let (status, _, body) = send(&w, req).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(
            body,
            json!({"error": "Unsupported media type", "code": "unsupported_media_type"})
        );
    }
    let req = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
        .insert_header((CONTENT_TYPE, "application/json; charset=utf-8"))
        .set_payload(call("+14165550100").to_string());
    assert_eq!(
        send(&w, req).await.0,
        StatusCode::OK,
        "charset parameter is fine"
    );
}

#[actix_web::test]
async fn body_over_64_kib_is_413() {
    let w = world();
    let mut body = call("+14165550100");
    body["padding"] = json!("x".repeat(MAX_BODY_BYTES));
    let (status, _, answer) = send(&w, post(Some(w.token.expose()), &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        answer,
        json!({"error": "Payload too large", "code": "payload_too_large"})
    );
}

#[actix_web::test]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let w = world();
    let (status, _, body) = send(&w, TestRequest::get().uri("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "Not found", "code": "not_found"}));

    // Every webhook route is POST only, and its 405 says so.
    for path in [PERSONALIZATION_PATH, INITIATION_PATH, POST_CALL_PATH] {
        for req in [
            TestRequest::get(),
            TestRequest::put(),
            TestRequest::delete(),
        ] {
            let (status, headers, body) = send(&w, req.uri(path)).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(headers.get(ALLOW).unwrap(), "POST", "{path}");
            assert_eq!(
                body,
                json!({"error": "Method not allowed", "code": "method_not_allowed"}),
                "{path}"
            );
        }
    }
}

#[actix_web::test]
async fn a_failing_store_still_answers_200_with_an_empty_object() {
    let w = world();
    w.store.set_behaviour(Behaviour::Down);
    let (status, _, body) = send(&w, post(Some(w.token.expose()), &call("+14165550100"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    // Even an unknown token: `{}` reveals nothing while the token cannot be checked.
    let (status, _, body) = send(&w, post(Some("unknown"), &call("+14165550100"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
}

#[actix_web::test]
async fn a_failing_cache_still_answers_the_variables() {
    let w = world();
    w.cache.set_behaviour(Behaviour::Down);
    let (status, _, body) = send(&w, post(Some(w.token.expose()), &call("+14165550100"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller_name"], "Alex Morgan");
}

// ---- abuse: what a hostile client gets ----

#[actix_web::test]
async fn failed_authentication_is_throttled_per_client_and_known_tokens_still_pass() {
    let w = world();
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    let attacker: std::net::SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let answer = |req: TestRequest| {
        let app = &app;
        async move {
            let res = test::call_service(app, req.to_request()).await;
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
            (status, retry_after, body)
        }
    };
    // A genuine caller seen before the attack, from the same address (a shared egress).
    let (status, _, _) =
        answer(post(Some(w.token.expose()), &call("4165550100")).peer_addr(attacker)).await;
    assert_eq!(status, StatusCode::OK);

    // That first call spent a unit (its token was new to this replica); the guesses get the rest.
    let burst = relay_http::ThrottleSettings::default().burst;
    for n in 1..burst {
        let (status, _, _) =
            answer(post(Some(&format!("rlk_guess_{n}")), &call("4165550100")).peer_addr(attacker))
                .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "guess {n} is within the burst"
        );
    }
    let (status, retry_after, body) =
        answer(post(Some("rlk_guess_next"), &call("4165550100")).peer_addr(attacker)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({"error": "Too many requests", "code": "too_many_requests"})
    );
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "Retry-After in whole seconds"
    );
    let (status, _, _) = answer(post(None, &call("4165550100")).peer_addr(attacker)).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "no credentials: same budget"
    );

    // The known token is answered from the throttled address; another address is not throttled.
    let (status, _, body) =
        answer(post(Some(w.token.expose()), &call("4165550100")).peer_addr(attacker)).await;
    assert_eq!(
        (status, &body["caller_name"]),
        (StatusCode::OK, &json!("Alex Morgan"))
    );
    let elsewhere: std::net::SocketAddr = "198.51.100.9:1234".parse().unwrap();
    let (status, _, _) =
        answer(post(Some("rlk_typo"), &call("4165550100")).peer_addr(elsewhere)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_wrong_token_is_refused_before_the_body_is_read_or_parsed() {
    let w = world();
    // 64 KB of invalid JSON behind a wrong token: 401, not a parser's 400.
    let req = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", "Bearer rlk_wrong"))
        .insert_header((CONTENT_TYPE, "application/json"))
        .set_payload(vec![b'x'; 64 * 1024]);
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.response().head().connection_type(),
        actix_web::http::ConnectionType::Close,
        "the unread body is not drained: the connection closes"
    );
    let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(body, json!({"error": "Unauthorized"}));
}

#[actix_web::test]
async fn a_json_object_followed_by_anything_else_is_invalid_json() {
    let w = world();
    for trailing in ["x", "{}", "]", "\"more\""] {
        let mut payload = serde_json::to_vec(&call("4165550100")).unwrap();
        payload.extend_from_slice(trailing.as_bytes());
        let req = TestRequest::post()
            .uri(PERSONALIZATION_PATH)
            .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
            .insert_header((CONTENT_TYPE, "application/json"))
            .set_payload(payload);
        let (status, _, body) = send(&w, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{trailing}");
        assert_eq!(body["code"], "invalid_json", "{trailing}");
    }
}
