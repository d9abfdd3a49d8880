//! The tables of the data contract (`DATA_CONTRACT.md`): the five source
//! tables of section 1 and the weekly fact of section 3.1.
//!
//! This is the only place where columns are listed. The SQL DDL, the Arrow
//! schemas, the CSV header check and the key-column rules are all derived
//! from the lists below.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// The kind of value a column holds, which decides its Arrow type and how
/// the raw-zone CSV spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `INT` → Int32.
    Int32,
    /// `INT` holding a transaction id → Int64 (contract section 1).
    Int64,
    /// `VARCHAR(n)` → Utf8.
    Utf8,
    /// `DECIMAL(p,s)` → Decimal128(p,s).
    Decimal(u8, i8),
    /// `DATE` → Date32.
    Date,
    /// `BOOLEAN` → Boolean.
    Boolean,
    /// A ratio in the output → Float64.
    Float64,
}

impl Kind {
    /// The Arrow type of this kind.
    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Utf8 => DataType::Utf8,
            Kind::Decimal(p, s) => DataType::Decimal128(p, s),
            Kind::Date => DataType::Date32,
            Kind::Boolean => DataType::Boolean,
            Kind::Float64 => DataType::Float64,
        }
    }
}

/// One column of a contract table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name, as in the source database and the CSV header.
    pub name: &'static str,
    /// SQL type, exactly as in the DDL of contract section 1.
    pub sql_type: &'static str,
    /// The value kind (Arrow type).
    pub kind: Kind,
    /// Whether the DDL declares the column `NOT NULL`.
    pub not_null: bool,
}

const fn col(name: &'static str, sql_type: &'static str, kind: Kind) -> Column {
    Column {
        name,
        sql_type,
        kind,
        not_null: false,
    }
}

const MONEY: Kind = Kind::Decimal(38, 2);

const STORE: &[Column] = &[
    col("store_key", "INT", Kind::Int32),
    col("store_num", "VARCHAR(30)", Kind::Utf8),
    col("store_desc", "VARCHAR(150)", Kind::Utf8),
    col("addr", "VARCHAR(500)", Kind::Utf8),
    col("city", "VARCHAR(50)", Kind::Utf8),
    col("region", "VARCHAR(100)", Kind::Utf8),
    col("cntry_cd", "VARCHAR(30)", Kind::Utf8),
    col("cntry_nm", "VARCHAR(150)", Kind::Utf8),
    col("postal_zip_cd", "VARCHAR(10)", Kind::Utf8),
    col("prov_state_desc", "VARCHAR(30)", Kind::Utf8),
    col("prov_state_cd", "VARCHAR(30)", Kind::Utf8),
    col("store_type_cd", "VARCHAR(30)", Kind::Utf8),
    col("store_type_desc", "VARCHAR(150)", Kind::Utf8),
    col("frnchs_flg", "BOOLEAN", Kind::Boolean),
    col("store_size", "DECIMAL(19,3)", Kind::Decimal(19, 3)),
    col("market_key", "INT", Kind::Int32),
    col("market_name", "VARCHAR(150)", Kind::Utf8),
    col("submarket_key", "INT", Kind::Int32),
    col("submarket_name", "VARCHAR(150)", Kind::Utf8),
    col("latitude", "DECIMAL(19,6)", Kind::Decimal(19, 6)),
    col("longitude", "DECIMAL(19,6)", Kind::Decimal(19, 6)),
];

const PRODUCT: &[Column] = &[
    col("prod_key", "INT", Kind::Int32),
    col("prod_name", "VARCHAR(255)", Kind::Utf8),
    col("vol", "DECIMAL(38,2)", MONEY),
    col("wgt", "DECIMAL(38,2)", MONEY),
    col("brand_name", "VARCHAR(255)", Kind::Utf8),
    col("status_code", "INT", Kind::Int32),
    col("status_code_name", "VARCHAR(255)", Kind::Utf8),
    col("category_key", "INT", Kind::Int32),
    col("category_name", "VARCHAR(255)", Kind::Utf8),
    col("subcategory_key", "INT", Kind::Int32),
    col("subcategory_name", "VARCHAR(255)", Kind::Utf8),
];

const CALENDAR: &[Column] = &[
    Column {
        not_null: true,
        ..col("cal_dt", "DATE", Kind::Date)
    },
    col("cal_type_desc", "VARCHAR(20)", Kind::Utf8),
    col("day_of_wk_num", "VARCHAR(30)", Kind::Utf8),
    col("day_of_wk_desc", "VARCHAR(30)", Kind::Utf8),
    col("yr_num", "INT", Kind::Int32),
    col("wk_num", "INT", Kind::Int32),
    col("yr_wk_num", "INT", Kind::Int32),
    col("mnth_num", "INT", Kind::Int32),
    col("yr_mnth_num", "INT", Kind::Int32),
    col("qtr_num", "INT", Kind::Int32),
    col("yr_qtr_num", "INT", Kind::Int32),
];

const SALES: &[Column] = &[
    col("trans_id", "INT", Kind::Int64),
    col("prod_key", "INT", Kind::Int32),
    col("store_key", "INT", Kind::Int32),
    col("trans_dt", "DATE", Kind::Date),
    col("trans_time", "INT", Kind::Int32),
    col("sales_qty", "DECIMAL(38,2)", MONEY),
    col("sales_price", "DECIMAL(38,2)", MONEY),
    col("sales_amt", "DECIMAL(38,2)", MONEY),
    col("discount", "DECIMAL(38,2)", MONEY),
    col("sales_cost", "DECIMAL(38,2)", MONEY),
    col("sales_mgrn", "DECIMAL(38,2)", MONEY),
    col("ship_cost", "DECIMAL(38,2)", MONEY),
];

const INVENTORY: &[Column] = &[
    col("cal_dt", "DATE", Kind::Date),
    col("store_key", "INT", Kind::Int32),
    col("prod_key", "INT", Kind::Int32),
    col("inventory_on_hand_qty", "DECIMAL(38,2)", MONEY),
    col("inventory_on_order_qty", "DECIMAL(38,2)", MONEY),
    col("out_of_stock_flg", "INT", Kind::Int32),
    col("waste_qty", "DECIMAL(38,2)", MONEY),
    col("promotion_flg", "BOOLEAN", Kind::Boolean),
    col("next_delivery_dt", "DATE", Kind::Date),
];

/// Columns that must never be NULL (contract section 4, "NULL in a key column").
const KEY_COLUMNS: &[&str] = &["trans_id", "trans_dt", "cal_dt", "store_key", "prod_key"];

/// The reconciliation of contract section 4: each sales column and the
/// output column whose sum over the output weeks must equal it.
pub const RECONCILED: [(&str, &str); 2] = [
    ("sales_amt", "total_sales_amt"),
    ("sales_qty", "total_sales_qty"),
];

/// The five source tables of contract section 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Store,
    Product,
    Calendar,
    Sales,
    Inventory,
}

impl Table {
    /// All source tables, dimensions first.
    pub const ALL: [Table; 5] = [
        Table::Store,
        Table::Product,
        Table::Calendar,
        Table::Sales,
        Table::Inventory,
    ];

    /// The dimension tables, published as dated snapshots (contract section 3.2).
    pub const DIMENSIONS: [Table; 3] = [Table::Store, Table::Product, Table::Calendar];
    /// The fact tables, which an incremental night reads by date window.
    pub const FACTS: [Table; 2] = [Table::Sales, Table::Inventory];

    /// The table name in the source, the raw zone and the lake.
    pub fn name(self) -> &'static str {
        match self {
            Table::Store => "store",
            Table::Product => "product",
            Table::Calendar => "calendar",
            Table::Sales => "sales",
            Table::Inventory => "inventory",
        }
    }

    /// The columns in contract order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Store => STORE,
            Table::Product => PRODUCT,
            Table::Calendar => CALENDAR,
            Table::Sales => SALES,
            Table::Inventory => INVENTORY,
        }
    }

    /// The key columns of this table that must not be NULL.
    pub fn key_columns(self) -> impl Iterator<Item = &'static str> {
        self.columns()
            .iter()
            .map(|c| c.name)
            .filter(|name| KEY_COLUMNS.contains(name))
    }

    /// The columns whose values must be unique, per contract section 4
    /// (empty when the contract sets no such rule for the table).
    pub fn unique_key(self) -> &'static [&'static str] {
        match self {
            Table::Calendar => &["cal_dt"],
            Table::Sales => &["trans_id"],
            Table::Inventory => &["cal_dt", "store_key", "prod_key"],
            Table::Store | Table::Product => &[],
        }
    }

    /// The order (date, store, product) in which a fact file lets the
    /// transform aggregate and join day by day, holding one day's keys
    /// instead of them all (empty for dimensions). The extractor records in
    /// the manifest whether a file's rows came in this order; the reader
    /// checks it.
    pub fn daily_key(self) -> &'static [&'static str] {
        match self {
            Table::Sales => &["trans_dt", "store_key", "prod_key"],
            Table::Inventory => &["cal_dt", "store_key", "prod_key"],
            Table::Store | Table::Product | Table::Calendar => &[],
        }
    }

    /// The business date a window of this fact table is taken on
    /// (contract section 2); `None` for the dimensions, always read whole.
    pub fn window_column(self) -> Option<&'static str> {
        match self {
            Table::Sales => Some("trans_dt"),
            Table::Inventory => Some("cal_dt"),
            Table::Store | Table::Product | Table::Calendar => None,
        }
    }

    /// The date column that must be in `calendar` (contract section 4), or
    /// the calendar's own date.
    pub fn date_column(self) -> Option<&'static str> {
        match self {
            Table::Calendar | Table::Inventory => Some("cal_dt"),
            Table::Sales => Some("trans_dt"),
            Table::Store | Table::Product => None,
        }
    }

    /// The input columns the metric query sums (its DECIMAL sums must not
    /// overflow: see `transform::reconcile`).
    pub fn summed_columns(self) -> &'static [&'static str] {
        match self {
            Table::Sales => &["sales_qty", "sales_amt", "sales_cost"],
            _ => &[],
        }
    }

    /// The input columns the reconciliation of contract section 4 sums.
    pub fn reconciled_columns(self) -> &'static [&'static str] {
        match self {
            Table::Sales => &[RECONCILED[0].0, RECONCILED[1].0],
            _ => &[],
        }
    }

    /// The index of column `name` in contract order.
    pub fn column_index(self, name: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.name == name)
    }

    /// The Arrow schema (all fields nullable: NULL keys are reported by the
    /// quality rules, not rejected by the reader).
    pub fn arrow_schema(self) -> SchemaRef {
        static SCHEMAS: LazyLock<Vec<SchemaRef>> = LazyLock::new(|| {
            Table::ALL
                .iter()
                .map(|t| arrow_schema_of(t.columns()))
                .collect()
        });
        Arc::clone(&SCHEMAS[self as usize])
    }

    /// `CREATE TABLE` text for this table, with the exact types of section 1.
    pub fn create_table_sql(self) -> String {
        let columns: Vec<String> = self
            .columns()
            .iter()
            .map(|c| {
                let not_null = if c.not_null { " NOT NULL" } else { "" };
                format!("  {} {}{}", c.name, c.sql_type, not_null)
            })
            .collect();
        format!("CREATE TABLE {} (\n{}\n)", self.name(), columns.join(",\n"))
    }

    /// The name under which a dimension's lake table, every snapshot with
    /// its [`SNAPSHOT_COLUMN`], is queried: `<table>_snapshots`.
    pub fn snapshots_name(self) -> String {
        format!("{}_snapshots", self.name())
    }

    /// The query of a dimension's latest snapshot, with the contract's
    /// columns, over the table `snapshots` (every snapshot).
    pub fn latest_snapshot_sql(self, snapshots: &str) -> String {
        let columns: Vec<&str> = self.columns().iter().map(|c| c.name).collect();
        format!(
            "SELECT {columns} FROM {snapshots} \
             WHERE {SNAPSHOT_COLUMN} = (SELECT max({SNAPSHOT_COLUMN}) FROM {snapshots})",
            columns = columns.join(", ")
        )
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Name of the weekly fact table (contract section 3.1).
pub const FACT_TABLE: &str = "weekly_sales_inventory";

/// Partition columns of the weekly fact table.
pub const FACT_PARTITIONS: [&str; 2] = ["yr_num", "wk_num"];

/// Partition column of the dimension snapshots (contract section 3.2).
pub const SNAPSHOT_COLUMN: &str = "snapshot_date";

const FACT: &[(&str, Kind)] = &[
    ("yr_num", Kind::Int32),
    ("wk_num", Kind::Int32),
    ("store_key", Kind::Int32),
    ("prod_key", Kind::Int32),
    ("mnth_num", Kind::Int32),
    ("total_sales_qty", MONEY),
    ("total_sales_amt", MONEY),
    ("total_cost_amt", MONEY),
    ("avg_sales_price", Kind::Float64),
    ("inventory_days", Kind::Int32),
    ("eow_date", Kind::Date),
    ("stock_on_hand_qty", MONEY),
    ("stock_on_order_qty", MONEY),
    ("no_stock_instances", Kind::Int32),
    ("low_stock_instances", Kind::Int32),
    ("in_stock_pct", Kind::Float64),
    ("total_low_stock_impact", Kind::Int32),
    ("potential_low_stock_impact", Kind::Float64),
    ("no_stock_impact", MONEY),
    ("weeks_of_supply", Kind::Float64),
];

/// The columns of the weekly fact table in contract order, with their kinds.
pub fn fact_columns() -> &'static [(&'static str, Kind)] {
    FACT
}

/// The Arrow schema of the weekly fact table.
pub fn fact_schema() -> SchemaRef {
    let fields: Vec<Field> = FACT
        .iter()
        .map(|(name, kind)| Field::new(*name, kind.arrow_type(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn arrow_schema_of(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c.name, c.kind.arrow_type(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_matches_contract_types() {
        let ddl = Table::Calendar.create_table_sql();
        assert!(ddl.contains("cal_dt DATE NOT NULL"), "{ddl}");
        assert!(Table::Sales.create_table_sql().contains("trans_id INT,"));
    }

    #[test]
    fn trans_id_is_int64_and_money_is_decimal() {
        let schema = Table::Sales.arrow_schema();
        assert_eq!(
            schema.field_with_name("trans_id").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            schema.field_with_name("sales_amt").unwrap().data_type(),
            &DataType::Decimal128(38, 2)
        );
    }

    #[test]
    fn key_columns_per_table() {
        let keys: Vec<_> = Table::Sales.key_columns().collect();
        assert_eq!(keys, ["trans_id", "prod_key", "store_key", "trans_dt"]);
        let keys: Vec<_> = Table::Calendar.key_columns().collect();
        assert_eq!(keys, ["cal_dt"]);
    }
}
