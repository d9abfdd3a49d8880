//! The API's JSON: requests parsed field by field (so an error names the
//! field) and runs and task instances in Airflow's shapes.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::orchestrator::Trigger;
use crate::orchestrator::dag::RunState;
use crate::orchestrator::history::{RunQuery, RunRecord, RunType, TaskRecord};
use crate::text::{VALUE_CHARS, excerpt};

/// Fields of Airflow's DAGRun that a trigger may send; others are refused.
const TRIGGER_FIELDS: [&str; 7] = [
    "dag_run_id",
    "logical_date",
    "execution_date",
    "conf",
    "note",
    "data_interval_start",
    "data_interval_end",
];

/// Parses the body of `PATCH dagRuns/{id}`: `{"state": "failed" |
/// "success" | "queued"}`.
pub fn run_state_change(body: &[u8]) -> Result<RunState, ApiError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::field(
            "body",
            "the body is not a JSON object like {\"state\": \"failed\"}",
        )
    })?;
    match parsed.get("state").and_then(Value::as_str) {
        Some("failed") => Ok(RunState::Failed),
        Some("success") => Ok(RunState::Success),
        Some("queued") => Ok(RunState::Queued),
        _ => Err(ApiError::field(
            "state",
            "state must be \"failed\", \"success\" or \"queued\"",
        )),
    }
}

/// The DAG in Airflow's DAG shape: its id, never paused, active, and its
/// schedule (the extraction's cron, else the processing's).
pub fn dag(dag_id: &str, extract_schedule: &str, process_schedule: &str) -> Value {
    let cron = [extract_schedule, process_schedule]
        .into_iter()
        .map(str::trim)
        .find(|cron| !cron.is_empty());
    json!({
        "dag_id": dag_id,
        "description": "extract, check, transform and publish a day of retail sales and inventory",
        "is_paused": false,
        "is_active": true,
        "is_subdag": false,
        "fileloc": "",
        "file_token": "",
        "owners": ["shelfline"],
        "tags": [],
        "root_dag_id": null,
        "schedule_interval": cron.map(|value| json!({"__type": "CronExpression", "value": value})),
        "timetable_description": cron,
    })
}

/// Parses the query of `GET dagRuns` as Airflow's clients send it:
/// `limit`, `offset`, `state` (repeated for several states, or separated by
/// commas) and `order_by` (a leading `-` reverses). Airflow's default order
/// is the order runs were added in.
pub fn run_query(query: Option<&str>) -> Result<RunQuery, ApiError> {
    let mut parsed = RunQuery {
        descending: false,
        ..RunQuery::newest(Vec::new(), 100)
    };
    let pairs = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    for (key, value) in pairs {
        let number = || {
            value.parse::<u32>().map_err(|_| {
                ApiError::field(key.to_string(), format!("{key} must be a whole number ≥ 0"))
            })
        };
        match key.as_ref() {
            "limit" => parsed.limit = number()?.min(1000),
            "offset" => parsed.offset = number()?,
            "state" => {
                for state in value.split(',').filter(|s| !s.is_empty()) {
                    let state = state
                        .parse()
                        .map_err(|e: String| ApiError::field("state", e))?;
                    parsed.states.push(state);
                }
            }
            "order_by" => {
                let (descending, name) = match value.strip_prefix('-') {
                    Some(name) => (true, name),
                    None => (false, value.as_ref()),
                };
                parsed.order = name.parse().map_err(|e: String| {
                    ApiError::field("order_by", format!("order_by \"{}\": {e}", shown(name)))
                })?;
                parsed.descending = descending;
            }
            other => {
                return Err(ApiError::field(
                    shown(other),
                    format!(
                        "unknown query parameter \"{}\" (known: limit, offset, state, order_by)",
                        shown(other)
                    ),
                ));
            }
        }
    }
    Ok(parsed)
}

fn shown(text: &str) -> String {
    excerpt(text.as_bytes(), VALUE_CHARS)
}

/// Parses the body of `POST dagRuns`.
pub fn trigger(body: &[u8], tz: Tz) -> Result<Trigger, ApiError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            let reason = excerpt(e.to_string().as_bytes(), 200);
            ApiError::field("body", format!("the body is not valid JSON: {reason}"))
        })?
    };
    let Value::Object(fields) = body else {
        return Err(ApiError::field("body", "the body must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !TRIGGER_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::field(
            "body",
            format!(
                "unknown field \"{}\" (fields: {})",
                excerpt(unknown.as_bytes(), VALUE_CHARS),
                TRIGGER_FIELDS.join(", ")
            ),
        ));
    }
    let run_id = match fields.get("dag_run_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_run_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(ApiError::field(
                "dag_run_id",
                "dag_run_id must be a non-empty string of letters, digits and - _ . : + (at most 250)",
            ));
        }
    };
    let logical_date = match fields.get("logical_date").or(fields.get("execution_date")) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_date(text, tz).ok_or_else(|| {
            ApiError::field(
                "logical_date",
                format!(
                    "logical_date \"{}\" is not a date (2025-01-07) or an ISO 8601 time (2025-01-07T00:00:00+00:00)",
                    excerpt(text.as_bytes(), VALUE_CHARS)
                ),
            )
        })?),
        Some(_) => return Err(ApiError::field("logical_date", "logical_date must be a string")),
    };
    let conf = match fields.get("conf") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(conf)) => Value::Object(conf.clone()),
        Some(_) => return Err(ApiError::field("conf", "conf must be a JSON object")),
    };
    Ok(Trigger {
        run_id,
        logical_date,
        conf,
    })
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c))
}

/// A date, or the date (in `tz`) of an ISO 8601 time.
fn parse_date(text: &str, tz: Tz) -> Option<NaiveDate> {
    if let Ok(date) = text.parse::<NaiveDate>() {
        return Some(date);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&tz).date_naive())
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(SecondsFormat::Secs, false))
    })
}

/// Midnight of `date` in `tz`, as Airflow shows a logical date.
fn midnight(date: NaiveDate, tz: Tz) -> Value {
    let local = date
        .and_hms_opt(0, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest());
    time(local.map(|t| t.with_timezone(&Utc)))
}

/// A run in the shape of Airflow's DAGRun.
pub fn dag_run(run: &RunRecord, tz: Tz) -> Value {
    let logical = midnight(run.logical_date, tz);
    json!({
        "dag_run_id": run.run_id,
        "dag_id": run.dag_id,
        "logical_date": logical,
        "execution_date": logical,
        "data_interval_start": logical,
        "data_interval_end": run.logical_date.succ_opt().map_or(Value::Null, |d| midnight(d, tz)),
        "start_date": time(run.start_date),
        "end_date": time(run.end_date),
        "state": run.state.as_str(),
        "run_type": run.run_type.as_str(),
        "external_trigger": run.run_type == RunType::Manual,
        "conf": run.conf,
        "note": Value::Null,
        "queued_at": time(Some(run.created_at)),
        "extract": run.extract,
        "process_after": time(run.process_after),
    })
}

/// A task instance in the shape of Airflow's TaskInstance, with
/// shelfline's error and figures.
pub fn task_instance(run: &RunRecord, task: &TaskRecord, tz: Tz) -> Value {
    let duration = match (task.start_date, task.end_date) {
        (Some(start), Some(end)) => json!((end - start).num_milliseconds() as f64 / 1000.0),
        _ => Value::Null,
    };
    json!({
        "task_id": task.task.to_string(),
        "dag_id": run.dag_id,
        "dag_run_id": run.run_id,
        "execution_date": midnight(run.logical_date, tz),
        "start_date": time(task.start_date),
        "end_date": time(task.end_date),
        "duration": duration,
        "state": task.state.as_str(),
        "try_number": task.try_number,
        "max_tries": task.max_tries,
        "next_try_at": time(task.next_try_at),
        "error": task.error,
        "figures": task.figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::history::RunOrder;

    fn field_of(body: &str) -> String {
        let error = trigger(body.as_bytes(), chrono_tz::UTC).unwrap_err();
        error.field.unwrap_or_default()
    }

    #[test]
    fn run_lists_take_airflows_filters_and_orders() {
        let query = run_query(Some(
            "state=success&state=failed,queued&order_by=-execution_date&limit=5000",
        ))
        .unwrap();
        assert_eq!(
            query.states,
            [RunState::Success, RunState::Failed, RunState::Queued]
        );
        assert_eq!(
            (query.order, query.descending, query.limit),
            (RunOrder::LogicalDate, true, 1000)
        );
        let default = run_query(None).unwrap();
        assert_eq!(
            (default.order, default.descending, default.limit),
            (RunOrder::Id, false, 100)
        );
        for (bad, field) in [
            ("order_by=conf", "order_by"),
            ("state=done", "state"),
            ("limit=-1", "limit"),
            ("x=1", "x"),
        ] {
            assert_eq!(
                run_query(Some(bad)).unwrap_err().field.as_deref(),
                Some(field),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_airflow_trigger_body_parses() {
        let body = r#"{"dag_run_id": "lambda-2025-01-07", "logical_date": "2025-01-07T00:00:00+00:00",
                       "conf": {"files": ["sales/sales_2025-01-07.csv.gz"]}}"#;
        let trigger = trigger(body.as_bytes(), chrono_tz::UTC).unwrap();
        assert_eq!(trigger.run_id.as_deref(), Some("lambda-2025-01-07"));
        assert_eq!(trigger.logical_date, "2025-01-07".parse().ok());
        assert_eq!(trigger.conf["files"][0], "sales/sales_2025-01-07.csv.gz");
        let empty = super::trigger(b"", chrono_tz::UTC).unwrap();
        assert!(empty.run_id.is_none() && empty.logical_date.is_none());
    }

    #[test]
    fn a_time_is_read_in_the_schedules_time_zone() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let body = r#"{"logical_date": "2025-01-06T23:30:00Z"}"#;
        let trigger = trigger(body.as_bytes(), tz).unwrap();
        assert_eq!(trigger.logical_date, "2025-01-07".parse().ok());
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(field_of(r#"{"logical_date": "yesterday"}"#), "logical_date");
        assert_eq!(field_of(r#"{"logical_date": 20250107}"#), "logical_date");
        assert_eq!(field_of(r#"{"dag_run_id": ""}"#), "dag_run_id");
        assert_eq!(field_of(r#"{"dag_run_id": "a b"}"#), "dag_run_id");
        assert_eq!(field_of(r#"{"conf": [1]}"#), "conf");
        assert_eq!(field_of(r#"{"confs": {}}"#), "body");
        assert_eq!(field_of("[]"), "body");
        assert_eq!(field_of("{"), "body");
    }
}
