//! Contacts as NDJSON: one JSON object per line, `{"first_name": "…", "last_name": "…",
//! "phone": "…"}`, read lazily with bounded memory whatever the input holds.
//!
//! Each field is optional, a string or `null`; any other field, or a line that is not one JSON
//! object, rejects its row with a reason (never its values). Lines end with `\n` (a `\r` before it
//! is part of the line break) and are numbered from 1; blank lines are skipped but counted. A line
//! over [`MAX_LINE_BYTES`] (a binary file, a file without line breaks) ends the rows as soon as
//! it is too long, as a read error does (see [`Stopped`]).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use relay_usecase::{RawContact, Rejection};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{MAX_FIELD_BYTES, MAX_LINE_BYTES, Stopped};

/// The fields a line may hold.
const FIELDS: [&str; 3] = ["first_name", "last_name", "phone"];

/// Why the rows of an NDJSON input ended early. Messages never echo row content.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    /// A line over [`MAX_LINE_BYTES`].
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes: not a contacts NDJSON file")]
    LineTooLong {
        /// The line, 1-based.
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
}

/// The rows of the NDJSON `input`. Nothing is read until the rows are iterated, so nothing is
/// refused up front: an input over the caps, or unreadable, ends the rows with its error in the
/// [`Stopped`]; an empty input has no rows.
pub fn from_reader<R: Read>(input: R) -> (Rows<R>, Stopped<NdjsonError>) {
    let stopped = Stopped::default();
    let rows = Rows {
        input: BufReader::new(input),
        buf: Vec::new(),
        line: 0,
        stopped: stopped.clone(),
        done: false,
    };
    (rows, stopped)
}

/// The rows, each a contact to normalize or a rejection with its line. Ends early (see
/// [`Stopped`]) at a line over the cap, or a read error.
pub struct Rows<R> {
    input: BufReader<R>,
    /// The line being read, without its line break: at most `MAX_LINE_BYTES + 1` bytes.
    buf: Vec<u8>,
    /// The last line read, 1-based (0 before the first).
    line: u64,
    stopped: Stopped<NdjsonError>,
    done: bool,
}

impl<R> fmt::Debug for Rows<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rows")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Rows<R> {
    /// Reads the next line into `buf`, without its line break; `false` at the end of the input.
    /// Holds no more than the cap: a longer line is an error as soon as it is too long.
    fn read_line(&mut self) -> Result<bool, NdjsonError> {
        // The cap excludes the line break, whose `\r` is only known to be one at the `\n`.
        const HELD: usize = MAX_LINE_BYTES as usize + 1;
        let line = self.line + 1;
        self.buf.clear();
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(NdjsonError::Read { line, error }),
            };
            if available.is_empty() {
                // The end of the input; a last line without a line break is a line.
                return Ok(!self.buf.is_empty());
            }
            let (content, newline) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            if self.buf.len() + content.len() > HELD {
                return Err(NdjsonError::LineTooLong { line });
            }
            self.buf.extend_from_slice(content);
            let used = content.len() + usize::from(newline);
            self.input.consume(used);
            if newline {
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.len() > MAX_LINE_BYTES as usize {
            return Err(NdjsonError::LineTooLong { line });
        }
        Ok(true)
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Result<RawContact, Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.read_line() {
                Ok(true) => self.line += 1,
                Ok(false) => self.done = true,
                Err(error) => {
                    self.stopped.set(error);
                    self.done = true;
                }
            }
            if self.done {
                break;
            }
            let mut text = self.buf.as_slice();
            if self.line == 1 {
                // A byte-order mark, as some editors write.
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            if text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                continue;
            }
            return Some(contact(self.line, text));
        }
        None
    }
}

/// The contact on `line`, or why it is rejected.
fn contact(line: u64, text: &[u8]) -> Result<RawContact, Rejection> {
    let reject = |reason: String| Rejection { line, reason };
    let Ok(text) = std::str::from_utf8(text) else {
        return Err(reject("unreadable row: not valid UTF-8".to_owned()));
    };
    let fields = match serde_json::from_str::<Line>(text) {
        Ok(Line::Object(fields)) => fields,
        Ok(Line::Other(kind)) => {
            return Err(reject(format!("not a JSON object but {kind}")));
        }
        Err(error) => return Err(reject(not_json(&error))),
    };
    let mut contact = RawContact {
        line,
        ..RawContact::default()
    };
    let mut seen = [false; FIELDS.len()];
    for (name, value) in fields {
        let Some(at) = FIELDS.iter().position(|f| *f == name) else {
            return Err(reject(format!(
                "unknown field {} (the fields are first_name, last_name and phone)",
                shown(&name)
            )));
        };
        let name = FIELDS[at];
        if std::mem::replace(&mut seen[at], true) {
            return Err(reject(format!("two `{name}` fields")));
        }
        let value = match value {
            Value::Null => None,
            Value::Text(value) if value.trim().len() > MAX_FIELD_BYTES => {
                return Err(reject(format!(
                    "{name} is longer than {MAX_FIELD_BYTES} bytes"
                )));
            }
            Value::Text(value) => Some(value),
            Value::Other(kind) => {
                return Err(reject(format!("{name} is {kind}, not a string or null")));
            }
        };
        let slot = match at {
            0 => &mut contact.first_name,
            1 => &mut contact.last_name,
            _ => &mut contact.phone,
        };
        *slot = value;
    }
    Ok(contact)
}

/// Why a line is not JSON, without its content: serde_json's syntax messages are fixed phrases
/// with a position, and the line is the row's.
fn not_json(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            let message = error.to_string();
            let phrase = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(phrase, _)| phrase);
            format!("not valid JSON: {phrase} (column {})", error.column())
        }
        _ => "not valid JSON".to_owned(),
    }
}

/// An unknown field's name for a message: quoted and escaped (it may hold anything and goes to a
/// terminal or a report), at most 40 characters of it.
fn shown(name: &str) -> String {
    const CHARS: usize = 40;
    if name.chars().count() > CHARS {
        format!("{:?}…", name.chars().take(CHARS).collect::<String>())
    } else {
        format!("{name:?}")
    }
}

/// A line's JSON: an object's fields in order (repeats kept, to be refused), or what else it is.
enum Line {
    Object(Vec<(String, Value)>),
    Other(&'static str),
}

/// A field's value: only strings and null are copied.
enum Value {
    Null,
    Text(String),
    Other(&'static str),
}

/// Accepts any JSON value, so a serde_json error is a syntax error; the kinds of the values it
/// does not keep are named, never their content.
macro_rules! name_other_kinds {
    ($other:path) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other("a boolean"))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($other("an array"))
        }
    };
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor;

        impl<'de> Visitor<'de> for LineVisitor {
            type Value = Line;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            name_other_kinds!(Line::Other);

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Line, E> {
                Ok(Line::Other("a string"))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Line, E> {
                Ok(Line::Other("null"))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, Value>()? {
                    fields.push(field);
                }
                Ok(Line::Object(fields))
            }
        }

        deserializer.deserialize_any(LineVisitor)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            name_other_kinds!(Value::Other);

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
                Ok(Value::Text(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
                Ok(Value::Text(value))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Other("an object"))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Items = Vec<Result<RawContact, Rejection>>;

    fn read(input: &[u8]) -> (Items, Option<NdjsonError>) {
        let (rows, stopped) = from_reader(input);
        let rows = rows.collect();
        (rows, stopped.take())
    }

    fn lines(rows: &[Result<RawContact, Rejection>]) -> Vec<u64> {
        rows.iter()
            .map(|r| match r {
                Ok(c) => c.line,
                Err(r) => r.line,
            })
            .collect()
    }

    fn rejection(row: &Result<RawContact, Rejection>) -> (u64, &str) {
        let rejection = row.as_ref().unwrap_err();
        (rejection.line, rejection.reason.as_str())
    }

    #[test]
    fn objects_become_contacts_numbered_from_line_1_with_null_and_missing_fields_as_none() {
        let (rows, stopped) = read(
            b"{\"first_name\": \"Alex\", \"last_name\": \"Morgan\", \"phone\": \"4165550100\"}\n\
              {\"phone\":\"4165550101\",\"first_name\":null}\r\n\
              {}",
        );
        assert!(stopped.is_none());
        let contacts: Vec<_> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(contacts.len(), 3, "the last line needs no line break");
        assert_eq!(contacts[0].line, 1);
        assert_eq!(contacts[0].first_name.as_deref(), Some("Alex"));
        assert_eq!(contacts[0].last_name.as_deref(), Some("Morgan"));
        assert_eq!(contacts[0].phone.as_deref(), Some("4165550100"));
        assert_eq!(contacts[1].line, 2);
        assert_eq!(contacts[1].phone.as_deref(), Some("4165550101"));
        assert_eq!(contacts[1].first_name, None);
        assert_eq!(contacts[1].last_name, None);
        assert_eq!(contacts[2].line, 3);
        assert_eq!(contacts[2].phone, None, "the use case rejects it");
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let (rows, stopped) =
            read(b"\n{\"phone\":\"4165550100\"}\n  \t\r\n\r\n\n{\"phone\":\"4165550101\"}\n\n");
        assert!(stopped.is_none());
        assert_eq!(lines(&rows), [2, 6]);
        assert!(rows.iter().all(Result::is_ok));
        let (rows, stopped) = read(b"");
        assert!(rows.is_empty() && stopped.is_none());
        let (rows, stopped) = read(b"\n\n \n");
        assert!(rows.is_empty() && stopped.is_none());
    }

    #[test]
    fn a_line_that_is_not_json_is_rejected_with_its_line_and_reading_goes_on() {
        let (rows, stopped) = read(
            b"{\"phone\": \"4165550100\"\n\
              {\"phone\": \"4165550101\"} {\"phone\": \"4165550102\"}\n\
              phone,first_name\n\
              {\"phone\": \"4165\xff550103\"}\n\
              {\"phone\": \"4165550104\"}\n",
        );
        assert!(stopped.is_none());
        assert_eq!(
            rejection(&rows[0]),
            (1, "not valid JSON: EOF while parsing an object (column 22)")
        );
        assert_eq!(
            rejection(&rows[1]),
            (2, "not valid JSON: trailing characters (column 25)")
        );
        assert_eq!(
            rejection(&rows[2]),
            (3, "not valid JSON: expected value (column 1)")
        );
        assert_eq!(rejection(&rows[3]), (4, "unreadable row: not valid UTF-8"));
        assert_eq!(rows[4].as_ref().unwrap().line, 5);
        for row in &rows[..4] {
            assert!(!row.as_ref().unwrap_err().reason.contains("4165"));
        }
    }

    #[test]
    fn a_json_value_other_than_an_object_is_rejected_naming_its_kind() {
        let (rows, stopped) =
            read(b"[\"4165550100\"]\n\"4165550100\"\n4165550100\nnull\ntrue\n[[{}]]\n");
        assert!(stopped.is_none());
        let reasons: Vec<_> = rows.iter().map(rejection).collect();
        assert_eq!(
            reasons,
            [
                (1, "not a JSON object but an array"),
                (2, "not a JSON object but a string"),
                (3, "not a JSON object but a number"),
                (4, "not a JSON object but null"),
                (5, "not a JSON object but a boolean"),
                (6, "not a JSON object but an array"),
            ]
        );
    }

    #[test]
    fn unknown_repeated_and_non_string_fields_reject_their_row_without_echoing_values() {
        let long = "k".repeat(100);
        let input = format!(
            "{{\"phone\": \"4165550100\", \"email\": \"a@example.com\"}}\n\
             {{\"Phone\": \"4165550100\"}}\n\
             {{\"\\u001b[31m{long}\": 1}}\n\
             {{\"phone\": \"4165550100\", \"phone\": \"4165550101\"}}\n\
             {{\"phone\": 4165550100}}\n\
             {{\"first_name\": [\"Alex\"], \"phone\": \"4165550100\"}}\n\
             {{\"last_name\": {{\"x\": \"Morgan\"}}, \"phone\": \"4165550100\"}}\n"
        );
        let (rows, stopped) = read(input.as_bytes());
        assert!(stopped.is_none());
        let reasons: Vec<_> = rows.iter().map(rejection).collect();
        let fields = "(the fields are first_name, last_name and phone)";
        assert_eq!(
            reasons[0],
            (1, &*format!("unknown field \"email\" {fields}"))
        );
        assert_eq!(
            reasons[1],
            (2, &*format!("unknown field \"Phone\" {fields}"))
        );
        assert_eq!(
            reasons[2],
            (
                3,
                &*format!(
                    "unknown field \"\\u{{1b}}[31m{}\"… {fields}",
                    "k".repeat(35)
                )
            )
        );
        assert_eq!(reasons[3], (4, "two `phone` fields"));
        assert_eq!(reasons[4], (5, "phone is a number, not a string or null"));
        assert_eq!(
            reasons[5],
            (6, "first_name is an array, not a string or null")
        );
        assert_eq!(
            reasons[6],
            (7, "last_name is an object, not a string or null")
        );
    }

    #[test]
    fn a_value_over_the_field_cap_rejects_its_row_not_cut() {
        let long = "9".repeat(MAX_FIELD_BYTES + 1);
        let fits = format!("  {}  ", "9".repeat(MAX_FIELD_BYTES));
        let input = format!("{{\"phone\": \"{long}\"}}\n{{\"last_name\": \"{fits}\"}}\n");
        let (rows, _) = read(input.as_bytes());
        assert_eq!(rejection(&rows[0]), (1, "phone is longer than 1024 bytes"));
        assert!(rows[1].is_ok(), "surrounding whitespace is not counted");
    }

    #[test]
    fn a_line_over_the_cap_stops_the_rows_naming_its_line() {
        let cap = usize::try_from(MAX_LINE_BYTES).unwrap();
        let mut input = b"{\"phone\": \"4165550100\"}\n".to_vec();
        input.extend(vec![b' '; cap + 1]);
        input.extend(b"\n{\"phone\": \"4165550101\"}\n");
        let (rows, stopped) = read(&input);
        assert_eq!(lines(&rows), [1], "the row before it is handed on");
        assert_eq!(
            stopped.unwrap().to_string(),
            "line 2 is longer than 65536 bytes: not a contacts NDJSON file"
        );

        for end in ["\n", "\r\n", ""] {
            let mut exactly = b"{\"phone\": \"4165550100\"}".to_vec();
            exactly.extend(vec![b' '; cap - exactly.len()]);
            exactly.extend(end.as_bytes());
            let (rows, stopped) = read(&exactly);
            assert!(
                stopped.is_none(),
                "a line of exactly the cap is fine ({end:?})"
            );
            assert_eq!(lines(&rows), [1]);
        }
        let mut over = vec![b' '; cap];
        over.extend(b"\r\r\n");
        let (_, stopped) = read(&over);
        assert!(matches!(
            stopped,
            Some(NdjsonError::LineTooLong { line: 1 })
        ));
    }

    /// Hands out its bytes and counts how many were asked for.
    struct Counted<'a> {
        bytes: &'a [u8],
        handed: usize,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            self.handed += n;
            Ok(n)
        }
    }

    #[test]
    fn an_input_without_line_breaks_is_refused_at_once() {
        let garbage = vec![b'x'; 20 * 1024 * 1024];
        let mut input = Counted {
            bytes: &garbage,
            handed: 0,
        };
        let (rows, stopped) = from_reader(&mut input);
        assert_eq!(rows.count(), 0);
        assert!(matches!(
            stopped.take(),
            Some(NdjsonError::LineTooLong { line: 1 })
        ));
        assert!(
            input.handed < 2 * MAX_LINE_BYTES as usize,
            "read {} bytes",
            input.handed
        );
    }

    /// A reader that fails after its bytes: a disk error, a body cut short.
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
        let (rows, stopped) = from_reader(FailsAfter(b"{\"phone\": \"4165550100\"}\n"));
        assert_eq!(rows.count(), 1);
        let err = stopped.take().unwrap();
        assert!(matches!(err, NdjsonError::Read { line: 2, .. }), "{err}");
        assert_eq!(err.to_string(), "cannot read line 2: disk on fire");
    }

    #[test]
    fn a_byte_order_mark_before_the_first_line_is_ignored() {
        let (rows, _) = read(b"\xEF\xBB\xBF{\"phone\": \"4165550100\"}\n");
        assert_eq!(
            rows[0].as_ref().unwrap().phone.as_deref(),
            Some("4165550100")
        );
    }

    /// Bytes with the characters and words JSON and line breaks give meaning to
    /// over-represented.
    fn ndjson_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => any::<u8>().prop_map(|b| vec![b]),
                2 => prop::sample::select(b"{}[]:,\"\\\r\n ".to_vec()).prop_map(|b| vec![b]),
                1 => prop::sample::select(vec![
                    b"\"phone\"".to_vec(),
                    b"\"first_name\"".to_vec(),
                    b"null".to_vec(),
                ]),
            ],
            0..512,
        )
        .prop_map(|chunks| chunks.concat())
    }

    proptest! {
        #[test]
        fn any_bytes_give_rows_or_rejections_with_increasing_lines_and_never_panic(
            input in ndjson_bytes()
        ) {
            let (rows, stopped) = from_reader(input.as_slice());
            let mut previous = 0;
            for row in rows {
                let line = match row {
                    Ok(contact) => contact.line,
                    Err(rejection) => rejection.line,
                };
                prop_assert!(line > previous, "line {line} after {previous}");
                previous = line;
            }
            prop_assert!(stopped.take().is_none(), "short input is never over the cap");
        }
    }
}
