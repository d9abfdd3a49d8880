//! The page headers of a Parquet column chunk, checked before the decoder
//! reads the pages.
//!
//! The Parquet decoder trusts a page header's sizes: it allocates and zeroes
//! the uncompressed size a header declares (up to 2 GiB, per column), and
//! its gzip, Brotli and LZ4-frame codecs decompress until their stream ends,
//! whatever the header said (the fuzz target found a 60 KB file that took
//! 3 GB this way). So each page header of the columns a read decodes is read
//! here first: its declared size must be at most [`MAX_PAGE_BYTES`], its
//! bytes must lie inside the column chunk, and a page of one of those three
//! codecs is decompressed once, bounded, to check it stops at that size.
//!
//! Headers are Thrift structures in the compact protocol; only the fields
//! the check needs are kept, the others are skipped.

use std::io::{self, Read};

use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::ColumnChunkMetaData;
use datafusion::parquet::file::reader::ChunkReader;

/// The largest page, uncompressed, that a read accepts: 64 times the
/// default of the common writers (Arrow, Spark, DuckDB write pages of about
/// 1 MiB).
pub const MAX_PAGE_BYTES: usize = 64 << 20;

/// Nesting deeper than this in a page header is damage, not Parquet.
const MAX_DEPTH: u32 = 16;

/// Thrift's `PageType::INDEX_PAGE`: never decoded, so never decompressed.
const INDEX_PAGE: i32 = 1;

/// Why a column chunk's pages are refused.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(
        "a page of {bytes} bytes uncompressed, over the {} MiB a read accepts: write the file with smaller pages (the common writers' default is 1 MiB)",
        MAX_PAGE_BYTES >> 20
    )]
    TooLarge { bytes: i64 },
    #[error(
        "a page decompresses to more than the {declared} bytes its header declares: the file is damaged; extract the date again"
    )]
    Inflates { declared: i64 },
    #[error(
        "a page runs past the end of its column chunk: the file is damaged; extract the date again"
    )]
    OutsideChunk,
    #[error("a page header cannot be read ({0}): the file is damaged; extract the date again")]
    Header(io::Error),
}

/// Checks every page of `chunk` in `input`.
pub fn check_chunk<T: ChunkReader>(
    input: &T,
    chunk: &ColumnChunkMetaData,
) -> Result<(), PageError> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset());
    let (Ok(mut offset), Ok(mut left)) =
        (u64::try_from(start), u64::try_from(chunk.compressed_size()))
    else {
        return Err(PageError::OutsideChunk);
    };
    while left > 0 {
        let read = input
            .get_read(offset)
            .map_err(|e| PageError::Header(io::Error::other(e)))?;
        let mut thrift = Compact::new(read.take(left));
        let header = thrift.page_header().map_err(PageError::Header)?;
        let data = u64::try_from(header.compressed).map_err(|_| PageError::OutsideChunk)?;
        let used = thrift
            .consumed
            .checked_add(data)
            .filter(|&used| used <= left);
        let used = used.ok_or(PageError::OutsideChunk)?;
        if header.uncompressed < 0 || header.uncompressed > MAX_PAGE_BYTES as i64 {
            return Err(PageError::TooLarge {
                bytes: header.uncompressed,
            });
        }
        check_inflation(
            input,
            chunk.compression(),
            offset + thrift.consumed,
            &header,
        )?;
        offset += used;
        left -= used;
    }
    Ok(())
}

/// For the codecs that decompress to the end of their stream, checks that
/// the page's stream ends within its declared size. A stream that fails to
/// decompress is left to the decoder, which reports it.
fn check_inflation<T: ChunkReader>(
    input: &T,
    codec: Compression,
    data_start: u64,
    header: &PageHeader,
) -> Result<(), PageError> {
    if header.kind == INDEX_PAGE || !header.compressed_data {
        return Ok(());
    }
    let decoder: fn(&[u8]) -> Box<dyn Read + '_> = match codec {
        Compression::GZIP(_) => |data| Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::BROTLI(_) => |data| Box::new(brotli::Decompressor::new(data, 4096)),
        Compression::LZ4 => |data| Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        _ => return Ok(()),
    };
    let length = usize::try_from(header.compressed).unwrap_or(usize::MAX);
    let data = input
        .get_bytes(data_start, length)
        .map_err(|e| PageError::Header(io::Error::other(e)))?;
    let levels = usize::try_from(header.uncompressed_levels).ok();
    let Some(compressed) = levels.and_then(|levels| data.get(levels..)) else {
        return Err(PageError::Header(damaged("level bytes beyond the page")));
    };
    let limit = u64::try_from(header.uncompressed).unwrap_or(0) + 1;
    let produced = io::copy(&mut decoder(compressed).take(limit), &mut io::sink());
    match produced {
        Ok(bytes) if bytes == limit => Err(PageError::Inflates {
            declared: header.uncompressed,
        }),
        _ => Ok(()),
    }
}

/// The fields of a page header that the check uses.
#[derive(Debug, Default, PartialEq)]
struct PageHeader {
    kind: i32,
    uncompressed: i64,
    compressed: i64,
    /// A version 2 data page's level bytes, stored before its values and
    /// never compressed.
    uncompressed_levels: i64,
    /// Whether the page's values are compressed (only version 2 pages may
    /// say they are not).
    compressed_data: bool,
}

/// Compact-protocol Thrift read from a byte stream, counting the bytes.
struct Compact<R> {
    read: R,
    consumed: u64,
}

/// Compact-protocol type codes.
mod kind {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
}

impl<R: Read> Compact<R> {
    fn new(read: R) -> Self {
        Compact { read, consumed: 0 }
    }

    /// A `PageHeader`: 1 type, 2 uncompressed size, 3 compressed size,
    /// 8 the version 2 data page header. Read as the decoder reads it: a
    /// field by its id alone, the last copy of a repeated field winning;
    /// but a value of the wrong type or outside an i32, which the decoder
    /// would truncate, is damage.
    fn page_header(&mut self) -> io::Result<PageHeader> {
        let mut header = PageHeader {
            compressed_data: true,
            ..PageHeader::default()
        };
        let (mut definition, mut repetition) = (0i64, 0i64);
        self.fields(0, &mut |thrift, id, kind| {
            match id {
                1 => header.kind = thrift.i32_field(kind)?,
                2 => header.uncompressed = i64::from(thrift.i32_field(kind)?),
                3 => header.compressed = i64::from(thrift.i32_field(kind)?),
                8 => {
                    if kind != kind::STRUCT {
                        return Err(damaged("a field of the wrong type"));
                    }
                    thrift.fields(1, &mut |thrift, id, kind| {
                        match id {
                            5 => definition = i64::from(thrift.i32_field(kind)?),
                            6 => repetition = i64::from(thrift.i32_field(kind)?),
                            7 => header.compressed_data = thrift.bool_field(kind)?,
                            _ => thrift.skip(kind, 1)?,
                        }
                        Ok(())
                    })?
                }
                _ => thrift.skip(kind, 0)?,
            }
            Ok(())
        })?;
        header.uncompressed_levels = definition + repetition;
        Ok(header)
    }

    /// An i32 field's value; another type is damage.
    fn i32_field(&mut self, kind: u8) -> io::Result<i32> {
        if kind != kind::I32 {
            return Err(damaged("a field of the wrong type"));
        }
        i32::try_from(self.int()?).map_err(|_| damaged("an i32 field out of range"))
    }

    /// A boolean field's value, which its type carries.
    fn bool_field(&mut self, kind: u8) -> io::Result<bool> {
        match kind {
            kind::TRUE => Ok(true),
            kind::FALSE => Ok(false),
            _ => Err(damaged("a field of the wrong type")),
        }
    }

    /// Reads a structure's fields up to its stop byte, passing each field's
    /// id and type to `field`, which reads or skips its value.
    fn fields(
        &mut self,
        depth: u32,
        field: &mut dyn FnMut(&mut Self, i16, u8) -> io::Result<()>,
    ) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(damaged("nested too deeply"));
        }
        let mut id: i16 = 0;
        loop {
            let byte = self.byte()?;
            if byte == 0 {
                return Ok(());
            }
            let delta = byte >> 4;
            id = match delta {
                0 => i16::try_from(self.int()?).map_err(|_| damaged("a field id out of range"))?,
                _ => id
                    .checked_add(i16::from(delta))
                    .ok_or_else(|| damaged("a field id out of range"))?,
            };
            field(self, id, byte & 0x0f)?;
        }
    }

    /// Skips a value of `kind` (a field's: booleans carry their value in the
    /// type).
    fn skip(&mut self, kind: u8, depth: u32) -> io::Result<()> {
        match kind {
            kind::TRUE | kind::FALSE => Ok(()),
            _ => self.skip_element(kind, depth),
        }
    }

    /// Skips a value of `kind` inside a list, set or map, where a boolean
    /// takes a byte.
    fn skip_element(&mut self, kind: u8, depth: u32) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(damaged("nested too deeply"));
        }
        match kind {
            kind::TRUE | kind::FALSE | kind::BYTE => self.byte().map(drop),
            kind::I16 | kind::I32 | kind::I64 => self.varint().map(drop),
            kind::DOUBLE => self.skip_bytes(8),
            kind::BINARY => {
                let length = self.varint()?;
                self.skip_bytes(length)
            }
            kind::LIST | kind::SET => {
                let header = self.byte()?;
                let count = match header >> 4 {
                    15 => self.varint()?,
                    count => u64::from(count),
                };
                (0..count).try_for_each(|_| self.skip_element(header & 0x0f, depth + 1))
            }
            kind::MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                (0..count).try_for_each(|_| {
                    self.skip_element(kinds >> 4, depth + 1)?;
                    self.skip_element(kinds & 0x0f, depth + 1)
                })
            }
            kind::STRUCT => self.fields(depth + 1, &mut |thrift, _, kind| {
                thrift.skip(kind, depth + 1)
            }),
            _ => Err(damaged("an unknown field type")),
        }
    }

    /// A zigzag-encoded integer.
    fn int(&mut self) -> io::Result<i64> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(damaged("an integer too long"))
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8];
        self.read.read_exact(&mut byte)?;
        self.consumed += 1;
        Ok(byte[0])
    }

    fn skip_bytes(&mut self, count: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.read).take(count), &mut io::sink())?;
        self.consumed += skipped;
        match skipped == count {
            true => Ok(()),
            false => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use bytes::Bytes;
    use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
    use datafusion::parquet::file::properties::{WriterProperties, WriterVersion};
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::schema::parser::parse_message_type;
    use datafusion::parquet::schema::types::SchemaDescriptor;

    use super::*;

    /// A file of a text and a number column, in small pages of `codec`.
    fn written(codec: Compression, version: WriterVersion) -> Bytes {
        let names: Vec<String> = (0..5000).map(|i| format!("store {}", i % 97)).collect();
        let batch = RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("qty", Arc::new(Int32Array::from_iter(0..5000)) as ArrayRef),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_compression(codec)
            .set_writer_version(version)
            .set_data_page_size_limit(1024)
            .set_write_batch_size(100)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    #[test]
    fn the_pages_of_every_codec_and_page_version_pass() {
        let codecs = [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
            Compression::ZSTD(ZstdLevel::default()),
        ];
        for codec in codecs {
            for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
                let file = written(codec, version);
                let reader = SerializedFileReader::new(file.clone()).unwrap();
                let group = reader.metadata().row_group(0);
                let pages = reader
                    .get_row_group(0)
                    .unwrap()
                    .get_column_page_reader(1)
                    .unwrap();
                assert!(pages.count() > 2, "{codec:?}: several pages");
                for chunk in group.columns() {
                    let checked = check_chunk(&file, chunk);
                    assert!(checked.is_ok(), "{codec:?} {version:?}: {checked:?}");
                }
            }
        }
    }

    /// A page header in the compact protocol: type, sizes and `extra`
    /// fields before its stop byte.
    fn header(kind: i32, uncompressed: i32, compressed: i32, extra: &[u8]) -> Vec<u8> {
        let zigzag = |value: i32| {
            let mut raw = ((value << 1) ^ (value >> 31)) as u32;
            let mut bytes = Vec::new();
            while raw >= 0x80 {
                bytes.push((raw as u8) | 0x80);
                raw >>= 7;
            }
            bytes.push(raw as u8);
            bytes
        };
        let mut bytes = vec![0x15];
        bytes.extend(zigzag(kind));
        bytes.push(0x15);
        bytes.extend(zigzag(uncompressed));
        bytes.push(0x15);
        bytes.extend(zigzag(compressed));
        bytes.extend_from_slice(extra);
        bytes.push(0);
        bytes
    }

    /// `body` as the only column chunk of a file, compressed with `codec`.
    fn only_chunk(body: &[u8], codec: Compression) -> (Bytes, ColumnChunkMetaData) {
        let schema = parse_message_type("message m { required int32 qty; }").unwrap();
        let column = SchemaDescriptor::new(Arc::new(schema)).column(0);
        let metadata = ColumnChunkMetaData::builder(column)
            .set_compression(codec)
            .set_data_page_offset(0)
            .set_total_compressed_size(body.len() as i64)
            .build()
            .unwrap();
        (Bytes::copy_from_slice(body), metadata)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_page_declaring_more_than_the_limit_is_refused() {
        let mut body = header(0, i32::MAX, 4, &[]);
        body.extend_from_slice(b"abcd");
        let (file, chunk) = only_chunk(&body, Compression::SNAPPY);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(matches!(error, PageError::TooLarge { bytes } if bytes == i64::from(i32::MAX)));
        assert!(error.to_string().contains("64 MiB"), "{error}");
    }

    #[test]
    fn a_page_that_inflates_past_its_declared_size_is_refused() {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let mut body = header(0, 1000, bomb.len() as i32, &[]);
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(
            matches!(error, PageError::Inflates { declared: 1000 }),
            "{error}"
        );
        // The same stream, honestly declared, passes.
        let mut body = header(0, 8 << 20, bomb.len() as i32, &[]);
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        assert!(check_chunk(&file, &chunk).is_ok());
    }

    #[test]
    fn a_version_2_page_is_checked_after_its_level_bytes() {
        let bomb = gzip(&vec![0u8; 1 << 20]);
        // Field 8, a DataPageHeaderV2 whose fields 5 and 6 give 2 + 1 level
        // bytes (fields 1 to 4 are required but not read by the check).
        let v2 = [0x5c, 0x55, 0x04, 0x15, 0x02, 0x00];
        let mut body = header(3, 100, 3 + bomb.len() as i32, &v2);
        body.extend_from_slice(b"lev");
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(
            matches!(error, PageError::Inflates { declared: 100 }),
            "{error}"
        );
        // Values stored uncompressed (field 7 false) are not decompressed.
        let v2 = [0x5c, 0x55, 0x04, 0x15, 0x02, 0x12, 0x00];
        let mut body = header(3, 100, 3 + bomb.len() as i32, &v2);
        body.extend_from_slice(b"lev");
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        assert!(check_chunk(&file, &chunk).is_ok());
    }

    #[test]
    fn sizes_the_decoder_would_read_otherwise_are_refused() {
        // The uncompressed size again as an i64 (the decoder matches fields
        // by id and would truncate it to an i32).
        let as_i64 = [0x06, 0x04, 0xfe, 0xff, 0xff, 0xff, 0x0f];
        let (file, chunk) = only_chunk(&header(0, 10, 0, &as_i64), Compression::SNAPPY);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(error.to_string().contains("wrong type"), "{error}");
        // Version 2 level bytes beyond the page.
        let bomb = gzip(&[0u8; 1024]);
        let v2 = [0x5c, 0x55, 0x90, 0x03, 0x00];
        let mut body = header(3, 100, bomb.len() as i32, &v2);
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(error.to_string().contains("beyond the page"), "{error}");
        // A later copy of is_compressed wins, as in the decoder.
        let bomb = gzip(&vec![0u8; 1 << 20]);
        let v2 = [0x5c, 0x55, 0x00, 0x15, 0x00, 0x12, 0x01, 0x0e, 0x00];
        let mut body = header(3, 100, bomb.len() as i32, &v2);
        body.extend_from_slice(&bomb);
        let (file, chunk) = only_chunk(&body, Compression::GZIP(GzipLevel::default()));
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(matches!(error, PageError::Inflates { .. }), "{error}");
    }

    #[test]
    fn pages_outside_their_chunk_or_damaged_headers_are_refused() {
        let body = header(0, 10, 1000, &[]);
        let (file, chunk) = only_chunk(&body, Compression::UNCOMPRESSED);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(matches!(error, PageError::OutsideChunk), "{error}");
        // A header that declares a list of two billion values at the end of
        // its chunk fails at once.
        let list = [0x19, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x07];
        let (file, chunk) = only_chunk(&header(0, 10, 0, &list), Compression::UNCOMPRESSED);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(matches!(error, PageError::Header(_)), "{error}");
        // Lists of lists, a byte a level, fail before the stack runs out.
        let lists = [0x19; 20_000];
        let (file, chunk) = only_chunk(&header(0, 10, 0, &lists), Compression::UNCOMPRESSED);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(error.to_string().contains("nested too deeply"), "{error}");
        let deep = [0x1c; 40];
        let (file, chunk) = only_chunk(&header(0, 10, 0, &deep), Compression::UNCOMPRESSED);
        let error = check_chunk(&file, &chunk).unwrap_err();
        assert!(error.to_string().contains("nested too deeply"), "{error}");
    }
}
