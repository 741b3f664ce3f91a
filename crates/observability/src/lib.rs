//! Observability that every adapter shares: the Prometheus registry with the service's metrics,
//! and [`Observed`], a decorator that times, counts and traces each call to a dependency port.
//!
//! Nothing here does I/O: the HTTP adapter serves [`Metrics::render`] at `GET /metrics`.
#![warn(missing_docs)]

mod metrics;
mod observed;
pub mod scrape;
mod scraped;

pub use metrics::{CallResult, Metrics, PROMETHEUS_CONTENT_TYPE};
pub use observed::Observed;
pub use scraped::{ContextWriteCounts, HttpServerCounts, OutboxCounts};
