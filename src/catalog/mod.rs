//! Registration of the lake in other engines' catalogs: the statements that
//! register its tables in Athena, Trino, Spark or DuckDB ([`ddl`]), and the
//! AWS Glue Data Catalog entries that Athena reads ([`glue`]).
//!
//! Every engine gets the names `shelfline query` uses: the Delta tables
//! `weekly_sales_inventory` and `<dimension>_snapshots` (every snapshot,
//! with `snapshot_date`), and where the engine has views, `<dimension>`
//! for the latest snapshot.

pub mod ddl;
pub mod glue;

use url::Url;

use crate::schema::{self, FACT_PARTITIONS, FACT_TABLE, Kind, SNAPSHOT_COLUMN, Table};

/// Why a catalog could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "{engine} reads the lake from S3, but the lake is {lake}: give the lake's s3:// URL with --lake"
    )]
    NotOnS3 { engine: &'static str, lake: String },
    #[error(
        "the lake at {lake} is not shared storage that another engine can read: use a folder or s3://"
    )]
    NotShared { lake: String },
    #[error(
        "the lake URL {lake} holds a quote, a backslash, a semicolon or a control character, which the statements cannot carry safely: use a plain URL"
    )]
    UnsafeLocation { lake: String },
    #[error(
        "database name {name:?}: use lowercase letters, digits and underscores, starting with a letter"
    )]
    DatabaseName { name: String },
    #[error(transparent)]
    Glue(#[from] glue::GlueError),
}

/// One Delta table of the lake, as a catalog registers it.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeTable {
    /// The name it is registered under.
    pub name: String,
    /// Its folder under the lake.
    pub folder: &'static str,
    /// Its columns in the Delta table's order, partition columns included.
    pub columns: Vec<(&'static str, Kind)>,
    /// Its partition columns.
    pub partitions: Vec<&'static str>,
}

/// The four Delta tables of the lake.
pub fn lake_tables() -> Vec<LakeTable> {
    let fact = LakeTable {
        name: FACT_TABLE.to_string(),
        folder: FACT_TABLE,
        columns: schema::fact_columns().to_vec(),
        partitions: FACT_PARTITIONS.to_vec(),
    };
    let dimensions = Table::DIMENSIONS.into_iter().map(|table| {
        let contract = table.columns().iter().map(|c| (c.name, c.kind));
        LakeTable {
            name: table.snapshots_name(),
            folder: table.name(),
            columns: contract.chain([(SNAPSHOT_COLUMN, Kind::Date)]).collect(),
            partitions: vec![SNAPSHOT_COLUMN],
        }
    });
    std::iter::once(fact).chain(dimensions).collect()
}

/// The URL of `table`'s folder under `lake`, ending with a slash.
pub fn table_url(lake: &Url, table: &LakeTable) -> String {
    format!("{}/{}/", lake.as_str().trim_end_matches('/'), table.folder)
}

/// `name` if it is a database name every catalog accepts.
pub fn database_name(name: &str) -> Result<&str, CatalogError> {
    match crate::config::is_database_name(name) {
        true => Ok(name),
        false => Err(CatalogError::DatabaseName {
            name: crate::text::excerpt(name.as_bytes(), 40),
        }),
    }
}

/// The Hive type of `kind`, as Athena and Glue spell it.
pub fn hive_type(kind: Kind) -> String {
    match kind {
        Kind::Int32 => "int".to_string(),
        Kind::Int64 => "bigint".to_string(),
        Kind::Utf8 => "string".to_string(),
        Kind::Decimal(precision, scale) => format!("decimal({precision},{scale})"),
        Kind::Date => "date".to_string(),
        Kind::Boolean => "boolean".to_string(),
        Kind::Float64 => "double".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_tables_carry_the_contracts_columns() {
        let tables = lake_tables();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "weekly_sales_inventory",
                "store_snapshots",
                "product_snapshots",
                "calendar_snapshots"
            ]
        );
        assert_eq!(tables[0].columns.len(), schema::fact_columns().len());
        assert_eq!(tables[0].partitions, ["yr_num", "wk_num"]);
        let store = &tables[1];
        assert_eq!(store.folder, "store");
        assert_eq!(store.columns.last(), Some(&("snapshot_date", Kind::Date)));
        let lake = Url::parse("s3://bucket/lake/").unwrap();
        assert_eq!(table_url(&lake, store), "s3://bucket/lake/store/");
    }

    #[test]
    fn database_names_follow_glues_rule() {
        assert!(database_name("retail_2026").is_ok());
        for bad in ["", "Retail", "2026", "a-b", "a b", "a;drop"] {
            assert!(database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hive_types_of_the_contracts_kinds() {
        assert_eq!(hive_type(Kind::Decimal(38, 2)), "decimal(38,2)");
        assert_eq!(hive_type(Kind::Float64), "double");
        assert_eq!(hive_type(Kind::Date), "date");
    }
}
