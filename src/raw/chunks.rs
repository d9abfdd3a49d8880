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
}

impl<R: Read> Chunker<R> {
    /// Chunks of about `chunk_bytes` of `input`.
    pub fn new(input: R, chunk_bytes: usize) -> Self {
        Chunker {
            input,
            carry: Vec::new(),
            next_index: 0,
            next_line: 1,
            at_end: false,
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    /// The next chunk; `None` after the last. The first chunk always comes,
    /// even for an empty stream, so that its missing header is reported.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut bytes = std::mem::take(&mut self.carry);
        let cut = loop {
            if !self.at_end && bytes.len() < self.chunk_bytes {
                self.fill(&mut bytes)?;
                continue;
            }
            if self.at_end {
                break bytes.len();
            }
            match end_of_last_row(&bytes) {
                Some(end) => break end,
                // A row longer than a chunk: read on.
                None => self.fill(&mut bytes)?,
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

/// The length of the longest prefix of `bytes` that ends with a newline
/// outside quotes; `bytes` starts outside quotes.
fn end_of_last_row(bytes: &[u8]) -> Option<usize> {
    if memchr::memchr(b'"', bytes).is_none() {
        // No quotes (the common case): the last newline ends a row.
        return memchr::memrchr(b'\n', bytes).map(|at| at + 1);
    }
    let mut quoted = false;
    let mut end = None;
    for at in memchr2_iter(b'"', b'\n', bytes) {
        match bytes[at] {
            b'"' => quoted = !quoted,
            _ if !quoted => end = Some(at + 1),
            _ => {}
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str, size: usize) -> Vec<(usize, u64, String)> {
        let mut chunker = Chunker::new(text.as_bytes(), size);
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

    #[test]
    fn an_empty_stream_has_one_empty_chunk() {
        assert_eq!(chunks("", 4), vec![(0, 1, String::new())]);
    }
}
