//! The store with index files: a session's entries go from journal batches to its index file
//! when it ends, the journal drops them at the next snapshot, and a crash between the two is
//! repaired at the next open.

use super::*;
use crate::catalog::{
    MediumAdded, MediumKind, ObjectsStored, SessionFinished, SessionKind, SessionMode, SessionPart,
    SessionStarted, StoredObject, object_batches,
};
use crate::format::records::ObjectKind;
use crate::index::Entry;

const MEDIUM: [u8; 16] = [4; 16];

fn open(dir: &Path) -> (Store, OpenReport) {
    Store::open(dir, Mode::Write).unwrap()
}

fn object(id: u64) -> StoredObject {
    StoredObject {
        id,
        // Not in path order: the index sorts them.
        path: format!("dir{}/file{id:07}", id % 7).into_bytes(),
        kind: ObjectKind::File,
        size: id,
        mtime: 1_700_000_000,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        segment_offset: 0,
        length: id,
        stream: 0,
        part: 0,
        position: id * 512,
        digest: [id as u8; 32],
    }
}

fn start(store: &mut Store, session: u64) {
    let mut records = Vec::new();
    if store.catalog().medium(MEDIUM).is_none() {
        records.push(Record::from(MediumAdded {
            medium: MEDIUM,
            barcode: "T0001".into(),
            pool: "default".into(),
            kind: MediumKind::Disk,
            block_size: 4096,
            capacity: 1 << 40,
            created: 1,
            location: "disk:/x".into(),
        }));
    }
    records.push(Record::from(SessionStarted {
        session,
        job: 0,
        host: "h".into(),
        source: "/s".into(),
        started: 1_800_000_000,
        streams: 1,
        mode: SessionMode::Files,
        kind: SessionKind::Full,
        source_key: [1; 32],
    }));
    records.push(Record::from(SessionPart {
        session,
        stream: 0,
        part: 0,
        medium: MEDIUM,
        position: 0,
        file_number: 0,
    }));
    store.commit(&records).unwrap();
}

/// Commits objects `ids` of `session` in batches.
fn store_objects(store: &mut Store, session: u64, ids: std::ops::Range<u64>) {
    let objects: Vec<StoredObject> = ids.map(object).collect();
    for chunk in objects.chunks(1000) {
        let records: Vec<Record> =
            object_batches(session, chunk.to_vec()).into_iter().map(Record::from).collect();
        store.commit(&records).unwrap();
    }
}

fn finish(store: &mut Store, session: u64, objects: u64) {
    store
        .commit(&[Record::from(SessionFinished {
            session,
            ended: 1_800_000_100,
            status: SessionStatus::Complete,
            objects,
            raw_bytes: 0,
            stored_bytes: 0,
        })])
        .unwrap();
}

/// The paths of a session's entries, in index order.
fn paths(store: &Store, session: u64) -> Vec<Vec<u8>> {
    let entries = store.entries(session).unwrap();
    entries.iter().map(|e| e.unwrap().path().to_vec()).collect()
}

fn sorted_paths(ids: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    let mut p: Vec<Vec<u8>> = ids.map(|i| object(i).path).collect();
    p.sort();
    p
}

#[test]
fn a_finished_session_is_indexed_and_the_snapshot_drops_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    // Enough batches to pass SNAPSHOT_AFTER_BYTES.
    store_objects(&mut store, 1, 1..80_001);
    assert!(store.journal_size().1 > SNAPSHOT_AFTER_BYTES);
    // Running: read from the spool.
    assert_eq!(paths(&store, 1), sorted_paths(1..80_001));
    assert!(!store.catalog().snapshot_ready());
    finish(&mut store, 1, 80_000);
    let s = store.catalog().session(1).unwrap();
    let ix = s.indexed().expect("indexed when it ended");
    assert_eq!((ix.entries, ix.objects, s.object_count()), (80_000, 80_000, 80_000));
    assert!(index_file(dir.path(), 1).exists());
    assert!(!dir.path().join("index/session-0000000000000001.runs").exists());
    // The snapshot taken then holds no per-object record: a handful of records remain.
    let (records, _) = store.journal_size();
    assert!(records < 10, "{records} records after the snapshot");
    assert_eq!(paths(&store, 1), sorted_paths(1..80_001));
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(paths(&store, 1), sorted_paths(1..80_001));
    let found = store.entries(1).unwrap().find(b"dir3/file0000010").unwrap();
    assert!(matches!(&found[..], [Entry::Object(o)] if o.id == 10));
}

#[test]
fn a_small_session_leaves_its_batches_until_the_journal_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..101);
    finish(&mut store, 1, 100);
    assert!(store.catalog().session(1).unwrap().indexed().is_some());
    // No snapshot yet: replay reads the batches again and skips them once it meets the
    // SessionIndexed record, with nothing to repair.
    assert!(store.journal_size().0 > 3);
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(paths(&store, 1), sorted_paths(1..101));
    assert!(!dir.path().join("index/session-0000000000000001.runs").exists());
}

fn index_file(state: &Path, session: u64) -> PathBuf {
    state.join(format!("index/session-{session:016x}.idx"))
}

#[test]
fn a_session_left_running_is_indexed_from_the_journal_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    store.spool.set_run_entries(700);
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..3001);
    // Runs written, the rest buffered: then the process dies.
    assert!(dir.path().join("index/session-0000000000000001.runs").is_dir());
    drop(store);
    let (store, report) = open(dir.path());
    let s = store.catalog().session(1).unwrap();
    assert_eq!(s.finish().unwrap().status, SessionStatus::Interrupted);
    assert_eq!(s.indexed().unwrap().entries, 3000);
    assert!(report.warnings.iter().any(|w| w.contains("closed as interrupted")), "{:?}", report.warnings);
    assert_eq!(paths(&store, 1), sorted_paths(1..3001));
    assert!(store.catalog().snapshot_ready());
}

#[test]
fn an_index_that_could_not_be_written_is_written_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..101);
    // A file where the session's runs go: writing the index fails (as a full disk would).
    let blocker = dir.path().join("index/session-0000000000000001.runs");
    std::fs::write(&blocker, b"in the way").unwrap();
    finish(&mut store, 1, 100);
    let s = store.catalog().session(1).unwrap();
    assert!(s.is_finished() && s.indexed().is_none());
    let said =
        store.catalog().log().any(|l| l.message.contains("index file of session 1 could not be written"));
    assert!(said, "the failure is in the activity log");
    // Nothing is lost meanwhile: the journal keeps the batches, and no snapshot drops them.
    assert!(!store.catalog().snapshot_ready());
    drop(store);
    let (store, report) = open(dir.path());
    assert!(
        report.warnings.iter().any(|w| w.contains("wrote the index files of 1 sessions (100 entries)")),
        "{:?}",
        report.warnings
    );
    assert_eq!(store.catalog().session(1).unwrap().indexed().unwrap().entries, 100);
    assert_eq!(paths(&store, 1), sorted_paths(1..101));
}

#[test]
fn many_runs_merge_in_passes_into_one_sorted_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    // 150 runs of 40 entries: more than one merge pass.
    store.spool.set_run_entries(40);
    const { assert!(150 > crate::index::MERGE_FAN_IN) };
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..6001);
    assert_eq!(paths(&store, 1), sorted_paths(1..6001), "read from runs while running");
    finish(&mut store, 1, 6000);
    assert!(store.catalog().session(1).unwrap().indexed().is_some());
    assert_eq!(paths(&store, 1), sorted_paths(1..6001));
    let under: Vec<Vec<u8>> =
        store.entries(1).unwrap().under(b"dir2").map(|e| e.unwrap().path().to_vec()).collect();
    let mut want: Vec<Vec<u8>> = (1..6001).filter(|i| i % 7 == 2).map(|i| object(i).path).collect();
    want.sort();
    assert_eq!(under, want);
}

#[test]
fn a_pruned_session_takes_its_index_file_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..11);
    finish(&mut store, 1, 10);
    assert!(index_file(dir.path(), 1).exists());
    store.commit(&[Record::from(crate::catalog::SessionPruned { session: 1 })]).unwrap();
    assert!(!index_file(dir.path(), 1).exists());
}

#[test]
fn a_read_only_store_reads_index_files_and_refuses_what_is_only_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..11);
    finish(&mut store, 1, 10);
    start(&mut store, 2);
    store_objects(&mut store, 2, 1..11);
    drop(store);
    let (ro, _) = Store::open(dir.path(), Mode::ReadOnly).unwrap();
    assert_eq!(paths(&ro, 1).len(), 10);
    let err = ro.entries(2).unwrap_err();
    assert!(matches!(err, EntriesError::NotIndexed(2)), "{err}");
}

#[test]
fn batches_and_single_records_count_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store.commit(&[Record::from(crate::catalog::ObjectStored { session: 1, object: object(1) })]).unwrap();
    store.commit(&[Record::from(ObjectsStored { session: 1, objects: vec![object(2), object(3)] })]).unwrap();
    finish(&mut store, 1, 3);
    assert_eq!(store.catalog().session(1).unwrap().object_count(), 3);
    assert_eq!(paths(&store, 1), sorted_paths(1..4));
}

#[test]
fn a_pruned_index_file_goes_once_durable_stays_gone_on_replay_and_comes_back_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(dir.path());
    start(&mut store, 1);
    store_objects(&mut store, 1, 1..101);
    finish(&mut store, 1, 100);
    let indexed = store.catalog().session(1).unwrap().indexed().cloned().unwrap();
    assert!(index_file(dir.path(), 1).exists());
    store.commit(&[Record::from(crate::catalog::IndexPruned { session: 1, at: 5 })]).unwrap();
    assert!(!index_file(dir.path(), 1).exists(), "deleted once the record is durable");
    let err = store.entries(1).unwrap_err();
    assert!(matches!(err, EntriesError::Pruned(1)), "{err}");
    assert!(err.to_string().contains("coffer scan --session 1"), "{err}");
    // Read back for one restore: in memory, the state unchanged.
    let loaded = store.indexes().with_loaded(1, (1..101).rev().map(|i| Entry::Object(object(i))).collect());
    let entries = loaded.session(store.catalog(), 1).unwrap();
    let back: Vec<Vec<u8>> = entries.iter().map(|e| e.unwrap().path().to_vec()).collect();
    assert_eq!(back, sorted_paths(1..101));
    assert!(store.entries(1).is_err());
    // A file left by a process that stopped before it deleted it goes at the next open.
    std::fs::write(index_file(dir.path(), 1), b"left over").unwrap();
    drop(store);
    let (mut store, _) = open(dir.path());
    assert!(!index_file(dir.path(), 1).exists());
    assert!(store.catalog().session(1).unwrap().index_pruned().is_some());
    // Read back: the file written again, then journaled; replay keeps it.
    let objects: Vec<Entry> = (1..101).map(|i| Entry::Object(object(i))).collect();
    let summary = crate::index::write_sorted(&index_file(dir.path(), 1), 1, objects).unwrap();
    store.commit(&[Record::from(SessionIndexed { crc: summary.crc, ..indexed })]).unwrap();
    assert_eq!(paths(&store, 1), sorted_paths(1..101));
    drop(store);
    let (store, _) = open(dir.path());
    assert!(index_file(dir.path(), 1).exists(), "replaying the pruning deletes nothing");
    assert_eq!(paths(&store, 1), sorted_paths(1..101));
}
