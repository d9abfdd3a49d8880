//! The orchestrator against an injected clock ([`TestClock`]): schedules,
//! sensor pokes, timeouts and retry backoffs run in virtual time, so the
//! tests never sleep and their timings are exact.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::Orchestrator;
use super::clock::{Clock, TestClock};
use super::dag::{RunState, TaskId, TaskState};
use super::history::{NewRun, RunType, TaskRecord};
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::raw::{Manifest, ManifestEntry, Window};
use crate::schema::Table;
use crate::storage::Location;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn golden_date() -> NaiveDate {
    "2026-01-10".parse().unwrap()
}

/// A pipeline in `dir` (SQLite source, local raw zone and lake, history)
/// with one-minute pokes, a one-hour sensor timeout and two retries a
/// minute apart, doubling.
fn config(dir: &Path) -> Config {
    let mut config = Config {
        source: format!("sqlite://{}", dir.join("source.db").display()),
        raw: dir.join("raw").display().to_string(),
        lake: dir.join("lake").display().to_string(),
        ..Config::default()
    };
    config.serve.history = dir.join("history.db");
    config.serve.poke_interval_secs = 60;
    config.serve.sensor_timeout_secs = 3600;
    config.serve.retries = 2;
    config.serve.retry_delay_secs = 60;
    config.serve.retry_backoff = 2.0;
    config
}

fn orchestrator(config: Config, now: &str) -> Orchestrator {
    orchestrator_with(config, Arc::new(TestClock::at(utc(now))))
}

fn orchestrator_with(config: Config, clock: Arc<TestClock>) -> Orchestrator {
    Orchestrator::new(Pipeline::new(config).unwrap(), clock).unwrap()
}

/// Drops the golden fixture's five files into the raw zone for `date`.
fn drop_golden_files(raw: &Path, date: NaiveDate) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/golden");
    for table in Table::ALL {
        let text = std::fs::read(golden.join(format!("{table}.csv"))).unwrap();
        let folder = raw.join(table.name());
        std::fs::create_dir_all(&folder).unwrap();
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&text).unwrap();
        std::fs::write(
            folder.join(format!("{table}_{date}.csv.gz")),
            gzip.finish().unwrap(),
        )
        .unwrap();
    }
}

fn processing_run(orchestrator: &Orchestrator, date: NaiveDate) -> String {
    let run = NewRun {
        run_id: format!("backfill__{date}"),
        dag_id: orchestrator.dag_id.clone(),
        logical_date: date,
        logical_time: None,
        run_type: RunType::Backfill,
        conf: serde_json::json!({}),
        extract: false,
        process_after: None,
    };
    orchestrator.create(run).unwrap().run_id
}

fn task(tasks: &[TaskRecord], id: TaskId) -> &TaskRecord {
    tasks.iter().find(|t| t.task == id).unwrap()
}

#[tokio::test]
async fn the_sensor_times_out_after_an_hour_and_nothing_runs_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let run_id = processing_run(&o, golden_date());
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Failed);

    let tasks = o.history.tasks(&run_id).unwrap();
    let sensor = task(&tasks, TaskId::WaitForRaw);
    assert_eq!(sensor.state, TaskState::Failed);
    assert_eq!(sensor.try_number, 1, "a timeout is not retried");
    let waited = sensor.end_date.unwrap() - sensor.start_date.unwrap();
    assert_eq!(waited.num_seconds(), 3600);
    let missing: Vec<&str> = sensor.output["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 5, "{missing:?}");
    assert!(
        missing.contains(&"sales/sales_2026-01-10.csv.gz"),
        "{missing:?}"
    );
    for id in [TaskId::Transform, TaskId::Quality, TaskId::Publish] {
        assert_eq!(task(&tasks, id).state, TaskState::UpstreamFailed, "{id}");
    }
    let notify = task(&tasks, TaskId::Notify);
    assert_eq!(notify.state, TaskState::Success);
    assert_eq!(notify.figures["event"], "sensor_timeout");
    assert!(
        !dir.path()
            .join("lake")
            .join("weekly_sales_inventory")
            .exists()
    );
}

#[tokio::test]
async fn the_sensor_waits_for_files_that_arrive_late_then_the_run_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock::at(utc("2026-01-11T03:00:00Z")));
    let raw = dir.path().join("raw");
    clock.on(utc("2026-01-11T03:25:30Z"), move || {
        drop_golden_files(&raw, golden_date())
    });
    let o = orchestrator_with(config(dir.path()), clock);
    let run_id = processing_run(&o, golden_date());
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Success);

    let tasks = o.history.tasks(&run_id).unwrap();
    let sensor = task(&tasks, TaskId::WaitForRaw);
    // Checks at 0, 1, ..., 26 minutes: the files landed at 25.5.
    let waited = sensor.end_date.unwrap() - sensor.start_date.unwrap();
    assert_eq!(waited.num_seconds(), 26 * 60);
    assert_eq!(task(&tasks, TaskId::Quality).figures["rows_written"], 9);
    assert!(task(&tasks, TaskId::Publish).figures["versions"]["weekly_sales_inventory"].is_u64());
    for id in TaskId::all().into_iter().filter(|t| t.extracts()) {
        assert_eq!(task(&tasks, id).state, TaskState::Skipped, "{id}");
    }
}

#[tokio::test]
async fn a_failing_task_is_retried_with_exponential_backoff_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let raw_dir = dir.path().join("raw");
    drop_golden_files(&raw_dir, golden_date());
    // A manifest whose checksums do not match the files: every check of
    // the sensor fails (an ordinary failure, unlike a timeout).
    let raw = Location::parse(&raw_dir.display().to_string(), &Default::default()).unwrap();
    let tables = Table::ALL
        .into_iter()
        .map(|table| {
            let file = format!("{table}/{table}_{}.csv.gz", golden_date());
            let bytes = std::fs::metadata(raw_dir.join(&file)).unwrap().len();
            let entry = ManifestEntry {
                file,
                rows: 1,
                bytes,
                sha256: "0".repeat(64),
                window: Window::FULL,
                sorted_by: Vec::new(),
            };
            (table.name().to_string(), entry)
        })
        .collect();
    let manifest = Manifest {
        date: golden_date(),
        tables,
    };
    manifest.write(&raw).await.unwrap();

    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let run_id = processing_run(&o, golden_date());
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Failed);

    let attempts: Vec<_> = o
        .history
        .attempts(&run_id)
        .unwrap()
        .into_iter()
        .filter(|a| a.task == TaskId::WaitForRaw)
        .collect();
    let starts: Vec<i64> = attempts.iter().map(|a| a.start_date.timestamp()).collect();
    assert_eq!(starts.len(), 3, "1 try + 2 retries");
    assert_eq!(
        starts[1] - starts[0],
        60,
        "first retry after retry_delay_secs"
    );
    assert_eq!(
        starts[2] - starts[1],
        120,
        "second retry after twice as long"
    );
    let states: Vec<TaskState> = attempts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            TaskState::UpForRetry,
            TaskState::UpForRetry,
            TaskState::Failed
        ]
    );
    let tasks = o.history.tasks(&run_id).unwrap();
    let sensor = task(&tasks, TaskId::WaitForRaw);
    assert_eq!(
        (sensor.state, sensor.try_number, sensor.max_tries),
        (TaskState::Failed, 3, 3)
    );
    assert!(
        sensor.error.as_deref().unwrap().contains("sha256"),
        "{:?}",
        sensor.error
    );
    assert_eq!(
        task(&tasks, TaskId::Transform).state,
        TaskState::UpstreamFailed
    );
    assert_eq!(task(&tasks, TaskId::Notify).figures["event"], "failure");
}

#[tokio::test]
async fn a_data_quality_failure_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    drop_golden_files(&dir.path().join("raw"), golden_date());
    // The sales file's first row twice: a duplicate trans_id.
    let sales = dir.path().join("raw/sales/sales_2026-01-10.csv.gz");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/golden/sales.csv");
    let text = std::fs::read_to_string(golden).unwrap();
    let duplicated = format!("{text}{}\n", text.lines().nth(1).unwrap());
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(duplicated.as_bytes()).unwrap();
    std::fs::write(sales, gzip.finish().unwrap()).unwrap();

    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let run_id = processing_run(&o, golden_date());
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Failed);
    let tasks = o.history.tasks(&run_id).unwrap();
    let quality = task(&tasks, TaskId::Quality);
    assert_eq!((quality.state, quality.try_number), (TaskState::Failed, 1));
    let error = quality.error.as_deref().unwrap();
    assert!(error.contains("duplicate trans_id"), "{error}");
    assert_eq!(
        task(&tasks, TaskId::Publish).state,
        TaskState::UpstreamFailed
    );
}

#[tokio::test]
async fn the_schedule_extracts_at_two_and_processes_at_three_yesterdays_date() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock::at(utc("2026-01-11T01:30:00Z")));
    let o = orchestrator_with(config(dir.path()), Arc::clone(&clock));
    assert!(
        o.schedule_due_runs().unwrap().is_empty(),
        "nothing before 02:00"
    );
    clock.sleep(std::time::Duration::from_secs(30 * 60)).await;
    let created = o.schedule_due_runs().unwrap();
    assert_eq!(created.len(), 1);
    let run = &created[0];
    assert_eq!(run.run_id, "scheduled__2026-01-10");
    assert_eq!(run.logical_date, golden_date());
    assert!(run.extract);
    assert_eq!(run.process_after, Some(utc("2026-01-11T03:00:00Z")));

    // The files arrive (from another producer) before 03:00; the sensor
    // still waits for 03:00. Extraction fails here (no source tables), so
    // use a processing-only copy of the schedule's timing.
    drop_golden_files(&dir.path().join("raw"), golden_date());
    let history = &o.history;
    let processing = o
        .create(NewRun {
            run_id: "process-only".to_string(),
            extract: false,
            ..new_run_like(run)
        })
        .unwrap_err();
    assert!(
        processing.to_string().contains("already has an active run"),
        "{processing}"
    );
    for table in Table::ALL {
        history
            .set_task_state(&run.run_id, TaskId::Extract(table), TaskState::Skipped)
            .unwrap();
    }
    history
        .set_task_state(&run.run_id, TaskId::WriteManifest, TaskState::Skipped)
        .unwrap();
    assert_eq!(o.execute(&run.run_id).await.unwrap(), RunState::Success);
    let tasks = history.tasks(&run.run_id).unwrap();
    assert_eq!(
        task(&tasks, TaskId::WaitForRaw).start_date,
        Some(utc("2026-01-11T03:00:00Z"))
    );
}

fn new_run_like(run: &super::history::RunRecord) -> NewRun {
    NewRun {
        run_id: run.run_id.clone(),
        dag_id: run.dag_id.clone(),
        logical_date: run.logical_date,
        logical_time: run.logical_time.clone(),
        run_type: run.run_type,
        conf: run.conf.clone(),
        extract: run.extract,
        process_after: run.process_after,
    }
}

#[tokio::test]
async fn a_restarted_daemon_keeps_its_schedule_and_catches_up_the_latest_date_only() {
    let dir = tempfile::tempdir().unwrap();
    let first = orchestrator(config(dir.path()), "2026-01-11T12:00:00Z");
    assert!(first.schedule_due_runs().unwrap().is_empty());
    drop(first);
    // Down for three days; the history remembers what was handled.
    let again = orchestrator(config(dir.path()), "2026-01-14T12:00:00Z");
    let created = again.schedule_due_runs().unwrap();
    let dates: Vec<String> = created.iter().map(|r| r.logical_date.to_string()).collect();
    assert_eq!(dates, ["2026-01-13"]);

    let mut catchup = config(dir.path());
    catchup.serve.catchup = true;
    let later = orchestrator(catchup, "2026-01-16T12:00:00Z");
    let dates: Vec<String> = later
        .schedule_due_runs()
        .unwrap()
        .iter()
        .map(|r| r.logical_date.to_string())
        .collect();
    assert_eq!(dates, ["2026-01-14", "2026-01-15"]);
}

#[tokio::test]
async fn a_paused_dag_schedules_nothing_and_catches_up_when_unpaused() {
    let dir = tempfile::tempdir().unwrap();
    let mut catchup = config(dir.path());
    catchup.serve.catchup = true;
    let clock = Arc::new(TestClock::at(utc("2026-01-11T12:00:00Z")));
    let o = orchestrator_with(catchup, Arc::clone(&clock));
    assert!(o.schedule_due_runs().unwrap().is_empty());
    o.set_paused(true).unwrap();
    clock
        .sleep(std::time::Duration::from_secs(3 * 86_400))
        .await;
    assert!(o.schedule_due_runs().unwrap().is_empty());
    assert!(o.history.active_runs(&o.dag_id).unwrap().is_empty());
    o.set_paused(false).unwrap();
    let dates: Vec<String> = o
        .schedule_due_runs()
        .unwrap()
        .iter()
        .map(|r| r.logical_date.to_string())
        .collect();
    assert_eq!(dates, ["2026-01-11", "2026-01-12", "2026-01-13"]);
}

#[tokio::test]
async fn an_interrupted_task_is_resumed_and_the_staged_chain_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    drop_golden_files(&dir.path().join("raw"), golden_date());
    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let run_id = processing_run(&o, golden_date());
    // A previous process ran the sensor and transform, then died in quality.
    let now = o.now();
    o.history
        .set_run_state(&run_id, RunState::Running, now)
        .unwrap();
    for id in [TaskId::WaitForRaw, TaskId::Transform] {
        o.history.start_task(&run_id, id, now).unwrap();
        let done = super::history::Outcome::Success {
            figures: serde_json::json!({}),
            output: serde_json::Value::Null,
        };
        o.history.finish_task(&run_id, id, 1, &done, now).unwrap();
    }
    o.history.start_task(&run_id, TaskId::Quality, now).unwrap();
    drop(o);

    let o = orchestrator(config(dir.path()), "2026-01-11T03:10:00Z");
    assert_eq!(
        o.history.resume_interrupted(&o.dag_id, o.now()).unwrap(),
        std::slice::from_ref(&run_id)
    );
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Success);
    let tasks = o.history.tasks(&run_id).unwrap();
    assert_eq!(
        task(&tasks, TaskId::WaitForRaw).try_number,
        1,
        "done work is kept"
    );
    assert_eq!(
        task(&tasks, TaskId::Transform).try_number,
        2,
        "staged output recomputed"
    );
    let attempts = o.history.attempts(&run_id).unwrap();
    let interrupted = attempts
        .iter()
        .find(|a| a.task == TaskId::Quality && a.try_number == 1)
        .unwrap();
    assert_eq!(interrupted.state, TaskState::Failed);
    assert!(
        interrupted
            .error
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
    // Each attempt's log says how it went.
    let lines = |task, try_number| -> Vec<String> {
        let log = o.history.task_log(&run_id, task, try_number).unwrap();
        log.into_iter().map(|l| l.line).collect()
    };
    assert_eq!(
        lines(TaskId::Quality, 1),
        [
            "attempt 1 of 3 started",
            "interrupted: the process running it stopped"
        ]
    );
    let second = lines(TaskId::Quality, 2);
    assert!(second[0].starts_with("attempt 2 of"), "{second:?}");
    assert!(second[1].starts_with("succeeded: {"), "{second:?}");
}

/// Triggers in the same instant without a run id each get their own id
/// (they used to collide within a millisecond and answer 409).
#[test]
fn triggers_in_the_same_instant_get_distinct_run_ids() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let mut ids = std::collections::BTreeSet::new();
    for day in 0..200 {
        let trigger = super::Trigger {
            logical_date: Some(golden_date() - chrono::Days::new(day)),
            ..super::Trigger::default()
        };
        ids.insert(o.trigger(trigger).unwrap().run_id);
    }
    assert_eq!(ids.len(), 200);
}

/// A trigger for a past date without `conf.files` processes the archived
/// raw files instead of extracting today's source over them; yesterday's
/// (the default) extracts, and `conf.extract` decides when given.
#[test]
fn a_trigger_for_a_past_date_does_not_extract_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let run = |date: &str, conf: serde_json::Value| {
        let trigger = super::Trigger {
            logical_date: Some(date.parse().unwrap()),
            conf,
            ..super::Trigger::default()
        };
        o.trigger(trigger).unwrap().extract
    };
    assert!(run("2026-01-10", serde_json::json!({})));
    assert!(!run("2025-12-01", serde_json::json!({})));
    assert!(run("2025-11-01", serde_json::json!({"extract": true})));
}

/// A run ended by a user while it waits on its sensor stops within
/// seconds, and stays ended: the executor's last word does not overwrite
/// the user's.
#[tokio::test]
async fn a_run_ended_by_a_user_stops_waiting_and_stays_ended() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.serve.poke_interval_secs = 1;
    let history_path = config.serve.history.clone();
    let o = Orchestrator::new(
        Pipeline::new(config).unwrap(),
        Arc::new(super::clock::SystemClock),
    )
    .unwrap();
    let run_id = processing_run(&o, golden_date());
    let cancelled = run_id.clone();
    // `shelfline runs cancel` from another process, a second in.
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let history = super::history::History::open(&history_path).unwrap();
        history
            .end_run(
                &cancelled,
                RunState::Failed,
                "cancelled by a test",
                Utc::now(),
            )
            .unwrap();
    });
    let started = std::time::Instant::now();
    assert_eq!(o.execute(&run_id).await.unwrap(), RunState::Failed);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    cancel.await.unwrap();
    let tasks = o.history.tasks(&run_id).unwrap();
    let sensor = task(&tasks, TaskId::WaitForRaw);
    assert_eq!(sensor.state, TaskState::Failed);
    assert_eq!(sensor.error.as_deref(), Some("cancelled by a test"));
    assert!(
        tasks
            .iter()
            .all(|t| !matches!(t.state, TaskState::Queued | TaskState::Running)),
        "{tasks:?}"
    );
    assert!(o.end(&run_id, RunState::Success, "again").is_err());
}

/// `clearTaskInstances` by run id: an older run of a date is refused (it
/// would publish over the latest), the latest is queued again with the
/// tasks that share the staged output and runs them once more; a second
/// clear while it is active fails and changes nothing.
#[tokio::test]
async fn a_clear_reruns_the_latest_run_of_a_date_and_refuses_an_older_one() {
    use super::ClearSelection;
    let dir = tempfile::tempdir().unwrap();
    drop_golden_files(&dir.path().join("raw"), golden_date());
    let o = orchestrator(config(dir.path()), "2026-01-11T03:00:00Z");
    let first = processing_run(&o, golden_date());
    assert_eq!(o.execute(&first).await.unwrap(), RunState::Success);
    let first_run = o.history.find_run(&first).unwrap();
    let second = o
        .create(NewRun {
            run_id: "second".to_string(),
            ..new_run_like(&first_run)
        })
        .unwrap()
        .run_id;
    assert_eq!(o.execute(&second).await.unwrap(), RunState::Success);

    let publish = |run_id: &str| ClearSelection {
        run_id: Some(run_id.to_string()),
        tasks: Some(vec![TaskId::Publish]),
        ..ClearSelection::default()
    };
    let refused = o.plan_clear(&publish(&first)).unwrap_err();
    assert!(refused.to_string().contains("not the latest"), "{refused}");
    let failed_only = ClearSelection {
        only_failed: true,
        ..publish(&second)
    };
    assert!(
        o.plan_clear(&failed_only).unwrap().is_empty(),
        "nothing failed"
    );
    let plan = o.plan_clear(&publish(&second)).unwrap();
    assert_eq!(
        plan[0].tasks,
        [
            TaskId::Transform,
            TaskId::Quality,
            TaskId::Publish,
            TaskId::Notify
        ]
    );
    o.apply_clear(&plan).unwrap();
    assert_eq!(o.history.find_run(&second).unwrap().state, RunState::Queued);
    assert!(o.apply_clear(&plan).is_err(), "the run is active now");
    assert_eq!(o.execute(&second).await.unwrap(), RunState::Success);
    let tasks = o.history.tasks(&second).unwrap();
    assert_eq!(task(&tasks, TaskId::Publish).try_number, 2);
    assert_eq!(task(&tasks, TaskId::WaitForRaw).try_number, 1);
}

/// A SQLite source of generated data from 2025-11-30 to 2026-01-09, in
/// the pipeline of `config`.
async fn generated_source(config: &Config) {
    let pipeline = Pipeline::new(config.clone()).unwrap();
    let spec = crate::datagen::DatagenSpec {
        scale_factor: 0.01,
        seed: 3,
        start: "2025-11-30".parse().unwrap(),
        days: 41,
    };
    tokio::task::spawn_blocking(move || pipeline.datagen(&spec, |_| {}).unwrap())
        .await
        .unwrap();
}

fn execute_sql(config: &Config, sql: &str) {
    let path = config.source.strip_prefix("sqlite://").unwrap();
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

async fn fact_csv(config: &Config) -> String {
    let pipeline = Pipeline::new(config.clone()).unwrap();
    let sql = "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key";
    let batches = crate::query::run(&pipeline.lake, config, sql)
        .await
        .unwrap();
    crate::query::render(&batches, crate::query::OutputFormat::Csv).unwrap()
}

/// The same configuration with a lake of its own, for full refreshes.
fn full_refresh(config: &Config, dir: &Path) -> Config {
    Config {
        lookback_days: None,
        raw: dir.join("raw-full").display().to_string(),
        lake: dir.join("lake-full").display().to_string(),
        ..config.clone()
    }
}

#[tokio::test]
async fn scheduled_nights_extract_the_window_of_lookback_days() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.lookback_days = Some(7);
    generated_source(&config).await;
    let full = full_refresh(&config, dir.path());
    let first: NaiveDate = "2026-01-07".parse().unwrap();
    Pipeline::new(full.clone())
        .unwrap()
        .run(first)
        .await
        .unwrap();
    let mut lake_start = full.clone();
    lake_start.lake.clone_from(&config.lake);
    Pipeline::new(lake_start).unwrap().run(first).await.unwrap();

    // The last day's facts are not in the source before its night: a
    // window ends on its night's date, a full refresh reads every row.
    execute_sql(
        &config,
        "CREATE TABLE sales_later AS SELECT * FROM sales WHERE trans_dt = '2026-01-09';
         DELETE FROM sales WHERE trans_dt = '2026-01-09';
         CREATE TABLE inventory_later AS SELECT * FROM inventory WHERE cal_dt = '2026-01-09';
         DELETE FROM inventory WHERE cal_dt = '2026-01-09';",
    );
    let clock = Arc::new(TestClock::at(utc("2026-01-09T01:30:00Z")));
    let o = orchestrator_with(config.clone(), Arc::clone(&clock));
    assert!(o.schedule_due_runs().unwrap().is_empty());
    for night in ["2026-01-08", "2026-01-09"] {
        let date: NaiveDate = night.parse().unwrap();
        if night == "2026-01-09" {
            execute_sql(
                &config,
                "INSERT INTO sales SELECT * FROM sales_later; INSERT INTO inventory SELECT * FROM inventory_later;",
            );
        }
        let extraction = utc(&format!("{}T02:30:00Z", date + chrono::Days::new(1)));
        // A late change inside the lookback, before the night's extraction.
        execute_sql(
            &config,
            &format!(
                "UPDATE sales SET sales_amt = sales_amt + 1 WHERE trans_dt = '{}'",
                date - chrono::Days::new(3)
            ),
        );
        clock.sleep((extraction - o.now()).to_std().unwrap()).await;
        let created = o.schedule_due_runs().unwrap();
        assert_eq!(created.len(), 1, "{night}");
        let run = &created[0];
        assert_eq!(run.logical_date, date);
        assert_eq!(o.execute(&run.run_id).await.unwrap(), RunState::Success);
        let tasks = o.history.tasks(&run.run_id).unwrap();
        let window = &task(&tasks, TaskId::Extract(Table::Sales)).figures["window"];
        // 7 days back is 2026-01-01 or 01-02, in the retail week that
        // starts on Sunday 2025-12-28.
        assert_eq!(
            window,
            &serde_json::json!({"from": "2025-12-28", "to": night})
        );
        assert_eq!(
            task(&tasks, TaskId::Extract(Table::Store)).figures["window"],
            "full"
        );
        Pipeline::new(full.clone())
            .unwrap()
            .run(date)
            .await
            .unwrap();
        assert_eq!(fact_csv(&config).await, fact_csv(&full).await, "{night}");
    }
}

/// A webhook receiver on loopback: the body of each POST it answers.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length || n == 0 {
                        break body.to_string();
                    }
                }
            };
            let _ = tx.send(serde_json::from_str(&body).unwrap());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_reconciliation_notifies_a_drift_and_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.lookback_days = Some(7);
    config.serve.reconcile_schedule = "0 5 * * 0".to_string();
    config.serve.reconcile_days = 28;
    config.serve.reconcile_repair = true;
    let (url, mut received) = webhook_receiver().await;
    config.notify.webhook = Some(crate::config::WebhookConfig {
        url,
        bearer_token_file: None,
        format: Default::default(),
        timeout_secs: 10,
        allow_plaintext_credentials: false,
    });
    generated_source(&config).await;
    let date: NaiveDate = "2026-01-10".parse().unwrap();
    let pipeline = Pipeline::new(Config {
        lookback_days: None,
        ..config.clone()
    })
    .unwrap();
    pipeline.run(date).await.unwrap();
    // A change three weeks back, beyond any night's window.
    execute_sql(
        &config,
        "UPDATE sales SET sales_qty = sales_qty + 2 WHERE trans_dt = '2025-12-16'",
    );

    // Saturday evening: the Sunday 05:00 reconciliation is not due yet.
    let clock = Arc::new(TestClock::at(utc("2026-01-10T20:00:00Z")));
    let o = Arc::new(orchestrator_with(config.clone(), Arc::clone(&clock)));
    let reconciler = o.reconciler.as_ref().unwrap();
    assert!(!reconciler.take_due(o.now()));
    clock.sleep(std::time::Duration::from_secs(9 * 3600)).await;
    assert!(reconciler.take_due(o.now()), "due at 05:00 on Sunday");
    assert!(!reconciler.take_due(o.now()), "only once");

    let report = o.reconcile().await.unwrap().unwrap();
    let weeks: Vec<_> = report.comparison.drifted.iter().map(|d| d.week).collect();
    assert_eq!(weeks, [(2025, 51)], "{report}");
    assert!(report.repaired.is_some(), "{report}");
    let sent = received.recv().await.unwrap();
    assert_eq!(sent["event"], "drift");
    assert_eq!(sent["repaired"], true);
    assert_eq!(sent["from"], "2025-12-14", "{sent}");
    assert_eq!(sent["to"], "2026-01-10", "{sent}");
    assert!(
        sent["weeks"][0]
            .as_str()
            .unwrap()
            .starts_with("2025 week 51 (2025-12-14 to 2025-12-20)"),
        "{sent}"
    );

    let full = full_refresh(&config, dir.path());
    Pipeline::new(full.clone())
        .unwrap()
        .run(date)
        .await
        .unwrap();
    assert_eq!(fact_csv(&config).await, fact_csv(&full).await);
    let again = o.reconcile().await.unwrap().unwrap();
    assert!(again.comparison.drifted.is_empty(), "{again}");
}
