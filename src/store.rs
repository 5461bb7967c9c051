//! The appliance's state on disk: the journal in `<state>/journal` replayed into the
//! [`Catalog`], behind a lock so that one process at a time writes it.
//!
//! Records are checked against the catalog before they are journaled, so replay never meets a
//! record it cannot apply; they count once [`Store::commit`] returns. A failed commit leaves
//! the catalog ahead of the journal: the store refuses further work until reopened.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogError, LogEntry, LogLevel, Record, SessionFinished, StreamCut};
use crate::format::records::SessionStatus;
use crate::journal::{Journal, JournalError, Mode, OpenReport, UringDir};

/// Records appended since the last snapshot after which the next commit takes a snapshot.
pub const SNAPSHOT_EVERY: u64 = 1_000_000;

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
}

impl State for Store {
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        Store::commit(self, records)
    }
    fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        f(&self.catalog)
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
}

/// The open state: journal and catalog.
#[derive(Debug)]
pub struct Store {
    journal: Journal<UringDir>,
    catalog: Catalog,
    path: PathBuf,
    since_snapshot: u64,
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
        let mut catalog = Catalog::new();
        let (journal, report) = Journal::open(jdir, mode, |r| {
            let rec = Record::decode(r.kind, r.version, r.payload).map_err(|e| e.to_string())?;
            catalog.apply(&rec).map_err(|e| e.to_string())
        })?;
        let mut store = Store {
            journal,
            catalog,
            path: dir.to_owned(),
            since_snapshot: report.records,
            poisoned: false,
            _lock: lock,
        };
        let mut report = report;
        if mode == Mode::Write {
            report.warnings.extend(store.close_interrupted(crate::clock::unix_now())?);
        }
        Ok((store, report))
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
        for r in records {
            if let Err(e) = self.catalog.apply(r) {
                refused = Some(e);
                break;
            }
            self.poisoned = true;
            self.journal.append(r)?;
            self.since_snapshot += 1;
        }
        self.poisoned = true;
        self.journal.commit()?;
        self.poisoned = false;
        if self.since_snapshot >= SNAPSHOT_EVERY {
            self.snapshot()?;
        }
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Rewrites the journal as a snapshot of the current state.
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        self.poisoned = true;
        self.journal.snapshot(self.catalog.snapshot_records())?;
        self.poisoned = false;
        self.since_snapshot = 0;
        Ok(())
    }
}

/// The records that close every open session of `catalog` as interrupted at `now` (each stream
/// cut, the session finished, a warning in the activity log), and a line per session.
pub fn interrupted_records(catalog: &Catalog, now: u64) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut lines = Vec::new();
    for s in catalog.sessions().filter(|s| !s.is_finished()) {
        let session = s.id();
        let objects = s.object_count();
        let raw_bytes = s.objects().iter().map(|o| o.length).sum();
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
            .filter(|p| !s.objects().iter().any(|o| (o.stream, o.part) == (p.stream, p.part)))
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
