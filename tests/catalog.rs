//! `shelfline catalog`: the statements of `catalog ddl` for each engine
//! (DuckDB's run in a real DuckDB with its Delta extension), and `catalog
//! sync` against the Glue API of the S3 test server (moto), read back with
//! boto3; and `[catalog] glue_database` registering after a publication.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::server::{golden_lake, write_config};
use common::{Workspace, assert_same_csv, golden_date, golden_tables};
use shelfline::config::Config;
use shelfline::pipeline::Pipeline;

fn shelfline(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shelfline"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of `shelfline ARGS`, which must succeed.
fn succeeds(config: &Path, args: &[&str]) -> String {
    let output = shelfline(config, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `tests/clients/catalog.py ARGS` with the Python that `variable`
/// names; its stdout.
fn client(variable: &str, args: &[&str]) -> String {
    let python = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: .ci/run installs the catalog clients in a virtual environment and sets it")
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/catalog.py");
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "catalog.py {args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// DuckDB runs `catalog ddl --engine duckdb` as printed, and its views
/// return the lake's rows: the fact as `shelfline query` gives it, and each
/// dimension's latest snapshot.
#[tokio::test]
async fn duckdb_runs_the_printed_statements_and_reads_the_lake() {
    let (ws, config) = golden_lake(|_| {}).await;
    let statements = succeeds(&config, &["catalog", "ddl", "--engine", "duckdb"]);
    let file = ws.dir.path().join("duckdb.sql");
    std::fs::write(&file, &statements).unwrap();
    let printed = client(
        "SHELFLINE_DUCKDB_PYTHON",
        &["duckdb", file.to_str().unwrap()],
    );

    let (fact, counts) = printed.split_at(printed.find("\nstore,").unwrap() + 1);
    let sql = "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key";
    let expected = succeeds(&config, &["query", "--format", "csv", sql]);
    assert_same_csv(fact, &expected, "the fact through DuckDB");
    for line in counts.lines() {
        let (view, rows) = line.split_once(',').unwrap();
        let counted = succeeds(
            &config,
            &[
                "query",
                "--format",
                "csv",
                &format!("SELECT count(*) AS n FROM {view}"),
            ],
        );
        assert_eq!(counted, format!("n\n{rows}\n"), "{view}");
    }
    assert_eq!(counts.lines().count(), 7, "{counts}");
}

/// Athena, Trino and Spark get their own statements for the same four
/// tables; Athena, which reads only S3, refuses a local lake.
#[tokio::test]
async fn each_engine_gets_its_statements() {
    let (_ws, config) = golden_lake(|_| {}).await;
    let lake = "s3://retail-lake/prod";
    let ddl = |engine: &str| {
        succeeds(
            &config,
            &[
                "catalog",
                "ddl",
                "--engine",
                engine,
                "--lake",
                lake,
                "--database",
                "retail",
            ],
        )
    };
    let athena = ddl("athena");
    assert_eq!(
        athena
            .matches("TBLPROPERTIES ('table_type' = 'DELTA');")
            .count(),
        4
    );
    assert!(
        athena.contains("LOCATION 's3://retail-lake/prod/product/'"),
        "{athena}"
    );
    let trino = ddl("trino");
    assert_eq!(
        trino.matches("CALL delta.system.register_table(").count(),
        4
    );
    let spark = ddl("spark");
    assert!(spark.contains(
        "CREATE TABLE IF NOT EXISTS retail.calendar_snapshots USING DELTA LOCATION 's3://retail-lake/prod/calendar/';"
    ), "{spark}");
    for text in [&athena, &trino, &spark] {
        assert_eq!(text.matches("CREATE OR REPLACE VIEW").count(), 3, "{text}");
    }

    let local = shelfline(&config, &["catalog", "ddl", "--engine", "athena"]);
    assert!(!local.status.success());
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(stderr.contains("Athena reads the lake from S3"), "{stderr}");
    let bad = shelfline(
        &config,
        &["catalog", "ddl", "--engine", "spark", "--database", "a;b"],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("database name"));
}

/// The `[catalog]` and `[s3]` settings for the S3 test server's Glue.
fn glue_config(config: &mut Config, dir: &Path, database: Option<&str>) {
    let endpoint = common::s3::endpoint();
    config.s3 = common::s3::config(&endpoint, dir);
    config.catalog.glue_endpoint = Some(endpoint);
    config.catalog.glue_database = database.map(str::to_string);
}

/// What boto3 reads of each table in the test server's Glue `database`,
/// one JSON object per line.
fn glue_tables(database: &str) -> String {
    client(
        "SHELFLINE_TOOLS_PYTHON",
        &["glue", &common::s3::endpoint(), database],
    )
}

/// `catalog sync` creates the database and the four tables as Athena needs
/// them, and a second sync changes nothing.
#[tokio::test]
async fn catalog_sync_registers_the_tables_in_glue_once() {
    let (ws, _) = golden_lake(|_| {}).await;
    let mut config = ws.pipeline.config.clone();
    glue_config(&mut config, ws.dir.path(), None);
    let config = write_config(ws.dir.path(), &config);
    let database = format!("sync_{}", std::process::id());
    let lake = "s3://retail-lake/prod/";
    let args = [
        "catalog",
        "sync",
        "--glue-database",
        &database,
        "--lake",
        lake,
    ];

    let first = succeeds(&config, &args);
    assert_eq!(first.matches(": Created").count(), 5, "{first}");
    let tables = glue_tables(&database);
    let tables: Vec<serde_json::Value> = tables
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(tables.len(), 4, "{tables:?}");
    let fact = tables
        .iter()
        .find(|t| t["name"] == "weekly_sales_inventory")
        .unwrap();
    assert_eq!(
        fact["location"],
        "s3://retail-lake/prod/weekly_sales_inventory/"
    );
    assert_eq!(fact["table_type"], "DELTA");
    assert_eq!(
        fact["partition_keys"],
        serde_json::json!([["yr_num", "int"], ["wk_num", "int"]])
    );
    let columns = fact["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 18);
    assert!(columns.contains(&serde_json::json!(["total_sales_amt", "decimal(38,2)"])));
    assert!(columns.contains(&serde_json::json!(["eow_date", "date"])));
    assert!(columns.contains(&serde_json::json!(["weeks_of_supply", "double"])));
    let store = tables
        .iter()
        .find(|t| t["name"] == "store_snapshots")
        .unwrap();
    assert_eq!(
        store["partition_keys"],
        serde_json::json!([["snapshot_date", "date"]])
    );

    let second = succeeds(&config, &args);
    assert_eq!(second.matches(": Unchanged").count(), 5, "{second}");
    let again = glue_tables(&database);
    assert_eq!(again.lines().count(), 4);
}

/// With `[catalog] glue_database`, a publication on S3 registers the lake
/// in Glue; a publication whose registration fails still stands.
#[tokio::test]
async fn a_publication_registers_the_lake_when_a_glue_database_is_set() {
    let bucket = common::s3::new_bucket("catalog-publish");
    let database = format!("publish_{}", std::process::id());
    let ws = Workspace::new();
    let mut config = ws.pipeline.config.clone();
    config.lake = format!("s3://{bucket}/lake");
    glue_config(&mut config, ws.dir.path(), Some(&database));
    let ws = Workspace {
        pipeline: Pipeline::new(config.clone()).unwrap(),
        dir: ws.dir,
    };
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let registered = glue_tables(&database);
    assert_eq!(registered.lines().count(), 4, "{registered}");
    assert!(
        registered.contains(&format!("s3://{bucket}/lake/calendar/")),
        "{registered}"
    );

    // Glue unreachable: the publication stands, the failure is reported.
    config.catalog.glue_endpoint = Some("http://127.0.0.1:9".to_string());
    let pipeline = Pipeline::new(config).unwrap();
    let outcome = pipeline.register_catalog().await.unwrap();
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains("cannot reach Glue at http://127.0.0.1:9/"),
        "{error}"
    );
    assert!(ws.version("weekly_sales_inventory").await.is_some());
}
