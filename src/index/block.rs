//! Blocks of entries as pure functions on bytes: [`BlockBuilder`] lays entries out column by
//! column and compresses them, [`decode_block`] checks and decodes one. See the module docs of
//! `index` for the layout.

use super::codec::{BlockInfo, Cursor, MAX_LZ4_RATIO, put_varint, unzigzag, zigzag};
use super::error::DecodeError;
use super::{
    BLOCK_TARGET_PATH_BYTES, Entry, MAX_BLOCK_ENTRIES, MAX_BLOCK_PATH_BYTES, MAX_BLOCK_RAW, MAX_PATH_LEN,
    MIN_ENTRY_RAW, check_path, kind_code, kind_of_code,
};
use crate::catalog::StoredObject;
use crate::format::records::ObjectKind;

/// Tag of a `Kept` entry.
const TAG_KEPT: u8 = 0;
/// Tag of an `Object` entry.
const TAG_OBJECT: u8 = 1;
/// Length of a digest.
const DIGEST_LEN: usize = 32;

/// The objects' columns, in file order: indexes into [`BlockBuilder`]'s column buffers.
mod column {
    pub const ID: usize = 0;
    pub const KIND: usize = 1;
    pub const SIZE: usize = 2;
    pub const MTIME: usize = 3;
    pub const MODE: usize = 4;
    pub const UID: usize = 5;
    pub const GID: usize = 6;
    pub const SEGMENT: usize = 7;
    pub const REST: usize = 8;
    pub const STREAM: usize = 9;
    pub const PART: usize = 10;
    pub const POSITION: usize = 11;
    pub const DIGEST: usize = 12;
    /// Number of columns.
    pub const COUNT: usize = 13;
}

/// Builds one block from entries pushed in order; reused from block to block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    tags: Vec<u8>,
    paths: Vec<u8>,
    /// One buffer per column, indexed by the constants of [`column`].
    columns: [Vec<u8>; column::COUNT],
    first_path: Vec<u8>,
    prev_path: Vec<u8>,
    entries: u32,
    objects: u32,
    /// Sum of the whole paths' lengths.
    path_bytes: usize,
    prev_id: u64,
    prev_mtime: i64,
    prev_position: u64,
}

impl BlockBuilder {
    /// Adds an entry with a valid path that does not sort before the one pushed before it.
    pub(crate) fn push(&mut self, e: &Entry) {
        let path = e.path();
        assert!(check_path(path).is_ok(), "an index entry's path was not checked");
        assert!((self.entries as usize) < MAX_BLOCK_ENTRIES, "a full block took another entry");
        let shared = if self.entries == 0 {
            self.first_path.clear();
            self.first_path.extend_from_slice(path);
            0
        } else {
            self.prev_path.iter().zip(path).take_while(|(a, b)| a == b).count()
        };
        put_varint(&mut self.paths, shared as u64);
        put_varint(&mut self.paths, (path.len() - shared) as u64);
        self.paths.extend_from_slice(&path[shared..]);
        self.prev_path.clear();
        self.prev_path.extend_from_slice(path);
        self.path_bytes += path.len();
        self.entries += 1;
        match e {
            Entry::Kept(_) => self.tags.push(TAG_KEPT),
            Entry::Object(o) => {
                self.tags.push(TAG_OBJECT);
                self.push_object(o);
            }
        }
    }

    fn push_object(&mut self, o: &StoredObject) {
        use column::*;
        let c = &mut self.columns;
        put_varint(&mut c[ID], zigzag(o.id.wrapping_sub(self.prev_id) as i64));
        c[KIND].push(kind_code(o.kind));
        put_varint(&mut c[SIZE], o.size);
        put_varint(&mut c[MTIME], zigzag(o.mtime.wrapping_sub(self.prev_mtime)));
        put_varint(&mut c[MODE], u64::from(o.mode));
        put_varint(&mut c[UID], u64::from(o.uid));
        put_varint(&mut c[GID], u64::from(o.gid));
        put_varint(&mut c[SEGMENT], o.segment_offset);
        put_varint(&mut c[REST], o.size.wrapping_sub(o.segment_offset).wrapping_sub(o.length));
        put_varint(&mut c[STREAM], u64::from(o.stream));
        put_varint(&mut c[PART], u64::from(o.part));
        put_varint(&mut c[POSITION], zigzag(o.position.wrapping_sub(self.prev_position) as i64));
        c[DIGEST].extend_from_slice(&o.digest);
        (self.prev_id, self.prev_mtime, self.prev_position) = (o.id, o.mtime, o.position);
        if o.segment_offset == 0 {
            self.objects += 1;
        }
    }

    /// Raw bytes of the block so far.
    pub(crate) fn raw_len(&self) -> usize {
        self.tags.len() + self.paths.len() + self.columns.iter().map(Vec::len).sum::<usize>()
    }

    /// Entries in the block so far.
    pub(crate) fn entries(&self) -> u32 {
        self.entries
    }

    /// Whether the block should end: it reached `target_raw` raw bytes or another limit.
    pub(crate) fn is_full(&self, target_raw: usize) -> bool {
        self.raw_len() >= target_raw
            || self.path_bytes >= BLOCK_TARGET_PATH_BYTES
            || self.entries as usize >= MAX_BLOCK_ENTRIES
    }

    /// Lays out and compresses the block into `stored` (with `raw` as scratch), describes it
    /// as lying at `offset`, and empties the builder for the next block.
    pub(crate) fn finish(&mut self, offset: u64, raw: &mut Vec<u8>, stored: &mut Vec<u8>) -> BlockInfo {
        assert!(self.entries > 0, "an empty block was finished");
        raw.clear();
        raw.append(&mut self.tags);
        raw.append(&mut self.paths);
        for column in &mut self.columns {
            raw.append(column);
        }
        assert!(raw.len() <= MAX_BLOCK_RAW && self.path_bytes <= MAX_BLOCK_PATH_BYTES);
        stored.clear();
        stored.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
        let n = lz4_flex::block::compress_into(raw, stored).expect("LZ4 output sized for the worst case");
        stored.truncate(n);
        let info = BlockInfo {
            offset,
            stored_len: n as u32,
            raw_len: raw.len() as u32,
            entries: self.entries,
            objects: self.objects,
            crc: crc32fast::hash(stored),
            first_path: std::mem::take(&mut self.first_path),
        };
        (self.entries, self.objects, self.path_bytes) = (0, 0, 0);
        (self.prev_id, self.prev_mtime, self.prev_position) = (0, 0, 0);
        info
    }
}

/// Encodes `entries` (valid, in order, within one block's limits) as one block lying at
/// `offset`: its stored bytes and its directory record.
pub fn encode_block(entries: &[Entry], offset: u64) -> (Vec<u8>, BlockInfo) {
    assert!(!entries.is_empty() && entries.len() <= MAX_BLOCK_ENTRIES);
    assert!(entries.windows(2).all(|w| w[0].order(&w[1]).is_le()), "block entries out of order");
    let mut builder = BlockBuilder::default();
    for e in entries {
        builder.push(e);
    }
    let (mut raw, mut stored) = (Vec::new(), Vec::new());
    let info = builder.finish(offset, &mut raw, &mut stored);
    (stored, info)
}

/// Checks and decodes the stored bytes of the block `info` describes: its length, CRC,
/// decompressed length, entries, order, object count and first path.
pub fn decode_block(stored: &[u8], info: &BlockInfo) -> Result<Vec<Entry>, DecodeError> {
    if stored.len() != info.stored_len as usize {
        return Err(DecodeError::damaged(0, "block length differs from the directory's"));
    }
    if crc32fast::hash(stored) != info.crc {
        return Err(DecodeError::damaged(0, "block checksum mismatch"));
    }
    let raw_len = info.raw_len as usize;
    // The raw buffer is bounded by the limit and by what the stored bytes can expand to.
    if raw_len > MAX_BLOCK_RAW || raw_len > stored.len() * MAX_LZ4_RATIO {
        return Err(DecodeError::damaged(0, format!("block raw length {raw_len} impossible")));
    }
    let mut raw = vec![0u8; raw_len];
    match lz4_flex::block::decompress_into(stored, &mut raw) {
        Ok(n) if n == raw_len => {}
        Ok(n) => return Err(DecodeError::damaged(0, format!("block holds {n} raw bytes, not {raw_len}"))),
        Err(e) => return Err(DecodeError::damaged(0, format!("block does not decompress: {e}"))),
    }
    let entries = decode_block_raw(&raw, info.entries)?;
    let objects = entries.iter().filter(|e| e.is_whole_object()).count();
    if objects != info.objects as usize {
        return Err(DecodeError::damaged(0, "block object count differs from the directory's"));
    }
    if entries.first().map(Entry::path) != Some(&info.first_path[..]) {
        return Err(DecodeError::damaged(0, "block's first path differs from the directory's"));
    }
    Ok(entries)
}

/// Decodes the raw (decompressed) bytes of a block of `count` entries, checking every field,
/// every path and the entries' order; offsets in errors are into `raw`.
pub fn decode_block_raw(raw: &[u8], count: u32) -> Result<Vec<Entry>, DecodeError> {
    let n = count as usize;
    if n == 0 || n > MAX_BLOCK_ENTRIES || n > raw.len() / MIN_ENTRY_RAW {
        return Err(DecodeError::damaged(0, format!("{n} entries cannot be in {} raw bytes", raw.len())));
    }
    let mut cur = Cursor::new(raw);
    let tags = cur.take(n, "entry tags")?;
    if let Some(i) = tags.iter().position(|&t| t != TAG_KEPT && t != TAG_OBJECT) {
        return Err(DecodeError::damaged(i, format!("unknown entry tag {}", tags[i])));
    }
    let paths = read_paths(&mut cur, n)?;
    let m = tags.iter().filter(|&&t| t == TAG_OBJECT).count();
    let mut objects: Vec<StoredObject> = (0..m).map(|_| blank_object()).collect();
    read_columns(&mut cur, &mut objects)?;
    if !cur.is_done() {
        return Err(DecodeError::damaged(cur.at(), "bytes after the block's last column"));
    }
    let mut objects = objects.into_iter();
    let mut entries = Vec::with_capacity(n);
    for (&tag, path) in tags.iter().zip(paths) {
        let e = if tag == TAG_KEPT {
            Entry::Kept(path)
        } else {
            let Some(o) = objects.next() else {
                return Err(DecodeError::damaged(0, "fewer objects than object tags"));
            };
            Entry::Object(StoredObject { path, ..o })
        };
        if entries.last().is_some_and(|prev: &Entry| prev.order(&e).is_gt()) {
            return Err(DecodeError::damaged(0, format!("entry {} out of order", entries.len())));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// Reads `n` front-coded paths, checking each and their total length.
fn read_paths(cur: &mut Cursor<'_>, n: usize) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut paths: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        let at = cur.at();
        let prev = paths.last().map_or(&[][..], |p| &p[..]);
        let shared = cur.varint("shared path length")?;
        if shared > prev.len() as u64 {
            return Err(DecodeError::damaged(at, "path shares more bytes than the path before has"));
        }
        let shared = shared as usize;
        let suffix_len = cur.varint("path suffix length")?;
        if suffix_len > (MAX_PATH_LEN - shared) as u64 {
            return Err(DecodeError::damaged(at, format!("path over {MAX_PATH_LEN} bytes")));
        }
        let suffix = cur.take(suffix_len as usize, "path suffix")?;
        total += shared + suffix.len();
        if total > MAX_BLOCK_PATH_BYTES {
            return Err(DecodeError::damaged(at, format!("paths over {MAX_BLOCK_PATH_BYTES} bytes")));
        }
        let mut path = Vec::with_capacity(shared + suffix.len());
        path.extend_from_slice(&prev[..shared]);
        path.extend_from_slice(suffix);
        check_path(&path).map_err(|what| DecodeError::damaged(at, what))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Reads the objects' columns into `objects`, in file order.
fn read_columns(cur: &mut Cursor<'_>, objects: &mut [StoredObject]) -> Result<(), DecodeError> {
    let mut prev = 0u64;
    for o in objects.iter_mut() {
        prev = prev.wrapping_add(unzigzag(cur.varint("object id")?) as u64);
        o.id = prev;
    }
    for o in objects.iter_mut() {
        let at = cur.at();
        let code = cur.byte("object kind")?;
        o.kind = kind_of_code(code)
            .ok_or_else(|| DecodeError::damaged(at, format!("unknown object kind {code}")))?;
    }
    for o in objects.iter_mut() {
        o.size = cur.varint("object size")?;
    }
    let mut prev = 0i64;
    for o in objects.iter_mut() {
        prev = prev.wrapping_add(unzigzag(cur.varint("mtime")?));
        o.mtime = prev;
    }
    for o in objects.iter_mut() {
        o.mode = cur.varint_u32("mode")?;
    }
    for o in objects.iter_mut() {
        o.uid = cur.varint_u32("uid")?;
    }
    for o in objects.iter_mut() {
        o.gid = cur.varint_u32("gid")?;
    }
    for o in objects.iter_mut() {
        o.segment_offset = cur.varint("segment offset")?;
    }
    for o in objects.iter_mut() {
        let rest = cur.varint("rest of the object")?;
        o.length = o.size.wrapping_sub(o.segment_offset).wrapping_sub(rest);
    }
    for o in objects.iter_mut() {
        let at = cur.at();
        o.stream = u16::try_from(cur.varint("stream")?)
            .map_err(|_| DecodeError::damaged(at, format!("stream over {}", u16::MAX)))?;
    }
    for o in objects.iter_mut() {
        o.part = cur.varint_u32("part")?;
    }
    let mut prev = 0u64;
    for o in objects.iter_mut() {
        prev = prev.wrapping_add(unzigzag(cur.varint("position")?) as u64);
        o.position = prev;
    }
    for o in objects.iter_mut() {
        o.digest.copy_from_slice(cur.take(DIGEST_LEN, "digest")?);
    }
    Ok(())
}

/// An object whose fields the columns fill in.
fn blank_object() -> StoredObject {
    StoredObject {
        id: 0,
        path: Vec::new(),
        kind: ObjectKind::File,
        size: 0,
        mtime: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        segment_offset: 0,
        length: 0,
        stream: 0,
        part: 0,
        position: 0,
        digest: [0; 32],
    }
}
