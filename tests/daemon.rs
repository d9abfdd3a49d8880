//! The daemon keeps running and the runs never get stuck (README,
//! Guarantees): a panicking input, a history another process holds
//! locked, thousands of idle connections, an interrupted `backfill`, and
//! secrets that must appear nowhere.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{PASSWORD, Server, USER, shelfline, workspace, write_config};
use common::{golden_date, golden_tables, load_golden_into_source};
use serde_json::Value;

const RUNS: &str = "/api/v1/dags/shelfline/dagRuns";

fn auth() -> String {
    format!("{USER}:{PASSWORD}")
}

fn trigger(server: &Server, run_id: &str, date: chrono::NaiveDate) {
    let body =
        serde_json::json!({"dag_run_id": run_id, "logical_date": date.to_string()}).to_string();
    let (status, answer) = server.curl("POST", RUNS, Some(&body), Some(&auth()));
    assert_eq!(status, 200, "{answer}");
}

fn ended(server: &Server, run_id: &str) -> Value {
    server.wait_for_run(run_id, Duration::from_secs(120), |r| {
        r["state"] == "success" || r["state"] == "failed"
    })
}

/// Guarantee: no input panics the daemon. A Parquet raw file with a DATE
/// beyond any calendar and one with a damaged footer fail their run with
/// one clean error, and the next run still runs.
#[tokio::test]
async fn bad_parquet_files_fail_their_run_and_the_next_run_runs() {
    use datafusion::arrow::array::{Array, Date32Array, RecordBatch};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let (ws, config) = workspace();
    // The golden raw set as Parquet, through a source, as `extract` writes it.
    let staging = common::Workspace::new();
    staging.write_raw(golden_date(), &golden_tables());
    load_golden_into_source(&staging, &ws).await;
    ws.pipeline
        .extract(golden_date(), shelfline::raw::RawFormat::Parquet)
        .await
        .unwrap();
    let sales = ws
        .raw_dir()
        .join("sales")
        .join(format!("sales_{}.parquet", golden_date()));
    let good = std::fs::read(&sales).unwrap();
    let manifest = ws
        .raw_dir()
        .join("_manifests")
        .join(format!("{}.json", golden_date()));
    std::fs::remove_file(manifest).unwrap();

    // A DATE two billion days after 1970.
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(good.clone()))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let mut far = Vec::new();
    {
        let schema = batches[0].schema();
        let mut writer = ArrowWriter::try_new(&mut far, schema.clone(), None).unwrap();
        for batch in &batches {
            let index = schema.index_of("trans_dt").unwrap();
            let mut columns = batch.columns().to_vec();
            let days: Vec<Option<i32>> =
                (0..batch.num_rows()).map(|_| Some(2_000_000_000)).collect();
            columns[index] = std::sync::Arc::new(Date32Array::from(days));
            assert_eq!(columns[index].len(), batch.num_rows());
            writer
                .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
                .unwrap();
        }
        writer.close().unwrap();
    }
    // Damaged footers: bytes of the footer flipped.
    let mut damaged = Vec::new();
    for back in [9, 20, 40, 80, 160, 320] {
        let mut bytes = good.clone();
        let at = bytes.len() - back;
        bytes[at] ^= 0xa5;
        damaged.push(bytes);
    }
    let config_path = write_config(ws.dir.path(), &config);
    let mut server = Server::start(&config_path);
    let date = golden_date();
    for (n, bytes) in std::iter::once(far).chain(damaged).enumerate() {
        std::fs::write(&sales, &bytes).unwrap();
        trigger(&server, &format!("bad-{n}"), date);
        let run = ended(&server, &format!("bad-{n}"));
        let tasks = server.get(&format!("{RUNS}/bad-{n}/taskInstances"));
        let transform = tasks["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task_id"] == "transform")
            .unwrap()
            .clone();
        if run["state"] == "failed" {
            let error = transform["error"].as_str().unwrap_or_default();
            assert!(error.contains("sales/sales_"), "run {n}: {error}");
            assert!(error.len() < 1024, "run {n}: {error}");
        }
        // The daemon is still there, and the next run runs.
        assert!(server.child_alive());
    }
    std::fs::write(&sales, &good).unwrap();
    trigger(&server, "good", date);
    assert_eq!(ended(&server, "good")["state"], "success");
}

/// Guarantee: a run history another process holds locked (a sqlite3 shell,
/// a backup) for 30 s leaves `serve` up: writes answer 503 meanwhile, and
/// the daemon carries on once the lock is gone.
#[test]
fn a_history_locked_for_30_seconds_leaves_serve_up() {
    let (ws, config) = workspace();
    ws.write_raw(golden_date(), &golden_tables());
    let mut server = Server::start(&write_config(ws.dir.path(), &config));
    let holder = rusqlite::Connection::open(&config.serve.history).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    let body = serde_json::json!({"dag_run_id": "while-locked", "logical_date": golden_date().to_string()}).to_string();
    let (status, answer) = server.curl("POST", RUNS, Some(&body), Some(&auth()));
    assert_eq!(status, 503, "{answer}");
    assert!(
        !answer.contains(&config.serve.history.display().to_string()),
        "{answer}"
    );
    while locked.elapsed() < Duration::from_secs(30) {
        assert!(
            server.child_alive(),
            "serve exited while the history was locked"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    trigger(&server, "after-lock", golden_date());
    assert_eq!(ended(&server, "after-lock")["state"], "success");
}

/// Guarantee: idle or half-sent connections cannot starve the API: with
/// 2000 connections open and silent, `/health` answers, and a request
/// whose headers never end is closed.
#[test]
fn idle_connections_do_not_starve_the_api() {
    raise_open_files(4096);
    let (ws, config) = workspace();
    let server = Server::start(&write_config(ws.dir.path(), &config));
    let address = server.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    let started = Instant::now();
    let output = Command::new("curl")
        .args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/health", server.url))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "200",
        "after {:?}",
        started.elapsed()
    );

    let mut half = TcpStream::connect(&address).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = half.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a half-sent request stayed open"
    );
    drop(idle);
}

fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= wanted,
        "open files limited to {}",
        limit.rlim_cur
    );
}

/// Guarantee: an interrupted `backfill` leaves no run stuck. Ctrl-C
/// cancels its runs; a backfill killed outright leaves its run to the next
/// process that holds the history, which carries it on; and `runs cancel`
/// ends a run waiting on its sensor.
#[test]
fn an_interrupted_backfill_leaves_no_run_stuck() {
    let (ws, mut config) = workspace();
    config.serve.sensor_timeout_secs = 3600;
    let config_path = write_config(ws.dir.path(), &config);
    let date = golden_date().to_string();
    let backfill = || {
        Command::new(env!("CARGO_BIN_EXE_shelfline"))
            .arg("--config")
            .arg(&config_path)
            .args(["backfill", "--from", &date, "--to", &date])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let waiting = |id_hint: &str| {
        let started = Instant::now();
        loop {
            let list =
                String::from_utf8(shelfline(&config_path, &["runs", "list"]).stdout).unwrap();
            if list.contains("running") && list.contains(id_hint) {
                return list;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no run started: {list}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let active = || {
        let list = String::from_utf8(shelfline(&config_path, &["runs", "list"]).stdout).unwrap();
        list.lines()
            .filter(|l| l.contains("running") || l.contains("queued"))
            .count()
    };

    // Ctrl-C: the run is cancelled.
    let child = backfill();
    waiting("backfill__");
    signal(child.id(), "-INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("cancelled"));
    assert_eq!(active(), 0);

    // `runs cancel` from another process ends a run waiting on its sensor.
    let child = backfill();
    let list = waiting("backfill__");
    let run_id = list
        .split_whitespace()
        .find(|w| w.starts_with("backfill__"))
        .unwrap()
        .to_string();
    let cancelled = shelfline(&config_path, &["runs", "cancel", &run_id]);
    assert!(
        cancelled.status.success(),
        "{}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("{run_id}  failed")));
    assert_eq!(active(), 0);

    // SIGKILL: the run stays `running` until the next backfill, which
    // carries it on once the files are there.
    let mut child = backfill();
    let list = waiting("backfill__");
    let run_id = list
        .lines()
        .find(|l| l.contains("running"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("backfill__")))
        .unwrap()
        .to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    ws.write_raw(golden_date(), &golden_tables());
    let output = backfill().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("{run_id}  success")), "{stdout}");
    assert_eq!(active(), 0);
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

/// Guarantee: secrets appear in no output, history row or API answer: a
/// webhook whose secret is its URL path, a source password that breaks URL
/// parsing; and credentials are not sent in clear, nor the cluster exposed,
/// unless the user says so.
#[test]
fn secrets_appear_nowhere_and_are_not_sent_in_clear() {
    const PATH_SECRET: &str = "T0000/B0000/XyZsEcReTpAtH";
    let (ws, mut config) = workspace();
    config.serve.sensor_timeout_secs = 1;
    config.notify.webhook = Some(
        toml::from_str(&format!(
            "url = \"http://127.0.0.1:9/services/{PATH_SECRET}\""
        ))
        .unwrap(),
    );
    let config_path = write_config(ws.dir.path(), &config);
    let mut server_log = String::new();
    {
        let server = Server::start_logging(&config_path, "shelfline=info");
        trigger(&server, "no-files", golden_date());
        assert_eq!(ended(&server, "no-files")["state"], "failed");
        let (_, tasks) = server.curl(
            "GET",
            &format!("{RUNS}/no-files/taskInstances"),
            None,
            Some(&auth()),
        );
        assert!(tasks.contains("webhook http://127.0.0.1:9"), "{tasks}");
        assert!(!tasks.contains("XyZsEcReTpAtH"), "{tasks}");
        server_log.push_str(&server.stop_and_read_log());
    }
    let shown = shelfline(&config_path, &["runs", "show", "no-files"]);
    for text in [
        String::from_utf8_lossy(&shown.stdout).into_owned(),
        server_log,
    ] {
        assert!(!text.contains("XyZsEcReTpAtH"), "{text}");
    }

    let extract = shelfline(
        &config_path,
        &[
            "extract",
            "--date",
            "2026-01-10",
            "--source",
            "mysql://etl:123/Sekr1tPw@db.example.com/retail",
        ],
    );
    let stderr = String::from_utf8_lossy(&extract.stderr);
    assert!(
        !extract.status.success() && !stderr.contains("Sekr1tPw"),
        "{stderr}"
    );

    let token = ws.dir.path().join("hook-token");
    std::fs::write(&token, "t0ken").unwrap();
    let password = ws.dir.path().join("smtp-password");
    std::fs::write(&password, "pw").unwrap();
    for (table, expected) in [
        (
            format!(
                "[notify.webhook]\nurl = \"http://hooks.example.com/x\"\nbearer_token_file = \"{}\"\n",
                token.display()
            ),
            "the bearer token would travel in clear",
        ),
        (
            format!(
                "[notify.email]\nhost = \"smtp.example.com\"\nsecurity = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
                password.display()
            ),
            "would send the SMTP password to smtp.example.com in clear",
        ),
    ] {
        let path = ws.dir.path().join("clear.toml");
        std::fs::write(
            &path,
            format!(
                "[serve]\nhistory = \"{}\"\n{table}",
                ws.dir.path().join("h2.db").display()
            ),
        )
        .unwrap();
        let error = Server::start_with(&path, &["--bind", "127.0.0.1:0"])
            .err()
            .expect("refused");
        assert!(error.contains(expected), "{error}");
    }

    for role in [
        &["scheduler", "--bind", "0.0.0.0:0"][..],
        &["executor", "--bind", "0.0.0.0:0"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_shelfline"))
            .arg("cluster")
            .args(role)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("no authentication and no TLS"),
            "{stderr}"
        );
    }
}
