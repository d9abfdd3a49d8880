//! The lake's guarantees under attack (README, Guarantees): what a curious
//! analyst, a careless producer, a paused publisher and a reader during a
//! publication can and cannot do to a published table. Each test names the
//! guarantee it defends and drives the binary as a user or producer would.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Workspace, files, golden_date, golden_tables};
use shelfline::config::Config;
use shelfline::schema::Table;

fn shelfline(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shelfline"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("SHELFLINE_SOURCE")
        .env_remove("SHELFLINE_RAW")
        .env_remove("SHELFLINE_LAKE");
    command
}

fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The versions of the four lake tables.
async fn versions(ws: &Workspace) -> Vec<Option<u64>> {
    let mut versions = Vec::new();
    for table in ["store", "product", "calendar", "weekly_sales_inventory"] {
        versions.push(ws.version(table).await);
    }
    versions
}

/// A lake with the golden fixture published.
async fn golden_lake() -> Workspace {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    ws
}

/// Guarantee: SQL only reads. A statement that would write (DML, DDL,
/// COPY onto a committed part file or anywhere else) is refused before it
/// runs, and no file changes.
#[tokio::test]
async fn query_refuses_every_statement_that_writes_and_no_file_changes() {
    let ws = golden_lake().await;
    let lake = ws.lake_dir();
    let before = files(&lake);
    let part = before
        .keys()
        .find(|p| {
            p.starts_with(lake.join("weekly_sales_inventory"))
                && p.extension().is_some_and(|e| e == "parquet")
        })
        .unwrap()
        .clone();
    let outside = ws.dir.path().join("copied.parquet");
    let lake_flag = lake.display().to_string();
    for sql in [
        "INSERT OVERWRITE weekly_sales_inventory SELECT * FROM weekly_sales_inventory WHERE false"
            .to_string(),
        "INSERT INTO weekly_sales_inventory SELECT * FROM weekly_sales_inventory".to_string(),
        "INSERT INTO store_snapshots SELECT * FROM store_snapshots".to_string(),
        format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS PARQUET",
            part.display()
        ),
        format!(
            "COPY weekly_sales_inventory TO '{}' STORED AS PARQUET",
            outside.display()
        ),
        "DELETE FROM weekly_sales_inventory".to_string(),
        "DROP TABLE weekly_sales_inventory".to_string(),
        format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'",
            ws.dir.path().display()
        ),
        "CREATE TABLE y AS SELECT 1".to_string(),
        "EXPLAIN ANALYZE INSERT INTO weekly_sales_inventory SELECT * FROM weekly_sales_inventory"
            .to_string(),
    ] {
        let output = shelfline(ws.dir.path(), &["query", "--lake", &lake_flag, &sql])
            .output()
            .unwrap();
        let stderr = failed(&output);
        assert!(
            stderr.contains("the lake is read-only here"),
            "{sql}: {stderr}"
        );
    }
    assert_eq!(files(&lake), before, "a file of the lake changed");
    assert!(!outside.exists());
    let count = succeeded(
        &shelfline(
            ws.dir.path(),
            &[
                "query",
                "--lake",
                &lake_flag,
                "--format",
                "csv",
                "SELECT count(*) AS n FROM weekly_sales_inventory",
            ],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(count, "n\n9\n");
}

/// Guarantee: a full snapshot that would empty the fact table, drop a
/// published week or shrink it beyond `max_shrink` is refused naming both
/// counts, and nothing is published, unless the user allows it.
#[tokio::test]
async fn header_only_or_partial_facts_are_refused_by_the_publication_guard() {
    let ws = golden_lake().await;
    let published = versions(&ws).await;
    let next = golden_date().succ_opt().unwrap();
    let mut header_only = golden_tables();
    for table in [Table::Sales, Table::Inventory] {
        let text = header_only[&table].lines().next().unwrap().to_string() + "\n";
        header_only.insert(table, text);
    }
    ws.write_raw(next, &header_only);
    let err = ws.pipeline.transform(next).await.unwrap_err().to_string();
    assert!(
        err.contains("weekly_sales_inventory would go from 9 rows over 3 weeks to 0 rows"),
        "{err}"
    );
    assert!(err.contains("--allow-shrink"), "{err}");
    assert_eq!(versions(&ws).await, published, "something was committed");

    // A producer that dropped the first week's rows.
    let later = next.succ_opt().unwrap();
    let mut partial = golden_tables();
    for table in [Table::Sales, Table::Inventory] {
        let kept: Vec<&str> = partial[&table]
            .lines()
            .filter(|line| !line.contains("2025-12-2"))
            .collect();
        partial.insert(table, kept.join("\n") + "\n");
    }
    ws.write_raw(later, &partial);
    let err = ws.pipeline.transform(later).await.unwrap_err().to_string();
    assert!(
        err.contains("1 of the 3 published weeks would disappear (2025 week 52)"),
        "{err}"
    );
    assert_eq!(versions(&ws).await, published);

    // Allowed explicitly, it publishes.
    let output = shelfline(
        ws.dir.path(),
        &[
            "transform",
            "--date",
            &later.to_string(),
            "--allow-shrink",
            "--raw",
            &ws.raw_dir().display().to_string(),
            "--lake",
            &ws.lake_dir().display().to_string(),
        ],
    )
    .output()
    .unwrap();
    succeeded(&output);
    let rows = ws
        .query("SELECT count(*) FROM weekly_sales_inventory")
        .await;
    assert_eq!(rows[0].num_rows(), 1);
    assert_ne!(versions(&ws).await, published);
}

/// Guarantee: a DECIMAL sum that would overflow fails the run naming the
/// column and the week; nothing is published (the sums used to wrap).
#[tokio::test]
async fn an_overflowing_sum_fails_naming_the_column_and_the_week() {
    let ws = golden_lake().await;
    let published = versions(&ws).await;
    let next = golden_date().succ_opt().unwrap();
    let mut tables = golden_tables();
    let mut sales = tables[&Table::Sales].clone();
    for id in 0..200 {
        sales.push_str(&format!(
            "{},101,1,2026-01-05,120000,1.00,1.00,999999999999999999999999999999999999.99,0.00,0.50,0.50,0.00\n",
            9000 + id
        ));
    }
    tables.insert(Table::Sales, sales);
    ws.write_raw(next, &tables);
    let err = ws.pipeline.transform(next).await.unwrap_err().to_string();
    assert!(
        err.contains("sales.sales_amt: the values of 2026 week 2 add up"),
        "{err}"
    );
    assert_eq!(versions(&ws).await, published);
}

/// Guarantee: every commit records its logical date; a run of an older
/// date than the table's is refused naming both dates, and the table is
/// unchanged, unless the user asks for exactly that.
#[tokio::test]
async fn an_older_date_is_refused_naming_both_dates() {
    let ws = golden_lake().await;
    let published = versions(&ws).await;
    let fact = ws.fact_csv().await;
    assert_eq!(
        ws.pipeline
            .lake
            .logical_date("weekly_sales_inventory")
            .await
            .unwrap(),
        Some(golden_date())
    );
    let older = golden_date().pred_opt().unwrap();
    ws.write_raw(older, &golden_tables());
    let err = ws.pipeline.transform(older).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "refusing to publish 2026-01-09: weekly_sales_inventory holds the data of 2026-01-10"
        ),
        "{err}"
    );
    assert_eq!(versions(&ws).await, published);
    assert_eq!(ws.fact_csv().await, fact);

    let output = shelfline(
        ws.dir.path(),
        &[
            "transform",
            "--date",
            &older.to_string(),
            "--allow-older",
            "--raw",
            &ws.raw_dir().display().to_string(),
            "--lake",
            &ws.lake_dir().display().to_string(),
        ],
    )
    .output()
    .unwrap();
    succeeded(&output);
    assert_eq!(
        ws.pipeline
            .lake
            .logical_date("weekly_sales_inventory")
            .await
            .unwrap(),
        Some(older)
    );
}

/// Guarantee: a reader sees a table as it was or as a publication left it.
/// Queries run in a loop while the same date is published again and again
/// (each time new files, the old ones vacuumed at once); none fails and
/// each sees the same numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_in_a_loop_across_publications_never_fail() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    let source = format!("sqlite://{}", dir.join("source.db").display());
    let (raw, lake) = (
        ws.raw_dir().display().to_string(),
        ws.lake_dir().display().to_string(),
    );
    let date = "2025-03-31";
    let locations = ["--source", &source, "--raw", &raw, "--lake", &lake];
    succeeded(
        &shelfline(
            dir,
            &[&["datagen", "--sf", "0.05", "--days", "90"][..], &locations].concat(),
        )
        .output()
        .unwrap(),
    );
    succeeded(
        &shelfline(dir, &[&["run", "--date", date][..], &locations].concat())
            .output()
            .unwrap(),
    );
    // One partition, and work on every row as it is read: the files of a
    // version are read one after another over a good part of a second,
    // so most queries overlap a publication's vacuum.
    let mut reader = ws.pipeline.config.clone();
    reader.target_partitions = Some(1);
    let sql = "SELECT count(*) AS n, sum(w.total_sales_amt) AS amt, count(DISTINCT p.prod_key) AS products,
                      sum(length(repeat(CAST(w.prod_key AS VARCHAR), 30000))) AS work
               FROM weekly_sales_inventory w JOIN product p ON p.prod_key = w.prod_key";
    let query = || shelfline::query::run(&ws.pipeline.lake, &reader, sql);
    let csv = |batches: &[datafusion::arrow::record_batch::RecordBatch]| {
        shelfline::query::render(batches, shelfline::query::OutputFormat::Csv).unwrap()
    };
    let expected = csv(&query().await.unwrap());

    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (publishing, dir) = (Arc::clone(&publishing), dir.to_path_buf());
        let args: Vec<String> = [&["transform", "--date", date][..], &locations]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect();
        std::thread::spawn(move || {
            for _ in 0..6 {
                // Nightly runs come far apart; these come a little more
                // than a query's time apart.
                std::thread::sleep(Duration::from_secs(2));
                let output = shelfline(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            publishing.store(false, Ordering::SeqCst);
        })
    };
    let mut reads = 0;
    while publishing.load(Ordering::SeqCst) {
        let batches = query()
            .await
            .unwrap_or_else(|e| panic!("read {reads} failed during a publication: {e}"));
        assert_eq!(csv(&batches), expected, "read {reads}");
        reads += 1;
    }
    publisher.join().unwrap();
    assert!(reads >= 5, "only {reads} reads overlapped the publications");
}

/// Guarantee: a publisher stopped past its lease (SIGSTOP: a VM pause, a
/// storage stall) is taken over; when it resumes it commits nothing, the
/// new holder's publication stands, and every table stays readable.
#[tokio::test]
async fn a_publisher_paused_past_its_lease_commits_nothing_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        raw: dir.path().join("raw").display().to_string(),
        lake: dir.path().join("lake").display().to_string(),
        lake_lock_lease_secs: 4,
        lake_lock_wait_secs: 60,
        ..Config::default()
    };
    paused_publisher_test(dir.path(), config, &[]).await;
}

/// The same on an S3 lake (moto, started by `.ci/s3`).
#[tokio::test]
async fn a_publisher_paused_past_its_lease_on_s3_commits_nothing_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = common::s3::new_bucket("fence");
    let endpoint = common::s3::endpoint();
    let config = Config {
        raw: format!("s3://{bucket}/raw"),
        lake: format!("s3://{bucket}/lake"),
        s3: common::s3::config(&endpoint, dir.path()),
        lake_lock_lease_secs: 4,
        lake_lock_wait_secs: 60,
        ..Config::default()
    };
    paused_publisher_test(dir.path(), config, &common::s3::env(&endpoint)).await;
}

async fn paused_publisher_test(dir: &Path, config: Config, env: &[(&str, String)]) {
    let config_file = dir.join("shelfline.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let mut command = shelfline(
            dir,
            &[&["--config", config_file.to_str().unwrap()][..], args].concat(),
        );
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    };
    // Five dates: the first published before, then two rounds of a paused
    // run and the run that takes its lock over, each of a newer date (so
    // the two runs' dimension snapshots go to different partitions, and
    // only the lock can keep the paused one from committing its own).
    let source = "sqlite://./source.db";
    succeeded(
        &run(&[
            "datagen", "--sf", "0.01", "--days", "30", "--source", source,
        ])
        .output()
        .unwrap(),
    );
    let dates = [
        "2025-01-27",
        "2025-01-28",
        "2025-01-29",
        "2025-01-30",
        "2025-01-31",
    ];
    for date in dates {
        succeeded(
            &run(&["extract", "--date", date, "--source", source])
                .output()
                .unwrap(),
        );
    }
    succeeded(&run(&["transform", "--date", dates[0]]).output().unwrap());
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
        pipeline: shelfline::pipeline::Pipeline::new(config.clone()).unwrap(),
    };

    // The commits at which the paused run stops: its first (a dimension)
    // and its last (the fact).
    for (stop_after, paused_date, taking_date) in [(0, dates[1], dates[2]), (3, dates[3], dates[4])]
    {
        let mut paused = run(&["transform", "--date", paused_date])
            .env("SHELFLINE_LOG", "shelfline=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(paused.stderr.take().unwrap()).lines();
        let mut seen = 0;
        let mut log = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("committing") {
                if seen == stop_after {
                    break;
                }
                seen += 1;
            }
        }
        signal(paused.id(), "-STOP");
        // Another run takes the lock over once the lease ran out, and
        // publishes its date.
        let started = Instant::now();
        succeeded(&run(&["transform", "--date", taking_date]).output().unwrap());
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "the lock was not waited for"
        );
        let published = versions(&ws).await;
        let fact = ws.fact_csv().await;
        signal(paused.id(), "-CONT");
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        log.push_str(&rest.join("\n"));
        let status = paused.wait().unwrap();
        assert!(!status.success(), "the paused run succeeded:\n{log}");
        assert!(log.contains("lost the writer lock"), "{log}");
        assert_eq!(
            versions(&ws).await,
            published,
            "the paused run committed:\n{log}"
        );
        assert_eq!(ws.fact_csv().await, fact);
        for table in [
            "store",
            "product",
            "calendar",
            "store_snapshots",
            "product_snapshots",
            "calendar_snapshots",
        ] {
            ws.query(&format!("SELECT * FROM {table}")).await;
        }
    }
}

fn signal(pid: u32, signal: &str) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Guarantee: no row can take the process's memory. A gzip bomb without a
/// newline (4 GiB from 4 MiB), a 1 GiB line and an unclosed quote in a
/// 256 MiB file each fail cleanly, naming the file and line, in a process
/// limited to 1 GiB of data.
#[test]
fn endless_rows_fail_cleanly_under_a_memory_limit() {
    let ws = Workspace::new();
    let date = golden_date();
    let sales = ws
        .raw_dir()
        .join("sales")
        .join(format!("sales_{date}.csv.gz"));
    let header = golden_tables()[&Table::Sales]
        .lines()
        .next()
        .unwrap()
        .to_string()
        + "\n";
    let row = b"1002,101,1,2025-12-24,91512,1.00,4.99,4.99,0.00,3.10,1.89,0.00\n";
    let mut quoted = header.clone().into_bytes();
    quoted.push(b'"');
    let cases = [
        ("no newline in 4 GiB", 1, repeated_gzip(b"", b"x", 4 << 30)),
        (
            "a 1 GiB line",
            2,
            repeated_gzip(header.as_bytes(), b"7", 1 << 30),
        ),
        (
            "an unclosed quote",
            2,
            repeated_gzip(&quoted, row, 256 << 20),
        ),
    ];
    for (case, line, bytes) in cases {
        ws.write_raw(date, &golden_tables());
        std::fs::write(&sales, bytes).unwrap();
        let mut command = shelfline(
            ws.dir.path(),
            &[
                "transform",
                "--date",
                &date.to_string(),
                "--raw",
                &ws.raw_dir().display().to_string(),
                "--lake",
                &ws.lake_dir().display().to_string(),
            ],
        );
        limit_data(&mut command, 1 << 30);
        let output = command.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{case}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("sales/sales_{date}.csv.gz, line {line}: the row starting there is longer than 1048576 bytes")),
            "{case}: {stderr}"
        );
        assert!(
            stderr.len() < 1024,
            "{case}: {} bytes of messages",
            stderr.len()
        );
    }
}

/// A gzip stream of `start` then `unit` repeated up to `total` bytes,
/// made of one compressed block repeated as gzip members.
fn repeated_gzip(start: &[u8], unit: &[u8], total: usize) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let member = |bytes: &[u8]| {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        gzip.write_all(bytes).unwrap();
        gzip.finish().unwrap()
    };
    let block_len = 64 << 20;
    let block: Vec<u8> = unit.iter().copied().cycle().take(block_len).collect();
    let block = member(&block);
    let mut out = member(start);
    for _ in 0..total.div_ceil(block_len) {
        out.extend_from_slice(&block);
    }
    out
}

/// Limits the data segment (heap and private mappings) of the process
/// `command` starts.
fn limit_data(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing
    // of the parent.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Guarantee: a message never grows with the input. A 64 MiB field, a
/// 2 MiB manifest checksum and a CSV header with a terminal escape give a
/// short, printable error.
#[test]
fn messages_stay_short_and_printable_whatever_the_input() {
    let ws = Workspace::new();
    let date = golden_date();
    let flags = [
        "--raw".to_string(),
        ws.raw_dir().display().to_string(),
        "--lake".to_string(),
        ws.lake_dir().display().to_string(),
    ];
    let transform = |extra: &[&str]| {
        let mut args = vec!["transform", "--date", "2026-01-10"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        let output = shelfline(ws.dir.path(), &args).output().unwrap();
        failed(&output)
    };
    let huge = "9".repeat(64 << 20);
    let mut tables = golden_tables();
    let sales = tables[&Table::Sales].clone();
    tables.insert(
        Table::Sales,
        sales.replacen("4.99,4.99", &format!("4.99,{huge}.5"), 1),
    );
    ws.write_raw(date, &tables);
    let config = ws.dir.path().join("big-rows.toml");
    std::fs::write(&config, "max_row_bytes = 134217728\n").unwrap();
    for extra in [&[][..], &["--config", config.to_str().unwrap()][..]] {
        let stderr = transform(extra);
        assert!(
            stderr.len() < 1024,
            "{} bytes: {}",
            stderr.len(),
            &stderr[..stderr.len().min(300)]
        );
        assert!(stderr.contains("line 2"), "{stderr}");
    }

    ws.write_raw(date, &golden_tables());
    let manifest = ws.raw_dir().join("_manifests");
    std::fs::create_dir_all(&manifest).unwrap();
    let entries: String = Table::ALL
        .iter()
        .map(|t| format!("\"{0}\": {{\"file\": \"{0}/{0}_{date}.csv.gz\", \"rows\": 1, \"bytes\": 1, \"sha256\": \"{1}\", \"window\": \"full\"}}", t.name(), "a".repeat(2 << 20)))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        manifest.join(format!("{date}.json")),
        format!("{{\"date\": \"{date}\", \"tables\": {{{entries}}}}}"),
    )
    .unwrap();
    let stderr = transform(&[]);
    assert!(
        stderr.len() < 1024 && stderr.contains("a manifest is at most"),
        "{stderr}"
    );
    std::fs::remove_file(manifest.join(format!("{date}.json"))).unwrap();

    let mut tables = golden_tables();
    let sales = tables[&Table::Sales].clone();
    tables.insert(
        Table::Sales,
        sales.replacen("trans_id", "trans_id\u{1b}[31m", 1),
    );
    ws.write_raw(date, &tables);
    let stderr = transform(&[]);
    assert!(stderr.contains("trans_id\\u{1b}[31m"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
}

/// Guarantee: commands create no folder they were only given: a mistyped
/// `--lake` or `--raw` leaves nothing behind.
#[test]
fn reading_commands_create_no_folders() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["query", "--lake", "typo-lake", "SELECT 1"][..],
        &["check", "--date", "2026-01-10", "--raw", "typo-raw"][..],
        &[
            "transform",
            "--date",
            "2026-01-10",
            "--raw",
            "typo-raw",
            "--lake",
            "typo-lake",
        ][..],
    ] {
        failed(&shelfline(dir.path(), args).output().unwrap());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
