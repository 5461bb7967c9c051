//! What the journal needs from storage: a directory of files, each readable and writable at an
//! offset, with a durability point. Two implementations: [`super::UringDir`] (production) and
//! [`super::MemDir`] (tests: keeps written and durable bytes apart to model crashes).

use std::io;

/// One journal file.
#[allow(clippy::len_without_is_empty)]
pub trait Storage {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed. Not durable until
    /// [`Storage::sync`] returns.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// Cuts the file to `len` bytes (durable after the next sync).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The directory holding the journal's files.
pub trait Dir {
    /// A file in it.
    type File: Storage;
    /// Opens an existing file for reading and writing; `None` if there is none.
    fn open(&self, name: &str) -> io::Result<Option<Self::File>>;
    /// Creates a new empty file (replacing any old one); its name is durable on return.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Names of all files.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes a file; durable on return.
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at<S: Storage>(s: &mut S, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match s.read_at(offset, buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                offset += n as u64;
                buf = &mut buf[n..];
            }
        }
    }
    Ok(())
}
