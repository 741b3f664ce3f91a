//! The storage ports' contract (organizations, secrets, contacts, import).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_domain::{
    CallId, CallKind, CallOutcome, CallRecord, CallSid, CallerMemory, Contact, ContactId,
    ConversationId, FallbackName, MemorySettings, NewContact, OrgId, OrgName, Organization, Region,
    SecretId, ToolToken,
};

use super::{StoreFixture, e164};
use crate::{AdminError, Entity, RepositoryError, UpsertSummary};

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
            s.list_calls(acme.id, None, 10).await.expect("list"),
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
        let stored = s.list_calls(acme.id, None, 10).await.expect("list");
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
            s.list_calls(acme.id, None, 10).await.expect("list").len(),
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
            ids(s.list_calls(acme.id, None, 10).await.expect("list")),
            ["conv_l3", "conv_l2", "conv_l1"]
        );
        let since = DateTime::<Utc>::from_timestamp(1_700_000_060, 0).expect("time");
        assert_eq!(
            ids(s.list_calls(acme.id, Some(since), 10).await.expect("list")),
            ["conv_l3", "conv_l2"]
        );
        assert_eq!(
            ids(s.list_calls(acme.id, None, 1).await.expect("list")),
            ["conv_l3"]
        );
        assert!(matches!(
            s.list_calls(OrgId::from_uuid(uuid::Uuid::new_v4()), None, 10)
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
        assert_eq!(summaries(s.list_calls(short.id, None, 10).await.expect("list")), [false, false]);
        assert_eq!(summaries(s.list_calls(long.id, None, 10).await.expect("list")), [true]);
        assert_eq!(
            summaries(s.list_calls(off.id, None, 10).await.expect("list")),
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
        let records = s.list_calls(acme.id, None, 10).await.expect("list");
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
    }
}
