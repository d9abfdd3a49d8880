//! A Ballista cluster from the shelfline binary: the scheduler, the
//! executors, and the client session that sends them the transform's SQL.
//!
//! Every process of the cluster resolves storage URLs with the same
//! [`StoreRegistry`] (`file://`, and `s3://` with the `[s3]` settings), so a
//! plan naming raw files runs unchanged wherever its tasks land. Executors
//! pull their tasks from the scheduler (Ballista's pull-staged policy):
//! the scheduler never dials an executor, so only the scheduler's port and
//! each executor's Arrow Flight port (shuffle and result reads) need to be
//! reachable.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::SessionBuilder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::gunzip::GunzipRegistry;
use crate::config::{Config, S3Config};
use crate::storage::{Location, StoreRegistry};

/// Seconds without a poll after which the scheduler gives an executor up
/// and runs its tasks elsewhere (a busy executor polls every 5 s).
const EXECUTOR_TIMEOUT_SECS: u64 = 20;
/// How often the scheduler looks for executors gone silent.
const EXPIRE_CHECK_SECS: u64 = 5;
/// How long a job waits for an executor to come back once all are gone.
const NO_EXECUTORS_GRACE_SECS: u64 = 30;
/// How long the client waits for the scheduler's readiness answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster that cannot be used or a cluster process that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "scheduler address `{0}` is not HOST:PORT (e.g. df://127.0.0.1:50050 or 127.0.0.1:50050)"
    )]
    Address(String),
    #[error(
        "refusing to listen on {0}: Ballista's scheduler and executors have no authentication and no TLS, so anyone who reaches this port can run plans that read and write with this process's files and credentials. Bind to 127.0.0.1, or put the cluster on a private network it alone uses and pass --allow-unauthenticated"
    )]
    Exposed(String),
    #[error(
        "cannot reach the Ballista scheduler at {url}: {reason}; start one with `shelfline cluster scheduler --bind {addr}` or set `scheduler` to where it runs"
    )]
    Unreachable {
        url: String,
        addr: String,
        reason: String,
    },
    #[error(
        "the Ballista scheduler at {url} has no executor registered; start one with `shelfline cluster executor --scheduler {addr}`"
    )]
    NoExecutors { url: String, addr: String },
    #[error(
        "{location} is a memory:// location, which lives in one process; a cluster needs file:// (a folder every executor sees) or s3://"
    )]
    MemoryLocation { location: String },
    #[error("memory limit `{0}` is not a size such as 512MiB, 4GiB or 2000000000")]
    Size(String),
    #[error("the Ballista {role} stopped: {reason}")]
    Stopped { role: &'static str, reason: String },
    #[error("cluster engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
}

/// A scheduler's or executor's address.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT` or `df://HOST:PORT`.
    pub fn parse(text: &str) -> Result<Endpoint, ClusterError> {
        let bare = text
            .strip_prefix("df://")
            .unwrap_or(text)
            .trim_end_matches('/');
        let (host, port) = bare
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| ClusterError::Address(text.to_string()))?;
        let port = port
            .parse()
            .map_err(|_| ClusterError::Address(text.to_string()))?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// Fails when this address is reachable from other machines, unless
    /// the user acknowledged that the cluster's protocol is open to anyone
    /// who reaches it (`allow_unauthenticated`).
    pub fn check_exposure(&self, allow_unauthenticated: bool) -> Result<(), ClusterError> {
        if crate::storage::is_loopback_host(&self.host) || allow_unauthenticated {
            Ok(())
        } else {
            Err(ClusterError::Exposed(format!(
                "{}:{}",
                self.host, self.port
            )))
        }
    }

    /// The first address the host name resolves to.
    fn socket_addr(&self) -> Result<SocketAddr, ClusterError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ClusterError::Address(self.to_string()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What an executor is started with.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: Endpoint,
    /// Address of its Arrow Flight service.
    pub bind: Endpoint,
    /// Tasks at once (0 = the number of cores).
    pub concurrency: usize,
    /// Bytes its tasks may hold before they spill (None = 70% of the
    /// machine's memory, Ballista's default).
    pub memory_limit: Option<u64>,
    /// Folder of its shuffle files.
    pub work_dir: std::path::PathBuf,
}

/// A client session on the cluster `config` names, after checking that its
/// scheduler answers and has an executor. `raw` is where the tasks will
/// read from: it must be reachable from every executor.
pub async fn cluster_session(
    config: &Config,
    raw: &Location,
) -> Result<SessionContext, ClusterError> {
    if raw.url().scheme() == "memory" {
        return Err(ClusterError::MemoryLocation {
            location: raw.to_string(),
        });
    }
    let scheduler = Endpoint::parse(&config.scheduler)?;
    check_ready(&config.scheduler, &scheduler).await?;
    let mut session_config = ballista_settings();
    if let Some(partitions) = config.target_partitions {
        session_config = session_config.with_target_partitions(partitions.max(1));
    }
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(session_config)
        .with_runtime_env(runtime(
            Arc::new(StoreRegistry::new(config.s3.clone())),
            None,
        )?)
        .build();
    let url = format!("df://{scheduler}");
    let ctx = SessionContext::remote_with_state(&url, state).await?;
    // Ballista sets the session's functions to its own list: ours go after.
    super::add_functions(&mut ctx.state_ref().write())?;
    Ok(ctx)
}

/// Asks the scheduler's `/readyz` whether an executor is alive: a job sent
/// to a cluster without one would wait for ever.
async fn check_ready(url: &str, scheduler: &Endpoint) -> Result<(), ClusterError> {
    let client = reqwest::Client::builder()
        .timeout(READY_TIMEOUT)
        .build()
        .map_err(|e| unreachable(url, scheduler, &e))?;
    let response = client
        .get(format!("http://{scheduler}/readyz"))
        .send()
        .await
        .map_err(|e| unreachable(url, scheduler, &e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ClusterError::NoExecutors {
            url: url.to_string(),
            addr: scheduler.to_string(),
        })
    }
}

fn unreachable(url: &str, scheduler: &Endpoint, error: &reqwest::Error) -> ClusterError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    ClusterError::Unreachable {
        url: url.to_string(),
        addr: scheduler.to_string(),
        reason,
    }
}

/// Runs a scheduler on `bind` until it fails.
pub async fn run_scheduler(bind: &Endpoint, s3: &S3Config) -> Result<(), ClusterError> {
    let stores = Arc::new(StoreRegistry::new(s3.clone()));
    let session_builder: SessionBuilder = Arc::new(move |config: SessionConfig| {
        let state = default_session_builder(config)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&stores) as _)
            .build_arc()?;
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        super::add_functions(&mut state)?;
        Ok(state)
    });
    let config = SchedulerConfig {
        bind_host: bind.host.clone(),
        external_host: bind.host.clone(),
        bind_port: bind.port,
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: EXECUTOR_TIMEOUT_SECS,
        expire_dead_executor_interval_seconds: EXPIRE_CHECK_SECS,
        no_executors_grace_period_seconds: NO_EXECUTORS_GRACE_SECS,
        override_session_builder: Some(session_builder),
        override_config_producer: Some(config_producer()),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| stopped("scheduler", e))?;
    start_server(cluster, bind.socket_addr()?, Arc::new(config))
        .await
        .map_err(|e| stopped("scheduler", e))
}

/// Runs an executor until Ctrl-C or SIGTERM (it then finishes its running
/// tasks) or until it fails.
pub async fn run_executor(options: ExecutorOptions, s3: &S3Config) -> Result<(), ClusterError> {
    let work_dir = options.work_dir.display().to_string();
    let stores: Arc<dyn ObjectStoreRegistry> =
        Arc::new(GunzipRegistry(StoreRegistry::new(s3.clone())));
    let temp_dir = work_dir.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_: &SessionConfig| runtime(Arc::clone(&stores), Some(&temp_dir)));
    let config = ExecutorProcessConfig {
        bind_host: options.bind.host.clone(),
        external_host: Some(options.bind.host.clone()).filter(|host| host != "0.0.0.0"),
        port: options.bind.port,
        grpc_port: options.bind.port.wrapping_add(1),
        scheduler_host: options.scheduler.host.clone(),
        scheduler_port: options.scheduler.port,
        vcores: options.concurrency,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(work_dir),
        memory_pool_size: options.memory_limit,
        override_runtime_producer: Some(runtime_producer),
        override_config_producer: Some(config_producer()),
        override_function_registry: Some(Arc::new(function_registry())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| stopped("executor", e))
}

/// The functions an executor's tasks may call: DataFusion's and
/// shelfline's own (see [`super::add_functions`]).
fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    for function in super::functions() {
        registry
            .aggregate_functions
            .insert(function.name().to_string(), function);
    }
    registry
}

/// The session settings every process starts from.
fn config_producer() -> ConfigProducer {
    Arc::new(ballista_settings)
}

/// Ballista's settings with its static stage planner. Its adaptive planner
/// (the default in Ballista 55) can lose a job that an executor's death
/// interrupts: when a shuffle read fails it resubmits the stages, then
/// drops the late task updates ("Can't find active stage to update stage
/// outputs") and the job never ends. The static planner reruns the lost
/// stages and finishes (tests/cluster.rs kills an executor mid-job).
fn ballista_settings() -> SessionConfig {
    SessionConfig::new_with_ballista().with_ballista_adaptive_query_planner(false)
}

/// A runtime with the object stores `stores` (and `temp_dir` for spills).
fn runtime(
    stores: Arc<dyn ObjectStoreRegistry>,
    temp_dir: Option<&str>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(stores);
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

fn stopped(role: &'static str, error: impl std::fmt::Display) -> ClusterError {
    ClusterError::Stopped {
        role,
        reason: error.to_string(),
    }
}

/// Parses a memory size: bytes, or a number with KiB, MiB, GiB (or KB,
/// MB, GB, taken as the same powers of two).
pub fn parse_size(text: &str) -> Result<u64, ClusterError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(ClusterError::Size(text.to_string())),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| ClusterError::Size(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_an_optional_scheme_and_need_a_port() {
        let endpoint = Endpoint::parse("df://10.0.0.5:50050").unwrap();
        assert_eq!(endpoint.host, "10.0.0.5");
        assert_eq!(endpoint.port, 50050);
        assert_eq!(
            Endpoint::parse("localhost:7").unwrap().to_string(),
            "localhost:7"
        );
        for bad in ["df://host", "host:port", ":50050"] {
            let error = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn sizes_are_powers_of_two() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "0", "4TiB", "-1GiB", "GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_scheduler_nobody_listens_on_is_named_with_what_to_start() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config {
            scheduler: format!("df://127.0.0.1:{port}"),
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let raw = Location::parse(dir.path().to_str().unwrap(), &config.s3).unwrap();
        let Err(error) = cluster_session(&config, &raw).await else {
            panic!("a session on a scheduler nobody listens on");
        };
        let error = error.to_string();
        assert!(error.contains(&format!("df://127.0.0.1:{port}")), "{error}");
        assert!(
            error.contains(&format!(
                "shelfline cluster scheduler --bind 127.0.0.1:{port}"
            )),
            "{error}"
        );
    }
}
