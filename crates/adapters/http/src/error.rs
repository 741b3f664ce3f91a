//! The error envelope of the contract (`WebhookErrorResponse`) and the one place statuses are
//! chosen for failures.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// One problem with a request field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    /// The field (JSON path) at fault; `None` when it is the body as a whole.
    pub field: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

/// The methods a path accepts, as the `Allow` header of its 405 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// The webhooks.
    Post,
    /// The probes and the scrape. Only `GET`: actix-web routes `HEAD` to no `GET` handler, so
    /// `HEAD` is refused too.
    Get,
    /// A management collection: list and create.
    GetPost,
    /// A management item: read, change, delete.
    GetPatchDelete,
    /// A management item addressed by an external id: read, replace, delete.
    GetPutDelete,
    /// A management item that is only replaced (the webhook secret).
    Put,
    /// A management item that is only deleted (revoking a secret or key).
    Delete,
}

impl Allowed {
    /// The `Allow` header's value.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
            Self::GetPost => "GET, POST",
            Self::GetPatchDelete => "GET, PATCH, DELETE",
            Self::GetPutDelete => "GET, PUT, DELETE",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// Every failure the HTTP layer answers, with its status and envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401: missing, malformed, unknown or revoked credentials. One body for every case.
    Unauthorized,
    /// 400: the body is not JSON.
    InvalidJson(FieldIssue),
    /// 400: the body is JSON but not a valid request.
    InvalidRequest(Vec<FieldIssue>),
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 415: the content type is not JSON.
    UnsupportedMediaType,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists for other methods: those in `Allow`.
    MethodNotAllowed(Allowed),
    /// 503: nothing could take the request durably (the post-call webhook when both the
    /// store and the outbox are down, or the outbox is full).
    ServiceUnavailable,
    /// 503: the store is down and the credentials cannot be verified without it, so nothing
    /// was read or kept (the post-call webhook).
    Unverifiable,
    /// 408: the body did not arrive in time (slower than the minimum rate).
    RequestTimeout,
    /// 429: this client failed authentication too often; `Retry-After` says when to try again.
    TooManyRequests {
        /// Seconds until the next attempt is allowed.
        retry_after: u64,
    },
    /// 403: the credentials are valid but do not reach what the request names (the management
    /// API: another organization, or an operator's operation). The detail says which.
    Forbidden(&'static str),
    /// 409: the request conflicts with what is stored (`code` says how: `external_id_taken`,
    /// `not_configured`).
    Conflict {
        /// The envelope's `code`.
        code: &'static str,
        /// For a person.
        detail: String,
    },
    /// 412: `If-Match` named another version than the stored one.
    PreconditionFailed,
    /// 422: the `Idempotency-Key` was used before for another request.
    IdempotencyKeyReused,
    /// 500: the store answered with data this service cannot read. Logged; the body says no
    /// more.
    Internal,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [FieldIssue]>,
}

impl ApiError {
    /// The `code` of the envelope (for logs too); `None` for 401, whose body is only `error`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized => None,
            Self::InvalidJson(_) => Some("invalid_json"),
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::PayloadTooLarge => Some("payload_too_large"),
            Self::UnsupportedMediaType => Some("unsupported_media_type"),
            Self::NotFound => Some("not_found"),
            Self::MethodNotAllowed(_) => Some("method_not_allowed"),
            Self::ServiceUnavailable => Some("unavailable"),
            Self::Unverifiable => Some("unverifiable"),
            Self::RequestTimeout => Some("request_timeout"),
            Self::TooManyRequests { .. } => Some("too_many_requests"),
            Self::Forbidden(_) => Some("forbidden"),
            Self::Conflict { code, .. } => Some(code),
            Self::PreconditionFailed => Some("precondition_failed"),
            Self::IdempotencyKeyReused => Some("idempotency_key_reused"),
            Self::Internal => Some("internal"),
        }
    }

    /// The request metrics' and logs' `outcome` of a refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::TooManyRequests { .. } => "throttled",
            Self::ServiceUnavailable => "unavailable",
            Self::Unverifiable => "unverifiable",
            Self::RequestTimeout => "timeout",
            Self::Forbidden(_) => "forbidden",
            Self::Conflict { .. } | Self::PreconditionFailed | Self::IdempotencyKeyReused => {
                "conflict"
            }
            Self::Internal => "error",
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType
            | Self::NotFound
            | Self::MethodNotAllowed(_) => "invalid",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::InvalidJson(_) | Self::InvalidRequest(_) => "Invalid request",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::ServiceUnavailable | Self::Unverifiable => "Service unavailable",
            Self::RequestTimeout => "Request timeout",
            Self::TooManyRequests { .. } => "Too many requests",
            Self::Forbidden(_) => "Forbidden",
            Self::Conflict { .. } => "Conflict",
            Self::PreconditionFailed => "Precondition failed",
            Self::IdempotencyKeyReused => "Unprocessable content",
            Self::Internal => "Internal error",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidJson(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ServiceUnavailable | Self::Unverifiable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail;
        let details = match self {
            Self::InvalidJson(issue) => Some(std::slice::from_ref(issue)),
            Self::InvalidRequest(issues) => Some(issues.as_slice()),
            Self::Forbidden(why) => {
                detail = [FieldIssue {
                    field: None,
                    message: (*why).to_owned(),
                }];
                Some(detail.as_slice())
            }
            Self::Conflict { detail: why, .. } => {
                detail = [FieldIssue {
                    field: None,
                    message: why.clone(),
                }];
                Some(detail.as_slice())
            }
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            Self::MethodNotAllowed(allowed) => {
                response.insert_header((ALLOW, allowed.header_value()));
            }
            Self::TooManyRequests { retry_after } => {
                response.insert_header((RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(Envelope {
            error: self.message(),
            code: self.code(),
            details,
        })
    }
}

/// The answer to a refused request. When the request came with a body, the connection is closed
/// after the answer: credentials are checked before the body is read, and a refused client must
/// not keep the server draining what it still sends.
pub(crate) fn refusal_response(error: &ApiError, req: &actix_web::HttpRequest) -> HttpResponse {
    let mut response = error.error_response();
    if has_body(req) {
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    response
}

fn has_body(req: &actix_web::HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A resource's default service: a 405 naming the methods the resource routes (`allowed`).
pub(crate) fn method_not_allowed(allowed: Allowed) -> actix_web::Route {
    actix_web::web::to(move || async move { ApiError::MethodNotAllowed(allowed) })
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse<Self::Body> {
        self.error_response()
    }
}
