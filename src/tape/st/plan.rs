//! The `st` backend's decisions, as plain functions over what the driver returned: status
//! bits, what a chain of writes achieved, what to do after `ENOSPC`, what a read found, and
//! the search that counts a file's blocks on a drive whose position cannot be read.

use super::mtio;

/// Records chained in one io_uring submission (the ring is sized for it).
pub const CHAIN_RECORDS: usize = 64;

/// The largest count one `MTFSR`/`MTFSF` takes: `st` sends SPACE(6), a 24-bit signed count.
pub const MAX_SPACE: u64 = 0x7f_ffff;

/// The most records one file is counted to hold (a 36 TB tape in 512-byte blocks).
pub const MAX_FILE_RECORDS: u64 = 1 << 36;

/// Steps one file's count may take: spaces of [`MAX_SPACE`] over the largest file, then a
/// space and a return per bit of the last interval, with room to spare.
pub const MAX_COUNT_STEPS: usize = (MAX_FILE_RECORDS / MAX_SPACE) as usize + 4 * 64;

/// The driver's status (`MTIOCGET`), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Just after a filemark.
    pub filemark: bool,
    /// At the beginning of the tape.
    pub bot: bool,
    /// In the early-warning zone after a write.
    pub early_warning: bool,
    /// At the end of recorded data.
    pub end_of_data: bool,
    /// The cartridge is write-protected.
    pub write_protected: bool,
    /// Loaded and ready.
    pub online: bool,
    /// No cartridge.
    pub no_medium: bool,
    /// The drive asks for cleaning.
    pub cleaning: bool,
    /// Filemarks from the beginning, where the driver knows.
    pub file: Option<u64>,
    /// Blocks since the last filemark, where the driver knows.
    pub block: Option<u64>,
    /// The block size the driver uses (0: variable).
    pub block_size: u32,
}

impl Status {
    /// Decodes `mt_gstat` (only its low 32 bits carry status), `mt_dsreg` (the block size in
    /// its low 24 bits), `mt_fileno` and `mt_blkno`.
    pub fn decode(gstat: u32, dsreg: u32, fileno: i32, blkno: i32) -> Status {
        let has = |bit: u32| gstat & bit != 0;
        Status {
            filemark: has(mtio::GMT_EOF),
            bot: has(mtio::GMT_BOT),
            early_warning: has(mtio::GMT_EOT),
            end_of_data: has(mtio::GMT_EOD),
            write_protected: has(mtio::GMT_WR_PROT),
            online: has(mtio::GMT_ONLINE),
            no_medium: has(mtio::GMT_DR_OPEN),
            cleaning: has(mtio::GMT_CLN),
            file: u64::try_from(fileno).ok(),
            block: u64::try_from(blkno).ok(),
            block_size: dsreg & mtio::MT_ST_BLKSIZE_MASK,
        }
    }
}

/// What an errno means to a caller of the tape layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// `ENOMEDIUM`: no cartridge.
    NoMedium,
    /// `EACCES`, `EROFS`: write-protected (or a device opened read-only).
    WriteProtected,
    /// `ENOSPC`: nothing written, the medium is full.
    EndOfMedium,
    /// Anything else.
    Other,
}

/// Classifies an errno from the driver.
pub fn errno(e: i32) -> Errno {
    match e {
        libc::ENOMEDIUM => Errno::NoMedium,
        libc::EACCES | libc::EROFS => Errno::WriteProtected,
        libc::ENOSPC => Errno::EndOfMedium,
        _ => Errno::Other,
    }
}

/// The records `data` is written as: one record in variable mode (`block` 0), else blocks of
/// `block` bytes (one `write(2)` each, so that a failure points at one block). No data, no
/// records (`st` takes a write of 0 bytes as nothing).
pub fn records(data: &[u8], block: u32) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    if block == 0 {
        return vec![data];
    }
    assert_eq!(data.len() % block as usize, 0, "fixed-block writes are whole blocks");
    data.chunks_exact(block as usize).collect()
}

/// Why a chain of writes stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `ENOSPC`: the record was not written (`st`'s answer to the write after the early
    /// warning, or the drive refusing at the physical end).
    NoSpace,
    /// Fewer bytes than the record: `st` never does this for one record.
    Short(usize),
    /// Another errno.
    Failed(i32),
}

/// What one chain of writes achieved: records written from its start, and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOutcome {
    /// Records written, in order from the first.
    pub written: usize,
    /// Why the rest were not (`None`: all were).
    pub stop: Option<Stop>,
}

/// Reads the results of a linked chain of writes of `lens` bytes: everything up to the first
/// write that did not write its whole record was written; the kernel cancels the rest.
pub fn chain_outcome(results: &[Result<usize, i32>], lens: &[usize]) -> ChainOutcome {
    assert_eq!(results.len(), lens.len(), "one result per write");
    for (i, (r, &len)) in results.iter().zip(lens).enumerate() {
        let stop = match *r {
            Ok(n) if n == len => continue,
            Ok(n) => Stop::Short(n),
            Err(libc::ENOSPC) => Stop::NoSpace,
            Err(e) => Stop::Failed(e),
        };
        return ChainOutcome { written: i, stop: Some(stop) };
    }
    ChainOutcome { written: results.len(), stop: None }
}

/// What to do after one write of a record inside the early-warning zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EwStep {
    /// Written: on to the next record.
    Written,
    /// `ENOSPC` once: `st` refuses every other write in the zone; write the record again.
    Retry,
    /// `ENOSPC` twice in a row: the drive itself refused, the medium is full.
    EndOfMedium,
    /// Something else went wrong.
    Stop(Stop),
}

/// Decides after writing a `len`-byte record in the early-warning zone; `refused_before` says
/// whether the previous attempt at this record got `ENOSPC`. `st` alternates: after the write
/// that reaches early warning it refuses the next write with `ENOSPC` (writing nothing), lets
/// the one after through, refuses the next, and so on; a write the drive refuses at the
/// physical end also returns `ENOSPC`. Two refusals in a row therefore mean one came from the
/// drive.
pub fn after_nospace(r: Result<usize, i32>, len: usize, refused_before: bool) -> EwStep {
    match r {
        Ok(n) if n == len => EwStep::Written,
        Ok(n) => EwStep::Stop(Stop::Short(n)),
        Err(libc::ENOSPC) if refused_before => EwStep::EndOfMedium,
        Err(libc::ENOSPC) => EwStep::Retry,
        Err(e) => EwStep::Stop(Stop::Failed(e)),
    }
}

/// A record read while the driver reports the end of medium is no record: `tgt` answers a
/// read at the end of data with BLANK CHECK and the EOM bit but no residual, which `st`
/// passes on as a whole record of whatever its buffer held, with `GMT_EOT`. No record coffer
/// wrote comes with EOM on a read (its writes stop in the early-warning zone, before the
/// physical end), so such a "record" is the end of data.
pub fn read_at_end_of_medium(class: ReadClass, end_of_medium: bool) -> ReadClass {
    match class {
        ReadClass::Block(_) if end_of_medium => ReadClass::EndOfData,
        c => c,
    }
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadClass {
    /// A record of this many bytes.
    Block(usize),
    /// A filemark (now after it).
    Filemark,
    /// The end of recorded data.
    EndOfData,
    /// `EIO` without the end-of-data status: a medium error, or end of data that `st` reports
    /// only as `EIO` (not after a filemark): space one record to tell which.
    Probe,
    /// `ENOMEM`: the record is larger than the buffer (variable mode); `st` has skipped it.
    TooLarge,
    /// Another errno.
    Failed(i32),
}

/// Classifies a read; `end_of_data` is the driver's status after it, asked for a read of 0
/// bytes or `EIO` (`None` otherwise). `st` returns 0 bytes at a filemark (and is then after
/// it); at the end of data right after a filemark it returns 0 twice more, then `EIO`, with
/// `GMT_EOD` set throughout; elsewhere it reports the end of data as `EIO` alone.
pub fn read_class(r: Result<usize, i32>, end_of_data: Option<bool>) -> ReadClass {
    match r {
        Ok(0) if end_of_data == Some(true) => ReadClass::EndOfData,
        Ok(0) => ReadClass::Filemark,
        Ok(n) => ReadClass::Block(n),
        Err(libc::EIO) if end_of_data == Some(true) => ReadClass::EndOfData,
        Err(libc::EIO) => ReadClass::Probe,
        Err(libc::ENOMEM) => ReadClass::TooLarge,
        Err(e) => ReadClass::Failed(e),
    }
}

/// Splits a count of `n` into counts one `MTFSR`/`MTFSF` takes.
pub fn space_counts(mut n: u64) -> impl Iterator<Item = i32> {
    std::iter::from_fn(move || {
        (n > 0).then(|| {
            let k = n.min(MAX_SPACE);
            n -= k;
            k as i32
        })
    })
}

/// What a forward space over records met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Spaced over all of them.
    Moved,
    /// Stopped by a filemark (now after it).
    Filemark,
    /// Stopped by the end of data.
    EndOfData,
}

/// The next move of a [`FileCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountStep {
    /// Space forward over this many records and report what happened.
    Space(u64),
    /// Go back to the start of the file (it was passed: over its filemark if
    /// `crossed_filemark`, else to the end of data), then forward over `blocks` records.
    Return {
        /// Records from the file's start to go forward.
        blocks: u64,
        /// Whether the file's filemark was crossed.
        crossed_filemark: bool,
    },
    /// The file has `blocks` records, and the tape is after its filemark (`filemark`) or at
    /// the end of data.
    Done {
        /// Records in the file.
        blocks: u64,
        /// Whether a filemark ends it.
        filemark: bool,
    },
}

/// The drive answered in a way no file can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inconsistent;

/// Counts one file's records by spacing, for a drive whose position cannot be read: from the
/// file's start it spaces 1, 2, 4… records until a space is stopped (by the filemark or the
/// end of data), then halves the interval, returning to the last known point after each stop.
/// `st` does not say how far a space stopped by a filemark got, so only spaces that succeed
/// count. Steps: one per [`MAX_SPACE`] records, and about twice the bits of the last interval.
#[derive(Debug, Clone, Default)]
pub struct FileCounter {
    /// Records known to be in the file (the tape is after them unless `past_end`).
    lo: u64,
    /// A count known to exceed the file's, once a space was stopped.
    hi: Option<u64>,
    /// The next space while growing.
    grow: u64,
    /// Whether a filemark (not the end of data) ends the file, once seen.
    filemark: Option<bool>,
    /// The tape is past the file's end (after the last stopped space).
    past_end: bool,
    /// The space under way.
    pending: Option<u64>,
    /// Steps taken.
    steps: usize,
}

impl FileCounter {
    /// A count from the start of a file.
    pub fn new() -> FileCounter {
        FileCounter { grow: 1, ..FileCounter::default() }
    }

    /// The next move; `Err` once the file would be larger than any tape holds.
    pub fn next_step(&mut self) -> Result<CountStep, Inconsistent> {
        assert!(self.pending.is_none(), "a space's outcome is due first");
        self.steps += 1;
        assert!(self.steps <= MAX_COUNT_STEPS, "counting a file took {} steps", self.steps);
        if self.lo >= MAX_FILE_RECORDS {
            return Err(Inconsistent);
        }
        let Some(hi) = self.hi else {
            self.pending = Some(self.grow);
            return Ok(CountStep::Space(self.grow));
        };
        let filemark = self.filemark.expect("an end was met");
        if self.past_end {
            if hi - self.lo == 1 {
                return Ok(CountStep::Done { blocks: self.lo, filemark });
            }
            self.past_end = false;
            return Ok(CountStep::Return { blocks: self.lo, crossed_filemark: filemark });
        }
        let k = ((hi - self.lo) / 2).max(1);
        self.pending = Some(k);
        Ok(CountStep::Space(k))
    }

    /// What the last [`CountStep::Space`] met.
    pub fn record(&mut self, p: Probe) -> Result<(), Inconsistent> {
        let k = self.pending.take().expect("a space was asked for");
        match p {
            Probe::Moved => {
                self.lo += k;
                match self.hi {
                    None => self.grow = (self.grow * 2).min(MAX_SPACE),
                    Some(hi) if self.lo >= hi => return Err(Inconsistent),
                    Some(_) => {}
                }
            }
            Probe::Filemark | Probe::EndOfData => {
                let filemark = p == Probe::Filemark;
                if self.filemark.is_some_and(|f| f != filemark) {
                    return Err(Inconsistent);
                }
                self.filemark = Some(filemark);
                self.hi = Some(self.lo + k);
                self.past_end = true;
            }
        }
        Ok(())
    }
}

/// Whether a character device's number is an `st` node that rewinds on close (`/dev/stN`
/// rather than `/dev/nstN`): major 9, bit 7 of the minor clear. `None`: not an `st` node.
pub fn st_rewinding(rdev: u64) -> Option<bool> {
    const SCSI_TAPE_MAJOR: u32 = 9;
    const NON_REWINDING: u32 = 0x80;
    (libc::major(rdev) == SCSI_TAPE_MAJOR).then(|| libc::minor(rdev) & NON_REWINDING == 0)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
