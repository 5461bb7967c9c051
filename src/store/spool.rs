//! The spool of per-file entries between the journal and a session's index file.
//!
//! The journal is the one source of truth: a batch of objects counts once its record is
//! committed. The store then hands the record here, which buffers its entries per session and,
//! every [`RUN_ENTRIES`], writes them out sorted as a *run* (an index file of its own, in
//! `index/session-<id>.runs/`), so a session of any size is spooled in bounded memory. When the
//! session ends, its runs and buffer are merged (in passes of at most [`MERGE_FAN_IN`] inputs)
//! into `index/session-<id>.idx`, and the store journals `SessionIndexed`.
//!
//! Runs are derived data: a store opened for writing removes them all and replay rebuilds them
//! from the journal's batches, which are kept until their session is indexed (the store takes
//! no snapshot while a session holds entries that are only in the journal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::catalog::Record;
use crate::index::{
    Entry, IndexError, IndexFile, IndexSummary, IndexWriter, MERGE_FAN_IN, merge, write_sorted,
};

use super::entries::Indexes;

/// Entries a session buffers before they are written out as a sorted run: about 200 bytes
/// each in memory.
pub const RUN_ENTRIES: usize = 64 << 10;

const _: () = assert!(RUN_ENTRIES >= 1024 && MERGE_FAN_IN >= 2);

/// What the spool holds for the sessions not indexed yet.
#[derive(Debug, Default)]
pub struct Pending {
    sessions: BTreeMap<u64, PendingSession>,
}

/// One session's spooled entries.
#[derive(Debug, Default)]
pub struct PendingSession {
    /// Entries not yet in a run, in the order they came.
    pub buffer: Vec<Entry>,
    /// Runs written: `run-000000.idx` up to this.
    pub runs: u32,
    /// The index file is written (its directory CRC) and the runs are gone, but the catalog may
    /// not say so yet.
    pub written: Option<u32>,
}

impl Pending {
    /// One session's, if it has any.
    pub fn get(&self, session: u64) -> Option<&PendingSession> {
        self.sessions.get(&session)
    }
}

/// `index/session-<id as 16 hex digits>.idx`.
pub fn index_path(dir: &Path, session: u64) -> PathBuf {
    dir.join(format!("session-{session:016x}.idx"))
}

/// The directory of a session's runs.
pub fn runs_dir(dir: &Path, session: u64) -> PathBuf {
    dir.join(format!("session-{session:016x}.runs"))
}

/// One run of a session.
pub fn run_path(dir: &Path, session: u64, run: u32) -> PathBuf {
    runs_dir(dir, session).join(format!("run-{run:06}.idx"))
}

/// The spool of a state directory's `index/`.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    pending: Arc<Mutex<Pending>>,
    /// Whether entries are spooled at all: a read-only store leaves the files alone.
    write: bool,
    /// Entries buffered per session before a run is written ([`RUN_ENTRIES`]; less in tests).
    run_entries: usize,
}

impl Spool {
    /// The spool of `dir` (created if need be). For writing, every run and unfinished file
    /// left by an earlier process is removed: replay rebuilds what is needed.
    pub fn open(dir: &Path, write: bool) -> Result<Spool, IndexError> {
        if write {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
                let entry = entry.map_err(|e| io_error(dir, e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let path = entry.path();
                if name.starts_with("session-") && name.ends_with(".runs") && path.is_dir() {
                    std::fs::remove_dir_all(&path).map_err(|e| io_error(&path, e))?;
                } else if name.starts_with("session-") && (name.ends_with(".tmp") || name.ends_with(".runs"))
                {
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        Ok(Spool { dir: dir.to_owned(), pending: Arc::default(), write, run_entries: RUN_ENTRIES })
    }

    /// Writes runs of `n` entries (tests: many runs from few entries).
    #[cfg(test)]
    pub fn set_run_entries(&mut self, n: usize) {
        self.run_entries = n;
    }

    /// A handle for readers.
    pub fn indexes(&self) -> Indexes {
        Indexes::new(self.dir.clone(), self.pending.clone(), self.write)
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the entries a committed (or replayed) record carries; a record saying a session
    /// is indexed or pruned drops what was spooled for it. (An index pruned is not deleted
    /// here: on replay a later record may have read it back; see `Store`.)
    pub fn take(&self, r: &Record) -> Result<(), IndexError> {
        if !self.write {
            return Ok(());
        }
        let (session, entries): (u64, Vec<Entry>) = match r {
            Record::ObjectStored(b) => (b.session, vec![Entry::Object(b.object.clone())]),
            Record::ObjectsStored(b) => (b.session, b.objects.iter().cloned().map(Entry::Object).collect()),
            Record::FilesKept(b) => (b.session, b.paths.iter().map(|p| Entry::Kept(p.to_vec())).collect()),
            Record::SessionIndexed(b) => return self.forget(b.session),
            Record::SessionPruned(b) => {
                self.forget(b.session)?;
                return remove_if_there(&index_path(&self.dir, b.session));
            }
            _ => return Ok(()),
        };
        let mut pending = self.lock();
        let p = pending.sessions.entry(session).or_default();
        p.buffer.extend(entries);
        if p.buffer.len() >= self.run_entries {
            self.flush(session, p)?;
        }
        Ok(())
    }

    /// Writes a session's buffer out as its next run.
    fn flush(&self, session: u64, p: &mut PendingSession) -> Result<(), IndexError> {
        if p.buffer.is_empty() {
            return Ok(());
        }
        let runs = runs_dir(&self.dir, session);
        std::fs::create_dir_all(&runs).map_err(|e| io_error(&runs, e))?;
        let buffer = std::mem::take(&mut p.buffer);
        match write_sorted(&run_path(&self.dir, session, p.runs), session, buffer.clone()) {
            Ok(_) => {
                p.runs += 1;
                Ok(())
            }
            Err(e) => {
                // Kept for readers and for another try at the session's end.
                p.buffer = buffer;
                Err(e)
            }
        }
    }

    /// Writes `session`'s index file from its runs and buffer (an empty file when it has
    /// none) and removes the runs. The caller journals `SessionIndexed` next.
    pub fn write_index(&self, session: u64) -> Result<IndexSummary, IndexError> {
        let mut pending = self.lock();
        let p = pending.sessions.entry(session).or_default();
        self.flush(session, p)?;
        let mut inputs: Vec<PathBuf> = (0..p.runs).map(|r| run_path(&self.dir, session, r)).collect();
        // Merge in passes, so that no more than MERGE_FAN_IN runs are open at once.
        let mut pass = 0;
        while inputs.len() > MERGE_FAN_IN {
            let mut next = Vec::new();
            for (i, group) in inputs.chunks(MERGE_FAN_IN).enumerate() {
                let out = runs_dir(&self.dir, session).join(format!("pass-{pass:02}-{i:06}.idx"));
                merge_files(group, &out, session)?;
                next.push(out);
            }
            inputs = next;
            pass += 1;
        }
        let summary = merge_files(&inputs, &index_path(&self.dir, session), session)?;
        remove_dir_if_there(&runs_dir(&self.dir, session))?;
        *p = PendingSession { written: Some(summary.crc), ..PendingSession::default() };
        Ok(summary)
    }

    /// Deletes the index file of a session whose index was pruned (once that is durable).
    pub fn drop_index(&self, session: u64) -> Result<(), IndexError> {
        remove_if_there(&index_path(&self.dir, session))
    }

    /// Drops what was spooled for `session` (its runs too).
    pub fn forget(&self, session: u64) -> Result<(), IndexError> {
        if self.lock().sessions.remove(&session).is_some() {
            remove_dir_if_there(&runs_dir(&self.dir, session))?;
        }
        Ok(())
    }
}

/// Merges the index files `inputs` into `out`.
fn merge_files(inputs: &[PathBuf], out: &Path, session: u64) -> Result<IndexSummary, IndexError> {
    let files = inputs.iter().map(|p| IndexFile::open(p)).collect::<Result<Vec<_>, _>>()?;
    let summary = merge(files.iter().map(IndexFile::iter).collect(), IndexWriter::create(out, session)?)?;
    Ok(summary)
}

fn remove_if_there(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_there(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> IndexError {
    IndexError::Io { file: path.to_owned(), op: "update", source }
}
