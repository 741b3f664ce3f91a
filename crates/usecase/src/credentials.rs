//! What this replica last heard from the store about credentials.
//!
//! The post-call webhook must not lose a delivery while Postgres is down, yet nothing a stranger
//! sends may be queued: the outbox shares its Redis with every tenant's call contexts. So each
//! replica remembers the credentials the store confirmed recently (the organization behind a
//! token digest, an organization's sealed webhook secret) and, during an outage, verifies a
//! delivery against them. An entry lives `max_age` after its last confirmation; the store saying
//! "no such token" or "no webhook secret" removes it at once. A delivery that cannot be verified
//! this way is refused, never stored. Queued deliveries are verified against the store again
//! when they are replayed, so an entry that went stale within `max_age` (a revoked token) costs
//! at most a dead letter.
//!
//! The same memory tells the failed-authentication throttle which tokens are genuine, so a
//! client address that is throttled (a shared egress, an ingress without trusted proxies) still
//! gets its known callers through.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use relay_domain::{OrgId, Organization, TokenDigest};
use relay_ports::WebhookSigner;

/// Entries kept at most, per kind. Only credentials the store confirmed get in, so strangers
/// cannot fill it; beyond it the longest unconfirmed go first.
pub const MAX_KNOWN_CREDENTIALS: usize = 10_000;

/// Credentials the store confirmed within the last `max_age`.
pub struct KnownCredentials {
    tokens: Memory<TokenDigest, Organization>,
    signers: Memory<OrgId, WebhookSigner>,
    max_age: Duration,
}

impl std::fmt::Debug for KnownCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownCredentials")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl KnownCredentials {
    /// Remembers confirmations for `max_age` (zero: remembers nothing, so every delivery that
    /// meets a store outage is refused), at most `max_entries` of each kind.
    pub fn new(max_age: Duration, max_entries: usize) -> Self {
        Self {
            tokens: Memory::new(max_age, max_entries),
            signers: Memory::new(max_age, max_entries),
            max_age,
        }
    }

    /// How long a confirmation is trusted.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The store found `org` behind `digest`.
    pub(crate) fn token_confirmed(&self, digest: &TokenDigest, org: &Organization) {
        self.tokens.confirm(*digest, org);
    }

    /// The store found no live secret with `digest` (unknown or revoked).
    pub(crate) fn token_refused(&self, digest: &TokenDigest) {
        self.tokens.forget(digest);
    }

    /// The organization recently confirmed behind `digest`.
    pub(crate) fn token(&self, digest: &TokenDigest) -> Option<Organization> {
        self.tokens.get(digest)
    }

    /// Whether the store confirmed this token recently.
    pub fn knows_token(&self, digest: &TokenDigest) -> bool {
        self.tokens.contains(digest)
    }

    /// The store gave this organization's sealed webhook secret.
    pub(crate) fn signer_confirmed(&self, signer: &WebhookSigner) {
        self.signers.confirm(signer.org.id, signer);
    }

    /// The store has no webhook secret for `org` (or no such organization).
    pub(crate) fn signer_refused(&self, org: OrgId) {
        self.signers.forget(&org);
    }

    /// Whether the store confirmed `org`'s webhook secret recently.
    pub fn knows_signer(&self, org: OrgId) -> bool {
        self.signers.contains(&org)
    }

    /// The sealed webhook secret recently confirmed for `org`.
    pub(crate) fn signer(&self, org: OrgId) -> Option<WebhookSigner> {
        self.signers.get(&org)
    }
}

/// Values with the time the store last confirmed them.
struct Memory<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    max_age: Duration,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone, V: Clone + PartialEq> Memory<K, V> {
    fn new(max_age: Duration, max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_age,
            max_entries: if max_age.is_zero() { 0 } else { max_entries },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn confirm(&self, key: K, value: &V) {
        if self.max_entries == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        // The common case (the same credentials, confirmed again) only moves the time.
        if let Some(entry) = entries.get_mut(&key)
            && entry.0 == *value
        {
            entry.1 = now;
            return;
        }
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, (_, at)| now.duration_since(*at) <= self.max_age);
            if entries.len() >= self.max_entries
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (value.clone(), now));
    }

    fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        let (value, at) = entries.get(key)?;
        (at.elapsed() <= self.max_age).then(|| value.clone())
    }

    fn contains(&self, key: &K) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|(_, at)| at.elapsed() <= self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use relay_domain::{OrgName, Region, ToolToken};

    use super::*;

    fn org(n: u128) -> Organization {
        Organization {
            id: OrgId::from_uuid(uuid::Uuid::from_u128(n)),
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

    #[test]
    fn a_confirmation_is_trusted_for_max_age_and_a_refusal_forgets_it_at_once() {
        let known = KnownCredentials::new(Duration::from_millis(200), 10);
        let token = digest("rlk_a");
        known.token_confirmed(&token, &org(1));
        assert_eq!(known.token(&token), Some(org(1)));
        assert!(known.knows_token(&token));
        known.token_refused(&token);
        assert_eq!(known.token(&token), None, "revoked in the store: forgotten");

        known.token_confirmed(&token, &org(1));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(known.token(&token), None, "older than max_age: forgotten");

        let signer = WebhookSigner {
            org: org(2),
            sealed_secret: vec![1, 2, 3],
        };
        known.signer_confirmed(&signer);
        assert_eq!(known.signer(org(2).id), Some(signer));
        known.signer_refused(org(2).id);
        assert_eq!(known.signer(org(2).id), None);
    }

    #[test]
    fn a_full_memory_makes_room_by_dropping_the_longest_unconfirmed() {
        let known = KnownCredentials::new(Duration::from_secs(60), 2);
        let (a, b, c) = (digest("rlk_a"), digest("rlk_b"), digest("rlk_c"));
        known.token_confirmed(&a, &org(1));
        std::thread::sleep(Duration::from_millis(5));
        known.token_confirmed(&b, &org(1));
        std::thread::sleep(Duration::from_millis(5));
        known.token_confirmed(&a, &org(1));
        known.token_confirmed(&c, &org(1));
        assert!(known.knows_token(&a), "confirmed again last: kept");
        assert!(!known.knows_token(&b), "the longest unconfirmed went");
        assert!(known.knows_token(&c));
    }

    #[test]
    fn zero_max_age_remembers_nothing() {
        let known = KnownCredentials::new(Duration::ZERO, 10);
        known.token_confirmed(&digest("rlk_a"), &org(1));
        assert!(!known.knows_token(&digest("rlk_a")));
    }
}
