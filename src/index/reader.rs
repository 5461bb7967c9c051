//! Reading an index file: [`IndexFile`] holds the open file and its decoded directory; an
//! [`Entries`] iterator reads blocks one at a time, all of them or only those a path prefix
//! can be in.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::block::decode_block;
use super::codec::{BlockInfo, Footer, Header, decode_directory};
use super::error::{DecodeError, IndexError};
use super::{Entry, FRAME_LEN};

/// An open index file: the file and its decoded directory.
#[derive(Debug)]
pub struct IndexFile {
    file: File,
    path: PathBuf,
    footer: Footer,
    blocks: Vec<BlockInfo>,
}

impl IndexFile {
    /// Opens `path`, reading and checking its header, footer and directory.
    pub fn open(path: &Path) -> Result<IndexFile, IndexError> {
        let file = File::open(path).map_err(IndexError::io(path, "open"))?;
        let file_len = file.metadata().map_err(IndexError::io(path, "stat"))?.len();
        let frame = FRAME_LEN as u64;
        if file_len < 2 * frame {
            return Err(IndexError::Corrupt {
                file: path.to_owned(),
                offset: file_len,
                what: format!("{file_len} bytes are too few for an index (truncated?)"),
            });
        }
        let mut buf = [0u8; FRAME_LEN];
        read_at(&file, path, &mut buf, 0)?;
        let header = Header::decode(&buf).map_err(|e| e.in_file(path, 0))?;
        let footer_at = file_len - frame;
        read_at(&file, path, &mut buf, footer_at)?;
        let footer = Footer::decode(&buf).map_err(|e| e.in_file(path, footer_at))?;
        footer.check_layout(&header, file_len).map_err(|e| e.in_file(path, footer_at))?;
        // The layout check bounds the directory by the file's size and MAX_DIRECTORY_LEN.
        let mut directory = vec![0u8; footer.directory_len as usize];
        read_at(&file, path, &mut directory, footer.directory_offset)?;
        let blocks =
            decode_directory(&directory, &footer).map_err(|e| e.in_file(path, footer.directory_offset))?;
        Ok(IndexFile { file, path: path.to_owned(), footer, blocks })
    }

    /// The session the index belongs to.
    pub fn session(&self) -> u64 {
        self.footer.session
    }

    /// Entries in the file.
    pub fn entries(&self) -> u64 {
        self.footer.entries
    }

    /// Object entries with `segment_offset` 0.
    pub fn objects(&self) -> u64 {
        self.footer.objects
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// CRC-32 of the directory: identifies the file (as in its [`super::IndexSummary`]).
    pub fn crc(&self) -> u32 {
        self.footer.directory_crc
    }

    /// The directory: one record per block, in file order.
    pub fn directory(&self) -> &[BlockInfo] {
        &self.blocks
    }

    /// Every entry in order, read block by block (one decoded block in memory at a time).
    pub fn iter(&self) -> Entries<'_> {
        Entries::new(self, 0, self.blocks.len(), Vec::new())
    }

    /// Entries whose path starts with `prefix`, reading only the blocks that can hold them.
    pub fn prefix(&self, prefix: &[u8]) -> Entries<'_> {
        // Blocks 0..below start before the prefix: only the last of them can end inside it.
        let below = self.blocks.partition_point(|b| b.first_path.as_slice() < prefix);
        // Blocks up to `end` start before the prefix's range ends.
        let end = self
            .blocks
            .partition_point(|b| b.first_path.as_slice() < prefix || b.first_path.starts_with(prefix));
        Entries::new(self, below.saturating_sub(1), end, prefix.to_vec())
    }

    /// The entries with exactly this path (several for a file split into segments).
    pub fn find(&self, path: &[u8]) -> Result<Vec<Entry>, IndexError> {
        // The path itself sorts first of all paths it is a prefix of.
        let mut found = Vec::new();
        for e in self.prefix(path) {
            let e = e?;
            if e.path() != path {
                break;
            }
            found.push(e);
        }
        Ok(found)
    }

    /// The block a lookup of `path` reads: the last one starting at or before it (any entry
    /// with that path lies there, if the file holds one); `None` when the path sorts before
    /// every block.
    pub fn block_for(&self, path: &[u8]) -> Option<usize> {
        self.blocks.partition_point(|b| b.first_path.as_slice() <= path).checked_sub(1)
    }

    /// The entries of block `i` (of [`directory`](Self::directory)), read and checked.
    ///
    /// # Panics
    /// If there is no block `i`.
    pub fn block(&self, i: usize) -> Result<Vec<Entry>, IndexError> {
        self.read_block(i)
    }

    /// Reads and decodes block `i`.
    fn read_block(&self, i: usize) -> Result<Vec<Entry>, IndexError> {
        let info = &self.blocks[i];
        // The directory check bounds stored_len by the file's size and the LZ4 worst case.
        let mut stored = vec![0u8; info.stored_len as usize];
        read_at(&self.file, &self.path, &mut stored, info.offset)?;
        decode_block(&stored, info).map_err(|e| match e {
            DecodeError::Damaged { what, .. } => IndexError::Corrupt {
                file: self.path.clone(),
                offset: info.offset,
                what: format!("block {i}: {what}"),
            },
            e => e.in_file(&self.path, info.offset),
        })
    }
}

/// Reads `buf.len()` bytes at `offset`.
fn read_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), IndexError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            // The file shrank since its size was read.
            IndexError::Corrupt { file: path.to_owned(), offset, what: "file ends early".into() }
        } else {
            IndexError::Io { file: path.to_owned(), op: "read", source: e }
        }
    })
}

/// Entries of an index file in order, from a range of blocks, those under a path prefix only.
/// Yields an error at most once, then ends.
#[derive(Debug)]
pub struct Entries<'a> {
    index: &'a IndexFile,
    /// Next block to read.
    next_block: usize,
    /// Block to stop before.
    end_block: usize,
    /// Only entries whose path starts with it (empty: all).
    prefix: Vec<u8>,
    current: std::vec::IntoIter<Entry>,
    /// The last entry of the block read before, to check the order across blocks.
    last: Option<Entry>,
    done: bool,
}

impl<'a> Entries<'a> {
    fn new(index: &'a IndexFile, first: usize, end: usize, prefix: Vec<u8>) -> Entries<'a> {
        Entries {
            index,
            next_block: first,
            end_block: end,
            prefix,
            current: Vec::new().into_iter(),
            last: None,
            done: false,
        }
    }

    /// Reads the next block into `current`; `false` at the end of the range.
    fn load_next(&mut self) -> Result<bool, IndexError> {
        if self.next_block >= self.end_block {
            return Ok(false);
        }
        let i = self.next_block;
        let entries = self.index.read_block(i)?;
        self.next_block += 1;
        if let (Some(last), Some(first)) = (&self.last, entries.first())
            && last.order(first).is_gt()
        {
            return Err(IndexError::Corrupt {
                file: self.index.path.clone(),
                offset: self.index.blocks[i].offset,
                what: format!("block {i} starts before the block before it ends"),
            });
        }
        self.last = entries.last().cloned();
        self.current = entries.into_iter();
        Ok(true)
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(e) = self.current.next() else {
                match self.load_next() {
                    Ok(true) => continue,
                    Ok(false) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            if e.path().starts_with(&self.prefix) {
                return Some(Ok(e));
            }
            if e.path() > self.prefix.as_slice() {
                // Past the prefix's range: nothing further can start with it.
                self.done = true;
            }
        }
        None
    }
}
