//! Writing an index file: [`IndexWriter`] takes entries in order, [`write_sorted`] sorts a run
//! in memory first, [`merge`] merges sorted inputs. The file is written as `name.tmp` and
//! renamed into place only once it is whole and synced.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::block::BlockBuilder;
use super::codec::{DIRECTORY_FIXED_LEN, Footer, Header, encode_directory_record};
use super::error::{IndexError, shown};
use super::merged::Merged;
use super::{
    BLOCK_TARGET_RAW, Entry, FRAME_LEN, MAX_DIRECTORY_LEN, MAX_PATH_LEN, MERGE_FAN_IN, SortKey, check_path,
};

/// What a finished index file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSummary {
    /// Entries in the file.
    pub entries: u64,
    /// Object entries with `segment_offset` 0.
    pub objects: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// CRC-32 of the directory: identifies the file.
    pub crc: u32,
}

/// The last entry pushed, as its sort key, with the path's buffer reused.
#[derive(Debug, Default)]
struct LastKey {
    path: Vec<u8>,
    object: bool,
    segment_offset: u64,
    id: u64,
}

/// Writes one index file, entry by entry in [`Entry::order`].
#[derive(Debug)]
pub struct IndexWriter {
    /// Where the file ends up.
    path: PathBuf,
    /// Where it is written until it is whole.
    tmp: PathBuf,
    /// `None` once finished, or after a write failed: the file on disk may then lack a block,
    /// so the writer takes nothing more (and has removed it).
    file: Option<File>,
    session: u64,
    /// Raw bytes after which a block ends.
    block_target: usize,
    block: BlockBuilder,
    /// Bytes written so far: where the next block starts.
    offset: u64,
    directory: Vec<u8>,
    blocks: u64,
    entries: u64,
    objects: u64,
    last: Option<LastKey>,
    raw: Vec<u8>,
    stored: Vec<u8>,
}

impl IndexWriter {
    /// Starts `path` (written as `path` + ".tmp", renamed on finish) for `session`.
    pub fn create(path: &Path, session: u64) -> Result<IndexWriter, IndexError> {
        IndexWriter::with_block_target(path, session, BLOCK_TARGET_RAW)
    }

    /// As [`IndexWriter::create`], ending blocks at `block_target` raw bytes (at most
    /// [`BLOCK_TARGET_RAW`]): tests use small blocks to have many.
    pub(crate) fn with_block_target(
        path: &Path,
        session: u64,
        block_target: usize,
    ) -> Result<IndexWriter, IndexError> {
        assert!((1..=BLOCK_TARGET_RAW).contains(&block_target));
        let mut tmp = OsString::from(path.as_os_str());
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(IndexError::io(&tmp, "create"))?;
        let mut writer = IndexWriter {
            path: path.to_owned(),
            tmp,
            file: Some(file),
            session,
            block_target,
            block: BlockBuilder::default(),
            offset: FRAME_LEN as u64,
            directory: Vec::new(),
            blocks: 0,
            entries: 0,
            objects: 0,
            last: None,
            raw: Vec::new(),
            stored: Vec::new(),
        };
        let file = writer.file.as_mut().expect("just created");
        // On an error the writer is dropped, which removes the `.tmp` file.
        file.write_all(&Header { session }.encode()).map_err(IndexError::io(&writer.tmp, "write"))?;
        Ok(writer)
    }

    /// Adds the next entry; entries must come in `Entry::order` (an out-of-order entry is an
    /// error, nothing written). Entries equal under the order are kept, in the order pushed.
    pub fn push(&mut self, e: &Entry) -> Result<(), IndexError> {
        self.usable()?;
        self.check(e)?;
        self.block.push(e);
        self.entries += 1;
        if e.is_whole_object() {
            self.objects += 1;
        }
        let key = e.sort_key();
        let last = self.last.get_or_insert_with(LastKey::default);
        last.path.clear();
        last.path.extend_from_slice(key.path);
        (last.object, last.segment_offset, last.id) = (key.object, key.segment_offset, key.id);
        if self.block.is_full(self.block_target) {
            self.write_block()?;
        }
        Ok(())
    }

    /// Refuses an entry the file cannot take: a bad path, out of order, over the limits.
    fn check(&self, e: &Entry) -> Result<(), IndexError> {
        check_path(e.path()).map_err(|what| IndexError::Invalid {
            file: self.path.clone(),
            entry: shown(e.path()),
            what,
        })?;
        if let Some(last) = &self.last {
            let last_key = SortKey {
                path: &last.path,
                object: last.object,
                segment_offset: last.segment_offset,
                id: last.id,
            };
            if e.sort_key() < last_key {
                return Err(IndexError::OutOfOrder {
                    file: self.path.clone(),
                    entry: shown(e.path()),
                    previous: shown(&last.path),
                });
            }
        }
        // The block this entry may close must still have a directory record to go in.
        if self.directory.len() + DIRECTORY_FIXED_LEN + MAX_PATH_LEN > MAX_DIRECTORY_LEN {
            return Err(IndexError::TooLarge {
                file: self.path.clone(),
                what: format!("a directory of {MAX_DIRECTORY_LEN} bytes"),
            });
        }
        Ok(())
    }

    /// An error if a write failed before.
    fn usable(&self) -> Result<(), IndexError> {
        match self.file {
            Some(_) => Ok(()),
            None => Err(IndexError::Io {
                file: self.tmp.clone(),
                op: "write",
                source: std::io::Error::other("an earlier write to this index failed; start it again"),
            }),
        }
    }

    /// Closes and removes the `.tmp` file: the writer takes nothing more.
    fn abandon(&mut self) {
        if self.file.take().is_some() {
            // Best effort: a leftover `.tmp` is truncated by the next writer of the same name.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }

    /// Compresses and writes the block being built and lists it in the directory.
    fn write_block(&mut self) -> Result<(), IndexError> {
        let info = self.block.finish(self.offset, &mut self.raw, &mut self.stored);
        let file = self.file.as_mut().expect("a writer without its file takes no entries");
        if let Err(e) = file.write_all(&self.stored) {
            self.abandon();
            return Err(IndexError::io(&self.tmp, "write")(e));
        }
        self.offset += u64::from(info.stored_len);
        encode_directory_record(&info, &mut self.directory);
        self.blocks += 1;
        Ok(())
    }

    /// Writes the last block, the directory and the footer, fsyncs the file, renames it into
    /// place and fsyncs the directory.
    pub fn finish(mut self) -> Result<IndexSummary, IndexError> {
        self.usable()?;
        if self.block.entries() > 0 {
            self.write_block()?;
        }
        let footer = Footer {
            session: self.session,
            directory_offset: self.offset,
            directory_len: self.directory.len() as u64,
            blocks: self.blocks,
            entries: self.entries,
            objects: self.objects,
            directory_crc: crc32fast::hash(&self.directory),
        };
        // Still held by `self.file`: on an error, drop removes the `.tmp` file.
        let file = self.file.as_mut().expect("checked usable");
        let tmp = &self.tmp;
        file.write_all(&self.directory).map_err(IndexError::io(tmp, "write"))?;
        file.write_all(&footer.encode()).map_err(IndexError::io(tmp, "write"))?;
        file.sync_all().map_err(IndexError::io(tmp, "sync"))?;
        let tmp = tmp.clone();
        self.file = None;
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(IndexError::io(&self.path, "rename into place")(e));
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(IndexError::io(dir, "sync of the directory"))?;
        Ok(IndexSummary {
            entries: self.entries,
            objects: self.objects,
            bytes: self.offset + footer.directory_len + FRAME_LEN as u64,
            crc: footer.directory_crc,
        })
    }
}

impl Drop for IndexWriter {
    /// A writer dropped before it finished leaves no `.tmp` file behind.
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Sorts `entries` in memory and writes them as one index file (used for sorted runs).
pub fn write_sorted(path: &Path, session: u64, entries: Vec<Entry>) -> Result<IndexSummary, IndexError> {
    write_sorted_in(IndexWriter::create(path, session)?, entries)
}

/// As [`write_sorted`], into a writer already created.
pub(crate) fn write_sorted_in(
    mut out: IndexWriter,
    mut entries: Vec<Entry>,
) -> Result<IndexSummary, IndexError> {
    // Stable: entries equal under the order stay as given.
    entries.sort_by(Entry::order);
    for e in &entries {
        out.push(e)?;
    }
    out.finish()
}

/// Merges sorted inputs (each in Entry::order, e.g. IndexFile::iter of runs) into `out`;
/// returns the summary. At most [`MERGE_FAN_IN`] inputs. Entries equal under the order come
/// out in input order. The first error of an input ends the merge (`out` is dropped, its
/// `.tmp` file removed); an input out of order shows as [`IndexError::OutOfOrder`].
pub fn merge<I: Iterator<Item = Result<Entry, IndexError>>>(
    inputs: Vec<I>,
    mut out: IndexWriter,
) -> Result<IndexSummary, IndexError> {
    assert!(inputs.len() <= MERGE_FAN_IN, "{} merge inputs, over {MERGE_FAN_IN}", inputs.len());
    for entry in Merged::new(inputs) {
        out.push(&entry?)?;
    }
    out.finish()
}
