//! Record round trips and decoder robustness; catalog consistency and snapshots.

use proptest::prelude::*;
use proptest::sample::select;

use super::record::KNOWN;
use super::*;
use crate::format::records::{ObjectKind, SessionStatus};

// ---- strategies -------------------------------------------------------------------------------

const OBJECT_KINDS: [ObjectKind; 9] = [
    ObjectKind::File,
    ObjectKind::Dir,
    ObjectKind::Symlink,
    ObjectKind::Hardlink,
    ObjectKind::Fifo,
    ObjectKind::CharDevice,
    ObjectKind::BlockDevice,
    ObjectKind::Socket,
    ObjectKind::Volume,
];
const MEDIUM_KINDS: [MediumKind; 3] = [MediumKind::Disk, MediumKind::Tape, MediumKind::Nvram];
const MEDIUM_STATES: [MediumState; 5] = [
    MediumState::Writable,
    MediumState::Full,
    MediumState::ReadOnly,
    MediumState::Retired,
    MediumState::Error,
];
const JOB_STATES: [JobState; 6] = [
    JobState::Ready,
    JobState::Hold,
    JobState::Active,
    JobState::Done,
    JobState::Failed,
    JobState::Cancelled,
];
const LEVELS: [LogLevel; 4] = [LogLevel::Error, LogLevel::Warning, LogLevel::Note, LogLevel::Debug];
const STATUSES: [SessionStatus; 3] =
    [SessionStatus::Complete, SessionStatus::Cancelled, SessionStatus::Failed];

/// Text without NULs (any other character, multi-byte ones included).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\x00]{{0,{max}}}")).expect("valid regex")
}

fn uuid() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>().prop_map(|mut u| {
        u[15] |= 1;
        u
    })
}

fn id() -> impl Strategy<Value = u64> {
    1..u64::MAX
}

fn medium_added() -> impl Strategy<Value = Record> {
    let fields = (uuid(), "[!-~]{1,32}", text(40), select(&MEDIUM_KINDS[..]), 9u32..=23);
    (fields, any::<(u64, u64)>(), text(60).prop_map(|s| format!("disk:{s}"))).prop_map(
        |((medium, barcode, pool, kind, shift), (capacity, created), location)| {
            Record::MediumAdded(MediumAdded {
                medium,
                barcode,
                pool: format!("p{pool}"),
                kind,
                block_size: 1 << shift,
                capacity,
                created,
                location,
            })
        },
    )
}

fn session_started() -> impl Strategy<Value = Record> {
    let fields = (id(), any::<u64>(), text(30), text(80), any::<u64>(), 1u16..);
    let lineage = (any::<Option<u64>>(), any::<[u8; 32]>());
    (fields, select(&[SessionMode::Files, SessionMode::Volume][..]), lineage).prop_map(
        |((session, job, host, source, started, streams), mode, (base, source_key))| {
            // A base is an earlier session: reduce any number below the session's id.
            let kind = match base {
                Some(b) if session > 1 => SessionKind::Incremental { base: 1 + b % (session - 1) },
                _ => SessionKind::Full,
            };
            Record::SessionStarted(SessionStarted {
                session,
                job,
                host,
                source,
                started,
                streams,
                mode,
                kind,
                source_key,
            })
        },
    )
}

fn stored_object() -> impl Strategy<Value = StoredObject> {
    let path = proptest::collection::vec(1u8..=255, 1..200);
    let place = (any::<u16>(), any::<u32>(), any::<u64>(), any::<[u8; 32]>());
    let sizes = (any::<u64>(), any::<u64>(), any::<u64>(), any::<i64>());
    (any::<u64>(), path, select(&OBJECT_KINDS[..]), sizes, place).prop_map(
        |(id, path, kind, (size, off, len, mtime), (stream, part, position, digest))| {
            let data = kind.has_data();
            let segment_offset = if data { off / 2 } else { 0 };
            StoredObject {
                id,
                path,
                kind,
                size: if data { size } else { 0 },
                mtime,
                mode: (mtime as u32) | 0o100000,
                uid: id as u32,
                gid: (id >> 32) as u32,
                segment_offset,
                length: if data { len / 2 } else { 0 },
                stream,
                part,
                position,
                digest,
            }
        },
    )
}

fn session_records() -> impl Strategy<Value = Record> {
    prop_oneof![
        session_started(),
        (any::<(u64, u16, u32, u64, u32)>(), uuid()).prop_map(
            |((session, stream, part, position, file_number), medium)| {
                Record::SessionPart(SessionPart { session, stream, part, medium, position, file_number })
            }
        ),
        (any::<u64>(), stored_object())
            .prop_map(|(session, object)| Record::ObjectStored(ObjectStored { session, object })),
        (any::<u64>(), proptest::collection::vec(stored_object(), 1..8))
            .prop_map(|(session, objects)| Record::ObjectsStored(ObjectsStored { session, objects })),
        (any::<[u64; 5]>(), any::<(bool, u32)>()).prop_map(|(n, (kept_complete, crc))| {
            Record::SessionIndexed(SessionIndexed {
                session: n[0],
                entries: n[1],
                objects: n[2] % (n[1] / 2 + 1),
                raw_bytes: n[3],
                kept: n[4] % (n[1] / 2 + 1),
                kept_complete,
                crc,
            })
        }),
        (any::<[u64; 5]>(), select(&STATUSES[..])).prop_map(|(n, status)| {
            Record::SessionFinished(SessionFinished {
                session: n[0],
                ended: n[1],
                status,
                objects: n[2],
                raw_bytes: n[3],
                stored_bytes: n[4],
            })
        }),
        any::<u64>().prop_map(|session| Record::SessionPruned(SessionPruned { session })),
        (1..u64::MAX, any::<u64>())
            .prop_map(|(session, at)| Record::IndexPruned(IndexPruned { session, at })),
        (
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..64), 0..20),
            any::<bool>()
        )
            .prop_map(|(session, paths, complete)| Record::FilesKept(FilesKept {
                session,
                paths: paths.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                complete,
            })),
        (any::<(u64, u16, u32, u64, u32)>(), uuid()).prop_map(
            |((session, stream, part, position, file_number), medium)| {
                Record::PartMoved(PartMoved { session, stream, part, medium, position, file_number })
            }
        ),
    ]
}

fn other_records() -> impl Strategy<Value = Record> {
    prop_oneof![
        medium_added(),
        (uuid(), any::<u64>(), select(&MEDIUM_STATES[..])).prop_map(|(medium, used, state)| {
            Record::MediumUpdated(MediumUpdated { medium, used, state })
        }),
        any::<[u8; 16]>().prop_map(|medium| Record::MediumRemoved(MediumRemoved { medium })),
        ("[a-z]{1,8}", text(100))
            .prop_map(|(name, definition)| Record::from(PoolDefined { name, definition })),
        (uuid(), any::<(bool, u64)>())
            .prop_map(|(medium, (offsite, at))| Record::MediumVaulted(MediumVaulted { medium, offsite, at })),
        (id(), "[a-z0-9-]{1,20}", text(300))
            .prop_map(|(job, name, definition)| { Record::JobSaved(JobSaved { job, name, definition }) }),
        (any::<(u64, u64, Option<u64>)>(), select(&JOB_STATES[..]), text(60)).prop_map(
            |((job, at, run_at), state, message)| {
                Record::JobStateChanged(JobStateChanged { job, state, at, message, run_at })
            }
        ),
        any::<u64>().prop_map(|job| Record::JobDeleted(JobDeleted { job })),
        (any::<(u64, Option<u64>)>(), select(&LEVELS[..]), text(60))
            .prop_map(|((at, job), level, message)| Record::LogEntry(LogEntry { at, level, job, message })),
        (1..u64::MAX, 1..u64::MAX).prop_map(|(next_session, next_job)| {
            Record::IdsReserved(IdsReserved { next_session, next_job })
        }),
        (any::<u64>(), "/dev/[a-zA-Z0-9]{1,20}", 0..u32::MAX).prop_map(|(at, tty, wrong_in_a_row)| {
            Record::ConsoleLogin(ConsoleLogin { at, tty, ok: wrong_in_a_row == 0, wrong_in_a_row })
        }),
    ]
}

/// A valid record of any kind.
fn record() -> impl Strategy<Value = Record> {
    prop_oneof![session_records(), other_records()]
}

pub(super) fn encoded(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

// ---- records ----------------------------------------------------------------------------------

/// The largest record of every kind: every limit at once.
fn largest_object() -> StoredObject {
    let big = u64::MAX - 1;
    StoredObject {
        id: big,
        path: vec![0xff; crate::format::MAX_PATH_LEN],
        kind: ObjectKind::File,
        size: big,
        mtime: i64::MIN,
        mode: u32::MAX,
        uid: u32::MAX,
        gid: u32::MAX,
        segment_offset: big / 2,
        length: big / 2,
        stream: u16::MAX,
        part: u32::MAX,
        position: big,
        digest: [0xff; 32],
    }
}

fn largest_records() -> Vec<Record> {
    let big = u64::MAX - 1;
    let object = largest_object();
    let message = "m".repeat(MAX_MESSAGE_LEN);
    vec![
        Record::MediumAdded(MediumAdded {
            medium: [0xff; 16],
            barcode: "B".repeat(32),
            pool: "p".repeat(256),
            kind: MediumKind::Nvram,
            block_size: 8 << 20,
            capacity: big,
            created: big,
            location: "l".repeat(crate::format::MAX_PATH_LEN),
        }),
        Record::SessionStarted(SessionStarted {
            session: big,
            job: big,
            host: "h".repeat(256),
            source: "s".repeat(crate::format::MAX_PATH_LEN),
            started: big,
            streams: u16::MAX,
            mode: SessionMode::Volume,
            kind: SessionKind::Incremental { base: big - 1 },
            source_key: [0xff; 32],
        }),
        Record::ObjectStored(ObjectStored { session: big, object: object.clone() }),
        // As many of the largest objects as one batch takes.
        Record::ObjectsStored(ObjectsStored {
            session: big,
            objects: vec![object; MAX_OBJECTS_BYTES / object_cost(&largest_object())],
        }),
        Record::PartRuns(PartRuns {
            session: big,
            stream: u16::MAX,
            part: u32::MAX,
            len: u64::MAX,
            runs: (0..MAX_RUNS as u64)
                .map(|k| LaneRun {
                    lane: u64::MAX - k,
                    start: u64::MAX - 2 * MAX_RUNS as u64 + k,
                    end: u64::MAX - k,
                })
                .collect(),
        }),
        Record::SessionIndexed(SessionIndexed {
            session: big,
            entries: u64::MAX,
            objects: big / 2,
            raw_bytes: u64::MAX,
            kept: big / 2,
            kept_complete: true,
            crc: u32::MAX,
        }),
        Record::IndexPruned(IndexPruned { session: big, at: u64::MAX }),
        // The most paths of the longest and of the shortest kind one record takes.
        largest_kept(crate::format::MAX_PATH_LEN),
        largest_kept(1),
        Record::JobSaved(JobSaved {
            job: big,
            name: "n".repeat(256),
            definition: "d".repeat(MAX_DEFINITION_LEN),
        }),
        Record::JobStateChanged(JobStateChanged {
            job: big,
            state: JobState::Cancelled,
            at: big,
            message: message.clone(),
            run_at: Some(big),
        }),
        Record::LogEntry(LogEntry { at: big, level: LogLevel::Debug, job: Some(big), message }),
        Record::ConsoleLogin(ConsoleLogin {
            at: big,
            tty: "t".repeat(MAX_TTY_LEN),
            ok: false,
            wrong_in_a_row: u32::MAX,
        }),
        Record::from(CleaningRetired {
            library: "l".repeat(256),
            barcode: "C".repeat(32),
            at: big,
            why: "w".repeat(MAX_MESSAGE_LEN),
        }),
        Record::from(CleaningUsed {
            library: "l".repeat(256),
            barcode: "C".repeat(32),
            drive: u16::MAX,
            at: big,
            uses: MAX_CLEANING_USES,
        }),
        Record::from(MediumErrors { medium: [0xff; 16], read: u32::MAX, write: u32::MAX }),
        Record::from(DriveErrors { library: "l".repeat(256), drive: u16::MAX, hard_errors: u32::MAX }),
    ]
}

#[test]
fn console_logins_are_checked_written_and_read_back() {
    let ok = ConsoleLogin { at: 1, tty: "/dev/ttyS0".into(), ok: true, wrong_in_a_row: 0 };
    let r = Record::from(ok.clone());
    assert_eq!(Record::decode(96, 1, &encoded(&r)), Ok(r));
    let bad = [
        ConsoleLogin { tty: String::new(), ..ok.clone() },
        ConsoleLogin { tty: "t".repeat(MAX_TTY_LEN + 1), ..ok.clone() },
        ConsoleLogin { tty: "a\0b".into(), ..ok.clone() },
        ConsoleLogin { wrong_in_a_row: 1, ..ok.clone() },
        ConsoleLogin { ok: false, ..ok.clone() },
    ];
    for b in bad {
        let r = Record::from(b.clone());
        assert!(r.validate().is_err(), "{b:?}");
        // A journal holding it (a broken or hostile writer) is refused, not applied.
        let mut payload = Vec::new();
        postcard::to_io(&b, &mut payload).unwrap();
        assert!(Record::decode(96, 1, &payload).is_err(), "{b:?}");
    }
    // Truncated payloads are refused without a panic.
    let bytes = encoded(&Record::from(ok));
    for n in 0..bytes.len() {
        assert!(Record::decode(96, 1, &bytes[..n]).is_err());
    }
}

/// The fullest [`FilesKept`] record of paths `len` bytes long.
fn largest_kept(len: usize) -> Record {
    let path = vec![0xfe; len];
    let batches = kept_batches(u64::MAX - 1, std::iter::repeat_n(path.as_slice(), 100_000), true);
    assert!(batches.len() > 1);
    Record::FilesKept(batches[0].clone())
}

#[test]
fn kept_batches_are_as_full_as_a_record_allows_and_end_with_the_flag() {
    let paths: Vec<Vec<u8>> = (0..40_000u32).map(|i| format!("d{}/f{i}", i % 7).into_bytes()).collect();
    let batches = kept_batches(3, paths.iter().map(Vec::as_slice), true);
    assert!(batches.len() > 5, "{}", batches.len());
    let mut back = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.complete, i == batches.len() - 1);
        let r = Record::FilesKept(b.clone());
        assert_eq!(r.validate(), Ok(()));
        assert!(encoded(&r).len() <= MAX_PAYLOAD_LEN);
        if i + 1 < batches.len() {
            // Full: the next path would not have fitted.
            let next = &batches[i + 1].paths[0];
            let used: usize = b.paths.iter().map(|p| kept_cost(p)).sum();
            assert!(used + kept_cost(next) > MAX_KEPT_BYTES);
        }
        back.extend(b.paths.iter().map(|p| p.to_vec()));
    }
    assert_eq!(back, paths);
    // An empty list that is known to be empty is one record; one that is not, none.
    assert_eq!(kept_batches(3, std::iter::empty(), true).len(), 1);
    assert!(kept_batches(3, std::iter::empty(), false).is_empty());
    // Over the limit, or a bad path, is refused.
    let over = FilesKept {
        session: 3,
        paths: vec![serde_bytes::ByteBuf::from(vec![b'a'; 4000]); 17],
        complete: true,
    };
    assert!(Record::FilesKept(over).validate().is_err());
    let nul =
        FilesKept { session: 3, paths: vec![serde_bytes::ByteBuf::from(b"a\0b".to_vec())], complete: true };
    assert!(Record::FilesKept(nul).validate().is_err());
}

#[test]
fn an_object_of_version_1_reads_without_mode_owner_or_group() {
    let v1 = super::old::ObjectStoredV1 {
        session: 4,
        object: super::old::StoredObjectV1 {
            id: 1,
            path: b"a/b".to_vec(),
            kind: ObjectKind::File,
            size: 10,
            mtime: 1_700_000_000,
            segment_offset: 0,
            length: 10,
            stream: 0,
            part: 0,
            position: 0,
            digest: [3; 32],
        },
    };
    let payload = postcard::to_stdvec(&v1).unwrap();
    let Ok(Record::ObjectStored(o)) = Record::decode(34, 1, &payload) else { panic!("not decoded") };
    assert_eq!((o.session, o.object.path.as_slice(), o.object.size), (4, &b"a/b"[..], 10));
    assert_eq!((o.object.mode, o.object.uid, o.object.gid), (0, 0, 0));
    // And the current version does not read as the old one.
    assert!(Record::decode(34, 2, &payload).is_err());
}

#[test]
fn kinds_and_versions_are_stable() {
    let expect: &[(u16, u8, &str)] = &[
        (16, 1, "MediumAdded"),
        (17, 1, "MediumUpdated"),
        (18, 1, "MediumRemoved"),
        (19, 1, "MediumVaulted"),
        (20, 1, "CleaningUsed"),
        (21, 1, "CleaningRetired"),
        (22, 1, "MediumErrors"),
        (23, 1, "DriveErrors"),
        (24, 1, "PoolDefined"),
        (32, 2, "SessionStarted"),
        (33, 1, "SessionPart"),
        (34, 2, "ObjectStored"),
        (35, 1, "SessionFinished"),
        (36, 1, "SessionPruned"),
        (37, 1, "PartMoved"),
        (38, 1, "StreamCut"),
        (39, 1, "FilesKept"),
        (40, 1, "ObjectsStored"),
        (41, 1, "SessionIndexed"),
        (42, 1, "PartRuns"),
        (43, 1, "IndexPruned"),
        (48, 1, "JobSaved"),
        (49, 2, "JobStateChanged"),
        (50, 1, "JobDeleted"),
        (64, 1, "LogEntry"),
        (80, 1, "IdsReserved"),
        (96, 1, "ConsoleLogin"),
        (112, 1, "AgentAdded"),
        (113, 1, "AgentEnrolled"),
        (114, 1, "AgentRevoked"),
    ];
    assert_eq!(KNOWN, expect);
    for r in largest_records() {
        assert!(KNOWN.contains(&(r.kind(), r.version(), r.name())));
    }
}

#[test]
fn largest_records_fit_the_payload_limit() {
    for r in largest_records() {
        let bytes = encoded(&r);
        assert!(bytes.len() <= MAX_PAYLOAD_LEN, "{} takes {}", r.name(), bytes.len());
        assert_eq!(Record::decode(r.kind(), r.version(), &bytes), Ok(r));
    }
}

#[test]
fn limits_are_enforced() {
    let base = |f: fn(&mut MediumAdded)| {
        let mut m = MediumAdded {
            medium: [1; 16],
            barcode: "A00001L9".into(),
            pool: "default".into(),
            kind: MediumKind::Tape,
            block_size: 256 << 10,
            capacity: 18 << 40,
            created: 1_790_000_000,
            location: "library:virtual".into(),
        };
        f(&mut m);
        Record::MediumAdded(m).validate()
    };
    assert_eq!(base(|_| {}), Ok(()));
    assert!(base(|m| m.barcode = "B".repeat(33)).is_err());
    assert!(base(|m| m.barcode = "A 1".into()).is_err());
    assert!(base(|m| m.barcode = String::new()).is_err());
    assert!(base(|m| m.pool = "p".repeat(257)).is_err());
    assert!(base(|m| m.pool = "de\0fault".into()).is_err());
    assert!(base(|m| m.block_size = 1000).is_err());
    assert!(base(|m| m.medium = [0; 16]).is_err());
    assert!(base(|m| m.location = "l".repeat(4097)).is_err());
    let job =
        |name: String, definition: String| Record::JobSaved(JobSaved { job: 1, name, definition }).validate();
    assert!(job("n".repeat(256), "d".repeat(MAX_DEFINITION_LEN)).is_ok());
    assert!(job("n".repeat(257), String::new()).is_err());
    assert!(job("n".into(), "d".repeat(MAX_DEFINITION_LEN + 1)).is_err());
    assert!(job("n".into(), "a\0b".into()).is_err());
    let mut object = match &largest_records()[2] {
        Record::ObjectStored(o) => o.clone(),
        _ => unreachable!(),
    };
    object.object.path.push(b'x');
    let err = Record::ObjectStored(object).validate();
    assert!(matches!(err, Err(CatalogError::Invalid { record: "ObjectStored", .. })));
}

#[test]
fn unknown_kinds_and_versions_name_a_newer_writer() {
    let r = Record::MediumRemoved(MediumRemoved { medium: [1; 16] });
    let bytes = encoded(&r);
    let err = Record::decode(999, 1, &bytes).unwrap_err();
    assert_eq!(err, CatalogError::UnknownKind { kind: 999 });
    assert!(err.is_newer_writer() && err.to_string().contains("newer coffer"));
    let err = Record::decode(18, 2, &bytes).unwrap_err();
    assert!(matches!(err, CatalogError::UnknownVersion { kind: 18, version: 2, known: 1, .. }));
    assert!(err.is_newer_writer() && err.to_string().contains("newer coffer"));
    // Version 0 was never written: damage, not a newer writer.
    let err = Record::decode(18, 0, &bytes).unwrap_err();
    assert!(err.is_decode() && !err.is_newer_writer());
    // Kinds below FIRST_KIND belong to the journal.
    assert!(matches!(Record::decode(3, 1, &bytes), Err(CatalogError::Decode { kind: 3, .. })));
}

/// A `SessionStarted` version 1 payload, byte by byte as coffer wrote it before version 2:
/// session 7, job 0, host "h", source "/src", started 1000, 1 stream, files.
const SESSION_STARTED_V1: [u8; 13] = [7, 0, 1, b'h', 4, b'/', b's', b'r', b'c', 0xe8, 0x07, 1, 0];

#[test]
fn session_started_version_1_reads_as_a_full_session_without_key() {
    let r = Record::decode(32, 1, &SESSION_STARTED_V1).unwrap();
    let want = SessionStarted {
        session: 7,
        job: 0,
        host: "h".into(),
        source: "/src".into(),
        started: 1000,
        streams: 1,
        mode: SessionMode::Files,
        kind: SessionKind::Full,
        source_key: [0; 32],
    };
    assert_eq!(r, Record::SessionStarted(want));
    // Written again, it is version 2: the old bytes followed by the new fields.
    assert_eq!(r.version(), 2);
    let again = encoded(&r);
    assert_eq!(&again[..SESSION_STARTED_V1.len()], &SESSION_STARTED_V1);
    assert_eq!(Record::decode(32, 2, &again), Ok(r));
    // Version 1 bytes are not a whole version 2 record, nor the other way round.
    assert!(Record::decode(32, 2, &SESSION_STARTED_V1).is_err());
    assert!(Record::decode(32, 1, &again).is_err());
}

#[test]
fn session_started_version_2_keeps_kind_and_key() {
    let s = SessionStarted {
        session: 9,
        job: 3,
        host: "coffer-1".into(),
        source: "/srv/data".into(),
        started: 1_790_000_000,
        streams: 2,
        mode: SessionMode::Files,
        kind: SessionKind::Incremental { base: 4 },
        source_key: [0xab; 32],
    };
    let r = Record::SessionStarted(s.clone());
    let bytes = encoded(&r);
    // The new fields follow the version 1 ones: variant 1, base 4, then the 32 key bytes.
    assert_eq!(&bytes[bytes.len() - 34..bytes.len() - 32], &[1, 4]);
    assert_eq!(&bytes[bytes.len() - 32..], &[0xab; 32]);
    assert_eq!(Record::decode(32, 2, &bytes), Ok(r));
    let full = Record::SessionStarted(SessionStarted { kind: SessionKind::Full, ..s.clone() });
    assert_eq!(Record::decode(32, 2, &encoded(&full)), Ok(full));
    // A base must be an earlier session.
    for base in [0, 9, 10] {
        let bad = SessionStarted { kind: SessionKind::Incremental { base }, ..s.clone() };
        let err = Record::SessionStarted(bad.clone()).validate();
        assert!(matches!(err, Err(CatalogError::Invalid { record: "SessionStarted", .. })), "base {base}");
        let err = Record::decode(32, 2, &postcard::to_allocvec(&bad).unwrap()).unwrap_err();
        assert!(matches!(err, CatalogError::Invalid { .. }), "base {base}: {err}");
    }
}

#[test]
fn trailing_and_oversized_payloads_are_refused() {
    let r = Record::SessionPruned(SessionPruned { session: 7 });
    let mut bytes = encoded(&r);
    bytes.push(0);
    let err = Record::decode(36, 1, &bytes).unwrap_err();
    assert!(matches!(&err, CatalogError::Decode { reason, .. } if reason.contains("after")));
    let huge = vec![0; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(Record::decode(48, 1, &huge), Err(CatalogError::Decode { .. })));
}

#[test]
fn invalid_records_are_refused_on_decode() {
    // Encoded directly: `Record::encode` refuses to write it.
    let bad = JobSaved { job: 4, name: String::new(), definition: String::new() };
    let bytes = postcard::to_allocvec(&bad).unwrap();
    let err = Record::decode(48, 1, &bytes).unwrap_err();
    assert!(matches!(err, CatalogError::Invalid { record: "JobSaved", .. }), "{err}");
}

#[test]
#[should_panic(expected = "invalid journal record")]
fn encoding_an_invalid_record_panics() {
    let bad = Record::LogEntry(LogEntry { at: 0, level: LogLevel::Note, job: None, message: "nul\0".into() });
    encoded(&bad);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn records_round_trip(r in record()) {
        prop_assert_eq!(r.validate(), Ok(()));
        let bytes = encoded(&r);
        prop_assert_eq!(Record::decode(r.kind(), r.version(), &bytes), Ok(r.clone()));
        // Every cut of a valid payload is refused: each field needs all its bytes.
        for cut in 0..bytes.len() {
            prop_assert!(Record::decode(r.kind(), r.version(), &bytes[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_payloads_never_panic(
        kind in prop_oneof![select(KNOWN.iter().map(|k| k.0).collect::<Vec<_>>()), any::<u16>()],
        version in 0u8..4,
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(r) = Record::decode(kind, version, &bytes) {
            prop_assert_eq!(r.validate(), Ok(()));
            // An old version comes back upgraded: it encodes as the current one.
            prop_assert_eq!(Record::decode(kind, r.version(), &encoded(&r)), Ok(r));
        }
    }

    #[test]
    fn damaged_payloads_never_panic(
        r in record(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encoded(&r);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Ok(d) = Record::decode(r.kind(), r.version(), &bytes) {
            prop_assert_eq!(d.validate(), Ok(()));
        }
    }
}

#[test]
fn job_state_changes_of_version_1_upgrade_with_no_due_time() {
    // Version 1 was job, state, at, message: postcard writes varints, the enum index and a
    // length-prefixed string.
    let v1 = postcard::to_allocvec(&(7u64, JobState::Hold, 1_700_000_000u64, "held")).unwrap();
    let r = Record::decode(49, 1, &v1).unwrap();
    assert_eq!(
        r,
        Record::JobStateChanged(JobStateChanged {
            job: 7,
            state: JobState::Hold,
            at: 1_700_000_000,
            message: "held".into(),
            run_at: None,
        })
    );
    // Version 2 bytes are not version 1 bytes: a v1 payload read as v2 fails (no Option tag).
    assert!(Record::decode(49, 2, &v1).is_err());
}
