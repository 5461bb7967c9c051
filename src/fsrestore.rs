//! Recreating backed-up objects on a file system: [`FsRestorer`] turns each [`ObjectMeta`] of a
//! session back into a file, directory, link or node under a restore root.
//!
//! # Order
//! Objects come in session order (the walker's: a directory before its contents). A regular
//! file is created empty with mode 0600; the caller writes its data at offsets (unwritten
//! ranges stay holes) and hands it to [`FsRestorer::finish_file`], which sets size, owner,
//! mode and mtime, in that order (chown clears setuid bits, and every write moves mtime).
//! Directories are created with mode 0700 and get their metadata in [`FsRestorer::finish`],
//! deepest first: filling a directory moves its mtime, and a read-only directory must stay
//! writable until its contents are in. Links and nodes get theirs at once. Sockets are
//! counted and skipped: a live socket cannot be restored.
//!
//! # Fault model
//! Media may be damaged or crafted. A path could try to climb out of the restore root
//! (`../x`, `/etc/x`), or to write through a symbolic link an earlier object planted
//! (`evil -> /etc`, then `evil/passwd`). So before anything is created:
//! - every path (and hard-link target) must be relative, at most
//!   [`MAX_PATH_LEN`](crate::format::MAX_PATH_LEN) bytes, without NUL, empty, `.` or `..`
//!   components (`.` alone names the root, which only a directory may be);
//! - every existing parent component is checked with lstat and must be a real directory, not
//!   a symbolic link (missing ones are created with the default mode);
//! - the last component is never followed: an existing non-directory there is unlinked and the
//!   object created afresh (`O_CREAT|O_EXCL|O_NOFOLLOW` for files), so neither a planted
//!   symbolic link nor a hard link to a file elsewhere can redirect a write.
//!
//! The restore root itself may be a symbolic link only if the caller owns it: one planted by
//! another user (a restore into a shared `/tmp`) is refused before anything is created.
//!
//! Checks and creation are separate system calls: the restore target is assumed to be changed
//! by this restore alone while it runs. Changing ownership needs root: without it, `EPERM`
//! (and `EINVAL` for ids unmapped in a user namespace) are counted in
//! [`RestoreSummary::ownership_failures`], not fatal.

#[cfg(test)]
mod tests;

use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::format::MAX_PATH_LEN;
use crate::format::records::{ObjectKind, ObjectMeta, Payload};

/// Mode of a directory between its creation and [`FsRestorer::finish`].
const DIR_MODE_WHILE_RESTORING: u32 = 0o700;
/// Mode of a regular file between its creation and [`FsRestorer::finish_file`].
const FILE_MODE_WHILE_RESTORING: u32 = 0o600;
/// Permission bits restored from `st_mode` (the type bits come from the object's kind).
const PERMISSION_BITS: u32 = 0o7777;

/// Why an object could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The restore root cannot be created or used.
    #[error(
        "cannot use restore target {}: {source}; check that it is a directory coffer may write",
        .path.display()
    )]
    Root {
        /// The restore root.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The restore root is a symbolic link another user owns: whoever could write its parent
    /// (a shared `/tmp`) may have planted it to send the restore elsewhere; nothing was created.
    #[error(
        "refused to restore into {}: it is a symbolic link owned by uid {owner}, not by you \
         (uid {me}), so someone else may have planted it; name the real directory instead",
        .path.display()
    )]
    ForeignSymlinkRoot {
        /// The restore root as given.
        path: PathBuf,
        /// The link's owner.
        owner: u32,
        /// This process's effective user.
        me: u32,
    },
    /// A path (or hard-link target) that could leave the restore root; nothing was created.
    #[error(
        "refused to restore \"{}\": {reason}; the backup media is damaged or was crafted",
        .path.escape_ascii()
    )]
    UnsafePath {
        /// The path as stored on media.
        path: Vec<u8>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Metadata that breaks the format's rules; nothing was created.
    #[error(
        "refused to restore \"{}\": {what}; the backup media is damaged or was crafted",
        .path.escape_ascii()
    )]
    Invalid {
        /// The path as stored on media.
        path: Vec<u8>,
        /// The rule broken.
        what: &'static str,
    },
    /// A directory stands where a non-directory is to be restored.
    #[error(
        "cannot restore {}: a directory is in the way; restore into an empty target or move it",
        .path.display()
    )]
    Conflict {
        /// Where the object was to go.
        path: PathBuf,
    },
    /// Creating the object (or a parent directory, or writing its size) failed.
    #[error(
        "could not create {}: {source}; check free space and permissions of the restore target",
        .path.display()
    )]
    Create {
        /// What was being created.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Setting owner, mode or times failed (lack of privilege to chown is not an error).
    #[error("could not set owner, mode or times of {}: {source}", .path.display())]
    Metadata {
        /// The object.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A hard link whose target is missing: the file it names was not restored first.
    #[error(
        "cannot link {} to {}: {source}; the file it names must be restored first (restore it \
         too, or the whole session)",
        .path.display(), .target.display()
    )]
    HardlinkTarget {
        /// The link to create.
        path: PathBuf,
        /// The file it names.
        target: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// An object kind that is not restored to a directory tree.
    #[error(
        "\"{}\" is a {kind:?} object, not a file: restore it to a device instead",
        .path.escape_ascii()
    )]
    Unsupported {
        /// The path as stored on media.
        path: Vec<u8>,
        /// Its kind.
        kind: ObjectKind,
    },
}

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Directories created or reused.
    pub dirs: u64,
    /// Regular files finished.
    pub files: u64,
    /// Symbolic and hard links created.
    pub links: u64,
    /// FIFOs and device nodes created.
    pub specials: u64,
    /// Sockets skipped.
    pub skipped_sockets: u64,
    /// Objects whose owner could not be set for lack of privilege.
    pub ownership_failures: u64,
}

/// Recreates objects under a restore root; see the module docs.
#[derive(Debug)]
pub struct FsRestorer {
    root: PathBuf,
    /// Directories whose metadata [`FsRestorer::finish`] applies; one per directory restored.
    dirs: Vec<ObjectMeta>,
    summary: RestoreSummary,
    /// Parent (relative path) checked by the last call: consecutive objects mostly share one,
    /// and a checked directory stays one (this restorer only ever replaces non-directories).
    checked_parent: Option<Vec<u8>>,
    /// Whether that parent may hand its group to new files (set-group-ID, or not looked at).
    parent_setgid: bool,
    /// Owner new files get: this process's effective user and group.
    me: (u32, u32),
    /// This process's umask, which trims the mode new files are created with.
    umask: u32,
}

impl FsRestorer {
    /// Restores under `root`, created (with its parents) if missing.
    pub fn new(root: &Path) -> Result<FsRestorer, RestoreError> {
        let fail = |source| RestoreError::Root { path: root.to_path_buf(), source };
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let me = unsafe { (libc::geteuid(), libc::getegid()) };
        // Canonicalising follows a symlink at the root: only one the caller made is trusted.
        // (Components drop a trailing '/', through which lstat would follow the link.)
        let given: PathBuf = root.components().collect();
        if let Ok(md) = fs::symlink_metadata(&given)
            && md.file_type().is_symlink()
            && md.uid() != me.0
        {
            return Err(RestoreError::ForeignSymlinkRoot {
                path: root.to_path_buf(),
                owner: md.uid(),
                me: me.0,
            });
        }
        fs::create_dir_all(root).map_err(fail)?;
        let root = fs::canonicalize(root).map_err(fail)?;
        if !fs::metadata(&root).map_err(fail)?.is_dir() {
            return Err(fail(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let umask = process_umask();
        Ok(FsRestorer {
            root,
            dirs: Vec::new(),
            summary: RestoreSummary::default(),
            checked_parent: None,
            parent_setgid: true,
            me,
            umask,
        })
    }

    /// Creates the object `meta` names (its path relative to the root; "." is the root). For
    /// a `File`, returns it open for writing, empty and with mode 0600: write its data at its
    /// offsets, then call [`FsRestorer::finish_file`]. Directories get their metadata in
    /// [`FsRestorer::finish`]; links and nodes at once. A `Hardlink` needs its target restored
    /// already. Sockets are counted and skipped (`Ok(None)`).
    pub fn create(&mut self, meta: &ObjectMeta) -> Result<Option<File>, RestoreError> {
        let comps = components(&meta.path).map_err(|reason| unsafe_path(&meta.path, reason))?;
        if let Some(target) = &meta.hardlink {
            components(target).map_err(|reason| unsafe_path(target, reason))?;
        }
        meta.validate().map_err(|what| RestoreError::Invalid { path: meta.path.clone(), what })?;
        if comps.is_empty() && meta.kind != ObjectKind::Dir {
            return Err(unsafe_path(&meta.path, "only a directory can be the restore root"));
        }
        let path = self.checked_parent(&meta.path, &comps, true)?;
        let path = match comps.last() {
            Some(name) => path.join(OsStr::from_bytes(name)),
            None => path,
        };
        match meta.kind {
            ObjectKind::Dir => self.make_dir(&path, meta).map(|()| None),
            ObjectKind::File => make_file(&path).map(Some),
            ObjectKind::Symlink => self.make_symlink(&path, meta).map(|()| None),
            ObjectKind::Hardlink => self.make_hardlink(&path, meta).map(|()| None),
            ObjectKind::Fifo | ObjectKind::CharDevice | ObjectKind::BlockDevice => {
                self.make_node(&path, meta).map(|()| None)
            }
            ObjectKind::Socket => {
                self.summary.skipped_sockets += 1;
                Ok(None)
            }
            ObjectKind::Volume => Err(RestoreError::Unsupported { path: meta.path.clone(), kind: meta.kind }),
        }
    }

    /// Creates a regular file whose contents were already checked against their digest (a
    /// packed small file), with its final permissions at once when they are plain ones: what
    /// would be hidden behind mode 0600 until checked has been checked. Finish it with
    /// [`FsRestorer::finish_verified`].
    pub fn create_verified(&mut self, meta: &ObjectMeta) -> Result<File, RestoreError> {
        assert_eq!(meta.kind, ObjectKind::File, "only regular files are created verified");
        let comps = components(&meta.path).map_err(|reason| unsafe_path(&meta.path, reason))?;
        meta.validate().map_err(|what| RestoreError::Invalid { path: meta.path.clone(), what })?;
        let Some(name) = comps.last() else {
            return Err(unsafe_path(&meta.path, "only a directory can be the restore root"));
        };
        let path = self.checked_parent(&meta.path, &comps, true)?.join(OsStr::from_bytes(name));
        make_file_mode(&path, self.verified_mode(meta))
    }

    /// Mode a verified file is created with: its own when plain, else the restoring mode.
    fn verified_mode(&self, meta: &ObjectMeta) -> u32 {
        if meta.mode & 0o7000 == 0 { meta.mode & 0o777 } else { FILE_MODE_WHILE_RESTORING }
    }

    /// Finishes a file [`FsRestorer::create_verified`] returned: size if a trailing hole,
    /// owner and mode only where creation did not already give the right ones, mtime.
    pub fn finish_verified(&mut self, file: File, meta: &ObjectMeta, end: u64) -> Result<(), RestoreError> {
        let path = || self.root.join(OsStr::from_bytes(&meta.path));
        if end != meta.size {
            file.set_len(meta.size).map_err(|source| RestoreError::Create { path: path(), source })?;
        }
        let owned = (meta.uid, meta.gid) == self.me && !self.parent_setgid;
        let created = self.verified_mode(meta) & !self.umask;
        if !owned || created != meta.mode & PERMISSION_BITS {
            let p = path();
            return self.apply_metadata(&file, &p, meta).map(|()| self.summary.files += 1);
        }
        let failed = |source| RestoreError::Metadata { path: path(), source };
        let mtime = system_time(meta.mtime, meta.mtime_nsec).map_err(failed)?;
        file.set_times(FileTimes::new().set_modified(mtime)).map_err(failed)?;
        self.summary.files += 1;
        Ok(())
    }

    /// Finishes a file [`FsRestorer::create`] returned, once all its data is written: sets its
    /// size (keeping trailing holes), owner, mode and mtime.
    pub fn finish_file(&mut self, file: File, meta: &ObjectMeta) -> Result<(), RestoreError> {
        self.finish_written(file, meta, None)
    }

    /// [`FsRestorer::finish_file`] for a file whose data ends at `end` (the size is set only
    /// when it differs: a trailing hole).
    pub fn finish_written(
        &mut self,
        file: File,
        meta: &ObjectMeta,
        end: Option<u64>,
    ) -> Result<(), RestoreError> {
        let path = self.root.join(OsStr::from_bytes(&meta.path));
        if end != Some(meta.size) {
            file.set_len(meta.size).map_err(|source| RestoreError::Create { path: path.clone(), source })?;
        }
        self.apply_metadata(&file, &path, meta)?;
        self.summary.files += 1;
        Ok(())
    }

    /// Applies the directories' metadata, deepest first, and says what the restore did.
    pub fn finish(mut self) -> Result<RestoreSummary, RestoreError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|m| std::cmp::Reverse(depth(&m.path)));
        for meta in &dirs {
            let comps = components(&meta.path).map_err(|r| unsafe_path(&meta.path, r))?;
            let path = self.checked_parent(&meta.path, &comps, false)?;
            let path = match comps.last() {
                Some(name) => path.join(OsStr::from_bytes(name)),
                None => path,
            };
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|source| RestoreError::Metadata { path: path.clone(), source })?;
            self.apply_metadata(&dir, &path, meta)?;
        }
        Ok(self.summary)
    }

    /// Sets owner, then mode, then mtime of an open object.
    fn apply_metadata(&mut self, file: &File, path: &Path, meta: &ObjectMeta) -> Result<(), RestoreError> {
        let chown = std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid));
        self.ownership(chown, path)?;
        let failed = |source| RestoreError::Metadata { path: path.to_path_buf(), source };
        let mode = Permissions::from_mode(meta.mode & PERMISSION_BITS);
        file.set_permissions(mode).map_err(failed)?;
        let mtime = system_time(meta.mtime, meta.mtime_nsec).map_err(failed)?;
        file.set_times(FileTimes::new().set_modified(mtime)).map_err(failed)
    }

    /// Counts a chown refused for lack of privilege; other failures are errors.
    fn ownership(&mut self, result: io::Result<()>, path: &Path) -> Result<(), RestoreError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
                self.summary.ownership_failures += 1;
                Ok(())
            }
            Err(source) => Err(RestoreError::Metadata { path: path.to_path_buf(), source }),
        }
    }

    /// Checks every parent of `comps` (the components of `raw`) under the root is a real
    /// directory, creating missing ones when `create`, and returns the last parent's path.
    /// Missing parents without `create` are `Create` errors of kind `NotFound`.
    fn checked_parent(&mut self, raw: &[u8], comps: &[&[u8]], create: bool) -> Result<PathBuf, RestoreError> {
        let parents = &comps[..comps.len().saturating_sub(1)];
        let mut dir = self.root.clone();
        for name in parents {
            dir.push(OsStr::from_bytes(name));
        }
        let rel = parents.join(&b'/');
        if self.checked_parent.as_deref() == Some(&rel[..]) {
            return Ok(dir);
        }
        let mut cur = self.root.clone();
        // The root's own group bit is not looked at: assume the worst.
        self.parent_setgid = true;
        for name in parents {
            cur.push(OsStr::from_bytes(name));
            self.parent_setgid = true;
            match fs::symlink_metadata(&cur) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(unsafe_path(raw, "a parent directory is a symbolic link"));
                }
                Ok(md) if md.is_dir() => self.parent_setgid = md.mode() & libc::S_ISGID != 0,
                Ok(_) => return Err(create_error(&cur, libc::ENOTDIR)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    create_dir_racing(&DirBuilder::new(), &cur)
                        .map_err(|source| RestoreError::Create { path: cur.clone(), source })?;
                }
                Err(source) => return Err(RestoreError::Create { path: cur, source }),
            }
        }
        self.checked_parent = Some(rel);
        Ok(dir)
    }

    fn make_dir(&mut self, path: &Path, meta: &ObjectMeta) -> Result<(), RestoreError> {
        let mut builder = DirBuilder::new();
        builder.mode(DIR_MODE_WHILE_RESTORING);
        match fs::symlink_metadata(path) {
            // An existing directory (an earlier restore's) must take files until finish() gives
            // it its mode, even when that mode is read-only.
            Ok(md) if md.is_dir() => {
                if md.permissions().mode() & 0o700 != 0o700 {
                    fs::set_permissions(path, Permissions::from_mode(DIR_MODE_WHILE_RESTORING))
                        .map_err(|e| create_io(path, e))?;
                }
            }
            Ok(_) => {
                remove(path)?;
                builder.create(path).map_err(|e| create_io(path, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dir_racing(&builder, path).map_err(|e| create_io(path, e))?;
            }
            Err(e) => return Err(create_io(path, e)),
        }
        self.dirs.push(meta.clone());
        self.summary.dirs += 1;
        Ok(())
    }

    fn make_symlink(&mut self, path: &Path, meta: &ObjectMeta) -> Result<(), RestoreError> {
        let target = meta.symlink.as_ref().expect("validated: a symlink has a target");
        clear_last(path)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), path).map_err(|e| create_io(path, e))?;
        let chown = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid));
        self.ownership(chown, path)?;
        set_mtime_nofollow(path, meta.mtime, meta.mtime_nsec)
            .map_err(|source| RestoreError::Metadata { path: path.to_path_buf(), source })?;
        self.summary.links += 1;
        Ok(())
    }

    fn make_hardlink(&mut self, path: &Path, meta: &ObjectMeta) -> Result<(), RestoreError> {
        let raw = meta.hardlink.as_ref().expect("validated: a hard link has a target");
        let comps = components(raw).map_err(|reason| unsafe_path(raw, reason))?;
        let Some(name) = comps.last() else {
            return Err(unsafe_path(raw, "a hard link cannot name the restore root"));
        };
        let target = self.root.join(OsStr::from_bytes(raw));
        let missing = |source| RestoreError::HardlinkTarget {
            path: path.to_path_buf(),
            target: target.clone(),
            source,
        };
        let target_dir = self.checked_parent(raw, &comps, false).map_err(|e| match e {
            RestoreError::Create { source, .. } => missing(source),
            e => e,
        })?;
        let target_path = target_dir.join(OsStr::from_bytes(name));
        fs::symlink_metadata(&target_path).map_err(missing)?;
        clear_last(path)?;
        // linkat without AT_SYMLINK_FOLLOW: a target that is a symlink is linked, not followed.
        fs::hard_link(&target_path, path).map_err(missing)?;
        self.summary.links += 1;
        Ok(())
    }

    fn make_node(&mut self, path: &Path, meta: &ObjectMeta) -> Result<(), RestoreError> {
        let kind_bits = match meta.kind {
            ObjectKind::Fifo => libc::S_IFIFO,
            ObjectKind::CharDevice => libc::S_IFCHR,
            ObjectKind::BlockDevice => libc::S_IFBLK,
            kind => unreachable!("{kind:?} is not a node"),
        };
        clear_last(path)?;
        mknod(path, kind_bits | (meta.mode & PERMISSION_BITS), meta.rdev).map_err(|e| create_io(path, e))?;
        let chown = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid));
        self.ownership(chown, path)?;
        let failed = |source| RestoreError::Metadata { path: path.to_path_buf(), source };
        // Follows a symlink at `path`, but the node was created just above.
        let mode = Permissions::from_mode(meta.mode & PERMISSION_BITS);
        fs::set_permissions(path, mode).map_err(failed)?;
        set_mtime_nofollow(path, meta.mtime, meta.mtime_nsec).map_err(failed)?;
        self.summary.specials += 1;
        Ok(())
    }
}

/// Where the object a medium names by `raw` lies under `root`, by the same rules restore
/// applies before creating anything: the path must be relative, without `.` or `..` components
/// (`components`, which restore uses too), and no existing parent under `root` may be a
/// symbolic link (else `evil -> /etc` then `evil/shadow` would reach out).
/// The last component is not followed here; callers lstat it. Missing parents are not an error:
/// the object is then simply not there. The error says why the path was refused. For readers
/// of a tree a medium names (`verify --compare`), which must never look outside it.
pub fn checked_path_under(root: &Path, raw: &[u8]) -> Result<PathBuf, &'static str> {
    let comps = components(raw)?;
    let mut cur = root.to_path_buf();
    for (i, name) in comps.iter().enumerate() {
        cur.push(OsStr::from_bytes(name));
        let is_parent = i + 1 < comps.len();
        if is_parent && fs::symlink_metadata(&cur).is_ok_and(|md| md.file_type().is_symlink()) {
            return Err("a parent directory is a symbolic link");
        }
    }
    Ok(cur)
}

/// Splits a stored path into its components, refusing anything that could leave the root.
/// "." is the root itself: no components.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if path == b"." {
        return Ok(Vec::new());
    }
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err("path empty or longer than 4096 bytes");
    }
    if path.contains(&0) {
        return Err("path holds a NUL byte");
    }
    if path[0] == b'/' {
        return Err("path is absolute");
    }
    let comps: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    for c in &comps {
        match *c {
            b"" => return Err("path has an empty component"),
            b"." => return Err("path has a '.' component"),
            b".." => return Err("path has a '..' component"),
            _ => {}
        }
    }
    Ok(comps)
}

/// Levels below the root ("." is 0).
fn depth(path: &[u8]) -> usize {
    if path == b"." {
        return 0;
    }
    path.iter().filter(|b| **b == b'/').count() + 1
}

/// Creates a regular file that did not exist, replacing any non-directory at `path`.
fn make_file(path: &Path) -> Result<File, RestoreError> {
    make_file_mode(path, FILE_MODE_WHILE_RESTORING)
}

/// The process's umask, read once. Linux shows it in `/proc/self/status` (4.7 and later),
/// which reads it without changing it: the umask(2) way (set, then put back) races with every
/// thread creating a file meanwhile, and with another restorer doing the same, which can leave
/// the process's umask at the value set for good (restore workers start together: files came
/// out 0600 and were taken to have their mode already).
fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status").ok().and_then(|s| parse_umask(&s)).unwrap_or_else(|| {
            // SAFETY: umask has no preconditions and cannot fail; the old value is put back at
            // once (only without /proc, and only once per process).
            unsafe {
                let old = libc::umask(0o077);
                libc::umask(old);
                old as u32
            }
        })
    })
}

/// The `Umask:` line of `/proc/self/status` (octal).
fn parse_umask(status: &str) -> Option<u32> {
    let v = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(v.trim(), 8).ok().filter(|&m| m <= 0o777)
}

/// Creates a new regular file with `mode` (trimmed by the umask), replacing any non-directory.
fn make_file_mode(path: &Path, mode: u32) -> Result<File, RestoreError> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    // Restoring into an empty directory is the common case: try first, clear only if needed.
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_last(path)?;
            open().map_err(|e| create_io(path, e))
        }
        r => r.map_err(|e| create_io(path, e)),
    }
}

/// Unlinks a non-directory at `path` (never following it) so a new object can take its place.
fn clear_last(path: &Path) -> Result<(), RestoreError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Err(RestoreError::Conflict { path: path.to_path_buf() }),
        Ok(_) => remove(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(create_io(path, e)),
    }
}

fn remove(path: &Path) -> Result<(), RestoreError> {
    fs::remove_file(path).map_err(|e| create_io(path, e))
}

/// A time as stored (seconds and nanoseconds since the epoch, seconds possibly negative).
fn system_time(secs: i64, nsec: u32) -> io::Result<SystemTime> {
    let whole = Duration::from_secs(secs.unsigned_abs());
    let base = if secs >= 0 { UNIX_EPOCH.checked_add(whole) } else { UNIX_EPOCH.checked_sub(whole) };
    base.and_then(|t| t.checked_add(Duration::from_nanos(nsec.into())))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mtime out of range"))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// `mknod(2)`: std cannot make FIFOs or device nodes.
fn mknod(path: &Path, mode: libc::mode_t, rdev: libc::dev_t) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; the rest are integers.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, rdev) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the mtime of `path` itself, not of what a symbolic link there names (std has no
/// `lutimes`); the access time is left alone.
fn set_mtime_nofollow(path: &Path, secs: i64, nsec: u32) -> io::Result<()> {
    let c = c_path(path)?;
    let omit = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT };
    let mtime = libc::timespec { tv_sec: secs, tv_nsec: libc::c_long::from(nsec) };
    let times = [omit, mtime];
    // SAFETY: `c` is a NUL-terminated string and `times` an array of two timespecs, both alive
    // for the whole call; utimensat only reads them.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unsafe_path(path: &[u8], reason: &'static str) -> RestoreError {
    RestoreError::UnsafePath { path: path.to_vec(), reason }
}

fn create_io(path: &Path, source: io::Error) -> RestoreError {
    RestoreError::Create { path: path.to_path_buf(), source }
}

fn create_error(path: &Path, errno: i32) -> RestoreError {
    create_io(path, io::Error::from_raw_os_error(errno))
}

/// Creates a directory that another restore thread may be creating at the same moment (as
/// the parent of a file it restores): a directory already there is what was wanted.
fn create_dir_racing(builder: &DirBuilder, path: &Path) -> io::Result<()> {
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => Ok(()),
            _ => Err(e),
        },
        r => r,
    }
}
