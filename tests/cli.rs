//! The `shelfline` binary as a user runs it.

use assert_cmd::Command;

fn shelfline(dir: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("shelfline").unwrap();
    command
        .current_dir(dir)
        .env_remove("SHELFLINE_SOURCE")
        .env_remove("SHELFLINE_RAW")
        .env_remove("SHELFLINE_LAKE");
    command
}

fn stdout(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn demo_then_query_in_the_same_folder_with_no_flags() {
    let dir = tempfile::tempdir().unwrap();
    let demo = stdout(shelfline(dir.path()).args(["demo", "--sf", "0.01"]));
    for part in [
        "1 stores × 200 products × 365 days",
        "extract",
        "transform  read store 1, product 200, calendar 371",
        "over 53 weeks",
        "Top 5 products by sales in the last complete week",
        "Items with the most out-of-stock days",
        "shelfline query \"SELECT",
    ] {
        assert!(demo.contains(part), "missing {part:?} in:\n{demo}");
    }
    assert!(
        dir.path()
            .join("shelfline-data/lake/weekly_sales_inventory/_delta_log")
            .is_dir()
    );

    let csv = stdout(shelfline(dir.path()).args([
        "query",
        "--format",
        "csv",
        "SELECT count(*) AS stores FROM store",
    ]));
    assert_eq!(csv, "stores\n1\n");
    let json = stdout(shelfline(dir.path()).args([
        "query",
        "--format",
        "json",
        "SELECT min(yr_num) AS first_year FROM weekly_sales_inventory",
    ]));
    assert_eq!(json, "[{\"first_year\":2025}]\n");

    // An empty result keeps its header; SHOW TABLES lists the lake; a
    // missing table is named with those there are.
    let empty = stdout(shelfline(dir.path()).args([
        "query",
        "--format",
        "csv",
        "SELECT store_key, city FROM store WHERE false",
    ]));
    assert_eq!(empty, "store_key,city\n");
    let tables = stdout(shelfline(dir.path()).args(["query", "--format", "csv", "SHOW TABLES"]));
    assert!(tables.contains("weekly_sales_inventory"), "{tables}");
    let output = shelfline(dir.path())
        .args(["query", "SELECT * FROM sale"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the lake has calendar, calendar_snapshots, product"),
        "{stderr}"
    );
}

/// `shelfline query … | head`: a reader that goes away ends the command
/// quietly, with stderr closed too.
#[test]
fn a_closed_pipe_ends_a_query_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    stdout(shelfline(dir.path()).args(["demo", "--sf", "0.01"]));
    for stderr in [Stdio::piped(), Stdio::null()] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shelfline"))
            .current_dir(dir.path())
            .args([
                "query",
                "--format",
                "csv",
                "SELECT * FROM weekly_sales_inventory",
            ])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert!(output.stderr.is_empty(), "{output:?}");
    }
}

#[test]
fn a_bad_date_says_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let output = shelfline(dir.path())
        .args(["check", "--date", "10/01/2026"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
}

/// The demo's extracted facts are in daily-key order: the debug log's plan
/// shows the daily aggregate and the full outer join streaming over them.
#[test]
fn facts_in_daily_key_order_are_aggregated_and_merged_as_streams() {
    let dir = tempfile::tempdir().unwrap();
    let output = shelfline(dir.path())
        .args(["demo", "--sf", "0.01"])
        .env("SHELFLINE_LOG", "shelfline::transform=debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("SortMergeJoinExec: join_type=Full"), "{log}");
    let daily_aggregates: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("AggregateExec") && line.contains("gby=[trans_dt@"))
        .collect();
    assert!(!daily_aggregates.is_empty(), "{log}");
    for aggregate in daily_aggregates {
        assert!(aggregate.contains("ordering_mode=Sorted"), "{aggregate}");
    }
    assert!(
        !log.contains("HashJoinExec: mode=Partitioned, join_type=Full"),
        "{log}"
    );
}

/// `SHELFLINE_LOG=info` shows shelfline's own lines and only warnings from
/// its dependencies, without colour codes in a pipe; `--log-format json`
/// writes one JSON object per line.
#[test]
fn info_logs_are_shelflines_own_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let output = shelfline(dir.path())
        .args(["demo", "--sf", "0.01"])
        .env("SHELFLINE_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a pipe: {log}");
    let info: Vec<&str> = log.lines().filter(|l| l.contains(" INFO ")).collect();
    assert!(!info.is_empty(), "no info lines: {log}");
    for line in info {
        let target = line.split(" INFO ").nth(1).unwrap_or_default();
        assert!(target.starts_with("shelfline"), "{line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let output = shelfline(dir.path())
        .args(["demo", "--sf", "0.01"])
        .env("SHELFLINE_LOG", "info")
        .env("SHELFLINE_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty(), "{log}");
    for line in lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            parsed["level"].is_string() && parsed["target"].is_string(),
            "{line}"
        );
    }
}

/// Long commands show progress on a terminal (run under `script`, which
/// gives them one) and nothing in a pipe or when logs are asked for.
#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    stdout(shelfline(dir.path()).args(["demo", "--sf", "0.01"]));
    let date = "2025-12-31";
    let args = ["transform", "--date", date, "--allow-older"];
    let piped = shelfline(dir.path()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "progress in a pipe: {stderr}");

    let command = format!("{} {}", env!("CARGO_BIN_EXE_shelfline"), args.join(" "));
    let on_terminal = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("transforming {date} from")),
        "{shown}"
    );
}

/// `config init` writes the sample, which `config check` finds valid and
/// prints back with the source's password hidden; a bad config gets every
/// problem at once.
#[test]
fn config_init_then_check_and_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    stdout(shelfline(dir.path()).args(["config", "init"]));
    let output = shelfline(dir.path())
        .args(["config", "init"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "an existing file is kept");
    let sample = std::fs::read_to_string(dir.path().join("shelfline.toml")).unwrap();
    let with_password = sample.replace(
        "source = \"sqlite://./shelfline-data/source.db\"",
        "source = \"postgres://etl:pa55word@db.example.com:5432/retail\"",
    );
    std::fs::write(dir.path().join("shelfline.toml"), with_password).unwrap();
    let checked =
        stdout(shelfline(dir.path()).args(["--config", "shelfline.toml", "config", "check"]));
    assert!(checked.contains("dag_id = \"shelfline\""), "{checked}");
    assert!(!checked.contains("pa55word"), "{checked}");
    assert!(
        !dir.path().join("shelfline-data").exists(),
        "check creates nothing"
    );

    let bad = sample
        .replace("max_shrink = 0.1", "max_shrink = 3.0")
        .replace("timezone = \"UTC\"", "timezone = \"Mars/Olympus\"")
        .replace("retry_backoff = 2.0", "retry_backoff = 0.5")
        .replace("# lookback_days = 7", "lookback_days = 99999")
        .replace("reconcile_days = 35", "reconcile_days = 0");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let output = shelfline(dir.path())
        .args(["--config", "bad.toml", "config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for key in [
        "publish.max_shrink",
        "timezone",
        "retry_backoff",
        "lookback_days = 99999",
        "serve.reconcile_days = 0",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert!(stderr.contains("5 problem(s)"), "{stderr}");
}

/// The completion scripts load in their shells: bash registers the
/// command, and the scripts name the subcommands.
#[test]
fn completion_scripts_load_in_their_shells() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(shelfline(dir.path()).args(["completions", shell]));
        assert!(
            script.contains("backfill") && script.contains("query"),
            "{shell}"
        );
        std::fs::write(dir.path().join(shell), &script).unwrap();
    }
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}/bash && complete -p shelfline",
            dir.path().display()
        ))
        .output()
        .unwrap();
    let registered = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && registered.contains("shelfline"),
        "{loaded:?}"
    );
}

#[test]
fn check_fails_and_lists_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = shelfline(dir.path())
        .args(["check", "--date", "2026-01-10", "--raw", "raw"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sales/sales_2026-01-10.csv.gz"), "{stderr}");
}

#[test]
fn config_file_and_environment_set_locations() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "lakes = \"x\"\n").unwrap();
    let output = shelfline(dir.path())
        .args(["--config", "bad.toml", "check", "--date", "2026-01-10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("unknown field `lakes`"),
        "{stderr}"
    );

    let output = shelfline(dir.path())
        .env("SHELFLINE_LAKE", "env-lake")
        .args(["query", "SELECT 1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("env-lake/weekly_sales_inventory"),
        "{stderr}"
    );
}
