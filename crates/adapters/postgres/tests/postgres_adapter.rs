//! The Postgres adapter against a real Postgres, a fresh database per test: the storage ports'
//! conformance suite, then what is particular to Postgres.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{ContactId, E164, OrgId};
use relay_ports::conformance::{Store, StoreFixture};
use relay_postgres::testing::TestDb;
use relay_postgres::{PgStore, PoolSettings};
use secrecy::SecretString;

struct PgFixture {
    db: TestDb,
    store: PgStore,
}

impl PgFixture {
    async fn new() -> Self {
        let db = TestDb::create().await;
        let store = db.store();
        Self { db, store }
    }
}

#[async_trait]
impl StoreFixture for PgFixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn dead_store(&self) -> Box<dyn Store> {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let url = SecretString::from("postgres://postgres@127.0.0.1:1/test");
        let settings = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(2),
        };
        Box::new(PgStore::connect_lazy(&url, settings).expect("valid URL"))
    }

    async fn insert_raw_contact(
        &self,
        org: OrgId,
        id: ContactId,
        first_name: &str,
        phone: &E164,
        updated_at: DateTime<Utc>,
    ) {
        sqlx::query(
            "INSERT INTO contacts (id, org_id, first_name, phone_raw, phone_e164, updated_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id.as_uuid())
        .bind(org.as_uuid())
        .bind(first_name)
        .bind(phone.as_str())
        .bind(updated_at)
        .execute(self.db.pool())
        .await
        .expect("insert raw contact");
    }
}

relay_ports::store_conformance_tests!(PgFixture::new().await);

#[tokio::test]
async fn connect_now_fails_at_once_when_postgres_is_unreachable() {
    let url = SecretString::from("postgres://postgres@127.0.0.1:1/test");
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
    };
    assert!(matches!(
        PgStore::connect(&url, settings).await,
        Err(relay_ports::RepositoryError::Unavailable(_))
    ));
}

#[tokio::test]
async fn migrations_can_run_again() {
    let db = TestDb::create().await;
    db.store().migrate().await.unwrap();
}

#[tokio::test]
async fn invalid_url_is_reported_without_echoing_it() {
    let err = PgStore::connect_lazy(
        &SecretString::from("postgres://u:hunter2@host:notaport/db"),
        PoolSettings::default(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn ping_answers_and_the_pool_gauges_count_connections() {
    use relay_ports::Probe as _;
    let db = TestDb::create().await;
    let store = PgStore::connect_lazy(
        &db.url(),
        PoolSettings {
            max_connections: 3,
            acquire_timeout: Duration::from_secs(2),
        },
    )
    .unwrap();
    let before = store.pool_stats().unwrap();
    assert_eq!((before.max, before.open, before.in_use), (3, 0, 0));

    store
        .ping()
        .await
        .expect("a live Postgres answers the ping");

    // The ping's connection goes back to the pool in the background: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.pool_stats().unwrap().in_use != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ping's connection never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = store.pool().acquire().await.unwrap();
    let during = store.pool_stats().unwrap();
    // sqlx returns a released connection to the pool in the background, so the acquire may
    // have opened a second one.
    assert!((1..=2).contains(&during.open), "{during:?}");
    assert_eq!((during.in_use, during.waiting), (1, Some(0)));
    drop(held);
}

#[tokio::test]
async fn webhook_queries_waiting_for_a_connection_are_counted() {
    use relay_ports::{OrganizationDirectory as _, Probe as _};
    let db = TestDb::create().await;
    let store = PgStore::connect_lazy(
        &db.url(),
        PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(10),
        },
    )
    .unwrap();
    let held = store.pool().acquire().await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .find_by_secret_digest(
                    &relay_domain::ToolToken::from_random_bytes(&[7; 32]).digest(),
                )
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.pool_stats().unwrap().waiting != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter was never counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    assert!(waiter.await.unwrap().unwrap().is_none());
    assert_eq!(store.pool_stats().unwrap().waiting, Some(0));
}

#[tokio::test]
async fn ping_fails_when_postgres_is_unreachable() {
    use relay_ports::Probe as _;
    let url = SecretString::from("postgres://postgres@127.0.0.1:1/test");
    let store = PgStore::connect_lazy(
        &url,
        PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(2),
        },
    )
    .unwrap();
    assert!(store.ping().await.is_err());
}

/// The `Unexpected` error of an admin call, with its message.
fn unexpected_message<T: std::fmt::Debug>(result: Result<T, relay_ports::AdminError>) -> String {
    match result {
        Err(relay_ports::AdminError::Repository(relay_ports::RepositoryError::Unexpected(e))) => {
            e.to_string()
        }
        other => panic!("expected unexpected data, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_organization_the_domain_refuses_is_unexpected_data() {
    use relay_ports::OrganizationAdmin as _;
    let db = TestDb::create().await;
    // Two capital letters pass the column's check, but name no country.
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO organizations (name, default_region) VALUES ('Acme', 'XX') RETURNING id",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let store = db.store();
    let message = unexpected_message(store.list_organizations().await);
    assert_eq!(
        message,
        format!(
            "organization {id}: bad default_region: unknown region \"XX\": expected an ISO \
             3166-1 alpha-2 country code such as CA or US"
        )
    );
    unexpected_message(store.find_organization(OrgId::from_uuid(id)).await);
}

#[tokio::test]
async fn a_stored_call_the_domain_refuses_is_unexpected_data() {
    use relay_domain::{OrgName, Region};
    use relay_ports::{CallLog as _, OrganizationAdmin as _};
    let db = TestDb::create().await;
    let store = db.store();
    let org = store
        .create_organization(
            &OrgName::parse("Acme").unwrap(),
            Region::parse("CA").unwrap(),
        )
        .await
        .unwrap();
    let call = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO calls (id, org_id, conversation_id, kind, event_at, received_at)
         VALUES ($1, $2, 'has space', 'missed', now(), now())",
    )
    .bind(call)
    .bind(org.id.as_uuid())
    .execute(db.pool())
    .await
    .unwrap();
    let message = unexpected_message(store.list_calls(org.id, None, 10).await);
    assert!(
        message.starts_with(&format!("call {call}: bad conversation_id")),
        "{message}"
    );
}
