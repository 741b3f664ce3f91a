//! Who may try, and how often: the client address of a request and the failed-authentication
//! throttle, shared by the webhook routes. Refusals go through [`Access::refuse`], so each one is
//! counted against its client and answered 401 or, once the client's budget is spent, 429.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::client::TrustedProxies;
use crate::error::ApiError;
use crate::throttle::{AuthThrottle, ThrottleSettings, retry_after_secs};

/// The client-facing policy of the webhook routes.
#[derive(Debug)]
pub struct Access {
    proxies: TrustedProxies,
    throttle: AuthThrottle,
}

impl Access {
    /// Clients are told apart by `proxies`, and their failures throttled by `throttle`.
    pub fn new(proxies: TrustedProxies, throttle: ThrottleSettings) -> Self {
        Self {
            proxies,
            throttle: AuthThrottle::new(throttle),
        }
    }

    /// The client of `req` (see [`TrustedProxies::client`]).
    pub(crate) fn client(&self, req: &HttpRequest) -> IpAddr {
        self.proxies.client(req)
    }

    /// 429 when `client` spent its failure budget, unless its credentials are `known` (the
    /// store confirmed them recently): checked before anything is looked up or read.
    pub(crate) fn admit(&self, client: IpAddr, known: bool) -> Result<(), ApiError> {
        match self.throttle.throttled(client) {
            Some(wait) if !known => Err(ApiError::TooManyRequests {
                retry_after: retry_after_secs(wait),
            }),
            _ => Ok(()),
        }
    }

    /// A failed authentication of `client`: 401, or 429 once its budget is spent.
    pub(crate) fn refuse(&self, client: IpAddr) -> ApiError {
        match self.throttle.failed(client) {
            Some(wait) => ApiError::TooManyRequests {
                retry_after: retry_after_secs(wait),
            },
            None => ApiError::Unauthorized,
        }
    }
}

impl Default for Access {
    fn default() -> Self {
        Self::new(TrustedProxies::none(), ThrottleSettings::default())
    }
}
