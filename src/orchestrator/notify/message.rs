//! What a notification says: a subject and a plain-text body for email, a
//! JSON object for a webhook, a line of text for a Slack-compatible one.

use std::time::Duration;

use chrono::NaiveDate;
use serde_json::json;

/// One message about one DAG run.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The DAG the run belongs to.
    pub dag_id: String,
    /// The run, e.g. `scheduled__2025-01-07`.
    pub run_id: String,
    /// The day of data the run processes.
    pub logical_date: NaiveDate,
    /// What happened.
    pub event: Event,
}

/// What happened to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The sensor gave up: these raw files (paths relative to the raw zone)
    /// were still missing.
    SensorTimeout {
        /// The raw zone's location, e.g. `file:///data/raw`.
        raw: String,
        /// The missing files, relative to `raw`.
        missing: Vec<String>,
        /// How long the sensor waited.
        waited: Duration,
    },
    /// A task failed for good (after its retries).
    Failure {
        /// The task that failed.
        task: String,
        /// Its last error.
        error: String,
        /// How many times it was tried.
        attempts: u32,
    },
    /// The run succeeded; figures are (name, value) pairs such as
    /// `("rows_written", "1234")`.
    Success {
        /// What the run did, in the order to show it.
        figures: Vec<(String, String)>,
    },
    /// The scheduled reconciliation found weeks whose lake figures differ
    /// from the source's.
    Drift {
        /// The first and last day compared (whole weeks around them).
        from: NaiveDate,
        to: NaiveDate,
        /// One line per week, with both figures.
        weeks: Vec<String>,
        /// Whether they were republished.
        repaired: bool,
    },
    /// The scheduled reconciliation could not compare.
    ReconcileFailure {
        /// The first and last day it was to compare.
        from: NaiveDate,
        to: NaiveDate,
        /// Why.
        error: String,
    },
}

impl Event {
    /// The event's name in the webhook JSON: `sensor_timeout`, `failure` or
    /// `success`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SensorTimeout { .. } => "sensor_timeout",
            Event::Failure { .. } => "failure",
            Event::Success { .. } => "success",
            Event::Drift { .. } => "drift",
            Event::ReconcileFailure { .. } => "reconcile_failure",
        }
    }
}

impl Notification {
    /// The email subject, which says what happened in one line.
    pub fn subject(&self) -> String {
        let (date, run) = (self.logical_date, &self.run_id);
        match &self.event {
            Event::SensorTimeout { .. } => {
                format!("[shelfline] raw files missing for {date} (run {run})")
            }
            Event::Failure { task, .. } => format!("[shelfline] run {run} failed at task {task}"),
            Event::Success { .. } => format!("[shelfline] run {run} succeeded"),
            Event::Drift {
                weeks, repaired, ..
            } => {
                let done = if *repaired {
                    "republished"
                } else {
                    "to repair"
                };
                let weeks = plural(weeks.len(), "week");
                format!("[shelfline] {weeks} of the lake drifted from the source, {done}")
            }
            Event::ReconcileFailure { from, to, .. } => {
                format!("[shelfline] the reconciliation of {from} to {to} failed")
            }
        }
    }

    /// The plain-text email body: what happened, the details, and what to do
    /// about it.
    pub fn body(&self) -> String {
        let (dag, run, date) = (&self.dag_id, &self.run_id, self.logical_date);
        let mut text = String::new();
        match &self.event {
            Event::SensorTimeout {
                raw,
                missing,
                waited,
            } => {
                let waited = human_duration(*waited);
                let files = plural(missing.len(), "file");
                text.push_str(&format!(
                    "The sensor of run {run} (DAG {dag}) stopped waiting\n\
                     for the raw files of {date} after {waited}.\n\
                     \n{files} still missing from the raw zone at {raw}:\n\n"
                ));
                for file in missing {
                    text.push_str(&format!("  - {file}\n"));
                }
                text.push_str(&format!(
                    "\nWhat to do: drop the missing files into the raw zone, or copy them\n\
                     from the source with\n\
                     \n    shelfline extract --date {date}\n\
                     \nthen run the DAG again with\n\
                     \n    shelfline runs retry {run}\n"
                ));
            }
            Event::Failure {
                task,
                error,
                attempts,
            } => {
                let tries = plural(*attempts as usize, "attempt");
                text.push_str(&format!(
                    "Run {run} (DAG {dag}, logical date {date})\n\
                     failed at task {task} after {tries}. The last error:\n\n"
                ));
                for line in error.lines() {
                    text.push_str(&format!("  {line}\n"));
                }
                text.push_str(&format!(
                    "\nWhat to do: fix the cause, then run it again with\n\
                     \n    shelfline runs retry {run}\n"
                ));
            }
            Event::Success { figures } => {
                text.push_str(&format!(
                    "Run {run} (DAG {dag}, logical date {date}) succeeded.\n"
                ));
                if !figures.is_empty() {
                    text.push('\n');
                    let width = figures.iter().map(|(name, _)| name.len()).max();
                    let width = width.unwrap_or(0) + 1;
                    for (name, value) in figures {
                        text.push_str(&format!("  {:<width$} {value}\n", format!("{name}:")));
                    }
                }
            }
            Event::Drift {
                from,
                to,
                weeks,
                repaired,
            } => {
                text.push_str(&format!(
                    "The reconciliation of DAG {dag} compared the source and the lake\n\
                     from {from} to {to}. These weeks differ:\n\n"
                ));
                for week in weeks {
                    text.push_str(&format!("  - {week}\n"));
                }
                text.push_str(&match repaired {
                    true => "\nThey were extracted again and republished.\n".to_string(),
                    false => format!(
                        "\nWhat to do: republish them from the source with\n\
                         \n    shelfline reconcile --from {from} --to {to} --repair\n"
                    ),
                });
            }
            Event::ReconcileFailure { from, to, error } => {
                text.push_str(&format!(
                    "The reconciliation of DAG {dag} could not compare the source and\n\
                     the lake from {from} to {to}. The error:\n\n"
                ));
                for line in error.lines() {
                    text.push_str(&format!("  {line}\n"));
                }
                text.push_str(&format!(
                    "\nWhat to do: fix the cause, then run it by hand with\n\
                     \n    shelfline reconcile --from {from} --to {to}\n"
                ));
            }
        }
        text
    }

    /// A Slack-compatible incoming-webhook payload: `{"text": …}`, the
    /// subject in bold and the email's body under it, with `&`, `<` and `>`
    /// escaped as Slack asks.
    pub fn to_slack(&self) -> serde_json::Value {
        let escape = |text: &str| {
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let text = format!("*{}*\n{}", escape(&self.subject()), escape(&self.body()));
        json!({ "text": text })
    }

    /// The webhook payload: `dag_id`, `dag_run_id`, `logical_date`
    /// (`YYYY-MM-DD`), `event` ([`Event::kind`]) and `subject`, plus the
    /// event's fields: `raw`, `missing` and `waited_secs`; `task`, `error` and
    /// `attempts`; or `figures` as an object of name to value.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = json!({
            "dag_id": self.dag_id,
            "dag_run_id": self.run_id,
            "logical_date": self.logical_date.to_string(),
            "event": self.event.kind(),
            "subject": self.subject(),
        });
        let fields = match &self.event {
            Event::SensorTimeout {
                raw,
                missing,
                waited,
            } => json!({ "raw": raw, "missing": missing, "waited_secs": waited.as_secs() }),
            Event::Failure {
                task,
                error,
                attempts,
            } => json!({ "task": task, "error": error, "attempts": attempts }),
            Event::Success { figures } => {
                let figures: serde_json::Map<String, serde_json::Value> = figures
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone().into()))
                    .collect();
                json!({ "figures": figures })
            }
            Event::Drift {
                from,
                to,
                weeks,
                repaired,
            } => json!({
                "from": from.to_string(), "to": to.to_string(), "weeks": weeks, "repaired": repaired
            }),
            Event::ReconcileFailure { from, to, error } => json!({
                "from": from.to_string(), "to": to.to_string(), "error": error
            }),
        };
        if let (Some(all), serde_json::Value::Object(fields)) = (value.as_object_mut(), fields) {
            all.extend(fields);
        }
        value
    }
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// `2h 5m`, `45m`, `1m 30s`, `0s`: whole seconds, largest units first.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let parts: Vec<String> = [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

/// Notifications the tests of every channel send.
#[cfg(test)]
pub(super) mod examples {
    use super::*;

    pub fn notification(event: Event) -> Notification {
        Notification {
            dag_id: "daily".to_string(),
            run_id: "scheduled__2025-01-07".to_string(),
            logical_date: NaiveDate::from_ymd_opt(2025, 1, 7).unwrap(),
            event,
        }
    }

    pub fn sensor_timeout() -> Event {
        Event::SensorTimeout {
            raw: "file:///data/raw".to_string(),
            missing: vec![
                "sales/sales_2025-01-07.csv.gz".to_string(),
                "inventory/inventory_2025-01-07.csv.gz".to_string(),
            ],
            waited: Duration::from_secs(6 * 3600 + 30 * 60),
        }
    }

    pub fn failure() -> Event {
        Event::Failure {
            task: "transform".to_string(),
            error: "quality rule failed\n3 rows with a negative price".to_string(),
            attempts: 3,
        }
    }

    pub fn success() -> Event {
        Event::Success {
            figures: vec![
                ("rows_written".to_string(), "1234".to_string()),
                ("weeks".to_string(), "2".to_string()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::examples::*;
    use super::*;

    #[test]
    fn sensor_timeout_lists_every_missing_file_and_what_to_do() {
        let n = notification(sensor_timeout());
        assert_eq!(n.event.kind(), "sensor_timeout");
        assert_eq!(
            n.subject(),
            "[shelfline] raw files missing for 2025-01-07 (run scheduled__2025-01-07)"
        );
        let body = n.body();
        assert!(
            body.contains("\n  - sales/sales_2025-01-07.csv.gz\n"),
            "{body}"
        );
        assert!(
            body.contains("\n  - inventory/inventory_2025-01-07.csv.gz\n"),
            "{body}"
        );
        assert!(
            body.contains("2 files still missing from the raw zone at file:///data/raw"),
            "{body}"
        );
        assert!(body.contains("after 6h 30m."), "{body}");
        assert!(
            body.contains("shelfline extract --date 2025-01-07"),
            "{body}"
        );
        assert!(
            body.contains("shelfline runs retry scheduled__2025-01-07"),
            "{body}"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "sensor_timeout",
                "subject": n.subject(),
                "raw": "file:///data/raw",
                "missing": ["sales/sales_2025-01-07.csv.gz", "inventory/inventory_2025-01-07.csv.gz"],
                "waited_secs": 23400,
            })
        );
    }

    #[test]
    fn failure_names_the_task_and_quotes_the_error() {
        let n = notification(failure());
        assert_eq!(n.event.kind(), "failure");
        assert_eq!(
            n.subject(),
            "[shelfline] run scheduled__2025-01-07 failed at task transform"
        );
        let body = n.body();
        assert!(
            body.contains("failed at task transform after 3 attempts"),
            "{body}"
        );
        assert!(
            body.contains("\n  quality rule failed\n  3 rows with a negative price\n"),
            "{body}"
        );
        assert!(
            body.contains("shelfline runs retry scheduled__2025-01-07"),
            "{body}"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "failure",
                "subject": n.subject(),
                "task": "transform",
                "error": "quality rule failed\n3 rows with a negative price",
                "attempts": 3,
            })
        );
    }

    #[test]
    fn success_lists_the_figures() {
        let n = notification(success());
        assert_eq!(n.event.kind(), "success");
        assert_eq!(
            n.subject(),
            "[shelfline] run scheduled__2025-01-07 succeeded"
        );
        assert_eq!(
            n.body(),
            "Run scheduled__2025-01-07 (DAG daily, logical date 2025-01-07) succeeded.\n\
             \n  rows_written: 1234\n  weeks:        2\n"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "success",
                "subject": n.subject(),
                "figures": {"rows_written": "1234", "weeks": "2"},
            })
        );
    }

    #[test]
    fn drift_lists_the_weeks_and_how_to_repair_them() {
        let week = "2024 week 51 (2024-12-15 to 2024-12-21): source 10 rows, sales_qty 4.00, sales_amt 120.00, 70 snapshots; lake 10 rows, sales_qty 4.00, sales_amt 20.00, 70 snapshots";
        let event = |repaired| Event::Drift {
            from: NaiveDate::from_ymd_opt(2024, 12, 3).unwrap(),
            to: NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(),
            weeks: vec![week.to_string()],
            repaired,
        };
        let n = notification(event(false));
        assert_eq!(n.event.kind(), "drift");
        assert_eq!(
            n.subject(),
            "[shelfline] 1 week of the lake drifted from the source, to repair"
        );
        let body = n.body();
        assert!(body.contains(&format!("\n  - {week}\n")), "{body}");
        assert!(
            body.contains("shelfline reconcile --from 2024-12-03 --to 2025-01-06 --repair"),
            "{body}"
        );
        assert_eq!(n.to_json()["weeks"], json!([week]));
        assert_eq!(n.to_json()["repaired"], json!(false));
        let repaired = notification(event(true));
        assert!(repaired.subject().ends_with("republished"));
        assert!(!repaired.body().contains("--repair"));
        let failed = notification(Event::ReconcileFailure {
            from: NaiveDate::from_ymd_opt(2024, 12, 3).unwrap(),
            to: NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(),
            error: "source: connection refused".to_string(),
        });
        assert_eq!(failed.event.kind(), "reconcile_failure");
        let body = failed.body();
        assert!(body.contains("\n  source: connection refused\n"), "{body}");
        assert!(
            body.contains("shelfline reconcile --from 2024-12-03 --to 2025-01-06\n"),
            "{body}"
        );
        assert!(!body.contains("runs retry"), "{body}");
    }

    #[test]
    fn slack_gets_the_outcome_as_text_escaped() {
        let slack = notification(failure()).to_slack();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("*[shelfline] run scheduled__2025-01-07 failed at task transform*\n"),
            "{text}"
        );
        assert!(text.contains("3 rows with a negative price"), "{text}");
        assert_eq!(slack.as_object().unwrap().len(), 1);
        let mut tagged = notification(failure());
        tagged.run_id = "<!channel> & co".to_string();
        let text = tagged.to_slack()["text"].as_str().unwrap().to_string();
        assert!(text.contains("&lt;!channel&gt; &amp; co") && !text.contains("<!channel>"));
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_millis(90_500)), "1m 30s");
        assert_eq!(human_duration(Duration::from_secs(2 * 3600 + 5)), "2h 5s");
        assert_eq!(human_duration(Duration::from_secs(45 * 60)), "45m");
    }
}
