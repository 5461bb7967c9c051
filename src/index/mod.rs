//! The per-session index file: every object (and every segment of a large one) a session
//! stored, and every file an incremental session kept, sorted by path, in an immutable,
//! block-compressed, checksummed file in the state directory. One path or one directory is
//! found by reading the directory and the few blocks that can hold it, not the whole file.
//!
//! # What it owns
//!
//! - [`Entry`] and its order, [`Entry::order`]: path bytes (plain lexicographic, so the paths
//!   under a prefix such as `dir/` are one contiguous range), then `Kept` before `Object`, then
//!   `segment_offset`, then object id.
//! - The file format below, as pure functions on bytes ([`Header`], [`Footer`],
//!   [`decode_directory`], [`encode_block`], [`decode_block`]), with the I/O in thin shells
//!   around them: [`IndexWriter`] and [`write_sorted`] write a file, [`IndexFile`] reads one,
//!   [`merge`] merges sorted runs into one file.
//!
//! # File
//!
//! ```text
//! file := Header Block* Directory Footer
//! ```
//!
//! All fixed-width integers are little-endian. A *varint* is unsigned LEB128 of a `u64`
//! (7 bits a byte, low bits first, at most 10 bytes); *zigzag* maps an `i64` to a `u64` as
//! `(v << 1) ^ (v >> 63)`. CRCs are CRC-32 (IEEE, as `crc32fast`).
//!
//! ## Header: 64 bytes at offset 0
//!
//! | offset | size | field      | meaning                                          |
//! |-------:|-----:|------------|--------------------------------------------------|
//! | 0      | 4    | `magic`    | `b"CFIX"` ([`HEADER_MAGIC`])                     |
//! | 4      | 2    | `version`  | [`INDEX_VERSION`]                                |
//! | 6      | 2    | reserved   | zero                                             |
//! | 8      | 8    | `session`  | session id the index belongs to                  |
//! | 16     | 44   | reserved   | zero                                             |
//! | 60     | 4    | `crc`      | CRC-32 of bytes 0..60                            |
//!
//! ## Blocks: from offset 64, back to back
//!
//! Block *i* is `stored_len` bytes at `offset` (both from the directory): an LZ4 block
//! (`lz4_flex::block`, no size prefix) that decompresses to exactly `raw_len` bytes, whose
//! CRC-32 over the stored bytes is the directory's `crc`. It holds `entries` consecutive
//! entries of the file, `objects` of them objects with `segment_offset` 0. The raw bytes hold the
//! block's `n` entries column by column (the *m* objects' fields after all the paths), so that
//! LZ4 finds the runs a column has (modes, owners, kinds, streams, small deltas):
//!
//! | part      | size          | contents                                                           |
//! |-----------|---------------|--------------------------------------------------------------------|
//! | `tags`    | n bytes       | per entry: 0 `Kept`, 1 `Object`                                    |
//! | `paths`   | n × varied    | per entry: `shared` varint (bytes shared with the previous entry's path in the block; 0 for the first), `suffix_len` varint, the suffix bytes |
//! | `id`      | m varints     | zigzag(id − previous object's id), wrapping; the first from 0      |
//! | `kind`    | m bytes       | [`ObjectKind`] code: 0 file, 1 dir, 2 symlink, 3 hardlink, 4 fifo, 5 char device, 6 block device, 7 socket, 8 volume |
//! | `size`    | m varints     | size of the whole object                                           |
//! | `mtime`   | m varints     | zigzag(mtime − previous object's mtime), wrapping; the first from 0 |
//! | `mode`    | m varints     | at most `u32::MAX`                                                 |
//! | `uid`     | m varints     | at most `u32::MAX`                                                 |
//! | `gid`     | m varints     | at most `u32::MAX`                                                 |
//! | `segment` | m varints     | `segment_offset`                                                   |
//! | `rest`    | m varints     | size − segment_offset − length, wrapping (0 for a whole object or the last segment) |
//! | `stream`  | m varints     | at most `u16::MAX`                                                 |
//! | `part`    | m varints     | at most `u32::MAX`                                                 |
//! | `position`| m varints     | zigzag(position − previous object's position), wrapping; the first from 0 |
//! | `digest`  | m × 32 bytes  | BLAKE3 of the piece                                                |
//!
//! Deltas restart at every block, so a block decodes on its own. Every byte of `raw_len` is
//! used. A writer ends a block once it holds [`BLOCK_TARGET_RAW`] raw bytes,
//! [`BLOCK_TARGET_PATH_BYTES`] bytes of whole paths, or [`MAX_BLOCK_ENTRIES`] entries; a reader
//! refuses a block over [`MAX_BLOCK_RAW`] raw bytes, [`MAX_BLOCK_PATH_BYTES`] bytes of whole
//! paths or [`MAX_BLOCK_ENTRIES`] entries, so a decoded block takes bounded memory.
//!
//! ## Directory: `directory_len` bytes at `directory_offset`
//!
//! `blocks` records, one per block in file order, each:
//!
//! | offset | size        | field        | meaning                                        |
//! |-------:|------------:|--------------|------------------------------------------------|
//! | 0      | 8           | `offset`     | file offset of the block                       |
//! | 8      | 4           | `stored_len` | bytes in the file: at least 1 and `raw_len` / 255, at most LZ4's worst case for `raw_len` |
//! | 12     | 4           | `raw_len`    | bytes once decompressed, 1..=[`MAX_BLOCK_RAW`]  |
//! | 16     | 4           | `entries`    | entries in the block, 1..=[`MAX_BLOCK_ENTRIES`] |
//! | 20     | 4           | `objects`    | of them objects with `segment_offset` 0        |
//! | 24     | 4           | `crc`        | CRC-32 of the stored bytes                     |
//! | 28     | 2           | `first_len`  | length of the first entry's path               |
//! | 30     | `first_len` | `first_path` | the block's first entry's path                 |
//!
//! The first block starts at 64 and each next one where the one before ends; the last ends at
//! `directory_offset`. First paths never decrease. A search for a path or a prefix reads only
//! the blocks whose range of paths can hold it.
//!
//! ## Footer: the last 64 bytes
//!
//! | offset | size | field              | meaning                                     |
//! |-------:|-----:|--------------------|---------------------------------------------|
//! | 0      | 4    | `magic`            | `b"CFIE"` ([`FOOTER_MAGIC`])                |
//! | 4      | 2    | `version`          | [`INDEX_VERSION`]                           |
//! | 6      | 2    | reserved           | zero                                        |
//! | 8      | 8    | `session`          | as in the header                            |
//! | 16     | 8    | `directory_offset` | where the directory starts                  |
//! | 24     | 8    | `directory_len`    | its length; it ends where the footer starts |
//! | 32     | 8    | `blocks`           | number of blocks (directory records)        |
//! | 40     | 8    | `entries`          | entries in the file                         |
//! | 48     | 8    | `objects`          | entries that are objects with `segment_offset` 0 |
//! | 56     | 4    | `directory_crc`    | CRC-32 of the directory; identifies the file |
//! | 60     | 4    | `crc`              | CRC-32 of bytes 0..60                       |
//!
//! An empty index is a header, no blocks, an empty directory at 64 and a footer: 128 bytes.
//!
//! # Invariants
//!
//! - Entries in a file are in [`Entry::order`], never decreasing; entries equal under it (a
//!   duplicate) are kept in the order they were pushed. Every path is 1..=[`MAX_PATH_LEN`]
//!   bytes without a NUL. The writer checks both before writing; the reader again after reading.
//! - A file appears under its name only whole: it is written as `name.tmp`, synced, renamed
//!   and its directory synced. It is never changed after that.
//!
//! # Versioning
//!
//! The header and footer carry [`INDEX_VERSION`]. A change to any layout above is a new
//! version; a reader refuses a version newer than its own, saying so, rather than guessing.
//!
//! # Fault model
//!
//! The file may be truncated, have bits flipped, or be some other file. Opening checks the
//! header, the footer, the layout against the file's size and the directory's CRC and rules;
//! reading a block checks its CRC, its decompressed size, every field and the order of its
//! entries. Decoding never panics and never allocates more than the bytes read justify: every
//! length and count is checked against the file size and the limits above before anything is
//! allocated. Errors name the file and the byte offset.

mod block;
mod codec;
mod error;
mod merged;
mod reader;
mod writer;

#[cfg(test)]
mod test_trees;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

pub use block::{decode_block, decode_block_raw, encode_block};
pub use codec::{BlockInfo, Footer, Header, decode_directory, encode_directory_record};
pub use error::{DecodeError, IndexError};
pub use merged::Merged;
pub use reader::{Entries, IndexFile};
pub use writer::{IndexSummary, IndexWriter, merge, write_sorted};

use crate::catalog::StoredObject;
use crate::format::MAX_PATH_LEN;
use crate::format::records::ObjectKind;

/// Magic of the header.
pub const HEADER_MAGIC: [u8; 4] = *b"CFIX";
/// Magic of the footer.
pub const FOOTER_MAGIC: [u8; 4] = *b"CFIE";
/// The index format version this build writes, and the newest it reads.
pub const INDEX_VERSION: u16 = 1;
/// Length of the header and of the footer.
pub const FRAME_LEN: usize = 64;
/// Raw bytes after which a writer ends a block.
pub const BLOCK_TARGET_RAW: usize = 64 << 10;
/// Bytes of whole (not front-coded) paths after which a writer ends a block.
pub const BLOCK_TARGET_PATH_BYTES: usize = 1 << 20;
/// Largest raw block a reader accepts.
pub const MAX_BLOCK_RAW: usize = 1 << 20;
/// Largest sum of whole path lengths in one block a reader accepts.
pub const MAX_BLOCK_PATH_BYTES: usize = 2 << 20;
/// Most entries in one block.
pub const MAX_BLOCK_ENTRIES: usize = 16_384;
/// Largest directory, in bytes (about 800 million entries of 80-byte paths).
pub const MAX_DIRECTORY_LEN: usize = 64 << 20;
/// Most inputs [`merge`] takes at once; a caller with more merges in passes.
pub const MERGE_FAN_IN: usize = 64;
/// Fewest raw bytes an entry takes: its tag, `shared` and `suffix_len`.
pub const MIN_ENTRY_RAW: usize = 3;
/// Most raw bytes one entry takes: tag, two varints of a path length, the path, 12 varints of
/// at most 10 bytes, the kind and the digest.
pub const MAX_ENTRY_RAW: usize = 1 + 2 * 10 + MAX_PATH_LEN + 12 * 10 + 1 + 32;

// A block a writer ends at its targets stays within what a reader accepts.
const _: () = assert!(BLOCK_TARGET_RAW + MAX_ENTRY_RAW <= MAX_BLOCK_RAW);
const _: () = assert!(BLOCK_TARGET_PATH_BYTES + MAX_PATH_LEN <= MAX_BLOCK_PATH_BYTES);
const _: () = assert!(MAX_BLOCK_ENTRIES <= u32::MAX as usize);
const _: () = assert!(lz4_flex::block::get_maximum_output_size(MAX_BLOCK_RAW) <= u32::MAX as usize);
const _: () = assert!(MAX_PATH_LEN <= u16::MAX as usize);

/// One entry of a session's per-file index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An object, or one segment of a large one, and where it lives.
    Object(StoredObject),
    /// A regular file an incremental session walked and left out as unchanged (its path).
    Kept(Vec<u8>),
}

/// What [`Entry::order`] compares, field by field in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SortKey<'a> {
    pub path: &'a [u8],
    /// `false` for `Kept`, which sorts first.
    pub object: bool,
    pub segment_offset: u64,
    pub id: u64,
}

impl Entry {
    /// The entry's path, relative to the source root.
    pub fn path(&self) -> &[u8] {
        match self {
            Entry::Object(o) => &o.path,
            Entry::Kept(p) => p,
        }
    }

    /// The order of entries in an index file: path bytes (plain lexicographic, so every path
    /// prefix such as "dir/" is one contiguous range), then Kept before Object, then
    /// segment_offset, then object id.
    pub fn order(&self, other: &Entry) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }

    /// Whether the entry counts as an object of the session: an object's first (or only) piece.
    pub fn is_whole_object(&self) -> bool {
        matches!(self, Entry::Object(o) if o.segment_offset == 0)
    }

    pub(crate) fn sort_key(&self) -> SortKey<'_> {
        match self {
            Entry::Object(o) => {
                SortKey { path: &o.path, object: true, segment_offset: o.segment_offset, id: o.id }
            }
            Entry::Kept(p) => SortKey { path: p, object: false, segment_offset: 0, id: 0 },
        }
    }
}

/// Checks a path as the index stores it: 1..=[`MAX_PATH_LEN`] bytes, no NUL.
pub(crate) fn check_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > MAX_PATH_LEN || path.contains(&0) {
        return Err("path empty, over 4096 bytes or holding a NUL");
    }
    Ok(())
}

/// The code of an [`ObjectKind`] in a block.
pub(crate) fn kind_code(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::File => 0,
        ObjectKind::Dir => 1,
        ObjectKind::Symlink => 2,
        ObjectKind::Hardlink => 3,
        ObjectKind::Fifo => 4,
        ObjectKind::CharDevice => 5,
        ObjectKind::BlockDevice => 6,
        ObjectKind::Socket => 7,
        ObjectKind::Volume => 8,
    }
}

/// The [`ObjectKind`] of a code, if it is one.
pub(crate) fn kind_of_code(code: u8) -> Option<ObjectKind> {
    Some(match code {
        0 => ObjectKind::File,
        1 => ObjectKind::Dir,
        2 => ObjectKind::Symlink,
        3 => ObjectKind::Hardlink,
        4 => ObjectKind::Fifo,
        5 => ObjectKind::CharDevice,
        6 => ObjectKind::BlockDevice,
        7 => ObjectKind::Socket,
        8 => ObjectKind::Volume,
        _ => return None,
    })
}
