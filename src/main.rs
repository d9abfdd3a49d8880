//! The `shelfline` binary: parses the command line, loads the config and
//! hands over to the library. No pipeline logic lives here.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use std::sync::Arc;

use shelfline::cli::{
    CatalogCommand, Cli, ClusterCommand, Command, CompletionShell, ConfigCommand, Locations,
    LogFormat, RunsCommand,
};
use shelfline::config::Config;
use shelfline::datagen::DatagenSpec;
use shelfline::engine::cluster::{self, Endpoint, ExecutorOptions};
use shelfline::orchestrator::clock::SystemClock;
use shelfline::orchestrator::dag::RunState;
use shelfline::orchestrator::history::{History, HistoryError, RunQuery};
use shelfline::orchestrator::{BackfillDate, Orchestrator, OrchestratorError, lock, report};
use shelfline::pipeline::{Pipeline, PipelineError};
use shelfline::server::{self, Credentials};
use shelfline::sql_server::{self, SqlServer};
use shelfline::storage::Location;
use shelfline::text::{MESSAGE_CHARS, clip};
use shelfline::window::DateRange;
use shelfline::{catalog, demo, query};

/// Writes a line to stderr: a closed stderr is no reason to panic.
macro_rules! tell {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

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

/// Logs to stderr as `SHELFLINE_LOG` says: a level alone (`info`, `debug`)
/// is shelfline's, with only warnings from its dependencies; a full
/// filter (`info,datafusion=debug`) is taken as written. Colours only on a
/// terminal.
fn init_logging(format: LogFormat) {
    let setting = std::env::var("SHELFLINE_LOG").unwrap_or_default();
    let directives = match setting.trim() {
        "" => "warn".to_string(),
        level if !level.contains([',', '=']) => format!("warn,shelfline={level}"),
        filter => filter.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        tell!("warning: SHELFLINE_LOG: {e}; logging warnings only");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logger.json().init(),
        LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// A spinner with `message` and the time elapsed, on stderr while a long
/// command works; drawn only on a terminal, and not when logs are asked
/// for (`SHELFLINE_LOG`), which would tear it.
fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, progress_target()).with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Where progress is drawn: stderr on a terminal without logs, else nowhere.
fn progress_target() -> ProgressDrawTarget {
    if std::env::var_os("SHELFLINE_LOG").is_some() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// Whether `error` comes from writing to a pipe whose reader has gone
/// (`shelfline query … | head`): then there is nobody left to tell.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tell!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            tell!("error: {}", clip(&message, MESSAGE_CHARS));
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
            let bar = ProgressBar::with_draw_target(Some(spec.days.into()), progress_target())
                .with_style(
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
            window,
        } => {
            window.apply(&mut config);
            let pipeline = pipeline(config, &locations)?;
            let format = format.unwrap_or(pipeline.config.raw_format);
            let working = spinner(format!(
                "extracting {} from {} into {}",
                date.date,
                pipeline.source.describe(),
                pipeline.raw
            ));
            let report = pipeline.extract(date.date, format).await;
            working.finish_and_clear();
            write!(stdout, "{}", report?)?;
        }
        Command::Check { date, locations } => {
            let pipeline = pipeline(config, &locations)?;
            match pipeline.check(date.date).await {
                Ok(report) => write!(stdout, "{report}")?,
                Err(e) => {
                    tell!("error: {}", clip(&e.to_string(), MESSAGE_CHARS));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Transform {
            date,
            locations,
            engine,
            publish,
        } => {
            engine.apply(&mut config);
            publish.apply(&mut config);
            let pipeline = pipeline(config, &locations)?;
            let working = spinner(format!(
                "transforming {} from {} into {}",
                date.date,
                pipeline.raw,
                pipeline.lake.root()
            ));
            let report = pipeline.transform(date.date).await;
            working.finish_and_clear();
            write!(stdout, "{}", report?)?;
        }
        Command::Run {
            date,
            locations,
            engine,
            publish,
            window,
        } => {
            window.apply(&mut config);
            engine.apply(&mut config);
            publish.apply(&mut config);
            let pipeline = pipeline(config, &locations)?;
            let working = spinner(format!("running {}: extract, check, transform", date.date));
            let report = pipeline.run(date.date).await;
            working.finish_and_clear();
            let report = report?;
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
        Command::SqlServer { bind, locations } => {
            let pipeline = pipeline(config, &locations)?;
            let bind = bind.unwrap_or_else(|| pipeline.config.sql_server.bind.clone());
            let server = start_sql_server(&pipeline, &bind, &mut stdout).await?;
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                () = server.run() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Command::Serve { bind, locations } => {
            let orchestrator = orchestrator(config, &locations)?;
            let bind = bind.unwrap_or_else(|| orchestrator.pipeline.config.serve.bind.clone());
            serve(orchestrator, &bind, &mut stdout).await?;
        }
        Command::Runs(RunsCommand::List { limit, state }) => {
            let history = History::open(&config.serve.history)?;
            let state = state
                .as_deref()
                .map(str::parse::<RunState>)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let query = RunQuery::newest(state.into_iter().collect(), limit);
            let (runs, total) = history.runs(&config.serve.dag_id, &query)?;
            write!(stdout, "{}", report::runs_table(&runs, total))?;
        }
        Command::Runs(RunsCommand::Show { id }) => {
            let history = History::open(&config.serve.history)?;
            let run = history.find_run(&id)?;
            let tasks = history.tasks(&run.run_id)?;
            let attempts = history.attempts(&run.run_id)?;
            write!(stdout, "{}", report::run_details(&run, &tasks, &attempts))?;
        }
        Command::Runs(RunsCommand::Retry {
            id,
            publish,
            locations,
        }) => {
            let orchestrator = orchestrator(config, &locations)?;
            let executor = orchestrator.take_executor()?;
            let run = orchestrator.retry(&id, publish.conf(), executor.is_some())?;
            writeln!(stdout, "retrying the failed tasks of {}", run.run_id)?;
            return see_through(&orchestrator, &[run.run_id], executor.as_ref(), &mut stdout).await;
        }
        Command::Runs(RunsCommand::Cancel { id }) => {
            let history = History::open(&config.serve.history)?;
            let reason = "cancelled with `shelfline runs cancel`";
            let run = history.end_run(&id, RunState::Failed, reason, chrono::Utc::now())?;
            writeln!(
                stdout,
                "cancelled {}; the process executing it stops it within seconds",
                run.run_id
            )?;
        }
        Command::Backfill {
            from,
            to,
            force,
            extract,
            publish,
            window,
            locations,
        } => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            let orchestrator = orchestrator(config, &locations)?;
            let executor = orchestrator.take_executor()?;
            let mut run_ids = Vec::new();
            let adopt = executor.is_some();
            let mut conf = publish.conf();
            conf.extend(window.conf());
            for date in orchestrator.backfill((from, to), force, extract, conf, adopt)? {
                match date {
                    BackfillDate::Queued(run) => run_ids.push(run.run_id),
                    BackfillDate::Skipped { date, reason } => {
                        writeln!(stdout, "{date}  skipped: {reason}")?;
                    }
                }
            }
            return see_through(&orchestrator, &run_ids, executor.as_ref(), &mut stdout).await;
        }
        Command::Reconcile {
            from,
            to,
            repair,
            publish,
            locations,
        } => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            publish.apply(&mut config);
            let pipeline = pipeline(config, &locations)?;
            let working = spinner(format!(
                "reconciling {from} to {to} with {}",
                pipeline.source.describe()
            ));
            let report = pipeline.reconcile(DateRange { from, to }, repair).await;
            working.finish_and_clear();
            let report = report?;
            write!(stdout, "{report}")?;
            let drifted = report.comparison.drifted.len();
            if drifted > 0 && report.repaired.is_none() {
                tell!(
                    "error: {drifted} week(s) drifted; `shelfline reconcile --from {from} --to {to} --repair` republishes them"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Cluster(command) => cluster(command, &config).await?,
        Command::Catalog(CatalogCommand::Ddl {
            engine,
            database,
            lake,
        }) => {
            let lake = lake_url(lake.as_deref().unwrap_or(&config.lake), &config)?;
            write!(
                stdout,
                "{}",
                catalog::ddl::statements(engine, &lake, &database)?
            )?;
        }
        Command::Catalog(CatalogCommand::Sync {
            glue_database,
            lake,
        }) => {
            let lake = lake_url(lake.as_deref().unwrap_or(&config.lake), &config)?;
            let database = glue_database
                .or(config.catalog.glue_database.clone())
                .context(
                    "name the Glue database: --glue-database NAME, or glue_database in [catalog]",
                )?;
            let glue = catalog::glue::Glue::connect(&config).await?;
            write!(
                stdout,
                "{}",
                catalog::glue::sync(&glue, &lake, &database).await?
            )?;
        }
        Command::Config(ConfigCommand::Init { file, force }) => {
            if file.as_os_str() == "-" {
                write!(stdout, "{}", shelfline::config::SAMPLE)?;
            } else {
                anyhow::ensure!(
                    force || !file.exists(),
                    "{} exists; `--force` replaces it",
                    file.display()
                );
                std::fs::write(&file, shelfline::config::SAMPLE)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                writeln!(stdout, "wrote {}: every key at its default", file.display())?;
            }
        }
        Command::Config(ConfigCommand::Check) => return check_config(config, &mut stdout),
        Command::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "shelfline", &mut stdout);
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

/// `shelfline config check`: every problem of `config` at once, or the
/// settings in effect with the source's password hidden.
/// The URL of the lake at `text`: an `s3://` URL as it is (registering
/// needs no access to the bucket), a local folder made absolute.
fn lake_url(text: &str, config: &Config) -> anyhow::Result<url::Url> {
    if text.starts_with("s3://") {
        return Ok(url::Url::parse(text)?);
    }
    Ok(Location::parse(text, &config.s3)?.url().clone())
}

fn check_config(config: Config, stdout: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut problems = match Pipeline::new(config.clone()) {
        Ok(_) => Vec::new(),
        Err(PipelineError::Config { problems }) => problems,
        Err(other) => vec![other.to_string()],
    };
    problems.extend(Orchestrator::problems(&config));
    if let Err(e) = Credentials::load(&config.serve.auth, |key| std::env::var(key).ok()) {
        problems.push(e.to_string());
    }
    if let Err(e) = sql_server::password(&config.sql_server, |key| std::env::var(key).ok()) {
        problems.push(format!("the SQL server's password: {e}"));
    }
    if !problems.is_empty() {
        for problem in &problems {
            tell!("error: {}", clip(problem, MESSAGE_CHARS));
        }
        tell!("{} problem(s) in the config", problems.len());
        return Ok(ExitCode::FAILURE);
    }
    let shown = Config {
        source: shelfline::source::endpoint::redact(&config.source),
        ..config
    };
    write!(stdout, "{}", toml::to_string(&shown)?)?;
    tell!("the config is valid");
    Ok(ExitCode::SUCCESS)
}

/// Runs a scheduler or an executor until it stops.
async fn cluster(command: ClusterCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Scheduler {
            bind,
            allow_unauthenticated,
        } => {
            let bind = Endpoint::parse(&bind)?;
            bind.check_exposure(allow_unauthenticated)?;
            tell!("Ballista scheduler listening on {bind} (df://{bind})");
            cluster::run_scheduler(&bind, &config.s3).await?;
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            concurrency,
            memory_limit,
            work_dir,
            allow_unauthenticated,
        } => {
            let bind = Endpoint::parse(&bind)?;
            bind.check_exposure(allow_unauthenticated)?;
            let temp_dir;
            let work_dir = match work_dir {
                Some(dir) => dir,
                None => {
                    temp_dir = tempfile::tempdir().context("executor work folder")?;
                    temp_dir.path().to_path_buf()
                }
            };
            let options = ExecutorOptions {
                scheduler: Endpoint::parse(&scheduler)?,
                bind,
                concurrency: concurrency.unwrap_or(0),
                memory_limit: memory_limit
                    .as_deref()
                    .map(cluster::parse_size)
                    .transpose()?,
                work_dir,
            };
            tell!(
                "Ballista executor on {} pulling tasks from {}",
                options.bind,
                options.scheduler
            );
            cluster::run_executor(options, &config.s3).await?;
        }
    }
    Ok(())
}

fn orchestrator(config: Config, locations: &Locations) -> anyhow::Result<Arc<Orchestrator>> {
    let pipeline = pipeline(config, locations)?;
    Ok(Arc::new(Orchestrator::new(
        pipeline,
        Arc::new(SystemClock),
    )?))
}

/// `shelfline serve`: the API and the scheduler until Ctrl-C or SIGTERM.
async fn serve(
    orchestrator: Arc<Orchestrator>,
    bind: &str,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let history = orchestrator.history.path().display().to_string();
    let _lock = match orchestrator.try_lock()? {
        lock::Acquired::Held(lock) => lock,
        lock::Acquired::Busy { holder } => anyhow::bail!(
            "another shelfline ({holder}) is executing the runs of {history}; one daemon per run history"
        ),
    };
    let credentials = Credentials::load(&orchestrator.pipeline.config.serve.auth, |key| {
        std::env::var(key).ok()
    })?;
    if credentials.is_empty() {
        tracing::warn!("no API credentials configured: every endpoint but /health answers 401");
    }
    let (listener, address) = server::listen(bind, &credentials).await?;
    writeln!(
        stdout,
        "shelfline serve: DAG {} on http://{address}, run history {history}",
        orchestrator.dag_id
    )?;
    stdout.flush()?;
    let app = server::router(Arc::clone(&orchestrator), credentials)?;
    let pipeline = &orchestrator.pipeline;
    let sql = match pipeline.config.sql_server.enabled {
        true => Some(start_sql_server(pipeline, &pipeline.config.sql_server.bind, stdout).await?),
        false => None,
    };
    let sql = async {
        match sql {
            Some(server) => server.run().await,
            None => std::future::pending().await,
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = server::serve(listener, app) => served?,
        () = sql => {}
        () = Arc::clone(&orchestrator).run_scheduler() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Binds the SQL server over `pipeline`'s lake and says how to connect.
async fn start_sql_server(
    pipeline: &Pipeline,
    bind: &str,
    stdout: &mut impl Write,
) -> anyhow::Result<SqlServer> {
    let server = SqlServer::bind(&pipeline.config, pipeline.lake.clone(), bind, |key| {
        std::env::var(key).ok()
    })
    .await?;
    let address = server.address();
    let user = &pipeline.config.sql_server.username;
    let login = if server.has_password() {
        format!(
            "as {user} with the password of {}",
            sql_server::PASSWORD_ENV
        )
    } else {
        "from this machine only, no password".to_string()
    };
    writeln!(
        stdout,
        "shelfline sql-server: the lake {} on {address} ({login}); connect with: psql \"host={} port={} user={user} dbname=shelfline\"",
        pipeline.lake.root().url(),
        address.ip(),
        address.port()
    )?;
    stdout.flush()?;
    Ok(server)
}

/// Prints each run's end; fails when one failed. Ctrl-C or SIGTERM
/// cancels the runs not finished yet, so none is left queued or running;
/// a publication in progress finishes first (a second Ctrl-C stops at
/// once).
async fn see_through(
    orchestrator: &Orchestrator,
    run_ids: &[String],
    executor: Option<&lock::ExecutorLock>,
    stdout: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let bar = ProgressBar::with_draw_target(Some(run_ids.len() as u64), progress_target());
    if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {pos}/{len} runs ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    // Lines go to stdout above the bar (it is cleared while they print).
    let say = |out: &mut dyn Write, line: &str| bar.suspend(|| writeln!(out, "{line}"));
    let out = std::cell::RefCell::new(stdout);
    let ended = std::cell::Cell::new(0);
    let mut seen = std::pin::pin!(
        orchestrator.see_through(run_ids, executor, |run_id, state| {
            let _ = say(
                &mut **out.borrow_mut(),
                &format!("{run_id}  {}", state.as_str()),
            );
            ended.set(ended.get() + 1);
            bar.inc(1);
        })
    );
    let mut shown = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let finished = loop {
        tokio::select! {
            seen = &mut seen => break Some(seen?),
            _ = ticks.tick() => {
                let daemon = executor.is_none();
                for line in news(orchestrator, &run_ids[ended.get()..], daemon, &mut shown) {
                    let _ = say(&mut **out.borrow_mut(), &line);
                }
            }
            _ = tokio::signal::ctrl_c() => break None,
            _ = terminate.recv() => break None,
        }
    };
    bar.finish_and_clear();
    let Some(states) = finished else {
        cancel_unfinished(orchestrator, run_ids);
        tokio::select! {
            _ = &mut seen => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tell!(
            "error: interrupted; the runs not finished were cancelled (run the command again to run them)"
        );
        return Ok(ExitCode::from(130));
    };
    let failed = states.values().filter(|s| **s == RunState::Failed).count();
    if failed > 0 {
        tell!("error: {failed} run(s) failed; `shelfline runs show RUN_ID` tells why");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What changed in the unfinished runs of `run_ids` since `shown`: a line
/// per run that started, began a task, waits for other files or waits for
/// a retry, or that the daemon (when it executes them) holds back because
/// the DAG is paused. Runs execute in order, so it stops at the first one
/// that has not started.
fn news(
    orchestrator: &Orchestrator,
    run_ids: &[String],
    daemon: bool,
    shown: &mut HashMap<String, String>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for run_id in run_ids {
        let Ok(run) = orchestrator.history.find_run(run_id) else {
            continue;
        };
        let Ok(tasks) = orchestrator.history.tasks(run_id) else {
            continue;
        };
        let waiting = run.state == RunState::Queued && run.start_date.is_none();
        let held = waiting && daemon && orchestrator.is_paused().unwrap_or(false);
        let progress = if held {
            format!(
                "waiting: the DAG is paused, and the daemon starts no run until it is unpaused (PATCH /api/v1/dags/{} with {{\"is_paused\": false}})",
                orchestrator.dag_id
            )
        } else if waiting {
            break;
        } else {
            let Some(progress) = report::progress(&run, &tasks) else {
                continue;
            };
            progress
        };
        if shown.get(run_id) != Some(&progress) {
            lines.push(format!("{run_id}  {progress}"));
            shown.insert(run_id.clone(), progress);
        }
    }
    lines
}

/// After an interruption: ends the runs of `run_ids` still active; the
/// process executing them stops them.
fn cancel_unfinished(orchestrator: &Orchestrator, run_ids: &[String]) {
    let reason = "cancelled: the command that started it was interrupted";
    for run_id in run_ids {
        match orchestrator.end(run_id, RunState::Failed, reason) {
            Ok(_) => {
                let _ = writeln!(std::io::stdout(), "{run_id}  cancelled");
            }
            Err(OrchestratorError::History(HistoryError::Ended { .. })) => {}
            Err(e) => tell!("error: {run_id} could not be cancelled: {e}"),
        }
    }
}

fn pipeline(mut config: Config, locations: &Locations) -> anyhow::Result<Pipeline> {
    locations.apply(&mut config);
    Ok(Pipeline::new(config)?)
}
