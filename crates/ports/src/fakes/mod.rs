//! In-memory fakes of the ports for tests of the layers above (`test-helpers` feature).
//!
//! Each fake follows the contract of its port (the ports' conformance suites run on them, as on
//! the real adapters) and can be told to fail or to be slow, so flow tests can exercise degraded
//! paths without a real database or cache.

mod cache;
mod outbox;
mod store;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::BoxError;

pub use cache::InMemoryCache;
pub use outbox::InMemoryOutbox;
pub use store::InMemoryStore;

/// How a fake behaves on each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers at once.
    #[default]
    Healthy,
    /// Fails every call as unreachable.
    Down,
    /// Answers after this delay (use a paused tokio clock to keep tests fast).
    Slow(Duration),
}

impl Behaviour {
    async fn apply(self) -> Result<(), BoxError> {
        match self {
            Self::Healthy => Ok(()),
            Self::Down => Err("fake dependency is down".into()),
            Self::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
