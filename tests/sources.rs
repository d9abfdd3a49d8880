//! Real MariaDB and PostgreSQL sources, started by `.ci/databases`, driven
//! through the `shelfline` binary:
//! - the same generated data in SQLite, MariaDB and PostgreSQL gives
//!   byte-identical raw files and the same lake table;
//! - a connection killed in the middle of a table is read again from the
//!   table's start, and with no attempts left the run fails leaving no
//!   partial file;
//! - bad credentials, refused connections, unknown databases and tables
//!   that break the contract are one clear message, never with the password.

mod common;

use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::test_server;

/// The last day of `datagen --days 60` from its default start, 2025-01-01.
const DATE: &str = "2025-03-01";

fn shelfline(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("shelfline").unwrap();
    command
        .current_dir(dir)
        .env_remove("SHELFLINE_SOURCE")
        .env_remove("SHELFLINE_RAW")
        .env_remove("SHELFLINE_LAKE")
        .env("SHELFLINE_SOURCE_PASSWORD", password());
    command
}

fn password() -> String {
    test_server("SHELFLINE_TEST_DB_PASSWORD")
}

/// Runs `command`; panics with its stderr unless it succeeds.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `command`, which must fail; returns its stderr.
fn fails(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "succeeded unexpectedly");
    String::from_utf8(output.stderr).unwrap()
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn sqlite_mariadb_and_postgresql_give_identical_raw_files_and_lake() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        ("sqlite", "sqlite://./source.db".to_string()),
        ("mariadb", test_server("SHELFLINE_TEST_MYSQL_URL")),
        ("postgres", test_server("SHELFLINE_TEST_POSTGRES_URL")),
    ];
    let mut raws = Vec::new();
    let mut facts = Vec::new();
    for (name, url) in &sources {
        let (raw, lake) = (format!("raw-{name}"), format!("lake-{name}"));
        run(shelfline(dir.path())
            .args(["datagen", "--sf", "0.02", "--days", "60", "--source", url]));
        run(shelfline(dir.path()).args(["extract", "--date", DATE, "--source", url, "--raw", &raw]));
        run(shelfline(dir.path()).args([
            "transform",
            "--date",
            DATE,
            "--raw",
            &raw,
            "--lake",
            &lake,
        ]));
        let fact = run(shelfline(dir.path()).args([
            "query",
            "--lake",
            &lake,
            "--format",
            "csv",
            "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key",
        ]));
        let files: Vec<(String, Vec<u8>)> = files_under(&dir.path().join(&raw))
            .into_iter()
            .map(|(path, bytes)| (path.replace(&raw, "raw"), bytes))
            .collect();
        assert_eq!(files.len(), 6, "five tables and a manifest: {files:?}");
        raws.push(files);
        facts.push(fact);
    }
    assert!(facts[0].lines().count() > 100, "{}", facts[0]);
    for (i, (name, _)) in sources.iter().enumerate().skip(1) {
        for (ours, theirs) in raws[0].iter().zip(&raws[i]) {
            assert_eq!(ours.0, theirs.0);
            assert!(
                ours.1 == theirs.1,
                "{name}: {} differs from SQLite's",
                theirs.0
            );
        }
        assert_eq!(
            facts[0], facts[i],
            "{name}: the fact table differs from SQLite's"
        );
    }
}

#[test]
fn connection_problems_are_one_clear_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mysql = test_server("SHELFLINE_TEST_MYSQL_URL");
    let postgres = test_server("SHELFLINE_TEST_POSTGRES_URL");
    let with_port = |url: &str, port: &str| {
        let (head, tail) = url.rsplit_once(':').unwrap();
        let database = tail.split_once('/').unwrap().1;
        format!("{head}:{port}/{database}")
    };
    let with_database =
        |url: &str, database: &str| format!("{}/{database}", url.rsplit_once('/').unwrap().0);
    for url in [&mysql, &postgres] {
        let wrong = fails(
            shelfline(dir.path())
                .env("SHELFLINE_SOURCE_PASSWORD", "not-the-password")
                .args(["extract", "--date", DATE, "--raw", "raw", "--source", url]),
        );
        assert!(
            wrong.contains("check the user 'shelfline' and the password"),
            "{wrong}"
        );
        assert!(!wrong.contains("not-the-password"), "{wrong}");

        let refused = fails(shelfline(dir.path()).args([
            "extract",
            "--date",
            DATE,
            "--raw",
            "raw",
            "--source",
            &with_port(url, "1"),
        ]));
        assert!(refused.contains("listening on 127.0.0.1:1"), "{refused}");

        let unknown = fails(shelfline(dir.path()).args([
            "extract",
            "--date",
            DATE,
            "--raw",
            "raw",
            "--source",
            &with_database(url, "no_such_db"),
        ]));
        assert!(unknown.contains("database 'no_such_db'"), "{unknown}");

        for stderr in [&wrong, &refused, &unknown] {
            assert!(!stderr.contains(&password()), "{stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        }
    }
    let raw = dir.path().join("raw");
    assert!(!raw.exists() || files_under(&raw).is_empty());
}

#[test]
fn a_table_that_breaks_the_contract_lists_every_difference() {
    let dir = tempfile::tempdir().unwrap();
    for (var, client) in [
        ("SHELFLINE_TEST_MYSQL_SCHEMA_URL", "mariadb"),
        ("SHELFLINE_TEST_POSTGRES_SCHEMA_URL", "postgres"),
    ] {
        let url = test_server(var);
        run(shelfline(dir.path())
            .args(["datagen", "--sf", "0.01", "--days", "7", "--source", &url]));
        let alter = [
            "ALTER TABLE inventory DROP COLUMN waste_qty",
            "ALTER TABLE inventory DROP COLUMN next_delivery_dt",
            "DROP TABLE sales",
            "CREATE TABLE sales (trans_id INT)",
        ];
        for statement in alter {
            server_sql(client, &url, statement);
        }
        let stderr = fails(shelfline(dir.path()).args([
            "extract",
            "--date",
            "2025-01-07",
            "--raw",
            "raw",
            "--source",
            &url,
        ]));
        assert!(
            stderr.contains("does not match the contract (section 1)"),
            "{stderr}"
        );
        for missing in [
            "inventory.waste_qty: missing",
            "inventory.next_delivery_dt: missing",
        ] {
            assert!(
                stderr.contains(missing),
                "{client}: {missing} not in {stderr}"
            );
        }
        assert!(!dir.path().join("raw/_manifests/2025-01-07.json").exists());
    }
}

/// Runs `sql` on the server at `url` with its command-line client.
fn server_sql(client: &str, url: &str, sql: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    let host = parsed.host_str().unwrap().to_string();
    let port = parsed.port().unwrap().to_string();
    let database = parsed.path().trim_start_matches('/').to_string();
    let mut command = match client {
        "mariadb" => {
            let mut c = Process::new("mariadb");
            c.args([
                "-h",
                &host,
                "-P",
                &port,
                "-u",
                "shelfline",
                "-N",
                &database,
                "-e",
                sql,
            ])
            .env("MYSQL_PWD", password());
            c
        }
        _ => {
            let mut c = Process::new("psql");
            c.args([
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "shelfline",
                "-d",
                &database,
                "-At",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password());
            c
        }
    };
    let output = command
        .output()
        .expect("the mariadb and psql clients are installed");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until a query reading `sales` runs on the server at `url`, then
/// kills its connection (`KILL` on MariaDB, `pg_terminate_backend` on
/// PostgreSQL).
fn kill_sales_query(client: &str, url: &str) {
    let find_and_kill = match client {
        "mariadb" => {
            "SELECT id FROM information_schema.processlist \
             WHERE info LIKE 'SELECT % FROM `sales`' AND id <> CONNECTION_ID()"
        }
        _ => {
            // `query` is a connection's last statement, also once it is
            // idle: only one still running is the read to cut.
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'SELECT % FROM \"sales\"' AND state = 'active' \
             AND pid <> pg_backend_pid()"
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no query on sales showed up on {client}"
        );
        let found = server_sql(client, url, find_and_kill);
        match (client, found.lines().next()) {
            ("mariadb", Some(id)) => {
                server_sql(client, url, &format!("KILL {id}"));
                return;
            }
            (_, Some("t")) => return,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn spawn_extract(dir: &Path, url: &str, attempts: u32, raw: &str) -> Child {
    let config = dir.join(format!("{raw}.toml"));
    std::fs::write(
        &config,
        format!("source_attempts = {attempts}\nsource_retry_backoff_ms = 50\n"),
    )
    .unwrap();
    Process::new(assert_cmd::cargo::cargo_bin("shelfline"))
        .current_dir(dir)
        .env("SHELFLINE_SOURCE_PASSWORD", password())
        .args(["--config", config.to_str().unwrap()])
        .args(["extract", "--date", DATE, "--source", url, "--raw", raw])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn killed_connection_is_retried(client: &str, var: &str) {
    let dir = tempfile::tempdir().unwrap();
    let url = test_server(var);
    run(shelfline(dir.path()).args(["datagen", "--sf", "0.2", "--days", "60", "--source", &url]));

    let extract = spawn_extract(dir.path(), &url, 3, "raw");
    kill_sales_query(client, &url);
    let output = extract.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("was lost while reading table sales"),
        "{stderr}"
    );
    assert!(stderr.contains("reading sales again"), "{stderr}");
    let manifest = dir.path().join(format!("raw/_manifests/{DATE}.json"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let in_source = server_sql(client, &url, "SELECT COUNT(*) FROM sales");
    assert_eq!(
        manifest["tables"]["sales"]["rows"].to_string(),
        in_source.trim()
    );
    let checked = run(shelfline(dir.path()).args(["check", "--date", DATE, "--raw", "raw"]));
    assert!(checked.contains("is complete"), "{checked}");

    let extract = spawn_extract(dir.path(), &url, 1, "raw-once");
    kill_sales_query(client, &url);
    let output = extract.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("gave up after 1 attempts"), "{stderr}");
    assert!(!stderr.contains(&password()), "{stderr}");
    let sales_dir = dir.path().join("raw-once/sales");
    let partial: Vec<_> = std::fs::read_dir(&sales_dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        partial.is_empty(),
        "a partial sales file is visible: {partial:?}"
    );
    assert!(
        !dir.path()
            .join(format!("raw-once/_manifests/{DATE}.json"))
            .exists()
    );
}

#[test]
fn mariadb_killed_connection_is_retried_and_exhausted_retries_leave_nothing() {
    killed_connection_is_retried("mariadb", "SHELFLINE_TEST_MYSQL_FAULTS_URL");
}

#[test]
fn postgres_killed_connection_is_retried_and_exhausted_retries_leave_nothing() {
    killed_connection_is_retried("postgres", "SHELFLINE_TEST_POSTGRES_FAULTS_URL");
}

#[test]
fn tls_verified_against_the_servers_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_server("SHELFLINE_TEST_TLS_CA");
    for (var, mode, verified) in [
        (
            "SHELFLINE_TEST_MYSQL_TLS_URL",
            "ssl-mode=REQUIRED",
            "ssl-mode=VERIFY_IDENTITY&ssl-ca=",
        ),
        (
            "SHELFLINE_TEST_POSTGRES_TLS_URL",
            "sslmode=require",
            "sslmode=verify-full&sslrootcert=",
        ),
    ] {
        let url = test_server(var);
        let required = format!("{url}?{mode}");
        run(shelfline(dir.path()).args([
            "datagen", "--sf", "0.01", "--days", "7", "--source", &required,
        ]));
        let with_ca = format!("{url}?{verified}{ca}");
        let raw = format!("raw-{var}");
        let report = run(shelfline(dir.path()).args([
            "extract",
            "--date",
            "2025-01-07",
            "--raw",
            &raw,
            "--source",
            &with_ca,
        ]));
        assert!(report.contains("rows of 5 tables"), "{report}");

        let without_ca = format!("{url}?{}", verified.split('&').next().unwrap());
        let refused = fails(shelfline(dir.path()).args([
            "extract",
            "--date",
            "2025-01-07",
            "--raw",
            "raw-refused",
            "--source",
            &without_ca,
        ]));
        assert!(refused.contains("TLS"), "{refused}");
        assert_eq!(refused.trim_end().lines().count(), 1, "{refused}");
    }
}
