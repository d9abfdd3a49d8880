//! The golden fixture (`../shared/fixtures/golden`) through the pipeline
//! reproduces `expected_weekly_sales_inventory.csv` exactly, column by
//! column, with the contract's types.

mod common;

use common::{Workspace, golden_date, golden_dir, golden_tables, test_server};
use datafusion::arrow::datatypes::DataType;
use shelfline::raw::RawFormat;
use shelfline::schema::{Kind, fact_columns};

/// Compares the lake's fact table (as CSV) with the expected CSV: floats
/// within a relative 1e-9, every other column exactly.
fn assert_matches_expected(actual: &str) {
    let expected =
        std::fs::read_to_string(golden_dir().join("expected_weekly_sales_inventory.csv")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    assert_eq!(actual[0], expected[0], "header");
    assert_eq!(
        actual.len(),
        expected.len(),
        "row count\n{}",
        actual.join("\n")
    );
    for (row, (a, e)) in actual.iter().zip(&expected).enumerate().skip(1) {
        let a: Vec<&str> = a.split(',').collect();
        let e: Vec<&str> = e.split(',').collect();
        for (((name, kind), a), e) in fact_columns().iter().zip(&a).zip(&e) {
            if *kind == Kind::Float64 && !e.is_empty() {
                let (a, e): (f64, f64) = (a.parse().unwrap(), e.parse().unwrap());
                let close = (a - e).abs() <= 1e-9 * e.abs().max(1e-300) || a == e;
                assert!(close, "row {row} column {name}: {a} != {e}");
            } else {
                assert_eq!(a, e, "row {row} column {name}");
            }
        }
    }
}

#[tokio::test]
async fn golden_fixture_reproduces_expected_output() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    let report = ws.pipeline.transform(golden_date()).await.unwrap();
    assert_eq!(report.rows_written, 9);
    assert_eq!(report.weeks, 3);
    assert_matches_expected(&ws.fact_csv().await);
}

#[tokio::test]
async fn fact_table_has_the_contract_types() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let batches = ws.query("SELECT * FROM weekly_sales_inventory").await;
    let schema = batches[0].schema();
    for (name, kind) in fact_columns() {
        let field = schema.field_with_name(name).unwrap();
        assert_eq!(field.data_type(), &kind.arrow_type(), "column {name}");
    }
    assert_eq!(
        schema
            .field_with_name("total_sales_amt")
            .unwrap()
            .data_type(),
        &DataType::Decimal128(38, 2)
    );
}

#[tokio::test]
async fn golden_fixture_through_sqlite_source_and_both_raw_formats() {
    for format in [RawFormat::CsvGz, RawFormat::Parquet] {
        let staging = Workspace::new();
        staging.write_raw(golden_date(), &golden_tables());
        let ws = Workspace::new();
        common::load_golden_into_source(&staging, &ws).await;
        ws.pipeline.extract(golden_date(), format).await.unwrap();
        ws.pipeline.check(golden_date()).await.unwrap();
        ws.pipeline.transform(golden_date()).await.unwrap();
        assert_matches_expected(&ws.fact_csv().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_fixture_through_mariadb_and_postgresql() {
    for var in [
        "SHELFLINE_TEST_MYSQL_GOLDEN_URL",
        "SHELFLINE_TEST_POSTGRES_GOLDEN_URL",
    ] {
        let staging = Workspace::new();
        staging.write_raw(golden_date(), &golden_tables());
        let ws = Workspace::with_server(&test_server(var));
        common::load_golden_into_source(&staging, &ws).await;
        ws.pipeline
            .extract(golden_date(), RawFormat::CsvGz)
            .await
            .unwrap();
        ws.pipeline.transform(golden_date()).await.unwrap();
        assert_matches_expected(&ws.fact_csv().await);
    }
}
