//! The management API through actix-web's test service, on the service as `relay serve` wires it
//! over in-memory fakes: who reaches what, the conventions (envelope, ETag/If-Match, cursors,
//! rate-limit headers), and that a change is what the webhook answers from the next call on.

use std::net::SocketAddr;

use crate::world::{World, world, world_with};
use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, ETAG, HeaderMap, RETRY_AFTER};
use actix_web::test::{self, TestRequest};
use relay_domain::OrgId;
use relay_http::{PERSONALIZATION_PATH, admin_test_app, test_app};
use relay_usecase::Principal;
use serde_json::{Value, json};

const ADMIN: &str = "/admin/v1";

/// Sends a request to the management app; status, headers, body (JSON, or `null` for none).
async fn send(w: &World, req: TestRequest) -> (StatusCode, HeaderMap, Value) {
    let app = test::init_service(admin_test_app(w.service.management())).await;
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = test::read_body(res).await;
    if bytes.is_empty() {
        return (status, headers, Value::Null);
    }
    assert_eq!(
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "every answer with a body is JSON"
    );
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
    (status, headers, body)
}

fn with_key(req: TestRequest, key: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {key}")))
        .peer_addr("192.0.2.10:50000".parse::<SocketAddr>().unwrap())
}

/// A key of `org` (`None`: an operator key), as the CLI issues it.
async fn key(w: &World, org: Option<OrgId>) -> String {
    let issued = w
        .service
        .management()
        .manage
        .create_key(&Principal::CLI, org, "test")
        .await
        .expect("key");
    issued.token.expose().to_owned()
}

/// What the personalization webhook answers for this caller now.
async fn personalize(w: &World, caller: &str) -> Value {
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    let req = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
        .set_json(json!({
            "conversation_id": format!("conv_{}", caller.trim_start_matches('+')),
            "caller_id": caller,
            "called_id": "+12362320246",
            "agent_id": "agent_1"
        }));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    serde_json::from_slice(&test::read_body(res).await).unwrap()
}

#[actix_web::test]
async fn a_crm_sync_upserts_by_external_id_moves_a_number_deletes_and_the_webhook_follows() {
    let w = world();
    let key = key(&w, Some(w.org.id)).await;
    let org = w.org.id;
    let put = |ext: &str, body: Value| {
        with_key(
            TestRequest::put().uri(&format!(
                "{ADMIN}/organizations/{org}/contacts/by-external-id/{ext}"
            )),
            &key,
        )
        .set_json(body)
    };
    for (ext, first, phone) in [
        ("crm-1", "Ada", "(416) 555-0101"),
        ("crm-2", "Bob", "416 555 0102"),
        ("crm-3", "Cy", "+1 416 555 0103"),
    ] {
        let (status, headers, body) =
            send(&w, put(ext, json!({"first_name": first, "phone": phone}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers.get(ETAG).unwrap(), "\"1\"");
        assert_eq!(body["external_id"], ext);
        assert_eq!(body["version"], 1);
    }
    assert_eq!(personalize(&w, "+14165550101").await["caller_name"], "Ada");

    // The same data again: nothing changes, not even the version.
    let (status, headers, _) = send(
        &w,
        put(
            "crm-1",
            json!({"first_name": "Ada", "phone": "(416) 555-0101"}),
        ),
    )
    .await;
    assert_eq!(
        (status, headers.get(ETAG).unwrap().to_str().unwrap()),
        (StatusCode::OK, "\"1\"")
    );

    // Ada's number changed in the CRM: the same contact, the new number matches, the old not.
    let (status, headers, body) = send(
        &w,
        put(
            "crm-1",
            json!({"first_name": "Ada", "phone": "416 555 0111"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get(ETAG).unwrap(), "\"2\"");
    assert_eq!(personalize(&w, "+14165550111").await["caller_name"], "Ada");
    assert_eq!(personalize(&w, "+14165550101").await, json!({}));

    let bob = body_of_list(
        &w,
        &key,
        &format!("{ADMIN}/organizations/{org}/contacts?phone=4165550102"),
    )
    .await;
    let bob_id = bob[0]["id"].as_str().unwrap().to_owned();
    let (status, _, body) = send(
        &w,
        with_key(
            TestRequest::delete().uri(&format!("{ADMIN}/organizations/{org}/contacts/{bob_id}")),
            &key,
        ),
    )
    .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        personalize(&w, "+14165550102").await,
        json!({}),
        "deleted: matched no more"
    );
    let (status, _, body) = send(
        &w,
        with_key(
            TestRequest::get().uri(&format!("{ADMIN}/organizations/{org}/contacts/{bob_id}")),
            &key,
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    let trail = body_of_list(&w, &key, &format!("{ADMIN}/audit")).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "contact.delete",
            "contact.update",
            "contact.create",
            "contact.create",
            "contact.create",
            "key.create"
        ]
    );
}

async fn body_of_list(w: &World, key: &str, uri: &str) -> Vec<Value> {
    let (status, _, body) = send(w, with_key(TestRequest::get().uri(uri), key)).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body["items"].as_array().unwrap().clone()
}

/// Every route, with ids of `org` (a contact, a secret, a call, a key of it).
fn every_route(
    org: OrgId,
    contact: &str,
    secret: &str,
    call: &str,
    key: &str,
) -> Vec<(&'static str, String, Option<Value>)> {
    let o = format!("{ADMIN}/organizations/{org}");
    let contact_body = json!({"first_name": "Mal", "phone": "+14165550177"});
    vec![
        ("GET", o.clone(), None),
        ("PATCH", o.clone(), Some(json!({"name": "Taken"}))),
        ("DELETE", o.clone(), None),
        ("GET", format!("{o}/secrets"), None),
        ("POST", format!("{o}/secrets"), None),
        ("DELETE", format!("{o}/secrets/{secret}"), None),
        (
            "PUT",
            format!("{o}/webhook-secret"),
            Some(json!({"secret": "wsec_stolen"})),
        ),
        ("GET", format!("{o}/keys"), None),
        (
            "POST",
            format!("{o}/keys"),
            Some(json!({"label": "mine now"})),
        ),
        ("DELETE", format!("{ADMIN}/keys/{key}"), None),
        ("GET", format!("{o}/contacts"), None),
        ("POST", format!("{o}/contacts"), Some(contact_body.clone())),
        ("GET", format!("{o}/contacts/{contact}"), None),
        (
            "PATCH",
            format!("{o}/contacts/{contact}"),
            Some(json!({"first_name": "Mal"})),
        ),
        ("DELETE", format!("{o}/contacts/{contact}"), None),
        (
            "PUT",
            format!("{o}/contacts/by-external-id/crm-1"),
            Some(contact_body),
        ),
        (
            "POST",
            format!("{o}/contacts/import"),
            Some(json!("phone\n+14165550177\n")),
        ),
        ("GET", format!("{o}/calls"), None),
        ("GET", format!("{o}/calls/{call}"), None),
        ("GET", format!("{ADMIN}/audit?org={org}"), None),
    ]
}

fn request(method: &str, uri: &str, body: Option<Value>) -> TestRequest {
    let req = match method {
        "GET" => TestRequest::get(),
        "POST" => TestRequest::post(),
        "PUT" => TestRequest::put(),
        "PATCH" => TestRequest::patch(),
        "DELETE" => TestRequest::delete(),
        other => panic!("{other}"),
    }
    .uri(uri);
    match body {
        Some(body) => req.set_json(body),
        None => req,
    }
}

#[actix_web::test]
async fn every_route_refuses_another_organizations_key_and_changes_nothing() {
    let w = world();
    let victim = w.org.id;
    let manage = w.service.management().manage;
    let contact = manage
        .put_contact(
            &Principal::CLI,
            victim,
            "crm-1",
            relay_usecase::ContactInput {
                first_name: Some("Ada".into()),
                phone: "+14165550101".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .0;
    let secret = manage.list_secrets(&Principal::CLI, victim).await.unwrap()[0].clone();
    let victim_key = manage
        .create_key(&Principal::CLI, Some(victim), "theirs")
        .await
        .unwrap();
    let call = "00000000-0000-4000-8000-00000000002a"
        .parse::<relay_domain::CallId>()
        .unwrap();
    let other = manage
        .create_organization(&Principal::CLI, "Mallory Ltd", "GB")
        .await
        .unwrap();
    let attacker = key(&w, Some(other.id)).await;
    let trail_before = manage
        .audit_trail(&Principal::CLI, None, None, None)
        .await
        .unwrap()
        .items
        .len();
    let calls_before = w.store.calls();

    for (method, uri, body) in every_route(
        victim,
        &contact.contact.id.to_string(),
        &secret.id.to_string(),
        &call.to_string(),
        &victim_key.info.id.to_string(),
    ) {
        let (status, _, reply) = send(&w, with_key(request(method, &uri, body), &attacker)).await;
        if uri.contains("/keys/") {
            // A key is named by id alone: another organization's is "not found".
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {reply}");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {reply}");
            assert_eq!(reply["code"], "forbidden", "{method} {uri}");
        }
    }
    // Operator-only routes, naming nothing of the victim.
    for (method, uri, body) in [
        (
            "POST",
            format!("{ADMIN}/organizations"),
            Some(json!({"name": "X", "default_region": "CA"})),
        ),
        ("GET", format!("{ADMIN}/keys"), None),
        (
            "POST",
            format!("{ADMIN}/keys"),
            Some(json!({"label": "root"})),
        ),
    ] {
        let (status, _, reply) = send(&w, with_key(request(method, &uri, body), &attacker)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {reply}");
    }
    let (_, _, orgs) = send(
        &w,
        with_key(
            TestRequest::get().uri(&format!("{ADMIN}/organizations")),
            &attacker,
        ),
    )
    .await;
    assert_eq!(
        orgs["items"].as_array().unwrap().len(),
        1,
        "its own organization only: {orgs}"
    );
    assert_eq!(orgs["items"][0]["id"], other.id.to_string());
    // One key lookup per request; beyond that only the key named for revocation was read (to
    // find it is another organization's) and the attacker's own organization listed.
    let routes = every_route(victim, "", "", "", "").len();
    assert_eq!(w.store.calls() - calls_before, routes + 3 + 1 + 1 + 1);

    // Nothing changed: the contact, the secret, the key, the trail.
    assert_eq!(
        manage
            .contact(&Principal::CLI, victim, contact.contact.id)
            .await
            .unwrap(),
        contact
    );
    assert!(
        manage.list_secrets(&Principal::CLI, victim).await.unwrap()[0]
            .revoked_at
            .is_none()
    );
    assert!(
        manage
            .authenticate(&victim_key.token)
            .await
            .unwrap()
            .is_some()
    );
    let trail_after = manage
        .audit_trail(&Principal::CLI, None, None, None)
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(trail_after, trail_before, "no refusal is in the trail");
}

#[actix_web::test]
async fn an_operator_key_reaches_every_organization_and_creates_deletes_them() {
    let w = world();
    let op = key(&w, None).await;
    let (status, headers, created) = send(
        &w,
        with_key(
            TestRequest::post().uri(&format!("{ADMIN}/organizations")),
            &op,
        )
        .set_json(json!({"name": "Beta Clinic", "default_region": "GB"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        headers.get("location").unwrap().to_str().unwrap(),
        format!("{ADMIN}/organizations/{id}")
    );
    assert_eq!(
        created["memory"],
        json!({"retention_days": 90, "unknown_callers": false})
    );
    let (status, _, patched) = send(
        &w,
        with_key(
            TestRequest::patch().uri(&format!("{ADMIN}/organizations/{id}")),
            &op,
        )
        .set_json(json!({"unknown_caller_name": "there", "memory": {"retention_days": 30}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["unknown_caller_name"].as_str(),
            patched["memory"]["retention_days"].as_u64()
        ),
        (Some("there"), Some(30))
    );
    let (status, _, issued) = send(
        &w,
        with_key(
            TestRequest::post().uri(&format!("{ADMIN}/organizations/{id}/secrets")),
            &op,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(issued["token"].as_str().unwrap().len(), 43);
    let listed = body_of_list(&w, &op, &format!("{ADMIN}/organizations/{id}/secrets")).await;
    assert!(
        listed[0].get("token").is_none(),
        "a token is shown once: {listed:?}"
    );
    let (status, _, _) = send(
        &w,
        with_key(
            TestRequest::delete().uri(&format!("{ADMIN}/organizations/{id}")),
            &op,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(
        &w,
        with_key(
            TestRequest::get().uri(&format!("{ADMIN}/organizations/{id}")),
            &op,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn if_match_guards_changes_and_a_stale_version_changes_nothing() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let base = format!("{ADMIN}/organizations/{}/contacts", w.org.id);
    let (_, _, created) = send(
        &w,
        with_key(TestRequest::post().uri(&base), &k)
            .set_json(json!({"first_name": "Ada", "phone": "416 555 0101"})),
    )
    .await;
    let uri = format!("{base}/{}", created["id"].as_str().unwrap());
    for stale in ["\"7\"", "W/\"1\"", "garbage"] {
        let (status, _, body) = send(
            &w,
            with_key(TestRequest::patch().uri(&uri), &k)
                .insert_header(("If-Match", stale))
                .set_json(json!({"first_name": "Eve"})),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::PRECONDITION_FAILED, Some("precondition_failed")),
            "{stale}"
        );
    }
    let (status, headers, body) = send(
        &w,
        with_key(TestRequest::patch().uri(&uri), &k)
            .insert_header(("If-Match", "\"1\""))
            .set_json(json!({"first_name": "Eve", "last_name": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            headers.get(ETAG).unwrap().to_str().unwrap(),
            body["first_name"].as_str()
        ),
        ("\"2\"", Some("Eve"))
    );
    let (status, _, _) = send(
        &w,
        with_key(TestRequest::delete().uri(&uri), &k).insert_header(("If-Match", "\"1\"")),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _, body) = send(&w, with_key(TestRequest::get().uri(&uri), &k)).await;
    assert_eq!(
        (status, body["first_name"].as_str()),
        (StatusCode::OK, Some("Eve"))
    );
}

#[actix_web::test]
async fn contacts_page_by_cursor_and_search_by_any_number_format_or_name() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let base = format!("{ADMIN}/organizations/{}/contacts", w.org.id);
    for i in 0..4 {
        let (status, _, body) = send(
            &w,
            with_key(TestRequest::post().uri(&base), &k).set_json(
                json!({"first_name": format!("Zed{i}"), "phone": format!("416 555 020{i}")}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut names = Vec::new();
    let mut uri = format!("{base}?limit=2");
    loop {
        let (status, _, page) = send(&w, with_key(TestRequest::get().uri(&uri), &k)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["first_name"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("{base}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names.len(), 5, "the world's Alex and four more: {names:?}");
    let found = body_of_list(&w, &k, &format!("{base}?phone=%2B1%20(416)%20555-0202")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["first_name"], "Zed2");
    let found = body_of_list(&w, &k, &format!("{base}?name=zed")).await;
    assert_eq!(found.len(), 4);
    for bad in ["?limit=0", "?limit=abc", "?cursor=%21%21", "?sort=name"] {
        let (status, _, body) = send(
            &w,
            with_key(TestRequest::get().uri(&format!("{base}{bad}")), &k),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
}

#[actix_web::test]
async fn bad_requests_get_the_envelope_naming_the_field() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let base = format!("{ADMIN}/organizations/{}/contacts", w.org.id);
    let cases: Vec<(TestRequest, StatusCode, &str, Option<&str>)> = vec![
        (
            TestRequest::post()
                .uri(&base)
                .set_json(json!({"phone": "12"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("phone"),
        ),
        (
            TestRequest::post()
                .uri(&base)
                .set_json(json!({"phone": "+14165550100", "nick": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
        ),
        (
            TestRequest::post()
                .uri(&base)
                .set_json(json!({"phone": "+14165550100", "external_id": " x"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("external_id"),
        ),
        (
            TestRequest::post()
                .uri(&base)
                .insert_header(("content-type", "text/plain"))
                .set_payload("phone"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            TestRequest::post()
                .uri(&base)
                .insert_header(("content-type", "application/json"))
                .set_payload("{"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            TestRequest::put()
                .uri(&format!("{base}/by-external-id/a"))
                .set_json(json!({"phone": "+14165550100", "external_id": "b"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("external_id"),
        ),
        (
            TestRequest::get().uri(&format!("{base}/not-a-uuid")),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            TestRequest::put()
                .uri(&format!("{base}/by-external-id/%FF"))
                .set_json(json!({"phone": "+14165550100"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("external_id"),
        ),
        (
            TestRequest::post().uri(&format!(
                "{base}/{}",
                "00000000-0000-0000-0000-000000000000"
            )),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (req, status, code, field) in cases {
        let (got, headers, body) = send(&w, with_key(req, &k)).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        if let Some(field) = field {
            assert_eq!(body["details"][0]["field"], field, "{body}");
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(headers.get(ALLOW).unwrap(), "GET, PATCH, DELETE");
        }
    }
    let taken = json!({"phone": "+14165550100", "external_id": "dup"});
    send(
        &w,
        with_key(TestRequest::post().uri(&base).set_json(taken.clone()), &k),
    )
    .await;
    let (status, _, body) = send(
        &w,
        with_key(TestRequest::post().uri(&base).set_json(taken), &k),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_id_taken"))
    );
}

#[actix_web::test]
async fn wrong_keys_are_throttled_per_address_while_a_genuine_client_elsewhere_is_answered() {
    let w = world_with(&[
        ("AUTH_FAILURES_PER_MINUTE", "60"),
        ("AUTH_FAILURE_BURST", "5"),
    ]);
    let good = key(&w, Some(w.org.id)).await;
    let uri = format!("{ADMIN}/organizations/{}", w.org.id);
    let attacker: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let before = w.store.calls();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let req = TestRequest::get()
            .uri(&uri)
            .insert_header(("Authorization", format!("Bearer rmk_guess{i}")))
            .peer_addr(attacker);
        let (status, headers, body) = send(&w, req).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.get(RETRY_AFTER).is_some());
            assert_eq!(body["code"], "too_many_requests");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        statuses.push(status);
        // A genuine client at another address in the same moment.
        let (status, _, body) = send(&w, with_key(TestRequest::get().uri(&uri), &good)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        unauthorized <= 6,
        "{unauthorized} wrong keys were looked up"
    );
    // 40 genuine requests (a key lookup and a read each) and at most 6 lookups of wrong keys.
    assert!(
        w.store.calls() - before <= 80 + 6,
        "{} store calls",
        w.store.calls() - before
    );
    // Refusals happen before any route, and are counted all the same.
    let scrape = w.operations.metrics.render();
    for outcome in ["unauthorized", "throttled"] {
        assert!(
            scrape.lines().any(|l| l.contains("route=\"admin_auth\"")
                && l.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome} not counted"
        );
    }
    // A tool secret (no management prefix) is refused without a lookup, from a fresh address.
    let before = w.store.calls();
    let (status, _, body) = send(
        &w,
        TestRequest::get()
            .uri(&uri)
            .insert_header(("Authorization", format!("Bearer {}", w.token.expose())))
            .peer_addr("198.51.100.77:40000".parse::<SocketAddr>().unwrap()),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    assert_eq!(
        w.store.calls(),
        before,
        "no store call for a token without the prefix"
    );
}

#[actix_web::test]
async fn each_key_has_a_request_budget_announced_in_headers() {
    let w = world_with(&[
        ("ADMIN_REQUESTS_PER_MINUTE", "60"),
        ("ADMIN_REQUEST_BURST", "3"),
    ]);
    let k = key(&w, Some(w.org.id)).await;
    let other = key(&w, Some(w.org.id)).await;
    let uri = format!("{ADMIN}/organizations/{}", w.org.id);
    for remaining in (0..3).rev() {
        let (status, headers, _) = send(&w, with_key(TestRequest::get().uri(&uri), &k)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.get("ratelimit-limit").unwrap(), "3");
        assert_eq!(
            headers
                .get("ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap(),
            remaining.to_string()
        );
        assert!(headers.get("ratelimit-reset").is_some());
    }
    let (status, headers, body) = send(&w, with_key(TestRequest::get().uri(&uri), &k)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests"))
    );
    assert!(headers.get(RETRY_AFTER).is_some());
    let (status, _, _) = send(&w, with_key(TestRequest::get().uri(&uri), &other)).await;
    assert_eq!(status, StatusCode::OK, "another key has its own budget");
}

#[actix_web::test]
async fn a_webhook_secret_is_stored_sealed_and_never_echoed() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let uri = format!("{ADMIN}/organizations/{}/webhook-secret", w.org.id);
    let (status, _, body) = send(
        &w,
        with_key(
            TestRequest::put()
                .uri(&uri)
                .set_json(json!({"secret": "wsec_new_0123456789"})),
            &k,
        ),
    )
    .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, _, body) = send(
        &w,
        with_key(
            TestRequest::put()
                .uri(&uri)
                .set_json(json!({"secret": "two words"})),
            &k,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("two words"), "{body}");
}

#[actix_web::test]
async fn bulk_import_reads_csv_or_ndjson_reports_rows_and_refuses_before_reading() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let uri = format!("{ADMIN}/organizations/{}/contacts/import", w.org.id);
    let csv = "phone,first_name\n416 555 0301,Csv\nnope,Bad\n";
    let (status, _, report) = send(
        &w,
        with_key(
            TestRequest::post()
                .uri(&uri)
                .insert_header(("content-type", "text/csv"))
                .set_payload(csv),
            &k,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"rows": 2, "inserted": 1, "updated": 0, "unchanged": 0, "rejected_total": 1,
               "rejected": [{"line": 3, "reason": "phone is not a valid number (region CA)"}], "stopped": null})
    );
    let ndjson = "{\"phone\": \"416 555 0302\", \"first_name\": \"Nd\"}\n\n{\"phone\": 5}\n";
    let (status, _, report) = send(
        &w,
        with_key(
            TestRequest::post()
                .uri(&uri)
                .insert_header(("content-type", "application/x-ndjson"))
                .set_payload(ndjson),
            &k,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["inserted"].as_u64(),
            report["rejected"][0]["line"].as_u64()
        ),
        (Some(1), Some(3)),
        "{report}"
    );
    assert_eq!(personalize(&w, "+14165550302").await["caller_name"], "Nd");

    let (status, _, body) = send(
        &w,
        with_key(
            TestRequest::post()
                .uri(&uri)
                .insert_header(("content-type", "text/csv"))
                .set_payload("name\nx\n"),
            &k,
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "no phone column: {body}"
    );
    let (status, _, _) = send(
        &w,
        with_key(TestRequest::post().uri(&uri).set_json(json!([])), &k),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Another organization's key is refused before the body is read: nothing is imported.
    let other = w
        .service
        .management()
        .manage
        .create_organization(&Principal::CLI, "Other", "CA")
        .await
        .unwrap();
    let stranger = key(&w, Some(other.id)).await;
    let (status, _, _) = send(
        &w,
        with_key(
            TestRequest::post()
                .uri(&uri)
                .insert_header(("content-type", "text/csv"))
                .set_payload("phone\n4165550303\n"),
            &stranger,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(personalize(&w, "+14165550303").await, json!({}));
}

#[actix_web::test]
async fn an_idempotency_key_replays_the_first_answer_and_creates_once() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let other_client = key(&w, Some(w.org.id)).await;
    let base = format!("{ADMIN}/organizations/{}/contacts", w.org.id);
    let create = |key: &str, idem: &str, phone: &str| {
        with_key(TestRequest::post().uri(&base), key)
            .insert_header(("Idempotency-Key", idem.to_owned()))
            .set_json(json!({"first_name": "Ida", "phone": phone}))
    };
    let (status, headers, first) = send(&w, create(&k, "order-7", "416 555 0401")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, replayed_headers, again) = send(&w, create(&k, "order-7", "416 555 0401")).await;
    assert_eq!(
        (status, &again),
        (StatusCode::CREATED, &first),
        "the first answer, again"
    );
    assert_eq!(replayed_headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replayed_headers.get("location"), headers.get("location"));
    assert_eq!(replayed_headers.get(ETAG), headers.get(ETAG));
    let found = body_of_list(&w, &k, &format!("{base}?phone=4165550401")).await;
    assert_eq!(found.len(), 1, "created once: {found:?}");

    let (status, _, body) = send(&w, create(&k, "order-7", "416 555 0402")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
    let (status, _, _) = send(&w, create(&other_client, "order-7", "416 555 0402")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another key's Idempotency-Key space is its own"
    );

    for bad in [String::new(), "x".repeat(256), "tab\there".to_owned()] {
        let (status, _, body) = send(&w, create(&k, &bad, "416 555 0403")).await;
        assert_eq!(
            (status, body["details"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Idempotency-Key")),
            "{bad:?}"
        );
    }

    // Without the cache no request with a key is taken (it could not be made safe to retry).
    w.cache.set_behaviour(relay_ports::fakes::Behaviour::Down);
    let (status, _, _) = send(&w, create(&k, "order-8", "416 555 0404")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    w.cache
        .set_behaviour(relay_ports::fakes::Behaviour::Healthy);
    assert!(
        body_of_list(&w, &k, &format!("{base}?phone=4165550404"))
            .await
            .is_empty()
    );
}

#[actix_web::test]
async fn a_retried_key_creation_says_it_was_created_but_never_shows_the_key_again() {
    let w = world();
    let op = key(&w, None).await;
    let uri = format!("{ADMIN}/organizations/{}/keys", w.org.id);
    let create = || {
        with_key(TestRequest::post().uri(&uri), &op)
            .insert_header(("Idempotency-Key", "new-crm-key"))
            .set_json(json!({"label": "crm"}))
    };
    let (status, _, first) = send(&w, create()).await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = first["key"].as_str().unwrap().to_owned();
    let (status, headers, again) = send(&w, create()).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("idempotency_secret_not_replayed")
        )
    );
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    assert!(
        !again.to_string().contains(&secret),
        "the key is never kept or shown again"
    );
    let keys = body_of_list(&w, &op, &uri).await;
    assert_eq!(keys.len(), 1, "created once: {keys:?}");
}

#[actix_web::test]
async fn an_oversized_body_is_refused_and_a_genuine_request_right_after_is_answered() {
    let w = world();
    let k = key(&w, Some(w.org.id)).await;
    let base = format!("{ADMIN}/organizations/{}/contacts", w.org.id);
    let huge = json!({"phone": "+14165550500", "first_name": "x".repeat(70 * 1024)});
    let (status, _, body) = send(
        &w,
        with_key(TestRequest::post().uri(&base).set_json(huge), &k),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    assert!(
        body_of_list(&w, &k, &format!("{base}?phone=4165550500"))
            .await
            .is_empty(),
        "nothing stored"
    );
    let (status, _, _) = send(
        &w,
        with_key(
            TestRequest::post()
                .uri(&base)
                .set_json(json!({"phone": "+14165550501"})),
            &k,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}
