//! The walker: an explicit stack of directory frames, one per level below the root, each
//! listing its directory lazily (when its first child is wanted), sorted by name bytes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, FileType, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_bytes::ByteBuf;

use super::{SourceError, SourceProblem, TreeEntry, WalkOptions};
use crate::format::MAX_PATH_LEN;
use crate::format::records::{ObjectKind, ObjectMeta, Payload};

/// Deepest level listed below the root (the root's children are level 1); the contents of a
/// directory at this level are skipped with a [`SourceProblem`].
pub const MAX_DEPTH: usize = 1024;
/// Most names one directory may hold: a directory's names are held in memory to be sorted. A
/// larger directory's contents are skipped with a [`SourceProblem`].
pub const MAX_DIR_ENTRIES: usize = 1 << 22;
/// Most hard-link groups remembered at once (a group is forgotten once all its links were
/// seen). Past it, further multiply-linked files are stored as separate files: larger, still
/// correct.
pub const MAX_HARDLINKS: usize = 1 << 20;

/// A directory being listed.
struct Frame {
    /// Its path relative to the root.
    rel: Vec<u8>,
    /// Its path under the root.
    abs: PathBuf,
    /// Names not yet visited, in order; `None` until the directory has been listed.
    names: Option<std::vec::IntoIter<OsString>>,
}

/// A multiply-linked file seen once.
struct LinkGroup {
    /// Path of its first link, the one stored as a `File`.
    first: Vec<u8>,
    /// Links not seen yet.
    unseen: u64,
}

/// Lists a tree in coffer's order; see the module docs. Yields `Err` for entries that were
/// skipped; the walk goes on after them.
pub struct TreeWalker {
    opts: WalkOptions,
    root_dev: u64,
    max_depth: usize,
    /// The root's entry, yielded first.
    first: Option<TreeEntry>,
    /// One frame per directory level being listed; at most `max_depth` frames.
    stack: Vec<Frame>,
    /// Multiply-linked files seen, by (device, inode); at most [`MAX_HARDLINKS`].
    links: HashMap<(u64, u64), LinkGroup>,
}

impl std::fmt::Debug for TreeWalker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeWalker")
            .field("opts", &self.opts)
            .field("depth", &self.stack.len())
            .field("link_groups", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl TreeWalker {
    /// Starts a walk at `root`: reads its metadata and, for a directory, lists it, so a missing
    /// or unreadable root fails here rather than half-way.
    pub fn new(root: &Path, opts: WalkOptions) -> Result<TreeWalker, SourceError> {
        Self::with_max_depth(root, opts, MAX_DEPTH)
    }

    /// [`TreeWalker::new`] with another depth limit (tests use a small one).
    pub(crate) fn with_max_depth(
        root: &Path,
        opts: WalkOptions,
        max_depth: usize,
    ) -> Result<TreeWalker, SourceError> {
        assert!((1..=MAX_DEPTH).contains(&max_depth), "depth limit out of range");
        let unreadable = |source| SourceError::RootUnreadable { path: root.to_path_buf(), source };
        let md = root_metadata(root)?;
        let mut walker = TreeWalker {
            opts,
            root_dev: md.dev(),
            max_depth,
            first: None,
            stack: Vec::new(),
            links: HashMap::new(),
        };
        let rel = if md.is_dir() {
            b".".to_vec()
        } else {
            let name = root.file_name().ok_or_else(|| {
                unreadable(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))
            })?;
            name.as_bytes().to_vec()
        };
        let entry =
            walker.entry(rel, root.to_path_buf(), &md).map_err(|p| unreadable(io::Error::other(p.what)))?;
        if md.is_dir() {
            let names = read_names(root).map_err(unreadable)?;
            walker.stack.push(Frame {
                rel: entry.meta.path.clone(),
                abs: root.to_path_buf(),
                names: Some(names.into_iter()),
            });
        }
        walker.first = Some(entry);
        Ok(walker)
    }

    /// Reads one child's metadata and, for a directory to descend into, pushes its frame.
    fn visit(&mut self, rel: Vec<u8>, abs: PathBuf) -> Result<TreeEntry, SourceProblem> {
        if rel.len() > MAX_PATH_LEN {
            let what = format!("its path is longer than {MAX_PATH_LEN} bytes");
            return Err(problem(abs, what));
        }
        let md = match fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(problem(abs, "vanished after its directory was listed"));
            }
            Err(e) => return Err(problem(abs, format!("cannot read its metadata: {e}"))),
        };
        let entry = self.entry(rel, abs, &md)?;
        let same_fs = !self.opts.one_file_system || md.dev() == self.root_dev;
        if entry.meta.kind == ObjectKind::Dir && same_fs {
            self.stack.push(Frame { rel: entry.meta.path.clone(), abs: entry.source.clone(), names: None });
        }
        Ok(entry)
    }

    /// Builds the entry of an object from its metadata.
    fn entry(&mut self, rel: Vec<u8>, abs: PathBuf, md: &Metadata) -> Result<TreeEntry, SourceProblem> {
        let Some(kind) = kind_of(md.file_type()) else {
            return Err(problem(abs, "unknown file type"));
        };
        let Some(mtime_nsec) = u32::try_from(md.mtime_nsec()).ok().filter(|n| *n < 1_000_000_000) else {
            return Err(problem(abs, "the file system reports an impossible mtime"));
        };
        let symlink = match kind {
            ObjectKind::Symlink => Some(read_target(&abs)?),
            _ => None,
        };
        let mut meta = ObjectMeta {
            path: rel,
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            mtime_nsec,
            size: if kind == ObjectKind::File { md.size() } else { 0 },
            rdev: match kind {
                ObjectKind::CharDevice | ObjectKind::BlockDevice => md.rdev(),
                _ => 0,
            },
            symlink,
            hardlink: None,
        };
        if kind == ObjectKind::File
            && md.nlink() > 1
            && let Some(first) = self.link_seen(md, &meta.path)
        {
            meta.kind = ObjectKind::Hardlink;
            meta.size = 0;
            meta.hardlink = Some(ByteBuf::from(first));
        }
        let valid = meta.validate();
        assert!(valid.is_ok(), "walker built invalid metadata for {}: {valid:?}", abs.display());
        Ok(TreeEntry {
            meta,
            source: abs,
            dev: md.dev(),
            ino: md.ino(),
            allocated: md.blocks().saturating_mul(512),
            placed: None,
        })
    }

    /// Notes one link of a multiply-linked file: the first link's path when this inode was
    /// seen before, `None` when this is its first link.
    fn link_seen(&mut self, md: &Metadata, path: &[u8]) -> Option<Vec<u8>> {
        let key = (md.dev(), md.ino());
        if let Some(group) = self.links.get_mut(&key) {
            group.unseen = group.unseen.saturating_sub(1);
            if group.unseen > 0 {
                return Some(group.first.clone());
            }
            return self.links.remove(&key).map(|g| g.first);
        }
        if self.links.len() < MAX_HARDLINKS {
            let group = LinkGroup { first: path.to_vec(), unseen: md.nlink() - 1 };
            self.links.insert(key, group);
        }
        None
    }
}

impl Iterator for TreeWalker {
    type Item = Result<TreeEntry, SourceProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        // Each turn yields an entry or pops a frame, and frames are only pushed by yielding a
        // directory: the loop ends.
        loop {
            let depth = self.stack.len();
            let top = self.stack.last_mut()?;
            if top.names.is_none() {
                match list_dir(&top.abs, depth, self.max_depth) {
                    Ok(names) => top.names = Some(names.into_iter()),
                    Err(p) => {
                        self.stack.pop();
                        return Some(Err(p));
                    }
                }
            }
            let Some(name) = top.names.as_mut().and_then(Iterator::next) else {
                self.stack.pop();
                continue;
            };
            let rel = join_rel(&top.rel, name.as_bytes());
            let abs = top.abs.join(&name);
            return Some(self.visit(rel, abs));
        }
    }
}

/// The root's metadata: lstat, followed when the root is a symbolic link to a directory.
fn root_metadata(root: &Path) -> Result<Metadata, SourceError> {
    let md = fs::symlink_metadata(root).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SourceError::RootMissing { path: root.to_path_buf(), source },
        _ => SourceError::RootUnreadable { path: root.to_path_buf(), source },
    })?;
    if md.file_type().is_symlink()
        && let Ok(target) = fs::metadata(root)
        && target.is_dir()
    {
        return Ok(target);
    }
    Ok(md)
}

/// Lists the directory whose children are at `depth`, or says why its contents are skipped.
fn list_dir(abs: &Path, depth: usize, max_depth: usize) -> Result<Vec<OsString>, SourceProblem> {
    let names = read_names(abs).map_err(|e| {
        let what = format!("cannot list the directory ({e}): its contents were skipped");
        problem(abs.to_path_buf(), what)
    })?;
    if !names.is_empty() && depth > max_depth {
        let what = format!("its contents are over {max_depth} levels deep and were skipped");
        return Err(problem(abs.to_path_buf(), what));
    }
    Ok(names)
}

/// A directory's names, sorted by bytes; at most [`MAX_DIR_ENTRIES`].
fn read_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if names.len() == MAX_DIR_ENTRIES {
            let what = format!("the directory holds more than {MAX_DIR_ENTRIES} entries");
            return Err(io::Error::other(what));
        }
        names.push(entry?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A symbolic link's target, as bytes.
fn read_target(abs: &Path) -> Result<ByteBuf, SourceProblem> {
    let target = fs::read_link(abs).map_err(|e| {
        let what = match e.kind() {
            io::ErrorKind::NotFound => "vanished after its directory was listed".to_string(),
            _ => format!("cannot read the link's target: {e}"),
        };
        problem(abs.to_path_buf(), what)
    })?;
    let bytes = target.into_os_string().into_vec();
    if bytes.is_empty() || bytes.len() > MAX_PATH_LEN {
        let what = format!("its link target is empty or longer than {MAX_PATH_LEN} bytes");
        return Err(problem(abs.to_path_buf(), what));
    }
    Ok(ByteBuf::from(bytes))
}

/// The kind of object a file type is (`None` for types coffer does not know).
pub fn kind_of(ft: FileType) -> Option<ObjectKind> {
    let kind = if ft.is_file() {
        ObjectKind::File
    } else if ft.is_dir() {
        ObjectKind::Dir
    } else if ft.is_symlink() {
        ObjectKind::Symlink
    } else if ft.is_fifo() {
        ObjectKind::Fifo
    } else if ft.is_char_device() {
        ObjectKind::CharDevice
    } else if ft.is_block_device() {
        ObjectKind::BlockDevice
    } else if ft.is_socket() {
        ObjectKind::Socket
    } else {
        return None;
    };
    Some(kind)
}

/// A child's relative path: the root's children are named by their names alone.
fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent == b"." {
        return name.to_vec();
    }
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    rel.extend_from_slice(parent);
    rel.push(b'/');
    rel.extend_from_slice(name);
    rel
}

fn problem(path: PathBuf, what: impl Into<String>) -> SourceProblem {
    SourceProblem { path, what: what.into() }
}
