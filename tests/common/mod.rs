//! Helpers shared by the integration tests: the golden fixture in the raw
//! layout, a scratch workspace, and reading the lake back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use flate2::Compression;
use flate2::write::GzEncoder;
use shelfline::config::Config;
use shelfline::pipeline::Pipeline;
use shelfline::query;
use shelfline::schema::Table;

pub mod cluster;
pub mod s3;
pub mod server;
pub mod smtp;
pub mod sql;

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

/// `bytes` compressed with gzip.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(bytes).unwrap();
    gzip.finish().unwrap()
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

    /// A workspace with its own lake (and source) that reads this one's
    /// raw zone, with `config` for everything else.
    pub fn sharing_raw(&self, config: Config) -> Workspace {
        Workspace::reading_raw(config, &self.raw_dir().display().to_string())
    }

    /// A workspace with its own lake (and source) whose raw zone is `raw`,
    /// with `config` for everything else.
    pub fn reading_raw(config: Config, raw: &str) -> Workspace {
        let ws = Workspace::with_config(config);
        let mut config = ws.pipeline.config.clone();
        config.raw = raw.to_string();
        Workspace {
            pipeline: Pipeline::new(config).unwrap(),
            dir: ws.dir,
        }
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
            std::fs::write(path, gzip(text.as_bytes())).unwrap();
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

/// The fact table's Float64 columns (contract section 3.1): compared within
/// a relative 1e-9, since a sum of floats depends on the order it is added in.
pub const FLOAT_COLUMNS: [&str; 4] = [
    "avg_sales_price",
    "in_stock_pct",
    "potential_low_stock_impact",
    "weeks_of_supply",
];

/// Asserts two CSV renderings of the same queries are equal (see
/// [`csv_difference`]).
pub fn assert_same_csv(left: &str, right: &str, what: &str) {
    if let Some(difference) = csv_difference(left, right) {
        panic!("{what}: {difference}");
    }
}

/// The first difference between two CSV renderings of the same queries:
/// every field must be equal, except those under a [`FLOAT_COLUMNS`]
/// header, which must be within a relative 1e-9.
pub fn csv_difference(left: &str, right: &str) -> Option<String> {
    let (l, r): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
    let mut floats: Vec<bool> = Vec::new();
    for (at, (a, b)) in l.iter().zip(&r).enumerate() {
        // Header lines start with a column name; data lines with a number
        // or a date.
        if a.starts_with(|c: char| c.is_alphabetic()) {
            floats = a.split(',').map(|f| FLOAT_COLUMNS.contains(&f)).collect();
        }
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
        let same =
            fa.len() == fb.len()
                && fa.iter().zip(&fb).enumerate().all(|(i, (x, y))| {
                    x == y || (floats.get(i) == Some(&true) && floats_close(x, y))
                });
        if !same {
            return Some(format!(
                "line {} differs:\n  left:  {a}\n  right: {b}",
                at + 1
            ));
        }
    }
    (l.len() != r.len()).then(|| format!("{} against {} lines", l.len(), r.len()))
}

fn floats_close(x: &str, y: &str) -> bool {
    match (x.parse::<f64>(), y.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// Parses the golden raw files with the raw reader and loads them into the
/// source of `target`.
pub async fn load_golden_into_source(staging: &Workspace, target: &Workspace) {
    use futures::TryStreamExt;
    use shelfline::raw::{RawSet, quarantine::Quarantine, reader::RawSource};
    let set = RawSet::locate(&staging.pipeline.raw, golden_date(), &Default::default())
        .await
        .unwrap();
    target.pipeline.source.create_tables().unwrap();
    let mut loader = target.pipeline.source.loader().unwrap();
    for table in Table::ALL {
        let quarantine = std::sync::Arc::new(Quarantine::new(0));
        let file = set.files[&table].clone();
        let source = RawSource::new(staging.pipeline.raw.clone(), file, None, quarantine);
        let stream = std::sync::Arc::new(source.scan(None, 1, 1)).open(0);
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        for batch in batches {
            loader.insert(table, &batch).unwrap();
        }
    }
    loader.commit().unwrap();
}

/// Every file under `dir` with its size and modification time.
pub fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                found.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    found
}
