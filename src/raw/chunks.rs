//! Cuts a CSV byte stream into chunks of whole rows, so that several
//! threads can parse one file: one at a time takes the next chunk (and
//! decompresses it), all parse theirs at once.
//!
//! A cut falls only after a newline outside quotes (RFC 4180: a quoted field
//! may hold newlines, and a doubled `""` keeps the quote count even), and
//! each chunk knows the file line it starts on, so errors still name the
//! right line.

use std::io::Read;

use memchr::memchr2_iter;

/// Decompressed bytes per chunk, before extending to the end of a row.
pub const CHUNK_BYTES: usize = 4 << 20;

/// A run of whole rows of the file.
#[derive(Debug)]
pub struct Chunk {
    /// Position in the file: 0 for the first chunk, which holds the header.
    pub index: usize,
    /// The file line the chunk starts on (1-based).
    pub first_line: u64,
    pub bytes: Vec<u8>,
}

/// Hands out the chunks of a stream in order.
pub struct Chunker<R> {
    input: R,
    /// Bytes read past the end of the last chunk.
    carry: Vec<u8>,
    next_index: usize,
    next_line: u64,
    at_end: bool,
    chunk_bytes: usize,
    max_row: usize,
    /// A chunk failed: the stream's position is lost, so no further chunk
    /// comes (several workers share a chunker; the first error is the
    /// one to report).
    failed: bool,
}

/// Why no chunk came.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("cannot decompress: {0}")]
    Io(#[from] std::io::Error),
    /// No newline outside quotes within `max` bytes from the row's start
    /// (a missing newline, an unclosed quote).
    #[error("the row starting here is longer than {max} bytes")]
    RowTooLong { line: u64, max: usize },
}

impl<R: Read> Chunker<R> {
    /// Chunks of about `chunk_bytes` of `input`, none of whose rows may be
    /// longer than `max_row` bytes: memory stays bounded by both, whatever
    /// the input.
    pub fn new(input: R, chunk_bytes: usize, max_row: usize) -> Self {
        Chunker {
            input,
            carry: Vec::new(),
            next_index: 0,
            next_line: 1,
            at_end: false,
            chunk_bytes: chunk_bytes.max(1),
            max_row: max_row.max(1),
            failed: false,
        }
    }

    /// The line the next chunk starts on.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// The next chunk; `None` after the last, or after an error. The first
    /// chunk always comes, even for an empty stream, so that its missing
    /// header is reported.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, ChunkError> {
        if self.failed {
            return Ok(None);
        }
        let next = self.cut();
        self.failed = next.is_err();
        next
    }

    fn cut(&mut self) -> Result<Option<Chunk>, ChunkError> {
        let mut bytes = std::mem::take(&mut self.carry);
        let cut = loop {
            if !self.at_end && bytes.len() < self.chunk_bytes {
                self.fill(&mut bytes)?;
                continue;
            }
            let (end, longest) = row_ends(&bytes, self.max_row);
            // A whole row too long, or the bytes past the last row end (one
            // row, however long the input goes on) beyond the limit.
            if let Some(start) = longest {
                return Err(self.row_too_long(&bytes, start));
            }
            if bytes.len() - end.unwrap_or(0) > self.max_row {
                return Err(self.row_too_long(&bytes, end.unwrap_or(0)));
            }
            match (end, self.at_end) {
                (_, true) => break bytes.len(),
                (Some(end), false) => break end,
                // A row longer than a chunk: read on.
                (None, false) => self.fill(&mut bytes)?,
            }
        };
        if bytes.is_empty() && self.next_index > 0 {
            return Ok(None);
        }
        self.carry = bytes.split_off(cut);
        let chunk = Chunk {
            index: self.next_index,
            first_line: self.next_line,
            bytes,
        };
        self.next_index += 1;
        self.next_line += memchr::memchr_iter(b'\n', &chunk.bytes).count() as u64;
        Ok(Some(chunk))
    }

    /// The error for the over-long row that starts at `start` in `bytes`.
    fn row_too_long(&self, bytes: &[u8], start: usize) -> ChunkError {
        let before = &bytes[..start];
        ChunkError::RowTooLong {
            line: self.next_line + memchr::memchr_iter(b'\n', before).count() as u64,
            max: self.max_row,
        }
    }

    /// The input, e.g. to finish a checksum after the last chunk.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// Reads up to a chunk's worth more onto `bytes`; notes the end of input.
    fn fill(&mut self, bytes: &mut Vec<u8>) -> std::io::Result<()> {
        let wanted = self.chunk_bytes.max(bytes.len());
        // One allocation per chunk, rather than read_to_end's doubling.
        bytes.reserve(wanted);
        let read = (&mut self.input).take(wanted as u64).read_to_end(bytes)?;
        if read == 0 {
            self.at_end = true;
        }
        Ok(())
    }
}

/// The data rows of a CSV stream (its header excluded; empty lines, which
/// the reader skips, not counted), with rows of at most `max_row` bytes.
pub fn count_rows(input: impl Read, max_row: usize) -> Result<u64, ChunkError> {
    let mut chunker = Chunker::new(input, CHUNK_BYTES, max_row);
    let mut rows = 0u64;
    while let Some(chunk) = chunker.next_chunk()? {
        rows += rows_in(&chunk.bytes);
    }
    Ok(rows.saturating_sub(1))
}

/// The non-empty rows of whole rows `bytes` (the last may lack its
/// newline); `bytes` starts outside quotes.
fn rows_in(bytes: &[u8]) -> u64 {
    let mut rows = 0;
    let mut quoted = false;
    let mut row_start = 0;
    for at in memchr2_iter(b'"', b'\n', bytes) {
        match bytes[at] {
            b'"' => quoted = !quoted,
            _ if !quoted => {
                let row = &bytes[row_start..at];
                rows += u64::from(!row.is_empty() && row != b"\r");
                row_start = at + 1;
            }
            _ => {}
        }
    }
    rows + u64::from(row_start < bytes.len())
}

/// The length of the longest prefix of `bytes` that ends with a newline
/// outside quotes, and where the first whole row longer than `max_row`
/// starts, if one is; `bytes` starts outside quotes.
fn row_ends(bytes: &[u8], max_row: usize) -> (Option<usize>, Option<usize>) {
    let quoted = memchr::memchr(b'"', bytes).is_some();
    if !quoted && bytes.len() <= max_row {
        // No quotes and no room for a long row (the common case with small
        // chunks): the last newline ends a row.
        return (memchr::memrchr(b'\n', bytes).map(|at| at + 1), None);
    }
    let mut in_quotes = false;
    let (mut end, mut longest) = (None, None);
    let mut row_start = 0;
    for at in memchr2_iter(b'"', b'\n', bytes) {
        match bytes[at] {
            b'"' => in_quotes = !in_quotes,
            _ if !in_quotes => {
                if longest.is_none() && at + 1 - row_start > max_row {
                    longest = Some(row_start);
                }
                row_start = at + 1;
                end = Some(row_start);
            }
            _ => {}
        }
    }
    (end, longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str, size: usize) -> Vec<(usize, u64, String)> {
        let mut chunker = Chunker::new(text.as_bytes(), size, 1 << 20);
        let mut out = Vec::new();
        while let Some(c) = chunker.next_chunk().unwrap() {
            out.push((c.index, c.first_line, String::from_utf8(c.bytes).unwrap()));
        }
        out
    }

    #[test]
    fn cuts_after_whole_rows_and_counts_lines() {
        let got = chunks("h\na,1\nb,2\nc,3\n", 6);
        let texts: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(texts.concat(), "h\na,1\nb,2\nc,3\n");
        assert!(texts.iter().all(|t| t.ends_with('\n')), "{texts:?}");
        let lines: Vec<u64> = got.iter().map(|(_, line, _)| *line).collect();
        let expected: Vec<u64> = texts
            .iter()
            .scan(1, |line, t| {
                let first = *line;
                *line += t.matches('\n').count() as u64;
                Some(first)
            })
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn never_cuts_inside_quotes() {
        let text = "h\n\"x\ny\",1\n\"\"\"q\"\"\",2\nlast,3";
        for size in 1..text.len() + 2 {
            let got = chunks(text, size);
            let joined: String = got.iter().map(|(_, _, t)| t.as_str()).collect();
            assert_eq!(joined, text, "size {size}");
            for (_, _, t) in &got {
                assert_eq!(t.matches('"').count() % 2, 0, "size {size}: {t:?}");
            }
        }
    }

    /// No newline, or an unclosed quote, fails once the row passes the
    /// limit, naming the line it starts on, without reading the rest.
    #[test]
    fn a_row_longer_than_the_limit_fails_naming_its_line() {
        for text in [
            format!("h\na,1\nb,2\n{}", "x".repeat(1000)),
            format!("h\na,1\n\"b,2\n{}\nc,3\n", "x\n".repeat(500)),
        ] {
            let mut chunker = Chunker::new(text.as_bytes(), 8, 100);
            let error = loop {
                match chunker.next_chunk() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("no error for {text:?}"),
                    Err(e) => break e,
                }
            };
            assert!(
                matches!(error, ChunkError::RowTooLong { line, max: 100 } if line == 4 - u64::from(text.contains('"'))),
                "{error:?}"
            );
        }
        // A long row within a chunk fails as well as one across chunks.
        let text = format!("h\na,1\n{}\nb,2\n", "x".repeat(300));
        let mut chunker = Chunker::new(text.as_bytes(), 1 << 20, 100);
        assert!(matches!(
            chunker.next_chunk(),
            Err(ChunkError::RowTooLong { line: 3, max: 100 })
        ));
        // An endless input without a newline is not read to its end, and
        // after the error no chunk comes from the middle of the row (the
        // other workers of a read share the chunker).
        let endless = std::io::repeat(b'x');
        let mut chunker = Chunker::new(endless, 1 << 10, 1 << 12);
        assert!(matches!(
            chunker.next_chunk(),
            Err(ChunkError::RowTooLong { line: 1, .. })
        ));
        assert!(chunker.next_chunk().unwrap().is_none());
    }

    #[test]
    fn rows_are_counted_outside_quotes_without_the_header() {
        let text = "h\n\"x\ny\",1\n\n\"\"\"q\"\"\",2\r\nlast,3";
        assert_eq!(count_rows(text.as_bytes(), 1 << 10).unwrap(), 3);
        assert_eq!(count_rows("h\n".as_bytes(), 1 << 10).unwrap(), 0);
        assert_eq!(count_rows("".as_bytes(), 1 << 10).unwrap(), 0);
    }

    #[test]
    fn an_empty_stream_has_one_empty_chunk() {
        assert_eq!(chunks("", 4), vec![(0, 1, String::new())]);
    }
}
