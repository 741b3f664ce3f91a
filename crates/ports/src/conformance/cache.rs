//! The call-context and idempotency cache contracts.

use std::time::Duration;

use relay_domain::{CallContext, CallSid, ContactId, OrgId};

use super::{CacheFixture, context, conv, e164, org1, sid};
use crate::{CacheError, Claim, IdempotencyCache, StoredResponse};

/// The scope of most idempotency cases.
const SCOPE: &str = "scope-1";

/// Long enough for any case to finish.
const HOLD: Duration = Duration::from_secs(60);

fn fingerprint(n: u8) -> [u8; 32] {
    let mut fp = [n; 32];
    fp[31] = 0xfe;
    fp
}

/// A response with headers in a set order and a body that is not UTF-8.
fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("Location".to_owned(), "/v1/contacts/0194".to_owned()),
            ("ETag".to_owned(), "\"1\"".to_owned()),
        ],
        body: vec![b'{', 0xff, 0x00, 0xc3, 0x28, b'}', b'\n'],
    }
}

async fn claim(c: &dyn IdempotencyCache, scope: &str, key: &str, fp: u8) -> Claim {
    c.claim(scope, key, &fingerprint(fp), HOLD)
        .await
        .expect("claim")
}

cases! {
    /// One `#[tokio::test]` per cache contract case, on fixtures built by `$fixture` (an async
    /// expression evaluated afresh for each case). `in_process: $fixture` leaves out the
    /// backend-gone case, which a cache without a backend cannot have.
    macro cache_conformance_tests for cache;

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

    /// Erasure deletes the organization's contexts of the number or of the contacts, under
    /// every key, and nothing of another caller or organization.
    pub async fn forgetting_a_caller_deletes_their_contexts_only(f: &impl CacheFixture) {
        let c = f.cache();
        let mut by_number = context("conv_forget_1", None);
        by_number.call_sid = Some(CallSid::parse("CA_forget_1").expect("sid"));
        let mut by_contact = context("conv_forget_2", Some(9));
        by_contact.caller_number = None;
        let mut other_caller = context("conv_forget_3", Some(10));
        other_caller.caller_number = Some(e164("+14165550111"));
        let mut other_org = context("conv_forget_1", None);
        other_org.org_id = OrgId::from_uuid(uuid::Uuid::from_u128(2));
        for ctx in [&by_number, &by_contact, &other_caller, &other_org] {
            c.put(ctx, CallContext::TTL).await.expect("put");
        }
        let deleted = c
            .forget_caller(
                org1(),
                &e164("+14165550100"),
                &[ContactId::from_uuid(uuid::Uuid::from_u128(9))],
            )
            .await
            .expect("forget");
        assert_eq!(deleted, 3, "two keys of one context, one of the other");
        for key in [conv("conv_forget_1"), sid("CA_forget_1"), conv("conv_forget_2")] {
            assert_eq!(c.get(org1(), &key).await.expect("get"), None, "{key}");
        }
        assert_eq!(
            c.get(org1(), &conv("conv_forget_3")).await.expect("get"),
            Some(other_caller)
        );
        assert_eq!(
            c.get(other_org.org_id, &conv("conv_forget_1")).await.expect("get"),
            Some(other_org)
        );
        assert_eq!(
            c.forget_caller(org1(), &e164("+14165550100"), &[]).await.expect("forget"),
            0,
            "idempotent"
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


    /// The first claim of a key reserves it; a second one of the same request finds it in
    /// progress, one of another request (another fingerprint) a mismatch.
    pub async fn idempotency_first_claim_reserves_the_key(f: &impl CacheFixture) {
        let c = f.idempotency();
        assert_eq!(claim(c, SCOPE, "key-first", 1).await, Claim::Reserved);
        assert_eq!(claim(c, SCOPE, "key-first", 1).await, Claim::InProgress);
        assert_eq!(claim(c, SCOPE, "key-first", 2).await, Claim::Mismatch);
    }

    /// Once completed, a claim of the same request gets the stored response exactly (status,
    /// headers in order, body bytes, not UTF-8 included); another request a mismatch.
    pub async fn idempotency_completed_response_is_replayed_exactly(f: &impl CacheFixture) {
        let c = f.idempotency();
        assert_eq!(claim(c, SCOPE, "key-done", 1).await, Claim::Reserved);
        c.complete(SCOPE, "key-done", &fingerprint(1), &response(), HOLD)
            .await
            .expect("complete");
        assert_eq!(
            claim(c, SCOPE, "key-done", 1).await,
            Claim::Completed(response())
        );
        assert_eq!(claim(c, SCOPE, "key-done", 2).await, Claim::Mismatch);

        let empty = StoredResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert_eq!(claim(c, SCOPE, "key-empty", 3).await, Claim::Reserved);
        c.complete(SCOPE, "key-empty", &fingerprint(3), &empty, HOLD)
            .await
            .expect("complete");
        assert_eq!(
            claim(c, SCOPE, "key-empty", 3).await,
            Claim::Completed(empty)
        );
    }

    /// A released key is free: the next claim, of any request, reserves it.
    pub async fn idempotency_release_frees_the_key(f: &impl CacheFixture) {
        let c = f.idempotency();
        assert_eq!(claim(c, SCOPE, "key-released", 1).await, Claim::Reserved);
        c.release(SCOPE, "key-released").await.expect("release");
        assert_eq!(claim(c, SCOPE, "key-released", 2).await, Claim::Reserved);
        c.release(SCOPE, "key-never-claimed")
            .await
            .expect("releasing a free key is not an error");
    }

    /// The same key in two scopes is two keys: each is reserved, and completing one leaves
    /// the other as it was.
    pub async fn idempotency_scopes_are_independent(f: &impl CacheFixture) {
        let c = f.idempotency();
        assert_eq!(claim(c, "scope-a", "key-shared", 1).await, Claim::Reserved);
        assert_eq!(claim(c, "scope-b", "key-shared", 2).await, Claim::Reserved);
        c.complete("scope-a", "key-shared", &fingerprint(1), &response(), HOLD)
            .await
            .expect("complete");
        assert_eq!(claim(c, "scope-b", "key-shared", 2).await, Claim::InProgress);
        assert_eq!(claim(c, "scope-b", "key-shared", 1).await, Claim::Mismatch);
        assert_eq!(claim(c, "scope-c", "key-shared", 1).await, Claim::Reserved);
    }

    /// A key is any text up to 255 characters: separators, wildcards, non-ASCII; keys that
    /// differ in any way are different keys.
    pub async fn idempotency_keys_are_any_text(f: &impl CacheFixture) {
        let c = f.idempotency();
        let long = "k".repeat(255);
        let long_other = format!("{}j", "k".repeat(254));
        for key in ["a", "a:b", "a:b:", "*?[]{x}", "clé 🙂 ", &long, &long_other] {
            assert_eq!(claim(c, SCOPE, key, 1).await, Claim::Reserved, "{key:?}");
        }
        for key in ["a", "a:b", "*?[]{x}", &long] {
            assert_eq!(claim(c, SCOPE, key, 1).await, Claim::InProgress, "{key:?}");
        }
    }

    /// A reservation and a stored response are gone once their TTL has passed (a completion's
    /// TTL counts from the completion).
    pub async fn idempotency_entries_expire_after_their_ttl(f: &impl CacheFixture) {
        let c = f.idempotency();
        let short = Duration::from_secs(1);
        assert_eq!(
            c.claim(SCOPE, "key-expiring", &fingerprint(1), short)
                .await
                .expect("claim"),
            Claim::Reserved
        );
        assert_eq!(claim(c, SCOPE, "key-expiring-done", 1).await, Claim::Reserved);
        c.complete(SCOPE, "key-expiring-done", &fingerprint(1), &response(), short)
            .await
            .expect("complete");
        assert_eq!(claim(c, SCOPE, "key-expiring", 1).await, Claim::InProgress);
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(claim(c, SCOPE, "key-expiring", 2).await, Claim::Reserved);
        assert_eq!(claim(c, SCOPE, "key-expiring-done", 2).await, Claim::Reserved);
    }

    /// Of concurrent claims of one key exactly one reserves it; the others find it in
    /// progress.
    pub async fn idempotency_concurrent_claims_reserve_once(f: &impl CacheFixture) {
        let c = f.idempotency();
        let fp = fingerprint(1);
        let claims = futures_util::future::join_all(
            (0..8).map(|_| c.claim(SCOPE, "key-raced", &fp, HOLD)),
        )
        .await;
        let claims: Vec<Claim> = claims.into_iter().map(|r| r.expect("claim")).collect();
        assert_eq!(
            claims.iter().filter(|c| **c == Claim::Reserved).count(),
            1,
            "{claims:?}"
        );
        assert!(
            claims
                .iter()
                .all(|c| matches!(c, Claim::Reserved | Claim::InProgress)),
            "{claims:?}"
        );
    }

    needs a backend:

    /// A backend that is gone gives `Unavailable`, for `put` and `get`, and for the
    /// idempotency cache's `claim`, `complete` and `release`.
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
        assert!(matches!(
            dead.claim(SCOPE, "key-dead", &fingerprint(1), HOLD).await,
            Err(CacheError::Unavailable(_))
        ));
        assert!(matches!(
            dead.complete(SCOPE, "key-dead", &fingerprint(1), &response(), HOLD)
                .await,
            Err(CacheError::Unavailable(_))
        ));
        assert!(matches!(
            dead.release(SCOPE, "key-dead").await,
            Err(CacheError::Unavailable(_))
        ));
    }
}
