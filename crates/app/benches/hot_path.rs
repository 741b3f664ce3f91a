//! The in-process hot path, without the network or a real dependency: parse and validate the
//! body, normalize the caller's number, build and serialize the answer, on the service as the
//! composition root wires it (`cargo bench -p relay-app --bench hot_path`; results in
//! docs/benchmarks.md).

#[path = "../tests/http/world.rs"]
mod world;

use actix_web::test::{self, TestRequest};
use criterion::{Criterion, criterion_group, criterion_main};
use relay_domain::{DynamicVariables, E164, Region};
use relay_http::{INITIATION_PATH, PERSONALIZATION_PATH, test_app};
use relay_ports::fakes::InMemoryStore;

const BODY: &str = r#"{"conversation_id":"conv_8f3d1b9c2e7a4f0b9a4d2c1e6e2f8c01","caller_id":"+14165550100","called_number":"+12362320246","agent_id":"agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01"}"#;

fn number(c: &mut Criterion) {
    let region = Region::parse("CA").expect("known region");
    let mut group = c.benchmark_group("normalize_number");
    group.bench_function("e164", |b| {
        b.iter(|| E164::parse(std::hint::black_box("+14165550100"), &region));
    });
    group.bench_function("national", |b| {
        b.iter(|| E164::parse(std::hint::black_box("(416) 555-0100"), &region));
    });
    group.finish();
}

fn answer(c: &mut Criterion) {
    let store = InMemoryStore::new();
    let (org, _) = store.add_org("Acme Corp", "CA");
    let contact = store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let caller = contact.phone.clone();
    c.bench_function("build_and_serialize_answer", |b| {
        b.iter(|| {
            let variables = DynamicVariables::for_match(&org, &contact, &caller);
            serde_json::to_vec(&variables).expect("serializable")
        });
    });
}

/// One whole request through the actix-web service (routing, Bearer header, body, validation,
/// use case over the tests' in-memory fakes, JSON answer, request metrics and log call).
fn request(c: &mut Criterion) {
    let world = world::world();
    let system = actix_web::rt::System::new();
    let app = system.block_on(test::init_service(test_app(
        world.webhooks(),
        world.operations.clone(),
    )));
    let authorization = format!("Bearer {}", world.token.expose());
    for (name, path, body) in [
        ("webhook_request_in_process", PERSONALIZATION_PATH, BODY),
        (
            "initiation_request_in_process",
            INITIATION_PATH,
            INITIATION_BODY,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                system.block_on(async {
                    let req = TestRequest::post()
                        .uri(path)
                        .insert_header(("Authorization", authorization.as_str()))
                        .insert_header(("Content-Type", "application/json"))
                        .set_payload(body)
                        .to_request();
                    let res = test::call_service(&app, req).await;
                    assert!(res.status().is_success());
                    test::read_body(res).await
                })
            });
        });
    }
}

/// ElevenLabs' initiation webhook body for the same caller.
const INITIATION_BODY: &str = r#"{"caller_id":"+14165550100","agent_id":"agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01","called_number":"+12362320246","call_sid":"CA5f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c"}"#;

criterion_group!(benches, number, answer, request);
criterion_main!(benches);
