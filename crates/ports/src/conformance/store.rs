//! The storage ports' contract (organizations, secrets, contacts, import).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_domain::{
    Actor, ApiKeyId, AuditEntry, CallId, CallKind, CallOutcome, CallRecord, CallSid, CallerMemory,
    Contact, ContactDraft, ContactId, ContactQuery, ConversationId, ExternalId, FallbackName,
    KeyLabel, KeyScope, MemorySettings, NewContact, OrgId, OrgName, Organization, Region, SecretId,
    ToolToken,
};

use super::{StoreFixture, e164};
use crate::{AdminError, Entity, RepositoryError, UpsertSummary, Upserted};

fn token(seed: u8) -> ToolToken {
    ToolToken::from_random_bytes(&[seed; 32])
}

async fn org(f: &impl StoreFixture, name: &str) -> Organization {
    f.store()
        .create_organization(
            &OrgName::parse(name).expect("name"),
            Region::parse("CA").expect("region"),
        )
        .await
        .expect("create organization")
}

fn contact(first: &str, phone: &str) -> NewContact {
    NewContact {
        first_name: Some(first.into()),
        last_name: Some("Test".into()),
        phone_raw: phone.into(),
        phone: e164(phone),
    }
}

fn ext(raw: &str) -> ExternalId {
    ExternalId::parse(raw).expect("external id")
}

fn draft(first: &str, phone: &str, external_id: Option<&str>) -> ContactDraft {
    ContactDraft {
        first_name: Some(first.into()),
        last_name: Some("Test".into()),
        phone_raw: phone.into(),
        phone: e164(phone),
        external_id: external_id.map(ext),
    }
}

/// Every contact, one page.
fn everything() -> ContactQuery {
    ContactQuery {
        phone: None,
        name: None,
        after: None,
        limit: 100,
    }
}

fn audit(org: Option<OrgId>, action: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_000).expect("time"),
        actor: Actor::Key(ApiKeyId::from_uuid(uuid::Uuid::from_u128(5))),
        org_id: org,
        action: action.into(),
        target: Some("7a0c2b1e-0000-4000-8000-000000000001".into()),
    }
}

fn record(org: OrgId, conversation: &str, received_secs: i64) -> CallRecord {
    let at = DateTime::<Utc>::from_timestamp(1_700_000_000 + received_secs, 0).expect("time");
    CallRecord {
        id: CallId::from_uuid(uuid::Uuid::new_v4()),
        org_id: org,
        contact_id: None,
        conversation_id: ConversationId::parse(conversation).expect("id"),
        call_sid: Some(CallSid::parse(format!("CA_{conversation}")).expect("sid")),
        agent_id: Some("agent_1".into()),
        kind: CallKind::Completed,
        direction: Some("inbound".into()),
        external_number: Some("+14165550100".into()),
        caller: Some(e164("+14165550100")),
        agent_number: Some("+12362320246".into()),
        status: Some("done".into()),
        call_successful: Some("success".into()),
        summary: Some("Asked about opening hours.".into()),
        duration_secs: Some(74),
        started_at: Some(at - TimeDelta::seconds(80)),
        event_at: at - TimeDelta::seconds(2),
        received_at: at,
    }
}

/// Long before any test record.
fn since_epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(0, 0).expect("time")
}

/// The memory `org` keeps of `phone`, read with an unbounded window.
async fn memory_of(f: &impl StoreFixture, org: OrgId, phone: &str) -> Option<CallerMemory> {
    f.store()
        .find_caller(org, &e164(phone), Some(since_epoch()))
        .await
        .expect("find")
        .memory
        .expect("readable")
}

/// Imports one contact of `org` and reads it back.
async fn imported(f: &impl StoreFixture, org: OrgId, first: &str, phone: &str) -> Contact {
    f.store()
        .upsert_contacts(org, &[contact(first, phone)])
        .await
        .expect("import");
    f.store()
        .find_by_phone(org, &e164(phone))
        .await
        .expect("find")
        .expect("contact")
}

cases! {
    /// One `#[tokio::test]` per storage contract case, on fixtures built by `$fixture` (an async
    /// expression evaluated afresh for each case). `in_process: $fixture` leaves out the
    /// backend-gone case, for a store without a backend to lose.
    macro store_conformance_tests for store;

    /// A live secret's digest finds its organization; an unknown digest finds nothing.
    pub async fn organization_is_found_by_a_live_secret(f: &impl StoreFixture) {
        let acme = org(f, "Acme Corp").await;
        f.store()
            .add_secret(acme.id, &token(1).digest())
            .await
            .expect("add secret");
        assert_eq!(
            f.store()
                .find_by_secret_digest(&token(1).digest())
                .await
                .expect("find"),
            Some(acme)
        );
        assert_eq!(
            f.store()
                .find_by_secret_digest(&token(2).digest())
                .await
                .expect("find"),
            None
        );
    }

    /// Two live secrets both work; revoking one stops only that one, and revoking twice keeps the
    /// first revocation time.
    pub async fn secrets_rotate_and_revoke(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let old = s
            .add_secret(acme.id, &token(1).digest())
            .await
            .expect("add");
        s.add_secret(acme.id, &token(2).digest())
            .await
            .expect("add");
        for t in [token(1), token(2)] {
            assert!(
                s.find_by_secret_digest(&t.digest())
                    .await
                    .expect("find")
                    .is_some()
            );
        }
        let revoked = s.revoke_secret(old.id).await.expect("revoke");
        assert!(revoked.revoked_at.is_some());
        assert_eq!(
            s.find_by_secret_digest(&token(1).digest())
                .await
                .expect("find"),
            None
        );
        assert!(
            s.find_by_secret_digest(&token(2).digest())
                .await
                .expect("find")
                .is_some()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            s.revoke_secret(old.id)
                .await
                .expect("revoke again")
                .revoked_at,
            revoked.revoked_at
        );
        let listed = s.list_secrets(acme.id).await.expect("list");
        assert_eq!(
            listed
                .iter()
                .map(|x| x.revoked_at.is_some())
                .collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(listed[0].id, old.id);
    }

    /// Missing organizations and secrets are `NotFound`, never an empty success.
    pub async fn missing_rows_are_not_found(f: &impl StoreFixture) {
        let s = f.store();
        let nobody = OrgId::from_uuid(uuid::Uuid::new_v4());
        assert!(matches!(
            s.add_secret(nobody, &token(1).digest()).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        assert!(matches!(
            s.list_secrets(nobody).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        assert!(matches!(
            s.revoke_secret(SecretId::from_uuid(uuid::Uuid::new_v4()))
                .await,
            Err(AdminError::NotFound(Entity::Secret))
        ));
        assert!(matches!(
            s.upsert_contacts(nobody, &[contact("A", "+14165550100")])
                .await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        assert_eq!(s.find_organization(nobody).await.expect("find"), None);
    }

    /// Organizations list oldest first.
    pub async fn organizations_list_oldest_first(f: &impl StoreFixture) {
        let a = org(f, "First").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = org(f, "Second").await;
        assert_eq!(
            f.store().list_organizations().await.expect("list"),
            vec![a.clone(), b]
        );
        assert_eq!(
            f.store().find_organization(a.id).await.expect("find"),
            Some(a)
        );
    }

    /// A contact is found by number within its organization only.
    pub async fn contacts_are_scoped_to_their_organization(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        s.upsert_contacts(globex.id, &[contact("Secret", "+14165550100")])
            .await
            .expect("import");
        s.upsert_contacts(acme.id, &[contact("Alex", "+14165550101")])
            .await
            .expect("import");
        assert_eq!(
            s.find_by_phone(acme.id, &e164("+14165550100"))
                .await
                .expect("find"),
            None
        );
        let found = s
            .find_by_phone(acme.id, &e164("+14165550101"))
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            (found.first_name.as_deref(), found.org_id),
            (Some("Alex"), acme.id)
        );
        assert_eq!(found.phone, e164("+14165550101"));
        assert_eq!(
            s.find_by_phone(acme.id, &e164("+14165550199"))
                .await
                .expect("find"),
            None
        );
    }

    /// Several contacts with one number: the newest wins, then the highest id; an import updates
    /// that one.
    pub async fn newest_of_several_matches_wins(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let number = e164("+14165550100");
        let at = |y: i32| {
            DateTime::<Utc>::from_timestamp(0, 0).expect("epoch")
                + TimeDelta::days(365 * i64::from(y - 1970))
        };
        let id = |n: u128| ContactId::from_uuid(uuid::Uuid::from_u128(n));
        // The oldest row has the highest id: if an import touched every row, the tie-break would
        // pick it and the last assertion would fail.
        f.insert_raw_contact(acme.id, id(3), "Old", &number, at(2024))
            .await;
        f.insert_raw_contact(acme.id, id(1), "TieLo", &number, at(2025))
            .await;
        f.insert_raw_contact(acme.id, id(2), "TieHi", &number, at(2025))
            .await;
        let found = s
            .find_by_phone(acme.id, &number)
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            (found.id, found.first_name.as_deref()),
            (id(2), Some("TieHi"))
        );

        let summary = s
            .upsert_contacts(acme.id, &[contact("Alex", "+14165550100")])
            .await
            .expect("import");
        assert_eq!(
            summary,
            UpsertSummary {
                inserted: 0,
                updated: 1,
                unchanged: 0
            }
        );
        let found = s
            .find_by_phone(acme.id, &number)
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            (found.id, found.first_name.as_deref()),
            (id(2), Some("Alex"))
        );
    }

    /// Re-importing the same data changes nothing; a changed name is one update.
    pub async fn import_is_idempotent(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let batch = [
            contact("Alex", "+14165550100"),
            contact("Sam", "+14165550101"),
        ];
        assert_eq!(
            s.upsert_contacts(acme.id, &batch).await.expect("import"),
            UpsertSummary {
                inserted: 2,
                updated: 0,
                unchanged: 0
            }
        );
        let before = s
            .find_by_phone(acme.id, &e164("+14165550100"))
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            s.upsert_contacts(acme.id, &batch).await.expect("import"),
            UpsertSummary {
                inserted: 0,
                updated: 0,
                unchanged: 2
            }
        );
        let after = s
            .find_by_phone(acme.id, &e164("+14165550100"))
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            before.updated_at, after.updated_at,
            "an unchanged contact keeps its update time"
        );
        let renamed = [contact("Alexandra", "+14165550100")];
        assert_eq!(
            s.upsert_contacts(acme.id, &renamed).await.expect("import"),
            UpsertSummary {
                inserted: 0,
                updated: 1,
                unchanged: 0
            }
        );
        let found = s
            .find_by_phone(acme.id, &e164("+14165550100"))
            .await
            .expect("find")
            .expect("contact");
        assert_eq!(
            (found.id, found.first_name.as_deref()),
            (before.id, Some("Alexandra"))
        );
    }

    /// Contacts may have no names.
    pub async fn names_may_be_missing(f: &impl StoreFixture) {
        let acme = org(f, "Acme").await;
        let nameless = NewContact {
            first_name: None,
            last_name: None,
            phone_raw: "416 555 0100".into(),
            phone: e164("+14165550100"),
        };
        f.store()
            .upsert_contacts(acme.id, &[nameless])
            .await
            .expect("import");
        let found = f
            .store()
            .find_by_phone(acme.id, &e164("+14165550100"))
            .await
            .expect("find")
            .expect("contact");
        assert_eq!((found.first_name, found.last_name), (None, None));
    }

    /// The unknown-caller fallback is stored and read back with the organization.
    pub async fn unknown_caller_name_is_kept(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        assert_eq!(acme.unknown_caller_name, "", "none by default");
        s.add_secret(acme.id, &token(1).digest())
            .await
            .expect("add");
        let updated = s
            .set_unknown_caller_name(acme.id, &FallbackName::sanitized("there"))
            .await
            .expect("set");
        assert_eq!(updated.unknown_caller_name, "there");
        let found = s
            .find_by_secret_digest(&token(1).digest())
            .await
            .expect("find")
            .expect("org");
        assert_eq!(found.unknown_caller_name, "there");
        assert!(matches!(
            s.set_unknown_caller_name(
                OrgId::from_uuid(uuid::Uuid::new_v4()),
                &FallbackName::sanitized("x"),
            )
                .await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// The sealed webhook secret is stored per organization and replaced by a second one.
    pub async fn webhook_secret_is_kept(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        assert_eq!(s.webhook_signer(acme.id).await.expect("get"), None);
        s.set_webhook_secret(acme.id, b"sealed-1")
            .await
            .expect("set");
        s.set_webhook_secret(acme.id, b"sealed-2")
            .await
            .expect("set");
        assert_eq!(
            s.webhook_signer(acme.id).await.expect("get"),
            Some(crate::WebhookSigner {
                org: acme,
                sealed_secret: b"sealed-2".to_vec()
            })
        );
        assert_eq!(s.webhook_signer(globex.id).await.expect("get"), None);
        assert!(matches!(
            s.set_webhook_secret(OrgId::from_uuid(uuid::Uuid::new_v4()), b"x")
                .await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// A call record round-trips; a second delivery of the same conversation stores nothing and
    /// answers the first id.
    pub async fn call_records_are_stored_once(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let alex = imported(f, acme.id, "Alex", "+14165550100").await;
        let mut first = record(acme.id, "conv_once", 0);
        first.contact_id = Some(alex.id);
        let stored = s.record_call(&first, false).await.expect("record");
        assert_eq!((stored.id, stored.inserted), (first.id, true));

        let mut again = record(acme.id, "conv_once", 60);
        again.summary = Some("a different summary".into());
        let duplicate = s.record_call(&again, false).await.expect("record");
        assert_eq!((duplicate.id, duplicate.inserted), (first.id, false));
        assert_eq!(
            s.list_calls(acme.id, None, None, 10).await.expect("list"),
            vec![first],
            "the duplicate changed nothing"
        );
    }

    /// A contact that no longer exists, or is another organization's, is stored as none instead
    /// of failing the record.
    pub async fn a_record_never_links_a_missing_or_foreign_contact(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        let foreign = imported(f, globex.id, "Secret", "+14165550100").await;
        let mut other_org = record(acme.id, "conv_foreign", 0);
        other_org.contact_id = Some(foreign.id);
        let mut deleted = record(acme.id, "conv_deleted", 1);
        deleted.contact_id = Some(ContactId::from_uuid(uuid::Uuid::new_v4()));
        for r in [&other_org, &deleted] {
            assert!(s.record_call(r, false).await.expect("recorded").inserted);
        }
        let stored = s.list_calls(acme.id, None, None, 10).await.expect("list");
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|r| r.contact_id.is_none()), "{stored:?}");
    }

    /// Concurrent deliveries of one conversation store one record and all answer its id.
    pub async fn concurrent_duplicates_store_one_record(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let attempts: Vec<CallRecord> = (0..8).map(|_| record(acme.id, "conv_race", 0)).collect();
        let results =
            futures_util::future::join_all(attempts.iter().map(|r| s.record_call(r, false))).await;
        let results: Vec<_> = results.into_iter().map(|r| r.expect("record")).collect();
        assert_eq!(results.iter().filter(|r| r.inserted).count(), 1);
        let winner = results.iter().find(|r| r.inserted).expect("one insert").id;
        assert!(results.iter().all(|r| r.id == winner));
        assert_eq!(
            s.list_calls(acme.id, None, None, 10).await.expect("list").len(),
            1
        );
    }

    /// Records list newest first, per organization, from `since`, at most `limit`.
    pub async fn calls_list_newest_first(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        for (i, conv) in ["conv_l1", "conv_l2", "conv_l3"].iter().enumerate() {
            s.record_call(&record(acme.id, conv, i as i64 * 60), false)
                .await
                .expect("record");
        }
        s.record_call(&record(globex.id, "conv_l1", 0), false)
            .await
            .expect("same conversation id, other organization");
        let ids = |v: Vec<CallRecord>| {
            v.into_iter()
                .map(|r| r.conversation_id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(s.list_calls(acme.id, None, None, 10).await.expect("list")),
            ["conv_l3", "conv_l2", "conv_l1"]
        );
        let since = DateTime::<Utc>::from_timestamp(1_700_000_060, 0).expect("time");
        assert_eq!(
            ids(s.list_calls(acme.id, Some(since), None, 10).await.expect("list")),
            ["conv_l3", "conv_l2"]
        );
        assert_eq!(
            ids(s.list_calls(acme.id, None, None, 1).await.expect("list")),
            ["conv_l3"]
        );
        assert!(matches!(
            s.list_calls(OrgId::from_uuid(uuid::Uuid::new_v4()), None, None, 10)
                .await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// The memory of a number counts each completed call once, and the newest call (by event
    /// time, whatever order deliveries arrive in) gives the time, summary and outcome.
    pub async fn memory_counts_calls_and_keeps_the_newest(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let alex = imported(f, acme.id, "Alex", "+14165550100").await;
        let mut older = record(acme.id, "conv_m1", 0);
        older.summary = Some("First call.".into());
        let mut newest = record(acme.id, "conv_m2", 120);
        newest.summary = Some("Asked about\nthe {{invoice}}.".into());
        newest.call_successful = Some("failure".into());
        let mut late = record(acme.id, "conv_m3", 60);
        late.summary = Some("Arrived late.".into());
        for r in [&older, &newest, &late] {
            assert!(s.record_call(r, true).await.expect("record").inserted);
        }
        let caller = s
            .find_caller(acme.id, &e164("+14165550100"), Some(since_epoch()))
            .await
            .expect("find");
        assert_eq!(caller.contact.map(|c| c.id), Some(alex.id));
        let memory = caller.memory.expect("readable").expect("remembered");
        assert_eq!(memory.previous_calls, 3);
        assert_eq!(memory.last_call_at, Some(newest.event_at));
        assert_eq!(
            memory.last_call_summary.as_ref().map(|s| s.as_str()),
            Some("Asked about the invoice."),
            "stored one line, without template syntax"
        );
        assert_eq!(memory.last_call_outcome, CallOutcome::Failure);
        let off = s
            .find_caller(acme.id, &e164("+14165550100"), None)
            .await
            .expect("find");
        assert!(matches!(off.memory, Ok(None)), "memory off reads none");
        assert!(off.contact.is_some());
    }

    /// A duplicate delivery changes no memory; a record stored with `remember: false` leaves
    /// none.
    pub async fn memory_is_idempotent_and_only_kept_when_asked(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        s.record_call(&record(acme.id, "conv_i1", 0), true).await.expect("record");
        let again = s.record_call(&record(acme.id, "conv_i1", 30), true).await.expect("record");
        assert!(!again.inserted);
        let mut stranger = record(acme.id, "conv_i2", 60);
        stranger.caller = Some(e164("+14165550199"));
        s.record_call(&stranger, false).await.expect("record");
        assert_eq!(memory_of(f, acme.id, "+14165550100").await.map(|m| m.previous_calls), Some(1));
        assert_eq!(memory_of(f, acme.id, "+14165550199").await, None);
    }

    /// Concurrent calls of one number (different conversations) all count.
    pub async fn concurrent_calls_of_one_number_all_count(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let records: Vec<CallRecord> = (0..8)
            .map(|i| record(acme.id, &format!("conv_c{i}"), i))
            .collect();
        let results =
            futures_util::future::join_all(records.iter().map(|r| s.record_call(r, true))).await;
        assert!(results.into_iter().all(|r| r.expect("record").inserted));
        assert_eq!(memory_of(f, acme.id, "+14165550100").await.map(|m| m.previous_calls), Some(8));
    }

    /// Memory belongs to one organization, contact or not: another organization with the same
    /// number remembers nothing.
    pub async fn memory_is_scoped_by_organization(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        imported(f, globex.id, "Alex", "+14165550100").await;
        s.record_call(&record(acme.id, "conv_s1", 0), true).await.expect("record");
        let acme_side = s
            .find_caller(acme.id, &e164("+14165550100"), Some(since_epoch()))
            .await
            .expect("find");
        assert!(acme_side.contact.is_none(), "not Acme's contact");
        assert_eq!(acme_side.memory.expect("readable").map(|m| m.previous_calls), Some(1));
        let globex_side = s
            .find_caller(globex.id, &e164("+14165550100"), Some(since_epoch()))
            .await
            .expect("find");
        assert!(globex_side.contact.is_some());
        assert!(matches!(globex_side.memory, Ok(None)));
    }

    /// Missed calls count from the newest completed call on; a completed call clears those
    /// before it, and a missed call older than it does not count.
    pub async fn missed_calls_count_since_the_last_completed_call(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let missed = |conv: &str, secs| {
            let mut r = record(acme.id, conv, secs);
            r.kind = CallKind::Missed;
            r.summary = None;
            r
        };
        s.record_call(&missed("conv_x0", 0), true).await.expect("record");
        let only_missed = memory_of(f, acme.id, "+14165550100").await.expect("memory");
        assert_eq!((only_missed.previous_calls, only_missed.missed_calls_since_last), (0, 1));
        assert_eq!(only_missed.last_call_at, None);
        s.record_call(&record(acme.id, "conv_x1", 10), true).await.expect("record");
        s.record_call(&missed("conv_x2", 60), true).await.expect("record");
        s.record_call(&missed("conv_x3", 90), true).await.expect("record");
        assert_eq!(memory_of(f, acme.id, "+14165550100").await.expect("memory").missed_calls_since_last, 2);
        s.record_call(&record(acme.id, "conv_x4", 120), true).await.expect("record");
        s.record_call(&missed("conv_x5", 100), true).await.expect("record");
        let memory = memory_of(f, acme.id, "+14165550100").await.expect("memory");
        assert_eq!((memory.previous_calls, memory.missed_calls_since_last), (2, 0));
    }

    /// Memory older than the window is not read; the purge deletes it (and summaries of older
    /// call records) per organization's retention, in bounded batches, and all of an
    /// organization whose memory is off.
    pub async fn memory_and_summaries_expire_with_the_retention(f: &impl StoreFixture) {
        let s = f.store();
        let short = org(f, "Short").await;
        let long = org(f, "Long").await;
        let off = org(f, "Off").await;
        s.set_memory(short.id, MemorySettings::new(1, true).expect("settings")).await.expect("set");
        s.set_memory(long.id, MemorySettings::new(3650, true).expect("settings")).await.expect("set");
        for (o, conv) in [(short.id, "conv_e1"), (long.id, "conv_e2"), (off.id, "conv_e3")] {
            s.record_call(&record(o, conv, 0), true).await.expect("record");
        }
        let mut second = record(short.id, "conv_e4", 10);
        second.caller = Some(e164("+14165550111"));
        s.record_call(&second, true).await.expect("record");
        s.set_memory(off.id, MemorySettings::new(0, false).expect("settings")).await.expect("set");
        let event = record(short.id, "x", 0).event_at;
        let after_window = event + TimeDelta::days(2);
        let unread = s
            .find_caller(short.id, &e164("+14165550100"), Some(event + TimeDelta::seconds(1)))
            .await
            .expect("find");
        assert!(matches!(unread.memory, Ok(None)), "older than the window is not read");

        let first = s.purge_expired(after_window, 1).await.expect("purge");
        assert!(first.ran);
        assert_eq!((first.memories, first.summaries), (1, 1), "bounded by the batch");
        let mut total = first;
        loop {
            let more = s.purge_expired(after_window, 1).await.expect("purge");
            if more.memories == 0 && more.summaries == 0 {
                break;
            }
            total += more;
        }
        assert_eq!(total.memories, 3, "short's two and off's one");
        assert_eq!(total.summaries, 2, "short's two records");
        for (o, n) in [(short.id, "+14165550100"), (short.id, "+14165550111"), (off.id, "+14165550100")] {
            let all = s.find_caller(o, &e164(n), Some(since_epoch())).await.expect("find");
            assert!(matches!(all.memory, Ok(None)), "purged");
        }
        assert!(memory_of(f, long.id, "+14165550100").await.is_some(), "within its window");
        let summaries = |v: Vec<CallRecord>| v.into_iter().map(|r| r.summary.is_some()).collect::<Vec<_>>();
        assert_eq!(summaries(s.list_calls(short.id, None, None, 10).await.expect("list")), [false, false]);
        assert_eq!(summaries(s.list_calls(long.id, None, None, 10).await.expect("list")), [true]);
        assert_eq!(
            summaries(s.list_calls(off.id, None, None, 10).await.expect("list")),
            [true],
            "memory off keeps the call log's summaries"
        );
    }

    /// Where an organization does not remember unknown callers (the default, or turned off
    /// later), the purge deletes the memory of numbers that are no contact's, and keeps its
    /// contacts'.
    pub async fn strangers_are_forgotten_where_unknown_callers_are_off(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        imported(f, acme.id, "Alex", "+14165550100").await;
        s.set_memory(acme.id, MemorySettings::new(90, true).expect("settings")).await.expect("set");
        s.record_call(&record(acme.id, "conv_k1", 0), true).await.expect("record");
        let mut stranger = record(acme.id, "conv_k2", 10);
        stranger.caller = Some(e164("+14165550199"));
        s.record_call(&stranger, true).await.expect("record");
        let soon = record(acme.id, "x", 0).event_at + TimeDelta::hours(1);
        let kept = s.purge_expired(soon, 100).await.expect("purge");
        assert_eq!(kept.memories, 0, "unknown callers are on");
        s.set_memory(acme.id, MemorySettings::default()).await.expect("set");
        let purged = s.purge_expired(soon, 100).await.expect("purge");
        assert_eq!(purged.memories, 1);
        assert_eq!(memory_of(f, acme.id, "+14165550199").await, None);
        assert!(memory_of(f, acme.id, "+14165550100").await.is_some(), "a contact's stays");
    }

    /// Erasure deletes the organization's contacts with the number, its memory and the caller's
    /// details in its call records, nothing of another organization's, and a second run removes
    /// nothing.
    pub async fn forgetting_a_caller_removes_everything_of_them(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let globex = org(f, "Globex").await;
        let alex = imported(f, acme.id, "Alex", "+14165550100").await;
        imported(f, globex.id, "Alex", "+14165550100").await;
        let mut linked = record(acme.id, "conv_f1", 0);
        linked.contact_id = Some(alex.id);
        linked.caller = None;
        let by_number = record(acme.id, "conv_f2", 10);
        let mut other = record(acme.id, "conv_f3", 20);
        other.caller = Some(e164("+14165550111"));
        for r in [&linked, &by_number, &other] {
            s.record_call(r, true).await.expect("record");
        }
        s.record_call(&record(globex.id, "conv_f1", 0), true).await.expect("record");

        let forgotten = s.forget_caller(acme.id, &e164("+14165550100")).await.expect("forget");
        assert_eq!(forgotten.contacts, vec![alex.id]);
        assert_eq!((forgotten.memories, forgotten.calls), (1, 2));
        let after = s.find_caller(acme.id, &e164("+14165550100"), Some(since_epoch())).await.expect("find");
        assert!(after.contact.is_none());
        assert!(matches!(after.memory, Ok(None)));
        let records = s.list_calls(acme.id, None, None, 10).await.expect("list");
        for r in records.iter().filter(|r| r.conversation_id.as_str() != "conv_f3") {
            assert_eq!(
                (&r.summary, &r.external_number, &r.caller, &r.agent_number, r.contact_id),
                (&None, &None, &None, &None, None),
                "{}", r.conversation_id
            );
        }
        let kept = records.iter().find(|r| r.conversation_id.as_str() == "conv_f3").expect("other caller");
        assert!(kept.summary.is_some() && kept.caller.is_some());
        assert!(memory_of(f, acme.id, "+14165550111").await.is_some());
        assert!(memory_of(f, globex.id, "+14165550100").await.is_some(), "another organization's");
        let globex_side = s.find_caller(globex.id, &e164("+14165550100"), None).await.expect("find");
        assert!(globex_side.contact.is_some());

        let again = s.forget_caller(acme.id, &e164("+14165550100")).await.expect("forget");
        assert_eq!(again, crate::Forgotten::default(), "idempotent");
        assert!(matches!(
            s.forget_caller(OrgId::from_uuid(uuid::Uuid::new_v4()), &e164("+14165550100")).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// A number remembered before it became a contact: the contact imported later is answered
    /// with the memory, and so is a contact imported before the first call.
    pub async fn memory_is_found_whenever_the_contact_was_imported(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        s.record_call(&record(acme.id, "conv_j1", 0), true).await.expect("record");
        let alex = imported(f, acme.id, "Alex", "+14165550100").await;
        let later = s
            .find_caller(acme.id, &e164("+14165550100"), Some(since_epoch()))
            .await
            .expect("find");
        assert_eq!(later.contact.map(|c| c.id), Some(alex.id));
        assert_eq!(later.memory.expect("readable").map(|m| m.previous_calls), Some(1));
        let sam = imported(f, acme.id, "Sam", "+14165550111").await;
        assert!(memory_of(f, acme.id, "+14165550111").await.is_none());
        let mut first_call = record(acme.id, "conv_j2", 10);
        first_call.caller = Some(e164("+14165550111"));
        s.record_call(&first_call, true).await.expect("record");
        let found = s
            .find_caller(acme.id, &e164("+14165550111"), Some(since_epoch()))
            .await
            .expect("find");
        assert_eq!(found.contact.map(|c| c.id), Some(sam.id));
        assert_eq!(found.memory.expect("readable").map(|m| m.previous_calls), Some(1));
    }

    /// Memory rules round-trip and new organizations get the defaults.
    pub async fn memory_settings_are_stored(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        assert_eq!(acme.memory, MemorySettings::default());
        let settings = MemorySettings::new(7, true).expect("settings");
        let updated = s.set_memory(acme.id, settings).await.expect("set");
        assert_eq!(updated.memory, settings);
        assert_eq!(
            s.find_organization(acme.id).await.expect("find").map(|o| o.memory),
            Some(settings)
        );
        assert!(matches!(
            s.set_memory(OrgId::from_uuid(uuid::Uuid::new_v4()), settings).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// A contact created through the management port is read back as written, at version 1;
    /// each change increments the version, an identical write changes nothing, a stale
    /// version changes nothing, and another organization sees none of it.
    pub async fn contacts_are_created_read_updated_and_versioned(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        let created = s
            .create_contact(acme.id, &draft("Ada", "+14165550100", Some("crm-1")))
            .await
            .expect("create");
        assert_eq!(created.version, 1);
        assert_eq!(created.external_id, Some(ext("crm-1")));
        assert_eq!(created.phone_raw, "+14165550100");
        assert_eq!(created.contact.first_name.as_deref(), Some("Ada"));
        assert_eq!(created.contact.org_id, acme.id);
        let id = created.contact.id;
        assert_eq!(s.get_contact(acme.id, id).await.expect("get"), Some(created.clone()));
        assert_eq!(
            s.find_by_phone(acme.id, &e164("+14165550100")).await.expect("find").map(|c| c.id),
            Some(id),
            "the webhook matches it"
        );

        let moved = s
            .update_contact(acme.id, id, &draft("Ada", "+14165550111", Some("crm-1")), None)
            .await
            .expect("update");
        assert_eq!((moved.contact.id, moved.version), (id, 2));
        assert_eq!(moved.contact.phone, e164("+14165550111"));
        assert!(s.find_by_phone(acme.id, &e164("+14165550100")).await.expect("find").is_none());
        assert_eq!(
            s.find_by_phone(acme.id, &e164("+14165550111")).await.expect("find").map(|c| c.id),
            Some(id)
        );

        let same = s
            .update_contact(acme.id, id, &draft("Ada", "+14165550111", Some("crm-1")), Some(2))
            .await
            .expect("identical update");
        assert_eq!(same, moved, "an identical write changes nothing, not even the version");

        let stale = s
            .update_contact(acme.id, id, &draft("Eve", "+14165550111", None), Some(1))
            .await;
        assert!(matches!(stale, Err(AdminError::VersionMismatch(Entity::Contact))), "{stale:?}");
        assert_eq!(s.get_contact(acme.id, id).await.expect("get"), Some(moved.clone()));

        assert_eq!(s.get_contact(other.id, id).await.expect("get"), None);
        let foreign = s
            .update_contact(other.id, id, &draft("Eve", "+14165550111", None), None)
            .await;
        assert!(matches!(foreign, Err(AdminError::NotFound(Entity::Contact))), "{foreign:?}");
        let missing = s
            .create_contact(OrgId::from_uuid(uuid::Uuid::from_u128(77)), &draft("Eve", "+14165550111", None))
            .await;
        assert!(matches!(missing, Err(AdminError::NotFound(Entity::Organization))), "{missing:?}");
    }

    /// An external id names one contact per organization: a second contact cannot take it,
    /// another organization can use the same.
    pub async fn external_ids_are_unique_per_organization(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        s.create_contact(acme.id, &draft("Ada", "+14165550100", Some("crm-1")))
            .await
            .expect("create");
        let twice = s
            .create_contact(acme.id, &draft("Bob", "+14165550101", Some("crm-1")))
            .await;
        assert!(matches!(twice, Err(AdminError::ExternalIdTaken)), "{twice:?}");
        s.create_contact(other.id, &draft("Eve", "+14165550100", Some("crm-1")))
            .await
            .expect("another organization may use the same external id");
        let bob = s
            .create_contact(acme.id, &draft("Bob", "+14165550101", None))
            .await
            .expect("create");
        let taken = s
            .update_contact(acme.id, bob.contact.id, &draft("Bob", "+14165550101", Some("crm-1")), None)
            .await;
        assert!(matches!(taken, Err(AdminError::ExternalIdTaken)), "{taken:?}");
        assert_eq!(s.get_contact(acme.id, bob.contact.id).await.expect("get"), Some(bob));
    }

    /// Upserting by external id creates, then updates in place (a changed number stays the same
    /// contact), and leaves identical data untouched; a condition on the version is honoured.
    pub async fn upsert_by_external_id_creates_updates_and_leaves_identical_data_alone(
        f: &impl StoreFixture,
    ) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let key = ext("crm-7");
        let first = s
            .upsert_by_external_id(acme.id, &key, &draft("Ada", "+14165550100", None), None)
            .await
            .expect("upsert");
        assert_eq!(first.outcome, Upserted::Created);
        assert_eq!((first.contact.version, first.contact.external_id.clone()), (1, Some(key.clone())));
        let again = s
            .upsert_by_external_id(acme.id, &key, &draft("Ada", "+14165550100", None), None)
            .await
            .expect("upsert");
        assert_eq!(again.outcome, Upserted::Unchanged);
        assert_eq!(again.contact, first.contact, "not even the update time moves");
        let moved = s
            .upsert_by_external_id(acme.id, &key, &draft("Ada", "+14165550111", None), Some(1))
            .await
            .expect("upsert");
        assert_eq!(moved.outcome, Upserted::Updated);
        assert_eq!((moved.contact.contact.id, moved.contact.version), (first.contact.contact.id, 2));
        assert!(s.find_by_phone(acme.id, &e164("+14165550100")).await.expect("find").is_none());
        let stale = s
            .upsert_by_external_id(acme.id, &key, &draft("Eve", "+14165550111", None), Some(1))
            .await;
        assert!(matches!(stale, Err(AdminError::VersionMismatch(Entity::Contact))), "{stale:?}");
        let absent = s
            .upsert_by_external_id(acme.id, &ext("crm-8"), &draft("Eve", "+14165550122", None), Some(1))
            .await;
        assert!(matches!(absent, Err(AdminError::VersionMismatch(Entity::Contact))), "{absent:?}");
        let all = s.list_contacts(acme.id, &everything()).await.expect("list");
        assert_eq!(all.len(), 1, "{all:?}");
        let missing = s
            .upsert_by_external_id(OrgId::from_uuid(uuid::Uuid::from_u128(77)), &key, &draft("Eve", "+14165550111", None), None)
            .await;
        assert!(matches!(missing, Err(AdminError::NotFound(Entity::Organization))), "{missing:?}");
    }

    /// Concurrent upserts of one external id make one contact.
    pub async fn concurrent_upserts_of_one_external_id_make_one_contact(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let key = ext("crm-race");
        let drafts: Vec<ContactDraft> = (0..8)
            .map(|i| draft(&format!("Ada{i}"), "+14165550100", None))
            .collect();
        let results = futures_util::future::join_all(
            drafts.iter().map(|d| s.upsert_by_external_id(acme.id, &key, d, None)),
        )
        .await;
        let outcomes: Vec<Upserted> = results.into_iter().map(|r| r.expect("upsert").outcome).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == Upserted::Created).count(), 1, "{outcomes:?}");
        let all = s.list_contacts(acme.id, &everything()).await.expect("list");
        assert_eq!(all.len(), 1, "{all:?}");
    }

    /// Deleting a contact deletes the memory of its number; its call records stay, unlinked;
    /// the webhook no longer finds it. A stale version deletes nothing.
    pub async fn deleting_a_contact_takes_its_memory_and_unlinks_its_calls(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let ada = s
            .create_contact(acme.id, &draft("Ada", "+14165550100", None))
            .await
            .expect("create");
        let mut call = record(acme.id, "conv_del", 0);
        call.contact_id = Some(ada.contact.id);
        s.record_call(&call, true).await.expect("record");
        assert!(memory_of(f, acme.id, "+14165550100").await.is_some());
        let stale = s.delete_contact(acme.id, ada.contact.id, Some(9)).await;
        assert!(matches!(stale, Err(AdminError::VersionMismatch(Entity::Contact))), "{stale:?}");
        let deleted = s.delete_contact(acme.id, ada.contact.id, Some(1)).await.expect("delete");
        assert_eq!(deleted, ada);
        assert!(s.find_by_phone(acme.id, &e164("+14165550100")).await.expect("find").is_none());
        assert_eq!(memory_of(f, acme.id, "+14165550100").await, None);
        let kept = s.get_call(acme.id, call.id).await.expect("get").expect("record stays");
        assert_eq!(kept.contact_id, None);
        let again = s.delete_contact(acme.id, ada.contact.id, None).await;
        assert!(matches!(again, Err(AdminError::NotFound(Entity::Contact))), "{again:?}");
    }

    /// Contacts list in id order, a page at a time, filtered by number or by a part of a name
    /// (ASCII case ignored, `%` and `_` literal); another organization's never appear.
    pub async fn contacts_list_in_pages_and_filter_by_number_or_name(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        let mut made = Vec::new();
        for (first, phone) in [
            ("Ada", "+14165550100"),
            ("ADAM", "+14165550101"),
            ("Bob", "+14165550102"),
            ("100%", "+14165550103"),
            ("Eve_x", "+14165550100"),
        ] {
            made.push(s.create_contact(acme.id, &draft(first, phone, None)).await.expect("create"));
        }
        s.create_contact(other.id, &draft("Ada", "+14165550100", None)).await.expect("create");
        made.sort_by_key(|c| c.contact.id);
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list_contacts(acme.id, &ContactQuery { after, limit: 2, ..everything() })
                .await
                .expect("list");
            after = page.last().map(|c| c.contact.id);
            let done = page.len() < 2;
            pages.push(page);
            if done {
                break;
            }
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(pages.concat(), made);

        let names = |found: Vec<relay_domain::ManagedContact>| {
            let mut names: Vec<String> =
                found.into_iter().filter_map(|c| c.contact.first_name).collect();
            names.sort();
            names
        };
        let query = |phone: Option<&str>, name: Option<&str>| ContactQuery {
            phone: phone.map(e164),
            name: name.map(str::to_owned),
            ..everything()
        };
        assert_eq!(names(s.list_contacts(acme.id, &query(Some("+14165550100"), None)).await.expect("list")), ["Ada", "Eve_x"]);
        assert_eq!(names(s.list_contacts(acme.id, &query(None, Some("ada"))).await.expect("list")), ["ADAM", "Ada"]);
        assert_eq!(names(s.list_contacts(acme.id, &query(None, Some("%"))).await.expect("list")), ["100%"]);
        assert_eq!(names(s.list_contacts(acme.id, &query(None, Some("_"))).await.expect("list")), ["Eve_x"]);
        assert_eq!(names(s.list_contacts(acme.id, &query(None, Some("test"))).await.expect("list")).len(), 5, "last names match too");
        let missing = s.list_contacts(OrgId::from_uuid(uuid::Uuid::from_u128(77)), &everything()).await;
        assert!(matches!(missing, Err(AdminError::NotFound(Entity::Organization))), "{missing:?}");
    }

    /// An import that changes a contact increments its version; one that changes nothing does
    /// not.
    pub async fn import_increments_the_version_of_what_it_changes(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let ada = s
            .create_contact(acme.id, &draft("Ada", "+14165550100", Some("crm-1")))
            .await
            .expect("create");
        s.upsert_contacts(acme.id, &[contact("Ada", "+14165550100")]).await.expect("import");
        let after = s.get_contact(acme.id, ada.contact.id).await.expect("get").expect("contact");
        assert_eq!(after.version, 1, "the import found the same data");
        s.upsert_contacts(acme.id, &[contact("Adele", "+14165550100")]).await.expect("import");
        let after = s.get_contact(acme.id, ada.contact.id).await.expect("get").expect("contact");
        assert_eq!((after.version, after.contact.first_name.as_deref()), (2, Some("Adele")));
        assert_eq!(after.external_id, Some(ext("crm-1")), "an import keeps the external id");
    }

    /// A batch of thousands (more than an import batch used to hold) is counted row by row: the
    /// new numbers inserted, the changed contacts updated to a new version, the others left
    /// exactly as they were.
    pub async fn a_large_batch_counts_each_row_and_versions_only_what_changed(
        f: &impl StoreFixture,
    ) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let phone = |n: u32| format!("+1416{}", 2_000_000 + n);
        let first: Vec<NewContact> = (0..3_000).map(|n| contact("Ada", &phone(n))).collect();
        assert_eq!(
            s.upsert_contacts(acme.id, &first).await.expect("import"),
            UpsertSummary {
                inserted: 3_000,
                updated: 0,
                unchanged: 0
            }
        );
        let find = |n: u32| async move {
            s.find_by_phone(acme.id, &e164(&phone(n)))
                .await
                .expect("find")
                .expect("contact")
        };
        let (kept, renamed) = (find(0).await, find(1).await);
        // Every odd number of the first 3,000 renamed, 2,000 new numbers after them.
        let second: Vec<NewContact> = (0..5_000)
            .map(|n| contact(if n % 2 == 1 && n < 3_000 { "Bea" } else { "Ada" }, &phone(n)))
            .collect();
        assert_eq!(
            s.upsert_contacts(acme.id, &second).await.expect("import"),
            UpsertSummary {
                inserted: 2_000,
                updated: 1_500,
                unchanged: 1_500
            }
        );
        let get = |id: ContactId| async move {
            s.get_contact(acme.id, id)
                .await
                .expect("get")
                .expect("contact")
        };
        let kept_after = get(kept.id).await;
        assert_eq!(
            (kept_after.version, kept_after.contact.updated_at),
            (1, kept.updated_at),
            "unchanged: same version, same update time"
        );
        let renamed_after = get(renamed.id).await;
        assert_eq!(
            (renamed_after.version, renamed_after.contact.first_name.as_deref()),
            (2, Some("Bea"))
        );
        assert!(renamed_after.contact.updated_at >= renamed.updated_at);
        assert_eq!(find(4_999).await.first_name.as_deref(), Some("Ada"));
    }

    /// Two imports of the same new numbers into one organization at once insert each number
    /// once: one inserts, the other finds them.
    pub async fn concurrent_imports_of_one_organization_insert_each_number_once(
        f: &impl StoreFixture,
    ) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let batch: Vec<NewContact> = (0..2_500)
            .map(|n| contact("Ada", &format!("+1647{}", 2_000_000 + n)))
            .collect();
        let results = futures_util::future::join_all(
            (0..2).map(|_| s.upsert_contacts(acme.id, &batch)),
        )
        .await;
        let mut total = UpsertSummary::default();
        for result in results {
            total += result.expect("import");
        }
        assert_eq!(
            total,
            UpsertSummary {
                inserted: 2_500,
                updated: 0,
                unchanged: 2_500
            }
        );
    }

    /// A management key authenticates by its digest until it is revoked; operator keys and an
    /// organization's keys list apart; revoking twice keeps the first time.
    pub async fn management_keys_authenticate_until_revoked(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let label = KeyLabel::parse("crm sync").expect("label");
        let operator = s.create_key(KeyScope::Operator, &label, &token(31).digest()).await.expect("create");
        let own = s
            .create_key(KeyScope::Organization(acme.id), &label, &token(32).digest())
            .await
            .expect("create");
        assert_eq!((operator.scope, own.scope), (KeyScope::Operator, KeyScope::Organization(acme.id)));
        assert_eq!(own.label, label);
        assert_eq!(s.find_key(&token(31).digest()).await.expect("find"), Some(operator.clone()));
        assert_eq!(s.find_key(&token(32).digest()).await.expect("find"), Some(own.clone()));
        assert_eq!(s.find_key(&token(33).digest()).await.expect("find"), None);
        assert_eq!(s.list_keys(None).await.expect("list"), vec![operator.clone()]);
        assert_eq!(s.list_keys(Some(acme.id)).await.expect("list"), vec![own.clone()]);
        assert_eq!(s.get_key(own.id).await.expect("get"), Some(own.clone()));

        let revoked = s.revoke_key(own.id).await.expect("revoke");
        let at = revoked.revoked_at.expect("revoked");
        assert_eq!(s.find_key(&token(32).digest()).await.expect("find"), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.revoke_key(own.id).await.expect("revoke").revoked_at, Some(at));
        assert_eq!(s.get_key(own.id).await.expect("get"), Some(revoked));
        let unknown = ApiKeyId::from_uuid(uuid::Uuid::from_u128(99));
        assert!(matches!(s.revoke_key(unknown).await, Err(AdminError::NotFound(Entity::Key))));
        assert_eq!(s.get_key(unknown).await.expect("get"), None);
        let missing = s
            .create_key(KeyScope::Organization(OrgId::from_uuid(uuid::Uuid::from_u128(77))), &label, &token(34).digest())
            .await;
        assert!(matches!(missing, Err(AdminError::NotFound(Entity::Organization))), "{missing:?}");
    }

    /// Organizations are renamed and moved to another region.
    pub async fn organizations_are_renamed_and_moved(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let renamed = s
            .rename_organization(acme.id, &OrgName::parse("Acme Two").expect("name"))
            .await
            .expect("rename");
        assert_eq!(renamed.name.as_str(), "Acme Two");
        let moved = s
            .set_default_region(acme.id, Region::parse("GB").expect("region"))
            .await
            .expect("region");
        assert_eq!((moved.name.as_str(), moved.default_region.code()), ("Acme Two", "GB"));
        assert_eq!(s.find_organization(acme.id).await.expect("find"), Some(moved));
        let nobody = OrgId::from_uuid(uuid::Uuid::from_u128(77));
        assert!(matches!(
            s.rename_organization(nobody, &OrgName::parse("X").expect("name")).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        assert!(matches!(
            s.set_default_region(nobody, Region::parse("GB").expect("region")).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
    }

    /// Deleting an organization deletes everything it owns (secrets, keys, contacts, calls,
    /// memory) and nothing of another's; the audit trail stays.
    pub async fn deleting_an_organization_deletes_what_it_owns(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        for o in [&acme, &other] {
            let seed = if o.id == acme.id { 41 } else { 42 };
            s.add_secret(o.id, &token(seed).digest()).await.expect("secret");
            s.create_key(KeyScope::Organization(o.id), &KeyLabel::parse("k").expect("label"), &token(seed + 10).digest())
                .await
                .expect("key");
            s.create_contact(o.id, &draft("Ada", "+14165550100", Some("crm-1"))).await.expect("contact");
            s.record_call(&record(o.id, "conv_org", 0), true).await.expect("record");
        }
        let call = s.list_calls(acme.id, None, None, 10).await.expect("calls")[0].id;
        let entry = audit(Some(acme.id), "organization.delete");
        s.append_audit(&entry).await.expect("audit");

        s.delete_organization(acme.id).await.expect("delete");
        assert_eq!(s.find_organization(acme.id).await.expect("find"), None);
        assert_eq!(s.find_by_secret_digest(&token(41).digest()).await.expect("find"), None);
        assert_eq!(s.find_key(&token(51).digest()).await.expect("find"), None);
        assert!(s.find_by_phone(acme.id, &e164("+14165550100")).await.expect("find").is_none());
        assert_eq!(memory_of(f, acme.id, "+14165550100").await, None);
        assert_eq!(s.get_call(acme.id, call).await.expect("get"), None);
        assert!(matches!(
            s.list_contacts(acme.id, &everything()).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        assert!(matches!(
            s.delete_organization(acme.id).await,
            Err(AdminError::NotFound(Entity::Organization))
        ));
        let trail = s.list_audit(Some(acme.id), None, 10).await.expect("audit");
        assert_eq!(trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["organization.delete"]);

        assert!(s.find_by_secret_digest(&token(42).digest()).await.expect("find").is_some());
        assert!(s.find_key(&token(52).digest()).await.expect("find").is_some());
        assert!(s.find_by_phone(other.id, &e164("+14165550100")).await.expect("find").is_some());
        assert!(memory_of(f, other.id, "+14165550100").await.is_some());
        assert_eq!(s.list_calls(other.id, None, None, 10).await.expect("calls").len(), 1);
    }

    /// The audit trail lists newest first, all of it or one organization's, a page at a time,
    /// and reads back what was written.
    pub async fn audit_entries_list_newest_first(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        let mut seqs = Vec::new();
        for entry in [
            audit(Some(acme.id), "contact.create"),
            audit(Some(other.id), "contact.delete"),
            audit(None, "organization.create"),
            audit(Some(acme.id), "contact.update"),
        ] {
            seqs.push(s.append_audit(&entry).await.expect("append"));
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let all = s.list_audit(None, None, 10).await.expect("list");
        assert_eq!(
            all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["contact.update", "organization.create", "contact.delete", "contact.create"]
        );
        let mut expected = audit(Some(acme.id), "contact.update");
        expected.seq = seqs[3];
        assert_eq!(all[0], expected, "read back as written");
        let acme_only = s.list_audit(Some(acme.id), None, 10).await.expect("list");
        assert_eq!(acme_only.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[3], seqs[0]]);
        let page = s.list_audit(None, Some(seqs[2]), 1).await.expect("list");
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[1]]);
    }

    /// Call records page by cursor, newest first, receipt-time ties broken by id, without gaps
    /// or repeats.
    pub async fn calls_page_by_cursor_without_gaps_or_repeats(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        for i in 0..7 {
            // Pairs share a receipt time.
            s.record_call(&record(acme.id, &format!("conv_page{i}"), i / 2), false)
                .await
                .expect("record");
        }
        let all = s.list_calls(acme.id, None, None, 100).await.expect("list");
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = s.list_calls(acme.id, None, before, 3).await.expect("page");
            before = page.last().map(|r| crate::CallCursor { received_at: r.received_at, id: r.id });
            let done = page.len() < 3;
            paged.extend(page.into_iter().map(|r| r.id));
            if done {
                break;
            }
        }
        assert_eq!(paged, all.iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!(paged.len(), 7);
        assert!(all.windows(2).all(|w| (w[0].received_at, w[0].id) > (w[1].received_at, w[1].id)));
    }

    /// A call record is got by its id within its organization only.
    pub async fn calls_are_got_by_id_within_their_organization(f: &impl StoreFixture) {
        let s = f.store();
        let (acme, other) = (org(f, "Acme").await, org(f, "Other").await);
        let call = record(acme.id, "conv_get", 0);
        s.record_call(&call, false).await.expect("record");
        let got = s.get_call(acme.id, call.id).await.expect("get").expect("found");
        assert_eq!((got.id, got.conversation_id.clone()), (call.id, call.conversation_id.clone()));
        assert_eq!(s.get_call(other.id, call.id).await.expect("get"), None);
    }

    needs a backend:

    /// A backend that is gone gives `Unavailable` on the webhook path, never "not found".
    pub async fn gone_backend_is_unavailable(f: &impl StoreFixture) {
        let dead = f.dead_store();
        assert!(matches!(
            dead.find_by_secret_digest(&token(1).digest()).await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert!(matches!(
            dead.find_by_phone(OrgId::from_uuid(uuid::Uuid::nil()), &e164("+14165550100"))
                .await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert!(matches!(
            dead.list_organizations().await,
            Err(AdminError::Repository(RepositoryError::Unavailable(_)))
        ));
        let nobody = OrgId::from_uuid(uuid::Uuid::nil());
        assert!(matches!(
            dead.record_call(&record(nobody, "conv_dead", 0), false).await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert!(matches!(
            dead.webhook_signer(nobody).await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert!(matches!(
            dead.find_key(&token(1).digest()).await,
            Err(RepositoryError::Unavailable(_))
        ));
    }
}
