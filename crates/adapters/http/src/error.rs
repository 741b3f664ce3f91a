//! The error envelope of the contract (`WebhookErrorResponse`) and the one place statuses are
//! chosen for failures.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, WWW_AUTHENTICATE};
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
    /// 405: the route exists for other methods.
    MethodNotAllowed,
    /// 503: nothing could take the request durably (the post-call webhook when both the
    /// store and the outbox are down).
    ServiceUnavailable,
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
            Self::MethodNotAllowed => Some("method_not_allowed"),
            Self::ServiceUnavailable => Some("unavailable"),
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::InvalidJson(_) | Self::InvalidRequest(_) => "Invalid request",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::ServiceUnavailable => "Service unavailable",
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
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            Self::InvalidJson(issue) => Some(std::slice::from_ref(issue)),
            Self::InvalidRequest(issues) => Some(issues.as_slice()),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            Self::MethodNotAllowed => {
                response.insert_header((ALLOW, "POST"));
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

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse<Self::Body> {
        self.error_response()
    }
}
