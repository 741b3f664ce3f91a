//! `relay-bench`: the webhook's load benchmark (`just bench`). See `docs/benchmarks.md`.
//!
//! Seeds a data set through the import use case, starts the release binary, drives it open-loop
//! at fixed rates and closed-loop to saturation with a realistic request mix, measures the raw
//! dependency limit with the adapters alone, and prints a Markdown report of medians.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line report: stdout is the report, stderr the progress"
)]

mod dataset;
mod load;
mod raw;
mod service;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use relay_postgres::{PgStore, PoolSettings as PgPool};
use relay_redis::{PoolSettings as RedisPool, RedisCache};
use secrecy::SecretString;

use crate::load::{Mix, Outcome, Plan};
use crate::service::{Backends, Service};

/// Load benchmark of the personalization webhook.
#[derive(Debug, Parser)]
#[command(name = "relay-bench", version)]
struct Args {
    /// The service binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/relay")]
    relay: PathBuf,
    /// Scratch Postgres database: dropped and recreated.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/relay_bench"
    )]
    database_url: SecretString,
    /// Redis the service writes contexts to; the bench's keys are deleted at the end.
    #[arg(
        long,
        env = "BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: SecretString,
    /// Organizations to seed, one tool secret each.
    #[arg(long, default_value_t = 1_000)]
    orgs: u64,
    /// Contacts to seed, shared equally among the organizations.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// Open-loop rates, requests per second.
    #[arg(long, value_delimiter = ',', default_values_t = [500, 2_000, 5_000])]
    rates: Vec<u32>,
    /// Seconds per measured point.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Runs per point; the report keeps each measure's median.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Connections of the closed-loop saturation run, and loops of the raw dependency run.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Most outstanding requests in the open loop (a request waiting for a slot keeps its due
    /// time).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Make the raw loop look the organization up by token digest too (what the service does when
    /// it has no organization cache).
    #[arg(long)]
    raw_org_lookup: bool,
    /// Extra service settings, NAME=VALUE (repeatable), e.g. `HTTP_WORKERS=1`.
    #[arg(long = "service-env", value_parser = parse_env)]
    service_env: Vec<(String, String)>,
    /// Returning-caller memory during the run: `on` (every contact remembered) or `off`.
    #[arg(long, value_enum, default_value = "on")]
    memory: dataset::MemoryMode,
    /// With `--memory on`: the share of contact numbers that have a memory, in percent (the
    /// others have never called).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    remembered: u8,
    /// Postgres connections with TLS (`sslmode=require`, as a managed database's would be),
    /// without (`sslmode=disable`), or both, one after the other on the same data, each with
    /// its own raw dependency limit.
    #[arg(long, value_enum, default_value = "both")]
    tls: TlsModes,
    /// Write the service's log here instead of discarding it.
    #[arg(long)]
    service_log: Option<PathBuf>,
    /// Also write the report here.
    #[arg(long, default_value = "target/bench/report.md")]
    out: PathBuf,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

const REDIS_PREFIX: &str = "relay-bench:";

/// Which Postgres transports to measure (`--tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TlsModes {
    /// Without TLS, then with it.
    Both,
    /// With TLS only.
    On,
    /// Without TLS only.
    Off,
}

impl TlsModes {
    fn modes(self) -> &'static [Tls] {
        match self {
            Self::Both => &[Tls::Off, Tls::On],
            Self::On => &[Tls::On],
            Self::Off => &[Tls::Off],
        }
    }
}

/// One Postgres transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    On,
    Off,
}

impl Tls {
    fn sslmode(self) -> &'static str {
        match self {
            Self::On => "require",
            Self::Off => "disable",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::On => "Postgres over TLS (sslmode=require)",
            Self::Off => "Postgres without TLS (sslmode=disable)",
        }
    }

    /// `url` with its `sslmode` replaced by this one.
    fn url(self, url: &SecretString) -> SecretString {
        use secrecy::ExposeSecret as _;
        let url = url.expose_secret();
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
            .collect();
        let sslmode = format!("sslmode={}", self.sslmode());
        params.push(&sslmode);
        SecretString::from(format!("{base}?{}", params.join("&")))
    }
}

/// One measured run of a point.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    errors: f64,
    mismatches: f64,
    /// The service's CPU time per request, microseconds.
    cpu_us: Option<f64>,
    /// The load generator's (this process's) CPU time per request, microseconds.
    generator_cpu_us: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Sample {
    /// From a latency histogram in microseconds.
    fn of_latency(latency: &Histogram<u64>, throughput: f64, errors: u64) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Self {
            throughput,
            p50: ms(latency.value_at_quantile(0.50)),
            p99: ms(latency.value_at_quantile(0.99)),
            p999: ms(latency.value_at_quantile(0.999)),
            max: ms(latency.max()),
            errors: errors as f64,
            ..Self::default()
        }
    }

    fn of(outcome: &Outcome) -> Self {
        Self {
            mismatches: outcome.mismatches as f64,
            ..Self::of_latency(&outcome.latency, outcome.throughput(), outcome.errors)
        }
    }
}

/// Runs `run` (given the run's index) `repeats` times and keeps every run.
async fn repeated(
    label: &str,
    repeats: usize,
    mut run: impl AsyncFnMut(usize) -> anyhow::Result<Sample>,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(repeats);
    for repeat in 0..repeats {
        eprintln!("{label}, run {}/{repeats}", repeat + 1);
        samples.push(run(repeat).await?);
    }
    Ok(samples)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Each measure's median over the repeats.
fn medians(samples: &[Sample]) -> Sample {
    let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let of_opt = |f: fn(&Sample) -> Option<f64>| {
        let values: Vec<f64> = samples.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| median(values))
    };
    Sample {
        throughput: of(|s| s.throughput),
        p50: of(|s| s.p50),
        p99: of(|s| s.p99),
        p999: of(|s| s.p999),
        max: of(|s| s.max),
        errors: of(|s| s.errors),
        mismatches: of(|s| s.mismatches),
        cpu_us: of_opt(|s| s.cpu_us),
        generator_cpu_us: of_opt(|s| s.generator_cpu_us),
        peak_rss_mb: of_opt(|s| s.peak_rss_mb),
    }
}

/// The smallest and largest of a measure over the runs, `–` when it was not measured.
fn spread(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>, digits: usize) -> String {
    let values: Vec<f64> = samples.iter().filter_map(f).collect();
    let min = values.iter().copied().reduce(f64::min);
    let max = values.iter().copied().reduce(f64::max);
    match (min, max) {
        (Some(min), Some(max)) if values.len() > 1 => format!(" ({min:.digits$}–{max:.digits$})"),
        _ => String::new(),
    }
}

/// One table row: each measure's median over the runs, and for the ones this shared machine
/// moves most (throughput, tail latency, CPU) the smallest and largest in parentheses.
fn row(label: &str, samples: &[Sample]) -> String {
    let s = medians(samples);
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
    format!(
        "| {label} | {:.0}{} | {:.2} | {:.2}{} | {:.2}{} | {:.1} | {:.0} | {:.0} | {}{} | {} | {} |",
        s.throughput,
        spread(samples, |s| Some(s.throughput), 0),
        s.p50,
        s.p99,
        spread(samples, |s| Some(s.p99), 2),
        s.p999,
        spread(samples, |s| Some(s.p999), 2),
        s.max,
        s.errors,
        s.mismatches,
        opt(s.cpu_us, 0),
        spread(samples, |s| s.cpu_us, 0),
        opt(s.generator_cpu_us, 0),
        opt(s.peak_rss_mb, 1),
    )
}

/// Measures one run against the service: CPU and peak memory around `run`.
async fn measured<F>(service: &Service, run: F) -> anyhow::Result<Sample>
where
    F: Future<Output = anyhow::Result<Outcome>>,
{
    let peak_reset = service.reset_peak_rss();
    let cpu_before = service.cpu_seconds()?;
    let generator_before = service::own_cpu_seconds()?;
    let outcome = run.await?;
    let cpu = service.cpu_seconds()? - cpu_before;
    let generator = service::own_cpu_seconds()? - generator_before;
    let mut sample = Sample::of(&outcome);
    let per_request = |seconds: f64| Some(seconds / outcome.completed.max(1) as f64 * 1e6);
    sample.cpu_us = per_request(cpu);
    sample.generator_cpu_us = per_request(generator);
    let rss_mb = service.peak_rss_bytes()? as f64 / 1_048_576.0;
    sample.peak_rss_mb = Some(rss_mb);
    if !peak_reset {
        eprintln!("  (could not reset the peak RSS: it spans the whole run)");
    }
    eprintln!(
        "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {}, mismatches {}, service {:.0} µs CPU/request, generator {:.0}, peak RSS {rss_mb:.1} MB",
        sample.throughput,
        sample.p50,
        sample.p99,
        sample.p999,
        outcome.errors,
        outcome.mismatches,
        sample.cpu_us.unwrap_or_default(),
        sample.generator_cpu_us.unwrap_or_default(),
    );
    Ok(sample)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.relay.exists(),
        "{} not found: build it with `cargo build --release --bin relay`",
        args.relay.display()
    );
    let machine = service::machine();
    eprintln!("machine: {machine}");
    eprintln!(
        "warning: this machine may be shared; the service, Postgres, Redis and the load generator share its cores, so treat the numbers as an order of magnitude"
    );

    eprintln!(
        "seeding {} organizations and {} contacts through the import use case ...",
        args.orgs, args.contacts
    );
    let (dataset, seeded) = dataset::seed(&args.database_url, args.orgs, args.contacts).await?;
    eprintln!(
        "  organizations and secrets {:.1} s, contacts {:.1} s (inserted {}, rejected {})",
        seeded.orgs_and_secrets.as_secs_f64(),
        seeded.contacts.as_secs_f64(),
        seeded.inserted,
        seeded.rejected
    );
    let remembered = dataset::set_memory(&args.database_url, args.memory, args.remembered).await?;
    eprintln!("memory {:?}: {remembered} numbers remembered", args.memory);
    let dataset = Arc::new(dataset);
    let client = load::client()?;
    let mut measured_modes = Vec::new();
    for &tls in args.tls.modes() {
        eprintln!("== {} ==", tls.label());
        measured_modes.push(measure_mode(&args, tls, &dataset, &client).await?);
    }

    let mut report = String::new();
    report.push_str(&format!(
        "machine: {machine}; memory {}; {} organizations, {} contacts, mix {}% matched / {}% unknown / {}% anonymous / {}% wrong token; {} s per point, {} runs each: median (smallest–largest)\n\n",
        match args.memory {
            dataset::MemoryMode::On => format!("on ({}% of contact numbers remembered)", args.remembered),
            dataset::MemoryMode::Off => "off".to_owned(),
        },
        args.orgs,
        args.contacts,
        Mix::REALISTIC.matched,
        Mix::REALISTIC.unknown,
        Mix::REALISTIC.anonymous,
        Mix::REALISTIC.wrong_token,
        args.duration,
        args.repeats
    ));
    report.push_str(&format!(
        "seeding: organizations and secrets {:.1} s, {} contacts imported in {:.1} s ({} rejected)\n\n",
        seeded.orgs_and_secrets.as_secs_f64(),
        seeded.inserted,
        seeded.contacts.as_secs_f64(),
        seeded.rejected
    ));
    for mode in &measured_modes {
        report.push_str(&format!("{}:\n\n", mode.tls.label()));
        report.push_str("| load | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | mismatches | service CPU µs/req | generator CPU µs/req | peak RSS MB |\n");
        report.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (label, samples) in &mode.rows {
            report.push_str(&row(label, samples));
            report.push('\n');
        }
        report.push_str(&format!(
            "\nsaturation ÷ raw dependency limit: {:.2}\n\n",
            mode.saturation().throughput / mode.raw_limit().throughput
        ));
    }
    if let [off, on] = &measured_modes[..] {
        report.push_str(
            "What TLS to Postgres costs the service (CPU µs per request, with TLS minus without):",
        );
        for ((label, with), (_, without)) in on.rows.iter().zip(&off.rows) {
            if let (Some(with), Some(without)) = (medians(with).cpu_us, medians(without).cpu_us) {
                report.push_str(&format!(" {label}: {:+.0};", with - without));
            }
        }
        report.push('\n');
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &report)?;
    println!("{report}");
    Ok(())
}

/// Every point measured over one Postgres transport.
struct ModeResult {
    tls: Tls,
    /// Each point's runs: the open-loop rates, the saturation run, the raw limit (last).
    rows: Vec<(String, Vec<Sample>)>,
}

impl ModeResult {
    fn saturation(&self) -> Sample {
        medians(&self.rows[self.rows.len() - 2].1)
    }

    fn raw_limit(&self) -> Sample {
        medians(&self.rows[self.rows.len() - 1].1)
    }
}

/// Starts the service on `tls`, drives it at each rate and to saturation, stops it, then
/// measures the raw dependency limit over the same transport.
async fn measure_mode(
    args: &Args,
    tls: Tls,
    dataset: &Arc<dataset::Dataset>,
    client: &reqwest::Client,
) -> anyhow::Result<ModeResult> {
    let database_url = tls.url(&args.database_url);
    let duration = Duration::from_secs(args.duration);
    let backends = Backends {
        database_url: &database_url,
        redis_url: &args.redis_url,
        redis_prefix: REDIS_PREFIX,
    };
    let service = Service::start(
        &args.relay,
        &backends,
        &args.service_env,
        args.service_log.as_deref(),
    )
    .await?;
    let plan = Arc::new(Plan::new(
        format!(
            "{}/api/webhook/elevenlabs/personalization",
            service.base_url
        ),
        dataset,
        Mix::REALISTIC,
    )?);

    eprintln!("warm-up: 3 s at 500 req/s");
    load::open_loop(
        client,
        &plan,
        "warm",
        500,
        Duration::from_secs(3),
        args.max_in_flight,
    )
    .await?;

    let mut rows = Vec::new();
    for &rate in &args.rates {
        let label = format!("{rate} req/s (open loop)");
        let samples = repeated(&label, args.repeats, async |repeat| {
            let series = format!("{}r{rate}x{repeat}", tls.sslmode());
            let run = load::open_loop(client, &plan, &series, rate, duration, args.max_in_flight);
            measured(&service, run).await
        })
        .await?;
        rows.push((label, samples));
    }

    let label = format!("saturation, {} connections (closed loop)", args.connections);
    let samples = repeated(&label, args.repeats, async |repeat| {
        let series = format!("{}sat{repeat}", tls.sslmode());
        let run = load::closed_loop(client, &plan, &series, args.connections, duration);
        measured(&service, run).await
    })
    .await?;
    rows.push((label, samples));
    drop(service);

    // The same pool sizes as the service's defaults.
    let store = PgStore::connect(&database_url, PgPool::default())
        .await
        .context("cannot connect to the bench database")?;
    let cache = RedisCache::new(&args.redis_url, REDIS_PREFIX, RedisPool::default())?;
    let raw_label = if args.raw_org_lookup {
        "organization + contact lookup + SET EX"
    } else {
        "contact lookup + SET EX"
    };
    let label = format!(
        "raw dependency limit, {} loops ({raw_label}, no HTTP)",
        args.connections
    );
    let samples = repeated(&label, args.repeats, async |_| {
        let generator_before = service::own_cpu_seconds()?;
        let outcome = raw::run(
            &store,
            &cache,
            dataset,
            args.connections,
            duration,
            args.raw_org_lookup,
            args.memory == dataset::MemoryMode::On,
        )
        .await?;
        let generator = service::own_cpu_seconds()? - generator_before;
        eprintln!(
            "  {:.0} iterations/s, errors {}, {:.0} µs CPU per iteration (the loop's own process)",
            outcome.throughput(),
            outcome.errors,
            generator / outcome.iterations.max(1) as f64 * 1e6,
        );
        Ok(Sample {
            generator_cpu_us: Some(generator / outcome.iterations.max(1) as f64 * 1e6),
            ..Sample::of_latency(&outcome.latency, outcome.throughput(), outcome.errors)
        })
    })
    .await?;
    rows.push((label, samples));
    let deleted = delete_keys(&cache).await?;
    eprintln!("deleted {deleted} bench keys from Redis");
    Ok(ModeResult { tls, rows })
}

/// Deletes every key the benchmark wrote.
async fn delete_keys(cache: &RedisCache) -> anyhow::Result<u64> {
    let mut cursor = 0u64;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = cache
            .query(
                deadpool_redis::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{REDIS_PREFIX}*"))
                    .arg("COUNT")
                    .arg(1_000),
            )
            .await?;
        if !keys.is_empty() {
            deleted += cache
                .query::<u64>(deadpool_redis::redis::cmd("UNLINK").arg(keys))
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn each_transport_sets_its_own_sslmode_and_keeps_the_other_parameters() {
        use secrecy::ExposeSecret as _;
        let url = |s: &str, tls: Tls| tls.url(&SecretString::from(s)).expose_secret().to_owned();
        assert_eq!(
            url("postgres://h/db", Tls::Off),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(
            url("postgres://h/db?sslmode=prefer&application_name=x", Tls::On),
            "postgres://h/db?application_name=x&sslmode=require"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        <Args as clap::CommandFactory>::command().debug_assert();
    }
}
