//! Command descriptor blocks as values. Each builder is a pure function returning a [`Cdb`]:
//! the command bytes, the data direction, the exact number of data bytes the command moves and
//! the timeout class its duration calls for. Nothing here talks to a device; the one function
//! that does is [`crate::scsi::transport::issue`].
//!
//! Invariants: a `Cdb` is 6 to 16 bytes; a command without data has a transfer length of 0 and
//! direction [`Direction::None`]. Field ranges the CDB cannot encode (a 24-bit count above
//! 2^24 − 1, an element status allocation above [`MAX_ELEMENT_STATUS_ALLOC`]) are bugs in the
//! caller and panic.

use std::time::Duration;

use super::bytes::put_u24;

/// Longest CDB coffer builds (SPACE(16), LOCATE(16)).
pub const MAX_CDB_LEN: usize = 16;

/// Timeout of commands that answer from the device's memory (INQUIRY, MODE SENSE, TEST UNIT
/// READY, READ POSITION…).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of data transfers and element status (a read may retry for minutes on a worn tape;
/// a library may inventory before answering).
pub const IO_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Timeout of positioning and robot commands: load (first load of an LTO-9 cartridge
/// calibrates it for up to two hours), unload, rewind, space, locate, move, inventory.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);
/// Timeout of a long erase, which writes the whole cartridge (over 12 hours for LTO-9).
pub const ERASE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
const _: () = assert!(QUICK_TIMEOUT.as_secs() < IO_TIMEOUT.as_secs());
const _: () = assert!(IO_TIMEOUT.as_secs() < LONG_TIMEOUT.as_secs());
const _: () = assert!(LONG_TIMEOUT.as_secs() < ERASE_TIMEOUT.as_secs());
// SG_IO takes the timeout in milliseconds as a u32.
const _: () = assert!(ERASE_TIMEOUT.as_millis() < u32::MAX as u128);

/// Largest READ ELEMENT STATUS allocation coffer asks for: `tgt` refuses anything above 4096
/// bytes, so callers page through large libraries instead.
pub const MAX_ELEMENT_STATUS_ALLOC: u32 = 4096;
/// Largest 24-bit count field (READ(6)/WRITE(6) lengths, filemark counts).
pub const MAX_COUNT_24: u32 = 0x00FF_FFFF;
/// Length of the READ BLOCK LIMITS response.
pub const BLOCK_LIMITS_LEN: usize = 6;
/// Length of the READ POSITION long form response.
pub const POSITION_LONG_LEN: usize = 32;

/// Operation codes, for builders, decoders of CDBs (the simulator) and messages.
pub mod op {
    /// TEST UNIT READY (SPC).
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REWIND (SSC).
    pub const REWIND: u8 = 0x01;
    /// REQUEST SENSE (SPC).
    pub const REQUEST_SENSE: u8 = 0x03;
    /// READ BLOCK LIMITS (SSC).
    pub const READ_BLOCK_LIMITS: u8 = 0x05;
    /// INITIALIZE ELEMENT STATUS (SMC).
    pub const INITIALIZE_ELEMENT_STATUS: u8 = 0x07;
    /// READ(6) (SSC).
    pub const READ_6: u8 = 0x08;
    /// WRITE(6) (SSC).
    pub const WRITE_6: u8 = 0x0A;
    /// WRITE FILEMARKS(6) (SSC).
    pub const WRITE_FILEMARKS_6: u8 = 0x10;
    /// SPACE(6) (SSC).
    pub const SPACE_6: u8 = 0x11;
    /// INQUIRY (SPC).
    pub const INQUIRY: u8 = 0x12;
    /// MODE SELECT(6) (SPC).
    pub const MODE_SELECT_6: u8 = 0x15;
    /// ERASE(6) (SSC).
    pub const ERASE_6: u8 = 0x19;
    /// MODE SENSE(6) (SPC).
    pub const MODE_SENSE_6: u8 = 0x1A;
    /// LOAD UNLOAD (SSC).
    pub const LOAD_UNLOAD: u8 = 0x1B;
    /// LOCATE(10) (SSC).
    pub const LOCATE_10: u8 = 0x2B;
    /// READ POSITION (SSC).
    pub const READ_POSITION: u8 = 0x34;
    /// LOG SENSE (SPC).
    pub const LOG_SENSE: u8 = 0x4D;
    /// MODE SELECT(10) (SPC).
    pub const MODE_SELECT_10: u8 = 0x55;
    /// MODE SENSE(10) (SPC).
    pub const MODE_SENSE_10: u8 = 0x5A;
    /// SPACE(16) (SSC).
    pub const SPACE_16: u8 = 0x91;
    /// LOCATE(16) (SSC).
    pub const LOCATE_16: u8 = 0x92;
    /// MOVE MEDIUM (SMC).
    pub const MOVE_MEDIUM: u8 = 0xA5;
    /// READ ELEMENT STATUS (SMC).
    pub const READ_ELEMENT_STATUS: u8 = 0xB8;
}

/// The name of an operation code, for messages (`"0x??"`-like codes are reported as unknown).
pub fn opcode_name(code: u8) -> &'static str {
    match code {
        op::TEST_UNIT_READY => "TEST UNIT READY",
        op::REWIND => "REWIND",
        op::REQUEST_SENSE => "REQUEST SENSE",
        op::READ_BLOCK_LIMITS => "READ BLOCK LIMITS",
        op::INITIALIZE_ELEMENT_STATUS => "INITIALIZE ELEMENT STATUS",
        op::READ_6 => "READ(6)",
        op::WRITE_6 => "WRITE(6)",
        op::WRITE_FILEMARKS_6 => "WRITE FILEMARKS(6)",
        op::SPACE_6 => "SPACE(6)",
        op::INQUIRY => "INQUIRY",
        op::MODE_SELECT_6 => "MODE SELECT(6)",
        op::ERASE_6 => "ERASE",
        op::MODE_SENSE_6 => "MODE SENSE(6)",
        op::LOAD_UNLOAD => "LOAD UNLOAD",
        op::LOCATE_10 => "LOCATE(10)",
        op::READ_POSITION => "READ POSITION",
        op::LOG_SENSE => "LOG SENSE",
        op::MODE_SELECT_10 => "MODE SELECT(10)",
        op::MODE_SENSE_10 => "MODE SENSE(10)",
        op::SPACE_16 => "SPACE(16)",
        op::LOCATE_16 => "LOCATE(16)",
        op::MOVE_MEDIUM => "MOVE MEDIUM",
        op::READ_ELEMENT_STATUS => "READ ELEMENT STATUS",
        _ => "unknown command",
    }
}

/// Which way a command's data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// No data phase.
    None,
    /// Device to host (reads, INQUIRY, sense…).
    FromDevice,
    /// Host to device (writes, MODE SELECT).
    ToDevice,
}

/// How long a command may take before the transport gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutClass {
    /// [`QUICK_TIMEOUT`].
    Quick,
    /// [`IO_TIMEOUT`].
    Io,
    /// [`LONG_TIMEOUT`].
    Long,
    /// [`ERASE_TIMEOUT`].
    Erase,
}

impl TimeoutClass {
    /// The timeout of this class.
    pub fn duration(self) -> Duration {
        match self {
            TimeoutClass::Quick => QUICK_TIMEOUT,
            TimeoutClass::Io => IO_TIMEOUT,
            TimeoutClass::Long => LONG_TIMEOUT,
            TimeoutClass::Erase => ERASE_TIMEOUT,
        }
    }
}

/// One command: bytes plus what the transport needs to run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    bytes: [u8; MAX_CDB_LEN],
    len: u8,
    direction: Direction,
    transfer_len: u32,
    timeout: TimeoutClass,
}

impl Cdb {
    /// A command from raw bytes (vendor commands, or a simulator replaying what it received).
    ///
    /// # Panics
    /// If `bytes` is not 6 to 16 bytes long, or a data length is given without a direction (or
    /// the reverse).
    pub fn new(bytes: &[u8], direction: Direction, transfer_len: u32, timeout: TimeoutClass) -> Cdb {
        assert!((6..=MAX_CDB_LEN).contains(&bytes.len()), "a CDB is 6 to 16 bytes, not {}", bytes.len());
        assert_eq!(
            direction == Direction::None,
            transfer_len == 0,
            "a command moves data exactly when it has a data direction"
        );
        let mut b = [0u8; MAX_CDB_LEN];
        b[..bytes.len()].copy_from_slice(bytes);
        Cdb { bytes: b, len: bytes.len() as u8, direction, transfer_len, timeout }
    }

    /// The command bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The operation code (first byte).
    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }

    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        opcode_name(self.opcode())
    }

    /// Which way its data moves.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Exactly how many data bytes the command asks to move.
    pub fn transfer_len(&self) -> usize {
        self.transfer_len as usize
    }

    /// Its timeout class.
    pub fn timeout_class(&self) -> TimeoutClass {
        self.timeout
    }

    /// Its timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.duration()
    }
}

fn no_data(bytes: &[u8], timeout: TimeoutClass) -> Cdb {
    Cdb::new(bytes, Direction::None, 0, timeout)
}

fn data_in(bytes: &[u8], len: u32, timeout: TimeoutClass) -> Cdb {
    if len == 0 { no_data(bytes, timeout) } else { Cdb::new(bytes, Direction::FromDevice, len, timeout) }
}

fn data_out(bytes: &[u8], len: u32, timeout: TimeoutClass) -> Cdb {
    if len == 0 { no_data(bytes, timeout) } else { Cdb::new(bytes, Direction::ToDevice, len, timeout) }
}

/// A 6-byte CDB with a 24-bit count in bytes 2..5.
fn six_with_count(opcode: u8, byte1: u8, count: u32) -> [u8; 6] {
    assert!(count <= MAX_COUNT_24, "count {count} does not fit a 6-byte CDB");
    let mut c = [opcode, byte1, 0, 0, 0, 0];
    put_u24(&mut c, 2, count);
    c
}

// ---------------------------------------------------------------------------------------------
// SPC

/// Which values MODE SENSE and LOG SENSE report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    /// The values in effect.
    Current = 0,
    /// Which bits may be changed (mode), or cumulative values (log).
    Changeable = 1,
    /// The default values.
    Default = 2,
    /// The saved values.
    Saved = 3,
}

/// TEST UNIT READY: is a medium loaded and ready?
pub fn test_unit_ready() -> Cdb {
    no_data(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], TimeoutClass::Quick)
}

/// REQUEST SENSE with `alloc` bytes for the sense data.
pub fn request_sense(alloc: u8) -> Cdb {
    data_in(&[op::REQUEST_SENSE, 0, 0, 0, alloc, 0], u32::from(alloc), TimeoutClass::Quick)
}

/// Standard INQUIRY data, `alloc` bytes (36 hold vendor, product and revision).
pub fn inquiry(alloc: u16) -> Cdb {
    let [hi, lo] = alloc.to_be_bytes();
    data_in(&[op::INQUIRY, 0, 0, hi, lo, 0], u32::from(alloc), TimeoutClass::Quick)
}

/// A vital product data page (EVPD), `alloc` bytes.
pub fn inquiry_vpd(page: u8, alloc: u16) -> Cdb {
    let [hi, lo] = alloc.to_be_bytes();
    data_in(&[op::INQUIRY, 0x01, page, hi, lo, 0], u32::from(alloc), TimeoutClass::Quick)
}

/// VPD page 0x80, the unit serial number.
pub fn inquiry_serial(alloc: u16) -> Cdb {
    inquiry_vpd(super::pages::VPD_SERIAL, alloc)
}

/// MODE SENSE(6) of `page`/`subpage` (0x3F: all pages); `dbd` leaves out block descriptors.
pub fn mode_sense6(page: u8, subpage: u8, pc: PageControl, dbd: bool, alloc: u8) -> Cdb {
    let b2 = ((pc as u8) << 6) | (page & 0x3F);
    let b1 = if dbd { 0x08 } else { 0 };
    data_in(&[op::MODE_SENSE_6, b1, b2, subpage, alloc, 0], u32::from(alloc), TimeoutClass::Quick)
}

/// MODE SENSE(10) of `page`/`subpage`; `dbd` leaves out block descriptors.
pub fn mode_sense10(page: u8, subpage: u8, pc: PageControl, dbd: bool, alloc: u16) -> Cdb {
    let b2 = ((pc as u8) << 6) | (page & 0x3F);
    let b1 = if dbd { 0x08 } else { 0 };
    let [hi, lo] = alloc.to_be_bytes();
    let c = [op::MODE_SENSE_10, b1, b2, subpage, 0, 0, 0, hi, lo, 0];
    data_in(&c, u32::from(alloc), TimeoutClass::Quick)
}

/// MODE SELECT(6) sending `len` bytes of mode parameters (page format); `save` asks the device
/// to keep them across power cycles.
pub fn mode_select6(len: u8, save: bool) -> Cdb {
    let b1 = 0x10 | u8::from(save);
    data_out(&[op::MODE_SELECT_6, b1, 0, 0, len, 0], u32::from(len), TimeoutClass::Quick)
}

/// MODE SELECT(10) sending `len` bytes of mode parameters (page format).
pub fn mode_select10(len: u16, save: bool) -> Cdb {
    let b1 = 0x10 | u8::from(save);
    let [hi, lo] = len.to_be_bytes();
    let c = [op::MODE_SELECT_10, b1, 0, 0, 0, 0, 0, hi, lo, 0];
    data_out(&c, u32::from(len), TimeoutClass::Quick)
}

/// LOG SENSE of `page`/`subpage` with page control `pc`, `alloc` bytes.
pub fn log_sense(page: u8, subpage: u8, pc: PageControl, alloc: u16) -> Cdb {
    let b2 = ((pc as u8) << 6) | (page & 0x3F);
    let [hi, lo] = alloc.to_be_bytes();
    let c = [op::LOG_SENSE, 0, b2, subpage, 0, 0, 0, hi, lo, 0];
    data_in(&c, u32::from(alloc), TimeoutClass::Quick)
}

/// LOG SENSE of the TapeAlert page (0x2E), current cumulative values.
pub fn log_sense_tape_alert(alloc: u16) -> Cdb {
    log_sense(super::pages::TAPE_ALERT_PAGE, 0, PageControl::Changeable, alloc)
}

// ---------------------------------------------------------------------------------------------
// SSC

/// What SPACE moves over; negative counts move towards the beginning of the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Logical blocks.
    Blocks(i64),
    /// Filemarks (the position ends after the last one forwards, before it backwards).
    Filemarks(i64),
    /// To the end of recorded data, ready to append.
    EndOfData,
}

impl Space {
    /// The CDB code field and the count.
    fn code_and_count(self) -> (u8, i64) {
        match self {
            Space::Blocks(n) => (0, n),
            Space::Filemarks(n) => (1, n),
            Space::EndOfData => (3, 0),
        }
    }
}

/// READ(6) of `blocks` fixed-size blocks of `block_len` bytes each.
///
/// # Panics
/// If `blocks` exceeds [`MAX_COUNT_24`] or the transfer exceeds `u32::MAX` bytes.
pub fn read6_fixed(blocks: u32, block_len: u32) -> Cdb {
    let len = blocks.checked_mul(block_len).expect("READ(6) transfer length fits u32");
    data_in(&six_with_count(op::READ_6, 0x01, blocks), len, TimeoutClass::Io)
}

/// READ(6) of one variable-length block into `len` bytes. With `sili`, a block shorter than
/// `len` is not reported as an incorrect length (the transfer residual says how much came).
pub fn read6_variable(len: u32, sili: bool) -> Cdb {
    let b1 = if sili { 0x02 } else { 0 };
    data_in(&six_with_count(op::READ_6, b1, len), len, TimeoutClass::Io)
}

/// WRITE(6) of `blocks` fixed-size blocks of `block_len` bytes each.
///
/// # Panics
/// If `blocks` exceeds [`MAX_COUNT_24`] or the transfer exceeds `u32::MAX` bytes.
pub fn write6_fixed(blocks: u32, block_len: u32) -> Cdb {
    let len = blocks.checked_mul(block_len).expect("WRITE(6) transfer length fits u32");
    data_out(&six_with_count(op::WRITE_6, 0x01, blocks), len, TimeoutClass::Io)
}

/// WRITE(6) of one variable-length block of `len` bytes.
pub fn write6_variable(len: u32) -> Cdb {
    data_out(&six_with_count(op::WRITE_6, 0, len), len, TimeoutClass::Io)
}

/// WRITE FILEMARKS(6). Not immediate, it returns once buffered data and the filemarks are on
/// the medium (the durability point); immediate, once the command is accepted. A count of 0
/// not immediate just flushes the buffer.
pub fn write_filemarks6(count: u32, immediate: bool) -> Cdb {
    no_data(&six_with_count(op::WRITE_FILEMARKS_6, u8::from(immediate), count), TimeoutClass::Io)
}

/// SPACE(6).
///
/// # Panics
/// If the count does not fit 24 bits signed.
pub fn space6(space: Space) -> Cdb {
    let (code, count) = space.code_and_count();
    assert!((-0x80_0000..0x80_0000).contains(&count), "SPACE(6) count {count} does not fit 24 bits");
    let mut c = [op::SPACE_6, code, 0, 0, 0, 0];
    c[2..5].copy_from_slice(&(count as i32).to_be_bytes()[1..]);
    no_data(&c, TimeoutClass::Long)
}

/// SPACE(16): 64-bit signed counts.
pub fn space16(space: Space) -> Cdb {
    let (code, count) = space.code_and_count();
    let mut c = [0u8; 16];
    c[0] = op::SPACE_16;
    c[1] = code;
    c[4..12].copy_from_slice(&count.to_be_bytes());
    no_data(&c, TimeoutClass::Long)
}

/// REWIND to the beginning of the partition.
pub fn rewind(immediate: bool) -> Cdb {
    no_data(&[op::REWIND, u8::from(immediate), 0, 0, 0, 0], TimeoutClass::Long)
}

/// LOAD: thread the cartridge and position at the beginning.
pub fn load(immediate: bool) -> Cdb {
    no_data(&[op::LOAD_UNLOAD, u8::from(immediate), 0, 0, 0x01, 0], TimeoutClass::Long)
}

/// UNLOAD: rewind and unthread, ready for the robot (or an operator) to take it out.
pub fn unload(immediate: bool) -> Cdb {
    no_data(&[op::LOAD_UNLOAD, u8::from(immediate), 0, 0, 0x00, 0], TimeoutClass::Long)
}

/// READ POSITION, long form (service action 0x06): partition, block and file numbers. The
/// allocation length field stays zero for this form; the response is [`POSITION_LONG_LEN`].
pub fn read_position_long() -> Cdb {
    let c = [op::READ_POSITION, 0x06, 0, 0, 0, 0, 0, 0, 0, 0];
    data_in(&c, POSITION_LONG_LEN as u32, TimeoutClass::Quick)
}

/// LOCATE(16) to logical object (block) `block`; with `partition`, change to that partition
/// first.
pub fn locate16(block: u64, partition: Option<u8>, immediate: bool) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = op::LOCATE_16;
    c[1] = u8::from(immediate) | if partition.is_some() { 0x02 } else { 0 };
    c[3] = partition.unwrap_or(0);
    c[4..12].copy_from_slice(&block.to_be_bytes());
    no_data(&c, TimeoutClass::Long)
}

/// LOCATE(10) to logical object (block) `block`, in the current partition.
pub fn locate10(block: u32, immediate: bool) -> Cdb {
    let mut c = [0u8; 10];
    c[0] = op::LOCATE_10;
    c[1] = u8::from(immediate);
    c[3..7].copy_from_slice(&block.to_be_bytes());
    no_data(&c, TimeoutClass::Long)
}

/// READ BLOCK LIMITS: the block sizes the drive accepts.
pub fn read_block_limits() -> Cdb {
    data_in(&[op::READ_BLOCK_LIMITS, 0, 0, 0, 0, 0], BLOCK_LIMITS_LEN as u32, TimeoutClass::Quick)
}

/// ERASE with the LONG bit: erase from the current position to the end of the partition.
pub fn erase_long(immediate: bool) -> Cdb {
    let b1 = 0x01 | if immediate { 0x02 } else { 0 };
    no_data(&[op::ERASE_6, b1, 0, 0, 0, 0], TimeoutClass::Erase)
}

// ---------------------------------------------------------------------------------------------
// SMC

/// Kinds of media changer elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementType {
    /// The robot (medium transport element).
    Transport = 1,
    /// A storage slot.
    Storage = 2,
    /// An import/export slot (mail slot).
    ImportExport = 3,
    /// A drive (data transfer element).
    DataTransfer = 4,
}

impl ElementType {
    /// The element type code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type with element type code `code`, if it is one of the four.
    pub fn from_code(code: u8) -> Option<ElementType> {
        match code {
            1 => Some(ElementType::Transport),
            2 => Some(ElementType::Storage),
            3 => Some(ElementType::ImportExport),
            4 => Some(ElementType::DataTransfer),
            _ => None,
        }
    }
}

/// READ ELEMENT STATUS of up to `count` elements of `kind` (all kinds if `None`) from address
/// `start`, with volume tags (barcodes) if `voltag`, into `alloc` bytes.
///
/// # Panics
/// If `alloc` exceeds [`MAX_ELEMENT_STATUS_ALLOC`].
pub fn read_element_status(
    kind: Option<ElementType>,
    start: u16,
    count: u16,
    voltag: bool,
    alloc: u32,
) -> Cdb {
    assert!(alloc <= MAX_ELEMENT_STATUS_ALLOC, "element status allocation {alloc} above the maximum");
    let mut c = [0u8; 12];
    c[0] = op::READ_ELEMENT_STATUS;
    c[1] = kind.map_or(0, ElementType::code) | if voltag { 0x10 } else { 0 };
    c[2..4].copy_from_slice(&start.to_be_bytes());
    c[4..6].copy_from_slice(&count.to_be_bytes());
    put_u24(&mut c, 7, alloc);
    data_in(&c, alloc, TimeoutClass::Io)
}

/// MOVE MEDIUM from element `source` to element `destination` with the robot at `transport`.
pub fn move_medium(transport: u16, source: u16, destination: u16) -> Cdb {
    let mut c = [0u8; 12];
    c[0] = op::MOVE_MEDIUM;
    c[2..4].copy_from_slice(&transport.to_be_bytes());
    c[4..6].copy_from_slice(&source.to_be_bytes());
    c[6..8].copy_from_slice(&destination.to_be_bytes());
    no_data(&c, TimeoutClass::Long)
}

/// INITIALIZE ELEMENT STATUS: make the library re-inventory (scan every barcode).
pub fn initialize_element_status() -> Cdb {
    no_data(&[op::INITIALIZE_ELEMENT_STATUS, 0, 0, 0, 0, 0], TimeoutClass::Long)
}

#[cfg(test)]
#[path = "cdb_tests.rs"]
mod tests;
