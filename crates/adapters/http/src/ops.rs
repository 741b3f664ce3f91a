//! Operations routes: `GET /healthz`, `GET /readyz`, `GET /metrics`. None of them is logged or
//! counted as a request, and none has a trace span: probes every few seconds would drown the
//! webhook's own signals.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use relay_observability::{Metrics, PROMETHEUS_CONTENT_TYPE};
use relay_usecase::Readiness;
use serde::Serialize;

/// Liveness: the process answers HTTP. No dependency is checked, so a database outage never
/// makes Kubernetes restart a replica that would answer `{}` meanwhile.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct ReadyBody<'a> {
    status: &'static str,
    checks: std::collections::BTreeMap<&'a str, &'static str>,
}

/// Readiness: 200 when every dependency answered within the readiness timeout, else 503 naming
/// each dependency's result; 503 `draining` as soon as shutdown has begun.
pub(crate) async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.check().await;
    let status = if report.draining {
        "draining"
    } else if report.is_ready() {
        "ready"
    } else {
        "not_ready"
    };
    let body = ReadyBody {
        status,
        checks: report
            .checks
            .iter()
            .map(|(name, result)| (*name, result.as_str()))
            .collect(),
    };
    let mut response = if report.is_ready() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Every metric in the Prometheus text format.
pub(crate) async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(metrics.render())
}
