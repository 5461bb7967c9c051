//! Tape: what the tape target needs from a drive ([`TapeIo`]), implemented over SSC commands
//! ([`drive::TapeDrive`], SG_IO or the virtual library) and over the Linux `st` driver
//! ([`st`]: `/dev/nstN`, io_uring for records, the `MTIOCTOP` ioctls for filemarks, spacing and
//! positioning). The tape target (parts in fixed blocks, a filemark per part as its durability
//! point, early warning to the next cartridge) builds on it.

pub mod drive;
pub mod st;

pub use drive::{Read, TapeDrive, TapeError, Written};
pub use st::StDrive;

/// A position on a tape: logical objects (blocks and filemarks) and filemarks before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapePos {
    /// Logical object number (blocks and filemarks from the beginning).
    pub object: u64,
    /// File number (filemarks from the beginning).
    pub file: u64,
}

/// One tape drive as the tape target and the library manager use it.
pub trait TapeIo: Send {
    /// The drive, for people (`vlib drive 0`, `/dev/nst0`).
    fn name(&self) -> &str;
    /// Waits out unit attentions; afterwards the position is unknown (rewind or locate, and
    /// re-read the label, before writing).
    fn ready(&mut self) -> Result<(), TapeError>;
    /// Fixed blocks of `len` bytes (0: variable).
    fn set_block_size(&mut self, len: u32) -> Result<(), TapeError>;
    /// Writes whole blocks (fixed mode: any multiple of the block size; variable: one record).
    fn write_blocks(&mut self, data: &[u8]) -> Result<Written, TapeError>;
    /// Writes one filemark and returns once everything before it is on the medium.
    fn write_filemark(&mut self) -> Result<(), TapeError>;
    /// Reads the next block into `buf`.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<Read, TapeError>;
    /// Rewinds to the beginning.
    fn rewind(&mut self) -> Result<(), TapeError>;
    /// Moves to the end of data, to append, and says where that is.
    fn to_end_of_data(&mut self) -> Result<TapePos, TapeError>;
    /// Where the drive is.
    fn position(&mut self) -> Result<TapePos, TapeError>;
    /// Positions before `to`; `file_start` is the first object of file `to.file` (for drives
    /// that cannot LOCATE: rewind, space filemarks, space blocks).
    fn locate(&mut self, to: TapePos, file_start: u64) -> Result<(), TapeError>;
    /// Whether the loaded cartridge is write-protected.
    fn write_protected(&mut self) -> Result<bool, TapeError>;
    /// Rewinds and unloads the cartridge (a library's robot can then take it).
    fn unload(&mut self) -> Result<(), TapeError>;
    /// Whether the drive asks for a cleaning cartridge (TapeAlert).
    fn cleaning_requested(&mut self) -> Result<bool, TapeError> {
        let a = self.tape_alerts()?;
        Ok(a.cleaning_required() || a.cleaning_requested())
    }
    /// The drive's TapeAlert flags (none where the drive cannot report them).
    fn tape_alerts(&mut self) -> Result<crate::scsi::pages::TapeAlert, TapeError> {
        Ok(crate::scsi::pages::TapeAlert::default())
    }
    /// Whether a cleaning cycle is over: false while the drive answers NOT READY, CLEANING
    /// CARTRIDGE INSTALLED (30/03). A drive that cannot tell is taken to be done.
    fn cleaning_done(&mut self) -> Result<bool, TapeError> {
        Ok(true)
    }
}
