//! Clearing task instances (Airflow's "clear", the API's
//! `clearTaskInstances`): which tasks of which ended runs run again.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::dag::{TaskId, TaskState};
use super::history::{self, ClearRun, HistoryError, RunRecord};
use super::{Orchestrator, OrchestratorError};

/// Which task instances to clear.
#[derive(Debug, Clone, Default)]
pub struct ClearSelection {
    /// One run; else every ended run of `from..=to`.
    pub run_id: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// These tasks; every task when `None`.
    pub tasks: Option<Vec<TaskId>>,
    /// Only tasks that failed (or did not run because one upstream failed).
    pub only_failed: bool,
    /// With the tasks upstream of those selected, transitively.
    pub upstream: bool,
    /// With the tasks downstream of those selected, transitively.
    pub downstream: bool,
}

/// The tasks of one run that a clear queues again.
#[derive(Debug, Clone)]
pub struct Cleared {
    pub run: RunRecord,
    pub tasks: Vec<TaskId>,
}

impl Orchestrator {
    /// What clearing `selection` would queue again: per ended run, the
    /// selected tasks with what shares their work ([`history::requeued`]),
    /// skipped tasks left out. A run named by id must have ended; in a
    /// date range, active runs are left alone.
    pub fn plan_clear(
        &self,
        selection: &ClearSelection,
    ) -> Result<Vec<Cleared>, OrchestratorError> {
        let runs = match &selection.run_id {
            Some(run_id) => {
                let run = self.history.run(run_id)?.ok_or_else(|| {
                    let shown = crate::text::excerpt(run_id.as_bytes(), crate::text::VALUE_CHARS);
                    HistoryError::NoSuchRun(shown)
                })?;
                if !run.state.is_ended() {
                    return Err(HistoryError::ActiveRun {
                        date: run.logical_date,
                        run_id: run.run_id,
                    }
                    .into());
                }
                // An older run of the date would publish its conf over what
                // the latest run published.
                let date = Some(run.logical_date);
                let latest = self.history.ended_runs(&self.dag_id, date, date)?;
                match latest.first() {
                    Some(latest) if latest.run_id != run.run_id => {
                        return Err(OrchestratorError::NotLatest {
                            run_id: run.run_id,
                            latest: latest.run_id.clone(),
                        });
                    }
                    _ => {}
                }
                vec![run]
            }
            None => self
                .history
                .ended_runs(&self.dag_id, selection.from, selection.to)?,
        };
        let mut plan = Vec::new();
        for run in runs {
            let tasks = self.history.tasks(&run.run_id)?;
            let chosen: Vec<TaskId> = tasks
                .iter()
                .filter(|t| {
                    selection
                        .tasks
                        .as_ref()
                        .is_none_or(|only| only.contains(&t.task))
                })
                .filter(|t| !selection.only_failed || t.state.is_failure())
                .map(|t| t.task)
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let widened = widen(&chosen, selection.upstream, selection.downstream);
            let skipped = |task: &TaskId| {
                tasks
                    .iter()
                    .any(|t| t.task == *task && t.state == TaskState::Skipped)
            };
            let queued: Vec<TaskId> = history::requeued(&widened)
                .into_iter()
                .filter(|task| !skipped(task))
                .collect();
            plan.push(Cleared { run, tasks: queued });
        }
        Ok(plan)
    }

    /// Clears what `plan_clear` planned, in one transaction: each run is
    /// queued again with its tasks, each allowed another attempt.
    pub fn apply_clear(&self, plan: &[Cleared]) -> Result<(), OrchestratorError> {
        let runs: Vec<ClearRun<'_>> = plan
            .iter()
            .map(|cleared| ClearRun {
                run: &cleared.run,
                tasks: &cleared.tasks,
                conf: super::renewed_conf(&cleared.run, Default::default()),
            })
            .collect();
        self.history.clear(&runs, 1 + self.retries.retries)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// `tasks` with those upstream and/or downstream of them, transitively.
fn widen(tasks: &[TaskId], upstream: bool, downstream: bool) -> Vec<TaskId> {
    let mut all: BTreeSet<TaskId> = tasks.iter().copied().collect();
    loop {
        let before = all.len();
        for task in TaskId::all() {
            let ups = task.upstream();
            if upstream && all.contains(&task) {
                all.extend(ups.iter().copied());
            }
            if downstream && ups.iter().any(|up| all.contains(up)) {
                all.insert(task);
            }
        }
        if all.len() == before {
            return all.into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;

    #[test]
    fn widening_follows_the_dag_both_ways() {
        let transform = [TaskId::Transform];
        assert_eq!(widen(&transform, false, false), transform);
        assert_eq!(
            widen(&transform, false, true),
            [
                TaskId::Transform,
                TaskId::Quality,
                TaskId::Publish,
                TaskId::Notify
            ]
        );
        let up = widen(&[TaskId::WaitForRaw], true, false);
        assert_eq!(up.len(), Table::ALL.len() + 2, "{up:?}");
        assert!(up.contains(&TaskId::Extract(Table::Sales)));
        assert_eq!(
            widen(&[TaskId::WriteManifest], true, true).len(),
            TaskId::all().len()
        );
    }
}
