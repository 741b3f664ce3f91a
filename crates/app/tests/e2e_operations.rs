//! End to end, operating the service: shutdown on SIGTERM and SIGINT, readiness, the Prometheus
//! scrape, OTLP traces and the `healthcheck` command, on the real `relay` binary.

mod support;

use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use support::{Adapters, Mode, Proxy, Service, Setup, TestStore, call, post, socket_of, via};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_then_refuses_new_connections_and_every_request_in_flight_succeeds() {
    let s = Setup::new().await;
    let token = s.acme_with_alex();
    let mut service = s.serve(&[
        // The requests below wait on the test's lock, not on the clock: the budget only has to
        // outlast the whole shutdown sequence.
        ("LOOKUP_TIMEOUT_MS", "30000"),
        // Each step below waits for an event, not for a time. The drain only has to outlast the
        // two steps inside it (a readiness probe and one request, milliseconds apart) with room
        // for a stalled machine; it is the only clock left in the sequence.
        ("SHUTDOWN_DRAIN_SECONDS", "3"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "10"),
    ]);
    let (_, body, _) = post(&service, &token, call("warm", "4165550100")).await;
    assert_eq!(body["caller_name"], "Alex");
    let service_url = service.url();
    let send = |conversation: String| {
        let url = service_url.clone();
        let token = token.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&call(&conversation, "4165550100"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let lock = s.db.lock_contacts().await;
    let mut in_flight: Vec<_> = (0..4).map(|i| send(format!("inflight{i}"))).collect();
    wait_in_flight(&s.db, &service, &in_flight).await;
    service.terminate();

    // During the drain: readiness says so at once, and new connections are still served.
    service
        .logs_until("shutdown: readiness is 503", Duration::from_secs(10))
        .await;
    let ready = reqwest::get(format!("http://{}/readyz", service.addr))
        .await
        .expect("a new connection is accepted during the drain");
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "draining", "checks": {}})
    );
    in_flight.push(send("during-drain".into()));
    wait_in_flight(&s.db, &service, &in_flight).await;

    // After the drain: new connections are refused while every request is still in flight.
    service
        .logs_until("no longer accepting connections", Duration::from_secs(30))
        .await;
    let refused = refused_connection(service.addr).await;
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a connection was accepted after the drain: {refused:?}"
    );
    assert!(
        in_flight.iter().all(|request| !request.is_finished()),
        "the requests were to be in flight (waiting on the lock) while connections are refused"
    );

    lock.rollback().await.unwrap();
    for request in in_flight {
        assert_eq!(request.await.unwrap().expect("answered"), 200);
    }
    let status = service
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits within the grace period");
    assert!(status.success(), "{status:?}\n{}", service.logs());
    let logs = service.logs();
    assert!(logs.contains("shutdown: readiness is 503"), "{logs}");
    assert!(logs.contains("\"signal\":\"SIGTERM\""), "{logs}");
}

/// Waits (up to 20 s) until each of `requests` is in flight: its contact lookup waits on the
/// test's lock on `contacts`.
async fn wait_in_flight(
    db: &TestStore,
    service: &Service,
    requests: &[tokio::task::JoinHandle<reqwest::Result<u16>>],
) {
    let expected = i64::try_from(requests.len()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = db.queries_waiting_on_a_lock().await;
        if waiting >= expected {
            return;
        }
        assert!(
            !requests.iter().any(tokio::task::JoinHandle::is_finished),
            "a request ended before it reached the store (refused because the drain was over?):\n{}",
            service.logs()
        );
        assert!(
            Instant::now() < deadline,
            "{waiting} of {expected} requests in flight after 20 s:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `GET /healthz` once the service has said it stops accepting connections: the stop reaches
/// the listener a moment after that line, so this retries (up to 10 s) until a connection is
/// refused, then checks that the next one is refused too. Returns that last attempt.
async fn refused_connection(
    addr: std::net::SocketAddr,
) -> Result<reqwest::Response, reqwest::Error> {
    let attempt = || {
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = attempt().await;
        if result.as_ref().is_err_and(reqwest::Error::is_connect) {
            return attempt().await;
        }
        assert!(
            Instant::now() < deadline,
            "connections were still accepted 10 s after the drain: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_the_service_cleanly_too() {
    let s = Setup::on(Adapters::Embedded).await;
    let mut service = s.serve(&[("SHUTDOWN_DRAIN_SECONDS", "0")]);
    let status = std::process::Command::new("kill")
        .args(["-INT", &service.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(service.logs().contains("\"signal\":\"SIGINT\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_redis_when_it_stops_answering() {
    let s = Setup::new().await;
    let redis_url = s.redis().url();
    let proxy = Proxy::start(socket_of(redis_url.expose_secret())).await;
    let proxied = via(redis_url.expose_secret(), proxy.addr);
    let service = s.serve(&[("REDIS_URL", &proxied), ("READINESS_TIMEOUT_MS", "300")]);
    let readyz = format!("http://{}/readyz", service.addr);
    let ready = reqwest::get(&readyz).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "checks": {"postgres": "up", "redis": "up"}})
    );

    proxy.set(Mode::Refuse);
    let started = Instant::now();
    let ready = reqwest::get(&readyz).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness is bounded"
    );
    assert_eq!(ready.status().as_u16(), 503);
    let body = ready.json::<Value>().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"], "up");
    assert_ne!(body["checks"]["redis"], "up", "{body}");
    let health = reqwest::get(format!("http://{}/healthz", service.addr))
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "liveness checks no dependency"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_calls_to_postgres_and_redis_and_their_pools() {
    use relay_observability::scrape::sample;
    let s = Setup::new().await;
    let token = s.acme_with_alex();
    // Postgres trusts local connections, so a password in the URL is accepted and ignored:
    // enough to check that it never reaches the log.
    let db_url = s.db.url();
    let with_password = db_url
        .expose_secret()
        .replacen("://postgres@", "://postgres:hunter2@", 1);
    assert!(with_password.contains("hunter2"), "{with_password}");
    let service = s.serve(&[("DATABASE_URL", &with_password)]);
    let start_line: Value = service
        .logs()
        .lines()
        .find(|l| l.contains("relay listening"))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("start-up line");
    for key in [
        "version",
        "store",
        "cache",
        "listen_addr",
        "database_url",
        "redis_url",
        "lookup_timeout_ms",
        "shutdown_drain_s",
        "otel_tracing",
    ] {
        assert!(
            !start_line[key].is_null(),
            "{key} missing from {start_line}"
        );
    }
    assert_eq!(
        (&start_line["store"], &start_line["cache"]),
        (&json!("postgres"), &json!("redis"))
    );
    assert!(
        start_line["database_url"]
            .as_str()
            .unwrap()
            .contains("postgres:***@"),
        "{start_line}"
    );
    assert!(!service.logs().contains("hunter2"));
    post(&service, &token, call("m1", "4165550100")).await;
    post(&service, &token, call("m2", "4165550199")).await;
    post(&service, "wrong-token", call("m3", "4165550100")).await;

    let res = reqwest::get(format!("http://{}/metrics", service.addr))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    relay_observability::scrape::check_format(&text).unwrap();
    // docs/operations.md lists every metric the service exports.
    let operations = include_str!("../../../docs/operations.md");
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            operations.contains(name),
            "{name} is exported but not documented in docs/operations.md"
        );
    }
    let calls = |dependency: &str, operation: &str, result: &str| {
        sample(
            &text,
            "relay_dependency_duration_seconds_count",
            &[
                ("dependency", dependency),
                ("operation", operation),
                ("result", result),
            ],
        )
    };
    // The second call with the same token is answered by the organization cache.
    assert_eq!(calls("postgres", "find_organization", "found"), Some(1.0));
    assert_eq!(
        calls("postgres", "find_organization", "not_found"),
        Some(1.0)
    );
    assert_eq!(calls("postgres", "find_caller", "found"), Some(1.0));
    assert_eq!(calls("postgres", "find_caller", "not_found"), Some(1.0));
    assert_eq!(calls("redis", "put_call_context", "ok"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "relay_http_requests_total",
            &[("outcome", "unauthorized")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "relay_pool_max_connections",
            &[("dependency", "postgres")]
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            "relay_pool_max_connections",
            &[("dependency", "redis")]
        ),
        Some(16.0)
    );
    assert_eq!(
        sample(&text, "relay_pool_waiters", &[("dependency", "postgres")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "relay_call_context_writes_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "relay_build_info",
            &[("store", "postgres"), ("cache", "redis")]
        ),
        Some(1.0)
    );
}

/// A small OTLP/HTTP receiver (JSON encoding): keeps every export request's body.
struct OtlpReceiver {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    _server: actix_web::dev::ServerHandle,
}

impl OtlpReceiver {
    fn start() -> Self {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = web::Data::from(std::sync::Arc::clone(&received));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(
                    "/v1/traces",
                    web::post().to(
                        |body: web::Bytes, sink: web::Data<std::sync::Mutex<Vec<Value>>>| async move {
                            let json: Value =
                                serde_json::from_slice(&body).expect("OTLP/JSON export body");
                            sink.lock().unwrap().push(json);
                            HttpResponse::Ok().content_type("application/json").body("{}")
                        },
                    ),
                )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            addr,
            received,
            _server: handle,
        }
    }

    /// Every span received, flattened, with the resource attributes of its batch.
    fn spans(&self) -> Vec<(Value, Value)> {
        let mut spans = Vec::new();
        for export in self.received.lock().unwrap().iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push((span.clone(), resource["resource"].clone()));
                    }
                }
            }
        }
        spans
    }

    fn raw(&self) -> String {
        serde_json::to_string(&*self.received.lock().unwrap()).unwrap()
    }
}

/// An attribute's value as text, whatever its OTLP type.
fn attribute(item: &Value, key: &str) -> Option<String> {
    let value = item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]
        .clone();
    let inner = value.as_object()?.values().next()?.clone();
    Some(match inner {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_per_call_continues_traceparent_with_postgres_and_redis_child_spans() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";
    let receiver = OtlpReceiver::start();
    let s = Setup::new().await;
    let org = s.org("Acme", "CA");
    let token = s.secret(&org);
    s.import(&org, "phone,first_name,last_name\n4165550100,Alex,Morgan\n");
    let endpoint = format!("http://{}", receiver.addr);
    let mut service = s.serve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("SHUTDOWN_DRAIN_SECONDS", "0"),
    ]);
    let res = reqwest::Client::new()
        .post(service.url())
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&call("traced", "4165550100"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["caller_name"],
        "Alex Morgan"
    );

    // Spans are exported in batches; stopping flushes the last one.
    service.terminate();
    let status = service
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits");
    assert!(status.success(), "{status:?}");

    let spans = receiver.spans();
    let named = |name: &str| {
        spans
            .iter()
            .find(|(span, _)| span["name"] == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {}", receiver.raw()))
            .clone()
    };
    let (server, resource) = named("POST /api/webhook/elevenlabs/personalization");
    assert_eq!(
        server["traceId"], TRACE_ID,
        "the caller's trace is continued"
    );
    assert_eq!(server["parentSpanId"], PARENT_ID);
    assert_eq!(server["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(attribute(&server, "outcome").as_deref(), Some("matched"));
    assert_eq!(
        attribute(&server, "http.route").as_deref(),
        Some("/api/webhook/elevenlabs/personalization")
    );
    assert_eq!(
        attribute(&server, "http.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(&resource, "service.name").as_deref(),
        Some("relay")
    );

    let (use_case, _) = named("personalize_call");
    assert_eq!(use_case["parentSpanId"], server["spanId"]);
    for (name, system, result) in [
        ("find_organization", "postgresql", "found"),
        ("find_caller", "postgresql", "found"),
        ("put_call_context", "redis", "ok"),
    ] {
        let (span, _) = named(name);
        assert_eq!(span["traceId"], TRACE_ID, "{name}");
        assert_eq!(span["parentSpanId"], use_case["spanId"], "{name}");
        assert_eq!(span["kind"], 3, "{name}: SPAN_KIND_CLIENT");
        assert_eq!(attribute(&span, "db.system.name").as_deref(), Some(system));
        assert_eq!(
            attribute(&span, "result").as_deref(),
            Some(result),
            "{name}"
        );
        let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end > start, "{name} has a duration");
    }
    let traced: Vec<_> = spans
        .iter()
        .filter(|(span, _)| span["traceId"] == TRACE_ID)
        .collect();
    assert_eq!(
        traced.len(),
        5,
        "one server span, the use case and three calls"
    );

    let raw = receiver.raw();
    for secret in ["4165550100", "Alex", "Morgan", token.as_str()] {
        assert!(!raw.contains(secret), "{secret:?} reached a trace");
    }
    let request_log = service
        .logs()
        .lines()
        .find(|l| l.contains("personalization answered"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .expect("request log line");
    assert_eq!(
        request_log["openTelemetry"]["traceId"], TRACE_ID,
        "the log line leads to its trace"
    );
    assert_eq!(request_log["openTelemetry"]["spanId"], server["spanId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_command_exits_0_against_a_live_service_and_1_otherwise() {
    let s = Setup::on(Adapters::Embedded).await;
    let service = s.serve(&[]);
    let run = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .arg("healthcheck")
            .env_clear()
            .env("LISTEN_ADDR", addr)
            .output()
            .unwrap()
    };
    let live = run(service.addr.to_string());
    assert!(live.status.success(), "{live:?}");
    // Port 1 on loopback: nothing listens.
    let dead = run("0.0.0.0:1".into());
    assert_eq!(dead.status.code(), Some(1), "{dead:?}");
    assert!(String::from_utf8_lossy(&dead.stderr).contains("cannot reach 127.0.0.1:1"));
}
