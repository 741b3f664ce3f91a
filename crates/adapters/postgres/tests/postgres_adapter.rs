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
    let message = unexpected_message(store.list_calls(org.id, None, None, 10).await);
    assert!(
        message.starts_with(&format!("call {call}: bad conversation_id")),
        "{message}"
    );
}

/// A fresh database with one organization, "Acme" in Canada.
async fn db_with_org() -> (TestDb, PgStore, OrgId) {
    use relay_domain::{OrgName, Region};
    use relay_ports::OrganizationAdmin as _;
    let db = TestDb::create().await;
    let store = db.store();
    let org = store
        .create_organization(
            &OrgName::parse("Acme").unwrap(),
            Region::parse("CA").unwrap(),
        )
        .await
        .unwrap();
    (db, store, org.id)
}

fn draft(first: &str, phone: &str, external_id: Option<&str>) -> relay_domain::ContactDraft {
    relay_domain::ContactDraft {
        first_name: Some(first.to_owned()),
        last_name: None,
        phone_raw: phone.to_owned(),
        phone: E164::parse_e164(phone).unwrap(),
        external_id: external_id.map(|e| relay_domain::ExternalId::parse(e).unwrap()),
    }
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    use relay_domain::{Actor, AuditEntry};
    use relay_ports::{AuditLog as _, OrganizationAdmin as _};
    let (db, store, org) = db_with_org().await;
    let seq = store
        .append_audit(&AuditEntry {
            seq: 0,
            at: Utc::now(),
            actor: Actor::Cli,
            org_id: Some(org),
            action: "contact.create".to_owned(),
            target: None,
        })
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET action = 'contact.delete' WHERE seq = $1",
        "DELETE FROM audit_log WHERE seq = $1",
    ] {
        let err = sqlx::query(sql)
            .bind(seq)
            .execute(db.pool())
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Deleting the organization leaves its trail (no foreign key).
    store.delete_organization(org).await.unwrap();
    let left = store.list_audit(Some(org), None, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [seq]);
}

/// The `has_memory` mark the caller lookup relies on (Postgres only): a contact created at, or
/// moved to, a number the organization remembers is answered with that memory.
#[tokio::test]
async fn contacts_created_at_or_moved_to_a_remembered_number_find_its_memory() {
    use relay_domain::ExternalId;
    use relay_ports::{ContactAdmin as _, ContactDirectory as _};
    let (db, store, org) = db_with_org().await;
    for phone in ["+14165550100", "+14165550101", "+14165550102"] {
        sqlx::query(
            "INSERT INTO caller_memory (org_id, phone_e164, completed_calls, last_activity_at)
             VALUES ($1, $2, 1, now())",
        )
        .bind(org.as_uuid())
        .bind(phone)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
    let remembered = |phone: &'static str| {
        let store = store.clone();
        async move {
            let caller = store
                .find_caller(org, &E164::parse_e164(phone).unwrap(), Some(epoch))
                .await
                .unwrap();
            assert!(caller.contact.is_some(), "{phone}: no contact");
            caller.memory.unwrap().map(|m| m.previous_calls)
        }
    };

    let created = store
        .create_contact(org, &draft("Ada", "+14165550100", None))
        .await
        .unwrap();
    assert_eq!(remembered("+14165550100").await, Some(1));

    let stranger = store
        .create_contact(org, &draft("Bob", "+14165550199", None))
        .await
        .unwrap();
    store
        .update_contact(
            org,
            stranger.contact.id,
            &draft("Bob", "+14165550101", None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(remembered("+14165550101").await, Some(1));

    store
        .upsert_by_external_id(
            org,
            &ExternalId::parse("crm-1").unwrap(),
            &draft("Eve", "+14165550102", None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(remembered("+14165550102").await, Some(1));

    // A change that keeps the number keeps the mark.
    store
        .update_contact(
            org,
            created.contact.id,
            &draft("Ada Lovelace", "+14165550100", None),
            None,
        )
        .await
        .unwrap();
    let marked: bool = sqlx::query_scalar("SELECT has_memory FROM contacts WHERE id = $1")
        .bind(created.contact.id.as_uuid())
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(marked);
    assert_eq!(remembered("+14165550100").await, Some(1));
}

/// An import marks the contacts it inserts at a remembered number (and only those), so the
/// caller lookup finds their memory; the ids it gives them are random (version 4) and distinct.
#[tokio::test]
async fn an_import_marks_the_new_contacts_of_remembered_numbers() {
    use relay_domain::NewContact;
    use relay_ports::{ContactDirectory as _, ContactImport as _};
    let (db, store, org) = db_with_org().await;
    sqlx::query(
        "INSERT INTO caller_memory (org_id, phone_e164, completed_calls, last_activity_at)
         VALUES ($1, '+14162000000', 2, now())",
    )
    .bind(org.as_uuid())
    .execute(db.pool())
    .await
    .unwrap();
    let batch: Vec<NewContact> = (0..2_500)
        .map(|n| {
            let phone = format!("+1416{}", 2_000_000 + n);
            NewContact {
                first_name: Some("Ada".to_owned()),
                last_name: None,
                phone_raw: phone.clone(),
                phone: E164::parse_e164(&phone).unwrap(),
            }
        })
        .collect();
    let summary = store.upsert_contacts(org, &batch).await.unwrap();
    assert_eq!(summary.inserted, 2_500);

    let marked: Vec<String> = sqlx::query_scalar(
        "SELECT phone_e164 FROM contacts WHERE org_id = $1 AND has_memory ORDER BY phone_e164",
    )
    .bind(org.as_uuid())
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(marked, ["+14162000000"]);
    let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
    let caller = store
        .find_caller(org, &E164::parse_e164("+14162000000").unwrap(), Some(epoch))
        .await
        .unwrap();
    assert!(caller.contact.is_some());
    assert_eq!(caller.memory.unwrap().map(|m| m.previous_calls), Some(2));

    let (ids, distinct, v4): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT id),
                count(*) FILTER (WHERE substr(id::text, 15, 1) = '4'
                                   AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b'))
           FROM contacts WHERE org_id = $1",
    )
    .bind(org.as_uuid())
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((ids, distinct, v4), (2_500, 2_500, 2_500));
}

#[tokio::test]
async fn stored_management_rows_the_domain_refuses_are_unexpected_data() {
    use relay_ports::{AuditLog as _, ContactAdmin as _, ManagementKeys as _};
    let (db, store, org) = db_with_org().await;
    // Each passes the column's check, but not the domain's rule.
    let contact: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO contacts (org_id, phone_raw, phone_e164, external_id)
         VALUES ($1, '+14165550100', '+14165550100', ' crm-1') RETURNING id",
    )
    .bind(org.as_uuid())
    .fetch_one(db.pool())
    .await
    .unwrap();
    let message = unexpected_message(store.get_contact(org, ContactId::from_uuid(contact)).await);
    assert_eq!(
        message,
        format!(
            "contact {contact}: bad external_id: {}",
            relay_domain::LabelError::Unprintable
        )
    );

    let key: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO management_keys (label, digest) VALUES ('crm ', $1) RETURNING id",
    )
    .bind([7_u8; 32].as_slice())
    .fetch_one(db.pool())
    .await
    .unwrap();
    let message = unexpected_message(store.list_keys(None).await);
    assert!(
        message.starts_with(&format!("key {key}: bad label")),
        "{message}"
    );

    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO audit_log (at, actor, action) VALUES (now(), 'root', 'x') RETURNING seq",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    match store.list_audit(None, None, 10).await {
        Err(relay_ports::RepositoryError::Unexpected(e)) => {
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("audit entry {seq}: bad actor")),
                "{message}"
            );
            assert!(!message.contains("root"), "{message}");
        }
        other => panic!("expected unexpected data, got {other:?}"),
    }
}

/// The race the upsert's `ON CONFLICT DO NOTHING` resolves, made certain: another transaction
/// inserted the external id and has not committed when the upsert reads. The upsert waits for it
/// and then updates that contact.
#[tokio::test]
async fn an_upsert_racing_an_uncommitted_insert_of_its_external_id_updates_it() {
    use relay_domain::{ContactQuery, ExternalId};
    use relay_ports::{ContactAdmin as _, Upserted};
    let (db, store, org) = db_with_org().await;
    let mut other = db.pool().begin().await.unwrap();
    let theirs: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO contacts (org_id, first_name, phone_raw, phone_e164, external_id)
         VALUES ($1, 'Bob', '+14165550100', '+14165550100', 'crm-race') RETURNING id",
    )
    .bind(org.as_uuid())
    .fetch_one(&mut *other)
    .await
    .unwrap();
    let upsert = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .upsert_by_external_id(
                    org,
                    &ExternalId::parse("crm-race").unwrap(),
                    &draft("Ada", "+14165550100", None),
                    None,
                )
                .await
        })
    };
    // Give the upsert time to read (nothing) and block on the insert.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!upsert.is_finished(), "the upsert did not wait");
    other.commit().await.unwrap();
    let upserted = upsert.await.unwrap().unwrap();
    assert_eq!(upserted.outcome, Upserted::Updated);
    assert_eq!(upserted.contact.contact.id.as_uuid(), theirs);
    assert_eq!(upserted.contact.contact.first_name.as_deref(), Some("Ada"));
    assert_eq!(upserted.contact.version, 2);
    let all = store
        .list_contacts(
            org,
            &ContactQuery {
                phone: None,
                name: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}
