//! Reading a JSON webhook body: content type, size limit, object check, typed parse, validation.
//! Shared by every webhook route, each with its own body type and size limit.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpMessage as _, HttpRequest, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationError};

use crate::error::{ApiError, FieldIssue};

pub(crate) fn no_whitespace_or_control(value: &str) -> Result<(), ValidationError> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        let mut error = ValidationError::new("forbidden_character");
        error.message = Some("must not contain whitespace or control characters".into());
        return Err(error);
    }
    Ok(())
}

pub(crate) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let mime = req
        .mime_type()
        .map_err(|_| ApiError::UnsupportedMediaType)?;
    match mime {
        Some(m)
            if m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")) =>
        {
            Ok(())
        }
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// The whole body, refused with 413 as soon as it is known to exceed `limit` bytes (from
/// `Content-Length`, or while streaming when there is none).
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::InvalidJson(FieldIssue {
                field: None,
                message: format!("the body could not be read: {e}"),
            })
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON object into `T` and validates it; every failure is a 400 naming the field.
pub(crate) fn parse<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; the contract wants an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(e) => ApiError::InvalidJson(FieldIssue {
                    field: None,
                    message: e.to_string(),
                }),
                Ok(_) => ApiError::InvalidRequest(vec![FieldIssue {
                    field: None,
                    message: "the body must be a JSON object".into(),
                }]),
            },
        );
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let body: T = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let issue = FieldIssue {
            field: (path != ".").then_some(path),
            message: inner.to_string(),
        };
        if inner.is_data() {
            ApiError::InvalidRequest(vec![issue])
        } else {
            ApiError::InvalidJson(issue)
        }
    })?;
    body.validate().map_err(|errors| {
        let mut issues: Vec<FieldIssue> = errors
            .field_errors()
            .into_iter()
            .flat_map(|(field, errs)| {
                errs.iter().map(move |e| FieldIssue {
                    field: Some(field.to_string()),
                    message: e.message.as_deref().unwrap_or(&e.code).to_owned(),
                })
            })
            .collect();
        issues.sort_by(|a, b| a.field.cmp(&b.field));
        ApiError::InvalidRequest(issues)
    })?;
    Ok(body)
}
