//! The metric families whose values are kept elsewhere (the use cases' counters, the HTTP
//! server's) and read at each scrape. Each family's name and help are defined here, once, so the
//! metrics the service exports are all in this crate; the composition root only says where each
//! value is read from.

use std::sync::Arc;

use crate::Metrics;

/// The background call-context writer's counts ([`Metrics::register_context_writes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextWriteCounts {
    /// Writes that failed on the request path and were handed to the background.
    pub retried: u64,
    /// Background writes that finally succeeded.
    pub recovered: u64,
    /// Writes given up (every retry failed, or too many pending).
    pub dropped: u64,
}

/// The post-call outbox's counts ([`Metrics::register_post_call_outbox`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Deliveries appended to the outbox because the store was down.
    pub queued: u64,
    /// Queued deliveries recorded by the replay.
    pub replayed: u64,
    /// Queued deliveries the replay moved to the dead letters.
    pub rejected: u64,
    /// Deliveries refused because the outbox was at one of its bounds.
    pub full: u64,
    /// Oldest dead letters dropped to keep the dead letters within their bounds.
    pub dead_letters_dropped: u64,
    /// Deliveries waiting in the outbox as of the last replay round (a gauge).
    pub backlog: u64,
    /// The bytes those deliveries take, as the outbox's byte bound counts them (a gauge).
    pub backlog_bytes: u64,
}

/// The HTTP server's own refusals ([`Metrics::register_http_server`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpServerCounts {
    /// Connections closed because a request head did not arrive in time.
    pub slow_request_heads: u64,
}

/// A family read at scrape time: name (counters get `_total`), help, reader of one field.
type Family<C> = (&'static str, &'static str, fn(&C) -> u64);

impl Metrics {
    /// `relay_call_context_writes_{retried,recovered,dropped}_total`, read from `read`.
    pub fn register_context_writes(
        &self,
        read: impl Fn() -> ContextWriteCounts + Send + Sync + 'static,
    ) {
        let counters: [Family<ContextWriteCounts>; 3] = [
            (
                "relay_call_context_writes_retried",
                "Call-context writes that failed on the request path and were handed to the \
                 background",
                |c| c.retried,
            ),
            (
                "relay_call_context_writes_recovered",
                "Background call-context writes that finally succeeded",
                |c| c.recovered,
            ),
            (
                "relay_call_context_writes_dropped",
                "Call-context writes given up (every retry failed, or too many pending): the \
                 post-call webhook will not find these calls",
                |c| c.dropped,
            ),
        ];
        self.register_families(
            &(Arc::new(read) as Arc<dyn Fn() -> _ + Send + Sync>),
            &counters,
            &[],
        );
    }

    /// `relay_post_call_{queued,replayed,replay_rejected,outbox_full,dead_letters_dropped}_total`
    /// and the gauges `relay_post_call_outbox_{backlog,bytes}`, read from `read`.
    pub fn register_post_call_outbox(
        &self,
        read: impl Fn() -> OutboxCounts + Send + Sync + 'static,
    ) {
        let counters: [Family<OutboxCounts>; 5] = [
            (
                "relay_post_call_queued",
                "Post-call deliveries appended to the Redis outbox because the store was down",
                |c| c.queued,
            ),
            (
                "relay_post_call_replayed",
                "Queued post-call deliveries recorded by the replay",
                |c| c.replayed,
            ),
            (
                "relay_post_call_replay_rejected",
                "Queued post-call deliveries the replay moved to the dead letters (refused \
                 credentials, invalid, unreadable, refused by the store)",
                |c| c.rejected,
            ),
            (
                "relay_post_call_outbox_full",
                "Post-call deliveries refused (503) because the outbox was at \
                 POST_CALL_OUTBOX_MAX_ENTRIES or POST_CALL_OUTBOX_MAX_MB",
                |c| c.full,
            ),
            (
                "relay_post_call_dead_letters_dropped",
                "Oldest dead letters dropped to keep the dead-letter stream within \
                 POST_CALL_OUTBOX_MAX_ENTRIES and POST_CALL_OUTBOX_MAX_MB",
                |c| c.dead_letters_dropped,
            ),
        ];
        let gauges: [Family<OutboxCounts>; 2] = [
            (
                "relay_post_call_outbox_backlog",
                "Post-call deliveries waiting in the Redis outbox, as of this replica's last \
                 replay round (shared by every replica)",
                |c| c.backlog,
            ),
            (
                "relay_post_call_outbox_bytes",
                "Bytes the waiting post-call deliveries take in Redis, as the outbox's byte \
                 bound counts them, as of this replica's last replay round",
                |c| c.backlog_bytes,
            ),
        ];
        self.register_families(
            &(Arc::new(read) as Arc<dyn Fn() -> _ + Send + Sync>),
            &counters,
            &gauges,
        );
    }

    /// `relay_http_slow_request_heads_total`, read from `read`.
    pub fn register_http_server(
        &self,
        read: impl Fn() -> HttpServerCounts + Send + Sync + 'static,
    ) {
        let counters: [Family<HttpServerCounts>; 1] = [(
            "relay_http_slow_request_heads",
            "Connections closed because a request head did not arrive within 5 s of its first \
             byte (a client trickling headers to hold the connection)",
            |c| c.slow_request_heads,
        )];
        self.register_families(
            &(Arc::new(read) as Arc<dyn Fn() -> _ + Send + Sync>),
            &counters,
            &[],
        );
    }

    /// `relay_http_malformed_requests_total`: requests the HTTP framework refused before any
    /// route saw them, counted by the log layer that keeps them out of the error log.
    pub fn register_malformed_requests(&self, read: fn() -> u64) {
        self.register_fn(
            "relay_http_malformed_requests",
            "Requests the HTTP server refused before any route saw them (malformed request line \
             or header, too many or too large headers: 400/431 with an empty body)",
            Box::new(read),
            false,
        );
    }

    /// `relay_audit_failures_total`: changes made whose audit entry could not be written.
    pub fn register_audit_failures(&self, read: impl Fn() -> u64 + Send + Sync + 'static) {
        self.register_fn(
            "relay_audit_failures",
            "Changes made through the management API or the CLI whose audit entry could not be \
             written (the change stands; each is logged at ERROR)",
            Box::new(read),
            false,
        );
    }

    fn register_families<C: 'static>(
        &self,
        read: &Arc<dyn Fn() -> C + Send + Sync>,
        counters: &[Family<C>],
        gauges: &[Family<C>],
    ) {
        let all = counters
            .iter()
            .map(|family| (family, false))
            .chain(gauges.iter().map(|family| (family, true)));
        for (&(name, help, field), gauge) in all {
            let read = Arc::clone(read);
            self.register_fn(name, help, Box::new(move || field(&read())), gauge);
        }
    }
}
