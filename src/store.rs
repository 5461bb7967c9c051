//! The appliance's state on disk: the journal in `<state>/journal` replayed into the
//! [`Catalog`], behind a lock so that one process at a time writes it.
//!
//! Records are checked against the catalog before they are journaled, so replay never meets a
//! record it cannot apply; they count once [`Store::commit`] returns. A failed commit leaves
//! the catalog ahead of the journal: the store refuses further work until reopened.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogError, Record};
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
        let store = Store {
            journal,
            catalog,
            path: dir.to_owned(),
            since_snapshot: report.records,
            poisoned: false,
            _lock: lock,
        };
        Ok((store, report))
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
