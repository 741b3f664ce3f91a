//! The service under test: the release binary as a child process, and what the kernel says about
//! its CPU time and memory.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

/// The running service; killed when dropped.
#[derive(Debug)]
pub(crate) struct Service {
    child: Child,
    pub(crate) base_url: String,
    ticks_per_second: f64,
}

/// Where the service keeps its state.
#[derive(Debug)]
pub(crate) struct Backends<'a> {
    pub(crate) database_url: &'a SecretString,
    pub(crate) redis_url: &'a SecretString,
    pub(crate) redis_prefix: &'a str,
}

impl Service {
    /// Starts `relay serve` on a free loopback port with its default settings otherwise (request
    /// logs at info included, written to `log` or discarded), and waits until `/readyz` answers 200.
    pub(crate) async fn start(
        binary: &Path,
        backends: &Backends<'_>,
        extra_env: &[(String, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", backends.database_url.expose_secret())
            .env("REDIS_URL", backends.redis_url.expose_secret())
            .env("REDIS_KEY_PREFIX", backends.redis_prefix)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            // The load generator is one client address sending 5 % wrong tokens over 1,000
            // organizations: the failed-authentication throttle would answer 429 within seconds
            // to every token this replica has not confirmed yet. The throttle is the abuse
            // tests' subject, not this benchmark's (`--service-env AUTH_FAILURES_PER_MINUTE=60`
            // turns it back on).
            .env("AUTH_FAILURES_PER_MINUTE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let service = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            ticks_per_second: clock_ticks(),
        };
        service.wait_ready(Duration::from_secs(30)).await?;
        Ok(service)
    }

    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.base_url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the service was not ready within {limit:?} (rerun with --service-log FILE)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// User plus system CPU time the service has used so far.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.child.id().to_string(), self.ticks_per_second)
    }

    /// Resets the peak resident set size, so the next [`Self::peak_rss_bytes`] covers only
    /// what follows. `false` when the kernel refuses (the peak then spans the whole run).
    pub(crate) fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }

    /// The peak resident set size (`VmHWM`).
    pub(crate) fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .context("no VmHWM in /proc/PID/status")?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .context("unreadable VmHWM")?
            .parse()?;
        Ok(kib * 1024)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time this process (the load generator) has used so far.
pub(crate) fn own_cpu_seconds() -> anyhow::Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    cpu_seconds("self", *TICKS.get_or_init(clock_ticks))
}

/// User plus system CPU time of process `pid` (or `self`), from `/proc/PID/stat`.
fn cpu_seconds(pid: &str, ticks_per_second: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .context("unreadable /proc/PID/stat")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let field = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("unreadable /proc/PID/stat")?
            .parse::<f64>()?)
    };
    Ok((field(11)? + field(12)?) / ticks_per_second)
}

/// `getconf CLK_TCK` (the unit of /proc's CPU times); 100 if it cannot be asked.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `cores` and the CPU model, from /proc/cpuinfo.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {} GiB", (kib as f64 / 1_048_576.0).round())
        });
    format!("{cores} cores ({model}){memory}")
}
