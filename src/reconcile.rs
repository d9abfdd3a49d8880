//! Source ↔ lake, week by week: finds the weeks a late change older than
//! the lookback left behind (an incremental night only recomputes its
//! window), and repairs exactly those.
//!
//! For each calendar week the source's figures are computed from its
//! `sales` and `inventory` rows, read through the extractor's own readers
//! (so values are parsed as extraction parses them), and compared with the
//! same figures summed over the published fact: store × product rows, the
//! sums of `sales_qty` and `sales_amt`, and the inventory snapshots.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};

use crate::config::Config;
use crate::extract::{ExtractError, SOURCE_BATCH_ROWS};
use crate::lake::Lake;
use crate::query::{self, QueryError};
use crate::raw::csv::date_from_days;
use crate::schema::{FACT_TABLE, Table};
use crate::source::{Rows, Source, SourceError};
use crate::text::money;
use crate::window::{Calendar, DateRange, Week};

/// Why a reconciliation could not compare.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("reading the lake: {0}")]
    Lake(#[from] QueryError),
    #[error("no calendar week of the source's calendar lies between {0}")]
    NoWeeks(DateRange),
    #[error("reading the source failed: {0}")]
    Task(String),
}

/// What one week adds up to, in the source or in the lake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeekFigures {
    /// Store × product pairs with a sale or a snapshot: the fact's rows.
    pub rows: u64,
    /// SUM(sales_qty), in hundredths.
    pub sales_qty: i128,
    /// SUM(sales_amt), in hundredths.
    pub sales_amt: i128,
    /// Inventory snapshots: SUM(inventory_days) in the fact.
    pub snapshots: u64,
}

/// A week whose figures differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub week: Week,
    pub days: DateRange,
    pub source: WeekFigures,
    pub lake: WeekFigures,
}

/// The comparison of the weeks of one date range.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The whole weeks compared.
    pub weeks: Vec<Week>,
    pub drifted: Vec<Drift>,
}

/// The weeks touching `range` in the source's `calendar`, compared one by
/// one between `source` and the fact table of `lake`.
pub async fn compare(
    source: &Source,
    calendar: &Calendar,
    lake: &Lake,
    config: &Config,
    range: DateRange,
) -> Result<Comparison, ReconcileError> {
    let weeks = calendar.weeks_in(&[range]);
    if weeks.is_empty() {
        return Err(ReconcileError::NoWeeks(range));
    }
    let in_source = source_figures(source, calendar, &weeks).await?;
    let in_lake = lake_figures(lake, config, &weeks).await?;
    let drifted = weeks
        .iter()
        .filter_map(|week| {
            let source = in_source.get(week).copied().unwrap_or_default();
            let lake = in_lake.get(week).copied().unwrap_or_default();
            let days = calendar.days_of(*week)?;
            (source != lake).then_some(Drift {
                week: *week,
                days,
                source,
                lake,
            })
        })
        .collect();
    Ok(Comparison {
        weeks: weeks.into_iter().collect(),
        drifted,
    })
}

/// Per week, what the fact built from the source's rows of `weeks` adds
/// up to.
async fn source_figures(
    source: &Source,
    calendar: &Calendar,
    weeks: &BTreeSet<Week>,
) -> Result<BTreeMap<Week, WeekFigures>, ReconcileError> {
    let ranges = calendar.ranges_of(weeks);
    let (source, calendar) = (source.clone(), calendar.clone());
    tokio::task::spawn_blocking(move || {
        let mut tally = Tally::default();
        for table in Table::FACTS {
            source.read_table(table, Rows::Dated(&ranges), SOURCE_BATCH_ROWS, |batch| {
                tally.add(&calendar, table, &batch);
                Ok(())
            })?;
        }
        Ok(tally.figures())
    })
    .await
    .map_err(|e| ReconcileError::Task(e.to_string()))?
}

/// A row's (`store_key`, `prod_key`).
type StoreProduct = (Option<i32>, Option<i32>);

/// The source's rows added up per week.
#[derive(Default)]
struct Tally {
    figures: BTreeMap<Week, WeekFigures>,
    pairs: BTreeMap<Week, HashSet<StoreProduct>>,
}

impl Tally {
    fn add(&mut self, calendar: &Calendar, table: Table, batch: &RecordBatch) {
        let column = |name: &str| batch.column_by_name(name).expect("a contract column");
        let date = column(table.window_column().expect("a fact table"));
        let days = date.as_primitive::<Date32Type>();
        let stores = column("store_key").as_primitive::<Int32Type>();
        let products = column("prod_key").as_primitive::<Int32Type>();
        let value = |array: &dyn Array, row| {
            let array = array.as_primitive::<Decimal128Type>();
            if array.is_null(row) {
                0
            } else {
                array.value(row)
            }
        };
        let key = |array: &datafusion::arrow::array::Int32Array, row| {
            (!array.is_null(row)).then(|| array.value(row))
        };
        for row in 0..batch.num_rows() {
            let week = (!days.is_null(row))
                .then(|| date_from_days(days.value(row)))
                .flatten()
                .and_then(|day| calendar.week_of(day));
            let Some(week) = week else {
                continue;
            };
            let figures = self.figures.entry(week).or_default();
            if table == Table::Sales {
                figures.sales_qty += value(column("sales_qty").as_ref(), row);
                figures.sales_amt += value(column("sales_amt").as_ref(), row);
            } else {
                figures.snapshots += 1;
            }
            self.pairs
                .entry(week)
                .or_default()
                .insert((key(stores, row), key(products, row)));
        }
    }

    fn figures(mut self) -> BTreeMap<Week, WeekFigures> {
        for (week, pairs) in self.pairs {
            self.figures.entry(week).or_default().rows = pairs.len() as u64;
        }
        self.figures
    }
}

/// Per week of `weeks`, what the published fact adds up to.
async fn lake_figures(
    lake: &Lake,
    config: &Config,
    weeks: &BTreeSet<Week>,
) -> Result<BTreeMap<Week, WeekFigures>, ReconcileError> {
    let sql = format!(
        "SELECT yr_num, wk_num, count(*), sum(total_sales_qty), sum(total_sales_amt), \
         sum(inventory_days) FROM {FACT_TABLE} GROUP BY yr_num, wk_num"
    );
    let batches = query::run(lake, config, &sql).await?;
    let mut figures = BTreeMap::new();
    for batch in &batches {
        let int = |i: usize| batch.column(i).as_primitive::<Int32Type>();
        let count = |i: usize, row: usize| {
            let array = batch.column(i).as_primitive::<Int64Type>();
            if array.is_null(row) {
                0
            } else {
                array.value(row).max(0) as u64
            }
        };
        let money = |i: usize, row: usize| {
            let array = batch.column(i).as_primitive::<Decimal128Type>();
            if array.is_null(row) {
                0
            } else {
                array.value(row)
            }
        };
        for row in 0..batch.num_rows() {
            let week = (int(0).value(row), int(1).value(row));
            if weeks.contains(&week) {
                let week_figures = WeekFigures {
                    rows: count(2, row),
                    sales_qty: money(3, row),
                    sales_amt: money(4, row),
                    snapshots: count(5, row),
                };
                figures.insert(week, week_figures);
            }
        }
    }
    Ok(figures)
}

impl std::fmt::Display for WeekFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows, sales_qty {}, sales_amt {}, {} snapshots",
            self.rows,
            money(self.sales_qty),
            money(self.sales_amt),
            self.snapshots
        )
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} week {} ({}): source {}; lake {}",
            self.week.0, self.week.1, self.days, self.source, self.lake
        )
    }
}
