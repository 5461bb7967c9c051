//! [`plan()`]: input checks, then threshold, split, sort and place (see the module docs).

use super::fill::{self, Slot};
use super::{Device, DevicePlan, Item, MAX_DEVICES, Options, Piece, Plan, PlanError, split};

/// Plans a backup of `items` over `devices`: the threshold, the pieces, and which device writes
/// which pieces in what order (see the [module docs](super) for the rules).
///
/// Errors: bad input ([`PlanError::NoDevices`], [`PlanError::TooManyDevices`],
/// [`PlanError::DuplicateDevice`], [`PlanError::DuplicateItem`], [`PlanError::ZeroRate`],
/// [`PlanError::ZeroAlign`], [`PlanError::TotalOverflow`]), or [`PlanError::NoRoom`] when the
/// devices' capacities cannot hold the items.
pub fn plan(items: &[Item], devices: &[Device], options: &Options) -> Result<Plan, PlanError> {
    check_devices(devices)?;
    if options.align == 0 {
        return Err(PlanError::ZeroAlign);
    }
    let total = check_items(items)?;
    let threshold = split::threshold(total, devices.len(), options.min_segment, options.align);
    let mut best = place_all(items, devices, options, total, threshold)?;
    if !options.refine {
        return Ok(best);
    }
    // Few large items can leave the devices unequal at the claims' threshold (four equal files
    // on three devices: two, one, one). A finer threshold, total / (k × devices), cuts them
    // into more segments; the plan that finishes first wins (ties: the coarser one).
    let weights = fill::weights(devices);
    for k in 2..=REFINE_MAX {
        if makespan(&best, &weights) <= ideal(total, &weights) * (1.0 + REFINE_GOOD_ENOUGH) {
            break;
        }
        let n = devices.len().saturating_mul(k);
        let finer = split::threshold(total, n, options.min_segment, options.align);
        if finer >= best.threshold {
            continue;
        }
        if let Ok(p) = place_all(items, devices, options, total, finer)
            && makespan(&p, &weights) < makespan(&best, &weights)
        {
            best = p;
        }
    }
    Ok(best)
}

/// Finest refinement tried: the threshold divided by at most this.
const REFINE_MAX: usize = 8;
/// A plan whose slowest device finishes within this fraction of the ideal is kept as it is.
const REFINE_GOOD_ENOUGH: f64 = 0.005;

/// When the slowest device finishes, in bytes per unit of weight.
fn makespan(plan: &Plan, weights: &[u64]) -> f64 {
    plan.devices.iter().zip(weights).map(|(d, &w)| d.bytes as f64 / w as f64).fold(0.0, f64::max)
}

/// The makespan of a perfect split.
fn ideal(total: u64, weights: &[u64]) -> f64 {
    total as f64 / weights.iter().map(|&w| w as f64).sum::<f64>()
}

/// Splits at `threshold`, sorts and places every piece.
fn place_all(
    items: &[Item],
    devices: &[Device],
    options: &Options,
    total: u64,
    threshold: u64,
) -> Result<Plan, PlanError> {
    let mut pieces = Vec::with_capacity(items.len());
    for item in items {
        split::split(*item, threshold, options.align, &mut pieces);
    }
    split::sort(&mut pieces, options.order);

    let mut slots = new_slots(devices);
    fill::set_shares(&mut slots, total);
    let mut queues: Vec<Vec<Piece>> = vec![Vec::new(); devices.len()];
    let mut rest = total;
    for piece in pieces {
        rest -= piece.len;
        for (i, part) in fill::place(&mut slots, piece, options.align, rest)? {
            queues[i].push(part);
        }
    }
    assert!(rest == 0, "{rest} bytes left after placing every piece");
    let devices = devices
        .iter()
        .zip(queues)
        .zip(&slots)
        .map(|((d, pieces), s)| DevicePlan { device: d.id, pieces, bytes: s.load })
        .collect();
    Ok(Plan { threshold, align: options.align, order: options.order, devices })
}

/// Empty slots for `devices`, in the same order.
pub(super) fn new_slots(devices: &[Device]) -> Vec<Slot> {
    let weights = fill::weights(devices);
    devices.iter().zip(weights).map(|(d, w)| Slot::new(d.capacity, w)).collect()
}

/// Refuses an empty, oversized or ambiguous device list, and rates of zero.
pub(super) fn check_devices(devices: &[Device]) -> Result<(), PlanError> {
    if devices.is_empty() {
        return Err(PlanError::NoDevices);
    }
    if devices.len() > MAX_DEVICES {
        return Err(PlanError::TooManyDevices { count: devices.len(), max: MAX_DEVICES });
    }
    if let Some(d) = devices.iter().find(|d| d.rate == Some(0)) {
        return Err(PlanError::ZeroRate { device: d.id });
    }
    let mut ids: Vec<usize> = devices.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(PlanError::DuplicateDevice { device: w[0] }),
        None => Ok(()),
    }
}

/// Refuses duplicate item ids; returns the total size, refusing one over `u64`.
fn check_items(items: &[Item]) -> Result<u64, PlanError> {
    let mut ids: Vec<u64> = items.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlanError::DuplicateItem { item: w[0] });
    }
    items.iter().try_fold(0u64, |sum, i| sum.checked_add(i.size)).ok_or(PlanError::TotalOverflow)
}
