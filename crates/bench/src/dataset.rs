//! The data set: organizations with one tool secret each and their contacts, generated
//! deterministically and written through the product's own admin and import use cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use relay_domain::{OrgName, Region};
use relay_postgres::{PgStore, PoolSettings};
use relay_usecase::{Admin, ContactImporter, RawContact, Rejection};
use secrecy::{ExposeSecret as _, SecretString};

/// North American area codes the numbers are spread over (Canadian and US).
const AREAS: [u16; 15] = [
    416, 647, 437, 905, 289, 604, 778, 236, 514, 438, 212, 646, 415, 312, 617,
];
const FIRST: [&str; 10] = [
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
];
const LAST: [&str; 10] = [
    "Morgan", "Lee", "Smith", "Nguyen", "Garcia", "Patel", "Brown", "Martin", "Roy", "Chen",
];
/// One row in this many is not a number (the importer rejects it; callers never use it).
const INVALID_EVERY: u64 = 1_000;
/// Contacts written per upsert, as `relay contacts import` does.
const BATCH_SIZE: usize = 2_000;

/// The `index`-th distinct North American number, as (area, exchange, line).
fn parts(index: u64) -> (u16, u64, u64) {
    let area = AREAS[(index % AREAS.len() as u64) as usize];
    let rest = index / AREAS.len() as u64;
    (area, 200 + (rest / 10_000) % 800, rest % 10_000)
}

/// The `index`-th number in one of four formats (E.164, national with punctuation, dotted, with
/// a trunk prefix and spaces).
pub(crate) fn number(index: u64, style: u8) -> String {
    let (area, exchange, line) = parts(index);
    match style % 4 {
        0 => format!("+1{area}{exchange}{line:04}"),
        1 => format!("({area}) {exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        _ => format!("1 {area} {exchange} {line:04}"),
    }
}

/// Whether the importer accepted the row of this index.
pub(crate) fn is_valid_row(index: u64) -> bool {
    index % INVALID_EVERY != INVALID_EVERY - 1
}

/// A random accepted row of the organization whose rows are `first .. first + rows`.
pub(crate) fn known_row(first: u64, rows: u64, rng: &mut fastrand::Rng) -> u64 {
    let row = first + rng.u64(..rows);
    match (is_valid_row(row), row > first) {
        (true, _) => row,
        (false, true) => row - 1,
        (false, false) => row + 1,
    }
}

/// One seeded organization.
pub(crate) struct BenchOrg {
    /// Its tool secret, as ElevenLabs would present it.
    pub(crate) token: SecretString,
    /// Its contacts are rows `first_row .. first_row + rows`.
    pub(crate) first_row: u64,
    pub(crate) rows: u64,
}

impl std::fmt::Debug for BenchOrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchOrg")
            .field("first_row", &self.first_row)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// The seeded data set.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) orgs: Vec<BenchOrg>,
    /// Rows in all; numbers from this index on are in no organization (unknown callers).
    pub(crate) total_rows: u64,
}

/// How seeding went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeedReport {
    pub(crate) orgs_and_secrets: Duration,
    pub(crate) contacts: Duration,
    pub(crate) inserted: u64,
    pub(crate) rejected: u64,
}

/// Drops and recreates the database of `url`, migrates it, and seeds `orgs` organizations
/// sharing `contacts` rows.
pub(crate) async fn seed(
    url: &SecretString,
    orgs: u64,
    contacts: u64,
) -> anyhow::Result<(Dataset, SeedReport)> {
    recreate_database(url).await?;
    PgStore::create_database_if_missing(url)
        .await
        .context("cannot create the bench database")?;
    let store = PgStore::connect(url, PoolSettings::default())
        .await
        .context("cannot connect to the bench database")?;
    store.migrate().await.context("migration failed")?;
    let store = Arc::new(store);

    let started = Instant::now();
    let admin = Admin::new(store.clone());
    let per_org = contacts / orgs.max(1);
    let mut seeded = Vec::with_capacity(usize::try_from(orgs)?);
    let mut organizations = Vec::with_capacity(seeded.capacity());
    for i in 0..orgs {
        let region = Region::parse(if i % 2 == 0 { "CA" } else { "US" })?;
        let org = admin
            .create_organization(&OrgName::parse(&format!("Bench Org {i}"))?, region)
            .await?;
        let issued = admin.issue_secret(org.id).await?;
        seeded.push(BenchOrg {
            token: SecretString::from(issued.token.expose().to_owned()),
            first_row: i * per_org,
            rows: if i + 1 == orgs {
                contacts - i * per_org
            } else {
                per_org
            },
        });
        organizations.push(org);
    }
    let orgs_and_secrets = started.elapsed();

    let started = Instant::now();
    let importer = ContactImporter::new(store, BATCH_SIZE);
    let (mut inserted, mut rejected) = (0, 0);
    // Organizations are imported side by side, as separate `relay contacts import` runs would be:
    // one organization's thousand rows are a single batch, which one import cannot spread.
    let side_by_side = 2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut imports = tokio::task::JoinSet::new();
    for (org, bench) in organizations.into_iter().zip(&seeded) {
        if imports.len() == side_by_side
            && let Some(done) = imports.join_next().await
        {
            let report: relay_usecase::ImportReport = done??;
            inserted += report.summary.inserted;
            rejected += report.rejected_total;
        }
        let (importer, rows) = (importer.clone(), rows(bench.first_row, bench.rows));
        imports.spawn(async move { importer.import(&org, rows, |_| {}).await });
    }
    while let Some(done) = imports.join_next().await {
        let report = done??;
        inserted += report.summary.inserted;
        rejected += report.rejected_total;
    }
    let report = SeedReport {
        orgs_and_secrets,
        contacts: started.elapsed(),
        inserted,
        rejected,
    };
    Ok((
        Dataset {
            orgs: seeded,
            total_rows: contacts,
        },
        report,
    ))
}

/// The import rows `first .. first + count`, as `relay contacts import` reads them from a CSV:
/// numbers in mixed formats, one row in a thousand not a number.
fn rows(first: u64, count: u64) -> Vec<Result<RawContact, Rejection>> {
    let mut rng = fastrand::Rng::with_seed(first);
    (first..first + count)
        .enumerate()
        .map(|(line, index)| {
            let phone = if is_valid_row(index) {
                number(index, rng.u8(..4))
            } else {
                "not a number".to_owned()
            };
            Ok(RawContact {
                line: line as u64 + 2,
                first_name: Some(FIRST[rng.usize(..FIRST.len())].to_owned()),
                last_name: Some(LAST[rng.usize(..LAST.len())].to_owned()),
                phone: Some(phone),
            })
        })
        .collect()
}

/// The returning-caller memory the service works with during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MemoryMode {
    /// Every organization remembers (the default, 90 days) and the contacts' numbers have a
    /// memory (three calls, the last two days ago, a summary of typical length): all of them, or
    /// the share `--remembered` gives, so a known caller's answer carries the seven memory
    /// variables.
    On,
    /// Every organization's memory is off (`--retention-days 0`): the lookup reads no memory.
    Off,
}

/// A summary of the length ElevenLabs' `transcript_summary` usually has (about 300 characters).
const SUMMARY: &str = "The caller asked to move their appointment from Tuesday to Thursday \
afternoon and wanted to know whether the clinic validates parking. The agent confirmed the new \
time, explained that parking is validated at the front desk, and promised a reminder text the \
day before. The caller was satisfied.";

/// Sets the memory up as `mode` says, in set-based statements on the seeded data.
pub(crate) async fn set_memory(
    url: &SecretString,
    mode: MemoryMode,
    remembered_percent: u8,
) -> anyhow::Result<u64> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url.expose_secret())
        .await
        .context("cannot connect to the bench database")?;
    sqlx::query("TRUNCATE caller_memory")
        .execute(&mut conn)
        .await?;
    sqlx::query("UPDATE contacts SET has_memory = false WHERE has_memory")
        .execute(&mut conn)
        .await?;
    match mode {
        MemoryMode::Off => {
            sqlx::query("UPDATE organizations SET memory_retention_days = 0")
                .execute(&mut conn)
                .await?;
            Ok(0)
        }
        MemoryMode::On => {
            sqlx::query("UPDATE organizations SET memory_retention_days = 90")
                .execute(&mut conn)
                .await?;
            let done = sqlx::query(
                "INSERT INTO caller_memory (org_id, phone_e164, completed_calls, last_call_at,
                                            last_summary, last_outcome, missed_since_last,
                                            last_activity_at)
                 SELECT DISTINCT org_id, phone_e164, 3, now() - interval '2 days', $1,
                        'success', 1, now() - interval '1 day'
                   FROM contacts
                  WHERE abs(hashtext(phone_e164)) % 100 < $2",
            )
            .bind(SUMMARY)
            .bind(i32::from(remembered_percent))
            .execute(&mut conn)
            .await?;
            // What the post-call route marks as it writes a memory.
            sqlx::query(
                "UPDATE contacts c SET has_memory = true
                   FROM caller_memory m
                  WHERE m.org_id = c.org_id AND m.phone_e164 = c.phone_e164",
            )
            .execute(&mut conn)
            .await?;
            sqlx::query("VACUUM ANALYZE contacts")
                .execute(&mut conn)
                .await?;
            sqlx::query("ANALYZE caller_memory")
                .execute(&mut conn)
                .await?;
            Ok(done.rows_affected())
        }
    }
}

async fn recreate_database(url: &SecretString) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let (url, query) = url
        .expose_secret()
        .split_once('?')
        .map_or((url.expose_secret(), ""), |(u, q)| (u, q));
    let (server, name) = url
        .rsplit_once('/')
        .context("BENCH_DATABASE_URL has no database name")?;
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the bench database name must be letters, digits and underscores"
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres{query}"))
        .await
        .context("cannot connect to the Postgres server of BENCH_DATABASE_URL")?;
    // The name was checked above: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .context("cannot drop the bench database")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_parse_in_every_format() {
        let region = Region::parse("CA").unwrap();
        let mut seen = std::collections::HashSet::new();
        for index in (0..200_000).step_by(997) {
            let e164 = number(index, 0);
            assert!(seen.insert(e164.clone()), "{index} repeats {e164}");
            for style in 0..4 {
                let parsed = relay_domain::E164::parse(&number(index, style), &region)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", number(index, style)));
                assert_eq!(parsed.as_str(), e164);
            }
        }
    }

    #[test]
    fn a_known_row_is_always_an_accepted_row_of_its_organization() {
        let mut rng = fastrand::Rng::with_seed(7);
        for (first, rows) in [(0, 1_000), (999, 3), (1_999, 1_000)] {
            for _ in 0..5_000 {
                let row = known_row(first, rows, &mut rng);
                assert!(is_valid_row(row), "{row}");
                assert!(
                    (first..first + rows).contains(&row),
                    "{row} in {first}+{rows}"
                );
            }
        }
    }

    #[test]
    fn every_thousandth_row_is_invalid_and_rows_are_numbered_like_a_csv() {
        let rows = rows(0, 1_000);
        assert_eq!(rows.len(), 1_000);
        let first = rows[0].as_ref().unwrap();
        assert_eq!(first.line, 2, "line 1 is the header");
        let last = rows[999].as_ref().unwrap();
        assert_eq!(last.phone.as_deref(), Some("not a number"));
        assert!(!is_valid_row(999) && is_valid_row(998));
    }
}
