//! Date windows of the facts (contract section 2): which `sales` and
//! `inventory` rows an incremental night extracts, and which weeks of the
//! fact table it then replaces.
//!
//! Weeks are the retailer's own, as its `calendar` table numbers them: a
//! window starts on the first day of a calendar week, so every week it
//! touches is recomputed from all its rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Int32Type};
use datafusion::arrow::record_batch::RecordBatch;

use crate::raw::csv::date_from_days;

/// A calendar week: (`yr_num`, `wk_num`).
pub type Week = (i32, i32);

/// The days `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    /// Whether `date` lies in this range.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

impl std::fmt::Display for DateRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to {}", self.from, self.to)
    }
}

/// Why a window cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "{date} is not in the calendar table, so the week a window starting there belongs to is unknown; add the date to calendar or choose another lookback"
    )]
    NotInCalendar { date: NaiveDate },
    #[error(
        "the window starts on {from}, in the middle of {year} week {week} (which starts on {first}): that week would be recomputed from part of its rows; start the window on {first}"
    )]
    MidWeek {
        from: NaiveDate,
        year: i32,
        week: i32,
        first: NaiveDate,
    },
}

/// The calendar's weeks: the week of each date, and each week's days.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    week_of: BTreeMap<NaiveDate, Week>,
    days: BTreeMap<Week, DateRange>,
}

impl Calendar {
    /// The calendar in `batches`, which hold `cal_dt`, `yr_num` and
    /// `wk_num` columns (others are ignored); rows with a NULL among them
    /// are left out (the quality rules report them).
    pub fn from_batches(batches: &[RecordBatch]) -> Calendar {
        let mut calendar = Calendar::default();
        for batch in batches {
            let column = |name: &str| batch.column_by_name(name);
            let (Some(days), Some(years), Some(weeks)) =
                (column("cal_dt"), column("yr_num"), column("wk_num"))
            else {
                continue;
            };
            let days = days.as_primitive::<Date32Type>();
            let years = years.as_primitive::<Int32Type>();
            let weeks = weeks.as_primitive::<Int32Type>();
            for row in 0..batch.num_rows() {
                if days.is_null(row) || years.is_null(row) || weeks.is_null(row) {
                    continue;
                }
                let Some(day) = date_from_days(days.value(row)) else {
                    continue;
                };
                calendar.insert(day, (years.value(row), weeks.value(row)));
            }
        }
        calendar
    }

    fn insert(&mut self, day: NaiveDate, week: Week) {
        self.week_of.insert(day, week);
        self.days
            .entry(week)
            .and_modify(|range| {
                range.from = range.from.min(day);
                range.to = range.to.max(day);
            })
            .or_insert(DateRange { from: day, to: day });
    }

    /// The week `date` belongs to.
    pub fn week_of(&self, date: NaiveDate) -> Option<Week> {
        self.week_of.get(&date).copied()
    }

    /// The first and last day of `week`.
    pub fn days_of(&self, week: Week) -> Option<DateRange> {
        self.days.get(&week).copied()
    }

    /// The window of a night on `date` looking back `lookback_days`: from
    /// the first day of the calendar week that holds `date - lookback_days`,
    /// to `date`.
    pub fn window(&self, date: NaiveDate, lookback_days: u32) -> Result<DateRange, WindowError> {
        let back = date
            .checked_sub_signed(Duration::days(i64::from(lookback_days)))
            .unwrap_or(NaiveDate::MIN);
        let week = self
            .week_of(back)
            .ok_or(WindowError::NotInCalendar { date: back })?;
        let from = self.days[&week].from;
        Ok(DateRange { from, to: date })
    }

    /// Checks that `range` starts on the first day of a calendar week.
    pub fn check_start(&self, range: DateRange) -> Result<(), WindowError> {
        let week = self
            .week_of(range.from)
            .ok_or(WindowError::NotInCalendar { date: range.from })?;
        let first = self.days[&week].from;
        if first != range.from {
            return Err(WindowError::MidWeek {
                from: range.from,
                year: week.0,
                week: week.1,
                first,
            });
        }
        Ok(())
    }

    /// The weeks with a day in one of `ranges`.
    pub fn weeks_in(&self, ranges: &[DateRange]) -> BTreeSet<Week> {
        ranges
            .iter()
            .flat_map(|range| self.week_of.range(range.from..=range.to))
            .map(|(_, week)| *week)
            .collect()
    }

    /// The days of `weeks` as ranges, adjacent weeks merged, in date order.
    pub fn ranges_of(&self, weeks: &BTreeSet<Week>) -> Vec<DateRange> {
        let mut spans: Vec<DateRange> = weeks.iter().filter_map(|w| self.days_of(*w)).collect();
        spans.sort();
        let mut merged: Vec<DateRange> = Vec::new();
        for span in spans {
            match merged.last_mut() {
                Some(last) if last.to.succ_opt() >= Some(span.from) => {
                    last.to = last.to.max(span.to)
                }
                _ => merged.push(span),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// A retail calendar whose weeks start on Sunday, with 2026 a 53-week
    /// year: week 53 of 2026 runs from 2026-12-27 to 2027-01-02.
    fn calendar() -> Calendar {
        let mut calendar = Calendar::default();
        let mut date = day("2026-12-13");
        let mut week = (2026, 51);
        while date <= day("2027-01-16") {
            calendar.insert(date, week);
            date = date.succ_opt().unwrap();
            if date.format("%a").to_string() == "Sun" {
                week = if week == (2026, 53) {
                    (2027, 1)
                } else {
                    (week.0, week.1 + 1)
                };
            }
        }
        calendar
    }

    #[test]
    fn a_window_starts_on_the_first_day_of_the_week_of_the_lookback() {
        let calendar = calendar();
        // 2027-01-04 (Mon) - 7 = 2026-12-28 (Mon), in 2026 week 53.
        let window = calendar.window(day("2027-01-04"), 7).unwrap();
        assert_eq!(window.from, day("2026-12-27"));
        assert_eq!(window.to, day("2027-01-04"));
        let weeks: Vec<Week> = calendar.weeks_in(&[window]).into_iter().collect();
        assert_eq!(weeks, [(2026, 53), (2027, 1)]);
        assert_eq!(
            calendar.window(day("2027-01-04"), 0).unwrap().from,
            day("2027-01-03")
        );
        assert_eq!(
            calendar.window(day("2026-12-14"), 30),
            Err(WindowError::NotInCalendar {
                date: day("2026-11-14")
            })
        );
    }

    #[test]
    fn a_window_starting_mid_week_is_refused_naming_the_week() {
        let calendar = calendar();
        let range = DateRange {
            from: day("2026-12-29"),
            to: day("2027-01-04"),
        };
        let error = calendar.check_start(range).unwrap_err().to_string();
        assert!(
            error.contains("in the middle of 2026 week 53 (which starts on 2026-12-27)"),
            "{error}"
        );
        calendar
            .check_start(DateRange {
                from: day("2026-12-27"),
                ..range
            })
            .unwrap();
    }

    #[test]
    fn weeks_become_ranges_with_neighbours_merged() {
        let calendar = calendar();
        let weeks = [(2026, 51), (2026, 52), (2027, 2)].into_iter().collect();
        let ranges = calendar.ranges_of(&weeks);
        assert_eq!(
            ranges,
            [
                DateRange {
                    from: day("2026-12-13"),
                    to: day("2026-12-26")
                },
                DateRange {
                    from: day("2027-01-10"),
                    to: day("2027-01-16")
                }
            ]
        );
    }
}
