//! The changer transport (SMC): INQUIRY, TEST UNIT READY, REQUEST SENSE, READ ELEMENT STATUS,
//! MOVE MEDIUM, INITIALIZE ELEMENT STATUS and MODE SENSE of the element address page.

use std::sync::{Arc, Mutex, MutexGuard};

use super::state::LibraryState;
use super::{DRIVE_BASE, IE_BASE, SLOT_BASE, TRANSPORT_ADDR};
use crate::scsi::cdb::{Cdb, ElementType, MAX_ELEMENT_STATUS_ALLOC, op};
use crate::scsi::pages::inquiry::DEVICE_TYPE_CHANGER;
use crate::scsi::pages::{
    ELEMENT_ADDRESS_PAGE, Element, ElementAddresses, ElementRange, Inquiry, ModeForm, ModeParams,
    encode_element_status,
};
use crate::scsi::sense::{Sense, SenseKey};
use crate::scsi::transport::{Completion, DataBuf, Transport, TransportError};

/// The library's robot, as a SCSI medium changer.
pub struct Changer {
    state: Arc<Mutex<LibraryState>>,
    /// Starts cleaning cycles.
    clock: Arc<dyn super::Clock>,
}

impl std::fmt::Debug for Changer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changer").field("state", &self.state).finish_non_exhaustive()
    }
}

/// Saves where every cartridge is to the store.
fn save_map(s: &mut LibraryState) -> std::io::Result<()> {
    let map = s.map();
    s.store.save_map(&map)
}

/// Copies `bytes` into an In buffer; the residual is what was not filled.
pub(super) fn reply(data: DataBuf<'_>, bytes: &[u8]) -> Completion {
    match data {
        DataBuf::In(buf) => {
            let n = buf.len().min(bytes.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Completion::good(buf.len() - n)
        }
        other => Completion::good(other.len()),
    }
}

/// CHECK CONDITION with `sense` and `residual`. An INFORMATION field wider than fixed format
/// carries (the residue of a SPACE(16) over 2^31 or more objects) is sent in descriptor
/// format, as SSC asks.
pub(super) fn check(sense: Sense, residual: usize) -> Completion {
    let wide = sense.information.is_some_and(|i| i32::try_from(i).is_err());
    let sense = if wide { sense.descriptor() } else { sense };
    Completion::check(sense.encode(), residual)
}

pub(super) fn illegal(asc: u8, ascq: u8, residual: usize) -> Completion {
    check(Sense::new(SenseKey::IllegalRequest, asc, ascq), residual)
}

pub(super) fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

impl Changer {
    pub(super) fn new(state: Arc<Mutex<LibraryState>>, clock: Arc<dyn super::Clock>) -> Changer {
        Changer { state, clock }
    }

    /// Each drive's counters (bytes written, repositions, time the host waited).
    pub fn drive_counters(&self) -> Vec<super::DriveCounters> {
        self.lock().drives.iter().map(|d| d.counters).collect()
    }

    /// Another handle on the same library (for reading counters while the changer is in use).
    pub fn share(&self) -> Changer {
        Changer { state: self.state.clone(), clock: self.clock.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, LibraryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A person takes the cartridge out of mail slot `mail` (from 1): it leaves the library
    /// for the vault, its file left in the store. Returns its barcode.
    pub fn take_out(&self, mail: usize) -> Result<String, String> {
        let mut s = self.lock();
        let (n, name) = (s.ie.len(), s.name.clone());
        let place = mail
            .checked_sub(1)
            .and_then(|i| s.ie.get_mut(i))
            .ok_or_else(|| format!("library {name} has no mail slot {mail} (it has {n})"))?;
        let cart = place.cart.take().ok_or_else(|| format!("mail slot {mail} is empty"))?;
        place.source = None;
        let barcode = cart.barcode.clone();
        s.outside.push(cart);
        save_map(&mut s).map_err(|e| format!("the library's map could not be saved: {e}"))?;
        Ok(barcode)
    }

    /// A person puts cartridge `barcode` into the first empty mail slot: one taken out
    /// before, or one from elsewhere (its file in the store is its content; blank if none).
    /// Returns the mail slot (from 1).
    pub fn put_in(&self, barcode: &str) -> Result<usize, String> {
        let mut s = self.lock();
        if s.map().iter().any(|(_, b)| b == barcode) {
            return Err(format!("cartridge {barcode} is in library {} already", s.name));
        }
        let ok = !barcode.is_empty()
            && barcode.len() <= crate::format::records::MAX_BARCODE_LEN
            && barcode.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(format!("'{barcode}' is not a barcode: 1 to 32 letters and digits"));
        }
        let name = s.name.clone();
        let i =
            s.ie.iter().position(|p| p.cart.is_none()).ok_or_else(|| {
                format!("every mail slot of library {name} is full: take cartridges out first")
            })?;
        let cart = match s.outside.iter().position(|k| k.barcode == barcode) {
            Some(k) => s.outside.remove(k),
            None => super::state::Cartridge::stranger(barcode.to_owned()),
        };
        s.ie[i].cart = Some(cart);
        save_map(&mut s).map_err(|e| format!("the library's map could not be saved: {e}"))?;
        Ok(i + 1)
    }

    /// Barcodes of cartridges marked foreign (their label is not their barcode), for setup
    /// code that writes a different label onto them.
    pub fn foreign(&self) -> Vec<String> {
        let s = self.lock();
        s.slots
            .iter()
            .filter_map(|p| p.cart.as_ref())
            .filter(|k| k.foreign)
            .map(|k| k.barcode.clone())
            .collect()
    }

    /// Every element's status, in address order.
    fn elements(s: &LibraryState) -> Vec<Element> {
        let mut v = vec![Element::empty(ElementType::Transport, TRANSPORT_ADDR)];
        let groups = [
            (ElementType::DataTransfer, DRIVE_BASE, s.drives.iter().map(|d| &d.place).collect::<Vec<_>>()),
            (ElementType::Storage, SLOT_BASE, s.slots.iter().collect()),
            (ElementType::ImportExport, IE_BASE, s.ie.iter().collect()),
        ];
        for (kind, base, places) in groups {
            for (i, p) in places.into_iter().enumerate() {
                let mut e = Element::empty(kind, base + i as u16);
                e.full = p.cart.is_some();
                e.source = p.source.filter(|_| e.full);
                e.volume_tag = p.cart.as_ref().map(|k| k.barcode.clone());
                v.push(e);
            }
        }
        v
    }

    fn read_element_status(&self, b: &[u8], data: DataBuf<'_>) -> Completion {
        let alloc = (u32::from(b[7]) << 16) | (u32::from(b[8]) << 8) | u32::from(b[9]);
        if alloc > MAX_ELEMENT_STATUS_ALLOC {
            return illegal(0x24, 0x00, data.len());
        }
        let kind = ElementType::from_code(b[1] & 0x0F);
        let voltag = b[1] & 0x10 != 0;
        let (start, count) = (u16_at(b, 2), usize::from(u16_at(b, 4)));
        let all = Self::elements(&self.lock());
        let picked: Vec<Element> = all
            .into_iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k) && e.address >= start)
            .take(count)
            .collect();
        reply(data, &encode_element_status(&picked, voltag))
    }

    fn move_medium(&self, b: &[u8], cdb: &Cdb) -> Result<Completion, TransportError> {
        let (robot, from, to) = (u16_at(b, 2), u16_at(b, 4), u16_at(b, 6));
        let mut s = self.lock();
        s.moves += 1;
        let n = s.moves;
        if let Some(&(_, timeout)) = s.move_failures.iter().find(|(k, _)| *k == n) {
            if timeout {
                return Err(TransportError::Timeout { timeout: cdb.timeout() });
            }
            return Ok(check(Sense::new(SenseKey::HardwareError, 0x15, 0x01), 0));
        }
        if robot != TRANSPORT_ADDR || s.place(from).is_none() || s.place(to).is_none() {
            return Ok(illegal(0x21, 0x01, 0));
        }
        if s.place(from).is_some_and(|p| p.cart.is_none()) {
            return Ok(illegal(0x3B, 0x0E, 0));
        }
        if from != to && s.place(to).is_some_and(|p| p.cart.is_some()) {
            return Ok(illegal(0x3B, 0x0D, 0));
        }
        if let Some((ElementType::DataTransfer, i)) = s.element(from)
            && let Err(e) = s.take_from_drive(i)
        {
            return Err(TransportError::Other(format!("{}: saving the tape: {e}", s.name)));
        }
        let cart = s.place_mut(from).and_then(|p| p.cart.take());
        let dest = s.place_mut(to).expect("checked above");
        dest.cart = cart;
        dest.source = Some(from);
        if let Some((ElementType::DataTransfer, i)) = s.element(to)
            && let Err(e) = s.load_drive(i, self.clock.now())
        {
            return Err(TransportError::Other(format!("{}: loading the tape: {e}", s.name)));
        }
        let map = s.map();
        if let Err(e) = s.store.save_map(&map) {
            return Err(TransportError::Other(format!("{}: saving the element map: {e}", s.name)));
        }
        let wear = s.wear();
        if let Err(e) = s.store.save_wear(&wear) {
            return Err(TransportError::Other(format!("{}: saving the drives' wear: {e}", s.name)));
        }
        Ok(Completion::good(0))
    }

    fn mode_sense(&self, b: &[u8], form: ModeForm, data: DataBuf<'_>) -> Completion {
        let page = b[2] & 0x3F;
        if page != ELEMENT_ADDRESS_PAGE && page != 0x3F {
            return illegal(0x24, 0x00, data.len());
        }
        let s = self.lock();
        let range = |first: u16, n: usize| ElementRange { first, count: n as u16 };
        let addrs = ElementAddresses {
            transport: range(TRANSPORT_ADDR, 1),
            storage: range(SLOT_BASE, s.slots.len()),
            import_export: range(IE_BASE, s.ie.len()),
            data_transfer: range(DRIVE_BASE, s.drives.len()),
        };
        let params = ModeParams {
            medium_type: 0,
            device_specific: 0,
            block_descriptor: None,
            pages: addrs.encode().to_vec(),
        };
        reply(data, &params.encode_sense(form))
    }
}

/// Standard INQUIRY data of a simulated device of `device_type`.
pub(super) fn inquiry(device_type: u8, product: &str) -> Vec<u8> {
    let q = Inquiry {
        qualifier: 0,
        device_type,
        removable: true,
        version: 5,
        vendor: "COFFER".into(),
        product: product.into(),
        revision: "0001".into(),
    };
    q.encode().to_vec()
}

impl Transport for Changer {
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
        let b = cdb.bytes();
        let robot =
            matches!(cdb.opcode(), op::READ_ELEMENT_STATUS | op::MOVE_MEDIUM | op::INITIALIZE_ELEMENT_STATUS);
        if robot && self.lock().store.door_open() {
            // A library with its door open: a person has to close it.
            return Ok(check(Sense::new(SenseKey::NotReady, 0x04, 0x03), data.len()));
        }
        Ok(match cdb.opcode() {
            op::INQUIRY if b[1] & 1 == 0 => reply(data, &inquiry(DEVICE_TYPE_CHANGER, "VIRTUAL LIBRARY")),
            op::TEST_UNIT_READY | op::INITIALIZE_ELEMENT_STATUS => Completion::good(0),
            op::REQUEST_SENSE => reply(data, &Sense::new(SenseKey::NoSense, 0, 0).encode()),
            op::READ_ELEMENT_STATUS => self.read_element_status(b, data),
            op::MOVE_MEDIUM => return self.move_medium(b, cdb),
            op::MODE_SENSE_6 => self.mode_sense(b, ModeForm::Six, data),
            op::MODE_SENSE_10 => self.mode_sense(b, ModeForm::Ten, data),
            _ => illegal(0x20, 0x00, data.len()),
        })
    }
}
