//! Rows that do not parse, set aside within a configured error budget
//! (contract section 4): the run goes on without them and reports them in a
//! quarantine file; past the budget the run fails on the first extra row.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::RawError;
use crate::schema::Table;

/// One raw row that did not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub table: Table,
    /// The raw file, as named in error messages.
    pub file: String,
    /// The line where the row starts (1-based; the header is line 1).
    pub line: u64,
    pub column: String,
    pub problem: String,
    /// The row's fields as read, joined by commas.
    pub record: String,
}

/// Collects bad rows up to a budget. Rows are keyed by file and line, so a
/// file scanned twice counts each bad row once.
#[derive(Debug)]
pub struct Quarantine {
    budget: u64,
    rows: Mutex<BTreeMap<(String, u64), BadRow>>,
}

impl Quarantine {
    /// A quarantine that accepts up to `budget` distinct bad rows.
    pub fn new(budget: u64) -> Self {
        Quarantine {
            budget,
            rows: Mutex::default(),
        }
    }

    /// Sets `row` aside, or fails when that would exceed the budget.
    pub fn admit(&self, row: BadRow) -> Result<(), RawError> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let key = (row.file.clone(), row.line);
        let within_budget = rows.contains_key(&key) || (rows.len() as u64) < self.budget;
        if !within_budget {
            return Err(RawError::BadValue {
                file: row.file,
                line: row.line,
                column: row.column,
                problem: row.problem,
                budget: self.budget,
            });
        }
        rows.insert(key, row);
        Ok(())
    }

    /// The rows set aside, in file and line order.
    pub fn rows(&self) -> Vec<BadRow> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.values().cloned().collect()
    }

    /// The quarantine file: one CSV row per bad row.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["table", "file", "line", "column", "problem", "record"])?;
        for row in self.rows() {
            writer.write_record([
                row.table.name(),
                &row.file,
                &row.line.to_string(),
                &row.column,
                &row.problem,
                &row.record,
            ])?;
        }
        writer.into_inner().map_err(|e| e.into_error().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(line: u64) -> BadRow {
        BadRow {
            table: Table::Sales,
            file: "sales/sales_2026-01-10.csv.gz".into(),
            line,
            column: "sales_qty".into(),
            problem: "'x' is not a valid DECIMAL(38,2)".into(),
            record: "1,x".into(),
        }
    }

    #[test]
    fn budget_counts_distinct_rows() {
        let quarantine = Quarantine::new(2);
        quarantine.admit(bad(2)).unwrap();
        quarantine.admit(bad(2)).unwrap();
        quarantine.admit(bad(5)).unwrap();
        let err = quarantine.admit(bad(9)).unwrap_err().to_string();
        assert!(err.contains("line 9"), "{err}");
        assert!(err.contains("error budget of 2"), "{err}");
        assert_eq!(quarantine.rows().len(), 2);
        let csv = String::from_utf8(quarantine.to_csv().unwrap()).unwrap();
        assert_eq!(csv.lines().count(), 3);
    }
}
