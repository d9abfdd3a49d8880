//! The CSV reader's fast path, for chunks of plain rows: no quote and no
//! carriage return anywhere, so a row is one line and its fields are the
//! pieces between commas. The big fact files are all like this.
//!
//! Each line is split and its fields parsed in one go by parsers that
//! accept only the common spellings (`-12.50`, `42`, `2026-01-10`, `0`,
//! `true`). A row with anything else (a `+7`, a bad value, a wrong field
//! count) goes through the general reader's [`parse_row`], so the values it
//! accepts and the errors it reports are exactly those of
//! [`super::csv::CsvDecoder`]; a test holds the two to that.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::RawError;
use super::csv::{BATCH_ROWS, parse_date, parse_row};
use super::quarantine::Quarantine;
use crate::batch::{BatchBuilder, Value};
use crate::schema::{Kind, Table};

/// Whether [`PlainDecoder`] may read `bytes`: whole rows without a quote
/// or a carriage return.
pub fn is_plain(bytes: &[u8]) -> bool {
    memchr::memchr2(b'"', b'\r', bytes).is_none()
}

/// Streams a chunk of plain rows (after the header) as Arrow batches, like
/// [`super::csv::CsvDecoder`] does for any chunk.
pub struct PlainDecoder<'a> {
    rest: &'a [u8],
    table: Table,
    kinds: Vec<Kind>,
    file: String,
    quarantine: Arc<Quarantine>,
    /// The file line of the next line of `rest`.
    line: u64,
    /// Data rows seen, including quarantined ones.
    rows: u64,
    projection: Vec<usize>,
    parse: Vec<bool>,
    /// The last date parsed, as text and as days: dates come in long runs.
    last_date: Option<(&'a [u8], i32)>,
}

impl<'a> PlainDecoder<'a> {
    /// A decoder of `chunk`, whose first row is on line `first_line` of
    /// `file`; it outputs the columns at `projection` and parses every field
    /// when `validate_all`, otherwise only the projected ones.
    pub fn new(
        chunk: &'a [u8],
        table: Table,
        file: String,
        quarantine: Arc<Quarantine>,
        projection: Vec<usize>,
        validate_all: bool,
        first_line: u64,
    ) -> Self {
        let columns = table.columns();
        let parse = (0..columns.len())
            .map(|i| validate_all || projection.contains(&i))
            .collect();
        PlainDecoder {
            rest: chunk,
            table,
            kinds: columns.iter().map(|c| c.kind).collect(),
            file,
            quarantine,
            line: first_line,
            rows: 0,
            projection,
            parse,
            last_date: None,
        }
    }

    /// Data rows read so far (quarantined rows included).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next batch, or `None` at the end of the chunk.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, RawError> {
        let mut builder = BatchBuilder::projected(self.table, BATCH_ROWS, &self.projection);
        let mut cells: Vec<Value<'a>> = vec![Value::Null; self.kinds.len()];
        while builder.len() < BATCH_ROWS && !self.rest.is_empty() {
            let end = memchr::memchr(b'\n', self.rest).unwrap_or(self.rest.len());
            let text = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            let line = self.line;
            self.line += 1;
            // The general reader skips empty lines too.
            if text.is_empty() {
                continue;
            }
            self.rows += 1;
            if self.parse_fields(text, &mut cells) {
                builder.push_projected(&cells, &self.projection);
            } else {
                self.parse_in_general(text, line, &mut builder)?;
            }
        }
        Ok((!builder.is_empty()).then(|| builder.finish()))
    }

    /// Parses the fields of `text` into `cells`; false when the row needs
    /// the general parser.
    fn parse_fields(&mut self, text: &'a [u8], cells: &mut [Value<'a>]) -> bool {
        let mut fields = text.split(|&b| b == b',');
        for (i, cell) in cells.iter_mut().enumerate() {
            let Some(field) = fields.next() else {
                return false;
            };
            *cell = if field.is_empty() || !self.parse[i] {
                Value::Null
            } else {
                match self.parse_value(self.kinds[i], field) {
                    Some(value) => value,
                    None => return false,
                }
            };
        }
        fields.next().is_none()
    }

    fn parse_value(&mut self, kind: Kind, field: &'a [u8]) -> Option<Value<'a>> {
        match kind {
            Kind::Int32 => parse_int(field, i32::MIN.into(), i32::MAX.into()).map(Value::Int),
            Kind::Int64 => parse_int(field, i64::MIN, i64::MAX).map(Value::Int),
            Kind::Decimal(precision, scale) => {
                parse_decimal(field, precision, scale).map(Value::Decimal)
            }
            Kind::Date => self.parse_date(field).map(Value::Date),
            Kind::Boolean => match field {
                b"0" | b"false" => Some(Value::Bool(false)),
                b"1" | b"true" => Some(Value::Bool(true)),
                _ => None,
            },
            Kind::Utf8 => std::str::from_utf8(field).ok().map(Value::Text),
            Kind::Float64 => None,
        }
    }

    fn parse_date(&mut self, field: &'a [u8]) -> Option<i32> {
        if let Some((text, days)) = self.last_date
            && text == field
        {
            return Some(days);
        }
        let days = parse_date(field).ok()?;
        self.last_date = Some((field, days));
        Some(days)
    }

    /// Reads a row the fast parsers did not take with the general reader's
    /// rules: it is pushed, or set aside (or fails the read) with the
    /// general reader's error.
    fn parse_in_general(
        &self,
        text: &[u8],
        line: u64,
        builder: &mut BatchBuilder,
    ) -> Result<(), RawError> {
        let record = csv::ByteRecord::from(text.split(|&b| b == b',').collect::<Vec<_>>());
        let mut cells = Vec::with_capacity(self.kinds.len());
        match parse_row(self.table, &record, &self.parse, &mut cells) {
            Ok(()) => builder.push_projected(&cells, &self.projection),
            Err(problem) => {
                let bad = problem.into_bad_row(self.table, &self.file, line, &record);
                self.quarantine.admit(bad)?;
            }
        }
        Ok(())
    }
}

/// Up to 18 digits: they always fit in a u64.
const FAST_DIGITS: usize = 18;

/// `-?[0-9]{1,18}` within `min..=max`.
fn parse_int(field: &[u8], min: i64, max: i64) -> Option<i64> {
    let (negative, digits) = split_sign(field);
    let (magnitude, used) = digits_value(digits);
    if used == 0 || used != digits.len() || used > FAST_DIGITS {
        return None;
    }
    let value = magnitude as i64;
    let value = if negative { -value } else { value };
    (min..=max).contains(&value).then_some(value)
}

/// `-?[0-9]+(\.[0-9]+)?` of at most 18 digits in all, with at most `scale`
/// after the point and room for `scale` within `precision`, as an integer
/// scaled by `scale`.
fn parse_decimal(field: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (negative, digits) = split_sign(field);
    let (int_value, int_len) = digits_value(digits);
    let (mut value, mut frac_len) = (int_value, 0);
    match digits.get(int_len) {
        None => {}
        Some(b'.') => {
            let fraction = &digits[int_len + 1..];
            let (frac_value, len) = digits_value(fraction);
            if len == 0 || len != fraction.len() {
                return None;
            }
            frac_len = len;
            value = int_value
                .checked_mul(10u64.checked_pow(len as u32)?)?
                .checked_add(frac_value)?;
        }
        Some(_) => return None,
    }
    let scale = usize::try_from(scale).ok()?;
    let fits = int_len + scale <= usize::from(precision);
    if int_len == 0 || int_len + frac_len > FAST_DIGITS || frac_len > scale || !fits {
        return None;
    }
    let value = i128::from(value) * 10i128.pow((scale - frac_len) as u32);
    Some(if negative { -value } else { value })
}

fn split_sign(field: &[u8]) -> (bool, &[u8]) {
    match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    }
}

/// The value of the leading ASCII digits of `bytes` (at most
/// [`FAST_DIGITS`] of them are added up) and how many there are.
fn digits_value(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut len = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if len < FAST_DIGITS {
            value = value * 10 + u64::from(digit);
        }
        len += 1;
    }
    (value, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::csv::CsvDecoder;

    /// What a decoder made of some text: the batches, or the error.
    fn outcome(batches: Result<Vec<RecordBatch>, RawError>, quarantine: &Quarantine) -> String {
        match batches {
            Ok(batches) => format!(
                "{}\nset aside: {:?}",
                datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap(),
                quarantine.rows()
            ),
            Err(error) => format!("error: {error}"),
        }
    }

    fn general(table: Table, rows: &str, validate_all: bool, projection: &[usize]) -> String {
        let quarantine = Arc::new(Quarantine::new(2));
        let mut decoder = CsvDecoder::projected(
            rows.as_bytes(),
            table,
            "f.csv.gz".to_string(),
            Arc::clone(&quarantine),
            projection.to_vec(),
            validate_all,
        )
        .continuing_at(7);
        let batches = std::iter::from_fn(|| decoder.next_batch().transpose()).collect();
        outcome(batches, &quarantine)
    }

    fn plain(table: Table, rows: &str, validate_all: bool, projection: &[usize]) -> String {
        let quarantine = Arc::new(Quarantine::new(2));
        let mut decoder = PlainDecoder::new(
            rows.as_bytes(),
            table,
            "f.csv.gz".to_string(),
            Arc::clone(&quarantine),
            projection.to_vec(),
            validate_all,
            7,
        );
        let batches = std::iter::from_fn(|| decoder.next_batch().transpose()).collect();
        outcome(batches, &quarantine)
    }

    /// Every kind of row the fast path meets gives what the general reader
    /// gives: the same values, the same rows set aside with the same
    /// messages, the same error once the budget (2) is spent.
    #[test]
    fn the_fast_path_agrees_with_the_general_reader() {
        let sales = [
            "1,2,3,2026-01-10,101500,1.00,22.61,22.61,0.00,10.62,11.99,0.00\n",
            "2,2,3,2026-01-10,101500,-1,+2.5,0.5,-0.07,,000.10,12345678901234567.89\n",
            "3,2,3,2026-01-11,,1.00,22.61,22.61,0.00,10.62,11.99,0.00",
            "\n\n4,2,3,2026-01-11,1,1.00,22.61,22.61,0.00,10.62,11.99,0.00\n",
            "5,2,3,2026-02-30,1,1.00,22.61,22.61,0.00,10.62,11.99,0.00\n",
            "6,2,3,2026-01-11,1,1.005,22.61,22.61,0.00,10.62,11.99,0.00\n",
            "7,2,3,2026-01-11,1,1.00,22.61\n",
            "8,2,3,2026-01-11,1,1.00,22.61,22.61,0.00,10.62,11.99,0.00,extra\n",
            "+9,2,3,2026-01-11,1,1.,.5,22.61,0.00,10.62,11.99,0.00\n",
            "10,2147483648,3,2026-01-11,1,1.00,22.61,22.61,0.00,10.62,11.99,0.00\n",
            "11,2,3,2026-01-11,1,123456789012345678901234567890123456.78,1,1,1,1,1,1\n",
            "12,2,3,2026-1-11,1, 1.00,22.61,22.61,0.00,10.62,11.99,0.00\n",
        ];
        let inventory = [
            "2026-01-10,1,101,37.04,0.00,0,0.00,true,\n",
            "2026-01-10,1,102,-3.50,,1,,TRUE,2026-01-12\n",
            "2026-01-10,1,103,1,1,2,1,yes,\n",
        ];
        let cases = [
            (Table::Sales, &sales[..]),
            (Table::Inventory, &inventory[..]),
        ];
        for (table, lines) in cases {
            let all: Vec<usize> = (0..table.columns().len()).collect();
            for n in 1..=lines.len() {
                for start in 0..=lines.len() - n {
                    let text = lines[start..start + n].concat();
                    for (validate_all, projection) in [(true, &all[..]), (false, &[1, 3][..])] {
                        assert_eq!(
                            plain(table, &text, validate_all, projection),
                            general(table, &text, validate_all, projection),
                            "{table:?} validating {validate_all}:\n{text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_rows_without_quotes_or_carriage_returns_are_plain() {
        assert!(is_plain(b"1,2\n3,4\n"));
        assert!(!is_plain(b"1,\"2\"\n"));
        assert!(!is_plain(b"1,2\r\n"));
    }

    #[test]
    fn fast_parsers_take_the_common_spellings() {
        assert_eq!(parse_decimal(b"-12.5", 38, 2), Some(-1250));
        assert_eq!(parse_decimal(b"7", 19, 3), Some(7000));
        assert_eq!(parse_decimal(b"0.001", 19, 3), Some(1));
        assert_eq!(
            parse_decimal(b"123456789012345678", 38, 2),
            Some(12345678901234567800)
        );
        for other in [
            "1.",
            ".5",
            "1.005",
            "+1",
            "1e3",
            "1234567890123456789",
            "-",
            "",
        ] {
            assert_eq!(parse_decimal(other.as_bytes(), 38, 2), None, "{other}");
        }
        assert_eq!(parse_decimal(b"12345678901234567", 19, 3), None);
        assert_eq!(parse_int(b"-42", -100, 100), Some(-42));
        for other in ["+7", "101", "4.0", "", "-"] {
            assert_eq!(parse_int(other.as_bytes(), -100, 100), None, "{other}");
        }
    }
}
