//! Catalog queries that drivers send and the engine cannot plan as written.
//!
//! SQLAlchemy's column reflection reads single values of `pg_catalog`
//! tables with correlated scalar subqueries the engine does not plan: not
//! aggregated (`(SELECT typcollation FROM pg_type WHERE oid = atttypid)`),
//! or filtered on the outer row alone (`WHERE pg_attribute.atthasdef AND
//! ...`). In a statement that reads nothing but the catalog
//! (`pg_catalog`, `information_schema`), such a subquery is rewritten:
//!
//! - its value is aggregated, `(SELECT max(x) FROM ...)`: the same value
//!   whenever it finds at most one row, as the catalog's keys make it
//!   (PostgreSQL would fail where it found several);
//! - the conditions on the outer row alone move out of it, `CASE WHEN
//!   outer_condition THEN (SELECT ...) END`: NULL when they fail, as the
//!   subquery would find no row;
//! - one that reads a table the server serves empty ([`EMPTY_TABLES`])
//!   becomes `CASE WHEN false AND condition THEN value END` with that
//!   table's columns NULL: NULL, which is what it finds, with the
//!   statement's parameters where they were.
//!
//! Any other statement is left as it is.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, ObjectName, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, Value, visit_expressions, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Catalog tables the server serves without rows: the lake's columns have
/// no sequences (`tests/sql_server.rs` checks it stays so).
const EMPTY_TABLES: [&str; 1] = ["pg_sequence"];

/// `sql` with the catalog's subqueries rewritten, or `None` when it is not
/// a catalog query that has any.
pub(super) fn rewritten(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("pg_catalog") {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    // One statement only, so that no other is ever printed anew.
    let [statement] = statements.as_mut_slice() else {
        return None;
    };
    (reads_only_the_catalog(statement) && rewrite_subqueries(statement))
        .then(|| statement.to_string())
}

/// Whether every relation `statement` names is a catalog table.
fn reads_only_the_catalog(statement: &Statement) -> bool {
    let mut only_catalog = true;
    let _ = visit_relations(statement, |name: &ObjectName| {
        let text = name.to_string().to_ascii_lowercase();
        let catalog = text.starts_with("pg_catalog.")
            || text.starts_with("information_schema.")
            || (text.starts_with("pg_") && !text.contains('.'));
        only_catalog &= catalog;
        ControlFlow::<()>::Continue(())
    });
    only_catalog
}

/// Rewrites each scalar subquery of `statement` that selects one value;
/// whether any changed.
fn rewrite_subqueries(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr: &mut Expr| {
        if let Expr::Subquery(query) = expr
            && let Some(rewritten) = rewrite_subquery(query)
        {
            *expr = rewritten;
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The rewritten form of the scalar subquery `query`, if it needs one.
fn rewrite_subquery(query: &mut Query) -> Option<Expr> {
    if query.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let own = own_names(select);
    if own.iter().any(|name| EMPTY_TABLES.contains(&name.as_str())) {
        return of_empty_table(select, &own);
    }
    let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty())
        && select.having.is_none();
    let [item] = select.projection.as_mut_slice() else {
        return None;
    };
    let value = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return None,
    };
    // An aggregate answers even over no rows (count: 0), so neither it
    // nor its conditions change.
    if !ungrouped || is_aggregate(value) {
        return None;
    }
    *value = parse_expr(&format!("max({value})"))?;
    let outer = take_outer_conditions(select);
    let subquery = Expr::Subquery(Box::new(query.clone()));
    match outer.is_empty() {
        true => Some(subquery),
        false => {
            let condition: Vec<String> = outer.iter().map(|c| format!("({c})")).collect();
            parse_expr(&format!(
                "CASE WHEN {} THEN {subquery} END",
                condition.join(" AND ")
            ))
        }
    }
}

/// What the subquery `select`, over a table without rows, finds: NULL, as
/// an expression that keeps its parameters and outer references.
fn of_empty_table(select: &Select, own: &[String]) -> Option<Expr> {
    let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    let condition = match &select.selection {
        Some(condition) => format!("false AND ({})", nulled(condition, own)),
        None => "false".to_string(),
    };
    parse_expr(&format!(
        "CASE WHEN {condition} THEN {} END",
        nulled(value, own)
    ))
}

/// `expr` with the columns of the relations in `own` replaced by NULL.
fn nulled(expr: &Expr, own: &[String]) -> Expr {
    let mut expr = expr.clone();
    let _ = visit_expressions_mut(&mut expr, |expr: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 2
            && own.contains(&parts[parts.len() - 2].value.to_ascii_lowercase())
        {
            *expr = Expr::Value(Value::Null.into());
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}

/// Removes from the WHERE clause of `select` the conditions that refer to
/// no relation of its own FROM clause (only to the outer query's), and
/// returns them.
fn take_outer_conditions(select: &mut Select) -> Vec<Expr> {
    let Some(selection) = select.selection.take() else {
        return Vec::new();
    };
    let own = own_names(select);
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = conjuncts(selection)
        .into_iter()
        .partition(|condition| refers_only_to_others(condition, &own));
    select.selection = inner.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    });
    outer
}

/// The names (last part, lowercase) and aliases of the relations in the
/// FROM clause of `select`.
fn own_names(select: &Select) -> Vec<String> {
    let mut names = Vec::new();
    for table in &select.from {
        let joined = table.joins.iter().map(|join| &join.relation);
        for relation in std::iter::once(&table.relation).chain(joined) {
            if let TableFactor::Table { name, alias, .. } = relation {
                let text = name.to_string().to_ascii_lowercase();
                names.push(text.rsplit('.').next().unwrap_or(&text).to_string());
                names.extend(alias.iter().map(|a| a.name.value.to_ascii_lowercase()));
            }
        }
    }
    names
}

/// `expr` split at its top-level ANDs.
fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(*left);
            all.extend(conjuncts(*right));
            all
        }
        Expr::Nested(inner) => conjuncts(*inner),
        other => vec![other],
    }
}

/// Whether `condition` names columns, each qualified by a relation not in
/// `own`.
fn refers_only_to_others(condition: &Expr, own: &[String]) -> bool {
    let mut columns = 0;
    let mut others = true;
    let _ = visit_expressions(condition, |expr: &Expr| {
        match expr {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                columns += 1;
                let relation = parts[parts.len() - 2].value.to_ascii_lowercase();
                others &= !own.contains(&relation);
            }
            Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } => others = false,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    columns > 0 && others
}

fn parse_expr(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// Whether `expr` is already an aggregate.
fn is_aggregate(expr: &Expr) -> bool {
    const AGGREGATES: [&str; 9] = [
        "count",
        "max",
        "min",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
    ];
    match expr {
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            AGGREGATES.contains(&name.rsplit('.').next().unwrap_or(&name))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_lookups_are_aggregated() {
        let sql = "SELECT a.attname, (SELECT t.typcollation FROM pg_catalog.pg_type t \
                   WHERE t.oid = a.atttypid) AS c FROM pg_catalog.pg_attribute a";
        let rewritten = rewritten(sql).unwrap();
        assert!(
            rewritten.contains(
                "(SELECT max(t.typcollation) FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)"
            ),
            "{rewritten}"
        );
    }

    #[test]
    fn conditions_on_the_outer_row_move_out() {
        let sql = "SELECT (SELECT d.adbin FROM pg_catalog.pg_attrdef d \
                   WHERE a.atthasdef AND d.adrelid = a.attrelid AND d.adnum = a.attnum) \
                   FROM pg_catalog.pg_attribute a";
        let rewritten = rewritten(sql).unwrap();
        assert!(
            rewritten.contains(
                "CASE WHEN (a.atthasdef) THEN (SELECT max(d.adbin) FROM pg_catalog.pg_attrdef d \
                 WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) END"
            ),
            "{rewritten}"
        );
    }

    #[test]
    fn a_subquery_of_an_empty_table_is_null() {
        let sql = "SELECT (SELECT s.seqstart FROM pg_catalog.pg_sequence s \
                   WHERE s.seqrelid = CAST(a.attrelid AS OID)) FROM pg_catalog.pg_attribute a";
        assert_eq!(
            rewritten(sql).unwrap(),
            "SELECT CASE WHEN false AND (NULL = CAST(a.attrelid AS OID)) THEN NULL END \
             FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn other_statements_are_left_alone() {
        // An aggregate with a condition on the outer row: count gives 0, not NULL.
        let counted_where = "SELECT (SELECT count(*) FROM pg_catalog.pg_attrdef d \
                             WHERE a.atthasdef AND d.adrelid = a.attrelid) FROM pg_catalog.pg_attribute a";
        assert_eq!(rewritten(counted_where), None);
        // Several statements: none is printed anew.
        let batch = "SELECT (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) \
                     FROM pg_catalog.pg_attribute a; SELECT 1";
        assert_eq!(rewritten(batch), None);
        let counted = "SELECT (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) \
                       FROM pg_catalog.pg_attribute a";
        assert_eq!(rewritten(counted), None);
        let lake = "SELECT (SELECT s.region FROM store s WHERE s.store_key = f.store_key) \
                    FROM weekly_sales_inventory f JOIN pg_catalog.pg_type t ON true";
        assert_eq!(rewritten(lake), None);
        assert_eq!(rewritten("SELECT 1"), None);
        assert_eq!(rewritten("not sql pg_catalog"), None);
    }
}
