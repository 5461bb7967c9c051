//! The drive layer against the virtual library's drives.

use std::sync::Arc;

use super::*;
use crate::board::{Fault, VirtualLibrary};
use crate::scsi::transport::issue as run;
use crate::sim::{self, DRIVE_BASE, ManualClock, MemoryStore, Opened, SLOT_BASE};
use crate::tape::{TapeIo, TapePos};

fn library(capacity: &str, faults: Vec<Fault>) -> Opened {
    library_with(capacity, faults, true)
}

/// A library whose drives answer READ POSITION and LOCATE or, without `positioning`, refuse
/// them as Linux `tgt` does.
fn library_with(capacity: &str, faults: Vec<Fault>, positioning: bool) -> Opened {
    let c = VirtualLibrary {
        name: "t".into(),
        drives: 1,
        slots: 4,
        import_export: 0,
        cartridges: 3,
        barcode_prefix: "CFR".into(),
        cleaning: 0,
        capacity: capacity.into(),
        dir: None,
        drive_rate: None,
        drive_buffer: None,
        drive_read_rate: None,
        drive_reposition_ms: None,
        positioning,
        faults,
        multiplex: None,
        media_wait: None,
        cleaning_uses: None,
        hard_error_limit: None,
        medium_error_limit: None,
        clean_every: None,
        cleaning_life: None,
        cleaning_ms: None,
    };
    sim::open(&c, Box::new(MemoryStore::default()), Arc::new(ManualClock::default())).unwrap()
}

/// Loads slot `slot`'s cartridge into drive 0 and hands back the drive.
fn loaded(mut o: Opened, slot: u16) -> TapeDrive {
    run(&mut o.changer, &cdb::move_medium(0, SLOT_BASE + slot, DRIVE_BASE), DataBuf::None).unwrap();
    let d = o.drives.remove(0);
    TapeDrive::new(Box::new(d), "drive0")
}

#[test]
fn an_empty_drive_says_so_and_a_load_is_absorbed() {
    let mut o = library("4M", Vec::new());
    let mut empty = TapeDrive::new(Box::new(o.drives.remove(0)), "drive0");
    assert!(matches!(empty.ready(), Err(TapeError::NoMedium { .. })));
    let mut d = loaded(library("4M", Vec::new()), 0);
    d.ready().unwrap();
}

#[test]
fn parts_written_with_filemarks_read_back_and_are_found_again() {
    let mut d = loaded(library("16M", Vec::new()), 0);
    d.ready().unwrap();
    d.set_block_size(4096).unwrap();
    let block = |i: u8| vec![i; 4096];
    for i in 0..5 {
        assert_eq!(d.write_block(&block(i)).unwrap(), Written::Ok);
    }
    d.write_filemark().unwrap();
    for i in 5..8 {
        d.write_block(&block(i)).unwrap();
    }
    d.write_filemark().unwrap();
    assert_eq!(d.position().unwrap(), TapePos { object: 10, file: 2 });
    d.rewind().unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..5 {
        assert_eq!(d.read_block(&mut buf).unwrap(), Read::Block(4096));
        assert_eq!(buf, block(i));
    }
    assert_eq!(d.read_block(&mut buf).unwrap(), Read::Filemark);
    // Straight to the second part's third block: object 8 in file 1, which starts at 6.
    d.locate(TapePos { object: 8, file: 1 }, 6).unwrap();
    d.read_block(&mut buf).unwrap();
    assert_eq!(buf, block(7));
    assert_eq!(d.read_block(&mut buf).unwrap(), Read::Filemark);
    assert_eq!(d.read_block(&mut buf).unwrap(), Read::EndOfData);
    // Appending goes after the last filemark.
    assert_eq!(d.to_end_of_data().unwrap(), TapePos { object: 10, file: 2 });
    assert_eq!(d.position().unwrap(), TapePos { object: 10, file: 2 });
}

#[test]
fn spacing_finds_the_same_block_as_locate() {
    let mut d = loaded(library("16M", Vec::new()), 0);
    d.ready().unwrap();
    for i in 0..4u8 {
        d.write_block(&[i; 100]).unwrap();
        d.write_filemark().unwrap();
    }
    let mut buf = vec![0u8; 1000];
    // File 2 starts at object 4 (block 2 then filemark at 5): object 4 is its block.
    d.locate_by_spacing(TapePos { object: 4, file: 2 }, 4).unwrap();
    assert_eq!(d.read_block(&mut buf).unwrap(), Read::Block(100));
    assert_eq!(buf[0], 2);
}

#[test]
fn early_warning_comes_before_the_end_of_medium() {
    let mut d = loaded(library("1M", Vec::new()), 0);
    d.ready().unwrap();
    let block = vec![7u8; 64 << 10];
    let mut warned = None;
    for i in 0..40 {
        match d.write_block(&block) {
            Ok(Written::Ok) => {}
            Ok(Written::EarlyWarning) => {
                warned.get_or_insert(i);
            }
            Err(TapeError::EndOfMedium { .. }) => {
                assert!(warned.is_some_and(|w| w < i), "end of medium at {i} without a warning first");
                d.write_filemark().unwrap();
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no end of medium on a 1M cartridge");
}

#[test]
fn a_write_protected_cartridge_is_refused() {
    let o = library("4M", vec![Fault::WriteProtected { barcode: "CFR0001L8".into() }]);
    let mut d = loaded(o, 0);
    d.ready().unwrap();
    assert!(matches!(d.write_block(&[1; 512]), Err(TapeError::WriteProtected { .. })));
}

#[test]
fn without_read_position_or_locate_spacing_finds_the_end_and_the_blocks() {
    let mut d = loaded(library_with("16M", Vec::new(), false), 0);
    d.ready().unwrap();
    // Files of 5, 3 and 2 blocks; the last one has no filemark yet.
    let mut n = 0u8;
    for (blocks, mark) in [(5, true), (3, true), (2, false)] {
        for _ in 0..blocks {
            d.write_block(&[n; 256]).unwrap();
            n += 1;
        }
        if mark {
            d.write_filemark().unwrap();
        }
    }
    assert_eq!(d.position().unwrap(), TapePos { object: 12, file: 2 });
    d.rewind().unwrap();
    assert_eq!(d.to_end_of_data().unwrap(), TapePos { object: 12, file: 2 });
    assert_eq!(d.position().unwrap(), TapePos { object: 12, file: 2 });
    let mut buf = vec![0u8; 1024];
    // Block 6 (the second of file 1, which starts at object 6) is object 7.
    for (to, file_start, block) in
        [(TapePos { object: 7, file: 1 }, 6, 6), (TapePos { object: 11, file: 2 }, 10, 9)]
    {
        d.locate(to, file_start).unwrap();
        assert_eq!(d.position().unwrap(), to);
        assert_eq!(d.read_block(&mut buf).unwrap(), Read::Block(256));
        assert_eq!(buf[0], block);
    }
    assert_eq!(d.read_block(&mut buf).unwrap(), Read::EndOfData);
    d.locate(TapePos { object: 0, file: 0 }, 0).unwrap();
    d.read_block(&mut buf).unwrap();
    assert_eq!(buf[0], 0);
    // Appending after the end found by spacing continues the last file.
    assert_eq!(d.to_end_of_data().unwrap(), TapePos { object: 12, file: 2 });
    d.write_filemark().unwrap();
    assert_eq!(d.to_end_of_data().unwrap(), TapePos { object: 13, file: 3 });
}
