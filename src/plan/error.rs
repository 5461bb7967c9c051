//! Planner errors: bad input, lack of room, no device left, and balancer misuse.

use super::Piece;

/// Why a plan could not be made or a failure could not be absorbed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No device was given, or none remains to write to.
    #[error("no devices to plan over: name at least one device")]
    NoDevices,
    /// More devices than [`super::MAX_DEVICES`].
    #[error("{count} devices is more than the {max} one backup can spread over")]
    TooManyDevices {
        /// Devices given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two devices share an id.
    #[error("device {device} is listed twice: give each device once")]
    DuplicateDevice {
        /// The id.
        device: usize,
    },
    /// Two items share an id.
    #[error("item {item} is listed twice: give each object once")]
    DuplicateItem {
        /// The id.
        item: u64,
    },
    /// A device's rate is zero: it would never finish.
    #[error("device {device} has a rate of 0 bytes/s: give its measured rate or none")]
    ZeroRate {
        /// The device.
        device: usize,
    },
    /// [`super::Options::align`] is zero.
    #[error("segment alignment of 0 bytes: give at least 1")]
    ZeroAlign,
    /// The items' sizes add up to more than `u64::MAX` bytes.
    #[error("items total more than {} bytes: back them up in several sessions", u64::MAX)]
    TotalOverflow,
    /// No device has room for even an aligned part of a piece.
    #[error(
        "no device has room for item {} bytes {}..{}: {unplaced} bytes still to place, {free} bytes \
         free over all devices; free space or add a device",
        piece.item,
        piece.offset,
        piece.end()
    )]
    NoRoom {
        /// The piece (or what was left of it) that could not be placed.
        piece: Piece,
        /// Bytes not placed: this piece and all after it.
        unplaced: u64,
        /// Free bytes over all operative devices.
        free: u64,
    },
    /// A device failed and no operative device remains for what it had not written.
    #[error(
        "device {failed} failed with {unplaced} bytes not written and no device is left to take \
         them: replace a device and run the backup again"
    )]
    NoOperativeDevice {
        /// The device that failed last.
        failed: usize,
        /// Bytes it had not written.
        unplaced: u64,
    },
    /// A device id that is not in the plan.
    #[error("device {device} is not in the plan")]
    UnknownDevice {
        /// The id.
        device: usize,
    },
    /// A device already reported failed was reported again or acknowledged a write.
    #[error("device {device} has already failed")]
    AlreadyFailed {
        /// The id.
        device: usize,
    },
    /// A piece acknowledged (or reported durable) that the device was not given.
    #[error("device {device} was not given item {} bytes {}..{}", piece.item, piece.offset, piece.end())]
    NotAssigned {
        /// The device.
        device: usize,
        /// The piece.
        piece: Piece,
    },
}

impl PlanError {
    /// Bytes of free space missing, for [`PlanError::NoRoom`]: what is still to place less what
    /// is free (zero when the free space is there but split into parts too small to use).
    pub fn shortfall(&self) -> u64 {
        match self {
            Self::NoRoom { unplaced, free, .. } => unplaced.saturating_sub(*free),
            _ => 0,
        }
    }

    /// True when adding or freeing space would let planning succeed (as opposed to bad input or
    /// misuse of the balancer).
    pub fn is_lack_of_room(&self) -> bool {
        matches!(self, Self::NoRoom { .. } | Self::NoOperativeDevice { .. })
    }
}
