//! Incremental nights (`lookback_days`) against full refreshes, on SQLite,
//! MariaDB and PostgreSQL (`.ci/databases`):
//! - a source that changes for 12 nights across a year end (retail 2022
//!   has 53 weeks): each night the day's rows arrive, with late inserts,
//!   updates and deletes inside the lookback, and one night a whole week
//!   is deleted; after every night the incremental lake equals a full
//!   refresh of the same source state, fact and dimensions;
//! - a change older than the lookback leaves the lake behind; `reconcile`
//!   names exactly that week with both figures, and `--repair` brings the
//!   lake back to the full refresh;
//! - a window that starts mid-week is refused, naming the week;
//! - a fact table without a date index is reported once, with the
//!   statement that creates the index.

mod common;

use assert_cmd::Command;
use chrono::{Days, NaiveDate};
use common::{Workspace, assert_same_csv, test_server};
use shelfline::config::Config;
use shelfline::datagen::DatagenSpec;
use shelfline::pipeline::Pipeline;
use shelfline::source::Source;
use shelfline::window::DateRange;

/// Datagen's first day; its calendar's retail 2022 ends with week 53
/// (2022-12-25 to 2022-12-31).
const START: &str = "2022-11-20";
/// The first night; the source holds the days before it.
const FIRST_NIGHT: &str = "2022-12-28";
const NIGHTS: u64 = 12;
const LOOKBACK: u32 = 7;

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Runs each statement on `source`.
async fn execute(source: &Source, statements: &[String]) {
    use mysql_async::prelude::Queryable;
    match source {
        Source::Sqlite(s) => {
            let conn = rusqlite::Connection::open(s.path()).unwrap();
            for statement in statements {
                conn.execute_batch(statement)
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
        }
        Source::Mysql(s) => {
            let mut conn = s.connect().await.unwrap();
            for statement in statements {
                conn.query_drop(statement)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            conn.disconnect().await.unwrap();
        }
        Source::Postgres(s) => {
            let client = s.connect().await.unwrap();
            for statement in statements {
                client
                    .batch_execute(statement)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
        }
    }
}

/// Generated data up to `FIRST_NIGHT` - 1 in the source; the later days'
/// facts wait in `sales_later` and `inventory_later` for their night.
async fn prepare_source(pipeline: &Pipeline) {
    let spec = DatagenSpec {
        scale_factor: 0.01,
        seed: 7,
        start: day(START),
        days: 60,
    };
    let generating = pipeline.clone();
    tokio::task::spawn_blocking(move || generating.datagen(&spec, |_| {}).unwrap())
        .await
        .unwrap();
    let mut statements = Vec::new();
    for (table, date) in [("sales", "trans_dt"), ("inventory", "cal_dt")] {
        statements.push(format!("DROP TABLE IF EXISTS {table}_later"));
        statements.push(format!(
            "CREATE TABLE {table}_later AS SELECT * FROM {table} WHERE {date} >= '{FIRST_NIGHT}'"
        ));
        statements.push(format!(
            "DELETE FROM {table} WHERE {date} >= '{FIRST_NIGHT}'"
        ));
    }
    execute(&pipeline.source, &statements).await;
}

/// What changes in the source before night `n` (on `date`): the day's
/// rows arrive, and rows of the days before change, all within the
/// lookback; on night 6 every fact of 2022 week 53 is deleted.
fn changes(n: u64, date: NaiveDate) -> Vec<String> {
    let before = |days: u64| date - Days::new(days);
    let mut statements = vec![
        format!("INSERT INTO sales SELECT * FROM sales_later WHERE trans_dt = '{date}'"),
        format!("INSERT INTO inventory SELECT * FROM inventory_later WHERE cal_dt = '{date}'"),
        // Late lines of three days ago, with new transaction ids.
        format!(
            "INSERT INTO sales SELECT trans_id + {offset}, prod_key, store_key, trans_dt, trans_time, \
             sales_qty, sales_price, sales_amt, discount, sales_cost, sales_mgrn, ship_cost \
             FROM sales WHERE trans_dt = '{}' AND trans_id % 20 = 0",
            before(3),
            offset = 100_000_000 * (n + 1)
        ),
        format!(
            "UPDATE sales SET sales_qty = sales_qty + 1, sales_amt = sales_amt + 2.50 \
             WHERE trans_dt = '{}' AND trans_id % 7 = 0",
            before(2)
        ),
        format!(
            "DELETE FROM sales WHERE trans_dt = '{}' AND trans_id % 13 = {}",
            before(6),
            n % 13
        ),
        format!(
            "UPDATE inventory SET inventory_on_hand_qty = inventory_on_hand_qty - 3 \
             WHERE cal_dt = '{}' AND (store_key + {n}) % 3 = 0",
            before(1)
        ),
        format!(
            "DELETE FROM inventory WHERE cal_dt = '{}' AND prod_key % 7 = {}",
            before(5),
            n % 7
        ),
    ];
    if n == 6 {
        statements.push(
            "DELETE FROM sales WHERE trans_dt BETWEEN '2022-12-25' AND '2022-12-31'".to_string(),
        );
        statements.push(
            "DELETE FROM inventory WHERE cal_dt BETWEEN '2022-12-25' AND '2022-12-31'".to_string(),
        );
    }
    statements
}

/// The lake's tables as CSV: the fact, and each dimension's latest
/// snapshot.
async fn lake_csv(ws: &Workspace) -> Vec<(String, String)> {
    let mut tables = vec![("fact".to_string(), ws.fact_csv().await)];
    for (table, key) in [
        ("store", "store_key"),
        ("product", "prod_key"),
        ("calendar", "cal_dt"),
    ] {
        let batches = ws
            .query(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .await;
        let csv = shelfline::query::render(&batches, shelfline::query::OutputFormat::Csv).unwrap();
        tables.push((table.to_string(), csv));
    }
    tables
}

async fn assert_same_lakes(incremental: &Workspace, full: &Workspace, what: &str) {
    let (ours, theirs) = (lake_csv(incremental).await, lake_csv(full).await);
    for ((table, ours), (_, theirs)) in ours.iter().zip(&theirs) {
        assert_same_csv(ours, theirs, &format!("{what}: {table}"));
    }
}

/// Two workspaces over one source: one with `lookback_days`, one running
/// full refreshes into a lake of its own.
fn workspaces(source_url: Option<&str>) -> (Workspace, Workspace) {
    let incremental = match source_url {
        Some(url) => Workspace::with_server(url),
        None => Workspace::new(),
    };
    let mut config = incremental.pipeline.config.clone();
    config.lookback_days = Some(LOOKBACK);
    let incremental = Workspace {
        pipeline: Pipeline::new(config.clone()).unwrap(),
        dir: incremental.dir,
    };
    let other = tempfile::tempdir().unwrap();
    let full_config = Config {
        lookback_days: None,
        raw: other.path().join("raw").display().to_string(),
        lake: other.path().join("lake").display().to_string(),
        ..config
    };
    let full = Workspace {
        pipeline: Pipeline::new(full_config).unwrap(),
        dir: other,
    };
    (incremental, full)
}

/// The nights, then a change older than the lookback and its repair.
async fn nights_equal_full_refreshes(source_url: Option<&str>) {
    let (incremental, full) = workspaces(source_url);
    prepare_source(&incremental.pipeline).await;
    let source = &incremental.pipeline.source;
    for n in 0..NIGHTS {
        let date = day(FIRST_NIGHT) + Days::new(n);
        execute(source, &changes(n, date)).await;
        // The first night of the lake extracts full snapshots by itself.
        let mut tonight = incremental.pipeline.clone();
        let mut refresh = full.pipeline.clone();
        if n == 6 {
            // A week that disappears trips the shrink guard, incremental
            // or not, until the operator allows it.
            let error = tonight.run(date).await.unwrap_err().to_string();
            assert!(error.contains("2022 week 53"), "{error}");
            assert!(error.contains("would disappear"), "{error}");
            tonight.config.publish.allow_shrink = true;
            refresh.config.publish.allow_shrink = true;
        }
        let report = tonight.run(date).await.unwrap();
        assert_eq!(report.extract.window.is_none(), n == 0, "night {n}");
        if n > 0 {
            let window = report.extract.window.expect("an incremental night");
            assert_eq!(window.to, date);
            assert_eq!(window.from.format("%a").to_string(), "Sun", "{window}");
            assert!(window.from <= date - Days::new(LOOKBACK.into()), "{window}");
        }
        let refreshed = refresh.run(date).await.unwrap();
        if n > 0 {
            let rows = |run: &shelfline::pipeline::RunReport| {
                let sales = run
                    .extract
                    .tables
                    .iter()
                    .find(|t| t.table.name() == "sales");
                sales.unwrap().entry.rows
            };
            assert!(
                rows(&report) < rows(&refreshed) / 2,
                "night {n} read too much"
            );
        }
        assert_same_lakes(&incremental, &full, &format!("night {n} ({date})")).await;
    }
    let last = day(FIRST_NIGHT) + Days::new(NIGHTS - 1);

    // A change 21 days back, in 2022 week 51: no window reaches it.
    execute(
        source,
        &["UPDATE sales SET sales_amt = sales_amt + 100 WHERE trans_dt = '2022-12-13' AND trans_id % 5 = 0"
            .to_string()],
    )
    .await;
    incremental.pipeline.run(last).await.unwrap();
    full.pipeline.run(last).await.unwrap();
    let (ours, theirs) = (incremental.fact_csv().await, full.fact_csv().await);
    assert_ne!(
        ours, theirs,
        "the late change should not have reached the lake yet"
    );

    // The next day's rows are in the source already: the open week, which
    // the next night recomputes, is not compared, so they are no drift.
    let next = last + Days::new(1);
    execute(
        source,
        &[
            format!("INSERT INTO sales SELECT * FROM sales_later WHERE trans_dt = '{next}'"),
            format!("INSERT INTO inventory SELECT * FROM inventory_later WHERE cal_dt = '{next}'"),
        ],
    )
    .await;
    let range = DateRange {
        from: day(START),
        to: next,
    };
    let report = incremental.pipeline.reconcile(range, false).await.unwrap();
    assert_eq!(report.comparison.published, last, "{report}");
    let open = report.comparison.weeks.last().copied();
    assert_eq!(
        open,
        Some((2023, 1)),
        "2023 week 2 goes on after {last}: {report}"
    );
    let drifted: Vec<_> = report.comparison.drifted.iter().map(|d| d.week).collect();
    assert_eq!(drifted, [(2022, 51)], "{report}");
    let drift = &report.comparison.drifted[0];
    assert!(drift.source.sales_amt > drift.lake.sales_amt, "{report}");
    assert_eq!(drift.source.sales_qty, drift.lake.sales_qty, "{report}");
    assert!(report.repaired.is_none());

    let report = incremental.pipeline.reconcile(range, true).await.unwrap();
    assert!(report.repaired.is_some(), "{report}");
    assert_same_lakes(&incremental, &full, "after the repair").await;
    let again = incremental.pipeline.reconcile(range, false).await.unwrap();
    assert!(again.comparison.drifted.is_empty(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_nights_equal_full_refreshes() {
    nights_equal_full_refreshes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_nights_equal_full_refreshes() {
    nights_equal_full_refreshes(Some(&test_server("SHELFLINE_TEST_MYSQL_INCREMENTAL_URL"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_nights_equal_full_refreshes() {
    nights_equal_full_refreshes(Some(&test_server(
        "SHELFLINE_TEST_POSTGRES_INCREMENTAL_URL",
    )))
    .await;
}

/// The workspaces of [`workspaces`] over a prepared SQLite source, the
/// incremental lake published by a full night on `date`.
async fn published_on(date: NaiveDate) -> (Workspace, Workspace) {
    let (incremental, full) = workspaces(None);
    prepare_source(&incremental.pipeline).await;
    let mut first = incremental.pipeline.clone();
    first.config.lookback_days = None;
    first.run(date).await.unwrap();
    (incremental, full)
}

/// A night after nights that did not run reaches back over them: the
/// lake then equals a full refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_behind_its_window_catches_up() {
    let (incremental, full) = published_on(day("2022-12-27")).await;
    let date = day("2023-01-12");
    execute(
        &incremental.pipeline.source,
        &[
            format!("INSERT INTO sales SELECT * FROM sales_later WHERE trans_dt <= '{date}'"),
            format!("INSERT INTO inventory SELECT * FROM inventory_later WHERE cal_dt <= '{date}'"),
        ],
    )
    .await;
    let report = incremental.pipeline.run(date).await.unwrap();
    // 2022-12-28 - 7 = 12-21, in the retail week from Sunday 12-18.
    assert_eq!(report.extract.window.unwrap().from, day("2022-12-18"));
    full.pipeline.run(date).await.unwrap();
    assert_same_lakes(&incremental, &full, "after 16 days without a night").await;
}

/// Rows no window can hold (a NULL business date) fail an incremental
/// extraction, as they fail a full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undated_rows_fail_a_windowed_extraction() {
    let (incremental, _) = published_on(day("2022-12-26")).await;
    execute(
        &incremental.pipeline.source,
        &["UPDATE sales SET trans_dt = NULL WHERE trans_id % 1000 = 1".to_string()],
    )
    .await;
    let error = incremental
        .pipeline
        .run(day("2022-12-27"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("source table sales has")
            && error.contains("rows whose trans_dt is NULL or not a date"),
        "{error}"
    );
}

/// A manifest whose window starts mid-week is refused, naming the week;
/// nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_starting_mid_week_is_refused() {
    let (incremental, _) = published_on(day("2022-12-26")).await;
    let date = day("2022-12-27");
    let report = incremental
        .pipeline
        .extract(date, incremental.pipeline.config.raw_format)
        .await
        .unwrap();
    let window = report.window.unwrap();
    assert_eq!(window.from, day("2022-12-18"));
    let manifest = incremental
        .raw_dir()
        .join(format!("_manifests/{date}.json"));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    for table in ["sales", "inventory"] {
        json["tables"][table]["window"]["from"] = "2022-12-20".into();
    }
    std::fs::write(&manifest, json.to_string()).unwrap();
    let error = incremental
        .pipeline
        .transform(date)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("starts on 2022-12-20, but 2022 week 52 has days from 2022-12-18"),
        "{error}"
    );
    assert!(error.contains("nothing was published"), "{error}");
    assert_eq!(incremental.version("weekly_sales_inventory").await, Some(0));
}

/// `extract --lookback-days` on a source without a date index warns once
/// per table, with the statement to run, and extracts all the same.
#[test]
fn a_missing_date_index_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let shelfline = |args: &[&str]| {
        let mut command = Command::cargo_bin("shelfline").unwrap();
        command
            .current_dir(dir.path())
            .env("SHELFLINE_LOG", "info")
            .env_remove("SHELFLINE_SOURCE")
            .env_remove("SHELFLINE_RAW")
            .env_remove("SHELFLINE_LAKE")
            .args(args)
            .args(["--source", "sqlite://./source.db"]);
        command
    };
    let ok = |command: &mut Command| {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stderr).unwrap()
    };
    ok(&mut shelfline(&["datagen", "--sf", "0.01", "--days", "30"]));
    // The first night of a lake extracts full snapshots: no index needed.
    let first = ok(&mut shelfline(&[
        "run",
        "--date",
        "2025-01-29",
        "--lookback-days",
        "7",
    ]));
    assert!(
        first.contains("full snapshots of the facts this once"),
        "{first}"
    );
    assert!(!first.contains("no index"), "{first}");
    let quiet = ok(&mut shelfline(&[
        "extract",
        "--date",
        "2025-01-30",
        "--lookback-days",
        "7",
    ]));
    assert!(!quiet.contains("no index"), "{quiet}");
    rusqlite::Connection::open(dir.path().join("source.db"))
        .unwrap()
        .execute_batch("DROP INDEX sales_trans_dt")
        .unwrap();
    let warned = ok(&mut shelfline(&[
        "extract",
        "--date",
        "2025-01-30",
        "--lookback-days",
        "7",
    ]));
    assert_eq!(warned.matches("has no index").count(), 1, "{warned}");
    assert!(
        warned.contains(r#"source table sales has no index on trans_dt"#)
            && warned.contains(r#"CREATE INDEX "sales_trans_dt" ON "sales" ("trans_dt")"#),
        "{warned}"
    );
}
