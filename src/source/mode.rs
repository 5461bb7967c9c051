//! Choosing between file mode and volume mode (seed 004): a block device is read as a volume;
//! a tree is read file by file, unless `auto` finds that it is the whole file system of a block
//! device holding more files than the threshold, where reading the device is faster.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Default file count above which `auto` prefers volume mode (seed 004).
pub const DEFAULT_FILE_THRESHOLD: u64 = 100_000;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestedMode {
    /// Decide per source.
    Auto,
    /// Read files.
    Files,
    /// Read the volume.
    Volume,
}

/// What a source path is, as far as the choice goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A block device.
    BlockDevice,
    /// A regular file (an image in volume mode, a single file in file mode).
    File,
    /// A directory; when it is the root of a file system on a block device, that device and
    /// the number of files (inodes in use) on it.
    Dir {
        /// The device the directory is the root of.
        device: Option<PathBuf>,
        /// Inodes in use on its file system.
        files: u64,
    },
    /// Anything else (a fifo, a socket...): cannot be backed up as a source root.
    Other,
}

/// How one source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// File by file.
    Files,
    /// As a raw volume at this path.
    Volume(PathBuf),
}

/// The choice (pure): `Err` says why the request cannot be met.
pub fn choose(path: &Path, kind: &SourceKind, req: RequestedMode, threshold: u64) -> Result<Chosen, String> {
    match (kind, req) {
        (SourceKind::Other, _) => {
            Err(format!("{} is neither a file, a directory nor a block device", path.display()))
        }
        (SourceKind::BlockDevice, RequestedMode::Files) => Err(format!(
            "{} is a block device: back up the directory it is mounted on, or use --mode volume",
            path.display()
        )),
        (SourceKind::BlockDevice, _) => Ok(Chosen::Volume(path.to_owned())),
        (SourceKind::File, RequestedMode::Volume) => Ok(Chosen::Volume(path.to_owned())),
        (SourceKind::File, _) => Ok(Chosen::Files),
        (SourceKind::Dir { device: Some(dev), .. }, RequestedMode::Volume) => Ok(Chosen::Volume(dev.clone())),
        (SourceKind::Dir { device: None, .. }, RequestedMode::Volume) => Err(format!(
            "{} is not the root of a file system on a block device: there is no volume to read",
            path.display()
        )),
        (SourceKind::Dir { device: Some(dev), files }, RequestedMode::Auto) if *files > threshold => {
            Ok(Chosen::Volume(dev.clone()))
        }
        (SourceKind::Dir { .. }, _) => Ok(Chosen::Files),
    }
}

/// Looks at a source path.
pub fn probe(path: &Path) -> std::io::Result<SourceKind> {
    let md = std::fs::metadata(path)?;
    let ft = md.file_type();
    Ok(if ft.is_block_device() {
        SourceKind::BlockDevice
    } else if ft.is_file() {
        SourceKind::File
    } else if ft.is_dir() {
        let canonical = std::fs::canonicalize(path)?;
        let device = mount_device(&canonical);
        SourceKind::Dir { device, files: used_inodes(&canonical).unwrap_or(0) }
    } else {
        SourceKind::Other
    })
}

/// The block device mounted exactly at `dir`, from /proc/self/mountinfo.
fn mount_device(dir: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = dir.to_str()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        let (mount_point, source) = (fields.get(4)?, fields.get(sep + 2)?);
        let dev = PathBuf::from(source);
        let is_block = std::fs::metadata(&dev).is_ok_and(|m| m.file_type().is_block_device());
        (*mount_point == dir && is_block).then_some(dev)
    })
}

/// Inodes in use on the file system holding `dir`.
fn used_inodes(dir: &Path) -> Option<u64> {
    let st = statvfs(dir)?;
    Some(st.f_files.saturating_sub(st.f_ffree))
}

/// The file system statistics of the file system holding `path`.
pub(crate) fn statvfs(path: &Path) -> Option<libc::statvfs> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zeroed is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_file_count_only_where_a_volume_exists() {
        let p = Path::new("/srv");
        let dev = || Some(PathBuf::from("/dev/sdb1"));
        let many = SourceKind::Dir { device: dev(), files: 200_000 };
        let few = SourceKind::Dir { device: dev(), files: 10 };
        let no_dev = SourceKind::Dir { device: None, files: 5_000_000 };
        let t = DEFAULT_FILE_THRESHOLD;
        assert_eq!(choose(p, &many, RequestedMode::Auto, t), Ok(Chosen::Volume("/dev/sdb1".into())));
        assert_eq!(choose(p, &few, RequestedMode::Auto, t), Ok(Chosen::Files));
        assert_eq!(choose(p, &no_dev, RequestedMode::Auto, t), Ok(Chosen::Files));
        assert!(choose(p, &no_dev, RequestedMode::Volume, t).is_err());
        assert_eq!(choose(p, &many, RequestedMode::Files, t), Ok(Chosen::Files));
        assert_eq!(choose(p, &SourceKind::BlockDevice, RequestedMode::Auto, t), Ok(Chosen::Volume(p.into())));
        assert!(choose(p, &SourceKind::BlockDevice, RequestedMode::Files, t).is_err());
        assert_eq!(choose(p, &SourceKind::File, RequestedMode::Volume, t), Ok(Chosen::Volume(p.into())));
        assert!(choose(p, &SourceKind::Other, RequestedMode::Auto, t).is_err());
    }

    #[test]
    fn probe_sees_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(probe(&f).unwrap(), SourceKind::File);
        assert!(matches!(probe(d.path()).unwrap(), SourceKind::Dir { .. }));
        assert!(probe(&d.path().join("missing")).is_err());
    }
}
