//! `shelfline demo`: the whole pipeline on a small generated data set, with
//! a few answers a store manager would ask for.

use std::io::Write;
use std::time::Instant;

use crate::datagen::DatagenSpec;
use crate::pipeline::Pipeline;
use crate::query::{self, OutputFormat};

/// Questions the demo answers from the lake, as (title, SQL). `{last_day}`
/// stands for the data's last day: "last week" is the last week whose
/// seven days all have data, so its sums are whole weeks'.
pub const QUESTIONS: &[(&str, &str)] = &[
    (
        "Top 5 products by sales in the last complete week",
        "WITH last AS (SELECT yr_num, wk_num FROM calendar GROUP BY yr_num, wk_num \
                       HAVING max(cal_dt) <= DATE '{last_day}' \
                       ORDER BY yr_num DESC, wk_num DESC LIMIT 1) \
         SELECT p.prod_name, SUM(w.total_sales_amt) AS sales_amt, SUM(w.total_sales_qty) AS units \
         FROM weekly_sales_inventory w \
         JOIN last l ON l.yr_num = w.yr_num AND l.wk_num = w.wk_num \
         JOIN product p ON p.prod_key = w.prod_key \
         GROUP BY p.prod_name ORDER BY sales_amt DESC, p.prod_name LIMIT 5",
    ),
    (
        "Items with the most out-of-stock days over the year",
        "SELECT s.store_desc, p.prod_name, SUM(w.no_stock_instances) AS out_of_stock_days, \
                SUM(w.no_stock_impact) AS sales_while_out_of_stock \
         FROM weekly_sales_inventory w \
         JOIN store s ON s.store_key = w.store_key \
         JOIN product p ON p.prod_key = w.prod_key \
         GROUP BY s.store_desc, p.prod_name \
         ORDER BY out_of_stock_days DESC, s.store_desc, p.prod_name LIMIT 5",
    ),
    (
        "Best sellers with the fewest weeks of supply left (last complete week)",
        "WITH last AS (SELECT yr_num, wk_num FROM calendar GROUP BY yr_num, wk_num \
                       HAVING max(cal_dt) <= DATE '{last_day}' \
                       ORDER BY yr_num DESC, wk_num DESC LIMIT 1) \
         SELECT s.store_desc, p.prod_name, w.total_sales_qty, w.stock_on_hand_qty, \
                round(w.weeks_of_supply, 2) AS weeks_left \
         FROM weekly_sales_inventory w \
         JOIN last l ON l.yr_num = w.yr_num AND l.wk_num = w.wk_num \
         JOIN store s ON s.store_key = w.store_key \
         JOIN product p ON p.prod_key = w.prod_key \
         WHERE w.total_sales_qty >= 10 AND w.weeks_of_supply IS NOT NULL \
         ORDER BY w.weeks_of_supply, s.store_desc, p.prod_name LIMIT 5",
    ),
];

/// Generates data at `scale_factor`, runs the pipeline for its last date and
/// prints what was done and the answers to [`QUESTIONS`].
pub async fn run(
    pipeline: &Pipeline,
    scale_factor: f64,
    lake_flag: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let spec = DatagenSpec {
        scale_factor,
        ..DatagenSpec::default()
    };
    writeln!(
        out,
        "shelfline demo: {} stores × {} products × {} days into {}",
        spec.stores(),
        spec.products(),
        spec.days,
        pipeline.source.describe()
    )?;
    let started = Instant::now();
    let generator = pipeline.clone();
    let summary = tokio::task::spawn_blocking(move || generator.datagen(&spec, |_| {})).await??;
    writeln!(
        out,
        "datagen    {:>9} sales lines, {} inventory snapshots in {:.1?}",
        summary.sales,
        summary.inventory,
        started.elapsed()
    )?;

    let date = spec.end();
    let report = pipeline.run(date).await?;
    write!(out, "{}", report.extract)?;
    writeln!(out, "check      complete in {:.1?}", report.check_elapsed)?;
    write!(out, "{}", report.transform)?;
    writeln!(out, "lake       {}", pipeline.lake.root())?;

    for (title, sql) in QUESTIONS {
        let sql = sql.replace("{last_day}", &date.to_string());
        let batches = query::run(&pipeline.lake, &pipeline.config, &sql).await?;
        writeln!(out, "\n{title}:")?;
        write!(out, "{}", query::render(&batches, OutputFormat::Table)?)?;
        writeln!(out)?;
    }
    let lake_arg = lake_flag
        .map(|lake| format!(" --lake {lake}"))
        .unwrap_or_default();
    writeln!(
        out,
        "\nAsk more, e.g.:\n  shelfline query{lake_arg} \"SELECT yr_num, wk_num, SUM(total_sales_amt) AS sales \
         FROM weekly_sales_inventory GROUP BY yr_num, wk_num ORDER BY yr_num DESC, wk_num DESC LIMIT 5\""
    )?;
    writeln!(
        out,
        "Or with psql and the tools you already use (a read-only PostgreSQL server over the lake):\n  \
         shelfline sql-server{lake_arg} &\n  \
         psql \"host=127.0.0.1 port=5433 user=shelfline dbname=shelfline\""
    )?;
    Ok(())
}
