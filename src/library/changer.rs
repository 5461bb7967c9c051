//! The robot, spoken to in SMC commands: the whole element status (paged, volume tags on),
//! MOVE MEDIUM with one retry after a re-inventory, INITIALIZE ELEMENT STATUS.

use crate::scsi::cdb::{self, MAX_ELEMENT_STATUS_ALLOC};
use crate::scsi::pages::ElementStatus;
use crate::scsi::transport::{DataBuf, ScsiError, Transport, issue};

use super::inventory::Inventory;

/// Pages asked for before giving up on a report that never completes.
const MAX_PAGES: usize = 4096;

/// Reads every element's status, paging through reports of at most
/// [`MAX_ELEMENT_STATUS_ALLOC`] bytes.
pub fn read_inventory(t: &mut dyn Transport) -> Result<Inventory, String> {
    let mut inv = Inventory::default();
    let mut start = 0u16;
    for _ in 0..MAX_PAGES {
        let mut buf = vec![0u8; MAX_ELEMENT_STATUS_ALLOC as usize];
        let c = cdb::read_element_status(None, start, u16::MAX, true, MAX_ELEMENT_STATUS_ALLOC);
        let got = issue(t, &c, DataBuf::In(&mut buf)).map_err(|e| e.to_string())?;
        let st = ElementStatus::decode(&buf[..got.transferred])
            .map_err(|e| format!("READ ELEMENT STATUS answer: {e}"))?;
        let complete = st.is_complete() || st.elements.is_empty();
        let next = st.next_start();
        inv.elements.extend(st.elements);
        match next {
            Some(n) if !complete => start = n,
            _ => {
                inv.elements.sort_by_key(|e| e.address);
                inv.elements.dedup_by_key(|e| e.address);
                return Ok(inv);
            }
        }
    }
    Err(format!("READ ELEMENT STATUS did not complete in {MAX_PAGES} pages"))
}

/// Moves a cartridge; a failed move is retried once after the library re-inventoried.
pub fn move_medium(t: &mut dyn Transport, robot: u16, from: u16, to: u16) -> Result<(), String> {
    let c = cdb::move_medium(robot, from, to);
    match issue(t, &c, DataBuf::None) {
        Ok(_) => Ok(()),
        Err(first) if retry_worth(&first) => {
            tracing::warn!(target: "library", "move {from:#x} → {to:#x} failed ({first}); re-inventorying and retrying");
            let _ = issue(t, &cdb::initialize_element_status(), DataBuf::None);
            issue(t, &c, DataBuf::None)
                .map(|_| ())
                .map_err(|e| format!("MOVE MEDIUM {from:#x} → {to:#x} failed twice: {first}; then {e}"))
        }
        Err(e) => Err(format!("MOVE MEDIUM {from:#x} → {to:#x}: {e}")),
    }
}

/// A move failure another try may cure: a hardware error of the robot, a timeout, a unit
/// attention (the door was opened), busy.
fn retry_worth(e: &ScsiError) -> bool {
    e.is_retryable()
        || matches!(e, ScsiError::Transport { .. })
        || e.sense().is_some_and(|s| s.key == crate::scsi::sense::SenseKey::HardwareError)
}
