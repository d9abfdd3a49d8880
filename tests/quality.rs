//! Every data-quality rule of contract section 4: a bad input makes the run
//! fail with a message naming what and where, and the lake keeps the
//! previous good version untouched.

mod common;

use std::collections::BTreeMap;

use common::{Workspace, golden_date, golden_tables};
use shelfline::config::Config;
use shelfline::schema::{FACT_TABLE, Table};

/// Publishes the golden fixture, then runs `tables` for the same date and
/// returns the error message; asserts that nothing was published.
async fn fails_and_publishes_nothing(ws: &Workspace, tables: BTreeMap<Table, String>) -> String {
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let versions = lake_versions(ws).await;
    let before = ws.fact_csv().await;

    ws.write_raw(golden_date(), &tables);
    let error = ws.pipeline.transform(golden_date()).await.unwrap_err();
    assert_eq!(lake_versions(ws).await, versions, "a failed run committed");
    assert_eq!(ws.fact_csv().await, before, "the previous table changed");
    format!("{error:#}")
}

async fn lake_versions(ws: &Workspace) -> Vec<Option<u64>> {
    let mut versions = Vec::new();
    for name in ["store", "product", "calendar", FACT_TABLE] {
        versions.push(ws.version(name).await);
    }
    versions
}

/// The golden tables with `table` edited by `edit`.
fn golden_with(table: Table, edit: impl Fn(&str) -> String) -> BTreeMap<Table, String> {
    let mut tables = golden_tables();
    let text = tables[&table].clone();
    tables.insert(table, edit(&text));
    tables
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "missing {part:?} in:\n{message}");
    }
}

#[tokio::test]
async fn sales_date_missing_from_calendar() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Calendar, |t| {
        t.replace(
            "2025-12-24,RETAIL,3,Wednesday,2025,52,202552,12,202512,4,20254\n",
            "",
        )
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "date missing from calendar",
            "table sales, column trans_dt: 2 rows on 1 distinct dates",
            "2025-12-24",
            "table inventory, column cal_dt: 1 rows on 1 distinct dates",
        ],
    );
}

#[tokio::test]
async fn duplicate_inventory_key() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Inventory, |t| {
        format!("{t}2025-12-26,1,101,41.00,0.00,0,0.00,0,\n")
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "duplicate inventory key",
            "table inventory: 1 duplicated values of (cal_dt, store_key, prod_key) over 2 rows",
            "(2025-12-26, 1, 101) ×2",
        ],
    );
}

#[tokio::test]
async fn duplicate_trans_id() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Sales, |t| t.replacen("\n1002,", "\n1001,", 1));
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "duplicate trans_id",
            "table sales: 1 duplicated values of (trans_id) over 2 rows",
            "1001 ×2",
        ],
    );
}

#[tokio::test]
async fn duplicate_calendar_date() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Calendar, |t| {
        format!("{t}2026-01-10,RETAIL,6,Saturday,2026,2,202602,1,202601,1,20261\n")
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(&message, &["duplicate cal_dt in calendar", "2026-01-10 ×2"]);
}

#[tokio::test]
async fn calendar_without_week() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Calendar, |t| {
        t.replace(
            "2026-01-05,RETAIL,1,Monday,2026,2,",
            "2026-01-05,RETAIL,1,Monday,2026,,",
        )
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "NULL yr_num/wk_num in calendar",
            "1 rows have no yr_num or wk_num",
            "2026-01-05",
        ],
    );
}

#[tokio::test]
async fn null_key_column() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Sales, |t| {
        t.replacen("\n1003,103,1,", "\n1003,103,,", 1)
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "NULL in a key column",
            "table sales, column store_key: 1 of 20 rows are NULL",
        ],
    );
}

#[tokio::test]
async fn unparsable_row_names_file_line_and_column() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Sales, |t| {
        t.replacen(",4.99,4.99,", ",4.99,4.9x,", 1)
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "sales/sales_2026-01-10.csv.gz",
            "line 2",
            "column sales_amt",
            "'4.9x'",
        ],
    );
}

#[tokio::test]
async fn rounding_is_never_done_on_read() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Inventory, |t| {
        t.replacen(",5.00,0.00,0,", ",5.005,0.00,0,", 1)
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "inventory/inventory_2026-01-10.csv.gz",
            "line 2",
            "inventory_on_hand_qty",
            "3 decimal places",
        ],
    );
}

#[tokio::test]
async fn wrong_column_count() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Product, |t| format!("{t}104,Tea\n"));
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "product/product_2026-01-10.csv.gz",
            "line 5",
            "expected 11 fields, found 2",
        ],
    );
}

#[tokio::test]
async fn error_budget_sets_bad_rows_aside() {
    let ws = Workspace::with_config(Config {
        error_budget: 1,
        ..Config::default()
    });
    let tables = golden_with(Table::Product, |t| format!("{t}104,Tea\n"));
    ws.write_raw(golden_date(), &tables);
    let report = ws.pipeline.transform(golden_date()).await.unwrap();
    assert_eq!(report.quarantined, 1);
    let quarantine =
        std::fs::read_to_string(ws.lake_dir().join("_quarantine/2026-01-10.csv")).unwrap();
    let expected = "product,product/product_2026-01-10.csv.gz,5,(row),\"expected 11 fields, found 2\",\"104,Tea\"";
    assert!(quarantine.contains(expected), "{quarantine}");

    let two_bad = golden_with(Table::Product, |t| format!("{t}104,Tea\n105,Jam\n"));
    ws.write_raw(golden_date(), &two_bad);
    let message = format!(
        "{:#}",
        ws.pipeline.transform(golden_date()).await.unwrap_err()
    );
    assert_mentions(&message, &["line 6", "error budget of 1 bad rows exceeded"]);
}

#[tokio::test]
async fn missing_raw_file_stops_processing() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let versions = lake_versions(&ws).await;
    std::fs::remove_file(ws.raw_dir().join("inventory/inventory_2026-01-10.csv.gz")).unwrap();
    let check = format!("{:#}", ws.pipeline.check(golden_date()).await.unwrap_err());
    assert_mentions(
        &check,
        &["incomplete", "inventory/inventory_2026-01-10.csv.gz"],
    );
    let message = format!(
        "{:#}",
        ws.pipeline.transform(golden_date()).await.unwrap_err()
    );
    assert_mentions(&message, &["inventory/inventory_2026-01-10.csv.gz"]);
    assert_eq!(lake_versions(&ws).await, versions);
}

#[tokio::test]
async fn both_formats_for_one_table_is_an_error() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    std::fs::write(ws.raw_dir().join("sales/sales_2026-01-10.parquet"), b"x").unwrap();
    let message = format!("{:#}", ws.pipeline.check(golden_date()).await.unwrap_err());
    assert_mentions(&message, &["both formats for sales"]);
}

/// Scans decode only the columns a query needs; the first scan of a file
/// still parses every field, so a bad value in an unused column fails too.
#[tokio::test]
async fn bad_value_in_a_column_no_metric_uses() {
    let ws = Workspace::new();
    let tables = golden_with(Table::Sales, |t| {
        t.replacen(",3.10,1.89,0.00\n", ",3.10,1.89,free\n", 1)
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            "sales/sales_2026-01-10.csv.gz",
            "line 2",
            "column ship_cost",
            "'free'",
        ],
    );
}

/// The golden sales with `extra` more rows (trans_id 100000 + i on
/// 2025-12-24, one unit at 1.00), so the file spans several of the reader's
/// chunks; `edit` may change any extra row.
fn golden_with_many_sales(
    extra: usize,
    edit: impl Fn(usize, String) -> String,
) -> BTreeMap<Table, String> {
    golden_with(Table::Sales, |text| {
        let mut text = text.to_string();
        for i in 0..extra {
            let row = format!(
                "{},101,1,2025-12-24,120000,1.00,1.00,1.00,0.00,0.50,0.50,0.00\n",
                100_000 + i
            );
            text.push_str(&edit(i, row));
        }
        text
    })
}

/// Extra row `i` of [`golden_with_many_sales`] is on this line of the file
/// (a header and 20 golden rows come first).
fn line_of_extra_row(i: usize) -> usize {
    22 + i
}

const MANY: usize = 150_000;

#[tokio::test]
async fn a_bad_value_deep_in_a_large_file_names_its_line() {
    let ws = Workspace::new();
    let bad = 120_000;
    let tables = golden_with_many_sales(MANY, |i, row| {
        if i == bad {
            row.replacen(",1.00,0.00,0.50,", ",1.0x,0.00,0.50,", 1)
        } else {
            row
        }
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(
        &message,
        &[
            &format!("line {}", line_of_extra_row(bad)),
            "column sales_amt",
            "'1.0x'",
        ],
    );
}

#[tokio::test]
async fn a_duplicate_key_far_apart_in_a_large_file_is_found() {
    let ws = Workspace::new();
    let tables = golden_with_many_sales(MANY, |i, row| {
        if i == MANY - 1 {
            row.replacen(&(100_000 + i).to_string(), "1001", 1)
        } else {
            row
        }
    });
    let message = fails_and_publishes_nothing(&ws, tables).await;
    assert_mentions(&message, &["duplicate trans_id", "1001 ×2"]);
}

#[tokio::test]
async fn a_large_file_passes_every_rule_and_reconciles() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_with_many_sales(MANY, |_, row| row));
    let report = ws.pipeline.transform(golden_date()).await.unwrap();
    let sales = report.rows_read.iter().find(|(t, _)| *t == Table::Sales);
    assert_eq!(sales, Some(&(Table::Sales, 20 + MANY as u64)));
    let batches = ws
        .query(&format!(
            "SELECT CAST(SUM(total_sales_qty) AS VARCHAR) FROM {FACT_TABLE} \
             WHERE store_key = 1 AND prod_key = 101 AND yr_num = 2025 AND wk_num = 52"
        ))
        .await;
    let total = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    // The golden week 52 sold 7.00 of product 101 in store 1, plus 1.00 per extra row.
    assert!(total.contains(&format!("{}.00", MANY + 7)), "{total}");
}
