//! The run history as text, for `shelfline runs list`, `runs show` and the
//! progress lines of `backfill` and `runs retry`.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::dag::{RunState, TaskId, TaskState};
use super::history::{AttemptRecord, RunRecord, TaskRecord};
use crate::text;

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => {
            format!("{:.1}s", (end - start).num_milliseconds() as f64 / 1000.0)
        }
        _ => "-".to_string(),
    }
}

/// `key=value` pairs of a JSON object of figures.
fn figures(value: &Value) -> String {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// What an unfinished run is doing, in a line: queued, the task it runs,
/// the files its sensor still waits for and when it gives up, or the retry
/// it waits for. `None` once it has ended.
pub fn progress(run: &RunRecord, tasks: &[TaskRecord]) -> Option<String> {
    match run.state {
        RunState::Success | RunState::Failed => return None,
        RunState::Queued => return Some("queued".to_string()),
        RunState::Running => {}
    }
    let busy = tasks
        .iter()
        .find(|t| matches!(t.state, TaskState::Running | TaskState::UpForRetry));
    let Some(task) = busy else {
        return Some("running".to_string());
    };
    let missing = task.figures["missing"].as_array();
    Some(match (task.state, missing) {
        (TaskState::Running, Some(missing)) if task.task == TaskId::WaitForRaw => {
            let missing: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
            let until = task.figures["gives_up_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            format!(
                "waiting for raw files, missing {}; gives up at {} UTC",
                missing.join(", "),
                time(until)
            )
        }
        (TaskState::Running, _) => format!("running {}", task.task),
        _ => format!(
            "{} failed (try {}/{}), next try at {} UTC: {}",
            task.task,
            task.try_number,
            task.max_tries,
            time(task.next_try_at),
            text::clip(task.error.as_deref().unwrap_or_default(), 300)
        ),
    })
}

/// One line per run, newest first.
pub fn runs_table(runs: &[RunRecord], total: u64) -> String {
    let mut text = format!(
        "{:<5} {:<40} {:<12} {:<10} {:<8} {:<19} {:>9}\n",
        "#", "RUN ID", "DATE", "TYPE", "STATE", "STARTED", "DURATION"
    );
    for run in runs {
        let _ = writeln!(
            text,
            "{:<5} {:<40} {:<12} {:<10} {:<8} {:<19} {:>9}",
            run.id,
            run.run_id,
            run.logical_date,
            run.run_type.as_str(),
            run.state.as_str(),
            time(run.start_date),
            duration(run.start_date, run.end_date),
        );
    }
    let _ = writeln!(text, "({} of {total} runs)", runs.len());
    text
}

/// A run with its tasks and every attempt.
pub fn run_details(run: &RunRecord, tasks: &[TaskRecord], attempts: &[AttemptRecord]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "run {} (#{}): {}",
        run.run_id,
        run.id,
        run.state.as_str()
    );
    let _ = writeln!(
        text,
        "  dag {}, logical date {}, {}, {}",
        run.dag_id,
        run.logical_date,
        run.run_type.as_str(),
        if run.extract {
            "extracts"
        } else {
            "processes files already in the raw zone"
        }
    );
    let _ = writeln!(
        text,
        "  queued {}, started {}, ended {}",
        time(Some(run.created_at)),
        time(run.start_date),
        time(run.end_date)
    );
    if let Some(after) = run.process_after {
        let _ = writeln!(text, "  sensor not before {}", time(Some(after)));
    }
    if run.conf.as_object().is_some_and(|c| !c.is_empty()) {
        let _ = writeln!(text, "  conf {}", run.conf);
    }
    let _ = writeln!(text, "tasks:");
    for task in tasks {
        let _ = writeln!(
            text,
            "  {:<18} {:<15} try {}/{} {:>8}  {}",
            task.task.to_string(),
            task.state.as_str(),
            task.try_number,
            task.max_tries,
            duration(task.start_date, task.end_date),
            figures(&task.figures)
        );
        if let Some(next) = task.next_try_at {
            let _ = writeln!(text, "  {:<18} next try at {}", "", time(Some(next)));
        }
        if let Some(error) = task
            .error
            .as_deref()
            .filter(|_| !task.state.lets_downstream_run())
        {
            let _ = writeln!(text, "  {:<18} error: {error}", "");
        }
    }
    let _ = writeln!(text, "attempts:");
    for attempt in attempts {
        let _ = writeln!(
            text,
            "  {:<18} #{} {} → {} {}{}",
            attempt.task.to_string(),
            attempt.try_number,
            time(Some(attempt.start_date)),
            time(attempt.end_date),
            attempt.state.as_str(),
            attempt
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    text
}
