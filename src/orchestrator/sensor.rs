//! `wait_for_raw`: waits until a date's raw set is complete (contract
//! section 2: five files, one format each, matching the manifest when
//! there is one), checking every poke interval.
//!
//! The rule for timeout versus retry: the timeout counts from the sensor's
//! first check, across attempts and restarts. A raw set still incomplete at
//! the timeout fails the run at once, without retry, and the notification
//! lists the missing files. A check that fails for another reason (storage
//! unreachable, a file that does not match its manifest) is an ordinary
//! task failure and is retried like any task.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::raw::{self, CheckReport, NamedFiles, RawError};
use crate::storage::Location;

use super::clock::Clock;

/// How the sensor checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorPolicy {
    pub poke_interval: Duration,
    pub timeout: Duration,
    /// The longest CSV row of a raw file (`max_row_bytes`).
    pub max_row_bytes: usize,
}

/// Why the sensor gave up.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "raw set for {date} still incomplete after {}s: missing {}",
        .waited.as_secs(), .missing.join(", ")
    )]
    Timeout {
        date: NaiveDate,
        missing: Vec<String>,
        waited: Duration,
    },
    #[error(transparent)]
    Raw(#[from] RawError),
}

/// Checks the raw set of `date` (with the files a trigger `named` in place
/// of the layout's) until it is complete or `first_check + timeout` has
/// passed; after each check that finds files missing, tells `waiting`
/// which, and when the sensor gives up.
pub async fn wait_for_raw(
    clock: &dyn Clock,
    raw: &Location,
    date: NaiveDate,
    named: &NamedFiles,
    policy: SensorPolicy,
    first_check: DateTime<Utc>,
    waiting: &mut (dyn FnMut(&[String], DateTime<Utc>) + Send),
) -> Result<CheckReport, SensorError> {
    let deadline = first_check + chrono::Duration::from_std(policy.timeout).unwrap_or_default();
    loop {
        let missing = match poke(raw, date, named, policy.max_row_bytes).await? {
            Ok(report) => return Ok(report),
            Err(missing) => missing,
        };
        let now = clock.now();
        if now >= deadline {
            return Err(SensorError::Timeout {
                date,
                missing,
                waited: (now - first_check).to_std().unwrap_or_default(),
            });
        }
        tracing::info!(
            "raw set for {date} incomplete (missing {}); next check in {:?}",
            missing.join(", "),
            policy.poke_interval
        );
        waiting(&missing, deadline);
        let until_deadline = (deadline - now).to_std().unwrap_or_default();
        clock.sleep(policy.poke_interval.min(until_deadline)).await;
    }
}

/// One check: the report, or the files still missing.
async fn poke(
    raw: &Location,
    date: NaiveDate,
    named: &NamedFiles,
    max_row_bytes: usize,
) -> Result<Result<CheckReport, Vec<String>>, RawError> {
    match raw::check(raw, date, named, max_row_bytes).await {
        Ok(report) => Ok(Ok(report)),
        Err(RawError::Missing { missing, .. }) => Ok(Err(missing)),
        Err(e) => Err(e),
    }
}
