//! The data-quality rules of contract section 4 that look at the input
//! tables, run as SQL before anything is computed or published.
//!
//! Every rule is checked and every violation reported at once, each naming
//! the table, the column or key, the count and up to five examples.

use std::fmt;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use futures::FutureExt;
use futures::future::try_join_all;

use crate::schema::Table;

/// Examples shown per violated rule.
const EXAMPLES: usize = 5;

/// One violated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule, in the contract's words.
    pub rule: &'static str,
    /// What was found: table, column, counts, examples.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

/// Rows read per input table, counted while checking.
pub type RowCounts = Vec<(Table, u64)>;

/// Runs every input rule; returns the violations (empty when the input is
/// good) and the rows of each table.
///
/// Two rounds of concurrent queries: first the NULL-key counts, one scan per
/// table, which also parse and validate every field of every raw file; then
/// the rules that need only a few columns, which the raw reader then decodes
/// alone.
pub async fn check(ctx: &SessionContext) -> Result<(Vec<Violation>, RowCounts)> {
    let started = std::time::Instant::now();
    let null_checks = Table::ALL.map(|table| null_keys(ctx, table));
    let mut violations = Vec::new();
    let mut counts = Vec::new();
    for (table, result) in Table::ALL.into_iter().zip(try_join_all(null_checks).await?) {
        let (rows, nulls) = result;
        counts.push((table, rows));
        violations.extend(nulls);
    }
    tracing::info!(elapsed = ?started.elapsed(), "checked NULL keys and parsed every raw field");

    let started = std::time::Instant::now();
    let rules = [
        duplicates(
            ctx,
            "duplicate cal_dt in calendar",
            Table::Calendar,
            "cal_dt",
        )
        .boxed(),
        duplicates(ctx, "duplicate trans_id", Table::Sales, "trans_id").boxed(),
        duplicates(
            ctx,
            "duplicate inventory key",
            Table::Inventory,
            "cal_dt, store_key, prod_key",
        )
        .boxed(),
        calendar_week_nulls(ctx).boxed(),
        dates_missing_from_calendar(ctx, Table::Sales, "trans_dt").boxed(),
        dates_missing_from_calendar(ctx, Table::Inventory, "cal_dt").boxed(),
    ];
    violations.extend(try_join_all(rules).await?.into_iter().flatten());
    tracing::info!(elapsed = ?started.elapsed(), "checked keys and calendar dates");
    Ok((violations, counts))
}

/// Counts rows and NULLs in each key column of `table`.
async fn null_keys(ctx: &SessionContext, table: Table) -> Result<(u64, Vec<Violation>)> {
    let keys: Vec<&str> = table.key_columns().collect();
    let counts: Vec<String> = keys
        .iter()
        .map(|k| format!("count(*) FILTER (WHERE {k} IS NULL)"))
        .collect();
    let sql = format!("SELECT count(*), {} FROM {table}", counts.join(", "));
    let batch = single_row(ctx, &sql).await?;
    let value = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(0) as u64;
    let violations = keys
        .iter()
        .enumerate()
        .filter(|&(i, _)| value(i + 1) > 0)
        .map(|(i, key)| Violation {
            rule: "NULL in a key column",
            detail: format!(
                "table {table}, column {key}: {} of {} rows are NULL",
                value(i + 1),
                value(0)
            ),
        })
        .collect();
    Ok((value(0), violations))
}

/// Keys of `table` that occur more than once.
async fn duplicates(
    ctx: &SessionContext,
    rule: &'static str,
    table: Table,
    key: &str,
) -> Result<Option<Violation>> {
    let offending =
        format!("SELECT {key}, count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1");
    let found = Finding::query(ctx, &offending, key).await?;
    Ok(found.map(|f| Violation {
        rule,
        detail: format!(
            "table {table}: {} duplicated values of ({key}) over {} rows, e.g. {}",
            f.groups,
            f.rows,
            f.examples.join("; ")
        ),
    }))
}

async fn calendar_week_nulls(ctx: &SessionContext) -> Result<Option<Violation>> {
    let offending = "SELECT cal_dt, 1 AS n FROM calendar WHERE yr_num IS NULL OR wk_num IS NULL";
    let found = Finding::query(ctx, offending, "cal_dt").await?;
    Ok(found.map(|f| Violation {
        rule: "NULL yr_num/wk_num in calendar",
        detail: format!(
            "table calendar: {} rows have no yr_num or wk_num, e.g. cal_dt {}",
            f.rows,
            f.examples.join("; ")
        ),
    }))
}

async fn dates_missing_from_calendar(
    ctx: &SessionContext,
    table: Table,
    column: &str,
) -> Result<Option<Violation>> {
    let offending = format!(
        "SELECT d.dt, d.n
         FROM (SELECT {column} AS dt, count(*) AS n FROM {table}
               WHERE {column} IS NOT NULL GROUP BY {column}) d
         LEFT JOIN (SELECT DISTINCT cal_dt FROM calendar) c ON c.cal_dt = d.dt
         WHERE c.cal_dt IS NULL"
    );
    let found = Finding::query(ctx, &offending, "dt").await?;
    Ok(found.map(|f| Violation {
        rule: "date missing from calendar",
        detail: format!(
            "table {table}, column {column}: {} rows on {} distinct dates not in calendar, e.g. {}; add the dates to the calendar",
            f.rows,
            f.groups,
            f.examples.join("; ")
        ),
    }))
}

/// What a rule found: offending keys, the rows they cover, and examples.
struct Finding {
    groups: u64,
    rows: u64,
    examples: Vec<String>,
}

impl Finding {
    /// Runs `offending`, a query of the offending keys (columns `key`) with
    /// `n`, the rows per key; `None` when it finds nothing.
    async fn query(ctx: &SessionContext, offending: &str, key: &str) -> Result<Option<Finding>> {
        let sql = format!(
            "WITH offending AS ({offending})
             SELECT {key}, n, count(*) OVER () AS groups, sum(n) OVER () AS total_rows
             FROM offending ORDER BY {key} LIMIT {EXAMPLES}"
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let mut finding: Option<Finding> = None;
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let width = batch.num_columns();
            let int = |i: usize, row: usize| int_value(batch.column(i).as_ref(), row);
            let found = finding.get_or_insert(Finding {
                groups: int(width - 2, 0),
                rows: int(width - 1, 0),
                examples: Vec::new(),
            });
            for row in 0..batch.num_rows() {
                let key = format_key(&batch.columns()[..width - 3], row);
                let n = int(width - 3, row);
                found
                    .examples
                    .push(if n > 1 { format!("{key} ×{n}") } else { key });
            }
        }
        Ok(finding)
    }
}

fn int_value(array: &dyn Array, row: usize) -> u64 {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default());
    formatter
        .map(|f| f.value(row).to_string())
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

fn format_key(columns: &[datafusion::arrow::array::ArrayRef], row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            ArrayFormatter::try_new(c.as_ref(), &options)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default()
        })
        .collect();
    match values.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    }
}

async fn single_row(ctx: &SessionContext, sql: &str) -> Result<RecordBatch> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}
