//! How `relay contacts import` ends: the per-row messages, capped, and the rule that makes the
//! command fail when too little of the file was imported.

use std::path::Path;

use relay_contact_files::CsvError;
use relay_usecase::ImportReport;

/// stderr's lines about rejected rows: `line N: reason` for each one the report kept, then how
/// many more there were.
pub(crate) fn rejection_lines(report: &ImportReport) -> impl Iterator<Item = String> + '_ {
    let more = report.rejected_total - report.rejected.len() as u64;
    report
        .rejected
        .iter()
        .map(|r| format!("line {}: {}", r.line, r.reason))
        .chain((more > 0).then(|| format!("... and {} more rejected rows", grouped(more))))
}

/// stdout's summary line.
pub(crate) fn summary(report: &ImportReport) -> String {
    let s = &report.summary;
    format!(
        "inserted={} updated={} unchanged={} rejected={}",
        s.inserted, s.updated, s.unchanged, report.rejected_total
    )
}

/// The command fails when nothing was imported (no data rows, or every row rejected), or when
/// more than `max_rejected` percent of the rows were rejected: a file that is mostly wrong
/// (another export format, the wrong column as `phone`) must not look like a success to a script.
///
/// # Errors
/// The rule that failed, with the counts.
pub(crate) fn verdict(report: &ImportReport, max_rejected: u8) -> anyhow::Result<()> {
    let (rows, rejected) = (report.rows, report.rejected_total);
    if rows == 0 {
        anyhow::bail!("no data rows after the header: nothing imported");
    }
    if rejected == rows {
        anyhow::bail!(
            "{} of {} rows rejected: nothing imported",
            grouped(rejected),
            grouped(rows)
        );
    }
    if u128::from(rejected) * 100 > u128::from(max_rejected) * u128::from(rows) {
        anyhow::bail!(
            "{} of {} rows rejected ({}%), more than --max-rejected {max_rejected}%; the other \
             rows were imported",
            grouped(rejected),
            grouped(rows),
            percent_rounded_up(rejected, rows)
        );
    }
    Ok(())
}

/// The reader stopped at `error`: what the command says, including that the rows before it
/// were imported (their batches are committed).
pub(crate) fn stopped(file: &Path, error: &CsvError, report: &ImportReport) -> anyhow::Error {
    let imported = match report.accepted() {
        0 => String::new(),
        1 => "; the row before it was imported".to_owned(),
        n => format!("; the {} rows before it were imported", grouped(n)),
    };
    anyhow::anyhow!("{}: {error}{imported}", file.display())
}

/// `rejected / rows` as a percentage with one decimal, rounded up so that a share just over the
/// threshold never prints as equal to it.
fn percent_rounded_up(rejected: u64, rows: u64) -> String {
    let tenths = (u128::from(rejected) * 1000).div_ceil(u128::from(rows));
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use relay_usecase::{MAX_REPORTED_REJECTIONS, Rejection};

    use super::*;

    fn report(rows: u64, rejected: u64) -> ImportReport {
        ImportReport {
            rows,
            rejected_total: rejected,
            rejected: (0..rejected.min(MAX_REPORTED_REJECTIONS as u64))
                .map(|i| Rejection {
                    line: i + 2,
                    reason: "no phone number".into(),
                })
                .collect(),
            ..ImportReport::default()
        }
    }

    fn verdict_message(rows: u64, rejected: u64, max: u8) -> Option<String> {
        verdict(&report(rows, rejected), max)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn nothing_imported_fails_whatever_the_threshold() {
        assert_eq!(
            verdict_message(0, 0, 100).as_deref(),
            Some("no data rows after the header: nothing imported")
        );
        assert_eq!(
            verdict_message(1_000, 1_000, 100).as_deref(),
            Some("1,000 of 1,000 rows rejected: nothing imported")
        );
    }

    #[test]
    fn more_rejected_than_the_threshold_fails_and_says_the_rest_was_imported() {
        assert_eq!(
            verdict_message(1_000, 150, 10).as_deref(),
            Some(
                "150 of 1,000 rows rejected (15.0%), more than --max-rejected 10%; the other \
                 rows were imported"
            )
        );
        assert_eq!(
            verdict_message(1_000, 100, 10),
            None,
            "exactly 10% is allowed"
        );
        assert_eq!(
            verdict_message(10_000, 1_001, 10)
                .as_deref()
                .map(|m| &m[..30]),
            Some("1,001 of 10,000 rows rejected "),
        );
        assert!(
            verdict_message(10_000, 1_001, 10)
                .unwrap()
                .contains("(10.1%)"),
            "rounded up, never shown as the threshold itself"
        );
        assert_eq!(verdict_message(10, 0, 0), None);
        assert!(
            verdict_message(1_000, 1, 0).is_some(),
            "0 allows no rejection"
        );
        assert_eq!(verdict_message(1_000, 999, 100), None);
    }

    #[test]
    fn rejection_messages_stop_after_the_reported_ones_with_a_count() {
        let lines: Vec<_> = rejection_lines(&report(200_000, 199_000)).collect();
        assert_eq!(lines.len(), MAX_REPORTED_REJECTIONS + 1);
        assert_eq!(lines[0], "line 2: no phone number");
        assert_eq!(
            lines[MAX_REPORTED_REJECTIONS],
            "... and 198,980 more rejected rows"
        );
        let lines: Vec<_> = rejection_lines(&report(100, 3)).collect();
        assert_eq!(lines.len(), 3, "no closing line when none more: {lines:?}");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(grouped(n), s);
        }
    }
}
