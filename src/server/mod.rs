//! The HTTP API of `shelfline serve`, in the shape of Airflow's stable REST
//! API so that an existing trigger (e.g. the original pipeline's Lambda)
//! works unchanged:
//!
//! - `GET  /api/v1/health` (also `/health`), no credentials
//! - `GET  /api/v1/dags`, `GET /api/v1/dags/{dag_id}`
//! - `PATCH /api/v1/dags/{dag_id}` `{"is_paused": true | false}`
//! - `POST /api/v1/dags/{dag_id}/dagRuns` `{"dag_run_id"?, "logical_date"?, "conf"?}`
//! - `GET  /api/v1/dags/{dag_id}/dagRuns[?state=&order_by=&limit=&offset=]`
//! - `GET  /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}`
//! - `PATCH /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}` `{"state": "failed" | "success" | "queued"}`
//! - `GET  /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances[/{task_id}]`
//! - `GET  /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try}`
//! - `POST /api/v1/dags/{dag_id}/clearTaskInstances`
//! - `GET  /metrics` (Prometheus text)
//!
//! The same operations answer under `/api/v2` in the shapes of Airflow 3's
//! API ([`airflow3`]), whose clients log in with `POST /auth/token` for a
//! bearer token; its health is `GET /api/v2/monitor/health`.
//!
//! The server holds at most [`MAX_CONNECTIONS`] connections, and closes
//! one whose client does not send a request's headers within
//! [`HEADER_TIMEOUT`] (an idle keep-alive connection included), so idle
//! or half-sent requests cannot starve it. When the run history is locked
//! by another process, the API answers 503 instead of waiting.
//!
//! Every endpoint but `/health` needs HTTP basic credentials or a bearer
//! token from `[serve.auth]`; with none configured they all answer 401, and
//! the server refuses to listen on a non-loopback address. Errors are JSON
//! (`{"status", "title", "detail", "field"?}`) with a 4xx status naming the
//! field at fault.

mod airflow3;
mod auth;
mod json;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::orchestrator::dag::RunState;
use crate::orchestrator::dag::TaskId;
use crate::orchestrator::history::{HistoryError, RunQuery, RunRecord, TaskRecord};
use crate::orchestrator::{Orchestrator, OrchestratorError};
pub(crate) use auth::secret;
pub use auth::{Credentials, CredentialsError};
use json::shown;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("`serve.bind` = {0:?} is not an address like 127.0.0.1:8080 or localhost:8080")]
    Address(String),
    #[error(
        "refusing to serve the API on {0} without credentials: set `[serve.auth]` (username + password, or a token) or bind to 127.0.0.1"
    )]
    Insecure(SocketAddr),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// An API error: a status and a JSON body naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            field: None,
        }
    }

    fn field(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, detail)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "status": self.status.as_u16(),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(error: OrchestratorError) -> ApiError {
        match error {
            OrchestratorError::Conf { field, reason } => {
                let field = match field.as_str() {
                    "conf" => field,
                    key => format!("conf.{key}"),
                };
                let detail = format!("{field}: {reason}");
                ApiError::field(field, detail)
            }
            OrchestratorError::History(e) => e.into(),
            not_latest @ OrchestratorError::NotLatest { .. } => {
                ApiError::new(StatusCode::CONFLICT, not_latest.to_string())
            }
            future @ OrchestratorError::FutureDate { .. } => {
                ApiError::field("logical_date", future.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(error: HistoryError) -> ApiError {
        let status = match error {
            HistoryError::DuplicateRunId(_)
            | HistoryError::ActiveRun { .. }
            | HistoryError::Ended { .. }
            | HistoryError::NotRetryable { .. } => StatusCode::CONFLICT,
            HistoryError::NoSuchRun(_) => StatusCode::NOT_FOUND,
            HistoryError::Busy { .. } => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the run history is locked by another process; try again shortly",
                );
            }
            // The history's own problems stay in the daemon's log: the
            // client learns no file path.
            HistoryError::Sqlite { .. }
            | HistoryError::Folder { .. }
            | HistoryError::Corrupt { .. } => {
                tracing::error!("API: {error}");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the run history cannot be read; see the daemon's log",
                );
            }
        };
        ApiError::new(status, error.to_string())
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
struct Api {
    orchestrator: Arc<Orchestrator>,
}

/// The REST API a request came in on: Airflow 2's (`/api/v1`) or Airflow
/// 3's (`/api/v2`); the same operations, each answering in its shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The API's routes over `orchestrator`, behind `credentials` (or a token
/// from `POST /auth/token`).
pub fn router(
    orchestrator: Arc<Orchestrator>,
    credentials: Credentials,
) -> std::io::Result<Router> {
    let api = Api { orchestrator };
    let auth = Arc::new(auth::Auth {
        credentials,
        sessions: session::Sessions::new()?,
    });
    let dags = Router::new()
        .route("/dags", get(list_dags))
        .route("/dags/{dag_id}", get(get_dag).patch(patch_dag))
        .route(
            "/dags/{dag_id}/clearTaskInstances",
            post(clear_task_instances),
        )
        .route("/dags/{dag_id}/dagRuns", get(list_runs).post(trigger_run))
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}",
            get(get_run).patch(patch_run),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            get(task_instances),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            get(task_instance),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            get(task_log),
        );
    let protected = Router::new()
        .nest("/api/v1", dags.clone().layer(Extension(Version::V1)))
        .nest("/api/v2", dags.layer(Extension(Version::V2)))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&auth),
            auth::require,
        ));
    let login = Router::new()
        .route("/auth/token", post(airflow3::login))
        .with_state(auth);
    Ok(Router::new()
        .route("/health", get(health))
        .route("/api/v1/health", get(health))
        .route("/api/v2/monitor/health", get(health_v2))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(api)
        .merge(login))
}

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a request's headers, and how long
/// an idle keep-alive connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives (a request trickling its body).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Serves `app` on `listener` until an accept fails for good, with the
/// limits of the module documentation.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    let limit = MAX_CONNECTIONS.min(raise_open_file_limit().saturating_sub(64).max(16));
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    loop {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait for connections to end.
                tracing::warn!("API: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

/// Raises this process's soft limit of open files to its hard limit (the
/// usual soft limit, 1024, is below [`MAX_CONNECTIONS`]); returns the
/// limit in force.
fn raise_open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            limit = raised;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Binds `bind` (`IP:PORT` or `HOST:PORT`, e.g. `localhost:8080`; refusing
/// a non-loopback address without credentials) and
/// returns the listener with its actual address (port 0 picks one).
pub async fn listen(
    bind: &str,
    credentials: &Credentials,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let address = resolve(bind)
        .await
        .ok_or_else(|| ServerError::Address(bind.to_string()))?;
    if !address.ip().is_loopback() && credentials.is_empty() {
        return Err(ServerError::Insecure(address));
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { address, source })?;
    Ok((listener, local))
}

/// The first address `bind` (`IP:PORT` or `HOST:PORT`) resolves to.
pub async fn resolve(bind: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(bind).await.ok()?.next()
}

/// Runs `read` on the orchestrator on a blocking thread: a history locked
/// by another process makes it wait (up to the history's busy timeout)
/// without holding up the server's other requests.
async fn blocking<T: Send + 'static>(
    api: &Api,
    read: impl FnOnce(&Orchestrator) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let orchestrator = Arc::clone(&api.orchestrator);
    tokio::task::spawn_blocking(move || read(&orchestrator))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Accepts the DAG's id and its aliases (`dag_aliases`: the id an existing
/// trigger sends, e.g. the original pipeline's `batch_processing_dag`).
fn check_dag(api: &Api, dag_id: &str) -> Result<(), ApiError> {
    if dag_id == api.orchestrator.dag_id || api.orchestrator.dag_aliases.iter().any(|a| a == dag_id)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no DAG \"{}\"; this server runs {:?}",
                shown(dag_id),
                api.orchestrator.dag_id
            ),
        ))
    }
}

/// Whether the run history can be read: the error when not.
async fn history_health(api: &Api) -> Result<(), ApiError> {
    let dag_id = api.orchestrator.dag_id.clone();
    blocking(api, move |o| Ok(o.history.counts(&dag_id)?)).await?;
    Ok(())
}

async fn health_v2(State(api): State<Api>) -> Response {
    let healthy = history_health(&api).await.is_ok();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(airflow3::health(healthy))).into_response()
}

async fn health(State(api): State<Api>) -> Response {
    match history_health(&api).await {
        Ok(_) => axum::Json(json!({
            "status": "healthy",
            "metadatabase": {"status": "healthy"},
            "scheduler": {"status": "healthy"},
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "unhealthy",
                "metadatabase": {"status": "unhealthy", "detail": e.detail},
            })),
        )
            .into_response(),
    }
}

/// The one DAG in Airflow's DAG shape.
async fn dag_json(api: &Api, version: Version) -> Result<Value, ApiError> {
    let paused = blocking(api, |o| Ok(o.is_paused()?)).await?;
    let serve = &api.orchestrator.pipeline.config.serve;
    let v1 = json::dag(
        &api.orchestrator.dag_id,
        paused,
        &serve.extract_schedule,
        &serve.process_schedule,
    );
    Ok(match version {
        Version::V1 => v1,
        Version::V2 => airflow3::dag(v1, serve.max_active_runs),
    })
}

impl Api {
    /// `run` in the shape of `version`.
    fn run_json(&self, version: Version, run: &RunRecord) -> Value {
        let v1 = json::dag_run(run, self.orchestrator.timezone());
        match version {
            Version::V1 => v1,
            Version::V2 => airflow3::dag_run(v1, run),
        }
    }

    /// `task` of `run` in the shape of `version`.
    fn task_json(&self, version: Version, run: &RunRecord, task: &TaskRecord) -> Value {
        let v1 = json::task_instance(run, task, self.orchestrator.timezone());
        match version {
            Version::V1 => v1,
            Version::V2 => airflow3::task_instance(v1, run, task),
        }
    }
}

async fn list_dags(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
) -> Result<axum::Json<Value>, ApiError> {
    let dag = dag_json(&api, version).await?;
    Ok(axum::Json(json!({"dags": [dag], "total_entries": 1})))
}

async fn get_dag(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path(dag_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    Ok(axum::Json(dag_json(&api, version).await?))
}

/// `PATCH dags/{id}`: pauses or unpauses the schedules (and the start of
/// queued runs), as Airflow's pause toggle does.
async fn patch_dag(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let pairs = url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes());
    for (key, value) in pairs {
        if key != "update_mask" || value.split(',').any(|field| field.trim() != "is_paused") {
            return Err(ApiError::field(
                "update_mask",
                "only is_paused can be changed (update_mask=is_paused)",
            ));
        }
    }
    let paused = json::pause_change(&body)?;
    blocking(&api, move |o| Ok(o.set_paused(paused)?)).await?;
    Ok(axum::Json(dag_json(&api, version).await?))
}

/// `POST clearTaskInstances`: lists (`dry_run`, Airflow's default) or
/// queues again the selected tasks of ended runs.
async fn clear_task_instances(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path(dag_id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let (dry_run, selection) = json::clear_request(&body)?;
    let (plan, records) = blocking(&api, move |o| {
        let plan = o.plan_clear(&selection)?;
        if !dry_run {
            o.apply_clear(&plan)?;
        }
        // Airflow 3 answers with the task instances themselves.
        let mut records = Vec::new();
        for cleared in plan.iter().filter(|_| version == Version::V2) {
            let run = o.history.find_run(&cleared.run.run_id)?;
            let tasks = o.history.tasks(&run.run_id)?;
            let chosen = tasks
                .into_iter()
                .filter(|t| cleared.tasks.contains(&t.task));
            records.extend(chosen.map(|task| (run.clone(), task)));
        }
        Ok((plan, records))
    })
    .await?;
    Ok(axum::Json(match version {
        Version::V1 => json::cleared(&plan, api.orchestrator.timezone()),
        Version::V2 => json!({
            "task_instances": records.iter().map(|(run, task)| api.task_json(version, run, task)).collect::<Vec<_>>(),
            "total_entries": records.len(),
        }),
    }))
}

async fn trigger_run(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path(dag_id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let trigger = json::trigger(&body)?;
    let run = blocking(&api, move |o| Ok(o.trigger(trigger)?)).await?;
    Ok(axum::Json(api.run_json(version, &run)))
}

/// `PATCH dagRuns/{id}`: ends a run as failed or a success, or queues a
/// failed run's failed tasks again, as Airflow's "mark failed", "mark
/// success" and "clear" do.
async fn patch_run(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path((dag_id, run_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let state = json::run_state_change(&body)?;
    let run = blocking(&api, move |o| {
        Ok(match state {
            RunState::Queued => o.retry(&run_id, Default::default(), false)?,
            ended => o.end(
                &run_id,
                ended,
                &format!("marked {} through the API", ended.as_str()),
            )?,
        })
    })
    .await?;
    Ok(axum::Json(api.run_json(version, &run)))
}

async fn list_runs(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let query = json::run_query(query.as_deref())?;
    let dag_id = api.orchestrator.dag_id.clone();
    let (runs, total) = blocking(&api, move |o| Ok(o.history.runs(&dag_id, &query)?)).await?;
    Ok(axum::Json(json!({
        "dag_runs": runs.iter().map(|r| api.run_json(version, r)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

async fn get_run(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let run = blocking(&api, move |o| {
        Ok(o.history
            .run(&run_id)?
            .ok_or_else(|| HistoryError::NoSuchRun(shown(&run_id)))?)
    })
    .await?;
    Ok(axum::Json(api.run_json(version, &run)))
}

/// A run and its task instances.
async fn run_and_tasks(
    api: &Api,
    run_id: String,
) -> Result<(RunRecord, Vec<TaskRecord>), ApiError> {
    blocking(api, move |o| {
        let run = o
            .history
            .run(&run_id)?
            .ok_or_else(|| HistoryError::NoSuchRun(shown(&run_id)))?;
        let tasks = o.history.tasks(&run.run_id)?;
        Ok((run, tasks))
    })
    .await
}

async fn task_instances(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let (run, tasks) = run_and_tasks(&api, run_id).await?;
    Ok(axum::Json(json!({
        "task_instances": tasks.iter().map(|t| api.task_json(version, &run, t)).collect::<Vec<_>>(),
        "total_entries": tasks.len(),
    })))
}

/// The task `task_id` of `run`.
fn find_task<'a>(
    run: &RunRecord,
    tasks: &'a [TaskRecord],
    task_id: &str,
) -> Result<&'a TaskRecord, ApiError> {
    tasks
        .iter()
        .find(|t| t.task.to_string() == task_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {} has no task \"{}\"", run.run_id, shown(task_id)),
            )
        })
}

async fn task_instance(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    check_dag(&api, &dag_id)?;
    let (run, tasks) = run_and_tasks(&api, run_id).await?;
    let task = find_task(&run, &tasks, &task_id)?;
    Ok(axum::Json(api.task_json(version, &run, task)))
}

/// `GET .../logs/{try}`: the lines of one attempt of a task, as JSON
/// (`{"content"}`, the whole log at once) or, asked with `Accept:
/// text/plain`, as text.
async fn task_log(
    State(api): State<Api>,
    Extension(version): Extension<Version>,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_dag(&api, &dag_id)?;
    let try_number = try_number
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::field("task_try_number", "the try number is a whole number ≥ 1")
        })?;
    let (run, tasks) = run_and_tasks(&api, run_id).await?;
    let task = find_task(&run, &tasks, &task_id)?;
    if try_number > task.try_number {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} of run {} has had {} attempt(s), not {try_number}",
                task.task, run.run_id, task.try_number
            ),
        ));
    }
    let (run_id, task_id): (String, TaskId) = (run.run_id.clone(), task.task);
    let lines = blocking(&api, move |o| {
        Ok(o.history.task_log(&run_id, task_id, try_number)?)
    })
    .await?;
    let text = || -> String { lines.iter().map(|line| format!("{line}\n")).collect() };
    Ok(match (prefers_text(&headers), version) {
        (true, _) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text(),
        )
            .into_response(),
        (false, Version::V1) => axum::Json(json!({"content": text()})).into_response(),
        (false, Version::V2) => axum::Json(airflow3::log(&lines)).into_response(),
    })
}

/// Whether the client asks for text first (`Accept: text/plain, ...`).
fn prefers_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .is_some_and(|first| first.trim().starts_with("text/plain"))
}

async fn metrics(State(api): State<Api>) -> Result<Response, ApiError> {
    let dag = api.orchestrator.dag_id.clone();
    let ((runs, tasks), latest) = blocking(&api, move |o| {
        let counts = o.history.counts(&dag)?;
        let (latest, _) = o
            .history
            .runs(&dag, &RunQuery::newest(vec![RunState::Success], 1))?;
        Ok((counts, latest))
    })
    .await?;
    let dag_id = &api.orchestrator.dag_id;
    let mut text = String::new();
    text.push_str("# HELP shelfline_dag_runs Runs in the history, by state.\n# TYPE shelfline_dag_runs gauge\n");
    for state in ["queued", "running", "success", "failed"] {
        let count = runs.get(state).copied().unwrap_or(0);
        text.push_str(&format!(
            "shelfline_dag_runs{{dag_id=\"{dag_id}\",state=\"{state}\"}} {count}\n"
        ));
    }
    text.push_str(
        "# HELP shelfline_task_instances Task instances in the history, by state.\n# TYPE shelfline_task_instances gauge\n",
    );
    for (state, count) in &tasks {
        text.push_str(&format!(
            "shelfline_task_instances{{dag_id=\"{dag_id}\",state=\"{state}\"}} {count}\n"
        ));
    }
    if let Some(run) = latest.first() {
        let midnight = run
            .logical_date
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp());
        text.push_str(
            "# HELP shelfline_last_success_logical_date_seconds Logical date (UTC midnight, Unix time) of the latest successful run: alert when it falls behind.\n# TYPE shelfline_last_success_logical_date_seconds gauge\n",
        );
        text.push_str(&format!(
            "shelfline_last_success_logical_date_seconds{{dag_id=\"{dag_id}\"}} {midnight}\n"
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
