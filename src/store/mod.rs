//! The appliance's state on disk: the journal in `<state>/journal` replayed into the
//! [`Catalog`], and each session's per-file index in `<state>/index`, behind a lock so that one
//! process at a time writes them.
//!
//! Records are checked against the catalog before they are journaled, so replay never meets a
//! record it cannot apply; they count once [`Store::commit`] returns. A failed commit leaves
//! the catalog ahead of the journal: the store refuses further work until reopened.
//!
//! # Per-file entries
//!
//! A session's objects are journaled in batches as its parts commit; the store spools their
//! entries ([`spool`]) and, when the session ends, writes its index file and journals
//! `SessionIndexed`. The next snapshot drops the batches (one is taken once the journal has
//! grown by [`SNAPSHOT_AFTER_BYTES`] and every session holding entries is indexed): replay
//! builds what is O(sessions + media + jobs), and readers open a session's index on demand
//! ([`Indexes::session`]). A crash between the journal and the index file is repaired at the
//! next open for writing: replay spools the batches again and the index file is written then.
//! A state written before index files (one journal record per object) is converted the same
//! way, once.
//!
//! An index pruned (`IndexPruned`, see `lifecycle::index_prune`) is deleted once its record is
//! durable, and again at the next open for writing if the process stopped in between; replay
//! deletes nothing, since a later `SessionIndexed` may have read the index back.

mod entries;
mod spool;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::catalog::{
    Catalog, CatalogError, LogEntry, LogLevel, Record, SessionFinished, SessionIndexed, StreamCut,
};
use crate::format::records::SessionStatus;
use crate::journal::{Journal, JournalError, Mode, OpenReport, UringDir};

pub use entries::{EntriesError, Indexes, SessionEntries};
pub use spool::RUN_ENTRIES;
use spool::Spool;

/// Records appended since the last snapshot after which the next commit takes a snapshot.
pub const SNAPSHOT_EVERY: u64 = 1_000_000;
/// Journal bytes appended since the last snapshot, once they include per-file records whose
/// sessions are all indexed, after which the next commit takes a snapshot that drops them: what
/// replay reads beyond the snapshot stays about this small (a few tens of milliseconds), and
/// the snapshot is not rewritten at the end of every small session.
pub const SNAPSHOT_AFTER_BYTES: u64 = 4 << 20;

/// Why the state could not be opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The journal failed or is damaged.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A record contradicts the state (a caller's bug) or the journal holds one that does.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another coffer process holds the state directory.
    #[error(
        "state directory {0} is in use by another coffer process (the service?): stop it, or \
         run this command through it"
    )]
    Locked(PathBuf),
    /// The state directory cannot be used.
    #[error("cannot use state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The index directory cannot be used.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// An earlier commit failed; the catalog may be ahead of the journal.
    #[error("state unusable after a failed commit: restart coffer to replay the journal")]
    Poisoned,
}

/// The state as a backup's control loop uses it: read the catalog, commit records. The CLI
/// hands the [`Store`] itself; the service hands a [`SharedStore`], so that its control plane
/// can journal jobs and log entries between the backup's commits.
pub trait State {
    /// Applies `records` and makes them durable as one group (see [`Store::commit`]).
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError>;
    /// Reads the catalog.
    fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R;
    /// Where the sessions' per-file entries are read from.
    fn indexes(&self) -> Indexes;
}

impl State for Store {
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        Store::commit(self, records)
    }
    fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        f(&self.catalog)
    }
    fn indexes(&self) -> Indexes {
        Store::indexes(self)
    }
}

/// A [`Store`] shared between the service's control plane and the job running on its own
/// thread. The lock is held for one commit or one read, never across a wait for a device.
#[derive(Debug, Clone)]
pub struct SharedStore(std::sync::Arc<std::sync::Mutex<Store>>);

impl SharedStore {
    /// Shares `store`.
    pub fn new(store: Store) -> SharedStore {
        SharedStore(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }

    /// The store, locked (a panic while it was held does not make the journal unusable: the
    /// store poisons itself on a failed commit).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SharedStore {
    /// The store if no one holds it: for a display that must not wait while a commit or a
    /// snapshot of the catalog runs.
    pub fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, Store>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

impl State for SharedStore {
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        self.lock().commit(records)
    }
    fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        f(self.lock().catalog())
    }
    fn indexes(&self) -> Indexes {
        self.lock().indexes()
    }
}

/// The open state: journal and catalog.
#[derive(Debug)]
pub struct Store {
    journal: Journal<UringDir>,
    catalog: Catalog,
    spool: Spool,
    path: PathBuf,
    since_snapshot: u64,
    /// Whether the journal holds per-file records (object batches, kept files) since its last
    /// snapshot: once their sessions are indexed, a snapshot drops them.
    since_entries: bool,
    /// The journal's committed bytes right after its last snapshot.
    bytes_at_snapshot: u64,
    poisoned: bool,
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the state in `dir` and replays the journal. In
    /// [`Mode::ReadOnly`] damage is reported in the [`OpenReport`] instead of failing, and
    /// nothing is changed.
    pub fn open(dir: &Path, mode: Mode) -> Result<(Store, OpenReport), StoreError> {
        let dir_err = |source| StoreError::Dir { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let lock = File::create(dir.join("lock")).map_err(dir_err)?;
        if mode == Mode::Write {
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked(dir.to_owned()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(dir_err(e)),
            }
        }
        let jdir = UringDir::new(&dir.join("journal")).map_err(dir_err)?;
        let spool = Spool::open(&dir.join("index"), mode == Mode::Write)?;
        let mut catalog = Catalog::new();
        // Sessions journaled one record per object, as coffer did before index files.
        let mut per_object = std::collections::BTreeSet::new();
        let mut entries_seen = false;
        let (journal, report) = Journal::open(jdir, mode, |r| {
            let rec = Record::decode(r.kind, r.version, r.payload).map_err(|e| e.to_string())?;
            catalog.apply(&rec).map_err(|e| e.to_string())?;
            if let Record::ObjectStored(o) = &rec {
                per_object.insert(o.session);
            }
            entries_seen |= has_entries(&rec);
            if let Err(e) = spool.take(&rec) {
                // Nothing is lost: the entries stay buffered (and in the journal).
                tracing::warn!(target: "store", "spooling the entries of a record: {e}");
            }
            Ok(())
        })?;
        let mut store = Store {
            journal,
            catalog,
            spool,
            path: dir.to_owned(),
            since_snapshot: report.records,
            since_entries: entries_seen,
            bytes_at_snapshot: 0,
            poisoned: false,
            _lock: lock,
        };
        let mut report = report;
        if mode == Mode::Write {
            report.warnings.extend(store.close_interrupted(crate::clock::unix_now())?);
            report.warnings.extend(store.index_finished(&per_object)?);
            store.drop_pruned_indexes();
        }
        Ok((store, report))
    }

    /// Writes the index file of every finished session whose entries are only in the journal
    /// (a crash came between the two, or the state predates index files), then takes a
    /// snapshot so the journal drops them. Returns a line for people when there was any.
    fn index_finished(
        &mut self,
        per_object: &std::collections::BTreeSet<u64>,
    ) -> Result<Vec<String>, StoreError> {
        let todo: Vec<u64> = self.catalog.unindexed().filter(|s| s.is_finished()).map(|s| s.id()).collect();
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = 0;
        for &session in &todo {
            self.index_session(session)?;
            entries += self.catalog.session(session).map_or(0, |s| s.entries());
        }
        if self.catalog.snapshot_ready() {
            self.snapshot()?;
        }
        let converted = todo.iter().filter(|s| per_object.contains(s)).count();
        let line = if converted > 0 {
            format!(
                "converted the state to per-session index files: {} sessions, {entries} entries,                  moved from one journal record per object into {}",
                todo.len(),
                self.spool.dir().display()
            )
        } else {
            format!(
                "wrote the index files of {} sessions ({entries} entries) from the journal: the                  last coffer process stopped before it had",
                todo.len()
            )
        };
        Ok(vec![line])
    }

    /// Writes a finished session's index file and journals it.
    fn index_session(&mut self, session: u64) -> Result<(), StoreError> {
        let s = self.catalog.session(session).ok_or(CatalogError::UnknownSession { session })?;
        assert!(s.is_finished() && s.needs_index());
        let summary = self.spool.write_index(session)?;
        let record = SessionIndexed {
            session,
            entries: s.entries(),
            objects: s.object_count(),
            raw_bytes: s.raw_bytes(),
            kept: s.entries() - s.pieces(),
            kept_complete: s.has_kept_list(),
            crc: summary.crc,
        };
        if summary.entries != record.entries {
            // The spool lost or gained entries: a bug. The journal still holds them all.
            return Err(StoreError::Catalog(CatalogError::Index {
                session,
                crc: summary.crc,
                why: "the spool wrote another number of entries than the journal holds",
            }));
        }
        self.commit(&[Record::from(record)])
    }

    /// Deletes a pruned session's index file, its pruning being durable. A file that cannot be
    /// deleted only takes room: the next open for writing tries again.
    fn drop_index(&self, session: u64) {
        if let Err(e) = self.spool.drop_index(session) {
            tracing::warn!(target: "store", "session {session}'s index was pruned, but its file stays: {e}");
        }
    }

    /// Deletes the index files of sessions whose index was pruned: left by a process that
    /// stopped between the journal and the file system (or read back from the media by one
    /// that stopped before it could journal so).
    fn drop_pruned_indexes(&self) {
        for s in self.catalog.sessions().filter(|s| s.index_pruned().is_some()) {
            if self.spool.indexes().file_of(s.id()).exists() {
                self.drop_index(s.id());
            }
        }
    }

    /// Where readers find each session's entries.
    pub fn indexes(&self) -> Indexes {
        self.spool.indexes()
    }

    /// One session's entries, opened now.
    pub fn entries(&self, session: u64) -> Result<SessionEntries, EntriesError> {
        self.spool.indexes().session(&self.catalog, session)
    }

    /// Closes every session left running as [`SessionStatus::Interrupted`]. Called with the
    /// state lock held: a session still open then was left by a process that is gone (killed,
    /// crashed, the power failed), since only the lock holder writes sessions. Its committed
    /// objects are whole; each stream is cut, so restore and verify read exactly those objects
    /// and never what the dead writer put on the medium after its last commit. Returns a line
    /// per session for people.
    fn close_interrupted(&mut self, now: u64) -> Result<Vec<String>, StoreError> {
        let (records, lines) = interrupted_records(&self.catalog, now);
        self.commit(&records)?;
        Ok(lines)
    }

    /// The state.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The journal's committed records and bytes, as `coffer journal check` would count them
    /// now.
    pub fn journal_size(&self) -> (u64, u64) {
        self.journal.committed()
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `records` in order and makes them durable as one group. A record the catalog
    /// refuses stops the batch: the records before it are still committed, the error returned.
    pub fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if records.is_empty() {
            // Nothing to make durable: no journal write, no sync.
            return Ok(());
        }
        let mut refused = None;
        let mut applied = 0;
        for r in records {
            if let Err(e) = self.catalog.apply(r) {
                refused = Some(e);
                break;
            }
            self.poisoned = true;
            self.journal.append(r)?;
            self.since_snapshot += 1;
            self.since_entries |= has_entries(r);
            applied += 1;
        }
        self.poisoned = true;
        self.journal.commit()?;
        self.poisoned = false;
        let mut ended = Vec::new();
        for r in &records[..applied] {
            if let Err(e) = self.spool.take(r) {
                // Nothing is lost: the entries stay buffered (and in the journal).
                tracing::warn!(target: "store", "spooling the entries of a record: {e}");
            }
            if let Record::SessionFinished(f) = r {
                ended.push(f.session);
            }
            if let Record::IndexPruned(p) = r {
                self.drop_index(p.session);
            }
        }
        for session in ended {
            if self.catalog.session(session).is_some_and(|s| s.needs_index())
                && let Err(e) = self.index_session(session)
            {
                if matches!(e, StoreError::Journal(_) | StoreError::Poisoned) {
                    return Err(e);
                }
                // The journal holds the entries: the index is written at the next start.
                let message = format!(
                    "the index file of session {session} could not be written ({e}): its entries                      stay in the journal and the file is written when coffer next starts"
                );
                tracing::warn!(target: "store", "{message}");
                let at = crate::clock::unix_now();
                self.commit(&[Record::from(LogEntry { at, level: LogLevel::Warning, job: None, message })])?;
            }
        }
        let grown = self.journal.committed().1.saturating_sub(self.bytes_at_snapshot);
        let drop_entries = self.since_entries && grown >= SNAPSHOT_AFTER_BYTES;
        if self.catalog.snapshot_ready() && (self.since_snapshot >= SNAPSHOT_EVERY || drop_entries) {
            self.snapshot()?;
        }
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Rewrites the journal as a snapshot of the current state.
    ///
    /// # Panics
    /// While a session holds entries only the journal has ([`Catalog::snapshot_ready`]).
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        self.poisoned = true;
        self.journal.snapshot(self.catalog.snapshot_records())?;
        self.poisoned = false;
        self.since_snapshot = 0;
        self.since_entries = false;
        self.bytes_at_snapshot = self.journal.committed().1;
        Ok(())
    }
}

/// Whether a record carries per-file entries (kept in the journal only until indexed).
fn has_entries(r: &Record) -> bool {
    matches!(r, Record::ObjectStored(_) | Record::ObjectsStored(_) | Record::FilesKept(_))
}

/// The records that close every open session of `catalog` as interrupted at `now` (each stream
/// cut, the session finished, a warning in the activity log), and a line per session.
pub fn interrupted_records(catalog: &Catalog, now: u64) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut lines = Vec::new();
    for s in catalog.sessions().filter(|s| !s.is_finished()) {
        let session = s.id();
        let objects = s.object_count();
        let raw_bytes = s.raw_bytes();
        let streams = (0..s.start().streams).filter(|&stream| !s.is_cut(stream));
        records.extend(streams.map(|stream| Record::from(StreamCut { session, stream })));
        records.push(Record::from(SessionFinished {
            session,
            ended: now,
            status: SessionStatus::Interrupted,
            objects,
            raw_bytes,
            stored_bytes: 0,
        }));
        // Parts begun with no object committed in them: what the dead writer put there (a
        // torn write, perhaps) is not part of the session, and the space may be written again.
        let torn: Vec<String> = s
            .parts()
            .filter(|p| !s.part_used(p.stream, p.part))
            .map(|p| {
                let medium = catalog.medium(p.medium).map_or("?", |m| m.barcode());
                format!("stream {} part {} on {medium} from byte {}", p.stream, p.part, p.position)
            })
            .collect();
        let torn = match torn.len() {
            0 => String::new(),
            n => format!("; {n} parts hold no committed object and are left out ({})", torn.join(", ")),
        };
        let line = format!(
            "session {session} was left running by a coffer process that is gone (killed or \
             crashed): closed as interrupted; its {objects} committed objects are restorable, what \
             was written after its last commit is not part of it{torn}"
        );
        let job = (s.start().job != 0).then_some(s.start().job);
        records.push(Record::from(LogEntry {
            at: now,
            level: LogLevel::Warning,
            job,
            message: line.clone(),
        }));
        lines.push(line);
    }
    (records, lines)
}
