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
        "Top 5 products by sales in the last week",
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
