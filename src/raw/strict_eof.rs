//! A Parquet input that fails a read past its end instead of returning
//! nothing.
//!
//! The Parquet decoder skips the fields of a page header it does not use
//! with reads that stop quietly at the end of the input, so a header that
//! declares a list of two billion 16-byte values at the very end of a file
//! has it "skip" them one by one, for minutes, on a few bytes (found by the
//! fuzz target: 14 KB took 14 s). A header never legitimately extends past
//! the end of the file, so failing that read turns the spin into the
//! file's error at once.

use std::io::Read;

use bytes::Bytes;
use datafusion::parquet::errors::Result;
use datafusion::parquet::file::reader::{ChunkReader, Length};

/// `T`, whose readers fail at the end of the input.
pub struct StrictEof<T>(pub T);

impl<T: Length> Length for StrictEof<T> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<T: ChunkReader> ChunkReader for StrictEof<T> {
    type T = StrictRead<T::T>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(StrictRead(self.0.get_read(start)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// A reader whose read at the end of its input is an error.
pub struct StrictRead<R>(R);

impl<R: Read> Read for StrictRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 if !buf.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a page header runs past the end of the file",
            )),
            read => Ok(read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_with_an_error_at_the_end() {
        let input = StrictEof(Bytes::from_static(b"abc"));
        let mut read = input.get_read(1).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read.read(&mut buf).unwrap(), 2);
        let error = read.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        // Skipping, as the decoder does, fails instead of spinning.
        let mut skip = input.get_read(3).unwrap().take(16);
        assert!(std::io::copy(&mut skip, &mut std::io::sink()).is_err());
        assert_eq!(input.get_bytes(0, 3).unwrap(), Bytes::from_static(b"abc"));
    }
}
