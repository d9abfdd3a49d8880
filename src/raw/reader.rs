//! Reads one raw file as streams of Arrow batches with the contract schema,
//! verifying row count and sha256 against the manifest when there is one.
//!
//! A CSV file is read by several partitions at once: they take turns to
//! decompress the next chunk of whole rows ([`super::chunks`]) and parse
//! their chunks in parallel, each on a blocking thread with at most a few
//! batches in flight, so memory stays bounded whatever the file size. A
//! Parquet file's row groups are split between the partitions (a remote
//! file is read by one).
//!
//! Each partition reads its chunks or row groups in file order: when the
//! manifest says a fact file's rows are in [`Table::daily_key`] order, so
//! is every partition's output, and the table declares it to the engine.
//! The first complete read checks that order over the whole file and fails
//! when it does not hold.
//!
//! The first complete read of a file parses every field of every row (a bad
//! value in any column fails it) and records the file's [`ScanFacts`]; later
//! reads decode only the columns they need.

use object_store::ObjectStoreExt as _;
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::file::reader::ChunkReader;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use super::chunks::{CHUNK_BYTES, Chunk, Chunker};
use super::csv::CsvDecoder;
use super::facts::{FactsBuilder, ScanFacts};
use super::plain::{PlainDecoder, is_plain};
use super::quarantine::Quarantine;
use super::{ManifestEntry, RawError, RawFile, RawFormat};
use crate::schema::Table;
use crate::storage::Location;

/// Batches in flight between a parser thread and the consumer.
const CHANNEL_BATCHES: usize = 4;

/// One raw file to read, with what it is checked against.
#[derive(Debug, Clone)]
pub struct RawSource {
    pub raw: Location,
    pub file: RawFile,
    /// The manifest entry, when there is a manifest.
    pub entry: Option<ManifestEntry>,
    pub quarantine: Arc<Quarantine>,
    /// Set by the first complete read, which validated every field.
    facts: Arc<OnceLock<ScanFacts>>,
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
            facts: Arc::default(),
        }
    }

    /// Whether the manifest says the rows are in [`Table::daily_key`] order
    /// (the first complete read checks it).
    pub fn in_daily_key_order(&self) -> bool {
        let table = self.file.table;
        self.entry
            .as_ref()
            .is_some_and(|entry| entry.in_daily_key_order(table))
    }

    /// What the first complete read found; `None` before one finished.
    pub fn facts(&self) -> Option<&ScanFacts> {
        self.facts.get()
    }

    /// One read of the columns at `projection` (all when `None`) by
    /// `partitions` streams (one for a remote Parquet object); the read's
    /// rows are split between them.
    pub fn scan(&self, projection: Option<Vec<usize>>, partitions: usize) -> Scan {
        let table = self.file.table;
        let projection = projection.unwrap_or_else(|| (0..table.columns().len()).collect());
        let schema = Arc::new(
            table
                .arrow_schema()
                .project(&projection)
                .expect("projection indices come from the table's schema"),
        );
        // A remote Parquet object is fetched whole, by one partition.
        let partitions = match (self.file.format, self.raw.local_dir()) {
            (RawFormat::Parquet, None) => 1,
            _ => partitions.max(1),
        };
        Scan {
            source: self.clone(),
            projection,
            schema,
            partitions,
            shared: Mutex::new(Shared {
                chunker: None,
                running: partitions,
                stopped: false,
                rows: 0,
                facts: Vec::new(),
            }),
        }
    }
}

/// One read of a raw file, shared by its partitions. Each partition is
/// executed once.
pub struct Scan {
    source: RawSource,
    projection: Vec<usize>,
    schema: SchemaRef,
    partitions: usize,
    shared: Mutex<Shared>,
}

/// What the partitions of a read share.
struct Shared {
    /// Opened by the first partition to ask for a chunk.
    chunker: Option<Chunker<CsvInput>>,
    /// Partitions not finished yet.
    running: usize,
    /// A partition failed or its consumer stopped early: the read is not
    /// complete, so it records no facts.
    stopped: bool,
    /// Data rows parsed (quarantined rows included).
    rows: u64,
    /// Facts per CSV chunk or Parquet row group, with its index in the file.
    facts: Vec<(usize, ScanFacts)>,
}

/// The decompressed bytes of a CSV file, hashed on the way in.
type CsvInput = MultiGzDecoder<BufReader<HashingReader<Box<dyn Read + Send>>>>;

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("file", &self.source.file.path)
            .field("projection", &self.projection)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl Scan {
    /// The number of partitions.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// The output schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The stream of partition `partition`.
    pub fn open(self: &Arc<Self>, partition: usize) -> SendableRecordBatchStream {
        let mut builder =
            RecordBatchReceiverStream::builder(Arc::clone(&self.schema), CHANNEL_BATCHES);
        let tx = builder.tx();
        let scan = Arc::clone(self);
        builder.spawn_blocking(move || {
            let mut pass = Pass::new(
                &scan.source,
                scan.projection.clone(),
                Arc::clone(&scan.schema),
            );
            let completed = match scan.source.file.format {
                RawFormat::CsvGz => scan.parse_chunks(&mut pass, &tx),
                RawFormat::Parquet => scan.decode_row_groups(partition, &mut pass, &tx),
            };
            forward_error(scan.finish(completed, &pass), &tx)
        });
        builder.build()
    }

    /// Ends a partition's part of the read (`completed`: it reached the end
    /// of its rows); the last partition of a complete read checks the file
    /// against its manifest and records the file's facts.
    fn finish(&self, completed: Result<bool, RawError>, pass: &Pass) -> Result<(), RawError> {
        let mut shared = self.lock();
        shared.running -= 1;
        shared.stopped |= !matches!(completed, Ok(true));
        completed?;
        if shared.running > 0 || shared.stopped {
            return Ok(());
        }
        let chunker = shared.chunker.take();
        let rows = shared.rows;
        let mut facts = std::mem::take(&mut shared.facts);
        drop(shared);
        if let Some(entry) = &self.source.entry {
            if let Some(chunker) = chunker {
                let (sha256, bytes) = chunker.into_inner().into_inner().into_inner().finish();
                entry.check_digest(&pass.file, &sha256, bytes)?;
            }
            entry.check_rows(rows)?;
        }
        if pass.validating() {
            facts.sort_by_key(|(index, _)| *index);
            let whole = facts
                .into_iter()
                .map(|(_, part)| part)
                .reduce(ScanFacts::then)
                .unwrap_or_else(|| FactsBuilder::new(self.source.file.table).finish());
            if let Some(entry) = &self.source.entry {
                entry.check_order(self.source.file.table, &whole.daily_key)?;
            }
            // A concurrent validating read may have set the same facts first.
            let _ = self.source.facts.set(whole);
        }
        Ok(())
    }

    /// Parses chunks until none is left (`Ok(true)`) or the consumer stops
    /// listening (`Ok(false)`).
    fn parse_chunks(
        &self,
        pass: &mut Pass,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<bool, RawError> {
        while let Some(chunk) = self.next_chunk()? {
            let mut decoder = self.chunk_decoder(&chunk, pass);
            while let Some(batch) = decoder.next_batch()? {
                if tx.blocking_send(Ok(pass.output(batch)?)).is_err() {
                    return Ok(false);
                }
            }
            let facts = pass.take_facts();
            let mut shared = self.lock();
            shared.rows += decoder.rows();
            shared.facts.extend(facts.map(|f| (chunk.index, f)));
        }
        Ok(true)
    }

    /// The fast decoder for a chunk of plain rows, the general one for the
    /// first chunk (it holds the header) and any other.
    fn chunk_decoder<'c>(&self, chunk: &'c Chunk, pass: &Pass) -> ChunkDecoder<'c> {
        let table = self.source.file.table;
        let quarantine = Arc::clone(&self.source.quarantine);
        let (file, decoded) = (pass.file.clone(), pass.decoded.clone());
        if chunk.index > 0 && is_plain(&chunk.bytes) {
            return ChunkDecoder::Plain(PlainDecoder::new(
                &chunk.bytes,
                table,
                file,
                quarantine,
                decoded,
                pass.validating(),
                chunk.first_line,
            ));
        }
        let decoder = CsvDecoder::projected(
            chunk.bytes.as_slice(),
            table,
            file,
            quarantine,
            decoded,
            pass.validating(),
        );
        ChunkDecoder::General(match chunk.index {
            0 => decoder,
            _ => decoder.continuing_at(chunk.first_line),
        })
    }

    /// Decodes this partition's row groups of a Parquet file (every
    /// `partitions`-th from `partition` on); `Ok(false)` when the consumer
    /// stopped listening. The first partition also verifies the file's
    /// sha256 against the manifest.
    fn decode_row_groups(
        &self,
        partition: usize,
        pass: &mut Pass,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<bool, RawError> {
        let source = &self.source;
        let file = &source.file;
        if let (0, Some(entry)) = (partition, &source.entry) {
            let mut input = HashingReader::new(open_sync(&source.raw, file)?);
            std::io::copy(&mut input, &mut std::io::sink()).map_err(|e| RawError::Io {
                file: pass.file.clone(),
                source: e,
            })?;
            let (sha256, bytes) = input.finish();
            entry.check_digest(&pass.file, &sha256, bytes)?;
        }
        match source.raw.local_dir() {
            Some(dir) => {
                let path = dir.join(file.path.as_ref());
                self.decode_groups_of(partition, pass, tx, || {
                    std::fs::File::open(&path).map_err(|e| RawError::Io {
                        file: file.path.to_string(),
                        source: e,
                    })
                })
            }
            None => {
                let bytes = fetch(&source.raw, file)?;
                self.decode_groups_of(partition, pass, tx, || Ok(bytes.clone()))
            }
        }
    }

    /// [`Scan::decode_row_groups`] over the input that `open` opens afresh
    /// for each row group.
    fn decode_groups_of<T: ChunkReader + 'static>(
        &self,
        partition: usize,
        pass: &mut Pass,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
        open: impl Fn() -> Result<T, RawError>,
    ) -> Result<bool, RawError> {
        let name = pass.file.clone();
        let parquet_error = |source| RawError::Parquet {
            file: name.clone(),
            source,
        };
        let metadata = ArrowReaderMetadata::load(&open()?, ArrowReaderOptions::default())
            .map_err(parquet_error)?;
        check_parquet_schema(self.source.file.table, &pass.file, metadata.schema())?;
        let mask = ProjectionMask::roots(metadata.parquet_schema(), pass.decoded.iter().copied());
        let groups = metadata.metadata().num_row_groups();
        for group in (partition..groups).step_by(self.partitions) {
            let reader =
                ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, metadata.clone())
                    .with_row_groups(vec![group])
                    .with_projection(mask.clone())
                    .with_batch_size(super::csv::BATCH_ROWS)
                    .build()
                    .map_err(parquet_error)?;
            let mut rows = 0u64;
            for batch in reader {
                let batch = batch.map_err(|source| RawError::Arrow {
                    file: name.clone(),
                    source,
                })?;
                rows += batch.num_rows() as u64;
                if tx.blocking_send(Ok(pass.output(batch)?)).is_err() {
                    return Ok(false);
                }
            }
            let facts = pass.take_facts();
            let mut shared = self.lock();
            shared.rows += rows;
            shared.facts.extend(facts.map(|f| (group, f)));
        }
        Ok(true)
    }

    /// The next chunk of the file, opening it first if needed.
    fn next_chunk(&self) -> Result<Option<Chunk>, RawError> {
        let mut shared = self.lock();
        if shared.stopped {
            return Ok(None);
        }
        let file = &self.source.file;
        let chunker = match &mut shared.chunker {
            Some(chunker) => chunker,
            empty => {
                let input = HashingReader::new(open_sync(&self.source.raw, file)?);
                let gzip = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, input));
                empty.insert(Chunker::new(gzip, CHUNK_BYTES))
            }
        };
        chunker.next_chunk().map_err(|e| RawError::Csv {
            file: file.path.to_string(),
            line: 0,
            message: format!("cannot decompress: {e}"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The decoder of one chunk of a CSV file.
enum ChunkDecoder<'c> {
    Plain(PlainDecoder<'c>),
    General(CsvDecoder<&'c [u8]>),
}

impl ChunkDecoder<'_> {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, RawError> {
        match self {
            ChunkDecoder::Plain(decoder) => decoder.next_batch(),
            ChunkDecoder::General(decoder) => decoder.next_batch(),
        }
    }

    fn rows(&self) -> u64 {
        match self {
            ChunkDecoder::Plain(decoder) => decoder.rows(),
            ChunkDecoder::General(decoder) => decoder.rows(),
        }
    }
}

/// One partition's part of a read: which columns it decodes and outputs,
/// and, when it validates, the facts it gathers.
struct Pass {
    file: String,
    table: Table,
    /// The columns to decode: the output's, and those the facts need when
    /// validating (every field is then parsed and checked all the same).
    decoded: Vec<usize>,
    /// Where each output column is among the decoded ones.
    output: Vec<usize>,
    schema: SchemaRef,
    facts: Option<FactsBuilder>,
}

impl Pass {
    fn new(source: &RawSource, projection: Vec<usize>, schema: SchemaRef) -> Self {
        let table = source.file.table;
        let validating = source.facts().is_none();
        let mut decoded = projection.clone();
        if validating {
            decoded.extend(FactsBuilder::columns(table));
        }
        decoded.sort_unstable();
        decoded.dedup();
        let output = projection
            .iter()
            .map(|column| decoded.binary_search(column).unwrap_or_default())
            .collect();
        Pass {
            file: source.file.path.to_string(),
            table,
            decoded,
            output,
            schema,
            facts: validating.then(|| FactsBuilder::new(table)),
        }
    }

    fn validating(&self) -> bool {
        self.facts.is_some()
    }

    /// A decoded batch as output: facts taken, projected.
    fn output(&mut self, batch: RecordBatch) -> Result<RecordBatch, RawError> {
        let arrow_error = |source| RawError::Arrow {
            file: self.file.clone(),
            source,
        };
        if let Some(facts) = &mut self.facts {
            facts.observe(&batch);
        }
        batch
            .project(&self.output)
            .and_then(|b| b.with_schema(Arc::clone(&self.schema)))
            .map_err(arrow_error)
    }

    /// The facts of the batches since the last call (when validating).
    fn take_facts(&mut self) -> Option<ScanFacts> {
        let fresh = FactsBuilder::new(self.table);
        self.facts
            .as_mut()
            .map(|facts| std::mem::replace(facts, fresh).finish())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Value};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    /// A Parquet file of several row groups, read by three partitions:
    /// every row comes once, and the facts are those of the whole file.
    #[tokio::test]
    async fn parquet_row_groups_are_split_between_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::Sales;
        let mut builder = BatchBuilder::new(table, 10);
        for id in 0..10 {
            let mut row = vec![Value::Null; table.columns().len()];
            let mut set = |name: &str, value| row[table.column_index(name).unwrap()] = value;
            set("trans_id", Value::Int(id));
            set("prod_key", Value::Int(1));
            set("store_key", Value::Int(1));
            set("trans_dt", Value::Date(20_000 + id as i32 / 4));
            set("sales_amt", Value::Decimal(100));
            builder.push(&row);
        }
        let path = "sales/sales_2026-01-10.parquet";
        std::fs::create_dir_all(dir.path().join("sales")).unwrap();
        let output = std::fs::File::create(dir.path().join(path)).unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut writer =
            ArrowWriter::try_new(output, table.arrow_schema(), Some(properties)).unwrap();
        writer.write(&builder.finish()).unwrap();
        writer.close().unwrap();

        let raw = Location::parse(
            &dir.path().display().to_string(),
            &crate::config::S3Config::default(),
        )
        .unwrap();
        let file = RawFile {
            table,
            format: RawFormat::Parquet,
            path: path.into(),
            bytes: 0,
        };
        let source = RawSource::new(raw, file, None, Arc::new(Quarantine::new(0)));
        let scan = Arc::new(source.scan(None, 3));
        let reads = (0..3).map(|p| scan.open(p).try_collect::<Vec<_>>());
        let mut ids: Vec<i64> = futures::future::try_join_all(reads)
            .await
            .unwrap()
            .iter()
            .flatten()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        let facts = source.facts().expect("a complete read records facts");
        assert!(facts.unique_key.holds());
        assert_eq!(facts.rows, 10);
        let per_date: Vec<u64> = facts.dates.values().map(|d| d.rows).collect();
        assert_eq!(per_date, [4, 4, 2]);
    }
}
