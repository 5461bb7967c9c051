//! Tape cartridges in a library as a target and as media.
//!
//! Layout of a cartridge written in fixed blocks of `B` bytes (the label says `B`):
//! object 0 is the volume label (one block), object 1 a filemark, then each session part:
//! its blocks, then one filemark. A part is durable once that filemark, written without the
//! immediate bit, returned GOOD.
//!
//! Positions: the rest of coffer addresses media in bytes. On tape, logical object `k` is
//! bytes `[k·B, (k+1)·B)`, so a part starting at object `k` is at byte `k·B` and a record at
//! offset `o` in it lies in object `k + o / B`: restore of one file LOCATEs there directly
//! (or, on drives that refuse LOCATE, rewinds and SPACEs over the part's file number of
//! filemarks, then over blocks). A filemark reads as a block of zeros, like the padding
//! between parts on a disk.
//!
//! Writing: data is staged and written [`BATCH_BLOCKS`] blocks per command. At early warning
//! the target reports no room left; the stream writer then closes the part with a
//! continuation, and [`Target::next_medium`] unloads the full cartridge and loads the next
//! of the pool. A cartridge is written only after its label was read back and matches its
//! barcode, and never when it is write-protected.
//!
//! Faults: a unit attention, a medium error or a drive failure while writing fails the
//! stream (what was durable stays; the multi-device failover moves the rest); a drive that
//! stops answering is taken offline; a cartridge with a medium error is not written again
//! in this run. Medium errors are counted per cartridge for the journal (a cartridge over the
//! library's `medium_error_limit` is marked damaged) and the drive's TapeAlert flags are kept
//! for the health check after the unload.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::label::{label_block, new_label, parse_label};
use super::{DeviceError, Media, Mounted, PartRange, PartReader, PartStart, Target};
use crate::catalog::MediumKind;
use crate::format::records::VolumeLabel;
use crate::library::{Lease, Library};
use crate::scsi::sense::Outcome;
use crate::tape::{Read, TapeError, TapeIo, TapePos, Written};

/// Default block size (the label records the size each cartridge was written with).
pub const DEFAULT_TAPE_BLOCK: usize = 256 << 10;
/// Smallest and largest block size accepted.
pub const TAPE_BLOCK_RANGE: std::ops::RangeInclusive<usize> = (64 << 10)..=(1 << 20);
/// How often a writer waiting for a cartridge looks at the library again.
const MEDIA_POLL: Duration = Duration::from_secs(5);
/// Blocks written per command.
pub const BATCH_BLOCKS: usize = 16;
/// Buffer for reading a label (a block of any accepted size).
const LABEL_BUF: usize = 1 << 20;

/// What the start of a cartridge holds.
#[derive(Debug)]
pub enum OnTape {
    /// Nothing: a blank cartridge.
    Blank,
    /// A coffer volume label.
    Label(VolumeLabel),
    /// Something else, and what.
    Foreign(String),
}

/// Rewinds and reads the first block (in variable mode, so a label of any block size reads).
pub fn read_label(io: &mut dyn TapeIo, what: &str) -> Result<OnTape, TapeError> {
    io.set_block_size(0)?;
    io.rewind()?;
    let mut buf = vec![0u8; LABEL_BUF];
    Ok(match io.read_block(&mut buf)? {
        Read::EndOfData => OnTape::Blank,
        Read::Filemark => OnTape::Foreign("it starts with a filemark: not a coffer tape".into()),
        Read::Block(n) => match parse_label(&buf[..n], what) {
            Ok(l) => OnTape::Label(l),
            Err(e) => OnTape::Foreign(format!("it holds data coffer did not write ({e})")),
        },
    })
}

/// Writes `label` as the first block of a blank cartridge, then its filemark; the drive is
/// left in fixed blocks of `block` bytes, after the filemark.
fn write_label(io: &mut dyn TapeIo, label: &VolumeLabel, block: usize) -> Result<(), TapeError> {
    io.set_block_size(block as u32)?;
    io.write_blocks(&label_block(label, block))?;
    io.write_filemark()
}

/// A cartridge mounted for writing.
#[derive(Debug)]
struct Loaded {
    label: VolumeLabel,
    block: usize,
    /// Position of the next object to write.
    next: TapePos,
    /// The drive reported early warning.
    early_warning: bool,
}

/// Writes session parts to the cartridges of one pool, through one drive of a library.
pub struct TapeTarget {
    lib: Arc<Library>,
    pool: String,
    block: usize,
    writer: usize,
    lease: Option<Lease>,
    cart: Option<Loaded>,
    stage: Vec<u8>,
    part_open: bool,
    cleaning_warned: bool,
    /// The job's cancel flag, once the job said.
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl std::fmt::Debug for TapeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeTarget").field("target", &self.describe()).finish_non_exhaustive()
    }
}

/// Why a cartridge was passed over.
enum Prepare {
    Mounted(Mounted),
    /// Not to be written, ever (in this run): why.
    Unusable(String),
    /// Not for this pool, or full.
    Skip,
}

impl TapeTarget {
    /// Writer number `writer` of `lib` for `pool`, writing new cartridges in blocks of
    /// `block` bytes.
    pub fn new(lib: Arc<Library>, pool: &str, block: usize, writer: usize) -> TapeTarget {
        assert!(TAPE_BLOCK_RANGE.contains(&block), "block size {block} outside the accepted range");
        TapeTarget {
            lib,
            pool: pool.to_owned(),
            block,
            writer,
            lease: None,
            cart: None,
            stage: Vec::with_capacity(block * BATCH_BLOCKS),
            part_open: false,
            cleaning_warned: false,
            cancel: None,
        }
    }

    /// Claims the next cartridge to write; when there is none, waits for one (WAITING MEDIA,
    /// asked of a person on the console, the panel and the endpoint) up to the board's
    /// `media_wait`, looking at the library again every [`MEDIA_POLL`].
    fn claim_or_wait(&mut self, loaded: Option<&str>) -> Result<String, DeviceError> {
        let lib = self.lib.clone();
        if let Some(b) = lib.claim(&self.pool, loaded) {
            return Ok(b);
        }
        // The drive is not held while waiting: the person bringing a cartridge needs it to
        // import or label one. The mount leases one again after.
        self.lease = None;
        let wait = lib.media_wait();
        let started = std::time::Instant::now();
        let key = format!("{} {}", crate::library::WAITING_MEDIA, self.describe());
        let fails_at = crate::clock::unix_now() + wait.as_secs();
        let mut said = false;
        let outcome = loop {
            let why = lib.why_none(&self.pool);
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                let waited = if wait.is_zero() {
                    String::new()
                } else {
                    format!("; waited {} s for one (media_wait)", wait.as_secs())
                };
                break Err(DeviceError::Full { what: self.describe(), detail: format!("{why}{waited}") });
            }
            if !said {
                tracing::warn!(target: "library", "{}: waiting up to {} s for a cartridge: {why}", self.describe(), wait.as_secs());
                said = true;
            }
            lib.ask(
                &key,
                Some(format!(
                    "{}: {} needs a cartridge for pool '{}' ({why}); the job fails at {} UTC",
                    crate::library::WAITING_MEDIA,
                    self.describe(),
                    self.pool,
                    crate::jobs::calendar::format(fails_at)
                )),
            );
            let until = std::time::Instant::now() + left.min(MEDIA_POLL);
            while std::time::Instant::now() < until {
                if self.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
                    lib.ask(&key, None);
                    return Err(DeviceError::Failed {
                        what: self.describe(),
                        detail: "cancelled while waiting for a cartridge".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // A person may have brought one (imported, labelled, or freed a drive).
            if let Err(e) = lib.refresh() {
                tracing::warn!(target: "library", "{}: inventory while waiting for a cartridge: {e}", self.describe());
            }
            if let Some(b) = lib.claim(&self.pool, None) {
                tracing::info!(target: "library", "{}: cartridge {b} came after {} s", self.describe(), started.elapsed().as_secs());
                break Ok(b);
            }
        };
        lib.ask(&key, None);
        outcome
    }

    fn cart(&self) -> &Loaded {
        self.cart.as_ref().expect("a cartridge is mounted")
    }

    fn lease(&mut self) -> Result<&mut Lease, DeviceError> {
        if self.lease.is_none() {
            self.lease = Some(self.lib.lease(None)?);
        }
        Ok(self.lease.as_mut().expect("set above"))
    }

    fn mounted(&self, label: VolumeLabel, new: bool) -> Mounted {
        Mounted {
            label,
            capacity: self.lib.capacity(),
            location: self.lib.location(),
            new,
            kind: MediumKind::Tape,
        }
    }

    /// Bytes kept free at the end of a cartridge by our own reckoning: one whole batch, which
    /// may be in flight when early warning comes (a drive whose early-warning zone is smaller
    /// than a batch, or that gives none, would otherwise refuse the batch at the physical
    /// end), and two blocks for the part's tail and padding.
    fn reserve(&self, block: usize) -> u64 {
        ((BATCH_BLOCKS + 2) * block) as u64
    }

    /// Turns a drive error into a device error, taking the drive offline or the cartridge
    /// out of use as the error says.
    fn failed(&mut self, e: TapeError, doing: &str) -> DeviceError {
        let barcode = self.cart.as_ref().map(|c| c.label.barcode.clone());
        let what = self.describe();
        let outcome = match &e {
            TapeError::Scsi { source, .. } => source.outcome(),
            _ => None,
        };
        match (&e, outcome) {
            (TapeError::EndOfMedium { .. }, _) => {
                if let Some(b) = &barcode {
                    self.lib.mark_full(b);
                }
                return DeviceError::Full { what, detail: format!("{doing}: {e}") };
            }
            (TapeError::WriteProtected { .. }, _) | (_, Some(Outcome::MediumError)) => {
                if let Some(b) = &barcode {
                    if outcome == Some(Outcome::MediumError) {
                        self.lib.note_medium_error(b, true);
                    }
                    self.lib.mark_unusable(b, format!("{doing}: {e}"));
                }
            }
            (TapeError::Attention { .. }, _) | (_, Some(Outcome::UnitAttention(_))) => {
                // The drive was reset or its cartridge changed under us: what it held in its
                // buffer may be gone, and nothing more goes to it before position and label
                // are read again, which a new mount does.
                self.cart = None;
            }
            _ => {
                if let Some(l) = &self.lease {
                    let _ = self.lib.set_offline(l.drive(), Some(format!("{doing}: {e}")));
                }
            }
        }
        DeviceError::Failed { what, detail: format!("{doing}: {e}") }
    }

    /// Loads `barcode`, checks it may be written, and positions at its end of data.
    fn prepare(&mut self, barcode: &str) -> Result<Prepare, DeviceError> {
        let lib = self.lib.clone();
        let (pool, block) = (self.pool.clone(), self.block);
        let lease = self.lease()?;
        lib.load(lease, barcode)?;
        let io = lease.io();
        let fail = |e: TapeError| DeviceError::Failed {
            what: format!("{} {barcode}", lib.location()),
            detail: e.to_string(),
        };
        if io.write_protected().map_err(fail)? {
            return Ok(Prepare::Unusable("the cartridge is write-protected".into()));
        }
        let label = match read_label(io, barcode).map_err(fail)? {
            OnTape::Blank => {
                let label = new_label(barcode.to_owned(), &pool, block as u32);
                write_label(io, &label, block).map_err(fail)?;
                lib.note_label(barcode, &pool, label.created);
                tracing::info!(target: "library", "{barcode}: labelled for pool {pool}");
                let next = TapePos { object: 2, file: 1 };
                self.cart = Some(Loaded { label: label.clone(), block, next, early_warning: false });
                return Ok(Prepare::Mounted(self.mounted(label, true)));
            }
            OnTape::Foreign(why) => {
                return Ok(Prepare::Unusable(format!("{why}; coffer never overwrites it")));
            }
            OnTape::Label(l) if lib.is_recyclable(barcode) && l.barcode == barcode => {
                // Every session on it has expired: it is written again from its start, with a
                // new label (a new medium to the catalog, which drops the old one's sessions).
                let label = new_label(barcode.to_owned(), &pool, block as u32);
                io.rewind().map_err(fail)?;
                write_label(io, &label, block).map_err(fail)?;
                lib.recycled(barcode, &pool);
                lib.note_label(barcode, &pool, label.created);
                tracing::info!(target: "library", "{barcode}: recycled for pool {pool} (it was {}'s; its sessions had all expired)", l.pool);
                let next = TapePos { object: 2, file: 1 };
                self.cart = Some(Loaded { label: label.clone(), block, next, early_warning: false });
                return Ok(Prepare::Mounted(self.mounted(label, true)));
            }
            OnTape::Label(l) => l,
        };
        if label.barcode != barcode {
            return Ok(Prepare::Unusable(format!(
                "its label says {} but its barcode is {barcode}: the wrong cartridge is in this slot",
                label.barcode
            )));
        }
        lib.note_label(barcode, &label.pool, label.created);
        if label.pool != pool {
            return Ok(Prepare::Skip);
        }
        let b = label.block_size as usize;
        if !TAPE_BLOCK_RANGE.contains(&b) {
            return Ok(Prepare::Unusable(format!("its label gives a block size of {b} bytes")));
        }
        io.set_block_size(b as u32).map_err(fail)?;
        let next = io.to_end_of_data().map_err(fail)?;
        if next.object < 2 || next.file < 1 {
            return Ok(Prepare::Unusable(format!(
                "its data ends at object {}: the label's filemark is missing",
                next.object
            )));
        }
        if (next.object * b as u64) + 2 * self.reserve(b) >= lib.capacity() {
            lib.mark_full(barcode);
            return Ok(Prepare::Skip);
        }
        self.cart = Some(Loaded { label: label.clone(), block: b, next, early_warning: false });
        Ok(Prepare::Mounted(self.mounted(label, false)))
    }

    /// Writes the staged whole blocks, all of them when `all` (else whole batches only).
    fn flush(&mut self, all: bool) -> Result<(), DeviceError> {
        let block = self.cart().block;
        let batch = block * BATCH_BLOCKS;
        let n = if all { self.stage.len() } else { self.stage.len() / batch * batch };
        if n == 0 {
            return Ok(());
        }
        assert_eq!(n % block, 0, "only whole blocks are written");
        let stage = std::mem::take(&mut self.stage);
        let mut result = Ok(());
        for chunk in stage[..n].chunks(batch) {
            let io = self.lease.as_mut().expect("a drive is leased while mounted").io();
            match io.write_blocks(chunk) {
                Ok(w) => {
                    let blocks = (chunk.len() / block) as u64;
                    self.lib.stats.blocks_written.fetch_add(blocks, Ordering::Relaxed);
                    let c = self.cart.as_mut().expect("mounted");
                    c.next.object += blocks;
                    c.early_warning |= w == Written::EarlyWarning;
                }
                Err(e) => {
                    result = Err(self.failed(e, "writing"));
                    break;
                }
            }
        }
        self.stage = stage;
        self.stage.drain(..n);
        result
    }
}

impl Target for TapeTarget {
    fn describe(&self) -> String {
        format!("{} writer {}", self.lib.location(), self.writer)
    }

    fn watch_cancel(&mut self, cancel: Arc<std::sync::atomic::AtomicBool>) {
        self.cancel = Some(cancel);
    }

    fn multiplex(&self) -> usize {
        let board = crate::library::board();
        let lib = board.libraries.iter().find(|l| l.name() == self.lib.name());
        lib.map_or(crate::pipeline::mux::DEFAULT_MULTIPLEX, |l| l.multiplex())
    }

    fn block_size(&self) -> usize {
        self.cart.as_ref().map_or(self.block, |c| c.block)
    }

    fn mount(&mut self) -> Result<Mounted, DeviceError> {
        if let Some(c) = &self.cart {
            if !c.early_warning && self.remaining() > self.reserve(c.block) {
                return Ok(self.mounted(c.label.clone(), false));
            }
            let b = c.label.barcode.clone();
            self.lib.mark_full(&b);
            self.cart = None;
            self.lib.release(&b);
        }
        loop {
            let lib = self.lib.clone();
            let loaded = lib.loaded(self.lease()?);
            let barcode = self.claim_or_wait(loaded.as_deref())?;
            match self.prepare(&barcode) {
                Ok(Prepare::Mounted(m)) => return Ok(m),
                Ok(Prepare::Unusable(why)) => lib.mark_unusable(&barcode, why),
                Ok(Prepare::Skip) => {}
                Err(e) => {
                    lib.release(&barcode);
                    if let Some(l) = &self.lease
                        && !matches!(e, DeviceError::MissingMedium { .. })
                    {
                        let _ = lib.set_offline(l.drive(), Some(e.to_string()));
                        self.lease = None;
                    }
                    return Err(e);
                }
            }
            lib.release(&barcode);
        }
    }

    fn begin_part(&mut self) -> Result<PartStart, DeviceError> {
        assert!(!self.part_open, "a part is already open");
        let c = self.cart.as_ref().ok_or_else(|| DeviceError::Failed {
            what: self.describe(),
            detail: "no cartridge mounted (the drive was reset): the stream cannot go on here".into(),
        })?;
        self.part_open = true;
        Ok(PartStart {
            medium: c.label.medium,
            position: c.next.object * c.block as u64,
            file_number: u32::try_from(c.next.file).unwrap_or(u32::MAX),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        assert!(self.part_open, "write outside a part");
        if self.cart.is_none() {
            return Err(DeviceError::Failed {
                what: self.describe(),
                detail: "the drive was reset mid-part".into(),
            });
        }
        self.stage.extend_from_slice(bytes);
        if self.stage.len() >= self.cart().block * BATCH_BLOCKS {
            self.flush(false)?;
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        let Some(c) = &self.cart else { return 0 };
        if c.early_warning {
            return 0;
        }
        let used = c.next.object * c.block as u64 + self.stage.len() as u64;
        self.lib.capacity().saturating_sub(used + self.reserve(c.block))
    }

    fn end_part(&mut self) -> Result<(), DeviceError> {
        let Some(c) = &self.cart else {
            return Err(DeviceError::Failed {
                what: self.describe(),
                detail: "the drive was reset mid-part".into(),
            });
        };
        let padded = self.stage.len().div_ceil(c.block) * c.block;
        self.stage.resize(padded, 0);
        self.flush(true)?;
        let io = self.lease.as_mut().expect("a drive is leased while mounted").io();
        if let Err(e) = io.write_filemark() {
            return Err(self.failed(e, "writing the part's filemark"));
        }
        let c = self.cart.as_mut().expect("mounted");
        c.next.object += 1;
        c.next.file += 1;
        self.part_open = false;
        let lease = self.lease.as_mut().expect("leased");
        let drive = lease.drive();
        let io = lease.io();
        let alerts = io.tape_alerts().unwrap_or_default();
        if !self.cleaning_warned && (alerts.cleaning_required() || alerts.cleaning_requested()) {
            self.cleaning_warned = true;
            tracing::warn!(target: "library", "{}: the drive asks for cleaning (TapeAlert); it is cleaned when its cartridge is unloaded", io.name());
        }
        // A real drive clears its flags when they are read: the library keeps them for the
        // check after the unload.
        self.lib.note_alerts(drive, alerts);
        Ok(())
    }

    fn next_medium(&mut self) -> Result<Mounted, DeviceError> {
        assert!(!self.part_open, "close the part before changing media");
        if let Some(c) = self.cart.take() {
            self.lib.mark_full(&c.label.barcode);
            self.lib.release(&c.label.barcode);
        }
        self.mount()
    }

    fn rate(&self) -> Option<u64> {
        self.lib.rate()
    }

    fn streams(&self) -> bool {
        true
    }
}

impl Drop for TapeTarget {
    fn drop(&mut self) {
        if let Some(c) = &self.cart {
            self.lib.release(&c.label.barcode);
        }
    }
}

/// Labels the blank cartridge `barcode` for `pool` in the leased drive. A cartridge that holds
/// anything (a label, another program's data) is refused and left as it is.
pub fn label_blank(
    lease: &mut Lease,
    barcode: &str,
    pool: &str,
    block: usize,
) -> Result<VolumeLabel, DeviceError> {
    let lib = lease.library().clone();
    lib.load(lease, barcode)?;
    let what = format!("{} {barcode}", lib.location());
    let fail = |e: TapeError| DeviceError::Failed { what: what.clone(), detail: e.to_string() };
    let io = lease.io();
    if io.write_protected().map_err(fail)? {
        return Err(DeviceError::BadMedium {
            what,
            detail: "write-protected: clear its tab to label it".into(),
        });
    }
    let detail = match read_label(io, &what).map_err(fail)? {
        OnTape::Blank => {
            let label = new_label(barcode.to_owned(), pool, block as u32);
            write_label(io, &label, block).map_err(fail)?;
            lib.note_pool(barcode, pool);
            return Ok(label);
        }
        OnTape::Label(l) => format!("already labelled {} for pool {}: left as it is", l.barcode, l.pool),
        OnTape::Foreign(why) => format!("{why}: left as it is"),
    };
    Err(DeviceError::BadMedium { what, detail })
}

/// The drive a [`TapeMedia`] reads with, shared by its readers: the newest reader owns the
/// position, an older one repositions before it reads again.
struct ReadDrive {
    lease: Option<Lease>,
    /// The cartridge loaded and checked, with its block size.
    loaded: Option<(String, usize)>,
    /// The reader that last positioned the drive.
    owner: u64,
    next_id: u64,
}

/// Reads parts back from a library's cartridges.
pub struct TapeMedia {
    lib: Arc<Library>,
    drive: Arc<Mutex<ReadDrive>>,
    unreadable: Vec<String>,
}

impl std::fmt::Debug for TapeMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeMedia").field("library", &self.lib.name()).finish_non_exhaustive()
    }
}

impl TapeMedia {
    /// Media of `lib`.
    pub fn new(lib: Arc<Library>) -> TapeMedia {
        let drive = ReadDrive { lease: None, loaded: None, owner: 0, next_id: 1 };
        TapeMedia { lib, drive: Arc::new(Mutex::new(drive)), unreadable: Vec::new() }
    }
}

/// Loads `barcode` into the media's drive (leasing one first) and checks its label; returns
/// the label.
fn load_checked(lib: &Arc<Library>, d: &mut ReadDrive, barcode: &str) -> Result<VolumeLabel, DeviceError> {
    if d.lease.is_none() {
        d.lease = Some(lib.lease(Some(barcode))?);
    }
    let lease = d.lease.as_mut().expect("set above");
    d.loaded = None;
    lib.load(lease, barcode)?;
    let what = format!("{} {barcode}", lib.location());
    let fail = |e: TapeError| DeviceError::Failed { what: what.clone(), detail: e.to_string() };
    let io = lease.io();
    let label = match read_label(io, &what).map_err(fail)? {
        OnTape::Label(l) => l,
        OnTape::Blank => {
            return Err(DeviceError::BadMedium { what, detail: "blank: no volume label".into() });
        }
        OnTape::Foreign(why) => {
            return Err(DeviceError::BadMedium { what, detail: format!("no volume label: {why}") });
        }
    };
    if label.barcode != barcode {
        return Err(DeviceError::BadMedium {
            what,
            detail: format!("its label says {}: the wrong cartridge carries this barcode", label.barcode),
        });
    }
    let block = label.block_size as usize;
    if !TAPE_BLOCK_RANGE.contains(&block) {
        return Err(DeviceError::BadMedium {
            what,
            detail: format!("its label gives a block size of {block} bytes"),
        });
    }
    io.set_block_size(block as u32).map_err(fail)?;
    d.loaded = Some((barcode.to_owned(), block));
    Ok(label)
}

impl TapeMedia {
    fn open_at(
        &mut self,
        barcode: &str,
        position: u64,
        file: Option<(u64, u64)>,
    ) -> Result<Box<dyn PartReader>, DeviceError> {
        let mut d = self.drive.lock().unwrap_or_else(|e| e.into_inner());
        if d.loaded.as_ref().is_none_or(|(b, _)| b != barcode) {
            load_checked(&self.lib, &mut d, barcode)?;
        }
        let block = d.loaded.as_ref().expect("loaded above").1;
        let id = d.next_id;
        d.next_id += 1;
        let mut r = TapeReader {
            lib: self.lib.clone(),
            drive: self.drive.clone(),
            id,
            barcode: barcode.to_owned(),
            block,
            at: TapePos { object: position / block as u64, file: 0 },
            file_start: 0,
            buf: vec![0u8; block],
            len: 0,
            off: 0,
            skip: (position % block as u64) as usize,
        };
        if let Some((file, file_start)) = file {
            r.at.file = file;
            r.file_start = file_start;
        }
        r.seek(&mut d)?;
        Ok(Box::new(r))
    }
}

impl Media for TapeMedia {
    fn kind(&self) -> MediumKind {
        MediumKind::Tape
    }

    fn open(&mut self, barcode: &str, position: u64) -> Result<Box<dyn PartReader>, DeviceError> {
        self.open_at(barcode, position, None)
    }

    fn open_part(
        &mut self,
        barcode: &str,
        part_position: u64,
        file_number: u32,
        offset: u64,
    ) -> Result<Box<dyn PartReader>, DeviceError> {
        let d = self.drive.lock().unwrap_or_else(|e| e.into_inner());
        let block = d.loaded.as_ref().filter(|(b, _)| b == barcode).map(|(_, s)| *s as u64);
        drop(d);
        // The block size is the label's; a part starts on a block, so the first object of its
        // file is its position over the block size.
        let block = match block {
            Some(b) => b,
            None => {
                let mut d = self.drive.lock().unwrap_or_else(|e| e.into_inner());
                load_checked(&self.lib, &mut d, barcode)?.block_size as u64
            }
        };
        self.open_at(barcode, part_position + offset, Some((u64::from(file_number), part_position / block)))
    }

    fn labels(&mut self) -> Result<Vec<VolumeLabel>, DeviceError> {
        self.unreadable.clear();
        let mut labels = Vec::new();
        for (barcode, _) in self.lib.inventory().data_cartridges() {
            let mut d = self.drive.lock().unwrap_or_else(|e| e.into_inner());
            match load_checked(&self.lib, &mut d, &barcode) {
                Ok(l) => labels.push(l),
                // A blank cartridge holds nothing to find.
                Err(DeviceError::BadMedium { detail, .. }) if detail.starts_with("blank") => {}
                Err(e) => self.unreadable.push(format!("{barcode}: {e}")),
            }
        }
        Ok(labels)
    }

    fn unreadable(&mut self) -> Vec<String> {
        self.unreadable.clone()
    }

    /// Each file after the label's holds one part: the ranges between filemarks. Found by
    /// reading the cartridge through once (scan reads it all anyway).
    fn part_ranges(&mut self, barcode: &str) -> Result<Option<Vec<PartRange>>, DeviceError> {
        let mut d = self.drive.lock().unwrap_or_else(|e| e.into_inner());
        let block = load_checked(&self.lib, &mut d, barcode)?.block_size as u64;
        d.owner = 0;
        let what = format!("{} {barcode}", self.lib.location());
        let io = d.lease.as_mut().expect("loaded").io();
        let failed = |e: TapeError| DeviceError::Failed { what: what.clone(), detail: e.to_string() };
        // Where the data ends, found the way appending finds it: a read that meets the end of
        // data is an error on some drives (Linux st over tgt answers EIO), so the walk below
        // stops before it rather than reading into it.
        let end = io.to_end_of_data().map_err(failed)?.object;
        io.rewind().map_err(failed)?;
        let mut buf = vec![0u8; block as usize];
        let (mut object, mut start, mut ranges) = (0u64, None, Vec::new());
        while object < end {
            match io.read_block(&mut buf).map_err(failed)? {
                Read::Block(_) => {}
                Read::Filemark => {
                    if let Some(s) = start.replace(object + 1) {
                        // The label is file 0: the n-th range is file n.
                        let file_number = u32::try_from(ranges.len() + 1).unwrap_or(u32::MAX);
                        ranges.push(PartRange { bytes: s * block..object * block, file_number });
                    }
                }
                Read::EndOfData => break,
            }
            object += 1;
        }
        Ok(Some(ranges))
    }
}

/// Reads a cartridge's bytes from a position.
struct TapeReader {
    lib: Arc<Library>,
    drive: Arc<Mutex<ReadDrive>>,
    id: u64,
    barcode: String,
    block: usize,
    /// The object the buffer holds (or, before the first read, the one to read next).
    at: TapePos,
    /// First object of the file `at` is in, for drives that SPACE instead of LOCATE.
    file_start: u64,
    buf: Vec<u8>,
    len: usize,
    off: usize,
    /// Bytes of the first block to skip (the open position was inside it).
    skip: usize,
}

impl TapeReader {
    /// The object to read next.
    fn next_object(&self) -> TapePos {
        if self.len == 0 { self.at } else { TapePos { object: self.at.object + 1, ..self.at } }
    }

    /// Positions the shared drive for this reader.
    fn seek(&mut self, d: &mut ReadDrive) -> Result<(), DeviceError> {
        if d.loaded.as_ref().is_none_or(|(b, _)| *b != self.barcode) {
            load_checked(&self.lib, d, &self.barcode)?;
        }
        let to = self.next_object();
        let lease = d.lease.as_mut().expect("loaded");
        self.lib.stats.seeks.fetch_add(1, Ordering::Relaxed);
        lease.io().locate(to, self.file_start.min(to.object)).map_err(|e| DeviceError::Failed {
            what: format!("{} {}", self.lib.location(), self.barcode),
            detail: format!("positioning at object {}: {e}", to.object),
        })?;
        d.owner = self.id;
        Ok(())
    }

    fn fill(&mut self) -> Result<bool, DeviceError> {
        let drive = self.drive.clone();
        let mut d = drive.lock().unwrap_or_else(|e| e.into_inner());
        if d.owner != self.id {
            self.seek(&mut d)?;
        }
        let next = self.next_object();
        let lease = d.lease.as_mut().expect("positioned");
        let read = lease.io().read_block(&mut self.buf).map_err(|e| {
            if let TapeError::Scsi { source, .. } = &e
                && source.outcome() == Some(Outcome::MediumError)
            {
                self.lib.note_medium_error(&self.barcode, false);
            }
            DeviceError::Failed {
                what: format!("{} {}", self.lib.location(), self.barcode),
                detail: format!("reading object {}: {e}", next.object),
            }
        })?;
        match read {
            Read::Block(n) => {
                self.lib.stats.blocks_read.fetch_add(1, Ordering::Relaxed);
                self.at = next;
                self.len = n;
            }
            Read::Filemark => {
                self.at = TapePos { object: next.object, file: next.file + 1 };
                self.file_start = next.object + 1;
                self.buf.fill(0);
                self.len = self.block;
            }
            Read::EndOfData => return Ok(false),
        }
        self.off = std::mem::take(&mut self.skip).min(self.len);
        Ok(true)
    }
}

impl PartReader for TapeReader {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DeviceError> {
        if self.off == self.len && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.len - self.off);
        out[..n].copy_from_slice(&self.buf[self.off..self.off + n]);
        self.off += n;
        Ok(n)
    }

    fn position(&self) -> u64 {
        if self.len == 0 {
            self.at.object * self.block as u64 + self.skip as u64
        } else {
            self.at.object * self.block as u64 + self.off as u64
        }
    }
}

#[cfg(test)]
#[path = "tape_tests.rs"]
mod tests;
