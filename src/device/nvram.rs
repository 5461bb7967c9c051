//! `nvram:PATH`: a persistent-memory region (an fsdax block device such as `/dev/pmem0`, or a
//! file on a DAX-mounted or ordinary file system), mapped with `mmap(MAP_SHARED)` and used as
//! ONE medium that is a ring of session parts: when the ring is full, the newest parts
//! overwrite the oldest.
//!
//! # Layout
//!
//! ```text
//! 0      4096           8192                                            ring_end
//! | label | ring header | parts ... (each on a 4096-byte boundary)     |
//! ```
//!
//! The label is the medium's first block, as [`super::label::label_block`] makes it. Parts are
//! written exactly as on disk (session header, records, zero padding to the block boundary). A
//! part never wraps: it starts at the tail, or at the ring start when less than
//! [`PART_RESERVE`] is left before the ring end. `ring_end` is the region's size rounded down
//! to a block.
//!
//! The ring header block holds two 64-byte slots, at 4096 and 6144; the slot with the highest
//! generation whose CRC and invariants hold is the ring's state, and a new state is written to
//! the other slot, so an update torn by a crash leaves the previous one. A slot (little-endian):
//!
//! | offset | size | field        | meaning                                                     |
//! |-------:|-----:|--------------|-------------------------------------------------------------|
//! | 0      | 4    | `magic`      | `b"CNVR"`                                                   |
//! | 4      | 2    | `version`    | 1                                                           |
//! | 6      | 2    | reserved     | zero                                                        |
//! | 8      | 8    | `generation` | counts updates; generation `g` lives in slot `g % 2`        |
//! | 16     | 8    | `head`       | offset of the oldest live byte                              |
//! | 24     | 8    | `tail`       | offset where the next part starts                           |
//! | 32     | 8    | `wrap_end`   | end of the older lap's data once wrapped; 0 when not        |
//! | 40     | 8    | `laps`       | times the ring wrapped                                      |
//! | 48     | 8    | `evicted`    | parts evicted so far                                        |
//! | 56     | 4    | reserved     | zero                                                        |
//! | 60     | 4    | `crc32`      | CRC-32 (IEEE) of bytes 0..60                                |
//!
//! Live data is `[ring_start, tail)` (written in lap `laps`), preceded, once wrapped, by
//! `[head, wrap_end)` (lap `laps - 1`, older). Unwrapped, `head == ring_start`.
//!
//! # Positions
//!
//! A position is a byte offset into the region in its low 44 bits and the lap the bytes were
//! written in (modulo 2^19) above them, so that a part overwritten in a later lap is told
//! apart from the new part now at the same offset. Positions of the first lap are plain byte
//! offsets. Offsets within one part add to its position as on disk.
//!
//! # Durability, eviction and fault model
//!
//! [`Target::end_part`] msyncs the part (`MS_SYNC`), then writes and msyncs the ring header
//! with the new tail: that is the durability point, on a file system and on DAX alike. Before
//! a write overwrites older parts they are evicted whole: the header with the advanced head is
//! msynced first, so after a crash the header never names bytes that were overwritten. The
//! evictions are counted ([`NvramTarget::evicted`]) and listed for the catalog
//! ([`NvramTarget::take_evicted`]); a target refuses (`Full`) to evict parts it wrote itself
//! since its last mount, as a backup larger than the ring would destroy its own beginning.
//!
//! Faults: a file holding anything but a coffer label and ring header is refused, never
//! overwritten; a damaged slot falls back to the other one; reading an evicted position is a
//! `BadMedium` error, and a reader re-checks after every copy that its bytes were not evicted
//! meanwhile (by a backup running in another process). Truncating the file while it is mapped
//! kills the process (`SIGBUS`); holes in a file are allocated up front so that a full file
//! system cannot do the same.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::aligned::round_up;
use super::label::{label_block, new_label, parse_label};
use super::{DeviceError, Media, Mounted, PartReader, PartStart, Target};
use crate::catalog::MediumKind;
use crate::format::records::VolumeLabel;
use crate::format::{HEADER_LEN, Header, Kind, MAX_META_LEN};

#[cfg(test)]
mod tests;

use sys::Mapping;

/// Block size of NVRAM media: parts start on multiples of it.
pub const NVRAM_BLOCK: usize = 4096;
const BLOCK: u64 = NVRAM_BLOCK as u64;
/// Offset of the ring header block.
const HEADER_AT: u64 = BLOCK;
/// Offset of the first part.
pub const RING_START: u64 = 2 * BLOCK;
/// Offsets of the two ring header slots.
const SLOT_AT: [u64; 2] = [HEADER_AT, HEADER_AT + BLOCK / 2];
const SLOT_LEN: usize = 64;
const RING_MAGIC: [u8; 4] = *b"CNVR";
const RING_VERSION: u16 = 1;
/// Size of a region file created without `size=`.
pub const DEFAULT_SIZE: u64 = 256 << 20;
/// Smallest region.
pub const MIN_SIZE: u64 = 1 << 20;
/// Space a new part needs before the ring end; with less, it starts at the ring start.
pub const PART_RESERVE: u64 = 256 << 10;
/// Bits of a position holding the byte offset; the lap is above them.
const OFFSET_BITS: u32 = 44;
/// Largest region: offsets must fit in [`OFFSET_BITS`].
pub const MAX_SIZE: u64 = 1 << OFFSET_BITS;
/// Laps are kept in positions modulo this (positions stay below 2^63).
const LAP_TAGS: u64 = 1 << (63 - OFFSET_BITS);

const _: () = assert!(SLOT_LEN <= (BLOCK / 2) as usize);
const _: () = assert!(PART_RESERVE.is_multiple_of(BLOCK));
// A part that starts at the reserve still fits its session header and a continuation.
const _: () = assert!(PART_RESERVE >= 2 * (HEADER_LEN + MAX_META_LEN) as u64 + 2 * BLOCK);
// The smallest ring holds parts after a wrap.
const _: () = assert!(MIN_SIZE - RING_START >= 2 * PART_RESERVE);

/// The position of byte `offset` written in lap `lap`.
fn position(lap: u64, offset: u64) -> u64 {
    assert!(offset < MAX_SIZE);
    (lap % LAP_TAGS) << OFFSET_BITS | offset
}

/// A position's lap tag and byte offset.
fn split(position: u64) -> (u64, u64) {
    (position >> OFFSET_BITS, position & (MAX_SIZE - 1))
}

/// Where the ring ends in a region of `size` bytes.
fn ring_end(size: u64) -> u64 {
    size / BLOCK * BLOCK
}

/// A part evicted from the ring: its bytes are being overwritten by newer backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// Position of the part's first byte (as [`PartStart::position`] gave it).
    pub start: u64,
    /// Position just past its padding.
    pub end: u64,
}

/// The ring's state as its header records it. Offsets are byte offsets into the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// Updates so far.
    pub generation: u64,
    /// Offset of the oldest live byte.
    pub head: u64,
    /// Offset where the next part starts.
    pub tail: u64,
    /// Once wrapped, where the older lap's data ends.
    pub wrap_end: Option<u64>,
    /// Times the ring wrapped.
    pub laps: u64,
    /// Parts evicted so far.
    pub evicted: u64,
}

/// What a position holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locate {
    /// The label and ring header blocks; readable up to `end`.
    Meta { end: u64 },
    /// Live data of lap `lap`, readable up to `end`.
    Data { end: u64, lap: u64 },
    /// The end of the data (nothing written there yet).
    End,
    /// Bytes of lap (tag) `lap` that were evicted.
    Evicted { lap: u64 },
    /// Not a position on this region.
    Outside,
}

impl RingState {
    /// An empty ring.
    fn fresh() -> RingState {
        RingState { generation: 0, head: RING_START, tail: RING_START, wrap_end: None, laps: 0, evicted: 0 }
    }

    /// Whether nothing was ever written.
    fn is_empty(&self) -> bool {
        self.tail == RING_START && self.wrap_end.is_none() && self.laps == 0
    }

    /// Checks the invariants for a region whose ring ends at `end`.
    fn check(&self, end: u64) -> Result<(), &'static str> {
        let aligned =
            [self.head, self.tail, self.wrap_end.unwrap_or(0)].iter().all(|o| o.is_multiple_of(BLOCK));
        if !aligned {
            return Err("offsets off a block boundary");
        }
        let ok = match self.wrap_end {
            None => self.head == RING_START && RING_START <= self.tail && self.tail <= end,
            Some(w) => {
                self.laps > 0
                    && RING_START <= self.tail
                    && self.tail <= self.head
                    && self.head < w
                    && w <= end
            }
        };
        if ok { Ok(()) } else { Err("offsets outside the ring or out of order") }
    }

    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..4].copy_from_slice(&RING_MAGIC);
        b[4..6].copy_from_slice(&RING_VERSION.to_le_bytes());
        let fields =
            [self.generation, self.head, self.tail, self.wrap_end.unwrap_or(0), self.laps, self.evicted];
        for (i, v) in fields.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..60]);
        b[60..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a slot for a region whose ring ends at `end`.
    fn decode(b: &[u8; SLOT_LEN], end: u64) -> Result<RingState, &'static str> {
        if b[0..4] != RING_MAGIC {
            return Err("no ring header magic");
        }
        if b[60..] != crc32fast::hash(&b[..60]).to_le_bytes() {
            return Err("CRC mismatch");
        }
        if b[4..6] != RING_VERSION.to_le_bytes() {
            return Err("unknown ring header version");
        }
        if b[6..8] != [0; 2] || b[56..60] != [0; 4] {
            return Err("reserved bytes set");
        }
        let f = |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().expect("8"));
        let s = RingState {
            generation: f(0),
            head: f(1),
            tail: f(2),
            wrap_end: Some(f(3)).filter(|&w| w != 0),
            laps: f(4),
            evicted: f(5),
        };
        s.check(end)?;
        Ok(s)
    }

    /// Oldest-first position ranges of the live data.
    pub fn live(&self) -> Vec<std::ops::Range<u64>> {
        let mut out = Vec::with_capacity(2);
        if let Some(w) = self.wrap_end {
            out.push(position(self.laps - 1, self.head)..position(self.laps - 1, w));
        }
        if self.tail > RING_START {
            out.push(position(self.laps, RING_START)..position(self.laps, self.tail));
        }
        out
    }

    /// What position `pos` holds in a region of `size` bytes.
    fn locate(&self, size: u64, pos: u64) -> Locate {
        let (tag, off) = split(pos);
        let now = self.laps % LAP_TAGS;
        let older = self.laps.wrapping_sub(1) % LAP_TAGS;
        if off > size {
            return Locate::Outside;
        }
        if off < RING_START {
            return match (tag, self.laps) {
                (0, 0) => Locate::Meta { end: self.tail },
                (0, _) => Locate::Meta { end: RING_START },
                _ => Locate::Outside,
            };
        }
        if tag == now {
            return match off < self.tail {
                true => Locate::Data { end: self.tail, lap: self.laps },
                false => Locate::End,
            };
        }
        match self.wrap_end {
            Some(w) if tag == older && self.head <= off && off < w => {
                Locate::Data { end: w, lap: self.laps - 1 }
            }
            _ => Locate::Evicted { lap: tag },
        }
    }

    /// Evicts whole parts of the older lap until none lies before offset `upto`, appending them
    /// to `out`. `part_end(start, limit)` finds where the part at `start` ends.
    fn evict_until(&mut self, upto: u64, part_end: impl Fn(u64, u64) -> Option<u64>, out: &mut Vec<Evicted>) {
        while let Some(w) = self.wrap_end
            && self.head < upto
        {
            let lap = self.laps - 1;
            let end = match part_end(self.head, w).filter(|&e| e > self.head && e <= w) {
                Some(e) => e,
                None => {
                    // Not a well-formed part: evict only what the write needs.
                    tracing::warn!(target: "device", "NVRAM ring: no whole part at byte {} of lap {lap}; evicting up to {upto}", self.head);
                    round_up(upto, BLOCK).clamp(self.head + BLOCK, w)
                }
            };
            out.push(Evicted { start: position(lap, self.head), end: position(lap, end) });
            self.evicted += 1;
            self.head = end;
            if self.head >= w {
                self.wrap_end = None;
                self.head = RING_START;
            }
        }
    }

    /// Starts a new lap at the ring start (the ring must not be wrapped). Returns whether
    /// anything changed (an empty ring stays as it is).
    fn wrap(&mut self) -> bool {
        assert!(self.wrap_end.is_none(), "wrap of a wrapped ring");
        if self.tail == RING_START {
            return false;
        }
        self.wrap_end = Some(self.tail);
        self.tail = RING_START;
        self.laps += 1;
        true
    }
}

/// Where the part whose first record is at offset `start` ends (padding included), reading
/// records no further than `limit`; `None` when they do not form a whole part.
fn part_end(bytes: &[u8], start: u64, limit: u64) -> Option<u64> {
    let mut at = start;
    // Bounded: every step moves at least HEADER_LEN bytes towards `limit`.
    while at + HEADER_LEN as u64 <= limit {
        let head: &[u8; HEADER_LEN] = bytes.get(at as usize..)?.get(..HEADER_LEN)?.try_into().ok()?;
        let (h, _) = Header::decode(head, at).ok()?;
        at += HEADER_LEN as u64 + h.stored_len as u64;
        if at > limit {
            return None;
        }
        if matches!(h.kind, Kind::Trailer | Kind::Continuation) {
            return Some(round_up(at, BLOCK));
        }
    }
    None
}

/// Reads the ring state from a mapped region: `None` when both slots are blank.
fn read_ring(bytes: &[u8]) -> Result<Option<RingState>, String> {
    let end = ring_end(bytes.len() as u64);
    let mut best: Option<RingState> = None;
    let mut why = Vec::new();
    for (i, at) in SLOT_AT.iter().enumerate() {
        let slot: &[u8; SLOT_LEN] = bytes[*at as usize..][..SLOT_LEN].try_into().expect("slot length");
        if slot.iter().all(|&b| b == 0) {
            continue;
        }
        match RingState::decode(slot, end) {
            Ok(s) if s.generation % 2 != i as u64 => why.push("generation in the wrong slot"),
            Ok(s) if best.is_none_or(|b| s.generation > b.generation) => best = Some(s),
            Ok(_) => {}
            Err(e) => why.push(e),
        }
    }
    match (best, why.is_empty()) {
        (Some(s), _) => Ok(Some(s)),
        (None, true) => Ok(None),
        (None, false) => Err(format!("no valid NVRAM ring header ({})", why.join("; "))),
    }
}

/// The region's size: a regular file's length or a block device's.
fn region_size(file: &mut File, what: &str) -> Result<u64, DeviceError> {
    let meta = file.metadata().map_err(DeviceError::io("stat", what))?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(meta.len())
    } else if ft.is_block_device() {
        file.seek(SeekFrom::End(0)).map_err(DeviceError::io("find the size of", what))
    } else {
        Err(DeviceError::BadSpec {
            spec: format!("nvram:{what}"),
            detail: "not a regular file or block device (device DAX /dev/daxN.M is not \
                     supported: use an fsdax namespace such as /dev/pmem0, or a file)"
                .into(),
        })
    }
}

/// Opens (creating it when missing or empty) the region file for writing; returns it with its
/// size. An existing region keeps its size; `size` must then agree with it.
fn open_region(path: &Path, size: Option<u64>) -> Result<(File, u64), DeviceError> {
    let what = path.display().to_string();
    let spec = format!("nvram:{what}");
    let bad = |detail: String| DeviceError::BadSpec { spec: spec.clone(), detail };
    if let Some(s) = size
        && s < MIN_SIZE
    {
        return Err(bad(format!("size must be at least {MIN_SIZE} bytes")));
    }
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    let mut file = o.open(path).map_err(DeviceError::io("open", &what))?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => {
            bad("another coffer process is writing to it: wait for that backup to end".into())
        }
        std::fs::TryLockError::Error(e) => DeviceError::io("lock", &what)(e),
    })?;
    let len = region_size(&mut file, &what)?;
    let is_file = file.metadata().is_ok_and(|m| m.is_file());
    let size = if len == 0 && is_file {
        let want = round_up(size.unwrap_or(DEFAULT_SIZE), BLOCK);
        if want > MAX_SIZE {
            return Err(bad(format!("regions over {MAX_SIZE} bytes are not supported")));
        }
        file.set_len(want).map_err(DeviceError::io("set the size of", &what))?;
        want
    } else {
        if let Some(s) = size
            && s != len
            && round_up(s, BLOCK) != len
        {
            return Err(bad(format!(
                "the region is {len} bytes, not the {s} given by size=: drop size= to use it \
                 as it is, or name another file"
            )));
        }
        if len < MIN_SIZE {
            return Err(bad(format!("the region is {len} bytes; at least {MIN_SIZE} are needed")));
        }
        len
    };
    if size > MAX_SIZE {
        return Err(bad(format!("regions over {MAX_SIZE} bytes are not supported")));
    }
    if is_file {
        // Allocate holes now: writing a hole through the mapping on a full file system would
        // kill the process with SIGBUS.
        sys::allocate(&file, size).map_err(DeviceError::io("allocate", &what))?;
        file.sync_all().map_err(DeviceError::io("sync", &what))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(DeviceError::io("sync", dir.display().to_string()))?;
        }
    }
    Ok((file, size))
}

/// Checks what a mapped region holds: `None` when blank, else its label and ring state.
/// Anything that is not coffer's is refused.
fn check_region(bytes: &[u8], what: &str) -> Result<Option<(VolumeLabel, RingState)>, DeviceError> {
    let bad = |detail: String| DeviceError::BadMedium { what: what.to_owned(), detail };
    let ring = read_ring(bytes);
    if bytes[..NVRAM_BLOCK].iter().all(|&b| b == 0) {
        return match ring {
            Ok(None) => Ok(None),
            Ok(Some(r)) if r.is_empty() => Ok(None),
            Ok(Some(_)) => Err(bad("its label is gone but its ring header says it holds \
                                    backups: refusing to overwrite it"
                .into())),
            Err(_) => Err(bad("its second block holds data that is not coffer's: refusing to \
                               overwrite it; name a blank file or region"
                .into())),
        };
    }
    let label = parse_label(&bytes[..NVRAM_BLOCK], what).map_err(|e| {
        let hint = match ring {
            Ok(Some(r)) if r.is_empty() => {
                " (coffer was labelling it when interrupted: zero its first 8 KiB to start over)"
            }
            _ => "",
        };
        bad(format!(
            "holds something that is not a coffer volume label ({e}): refusing to overwrite it; \
             name a blank file or region{hint}"
        ))
    })?;
    if label.block_size as usize != NVRAM_BLOCK {
        return Err(bad(format!(
            "its label says block size {}, not {NVRAM_BLOCK}: not an NVRAM medium",
            label.block_size
        )));
    }
    match ring {
        Ok(Some(r)) => Ok(Some((label, r))),
        Ok(None) => Err(bad(format!(
            "{} has a coffer label but no NVRAM ring header (a disk volume file?): refusing \
             to use it",
            label.barcode
        ))),
        Err(e) => Err(bad(format!("{}: {e}", label.barcode))),
    }
}

/// A part being written.
#[derive(Debug, Clone, Copy)]
struct OpenPart {
    start: u64,
    /// Offset of the next byte.
    cur: u64,
}

/// Writes session parts into an NVRAM region. Holds an exclusive lock on it.
#[derive(Debug)]
pub struct NvramTarget {
    what: String,
    pool: String,
    /// Kept open for its lock.
    _file: File,
    map: Mapping,
    end: u64,
    label: Option<VolumeLabel>,
    ring: RingState,
    open: Option<OpenPart>,
    /// Lap and offset of the first part written since the last mount: not to be evicted.
    own_from: Option<(u64, u64)>,
    /// Evictions the caller has not taken yet (at most a lap's parts: own ones are kept).
    pending: Vec<Evicted>,
}

impl NvramTarget {
    /// A target on the region at `path` for media pool `pool`. A missing or empty file is
    /// created with `size` bytes (default [`DEFAULT_SIZE`]); an existing region keeps its size,
    /// and `size` must agree. A region holding anything but coffer's NVRAM medium is refused.
    pub fn new(path: &Path, size: Option<u64>, pool: &str) -> Result<NvramTarget, DeviceError> {
        let path = std::path::absolute(path).map_err(|e| DeviceError::BadSpec {
            spec: format!("nvram:{}", path.display()),
            detail: e.to_string(),
        })?;
        let what = format!("nvram:{}", path.display());
        let (file, size) = open_region(&path, size)?;
        let len = usize::try_from(size).expect("regions fit in memory on 64-bit hosts");
        let map = Mapping::new(&file, len, true).map_err(DeviceError::io("map", &what))?;
        let found = check_region(map.as_slice(), &what)?;
        if let Some((label, _)) = &found
            && label.pool != pool
        {
            return Err(DeviceError::BadMedium {
                what,
                detail: format!(
                    "it belongs to media pool '{}', not '{pool}': add pool={} to use it",
                    label.pool, label.pool
                ),
            });
        }
        let (label, ring) = match found {
            Some((l, r)) => (Some(l), r),
            None => (None, RingState::fresh()),
        };
        Ok(NvramTarget {
            what,
            pool: pool.to_owned(),
            _file: file,
            map,
            end: ring_end(size),
            label,
            ring,
            open: None,
            own_from: None,
            pending: Vec::new(),
        })
    }

    /// Parts evicted from this ring in all (persistent across runs).
    pub fn evicted(&self) -> u64 {
        self.ring.evicted
    }

    /// The parts evicted since the last call, oldest first: the catalog must forget every
    /// session with a part on this medium at a position in one of these ranges.
    pub fn take_evicted(&mut self) -> Vec<Evicted> {
        std::mem::take(&mut self.pending)
    }

    /// The ring's current state.
    pub fn ring(&self) -> RingState {
        self.ring
    }

    fn label(&self) -> &VolumeLabel {
        self.label.as_ref().expect("a medium is mounted")
    }

    fn mounted(&self, new: bool) -> Mounted {
        Mounted {
            label: self.label().clone(),
            capacity: self.end - RING_START,
            location: self.describe(),
            new,
            kind: MediumKind::Nvram,
        }
    }

    /// Writes the next generation of the ring state to its slot and syncs it.
    fn persist(&mut self) -> Result<(), DeviceError> {
        self.ring.generation += 1;
        let at = SLOT_AT[(self.ring.generation % 2) as usize] as usize;
        self.map.as_mut_slice()[at..at + SLOT_LEN].copy_from_slice(&self.ring.encode());
        let h = HEADER_AT as usize;
        self.map.sync(h..h + NVRAM_BLOCK).map_err(DeviceError::io("sync the ring header of", &self.what))
    }

    /// Labels the blank region: ring header first, so that a crash leaves it blank or whole.
    fn create_label(&mut self) -> Result<(), DeviceError> {
        let id = uuid::Uuid::new_v4();
        let barcode = format!("NVR-{}", &id.simple().to_string()[..12].to_uppercase());
        let mut label = new_label(barcode, &self.pool, NVRAM_BLOCK as u32);
        label.medium = *id.as_bytes();
        let block = label_block(&label, NVRAM_BLOCK);
        assert_eq!(block.len(), NVRAM_BLOCK);
        let h = HEADER_AT as usize;
        self.map.as_mut_slice()[h..h + NVRAM_BLOCK].fill(0);
        self.ring = RingState::fresh();
        self.persist()?;
        self.map.as_mut_slice()[..NVRAM_BLOCK].copy_from_slice(&block);
        self.map.sync(0..NVRAM_BLOCK).map_err(DeviceError::io("write label to", &self.what))?;
        tracing::info!(target: "device", "{}: labelled {}", self.what, label.barcode);
        self.label = Some(label);
        Ok(())
    }

    /// Makes sure no live part of the older lap lies before offset `upto`, evicting (durably)
    /// the ones that do. Refuses to evict this mount's own parts.
    fn make_room(&mut self, upto: u64) -> Result<(), DeviceError> {
        let Some(w) = self.ring.wrap_end else {
            return Ok(());
        };
        if self.ring.head >= upto {
            return Ok(());
        }
        if let Some((lap, from)) = self.own_from
            && lap + 1 == self.ring.laps
            && upto.min(w) > from
        {
            return Err(self.too_big());
        }
        let from = self.pending.len();
        let bytes = self.map.as_slice();
        self.ring.evict_until(upto, |s, l| part_end(bytes, s, l), &mut self.pending);
        for e in &self.pending[from..] {
            tracing::info!(target: "device", "{}: evicted the part at {}..{} for newer backups", self.what, e.start, e.end);
        }
        self.persist()
    }

    fn too_big(&self) -> DeviceError {
        DeviceError::Full {
            what: self.what.clone(),
            detail: format!(
                "this backup is larger than the NVRAM ring ({} bytes) and would overwrite its \
                 own first parts: use a larger region, or back up to a disk target",
                self.end - RING_START
            ),
        }
    }

    /// Starts a new lap at the ring start, evicting what is left of the older one first.
    fn wrap(&mut self) -> Result<(), DeviceError> {
        if self.ring.wrap_end.is_some() {
            if self.own_from.is_some_and(|(lap, _)| lap + 1 == self.ring.laps) {
                return Err(self.too_big());
            }
            self.make_room(self.end)?;
        }
        if self.ring.wrap() {
            tracing::info!(target: "device", "{}: wrapped to the ring start (lap {})", self.what, self.ring.laps);
            self.persist()?;
        }
        Ok(())
    }
}

impl Target for NvramTarget {
    fn take_evicted(&mut self) -> Vec<(u64, u64)> {
        NvramTarget::take_evicted(self).into_iter().map(|e| (e.start, e.end)).collect()
    }

    fn is_ring(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.what.clone()
    }

    fn block_size(&self) -> usize {
        NVRAM_BLOCK
    }

    fn mount(&mut self) -> Result<Mounted, DeviceError> {
        assert!(self.open.is_none(), "mount with a part open");
        self.own_from = None;
        let new = self.label.is_none();
        if new {
            self.create_label()?;
        }
        Ok(self.mounted(new))
    }

    fn begin_part(&mut self) -> Result<PartStart, DeviceError> {
        assert!(self.open.is_none(), "a part is already open");
        if self.end - self.ring.tail < PART_RESERVE {
            self.wrap()?;
        }
        let tail = self.ring.tail;
        self.own_from.get_or_insert((self.ring.laps, tail));
        self.open = Some(OpenPart { start: tail, cur: tail });
        Ok(PartStart {
            medium: self.label().medium,
            position: position(self.ring.laps, tail),
            file_number: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        let cur = self.open.expect("write outside a part").cur;
        let len = bytes.len() as u64;
        if len > self.end - cur {
            return Err(DeviceError::Full {
                what: self.what.clone(),
                detail: "the part reached the end of the ring".into(),
            });
        }
        self.make_room(round_up(cur + len, BLOCK))?;
        let at = cur as usize;
        self.map.as_mut_slice()[at..at + bytes.len()].copy_from_slice(bytes);
        self.open.as_mut().expect("open").cur += len;
        Ok(())
    }

    fn remaining(&self) -> u64 {
        let cur = self.open.map_or(self.ring.tail, |p| p.cur);
        self.end.saturating_sub(cur + BLOCK)
    }

    fn end_part(&mut self) -> Result<(), DeviceError> {
        let p = self.open.expect("end_part outside a part");
        let end = round_up(p.cur, BLOCK);
        self.make_room(end)?;
        self.map.as_mut_slice()[p.cur as usize..end as usize].fill(0);
        if end > p.start {
            self.map.sync(p.start as usize..end as usize).map_err(DeviceError::io("sync", &self.what))?;
        }
        self.ring.tail = end;
        self.persist()?;
        self.open = None;
        Ok(())
    }

    fn next_medium(&mut self) -> Result<Mounted, DeviceError> {
        assert!(self.open.is_none(), "close the part before changing media");
        self.wrap()?;
        Ok(self.mounted(false))
    }
}

/// Reads an NVRAM region back. Maps it (read-only) on first use.
#[derive(Debug)]
pub struct NvramMedia {
    path: PathBuf,
    what: String,
    map: Option<Arc<Mapping>>,
}

impl NvramMedia {
    /// The region at `path`.
    pub fn new(path: &Path) -> NvramMedia {
        NvramMedia { path: path.to_owned(), what: format!("nvram:{}", path.display()), map: None }
    }

    fn mapped(&mut self, barcode: &str) -> Result<Arc<Mapping>, DeviceError> {
        if let Some(m) = &self.map {
            return Ok(m.clone());
        }
        let path = self.path.display().to_string();
        let mut file = File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DeviceError::MissingMedium {
                barcode: barcode.to_owned(),
                target: self.what.clone(),
                detail: format!("{path} does not exist: bring it back, or restore from another copy"),
            },
            _ => DeviceError::io("open", &path)(e),
        })?;
        let size = region_size(&mut file, &path)?;
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
            return Err(DeviceError::BadMedium {
                what: self.what.clone(),
                detail: format!("{size} bytes: not a coffer NVRAM region"),
            });
        }
        let len = usize::try_from(size).expect("regions fit in memory on 64-bit hosts");
        let map = Arc::new(Mapping::new(&file, len, false).map_err(DeviceError::io("map", &path))?);
        self.map = Some(map.clone());
        Ok(map)
    }

    /// The ring's current state.
    pub fn ring(&mut self) -> Result<RingState, DeviceError> {
        let map = self.mapped("?")?;
        match check_region(map.as_slice(), &self.what)? {
            Some((_, r)) => Ok(r),
            None => Ok(RingState::fresh()),
        }
    }
}

impl Media for NvramMedia {
    fn kind(&self) -> MediumKind {
        MediumKind::Nvram
    }

    fn open(&mut self, barcode: &str, pos: u64) -> Result<Box<dyn PartReader>, DeviceError> {
        let map = self.mapped(barcode)?;
        let bad = |detail: String| DeviceError::BadMedium { what: self.what.clone(), detail };
        let Some((label, ring)) = check_region(map.as_slice(), &self.what)? else {
            return Err(bad(format!("blank: {barcode} is not here")));
        };
        if label.barcode != barcode {
            return Err(bad(format!("its label says {}, not {barcode}", label.barcode)));
        }
        let (lap, start, end) = match ring.locate(map.len() as u64, pos) {
            Locate::Meta { end } => (0, split(pos).1, end),
            Locate::Data { end, lap } => (lap, split(pos).1, end),
            Locate::End => (ring.laps, split(pos).1, split(pos).1),
            Locate::Evicted { lap } => {
                return Err(bad(format!(
                    "the data at byte {} of lap {lap} was overwritten by newer backups (the ring \
                     is on lap {}): this part is gone",
                    split(pos).1,
                    ring.laps
                )));
            }
            Locate::Outside => {
                return Err(bad(format!("position {pos} is not on this {}-byte region", map.len())));
            }
        };
        Ok(Box::new(NvramReader { map, what: self.what.clone(), lap, pos: start, end }))
    }

    fn labels(&mut self) -> Result<Vec<VolumeLabel>, DeviceError> {
        let map = self.mapped("?")?;
        Ok(check_region(map.as_slice(), &self.what)?.map(|(l, _)| l).into_iter().collect())
    }

    fn part_ranges(&mut self, _barcode: &str) -> Result<Option<Vec<super::PartRange>>, DeviceError> {
        Ok(Some(self.ring()?.live().into_iter().map(super::PartRange::bytes).collect()))
    }
}

/// Sequential reader of a region's bytes.
#[derive(Debug)]
struct NvramReader {
    map: Arc<Mapping>,
    what: String,
    /// Lap of the data read (positions in the label blocks carry none).
    lap: u64,
    /// Offset of the next byte.
    pos: u64,
    end: u64,
}

impl PartReader for NvramReader {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DeviceError> {
        let n = (self.end.saturating_sub(self.pos)).min(out.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let bytes = self.map.as_slice();
        out[..n].copy_from_slice(&bytes[self.pos as usize..][..n]);
        // Another process may have evicted these bytes while they were copied: the header
        // says so before they are overwritten.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let data = self.pos.max(RING_START);
        if data < self.pos + n as u64 {
            let now = read_ring(bytes).ok().flatten();
            let live = now.map(|r| r.locate(bytes.len() as u64, position(self.lap, data)));
            if !matches!(live, Some(Locate::Data { .. })) {
                return Err(DeviceError::BadMedium {
                    what: self.what.clone(),
                    detail: format!(
                        "the data at byte {data} was overwritten by a newer backup while being \
                         read"
                    ),
                });
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn position(&self) -> u64 {
        if self.pos < RING_START { self.pos } else { position(self.lap, self.pos) }
    }
}

/// The OS calls: mapping, syncing and allocating a region. The only unsafe code of the module.
mod sys {
    use std::fs::File;
    use std::ops::Range;
    use std::os::fd::AsRawFd;
    use std::ptr::NonNull;

    /// A shared mapping of a whole file or device, unmapped on drop.
    #[derive(Debug)]
    pub(super) struct Mapping {
        ptr: NonNull<u8>,
        len: usize,
        writable: bool,
    }

    // SAFETY: the mapping is plain memory owned by this value, not tied to any thread.
    unsafe impl Send for Mapping {}
    // SAFETY: through `&Mapping` the memory is only read (`as_slice`, `sync`); writing needs
    // `&mut Mapping`.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        /// Maps the first `len` bytes of `file` (`MAP_SHARED`), for writing when `writable`.
        pub(super) fn new(file: &File, len: usize, writable: bool) -> std::io::Result<Mapping> {
            assert!(len > 0, "empty mapping");
            let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
            // SAFETY: a new mapping at an address the kernel chooses (null hint), so no memory
            // of this process is replaced; the descriptor is open for as long as the call runs.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let ptr = NonNull::new(p.cast::<u8>()).expect("mmap never returns null here");
            Ok(Mapping { ptr, len, writable })
        }

        /// Bytes mapped.
        pub(super) fn len(&self) -> usize {
            self.len
        }

        /// The mapped bytes.
        pub(super) fn as_slice(&self) -> &[u8] {
            // SAFETY: `ptr..ptr + len` is mapped readable until `self` drops, and the borrow
            // cannot outlive `self`. Writers in other processes may change the bytes
            // (MAP_SHARED): everything read is validated (CRCs, ring header), as from any medium.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }

        /// The mapped bytes, for writing.
        pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
            assert!(self.writable, "write to a read-only mapping");
            // SAFETY: as in `as_slice`, and mapped writable; `&mut self` makes this the only
            // slice of the mapping alive.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
        }

        /// Writes `range` (widened to whole pages) back to the medium and waits (`MS_SYNC`).
        pub(super) fn sync(&self, range: Range<usize>) -> std::io::Result<()> {
            assert!(range.start <= range.end && range.end <= self.len, "sync outside the map");
            let page = page_size();
            let start = range.start / page * page;
            let len = range.end - start;
            // SAFETY: `start..start + len` lies within the mapping (`start` is page-aligned, as
            // msync requires, and the mapping starts on a page); msync reads no Rust memory.
            let rc = unsafe { libc::msync(self.ptr.as_ptr().add(start).cast(), len, libc::MS_SYNC) };
            if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` are exactly what mmap returned, and no slice of the mapping
            // outlives `self`.
            let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
            assert_eq!(rc, 0, "munmap of a live mapping failed");
        }
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    }

    /// Allocates every block of the first `len` bytes of `file` (filling holes).
    pub(super) fn allocate(file: &File, len: u64) -> std::io::Result<()> {
        let len = libc::off_t::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: posix_fallocate only takes integers; the descriptor is open during the call.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => Ok(()),
            // Some file systems cannot (tmpfs before 3.5, FUSE): holes stay, as with any file.
            libc::EOPNOTSUPP => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}
