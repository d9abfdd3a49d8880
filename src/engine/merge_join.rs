//! A physical optimizer rule: join inputs that already arrive in the order
//! of their join keys by merging them instead of hashing one side.
//!
//! DataFusion chooses between a hash join and a sort-merge join once for
//! the whole session (`prefer_hash_join`). A hash join holds its whole build
//! side in memory (and cannot spill); a merge join of inputs already in key
//! order holds only the rows of the current key. When the raw sales and
//! inventory files are in daily-key order (the manifest says so, the reader
//! checks it), the metric query's daily aggregate keeps that order and its
//! full outer join with the inventory can stream: this rule makes that join
//! a merge join, and leaves every other join (the small calendar ones) to
//! the hash join.
//!
//! It runs first among the physical optimizer rules, so that DataFusion's
//! own rules then add order-preserving repartitions for it.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, SortMergeJoinExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// Replaces a hash join whose two inputs are both ordered by the join keys
/// (ascending, in the order of the ON clause) with a sort-merge join.
#[derive(Debug, Default)]
pub struct MergeJoinOrderedInputs;

impl PhysicalOptimizerRule for MergeJoinOrderedInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            match merge_join(join)? {
                Some(merge) => Ok(Transformed::yes(merge)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "merge_join_ordered_inputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The merge join equivalent to `join`, when both inputs are in key order
/// and the join has no embedded projection or null-aware semantics.
fn merge_join(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if join.contains_projection() || join.null_aware {
        return Ok(None);
    }
    let ordered_by = |input: &Arc<dyn ExecutionPlan>, keys: Vec<PhysicalSortExpr>| {
        input.equivalence_properties().ordering_satisfy(keys)
    };
    let left_keys = join.on().iter().map(|(left, _)| ascending(left));
    let right_keys = join.on().iter().map(|(_, right)| ascending(right));
    if !ordered_by(join.left(), left_keys.collect())?
        || !ordered_by(join.right(), right_keys.collect())?
    {
        return Ok(None);
    }
    let merge = SortMergeJoinExec::try_new(
        Arc::clone(join.left()),
        Arc::clone(join.right()),
        join.on().to_vec(),
        join.filter().cloned(),
        *join.join_type(),
        vec![SortOptions::default(); join.on().len()],
        join.null_equality(),
    )?;
    Ok(Some(Arc::new(merge)))
}

fn ascending(expr: &Arc<dyn PhysicalExpr>) -> PhysicalSortExpr {
    PhysicalSortExpr::new(Arc::clone(expr), SortOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionContext, col};

    /// A table `name` of (k, v) rows, declared sorted by k when `sorted`.
    fn table(ctx: &SessionContext, name: &str, rows: &[(i32, i32)], sorted: bool) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, false),
            Field::new("v", DataType::Int32, false),
        ]));
        let columns = vec![
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))) as _,
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))) as _,
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut memory = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        if sorted {
            memory = memory.with_sort_order(vec![vec![col("k").sort(true, true)]]);
        }
        ctx.register_table(name, Arc::new(memory)).unwrap();
    }

    /// The plan and the sorted result of a full outer join of `a` and `b`.
    async fn full_join(sorted: bool) -> (String, String) {
        let ctx = crate::engine::session(&Config::default()).unwrap();
        table(&ctx, "a", &[(1, 10), (2, 20), (2, 21), (4, 40)], sorted);
        table(&ctx, "b", &[(2, 200), (3, 300), (4, 400)], sorted);
        let frame = ctx
            .sql("SELECT a.k, a.v, b.k AS bk, b.v AS bv FROM a FULL OUTER JOIN b ON a.k = b.k ORDER BY 1, 2, 3")
            .await
            .unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let plan = displayable(plan.as_ref()).indent(false).to_string();
        let result = pretty_format_batches(&frame.collect().await.unwrap())
            .unwrap()
            .to_string();
        (plan, result)
    }

    #[tokio::test]
    async fn inputs_in_key_order_are_merged_others_hashed() {
        let (merged_plan, merged) = full_join(true).await;
        let (hashed_plan, hashed) = full_join(false).await;
        assert!(
            merged_plan.contains("SortMergeJoinExec: join_type=Full"),
            "{merged_plan}"
        );
        assert!(!merged_plan.contains("HashJoinExec"), "{merged_plan}");
        assert!(hashed_plan.contains("HashJoinExec"), "{hashed_plan}");
        assert!(!hashed_plan.contains("SortMergeJoinExec"), "{hashed_plan}");
        assert_eq!(merged, hashed);
        for row in [
            "| 1 | 10 |    |     |",
            "| 2 | 21 | 2  | 200 |",
            "|   |    | 3  | 300 |",
        ] {
            assert!(merged.contains(row), "missing {row} in\n{merged}");
        }
    }
}
