//! Contacts as CSV: the header checks, then the rows, read lazily with bounded memory whatever
//! the file holds.
//!
//! A contacts row is a few hundred bytes, so anything much longer is not a contacts CSV (a binary
//! file, a file with no line breaks, a quote left open). Without caps the csv crate would hold
//! such a "row" in memory whole; here the reader refuses it as soon as it is too long.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use relay_usecase::{RawContact, Rejection};

use crate::{MAX_FIELD_BYTES, MAX_LINE_BYTES, Stopped};

/// Longest row accepted, in bytes: a quoted field may span lines (a notes column), so a row can
/// be longer than a line ([`MAX_LINE_BYTES`]), but not without bound.
pub const MAX_ROW_BYTES: u64 = 1024 * 1024;

/// The file is not a contacts CSV, or cannot be read. Messages never echo row content.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// No header row.
    #[error("the file is empty (a header row with a `phone` column is expected)")]
    Empty,
    /// A physical line over [`MAX_LINE_BYTES`].
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes: not a contacts CSV")]
    LineTooLong {
        /// The line, 1-based.
        line: u64,
    },
    /// A row (a quoted field may span lines) over [`MAX_ROW_BYTES`].
    #[error(
        "the row starting at line {line} is longer than {MAX_ROW_BYTES} bytes (a quote left \
         open?): not a contacts CSV"
    )]
    RowTooLong {
        /// The line the row starts at, 1-based.
        line: u64,
    },
    /// Reading failed (a disk error, a connection closed mid-body).
    #[error("cannot read line {line}: {error}")]
    Read {
        /// The line being read, 1-based.
        line: u64,
        /// What the reader said.
        error: io::Error,
    },
    /// The header row is not UTF-8 (a binary file).
    #[error("the header row is not valid UTF-8: not a contacts CSV")]
    HeaderNotUtf8,
    /// The header row has no `phone` column.
    #[error("the header row has no `phone` column (found: {found})")]
    NoPhone {
        /// The header's column names, quoted, escaped and bounded.
        found: String,
    },
    /// The header row names a used column twice.
    #[error("the header row has two `{column}` columns (columns {first} and {second})")]
    DuplicateColumn {
        /// `phone`, `first_name` or `last_name`.
        column: &'static str,
        /// The first one's column, 1-based.
        first: usize,
        /// The second one's column, 1-based.
        second: usize,
    },
}

/// A contacts CSV file could not be opened, or its header row was refused. Shown as the path
/// with the cause as its [`source`](std::error::Error::source) (`{:#}` with anyhow: `path: cause`).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The file is not a contacts CSV (see [`from_reader`]).
    #[error("{}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: CsvError,
    },
}

/// Opens `file` and checks its header row; the rows are read when iterated.
///
/// # Errors
/// The file cannot be opened, or its header row is refused (see [`from_reader`]).
pub fn open(file: &Path) -> Result<(Rows<File>, Stopped<CsvError>), OpenError> {
    let handle = File::open(file).map_err(|error| OpenError::Open {
        path: file.to_owned(),
        error,
    })?;
    from_reader(handle).map_err(|error| OpenError::Csv {
        path: file.to_owned(),
        error,
    })
}

/// The rows of the CSV `input`, after checking its header row.
///
/// # Errors
/// No header row, a header without a `phone` column or naming a used column twice, not UTF-8,
/// over the caps, or a read error.
pub fn from_reader<R: Read>(input: R) -> Result<(Rows<R>, Stopped<CsvError>), CsvError> {
    let row_start = Arc::new(RowStart::default());
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(Capped::new(input, Arc::clone(&row_start)));
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            return Err(match e.into_kind() {
                csv::ErrorKind::Io(error) => stop_reason(error, 1),
                _ => CsvError::HeaderNotUtf8,
            });
        }
    };
    let columns = Columns::find(&headers)?;
    let stopped = Stopped::default();
    let rows = Rows {
        reader,
        record: csv::StringRecord::new(),
        columns,
        row_start,
        last_line: 1,
        stopped: stopped.clone(),
        done: false,
    };
    rows.mark_row_start();
    Ok((rows, stopped))
}

/// Where each used column is, from the header row.
#[derive(Debug, Clone, Copy)]
struct Columns {
    phone: usize,
    first_name: Option<usize>,
    last_name: Option<usize>,
    width: usize,
}

impl Columns {
    fn find(headers: &csv::StringRecord) -> Result<Self, CsvError> {
        if headers.is_empty() {
            return Err(CsvError::Empty);
        }
        // A repeated column would leave one of two values unused without a word; refuse it.
        let column = |name: &'static str| {
            let mut at = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| h.trim().eq_ignore_ascii_case(name))
                .map(|(i, _)| i + 1);
            match (at.next(), at.next()) {
                (Some(first), Some(second)) => Err(CsvError::DuplicateColumn {
                    column: name,
                    first,
                    second,
                }),
                (first, _) => Ok(first.map(|n| n - 1)),
            }
        };
        let phone = column("phone")?;
        let first_name = column("first_name")?;
        let last_name = column("last_name")?;
        let phone = phone.ok_or_else(|| CsvError::NoPhone {
            found: found(headers),
        })?;
        Ok(Self {
            phone,
            first_name,
            last_name,
            width: headers.len(),
        })
    }
}

/// The header's column names for an error message: quoted and escaped (the file may be binary and
/// this goes to a terminal), at most 10 of them and 40 characters of each.
fn found(headers: &csv::StringRecord) -> String {
    const SHOWN: usize = 10;
    const CHARS: usize = 40;
    let mut names: Vec<String> = headers
        .iter()
        .take(SHOWN)
        .map(|h| {
            if h.chars().count() > CHARS {
                format!("{:?}…", h.chars().take(CHARS).collect::<String>())
            } else {
                format!("{h:?}")
            }
        })
        .collect();
    if headers.len() > SHOWN {
        names.push(format!("and {} more", headers.len() - SHOWN));
    }
    names.join(", ")
}

/// The data rows, each a contact to normalize or a rejection with its line. Ends early (see
/// [`Stopped`]) at a line or row over the caps, or a read error.
pub struct Rows<R> {
    reader: csv::Reader<Capped<R>>,
    record: csv::StringRecord,
    columns: Columns,
    row_start: Arc<RowStart>,
    last_line: u64,
    stopped: Stopped<CsvError>,
    done: bool,
}

impl<R> std::fmt::Debug for Rows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("last_line", &self.last_line)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Rows<R> {
    /// Tells the reader's cap where the next row begins.
    fn mark_row_start(&self) {
        let position = self.reader.position();
        self.row_start
            .byte
            .store(position.byte(), Ordering::Relaxed);
        self.row_start
            .line
            .store(position.line().max(self.last_line + 1), Ordering::Relaxed);
    }

    fn contact(&self, line: u64) -> Result<RawContact, Rejection> {
        let reject = |reason: String| Rejection { line, reason };
        let Columns {
            phone,
            first_name,
            last_name,
            width,
        } = self.columns;
        // Extra fields are an unquoted comma in a name, most likely: the columns after it are
        // shifted, so the row cannot be trusted. Trailing empty ones are only trailing commas.
        if self.record.iter().skip(width).any(|f| !f.is_empty()) {
            return Err(reject(format!(
                "{} fields, more than the header row's {width} (an unquoted comma?)",
                self.record.len()
            )));
        }
        let field = |name: &str, at: Option<usize>| match at.and_then(|i| self.record.get(i)) {
            Some(value) if value.len() > MAX_FIELD_BYTES => Err(reject(format!(
                "{name} is longer than {MAX_FIELD_BYTES} bytes"
            ))),
            value => Ok(value.map(str::to_owned)),
        };
        Ok(RawContact {
            line,
            first_name: field("first_name", first_name)?,
            last_name: field("last_name", last_name)?,
            phone: field("phone", Some(phone))?,
        })
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Result<RawContact, Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let read = self.reader.read_record(&mut self.record);
        // csv counts lines by `\n` only: in a file with `\r` line ends every row would be line 1.
        let line = self
            .record
            .position()
            .map_or(0, csv::Position::line)
            .max(self.last_line + 1);
        let item = match read {
            Ok(true) => Some(self.contact(line)),
            Ok(false) => None,
            Err(error) => match error.into_kind() {
                csv::ErrorKind::Io(error) => {
                    self.stopped.set(stop_reason(error, line));
                    None
                }
                kind => Some(Err(Rejection {
                    line,
                    reason: format!("unreadable row: {}", describe(&kind)),
                })),
            },
        };
        match item {
            Some(_) => {
                self.last_line = line;
                self.mark_row_start();
            }
            None => self.done = true,
        }
        item
    }
}

/// What went wrong with a CSV row, without echoing its content.
fn describe(error: &csv::ErrorKind) -> &'static str {
    match error {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8",
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields",
        csv::ErrorKind::Io(_) => "read error",
        _ => "malformed CSV",
    }
}

/// The [`CsvError`] an I/O error from the reader stands for: one of the caps, or a real read
/// error at `line`.
fn stop_reason(error: io::Error, line: u64) -> CsvError {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<CapExceeded>())
    {
        Some(CapExceeded::Line(line)) => CsvError::LineTooLong { line: *line },
        Some(CapExceeded::Row(line)) => CsvError::RowTooLong { line: *line },
        None => CsvError::Read { line, error },
    }
}

/// Where the row csv is parsing began, as the rows iterator last saw it.
#[derive(Debug, Default)]
struct RowStart {
    byte: AtomicU64,
    line: AtomicU64,
}

/// A cap was exceeded at this line (carried through csv as an `io::Error`).
#[derive(Debug, thiserror::Error)]
enum CapExceeded {
    #[error("line {0} is too long")]
    Line(u64),
    #[error("the row starting at line {0} is too long")]
    Row(u64),
}

/// The file as csv reads it, with the line and row caps.
struct Capped<R> {
    inner: R,
    /// The physical line being read, 1-based (`\n`, `\r\n` and `\r` each end one).
    line: u64,
    line_bytes: u64,
    after_cr: bool,
    /// Bytes handed to csv so far.
    handed: u64,
    row_start: Arc<RowStart>,
}

impl<R> Capped<R> {
    fn new(inner: R, row_start: Arc<RowStart>) -> Self {
        Self {
            inner,
            line: 1,
            line_bytes: 0,
            after_cr: false,
            handed: 0,
            row_start,
        }
    }

    fn exceeded(cap: CapExceeded) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, cap)
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // csv asks for more only once it has consumed everything handed out so far, so every
        // byte since the row's start belongs to the row it is still parsing.
        let row_start = self.row_start.byte.load(Ordering::Relaxed);
        if self.handed.saturating_sub(row_start) > MAX_ROW_BYTES {
            let line = self.row_start.line.load(Ordering::Relaxed).max(1);
            return Err(Self::exceeded(CapExceeded::Row(line)));
        }
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'\n' => {
                    if !self.after_cr {
                        self.line += 1;
                    }
                    self.line_bytes = 0;
                    self.after_cr = false;
                }
                b'\r' => {
                    self.line += 1;
                    self.line_bytes = 0;
                    self.after_cr = true;
                }
                _ => {
                    self.line_bytes += 1;
                    self.after_cr = false;
                    if self.line_bytes > MAX_LINE_BYTES {
                        return Err(Self::exceeded(CapExceeded::Line(self.line)));
                    }
                }
            }
        }
        self.handed += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Items = Vec<Result<RawContact, Rejection>>;

    fn read(input: &[u8]) -> Result<(Items, Option<CsvError>), CsvError> {
        let (rows, stopped) = from_reader(input)?;
        let rows = rows.collect();
        Ok((rows, stopped.take()))
    }

    fn lines(rows: &[Result<RawContact, Rejection>]) -> Vec<u64> {
        rows.iter()
            .map(|r| match r {
                Ok(c) => c.line,
                Err(r) => r.line,
            })
            .collect()
    }

    #[test]
    fn columns_are_found_in_any_order_and_case_and_rows_carry_their_line() {
        let (rows, stopped) =
            read(b"id, Phone ,LAST_NAME,first_name\n1,4165550100,Morgan,Alex\n2,4165550101\n")
                .unwrap();
        assert!(stopped.is_none());
        let contacts: Vec<_> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(contacts.len(), 2);
        assert_eq!(contacts[0].line, 2);
        assert_eq!(contacts[0].phone.as_deref(), Some("4165550100"));
        assert_eq!(contacts[0].first_name.as_deref(), Some("Alex"));
        assert_eq!(contacts[0].last_name.as_deref(), Some("Morgan"));
        assert_eq!(contacts[1].line, 3);
        assert_eq!(
            contacts[1].first_name, None,
            "a short row misses trailing columns"
        );
    }

    #[test]
    fn carriage_return_line_ends_number_lines_too() {
        let (rows, _) = read(b"phone\r4165550100\r4165550101\r").unwrap();
        assert_eq!(lines(&rows), [2, 3]);
        let (rows, _) = read(b"phone\r\n4165550100\r\n4165550101\r\n").unwrap();
        assert_eq!(lines(&rows), [2, 3]);
    }

    #[test]
    fn a_header_naming_a_used_column_twice_is_refused() {
        for (header, column, first, second) in [
            ("phone,first_name,Phone\n", "phone", 1, 3),
            ("id,phone,first_name,x, first_name \n", "first_name", 3, 5),
            ("last_name,phone,LAST_NAME\n", "last_name", 1, 3),
        ] {
            let err = read(header.as_bytes()).unwrap_err();
            assert!(
                matches!(err, CsvError::DuplicateColumn { column: c, first: f, second: s }
                    if c == column && f == first && s == second),
                "{header:?}: {err}"
            );
        }
        assert_eq!(
            read(b"id,phone,x,y,phone\n").unwrap_err().to_string(),
            "the header row has two `phone` columns (columns 2 and 5)"
        );
    }

    #[test]
    fn a_header_without_phone_names_what_it_found_escaped_and_bounded() {
        let mut header = b"first_name,\x1b[31mred,".to_vec();
        header.extend(b"x,".repeat(20));
        header.extend("a".repeat(100).as_bytes());
        header.push(b'\n');
        let message = read(&header).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "the header row has no `phone` column (found: \"first_name\", \"\\u{1b}[31mred\""
            ),
            "{message}"
        );
        assert!(message.ends_with(", and 13 more)"), "{message}");
        assert!(!message.contains('\x1b'));
        assert_eq!(
            read(b"").unwrap_err().to_string(),
            CsvError::Empty.to_string()
        );
    }

    #[test]
    fn a_line_over_the_cap_stops_the_rows_naming_its_line() {
        let cap = usize::try_from(MAX_LINE_BYTES).unwrap();
        let mut input = b"phone\n4165550100\n".to_vec();
        input.extend(vec![b'x'; cap + 1]);
        input.extend(b"\n4165550101\n");
        let (rows, stopped) = read(&input).unwrap();
        assert_eq!(lines(&rows), [2], "the row before it is handed on");
        assert_eq!(
            stopped.unwrap().to_string(),
            "line 3 is longer than 65536 bytes: not a contacts CSV"
        );

        let err = read(&vec![b'p'; cap + 1]).unwrap_err();
        assert!(matches!(err, CsvError::LineTooLong { line: 1 }), "{err}");

        let mut exactly = b"phone,notes\n4165550100,".to_vec();
        exactly.extend(vec![b'x'; cap - 11]);
        exactly.push(b'\n');
        let (rows, stopped) = read(&exactly).unwrap();
        assert!(stopped.is_none(), "a line of exactly the cap is fine");
        assert_eq!(lines(&rows), [2]);
    }

    #[test]
    fn a_quoted_field_left_open_stops_at_the_row_cap() {
        let mut input = b"phone,notes\n4165550100,ok\n4165550101,\"".to_vec();
        let line = b"a line of notes inside an open quote\n";
        while input.len() < 2 * MAX_ROW_BYTES as usize {
            input.extend(line);
        }
        let (rows, stopped) = read(&input).unwrap();
        assert_eq!(lines(&rows), [2]);
        assert_eq!(
            stopped.unwrap().to_string(),
            "the row starting at line 3 is longer than 1048576 bytes (a quote left open?): not a contacts CSV"
        );
    }

    #[test]
    fn shifted_rows_and_oversized_values_are_rejected_not_cut() {
        let long = "9".repeat(MAX_FIELD_BYTES + 1);
        let input = format!(
            "last_name,first_name,phone\nMorgan, Jr,Alex,4165550100\nLee,Sam,4165550101,,\nX,Y,{long}\n"
        );
        let (rows, _) = read(input.as_bytes()).unwrap();
        let reasons: Vec<_> = rows
            .iter()
            .map(|r| r.as_ref().map_err(|r| (r.line, r.reason.as_str())))
            .collect();
        assert_eq!(
            reasons[0].unwrap_err(),
            (
                2,
                "4 fields, more than the header row's 3 (an unquoted comma?)"
            )
        );
        assert!(reasons[1].is_ok(), "trailing empty fields are only commas");
        assert_eq!(
            reasons[2].unwrap_err(),
            (4, "phone is longer than 1024 bytes")
        );
    }

    #[test]
    fn an_invalid_utf8_row_is_rejected_and_reading_goes_on() {
        let (rows, stopped) =
            read(b"first_name,phone\nAl\xffex,4165550100\nSam,4165550101\n").unwrap();
        assert!(stopped.is_none());
        assert_eq!(
            rows[0].as_ref().unwrap_err(),
            &Rejection {
                line: 2,
                reason: "unreadable row: not valid UTF-8".into()
            }
        );
        assert_eq!(rows[1].as_ref().unwrap().line, 3);
        assert!(matches!(
            read(b"ph\xffone\n").unwrap_err(),
            CsvError::HeaderNotUtf8
        ));
    }

    /// A reader that fails after its bytes: a disk error, a file truncated under us.
    struct FailsAfter(&'static [u8]);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_stops_the_rows_instead_of_ending_them_quietly() {
        let (rows, stopped) = from_reader(FailsAfter(b"phone\n4165550100\n")).unwrap();
        assert_eq!(rows.count(), 1);
        let err = stopped.take().unwrap();
        assert!(matches!(err, CsvError::Read { line: 3, .. }), "{err}");
    }

    fn check_rows(input: &[u8]) -> Result<(), TestCaseError> {
        let Ok((rows, _)) = from_reader(input) else {
            return Ok(());
        };
        let mut previous = 1;
        for row in rows {
            let line = match row {
                Ok(contact) => contact.line,
                Err(rejection) => rejection.line,
            };
            prop_assert!(line >= 2, "line {line}");
            prop_assert!(line > previous, "line {line} after {previous}");
            previous = line;
        }
        Ok(())
    }

    /// Bytes with the characters CSV gives meaning to over-represented.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                1 => prop::sample::select(b",\"\r\n ".to_vec()),
            ],
            0..2048,
        )
    }

    proptest! {
        #[test]
        fn any_bytes_after_a_header_give_rows_or_rejections_with_a_line_from_2(body in csv_bytes()) {
            let mut input = b"first_name,last_name,phone\n".to_vec();
            input.extend(body);
            check_rows(&input)?;
        }

        #[test]
        fn any_bytes_alone_never_panic(input in csv_bytes()) {
            check_rows(&input)?;
        }
    }
}
