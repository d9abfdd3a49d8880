//! What each task of the DAG does: thin calls into the pipeline's stages,
//! returning the figures the history keeps (rows, bytes) and the output
//! downstream tasks need.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::extract::ExtractError;
use crate::lake::{LakeError, PublishOptions};
use crate::pipeline::PipelineError;
use crate::raw::{ManifestEntry, Window};
use crate::schema::Table;
use crate::transform::{Checked, Staged, TransformError};
use crate::window::DateRange;

use super::Orchestrator;
use super::dag::{TaskId, TaskState};
use super::history::{RunRecord, TaskRecord};
use super::notify::{Event, Notification};
use super::sensor::{self, SensorError};

/// The staged output that `transform`, `quality` and `publish` hand on to
/// each other within one process.
#[derive(Default)]
pub enum Stage {
    #[default]
    Empty,
    Staged(Box<Staged>),
    Checked(Box<Checked>),
}

/// A failed attempt.
#[derive(Debug)]
pub struct TaskError {
    pub message: String,
    /// Whether another attempt may help (a data-quality verdict will not).
    pub retryable: bool,
    /// The staged output this task needs is gone (the process restarted):
    /// `transform` must run again first.
    pub stage_lost: bool,
    /// Kept in the history with the failure (e.g. the missing files).
    pub output: Value,
}

impl TaskError {
    fn retryable(error: impl std::fmt::Display) -> TaskError {
        TaskError {
            // What the history keeps, the API serves and e-mails carry.
            message: crate::text::clip(&error.to_string(), crate::text::MESSAGE_CHARS),
            retryable: true,
            stage_lost: false,
            output: Value::Null,
        }
    }

    fn fatal(error: impl std::fmt::Display) -> TaskError {
        TaskError {
            retryable: false,
            ..TaskError::retryable(error)
        }
    }

    /// An attempt that panicked: a bug, or input nothing should let
    /// through; the same input would panic again, so no retry.
    pub fn panicked(task: TaskId, panic: &Box<dyn std::any::Any + Send>) -> TaskError {
        TaskError::fatal(format!(
            "{task} panicked: {}",
            crate::text::panic_message(panic)
        ))
    }

    fn stage_lost(task: TaskId) -> TaskError {
        TaskError {
            stage_lost: true,
            ..TaskError::retryable(format!(
                "{task} needs the staged output of `transform`, which was lost when the process stopped; computing it again"
            ))
        }
    }
}

/// What a successful attempt leaves: figures and output.
pub type Done = (Value, Value);

/// Runs one attempt of `task` for `run`.
pub async fn run(
    orchestrator: &Orchestrator,
    run: &RunRecord,
    task: TaskId,
    stage: &Mutex<Stage>,
) -> Result<Done, TaskError> {
    let pipeline = &orchestrator.pipeline;
    let date = run.logical_date;
    match task {
        TaskId::Extract(table) => {
            let lookback = super::conf::lookback(&run.conf).map_err(TaskError::fatal)?;
            let lookback = lookback.unwrap_or(pipeline.config.lookback_days);
            let window = sibling_window(orchestrator, run, table)?;
            let extracted = pipeline
                .extract_table(table, date, lookback, window)
                .await
                .map_err(pipeline_error)?;
            let entry = &extracted.entry;
            Ok((
                json!({"rows": entry.rows, "bytes": entry.bytes, "file": entry.file, "window": entry.window}),
                json!({"entry": entry}),
            ))
        }
        TaskId::WriteManifest => {
            let entries = manifest_entries(
                &orchestrator
                    .history
                    .tasks(&run.run_id)
                    .map_err(TaskError::retryable)?,
            )?;
            let rows: u64 = entries.iter().map(|(_, e)| e.rows).sum();
            let bytes: u64 = entries.iter().map(|(_, e)| e.bytes).sum();
            pipeline
                .write_manifest(date, entries)
                .await
                .map_err(TaskError::retryable)?;
            Ok((json!({"rows": rows, "bytes": bytes}), Value::Null))
        }
        TaskId::WaitForRaw => wait_for_raw(orchestrator, run).await,
        TaskId::Transform => {
            let named = super::conf::named_files(&run.conf).map_err(TaskError::fatal)?;
            let staged = pipeline
                .compute(&pipeline.raw, date, &named, None)
                .await
                .map_err(pipeline_error)?;
            let figures = json!({"quarantined_rows": staged.quarantined()});
            *stage.lock().await = Stage::Staged(Box::new(staged));
            Ok((figures, Value::Null))
        }
        TaskId::Quality => {
            let Stage::Staged(staged) = std::mem::take(&mut *stage.lock().await) else {
                return Err(TaskError::stage_lost(task));
            };
            let checked = staged.check().await.map_err(transform_error)?;
            let rows_read: BTreeMap<String, u64> = checked
                .rows_read
                .iter()
                .map(|(table, rows)| (table.to_string(), *rows))
                .collect();
            let figures = json!({
                "rows_read": rows_read,
                "weeks": checked.week_count(),
                "rows_written": checked.rows_written(),
            });
            *stage.lock().await = Stage::Checked(Box::new(checked));
            Ok((figures, Value::Null))
        }
        TaskId::Publish => {
            let guard = stage.lock().await;
            let Stage::Checked(checked) = &*guard else {
                return Err(TaskError::stage_lost(task));
            };
            let options = publish_options(&pipeline.config, run);
            let (report, registered) = pipeline
                .publish(checked, &options, &run.run_id)
                .await
                .map_err(pipeline_error)?;
            drop(guard);
            *stage.lock().await = Stage::Empty;
            let versions: BTreeMap<String, u64> = report.publish.versions.iter().cloned().collect();
            let mut figures = json!({
                "rows_written": report.rows_written,
                "weeks": report.weeks,
                "versions": versions,
                "files_vacuumed": report.publish.files_vacuumed,
            });
            if let Some(registered) = registered {
                figures["glue"] = json!(registered.map_or_else(
                    |e| format!("failed: {e}"),
                    |report| report.to_string().trim_end().replace('\n', "; ")
                ));
            }
            Ok((figures, Value::Null))
        }
        TaskId::Notify => notify(orchestrator, run).await,
    }
}

/// How a run publishes: as configured, unless its `conf` allows a shrink
/// (`"allow_shrink": true`) or an older date (`"allow_older": true`), as
/// `backfill` and `runs retry` set them from their flags.
pub fn publish_options(config: &Config, run: &RunRecord) -> PublishOptions {
    let [shrink, older] = super::GUARD_OVERRIDES;
    let mut options = PublishOptions::from_config(config);
    options.allow_shrink |= run.conf[shrink] == Value::Bool(true);
    options.allow_older |= run.conf[older] == Value::Bool(true);
    options
}

/// The window the other fact table of `run` was extracted with, when its
/// task succeeded already (this one is a retry): both fact files must hold
/// the same window, even if the lake moved on in between.
fn sibling_window(
    orchestrator: &Orchestrator,
    run: &RunRecord,
    table: Table,
) -> Result<Option<DateRange>, TaskError> {
    if table.window_column().is_none() {
        return Ok(None);
    }
    let Some(sibling) = Table::FACTS.into_iter().find(|t| *t != table) else {
        return Ok(None);
    };
    let tasks = orchestrator
        .history
        .tasks(&run.run_id)
        .map_err(TaskError::retryable)?;
    let done = tasks
        .iter()
        .find(|t| t.task == TaskId::Extract(sibling) && t.state == TaskState::Success);
    let entry =
        done.and_then(|t| serde_json::from_value::<ManifestEntry>(t.output["entry"].clone()).ok());
    Ok(match entry.map(|e| e.window) {
        Some(Window::Range { from, to }) => Some(DateRange { from, to }),
        _ => None,
    })
}

/// Data that breaks a rule gives the same verdict on every attempt: no
/// retry. Anything else (storage, memory, the lake lock) may pass later.
fn transform_error(error: TransformError) -> TaskError {
    match error {
        TransformError::Quality { .. }
        | TransformError::Reconciliation { .. }
        | TransformError::Overflow { .. }
        | TransformError::Window { .. }
        | TransformError::WindowMismatch { .. }
        | TransformError::OutsideWindow { .. }
        | TransformError::Lake(LakeError::Guard(_))
        | TransformError::RawRead(_) => TaskError::fatal(error),
        other => TaskError::retryable(other),
    }
}

/// A failure of a pipeline step: a transform's by its kind, anything else
/// (storage, source) may pass later.
fn pipeline_error(error: PipelineError) -> TaskError {
    match error {
        PipelineError::Transform(e) => transform_error(e),
        PipelineError::Extract(
            ExtractError::Window(_)
            | ExtractError::Undated { .. }
            | ExtractError::BeforeLake { .. },
        ) => TaskError::fatal(error),
        other => TaskError::retryable(other),
    }
}

fn manifest_entries(tasks: &[TaskRecord]) -> Result<Vec<(Table, ManifestEntry)>, TaskError> {
    let mut entries = Vec::new();
    for table in Table::ALL {
        let task = TaskId::Extract(table);
        let record = tasks
            .iter()
            .find(|t| t.task == task)
            .ok_or_else(|| TaskError::fatal(format!("{task} is missing from the history")))?;
        let entry = serde_json::from_value(record.output["entry"].clone()).map_err(|e| {
            TaskError::fatal(format!(
                "{task} left no manifest entry in the history ({e}); retry the run"
            ))
        })?;
        entries.push((table, entry));
    }
    Ok(entries)
}

async fn wait_for_raw(orchestrator: &Orchestrator, run: &RunRecord) -> Result<Done, TaskError> {
    let history = &orchestrator.history;
    let first_check = history
        .attempts(&run.run_id)
        .map_err(TaskError::retryable)?
        .iter()
        .filter(|a| a.task == TaskId::WaitForRaw)
        .map(|a| a.start_date)
        .min()
        .unwrap_or_else(|| orchestrator.clock.now());
    let raw = &orchestrator.pipeline.raw;
    raw.verify().await.map_err(TaskError::retryable)?;
    let named = super::conf::named_files(&run.conf).map_err(TaskError::fatal)?;
    let mut told: Vec<String> = Vec::new();
    let mut waiting = |missing: &[String], gives_up_at: DateTime<Utc>| {
        let figures = json!({"missing": missing, "gives_up_at": gives_up_at.to_rfc3339()});
        let mut recorded = history.set_task_figures(&run.run_id, TaskId::WaitForRaw, &figures);
        // The log says what is missing each time that changes.
        if recorded.is_ok() && told != missing {
            let line = format!(
                "waiting for {}; gives up at {}",
                missing.join(", "),
                gives_up_at.to_rfc3339()
            );
            let now = orchestrator.clock.now();
            recorded = history.log(&run.run_id, TaskId::WaitForRaw, &line, now);
            told = missing.to_vec();
        }
        if let Err(e) = recorded {
            tracing::warn!(
                "run {}: cannot record what the sensor waits for: {e}",
                run.run_id
            );
        }
    };
    let waited = sensor::wait_for_raw(
        orchestrator.clock.as_ref(),
        raw,
        run.logical_date,
        &named,
        orchestrator.sensor,
        first_check,
        &mut waiting,
    )
    .await;
    match waited {
        Ok(report) => {
            let bytes: u64 = report.set.files.values().map(|f| f.bytes).sum();
            let verified = report.set.manifest.is_some();
            Ok((
                json!({"files": report.set.files.len(), "bytes": bytes, "manifest_verified": verified}),
                Value::Null,
            ))
        }
        Err(SensorError::Timeout {
            missing, waited, ..
        }) => {
            let message = format!(
                "raw set for {} still incomplete after {}s: missing {}",
                run.logical_date,
                waited.as_secs(),
                missing.join(", ")
            );
            Err(TaskError {
                output: json!({"missing": missing, "raw": raw.to_string(), "waited_secs": waited.as_secs()}),
                ..TaskError::fatal(message)
            })
        }
        Err(SensorError::Raw(e)) => Err(TaskError::retryable(e)),
    }
}

async fn notify(orchestrator: &Orchestrator, run: &RunRecord) -> Result<Done, TaskError> {
    let tasks = orchestrator
        .history
        .tasks(&run.run_id)
        .map_err(TaskError::retryable)?;
    let event = event_of(&tasks);
    let kind = event.kind();
    if !orchestrator.notifier.wants(&event) {
        return Ok((json!({"event": kind, "sent": false}), Value::Null));
    }
    let notification = Notification {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        logical_date: run.logical_date,
        event,
    };
    orchestrator
        .notifier
        .send(&notification)
        .await
        .map_err(TaskError::retryable)?;
    Ok((json!({"event": kind, "sent": true}), Value::Null))
}

/// What the run's notification says: the sensor's timeout, the first task
/// that failed, or success with the run's figures.
fn event_of(tasks: &[TaskRecord]) -> Event {
    if let Some(sensor) = tasks.iter().find(|t| {
        t.task == TaskId::WaitForRaw
            && t.state == TaskState::Failed
            && t.output["missing"].is_array()
    }) {
        let missing = sensor.output["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        return Event::SensorTimeout {
            raw: sensor.output["raw"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            missing,
            waited: std::time::Duration::from_secs(
                sensor.output["waited_secs"].as_u64().unwrap_or(0),
            ),
        };
    }
    if let Some(failed) = tasks.iter().find(|t| t.state == TaskState::Failed) {
        return Event::Failure {
            task: failed.task.to_string(),
            error: failed.error.clone().unwrap_or_default(),
            attempts: failed.try_number,
        };
    }
    let mut figures = Vec::new();
    for task in tasks
        .iter()
        .filter(|t| matches!(t.task, TaskId::Quality | TaskId::Publish))
    {
        if let Some(object) = task.figures.as_object() {
            for (name, value) in object {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                figures.push((name.clone(), value));
            }
        }
    }
    Event::Success { figures }
}
