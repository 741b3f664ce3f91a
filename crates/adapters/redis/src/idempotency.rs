//! The idempotency cache: one small JSON record per `Idempotency-Key`, under
//! `{prefix}idem:{scope}:{hex sha256 of the key}` (the client's key is arbitrary text; its digest
//! keeps Redis keys bounded and free of separators). The record is
//! `{"fp": hex, "state": "pending"}` while the request runs and
//! `{"fp": hex, "state": "done", "status": .., "headers": [[name, value], ..], "body": base64}`
//! once it is answered. Each operation is one single-key script or command, so it is atomic and
//! routes by its key on a cluster.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use deadpool_redis::redis;
use relay_ports::{CacheError, Claim, IdempotencyCache, StoredResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::RedisCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Pending,
    Done,
}

/// What is stored under a key.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The fingerprint of the request holding the key, in hex.
    fp: String,
    state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    /// The body, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

impl Record {
    fn pending(fingerprint: &[u8; 32]) -> Self {
        Self {
            fp: hex::encode(fingerprint),
            state: State::Pending,
            status: None,
            headers: Vec::new(),
            body: None,
        }
    }

    fn done(fingerprint: &[u8; 32], response: &StoredResponse) -> Self {
        Self {
            fp: hex::encode(fingerprint),
            state: State::Done,
            status: Some(response.status),
            headers: response.headers.clone(),
            body: Some(STANDARD.encode(&response.body)),
        }
    }

    fn to_json(&self) -> Result<String, CacheError> {
        serde_json::to_string(self).map_err(|e| CacheError::Corrupt(Box::new(e)))
    }

    /// What a claim with `fingerprint` finds in this record.
    fn claim(self, fingerprint: &[u8; 32]) -> Result<Claim, CacheError> {
        if self.fp != hex::encode(fingerprint) {
            return Ok(Claim::Mismatch);
        }
        match self.state {
            State::Pending => Ok(Claim::InProgress),
            State::Done => {
                let status = self.status.ok_or_else(|| {
                    CacheError::Corrupt("idempotency record without status".into())
                })?;
                let body = STANDARD
                    .decode(self.body.unwrap_or_default())
                    .map_err(|e| CacheError::Corrupt(Box::new(e)))?;
                Ok(Claim::Completed(StoredResponse {
                    status,
                    headers: self.headers,
                    body,
                }))
            }
        }
    }
}

/// Answers the record under `KEYS[1]`, or stores `ARGV[1]` there for `ARGV[2]` milliseconds and
/// answers nil: of concurrent claims exactly one finds nothing.
const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Stores the finished record `ARGV[1]` for `ARGV[3]` milliseconds unless the key is held by
/// another request (a readable record whose fingerprint is not `ARGV[2]`). Answers 1 when
/// stored, 0 when left alone.
const COMPLETE: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and record.fp ~= ARGV[2] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
";

/// Longest TTL sent: Redis refuses an expiry time past its clock's range.
const MAX_TTL_MS: u64 = 1 << 46;

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

impl RedisCache {
    /// The key an `Idempotency-Key` of `scope` is stored under.
    pub fn idempotency_key(&self, scope: &str, key: &str) -> String {
        format!(
            "{}idem:{scope}:{}",
            self.prefix,
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }
}

#[async_trait]
impl IdempotencyCache for RedisCache {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        ttl: Duration,
    ) -> Result<Claim, CacheError> {
        let found: Option<String> = self
            .command(
                redis::cmd("EVAL")
                    .arg(CLAIM)
                    .arg(1)
                    .arg(self.idempotency_key(scope, key))
                    .arg(Record::pending(fingerprint).to_json()?)
                    .arg(ttl_ms(ttl)),
            )
            .await?;
        match found {
            None => Ok(Claim::Reserved),
            Some(json) => serde_json::from_str::<Record>(&json)
                .map_err(|e| CacheError::Corrupt(Box::new(e)))?
                .claim(fingerprint),
        }
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let stored: i64 = self
            .command(
                redis::cmd("EVAL")
                    .arg(COMPLETE)
                    .arg(1)
                    .arg(self.idempotency_key(scope, key))
                    .arg(Record::done(fingerprint, response).to_json()?)
                    .arg(hex::encode(fingerprint))
                    .arg(ttl_ms(ttl)),
            )
            .await?;
        if stored == 0 {
            tracing::debug!("idempotency key taken by another request; response not stored");
        }
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str) -> Result<(), CacheError> {
        self.command::<u64>(redis::cmd("DEL").arg(self.idempotency_key(scope, key)))
            .await?;
        Ok(())
    }
}
