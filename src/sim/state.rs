//! The library's state: which cartridge is in which element, and each drive's loaded tape,
//! position, settings, counters and pending conditions. Pure data and rules; the transports
//! turn CDBs into calls here.

use std::time::Duration;

use super::speed::{Hold, Speed};
use super::tape::{CartridgeStore, Tape};
use super::{DRIVE_BASE, EARLY_WARNING_PERCENT, IE_BASE, SLOT_BASE, SimError, TRANSPORT_ADDR};
use crate::board::{Fault, VirtualLibrary};
use crate::scsi::cdb::ElementType;
use crate::scsi::pages::TapeAlert;
use crate::scsi::sense::{Sense, SenseKey};

/// A cartridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cartridge {
    /// Its barcode.
    pub barcode: String,
    /// Its write-protect tab is set.
    pub write_protected: bool,
    /// A cleaning cartridge.
    pub cleaning: bool,
    /// Its label is not its barcode (injected fault).
    pub foreign: bool,
}

impl Cartridge {
    /// A cartridge brought from elsewhere: known only by its barcode.
    pub(super) fn stranger(barcode: String) -> Cartridge {
        let cleaning = barcode.starts_with(crate::library::inventory::CLEANING_PREFIX);
        Cartridge { barcode, write_protected: false, cleaning, foreign: false }
    }
}

/// One element's content.
#[derive(Debug, Clone, Default)]
pub(super) struct Place {
    pub cart: Option<Cartridge>,
    /// Element the cartridge came from.
    pub source: Option<u16>,
}

/// Faults injected into one drive.
#[derive(Debug, Clone, Default)]
pub(super) struct DriveFaults {
    pub medium_error: Vec<u64>,
    pub offline_after: Option<u64>,
    pub attention_after: Option<u64>,
    pub clean_after: Option<u64>,
    /// Cleaning does not clear the drive's cleaning flags.
    pub dirty: bool,
}

/// What a drive has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriveCounters {
    /// Bytes written since the library was opened.
    pub bytes: u64,
    /// Times the buffer ran dry while streaming and the drive had to reposition.
    pub repositions: u64,
    /// Time the host was held back: the drive's rate, repositions, flushes.
    pub waited: Duration,
}

/// One drive.
#[derive(Debug, Default)]
pub(super) struct DriveState {
    pub place: Place,
    pub tape: Tape,
    /// Threaded and ready (false after UNLOAD).
    pub threaded: bool,
    pub pos: usize,
    pub block_size: u32,
    pub compression: bool,
    pub attention: Option<(u8, u8)>,
    /// `Some(false)`: NOT READY once more; `Some(true)`: gone.
    pub offline: Option<bool>,
    pub counters: DriveCounters,
    pub alerts: TapeAlert,
    pub speed: Speed,
    /// How long the command being run holds the host back, once the library is released.
    pub hold: Duration,
    pub faults: DriveFaults,
    /// Bytes written since the last cleaning (kept in the store).
    pub wear: u64,
    /// Bytes after which the drive asks for routine cleaning.
    pub clean_every: Option<u64>,
    /// The cleaning cycle of the cleaning cartridge in the drive.
    pub cleaning: Option<super::cleaning::Cycle>,
}

/// The whole library.
pub struct LibraryState {
    pub(super) name: String,
    pub(super) slots: Vec<Place>,
    pub(super) ie: Vec<Place>,
    pub(super) drives: Vec<DriveState>,
    pub(super) store: Box<dyn CartridgeStore>,
    pub(super) capacity: u64,
    pub(super) moves: u32,
    pub(super) move_failures: Vec<(u32, bool)>,
    /// Drives answer READ POSITION and LOCATE (false: refused, like Linux `tgt`).
    pub(super) positioning: bool,
    /// Cartridges of the library's set that a person took out through a mail slot (in the
    /// vault): their files stay in the store, ready to be put back.
    pub(super) outside: Vec<Cartridge>,
    /// Uses a cleaning cartridge has.
    pub(super) cleaning_life: u32,
    /// How long a cleaning cycle takes.
    pub(super) cleaning_time: Duration,
}

impl LibraryState {
    pub(super) fn new(
        c: &VirtualLibrary,
        mut store: Box<dyn CartridgeStore>,
    ) -> Result<LibraryState, SimError> {
        let err = |what: String| SimError::Config { name: c.name.clone(), what };
        if c.drives > u32::from(SLOT_BASE - DRIVE_BASE) {
            return Err(err(format!("{} drives: at most {}", c.drives, SLOT_BASE - DRIVE_BASE)));
        }
        if c.cartridges + c.cleaning > c.slots {
            return Err(err(format!(
                "{} cartridges and {} cleaning do not fit {} slots",
                c.cartridges, c.cleaning, c.slots
            )));
        }
        let protected: Vec<&str> = c
            .faults
            .iter()
            .filter_map(
                |f| if let Fault::WriteProtected { barcode } = f { Some(barcode.as_str()) } else { None },
            )
            .collect();
        let foreign: Vec<u32> = c
            .faults
            .iter()
            .filter_map(|f| if let Fault::WrongCartridge { slot } = f { Some(*slot) } else { None })
            .collect();
        let cart = |barcode: String, cleaning: bool| Cartridge {
            write_protected: protected.contains(&barcode.as_str()),
            barcode,
            cleaning,
            foreign: false,
        };
        let mut all: Vec<Cartridge> =
            (1..=c.cartridges).map(|i| cart(format!("{}{i:04}L8", c.barcode_prefix), false)).collect();
        all.extend((1..=c.cleaning).map(|i| cart(format!("CLN{i:03}L1"), true)));
        let mut s = LibraryState {
            name: c.name.clone(),
            slots: vec![Place::default(); c.slots as usize],
            ie: vec![Place::default(); c.import_export as usize],
            drives: (0..c.drives).map(|_| DriveState::default()).collect(),
            store: Box::new(super::MemoryStore::default()),
            capacity: c.capacity_bytes(),
            moves: 0,
            positioning: c.positioning,
            cleaning_life: c.cleaning_life.unwrap_or(crate::board::DEFAULT_CLEANING_LIFE),
            cleaning_time: Duration::from_millis(
                c.cleaning_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .unwrap_or(crate::board::DEFAULT_CLEANING_MS as u64),
            ),
            move_failures: c
                .faults
                .iter()
                .filter_map(|f| {
                    if let Fault::MoveFailure { move_number, timeout } = f {
                        Some((*move_number, *timeout))
                    } else {
                        None
                    }
                })
                .collect(),
            outside: Vec::new(),
        };
        let map = store.load_map().map_err(|source| SimError::Store { name: c.name.clone(), source })?;
        s.store = store;
        match map {
            Some(map) => {
                for (addr, barcode) in map {
                    // A cartridge not of the set was put in by a person (see `put_in`).
                    let k = match all.iter().position(|x| x.barcode == barcode) {
                        Some(k) => all.remove(k),
                        None => Cartridge::stranger(barcode),
                    };
                    let Some(place) = s.place_mut(addr) else { continue };
                    place.cart = Some(k);
                }
            }
            None => {
                let cleaning_start = c.slots - c.cleaning;
                for k in all.drain(..) {
                    let slot = if k.cleaning {
                        cleaning_start + k.barcode[3..6].parse::<u32>().unwrap_or(1) - 1
                    } else {
                        k.barcode[c.barcode_prefix.len()..][..4].parse::<u32>().unwrap_or(1) - 1
                    };
                    s.slots[slot as usize].cart = Some(k);
                }
            }
        }
        // Cartridges of the set that the saved map places nowhere were taken out by a person.
        s.outside = all;
        for slot in foreign {
            if let Some(k) = s.slots.get_mut(slot as usize - 1).and_then(|p| p.cart.as_mut()) {
                k.foreign = true;
            }
        }
        for (i, d) in s.drives.iter_mut().enumerate() {
            d.faults = super::drive_faults(&c.faults, i as u32);
            d.speed = Speed::new(
                c.drive_rate.as_deref().map(super::size_of),
                c.drive_buffer.as_deref().map_or(super::DEFAULT_DRIVE_BUFFER, super::size_of),
                Duration::from_millis(
                    c.drive_reposition_ms
                        .and_then(|ms| u64::try_from(ms).ok())
                        .unwrap_or(super::DEFAULT_REPOSITION_MS),
                ),
            )
            .reading_at(c.drive_read_rate.as_deref().map(super::size_of));
        }
        let store_err = |source| SimError::Store { name: c.name.clone(), source };
        let wear = s.store.load_wear().map_err(store_err)?;
        for (i, d) in s.drives.iter_mut().enumerate() {
            d.clean_every = c.clean_every.as_deref().map(super::size_of);
            d.wear_by(wear.get(i).copied().unwrap_or(0));
        }
        for i in 0..s.drives.len() {
            if s.drives[i].place.cart.is_some() {
                s.load_drive(i, Duration::ZERO).map_err(store_err)?;
            }
        }
        Ok(s)
    }

    /// Number of drives.
    pub fn drive_count(&self) -> usize {
        self.drives.len()
    }

    /// The kind and index of element `addr`, if it exists.
    pub(super) fn element(&self, addr: u16) -> Option<(ElementType, usize)> {
        let within = |base: u16, n: usize| addr.checked_sub(base).map(usize::from).filter(|i| *i < n);
        if addr == TRANSPORT_ADDR {
            return Some((ElementType::Transport, 0));
        }
        None.or_else(|| within(DRIVE_BASE, self.drives.len()).map(|i| (ElementType::DataTransfer, i)))
            .or_else(|| within(SLOT_BASE, self.slots.len()).map(|i| (ElementType::Storage, i)))
            .or_else(|| within(IE_BASE, self.ie.len()).map(|i| (ElementType::ImportExport, i)))
    }

    pub(super) fn place(&self, addr: u16) -> Option<&Place> {
        match self.element(addr)? {
            (ElementType::DataTransfer, i) => Some(&self.drives[i].place),
            (ElementType::Storage, i) => Some(&self.slots[i]),
            (ElementType::ImportExport, i) => Some(&self.ie[i]),
            (ElementType::Transport, _) => None,
        }
    }

    pub(super) fn place_mut(&mut self, addr: u16) -> Option<&mut Place> {
        match self.element(addr)? {
            (ElementType::DataTransfer, i) => Some(&mut self.drives[i].place),
            (ElementType::Storage, i) => Some(&mut self.slots[i]),
            (ElementType::ImportExport, i) => Some(&mut self.ie[i]),
            (ElementType::Transport, _) => None,
        }
    }

    /// Which cartridge is where, for the store.
    pub(super) fn map(&self) -> Vec<(u16, String)> {
        let drives = self.drives.iter().enumerate().map(|(i, d)| (DRIVE_BASE + i as u16, &d.place));
        let slots = self.slots.iter().enumerate().map(|(i, p)| (SLOT_BASE + i as u16, p));
        let ie = self.ie.iter().enumerate().map(|(i, p)| (IE_BASE + i as u16, p));
        drives
            .chain(slots)
            .chain(ie)
            .filter_map(|(a, p)| Some((a, p.cart.as_ref()?.barcode.clone())))
            .collect()
    }

    /// Drive `i` received a cartridge at `now`: load its tape, position at the start, report
    /// 28/00; a cleaning cartridge starts a cleaning cycle instead.
    pub(super) fn load_drive(&mut self, i: usize, now: Duration) -> std::io::Result<()> {
        let barcode = self.drives[i].place.cart.as_ref().map(|k| k.barcode.clone()).unwrap_or_default();
        let mut tape = self.store.load(&barcode)?;
        if self.drives[i].place.cart.as_ref().is_some_and(|k| k.foreign) && tape.is_empty() {
            // The injected wrong cartridge: it carries another cartridge's coffer label, as a
            // cartridge put in the wrong slot (or with a wrong barcode sticker) would.
            let other = crate::device::label::new_label(format!("ZZ{barcode}"), "default", FOREIGN_BLOCK);
            tape.write_records(0, &[&crate::device::label::label_block(&other, FOREIGN_BLOCK as usize)])?;
            tape.write_filemarks(1, 1)?;
            tape.sync()?;
        }
        let d = &mut self.drives[i];
        d.tape = tape;
        d.pos = 0;
        d.threaded = true;
        d.attention = Some((0x28, 0x00));
        d.speed.stop();
        if d.place.cart.as_ref().is_some_and(|k| k.cleaning) {
            return self.start_cleaning(i, now);
        }
        Ok(())
    }

    /// Makes drive `i`'s tape durable.
    pub(super) fn save_drive(&mut self, i: usize) -> std::io::Result<()> {
        self.drives[i].tape.sync()?;
        // The wear of what was just made durable is kept too: a run that ends without another
        // robot move must not forget it (the drives would never ask for cleaning across runs).
        let wear = self.wear();
        self.store.save_wear(&wear)
    }

    /// Drive `i`'s cartridge leaves it: its tape is made durable and closed.
    pub(super) fn take_from_drive(&mut self, i: usize) -> std::io::Result<()> {
        self.save_drive(i)?;
        let d = &mut self.drives[i];
        d.tape = Tape::default();
        d.threaded = false;
        d.pos = 0;
        d.speed.stop();
        d.cleaning_ended();
        Ok(())
    }

    /// Each drive's bytes written since its last cleaning, for the store.
    pub(super) fn wear(&self) -> Vec<u64> {
        self.drives.iter().map(|d| d.wear).collect()
    }

    /// Early-warning threshold in bytes.
    pub(super) fn early_warning(&self) -> u64 {
        self.capacity - self.capacity / 100 * EARLY_WARNING_PERCENT
    }
}

/// Block size of the label a foreign cartridge carries.
const FOREIGN_BLOCK: u32 = 256 << 10;

/// NOT READY, MEDIUM NOT PRESENT.
pub(super) fn no_medium() -> Sense {
    Sense::new(SenseKey::NotReady, 0x3A, 0x00)
}

impl DriveState {
    /// Charges the host for a write or flush: it waits once the library is released.
    pub(super) fn pay(&mut self, h: Hold) {
        self.hold += h.wait;
        self.counters.repositions += u64::from(h.repositioned);
    }
}

impl std::fmt::Debug for LibraryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryState").field("name", &self.name).field("map", &self.map()).finish()
    }
}
