//! What a run's `conf` (free-form JSON, as Airflow's) may tell shelfline:
//! the raw files to process instead of the layout's, whether to extract,
//! and the guard overrides.
//!
//! Files are named in either of two shapes, which may be mixed:
//! - `"files": ["sales/sales_2026-01-10.csv.gz", …]`: each file's table is
//!   the one its name starts with;
//! - one key per table, as the original pipeline's trigger Lambda sends
//!   them: `"calendar": "s3://BUCKET/calendar_2024051.csv.gz"`. The Lambda
//!   cuts a fixed number of characters off each file name to make the key,
//!   so on days 10 to 31 the key keeps the date's underscore
//!   (`"calendar_"`): trailing underscores are ignored.

use serde_json::Value;

use super::OrchestratorError;
use crate::raw::NamedFiles;
use crate::schema::Table;

/// The keys of a run's `conf` that let its publication past a guard
/// (`--allow-shrink`, `--allow-older`).
pub const GUARD_OVERRIDES: [&str; 2] = ["allow_shrink", "allow_older"];

/// The key of a run's `conf` that sets its facts' lookback in days
/// (`null`: full snapshots), as `backfill --lookback-days` / `--full` do.
pub const LOOKBACK: &str = "lookback_days";

/// The facts' lookback `conf` sets for its run: `Some(Some(days))` for
/// `"lookback_days": days`, `Some(None)` for `null` (full snapshots),
/// `None` when it says nothing (the configuration's then).
pub fn lookback(conf: &Value) -> Result<Option<Option<u32>>, OrchestratorError> {
    let Some(value) = conf.get(LOOKBACK) else {
        return Ok(None);
    };
    let max = crate::config::MAX_LOOKBACK_DAYS;
    let days = match value {
        Value::Null => return Ok(Some(None)),
        Value::Number(n) => n.as_u64().and_then(|d| u32::try_from(d).ok()),
        _ => None,
    };
    match days.filter(|days| *days <= max) {
        Some(days) => Ok(Some(Some(days))),
        None => Err(OrchestratorError::Conf {
            field: LOOKBACK.to_string(),
            reason: format!(
                "must be a whole number of days from 0 to {max}, or null for full snapshots"
            ),
        }),
    }
}

/// The raw files `conf` names, by table.
pub fn named_files(conf: &Value) -> Result<NamedFiles, OrchestratorError> {
    let mut named = NamedFiles::default();
    let problem = |field: &str, reason: String| OrchestratorError::Conf {
        field: crate::text::excerpt(field.as_bytes(), crate::text::VALUE_CHARS),
        reason,
    };
    match &conf["files"] {
        Value::Null => {}
        Value::Array(files) => {
            for file in files {
                let file = file.as_str().ok_or_else(|| {
                    problem("files", "must be a list of raw file paths or URLs".into())
                })?;
                named
                    .insert_by_name(file)
                    .map_err(|e| problem("files", e.to_string()))?;
            }
        }
        _ => {
            return Err(problem(
                "files",
                "must be a list of raw file paths or URLs".into(),
            ));
        }
    }
    let Some(keys) = conf.as_object() else {
        return Ok(named);
    };
    for (key, value) in keys {
        let Some(table) = table_key(key) else {
            continue;
        };
        let file = value
            .as_str()
            .ok_or_else(|| problem(key, format!("must be the URL of the {table} file")))?;
        named
            .insert(table, file)
            .map_err(|e| problem(key, e.to_string()))?;
    }
    Ok(named)
}

/// The table a `conf` key names: `calendar`, or `calendar_` as the trigger
/// Lambda sends it on days 10 to 31.
fn table_key(key: &str) -> Option<Table> {
    let name = key.trim_end_matches('_');
    Table::ALL.into_iter().find(|table| table.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lookback_is_a_number_of_days_or_null() {
        assert_eq!(lookback(&json!({})).unwrap(), None);
        assert_eq!(
            lookback(&json!({"lookback_days": null})).unwrap(),
            Some(None)
        );
        assert_eq!(
            lookback(&json!({"lookback_days": 7})).unwrap(),
            Some(Some(7))
        );
        for bad in [json!(-1), json!(1.5), json!("7"), json!(100_000)] {
            let error = lookback(&json!({ "lookback_days": bad })).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("whole number of days from 0 to 3660"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_lambdas_keys_and_the_files_list_name_tables() {
        let conf = json!({
            "calendar_": "s3://b/calendar_20240515.csv.gz",
            "sales": "s3://b/sales_20240515.csv.gz",
            "files": ["inventory/inventory_2024-05-15.parquet"],
            "extract": false,
        });
        let named = named_files(&conf).unwrap();
        assert_eq!(
            named.get(Table::Calendar),
            Some("s3://b/calendar_20240515.csv.gz")
        );
        assert_eq!(
            named.get(Table::Sales),
            Some("s3://b/sales_20240515.csv.gz")
        );
        assert_eq!(
            named.get(Table::Inventory),
            Some("inventory/inventory_2024-05-15.parquet")
        );
        assert_eq!(named.get(Table::Store), None);
    }

    #[test]
    fn a_bad_name_is_refused_naming_its_key() {
        for (conf, field, reason) in [
            (
                json!({"store": 3}),
                "store",
                "must be the URL of the store file",
            ),
            (json!({"files": "x"}), "files", "must be a list"),
            (
                json!({"product_": "s3://b/p.txt"}),
                "product_",
                "not a raw file",
            ),
            (
                json!({"sales": "s3://b/sales_1.csv.gz", "files": ["sales/sales_2.csv.gz"]}),
                "sales",
                "named twice",
            ),
        ] {
            let Err(OrchestratorError::Conf {
                field: found,
                reason: why,
            }) = named_files(&conf)
            else {
                panic!("{conf} was accepted");
            };
            assert_eq!(found, field, "{conf}");
            assert!(why.contains(reason), "{conf}: {why}");
        }
    }
}
