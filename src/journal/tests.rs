//! Journal behaviour: replay, group atomicity, rotation, snapshots, damage detection, and the
//! crash sweep (crash at every write and sync, random damage to what was not durable).

use super::frame::{FRAME_HEADER, HeadSlot, SEGMENT_HEADER, SLOT_LEN, SegmentHeader, decode_frame};
use super::replay::Groups;
use super::*;

/// A test record: an id and some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec(u64, Vec<u8>);

impl Entry for Rec {
    fn kind(&self) -> u16 {
        FIRST_USER_KIND + (self.0 % 3) as u16
    }
    fn version(&self) -> u8 {
        1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&postcard::to_allocvec(&(self.0, &self.1)).unwrap());
    }
}

fn decode(r: RawRecord<'_>) -> Result<Rec, String> {
    let (id, bytes): (u64, Vec<u8>) = postcard::from_bytes(r.payload).map_err(|e| e.to_string())?;
    if r.kind != FIRST_USER_KIND + (id % 3) as u16 || r.version != 1 {
        return Err("kind does not match".into());
    }
    Ok(Rec(id, bytes))
}

/// Opens and collects every replayed record.
fn open<D: Dir>(dir: D, mode: Mode) -> Result<(Journal<D>, Vec<Rec>, OpenReport), JournalError> {
    let mut got = Vec::new();
    let (j, report) = Journal::open(dir, mode, |r| {
        got.push(decode(r)?);
        Ok(())
    })?;
    Ok((j, got, report))
}

fn rec(id: u64) -> Rec {
    Rec(id, (0..(id % 17) as u8).collect())
}

#[test]
fn committed_records_replay_in_order_and_uncommitted_ones_do_not() {
    let dir = MemDir::new();
    let (mut j, got, _) = open(dir.clone(), Mode::Write).unwrap();
    assert!(got.is_empty());
    for id in 0..10 {
        j.append(&rec(id)).unwrap();
    }
    j.commit().unwrap();
    j.append(&rec(10)).unwrap();
    drop(j); // never committed
    let (mut j, got, report) = open(dir.clone(), Mode::Write).unwrap();
    assert_eq!(got, (0..10).map(rec).collect::<Vec<_>>());
    assert!(report.cut.is_none(), "uncommitted records were never written");
    j.append(&rec(11)).unwrap();
    j.commit().unwrap();
    let (_, got, _) = open(dir, Mode::Write).unwrap();
    assert_eq!(got.last(), Some(&rec(11)));
    assert_eq!(got.len(), 11);
}

#[test]
fn segments_rotate_and_snapshots_bound_replay() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    j.set_segment_target(1000);
    let mut state = Vec::new();
    for id in 0..200 {
        j.append(&rec(id)).unwrap();
        state.push(rec(id));
        if id % 7 == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    let segments = |d: &MemDir| d.list().unwrap().iter().filter(|n| n.starts_with("seg-")).count();
    assert!(segments(&dir) > 3, "rotation made several segments");
    let (mut j, got, report) = open(dir.clone(), Mode::Write).unwrap();
    assert_eq!(got, state);
    assert_eq!(report.segments, segments(&dir));
    j.snapshot(state.iter()).unwrap();
    assert_eq!(segments(&dir), 1, "old segments removed after the snapshot");
    j.append(&rec(500)).unwrap();
    j.commit().unwrap();
    state.push(rec(500));
    let (_, got, report) = open(dir, Mode::Write).unwrap();
    assert_eq!(got, state);
    assert_eq!(report.records, state.len() as u64);
}

/// Committed records and bytes of the live segments, as replay would count them.
fn live_size(dir: &MemDir) -> u64 {
    let names = dir.list().unwrap();
    names.iter().filter(|n| n.starts_with("seg-")).map(|n| dir.contents(n).unwrap().len() as u64).sum()
}

#[test]
fn an_open_journal_counts_what_replay_would_report() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    assert_eq!(j.committed(), (0, live_size(&dir)));
    j.set_segment_target(700);
    let mut state = Vec::new();
    for id in 0..120 {
        j.append(&rec(id)).unwrap();
        state.push(rec(id));
        if id % 5 == 4 {
            j.commit().unwrap();
            // Appended but uncommitted records do not count.
            j.append(&rec(1000 + id)).unwrap();
            assert_eq!(j.committed().0, state.len() as u64);
            j.commit().unwrap();
            state.push(rec(1000 + id));
        }
        if id == 60 {
            j.commit().unwrap();
            j.snapshot(state.iter()).unwrap();
        }
    }
    j.commit().unwrap();
    let counted = j.committed();
    drop(j);
    assert_eq!(counted.1, live_size(&dir), "bytes: every live segment");
    let (j, got, report) = open(dir.clone(), Mode::ReadOnly).unwrap();
    assert_eq!(got, state);
    assert_eq!((report.records, report.bytes), counted);
    assert_eq!(j.committed(), counted);
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    j.append(&rec(1)).unwrap();
    j.commit().unwrap();
    let name = "seg-0000000000000001";
    let mut bytes = dir.contents(name).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0xAB; 37]);
    dir.set_contents(name, bytes);
    let (_, got, report) = open(dir.clone(), Mode::Write).unwrap();
    assert_eq!(got, vec![rec(1)]);
    let cut = report.cut.unwrap();
    assert_eq!((cut.offset, cut.bytes), (len as u64, 37));
    assert_eq!(dir.contents(name).unwrap().len(), len);
    let (_, _, report) = open(dir, Mode::Write).unwrap();
    assert!(report.cut.is_none(), "recovery is idempotent");
}

#[test]
fn damage_before_the_durable_end_fails_closed_naming_file_and_offset() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    for id in 0..5 {
        j.append(&rec(id)).unwrap();
        j.commit().unwrap();
    }
    let name = "seg-0000000000000001";
    let mut bytes = dir.contents(name).unwrap();
    let second_group = SEGMENT_HEADER + 2 * FRAME_HEADER + 8 + 2 * FRAME_HEADER + 8 + 20;
    bytes[second_group] ^= 0x10;
    dir.set_contents(name, bytes);
    match open(dir.clone(), Mode::Write) {
        Err(JournalError::Damaged { file, offset, .. }) => {
            assert_eq!(file, name);
            assert!(offset as usize <= second_group);
        }
        other => panic!("expected damage, got {:?}", other.map(|x| x.1)),
    }
    // Read-only: the records before the damage, and the damage reported.
    let (mut j, got, report) = open(dir, Mode::ReadOnly).unwrap();
    assert!(!got.is_empty() && got.len() < 5);
    assert!(report.damage.unwrap().is_damage());
    assert!(matches!(j.append(&rec(9)), Err(JournalError::ReadOnly)));
}

#[test]
fn a_record_from_a_newer_coffer_stops_the_open() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    j.append(&rec(3)).unwrap();
    j.commit().unwrap();
    let err = Journal::open(dir, Mode::Write, |_| Err("unknown record kind".to_owned())).unwrap_err();
    assert!(matches!(err, JournalError::Apply { seq: 3, .. }), "{err}");
}

#[test]
fn oversized_records_and_groups_are_refused_without_harm() {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    let big = Rec(1, vec![7; MAX_PAYLOAD + 1]);
    assert!(matches!(j.append(&big), Err(JournalError::TooLarge { what: "record", .. })));
    j.append(&rec(2)).unwrap();
    j.commit().unwrap();
    let (_, got, _) = open(dir, Mode::Write).unwrap();
    assert_eq!(got, vec![rec(2)]);
}

/// The reference workload of the crash sweep: groups of records, segment rotation, and two
/// snapshots. Returns the groups whose commit returned.
fn workload(dir: &MemDir, acked: &mut Vec<Vec<Rec>>) -> Result<(), JournalError> {
    let (mut j, got, _) = open(dir.clone(), Mode::Write)?;
    assert!(got.is_empty());
    j.set_segment_target(600);
    let mut all = Vec::new();
    for g in 0..30u64 {
        let group: Vec<Rec> = (0..1 + g % 4).map(|i| rec(g * 10 + i)).collect();
        for r in &group {
            j.append(r)?;
        }
        j.commit()?;
        all.extend(group.iter().cloned());
        acked.push(group);
        if g == 12 || g == 25 {
            j.snapshot(all.iter())?;
        }
    }
    Ok(())
}

fn groups_prefix(groups: &[Vec<Rec>]) -> Vec<Rec> {
    groups.iter().flatten().cloned().collect()
}

#[test]
fn crash_sweep_every_write_and_sync_loses_no_committed_record() {
    let mut full = Vec::new();
    let clean = MemDir::new();
    workload(&clean, &mut full).unwrap();
    let total_ops = clean.ops();
    let (mut recoveries, mut cuts) = (0, 0);
    for crash_at in 1..=total_ops {
        let dir = MemDir::new();
        dir.crash_after(crash_at);
        let mut acked = Vec::new();
        assert!(workload(&dir, &mut acked).is_err(), "crash point {crash_at} reached");
        for seed in 0..4 {
            let image = dir.crash_image(crash_at * 31 + seed);
            let (mut j, got, first_report) = open(image.clone(), Mode::Write)
                .unwrap_or_else(|e| panic!("crash {crash_at} seed {seed}: open failed: {e}"));
            // Every acknowledged group is there; at most the one in flight besides.
            let lo = groups_prefix(&full[..acked.len()]);
            let hi = groups_prefix(&full[..(acked.len() + 1).min(full.len())]);
            assert!(got == lo || got == hi, "crash {crash_at} seed {seed}: replay lost or invented records");
            drop(j);
            cuts += u64::from(first_report.cut.is_some());
            let (mut j2, again, report) = open(image.clone(), Mode::Write).unwrap();
            assert_eq!(again, got, "crash {crash_at} seed {seed}: recovery not idempotent");
            assert!(report.cut.is_none());
            j2.append(&rec(9999)).unwrap();
            j2.commit().unwrap();
            j = j2;
            drop(j);
            let (_, after, _) = open(image.clone(), Mode::Write).unwrap();
            assert_eq!(after.len(), got.len() + 1);
            if seed == 0 {
                crash_during_recovery(&dir, crash_at, &got);
            }
            recoveries += 1;
        }
    }
    assert!(recoveries > 400, "the sweep covered {recoveries} recoveries over {total_ops} crash points");
    assert!(cuts > 50, "only {cuts} recoveries met a torn tail");
    eprintln!("crash sweep: {total_ops} crash points, {recoveries} recoveries, {cuts} torn tails cut");
}

/// Crashes the recovery itself at each of its operations: the next recovery still yields the
/// same records.
fn crash_during_recovery(crashed: &MemDir, crash_at: u64, want: &[Rec]) {
    let image = crashed.crash_image(crash_at * 31);
    let probe = image.deep_clone();
    let before = probe.ops();
    let _ = open(probe.clone(), Mode::Write).unwrap();
    let recovery_ops = probe.ops() - before;
    for n in 1..=recovery_ops {
        let attempt = image.deep_clone();
        attempt.crash_after(n);
        // Fails, or succeeds when the crash hit a best-effort removal of a stale segment.
        let _ = open(attempt.clone(), Mode::Write);
        assert!(attempt.crashed());
        let after = attempt.crash_image(n);
        let (_, got, _) =
            open(after, Mode::Write).unwrap_or_else(|e| panic!("crash {crash_at}, recovery crash {n}: {e}"));
        assert_eq!(got, want, "crash {crash_at}, recovery crash {n}");
    }
}

/// Builds a journal of exactly 10,000 records in groups of 100, in one segment.
fn ten_thousand() -> (MemDir, Vec<Rec>) {
    let dir = MemDir::new();
    let (mut j, _, _) = open(dir.clone(), Mode::Write).unwrap();
    let mut all = Vec::new();
    for id in 0..10_000 {
        let r = Rec(id, vec![(id % 251) as u8; 4]);
        j.append(&r).unwrap();
        all.push(r);
        if id % 100 == 99 {
            j.commit().unwrap();
        }
    }
    (dir, all)
}

const SEG1: &str = "seg-0000000000000001";

/// Every single-bit flip anywhere in the segment is caught by the checks replay applies from
/// the flipped byte on: the segment header's CRC, or the CRC and framing of the record holding
/// it together with the group rules (sequence numbers, commits) over the records after it. A
/// flip counts as unnoticed if checking reaches an original record boundary in the same state
/// as the undamaged segment. (The full open is run on a sample of flips in the next test;
/// running it for all 2.5 million takes hours.)
#[test]
fn every_single_bit_flip_in_a_10000_record_journal_is_detected() {
    let (dir, _) = ten_thousand();
    let seg = dir.contents(SEG1).unwrap();
    let header = SegmentHeader::decode(&seg).unwrap();
    // The checker's state at every record boundary of the undamaged segment.
    let mut states = std::collections::BTreeMap::new();
    let mut groups = Groups::new(&header);
    let mut pos = SEGMENT_HEADER;
    while pos < seg.len() {
        states.insert(pos, groups.clone());
        let (f, total) = decode_frame(&seg[pos..]).unwrap();
        groups.feed(pos as u64, &f, total).unwrap();
        pos += total;
    }
    assert_eq!(pos, seg.len());
    assert!(!groups.open());
    assert_eq!(states.len(), 10_000 + 100 + 2, "records, commits, and the base snapshot's two");
    let mut flips = 0u64;
    let mut bytes = seg.clone();
    for bit in 0..SEGMENT_HEADER * 8 {
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert!(SegmentHeader::decode(&bytes).is_err(), "header bit {bit}");
        bytes[bit / 8] ^= 1 << (bit % 8);
        flips += 1;
    }
    let starts: Vec<usize> = states.keys().copied().collect();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(seg.len());
        for bit in start * 8..end * 8 {
            bytes[bit / 8] ^= 1 << (bit % 8);
            let mut g = states[&start].clone();
            let mut pos = start;
            while let Ok((f, total)) = decode_frame(&bytes[pos..]) {
                if g.feed(pos as u64, &f, total).is_err() {
                    break;
                }
                pos += total;
                let back_in_step = pos >= end && states.get(&pos).is_some_and(|s| *s == g);
                assert!(!back_in_step, "bit {bit} (record at {start}) went unnoticed");
                if pos == seg.len() {
                    assert!(g.open(), "bit {bit}: checking ended on a whole group");
                    break;
                }
            }
            bytes[bit / 8] ^= 1 << (bit % 8);
            flips += 1;
        }
    }
    assert_eq!(flips, seg.len() as u64 * 8);
}

/// The full open on flipped journals: every bit of the head file, every bit of the last group
/// (where damage and a torn tail look most alike), and one bit in every 101 elsewhere.
#[test]
fn flipped_bits_make_the_open_fail_closed_or_are_repaired_from_the_other_head_slot() {
    let (dir, all) = ten_thousand();
    let seg = dir.contents(SEG1).unwrap();
    // The last group's last three records and its commit.
    let mut starts = vec![SEGMENT_HEADER];
    while *starts.last().unwrap() < seg.len() {
        let at = *starts.last().unwrap();
        starts.push(at + decode_frame(&seg[at..]).unwrap().1);
    }
    let tail = starts[starts.len() - 5];
    let bits = (0..seg.len() * 8).filter(|b| b % 997 == 0 || b / 8 >= tail);
    let mut opens = 0;
    for bit in bits {
        let d = dir.deep_clone();
        let mut bytes = seg.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        d.set_contents(SEG1, bytes);
        match open(d, Mode::Write) {
            Err(e) => assert!(e.is_damage(), "bit {bit}: {e}"),
            Ok((_, got, _)) => panic!("bit {bit} unnoticed: replayed {} records", got.len()),
        }
        opens += 1;
    }
    let head = dir.contents(HEAD_NAME).unwrap();
    assert_eq!(head.len(), 2 * SLOT_LEN);
    let meaningful = |byte: usize| byte % SLOT_LEN < 48 || byte % SLOT_LEN >= SLOT_LEN - 4;
    for bit in (0..head.len() * 8).filter(|b| meaningful(b / 8) || b % 7 == 0) {
        let d = dir.deep_clone();
        let mut bytes = head.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        d.set_contents(HEAD_NAME, bytes);
        match open(d, Mode::Write) {
            Err(e) => assert!(e.is_damage(), "head bit {bit}: {e}"),
            Ok((_, got, report)) => {
                assert_eq!(got, all, "head bit {bit}");
                assert!(!report.warnings.is_empty(), "head bit {bit} flipped silently");
            }
        }
        opens += 1;
    }
    assert!(opens > 3_000, "{opens} opens");
}

#[test]
fn head_slots_alternate() {
    assert_eq!(HeadSlot::offset(1), SLOT_LEN as u64);
    assert_eq!(HeadSlot::offset(2), 0);
}

#[test]
fn uring_journal_on_a_real_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("journal");
    {
        let (mut j, got, _) = open(UringDir::new(&path).unwrap(), Mode::Write).unwrap();
        assert!(got.is_empty());
        for id in 0..1000 {
            j.append(&rec(id)).unwrap();
        }
        j.commit().unwrap();
        j.append(&rec(1000)).unwrap();
    }
    // A torn tail on the real file is cut.
    let seg = path.join(SEG1);
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[1, 2, 3, 4, 5]).unwrap();
    let (_, got, report) = open(UringDir::new(&path).unwrap(), Mode::Write).unwrap();
    assert_eq!(got, (0..1000).map(rec).collect::<Vec<_>>());
    assert_eq!(report.cut.unwrap().offset, len);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// The frame, segment-header and head-slot decoders take any bytes without panicking, and
    /// never accept a length past what they were given.
    #[test]
    fn decoders_take_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
        if let Ok((f, total)) = decode_frame(&bytes) {
            proptest::prop_assert!(total <= bytes.len());
            proptest::prop_assert_eq!(f.payload.len() + FRAME_HEADER, total);
        }
        let _ = SegmentHeader::decode(&bytes);
        if bytes.len() >= SLOT_LEN {
            let _ = HeadSlot::decode(bytes[..SLOT_LEN].try_into().unwrap());
        }
        let mut g = Groups::new(&SegmentHeader { id: 1, first_seq: 1, prev_len: 0, snapshot: true });
        let mut pos = 0;
        while let Ok((f, total)) = decode_frame(&bytes[pos..]) {
            if g.feed(pos as u64, &f, total).is_err() {
                break;
            }
            pos += total;
        }
    }
}
