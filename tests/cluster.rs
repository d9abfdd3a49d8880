//! The transform on a Ballista cluster (`engine = "ballista"`) publishes
//! the same lake as the local engine: the golden fixture in both raw
//! formats and an SF 0.1 data set, on the cluster `.ci/cluster` starts
//! (scheduler and two executors from the shelfline binary). Bad input
//! fails naming file and column; a cluster without executors, or one that
//! loses an executor mid-job, is handled as the README says.

mod common;

use std::time::Duration;

use chrono::NaiveDate;
use common::cluster::{TestCluster, shared_scheduler, wait_until};
use common::{Workspace, assert_same_csv, golden_date, golden_tables, s3};
use object_store::ObjectStoreExt as _;
use shelfline::config::{Config, EngineKind};
use shelfline::datagen::DatagenSpec;
use shelfline::query;
use shelfline::raw::{self, RawFormat};
use shelfline::schema::Table;

/// A config that sends the transform to the cluster at `scheduler`.
fn on_cluster(scheduler: &str) -> Config {
    Config {
        engine: EngineKind::Ballista,
        scheduler: scheduler.to_string(),
        ..Config::default()
    }
}

/// Every published table of `ws`'s lake as CSV, sorted.
async fn lake_csv(ws: &Workspace) -> String {
    let mut text = ws.fact_csv().await;
    for table in Table::DIMENSIONS {
        let key = table.columns()[0].name;
        let batches = ws
            .query(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .await;
        text.push_str(&query::render(&batches, query::OutputFormat::Csv).unwrap());
    }
    text
}

/// Transforms `date` of `local`'s raw zone on the local engine and on the
/// cluster at `scheduler`, and asserts both lakes hold the same tables.
async fn assert_cluster_matches_local(local: &Workspace, date: NaiveDate, scheduler: &str) {
    let cluster = local.sharing_raw(on_cluster(scheduler));
    let on_local = local.pipeline.transform(date).await.unwrap();
    let on_cluster = cluster.pipeline.transform(date).await.unwrap();
    assert_eq!(on_cluster.rows_written, on_local.rows_written);
    assert_eq!(on_cluster.rows_read, on_local.rows_read);
    assert_same_csv(
        &lake_csv(&cluster).await,
        &lake_csv(local).await,
        "cluster lake against local lake",
    );
}

/// An SF 0.1 raw zone (extracted from a generated SQLite source) for the
/// last generated date.
async fn sf_0_1(format: RawFormat) -> (Workspace, NaiveDate) {
    let ws = Workspace::new();
    let spec = DatagenSpec {
        scale_factor: 0.1,
        seed: 7,
        start: "2025-01-01".parse().unwrap(),
        days: 365,
    };
    ws.pipeline.datagen(&spec, |_| {}).unwrap();
    ws.pipeline.extract(spec.end(), format).await.unwrap();
    (ws, spec.end())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_fixture_on_the_cluster_matches_the_local_engine_in_both_formats() {
    let csv = Workspace::new();
    csv.write_raw(golden_date(), &golden_tables());
    assert_cluster_matches_local(&csv, golden_date(), &shared_scheduler()).await;

    let staging = Workspace::new();
    staging.write_raw(golden_date(), &golden_tables());
    let parquet = Workspace::new();
    common::load_golden_into_source(&staging, &parquet).await;
    parquet
        .pipeline
        .extract(golden_date(), RawFormat::Parquet)
        .await
        .unwrap();
    assert_cluster_matches_local(&parquet, golden_date(), &shared_scheduler()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sf_0_1_on_the_cluster_matches_the_local_engine() {
    let (ws, date) = sf_0_1(RawFormat::CsvGz).await;
    assert_cluster_matches_local(&ws, date, &shared_scheduler()).await;
}

/// The scheduler and the executors reach an `s3://` raw zone with the
/// credentials of their own environment (the `AWS_*` variables), as on a
/// cluster of several machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executors_read_a_raw_zone_on_s3_with_their_own_credentials() {
    let endpoint = s3::endpoint();
    let cluster = TestCluster::start_with_env(2, &s3::env(&endpoint));
    let local = Workspace::new();
    local.write_raw(golden_date(), &golden_tables());
    let raw = format!("s3://{}/raw", s3::new_bucket("cluster-raw"));
    let mut config = on_cluster(&cluster.scheduler);
    config.s3 = s3::config(&endpoint, local.dir.path());
    let on_s3 = Workspace::reading_raw(config, &raw);
    for table in Table::ALL {
        let path = raw::file_path(table, golden_date(), RawFormat::CsvGz);
        let bytes = std::fs::read(local.raw_dir().join(path.as_ref())).unwrap();
        on_s3
            .pipeline
            .raw
            .store()
            .put(&path, bytes.into())
            .await
            .unwrap();
    }
    on_s3.pipeline.transform(golden_date()).await.unwrap();
    local.pipeline.transform(golden_date()).await.unwrap();
    assert_same_csv(
        &lake_csv(&on_s3).await,
        &lake_csv(&local).await,
        "lake from an S3 raw zone on the cluster against the local lake",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_contract_forbids_fail_on_the_cluster_naming_file_and_column() {
    let cases = [
        (Table::Sales, "sales_amt", "1.255", "DECIMAL(38,2)"),
        (Table::Inventory, "promotion_flg", "2", "BOOLEAN"),
        (Table::Sales, "trans_dt", "2026-01-32", "DATE"),
    ];
    for (table, column, bad, sql_type) in cases {
        let ws = Workspace::with_config(on_cluster(&shared_scheduler()));
        let mut tables = golden_tables();
        tables.insert(table, with_value(&tables[&table], table, column, bad));
        ws.write_raw(golden_date(), &tables);
        let error = failed_transform(&ws).await;
        let file = format!("{table}/{table}_{}.csv.gz", golden_date());
        assert_mentions(&error, &[&file, column, &format!("`{bad}`"), sql_type]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_on_an_executor_names_the_stage_and_the_file() {
    let ws = Workspace::with_config(on_cluster(&shared_scheduler()));
    ws.write_raw(golden_date(), &golden_tables());
    let sales = ws
        .raw_dir()
        .join(format!("sales/sales_{}.csv.gz", golden_date()));
    let whole = std::fs::read(&sales).unwrap();
    std::fs::write(&sales, &whole[..whole.len() / 2]).unwrap();
    let error = failed_transform(&ws).await;
    assert_mentions(&error, &["stage", "sales_2026", "is not a whole gzip file"]);
}

/// The error of transforming the golden date in `ws`, after checking that
/// nothing was published.
async fn failed_transform(ws: &Workspace) -> String {
    let error = ws
        .pipeline
        .transform(golden_date())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(ws.version("weekly_sales_inventory").await, None);
    error
}

fn assert_mentions(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "{part} missing from: {error}");
    }
}

/// `csv` with `column` of its first data row set to `value`.
fn with_value(csv: &str, table: Table, column: &str, value: &str) -> String {
    let index = table.column_index(column).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let mut fields: Vec<&str> = lines[1].split(',').collect();
    fields[index] = value;
    lines[1] = fields.join(",");
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn a_cluster_without_executors_is_named_with_what_to_start() {
    let cluster = TestCluster::start(0);
    let ws = Workspace::with_config(on_cluster(&cluster.scheduler));
    ws.write_raw(golden_date(), &golden_tables());
    let error = failed_transform(&ws).await;
    let addr = cluster.scheduler.trim_start_matches("df://");
    let command = format!("shelfline cluster executor --scheduler {addr}");
    assert_mentions(&error, &["no executor registered", &command]);
}

/// SIGKILL of an executor while it runs tasks of the transform: Ballista
/// notices the silent executor (no poll for 20 s), gives its tasks and its
/// lost shuffle output to the other executor, and the job finishes with the
/// right result. Should a run fail instead, it must publish nothing and a
/// retry on the healthy executor must succeed: both outcomes are checked,
/// and the one seen is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_job_is_replaced_by_the_other() {
    let (local, date) = sf_0_1(RawFormat::CsvGz).await;
    let mut cluster = TestCluster::start(2);
    let ws = local.sharing_raw(on_cluster(&cluster.scheduler));
    let pipeline = ws.pipeline.clone();
    let run = tokio::spawn(async move { pipeline.transform(date).await });
    wait_until("executor 0 runs a task", || {
        cluster.executor_log(0).contains("Received task")
    });
    cluster.kill_executor(0);
    let outcome = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the job ends within 5 minutes")
        .unwrap();
    match outcome {
        Ok(_) => eprintln!("outcome: the job finished on the remaining executor"),
        Err(error) => {
            eprintln!("outcome: the run failed ({error}); retrying");
            assert_eq!(ws.version("weekly_sales_inventory").await, None);
            ws.pipeline.transform(date).await.unwrap();
        }
    }
    local.pipeline.transform(date).await.unwrap();
    assert_same_csv(
        &lake_csv(&ws).await,
        &lake_csv(&local).await,
        "lake after losing an executor against the local lake",
    );
}
