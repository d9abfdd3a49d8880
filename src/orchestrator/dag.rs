//! The pipeline as a DAG of tasks, and the states of runs and tasks.
//!
//! ```text
//! extract_store ───────┐
//! extract_product ─────┤
//! extract_calendar ────┼─▶ write_manifest ─▶ wait_for_raw ─▶ transform ─▶ quality ─▶ publish ─▶ notify
//! extract_sales ───────┤
//! extract_inventory ───┘
//! ```
//!
//! The five extractions run in parallel; the manifest is written once they
//! all succeeded (contract section 2: the manifest comes last). `notify`
//! runs whatever happened upstream. A run that does not extract (the files
//! come from another producer) has its extraction tasks `skipped`.

use std::fmt;
use std::str::FromStr;

use crate::schema::Table;

/// A task of the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskId {
    Extract(Table),
    WriteManifest,
    WaitForRaw,
    Transform,
    Quality,
    Publish,
    Notify,
}

impl TaskId {
    /// Every task, upstream first.
    pub fn all() -> Vec<TaskId> {
        let mut tasks: Vec<TaskId> = Table::ALL.into_iter().map(TaskId::Extract).collect();
        tasks.extend([
            TaskId::WriteManifest,
            TaskId::WaitForRaw,
            TaskId::Transform,
            TaskId::Quality,
            TaskId::Publish,
            TaskId::Notify,
        ]);
        tasks
    }

    /// The tasks that must be done before this one starts.
    pub fn upstream(self) -> Vec<TaskId> {
        match self {
            TaskId::Extract(_) => Vec::new(),
            TaskId::WriteManifest => Table::ALL.into_iter().map(TaskId::Extract).collect(),
            TaskId::WaitForRaw => vec![TaskId::WriteManifest],
            TaskId::Transform => vec![TaskId::WaitForRaw],
            TaskId::Quality => vec![TaskId::Transform],
            TaskId::Publish => vec![TaskId::Quality],
            TaskId::Notify => vec![TaskId::Publish],
        }
    }

    /// Whether this task extracts (skipped when a run does not extract).
    pub fn extracts(self) -> bool {
        matches!(self, TaskId::Extract(_) | TaskId::WriteManifest)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskId::Extract(table) => write!(f, "extract_{table}"),
            TaskId::WriteManifest => f.write_str("write_manifest"),
            TaskId::WaitForRaw => f.write_str("wait_for_raw"),
            TaskId::Transform => f.write_str("transform"),
            TaskId::Quality => f.write_str("quality"),
            TaskId::Publish => f.write_str("publish"),
            TaskId::Notify => f.write_str("notify"),
        }
    }
}

impl FromStr for TaskId {
    type Err = String;

    fn from_str(text: &str) -> Result<TaskId, String> {
        TaskId::all()
            .into_iter()
            .find(|task| task.to_string() == text)
            .ok_or_else(|| {
                let shown = crate::text::excerpt(text.as_bytes(), crate::text::VALUE_CHARS);
                format!("unknown task \"{shown}\"")
            })
    }
}

/// The state of a task instance (Airflow's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    Skipped,
    /// Not run because a task upstream failed.
    UpstreamFailed,
}

impl TaskState {
    /// The state's name in the history and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Skipped => "skipped",
            TaskState::UpstreamFailed => "upstream_failed",
        }
    }

    /// Whether the task will not change any more in this run.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::Skipped | TaskState::UpstreamFailed
        )
    }

    /// Whether downstream tasks may start after this one.
    pub fn lets_downstream_run(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Skipped)
    }

    /// Whether the task failed, or did not run because one upstream did.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }
}

impl TaskState {
    const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::Skipped,
        TaskState::UpstreamFailed,
    ];
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(text: &str) -> Result<TaskState, String> {
        parse_name(&TaskState::ALL, TaskState::as_str, text, "task state")
    }
}

/// The state of a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    /// The state's name in the history and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run has ended (a success or a failure).
    pub fn is_ended(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

impl FromStr for RunState {
    type Err = String;

    fn from_str(text: &str) -> Result<RunState, String> {
        let all = [
            RunState::Queued,
            RunState::Running,
            RunState::Success,
            RunState::Failed,
        ];
        parse_name(&all, RunState::as_str, text, "run state")
    }
}

/// The one of `all` whose `name` is `text`; the error lists the names.
pub fn parse_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    text: &str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|v| name(*v) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            let shown = crate::text::excerpt(text.as_bytes(), crate::text::VALUE_CHARS);
            format!("unknown {what} \"{shown}\" ({})", names.join(", "))
        })
}

/// What to do next with a task, given the states of the tasks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Everything upstream succeeded or was skipped.
    Ready,
    /// Something upstream is still to run.
    Waiting,
    /// Something upstream failed.
    Blocked,
}

/// The readiness of `task` given `state_of` each task. `notify` is ready
/// once everything upstream finished, failed or not.
pub fn readiness(task: TaskId, state_of: impl Fn(TaskId) -> TaskState) -> Readiness {
    if task == TaskId::Notify {
        let all_done = TaskId::all()
            .into_iter()
            .filter(|t| *t != TaskId::Notify)
            .all(|t| state_of(t).is_finished());
        return if all_done {
            Readiness::Ready
        } else {
            Readiness::Waiting
        };
    }
    let upstream: Vec<TaskState> = task.upstream().into_iter().map(&state_of).collect();
    if upstream
        .iter()
        .any(|s| matches!(s, TaskState::Failed | TaskState::UpstreamFailed))
    {
        Readiness::Blocked
    } else if upstream.iter().all(|s| s.lets_downstream_run()) {
        Readiness::Ready
    } else {
        Readiness::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn task_names_round_trip() {
        for task in TaskId::all() {
            assert_eq!(task.to_string().parse::<TaskId>().unwrap(), task);
        }
        assert_eq!(TaskId::all().len(), 11);
        assert!("extract_nothing".parse::<TaskId>().is_err());
    }

    #[test]
    fn extractions_gate_the_manifest_and_failures_block_downstream() {
        let mut states: HashMap<TaskId, TaskState> = TaskId::all()
            .into_iter()
            .map(|t| (t, TaskState::Queued))
            .collect();
        let of = |states: &HashMap<TaskId, TaskState>| {
            let states = states.clone();
            move |t: TaskId| states[&t]
        };
        assert_eq!(
            readiness(TaskId::Extract(Table::Sales), of(&states)),
            Readiness::Ready
        );
        assert_eq!(
            readiness(TaskId::WriteManifest, of(&states)),
            Readiness::Waiting
        );
        for table in Table::ALL {
            states.insert(TaskId::Extract(table), TaskState::Success);
        }
        assert_eq!(
            readiness(TaskId::WriteManifest, of(&states)),
            Readiness::Ready
        );
        states.insert(TaskId::WriteManifest, TaskState::Success);
        states.insert(TaskId::WaitForRaw, TaskState::Failed);
        assert_eq!(
            readiness(TaskId::Transform, of(&states)),
            Readiness::Blocked
        );
        assert_eq!(readiness(TaskId::Notify, of(&states)), Readiness::Waiting);
        for task in [TaskId::Transform, TaskId::Quality, TaskId::Publish] {
            states.insert(task, TaskState::UpstreamFailed);
        }
        assert_eq!(readiness(TaskId::Notify, of(&states)), Readiness::Ready);
    }

    #[test]
    fn skipped_extractions_let_the_sensor_run() {
        let states: HashMap<TaskId, TaskState> = TaskId::all()
            .into_iter()
            .map(|t| {
                (
                    t,
                    if t.extracts() {
                        TaskState::Skipped
                    } else {
                        TaskState::Queued
                    },
                )
            })
            .collect();
        assert_eq!(
            readiness(TaskId::WaitForRaw, |t| states[&t]),
            Readiness::Ready
        );
    }
}
