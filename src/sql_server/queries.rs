//! Statements on the wire. Each runs on the lake's latest versions at its
//! start ([`LakeSessions`]), within the session's statement timeout and
//! until a cancel request ([`super::cancel`]), and its rows are watched: a
//! statement whose files a publication removed while it ran fails with
//! SQLSTATE 40001, saying to run it again.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Sink, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, SendableRowStream};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::cancel::{Cancel, CancelSignal, Cancels, requested};
use super::sessions::{LakeSessions, Pinned};
use super::{catalog_queries, guard};
use crate::query::QueryError;

/// Where `datafusion-postgres` keeps the session's statement timeout in
/// milliseconds (`SET statement_timeout`); the login sets the default.
pub(super) const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// A statement as `datafusion-postgres` parses it: its text, and its
/// syntax tree and plan.
type DfStatement = (String, Option<(Statement, LogicalPlan)>);

/// The query handlers of one connection.
pub(super) struct Queries {
    sessions: Arc<LakeSessions>,
    parser: Arc<LakeParser>,
    /// The server's statement timeout (`None`: no limit); a session may
    /// lower it.
    limit: Option<Duration>,
    /// The connection's cancel requests, and where it is registered.
    signal: Arc<CancelSignal>,
    cancels: Arc<Cancels>,
}

impl Queries {
    pub(super) fn new(
        sessions: Arc<LakeSessions>,
        limit: Option<Duration>,
        signal: Arc<CancelSignal>,
        cancels: Arc<Cancels>,
    ) -> Queries {
        let parser = Arc::new(LakeParser {
            sessions: Arc::clone(&sessions),
        });
        Queries {
            sessions,
            parser,
            limit,
            signal,
            cancels,
        }
    }

    /// A statement of `client` starts now: its limits, and the session of
    /// the versions current at its start.
    async fn start<C: ClientInfo>(&self, client: &C) -> PgWireResult<(Limits, Arc<Pinned>)> {
        let started = Instant::now();
        let limits = Limits {
            deadline: Deadline::of(client, started, self.limit),
            cancel: self
                .signal
                .statement(&self.cancels, client.pid_and_secret_key()),
        };
        let pinned = self
            .sessions
            .latest(Some(started))
            .await
            .map_err(lake_error)?;
        Ok((limits, pinned))
    }

    /// `response`, its rows watched within `limits`.
    fn watched(&self, response: Response, limits: &Limits, pinned: &Pinned) -> Response {
        match response {
            Response::Query(mut query) => {
                query.data_rows = watch(
                    query.data_rows,
                    Watch {
                        limits: limits.clone(),
                        sessions: Arc::clone(&self.sessions),
                        versions: pinned.versions.clone(),
                    },
                );
                Response::Query(query)
            }
            other => other,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let query = catalog_queries::rewritten(query).unwrap_or_else(|| query.to_string());
        guard::check_text(&query)?;
        let (limits, pinned) = self.start(client).await?;
        let responses = within(
            &limits,
            SimpleQueryHandler::do_query(&pinned.service, client, &query),
        )
        .await?;
        Ok(responses
            .into_iter()
            .map(|response| self.watched(response, &limits, &pinned))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = DfStatement;
    type QueryParser = LakeParser;

    fn query_parser(&self) -> Arc<LakeParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<DfStatement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = DfStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (limits, pinned) = self.start(client).await?;
        // Planned again on the versions current now (the plan made when the
        // statement was prepared reads the versions of then), within the
        // statement's limits.
        let work = async {
            let stored = &portal.statement;
            let parser = ExtendedQueryHandler::query_parser(&pinned.service);
            let Some(statement) = parser
                .parse_sql(&*client, &stored.statement.0, &stored.parameter_types)
                .await?
            else {
                return Ok(Response::EmptyQuery);
            };
            let mut current = Portal::default();
            current.name.clone_from(&portal.name);
            current.statement = Arc::new(StoredStatement::new(
                stored.id.clone(),
                statement,
                stored.parameter_types.clone(),
            ));
            current.parameter_format = portal.parameter_format.clone();
            current.parameters.clone_from(&portal.parameters);
            current.result_column_format = portal.result_column_format.clone();
            current.state = portal.state();
            ExtendedQueryHandler::do_query(&pinned.service, client, &current, max_rows).await
        };
        let response = within(&limits, work).await?;
        Ok(self.watched(response, &limits, &pinned))
    }
}

/// Parses a prepared statement on the latest versions, read-only rule
/// first; describes it from its plan.
pub(super) struct LakeParser {
    sessions: Arc<LakeSessions>,
}

#[async_trait]
impl QueryParser for LakeParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<DfStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = catalog_queries::rewritten(sql).unwrap_or_else(|| sql.to_string());
        guard::check_text(&sql)?;
        // Any recent session will do: execution plans the statement again
        // on the versions current then.
        let pinned = self.sessions.latest(None).await.map_err(lake_error)?;
        let parser = ExtendedQueryHandler::query_parser(&pinned.service);
        parser.parse_sql(client, &sql, types).await
    }

    fn get_parameter_types(&self, statement: &DfStatement) -> PgWireResult<Vec<Type>> {
        self.sessions.describer().get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &DfStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.sessions
            .describer()
            .get_result_schema(statement, format)
    }
}

/// When a statement must be done by: its start plus the session's
/// statement timeout.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// The deadline of a statement of `client` started at `started`: the
    /// session's `statement_timeout`, at most the server's `limit`; `None`
    /// when neither sets one.
    fn of<C: ClientInfo>(
        client: &C,
        started: Instant,
        limit: Option<Duration>,
    ) -> Option<Deadline> {
        let session = client
            .metadata()
            .get(STATEMENT_TIMEOUT_KEY)
            .and_then(|millis| millis.parse::<u64>().ok())
            .filter(|&millis| millis > 0)
            .map(Duration::from_millis);
        let timeout = match (session, limit) {
            (Some(session), Some(limit)) => session.min(limit),
            (session, limit) => session.or(limit)?,
        };
        Some(Deadline {
            at: started + timeout,
            timeout,
        })
    }

    fn passed(&self) -> PgWireError {
        user_error(
            "57014",
            format!(
                "canceling statement due to statement timeout ({} ms: sql_server.statement_timeout_secs, or less with `SET statement_timeout`)",
                self.timeout.as_millis()
            ),
        )
    }
}

/// What ends a statement early: its deadline, a cancel request.
#[derive(Clone)]
struct Limits {
    deadline: Option<Deadline>,
    cancel: Cancel,
}

/// `work`, cut off at the deadline of `limits` or by a cancel request.
async fn within<T>(
    limits: &Limits,
    work: impl Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    let timed = async {
        match limits.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.at.into(), work)
                .await
                .map_err(|_| deadline.passed())?,
            None => work.await,
        }
    };
    let mut cancel = limits.cancel.clone();
    tokio::select! {
        result = timed => result,
        () = requested(&mut cancel) => Err(cancelled()),
    }
}

/// PostgreSQL's answer to a cancel request.
fn cancelled() -> PgWireError {
    user_error(
        "57014",
        "canceling statement due to user request".to_string(),
    )
}

/// What watching a statement's rows needs.
struct Watch {
    limits: Limits,
    sessions: Arc<LakeSessions>,
    /// The versions the statement reads.
    versions: Vec<Option<u64>>,
}

/// `rows`, ended by an error when the deadline passes or a cancel request
/// comes; an error reading a file that a publication removed meanwhile
/// becomes SQLSTATE 40001.
fn watch(rows: SendableRowStream, watch: Watch) -> SendableRowStream {
    Box::pin(futures::stream::unfold(
        Some((rows, watch)),
        |state| async move {
            let (mut rows, mut watch) = state?;
            let row = async {
                match watch.limits.deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline.at.into(), rows.next())
                        .await
                        .unwrap_or_else(|_| Some(Err(deadline.passed()))),
                    None => rows.next().await,
                }
            };
            let next = tokio::select! {
                next = row => next,
                () = requested(&mut watch.limits.cancel) => Some(Err(cancelled())),
            };
            match next {
                None => None,
                Some(Ok(row)) => Some((Ok(row), Some((rows, watch)))),
                Some(Err(error)) => {
                    let error = explained(error, &watch).await;
                    Some((Err(error), None))
                }
            }
        },
    ))
}

/// `error`, or SQLSTATE 40001 when it is a file gone missing because a
/// publication committed (and vacuumed) while the statement read it.
async fn explained(error: PgWireError, watch: &Watch) -> PgWireError {
    let text = error.to_string().to_ascii_lowercase();
    let vanished = text.contains("not found") || text.contains("no such file");
    if vanished && watch.sessions.changed_since(&watch.versions).await {
        return user_error(
            "40001",
            "the lake was updated during the query (a publication replaced the files it was reading); run it again".to_string(),
        );
    }
    error
}

/// A lake that cannot be read.
fn lake_error(error: QueryError) -> PgWireError {
    user_error("58030", error.to_string())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}
