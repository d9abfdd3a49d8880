//! The manifest of a date's raw set (contract section 2), written last by
//! the extractor: for each table its file, rows, bytes, sha256 and window.

use object_store::ObjectStoreExt as _;
use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use datafusion::arrow::datatypes::DataType;

use super::csv::date_from_days;
use super::facts::{Key, KeyOrder};
use super::{RawError, RawFile, manifest_path};
use crate::schema::Table;
use crate::storage::Location;

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
        let bytes = match raw.store().get(&path).await {
            Ok(result) => result.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|source| RawError::Store {
            file: path.to_string(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| RawError::Manifest {
                file: path.to_string(),
                reason: e.to_string(),
            })?;
        if manifest.date != date {
            return Err(RawError::Manifest {
                file: path.to_string(),
                reason: format!("it is for {}, not {date}", manifest.date),
            });
        }
        Ok(Some(manifest))
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
                Ok(DataType::Date32) => i32::try_from(value)
                    .map_or(value.to_string(), |days| date_from_days(days).to_string()),
                _ => value.to_string(),
            },
        )
        .collect();
    format!("({})", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

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
