//! Raw files a run names instead of the layout's: a trigger may name the
//! files another producer dropped anywhere in the raw store, under any name
//! (the original pipeline's `s3://BUCKET/calendar_2024051.csv.gz`). A
//! file's format comes from its extension, its table from the caller or its
//! name (`<table>_…`), and the date its name carries may date the run.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use super::RawFormat;
use crate::schema::Table;
use crate::text;

/// Longest part of a file name a message shows.
const SHOWN: usize = 120;
/// The earliest year a file's name may carry.
const MIN_YEAR: i32 = 1900;

/// A named file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NamedError {
    #[error(
        "{file}: cannot tell which table it is: its name starts with none of {}",
        table_names()
    )]
    UnknownTable { file: String },
    #[error("{file}: not a raw file: name a `.csv.gz` or `.parquet` file")]
    UnknownFormat { file: String },
    #[error("table {table} is named twice: {first} and {second}")]
    Twice {
        table: Table,
        first: String,
        second: String,
    },
    #[error("the files' names carry different dates ({}); give the logical date", .dates.join(", "))]
    Dates { dates: Vec<String> },
    #[error(
        "{file}: `{stamp}` after the table's name is no date: name files with YYYY-MM-DD, YYYYMMDD or YYYYMMD (day 1 to 9), from {MIN_YEAR} on"
    )]
    NoDate { file: String, stamp: String },
}

fn table_names() -> String {
    Table::ALL.map(Table::name).join(", ")
}

/// The files a run names, by table, each as given: a full URL, a local path
/// or a path relative to the raw zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedFiles(BTreeMap<Table, String>);

impl NamedFiles {
    /// Names `file` as the raw file of `table`, checking its format.
    pub fn insert(&mut self, table: Table, file: &str) -> Result<(), NamedError> {
        format_of(file)?;
        if let Some(first) = self.0.get(&table) {
            return Err(NamedError::Twice {
                table,
                first: shown(first),
                second: shown(file),
            });
        }
        self.0.insert(table, file.to_string());
        Ok(())
    }

    /// Names `file` as the raw file of the table its name starts with.
    pub fn insert_by_name(&mut self, file: &str) -> Result<(), NamedError> {
        let table = table_of(file).ok_or_else(|| NamedError::UnknownTable { file: shown(file) })?;
        self.insert(table, file)
    }

    /// The file named for `table`.
    pub fn get(&self, table: Table) -> Option<&str> {
        self.0.get(&table).map(String::as_str)
    }

    /// Whether no file is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The named files, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &str)> {
        self.0.iter().map(|(table, file)| (*table, file.as_str()))
    }

    /// The date the files' names carry (`sales_2026-01-10.csv.gz`,
    /// `sales_20260110.csv.gz`, or `%Y%m%-d` as in `calendar_2024051.csv.gz`),
    /// when they carry one; names that carry different dates are an error.
    pub fn date(&self) -> Result<Option<NaiveDate>, NamedError> {
        let mut dates = Vec::new();
        for (table, file) in self.iter() {
            dates.extend(date_in(table, file)?);
        }
        dates.sort();
        dates.dedup();
        match dates.as_slice() {
            [] => Ok(None),
            [date] => Ok(Some(*date)),
            _ => Err(NamedError::Dates {
                dates: dates.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}

/// A file's format, by its extension.
pub fn format_of(file: &str) -> Result<RawFormat, NamedError> {
    let lower = file.to_ascii_lowercase();
    RawFormat::ALL
        .into_iter()
        .find(|format| lower.ends_with(&format!(".{}", format.extension())))
        .ok_or_else(|| NamedError::UnknownFormat { file: shown(file) })
}

/// The table a file's name starts with (`<table>_…` or `<table>.…`).
fn table_of(file: &str) -> Option<Table> {
    let name = base_name(file);
    Table::ALL.into_iter().find(|table| {
        name.strip_prefix(table.name())
            .is_some_and(|rest| rest.starts_with(['_', '.']))
    })
}

/// The date in a file's name after `<table>_`: `YYYY-MM-DD`, `YYYYMMDD`, or
/// the original pipeline's `%Y%m%-d` (`2024051` is 2024-05-01); `None`
/// when no digits follow. Digits that are no such date are an error.
fn date_in(table: Table, file: &str) -> Result<Option<NaiveDate>, NamedError> {
    let Some(rest) = base_name(file)
        .strip_prefix(table.name())
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return Ok(None);
    };
    let stamp: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    if !stamp.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(None);
    }
    // `%-d` is for formatting only: chrono parses the day's two digits.
    let padded = match stamp.len() {
        7 if !stamp.contains('-') => format!("{}0{}", &stamp[..6], &stamp[6..]),
        _ => stamp.clone(),
    };
    let format = if padded.contains('-') {
        "%Y-%m-%d"
    } else {
        "%Y%m%d"
    };
    NaiveDate::parse_from_str(&padded, format)
        .ok()
        .filter(|date| date.year() >= MIN_YEAR && padded.len() == format_len(format))
        .map(Some)
        .ok_or_else(|| NamedError::NoDate {
            file: shown(file),
            stamp: shown(&stamp),
        })
}

/// The length of a date written in `format`.
fn format_len(format: &str) -> usize {
    if format.contains('-') { 10 } else { 8 }
}

fn base_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

fn shown(file: &str) -> String {
    text::clip(file, SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn names_carry_their_table_and_date_in_every_spelling() {
        let cases = [
            (
                "s3://b/calendar_2024051.csv.gz",
                Table::Calendar,
                day(2024, 5, 1),
            ),
            (
                "s3://b/sales_20240515.csv.gz",
                Table::Sales,
                day(2024, 5, 15),
            ),
            (
                "inventory/inventory_2026-01-10.parquet",
                Table::Inventory,
                day(2026, 1, 10),
            ),
            (
                "/data/x/store_2024129.csv.gz",
                Table::Store,
                day(2024, 12, 9),
            ),
        ];
        for (file, table, date) in cases {
            assert_eq!(table_of(file), Some(table), "{file}");
            assert_eq!(date_in(table, file), Ok(Some(date)), "{file}");
        }
        assert_eq!(table_of("s3://b/sales2024.csv.gz"), None);
        assert_eq!(table_of("s3://sales_/x.csv.gz"), None);
        assert_eq!(date_in(Table::Sales, "sales_latest.csv.gz"), Ok(None));
        assert_eq!(date_in(Table::Sales, "sales_-024-05-15.csv.gz"), Ok(None));
        for no_date in [
            "sales_2024-13-01.csv.gz",
            "sales_2024131.csv.gz",
            "sales_2024-5-1.csv.gz",
            "sales_20240515-2.csv.gz",
            "sales_0000-01-01.csv.gz",
            "sales_18990101.csv.gz",
            "sales_1.csv.gz",
        ] {
            assert!(
                matches!(
                    date_in(Table::Sales, no_date),
                    Err(NamedError::NoDate { .. })
                ),
                "{no_date}"
            );
        }
    }

    #[test]
    fn one_file_per_table_and_one_date() {
        let mut named = NamedFiles::default();
        named.insert_by_name("s3://b/sales_2024051.csv.gz").unwrap();
        named.insert(Table::Store, "s3://b/stores.parquet").unwrap();
        assert_eq!(named.date(), Ok(Some(day(2024, 5, 1))));
        let twice = named
            .insert(Table::Sales, "sales_2024051.csv.gz")
            .unwrap_err();
        assert!(matches!(
            twice,
            NamedError::Twice {
                table: Table::Sales,
                ..
            }
        ));
        named.insert_by_name("calendar_2024052.csv.gz").unwrap();
        assert_eq!(
            named.date().unwrap_err().to_string(),
            "the files' names carry different dates (2024-05-01, 2024-05-02); give the logical date"
        );
        assert!(matches!(
            named.insert_by_name("product_2024051.csv"),
            Err(NamedError::UnknownFormat { .. })
        ));
        assert!(matches!(
            named.insert_by_name("products.csv.gz"),
            Err(NamedError::UnknownTable { .. })
        ));
    }
}
