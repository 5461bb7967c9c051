//! Cartridge contents and where they are kept. A [`Tape`] is the index of a cartridge's
//! logical objects (records and filemarks) up to end of data, over a [`Medium`] that holds
//! the bytes; a [`CartridgeStore`] opens tapes by barcode and keeps the library's map of which
//! cartridge is in which element.
//!
//! File format ([`FileStore`], one file `BARCODE.tape` per cartridge; [`MemoryStore`] keeps
//! the same bytes in memory): the 8-byte magic `CFRSIM01`, then objects, each a tag byte (`0`
//! record, `1` filemark), a little-endian `u32` length and, for records, that many bytes. End
//! of file is end of data. The element map is `map.txt`: lines `ADDRESS BARCODE` (address in
//! hex), replaced atomically (temporary file, fsync, rename); `wear.txt` holds each drive's
//! bytes written since its last cleaning, a decimal line per drive, replaced the same way. A
//! cleaning cartridge's file holds one one-byte record per cleaning it did.
//!
//! Index: only the offset of each object's header (8 bytes an object) and the object numbers
//! of the filemarks are held in memory. A record's length is the distance to the next header;
//! the bytes before object `n` are its offset less the magic and `n` headers; the file number
//! at `n` is a binary search among the filemarks. Record bytes stay in the medium and are read
//! (pread) when the host reads them.
//!
//! Writing: as on a tape, writing at object `n` first cuts the medium at `n` (everything after
//! the write position is gone), then appends. [`Tape::sync`] (fdatasync) is the durability
//! point: the drive calls it on WRITE FILEMARKS and when the cartridge leaves the drive.
//! Nothing is ever rewritten whole.
//!
//! Fault model: a file that does not start with the magic, or holds an object with a bad tag
//! or a record longer than [`MAX_RECORD`], is an `InvalidData` error naming the file and the
//! offset; nothing is guessed. A file that ends inside an object (a crash while writing past
//! the last sync, as a drive loses its buffer) is cut back to the last whole object, with a
//! warning. A failed append is cut back the same way at once.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Magic at the start of a cartridge file.
const MAGIC: &[u8; 8] = b"CFRSIM01";
/// Bytes of an object header: tag and length.
const HEADER: u64 = 5;
/// Largest record a cartridge file may hold (a bound for reading untrusted lengths).
pub const MAX_RECORD: usize = 16 << 20;
/// Filemarks encoded in one append (bounds the buffer of a WRITE FILEMARKS with a large count).
const FILEMARKS_PER_APPEND: u32 = 4096;

const TAG_RECORD: u8 = 0;
const TAG_FILEMARK: u8 = 1;

/// One logical object on a tape, as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A data record (one block) of this many bytes.
    Record(u32),
    /// A filemark.
    Filemark,
}

/// Where one cartridge's bytes live: a file, or memory in tests. Offsets are bytes from the
/// start of the cartridge file, magic included.
pub trait Medium: Send {
    /// Bytes held.
    fn size(&self) -> u64;
    /// Fills `buf` from offset `at`; `at + buf.len()` is within [`Medium::size`].
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
    /// Appends `buf` at the end.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Cuts to `len` bytes (at most the size).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes everything appended and cut so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// The contents of a cartridge: the index of its logical objects over the medium holding
/// their bytes. After the last object is end of data.
pub struct Tape {
    medium: Box<dyn Medium>,
    /// Offset of each object's header, then of end of data: one more entry than objects.
    starts: Vec<u64>,
    /// Object numbers of the filemarks, ascending.
    marks: Vec<u64>,
    /// Names the medium in messages.
    what: String,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("what", &self.what)
            .field("objects", &self.len())
            .field("filemarks", &self.marks.len())
            .finish()
    }
}

impl Default for Tape {
    /// A blank tape in memory (a drive with no cartridge holds one).
    fn default() -> Self {
        Tape::open(Box::new(MemoryMedium::default()), "blank tape").expect("memory cannot fail")
    }
}

impl Tape {
    /// The tape held in `medium`: a blank medium gets the magic; otherwise the index is built
    /// by walking the object headers (record bytes are skipped, not read). `what` names the
    /// medium in errors and warnings.
    pub fn open(mut medium: Box<dyn Medium>, what: &str) -> io::Result<Tape> {
        let bad = |detail: String| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {detail}"));
        let mut head = vec![0u8; medium.size().min(MAGIC.len() as u64) as usize];
        medium.read_at(&mut head, 0)?;
        if head.len() < MAGIC.len() && MAGIC.starts_with(&head) {
            // Blank, or a crash while the magic was being written.
            medium.truncate(0)?;
            medium.append(MAGIC)?;
            medium.sync()?;
            head = MAGIC.to_vec();
        }
        if head != MAGIC {
            return Err(bad("not a coffer cartridge file (bad magic)".into()));
        }
        let size = medium.size();
        let mut tape =
            Tape { medium, starts: vec![MAGIC.len() as u64], marks: Vec::new(), what: what.into() };
        let mut at = MAGIC.len() as u64;
        while at < size {
            if size - at < HEADER {
                break;
            }
            let mut h = [0u8; HEADER as usize];
            tape.medium.read_at(&mut h, at)?;
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
            let next = at + HEADER + u64::from(len);
            match h[0] {
                TAG_RECORD if len as usize <= MAX_RECORD => {}
                TAG_FILEMARK if len == 0 => {}
                tag => return Err(bad(format!("bad object (tag {tag}, length {len}) at offset {at}"))),
            }
            if next > size {
                break;
            }
            if h[0] == TAG_FILEMARK {
                tape.marks.push(tape.len() as u64);
            }
            tape.starts.push(next);
            at = next;
        }
        if at < size {
            tracing::warn!(
                target: "sim",
                "{what}: cut {} bytes of an object torn at offset {at} (a write was interrupted); \
                 the tape now ends after object {}",
                size - at,
                tape.len()
            );
            tape.medium.truncate(at)?;
            tape.medium.sync()?;
        }
        Ok(tape)
    }

    /// Logical objects up to end of data.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether the tape is blank.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Object `k`, if it is before end of data.
    pub fn object(&self, k: usize) -> Option<Object> {
        if k >= self.len() {
            return None;
        }
        if self.marks.binary_search(&(k as u64)).is_ok() {
            return Some(Object::Filemark);
        }
        Some(Object::Record((self.starts[k + 1] - self.starts[k] - HEADER) as u32))
    }

    /// Bytes of record data in the first `n` objects.
    pub fn bytes_before(&self, n: usize) -> u64 {
        let n = n.min(self.len());
        self.starts[n] - MAGIC.len() as u64 - HEADER * n as u64
    }

    /// Filemarks in the first `n` objects (the file number at object `n`).
    pub fn filemarks_before(&self, n: usize) -> u64 {
        self.marks.partition_point(|&m| m < n as u64) as u64
    }

    /// The object number of filemark `i` (counting from 0), if there are that many.
    pub fn filemark(&self, i: u64) -> Option<usize> {
        self.marks.get(usize::try_from(i).ok()?).map(|&m| m as usize)
    }

    /// Reads the first `buf.len()` bytes of record `k` (at most its length) into `buf`.
    ///
    /// # Panics
    /// If object `k` is not a record at least as long as `buf`.
    pub fn read_record(&self, k: usize, buf: &mut [u8]) -> io::Result<()> {
        let Some(Object::Record(len)) = self.object(k) else { panic!("object {k} is not a record") };
        assert!(buf.len() <= len as usize, "{} bytes asked of a {len}-byte record", buf.len());
        self.medium.read_at(buf, self.starts[k] + HEADER)
    }

    /// Cuts the tape to its first `n` objects: what follows is gone.
    pub fn truncate(&mut self, n: usize) -> io::Result<()> {
        if n >= self.len() {
            return Ok(());
        }
        self.medium.truncate(self.starts[n])?;
        self.starts.truncate(n + 1);
        let keep = self.filemarks_before(n) as usize;
        self.marks.truncate(keep);
        Ok(())
    }

    /// Writes `records` at object `at`, cutting what followed.
    ///
    /// # Panics
    /// If a record is longer than [`MAX_RECORD`].
    pub fn write_records(&mut self, at: usize, records: &[&[u8]]) -> io::Result<()> {
        self.truncate(at)?;
        let total: usize = records.iter().map(|r| HEADER as usize + r.len()).sum();
        let mut b = Vec::with_capacity(total);
        for r in records {
            assert!(r.len() <= MAX_RECORD, "a {}-byte record", r.len());
            b.push(TAG_RECORD);
            b.extend_from_slice(&(r.len() as u32).to_le_bytes());
            b.extend_from_slice(r);
        }
        self.append(&b)?;
        for r in records {
            let last = *self.starts.last().expect("never empty");
            self.starts.push(last + HEADER + r.len() as u64);
        }
        Ok(())
    }

    /// Writes `count` filemarks at object `at`, cutting what followed.
    pub fn write_filemarks(&mut self, at: usize, count: u32) -> io::Result<()> {
        self.truncate(at)?;
        let mut left = count;
        while left > 0 {
            let n = left.min(FILEMARKS_PER_APPEND);
            self.append(&[TAG_FILEMARK, 0, 0, 0, 0].repeat(n as usize))?;
            for _ in 0..n {
                let last = *self.starts.last().expect("never empty");
                self.marks.push(self.len() as u64);
                self.starts.push(last + HEADER);
            }
            left -= n;
        }
        Ok(())
    }

    /// Appends encoded objects; on failure the medium is cut back to its last whole object.
    fn append(&mut self, b: &[u8]) -> io::Result<()> {
        let end = *self.starts.last().expect("never empty");
        debug_assert_eq!(end, self.medium.size());
        self.medium.append(b).inspect_err(|_| {
            if let Err(e) = self.medium.truncate(end) {
                tracing::warn!(target: "sim", "{}: cutting a failed append back: {e}", self.what);
            }
        })
    }

    /// Makes everything written durable (the drive's durability point).
    pub fn sync(&mut self) -> io::Result<()> {
        self.medium.sync()
    }

    /// Bytes of memory the index takes (the record bytes are not in memory).
    pub fn index_bytes(&self) -> usize {
        (self.starts.capacity() + self.marks.capacity()) * size_of::<u64>()
    }
}

/// A medium in memory, shared with the [`MemoryStore`] that made it.
#[derive(Debug, Default, Clone)]
pub struct MemoryMedium {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl MemoryMedium {
    /// A medium holding `bytes` (a cartridge file's contents).
    pub fn new(bytes: Vec<u8>) -> MemoryMedium {
        MemoryMedium { bytes: Arc::new(Mutex::new(bytes)) }
    }

    /// What it holds, in the file format.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes().clone()
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Medium for MemoryMedium {
    fn size(&self) -> u64 {
        self.bytes().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let b = self.bytes();
        let src = usize::try_from(at)
            .ok()
            .and_then(|a| b.get(a..a + buf.len()))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.bytes().extend_from_slice(buf);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.bytes().truncate(len as usize);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A cartridge file, read and appended in place.
#[derive(Debug)]
pub struct FileMedium {
    file: fs::File,
    size: u64,
}

impl FileMedium {
    /// Opens (or creates) the cartridge file at `path`.
    pub fn open(path: &Path) -> io::Result<FileMedium> {
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileMedium { file, size })
    }
}

impl Medium for FileMedium {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, at)
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.size)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.size = len;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Where cartridge contents and the element map live.
pub trait CartridgeStore: Send {
    /// The tape with `barcode` (blank if never written). Its writes go to the store; the
    /// caller makes them durable with [`Tape::sync`].
    fn load(&mut self, barcode: &str) -> io::Result<Tape>;
    /// The saved element map (address, barcode), if one was saved.
    fn load_map(&mut self) -> io::Result<Option<Vec<(u16, String)>>>;
    /// Saves the element map durably.
    fn save_map(&mut self, map: &[(u16, String)]) -> io::Result<()>;
    /// The library's door stands open: the robot answers nothing but NOT READY.
    fn door_open(&self) -> bool {
        false
    }
    /// Each drive's bytes written since it was last cleaned, as last saved (empty if never).
    fn load_wear(&mut self) -> io::Result<Vec<u64>>;
    /// Saves each drive's bytes written since it was last cleaned.
    fn save_wear(&mut self, wear: &[u64]) -> io::Result<()>;
}

/// A store in memory, for tests; clones share nothing.
#[derive(Default)]
pub struct MemoryStore {
    tapes: HashMap<String, MemoryMedium>,
    map: Option<Vec<(u16, String)>>,
    wear: Vec<u64>,
}

impl Clone for MemoryStore {
    fn clone(&self) -> Self {
        let tapes = self.tapes.iter().map(|(k, m)| (k.clone(), MemoryMedium::new(m.contents()))).collect();
        MemoryStore { tapes, map: self.map.clone(), wear: self.wear.clone() }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: HashMap<&str, u64> = self.tapes.iter().map(|(k, m)| (k.as_str(), m.size())).collect();
        f.debug_struct("MemoryStore").field("tapes", &sizes).field("map", &self.map).finish()
    }
}

impl MemoryStore {
    /// The contents of cartridge `barcode` in the file format, if it was ever loaded.
    pub fn contents(&self, barcode: &str) -> Option<Vec<u8>> {
        self.tapes.get(barcode).map(MemoryMedium::contents)
    }
}

impl CartridgeStore for MemoryStore {
    fn load(&mut self, barcode: &str) -> io::Result<Tape> {
        let m = self.tapes.entry(barcode.to_string()).or_default().clone();
        Tape::open(Box::new(m), barcode)
    }

    fn load_map(&mut self) -> io::Result<Option<Vec<(u16, String)>>> {
        Ok(self.map.clone())
    }

    fn save_map(&mut self, map: &[(u16, String)]) -> io::Result<()> {
        self.map = Some(map.to_vec());
        Ok(())
    }

    fn load_wear(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.wear.clone())
    }

    fn save_wear(&mut self, wear: &[u64]) -> io::Result<()> {
        self.wear = wear.to_vec();
        Ok(())
    }
}

/// A store of one file per cartridge in a directory (see the module docs for the format).
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        fs::create_dir_all(dir)?;
        Ok(FileStore { dir: dir.to_path_buf() })
    }

    /// The file of cartridge `barcode`.
    pub fn path(&self, barcode: &str) -> PathBuf {
        self.dir.join(format!("{barcode}.tape"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        fs::File::open(&self.dir)?.sync_all()
    }
}

/// The file whose presence in a [`FileStore`]'s directory means the library's door is open.
pub const DOOR_OPEN_FILE: &str = "door-open";

impl CartridgeStore for FileStore {
    fn door_open(&self) -> bool {
        self.dir.join(DOOR_OPEN_FILE).exists()
    }

    fn load(&mut self, barcode: &str) -> io::Result<Tape> {
        let path = self.path(barcode);
        let existed = path.exists();
        let tape = Tape::open(Box::new(FileMedium::open(&path)?), &path.display().to_string())?;
        if !existed {
            self.sync_dir()?;
        }
        Ok(tape)
    }

    fn load_map(&mut self) -> io::Result<Option<Vec<(u16, String)>>> {
        let path = self.dir.join("map.txt");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |l: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: bad line '{l}'", path.display()))
        };
        let mut map = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (a, b) = line.split_once(' ').ok_or_else(|| bad(line))?;
            let addr = u16::from_str_radix(a, 16).map_err(|_| bad(line))?;
            map.push((addr, b.trim().to_string()));
        }
        Ok(Some(map))
    }

    fn save_map(&mut self, map: &[(u16, String)]) -> io::Result<()> {
        let text: String = map.iter().map(|(a, b)| format!("{a:04x} {b}\n")).collect();
        self.replace("map.txt", &text)
    }

    fn load_wear(&mut self) -> io::Result<Vec<u64>> {
        let path = self.dir.join(WEAR_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.split_whitespace()
            .map(|w| {
                w.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{}: bad count '{w}'", path.display()))
                })
            })
            .collect()
    }

    fn save_wear(&mut self, wear: &[u64]) -> io::Result<()> {
        let text: String = wear.iter().map(|n| format!("{n}\n")).collect();
        self.replace(WEAR_FILE, &text)
    }
}

/// The file of each drive's bytes written since its last cleaning, a line per drive.
const WEAR_FILE: &str = "wear.txt";

impl FileStore {
    /// Replaces file `name` with `text` atomically (temporary file, fsync, rename).
    fn replace(&self, name: &str, text: &str) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(name))?;
        self.sync_dir()
    }
}
