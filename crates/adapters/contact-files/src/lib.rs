//! Contact files: the formats `relay contacts import` and the management API's bulk import read,
//! turned into [`RawContact`] rows or per-row [`Rejection`]s with the row's line.
//!
//! - [`csv`]: a header row naming a `phone` column (and optionally `first_name`, `last_name`),
//!   then one contact per row; the header is line 1.
//! - [`ndjson`]: one JSON object per line, `{"first_name": …, "last_name": …, "phone": …}`; the
//!   first line is line 1.
//!
//! Both read lazily with bounded memory whatever the input holds: a line over
//! [`MAX_LINE_BYTES`] (a binary file, a file without line breaks) ends the rows at once, and a
//! value over [`MAX_FIELD_BYTES`] rejects its row. Such a fatal error, or a read error, ends the
//! rows early and is kept in the [`Stopped`] handed out with them; the rows before it were
//! handed on as usual. Messages never echo a row's values.
//!
//! [`rows`] reads either format behind one type, for callers that learn the format at run time
//! (the HTTP adapter, from a request's content type). It blocks on `input`: call it, and iterate
//! the rows, on a thread that may block.

pub mod csv;
pub mod ndjson;

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use relay_usecase::{RawContact, Rejection};

pub use crate::csv::CsvError;
pub use crate::ndjson::NdjsonError;

/// Longest physical line accepted, in bytes (line break excluded).
pub const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Longest value of a field the import uses (`phone`, `first_name`, `last_name`), in bytes.
/// Longer values are rejected in the reader rather than copied, so a chunk of rows on its way to
/// the store stays small.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A contact file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CSV with a header row (see [`csv`]).
    Csv,
    /// Newline-delimited JSON objects (see [`ndjson`]).
    Ndjson,
}

/// Why a contact file was refused or its rows ended early: the format's own error.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A CSV file's error.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// An NDJSON file's error.
    #[error(transparent)]
    Ndjson(#[from] NdjsonError),
}

/// The rows of a contact file of either format, each a contact to normalize or a rejection.
pub type Contacts = Box<dyn Iterator<Item = Result<RawContact, Rejection>> + Send>;

/// The rows of `input` read as `format`, and where to learn whether they ended early.
///
/// # Errors
/// A CSV header row refused, or unreadable (see [`csv::from_reader`]). An NDJSON input is not
/// refused up front: its errors end the rows (see [`ndjson::from_reader`]).
pub fn rows<R: Read + Send + 'static>(
    input: R,
    format: Format,
) -> Result<(Contacts, Stopped), SourceError> {
    let to = Stopped::default();
    let rows: Contacts = match format {
        Format::Csv => {
            let (rows, from) = csv::from_reader(input)?;
            Box::new(Forward::new(rows, from, to.clone()))
        }
        Format::Ndjson => {
            let (rows, from) = ndjson::from_reader(input);
            Box::new(Forward::new(rows, from, to.clone()))
        }
    };
    Ok((rows, to))
}

/// Why the rows ended early, if they did: a line or row over the caps, or a read error. Rows read
/// before it were handed on (and imported) as usual. Set when the rows end; a clone shares it.
#[derive(Debug)]
pub struct Stopped<E = SourceError>(Arc<Mutex<Option<E>>>);

impl<E> Stopped<E> {
    /// The error that ended the rows early, once (`None` before the rows have ended).
    pub fn take(&self) -> Option<E> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn set(&self, error: E) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

impl<E> Default for Stopped<E> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<E> Clone for Stopped<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// A format's rows, passing the format's [`Stopped`] error on as a [`SourceError`] when they end.
struct Forward<I, E> {
    rows: I,
    from: Stopped<E>,
    to: Stopped,
}

impl<I, E> Forward<I, E> {
    fn new(rows: I, from: Stopped<E>, to: Stopped) -> Self {
        Self { rows, from, to }
    }
}

impl<I, E> Iterator for Forward<I, E>
where
    I: Iterator<Item = Result<RawContact, Rejection>>,
    E: Into<SourceError>,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rows.next();
        if item.is_none()
            && let Some(error) = self.from.take()
        {
            self.to.set(error.into());
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &'static [u8], format: Format) -> (Vec<Result<RawContact, Rejection>>, Stopped) {
        let (rows, stopped) = rows(input, format).unwrap();
        (rows.collect(), stopped)
    }

    #[test]
    fn either_format_gives_the_same_contacts_with_its_own_line_numbers() {
        let (csv, stopped) = read(b"first_name,phone\nAlex,4165550100\n", Format::Csv);
        assert!(stopped.take().is_none());
        let (ndjson, stopped) = read(
            b"{\"first_name\": \"Alex\", \"phone\": \"4165550100\"}\n",
            Format::Ndjson,
        );
        assert!(stopped.take().is_none());
        let (csv, ndjson) = (csv[0].as_ref().unwrap(), ndjson[0].as_ref().unwrap());
        assert_eq!((csv.line, ndjson.line), (2, 1));
        assert_eq!(csv.first_name, ndjson.first_name);
        assert_eq!(csv.phone, ndjson.phone);
        assert_eq!(ndjson.last_name, None);
    }

    #[test]
    fn a_refused_header_is_an_error_up_front_and_a_stop_reaches_the_shared_handle() {
        let Err(error) = rows(&b"name\nAlex\n"[..], Format::Csv) else {
            panic!("a header without phone is refused");
        };
        assert!(matches!(error, SourceError::Csv(CsvError::NoPhone { .. })));

        let mut input = b"phone\n4165550100\n".to_vec();
        input.extend(vec![b'x'; 2 * MAX_LINE_BYTES as usize]);
        let (csv, stopped) = rows(std::io::Cursor::new(input), Format::Csv).unwrap();
        assert!(stopped.take().is_none(), "nothing read yet");
        assert_eq!(csv.count(), 1);
        assert_eq!(
            stopped.take().unwrap().to_string(),
            "line 3 is longer than 65536 bytes: not a contacts CSV"
        );
        assert!(stopped.take().is_none(), "taken once");

        let input = vec![b'{'; 2 * MAX_LINE_BYTES as usize];
        let (ndjson, stopped) = rows(std::io::Cursor::new(input), Format::Ndjson).unwrap();
        assert_eq!(ndjson.count(), 0);
        assert!(matches!(
            stopped.take(),
            Some(SourceError::Ndjson(NdjsonError::LineTooLong { line: 1 }))
        ));
    }
}
