//! The server span of a webhook request: tracing-actix-web's root span (W3C `traceparent`
//! continued, route, status, OpenTelemetry server kind) plus the request's `outcome`, which the
//! handler records, and `client.address`, the client as `TRUSTED_PROXIES` lets us know it
//! (tracing-actix-web's own `http.client_ip` believes any `X-Forwarded-For`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Builds the root span with an `outcome` field for the handler to fill.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WebhookRootSpan;

impl RootSpanBuilder for WebhookRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let client = request
            .app_data::<actix_web::web::Data<crate::access::Access>>()
            .map(|access| access.client(request.request()).to_string());
        tracing_actix_web::root_span!(
            request,
            outcome = tracing::field::Empty,
            client.address = client
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
