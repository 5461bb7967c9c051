//! Cartridge contents and where they are kept: a [`Tape`] is the sequence of logical objects
//! (records and filemarks) up to end of data; a [`CartridgeStore`] loads and saves tapes by
//! barcode and keeps the library's map of which cartridge is in which element.
//!
//! File format ([`FileStore`], one file `BARCODE.tape` per cartridge): the 8-byte magic
//! `CFRSIM01`, then objects, each a tag byte (`0` record, `1` filemark), a little-endian `u32`
//! length and, for records, that many bytes. End of file is end of data. A save writes a
//! temporary file, fsyncs it and renames it over the old one, so a crash leaves the old or
//! the new contents. The element map is `map.txt`: lines `ADDRESS BARCODE` (address in hex).
//!
//! Fault model: a file that does not start with the magic or ends inside an object is an
//! `InvalidData` error naming the file; nothing is guessed.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Magic at the start of a cartridge file.
const MAGIC: &[u8; 8] = b"CFRSIM01";
/// Largest record a cartridge file may hold (a bound for reading untrusted lengths).
pub const MAX_RECORD: usize = 16 << 20;

/// One logical object on a tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A data record (one block).
    Record(Vec<u8>),
    /// A filemark.
    Filemark,
}

/// The contents of a cartridge: logical objects in order; after the last is end of data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tape {
    /// The objects, numbered from 0 like SSC logical object identifiers.
    pub objects: Vec<Object>,
}

impl Tape {
    /// Bytes of record data in the first `n` objects.
    pub fn bytes_before(&self, n: usize) -> u64 {
        self.objects[..n.min(self.objects.len())]
            .iter()
            .map(|o| match o {
                Object::Record(r) => r.len() as u64,
                Object::Filemark => 0,
            })
            .sum()
    }

    /// Filemarks in the first `n` objects (the file number at object `n`).
    pub fn filemarks_before(&self, n: usize) -> u64 {
        self.objects[..n.min(self.objects.len())].iter().filter(|o| **o == Object::Filemark).count() as u64
    }

    /// Encodes in the file format.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for o in &self.objects {
            match o {
                Object::Record(r) => {
                    b.push(0);
                    b.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    b.extend_from_slice(r);
                }
                Object::Filemark => b.extend_from_slice(&[1, 0, 0, 0, 0]),
            }
        }
        b
    }

    /// Decodes the file format; `what` names the source in errors.
    pub fn decode(b: &[u8], what: &str) -> io::Result<Tape> {
        let bad = |detail: String| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {detail}"));
        if b.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(bad("not a coffer cartridge file (bad magic)".into()));
        }
        let mut tape = Tape::default();
        let mut pos = MAGIC.len();
        while pos < b.len() {
            let hdr = b.get(pos..pos + 5).ok_or_else(|| bad(format!("object header cut at {pos}")))?;
            let len = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
            pos += 5;
            match hdr[0] {
                0 if len <= MAX_RECORD => {
                    let r = b.get(pos..pos + len).ok_or_else(|| bad(format!("record cut at {pos}")))?;
                    tape.objects.push(Object::Record(r.to_vec()));
                    pos += len;
                }
                1 if len == 0 => tape.objects.push(Object::Filemark),
                tag => return Err(bad(format!("bad object (tag {tag}, length {len}) at {}", pos - 5))),
            }
        }
        Ok(tape)
    }
}

/// Where cartridge contents and the element map live.
pub trait CartridgeStore: Send {
    /// The tape with `barcode` (blank if never saved).
    fn load(&mut self, barcode: &str) -> io::Result<Tape>;
    /// Saves `tape` durably as the contents of `barcode`.
    fn save(&mut self, barcode: &str, tape: &Tape) -> io::Result<()>;
    /// The saved element map (address, barcode), if one was saved.
    fn load_map(&mut self) -> io::Result<Option<Vec<(u16, String)>>>;
    /// Saves the element map durably.
    fn save_map(&mut self, map: &[(u16, String)]) -> io::Result<()>;
}

/// A store in memory, for tests; clones share nothing.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    tapes: HashMap<String, Tape>,
    map: Option<Vec<(u16, String)>>,
}

impl CartridgeStore for MemoryStore {
    fn load(&mut self, barcode: &str) -> io::Result<Tape> {
        Ok(self.tapes.get(barcode).cloned().unwrap_or_default())
    }

    fn save(&mut self, barcode: &str, tape: &Tape) -> io::Result<()> {
        self.tapes.insert(barcode.to_string(), tape.clone());
        Ok(())
    }

    fn load_map(&mut self) -> io::Result<Option<Vec<(u16, String)>>> {
        Ok(self.map.clone())
    }

    fn save_map(&mut self, map: &[(u16, String)]) -> io::Result<()> {
        self.map = Some(map.to_vec());
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

    fn write_durably(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(name))?;
        fs::File::open(&self.dir)?.sync_all()
    }
}

impl CartridgeStore for FileStore {
    fn load(&mut self, barcode: &str) -> io::Result<Tape> {
        let path = self.dir.join(format!("{barcode}.tape"));
        match fs::read(&path) {
            Ok(b) => Tape::decode(&b, &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Tape::default()),
            Err(e) => Err(e),
        }
    }

    fn save(&mut self, barcode: &str, tape: &Tape) -> io::Result<()> {
        self.write_durably(&format!("{barcode}.tape"), &tape.encode())
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
        self.write_durably("map.txt", text.as_bytes())
    }
}
