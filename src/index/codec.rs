//! The fixed parts of an index file as pure functions on bytes: header, footer and directory,
//! and the varint reader the blocks share. See the module docs of `index` for the layouts.

use super::error::DecodeError;
use super::{
    FOOTER_MAGIC, FRAME_LEN, HEADER_MAGIC, INDEX_VERSION, MAX_BLOCK_ENTRIES, MAX_BLOCK_RAW,
    MAX_DIRECTORY_LEN, check_path,
};

/// Bytes of a directory record before its first path.
pub(crate) const DIRECTORY_FIXED_LEN: usize = 30;
/// Offset of the CRC in the header and the footer.
const FRAME_CRC_AT: usize = FRAME_LEN - 4;
/// Longest varint of a `u64`.
const MAX_VARINT_LEN: usize = 10;
/// Most raw bytes an LZ4 block decompresses to per stored byte: a match grows by at most 255
/// bytes per length byte, and every sequence costs 3 bytes besides (token, offset).
pub(crate) const MAX_LZ4_RATIO: usize = 255;

/// The header: which session the index belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Session id.
    pub session: u64,
}

impl Header {
    /// The header's 64 bytes.
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        b[0..4].copy_from_slice(&HEADER_MAGIC);
        b[4..6].copy_from_slice(&INDEX_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.session.to_le_bytes());
        seal_frame(&mut b);
        b
    }

    /// Decodes and checks a header (exactly 64 bytes).
    pub fn decode(b: &[u8]) -> Result<Header, DecodeError> {
        check_frame(b, HEADER_MAGIC, "header")?;
        if b[16..FRAME_CRC_AT].iter().any(|&x| x != 0) {
            return Err(DecodeError::damaged(16, "reserved header bytes are not zero"));
        }
        Ok(Header { session: u64_at(b, 8) })
    }
}

/// The footer: where the directory is and what the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Session id, as in the header.
    pub session: u64,
    /// File offset of the directory.
    pub directory_offset: u64,
    /// Length of the directory.
    pub directory_len: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Entries in the file.
    pub entries: u64,
    /// Object entries with `segment_offset` 0.
    pub objects: u64,
    /// CRC-32 of the directory.
    pub directory_crc: u32,
}

impl Footer {
    /// The footer's 64 bytes.
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        b[0..4].copy_from_slice(&FOOTER_MAGIC);
        b[4..6].copy_from_slice(&INDEX_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.session.to_le_bytes());
        b[16..24].copy_from_slice(&self.directory_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.directory_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.blocks.to_le_bytes());
        b[40..48].copy_from_slice(&self.entries.to_le_bytes());
        b[48..56].copy_from_slice(&self.objects.to_le_bytes());
        b[56..60].copy_from_slice(&self.directory_crc.to_le_bytes());
        seal_frame(&mut b);
        b
    }

    /// Decodes and checks a footer (exactly 64 bytes) on its own; [`Footer::check_layout`]
    /// checks it against the file.
    pub fn decode(b: &[u8]) -> Result<Footer, DecodeError> {
        check_frame(b, FOOTER_MAGIC, "footer")?;
        let f = Footer {
            session: u64_at(b, 8),
            directory_offset: u64_at(b, 16),
            directory_len: u64_at(b, 24),
            blocks: u64_at(b, 32),
            entries: u64_at(b, 40),
            objects: u64_at(b, 48),
            directory_crc: u32::from_le_bytes([b[56], b[57], b[58], b[59]]),
        };
        if f.objects > f.entries {
            return Err(DecodeError::damaged(48, "more objects than entries"));
        }
        if f.directory_len > MAX_DIRECTORY_LEN as u64 {
            return Err(DecodeError::damaged(24, format!("directory over {MAX_DIRECTORY_LEN} bytes")));
        }
        Ok(f)
    }

    /// Checks that the footer fits a file of `file_len` bytes whose header is `header`: the
    /// directory ends where the footer starts, after the header, and can hold `blocks` records
    /// and the entries.
    pub fn check_layout(&self, header: &Header, file_len: u64) -> Result<(), DecodeError> {
        let damaged = |at, what: &str| Err(DecodeError::damaged(at, what));
        if self.session != header.session {
            return damaged(8, "session differs from the header's");
        }
        let frames = 2 * FRAME_LEN as u64;
        if file_len < frames || self.directory_len > file_len - frames {
            return damaged(24, "directory longer than the file holds");
        }
        if self.directory_offset != file_len - FRAME_LEN as u64 - self.directory_len {
            return damaged(16, "directory does not end where the footer starts");
        }
        if self.blocks > self.directory_len / DIRECTORY_FIXED_LEN as u64 {
            return damaged(32, "more blocks than the directory can list");
        }
        if self.blocks == 0 && (self.directory_len != 0 || self.entries != 0) {
            return damaged(32, "no blocks, but a directory or entries");
        }
        if self.entries > self.blocks * MAX_BLOCK_ENTRIES as u64 || self.entries < self.blocks {
            return damaged(40, "entry count does not fit the block count");
        }
        Ok(())
    }
}

/// A directory record: where a block is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// File offset of the block.
    pub offset: u64,
    /// Bytes in the file.
    pub stored_len: u32,
    /// Bytes once decompressed.
    pub raw_len: u32,
    /// Entries in the block.
    pub entries: u32,
    /// Object entries with `segment_offset` 0.
    pub objects: u32,
    /// CRC-32 of the stored bytes.
    pub crc: u32,
    /// The first entry's path.
    pub first_path: Vec<u8>,
}

/// Appends a block's directory record.
pub fn encode_directory_record(b: &BlockInfo, out: &mut Vec<u8>) {
    assert!(b.first_path.len() <= u16::MAX as usize);
    out.extend_from_slice(&b.offset.to_le_bytes());
    out.extend_from_slice(&b.stored_len.to_le_bytes());
    out.extend_from_slice(&b.raw_len.to_le_bytes());
    out.extend_from_slice(&b.entries.to_le_bytes());
    out.extend_from_slice(&b.objects.to_le_bytes());
    out.extend_from_slice(&b.crc.to_le_bytes());
    out.extend_from_slice(&(b.first_path.len() as u16).to_le_bytes());
    out.extend_from_slice(&b.first_path);
}

/// Decodes and checks the directory described by `footer` (whose layout was checked): its
/// CRC, every record's limits, that blocks lie back to back from the header to the directory,
/// that first paths never decrease, and that the counts add up to the footer's.
pub fn decode_directory(bytes: &[u8], footer: &Footer) -> Result<Vec<BlockInfo>, DecodeError> {
    if bytes.len() as u64 != footer.directory_len {
        return Err(DecodeError::damaged(0, "directory length differs from the footer's"));
    }
    if crc32fast::hash(bytes) != footer.directory_crc {
        return Err(DecodeError::damaged(0, "directory checksum mismatch"));
    }
    // Every record takes DIRECTORY_FIXED_LEN bytes at least: the count is bounded by the bytes.
    let count = usize::try_from(footer.blocks).unwrap_or(usize::MAX);
    if count > bytes.len() / DIRECTORY_FIXED_LEN {
        return Err(DecodeError::damaged(0, "more blocks than the directory can list"));
    }
    let mut blocks: Vec<BlockInfo> = Vec::with_capacity(count);
    let mut at = 0;
    let mut next_offset = FRAME_LEN as u64;
    let (mut entries, mut objects) = (0u64, 0u64);
    for _ in 0..count {
        let b = directory_record(bytes, at)?;
        if b.offset != next_offset {
            return Err(DecodeError::damaged(at, "block does not start where the one before ends"));
        }
        if blocks.last().is_some_and(|prev| prev.first_path > b.first_path) {
            return Err(DecodeError::damaged(at, "first paths out of order"));
        }
        next_offset = b.offset + u64::from(b.stored_len);
        entries += u64::from(b.entries);
        objects += u64::from(b.objects);
        at += DIRECTORY_FIXED_LEN + b.first_path.len();
        blocks.push(b);
    }
    if at != bytes.len() {
        return Err(DecodeError::damaged(at, "bytes after the last directory record"));
    }
    if next_offset != footer.directory_offset {
        return Err(DecodeError::damaged(at, "blocks do not end where the directory starts"));
    }
    if entries != footer.entries || objects != footer.objects {
        return Err(DecodeError::damaged(at, "block entry or object counts differ from the footer's"));
    }
    Ok(blocks)
}

/// Decodes and checks one directory record at `at`.
fn directory_record(bytes: &[u8], at: usize) -> Result<BlockInfo, DecodeError> {
    let Some(fixed) = bytes.get(at..at + DIRECTORY_FIXED_LEN) else {
        return Err(DecodeError::damaged(at, "directory record cut short"));
    };
    let u32_at = |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let first_len = usize::from(u16::from_le_bytes([fixed[28], fixed[29]]));
    let path_at = at + DIRECTORY_FIXED_LEN;
    let Some(first_path) = bytes.get(path_at..path_at + first_len) else {
        return Err(DecodeError::damaged(at, "directory record's path cut short"));
    };
    let b = BlockInfo {
        offset: u64_at(fixed, 0),
        stored_len: u32_at(8),
        raw_len: u32_at(12),
        entries: u32_at(16),
        objects: u32_at(20),
        crc: u32_at(24),
        first_path: first_path.to_vec(),
    };
    let raw = b.raw_len as usize;
    if raw == 0 || raw > MAX_BLOCK_RAW {
        return Err(DecodeError::damaged(at, format!("block raw length not in 1..={MAX_BLOCK_RAW}")));
    }
    let stored = b.stored_len as usize;
    if stored == 0 || stored > lz4_flex::block::get_maximum_output_size(raw) || raw > stored * MAX_LZ4_RATIO {
        return Err(DecodeError::damaged(at, "block stored length impossible for its raw length"));
    }
    if b.entries == 0 || b.entries as usize > MAX_BLOCK_ENTRIES.min(raw / super::MIN_ENTRY_RAW) {
        return Err(DecodeError::damaged(at, "block entry count impossible for its raw length"));
    }
    if b.objects > b.entries {
        return Err(DecodeError::damaged(at, "block has more objects than entries"));
    }
    check_path(&b.first_path).map_err(|what| DecodeError::damaged(path_at, what))?;
    Ok(b)
}

/// Writes the version and the CRC of a header or footer.
fn seal_frame(b: &mut [u8; FRAME_LEN]) {
    let crc = crc32fast::hash(&b[..FRAME_CRC_AT]);
    b[FRAME_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a header or footer's length, CRC, magic, version and reserved bytes 6..8.
fn check_frame(b: &[u8], magic: [u8; 4], what: &str) -> Result<(), DecodeError> {
    if b.len() != FRAME_LEN {
        return Err(DecodeError::damaged(0, format!("{what} is {} bytes, not {FRAME_LEN}", b.len())));
    }
    if b[0..4] != magic {
        return Err(DecodeError::damaged(0, format!("no index {what} (bad magic): not a coffer index")));
    }
    let crc = u32::from_le_bytes([b[60], b[61], b[62], b[63]]);
    if crc32fast::hash(&b[..FRAME_CRC_AT]) != crc {
        return Err(DecodeError::damaged(FRAME_CRC_AT, format!("{what} checksum mismatch")));
    }
    // After the CRC: a newer version with a valid CRC is a newer coffer's file, not damage.
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version > INDEX_VERSION {
        return Err(DecodeError::NewerVersion { version });
    }
    if version != INDEX_VERSION {
        return Err(DecodeError::damaged(4, format!("{what} version {version} was never written")));
    }
    if b[6..8] != [0, 0] {
        return Err(DecodeError::damaged(6, format!("reserved {what} bytes are not zero")));
    }
    Ok(())
}

/// The little-endian `u64` at `i` of a slice known to hold it.
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

/// Appends `v` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag encoding of a signed value.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads bytes and varints from a slice; every error names the offset it was found at.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    /// Offset of the next byte.
    pub(crate) fn at(&self) -> usize {
        self.at
    }

    /// Whether every byte was read.
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::damaged(self.at, format!("{what} cut short")));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next byte.
    pub(crate) fn byte(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// The next varint.
    pub(crate) fn varint(&mut self, what: &str) -> Result<u64, DecodeError> {
        let start = self.at;
        let mut v = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte(what)?;
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(DecodeError::damaged(start, format!("{what} overflows 64 bits")));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::damaged(start, format!("{what} longer than {MAX_VARINT_LEN} bytes")))
    }

    /// The next varint, which must fit a `u32`.
    pub(crate) fn varint_u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let start = self.at;
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| DecodeError::damaged(start, format!("{what} over {}", u32::MAX)))
    }
}
