//! The production journal storage: files in a directory, read and written through io_uring,
//! made durable with `fdatasync`; directory changes made durable with an `fsync` of the
//! directory itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Dir, Storage};
use crate::uring::Ring;

/// A journal directory on a real file system.
#[derive(Debug, Clone)]
pub struct UringDir {
    path: PathBuf,
    ring: Arc<Mutex<Ring>>,
}

impl UringDir {
    /// Uses (and creates if needed) the directory at `path`.
    pub fn new(path: &Path) -> io::Result<UringDir> {
        std::fs::create_dir_all(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create journal directory {}: {e}", path.display()))
        })?;
        Ok(UringDir { path: path.to_owned(), ring: Arc::new(Mutex::new(Ring::new()?)) })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}

/// The ring, locked. The store is shared between the service's control plane and a running
/// job's thread (one at a time, behind the store's own lock), so the ring is too.
fn lock(ring: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    ring.lock().unwrap_or_else(|e| e.into_inner())
}

/// One journal file.
#[derive(Debug)]
pub struct UringFile {
    file: File,
    ring: Arc<Mutex<Ring>>,
}

impl Storage for UringFile {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.ring).read_at(&self.file, offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        lock(&self.ring).write_at(&self.file, offset, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        lock(&self.ring).fdatasync(&self.file)
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl Dir for UringDir {
    type File = UringFile;

    fn open(&self, name: &str) -> io::Result<Option<UringFile>> {
        match OpenOptions::new().read(true).write(true).open(self.path.join(name)) {
            Ok(file) => Ok(Some(UringFile { file, ring: self.ring.clone() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, name: &str) -> io::Result<UringFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path.join(name))?;
        self.sync_dir()?;
        Ok(UringFile { file, ring: self.ring.clone() })
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.path)? {
            if let Some(n) = e?.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))?;
        self.sync_dir()
    }
}
