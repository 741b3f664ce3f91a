//! Throttling of authentication attempts that may fail, per client address (governor's keyed
//! GCRA).
//!
//! Every attempt whose credentials this replica has not seen the store confirm (a wrong token, a
//! guess, a token used for the first time) spends one unit of the client address's budget
//! before anything is looked up or read, and so does every failure with credentials it knew (a
//! forged signature naming a known organization). The budget is a burst, refilled at a steady
//! rate; once it is spent the client is answered 429 with `Retry-After` until the next unit is
//! due, at no cost to the store. Spending before the lookup, not after the failure, is what
//! bounds the store queries an address can cause, however many requests it sends at once.
//! Genuine callers whose credentials the store confirmed recently spend nothing, so an address
//! shared with an attacker (a proxy without `TRUSTED_PROXIES`, or ElevenLabs' own egress used by
//! someone pointing their agent here with wrong credentials) does not lock them out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many unconfirmed attempts a client address may make.
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

/// Every this many spends, addresses whose budget is whole again are forgotten.
const FORGET_EVERY: u32 = 4_096;

/// The budget of every client address, shared by the server's workers.
pub(crate) struct AuthThrottle {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    spends: AtomicU32,
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
            spends: AtomicU32::new(0),
        }
    }

    /// Spends one unit of `client`'s budget. `Some(wait)` when there is none left: the attempt
    /// is refused (429) without spending, and a unit is due after `wait`.
    pub(crate) fn spend(&self, client: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        if self.spends.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let not_until = limiter.check_key(&client).err()?;
        Some(not_until.wait_time_from(self.clock.now()))
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
    fn the_burst_is_spent_then_attempts_are_refused_until_the_next_unit_is_due() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            failures_per_minute: 60,
            burst: 3,
        });
        let attacker = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(throttle.spend(attacker), None, "within the burst");
        }
        let wait = throttle.spend(attacker).expect("the fourth is refused");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(throttle.spend(attacker).is_some(), "refusals spend nothing");
        assert_eq!(
            throttle.spend(ip("198.51.100.1")),
            None,
            "another address has its own budget"
        );
        std::thread::sleep(wait + Duration::from_millis(50));
        assert_eq!(throttle.spend(attacker), None, "a unit is due again");
        assert!(throttle.spend(attacker).is_some(), "and only one");
    }

    #[test]
    fn zero_per_minute_turns_it_off() {
        let throttle = AuthThrottle::new(ThrottleSettings {
            failures_per_minute: 0,
            burst: 1,
        });
        for _ in 0..100 {
            assert_eq!(throttle.spend(ip("203.0.113.7")), None);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
