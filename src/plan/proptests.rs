//! Property tests: coverage, limits and determinism of plans, and of random failover runs.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const GIB: u64 = 1 << 30;

/// Sizes skewed like real trees: many small files, some medium, a few up to 10 GiB.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..=64 << 10,
        3 => 0u64..=256 << 20,
        1 => 0u64..=10 * GIB,
        1 => Just(0u64),
    ]
}

/// A device: capacity as a percentage of an equal share of the total (or unbounded), rate.
fn device() -> impl Strategy<Value = (Option<u16>, Option<u64>)> {
    (proptest::option::of(0u16..=300), proptest::option::of(1u64..=1 << 30))
}

fn options() -> impl Strategy<Value = Options> {
    let align = prop_oneof![Just(1u64), Just(4096), Just(1 << 20), Just(DEFAULT_ALIGN)];
    let order = prop_oneof![Just(Order::Descending), Just(Order::Ascending)];
    (order, 0u64..=8 << 20, align, any::<bool>()).prop_map(|(order, min_segment, align, refine)| Options {
        order,
        min_segment,
        align,
        refine,
    })
}

fn inputs() -> impl Strategy<Value = (Vec<Item>, Vec<Device>, Options)> {
    let items = proptest::collection::vec(size(), 0..200).prop_map(|s| {
        s.into_iter().enumerate().map(|(i, size)| Item { id: i as u64 * 3 + 1, size }).collect()
    });
    (items, proptest::collection::vec(device(), 1..8), options()).prop_map(
        |(items, devs, options): (Vec<Item>, Vec<_>, _)| {
            let total: u64 = items.iter().map(|i| i.size).sum();
            let n = devs.len() as u128;
            let devices = devs
                .into_iter()
                .enumerate()
                .map(|(id, (pct, rate))| {
                    let capacity = pct.map(|pct| (u128::from(total) * u128::from(pct) / 100 / n) as u64);
                    Device { id: id * 2 + 1, capacity, rate }
                })
                .collect();
            (items, devices, options)
        },
    )
}

/// Asserts that `ranges` (per item) cover each item exactly once: from 0 to its size, in
/// order, with no gap and no overlap; a zero-size item by exactly one empty range.
fn assert_covered(items: &[Item], mut ranges: BTreeMap<u64, Vec<Piece>>) {
    for item in items {
        let mut got = ranges.remove(&item.id).unwrap_or_default();
        got.sort_by_key(|p| (p.offset, p.len));
        if item.size == 0 {
            assert_eq!(got, vec![Piece { item: item.id, offset: 0, len: 0 }]);
            continue;
        }
        let mut at = 0;
        for p in &got {
            assert!(p.len > 0 && p.offset == at, "item {item:?}: {got:?}");
            at = p.end();
        }
        assert_eq!(at, item.size, "item {item:?}: {got:?}");
    }
    assert!(ranges.is_empty(), "pieces of items not given: {ranges:?}");
}

fn by_item<'a>(pieces: impl Iterator<Item = &'a Piece>) -> BTreeMap<u64, Vec<Piece>> {
    let mut out: BTreeMap<u64, Vec<Piece>> = BTreeMap::new();
    for p in pieces {
        out.entry(p.item).or_default().push(*p);
    }
    out
}

/// A plan error is only acceptable for lack of room, and only when room was short.
fn assert_fair_refusal(err: &PlanError, devices: &[Device], total: u64, align: u64) {
    let PlanError::NoRoom { free, .. } = err else { panic!("unexpected {err}") };
    assert!(devices.iter().all(|d| d.capacity.is_some()), "{err} with an unbounded device");
    let room: u128 = devices.iter().map(|d| u128::from(d.capacity.unwrap())).sum();
    let slack = devices.len() as u128 * u128::from(align);
    assert!(room < u128::from(total) + slack, "{err} with {room} bytes of room for {total}");
    assert!(u128::from(*free) < slack, "{err}: that much free space holds an aligned part");
}

fn check_plan(plan: &Plan, items: &[Item], devices: &[Device], options: &Options) {
    let total: u64 = items.iter().map(|i| i.size).sum();
    let n = devices.len();
    let at = |k: usize| split::threshold(total, n * k, options.min_segment, options.align);
    if options.refine {
        // The claims' threshold, or a refinement of it that finishes sooner.
        assert!((1..=8).any(|k| plan.threshold == at(k)), "threshold {} is no refinement", plan.threshold);
        let plain = super::plan(items, devices, &Options { refine: false, ..*options }).unwrap();
        let weights = super::fill::weights(devices);
        let span = |p: &Plan| {
            p.devices.iter().zip(&weights).map(|(d, &w)| d.bytes as f64 / w as f64).fold(0.0, f64::max)
        };
        assert!(
            span(plan) <= span(&plain),
            "refining made it worse:\n{}\n{}",
            plan.summary(),
            plain.summary()
        );
    } else {
        assert_eq!(plan.threshold, at(1));
        assert!(plan.threshold >= total.div_ceil(n as u64));
    }
    assert!(plan.threshold >= options.min_segment && plan.threshold.is_multiple_of(options.align));
    assert_eq!(
        plan.devices.iter().map(|d| d.device).collect::<Vec<_>>(),
        devices.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    for (dp, dev) in plan.devices.iter().zip(devices) {
        assert_eq!(dp.bytes, dp.pieces.iter().map(|p| p.len).sum::<u64>());
        assert!(dev.capacity.is_none_or(|c| dp.bytes <= c), "{dp:?} over {dev:?}");
        for p in &dp.pieces {
            assert!(p.len <= plan.threshold, "{p:?} longer than {}", plan.threshold);
            assert!(p.offset.is_multiple_of(options.align), "{p:?} not aligned to {}", options.align);
        }
    }
    assert_covered(items, by_item(plan.devices.iter().flat_map(|d| &d.pieces)));
    // Unbounded devices of one speed: least-filled-first keeps them within one piece.
    if devices.iter().all(|d| d.capacity.is_none() && d.rate == devices[0].rate) {
        let most = plan.devices.iter().map(|d| d.bytes).max().unwrap();
        let least = plan.devices.iter().map(|d| d.bytes).min().unwrap();
        assert!(most - least <= plan.threshold, "{}", plan.summary());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plans_cover_every_byte_once_within_limits((items, devices, options) in inputs()) {
        let total: u64 = items.iter().map(|i| i.size).sum();
        match plan(&items, &devices, &options) {
            Ok(got) => {
                check_plan(&got, &items, &devices, &options);
                let reversed: Vec<Item> = items.iter().rev().copied().collect();
                prop_assert_eq!(plan(&reversed, &devices, &options), Ok(got.clone()));
                prop_assert_eq!(plan(&items, &devices, &options), Ok(got));
            }
            Err(err) => assert_fair_refusal(&err, &devices, total, options.align),
        }
    }

    #[test]
    fn failover_keeps_every_byte_once(
        (items, devices, options) in inputs(),
        steps in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, any::<u32>()), 0..12),
    ) {
        let Ok(plan) = plan(&items, &devices, &options) else { return Ok(()) };
        let mut b = Balancer::new(&plan, &devices).unwrap();
        // Every durable range, wherever it was written: acknowledged pieces and what failed
        // devices made durable of their unfinished ones.
        let mut durable: Vec<(usize, Piece)> = Vec::new();
        for (pick, writes, cut) in steps {
            let live: Vec<usize> = devices.iter().map(|d| d.id).filter(|&d| b.is_operative(d)).collect();
            let Some(&dev) = live.get(pick.index(live.len().max(1))) else { break };
            if !fail_after_writes(&mut b, dev, writes, cut, &mut durable, &devices, options.align) {
                break;
            }
        }
        for d in &devices {
            while let Some(piece) = b.next(d.id) {
                b.written(d.id, piece).unwrap();
                durable.push((d.id, piece));
            }
        }
        prop_assert!(b.is_finished());
        assert_covered(&items, by_item(durable.iter().map(|(_, p)| p)));
        for d in &devices {
            let written: u64 = durable.iter().filter(|(at, _)| *at == d.id).map(|(_, p)| p.len).sum();
            prop_assert!(d.capacity.is_none_or(|c| written <= c), "{written} bytes on {d:?}");
        }
    }
}

/// Device `dev` writes `writes` pieces, takes one more and makes a `cut / 2^32` part of it
/// durable, then fails. Returns false when the failure could not be absorbed (checked to be for
/// a good reason, and to change nothing): the device then writes that piece whole and stays in
/// service, and the run stops failing devices.
fn fail_after_writes(
    b: &mut Balancer,
    dev: usize,
    writes: usize,
    cut: u32,
    durable: &mut Vec<(usize, Piece)>,
    devices: &[Device],
    align: u64,
) -> bool {
    let mut on_dev: Vec<Piece> = Vec::new();
    for _ in 0..writes {
        let Some(piece) = b.next(dev) else { break };
        b.written(dev, piece).unwrap();
        durable.push((dev, piece));
        on_dev.push(piece);
    }
    // Durable ranges the executor reports: sometimes the acknowledged pieces too.
    let mut reported: Vec<Piece> = if cut.is_multiple_of(2) { on_dev.clone() } else { Vec::new() };
    let mut partial = None;
    let taken = b.next(dev);
    if let Some(piece) = taken {
        let len = ((u128::from(piece.len) * u128::from(cut)) >> 32) as u64;
        if len > 0 || (piece.len == 0 && cut.is_multiple_of(3)) {
            partial = Some(Piece { len, ..piece });
            reported.push(Piece { len, ..piece });
        }
    }
    let before = b.clone();
    let pending_before = b.load(dev).unwrap();
    match b.failed(dev, &reported) {
        Ok(moved) => {
            assert_eq!(moved.kept + moved.bytes, pending_before);
            assert_eq!(moved.kept, partial.map_or(0, |p| p.len));
            for m in &moved.moves {
                assert!(b.is_operative(m.to));
                let clash = durable.iter().map(|(_, d)| d).chain(&partial).find(|d| overlaps(d, &m.piece));
                assert!(clash.is_none(), "{m:?} moves durable bytes {clash:?}");
            }
            for d in devices.iter().filter(|d| b.is_operative(d.id)) {
                let assigned = b.assigned(d.id).unwrap();
                assert!(d.capacity.is_none_or(|c| assigned <= c), "{assigned} bytes given to {d:?}");
            }
            durable.extend(partial.map(|p| (dev, p)));
            true
        }
        Err(err) => {
            assert_eq!(*b, before, "a failed failover changed the balancer");
            match err {
                PlanError::NoOperativeDevice { .. } => {
                    assert!(devices.iter().all(|d| d.id == dev || !b.is_operative(d.id)))
                }
                PlanError::NoRoom { free, .. } => {
                    assert!(
                        devices.iter().all(|d| d.id == dev || !b.is_operative(d.id) || d.capacity.is_some())
                    );
                    assert!(u128::from(free) < devices.len() as u128 * u128::from(align), "{err}");
                }
                e => panic!("unexpected {e}"),
            }
            if let Some(piece) = taken {
                b.written(dev, piece).unwrap();
                durable.push((dev, piece));
            }
            false
        }
    }
}

/// True when two ranges of the same item share a byte (or are the same empty range).
fn overlaps(a: &Piece, b: &Piece) -> bool {
    a.item == b.item
        && if a.len == 0 || b.len == 0 {
            a.len == b.len && a.offset == b.offset
        } else {
            a.offset < b.end() && b.offset < a.end()
        }
}
