//! The data-quality rules of contract section 4 that look at the input
//! tables, checked before anything is published.
//!
//! Most rules are answered by what the scans of the raw files gathered on
//! the way ([`ScanFacts`]): NULL keys, dates and, for files in key order,
//! the uniqueness of the key. What the facts cannot settle (a unique key
//! out of order, the calendar's weeks) runs as SQL. Every rule is checked
//! and every violation reported at once, each naming the table, the column
//! or key, the count and up to five examples.

use std::collections::BTreeMap;
use std::fmt;

use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use futures::future::try_join_all;

use crate::raw::csv::show_days;
use crate::raw::facts::{DateTotals, ScanFacts};
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

/// Rows read per input table.
pub type RowCounts = Vec<(Table, u64)>;

/// Runs every input rule over raw files that were all read in full (their
/// `facts`, and SQL on `ctx`'s input tables); returns the violations (empty
/// when the input is good) and the rows of each table.
pub async fn check(
    ctx: &SessionContext,
    facts: &BTreeMap<Table, ScanFacts>,
) -> Result<(Vec<Violation>, RowCounts)> {
    let mut violations = Vec::new();
    let mut counts = Vec::new();
    for table in Table::ALL {
        let table_facts = facts_of(facts, table)?;
        counts.push((table, table_facts.rows));
        violations.extend(null_keys(table, table_facts));
    }
    let calendar = &facts_of(facts, Table::Calendar)?.dates;
    for table in [Table::Sales, Table::Inventory] {
        violations.extend(dates_missing_from_calendar(
            table,
            facts_of(facts, table)?,
            calendar,
        ));
    }
    let duplicate_rules = [
        (Table::Calendar, "duplicate cal_dt in calendar"),
        (Table::Sales, "duplicate trans_id"),
        (Table::Inventory, "duplicate inventory key"),
    ]
    .into_iter()
    .filter(|(table, _)| facts_of(facts, *table).is_ok_and(|f| !f.unique_key.holds()))
    .map(|(table, rule)| duplicates(ctx, rule, table));
    violations.extend(try_join_all(duplicate_rules).await?.into_iter().flatten());
    violations.extend(calendar_week_nulls(ctx).await?);
    Ok((violations, counts))
}

/// The facts of `table`'s file.
pub fn facts_of(facts: &BTreeMap<Table, ScanFacts>, table: Table) -> Result<&ScanFacts> {
    facts.get(&table).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!(
            "no facts were gathered for raw table {table}"
        ))
    })
}

/// A violation per key column of `table` with NULLs.
fn null_keys(table: Table, facts: &ScanFacts) -> Vec<Violation> {
    facts
        .null_keys
        .iter()
        .filter(|(_, nulls)| *nulls > 0)
        .map(|(key, nulls)| Violation {
            rule: "NULL in a key column",
            detail: format!(
                "table {table}, column {key}: {nulls} of {} rows are NULL",
                facts.rows
            ),
        })
        .collect()
}

/// Dates of `table` that the calendar lacks.
fn dates_missing_from_calendar(
    table: Table,
    facts: &ScanFacts,
    calendar: &BTreeMap<i32, DateTotals>,
) -> Option<Violation> {
    let missing: Vec<(i32, u64)> = facts
        .dates
        .iter()
        .filter(|(date, _)| !calendar.contains_key(date))
        .map(|(date, totals)| (*date, totals.rows))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let rows: u64 = missing.iter().map(|(_, rows)| rows).sum();
    let examples: Vec<String> = missing
        .iter()
        .take(EXAMPLES)
        .map(|&(date, n)| with_count(show_days(date), n))
        .collect();
    Some(Violation {
        rule: "date missing from calendar",
        detail: format!(
            "table {table}, column {}: {rows} rows on {} distinct dates not in calendar, e.g. {}; add the dates to the calendar",
            table.date_column().unwrap_or_default(),
            missing.len(),
            examples.join("; ")
        ),
    })
}

/// An example key, with its number of rows when more than one.
fn with_count(key: String, n: u64) -> String {
    if n > 1 { format!("{key} ×{n}") } else { key }
}

/// Keys of `table` that occur more than once.
async fn duplicates(
    ctx: &SessionContext,
    rule: &'static str,
    table: Table,
) -> Result<Option<Violation>> {
    let key = table.unique_key().join(", ");
    let offending =
        format!("SELECT {key}, count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1");
    let found = Finding::query(ctx, &offending, &key).await?;
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
                found.examples.push(with_count(key, n));
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
