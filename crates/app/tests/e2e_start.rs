//! End to end, the first start: `relay` with nothing set creates its embedded store, seeds a
//! demo organization and shows its token once.

mod support;

use serde_json::json;
use support::{Service, post};

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
