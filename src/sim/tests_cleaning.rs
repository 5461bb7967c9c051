//! Cleaning: wear raising the periodic flag, the cycle on the library's clock, worn cleaning
//! cartridges, and wear kept across openings.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{config, lib, load, write};
use super::*;
use crate::board::Fault;
use crate::scsi::cdb;
use crate::scsi::pages::{TapeAlert, tape_alert};
use crate::scsi::sense::SenseKey;
use crate::scsi::transport::{DataBuf, issue};

/// Slot index of the cleaning cartridge in the test configuration (the last of 10).
const CLEANING_SLOT: u16 = 9;

fn alerts(d: &mut Drive) -> TapeAlert {
    let mut buf = vec![0u8; 512];
    issue(d, &cdb::log_sense_tape_alert(512), DataBuf::In(&mut buf)).unwrap();
    TapeAlert::decode(&buf).unwrap()
}

/// The sense of a TEST UNIT READY that fails: key, ASC, ASCQ.
fn not_ready(d: &mut Drive) -> (SenseKey, u8, u8) {
    let e = issue(d, &cdb::test_unit_ready(), DataBuf::None).unwrap_err();
    let s = e.sense().unwrap_or_else(|| panic!("no sense: {e}"));
    (s.key, s.asc, s.ascq)
}

fn cleaning_config(life: u32, faults: Vec<Fault>) -> crate::board::VirtualLibrary {
    let mut c = config(faults);
    c.clean_every = Some("2K".into());
    c.cleaning_life = Some(life);
    c.cleaning_ms = Some(5000);
    c
}

fn move_to(o: &mut Opened, from: u16, to: u16) {
    issue(&mut o.changer, &cdb::move_medium(0, from, to), DataBuf::None).unwrap();
}

/// Moves the cleaning cartridge into drive 0, waits for the cycle (TEST UNIT READY until it
/// no longer says cleaning) and puts it back.
fn clean_drive0(o: &mut Opened) {
    move_to(o, SLOT_BASE + CLEANING_SLOT, DRIVE_BASE);
    while not_ready(&mut o.drives[0]) == (SenseKey::NotReady, 0x30, 0x03) {}
    move_to(o, DRIVE_BASE, SLOT_BASE + CLEANING_SLOT);
}

#[test]
fn wear_raises_clean_periodic_and_a_cycle_takes_its_time_then_clears_it() {
    let (mut o, clock) = lib(&cleaning_config(50, vec![]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(!alerts(&mut o.drives[0]).cleaning_requested());
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(alerts(&mut o.drives[0]).cleaning_requested(), "2K written: routine cleaning due");
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    move_to(&mut o, SLOT_BASE + CLEANING_SLOT, DRIVE_BASE);
    let t0 = clock.now();
    // Reading and writing are refused while cleaning; TapeAlert still answers.
    let e = write(&mut o.drives[0], b"x").unwrap_err();
    assert_eq!(e.sense().map(|s| (s.key, s.asc, s.ascq)), Some((SenseKey::NotReady, 0x30, 0x03)), "{e}");
    assert!(alerts(&mut o.drives[0]).cleaning_requested(), "not clean before the cycle ends");
    assert_eq!(clock.now(), t0, "only TEST UNIT READY waits for the cycle");
    assert_eq!(not_ready(&mut o.drives[0]), (SenseKey::NotReady, 0x30, 0x03));
    assert_eq!(clock.now() - t0, Duration::from_millis(5000), "the host waited out the cycle");
    assert_eq!(not_ready(&mut o.drives[0]), (SenseKey::NotReady, 0x3A, 0x00), "ejected when done");
    assert!(alerts(&mut o.drives[0]).is_empty(), "cleaned");
    issue(&mut o.drives[0], &cdb::unload(false), DataBuf::None).unwrap();
    move_to(&mut o, DRIVE_BASE, SLOT_BASE + CLEANING_SLOT);
    // The wear starts again from zero.
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(alerts(&mut o.drives[0]).is_empty());
}

#[test]
fn a_worn_cleaning_cartridge_reports_expired_and_cleans_nothing() {
    let (mut o, _) = lib(&cleaning_config(1, vec![Fault::CleaningRequired { drive: 0, after: "1K".into() }]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(alerts(&mut o.drives[0]).cleaning_required());
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    clean_drive0(&mut o);
    assert!(alerts(&mut o.drives[0]).is_empty(), "the one use cleaned it");
    // The fault fires once per opening: cleaned, the drive stays clean...
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(!alerts(&mut o.drives[0]).cleaning_required());
    // ...until routine cleaning is due; the cartridge has no use left.
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    move_to(&mut o, SLOT_BASE + CLEANING_SLOT, DRIVE_BASE);
    assert_eq!(not_ready(&mut o.drives[0]), (SenseKey::NotReady, 0x3A, 0x00), "no cycle at all");
    let a = alerts(&mut o.drives[0]);
    assert!(a.is_set(tape_alert::EXPIRED_CLEANING_MEDIA) && a.cleaning_requested(), "{a:?}");
    move_to(&mut o, DRIVE_BASE, SLOT_BASE + CLEANING_SLOT);
    let a = alerts(&mut o.drives[0]);
    assert!(!a.is_set(tape_alert::EXPIRED_CLEANING_MEDIA) && a.cleaning_requested(), "{a:?}");
}

#[test]
fn a_dirty_drive_asks_again_right_after_cleaning() {
    let (mut o, _) = lib(&cleaning_config(50, vec![Fault::DirtyDrive { drive: 0 }]));
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 2048]).unwrap();
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    clean_drive0(&mut o);
    assert!(alerts(&mut o.drives[0]).cleaning_requested());
}

#[test]
fn wear_and_uses_are_kept_across_openings() {
    let dir = tempfile::tempdir().unwrap();
    let c = cleaning_config(2, vec![]);
    let reopen = || {
        let store = FileStore::open(dir.path()).unwrap();
        open(&c, Box::new(store), Arc::new(ManualClock::default())).unwrap()
    };
    let mut o = reopen();
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1536]).unwrap();
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    drop(o);
    let mut o = reopen();
    assert!(!alerts(&mut o.drives[0]).cleaning_requested());
    load(&mut o, 0, 0);
    write(&mut o.drives[0], &[0; 1024]).unwrap();
    assert!(alerts(&mut o.drives[0]).cleaning_requested(), "1.5K before the restart, 1K after");
    move_to(&mut o, DRIVE_BASE, SLOT_BASE);
    clean_drive0(&mut o);
    clean_drive0(&mut o);
    drop(o);
    let mut o = reopen();
    assert!(alerts(&mut o.drives[0]).is_empty(), "the cleaning was kept");
    move_to(&mut o, SLOT_BASE + CLEANING_SLOT, DRIVE_BASE);
    assert!(alerts(&mut o.drives[0]).is_set(tape_alert::EXPIRED_CLEANING_MEDIA), "two uses were kept");
}
