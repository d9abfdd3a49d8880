//! The orchestrator as a user runs it: `shelfline serve` driven over HTTP
//! with curl (Airflow's trigger request), killed and restarted; and
//! `backfill`, `runs` and the missing-files notification from the command
//! line, against the real SMTP server that `.ci/smtp` starts.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{PASSWORD, Server, USER, shelfline, workspace, write_config};
use common::{golden_date, golden_dir, golden_tables, smtp};
use serde_json::Value;

fn expected_fact() -> String {
    std::fs::read_to_string(golden_dir().join("expected_weekly_sales_inventory.csv")).unwrap()
}

/// The original trigger Lambda's request: run id, logical date as a time,
/// and the day's files in `conf`.
fn airflow_trigger(run_id: &str) -> String {
    let date = golden_date();
    serde_json::json!({
        "dag_run_id": run_id,
        "logical_date": format!("{date}T00:00:00+00:00"),
        "conf": {"files": [format!("sales/sales_{date}.csv.gz"), format!("inventory/inventory_{date}.csv.gz")]},
    })
    .to_string()
}

#[tokio::test]
async fn a_curl_trigger_runs_the_dag_and_publishes_the_golden_table() {
    let (ws, config) = workspace();
    ws.write_raw(golden_date(), &golden_tables());
    let server = Server::start(&write_config(ws.dir.path(), &config));

    let credentials = format!("{USER}:{PASSWORD}");
    let (status, body) = server.curl(
        "POST",
        "/api/v1/dags/shelfline/dagRuns",
        Some(&airflow_trigger("lambda-run-1")),
        Some(&credentials),
    );
    assert_eq!(status, 200, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["dag_run_id"], "lambda-run-1");
    assert_eq!(run["logical_date"], "2026-01-10T00:00:00+00:00");
    assert_eq!(run["run_type"], "manual");

    let done = server.wait_for_run("lambda-run-1", Duration::from_secs(120), |r| {
        r["state"] == "success" || r["state"] == "failed"
    });
    assert_eq!(
        done["state"],
        "success",
        "{:?}",
        server.task_states("lambda-run-1")
    );
    let states = server.task_states("lambda-run-1");
    assert_eq!(states.len(), 11);
    for (task, state) in &states {
        let expected = if task.starts_with("extract_") || task == "write_manifest" {
            "skipped"
        } else {
            "success"
        };
        assert_eq!(state, expected, "{task}");
    }
    common::assert_same_csv(
        &ws.fact_csv().await,
        &expected_fact(),
        "lake against the golden output",
    );

    // The same run id again is a conflict; the list shows the one run.
    let (status, body) = server.curl(
        "POST",
        "/api/v1/dags/shelfline/dagRuns",
        Some(&airflow_trigger("lambda-run-1")),
        Some(&credentials),
    );
    assert_eq!(status, 409, "{body}");
    let list = server.get("/api/v1/dags/shelfline/dagRuns");
    assert_eq!(list["total_entries"], 1);
    // The DAG itself, in Airflow's shapes; health under the API's path too.
    let dags = server.get("/api/v1/dags");
    assert_eq!(dags["total_entries"], 1);
    assert_eq!(dags["dags"][0]["dag_id"], "shelfline");
    let dag = server.get("/api/v1/dags/shelfline");
    assert_eq!(dag["is_paused"], false);
    let publish = server.get("/api/v1/dags/shelfline/dagRuns/lambda-run-1/taskInstances/publish");
    assert_eq!(publish["state"], "success");
    let (status, _) = server.curl(
        "GET",
        "/api/v1/dags/shelfline/dagRuns/lambda-run-1/taskInstances/nope",
        None,
        Some(&credentials),
    );
    assert_eq!(status, 404);
    let (status, health) = server.curl("GET", "/api/v1/health", None, None);
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"metadatabase\""), "{health}");
    let (status, metrics) = server.curl("GET", "/metrics", None, Some(&credentials));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("shelfline_dag_runs{dag_id=\"shelfline\",state=\"success\"} 1"),
        "{metrics}"
    );
}

/// The Python of a virtual environment that `.ci/run` made, named by `var`.
fn python_of(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: .ci/run installs Airflow's clients in virtual environments and sets it")
    })
}

/// Runs `tests/clients/<script>` with `python`, failing with its output.
fn run_client(python: &str, script: &str, args: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let output = Command::new(python).arg(path).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

/// Airflow's own Python clients from PyPI, unchanged, each against its
/// API (2.x: `/api/v1`, 3.x: `/api/v2` with a token from `/auth/token`):
/// each pauses and unpauses the DAG, triggers a run with a logical date in
/// another time zone (echoed as sent), lists and filters runs, reads task
/// instances and their logs, clears the publication to run it again, and
/// marks a waiting run failed (`tests/clients/airflow2.py`, `airflow3.py`).
#[test]
fn airflows_python_clients_drive_the_dag() {
    for (python, script) in [
        ("SHELFLINE_AIRFLOW2_PYTHON", "airflow2.py"),
        ("SHELFLINE_AIRFLOW3_PYTHON", "airflow3.py"),
    ] {
        let python = python_of(python);
        let (ws, config) = workspace();
        ws.write_raw(golden_date(), &golden_tables());
        let server = Server::start(&write_config(ws.dir.path(), &config));
        let day = golden_date().to_string();
        let missing = golden_date().pred_opt().unwrap().to_string();
        run_client(
            &python,
            script,
            &[&server.url, USER, PASSWORD, "shelfline", &day, &missing],
        );
        common::assert_same_csv(
            &tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(ws.fact_csv()),
            &expected_fact(),
            &format!("lake after {script}'s runs"),
        );
    }
}

/// The original pipeline's trigger Lambda, replayed byte for byte: its
/// DAG id, basic auth, no run id and no date, and one `conf` key per table
/// holding the URL of the file it found at the bucket's root, the key being
/// the file name less its last 15 characters (`calendar` on day 5,
/// `calendar_` on day 15). Each run processes exactly those files, dated by
/// their names (`%Y%m%-d`), and extracts nothing.
#[tokio::test]
async fn the_original_trigger_lambdas_request_processes_the_files_it_names() {
    use object_store::ObjectStoreExt as _;
    let bucket = common::s3::new_bucket("lambda-trigger");
    let (ws, mut config) = workspace();
    config.s3 = common::s3::config(&common::s3::endpoint(), ws.dir.path());
    config.raw = format!("s3://{bucket}/raw/");
    config.serve.dag_aliases = vec!["batch_processing_dag".to_string()];
    let server = Server::start(&write_config(ws.dir.path(), &config));
    let root = shelfline::storage::Location::parse(&format!("s3://{bucket}/"), &config.s3).unwrap();
    let credentials = format!("{USER}:{PASSWORD}");

    let mut keys = Vec::new();
    for (day, stamp) in [(5, "2024055"), (15, "20240515")] {
        let mut conf = serde_json::Map::new();
        for (table, text) in golden_tables() {
            let name = format!("{}_{stamp}.csv.gz", table.name());
            let bytes = common::gzip(text.as_bytes());
            root.store()
                .put(&name.as_str().into(), bytes.into())
                .await
                .unwrap();
            let key = name[..name.len() - 15].to_string();
            conf.insert(key.clone(), format!("s3://{bucket}/{name}").into());
            keys.push(key);
        }
        let body = serde_json::json!({ "conf": conf }).to_string();
        let (status, answer) = server.curl(
            "POST",
            "/api/v1/dags/batch_processing_dag/dagRuns",
            Some(&body),
            Some(&credentials),
        );
        assert_eq!(status, 200, "{answer}");
        let run: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            run["logical_date"],
            format!("2024-05-{day:02}T00:00:00+00:00")
        );
        let run_id = run["dag_run_id"].as_str().unwrap();
        let done = server.wait_for_run(run_id, Duration::from_secs(120), |r| {
            r["state"] == "success" || r["state"] == "failed"
        });
        assert_eq!(done["state"], "success", "{:?}", server.task_states(run_id));
        common::assert_same_csv(
            &ws.fact_csv().await,
            &expected_fact(),
            &format!("lake after the day-{day} trigger"),
        );
    }
    assert!(keys.contains(&"calendar".to_string()) && keys.contains(&"calendar_".to_string()));
    let listed = server.get("/api/v1/dags/batch_processing_dag/dagRuns?order_by=execution_date");
    let dates: Vec<&str> = listed["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["logical_date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        ["2024-05-05T00:00:00+00:00", "2024-05-15T00:00:00+00:00"]
    );
    // Nothing was extracted into the raw zone's layout.
    let raw = shelfline::storage::Location::parse(&config.raw, &config.s3).unwrap();
    let listing = raw.store().list_with_delimiter(None).await.unwrap();
    assert!(
        listing.objects.is_empty() && listing.common_prefixes.is_empty(),
        "{listing:?}"
    );
    assert_eq!(ws.version("store").await, Some(1));
}

/// A named file the raw zone's store does not hold, or one whose table
/// cannot be told, is refused with the key or field that named it.
#[test]
fn triggers_naming_unusable_files_are_refused_naming_the_key() {
    let (ws, mut config) = workspace();
    config.serve.dag_aliases = vec!["batch_processing_dag".to_string()];
    let server = Server::start(&write_config(ws.dir.path(), &config));
    let credentials = format!("{USER}:{PASSWORD}");
    for (conf, field) in [
        (
            r#"{"sales_": "s3://bucket/sales_2024051.txt"}"#,
            "conf.sales_",
        ),
        (
            r#"{"files": ["s3://bucket/receipts_2024051.csv.gz"]}"#,
            "conf.files",
        ),
        (
            r#"{"files": ["sales_2024051.csv.gz", "calendar_2024052.csv.gz"]}"#,
            "conf",
        ),
        (r#"{"sales": "s3://bucket/sales_2024051.csv.gz"}"#, "conf"),
        (r#"{"sales": "/etc/sales_2024051.csv.gz"}"#, "conf"),
        (r#"{"sales": "sales_2024131.csv.gz"}"#, "conf"),
        (r#"{"sales": "sales_2024-5-1.csv.gz"}"#, "conf"),
    ] {
        let body = format!(r#"{{"conf": {conf}}}"#);
        let (status, answer) = server.curl(
            "POST",
            "/api/v1/dags/batch_processing_dag/dagRuns",
            Some(&body),
            Some(&credentials),
        );
        assert_eq!(status, 400, "{conf}: {answer}");
        let error: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(error["field"], field, "{answer}");
    }
    // A date given must be the one the names carry; a huge key is not
    // echoed back.
    let body = r#"{"logical_date": "2024-05-02", "conf": {"sales": "sales_2024051.csv.gz"}}"#;
    let (status, answer) = server.curl(
        "POST",
        "/api/v1/dags/shelfline/dagRuns",
        Some(body),
        Some(&credentials),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("carry 2024-05-01, but logical_date is 2024-05-02"),
        "{answer}"
    );
    let body = format!(r#"{{"conf": {{"sales{}": 1}}}}"#, "_".repeat(100_000));
    let (status, answer) = server.curl(
        "POST",
        "/api/v1/dags/shelfline/dagRuns",
        Some(&body),
        Some(&credentials),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.len() < 1024, "{} bytes", answer.len());
    let (status, answer) = server.curl(
        "POST",
        "/api/v1/dags/another_dag/dagRuns",
        Some("{}"),
        Some(&credentials),
    );
    assert_eq!(status, 404, "{answer}");
}

#[test]
fn every_endpoint_but_health_needs_the_right_credentials() {
    let (ws, config) = workspace();
    let server = Server::start(&write_config(ws.dir.path(), &config));
    let runs = "/api/v1/dags/shelfline/dagRuns";
    for path in [runs, "/metrics"] {
        let (status, body) = server.curl("GET", path, None, None);
        assert_eq!(status, 401, "no credentials, {path}: {body}");
        let (status, _) = server.curl("GET", path, None, Some(&format!("{USER}:wrong")));
        assert_eq!(status, 401, "wrong password, {path}");
        let (status, _) = server.curl("GET", path, None, Some(&format!("{USER}:{PASSWORD}")));
        assert_eq!(status, 200, "right credentials, {path}");
    }
    let (status, body) = server.curl("POST", runs, Some("{}"), None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.curl("GET", "/health", None, None);
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["status"].clone()
        ),
        (200, "healthy".into())
    );
}

#[test]
fn bad_requests_get_a_4xx_naming_the_field() {
    let (ws, config) = workspace();
    let server = Server::start(&write_config(ws.dir.path(), &config));
    let auth = format!("{USER}:{PASSWORD}");
    let runs = "/api/v1/dags/shelfline/dagRuns";
    for (body, field) in [
        (r#"{"logical_date": "last tuesday"}"#, "logical_date"),
        (r#"{"conf": "files"}"#, "conf"),
        (r#"{"conf": {"files": "sales.csv.gz"}}"#, "conf.files"),
        (r#"{"dag_run_id": 7}"#, "dag_run_id"),
        (r#"{"dag_run": "x"}"#, "body"),
        ("not json", "body"),
    ] {
        let (status, answer) = server.curl("POST", runs, Some(body), Some(&auth));
        assert_eq!(status, 400, "{body}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (status, answer) = server.curl(
        "POST",
        "/api/v1/dags/other/dagRuns",
        Some("{}"),
        Some(&auth),
    );
    assert_eq!(status, 404, "{answer}");
    let (status, _) = server.curl("GET", &format!("{runs}?state=done"), None, Some(&auth));
    assert_eq!(status, 400);
}

#[test]
fn the_server_refuses_a_public_address_without_credentials() {
    let (ws, mut config) = workspace();
    config.serve.auth = Default::default();
    let path = write_config(ws.dir.path(), &config);
    let error = Server::start_with(&path, &["--bind", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(
        error.contains("refusing to serve the API on 0.0.0.0"),
        "{error}"
    );

    // On loopback, by address or as `localhost`, it starts, and nothing
    // but /health answers.
    let server = Server::start(&path);
    let (status, body) = server.curl("GET", "/api/v1/dags/shelfline/dagRuns", None, Some("a:b"));
    assert_eq!(status, 401);
    assert!(body.contains("no API credentials are configured"), "{body}");
    server.stop_and_read_log();
    let by_name = Server::start_with(&path, &["--bind", "localhost:0"]).unwrap();
    let (status, _) = by_name.curl("GET", "/health", None, None);
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_server_killed_mid_run_resumes_it_and_the_date_completes_once() {
    let (ws, config) = workspace();
    let config_path = write_config(ws.dir.path(), &config);
    let server = Server::start(&config_path);
    let auth = format!("{USER}:{PASSWORD}");
    let (status, body) = server.curl(
        "POST",
        "/api/v1/dags/shelfline/dagRuns",
        Some(&airflow_trigger("killed-run")),
        Some(&auth),
    );
    assert_eq!(status, 200, "{body}");
    // The sensor is poking (the files are not there yet): kill -9.
    let started = Instant::now();
    while !server
        .task_states("killed-run")
        .contains(&("wait_for_raw".into(), "running".into()))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sensor never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    drop(server);

    ws.write_raw(golden_date(), &golden_tables());
    let server = Server::start(&config_path);
    let done = server.wait_for_run("killed-run", Duration::from_secs(120), |r| {
        r["state"] == "success" || r["state"] == "failed"
    });
    assert_eq!(
        done["state"],
        "success",
        "{:?}",
        server.task_states("killed-run")
    );
    drop(server);

    let show = shelfline(&config_path, &["runs", "show", "killed-run"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("wait_for_raw       #1") && text.contains("interrupted"),
        "{text}"
    );
    assert!(text.contains("wait_for_raw       #2"), "{text}");
    let list = shelfline(&config_path, &["runs", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        text.matches("2026-01-10").count(),
        1,
        "one run of the date:\n{text}"
    );
    // Published exactly once: one commit of the fact table.
    assert_eq!(ws.version("weekly_sales_inventory").await, Some(0));
    common::assert_same_csv(
        &ws.fact_csv().await,
        &expected_fact(),
        "lake after the restart",
    );
}

#[test]
fn missing_files_are_emailed_and_posted_then_a_retry_completes_the_date() {
    let (ws, mut config) = workspace();
    let (host, port) = smtp::server();
    let (ops, data) = (
        smtp::unique_address("ops"),
        smtp::unique_address("data-team"),
    );
    let hook = webhook::Receiver::start();
    let notify = format!(
        "on_success = false\n[email]\nhost = \"{host}\"\nport = {port}\nsecurity = \"none\"\nfrom = \"shelfline@example.com\"\nto = [\"{ops}\", \"{data}\"]\n[webhook]\nurl = \"{}\"\n",
        hook.url
    );
    config.notify = toml::from_str(&notify).unwrap();
    config.serve.sensor_timeout_secs = 3;
    config.serve.retries = 0;
    let config_path = write_config(ws.dir.path(), &config);

    let date = golden_date().to_string();
    let backfill = shelfline(&config_path, &["backfill", "--from", &date, "--to", &date]);
    assert!(!backfill.status.success(), "the sensor times out");
    let stdout = String::from_utf8_lossy(&backfill.stdout).to_string();
    let run_id = stdout
        .split_whitespace()
        .find(|w| w.starts_with("backfill__"))
        .unwrap()
        .to_string();
    // While the sensor waits, backfill says for which files and how long.
    let waiting = format!("{run_id}  waiting for raw files, missing store/store_{date}.csv.gz, ");
    assert!(stdout.contains(&waiting), "{stdout}");
    assert!(stdout.contains("; gives up at "), "{stdout}");
    assert!(stdout.contains(&format!("{run_id}  failed")), "{stdout}");

    let mail = smtp::wait_for_message(&ops, "missing", Duration::from_secs(30));
    let to = mail.header("To").unwrap();
    assert!(to.contains(&ops) && to.contains(&data), "{to}");
    assert!(mail.header("Subject").unwrap().contains(&date));
    for table in ["store", "product", "calendar", "sales", "inventory"] {
        let file = format!("{table}/{table}_{date}.csv.gz");
        assert!(mail.body.contains(&file), "{file} not in\n{}", mail.body);
    }
    let posted = hook.wait_for_post(Duration::from_secs(30));
    assert_eq!(posted["event"], "sensor_timeout");
    assert_eq!(posted["missing"].as_array().unwrap().len(), 5);
    assert!(
        !ws.lake_dir().join("weekly_sales_inventory").exists(),
        "nothing transformed"
    );

    // The files arrive; `runs retry` reruns the sensor and what follows.
    ws.write_raw(golden_date(), &golden_tables());
    let retry = shelfline(&config_path, &["runs", "retry", &run_id]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    assert!(String::from_utf8_lossy(&retry.stdout).contains(&format!("{run_id}  success")));

    // Backfilling the date again skips it, unless forced.
    let again = shelfline(&config_path, &["backfill", "--from", &date, "--to", &date]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("skipped: already succeeded"));
    let forced = shelfline(
        &config_path,
        &["backfill", "--from", &date, "--to", &date, "--force"],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let list =
        String::from_utf8_lossy(&shelfline(&config_path, &["runs", "list"]).stdout).to_string();
    assert_eq!(list.matches(" success ").count(), 2, "{list}");
}

/// A local HTTP receiver for the webhook: answers 200 and keeps each body.
mod webhook {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use serde_json::Value;

    pub struct Receiver {
        pub url: String,
        bodies: mpsc::Receiver<Value>,
    }

    impl Receiver {
        pub fn start() -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            let (tx, bodies) = mpsc::channel();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let mut stream = reader.into_inner();
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    let _ = tx.send(serde_json::from_slice(&body).unwrap());
                }
            });
            Receiver { url, bodies }
        }

        pub fn wait_for_post(&self, timeout: Duration) -> Value {
            self.bodies
                .recv_timeout(timeout)
                .expect("the webhook was called")
        }
    }
}
