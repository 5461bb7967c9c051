//! An in-memory journal directory that keeps what was written apart from what is durable, for
//! crash tests: it can fail ("crash") at any chosen mutating operation, and produce the image a
//! machine would find after such a crash — durable bytes intact, every other byte of a sector
//! kept, lost, zeroed or garbled (one choice per sector).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::storage::{Dir, Storage};

/// Granularity of crash damage: a sector is written whole or not at all, or garbled.
const SECTOR: usize = 512;

#[derive(Debug, Default, Clone)]
struct MemFile {
    written: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct MemFs {
    files: BTreeMap<String, MemFile>,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
}

impl MemFs {
    /// Counts a mutating operation; fails it (and every later one) at the crash point. A
    /// crashing write still lands in the written bytes: a crash may come mid-write.
    fn op(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(io::Error::other("simulated crash: device gone"));
        }
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
            return Ok(true);
        }
        Ok(false)
    }
}

/// An in-memory directory; clones share the same files.
#[derive(Debug, Default, Clone)]
pub struct MemDir {
    fs: Rc<RefCell<MemFs>>,
}

impl MemDir {
    /// An empty directory that never crashes.
    pub fn new() -> MemDir {
        MemDir::default()
    }

    /// Makes the `n`th mutating operation from now (1-based) the crash point.
    pub fn crash_after(&self, n: u64) {
        let mut fs = self.fs.borrow_mut();
        fs.crash_at = Some(fs.ops + n);
    }

    /// Mutating operations so far (writes, syncs, truncates, creates, removes).
    pub fn ops(&self) -> u64 {
        self.fs.borrow().ops
    }

    /// Whether the crash point was reached.
    pub fn crashed(&self) -> bool {
        self.fs.borrow().crashed
    }

    /// The files as a rebooted machine would find them: durable bytes as they were, the bytes
    /// written since the last sync each sector kept, lost, zeroed or garbled (seeded).
    pub fn crash_image(&self, seed: u64) -> MemDir {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let fs = self.fs.borrow();
        let mut files = BTreeMap::new();
        for (name, f) in &fs.files {
            let (lo, hi) = (f.durable.len().min(f.written.len()), f.durable.len().max(f.written.len()));
            let len = lo + (next() as usize) % (hi - lo + 1);
            let mut image = vec![0u8; len];
            for start in (0..len).step_by(SECTOR) {
                let end = (start + SECTOR).min(len);
                let old = |i: usize| f.durable.get(i).copied().unwrap_or(0);
                let new = |i: usize| f.written.get(i).copied().unwrap_or(0);
                let durable = |i: usize| i < f.durable.len() && i < f.written.len() && old(i) == new(i);
                let choice = next() % 4;
                for (i, b) in image[start..end].iter_mut().enumerate() {
                    let i = start + i;
                    *b = match choice {
                        _ if durable(i) => old(i),
                        0 => old(i),
                        1 => new(i),
                        2 => 0,
                        _ => next() as u8,
                    };
                }
            }
            files.insert(name.clone(), MemFile { written: image.clone(), durable: image });
        }
        MemDir { fs: Rc::new(RefCell::new(MemFs { files, ..MemFs::default() })) }
    }

    /// The current (written) bytes of a file.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        self.fs.borrow().files.get(name).map(|f| f.written.clone())
    }

    /// Replaces a file's bytes, written and durable (to inject damage).
    pub fn set_contents(&self, name: &str, bytes: Vec<u8>) {
        let f = MemFile { written: bytes.clone(), durable: bytes };
        self.fs.borrow_mut().files.insert(name.to_owned(), f);
    }

    /// An independent copy of the current files.
    pub fn deep_clone(&self) -> MemDir {
        let fs = self.fs.borrow();
        MemDir { fs: Rc::new(RefCell::new(MemFs { files: fs.files.clone(), ..MemFs::default() })) }
    }
}

/// A file of a [`MemDir`].
#[derive(Debug)]
pub struct MemHandle {
    fs: Rc<RefCell<MemFs>>,
    name: String,
}

impl MemHandle {
    fn with<T>(&self, f: impl FnOnce(&mut MemFile) -> T) -> io::Result<T> {
        let mut fs = self.fs.borrow_mut();
        match fs.files.get_mut(&self.name) {
            Some(file) => Ok(f(file)),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "file removed")),
        }
    }
}

fn crash_error() -> io::Error {
    io::Error::other("simulated crash")
}

impl Storage for MemHandle {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if self.fs.borrow().crashed {
            return Err(crash_error());
        }
        self.with(|f| {
            let start = (offset as usize).min(f.written.len());
            let n = buf.len().min(f.written.len() - start);
            buf[..n].copy_from_slice(&f.written[start..start + n]);
            n
        })
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let crash = self.fs.borrow_mut().op()?;
        self.with(|f| {
            let end = offset as usize + buf.len();
            if f.written.len() < end {
                f.written.resize(end, 0);
            }
            f.written[offset as usize..end].copy_from_slice(buf);
        })?;
        if crash { Err(crash_error()) } else { Ok(()) }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.fs.borrow_mut().op()? {
            return Err(crash_error());
        }
        self.with(|f| f.durable = f.written.clone())
    }

    fn len(&mut self) -> io::Result<u64> {
        self.with(|f| f.written.len() as u64)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.fs.borrow_mut().op()? {
            return Err(crash_error());
        }
        self.with(|f| f.written.truncate(len as usize))
    }
}

impl Dir for MemDir {
    type File = MemHandle;

    fn open(&self, name: &str) -> io::Result<Option<MemHandle>> {
        let fs = self.fs.borrow();
        if fs.crashed {
            return Err(crash_error());
        }
        Ok(fs.files.contains_key(name).then(|| MemHandle { fs: self.fs.clone(), name: name.into() }))
    }

    fn create(&self, name: &str) -> io::Result<MemHandle> {
        let mut fs = self.fs.borrow_mut();
        if fs.op()? {
            return Err(crash_error());
        }
        fs.files.insert(name.to_owned(), MemFile::default());
        Ok(MemHandle { fs: self.fs.clone(), name: name.into() })
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.fs.borrow().files.keys().cloned().collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.op()? {
            return Err(crash_error());
        }
        fs.files.remove(name);
        Ok(())
    }
}
