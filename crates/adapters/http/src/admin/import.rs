//! `POST /admin/v1/organizations/{org}/contacts/import`: a CSV (`text/csv`) or NDJSON
//! (`application/x-ndjson`) body streamed into the import, the same rules and per-row report as
//! `relay contacts import`, with bounded memory for any size: the body is handed to the reader
//! a few chunks at a time, and the request waits for the store while it writes.
//!
//! The key and its reach are checked before a byte of the body is read.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use relay_contact_files::{Format, rows};
use relay_domain::OrgId;
use relay_usecase::ImportReport;
use serde::Serialize;
use tokio::sync::mpsc;

use super::guard::Caller;
use super::routes::{api_error, id, manager, reply};
use crate::error::{ApiError, FieldIssue};

/// Chunks of the body waiting for the reader at most: what an import holds of a body.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Longest a client may leave the import waiting for its next chunk.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

/// The body's format, from its content type.
fn format(req: &HttpRequest) -> Result<Format, ApiError> {
    let mime = req
        .mime_type()
        .map_err(|_| ApiError::UnsupportedMediaType)?
        .ok_or(ApiError::UnsupportedMediaType)?;
    match (mime.type_().as_str(), mime.subtype().as_str()) {
        ("text", "csv") => Ok(Format::Csv),
        ("application", "x-ndjson" | "ndjson" | "jsonl") => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// A blocking [`Read`] over the chunks the request task forwards.
struct ChunkReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Forwards the body's chunks until it ends, the reader stops wanting them, or the client is
/// too slow. Returns whether the whole body was forwarded.
async fn forward(mut payload: web::Payload, chunks: mpsc::Sender<io::Result<Bytes>>) -> bool {
    loop {
        let next = match tokio::time::timeout(CHUNK_TIMEOUT, payload.next()).await {
            Ok(next) => next,
            Err(_) => {
                let _ = chunks
                    .send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the body stopped arriving",
                    )))
                    .await;
                return false;
            }
        };
        let item = match next {
            None => return true,
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(io::Error::other(e.to_string())),
        };
        let failed = item.is_err();
        if chunks.send(item).await.is_err() || failed {
            return false;
        }
    }
}

#[derive(Serialize)]
struct RejectionJson {
    line: u64,
    reason: String,
}

#[derive(Serialize)]
struct ImportJson {
    rows: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    rejected_total: u64,
    /// The first rejections, in source order.
    rejected: Vec<RejectionJson>,
    /// Why the rows ended before the body did (the rows before were imported); `null` when the
    /// whole body was read.
    stopped: Option<String>,
}

impl ImportJson {
    fn new(report: &ImportReport, stopped: Option<String>) -> Self {
        Self {
            rows: report.rows,
            inserted: report.summary.inserted,
            updated: report.summary.updated,
            unchanged: report.summary.unchanged,
            rejected_total: report.rejected_total,
            rejected: report
                .rejected
                .iter()
                .map(|r| RejectionJson {
                    line: r.line,
                    reason: r.reason.clone(),
                })
                .collect(),
            stopped,
        }
    }
}

pub(crate) async fn import(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let result = run(&req, &caller, &path, payload).await;
    let mut response = reply(&req, &caller, "admin_contacts_import", started, result);
    if response.status() != StatusCode::OK {
        // The body may be partly unread: do not keep draining it.
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    response
}

async fn run(
    req: &HttpRequest,
    caller: &Caller,
    org: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let org: OrgId = id(org)?;
    let manage = manager(req)?;
    // Refused before a byte of the body is read.
    manage
        .organization(&caller.principal, org)
        .await
        .map_err(api_error)?;
    let format = format(req)?;
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader = ChunkReader {
        chunks: rx,
        current: Bytes::new(),
    };
    let importing = async {
        let opened = tokio::task::spawn_blocking(move || rows(reader, format))
            .await
            .map_err(|_| ApiError::Internal)?;
        let (contacts, stopped) = opened.map_err(|e| {
            ApiError::InvalidRequest(vec![FieldIssue {
                field: None,
                message: e.to_string(),
            }])
        })?;
        let report = manage
            .import_contacts(&caller.principal, org, contacts, |_| {})
            .await
            .map_err(api_error)?;
        Ok::<_, ApiError>((report, stopped.take().map(|e| e.to_string())))
    };
    let (forwarded, imported) = futures_util::future::join(forward(payload, tx), importing).await;
    let (report, stopped) = imported?;
    let stopped = stopped.or_else(|| (!forwarded).then(|| "the body ended early".to_owned()));
    Ok(HttpResponse::Ok().json(ImportJson::new(&report, stopped)))
}
