//! Bulk contact import: normalize every row in the organization's region, reject what cannot be
//! matched (with the line and the reason), and upsert the rest in batches.
//!
//! Parsing numbers costs CPU and upserting costs database time, so the work is a pipeline: one
//! blocking thread reads the source in chunks, chunks are normalized on as many blocking threads
//! as there are cores, and the batches are written in source order, one at a time, while the
//! next batch is being normalized and gathered.

use std::collections::{HashSet, VecDeque};
use std::num::NonZero;
use std::sync::Arc;

use relay_domain::{E164, NewContact, Organization, PhoneError};
use relay_ports::{AdminError, ContactImport, UpsertSummary};
use tokio::sync::mpsc;

/// Longest first or last name we store, in characters.
const MAX_STORED_NAME_CHARS: usize = 200;

/// Most rejections an [`ImportReport`] keeps, the first ones in source order; later ones are
/// only counted, so a file of garbage costs no memory per bad row.
pub const MAX_REPORTED_REJECTIONS: usize = 20;

/// One row of an import source, before normalization.
#[derive(Clone, Default)]
pub struct RawContact {
    /// The row's line in the source file (1-based, the header is line 1), for rejection reports.
    pub line: u64,
    /// First name, if the column is present.
    pub first_name: Option<String>,
    /// Last name, if the column is present.
    pub last_name: Option<String>,
    /// The phone number in any format.
    pub phone: Option<String>,
}

impl std::fmt::Debug for RawContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawContact")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The row's line in the source.
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Inserted, updated and unchanged contacts.
    pub summary: UpsertSummary,
    /// The first [`MAX_REPORTED_REJECTIONS`] rows skipped, in source order.
    pub rejected: Vec<Rejection>,
    /// Every row skipped, the reported ones included.
    pub rejected_total: u64,
    /// Every row the source yielded, written or skipped.
    pub rows: u64,
}

impl ImportReport {
    /// Rows that were written (inserted, updated or unchanged).
    pub fn accepted(&self) -> u64 {
        self.rows - self.rejected_total
    }

    fn reject(&mut self, rejection: Rejection) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_REPORTED_REJECTIONS {
            self.rejected.push(rejection);
        }
    }
}

/// Imports contacts over the import port.
#[derive(Clone)]
pub struct ContactImporter {
    store: Arc<dyn ContactImport>,
    batch_size: usize,
}

impl std::fmt::Debug for ContactImporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactImporter")
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl ContactImporter {
    /// An importer writing `batch_size` contacts per round trip.
    pub fn new(store: Arc<dyn ContactImport>, batch_size: usize) -> Self {
        Self {
            store,
            batch_size: batch_size.max(1),
        }
    }

    /// Imports `rows` (or rejections the source reader already made) into `org`.
    /// `progress` is told how many rows have been handled so far, after each batch.
    ///
    /// Rows are written in order, so when a number appears twice the later row wins. Batches
    /// already written stay written if a later one fails.
    ///
    /// # Errors
    /// [`ImportError::Store`]: the first store error; the import stops there.
    /// [`ImportError::WorkerFailed`]: a reading or normalizing task panicked.
    pub async fn import<I>(
        &self,
        org: &Organization,
        rows: I,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<ImportReport, ImportError>
    where
        I: IntoIterator<Item = Result<RawContact, Rejection>> + Send + 'static,
        I::IntoIter: Send,
    {
        let batch_size = self.batch_size;
        let region = org.default_region;
        let parallelism = std::thread::available_parallelism().map_or(1, NonZero::get);

        // Reader: rows in chunks (the source may block: a file, a CSV parser).
        let chunk_size = batch_size.min(MAX_CHUNK);
        let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<I::Item>>(parallelism);
        let reader = tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(chunk_size);
            for row in rows {
                chunk.push(row);
                if chunk.len() == chunk_size {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size));
                    if raw_tx.blocking_send(full).is_err() {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = raw_tx.blocking_send(chunk);
            }
        });

        // Normalizers: one chunk per core at a time, handed on in source order.
        let (done_tx, done_rx) = mpsc::channel::<Normalized>(parallelism);
        let normalizer = tokio::spawn(async move {
            let mut pending = VecDeque::with_capacity(parallelism);
            loop {
                while pending.len() < parallelism {
                    let Some(chunk) = raw_rx.recv().await else {
                        break;
                    };
                    pending.push_back(tokio::task::spawn_blocking(move || {
                        chunk
                            .into_iter()
                            .map(|row| row.and_then(|raw| normalize(raw, &region)))
                            .collect::<Normalized>()
                    }));
                }
                let Some(next) = pending.pop_front() else {
                    return Ok(());
                };
                if done_tx.send(next.await?).await.is_err() {
                    return Ok(());
                }
            }
        });

        // Writer: batches in order, never holding a number twice, one write in flight while
        // the next batch is gathered.
        let mut report = ImportReport::default();
        let mut batches = Batcher::new(done_rx, batch_size);
        let mut next = batches.fill(&mut report).await;
        while let Some(batch) = next {
            let write = self.store.upsert_contacts(org.id, &batch.contacts);
            let (written, following) = tokio::join!(write, batches.fill(&mut report));
            report.summary += written?;
            progress(batch.rows_through);
            next = following;
        }
        progress(report.rows);
        drop(batches);
        reader.await.map_err(ImportError::WorkerFailed)?;
        normalizer
            .await
            .map_err(ImportError::WorkerFailed)?
            .map_err(ImportError::WorkerFailed)?;
        Ok(report)
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store refused or failed a batch (batches before it stay written).
    #[error(transparent)]
    Store(#[from] AdminError),
    /// A task reading or normalizing rows panicked: a bug, not the data or the store.
    #[error("an import worker failed")]
    WorkerFailed(#[source] tokio::task::JoinError),
}

/// A chunk of rows after normalization, in source order.
type Normalized = Vec<Result<NewContact, Rejection>>;

/// Most rows normalized as one piece of work: small enough that every core gets some and the
/// writer is fed steadily, large enough that handing chunks around costs nothing.
const MAX_CHUNK: usize = 2_000;

/// One batch for the store.
struct Batch {
    contacts: Vec<NewContact>,
    /// Rows the source yielded up to this batch's last one, rejected rows included.
    rows_through: u64,
}

/// Cuts the normalized rows into batches: at most `batch_size` contacts, never one number twice
/// (the later row of a repeated number starts the next batch and updates the earlier one
/// there), rejections recorded in the report as they pass.
struct Batcher {
    chunks: mpsc::Receiver<Normalized>,
    rest: std::vec::IntoIter<Result<NewContact, Rejection>>,
    /// The row that ended the previous batch (its number was already in it).
    carried: Option<NewContact>,
    batch_size: usize,
    numbers: HashSet<E164>,
}

impl Batcher {
    fn new(chunks: mpsc::Receiver<Normalized>, batch_size: usize) -> Self {
        Self {
            chunks,
            rest: Vec::new().into_iter(),
            carried: None,
            batch_size,
            numbers: HashSet::with_capacity(batch_size),
        }
    }

    /// The next batch, or `None` when the rows are all handled.
    async fn fill(&mut self, report: &mut ImportReport) -> Option<Batch> {
        let mut contacts = Vec::with_capacity(self.batch_size);
        self.numbers.clear();
        if let Some(contact) = self.carried.take() {
            self.numbers.insert(contact.phone.clone());
            contacts.push(contact);
        }
        while contacts.len() < self.batch_size {
            let row = match self.rest.next() {
                Some(row) => row,
                None => match self.chunks.recv().await {
                    Some(chunk) => {
                        self.rest = chunk.into_iter();
                        continue;
                    }
                    None => break,
                },
            };
            report.rows += 1;
            match row {
                Err(rejection) => report.reject(rejection),
                Ok(contact) if self.numbers.contains(&contact.phone) => {
                    self.carried = Some(contact);
                    return Some(Batch {
                        contacts,
                        rows_through: report.rows - 1,
                    });
                }
                Ok(contact) => {
                    self.numbers.insert(contact.phone.clone());
                    contacts.push(contact);
                }
            }
        }
        (!contacts.is_empty()).then_some(Batch {
            contacts,
            rows_through: report.rows,
        })
    }
}

fn normalize(raw: RawContact, region: &relay_domain::Region) -> Result<NewContact, Rejection> {
    let line = raw.line;
    contact_fields(raw.first_name, raw.last_name, raw.phone.as_deref(), region).map_err(|refused| {
        Rejection {
            line,
            reason: refused.reason,
        }
    })
}

/// A contact field [`contact_fields`] refused: which, and why (for a person).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRefused {
    /// `phone`, `first_name` or `last_name`.
    pub(crate) field: &'static str,
    /// Why, naming the field.
    pub(crate) reason: String,
}

/// The rules every written contact follows, an import's row or a management API request:
/// the number is normalized in `region` (surrounding whitespace ignored), names are trimmed
/// (blank is none) and at most 200 characters. The error names the field and the reason.
pub(crate) fn contact_fields(
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<&str>,
    region: &relay_domain::Region,
) -> Result<NewContact, FieldRefused> {
    let refused = |field, reason| FieldRefused { field, reason };
    let phone_raw = phone.map(str::trim).unwrap_or_default();
    let phone = match E164::parse(phone_raw, region) {
        Ok(phone) => phone,
        Err(PhoneError::Empty) => return Err(refused("phone", "no phone number".into())),
        Err(PhoneError::Anonymous) => {
            return Err(refused(
                "phone",
                "phone is a withheld-number placeholder".into(),
            ));
        }
        Err(PhoneError::Invalid) => {
            return Err(refused(
                "phone",
                format!("phone is not a valid number (region {region})"),
            ));
        }
    };
    let phone_raw = phone_raw.to_owned();
    let first_name = clean(first_name);
    let last_name = clean(last_name);
    for (column, value) in [("first_name", &first_name), ("last_name", &last_name)] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > MAX_STORED_NAME_CHARS)
        {
            return Err(refused(
                column,
                format!("{column} is longer than {MAX_STORED_NAME_CHARS} characters"),
            ));
        }
    }
    Ok(NewContact {
        first_name,
        last_name,
        phone_raw,
        phone,
    })
}

/// Trims a name; blank becomes `None`. Reuses the string when there is nothing to trim.
fn clean(value: Option<String>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    match trimmed.len() {
        0 => None,
        n if n == value.len() => Some(value),
        _ => Some(trimmed.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use relay_domain::{OrgId, OrgName, Region};
    use relay_ports::{Entity, MockContactImport};

    use super::*;

    fn org() -> Organization {
        Organization {
            id: OrgId::from_uuid(uuid::Uuid::from_u128(7)),
            name: OrgName::parse("Acme").unwrap(),
            default_region: Region::parse("CA").unwrap(),
            unknown_caller_name: relay_domain::FallbackName::default(),
            memory: relay_domain::MemorySettings::default(),
        }
    }

    fn row(line: u64, first: &str, phone: &str) -> Result<RawContact, Rejection> {
        Ok(RawContact {
            line,
            first_name: Some(first.into()),
            last_name: None,
            phone: Some(phone.into()),
        })
    }

    #[tokio::test]
    async fn rows_are_normalized_batched_and_bad_ones_reported_with_their_line() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<(Option<String>, String)>>::new()));
        let seen = Arc::clone(&batches);
        let mut store = MockContactImport::new();
        store.expect_upsert_contacts().returning(move |_, batch| {
            seen.lock().unwrap().push(
                batch
                    .iter()
                    .map(|c| (c.first_name.clone(), c.phone.as_str().to_owned()))
                    .collect(),
            );
            Ok(UpsertSummary {
                inserted: batch.len() as u64,
                ..UpsertSummary::default()
            })
        });
        let importer = ContactImporter::new(Arc::new(store), 2);
        let rows = vec![
            row(2, "Alex", "(416) 555-0100"),
            row(3, "Bad", "not a number"),
            row(4, "Sam", "+1 416 555 0101"),
            row(5, "Anon", "anonymous"),
            row(6, "Kim", "416.555.0102"),
            Err(Rejection {
                line: 7,
                reason: "unreadable row".into(),
            }),
            row(8, "NoPhone", ""),
        ];
        let mut progress = Vec::new();
        let report = importer
            .import(&org(), rows, |n| progress.push(n))
            .await
            .unwrap();

        assert_eq!(report.summary.inserted, 3);
        assert_eq!((report.rows, report.rejected_total), (7, 4));
        assert_eq!(report.accepted(), 3);
        assert_eq!(
            report.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 5, 7, 8]
        );
        assert!(report.rejected[0].reason.contains("not a valid number"));
        assert!(report.rejected[1].reason.contains("withheld"));
        assert_eq!(report.rejected[3].reason, "no phone number");
        assert_eq!(
            *batches.lock().unwrap(),
            vec![
                vec![
                    (Some("Alex".into()), "+14165550100".into()),
                    (Some("Sam".into()), "+14165550101".into())
                ],
                vec![(Some("Kim".into()), "+14165550102".into())],
            ]
        );
        assert_eq!(
            progress.last(),
            Some(&7),
            "every row is counted once: {progress:?}"
        );
    }

    #[tokio::test]
    async fn a_number_repeated_in_the_file_is_written_in_order_and_never_twice_per_batch() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen = Arc::clone(&batches);
        let mut store = MockContactImport::new();
        store.expect_upsert_contacts().returning(move |_, batch| {
            seen.lock().unwrap().push(
                batch
                    .iter()
                    .map(|c| c.first_name.clone().unwrap())
                    .collect(),
            );
            Ok(UpsertSummary::default())
        });
        let importer = ContactImporter::new(Arc::new(store), 100);
        let rows = vec![
            row(2, "Old", "4165550100"),
            row(3, "Other", "4165550101"),
            row(4, "New", "+14165550100"),
        ];
        importer.import(&org(), rows, |_| {}).await.unwrap();
        assert_eq!(
            *batches.lock().unwrap(),
            vec![
                vec!["Old".to_owned(), "Other".to_owned()],
                vec!["New".to_owned()]
            ]
        );
    }

    #[tokio::test]
    async fn store_failure_stops_the_import_with_the_error() {
        let mut store = MockContactImport::new();
        store
            .expect_upsert_contacts()
            .times(1)
            .returning(|_, _| Err(AdminError::NotFound(Entity::Organization)));
        let importer = ContactImporter::new(Arc::new(store), 1);
        let rows = vec![row(2, "A", "4165550100"), row(3, "B", "4165550101")];
        let err = importer.import(&org(), rows, |_| {}).await.unwrap_err();
        assert!(matches!(
            err,
            ImportError::Store(AdminError::NotFound(Entity::Organization))
        ));
    }

    #[tokio::test]
    async fn a_file_of_bad_rows_keeps_only_the_first_rejections_and_counts_the_rest() {
        let mut store = MockContactImport::new();
        store.expect_upsert_contacts().returning(|_, batch| {
            Ok(UpsertSummary {
                inserted: batch.len() as u64,
                ..UpsertSummary::default()
            })
        });
        let importer = ContactImporter::new(Arc::new(store), 7);
        let bad = MAX_REPORTED_REJECTIONS as u64 + 30;
        let rows = (0..bad)
            .map(|i| row(i + 2, "Bad", "not a number"))
            .chain([row(bad + 2, "Alex", "4165550100")])
            .collect::<Vec<_>>();
        let report = importer.import(&org(), rows, |_| {}).await.unwrap();

        assert_eq!(report.rejected.len(), MAX_REPORTED_REJECTIONS);
        assert_eq!(
            report.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            (2..2 + MAX_REPORTED_REJECTIONS as u64).collect::<Vec<_>>(),
            "the first ones, in source order"
        );
        assert_eq!(report.rejected_total, bad);
        assert_eq!(report.rows, bad + 1);
        assert_eq!(report.accepted(), 1);
        assert_eq!(report.summary.inserted, 1);
    }

    #[test]
    fn overlong_names_are_rejected_not_truncated() {
        let raw = RawContact {
            line: 9,
            first_name: Some("x".repeat(201)),
            last_name: None,
            phone: Some("4165550100".into()),
        };
        let err = normalize(raw, &Region::parse("CA").unwrap()).unwrap_err();
        assert_eq!(err.line, 9);
        assert!(err.reason.contains("first_name"));
    }
}
