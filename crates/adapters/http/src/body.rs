//! Reading a JSON webhook body: content type, size limit, object check, typed parse, validation.
//! Shared by every webhook route, each with its own body type and size limit.

use std::time::Duration;

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

/// How long any body may take before it must keep up with [`MIN_BODY_BYTES_PER_SEC`].
pub(crate) const BODY_GRACE: Duration = Duration::from_secs(5);

/// The slowest a body may arrive once [`BODY_GRACE`] is over, on average: 128 KiB/s (1 Mbit/s).
/// ElevenLabs uploads from a datacenter, and an ingress that buffers bodies forwards them at
/// LAN speed; a client slower than this is holding a connection (and memory) hostage.
pub(crate) const MIN_BODY_BYTES_PER_SEC: u64 = 128 * 1024;

/// Most a body's buffer starts with, whatever its declared length.
const FIRST_ALLOCATION: usize = 64 * 1024;

/// The declared `Content-Length`, if any.
pub(crate) fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads a request body under a size limit and a deadline that grows with what arrived: every
/// byte buys `1 / MIN_BODY_BYTES_PER_SEC` seconds on top of [`BODY_GRACE`], so a body sent at
/// one byte a second is cut off after the grace, while a large body at a normal speed is not.
pub(crate) struct BodyReader {
    payload: web::Payload,
    limit: usize,
    started: tokio::time::Instant,
    body: web::BytesMut,
}

impl BodyReader {
    /// Starts reading; refused with 413 at once when `Content-Length` exceeds `limit`.
    pub(crate) fn new(
        req: &HttpRequest,
        payload: web::Payload,
        limit: usize,
    ) -> Result<Self, ApiError> {
        let declared = declared_length(req);
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(Self {
            payload,
            limit,
            started: tokio::time::Instant::now(),
            // What was declared is not trusted with memory: the buffer grows with what arrives.
            body: web::BytesMut::with_capacity(
                declared.unwrap_or(1024).min(limit).min(FIRST_ALLOCATION),
            ),
        })
    }

    /// Bytes read so far.
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    /// Reads until the body ends or holds more than `until` bytes. Returns whether it ended.
    pub(crate) async fn read_until(&mut self, until: usize) -> Result<bool, ApiError> {
        while self.body.len() <= until {
            let allowed = BODY_GRACE
                + Duration::from_secs_f64(self.body.len() as f64 / MIN_BODY_BYTES_PER_SEC as f64);
            let next = tokio::time::timeout_at(self.started + allowed, self.payload.next())
                .await
                .map_err(|_| ApiError::RequestTimeout)?;
            let Some(chunk) = next else {
                return Ok(true);
            };
            let chunk = chunk.map_err(|e| {
                ApiError::InvalidJson(FieldIssue {
                    field: None,
                    message: format!("the body could not be read: {e}"),
                })
            })?;
            if self.body.len() + chunk.len() > self.limit {
                return Err(ApiError::PayloadTooLarge);
            }
            self.body.extend_from_slice(&chunk);
        }
        Ok(false)
    }

    /// Time spent waiting on the server's side (for a memory slot) does not count against the
    /// client's deadline.
    pub(crate) fn pause(&mut self, waited: Duration) {
        self.started += waited;
    }

    /// The whole body.
    pub(crate) async fn read_to_end(mut self) -> Result<web::BytesMut, ApiError> {
        self.read_until(usize::MAX).await?;
        Ok(self.body)
    }

    /// What was read.
    pub(crate) fn into_body(self) -> web::BytesMut {
        self.body
    }
}

/// The whole body, under `limit` bytes (413) and the [`BodyReader`] deadline (408).
pub(crate) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    BodyReader::new(req, payload, limit)?.read_to_end().await
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
    let body: T = serde_path_to_error::deserialize(&mut *deserializer).map_err(|e| {
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
    // One JSON value and nothing after it but whitespace: `{...}garbage` is not a request.
    deserializer.end().map_err(|e| {
        ApiError::InvalidJson(FieldIssue {
            field: None,
            message: e.to_string(),
        })
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

#[cfg(test)]
pub(crate) mod tests {
    use std::pin::Pin;

    use actix_web::FromRequest as _;
    use actix_web::test::TestRequest;
    use futures_util::Stream;

    use super::*;

    /// A request whose body arrives as `chunks`, each after `gap`.
    pub(crate) async fn slow_request(
        chunks: Vec<&'static [u8]>,
        gap: Duration,
        declared: Option<usize>,
    ) -> (HttpRequest, web::Payload) {
        let stream = futures_util::stream::unfold(chunks.into_iter(), move |mut rest| async move {
            let chunk = rest.next()?;
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, actix_web::error::PayloadError>(web::Bytes::from_static(chunk)),
                rest,
            ))
        });
        let boxed: Pin<Box<dyn Stream<Item = _>>> = Box::pin(stream);
        let mut req = TestRequest::post();
        if let Some(n) = declared {
            req = req.insert_header((CONTENT_LENGTH, n.to_string()));
        }
        let (req, _) = req.to_http_parts();
        let mut payload = actix_web::dev::Payload::from(boxed);
        let payload = web::Payload::from_request(&req, &mut payload)
            .await
            .unwrap();
        (req, payload)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickling_in_is_cut_off_after_the_grace_with_408() {
        let chunks = vec![&b"{"[..]; 64];
        let (req, payload) = slow_request(chunks, Duration::from_secs(1), None).await;
        let started = tokio::time::Instant::now();
        assert_eq!(
            read_body(&req, payload, 64 * 1024).await.unwrap_err(),
            ApiError::RequestTimeout
        );
        let took = started.elapsed();
        assert!(
            (BODY_GRACE..BODY_GRACE + Duration::from_secs(1)).contains(&took),
            "cut after {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_a_normal_rate_is_read_however_large() {
        // 2 MiB in 64 KiB chunks, one every 100 ms: 640 KiB/s, five times the minimum rate.
        static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
        let chunks = vec![&CHUNK[..]; 32];
        let (req, payload) = slow_request(chunks, Duration::from_millis(100), None).await;
        let body = read_body(&req, payload, 4 * 1024 * 1024).await.unwrap();
        assert_eq!(body.len(), 2 * 1024 * 1024);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (req, payload) = slow_request(vec![], Duration::ZERO, Some(70_000)).await;
        assert_eq!(
            read_body(&req, payload, 64 * 1024).await.unwrap_err(),
            ApiError::PayloadTooLarge
        );
    }

    /// Every `pattern` of docs/openapi.yaml, with what it constrains: the property it sits in,
    /// or the name of the parameter whose schema it is. The document writes patterns in single
    /// quotes, where a backslash is itself and `''` a quote.
    pub(crate) fn contract_patterns() -> Vec<(String, String)> {
        let lines: Vec<&str> = include_str!("../../../../docs/openapi.yaml")
            .lines()
            .collect();
        let indent = |line: &str| line.len() - line.trim_start().len();
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(quoted) = line.trim().strip_prefix("pattern: ") else {
                continue;
            };
            let pattern = quoted
                .strip_prefix('\'')
                .and_then(|q| q.strip_suffix('\''))
                .unwrap_or_else(|| panic!("line {}: write patterns in single quotes", i + 1))
                .replace("''", "'");
            let mut level = indent(line);
            let mut owner = None;
            for above in lines[..i].iter().rev() {
                if above.trim().is_empty() || indent(above) >= level {
                    continue;
                }
                level = indent(above);
                let key = above.trim().trim_start_matches("- ");
                if key == "schema:" {
                    continue;
                }
                owner = Some(
                    key.trim_start_matches("name: ")
                        .trim_end_matches(':')
                        .to_owned(),
                );
                break;
            }
            found.push((owner.expect("a pattern sits in a property"), pattern));
        }
        found
    }

    /// The one pattern the contract gives the ids the server checks with
    /// [`no_whitespace_or_control`].
    pub(crate) fn contract_id_pattern() -> regex::Regex {
        let ids: std::collections::BTreeSet<String> = contract_patterns()
            .into_iter()
            .filter(|(owner, _)| ["conversation_id", "call_sid"].contains(&owner.as_str()))
            .map(|(_, pattern)| pattern)
            .collect();
        assert_eq!(ids.len(), 1, "one rule, one pattern: {ids:?}");
        regex::Regex::new(ids.first().unwrap()).unwrap()
    }

    #[test]
    fn every_pattern_of_the_contract_is_compared_with_the_server() {
        let patterns = contract_patterns();
        assert!(patterns.len() >= 7, "{patterns:?}");
        // The management API's patterns (every other owner) are held to the server by
        // `just fuzz-admin`: schemathesis sends values on both sides of each of them.
        let management = [
            "IdempotencyKey",
            "IfMatch",
            "ContactETag",
            "OrganizationLocation",
            "ContactLocation",
            "name",
            "default_region",
            "unknown_caller_name",
            "RegionInput",
            "token",
            "secret",
            "label",
            "key",
            "ExternalId",
            "first_name",
            "last_name",
            "external_id",
            "phone",
            "ContactsCsv",
            "caller",
            "actor",
        ];
        for (owner, pattern) in patterns {
            // conversation_id, call_sid: below; org: post_call.rs; caller_number: personalization.rs.
            assert!(
                ["conversation_id", "call_sid", "org", "caller_number"].contains(&owner.as_str())
                    || management.contains(&owner.as_str()),
                "docs/openapi.yaml gives {owner} the pattern {pattern}: compare it with the server in a test"
            );
        }
    }

    #[test]
    fn the_contract_id_pattern_is_the_servers_rule_for_every_character() {
        let pattern = contract_id_pattern();
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(
                pattern.is_match(&s),
                no_whitespace_or_control(&s).is_ok(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_contract_id_pattern_is_the_servers_rule_for_any_text(
            s in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[a-z_0-9\\s\\p{Cc}\\p{Zs}]{0,12}",
            ]
        ) {
            let server = !s.is_empty() && no_whitespace_or_control(&s).is_ok();
            proptest::prop_assert_eq!(contract_id_pattern().is_match(&s), server, "{:?}", s);
        }
    }

    #[test]
    fn trailing_data_after_the_object_is_invalid_json() {
        #[derive(Debug, serde::Deserialize, Validate)]
        struct Body {
            #[allow(dead_code, reason = "only parsed")]
            a: Option<u8>,
        }
        assert!(parse::<Body>(br#"{"a":1}  "#).is_ok());
        for bad in [&br#"{"a":1}x"#[..], br#"{"a":1}{"a":2}"#, br#"{"a":1} ]"#] {
            assert!(
                matches!(parse::<Body>(bad), Err(ApiError::InvalidJson(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
