//! Placing pieces on devices: shares, the fill measure, and cutting a piece to the room left
//! (claims 16, 38, 44). Used by the planner and, on failover, by the balancer.
//!
//! Invariants: a slot's `used` never exceeds its capacity; a placed piece is either the piece
//! whole or consecutive parts of it, each but the last ending at a multiple of `align`.

use super::{Device, Piece, PlanError};

/// One device as the filler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// Bytes assigned and not yet written: what the fill measure counts.
    pub load: u64,
    /// Pieces in `load`.
    pub pieces: usize,
    /// Bytes taking up capacity: written plus `load`.
    pub used: u64,
    /// Free bytes when the plan started; `None` when unbounded.
    pub capacity: Option<u64>,
    /// Relative write rate (see [`weights`]).
    pub weight: u64,
    /// Bytes this slot should end up with (see [`set_shares`]).
    pub share: u64,
    /// False once the device has failed: it takes nothing more.
    pub operative: bool,
}

impl Slot {
    /// A fresh slot for a device, empty.
    pub fn new(capacity: Option<u64>, weight: u64) -> Self {
        Slot { load: 0, pieces: 0, used: 0, capacity, weight, share: 0, operative: true }
    }

    /// Free bytes, `None` when unbounded.
    pub fn free(&self) -> Option<u64> {
        self.capacity.map(|c| c - self.used)
    }

    fn fits(&self, len: u64) -> bool {
        self.operative && self.free().is_none_or(|f| f >= len)
    }

    fn take(&mut self, piece: Piece) {
        assert!(self.fits(piece.len), "{piece:?} placed on a slot without room: {self:?}");
        self.load += piece.len;
        self.used += piece.len;
        self.pieces += 1;
    }
}

/// Relative write rates: each device's rate; an unknown rate counts as the mean of the known
/// ones; with no rate known, all devices weigh the same.
pub(super) fn weights(devices: &[Device]) -> Vec<u64> {
    let known: Vec<u64> = devices.iter().filter_map(|d| d.rate).collect();
    let mean = match known.len() {
        0 => 1,
        n => (known.iter().map(|&r| u128::from(r)).sum::<u128>() / n as u128) as u64,
    };
    devices.iter().map(|d| d.rate.unwrap_or(mean).max(1)).collect()
}

/// Splits `total` bytes over the operative slots in proportion to their weights, none over
/// what its capacity allows beyond what it has written (water-filling: a capped slot's excess
/// goes to the others, again by weight). Failed slots get nothing.
pub(super) fn set_shares(slots: &mut [Slot], total: u64) {
    let mut open: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].operative).collect();
    for s in slots.iter_mut() {
        s.share = 0;
    }
    let mut rest = u128::from(total);
    // Each round caps at least one slot or ends: at most one round per slot.
    while !open.is_empty() {
        let weight: u128 = open.iter().map(|&i| u128::from(slots[i].weight)).sum();
        let fair = |s: &Slot| u128::from(s.weight) * rest / weight;
        let limit = |s: &Slot| s.capacity.map(|c| u128::from(c - (s.used - s.load)));
        let capped: Vec<usize> =
            open.iter().copied().filter(|&i| limit(&slots[i]).is_some_and(|l| l < fair(&slots[i]))).collect();
        if capped.is_empty() {
            for &i in &open {
                slots[i].share = fair(&slots[i]) as u64;
            }
            return;
        }
        for &i in &capped {
            let l = limit(&slots[i]).expect("capped slots are bounded");
            slots[i].share = l as u64;
            rest -= l;
        }
        open.retain(|i| !capped.contains(i));
    }
}

/// Orders two slots for a piece of `len` bytes: smaller `(load + len) / share` first (a slot
/// with no share after every slot with one), then fewer bytes, then fewer pieces.
fn fill_cmp(a: &Slot, b: &Slot, len: u64) -> std::cmp::Ordering {
    // Loads plus a piece never exceed the plan's total, a u64: the products fit in u128.
    let (xa, xb) = (u128::from(a.load + len), u128::from(b.load + len));
    let by_fill = match (a.share, b.share) {
        (0, 0) => std::cmp::Ordering::Equal,
        (0, _) => std::cmp::Ordering::Greater,
        (_, 0) => std::cmp::Ordering::Less,
        (sa, sb) => (xa * u128::from(sb)).cmp(&(xb * u128::from(sa))),
    };
    by_fill.then(a.load.cmp(&b.load)).then(a.pieces.cmp(&b.pieces))
}

/// Places `piece` on the then least filled slot with room for it. When no slot has room, cuts
/// the piece at the last `align` boundary that fits the slot with the most free space, places
/// that part there and goes on with the rest. `rest` is the bytes still to place after this
/// piece, for the error. Returns where each part went, as `(slot index, part)`.
pub(super) fn place(
    slots: &mut [Slot],
    piece: Piece,
    align: u64,
    rest: u64,
) -> Result<Vec<(usize, Piece)>, PlanError> {
    assert!(align > 0 && slots.iter().any(|s| s.operative), "placing with no operative slot");
    let mut out = Vec::new();
    let mut piece = piece;
    loop {
        let best = (0..slots.len())
            .filter(|&i| slots[i].fits(piece.len))
            .min_by(|&a, &b| fill_cmp(&slots[a], &slots[b], piece.len));
        if let Some(i) = best {
            slots[i].take(piece);
            out.push((i, piece));
            return Ok(out);
        }
        // Nothing has room, so every operative slot is bounded. Most free space, first on ties.
        let free = |i: usize| slots[i].free().expect("an unbounded slot has room");
        let roomiest = (0..slots.len())
            .filter(|&i| slots[i].operative)
            .min_by(|&a, &b| free(b).cmp(&free(a)))
            .expect("asserted above");
        let end = u128::from(piece.offset) + u128::from(free(roomiest));
        let cut = (end / u128::from(align) * u128::from(align)) as u64;
        if cut <= piece.offset {
            let free: u64 = (0..slots.len()).filter(|&i| slots[i].operative).map(free).sum();
            return Err(PlanError::NoRoom { piece, unplaced: piece.len + rest, free });
        }
        let head = Piece { len: cut - piece.offset, ..piece };
        assert!(head.len < piece.len, "{head:?} fits nowhere, yet is shorter than the room");
        slots[roomiest].take(head);
        out.push((roomiest, head));
        piece = Piece { offset: cut, len: piece.len - head.len, ..piece };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(capacity: Option<u64>, weight: u64) -> Slot {
        Slot::new(capacity, weight)
    }

    #[test]
    fn weights_fill_unknown_rates_with_the_mean_of_known_ones() {
        let d = |id, rate| Device { id, capacity: None, rate };
        assert_eq!(weights(&[d(0, None), d(1, None)]), vec![1, 1]);
        assert_eq!(weights(&[d(0, Some(300)), d(1, None), d(2, Some(100))]), vec![300, 200, 100]);
    }

    #[test]
    fn shares_follow_weights_and_cap_at_capacity() {
        let mut s = vec![slot(None, 2), slot(None, 1), slot(None, 1)];
        set_shares(&mut s, 400);
        assert_eq!(s.iter().map(|s| s.share).collect::<Vec<_>>(), vec![200, 100, 100]);
        // The first is capped at 50; its excess is split 1:1 between the other two.
        let mut s = vec![slot(Some(50), 2), slot(None, 1), slot(Some(1000), 1)];
        set_shares(&mut s, 400);
        assert_eq!(s.iter().map(|s| s.share).collect::<Vec<_>>(), vec![50, 175, 175]);
        s[1].operative = false;
        set_shares(&mut s, 400);
        assert_eq!(s.iter().map(|s| s.share).collect::<Vec<_>>(), vec![50, 0, 350]);
    }

    #[test]
    fn a_piece_goes_to_the_least_filled_slot_with_room() {
        // Shares: 10 (capped) and 20.
        let mut s = vec![slot(Some(10), 1), slot(None, 1)];
        set_shares(&mut s, 30);
        let p = Piece { item: 1, offset: 0, len: 20 };
        assert_eq!(place(&mut s, p, 1, 0), Ok(vec![(1, p)]), "slot 0 has no room for it");
        let q = Piece { item: 2, offset: 0, len: 5 };
        assert_eq!(place(&mut s, q, 1, 0), Ok(vec![(0, q)]), "slot 0 is the less filled: 5/10 against 25/20");
    }

    #[test]
    fn a_piece_too_big_for_any_slot_is_cut_at_aligned_ends() {
        let mut s = vec![slot(Some(25), 1), slot(Some(18), 1)];
        set_shares(&mut s, 40);
        let p = Piece { item: 1, offset: 0, len: 40 };
        let parts = place(&mut s, p, 8, 0).unwrap();
        let want = vec![(0, Piece { len: 24, ..p }), (1, Piece { offset: 24, len: 16, ..p })];
        assert_eq!(parts, want);
        // One byte left on slot 0, two on slot 1: less than a unit, so nothing more fits.
        let q = Piece { item: 2, offset: 0, len: 9 };
        let err = place(&mut s, q, 8, 100).unwrap_err();
        assert_eq!(err, PlanError::NoRoom { piece: q, unplaced: 109, free: 3 });
        assert_eq!(err.shortfall(), 106);
    }
}
