//! The Linux tape ioctl ABI (`linux/mtio.h`) as far as coffer uses it: `struct mtop`,
//! `struct mtget`, `struct mtpos`, their request numbers, the operations and the status bits.
//! The `libc` crate defines none of them for linux-gnu. This is the only module of the `st`
//! backend that calls into the kernel directly (`ioctl`, `fcntl`); each call is wrapped in a
//! safe function.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_long, c_short};

/// `struct mtop`: one operation for `MTIOCTOP`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct MtOp {
    mt_op: c_short,
    mt_count: c_int,
}

/// `struct mtget`: the driver's status, for `MTIOCGET`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MtGet {
    /// Type of drive (`MT_ISSCSI1`, `MT_ISSCSI2`).
    pub mt_type: c_long,
    /// `st` puts the current partition here.
    pub mt_resid: c_long,
    /// Block size (low 24 bits) and density code (high 8 bits).
    pub mt_dsreg: c_long,
    /// Generic status bits (`GMT_*`).
    pub mt_gstat: c_long,
    /// Recovered errors since the last call (low 16 bits).
    pub mt_erreg: c_long,
    /// Filemarks from the beginning (-1: unknown).
    pub mt_fileno: c_int,
    /// Blocks since the last filemark (-1: unknown).
    pub mt_blkno: c_int,
}

/// `struct mtpos`: the drive's block position, for `MTIOCPOS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct MtPos {
    mt_blkno: c_long,
}

// `short` then `int`: two bytes of padding, eight in all, on every Linux ABI.
const _: () = assert!(size_of::<MtOp>() == 8);
// Five `long`s and two `int`s (`__kernel_daddr_t`): 48 bytes on LP64, 28 on ILP32.
const _: () = assert!(size_of::<MtGet>() == 5 * size_of::<c_long>() + 2 * size_of::<c_int>());
const _: () = assert!(size_of::<MtPos>() == size_of::<c_long>());

/// `_IOW('m', 1, struct mtop)`.
const MTIOCTOP: libc::Ioctl = libc::_IOW::<MtOp>(b'm' as u32, 1);
/// `_IOR('m', 2, struct mtget)`.
const MTIOCGET: libc::Ioctl = libc::_IOR::<MtGet>(b'm' as u32, 2);
/// `_IOR('m', 3, struct mtpos)`.
const MTIOCPOS: libc::Ioctl = libc::_IOR::<MtPos>(b'm' as u32, 3);

// The values `linux/mtio.h` gives on x86_64, as a check of the encoding above.
#[cfg(target_arch = "x86_64")]
const _: () = assert!(MTIOCTOP == 0x4008_6d01 && MTIOCGET == 0x8030_6d02 && MTIOCPOS == 0x8008_6d03);

/// Operations for `MTIOCTOP` (`mt_op`), those coffer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum Op {
    /// `MTFSF`: space forward over filemarks (positioned after the last).
    Fsf = 1,
    /// `MTBSF`: space backward over filemarks (positioned before the last).
    Bsf = 2,
    /// `MTFSR`: space forward over records.
    Fsr = 3,
    /// `MTBSR`: space backward over records.
    Bsr = 4,
    /// `MTWEOF`: write filemarks, synchronously (the drive's buffer is flushed first).
    Weof = 5,
    /// `MTREW`: rewind.
    Rew = 6,
    /// `MTOFFL`: rewind and unload.
    Offl = 7,
    /// `MTEOM`: space to the end of recorded data.
    Eom = 12,
    /// `MTSETBLK`: set the block size (0: variable).
    SetBlk = 20,
    /// `MTSEEK`: LOCATE (SCSI-2 drives) to a block address.
    Seek = 22,
    /// `MTSETDRVBUFFER`: with `MT_ST_*BOOLEANS` in the count, set driver options (root only).
    SetDrvBuffer = 24,
}

/// `GMT_EOF`: just after a filemark (block 0 of a file other than the first).
pub const GMT_EOF: u32 = 0x8000_0000;
/// `GMT_BOT`: at the beginning of the tape.
pub const GMT_BOT: u32 = 0x4000_0000;
/// `GMT_EOT`: a write reached the early-warning zone (`st`'s end-of-medium state).
pub const GMT_EOT: u32 = 0x2000_0000;
/// `GMT_EOD`: at the end of recorded data (or of the tape).
pub const GMT_EOD: u32 = 0x0800_0000;
/// `GMT_WR_PROT`: the cartridge is write-protected.
pub const GMT_WR_PROT: u32 = 0x0400_0000;
/// `GMT_ONLINE`: a cartridge is loaded and the drive is ready.
pub const GMT_ONLINE: u32 = 0x0100_0000;
/// `GMT_DR_OPEN`: no cartridge in the drive.
pub const GMT_DR_OPEN: u32 = 0x0004_0000;
/// `GMT_CLN`: the drive asks for cleaning.
pub const GMT_CLN: u32 = 0x0000_8000;

/// `MT_ST_SETBOOLEANS`: set the option bits given.
pub const MT_ST_SETBOOLEANS: i32 = 0x3000_0000;
/// `MT_ST_CLEARBOOLEANS`: clear the option bits given.
pub const MT_ST_CLEARBOOLEANS: i32 = 0x4000_0000;
/// `MT_ST_BUFFER_WRITES`: collect fixed-block writes in the driver's buffer.
pub const MT_ST_BUFFER_WRITES: i32 = 0x1;
/// `MT_ST_ASYNC_WRITES`: return from a write before the drive has taken it.
pub const MT_ST_ASYNC_WRITES: i32 = 0x2;
/// `MT_ST_READ_AHEAD`: read more fixed blocks than asked for.
pub const MT_ST_READ_AHEAD: i32 = 0x4;
/// `MT_ST_SCSI2LOGICAL`: `MTSEEK` and `MTIOCPOS` use logical object numbers.
pub const MT_ST_SCSI2LOGICAL: i32 = 0x800;
/// `MT_ST_BLKSIZE_MASK`: the largest block size `MTSETBLK` takes.
pub const MT_ST_BLKSIZE_MASK: u32 = 0xff_ffff;

fn check(r: c_int) -> io::Result<()> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `MTIOCTOP`: one operation, `count` times.
pub fn op(fd: BorrowedFd<'_>, op: Op, count: i32) -> io::Result<()> {
    let arg = MtOp { mt_op: op as c_short, mt_count: count };
    // SAFETY: MTIOCTOP reads one `struct mtop`, which `arg` is, for the duration of the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), MTIOCTOP, &arg as *const MtOp) })
}

/// `MTIOCGET`: the driver's status.
pub fn status(fd: BorrowedFd<'_>) -> io::Result<MtGet> {
    let mut out = MtGet::default();
    // SAFETY: MTIOCGET writes one `struct mtget`, which `out` is, for the duration of the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), MTIOCGET, &mut out as *mut MtGet) })?;
    Ok(out)
}

/// `MTIOCPOS`: the drive's block position (READ POSITION on SCSI-2 drives).
pub fn position(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut out = MtPos::default();
    // SAFETY: MTIOCPOS writes one `struct mtpos`, which `out` is, for the duration of the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), MTIOCPOS, &mut out as *mut MtPos) })?;
    // `st` fills it from an unsigned 32-bit block address.
    Ok(u64::from(out.mt_blkno as u32))
}

/// Clears `O_NONBLOCK`, which the device was opened with only so that `open` does not wait
/// for a cartridge: `st` would otherwise fail ioctls during SCSI error recovery instead of
/// waiting for it to end.
pub fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and touches no memory.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check(flags)?;
    // SAFETY: F_SETFL takes an int and touches no memory.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })
}
