//! The server span of a webhook request: tracing-actix-web's root span (W3C `traceparent`
//! continued, route, status, OpenTelemetry server kind) plus the request's `outcome`, which the
//! handler records.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Builds the root span with an `outcome` field for the handler to fill.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WebhookRootSpan;

impl RootSpanBuilder for WebhookRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(request, outcome = tracing::field::Empty)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
