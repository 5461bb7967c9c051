//! The virtual tape library: a changer and tape drives that answer real SCSI CDBs through
//! [`Transport`](crate::scsi::transport::Transport), so the same code drives it and a real
//! library. It is the built-in default library and the test double.
//!
//! Model: one [`LibraryState`] behind a mutex, shared by the [`Changer`] (SMC) and every
//! [`Drive`] (SSC). Element addresses, as the element address assignment page (0x1D) reports:
//! the robot at [`TRANSPORT_ADDR`], drives from [`DRIVE_BASE`], storage slots from
//! [`SLOT_BASE`], import/export slots from [`IE_BASE`]. A cartridge has a barcode
//! (`PREFIX0001L8`…, cleaning cartridges `CLN001L1`…), a write-protect tab and a cleaning
//! flag; its contents are a [`Tape`] of records and filemarks in a [`CartridgeStore`] (memory
//! for tests, one file per cartridge for the product). A loaded tape keeps only its index in
//! memory (8 bytes an object); record bytes stay in the store, appended as the host writes and
//! read back by offset (the file format is specified in the `tape` module). Moving a cartridge into a
//! drive opens its tape and queues UNIT ATTENTION 28/00. WRITE FILEMARKS is the durability
//! point (fdatasync), as is the cartridge leaving the drive (UNLOAD, MOVE MEDIUM). Positions
//! count logical objects (records and filemarks) as SSC does. Past capacity minus
//! [`EARLY_WARNING_PERCENT`] a write succeeds with EOM (early warning); past capacity nothing
//! is written and VOLUME OVERFLOW is reported. With the board's `positioning = false` the
//! drives refuse READ POSITION and LOCATE(10/16) with 05/20/00, as the Linux `tgt` target does,
//! so that positioning by SPACE is exercised.
//!
//! Speed model (drives with a `drive_rate`): each drive streams at that rate from a buffer of
//! `drive_buffer` bytes, in the time of a [`Clock`], and the host loses that time for real: a
//! write returns once the buffer has room for it, so a host faster than the drive is held to
//! its rate. When the buffer runs dry while streaming the drive stops (counted in
//! [`DriveCounters::repositions`]) and waits for its buffer to fill again; the write that
//! starts it pays `drive_reposition_ms` (default [`DEFAULT_REPOSITION_MS`]). WRITE FILEMARKS
//! (unless immediate), REWIND and LOAD/UNLOAD return once the buffer is on tape. The wait is
//! computed under the library's lock and slept after releasing it, so other drives and the
//! robot carry on; [`DriveCounters::waited`] adds it up. On a [`ManualClock`] the wait moves
//! the clock at once: tests stay instant and deterministic.
//!
//! Fault model (the board's `fault` list, applied deterministically): MEDIUM ERROR 03/11
//! reading or 03/0C writing a given block; a drive that goes offline after n bytes written
//! (NOT READY 04/03 once, then every command fails at the transport); UNIT ATTENTION 29/00
//! after n bytes; the k-th MOVE MEDIUM failing with HARDWARE ERROR 15/01 or a transport
//! timeout; the door open (while [`DOOR_OPEN_FILE`] lies in a [`FileStore`]'s directory: READ
//! ELEMENT STATUS, MOVE MEDIUM and INITIALIZE ELEMENT STATUS answer NOT READY 04/03 until it
//! is removed); a cartridge in a slot marked foreign (when blank, its first load writes a
//! coffer label naming barcode `ZZ<barcode>` onto it; [`Changer::foreign`] lists them); a write-protected cartridge (DATA PROTECT
//! 27/00); TapeAlert CLEAN NOW after n bytes (LOG SENSE page 0x2E), once per opening; a
//! drive that cleaning does not help. Cleaning (wear, cycles, worn cleaning cartridges) is
//! described in the `cleaning` module. A store that fails to
//! write or read answers MEDIUM ERROR 03/0C or 03/11; a cartridge file torn by a crash is cut
//! back to its last whole object when loaded (what was written after the last filemark may
//! be lost, as from a real drive's buffer).
//!
//! Not modelled: partitions, compression of data (the page is accepted and reported), more
//! than one initiator, reservations, the time a robot move, a rewind or a locate takes, the
//! time a read takes unless the board gives a `drive_read_rate` (then each read costs its
//! bytes at that rate, without read-ahead), the backhitch after a synchronous filemark, an
//! immediate REWIND or UNLOAD (they always wait for the buffer), speed matching.

mod changer;
mod cleaning;
mod drive;
mod speed;
mod state;
mod tape;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use changer::Changer;
pub use drive::Drive;
pub use state::{DriveCounters, LibraryState};
pub use tape::{
    CartridgeStore, DOOR_OPEN_FILE, FileMedium, FileStore, Medium, MemoryMedium, MemoryStore, Object, Tape,
};

use crate::board::{Fault, VirtualLibrary};
use crate::device::spec::parse_size;

/// Element address of the robot (medium transport element).
pub const TRANSPORT_ADDR: u16 = 0;
/// Element address of drive 0.
pub const DRIVE_BASE: u16 = 0x100;
/// Element address of storage slot 1.
pub const SLOT_BASE: u16 = 0x1000;
/// Element address of import/export slot 1.
pub const IE_BASE: u16 = 0x2000;
/// Early-warning zone, in percent of the capacity.
pub const EARLY_WARNING_PERCENT: u64 = 2;
/// Largest block a drive reads or writes.
pub const MAX_BLOCK: u32 = 8 << 20;
/// A drive's buffer when the board names none.
pub const DEFAULT_DRIVE_BUFFER: u64 = 256 << 20;
/// Time a drive takes to reposition after its buffer ran dry, when the board names none.
pub const DEFAULT_REPOSITION_MS: u64 = 1000;

const _: () = assert!(SLOT_BASE as u32 + crate::board::MAX_ELEMENTS <= IE_BASE as u32);
const _: () = assert!(MAX_BLOCK as usize <= tape::MAX_RECORD);

/// Simulated (or real) time for the speed model.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary fixed start.
    fn now(&self) -> Duration;
    /// Lets `d` pass: the host waits on the drive.
    fn sleep(&self, d: Duration);
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// Time passes at once: the wait is simulated, the test does not stall.
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

/// The monotonic clock of the machine.
#[derive(Debug)]
pub struct SystemClock(std::time::Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Why a library could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The store failed.
    #[error("virtual library {name}: cartridge store: {source}")]
    Store {
        /// The library's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration does not describe a library (more cartridges than slots…).
    #[error("virtual library {name}: {what}; fix the board file")]
    Config {
        /// The library's name.
        name: String,
        /// What is wrong.
        what: String,
    },
}

/// An open virtual library: its changer and drives, sharing one state.
#[derive(Debug)]
pub struct Opened {
    /// The changer (SMC).
    pub changer: Changer,
    /// The drives (SSC), in data transfer element order.
    pub drives: Vec<Drive>,
}

/// Opens the library `config` over `store` with `clock` for the speed model. A saved element
/// map in the store wins over the initial layout (cartridges stay where they were moved).
pub fn open(
    config: &VirtualLibrary,
    store: Box<dyn CartridgeStore>,
    clock: Arc<dyn Clock>,
) -> Result<Opened, SimError> {
    let state = LibraryState::new(config, store)?;
    let n = state.drive_count();
    let shared = Arc::new(Mutex::new(state));
    let drives = (0..n).map(|i| Drive::new(shared.clone(), i, clock.clone())).collect();
    Ok(Opened { changer: Changer::new(shared, clock), drives })
}

/// A size from the board (checked when the board was parsed).
fn size_of(v: &str) -> u64 {
    parse_size(v).unwrap_or(0)
}

/// Faults that concern drive `drive`, with sizes parsed.
fn drive_faults(faults: &[Fault], drive: u32) -> state::DriveFaults {
    let mut f = state::DriveFaults::default();
    for fault in faults {
        match fault {
            Fault::MediumError { drive: d, block } if *d == drive => f.medium_error.push(*block),
            Fault::DriveOffline { drive: d, after } if *d == drive => f.offline_after = Some(size_of(after)),
            Fault::UnitAttention { drive: d, after } if *d == drive => {
                f.attention_after = Some(size_of(after))
            }
            Fault::CleaningRequired { drive: d, after } if *d == drive => {
                f.clean_after = Some(size_of(after))
            }
            Fault::DirtyDrive { drive: d } if *d == drive => f.dirty = true,
            _ => {}
        }
    }
    f
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cleaning;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_store;
