//! `verify --compare DIR`: checks objects read back against the files in a directory (seed
//! 001's compare): kind, size, permissions, owner, modification time, link targets, contents.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::restore::under;
use crate::format::records::{ObjectKind, ObjectMeta};

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
        let path = under(&self.root, &meta.path);
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
            match File::open(&path) {
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
