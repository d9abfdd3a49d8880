//! The day's raw files as stock DataFusion tables (listing-table scans of
//! CSV and Parquet), for a Ballista cluster: an executor runs such a scan
//! with no code of shelfline's, so the whole plan ships as it is.
//!
//! A stock CSV reader is laxer than the contract: it cuts `1.255` down to
//! a DECIMAL(38,2) `1.25` and knows no `0`/`1` booleans. So CSV files are
//! read as text. One pass per file ([`gather_facts`]) checks every value
//! against its column's type and gathers the same [`ScanFacts`] that the
//! local reader gathers on the way (rows, NULL keys, per-date totals);
//! the tables the metric SQL reads are views that cast the text to the
//! contract's types. Parquet files carry their types and are read as they
//! are.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float64Type, Int64Type, Schema,
};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use futures::future::try_join_all;

use super::TransformError;
use crate::raw::facts::{DateTotals, ScanFacts};
use crate::raw::{RawFile, RawFormat, RawSet};
use crate::schema::{Column, Kind, Table};
use crate::storage::Location;

/// Examples shown of values that do not parse.
const EXAMPLES: usize = 5;

/// Registers the five raw files of `set` as tables `store`, `product`,
/// `calendar`, `sales` and `inventory` of `ctx` (CSV files as views over a
/// text table `<table>_text`).
pub async fn register(ctx: &SessionContext, set: &RawSet) -> Result<(), TransformError> {
    for file in set.files.values() {
        let url = file_url(&set.root, file);
        let table = file.table;
        match file.format {
            RawFormat::Parquet => {
                let schema = table.arrow_schema();
                let options = ParquetReadOptions::default().schema(&schema);
                ctx.register_parquet(table.name(), &url, options).await?;
            }
            RawFormat::CsvGz => {
                let text = text_schema(table);
                let options = CsvReadOptions::new()
                    .has_header(true)
                    .newlines_in_values(true)
                    .schema(&text)
                    .file_extension(".csv.gz")
                    .file_compression_type(FileCompressionType::GZIP);
                ctx.register_csv(&text_table(table), &url, options).await?;
                let casts: Vec<String> = table.columns().iter().map(typed).collect();
                let view = format!(
                    "CREATE VIEW {table} AS SELECT {} FROM {}",
                    casts.join(", "),
                    text_table(table)
                );
                ctx.sql(&view).await?.collect().await?;
            }
        }
    }
    Ok(())
}

/// Reads every raw file of `set` in full, at once, on the cluster: fails
/// on a value that does not parse (naming file, column and examples) and
/// returns what each file holds.
pub async fn gather_facts(
    ctx: &SessionContext,
    set: &RawSet,
) -> Result<BTreeMap<Table, ScanFacts>, TransformError> {
    let scans = set.files.values().map(|file| async move {
        let facts = file_facts(ctx, file).await.map_err(|error| match error {
            TransformError::Engine(source) => TransformError::Scan {
                file: file.path.to_string(),
                source,
            },
            other => other,
        })?;
        Ok::<_, TransformError>((file.table, facts))
    });
    Ok(try_join_all(scans).await?.into_iter().collect())
}

/// One grouped pass over a file: per date (when the table has a date
/// column), its rows, NULL keys, reconciled sums and values that do not
/// parse per column.
async fn file_facts(ctx: &SessionContext, file: &RawFile) -> Result<ScanFacts, TransformError> {
    let table = file.table;
    let text = file.format == RawFormat::CsvGz;
    let source = if text {
        text_table(table)
    } else {
        table.name().to_string()
    };
    // Text is cast only where it parses (TRY_CAST): a bad value is counted
    // with its column's other bad values, not failed on here.
    let day = match (table.date_column(), text) {
        (Some(column), true) => format!("TRY_CAST({column} AS DATE)"),
        (Some(column), false) => column.to_string(),
        (None, _) => "CAST(NULL AS DATE)".to_string(),
    };
    let cast = if text { "TRY_CAST" } else { "CAST" };
    let keys: Vec<&str> = table.key_columns().collect();
    let mut measures = vec![format!("{day} AS day"), "count(*)".to_string()];
    measures.extend(keys.iter().map(|key| format!("count(*) - count({key})")));
    measures.extend(
        table
            .reconciled_columns()
            .iter()
            .map(|column| format!("sum({cast}({column} AS DECIMAL(38, 2)))")),
    );
    // Sums of magnitudes as DOUBLE, which cannot wrap like a DECIMAL SUM.
    measures.extend(table.summed_columns().iter().map(|column| {
        format!("sum(abs(CAST({cast}({column} AS DECIMAL(38, 2)) AS DOUBLE)) * 100)")
    }));
    let checked: Vec<(&Column, String)> = if text {
        table
            .columns()
            .iter()
            .filter_map(|c| unparsable(c).map(|bad| (c, bad)))
            .collect()
    } else {
        Vec::new()
    };
    measures.extend(
        checked
            .iter()
            .map(|(_, bad)| format!("sum(CASE WHEN {bad} THEN 1 ELSE 0 END)")),
    );
    let sql = format!("SELECT {} FROM {source} GROUP BY 1", measures.join(", "));
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut facts = ScanFacts {
        null_keys: keys.iter().map(|key| (*key, 0)).collect(),
        ..ScanFacts::default()
    };
    let mut bad = vec![0u64; checked.len()];
    for batch in &batches {
        fold(&mut facts, &mut bad, batch, table);
    }
    for ((column, condition), count) in checked.iter().zip(bad) {
        if count > 0 {
            return Err(unparsable_values(ctx, file, column, condition, count).await?);
        }
    }
    Ok(facts)
}

/// Adds one batch of [`file_facts`]' query to `facts` and `bad`.
fn fold(facts: &mut ScanFacts, bad: &mut [u64], batch: &RecordBatch, table: Table) {
    let count = |i: usize, row: usize| {
        let column = batch.column(i).as_primitive::<Int64Type>();
        if column.is_null(row) {
            0
        } else {
            column.value(row) as u64
        }
    };
    let keys = facts.null_keys.len();
    let sums = table.reconciled_columns().len();
    let summed = table.summed_columns().len();
    let days = batch.column(0).as_primitive::<Date32Type>();
    for row in 0..batch.num_rows() {
        let rows = count(1, row);
        facts.rows += rows;
        for (k, (_, nulls)) in facts.null_keys.iter_mut().enumerate() {
            *nulls += count(2 + k, row);
        }
        for (c, total) in bad.iter_mut().enumerate() {
            *total += count(2 + keys + sums + summed + c, row);
        }
        if days.is_null(row) {
            continue;
        }
        let totals: Vec<i128> = (0..sums)
            .map(|s| {
                let column = batch.column(2 + keys + s).as_primitive::<Decimal128Type>();
                if column.is_null(row) {
                    0
                } else {
                    column.value(row)
                }
            })
            .collect();
        let magnitudes: Vec<f64> = (0..summed)
            .map(|s| {
                let column = batch
                    .column(2 + keys + sums + s)
                    .as_primitive::<Float64Type>();
                if column.is_null(row) {
                    0.0
                } else {
                    column.value(row)
                }
            })
            .collect();
        let entry = facts.dates.entry(days.value(row)).or_insert(DateTotals {
            rows: 0,
            sums: vec![0; sums],
            magnitudes: vec![0.0; summed],
        });
        entry.rows += rows;
        for (total, sum) in entry.sums.iter_mut().zip(totals) {
            *total = total.wrapping_add(sum);
        }
        for (total, magnitude) in entry.magnitudes.iter_mut().zip(magnitudes) {
            *total += magnitude;
        }
    }
}

/// The error for `count` values of `column` in `file` that are not of its
/// type, with a few of them.
async fn unparsable_values(
    ctx: &SessionContext,
    file: &RawFile,
    column: &Column,
    bad: &str,
    count: u64,
) -> Result<TransformError, TransformError> {
    let sql = format!(
        "SELECT DISTINCT {name} FROM {table} WHERE {bad} ORDER BY 1 LIMIT {EXAMPLES}",
        name = column.name,
        table = text_table(file.table),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let examples = batches
        .iter()
        .flat_map(|b| {
            let values = b.column(0).as_string::<i32>();
            (0..values.len())
                .map(|i| {
                    let value = values.value(i).as_bytes();
                    format!(
                        "`{}`",
                        crate::text::excerpt(value, crate::text::VALUE_CHARS)
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(TransformError::Unparsable {
        file: file.path.to_string(),
        column: column.name,
        sql_type: column.sql_type,
        count,
        examples,
    })
}

/// The URL of a raw file, as the engine's object-store registry knows it.
fn file_url(raw: &Location, file: &RawFile) -> String {
    format!("{}/{}", raw.url().as_str().trim_end_matches('/'), file.path)
}

fn text_table(table: Table) -> String {
    format!("{table}_text")
}

/// Every column of `table` as nullable text (an empty field is NULL).
fn text_schema(table: Table) -> Schema {
    let fields: Vec<Field> = table
        .columns()
        .iter()
        .map(|c| Field::new(c.name, DataType::Utf8, true))
        .collect();
    Schema::new(fields)
}

/// The SQL that turns `column`'s text into its contract type.
fn typed(column: &Column) -> String {
    let name = column.name;
    match column.kind {
        Kind::Utf8 => name.to_string(),
        Kind::Boolean => format!(
            "CASE lower({name}) WHEN '1' THEN true WHEN 'true' THEN true \
             WHEN '0' THEN false WHEN 'false' THEN false END AS {name}"
        ),
        kind => format!("CAST({name} AS {}) AS {name}", sql_type(kind)),
    }
}

/// A SQL condition true for a text value of `column` that is not of its
/// type (contract section 2); `None` for text columns, where any value is.
fn unparsable(column: &Column) -> Option<String> {
    let name = column.name;
    let not_cast = |kind| format!("TRY_CAST({name} AS {}) IS NULL", sql_type(kind));
    let condition = match column.kind {
        Kind::Utf8 => return None,
        Kind::Boolean => format!("lower({name}) NOT IN ('0', '1', 'true', 'false')"),
        // At most the column's scale after the point: never rounded.
        Kind::Decimal(_, scale) => format!(
            "({} OR (strpos({name}, '.') > 0 AND length({name}) - strpos({name}, '.') > {scale}))",
            not_cast(column.kind)
        ),
        kind => not_cast(kind),
    };
    Some(format!("({name} IS NOT NULL AND {condition})"))
}

/// The SQL type a [`Kind`] is cast to.
fn sql_type(kind: Kind) -> String {
    match kind {
        Kind::Int32 => "INT".to_string(),
        Kind::Int64 => "BIGINT".to_string(),
        Kind::Utf8 => "VARCHAR".to_string(),
        Kind::Decimal(precision, scale) => format!("DECIMAL({precision}, {scale})"),
        Kind::Date => "DATE".to_string(),
        Kind::Boolean => "BOOLEAN".to_string(),
        Kind::Float64 => "DOUBLE".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(table: Table, name: &str) -> &'static Column {
        let i = table.column_index(name).unwrap();
        &table.columns()[i]
    }

    #[tokio::test]
    async fn unparsable_catches_what_the_contract_forbids_and_nothing_else() {
        let ctx = SessionContext::new();
        let cases = [
            (column(Table::Sales, "sales_amt"), "12.50", false),
            (column(Table::Sales, "sales_amt"), "-3", false),
            (column(Table::Sales, "sales_amt"), "1.255", true),
            (column(Table::Sales, "sales_amt"), "abc", true),
            (column(Table::Sales, "trans_id"), "12345678901", false),
            (column(Table::Sales, "prod_key"), "1.5", true),
            (column(Table::Sales, "trans_dt"), "2025-02-30", true),
            (column(Table::Inventory, "promotion_flg"), "TRUE", false),
            (column(Table::Inventory, "promotion_flg"), "2", true),
        ];
        for (column, value, expected) in cases {
            let condition = unparsable(column).unwrap();
            let sql = format!(
                "SELECT {condition} FROM (SELECT CAST('{value}' AS VARCHAR) AS {}) t",
                column.name
            );
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let found = batches[0].column(0).as_boolean().value(0);
            assert_eq!(found, expected, "{} = {value}", column.name);
        }
    }
}
