//! Reads one raw file as streams of Arrow batches with the contract schema,
//! verifying row count and sha256 against the manifest when there is one.
//!
//! A read has one or more output partitions, and each partition one or
//! more workers (blocking threads). The workers of all partitions take
//! turns to decompress the next chunk of whole rows of a CSV file
//! ([`super::chunks`]), or to take the next row group of a Parquet file (a
//! remote one is read by one worker), and decode their units in parallel.
//! A worker holds at most a few batches before its turn comes to output
//! them, and the output channel holds a few more, so memory stays bounded
//! whatever the file size.
//!
//! A partition outputs its units in file order, whichever worker decoded
//! them: when the manifest says a fact file's rows are in
//! [`Table::daily_key`] order, so is every partition's output, and the
//! table declares it to the engine. So one ordered partition can still be
//! decoded by several threads. The first complete read checks that order
//! over the whole file and fails when it does not hold.
//!
//! The first complete read of a file parses every field of every row (a bad
//! value in any column fails it) and records the file's [`ScanFacts`]; later
//! reads decode only the columns they need.

use object_store::ObjectStoreExt as _;
use std::io::{BufReader, Read};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::file::reader::{ChunkReader, Length as _};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use super::chunks::{CHUNK_BYTES, Chunk, ChunkError, Chunker};
use super::csv::CsvDecoder;
use super::facts::{FactsBuilder, ScanFacts};
use super::plain::{PlainDecoder, is_plain};
use super::quarantine::Quarantine;
use super::strict_eof::StrictEof;
use super::{ManifestEntry, RawError, RawFile, RawFormat};
use crate::schema::Table;
use crate::storage::Location;

/// Batches in flight between a partition's workers and its consumer.
const CHANNEL_BATCHES: usize = 4;

/// Batches a worker decodes ahead before it waits for its turn to output.
const HELD_BATCHES: usize = 8;

/// One raw file to read, with what it is checked against.
#[derive(Debug, Clone)]
pub struct RawSource {
    pub raw: Location,
    pub file: RawFile,
    /// The manifest entry, when there is a manifest.
    pub entry: Option<ManifestEntry>,
    pub quarantine: Arc<Quarantine>,
    /// The longest CSV row read (`max_row_bytes`).
    pub max_row_bytes: usize,
    /// Decompressed bytes per CSV chunk (see [`super::chunks`]).
    chunk_bytes: usize,
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
            max_row_bytes: crate::config::Config::default().max_row_bytes,
            chunk_bytes: CHUNK_BYTES,
            facts: Arc::default(),
        }
    }

    /// The same file, read with rows of at most `max_row_bytes`.
    pub fn with_max_row_bytes(mut self, max_row_bytes: usize) -> Self {
        self.max_row_bytes = max_row_bytes;
        self
    }

    /// The same file, cut into CSV chunks of about `chunk_bytes` (small
    /// ones make rows cross chunk ends, as the fuzz targets want).
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Self {
        self.chunk_bytes = chunk_bytes.max(1);
        self
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
    /// `partitions` streams of `workers` threads each (one worker in all
    /// for a remote Parquet object); the read's rows are split between the
    /// streams.
    pub fn scan(&self, projection: Option<Vec<usize>>, partitions: usize, workers: usize) -> Scan {
        let table = self.file.table;
        let projection = projection.unwrap_or_else(|| (0..table.columns().len()).collect());
        let schema = Arc::new(
            table
                .arrow_schema()
                .project(&projection)
                .expect("projection indices come from the table's schema"),
        );
        // A remote Parquet object is fetched whole, by one worker.
        let (partitions, workers) = match (self.file.format, self.raw.local_dir()) {
            (RawFormat::Parquet, None) => (1, 1),
            _ => (partitions.max(1), workers.max(1)),
        };
        Scan {
            source: self.clone(),
            projection,
            schema,
            partitions,
            workers,
            shared: Mutex::new(Shared {
                chunker: None,
                next_row_group: 0,
                handed_out: vec![0; partitions],
                output: vec![0; partitions],
                running: partitions * workers,
                stopped: false,
                rows: 0,
                facts: Vec::new(),
            }),
            turns: Condvar::new(),
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
    /// Workers per partition.
    workers: usize,
    shared: Mutex<Shared>,
    /// Signalled when a partition's turn passes, or the read stops.
    turns: Condvar,
}

/// What the workers of a read share.
struct Shared {
    /// Opened by the first worker to ask for a chunk.
    chunker: Option<Chunker<CsvInput>>,
    /// The next Parquet row group to hand out.
    next_row_group: usize,
    /// Per partition: the units (chunks or row groups) handed out to its
    /// workers, and those it has output; the next to output is the one
    /// handed out at position `output[partition]`.
    handed_out: Vec<u64>,
    output: Vec<u64>,
    /// Workers not finished yet.
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

    /// The stream of partition `partition`, started with its workers.
    pub fn open(self: &Arc<Self>, partition: usize) -> SendableRecordBatchStream {
        let mut builder =
            RecordBatchReceiverStream::builder(Arc::clone(&self.schema), CHANNEL_BATCHES);
        for worker in 0..self.workers {
            let tx = builder.tx();
            let scan = Arc::clone(self);
            builder.spawn_blocking(move || {
                let mut pass = Pass::new(
                    &scan.source,
                    scan.projection.clone(),
                    Arc::clone(&scan.schema),
                );
                let first_worker = partition == 0 && worker == 0;
                // A decoder that panics on a damaged file (arrow-rs and
                // parquet-rs have) fails the read like any bad file; the
                // worker still finishes, so the others do not wait for it.
                let decode = std::panic::AssertUnwindSafe(|| match scan.source.file.format {
                    RawFormat::CsvGz => scan.parse_chunks(partition, &mut pass, &tx),
                    RawFormat::Parquet => {
                        scan.decode_row_groups(partition, first_worker, &mut pass, &tx)
                    }
                });
                let completed = std::panic::catch_unwind(decode).unwrap_or_else(|panic| {
                    Err(RawError::Damaged {
                        file: scan.source.file.path.to_string(),
                        message: crate::text::clip(&crate::text::panic_message(&panic), 200),
                    })
                });
                engine_error(scan.finish(completed, &pass))
            });
        }
        builder.build()
    }

    /// Ends a worker's part of the read (`completed`: no unit was left);
    /// the last worker of a complete read checks the file against its
    /// manifest and records the file's facts.
    fn finish(&self, completed: Result<bool, RawError>, pass: &Pass) -> Result<(), RawError> {
        let mut shared = self.lock();
        shared.running -= 1;
        if !matches!(completed, Ok(true)) {
            shared.stopped = true;
            // Workers waiting for a turn this one will never pass.
            self.turns.notify_all();
        }
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

    /// Parses chunks for `partition` until none is left (`Ok(true)`) or
    /// the read stops (`Ok(false)`).
    fn parse_chunks(
        &self,
        partition: usize,
        pass: &mut Pass,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<bool, RawError> {
        while let Some((chunk, turn)) = self.next_chunk(partition)? {
            let mut delivery = Delivery::new(self, partition, turn, tx);
            let mut decoder = self.chunk_decoder(&chunk, pass);
            while let Some(batch) = decoder.next_batch()? {
                if !delivery.send(pass.output(batch)?) {
                    return Ok(false);
                }
            }
            if !delivery.finish(chunk.index, decoder.rows(), pass.take_facts()) {
                return Ok(false);
            }
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

    /// Decodes row groups of a Parquet file for `partition` until none is
    /// left (`Ok(true)`) or the read stops (`Ok(false)`). The `first_worker`
    /// of the read also verifies the file's sha256 against the manifest.
    fn decode_row_groups(
        &self,
        partition: usize,
        first_worker: bool,
        pass: &mut Pass,
        tx: &Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Result<bool, RawError> {
        let source = &self.source;
        let file = &source.file;
        if let (true, Some(entry)) = (first_worker, &source.entry) {
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
        // The Arrow schema a writer may embed is not read: the contract's
        // types are checked against the Parquet schema itself, and decoding
        // a damaged embedded schema can panic.
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let open = || open().map(StrictEof);
        let input = open()?;
        let metadata = ArrowReaderMetadata::load(&input, options).map_err(parquet_error)?;
        check_parquet_layout(&pass.file, metadata.metadata(), input.len())?;
        check_parquet_schema(self.source.file.table, &pass.file, metadata.schema())?;
        let mask = ProjectionMask::roots(metadata.parquet_schema(), pass.decoded.iter().copied());
        let groups = metadata.metadata().num_row_groups();
        while let Some((group, turn)) = self.next_row_group(partition, groups) {
            check_parquet_pages(&name, &metadata, group, &mask, &input)?;
            let mut delivery = Delivery::new(self, partition, turn, tx);
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
                check_parquet_values(self.source.file.table, &name, group, &batch)?;
                rows += batch.num_rows() as u64;
                if !delivery.send(pass.output(batch)?) {
                    return Ok(false);
                }
            }
            if !delivery.finish(group, rows, pass.take_facts()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next row group of the file's `groups` for `partition`, with its
    /// turn among the partition's units.
    fn next_row_group(&self, partition: usize, groups: usize) -> Option<(usize, u64)> {
        let mut shared = self.lock();
        if shared.stopped || shared.next_row_group >= groups {
            return None;
        }
        let group = shared.next_row_group;
        shared.next_row_group += 1;
        Some((group, shared.hand_out(partition)))
    }

    /// The next chunk of the file for `partition`, with its turn among the
    /// partition's units; opens the file first if needed.
    fn next_chunk(&self, partition: usize) -> Result<Option<(Chunk, u64)>, RawError> {
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
                let source = &self.source;
                empty.insert(Chunker::new(gzip, source.chunk_bytes, source.max_row_bytes))
            }
        };
        let chunk = chunker.next_chunk().map_err(|e| match e {
            ChunkError::RowTooLong { line, max } => RawError::RowTooLong {
                file: file.path.to_string(),
                line,
                max,
            },
            ChunkError::Io(source) => RawError::Csv {
                file: file.path.to_string(),
                line: 0,
                message: format!("cannot decompress: {source}"),
            },
        })?;
        Ok(chunk.map(|chunk| (chunk, shared.hand_out(partition))))
    }

    /// Waits until `partition` outputs the unit handed out at `turn`; false
    /// when the read stopped instead.
    fn wait_for_turn(&self, partition: usize, turn: u64) -> bool {
        let mut shared = self.lock();
        while shared.output[partition] != turn && !shared.stopped {
            shared = self
                .turns
                .wait(shared)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        !shared.stopped
    }

    /// Whether `partition` outputs the unit handed out at `turn` now.
    fn is_turn(&self, partition: usize, turn: u64) -> bool {
        self.lock().output[partition] == turn
    }

    /// Records the unit `index` output by `partition` (its `rows` and
    /// `facts`) and passes the turn to the partition's next unit.
    fn pass_turn(&self, partition: usize, index: usize, rows: u64, facts: Option<ScanFacts>) {
        let mut shared = self.lock();
        shared.rows += rows;
        shared.facts.extend(facts.map(|f| (index, f)));
        shared.output[partition] += 1;
        self.turns.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    /// A unit for `partition`: its turn among the partition's units.
    fn hand_out(&mut self, partition: usize) -> u64 {
        let turn = self.handed_out[partition];
        self.handed_out[partition] += 1;
        turn
    }
}

/// A worker's output of one unit: its first batches are held until the
/// partition's earlier units are out, the rest sent as they come.
struct Delivery<'a> {
    scan: &'a Scan,
    partition: usize,
    turn: u64,
    tx: &'a Sender<datafusion::error::Result<RecordBatch>>,
    held: Vec<RecordBatch>,
    in_turn: bool,
}

impl<'a> Delivery<'a> {
    fn new(
        scan: &'a Scan,
        partition: usize,
        turn: u64,
        tx: &'a Sender<datafusion::error::Result<RecordBatch>>,
    ) -> Self {
        Delivery {
            scan,
            partition,
            turn,
            tx,
            held: Vec::new(),
            in_turn: false,
        }
    }

    /// Outputs `batch` in its turn; false when the read stopped or the
    /// consumer stopped listening.
    fn send(&mut self, batch: RecordBatch) -> bool {
        if !self.in_turn {
            self.held.push(batch);
            if self.held.len() < HELD_BATCHES && !self.scan.is_turn(self.partition, self.turn) {
                return true;
            }
            return self.take_turn();
        }
        self.tx.blocking_send(Ok(batch)).is_ok()
    }

    /// Waits for the turn, then outputs the held batches.
    fn take_turn(&mut self) -> bool {
        self.in_turn = self.scan.wait_for_turn(self.partition, self.turn);
        self.in_turn
            && std::mem::take(&mut self.held)
                .into_iter()
                .all(|batch| self.tx.blocking_send(Ok(batch)).is_ok())
    }

    /// Outputs what is held and passes the turn, recording the unit (file
    /// position `index`, `rows`, `facts`); false when the read stopped.
    fn finish(mut self, index: usize, rows: u64, facts: Option<ScanFacts>) -> bool {
        if !self.in_turn && !self.take_turn() {
            return false;
        }
        self.scan.pass_turn(self.partition, index, rows, facts);
        true
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

/// One worker's part of a read: which columns it decodes and outputs,
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

/// A worker's read error, for its stream (which reports it even when the
/// stream's channel is full). A consumer that stopped listening early (e.g.
/// after a LIMIT) is not an error.
fn engine_error(result: Result<(), RawError>) -> datafusion::error::Result<()> {
    result.map_err(|e| DataFusionError::External(Box::new(e)))
}

/// A blocking reader of the object: the file itself for a local raw zone,
/// otherwise the object store's byte stream bridged to `Read`.
pub(super) fn open_sync(raw: &Location, file: &RawFile) -> Result<Box<dyn Read + Send>, RawError> {
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

/// Every column chunk the footer names must lie within the file: the
/// decoder trusts these offsets (and panics on some it cannot use). The
/// chunks of a sound file are disjoint, so together they claim at most the
/// file's bytes: a footer whose chunks overlap would have the decoder read
/// the same bytes once per chunk.
fn check_parquet_layout(
    file: &str,
    metadata: &datafusion::parquet::file::metadata::ParquetMetaData,
    file_bytes: u64,
) -> Result<(), RawError> {
    let claimed: u64 = metadata
        .row_groups()
        .iter()
        .flat_map(|group| group.columns())
        .map(|chunk| u64::try_from(chunk.compressed_size()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add);
    if claimed > file_bytes {
        return Err(RawError::Damaged {
            file: file.to_string(),
            message: format!(
                "its column chunks claim {claimed} bytes, more than the file's {file_bytes}: the footer is damaged"
            ),
        });
    }
    for (group, row_group) in metadata.row_groups().iter().enumerate() {
        for chunk in row_group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            let length = chunk.compressed_size();
            let fits = u64::try_from(start)
                .ok()
                .zip(u64::try_from(length).ok())
                .and_then(|(start, length)| start.checked_add(length))
                .is_some_and(|end| end <= file_bytes);
            if !fits || row_group.num_rows() < 0 {
                return Err(RawError::Damaged {
                    file: file.to_string(),
                    message: format!(
                        "row group {group}: column {} lies outside the file",
                        crate::text::excerpt(chunk.column_path().string().as_bytes(), 60)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Checks the page headers of the columns of row `group` that `mask`
/// decodes ([`super::pages`]).
fn check_parquet_pages<T: ChunkReader>(
    file: &str,
    metadata: &ArrowReaderMetadata,
    group: usize,
    mask: &ProjectionMask,
    input: &T,
) -> Result<(), RawError> {
    let chunks = metadata.metadata().row_group(group).columns().iter();
    let decoded = chunks
        .enumerate()
        .filter(|(leaf, _)| mask.leaf_included(*leaf));
    for (_, chunk) in decoded {
        super::pages::check_chunk(input, chunk).map_err(|problem| RawError::ParquetPage {
            file: file.to_string(),
            group,
            column: crate::text::excerpt(chunk.column_path().string().as_bytes(), 60),
            problem,
        })?;
    }
    Ok(())
}

/// The values a Parquet type can hold but the contract's cannot: a DATE
/// outside years 1 to 9999 (the CSV form's four digits), a DECIMAL beyond
/// its precision.
fn check_parquet_values(
    table: Table,
    file: &str,
    group: usize,
    batch: &RecordBatch,
) -> Result<(), RawError> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, DecimalType as _};
    let dates = crate::raw::csv::days_since_epoch(FIRST_DATE)
        ..=crate::raw::csv::days_since_epoch(LAST_DATE);
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(column) = table.columns().iter().find(|c| c.name == field.name()) else {
            continue;
        };
        let bad = |problem: String| RawError::ParquetValue {
            file: file.to_string(),
            group,
            column: column.name,
            problem,
        };
        match column.kind {
            crate::schema::Kind::Date => {
                let values = array.as_primitive::<Date32Type>();
                if let Some(day) = values.iter().flatten().find(|d| !dates.contains(d)) {
                    return Err(bad(format!(
                        "{} is not a DATE from {FIRST_DATE} to {LAST_DATE}",
                        crate::raw::csv::show_days(day)
                    )));
                }
            }
            crate::schema::Kind::Decimal(precision, scale) => {
                let values = array.as_primitive::<Decimal128Type>();
                let limit = 10i128.pow(u32::from(precision));
                if let Some(value) = values
                    .iter()
                    .flatten()
                    .find(|v| v.unsigned_abs() >= limit.unsigned_abs())
                {
                    return Err(bad(format!(
                        "{} has more digits than DECIMAL({precision},{scale}) holds",
                        Decimal128Type::format_decimal(value, precision, scale)
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The range of a DATE in the raw zone.
const FIRST_DATE: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date");
const LAST_DATE: chrono::NaiveDate =
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date");

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
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex sha256 and the size of everything read.
    pub(super) fn finish(self) -> (String, u64) {
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

    /// A raw zone in a temporary folder.
    fn raw_zone(dir: &tempfile::TempDir) -> Location {
        Location::parse(
            &dir.path().display().to_string(),
            &crate::config::S3Config::default(),
        )
        .unwrap()
    }

    /// A source of the sales file at `path` in `dir`, without a manifest.
    fn sales_source(dir: &tempfile::TempDir, path: &str, format: RawFormat) -> RawSource {
        let file = RawFile {
            table: Table::Sales,
            format,
            path: path.into(),
            bytes: 0,
        };
        RawSource::new(raw_zone(dir), file, None, Arc::new(Quarantine::new(0)))
    }

    /// A Parquet sales file of 10 rows (trans_id 0 to 9) in row groups of 3.
    fn parquet_sales(dir: &tempfile::TempDir) -> RawSource {
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
        sales_source(dir, path, RawFormat::Parquet)
    }

    /// A gzip CSV sales file of `rows` rows (trans_id 0 on, several
    /// chunks for a few hundred thousand) with `last_line` as its last.
    fn csv_sales(dir: &tempfile::TempDir, rows: u64, last_line: &str) -> RawSource {
        use std::io::Write;
        let header: Vec<&str> = Table::Sales.columns().iter().map(|c| c.name).collect();
        let mut text = format!("{}\n", header.join(","));
        for id in 0..rows {
            text.push_str(&format!(
                "{id},1,1,2026-01-10,120000,1.00,2.00,2.00,0.00,1.00,1.00,0.00\n"
            ));
        }
        text.push_str(last_line);
        let path = "sales/sales_2026-01-10.csv.gz";
        std::fs::create_dir_all(dir.path().join("sales")).unwrap();
        let output = std::fs::File::create(dir.path().join(path)).unwrap();
        let mut gzip = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
        gzip.write_all(text.as_bytes()).unwrap();
        gzip.finish().unwrap();
        sales_source(dir, path, RawFormat::CsvGz)
    }

    /// The trans_id of every row of each of the read's partitions, read
    /// concurrently.
    async fn ids_per_partition(scan: Scan) -> datafusion::error::Result<Vec<Vec<i64>>> {
        let scan = Arc::new(scan);
        let reads = (0..scan.partitions()).map(|p| scan.open(p).try_collect::<Vec<_>>());
        let partitions = futures::future::try_join_all(reads).await?;
        Ok(partitions
            .iter()
            .map(|batches| {
                batches
                    .iter()
                    .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                    .collect()
            })
            .collect())
    }

    /// A Parquet file of several row groups, read by three partitions of
    /// two workers: every row comes once, each partition's in file order,
    /// and the facts are those of the whole file.
    #[tokio::test]
    async fn parquet_row_groups_are_split_between_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let source = parquet_sales(&dir);
        let partitions = ids_per_partition(source.scan(None, 3, 2)).await.unwrap();
        for ids in &partitions {
            assert!(ids.is_sorted(), "{ids:?}");
        }
        let mut ids = partitions.concat();
        ids.sort_unstable();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        let facts = source.facts().expect("a complete read records facts");
        assert!(facts.unique_key.holds());
        assert_eq!(facts.rows, 10);
        let per_date: Vec<u64> = facts.dates.values().map(|d| d.rows).collect();
        assert_eq!(per_date, [4, 4, 2]);
    }

    /// One partition decoded by several workers outputs the file's rows in
    /// file order, from CSV chunks and from Parquet row groups alike.
    #[tokio::test]
    async fn one_partition_of_several_workers_keeps_file_order() {
        let rows = 3 * CHUNK_BYTES as u64 / 60;
        let dir = tempfile::tempdir().unwrap();
        let csv = csv_sales(&dir, rows, "");
        let ids = ids_per_partition(csv.scan(None, 1, 3)).await.unwrap();
        assert_eq!(ids, [(0..rows as i64).collect::<Vec<_>>()]);
        assert_eq!(csv.facts().map(|f| f.rows), Some(rows));

        let parquet = parquet_sales(&dir);
        let ids = ids_per_partition(parquet.scan(None, 1, 3)).await.unwrap();
        assert_eq!(ids, [(0..10).collect::<Vec<_>>()]);
    }

    /// A bad row in a late chunk fails the read with its line, while the
    /// other workers wait for turns that never come: they stop, and the
    /// read records no facts.
    #[tokio::test]
    async fn a_failing_worker_stops_the_others() {
        let rows = 3 * CHUNK_BYTES as u64 / 60;
        let dir = tempfile::tempdir().unwrap();
        let bad = "x,1,1,2026-01-10,120000,1.00,2.00,2.00,0.00,1.00,1.00,0.00\n";
        let csv = csv_sales(&dir, rows, bad);
        let error = ids_per_partition(csv.scan(None, 1, 3))
            .await
            .expect_err("the bad row fails the read")
            .to_string();
        let line = rows + 2;
        assert!(error.contains(&format!("line {line}")), "{error}");
        assert!(error.contains("trans_id"), "{error}");
        assert!(csv.facts().is_none());
    }
}
