//! Who is calling the management API, and how often: the Bearer key, looked up on every
//! request (so a revoked key stops at once), the failure throttle per client address, and a
//! request budget per key announced in `RateLimit-*` headers.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use relay_domain::{Actor, ApiKeyId};
use relay_usecase::{Management, Principal};

use crate::auth::bearer_token;
use crate::client::TrustedProxies;
use crate::error::ApiError;
use crate::throttle::{AuthThrottle, ThrottleSettings, retry_after_secs};

/// How many requests a management key may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget {
    /// The steady rate per minute; `0` turns the budget off.
    pub per_minute: u32,
    /// How many may come at once before the rate applies.
    pub burst: u32,
}

impl Default for RequestBudget {
    fn default() -> Self {
        Self {
            per_minute: 1_200,
            burst: 200,
        }
    }
}

type KeyedLimiter = RateLimiter<
    ApiKeyId,
    governor::state::keyed::DefaultKeyedStateStore<ApiKeyId>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Every this many failures, addresses no longer blocked are forgotten.
const FORGET_EVERY: usize = 1_024;

/// The management listener's policy: client addresses, failed-authentication throttle, and
/// each key's request budget.
pub struct Guard {
    proxies: TrustedProxies,
    failures: AuthThrottle,
    /// Addresses whose failure budget is spent, until when: refused before any lookup.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    budget: Option<KeyedLimiter>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("budget", &self.budget.is_some())
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// Clients told apart by `proxies`; their failed authentications throttled by `failures`;
    /// each key's requests limited by `budget`.
    pub fn new(proxies: TrustedProxies, failures: ThrottleSettings, budget: RequestBudget) -> Self {
        let limiter = NonZeroU32::new(budget.per_minute).map(|rate| {
            let burst = NonZeroU32::new(budget.burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>()
        });
        Self {
            proxies,
            failures: AuthThrottle::new(failures),
            blocked: Mutex::new(HashMap::new()),
            budget: limiter,
            clock: DefaultClock::default(),
        }
    }

    fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *blocked.get(&client)?;
        until.checked_duration_since(Instant::now())
    }

    /// A failed authentication: 401, or 429 once the address's failure budget is spent (then
    /// its next attempts are refused before any lookup until a unit is due).
    fn fail(&self, client: IpAddr) -> ApiError {
        let Some(wait) = self.failures.spend(client) else {
            return ApiError::Unauthorized;
        };
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= FORGET_EVERY {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(client, Instant::now() + wait);
        ApiError::TooManyRequests {
            retry_after: retry_after_secs(wait),
        }
    }

    /// Spends one request of `key`'s budget: the `RateLimit-*` headers to send, or 429.
    fn spend(&self, key: ApiKeyId) -> Result<Option<RateLimit>, ApiError> {
        let Some(limiter) = &self.budget else {
            return Ok(None);
        };
        match limiter.check_key(&key) {
            Ok(state) => {
                let quota = state.quota();
                let remaining = state.remaining_burst_capacity();
                let empty = quota.burst_size().get().saturating_sub(remaining);
                let reset = quota.replenish_interval() * empty;
                Ok(Some(RateLimit {
                    limit: quota.burst_size().get(),
                    remaining,
                    reset: if empty == 0 {
                        0
                    } else {
                        retry_after_secs(reset)
                    },
                }))
            }
            Err(not_until) => Err(ApiError::TooManyRequests {
                retry_after: retry_after_secs(not_until.wait_time_from(self.clock.now())),
            }),
        }
    }
}

/// What the `RateLimit-Limit`, `-Remaining` and `-Reset` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl RateLimit {
    /// Adds the headers to `response`.
    pub(crate) fn apply(self, response: &mut HttpResponse) {
        let headers = response.headers_mut();
        for (name, value) in [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// The authenticated principal of a management request (an extractor: a handler taking it
/// runs only for a live key within its budget).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) rate_limit: Option<RateLimit>,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let admitted = admit(&req).await;
            if let Err(error) = &admitted {
                refused(&req, error, started.elapsed());
            }
            admitted
        })
    }
}

/// Counts and logs a request refused before its route ran (401, 429, 503): the route label
/// `admin_auth`, the client address, never the key.
fn refused(req: &HttpRequest, error: &ApiError, elapsed: Duration) {
    use actix_web::ResponseError as _;
    let status = error.status_code().as_u16();
    let client = req
        .app_data::<web::Data<Guard>>()
        .map(|guard| guard.proxies.client(req).to_string());
    if let Some(metrics) = req.app_data::<web::Data<relay_observability::Metrics>>() {
        metrics.observe_request("admin_auth", status, error.outcome(), elapsed);
    }
    if matches!(error, ApiError::TooManyRequests { .. }) {
        tracing::debug!(
            status,
            client.address = client,
            "management request throttled"
        );
    } else {
        tracing::info!(
            method = %req.method(),
            status,
            outcome = error.outcome(),
            client.address = client,
            "management request refused"
        );
    }
}

/// Authenticates `req` and spends from its key's budget.
async fn admit(req: &HttpRequest) -> Result<Caller, ApiError> {
    let guard = req
        .app_data::<web::Data<Guard>>()
        .map(|g| Arc::clone(g))
        .ok_or(ApiError::Internal)?;
    let manage = req
        .app_data::<web::Data<Management>>()
        .map(|m| Arc::clone(m))
        .ok_or(ApiError::Internal)?;
    let client = guard.proxies.client(req);
    if let Some(wait) = guard.blocked_for(client) {
        return Err(ApiError::TooManyRequests {
            retry_after: retry_after_secs(wait),
        });
    }
    let Some(token) = bearer_token(req) else {
        return Err(guard.fail(client));
    };
    let principal = match manage.authenticate(&token).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return Err(guard.fail(client)),
        Err(error) => {
            tracing::warn!(error = %error, "management key lookup failed");
            return Err(ApiError::ServiceUnavailable);
        }
    };
    let Actor::Key(key) = principal.actor else {
        return Err(ApiError::Internal);
    };
    let rate_limit = guard.spend(key)?;
    Ok(Caller {
        principal,
        rate_limit,
    })
}
