//! Task logs: what each attempt of a task did, line by line (when it
//! started, what the sensor waited for, how it ended), kept in the history
//! so that `runs log` and the API's `.../logs/{try}` show it whichever
//! process ran the attempt.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{History, HistoryError, time};
use crate::orchestrator::dag::TaskId;

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub line: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", time(self.at), self.line)
    }
}

impl History {
    /// Appends `line` to the log of the current attempt of `task`.
    pub fn log(
        &self,
        run_id: &str,
        task: TaskId,
        line: &str,
        now: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        append(&self.conn(), run_id, task, line, now).map_err(|e| self.sqlite(e))
    }

    /// The log of attempt `try_number` of `task`, oldest line first.
    pub fn task_log(
        &self,
        run_id: &str,
        task: TaskId,
        try_number: u32,
    ) -> Result<Vec<LogLine>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT at, line FROM task_log
                 WHERE run_id = ?1 AND task_id = ?2 AND try_number = ?3 ORDER BY id",
            )
            .map_err(|e| self.sqlite(e))?;
        let raw: Vec<(String, String)> = statement
            .query_map(params![run_id, task.to_string(), try_number], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        raw.into_iter()
            .map(|(at, line)| {
                Ok(LogLine {
                    at: self.parse_time(&at)?,
                    line,
                })
            })
            .collect()
    }
}

/// Appends `line` to the log of the current attempt of `task`, if it has
/// started one.
pub(super) fn append(
    conn: &Connection,
    run_id: &str,
    task: TaskId,
    line: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    append_where(conn, run_id, "task_id = ?3", &task.to_string(), line, now)
}

/// Appends `line` to the log of the current attempt of every task of
/// `run_id` in state `state`.
pub(super) fn append_in_state(
    conn: &Connection,
    run_id: &str,
    state: &str,
    line: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    append_where(conn, run_id, "state = ?3", state, line, now)
}

fn append_where(
    conn: &Connection,
    run_id: &str,
    filter: &str,
    value: &str,
    line: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let line = crate::text::clip(line, crate::text::MESSAGE_CHARS);
    conn.execute(
        &format!(
            "INSERT INTO task_log (run_id, task_id, try_number, at, line)
             SELECT run_id, task_id, try_number, ?2, ?4 FROM task_instances
             WHERE run_id = ?1 AND try_number > 0 AND {filter}"
        ),
        params![run_id, time(now), value, line],
    )?;
    Ok(())
}
