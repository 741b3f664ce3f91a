//! End to end: the real `relay` binary, data set up through the CLI, requests over HTTP. The
//! behaviour tests run twice: on the embedded adapters (SQLite file, in-process cache) and on
//! Postgres + Redis; the failure tests need a server to break and run on Postgres + Redis. Each
//! test has its own database and Redis key prefix.

mod support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use relay_redis::testing::{TestRedis, redis};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use support::{Mode, Proxy, Service, TestStore, post, relay, relay_ok, socket_of, via};

struct Setup {
    db: TestStore,
    /// `None`: the service uses its in-process cache.
    redis: Option<TestRedis>,
}

/// Which adapters a behaviour test runs on.
#[derive(Clone, Copy)]
enum Adapters {
    Embedded,
    PostgresRedis,
}

impl Setup {
    async fn new() -> Self {
        Self::on(Adapters::PostgresRedis).await
    }

    async fn on(adapters: Adapters) -> Self {
        match adapters {
            Adapters::Embedded => Self {
                db: TestStore::sqlite(),
                redis: None,
            },
            Adapters::PostgresRedis => Self {
                db: TestStore::postgres().await,
                redis: Some(TestRedis::create().await),
            },
        }
    }

    fn redis(&self) -> &TestRedis {
        self.redis.as_ref().expect("a Postgres + Redis setup")
    }

    fn org(&self, name: &str, region: &str) -> String {
        relay_ok(
            &self.db.url(),
            &["org", "create", "--name", name, "--region", region],
        )
    }

    fn secret(&self, org: &str) -> String {
        relay_ok(&self.db.url(), &["secret", "add", org])
    }

    /// Organization "Acme" (region CA) with the contact Alex at 4165550100; returns its token.
    fn acme_with_alex(&self) -> String {
        let org = self.org("Acme", "CA");
        let token = self.secret(&org);
        self.import(&org, "phone,first_name\n4165550100,Alex\n");
        token
    }

    fn import(&self, org: &str, csv: &str) -> String {
        self.import_with(org, csv, &[])
    }

    fn import_with(&self, org: &str, csv: &str, options: &[&str]) -> String {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(csv.as_bytes()).unwrap();
        let mut args = vec!["contacts", "import", org, file.path().to_str().unwrap()];
        args.extend(options);
        relay_ok(&self.db.url(), &args)
    }

    fn serve(&self, extra: &[(&str, &str)]) -> Service {
        let db = self.db.url();
        let redis_url = self.redis.as_ref().map(|redis| {
            if redis.cache().is_cluster() {
                ("REDIS_CLUSTER_URLS", redis.cluster_urls())
            } else {
                ("REDIS_URL", redis.url())
            }
        });
        let mut vars = vec![("DATABASE_URL", db.expose_secret())];
        if let (Some(redis), Some((name, url))) = (&self.redis, &redis_url) {
            vars.push((name, url.expose_secret()));
            vars.push(("REDIS_KEY_PREFIX", redis.prefix()));
        }
        vars.extend_from_slice(extra);
        Service::start(&vars)
    }

    async fn redis_get(&self, key: &str) -> (Option<String>, i64) {
        let cache = self.redis().cache();
        let key = format!("{}{key}", self.redis().prefix());
        let value: Option<String> = cache.query(redis::cmd("GET").arg(&key)).await.unwrap();
        let ttl: i64 = cache.query(redis::cmd("TTL").arg(&key)).await.unwrap();
        (value, ttl)
    }
}

fn call(conversation: &str, caller: &str) -> Value {
    json!({
        "conversation_id": conversation,
        "caller_id": caller,
        "called_id": "+12362320246",
        "agent_id": "agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01"
    })
}

/// Runs a behaviour test once per set of adapters: `mod $name { embedded, postgres_redis }`.
macro_rules! on_both_adapters {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn embedded() {
                    super::$name(super::Setup::on(super::Adapters::Embedded).await).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn postgres_redis() {
                    super::$name(super::Setup::on(super::Adapters::PostgresRedis).await).await;
                }
            }
        )+
    };
}

on_both_adapters!(
    a_known_caller_is_greeted_by_name_and_the_context_is_cached_for_a_day,
    no_token_ever_reveals_another_organizations_contact,
    secrets_rotate_without_downtime_and_revoked_ones_stop_working,
);

async fn a_known_caller_is_greeted_by_name_and_the_context_is_cached_for_a_day(s: Setup) {
    let org = s.org("Acme Corp", "CA");
    let token = s.secret(&org);
    let summary = s.import_with(
        &org,
        "first_name,last_name,phone\nAlex,Morgan,(416) 555-0100\nBad,Row,12\n",
        &["--max-rejected", "50"],
    );
    assert_eq!(summary, "inserted=1 updated=0 unchanged=0 rejected=1");
    let service = s.serve(&[]);

    let (status, body, _) = post(&service, &token, call("conv_e2e_1", "+14165550100")).await;
    assert_eq!(status, 200);
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

    // The in-process cache lives inside the service, where only its conformance tests see it;
    // Redis can be read from here.
    let redis = s.redis.is_some();
    if redis {
        let (stored, ttl) = s.redis_get(&format!("org:{org}:call:conv_e2e_1")).await;
        let stored: Value =
            serde_json::from_str(&stored.expect("context cached before answering")).unwrap();
        assert!((86_390..=86_400).contains(&ttl), "ttl {ttl}");
        assert_eq!(stored["org_id"], org.as_str());
        assert_eq!(stored["caller_number"], "+14165550100");
        assert_eq!(stored["called_number"], "+12362320246");
        assert_eq!(stored["agent_id"], "agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01");
        assert!(stored["contact_id"].is_string());
        assert!(stored["received_at"].is_string());
    }

    // Unknown and withheld callers: `{}`, and the context is still cached (without a contact).
    for (conv, caller) in [("conv_e2e_2", "+14165550199"), ("conv_e2e_3", "anonymous")] {
        let (status, body, _) = post(&service, &token, call(conv, caller)).await;
        assert_eq!((status, body), (200, json!({})), "{caller}");
        if redis {
            let (stored, _) = s.redis_get(&format!("org:{org}:call:{conv}")).await;
            let stored: Value = serde_json::from_str(&stored.unwrap()).unwrap();
            assert_eq!(stored["contact_id"], Value::Null);
        }
    }

    // A wrong token: 401, the contract's body.
    let (status, body, _) = post(&service, "not-a-token", call("conv_e2e_4", "+14165550100")).await;
    assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
    if redis {
        assert_eq!(
            s.redis_get(&format!("org:{org}:call:conv_e2e_4")).await.0,
            None
        );
    }
    let cache = if redis {
        r#""cache":"redis""#
    } else {
        r#""cache":"in-process""#
    };
    assert!(
        service.logs().contains(cache),
        "the start-up line names the cache"
    );

    let logs = service.logs();
    assert!(!logs.contains(&token), "the token leaked into the logs");
    assert!(
        !logs.contains("4165550100") && !logs.contains("Morgan"),
        "PII leaked:\n{logs}"
    );
}

async fn no_token_ever_reveals_another_organizations_contact(s: Setup) {
    let acme = s.org("Acme", "CA");
    let globex = s.org("Globex", "US");
    let initech = s.org("Initech", "CA");
    let (acme_token, globex_token, initech_token) =
        (s.secret(&acme), s.secret(&globex), s.secret(&initech));
    s.import(&acme, "phone,first_name\n416-555-0100,AcmeAlex\n");
    s.import(&globex, "phone,first_name\n+1 416 555 0100,GlobexGina\n");
    s.import(&initech, "phone,first_name\n416-555-0177,OnlyInitech\n");
    let service = s.serve(&[]);

    let (_, body, _) = post(&service, &acme_token, call("c1", "+14165550100")).await;
    assert_eq!(body["caller_name"], "AcmeAlex");
    let (_, body, _) = post(&service, &globex_token, call("c2", "+14165550100")).await;
    assert_eq!(body["caller_name"], "GlobexGina");
    // Initech's token, with a number only Acme and Globex know: nothing.
    let (status, body, _) = post(&service, &initech_token, call("c3", "+14165550100")).await;
    assert_eq!((status, body), (200, json!({})));
    // And Acme's token never finds Initech's contact.
    let (_, body, _) = post(&service, &acme_token, call("c4", "+14165550177")).await;
    assert_eq!(body, json!({}));
}

async fn secrets_rotate_without_downtime_and_revoked_ones_stop_working(s: Setup) {
    let org = s.org("Acme", "CA");
    let old = s.secret(&org);
    s.import(&org, "phone,first_name\n4165550100,Alex\n");
    let service = s.serve(&[("ORG_CACHE_TTL_SECONDS", "1")]);
    let new = s.secret(&org);

    for token in [&old, &new] {
        let (_, body, _) = post(&service, token, call("c1", "4165550100")).await;
        assert_eq!(body["caller_name"], "Alex");
    }
    let listed = relay_ok(&s.db.url(), &["secret", "list", &org]);
    assert!(
        !listed.contains(&old) && !listed.contains(&new),
        "tokens are never listed"
    );
    let old_id = listed
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    relay_ok(&s.db.url(), &["secret", "revoke", &old_id]);

    // Each replica keeps the organization found for a token for ORG_CACHE_TTL_SECONDS (1 s
    // here), so the revoked token is refused once that has passed.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, body, _) = post(&service, &old, call("c2", "4165550100")).await;
    assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
    let (status, _, _) = post(&service, &new, call("c3", "4165550100")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_redis_still_answers_the_variables_and_the_context_lands_when_it_is_back() {
    let s = Setup::new().await;
    let org = s.org("Acme", "CA");
    let token = s.secret(&org);
    s.import(&org, "phone,first_name,last_name\n4165550100,Alex,Morgan\n");
    let redis_url = s.redis().url();
    let proxy = Proxy::start(socket_of(redis_url.expose_secret())).await;
    let proxied = via(redis_url.expose_secret(), proxy.addr);
    let service = s.serve(&[("REDIS_URL", &proxied), ("LOOKUP_TIMEOUT_MS", "500")]);

    proxy.set(Mode::Refuse);
    let (status, body, took) =
        post(&service, &token, call("conv_redis_down", "+14165550100")).await;
    assert_eq!(status, 200);
    assert_eq!(body["caller_name"], "Alex Morgan");
    assert!(
        took < Duration::from_millis(500 + 3_000),
        "answered in {took:?}"
    );
    assert_eq!(
        s.redis_get(&format!("org:{org}:call:conv_redis_down"))
            .await
            .0,
        None
    );

    // Redis comes back: a background retry writes the context.
    proxy.set(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(15);
    while s
        .redis_get(&format!("org:{org}:call:conv_redis_down"))
        .await
        .0
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "context never written:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(service.logs().contains("\"outcome\":\"degraded\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_postgres_answers_empty_within_the_budget_and_the_service_recovers() {
    let s = Setup::new().await;
    let token = s.acme_with_alex();
    let db_url = s.db.url();
    let proxy = Proxy::start(socket_of(db_url.expose_secret())).await;
    let proxied = via(db_url.expose_secret(), proxy.addr);
    let service = s.serve(&[("DATABASE_URL", &proxied), ("LOOKUP_TIMEOUT_MS", "300")]);
    let (_, body, _) = post(&service, &token, call("warm", "4165550100")).await;
    assert_eq!(body["caller_name"], "Alex");

    proxy.set(Mode::Hang);
    for i in 0..3 {
        let (status, body, took) =
            post(&service, &token, call(&format!("hung{i}"), "4165550100")).await;
        assert_eq!((status, &body), (200, &json!({})));
        assert!(
            took >= Duration::from_millis(300),
            "answered before the budget ran out: {took:?}"
        );
        assert!(
            // The margin stays under the pool's 2 s acquire timeout, so only the budget can
            // explain an answer this fast.
            took < Duration::from_millis(300 + 1_500),
            "answered in {took:?}"
        );
    }

    proxy.set(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body, _) = post(&service, &token, call("recovered", "4165550100")).await;
        if body["caller_name"] == "Alex" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_postgres_answers_empty_within_the_budget_even_for_an_unknown_token() {
    let s = Setup::new().await;
    let org = s.org("Acme", "CA");
    let token = s.secret(&org);
    let proxy = Proxy::start(socket_of(s.db.url().expose_secret())).await;
    proxy.set(Mode::Refuse);
    let proxied = via(s.db.url().expose_secret(), proxy.addr);
    let service = s.serve(&[("DATABASE_URL", &proxied)]);

    for t in [token.as_str(), "unknown-token"] {
        let (status, body, took) = post(&service, t, call("c1", "4165550100")).await;
        assert_eq!((status, body), (200, json!({})));
        assert!(
            // Under the pool's 2 s acquire timeout: only the 800 ms budget explains it.
            took < Duration::from_millis(800 + 1_000),
            "answered in {took:?}"
        );
    }
    let out = relay(&s.db.url(), &["org", "list"]);
    assert!(out.status.success(), "the database itself is fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_with_nothing_set_seeds_a_demo_that_answers_and_later_starts_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        std::process::Command::new(support::RELAY)
            .current_dir(dir.path())
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = Service::adopt(start());
    assert!(
        dir.path().join("data/relay.db").exists(),
        "the default store is sqlite://data/relay.db"
    );
    let banner = first.stdout_until("-d '").await;
    let token = banner
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 43 && !l.contains(' '))
        .unwrap_or_else(|| panic!("no token in:\n{banner}"))
        .to_owned();
    assert!(
        banner.contains(&format!(
            "http://{}/api/webhook/elevenlabs/personalization",
            first.addr
        )),
        "{banner}"
    );
    assert!(first.logs().contains("embedded mode"), "{}", first.logs());
    let (status, body, _) = post(
        &first,
        &token,
        json!({"conversation_id": "demo_1", "caller_id": "+14165550100"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["caller_name"], "Alex Morgan");
    assert_eq!(body["org_name"], "Demo Org");
    drop(first);

    let second = Service::adopt(start());
    let (status, body, _) = post(
        &second,
        &token,
        json!({"conversation_id": "demo_2", "caller_id": "4165550100"}),
    )
    .await;
    assert_eq!(
        (status, body["caller_name"].as_str()),
        (200, Some("Alex Morgan")),
        "the store persisted"
    );
    assert_eq!(
        second.stdout(),
        "",
        "the token is shown once, on the first start only"
    );
}

// --- Operations: shutdown, readiness, metrics, traces ------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_then_refuses_new_connections_and_every_request_in_flight_succeeds() {
    let s = Setup::new().await;
    let token = s.acme_with_alex();
    let db_url = s.db.url();
    let proxy = Proxy::start(socket_of(db_url.expose_secret())).await;
    let proxied = via(db_url.expose_secret(), proxy.addr);
    let mut service = s.serve(&[
        ("DATABASE_URL", &proxied),
        // Requests stay in flight for the whole budget while Postgres hangs.
        ("LOOKUP_TIMEOUT_MS", "2500"),
        ("SHUTDOWN_DRAIN_SECONDS", "2"),
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

    proxy.set(Mode::Hang);
    let mut in_flight: Vec<_> = (0..4).map(|i| send(format!("inflight{i}"))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    service.terminate();

    // During the drain: readiness says so at once, and new connections are still served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(format!("http://{}/readyz", service.addr))
        .await
        .expect("a new connection is accepted during the drain");
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "draining", "checks": {}})
    );
    in_flight.push(send("during-drain".into()));

    // After the drain: new connections are refused while the last request is still in flight.
    tokio::time::sleep(Duration::from_millis(2_400).saturating_sub(signalled.elapsed())).await;
    let refused = reqwest::Client::new()
        .get(format!("http://{}/healthz", service.addr))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a connection was accepted after the drain: {refused:?}"
    );

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
    assert_eq!(calls("postgres", "find_contact", "found"), Some(1.0));
    assert_eq!(calls("postgres", "find_contact", "not_found"), Some(1.0));
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
        ("find_contact", "postgresql", "found"),
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
async fn on_a_redis_cluster_the_contexts_spread_over_every_master_and_readiness_is_ok() {
    let s = Setup {
        db: TestStore::postgres().await,
        redis: Some(TestRedis::create_cluster().await),
    };
    let org = s.org("Acme", "CA");
    let token = s.secret(&org);
    s.import(&org, "phone,first_name\n4165550100,Alex\n");
    let service = s.serve(&[]);
    for i in 0..60 {
        let (status, body, _) = post(&service, &token, call(&format!("cl{i}"), "4165550100")).await;
        assert_eq!((status, &body["caller_name"]), (200, &json!("Alex")));
    }
    for i in 0..60 {
        let (value, ttl) = s.redis_get(&format!("org:{org}:call:cl{i}")).await;
        assert!(value.is_some(), "context cl{i} missing");
        assert!(ttl > 86_000, "ttl {ttl}");
    }
    let per_node = s.redis().keys_per_node();
    assert!(per_node.iter().all(|n| *n > 0), "{per_node:?}");
    let ready = reqwest::get(format!("http://{}/readyz", service.addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(service.logs().contains("\"redis_cluster\":true"));
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
