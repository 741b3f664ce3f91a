//! End to end, the personalization webhook: the real `relay` binary, data set up through the
//! CLI, requests over HTTP. The behaviour tests run twice: on the embedded adapters (SQLite file,
//! in-process cache) and on Postgres + Redis; the failure tests need a server to break and run on
//! Postgres + Redis, through a proxy that makes it hang or stop. Each test has its own database
//! and Redis key prefix.

mod support;

use std::time::{Duration, Instant};

use relay_redis::testing::TestRedis;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use support::{
    Adapters, Mode, Proxy, Setup, TestStore, call, post, relay, relay_ok, socket_of, via,
};

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
    // here), so the revoked token is refused once that has passed. That elapsed time is what
    // this checks, so the sleep stays: 1.5 s after the revocation is over 1.5 s after the old
    // token's organization was cached (its first request above), past the TTL.
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
