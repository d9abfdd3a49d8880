//! The API's JSON: requests parsed field by field (so an error names the
//! field) and runs and task instances in Airflow's shapes.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::orchestrator::dag::{RunState, TaskId};
use crate::orchestrator::history::{RunQuery, RunRecord, RunType, TaskRecord};
use crate::orchestrator::{ClearSelection, Cleared, Trigger};
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

/// The DAG in Airflow's DAG shape: its id, whether it is paused, and its
/// schedule (the extraction's cron, else the processing's).
pub fn dag(dag_id: &str, is_paused: bool, extract_schedule: &str, process_schedule: &str) -> Value {
    let cron = [extract_schedule, process_schedule]
        .into_iter()
        .map(str::trim)
        .find(|cron| !cron.is_empty());
    json!({
        "dag_id": dag_id,
        "description": "extract, check, transform and publish a day of retail sales and inventory",
        "is_paused": is_paused,
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

/// A value from a request, as an error shows it.
pub(super) fn shown(text: &str) -> String {
    excerpt(text.as_bytes(), VALUE_CHARS)
}

/// Parses the body of `PATCH dags/{id}`: `{"is_paused": true | false}`.
pub fn pause_change(body: &[u8]) -> Result<bool, ApiError> {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    parsed
        .get("is_paused")
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            ApiError::field(
                "is_paused",
                "the body must be {\"is_paused\": true} or {\"is_paused\": false}",
            )
        })
}

/// The body of `POST clearTaskInstances` as Airflow's clients send it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearBody {
    #[serde(default = "yes")]
    dry_run: bool,
    dag_run_id: Option<String>,
    task_ids: Option<Vec<String>>,
    start_date: Option<String>,
    end_date: Option<String>,
    #[serde(default = "yes")]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
    // No sub-DAGs, and a cleared run is always queued again: accepted,
    // with nothing more to do.
    #[serde(default, rename = "include_subdags")]
    _include_subdags: bool,
    #[serde(default, rename = "include_parentdag")]
    _include_parentdag: bool,
    #[serde(default, rename = "reset_dag_runs")]
    _reset_dag_runs: bool,
    // Airflow 3's: only ended runs are cleared, so no running task is
    // touched; there are no DAG versions; notes are not kept.
    #[serde(default, rename = "prevent_running_task")]
    _prevent_running_task: bool,
    #[serde(default, rename = "run_on_latest_version")]
    _run_on_latest_version: Option<bool>,
    #[serde(default, rename = "note")]
    _note: Option<String>,
}

fn yes() -> bool {
    true
}

/// Parses the body of `POST clearTaskInstances`: whether it is a dry run,
/// and what to clear. Airflow's defaults hold (`dry_run` and
/// `only_failed` true).
pub fn clear_request(body: &[u8]) -> Result<(bool, ClearSelection), ApiError> {
    let body: ClearBody = serde_json::from_slice(body).map_err(|e| {
        let reason = excerpt(e.to_string().as_bytes(), 300);
        ApiError::field(
            "body",
            format!("the body is not a clearTaskInstances request: {reason}"),
        )
    })?;
    for (set, field) in [
        (body.only_running, "only_running"),
        (body.include_future, "include_future"),
        (body.include_past, "include_past"),
    ] {
        if set {
            return Err(ApiError::field(
                field,
                format!(
                    "{field} is not supported: only ended runs are cleared; name them by dag_run_id or start_date and end_date"
                ),
            ));
        }
    }
    let date = |field: &str, text: Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        text.map(|text| {
            parse_date(&text).and_then(|(date, _)| date).ok_or_else(|| {
                ApiError::field(
                    field,
                    format!(
                        "{field} \"{}\" is not a date or an ISO 8601 time",
                        shown(&text)
                    ),
                )
            })
        })
        .transpose()
    };
    let tasks = body
        .task_ids
        .map(|ids| {
            ids.iter()
                .map(|id| {
                    id.parse::<TaskId>()
                        .map_err(|e| ApiError::field("task_ids", e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if !body.dry_run
        && body.dag_run_id.is_none()
        && body.start_date.is_none()
        && body.end_date.is_none()
    {
        return Err(ApiError::field(
            "dag_run_id",
            "name the runs to clear: dag_run_id, or start_date and/or end_date (a dry run may list them all)",
        ));
    }
    let selection = ClearSelection {
        run_id: body.dag_run_id,
        from: date("start_date", body.start_date)?,
        to: date("end_date", body.end_date)?,
        tasks,
        only_failed: body.only_failed,
        upstream: body.include_upstream,
        downstream: body.include_downstream,
    };
    Ok((body.dry_run, selection))
}

/// What a clear queues again, as Airflow's TaskInstanceReferenceCollection.
pub fn cleared(plan: &[Cleared], tz: Tz) -> Value {
    let references: Vec<Value> = plan
        .iter()
        .flat_map(|cleared| {
            let logical = logical_dates(&cleared.run, tz).0;
            cleared.tasks.iter().map(move |task| {
                json!({
                    "task_id": task.to_string(),
                    "dag_id": cleared.run.dag_id,
                    "dag_run_id": cleared.run.run_id,
                    "execution_date": logical,
                })
            })
        })
        .collect();
    json!({"task_instances": references})
}

/// Parses the body of `POST dagRuns`.
pub fn trigger(body: &[u8]) -> Result<Trigger, ApiError> {
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
    let (logical_date, logical_time) = match fields
        .get("logical_date")
        .or(fields.get("execution_date"))
    {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(text)) => parse_date(text).ok_or_else(|| {
            ApiError::field(
                "logical_date",
                format!(
                    "logical_date \"{}\" is not a date (2025-01-07) or an ISO 8601 time (2025-01-07T00:00:00+00:00)",
                    excerpt(text.as_bytes(), VALUE_CHARS)
                ),
            )
        })?,
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
        logical_time,
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

/// A date (`2025-01-07`), or an ISO 8601 time with its offset, which gives
/// the date as written (the sender's day, whatever the schedules' time
/// zone) and is kept to be echoed: the same instant with the same offset,
/// written as Airflow writes it (`+00:00` for `Z`, to the nanosecond at
/// most).
fn parse_date(text: &str) -> Option<(Option<NaiveDate>, Option<String>)> {
    if let Ok(date) = text.parse::<NaiveDate>() {
        return Some((Some(date), None));
    }
    let time = DateTime::parse_from_rfc3339(text).ok()?;
    let sent = time.to_rfc3339_opts(SecondsFormat::AutoSi, false);
    Some((Some(time.date_naive()), Some(sent)))
}

pub(super) fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(SecondsFormat::Secs, false))
    })
}

/// Midnight of `date` in `tz`, with `tz`'s offset, so that it names
/// `date` as written (as a logical date sent is read).
fn midnight(date: NaiveDate, tz: Tz) -> Value {
    date.and_hms_opt(0, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map_or(Value::Null, |t| {
            json!(t.fixed_offset().to_rfc3339_opts(SecondsFormat::Secs, false))
        })
}

/// The start and end of `run`'s data interval: its logical date as the
/// trigger sent it and a day later, else midnights in the schedules' time
/// zone.
fn logical_dates(run: &RunRecord, tz: Tz) -> (Value, Value) {
    let sent = run
        .logical_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    match sent {
        Some(sent) => (
            json!(run.logical_time),
            json!((sent + chrono::Days::new(1)).to_rfc3339()),
        ),
        None => (
            midnight(run.logical_date, tz),
            run.logical_date
                .succ_opt()
                .map_or(Value::Null, |d| midnight(d, tz)),
        ),
    }
}

/// A run in the shape of Airflow's DAGRun.
pub fn dag_run(run: &RunRecord, tz: Tz) -> Value {
    let (logical, interval_end) = logical_dates(run, tz);
    json!({
        "dag_run_id": run.run_id,
        "dag_id": run.dag_id,
        "logical_date": logical,
        "execution_date": logical,
        "data_interval_start": logical,
        "data_interval_end": interval_end,
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
        "execution_date": logical_dates(run, tz).0,
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

    #[test]
    fn a_logical_time_is_echoed_with_its_offset() {
        let echoed = |sent: &str| parse_date(sent).and_then(|(_, time)| time);
        assert_eq!(
            echoed("2025-01-07T00:00:00+05:00").as_deref(),
            Some("2025-01-07T00:00:00+05:00")
        );
        assert_eq!(
            echoed("2025-01-07T00:00:00Z").as_deref(),
            Some("2025-01-07T00:00:00+00:00")
        );
        assert_eq!(
            echoed("2025-01-07T23:30:00.5-08:00").as_deref(),
            Some("2025-01-07T23:30:00.500-08:00")
        );
        assert_eq!(
            parse_date("2025-01-07"),
            Some((Some("2025-01-07".parse().unwrap()), None))
        );
        assert_eq!(parse_date("yesterday"), None);
    }

    fn field_of(body: &str) -> String {
        let error = trigger(body.as_bytes()).unwrap_err();
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
        let trigger = trigger(body.as_bytes()).unwrap();
        assert_eq!(trigger.run_id.as_deref(), Some("lambda-2025-01-07"));
        assert_eq!(trigger.logical_date, "2025-01-07".parse().ok());
        assert_eq!(trigger.conf["files"][0], "sales/sales_2025-01-07.csv.gz");
        let empty = super::trigger(b"").unwrap();
        assert!(empty.run_id.is_none() && empty.logical_date.is_none());
    }

    #[test]
    fn a_time_gives_the_senders_date_and_is_echoed_as_sent() {
        let sent = "2025-01-07T00:00:00+05:00";
        let body = format!(r#"{{"logical_date": "{sent}"}}"#);
        let trigger = trigger(body.as_bytes()).unwrap();
        assert_eq!(trigger.logical_date, "2025-01-07".parse().ok());
        assert_eq!(trigger.logical_time.as_deref(), Some(sent));
        let run = RunRecord {
            id: 1,
            run_id: "r".to_string(),
            dag_id: "d".to_string(),
            logical_date: "2025-01-07".parse().unwrap(),
            logical_time: trigger.logical_time,
            run_type: RunType::Manual,
            state: RunState::Queued,
            conf: json!({}),
            extract: false,
            process_after: None,
            created_at: Utc::now(),
            start_date: None,
            end_date: None,
        };
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let shown = dag_run(&run, paris);
        assert_eq!(shown["logical_date"], sent);
        assert_eq!(shown["data_interval_end"], "2025-01-08T00:00:00+05:00");
        let by_date = RunRecord {
            logical_time: None,
            ..run
        };
        assert_eq!(
            dag_run(&by_date, paris)["logical_date"],
            "2025-01-07T00:00:00+01:00"
        );
    }

    #[test]
    fn clear_requests_keep_airflows_defaults_and_name_bad_fields() {
        let (dry_run, selection) =
            clear_request(br#"{"dag_run_id": "r", "task_ids": ["transform"]}"#).unwrap();
        assert!(dry_run && selection.only_failed);
        assert_eq!(selection.tasks, Some(vec![TaskId::Transform]));
        let (dry_run, selection) = clear_request(
            br#"{"dry_run": false, "only_failed": false, "start_date": "2025-01-01T00:00:00Z", "end_date": "2025-01-31", "reset_dag_runs": true}"#,
        )
        .unwrap();
        assert!(!dry_run && !selection.only_failed);
        assert_eq!(selection.from, "2025-01-01".parse().ok());
        assert_eq!(selection.to, "2025-01-31".parse().ok());
        for (bad, field) in [
            (r#"{"task_ids": ["nope"]}"#, "task_ids"),
            (r#"{"include_future": true}"#, "include_future"),
            (r#"{"start_date": "soon"}"#, "start_date"),
            (r#"{"colour": 1}"#, "body"),
        ] {
            let error = clear_request(bad.as_bytes()).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{bad}");
        }
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
