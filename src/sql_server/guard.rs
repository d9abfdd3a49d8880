//! The read-only rule on the wire: `shelfline query`'s rule
//! ([`crate::query::check_read_only`]) applied to every statement a client
//! sends, before it runs, refused with SQLSTATE 25006; a query runs as the
//! plan that passed. A cursor's query passes the same rule. Session
//! statements are answered by the protocol's own hooks, which keep their
//! state in the connection: `SHOW`, transactions, cursors, and `SET` of the
//! settings those hooks keep (`statement_timeout`, `search_path`,
//! `DateStyle`, ...). Any other `SET` would change the engine that every
//! connection shares: a DataFusion option is refused, anything else is
//! accepted and changes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Set, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use crate::query::{QueryError, check_read_only, name_the_tables};

/// SQLSTATE `read_only_sql_transaction`.
const READ_ONLY: &str = "25006";

/// Refuses what does not only read; runs first among the hooks.
pub(super) struct ReadOnly;

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(tag) = no_op(statement) {
            return Some(Ok(Response::Execution(Tag::new(tag))));
        }
        let plan = match checked_plan(statement, ctx).await {
            Err(refused) => return Some(Err(refused)),
            Ok(None) => return None,
            Ok(Some(plan)) => plan,
        };
        // The plan that passed is the one that runs.
        let frame = match ctx.execute_logical_plan(plan).await {
            Ok(frame) => frame,
            Err(error) => return Some(Err(PgWireError::ApiError(Box::new(error)))),
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let encoded = encode_dataframe(frame, &Format::UnifiedText, Some(options)).await;
        Some(encoded.map(Response::Query))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if no_op(statement).is_some() {
            // Answered at execution (below); nothing to plan.
            return Some(Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            )));
        }
        checked_plan(statement, ctx).await.transpose()
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Everything else was checked when it was parsed.
        no_op(statement).map(|tag| Ok(Response::Execution(Tag::new(tag))))
    }
}

/// The settings the protocol's hooks keep in the connection (and answer
/// `SHOW` from).
const SESSION_SETTINGS: [&str; 7] = [
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// The command tag of a statement that is accepted and changes nothing:
/// savepoints (in a transaction that only reads), and a `SET` that would
/// reach the shared engine ([`is_ignored_set`]).
fn no_op(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Savepoint { .. } => Some("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
        _ if is_ignored_set(statement) => Some("SET"),
        _ => None,
    }
}

/// A `SET` that would reach the shared engine and is not a DataFusion
/// option (those are refused): accepted, and it changes nothing.
fn is_ignored_set(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            ..
        }) => {
            let name = variable.to_string().to_lowercase();
            !SESSION_SETTINGS.contains(&name.as_str()) && !is_engine_option(&name)
        }
        Statement::Set(Set::SetTimeZone { local: false, .. }) => false,
        Statement::Set(set) => !is_engine_option(&set.to_string().to_lowercase()),
        _ => false,
    }
}

/// Whether `name` (a `SET`'s variable, or its text) names a DataFusion
/// option, quoted or not.
fn is_engine_option(name: &str) -> bool {
    name.replace('"', "").contains("datafusion.")
}

/// The plan of `statement` when it only reads; `None` for a session
/// statement (the next hooks answer it); an error when it is refused or
/// cannot be planned.
async fn checked_plan(
    statement: &Statement,
    ctx: &SessionContext,
) -> PgWireResult<Option<LogicalPlan>> {
    match statement {
        Statement::Set(set) if is_engine_option(&set.to_string().to_lowercase()) => {
            return Err(refusal(format!(
                "{set} would change the engine for every client of this server"
            )));
        }
        Statement::Declare { stmts } => {
            // A cursor's query passes the rule before the cursor hook runs it.
            for declare in stmts {
                let Some(query) = &declare.for_query else {
                    return Err(refusal("DECLARE without a query is refused".to_string()));
                };
                plan_read_only(&Statement::Query(query.clone()), ctx).await?;
            }
            return Ok(None);
        }
        _ if is_session_statement(statement) => return Ok(None),
        _ => {}
    }
    plan_read_only(statement, ctx).await.map(Some)
}

/// The plan of `statement`, refused unless it only reads.
async fn plan_read_only(statement: &Statement, ctx: &SessionContext) -> PgWireResult<LogicalPlan> {
    let planned = ctx
        .state()
        .statement_to_plan(DFStatement::Statement(Box::new(statement.clone())))
        .await;
    match planned {
        Ok(plan) => match check_read_only(&plan) {
            Ok(()) => Ok(plan),
            Err(refused) => Err(read_only(&refused)),
        },
        // A statement that cannot even be planned is refused as what it
        // is, unless it is a query (whose error says what is wrong).
        Err(_) if !is_query(statement) => Err(refusal(format!("{} is refused", verb(statement)))),
        Err(error) => match name_the_tables(QueryError::Sql(error), ctx) {
            missing @ QueryError::NoSuchTable { .. } => {
                Err(user_error("42P01", missing.to_string()))
            }
            other => Err(PgWireError::ApiError(Box::new(other))),
        },
    }
}

/// Refuses a text holding DataFusion's own statements that write or change
/// the shared engine (`CREATE EXTERNAL TABLE`, `COPY ... TO`, `RESET`),
/// which the protocol's parser would otherwise reject as syntax errors.
pub(super) fn check_text(sql: &str) -> PgWireResult<()> {
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) else {
        return Ok(());
    };
    for statement in &statements {
        if let Some(what) = extension(statement) {
            return Err(refusal(format!("{what} is refused")));
        }
    }
    Ok(())
}

/// The DataFusion extension statement `statement` is, if any.
fn extension(statement: &DFStatement) -> Option<&'static str> {
    match statement {
        DFStatement::Statement(_) => None,
        DFStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => Some("COPY ... TO"),
        DFStatement::Reset(_) => Some("RESET"),
        DFStatement::Explain(explain) => extension(&explain.statement),
    }
}

/// Statements the protocol's hooks answer from the connection's state.
fn is_session_statement(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
    )
}

/// Whether `statement` reads (a query, not a write dressed as one).
fn is_query(statement: &Statement) -> bool {
    match statement {
        Statement::Query(query) => !matches!(
            *query.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ),
        Statement::Explain { .. } | Statement::ShowTables { .. } => true,
        _ => verb(statement) == "SHOW",
    }
}

/// The statement's first keyword (`INSERT`, `DROP`, ...).
fn verb(statement: &Statement) -> String {
    let text = statement.to_string();
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// A refusal saying what the rule is and where the lake changes.
fn refusal(reason: String) -> PgWireError {
    read_only(&QueryError::ReadOnly { reason })
}

fn read_only(refused: &QueryError) -> PgWireError {
    user_error(READ_ONLY, refused.to_string())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `sql` is planned here (`false`: left to the session's
    /// hooks), or the SQLSTATE and message it is refused with.
    async fn outcome(sql: &str) -> Result<bool, (String, String)> {
        let refused = |e: PgWireError| {
            let info = ErrorInfo::from(e);
            (info.code, info.message)
        };
        check_text(sql).map_err(refused)?;
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.unwrap();
        let dialect = PostgreSqlDialect {};
        let statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .unwrap()
            .remove(0);
        checked_plan(&statement, &ctx)
            .await
            .map(|plan| plan.is_some())
            .map_err(refused)
    }

    #[tokio::test]
    async fn only_reads_run() {
        for query in [
            "SELECT * FROM t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT * FROM t",
        ] {
            assert_eq!(outcome(query).await, Ok(true), "{query}");
        }
        for session in ["SET search_path = public", "BEGIN", "SHOW search_path"] {
            assert_eq!(outcome(session).await, Ok(false), "{session}");
        }
        assert_eq!(
            outcome("DECLARE c CURSOR FOR SELECT * FROM t").await,
            Ok(false)
        );
        let parse = |sql: &str| {
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0)
        };
        for ignored in ["SET timezone = 'Asia/Tokyo'", "SET SESSION search_path = x"] {
            assert!(is_ignored_set(&parse(ignored)), "{ignored}");
        }
        for kept in [
            "SET statement_timeout = 100",
            "SET TIME ZONE 'UTC'",
            "SELECT 1",
        ] {
            assert!(!is_ignored_set(&parse(kept)), "{kept}");
        }
        let (code, message) = outcome("SELECT * FROM nowhere").await.unwrap_err();
        assert_eq!(code, "42P01", "{message}");
        assert!(message.contains("the lake has t"), "{message}");
        for write in [
            "INSERT INTO t VALUES (2)",
            "DROP TABLE t",
            "CREATE TABLE u (a INT)",
            "CREATE TABLE u AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "DELETE FROM t",
            "UPDATE t SET column1 = 2",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (2)",
            "COPY t TO '/tmp/x.csv'",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "SET datafusion.execution.target_partitions = 1",
            "SET \"datafusion\".runtime.temp_directory = '/tmp/elsewhere'",
            "DECLARE c CURSOR FOR INSERT INTO t VALUES (2)",
            "TRUNCATE t",
        ] {
            let (code, message) = outcome(write).await.unwrap_err();
            assert_eq!(code, READ_ONLY, "{write}: {message}");
            assert!(message.contains("read-only"), "{write}: {message}");
        }
    }
}
