//! The planner: which bytes of which object go to which device, in what order, for a backup
//! spread over several devices at once. Pure: no I/O, no clock, no randomness.
//!
//! # What it owns and promises
//!
//! - [`plan()`] turns a list of [`Item`]s (files, volumes) and [`Device`]s into a [`Plan`]:
//!   per device, the [`Piece`]s it writes, in order. Every byte of every item is in exactly one
//!   piece; zero-size items are one empty piece each, so every object is recorded somewhere.
//! - The *threshold* is the total size divided by the number of devices, rounded up to
//!   [`Options::align`] and never below [`Options::min_segment`]. Items larger than it are cut
//!   into nearly equal segments, each at most the threshold, starting at multiples of `align`;
//!   the last segment takes the remainder. No piece is ever longer than the threshold.
//! - Pieces are sorted ([`Order`]: largest first by default; ties by item, then offset) and each
//!   goes to the device that is then least filled (see *Fill* below) among those with room for
//!   it. A piece no device has room for is cut at an `align` boundary to fill the device with
//!   the most free space, and its remainder placed the same way. When no device has room even
//!   for one aligned cut, planning fails with [`PlanError::NoRoom`]. No device is ever given more
//!   than its [`Device::capacity`].
//! - The same input gives the same plan; the order of the input lists does not matter.
//! - [`Balancer`] executes a plan: each device's writer pulls its next piece and acknowledges
//!   it once durable. When a device fails, whatever it had not durably written (whole pieces,
//!   and the unwritten parts of pieces it wrote in part) moves to the operative devices, placed
//!   by the same rule; nothing durable anywhere is assigned again.
//!
//! # Fill
//!
//! Each device gets a *share* of the bytes to place: the total is split in proportion to the
//! devices' rates, except that a device cannot be given more than its capacity (the excess is
//! split among the others the same way: water-filling). A device's fill is its load (bytes
//! assigned and not yet written) plus the piece, divided by its share; the piece goes to the
//! smallest fill (ties: fewer bytes, then fewer pieces, then the device listed first).
//!
//! - Devices with no rate, or all devices equal: shares are equal and the rule is "fewest bytes".
//! - Every device with a rate: the rule is "earliest expected finish", `(load + piece) / rate`,
//!   for all devices whose capacity is not the limit.
//! - Some rates known, some not: an unknown rate counts as the mean of the known ones (a guess
//!   that neither starves nor floods the unmeasured device).
//! - A device with less room than its share fills more slowly, so it still has room late in the
//!   list, when the small pieces come.
//!
//! The threshold follows the claims (total / devices) even when rates differ, so a few huge
//! items may leave a fast device's share unmet: pieces are never cut finer than that.
//!
//! # Fault model
//!
//! Devices fail; the executor reports which bytes each failed device made durable (ranges of its
//! pieces, possibly ending mid-piece). Those stay where they are; every other byte it held is
//! reassigned once. Bad input (no devices, duplicate ids, a rate of zero, an alignment of zero,
//! a total over `u64`) and lack of room are typed errors ([`PlanError`]); a broken internal
//! invariant is an `assert!`.

mod balance;
mod error;
mod fill;
mod planner;
mod split;

#[cfg(test)]
mod balance_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use serde::Serialize;

pub use balance::{Balancer, Move, Moved};
pub use error::PlanError;
pub use planner::plan;

/// Default unit segment boundaries fall on: 4 MiB, a whole number of tape and disk blocks.
pub const DEFAULT_ALIGN: u64 = 4 << 20;
/// Default smallest threshold: items of 1 MiB or less are never split.
pub const DEFAULT_MIN_SEGMENT: u64 = 1 << 20;
/// Most devices one plan spreads over: bounds the per-piece search and the share computation.
pub const MAX_DEVICES: usize = 64;

const _: () = assert!(DEFAULT_ALIGN > 0 && DEFAULT_MIN_SEGMENT > 0);
const _: () = assert!(DEFAULT_MIN_SEGMENT <= DEFAULT_ALIGN);

/// One object to back up, as the caller numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The caller's object index; unique within one plan.
    pub id: u64,
    /// Bytes in the object.
    pub size: u64,
}

/// One device the backup writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The caller's device index; unique within one plan.
    pub id: usize,
    /// Free bytes on the medium; `None` when it is not bounded (or not known to be).
    pub capacity: Option<u64>,
    /// Expected write rate in bytes per second; `None` when unknown. Zero is refused.
    pub rate: Option<u64>,
}

/// In which order pieces are dealt out (claims 11, 12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Largest first: the small pieces at the end even the devices out.
    #[default]
    Descending,
    /// Smallest first: many objects complete early.
    Ascending,
}

/// How to plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Order of the sorted list of pieces.
    pub order: Order,
    /// The threshold is never below this: items no larger are never split.
    pub min_segment: u64,
    /// Segment boundaries fall on multiples of this many bytes; at least 1.
    pub align: u64,
    /// When the claims' threshold leaves the devices unequal, try finer ones (the threshold
    /// over 2 … 8) and keep the plan that finishes first. Off: exactly the claims' threshold.
    pub refine: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            order: Order::Descending,
            min_segment: DEFAULT_MIN_SEGMENT,
            align: DEFAULT_ALIGN,
            refine: false,
        }
    }
}

/// A contiguous range of one item: the whole item, or a segment of it (claims 23, 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Piece {
    /// The item's id.
    pub item: u64,
    /// First byte of the range within the item.
    pub offset: u64,
    /// Bytes in the range; zero only for a zero-size item.
    pub len: u64,
}

impl Piece {
    /// One past the last byte of the range.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// What one device writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevicePlan {
    /// The device's id.
    pub device: usize,
    /// Its pieces, in the order they are to be written.
    pub pieces: Vec<Piece>,
    /// Sum of the pieces' lengths.
    pub bytes: u64,
}

/// The whole plan: one [`DevicePlan`] per device, in the order the devices were given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Items larger than this were split; no piece is longer.
    pub threshold: u64,
    /// Unit segment boundaries fall on.
    pub align: u64,
    /// Order the pieces were dealt out in.
    pub order: Order,
    /// Per device, what it writes.
    pub devices: Vec<DevicePlan>,
}

impl Plan {
    /// Bytes in all pieces: the total size of the items.
    pub fn total_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).sum()
    }

    /// Number of pieces over all devices.
    pub fn piece_count(&self) -> usize {
        self.devices.iter().map(|d| d.pieces.len()).sum()
    }

    /// The plan for one device, if it is in the plan.
    pub fn device(&self, device: usize) -> Option<&DevicePlan> {
        self.devices.iter().find(|d| d.device == device)
    }

    /// Where an item's bytes go: `(device, piece)` pairs in offset order. Empty when the item is
    /// not in the plan.
    pub fn pieces_of(&self, item: u64) -> Vec<(usize, Piece)> {
        let mut out: Vec<(usize, Piece)> = self
            .devices
            .iter()
            .flat_map(|d| d.pieces.iter().filter(|p| p.item == item).map(|p| (d.device, *p)))
            .collect();
        out.sort_by_key(|(_, p)| p.offset);
        out
    }

    /// The plan for people, for `--plan-only`: a heading, then one line per device with its
    /// piece count, bytes, and bytes as a percentage of the mean over devices.
    pub fn summary(&self) -> String {
        let total = self.total_bytes();
        let n = self.devices.len() as u128;
        let mut out = format!(
            "{} pieces, {total} bytes over {n} devices; threshold {} bytes, align {} bytes, {:?}\n",
            self.piece_count(),
            self.threshold,
            self.align,
            self.order,
        );
        for d in &self.devices {
            // Per mille of the mean, in integers: bytes * n * 1000 / total.
            let share = match total {
                0 => "-".to_string(),
                t => {
                    let pm = (u128::from(d.bytes) * n * 1000 + u128::from(t) / 2) / u128::from(t);
                    format!("{}.{}%", pm / 10, pm % 10)
                }
            };
            let _ = writeln!(
                out,
                "device {}: {} pieces, {} bytes, {share} of mean",
                d.device,
                d.pieces.len(),
                d.bytes
            );
        }
        out
    }
}
