//! `Idempotency-Key` on the creating requests (IETF draft `draft-ietf-httpapi-idempotency-key-
//! header`): the first request with a key runs and its answer is kept for 24 h; a retry with the
//! same key and the same request gets that answer again (`Idempotent-Replayed: true`) and
//! creates nothing; the same key on another request is a 422; a retry while the first is still
//! running is a 409. Keys belong to the management key that sent them.

use std::future::Future;
use std::time::Duration;

use actix_web::body::{BoxBody, to_bytes};
use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, HeaderName, HeaderValue, LOCATION};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use relay_domain::Actor;
use relay_ports::{Claim, IdempotencyCache, StoredResponse};
use sha2::{Digest as _, Sha256};

use super::guard::Caller;
use crate::error::{ApiError, FieldIssue};

/// How long an answer is kept for retries.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest `Idempotency-Key`, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// The header a client sends.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header a replayed answer carries.
const REPLAYED: &str = "idempotent-replayed";

/// The request's `Idempotency-Key`: `None` without one; 400 for an empty, overlong or
/// non-printable one.
fn key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::InvalidRequest(vec![FieldIssue {
            field: Some("Idempotency-Key".into()),
            message: format!("must be 1 to {MAX_KEY_BYTES} printable ASCII characters"),
        }])
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text.is_empty()
        || text.len() > MAX_KEY_BYTES
        || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(invalid());
    }
    Ok(Some(text.to_owned()))
}

/// What identifies a request under its key: method, path and query, body.
fn fingerprint(req: &HttpRequest, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(req.method().as_str());
    hash.update([0]);
    hash.update(req.uri().path_and_query().map_or("", |p| p.as_str()));
    hash.update([0]);
    hash.update(body);
    hash.finalize().into()
}

/// What a creating request's answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing secret: kept whole and replayed.
    Plain,
    /// A secret shown once (a tool secret, a management key): never kept. A retry learns that
    /// the first request created the object (its `Location`), not the secret.
    HoldsSecret,
}

/// Runs a creating request (`run`, given its body) under its `Idempotency-Key`, if it has one.
pub(crate) async fn creating<F, Fut>(
    req: &HttpRequest,
    caller: &Caller,
    body: web::Bytes,
    answer: Answer,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(web::Bytes) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = key(req)? else {
        return run(body).await;
    };
    let cache = req
        .app_data::<web::Data<dyn IdempotencyCache>>()
        .cloned()
        .ok_or(ApiError::Internal)?;
    let Actor::Key(scope) = caller.principal.actor else {
        return Err(ApiError::Internal);
    };
    let scope = scope.to_string();
    let fingerprint = fingerprint(req, &body);
    let claim = cache
        .claim(&scope, &key, &fingerprint, IDEMPOTENCY_TTL)
        .await
        .map_err(|e| unavailable(&e))?;
    match claim {
        Claim::Completed(stored) => Ok(replay(&stored)),
        Claim::InProgress => Err(ApiError::Conflict {
            code: "idempotency_in_progress",
            detail: "a request with this Idempotency-Key is still being handled; retry later"
                .into(),
        }),
        Claim::Mismatch => Err(ApiError::IdempotencyKeyReused),
        Claim::Reserved => {
            let response = match run(body).await {
                Ok(response) => response,
                Err(error) => error.error_response(),
            };
            let status = response.status();
            let (response, mut stored) = capture(response).await;
            if answer == Answer::HoldsSecret && status.is_success() {
                stored = secret_not_replayed(stored).await;
            }
            // A server error or a throttled request may succeed when retried: free the key.
            let keep = !(status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT);
            let kept = if keep {
                cache
                    .complete(&scope, &key, &fingerprint, &stored, IDEMPOTENCY_TTL)
                    .await
            } else {
                cache.release(&scope, &key).await
            };
            if let Err(error) = kept {
                // The change is made; a retry within the TTL will be refused as in progress
                // rather than repeated.
                tracing::warn!(error = %error, "the answer to an Idempotency-Key request could not be kept");
            }
            Ok(response)
        }
    }
}

fn unavailable(error: &relay_ports::CacheError) -> ApiError {
    tracing::warn!(error = %error, "Idempotency-Key: the cache cannot be reached; request refused");
    ApiError::ServiceUnavailable
}

/// The response, and what is kept of it: status, `Location` and `ETag`, body.
async fn capture(response: HttpResponse) -> (HttpResponse, StoredResponse) {
    let (head, body) = response.into_parts();
    let bytes = to_bytes(body).await.unwrap_or_default();
    let headers = [LOCATION, ETAG]
        .iter()
        .filter_map(|name| {
            head.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let stored = StoredResponse {
        status: head.status().as_u16(),
        headers,
        body: bytes.to_vec(),
    };
    (head.set_body(BoxBody::new(bytes)), stored)
}

/// What is kept of an answer that held a secret: a 409 saying the object was created (its
/// `Location`), without the secret.
async fn secret_not_replayed(created: StoredResponse) -> StoredResponse {
    let conflict = ApiError::Conflict {
        code: "idempotency_secret_not_replayed",
        detail: "the first request with this Idempotency-Key created this object; its secret is \
                 shown only once and is not kept: list the objects to find it, and revoke it if \
                 the secret was lost"
            .into(),
    };
    let (_, mut stored) = capture(conflict.error_response()).await;
    stored.headers = created
        .headers
        .into_iter()
        .filter(|(name, _)| name == LOCATION.as_str())
        .collect();
    stored
}

/// The kept answer, again.
fn replay(stored: &StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if !stored.body.is_empty() {
        response.content_type("application/json");
    }
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.insert_header((name, value));
        }
    }
    response.insert_header((HeaderName::from_static(REPLAYED), "true"));
    response.body(stored.body.clone())
}
