//! Targets: where session streams are written and read back. Every target holds media (disk
//! volume files, an NVRAM region, tape cartridges); every medium starts with a volume label and
//! holds session parts, each starting on a block boundary and padded with zeros to one at its
//! end (the on-media format itself is in [`crate::format`]).
//!
//! A [`Target`] writes one part at a time. A part is durable once [`Target::end_part`] has
//! returned (disk: data synced; tape: a non-immediate filemark). When a medium fills,
//! [`Target::remaining`] says so before a record would cross the end, and the writer closes the
//! part with a continuation and asks for [`Target::next_medium`].
//!
//! A [`Media`] reads parts back, from a position on a medium named by the catalog.

pub mod aligned;
pub mod disk;
pub mod endmark;
pub mod label;
pub mod null;
pub mod nvram;
pub mod spec;
pub mod tape;
pub mod throttle;

use crate::format::records::VolumeLabel;

pub use spec::{TargetSpec, open_media, open_target, open_targets};

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The OS refused an operation on a device or file.
    #[error("{op} on {what} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which device or file.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The device has no room left.
    #[error("{what} is full: {detail}")]
    Full {
        /// Which device.
        what: String,
        /// What to do about it.
        detail: String,
    },
    /// The medium's contents are not what coffer wrote.
    #[error("{what}: {detail}")]
    BadMedium {
        /// Which medium.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A medium the catalog names is not there.
    #[error("medium {barcode} not found in {target}: {detail}")]
    MissingMedium {
        /// Its barcode.
        barcode: String,
        /// Where it was looked for.
        target: String,
        /// What to do.
        detail: String,
    },
    /// A device failed (a drive, a robot, a library).
    #[error("{what}: {detail}")]
    Failed {
        /// Which device.
        what: String,
        /// What happened, and what to do.
        detail: String,
    },
    /// A target specification that cannot be used.
    #[error("bad target '{spec}': {detail}")]
    BadSpec {
        /// The text given.
        spec: String,
        /// Why.
        detail: String,
    },
}

impl DeviceError {
    pub(crate) fn io(
        op: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> DeviceError {
        let what = what.into();
        move |source| {
            if source.raw_os_error() == Some(libc::ENOSPC) {
                DeviceError::Full { what, detail: "no space left on the file system".into() }
            } else {
                DeviceError::Io { op, what, source }
            }
        }
    }
}

/// A medium made ready for writing.
#[derive(Debug, Clone)]
pub struct Mounted {
    /// Its label.
    pub label: VolumeLabel,
    /// Bytes it holds in all.
    pub capacity: u64,
    /// Where it lives, for people and for finding it again (e.g. `disk:/srv/backup`).
    pub location: String,
    /// It was labelled just now: the catalog does not know it yet.
    pub new: bool,
    /// What kind of medium it is.
    pub kind: crate::catalog::MediumKind,
}

/// Where a part starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStart {
    /// Medium UUID.
    pub medium: [u8; 16],
    /// Byte offset (disk, NVRAM) or block number (tape) of the part's first byte.
    pub position: u64,
    /// Tape file number (0 elsewhere).
    pub file_number: u32,
}

/// Writes session parts to media.
pub trait Target: Send {
    /// The target, for people: `disk:/srv/backup`.
    fn describe(&self) -> String;
    /// Block size of its media: parts start on multiples of it.
    fn block_size(&self) -> usize;
    /// How many agents' backups it takes at once, multiplexed onto one stream.
    fn multiplex(&self) -> usize {
        crate::pipeline::mux::DEFAULT_MULTIPLEX
    }
    /// Makes a writable medium ready (labelling a new one if none has room) and returns it.
    fn mount(&mut self) -> Result<Mounted, DeviceError>;
    /// Starts a part at the end of the mounted medium's data.
    fn begin_part(&mut self) -> Result<PartStart, DeviceError>;
    /// Appends bytes to the open part.
    fn write(&mut self, bytes: &[u8]) -> Result<(), DeviceError>;
    /// Bytes that can still be written to the open part's medium.
    fn remaining(&self) -> u64;
    /// Pads the part to a block boundary and makes it durable.
    fn end_part(&mut self) -> Result<(), DeviceError>;
    /// The mounted medium is full: marks it so and mounts the next one.
    fn next_medium(&mut self) -> Result<Mounted, DeviceError>;
    /// Position ranges `[start, end)` of parts overwritten since last asked (a ring medium
    /// reuses its space): the sessions with parts there are gone.
    fn take_evicted(&mut self) -> Vec<(u64, u64)> {
        Vec::new()
    }
    /// Whether the medium is a ring that reuses its space rather than filling up.
    fn is_ring(&self) -> bool {
        false
    }
    /// The job's cancel flag, for a target that may wait long (for a person to bring a
    /// cartridge): it stops waiting once the flag is set.
    fn watch_cancel(&mut self, _cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) {}
    /// Bytes the target can still take, where it can tell (a planner spreading a job over
    /// several targets gives a smaller one less).
    fn free_space(&self) -> Option<u64> {
        None
    }
    /// Bytes per second it writes, where known (a throttled target, a tape drive's rate).
    fn rate(&self) -> Option<u64> {
        None
    }
    /// Whether it streams: a tape drive that stops and repositions when its buffer runs dry,
    /// and so is best fed at full speed or not at all (agents' backups are spooled for it).
    fn streams(&self) -> bool {
        false
    }
}

/// Reads parts back.
pub trait Media: Send {
    /// Opens the stream of the medium `barcode` from byte `position` (a part's start, or any
    /// record's position within it) to the end of its data.
    fn open(&mut self, barcode: &str, position: u64) -> Result<Box<dyn PartReader>, DeviceError>;
    /// Opens the stream of `barcode` at `offset` into the part that starts at `part_position`
    /// and is file `file_number` of a tape (a drive that cannot LOCATE spaces over that many
    /// filemarks).
    fn open_part(
        &mut self,
        barcode: &str,
        part_position: u64,
        file_number: u32,
        offset: u64,
    ) -> Result<Box<dyn PartReader>, DeviceError> {
        let _ = file_number;
        self.open(barcode, part_position + offset)
    }
    /// Labels of every readable medium the target holds (for `scan`).
    fn labels(&mut self) -> Result<Vec<VolumeLabel>, DeviceError>;
    /// What kind of media these are, for the catalog a scan rebuilds.
    fn kind(&self) -> crate::catalog::MediumKind {
        crate::catalog::MediumKind::Disk
    }
    /// Media that the last [`Media::labels`] could not read, each with why.
    fn unreadable(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Where parts may lie on `barcode`, oldest first, for a medium that does not simply hold
    /// them from its label to the end of its data (a ring that has wrapped, a tape's files);
    /// `None` otherwise.
    fn part_ranges(&mut self, _barcode: &str) -> Result<Option<Vec<PartRange>>, DeviceError> {
        Ok(None)
    }
}

/// Where parts may lie on a medium: a byte range and, on tape, the file it is (a drive that
/// cannot LOCATE reaches it by spacing over that many filemarks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRange {
    /// Bytes of the range.
    pub bytes: std::ops::Range<u64>,
    /// Tape file number (the label is file 0); 0 on other media.
    pub file_number: u32,
}

impl PartRange {
    /// A range of a medium without files.
    pub fn bytes(bytes: std::ops::Range<u64>) -> PartRange {
        PartRange { bytes, file_number: 0 }
    }
}

/// A stream of a medium's bytes, read sequentially.
pub trait PartReader: Send {
    /// Reads the next bytes; 0 at the end of the medium's data.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DeviceError>;
    /// Stream position of the next byte.
    fn position(&self) -> u64;
}

/// Adapts a [`PartReader`] to `embedded-io`, for [`crate::format::RecordReader`].
#[derive(Debug)]
pub struct EmbeddedReader<R>(pub R);

impl embedded_io::Error for DeviceError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<R: PartReader> embedded_io::ErrorType for EmbeddedReader<R> {
    type Error = DeviceError;
}

impl<R: PartReader> embedded_io::Read for EmbeddedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DeviceError> {
        self.0.read(buf)
    }
}

impl PartReader for Box<dyn PartReader> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DeviceError> {
        (**self).read(buf)
    }
    fn position(&self) -> u64 {
        (**self).position()
    }
}
