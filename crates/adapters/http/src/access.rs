//! Who may try, and how often: the client address of a request and the authentication throttle
//! (see `throttle`), shared by the webhook routes. Every attempt goes through [`Access::admit`]
//! before anything is looked up or read, and every wrong credential through [`Access::refuse`].

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

    /// Admits an attempt before anything is looked up or read: credentials the store confirmed
    /// recently (`known`) pass for free; any other attempt spends a unit of the client's budget,
    /// or is refused with 429 when none is left.
    pub(crate) fn admit(&self, client: IpAddr, known: bool) -> Result<Admitted, ApiError> {
        if known {
            return Ok(Admitted { spent: false });
        }
        match self.throttle.spend(client) {
            Some(wait) => Err(too_many(wait)),
            None => Ok(Admitted { spent: true }),
        }
    }

    /// The answer to an attempt whose credentials turned out wrong: 401, or 429 when it had
    /// not spent from the budget at admission and there is none left.
    pub(crate) fn refuse(&self, client: IpAddr, admitted: Admitted) -> ApiError {
        if admitted.spent {
            return ApiError::Unauthorized;
        }
        self.throttle
            .spend(client)
            .map_or(ApiError::Unauthorized, too_many)
    }
}

/// An attempt [`Access::admit`] let through, and whether it spent from the budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    spent: bool,
}

fn too_many(wait: std::time::Duration) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: retry_after_secs(wait),
    }
}

impl Default for Access {
    fn default() -> Self {
        Self::new(TrustedProxies::none(), ThrottleSettings::default())
    }
}
