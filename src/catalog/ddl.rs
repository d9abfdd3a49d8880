//! `shelfline catalog ddl`: the statements that register the lake's tables
//! in another engine, printed for the user to run there.
//!
//! Athena, Trino and Spark read each Delta table's columns and types from
//! its Delta log, which holds the contract's types; Athena even refuses a
//! Delta table's `CREATE` that names more than its location and
//! `table_type`. So the statements name locations, and the views of the
//! latest dimension snapshots name the contract's columns.

use url::Url;

use super::{CatalogError, LakeTable, lake_tables, table_url};
use crate::schema::Table;

/// The engines `catalog ddl` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Amazon Athena (engine version 3), whose catalog is AWS Glue.
    Athena,
    /// Trino's Delta Lake connector, in a catalog named `delta`.
    Trino,
    /// Apache Spark with Delta Lake (`delta-spark`).
    Spark,
    /// DuckDB with its `delta` extension: views over `delta_scan`.
    Duckdb,
}

impl Engine {
    /// The engine's name as its makers spell it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Athena => "Athena",
            Engine::Trino => "Trino",
            Engine::Spark => "Spark",
            Engine::Duckdb => "DuckDB",
        }
    }
}

/// The statements that register the lake at `lake` in `engine`, in the
/// database (schema) `database`, one per line group, each ending with `;`.
pub fn statements(engine: Engine, lake: &Url, database: &str) -> Result<String, CatalogError> {
    let database = super::database_name(database)?;
    if !matches!(lake.scheme(), "s3" | "file") {
        return Err(CatalogError::NotShared {
            lake: lake.to_string(),
        });
    }
    if lake
        .as_str()
        .chars()
        .any(|c| matches!(c, '\'' | '\\' | ';') || c.is_control())
    {
        return Err(CatalogError::UnsafeLocation {
            lake: crate::text::excerpt(lake.as_str().as_bytes(), 80),
        });
    }
    if engine == Engine::Athena && lake.scheme() != "s3" {
        return Err(CatalogError::NotOnS3 {
            engine: engine.name(),
            lake: lake.to_string(),
        });
    }
    let qualified = |name: &str| match engine {
        Engine::Trino => format!("delta.{database}.{name}"),
        _ => format!("{database}.{name}"),
    };
    let mut out = preamble(engine, lake, database);
    for table in lake_tables() {
        out.push_str(&register(
            engine,
            lake,
            database,
            &qualified(&table.name),
            &table,
        ));
    }
    for table in Table::DIMENSIONS {
        let latest = table.latest_snapshot_sql(&qualified(&table.snapshots_name()));
        let view = qualified(table.name());
        out.push_str(&format!("CREATE OR REPLACE VIEW {view} AS\n{latest};\n"));
    }
    Ok(out)
}

/// The comment and statements before the tables: what the statements
/// assume, and the database.
fn preamble(engine: Engine, lake: &Url, database: &str) -> String {
    let mut out = format!(
        "-- shelfline's lake at {lake}, registered in {}.\n",
        engine.name()
    );
    let setup = match engine {
        Engine::Athena => {
            "-- Athena runs one statement at a time: run them in this order.\n\
                           CREATE DATABASE IF NOT EXISTS {db};\n"
        }
        Engine::Trino => {
            "-- The catalog `delta` is Trino's Delta Lake connector, with\n\
                          -- delta.register-table-procedure.enabled=true; rename it if yours differs.\n\
                          CREATE SCHEMA IF NOT EXISTS delta.{db};\n"
        }
        Engine::Spark => {
            "-- Spark with delta-spark; outside EMR, Hadoop reads S3 as s3a://.\n\
                          CREATE DATABASE IF NOT EXISTS {db};\n"
        }
        Engine::Duckdb => "INSTALL delta;\nLOAD delta;\nCREATE SCHEMA IF NOT EXISTS {db};\n",
    };
    out.push_str(&setup.replace("{db}", database));
    if engine == Engine::Duckdb && lake.scheme() == "s3" {
        out.push_str(
            "INSTALL httpfs;\nLOAD httpfs;\nCREATE SECRET IF NOT EXISTS (TYPE s3, PROVIDER credential_chain);\n",
        );
    }
    out
}

/// The statement that registers `table` as `name`.
fn register(engine: Engine, lake: &Url, database: &str, name: &str, table: &LakeTable) -> String {
    let location = literal(&table_url(lake, table));
    match engine {
        Engine::Athena => format!(
            "CREATE EXTERNAL TABLE {name}\nLOCATION {location}\nTBLPROPERTIES ('table_type' = 'DELTA');\n"
        ),
        Engine::Trino => format!(
            "CALL delta.system.register_table(schema_name => {}, table_name => {}, table_location => {location});\n",
            literal(database),
            literal(&table.name),
        ),
        Engine::Spark => {
            format!("CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION {location};\n")
        }
        Engine::Duckdb => {
            let path = match lake.to_file_path() {
                Ok(path) => literal(&path.join(table.folder).to_string_lossy()),
                Err(()) => location,
            };
            format!("CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan({path});\n")
        }
    }
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_has(ddl: &str, part: &str) {
        assert!(ddl.contains(part), "{part:?} missing from:\n{ddl}");
    }

    fn s3() -> Url {
        Url::parse("s3://retail-lake/prod/").unwrap()
    }

    #[test]
    fn athena_gets_locations_and_table_type_only() {
        let ddl = statements(Engine::Athena, &s3(), "retail").unwrap();
        assert_has(&ddl, "CREATE DATABASE IF NOT EXISTS retail;");
        assert_has(
            &ddl,
            "CREATE EXTERNAL TABLE retail.weekly_sales_inventory\n\
                 LOCATION 's3://retail-lake/prod/weekly_sales_inventory/'\n\
                 TBLPROPERTIES ('table_type' = 'DELTA');",
        );
        assert_has(&ddl, "LOCATION 's3://retail-lake/prod/calendar/'");
        assert_has(
            &ddl,
            "CREATE OR REPLACE VIEW retail.store AS\nSELECT store_key, ",
        );
        assert_has(
            &ddl,
            " FROM retail.store_snapshots WHERE snapshot_date = (SELECT max(snapshot_date) FROM retail.store_snapshots);",
        );
        assert_eq!(ddl.matches("CREATE EXTERNAL TABLE").count(), 4);
        let local = Url::parse("file:///srv/lake/").unwrap();
        let error = statements(Engine::Athena, &local, "retail").unwrap_err();
        assert!(error.to_string().contains("--lake"), "{error}");
    }

    #[test]
    fn trino_registers_in_the_delta_catalog() {
        let ddl = statements(Engine::Trino, &s3(), "retail").unwrap();
        assert_has(&ddl, "CREATE SCHEMA IF NOT EXISTS delta.retail;");
        assert_has(
            &ddl,
            "CALL delta.system.register_table(schema_name => 'retail', table_name => 'product_snapshots', table_location => 's3://retail-lake/prod/product/');",
        );
        assert_has(&ddl, "FROM delta.retail.calendar_snapshots");
    }

    #[test]
    fn spark_creates_delta_tables_by_location() {
        let ddl = statements(Engine::Spark, &s3(), "retail").unwrap();
        assert_has(
            &ddl,
            "CREATE TABLE IF NOT EXISTS retail.weekly_sales_inventory USING DELTA LOCATION 's3://retail-lake/prod/weekly_sales_inventory/';",
        );
        assert_eq!(ddl.matches("USING DELTA").count(), 4);
    }

    #[test]
    fn duckdb_reads_local_paths_and_s3_with_httpfs() {
        let local = Url::parse("file:///srv/retail%20lake/").unwrap();
        let ddl = statements(Engine::Duckdb, &local, "retail").unwrap();
        assert_has(
            &ddl,
            "CREATE OR REPLACE VIEW retail.store_snapshots AS SELECT * FROM delta_scan('/srv/retail lake/store');",
        );
        assert!(!ddl.contains("httpfs"), "{ddl}");
        let ddl = statements(Engine::Duckdb, &s3(), "retail").unwrap();
        assert_has(&ddl, "delta_scan('s3://retail-lake/prod/store/')");
        assert_has(&ddl, "LOAD httpfs;");
    }

    #[test]
    fn a_lake_url_that_could_end_a_string_literal_is_refused() {
        for url in ["s3://b/a\\';DROP/**/TABLE/**/x;--", "s3://b/it's"] {
            let lake = Url::parse(url).unwrap();
            let error = statements(Engine::Spark, &lake, "retail").unwrap_err();
            assert!(
                matches!(error, CatalogError::UnsafeLocation { .. }),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn a_database_name_that_is_not_an_identifier_is_refused() {
        let error = statements(Engine::Spark, &s3(), "x; DROP TABLE y").unwrap_err();
        assert!(
            matches!(error, CatalogError::DatabaseName { .. }),
            "{error}"
        );
    }
}
