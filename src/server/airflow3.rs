//! Airflow 3's REST API (`/api/v2`): the operations of `/api/v1` in the
//! shapes Airflow 3's clients validate (each a v1 answer with the fields
//! they require added), and the login (`POST /auth/token`) they take a
//! bearer token from.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ApiError;
use super::auth::Auth;
use crate::orchestrator::history::{LogLine, RunRecord, RunType, TaskRecord};

/// `POST /auth/token` with `{"username", "password"}` (the API's basic
/// credentials): 201 with `{"access_token"}`, good for a day.
pub async fn login(State(auth): State<Arc<Auth>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Login {
        username: String,
        password: String,
    }
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return ApiError::field(
            "body",
            "the body must be {\"username\": \"...\", \"password\": \"...\"}",
        )
        .into_response();
    };
    if !auth
        .credentials
        .check_login(&login.username, &login.password)
    {
        // A pause per failure slows guessing down.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        tracing::warn!(
            "API: failed login as \"{}\"",
            crate::text::excerpt(login.username.as_bytes(), crate::text::VALUE_CHARS)
        );
        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid username or password")
            .into_response();
    }
    let token = auth.sessions.issue(SystemTime::now());
    (
        StatusCode::CREATED,
        axum::Json(json!({"access_token": token})),
    )
        .into_response()
}

/// `GET /api/v2/monitor/health`: Airflow 3's shape of a health answer.
pub fn health(healthy: bool) -> Value {
    let status = if healthy { "healthy" } else { "unhealthy" };
    json!({
        "metadatabase": {"status": status},
        "scheduler": {"status": status, "latest_scheduler_heartbeat": null},
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": null,
    })
}

/// `v1`, a DAG in Airflow 2's shape, in Airflow 3's.
pub fn dag(mut v1: Value, max_active_runs: usize) -> Value {
    let dag_id = v1["dag_id"].clone();
    let cron = v1["timetable_description"].clone();
    extend(
        &mut v1,
        json!({
            "dag_display_name": dag_id,
            "is_stale": false,
            "is_backfillable": true,
            "has_import_errors": false,
            "has_task_concurrency_limits": false,
            "max_active_tasks": 16,
            "max_active_runs": max_active_runs,
            "max_consecutive_failed_dag_runs": 0,
            "timetable_summary": cron,
            "timetable_periodic": !cron.is_null(),
            "timetable_partitioned": false,
            "tags": [],
        }),
    );
    v1
}

/// `v1`, `run` in Airflow 2's DAGRun shape, in Airflow 3's.
pub fn dag_run(mut v1: Value, run: &RunRecord) -> Value {
    let triggered_by = match run.run_type {
        RunType::Manual => "rest_api",
        RunType::Scheduled => "timetable",
        RunType::Backfill => "cli",
    };
    let duration = match (run.start_date, run.end_date) {
        (Some(start), Some(end)) => json!((end - start).num_milliseconds() as f64 / 1000.0),
        _ => Value::Null,
    };
    let added = json!({
        "dag_display_name": run.dag_id,
        "dag_versions": [],
        "run_after": v1["queued_at"],
        "triggered_by": triggered_by,
        "duration": duration,
    });
    extend(&mut v1, added);
    v1
}

/// `v1`, `task` of `run` in Airflow 2's TaskInstance shape, in Airflow 3's.
pub fn task_instance(mut v1: Value, run: &RunRecord, task: &TaskRecord) -> Value {
    let added = json!({
        "id": instance_id(&run.run_id, &task.task.to_string()),
        "dag_display_name": run.dag_id,
        "task_display_name": task.task.to_string(),
        "logical_date": v1["execution_date"],
        "run_after": super::json::time(Some(run.created_at)),
        "map_index": -1,
        "pool": "default_pool",
        "pool_slots": 1,
        "executor_config": "{}",
        "operator": "shelfline",
    });
    extend(&mut v1, added);
    v1
}

/// A task's log as Airflow 3 gives it: one structured message per line.
pub fn log(lines: &[LogLine]) -> Value {
    let messages: Vec<Value> = lines
        .iter()
        .map(|line| json!({"event": line.line, "timestamp": super::json::time(Some(line.at))}))
        .collect();
    json!({"content": messages, "continuation_token": null})
}

/// A task instance's id (Airflow 3 gives each a UUID): derived from the
/// run and the task, so it is the same on every request.
fn instance_id(run_id: &str, task_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(run_id.as_bytes())
        .chain_update([0])
        .chain_update(task_id.as_bytes())
        .finalize();
    let mut bytes: [u8; 16] = digest[..16].try_into().unwrap_or_default();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Adds the fields of `added` (an object) to `value` (an object).
fn extend(value: &mut Value, added: Value) {
    if let (Value::Object(fields), Value::Object(added)) = (value, added) {
        fields.extend(added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_stable_uuids() {
        let id = instance_id("scheduled__2026-01-10", "publish");
        assert_eq!(id, instance_id("scheduled__2026-01-10", "publish"));
        assert_ne!(id, instance_id("scheduled__2026-01-10", "notify"));
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert_eq!(&id[14..15], "8");
    }
}
