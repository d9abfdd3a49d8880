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
