//! Reading records one after another from any `embedded-io` reader (a tape, a volume file, a
//! socket), with the stream offset of each for error messages and the index.

use embedded_io::{Read, ReadExactError};

use super::{FormatError, HEADER_LEN, Header, Record, decode_record};

/// Why the next record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: core::fmt::Debug> {
    /// The bytes are not a valid record.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The reader failed.
    #[error("read failed: {0:?}")]
    Io(E),
}

/// Reads records from a stream into a caller-provided buffer, one at a time.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    position: u64,
}

impl<R: Read> RecordReader<R> {
    /// Reads from `inner`, whose first byte is at stream offset `position`.
    pub fn new(inner: R, position: u64) -> Self {
        RecordReader { inner, position }
    }

    /// Stream offset of the next record.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the next record into `buf` and decodes it. `Ok(None)` at a clean end of stream
    /// (no byte of a new record); a stream that ends inside a record is `Truncated`. A record
    /// larger than `buf` is refused before its payload is read.
    #[allow(clippy::type_complexity)]
    pub fn next<'b>(&mut self, buf: &'b mut [u8]) -> Result<Option<(Record<'b>, u64)>, ReadError<R::Error>> {
        let at = self.position;
        if buf.len() < HEADER_LEN {
            return Err(FormatError::BufferTooSmall { need: HEADER_LEN, have: buf.len() }.into());
        }
        let got = self.fill(&mut buf[..HEADER_LEN])?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            let needed = (HEADER_LEN - got) as u64;
            return Err(FormatError::Truncated { offset: at, needed }.into());
        }
        let head = buf.first_chunk::<HEADER_LEN>().expect("header read");
        let (header, _) = Header::decode(head, at)?;
        let total = HEADER_LEN + header.stored_len as usize;
        if buf.len() < total {
            return Err(FormatError::BufferTooSmall { need: total, have: buf.len() }.into());
        }
        match self.inner.read_exact(&mut buf[HEADER_LEN..total]) {
            Ok(()) => {}
            Err(ReadExactError::UnexpectedEof) => {
                return Err(FormatError::Truncated { offset: at, needed: header.stored_len as u64 }.into());
            }
            Err(ReadExactError::Other(e)) => return Err(ReadError::Io(e)),
        }
        self.position += total as u64;
        let (record, used) = decode_record(&buf[..total], at)?;
        debug_assert_eq!(used, total);
        Ok(Some((record, at)))
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ReadError<R::Error>> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]).map_err(ReadError::Io)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }
}
