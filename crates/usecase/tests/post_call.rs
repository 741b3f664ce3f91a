//! "Record this call" through its ports, with the in-memory fakes (and a mockall call log where
//! the store must refuse): what is queued during an outage and what is refused, the outbox's and
//! the dead letters' bounds, and the replay.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use relay_domain::{OrgId, Organization, ToolToken};
use relay_ports::fakes::{Behaviour, InMemoryCache, InMemoryOutbox, InMemoryStore};
use relay_ports::{CallLog, MockCallLog, OutboxLimits, RepositoryError};
use relay_usecase::KnownCredentials;
use relay_usecase::post_call::{
    AuthFailure, Credentials, Delivered, Delivery, PostCallPorts, PostCallSettings, RecordCall,
    Refused, SecretSealer, SignatureError, sign,
};
use secrecy::SecretString;

const TRANSCRIPTION: &str = include_str!("fixtures/elevenlabs/post_call_transcription.json");
const WEBHOOK_SECRET: &str = "wsec_7d1f0c3b9a5e4d2f8c6b1a0e9d8c7b6a";

const ROOMY: OutboxLimits = OutboxLimits {
    max_entries: 1_000,
    max_bytes: 64 * 1024 * 1024,
};

struct World {
    store: InMemoryStore,
    outbox: InMemoryOutbox,
    org: Organization,
    token: ToolToken,
    sealer: Arc<SecretSealer>,
}

fn world() -> World {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let sealer = Arc::new(
        SecretSealer::from_base64(&SecretString::from(
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ))
        .unwrap(),
    );
    store.set_sealed_webhook_secret(
        org.id,
        sealer.seal(org.id, &SecretString::from(WEBHOOK_SECRET)),
    );
    World {
        store,
        outbox: InMemoryOutbox::new(),
        org,
        token,
        sealer,
    }
}

impl World {
    fn record_call(&self, outbox: OutboxLimits, dead_letters: OutboxLimits) -> RecordCall {
        self.record_call_with(Arc::new(self.store.clone()), outbox, dead_letters)
    }

    fn record_call_with(
        &self,
        calls: Arc<dyn CallLog>,
        outbox: OutboxLimits,
        dead_letters: OutboxLimits,
    ) -> RecordCall {
        RecordCall::new(
            PostCallPorts {
                orgs: Arc::new(self.store.clone()),
                contacts: Arc::new(self.store.clone()),
                calls,
                cache: Arc::new(InMemoryCache::new()),
                outbox: Some(Arc::new(self.outbox.clone())),
            },
            PostCallSettings {
                budget: Duration::from_millis(300),
                outbox,
                dead_letters,
            },
            Some(Arc::clone(&self.sealer)),
            Arc::new(KnownCredentials::new(Duration::from_secs(3_600), 100)),
        )
    }

    fn bearer(&self, body: &[u8]) -> Delivery {
        Delivery {
            credentials: Credentials::Bearer {
                digest: self.token.digest(),
            },
            body: body.to_vec(),
            received_at: Utc::now(),
        }
    }

    fn signed(&self, org: OrgId, body: &[u8], secret: &str) -> Delivery {
        Delivery {
            credentials: Credentials::Signature {
                org,
                header: sign(body, secret.as_bytes(), Utc::now().timestamp()),
            },
            body: body.to_vec(),
            received_at: Utc::now(),
        }
    }
}

/// Prechecks then delivers, as the route does.
async fn deliver(record: &RecordCall, delivery: Delivery) -> Result<Delivered, Refused> {
    let prechecked = record
        .precheck(&delivery.credentials, delivery.received_at)
        .await?;
    record.deliver(delivery, prechecked).await
}

/// A transcription of another conversation (each is recorded once).
fn transcription(conversation: &str) -> Vec<u8> {
    TRANSCRIPTION
        .replace("conv_01jz8q3w4e5r6t7y8u9i0o1p2a", conversation)
        .into_bytes()
}

#[tokio::test]
async fn credentials_never_confirmed_are_refused_during_an_outage_and_nothing_is_queued() {
    let w = world();
    let record = w.record_call(ROOMY, ROOMY);
    w.store.set_behaviour(Behaviour::Down);
    for delivery in [
        w.bearer(TRANSCRIPTION.as_bytes()),
        w.signed(w.org.id, TRANSCRIPTION.as_bytes(), WEBHOOK_SECRET),
        w.signed(
            OrgId::from_uuid(uuid::Uuid::from_u128(99)),
            TRANSCRIPTION.as_bytes(),
            "guess",
        ),
    ] {
        assert_eq!(deliver(&record, delivery).await, Err(Refused::Unverifiable));
    }
    assert!(w.outbox.entries().is_empty());
}

#[tokio::test]
async fn credentials_confirmed_before_the_outage_verify_a_delivery_which_is_queued() {
    let w = world();
    let record = w.record_call(ROOMY, ROOMY);
    // While the store is up: a recorded call for each kind of credentials.
    assert!(matches!(
        deliver(&record, w.bearer(&transcription("conv_up_1"))).await,
        Ok(Delivered::Recorded { .. })
    ));
    assert!(matches!(
        deliver(
            &record,
            w.signed(w.org.id, &transcription("conv_up_2"), WEBHOOK_SECRET)
        )
        .await,
        Ok(Delivered::Recorded { .. })
    ));

    w.store.set_behaviour(Behaviour::Down);
    let prechecked = record
        .precheck(&w.bearer(b"{}").credentials, Utc::now())
        .await
        .unwrap();
    assert!(
        !prechecked.from_store(),
        "verified from this replica's memory"
    );
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_down_1"))).await,
        Ok(Delivered::Queued)
    );
    assert_eq!(
        deliver(
            &record,
            w.signed(w.org.id, &transcription("conv_down_2"), WEBHOOK_SECRET)
        )
        .await,
        Ok(Delivered::Queued)
    );
    // The remembered secret still checks the signature in full: a forgery is refused.
    assert_eq!(
        deliver(
            &record,
            w.signed(w.org.id, &transcription("conv_forged"), "wsec_forged")
        )
        .await,
        Err(Refused::Unauthorized(AuthFailure::Signature(
            SignatureError::Mismatch
        )))
    );
    assert_eq!(w.outbox.entries().len(), 2);

    w.store.set_behaviour(Behaviour::Healthy);
    let report = record.replay_queued(10).await.unwrap();
    assert_eq!((report.replayed, report.rejected), (2, 0));
    assert_eq!(w.store.records().len(), 4);
}

#[tokio::test]
async fn a_token_the_store_refuses_is_forgotten_at_once() {
    let w = world();
    let record = w.record_call(ROOMY, ROOMY);
    deliver(&record, w.bearer(&transcription("conv_1")))
        .await
        .unwrap();
    w.store.revoke(&w.token);
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_2"))).await,
        Err(Refused::Unauthorized(AuthFailure::UnknownToken))
    );
    w.store.set_behaviour(Behaviour::Down);
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_3"))).await,
        Err(Refused::Unverifiable),
        "a revoked token is not verified from memory"
    );
}

#[tokio::test]
async fn a_full_outbox_refuses_the_delivery_keeps_the_queued_ones_and_counts_it() {
    let w = world();
    let record = w.record_call(
        OutboxLimits {
            max_entries: 1,
            ..ROOMY
        },
        ROOMY,
    );
    deliver(&record, w.bearer(&transcription("conv_0")))
        .await
        .unwrap();
    w.store.set_behaviour(Behaviour::Down);
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_1"))).await,
        Ok(Delivered::Queued)
    );
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_2"))).await,
        Err(Refused::Unavailable)
    );
    assert_eq!(w.outbox.entries().len(), 1, "the queued one is kept");
    assert_eq!(record.stats().full(), 1);
    assert_eq!(record.stats().queued(), 1);
}

#[tokio::test]
async fn a_delivery_too_large_to_queue_is_refused_while_the_store_is_down() {
    let w = world();
    let record = w.record_call(ROOMY, ROOMY);
    deliver(&record, w.bearer(&transcription("conv_0")))
        .await
        .unwrap();
    w.store.set_behaviour(Behaviour::Down);
    let mut event: serde_json::Value = serde_json::from_str(TRANSCRIPTION).unwrap();
    event["data"]["metadata"]["padding"] =
        serde_json::Value::String("x".repeat(relay_usecase::post_call::MAX_QUEUED_BODY_BYTES));
    let body = serde_json::to_vec(&event).unwrap();
    assert_eq!(
        deliver(&record, w.bearer(&body)).await,
        Err(Refused::Unavailable)
    );
    assert!(w.outbox.entries().is_empty());
}

#[tokio::test]
async fn an_insert_the_store_refuses_is_kept_then_dead_lettered_by_the_replay_with_its_reason() {
    let w = world();
    let mut calls = MockCallLog::new();
    calls.expect_record_call().returning(|_, _| {
        Err(RepositoryError::Unexpected(
            "check constraint violated".into(),
        ))
    });
    let record = w.record_call_with(Arc::new(calls), ROOMY, ROOMY);
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_refused"))).await,
        Ok(Delivered::Queued),
        "kept for one more try rather than lost"
    );
    let report = record.replay_queued(10).await.unwrap();
    assert_eq!((report.replayed, report.rejected), (0, 1));
    let dead = w.outbox.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.starts_with("the store refused it"),
        "{}",
        dead[0].1
    );
    assert_eq!(record.stats().rejected(), 1);
}

#[tokio::test]
async fn the_replay_verifies_against_the_store_and_the_dead_letters_stay_within_their_bounds() {
    let w = world();
    let record = w.record_call(
        ROOMY,
        OutboxLimits {
            max_entries: 1,
            ..ROOMY
        },
    );
    deliver(&record, w.bearer(&transcription("conv_0")))
        .await
        .unwrap();
    w.store.set_behaviour(Behaviour::Down);
    for n in 1..=2 {
        assert_eq!(
            deliver(&record, w.bearer(&transcription(&format!("conv_{n}")))).await,
            Ok(Delivered::Queued)
        );
    }
    let report = record.replay_queued(10).await.unwrap();
    assert!(
        report.store_down,
        "still down: nothing replayed, nothing lost"
    );
    assert_eq!(w.outbox.entries().len(), 2);

    // Revoked while queued: memory vouched for it, the store no longer does.
    w.store.set_behaviour(Behaviour::Healthy);
    w.store.revoke(&w.token);
    let report = record.replay_queued(10).await.unwrap();
    assert_eq!((report.replayed, report.rejected), (0, 2));
    let dead = w.outbox.dead_letters();
    assert_eq!(dead.len(), 1, "one dead letter kept, the oldest dropped");
    assert!(dead[0].1.contains("unknown token"), "{}", dead[0].1);
    assert_eq!(record.stats().dead_letters_dropped(), 1);
    assert_eq!(w.store.records().len(), 1, "only the call recorded before");
}

#[tokio::test(start_paused = true)]
async fn a_store_slower_than_the_budget_counts_as_down_and_the_delivery_is_queued_in_time() {
    let w = world();
    let record = w.record_call(ROOMY, ROOMY);
    // Confirmed while the store answers, so they verify during the slowdown.
    assert!(matches!(
        deliver(&record, w.bearer(&transcription("conv_before"))).await,
        Ok(Delivered::Recorded { .. })
    ));
    w.store
        .set_behaviour(Behaviour::Slow(Duration::from_secs(60)));
    let started = tokio::time::Instant::now();
    assert_eq!(
        deliver(&record, w.bearer(&transcription("conv_slow"))).await,
        Ok(Delivered::Queued)
    );
    // One budget (300 ms) for the credentials, one for the record: ElevenLabs is answered long
    // before the store would have.
    assert!(
        started.elapsed() <= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.outbox.entries().len(), 1);
    assert_eq!(w.store.records().len(), 1, "only the call recorded before");
}

#[tokio::test(start_paused = true)]
async fn the_replay_loop_keeps_deliveries_while_the_store_is_down_and_records_them_once_it_is_back()
{
    let w = world();
    let record = Arc::new(w.record_call(ROOMY, ROOMY));
    assert!(matches!(
        deliver(&record, w.bearer(&transcription("conv_before"))).await,
        Ok(Delivered::Recorded { .. })
    ));
    w.store.set_behaviour(Behaviour::Down);
    for conversation in ["conv_q1", "conv_q2"] {
        assert_eq!(
            deliver(&record, w.bearer(&transcription(conversation))).await,
            Ok(Delivered::Queued)
        );
    }
    let looping = tokio::spawn({
        let record = Arc::clone(&record);
        async move { record.replay_periodically(Duration::from_secs(5)).await }
    });
    // Rounds at 0, 5 and 10 s, the store down each time.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(w.outbox.entries().len(), 2, "kept while the store is down");
    assert!(
        w.outbox.dead_letters().is_empty(),
        "an outage is no reason to give up"
    );
    w.store.set_behaviour(Behaviour::Healthy);
    // The round at 15 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(w.outbox.entries().is_empty());
    assert_eq!(w.store.records().len(), 3);
    assert_eq!(record.stats().replayed(), 2);
    assert_eq!(record.stats().rejected(), 0);
    looping.abort();
}

/// A transcription of `conversation` whose echoed `user_id` and caller number are these.
fn transcription_from(conversation: &str, user_id: &str, number: Option<&str>) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&transcription(conversation)).unwrap();
    event["event_timestamp"] = serde_json::json!(Utc::now().timestamp());
    event["data"]["user_id"] = serde_json::json!(user_id);
    event["data"]["metadata"]["phone_call"]["external_number"] = serde_json::json!(number);
    event["data"]["conversation_initiation_client_data"]["dynamic_variables"]["caller_number"] =
        serde_json::json!(number);
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn the_user_id_the_initiation_answered_links_the_contact_when_the_context_is_gone() {
    let w = world();
    let alex = relay_ports::ContactDirectory::find_by_phone(
        &w.store,
        w.org.id,
        &relay_domain::E164::parse_e164("+14165550100").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let record = w.record_call(ROOMY, ROOMY);

    // No cached context and no number: only the user id says who it was.
    let body = transcription_from("conv_user_id", &alex.id.to_string(), None);
    let delivered = deliver(&record, w.bearer(&body)).await.unwrap();
    assert!(
        matches!(delivered, Delivered::Recorded { contact_id: Some(id), .. } if id == alex.id),
        "{delivered:?}"
    );
    assert_eq!(w.store.records()[0].contact_id, Some(alex.id));
}

#[tokio::test]
async fn a_user_id_naming_another_organizations_contact_links_and_remembers_nothing_there() {
    let w = world();
    let (globex, _) = w.store.add_org("Globex", "CA");
    let bob = w
        .store
        .add_contact(globex.id, Some("Bob"), None, "+14165550177");
    let record = w.record_call(ROOMY, ROOMY);

    // Acme's delivery names Globex's contact and number.
    let body = transcription_from(
        "conv_foreign_user",
        &bob.id.to_string(),
        Some("+14165550177"),
    );
    deliver(&record, w.bearer(&body)).await.unwrap();

    let records = w.store.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].org_id, w.org.id);
    assert_eq!(
        records[0].contact_id, None,
        "never another organization's contact"
    );
    assert!(
        !w.store.has_memory(globex.id, &bob.phone),
        "Globex remembers nothing of Acme's call"
    );
}
