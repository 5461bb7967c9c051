//! The library driven only through `issue` with CDBs from `scsi::cdb`, answers decoded with
//! `scsi::pages` and `scsi::sense`.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::board::VirtualLibrary;
use crate::scsi::cdb::{self, ElementType, Space};
use crate::scsi::pages::{ElementStatus, Position};
use crate::scsi::sense::Outcome;
use crate::scsi::transport::{DataBuf, ScsiError, issue};

pub(super) fn config(faults: Vec<crate::board::Fault>) -> VirtualLibrary {
    VirtualLibrary {
        name: "t".into(),
        drives: 2,
        slots: 10,
        import_export: 1,
        cartridges: 6,
        barcode_prefix: "CFR".into(),
        cleaning: 1,
        capacity: "1M".into(),
        dir: None,
        drive_rate: Some("1M".into()),
        drive_buffer: Some("64K".into()),
        drive_read_rate: None,
        drive_reposition_ms: None,
        positioning: true,
        faults,
        multiplex: None,
        media_wait: None,
        cleaning_uses: None,
        hard_error_limit: None,
        medium_error_limit: None,
        clean_every: None,
        cleaning_life: None,
        cleaning_ms: None,
    }
}

pub(super) fn lib(c: &VirtualLibrary) -> (Opened, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    (open(c, Box::new(MemoryStore::default()), clock.clone()).unwrap(), clock)
}

pub(super) fn inventory(t: &mut Changer) -> Vec<crate::scsi::pages::Element> {
    let mut all = Vec::new();
    let mut start = 0;
    loop {
        let mut buf = vec![0u8; 200];
        issue(t, &cdb::read_element_status(None, start, 100, true, 200), DataBuf::In(&mut buf)).unwrap();
        let st = ElementStatus::decode(&buf).unwrap();
        all.extend(st.elements.iter().cloned());
        match st.next_start() {
            Some(n) => start = n,
            None => return all,
        }
    }
}

pub(super) fn load(o: &mut Opened, slot: u16, drive: u16) {
    issue(&mut o.changer, &cdb::move_medium(0, SLOT_BASE + slot, DRIVE_BASE + drive), DataBuf::None).unwrap();
    let e = issue(&mut o.drives[usize::from(drive)], &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::UnitAttention(_))), "{e}");
    issue(&mut o.drives[usize::from(drive)], &cdb::test_unit_ready(), DataBuf::None).unwrap();
}

pub(super) fn write(d: &mut Drive, data: &[u8]) -> Result<crate::scsi::transport::Response, ScsiError> {
    issue(d, &cdb::write6_variable(data.len() as u32), DataBuf::Out(data))
}

fn read(d: &mut Drive, len: u32) -> (Vec<u8>, Result<crate::scsi::transport::Response, ScsiError>) {
    let mut buf = vec![0u8; len as usize];
    let r = issue(d, &cdb::read6_variable(len, false), DataBuf::In(&mut buf));
    (buf, r)
}

fn position(d: &mut Drive) -> Position {
    let mut buf = [0u8; 32];
    issue(d, &cdb::read_position_long(), DataBuf::In(&mut buf)).unwrap();
    Position::decode(&buf).unwrap()
}

#[test]
fn paged_inventory_reports_every_element_with_barcodes() {
    let (mut o, _) = lib(&config(vec![]));
    let all = inventory(&mut o.changer);
    assert_eq!(all.len(), 1 + 2 + 10 + 1);
    let tags: Vec<_> = all.iter().filter_map(|e| e.volume_tag.clone()).collect();
    assert_eq!(tags[0], "CFR0001L8");
    assert!(tags.contains(&"CLN001L1".to_string()), "{tags:?}");
    assert_eq!(all.iter().filter(|e| e.full).count(), 7);
    let too_big = issue(
        &mut o.changer,
        &cdb::read_element_status(Some(ElementType::Storage), 0, 10, true, 4096),
        DataBuf::In(&mut vec![0; 4096]),
    );
    assert!(too_big.is_ok());
}

#[test]
fn move_to_a_drive_gives_unit_attention_then_ready_and_empty_drive_is_not_ready() {
    let (mut o, _) = lib(&config(vec![]));
    let e = issue(&mut o.drives[1], &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::NotReady(_))), "{e}");
    load(&mut o, 0, 1);
    let inv = inventory(&mut o.changer);
    let d = inv.iter().find(|e| e.address == DRIVE_BASE + 1).unwrap();
    assert_eq!((d.volume_tag.as_deref(), d.source), (Some("CFR0001L8"), Some(SLOT_BASE)));
    let full = issue(&mut o.changer, &cdb::move_medium(0, SLOT_BASE + 1, DRIVE_BASE + 1), DataBuf::None);
    assert!(full.is_err());
}

#[test]
fn records_filemarks_space_locate_and_senses() {
    let (mut o, _) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let d = &mut o.drives[0];
    write(d, b"first").unwrap();
    write(d, b"second record").unwrap();
    issue(d, &cdb::write_filemarks6(1, false), DataBuf::None).unwrap();
    write(d, b"after").unwrap();
    assert_eq!(position(d).block, 4);
    assert_eq!(position(d).file, 1);
    issue(d, &cdb::rewind(false), DataBuf::None).unwrap();
    let (buf, r) = read(d, 5);
    assert_eq!((&buf[..], r.unwrap().transferred), (&b"first"[..], 5));
    // Short read of a longer block: ILI with negative residual.
    let (_, r) = read(d, 6);
    let e = r.unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::IncorrectLength { residual: Some(-7) })), "{e}");
    let (_, r) = read(d, 100);
    assert!(matches!(r.unwrap_err().outcome(), Some(Outcome::Filemark { .. })));
    let (buf, r) = read(d, 100);
    let e = r.unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::IncorrectLength { residual: Some(95) })), "{e}");
    assert_eq!(&buf[..5], b"after");
    let (_, r) = read(d, 100);
    assert!(matches!(r.unwrap_err().outcome(), Some(Outcome::EndOfData)));
    issue(d, &cdb::locate16(1, None, false), DataBuf::None).unwrap();
    let (buf, _) = read(d, 13);
    assert_eq!(&buf, b"second record");
    issue(d, &cdb::rewind(false), DataBuf::None).unwrap();
    let e = issue(d, &cdb::space16(Space::Blocks(5)), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::Filemark { .. })), "{e}");
    assert_eq!(position(d).block, 3);
    issue(d, &cdb::space6(Space::Filemarks(-1)), DataBuf::None).unwrap();
    assert_eq!(position(d).block, 2);
    issue(d, &cdb::space6(Space::EndOfData), DataBuf::None).unwrap();
    assert_eq!(position(d).block, 4);
    let e = issue(d, &cdb::space6(Space::Blocks(1)), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::EndOfData)), "{e}");
}

#[test]
fn fixed_blocks_after_mode_select() {
    let (mut o, _) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let d = &mut o.drives[0];
    let p = crate::scsi::pages::ModeParams {
        medium_type: 0,
        device_specific: 0,
        block_descriptor: Some(crate::scsi::pages::BlockDescriptor::block_size(512)),
        pages: vec![],
    };
    let sel = p.encode_select(crate::scsi::pages::ModeForm::Six);
    issue(d, &cdb::mode_select6(sel.len() as u8, false), DataBuf::Out(&sel)).unwrap();
    let data: Vec<u8> = (0..2048u32).map(|i| i as u8).collect();
    issue(d, &cdb::write6_fixed(4, 512), DataBuf::Out(&data)).unwrap();
    assert_eq!(position(d).block, 4);
    issue(d, &cdb::rewind(false), DataBuf::None).unwrap();
    let mut buf = vec![0u8; 2048];
    issue(d, &cdb::read6_fixed(4, 512), DataBuf::In(&mut buf)).unwrap();
    assert_eq!(buf, data);
    let mut ms = [0u8; 64];
    issue(d, &cdb::mode_sense6(0, 0, cdb::PageControl::Current, false, 64), DataBuf::In(&mut ms)).unwrap();
    let m = crate::scsi::pages::ModeParams::decode(&ms, crate::scsi::pages::ModeForm::Six).unwrap();
    assert_eq!(m.block_descriptor.unwrap().block_len, 512);
    assert!(!m.write_protected());
}

#[test]
fn early_warning_then_end_of_medium() {
    let (mut o, _) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let d = &mut o.drives[0];
    let block = vec![7u8; 64 << 10];
    let mut warned = false;
    for _ in 0..20 {
        match write(d, &block) {
            Ok(r) => {
                if r.sense.is_some_and(|s| s.outcome() == Outcome::EarlyWarning) {
                    warned = true;
                }
            }
            Err(e) if e.outcome() == Some(Outcome::EarlyWarning) => warned = true,
            Err(e) => {
                assert!(warned, "end of medium before early warning");
                assert_eq!(e.outcome(), Some(Outcome::EndOfMedium), "{e}");
                assert_eq!(position(d).block, 16);
                return;
            }
        }
    }
    panic!("never reached the end of the medium");
}

#[test]
fn speed_model_counts_repositions_only_when_starved() {
    let (mut o, clock) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let block = vec![1u8; 1 << 16];
    for _ in 0..8 {
        write(&mut o.drives[0], &block).unwrap();
        clock.advance(Duration::from_micros(62_500)); // 64 KiB at 1 MiB/s
    }
    assert_eq!(o.drives[0].counters().repositions, 0);
    issue(&mut o.drives[0], &cdb::rewind(false), DataBuf::None).unwrap();
    for _ in 0..4 {
        write(&mut o.drives[0], &block).unwrap();
        clock.advance(Duration::from_millis(200));
    }
    assert_eq!(o.drives[0].counters().repositions, 3);
    assert_eq!(o.drives[0].counters().bytes, 12 << 16);
}

#[test]
fn file_store_keeps_data_and_positions_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(vec![]);
    let clock = Arc::new(ManualClock::default());
    {
        let mut o = open(&c, Box::new(FileStore::open(dir.path()).unwrap()), clock.clone()).unwrap();
        load(&mut o, 2, 0);
        write(&mut o.drives[0], b"kept").unwrap();
        issue(&mut o.drives[0], &cdb::write_filemarks6(1, false), DataBuf::None).unwrap();
        issue(&mut o.drives[0], &cdb::unload(false), DataBuf::None).unwrap();
        issue(&mut o.changer, &cdb::move_medium(0, DRIVE_BASE, IE_BASE), DataBuf::None).unwrap();
    }
    let mut o = open(&c, Box::new(FileStore::open(dir.path()).unwrap()), clock).unwrap();
    let inv = inventory(&mut o.changer);
    let ie = inv.iter().find(|e| e.address == IE_BASE).unwrap();
    assert_eq!(ie.volume_tag.as_deref(), Some("CFR0003L8"));
    issue(&mut o.changer, &cdb::move_medium(0, IE_BASE, DRIVE_BASE + 1), DataBuf::None).unwrap();
    let _ = issue(&mut o.drives[1], &cdb::test_unit_ready(), DataBuf::None);
    let (buf, r) = read(&mut o.drives[1], 4);
    r.unwrap();
    assert_eq!(&buf, b"kept");
}

#[test]
fn a_fast_host_is_held_to_the_drive_rate_and_a_filemark_waits_for_the_tape() {
    let (mut o, clock) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let block = vec![1u8; 64 << 10];
    let start = clock.now();
    for _ in 0..8 {
        write(&mut o.drives[0], &block).unwrap();
    }
    // The first block fills the 64 KiB buffer; each next one waits for 64 KiB of tape.
    assert_eq!(clock.now() - start, Duration::from_micros(7 * 62_500));
    issue(&mut o.drives[0], &cdb::write_filemarks6(1, false), DataBuf::None).unwrap();
    // Half a megabyte at 1 MiB/s: on tape half a second after the first write.
    assert_eq!(clock.now() - start, Duration::from_millis(500));
    let c = o.drives[0].counters();
    assert_eq!((c.bytes, c.repositions, c.waited), (512 << 10, 0, Duration::from_millis(500)));
    // An immediate filemark does not wait; a rewind then waits for the block to be on tape.
    write(&mut o.drives[0], &block).unwrap();
    let t = clock.now();
    issue(&mut o.drives[0], &cdb::write_filemarks6(1, true), DataBuf::None).unwrap();
    assert_eq!(clock.now(), t);
    issue(&mut o.drives[0], &cdb::rewind(false), DataBuf::None).unwrap();
    assert_eq!(clock.now() - t, Duration::from_micros(62_500));
}

/// A clock that records, whenever the host is made to wait, whether the library is free.
#[derive(Default)]
struct Probe {
    clock: ManualClock,
    state: std::sync::Mutex<Option<Arc<std::sync::Mutex<LibraryState>>>>,
    free: std::sync::Mutex<Vec<bool>>,
}

impl Clock for Probe {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn sleep(&self, d: Duration) {
        if let Some(s) = &*self.state.lock().unwrap() {
            self.free.lock().unwrap().push(s.try_lock().is_ok());
        }
        self.clock.advance(d);
    }
}

#[test]
fn the_host_waits_with_the_library_released() {
    let probe = Arc::new(Probe::default());
    let mut o = open(&config(vec![]), Box::new(MemoryStore::default()), probe.clone()).unwrap();
    *probe.state.lock().unwrap() = Some(o.drives[0].shared());
    load(&mut o, 0, 0);
    for _ in 0..4 {
        write(&mut o.drives[0], &[0; 64 << 10]).unwrap();
    }
    issue(&mut o.drives[0], &cdb::unload(false), DataBuf::None).unwrap();
    let free = probe.free.lock().unwrap().clone();
    assert_eq!(free, vec![true; 4], "three writes and the unload waited");
}

#[test]
fn spacing_backward_over_blocks_stops_before_a_filemark() {
    let (mut o, _) = lib(&config(vec![]));
    load(&mut o, 0, 0);
    let d = &mut o.drives[0];
    for r in [&b"a"[..], b"b"] {
        write(d, r).unwrap();
        issue(d, &cdb::write_filemarks6(1, false), DataBuf::None).unwrap();
    }
    write(d, b"c").unwrap();
    // Objects: a, mark, b, mark, c. From the end, back five blocks: stopped by the mark at 3.
    let e = issue(d, &cdb::space16(Space::Blocks(-5)), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::Filemark { .. })), "{e}");
    assert_eq!(e.sense().and_then(|s| s.information), Some(4));
    assert_eq!(position(d).block, 3);
    issue(d, &cdb::space16(Space::Filemarks(-2)), DataBuf::None).unwrap_err();
    assert_eq!(position(d).block, 0);
    issue(d, &cdb::space16(Space::Filemarks(2)), DataBuf::None).unwrap();
    assert_eq!(position(d).block, 4);
    let e = issue(d, &cdb::space16(Space::Filemarks(1)), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::EndOfData)), "{e}");
    assert_eq!(position(d).block, 5);
    let e = issue(d, &cdb::space16(Space::Blocks(-2)), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::Filemark { .. })), "{e}");
    assert_eq!(position(d).block, 3);
}

#[test]
fn without_positioning_read_position_and_locate_are_refused_as_tgt_does() {
    let mut c = config(vec![]);
    let (mut o, _) = lib(&c);
    load(&mut o, 0, 0);
    write(&mut o.drives[0], b"x").unwrap();
    write(&mut o.drives[0], b"y").unwrap();
    issue(&mut o.drives[0], &cdb::locate10(1, false), DataBuf::None).unwrap();
    assert_eq!(position(&mut o.drives[0]).block, 1);
    c.positioning = false;
    let (mut o, _) = lib(&c);
    load(&mut o, 0, 0);
    let d = &mut o.drives[0];
    write(d, b"x").unwrap();
    let mut buf = [0u8; 32];
    for (cmd, data) in [
        (cdb::read_position_long(), DataBuf::In(&mut buf)),
        (cdb::locate16(0, None, false), DataBuf::None),
        (cdb::locate10(0, false), DataBuf::None),
    ] {
        let e = issue(d, &cmd, data).unwrap_err();
        assert!(e.is_unsupported(), "{e}");
        assert_eq!(e.sense().map(|s| (s.asc, s.ascq)), Some((0x20, 0x00)), "{e}");
    }
    issue(d, &cdb::space6(Space::Blocks(-1)), DataBuf::None).unwrap();
}
