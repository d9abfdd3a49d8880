//! Reads one raw file as a stream of Arrow batches with the contract schema,
//! verifying row count and sha256 against the manifest when there is one.
//!
//! CSV files are decompressed and parsed on a blocking thread, with at most
//! a few batches in flight, so memory stays bounded whatever the file size.
//! With a cache folder, the first complete read also writes the parsed rows
//! to disk (Arrow IPC) and later reads come from there.

use object_store::ObjectStoreExt as _;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::reader::ChunkReader;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use super::csv::CsvDecoder;
use super::quarantine::Quarantine;
use super::{ManifestEntry, RawError, RawFile, RawFormat};
use crate::schema::Table;
use crate::storage::Location;

/// Batches in flight between the parser thread and the consumer.
const CHANNEL_BATCHES: usize = 4;

/// One raw file to read, with what it is checked against.
#[derive(Debug, Clone)]
pub struct RawSource {
    pub raw: Location,
    pub file: RawFile,
    /// The manifest entry, when there is a manifest.
    pub entry: Option<ManifestEntry>,
    pub quarantine: Arc<Quarantine>,
    /// Set once a read parsed every field of every row: later reads parse
    /// only the columns they need.
    validated: Arc<AtomicBool>,
    /// Where the validating read of a CSV file keeps its parsed rows (Arrow
    /// IPC), so that later reads neither decompress nor parse again.
    cache: Option<PathBuf>,
}

impl RawSource {
    /// A file not read yet.
    pub fn new(
        raw: Location,
        file: RawFile,
        entry: Option<ManifestEntry>,
        quarantine: Arc<Quarantine>,
    ) -> Self {
        RawSource {
            raw,
            file,
            entry,
            quarantine,
            validated: Arc::default(),
            cache: None,
        }
    }

    /// Keeps the parsed rows of a CSV file in `dir` after the first complete
    /// read, for the reads that follow.
    pub fn with_cache_in(mut self, dir: &Path) -> Self {
        self.cache = Some(dir.join(format!("{}.arrow", self.file.table)));
        self
    }

    /// The columns of `projection` (all when `None`) as a stream of batches.
    pub fn open(&self, projection: Option<Vec<usize>>) -> SendableRecordBatchStream {
        let table = self.file.table;
        let projection = projection.unwrap_or_else(|| (0..table.columns().len()).collect());
        let schema = Arc::new(
            table
                .arrow_schema()
                .project(&projection)
                .expect("projection indices come from the table's schema"),
        );
        let mut builder = RecordBatchReceiverStream::builder(Arc::clone(&schema), CHANNEL_BATCHES);
        let tx = builder.tx();
        let source = self.clone();
        builder.spawn_blocking(move || {
            let validated = source.validated.load(Ordering::Acquire);
            let result = match (source.file.format, &source.cache) {
                (RawFormat::CsvGz, Some(cache)) if validated => {
                    read_cache(cache, &source.file, projection, &tx)
                }
                (RawFormat::CsvGz, _) => source.read_csv(projection, &tx),
                (RawFormat::Parquet, _) => source.read_parquet(projection, schema, &tx),
            };
            forward_error(result, &tx)
        });
        builder.build()
    }
}

/// Sends a read error down the stream; a closed stream (the consumer stopped
/// early, e.g. after a LIMIT) is not an error.
fn forward_error(
    result: Result<(), RawError>,
    tx: &Sender<datafusion::error::Result<RecordBatch>>,
) -> datafusion::error::Result<()> {
    if let Err(e) = result {
        let _ = tx.try_send(Err(DataFusionError::External(Box::new(e))));
    }
    Ok(())
}

impl RawSource {
    fn read_csv(
        &self,
        projection: Vec<usize>,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<(), RawError> {
        let file = &self.file;
        let name = file.path.to_string();
        let validate_all = !self.validated.load(Ordering::Acquire);
        let input = HashingReader::new(open_sync(&self.raw, file)?);
        let gzip = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, input));
        let quarantine = Arc::clone(&self.quarantine);
        let mut cache = match &self.cache {
            Some(path) if validate_all => Some(CacheWriter::create(path, file)?),
            _ => None,
        };
        let decoded = match cache {
            Some(_) => (0..file.table.columns().len()).collect(),
            None => projection.clone(),
        };
        let mut decoder = CsvDecoder::projected(
            gzip,
            file.table,
            name.clone(),
            quarantine,
            decoded,
            validate_all,
        );
        while let Some(batch) = decoder.next_batch()? {
            let batch = match &mut cache {
                Some(cache) => {
                    cache.write(&batch)?;
                    batch
                        .project(&projection)
                        .map_err(|source| RawError::Arrow {
                            file: name.clone(),
                            source,
                        })?
                }
                None => batch,
            };
            if tx.blocking_send(Ok(batch)).is_err() {
                return Ok(());
            }
        }
        let rows = decoder.rows();
        let (sha256, bytes) = decoder.into_inner().into_inner().into_inner().finish();
        if let Some(entry) = &self.entry {
            entry.check_digest(&name, &sha256, bytes)?;
            entry.check_rows(rows)?;
        }
        if let Some(cache) = cache {
            cache.finish()?;
        }
        if validate_all {
            self.validated.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Reads a Parquet raw file (typed, so only the projected columns are
    /// decoded). A local file is read in place; a remote object is fetched
    /// whole first (Parquet needs random access).
    fn read_parquet(
        &self,
        projection: Vec<usize>,
        schema: SchemaRef,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<(), RawError> {
        let file = &self.file;
        let name = file.path.to_string();
        if let Some(entry) = &self.entry {
            let mut input = HashingReader::new(open_sync(&self.raw, file)?);
            std::io::copy(&mut input, &mut std::io::sink()).map_err(|source| RawError::Io {
                file: name.clone(),
                source,
            })?;
            let (sha256, bytes) = input.finish();
            entry.check_digest(&name, &sha256, bytes)?;
        }
        let wanted = ParquetRead {
            file,
            projection,
            schema,
            tx,
        };
        let rows = match self.raw.local_dir() {
            Some(dir) => {
                let local =
                    std::fs::File::open(dir.join(file.path.as_ref())).map_err(|source| {
                        RawError::Io {
                            file: name.clone(),
                            source,
                        }
                    })?;
                wanted.decode(local)?
            }
            None => wanted.decode(fetch(&self.raw, file)?)?,
        };
        match (&self.entry, rows) {
            (Some(entry), Some(rows)) => entry.check_rows(rows),
            _ => Ok(()),
        }
    }
}

/// A blocking reader of the object: the file itself for a local raw zone,
/// otherwise the object store's byte stream bridged to `Read`.
fn open_sync(raw: &Location, file: &RawFile) -> Result<Box<dyn Read + Send>, RawError> {
    if let Some(dir) = raw.local_dir() {
        let path = dir.join(file.path.as_ref());
        let handle = std::fs::File::open(&path).map_err(|source| RawError::Io {
            file: file.path.to_string(),
            source,
        })?;
        return Ok(Box::new(handle));
    }
    let store = Arc::clone(raw.store());
    let path = file.path.clone();
    let handle = tokio::runtime::Handle::current();
    let stream = handle
        .block_on(async move { store.get(&path).await })
        .map_err(|source| RawError::Store {
            file: file.path.to_string(),
            source,
        })?
        .into_stream()
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
        reader, handle,
    )))
}

fn fetch(raw: &Location, file: &RawFile) -> Result<bytes::Bytes, RawError> {
    let store = Arc::clone(raw.store());
    let path = file.path.clone();
    tokio::runtime::Handle::current()
        .block_on(async move { store.get(&path).await?.bytes().await })
        .map_err(|source| RawError::Store {
            file: file.path.to_string(),
            source,
        })
}

/// Writes the parsed rows of a raw file as Arrow IPC under a temporary
/// name, renamed into place once the whole file was read and verified.
struct CacheWriter {
    path: PathBuf,
    file: String,
    writer: FileWriter<tempfile::NamedTempFile>,
}

impl CacheWriter {
    fn create(path: &Path, raw_file: &RawFile) -> Result<Self, RawError> {
        let file = raw_file.path.to_string();
        let io_error = |source| RawError::Io {
            file: format!("{file} (parsed-row cache {})", path.display()),
            source,
        };
        let folder = path.parent().unwrap_or(Path::new("."));
        let temp = tempfile::NamedTempFile::new_in(folder).map_err(io_error)?;
        let writer =
            FileWriter::try_new(temp, &raw_file.table.arrow_schema()).map_err(|source| {
                RawError::Arrow {
                    file: file.clone(),
                    source,
                }
            })?;
        Ok(CacheWriter {
            path: path.to_path_buf(),
            file,
            writer,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), RawError> {
        self.writer.write(batch).map_err(|source| RawError::Arrow {
            file: self.file.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<(), RawError> {
        let arrow_error = |source| RawError::Arrow {
            file: self.file.clone(),
            source,
        };
        self.writer.finish().map_err(arrow_error)?;
        let temp = self.writer.into_inner().map_err(arrow_error)?;
        temp.persist(&self.path).map_err(|e| RawError::Io {
            file: format!("{} (parsed-row cache {})", self.file, self.path.display()),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Reads the projected columns of a file's parsed-row cache.
fn read_cache(
    path: &Path,
    raw_file: &RawFile,
    projection: Vec<usize>,
    tx: &Sender<datafusion::error::Result<RecordBatch>>,
) -> Result<(), RawError> {
    let file = raw_file.path.to_string();
    let input = std::fs::File::open(path).map_err(|source| RawError::Io {
        file: format!("{file} (parsed-row cache {})", path.display()),
        source,
    })?;
    let arrow_error = |source| RawError::Arrow {
        file: file.clone(),
        source,
    };
    let reader =
        FileReader::try_new(BufReader::new(input), Some(projection)).map_err(arrow_error)?;
    for batch in reader {
        if tx.blocking_send(Ok(batch.map_err(arrow_error)?)).is_err() {
            break;
        }
    }
    Ok(())
}

/// What to decode from a Parquet raw file, and where to send it.
struct ParquetRead<'a> {
    file: &'a RawFile,
    projection: Vec<usize>,
    schema: SchemaRef,
    tx: &'a Sender<datafusion::error::Result<RecordBatch>>,
}

impl ParquetRead<'_> {
    /// Sends the file's batches; returns the rows read, or `None` when the
    /// consumer stopped early.
    fn decode<T: ChunkReader + 'static>(&self, input: T) -> Result<Option<u64>, RawError> {
        let name = self.file.path.to_string();
        let parquet_error = |source| RawError::Parquet {
            file: name.clone(),
            source,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(parquet_error)?;
        check_parquet_schema(self.file.table, &name, builder.schema())?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), self.projection.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(super::csv::BATCH_ROWS)
            .build()
            .map_err(parquet_error)?;
        let mut rows = 0u64;
        for batch in reader {
            let batch = batch
                .and_then(|b| b.with_schema(Arc::clone(&self.schema)))
                .map_err(|source| RawError::Arrow {
                    file: name.clone(),
                    source,
                })?;
            rows += batch.num_rows() as u64;
            if self.tx.blocking_send(Ok(batch)).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(rows))
    }
}

/// Lists every column whose name or type differs from the contract.
fn check_parquet_schema(
    table: Table,
    file: &str,
    found: &datafusion::arrow::datatypes::Schema,
) -> Result<(), RawError> {
    let mut differences = Vec::new();
    for column in table.columns() {
        let expected = column.kind.arrow_type();
        match found.field_with_name(column.name) {
            Err(_) => differences.push(format!("missing column {}", column.name)),
            Ok(field) if field.data_type() != &expected => differences.push(format!(
                "column {} is {}, expected {expected}",
                column.name,
                field.data_type()
            )),
            Ok(_) => {}
        }
    }
    let names: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
    let expected: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
    if differences.is_empty() && names != expected {
        differences.push(format!(
            "columns are [{}], expected [{}] in that order",
            names.join(", "),
            expected.join(", ")
        ));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(RawError::ParquetSchema {
            file: file.to_string(),
            differences,
        })
    }
}

/// Passes bytes through while computing their sha256 and count.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex sha256 and the size of everything read.
    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
