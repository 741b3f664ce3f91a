//! A read-through cache of the organization lookup by token digest, in front of the store.
//!
//! Every webhook call authenticates by its token; the organization behind a token almost never
//! changes, so looking it up in Postgres on every call costs a round trip for nothing. Found
//! organizations are kept for a short TTL, which is therefore also how long a revoked secret (or
//! an old organization name) keeps working.
//!
//! Misses are kept too, for the same TTL and in a separate, larger set, so a client repeating a
//! wrong (or just revoked) token costs one store query per TTL instead of one per request, and a
//! flood of wrong tokens never evicts the organizations genuine callers need. A token is 256
//! random bits, so no genuine caller presents one before it exists: keeping a miss never delays a
//! new secret. Store errors pass through and are not kept.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use relay_domain::{Organization, TokenDigest};
use relay_ports::{OrganizationDirectory, RepositoryError};

/// Organizations kept at most; beyond it the least recently used go first.
pub const DEFAULT_MAX_ORGANIZATIONS: u64 = 10_000;

/// Unknown tokens kept at most (32 bytes each).
pub const MAX_UNKNOWN_TOKENS: u64 = 100_000;

/// [`OrganizationDirectory`] with the organizations it found kept for a TTL.
pub struct CachedOrganizations {
    inner: Arc<dyn OrganizationDirectory>,
    found: Cache<TokenDigest, Organization>,
    unknown: Cache<TokenDigest, ()>,
    ttl: Duration,
}

impl std::fmt::Debug for CachedOrganizations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedOrganizations")
            .field("ttl", &self.ttl)
            .field("entries", &self.found.entry_count())
            .field("unknown", &self.unknown.entry_count())
            .finish_non_exhaustive()
    }
}

impl CachedOrganizations {
    /// Keeps what `inner` finds for `ttl`, at most `max_entries` organizations' tokens.
    pub fn new(inner: Arc<dyn OrganizationDirectory>, ttl: Duration, max_entries: u64) -> Self {
        Self {
            inner,
            found: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            unknown: Cache::builder()
                .max_capacity(MAX_UNKNOWN_TOKENS)
                .time_to_live(ttl)
                .build(),
            ttl,
        }
    }

    /// How long a found organization is kept (and a revoked secret keeps working).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[async_trait]
impl OrganizationDirectory for CachedOrganizations {
    async fn find_by_secret_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Organization>, RepositoryError> {
        if let Some(org) = self.found.get(digest).await {
            return Ok(Some(org));
        }
        if self.unknown.contains_key(digest) {
            return Ok(None);
        }
        let found = self.inner.find_by_secret_digest(digest).await?;
        match &found {
            Some(org) => self.found.insert(*digest, org.clone()).await,
            None => self.unknown.insert(*digest, ()).await,
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use relay_domain::{OrgId, OrgName, Region, ToolToken};
    use relay_ports::MockOrganizationDirectory;

    use super::*;

    fn acme() -> Organization {
        Organization {
            id: "0190a1b2-0000-7000-8000-000000000007"
                .parse::<OrgId>()
                .unwrap(),
            name: OrgName::parse("Acme").unwrap(),
            default_region: Region::parse("CA").unwrap(),
            unknown_caller_name: relay_domain::FallbackName::default(),
            memory: relay_domain::MemorySettings::default(),
        }
    }

    fn digest(token: &str) -> TokenDigest {
        ToolToken::from_presented(token.to_owned().into())
            .unwrap()
            .digest()
    }

    /// A store whose answer the test changes, counting lookups.
    fn store(
        answer: Arc<Mutex<Option<Organization>>>,
        lookups: Arc<Mutex<u32>>,
    ) -> Arc<dyn OrganizationDirectory> {
        let mut mock = MockOrganizationDirectory::new();
        mock.expect_find_by_secret_digest().returning(move |_| {
            *lookups.lock().unwrap() += 1;
            Ok(answer.lock().unwrap().clone())
        });
        Arc::new(mock)
    }

    #[tokio::test]
    async fn a_found_organization_is_served_from_memory_until_the_ttl_then_looked_up_again() {
        let answer = Arc::new(Mutex::new(Some(acme())));
        let lookups = Arc::new(Mutex::new(0));
        let cached = CachedOrganizations::new(
            store(Arc::clone(&answer), Arc::clone(&lookups)),
            Duration::from_millis(300),
            100,
        );
        let token = digest("rlk_live");
        assert_eq!(
            cached.find_by_secret_digest(&token).await.unwrap(),
            Some(acme())
        );
        assert_eq!(
            cached.find_by_secret_digest(&token).await.unwrap(),
            Some(acme())
        );
        assert_eq!(
            *lookups.lock().unwrap(),
            1,
            "the second call is served from memory"
        );

        // Revoked in the store: it keeps working until the TTL, never longer.
        *answer.lock().unwrap() = None;
        assert_eq!(
            cached.find_by_secret_digest(&token).await.unwrap(),
            Some(acme())
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(cached.find_by_secret_digest(&token).await.unwrap(), None);
        assert_eq!(*lookups.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_unknown_token_is_kept_for_the_ttl_so_repeating_it_costs_one_query() {
        let answer = Arc::new(Mutex::new(None));
        let lookups = Arc::new(Mutex::new(0));
        let cached = CachedOrganizations::new(
            store(Arc::clone(&answer), Arc::clone(&lookups)),
            Duration::from_millis(300),
            100,
        );
        let wrong = digest("rlk_wrong");
        for _ in 0..50 {
            assert_eq!(cached.find_by_secret_digest(&wrong).await.unwrap(), None);
        }
        assert_eq!(*lookups.lock().unwrap(), 1, "one query for fifty attempts");

        // Other tokens are looked up on their own, and after the TTL the store is asked again.
        *answer.lock().unwrap() = Some(acme());
        assert_eq!(
            cached
                .find_by_secret_digest(&digest("rlk_live"))
                .await
                .unwrap(),
            Some(acme())
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            cached.find_by_secret_digest(&wrong).await.unwrap(),
            Some(acme())
        );
        assert_eq!(*lookups.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_flood_of_wrong_tokens_never_evicts_a_genuine_organization() {
        let answer = Arc::new(Mutex::new(Some(acme())));
        let lookups = Arc::new(Mutex::new(0));
        let cached = CachedOrganizations::new(
            store(Arc::clone(&answer), Arc::clone(&lookups)),
            Duration::from_secs(60),
            2,
        );
        let genuine = digest("rlk_live");
        cached.find_by_secret_digest(&genuine).await.unwrap();
        *answer.lock().unwrap() = None;
        for n in 0..500 {
            cached
                .find_by_secret_digest(&digest(&format!("rlk_wrong_{n}")))
                .await
                .unwrap();
        }
        cached.found.run_pending_tasks().await;
        assert_eq!(
            cached.find_by_secret_digest(&genuine).await.unwrap(),
            Some(acme()),
            "still served from memory"
        );
        assert_eq!(*lookups.lock().unwrap(), 501);
    }

    #[tokio::test]
    async fn a_store_error_passes_through_and_is_not_kept() {
        let calls = Arc::new(Mutex::new(0));
        let seen = Arc::clone(&calls);
        let mut mock = MockOrganizationDirectory::new();
        mock.expect_find_by_secret_digest().returning(move |_| {
            let mut n = seen.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Err(RepositoryError::Unavailable("connection refused".into()))
            } else {
                Ok(Some(acme()))
            }
        });
        let cached = CachedOrganizations::new(Arc::new(mock), Duration::from_secs(60), 100);
        let token = digest("rlk_live");
        assert!(matches!(
            cached.find_by_secret_digest(&token).await,
            Err(RepositoryError::Unavailable(_))
        ));
        assert_eq!(
            cached.find_by_secret_digest(&token).await.unwrap(),
            Some(acme())
        );
    }
}
