use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, symlink};
use std::path::Path;

use super::*;
use crate::format::records::{ObjectKind, Payload};

const MIB: u64 = 1 << 20;

/// Every entry and problem of a walk, in order.
fn walk(root: &Path, opts: WalkOptions) -> (Vec<TreeEntry>, Vec<SourceProblem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for item in TreeWalker::new(root, opts).expect("root readable") {
        match item {
            Ok(e) => entries.push(e),
            Err(p) => problems.push(p),
        }
    }
    (entries, problems)
}

fn paths(entries: &[TreeEntry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.meta.path.clone()).unwrap()).collect()
}

fn find<'a>(entries: &'a [TreeEntry], path: &str) -> &'a TreeEntry {
    entries.iter().find(|e| e.meta.path == path.as_bytes()).unwrap_or_else(|| panic!("{path} not walked"))
}

pub(crate) fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated string alive for the call; the rest are integers.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(r, 0, "mknod {}: {}", path.display(), std::io::Error::last_os_error());
}

fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}

#[test]
fn order_kinds_and_hard_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(&root.join("a"), b"hello");
    fs::create_dir_all(root.join("b/a")).unwrap();
    write_file(&root.join("b/z"), b"zz");
    write_file(&root.join("b/a/x"), b"");
    symlink("a", root.join("c")).unwrap();
    symlink("b", root.join("d")).unwrap();
    mknod(&root.join("fifo"), libc::S_IFIFO | 0o640, 0);
    write_file(&root.join("h1"), b"linked");
    fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
    fs::hard_link(root.join("h1"), root.join("b/h3")).unwrap();
    mknod(&root.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    let _listener = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();

    let (entries, problems) = walk(root, WalkOptions::default());
    assert!(problems.is_empty(), "{problems:?}");
    let want = [".", "a", "b", "b/a", "b/a/x", "b/h3", "b/z", "c", "d", "fifo", "h1", "h2", "null", "sock"];
    assert_eq!(paths(&entries), want);
    for e in &entries {
        assert_eq!(e.meta.validate(), Ok(()));
        let expected_source = match &e.meta.path[..] {
            b"." => root.to_path_buf(),
            p => root.join(std::ffi::OsStr::from_bytes(p)),
        };
        assert_eq!(e.source, expected_source);
        if !e.meta.kind.has_data() {
            assert_eq!(e.meta.size, 0, "{:?}", e.meta.path);
        }
    }
    let kind = |p| find(&entries, p).meta.kind;
    assert_eq!(kind("."), ObjectKind::Dir);
    assert_eq!(kind("b/a"), ObjectKind::Dir);
    assert_eq!(kind("fifo"), ObjectKind::Fifo);
    assert_eq!(kind("sock"), ObjectKind::Socket);
    assert_eq!(find(&entries, "a").meta.size, 5);
    assert_eq!(find(&entries, "fifo").meta.mode & 0o7777, 0o640);

    // Symlinks are recorded, not followed: "d" names a directory but has no children.
    let c = find(&entries, "c");
    assert_eq!(c.meta.kind, ObjectKind::Symlink);
    assert_eq!(c.meta.symlink.as_deref().map(|t| &t[..]), Some(&b"a"[..]));
    assert_eq!(kind("d"), ObjectKind::Symlink);

    let null = find(&entries, "null");
    assert_eq!(null.meta.kind, ObjectKind::CharDevice);
    assert_eq!(null.meta.rdev, libc::makedev(1, 3));

    // The first path met in walk order is the file; the others name it.
    let first = find(&entries, "b/h3");
    assert_eq!((first.meta.kind, first.meta.size), (ObjectKind::File, 6));
    for later in ["h1", "h2"] {
        let e = find(&entries, later);
        assert_eq!(e.meta.kind, ObjectKind::Hardlink);
        assert_eq!(e.meta.size, 0);
        assert_eq!(e.meta.hardlink.as_deref().map(|t| &t[..]), Some(&b"b/h3"[..]));
        assert_eq!(e.ino, first.ino);
    }
}

#[test]
fn two_walks_of_an_unchanged_tree_agree() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["q", "B", "a", "é", "a b", "~"] {
        fs::create_dir(dir.path().join(name)).unwrap();
        write_file(&dir.path().join(name).join("f"), name.as_bytes());
    }
    let (first, _) = walk(dir.path(), WalkOptions::default());
    let (second, _) = walk(dir.path(), WalkOptions::default());
    assert_eq!(first, second);
    // Depth-first: each directory is followed by its file, siblings sorted by bytes.
    let want = ["B", "a", "a b", "q", "~", "é"];
    let want: Vec<String> = std::iter::once(".".to_string())
        .chain(want.iter().flat_map(|n| [n.to_string(), format!("{n}/f")]))
        .collect();
    assert_eq!(paths(&first), want);
}

#[test]
fn root_symlink_to_a_directory_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("real")).unwrap();
    write_file(&dir.path().join("real/f"), b"x");
    symlink("real", dir.path().join("ln")).unwrap();
    let (entries, problems) = walk(&dir.path().join("ln"), WalkOptions::default());
    assert!(problems.is_empty());
    assert_eq!(paths(&entries), [".", "f"]);
    assert_eq!(entries[0].meta.kind, ObjectKind::Dir);

    // A root symlink to anything else is the link itself.
    symlink("real/f", dir.path().join("lf")).unwrap();
    let (entries, _) = walk(&dir.path().join("lf"), WalkOptions::default());
    assert_eq!(paths(&entries), ["lf"]);
    assert_eq!(entries[0].meta.kind, ObjectKind::Symlink);
}

#[test]
fn root_that_is_a_file_is_named_by_its_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    write_file(&file, &[7; 1000]);
    let (entries, problems) = walk(&file, WalkOptions::default());
    assert!(problems.is_empty());
    assert_eq!(paths(&entries), ["data.bin"]);
    assert_eq!(entries[0].meta.kind, ObjectKind::File);
    assert_eq!(entries[0].meta.size, 1000);
    assert_eq!(entries[0].source, file);
}

#[test]
fn missing_root_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let err = TreeWalker::new(&dir.path().join("nope"), WalkOptions::default()).unwrap_err();
    assert!(matches!(err, SourceError::RootMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"));
}

#[test]
fn entries_past_the_depth_limit_are_skipped_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a/b/c/d")).unwrap();
    write_file(&dir.path().join("z"), b"");
    write_file(&dir.path().join("a/b/e"), b"");
    let walker = TreeWalker::with_max_depth(dir.path(), WalkOptions::default(), 2).unwrap();
    let (entries, problems): (Vec<_>, Vec<_>) = walker.partition(Result::is_ok);
    let entries: Vec<TreeEntry> = entries.into_iter().map(Result::unwrap).collect();
    assert_eq!(paths(&entries), [".", "a", "a/b", "z"]);
    let problems: Vec<SourceProblem> = problems.into_iter().map(|p| p.unwrap_err()).collect();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, dir.path().join("a/b"));
    assert!(problems[0].what.contains("levels deep"), "{}", problems[0].what);
}

#[test]
fn entry_vanishing_during_the_walk_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    for name in ["x1", "x2", "x3"] {
        write_file(&dir.path().join("a").join(name), b"");
    }
    let mut walker = TreeWalker::new(dir.path(), WalkOptions::default()).unwrap();
    let mut next_path = || match walker.next().unwrap() {
        Ok(e) => Ok(String::from_utf8(e.meta.path).unwrap()),
        Err(p) => Err(p),
    };
    assert_eq!(next_path().unwrap(), ".");
    assert_eq!(next_path().unwrap(), "a");
    assert_eq!(next_path().unwrap(), "a/x1");
    // "a" has been listed: x2 is known by name but goes before its lstat.
    fs::remove_file(dir.path().join("a/x2")).unwrap();
    let problem = next_path().unwrap_err();
    assert_eq!(problem.path, dir.path().join("a/x2"));
    assert!(problem.what.contains("vanished"), "{}", problem.what);
    assert_eq!(next_path().unwrap(), "a/x3");
}

#[test]
fn paths_over_the_format_limit_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let name = "n".repeat(250);
    // Build 17 levels through /proc/self/fd so no absolute path passed to the kernel is long.
    let mut parent = File::open(dir.path()).unwrap();
    for _ in 0..17 {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&parent);
        let child = format!("/proc/self/fd/{fd}/{name}");
        fs::create_dir(&child).unwrap();
        parent = File::open(&child).unwrap();
    }
    let (entries, problems) = walk(dir.path(), WalkOptions::default());
    // Level 16 is 16 * 251 - 1 = 4015 bytes long; level 17 would be 4266.
    assert_eq!(entries.len(), 1 + 16);
    assert!(entries.iter().all(|e| e.meta.path.len() <= crate::format::MAX_PATH_LEN));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].what.contains("longer than"), "{}", problems[0].what);
}

#[test]
fn sparse_file_has_one_small_extent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let file = File::create(&path).unwrap();
    file.set_len(100 * MIB).unwrap();
    file.write_all_at(&[0xab; 4096], 50 * MIB).unwrap();
    file.sync_all().unwrap();
    let (entries, _) = walk(dir.path(), WalkOptions::default());
    let entry = find(&entries, "sparse");
    assert_eq!(entry.meta.size, 100 * MIB);
    assert!(entry.allocated < MIB, "allocated {}", entry.allocated);

    let file = File::open(&path).unwrap();
    let extents = data_extents(&file, entry.meta.size).unwrap();
    assert_eq!(extents.len(), 1, "{extents:?}");
    let (offset, len) = extents[0];
    assert!(offset <= 50 * MIB && offset + len >= 50 * MIB + 4096, "{extents:?}");
    assert!(len <= MIB, "{extents:?}");
    // Extents stop at the size asked for.
    let short = data_extents(&file, 50 * MIB + 100).unwrap();
    assert_eq!(short, [(offset, 50 * MIB + 100 - offset)]);
}

#[test]
fn all_hole_and_dense_files() {
    let dir = tempfile::tempdir().unwrap();
    let holes = File::create(dir.path().join("holes")).unwrap();
    holes.set_len(10 * MIB).unwrap();
    assert_eq!(data_extents(&holes, 10 * MIB).unwrap(), []);
    assert_eq!(data_extents(&holes, 0).unwrap(), []);

    let mut dense = File::create(dir.path().join("dense")).unwrap();
    dense.write_all(&[1; 10_000]).unwrap();
    dense.sync_all().unwrap();
    assert_eq!(data_extents(&dense, 10_000).unwrap(), [(0, 10_000)]);
}

#[test]
fn extent_limit_makes_the_tail_one_extent() {
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("islands")).unwrap();
    let size = 10 * MIB;
    file.set_len(size).unwrap();
    for i in 0..10 {
        file.write_all_at(&[i as u8 + 1; 4096], i * MIB).unwrap();
    }
    file.sync_all().unwrap();
    let all = data_extents(&file, size).unwrap();
    assert_eq!(all.len(), 10, "{all:?}");
    let bounded = extents_bounded(&file, size, 3).unwrap();
    assert_eq!(bounded.len(), 3);
    assert_eq!(bounded[..2], all[..2]);
    assert_eq!(bounded[2], (all[2].0, size - all[2].0));
}

#[test]
fn changed_during_read_sees_writes_and_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    write_file(&path, b"before");
    let (entries, _) = walk(&path, WalkOptions::default());
    let entry = &entries[0];
    assert!(!changed_during_read(entry, &fs::metadata(&path).unwrap()));

    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"+").unwrap();
    assert!(changed_during_read(entry, &fs::metadata(&path).unwrap()));

    // Same size, new inode.
    write_file(&dir.path().join("g"), b"before");
    let (entries, _) = walk(&dir.path().join("g"), WalkOptions::default());
    let g = &entries[0];
    write_file(&dir.path().join("h"), b"before");
    File::open(dir.path().join("h"))
        .unwrap()
        .set_modified(fs::metadata(dir.path().join("g")).unwrap().modified().unwrap())
        .unwrap();
    fs::rename(dir.path().join("h"), dir.path().join("g")).unwrap();
    let after = fs::metadata(dir.path().join("g")).unwrap();
    assert_eq!(after.mtime(), g.meta.mtime);
    assert!(changed_during_read(g, &after));
}

/// Unmounts a test mount when dropped.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn one_file_system_lists_mount_points_but_not_their_contents() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    write_file(&dir.path().join("z"), b"");
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "coffer-test"]).arg(&mnt).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root outside a locked container)");
        return;
    }
    let _guard = Mount(&mnt);
    write_file(&mnt.join("inside"), b"x");

    let (all, _) = walk(dir.path(), WalkOptions::default());
    assert_eq!(paths(&all), [".", "mnt", "mnt/inside", "z"]);
    let opts = WalkOptions { one_file_system: true };
    let (one, problems) = walk(dir.path(), opts);
    assert!(problems.is_empty());
    assert_eq!(paths(&one), [".", "mnt", "z"]);
    assert_ne!(one[1].dev, one[0].dev);
}
