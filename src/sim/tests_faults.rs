//! Each injected fault, seen through SCSI.

use super::tests::{config, inventory, lib, load, write};
use std::sync::Arc;

use super::*;
use crate::board::Fault;
use crate::scsi::cdb;
use crate::scsi::pages::TapeAlert;
use crate::scsi::sense::Outcome;
use crate::scsi::transport::{DataBuf, ScsiError, TransportError, issue};

#[test]
fn write_protected_cartridge_refuses_writes_and_reports_wp() {
    let (mut o, _) = lib(&config(vec![Fault::WriteProtected { barcode: "CFR0001L8".into() }]));
    load(&mut o, 0, 0);
    let e = write(&mut o.drives[0], b"x").unwrap_err();
    assert_eq!(e.outcome(), Some(Outcome::DataProtect { write_protected: true }), "{e}");
    let mut ms = [0u8; 64];
    issue(
        &mut o.drives[0],
        &cdb::mode_sense6(0, 0, cdb::PageControl::Current, false, 64),
        DataBuf::In(&mut ms),
    )
    .unwrap();
    assert!(
        crate::scsi::pages::ModeParams::decode(&ms, crate::scsi::pages::ModeForm::Six)
            .unwrap()
            .write_protected()
    );
}

#[test]
fn medium_error_on_write_and_read_at_the_block() {
    let (mut o, _) = lib(&config(vec![Fault::MediumError { drive: 0, block: 1 }]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], b"ok").unwrap();
    let e = write(&mut o.drives[0], b"bad").unwrap_err();
    assert_eq!(e.outcome(), Some(Outcome::MediumError), "{e}");
    issue(&mut o.drives[0], &cdb::locate16(1, None, false), DataBuf::None).unwrap();
    let mut buf = [0u8; 8];
    let e = issue(&mut o.drives[0], &cdb::read6_variable(8, true), DataBuf::In(&mut buf)).unwrap_err();
    assert_eq!(e.outcome(), Some(Outcome::MediumError), "{e}");
}

#[test]
fn drive_goes_offline_after_bytes() {
    let (mut o, _) = lib(&config(vec![Fault::DriveOffline { drive: 0, after: "1K".into() }]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    let e = issue(&mut o.drives[0], &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::NotReady(_))), "{e}");
    let e = issue(&mut o.drives[0], &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    assert!(matches!(e, ScsiError::Transport { .. }), "{e}");
}

#[test]
fn unit_attention_after_bytes_then_normal() {
    let (mut o, _) = lib(&config(vec![Fault::UnitAttention { drive: 0, after: "1K".into() }]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    let e = issue(&mut o.drives[0], &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    assert_eq!(e.sense().map(|s| (s.asc, s.ascq)), Some((0x29, 0)), "{e}");
    issue(&mut o.drives[0], &cdb::test_unit_ready(), DataBuf::None).unwrap();
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    issue(&mut o.drives[0], &cdb::test_unit_ready(), DataBuf::None).unwrap();
}

#[test]
fn kth_move_fails_with_hardware_error_or_timeout() {
    let faults = vec![
        Fault::MoveFailure { move_number: 1, timeout: false },
        Fault::MoveFailure { move_number: 2, timeout: true },
    ];
    let (mut o, _) = lib(&config(faults));
    let mv = cdb::move_medium(0, SLOT_BASE, DRIVE_BASE);
    let e = issue(&mut o.changer, &mv, DataBuf::None).unwrap_err();
    assert_eq!(e.outcome(), Some(Outcome::HardwareError), "{e}");
    let e = issue(&mut o.changer, &mv, DataBuf::None).unwrap_err();
    assert!(matches!(e, ScsiError::Transport { source: TransportError::Timeout { .. }, .. }), "{e}");
    assert!(!inventory(&mut o.changer).iter().any(|e| e.address == DRIVE_BASE && e.full));
    issue(&mut o.changer, &mv, DataBuf::None).unwrap();
}

#[test]
fn wrong_cartridge_is_marked_foreign() {
    let (o, _) = lib(&config(vec![Fault::WrongCartridge { slot: 3 }]));
    assert_eq!(o.changer.foreign(), vec!["CFR0003L8".to_string()]);
}

#[test]
fn cleaning_required_after_bytes_in_tape_alert() {
    let (mut o, _) = lib(&config(vec![Fault::CleaningRequired { drive: 0, after: "2K".into() }]));
    load(&mut o, 0, 0);
    let alert = |d: &mut Drive| {
        let mut buf = vec![0u8; 512];
        issue(d, &cdb::log_sense_tape_alert(512), DataBuf::In(&mut buf)).unwrap();
        TapeAlert::decode(&buf).unwrap()
    };
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(!alert(&mut o.drives[0]).cleaning_required());
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(alert(&mut o.drives[0]).cleaning_required());
}

#[test]
fn oversized_element_status_and_unknown_opcode_are_illegal() {
    let (mut o, _) = lib(&config(vec![]));
    let mut c = cdb::read_element_status(None, 0, 10, true, 4096).bytes().to_vec();
    c[7..10].copy_from_slice(&[0, 0x10, 0x01]);
    let big = cdb::Cdb::new(&c, cdb::Direction::FromDevice, 4097, cdb::TimeoutClass::Io);
    let e = issue(&mut o.changer, &big, DataBuf::In(&mut vec![0; 4097])).unwrap_err();
    assert!(matches!(e.outcome(), Some(Outcome::IllegalRequest(_))), "{e}");
    load(&mut o, 0, 0);
    let e = issue(&mut o.drives[0], &cdb::initialize_element_status(), DataBuf::None).unwrap_err();
    assert!(e.is_unsupported(), "{e}");
}

#[test]
fn an_open_door_stops_the_robot_until_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let mut o = open(&config(vec![]), Box::new(store), Arc::new(ManualClock::default())).unwrap();
    let door = dir.path().join(DOOR_OPEN_FILE);
    std::fs::write(&door, b"").unwrap();
    let mut buf = vec![0u8; 200];
    let e = issue(&mut o.changer, &cdb::read_element_status(None, 0, 100, true, 200), DataBuf::In(&mut buf))
        .unwrap_err();
    assert_eq!(
        e.sense().map(|s| (s.key, s.asc, s.ascq)),
        Some((crate::scsi::sense::SenseKey::NotReady, 0x04, 0x03)),
        "{e}"
    );
    let e = issue(&mut o.changer, &cdb::move_medium(0, SLOT_BASE, DRIVE_BASE), DataBuf::None).unwrap_err();
    assert!(e.to_string().contains("manual intervention"), "{e}");
    std::fs::remove_file(&door).unwrap();
    assert!(!inventory(&mut o.changer).is_empty());
    load(&mut o, 0, 0);
}
