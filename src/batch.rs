//! Row-by-row construction of Arrow batches for the contract tables, shared
//! by the CSV reader, the source readers and the data generator.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::{Kind, Table};

/// One field value, typed by the column's [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    /// An integer (Int32 or Int64 columns).
    Int(i64),
    /// A decimal as an integer scaled by the column's scale.
    Decimal(i128),
    /// A date as days since 1970-01-01.
    Date(i32),
    Bool(bool),
    Text(&'a str),
}

/// Builds batches of one table (or some of its columns), a row at a time.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    /// An empty builder for all columns of `table`, with room for `capacity` rows.
    pub fn new(table: Table, capacity: usize) -> Self {
        let all: Vec<usize> = (0..table.columns().len()).collect();
        Self::projected(table, capacity, &all)
    }

    /// An empty builder for the columns of `table` at `projection`.
    pub fn projected(table: Table, capacity: usize, projection: &[usize]) -> Self {
        let columns = projection
            .iter()
            .map(|&i| ColumnBuilder::new(table.columns()[i].kind, capacity))
            .collect();
        let schema = table
            .arrow_schema()
            .project(projection)
            .expect("projection indices come from the table's schema");
        BatchBuilder {
            schema: Arc::new(schema),
            columns,
            rows: 0,
        }
    }

    /// Appends one row; `row` holds one value per built column, in order,
    /// each of its column's kind (a value of another kind becomes NULL).
    pub fn push(&mut self, row: &[Value<'_>]) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        for (builder, value) in self.columns.iter_mut().zip(row) {
            builder.append(*value);
        }
        self.rows += 1;
    }

    /// Appends the values of `row` (a whole row of the table) at `projection`.
    pub fn push_projected(&mut self, row: &[Value<'_>], projection: &[usize]) {
        debug_assert_eq!(projection.len(), self.columns.len(), "projection width");
        for (builder, &i) in self.columns.iter_mut().zip(projection) {
            builder.append(row[i]);
        }
        self.rows += 1;
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The batch of the rows appended so far; the builder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let columns: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), columns).expect("builders follow the schema")
    }
}

/// An Arrow builder for one column.
enum ColumnBuilder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Float64(Float64Builder),
}

impl ColumnBuilder {
    fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Decimal(p, s) => Self::Decimal(Decimal128Builder::with_capacity(capacity), p, s),
            Kind::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            Kind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Utf8 => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
        }
    }

    fn append(&mut self, value: Value<'_>) {
        match (self, value) {
            (Self::Int32(b), Value::Int(v)) => b.append_value(v as i32),
            (Self::Int64(b), Value::Int(v)) => b.append_value(v),
            (Self::Decimal(b, ..), Value::Decimal(v)) => b.append_value(v),
            (Self::Date(b), Value::Date(v)) => b.append_value(v),
            (Self::Boolean(b), Value::Bool(v)) => b.append_value(v),
            (Self::Utf8(b), Value::Text(v)) => b.append_value(v),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("contract precision and scale are valid"),
            ),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
        }
    }
}
