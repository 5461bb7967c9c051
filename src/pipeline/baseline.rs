//! Incremental backups: which earlier sessions a backup builds on, which files are unchanged
//! since them, and which session each object of a restore comes from.
//!
//! # Model
//!
//! Every session records a [`SourceKey`] (which roots it read) and its kind: full, or
//! incremental on a base session ([`SessionKind`]). An incremental session stores the regular
//! files that are new or changed since its base, and every other object — directories, links,
//! special files — because they are cheap and carry the tree's shape; once its walk is over it
//! lists the regular files it left out as unchanged ([`FilesKept`](crate::catalog::FilesKept)).
//! Its *chain* is the session, its base, the base's base… down to a full session. The source
//! as it was at a session is its own objects and the files it kept, each of those taken from
//! the newest session of the chain that holds it ([`restore_sources`]): a file deleted since
//! the base is in neither, and does not come back.
//!
//! The *baseline* of a new incremental backup is the newest session of the same source key
//! that finished complete ([`Baseline::find`]); its chain, newest entry winning, says what each
//! path was ([`Baseline::of_session`]).
//!
//! # Unchanged
//!
//! A regular file is unchanged when the chain's newest entry for its path is a regular file of
//! the same size, modification time (whole seconds: what the catalog keeps), mode, owner and
//! group (a chmod or chown stores the file again: restore then gives the new ones). A recorded
//! mtime not before the start of the session that recorded it is never trusted: the file may
//! have changed again within that second, after it was read (git's "racily clean" rule).
//!
//! # Limits
//!
//! - A content change that keeps size, mtime and mode (a copy that preserves times), and a
//!   change of extended attributes or ACLs alone, are not seen: the catalog keeps neither
//!   ctime, inode nor a finer mtime.
//! - An incremental session without a whole list of kept files (written by an older coffer, or
//!   one whose walk did not finish: failed, cancelled) is restored by the older rule: files of
//!   earlier sessions of the chain come back when their directories are in the session, so a
//!   file deleted since the base may reappear.
//! - Files recorded by an older coffer have no mode in the catalog: the first incremental
//!   after the upgrade stores them again.
//! - A session rebuilt by a scan from media of format version 1 reads as full and without a
//!   key (those media do not say which session it built on, nor list what it kept); from
//!   version 2 on, the media carry the kind, base, key, modes and the list of kept files.
//! - The list of kept files is held in memory until the session ends: a few tens of bytes per
//!   unchanged file.
//!
//! The baseline reads the chain's index files as the walk asks about each path, a few cached
//! blocks at a time, so its memory does not grow with the number of files; a restore's plan
//! ([`restore_sources`]) loads the entries of the sessions it reads.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::backup::Source;
use crate::catalog::{Catalog, Session, SessionKind, SessionMode};
use crate::format::records::{ObjectKind, ObjectMeta, SessionStatus};
use crate::index::Entry;
use crate::store::{Indexes, SessionEntries};

/// Which roots a backup reads: BLAKE3 over their canonical paths, sorted and without
/// repetition, so that the same roots named in another order or by another path give the same
/// key. All zeros is no key (sessions that did not record one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey(pub [u8; 32]);

impl SourceKey {
    /// No key: matches nothing.
    pub const NONE: SourceKey = SourceKey([0; 32]);

    /// The key of roots already made canonical (absolute, without symbolic links, `.` or
    /// `..`); making them so is I/O, left to the caller.
    pub fn of_canonical_roots<P: AsRef<Path>>(roots: &[P]) -> SourceKey {
        let mut paths: Vec<&[u8]> = roots.iter().map(|p| p.as_ref().as_os_str().as_bytes()).collect();
        paths.sort_unstable();
        paths.dedup();
        let mut h = blake3::Hasher::new();
        h.update(b"coffer source key 1\0");
        for p in paths {
            // Length first: no two lists hash the same bytes.
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        SourceKey(*h.finalize().as_bytes())
    }

    /// Whether this is a real key (not [`SourceKey::NONE`]).
    pub fn is_known(&self) -> bool {
        *self != SourceKey::NONE
    }
}

/// Why a backup cannot be incremental, or a session's chain cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncrementalError {
    /// No session of these sources finished complete: the backup must be full.
    #[error("no complete backup of these sources is in the catalog")]
    NoBaseline,
    /// A session the catalog does not hold.
    #[error("no session {0} in the catalog: `coffer ls` lists them")]
    UnknownSession(u64),
    /// A session of the chain builds on one that was pruned.
    #[error(
        "session {session} is incremental on session {base}, which is no longer in the \
         catalog: the files it did not store are lost with it; run a full backup"
    )]
    BaseMissing {
        /// The incremental session.
        session: u64,
        /// The base it names.
        base: u64,
    },
    /// A session of the chain builds on one that did not finish complete (never written by
    /// coffer: a base is chosen complete, and a finished session's status never changes).
    #[error(
        "session {session} is incremental on session {base}, which did not complete: the \
         catalog is inconsistent; run a full backup"
    )]
    BaseIncomplete {
        /// The incremental session.
        session: u64,
        /// The base it names.
        base: u64,
    },
    /// A session's per-file index cannot be read.
    #[error("the per-file index of session {session} cannot be read: {why}")]
    Index {
        /// The session.
        session: u64,
        /// What went wrong, and what to do.
        why: String,
    },
    /// A raw volume is one object read whole: there is nothing to leave out.
    #[error(
        "{} is backed up as a raw volume, which cannot be incremental: back it up without \
         --incremental, or as files with --mode files",
        .path.display()
    )]
    Volume {
        /// The volume.
        path: PathBuf,
    },
}

impl IncrementalError {
    /// Whether the error only means there is nothing to build on (a full backup is the
    /// answer), as opposed to a chain or a request that is wrong.
    pub fn is_no_baseline(&self) -> bool {
        matches!(self, IncrementalError::NoBaseline)
    }
}

/// Refuses sources an incremental backup cannot read: raw volumes.
pub fn check_sources(sources: &[Source]) -> Result<(), IncrementalError> {
    match sources.iter().find_map(|s| match s {
        Source::Volume(path) => Some(path),
        Source::Tree { .. } | Source::Agent { .. } => None,
    }) {
        Some(path) => Err(IncrementalError::Volume { path: path.clone() }),
        None => Ok(()),
    }
}

/// Whether a session finished complete.
fn is_complete(s: &Session) -> bool {
    s.finish().is_some_and(|f| f.status == SessionStatus::Complete)
}

/// The chain of `session`: its full session, then the incrementals built on it up to and
/// including `session`, oldest first.
pub fn chain(catalog: &Catalog, session: u64) -> Result<Vec<u64>, IncrementalError> {
    let mut at = catalog.session(session).ok_or(IncrementalError::UnknownSession(session))?;
    let mut out = vec![session];
    // Each step goes to a lower id (a record's base is below its session), so the loop ends
    // within as many steps as there are sessions.
    while let SessionKind::Incremental { base } = at.start().kind {
        assert!(base < at.id(), "a validated record's base is an earlier session");
        let b = catalog.session(base).ok_or(IncrementalError::BaseMissing { session: at.id(), base })?;
        if !is_complete(b) {
            return Err(IncrementalError::BaseIncomplete { session: at.id(), base });
        }
        out.push(base);
        at = b;
    }
    out.reverse();
    Ok(out)
}

/// What a path was in the baseline, as far as telling an unchanged file needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    kind: ObjectKind,
    size: u64,
    mtime: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    /// The mtime is not before the start of the session that recorded it: the file may have
    /// changed again within that second, after it was read.
    racy: bool,
}

/// What an incremental backup compares against: the newest complete session of its sources and
/// what each path was as of it. Each path is looked up in the index files of the chain, newest
/// first, as the walk comes to it: nothing is loaded whole (see [`SessionEntries::lookup`]).
#[derive(Debug)]
pub struct Baseline {
    /// The chain, oldest (the full session) first; the base is the last.
    chain: Vec<u64>,
    /// The chain's sessions, newest first.
    layers: Vec<Layer>,
}

/// One session of a baseline's chain.
#[derive(Debug)]
struct Layer {
    /// When it started: a file modified since then may have changed again after it was read.
    started: i64,
    /// Whether it lists the files it kept: a path neither stored nor kept was gone by then.
    has_kept_list: bool,
    entries: SessionEntries,
}

impl Baseline {
    /// The baseline of a backup of the sources `key` names: the newest session of that key,
    /// read as files, that finished complete.
    pub fn find(catalog: &Catalog, indexes: &Indexes, key: SourceKey) -> Result<Baseline, IncrementalError> {
        if !key.is_known() {
            return Err(IncrementalError::NoBaseline);
        }
        let newest = catalog.sessions().rev().find(|s| {
            s.start().source_key == key.0 && s.start().mode == SessionMode::Files && is_complete(s)
        });
        let session = newest.ok_or(IncrementalError::NoBaseline)?;
        Baseline::of_session(catalog, indexes, session.id())
    }

    /// The baseline a backup built on `session` compares against: the chain's objects, the
    /// newest entry of each path winning; a session with a whole list of kept files drops
    /// what it neither stored nor kept (deleted before it).
    pub fn of_session(
        catalog: &Catalog,
        indexes: &Indexes,
        session: u64,
    ) -> Result<Baseline, IncrementalError> {
        let chain = chain(catalog, session)?;
        let mut layers = Vec::new();
        for &id in chain.iter().rev() {
            let s = catalog.session(id).expect("the chain holds sessions of the catalog");
            let entries = indexes
                .session(catalog, id)
                .map_err(|e| IncrementalError::Index { session: id, why: e.to_string() })?;
            layers.push(Layer {
                started: i64::try_from(s.start().started).unwrap_or(i64::MAX),
                has_kept_list: s.has_kept_list(),
                entries,
            });
        }
        Ok(Baseline { chain, layers })
    }

    /// The session an incremental backup against this baseline builds on.
    pub fn base(&self) -> u64 {
        *self.chain.last().expect("a chain holds at least its own session")
    }

    /// The chain, oldest first.
    pub fn chain(&self) -> &[u64] {
        &self.chain
    }

    /// What `path` was as of the baseline: the newest session of the chain that stored it,
    /// unless a newer one with a whole list of kept files neither stored nor kept it. An index
    /// that cannot be read counts as not knowing the path: the file is stored again.
    fn stamp(&self, path: &[u8]) -> Option<Stamp> {
        for layer in &self.layers {
            match layer.entries.lookup(path) {
                Ok(Some(Entry::Object(o))) => {
                    return Some(Stamp {
                        kind: o.kind,
                        size: o.size,
                        mtime: o.mtime,
                        mode: o.mode,
                        uid: o.uid,
                        gid: o.gid,
                        racy: o.mtime >= layer.started,
                    });
                }
                Ok(Some(Entry::Kept(_))) => {}
                Ok(None) if layer.has_kept_list => return None,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "baseline", "{e}: the file is stored again");
                    return None;
                }
            }
        }
        None
    }

    /// Whether the walked object `meta` is a regular file unchanged since the baseline, so that
    /// the backup may leave it out. Every other kind is always stored.
    pub fn is_unchanged(&self, meta: &ObjectMeta) -> bool {
        if meta.kind != ObjectKind::File || meta.hardlink.is_some() {
            return false;
        }
        self.stamp(&meta.path).is_some_and(|s| {
            s.kind == ObjectKind::File
                && !s.racy
                && (s.size, s.mtime) == (meta.size, meta.mtime)
                && (s.mode, s.uid, s.gid) == (meta.mode, meta.uid, meta.gid)
        })
    }
}

/// Decides which walked entries an incremental backup leaves out: the baseline itself on the
/// box, or, on a backup agent, the box asked over the connection (the baseline stays there).
pub trait Skipper: Send + Sync + std::fmt::Debug {
    /// For each of `metas`, in order, whether to leave it out.
    fn skip_all(&self, metas: &[&ObjectMeta]) -> Vec<bool>;
    /// How many walked entries to ask about at once (1: each as it comes).
    fn batch(&self) -> usize {
        1
    }
    /// Whether to leave out one entry (a skipper asked one at a time).
    fn skip_one(&self, meta: &ObjectMeta) -> bool {
        self.skip_all(&[meta]).first().copied().unwrap_or(false)
    }
}

impl Skipper for Incremental {
    fn skip_all(&self, metas: &[&ObjectMeta]) -> Vec<bool> {
        metas.iter().map(|m| self.skip(m)).collect()
    }
    // The local walk's path: no allocation per file.
    fn skip_one(&self, meta: &ObjectMeta) -> bool {
        self.skip(meta)
    }
}

/// Files and bytes an incremental backup left out as unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unchanged {
    /// Regular files left out.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A baseline shared by the threads that walk the sources, counting and listing what they
/// leave out.
#[derive(Clone, Debug)]
pub struct Incremental {
    baseline: Arc<Baseline>,
    files: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    /// The paths left out, for the session's list of kept files.
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Incremental {
    /// Backs up against `baseline`.
    pub fn new(baseline: Baseline) -> Incremental {
        Incremental {
            baseline: Arc::new(baseline),
            files: Arc::default(),
            bytes: Arc::default(),
            kept: Arc::default(),
        }
    }

    /// The baseline.
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// The session the backup builds on.
    pub fn base(&self) -> u64 {
        self.baseline.base()
    }

    /// Whether to leave the walked object out (an unchanged regular file); counts it if so.
    pub fn skip(&self, meta: &ObjectMeta) -> bool {
        let skip = self.baseline.is_unchanged(meta);
        if skip {
            self.files.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(meta.size, Ordering::Relaxed);
            self.kept.lock().unwrap_or_else(|e| e.into_inner()).push(meta.path.clone());
        }
        skip
    }

    /// The paths left out so far, sorted (the walkers of several sources add in any order).
    pub fn kept(&self) -> Vec<Vec<u8>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone();
        kept.sort_unstable();
        kept
    }

    /// What was left out so far.
    pub fn unchanged(&self) -> Unchanged {
        Unchanged { files: self.files.load(Ordering::Relaxed), bytes: self.bytes.load(Ordering::Relaxed) }
    }
}

/// Where a restore of `session` reads each object from: per session of its chain, oldest
/// first, the ids of the objects to take from it (sessions with none are left out). Each path
/// comes from the newest session of the chain that holds it; from sessions older than
/// `session`, only the regular files `session` kept, or without a whole list of those, the
/// regular files whose directories `session` still holds (see the module docs). A full session
/// is its own chain: all of its objects.
pub fn restore_sources(
    catalog: &Catalog,
    indexes: &Indexes,
    session: u64,
) -> Result<Vec<(u64, BTreeSet<u64>)>, IncrementalError> {
    let chain = chain(catalog, session)?;
    let last = catalog.session(session).expect("chain checked it");
    let read = |id: u64| -> Result<Vec<Entry>, IncrementalError> {
        let index_error = |why: String| IncrementalError::Index { session: id, why };
        let entries = indexes.session(catalog, id).map_err(|e| index_error(e.to_string()))?;
        entries.iter().collect::<Result<Vec<_>, _>>().map_err(|e| index_error(e.to_string()))
    };
    let newest_entries = read(session)?;
    let dirs: HashSet<&[u8]> = newest_entries
        .iter()
        .filter_map(|e| match e {
            Entry::Object(o) if o.kind == ObjectKind::Dir => Some(o.path.as_slice()),
            _ => None,
        })
        .collect();
    let kept: Option<HashSet<&[u8]>> = last
        .has_kept_list()
        .then(|| newest_entries.iter().filter(|e| matches!(e, Entry::Kept(_))).map(Entry::path).collect());
    let wanted = |path: &[u8]| match &kept {
        Some(kept) => kept.contains(path),
        None => parents_in(path, &dirs),
    };
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    for &id in chain.iter().rev() {
        let newest = id == session;
        let older;
        let entries = if newest {
            &newest_entries
        } else {
            older = read(id)?;
            &older
        };
        let mut ids = BTreeSet::new();
        // Every piece of a split object shares its path: take them all, or none.
        let mut here: HashSet<&[u8]> = HashSet::new();
        for o in entries.iter().filter_map(|e| match e {
            Entry::Object(o) => Some(o),
            Entry::Kept(_) => None,
        }) {
            let path = o.path.as_slice();
            if taken.contains(path) && !here.contains(path) {
                continue;
            }
            if !newest && (o.kind != ObjectKind::File || !wanted(path)) {
                continue;
            }
            here.insert(path);
            ids.insert(o.id);
        }
        taken.extend(here.into_iter().map(<[u8]>::to_vec));
        if !ids.is_empty() {
            out.push((id, ids));
        }
    }
    out.reverse();
    Ok(out)
}

/// Whether every directory above `path` (relative, '/'-separated) is in `dirs`.
fn parents_in(path: &[u8], dirs: &HashSet<&[u8]>) -> bool {
    path.iter().enumerate().filter(|&(_, &b)| b == b'/').all(|(i, _)| dirs.contains(&path[..i]))
}

#[cfg(test)]
#[path = "baseline_tests.rs"]
mod tests;
