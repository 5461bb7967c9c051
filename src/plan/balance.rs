//! [`Balancer`]: a plan being executed, and failover (claims 13–15).
//!
//! Each device's writer pulls its next piece ([`Balancer::next`]) and acknowledges it once it
//! is durable ([`Balancer::written`]). A piece is, per device, *queued* (not yet handed out),
//! *outstanding* (handed out, not acknowledged) or *done*. When a device fails
//! ([`Balancer::failed`]) the caller says which byte ranges it made durable; every other byte
//! of its queued and outstanding pieces is placed on the operative devices by the planner's
//! rule (least filled first, capacity respected, largest first unless the plan was ascending)
//! and appended to their queues.
//!
//! Invariants: a byte of an item is in at most one operative device's queued, outstanding or
//! done pieces, or in a failed device's durable ranges; bytes are never moved off an operative
//! device. A failover that returns an error changes nothing.

use std::collections::VecDeque;

use serde::Serialize;

use super::fill::{self, Slot};
use super::planner::{check_devices, new_slots};
use super::{Device, Order, Piece, Plan, PlanError, split};

/// One piece moved off a failed device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The device that now writes it.
    pub to: usize,
    /// The bytes moved: a piece of the failed device, or part of one.
    pub piece: Piece,
}

/// What a failover did, for the session summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// The failed device.
    pub from: usize,
    /// Bytes of its unfinished pieces that it had made durable: they stay where they are.
    pub kept: u64,
    /// Bytes moved to other devices.
    pub bytes: u64,
    /// Where each moved piece went, in the order they were placed.
    pub moves: Vec<Move>,
}

/// One device's state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lane {
    device: usize,
    /// Counts: `load` is queued + outstanding bytes, `used` adds the done ones.
    slot: Slot,
    queue: VecDeque<Piece>,
    outstanding: Vec<Piece>,
    done: Vec<Piece>,
}

impl Lane {
    fn pending(&self) -> impl Iterator<Item = &Piece> {
        self.outstanding.iter().chain(self.queue.iter())
    }
}

/// A plan in execution: per device, the pieces still to write, in order. Pull-based: one
/// writer per device asks for its next piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balancer {
    align: u64,
    order: Order,
    lanes: Vec<Lane>,
}

impl Balancer {
    /// Starts executing `plan` on `devices` (the same devices it was made for, in any order:
    /// their capacities and rates guide failover).
    pub fn new(plan: &Plan, devices: &[Device]) -> Result<Self, PlanError> {
        check_devices(devices)?;
        if let Some(d) = devices.iter().find(|d| plan.device(d.id).is_none()) {
            return Err(PlanError::UnknownDevice { device: d.id });
        }
        let slots = new_slots(devices);
        let mut lanes = Vec::with_capacity(plan.devices.len());
        for dp in &plan.devices {
            let at = devices.iter().position(|d| d.id == dp.device);
            let at = at.ok_or(PlanError::UnknownDevice { device: dp.device })?;
            let mut slot = slots[at].clone();
            for p in &dp.pieces {
                slot.load += p.len;
                slot.used += p.len;
                slot.pieces += 1;
            }
            let queue = dp.pieces.iter().copied().collect();
            lanes.push(Lane { device: dp.device, slot, queue, outstanding: Vec::new(), done: Vec::new() });
        }
        Ok(Balancer { align: plan.align, order: plan.order, lanes })
    }

    fn lane(&self, device: usize) -> Result<usize, PlanError> {
        self.lanes.iter().position(|l| l.device == device).ok_or(PlanError::UnknownDevice { device })
    }

    /// The next piece for `device` to write, now outstanding until [`Balancer::written`].
    /// `None` when its queue is empty, it has failed, or it is not in the plan.
    pub fn next(&mut self, device: usize) -> Option<Piece> {
        let lane = self.lanes.iter_mut().find(|l| l.device == device && l.slot.operative)?;
        let piece = lane.queue.pop_front()?;
        lane.outstanding.push(piece);
        Some(piece)
    }

    /// Records that `device` made `piece`, which it had been handed, durable.
    pub fn written(&mut self, device: usize, piece: Piece) -> Result<(), PlanError> {
        let at = self.lane(device)?;
        let lane = &mut self.lanes[at];
        if !lane.slot.operative {
            return Err(PlanError::AlreadyFailed { device });
        }
        let at = lane.outstanding.iter().position(|p| *p == piece);
        let at = at.ok_or(PlanError::NotAssigned { device, piece })?;
        lane.outstanding.remove(at);
        lane.done.push(piece);
        lane.slot.load -= piece.len;
        lane.slot.pieces -= 1;
        Ok(())
    }

    /// Takes `device` out of service. `durable` lists the byte ranges it made durable, each
    /// within one piece it was given (acknowledged ones may be listed or not; a zero-size
    /// item's empty piece counts as durable when listed); everything else it held
    /// moves to the operative devices. Returns what moved where; on error nothing changes.
    ///
    /// Errors: [`PlanError::UnknownDevice`], [`PlanError::AlreadyFailed`],
    /// [`PlanError::NotAssigned`] for a durable range outside the device's pieces,
    /// [`PlanError::NoOperativeDevice`] when bytes must move and no device is left, and
    /// [`PlanError::NoRoom`] when the operative devices cannot hold them.
    pub fn failed(&mut self, device: usize, durable: &[Piece]) -> Result<Moved, PlanError> {
        let at = self.lane(device)?;
        let lane = &self.lanes[at];
        if !lane.slot.operative {
            return Err(PlanError::AlreadyFailed { device });
        }
        if let Some(d) = durable.iter().find(|d| !lane.pending().chain(&lane.done).any(|p| contains(p, d))) {
            return Err(PlanError::NotAssigned { device, piece: *d });
        }
        let mut rest: Vec<Piece> = lane.pending().flat_map(|p| unwritten(p, durable)).collect();
        let bytes: u64 = rest.iter().map(|p| p.len).sum();
        let kept = lane.slot.load - bytes;
        split::sort(&mut rest, self.order);

        let mut slots: Vec<Slot> = self.lanes.iter().map(|l| l.slot.clone()).collect();
        slots[at] = Slot { load: 0, pieces: 0, operative: false, ..slots[at].clone() };
        if !rest.is_empty() && !slots.iter().any(|s| s.operative) {
            return Err(PlanError::NoOperativeDevice { failed: device, unplaced: bytes });
        }
        let total = slots.iter().map(|s| s.load).sum::<u64>() + bytes;
        fill::set_shares(&mut slots, total);
        let mut moves = Vec::new();
        let mut left = bytes;
        for piece in rest {
            left -= piece.len;
            moves.extend(fill::place(&mut slots, piece, self.align, left)?);
        }

        let moves: Vec<Move> =
            moves.into_iter().map(|(i, piece)| Move { to: self.lanes[i].device, piece }).collect();
        for (lane, slot) in self.lanes.iter_mut().zip(slots) {
            lane.slot = slot;
        }
        let lane = &mut self.lanes[at];
        lane.queue.clear();
        lane.outstanding.clear();
        for m in &moves {
            let i = self.lane(m.to).expect("moves go to lanes of this balancer");
            self.lanes[i].queue.push_back(m.piece);
        }
        Ok(Moved { from: device, kept, bytes, moves })
    }

    /// Pieces `device` still has to write: outstanding ones, then queued ones. `None` when the
    /// device is not in the plan; empty once it has failed.
    pub fn pending(&self, device: usize) -> Option<Vec<Piece>> {
        let lane = self.lanes.iter().find(|l| l.device == device)?;
        Some(lane.pending().copied().collect())
    }

    /// Bytes `device` still has to write (outstanding and queued).
    pub fn load(&self, device: usize) -> Option<u64> {
        self.lanes.iter().find(|l| l.device == device).map(|l| l.slot.load)
    }

    /// Bytes `device` was given in all (written, outstanding and queued): never over its
    /// capacity.
    pub fn assigned(&self, device: usize) -> Option<u64> {
        self.lanes.iter().find(|l| l.device == device).map(|l| l.slot.used)
    }

    /// Pieces `device` has acknowledged as durable, in order.
    pub fn done(&self, device: usize) -> Option<&[Piece]> {
        self.lanes.iter().find(|l| l.device == device).map(|l| l.done.as_slice())
    }

    /// True while `device` is in the plan and has not failed.
    pub fn is_operative(&self, device: usize) -> bool {
        self.lanes.iter().any(|l| l.device == device && l.slot.operative)
    }

    /// True when no operative device has anything left to write or acknowledge.
    pub fn is_finished(&self) -> bool {
        self.lanes.iter().all(|l| !l.slot.operative || (l.slot.load == 0 && l.slot.pieces == 0))
    }
}

/// True when range `d` lies within piece `p` (an empty range: at an offset within it).
fn contains(p: &Piece, d: &Piece) -> bool {
    d.item == p.item && d.offset >= p.offset && d.end() <= p.end()
}

/// What of `p` is not covered by the `durable` ranges: maximal sub-ranges in offset order. An
/// empty piece is covered only by an empty range of the same item at the same offset.
fn unwritten(p: &Piece, durable: &[Piece]) -> Vec<Piece> {
    let same = durable.iter().filter(|d| d.item == p.item);
    if p.len == 0 {
        let written = same.clone().any(|d| d.len == 0 && d.offset == p.offset);
        return if written { Vec::new() } else { vec![*p] };
    }
    let mut ranges: Vec<(u64, u64)> = same
        .map(|d| (d.offset.max(p.offset), d.end().min(p.end())))
        .filter(|(start, end)| start < end)
        .collect();
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut at = p.offset;
    for (start, end) in ranges {
        if start > at {
            out.push(Piece { item: p.item, offset: at, len: start - at });
        }
        at = at.max(end);
    }
    if at < p.end() {
        out.push(Piece { item: p.item, offset: at, len: p.end() - at });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_is_the_piece_less_its_durable_ranges() {
        let p = |item, offset, len| Piece { item, offset, len };
        let piece = p(1, 100, 50);
        assert_eq!(unwritten(&piece, &[]), vec![piece]);
        assert_eq!(unwritten(&piece, &[p(1, 100, 20)]), vec![p(1, 120, 30)]);
        assert_eq!(unwritten(&piece, &[p(1, 110, 10), p(2, 130, 5)]), vec![p(1, 100, 10), p(1, 120, 30)]);
        assert_eq!(unwritten(&piece, &[p(1, 140, 10), p(1, 100, 30), p(1, 120, 15)]), vec![p(1, 135, 5)]);
        assert_eq!(unwritten(&piece, &[p(1, 0, 500)]), vec![]);
        assert_eq!(unwritten(&p(3, 0, 0), &[p(3, 0, 0)]), vec![]);
        assert_eq!(unwritten(&p(3, 0, 0), &[p(4, 0, 0)]), vec![p(3, 0, 0)]);
    }
}
