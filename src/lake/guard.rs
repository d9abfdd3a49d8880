//! The guards a publication passes before it commits anything, so that no
//! input can silently wipe or roll back the published fact table:
//!
//! - **Date.** Every commit records its logical date; a run may not publish
//!   a date older than the one the fact table holds (a re-run of an old
//!   date, a `runs retry`, a backfill that ends before the newest date)
//!   unless the user allows exactly that.
//! - **Shrink.** A run may not empty the fact table, drop a published week
//!   or remove more than `max_shrink` of its rows (a header-only or partial
//!   snapshot from a producer passes every data rule) unless the user
//!   allows it.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::schema::FACT_TABLE;

/// Rows of the fact table per (yr_num, wk_num).
pub type WeekRows = BTreeMap<(i32, i32), u64>;

/// A publication a guard refused; nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "refusing to publish {date}: {FACT_TABLE} holds the data of {newest}, and {date}'s snapshot would take it back to an older date. Nothing was published. To roll the table back on purpose, run {date} again with --allow-older (or `allow_older = true` in [publish])"
    )]
    Older { date: NaiveDate, newest: NaiveDate },
    #[error(
        "refusing to publish {date}: it is after today ({today}), and every later date would then be refused as older. Nothing was published; check the logical date"
    )]
    Future { date: NaiveDate, today: NaiveDate },
    #[error(
        "refusing to publish {date}: {}. Nothing was published. If that is intended (e.g. the source purged old history), run again with --allow-shrink (or `allow_shrink = true` in [publish]); `max_shrink` in [publish] sets how much one run may remove (now {:.0}%)",
        .problems.join("; "), .max_shrink * 100.0
    )]
    Shrink {
        date: NaiveDate,
        problems: Vec<String>,
        max_shrink: f64,
    },
}

/// Fails when `date` is after `today` (a day of slack for time zones), or
/// older than `newest`, the date the fact table's last publication
/// recorded, unless `allow_older`.
pub fn check_date(
    date: NaiveDate,
    newest: Option<NaiveDate>,
    allow_older: bool,
    today: NaiveDate,
) -> Result<(), GuardError> {
    if today.succ_opt().is_some_and(|tomorrow| date > tomorrow) {
        return Err(GuardError::Future { date, today });
    }
    match newest {
        Some(newest) if newest > date && !allow_older => Err(GuardError::Older { date, newest }),
        _ => Ok(()),
    }
}

/// Fails when replacing `before` (the published rows of the weeks the run
/// replaces) with `after` would empty it, drop a week, or remove more than
/// `max_shrink` of its rows.
pub fn check_shrink(
    date: NaiveDate,
    before: &WeekRows,
    after: &WeekRows,
    max_shrink: f64,
) -> Result<(), GuardError> {
    let before_rows: u64 = before.values().sum();
    let after_rows: u64 = after.values().sum();
    let mut problems = Vec::new();
    if before_rows > 0 && after_rows == 0 {
        problems.push(format!(
            "{FACT_TABLE} would go from {before_rows} rows over {} weeks to 0 rows",
            before.len()
        ));
    } else {
        let dropped: Vec<String> = before
            .keys()
            .filter(|week| !after.contains_key(week))
            .map(|(year, week)| format!("{year} week {week}"))
            .collect();
        if !dropped.is_empty() {
            problems.push(format!(
                "{} of the {} published weeks would disappear ({}{})",
                dropped.len(),
                before.len(),
                dropped
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if dropped.len() > 5 { ", ..." } else { "" }
            ));
        }
        let removed = before_rows.saturating_sub(after_rows);
        if before_rows > 0 && removed as f64 > max_shrink * before_rows as f64 {
            problems.push(format!(
                "{FACT_TABLE} would go from {before_rows} to {after_rows} rows ({:.1}% fewer)",
                100.0 * removed as f64 / before_rows as f64
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(GuardError::Shrink {
        date,
        problems,
        max_shrink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weeks(rows: &[((i32, i32), u64)]) -> WeekRows {
        rows.iter().copied().collect()
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()
    }

    #[test]
    fn an_older_date_is_refused_naming_both_unless_allowed() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let check_date = |date, newest, allow| super::check_date(date, newest, allow, today);
        let older = NaiveDate::from_ymd_opt(2025, 10, 27).unwrap();
        let err = check_date(older, Some(day()), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2025-10-27") && err.contains("2025-12-31"),
            "{err}"
        );
        check_date(older, Some(day()), true).unwrap();
        check_date(day(), Some(day()), false).unwrap();
        check_date(day(), Some(older), false).unwrap();
        check_date(day(), None, false).unwrap();
        let typo = NaiveDate::from_ymd_opt(2062, 1, 20).unwrap();
        let err = check_date(typo, None, true).unwrap_err().to_string();
        assert!(
            err.contains("2062-01-20: it is after today (2026-12-07)"),
            "{err}"
        );
    }

    #[test]
    fn emptying_dropping_a_week_or_shrinking_too_much_is_refused() {
        let published = weeks(&[((2025, 1), 500), ((2025, 2), 500)]);
        let empty = check_shrink(day(), &published, &WeekRows::new(), 0.1)
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("from 1000 rows over 2 weeks to 0 rows"),
            "{empty}"
        );
        let dropped = check_shrink(day(), &published, &weeks(&[((2025, 2), 990)]), 0.9)
            .unwrap_err()
            .to_string();
        assert!(
            dropped.contains("1 of the 2 published weeks would disappear (2025 week 1)"),
            "{dropped}"
        );
        let shrunk = weeks(&[((2025, 1), 400), ((2025, 2), 400)]);
        let err = check_shrink(day(), &published, &shrunk, 0.1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 1000 to 800 rows (20.0% fewer)"), "{err}");
        check_shrink(day(), &published, &shrunk, 0.25).unwrap();
        check_shrink(day(), &WeekRows::new(), &WeekRows::new(), 0.1).unwrap();
        let grown = weeks(&[((2025, 1), 500), ((2025, 2), 500), ((2025, 3), 1)]);
        check_shrink(day(), &published, &grown, 0.0).unwrap();
    }
}
