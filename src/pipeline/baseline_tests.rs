//! Baselines, chains, unchanged files and restore sources, on hand-built catalogs.

use super::*;
use crate::catalog::{
    MediumAdded, MediumKind, ObjectStored, Record, SessionFinished, SessionPart, SessionPruned,
    SessionStarted, StoredObject,
};

const MEDIUM: [u8; 16] = [5; 16];
/// When every test session starts; objects' mtimes are well before it unless a test says.
const STARTED: u64 = 1_800_000_000;
const OLD: i64 = 1_700_000_000;

fn key(name: &str) -> SourceKey {
    SourceKey::of_canonical_roots(&[name])
}

/// An object as a session stores it: (path, kind, size, mtime).
type Obj<'a> = (&'a str, ObjectKind, u64, i64);

fn file(path: &str, size: u64, mtime: i64) -> Obj<'_> {
    (path, ObjectKind::File, size, mtime)
}

fn dir(path: &str) -> Obj<'_> {
    (path, ObjectKind::Dir, 0, OLD)
}

/// A catalog in a real store (in a temporary directory): sessions' entries go to index files
/// when they finish, as on the box.
struct Cat {
    store: crate::store::Store,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Cat {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        self.store.catalog()
    }
}

impl Cat {
    fn apply(&mut self, r: &Record) -> Result<(), crate::store::StoreError> {
        self.store.commit(std::slice::from_ref(r))
    }

    fn ix(&self) -> Indexes {
        self.store.indexes()
    }

    fn objects(&self, session: u64) -> Vec<StoredObject> {
        let mut o = self.store.entries(session).unwrap().objects().unwrap();
        o.sort_by_key(|o| o.id);
        o
    }
}

fn catalog() -> Cat {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = crate::store::Store::open(dir.path(), crate::journal::Mode::Write).unwrap();
    let mut c = Cat { store, _dir: dir };
    c.apply(&Record::MediumAdded(MediumAdded {
        medium: MEDIUM,
        barcode: "VOL001".into(),
        pool: "default".into(),
        kind: MediumKind::Disk,
        block_size: 4096,
        capacity: 1 << 40,
        created: STARTED - 100,
        location: "disk:vol".into(),
    }))
    .unwrap();
    c
}

/// Adds a finished session of `objects`; returns its id.
fn session(c: &mut Cat, kind: SessionKind, key: SourceKey, status: SessionStatus, objects: &[Obj]) -> u64 {
    let session = c.next_session_id();
    let start = SessionStarted {
        session,
        job: 0,
        host: "test".into(),
        source: "/src".into(),
        started: STARTED + session,
        streams: 1,
        mode: SessionMode::Files,
        kind,
        source_key: key.0,
    };
    c.apply(&Record::SessionStarted(start)).unwrap();
    let part = SessionPart { session, stream: 0, part: 0, medium: MEDIUM, position: 0, file_number: 0 };
    c.apply(&Record::SessionPart(part)).unwrap();
    for (i, &(path, kind, size, mtime)) in objects.iter().enumerate() {
        let object = StoredObject {
            id: i as u64 + 1,
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mtime,
            mode: mode_of(kind),
            uid: 0,
            gid: 0,
            segment_offset: 0,
            length: size,
            stream: 0,
            part: 0,
            position: i as u64 * 100,
            digest: [1; 32],
        };
        c.apply(&Record::ObjectStored(ObjectStored { session, object })).unwrap();
    }
    let finish = SessionFinished {
        session,
        ended: STARTED + session + 1,
        status,
        objects: objects.len() as u64,
        raw_bytes: 0,
        stored_bytes: 0,
    };
    c.apply(&Record::SessionFinished(finish)).unwrap();
    session
}

fn full(c: &mut Cat, key: SourceKey, objects: &[Obj]) -> u64 {
    session(c, SessionKind::Full, key, SessionStatus::Complete, objects)
}

fn incremental(c: &mut Cat, base: u64, key: SourceKey, objects: &[Obj]) -> u64 {
    session(c, SessionKind::Incremental { base }, key, SessionStatus::Complete, objects)
}

/// The mode test objects have.
fn mode_of(kind: ObjectKind) -> u32 {
    match kind {
        ObjectKind::Dir => 0o040755,
        ObjectKind::Symlink => 0o120777,
        _ => 0o100644,
    }
}

/// A walked object.
fn walked(path: &str, kind: ObjectKind, size: u64, mtime: i64) -> ObjectMeta {
    ObjectMeta {
        path: path.as_bytes().to_vec(),
        kind,
        mode: mode_of(kind),
        uid: 0,
        gid: 0,
        mtime,
        mtime_nsec: 0,
        size,
        rdev: 0,
        symlink: None,
        hardlink: None,
    }
}

fn walked_file(path: &str, size: u64, mtime: i64) -> ObjectMeta {
    walked(path, ObjectKind::File, size, mtime)
}

#[test]
fn source_keys_name_the_set_of_roots() {
    let a = SourceKey::of_canonical_roots(&["/srv/a", "/srv/b"]);
    assert_eq!(a, SourceKey::of_canonical_roots(&["/srv/b", "/srv/a", "/srv/b"]));
    assert_ne!(a, SourceKey::of_canonical_roots(&["/srv/a"]));
    // Joining differently must not collide.
    assert_ne!(SourceKey::of_canonical_roots(&["/a", "b"]), SourceKey::of_canonical_roots(&["/ab"]));
    assert!(a.is_known() && !SourceKey::NONE.is_known());
}

#[test]
fn an_unchanged_file_is_skipped_and_any_change_is_not() {
    let mut c = catalog();
    full(&mut c, key("/src"), &[dir("."), file("a", 100, OLD), file("b", 5, OLD)]);
    let b = Baseline::find(&c, &c.ix(), key("/src")).unwrap();
    assert_eq!((b.base(), b.chain()), (1, &[1][..]));
    assert!(b.is_unchanged(&walked_file("a", 100, OLD)));
    assert!(!b.is_unchanged(&walked_file("a", 101, OLD)), "size changed");
    assert!(!b.is_unchanged(&walked_file("a", 100, OLD + 1)), "mtime changed");
    assert!(!b.is_unchanged(&walked_file("a", 100, OLD - 1)), "mtime moved back");
    assert!(!b.is_unchanged(&walked_file("new", 100, OLD)), "new file");
    // A deleted file ("b" is not walked) asks nothing; one made again under its name with
    // other contents is not taken for the old one.
    assert!(!b.is_unchanged(&walked_file("b", 6, OLD + 9)));
}

#[test]
fn only_regular_files_are_ever_skipped() {
    let mut c = catalog();
    let objs = [dir("."), dir("d"), ("link", ObjectKind::Symlink, 0, OLD), file("was-link", 3, OLD)];
    full(&mut c, key("/src"), &objs);
    let b = Baseline::find(&c, &c.ix(), key("/src")).unwrap();
    assert!(!b.is_unchanged(&walked("d", ObjectKind::Dir, 0, OLD)));
    assert!(!b.is_unchanged(&walked("link", ObjectKind::Symlink, 0, OLD)));
    // A file where the baseline had a symbolic link is new, whatever its size and time.
    assert!(!b.is_unchanged(&walked_file("link", 0, OLD)));
    // A hard link names a file: it is metadata, always stored.
    let mut h = walked("was-link", ObjectKind::Hardlink, 0, OLD);
    h.hardlink = Some(serde_bytes::ByteBuf::from(b"other".to_vec()));
    assert!(!b.is_unchanged(&h));
    assert!(b.is_unchanged(&walked_file("was-link", 3, OLD)));
}

#[test]
fn a_file_modified_in_the_second_its_session_started_is_never_trusted() {
    let mut c = catalog();
    // Session 1 starts at STARTED + 1.
    let start = (STARTED + 1) as i64;
    full(
        &mut c,
        key("/src"),
        &[file("before", 1, start - 1), file("same", 1, start), file("after", 1, start + 5)],
    );
    let b = Baseline::find(&c, &c.ix(), key("/src")).unwrap();
    assert!(b.is_unchanged(&walked_file("before", 1, start - 1)));
    assert!(!b.is_unchanged(&walked_file("same", 1, start)));
    assert!(!b.is_unchanged(&walked_file("after", 1, start + 5)));
}

#[test]
fn the_baseline_is_the_newest_complete_session_of_the_same_sources() {
    let mut c = catalog();
    assert_eq!(Baseline::find(&c, &c.ix(), key("/src")).unwrap_err(), IncrementalError::NoBaseline);
    let s1 = full(&mut c, key("/src"), &[file("a", 1, OLD)]);
    full(&mut c, key("/other"), &[file("a", 2, OLD)]);
    session(&mut c, SessionKind::Full, key("/src"), SessionStatus::Failed, &[file("a", 3, OLD)]);
    session(&mut c, SessionKind::Full, key("/src"), SessionStatus::Cancelled, &[file("a", 4, OLD)]);
    full(&mut c, SourceKey::NONE, &[file("a", 5, OLD)]);
    let b = Baseline::find(&c, &c.ix(), key("/src")).unwrap();
    assert_eq!(b.base(), s1);
    assert!(b.is_unchanged(&walked_file("a", 1, OLD)));
    // Sessions without a key (older coffer, rebuilt from media) are nobody's baseline.
    assert_eq!(Baseline::find(&c, &c.ix(), SourceKey::NONE).unwrap_err(), IncrementalError::NoBaseline);
    assert!(Baseline::find(&c, &c.ix(), key("/nothing")).unwrap_err().is_no_baseline());
}

#[test]
fn the_chain_index_takes_each_path_from_its_newest_session() {
    let mut c = catalog();
    let k = key("/src");
    let f = full(&mut c, k, &[dir("."), file("a", 1, OLD), file("b", 1, OLD), file("c", 1, OLD)]);
    let i1 = incremental(&mut c, f, k, &[dir("."), file("a", 2, OLD + 1)]);
    let i2 = incremental(&mut c, i1, k, &[dir("."), file("b", 2, OLD + 2)]);
    assert_eq!(chain(&c, i2).unwrap(), vec![f, i1, i2]);
    let b = Baseline::find(&c, &c.ix(), k).unwrap();
    assert_eq!((b.base(), b.chain()), (i2, &[f, i1, i2][..]));
    assert!(b.is_unchanged(&walked_file("a", 2, OLD + 1)));
    assert!(!b.is_unchanged(&walked_file("a", 1, OLD)), "the full session's a is superseded");
    assert!(b.is_unchanged(&walked_file("b", 2, OLD + 2)));
    assert!(b.is_unchanged(&walked_file("c", 1, OLD)), "unchanged since the full session");
}

#[test]
fn a_pruned_base_breaks_the_chain() {
    let mut c = catalog();
    let k = key("/src");
    let f = full(&mut c, k, &[file("a", 1, OLD)]);
    let i = incremental(&mut c, f, k, &[file("b", 1, OLD)]);
    c.apply(&Record::SessionPruned(SessionPruned { session: f })).unwrap();
    let broken = IncrementalError::BaseMissing { session: i, base: f };
    assert_eq!(chain(&c, i), Err(broken.clone()));
    assert_eq!(restore_sources(&c, &c.ix(), i), Err(broken.clone()));
    let err = Baseline::find(&c, &c.ix(), k).unwrap_err();
    assert_eq!(err, broken);
    assert!(!err.is_no_baseline());
    assert_eq!(chain(&c, 99), Err(IncrementalError::UnknownSession(99)));
}

#[test]
fn restore_takes_each_path_from_the_newest_session_that_holds_it() {
    let mut c = catalog();
    let k = key("/src");
    // Full: ids 1..=8.
    let f = full(
        &mut c,
        k,
        &[
            dir("."),
            dir("d"),
            file("d/changed", 1, OLD),
            file("d/kept", 1, OLD),
            dir("gone"),
            file("gone/x", 1, OLD),
            ("old-link", ObjectKind::Symlink, 0, OLD),
            file("deleted", 1, OLD),
        ],
    );
    // Incremental: "gone" and "old-link" were removed, "deleted" too (it cannot tell), "d/kept"
    // is unchanged, "d/changed" changed, "new" is new. Ids 1..=4.
    let i =
        incremental(&mut c, f, k, &[dir("."), dir("d"), file("d/changed", 2, OLD + 1), file("new", 3, OLD)]);
    let got = restore_sources(&c, &c.ix(), i).unwrap();
    // From the full session: the unchanged file, and the deleted one whose directory is still
    // there (the documented limit); not the file of the removed directory, nor the link.
    let from_full: BTreeSet<u64> = [4, 8].into();
    let from_incr: BTreeSet<u64> = [1, 2, 3, 4].into();
    assert_eq!(got, vec![(f, from_full), (i, from_incr)]);
    // A full session is its own chain.
    let all: BTreeSet<u64> = (1..=8).collect();
    assert_eq!(restore_sources(&c, &c.ix(), f).unwrap(), vec![(f, all)]);
}

#[test]
fn restore_takes_every_piece_of_a_split_file_from_one_session() {
    let mut c = catalog();
    let k = key("/src");
    let f = full(&mut c, k, &[dir("."), file("big", 10, OLD), file("other", 1, OLD)]);
    // A split file is stored as pieces sharing one id and path; here as two entries.
    let i = incremental(&mut c, f, k, &[dir("."), file("big", 20, OLD + 1), file("big", 20, OLD + 1)]);
    let got = restore_sources(&c, &c.ix(), i).unwrap();
    assert_eq!(got, vec![(f, [3].into()), (i, [1, 2, 3].into())]);
}

#[test]
fn parents_must_all_be_directories_of_the_restored_session() {
    let dirs: HashSet<&[u8]> = [&b"a"[..], b"a/b"].into();
    assert!(parents_in(b"top", &dirs));
    assert!(parents_in(b"a/file", &dirs));
    assert!(parents_in(b"a/b/file", &dirs));
    assert!(!parents_in(b"a/c/file", &dirs));
    assert!(!parents_in(b"x/file", &dirs));
}

#[test]
fn volumes_cannot_be_incremental() {
    let tree = Source::Tree { root: "/src".into(), prefix: None };
    assert_eq!(check_sources(std::slice::from_ref(&tree)), Ok(()));
    let err = check_sources(&[tree, Source::Volume("/dev/sdb".into())]).unwrap_err();
    assert_eq!(err, IncrementalError::Volume { path: "/dev/sdb".into() });
    assert!(err.to_string().contains("--mode files"));
}

#[test]
fn skipping_counts_files_and_bytes() {
    let mut c = catalog();
    full(&mut c, key("/src"), &[file("a", 100, OLD), file("b", 7, OLD)]);
    let inc = Incremental::new(Baseline::find(&c, &c.ix(), key("/src")).unwrap());
    let shared = inc.clone();
    assert!(inc.skip(&walked_file("a", 100, OLD)));
    assert!(shared.skip(&walked_file("b", 7, OLD)));
    assert!(!inc.skip(&walked_file("c", 1, OLD)));
    assert_eq!(inc.unchanged(), Unchanged { files: 2, bytes: 107 });
}

/// Records that `session` (still open: call before finishing it) kept `paths`, as a whole list.
fn with_kept(c: &mut Cat, kind: SessionKind, key: SourceKey, objects: &[Obj], kept: &[&str]) -> u64 {
    // As `session` does, but the list goes in before the end record.
    let id = c.next_session_id();
    let start = SessionStarted {
        session: id,
        job: 0,
        host: "test".into(),
        source: "/src".into(),
        started: STARTED + id,
        streams: 1,
        mode: SessionMode::Files,
        kind,
        source_key: key.0,
    };
    c.apply(&Record::SessionStarted(start)).unwrap();
    let part = SessionPart { session: id, stream: 0, part: 0, medium: MEDIUM, position: 0, file_number: 0 };
    c.apply(&Record::SessionPart(part)).unwrap();
    for (i, &(path, kind, size, mtime)) in objects.iter().enumerate() {
        let object = StoredObject {
            id: i as u64 + 1,
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mtime,
            mode: mode_of(kind),
            uid: 0,
            gid: 0,
            segment_offset: 0,
            length: size,
            stream: 0,
            part: 0,
            position: i as u64 * 100,
            digest: [1; 32],
        };
        c.apply(&Record::ObjectStored(ObjectStored { session: id, object })).unwrap();
    }
    for b in crate::catalog::kept_batches(id, kept.iter().map(|p| p.as_bytes()), true) {
        c.apply(&Record::FilesKept(b)).unwrap();
    }
    let finish = SessionFinished {
        session: id,
        ended: STARTED + id + 1,
        status: SessionStatus::Complete,
        objects: objects.len() as u64,
        raw_bytes: 0,
        stored_bytes: 0,
    };
    c.apply(&Record::SessionFinished(finish)).unwrap();
    id
}

#[test]
fn a_change_of_mode_owner_or_group_is_a_change() {
    let mut c = catalog();
    full(&mut c, key("/src"), &[file("a", 100, OLD)]);
    let b = Baseline::find(&c, &c.ix(), key("/src")).unwrap();
    assert!(b.is_unchanged(&walked_file("a", 100, OLD)));
    let changes: [fn(&mut ObjectMeta); 3] = [|m| m.mode = 0o100600, |m| m.uid = 1000, |m| m.gid = 1000];
    for change in changes {
        let mut m = walked_file("a", 100, OLD);
        change(&mut m);
        assert!(!b.is_unchanged(&m), "{m:?}");
    }
}

#[test]
fn a_file_recorded_without_a_mode_is_never_unchanged() {
    let mut c = catalog();
    let f = full(&mut c, key("/src"), &[file("a", 100, OLD)]);
    // As an ObjectStored of version 1 reads: mode, owner and group 0.
    let mut objects = c.objects(f);
    objects[0].mode = 0;
    let mut c2 = catalog();
    let start = c.session(f).unwrap().start().clone();
    c2.apply(&Record::SessionStarted(start)).unwrap();
    c2.apply(&Record::SessionPart(c.session(f).unwrap().part(0, 0).unwrap().clone())).unwrap();
    c2.apply(&Record::ObjectStored(ObjectStored { session: f, object: objects[0].clone() })).unwrap();
    c2.apply(&Record::SessionFinished(c.session(f).unwrap().finish().unwrap().clone())).unwrap();
    let b = Baseline::find(&c2, &c2.ix(), key("/src")).unwrap();
    assert!(!b.is_unchanged(&walked_file("a", 100, OLD)));
}

#[test]
fn with_a_list_of_kept_files_a_deleted_file_stays_deleted() {
    let mut c = catalog();
    let k = key("/src");
    // Full: ids 1..=5.
    let f = full(
        &mut c,
        k,
        &[dir("."), dir("d"), file("d/kept", 1, OLD), file("d/deleted", 1, OLD), file("top", 1, OLD)],
    );
    // Incremental: "d/deleted" is gone, "d/kept" and "top" unchanged, "new" is new.
    let incr = SessionKind::Incremental { base: f };
    let i = with_kept(&mut c, incr, k, &[dir("."), dir("d"), file("new", 2, OLD)], &["d/kept", "top"]);
    assert_eq!(restore_sources(&c, &c.ix(), i).unwrap(), vec![(f, [3, 5].into()), (i, [1, 2, 3].into())]);
    // The next baseline knows no "d/deleted": a file of that name made again is new.
    let b = Baseline::find(&c, &c.ix(), k).unwrap();
    assert_eq!(b.base(), i);
    assert!(!b.is_unchanged(&walked_file("d/deleted", 1, OLD)));
    assert!(b.is_unchanged(&walked_file("d/kept", 1, OLD)));
    // A second incremental keeps what the first kept and what it stored.
    let i2 = with_kept(
        &mut c,
        SessionKind::Incremental { base: i },
        k,
        &[dir("."), dir("d")],
        &["d/kept", "new", "top"],
    );
    assert_eq!(
        restore_sources(&c, &c.ix(), i2).unwrap(),
        vec![(f, [3, 5].into()), (i, [3].into()), (i2, [1, 2].into())]
    );
}
