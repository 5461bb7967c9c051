//! The robot, spoken to in SMC commands: the whole element status (one element type at a
//! time, paged, volume tags on), MOVE MEDIUM with one retry after a re-inventory, INITIALIZE
//! ELEMENT STATUS.

use crate::scsi::cdb::{self, ElementType, MAX_ELEMENT_STATUS_ALLOC};
use crate::scsi::pages::{Element, ElementStatus};
use crate::scsi::transport::{DataBuf, ScsiError, Transport, issue};

use super::inventory::Inventory;

/// Pages asked for before giving up on a report that never completes.
const MAX_PAGES: usize = 4096;

/// The element types an inventory asks for, one at a time. A report of every type at once is
/// allowed by SMC, but `tgt` garbles it (its robot page announces descriptors it does not
/// send, so the next page starts inside them); asking type by type, as `mtx` does, also keeps
/// each report in one address order.
const KINDS: [ElementType; 4] =
    [ElementType::Transport, ElementType::Storage, ElementType::ImportExport, ElementType::DataTransfer];

/// Reads every element's status, one element type at a time, paging through reports of at
/// most [`MAX_ELEMENT_STATUS_ALLOC`] bytes.
pub fn read_inventory(t: &mut dyn Transport) -> Result<Inventory, String> {
    let mut inv = Inventory::default();
    for kind in KINDS {
        read_kind(t, kind, &mut inv.elements)?;
    }
    inv.elements.sort_by_key(|e| e.address);
    inv.elements.dedup_by_key(|e| e.address);
    Ok(inv)
}

/// Reads the status of every element of `kind` into `out`.
fn read_kind(t: &mut dyn Transport, kind: ElementType, out: &mut Vec<Element>) -> Result<(), String> {
    let mut start = 0u16;
    for _ in 0..MAX_PAGES {
        let mut buf = vec![0u8; MAX_ELEMENT_STATUS_ALLOC as usize];
        let c = cdb::read_element_status(Some(kind), start, u16::MAX, true, MAX_ELEMENT_STATUS_ALLOC);
        let got = issue(t, &c, DataBuf::In(&mut buf)).map_err(|e| e.to_string())?;
        let st = ElementStatus::decode(&buf[..got.transferred])
            .map_err(|e| format!("READ ELEMENT STATUS answer ({kind:?} elements): {e}"))?;
        let complete = st.is_complete() || st.elements.is_empty();
        let next = st.next_start();
        out.extend(st.elements.into_iter().filter(|e| e.kind == kind));
        match next {
            Some(n) if !complete => start = n,
            _ => return Ok(()),
        }
    }
    Err(format!("READ ELEMENT STATUS of {kind:?} elements did not complete in {MAX_PAGES} pages"))
}

/// What one move did: its result, and whether a first attempt failed and was retried (the
/// library counts retried moves, so a fault that fired is visible in its activity).
#[derive(Debug)]
pub struct MoveOutcome {
    /// The move's result (after the retry, if there was one).
    pub result: Result<(), String>,
    /// Whether the first attempt failed with a retryable error and the move was issued again.
    pub retried: bool,
}

/// Moves a cartridge; a failed move is retried once after the library re-inventoried.
pub fn move_medium(t: &mut dyn Transport, robot: u16, from: u16, to: u16) -> MoveOutcome {
    let c = cdb::move_medium(robot, from, to);
    match issue(t, &c, DataBuf::None) {
        Ok(_) => MoveOutcome { result: Ok(()), retried: false },
        Err(first) if retry_worth(&first) => {
            tracing::warn!(target: "library", "move {from:#x} → {to:#x} failed ({first}); re-inventorying and retrying");
            let _ = issue(t, &cdb::initialize_element_status(), DataBuf::None);
            let result = issue(t, &c, DataBuf::None)
                .map(|_| ())
                .map_err(|e| format!("MOVE MEDIUM {from:#x} → {to:#x} failed twice: {first}; then {e}"));
            MoveOutcome { result, retried: true }
        }
        Err(e) => {
            MoveOutcome { result: Err(format!("MOVE MEDIUM {from:#x} → {to:#x}: {e}")), retried: false }
        }
    }
}

/// A move failure another try may cure: a hardware error of the robot, a timeout, a unit
/// attention (the door was opened), busy.
fn retry_worth(e: &ScsiError) -> bool {
    e.is_retryable()
        || matches!(e, ScsiError::Transport { .. })
        || e.sense().is_some_and(|s| s.key == crate::scsi::sense::SenseKey::HardwareError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::Cdb;
    use crate::scsi::pages::encode_element_status;
    use crate::scsi::transport::{Completion, TransportError};

    /// A changer that answers READ ELEMENT STATUS as `tgt` does: a report of one element type
    /// is right; a report of every type has a robot page announcing a 52-byte descriptor
    /// followed, 36 bytes later, by the storage page (bytes as `tgt` 1.0.85 sent them).
    struct TgtLike {
        elements: Vec<Element>,
        asked: Vec<u8>,
    }

    impl Transport for TgtLike {
        fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
            let b = cdb.bytes();
            assert_eq!(b[0], cdb::op::READ_ELEMENT_STATUS);
            self.asked.push(b[1] & 0x0F);
            let DataBuf::In(buf) = data else { panic!("data in") };
            let report = match ElementType::from_code(b[1] & 0x0F) {
                Some(k) => {
                    let of: Vec<Element> = self.elements.iter().filter(|e| e.kind == k).cloned().collect();
                    encode_element_status(&of, true)
                }
                None => {
                    let mut r = encode_element_status(&self.elements, true);
                    // Drop the robot descriptor's last 16 bytes: the storage page follows early.
                    r.drain(8 + 8 + 36..8 + 8 + 52);
                    r
                }
            };
            let n = report.len().min(buf.len());
            buf[..n].copy_from_slice(&report[..n]);
            Ok(Completion::good(buf.len() - n))
        }
    }

    fn library() -> Vec<Element> {
        let mut v = vec![Element::empty(ElementType::Transport, 1)];
        v.extend((2..4).map(|a| Element::empty(ElementType::DataTransfer, a)));
        v.extend((200..202).map(|a| Element::empty(ElementType::ImportExport, a)));
        v.extend((1000..1008).map(|a| Element {
            full: a < 1006,
            volume_tag: (a < 1006).then(|| format!("HIL{:04}L8", a - 999)),
            ..Element::empty(ElementType::Storage, a)
        }));
        v
    }

    #[test]
    fn the_inventory_is_read_one_element_type_at_a_time() {
        let mut t = TgtLike { elements: library(), asked: Vec::new() };
        // The garbled report of every type is what a single request would have to decode.
        let mut all = vec![0u8; 4096];
        let got =
            issue(&mut t, &cdb::read_element_status(None, 0, u16::MAX, true, 4096), DataBuf::In(&mut all))
                .unwrap();
        assert!(ElementStatus::decode(&all[..got.transferred]).is_err());
        t.asked.clear();
        let inv = read_inventory(&mut t).unwrap();
        assert_eq!(t.asked, [1, 2, 3, 4]);
        assert_eq!(inv.robot(), Some(1));
        assert_eq!(inv.drives(), [2, 3]);
        assert_eq!(inv.of(ElementType::ImportExport).count(), 2);
        let tags: Vec<_> = inv.of(ElementType::Storage).filter_map(|e| e.volume_tag.clone()).collect();
        assert_eq!(tags, (1..=6).map(|i| format!("HIL{i:04}L8")).collect::<Vec<_>>());
        assert_eq!(inv.elements.len(), 13);
    }
}
