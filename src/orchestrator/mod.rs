//! The orchestrator: the pipeline as a DAG of tasks ([`dag`]), started by
//! cron schedules ([`schedule`]), the API or `backfill`, with retries,
//! a raw-file sensor ([`sensor`]), notifications ([`notify`]) and a run
//! history that survives restarts ([`history`]).
//!
//! One process at a time executes the runs of a history (the
//! [`lock`]): the daemon (`shelfline serve`), or, when no daemon is up,
//! the `backfill` or `runs retry` command itself. Other processes only
//! add runs to the history; the executor picks them up.

mod clear;
pub mod clock;
mod conf;
pub mod dag;
pub mod history;
pub mod lock;
pub mod notify;
mod reconciler;
pub mod report;
pub mod schedule;
pub mod sensor;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::FutureExt as _;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::config::{ServeConfig, TaskRetries};
use crate::pipeline::Pipeline;
use crate::raw::NamedFiles;
use clock::Clock;
use dag::{Readiness, RunState, TaskId, TaskState};
use history::{History, HistoryError, NewRun, Outcome, RunRecord, RunType};
use notify::{Notifier, NotifyError};
use schedule::{Handled, Schedule, ScheduleError, Schedules};
use sensor::SensorPolicy;
use tasks::{Stage, TaskError};

pub use clear::{ClearSelection, Cleared};
pub use conf::{GUARD_OVERRIDES, LOOKBACK};

/// How often the daemon looks for runs other processes added.
const POLL: Duration = Duration::from_secs(2);

/// A problem of the orchestrator itself (task failures are recorded in
/// the history, not returned).
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("notifications: {0}")]
    Notify(#[from] NotifyError),
    #[error("`serve.tasks.{0}`: no such task (tasks: {tasks})", tasks = TaskId::all().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    UnknownTask(String),
    #[error("`serve.{key}`: {reason}")]
    Setting { key: &'static str, reason: String },
    #[error("`conf.{field}`: {reason}")]
    Conf { field: String, reason: String },
    #[error("logical date {date} is after today ({today}): a run processes a day that has ended")]
    FutureDate { date: NaiveDate, today: NaiveDate },
    #[error(transparent)]
    Lock(#[from] lock::ExecutorLockError),
    #[error("run {run_id} is not the latest run of its date ({latest} is): clear that one")]
    NotLatest { run_id: String, latest: String },
}

/// Retries of failed tasks: `delay × backoff^(n-1)` before the n-th retry,
/// at most `max_delay`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    retries: u32,
    delay: Duration,
    backoff: f64,
    max_delay: Duration,
    per_task: HashMap<TaskId, TaskRetries>,
}

impl RetryPolicy {
    /// The policy of `[serve]`; fails on an unknown task name or a bad factor.
    pub fn from_config(serve: &ServeConfig) -> Result<RetryPolicy, OrchestratorError> {
        if !(serve.retry_backoff.is_finite() && serve.retry_backoff >= 1.0) {
            return Err(OrchestratorError::Setting {
                key: "retry_backoff",
                reason: format!("{} must be a number ≥ 1", serve.retry_backoff),
            });
        }
        let mut per_task = HashMap::new();
        for (name, retries) in &serve.tasks {
            let task = name
                .parse::<TaskId>()
                .map_err(|_| OrchestratorError::UnknownTask(name.clone()))?;
            per_task.insert(task, retries.clone());
        }
        Ok(RetryPolicy {
            retries: serve.retries,
            delay: Duration::from_secs(serve.retry_delay_secs),
            backoff: serve.retry_backoff,
            max_delay: Duration::from_secs(serve.max_retry_delay_secs),
            per_task,
        })
    }

    /// Attempts allowed for `task`: 1 + its retries.
    pub fn max_tries(&self, task: TaskId) -> u32 {
        1 + self
            .per_task
            .get(&task)
            .and_then(|t| t.retries)
            .unwrap_or(self.retries)
    }

    /// The wait after attempt `try_number` (1-based) of `task` failed.
    pub fn delay_after(&self, task: TaskId, try_number: u32) -> Duration {
        let base = self
            .per_task
            .get(&task)
            .and_then(|t| t.retry_delay_secs)
            .map_or(self.delay, Duration::from_secs);
        let factor = self
            .backoff
            .powi(try_number.saturating_sub(1).min(64) as i32);
        base.mul_f64(factor.min(1e9)).min(self.max_delay)
    }
}

/// A request to start a run (the API's `POST dagRuns`).
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    pub run_id: Option<String>,
    pub logical_date: Option<NaiveDate>,
    /// The time the logical date was sent as, if it was (echoed by the API).
    pub logical_time: Option<String>,
    /// Free-form; `files` (raw files, relative to the raw zone or full
    /// URLs) makes the sensor wait for them too and skips extraction;
    /// `extract` (boolean) forces the choice.
    pub conf: Value,
}

/// What `backfill` did with one date.
#[derive(Debug, Clone)]
pub enum BackfillDate {
    Queued(RunRecord),
    Skipped { date: NaiveDate, reason: String },
}

/// `run`'s conf for another attempt, with `extra` added: the guards'
/// overrides hold for the attempt they were given for, so a later one
/// passes them again or goes without.
fn renewed_conf(run: &RunRecord, extra: serde_json::Map<String, Value>) -> Value {
    let mut conf = run.conf.clone();
    if let Value::Object(map) = &mut conf {
        map.retain(|key, _| !GUARD_OVERRIDES.contains(&key.as_str()));
        map.extend(extra);
    }
    conf
}

/// The schedule `key` of `[serve]` (`expr` in `timezone`); `None` when
/// it is empty (off).
fn parse_schedule(
    key: &'static str,
    expr: &str,
    timezone: Tz,
) -> Result<Option<Schedule>, ScheduleError> {
    let expr = expr.trim();
    (!expr.is_empty())
        .then(|| Schedule::parse(key, expr, timezone))
        .transpose()
}

/// The sensor pokes at least once a second.
fn check_poke_interval(serve: &ServeConfig) -> Result<(), OrchestratorError> {
    if serve.poke_interval_secs == 0 {
        return Err(OrchestratorError::Setting {
            key: "poke_interval_secs",
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(())
}

/// The orchestrator's settings of `[serve]` and `[notify]`, parsed.
struct Settings {
    timezone: Tz,
    schedules: Schedules,
    reconciler: Option<reconciler::Reconciler>,
    retries: RetryPolicy,
    notifier: Notifier,
}

impl Settings {
    /// Parses the settings of `config` (a reconciliation handled up to
    /// `now`); fails listing every bad one.
    fn parse(
        config: &crate::config::Config,
        now: DateTime<Utc>,
    ) -> Result<Settings, Vec<OrchestratorError>> {
        let serve = &config.serve;
        let mut problems = Vec::new();
        let timezone = kept(&mut problems, schedule::time_zone(&serve.timezone));
        let mut schedule = |key, expr: &str| {
            let tz = timezone?;
            kept(&mut problems, parse_schedule(key, expr, tz))
        };
        let extract = schedule("extract_schedule", &serve.extract_schedule);
        let process = schedule("process_schedule", &serve.process_schedule);
        let reconciler = timezone
            .and_then(|tz| kept(&mut problems, reconciler::Reconciler::new(serve, tz, now)));
        let retries = kept(&mut problems, RetryPolicy::from_config(serve));
        kept(&mut problems, check_poke_interval(serve));
        let notifier = kept(&mut problems, Notifier::new(&config.notify));
        match (timezone, extract, process, reconciler, retries, notifier) {
            (
                Some(timezone),
                Some(extract),
                Some(process),
                Some(reconciler),
                Some(retries),
                Some(notifier),
            ) if problems.is_empty() => Ok(Settings {
                timezone,
                schedules: Schedules {
                    extract,
                    process,
                    catchup: serve.catchup,
                },
                reconciler,
                retries,
                notifier,
            }),
            _ => Err(problems),
        }
    }
}

/// The value of `result`, or `None` with its error added to `problems`.
fn kept<T, E: Into<OrchestratorError>>(
    problems: &mut Vec<OrchestratorError>,
    result: Result<T, E>,
) -> Option<T> {
    result.map_err(|e| problems.push(e.into())).ok()
}

/// The orchestrator of one DAG over one pipeline.
#[derive(Debug)]
pub struct Orchestrator {
    pub dag_id: String,
    /// Other ids the API accepts for the DAG (`dag_aliases`).
    pub dag_aliases: Vec<String>,
    pub pipeline: Pipeline,
    pub history: History,
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    retries: RetryPolicy,
    sensor: SensorPolicy,
    schedules: Schedules,
    /// The scheduled reconciliation, if `reconcile_schedule` is set.
    reconciler: Option<reconciler::Reconciler>,
    max_active_runs: usize,
    timezone: Tz,
    wake: tokio::sync::Notify,
}

impl Orchestrator {
    /// Sets up the orchestrator from the pipeline's `[serve]` and `[notify]`
    /// tables; fails naming the first bad setting.
    pub fn new(
        pipeline: Pipeline,
        clock: Arc<dyn Clock>,
    ) -> Result<Orchestrator, OrchestratorError> {
        let settings = Settings::parse(&pipeline.config, clock.now())
            .map_err(|mut problems| problems.swap_remove(0))?;
        let serve = &pipeline.config.serve;
        Ok(Orchestrator {
            dag_id: serve.dag_id.clone(),
            dag_aliases: serve.dag_aliases.clone(),
            history: History::open(&serve.history)?,
            notifier: settings.notifier,
            retries: settings.retries,
            sensor: SensorPolicy {
                poke_interval: Duration::from_secs(serve.poke_interval_secs),
                timeout: Duration::from_secs(serve.sensor_timeout_secs),
                max_row_bytes: pipeline.config.max_row_bytes,
            },
            schedules: settings.schedules,
            reconciler: settings.reconciler,
            max_active_runs: serve.max_active_runs.max(1),
            timezone: settings.timezone,
            wake: tokio::sync::Notify::new(),
            clock,
            pipeline,
        })
    }

    /// Every problem of the orchestrator's settings in `config` (time zone,
    /// schedules, retries, notifications), without opening the history.
    pub fn problems(config: &crate::config::Config) -> Vec<String> {
        match Settings::parse(config, Utc::now()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    /// The current time of the orchestrator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The time zone of the schedules (and of default logical dates).
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Takes the executor lock of the history, or says who holds it.
    pub fn try_lock(&self) -> Result<lock::Acquired, OrchestratorError> {
        Ok(lock::try_acquire(self.history.path())?)
    }

    /// Adds a manual run (the API). Without a logical date, a run whose
    /// `conf` names raw files is dated by their names (else today), any
    /// other yesterday, in the schedules' time zone.
    pub fn trigger(&self, trigger: Trigger) -> Result<RunRecord, OrchestratorError> {
        let now = self.clock.now();
        let conf = match trigger.conf {
            Value::Null => Value::Object(Default::default()),
            Value::Object(map) => Value::Object(map),
            _ => {
                return Err(OrchestratorError::Conf {
                    field: "conf".to_string(),
                    reason: "must be a JSON object".to_string(),
                });
            }
        };
        let named = conf::named_files(&conf)?;
        conf::lookback(&conf)?;
        self.check_in_raw_store(&named)?;
        let names_files = !named.is_empty();
        let conf_problem = |reason: String| OrchestratorError::Conf {
            field: "conf".to_string(),
            reason,
        };
        // A run that names its files is dated by their names when they
        // carry a date, else by the trigger's day; any other by yesterday,
        // like a scheduled run. A date given must be the names' date.
        let logical_date = match trigger.logical_date {
            Some(given) => match named.date() {
                Ok(Some(in_names)) if in_names != given => {
                    return Err(conf_problem(format!(
                        "the files' names carry {in_names}, but logical_date is {given}: name that date's files, or leave logical_date out"
                    )));
                }
                _ => given,
            },
            None if names_files => named
                .date()
                .map_err(|e| conf_problem(e.to_string()))?
                .unwrap_or_else(|| self.today(now)),
            None => self.yesterday(now),
        };
        self.check_not_future(logical_date, now)?;
        // The source holds today's state: extracting it is right for the
        // latest date only, never over an older date's archived raw files
        // (unless `conf.extract` says so).
        let extract = match &conf["extract"] {
            Value::Null => !names_files && logical_date >= self.yesterday(now),
            Value::Bool(extract) => *extract,
            _ => {
                return Err(OrchestratorError::Conf {
                    field: "extract".to_string(),
                    reason: "must be true or false".to_string(),
                });
            }
        };
        let mut run = NewRun {
            run_id: String::new(),
            dag_id: self.dag_id.clone(),
            logical_date,
            logical_time: trigger.logical_time,
            run_type: RunType::Manual,
            conf,
            extract,
            process_after: None,
        };
        let created = match trigger.run_id {
            Some(run_id) => self.create(NewRun { run_id, ..run })?,
            None => {
                // Triggers within the same microsecond get a numbered id.
                let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let mut attempt = 1;
                loop {
                    run.run_id = match attempt {
                        1 => format!("manual__{stamp}"),
                        n => format!("manual__{stamp}__{n}"),
                    };
                    match self.create(run.clone()) {
                        Err(OrchestratorError::History(HistoryError::DuplicateRunId(_)))
                            if attempt < 1000 =>
                        {
                            attempt += 1;
                        }
                        result => break result?,
                    }
                }
            }
        };
        self.wake.notify_one();
        Ok(created)
    }

    /// Adds a run for each date from `from` to `to`, in order, skipping
    /// dates that already succeeded (unless `force`) or have an active run
    /// (unless `adopt`: this process holds the executor lock, so an active
    /// run was left by a process that stopped, and is carried on). Backfill
    /// runs process the raw files already there unless `extract`; `conf`
    /// goes into each run's.
    pub fn backfill(
        &self,
        dates: (NaiveDate, NaiveDate),
        force: bool,
        extract: bool,
        conf: serde_json::Map<String, Value>,
        adopt: bool,
    ) -> Result<Vec<BackfillDate>, OrchestratorError> {
        let (from, to) = dates;
        let mut planned = Vec::new();
        let now = self.clock.now();
        self.check_not_future(to, now)?;
        for date in from.iter_days().take_while(|d| *d <= to) {
            let status = self.history.date_status(&self.dag_id, date)?;
            if status.active {
                match self.history.active_run(&self.dag_id, date)? {
                    // Left by a process that stopped (this one holds the
                    // executor lock): carry it on.
                    Some(run) if adopt => planned.push(BackfillDate::Queued(run)),
                    _ => planned.push(BackfillDate::Skipped {
                        date,
                        reason: "a run of this date is active".to_string(),
                    }),
                }
                continue;
            }
            if status.succeeded && !force {
                planned.push(BackfillDate::Skipped {
                    date,
                    reason: "already succeeded (--force runs it again)".to_string(),
                });
                continue;
            }
            let run = self.create(NewRun {
                run_id: format!("backfill__{date}__{}", now.timestamp_millis()),
                dag_id: self.dag_id.clone(),
                logical_date: date,
                logical_time: None,
                run_type: RunType::Backfill,
                conf: Value::Object(conf.clone()),
                extract,
                process_after: None,
            })?;
            planned.push(BackfillDate::Queued(run));
        }
        self.wake.notify_one();
        Ok(planned)
    }

    /// Queues the failed tasks of a failed run again (`runs retry`),
    /// with `conf` added to the run's; with `adopt` (this process holds
    /// the executor lock), an active run left by a stopped process is
    /// returned as it is, to be carried on.
    pub fn retry(
        &self,
        run_id: &str,
        conf: serde_json::Map<String, Value>,
        adopt: bool,
    ) -> Result<RunRecord, OrchestratorError> {
        let found = self.history.find_run(run_id)?;
        if adopt && matches!(found.state, RunState::Queued | RunState::Running) {
            // Left by a process that stopped: carry it on as it is.
            return Ok(found);
        }
        let conf = renewed_conf(&found, conf);
        let run = self
            .history
            .retry_run(run_id, 1 + self.retries.retries, &conf)?;
        self.wake.notify_one();
        Ok(run)
    }

    /// Whether the DAG is paused: no scheduled runs are created, and the
    /// daemon starts no queued run (those running go on).
    pub fn is_paused(&self) -> Result<bool, OrchestratorError> {
        Ok(self.history.is_paused(&self.dag_id)?)
    }

    /// Pauses or unpauses the DAG. Unpaused, the schedules catch up on the
    /// fire times missed meanwhile as after a restart (`catchup`).
    pub fn set_paused(&self, paused: bool) -> Result<(), OrchestratorError> {
        self.history.set_paused(&self.dag_id, paused)?;
        tracing::info!(
            "{} {}",
            self.dag_id,
            if paused { "paused" } else { "unpaused" }
        );
        self.wake.notify_one();
        Ok(())
    }

    fn create(&self, run: NewRun) -> Result<RunRecord, OrchestratorError> {
        let now = self.clock.now();
        Ok(self
            .history
            .create_run(&run, |task| self.retries.max_tries(task), now)?)
    }

    /// Fails for a logical date after today in the schedules' time zone.
    fn check_not_future(
        &self,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<(), OrchestratorError> {
        let today = now.with_timezone(&self.timezone).date_naive();
        if date > today {
            return Err(OrchestratorError::FutureDate { date, today });
        }
        Ok(())
    }

    fn yesterday(&self, now: DateTime<Utc>) -> NaiveDate {
        let today = self.today(now);
        today.checked_sub_days(Days::new(1)).unwrap_or(today)
    }

    /// Fails naming the first file that is not in the raw zone's store.
    fn check_in_raw_store(&self, named: &NamedFiles) -> Result<(), OrchestratorError> {
        let raw = &self.pipeline.raw;
        match named.iter().find(|(_, file)| raw.find(file).is_none()) {
            Some((table, file)) => Err(OrchestratorError::Conf {
                field: "conf".to_string(),
                reason: format!(
                    "the {table} file {} is not in the raw zone's store ({raw}): name a file there, without a query, fragment, user or port",
                    crate::text::clip(file, crate::text::VALUE_CHARS)
                ),
            }),
            None => Ok(()),
        }
    }

    /// The day `now` falls on in the schedules' time zone.
    fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.timezone).date_naive()
    }

    /// The daemon's loop: creates scheduled runs when due, and executes
    /// queued runs (at most `max_active_runs` at once, oldest first).
    /// Runs a previous process left `running` are resumed first. It never
    /// returns: a history that cannot be read or written (another process
    /// holding its lock, say) is logged and tried again, and a run whose
    /// execution panicked is failed with the panic's message.
    pub async fn run_scheduler(self: Arc<Self>) {
        let mut executing: JoinSet<(String, RunState)> = JoinSet::new();
        // The runs executing, by the task executing each.
        let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut resumed = false;
        let mut failures = 0u32;
        loop {
            let step = self.start_due_runs(&mut resumed, &mut executing, &mut in_flight);
            self.start_due_reconcile();
            let now = self.clock.now();
            let wait = match step {
                Ok(()) => {
                    failures = 0;
                    let reconcile = self.reconciler.as_ref().and_then(|r| r.next_wake(now));
                    self.schedules
                        .next_wake(now)
                        .into_iter()
                        .chain(reconcile)
                        .min()
                        .and_then(|next| (next - now).to_std().ok())
                        .map_or(POLL, |until| until.min(POLL))
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!("the scheduler will try again: {e}");
                    }
                    POLL
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.clock.sleep(wait) => {}
                Some(done) = executing.join_next_with_id() => {
                    let id = match &done {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    let run_id = in_flight.remove(&id).unwrap_or_default();
                    match done {
                        Ok((_, (_, state))) => tracing::info!("run {run_id} ended: {}", state.as_str()),
                        Err(e) => tracing::error!("run {run_id} stopped: {e}"),
                    }
                }
            }
        }
    }

    /// One turn of the daemon's loop: resumes interrupted runs (once),
    /// creates the scheduled runs due, and starts queued runs.
    fn start_due_runs(
        self: &Arc<Self>,
        resumed: &mut bool,
        executing: &mut JoinSet<(String, RunState)>,
        in_flight: &mut HashMap<tokio::task::Id, String>,
    ) -> Result<(), OrchestratorError> {
        if !*resumed {
            for run_id in self
                .history
                .resume_interrupted(&self.dag_id, self.clock.now())?
            {
                tracing::warn!(
                    "resuming run {run_id}, interrupted when the previous process stopped"
                );
            }
            *resumed = true;
        }
        self.schedule_due_runs()?;
        let paused = self.is_paused()?;
        for run in self.history.active_runs(&self.dag_id)? {
            if in_flight.len() >= self.max_active_runs {
                break;
            }
            if paused && run.state == RunState::Queued {
                continue;
            }
            if !in_flight.values().any(|id| *id == run.run_id) {
                let me = Arc::clone(self);
                let run_id = run.run_id.clone();
                let task = executing.spawn(async move {
                    let state = me.execute_to_the_end(&run.run_id).await;
                    (run.run_id, state)
                });
                in_flight.insert(task.id(), run_id);
            }
        }
        Ok(())
    }

    /// Executes `run_id` until it ends, whatever happens: a history that is
    /// busy is waited for, and a panic fails the run with its message.
    async fn execute_to_the_end(&self, run_id: &str) -> RunState {
        loop {
            let attempt = std::panic::AssertUnwindSafe(self.execute(run_id)).catch_unwind();
            let reason = match attempt.await {
                Ok(Ok(state)) => return state,
                Ok(Err(OrchestratorError::History(e))) if e.is_busy() => {
                    tracing::warn!("run {run_id}: {e}; resuming it");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Ok(Err(e)) => format!("the orchestrator could not go on with this run: {e}"),
                Err(panic) => format!(
                    "the orchestrator panicked executing this run: {}",
                    crate::text::panic_message(&panic)
                ),
            };
            let reason = crate::text::clip(&reason, crate::text::MESSAGE_CHARS);
            tracing::error!("run {run_id}: {reason}");
            let now = self.clock.now();
            return match self.history.end_run(run_id, RunState::Failed, &reason, now) {
                Ok(run) => run.state,
                Err(e) => {
                    tracing::error!("run {run_id}: cannot record its end: {e}");
                    RunState::Failed
                }
            };
        }
    }

    /// Creates the scheduled runs due now (see [`schedule`] for the
    /// catch-up policy) and records what was handled.
    pub fn schedule_due_runs(&self) -> Result<Vec<RunRecord>, OrchestratorError> {
        if self.is_paused()? {
            // What was not handled is caught up on when unpaused.
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let handled = self
            .history
            .handled(&self.dag_id)?
            .unwrap_or(Handled::at(now));
        let (due, handled) = self.schedules.due(handled, now);
        let mut created = Vec::new();
        for due in due {
            let status = self.history.date_status(&self.dag_id, due.logical_date)?;
            if status.scheduled || status.active {
                continue;
            }
            created.push(self.create(NewRun {
                run_id: format!("scheduled__{}", due.logical_date),
                dag_id: self.dag_id.clone(),
                logical_date: due.logical_date,
                logical_time: None,
                run_type: RunType::Scheduled,
                conf: Value::Object(Default::default()),
                extract: due.extract,
                process_after: due.process_after,
            })?);
        }
        self.history.set_handled(&self.dag_id, handled)?;
        Ok(created)
    }

    /// Executes the run `run_id` until every task is finished: starts each
    /// task once its upstream tasks are done (the extractions in parallel),
    /// waits for `process_after` and retry delays, records every attempt.
    pub async fn execute(&self, run_id: &str) -> Result<RunState, OrchestratorError> {
        let run = self.history.find_run(run_id)?;
        self.history.resume(run_id, self.clock.now())?;
        if !self
            .history
            .set_run_state(run_id, RunState::Running, self.clock.now())?
        {
            return Ok(self.history.find_run(run_id)?.state);
        }
        let stage = Mutex::new(Stage::default());
        type Attempt<'a> = Pin<
            Box<dyn Future<Output = (TaskId, u32, Result<tasks::Done, TaskError>)> + Send + 'a>,
        >;
        let mut in_flight: FuturesUnordered<Attempt<'_>> = FuturesUnordered::new();
        let mut publishing = false;
        // The tasks whose attempt is in flight here: a user who ended the
        // run and cleared it meanwhile queues them again, but they are not
        // started twice.
        let mut running: HashSet<TaskId> = HashSet::new();
        loop {
            // A user who ended the run (`runs cancel`, the API) decided:
            // what is in flight is dropped, which stops it, but for a
            // publication, which finishes first (it may be between two
            // tables' commits).
            let current = self.patiently(|| self.history.find_run(run_id)).await?;
            let ended = current.state.is_ended();
            if ended && !publishing {
                return Ok(current.state);
            }
            let now = self.clock.now();
            let records = if ended {
                Vec::new()
            } else {
                self.patiently(|| self.history.tasks(run_id)).await?
            };
            let states: HashMap<TaskId, TaskState> =
                records.iter().map(|t| (t.task, t.state)).collect();
            let mut next_wake: Option<DateTime<Utc>> = None;
            let mut changed = false;
            for record in &records {
                if !matches!(record.state, TaskState::Queued | TaskState::UpForRetry) {
                    continue;
                }
                match dag::readiness(record.task, |t| states[&t]) {
                    Readiness::Waiting => {}
                    Readiness::Blocked => {
                        let blocked = TaskState::UpstreamFailed;
                        self.patiently(|| {
                            self.history.set_task_state(run_id, record.task, blocked)
                        })
                        .await?;
                        changed = true;
                    }
                    Readiness::Ready if running.contains(&record.task) => {}
                    Readiness::Ready => {
                        let not_before = [
                            record.next_try_at,
                            run.process_after.filter(|_| !record.task.extracts()),
                        ]
                        .into_iter()
                        .flatten()
                        .max();
                        if let Some(time) = not_before.filter(|t| *t > now) {
                            next_wake = Some(next_wake.map_or(time, |w| w.min(time)));
                            continue;
                        }
                        let try_number = self
                            .patiently(|| self.history.start_task(run_id, record.task, now))
                            .await?;
                        publishing |= record.task == TaskId::Publish;
                        running.insert(record.task);
                        let (task, run, stage) = (record.task, &run, &stage);
                        in_flight.push(Box::pin(async move {
                            let attempt =
                                std::panic::AssertUnwindSafe(tasks::run(self, run, task, stage));
                            let result = attempt
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|panic| Err(TaskError::panicked(task, &panic)));
                            (task, try_number, result)
                        }));
                    }
                }
            }
            if changed {
                continue;
            }
            if in_flight.is_empty() {
                let Some(wake) = next_wake else { break };
                let until = (wake - now).to_std().unwrap_or_default().min(POLL);
                self.clock.sleep(until).await;
                continue;
            }
            let wait = async {
                match next_wake {
                    Some(wake) => {
                        let until = (wake - now).to_std().unwrap_or_default();
                        self.clock.sleep(until).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((task, try_number, result)) = in_flight.next() => {
                    publishing &= task != TaskId::Publish;
                    running.remove(&task);
                    self.patiently(|| self.record(run_id, task, try_number, &result)).await?;
                }
                _ = wait => {}
                // Real time, whatever the injected clock: the attempts in
                // flight keep running across this wake, which only looks
                // whether a user ended the run.
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        let tasks = self.patiently(|| self.history.tasks(run_id)).await?;
        let state = if tasks.iter().all(|t| t.state.lets_downstream_run()) {
            RunState::Success
        } else {
            RunState::Failed
        };
        let now = self.clock.now();
        if self
            .patiently(|| self.history.set_run_state(run_id, state, now))
            .await?
        {
            Ok(state)
        } else {
            Ok(self
                .patiently(|| self.history.find_run(run_id))
                .await?
                .state)
        }
    }

    /// Runs `operation` on the history, waiting out another process's
    /// hold on it (a `sqlite3` shell, a backup), so that an attempt in
    /// flight is not dropped for it.
    async fn patiently<T>(
        &self,
        operation: impl Fn() -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        let mut told = false;
        loop {
            match operation() {
                Err(e) if e.is_busy() => {
                    if !told {
                        tracing::warn!("{e}; waiting");
                        told = true;
                    }
                    tokio::time::sleep(POLL).await;
                }
                result => return result,
            }
        }
    }

    /// Records how an attempt ended: success, a retry after the backoff, or
    /// a failure for good.
    fn record(
        &self,
        run_id: &str,
        task: TaskId,
        try_number: u32,
        result: &Result<tasks::Done, TaskError>,
    ) -> Result<(), HistoryError> {
        let now = self.clock.now();
        let max_tries = self
            .history
            .tasks(run_id)?
            .into_iter()
            .find(|t| t.task == task)
            .map_or(1, |t| t.max_tries);
        let outcome = match result {
            Ok((figures, output)) => Outcome::Success {
                figures: figures.clone(),
                output: output.clone(),
            },
            Err(error) if error.stage_lost => {
                let outcome = Outcome::Failed {
                    error: error.message.clone(),
                    output: error.output.clone(),
                };
                self.history
                    .finish_task(run_id, task, try_number, &outcome, now)?;
                self.history.restage(run_id)?;
                return Ok(());
            }
            Err(error) if error.retryable && try_number < max_tries => {
                let delay = self.retries.delay_after(task, try_number);
                tracing::warn!(
                    "{run_id} {task} attempt {try_number} failed: {}; retrying in {delay:?}",
                    error.message
                );
                Outcome::Retry {
                    error: error.message.clone(),
                    next_try_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                }
            }
            Err(error) => {
                tracing::error!("{run_id} {task} failed: {}", error.message);
                Outcome::Failed {
                    error: error.message.clone(),
                    output: error.output.clone(),
                }
            }
        };
        self.history
            .finish_task(run_id, task, try_number, &outcome, now)?;
        Ok(())
    }

    /// Takes the executor lock of the history when no other process holds
    /// it. Whoever takes it first recovers the runs a process that held it
    /// before left behind (killed, or interrupted with Ctrl-C): their
    /// interrupted attempts are closed and the tasks queued again, so that
    /// this process (or the daemon) carries them on. `None` when a daemon
    /// executes the runs.
    pub fn take_executor(&self) -> Result<Option<lock::ExecutorLock>, OrchestratorError> {
        match self.try_lock()? {
            lock::Acquired::Held(lock) => {
                for run_id in self
                    .history
                    .resume_interrupted(&self.dag_id, self.clock.now())?
                {
                    tracing::warn!("recovering run {run_id}: the process executing it stopped");
                }
                Ok(Some(lock))
            }
            lock::Acquired::Busy { holder } => {
                tracing::info!("the daemon ({holder}) executes the runs; waiting for them");
                Ok(None)
            }
        }
    }

    /// Sees `run_ids` through, in order (`backfill`, `runs retry`): this
    /// process executes them when it holds the executor lock
    /// ([`Orchestrator::take_executor`]); otherwise the daemon executes
    /// them and this waits. Calls `on_end` as each run ends; returns each
    /// final state.
    pub async fn see_through(
        &self,
        run_ids: &[String],
        executor: Option<&lock::ExecutorLock>,
        mut on_end: impl FnMut(&str, RunState),
    ) -> Result<BTreeMap<String, RunState>, OrchestratorError> {
        let mut states = BTreeMap::new();
        for run_id in run_ids {
            let state = match executor {
                Some(_) => self.execute(run_id).await?,
                None => self.wait_for(run_id).await?,
            };
            on_end(run_id, state);
            states.insert(run_id.clone(), state);
        }
        Ok(states)
    }

    /// Ends an active run as failed (`runs cancel`, the API's PATCH, a
    /// `backfill` interrupted with Ctrl-C) or as a success (the API's
    /// PATCH): the process executing it stops it within [`POLL`].
    pub fn end(
        &self,
        run_id: &str,
        state: RunState,
        reason: &str,
    ) -> Result<RunRecord, OrchestratorError> {
        let run = self
            .history
            .end_run(run_id, state, reason, self.clock.now())?;
        self.wake.notify_one();
        Ok(run)
    }

    /// Waits until another process has finished `run_id`.
    async fn wait_for(&self, run_id: &str) -> Result<RunState, OrchestratorError> {
        loop {
            let run = self.history.find_run(run_id)?;
            if run.state.is_ended() {
                return Ok(run.state);
            }
            self.clock.sleep(POLL).await;
        }
    }
}
