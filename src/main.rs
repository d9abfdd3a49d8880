//! The `shelfline` binary: parses the command line, loads the config and
//! hands over to the library. No pipeline logic lives here.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use shelfline::cli::{Cli, Command, Locations};
use shelfline::config::Config;
use shelfline::datagen::DatagenSpec;
use shelfline::pipeline::Pipeline;
use shelfline::{demo, query};

/// Transparent huge pages make the kernel zero 2 MiB at a time each time
/// the engine's hash tables and buffers grow: measured at SF 1, a fifth
/// of the transform's CPU time went to zeroing pages, for no gain.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it
    // touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc keeps freed memory for reuse: the engine's large, short-lived
/// buffers would otherwise go back to the kernel and come back as freshly
/// zeroed pages (a sixth of the transform's time with the system allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHELFLINE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Datagen(args) => {
            let pipeline = pipeline(config, &args.locations)?;
            let spec = DatagenSpec {
                scale_factor: args.sf,
                seed: args.seed,
                start: args.start,
                days: args.days,
            };
            let bar = ProgressBar::new(spec.days.into()).with_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} days ({eta} left)")
                    .context("progress bar template")?,
            );
            bar.set_message(format!(
                "datagen SF {} into {}",
                spec.scale_factor,
                pipeline.source.describe()
            ));
            let progress = bar.clone();
            let summary = tokio::task::spawn_blocking(move || {
                pipeline.datagen(&spec, |day| progress.set_position(day.into()))
            })
            .await??;
            bar.finish_and_clear();
            writeln!(
                stdout,
                "generated {} stores, {} products, {} calendar days, {} sales lines, {} inventory snapshots",
                summary.stores,
                summary.products,
                summary.calendar_days,
                summary.sales,
                summary.inventory
            )?;
        }
        Command::Extract {
            date,
            locations,
            format,
        } => {
            let pipeline = pipeline(config, &locations)?;
            let format = format.unwrap_or(pipeline.config.raw_format);
            let report = pipeline.extract(date.date, format).await?;
            write!(stdout, "{report}")?;
        }
        Command::Check { date, locations } => {
            let pipeline = pipeline(config, &locations)?;
            match pipeline.check(date.date).await {
                Ok(report) => write!(stdout, "{report}")?,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Transform { date, locations } => {
            let pipeline = pipeline(config, &locations)?;
            let report = pipeline.transform(date.date).await?;
            write!(stdout, "{report}")?;
        }
        Command::Run { date, locations } => {
            let pipeline = pipeline(config, &locations)?;
            let report = pipeline.run(date.date).await?;
            write!(stdout, "{}", report.extract)?;
            write!(stdout, "{}", report.check)?;
            write!(stdout, "{}", report.transform)?;
        }
        Command::Query {
            sql,
            locations,
            format,
        } => {
            let pipeline = pipeline(config, &locations)?;
            let batches = query::run(&pipeline.lake, &pipeline.config, &sql).await?;
            write!(stdout, "{}", query::render(&batches, format)?)?;
            if format == query::OutputFormat::Table {
                writeln!(stdout)?;
            }
        }
        Command::Demo { dir, sf } => {
            let lake_flag = dir
                .as_ref()
                .map(|dir| dir.join("lake").display().to_string());
            if let Some(dir) = &dir {
                config.source = format!("sqlite://{}", dir.join("source.db").display());
                config.raw = dir.join("raw").display().to_string();
                config.lake = dir.join("lake").display().to_string();
            }
            let pipeline = pipeline(config, &Locations::default())?;
            demo::run(&pipeline, sf, lake_flag.as_deref(), &mut stdout).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pipeline(mut config: Config, locations: &Locations) -> anyhow::Result<Pipeline> {
    locations.apply(&mut config);
    Ok(Pipeline::new(config)?)
}
