//! A tape drive without a changer (`tape:/dev/nstN`), managed as a library of one drive whose
//! robot cannot move anything: the element status it reports is the drive holding the
//! cartridge found in it, named by its label (or, blank, by a barcode made up for it). Loading
//! another cartridge is a person's job; asking for one says so.

use std::sync::Arc;

use super::Library;
use crate::device::DeviceError;
use crate::device::tape::{OnTape, read_label};
use crate::scsi::cdb::{Cdb, ElementType, op};
use crate::scsi::pages::{Element, encode_element_status};
use crate::scsi::sense::{Sense, SenseKey};
use crate::scsi::transport::{Completion, DataBuf, Transport, TransportError};
use crate::tape::TapeIo;

/// Element address of the one drive.
const DRIVE: u16 = 1;

/// A changer that reports one drive holding `barcode` and refuses every move.
#[derive(Debug)]
struct NoRobot {
    barcode: Option<String>,
}

impl Transport for NoRobot {
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
        let illegal =
            |residual| Completion::check(Sense::new(SenseKey::IllegalRequest, 0x20, 0).encode(), residual);
        Ok(match (cdb.opcode(), data) {
            (op::READ_ELEMENT_STATUS, DataBuf::In(buf)) => {
                let mut robot = Element::empty(ElementType::Transport, 0);
                robot.access = false;
                let mut drive = Element::empty(ElementType::DataTransfer, DRIVE);
                drive.full = self.barcode.is_some();
                drive.volume_tag = self.barcode.clone();
                let bytes = encode_element_status(&[robot, drive], true);
                let n = buf.len().min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Completion::good(buf.len() - n)
            }
            (op::INITIALIZE_ELEMENT_STATUS | op::TEST_UNIT_READY, _) => Completion::good(0),
            (_, d) => illegal(d.len()),
        })
    }
}

/// The library of the one drive `io` at `path`, named by its path.
pub fn open(path: &str, mut io: Box<dyn TapeIo>) -> Result<Arc<Library>, DeviceError> {
    let fail = |detail: String| DeviceError::Failed { what: format!("tape:{path}"), detail };
    let barcode = match io.ready() {
        Err(crate::tape::TapeError::NoMedium { .. }) => None,
        Err(e) => return Err(fail(e.to_string())),
        Ok(()) => Some(cartridge_name(&mut *io).map_err(fail)?),
    };
    Library::new(&format!("tape:{path}"), Box::new(NoRobot { barcode }), vec![io], u64::MAX / 4, None)
}

/// The loaded cartridge's name: its label's barcode, or for a blank one a new name (the
/// label written next carries it).
fn cartridge_name(io: &mut dyn TapeIo) -> Result<String, String> {
    let what = io.name().to_owned();
    let name = match read_label(io, &what).map_err(|e| e.to_string())? {
        OnTape::Label(l) => l.barcode,
        // Someone else's tape: named so that the target's label check refuses it.
        OnTape::Foreign(_) => "UNLABELLED".to_owned(),
        OnTape::Blank => format!("T{}", &uuid::Uuid::new_v4().simple().to_string()[..7].to_uppercase()),
    };
    io.rewind().map_err(|e| e.to_string())?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{Board, Library as LibraryConfig};
    use crate::device::tape::{TapeMedia, TapeTarget};
    use crate::device::{Media, Target};
    use crate::scsi::cdb;
    use crate::scsi::transport::issue;
    use crate::sim::{self, DRIVE_BASE, ManualClock, MemoryStore, SLOT_BASE};
    use crate::tape::TapeDrive;

    #[test]
    fn a_drive_without_a_changer_labels_writes_and_reads_its_cartridge() {
        let board = Board::parse(
            "name = \"t\"\n[[library]]\nname = \"v\"\nkind = \"virtual\"\ndrives = 1\nslots = 2\ncartridges = 2\ncapacity = \"64M\"\n",
        )
        .unwrap();
        let LibraryConfig::Virtual(v) = &board.libraries[0] else { panic!("virtual") };
        let mut o = sim::open(v, Box::new(MemoryStore::default()), Arc::new(ManualClock::default())).unwrap();
        issue(&mut o.changer, &cdb::move_medium(0, SLOT_BASE, DRIVE_BASE), DataBuf::None).unwrap();
        let drive = o.drives.remove(0);
        let lib = open("/dev/nst0", Box::new(TapeDrive::new(Box::new(drive), "nst0"))).unwrap();
        assert_eq!(lib.location(), "tape:/dev/nst0");
        let mut t = TapeTarget::new(lib.clone(), "default", 64 << 10, 0);
        let m = t.mount().unwrap();
        assert!(m.new && m.label.barcode.starts_with('T'), "{:?}", m.label);
        let start = t.begin_part().unwrap();
        t.write(&[7u8; 300_000]).unwrap();
        t.end_part().unwrap();
        drop(t);
        let mut media = TapeMedia::new(lib.clone());
        let mut r = media.open_part(&m.label.barcode, start.position, start.file_number, 0).unwrap();
        let mut buf = vec![0u8; 300_000];
        let mut got = 0;
        while got < buf.len() {
            got += r.read(&mut buf[got..]).unwrap();
        }
        assert!(buf.iter().all(|&b| b == 7));
        drop(r);
        // Another cartridge cannot be fetched: a person loads it.
        let e = media.open("CFR0002L8", 0).err().expect("no changer").to_string();
        assert!(e.contains("by hand"), "{e}");
    }
}
