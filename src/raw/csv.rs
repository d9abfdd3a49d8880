//! The raw-zone CSV format of contract section 2, both ways.
//!
//! Reading is strict and schema-driven (never inferred): the header must list
//! the contract's columns in order, decimals must be plain text with at most
//! the column's scale (`1.255` in a DECIMAL(38,2) column is an error, never
//! rounded), booleans are `0`/`1`/`true`/`false`, an empty field is NULL.
//! Every error names the file, the line where the row starts and the column.

use std::io::{Read, Write};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::RawError;
use super::quarantine::{BadRow, Quarantine};
use crate::batch::{BatchBuilder, Value};
use crate::schema::{Kind, Table};
use crate::text::{VALUE_CHARS, excerpt};

/// Characters of a header that does not match shown in its error.
const HEADER_CHARS: usize = 300;

/// Rows per Arrow batch produced by the reader.
pub const BATCH_ROWS: usize = 8192;

const UNIX_EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

/// Streams a raw CSV file (already decompressed) as Arrow batches with the
/// table's contract schema.
pub struct CsvDecoder<R: Read> {
    reader: csv::Reader<R>,
    table: Table,
    file: String,
    record: csv::ByteRecord,
    quarantine: Arc<Quarantine>,
    /// Data rows seen, including quarantined ones.
    rows: u64,
    header_checked: bool,
    /// Lines of the file before the input's first line (a chunk cut from
    /// the middle of a file starts past 0).
    line_offset: u64,
    /// The columns to output, in contract order.
    projection: Vec<usize>,
    /// Which columns to parse: the projected ones, or all of them when the
    /// whole file must be validated.
    parse: Vec<bool>,
}

impl<R: Read> CsvDecoder<R> {
    /// A decoder of every column of `table`; `file` names the file in error messages.
    pub fn new(input: R, table: Table, file: String, quarantine: Arc<Quarantine>) -> Self {
        let all: Vec<usize> = (0..table.columns().len()).collect();
        Self::projected(input, table, file, quarantine, all, true)
    }

    /// A decoder that outputs the columns at `projection`. With `validate_all`
    /// every field is parsed and checked; otherwise only the projected ones
    /// (the row's field count is always checked).
    pub fn projected(
        input: R,
        table: Table,
        file: String,
        quarantine: Arc<Quarantine>,
        projection: Vec<usize>,
        validate_all: bool,
    ) -> Self {
        let parse = (0..table.columns().len())
            .map(|i| validate_all || projection.contains(&i))
            .collect();
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(input);
        CsvDecoder {
            reader,
            table,
            file,
            record: csv::ByteRecord::new(),
            quarantine,
            rows: 0,
            header_checked: false,
            line_offset: 0,
            projection,
            parse,
        }
    }

    /// A decoder of a chunk of whole rows cut from a file after its header:
    /// the chunk's first row is on line `first_line` of the file.
    pub fn continuing_at(mut self, first_line: u64) -> Self {
        self.header_checked = true;
        self.line_offset = first_line.saturating_sub(1);
        self
    }

    /// Data rows read so far (header excluded, quarantined rows included).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next batch, or `None` at the end of the file.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, RawError> {
        if !self.header_checked {
            self.check_header()?;
            self.header_checked = true;
        }
        let mut builder = BatchBuilder::projected(self.table, BATCH_ROWS, &self.projection);
        // One row's values, reused from row to row.
        let mut spare: Vec<Value<'static>> = Vec::with_capacity(self.parse.len());
        while builder.len() < BATCH_ROWS && self.read_record()? {
            self.rows += 1;
            let line = self.line();
            let mut cells = recycle(spare);
            match parse_row(self.table, &self.record, &self.parse, &mut cells) {
                Ok(()) => builder.push_projected(&cells, &self.projection),
                Err(problem) => {
                    let bad = problem.into_bad_row(self.table, &self.file, line, &self.record);
                    self.quarantine.admit(bad)?;
                }
            }
            spare = recycle(cells);
        }
        Ok((!builder.is_empty()).then(|| builder.finish()))
    }

    /// The underlying reader, e.g. to finish a checksum after the last batch.
    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    fn line(&self) -> u64 {
        self.line_offset + self.record.position().map_or(0, |p| p.line())
    }

    fn read_record(&mut self) -> Result<bool, RawError> {
        self.reader
            .read_byte_record(&mut self.record)
            .map_err(|e| RawError::Csv {
                file: self.file.clone(),
                line: self.line_offset + e.position().map_or(self.rows + 2, |p| p.line()),
                message: e.to_string(),
            })
    }

    fn check_header(&mut self) -> Result<(), RawError> {
        if !self.read_record()? {
            return Err(RawError::Header {
                file: self.file.clone(),
                expected: self.expected_header(),
                found: "an empty file".to_string(),
            });
        }
        let found: Vec<&[u8]> = self
            .record
            .iter()
            .enumerate()
            .map(|(i, f)| if i == 0 { strip_bom(f) } else { f })
            .collect();
        let expected: Vec<&[u8]> = self
            .table
            .columns()
            .iter()
            .map(|c| c.name.as_bytes())
            .collect();
        if found != expected {
            return Err(RawError::Header {
                file: self.file.clone(),
                expected: self.expected_header(),
                found: excerpt(&found.join(&b","[..]), HEADER_CHARS),
            });
        }
        Ok(())
    }

    fn expected_header(&self) -> String {
        let names: Vec<&str> = self.table.columns().iter().map(|c| c.name).collect();
        names.join(",")
    }
}

fn strip_bom(field: &[u8]) -> &[u8] {
    field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
}

/// Why a row was rejected: the column and what is wrong with its value.
#[derive(Debug)]
pub(super) struct RowProblem {
    column: &'static str,
    message: String,
}

impl RowProblem {
    /// The quarantine's record of the rejected `record`, which starts on
    /// `line` of `file`.
    pub(super) fn into_bad_row(
        self,
        table: Table,
        file: &str,
        line: u64,
        record: &csv::ByteRecord,
    ) -> BadRow {
        BadRow {
            table,
            file: file.to_string(),
            line,
            column: self.column.to_string(),
            problem: self.message,
            record: record
                .iter()
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// An empty vector with the allocation of `cells`, for values borrowing
/// another record (the collect reuses the buffer in place).
fn recycle<'b>(mut cells: Vec<Value<'_>>) -> Vec<Value<'b>> {
    cells.clear();
    cells.into_iter().map(|_| Value::Null).collect()
}

/// Parses the fields marked in `parse` into `cells`, one per column (NULL
/// for the fields not parsed).
pub(super) fn parse_row<'a>(
    table: Table,
    record: &'a csv::ByteRecord,
    parse: &[bool],
    cells: &mut Vec<Value<'a>>,
) -> Result<(), RowProblem> {
    let columns = table.columns();
    if record.len() != columns.len() {
        return Err(RowProblem {
            column: "(row)",
            message: format!("expected {} fields, found {}", columns.len(), record.len()),
        });
    }
    for ((column, field), parse) in columns.iter().zip(record.iter()).zip(parse) {
        if !parse {
            cells.push(Value::Null);
            continue;
        }
        let cell = parse_field(column.kind, field).map_err(|reason| RowProblem {
            column: column.name,
            message: format!(
                "'{}' is not a valid {}: {reason}",
                excerpt(field, VALUE_CHARS),
                column.sql_type
            ),
        })?;
        cells.push(cell);
    }
    Ok(())
}

fn parse_field(kind: Kind, field: &[u8]) -> Result<Value<'_>, String> {
    if field.is_empty() {
        return Ok(Value::Null);
    }
    parse_value(kind, field)
}

/// Parses the text of a non-NULL value of `kind`, spelled as in the raw
/// zone (which is also how MySQL and PostgreSQL print them as text).
pub fn parse_value(kind: Kind, field: &[u8]) -> Result<Value<'_>, String> {
    match kind {
        Kind::Int32 => parse_int(field, i32::MIN.into(), i32::MAX.into()).map(Value::Int),
        Kind::Int64 => parse_int(field, i64::MIN, i64::MAX).map(Value::Int),
        Kind::Decimal(precision, scale) => {
            parse_decimal(field, precision, scale).map(Value::Decimal)
        }
        Kind::Date => parse_date(field).map(Value::Date),
        Kind::Boolean => parse_bool(field).map(Value::Bool),
        Kind::Float64 => Err("Float64 is not a raw-zone column kind".to_string()),
        Kind::Utf8 => std::str::from_utf8(field)
            .map(Value::Text)
            .map_err(|_| "not UTF-8 text".to_string()),
    }
}

fn parse_int(field: &[u8], min: i64, max: i64) -> Result<i64, String> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, field),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("not an integer".to_string());
    }
    // Accumulated negatively, so that i64::MIN fits.
    let value = digits
        .iter()
        .try_fold(0i64, |n, &b| {
            n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))
        })
        .and_then(|n| if negative { Some(n) } else { n.checked_neg() });
    match value {
        Some(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!("out of range {min}..={max}")),
    }
}

/// Parses `-?digits[.digits]` exactly into an integer scaled by `scale`.
pub fn parse_decimal(field: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    let all_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !all_digits(int_part) || !frac_part.is_none_or(all_digits) {
        return Err("expected plain decimal text like -12.50".to_string());
    }
    let frac_part = frac_part.unwrap_or_default();
    let scale = usize::try_from(scale).unwrap_or(0);
    if frac_part.len() > scale {
        return Err(format!(
            "{} decimal places, the column allows {scale} (values are never rounded)",
            frac_part.len()
        ));
    }
    let int_digits = int_part.iter().skip_while(|&&b| b == b'0').count();
    if int_digits + scale > usize::from(precision) {
        return Err(format!(
            "more than {} digits before the decimal point",
            usize::from(precision) - scale
        ));
    }
    // Up to 18 digits fit in a u64, which is much cheaper than an i128.
    let mut value: i128 = if int_part.len() + frac_part.len() <= 18 {
        let digits = int_part.iter().chain(frac_part);
        digits
            .fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'))
            .into()
    } else {
        let digits = int_part.iter().chain(frac_part);
        digits.fold(0i128, |n, &b| n * 10 + i128::from(b - b'0'))
    };
    value *= 10i128.pow((scale - frac_part.len()) as u32);
    Ok(if negative { -value } else { value })
}

pub(super) fn parse_date(field: &[u8]) -> Result<i32, String> {
    let invalid = || "expected a date YYYY-MM-DD".to_string();
    let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = *field else {
        return Err(invalid());
    };
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (
        number(&[y1, y2, y3, y4]),
        number(&[m1, m2]),
        number(&[d1, d2]),
    ) else {
        return Err(invalid());
    };
    NaiveDate::from_ymd_opt(year as i32, month, day)
        .map(days_since_epoch)
        .ok_or_else(invalid)
}

/// Days from 1970-01-01, the Arrow Date32 value of `date`.
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - UNIX_EPOCH).num_days() as i32
}

/// The date of an Arrow Date32 value; `None` beyond the dates chrono
/// knows (about ±262,000 years), which a Parquet file may still hold.
pub fn date_from_days(days: i32) -> Option<NaiveDate> {
    UNIX_EPOCH.checked_add_signed(chrono::TimeDelta::days(days.into()))
}

/// A Date32 value as text: the date, or the day number when it is beyond
/// chrono's range.
pub fn show_days(days: i32) -> String {
    date_from_days(days).map_or_else(|| format!("day {days} after 1970-01-01"), |d| d.to_string())
}

fn parse_bool(field: &[u8]) -> Result<bool, String> {
    match field {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ if field.eq_ignore_ascii_case(b"true") => Ok(true),
        _ if field.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => Err("expected 0, 1, true or false".to_string()),
    }
}

/// Writes Arrow batches of a contract table as raw-zone CSV: a header row,
/// RFC 4180 quoting, empty field for NULL, plain decimals, `YYYY-MM-DD`.
pub struct CsvEncoder<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> CsvEncoder<W> {
    /// Starts a file for `table` and writes its header.
    pub fn new(output: W, table: Table) -> std::io::Result<Self> {
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(output);
        let names = table.columns().iter().map(|c| c.name);
        writer.write_record(names).map_err(std::io::Error::other)?;
        Ok(CsvEncoder { writer })
    }

    /// Appends the rows of `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        let options = FormatOptions::default().with_null("");
        let formatters = batch
            .columns()
            .iter()
            .map(|array| ArrayFormatter::try_new(array.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let mut field = String::new();
        for row in 0..batch.num_rows() {
            for formatter in &formatters {
                field.clear();
                use std::fmt::Write as _;
                write!(field, "{}", formatter.value(row)).map_err(std::io::Error::other)?;
                self.writer
                    .write_field(&field)
                    .map_err(std::io::Error::other)?;
            }
            self.writer
                .write_record(None::<&[u8]>)
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.writer
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Decimal128Type;

    fn decode(table: Table, text: &str, budget: u64) -> Result<Vec<RecordBatch>, RawError> {
        let quarantine = Arc::new(Quarantine::new(budget));
        let mut decoder =
            CsvDecoder::new(text.as_bytes(), table, "t.csv.gz".to_string(), quarantine);
        let mut batches = Vec::new();
        while let Some(batch) = decoder.next_batch()? {
            batches.push(batch);
        }
        Ok(batches)
    }

    const INVENTORY_HEADER: &str = "cal_dt,store_key,prod_key,inventory_on_hand_qty,inventory_on_order_qty,out_of_stock_flg,waste_qty,promotion_flg,next_delivery_dt\n";

    #[test]
    fn decimals_are_exact_and_never_rounded() {
        assert_eq!(parse_decimal(b"12.5", 38, 2), Ok(1250));
        assert_eq!(parse_decimal(b"-0.07", 38, 2), Ok(-7));
        assert_eq!(parse_decimal(b"3", 19, 3), Ok(3000));
        assert!(
            parse_decimal(b"1.255", 38, 2)
                .unwrap_err()
                .contains("3 decimal places")
        );
        for bad in ["1e3", "1.", ".5", "--1", "1,5", "", "-", " 1"] {
            assert!(parse_decimal(bad.as_bytes(), 38, 2).is_err(), "{bad}");
        }
        assert!(parse_decimal(b"12345678901234567", 19, 3).is_err());
        assert_eq!(
            parse_decimal(b"-123456789012345678901.25", 38, 2),
            Ok(-12345678901234567890125)
        );
    }

    #[test]
    fn quoted_fields_booleans_and_nulls() {
        let text = format!(
            "{INVENTORY_HEADER}2026-01-09,1,101,\"3.00\",,0,0.00,true,\n\
             2026-01-10,1,101,4,1.5,1,,\"\",2026-01-12\n"
        );
        let batches = decode(Table::Inventory, &text, 0).unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let on_hand = batch.column(3).as_primitive::<Decimal128Type>();
        assert_eq!((on_hand.value(0), on_hand.value(1)), (300, 400));
        assert!(batch.column(4).is_null(0));
        assert!(batch.column(7).as_boolean().value(0));
        assert!(batch.column(7).is_null(1), "quoted empty field is NULL");
    }

    #[test]
    fn a_bad_value_names_file_line_and_column() {
        let text = format!(
            "{INVENTORY_HEADER}2026-01-09,1,101,3.00,0,0,0,0,\n\"2026-01-10\",1,101,3.005,0,0,0,0,\n"
        );
        let err = decode(Table::Inventory, &text, 0).unwrap_err().to_string();
        assert!(err.contains("t.csv.gz"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("inventory_on_hand_qty"), "{err}");
        assert!(err.contains("3.005"), "{err}");
    }

    #[test]
    fn line_numbers_count_newlines_inside_quotes() {
        let text = "prod_key,prod_name,vol,wgt,brand_name,status_code,status_code_name,category_key,category_name,subcategory_key,subcategory_name\n\
                    1,\"two\nlines\",1,1,b,1,s,1,c,1,s\n\
                    x,n,1,1,b,1,s,1,c,1,s\n";
        let err = decode(Table::Product, text, 0).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("prod_key"), "{err}");
    }

    #[test]
    fn wrong_header_lists_expected_columns() {
        let err = decode(Table::Inventory, "cal_dt,store\n", 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cal_dt,store_key,prod_key"), "{err}");
    }

    #[test]
    fn wrong_field_count_is_reported() {
        let text = format!("{INVENTORY_HEADER}2026-01-09,1,101\n");
        let err = decode(Table::Inventory, &text, 0).unwrap_err().to_string();
        assert!(err.contains("expected 9 fields, found 3"), "{err}");
    }

    #[test]
    fn bad_rows_within_the_budget_are_set_aside() {
        let text = format!(
            "{INVENTORY_HEADER}2026-01-09,1,101,3.00,0,0,0,0,\nbad,1,101,3.00,0,0,0,0,\n2026-01-10,1,101,3.00,0,0,0,0,\n"
        );
        let batches = decode(Table::Inventory, &text, 1).unwrap();
        assert_eq!(batches[0].num_rows(), 2);
    }

    #[test]
    fn encoder_round_trips_through_decoder() {
        let text = format!("{INVENTORY_HEADER}2026-01-09,1,101,-3.50,,2,0.00,true,2026-01-12\n");
        let batch = decode(Table::Inventory, &text, 0).unwrap().remove(0);
        let mut encoder = CsvEncoder::new(Vec::new(), Table::Inventory).unwrap();
        encoder.write(&batch).unwrap();
        let written = String::from_utf8(encoder.finish().unwrap()).unwrap();
        assert_eq!(
            written,
            format!("{INVENTORY_HEADER}2026-01-09,1,101,-3.50,,2,0.00,true,2026-01-12\n")
        );
    }

    #[test]
    fn integers_parse_strictly_within_range() {
        assert_eq!(parse_int(b"-42", -100, 100), Ok(-42));
        assert_eq!(parse_int(b"+7", 0, 10), Ok(7));
        assert_eq!(
            parse_int(b"-9223372036854775808", i64::MIN, i64::MAX),
            Ok(i64::MIN)
        );
        assert!(parse_int(b"9223372036854775808", i64::MIN, i64::MAX).is_err());
        assert!(parse_int(b"2147483648", i32::MIN.into(), i32::MAX.into()).is_err());
        for bad in ["", "-", "1.0", "12a", " 1"] {
            assert!(
                parse_int(bad.as_bytes(), i64::MIN, i64::MAX).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_parse_strictly() {
        let day = days_since_epoch(NaiveDate::from_ymd_opt(2026, 1, 10).unwrap());
        assert_eq!(parse_date(b"2026-01-10"), Ok(day));
        for bad in [
            "2026-02-30",
            "2026-1-10",
            "2026-01-1x",
            "2026/01/10",
            "",
            "2026-01-100",
        ] {
            assert!(parse_date(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn date32_round_trip() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        assert_eq!(date_from_days(days_since_epoch(date)), Some(date));
        let old = NaiveDate::from_ymd_opt(1960, 3, 1).unwrap();
        assert_eq!(date_from_days(days_since_epoch(old)), Some(old));
        assert_eq!(date_from_days(2_000_000_000), None);
    }
}
