//! Source → raw zone (contract section 2).
//!
//! Each table is streamed from the source as Arrow batches, encoded (gzip
//! CSV or Parquet) on a blocking thread and uploaded in chunks, so memory is
//! bounded by a few chunks per table whatever the table size. The tables go
//! in parallel. A file appears under its final name only when complete (the
//! object store's multipart upload commits it at the end), and the manifest
//! is written last, once every file is in place.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::NaiveDate;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use flate2::write::GzEncoder;
use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::raw::csv::CsvEncoder;
use crate::raw::facts::KeyOrder;
use crate::raw::{self, Manifest, ManifestEntry, RawError, RawFormat, Window};
use crate::schema::Table;
use crate::source::{Rows, Source, SourceError};
use crate::storage::Location;
use crate::window::{Calendar, DateRange, WindowError};

/// Rows per batch read from the source.
pub const SOURCE_BATCH_ROWS: usize = 8192;
/// Size of the chunks handed from the encoder to the uploader.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight per table.
const CHUNKS_IN_FLIGHT: usize = 4;

/// An extraction failure.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("writing {file} to the raw zone failed: {message}")]
    Write { file: String, message: String },
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error("{source} (gave up after {attempts} attempts; `source_attempts` sets how many)")]
    GaveUp { attempts: u32, source: SourceError },
    #[error("the source's calendar: {0}")]
    Window(#[from] WindowError),
    #[error("{what} failed: {message}")]
    Task { what: &'static str, message: String },
    #[error(
        "the lake's last night is {published}, after {date}: a window ending on {date} would cut off the days after it in its last week; extract {date} with --full (and publish it with --allow-older)"
    )]
    BeforeLake {
        date: NaiveDate,
        published: NaiveDate,
    },
    #[error(
        "source table {table} has {rows} rows whose {column} is NULL or not a date; no window holds them, so an incremental night would leave them out: fix them in the source (a full extraction fails on them too)"
    )]
    Undated {
        table: Table,
        column: &'static str,
        rows: u64,
    },
}

/// How a table is read again when its source connection drops: from its
/// start, after `backoff`, doubled on every further attempt.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Reads of a table in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
}

impl Retry {
    /// No retry.
    pub const NONE: Retry = Retry {
        attempts: 1,
        backoff: Duration::ZERO,
    };
}

/// What was extracted for one table.
#[derive(Debug, Clone)]
pub struct ExtractedTable {
    pub table: Table,
    pub entry: ManifestEntry,
    pub elapsed: Duration,
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    pub date: NaiveDate,
    /// The facts' date window; `None` for full snapshots.
    pub window: Option<DateRange>,
    pub tables: Vec<ExtractedTable>,
    pub elapsed: Duration,
}

impl ExtractReport {
    /// Rows extracted over all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.entry.rows).sum()
    }
}

/// How the tables of a date are read and written.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// The logical date the raw files are named by.
    pub date: NaiveDate,
    /// The raw files' format.
    pub format: RawFormat,
    /// How a table whose connection drops is read again.
    pub retry: Retry,
    /// The fact rows to read: every row (`None`), or those whose business
    /// date lies in one of these ranges. Dimensions are read whole.
    pub dates: Option<Vec<DateRange>>,
}

impl Extraction {
    /// The manifest's window of a fact file: the span of the ranges read.
    fn window(&self, table: Table) -> Window {
        let dates = self
            .dates
            .as_deref()
            .filter(|_| table.window_column().is_some());
        match dates.and_then(|d| Some((d.first()?, d.last()?))) {
            Some((first, last)) => Window::Range {
                from: first.from,
                to: last.to,
            },
            None => Window::FULL,
        }
    }
}

/// The source's `calendar` table, read whole.
pub async fn source_calendar(source: &Source) -> Result<Calendar, ExtractError> {
    let source = source.clone();
    let batches = tokio::task::spawn_blocking(move || {
        let mut batches = Vec::new();
        source.read_table(Table::Calendar, Rows::All, SOURCE_BATCH_ROWS, |batch| {
            batches.push(batch);
            Ok(())
        })?;
        Ok::<_, SourceError>(batches)
    })
    .await
    .map_err(|e| ExtractError::Task {
        what: "reading the source's calendar",
        message: e.to_string(),
    })??;
    Ok(Calendar::from_batches(&batches))
}

/// The window of a night on `date` that looks back `lookback_days`, per
/// the source's own calendar. When the lake's last night, `published`, is
/// more than a day behind (nights missed or failed), the window reaches
/// back as far as the first missed night's would have, so that no day in
/// between is left out; when it is after `date`, there is no window (it
/// would cut the published days after `date` off their week).
pub async fn fact_window(
    source: &Source,
    date: NaiveDate,
    lookback_days: u32,
    published: NaiveDate,
) -> Result<DateRange, ExtractError> {
    if published > date {
        return Err(ExtractError::BeforeLake { date, published });
    }
    let first_missed = published.succ_opt().unwrap_or(published).min(date);
    let behind = u32::try_from((date - first_missed).num_days()).unwrap_or(u32::MAX);
    if behind > 0 {
        tracing::info!(
            "the lake's last night is {published}: the window of {date} reaches back over the {behind} nights since"
        );
    }
    let lookback = lookback_days.saturating_add(behind);
    Ok(source_calendar(source).await?.window(date, lookback)?)
}

/// Extracts the five tables of `source` into `raw` per `extraction`, then
/// writes the manifest. A table whose connection drops is read again per
/// its `retry`.
pub async fn extract(
    source: &Source,
    raw: &Location,
    extraction: &Extraction,
) -> Result<ExtractReport, ExtractError> {
    let started = Instant::now();
    if extraction
        .dates
        .as_ref()
        .is_some_and(|dates| dates.len() > 1)
    {
        return Err(ExtractError::Task {
            what: "writing a raw set of several date ranges",
            message: "a raw set's window is one range (contract section 2)".to_string(),
        });
    }
    check_source(source).await?;
    let tasks: Vec<_> = Table::ALL
        .into_iter()
        .map(|table| {
            let (source, raw, extraction) = (source.clone(), raw.clone(), extraction.clone());
            tokio::spawn(async move { extract_table(&source, &raw, table, &extraction).await })
        })
        .collect();
    let mut tables = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(table)) => tables.push(table),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(ExtractError::Write {
                    file: "(extract task)".to_string(),
                    message: join.to_string(),
                });
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let entries = tables.iter().map(|t| (t.table, t.entry.clone()));
    write_manifest(raw, extraction.date, entries).await?;
    let window = match extraction.window(Table::Sales) {
        Window::Range { from, to } => Some(DateRange { from, to }),
        Window::Full(_) => None,
    };
    Ok(ExtractReport {
        date: extraction.date,
        window,
        tables,
        elapsed: started.elapsed(),
    })
}

/// Checks that the source holds the contract's tables with their columns.
pub async fn check_source(source: &Source) -> Result<(), ExtractError> {
    let checked = source.clone();
    tokio::task::spawn_blocking(move || checked.check_tables())
        .await
        .map_err(|e| ExtractError::Write {
            file: "(schema check)".to_string(),
            message: e.to_string(),
        })??;
    Ok(())
}

/// Writes the manifest of `date` listing `entries`: the last file of a raw
/// set, written once every table's file is in place.
pub async fn write_manifest(
    raw: &Location,
    date: NaiveDate,
    entries: impl IntoIterator<Item = (Table, ManifestEntry)>,
) -> Result<(), ExtractError> {
    let manifest = Manifest {
        date,
        tables: entries
            .into_iter()
            .map(|(table, entry)| (table.name().to_string(), entry))
            .collect::<BTreeMap<_, _>>(),
    };
    manifest.write(raw).await?;
    Ok(())
}

/// Extracts one table of `source` into its raw file per `extraction`; when
/// the source connection drops, reads the table again from its start while
/// the extraction's `retry` allows. A dated read of a fact table without an
/// index on its business date is done all the same, after a warning that
/// gives the statement creating one.
pub async fn extract_table(
    source: &Source,
    raw: &Location,
    table: Table,
    extraction: &Extraction,
) -> Result<ExtractedTable, ExtractError> {
    if extraction.dates.is_some() && table.window_column().is_some() {
        check_dated(source, table).await?;
        warn_on_missing_index(source, table).await;
    }
    let retry = extraction.retry;
    let mut wait = retry.backoff;
    let mut attempt = 1;
    loop {
        match extract_table_once(source, raw, table, extraction).await {
            Err(ExtractError::Source(e)) if e.is_transient() => {
                if attempt >= retry.attempts {
                    return Err(ExtractError::GaveUp {
                        attempts: attempt,
                        source: e,
                    });
                }
                tracing::warn!(
                    "{e}; reading {table} again in {wait:?} (attempt {})",
                    attempt + 1
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Fails when the fact `table` holds rows that no window can hold (a NULL
/// or unreadable business date), which a full extraction would fail on.
async fn check_dated(source: &Source, table: Table) -> Result<(), ExtractError> {
    let checked = source.clone();
    let rows = tokio::task::spawn_blocking(move || checked.undated_rows(table))
        .await
        .map_err(|e| ExtractError::Task {
            what: "counting undated rows",
            message: e.to_string(),
        })??;
    match rows {
        0 => Ok(()),
        rows => Err(ExtractError::Undated {
            table,
            column: table.window_column().unwrap_or_default(),
            rows,
        }),
    }
}

/// Says, once per extraction of `table`, that the source has no index on
/// its business date, and how to create one.
async fn warn_on_missing_index(source: &Source, table: Table) {
    let checked = source.clone();
    let missing = tokio::task::spawn_blocking(move || checked.missing_date_index(table)).await;
    match missing {
        Ok(Ok(Some(statement))) => tracing::warn!(
            "source table {table} has no index on {}, so every night's window reads the whole table; create one: {statement}",
            table.window_column().unwrap_or_default()
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::debug!("could not tell whether {table} has a date index: {e}"),
        Err(e) => tracing::debug!("could not tell whether {table} has a date index: {e}"),
    }
}

async fn extract_table_once(
    source: &Source,
    raw: &Location,
    table: Table,
    extraction: &Extraction,
) -> Result<ExtractedTable, ExtractError> {
    let started = Instant::now();
    let format = extraction.format;
    let path = raw::file_path(table, extraction.date, format);
    let file = path.to_string();
    let write_error = |message: String| ExtractError::Write {
        file: file.clone(),
        message,
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let source = source.clone();
    let dates = extraction.dates.clone();
    let encoder = tokio::task::spawn_blocking(move || {
        let rows = dates.as_deref().map_or(Rows::All, Rows::Dated);
        encode_table(&source, table, rows, format, tx)
    });

    let mut upload = BufWriter::new(std::sync::Arc::clone(raw.store()), path.clone());
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut upload_result = Ok(());
    while let Some(chunk) = rx.recv().await {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        if let Err(e) = upload.write_all(&chunk).await {
            upload_result = Err(write_error(e.to_string()));
            break;
        }
    }
    drop(rx);
    let encoded = encoder
        .await
        .map_err(|e| write_error(e.to_string()))
        .and_then(|r| r);
    let (rows, order) = match upload_result.and(encoded) {
        Ok(encoded) => encoded,
        Err(e) => {
            // Nothing may appear under the final name: drop the staged upload.
            let _ = upload.abort().await;
            return Err(e);
        }
    };
    upload
        .shutdown()
        .await
        .map_err(|e| write_error(e.to_string()))?;
    Ok(ExtractedTable {
        table,
        entry: ManifestEntry {
            file,
            rows,
            bytes,
            sha256: hex::encode(hasher.finalize()),
            window: extraction.window(table),
            sorted_by: ManifestEntry::sorted_by(&order),
        },
        elapsed: started.elapsed(),
    })
}

/// Reads `table` from the source and encodes it into chunks sent to `tx`.
/// Returns the number of rows and whether they came in
/// [`Table::daily_key`] order (the source is not asked for an order: a
/// primary-key scan of the facts usually gives it for free).
fn encode_table(
    source: &Source,
    table: Table,
    rows: Rows<'_>,
    format: RawFormat,
    tx: mpsc::Sender<Bytes>,
) -> Result<(u64, KeyOrder), ExtractError> {
    let mut order = KeyOrder::ascending(table.daily_key());
    let output = ChunkWriter::new(tx);
    let sink_error = |e: &dyn std::fmt::Display| SourceError::Sink {
        table,
        message: e.to_string(),
    };
    let rows = match format {
        RawFormat::CsvGz => {
            let gzip = GzipThread::start(output);
            let mut csv = CsvEncoder::new(gzip, table).map_err(|e| sink_error(&e))?;
            let rows = source.read_table(table, rows, SOURCE_BATCH_ROWS, |batch| {
                order.observe(&batch);
                csv.write(&batch).map_err(|e| sink_error(&e))
            })?;
            let gzip = csv.finish().map_err(|e| sink_error(&e))?;
            gzip.finish().map_err(|e| sink_error(&e))?;
            rows
        }
        RawFormat::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer = ArrowWriter::try_new(output, table.arrow_schema(), Some(properties))
                .map_err(|e| sink_error(&e))?;
            let rows = source.read_table(table, rows, SOURCE_BATCH_ROWS, |batch| {
                order.observe(&batch);
                writer.write(&batch).map_err(|e| sink_error(&e))
            })?;
            let output = writer.into_inner().map_err(|e| sink_error(&e))?;
            output.finish().map_err(|e| sink_error(&e))?;
            rows
        }
    };
    Ok((rows, order))
}

/// A blocking `Write` that hands fixed-size chunks to an async uploader.
/// Gzip (level 6) on a thread of its own: the CSV written here goes to it in
/// chunks, so reading and encoding a table and compressing it use two
/// cores. At most two chunks wait between them.
struct GzipThread {
    chunks: ChunkWriter<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl GzipThread {
    fn start(output: ChunkWriter<mpsc::Sender<Bytes>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let thread = std::thread::spawn(move || {
            let mut gzip = GzEncoder::new(output, flate2::Compression::new(6));
            for chunk in rx {
                gzip.write_all(&chunk)?;
            }
            gzip.finish()?.finish()
        });
        GzipThread {
            chunks: ChunkWriter::new(tx),
            thread,
        }
    }

    /// Compresses what is left, ends the gzip stream and sends it on. When
    /// the compressor stopped early, its own error says why.
    fn finish(self) -> std::io::Result<()> {
        let sent = self.chunks.finish();
        let compressed = self
            .thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the compressor panicked")));
        compressed.and(sent)
    }
}

impl Write for GzipThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunks.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where [`ChunkWriter`] hands its full chunks.
trait ChunkSink {
    fn send_chunk(&self, chunk: Vec<u8>) -> std::io::Result<()>;
}

impl ChunkSink for mpsc::Sender<Bytes> {
    fn send_chunk(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.blocking_send(Bytes::from(chunk))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl ChunkSink for std::sync::mpsc::SyncSender<Vec<u8>> {
    fn send_chunk(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.send(chunk)
            .map_err(|_| std::io::Error::other("the compressor stopped"))
    }
}

/// Collects written bytes into chunks of [`CHUNK_BYTES`] for a [`ChunkSink`].
struct ChunkWriter<S: ChunkSink> {
    buffer: Vec<u8>,
    sink: S,
}

impl<S: ChunkSink> ChunkWriter<S> {
    fn new(sink: S) -> Self {
        ChunkWriter {
            buffer: Vec::with_capacity(CHUNK_BYTES),
            sink,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sink.send_chunk(chunk)
    }

    /// Sends what is left.
    fn finish(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl<S: ChunkSink> Write for ChunkWriter<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Display for ExtractReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = match &self.window {
            Some(range) => format!(" (facts from {range})"),
            None => String::new(),
        };
        writeln!(
            f,
            "extract    {} rows of 5 tables for {}{window} in {:.1?}",
            self.rows(),
            self.date,
            self.elapsed
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "           {:<9} {:>10} rows {:>12} bytes  {:.1?}  {}",
                t.table, t.entry.rows, t.entry.bytes, t.elapsed, t.entry.file
            )?;
        }
        Ok(())
    }
}
