//! Cron schedules in an IANA time zone, and what is due when the scheduler
//! wakes up (the catch-up policy).
//!
//! Two schedules drive a day, like the original pipeline's two EventBridge
//! rules: `extract` (default 02:00) starts a run with the extraction tasks,
//! `process` (default 03:00) is the earliest time its sensor and the tasks
//! after it may start. The logical date of a scheduled run is the day
//! before the day it runs (in the schedule's time zone).
//!
//! Catch-up: when the daemon was down over several fire times, only the
//! latest missed one runs, unless `catchup = true`, which runs each missed
//! date in order. A daemon that starts for the first time does not run
//! fire times from before it started.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// At most this many missed fire times are considered in one wake-up.
const MAX_MISSED: usize = 1000;

/// A schedule that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("`serve.{key}` = {expr:?} is not a cron expression: {reason}")]
    Cron {
        key: &'static str,
        expr: String,
        reason: String,
    },
    #[error("`serve.timezone` = {0:?} is not an IANA time zone (e.g. \"Europe/Paris\", \"UTC\")")]
    TimeZone(String),
}

/// One cron expression in one time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses `expr` (5 fields, or 6 with seconds) for the config key `key`.
    pub fn parse(key: &'static str, expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let cron = expr.parse::<Cron>().map_err(|e| ScheduleError::Cron {
            key,
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Schedule { cron, tz })
    }

    /// The first fire time strictly after `time`.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&time.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The fire times in `(after, upto]`, oldest first.
    pub fn fires_between(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut time = after;
        while let Some(next) = self.next_after(time).filter(|next| *next <= upto) {
            fires.push(next);
            if fires.len() > MAX_MISSED {
                fires.remove(0);
            }
            time = next;
        }
        fires
    }

    /// The logical date of a run fired at `fire`: the day before, in the
    /// schedule's time zone.
    pub fn logical_date(&self, fire: DateTime<Utc>) -> NaiveDate {
        let day = fire.with_timezone(&self.tz).date_naive();
        day.checked_sub_days(Days::new(1)).unwrap_or(day)
    }
}

/// Parses an IANA time zone name.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

/// The two schedules of the DAG; either may be off.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub extract: Option<Schedule>,
    pub process: Option<Schedule>,
    /// Run every missed date rather than only the latest.
    pub catchup: bool,
}

/// The last fire time each schedule has handled (kept in the run history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub extract: DateTime<Utc>,
    pub process: DateTime<Utc>,
}

impl Handled {
    /// Nothing before `now` is due.
    pub fn at(now: DateTime<Utc>) -> Handled {
        Handled {
            extract: now,
            process: now,
        }
    }
}

/// A scheduled run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub logical_date: NaiveDate,
    /// Whether the run extracts (the extract schedule fired) or only
    /// processes files that another producer drops.
    pub extract: bool,
    /// The sensor and what follows wait for this time.
    pub process_after: Option<DateTime<Utc>>,
}

impl Schedules {
    /// The runs due at `now`, oldest first, given what was `handled`;
    /// and what is handled after them.
    pub fn due(&self, handled: Handled, now: DateTime<Utc>) -> (Vec<Due>, Handled) {
        let mut due: Vec<Due> = Vec::new();
        if let Some(extract) = &self.extract {
            for fire in self.missed(extract, handled.extract, now) {
                due.push(Due {
                    logical_date: extract.logical_date(fire),
                    extract: true,
                    process_after: self.process.as_ref().and_then(|p| p.next_after(fire)),
                });
            }
        }
        if let Some(process) = &self.process {
            for fire in self.missed(process, handled.process, now) {
                let logical_date = process.logical_date(fire);
                if !due.iter().any(|d| d.logical_date == logical_date) {
                    due.push(Due {
                        logical_date,
                        extract: false,
                        process_after: Some(fire),
                    });
                }
            }
        }
        due.sort_by_key(|d| d.logical_date);
        let handled = Handled {
            extract: handled.extract.max(now),
            process: handled.process.max(now),
        };
        (due, handled)
    }

    /// The next time something may be due after `now`.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [&self.extract, &self.process]
            .into_iter()
            .flatten()
            .filter_map(|s| s.next_after(now))
            .min()
    }

    fn missed(
        &self,
        schedule: &Schedule,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = schedule.fires_between(after, now);
        if !self.catchup && fires.len() > 1 {
            fires.drain(..fires.len() - 1);
        }
        fires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn schedules(tz: &str, catchup: bool) -> Schedules {
        let tz = time_zone(tz).unwrap();
        Schedules {
            extract: Some(Schedule::parse("extract_schedule", "0 2 * * *", tz).unwrap()),
            process: Some(Schedule::parse("process_schedule", "0 3 * * *", tz).unwrap()),
            catchup,
        }
    }

    #[test]
    fn the_extract_fire_creates_yesterdays_run_that_processes_at_three() {
        let s = schedules("UTC", false);
        let handled = Handled::at(utc("2026-03-10T01:59:00Z"));
        let (due, handled) = s.due(handled, utc("2026-03-10T02:00:00Z"));
        assert_eq!(
            due,
            vec![Due {
                logical_date: date("2026-03-09"),
                extract: true,
                process_after: Some(utc("2026-03-10T03:00:00Z")),
            }]
        );
        // At 03:00 the process fire finds its date already planned: nothing new.
        let (due, _) = s.due(handled, utc("2026-03-10T03:00:00Z"));
        assert_eq!(due.len(), 1);
        assert!(!due[0].extract, "the process fire alone never extracts");
    }

    #[test]
    fn fire_times_follow_the_time_zone_across_daylight_saving() {
        let s = schedules("Europe/Paris", false);
        // 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
        let fires = s
            .extract
            .as_ref()
            .unwrap()
            .fires_between(utc("2026-03-27T12:00:00Z"), utc("2026-03-31T12:00:00Z"));
        let hours: Vec<String> = fires
            .iter()
            .map(|f| f.format("%d %H:%M").to_string())
            .collect();
        // 29 March has no 02:00 in Paris (clocks jump from 02:00 to 03:00).
        assert!(hours.starts_with(&["28 01:00".to_string()]), "{hours:?}");
        assert_eq!(hours.last().unwrap(), "31 00:00");
        assert_eq!(
            s.extract.as_ref().unwrap().logical_date(fires[0]),
            date("2026-03-27")
        );
    }

    #[test]
    fn without_catchup_only_the_latest_missed_date_runs() {
        let s = schedules("UTC", false);
        let down = Handled::at(utc("2026-03-01T12:00:00Z"));
        let (due, handled) = s.due(down, utc("2026-03-05T12:00:00Z"));
        let dates: Vec<_> = due.iter().map(|d| d.logical_date).collect();
        assert_eq!(dates, vec![date("2026-03-04")]);
        assert_eq!(handled, Handled::at(utc("2026-03-05T12:00:00Z")));
    }

    #[test]
    fn with_catchup_every_missed_date_runs_in_order() {
        let s = schedules("UTC", true);
        let down = Handled::at(utc("2026-03-01T12:00:00Z"));
        let (due, _) = s.due(down, utc("2026-03-05T12:00:00Z"));
        let dates: Vec<_> = due.iter().map(|d| d.logical_date).collect();
        assert_eq!(
            dates,
            ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"].map(date)
        );
        assert!(due.iter().all(|d| d.extract));
    }

    #[test]
    fn with_extraction_off_the_process_fire_creates_a_processing_run() {
        let mut s = schedules("UTC", false);
        s.extract = None;
        let (due, _) = s.due(
            Handled::at(utc("2026-03-10T00:00:00Z")),
            utc("2026-03-10T03:00:00Z"),
        );
        assert_eq!(
            due,
            vec![Due {
                logical_date: date("2026-03-09"),
                extract: false,
                process_after: Some(utc("2026-03-10T03:00:00Z")),
            }]
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_the_key() {
        let err = Schedule::parse("extract_schedule", "0 25 * * *", chrono_tz::UTC).unwrap_err();
        assert!(err.to_string().contains("serve.extract_schedule"), "{err}");
        let err = time_zone("Mars/Olympus").unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }
}
