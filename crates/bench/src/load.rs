//! The load generator: a realistic mix of webhook requests, sent open-loop at a fixed rate (each
//! latency measured from the moment the request was due, so a stalled server cannot hide its
//! queue: coordinated omission is corrected) or closed-loop for saturation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use secrecy::ExposeSecret as _;

use crate::dataset::{Dataset, known_row, number};

/// Request kinds, in parts per hundred.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mix {
    /// A contact of the organization calls.
    pub(crate) matched: u32,
    /// A valid number that is no contact of the organization.
    pub(crate) unknown: u32,
    /// No usable caller id (missing or `anonymous`).
    pub(crate) anonymous: u32,
    /// A token of no organization (answered 401).
    pub(crate) wrong_token: u32,
}

impl Mix {
    pub(crate) const REALISTIC: Self = Self {
        matched: 70,
        unknown: 15,
        anonymous: 10,
        wrong_token: 5,
    };

    fn total(self) -> u32 {
        self.matched + self.unknown + self.anonymous + self.wrong_token
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Matched,
    Unknown,
    Anonymous,
    WrongToken,
}

/// Everything needed to build requests: the URL, each organization's header and rows.
#[derive(Debug)]
pub(crate) struct Plan {
    url: String,
    orgs: Vec<(reqwest::header::HeaderValue, u64, u64)>,
    wrong_token: reqwest::header::HeaderValue,
    unknown_base: u64,
    mix: Mix,
    run: String,
}

impl Plan {
    pub(crate) fn new(url: String, dataset: &Dataset, mix: Mix) -> anyhow::Result<Self> {
        let header = |token: &str| {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))?;
            value.set_sensitive(true);
            anyhow::Ok(value)
        };
        Ok(Self {
            url,
            orgs: dataset
                .orgs
                .iter()
                .map(|o| Ok((header(o.token.expose_secret())?, o.first_row, o.rows)))
                .collect::<anyhow::Result<_>>()?,
            wrong_token: header("rlk_not-a-token-of-any-organization")?,
            unknown_base: dataset.total_rows,
            mix,
            run: format!("{:x}", chrono::Utc::now().timestamp_millis()),
        })
    }

    /// Request `seq` of `series`: its kind, Authorization header and body.
    fn request(
        &self,
        series: &str,
        seq: u64,
        rng: &mut fastrand::Rng,
    ) -> (Kind, reqwest::header::HeaderValue, String) {
        let pick = rng.u32(..self.mix.total());
        let kind = if pick < self.mix.matched {
            Kind::Matched
        } else if pick < self.mix.matched + self.mix.unknown {
            Kind::Unknown
        } else if pick < self.mix.matched + self.mix.unknown + self.mix.anonymous {
            Kind::Anonymous
        } else {
            Kind::WrongToken
        };
        let (header, first, rows) = &self.orgs[rng.usize(..self.orgs.len())];
        // Telephony sends E.164; one caller in five arrives in a national format.
        let style = if rng.u8(..5) == 0 { rng.u8(1..4) } else { 0 };
        let caller = match kind {
            Kind::Matched => format!("\"{}\"", number(known_row(*first, *rows, rng), style)),
            Kind::Unknown | Kind::WrongToken => {
                format!(
                    "\"{}\"",
                    number(self.unknown_base + rng.u64(..1_000_000), style)
                )
            }
            Kind::Anonymous if rng.bool() => "\"anonymous\"".to_owned(),
            Kind::Anonymous => "null".to_owned(),
        };
        let body = format!(
            r#"{{"conversation_id":"bench_{}_{series}_{seq}","caller_id":{caller},"called_number":"+14165550000","agent_id":"agent_bench"}}"#,
            self.run
        );
        let header = if kind == Kind::WrongToken {
            self.wrong_token.clone()
        } else {
            header.clone()
        };
        (kind, header, body)
    }
}

/// What one load run saw.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Latency in microseconds (from the due time, open loop; from the send, closed loop).
    pub(crate) latency: Histogram<u64>,
    pub(crate) completed: u64,
    /// Transport errors, timeouts and unexpected statuses.
    pub(crate) errors: u64,
    /// Answers whose body contradicts the request kind (a known caller answered `{}`, ...).
    pub(crate) mismatches: u64,
    pub(crate) elapsed: Duration,
}

impl Outcome {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            completed: 0,
            errors: 0,
            mismatches: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn record(&mut self, kind: Kind, result: &Result<(u16, bool), reqwest::Error>, micros: u64) {
        self.completed += 1;
        self.latency.saturating_record(micros.max(1));
        match (kind, result) {
            (Kind::WrongToken, Ok((401, _))) => {}
            (Kind::Matched, Ok((200, personalized))) => self.mismatches += u64::from(!personalized),
            (Kind::Unknown | Kind::Anonymous, Ok((200, personalized))) => {
                self.mismatches += u64::from(*personalized);
            }
            _ => self.errors += 1,
        }
    }

    /// Requests completed per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A client that keeps connections open, as ElevenLabs' would.
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1_024)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Sends one request; `(status, whether the answer personalizes)`.
async fn send(
    client: &reqwest::Client,
    plan: &Plan,
    header: reqwest::header::HeaderValue,
    body: String,
) -> Result<(u16, bool), reqwest::Error> {
    let response = client
        .post(&plan.url)
        .header(reqwest::header::AUTHORIZATION, header)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((status, bytes.as_ref() != b"{}" && status == 200))
}

/// Sends `rate` requests a second for `duration`, each when it is due whatever the earlier ones
/// are doing, with at most `max_in_flight` outstanding (a request waiting for a slot keeps its
/// due time, so the wait counts as latency). A dedicated thread keeps the schedule, so tokio's
/// millisecond timer does not bunch requests.
pub(crate) async fn open_loop(
    client: &reqwest::Client,
    plan: &Arc<Plan>,
    series: &str,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
) -> anyhow::Result<Outcome> {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let outcome = Arc::new(Mutex::new(Outcome::new()));
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(20);
    let scheduler = {
        let (client, plan, outcome, series) = (
            client.clone(),
            Arc::clone(plan),
            Arc::clone(&outcome),
            series.to_owned(),
        );
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(u64::from(rate));
            let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for seq in 0..total {
                let due = start + interval.mul_f64(seq as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let (kind, header, body) = plan.request(&series, seq, &mut rng);
                let (client, plan, outcome, slots) = (
                    client.clone(),
                    Arc::clone(&plan),
                    Arc::clone(&outcome),
                    Arc::clone(&slots),
                );
                tasks.push(handle.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let result = send(&client, &plan, header, body).await;
                    let micros = due.elapsed().as_micros() as u64;
                    outcome
                        .lock()
                        .expect("not poisoned")
                        .record(kind, &result, micros);
                }));
            }
            tasks
        })
    };
    let tasks = tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    for task in tasks {
        task.await?;
    }
    let mut outcome = Arc::try_unwrap(outcome)
        .map_err(|_| anyhow::anyhow!("a request outlived its run"))?
        .into_inner()
        .expect("not poisoned");
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

/// `connections` clients, each sending its next request as soon as the previous one is
/// answered, for `duration`: the most the service gives at that concurrency. Latency is from the
/// send (a closed loop cannot see the queue it never builds).
pub(crate) async fn closed_loop(
    client: &reqwest::Client,
    plan: &Arc<Plan>,
    series: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let end = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..connections {
        let (client, plan) = (client.clone(), Arc::clone(plan));
        let series = format!("{series}w{worker}");
        workers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(worker as u64);
            let mut outcome = Outcome::new();
            let mut seq = 0;
            while Instant::now() < end {
                let (kind, header, body) = plan.request(&series, seq, &mut rng);
                let sent = Instant::now();
                let result = send(&client, &plan, header, body).await;
                outcome.record(kind, &result, sent.elapsed().as_micros() as u64);
                seq += 1;
            }
            outcome
        });
    }
    let mut total = Outcome::new();
    while let Some(outcome) = workers.join_next().await {
        let outcome = outcome?;
        total.latency.add(&outcome.latency)?;
        total.completed += outcome.completed;
        total.errors += outcome.errors;
        total.mismatches += outcome.mismatches;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
