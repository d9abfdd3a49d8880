//! The raw zone (contract section 2): one file per table per logical date,
//! `<raw>/<table>/<table>_<D>.csv.gz` or `.parquet`, and the manifest
//! `<raw>/_manifests/<D>.json` that the extractor writes last.
//!
//! This module knows the layout, finds a date's files ([`RawSet::locate`]),
//! checks them against the manifest ([`check`]) and reads them as Arrow
//! batches ([`reader`]).

pub mod chunks;
pub mod csv;
pub mod facts;
pub mod manifest;
pub mod named;
mod pages;
pub mod plain;
pub mod quarantine;
pub mod reader;
mod strict_eof;

use object_store::ObjectStoreExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use manifest::{Manifest, ManifestEntry, Window};
pub use named::{NamedError, NamedFiles};

use crate::schema::Table;
use crate::storage::{self, Location};

/// The format of a raw file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum RawFormat {
    /// Gzip-compressed CSV with a header row (the default).
    #[serde(rename = "csv.gz")]
    #[value(name = "csv.gz")]
    CsvGz,
    /// Parquet with the contract's Arrow types.
    #[serde(rename = "parquet")]
    #[value(name = "parquet")]
    Parquet,
}

impl RawFormat {
    /// Both formats, in the order files are looked for.
    pub const ALL: [RawFormat; 2] = [RawFormat::CsvGz, RawFormat::Parquet];

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            RawFormat::CsvGz => "csv.gz",
            RawFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for RawFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// Where the raw file of `table` for `date` lives, relative to the raw root.
pub fn file_path(table: Table, date: NaiveDate, format: RawFormat) -> Path {
    storage::path(&[
        table.name(),
        &format!("{}_{}.{}", table.name(), date, format.extension()),
    ])
}

/// Where the manifest of `date` lives, relative to the raw root.
pub fn manifest_path(date: NaiveDate) -> Path {
    storage::path(&["_manifests", &format!("{date}.json")])
}

/// A problem with the raw zone or a raw file.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(
        "raw set for {date} in {raw} is incomplete: missing {}; run `shelfline extract --date {date}` or drop the files there",
        .missing.join(", ")
    )]
    Missing {
        date: NaiveDate,
        raw: String,
        missing: Vec<String>,
    },
    #[error(
        "raw set for {date} has both formats for {}: keep exactly one file per table",
        .tables.join(", ")
    )]
    BothFormats {
        date: NaiveDate,
        tables: Vec<String>,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: cannot access: {source}")]
    Store {
        file: String,
        source: object_store::Error,
    },
    #[error("{file}, line {line}: malformed CSV: {message}")]
    Csv {
        file: String,
        line: u64,
        message: String,
    },
    #[error(
        "{file}, line 1: header does not match the contract; expected `{expected}`, found `{found}`"
    )]
    Header {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{file}, line {line}, column {column}: {problem}{}", budget_note(*.budget))]
    BadValue {
        file: String,
        line: u64,
        column: String,
        problem: String,
        budget: u64,
    },
    #[error("{file}: {source}")]
    Arrow {
        file: String,
        source: datafusion::arrow::error::ArrowError,
    },
    #[error("{file}: not a readable Parquet file: {source}")]
    Parquet {
        file: String,
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("{file}: Parquet schema differs from the contract: {}", .differences.join("; "))]
    ParquetSchema {
        file: String,
        differences: Vec<String>,
    },
    #[error(
        "{file}: {found} rows, but the manifest says {expected}; the file changed after extraction, extract the date again"
    )]
    RowCount {
        file: String,
        found: u64,
        expected: u64,
    },
    #[error(
        "{file}: the manifest says its rows are sorted by ({columns}), but {found} comes after {after}; extract the date again, or drop `sorted_by` from the manifest entry"
    )]
    Unsorted {
        file: String,
        columns: String,
        /// The first key out of order, and the key before it.
        found: String,
        after: String,
    },
    #[error(
        "{file}: {found_bytes} bytes with sha256 {found}, but the manifest says {expected_bytes} bytes with sha256 {expected}; the file changed after extraction, extract the date again"
    )]
    Checksum {
        file: String,
        found: String,
        found_bytes: u64,
        expected: String,
        expected_bytes: u64,
    },
    #[error("manifest {file}: {reason}")]
    Manifest { file: String, reason: String },
    #[error(
        "{file}, line {line}: the row starting there is longer than {max} bytes (max_row_bytes): a missing newline or an unclosed quote? Fix the file, or raise max_row_bytes if rows really are that long"
    )]
    RowTooLong { file: String, line: u64, max: usize },
    #[error("{file}, row group {group}, column {column}: {problem}")]
    ParquetValue {
        file: String,
        group: usize,
        column: &'static str,
        problem: String,
    },
    #[error("{file}, row group {group}, column {column}: {problem}")]
    ParquetPage {
        file: String,
        group: usize,
        column: String,
        problem: pages::PageError,
    },
    #[error("{file}: the decoder failed ({message}); the file is damaged: extract the date again")]
    Damaged { file: String, message: String },
    #[error(transparent)]
    Named(#[from] NamedError),
    #[error("{file}: not in the raw zone's store ({raw}): name a file there")]
    Elsewhere { file: String, raw: String },
}

fn budget_note(budget: u64) -> String {
    if budget == 0 {
        " (set `error_budget` in the config to set such rows aside instead)".to_string()
    } else {
        format!(" (error budget of {budget} bad rows exceeded)")
    }
}

/// One located raw file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFile {
    pub table: Table,
    pub format: RawFormat,
    /// Path relative to the raw root.
    pub path: Path,
    pub bytes: u64,
}

/// The complete raw set of one date: one file per table, and the manifest
/// when the extractor wrote one.
#[derive(Debug, Clone)]
pub struct RawSet {
    pub date: NaiveDate,
    /// What the files' paths are relative to: the raw zone, or the root of
    /// its bucket when a run named a file outside the raw zone's folder.
    pub root: Location,
    pub files: BTreeMap<Table, RawFile>,
    pub manifest: Option<Manifest>,
    /// Tables whose file a run named and the manifest does not list (another
    /// producer's): the manifest says nothing of them.
    pub unlisted: BTreeSet<Table>,
}

impl RawSet {
    /// Finds the five files of `date` (the `named` ones in place of the
    /// layout's); fails listing every missing file and every table present
    /// in both formats. Named files are verified against the manifest
    /// only when they are the files it lists.
    pub async fn locate(
        raw: &Location,
        date: NaiveDate,
        named: &NamedFiles,
    ) -> Result<RawSet, RawError> {
        let Placement {
            root,
            prefix,
            named,
        } = resolve(raw, named)?;
        let mut files = BTreeMap::new();
        let mut missing = Vec::new();
        let mut both = Vec::new();
        for table in Table::ALL {
            let candidates = match named.get(&table) {
                Some((path, format, _)) => vec![(path.clone(), *format)],
                None => RawFormat::ALL
                    .map(|format| (rebased(&prefix, file_path(table, date, format)), format))
                    .to_vec(),
            };
            let mut found = Vec::new();
            for (path, format) in candidates {
                if let Some(bytes) = size_of(&root, &path).await? {
                    found.push(RawFile {
                        table,
                        format,
                        path,
                        bytes,
                    });
                }
            }
            match found.len() {
                0 => missing.push(match named.get(&table) {
                    Some((_, _, given)) => given.clone(),
                    None => file_path(table, date, RawFormat::CsvGz).to_string(),
                }),
                1 => {
                    files.insert(table, found.remove(0));
                }
                _ => both.push(table.name().to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(RawError::Missing {
                date,
                raw: raw.to_string(),
                missing,
            });
        }
        if !both.is_empty() {
            return Err(RawError::BothFormats { date, tables: both });
        }
        let manifest = Manifest::read(raw, date).await?;
        let mut unlisted = BTreeSet::new();
        if let Some(manifest) = &manifest {
            // The layout's files must be the manifest's; a named file is
            // verified when it is the one the manifest lists, and is
            // another producer's otherwise.
            let mut listed = BTreeMap::new();
            for (table, file) in &files {
                let in_raw = relative_to_raw(&prefix, &file.path);
                let entry = manifest.tables.get(table.name());
                let is_entry = in_raw
                    .as_ref()
                    .is_some_and(|path| entry.is_some_and(|e| e.file == path.as_ref()));
                match in_raw {
                    Some(path) if is_entry || !named.contains_key(table) => {
                        listed.insert(
                            *table,
                            RawFile {
                                path,
                                ..file.clone()
                            },
                        );
                    }
                    _ => {
                        unlisted.insert(*table);
                    }
                }
            }
            manifest.check_files(&listed)?;
        }
        Ok(RawSet {
            date,
            root,
            files,
            manifest,
            unlisted,
        })
    }

    /// The manifest entry of `table`, when there is a manifest and it lists
    /// the file the set holds.
    pub fn manifest_entry(&self, table: Table) -> Option<&ManifestEntry> {
        if self.unlisted.contains(&table) {
            return None;
        }
        self.manifest.as_ref()?.tables.get(table.name())
    }
}

/// A named file's path, format and name as given.
type Resolved = (Path, RawFormat, String);

/// Where a set's files are read from.
struct Placement {
    /// What every file's path is relative to: the raw zone, or its bucket's
    /// root when a named file lies outside the raw zone's folder.
    root: Location,
    /// The raw zone's folder in `root`, when `root` is its bucket.
    prefix: Option<Path>,
    named: BTreeMap<Table, Resolved>,
}

/// Places the named files in the raw zone's store.
fn resolve(raw: &Location, named: &NamedFiles) -> Result<Placement, RawError> {
    let mut found = BTreeMap::new();
    for (table, given) in named.iter() {
        let (root, path) = raw.find(given).ok_or_else(|| RawError::Elsewhere {
            file: crate::text::clip(given, 120),
            raw: raw.to_string(),
        })?;
        found.insert(table, (root, path, named::format_of(given)?, given));
    }
    let Some(bucket) = found
        .values()
        .find(|(root, ..)| root.url() != raw.url())
        .map(|(root, ..)| root.clone())
    else {
        let files = found
            .into_iter()
            .map(|(table, (_, path, format, given))| (table, (path, format, given.to_string())))
            .collect();
        return Ok(Placement {
            root: raw.clone(),
            prefix: None,
            named: files,
        });
    };
    let prefix = Path::from_url_path(raw.url().path()).map_err(|e| RawError::Elsewhere {
        file: e.to_string(),
        raw: raw.to_string(),
    })?;
    let files = found
        .into_iter()
        .map(|(table, (root, path, format, given))| {
            let path = match root.url() == raw.url() {
                true => rebased(&Some(prefix.clone()), path),
                false => path,
            };
            (table, (path, format, given.to_string()))
        })
        .collect();
    Ok(Placement {
        root: bucket,
        prefix: Some(prefix),
        named: files,
    })
}

/// `path` (relative to a set's root) relative to the raw zone: `prefix`
/// taken off when the root is the raw zone's bucket; `None` for a path
/// outside the raw zone.
fn relative_to_raw(prefix: &Option<Path>, path: &Path) -> Option<Path> {
    match prefix {
        Some(prefix) => path.prefix_match(prefix).map(Iterator::collect),
        None => Some(path.clone()),
    }
}

/// `path` below `prefix`, when there is one.
fn rebased(prefix: &Option<Path>, path: Path) -> Path {
    match prefix {
        Some(prefix) => prefix.parts().chain(path.parts()).collect(),
        None => path,
    }
}

/// The size of the object at `path`, or `None` when there is none.
async fn size_of(root: &Location, path: &Path) -> Result<Option<u64>, RawError> {
    match root.store().head(path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(RawError::Store {
            file: path.to_string(),
            source,
        }),
    }
}

/// What `check` found for one date.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub set: RawSet,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verified = if self.set.manifest.is_some() {
            "bytes and sha256 match the manifest"
        } else {
            "no manifest (files dropped by another producer); not verified"
        };
        writeln!(f, "raw set for {} is complete ({verified}):", self.set.date)?;
        for file in self.set.files.values() {
            let rows = self
                .set
                .manifest_entry(file.table)
                .map(|e| format!(", {} rows", e.rows))
                .unwrap_or_default();
            writeln!(
                f,
                "  {:<9} {} ({} bytes{rows})",
                file.table, file.path, file.bytes
            )?;
        }
        Ok(())
    }
}

/// Checks that the raw set of `date` (with the `named` files) is complete,
/// and when a manifest exists, that every file has the manifest's size,
/// sha256 and rows (rows no longer than `max_row_bytes`).
pub async fn check(
    raw: &Location,
    date: NaiveDate,
    named: &NamedFiles,
    max_row_bytes: usize,
) -> Result<CheckReport, RawError> {
    let set = RawSet::locate(raw, date, named).await?;
    verify_set(&set, max_row_bytes).await?;
    Ok(CheckReport { set })
}

/// Verifies the files of `set` against its manifest, in parallel.
pub async fn verify_set(set: &RawSet, max_row_bytes: usize) -> Result<(), RawError> {
    let checks = set.files.values().filter_map(|file| {
        let entry = set.manifest_entry(file.table)?.clone();
        Some(verify(set.root.clone(), file.clone(), entry, max_row_bytes))
    });
    futures::future::try_join_all(checks).await?;
    Ok(())
}

/// Verifies one file against its manifest entry: bytes and sha256 first
/// (so a changed file is named as such), then rows.
async fn verify(
    raw: Location,
    file: RawFile,
    entry: ManifestEntry,
    max_row_bytes: usize,
) -> Result<(), RawError> {
    let name = file.path.to_string();
    let (sha256, bytes, rows) = match file.format {
        RawFormat::CsvGz => {
            let (raw, file) = (raw.clone(), file.clone());
            tokio::task::spawn_blocking(move || csv_digest_and_rows(&raw, &file, max_row_bytes))
                .await
                .map_err(|e| RawError::Damaged {
                    file: name.clone(),
                    message: e.to_string(),
                })??
        }
        RawFormat::Parquet => {
            let (sha256, bytes) = hash_object(&raw, &file.path).await?;
            (sha256, bytes, parquet_rows(&raw, &file).await)
        }
    };
    entry.check_digest(&name, &sha256, bytes)?;
    entry.check_rows(rows?)
}

/// A file's sha256 and size, and its rows or why they could not be
/// counted (a file that is not what its manifest says fails on the
/// checksum first).
type FileDigest = (String, u64, Result<u64, RawError>);

/// Reads a csv.gz file once: its compressed bytes hashed, its rows counted.
fn csv_digest_and_rows(
    raw: &Location,
    file: &RawFile,
    max_row_bytes: usize,
) -> Result<FileDigest, RawError> {
    let name = file.path.to_string();
    let input = reader::HashingReader::new(reader::open_sync(raw, file)?);
    let mut gzip = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(input));
    let rows = chunks::count_rows(&mut gzip, max_row_bytes).map_err(|e| match e {
        chunks::ChunkError::RowTooLong { line, max } => RawError::RowTooLong {
            file: name.clone(),
            line,
            max,
        },
        chunks::ChunkError::Io(source) => RawError::Csv {
            file: name.clone(),
            line: 0,
            message: format!("cannot decompress: {source}"),
        },
    });
    // Whatever stopped the count, the rest of the file is still hashed.
    let mut input = gzip.into_inner().into_inner();
    std::io::copy(&mut input, &mut std::io::sink()).map_err(|source| RawError::Io {
        file: name.clone(),
        source,
    })?;
    let (sha256, bytes) = input.finish();
    Ok((sha256, bytes, rows))
}

/// The rows a Parquet file's footer declares, read with two ranged reads.
async fn parquet_rows(raw: &Location, file: &RawFile) -> Result<u64, RawError> {
    use datafusion::parquet::errors::ParquetError;
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    let name = file.path.to_string();
    let store_error = |source| RawError::Store {
        file: name.clone(),
        source,
    };
    let not_parquet = |reason: String| RawError::Parquet {
        file: name.clone(),
        source: ParquetError::General(reason),
    };
    let size = file.bytes;
    if size < 8 {
        return Err(not_parquet(format!("{size} bytes, too short for a footer")));
    }
    let tail = raw
        .store()
        .get_range(&file.path, size - 8..size)
        .await
        .map_err(store_error)?;
    if tail[4..] != *b"PAR1" {
        return Err(not_parquet("no Parquet footer at its end".to_string()));
    }
    let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if length > size - 8 {
        return Err(not_parquet(format!(
            "a footer of {length} bytes in a file of {size}"
        )));
    }
    let footer = raw
        .store()
        .get_range(&file.path, size - 8 - length..size - 8)
        .await
        .map_err(store_error)?;
    let metadata =
        ParquetMetaDataReader::decode_metadata(&footer).map_err(|source| RawError::Parquet {
            file: name.clone(),
            source,
        })?;
    Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0))
}

/// The sha256 (hex) and size of an object, read as a stream.
pub async fn hash_object(raw: &Location, path: &Path) -> Result<(String, u64), RawError> {
    let store_error = |source| RawError::Store {
        file: path.to_string(),
        source,
    };
    let mut stream = raw
        .store()
        .get(path)
        .await
        .map_err(store_error)?
        .into_stream();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(store_error)? {
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}
