//! The tape target and media against the virtual library (in memory, manual clock).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::board::{Board, Library as LibraryConfig};
use crate::sim::{self, ManualClock, MemoryStore};
use crate::tape::{TapeDrive, TapeIo};

const BLOCK: usize = 64 << 10;

/// A library of `drives` drives and `carts` cartridges of `capacity` with `extra` board lines
/// (faults); the manager believes cartridges hold `nominal` bytes. (The early-warning zone,
/// 2% of the capacity, must exceed a write batch: 64M and up with 64 KiB blocks.)
fn library(drives: u32, (carts, capacity): (u32, &str), nominal: u64, extra: &str) -> Arc<Library> {
    let text = format!(
        "name = \"t\"\n[[library]]\nname = \"v\"\nkind = \"virtual\"\ndrives = {drives}\nslots = 8\n\
         cartridges = {carts}\ncapacity = \"{capacity}\"\n{extra}"
    );
    let board = Board::parse(&text).unwrap();
    let LibraryConfig::Virtual(v) = &board.libraries[0] else { panic!("virtual") };
    let o = sim::open(v, Box::new(MemoryStore::default()), Arc::new(ManualClock::default())).unwrap();
    let drives: Vec<Box<dyn TapeIo>> = o
        .drives
        .into_iter()
        .enumerate()
        .map(|(i, d)| Box::new(TapeDrive::new(Box::new(d), format!("drive {i}"))) as Box<dyn TapeIo>)
        .collect();
    Library::new("v", Box::new(o.changer), drives, nominal, None).unwrap()
}

fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `parts` parts of `len` bytes (`pattern(k, len)` for part `k`), changing cartridges
/// as the stream writer does; returns (barcode, part start, data) of each. Parts are smaller
/// than the early-warning zone, as the writer's records are on a real cartridge.
fn write_parts(t: &mut TapeTarget, parts: usize, len: usize) -> Vec<(String, PartStart, usize)> {
    let mut m = t.mount().unwrap();
    let mut out = Vec::new();
    for k in 0..parts {
        if t.remaining() < len as u64 {
            m = t.next_medium().unwrap();
        }
        let start = t.begin_part().unwrap();
        let data = pattern(k as u64, len);
        t.write(&data).unwrap();
        t.end_part().unwrap();
        out.push((m.label.barcode.clone(), start, k));
    }
    out
}

fn read_back(media: &mut TapeMedia, barcode: &str, start: PartStart, offset: u64, n: usize) -> Vec<u8> {
    let mut r = media.open_part(barcode, start.position, start.file_number, offset).unwrap();
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut buf[got..]).unwrap();
        assert!(k > 0, "data ended early");
        got += k;
    }
    buf
}

#[test]
fn parts_span_cartridges_at_early_warning_and_read_back_from_their_blocks() {
    // The manager thinks cartridges are huge: only the drive's early warning can end one.
    let lib = library(1, (4, "64M"), 1 << 40, "");
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    const LEN: usize = 1_000_000;
    let parts = write_parts(&mut t, 140, LEN);
    drop(t);
    let carts: std::collections::BTreeSet<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(carts.len(), 3, "140 parts of 1 MB on 64 MiB cartridges span 3: {carts:?}");
    let mut media = TapeMedia::new(lib.clone());
    for (barcode, start, k) in parts.iter().step_by(7) {
        assert!(read_back(&mut media, barcode, *start, 0, LEN) == pattern(*k as u64, LEN), "part {k}");
    }
    // A read of 1000 bytes from inside a part seeks once and reads only the block it is in.
    let (barcode, start, k) = &parts[100];
    let data = pattern(*k as u64, LEN);
    let (seeks, read) =
        (lib.stats.seeks.load(Ordering::Relaxed), lib.stats.blocks_read.load(Ordering::Relaxed));
    let offset = 3 * BLOCK as u64 + 10;
    assert_eq!(read_back(&mut media, barcode, *start, offset, 1000), data[offset as usize..][..1000]);
    assert_eq!(lib.stats.seeks.load(Ordering::Relaxed) - seeks, 1);
    assert_eq!(lib.stats.blocks_read.load(Ordering::Relaxed) - read, 1);
    // The full cartridges are known as such; the next mount appends to the last one (the
    // media gives its drive back when dropped).
    drop(media);
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    let m = t.mount().unwrap();
    assert_eq!(m.label.barcode, parts.last().unwrap().0);
    assert!(!m.new);
}

#[test]
fn a_write_protected_or_foreign_cartridge_is_never_written() {
    let lib = library(
        1,
        (6, "8M"),
        8 << 20,
        "[[library.fault]]\nat = \"write_protected\"\nbarcode = \"CFR0001L8\"\n",
    );
    // Cartridge 2 carries another cartridge's label.
    let foreign = crate::device::label::new_label("ZZZ999L8".into(), "default", BLOCK as u32);
    {
        let mut lease = lib.lease(None).unwrap();
        lib.load(&mut lease, "CFR0002L8").unwrap();
        let io = lease.io();
        io.set_block_size(BLOCK as u32).unwrap();
        io.write_blocks(&label_block(&foreign, BLOCK)).unwrap();
        io.write_filemark().unwrap();
    }
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    let m = t.mount().unwrap();
    assert_eq!(m.label.barcode, "CFR0003L8");
    let unusable = lib.unusable();
    assert_eq!(unusable.len(), 2, "{unusable:?}");
    assert!(unusable[0].1.contains("write-protected"), "{unusable:?}");
    assert!(unusable[1].1.contains("ZZZ999L8"), "{unusable:?}");
    drop(t);
    // The foreign cartridge still holds exactly its label and filemark.
    let mut lease = lib.lease(None).unwrap();
    lib.load(&mut lease, "CFR0002L8").unwrap();
    let io = lease.io();
    assert_eq!(io.to_end_of_data().unwrap(), TapePos { object: 2, file: 1 });
}

#[test]
fn a_unit_attention_mid_part_stops_the_writer_before_another_byte() {
    let lib = library(
        1,
        (2, "64M"),
        64 << 20,
        "[[library.fault]]\nat = \"unit_attention\"\ndrive = 0\nafter = \"3M\"\n",
    );
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    let m = t.mount().unwrap();
    let first = t.begin_part().unwrap();
    t.write(&pattern(1, 1 << 20)).unwrap();
    t.end_part().unwrap();
    t.begin_part().unwrap();
    let mut failed = None;
    for k in 0..8 {
        if let Err(e) = t.write(&pattern(k, 1 << 20)) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("the unit attention fails a write");
    assert!(e.to_string().to_lowercase().contains("unit attention"), "{e}");
    let written = lib.stats.blocks_written.load(Ordering::Relaxed);
    assert!(t.write(&[0u8; 100]).is_err(), "no write goes on after a unit attention");
    assert!(t.end_part().is_err());
    assert_eq!(lib.stats.blocks_written.load(Ordering::Relaxed), written);
    drop(t);
    // The durable first part reads back.
    let mut media = TapeMedia::new(lib);
    assert_eq!(read_back(&mut media, &m.label.barcode, first, 0, 1 << 20), pattern(1, 1 << 20));
}

#[test]
fn a_drive_that_goes_offline_is_taken_out_and_the_other_keeps_working() {
    let lib = library(
        2,
        (3, "64M"),
        64 << 20,
        "[[library.fault]]\nat = \"drive_offline\"\ndrive = 0\nafter = \"2M\"\n",
    );
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    t.mount().unwrap();
    t.begin_part().unwrap();
    let mut failed = false;
    for k in 0..8 {
        if t.write(&pattern(k, 1 << 20)).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "drive 0 went offline");
    drop(t);
    assert_eq!(lib.drive_counts(), (2, 1));
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 1);
    let parts = write_parts(&mut t, 2, 500_000);
    drop(t);
    let mut media = TapeMedia::new(lib);
    for (barcode, start, k) in &parts {
        assert!(read_back(&mut media, barcode, *start, 0, 500_000) == pattern(*k as u64, 500_000));
    }
}

#[test]
fn a_failed_robot_move_is_retried_after_a_reinventory() {
    let lib = library(1, (2, "8M"), 8 << 20, "[[library.fault]]\nat = \"move_failure\"\nmove_number = 1\n");
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    let m = t.mount().unwrap();
    assert_eq!(m.label.barcode, "CFR0001L8");
    assert_eq!(lib.stats.moves.load(Ordering::Relaxed), 1);
    // The fault fired (the first attempt failed) and the move was issued again and succeeded.
    assert_eq!(
        lib.stats.moves_retried.load(Ordering::Relaxed),
        1,
        "the first move did not fail, or was not retried"
    );
}

#[test]
fn a_move_that_succeeds_at_once_is_not_counted_as_retried() {
    let lib = library(1, (2, "8M"), 8 << 20, "");
    let mut t = TapeTarget::new(lib.clone(), "default", BLOCK, 0);
    t.mount().unwrap();
    assert_eq!(lib.stats.moves.load(Ordering::Relaxed), 1);
    assert_eq!(lib.stats.moves_retried.load(Ordering::Relaxed), 0);
}

#[test]
fn no_cartridge_left_is_a_clear_error() {
    let lib = library(1, (2, "64M"), 1 << 40, "");
    let mut t = TapeTarget::new(lib.clone(), "weekly", BLOCK, 0);
    // Two cartridges of 64 MiB; ask for more.
    let mut m = t.mount().unwrap();
    let mut err = None;
    for k in 0..200 {
        if t.remaining() < 1_000_000 {
            match t.next_medium() {
                Ok(x) => m = x,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        t.begin_part().unwrap();
        t.write(&pattern(k, 1_000_000)).unwrap();
        t.end_part().unwrap();
    }
    let e = err.expect("the library runs out").to_string();
    assert!(e.contains("no cartridge left") && e.contains("weekly"), "{e} (last {})", m.label.barcode);
}
