//! The manifest of a date's raw set (contract section 2), written last by
//! the extractor: for each table its file, rows, bytes, sha256 and window.

use object_store::ObjectStoreExt as _;
use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use datafusion::arrow::datatypes::DataType;

use super::csv::show_days;
use super::facts::{Key, KeyOrder};
use super::{RawError, RawFile, manifest_path};
use crate::schema::Table;
use crate::storage::Location;
use crate::text::{VALUE_CHARS, excerpt};

/// The largest manifest read: five entries take about 1 KiB.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The longest file path an entry may name.
const MAX_PATH_BYTES: usize = 1024;
/// Characters of a parse error shown.
const REASON_CHARS: usize = 300;

/// `<raw>/_manifests/<D>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub date: NaiveDate,
    pub tables: BTreeMap<String, ManifestEntry>,
}

/// What the extractor wrote for one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Path relative to the raw root.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub window: Window,
    /// The columns the file's rows are sorted by: [`Table::daily_key`] when
    /// the extractor saw the rows come in that order, absent otherwise (a
    /// shelfline addition to the contract's manifest; readers that do not
    /// know it lose nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sorted_by: Vec<String>,
}

/// Which rows of a fact table a file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Window {
    /// A full snapshot, spelled `"full"`.
    Full(FullTag),
    /// The rows of a date window.
    Range { from: NaiveDate, to: NaiveDate },
}

/// The literal `"full"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FullTag {
    Full,
}

impl Window {
    /// A full snapshot.
    pub const FULL: Window = Window::Full(FullTag::Full);
}

impl Manifest {
    /// Reads the manifest of `date`, or `None` when there is none.
    pub async fn read(raw: &Location, date: NaiveDate) -> Result<Option<Manifest>, RawError> {
        let path = manifest_path(date);
        let invalid = |reason: String| RawError::Manifest {
            file: path.to_string(),
            reason,
        };
        let store_error = |source| RawError::Store {
            file: path.to_string(),
            source,
        };
        let result = match raw.store().get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        if result.meta.size > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "{} bytes; a manifest is at most {MAX_MANIFEST_BYTES}",
                result.meta.size
            )));
        }
        let bytes = result.bytes().await.map_err(store_error)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(excerpt(e.to_string().as_bytes(), REASON_CHARS)))?;
        if manifest.date != date {
            return Err(invalid(format!("it is for {}, not {date}", manifest.date)));
        }
        manifest.validate().map_err(invalid)?;
        Ok(Some(manifest))
    }

    /// Every entry's values must be what an extractor writes: a short
    /// file path, a sha256 as 64 hex digits, a window whose start is not
    /// after its end.
    fn validate(&self) -> Result<(), String> {
        for (table, entry) in &self.tables {
            let table = excerpt(table.as_bytes(), VALUE_CHARS);
            if entry.file.len() > MAX_PATH_BYTES || entry.file.chars().any(char::is_control) {
                return Err(format!(
                    "table {table}: file '{}' is not a raw file path",
                    excerpt(entry.file.as_bytes(), VALUE_CHARS)
                ));
            }
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "table {table}: sha256 '{}' is not 64 hexadecimal digits",
                    excerpt(entry.sha256.as_bytes(), VALUE_CHARS)
                ));
            }
            if let Window::Range { from, to } = entry.window {
                if from > to {
                    return Err(format!(
                        "table {table}: window from {from} is after its end {to}"
                    ));
                }
                if to != self.date {
                    return Err(format!(
                        "table {table}: window ends on {to}, not on the manifest's date {}; a window ends on its night's date (contract section 2)",
                        self.date
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes the manifest; called after every file is in place.
    pub async fn write(&self, raw: &Location) -> Result<(), RawError> {
        let path = manifest_path(self.date);
        let json = serde_json::to_vec_pretty(self).map_err(|e| RawError::Manifest {
            file: path.to_string(),
            reason: e.to_string(),
        })?;
        raw.store()
            .put(&path, Bytes::from(json).into())
            .await
            .map_err(|source| RawError::Store {
                file: path.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Fails when the manifest misses a table or names another file than
    /// the one found.
    pub fn check_files(&self, files: &BTreeMap<Table, RawFile>) -> Result<(), RawError> {
        let file = manifest_path(self.date).to_string();
        for (table, raw_file) in files {
            let entry = self
                .tables
                .get(table.name())
                .ok_or_else(|| RawError::Manifest {
                    file: file.clone(),
                    reason: format!("no entry for table {table}"),
                })?;
            if entry.file != raw_file.path.as_ref() {
                return Err(RawError::Manifest {
                    file: file.clone(),
                    reason: format!(
                        "table {table} is listed as {}, but the raw zone has {}",
                        entry.file, raw_file.path
                    ),
                });
            }
        }
        Ok(())
    }
}

impl ManifestEntry {
    /// Fails when `sha256`/`bytes` differ from this entry.
    pub fn check_digest(&self, file: &str, sha256: &str, bytes: u64) -> Result<(), RawError> {
        if self.sha256 != sha256 || self.bytes != bytes {
            return Err(RawError::Checksum {
                file: file.to_string(),
                found: sha256.to_string(),
                found_bytes: bytes,
                expected: self.sha256.clone(),
                expected_bytes: self.bytes,
            });
        }
        Ok(())
    }

    /// The `sorted_by` entry of a file whose rows came in `order`.
    pub fn sorted_by(order: &KeyOrder) -> Vec<String> {
        match order.holds() {
            true => order.columns().iter().map(|c| c.to_string()).collect(),
            false => Vec::new(),
        }
    }

    /// Whether the entry says the rows of this `table` file are in
    /// [`Table::daily_key`] order.
    pub fn in_daily_key_order(&self, table: Table) -> bool {
        !self.sorted_by.is_empty() && self.sorted_by == table.daily_key()
    }

    /// Fails when the entry says the rows of this `table` file are in
    /// daily-key order and the read found them otherwise.
    pub fn check_order(&self, table: Table, read: &KeyOrder) -> Result<(), RawError> {
        if !self.in_daily_key_order(table) || read.holds() {
            return Ok(());
        }
        let show = |key: Option<Key>| match key {
            Some(key) => show_key(table, read.columns(), key),
            None => "a NULL key".to_string(),
        };
        let (after, found) = read.first_break().unzip();
        Err(RawError::Unsorted {
            file: self.file.clone(),
            columns: read.columns().join(", "),
            found: show(found),
            after: show(after),
        })
    }

    /// Fails when the file held another number of rows than extracted.
    pub fn check_rows(&self, rows: u64) -> Result<(), RawError> {
        if self.rows != rows {
            return Err(RawError::RowCount {
                file: self.file.clone(),
                found: rows,
                expected: self.rows,
            });
        }
        Ok(())
    }
}

/// `(2025-01-02, 7, 31)`: a key's values, dates as dates.
fn show_key(table: Table, columns: &[&str], key: Key) -> String {
    let schema = table.arrow_schema();
    let values: Vec<String> = columns
        .iter()
        .zip(key)
        .map(
            |(name, value)| match schema.field_with_name(name).map(|f| f.data_type()) {
                Ok(DataType::Date32) => i32::try_from(value).map_or(value.to_string(), show_days),
                _ => value.to_string(),
            },
        )
        .collect();
    format!("({})", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest another producer wrote is checked before it is used: a
    /// window that ends before it starts, a checksum that is not one.
    #[tokio::test]
    async fn implausible_entries_are_refused_with_short_messages() {
        let raw = Location::parse("memory://manifest-checks", &Default::default()).unwrap();
        let date: NaiveDate = "2026-01-10".parse().unwrap();
        let write = |entry: serde_json::Value| {
            let manifest = serde_json::json!({"date": "2026-01-10", "tables": {"sales": entry}});
            let raw = raw.clone();
            async move {
                raw.store()
                    .put(
                        &manifest_path(date),
                        manifest.to_string().into_bytes().into(),
                    )
                    .await
                    .unwrap();
            }
        };
        let entry = |window: serde_json::Value, sha: &str| {
            serde_json::json!({"file": "sales/sales_2026-01-10.csv.gz", "rows": 1, "bytes": 1,
                "sha256": sha, "window": window})
        };
        let good = "ab".repeat(32);
        write(entry(
            serde_json::json!({"from": "2026-01-10", "to": "2026-01-04"}),
            &good,
        ))
        .await;
        let err = Manifest::read(&raw, date).await.unwrap_err().to_string();
        assert!(
            err.contains("window from 2026-01-10 is after its end 2026-01-04"),
            "{err}"
        );
        write(entry(
            serde_json::json!({"from": "2026-01-04", "to": "2026-01-09"}),
            &good,
        ))
        .await;
        let err = Manifest::read(&raw, date).await.unwrap_err().to_string();
        assert!(
            err.contains("window ends on 2026-01-09, not on the manifest's date 2026-01-10"),
            "{err}"
        );
        write(entry(serde_json::json!("full"), &"z".repeat(100_000))).await;
        let err = Manifest::read(&raw, date).await.unwrap_err().to_string();
        assert!(
            err.contains("is not 64 hexadecimal digits") && err.len() < 300,
            "{err}"
        );
        write(entry(serde_json::json!("full"), &good)).await;
        assert!(Manifest::read(&raw, date).await.unwrap().is_some());
    }

    #[test]
    fn window_spells_full_or_a_range() {
        let full: Window = serde_json::from_str("\"full\"").unwrap();
        assert_eq!(full, Window::FULL);
        let range: Window =
            serde_json::from_str(r#"{"from": "2026-01-01", "to": "2026-01-10"}"#).unwrap();
        assert!(matches!(range, Window::Range { .. }));
        assert_eq!(serde_json::to_string(&Window::FULL).unwrap(), "\"full\"");
    }
}
