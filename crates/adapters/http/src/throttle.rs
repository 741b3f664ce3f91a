//! Throttling of failed authentication, per client address (governor's keyed GCRA).
//!
//! Each failed authentication (no or malformed credentials, an unknown token, a signature that
//! does not verify) spends one unit of the client's budget: a burst, refilled at a steady rate.
//! Once it is spent the client is answered 429 (with `Retry-After`) until the next unit is due,
//! before anything is looked up or read, so a flood of guesses costs neither store queries nor
//! body reads. Successful requests spend nothing, and a throttled address still gets its
//! credentials through when this replica has seen the store confirm them recently: an egress
//! shared with an attacker (a proxy without `TRUSTED_PROXIES`, or ElevenLabs' own egress used by
//! someone pointing their agent here with wrong credentials) does not lock genuine callers out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many failures a client address may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// The steady rate, per minute; `0` turns throttling off.
    pub failures_per_minute: u32,
    /// How many may come at once before the rate applies.
    pub burst: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            failures_per_minute: 60,
            burst: 30,
        }
    }
}

/// Addresses tracked at most (limiter state and throttled set); beyond, idle ones are dropped.
const MAX_TRACKED: usize = 100_000;

/// The failed-authentication budget of every client address, shared by the server's workers.
pub(crate) struct AuthThrottle {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    /// Addresses whose budget is spent, until when.
    throttled: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthThrottle {
    /// A throttle with these limits.
    pub(crate) fn new(settings: ThrottleSettings) -> Self {
        let limiter = NonZeroU32::new(settings.failures_per_minute).map(|rate| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client` must still wait when its budget is spent; `None` when it may try.
    pub(crate) fn throttled(&self, client: IpAddr) -> Option<Duration> {
        self.limiter.as_ref()?;
        let now = Instant::now();
        let until = *self
            .throttled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)?;
        until.checked_duration_since(now)
    }

    /// Records a failed authentication of `client`. `Some(wait)` when its budget is now spent:
    /// the answer is 429 rather than 401.
    pub(crate) fn failed(&self, client: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        let not_until = limiter.check_key(&client).err()?;
        let wait = not_until.wait_time_from(self.clock.now());
        let mut throttled = self
            .throttled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if throttled.len() >= MAX_TRACKED {
            let now = Instant::now();
            throttled.retain(|_, until| *until > now);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        throttled.insert(client, Instant::now() + wait);
        Some(wait)
    }
}

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_burst_is_refused_401_then_429_until_the_next_unit_is_due() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            failures_per_minute: 60,
            burst: 3,
        });
        let attacker = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(throttle.failed(attacker), None, "within the burst: 401");
        }
        assert_eq!(throttle.throttled(attacker), None, "not yet spent");
        let wait = throttle
            .failed(attacker)
            .expect("the fourth failure is throttled");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(throttle.throttled(attacker).is_some());
        assert_eq!(
            throttle.throttled(ip("198.51.100.1")),
            None,
            "another address is not affected"
        );
        std::thread::sleep(wait + Duration::from_millis(50));
        assert_eq!(throttle.throttled(attacker), None, "a unit is due again");
    }

    #[test]
    fn zero_per_minute_turns_it_off() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            failures_per_minute: 0,
            burst: 1,
        });
        for _ in 0..100 {
            assert_eq!(throttle.failed(ip("203.0.113.7")), None);
        }
        assert_eq!(throttle.throttled(ip("203.0.113.7")), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
