//! `shelfline sql-server` with PostgreSQL clients nobody here wrote: psql,
//! psycopg 3 and SQLAlchemy (`tests/clients/sql.py`), over real lakes.
//! Each guarantee of the README's "SQL server" section is attacked here:
//! exact values in both result formats, the latest versions per statement,
//! read-only, logins, the statement timeout and the connection limit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{golden_lake, write_config};
use common::sql::{PASSWORD, SqlServer, text};
use common::{Workspace, files, golden_date, golden_dir, golden_tables};

/// Runs `shelfline --config CONFIG ARGS...`, which must succeed; its
/// stdout.
fn shelfline(config: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new(env!("CARGO_BIN_EXE_shelfline"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    output.stdout
}

fn expected_csv() -> PathBuf {
    golden_dir().join("expected_weekly_sales_inventory.csv")
}

/// psql, unchanged: `\dt` lists the lake's tables, `\d` describes the fact
/// with PostgreSQL's types, and the fact joins its dimension.
#[tokio::test]
async fn psql_lists_describes_and_joins_the_lake() {
    let (_ws, config) = golden_lake(|_| {}).await;
    let server = SqlServer::start(&config, None, &["--bind", "127.0.0.1:0"]).unwrap();

    // "schema|name|type|owner" lines.
    let tables = server.psql_value("\\dt");
    for table in ["weekly_sales_inventory", "store", "product", "calendar"] {
        let listed = tables
            .lines()
            .any(|line| line.split('|').nth(1) == Some(table));
        assert!(listed, "\\dt: {tables}");
    }
    let described = server.psql_value("\\d weekly_sales_inventory");
    for (column, kind) in [
        ("yr_num", "integer"),
        ("total_sales_amt", "numeric"),
        ("avg_sales_price", "double precision"),
        ("eow_date", "date"),
    ] {
        let line = described
            .lines()
            .find(|line| line.starts_with(&format!("{column}|")))
            .unwrap_or_else(|| panic!("no {column} in \\d: {described}"));
        assert!(line.contains(kind), "{column}: {line}");
    }
    let rows = std::fs::read_to_string(expected_csv())
        .unwrap()
        .lines()
        .count()
        - 1;
    let joined = server.psql_value(
        "SELECT count(*) FROM weekly_sales_inventory w JOIN store s ON s.store_key = w.store_key",
    );
    assert_eq!(joined, rows.to_string());
    // Column reflection answers subqueries of pg_sequence as NULL because
    // the server serves it empty (src/sql_server/catalog_queries.rs).
    let sequences = server.psql_value("SELECT count(*) FROM pg_catalog.pg_sequence");
    assert_eq!(sequences, "0");
}

/// psycopg 3 with a password (SCRAM-SHA-256): the whole golden fact, in
/// text and in binary, equals the expected CSV value for value (decimals
/// as decimals); server-side parameters and prepared statements; SQLAlchemy
/// sees the tables and their types; 32 clients at once agree.
#[tokio::test]
async fn drivers_read_the_golden_fact_exactly() {
    let (_ws, config) = golden_lake(|_| {}).await;
    let server = SqlServer::start(&config, Some(PASSWORD), &["--bind", "127.0.0.1:0"]).unwrap();
    let expected = expected_csv().display().to_string();
    server.client(&["fact", &expected]);
    server.client(&["params"]);
    server.client(&["inspect", &expected]);
    server.client(&["concurrent", "32"]);
}

/// A generated data set: the fact over the wire equals `shelfline query`'s.
#[tokio::test]
async fn a_generated_lake_over_the_wire_equals_shelfline_query() {
    let ws = Workspace::new();
    let config = write_config(ws.dir.path(), &ws.pipeline.config);
    let run = |args: &[&str]| shelfline(&config, args);
    run(&["datagen", "--sf", "0.01", "--days", "28"]);
    run(&["run", "--date", "2025-01-28"]);
    let fact = run(&[
        "query",
        "--format",
        "csv",
        "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key",
    ]);
    let expected = ws.dir.path().join("fact.csv");
    std::fs::write(&expected, fact).unwrap();
    let server = SqlServer::start(&config, None, &["--bind", "127.0.0.1:0"]).unwrap();
    let said = server.client(&["fact", &expected.display().to_string()]);
    assert!(!said.contains(" 0 rows"), "{said}");
}

/// Statements that write or change the shared engine are refused with
/// SQLSTATE 25006 before they run: the lake's versions and files, and the
/// files around it, are as before. A path is not a table.
#[tokio::test]
async fn writes_are_refused_and_change_nothing() {
    let (ws, config) = golden_lake(|_| {}).await;
    let server = SqlServer::start(&config, Some(PASSWORD), &["--bind", "127.0.0.1:0"]).unwrap();
    let before = (
        ws.pipeline.lake.versions().await.unwrap(),
        files(ws.dir.path()),
    );
    let outside = ws.dir.path().join("stolen.csv").display().to_string();
    let writes = [
        "INSERT INTO weekly_sales_inventory (yr_num) VALUES (1)".to_string(),
        "DELETE FROM store".to_string(),
        "UPDATE store SET store_key = 0".to_string(),
        "DROP TABLE weekly_sales_inventory".to_string(),
        "CREATE TABLE t (a INT)".to_string(),
        "CREATE TABLE t AS SELECT * FROM store".to_string(),
        "CREATE VIEW v AS SELECT 1".to_string(),
        format!("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{outside}'"),
        format!("COPY store TO '{outside}'"),
        format!("COPY (SELECT * FROM store) TO '{outside}' STORED AS CSV"),
        "EXPLAIN ANALYZE INSERT INTO store SELECT * FROM store".to_string(),
        "SET datafusion.execution.target_partitions = 1".to_string(),
        "TRUNCATE store".to_string(),
    ];
    let args: Vec<&str> = std::iter::once("refused")
        .chain(writes.iter().map(String::as_str))
        .collect();
    let said = server.client(&args);
    assert!(said.contains("read-only"), "{said}");
    server.client(&["sqlstate", "42P01", "SELECT * FROM '/etc/passwd'"]);
    let after = (
        ws.pipeline.lake.versions().await.unwrap(),
        files(ws.dir.path()),
    );
    assert_eq!(before, after, "a refused statement changed files");
    // Queries and the session's own settings still run.
    assert!(
        server
            .psql_value("SHOW TABLES")
            .contains("weekly_sales_inventory")
    );
    assert_eq!(server.psql_value("SET search_path = public; SELECT 1"), "1");
}

/// With a password, only the configured user with it gets in; failures
/// are logged with the user and the client's address, never the password.
/// Without one, the server listens on loopback only.
#[tokio::test]
async fn logins_need_the_password_and_failures_are_logged() {
    let (_ws, config) = golden_lake(|_| {}).await;
    let mut server = SqlServer::start(&config, Some(PASSWORD), &["--bind", "127.0.0.1:0"]).unwrap();
    assert_eq!(server.psql_value("SELECT 1"), "1");

    let right = server.password.take();
    let missing = server.psql(&["-c", "SELECT 1"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("password"),
        "{}",
        text(&missing.stderr)
    );
    server.password = Some("not-the-password".to_string());
    let wrong = server.psql(&["-c", "SELECT 1"]);
    assert!(!wrong.status.success());
    let said = text(&wrong.stderr);
    assert!(
        said.contains("password authentication failed for user \"shelfline\""),
        "{said}"
    );
    server.password = right;
    let other_user = server.psql_with(&["-c", "SELECT 1"], &[("PGUSER", "admin")]);
    assert!(!other_user.status.success(), "another user got in");

    let log = server.log();
    assert!(
        log.contains("failed login as \"shelfline\" from 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("failed login as \"admin\""), "{log}");
    assert!(
        !log.contains(PASSWORD) && !log.contains("not-the-password"),
        "{log}"
    );

    let open = SqlServer::start(&config, None, &["--bind", "0.0.0.0:0"])
        .err()
        .unwrap();
    assert!(open.contains("not a loopback address"), "{open}");
    assert!(SqlServer::start(&config, Some(PASSWORD), &["--bind", "0.0.0.0:0"]).is_ok());
}

/// The statement timeout cancels a long statement with 57014 (the
/// server's default, and a session's own), and so does the client's cancel
/// request; one connection past `max_connections` is refused with 53300
/// while the others go on.
#[tokio::test]
async fn statements_time_out_and_connections_are_limited() {
    let (_ws, config) = golden_lake(|config| {
        config.sql_server.statement_timeout_secs = 1;
        config.sql_server.max_connections = 2;
    })
    .await;
    let server = SqlServer::start(&config, None, &["--bind", "127.0.0.1:0"]).unwrap();
    let long = "SELECT count(*) FROM generate_series(1, 10000000000)";
    server.client(&["sqlstate", "57014", long]);
    server.client(&["sqlstate", "57014", "SET statement_timeout = '200ms'", long]);
    server.client(&["cancel", long]);

    let mut first = server.session();
    let mut second = server.session();
    assert_eq!(first.run("SELECT 1"), "1");
    assert_eq!(second.run("SELECT 2"), "2");
    let third = server.psql(&["-c", "SELECT 3"]);
    let said = text(&third.stderr);
    assert!(said.contains("too many clients"), "{said}");
    assert_eq!(first.run("SELECT 4"), "4");
    drop(second);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.psql_value("SELECT 5"), "5");
}

/// A connection sees a new publication at its next statement, without
/// reconnecting.
#[tokio::test]
async fn a_session_sees_the_next_publication_without_reconnecting() {
    let (ws, config) = golden_lake(|_| {}).await;
    let server = SqlServer::start(&config, None, &["--bind", "127.0.0.1:0"]).unwrap();
    let mut session = server.session();
    let sum = "SELECT sum(total_sales_qty) FROM weekly_sales_inventory";
    let before = session.run(sum);

    // The same night again, with one more sale (a new transaction id) of
    // a product already sold.
    let mut tables = golden_tables();
    let sales = tables.get_mut(&shelfline::schema::Table::Sales).unwrap();
    let last = sales.lines().last().unwrap();
    let (_, rest) = last.split_once(',').unwrap();
    let rest = rest.to_string();
    if !sales.ends_with('\n') {
        sales.push('\n');
    }
    sales.push_str(&format!("999999,{rest}\n"));
    ws.write_raw(golden_date(), &tables);
    ws.pipeline.transform(golden_date()).await.unwrap();

    let after = session.run(sum);
    assert_ne!(before, after, "the session still reads the old version");
    assert!(!after.starts_with("ERROR"), "{after}");
}

/// With a certificate and key configured, clients connect with
/// `sslmode=require` (and the password travels inside TLS).
#[tokio::test]
async fn tls_when_configured() {
    let (ws, _) = golden_lake(|_| {}).await;
    let dir = ws.dir.path();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let mut config = ws.pipeline.config.clone();
    config.sql_server.cert_file = Some(cert);
    config.sql_server.key_file = Some(key);
    let config = write_config(dir, &config);
    let server = SqlServer::start(&config, Some(PASSWORD), &["--bind", "127.0.0.1:0"]).unwrap();
    let secure = server.psql_with(
        &["-A", "-t", "-c", "SELECT count(*) FROM store"],
        &[("PGSSLMODE", "require")],
    );
    assert!(secure.status.success(), "{}", text(&secure.stderr));
    assert_eq!(
        text(&secure.stdout).trim(),
        server.psql_value("SELECT count(*) FROM store")
    );
}

/// `serve` with `[sql_server] enabled = true` runs the SQL server beside
/// the API: one daemon for schedules, API and SQL.
#[tokio::test]
async fn serve_runs_the_sql_server_when_enabled() {
    let (ws, _) = golden_lake(|_| {}).await;
    let mut config = ws.pipeline.config.clone();
    config.serve.history = ws.dir.path().join("history.db");
    config.serve.extract_schedule = String::new();
    config.serve.process_schedule = String::new();
    config.sql_server.enabled = true;
    config.sql_server.bind = "127.0.0.1:0".to_string();
    let config = write_config(ws.dir.path(), &config);
    let server =
        SqlServer::start_command(&config, Some(PASSWORD), &["serve", "--bind", "127.0.0.1:0"])
            .unwrap();
    let rows = std::fs::read_to_string(expected_csv())
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(
        server.psql_value("SELECT count(*) FROM weekly_sales_inventory"),
        rows.to_string()
    );
}

/// pgJDBC, unchanged (`tests/clients/Jdbc.java`): `DatabaseMetaData`'s
/// tables and columns with their PostgreSQL types, and a
/// `PreparedStatement` with parameters, past the threshold at which pgJDBC
/// prepares it on the server.
#[tokio::test]
async fn pgjdbc_reads_metadata_and_runs_prepared_statements() {
    let (_ws, config) = golden_lake(|_| {}).await;
    let server = SqlServer::start(&config, Some(PASSWORD), &["--bind", "127.0.0.1:0"]).unwrap();
    let jar = std::env::var("SHELFLINE_PGJDBC_JAR")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".to_string());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/Jdbc.java");
    let output = Command::new("java")
        .arg("-cp")
        .arg(&jar)
        .arg(source)
        .args([
            &server.host,
            &server.port.to_string(),
            "shelfline",
            PASSWORD,
        ])
        .output()
        .expect("java runs (Java 17 and libpostgresql-jdbc-java, installed by .ci/run)");
    assert!(
        output.status.success(),
        "Jdbc.java failed:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Statements run in a loop on one connection while the same night is
/// published again and again (new files each time, the old ones vacuumed
/// at once): each answers the same numbers, or fails with SQLSTATE 40001
/// saying to run it again — never another error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_across_publications_answer_or_say_to_run_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let ws = Workspace::new();
    let mut config = ws.pipeline.config.clone();
    // One partition: the files of a version are read one after another,
    // over a good part of a second, so statements overlap a vacuum.
    config.target_partitions = Some(1);
    let config = write_config(ws.dir.path(), &config);
    let publish = {
        let config = config.clone();
        move |args: &[&str]| {
            shelfline(&config, args);
        }
    };
    let date = "2025-03-31";
    publish(&["datagen", "--sf", "0.05", "--days", "90"]);
    publish(&["run", "--date", date]);
    let server = SqlServer::start(&config, None, &["--bind", "127.0.0.1:0"]).unwrap();
    let mut session = server.session();
    let sql = "SELECT count(*), sum(w.total_sales_amt), \
               sum(length(repeat(CAST(w.prod_key AS VARCHAR), 30000))) \
               FROM weekly_sales_inventory w JOIN product p ON p.prod_key = w.prod_key";
    let expected = session.run(sql);
    assert!(!expected.starts_with("ERROR"), "{expected}");

    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let publishing = Arc::clone(&publishing);
        std::thread::spawn(move || {
            for _ in 0..5 {
                std::thread::sleep(std::time::Duration::from_secs(2));
                publish(&["transform", "--date", date]);
            }
            publishing.store(false, Ordering::SeqCst);
        })
    };
    let (mut answered, mut run_again) = (0, 0);
    while publishing.load(Ordering::SeqCst) {
        match session.run(sql) {
            answer if answer == "ERROR 40001" => run_again += 1,
            answer => {
                assert_eq!(answer, expected, "statement {}", answered + run_again);
                answered += 1;
            }
        }
    }
    publisher.join().unwrap();
    assert!(
        answered + run_again >= 5,
        "only {answered} + {run_again} statements"
    );
    assert_eq!(session.run(sql), expected, "after the publications");
}
