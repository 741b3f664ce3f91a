//! Redis adapter: the call-context cache, one JSON string per key with a TTL, and the post-call
//! delivery outbox, one stream.
//!
//! Keys: `{prefix}org:{org_id}:call:{conversation_id}` and
//! `{prefix}org:{org_id}:call-sid:{call_sid}` (prefix default `relay:`; a context with both ids is
//! written under both), so each organization has its own key space: the ids come from whoever
//! calls the webhook, and one organization must not reach another's context by naming its
//! conversation. The streams `{prefix}post-call-outbox` and `{prefix}post-call-dead-letter` hold
//! post-call deliveries. Each operation is a single-key command or script (`SET .. EX`, `GET`,
//! `XRANGE`, `XDEL`, bounded `XADD`), so the keys shard cleanly on a Redis Cluster:
//! [`RedisCache::new`] talks to one server, [`RedisCache::cluster`] to a cluster (commands follow
//! `MOVED`/`ASK`).
//!
//! The same cache keeps the responses of `Idempotency-Key` requests under
//! `{prefix}idem:{scope}:{hex sha256 of the key}` (see the `idempotency` module).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, FromRedisValue};
use deadpool_redis::{PoolConfig, Runtime, Timeouts, cluster};
use relay_domain::{CallContext, CallKey, ContactId, E164, OrgId};
use relay_ports::{
    Appended, BoxError, CacheError, CallContextCache, DeliveryOutbox, OutboxBound, OutboxEntry,
    OutboxError, OutboxLimits, OutboxUsage, PoolStats, Probe,
};
use secrecy::{ExposeSecret, SecretString};

mod idempotency;
#[cfg(feature = "test-helpers")]
pub mod testing;

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// How long to wait for a connection (free, new or recycled) before failing.
    pub timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            timeout: Duration::from_secs(1),
        }
    }
}

impl PoolSettings {
    fn pool_config(self) -> PoolConfig {
        PoolConfig {
            max_size: self.max_size,
            timeouts: Timeouts {
                wait: Some(self.timeout),
                create: Some(self.timeout),
                recycle: Some(self.timeout),
            },
            ..PoolConfig::default()
        }
    }
}

/// A Redis URL could not be read, or a pool not built from it.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is not a usable Redis URL: {reason}")]
pub struct InvalidUrl {
    variable: &'static str,
    /// What is wrong, never the URL itself.
    reason: String,
}

impl InvalidUrl {
    fn new(variable: &'static str, reason: impl std::fmt::Display) -> Self {
        Self {
            variable,
            reason: reason.to_string(),
        }
    }
}

/// `rediss://` needs a TLS crypto provider; the redis crate asks rustls for the process default,
/// which rustls cannot pick by itself when several are compiled in (this binary has two, through
/// other crates). Installing ring's is idempotent: a provider already installed is kept.
fn ensure_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone)]
enum Backend {
    Single(
        deadpool_redis::Pool,
        Shared<redis::aio::MultiplexedConnection>,
    ),
    Cluster(cluster::Pool, Shared<cluster::ClusterConnection>),
}

/// The multiplexed connection commands go through, taken from the pool once and kept.
///
/// Two reasons. Each `Pool::get` of an idle connection costs a round trip (deadpool-redis
/// checks it with `UNWATCH` and `PING`): that was one extra round trip per webhook call. And a
/// connection checked out of the pool serves one command at a time, while a multiplexed
/// connection shared by concurrent requests sends their commands together (redis-rs pipelines
/// whatever is queued into one write), so many requests' context writes share a round trip.
/// A command that fails drops the kept handle: the next one goes back to the pool, which checks
/// the connection and opens a new one if it is broken.
#[derive(Clone)]
struct Shared<C>(Arc<Mutex<Option<C>>>);

impl<C: Clone> Shared<C> {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }

    fn get(&self) -> Option<C> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn keep(&self, connection: &C) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
    }

    fn drop_kept(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl<C: Clone + redis::aio::ConnectionLike + Send> Shared<C> {
    /// Runs `cmd` on the kept connection, taking one with `checkout` when none is kept, and
    /// drops it when the command fails.
    async fn query<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        checkout: impl AsyncFnOnce() -> Result<C, deadpool_redis::PoolError>,
    ) -> Result<T, CacheError> {
        let mut conn = match self.get() {
            Some(conn) => conn,
            None => {
                let conn = checkout()
                    .await
                    .map_err(|e| CacheError::Unavailable(Box::new(e)))?;
                self.keep(&conn);
                conn
            }
        };
        let result = cmd.query_async(&mut conn).await;
        if result.is_err() {
            self.drop_kept();
        }
        result.map_err(unavailable)
    }
}

/// The call-context cache in Redis (one server or a cluster).
#[derive(Clone)]
pub struct RedisCache {
    backend: Backend,
    prefix: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

fn parse(url: &SecretString, variable: &'static str) -> Result<String, InvalidUrl> {
    // Parse first: deadpool would only notice a bad URL on first use. The parser's message
    // could quote the URL, so only the kind of problem is kept.
    let parsed = redis::parse_redis_url(url.expose_secret())
        .ok_or_else(|| InvalidUrl::new(variable, "expected redis://, rediss:// or unix://"))?;
    if parsed.scheme() == "rediss" {
        ensure_tls_provider();
    }
    Ok(url.expose_secret().to_owned())
}

impl RedisCache {
    /// A cache on one Redis server whose connections open on first use: the service starts
    /// while Redis is down and recovers by itself when it is back.
    ///
    /// # Errors
    /// [`InvalidUrl`] when the URL cannot be parsed (the URL itself is never echoed).
    pub fn new(
        url: &SecretString,
        prefix: &str,
        settings: PoolSettings,
    ) -> Result<Self, InvalidUrl> {
        let mut config = deadpool_redis::Config::from_url(parse(url, "REDIS_URL")?);
        config.pool = Some(settings.pool_config());
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| InvalidUrl::new("REDIS_URL", pool_error(&e)))?;
        Ok(Self {
            backend: Backend::Single(pool, Shared::new()),
            prefix: prefix.to_owned(),
        })
    }

    /// A cache on a Redis Cluster, found through any of its nodes' `urls` (the slot map is
    /// read from the first that answers). Connections open on first use, as with [`Self::new`].
    ///
    /// # Errors
    /// [`InvalidUrl`] when there is no URL or one cannot be parsed.
    pub fn cluster(
        urls: &[SecretString],
        prefix: &str,
        settings: PoolSettings,
    ) -> Result<Self, InvalidUrl> {
        const VARIABLE: &str = "REDIS_CLUSTER_URLS";
        if urls.is_empty() {
            return Err(InvalidUrl::new(VARIABLE, "no URL given"));
        }
        let urls = urls
            .iter()
            .map(|u| parse(u, VARIABLE))
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = cluster::Config::from_urls(urls);
        config.pool = Some(settings.pool_config());
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| InvalidUrl::new(VARIABLE, pool_error(&e)))?;
        Ok(Self {
            backend: Backend::Cluster(pool, Shared::new()),
            prefix: prefix.to_owned(),
        })
    }

    /// Whether this cache talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(..))
    }

    /// The key `org`'s context is stored under.
    pub fn key(&self, org: OrgId, key: &CallKey) -> String {
        match key {
            CallKey::Conversation(id) => {
                format!("{}org:{org}:call:{}", self.prefix, id.as_str())
            }
            CallKey::CallSid(sid) => format!("{}org:{org}:call-sid:{}", self.prefix, sid.as_str()),
        }
    }

    /// Where versions before organization-scoped keys stored a context. Read (never written)
    /// when the scoped key has nothing, and only for the organization the entry names, so calls
    /// that connected before an upgrade keep their context for its 24 hours.
    // TODO(2027-01): remove with the first release after every pre-scoping entry has expired.
    pub fn legacy_key(&self, key: &CallKey) -> String {
        match key {
            CallKey::Conversation(id) => format!("{}call:{}", self.prefix, id.as_str()),
            CallKey::CallSid(sid) => format!("{}call-sid:{}", self.prefix, sid.as_str()),
        }
    }

    async fn get_json(&self, key: String) -> Result<Option<CallContext>, CacheError> {
        let raw: Option<String> = self.command(redis::cmd("GET").arg(key)).await?;
        raw.map(|json| serde_json::from_str(&json).map_err(|e| CacheError::Corrupt(Box::new(e))))
            .transpose()
    }

    /// The stream post-call deliveries wait in while the store is down.
    pub fn outbox_key(&self) -> String {
        format!("{}post-call-outbox", self.prefix)
    }

    /// The stream deliveries that can never be recorded are moved to.
    pub fn dead_letter_key(&self) -> String {
        format!("{}post-call-dead-letter", self.prefix)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs any command, for tests' fixtures and checks (`test-helpers`: the port methods are
    /// the interface everywhere else).
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when no connection can be had or the command fails.
    #[cfg(feature = "test-helpers")]
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        self.command(cmd).await
    }

    /// Runs one command on the kept multiplexed connection ([`Shared`]; to the node owning
    /// its key, on a cluster).
    async fn command<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        match &self.backend {
            Backend::Single(pool, shared) => {
                shared
                    .query(cmd, async || {
                        let pooled = pool.get().await?;
                        Ok(redis::aio::MultiplexedConnection::clone(&pooled))
                    })
                    .await
            }
            Backend::Cluster(pool, shared) => {
                shared
                    .query(cmd, async || {
                        let pooled = pool.get().await?;
                        Ok(cluster::ClusterConnection::clone(&pooled))
                    })
                    .await
            }
        }
    }
}

/// The kind of a pool-creation error, without its text (which may carry the URL).
fn pool_error(e: &deadpool_redis::CreatePoolError) -> &'static str {
    match e {
        deadpool_redis::CreatePoolError::Config(_) => "the URL's settings are not supported",
        deadpool_redis::CreatePoolError::Build(_) => "the connection pool could not be built",
    }
}

/// The outbox's commands fail only by not being answered.
fn outbox_error(e: CacheError) -> OutboxError {
    match e {
        CacheError::Unavailable(e) | CacheError::Corrupt(e) => OutboxError::Unavailable(e),
    }
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(Box::new(e))
}

#[async_trait]
impl CallContextCache for RedisCache {
    async fn put(&self, context: &CallContext, ttl: Duration) -> Result<(), CacheError> {
        let json = serde_json::to_string(context).map_err(|e| CacheError::Corrupt(Box::new(e)))?;
        // One SET with EX per key: each entry and its expiry land together, or not at all. The
        // keys may live on different cluster nodes, so they are written one after the other; a
        // failure in between is an error, and the caller's retry writes both again.
        for key in context.keys() {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(context.org_id, &key))
                .arg(&json)
                .arg("EX")
                .arg(ttl.as_secs().max(1));
            self.command::<()>(&cmd).await?;
        }
        Ok(())
    }

    async fn get(&self, org: OrgId, key: &CallKey) -> Result<Option<CallContext>, CacheError> {
        if let Some(context) = self.get_json(self.key(org, key)).await? {
            return Ok(Some(context));
        }
        Ok(self
            .get_json(self.legacy_key(key))
            .await?
            .filter(|context| context.org_id == org))
    }

    async fn forget_caller(
        &self,
        org: OrgId,
        phone: &E164,
        contacts: &[ContactId],
    ) -> Result<u64, CacheError> {
        // Both key kinds of the organization (`call:` and `call-sid:`); each is read and deleted
        // only if it is the caller's. An entry that cannot be read is left alone.
        let keys = self
            .scan(&format!("{}org:{org}:call*", self.prefix))
            .await?;
        let mut deleted = 0;
        for key in keys {
            let Ok(Some(context)) = self.get_json(key.clone()).await else {
                continue;
            };
            let theirs = context.org_id == org
                && (context.caller_number.as_ref() == Some(phone)
                    || context.contact_id.is_some_and(|c| contacts.contains(&c)));
            if theirs {
                deleted += self.command::<u64>(redis::cmd("DEL").arg(&key)).await?;
            }
        }
        Ok(deleted)
    }
}

/// Keys looked at per `SCAN` step while erasing a caller's contexts.
const SCAN_COUNT: usize = 1_000;

impl RedisCache {
    /// Every key matching `pattern`, on every primary of a cluster. `SCAN` walks the keyspace
    /// without blocking the server (unlike `KEYS`); it is for erasure on request, never the
    /// webhook path.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, CacheError> {
        let mut keys = Vec::new();
        match &self.backend {
            Backend::Single(pool, _) => {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| CacheError::Unavailable(Box::new(e)))?;
                let mut cursor = 0_u64;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Backend::Cluster(pool, _) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| CacheError::Unavailable(Box::new(e)))?;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                for (host, port) in primaries(&nodes) {
                    let mut cursor = 0_u64;
                    loop {
                        let mut cmd = redis::cmd("SCAN");
                        cmd.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(SCAN_COUNT);
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let value = conn
                            .route_command(cmd, routing)
                            .await
                            .map_err(unavailable)?;
                        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(value)
                            .map_err(|e| CacheError::Unavailable(Box::new(e)))?;
                        keys.extend(batch);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// The primaries' addresses in a `CLUSTER NODES` answer (`<id> <host:port@bus> <flags> ...`),
/// leaving out failed nodes.
fn primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let primary = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            primary.then(|| Some((host.to_owned(), port.parse().ok()?)))?
        })
        .collect()
}

/// The stream entry's one field.
const PAYLOAD_FIELD: &str = "payload";

/// Appends to the outbox stream unless it is at a bound, as one atomic step: concurrent appends
/// (every replica's) cannot overshoot. `MEMORY USAGE .. SAMPLES 0` walks the whole stream, which
/// is bounded by the limit it enforces. Answers the new length, `-1` (entries) or `-2` (bytes).
const APPEND_BOUNDED: &str = r"
local len = redis.call('XLEN', KEYS[1])
if len >= tonumber(ARGV[2]) then return -1 end
local used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 0) or 0
if used + string.len(ARGV[1]) > tonumber(ARGV[3]) then return -2 end
redis.call('XADD', KEYS[1], '*', 'payload', ARGV[1])
return len + 1
";

/// Adds a dead letter, then drops the oldest until the stream is within its bounds (never the
/// one just added). Answers how many were dropped.
const DEAD_LETTER_BOUNDED: &str = r"
redis.call('XADD', KEYS[1], '*', 'payload', ARGV[1], 'reason', ARGV[2], 'outbox_id', ARGV[3])
local dropped = 0
local len = redis.call('XLEN', KEYS[1])
local max_entries = tonumber(ARGV[4])
if len > max_entries then
  dropped = dropped + redis.call('XTRIM', KEYS[1], 'MAXLEN', math.max(max_entries, 1))
  len = redis.call('XLEN', KEYS[1])
end
local max_bytes = tonumber(ARGV[5])
local used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 0) or 0
while len > 1 and used > max_bytes do
  local drop = math.min(len - 1, math.max(1, math.ceil((used - max_bytes) * len / used)))
  dropped = dropped + redis.call('XTRIM', KEYS[1], 'MAXLEN', len - drop)
  len = redis.call('XLEN', KEYS[1])
  used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 0) or 0
end
return dropped
";

#[async_trait]
impl DeliveryOutbox for RedisCache {
    async fn append(&self, payload: &[u8], limits: OutboxLimits) -> Result<Appended, OutboxError> {
        let answer: i64 = self
            .command(
                redis::cmd("EVAL")
                    .arg(APPEND_BOUNDED)
                    .arg(1)
                    .arg(self.outbox_key())
                    .arg(payload)
                    .arg(limits.max_entries)
                    .arg(limits.max_bytes),
            )
            .await
            .map_err(outbox_error)?;
        Ok(match answer {
            -1 => Appended::Full(OutboxBound::Entries),
            -2 => Appended::Full(OutboxBound::Bytes),
            _ => Appended::Stored,
        })
    }

    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        // XRANGE answers [[id, [field, value, ...]], ...].
        let entries: Vec<(String, Vec<Vec<u8>>)> = self
            .command(
                redis::cmd("XRANGE")
                    .arg(self.outbox_key())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(max),
            )
            .await
            .map_err(outbox_error)?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                // An entry without the field is returned empty: unreadable, dead-lettered by the
                // caller, never blocking the entries behind it.
                let payload = fields
                    .chunks(2)
                    .find(|pair| pair.first().is_some_and(|f| f == PAYLOAD_FIELD.as_bytes()))
                    .and_then(|pair| pair.get(1).cloned())
                    .unwrap_or_default();
                OutboxEntry { id, payload }
            })
            .collect())
    }

    async fn dead_letter(
        &self,
        entry: &OutboxEntry,
        reason: &str,
        limits: OutboxLimits,
    ) -> Result<u64, OutboxError> {
        // Copied first, then removed: a failure in between leaves a copy in each, never none.
        // (The two streams may live on different cluster nodes, so this cannot be one script.)
        let dropped: u64 = self
            .command(
                redis::cmd("EVAL")
                    .arg(DEAD_LETTER_BOUNDED)
                    .arg(1)
                    .arg(self.dead_letter_key())
                    .arg(entry.payload.as_slice())
                    .arg(reason)
                    .arg(&entry.id)
                    .arg(limits.max_entries)
                    .arg(limits.max_bytes),
            )
            .await
            .map_err(outbox_error)?;
        self.remove(&entry.id).await?;
        Ok(dropped)
    }

    async fn remove(&self, id: &str) -> Result<(), OutboxError> {
        self.command::<u64>(redis::cmd("XDEL").arg(self.outbox_key()).arg(id))
            .await
            .map_err(outbox_error)?;
        Ok(())
    }

    async fn usage(&self) -> Result<OutboxUsage, OutboxError> {
        let key = self.outbox_key();
        let entries: u64 = self
            .command(redis::cmd("XLEN").arg(&key))
            .await
            .map_err(outbox_error)?;
        let bytes: Option<u64> = self
            .command(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await
            .map_err(outbox_error)?;
        Ok(OutboxUsage {
            entries,
            bytes: bytes.unwrap_or(0),
        })
    }
}

#[async_trait]
impl Probe for RedisCache {
    async fn ping(&self) -> Result<(), BoxError> {
        // On a cluster, PING goes to every primary: ready means every shard answers.
        self.command::<()>(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let status = match &self.backend {
            Backend::Single(pool, _) => pool.status(),
            Backend::Cluster(pool, _) => pool.status(),
        };
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: clamp(status.max_size),
            open: clamp(status.size),
            in_use: clamp(status.size.saturating_sub(status.available)),
            waiting: Some(clamp(status.waiting)),
        })
    }
}
