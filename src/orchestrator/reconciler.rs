//! The scheduled reconciliation (`[serve] reconcile_schedule`): on its own
//! cron, the daemon compares the source and the lake over the last
//! `reconcile_days` days ([`crate::reconcile`]), republishes the weeks that
//! drifted when `reconcile_repair` is set, and notifies when some did (or
//! when it could not compare). A fire missed while the daemon was down is
//! not caught up: the next one compares the same days and more.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use futures::FutureExt;

use super::notify::{Event, Notification};
use super::schedule::{Schedule, ScheduleError};
use super::{Orchestrator, parse_schedule};
use crate::config::ServeConfig;
use crate::pipeline::{PipelineError, ReconcileReport};
use crate::window::DateRange;

/// When the reconciliation runs, and whether one is running.
#[derive(Debug)]
pub struct Reconciler {
    schedule: Schedule,
    /// Fires up to this time were handled.
    handled: Mutex<DateTime<Utc>>,
    running: AtomicBool,
    days: u32,
    repair: bool,
}

impl Reconciler {
    /// The reconciliation `serve` sets up, handled up to `now`; `None`
    /// when `reconcile_schedule` is empty.
    pub fn new(
        serve: &ServeConfig,
        timezone: Tz,
        now: DateTime<Utc>,
    ) -> Result<Option<Reconciler>, ScheduleError> {
        let schedule = parse_schedule("reconcile_schedule", &serve.reconcile_schedule, timezone)?;
        Ok(schedule.map(|schedule| Reconciler {
            schedule,
            handled: Mutex::new(now),
            running: AtomicBool::new(false),
            days: serve.reconcile_days,
            repair: serve.reconcile_repair,
        }))
    }

    /// The next fire after `now`.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.next_after(now)
    }

    /// Whether the schedule fired since the fires last handled (at first,
    /// since the daemon's start).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        let handled = self.handled.lock().unwrap_or_else(|e| e.into_inner());
        self.schedule
            .next_after(*handled)
            .is_some_and(|fire| fire <= now)
    }

    /// [`Reconciler::is_due`], marking the fires up to `now` handled.
    pub fn take_due(&self, now: DateTime<Utc>) -> bool {
        let fired = self.is_due(now);
        let mut handled = self.handled.lock().unwrap_or_else(|e| e.into_inner());
        *handled = (*handled).max(now);
        fired
    }
}

/// Weeks a drift notification lists; the rest are counted.
const WEEKS_SHOWN: usize = 20;

/// Marks the reconciliation as not running when dropped, even by a panic.
struct Running(std::sync::Arc<Orchestrator>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(reconciler) = &self.0.reconciler {
            reconciler.running.store(false, Ordering::SeqCst);
        }
    }
}

impl Orchestrator {
    /// Starts the reconciliation when its schedule fired and none is
    /// running (one that lasts past the next fire is not doubled). While
    /// the DAG is paused or a run is active, a fire waits: a reconciliation
    /// beside a night's publication would compare a moving lake.
    pub(super) fn start_due_reconcile(self: &std::sync::Arc<Self>) {
        let Some(reconciler) = &self.reconciler else {
            return;
        };
        let now = self.clock.now();
        if !reconciler.is_due(now) {
            return;
        }
        let paused = self.is_paused().unwrap_or(true);
        let active = self.history.active_runs(&self.dag_id);
        if paused || active.map_or(true, |runs| !runs.is_empty()) {
            return;
        }
        if !reconciler.take_due(now) || reconciler.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let running = Running(std::sync::Arc::clone(self));
        tokio::spawn(async move {
            let reconciled = std::panic::AssertUnwindSafe(running.0.reconcile()).catch_unwind();
            if let Err(panic) = reconciled.await {
                tracing::error!(
                    "the reconciliation panicked: {}",
                    crate::text::panic_message(&panic)
                );
            }
            drop(running);
        });
    }

    /// Reconciles the last `reconcile_days` days up to yesterday (in the
    /// schedules' time zone), repairing when `reconcile_repair` is set;
    /// notifies a drift or a failure. `None` when no reconciliation is
    /// configured.
    pub async fn reconcile(&self) -> Option<Result<ReconcileReport, PipelineError>> {
        let reconciler = self.reconciler.as_ref()?;
        let now = self.clock.now();
        let to = self.yesterday(now);
        let from = to
            .checked_sub_days(Days::new(u64::from(reconciler.days.saturating_sub(1))))
            .unwrap_or(to);
        tracing::info!("reconciling the source and the lake from {from} to {to}");
        let result = self
            .pipeline
            .reconcile(DateRange { from, to }, reconciler.repair)
            .await;
        if let Some(event) = reconcile_event(&result, DateRange { from, to })
            .filter(|event| self.notifier.wants(event))
        {
            let notification = Notification {
                dag_id: self.dag_id.clone(),
                run_id: format!("reconcile__{}", now.format("%Y-%m-%dT%H:%M:%SZ")),
                logical_date: to,
                event,
            };
            if let Err(e) = self.notifier.send(&notification).await {
                tracing::warn!("the reconciliation's notification failed: {e}");
            }
        }
        Some(result)
    }
}

/// What a reconciliation of `range` tells: a drift, a failure, or nothing
/// (logged either way).
fn reconcile_event(
    result: &Result<ReconcileReport, PipelineError>,
    range: DateRange,
) -> Option<Event> {
    let DateRange { from, to } = range;
    match result {
        Ok(report) if report.comparison.drifted.is_empty() => {
            tracing::info!("reconciled {from} to {to}: no week drifted");
            None
        }
        Ok(report) => {
            tracing::warn!("{}", report.to_string().trim_end());
            let drifted = &report.comparison.drifted;
            let mut weeks: Vec<String> = drifted
                .iter()
                .take(WEEKS_SHOWN)
                .map(ToString::to_string)
                .collect();
            if drifted.len() > WEEKS_SHOWN {
                weeks.push(format!("… and {} more weeks", drifted.len() - WEEKS_SHOWN));
            }
            Some(Event::Drift {
                from,
                to,
                weeks,
                repaired: report.repaired.is_some(),
            })
        }
        Err(e) => {
            tracing::warn!("the reconciliation of {from} to {to} failed: {e}");
            Some(Event::ReconcileFailure {
                from,
                to,
                error: crate::text::clip(&e.to_string(), crate::text::MESSAGE_CHARS),
            })
        }
    }
}
