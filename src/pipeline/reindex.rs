//! Reading a session's per-file index back from its media, once its index file was pruned
//! (`lifecycle::index_prune`): for a restore of the whole session (held in memory for that
//! restore, [`load_pruned`]) or, with `coffer scan --session N`, written to the state again and
//! journaled ([`reindex`]) so that single files can be listed and restored.
//!
//! Every stream of a session ends with the index of its objects (and stream 0 of a complete
//! incremental with the files it kept) before its trailer. The catalog knows where each part
//! starts, so only the session's own parts are walked, from their positions, as `scan` walks
//! a medium (record headers read, large payloads skipped). What is read must hold exactly the
//! entries the journal recorded when the session ended (entries, objects, bytes, kept files):
//! the catalog refuses a `SessionIndexed` that does not, and nothing is changed then.
//!
//! Packed objects' digests are inside their packs: the walk unpacks them (where `scan` skips
//! packs), so the index read back holds every digest the pruned one held.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::scan::{Cursor, Found, found_kept, found_objects, found_status, walk_part};
use crate::catalog::{Catalog, Record, SessionIndexed, SessionKind, StoredObject};
use crate::device::{DeviceError, Media, open_media};
use crate::format::HEADER_LEN;
use crate::index::{Entry, IndexError, write_sorted};
use crate::store::{Indexes, State, StoreError};

/// Why a session's index cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    /// No such session.
    #[error("no session {0} in the catalog: `coffer ls` lists them")]
    NoSession(u64),
    /// Its index was not pruned: there is nothing to read back.
    #[error(
        "session {0}'s index was not pruned: `coffer ls {0}` lists its files and `coffer restore {0} PATH` restores one"
    )]
    NotPruned(u64),
    /// A medium holding a part of it cannot be opened or read.
    #[error(
        "cannot read part {part} of stream {stream} of session {session} on medium {barcode} ({location}): {why}; \
         put the medium back where the catalog says it is (or into the library) and try again"
    )]
    Medium {
        /// Session.
        session: u64,
        /// Stream and part.
        stream: u16,
        /// Part.
        part: u32,
        /// The medium.
        barcode: String,
        /// Where the catalog has it.
        location: String,
        /// What went wrong.
        why: String,
    },
    /// The media do not hold the session's index whole.
    #[error("session {session}'s index cannot be read back from its media: {why}")]
    Incomplete {
        /// Session.
        session: u64,
        /// What is missing or wrong.
        why: String,
    },
    /// The index file cannot be written.
    #[error("cannot write session {session}'s index file: {source}")]
    Write {
        /// Session.
        session: u64,
        /// Why.
        source: IndexError,
    },
    /// The journal refused the change (what was read holds other entries, say).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`reindex`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reindexed {
    /// Entries in the index file.
    pub entries: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Reads `session`'s index back from its media and writes it to the state again, journaled as
/// `SessionIndexed`. The catalog is read once and the store is not held while the media are
/// read. On any error nothing is changed.
pub fn reindex(state: &mut impl State, session: u64) -> Result<Reindexed, ReindexError> {
    let catalog = state.read(|c| {
        let s = c.session(session).ok_or(ReindexError::NoSession(session))?;
        if s.index_pruned().is_none() {
            return Err(ReindexError::NotPruned(session));
        }
        Ok(c.clone())
    })?;
    let s = catalog.session(session).expect("checked above");
    let was = s.indexed().cloned().expect("a pruned index was indexed");
    let entries = read_entries(&catalog, session)?;
    let record = SessionIndexed { crc: 0, ..totals(session, &entries, s.has_kept_list()) };
    // Checked before anything is written: the file would only be deleted again.
    if (record.entries, record.objects, record.raw_bytes, record.kept, record.kept_complete)
        != (was.entries, was.objects, was.raw_bytes, was.kept, was.kept_complete)
    {
        return Err(ReindexError::Incomplete {
            session,
            why: format!(
                "the media hold {} entries ({} objects, {} bytes, {} kept files), the journal recorded {} ({} objects, {} bytes, {} kept files)",
                record.entries,
                record.objects,
                record.raw_bytes,
                record.kept,
                was.entries,
                was.objects,
                was.raw_bytes,
                was.kept
            ),
        });
    }
    let indexes = state.indexes();
    let path = indexes.file_of(session);
    let summary =
        write_sorted(&path, session, entries).map_err(|source| ReindexError::Write { session, source })?;
    if let Err(e) = state.commit(&[Record::from(SessionIndexed { crc: summary.crc, ..record })]) {
        // Another read-back of the same session may have been journaled meanwhile (the file
        // is the same then): the file goes only while the catalog still says pruned.
        if state.read(|c| c.session(session).is_some_and(|s| s.index_pruned().is_some())) {
            let _ = std::fs::remove_file(&path);
        }
        return Err(e.into());
    }
    Ok(Reindexed { entries: summary.entries, bytes: summary.bytes })
}

/// `indexes`, with the entries of every pruned session that restoring `session` reads (itself
/// and its chain's older sessions) read back from their media and held in memory: a restore
/// of the whole session then plans as usual. Nothing is written.
pub fn load_pruned(catalog: &Catalog, indexes: Indexes, session: u64) -> Result<Indexes, ReindexError> {
    let mut out = indexes;
    for id in pruned_in_chain(catalog, session) {
        out = out.with_loaded(id, read_entries(catalog, id)?);
    }
    Ok(out)
}

/// The sessions whose index is pruned among `session` and the older sessions of its chain
/// (as far as the catalog holds them), oldest first.
pub fn pruned_in_chain(catalog: &Catalog, session: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = catalog.session(session);
    while let Some(s) = at {
        if s.index_pruned().is_some() {
            out.push(s.id());
        }
        at = match s.start().kind {
            // A validated record's base is below its session: the walk ends.
            SessionKind::Incremental { base } if base < s.id() => catalog.session(base),
            _ => None,
        };
    }
    out.reverse();
    out
}

/// The record totals of `entries` as the catalog counts them (an object split into segments
/// counts once).
fn totals(session: u64, entries: &[Entry], kept_complete: bool) -> SessionIndexed {
    let mut t =
        SessionIndexed { session, entries: 0, objects: 0, raw_bytes: 0, kept: 0, kept_complete, crc: 0 };
    let mut split = BTreeSet::new();
    for e in entries {
        t.entries += 1;
        match e {
            Entry::Kept(_) => t.kept += 1,
            Entry::Object(o) => {
                t.raw_bytes += o.length;
                let whole = o.segment_offset == 0 && o.length == o.size;
                if whole || split.insert(o.id) {
                    t.objects += 1;
                }
            }
        }
    }
    t
}

/// Reads `session`'s index from its media: its objects' pieces and, for a complete
/// incremental, the files it kept.
pub fn read_entries(catalog: &Catalog, session: u64) -> Result<Vec<Entry>, ReindexError> {
    let s = catalog.session(session).ok_or(ReindexError::NoSession(session))?;
    let incomplete = |why: String| ReindexError::Incomplete { session, why };
    let mut opened: HashMap<String, Box<dyn Media>> = HashMap::new();
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    for p in s.parts() {
        let medium = catalog.medium(p.medium).ok_or_else(|| {
            incomplete(format!(
                "part {} of stream {} is on a medium the catalog does not know",
                p.part, p.stream
            ))
        })?;
        let location = medium.info().location.clone();
        let barcode = medium.barcode().to_owned();
        let fail = |why: String| ReindexError::Medium {
            session,
            stream: p.stream,
            part: p.part,
            barcode: barcode.clone(),
            location: location.clone(),
            why,
        };
        if !opened.contains_key(&location) {
            let media = open_media(&location).map_err(|e| fail(e.to_string()))?;
            opened.insert(location.clone(), media);
        }
        let media = opened.get_mut(&location).expect("opened above").as_mut();
        walk_one_part(media, &barcode, p.position, p.file_number, p.medium, &mut found).map_err(&fail)?;
        if let Some(other) = found.keys().find(|&&id| id != session) {
            return Err(fail(format!(
                "it holds session {other} there, not session {session}: the medium was written over"
            )));
        }
    }
    let mut f = found.remove(&session).ok_or_else(|| incomplete("it has no parts".into()))?;
    let streams = s.start().streams;
    if let Some(stream) = (0..streams).find(|st| !f.trailers.contains_key(st)) {
        return Err(incomplete(format!("stream {stream} has no trailer on the media, so no index")));
    }
    let status = found_status(&f, streams);
    let kept = found_kept(&mut f, s.start().kind, status).unwrap_or_default();
    let objects: Vec<StoredObject> = found_objects(&f);
    Ok(kept.into_iter().map(Entry::Kept).chain(objects.into_iter().map(Entry::Object)).collect())
}

/// Walks the part of `barcode` that starts at `position` (tape file `file_number`).
fn walk_one_part(
    media: &mut dyn Media,
    barcode: &str,
    position: u64,
    file_number: u32,
    medium: [u8; 16],
    found: &mut BTreeMap<u64, Found>,
) -> Result<(), String> {
    let reader =
        media.open_part(barcode, position, file_number, 0).map_err(|e: DeviceError| e.to_string())?;
    let mut c = Cursor { media, barcode: barcode.to_owned(), reader, file: Some((position, file_number)) };
    let mut head = [0u8; HEADER_LEN];
    if !c.fill(&mut head).map_err(|e| e.to_string())? {
        return Err(format!("the data ends before byte {position}, where the part starts"));
    }
    walk_part(&mut c, &mut head, medium, found, true).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::ObjectKind;

    fn piece(id: u64, size: u64, segment_offset: u64, length: u64) -> Entry {
        Entry::Object(StoredObject {
            id,
            path: format!("f{id}").into_bytes(),
            kind: ObjectKind::File,
            size,
            mtime: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            segment_offset,
            length,
            stream: 0,
            part: 0,
            position: 0,
            digest: [0; 32],
        })
    }

    #[test]
    fn totals_count_a_split_object_once_and_kept_files_apart_as_the_catalog_does() {
        let entries = [
            piece(1, 10, 0, 10),
            // Object 2 in three segments.
            piece(2, 30, 0, 10),
            piece(2, 30, 10, 10),
            piece(2, 30, 20, 10),
            Entry::Kept(b"old".to_vec()),
        ];
        let t = totals(7, &entries, true);
        assert_eq!(
            (t.session, t.entries, t.objects, t.raw_bytes, t.kept, t.kept_complete),
            (7, 5, 2, 40, 1, true)
        );
    }
}
