//! Raw zone → weekly fact (contract section 3) behind the quality gate
//! (section 4), then publication to the lake.
//!
//! The steps, each of which must pass before the next starts:
//!
//! 1. locate the date's five raw files (and manifest);
//! 2. compute `weekly_sales_inventory` with the one SQL file
//!    `weekly_sales_inventory.sql` and stage it as Arrow files in a local
//!    scratch folder (streamed, never collected). This is the one pass over
//!    the big raw files: their scans parse and validate every field (parse
//!    errors surface here) and gather the facts the checks need;
//! 3. check the input rules ([`quality`]);
//! 4. reconcile the staged output's sales totals with the input's;
//! 5. publish the fact and the dimension snapshots ([`crate::lake`]).
//!
//! A failure at any step publishes nothing and removes nothing.

mod on_cluster;
pub mod quality;
pub mod raw_tables;
pub(crate) mod scratch;
mod stock_tables;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};
use datafusion::datasource::file_format::arrow::ArrowFormatFactory;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::error::DataFusionError;
use datafusion::execution::options::ArrowReadOptions;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::collect;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::config::{Config, EngineKind};
use crate::lake::{
    FactScope, Lake, LakeError, Publication, PublishOptions, PublishReport, WeekRows,
};
use crate::raw::csv::date_from_days;
use crate::raw::facts::{DateTotals, ScanFacts};
use crate::raw::quarantine::Quarantine;
use crate::raw::{NamedFiles, RawError, RawSet, Window};
use crate::schema::{self, Table};
use crate::storage::Location;
use crate::text::money;
use crate::window::{Calendar, DateRange, WindowError};
use quality::Violation;

/// The metric logic of contract section 3.1.
pub const WEEKLY_SQL: &str = include_str!("weekly_sales_inventory.sql");

/// Why a transform did not publish.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Raw(#[from] RawError),
    /// A raw file failed while the engine read it (parse error, checksum).
    #[error("{0}")]
    RawRead(String),
    #[error(
        "data quality check failed for {date}; nothing was published:\n{}",
        .violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n")
    )]
    Quality {
        date: NaiveDate,
        violations: Vec<Violation>,
    },
    #[error(
        "reconciliation failed for {date}; nothing was published: {year} week {week}: output totals (amt {output_amt}, qty {output_qty}) differ from input totals (amt {input_amt}, qty {input_qty})"
    )]
    Reconciliation {
        date: NaiveDate,
        year: i32,
        week: i32,
        output_amt: String,
        input_amt: String,
        output_qty: String,
        input_qty: String,
    },
    #[error(
        "sales.{column}: the values of {year} week {week} add up (in magnitude) to about {magnitude:.3e}, more than DECIMAL(38,2) holds, so the weekly totals would overflow; nothing was published for {date}. Check the source's {column} values for that week"
    )]
    Overflow {
        date: NaiveDate,
        column: &'static str,
        year: i32,
        week: i32,
        magnitude: f64,
    },
    /// A raw file the cluster could not read (stock readers name the line
    /// but not the file).
    #[error("{file}: {source}")]
    Scan {
        file: String,
        source: DataFusionError,
    },
    #[error(
        "{file}, column {column}: {count} values are not {sql_type}, e.g. {}; the local engine (`--engine local`) names the line of each",
        .examples.join(", ")
    )]
    Unparsable {
        file: String,
        column: &'static str,
        sql_type: &'static str,
        count: u64,
        examples: Vec<String>,
    },
    #[error(
        "error_budget = {0} sets bad rows aside in a quarantine file, which only the local engine does; set error_budget = 0 or engine = \"local\""
    )]
    BudgetOnCluster(u64),
    #[error(transparent)]
    Cluster(#[from] crate::engine::ClusterError),
    #[error("query engine error: {0}")]
    Engine(DataFusionError),
    #[error(
        "the transform needs more memory than `memory_limit_mb` allows ({0}); raise the limit or remove it"
    )]
    Memory(String),
    #[error("scratch folder: {0}")]
    Scratch(std::io::Error),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{date}: {source}; nothing was published")]
    Window {
        date: NaiveDate,
        source: WindowError,
    },
    #[error(
        "the manifest of {date} gives sales the window {sales} and inventory {inventory}: both fact files must hold the same window; extract the date again"
    )]
    WindowMismatch {
        date: NaiveDate,
        sales: String,
        inventory: String,
    },
    #[error(
        "{file} holds rows of {day}, outside its window {window}; nothing was published. Extract the date again"
    )]
    OutsideWindow {
        file: String,
        day: NaiveDate,
        window: String,
    },
}

impl From<DataFusionError> for TransformError {
    /// Errors of our own raw reader come back wrapped by the engine; they
    /// are shown as they are, since they name file, line and column.
    fn from(error: DataFusionError) -> Self {
        if let Some(raw) = raw_cause(&error) {
            return TransformError::RawRead(raw.to_string());
        }
        match error.find_root() {
            DataFusionError::ResourcesExhausted(message) => TransformError::Memory(message.clone()),
            _ => TransformError::Engine(error),
        }
    }
}

fn raw_cause(error: &DataFusionError) -> Option<&RawError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(raw) = e.downcast_ref::<RawError>() {
            return Some(raw);
        }
        if let Some(DataFusionError::Shared(inner)) = e.downcast_ref::<DataFusionError>() {
            current = Some(inner.as_ref());
            continue;
        }
        current = e.source();
    }
    None
}

/// What a transform did.
#[derive(Debug, Clone)]
pub struct TransformReport {
    pub date: NaiveDate,
    /// Rows read per input table.
    pub rows_read: Vec<(Table, u64)>,
    /// Distinct (yr_num, wk_num) in the output.
    pub weeks: u64,
    /// Rows of `weekly_sales_inventory` written.
    pub rows_written: u64,
    /// Unparsable rows set aside within the error budget.
    pub quarantined: usize,
    pub publish: PublishReport,
    /// Time per step: check, compute, publish.
    pub timings: Vec<(&'static str, Duration)>,
}

/// The weekly fact of one date, computed and not yet checked. Dropping it
/// removes its scratch folder.
pub struct Staged {
    date: NaiveDate,
    /// Holds `staged_weekly` and the dimensions, as they will be published.
    ctx: SessionContext,
    /// Holds the input tables: `ctx` itself, or the cluster's session.
    inputs: SessionContext,
    /// What the complete read of each raw file found.
    facts: BTreeMap<Table, ScanFacts>,
    set: RawSet,
    quarantine: Arc<Quarantine>,
    /// The date ranges the fact files hold; `None` for full snapshots.
    window: Option<Vec<DateRange>>,
    /// The staged output lives here until the publication has re-encoded
    /// it.
    _scratch: scratch::Scratch,
    timings: Vec<(&'static str, Duration)>,
}

/// A staged fact that passed the quality rules and the reconciliation:
/// what [`Checked::publish`] commits.
pub struct Checked {
    staged: Staged,
    /// Rows read per input table.
    pub rows_read: Vec<(Table, u64)>,
    /// Rows of `weekly_sales_inventory` staged, per (yr_num, wk_num).
    pub weeks: WeekRows,
    /// The part of the fact table the publication replaces.
    pub scope: FactScope,
    /// Whether the dimension snapshots are published with the fact.
    dimensions: bool,
}

/// Steps 1 and 2: locates the raw set of `date` (the `named` files in
/// place of the layout's) and computes the weekly fact, with the engine
/// `config` names. The fact files hold the date ranges `window` when given
/// (a repair's, which writes no manifest), else the manifest's window.
pub async fn compute(
    config: &Config,
    raw: &Location,
    date: NaiveDate,
    named: &NamedFiles,
    window: Option<Vec<DateRange>>,
) -> Result<Staged, TransformError> {
    let set = RawSet::locate(raw, date, named).await?;
    let window = match window {
        Some(ranges) => Some(ranges),
        None => manifest_window(&set)?,
    };
    let mut staged = match config.engine {
        EngineKind::Local => compute_locally(config, set).await?,
        EngineKind::Ballista => on_cluster::compute(config, set).await?,
    };
    staged.window = window;
    Ok(staged)
}

/// The window the manifest gives both fact files; `None` when they are
/// full snapshots (or no manifest lists them).
fn manifest_window(set: &RawSet) -> Result<Option<Vec<DateRange>>, TransformError> {
    let window_of = |table| match set.manifest_entry(table).map(|entry| &entry.window) {
        Some(Window::Range { from, to }) => Some(DateRange {
            from: *from,
            to: *to,
        }),
        _ => None,
    };
    let (sales, inventory) = (window_of(Table::Sales), window_of(Table::Inventory));
    if sales != inventory {
        let show = |w: Option<DateRange>| w.map_or("full".to_string(), |w| w.to_string());
        return Err(TransformError::WindowMismatch {
            date: set.date,
            sales: show(sales),
            inventory: show(inventory),
        });
    }
    Ok(sales.map(|range| vec![range]))
}

/// Computes the weekly fact in this process, in one pass over the big
/// files (which also parses and validates every field and gathers what the
/// checks need), staged in a scratch folder.
async fn compute_locally(config: &Config, set: RawSet) -> Result<Staged, TransformError> {
    let ctx = crate::engine::session(config)?;
    // The staged files are read whole, each by one partition: DataFusion
    // reads a split Arrow file's part at once, not batch by batch.
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .optimizer
        .repartition_file_scans = false;
    let quarantine = Arc::new(Quarantine::new(config.error_budget));
    let tables = raw_tables::register(&ctx, &set, &quarantine, config.max_row_bytes)?;
    let scratch = scratch::Scratch::create(&config.scratch_dir).map_err(TransformError::Scratch)?;
    let started = Instant::now();
    tables.load_dimensions(&ctx).await?;
    let partitions = crate::engine::metric_query_partitions(config);
    stage_weekly(&ctx, partitions, scratch.path()).await?;
    tables.scan_the_rest(&ctx).await?;
    Ok(Staged {
        date: set.date,
        inputs: ctx.clone(),
        ctx,
        facts: tables.all_facts()?,
        set,
        quarantine,
        window: None,
        _scratch: scratch,
        timings: vec![("compute", started.elapsed())],
    })
}

impl Staged {
    /// Rows set aside so far within the error budget.
    pub fn quarantined(&self) -> usize {
        self.quarantine.rows().len()
    }

    /// Steps 3 and 4: the input rules (contract section 4) and the
    /// reconciliation of the staged totals with the input's.
    pub async fn check(mut self) -> Result<Checked, TransformError> {
        let started = Instant::now();
        let (violations, rows_read) = quality::check(&self.inputs, &self.facts).await?;
        if !violations.is_empty() {
            return Err(TransformError::Quality {
                date: self.date,
                violations,
            });
        }
        reconcile(
            &self.ctx,
            self.date,
            quality::facts_of(&self.facts, Table::Sales)?,
        )
        .await?;
        let weeks = rows_per_week(&self.ctx).await?;
        let scope = self.scope().await?;
        self.timings.push(("check", started.elapsed()));
        Ok(Checked {
            staged: self,
            rows_read,
            weeks,
            scope,
            dimensions: true,
        })
    }

    /// What the publication replaces: the whole fact table for full
    /// snapshots; for a window, exactly the calendar weeks it covers, even
    /// those no row is left in. Every week a window touches must be whole
    /// in it (up to its end), and the fact files must hold no row outside
    /// it.
    async fn scope(&self) -> Result<FactScope, TransformError> {
        let Some(ranges) = &self.window else {
            return Ok(FactScope::All);
        };
        let batches = self
            .ctx
            .sql("SELECT cal_dt, yr_num, wk_num FROM calendar")
            .await?
            .collect()
            .await?;
        let calendar = Calendar::from_batches(&batches);
        calendar
            .check_whole_weeks(ranges)
            .map_err(|source| TransformError::Window {
                date: self.date,
                source,
            })?;
        for table in Table::FACTS {
            let facts = quality::facts_of(&self.facts, table)?;
            let outside = facts
                .dates
                .keys()
                .filter_map(|days| date_from_days(*days))
                .find(|day| !ranges.iter().any(|range| range.contains(*day)));
            if let Some(day) = outside {
                let first = ranges.first().map(|r| r.from).unwrap_or(day);
                let last = ranges.last().map(|r| r.to).unwrap_or(day);
                return Err(TransformError::OutsideWindow {
                    file: self.set.files[&table].path.to_string(),
                    day,
                    window: format!("{first} to {last}"),
                });
            }
        }
        Ok(FactScope::Weeks(
            calendar.weeks_in(ranges).into_iter().collect(),
        ))
    }
}

impl Checked {
    /// The same, to be published without the dimension snapshots (a
    /// repair of past weeks leaves the latest snapshots as they are).
    pub fn fact_only(self) -> Checked {
        Checked {
            dimensions: false,
            ..self
        }
    }

    /// Distinct (yr_num, wk_num) in the output.
    pub fn week_count(&self) -> u64 {
        self.weeks.len() as u64
    }

    /// Rows of `weekly_sales_inventory` staged.
    pub fn rows_written(&self) -> u64 {
        self.weeks.values().sum()
    }

    /// Step 5: publishes the fact and the dimension snapshots in `lake`,
    /// recording `run` in the commits. A failed publication leaves the
    /// staged output in place, so it can be published again.
    pub async fn publish(
        &self,
        lake: &Lake,
        options: &PublishOptions,
        run: &str,
    ) -> Result<TransformReport, TransformError> {
        let staged = &self.staged;
        let mut timings = staged.timings.clone();
        let started = Instant::now();
        let ctx = &staged.ctx;
        let fact = ctx.table("staged_weekly").await?;
        let mut dimensions = Vec::new();
        for table in Table::DIMENSIONS.into_iter().filter(|_| self.dimensions) {
            dimensions.push((table, ctx.table(table.name()).await?));
        }
        let publication = Publication {
            date: staged.date,
            run: run.to_string(),
            fact,
            fact_scope: self.scope.clone(),
            fact_weeks: self.weeks.clone(),
            dimensions,
            quarantine: staged.quarantine.as_ref(),
        };
        let publish = lake.publish(publication, options).await?;
        timings.push(("publish", started.elapsed()));
        Ok(TransformReport {
            date: staged.date,
            rows_read: self.rows_read.clone(),
            weeks: self.week_count(),
            rows_written: self.rows_written(),
            quarantined: staged.quarantined(),
            publish,
            timings,
        })
    }
}

/// Computes the weekly fact in `partitions` partitions into files under
/// `dir` and registers them as `staged_weekly`.
async fn stage_weekly(
    ctx: &SessionContext,
    partitions: usize,
    dir: &std::path::Path,
) -> Result<(), TransformError> {
    let staged = staged_folder(dir)?;
    let staged_url = format!("{}/", staged.display());
    let format = Arc::new(ArrowFormatFactory::new());
    let query = ctx.sql(WEEKLY_SQL).await?.into_unoptimized_plan();
    let write = LogicalPlanBuilder::copy_to(
        query,
        staged_url.clone(),
        format_as_file_type(format),
        HashMap::new(),
        Vec::new(),
    )?
    .build()?;
    let mut state = ctx.state();
    state.config_mut().options_mut().execution.target_partitions = partitions;
    let plan = state.create_physical_plan(&write).await?;
    collect(Arc::clone(&plan), state.task_ctx()).await?;
    tracing::debug!(
        "the metric query as run, with its metrics:\n{}",
        DisplayableExecutionPlan::with_metrics(plan.as_ref()).indent(true)
    );
    register_staged(ctx, &staged).await
}

/// The folder, created in the scratch folder `dir`, where the weekly fact
/// is staged as Arrow files: it lives only until the lake commit has
/// encoded it as Parquet, so it is not encoded twice.
fn staged_folder(dir: &std::path::Path) -> Result<std::path::PathBuf, TransformError> {
    let staged = dir.join("weekly_sales_inventory");
    std::fs::create_dir_all(&staged).map_err(TransformError::Scratch)?;
    Ok(staged)
}

/// Registers the Arrow files of the folder `staged` in `ctx` as
/// `staged_weekly`, with the contract's types.
async fn register_staged(
    ctx: &SessionContext,
    staged: &std::path::Path,
) -> Result<(), TransformError> {
    let fact_schema = schema::fact_schema();
    let options = ArrowReadOptions::default().schema(&fact_schema);
    let url = format!("{}/", staged.display());
    ctx.register_arrow("staged_weekly", &url, options).await?;
    Ok(())
}

/// The largest magnitude of a DECIMAL(38,2) value, scaled: 10^38.
const DECIMAL_LIMIT: f64 = 1e38;

/// Contract section 4, week by week: SUM(total_sales_amt) and
/// SUM(total_sales_qty) of each output week equal the same sums over the
/// input rows of that week's dates (from the scan of the sales file), and
/// every input week has output. Before that, each week's sums of magnitudes
/// (of every column the metric query sums) must stay within DECIMAL(38,2):
/// then no sum the engine computes over any of the week's rows can
/// overflow, which a DECIMAL SUM would otherwise do silently, wrapping
/// around.
async fn reconcile(
    ctx: &SessionContext,
    date: NaiveDate,
    sales: &ScanFacts,
) -> Result<(), TransformError> {
    let input = input_weeks(ctx, sales).await?;
    for (&(year, week), totals) in &input {
        let summed = Table::Sales.summed_columns().iter().zip(&totals.magnitudes);
        if let Some((column, &magnitude)) = summed.into_iter().find(|(_, m)| **m >= DECIMAL_LIMIT) {
            return Err(TransformError::Overflow {
                date,
                column,
                year,
                week,
                magnitude: magnitude / 100.0,
            });
        }
    }
    let sums = schema::RECONCILED
        .map(|(_, output)| format!("SUM({output})"))
        .join(", ");
    let output = decimal_sums_per_week(
        ctx,
        &format!("SELECT yr_num, wk_num, {sums} FROM staged_weekly GROUP BY yr_num, wk_num"),
    )
    .await?;
    let weeks: std::collections::BTreeSet<&(i32, i32)> =
        input.keys().chain(output.keys()).collect();
    for &(year, week) in weeks {
        let output = output.get(&(year, week)).copied().unwrap_or([0, 0]);
        let input = input
            .get(&(year, week))
            .map_or([0, 0], |totals| [totals.sums[0], totals.sums[1]]);
        if output != input {
            return Err(TransformError::Reconciliation {
                date,
                year,
                week,
                output_amt: money(output[0]),
                input_amt: money(input[0]),
                output_qty: money(output[1]),
                input_qty: money(input[1]),
            });
        }
    }
    Ok(())
}

/// The sales facts of each date added up per calendar week.
async fn input_weeks(
    ctx: &SessionContext,
    sales: &ScanFacts,
) -> Result<BTreeMap<(i32, i32), DateTotals>, TransformError> {
    let calendar = ctx
        .sql("SELECT cal_dt, yr_num, wk_num FROM calendar")
        .await?
        .collect()
        .await?;
    let mut weeks: BTreeMap<(i32, i32), DateTotals> = BTreeMap::new();
    for batch in &calendar {
        let days = batch.column(0).as_primitive::<Date32Type>();
        let years = batch.column(1).as_primitive::<Int32Type>();
        let numbers = batch.column(2).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            if days.is_null(row) || years.is_null(row) || numbers.is_null(row) {
                continue;
            }
            if let Some(totals) = sales.dates.get(&days.value(row)) {
                weeks
                    .entry((years.value(row), numbers.value(row)))
                    .or_default()
                    .add(totals);
            }
        }
    }
    Ok(weeks)
}

/// The two DECIMAL sums of each (yr_num, wk_num) row of `sql`, as scaled
/// integers (NULL, i.e. no rows, is 0).
async fn decimal_sums_per_week(
    ctx: &SessionContext,
    sql: &str,
) -> Result<BTreeMap<(i32, i32), [i128; 2]>, TransformError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut weeks = BTreeMap::new();
    for batch in &batches {
        let years = batch.column(0).as_primitive::<Int32Type>();
        let numbers = batch.column(1).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            let mut sums = [0; 2];
            for (i, sum) in sums.iter_mut().enumerate() {
                let column = batch.column(2 + i).as_primitive::<Decimal128Type>();
                *sum = if column.is_null(row) {
                    0
                } else {
                    column.value(row)
                };
            }
            weeks.insert((years.value(row), numbers.value(row)), sums);
        }
    }
    Ok(weeks)
}

/// The staged fact's rows per (yr_num, wk_num).
async fn rows_per_week(ctx: &SessionContext) -> Result<WeekRows, TransformError> {
    let batches = ctx
        .sql("SELECT yr_num, wk_num, count(*) FROM staged_weekly GROUP BY yr_num, wk_num")
        .await?
        .collect()
        .await?;
    let mut weeks = WeekRows::new();
    for batch in &batches {
        let years = batch.column(0).as_primitive::<Int32Type>();
        let numbers = batch.column(1).as_primitive::<Int32Type>();
        let rows = batch.column(2).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let count = u64::try_from(rows.value(row)).unwrap_or(0);
            weeks.insert((years.value(row), numbers.value(row)), count);
        }
    }
    Ok(weeks)
}

impl std::fmt::Display for TransformReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let read: Vec<String> = self
            .rows_read
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect();
        writeln!(f, "transform  read {}", read.join(", "))?;
        writeln!(
            f,
            "           wrote {} rows of {} over {} weeks",
            self.rows_written,
            schema::FACT_TABLE,
            self.weeks
        )?;
        let timings: Vec<String> = self
            .timings
            .iter()
            .map(|(step, elapsed)| format!("{step} {elapsed:.1?}"))
            .collect();
        writeln!(f, "           {}", timings.join(", "))?;
        let versions: Vec<String> = self
            .publish
            .versions
            .iter()
            .map(|(table, version)| format!("{table} v{version}"))
            .collect();
        writeln!(
            f,
            "           committed {}; vacuumed {} files",
            versions.join(", "),
            self.publish.files_vacuumed
        )?;
        if let Some(file) = &self.publish.quarantine_file {
            writeln!(
                f,
                "           {} bad rows set aside in {file}",
                self.quarantined
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reconciliation catches an output whose totals differ from the
    /// input's, e.g. a join that dropped or doubled a day.
    #[tokio::test]
    async fn reconciliation_fails_when_totals_differ() {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE calendar AS SELECT DATE '2026-01-05' AS cal_dt,
                CAST(2026 AS INT) AS yr_num, CAST(2 AS INT) AS wk_num",
            "CREATE TABLE staged_weekly AS SELECT CAST(2026 AS INT) AS yr_num, CAST(2 AS INT) AS wk_num,
                CAST(10.00 AS DECIMAL(38,2)) AS total_sales_amt,
                CAST(2.00 AS DECIMAL(38,2)) AS total_sales_qty",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let day = crate::raw::csv::days_since_epoch(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap());
        // Two sales rows that day: 10.00 + 5.50 for 2 + 1 units.
        let totals = DateTotals {
            rows: 2,
            sums: vec![1550, 300],
            magnitudes: vec![300.0, 1550.0, 0.0],
        };
        let sales = ScanFacts {
            dates: [(day, totals)].into(),
            ..ScanFacts::default()
        };
        let date = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        let message = reconcile(&ctx, date, &sales).await.unwrap_err().to_string();
        assert!(
            message.contains(
                "2026 week 2: output totals (amt 10.00, qty 2.00) differ from input totals (amt 15.50, qty 3.00)"
            ),
            "{message}"
        );
        assert!(message.contains("nothing was published"), "{message}");

        ctx.sql("INSERT INTO staged_weekly VALUES (CAST(2026 AS INT), CAST(2 AS INT), 5.50, 1.00)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        reconcile(&ctx, date, &sales).await.unwrap();

        // A week whose values add up beyond DECIMAL(38,2) fails before its
        // (wrapped) sums are compared, naming the column and the week.
        let huge = DateTotals {
            magnitudes: vec![300.0, 2e38, 0.0],
            ..sales.dates[&day].clone()
        };
        let sales = ScanFacts {
            dates: [(day, huge)].into(),
            ..ScanFacts::default()
        };
        let message = reconcile(&ctx, date, &sales).await.unwrap_err().to_string();
        assert!(
            message.starts_with("sales.sales_amt: the values of 2026 week 2 add up"),
            "{message}"
        );
    }
}
