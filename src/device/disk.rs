//! `disk:DIR`: media are volume files of a fixed maximum size in a directory, named
//! `<barcode>.cvol`, each starting with its label. `disk:/dev/sdX` (any block device, or an
//! image file with `,raw`) is one medium of the device's size: label, end-of-data marks
//! ([`super::endmark`]), then parts; it is labelled only when its first blocks are blank, and
//! a device holding anything else is refused. Writes go through io_uring with `O_DIRECT`
//! where the file system allows it (staged in an aligned buffer so that every write is whole
//! blocks), else buffered; a part is durable once `fdatasync` returned.
//!
//! Fault model: the file system fills up (`Full`), a volume file is damaged or foreign
//! (`BadMedium`, never overwritten), a volume the catalog names is gone (`MissingMedium`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::aligned::{ALIGN, AlignedBuf, round_up};
use super::endmark::{DATA_START, EndMark, MARK_BLOCK};
use super::label::{LABEL_READ_LEN, label_block, new_label, parse_label};
use super::throttle::Throttle;
use super::{DeviceError, Media, Mounted, PartReader, PartStart, Target};
use crate::catalog::MediumKind;
use crate::format::records::VolumeLabel;
use crate::uring::Ring;

/// Block size of disk media: the direct I/O alignment.
pub const DISK_BLOCK: usize = ALIGN;
/// Default largest volume file.
pub const DEFAULT_VOLUME_SIZE: u64 = 8 << 30;
/// Smallest volume file allowed.
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;
/// Bytes gathered before one write.
const STAGE_LEN: usize = 8 << 20;
/// Bytes written to measure a directory's write rate.
pub const MEASURE_BYTES: u64 = 64 << 20;
/// Bytes read ahead by a part reader.
const READ_LEN: usize = 8 << 20;
/// Extension of volume files.
const EXT: &str = "cvol";

const _: () = assert!(STAGE_LEN.is_multiple_of(DISK_BLOCK));
const _: () = assert!(MEASURE_BYTES.is_multiple_of(STAGE_LEN as u64));
const _: () = assert!(MARK_BLOCK == DISK_BLOCK as u64 && DATA_START.is_multiple_of(DISK_BLOCK as u64));
const _: () = assert!(MIN_VOLUME_SIZE as usize > 2 * DISK_BLOCK);

/// Writes to volume files in a directory, or to one raw disk.
#[derive(Debug)]
pub struct DiskTarget {
    /// The directory, or the raw disk.
    dir: PathBuf,
    raw: bool,
    volume_size: u64,
    pool: String,
    ring: Ring,
    vol: Option<Volume>,
    stage: AlignedBuf,
    staged: usize,
    throttle: Option<Throttle>,
    /// Write rate measured at start (`measure`).
    measured: Option<u64>,
}

#[derive(Debug)]
struct Volume {
    file: File,
    label: VolumeLabel,
    path: PathBuf,
    /// Where the next flushed byte goes (block-aligned).
    end: u64,
    part_open: bool,
    /// A raw disk's end-of-data mark as last written.
    mark: Option<EndMark>,
}

fn volume_path(dir: &Path, barcode: &str) -> PathBuf {
    dir.join(format!("{barcode}.{EXT}"))
}

/// Opens a volume file for writing, with `O_DIRECT` if the file system supports it (tmpfs
/// does not: buffered writes then, synced all the same).
fn open_volume(path: &Path, create: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(create);
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut o = OpenOptions::new();
            o.read(true).write(true);
            o.open(path)
        }
        r => r,
    }
}

/// How a disk target is named: `disk:DIR`, `disk:/dev/sdX`, `disk:/srv/image,raw`.
pub fn describe(path: &Path, raw: bool) -> String {
    if raw && !is_block_device(path) {
        format!("disk:{},raw", path.display())
    } else {
        format!("disk:{}", path.display())
    }
}

/// Whether `path` is a block device (and so a raw disk).
pub fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Size of a raw disk: a block device's or an image file's.
fn raw_size(file: &File, what: &str) -> Result<u64, DeviceError> {
    use std::io::Seek;
    let mut f = file;
    f.seek(std::io::SeekFrom::End(0)).map_err(DeviceError::io("size", what))
}

/// A barcode for a raw disk's label.
fn raw_barcode() -> String {
    let id = uuid::Uuid::new_v4();
    format!("RAW-{}", &id.simple().to_string()[..12].to_uppercase())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Volumes of a directory: readable ones with their labels (oldest first), and the files
/// named like volumes whose label cannot be read.
type Volumes = (Vec<(PathBuf, VolumeLabel)>, Vec<DeviceError>);

/// Lists the volume files in `dir`; a volume with an unreadable label is set aside, never
/// written to, and reported, so that one damaged file does not take the others with it.
fn list_volumes(dir: &Path) -> Result<Volumes, DeviceError> {
    let what = dir.display().to_string();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for e in std::fs::read_dir(dir).map_err(DeviceError::io("list", &what))? {
        let path = e.map_err(DeviceError::io("list", &what))?.path();
        if path.extension().is_some_and(|x| x == EXT) {
            match read_label_at(&path) {
                Ok(label) => out.push((path, label)),
                Err(e) => bad.push(e),
            }
        }
    }
    out.sort_by(|a, b| (a.1.created, &a.1.barcode).cmp(&(b.1.created, &b.1.barcode)));
    Ok((out, bad))
}

fn read_label_at(path: &Path) -> Result<VolumeLabel, DeviceError> {
    let what = path.display().to_string();
    let f = File::open(path).map_err(DeviceError::io("open", &what))?;
    let mut buf = vec![0u8; LABEL_READ_LEN];
    let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0).map_err(DeviceError::io("read", &what))?;
    parse_label(&buf[..n], &what)
}

impl DiskTarget {
    /// A target writing volume files of at most `volume_size` bytes into `dir` (created if
    /// missing) for media pool `pool`.
    pub fn new(dir: &Path, volume_size: u64, pool: &str) -> Result<DiskTarget, DeviceError> {
        Self::with_layout(dir, false, volume_size, pool)
    }

    /// A target writing to the raw disk `path` (a block device or an image file) as one
    /// medium of `pool`.
    pub fn raw(path: &Path, pool: &str) -> Result<DiskTarget, DeviceError> {
        Self::with_layout(path, true, MIN_VOLUME_SIZE, pool)
    }

    fn with_layout(dir: &Path, raw: bool, volume_size: u64, pool: &str) -> Result<DiskTarget, DeviceError> {
        let what = dir.display().to_string();
        if volume_size < MIN_VOLUME_SIZE {
            return Err(DeviceError::BadSpec {
                spec: format!("disk:{what}"),
                detail: format!("volume size must be at least {MIN_VOLUME_SIZE} bytes"),
            });
        }
        if !raw {
            std::fs::create_dir_all(dir).map_err(DeviceError::io("create directory", &what))?;
        }
        let ring = Ring::new().map_err(DeviceError::io("set up io_uring for", &what))?;
        Ok(DiskTarget {
            dir: dir.to_owned(),
            raw,
            volume_size: round_up(volume_size, DISK_BLOCK as u64),
            pool: pool.to_owned(),
            ring,
            vol: None,
            stage: AlignedBuf::new(STAGE_LEN),
            staged: 0,
            throttle: None,
            measured: None,
        })
    }

    /// Limits writes to `rate` bytes per second.
    pub fn with_rate(mut self, rate: Option<u64>) -> DiskTarget {
        self.throttle = rate.map(Throttle::new);
        self
    }

    /// Measures the directory's write rate by writing [`MEASURE_BYTES`] to a scratch file
    /// (direct I/O where allowed, synced) and removing it; the planner then counts on it.
    pub fn measure_rate(&mut self) -> Result<u64, DeviceError> {
        let path = self.dir.join(".coffer-rate-probe");
        let what = path.display().to_string();
        let _ = std::fs::remove_file(&path);
        let file = open_volume(&path, true).map_err(DeviceError::io("create", &what))?;
        let mut buf = AlignedBuf::new(STAGE_LEN);
        // Not zeros: a file system that compresses or dedups zeros would flatter itself.
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        let t0 = std::time::Instant::now();
        let mut at = 0;
        let r = (|| {
            while at < MEASURE_BYTES {
                self.ring.write_at(&file, at, &buf)?;
                at += STAGE_LEN as u64;
            }
            self.ring.fdatasync(&file)
        })();
        let secs = t0.elapsed().as_secs_f64().max(1e-6);
        let _ = std::fs::remove_file(&path);
        r.map_err(DeviceError::io("write", &what))?;
        let rate = (MEASURE_BYTES as f64 / secs) as u64;
        self.measured = Some(rate.max(1));
        Ok(rate)
    }

    fn vol(&mut self) -> &mut Volume {
        self.vol.as_mut().expect("a volume is mounted")
    }

    /// Writes the staged bytes, `len` of them (a multiple of the block size).
    fn flush(&mut self, len: usize) -> Result<(), DeviceError> {
        assert!(len.is_multiple_of(DISK_BLOCK) && len <= self.stage.len());
        let vol = self.vol.as_mut().expect("a volume is mounted");
        let what = vol.path.display().to_string();
        self.ring.write_at(&vol.file, vol.end, &self.stage[..len]).map_err(DeviceError::io("write", what))?;
        vol.end += len as u64;
        self.staged = 0;
        if let Some(t) = &mut self.throttle {
            t.pace(len as u64);
        }
        Ok(())
    }

    fn create_volume(&mut self) -> Result<Mounted, DeviceError> {
        let id = uuid::Uuid::new_v4();
        let barcode = format!("DSK-{}", &id.simple().to_string()[..12].to_uppercase());
        let mut label = new_label(barcode, &self.pool, DISK_BLOCK as u32);
        label.medium = *id.as_bytes();
        let path = volume_path(&self.dir, &label.barcode);
        let what = path.display().to_string();
        let file = open_volume(&path, true).map_err(DeviceError::io("create", &what))?;
        let block = label_block(&label, DISK_BLOCK);
        let mut aligned = AlignedBuf::new(block.len());
        aligned.copy_from_slice(&block);
        self.ring.write_at(&file, 0, &aligned).map_err(DeviceError::io("write label to", &what))?;
        self.ring.fdatasync(&file).map_err(DeviceError::io("sync", &what))?;
        sync_dir(&self.dir).map_err(DeviceError::io("sync", self.dir.display().to_string()))?;
        let end = block.len() as u64;
        self.vol = Some(Volume { file, label: label.clone(), path, end, part_open: false, mark: None });
        Ok(self.mounted(label, true))
    }

    /// Mounts the raw disk: reads its label and end mark, or labels it if it is blank.
    fn mount_raw(&mut self) -> Result<Mounted, DeviceError> {
        let path = self.dir.clone();
        let what = path.display().to_string();
        let bad = |detail: String| DeviceError::BadMedium { what: what.clone(), detail };
        let file = open_volume(&path, false).map_err(DeviceError::io("open", &what))?;
        let size = raw_size(&file, &what)?;
        if size < MIN_VOLUME_SIZE {
            return Err(bad(format!(
                "{size} bytes: too small for a coffer disk (at least {MIN_VOLUME_SIZE})"
            )));
        }
        self.volume_size = size - size % DISK_BLOCK as u64;
        let mut head = AlignedBuf::new(DATA_START as usize);
        let n = self.ring.read_at(&file, 0, &mut head).map_err(DeviceError::io("read", &what))?;
        if n < head.len() {
            return Err(bad("cannot read its first blocks".into()));
        }
        let (label, mark, new) = if head.iter().all(|&b| b == 0) {
            let label = new_label(raw_barcode(), &self.pool, DISK_BLOCK as u32);
            let mark = EndMark::fresh(label.medium);
            let block = label_block(&label, DISK_BLOCK);
            head[..block.len()].copy_from_slice(&block);
            let at = mark.offset() as usize;
            head[at..at + super::endmark::MARK_LEN].copy_from_slice(&mark.encode());
            self.ring.write_at(&file, 0, &head).map_err(DeviceError::io("write label to", &what))?;
            self.ring.fdatasync(&file).map_err(DeviceError::io("sync", &what))?;
            (label, mark, true)
        } else {
            let label = parse_label(&head[..DISK_BLOCK], &what).map_err(|_| {
                bad("holds data that is not a coffer disk: coffer labels only a disk whose first 12 KiB \
                     are zero (clear them, e.g. with wipefs and dd, if its contents may go)"
                    .into())
            })?;
            let mark = EndMark::newest(&head[DISK_BLOCK..], label.medium).ok_or_else(|| {
                bad(format!(
                    "coffer disk {} has no readable end-of-data mark: `coffer scan` reads its sessions; \
                     it is not written to",
                    label.barcode
                ))
            })?;
            if label.pool != self.pool {
                return Err(bad(format!("it belongs to pool {}, not {}", label.pool, self.pool)));
            }
            (label, mark, false)
        };
        if !self.has_room(mark.end) {
            return Err(DeviceError::Full { what, detail: "the disk is full".into() });
        }
        self.vol = Some(Volume {
            file,
            label: label.clone(),
            path,
            end: mark.end,
            part_open: false,
            mark: Some(mark),
        });
        Ok(self.mounted(label, new))
    }

    /// After a part was synced: records the raw disk's new end, and syncs that.
    fn write_mark(&mut self) -> Result<(), DeviceError> {
        let v = self.vol.as_mut().expect("a volume is mounted");
        let Some(mark) = v.mark else {
            return Ok(());
        };
        let next = mark.next(v.end);
        let mut block = AlignedBuf::new(DISK_BLOCK);
        block[..super::endmark::MARK_LEN].copy_from_slice(&next.encode());
        let what = v.path.display().to_string();
        self.ring
            .write_at(&v.file, next.offset(), &block)
            .map_err(DeviceError::io("write end mark to", &what))?;
        self.ring.fdatasync(&v.file).map_err(DeviceError::io("sync", &what))?;
        v.mark = Some(next);
        Ok(())
    }

    fn mounted(&self, label: VolumeLabel, new: bool) -> Mounted {
        Mounted { label, capacity: self.volume_size, location: self.describe(), new, kind: MediumKind::Disk }
    }

    /// Room a volume needs to be worth a new part: a block for the header and one for the end.
    fn has_room(&self, end: u64) -> bool {
        end + 4 * DISK_BLOCK as u64 <= self.volume_size
    }
}

impl Target for DiskTarget {
    fn describe(&self) -> String {
        describe(&self.dir, self.raw)
    }

    fn block_size(&self) -> usize {
        DISK_BLOCK
    }

    fn mount(&mut self) -> Result<Mounted, DeviceError> {
        if let Some(v) = &self.vol
            && self.has_room(v.end)
        {
            return Ok(self.mounted(v.label.clone(), false));
        }
        if self.raw {
            return self.mount_raw();
        }
        let (volumes, unreadable) = list_volumes(&self.dir)?;
        for e in unreadable {
            tracing::warn!(target: "device", "{e}: left alone");
        }
        for (path, label) in volumes.into_iter().rev() {
            let what = path.display().to_string();
            let len = std::fs::metadata(&path).map_err(DeviceError::io("stat", &what))?.len();
            // A torn part may end off a block boundary: the next part starts at the next one.
            let end = round_up(len, DISK_BLOCK as u64);
            if label.pool == self.pool && self.has_room(end) {
                let file = open_volume(&path, false).map_err(DeviceError::io("open", &what))?;
                self.vol =
                    Some(Volume { file, label: label.clone(), path, end, part_open: false, mark: None });
                return Ok(self.mounted(label, false));
            }
        }
        self.create_volume()
    }

    fn begin_part(&mut self) -> Result<PartStart, DeviceError> {
        let v = self.vol();
        assert!(!v.part_open, "a part is already open");
        v.part_open = true;
        Ok(PartStart { medium: v.label.medium, position: v.end, file_number: 0 })
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<(), DeviceError> {
        assert!(self.vol().part_open, "write outside a part");
        if bytes.len() as u64 > self.remaining() {
            let what = self.vol().path.display().to_string();
            return Err(DeviceError::Full { what, detail: "volume file at its maximum size".into() });
        }
        while !bytes.is_empty() {
            let n = bytes.len().min(STAGE_LEN - self.staged);
            self.stage[self.staged..self.staged + n].copy_from_slice(&bytes[..n]);
            self.staged += n;
            bytes = &bytes[n..];
            if self.staged == STAGE_LEN {
                self.flush(STAGE_LEN)?;
            }
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        let v = self.vol.as_ref().expect("a volume is mounted");
        self.volume_size.saturating_sub(v.end + self.staged as u64 + DISK_BLOCK as u64)
    }

    fn end_part(&mut self) -> Result<(), DeviceError> {
        let len = round_up(self.staged as u64, DISK_BLOCK as u64) as usize;
        self.stage[self.staged..len].fill(0);
        if len > 0 {
            self.flush(len)?;
        }
        let v = self.vol.as_mut().expect("a volume is mounted");
        let what = v.path.display().to_string();
        self.ring.fdatasync(&v.file).map_err(DeviceError::io("sync", what))?;
        v.part_open = false;
        self.write_mark()
    }

    fn free_space(&self) -> Option<u64> {
        if self.raw {
            return self.vol.as_ref().map(|v| self.volume_size.saturating_sub(v.end));
        }
        let st = crate::source::mode::statvfs(&self.dir)?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn rate(&self) -> Option<u64> {
        self.throttle.as_ref().map(|t| t.rate).or(self.measured)
    }

    fn next_medium(&mut self) -> Result<Mounted, DeviceError> {
        assert!(!self.vol().part_open, "close the part before changing media");
        if self.raw {
            return Err(DeviceError::Full {
                what: self.describe(),
                detail: "the disk is full (it is one medium): back up to another target".into(),
            });
        }
        self.create_volume()
    }
}

/// Reads volume files of a directory.
#[derive(Debug)]
pub struct DiskMedia {
    dir: PathBuf,
    raw: bool,
    unreadable: Vec<String>,
}

impl DiskMedia {
    /// Media in `dir`.
    pub fn new(dir: &Path) -> DiskMedia {
        DiskMedia { dir: dir.to_owned(), raw: false, unreadable: Vec::new() }
    }

    /// The one medium of the raw disk `path`.
    pub fn raw(path: &Path) -> DiskMedia {
        DiskMedia { dir: path.to_owned(), raw: true, unreadable: Vec::new() }
    }
}

/// A raw disk's label and where its data ends: at its newest end mark, or (marks unreadable)
/// at the end of the device, so that `scan` still finds what is there.
fn raw_label_and_end(file: &File, what: &str) -> Result<(VolumeLabel, u64), DeviceError> {
    let mut head = vec![0u8; DATA_START as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut head, 0).map_err(DeviceError::io("read", what))?;
    let label = parse_label(&head[..DISK_BLOCK], what)?;
    let end = match EndMark::newest(&head[DISK_BLOCK..], label.medium) {
        Some(m) => m.end,
        None => raw_size(file, what)?,
    };
    Ok((label, end))
}

impl Media for DiskMedia {
    fn open(&mut self, barcode: &str, position: u64) -> Result<Box<dyn PartReader>, DeviceError> {
        if self.raw {
            let what = self.dir.display().to_string();
            let file = File::open(&self.dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DeviceError::MissingMedium {
                    barcode: barcode.to_owned(),
                    target: describe(&self.dir, true),
                    detail: format!("{what} does not exist: attach the disk, or restore from another copy"),
                },
                _ => DeviceError::io("open", &what)(e),
            })?;
            let (label, len) = raw_label_and_end(&file, &what)?;
            if label.barcode != barcode {
                return Err(DeviceError::BadMedium {
                    what,
                    detail: format!("its label says {}, not {barcode}", label.barcode),
                });
            }
            return DiskReader::boxed(file, what, len, position);
        }
        let path = volume_path(&self.dir, barcode);
        let what = path.display().to_string();
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DeviceError::MissingMedium {
                barcode: barcode.to_owned(),
                target: format!("disk:{}", self.dir.display()),
                detail: format!(
                    "{what} does not exist: bring the volume file back, or restore from another copy"
                ),
            },
            _ => DeviceError::io("open", &what)(e),
        })?;
        let label = read_label_at(&path)?;
        if label.barcode != barcode {
            return Err(DeviceError::BadMedium {
                what,
                detail: format!("its label says {}, not {barcode}", label.barcode),
            });
        }
        let len = file.metadata().map_err(DeviceError::io("stat", &what))?.len();
        DiskReader::boxed(file, what, len, position)
    }

    fn labels(&mut self) -> Result<Vec<VolumeLabel>, DeviceError> {
        if self.raw {
            let what = self.dir.display().to_string();
            let file = File::open(&self.dir).map_err(DeviceError::io("open", &what))?;
            return match raw_label_and_end(&file, &what) {
                Ok((label, _)) => Ok(vec![label]),
                Err(e) => {
                    self.unreadable = vec![e.to_string()];
                    Ok(Vec::new())
                }
            };
        }
        let (volumes, unreadable) = list_volumes(&self.dir)?;
        self.unreadable = unreadable.iter().map(|e| e.to_string()).collect();
        Ok(volumes.into_iter().map(|(_, l)| l).collect())
    }

    fn unreadable(&mut self) -> Vec<String> {
        std::mem::take(&mut self.unreadable)
    }

    fn part_ranges(&mut self, _barcode: &str) -> Result<Option<Vec<super::PartRange>>, DeviceError> {
        if !self.raw {
            return Ok(None);
        }
        let what = self.dir.display().to_string();
        let file = File::open(&self.dir).map_err(DeviceError::io("open", &what))?;
        let (_, end) = raw_label_and_end(&file, &what)?;
        Ok(Some(vec![super::PartRange::bytes(DATA_START..end)]))
    }
}

/// Sequential reader of a volume file, in large reads.
struct DiskReader {
    file: File,
    what: String,
    ring: Ring,
    len: u64,
    /// Stream position of `buf[at]`.
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    filled: usize,
}

impl DiskReader {
    fn boxed(file: File, what: String, len: u64, pos: u64) -> Result<Box<dyn PartReader>, DeviceError> {
        let ring = Ring::new().map_err(DeviceError::io("set up io_uring for", &what))?;
        Ok(Box::new(DiskReader { file, what, ring, len, pos, buf: vec![0; READ_LEN], at: 0, filled: 0 }))
    }
}

impl PartReader for DiskReader {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DeviceError> {
        if self.at == self.filled {
            if self.pos >= self.len {
                return Ok(0);
            }
            let want = (self.len - self.pos).min(READ_LEN as u64) as usize;
            let n = self
                .ring
                .read_at(&self.file, self.pos, &mut self.buf[..want])
                .map_err(DeviceError::io("read", &self.what))?;
            self.at = 0;
            self.filled = n;
            if n == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.filled - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        self.pos += n as u64;
        Ok(n)
    }

    fn position(&self) -> u64 {
        self.pos
    }
}
