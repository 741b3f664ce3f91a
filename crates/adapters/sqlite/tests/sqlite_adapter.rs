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
    let fixture = SqliteFixture::new().await;
    let id = uuid::Uuid::new_v4();
    // Two letters pass the column's check, but name no country.
    sqlx::query(
        "INSERT INTO organizations (id, name, default_region, created_at)
         VALUES (?1, 'Acme', 'XX', 0)",
    )
    .bind(id.to_string())
    .execute(fixture.store.pool())
    .await
    .unwrap();
    let message = unexpected_message(fixture.store.list_organizations().await);
    assert_eq!(
        message,
        format!(
            "organization {id}: bad default_region: unknown region \"XX\": expected an ISO \
             3166-1 alpha-2 country code such as CA or US"
        )
    );
    unexpected_message(fixture.store.find_organization(OrgId::from_uuid(id)).await);
}

#[tokio::test]
async fn a_stored_row_with_an_unreadable_id_or_time_is_unexpected_data() {
    use relay_ports::OrganizationAdmin as _;
    let fixture = SqliteFixture::new().await;
    sqlx::query(
        "INSERT INTO organizations (id, name, default_region, created_at)
         VALUES ('not-a-uuid', 'Acme', 'CA', 0)",
    )
    .execute(fixture.store.pool())
    .await
    .unwrap();
    unexpected_message(fixture.store.list_organizations().await);

    let fixture = SqliteFixture::new().await;
    let org = OrgId::from_uuid(uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO organizations (id, name, default_region, created_at) VALUES (?1, 'Acme', 'CA', 0)",
    )
    .bind(org.to_string())
    .execute(fixture.store.pool())
    .await
    .unwrap();
    // Microseconds no `DateTime` holds.
    sqlx::query(
        "INSERT INTO organization_secrets (id, org_id, digest, created_at)
         VALUES (?1, ?2, zeroblob(32), ?3)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(org.to_string())
    .bind(i64::MAX)
    .execute(fixture.store.pool())
    .await
    .unwrap();
    let message = unexpected_message(fixture.store.list_secrets(org).await);
    assert_eq!(message, format!("bad timestamp {}", i64::MAX));
}

#[tokio::test]
async fn a_stored_call_the_domain_refuses_is_unexpected_data() {
    use relay_domain::{OrgName, Region};
    use relay_ports::{CallLog as _, OrganizationAdmin as _};
    let fixture = SqliteFixture::new().await;
    let org = fixture
        .store
        .create_organization(
            &OrgName::parse("Acme").unwrap(),
            Region::parse("CA").unwrap(),
        )
        .await
        .unwrap();
    let call = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO calls (id, org_id, conversation_id, kind, event_at, received_at)
         VALUES (?1, ?2, 'has space', 'missed', 0, 0)",
    )
    .bind(call.to_string())
    .bind(org.id.to_string())
    .execute(fixture.store.pool())
    .await
    .unwrap();
    let message = unexpected_message(fixture.store.list_calls(org.id, None, None, 10).await);
    assert!(
        message.starts_with(&format!("call {call}: bad conversation_id")),
        "{message}"
    );
}

#[tokio::test]
async fn the_audit_trail_refuses_updates_and_deletes() {
    use relay_domain::{Actor, AuditEntry};
    use relay_ports::AuditLog as _;
    let fixture = SqliteFixture::new().await;
    let entry = AuditEntry {
        seq: 0,
        at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
        actor: Actor::Cli,
        org_id: None,
        action: "organization.create".into(),
        target: None,
    };
    let seq = fixture.store.append_audit(&entry).await.unwrap();
    for sql in [
        "UPDATE audit_log SET action = 'organization.delete' WHERE seq = ?1",
        "DELETE FROM audit_log WHERE seq = ?1",
    ] {
        let refused = sqlx::query(sql)
            .bind(seq)
            .execute(fixture.store.pool())
            .await
            .expect_err(sql);
        assert!(
            refused.to_string().contains("audit_log is append-only"),
            "{refused}"
        );
    }
    let trail = fixture.store.list_audit(None, None, 10).await.unwrap();
    assert_eq!(trail, [AuditEntry { seq, ..entry }]);
}

#[tokio::test]
async fn a_stored_actor_label_or_external_id_the_domain_refuses_is_unexpected_data() {
    use relay_domain::{ApiKeyId, ContactId, OrgName, Region};
    use relay_ports::{
        AuditLog as _, ContactAdmin as _, ManagementKeys as _, OrganizationAdmin as _,
        RepositoryError,
    };
    let fixture = SqliteFixture::new().await;
    sqlx::query("INSERT INTO audit_log (at, actor, action) VALUES (0, 'root', 'x')")
        .execute(fixture.store.pool())
        .await
        .unwrap();
    match fixture.store.list_audit(None, None, 10).await {
        Err(RepositoryError::Unexpected(e)) => {
            assert_eq!(e.to_string(), "audit entry 1: bad actor");
        }
        other => panic!("expected unexpected data, got {other:?}"),
    }

    let key = uuid::Uuid::new_v4();
    // Within the column's length check, but with surrounding whitespace.
    sqlx::query(
        "INSERT INTO management_keys (id, label, digest, created_at)
         VALUES (?1, ' padded ', zeroblob(32), 0)",
    )
    .bind(key.to_string())
    .execute(fixture.store.pool())
    .await
    .unwrap();
    let message = unexpected_message(fixture.store.get_key(ApiKeyId::from_uuid(key)).await);
    assert_eq!(message, format!("key {key}: bad label"));
    unexpected_message(fixture.store.list_keys(None).await);

    let org = fixture
        .store
        .create_organization(
            &OrgName::parse("Acme").unwrap(),
            Region::parse("CA").unwrap(),
        )
        .await
        .unwrap();
    let contact = ContactId::from_uuid(uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO contacts (id, org_id, phone_raw, phone_e164, external_id, created_at, updated_at)
         VALUES (?1, ?2, '+14165550100', '+14165550100', 'crm' || char(10), 0, 0)",
    )
    .bind(contact.to_string())
    .bind(org.id.to_string())
    .execute(fixture.store.pool())
    .await
    .unwrap();
    let message = unexpected_message(fixture.store.get_contact(org.id, contact).await);
    assert_eq!(message, format!("contact {contact}: bad external_id"));
}
