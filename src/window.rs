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
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
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
    #[error("the calendar table is empty, so no window can be placed around {date}")]
    NotInCalendar { date: NaiveDate },
    #[error(
        "the window starts on {from}, but {year} week {week} has days from {first}: that week would be recomputed from part of its rows; start the window on {first}"
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
    days: BTreeMap<Week, BTreeSet<NaiveDate>>,
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
        if let Some(before) = self.week_of.insert(day, week)
            && let Some(days) = self.days.get_mut(&before)
        {
            days.remove(&day);
        }
        self.days.entry(week).or_default().insert(day);
    }

    /// The week `date` belongs to.
    pub fn week_of(&self, date: NaiveDate) -> Option<Week> {
        self.week_of.get(&date).copied()
    }

    /// The first and last day of `week`.
    pub fn days_of(&self, week: Week) -> Option<DateRange> {
        let days = self.days.get(&week)?;
        Some(DateRange {
            from: *days.first()?,
            to: *days.last()?,
        })
    }

    /// The window of a night on `date` looking back `lookback_days`: from
    /// the first day of the calendar week that holds `date - lookback_days`
    /// (the last calendar day before it, when the calendar skips that
    /// day; the calendar's first week, when it starts later), to `date`. When a week the window touches has days before
    /// that (a calendar whose weeks are not contiguous), the window starts
    /// on the earliest of them, so that every week it touches is whole.
    pub fn window(&self, date: NaiveDate, lookback_days: u32) -> Result<DateRange, WindowError> {
        let back = date
            .checked_sub_signed(Duration::days(i64::from(lookback_days)))
            .unwrap_or(NaiveDate::MIN);
        let (_, week) = self
            .week_of
            .range(..=back)
            .next_back()
            .or_else(|| self.week_of.iter().next())
            .ok_or(WindowError::NotInCalendar { date: back })?;
        let mut from = self.days[week].first().copied().unwrap_or(back);
        loop {
            let earliest = self
                .weeks_in(&[DateRange { from, to: date }])
                .iter()
                .filter_map(|week| self.days[week].first().copied())
                .min()
                .unwrap_or(from);
            if earliest >= from {
                return Ok(DateRange { from, to: date });
            }
            from = earliest;
        }
    }

    /// Checks that every week with a day in `ranges` is whole in them: no
    /// day of it lies before the end of the last range outside every range
    /// (days after it are the days still to come of an open week).
    pub fn check_whole_weeks(&self, ranges: &[DateRange]) -> Result<(), WindowError> {
        let Some(end) = ranges.iter().map(|range| range.to).max() else {
            return Ok(());
        };
        for week in self.weeks_in(ranges) {
            let days = &self.days[&week];
            let missing = days
                .iter()
                .find(|day| **day <= end && !ranges.iter().any(|range| range.contains(**day)));
            if let Some(&first) = missing {
                let from = ranges
                    .iter()
                    .filter(|range| range.from > first)
                    .map(|range| range.from)
                    .min()
                    .unwrap_or(first);
                return Err(WindowError::MidWeek {
                    from,
                    year: week.0,
                    week: week.1,
                    first,
                });
            }
        }
        Ok(())
    }

    /// The weeks with a day in one of `ranges`.
    pub fn weeks_in(&self, ranges: &[DateRange]) -> BTreeSet<Week> {
        ranges
            .iter()
            .filter(|range| range.from <= range.to)
            .flat_map(|range| self.week_of.range(range.from..=range.to))
            .map(|(_, week)| *week)
            .collect()
    }

    /// The days of `weeks`, and of every week sharing a span with them, as
    /// ranges, neighbours merged, in date order; a range ends on `until`
    /// at the latest. The weeks are whole in the ranges (see
    /// [`Calendar::check_whole_weeks`]).
    pub fn ranges_of(&self, weeks: &BTreeSet<Week>, until: NaiveDate) -> Vec<DateRange> {
        let mut weeks = weeks.clone();
        loop {
            let ranges = self.spans(&weeks, until);
            let touched = self.weeks_in(&ranges);
            if touched.is_subset(&weeks) {
                return ranges;
            }
            weeks.extend(touched);
        }
    }

    /// The spans (first to last day) of `weeks`, cut at `until`, merged.
    fn spans(&self, weeks: &BTreeSet<Week>, until: NaiveDate) -> Vec<DateRange> {
        let mut spans: Vec<DateRange> = weeks
            .iter()
            .filter_map(|week| self.days_of(*week))
            .filter(|span| span.from <= until)
            .map(|span| DateRange {
                to: span.to.min(until),
                ..span
            })
            .collect();
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
        // Before the calendar's first day: its first week.
        assert_eq!(
            calendar.window(day("2026-12-14"), 30).unwrap().from,
            day("2026-12-13")
        );
        assert!(Calendar::default().window(day("2026-12-14"), 3).is_err());
    }

    #[test]
    fn a_window_starting_mid_week_is_refused_naming_the_week() {
        let calendar = calendar();
        let range = DateRange {
            from: day("2026-12-29"),
            to: day("2027-01-04"),
        };
        let error = calendar
            .check_whole_weeks(&[range])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("starts on 2026-12-29, but 2026 week 53 has days from 2026-12-27"),
            "{error}"
        );
        calendar
            .check_whole_weeks(&[DateRange {
                from: day("2026-12-27"),
                ..range
            }])
            .unwrap();
    }

    #[test]
    fn weeks_become_ranges_with_neighbours_merged() {
        let calendar = calendar();
        let weeks = [(2026, 51), (2026, 52), (2027, 2)].into_iter().collect();
        let ranges = calendar.ranges_of(&weeks, day("2027-12-31"));
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

    /// A calendar that numbers weeks by the date's year and ISO week, so
    /// its week (2025, 1) holds 2025-01-01 to 01-05 and 2025-12-29 to 12-31.
    fn split_weeks() -> Calendar {
        use chrono::Datelike;
        let mut calendar = Calendar::default();
        let mut date = day("2024-12-20");
        while date <= day("2026-01-10") {
            calendar.insert(date, (date.year(), date.iso_week().week() as i32));
            date = date.succ_opt().unwrap();
        }
        calendar
    }

    #[test]
    fn weeks_that_are_not_contiguous_are_recomputed_whole() {
        let calendar = split_weeks();
        // 2026-01-02 - 7 = 2025-12-26, in (2025, 52); the window also
        // touches (2025, 1) from 12-29, whose days start on 2025-01-01.
        let window = calendar.window(day("2026-01-02"), 7).unwrap();
        assert_eq!(window.from, day("2025-01-01"), "{window}");
        calendar.check_whole_weeks(&[window]).unwrap();
        let partial = DateRange {
            from: day("2025-12-22"),
            to: day("2026-01-02"),
        };
        let error = calendar
            .check_whole_weeks(&[partial])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("2025 week 1 has days from 2025-01-01"),
            "{error}"
        );
        // A repair of (2025, 1) covers both its parts and the weeks between.
        let ranges = calendar.ranges_of(&[(2025, 1)].into_iter().collect(), day("2026-01-10"));
        calendar.check_whole_weeks(&ranges).unwrap();
        assert_eq!(ranges[0].from, day("2025-01-01"));
    }

    #[test]
    fn a_lookback_onto_a_day_the_calendar_skips_takes_the_day_before() {
        let mut calendar = calendar();
        calendar.days.values_mut().for_each(|days| {
            days.remove(&day("2026-12-25"));
        });
        calendar.week_of.remove(&day("2026-12-25"));
        let window = calendar.window(day("2027-01-01"), 7).unwrap();
        assert_eq!(window.from, day("2026-12-20"));
    }

    #[test]
    fn the_open_week_of_the_last_range_may_go_on_after_it() {
        let calendar = calendar();
        let night = DateRange {
            from: day("2026-12-27"),
            to: day("2026-12-29"),
        };
        calendar.check_whole_weeks(&[night]).unwrap();
    }
}
