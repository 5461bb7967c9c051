//! Hand-built planner cases.

use super::*;

const MIB: u64 = 1 << 20;

fn items(sizes: &[u64]) -> Vec<Item> {
    sizes.iter().enumerate().map(|(i, &size)| Item { id: i as u64, size }).collect()
}

fn devices(n: usize) -> Vec<Device> {
    (0..n).map(|id| Device { id, capacity: None, rate: None }).collect()
}

fn bytes_only(align: u64) -> Options {
    Options { order: Order::Descending, min_segment: 0, align, refine: false }
}

fn bytes(plan: &Plan) -> Vec<u64> {
    plan.devices.iter().map(|d| d.bytes).collect()
}

fn p(item: u64, offset: u64, len: u64) -> Piece {
    Piece { item, offset, len }
}

/// Deterministic skewed sizes: mostly small files, some medium, a few large.
fn mixed_sizes(n: usize) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let r = x >> 33;
            match r % 10 {
                0 => r % (2 << 30),
                1..=3 => r % (64 * MIB),
                _ => r % (256 << 10),
            }
        })
        .collect()
}

fn assert_within(got: &[u64], want: &[u64], permille: u64) {
    for (g, w) in got.iter().zip(want) {
        assert!(g.abs_diff(*w) * 1000 <= w * permille, "{got:?} not within {permille}‰ of {want:?}");
    }
}

#[test]
fn worked_example_two_then_three_devices() {
    let it = items(&[100, 40, 30, 20, 10]);
    // Two devices: threshold 100, nothing split; 100 fills one device, the rest the other.
    let two = plan(&it, &devices(2), &bytes_only(1)).unwrap();
    assert_eq!(two.threshold, 100);
    assert_eq!(two.devices[0].pieces, vec![p(0, 0, 100)]);
    assert_eq!(two.devices[1].pieces, vec![p(1, 0, 40), p(2, 0, 30), p(3, 0, 20), p(4, 0, 10)]);
    // Three devices: threshold 67 splits the 100 into 50 + 50; sorted 50 50 40 30 20 10.
    let three = plan(&it, &devices(3), &bytes_only(1)).unwrap();
    assert_eq!(three.threshold, 67);
    assert_eq!(three.devices[0].pieces, vec![p(0, 0, 50), p(3, 0, 20)]);
    assert_eq!(three.devices[1].pieces, vec![p(0, 50, 50), p(4, 0, 10)]);
    assert_eq!(three.devices[2].pieces, vec![p(1, 0, 40), p(2, 0, 30)]);
    assert_eq!(bytes(&three), vec![70, 60, 70]);
    assert_eq!(three.pieces_of(0), vec![(0, p(0, 0, 50)), (1, p(0, 50, 50))]);
    assert_eq!(three.pieces_of(9), vec![]);
}

#[test]
fn ascending_order_deals_the_smallest_first() {
    let opts = Options { order: Order::Ascending, ..bytes_only(1) };
    let plan = plan(&items(&[100, 40, 30, 20, 10]), &devices(3), &opts).unwrap();
    assert_eq!(plan.order, Order::Ascending);
    assert_eq!(plan.devices[0].pieces, vec![p(4, 0, 10), p(1, 0, 40)]);
    assert_eq!(plan.devices[1].pieces, vec![p(3, 0, 20), p(0, 0, 50)]);
    assert_eq!(plan.devices[2].pieces, vec![p(2, 0, 30), p(0, 50, 50)]);
}

#[test]
fn three_equal_devices_get_the_same_bytes_within_one_percent() {
    let sizes = mixed_sizes(500);
    let plan = plan(&items(&sizes), &devices(3), &Options::default()).unwrap();
    let mean = sizes.iter().sum::<u64>() / 3;
    assert_within(&bytes(&plan), &[mean; 3], 10);
    assert!(plan.devices.iter().all(|d| d.pieces.iter().all(|p| p.len <= plan.threshold)));
}

#[test]
fn one_huge_item_is_split_evenly() {
    let plan = plan(&items(&[30 * DEFAULT_ALIGN + 5]), &devices(4), &Options::default()).unwrap();
    assert_eq!(plan.threshold, 8 * DEFAULT_ALIGN);
    // 31 units in 4 segments of 7, 8, 8 and 8 units, the last one short by the partial unit.
    let a = DEFAULT_ALIGN;
    assert_eq!(bytes(&plan), vec![8 * a, 8 * a, 7 * a + 5, 7 * a]);
    assert_eq!(
        plan.pieces_of(0).iter().map(|(_, p)| p.offset).collect::<Vec<_>>(),
        [0, 7, 15, 23].map(|u| u * a)
    );
    assert!(plan.devices.iter().all(|d| d.pieces.iter().all(|p| p.offset.is_multiple_of(DEFAULT_ALIGN))));
}

#[test]
fn a_device_with_little_room_gets_less_and_the_others_share_the_rest() {
    let sizes = mixed_sizes(500);
    let total: u64 = sizes.iter().sum();
    let mut devs = devices(3);
    devs[1].capacity = Some(total / 10);
    let plan = plan(&items(&sizes), &devs, &Options::default()).unwrap();
    let got = bytes(&plan);
    assert!(got[1] <= total / 10, "{got:?}");
    assert_within(&[got[1]], &[total / 10], 10);
    let others = (total - got[1]) / 2;
    assert_within(&[got[0], got[2]], &[others, others], 10);
}

#[test]
fn a_piece_no_device_can_hold_is_cut_to_the_room_left() {
    // 100 bytes, two devices of 60: threshold 50 would fit, so force one whole item of 100 by
    // a large min_segment; claims 38/44 cut it by the space remaining.
    let devs = [0, 1].map(|id| Device { id, capacity: Some(60), rate: None });
    let opts = Options { order: Order::Descending, min_segment: 100, align: 8, refine: false };
    let plan = plan(&items(&[100]), &devs, &opts).unwrap();
    assert_eq!(plan.threshold, 104);
    assert_eq!(plan.devices[0].pieces, vec![p(0, 0, 56)]);
    assert_eq!(plan.devices[1].pieces, vec![p(0, 56, 44)]);
}

#[test]
fn rates_give_a_twice_as_fast_device_twice_the_bytes() {
    let sizes = mixed_sizes(500);
    let total: u64 = sizes.iter().sum();
    let devs = [
        Device { id: 0, capacity: None, rate: Some(200 * MIB) },
        Device { id: 1, capacity: None, rate: Some(100 * MIB) },
    ];
    let plan = plan(&items(&sizes), &devs, &Options::default()).unwrap();
    assert_within(&bytes(&plan), &[total / 3 * 2, total / 3], 10);
}

#[test]
fn an_unknown_rate_counts_as_the_mean_of_the_known_ones() {
    let sizes = mixed_sizes(600);
    let total: u64 = sizes.iter().sum();
    let devs = [Some(300), None, Some(100)].map(|r| r.map(|r| r * MIB));
    let devs: Vec<Device> =
        devs.iter().enumerate().map(|(id, &rate)| Device { id, capacity: None, rate }).collect();
    let plan = plan(&items(&sizes), &devs, &Options::default()).unwrap();
    assert_within(&bytes(&plan), &[total / 2, total / 3, total / 6], 20);
}

#[test]
fn no_room_anywhere_is_an_error_naming_the_piece_and_the_shortfall() {
    let devs = [0, 1].map(|id| Device { id, capacity: Some(40), rate: None });
    let err = plan(&items(&[50, 30, 20]), &devs, &bytes_only(1)).unwrap_err();
    // Threshold 50: the 50 fits no device, so 40 fills device 0 and 10 goes to device 1, then
    // the 30 fills device 1: the 20 is left, with nothing free.
    assert_eq!(err, PlanError::NoRoom { piece: p(2, 0, 20), unplaced: 20, free: 0 });
    assert_eq!(err.shortfall(), 20);
    assert!(err.is_lack_of_room());
    assert!(err.to_string().contains("item 2 bytes 0..20"), "{err}");
    // With 5 more bytes on each device, 10 of the 20 still do not fit.
    let devs = [0, 1].map(|id| Device { id, capacity: Some(45), rate: None });
    let err = plan(&items(&[50, 30, 20]), &devs, &bytes_only(1)).unwrap_err();
    assert_eq!(err, PlanError::NoRoom { piece: p(2, 10, 10), unplaced: 10, free: 0 });
}

#[test]
fn zero_size_items_are_placed_and_spread() {
    let plan = plan(&items(&[0, 0, 0, 0]), &devices(2), &Options::default()).unwrap();
    assert_eq!(plan.devices[0].pieces, vec![p(0, 0, 0), p(2, 0, 0)]);
    assert_eq!(plan.devices[1].pieces, vec![p(1, 0, 0), p(3, 0, 0)]);
    assert_eq!(plan.total_bytes(), 0);
    let empty = plan_of_nothing();
    assert_eq!(empty.piece_count(), 0);
}

fn plan_of_nothing() -> Plan {
    plan(&[], &devices(2), &Options::default()).unwrap()
}

#[test]
fn bad_input_is_refused() {
    let o = Options::default();
    let one = items(&[1]);
    assert_eq!(plan(&one, &[], &o), Err(PlanError::NoDevices));
    let many = devices(MAX_DEVICES + 1);
    assert_eq!(plan(&one, &many, &o), Err(PlanError::TooManyDevices { count: 65, max: 64 }));
    let mut dup = devices(3);
    dup[2].id = 1;
    assert_eq!(plan(&one, &dup, &o), Err(PlanError::DuplicateDevice { device: 1 }));
    let mut slow = devices(2);
    slow[1].rate = Some(0);
    assert_eq!(plan(&one, &slow, &o), Err(PlanError::ZeroRate { device: 1 }));
    let twice = [Item { id: 3, size: 1 }, Item { id: 3, size: 2 }];
    assert_eq!(plan(&twice, &devices(1), &o), Err(PlanError::DuplicateItem { item: 3 }));
    let huge = items(&[u64::MAX, 1]);
    assert_eq!(plan(&huge, &devices(1), &o), Err(PlanError::TotalOverflow));
    assert_eq!(plan(&one, &devices(1), &Options { align: 0, ..o }), Err(PlanError::ZeroAlign));
}

#[test]
fn the_plan_renders_as_a_summary_and_as_json() {
    let plan = plan(&items(&[100, 40, 30, 20, 10]), &devices(3), &bytes_only(1)).unwrap();
    let want = "6 pieces, 200 bytes over 3 devices; threshold 67 bytes, align 1 bytes, Descending\n\
                device 0: 2 pieces, 70 bytes, 105.0% of mean\n\
                device 1: 2 pieces, 60 bytes, 90.0% of mean\n\
                device 2: 2 pieces, 70 bytes, 105.0% of mean\n";
    assert_eq!(plan.summary(), want);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["threshold"], 67);
    assert_eq!(json["order"], "descending");
    assert_eq!(json["devices"][1]["pieces"][0], serde_json::json!({"item": 0, "offset": 50, "len": 50}));
}

#[test]
fn refining_evens_out_few_large_items() {
    // Four equal files on three devices: the claims' threshold splits nothing (2, 1, 1 files).
    let items: Vec<Item> = (1..=4).map(|id| Item { id, size: 512 << 20 }).collect();
    let devices: Vec<Device> = (0..3).map(|id| Device { id, capacity: None, rate: None }).collect();
    let plain = plan(&items, &devices, &Options::default()).unwrap();
    let bytes = |p: &Plan| p.devices.iter().map(|d| d.bytes).collect::<Vec<_>>();
    assert_eq!(bytes(&plain).iter().max(), Some(&(1024 << 20)));
    let refined = plan(&items, &devices, &Options { refine: true, ..Options::default() }).unwrap();
    let b = bytes(&refined);
    let (lo, hi) = (*b.iter().min().unwrap(), *b.iter().max().unwrap());
    assert!(hi - lo <= DEFAULT_ALIGN, "{}", refined.summary());
    assert!(refined.threshold < plain.threshold);
    // Already even: refining changes nothing.
    let even: Vec<Item> = (1..=3).map(|id| Item { id, size: 512 << 20 }).collect();
    let a = plan(&even, &devices, &Options::default()).unwrap();
    assert_eq!(plan(&even, &devices, &Options { refine: true, ..Options::default() }).unwrap(), a);
}
