//! Publication under SIGKILL, on a local-disk lake and on an S3 lake (moto,
//! started by `.ci/s3`).
//!
//! Two dates with different data are published in turn; each turn's
//! transform is killed at another moment: spread over its run, and right
//! after each kind of commit log line ("committing", "committed",
//! "vacuumed"). After each kill, a reader sees the table of before or the
//! new one, never a mix; rerunning the date converges to the new table; and
//! a plain Hive-Parquet reader of the folders then sees exactly the
//! committed rows (the killed run's files were vacuumed).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::s3;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use shelfline::config::Config;
use shelfline::pipeline::Pipeline;
use shelfline::query::{self, OutputFormat};

/// Kills in all; the last `EVENT_KILLS` follow a log line.
const KILLS: usize = 20;
/// The log lines (in order of appearance) after which a kill is sent.
const KILL_AFTER: [(&str, usize); 6] = [
    ("committing", 0),
    ("committed", 0),
    ("committing", 2),
    ("committing", 3),
    ("committed", 3),
    ("vacuumed", 0),
];
const EVENT_KILLS: usize = KILL_AFTER.len();
/// Two dates from two sources with different data.
const FIRST: &str = "2025-01-30";
const SECOND: &str = "2025-01-31";

#[test]
fn killed_publications_on_a_local_lake_leave_the_old_or_the_new_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        raw: dir.path().join("raw").display().to_string(),
        lake: dir.path().join("lake").display().to_string(),
        ..Config::default()
    };
    crash_test(dir.path(), config, &[]);
}

#[test]
fn killed_publications_on_an_s3_lake_leave_the_old_or_the_new_table() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = s3::new_bucket("crash");
    let endpoint = s3::endpoint();
    let config = Config {
        raw: format!("s3://{bucket}/raw"),
        lake: format!("s3://{bucket}/lake"),
        s3: s3::config(&endpoint, dir.path()),
        ..Config::default()
    };
    crash_test(dir.path(), config, &s3::env(&endpoint));
}

fn crash_test(dir: &Path, config: Config, env: &[(&str, String)]) {
    let shelfline = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shelfline"));
        command
            .current_dir(dir)
            .args(args)
            .args(["--raw", &config.raw, "--lake", &config.lake])
            .env("SHELFLINE_LOG", "shelfline=info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    };
    let succeed = |args: &[&str]| {
        let output = shelfline(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // Different stores, products and days behind the two dates.
    for (date, seed, days, db) in [(FIRST, "1", "30", "a.db"), (SECOND, "7", "31", "b.db")] {
        let source = format!("sqlite://./{db}");
        let datagen = ["datagen", "--sf", "0.01", "--seed", seed, "--days", days];
        let status = Command::new(env!("CARGO_BIN_EXE_shelfline"))
            .current_dir(dir)
            .args(datagen)
            .args(["--source", &source])
            .status()
            .unwrap();
        assert!(status.success());
        succeed(&["extract", "--date", date, "--source", &source]);
    }
    let reader = Reader::new(config.clone());
    // Both dates' dimension snapshots stay; the fact table is the last
    // date's. So the two states to tell apart are those after the first
    // date's run over the second's, and the second's over the first's.
    for date in [FIRST, SECOND, FIRST] {
        succeed(&[
            "transform",
            "--date",
            date,
            "--allow-older",
            "--allow-shrink",
        ]);
    }
    let first = reader.state();
    let started = Instant::now();
    succeed(&[
        "transform",
        "--date",
        SECOND,
        "--allow-older",
        "--allow-shrink",
    ]);
    let run_time = started.elapsed();
    let second = reader.state();
    assert!(common::csv_difference(&first.concat(), &second.concat()).is_some());

    let mut killed = 0;
    for attempt in 0..KILLS {
        // Even attempts publish the first date over the second, odd ones
        // the second over the first.
        let (date, before, after) = match attempt % 2 {
            0 => (FIRST, &second, &first),
            _ => (SECOND, &first, &second),
        };
        let trigger = match attempt.checked_sub(KILLS - EVENT_KILLS) {
            // Spread over the first 90% of a run's time, so that a run a
            // little faster than the measured one is still killed.
            None => {
                let share = (attempt as f64 + 0.5) / (KILLS - EVENT_KILLS) as f64;
                Trigger::After(run_time.mul_f64(0.9 * share))
            }
            Some(event) => Trigger::OnLog(KILL_AFTER[event]),
        };
        let child = shelfline(&[
            "transform",
            "--date",
            date,
            "--allow-older",
            "--allow-shrink",
        ]);
        if kill_during(child, trigger) {
            killed += 1;
        }
        let seen = reader.state();
        for ((seen, before), after) in seen.iter().zip(before).zip(after) {
            if common::csv_difference(seen, before).is_some() {
                let what = format!("attempt {attempt} ({trigger:?}): neither old nor new");
                common::assert_same_csv(seen, after, &what);
            }
        }
        succeed(&[
            "transform",
            "--date",
            date,
            "--allow-older",
            "--allow-shrink",
        ]);
        let what = format!("attempt {attempt}: the rerun did not converge");
        common::assert_same_csv(&reader.state().concat(), &after.concat(), &what);
        reader.assert_folders_hold_only_the_committed_files();
    }
    assert!(
        killed >= KILLS - 3,
        "only {killed} of {KILLS} runs were killed before they ended"
    );
}

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    After(Duration),
    /// Right after the `n`-th log line (from 0) that contains the text.
    OnLog((&'static str, usize)),
}

/// Runs `command` and kills it with SIGKILL when `trigger` fires; false
/// when it ended first.
fn kill_during(mut command: Command, trigger: Trigger) -> bool {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, logged) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut seen = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let fire = match trigger {
            Trigger::After(delay) => {
                std::thread::sleep(Duration::from_millis(2));
                started.elapsed() >= delay
            }
            Trigger::OnLog((text, n)) => match logged.recv_timeout(Duration::from_millis(2)) {
                Ok(line) if line.contains(text) => {
                    seen += 1;
                    seen > n
                }
                _ => false,
            },
        };
        assert!(
            Instant::now() < deadline,
            "the run neither ended nor reached {trigger:?}"
        );
        if fire {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
    }
}

/// Reads the lake as an analyst would (Delta), and its folders as a plain
/// Hive-Parquet reader would.
struct Reader {
    pipeline: Pipeline,
    runtime: tokio::runtime::Runtime,
}

impl Reader {
    fn new(config: Config) -> Reader {
        Reader {
            pipeline: Pipeline::new(config).unwrap(),
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// A session over the lake as it is now: every table opened once.
    fn session(&self) -> SessionContext {
        let p = &self.pipeline;
        let ctx = shelfline::engine::session(&p.config).unwrap();
        self.runtime.block_on(p.lake.register(&ctx)).unwrap();
        ctx
    }

    fn csv(&self, ctx: &SessionContext, sql: &str) -> String {
        let batches = self
            .runtime
            .block_on(async { ctx.sql(sql).await?.collect().await });
        query::render(&batches.unwrap(), OutputFormat::Csv).unwrap()
    }

    /// What a reader sees of each table (each is committed on its own):
    /// the fact table's rows, and each dimension's snapshots and rows.
    fn state(&self) -> Vec<String> {
        let ctx = self.session();
        let fact = self.csv(
            &ctx,
            "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key",
        );
        let snapshots = ["store", "product", "calendar"].map(|dim| {
            self.csv(
                &ctx,
                &format!(
                    "SELECT snapshot_date, count(*) AS n FROM {dim}_snapshots GROUP BY 1 ORDER BY 1"
                ),
            )
        });
        [vec![fact], snapshots.to_vec()].concat()
    }

    /// Each table's folder, read as plain Hive-partitioned Parquet, holds
    /// the rows of the committed table and no others.
    fn assert_folders_hold_only_the_committed_files(&self) {
        let tables: [(&str, &[&str]); 4] = [
            ("weekly_sales_inventory", &["yr_num", "wk_num"]),
            ("store", &["snapshot_date"]),
            ("product", &["snapshot_date"]),
            ("calendar", &["snapshot_date"]),
        ];
        let ctx = self.session();
        for (table, partitions) in tables {
            let delta_name = match table {
                "weekly_sales_inventory" => table.to_string(),
                dim => format!("{dim}_snapshots"),
            };
            let sql = "SELECT count(*) AS n FROM";
            let committed = self.csv(&ctx, &format!("{sql} {delta_name}"));
            let plain = self.plain_csv(table, partitions, &format!("{sql} plain"));
            assert_eq!(
                plain, committed,
                "{table}: the folder holds files no commit references"
            );
        }
    }

    fn plain_csv(&self, table: &str, partitions: &[&str], sql: &str) -> String {
        let ctx = SessionContext::new();
        let lake = self.pipeline.lake.root();
        if let Some((store, base)) = lake.base() {
            ctx.register_object_store(base, Arc::clone(store));
        }
        let types = partitions.iter().map(|p| {
            let kind = if *p == "snapshot_date" {
                DataType::Date32
            } else {
                DataType::Int32
            };
            (p.to_string(), kind)
        });
        let options = ParquetReadOptions::default().table_partition_cols(types.collect());
        let folder = lake.child(table).unwrap().url().to_string();
        self.runtime.block_on(async {
            ctx.register_parquet("plain", folder, options)
                .await
                .unwrap();
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            query::render(&batches, OutputFormat::Csv).unwrap()
        })
    }
}
