//! Reading file trees for backup. [`TreeWalker`] lists a tree as the metadata coffer stores
//! ([`ObjectMeta`]), [`data_extents`] finds where a sparse file's data lies, and
//! [`changed_during_read`] tells whether a file changed while it was copied.
//!
//! # Invariants
//! - Order is deterministic: depth-first, a directory before its children, siblings sorted by
//!   name bytes. Two walks of an unchanged tree yield the same entries in the same order.
//! - Symbolic links below the root are never followed (lstat); the root itself is followed
//!   when it is a symbolic link to a directory.
//! - Every entry's metadata passes [`ObjectMeta`]'s `validate`.
//! - A regular file with more than one link is stored once: its first path is a `File`, later
//!   paths to the same (device, inode) are `Hardlink`s naming the first path.
//! - Memory is bounded: [`MAX_DEPTH`] directory levels, [`MAX_DIR_ENTRIES`] names per directory,
//!   [`MAX_HARDLINKS`] remembered link groups, [`MAX_EXTENTS`] extents per file.
//!
//! # Fault model
//! The tree changes while it is read: entries vanish, grow or are replaced, and some cannot be
//! read at all. A problem with one entry (vanished between listing and lstat, unreadable
//! directory, path over [`MAX_PATH_LEN`](crate::format::MAX_PATH_LEN) bytes, too deep) is a [`SourceProblem`]: the walk
//! reports it, skips the entry (and, for a directory, its contents) and goes on. Only a root
//! that cannot be read is fatal ([`SourceError`]). A file that changes while its data is read
//! is caught by comparing its metadata before and after ([`changed_during_read`]).

pub mod mode;
#[cfg(test)]
mod tests;
mod tree;

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::format::records::ObjectMeta;

pub use tree::{MAX_DEPTH, MAX_DIR_ENTRIES, MAX_HARDLINKS, TreeWalker, kind_of};

/// Most data extents [`data_extents`] reports for one file; past it, the rest of the file is
/// one extent (its holes are then read as zeros).
pub const MAX_EXTENTS: usize = 4096;
const _: () = assert!(MAX_EXTENTS >= 2);

/// One object of a walked tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Metadata as stored on media. The path is relative to the walk root, as raw bytes joined
    /// by '/', without a leading '/'; the root directory itself is ".", and a root that is not
    /// a directory is named by its file name. `size` is 0 for kinds without data and `rdev` 0
    /// for everything but device nodes.
    pub meta: ObjectMeta,
    /// Path to open to read the object (the walk root joined with the relative path).
    pub source: PathBuf,
    /// Device the object lives on (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub ino: u64,
    /// Bytes actually allocated (`st_blocks * 512`): less than `meta.size` means the file may
    /// be sparse, and [`data_extents`] is worth asking.
    pub allocated: u64,
    /// Set when a multi-device plan placed this entry: its object id, fixed in advance so that
    /// every stream agrees, and the segment of the file to read when it was split.
    pub placed: Option<Placed>,
}

/// Where a multi-device plan put an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Object id in the session.
    pub id: u64,
    /// The piece of the file to read, when the file was split across devices.
    pub segment: Option<SegmentOf>,
}

/// One segment of a split file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentOf {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Segment number, from 0, by offset.
    pub index: u32,
    /// Segments the file was split into.
    pub count: u32,
}

/// How to walk a tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Do not descend into directories on another device than the root (the mount-point
    /// directory itself is still listed).
    pub one_file_system: bool,
}

/// A non-fatal problem with one entry: it was skipped and the walk went on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("skipped {}: {what}", .path.display())]
pub struct SourceProblem {
    /// Path of the entry (under the walk root).
    pub path: PathBuf,
    /// What went wrong, for people.
    pub what: String,
}

/// Why a tree cannot be walked at all: its root is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The root does not exist.
    #[error("backup source {} does not exist: check the job's source path", .path.display())]
    RootMissing {
        /// The root asked for.
        path: PathBuf,
        /// What lstat said.
        source: io::Error,
    },
    /// The root exists but its metadata or (for a directory) its listing cannot be read.
    #[error(
        "cannot read backup source {}: {source}; check that it exists and coffer may read it",
        .path.display()
    )]
    RootUnreadable {
        /// The root asked for.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Ranges `(offset, len)` of `file` that hold data, in order, within its first `size` bytes,
/// found with `lseek(SEEK_DATA / SEEK_HOLE)`; everything else reads as zeros. A file that is
/// all hole has no extents; a file system without `SEEK_DATA` yields one extent for the whole
/// file. At most [`MAX_EXTENTS`] extents: the last one then runs to `size`. Leaves the file
/// offset at 0.
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    extents_bounded(file, size, MAX_EXTENTS)
}

fn extents_bounded(file: &File, size: u64, max: usize) -> io::Result<Vec<(u64, u64)>> {
    assert!(max >= 2, "an extent limit below 2 cannot describe a hole");
    let mut extents = Vec::new();
    let mut offset = 0;
    // Each turn pushes an extent or stops, so the loop runs at most `max` times.
    while offset < size {
        let data = match seek(file, offset, libc::SEEK_DATA) {
            Ok(data) => data,
            // No data from `offset` to the end of the file.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if offset == 0 && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                extents.push((0, size));
                break;
            }
            Err(e) => return Err(e),
        };
        if data >= size {
            break;
        }
        let hole = match seek(file, data, libc::SEEK_HOLE) {
            Ok(hole) => hole.min(size),
            // Truncated between the two calls: nothing left to read.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) => return Err(e),
        };
        // A hole at the data offset means the file changed under us: read the rest whole.
        if extents.len() + 1 == max || hole <= data {
            extents.push((data, size - data));
            break;
        }
        extents.push((data, hole - data));
        offset = hole;
    }
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    Ok(extents)
}

/// `lseek(2)` with a `whence` std does not offer.
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    // SAFETY: lseek takes only integers; the descriptor belongs to `file`, which is borrowed
    // for the whole call, so it stays open.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as u64)
}

/// Whether a file changed between the walk that listed it (`before`) and `after` (metadata
/// taken once the file is open, and again once its data is read): a different inode, size or
/// modification time. Meant for `File` entries.
pub fn changed_during_read(before: &TreeEntry, after: &Metadata) -> bool {
    after.dev() != before.dev
        || after.ino() != before.ino
        || after.size() != before.meta.size
        || after.mtime() != before.meta.mtime
        || after.mtime_nsec() != i64::from(before.meta.mtime_nsec)
}
