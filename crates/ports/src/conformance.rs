//! Adapter conformance suites (`test-helpers` feature): the contract of each port, written once
//! and run against every adapter of that port, so swapping adapters is proven, not hoped.
//!
//! An adapter's test file invokes [`cache_conformance_tests!`](crate::cache_conformance_tests) or
//! [`store_conformance_tests!`](crate::store_conformance_tests) with an expression that builds a
//! fresh fixture; each case becomes its own `#[tokio::test]`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use relay_domain::{
    CallContext, CallId, CallKey, CallKind, CallRecord, CallSid, Contact, ContactId,
    ConversationId, E164, NewContact, OrgId, OrgName, Organization, Region, SecretId, ToolToken,
};

pub use crate::Store;
use crate::{
    AdminError, Appended, CacheError, CallContextCache, DeliveryOutbox, OutboxBound, OutboxLimits,
    RepositoryError, UpsertSummary,
};

/// What the cache suite needs from an adapter's test setup.
#[async_trait]
pub trait CacheFixture: Send + Sync {
    /// A cache on a live backend, isolated from other tests.
    fn cache(&self) -> &dyn CallContextCache;
    /// A cache whose backend is gone (unreachable); `None` for a cache with no backend to lose
    /// (in-process), whose suite is generated with `cache_conformance_tests!(in_process: ..)`
    /// and so has no backend-gone case.
    fn dead_cache(&self) -> Option<Box<dyn CallContextCache>>;
}

/// What the outbox suite needs from an adapter's test setup.
#[async_trait]
pub trait OutboxFixture: Send + Sync {
    /// An empty outbox on a live backend, isolated from other tests.
    fn outbox(&self) -> &dyn DeliveryOutbox;
    /// The dead letters, oldest first: each payload with its reason.
    async fn dead_letters(&self) -> Vec<(Vec<u8>, String)>;
}

/// What the store suite needs from an adapter's test setup.
#[async_trait]
pub trait StoreFixture: Send + Sync {
    /// A store on a fresh, empty, migrated database.
    fn store(&self) -> &dyn Store;
    /// A store whose backend is gone (unreachable).
    fn dead_store(&self) -> Box<dyn Store>;
    /// Writes a contact the way another system might: no import rules, this id and update time.
    async fn insert_raw_contact(
        &self,
        org: OrgId,
        id: ContactId,
        first_name: &str,
        phone: &E164,
        updated_at: DateTime<Utc>,
    );
}

fn context(conversation: &str, contact: Option<u128>) -> CallContext {
    CallContext {
        conversation_id: Some(ConversationId::parse(conversation).expect("valid id")),
        call_sid: None,
        org_id: org1(),
        contact_id: contact.map(|c| ContactId::from_uuid(uuid::Uuid::from_u128(c))),
        caller_number: Some(e164("+14165550100")),
        called_number: Some("+12362320246".into()),
        agent_id: Some("agent_1".into()),
        received_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("timestamp"),
    }
}

/// The organization of [`context`].
fn org1() -> OrgId {
    OrgId::from_uuid(uuid::Uuid::from_u128(1))
}

fn e164(s: &str) -> E164 {
    E164::from_normalized(s).expect("E.164 test number")
}

fn conv(s: &str) -> CallKey {
    CallKey::Conversation(ConversationId::parse(s).expect("valid id"))
}

fn sid(s: &str) -> CallKey {
    CallKey::CallSid(CallSid::parse(s).expect("valid id"))
}

/// The call-context cache contract.
pub mod cache {
    use super::*;

    /// `put` then `get` gives back the same context.
    pub async fn put_then_get_round_trips(f: &impl CacheFixture) {
        let ctx = context("conv_round_trip", Some(7));
        f.cache().put(&ctx, CallContext::TTL).await.expect("put");
        assert_eq!(
            f.cache()
                .get(org1(), &conv("conv_round_trip"))
                .await
                .expect("get"),
            Some(ctx)
        );
    }

    /// A context with a conversation id and a call sid is found by each; one with a call sid
    /// alone by the sid.
    pub async fn found_by_each_of_its_keys(f: &impl CacheFixture) {
        let mut both = context("conv_both_keys", Some(3));
        both.call_sid = Some(CallSid::parse("CA_both_keys").expect("sid"));
        f.cache().put(&both, CallContext::TTL).await.expect("put");
        assert_eq!(
            f.cache()
                .get(org1(), &conv("conv_both_keys"))
                .await
                .expect("get"),
            Some(both.clone())
        );
        assert_eq!(
            f.cache()
                .get(org1(), &sid("CA_both_keys"))
                .await
                .expect("get"),
            Some(both)
        );

        let mut sid_only = context("conv_unused", Some(4));
        sid_only.conversation_id = None;
        sid_only.call_sid = Some(CallSid::parse("CA_sid_only").expect("sid"));
        f.cache()
            .put(&sid_only, CallContext::TTL)
            .await
            .expect("put");
        assert_eq!(
            f.cache()
                .get(org1(), &sid("CA_sid_only"))
                .await
                .expect("get"),
            Some(sid_only)
        );
        assert_eq!(
            f.cache()
                .get(org1(), &conv("CA_sid_only"))
                .await
                .expect("get"),
            None,
            "a call sid is not a conversation id"
        );
    }

    /// A conversation never stored is `None`.
    pub async fn missing_entry_is_none(f: &impl CacheFixture) {
        assert_eq!(
            f.cache()
                .get(org1(), &conv("conv_never_stored"))
                .await
                .expect("get"),
            None
        );
    }

    /// A second `put` replaces the first and restarts its TTL.
    pub async fn put_overwrites_and_restarts_the_ttl(f: &impl CacheFixture) {
        f.cache()
            .put(&context("conv_overwrite", None), Duration::from_secs(1))
            .await
            .expect("put");
        f.cache()
            .put(&context("conv_overwrite", Some(9)), CallContext::TTL)
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let got = f
            .cache()
            .get(org1(), &conv("conv_overwrite"))
            .await
            .expect("get");
        assert_eq!(
            got.and_then(|c| c.contact_id),
            Some(ContactId::from_uuid(uuid::Uuid::from_u128(9)))
        );
    }

    /// An entry is gone once its TTL has passed.
    pub async fn entries_expire_after_their_ttl(f: &impl CacheFixture) {
        f.cache()
            .put(&context("conv_expiring", None), Duration::from_secs(1))
            .await
            .expect("put");
        assert!(
            f.cache()
                .get(org1(), &conv("conv_expiring"))
                .await
                .expect("get")
                .is_some()
        );
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(
            f.cache()
                .get(org1(), &conv("conv_expiring"))
                .await
                .expect("get"),
            None
        );
    }

    /// Entries of different conversations do not touch each other.
    pub async fn conversations_are_independent(f: &impl CacheFixture) {
        f.cache()
            .put(&context("conv_a", Some(1)), CallContext::TTL)
            .await
            .expect("put");
        f.cache()
            .put(&context("conv_b", Some(2)), CallContext::TTL)
            .await
            .expect("put");
        let a = f
            .cache()
            .get(org1(), &conv("conv_a"))
            .await
            .expect("get")
            .expect("a");
        assert_eq!(
            a.contact_id,
            Some(ContactId::from_uuid(uuid::Uuid::from_u128(1)))
        );
    }

    /// Two organizations using the same conversation id and call sid each keep their own
    /// context: neither reads nor replaces the other's, and a third finds nothing.
    pub async fn organizations_have_separate_key_spaces(f: &impl CacheFixture) {
        let mut mine = context("conv_shared", Some(1));
        mine.call_sid = Some(CallSid::parse("CA_shared").expect("sid"));
        let other_org = OrgId::from_uuid(uuid::Uuid::from_u128(2));
        let mut theirs = mine.clone();
        theirs.org_id = other_org;
        theirs.contact_id = Some(ContactId::from_uuid(uuid::Uuid::from_u128(2)));

        f.cache().put(&mine, CallContext::TTL).await.expect("put");
        f.cache().put(&theirs, CallContext::TTL).await.expect("put");
        for key in [conv("conv_shared"), sid("CA_shared")] {
            assert_eq!(
                f.cache().get(org1(), &key).await.expect("get"),
                Some(mine.clone()),
                "the other organization's put under {key} left mine alone"
            );
            assert_eq!(
                f.cache().get(other_org, &key).await.expect("get"),
                Some(theirs.clone())
            );
            let stranger = OrgId::from_uuid(uuid::Uuid::from_u128(3));
            assert_eq!(
                f.cache().get(stranger, &key).await.expect("get"),
                None,
                "an organization without a context under {key} sees none"
            );
        }
    }

    /// A backend that is gone gives `Unavailable`, for `put` and `get`.
    pub async fn gone_backend_is_unavailable(f: &impl CacheFixture) {
        let dead = f
            .dead_cache()
            .expect("a cache with a backend returns a dead one");
        let ctx = context("conv_dead", None);
        assert!(matches!(
            dead.put(&ctx, CallContext::TTL).await,
            Err(CacheError::Unavailable(_))
        ));
        assert!(matches!(
            dead.get(org1(), &conv("conv_dead")).await,
            Err(CacheError::Unavailable(_))
        ));
    }
}

/// The delivery outbox's contract.
pub mod outbox {
    use super::*;

    const ROOMY: OutboxLimits = OutboxLimits {
        max_entries: 1_000,
        max_bytes: 16 * 1024 * 1024,
    };

    async fn payloads(f: &impl OutboxFixture) -> Vec<Vec<u8>> {
        f.outbox()
            .pending(100)
            .await
            .expect("pending")
            .into_iter()
            .map(|e| e.payload)
            .collect()
    }

    /// Entries come back oldest first, byte for byte, until removed; removing twice is fine.
    pub async fn entries_wait_in_order_until_removed(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        assert_eq!(outbox.usage().await.expect("usage").entries, 0);
        for payload in [&b"first"[..], b"second", &[0, 159, 146, 150]] {
            assert_eq!(
                outbox.append(payload, ROOMY).await.expect("append"),
                Appended::Stored
            );
        }
        let usage = outbox.usage().await.expect("usage");
        assert_eq!(usage.entries, 3);
        assert!(usage.bytes >= 15, "{usage:?}");
        let first_two = outbox.pending(2).await.expect("pending");
        assert_eq!(first_two.len(), 2);
        outbox.remove(&first_two[0].id).await.expect("remove");
        outbox.remove(&first_two[0].id).await.expect("remove again");
        assert_eq!(
            payloads(f).await,
            [b"second".to_vec(), vec![0, 159, 146, 150]],
            "binary payloads survive"
        );
    }

    /// At either bound the outbox refuses the new delivery and keeps every queued one.
    pub async fn a_full_outbox_refuses_and_keeps_what_it_holds(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        let three = OutboxLimits {
            max_entries: 3,
            ..ROOMY
        };
        for n in 0..3u8 {
            assert_eq!(
                outbox.append(&[n], three).await.expect("append"),
                Appended::Stored
            );
        }
        assert_eq!(
            outbox.append(b"fourth", three).await.expect("append"),
            Appended::Full(OutboxBound::Entries)
        );
        assert_eq!(payloads(f).await, [vec![0], vec![1], vec![2]]);

        for entry in outbox.pending(10).await.expect("pending") {
            outbox.remove(&entry.id).await.expect("remove");
        }
        // 10 kB each under a 36 kB bound: three fit whatever the backend's overhead per entry
        // (under 2 kB), a fourth does not.
        let tight = OutboxLimits {
            max_bytes: 36_000,
            ..ROOMY
        };
        let big = vec![b'x'; 10_000];
        let mut stored = 0;
        while outbox.append(&big, tight).await.expect("append") == Appended::Stored {
            stored += 1;
            assert!(stored <= 3, "the byte bound is not enforced");
        }
        assert_eq!(stored, 3);
        assert_eq!(
            outbox.append(&big, tight).await.expect("append"),
            Appended::Full(OutboxBound::Bytes)
        );
        assert_eq!(
            outbox.append(&[1], tight).await.expect("append"),
            Appended::Stored,
            "a delivery that still fits is taken"
        );
        assert_eq!(outbox.usage().await.expect("usage").entries, 4);
    }

    /// The dead letters keep the newest within their bounds, dropping the oldest, and say how
    /// many they dropped; the entry moved is no longer pending.
    pub async fn dead_letters_keep_the_newest_within_their_bounds(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        let three = OutboxLimits {
            max_entries: 3,
            ..ROOMY
        };
        let mut dropped = 0;
        for n in 0..5u8 {
            assert_eq!(
                outbox.append(&[n], ROOMY).await.expect("append"),
                Appended::Stored
            );
            let entry = outbox.pending(1).await.expect("pending").remove(0);
            dropped += outbox
                .dead_letter(&entry, &format!("reason {n}"), three)
                .await
                .expect("dead letter");
        }
        assert_eq!(dropped, 2);
        assert_eq!(outbox.usage().await.expect("usage").entries, 0);
        assert_eq!(
            f.dead_letters().await,
            [
                (vec![2], "reason 2".to_owned()),
                (vec![3], "reason 3".to_owned()),
                (vec![4], "reason 4".to_owned()),
            ]
        );

        let tight = OutboxLimits {
            max_bytes: 25_000,
            ..ROOMY
        };
        let mut dropped = 0;
        for n in 0..4u8 {
            let payload = vec![b'a' + n; 10_000];
            outbox.append(&payload, ROOMY).await.expect("append");
            let entry = outbox.pending(1).await.expect("pending").remove(0);
            dropped += outbox
                .dead_letter(&entry, "too big", tight)
                .await
                .expect("dead letter");
        }
        let kept = f.dead_letters().await;
        assert!(
            (1..=2).contains(&kept.len()),
            "10 kB letters under a 25 kB bound: {} kept",
            kept.len()
        );
        assert_eq!(
            kept.last().map(|(p, _)| p.clone()),
            Some(vec![b'd'; 10_000]),
            "the newest stays"
        );
        assert_eq!(dropped as usize, 3 + 4 - kept.len());
    }
}

/// The storage ports' contract (organizations, secrets, contacts, import).
pub mod store {
    use super::*;

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
            Err(AdminError::NotFound("organization"))
        ));
        assert!(matches!(
            s.list_secrets(nobody).await,
            Err(AdminError::NotFound("organization"))
        ));
        assert!(matches!(
            s.revoke_secret(SecretId::from_uuid(uuid::Uuid::new_v4()))
                .await,
            Err(AdminError::NotFound("secret"))
        ));
        assert!(matches!(
            s.upsert_contacts(nobody, &[contact("A", "+14165550100")])
                .await,
            Err(AdminError::NotFound("organization"))
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
            .set_unknown_caller_name(acme.id, "there")
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
            s.set_unknown_caller_name(OrgId::from_uuid(uuid::Uuid::new_v4()), "x")
                .await,
            Err(AdminError::NotFound("organization"))
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
            Err(AdminError::NotFound("organization"))
        ));
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

    /// A call record round-trips; a second delivery of the same conversation stores nothing and
    /// answers the first id.
    pub async fn call_records_are_stored_once(f: &impl StoreFixture) {
        let s = f.store();
        let acme = org(f, "Acme").await;
        let alex = imported(f, acme.id, "Alex", "+14165550100").await;
        let mut first = record(acme.id, "conv_once", 0);
        first.contact_id = Some(alex.id);
        let stored = s.record_call(&first).await.expect("record");
        assert_eq!((stored.id, stored.inserted), (first.id, true));

        let mut again = record(acme.id, "conv_once", 60);
        again.summary = Some("a different summary".into());
        let duplicate = s.record_call(&again).await.expect("record");
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
            assert!(s.record_call(r).await.expect("recorded").inserted);
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
            futures_util::future::join_all(attempts.iter().map(|r| s.record_call(r))).await;
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
            s.record_call(&record(acme.id, conv, i as i64 * 60))
                .await
                .expect("record");
        }
        s.record_call(&record(globex.id, "conv_l1", 0))
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
            Err(AdminError::NotFound("organization"))
        ));
    }

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
            dead.record_call(&record(nobody, "conv_dead", 0)).await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert!(matches!(
            dead.webhook_signer(nobody).await,
            Err(RepositoryError::Unavailable(_))
        ));
    }
}

/// One `#[tokio::test]` per cache contract case, on fixtures built by `$fixture` (an async
/// expression evaluated afresh for each case). `in_process: $fixture` leaves out the
/// backend-gone case, which a cache without a backend cannot have.
#[macro_export]
macro_rules! cache_conformance_tests {
    (in_process: $fixture:expr) => {
        $crate::__conformance_cases!(cache, $fixture;
            put_then_get_round_trips,
            found_by_each_of_its_keys,
            missing_entry_is_none,
            put_overwrites_and_restarts_the_ttl,
            entries_expire_after_their_ttl,
            conversations_are_independent,
            organizations_have_separate_key_spaces,
        );
    };
    ($fixture:expr) => {
        $crate::__conformance_cases!(cache, $fixture;
            put_then_get_round_trips,
            found_by_each_of_its_keys,
            missing_entry_is_none,
            put_overwrites_and_restarts_the_ttl,
            entries_expire_after_their_ttl,
            conversations_are_independent,
            organizations_have_separate_key_spaces,
            gone_backend_is_unavailable,
        );
    };
}

/// One `#[tokio::test]` per outbox contract case, on fixtures built by `$fixture`.
#[macro_export]
macro_rules! outbox_conformance_tests {
    ($fixture:expr) => {
        $crate::__conformance_cases!(outbox, $fixture;
            entries_wait_in_order_until_removed,
            a_full_outbox_refuses_and_keeps_what_it_holds,
            dead_letters_keep_the_newest_within_their_bounds,
        );
    };
}

/// One `#[tokio::test]` per storage contract case, on fixtures built by `$fixture`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($fixture:expr) => {
        $crate::__conformance_cases!(store, $fixture;
            organization_is_found_by_a_live_secret,
            secrets_rotate_and_revoke,
            missing_rows_are_not_found,
            organizations_list_oldest_first,
            contacts_are_scoped_to_their_organization,
            newest_of_several_matches_wins,
            import_is_idempotent,
            names_may_be_missing,
            unknown_caller_name_is_kept,
            webhook_secret_is_kept,
            call_records_are_stored_once,
            a_record_never_links_a_missing_or_foreign_contact,
            concurrent_duplicates_store_one_record,
            calls_list_newest_first,
            gone_backend_is_unavailable,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $fixture:expr; $($case:ident),+ $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = $fixture;
                    $crate::conformance::$suite::$case(&fixture).await;
                }
            )+
        }
    };
}
