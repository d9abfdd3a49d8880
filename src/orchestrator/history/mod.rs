//! The run history: an embedded SQLite file with every DAG run, every task
//! instance and every attempt, and what the scheduler has handled.
//!
//! The file is the daemon's memory across restarts: schedules resume from
//! the last fire time handled, runs that a killed daemon left `running` are
//! resumed, and a unique index makes it impossible to have two active runs
//! of one logical date. Writes are short transactions in WAL mode, so
//! `shelfline runs list` can read while the daemon writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::dag::{RunState, TaskId, TaskState};
use super::schedule::Handled;

mod task_log;

pub use task_log::LogLine;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dag_runs (
    id            INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL UNIQUE,
    dag_id        TEXT NOT NULL,
    logical_date  TEXT NOT NULL,
    run_type      TEXT NOT NULL,
    state         TEXT NOT NULL,
    conf          TEXT NOT NULL,
    extract       INTEGER NOT NULL,
    process_after TEXT,
    created_at    TEXT NOT NULL,
    start_date    TEXT,
    end_date      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_run_per_date
    ON dag_runs (dag_id, logical_date) WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS task_instances (
    run_id      TEXT NOT NULL REFERENCES dag_runs (run_id),
    task_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    try_number  INTEGER NOT NULL,
    max_tries   INTEGER NOT NULL,
    start_date  TEXT,
    end_date    TEXT,
    next_try_at TEXT,
    error       TEXT,
    figures     TEXT NOT NULL,
    output      TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS task_attempts (
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    try_number  INTEGER NOT NULL,
    start_date  TEXT NOT NULL,
    end_date    TEXT,
    state       TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (run_id, task_id, try_number)
);
CREATE TABLE IF NOT EXISTS scheduler (
    dag_id          TEXT PRIMARY KEY,
    extract_handled TEXT NOT NULL,
    process_handled TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dag_state (
    dag_id    TEXT PRIMARY KEY,
    is_paused INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS task_log (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    try_number INTEGER NOT NULL,
    at         TEXT NOT NULL,
    line       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_log_by_attempt ON task_log (run_id, task_id, try_number);
";

/// Columns added since the first release, with their types: a history
/// written by an older shelfline gains them when opened.
const ADDED_COLUMNS: [(&str, &str, &str); 1] = [("dag_runs", "logical_time", "TEXT")];

/// A problem with the run history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("run history {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Another process holds the history's write lock (a `sqlite3` shell,
    /// a backup) longer than [`BUSY_TIMEOUT`]: worth trying again.
    #[error(
        "run history {path} is locked by another process (a sqlite3 shell or a backup?); try again when it lets go"
    )]
    Busy { path: PathBuf },
    #[error("cannot create the folder of the run history {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run history {path} holds a value it cannot read: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("a run with id {0:?} already exists")]
    DuplicateRunId(String),
    #[error("{date} already has an active run ({run_id}); wait for it to finish")]
    ActiveRun { date: NaiveDate, run_id: String },
    #[error("no run {0:?} in the history (see `shelfline runs list`)")]
    NoSuchRun(String),
    #[error("run {run_id} is {state}; only a failed run can be retried")]
    NotRetryable { run_id: String, state: &'static str },
    #[error("run {run_id} already ended ({state})")]
    Ended { run_id: String, state: &'static str },
}

impl HistoryError {
    /// Whether waiting may help: another process holds the write lock.
    pub fn is_busy(&self) -> bool {
        matches!(self, HistoryError::Busy { .. })
    }
}

/// The error of an attempt cut off when the process running it stopped.
const INTERRUPTED: &str = "interrupted: the process running it stopped";

/// How long a statement waits for another process's write lock before it
/// fails with [`HistoryError::Busy`].
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
}

impl RunType {
    /// The name used in run ids, the history and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
        }
    }
}

impl FromStr for RunType {
    type Err = String;

    fn from_str(text: &str) -> Result<RunType, String> {
        let all = [RunType::Scheduled, RunType::Manual, RunType::Backfill];
        super::dag::parse_name(&all, RunType::as_str, text, "run type")
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: String,
    pub dag_id: String,
    pub logical_date: NaiveDate,
    /// The logical date as a trigger sent it, when it sent a time (ISO
    /// 8601 with its offset): the API echoes it as sent.
    pub logical_time: Option<String>,
    pub run_type: RunType,
    pub conf: Value,
    /// Whether the extraction tasks run (else they are skipped).
    pub extract: bool,
    /// The sensor and what follows wait for this time.
    pub process_after: Option<DateTime<Utc>>,
}

/// Which runs [`History::runs`] lists, in which order, and which page.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuery {
    /// Runs in any of these states; all runs when empty.
    pub states: Vec<RunState>,
    pub order: RunOrder,
    pub descending: bool,
    pub limit: u32,
    pub offset: u32,
}

impl RunQuery {
    /// The newest `limit` runs in any of `states`.
    pub fn newest(states: Vec<RunState>, limit: u32) -> RunQuery {
        RunQuery {
            states,
            order: RunOrder::Id,
            descending: true,
            limit,
            offset: 0,
        }
    }
}

/// What runs can be ordered by, named as Airflow's `order_by` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    /// The order runs were added in (`id`).
    Id,
    /// `logical_date`, or `execution_date` as Airflow 2 also calls it.
    LogicalDate,
    StartDate,
    EndDate,
    /// `dag_run_id`.
    RunId,
    State,
}

impl RunOrder {
    /// The names `order_by` accepts.
    pub const NAMES: [&str; 7] = [
        "id",
        "logical_date",
        "execution_date",
        "start_date",
        "end_date",
        "dag_run_id",
        "state",
    ];

    fn column(self) -> &'static str {
        match self {
            RunOrder::Id => "id",
            RunOrder::LogicalDate => "logical_date",
            RunOrder::StartDate => "start_date",
            RunOrder::EndDate => "end_date",
            RunOrder::RunId => "run_id",
            RunOrder::State => "state",
        }
    }
}

impl std::str::FromStr for RunOrder {
    type Err = String;

    fn from_str(name: &str) -> Result<RunOrder, String> {
        Ok(match name {
            "id" => RunOrder::Id,
            "logical_date" | "execution_date" => RunOrder::LogicalDate,
            "start_date" => RunOrder::StartDate,
            "end_date" => RunOrder::EndDate,
            "dag_run_id" => RunOrder::RunId,
            "state" => RunOrder::State,
            _ => {
                return Err(format!(
                    "cannot order by that; order by one of {} (a leading `-` reverses it)",
                    RunOrder::NAMES.join(", ")
                ));
            }
        })
    }
}

/// A DAG run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The history's sequence number (order of creation).
    pub id: i64,
    pub run_id: String,
    pub dag_id: String,
    pub logical_date: NaiveDate,
    /// See [`NewRun::logical_time`].
    pub logical_time: Option<String>,
    pub run_type: RunType,
    pub state: RunState,
    pub conf: Value,
    pub extract: bool,
    pub process_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// A task instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub run_id: String,
    pub task: TaskId,
    pub state: TaskState,
    /// Attempts started so far.
    pub try_number: u32,
    /// Attempts allowed (1 + retries).
    pub max_tries: u32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// When an `up_for_retry` task may start again.
    pub next_try_at: Option<DateTime<Utc>>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// Figures of the last successful attempt (rows, bytes...).
    pub figures: Value,
    /// What downstream tasks need from this one (e.g. a manifest entry).
    pub output: Value,
}

/// One attempt of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub task: TaskId,
    pub try_number: u32,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub state: TaskState,
    pub error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success {
        figures: Value,
        output: Value,
    },
    Retry {
        error: String,
        next_try_at: DateTime<Utc>,
    },
    /// `output` is kept with the failure (e.g. the files still missing).
    Failed {
        error: String,
        output: Value,
    },
}

impl std::fmt::Display for Outcome {
    /// The line an attempt's log ends with.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success { figures, .. } => match figures.as_object() {
                Some(fields) if !fields.is_empty() => write!(f, "succeeded: {figures}"),
                _ => f.write_str("succeeded"),
            },
            Outcome::Retry { error, next_try_at } => {
                write!(f, "failed: {error}; next attempt at {}", time(*next_try_at))
            }
            Outcome::Failed { error, .. } => write!(f, "failed: {error}"),
        }
    }
}

/// An ended run to queue again ([`History::clear`]): which of its tasks,
/// and its conf from now on.
#[derive(Debug, Clone)]
pub struct ClearRun<'a> {
    pub run: &'a RunRecord,
    pub tasks: &'a [TaskId],
    pub conf: Value,
}

/// Per-state counts, for `/metrics`.
pub type StateCounts = BTreeMap<String, u64>;

/// The run history file.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl History {
    /// Opens (or creates) the history at `path`.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| HistoryError::Folder {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        add_missing_columns(&conn).map_err(sqlite)?;
        Ok(History {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Where the history lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sqlite(&self, source: rusqlite::Error) -> HistoryError {
        let busy = matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            return HistoryError::Busy {
                path: self.path.clone(),
            };
        }
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// A transaction that takes the write lock at once, so that what it
    /// reads cannot change before it writes (a deferred one would fail
    /// with "database is locked" when another writer came in between).
    fn write<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sqlite(e))?;
        let value = work(&tx)?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(value)
    }

    /// Creates a run and its task instances (`skipped` for the extraction
    /// tasks of a run that does not extract). `max_tries` gives each
    /// task's attempts.
    pub fn create_run(
        &self,
        run: &NewRun,
        max_tries: impl Fn(TaskId) -> u32,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, HistoryError> {
        self.write(|tx| self.insert_run(tx, run, &max_tries, now))?;
        self.run(&run.run_id)?
            .ok_or_else(|| HistoryError::NoSuchRun(run.run_id.clone()))
    }

    fn insert_run(
        &self,
        tx: &rusqlite::Transaction<'_>,
        run: &NewRun,
        max_tries: &impl Fn(TaskId) -> u32,
        now: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        if tx
            .query_row(
                "SELECT 1 FROM dag_runs WHERE run_id = ?1",
                [&run.run_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?
            .is_some()
        {
            return Err(HistoryError::DuplicateRunId(run.run_id.clone()));
        }
        self.check_no_active_run(tx, &run.dag_id, run.logical_date)?;
        tx.execute(
            "INSERT INTO dag_runs (run_id, dag_id, logical_date, run_type, state, conf, extract,
                                   process_after, created_at, logical_time)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9)",
            params![
                run.run_id,
                run.dag_id,
                run.logical_date.to_string(),
                run.run_type.as_str(),
                run.conf.to_string(),
                run.extract,
                run.process_after.map(time),
                time(now),
                run.logical_time,
            ],
        )
        .map_err(|e| self.sqlite(e))?;
        for task in TaskId::all() {
            let state = if task.extracts() && !run.extract {
                TaskState::Skipped
            } else {
                TaskState::Queued
            };
            tx.execute(
                "INSERT INTO task_instances (run_id, task_id, state, try_number, max_tries,
                                             figures, output)
                 VALUES (?1, ?2, ?3, 0, ?4, '{}', '{}')",
                params![
                    run.run_id,
                    task.to_string(),
                    state.as_str(),
                    max_tries(task)
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        Ok(())
    }

    /// The run with `run_id`.
    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(&format!("{RUN_COLUMNS} WHERE run_id = ?1"))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement
            .query_map([run_id], read_run)
            .map_err(|e| self.sqlite(e))?;
        rows.next()
            .transpose()
            .map_err(|e| self.sqlite(e))?
            .map(|r| self.decode(r))
            .transpose()
    }

    /// The run named by `key`: its run id, or its sequence number.
    pub fn find_run(&self, key: &str) -> Result<RunRecord, HistoryError> {
        if let Some(run) = self.run(key)? {
            return Ok(run);
        }
        if let Ok(id) = key.parse::<i64>() {
            let found = self.select_runs("WHERE id = ?1", params![id])?;
            if let Some(run) = found.into_iter().next() {
                return Ok(run);
            }
        }
        Err(HistoryError::NoSuchRun(key.to_string()))
    }

    /// Runs of `dag_id` as `query` says, with the total count before its
    /// `limit` and `offset`.
    pub fn runs(
        &self,
        dag_id: &str,
        query: &RunQuery,
    ) -> Result<(Vec<RunRecord>, u64), HistoryError> {
        let states: Vec<&str> = query.states.iter().map(|s| s.as_str()).collect();
        let states = serde_json::to_string(&states).unwrap_or_else(|_| "[]".to_string());
        let filter = "WHERE dag_id = ?1 \
             AND (?2 = '[]' OR state IN (SELECT value FROM json_each(?2)))";
        let total: u64 = self
            .conn()
            .query_row(
                &format!("SELECT count(*) FROM dag_runs {filter}"),
                params![dag_id, states],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))?;
        let direction = if query.descending { "DESC" } else { "ASC" };
        let order = format!("{} {direction}, id {direction}", query.order.column());
        let runs = self.select_runs(
            &format!("{filter} ORDER BY {order} LIMIT ?3 OFFSET ?4"),
            params![dag_id, states, query.limit, query.offset],
        )?;
        Ok((runs, total))
    }

    /// Queued and running runs of `dag_id`, oldest first.
    pub fn active_runs(&self, dag_id: &str) -> Result<Vec<RunRecord>, HistoryError> {
        self.select_runs(
            "WHERE dag_id = ?1 AND state IN ('queued', 'running') ORDER BY id",
            params![dag_id],
        )
    }

    /// The queued or running run of `date`, if any.
    pub fn active_run(
        &self,
        dag_id: &str,
        date: NaiveDate,
    ) -> Result<Option<RunRecord>, HistoryError> {
        Ok(self
            .select_runs(
                "WHERE dag_id = ?1 AND logical_date = ?2 AND state IN ('queued', 'running')",
                params![dag_id, date.to_string()],
            )?
            .into_iter()
            .next())
    }

    /// Whether `date` has a successful run, or any scheduled run.
    pub fn date_status(&self, dag_id: &str, date: NaiveDate) -> Result<DateStatus, HistoryError> {
        let count = |condition: &str| -> Result<bool, HistoryError> {
            self.conn()
                .query_row(
                    &format!(
                        "SELECT count(*) FROM dag_runs WHERE dag_id = ?1 AND logical_date = ?2 AND {condition}"
                    ),
                    params![dag_id, date.to_string()],
                    |row| row.get::<_, i64>(0),
                )
                .map(|n| n > 0)
                .map_err(|e| self.sqlite(e))
        };
        Ok(DateStatus {
            succeeded: count("state = 'success'")?,
            scheduled: count("run_type = 'scheduled'")?,
            active: count("state IN ('queued', 'running')")?,
        })
    }

    fn select_runs(
        &self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(&format!("{RUN_COLUMNS} {clause}"))
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params, read_run)
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// The latest run of each logical date of `dag_id` in `from..=to`
    /// (either end open) when it has ended, oldest date first.
    pub fn ended_runs(
        &self,
        dag_id: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.select_runs(
            "WHERE dag_id = ?1 AND state IN ('success', 'failed')
               AND (?2 IS NULL OR logical_date >= ?2) AND (?3 IS NULL OR logical_date <= ?3)
               AND id = (SELECT max(id) FROM dag_runs AS same
                         WHERE same.dag_id = ?1 AND same.logical_date = dag_runs.logical_date)
             ORDER BY logical_date",
            params![
                dag_id,
                from.map(|d| d.to_string()),
                to.map(|d| d.to_string())
            ],
        )
    }

    /// The task instances of `run_id`, in DAG order.
    pub fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT run_id, task_id, state, try_number, max_tries, start_date, end_date,
                        next_try_at, error, figures, output
                 FROM task_instances WHERE run_id = ?1",
            )
            .map_err(|e| self.sqlite(e))?;
        let raw: Vec<RawTask> = statement
            .query_map([run_id], |row| {
                Ok(RawTask {
                    run_id: row.get(0)?,
                    task: row.get(1)?,
                    state: row.get(2)?,
                    try_number: row.get(3)?,
                    max_tries: row.get(4)?,
                    start_date: row.get(5)?,
                    end_date: row.get(6)?,
                    next_try_at: row.get(7)?,
                    error: row.get(8)?,
                    figures: row.get(9)?,
                    output: row.get(10)?,
                })
            })
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        let mut tasks = raw
            .into_iter()
            .map(|t| self.decode_task(t))
            .collect::<Result<Vec<_>, _>>()?;
        tasks.sort_by_key(|t| t.task);
        Ok(tasks)
    }

    /// Every attempt of every task of `run_id`, in order.
    pub fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT task_id, try_number, start_date, end_date, state, error
                 FROM task_attempts WHERE run_id = ?1 ORDER BY start_date, task_id",
            )
            .map_err(|e| self.sqlite(e))?;
        type Raw = (String, u32, String, Option<String>, String, Option<String>);
        let raw: Vec<Raw> = statement
            .query_map([run_id], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        raw.into_iter()
            .map(|(task, try_number, start, end, state, error)| {
                Ok(AttemptRecord {
                    task: self.parse(&task)?,
                    try_number,
                    start_date: self.parse_time(&start)?,
                    end_date: end.map(|e| self.parse_time(&e)).transpose()?,
                    state: self.parse(&state)?,
                    error,
                })
            })
            .collect()
    }

    /// Sets the state of an active run (queued or running); `running` sets
    /// its start (once), a finished state its end. Returns false when the
    /// run had already ended (a user cancelled it meanwhile): it stays so.
    pub fn set_run_state(
        &self,
        run_id: &str,
        state: RunState,
        now: DateTime<Utc>,
    ) -> Result<bool, HistoryError> {
        let now = time(now);
        let conn = self.conn();
        let active = "state IN ('queued', 'running')";
        let updated = match state {
            RunState::Queued => conn.execute(
                &format!(
                    "UPDATE dag_runs SET state = 'queued', end_date = NULL WHERE run_id = ?1 AND {active}"
                ),
                params![run_id],
            ),
            RunState::Running => conn.execute(
                &format!(
                    "UPDATE dag_runs SET state = 'running', start_date = coalesce(start_date, ?2),
                         end_date = NULL
                     WHERE run_id = ?1 AND {active}"
                ),
                params![run_id, now],
            ),
            RunState::Success | RunState::Failed => conn.execute(
                &format!(
                    "UPDATE dag_runs SET state = ?2, end_date = ?3 WHERE run_id = ?1 AND {active}"
                ),
                params![run_id, state.as_str(), now],
            ),
        };
        Ok(updated.map_err(|e| self.sqlite(e))? > 0)
    }

    /// Ends an active run by a user's decision (`runs cancel`, the API's
    /// PATCH): the run becomes `state` and each of its tasks not finished
    /// yet `failed` (or `skipped` when the run is marked a success), with
    /// `reason` as its error. The process executing the run notices and
    /// stops it.
    pub fn end_run(
        &self,
        run_id: &str,
        state: RunState,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, HistoryError> {
        let run = self.find_run(run_id)?;
        let task_state = match state {
            RunState::Success => TaskState::Skipped,
            _ => TaskState::Failed,
        };
        self.write(|tx| {
            let ended = tx
                .execute(
                    "UPDATE dag_runs SET state = ?2, end_date = ?3
                     WHERE run_id = ?1 AND state IN ('queued', 'running')",
                    params![run.run_id, state.as_str(), time(now)],
                )
                .map_err(|e| self.sqlite(e))?;
            if ended == 0 {
                let state: String = tx
                    .query_row(
                        "SELECT state FROM dag_runs WHERE run_id = ?1",
                        [&run.run_id],
                        |row| row.get(0),
                    )
                    .map_err(|e| self.sqlite(e))?;
                return Err(HistoryError::Ended {
                    run_id: run.run_id.clone(),
                    state: self.parse::<RunState>(&state)?.as_str(),
                });
            }
            let ended = format!("run ended: {reason}");
            task_log::append_in_state(tx, &run.run_id, "running", &ended, now)
                .map_err(|e| self.sqlite(e))?;
            tx.execute(
                "UPDATE task_attempts SET end_date = ?2, state = 'failed', error = ?3
                 WHERE run_id = ?1 AND state = 'running'",
                params![run.run_id, time(now), reason],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.execute(
                "UPDATE task_instances SET state = ?2, end_date = ?3, error = ?4, next_try_at = NULL
                 WHERE run_id = ?1 AND state IN ('queued', 'running', 'up_for_retry')",
                params![run.run_id, task_state.as_str(), time(now), reason],
            )
            .map_err(|e| self.sqlite(e))?;
            Ok(())
        })?;
        self.find_run(&run.run_id)
    }

    /// Marks `task` running for its next attempt; returns the attempt number.
    pub fn start_task(
        &self,
        run_id: &str,
        task: TaskId,
        now: DateTime<Utc>,
    ) -> Result<u32, HistoryError> {
        self.write(|tx| {
            let (try_number, max_tries): (u32, u32) = tx
                .query_row(
                    "UPDATE task_instances
                     SET state = 'running', try_number = try_number + 1, start_date = ?3,
                         end_date = NULL, next_try_at = NULL
                     WHERE run_id = ?1 AND task_id = ?2 RETURNING try_number, max_tries",
                    params![run_id, task.to_string(), time(now)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(|e| self.sqlite(e))?;
            tx.execute(
                "INSERT OR REPLACE INTO task_attempts (run_id, task_id, try_number, start_date, state)
                 VALUES (?1, ?2, ?3, ?4, 'running')",
                params![run_id, task.to_string(), try_number, time(now)],
            )
            .map_err(|e| self.sqlite(e))?;
            let started = format!("attempt {try_number} of {max_tries} started");
            task_log::append(tx, run_id, task, &started, now).map_err(|e| self.sqlite(e))?;
            Ok(try_number)
        })
    }

    /// Records how attempt `try_number` of `task` ended, unless the task
    /// has moved on meanwhile (a user ended the run, or cleared it and a
    /// later attempt started).
    pub fn finish_task(
        &self,
        run_id: &str,
        task: TaskId,
        try_number: u32,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        let (state, error, next_try_at) = match outcome {
            Outcome::Success { .. } => (TaskState::Success, None, None),
            Outcome::Retry { error, next_try_at } => (
                TaskState::UpForRetry,
                Some(error.as_str()),
                Some(time(*next_try_at)),
            ),
            Outcome::Failed { error, .. } => (TaskState::Failed, Some(error.as_str()), None),
        };
        self.write(|tx| {
        // Only a running task: a user who ended the run meanwhile decided.
        let updated = tx.execute(
            "UPDATE task_instances SET state = ?3, end_date = ?4, error = ?5, next_try_at = ?6
             WHERE run_id = ?1 AND task_id = ?2 AND state = 'running' AND try_number = ?7",
            params![
                run_id,
                task.to_string(),
                state.as_str(),
                time(now),
                error,
                next_try_at,
                try_number
            ],
        )
        .map_err(|e| self.sqlite(e))?;
        if updated == 0 {
            return Ok(());
        }
        task_log::append(tx, run_id, task, &outcome.to_string(), now).map_err(|e| self.sqlite(e))?;
        let kept = match outcome {
            Outcome::Success { figures, output } => Some((figures.clone(), output.clone())),
            Outcome::Failed { output, .. } => Some((json!({}), output.clone())),
            Outcome::Retry { .. } => None,
        };
        if let Some((figures, output)) = kept {
            tx.execute(
                "UPDATE task_instances SET figures = ?3, output = ?4 WHERE run_id = ?1 AND task_id = ?2",
                params![run_id, task.to_string(), figures.to_string(), output.to_string()],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.execute(
            "UPDATE task_attempts SET end_date = ?3, state = ?4, error = ?5
             WHERE run_id = ?1 AND task_id = ?2 AND try_number = ?6",
            params![run_id, task.to_string(), time(now), state.as_str(), error, try_number],
        )
        .map_err(|e| self.sqlite(e))?;
        Ok(())
        })
    }

    /// Records what a running task is doing (the sensor: the files it
    /// still waits for, and until when); what it ends with replaces it.
    pub fn set_task_figures(
        &self,
        run_id: &str,
        task: TaskId,
        figures: &Value,
    ) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE task_instances SET figures = ?3
                 WHERE run_id = ?1 AND task_id = ?2 AND state = 'running'",
                params![run_id, task.to_string(), figures.to_string()],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Sets the state of a task that does not run (`skipped`,
    /// `upstream_failed`).
    pub fn set_task_state(
        &self,
        run_id: &str,
        task: TaskId,
        state: TaskState,
    ) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE task_instances SET state = ?3 WHERE run_id = ?1 AND task_id = ?2",
                params![run_id, task.to_string(), state.as_str()],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// After a restart: the runs of `dag_id` left `running` are resumed
    /// (see [`History::resume`]). Returns their ids.
    pub fn resume_interrupted(
        &self,
        dag_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, HistoryError> {
        let runs = self.select_runs(
            "WHERE dag_id = ?1 AND state = 'running' ORDER BY id",
            params![dag_id],
        )?;
        for run in &runs {
            self.resume(&run.run_id, now)?;
        }
        Ok(runs.into_iter().map(|r| r.run_id).collect())
    }

    /// Before a run executes: any of its tasks still `running` was cut off
    /// when the process running it stopped. The attempt is closed as
    /// failed ("interrupted") and the task queued again with one more
    /// attempt allowed (see [`History::restage`] for the tasks that share
    /// the staged output).
    pub fn resume(&self, run_id: &str, now: DateTime<Utc>) -> Result<(), HistoryError> {
        self.write(|tx| {
            let interrupted: Vec<TaskId> = tx
                .prepare(
                    "SELECT task_id FROM task_instances WHERE run_id = ?1 AND state = 'running'",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map([run_id], |row| row.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| self.sqlite(e))?
                .iter()
                .map(|task| self.parse(task))
                .collect::<Result<_, _>>()?;
            if interrupted.is_empty() {
                return Ok(());
            }
            for task in &interrupted {
                task_log::append(tx, run_id, *task, INTERRUPTED, now)
                    .map_err(|e| self.sqlite(e))?;
                tx.execute(
                    "UPDATE task_attempts SET end_date = ?3, state = 'failed', error = ?4
                     WHERE run_id = ?1 AND task_id = ?2 AND state = 'running'",
                    params![run_id, task.to_string(), time(now), INTERRUPTED],
                )
                .map_err(|e| self.sqlite(e))?;
            }
            self.requeue(tx, run_id, &interrupted, 1)
        })
    }

    /// `quality` or `publish` found the staged output gone: queues
    /// `transform` again, with what follows it.
    pub fn restage(&self, run_id: &str) -> Result<(), HistoryError> {
        self.write(|tx| self.requeue(tx, run_id, &[TaskId::Transform], 1))
    }

    /// `runs retry`: queues the failed tasks of a failed run again (and
    /// what depends on them), each with `extra_tries` more attempts.
    pub fn retry_run(
        &self,
        run_id: &str,
        extra_tries: u32,
        conf: &Value,
    ) -> Result<RunRecord, HistoryError> {
        let run = self.find_run(run_id)?;
        if run.state != RunState::Failed {
            return Err(HistoryError::NotRetryable {
                run_id: run.run_id,
                state: run.state.as_str(),
            });
        }
        let failed: Vec<TaskId> = self
            .tasks(&run.run_id)?
            .into_iter()
            .filter(|t| t.state.is_failure())
            .map(|t| t.task)
            .collect();
        let again = ClearRun {
            run: &run,
            tasks: &failed,
            conf: conf.clone(),
        };
        self.clear(&[again], extra_tries)?;
        self.find_run(&run.run_id)
    }

    /// Queues the tasks of ended runs again (with what shares their work,
    /// see [`requeued`]), each with `extra_tries` more attempts, and the
    /// runs with them: Airflow's "clear". All or nothing: fails when one
    /// run, or another of its date, is active.
    pub fn clear(&self, runs: &[ClearRun<'_>], extra_tries: u32) -> Result<(), HistoryError> {
        self.write(|tx| {
            for cleared in runs {
                let run = cleared.run;
                self.check_no_active_run(tx, &run.dag_id, run.logical_date)?;
                tx.execute(
                    "UPDATE dag_runs SET state = 'queued', end_date = NULL, conf = ?2
                     WHERE run_id = ?1 AND state IN ('failed', 'success')",
                    params![run.run_id, cleared.conf.to_string()],
                )
                .map_err(|e| self.sqlite(e))?;
                self.requeue(tx, &run.run_id, cleared.tasks, extra_tries)?;
            }
            Ok(())
        })
    }

    /// Fails when `date` of `dag_id` has a queued or running run.
    fn check_no_active_run(
        &self,
        tx: &rusqlite::Transaction<'_>,
        dag_id: &str,
        date: NaiveDate,
    ) -> Result<(), HistoryError> {
        let active: Option<String> = tx
            .query_row(
                "SELECT run_id FROM dag_runs WHERE dag_id = ?1 AND logical_date = ?2
                 AND state IN ('queued', 'running')",
                params![dag_id, date.to_string()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        match active {
            Some(run_id) => Err(HistoryError::ActiveRun { date, run_id }),
            None => Ok(()),
        }
    }

    /// Queues `tasks` again (with what [`requeued`] adds), each allowed at
    /// least `extra_tries` more attempts, unless the run has ended
    /// meanwhile (a user cancelled it); skipped tasks stay skipped.
    fn requeue(
        &self,
        conn: &rusqlite::Connection,
        run_id: &str,
        tasks: &[TaskId],
        extra_tries: u32,
    ) -> Result<(), HistoryError> {
        for task in requeued(tasks) {
            conn.execute(
                "UPDATE task_instances
                 SET state = 'queued', next_try_at = NULL, max_tries = max(max_tries, try_number + ?3)
                 WHERE run_id = ?1 AND task_id = ?2 AND state != 'skipped'
                   AND EXISTS (SELECT 1 FROM dag_runs
                               WHERE run_id = ?1 AND state IN ('queued', 'running'))",
                params![run_id, task.to_string(), extra_tries.max(1)],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        Ok(())
    }

    /// Whether the schedules of `dag_id` are paused (the API's `PATCH
    /// dags/{id}`).
    pub fn is_paused(&self, dag_id: &str) -> Result<bool, HistoryError> {
        let paused: Option<bool> = self
            .conn()
            .query_row(
                "SELECT is_paused FROM dag_state WHERE dag_id = ?1",
                [dag_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        Ok(paused.unwrap_or(false))
    }

    /// Pauses or unpauses `dag_id`.
    pub fn set_paused(&self, dag_id: &str, paused: bool) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "INSERT INTO dag_state (dag_id, is_paused) VALUES (?1, ?2)
                 ON CONFLICT (dag_id) DO UPDATE SET is_paused = excluded.is_paused",
                params![dag_id, paused],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// What the scheduler of `dag_id` has handled, if it ever ran.
    pub fn handled(&self, dag_id: &str) -> Result<Option<Handled>, HistoryError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT extract_handled, process_handled FROM scheduler WHERE dag_id = ?1",
                [dag_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|(extract, process)| {
            Ok(Handled {
                extract: self.parse_time(&extract)?,
                process: self.parse_time(&process)?,
            })
        })
        .transpose()
    }

    /// Records what the scheduler of `dag_id` has handled.
    pub fn set_handled(&self, dag_id: &str, handled: Handled) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "INSERT INTO scheduler (dag_id, extract_handled, process_handled) VALUES (?1, ?2, ?3)
                 ON CONFLICT (dag_id) DO UPDATE SET extract_handled = ?2, process_handled = ?3",
                params![dag_id, time(handled.extract), time(handled.process)],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Runs per state and task instances per state, for `/metrics`.
    pub fn counts(&self, dag_id: &str) -> Result<(StateCounts, StateCounts), HistoryError> {
        let conn = self.conn();
        let count = |sql: &str| -> Result<StateCounts, HistoryError> {
            let mut statement = conn.prepare(sql).map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map([dag_id], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })
                .map_err(|e| self.sqlite(e))?
                .collect::<Result<StateCounts, _>>()
                .map_err(|e| self.sqlite(e))?;
            Ok(rows)
        };
        Ok((
            count("SELECT state, count(*) FROM dag_runs WHERE dag_id = ?1 GROUP BY state")?,
            count(
                "SELECT t.state, count(*) FROM task_instances t JOIN dag_runs r USING (run_id)
                 WHERE r.dag_id = ?1 GROUP BY t.state",
            )?,
        ))
    }

    fn decode(&self, raw: RawRun) -> Result<RunRecord, HistoryError> {
        Ok(RunRecord {
            id: raw.id,
            run_id: raw.run_id,
            dag_id: raw.dag_id,
            logical_date: self.parse(&raw.logical_date)?,
            logical_time: raw.logical_time,
            run_type: self.parse(&raw.run_type)?,
            state: self.parse(&raw.state)?,
            conf: self.json(&raw.conf)?,
            extract: raw.extract,
            process_after: raw.process_after.map(|t| self.parse_time(&t)).transpose()?,
            created_at: self.parse_time(&raw.created_at)?,
            start_date: raw.start_date.map(|t| self.parse_time(&t)).transpose()?,
            end_date: raw.end_date.map(|t| self.parse_time(&t)).transpose()?,
        })
    }

    fn decode_task(&self, raw: RawTask) -> Result<TaskRecord, HistoryError> {
        Ok(TaskRecord {
            run_id: raw.run_id,
            task: self.parse(&raw.task)?,
            state: self.parse(&raw.state)?,
            try_number: raw.try_number,
            max_tries: raw.max_tries,
            start_date: raw.start_date.map(|t| self.parse_time(&t)).transpose()?,
            end_date: raw.end_date.map(|t| self.parse_time(&t)).transpose()?,
            next_try_at: raw.next_try_at.map(|t| self.parse_time(&t)).transpose()?,
            error: raw.error,
            figures: self.json(&raw.figures)?,
            output: self.json(&raw.output)?,
        })
    }

    fn parse<T: FromStr>(&self, text: &str) -> Result<T, HistoryError>
    where
        T::Err: std::fmt::Display,
    {
        text.parse()
            .map_err(|e: T::Err| self.corrupt(e.to_string()))
    }

    fn parse_time(&self, text: &str) -> Result<DateTime<Utc>, HistoryError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.corrupt(format!("time {text:?}: {e}")))
    }

    fn json(&self, text: &str) -> Result<Value, HistoryError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("JSON {text:?}: {e}")))
    }

    fn corrupt(&self, reason: String) -> HistoryError {
        HistoryError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The tasks queued again when `tasks` are: `transform`, `quality` and
/// `publish` share a staged output that lives only in the process that
/// computed it, so queuing one of them queues all three; `notify` always
/// runs again.
pub fn requeued(tasks: &[TaskId]) -> Vec<TaskId> {
    let mut again: Vec<TaskId> = tasks.to_vec();
    if again
        .iter()
        .any(|t| matches!(t, TaskId::Transform | TaskId::Quality | TaskId::Publish))
    {
        again.extend([TaskId::Transform, TaskId::Quality, TaskId::Publish]);
    }
    again.push(TaskId::Notify);
    again.sort();
    again.dedup();
    again
}

/// Adds the [`ADDED_COLUMNS`] a history does not have yet.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let has: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |row| row.get(0),
        )?;
        if !has {
            match conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}")) {
                // Another process opening the history added it meanwhile.
                Err(e) if e.to_string().contains("duplicate column name") => {}
                added => added?,
            }
        }
    }
    Ok(())
}

/// What the history knows of one logical date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateStatus {
    pub succeeded: bool,
    pub scheduled: bool,
    pub active: bool,
}

const RUN_COLUMNS: &str = "SELECT id, run_id, dag_id, logical_date, run_type, state, conf, extract,
    process_after, created_at, start_date, end_date, logical_time FROM dag_runs";

struct RawRun {
    id: i64,
    run_id: String,
    dag_id: String,
    logical_date: String,
    run_type: String,
    state: String,
    conf: String,
    extract: bool,
    process_after: Option<String>,
    created_at: String,
    start_date: Option<String>,
    end_date: Option<String>,
    logical_time: Option<String>,
}

fn read_run(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: row.get(0)?,
        run_id: row.get(1)?,
        dag_id: row.get(2)?,
        logical_date: row.get(3)?,
        run_type: row.get(4)?,
        state: row.get(5)?,
        conf: row.get(6)?,
        extract: row.get(7)?,
        process_after: row.get(8)?,
        created_at: row.get(9)?,
        start_date: row.get(10)?,
        end_date: row.get(11)?,
        logical_time: row.get(12)?,
    })
}

struct RawTask {
    run_id: String,
    task: String,
    state: String,
    try_number: u32,
    max_tries: u32,
    start_date: Option<String>,
    end_date: Option<String>,
    next_try_at: Option<String>,
    error: Option<String>,
    figures: String,
    output: String,
}
