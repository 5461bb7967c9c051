//! Catalog pruning (seed 001): which finished sessions' per-file indexes leave the state
//! directory. Pure: the catalog and a clock in, session ids out; the service journals
//! `IndexPruned` for them and the store deletes the files.
//!
//! A session's index is pruned once the session started more than `catalog_keep` ago, it
//! finished with every stream ended by its trailer (so its media hold the index to read back),
//! and nothing that keeps its index needs this one:
//!
//! - Restoring an incremental session picks, from every older session of its chain, the files
//!   it kept, by path; that needs each of those sessions' entries (reading an older session
//!   whole instead would bring back files deleted since). So the chain of every session whose
//!   index stays keeps its indexes too, or a person could no longer restore one file from a
//!   kept incremental.
//! - The next incremental backup of a source compares each file with the newest complete
//!   session of that source and its chain, path by path. That chain keeps its indexes too,
//!   however old, or the next incremental would find no baseline and store everything.
//!
//! Sessions whose index is pruned restore whole: their index is read back from the media for
//! the restore (see `pipeline::reindex`).

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, IndexPruned, Record, Session, SessionKind, SessionMode};
use crate::format::records::SessionStatus;

/// How long a finished session keeps its index when the board does not say: 30 days (seed
/// 001).
pub const DEFAULT_CATALOG_KEEP: u64 = 30 * 86_400;
/// How often the service prunes on its own, besides after each job.
pub const PRUNE_EVERY: u64 = 86_400;

/// The sessions whose index to prune at `now`, oldest first, with indexes kept `keep` seconds.
pub fn to_prune(catalog: &Catalog, now: u64, keep: u64) -> Vec<u64> {
    let old = |s: &Session| s.start().started.saturating_add(keep) <= now;
    let mut needed = BTreeSet::new();
    // Sessions whose index stays: young ones and those still running.
    for s in catalog.sessions().filter(|s| !old(s) || !s.is_finished()) {
        needed.extend(bases(catalog, s));
    }
    // The baseline of each source's next incremental, and its chain.
    let mut newest: BTreeMap<[u8; 32], &Session> = BTreeMap::new();
    for s in catalog.sessions().filter(|s| is_baseline(s)) {
        newest.insert(s.start().source_key, s);
    }
    for s in newest.values() {
        needed.insert(s.id());
        needed.extend(bases(catalog, s));
    }
    catalog
        .sessions()
        .filter(|s| old(s) && s.index_unprunable().is_none() && !needed.contains(&s.id()))
        .map(Session::id)
        .collect()
}

/// Whether the service prunes at `now`: after each job, at its first scan of the queue
/// (`last` is `None`), and once [`PRUNE_EVERY`] has passed since it last did.
pub fn due(last: Option<u64>, now: u64, after_job: bool) -> bool {
    after_job || last.is_none_or(|t| now >= t.saturating_add(PRUNE_EVERY))
}

/// The records that prune what [`to_prune`] names at `now`.
pub fn records(catalog: &Catalog, now: u64, keep: u64) -> Vec<Record> {
    to_prune(catalog, now, keep)
        .into_iter()
        .map(|session| Record::from(IndexPruned { session, at: now }))
        .collect()
}

/// Whether a later incremental backup of the session's source may compare against it: the
/// rule of `pipeline::baseline::Baseline::find`.
fn is_baseline(s: &Session) -> bool {
    s.start().source_key != [0; 32]
        && s.start().mode == SessionMode::Files
        && s.finish().is_some_and(|f| f.status == SessionStatus::Complete)
}

/// The sessions below `s` in its chain: its base, the base's base… as far as the catalog holds
/// them.
fn bases(catalog: &Catalog, s: &Session) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = s;
    // A validated record's base is below its session: the walk ends.
    while let SessionKind::Incremental { base } = at.start().kind {
        assert!(base < at.id(), "a validated record's base is an earlier session");
        let Some(b) = catalog.session(base) else { break };
        out.push(base);
        at = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{
        MediumAdded, MediumKind, SessionFinished, SessionIndexed, SessionPart, SessionStarted,
    };

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    /// A catalog of sessions `(id, started day, base, source key byte, status)`, each finished
    /// and indexed.
    fn catalog(sessions: &[(u64, u64, Option<u64>, u8, SessionStatus)]) -> Catalog {
        let mut c = Catalog::new();
        let medium = [1; 16];
        c.apply(&Record::from(MediumAdded {
            medium,
            barcode: "vol1".into(),
            pool: "default".into(),
            kind: MediumKind::Disk,
            block_size: 4096,
            capacity: 1 << 30,
            created: T0,
            location: "disk:/media".into(),
        }))
        .unwrap();
        for &(id, day, base, key, status) in sessions {
            let started = T0 + day * DAY;
            let kind = base.map_or(SessionKind::Full, |base| SessionKind::Incremental { base });
            let records = [
                Record::from(SessionStarted {
                    session: id,
                    job: 0,
                    host: "box".into(),
                    source: "/srv".into(),
                    started,
                    streams: 1,
                    mode: SessionMode::Files,
                    kind,
                    source_key: [key; 32],
                }),
                Record::from(SessionPart {
                    session: id,
                    stream: 0,
                    part: 0,
                    medium,
                    position: 0,
                    file_number: 0,
                }),
                Record::from(SessionFinished {
                    session: id,
                    ended: started + 60,
                    status,
                    objects: 0,
                    raw_bytes: 0,
                    stored_bytes: 0,
                }),
                Record::from(SessionIndexed {
                    session: id,
                    entries: 0,
                    objects: 0,
                    raw_bytes: 0,
                    kept: 0,
                    kept_complete: false,
                    crc: 1,
                }),
            ];
            for r in &records {
                c.apply(r).unwrap();
            }
        }
        c
    }

    use SessionStatus::{Complete, Failed};

    #[test]
    fn old_sessions_are_pruned_unless_a_kept_chain_or_the_next_baseline_needs_them() {
        // Source 1: full on day 0, incrementals on days 1 and 2; a full on day 40, an
        // incremental on it on day 60. Source 2: one full on day 5, never again. Source 3: a
        // failed session on day 3 (no baseline).
        let c = catalog(&[
            (1, 0, None, 1, Complete),
            (2, 1, Some(1), 1, Complete),
            (3, 2, Some(2), 1, Complete),
            (4, 3, None, 3, Failed),
            (5, 5, None, 2, Complete),
            (6, 40, None, 1, Complete),
            (7, 60, Some(6), 1, Complete),
        ]);
        // Day 65, keep 30 days: 1 to 5 are old; 6 and 7 are young; 5 is source 2's next
        // baseline.
        assert_eq!(to_prune(&c, T0 + 65 * DAY, 30 * DAY), [1, 2, 3, 4]);
        // Day 20, keep 10 days: all five are old, but source 1's newest complete session (3,
        // on 2 on 1) and source 2's full are the next baselines: only the failed one goes.
        let c20 = catalog(&[
            (1, 0, None, 1, Complete),
            (2, 1, Some(1), 1, Complete),
            (3, 2, Some(2), 1, Complete),
            (4, 3, None, 3, Failed),
            (5, 5, None, 2, Complete),
        ]);
        assert_eq!(to_prune(&c20, T0 + 20 * DAY, 10 * DAY), [4]);
        // Before anything is old, nothing goes.
        assert!(to_prune(&c, T0 + 65 * DAY, 100 * DAY).is_empty());
    }

    #[test]
    fn the_service_prunes_after_a_job_at_its_first_scan_and_once_a_day() {
        assert!(due(None, T0, false));
        assert!(!due(Some(T0), T0 + DAY - 1, false));
        assert!(due(Some(T0), T0 + DAY - 1, true));
        assert!(due(Some(T0), T0 + DAY, false));
        // A clock set back does not stop it for long, nor make it run every scan.
        assert!(!due(Some(T0), T0 - 10, false));
    }

    #[test]
    fn a_young_incremental_keeps_its_whole_chain_and_pruned_sessions_are_not_pruned_again() {
        let mut c = catalog(&[
            (1, 0, None, 1, Complete),
            (2, 10, Some(1), 1, Complete),
            (3, 20, Some(2), 1, Complete),
            (4, 21, None, 1, Complete),
            (5, 50, Some(3), 1, Complete),
        ]);
        // Day 60, keep 30: 5 is young and needs 3, 2, 1; 4 is old and not needed (5 builds on
        // 3, and 5 is the baseline).
        assert_eq!(to_prune(&c, T0 + 60 * DAY, 30 * DAY), [4]);
        let pruning = records(&c, T0 + 60 * DAY, 30 * DAY);
        assert_eq!(pruning, [Record::from(IndexPruned { session: 4, at: T0 + 60 * DAY })]);
        c.apply(&pruning[0]).unwrap();
        assert!(to_prune(&c, T0 + 60 * DAY, 30 * DAY).is_empty());
        // Day 100: 5 is old but the baseline: its chain stays.
        assert!(to_prune(&c, T0 + 100 * DAY, 30 * DAY).is_empty());
    }
}
