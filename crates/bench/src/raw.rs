//! The raw dependency limit: the same contact lookup and the same `SET ... EX` the webhook makes
//! per request, called in a loop through the adapters themselves (no HTTP, no use case), at the
//! service's concurrency and pool sizes. What the service reaches, divided by this, is what the
//! service itself costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use relay_domain::{CallContext, ConversationId, E164};
use relay_ports::{CallContextCache as _, ContactDirectory as _, OrganizationDirectory as _};
use relay_postgres::PgStore;
use relay_redis::RedisCache;

use crate::dataset::{Dataset, known_row, number};

/// What the raw loop reached.
#[derive(Debug)]
pub(crate) struct RawOutcome {
    pub(crate) iterations: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Histogram<u64>,
}

impl RawOutcome {
    pub(crate) fn throughput(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` loops for `duration`, each iteration: (the organization lookup by digest, when
/// `with_org_lookup`), the contact lookup of a caller (known 70 %, unknown otherwise) and the
/// context write.
pub(crate) async fn run(
    store: &PgStore,
    cache: &RedisCache,
    dataset: &Arc<Dataset>,
    concurrency: usize,
    duration: Duration,
    with_org_lookup: bool,
    remember: bool,
) -> anyhow::Result<RawOutcome> {
    let orgs = Arc::new(resolve_orgs(store, dataset).await?);
    let start = Instant::now();
    let end = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (store, cache, dataset, orgs) = (
            store.clone(),
            cache.clone(),
            Arc::clone(dataset),
            Arc::clone(&orgs),
        );
        workers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(1_000 + worker as u64);
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut iterations, mut errors) = (0u64, 0u64);
            while Instant::now() < end {
                let which = rng.usize(..orgs.len());
                let (org, digest) = &orgs[which];
                let bench = &dataset.orgs[which];
                let row = if rng.u32(..100) < 70 {
                    known_row(bench.first_row, bench.rows, &mut rng)
                } else {
                    dataset.total_rows + rng.u64(..1_000_000)
                };
                // Style 0 is already E.164: no number parsing in the measured loop.
                let phone = E164::parse_e164(&number(row, 0))?;
                let sent = Instant::now();
                let mut ok = true;
                if with_org_lookup {
                    ok &= store.find_by_secret_digest(digest).await.is_ok();
                }
                // The service's own lookup: contact and memory in one statement.
                let since = remember.then(|| chrono::Utc::now() - chrono::TimeDelta::days(90));
                let contact = store.find_caller(*org, &phone, since).await;
                ok &= contact.is_ok();
                let context = CallContext {
                    conversation_id: Some(ConversationId::parse(format!(
                        "raw_{worker}_{iterations}"
                    ))?),
                    call_sid: None,
                    org_id: *org,
                    contact_id: contact.ok().and_then(|c| c.contact).map(|c| c.id),
                    caller_number: Some(phone),
                    called_number: Some("+14165550000".into()),
                    agent_id: Some("agent_bench".into()),
                    received_at: Utc::now(),
                };
                ok &= cache.put(&context, CallContext::TTL).await.is_ok();
                latency.saturating_record((sent.elapsed().as_micros() as u64).max(1));
                iterations += 1;
                errors += u64::from(!ok);
            }
            anyhow::Ok((iterations, errors, latency))
        });
    }
    let mut total = RawOutcome {
        iterations: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    while let Some(done) = workers.join_next().await {
        let (iterations, errors, latency) = done??;
        total.iterations += iterations;
        total.errors += errors;
        total.latency.add(&latency)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Each bench organization's id and token digest, looked up once.
async fn resolve_orgs(
    store: &PgStore,
    dataset: &Dataset,
) -> anyhow::Result<Vec<(relay_domain::OrgId, relay_domain::TokenDigest)>> {
    use secrecy::ExposeSecret as _;
    let mut orgs = Vec::with_capacity(dataset.orgs.len());
    for bench in &dataset.orgs {
        let token = relay_domain::ToolToken::from_presented(bench.token.expose_secret().into())
            .ok_or_else(|| anyhow::anyhow!("a seeded token does not parse"))?;
        let digest = token.digest();
        let org = store
            .find_by_secret_digest(&digest)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a seeded token finds no organization"))?;
        orgs.push((org.id, digest));
    }
    Ok(orgs)
}
