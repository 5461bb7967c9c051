//! The segmentation threshold, cutting items into pieces, and the sorted list (claims 9–12).
//!
//! Invariants: the threshold is a multiple of `align` (unless it had to be clamped to
//! `u64::MAX`, when nothing is split); a split item's pieces cover it exactly, in offset order,
//! each at most the threshold and starting at a multiple of `align`.

use super::{Item, Order, Piece};

/// The segmentation threshold: `total / devices` rounded up to `align`, at least `min_segment`
/// (and at least one `align` unit).
pub(super) fn threshold(total: u64, devices: usize, min_segment: u64, align: u64) -> u64 {
    assert!(devices > 0 && align > 0);
    let per_device = total.div_ceil(devices as u64);
    let floor = per_device.max(min_segment).max(1);
    // u128: rounding up near u64::MAX must not wrap; a clamped threshold splits nothing.
    let rounded = u128::from(floor).div_ceil(u128::from(align)) * u128::from(align);
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// Cuts one item into pieces no longer than `threshold`: the item whole when it fits, else
/// `ceil(size / threshold)` segments of whole `align` units, as equal as units allow, the
/// longer ones last so that the partial unit at the end lands on a long segment.
pub(super) fn split(item: Item, threshold: u64, align: u64, out: &mut Vec<Piece>) {
    assert!(threshold > 0 && align > 0);
    if item.size <= threshold {
        out.push(Piece { item: item.id, offset: 0, len: item.size });
        return;
    }
    assert!(threshold.is_multiple_of(align), "threshold {threshold} not a multiple of {align}");
    let (size, align) = (u128::from(item.size), u128::from(align));
    let count = size.div_ceil(u128::from(threshold));
    let units = size.div_ceil(align);
    // count * (threshold / align) >= units, so no segment exceeds the threshold; and
    // units >= count, so every segment has at least one unit.
    let (per, longer) = (units / count, units % count);
    let mut offset = 0u128;
    for i in 0..count {
        let n = if i >= count - longer { per + 1 } else { per };
        let end = (offset + n * align).min(size);
        let piece = Piece { item: item.id, offset: offset as u64, len: (end - offset) as u64 };
        assert!(piece.len > 0 && piece.len <= threshold, "bad segment {piece:?} of {item:?}");
        out.push(piece);
        offset = end;
    }
    assert!(offset == size, "segments of {item:?} end at {offset}");
}

/// Sorts pieces into the list they are dealt out in: by length in `order`, ties by item and
/// offset (unique within a plan, so the order is total and the plan deterministic).
pub(super) fn sort(pieces: &mut [Piece], order: Order) {
    match order {
        Order::Descending => pieces.sort_unstable_by(|a, b| {
            b.len.cmp(&a.len).then(a.item.cmp(&b.item)).then(a.offset.cmp(&b.offset))
        }),
        Order::Ascending => pieces.sort_unstable_by_key(|p| (p.len, p.item, p.offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(size: u64, threshold: u64, align: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        split(Item { id: 7, size }, threshold, align, &mut out);
        out
    }

    #[test]
    fn threshold_is_total_over_devices_rounded_up_to_align() {
        assert_eq!(threshold(90, 3, 0, 1), 30);
        assert_eq!(threshold(91, 3, 0, 1), 31);
        assert_eq!(threshold(91, 3, 0, 8), 32);
        assert_eq!(threshold(10, 3, 16, 8), 16, "min_segment is a floor");
        assert_eq!(threshold(0, 3, 0, 8), 8, "at least one unit");
        assert_eq!(threshold(u64::MAX, 1, 0, 1 << 20), u64::MAX, "clamped, not wrapped");
    }

    #[test]
    fn small_items_stay_whole() {
        assert_eq!(pieces(30, 30, 4), vec![Piece { item: 7, offset: 0, len: 30 }]);
        assert_eq!(pieces(0, 8, 4), vec![Piece { item: 7, offset: 0, len: 0 }]);
    }

    #[test]
    fn large_items_split_evenly_on_unit_boundaries() {
        // 100 bytes, threshold 40, unit 10: three segments of 3, 3, 4 units.
        let got: Vec<(u64, u64)> = pieces(100, 40, 10).iter().map(|p| (p.offset, p.len)).collect();
        assert_eq!(got, vec![(0, 30), (30, 30), (60, 40)]);
        // The partial last unit lands on a long segment: 95 = 30 + 30 + 35.
        let got: Vec<(u64, u64)> = pieces(95, 40, 10).iter().map(|p| (p.offset, p.len)).collect();
        assert_eq!(got, vec![(0, 30), (30, 30), (60, 35)]);
        // One byte over the threshold: two segments, not threshold + 1 byte.
        let got: Vec<(u64, u64)> = pieces(41, 40, 10).iter().map(|p| (p.offset, p.len)).collect();
        assert_eq!(got, vec![(0, 20), (20, 21)]);
    }

    #[test]
    fn sort_orders_by_length_then_item_then_offset() {
        let p = |item, offset, len| Piece { item, offset, len };
        let mut v = vec![p(2, 0, 5), p(1, 10, 5), p(1, 0, 5), p(3, 0, 9), p(4, 0, 0)];
        sort(&mut v, Order::Descending);
        assert_eq!(v, vec![p(3, 0, 9), p(1, 0, 5), p(1, 10, 5), p(2, 0, 5), p(4, 0, 0)]);
        sort(&mut v, Order::Ascending);
        assert_eq!(v, vec![p(4, 0, 0), p(1, 0, 5), p(1, 10, 5), p(2, 0, 5), p(3, 0, 9)]);
    }
}
