//! Catalog consistency rules, bounds, queries and snapshots.

use proptest::prelude::*;

use super::tests::encoded;
use super::*;
use crate::format::records::{ObjectKind, SessionStatus};

const TAPE: [u8; 16] = [7; 16];
const DISK: [u8; 16] = [9; 16];

fn medium(id: [u8; 16], barcode: &str) -> Record {
    Record::MediumAdded(MediumAdded {
        medium: id,
        barcode: barcode.into(),
        pool: "default".into(),
        kind: MediumKind::Tape,
        block_size: 256 << 10,
        capacity: 18 << 40,
        created: 1_790_000_000,
        location: "library:virtual".into(),
    })
}

fn start(session: u64, streams: u16) -> Record {
    Record::SessionStarted(SessionStarted {
        session,
        job: 1,
        host: "coffer-1".into(),
        source: "/srv/data".into(),
        started: 1_790_000_100,
        streams,
        mode: SessionMode::Files,
        kind: SessionKind::Full,
        source_key: [0; 32],
    })
}

fn part(session: u64, stream: u16, part: u32, medium: [u8; 16]) -> Record {
    Record::SessionPart(SessionPart {
        session,
        stream,
        part,
        medium,
        position: u64::from(part) * 1000,
        file_number: part,
    })
}

fn object(session: u64, id: u64, stream: u16, part: u32) -> Record {
    Record::ObjectStored(ObjectStored {
        session,
        object: StoredObject {
            id,
            path: format!("dir/file{id}").into_bytes(),
            kind: ObjectKind::File,
            size: 4096,
            mtime: 1_700_000_000,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            segment_offset: 0,
            length: 4096,
            stream,
            part,
            position: id * 8192,
            digest: [id as u8; 32],
        },
    })
}

fn finish(session: u64) -> Record {
    Record::SessionFinished(SessionFinished {
        session,
        ended: 1_790_000_200,
        status: SessionStatus::Complete,
        objects: 1,
        raw_bytes: 4096,
        stored_bytes: 2048,
    })
}

fn prune(session: u64) -> Record {
    Record::SessionPruned(SessionPruned { session })
}

fn index_pruned(session: u64, at: u64) -> Record {
    Record::IndexPruned(IndexPruned { session, at })
}

fn job(job: u64, name: &str) -> Record {
    Record::JobSaved(JobSaved { job, name: name.into(), definition: "source = \"/srv/data\"\n".into() })
}

fn job_state(job: u64, state: JobState, at: u64) -> Record {
    Record::JobStateChanged(JobStateChanged { job, state, at, message: String::new(), run_at: None })
}

fn log(at: u64) -> Record {
    Record::LogEntry(LogEntry { at, level: LogLevel::Note, job: None, message: format!("entry {at}") })
}

/// A catalog with two media, session 1 (two streams, part 0 of each, one object) running,
/// and job 1 saved.
fn catalog() -> Catalog {
    let mut c = Catalog::new();
    let records = [
        medium(TAPE, "A00001L9"),
        medium(DISK, "vol1"),
        job(1, "nightly"),
        start(1, 2),
        part(1, 0, 0, TAPE),
        part(1, 1, 0, DISK),
        object(1, 1, 0, 0),
    ];
    for r in &records {
        c.apply(r).unwrap();
    }
    c
}

/// Applies a record the catalog must refuse; checks the state did not change.
fn refused(c: &mut Catalog, r: Record) -> CatalogError {
    let before = c.clone();
    let err = c.apply(&r).expect_err("record should be refused");
    assert_eq!(*c, before, "a refused {} changed the catalog", r.name());
    err
}

#[test]
fn media_rules() {
    let mut c = catalog();
    let err = refused(&mut c, medium(TAPE, "OTHER1"));
    assert!(matches!(err, CatalogError::MediumExists { .. }));
    let err = refused(&mut c, medium([3; 16], "A00001L9"));
    assert!(matches!(err, CatalogError::BarcodeInUse { ref barcode, .. } if barcode == "A00001L9"));
    let update = Record::MediumUpdated(MediumUpdated { medium: [3; 16], used: 1, state: MediumState::Full });
    assert!(matches!(refused(&mut c, update), CatalogError::UnknownMedium { .. }));
    let remove = Record::MediumRemoved(MediumRemoved { medium: TAPE });
    let err = refused(&mut c, remove.clone());
    assert!(matches!(err, CatalogError::MediumInUse { session: 1, .. }), "{err}");
    // Once the session is gone, the medium can go, and its barcode is free again.
    c.apply(&finish(1)).unwrap();
    c.apply(&prune(1)).unwrap();
    c.apply(&remove).unwrap();
    assert!(c.medium(TAPE).is_none() && c.medium_by_barcode("A00001L9").is_none());
    c.apply(&medium([3; 16], "A00001L9")).unwrap();
    assert_eq!(c.medium_by_barcode("A00001L9").unwrap().id(), [3; 16]);
    assert!(matches!(refused(&mut c, remove), CatalogError::UnknownMedium { .. }));
}

#[test]
fn session_start_rules() {
    let mut c = catalog();
    assert!(matches!(refused(&mut c, start(1, 1)), CatalogError::SessionExists { session: 1 }));
    c.apply(&start(5, 1)).unwrap();
    assert_eq!(c.next_session_id(), 6);
    // Ids below the next one are never reused, even if no session holds them.
    let err = refused(&mut c, start(3, 1));
    assert_eq!(err, CatalogError::StaleId { what: "session", id: 3, next: 6 });
    let err = refused(&mut c, start(0, 1));
    assert!(matches!(err, CatalogError::Invalid { record: "SessionStarted", .. }));
}

#[test]
fn part_rules() {
    let mut c = catalog();
    let err = refused(&mut c, part(1, 0, 1, [3; 16]));
    assert!(matches!(err, CatalogError::UnknownMedium { .. }));
    let err = refused(&mut c, part(2, 0, 0, TAPE));
    assert_eq!(err, CatalogError::UnknownSession { session: 2 });
    let err = refused(&mut c, part(1, 2, 0, TAPE));
    assert!(matches!(err, CatalogError::UnknownStream { stream: 2, streams: 2, .. }));
    let err = refused(&mut c, part(1, 0, 0, DISK));
    assert!(matches!(err, CatalogError::PartOutOfOrder { part: 0, expected: 1, .. }));
    let err = refused(&mut c, part(1, 0, 2, DISK));
    assert!(matches!(err, CatalogError::PartOutOfOrder { part: 2, expected: 1, .. }));
    c.apply(&part(1, 0, 1, DISK)).unwrap();
    let parts: Vec<_> = c.session(1).unwrap().parts().map(|p| (p.stream, p.part)).collect();
    assert_eq!(parts, [(0, 0), (0, 1), (1, 0)]);
}

#[test]
fn object_rules() {
    let mut c = catalog();
    let err = refused(&mut c, object(2, 2, 0, 0));
    assert_eq!(err, CatalogError::UnknownSession { session: 2 });
    let err = refused(&mut c, object(1, 2, 0, 1));
    assert!(matches!(err, CatalogError::UnknownPart { object: 2, stream: 0, part: 1, .. }));
    c.apply(&object(1, 2, 1, 0)).unwrap();
    assert_eq!((c.session(1).unwrap().entries(), c.session(1).unwrap().object_count()), (2, 2));
    c.apply(&finish(1)).unwrap();
    let err = refused(&mut c, object(1, 3, 0, 0));
    assert_eq!(err, CatalogError::SessionFinished { session: 1 });
    let err = refused(&mut c, part(1, 0, 1, TAPE));
    assert_eq!(err, CatalogError::SessionFinished { session: 1 });
}

#[test]
fn finish_and_prune_rules() {
    let mut c = catalog();
    let err = refused(&mut c, finish(2));
    assert_eq!(err, CatalogError::UnknownSession { session: 2 });
    let err = refused(&mut c, prune(1));
    assert_eq!(err, CatalogError::SessionRunning { session: 1 });
    c.apply(&finish(1)).unwrap();
    assert!(c.session(1).unwrap().is_finished());
    let err = refused(&mut c, finish(1));
    assert_eq!(err, CatalogError::SessionFinished { session: 1 });
    c.apply(&prune(1)).unwrap();
    assert!(c.session(1).is_none());
    let err = refused(&mut c, prune(1));
    assert_eq!(err, CatalogError::UnknownSession { session: 1 });
    assert_eq!(c.next_session_id(), 2);
}

fn moved(session: u64, stream: u16, part: u32, medium: [u8; 16], position: u64) -> Record {
    Record::PartMoved(PartMoved { session, stream, part, medium, position, file_number: 0 })
}

#[test]
fn part_move_rules() {
    let mut c = catalog();
    let err = refused(&mut c, moved(1, 0, 0, DISK, 4096));
    assert_eq!(err, CatalogError::SessionRunning { session: 1 });
    c.apply(&finish(1)).unwrap();
    let err = refused(&mut c, moved(1, 0, 1, DISK, 4096));
    assert_eq!(err, CatalogError::NoSuchPart { session: 1, stream: 0, part: 1 });
    let err = refused(&mut c, moved(1, 0, 0, [3; 16], 4096));
    assert!(matches!(err, CatalogError::UnknownMedium { .. }));
    let err = refused(&mut c, moved(2, 0, 0, DISK, 4096));
    assert_eq!(err, CatalogError::UnknownSession { session: 2 });
    c.apply(&moved(1, 0, 0, DISK, 4096)).unwrap();
    let p = c.session(1).unwrap().part(0, 0).unwrap();
    assert_eq!((p.medium, p.position), (DISK, 4096));
    // The session left the tape: the tape can go, and a snapshot keeps the new place.
    assert_eq!(c.sessions_on(TAPE).count(), 0);
    index_all(&mut c);
    let (again, _) = rebuilt(&c);
    assert_eq!(again, c);
}

#[test]
fn stream_cut_rules() {
    let mut c = catalog();
    let cut = |session, stream| Record::StreamCut(StreamCut { session, stream });
    let err = refused(&mut c, cut(1, 2));
    assert!(matches!(err, CatalogError::UnknownStream { stream: 2, streams: 2, .. }));
    let err = refused(&mut c, cut(2, 0));
    assert_eq!(err, CatalogError::UnknownSession { session: 2 });
    c.apply(&cut(1, 1)).unwrap();
    assert!(c.session(1).unwrap().is_cut(1) && !c.session(1).unwrap().is_cut(0));
    c.apply(&finish(1)).unwrap();
    let err = refused(&mut c, cut(1, 0));
    assert_eq!(err, CatalogError::SessionFinished { session: 1 });
    index_all(&mut c);
    let (again, _) = rebuilt(&c);
    assert_eq!(again, c);
}

#[test]
fn job_rules() {
    let mut c = catalog();
    let err = refused(&mut c, job_state(2, JobState::Hold, 1));
    assert_eq!(err, CatalogError::UnknownJob { job: 2 });
    c.apply(&job_state(1, JobState::Active, 1)).unwrap();
    let err = refused(&mut c, Record::JobDeleted(JobDeleted { job: 1 }));
    assert_eq!(err, CatalogError::JobActive { job: 1 });
    c.apply(&job_state(1, JobState::Done, 2)).unwrap();
    // Saving again replaces the definition and keeps the history.
    c.apply(&job(1, "nightly-full")).unwrap();
    let j = c.job(1).unwrap();
    assert_eq!((j.name(), j.state(), j.history().count()), ("nightly-full", JobState::Done, 2));
    c.apply(&Record::JobDeleted(JobDeleted { job: 1 })).unwrap();
    assert!(c.job(1).is_none());
    let err = refused(&mut c, job(1, "again"));
    assert_eq!(err, CatalogError::StaleId { what: "job", id: 1, next: 2 });
    let err = refused(&mut c, Record::JobDeleted(JobDeleted { job: 1 }));
    assert_eq!(err, CatalogError::UnknownJob { job: 1 });
    c.apply(&job(c.next_job_id(), "weekly")).unwrap();
    assert_eq!(c.job(2).unwrap().state(), JobState::Ready);
}

#[test]
fn ids_never_go_back() {
    let mut c = catalog();
    let back = Record::IdsReserved(IdsReserved { next_session: 1, next_job: 9 });
    let err = refused(&mut c, back);
    assert_eq!(err, CatalogError::StaleId { what: "session", id: 1, next: 2 });
    let ids = Record::IdsReserved(IdsReserved { next_session: 10, next_job: 20 });
    c.apply(&ids).unwrap();
    assert_eq!((c.next_session_id(), c.next_job_id()), (10, 20));
}

#[test]
fn log_keeps_the_last_entries() {
    let mut c = Catalog::new();
    for at in 0..LOG_KEEP as u64 + 5 {
        c.apply(&log(at)).unwrap();
    }
    assert_eq!(c.log().len(), LOG_KEEP);
    assert_eq!(c.log().next().unwrap().at, 5);
    assert_eq!(c.log().next_back().unwrap().at, LOG_KEEP as u64 + 4);
}

#[test]
fn job_history_keeps_the_last_changes() {
    let mut c = catalog();
    for at in 0..JOB_HISTORY_KEEP as u64 + 3 {
        let state = if at % 2 == 0 { JobState::Hold } else { JobState::Ready };
        c.apply(&job_state(1, state, at)).unwrap();
    }
    let j = c.job(1).unwrap();
    assert_eq!(j.history().count(), JOB_HISTORY_KEEP);
    assert_eq!(j.history().next().unwrap().at, 3);
    assert_eq!(j.state(), JobState::Hold);
}

#[test]
fn queries_find_what_was_applied() {
    let mut c = catalog();
    c.apply(&start(2, 1)).unwrap();
    let update =
        Record::MediumUpdated(MediumUpdated { medium: TAPE, used: 1 << 30, state: MediumState::Full });
    c.apply(&update).unwrap();
    assert_eq!(c.latest_session().unwrap().id(), 2);
    assert_eq!(c.sessions().map(Session::id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(c.session(1).unwrap().entries(), 1);
    assert_eq!(c.session(2).unwrap().entries(), 0);
    assert_eq!(c.session(1).unwrap().part(1, 0).unwrap().medium, DISK);
    let tape = c.medium_by_barcode("A00001L9").unwrap();
    assert_eq!((tape.used(), tape.state()), (1 << 30, MediumState::Full));
    assert_eq!(c.media().count(), 2);
    assert_eq!(c.sessions_on(DISK).map(Session::id).collect::<Vec<_>>(), [1]);
    assert_eq!(c.jobs().map(Job::id).collect::<Vec<_>>(), [1]);
    assert_eq!((c.next_session_id(), c.next_job_id()), (3, 2));
}

/// Rebuilds a catalog from its snapshot, through the encoder and decoder.
fn rebuilt(c: &Catalog) -> (Catalog, usize) {
    let mut fresh = Catalog::new();
    let mut n = 0;
    for r in c.snapshot_records() {
        let back = Record::decode(r.kind(), r.version(), &encoded(&r)).unwrap();
        fresh.apply(&back).unwrap();
        n += 1;
    }
    (fresh, n)
}

#[test]
fn snapshot_keeps_ids_after_pruning_and_deletion() {
    let mut c = catalog();
    c.apply(&finish(1)).unwrap();
    c.apply(&prune(1)).unwrap();
    c.apply(&Record::JobDeleted(JobDeleted { job: 1 })).unwrap();
    assert!(c.snapshot_ready(), "a pruned session leaves no entries behind");
    let (fresh, n) = rebuilt(&c);
    assert_eq!(fresh, c);
    assert_eq!((fresh.next_session_id(), fresh.next_job_id()), (2, 2));
    assert_eq!(n, 3, "two media and the ids");
    assert_eq!(rebuilt(&Catalog::new()).1, 0);
}

/// One random step: a selector, two small choices and a value, turned into a record against
/// the current catalog so that most steps apply and some break a rule.
type Step = (u8, u8, u8, u64);

/// An existing id chosen by `a`, or now and then `other` (new, stale or unknown).
fn pick(ids: Vec<u64>, a: u8, other: u64) -> u64 {
    if ids.is_empty() || a.is_multiple_of(8) { other } else { ids[usize::from(a) % ids.len()] }
}

fn session_step(c: &Catalog, (sel, a, b, x): Step) -> Record {
    // Mostly sessions still running, so that parts and objects find one.
    let running = c.sessions().filter(|s| !s.is_finished() || b % 4 == 0);
    let session = pick(running.map(Session::id).collect(), a, u64::from(b % 4));
    let media = c.media().map(|m| u64::from(m.id()[0])).collect::<Vec<_>>();
    let medium = [pick(media, b, u64::from(a % 4 + 1)) as u8; 16];
    let stream = u16::from(b % 3);
    let s = c.session(session);
    match sel % 8 {
        0 => start(if b % 6 == 0 { u64::from(a) } else { c.next_session_id() }, 1 + stream),
        1 => {
            let next = s.map_or(0, |s| s.parts().filter(|p| p.stream == stream).count() as u32);
            part(session, stream, if x % 5 == 0 { a.into() } else { next }, medium)
        }
        2..=5 => {
            let parts = s.map(|s| s.parts().map(|p| (p.stream, p.part)).collect::<Vec<_>>());
            let (stream, part) = match parts {
                Some(p) if !p.is_empty() && x % 7 != 0 => p[usize::from(b) % p.len()],
                _ => (stream, u32::from(a % 2)),
            };
            object(session, x % 100, stream, part)
        }
        6 => finish(session),
        _ => match x % 3 {
            0 => prune(session),
            1 => index_pruned(session, x),
            // Indexes a finished session, or reads a pruned index back.
            _ => s.map_or_else(|| prune(session), index_record),
        },
    }
}

fn other_step(c: &Catalog, (sel, a, b, x): Step) -> Record {
    let jobs = c.jobs().map(Job::id).collect::<Vec<_>>();
    let job_id = pick(jobs, a, if b % 3 == 0 { u64::from(b) } else { c.next_job_id() });
    let medium_id = [a % 4 + 1; 16];
    let cleaning = format!("CLN00{}L1", b % 3);
    match sel % 12 {
        0 => medium(medium_id, &format!("B{}", b % 5)),
        1 => Record::MediumUpdated(MediumUpdated {
            medium: medium_id,
            used: if b % 2 == 0 { 0 } else { x },
            state: [MediumState::Writable, MediumState::Full, MediumState::Error][usize::from(b % 3)],
        }),
        2 => Record::MediumRemoved(MediumRemoved { medium: medium_id }),
        3 => job(job_id, &format!("job{b}")),
        4 => {
            let states = [JobState::Ready, JobState::Hold, JobState::Active, JobState::Done];
            job_state(job_id, states[usize::from(b % 4)], x)
        }
        5 => Record::JobDeleted(JobDeleted { job: job_id }),
        6 => Record::LogEntry(LogEntry {
            at: x,
            level: LogLevel::Warning,
            job: (b % 2 == 0).then_some(job_id),
            message: format!("step {x}"),
        }),
        7 if b % 2 == 0 => {
            let wrong_in_a_row = u32::from(a % 3);
            Record::ConsoleLogin(ConsoleLogin {
                at: x,
                tty: "/dev/ttyS0".into(),
                ok: wrong_in_a_row == 0,
                wrong_in_a_row,
            })
        }
        7 if b % 3 == 2 => {
            Record::from(PoolDefined { name: format!("p{}", a % 3), definition: format!("keep = \"{b}d\"") })
        }
        7 if b % 3 == 1 => {
            Record::MediumVaulted(MediumVaulted { medium: medium_id, offsite: a % 2 == 0, at: x })
        }
        8 => Record::from(CleaningUsed {
            library: "vlib".into(),
            barcode: cleaning,
            drive: u16::from(a % 2),
            at: x,
            uses: u32::from(a % 5),
        }),
        9 => Record::from(CleaningRetired {
            library: "vlib".into(),
            barcode: cleaning,
            at: x,
            why: format!("worn after {a} uses"),
        }),
        10 => {
            Record::from(MediumErrors { medium: medium_id, read: u32::from(a % 3), write: u32::from(b % 2) })
        }
        11 => Record::from(DriveErrors {
            library: "vlib".into(),
            drive: u16::from(b % 2),
            hard_errors: u32::from(a % 3),
        }),
        _ => Record::IdsReserved(IdsReserved {
            next_session: c.next_session_id() + u64::from(b % 3) - 1,
            next_job: c.next_job_id() + u64::from(a % 2),
        }),
    }
}

fn step_record(c: &Catalog, step: Step) -> Record {
    if step.0.is_multiple_of(2) {
        session_step(c, (step.0 / 2, step.1, step.2, step.3))
    } else {
        other_step(c, (step.0 / 2, step.1, step.2, step.3))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn snapshot_rebuilds_an_equal_catalog(steps in proptest::collection::vec(any::<Step>(), 0..300)) {
        let mut c = Catalog::new();
        let mut applied = 0;
        for step in steps {
            let r = step_record(&c, step);
            let before = c.clone();
            match c.apply(&r) {
                Ok(()) => applied += 1,
                Err(_) => prop_assert_eq!(&c, &before, "a refused {:?} changed the catalog", r),
            }
        }
        index_all(&mut c);
        let (fresh, n) = rebuilt(&c);
        prop_assert_eq!(&fresh, &c);
        // Indexing adds a record per session at most (and its finish).
        let sessions = c.sessions().count();
        prop_assert!(n <= applied + 1 + 2 * sessions, "snapshot of {} records after {} applied", n, applied);
        prop_assert!(fresh.snapshot_records().eq(c.snapshot_records()));
    }
}

fn kept(session: u64, paths: &[&str], complete: bool) -> Record {
    Record::FilesKept(FilesKept {
        session,
        paths: paths.iter().map(|p| serde_bytes::ByteBuf::from(p.as_bytes().to_vec())).collect(),
        complete,
    })
}

#[test]
fn only_a_running_incremental_session_lists_kept_files_and_the_list_survives_a_snapshot() {
    let mut c = catalog();
    // Session 1 is full.
    let full = c.apply(&kept(1, &["a"], true)).unwrap_err();
    assert!(matches!(full, CatalogError::KeptList { session: 1, .. }), "{full}");
    let mut incr = start(2, 1);
    if let Record::SessionStarted(s) = &mut incr {
        s.kind = SessionKind::Incremental { base: 1 };
    }
    c.apply(&incr).unwrap();
    c.apply(&part(2, 0, 0, TAPE)).unwrap();
    c.apply(&kept(2, &["dir/a", "dir/b"], false)).unwrap();
    assert!(!c.session(2).unwrap().has_kept_list(), "not whole yet");
    c.apply(&kept(2, &["dir/c"], true)).unwrap();
    assert!(c.session(2).unwrap().has_kept_list());
    assert_eq!(c.session(2).unwrap().entries(), 3);
    let again = c.apply(&kept(2, &["dir/d"], true)).unwrap_err();
    assert!(matches!(again, CatalogError::KeptList { session: 2, .. }), "{again}");
    c.apply(&finish(2)).unwrap();
    assert!(matches!(c.apply(&kept(2, &["x"], true)), Err(CatalogError::SessionFinished { session: 2 })));
    assert!(matches!(c.apply(&kept(9, &["x"], true)), Err(CatalogError::UnknownSession { session: 9 })));
    assert!(!c.snapshot_ready(), "the kept files are only in the journal");
    index_all(&mut c);
    let (fresh, _) = rebuilt(&c);
    assert!(fresh.session(2).unwrap().has_kept_list());
    assert_eq!(fresh.session(2).unwrap().entries(), 3);
    assert!(fresh.snapshot_records().eq(c.snapshot_records()));
}

/// The record saying `s`'s index file is durable, with its totals.
fn index_record(s: &Session) -> Record {
    Record::SessionIndexed(SessionIndexed {
        session: s.id(),
        entries: s.entries(),
        objects: s.object_count(),
        raw_bytes: s.raw_bytes(),
        kept: s.entries() - s.pieces(),
        kept_complete: s.has_kept_list(),
        crc: 7,
    })
}

/// Finishes the running sessions that hold entries and indexes every session that needs it,
/// as the store does, so that a snapshot may be taken.
fn index_all(c: &mut Catalog) {
    let running: Vec<u64> = c.unindexed().filter(|s| !s.is_finished()).map(Session::id).collect();
    for id in running {
        c.apply(&finish(id)).unwrap();
    }
    let records: Vec<Record> = c.unindexed().map(index_record).collect();
    for r in records {
        c.apply(&r).unwrap();
    }
    assert!(c.snapshot_ready());
}

#[test]
fn an_index_file_is_taken_once_by_a_finished_session_with_the_same_totals() {
    let mut c = catalog();
    c.apply(&object(1, 2, 1, 0)).unwrap();
    assert!(!c.snapshot_ready());
    let good = index_record(c.session(1).unwrap());
    let err = refused(&mut c, good.clone());
    assert!(matches!(err, CatalogError::Index { session: 1, .. }), "running: {err}");
    c.apply(&finish(1)).unwrap();
    let mut wrong = good.clone();
    if let Record::SessionIndexed(w) = &mut wrong {
        w.entries += 1;
    }
    let err = refused(&mut c, wrong);
    assert!(matches!(err, CatalogError::Index { session: 1, .. }), "other totals: {err}");
    c.apply(&good).unwrap();
    assert!(c.snapshot_ready() && c.session(1).unwrap().indexed().is_some());
    let err = refused(&mut c, good);
    assert!(matches!(err, CatalogError::Index { session: 1, .. }), "twice: {err}");
    // The snapshot carries the totals instead of the objects.
    let (fresh, _) = rebuilt(&c);
    assert_eq!(fresh, c);
    assert_eq!(fresh.session(1).unwrap().object_count(), 2);
}

#[test]
#[should_panic(expected = "not indexed")]
fn no_snapshot_while_entries_are_only_in_the_journal() {
    let c = catalog();
    let _ = c.snapshot_records().count();
}

fn agent_added(name: &str, expires: u64) -> Record {
    Record::AgentAdded(AgentAdded {
        name: name.into(),
        paths: vec!["/srv".into(), "/etc".into()],
        restore_to: vec!["/srv/restore".into()],
        token_sha256: [7; 32],
        added: 100,
        expires,
    })
}

#[test]
fn an_agent_enrols_once_within_its_token_time_and_stays_revoked() {
    let mut c = catalog();
    let enrolled = |at| Record::AgentEnrolled(AgentEnrolled { name: "db1".into(), cert_sha256: [1; 32], at });
    let revoked = || Record::AgentRevoked(AgentRevoked { name: "db1".into(), at: 500 });
    assert!(matches!(refused(&mut c, enrolled(150)), CatalogError::Agent { .. }), "unknown agent");
    c.apply(&agent_added("db1", 200)).unwrap();
    assert_eq!(c.agent("db1").unwrap().state(), AgentState::Pending);
    let late = refused(&mut c, enrolled(201));
    assert!(late.to_string().contains("expired"), "{late}");
    c.apply(&enrolled(150)).unwrap();
    assert_eq!(c.agent("db1").unwrap().state(), AgentState::Enrolled);
    let twice = refused(&mut c, enrolled(160));
    assert!(twice.to_string().contains("used already"), "{twice}");
    let again = refused(&mut c, agent_added("db1", 900));
    assert!(again.to_string().contains("revoke it"), "{again}");
    c.apply(&revoked()).unwrap();
    assert_eq!(c.agent("db1").unwrap().state(), AgentState::Revoked);
    assert!(matches!(refused(&mut c, enrolled(170)), CatalogError::Agent { .. }), "revoked");
    assert!(matches!(refused(&mut c, revoked()), CatalogError::Agent { .. }), "revoked twice");
    index_all(&mut c);
    let (fresh, _) = rebuilt(&c);
    assert_eq!(fresh, c);
    // Added again after revocation: pending, with the new token.
    c.apply(&agent_added("db1", 900)).unwrap();
    assert_eq!(c.agent("db1").unwrap().state(), AgentState::Pending);
}

#[test]
fn agent_names_and_paths_are_checked() {
    for bad in ["", ".hidden", "-x", "a b", "a/b", &"n".repeat(65)] {
        let r = agent_added(bad, 200);
        assert!(r.validate().is_err(), "{bad:?}");
    }
    for paths in
        [vec!["relative".to_owned()], vec!["/a/../b".into()], vec!["/a//b".into()], vec!["/a/./b".into()]]
    {
        let r = Record::AgentAdded(AgentAdded {
            name: "ok".into(),
            paths,
            restore_to: Vec::new(),
            token_sha256: [0; 32],
            added: 1,
            expires: 2,
        });
        assert!(r.validate().is_err(), "{r:?}");
    }
    assert!(agent_added("db1.example-2_x", 200).validate().is_ok());
}

#[test]
fn a_finished_indexed_session_has_its_index_pruned_once_and_read_back_with_the_same_totals() {
    let mut c = catalog();
    c.apply(&object(1, 2, 1, 0)).unwrap();
    let err = refused(&mut c, index_pruned(1, 5));
    assert!(matches!(err, CatalogError::IndexPrune { session: 1, why } if why.contains("running")), "{err}");
    c.apply(&finish(1)).unwrap();
    let err = refused(&mut c, index_pruned(1, 5));
    assert!(
        matches!(err, CatalogError::IndexPrune { session: 1, why } if why.contains("not written")),
        "{err}"
    );
    let indexed = index_record(c.session(1).unwrap());
    c.apply(&indexed).unwrap();
    let err = refused(&mut c, index_pruned(9, 5));
    assert!(matches!(err, CatalogError::UnknownSession { session: 9 }), "{err}");

    c.apply(&index_pruned(1, 5)).unwrap();
    let s = c.session(1).unwrap();
    assert_eq!(s.index_pruned().map(|p| p.at), Some(5));
    assert!(!s.has_index_file());
    // The session, its parts and its totals stay.
    assert_eq!((s.parts().count(), s.object_count(), s.entries()), (2, 2, 2));
    assert_eq!(
        s.indexed(),
        Some(match &indexed {
            Record::SessionIndexed(i) => i,
            _ => unreachable!(),
        })
    );
    let err = refused(&mut c, index_pruned(1, 6));
    assert!(matches!(err, CatalogError::IndexPrune { session: 1, why } if why.contains("already")), "{err}");

    // A snapshot keeps the fact.
    let (fresh, _) = rebuilt(&c);
    assert_eq!(fresh, c);
    assert!(fresh.session(1).unwrap().index_pruned().is_some());

    // Read back from the media: the same totals (another CRC is fine); other totals are not.
    let mut other = indexed.clone();
    if let Record::SessionIndexed(i) = &mut other {
        i.objects -= 1;
    }
    let err = refused(&mut c, other);
    assert!(matches!(err, CatalogError::Index { session: 1, why, .. } if why.contains("read back")), "{err}");
    let mut back = indexed.clone();
    if let Record::SessionIndexed(i) = &mut back {
        i.crc = 99;
    }
    c.apply(&back).unwrap();
    let s = c.session(1).unwrap();
    assert!(s.has_index_file() && s.index_pruned().is_none());
    assert_eq!(s.indexed().map(|i| i.crc), Some(99));
    let err = refused(&mut c, back);
    assert!(matches!(err, CatalogError::Index { session: 1, .. }), "indexed twice: {err}");
    let (fresh, _) = rebuilt(&c);
    assert_eq!(fresh, c);
}

#[test]
fn a_session_with_a_cut_stream_keeps_its_index() {
    let mut c = catalog();
    c.apply(&Record::StreamCut(StreamCut { session: 1, stream: 1 })).unwrap();
    c.apply(&finish(1)).unwrap();
    let indexed = index_record(c.session(1).unwrap());
    c.apply(&indexed).unwrap();
    let err = refused(&mut c, index_pruned(1, 5));
    assert!(matches!(err, CatalogError::IndexPrune { session: 1, why } if why.contains("trailer")), "{err}");
}

fn cleaning_used(barcode: &str, uses: u32) -> Record {
    Record::from(CleaningUsed { library: "vlib".into(), barcode: barcode.into(), drive: 1, at: 100, uses })
}

#[test]
fn cleaning_uses_count_up_until_retired_and_survive_a_snapshot() {
    let mut c = catalog();
    c.apply(&cleaning_used("CLN001L1", 1)).unwrap();
    c.apply(&cleaning_used("CLN001L1", 2)).unwrap();
    let again = c.apply(&cleaning_used("CLN001L1", 2)).unwrap_err();
    assert!(matches!(again, CatalogError::Health { .. }), "{again}");
    let retire = |why: &str| {
        Record::from(CleaningRetired {
            library: "vlib".into(),
            barcode: "CLN001L1".into(),
            at: 200,
            why: why.into(),
        })
    };
    c.apply(&retire("worn out")).unwrap();
    assert!(c.apply(&retire("twice")).is_err(), "a retired cartridge is retired once");
    let after = c.apply(&cleaning_used("CLN001L1", 3)).unwrap_err();
    assert!(after.to_string().contains("CLN001L1") && after.to_string().contains("retired"), "{after}");
    let seen: Vec<_> = c.cleaning_cartridges("vlib").collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1.uses, 2);
    assert_eq!(seen[0].1.last, Some((100, 1)));
    assert_eq!(seen[0].1.retired, Some((200, "worn out".into())));
    assert_eq!(c.cleaning_cartridges("other").count(), 0);
    let zero = cleaning_used("CLN002L1", 0);
    assert!(matches!(c.apply(&zero), Err(CatalogError::Invalid { record: "CleaningUsed", .. })));
    index_all(&mut c);
    assert_eq!(rebuilt(&c).0, c);
}

#[test]
fn medium_errors_and_drive_errors_are_kept_and_survive_a_snapshot() {
    let mut c = catalog();
    let errors = |read, write| Record::from(MediumErrors { medium: TAPE, read, write });
    c.apply(&errors(2, 1)).unwrap();
    let unknown = Record::from(MediumErrors { medium: [3; 16], read: 1, write: 0 });
    assert!(matches!(c.apply(&unknown), Err(CatalogError::UnknownMedium { .. })));
    // A state change keeps the counts.
    let full = MediumUpdated { medium: TAPE, used: 5, state: MediumState::Error };
    c.apply(&Record::MediumUpdated(full)).unwrap();
    assert_eq!(c.medium(TAPE).unwrap().errors(), (2, 1));
    assert_eq!(c.medium(DISK).unwrap().errors(), (0, 0));
    let drive = |n| Record::from(DriveErrors { library: "vlib".into(), drive: 0, hard_errors: n });
    c.apply(&drive(2)).unwrap();
    assert_eq!(c.drive_hard_errors("vlib", 0), 2);
    assert_eq!(c.drive_hard_errors("vlib", 1), 0);
    index_all(&mut c);
    let (fresh, _) = rebuilt(&c);
    assert_eq!(fresh, c);
    c.apply(&drive(0)).unwrap();
    assert_eq!(c.drive_hard_errors("vlib", 0), 0);
    assert_eq!(rebuilt(&c).0, c);
}
