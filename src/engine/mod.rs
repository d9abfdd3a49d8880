//! Where SQL runs: a local DataFusion session configured from [`Config`],
//! or a Ballista cluster ([`cluster`]).

pub mod cluster;
mod gunzip;
pub mod latest;
mod merge_join;

use std::sync::Arc;

use datafusion::execution::FunctionRegistry as _;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::planner::DeltaPlanner;

use crate::config::Config;

pub use cluster::{ClusterError, cluster_session};

/// A DataFusion session with the configured parallelism and memory limit.
///
/// It carries delta-rs's query planner, so that a plan built in this session
/// can be handed to a Delta write and run with the same settings.
pub fn session(config: &Config) -> datafusion::error::Result<SessionContext> {
    let mut session_config = SessionConfig::new();
    // Skip an aggregation's partial stage when its first 100k rows hold more
    // than 10% distinct groups (DataFusion's default: 80%). The metric
    // query's daily and weekly aggregates reduce their input only 3x: hashing
    // every row twice cost more than it saved. Measured at SF 3 on csv.gz:
    // 5% faster and a quarter less peak memory.
    session_config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 0.1;
    // Keep the order of inputs already sorted (raw fact files in daily-key
    // order) when repartitioning them, instead of sorting again: the daily
    // aggregate and the merge join ([`merge_join`]) then stream.
    session_config.options_mut().optimizer.prefer_existing_sort = true;
    if let Some(partitions) = config.target_partitions {
        session_config = session_config.with_target_partitions(partitions.max(1));
    }
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit_mb) = config.memory_limit_mb {
        let bytes = limit_mb.saturating_mul(1 << 20);
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
    }
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(session_config)
        .with_runtime_env(runtime.build_arc()?)
        .with_query_planner(DeltaPlanner::new())
        .with_physical_optimizer_rules(physical_optimizer_rules())
        .build();
    add_functions(&mut state)?;
    Ok(SessionContext::new_with_state(state))
}

/// The partitions the metric query runs in: `target_partitions` when set,
/// otherwise half the cores (at least one). The raw files' workers decode on
/// every core whatever the partitions ([`crate::raw::reader`]), and with
/// fewer partitions the fact files stream through the daily aggregate and
/// the merge join without being hash-partitioned and merged back in order.
/// On 2 cores at SF 1, one partition takes a quarter less CPU than two
/// (bench/RESULTS.md).
pub fn metric_query_partitions(config: &Config) -> usize {
    config.target_partitions.unwrap_or(cores() / 2).max(1)
}

/// The cores this process may run on (at least one).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// DataFusion's physical optimizer rules, preceded by
/// [`merge_join::MergeJoinOrderedInputs`] (which must see the plan before
/// the rules that add repartitions and sorts).
fn physical_optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(merge_join::MergeJoinOrderedInputs)];
    rules.extend(PhysicalOptimizer::new().rules);
    rules
}

/// shelfline's own SQL functions ([`latest`]). Every session that plans or
/// runs the metric query needs them: the local one, and on a cluster the
/// client, the scheduler and the executors.
fn functions() -> Vec<Arc<AggregateUDF>> {
    vec![latest::value_at_latest()]
}

/// Adds shelfline's own SQL functions ([`functions`]) to `state`.
pub fn add_functions(state: &mut SessionState) -> datafusion::error::Result<()> {
    for function in functions() {
        state.register_udaf(function)?;
    }
    Ok(())
}
