use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, chown, lchown, symlink};
use std::path::Path;

use serde_bytes::ByteBuf;

use super::*;
use crate::source::{SourceProblem, TreeEntry, TreeWalker, WalkOptions, data_extents};

const MIB: u64 = 1 << 20;
const UID: u32 = 1234;
const GID: u32 = 5678;

fn mknod_raw(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated string alive for the call; the rest are integers.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(r, 0, "mknod {}: {}", path.display(), io::Error::last_os_error());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// A source tree with every kind coffer restores, odd modes, owners and nanosecond mtimes.
fn build_source(root: &Path) {
    let p = |rel: &str| root.join(rel);
    fs::write(p("a.txt"), b"hello, world").unwrap();
    chmod(&p("a.txt"), 0o640);
    chown(p("a.txt"), Some(UID), Some(GID)).unwrap();
    fs::write(p("empty"), b"").unwrap();
    fs::create_dir_all(p("d1/d2")).unwrap();
    let deep: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(p("d1/d2/deep.bin"), &deep).unwrap();
    chown(p("d1/d2/deep.bin"), Some(UID), Some(GID)).unwrap();
    chmod(&p("d1/d2/deep.bin"), 0o4755);
    chown(p("d1/d2"), Some(UID), Some(GID)).unwrap();
    fs::create_dir(p("ro")).unwrap();
    fs::write(p("ro/inner.txt"), b"inside a read-only directory").unwrap();
    symlink("a.txt", p("link")).unwrap();
    lchown(p("link"), Some(UID), Some(GID)).unwrap();
    fs::write(p("hard1"), b"shared").unwrap();
    fs::hard_link(p("hard1"), p("hard2")).unwrap();
    mknod_raw(&p("fifo"), libc::S_IFIFO | 0o620, 0);
    mknod_raw(&p("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod_raw(&p("loop"), libc::S_IFBLK | 0o660, libc::makedev(7, 0));
    let sparse = File::create(p("sparse")).unwrap();
    sparse.set_len(100 * MIB).unwrap();
    sparse.write_all_at(&[0x5a; 4096], 50 * MIB).unwrap();
    drop(sparse);

    let leaves = [
        "a.txt",
        "empty",
        "d1/d2/deep.bin",
        "ro/inner.txt",
        "link",
        "hard1",
        "fifo",
        "null",
        "loop",
        "sparse",
    ];
    for (i, rel) in leaves.iter().enumerate() {
        set_mtime_nofollow(&p(rel), 1_600_000_000 + i as i64, 123_456_789 + i as u32).unwrap();
    }
    // Directories last, deepest first: filling them moved their mtimes.
    for (i, rel) in ["d1/d2", "d1", "ro", "."].iter().enumerate() {
        set_mtime_nofollow(&p(rel), 1_500_000_000 - i as i64, 999_999_999 - i as u32).unwrap();
    }
    chmod(&p("d1"), 0o750);
    chmod(&p("ro"), 0o555);
}

fn walk(root: &Path) -> Vec<TreeEntry> {
    let items: Vec<Result<TreeEntry, SourceProblem>> =
        TreeWalker::new(root, WalkOptions::default()).unwrap().collect();
    items.into_iter().map(|i| i.expect("no problems")).collect()
}

/// Restores the tree at `src` into `dst` the way a pipeline would, copying data extents only.
fn restore_tree(src: &Path, dst: &Path) -> RestoreSummary {
    let mut restorer = FsRestorer::new(dst).unwrap();
    for entry in walk(src) {
        let Some(out) = restorer.create(&entry.meta).unwrap() else {
            continue;
        };
        let input = File::open(&entry.source).unwrap();
        for (offset, len) in data_extents(&input, entry.meta.size).unwrap() {
            let mut buf = vec![0; len as usize];
            input.read_exact_at(&mut buf, offset).unwrap();
            out.write_all_at(&buf, offset).unwrap();
        }
        restorer.finish_file(out, &entry.meta).unwrap();
    }
    restorer.finish().unwrap()
}

fn same_contents(a: &Path, b: &Path, size: u64) -> bool {
    let (a, b) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut x, mut y) = (vec![0; MIB as usize], vec![0; MIB as usize]);
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(MIB) as usize;
        a.read_exact_at(&mut x[..n], offset).unwrap();
        b.read_exact_at(&mut y[..n], offset).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
        offset += n as u64;
    }
    true
}

#[test]
fn walked_tree_round_trips() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_source(src.path());
    let summary = restore_tree(src.path(), dst.path());
    let want = RestoreSummary {
        dirs: 4,
        files: 6,
        links: 2,
        specials: 3,
        skipped_sockets: 0,
        ownership_failures: 0,
    };
    assert_eq!(summary, want);

    let (before, after) = (walk(src.path()), walk(dst.path()));
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        // Path, kind, full mode, owner, mtime with nanoseconds, size, rdev, link targets.
        assert_eq!(a.meta, b.meta);
        if a.meta.kind == ObjectKind::File {
            assert!(same_contents(&a.source, &b.source, a.meta.size), "{:?}", b.source);
        }
    }
    let get = |rel: &str| after.iter().find(|e| e.meta.path == rel.as_bytes()).unwrap();
    assert_eq!(get("d1/d2/deep.bin").meta.mode & 0o7777, 0o4755);
    assert_eq!(get("ro").meta.mode & 0o7777, 0o555);
    assert_eq!(get("link").meta.symlink, Some(ByteBuf::from(&b"a.txt"[..])));
    assert_eq!(get("hard2").meta.kind, ObjectKind::Hardlink);
    assert_eq!(get("hard2").ino, get("hard1").ino);
    assert_eq!(get("null").meta.rdev, libc::makedev(1, 3));
    assert_eq!(get("a.txt").meta.mtime_nsec, 123_456_789);
    let sparse = get("sparse");
    assert_eq!(sparse.meta.size, 100 * MIB);
    assert!(sparse.allocated < MIB, "allocated {}", sparse.allocated);
}

fn meta(path: &[u8], kind: ObjectKind) -> ObjectMeta {
    ObjectMeta {
        path: path.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        mtime_nsec: 0,
        size: 0,
        rdev: 0,
        symlink: None,
        hardlink: None,
    }
}

fn symlink_meta(path: &[u8], target: &[u8]) -> ObjectMeta {
    ObjectMeta { symlink: Some(ByteBuf::from(target)), ..meta(path, ObjectKind::Symlink) }
}

fn hardlink_meta(path: &[u8], target: &[u8]) -> ObjectMeta {
    ObjectMeta { hardlink: Some(ByteBuf::from(target)), ..meta(path, ObjectKind::Hardlink) }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn paths_leaving_the_root_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let mut restorer = FsRestorer::new(&root).unwrap();
    let outside = b"/tmp/coffer-restore-test-must-not-exist";
    let bad: [&[u8]; 11] =
        [b"../x", outside, b"a/../../x", b"a/..", b"..", b"a//b", b"", b"a/./b", b"./a", b"a/", b"a\0b"];
    for path in bad {
        for kind in [ObjectKind::File, ObjectKind::Dir] {
            let err = restorer.create(&meta(path, kind)).unwrap_err();
            assert!(matches!(err, RestoreError::UnsafePath { .. }), "{path:?}: {err}");
        }
    }
    for target in bad {
        let err = restorer.create(&hardlink_meta(b"h", target)).unwrap_err();
        assert!(matches!(err, RestoreError::UnsafePath { .. }), "{target:?}: {err}");
    }
    let err = restorer.create(&meta(b".", ObjectKind::File)).unwrap_err();
    assert!(matches!(err, RestoreError::UnsafePath { .. }), "{err}");
    assert_eq!(names(base.path()), ["root"]);
    assert!(names(&root).is_empty());
    assert!(!Path::new(OsStr::from_bytes(outside)).exists());
}

#[test]
fn nothing_is_created_through_a_restored_symlink() {
    let base = tempfile::tempdir().unwrap();
    let (root, outside) = (base.path().join("root"), base.path().join("outside"));
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"keep").unwrap();
    let mut restorer = FsRestorer::new(&root).unwrap();
    restorer.create(&symlink_meta(b"evil", outside.as_os_str().as_bytes())).unwrap();
    let through = [
        meta(b"evil/x", ObjectKind::File),
        meta(b"evil/deeper/x", ObjectKind::File),
        meta(b"evil/sub", ObjectKind::Dir),
        meta(b"evil/p", ObjectKind::Fifo),
        symlink_meta(b"evil/s", b"/"),
        hardlink_meta(b"evil/h", b"evil"),
        hardlink_meta(b"h", b"evil/secret"),
    ];
    for m in &through {
        let err = restorer.create(m).unwrap_err();
        assert!(matches!(err, RestoreError::UnsafePath { .. }), "{m:?}: {err}");
    }
    assert_eq!(names(&outside), ["secret"]);
    assert_eq!(names(&root), ["evil"]);

    // A file restored over the link replaces it and never writes through it.
    let m = ObjectMeta { size: 3, ..meta(b"evil", ObjectKind::File) };
    let file = restorer.create(&m).unwrap().unwrap();
    file.write_all_at(b"new", 0).unwrap();
    restorer.finish_file(file, &m).unwrap();
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"keep");
    assert!(fs::symlink_metadata(root.join("evil")).unwrap().is_file());
    assert_eq!(fs::read(root.join("evil")).unwrap(), b"new");
}

#[test]
fn existing_hard_links_are_not_written_through() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(base.path().join("precious"), b"keep").unwrap();
    fs::hard_link(base.path().join("precious"), root.join("f")).unwrap();
    let mut restorer = FsRestorer::new(&root).unwrap();
    let m = ObjectMeta { size: 5, ..meta(b"f", ObjectKind::File) };
    let file = restorer.create(&m).unwrap().unwrap();
    file.write_all_at(b"fresh", 0).unwrap();
    restorer.finish_file(file, &m).unwrap();
    assert_eq!(fs::read(base.path().join("precious")).unwrap(), b"keep");
    assert_eq!(fs::read(root.join("f")).unwrap(), b"fresh");
}

#[test]
fn hard_link_to_a_file_not_restored_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut restorer = FsRestorer::new(dir.path()).unwrap();
    for target in [&b"missing"[..], b"no/such/dir"] {
        let err = restorer.create(&hardlink_meta(b"h", target)).unwrap_err();
        assert!(matches!(err, RestoreError::HardlinkTarget { .. }), "{err}");
        assert!(err.to_string().contains("restored first"), "{err}");
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn sockets_are_skipped_and_volumes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut restorer = FsRestorer::new(dir.path()).unwrap();
    assert!(restorer.create(&meta(b"s", ObjectKind::Socket)).unwrap().is_none());
    let err = restorer.create(&meta(b"dev-sda", ObjectKind::Volume)).unwrap_err();
    assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    assert!(names(dir.path()).is_empty());
    assert_eq!(restorer.finish().unwrap().skipped_sockets, 1);
}

#[test]
fn directory_in_the_way_of_a_file_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("d/kept")).unwrap();
    let mut restorer = FsRestorer::new(dir.path()).unwrap();
    let err = restorer.create(&meta(b"d", ObjectKind::File)).unwrap_err();
    assert!(matches!(err, RestoreError::Conflict { .. }), "{err}");
    assert!(dir.path().join("d/kept").is_dir());
}

#[test]
fn missing_parents_are_created_and_metadata_is_invalid_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut restorer = FsRestorer::new(&dir.path().join("new/root")).unwrap();
    let file = restorer.create(&meta(b"x/y/z", ObjectKind::File)).unwrap().unwrap();
    restorer.finish_file(file, &meta(b"x/y/z", ObjectKind::File)).unwrap();
    assert!(dir.path().join("new/root/x/y/z").is_file());
    // A symlink without a target breaks the format's rules.
    let err = restorer.create(&meta(b"l", ObjectKind::Symlink)).unwrap_err();
    assert!(matches!(err, RestoreError::Invalid { .. }), "{err}");
}

#[test]
fn components_split_plain_paths() {
    assert_eq!(components(b".").unwrap(), Vec::<&[u8]>::new());
    assert_eq!(components(b"a").unwrap(), [b"a"]);
    assert_eq!(components(b"a/b.c/..d").unwrap(), [&b"a"[..], b"b.c", b"..d"]);
    assert!(components(&vec![b'a'; MAX_PATH_LEN + 1]).is_err());
    assert_eq!(depth(b"."), 0);
    assert_eq!(depth(b"a/b"), 2);
}

#[test]
fn times_before_the_epoch() {
    let t = system_time(-1, 500_000_000).unwrap();
    assert_eq!(UNIX_EPOCH.duration_since(t).unwrap(), Duration::from_millis(500));
    let t = system_time(1, 1).unwrap();
    assert_eq!(t.duration_since(UNIX_EPOCH).unwrap(), Duration::new(1, 1));
}

#[test]
fn the_umask_is_read_without_being_changed() {
    assert_eq!(parse_umask("Name:\tcoffer\nUmask:\t0022\nState:\tR\n"), Some(0o022));
    assert_eq!(parse_umask("Umask:\t0077\n"), Some(0o077));
    assert_eq!(parse_umask("Name:\tcoffer\n"), None);
    assert_eq!(parse_umask("Umask:\tzz\n"), None);
    // Restorers made at once, as restore workers are, all see the process's umask and leave it
    // as it was (read where Linux shows it, without changing it).
    let now = || parse_umask(&fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    let before = now();
    let dirs: Vec<_> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    std::thread::scope(|s| {
        for d in &dirs {
            s.spawn(move || assert_eq!(FsRestorer::new(d.path()).unwrap().umask, before));
        }
    });
    let after = now();
    assert_eq!(after, before);
}
