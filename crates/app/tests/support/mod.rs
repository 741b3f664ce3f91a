//! Helpers for tests that run the real `relay` binary.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part"
)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_postgres::testing::{TestDb, sqlx};
use relay_redis::testing::{TestRedis, redis};
use relay_sqlite::SqliteStore;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// Runs a `relay` admin command against `database_url` and returns its output.
pub fn relay(database_url: &SecretString, args: &[&str]) -> Output {
    Command::new(RELAY)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url.expose_secret())
        .stdin(Stdio::null())
        .output()
        .expect("run relay")
}

/// Runs a `relay` admin command with extra variables and `stdin` piped in.
pub fn relay_with(
    database_url: &SecretString,
    vars: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(RELAY)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url.expose_secret())
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run relay");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("relay output")
}

/// Runs a `relay` admin command that must succeed and returns its stdout, trimmed.
pub fn relay_ok(database_url: &SecretString, args: &[&str]) -> String {
    let out = relay(database_url, args);
    assert!(
        out.status.success(),
        "relay {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A `relay serve` process on a free loopback port, killed when dropped.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    on_line: impl Fn(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            // Stored first: whoever `on_line` wakes may read the logs at once.
            sink.lock().unwrap().push(line.clone());
            on_line(&line);
        }
    });
}

impl Service {
    /// Starts `relay serve` with these variables (plus `LISTEN_ADDR=127.0.0.1:0` and JSON logs)
    /// and waits until it listens.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let child = Command::new(RELAY)
            .arg("serve")
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relay serve");
        Self::adopt(child)
    }

    /// Takes over a started `relay serve` (stdout and stderr piped, JSON logs) and waits until it
    /// listens.
    pub fn adopt(mut child: Child) -> Self {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        collect(
            child.stderr.take().unwrap(),
            Arc::clone(&logs),
            move |line| {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(addr) = event["listen_addr"].as_str()
                {
                    let _ = tx.lock().unwrap().send(addr.parse::<SocketAddr>().unwrap());
                }
            },
        );
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout), |_| {});
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "relay serve did not start:\n{}",
                    logs.lock().unwrap().join("\n")
                )
            });
        Self {
            child,
            addr,
            logs,
            stdout,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}/api/webhook/elevenlabs/personalization",
            self.addr
        )
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Everything the service printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Waits (up to 10 s) until stdout holds `marker`, and returns all of it.
    pub async fn stdout_until(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.stdout();
            if out.contains(marker) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "stdout never showed {marker:?}:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `limit`) until the logs hold `marker`, and returns them all: a test that
    /// must act after an event the service logs waits for that line, not for a guessed time.
    pub async fn logs_until(&self, marker: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let logs = self.logs();
            if logs.contains(marker) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "the logs never showed {marker:?} within {limit:?}:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Service {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts a personalization call and returns the status, the JSON body and how long it took.
pub async fn post(
    service: &Service,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let res = client
        .post(service.url())
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let json = res.json().await.expect("JSON body");
    (status, json, started.elapsed())
}

/// What a [`Proxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Pass,
    /// Accepts and reads, but forwards nothing: the upstream looks hung.
    Hang,
    /// Closes every connection, old and new: the upstream looks stopped.
    Refuse,
}

/// A TCP proxy on loopback in front of a real server, to make it hang or stop without touching
/// the server other tests share.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Refuse {
                    continue; // dropped: closed at once
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pump(cr, sw, rx.clone()) => {}
                        () = pump(sr, cw, rx) => {}
                    }
                });
            }
        });
        Self { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = mode.wait_for(|m| *m == Mode::Refuse) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.wait_for(|m| *m != Mode::Hang).await.map(|m| *m) {
            Ok(Mode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The host:port of a URL like `scheme://user@host:port/path`.
pub fn socket_of(url: &str) -> SocketAddr {
    let after_scheme = url.split("://").nth(1).unwrap();
    let host_port = after_scheme
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|_| format!("{host_port}:0").parse().unwrap())
}

/// `url` with its host:port replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, hostpath) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let path = hostpath.find('/').map_or("", |i| &hostpath[i..]);
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// A store for one test: a fresh Postgres database, or an embedded SQLite file in a temp folder.
pub enum TestStore {
    Postgres(Box<TestDb>),
    Sqlite(tempfile::TempDir),
}

impl TestStore {
    pub async fn postgres() -> Self {
        Self::Postgres(Box::new(TestDb::create().await))
    }

    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// The `DATABASE_URL` of this store.
    pub fn url(&self) -> SecretString {
        match self {
            Self::Postgres(db) => db.url(),
            Self::Sqlite(dir) => {
                SecretString::from(format!("sqlite://{}/relay.db", dir.path().display()))
            }
        }
    }

    /// The id of the contact with this E.164 number.
    pub async fn contact_id(&self, e164: &str) -> String {
        const SQL: &str = "SELECT CAST(id AS TEXT) FROM contacts WHERE phone_e164 = $1";
        match self {
            Self::Postgres(db) => sqlx::query_scalar(SQL)
                .bind(e164)
                .fetch_one(db.pool())
                .await
                .unwrap(),
            Self::Sqlite(_) => {
                let (store, _) = SqliteStore::open(&self.url(), false).await.unwrap();
                sqlx::query_scalar(SQL)
                    .bind(e164)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
            }
        }
    }

    /// A count (`SELECT count(*) ...`) on whichever database this is: what is really stored.
    pub async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Self::Postgres(db) => sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap(),
            Self::Sqlite(_) => {
                let (store, _) = SqliteStore::open(&self.url(), false).await.unwrap();
                sqlx::query_scalar(sql)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
            }
        }
    }

    /// Every contact as (E.164, first name), ordered by number: what an import really stored.
    pub async fn contacts(&self) -> Vec<(String, Option<String>)> {
        const SQL: &str = "SELECT phone_e164, first_name FROM contacts ORDER BY phone_e164";
        match self {
            Self::Postgres(db) => sqlx::query_as(SQL).fetch_all(db.pool()).await.unwrap(),
            Self::Sqlite(_) => {
                let (store, _) = SqliteStore::open(&self.url(), false).await.unwrap();
                sqlx::query_as(SQL).fetch_all(store.pool()).await.unwrap()
            }
        }
    }
}

impl TestStore {
    /// Locks the `contacts` table (Postgres only) until the returned transaction ends: every
    /// contact lookup waits on it meanwhile, so a webhook request stays in flight for exactly as
    /// long as a test needs, whatever the machine's speed.
    pub async fn lock_contacts(&self) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let Self::Postgres(db) = self else {
            panic!("only a Postgres store can be locked from a test")
        };
        let mut tx = db.pool().begin().await.unwrap();
        sqlx::query("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx
    }

    /// How many of the service's queries (Postgres only) are waiting on a lock right now.
    pub async fn queries_waiting_on_a_lock(&self) -> i64 {
        let Self::Postgres(db) = self else {
            panic!("only a Postgres store shows its waiting queries")
        };
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE datname = current_database() AND application_name = 'relay' \
                AND wait_event_type = 'Lock'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    }

    /// Every organization as (name, unknown-caller fallback, has a webhook secret), oldest
    /// first: what the `org` commands really stored.
    pub async fn organizations(&self) -> Vec<(String, String, bool)> {
        const SQL: &str = "SELECT name, unknown_caller_name, webhook_secret_sealed IS NOT NULL \
                           FROM organizations ORDER BY created_at";
        match self {
            Self::Postgres(db) => sqlx::query_as(SQL).fetch_all(db.pool()).await.unwrap(),
            Self::Sqlite(_) => {
                let (store, _) = SqliteStore::open(&self.url(), false).await.unwrap();
                sqlx::query_as(SQL).fetch_all(store.pool()).await.unwrap()
            }
        }
    }
}

/// Runs an async test body once per store: `mod $name { postgres, sqlite }`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    super::$name($crate::support::TestStore::postgres().await).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    super::$name($crate::support::TestStore::sqlite()).await;
                }
            }
        )+
    };
}

// --- End to end: one store and cache per test, data set up through the CLI ---------------------

/// The store and cache of one end-to-end test, with the CLI steps that fill them and the
/// `relay serve` that runs on them.
pub struct Setup {
    pub db: TestStore,
    /// `None`: the service uses its in-process cache.
    pub redis: Option<TestRedis>,
}

/// Which adapters a behaviour test runs on.
#[derive(Clone, Copy)]
pub enum Adapters {
    Embedded,
    PostgresRedis,
}

impl Setup {
    pub async fn new() -> Self {
        Self::on(Adapters::PostgresRedis).await
    }

    pub async fn on(adapters: Adapters) -> Self {
        match adapters {
            Adapters::Embedded => Self {
                db: TestStore::sqlite(),
                redis: None,
            },
            Adapters::PostgresRedis => Self {
                db: TestStore::postgres().await,
                redis: Some(TestRedis::create().await),
            },
        }
    }

    pub fn redis(&self) -> &TestRedis {
        self.redis.as_ref().expect("a Postgres + Redis setup")
    }

    pub fn org(&self, name: &str, region: &str) -> String {
        relay_ok(
            &self.db.url(),
            &["org", "create", "--name", name, "--region", region],
        )
    }

    pub fn secret(&self, org: &str) -> String {
        relay_ok(&self.db.url(), &["secret", "add", org])
    }

    /// Organization "Acme" (region CA) with the contact Alex at 4165550100; returns its token.
    pub fn acme_with_alex(&self) -> String {
        let org = self.org("Acme", "CA");
        let token = self.secret(&org);
        self.import(&org, "phone,first_name\n4165550100,Alex\n");
        token
    }

    pub fn import(&self, org: &str, csv: &str) -> String {
        self.import_with(org, csv, &[])
    }

    pub fn import_with(&self, org: &str, csv: &str, options: &[&str]) -> String {
        use std::io::Write as _;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(csv.as_bytes()).unwrap();
        let mut args = vec!["contacts", "import", org, file.path().to_str().unwrap()];
        args.extend(options);
        relay_ok(&self.db.url(), &args)
    }

    pub fn serve(&self, extra: &[(&str, &str)]) -> Service {
        let db = self.db.url();
        let redis_url = self.redis.as_ref().map(|redis| {
            if redis.cache().is_cluster() {
                ("REDIS_CLUSTER_URLS", redis.cluster_urls())
            } else {
                ("REDIS_URL", redis.url())
            }
        });
        let mut vars = vec![("DATABASE_URL", db.expose_secret())];
        if let (Some(redis), Some((name, url))) = (&self.redis, &redis_url) {
            vars.push((name, url.expose_secret()));
            vars.push(("REDIS_KEY_PREFIX", redis.prefix()));
        }
        vars.extend_from_slice(extra);
        Service::start(&vars)
    }

    pub async fn redis_get(&self, key: &str) -> (Option<String>, i64) {
        let cache = self.redis().cache();
        let key = format!("{}{key}", self.redis().prefix());
        let value: Option<String> = cache.query(redis::cmd("GET").arg(&key)).await.unwrap();
        let ttl: i64 = cache.query(redis::cmd("TTL").arg(&key)).await.unwrap();
        (value, ttl)
    }
}

/// A personalization request body for this conversation and caller.
pub fn call(conversation: &str, caller: &str) -> Value {
    json!({
        "conversation_id": conversation,
        "caller_id": caller,
        "called_id": "+12362320246",
        "agent_id": "agent_a8d3c4e09b2f4e1ab3c45f6a7b8c9d01"
    })
}
