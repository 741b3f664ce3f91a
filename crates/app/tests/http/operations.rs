//! `/metrics`, `/healthz` and `/readyz` on the real routes over the in-memory fakes: what a
//! Prometheus scrape and a Kubernetes probe see.

use actix_web::http::header::{ALLOW, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use relay_http::{PERSONALIZATION_PATH, test_app};
use relay_observability::scrape::sample;
use relay_ports::fakes::Behaviour;
use serde_json::{Value, json};

use crate::world::{World, world};

async fn get(world: &World, path: &str) -> (StatusCode, String, String) {
    let app = test::init_service(test_app(world.webhooks(), world.operations.clone())).await;
    let res = test::call_service(&app, TestRequest::get().uri(path).to_request()).await;
    let status = res.status();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    (status, content_type, body)
}

async fn webhook(world: &World, token: &str, body: Value) -> StatusCode {
    let app = test::init_service(test_app(world.webhooks(), world.operations.clone())).await;
    let req = TestRequest::post()
        .uri(PERSONALIZATION_PATH)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .set_json(body)
        .to_request();
    test::call_service(&app, req).await.status()
}

fn requests(text: &str, status: &str, outcome: &str) -> Option<f64> {
    sample(
        text,
        "relay_http_requests_total",
        &[
            ("route", PERSONALIZATION_PATH),
            ("status", status),
            ("outcome", outcome),
        ],
    )
}

#[actix_web::test]
async fn a_scrape_counts_each_request_by_status_and_outcome() {
    let w = world();
    let token = w.token.expose().to_owned();
    let known = json!({"conversation_id": "c1", "caller_id": "+14165550100"});
    assert_eq!(webhook(&w, &token, known.clone()).await, StatusCode::OK);
    assert_eq!(webhook(&w, &token, known.clone()).await, StatusCode::OK);
    let unknown = json!({"conversation_id": "c2", "caller_id": "+14165550199"});
    assert_eq!(webhook(&w, &token, unknown).await, StatusCode::OK);
    assert_eq!(
        webhook(&w, "not-a-token", known.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        webhook(&w, &token, json!({"caller_id": "+14165550100"})).await,
        StatusCode::BAD_REQUEST
    );
    w.store.set_behaviour(Behaviour::Down);
    assert_eq!(webhook(&w, &token, known).await, StatusCode::OK);
    // Probes and scrapes are not requests of the webhook.
    let _ = get(&w, "/healthz").await;
    let _ = get(&w, "/readyz").await;
    let _ = get(&w, "/metrics").await;

    let (status, content_type, text) = get(&w, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(requests(&text, "200", "matched"), Some(2.0));
    assert_eq!(requests(&text, "200", "no_match"), Some(1.0));
    assert_eq!(requests(&text, "401", "unauthorized"), Some(1.0));
    assert_eq!(requests(&text, "400", "invalid"), Some(1.0));
    assert_eq!(requests(&text, "200", "degraded"), Some(1.0));
    assert_eq!(
        sample(&text, "relay_http_requests_total", &[]),
        Some(6.0),
        "only the six webhook requests are counted"
    );
    assert_eq!(
        sample(
            &text,
            "relay_http_request_duration_seconds_count",
            &[("outcome", "matched")]
        ),
        Some(2.0)
    );
}

#[actix_web::test]
async fn healthz_is_ok_even_when_every_dependency_is_down() {
    let w = world();
    w.store.set_behaviour(Behaviour::Down);
    w.cache.set_behaviour(Behaviour::Down);
    let (status, _, body) = get(&w, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
}

#[actix_web::test]
async fn readyz_names_each_dependency_and_is_503_when_one_is_down() {
    let w = world();
    let (status, _, body) = get(&w, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ready", "checks": {"postgres": "up", "redis": "up"}})
    );

    w.cache.set_behaviour(Behaviour::Down);
    let (status, _, body) = get(&w, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "not_ready", "checks": {"postgres": "up", "redis": "down"}})
    );
}

#[actix_web::test]
async fn readyz_is_503_draining_once_shutdown_begins() {
    let w = world();
    w.operations.readiness.start_draining();
    let (status, _, body) = get(&w, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "draining", "checks": {}})
    );
}

#[actix_web::test]
async fn operations_routes_refuse_other_methods_with_the_envelope() {
    let w = world();
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        // HEAD too: actix-web serves it only where a route is registered for it, and these
        // routes are GET only, which their `Allow` says.
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let req = TestRequest::default().method(method.clone()).uri(path);
            let res = test::call_service(&app, req.to_request()).await;
            assert_eq!(
                res.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(res.headers().get(ALLOW).unwrap(), "GET", "{method} {path}");
            let body: Value = test::read_body_json(res).await;
            assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
        }
    }
}
