//! The request log: one event per request, and nothing in it that identifies a caller or
//! authenticates as an organization. In a test binary of its own: tracing caches which callsites
//! are enabled process-wide, so tests on other threads could hide events from this one's
//! subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::test::{self, TestRequest};
use relay_http::{PERSONALIZATION_PATH, test_app};
use relay_ports::fakes::Behaviour;
use serde_json::{Value, json};
use world::{World, world};

#[path = "http/world.rs"]
mod world;

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_web::test]
async fn logs_never_carry_the_token_a_whole_number_or_a_name() {
    let w = world();
    let app = test::init_service(test_app(w.webhooks(), w.operations.clone())).await;
    let World { cache, token, .. } = w;
    let post = |token: &str, body: Value| {
        TestRequest::post()
            .uri(PERSONALIZATION_PATH)
            .insert_header(("Authorization", format!("Bearer {token}")))
            .set_json(body)
            .to_request()
    };
    let call = |caller: &str| json!({"conversation_id": "conv_1", "caller_id": caller});
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    test::call_service(&app, post(token.expose(), call("(416) 555-0100"))).await;
    test::call_service(&app, post("wrong-token-value", call("+14165550100"))).await;
    test::call_service(
        &app,
        post(
            token.expose(),
            json!({"conversation_id": "a b", "caller_id": "+14165550100"}),
        ),
    )
    .await;
    cache.set_behaviour(Behaviour::Down);
    test::call_service(&app, post(token.expose(), call("+14165550100"))).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcomes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        ["matched", "unauthorized", "invalid", "degraded"],
        "one event per request:\n{logs}"
    );
    assert!(
        logs.contains("***0100"),
        "numbers are masked to the last four digits:\n{logs}"
    );
    for secret in [
        token.expose(),
        "wrong-token-value",
        "4165550100",
        "555-0100",
        "Alex",
        "Morgan",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
