//! The Postgres adapter against a real Postgres, a fresh database per test.

use std::time::Duration;

use relay_domain::{E164, NewContact, OrgId, OrgName, Organization, Region, SecretId, ToolToken};
use relay_ports::{
    AdminError, ContactDirectory, ContactImport, OrganizationAdmin, OrganizationDirectory,
    RepositoryError, UpsertSummary,
};
use relay_postgres::testing::TestDb;
use relay_postgres::{PgStore, PoolSettings};
use secrecy::SecretString;

fn token(seed: u8) -> ToolToken {
    ToolToken::from_random_bytes(&[seed; 32])
}

async fn org(store: &PgStore, name: &str) -> Organization {
    store
        .create_organization(&OrgName::parse(name).unwrap(), Region::parse("CA").unwrap())
        .await
        .unwrap()
}

fn contact(first: &str, last: &str, e164: &str) -> NewContact {
    NewContact {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        phone_raw: e164.into(),
        phone: E164::from_normalized(e164).unwrap(),
    }
}

fn e164(s: &str) -> E164 {
    E164::from_normalized(s).unwrap()
}

#[tokio::test]
async fn organization_is_found_by_the_digest_of_a_live_secret() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme Corp").await;
    store.add_secret(acme.id, &token(1).digest()).await.unwrap();

    let found = store
        .find_by_secret_digest(&token(1).digest())
        .await
        .unwrap();
    assert_eq!(found, Some(acme));
    assert_eq!(
        store
            .find_by_secret_digest(&token(2).digest())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn rotation_keeps_both_secrets_live_until_one_is_revoked() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme Corp").await;
    let old = store.add_secret(acme.id, &token(1).digest()).await.unwrap();
    store.add_secret(acme.id, &token(2).digest()).await.unwrap();
    for t in [token(1), token(2)] {
        assert_eq!(
            store
                .find_by_secret_digest(&t.digest())
                .await
                .unwrap()
                .map(|o| o.id),
            Some(acme.id)
        );
    }

    let revoked = store.revoke_secret(old.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        store
            .find_by_secret_digest(&token(1).digest())
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .find_by_secret_digest(&token(2).digest())
            .await
            .unwrap()
            .is_some()
    );

    // Revoking again keeps the first revocation time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store.revoke_secret(old.id).await.unwrap().revoked_at,
        revoked.revoked_at
    );
    let listed = store.list_secrets(acme.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, old.id);
    assert!(listed[0].revoked_at.is_some() && listed[1].revoked_at.is_none());
}

#[tokio::test]
async fn admin_operations_on_missing_rows_are_not_found() {
    let db = TestDb::create().await;
    let store = db.store();
    let nobody = OrgId::from_uuid(uuid::Uuid::new_v4());
    assert!(matches!(
        store.add_secret(nobody, &token(1).digest()).await,
        Err(AdminError::NotFound("organization"))
    ));
    assert!(matches!(
        store.list_secrets(nobody).await,
        Err(AdminError::NotFound("organization"))
    ));
    assert!(matches!(
        store
            .revoke_secret(SecretId::from_uuid(uuid::Uuid::new_v4()))
            .await,
        Err(AdminError::NotFound("secret"))
    ));
    assert!(matches!(
        store
            .upsert_contacts(nobody, &[contact("A", "B", "+14165550100")])
            .await,
        Err(AdminError::NotFound("organization"))
    ));
    assert_eq!(store.find_organization(nobody).await.unwrap(), None);
}

#[tokio::test]
async fn organizations_are_listed_oldest_first() {
    let db = TestDb::create().await;
    let store = db.store();
    let a = org(&store, "First").await;
    let b = org(&store, "Second").await;
    assert_eq!(
        store.list_organizations().await.unwrap(),
        vec![a.clone(), b]
    );
    assert_eq!(store.find_organization(a.id).await.unwrap(), Some(a));
}

#[tokio::test]
async fn contact_is_found_by_number_within_its_organization_only() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme").await;
    let globex = org(&store, "Globex").await;
    store
        .upsert_contacts(globex.id, &[contact("Secret", "Person", "+14165550100")])
        .await
        .unwrap();
    store
        .upsert_contacts(acme.id, &[contact("Alex", "Morgan", "+14165550101")])
        .await
        .unwrap();

    assert_eq!(
        store
            .find_by_phone(acme.id, &e164("+14165550100"))
            .await
            .unwrap(),
        None
    );
    let found = store
        .find_by_phone(acme.id, &e164("+14165550101"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.first_name.as_deref(), found.last_name.as_deref()),
        (Some("Alex"), Some("Morgan"))
    );
    assert_eq!(found.org_id, acme.id);
    assert_eq!(found.phone, e164("+14165550101"));
    assert_eq!(
        store
            .find_by_phone(acme.id, &e164("+14165550199"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn several_contacts_with_one_number_return_the_most_recently_updated_then_highest_id() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme").await;
    // Written by another system: three rows with one number.
    sqlx::query(
        "INSERT INTO contacts (id, org_id, first_name, phone_raw, phone_e164, updated_at) VALUES
           ('00000000-0000-0000-0000-000000000001', $1, 'Old',   'x', '+14165550100', '2024-01-01Z'),
           ('00000000-0000-0000-0000-000000000002', $1, 'TieLo', 'x', '+14165550100', '2025-01-01Z'),
           ('00000000-0000-0000-0000-000000000003', $1, 'TieHi', 'x', '+14165550100', '2025-01-01Z')",
    )
    .bind(acme.id.as_uuid())
    .execute(db.pool())
    .await
    .unwrap();
    let found = store
        .find_by_phone(acme.id, &e164("+14165550100"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.first_name.as_deref(), Some("TieHi"));

    // An import updates that newest row only, and it stays the one found.
    let summary = store
        .upsert_contacts(acme.id, &[contact("Alex", "New", "+14165550100")])
        .await
        .unwrap();
    assert_eq!(
        summary,
        UpsertSummary {
            inserted: 0,
            updated: 1,
            unchanged: 0
        }
    );
    let names: Vec<String> = sqlx::query_scalar("SELECT first_name FROM contacts ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(names, ["Old", "TieLo", "Alex"]);
    let found = store
        .find_by_phone(acme.id, &e164("+14165550100"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_name.as_deref(), Some("New"));
}

#[tokio::test]
async fn reimporting_is_idempotent_and_changes_are_counted() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme").await;
    let batch = [
        contact("Alex", "Morgan", "+14165550100"),
        contact("Sam", "Lee", "+14165550101"),
    ];
    assert_eq!(
        store.upsert_contacts(acme.id, &batch).await.unwrap(),
        UpsertSummary {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );
    let before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(updated_at) FROM contacts")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        store.upsert_contacts(acme.id, &batch).await.unwrap(),
        UpsertSummary {
            inserted: 0,
            updated: 0,
            unchanged: 2
        }
    );
    let after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(updated_at) FROM contacts")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(before, after, "an unchanged row keeps its update time");

    let renamed = [contact("Alexandra", "Morgan", "+14165550100")];
    assert_eq!(
        store.upsert_contacts(acme.id, &renamed).await.unwrap(),
        UpsertSummary {
            inserted: 0,
            updated: 1,
            unchanged: 0
        }
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);
    let found = store
        .find_by_phone(acme.id, &e164("+14165550100"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.first_name.as_deref(), Some("Alexandra"));
}

#[tokio::test]
async fn names_may_be_missing() {
    let db = TestDb::create().await;
    let store = db.store();
    let acme = org(&store, "Acme").await;
    let nameless = NewContact {
        first_name: None,
        last_name: None,
        phone_raw: "416 555 0100".into(),
        phone: e164("+14165550100"),
    };
    store.upsert_contacts(acme.id, &[nameless]).await.unwrap();
    let found = store
        .find_by_phone(acme.id, &e164("+14165550100"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.first_name, found.last_name), (None, None));
}

#[tokio::test]
async fn migrations_can_run_again() {
    let db = TestDb::create().await;
    db.store().migrate().await.unwrap();
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_not_a_missing_row() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let url = SecretString::from("postgres://postgres@127.0.0.1:1/test");
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
    };
    let store = PgStore::connect_lazy(&url, settings).unwrap();
    assert!(matches!(
        store.find_by_secret_digest(&token(1).digest()).await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .find_by_phone(OrgId::from_uuid(uuid::Uuid::nil()), &e164("+14165550100"))
            .await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        PgStore::connect(&url, settings).await,
        Err(RepositoryError::Unavailable(_))
    ));
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
