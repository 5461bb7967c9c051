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
