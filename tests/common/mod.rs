//! Helpers shared by the integration tests: the golden fixture in the raw
//! layout, a scratch workspace, and reading the lake back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use flate2::Compression;
use flate2::write::GzEncoder;
use shelfline::config::Config;
use shelfline::pipeline::Pipeline;
use shelfline::query;
use shelfline::schema::Table;

/// The golden fixture's logical date.
pub const GOLDEN_DATE: &str = "2026-01-10";

pub fn golden_date() -> NaiveDate {
    GOLDEN_DATE.parse().unwrap()
}

/// `../shared/fixtures/golden`, beside the repository.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/golden")
}

/// The golden CSV text of each source table.
pub fn golden_tables() -> BTreeMap<Table, String> {
    Table::ALL
        .into_iter()
        .map(|t| {
            let path = golden_dir().join(format!("{}.csv", t.name()));
            (t, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// A setting of the test database servers that `.ci/databases start` runs
/// (its env file sets them). The tests that need a server fail without it.
pub fn test_server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test databases with `bash .ci/databases start` \
             and `source /tmp/shelfline-dbs/env` (README, Development)"
        )
    })
}

/// A scratch folder with a raw zone and a lake, and a pipeline over them.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub pipeline: Pipeline,
}

impl Workspace {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(mut config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        config.source = format!("sqlite://{}", dir.path().join("source.db").display());
        Self::in_dir(dir, config)
    }

    /// A workspace whose source is the database server at `url` (see
    /// [`test_server`]), its password in a file.
    pub fn with_server(url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("source-password");
        std::fs::write(&password_file, test_server("SHELFLINE_TEST_DB_PASSWORD")).unwrap();
        let config = Config {
            source: url.to_string(),
            password_file: Some(password_file),
            ..Config::default()
        };
        Self::in_dir(dir, config)
    }

    fn in_dir(dir: tempfile::TempDir, mut config: Config) -> Self {
        config.raw = dir.path().join("raw").display().to_string();
        config.lake = dir.path().join("lake").display().to_string();
        let pipeline = Pipeline::new(config).unwrap();
        Workspace { dir, pipeline }
    }

    pub fn raw_dir(&self) -> PathBuf {
        self.dir.path().join("raw")
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// Writes `tables` as gzipped CSV into the raw layout for `date`
    /// (no manifest: files dropped by another producer).
    pub fn write_raw(&self, date: NaiveDate, tables: &BTreeMap<Table, String>) {
        for (table, text) in tables {
            let folder = self.raw_dir().join(table.name());
            std::fs::create_dir_all(&folder).unwrap();
            let path = folder.join(format!("{}_{date}.csv.gz", table.name()));
            let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
            gzip.write_all(text.as_bytes()).unwrap();
            std::fs::write(path, gzip.finish().unwrap()).unwrap();
        }
    }

    /// Runs SQL over the lake.
    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        query::run(&self.pipeline.lake, &self.pipeline.config, sql)
            .await
            .unwrap()
    }

    /// The fact table as CSV text, sorted by its key.
    pub async fn fact_csv(&self) -> String {
        let batches = self
            .query(
                "SELECT * FROM weekly_sales_inventory ORDER BY yr_num, wk_num, store_key, prod_key",
            )
            .await;
        query::render(&batches, query::OutputFormat::Csv).unwrap()
    }

    /// The current version of a lake table.
    pub async fn version(&self, table: &str) -> Option<u64> {
        self.pipeline.lake.version(table).await.unwrap()
    }
}
