//! Hand-built balancer cases: pulling, acknowledging, failover.

use super::*;

fn items(sizes: &[u64]) -> Vec<Item> {
    sizes.iter().enumerate().map(|(i, &size)| Item { id: i as u64, size }).collect()
}

fn devices(n: usize) -> Vec<Device> {
    (0..n).map(|id| Device { id, capacity: None, rate: None }).collect()
}

fn p(item: u64, offset: u64, len: u64) -> Piece {
    Piece { item, offset, len }
}

const UNALIGNED: Options = Options { order: Order::Descending, min_segment: 0, align: 1, refine: false };

/// The worked example on three devices: 0 has [0@0+50, 3], 1 has [0@50+50, 4], 2 has [1, 2].
fn example() -> (Plan, Vec<Device>) {
    let devs = devices(3);
    (plan(&items(&[100, 40, 30, 20, 10]), &devs, &UNALIGNED).unwrap(), devs)
}

#[test]
fn devices_pull_their_pieces_in_order_and_acknowledge_them() {
    let (plan, devs) = example();
    let mut b = Balancer::new(&plan, &devs).unwrap();
    assert_eq!(b.next(0), Some(p(0, 0, 50)));
    assert_eq!(b.next(0), Some(p(3, 0, 20)));
    assert_eq!(b.next(0), None);
    assert_eq!(b.pending(0), Some(vec![p(0, 0, 50), p(3, 0, 20)]));
    assert_eq!(b.load(0), Some(70));
    b.written(0, p(3, 0, 20)).unwrap();
    assert_eq!(b.written(0, p(3, 0, 20)), Err(PlanError::NotAssigned { device: 0, piece: p(3, 0, 20) }));
    assert_eq!(b.written(0, p(4, 0, 10)), Err(PlanError::NotAssigned { device: 0, piece: p(4, 0, 10) }));
    b.written(0, p(0, 0, 50)).unwrap();
    assert_eq!((b.load(0), b.assigned(0)), (Some(0), Some(70)));
    assert_eq!(b.done(0), Some(&[p(3, 0, 20), p(0, 0, 50)][..]));
    assert!(!b.is_finished());
    for d in 1..3 {
        while let Some(piece) = b.next(d) {
            b.written(d, piece).unwrap();
        }
    }
    assert!(b.is_finished());
    assert_eq!(b.next(9), None);
    assert_eq!(b.written(9, p(0, 0, 1)), Err(PlanError::UnknownDevice { device: 9 }));
}

#[test]
fn failover_moves_exactly_the_unwritten_remainder() {
    let (plan, devs) = example();
    let mut b = Balancer::new(&plan, &devs).unwrap();
    let first = b.next(0).unwrap();
    b.written(0, first).unwrap();
    assert_eq!(b.next(0), Some(p(3, 0, 20)));
    // Device 0 made 8 bytes of item 3 durable, then failed.
    let moved = b.failed(0, &[p(3, 0, 8)]).unwrap();
    let want = Moved { from: 0, kept: 8, bytes: 12, moves: vec![Move { to: 1, piece: p(3, 8, 12) }] };
    assert_eq!(moved, want, "to device 1: 60 + 12 bytes is less filled than device 2's 70 + 12");
    assert_eq!(b.pending(1), Some(vec![p(0, 50, 50), p(4, 0, 10), p(3, 8, 12)]));
    assert_eq!(b.pending(0), Some(vec![]));
    assert_eq!(b.done(0), Some(&[p(0, 0, 50)][..]), "the durable piece stays");
    assert!(!b.is_operative(0));
    assert_eq!(b.next(0), None);
    assert_eq!(b.written(0, p(3, 0, 20)), Err(PlanError::AlreadyFailed { device: 0 }));
    assert_eq!(b.failed(0, &[]), Err(PlanError::AlreadyFailed { device: 0 }));

    // Device 1 fails having written nothing: all of it goes to device 2, largest first.
    let moved = b.failed(1, &[]).unwrap();
    let to2 = |piece| Move { to: 2, piece };
    assert_eq!(moved.moves, vec![to2(p(0, 50, 50)), to2(p(3, 8, 12)), to2(p(4, 0, 10))]);
    assert_eq!((moved.kept, moved.bytes), (0, 72));
    assert_eq!(b.load(2), Some(142));

    // Device 2 is the last: its failure cannot be absorbed and changes nothing.
    let before = b.clone();
    let err = b.failed(2, &[p(1, 0, 40)]).unwrap_err();
    assert_eq!(err, PlanError::NoOperativeDevice { failed: 2, unplaced: 102 });
    assert!(err.is_lack_of_room());
    assert_eq!(b, before);
}

#[test]
fn failover_respects_capacity_and_an_error_changes_nothing() {
    let caps = [None, Some(70), Some(100)];
    let devs: Vec<Device> =
        caps.iter().enumerate().map(|(id, &capacity)| Device { id, capacity, rate: None }).collect();
    let plan = plan(&items(&[60, 60, 60]), &devs, &UNALIGNED).unwrap();
    let mut b = Balancer::new(&plan, &devs).unwrap();
    let before = b.clone();
    // 60 bytes to move, 10 + 40 free.
    let err = b.failed(0, &[]).unwrap_err();
    assert_eq!(err, PlanError::NoRoom { piece: p(0, 50, 10), unplaced: 10, free: 0 });
    assert_eq!(b, before);
    // With 20 bytes written there is just room, cut to what each device has left.
    let piece = b.next(0).unwrap();
    let moved = b.failed(0, &[p(0, 0, 20)]).unwrap();
    let want = vec![Move { to: 2, piece: p(0, 20, 40) }];
    assert_eq!(moved.moves, want, "it fits device 2 whole, so it is not cut");
    assert_eq!((b.assigned(1), b.assigned(2)), (Some(60), Some(100)));
    assert_eq!(piece, p(0, 0, 60));
}

#[test]
fn failover_follows_rates() {
    let rates = [100, 300, 100];
    let devs: Vec<Device> =
        rates.iter().enumerate().map(|(id, &r)| Device { id, capacity: None, rate: Some(r) }).collect();
    let plan = plan(&items(&[10; 12]), &devs, &UNALIGNED).unwrap();
    assert_eq!(plan.devices.iter().map(|d| d.bytes).collect::<Vec<_>>(), vec![20, 80, 20]);
    let mut b = Balancer::new(&plan, &devs).unwrap();
    let moved = b.failed(0, &[]).unwrap();
    let want = vec![Move { to: 2, piece: p(2, 0, 10) }, Move { to: 1, piece: p(7, 0, 10) }];
    assert_eq!(moved.moves, want);
    assert_eq!((b.load(1), b.load(2)), (Some(90), Some(30)), "3:1, as the rates");
}

#[test]
fn durable_ranges_must_lie_in_the_devices_pieces() {
    let (plan, devs) = example();
    let mut b = Balancer::new(&plan, &devs).unwrap();
    let piece = b.next(0).unwrap();
    b.written(0, piece).unwrap();
    let before = b.clone();
    for bad in [p(1, 0, 10), p(0, 40, 20), p(3, 15, 10)] {
        assert_eq!(b.failed(0, &[bad]), Err(PlanError::NotAssigned { device: 0, piece: bad }));
    }
    assert_eq!(b, before);
    // An acknowledged piece may be listed again; an empty range inside a piece is harmless.
    let moved = b.failed(0, &[piece, p(3, 5, 0)]).unwrap();
    assert_eq!((moved.kept, moved.bytes), (0, 20));
    assert_eq!(b.failed(7, &[]), Err(PlanError::UnknownDevice { device: 7 }));
}

#[test]
fn the_last_device_may_fail_once_it_has_nothing_left() {
    let devs = devices(1);
    let plan = plan(&items(&[0, 5]), &devs, &UNALIGNED).unwrap();
    let mut b = Balancer::new(&plan, &devs).unwrap();
    let (first, second) = (b.next(0).unwrap(), b.next(0).unwrap());
    assert_eq!((first, second), (p(1, 0, 5), p(0, 0, 0)));
    b.written(0, first).unwrap();
    // The empty piece is durable only when listed.
    let err = b.failed(0, &[]).unwrap_err();
    assert_eq!(err, PlanError::NoOperativeDevice { failed: 0, unplaced: 0 });
    let moved = b.failed(0, &[p(0, 0, 0)]).unwrap();
    assert_eq!(moved, Moved { from: 0, kept: 0, bytes: 0, moves: vec![] });
    assert!(b.is_finished());
}

#[test]
fn a_balancer_needs_the_plans_devices() {
    let (plan, devs) = example();
    assert_eq!(Balancer::new(&plan, &devs[..2]), Err(PlanError::UnknownDevice { device: 2 }));
    let mut more = devs.clone();
    more.push(Device { id: 5, capacity: None, rate: None });
    assert_eq!(Balancer::new(&plan, &more), Err(PlanError::UnknownDevice { device: 5 }));
    let reversed: Vec<Device> = devs.iter().rev().copied().collect();
    assert!(Balancer::new(&plan, &reversed).is_ok());
}
