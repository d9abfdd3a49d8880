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

use chrono::NaiveDate;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};

use crate::config::Config;
use crate::extract::SOURCE_BATCH_ROWS;
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
    #[error("reading the lake: {0}")]
    Lake(#[from] QueryError),
    #[error(
        "no calendar week of the source's calendar both touches {range} and ends by the lake's last night, {published}"
    )]
    NoWeeks {
        range: DateRange,
        published: NaiveDate,
    },
    #[error("the lake's last night is {published}, before {range}: nothing of it is published yet")]
    Unpublished {
        range: DateRange,
        published: NaiveDate,
    },
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
    /// The calendar week.
    pub week: Week,
    /// Its first and last day compared.
    pub days: DateRange,
    /// What the source's rows add up to.
    pub source: WeekFigures,
    /// What the published fact adds up to.
    pub lake: WeekFigures,
}

/// The comparison of the weeks of one date range.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The weeks compared, whole.
    pub weeks: Vec<Week>,
    /// The lake's logical date: a week that goes on after it is not
    /// compared (the next night recomputes it).
    pub published: NaiveDate,
    /// The weeks whose figures differ.
    pub drifted: Vec<Drift>,
}

/// The calendar weeks touching `range` that end by `published` (the
/// lake's logical date), compared whole, one by one, between `source` and
/// the fact table of `lake`.
pub async fn compare(
    source: &Source,
    calendar: &Calendar,
    lake: &Lake,
    config: &Config,
    range: DateRange,
    published: NaiveDate,
) -> Result<Comparison, ReconcileError> {
    if published < range.from {
        return Err(ReconcileError::Unpublished { range, published });
    }
    let weeks: BTreeSet<Week> = calendar
        .weeks_in(&[DateRange {
            to: range.to.min(published),
            ..range
        }])
        .into_iter()
        .filter(|week| {
            calendar
                .days_of(*week)
                .is_some_and(|days| days.to <= published)
        })
        .collect();
    if weeks.is_empty() {
        return Err(ReconcileError::NoWeeks { range, published });
    }
    let in_source = source_figures(source, calendar, &weeks).await?;
    let in_lake = lake_figures(lake, config, &weeks).await?;
    let drifted = weeks
        .iter()
        .filter_map(|week| {
            let source = in_source.get(week).copied().unwrap_or_default();
            let lake = in_lake.get(week).copied().unwrap_or_default();
            (source != lake).then_some(Drift {
                week: *week,
                days: calendar.days_of(*week)?,
                source,
                lake,
            })
        })
        .collect();
    Ok(Comparison {
        weeks: weeks.into_iter().collect(),
        published,
        drifted,
    })
}

/// Per week, what the fact built from the source's rows of `weeks` adds
/// up to. The weeks are read one at a time, so memory holds one week's
/// store × product pairs.
async fn source_figures(
    source: &Source,
    calendar: &Calendar,
    weeks: &BTreeSet<Week>,
) -> Result<BTreeMap<Week, WeekFigures>, ReconcileError> {
    let (source, calendar, weeks) = (source.clone(), calendar.clone(), weeks.clone());
    tokio::task::spawn_blocking(move || {
        let mut figures = BTreeMap::new();
        for week in weeks {
            let Some(days) = calendar.days_of(week) else {
                continue;
            };
            let mut tally = Tally::new(week);
            for table in Table::FACTS {
                source.read_table(table, Rows::Dated(&[days]), SOURCE_BATCH_ROWS, |batch| {
                    tally.add(&calendar, table, &batch);
                    Ok(())
                })?;
            }
            figures.insert(week, tally.figures());
        }
        Ok(figures)
    })
    .await
    .map_err(|e| ReconcileError::Task(e.to_string()))?
}

/// A row's (`store_key`, `prod_key`).
type StoreProduct = (Option<i32>, Option<i32>);

/// The source's rows of one week added up (rows of other weeks that a
/// span holds, in a calendar whose weeks are not contiguous, are left out).
struct Tally {
    week: Week,
    figures: WeekFigures,
    pairs: HashSet<StoreProduct>,
}

impl Tally {
    fn new(week: Week) -> Tally {
        Tally {
            week,
            figures: WeekFigures::default(),
            pairs: HashSet::new(),
        }
    }

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
            if week != Some(self.week) {
                continue;
            }
            let figures = &mut self.figures;
            if table == Table::Sales {
                let qty = value(column("sales_qty").as_ref(), row);
                let amt = value(column("sales_amt").as_ref(), row);
                figures.sales_qty = figures.sales_qty.saturating_add(qty);
                figures.sales_amt = figures.sales_amt.saturating_add(amt);
            } else {
                figures.snapshots += 1;
            }
            self.pairs.insert((key(stores, row), key(products, row)));
        }
    }

    fn figures(self) -> WeekFigures {
        WeekFigures {
            rows: self.pairs.len() as u64,
            ..self.figures
        }
    }
}

/// Per week of `weeks`, what the published fact adds up to.
async fn lake_figures(
    lake: &Lake,
    config: &Config,
    weeks: &BTreeSet<Week>,
) -> Result<BTreeMap<Week, WeekFigures>, ReconcileError> {
    let years = weeks.iter().map(|week| week.0);
    let (first, last) = (years.clone().min().unwrap_or(0), years.max().unwrap_or(0));
    let sql = format!(
        "SELECT yr_num, wk_num, count(*), sum(total_sales_qty), sum(total_sales_amt), \
         sum(inventory_days) FROM {FACT_TABLE} WHERE yr_num BETWEEN {first} AND {last} \
         GROUP BY yr_num, wk_num"
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
