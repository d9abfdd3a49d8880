//! The pipeline end to end: idempotence, what a plain Parquet reader sees,
//! the SQLite path against raw files, manifests, and exact decimal money.

mod common;

use std::io::Write;

use common::{Workspace, golden_date, golden_tables};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use shelfline::datagen::{self, DatagenSpec};
use shelfline::raw::{RawFormat, csv::CsvEncoder};
use shelfline::schema::Table;

fn small_spec() -> DatagenSpec {
    DatagenSpec {
        scale_factor: 0.01,
        days: 21,
        ..DatagenSpec::default()
    }
}

#[tokio::test]
async fn running_a_date_twice_leaves_the_same_table() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let first = ws.fact_csv().await;
    ws.pipeline.transform(golden_date()).await.unwrap();
    assert_eq!(ws.fact_csv().await, first);
    let stores = ws.query("SELECT count(*) FROM store_snapshots").await;
    assert_eq!(stores[0].column(0).as_primitive::<Int64Type>().value(0), 2);
}

#[tokio::test]
async fn plain_parquet_reader_sees_exactly_the_committed_rows() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    for _ in 0..3 {
        ws.pipeline.transform(golden_date()).await.unwrap();
    }
    let ctx = SessionContext::new();
    let folder = ws.lake_dir().join("weekly_sales_inventory");
    let options = ParquetReadOptions::default().table_partition_cols(vec![
        (
            "yr_num".to_string(),
            datafusion::arrow::datatypes::DataType::Int32,
        ),
        (
            "wk_num".to_string(),
            datafusion::arrow::datatypes::DataType::Int32,
        ),
    ]);
    ctx.register_parquet("hive", format!("{}/", folder.display()), options)
        .await
        .unwrap();
    let sql = "SELECT count(*) AS n, sum(total_sales_amt) AS amt FROM ";
    let plain = ctx
        .sql(&format!("{sql} hive"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let delta = ws.query(&format!("{sql} weekly_sales_inventory")).await;
    assert_eq!(
        datafusion::arrow::util::pretty::pretty_format_batches(&plain)
            .unwrap()
            .to_string(),
        datafusion::arrow::util::pretty::pretty_format_batches(&delta)
            .unwrap()
            .to_string()
    );
    assert_eq!(plain[0].column(0).as_primitive::<Int64Type>().value(0), 9);
}

#[tokio::test]
async fn sqlite_source_gives_the_same_table_as_raw_files() {
    let spec = small_spec();
    let via_sqlite = Workspace::new();
    via_sqlite.pipeline.datagen(&spec, |_| {}).unwrap();
    via_sqlite.pipeline.run(spec.end()).await.unwrap();

    let via_files = Workspace::new();
    write_generated_raw(&via_files, &spec);
    via_files.pipeline.transform(spec.end()).await.unwrap();

    // The extracted facts came in daily-key order and say so: that run
    // aggregated and joined them as ordered streams, the raw files without
    // a manifest through hash tables. Same table.
    let manifest = read_manifest(&via_sqlite, spec.end());
    for table in [Table::Sales, Table::Inventory] {
        assert_eq!(
            manifest.tables[table.name()].sorted_by,
            table.daily_key(),
            "{table}"
        );
    }
    let expected = via_files.fact_csv().await;
    assert!(expected.lines().count() > 100, "{expected}");
    assert_eq!(via_sqlite.fact_csv().await, expected);
}

fn read_manifest(ws: &Workspace, date: chrono::NaiveDate) -> shelfline::raw::Manifest {
    let path = ws.raw_dir().join(format!("_manifests/{date}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A file whose manifest says it is in daily-key order, and is not, fails
/// the transform by name and the first key out of order; nothing is
/// published.
#[tokio::test]
async fn a_fact_file_out_of_its_declared_order_fails_and_publishes_nothing() {
    use sha2::Digest;
    let spec = small_spec();
    let ws = Workspace::new();
    ws.pipeline.datagen(&spec, |_| {}).unwrap();
    ws.pipeline
        .extract(spec.end(), RawFormat::CsvGz)
        .await
        .unwrap();

    // Swap the first data row (first day) with the last (last day).
    let mut manifest = read_manifest(&ws, spec.end());
    let entry = manifest.tables.get_mut("sales").unwrap();
    let path = ws.raw_dir().join(&entry.file);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
        &mut text,
    )
    .unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.len() - 1;
    lines.swap(1, last);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    writeln!(gzip, "{}", lines.join("\n")).unwrap();
    let bytes = gzip.finish().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    entry.bytes = bytes.len() as u64;
    entry.sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let manifest_path = ws.raw_dir().join(format!("_manifests/{}.json", spec.end()));
    std::fs::write(manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let message = format!("{:#}", ws.pipeline.transform(spec.end()).await.unwrap_err());
    for part in [
        "sales/sales_",
        "sorted by (trans_dt, store_key, prod_key)",
        &format!("comes after ({}, ", spec.end()),
        &format!("({}, ", spec.start),
        "extract the date again",
    ] {
        assert!(message.contains(part), "missing {part:?} in: {message}");
    }
    assert_eq!(ws.version("weekly_sales_inventory").await, None);
}

/// Writes datagen's batches straight into the raw zone as gzipped CSV.
fn write_generated_raw(ws: &Workspace, spec: &DatagenSpec) {
    let mut encoders = std::collections::BTreeMap::new();
    for table in Table::ALL {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoders.insert(table, CsvEncoder::new(gzip, table).unwrap());
    }
    datagen::generate::<std::io::Error>(
        spec,
        |table, batch| encoders.get_mut(&table).unwrap().write(&batch),
        |_| {},
    )
    .unwrap();
    for (table, encoder) in encoders {
        let bytes = encoder.finish().unwrap().finish().unwrap();
        let folder = ws.raw_dir().join(table.name());
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(format!("{}_{}.csv.gz", table.name(), spec.end()));
        std::fs::File::create(path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    }
}

#[tokio::test]
async fn manifest_catches_a_changed_file() {
    let spec = small_spec();
    let ws = Workspace::new();
    ws.pipeline.datagen(&spec, |_| {}).unwrap();
    let report = ws
        .pipeline
        .extract(spec.end(), RawFormat::CsvGz)
        .await
        .unwrap();
    assert_eq!(report.tables.len(), 5);
    let manifest = ws.raw_dir().join(format!("_manifests/{}.json", spec.end()));
    assert!(
        std::fs::read_to_string(&manifest)
            .unwrap()
            .contains("\"sha256\"")
    );
    ws.pipeline.check(spec.end()).await.unwrap();

    let store_file = ws
        .raw_dir()
        .join(format!("store/store_{}.csv.gz", spec.end()));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let header: Vec<&str> = Table::Store.columns().iter().map(|c| c.name).collect();
    writeln!(gzip, "{}", header.join(",")).unwrap();
    std::fs::write(&store_file, gzip.finish().unwrap()).unwrap();
    let message = format!("{:#}", ws.pipeline.check(spec.end()).await.unwrap_err());
    assert!(
        message.contains("store/store_") && message.contains("manifest says"),
        "{message}"
    );
    let message = format!("{:#}", ws.pipeline.transform(spec.end()).await.unwrap_err());
    assert!(message.contains("manifest says"), "{message}");

    // A run that names another file for one table (a copy of the calendar
    // elsewhere) still has the layout's files checked: the changed store
    // file fails it the same way.
    let date = spec.end();
    let copy = ws.raw_dir().join("drop");
    std::fs::create_dir_all(&copy).unwrap();
    let calendar = format!("calendar/calendar_{date}.csv.gz");
    std::fs::copy(
        ws.raw_dir().join(&calendar),
        copy.join(format!("calendar_{date}.csv.gz")),
    )
    .unwrap();
    let mut named = shelfline::raw::NamedFiles::default();
    named
        .insert(Table::Calendar, &format!("drop/calendar_{date}.csv.gz"))
        .unwrap();
    let raw = &ws.pipeline.raw;
    let computed =
        shelfline::transform::compute(&ws.pipeline.config, raw, date, &named, None).await;
    let message = format!(
        "{:#}",
        computed.err().expect("the changed file fails the run")
    );
    assert!(
        message.contains("store/store_") && message.contains("manifest says"),
        "{message}"
    );
    // Naming the manifest's own file keeps it verified.
    let mut same = shelfline::raw::NamedFiles::default();
    same.insert(Table::Calendar, &calendar).unwrap();
    let set = shelfline::raw::RawSet::locate(raw, date, &same)
        .await
        .unwrap();
    assert!(set.manifest_entry(Table::Calendar).is_some());
    let set = shelfline::raw::RawSet::locate(raw, date, &named)
        .await
        .unwrap();
    assert!(set.manifest_entry(Table::Calendar).is_none());
    assert!(set.manifest_entry(Table::Sales).is_some());
}

/// 70368744177664.01 + 0.01 + 0.01 is 70368744177664.03; in float64 it is
/// 70368744177664.05. The fact table must hold the exact sum.
#[tokio::test]
async fn money_is_summed_exactly_where_float64_is_off() {
    let amounts = ["70368744177664.01", "0.01", "0.01"];
    let float_sum: f64 = amounts.iter().map(|a| a.parse::<f64>().unwrap()).sum();
    assert_eq!(format!("{float_sum:.2}"), "70368744177664.05", "premise");

    let mut tables = golden_tables();
    let mut sales = String::from(tables[&Table::Sales].lines().next().unwrap());
    sales.push('\n');
    for (i, amt) in amounts.iter().enumerate() {
        sales.push_str(&format!(
            "{},101,1,2026-01-05,90000,1.00,{amt},{amt},0.00,0.00,0.00,0.00\n",
            1 + i
        ));
    }
    tables.insert(Table::Sales, sales);
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &tables);
    ws.pipeline.transform(golden_date()).await.unwrap();
    let result = ws
        .query("SELECT total_sales_amt FROM weekly_sales_inventory WHERE yr_num = 2026 AND wk_num = 2 AND store_key = 1 AND prod_key = 101")
        .await;
    let csv = shelfline::query::render(&result, shelfline::query::OutputFormat::Csv).unwrap();
    assert_eq!(csv, "total_sales_amt\n70368744177664.03\n");
}

/// A table that fails half-way through extraction leaves no file under its
/// final name and no manifest; the error names table, row and column.
#[tokio::test]
async fn failed_extraction_leaves_no_partial_file() {
    let spec = small_spec();
    let ws = Workspace::new();
    ws.pipeline.datagen(&spec, |_| {}).unwrap();
    let db = rusqlite::Connection::open(ws.dir.path().join("source.db")).unwrap();
    db.execute(
        "UPDATE sales SET sales_qty = 'lots' WHERE trans_id = 5000",
        [],
    )
    .unwrap();
    drop(db);

    let error = ws
        .pipeline
        .extract(spec.end(), RawFormat::CsvGz)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("sales") && message.contains("row 5000") && message.contains("sales_qty"),
        "{message}"
    );
    let sales_dir = ws.raw_dir().join("sales");
    let leftovers: Vec<_> = std::fs::read_dir(&sales_dir)
        .map(|dir| dir.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !ws.raw_dir()
            .join(format!("_manifests/{}.json", spec.end()))
            .exists()
    );
}

/// Fact files that hold a date window (per the manifest) replace only the
/// weeks they touch; the other published weeks stay as they were.
#[tokio::test]
async fn windowed_fact_files_replace_only_their_weeks() {
    let ws = Workspace::new();
    ws.write_raw(golden_date(), &golden_tables());
    ws.pipeline.transform(golden_date()).await.unwrap();
    let before = ws.fact_csv().await;

    // Week 2026/2 only (2026-01-04..10), without sale 1020.
    let mut tables = golden_tables();
    let in_window = |line: &&str, column: usize| {
        line.split(',')
            .nth(column)
            .is_some_and(|d| d.as_bytes() >= b"2026-01-04".as_slice())
    };
    for (table, date_column) in [(Table::Sales, 3), (Table::Inventory, 0)] {
        let text = &tables[&table];
        let header = text.lines().next().unwrap();
        let rows = text
            .lines()
            .skip(1)
            .filter(|l| in_window(l, date_column) && !l.starts_with("1020,"));
        let filtered: Vec<&str> = std::iter::once(header).chain(rows).collect();
        tables.insert(table, filtered.join("\n") + "\n");
    }
    ws.write_raw(golden_date(), &tables);
    write_manifest(&ws, &tables);
    ws.pipeline.transform(golden_date()).await.unwrap();

    let after = ws.fact_csv().await;
    let week = |csv: &str, prefix: &str| -> Vec<String> {
        csv.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    };
    for untouched in ["2025,52,", "2026,1,"] {
        assert_eq!(
            week(&after, untouched),
            week(&before, untouched),
            "{untouched}"
        );
    }
    assert_eq!(
        week(&after, "2026,2,").len(),
        week(&before, "2026,2,").len()
    );
    assert_ne!(week(&after, "2026,2,"), week(&before, "2026,2,"));
    assert!(after.contains("2026,2,1,101,1,6.00,29.44,"), "{after}");
}

/// A manifest for the raw files of `tables`, with sales and inventory as
/// the window 2026-01-04..2026-01-10.
fn write_manifest(ws: &Workspace, tables: &std::collections::BTreeMap<Table, String>) {
    use sha2::Digest;
    use shelfline::raw::{Manifest, ManifestEntry, Window, file_path};
    let mut entries = std::collections::BTreeMap::new();
    for (table, text) in tables {
        let path = file_path(*table, golden_date(), RawFormat::CsvGz);
        let bytes = std::fs::read(ws.raw_dir().join(path.as_ref())).unwrap();
        let window = match table {
            Table::Sales | Table::Inventory => Window::Range {
                from: "2026-01-04".parse().unwrap(),
                to: golden_date(),
            },
            _ => Window::FULL,
        };
        let entry = ManifestEntry {
            file: path.to_string(),
            rows: text.lines().count() as u64 - 1,
            bytes: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            window,
            sorted_by: Vec::new(),
        };
        entries.insert(table.name().to_string(), entry);
    }
    let manifest = Manifest {
        date: golden_date(),
        tables: entries,
    };
    let folder = ws.raw_dir().join("_manifests");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join(format!("{}.json", golden_date())),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}
