//! Reading a session's per-file entries: from its index file once it is durable, or, while the
//! session runs (or its index is not written yet), from the sorted runs the store spooled and
//! the entries it still buffers, merged on the fly.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::catalog::{Catalog, StoredObject};
use crate::index::{Entry, IndexError, IndexFile, Merged};

use super::spool::{Pending, index_path, run_path};

/// Where a state's index files are, and what the store buffers of sessions not yet indexed.
/// Cheap to clone: readers on other threads (the service's control plane) take one.
#[derive(Clone, Debug)]
pub struct Indexes {
    dir: PathBuf,
    pending: Arc<Mutex<Pending>>,
    /// Whether the store spools entries (write mode); a read-only store does not, and cannot
    /// show a session that is not indexed.
    spooling: bool,
    /// Entries of sessions whose index was pruned, read back from their media for one restore
    /// and held in memory (not written to the state: see `pipeline::reindex`).
    loaded: Arc<std::collections::BTreeMap<u64, Arc<Vec<Entry>>>>,
}

/// Why a session's entries cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EntriesError {
    /// No such session.
    #[error("no session {0} in the catalog")]
    NoSession(u64),
    /// Its index file is missing, damaged or not the one the journal recorded.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The index file is another than the journal recorded.
    #[error(
        "the index file of session {session} ({path}) is not the one the journal recorded (directory \
         CRC {found:08x}, expected {expected:08x}): it was replaced or damaged; remove it and run \
         `coffer scan` on the session's media to rebuild the session"
    )]
    Mismatch { session: u64, path: String, found: u32, expected: u32 },
    /// Its index was pruned: it restores whole, or its index is read back from the media.
    #[error(
        "the per-file index of session {0} was pruned (the session is older than the board's \
         catalog_keep): restore the session whole, or run `coffer scan --session {0}` to read its \
         index back from its media"
    )]
    Pruned(u64),
    /// A read-only store does not spool: the entries of a session not yet indexed are only in
    /// the journal.
    #[error(
        "session {0}'s per-file index is not written yet and the state is open read-only: start \
         coffer with a writable state (it writes the index at start) to read it"
    )]
    NotIndexed(u64),
}

impl Indexes {
    pub(super) fn new(dir: PathBuf, pending: Arc<Mutex<Pending>>, spooling: bool) -> Indexes {
        Indexes { dir, pending, spooling, loaded: Arc::default() }
    }

    /// These indexes, with `entries` (in any order) standing for `session`'s pruned index:
    /// read back from its media for one restore.
    pub fn with_loaded(mut self, session: u64, mut entries: Vec<Entry>) -> Indexes {
        entries.sort_by(Entry::order);
        let mut loaded = (*self.loaded).clone();
        loaded.insert(session, Arc::new(entries));
        self.loaded = Arc::new(loaded);
        self
    }

    /// Bytes the index files (and spooled runs) take in the directory, for people and tests:
    /// what pruning frees.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(dir: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }

    /// Where `session`'s index file is (or would be).
    pub fn file_of(&self, session: u64) -> PathBuf {
        index_path(&self.dir, session)
    }

    /// The directory of the index files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The entries of `session`, opened now: its index file, or its runs and buffered entries.
    pub fn session(&self, catalog: &Catalog, session: u64) -> Result<SessionEntries, EntriesError> {
        let s = catalog.session(session).ok_or(EntriesError::NoSession(session))?;
        if s.index_pruned().is_some() {
            return match self.loaded.get(&session) {
                Some(entries) => Ok(SessionEntries::new(Vec::new(), entries.to_vec())),
                None => Err(EntriesError::Pruned(session)),
            };
        }
        if let Some(ix) = s.indexed() {
            let path = index_path(&self.dir, session);
            let file = IndexFile::open(&path)?;
            let found = file.crc();
            if found != ix.crc {
                let path = path.display().to_string();
                return Err(EntriesError::Mismatch { session, path, found, expected: ix.crc });
            }
            return Ok(SessionEntries::new(vec![file], Vec::new()));
        }
        if !s.needs_index() {
            return Ok(SessionEntries::new(Vec::new(), Vec::new()));
        }
        if !self.spooling {
            return Err(EntriesError::NotIndexed(session));
        }
        let (runs, mut buffered, written) = {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.get(session) {
                Some(p) => (p.runs, p.buffer.clone(), p.written),
                None => (0, Vec::new(), None),
            }
        };
        if written.is_some() {
            // Written a moment ago, the catalog not told yet: the runs are gone.
            let file = IndexFile::open(&index_path(&self.dir, session))?;
            return Ok(SessionEntries::new(vec![file], Vec::new()));
        }
        buffered.sort_by(Entry::order);
        let files =
            (0..runs).map(|r| IndexFile::open(&run_path(&self.dir, session, r))).collect::<Result<_, _>>()?;
        Ok(SessionEntries::new(files, buffered))
    }
}

/// Decoded blocks [`SessionEntries::lookup`] keeps, per session: lookups in walk order (depth
/// first, names sorted) mostly fall in the last few blocks.
pub const LOOKUP_CACHE_BLOCKS: usize = 8;

/// A decoded block: (file, block number, its entries).
type CachedBlock = (usize, usize, Arc<Vec<Entry>>);

/// One session's entries, in index order (by path), wherever they are.
#[derive(Debug)]
pub struct SessionEntries {
    files: Vec<IndexFile>,
    buffered: Vec<Entry>,
    /// Recently decoded blocks, newest last.
    cache: Mutex<VecDeque<CachedBlock>>,
}

type EntryIter<'a> = Box<dyn Iterator<Item = Result<Entry, IndexError>> + 'a>;

impl SessionEntries {
    fn new(files: Vec<IndexFile>, buffered: Vec<Entry>) -> SessionEntries {
        SessionEntries { files, buffered, cache: Mutex::new(VecDeque::with_capacity(LOOKUP_CACHE_BLOCKS)) }
    }

    /// One entry with exactly this path, if any (for a file split into segments, one of
    /// them), reading at most one block per file through a small cache.
    pub fn lookup(&self, path: &[u8]) -> Result<Option<Entry>, IndexError> {
        for (i, f) in self.files.iter().enumerate() {
            let Some(block) = f.block_for(path) else { continue };
            let entries = self.cached_block(i, block)?;
            let at = entries.partition_point(|e| e.path() < path);
            if let Some(e) = entries.get(at).filter(|e| e.path() == path) {
                return Ok(Some(e.clone()));
            }
        }
        let at = self.buffered.partition_point(|e| e.path() < path);
        Ok(self.buffered.get(at).filter(|e| e.path() == path).cloned())
    }

    fn cached_block(&self, file: usize, block: usize) -> Result<Arc<Vec<Entry>>, IndexError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = cache.iter().position(|(f, b, _)| (*f, *b) == (file, block)) {
            let hit = cache.remove(at).expect("position found");
            let entries = hit.2.clone();
            cache.push_back(hit);
            return Ok(entries);
        }
        let entries = Arc::new(self.files[file].block(block)?);
        if cache.len() == LOOKUP_CACHE_BLOCKS {
            cache.pop_front();
        }
        cache.push_back((file, block, entries.clone()));
        Ok(entries)
    }

    /// Every entry, by path.
    pub fn iter(&self) -> EntryIter<'_> {
        let mut inputs: Vec<EntryIter<'_>> =
            self.files.iter().map(|f| Box::new(f.iter()) as EntryIter<'_>).collect();
        inputs.push(Box::new(self.buffered.iter().cloned().map(Ok)));
        merged(inputs)
    }

    /// The entries at or below `path`: the path itself and, if it is a directory, everything
    /// under it. An empty path or "." is everything.
    pub fn under<'a>(&'a self, path: &'a [u8]) -> EntryIter<'a> {
        if path.is_empty() || path == b"." {
            return self.iter();
        }
        let mut dir = path.to_vec();
        dir.push(b'/');
        let mut inputs: Vec<EntryIter<'_>> = Vec::new();
        for f in &self.files {
            // The path itself and its descendants all start with its bytes; so do siblings
            // such as "a.txt" next to "a", which are left out.
            let dir = dir.clone();
            let wanted = move |e: &Result<Entry, IndexError>| {
                e.as_ref().map_or(true, |e| e.path() == path || e.path().starts_with(&dir))
            };
            inputs.push(Box::new(f.prefix(path).filter(wanted)));
        }
        let buffered = self.buffered.iter().filter(move |e| e.path() == path || e.path().starts_with(&dir));
        inputs.push(Box::new(buffered.cloned().map(Ok)));
        merged(inputs)
    }

    /// The entries with exactly this path (several for a file split into segments).
    pub fn find(&self, path: &[u8]) -> Result<Vec<Entry>, IndexError> {
        let mut out = Vec::new();
        for f in &self.files {
            out.extend(f.find(path)?);
        }
        out.extend(self.buffered.iter().filter(|e| e.path() == path).cloned());
        out.sort_by(Entry::order);
        Ok(out)
    }

    /// Every object piece, loaded (a restore or verify plans from them).
    pub fn objects(&self) -> Result<Vec<StoredObject>, IndexError> {
        let mut out = Vec::new();
        for e in self.iter() {
            if let Entry::Object(o) = e? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The paths of the files an incremental session kept, loaded.
    pub fn kept(&self) -> Result<Vec<Vec<u8>>, IndexError> {
        let mut out = Vec::new();
        for e in self.iter() {
            if let Entry::Kept(p) = e? {
                out.push(p);
            }
        }
        Ok(out)
    }
}

/// Merges inputs each in [`Entry::order`] into one in that order; an error ends the merge.
fn merged<'a>(inputs: Vec<EntryIter<'a>>) -> EntryIter<'a> {
    if inputs.len() == 1 {
        return inputs.into_iter().next().expect("one input");
    }
    Box::new(Merged::new(inputs))
}
