//! `verify --compare DIR`: checks objects read back against the files in a directory (seed
//! 001's compare): kind, size, permissions, owner, modification time, link targets, contents.
//!
//! Paths come from the medium, which may be crafted: each is placed under the compared
//! directory by restore's rules ([`checked_path_under`]); one that would leave it (absolute,
//! `..`, a symlinked parent) is reported as a difference and nothing outside is looked at.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::records::{ObjectKind, ObjectMeta};
use crate::fsrestore::checked_path_under;

/// Differences listed before the rest are only counted.
const MAX_DIFFERENCES: usize = 10_000;

/// Compares objects with a directory.
#[derive(Debug)]
pub struct Comparer {
    root: PathBuf,
    file: Option<(Vec<u8>, File)>,
    content_differs: bool,
    buf: Vec<u8>,
    diffs: Vec<String>,
    more: u64,
}

impl Comparer {
    /// Compares with the tree under `root`.
    pub fn new(root: &Path) -> Comparer {
        Comparer {
            root: root.to_owned(),
            file: None,
            content_differs: false,
            buf: Vec::new(),
            diffs: Vec::new(),
            more: 0,
        }
    }

    fn diff(&mut self, meta: &ObjectMeta, what: String) {
        if self.diffs.len() < MAX_DIFFERENCES {
            self.diffs.push(format!("{}: {what}", String::from_utf8_lossy(&meta.path)));
        } else {
            self.more += 1;
        }
    }

    /// Compares an object's metadata, and opens it for the content comparison.
    pub fn metadata(&mut self, meta: &ObjectMeta) {
        self.file = None;
        self.content_differs = false;
        // The path comes from the medium: untrusted. Restore's rules keep it inside the root,
        // so a crafted `/etc/shadow` or `../x` is reported, never looked at.
        let path = match checked_path_under(&self.root, &meta.path) {
            Ok(path) => path,
            Err(why) => {
                let what = format!("not compared: {why}; the backup media is damaged or was crafted");
                return self.diff(meta, what);
            }
        };
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) => return self.diff(meta, format!("missing on disk ({e})")),
        };
        let kind = kind_of(&md);
        if kind != meta.kind && !(meta.kind == ObjectKind::Hardlink && kind == ObjectKind::File) {
            return self.diff(meta, format!("is a {kind:?} on disk, a {:?} in the backup", meta.kind));
        }
        let mut what = Vec::new();
        if meta.kind == ObjectKind::File && md.len() != meta.size {
            what.push(format!("size {} on disk, {} in the backup", md.len(), meta.size));
        }
        if md.mode() != meta.mode && meta.kind != ObjectKind::Hardlink {
            what.push(format!("mode {:o} on disk, {:o} in the backup", md.mode(), meta.mode));
        }
        if (md.uid(), md.gid()) != (meta.uid, meta.gid) && meta.kind != ObjectKind::Hardlink {
            what.push(format!(
                "owner {}:{} on disk, {}:{} in the backup",
                md.uid(),
                md.gid(),
                meta.uid,
                meta.gid
            ));
        }
        let mtime_differs = (md.mtime(), md.mtime_nsec() as u32) != (meta.mtime, meta.mtime_nsec);
        if mtime_differs && !matches!(meta.kind, ObjectKind::Hardlink | ObjectKind::Dir) {
            what.push("modification time differs".into());
        }
        if let Some(t) = &meta.symlink
            && std::fs::read_link(&path).map(|l| l.as_os_str().as_encoded_bytes().to_vec()).ok().as_deref()
                != Some(&t[..])
        {
            what.push("symlink target differs".into());
        }
        for w in what {
            self.diff(meta, w);
        }
        if meta.kind == ObjectKind::File {
            // O_NOFOLLOW: a symlink swapped in since the lstat above is not followed.
            match File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
                Ok(f) => self.file = Some((meta.path.clone(), f)),
                Err(e) => self.diff(meta, format!("cannot be read on disk ({e})")),
            }
        }
    }

    /// Compares a piece of an object's contents.
    pub fn data(&mut self, meta: &ObjectMeta, offset: u64, data: &[u8]) {
        let Some((path, f)) = &self.file else { return };
        if *path != meta.path || self.content_differs {
            return;
        }
        self.buf.resize(data.len(), 0);
        let same = match f.read_exact_at(&mut self.buf, offset) {
            Ok(()) => self.buf == data,
            Err(_) => false,
        };
        if !same {
            self.content_differs = true;
            self.diff(meta, format!("contents differ at or after byte {offset}"));
        }
    }

    /// Ends an object.
    pub fn end(&mut self, meta: &ObjectMeta, _length: u64) {
        if self.file.as_ref().is_some_and(|(p, _)| *p == meta.path) {
            self.file = None;
        }
    }

    /// The differences found.
    pub fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.diffs.push(format!("… and {} more differences", self.more));
        }
        self.diffs
    }
}

fn kind_of(md: &std::fs::Metadata) -> ObjectKind {
    crate::source::kind_of(md.file_type()).unwrap_or(ObjectKind::File)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A file's metadata as a crafted medium would name it: size, mode, owner and time that
    /// differ from any real file, so a compare that looked at one would report all four.
    fn crafted(path: &[u8]) -> ObjectMeta {
        ObjectMeta {
            path: path.to_vec(),
            kind: ObjectKind::File,
            mode: libc::S_IFREG | 0o4777,
            uid: 4242,
            gid: 4242,
            mtime: 1,
            mtime_nsec: 0,
            size: 123_456_789,
            rdev: 0,
            symlink: None,
            hardlink: None,
        }
    }

    fn compare(root: &Path, metas: &[ObjectMeta]) -> Vec<String> {
        let mut c = Comparer::new(root);
        for m in metas {
            c.metadata(m);
            c.end(m, m.size);
        }
        c.finish()
    }

    #[test]
    fn paths_leaving_the_compared_tree_are_reported_and_never_looked_at() {
        let base = tempfile::tempdir().unwrap();
        let (root, outside) = (base.path().join("root"), base.path().join("outside"));
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let secret = outside.join("secret");
        std::fs::write(&secret, b"not yours").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A symlink in the compared tree leading out of it, as a medium's earlier object
        // (or anyone) may have left there.
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        let absolute = secret.as_os_str().as_encoded_bytes().to_vec();
        let bad: [&[u8]; 5] =
            [&absolute, b"../outside/secret", b"dir/../../outside/secret", b"evil/secret", b"a\0b"];
        for path in bad {
            let diffs = compare(&root, &[crafted(path)]);
            assert_eq!(diffs.len(), 1, "{path:?}: {diffs:?}");
            let d = &diffs[0];
            assert!(d.contains("not compared") && d.contains("crafted"), "{path:?}: {d}");
            for leaked in ["size", "mode", "owner", "modification", "missing"] {
                assert!(!d.contains(leaked), "{path:?} was looked at: {d}");
            }
        }
    }

    #[test]
    fn paths_inside_the_tree_are_still_compared() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/f"), b"x").unwrap();
        let diffs = compare(root, &[crafted(b"dir/f"), crafted(b"dir/gone")]);
        assert!(diffs.iter().any(|d| d.starts_with("dir/f: size 1 on disk")), "{diffs:?}");
        assert!(diffs.iter().any(|d| d.starts_with("dir/f: mode")), "{diffs:?}");
        assert!(diffs.iter().any(|d| d.starts_with("dir/gone: missing on disk")), "{diffs:?}");
    }
}
