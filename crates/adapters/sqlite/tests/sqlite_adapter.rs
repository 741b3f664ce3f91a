//! The SQLite adapter, a fresh database file per test: the storage ports' conformance suite, then
//! what is particular to SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_domain::{ContactId, E164, OrgId};
use relay_ports::conformance::{Store, StoreFixture};
use relay_sqlite::SqliteStore;
use secrecy::SecretString;

struct SqliteFixture {
    dir: tempfile::TempDir,
    store: SqliteStore,
}

impl SqliteFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = SecretString::from(format!("sqlite://{}/relay.db", dir.path().display()));
        let (store, fresh) = SqliteStore::open(&url, true).await.expect("open");
        assert!(fresh);
        store.migrate().await.expect("migrate");
        Self { dir, store }
    }
}

#[async_trait]
impl StoreFixture for SqliteFixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn dead_store(&self) -> Box<dyn Store> {
        // A file inside a folder that does not exist cannot be opened.
        let url = format!(
            "sqlite://{}/missing/dir/relay.db",
            self.dir.path().display()
        );
        Box::new(SqliteStore::open_lazy(&SecretString::from(url)).expect("valid URL"))
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
            "INSERT INTO contacts (id, org_id, first_name, phone_raw, phone_e164, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?5)",
        )
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(first_name)
        .bind(phone.as_str())
        .bind(updated_at.timestamp_micros())
        .execute(self.store.pool())
        .await
        .expect("insert raw contact");
    }
}

relay_ports::store_conformance_tests!(SqliteFixture::new().await);

#[tokio::test]
async fn reopening_an_existing_file_is_not_fresh_and_migrations_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/nested/relay.db", dir.path().display()));
    let (store, fresh) = SqliteStore::open(&url, true).await.unwrap();
    assert!(fresh, "the folder and file are created");
    store.migrate().await.unwrap();
    drop(store);
    let (store, fresh) = SqliteStore::open(&url, true).await.unwrap();
    assert!(!fresh);
    store.migrate().await.unwrap();
}

#[tokio::test]
async fn ping_answers_and_the_pool_gauges_do_not_claim_to_count_waiters() {
    use relay_ports::Probe as _;
    let fixture = SqliteFixture::new().await;
    fixture.store.ping().await.expect("the file answers");
    let stats = fixture.store.pool_stats().unwrap();
    assert!(stats.max >= 1 && stats.open >= 1, "{stats:?}");
    assert_eq!(stats.waiting, None);
}
