//! End to end with the management API: the real `relay` binary on the embedded adapters and on
//! Postgres + Redis, driven over HTTP as the system owning the contacts would drive it, checked
//! against what the personalization webhook then answers and what the database really holds.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::{Adapters, Service, Setup, call, post, relay_ok};

/// The management API's address, from the service's start-up log line.
async fn admin_addr(service: &Service) -> SocketAddr {
    let logs = service
        .logs_until("management API listening", Duration::from_secs(10))
        .await;
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|event| event["admin_listen_addr"].as_str().map(str::to_owned))
        .expect("admin_listen_addr logged")
        .parse()
        .unwrap()
}

struct Admin {
    client: Client,
    base: String,
}

impl Admin {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"))
        };
        (status, body)
    }
}

async fn a_crm_keeps_the_contacts_in_sync_and_the_webhook_follows(adapters: Adapters) {
    let setup = Setup::on(adapters).await;
    let db = setup.db.url();
    let operator = relay_ok(&db, &["keys", "create", "--label", "ops"]);
    assert!(operator.starts_with("rmk_"), "{operator}");
    let service = setup.serve(&[("ADMIN_LISTEN_ADDR", "127.0.0.1:0")]);
    let admin = Admin {
        client: Client::new(),
        base: format!("http://{}/admin/v1", admin_addr(&service).await),
    };

    // The operator creates the organization, its key for the CRM, and ElevenLabs' tool secret.
    let (status, org) = admin
        .send(
            Method::POST,
            "/organizations",
            &operator,
            Some(json!({"name": "Acme Corp", "default_region": "CA"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    let org = org["id"].as_str().unwrap().to_owned();
    let (status, key) = admin
        .send(
            Method::POST,
            &format!("/organizations/{org}/keys"),
            &operator,
            Some(json!({"label": "crm-sync"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let crm = key["key"].as_str().unwrap().to_owned();
    let (status, secret) = admin
        .send(
            Method::POST,
            &format!("/organizations/{org}/secrets"),
            &crm,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{secret}");
    let token = secret["token"].as_str().unwrap().to_owned();

    // The CRM upserts three contacts by its own ids.
    let contacts = format!("/organizations/{org}/contacts");
    for (ext, first, phone) in [
        ("crm-1", "Ada", "(416) 555-0101"),
        ("crm-2", "Bob", "416.555.0102"),
        ("crm-3", "Cy", "+1 416 555 0103"),
    ] {
        let (status, body) = admin
            .send(
                Method::PUT,
                &format!("{contacts}/by-external-id/{ext}"),
                &crm,
                Some(json!({"first_name": first, "phone": phone})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Each call its own conversation, whose id holds no number (conversation ids are logged).
    let calls = std::sync::atomic::AtomicU32::new(0);
    let answer = |caller: &'static str| {
        let (service, token) = (&service, &token);
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            post(service, token, call(&format!("conv_e2e_{n}"), caller))
                .await
                .1
        }
    };
    assert_eq!(answer("+14165550101").await["caller_name"], "Ada");

    // Ada's number changes in the CRM: the same contact, found by the new number only.
    let (status, body) = admin
        .send(
            Method::PUT,
            &format!("{contacts}/by-external-id/crm-1"),
            &crm,
            Some(json!({"first_name": "Ada", "phone": "416 555 0111"})),
        )
        .await;
    assert_eq!(
        (status, body["version"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );
    assert_eq!(answer("+14165550111").await["caller_name"], "Ada");
    assert_eq!(answer("+14165550101").await, json!({}));

    // Bob is deleted in the CRM: matched no more, gone from the database.
    let (_, found) = admin
        .send(
            Method::GET,
            &format!("{contacts}?phone=4165550102"),
            &crm,
            None,
        )
        .await;
    let bob = found["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = admin
        .send(Method::DELETE, &format!("{contacts}/{bob}"), &crm, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(answer("+14165550102").await, json!({}));
    assert_eq!(setup.db.count("SELECT count(*) FROM contacts").await, 2);

    // A bulk CSV, streamed: every row lands, bad rows are reported by line.
    let rows = 20_000;
    let mut csv = String::from("phone,first_name,last_name\n");
    for i in 0..rows {
        writeln!(csv, "+1647{:07},Bulk{i},Row", 2_000_000 + i).unwrap();
    }
    csv.push_str("not a number,Bad,Row\n");
    let res = admin
        .client
        .post(format!("{}{contacts}/import", admin.base))
        .bearer_auth(&crm)
        .header("content-type", "text/csv")
        .body(csv)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["rows"], rows + 1, "{report}");
    assert_eq!(report["inserted"], rows, "{report}");
    assert_eq!(report["rejected_total"], 1, "{report}");
    assert_eq!(report["rejected"][0]["line"], rows + 2, "{report}");
    assert_eq!(report["stopped"], Value::Null);
    assert_eq!(
        setup.db.count("SELECT count(*) FROM contacts").await,
        2 + i64::from(rows)
    );
    let (_, found) = admin
        .send(
            Method::GET,
            &format!("{contacts}?phone=%2B16472012345"),
            &crm,
            None,
        )
        .await;
    assert_eq!(found["items"][0]["first_name"], "Bulk12345");
    assert_eq!(answer("+16472019999").await["caller_name"], "Bulk19999 Row");

    // A create retried with its Idempotency-Key gets the first answer and creates nothing.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let res = admin
            .client
            .post(format!("{}{contacts}", admin.base))
            .bearer_auth(&crm)
            .header("idempotency-key", "sync-42")
            .json(&json!({"first_name": "Ida", "phone": "416 555 0404"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let replayed = res.headers().get("idempotent-replayed").is_some();
        answers.push((replayed, res.json::<Value>().await.unwrap()["id"].clone()));
    }
    assert_eq!((answers[0].0, answers[1].0), (false, true));
    assert_eq!(answers[0].1, answers[1].1, "the same contact");
    assert_eq!(
        setup.db.count("SELECT count(*) FROM contacts").await,
        3 + i64::from(rows)
    );

    // Another organization's key reaches none of it.
    let (_, other) = admin
        .send(
            Method::POST,
            "/organizations",
            &operator,
            Some(json!({"name": "Other", "default_region": "GB"})),
        )
        .await;
    let (_, other_key) = admin
        .send(
            Method::POST,
            &format!("/organizations/{}/keys", other["id"].as_str().unwrap()),
            &operator,
            Some(json!({"label": "theirs"})),
        )
        .await;
    let (status, _) = admin
        .send(
            Method::GET,
            &contacts,
            other_key["key"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Every change is in the trail, by key id; the CLI reads the same trail.
    let trail = relay_ok(&db, &["audit", "list", "--org", &org, "--limit", "20"]);
    let crm_id = key["id"].as_str().unwrap();
    for action in [
        "contacts.import",
        "contact.delete",
        "contact.update",
        "contact.create",
        "secret.create",
        "key.create",
        "organization.create",
    ] {
        assert!(trail.contains(action), "{action} missing:\n{trail}");
    }
    assert!(
        trail.contains(&format!("key:{crm_id}\t{org}\tcontact.delete")),
        "{trail}"
    );

    // A revoked key stops at once.
    let (status, _) = admin
        .send(Method::DELETE, &format!("/keys/{crm_id}"), &operator, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin.send(Method::GET, &contacts, &crm, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );

    // Nothing secret or personal in the logs: no key, no token, no number, no name.
    let logs = service.logs();
    for needle in [
        operator.as_str(),
        crm.as_str(),
        token.as_str(),
        "4165550111",
        "6472012345",
        "Bulk12345",
        "Ada",
    ] {
        assert!(!logs.contains(needle), "{needle} in the logs");
    }
    assert!(logs.contains("management request"), "requests are logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crm_keeps_the_contacts_in_sync_embedded() {
    a_crm_keeps_the_contacts_in_sync_and_the_webhook_follows(Adapters::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crm_keeps_the_contacts_in_sync_postgres_redis() {
    a_crm_keeps_the_contacts_in_sync_and_the_webhook_follows(Adapters::PostgresRedis).await;
}

const TRANSCRIPTION: &str =
    include_str!("../../usecase/tests/fixtures/elevenlabs/post_call_transcription.json");

/// `WEBHOOK_SECRET_KEY` of these tests (32 bytes, base64).
const SEALING_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Every route once with an operator key, as documented: statuses, and what each read shows of
/// the writes before it.
async fn every_route_answers_as_documented(adapters: Adapters) {
    let setup = Setup::on(adapters).await;
    let db = setup.db.url();
    let op = relay_ok(&db, &["keys", "create", "--label", "ops"]);
    let service = setup.serve(&[
        ("ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
        ("WEBHOOK_SECRET_KEY", SEALING_KEY),
    ]);
    let a = Admin {
        client: Client::new(),
        base: format!("http://{}/admin/v1", admin_addr(&service).await),
    };
    let (s, org) = a
        .send(
            Method::POST,
            "/organizations",
            &op,
            Some(json!({"name": "Acme", "default_region": "CA"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    let o = format!("/organizations/{}", org["id"].as_str().unwrap());
    let (s, got) = a.send(Method::GET, &o, &op, None).await;
    assert_eq!((s, &got), (StatusCode::OK, &org));
    let (s, patched) = a.send(Method::PATCH, &o, &op, Some(json!({"name": "Acme Two", "default_region": "GB", "memory": {"unknown_callers": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["name"].as_str(),
            patched["default_region"].as_str(),
            patched["memory"]["unknown_callers"].as_bool()
        ),
        (Some("Acme Two"), Some("GB"), Some(true))
    );
    let (s, orgs) = a.send(Method::GET, "/organizations", &op, None).await;
    assert_eq!(
        (s, orgs["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );

    let (s, secret) = a
        .send(Method::POST, &format!("{o}/secrets"), &op, None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = secret["token"].as_str().unwrap().to_owned();
    let (s, second) = a
        .send(Method::POST, &format!("{o}/secrets"), &op, None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, revoked) = a
        .send(
            Method::DELETE,
            &format!("{o}/secrets/{}", second["id"].as_str().unwrap()),
            &op,
            None,
        )
        .await;
    assert_eq!(
        (s, revoked["revoked_at"].is_string()),
        (StatusCode::OK, true)
    );
    let (s, secrets) = a
        .send(Method::GET, &format!("{o}/secrets"), &op, None)
        .await;
    assert_eq!(
        (s, secrets["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let (s, _) = a
        .send(
            Method::PUT,
            &format!("{o}/webhook-secret"),
            &op,
            Some(json!({"secret": "wsec_0123456789abcdef"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        setup
            .db
            .count("SELECT count(*) FROM organizations WHERE webhook_secret_sealed IS NOT NULL")
            .await,
        1
    );

    let (s, org_key) = a
        .send(
            Method::POST,
            &format!("{o}/keys"),
            &op,
            Some(json!({"label": "crm"})),
        )
        .await;
    assert_eq!(
        (s, org_key["scope"].as_str()),
        (StatusCode::CREATED, Some("organization"))
    );
    let (s, keys) = a.send(Method::GET, &format!("{o}/keys"), &op, None).await;
    assert_eq!(
        (s, keys["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (s, op2) = a
        .send(Method::POST, "/keys", &op, Some(json!({"label": "ops-2"})))
        .await;
    assert_eq!(
        (s, op2["scope"].as_str()),
        (StatusCode::CREATED, Some("operator"))
    );
    let (s, ops) = a.send(Method::GET, "/keys", &op, None).await;
    assert_eq!(
        (s, ops["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let (s, _) = a
        .send(
            Method::DELETE,
            &format!("/keys/{}", op2["id"].as_str().unwrap()),
            &op,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = a
        .send(Method::GET, "/keys", op2["key"].as_str().unwrap(), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked at once");

    // Contacts: create, read, conditional patch, upsert, list, delete.
    let c = format!("{o}/contacts");
    let (s, ada) = a
        .send(
            Method::POST,
            &c,
            &op,
            Some(json!({"first_name": "Ada", "phone": "020 7946 0000"})),
        )
        .await;
    assert_eq!(
        (s, ada["phone"].as_str()),
        (StatusCode::CREATED, Some("+442079460000")),
        "{ada}"
    );
    let one = format!("{c}/{}", ada["id"].as_str().unwrap());
    let (s, got) = a.send(Method::GET, &one, &op, None).await;
    assert_eq!((s, &got), (StatusCode::OK, &ada));
    let res = a
        .client
        .patch(format!("{}{one}", a.base))
        .bearer_auth(&op)
        .header("if-match", "\"1\"")
        .json(&json!({"last_name": "Lovelace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            res.status(),
            res.headers().get("etag").unwrap().to_str().unwrap()
        ),
        (StatusCode::OK, "\"2\"")
    );
    let res = a
        .client
        .patch(format!("{}{one}", a.base))
        .bearer_auth(&op)
        .header("if-match", "\"1\"")
        .json(&json!({"last_name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let (s, _) = a
        .send(
            Method::PUT,
            &format!("{c}/by-external-id/crm-9"),
            &op,
            Some(json!({"first_name": "Bo", "phone": "020 7946 0001"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, page) = a
        .send(Method::GET, &format!("{c}?name=LOVE&limit=1"), &op, None)
        .await;
    assert_eq!(
        (
            s,
            page["items"][0]["last_name"].as_str(),
            &page["next_cursor"]
        ),
        (StatusCode::OK, Some("Lovelace"), &Value::Null)
    );
    let (s, page) = a
        .send(Method::GET, &format!("{c}?limit=1"), &op, None)
        .await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (s2, rest) = a
        .send(
            Method::GET,
            &format!("{c}?limit=1&cursor={cursor}"),
            &op,
            None,
        )
        .await;
    assert_eq!(
        (s, s2, rest["items"].as_array().map(Vec::len)),
        (StatusCode::OK, StatusCode::OK, Some(1))
    );
    assert_ne!(page["items"][0]["id"], rest["items"][0]["id"]);

    // Calls: one post-call delivery (Bearer), then list and get it.
    let mut event: Value = serde_json::from_str(TRANSCRIPTION).unwrap();
    event["data"]["conversation_id"] = json!("conv_admin_e2e");
    event["data"]["metadata"]["phone_call"]["external_number"] = json!("+442079460000");
    let res = a
        .client
        .post(format!("http://{}/api/webhook/elevenlabs", service.addr))
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (s, calls) = a
        .send(Method::GET, &format!("{o}/calls?limit=10"), &op, None)
        .await;
    assert_eq!(
        (s, calls["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "{calls}"
    );
    let call = &calls["items"][0];
    assert_eq!(
        (
            call["conversation_id"].as_str(),
            call["contact_id"].as_str()
        ),
        (Some("conv_admin_e2e"), ada["id"].as_str())
    );
    let (s, got) = a
        .send(
            Method::GET,
            &format!("{o}/calls/{}", call["id"].as_str().unwrap()),
            &op,
            None,
        )
        .await;
    assert_eq!((s, &got), (StatusCode::OK, call));
    let (s, _) = a
        .send(
            Method::GET,
            &format!("{o}/calls/00000000-0000-4000-8000-000000000000"),
            &op,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = a.send(Method::DELETE, &one, &op, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, trail) = a
        .send(
            Method::GET,
            &format!("/audit?org={}&limit=3", org["id"].as_str().unwrap()),
            &op,
            None,
        )
        .await;
    assert_eq!(
        (s, trail["items"][0]["action"].as_str()),
        (StatusCode::OK, Some("contact.delete"))
    );
    assert!(trail["next_cursor"].is_string());

    let (s, _) = a.send(Method::DELETE, &o, &op, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = a.send(Method::GET, &o, &op, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        setup.db.count("SELECT count(*) FROM contacts").await,
        0,
        "deleted with its organization"
    );
    assert_eq!(setup.db.count("SELECT count(*) FROM calls").await, 0);
    let (s, trail) = a.send(Method::GET, "/audit?limit=1", &op, None).await;
    assert_eq!(
        (s, trail["items"][0]["action"].as_str()),
        (StatusCode::OK, Some("organization.delete")),
        "the trail outlives it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_as_documented_embedded() {
    every_route_answers_as_documented(Adapters::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_as_documented_postgres_redis() {
    every_route_answers_as_documented(Adapters::PostgresRedis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_admin_listen_addr_there_is_no_management_port() {
    let setup = Setup::on(Adapters::Embedded).await;
    let service = setup.serve(&[]);
    let client = Client::new();
    let res = client
        .get(format!("http://{}/admin/v1/organizations", service.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "the webhook port serves no management route"
    );
    assert!(!service.logs().contains("management API listening"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_both_listeners_and_the_process_exits_0() {
    let setup = Setup::on(Adapters::Embedded).await;
    let mut service = setup.serve(&[
        ("ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
        ("SHUTDOWN_DRAIN_SECONDS", "0"),
    ]);
    let admin = admin_addr(&service).await;
    service.terminate();
    let status = service
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exited");
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the management port is closed"
    );
}
