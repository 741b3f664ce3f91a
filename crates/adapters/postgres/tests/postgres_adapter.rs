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
