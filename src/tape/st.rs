//! A tape drive through the Linux `st` driver (`/dev/nstN`), the second [`TapeIo`] backend
//! beside the SSC one: for drives the kernel already drives, without SG_IO. Records are
//! written and read with io_uring ([`Ring`]): the blocks of one `write_blocks` go out as
//! chains of up to [`plan::CHAIN_RECORDS`] linked writes, one submission per chain, one
//! `write(2)` per tape block. Filemarks, spacing, rewinding, positioning and status go through
//! the `MTIOCTOP`/`MTIOCGET`/`MTIOCPOS` ioctls ([`mtio`]). The decisions (status bits, what a
//! chain achieved, early warning, reads, counting a file) are plain functions in [`plan`].
//!
//! # What `st` does, and how it maps (from the kernel's `Documentation/scsi/st.rst` and
//! `drivers/scsi/st.c`)
//!
//! - **Early warning.** st.rst, "EOM Behaviour When Writing": "When the end of medium early
//!   warning is encountered, the current write is finished and the number of bytes is
//!   returned. The next write returns -1 and errno is set to ENOSPC. To enable writing a
//!   trailer, the next write is allowed to proceed and, if successful, the number of bytes is
//!   returned. After this, -1 and the number of bytes are alternately returned until the
//!   physical end of medium (or some other error) is encountered." There is no option that
//!   changes this. So the write that reaches early warning succeeds in full, and `ENOSPC`
//!   means *this* write was not done. The write that reached it is seen in the status:
//!   `st.c` sets `GMT_EOT` while it is in that state. Hence: after the chains, `MTIOCGET`;
//!   `GMT_EOT` → [`Written::EarlyWarning`]. An `ENOSPC` in a chain cancels the rest (linked
//!   writes); those records are written again one at a time, each retried once after `ENOSPC`
//!   (`st`'s refusal); a second `ENOSPC` in a row is the drive's → [`TapeError::EndOfMedium`]
//!   (not written). `MTIOCGET` also flushes `st`'s own write buffer: if that flush reaches
//!   early warning it fails with `ENOSPC`, everything written → early warning as well.
//! - **Filemarks.** `MTWEOF` writes without the immediate bit: "acts as a synchronization
//!   point, i.e., all remaining data form the drive buffers is written to tape before the
//!   command returns" — the durability point. In the early-warning zone it still succeeds.
//! - **End of data.** st.rst: "end of data is signified by returning zero bytes for two
//!   consecutive reads". `st.c`: a read that meets a filemark returns 0 and leaves the tape
//!   after it; at the end of data right after a filemark it returns 0 twice more, then `EIO`,
//!   with `GMT_EOD` set; elsewhere (a blank tape, data without a closing filemark) the end of
//!   data is a bare `EIO`. So 0 bytes is a filemark unless `GMT_EOD`; `EIO` is the end of data
//!   if `GMT_EOD`, else one `MTFSR` tells (fails at the end of data with `GMT_EOD` set;
//!   succeeds over an unreadable record, which `MTBSR` undoes, and the read error stands).
//! - **Positions.** `MTIOCGET` gives the file number and the block within the file; the block
//!   is -1 after a backward space, a seek or `MTEOM`, and `MTEOM` gives the file only without
//!   `MT_ST_FAST_MTEOM`. `MTTELL` is not implemented by `st` (`ENOSYS`). `MTIOCPOS` and
//!   `MTSEEK` are READ POSITION and LOCATE (SEEK(10)) on SCSI-2 drives, in logical objects
//!   only with the driver option `MT_ST_SCSI2LOGICAL` (else device-specific addresses). At
//!   open this backend sets that option and clears write buffering, asynchronous writes and
//!   read-ahead (so that every `write(2)` reaches the drive and `MTIOCPOS` is not ahead of
//!   what was read): `MTSETDRVBUFFER` needs `CAP_SYS_ADMIN`, and the options apply to every
//!   user of the drive. Where that is refused, positions are our own count: the end of data
//!   is found by rewinding and counting each file's records by spacing ([`plan::FileCounter`]:
//!   `st` does not report how far a space stopped by a filemark got), and `locate` spaces.
//!   With the option, `locate` uses `MTSEEK` and falls back to rewind + `MTFSF` + `MTFSR` when
//!   the drive refuses it (`EIO`, `EINVAL`, `ENOSYS`).
//! - **Opening.** `O_NONBLOCK` only for the open, so that it neither waits for nor needs a
//!   cartridge (without it `st` waits up to two minutes and fails with `ENOMEDIUM`/`EIO`);
//!   write protection then shows in the status rather than as `EROFS`. `O_RDWR`, else
//!   `O_RDONLY` where that is refused (`EACCES`, `EROFS`: then the drive is write-protected to
//!   us). `st` allows one open at a time (`EBUSY`). A rewinding node (`/dev/stN`) is refused.
//! - **Readiness.** `st` checks the drive (TEST UNIT READY, absorbing up to ten unit
//!   attentions) only when the device is opened or loaded; a changed cartridge shows as `EIO`
//!   until then. [`TapeIo::ready`] therefore closes and reopens, then reads `GMT_ONLINE` and
//!   `GMT_DR_OPEN`, a few times with a pause while the drive is still loading.
//! - **Automatic filemarks.** Closing the device, rewinding, unloading, `MTSEEK` or `MTBSF`
//!   right after a write (no filemark since) makes `st` write a filemark first: an unfinished
//!   part abandoned that way ends in a filemark on the medium, which our count (reset by those
//!   moves anyway) does not include.
//!
//! Fault model: every failure is a [`TapeError`] naming the device; errnos that callers act on
//! (`ENOMEDIUM`, `EACCES`/`EROFS`, `ENOSPC`) become their variants. After an error other than
//! early warning the position is uncertain: locate or rewind before going on.

mod mtio;
pub mod plan;

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::mtio::Op;
use self::plan::{ChainOutcome, CountStep, EwStep, FileCounter, Probe, ReadClass, Status, Stop};
use super::{Read, TapeError, TapeIo, TapePos, Written};
use crate::uring::Ring;

/// Opens of the device while waiting for a loading drive to become ready.
const READY_ATTEMPTS: usize = 6;
/// The pause between them.
const READY_PAUSE: Duration = Duration::from_secs(5);
/// Files a tape is counted to hold at most when the end of data is found by spacing.
const MAX_FILES: u64 = 1 << 24;

const _: () = assert!(plan::CHAIN_RECORDS.is_power_of_two() && plan::CHAIN_RECORDS <= 4096);

/// A tape drive behind the `st` driver.
pub struct StDrive {
    path: PathBuf,
    name: String,
    /// `None` only between closing and reopening in `ready`, or after that reopen failed.
    fd: Option<OwnedFd>,
    ring: Ring,
    /// Opened read-only: writes are refused.
    read_only: bool,
    /// `MTIOCPOS`/`MTSEEK` use logical object numbers (`MT_ST_SCSI2LOGICAL` is set).
    logical: bool,
    /// Fixed block size (0: variable).
    block: u32,
    /// Where the drive is, by our own count.
    at: TapePos,
}

impl std::fmt::Debug for StDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StDrive")
            .field("name", &self.name)
            .field("at", &self.at)
            .field("logical", &self.logical)
            .finish_non_exhaustive()
    }
}

/// Opens `path`; `Err` carries the errno and the flags tried.
fn open_node(path: &Path, write: bool) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

impl StDrive {
    /// Opens the `st` device at `path` (`/dev/nst0`), read-write where allowed.
    pub fn open(path: impl AsRef<Path>) -> Result<StDrive, TapeError> {
        let path = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        let (fd, read_only) = open_device(&path, &name)?;
        let ring = Ring::with_capacity(plan::CHAIN_RECORDS as u32).map_err(|source| TapeError::Io {
            drive: name.clone(),
            what: "setting up io_uring".into(),
            source,
            fix: "",
        })?;
        let mut d = StDrive {
            path,
            name,
            fd: Some(fd),
            ring,
            read_only,
            logical: false,
            block: 0,
            at: TapePos::default(),
        };
        d.logical = d.tune();
        d.block = d.status()?.block_size;
        Ok(d)
    }

    /// Sets the driver options this backend relies on; returns whether positions are logical.
    fn tune(&mut self) -> bool {
        use mtio::*;
        let clear = MT_ST_CLEARBOOLEANS | MT_ST_BUFFER_WRITES | MT_ST_ASYNC_WRITES | MT_ST_READ_AHEAD;
        let set = MT_ST_SETBOOLEANS | MT_ST_SCSI2LOGICAL;
        let cleared = self.raw_op(Op::SetDrvBuffer, clear);
        let logical = self.raw_op(Op::SetDrvBuffer, set);
        if let Err(e) = cleared.as_ref().and(logical.as_ref()) {
            tracing::info!(
                target: "tape",
                "{}: cannot set st driver options ({e}); positions are counted and found by spacing, \
                 early warning may show one write late (run coffer with CAP_SYS_ADMIN to avoid this)",
                self.name
            );
        }
        cleared.is_ok() && logical.is_ok()
    }

    fn fd(&self) -> Result<BorrowedFd<'_>, TapeError> {
        self.fd.as_ref().map(|f| f.as_fd()).ok_or_else(|| TapeError::Io {
            drive: self.name.clone(),
            what: "the device is closed".into(),
            source: io::ErrorKind::NotConnected.into(),
            fix: "; reopening it failed earlier: call ready again",
        })
    }

    /// The error for errno `e` while doing `what`.
    fn errno_err(&self, what: &str, e: i32) -> TapeError {
        errno_error(&self.name, what, e)
    }

    fn io_err(&self, what: &str, e: io::Error) -> TapeError {
        self.errno_err(what, e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// One `MTIOCTOP`, errno as is.
    fn raw_op(&self, op: Op, count: i32) -> io::Result<()> {
        let fd = self.fd.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        mtio::op(fd.as_fd(), op, count)
    }

    /// One `MTIOCTOP`.
    fn mt(&self, what: &str, op: Op, count: i32) -> Result<(), TapeError> {
        mtio::op(self.fd()?, op, count).map_err(|e| self.io_err(what, e))
    }

    /// Spaces forward (`Fsr`, `Fsf`) over `n`, in counts `st` takes.
    fn space(&self, what: &str, op: Op, n: u64) -> Result<(), TapeError> {
        for k in plan::space_counts(n) {
            self.mt(what, op, k)?;
        }
        Ok(())
    }

    /// `MTIOCGET`, errno as is.
    fn raw_status(&self) -> io::Result<Status> {
        let fd = self.fd.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        let s = mtio::status(fd.as_fd())?;
        Ok(Status::decode(s.mt_gstat as u32, s.mt_dsreg as u32, s.mt_fileno, s.mt_blkno))
    }

    fn status(&self) -> Result<Status, TapeError> {
        self.raw_status().map_err(|e| self.io_err("reading the drive's status", e))
    }

    /// The drive's logical object number (`MTIOCPOS`).
    fn reported_object(&self) -> Result<u64, TapeError> {
        mtio::position(self.fd()?).map_err(|e| self.io_err("reading the position (MTIOCPOS)", e))
    }

    /// Writes records one at a time inside the early-warning zone (see the module docs).
    fn write_in_early_warning(&mut self, recs: &[&[u8]]) -> Result<(), TapeError> {
        for rec in recs {
            let mut refused = false;
            let mut written = false;
            // `after_nospace` ends a record within two attempts.
            for _attempt in 0..2 {
                let fd = self.fd.as_ref().ok_or_else(|| self.fd().unwrap_err())?;
                let r = self.ring.write_chain(fd, &[rec]).pop().expect("one result");
                match plan::after_nospace(errno_of(r), rec.len(), refused) {
                    EwStep::Written => {
                        written = true;
                        break;
                    }
                    EwStep::Retry => refused = true,
                    EwStep::EndOfMedium => return Err(TapeError::EndOfMedium { drive: self.name.clone() }),
                    EwStep::Stop(s) => return Err(self.stop_err("writing in the early-warning zone", s)),
                }
            }
            assert!(written, "a record neither written nor refused twice");
            self.at.object += 1;
        }
        Ok(())
    }

    fn stop_err(&self, what: &str, s: Stop) -> TapeError {
        match s {
            Stop::NoSpace => TapeError::EndOfMedium { drive: self.name.clone() },
            Stop::Short(n) => TapeError::Protocol {
                drive: self.name.clone(),
                detail: format!("{what}: the driver took {n} bytes of a record"),
            },
            Stop::Failed(e) => self.errno_err(what, e),
        }
    }

    /// After a read's bare `EIO`: one record forward tells the end of data from a bad record.
    fn probe_end_of_data(&mut self) -> Result<Read, TapeError> {
        let what = format!("reading record {}", self.at.object);
        match self.raw_op(Op::Fsr, 1) {
            Ok(()) => {
                self.mt("spacing back over an unreadable record", Op::Bsr, 1)?;
                Err(self.errno_err(&what, libc::EIO))
            }
            Err(e) => {
                if self.status()?.end_of_data {
                    Ok(Read::EndOfData)
                } else {
                    Err(self.io_err(&what, e))
                }
            }
        }
    }

    /// Spaces `k` records forward while counting file `file`.
    fn probe_space(&self, file: u64, k: u64) -> Result<Probe, TapeError> {
        let k = i32::try_from(k).expect("FileCounter spaces at most MAX_SPACE");
        match self.raw_op(Op::Fsr, k) {
            Ok(()) => Ok(Probe::Moved),
            Err(e) => {
                let s = self.status()?;
                if s.end_of_data {
                    Ok(Probe::EndOfData)
                } else if s.filemark && s.file.is_none_or(|f| f == file + 1) {
                    Ok(Probe::Filemark)
                } else {
                    Err(self.io_err("spacing over records to count them", e))
                }
            }
        }
    }

    /// Counts the records of file `file` from its start, leaving the tape after its filemark
    /// or at the end of data; returns the count and whether a filemark ended it.
    fn count_file(&self, file: u64) -> Result<(u64, bool), TapeError> {
        let mut c = FileCounter::new();
        let inconsistent = || TapeError::Protocol {
            drive: self.name.clone(),
            detail: format!("spacing over file {file} gave answers no file can have"),
        };
        loop {
            match c.next_step().map_err(|_| inconsistent())? {
                CountStep::Space(k) => {
                    let p = self.probe_space(file, k)?;
                    c.record(p).map_err(|_| inconsistent())?;
                }
                CountStep::Return { blocks, crossed_filemark } => {
                    let what = "returning to the start of a file";
                    if file == 0 {
                        self.mt(what, Op::Rew, 1)?;
                    } else {
                        self.mt(what, Op::Bsf, if crossed_filemark { 2 } else { 1 })?;
                        self.mt(what, Op::Fsf, 1)?;
                    }
                    self.space(what, Op::Fsr, blocks)?;
                }
                CountStep::Done { blocks, filemark } => return Ok((blocks, filemark)),
            }
        }
    }

    /// Finds the end of data's position by rewinding and counting every file.
    fn count_to_end_of_data(&mut self) -> Result<TapePos, TapeError> {
        self.rewind()?;
        let mut at = TapePos::default();
        while at.file < MAX_FILES {
            let (blocks, filemark) = self.count_file(at.file)?;
            at.object += blocks;
            if !filemark {
                return Ok(at);
            }
            at.object += 1;
            at.file += 1;
        }
        Err(TapeError::Protocol {
            drive: self.name.clone(),
            detail: format!("more than {MAX_FILES} files while looking for the end of data"),
        })
    }

    fn locate_by_spacing(&mut self, to: TapePos, file_start: u64) -> Result<(), TapeError> {
        self.rewind()?;
        self.space("spacing over filemarks", Op::Fsf, to.file)?;
        self.space("spacing over records", Op::Fsr, to.object - file_start)?;
        self.at = to;
        Ok(())
    }
}

/// The error for errno `e` from `drive` while doing `what`.
fn errno_error(drive: &str, what: &str, e: i32) -> TapeError {
    let drive = drive.to_string();
    match plan::errno(e) {
        plan::Errno::NoMedium => TapeError::NoMedium { drive },
        plan::Errno::WriteProtected => TapeError::WriteProtected { drive },
        plan::Errno::EndOfMedium => TapeError::EndOfMedium { drive },
        plan::Errno::Other => TapeError::Io {
            drive,
            what: what.into(),
            source: io::Error::from_raw_os_error(e),
            fix: if e == libc::EIO {
                "; the drive or the medium failed, or the drive was reset: rewind before going on"
            } else {
                ""
            },
        },
    }
}

/// An io_uring result as the errno `st` set.
fn errno_of(r: io::Result<usize>) -> Result<usize, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens the device and checks that it is a non-rewinding tape; returns it and whether it is
/// read-only.
fn open_device(path: &Path, name: &str) -> Result<(OwnedFd, bool), TapeError> {
    let open_err = |source: io::Error| {
        let fix = match source.raw_os_error() {
            Some(libc::ENOENT) => {
                "; check that the drive is attached and the st driver loaded (modprobe st), and name \
                 its non-rewinding node, /dev/nstN"
            }
            Some(libc::ENXIO | libc::ENODEV) => {
                "; the drive behind this node is gone: check cabling and power"
            }
            Some(libc::EBUSY) => {
                "; another program (mt, tar, a backup job) has it open: st allows one at a time"
            }
            Some(libc::EACCES | libc::EPERM) => {
                "; run coffer as a user allowed to use tape devices (group tape)"
            }
            _ => "",
        };
        TapeError::Io { drive: name.to_string(), what: "cannot open the tape device".into(), source, fix }
    };
    // Before opening: closing a rewinding node would rewind the tape.
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.file_type().is_char_device() && plan::st_rewinding(meta.rdev()) == Some(true) {
        return Err(TapeError::Io {
            drive: name.to_string(),
            what: "this node rewinds the tape whenever it is closed".into(),
            source: io::ErrorKind::InvalidInput.into(),
            fix: "; name the non-rewinding node of the same drive, /dev/nstN",
        });
    }
    let (fd, read_only) = match open_node(path, true) {
        Ok(fd) => (fd, false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS)) => {
            (open_node(path, false).map_err(open_err)?, true)
        }
        Err(e) => return Err(open_err(e)),
    };
    let not_tape = |source: io::Error| TapeError::Io {
        drive: name.to_string(),
        what: "not a tape device (it refuses the tape status request, MTIOCGET)".into(),
        source,
        fix: "; name the st driver's non-rewinding node of the drive, /dev/nstN",
    };
    match mtio::status(fd.as_fd()) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => return Err(not_tape(e)),
        Err(e) => {
            return Err(TapeError::Io {
                drive: name.to_string(),
                what: "reading the drive's status".into(),
                source: e,
                fix: "",
            });
        }
    }
    mtio::set_blocking(fd.as_fd()).map_err(open_err)?;
    Ok((fd, read_only))
}

impl TapeIo for StDrive {
    fn name(&self) -> &str {
        &self.name
    }

    fn ready(&mut self) -> Result<(), TapeError> {
        self.at = TapePos::default();
        for attempt in 0..READY_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(READY_PAUSE);
            }
            // `st` allows one open at a time: close before opening again.
            self.fd = None;
            let (fd, read_only) = open_device(&self.path, &self.name)?;
            self.fd = Some(fd);
            self.read_only = read_only;
            let s = self.status()?;
            if s.no_medium {
                return Err(TapeError::NoMedium { drive: self.name.clone() });
            }
            if s.online {
                // `st` takes the block size from the drive on a new cartridge.
                self.block = s.block_size;
                return Ok(());
            }
        }
        Err(TapeError::NotReady { drive: self.name.clone() })
    }

    fn set_block_size(&mut self, len: u32) -> Result<(), TapeError> {
        if len > mtio::MT_ST_BLKSIZE_MASK {
            return Err(TapeError::Protocol {
                drive: self.name.clone(),
                detail: format!("block size {len} is larger than st allows ({})", mtio::MT_ST_BLKSIZE_MASK),
            });
        }
        self.mt("setting the block size", Op::SetBlk, len as i32)?;
        self.block = len;
        Ok(())
    }

    fn write_blocks(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        if self.read_only {
            return Err(TapeError::WriteProtected { drive: self.name.clone() });
        }
        let recs = plan::records(data, self.block);
        let mut early = false;
        for chain in recs.chunks(plan::CHAIN_RECORDS) {
            let fd = self.fd.as_ref().ok_or_else(|| self.fd().unwrap_err())?;
            let results: Vec<_> = self.ring.write_chain(fd, chain).into_iter().map(errno_of).collect();
            let lens: Vec<usize> = chain.iter().map(|r| r.len()).collect();
            let ChainOutcome { written, stop } = plan::chain_outcome(&results, &lens);
            self.at.object += written as u64;
            match stop {
                None => {}
                Some(Stop::NoSpace) => {
                    early = true;
                    self.write_in_early_warning(&chain[written..])?;
                }
                Some(s) => return Err(self.stop_err(&format!("writing record {}", self.at.object), s)),
            }
        }
        match self.raw_status() {
            Ok(s) => early |= s.early_warning,
            // Flushing st's own buffer reached early warning, all of it written.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => early = true,
            Err(e) => return Err(self.io_err("writing (flushing the driver's buffer)", e)),
        }
        Ok(if early { Written::EarlyWarning } else { Written::Ok })
    }

    fn write_filemark(&mut self) -> Result<(), TapeError> {
        if self.read_only {
            return Err(TapeError::WriteProtected { drive: self.name.clone() });
        }
        self.mt("writing a filemark", Op::Weof, 1)?;
        self.at.object += 1;
        self.at.file += 1;
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<Read, TapeError> {
        assert!(!buf.is_empty(), "a read into no buffer");
        let want = if self.block == 0 {
            buf.len()
        } else {
            assert!(buf.len() >= self.block as usize, "a fixed-block read needs a whole block");
            self.block as usize
        };
        let fd = self.fd.as_ref().ok_or_else(|| self.fd().unwrap_err())?;
        let r = errno_of(self.ring.read_next(fd, &mut buf[..want]));
        let eod = match r {
            Ok(0) | Err(libc::EIO) => Some(self.status()?.end_of_data),
            _ => None,
        };
        let mut class = plan::read_class(r, eod);
        if let ReadClass::Block(_) = class {
            class = plan::read_at_end_of_medium(class, self.status()?.early_warning);
        }
        match class {
            ReadClass::Block(n) => {
                self.at.object += 1;
                Ok(Read::Block(n))
            }
            ReadClass::Filemark => {
                self.at.object += 1;
                self.at.file += 1;
                Ok(Read::Filemark)
            }
            ReadClass::EndOfData => Ok(Read::EndOfData),
            ReadClass::Probe => self.probe_end_of_data(),
            ReadClass::TooLarge => {
                self.at.object += 1;
                Err(TapeError::Protocol {
                    drive: self.name.clone(),
                    detail: format!("record {} is larger than the {want}-byte buffer", self.at.object - 1),
                })
            }
            ReadClass::Failed(e) => Err(self.errno_err(&format!("reading record {}", self.at.object), e)),
        }
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.mt("rewinding", Op::Rew, 1)?;
        self.at = TapePos::default();
        Ok(())
    }

    fn to_end_of_data(&mut self) -> Result<TapePos, TapeError> {
        if !self.logical {
            self.at = self.count_to_end_of_data()?;
            return Ok(self.at);
        }
        // MTEOM spaces over filemarks first (so st counts files), then to the end of data;
        // st must know the file it starts from.
        if self.status()?.file.is_none() {
            self.rewind()?;
        }
        self.mt("spacing to the end of data", Op::Eom, 1)?;
        match self.status()?.file {
            Some(file) => {
                self.at = TapePos { object: self.reported_object()?, file };
                Ok(self.at)
            }
            // The driver spaces straight to the end of data (MT_ST_FAST_MTEOM): count instead.
            None => {
                self.at = self.count_to_end_of_data()?;
                Ok(self.at)
            }
        }
    }

    fn position(&mut self) -> Result<TapePos, TapeError> {
        if !self.logical {
            return Ok(self.at);
        }
        let object = self.reported_object()?;
        if object != self.at.object {
            tracing::warn!(target: "tape", "{}: the drive is at object {object}, our count says {}", self.name, self.at.object);
            self.at.object = object;
        }
        Ok(self.at)
    }

    fn locate(&mut self, to: TapePos, file_start: u64) -> Result<(), TapeError> {
        assert!(to.object >= file_start, "object {} before its file's start {file_start}", to.object);
        let Some(object) = i32::try_from(to.object).ok().filter(|_| self.logical) else {
            return self.locate_by_spacing(to, file_start);
        };
        match self.raw_op(Op::Seek, object) {
            Ok(()) => {
                self.at = to;
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOSYS)) => {
                self.locate_by_spacing(to, file_start)
            }
            Err(e) => Err(self.io_err("locating (MTSEEK)", e)),
        }
    }

    fn write_protected(&mut self) -> Result<bool, TapeError> {
        Ok(self.read_only || self.status()?.write_protected)
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.mt("unloading", Op::Offl, 1)?;
        self.at = TapePos::default();
        Ok(())
    }

    fn cleaning_requested(&mut self) -> Result<bool, TapeError> {
        Ok(self.status()?.cleaning)
    }
}

#[cfg(test)]
mod tests;
