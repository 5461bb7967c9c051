//! NVRAM ring tests on real files in a temporary directory; a "new process" is a dropped and
//! recreated target.

use super::*;
use crate::format::records::{Continuation, SessionHeader, SessionStatus, Trailer};
use crate::format::{encode_data, encode_meta};

const MIB: u64 = 1 << 20;

/// A whole part as the writer makes it: session header, `records` data records of `len`
/// incompressible bytes each, and a trailer (or a continuation when `last` is false).
fn part(session: u64, records: usize, len: usize, last: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; HEADER_LEN + MAX_META_LEN + 2 * len];
    let header = SessionHeader {
        session_id: session,
        job_id: 1,
        host: "test".into(),
        started: 1,
        source: "/src".into(),
        part: 0,
        stream: 0,
        streams: 1,
        continues: None,
        kind: Default::default(),
        source_key: [0; 32],
    };
    let n = encode_meta(0, 1, &header, &mut buf).unwrap();
    out.extend_from_slice(&buf[..n]);
    let mut x = session.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for r in 0..records {
        let raw: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (n, _) = encode_data(7, r as u64 + 1, (r * len) as u64, &raw, false, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    let n = if last {
        let t = Trailer {
            session_id: session,
            part: 0,
            objects: 1,
            records: records as u64,
            raw_bytes: (records * len) as u64,
            stored_bytes: (records * len) as u64,
            ended: 2,
            status: SessionStatus::Complete,
            index_records: 0,
            kept_records: 0,
        };
        encode_meta(0, records as u64 + 1, &t, &mut buf).unwrap()
    } else {
        let c = Continuation {
            session_id: session,
            part: 0,
            next_part: 1,
            next_medium: None,
            records: records as u64,
        };
        encode_meta(0, records as u64 + 1, &c, &mut buf).unwrap()
    };
    out.extend_from_slice(&buf[..n]);
    out
}

/// Writes `bytes` as one part, in uneven pieces, the way the writer does.
fn write_part(t: &mut NvramTarget, bytes: &[u8]) -> PartStart {
    let start = t.begin_part().unwrap();
    for chunk in bytes.chunks(10_007) {
        assert!(t.remaining() >= chunk.len() as u64);
        t.write(chunk).unwrap();
    }
    t.end_part().unwrap();
    start
}

/// Reads `len` bytes from `pos`.
fn read_at(path: &Path, barcode: &str, pos: u64, len: usize) -> Result<Vec<u8>, DeviceError> {
    let mut r = NvramMedia::new(path).open(barcode, pos)?;
    assert_eq!(r.position(), pos);
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut out[got..])? {
            0 => break,
            n => got += n,
        }
    }
    out.truncate(got);
    Ok(out)
}

fn bad_medium(e: DeviceError) -> String {
    match e {
        DeviceError::BadMedium { detail, .. } => detail,
        e => panic!("expected BadMedium, got {e}"),
    }
}

#[test]
fn a_new_region_is_labelled_and_the_label_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let mut t = NvramTarget::new(&path, Some(MIB), "default").unwrap();
    let m = t.mount().unwrap();
    assert!(m.new);
    assert_eq!(m.kind, MediumKind::Nvram);
    assert_eq!(m.location, format!("nvram:{}", path.display()));
    assert_eq!(m.capacity, MIB - RING_START);
    let b = &m.label.barcode;
    assert!(b.starts_with("NVR-") && b.len() == 16, "{b}");
    assert!(b[4..].chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(m.label.block_size as usize, NVRAM_BLOCK);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB);
    // The label block is exactly what label.rs makes.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[..NVRAM_BLOCK], label_block(&m.label, NVRAM_BLOCK));
    assert_eq!(NvramMedia::new(&path).labels().unwrap(), vec![m.label.clone()]);
    drop(t);
    let mut t = NvramTarget::new(&path, None, "default").unwrap();
    let again = t.mount().unwrap();
    assert!(!again.new);
    assert_eq!(again.label, m.label);
    // A region of another pool is not taken over.
    drop(t);
    let e = NvramTarget::new(&path, None, "weekly").unwrap_err().to_string();
    assert!(e.contains("pool=default"), "{e}");
}

#[test]
fn parts_read_back_byte_identical_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let (a, b) = (part(1, 3, 50_000, true), part(2, 5, 30_001, true));
    let mut t = NvramTarget::new(&path, Some(4 * MIB), "default").unwrap();
    let label = t.mount().unwrap().label;
    let pa = write_part(&mut t, &a);
    let pb = write_part(&mut t, &b);
    assert_eq!(pa.position, RING_START);
    assert_eq!(pb.position, round_up(RING_START + a.len() as u64, BLOCK));
    assert_eq!(pa.medium, label.medium);
    drop(t);

    let mut t = NvramTarget::new(&path, Some(4 * MIB), "default").unwrap();
    assert_eq!(t.ring().tail, round_up(pb.position + b.len() as u64, BLOCK));
    let barcode = &label.barcode;
    assert_eq!(read_at(&path, barcode, pa.position, a.len()).unwrap(), a);
    assert_eq!(read_at(&path, barcode, pb.position, b.len()).unwrap(), b);
    // From a record inside a part, to the end of the data: the rest, padding, the next part.
    let all = read_at(&path, barcode, pa.position + 100, usize::MAX >> 40).unwrap();
    assert_eq!(all.len() as u64, t.ring().tail - pa.position - 100);
    assert_eq!(all[..a.len() - 100], a[100..]);
    assert!(all[a.len() - 100..(pb.position - pa.position - 100) as usize].iter().all(|&x| x == 0));
    // The end of the data reads as empty; a wrong barcode is refused.
    assert!(read_at(&path, barcode, t.ring().tail, 10).unwrap().is_empty());
    assert!(
        bad_medium(read_at(&path, "NVR-000000000000", pa.position, 1).unwrap_err()).contains("label says")
    );
    // The next part goes after them.
    t.mount().unwrap();
    let pc = t.begin_part().unwrap();
    assert_eq!(pc.position, t.ring().tail);
}

#[test]
fn a_full_ring_wraps_and_evicts_the_oldest_parts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let mut t = NvramTarget::new(&path, Some(MIB), "default").unwrap();
    let barcode = t.mount().unwrap().label.barcode;
    // Five parts of ~180 KiB fill the first lap (each a backup of its own: a mount each).
    let parts: Vec<Vec<u8>> = (1..=8).map(|s| part(s, 3, 60_000, true)).collect();
    let mut starts = Vec::new();
    for p in &parts[..5] {
        t.mount().unwrap();
        starts.push(write_part(&mut t, p).position);
    }
    assert_eq!(t.ring().laps, 0);
    assert!(t.take_evicted().is_empty());
    // Less than the reserve is left: the next part starts the second lap at the ring start,
    // and writing it evicts the oldest part.
    assert!(t.end - t.ring().tail < PART_RESERVE);
    t.mount().unwrap();
    let p5 = write_part(&mut t, &parts[5]);
    assert_eq!(split(p5.position), (1, RING_START));
    assert_eq!(t.ring().laps, 1);
    let gone = t.take_evicted();
    assert_eq!(gone, vec![Evicted { start: starts[0], end: starts[1] }]);
    assert_eq!(t.evicted(), 1);
    // The writer finding the ring full asks for the next medium: the same one, wrapped again
    // from where the tail is, evicting as it goes.
    t.mount().unwrap();
    let p6 = write_part(&mut t, &parts[6]);
    assert_eq!(p6.position, position(1, starts[1] - starts[0] + RING_START));
    assert_eq!(t.take_evicted(), vec![Evicted { start: starts[1], end: starts[2] }]);
    assert_eq!(t.evicted(), 2);
    drop(t);

    // The evicted parts give a clear error, though new parts now sit at the same offsets.
    for gone in &starts[..2] {
        let e = bad_medium(read_at(&path, &barcode, *gone, 10).unwrap_err());
        assert!(e.contains("overwritten by newer backups"), "{e}");
    }
    // Newer parts read back, both from the older lap and from the new one.
    for (p, pos) in parts[2..5].iter().zip(&starts[2..]) {
        assert_eq!(&read_at(&path, &barcode, *pos, p.len()).unwrap(), p);
    }
    assert_eq!(read_at(&path, &barcode, p5.position, parts[5].len()).unwrap(), parts[5]);
    assert_eq!(read_at(&path, &barcode, p6.position, parts[6].len()).unwrap(), parts[6]);
    // The live ranges, oldest first, start at the oldest live part.
    let mut t = NvramTarget::new(&path, None, "default").unwrap();
    let live = t.ring().live();
    assert_eq!(live[0].start, starts[2]);
    assert_eq!(live[1].start, p5.position);
    // next_medium wraps at once: the rest of the older lap goes.
    t.mount().unwrap();
    t.next_medium().unwrap();
    assert_eq!(t.ring().laps, 2);
    assert_eq!(t.take_evicted().len(), 3);
    let e = bad_medium(read_at(&path, &barcode, starts[4], 10).unwrap_err());
    assert!(e.contains("overwritten"), "{e}");
    assert_eq!(read_at(&path, &barcode, p6.position, parts[6].len()).unwrap(), parts[6]);
}

#[test]
fn a_backup_larger_than_the_ring_is_refused_rather_than_eating_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let mut t = NvramTarget::new(&path, Some(MIB), "default").unwrap();
    t.mount().unwrap();
    let p = part(1, 3, 60_000, false);
    let e = (0..10)
        .find_map(|_| {
            let start = t.begin_part().ok()?;
            assert!(start.position > 0);
            p.chunks(10_007).try_for_each(|c| t.write(c)).and_then(|()| t.end_part()).err()
        })
        .expect("the ring cannot hold ten parts");
    assert!(matches!(e, DeviceError::Full { .. }), "{e}");
    assert!(e.to_string().contains("larger than the NVRAM ring"), "{e}");
    assert_eq!(t.evicted(), 0);
}

#[test]
fn a_torn_ring_header_slot_falls_back_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let (a, b) = (part(1, 2, 20_000, true), part(2, 2, 20_000, true));
    let mut t = NvramTarget::new(&path, None, "default").unwrap();
    let barcode = t.mount().unwrap().label.barcode;
    let pa = write_part(&mut t, &a);
    let after_a = t.ring();
    let pb = write_part(&mut t, &b);
    let newest = t.ring().generation;
    drop(t);
    // Tear the newest slot: a crash in the middle of writing it.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = SLOT_AT[(newest % 2) as usize] as usize;
    bytes[at + 20] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    let mut t = NvramTarget::new(&path, None, "default").unwrap();
    assert_eq!(t.ring(), after_a);
    assert_eq!(read_at(&path, &barcode, pa.position, a.len()).unwrap(), a);
    // Part b was never durable as far as the ring knows: its place is the end of the data,
    // and the next part goes there.
    assert!(read_at(&path, &barcode, pb.position, 10).unwrap().is_empty());
    t.mount().unwrap();
    assert_eq!(write_part(&mut t, &b).position, pb.position);
    assert_eq!(t.ring().generation, after_a.generation + 1);
    // Both slots damaged: refused, not relabelled.
    drop(t);
    let mut bytes = std::fs::read(&path).unwrap();
    for at in SLOT_AT {
        bytes[at as usize + 20] ^= 0xFF;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = bad_medium(NvramTarget::new(&path, None, "default").unwrap_err());
    assert!(e.contains("no valid NVRAM ring header"), "{e}");
}

#[test]
fn foreign_data_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.img");
    let mut content = vec![0u8; MIB as usize];
    content[..11].copy_from_slice(b"not coffer!");
    std::fs::write(&path, &content).unwrap();
    let e = bad_medium(NvramTarget::new(&path, None, "default").unwrap_err());
    assert!(e.contains("not a coffer volume label"), "{e}");
    // Zeros in the first block but something else in the second: refused too.
    content[..11].fill(0);
    content[HEADER_AT as usize + 7] = 1;
    std::fs::write(&path, &content).unwrap();
    let e = bad_medium(NvramTarget::new(&path, None, "default").unwrap_err());
    assert!(e.contains("not coffer's"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(NvramMedia::new(&path).labels().is_err());
    // A blank existing file is labelled.
    std::fs::write(&path, vec![0u8; 2 * MIB as usize]).unwrap();
    let mut t = NvramTarget::new(&path, None, "default").unwrap();
    assert!(t.mount().unwrap().new);
}

#[test]
fn sizes_that_disagree_or_are_too_small_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    drop(NvramTarget::new(&path, Some(2 * MIB), "default").unwrap());
    let spec_error = |r: Result<NvramTarget, DeviceError>| match r.unwrap_err() {
        DeviceError::BadSpec { detail, .. } => detail,
        e => panic!("expected BadSpec, got {e}"),
    };
    let e = spec_error(NvramTarget::new(&path, Some(4 * MIB), "default"));
    assert!(e.contains("not the 4194304 given by size="), "{e}");
    assert!(NvramTarget::new(&path, Some(2 * MIB), "default").is_ok());
    let e = spec_error(NvramTarget::new(&dir.path().join("small"), Some(MIB / 2), "default"));
    assert!(e.contains("at least"), "{e}");
    assert!(!dir.path().join("small").exists());
    // The default size, and a second writer locked out.
    let other = dir.path().join("default.img");
    let t = NvramTarget::new(&other, None, "default").unwrap();
    assert_eq!(std::fs::metadata(&other).unwrap().len(), DEFAULT_SIZE);
    let e = spec_error(NvramTarget::new(&other, None, "default"));
    assert!(e.contains("another coffer process"), "{e}");
    drop(t);
}

#[test]
fn ring_header_slots_round_trip_and_reject_damage() {
    let end = ring_end(8 * MIB);
    let s = RingState {
        generation: 7,
        head: 5 * BLOCK,
        tail: 3 * BLOCK,
        wrap_end: Some(100 * BLOCK),
        laps: 2,
        evicted: 9,
    };
    let s = RingState { head: s.head + RING_START, tail: s.tail + RING_START, ..s };
    let b = s.encode();
    assert_eq!(RingState::decode(&b, end), Ok(s));
    for i in 0..SLOT_LEN {
        let mut d = b;
        d[i] ^= 0x40;
        assert!(RingState::decode(&d, end).is_err(), "byte {i}");
    }
    // Valid CRC, broken invariants.
    for bad in [
        RingState { head: s.tail - BLOCK, ..s },
        RingState { tail: s.tail + 1, ..s },
        RingState { wrap_end: Some(end + BLOCK), ..s },
        RingState { laps: 0, ..s },
        RingState { wrap_end: None, ..s },
    ] {
        assert!(RingState::decode(&bad.encode(), end).is_err(), "{bad:?}");
    }
}

#[test]
fn positions_locate_live_ended_and_evicted_data() {
    let size = 8 * MIB;
    let flat = RingState { tail: RING_START + 10 * BLOCK, ..RingState::fresh() };
    assert_eq!(flat.locate(size, 0), Locate::Meta { end: flat.tail });
    assert_eq!(flat.locate(size, RING_START), Locate::Data { end: flat.tail, lap: 0 });
    assert_eq!(flat.locate(size, flat.tail), Locate::End);
    assert_eq!(flat.locate(size, size + 1), Locate::Outside);
    assert_eq!(flat.locate(size, position(1, RING_START)), Locate::Evicted { lap: 1 });
    let wrapped = RingState {
        head: RING_START + 20 * BLOCK,
        tail: RING_START + 4 * BLOCK,
        wrap_end: Some(RING_START + 30 * BLOCK),
        laps: 3,
        ..RingState::fresh()
    };
    let (h, t) = (wrapped.head, wrapped.tail);
    assert_eq!(wrapped.locate(size, 0), Locate::Meta { end: RING_START });
    assert_eq!(wrapped.locate(size, position(3, RING_START)), Locate::Data { end: t, lap: 3 });
    assert_eq!(wrapped.locate(size, position(3, t)), Locate::End);
    assert_eq!(wrapped.locate(size, position(2, h)), Locate::Data { end: h + 10 * BLOCK, lap: 2 });
    assert_eq!(wrapped.locate(size, position(2, h - BLOCK)), Locate::Evicted { lap: 2 });
    assert_eq!(wrapped.locate(size, position(2, RING_START)), Locate::Evicted { lap: 2 });
    assert_eq!(wrapped.locate(size, position(1, h)), Locate::Evicted { lap: 1 });
    assert_eq!(
        wrapped.live(),
        vec![position(2, h)..position(2, h + 10 * BLOCK), position(3, RING_START)..position(3, t)]
    );
}

/// Fills a 1 MiB ring with five parts of ~180 KiB, each its own backup; returns the target,
/// the barcode and the parts' positions.
fn full_ring(path: &Path) -> (NvramTarget, String, Vec<u64>) {
    let mut t = NvramTarget::new(path, Some(MIB), "default").unwrap();
    let barcode = t.mount().unwrap().label.barcode;
    let starts = (1..=5)
        .map(|s| {
            t.mount().unwrap();
            write_part(&mut t, &part(s, 3, 60_000, true)).position
        })
        .collect();
    (t, barcode, starts)
}

#[test]
fn a_crash_after_evicting_keeps_the_eviction_and_drops_the_torn_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let (mut t, barcode, starts) = full_ring(&path);
    let before = t.ring();
    t.mount().unwrap();
    let torn = t.begin_part().unwrap();
    // Half a part, over the oldest part's bytes, then the process dies.
    let p = part(9, 3, 60_000, true);
    t.write(&p[..p.len() / 2]).unwrap();
    drop(t);

    let t = NvramTarget::new(&path, None, "default").unwrap();
    let r = t.ring();
    assert_eq!((r.laps, r.tail, r.head), (1, RING_START, starts[1]));
    assert_eq!(r.wrap_end, Some(before.tail));
    assert_eq!(r.evicted, 1);
    let e = bad_medium(read_at(&path, &barcode, starts[0], 10).unwrap_err());
    assert!(e.contains("overwritten by newer backups"), "{e}");
    // The torn part is not data.
    assert!(read_at(&path, &barcode, torn.position, 10).unwrap().is_empty());
    let p1 = part(2, 3, 60_000, true);
    assert_eq!(read_at(&path, &barcode, starts[1], p1.len()).unwrap(), p1);
}

#[test]
fn a_reader_notices_its_bytes_being_evicted_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nv.img");
    let (mut t, barcode, starts) = full_ring(&path);
    let mut media = NvramMedia::new(&path);
    let mut r = media.open(&barcode, starts[0]).unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(r.read(&mut buf).unwrap(), 100);
    t.mount().unwrap();
    write_part(&mut t, &part(9, 1, 1000, true));
    let e = bad_medium(r.read(&mut buf).unwrap_err());
    assert!(e.contains("while being read"), "{e}");
    // A reader of a part that survives carries on.
    let mut r = media.open(&barcode, starts[2]).unwrap();
    assert_eq!(r.read(&mut buf).unwrap(), 100);
}
