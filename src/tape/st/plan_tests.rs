use super::*;

#[test]
fn status_bits_decode_as_linux_mtio_h_defines_them() {
    let s = Status::decode(0x4000_0000 | 0x0100_0000 | 0x0400_0000, 0x2500_0200, 0, 0);
    assert!(s.bot && s.online && s.write_protected);
    assert!(!s.filemark && !s.early_warning && !s.end_of_data && !s.no_medium && !s.cleaning);
    assert_eq!((s.file, s.block, s.block_size), (Some(0), Some(0), 512));

    let s = Status::decode(0x8000_0000 | 0x2000_0000 | 0x0800_0000 | 0x0004_0000 | 0x8000, 0, -1, -1);
    assert!(s.filemark && s.early_warning && s.end_of_data && s.no_medium && s.cleaning);
    assert!(!s.online && !s.bot);
    assert_eq!((s.file, s.block), (None, None));
    assert_eq!(Status::decode(0, 0, 7, 12).file, Some(7));
    assert_eq!(Status::decode(0, 0, 7, 12).block_size, 0);
}

#[test]
fn errnos_map_to_what_callers_branch_on() {
    assert_eq!(errno(libc::ENOMEDIUM), Errno::NoMedium);
    assert_eq!(errno(libc::EACCES), Errno::WriteProtected);
    assert_eq!(errno(libc::EROFS), Errno::WriteProtected);
    assert_eq!(errno(libc::ENOSPC), Errno::EndOfMedium);
    assert_eq!(errno(libc::EIO), Errno::Other);
}

#[test]
fn records_are_blocks_in_fixed_mode_and_one_record_in_variable_mode() {
    let data = [7u8; 1024];
    let r = records(&data, 256);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|b| b.len() == 256));
    assert_eq!(records(&data, 0), vec![&data[..]]);
    assert!(records(&[], 0).is_empty() && records(&[], 512).is_empty());
}

#[test]
#[should_panic(expected = "whole blocks")]
fn records_refuse_a_partial_block() {
    records(&[0u8; 300], 256);
}

#[test]
fn a_chain_counts_records_up_to_the_first_that_was_not_written() {
    let lens = [512; 4];
    let all = [Ok(512); 4];
    assert_eq!(chain_outcome(&all, &lens), ChainOutcome { written: 4, stop: None });
    let ew = [Ok(512), Ok(512), Err(libc::ENOSPC), Err(libc::ECANCELED)];
    assert_eq!(chain_outcome(&ew, &lens), ChainOutcome { written: 2, stop: Some(Stop::NoSpace) });
    let io = [Err(libc::EIO), Err(libc::ECANCELED), Err(libc::ECANCELED), Err(libc::ECANCELED)];
    assert_eq!(chain_outcome(&io, &lens), ChainOutcome { written: 0, stop: Some(Stop::Failed(libc::EIO)) });
    let short = [Ok(512), Ok(100), Err(libc::ECANCELED), Err(libc::ECANCELED)];
    assert_eq!(chain_outcome(&short, &lens), ChainOutcome { written: 1, stop: Some(Stop::Short(100)) });
}

/// `st`'s behaviour in the early-warning zone as documented (Documentation/scsi/st.rst, "EOM
/// Behaviour When Writing"): after the write that reached early warning, refuse, accept,
/// refuse, accept… until the drive itself refuses at the physical end.
struct EwDrive {
    room: usize,
    gate_shut: bool,
}

impl EwDrive {
    fn write(&mut self) -> Result<usize, i32> {
        if self.gate_shut {
            self.gate_shut = false;
            return Err(libc::ENOSPC);
        }
        self.gate_shut = true;
        if self.room == 0 {
            return Err(libc::ENOSPC);
        }
        self.room -= 1;
        Ok(512)
    }
}

#[test]
fn early_warning_alternation_writes_every_record_until_the_drive_refuses() {
    // The loop starts after a chain's `ENOSPC`: `st`'s refusal (the next write goes through)
    // or the drive's (the next write is refused).
    for (room, gate_shut) in (0..6).flat_map(|r| [(r, false), (r, true)]) {
        let mut d = EwDrive { room, gate_shut };
        let mut written = 0;
        let end = 'records: loop {
            let mut refused = false;
            for _attempt in 0..2 {
                match after_nospace(d.write(), 512, refused) {
                    EwStep::Written => {
                        written += 1;
                        continue 'records;
                    }
                    EwStep::Retry => refused = true,
                    EwStep::EndOfMedium => break 'records true,
                    EwStep::Stop(s) => panic!("{s:?}"),
                }
            }
            panic!("two attempts neither wrote nor ended");
        };
        assert!(end);
        assert_eq!(written, room, "every record the medium had room for was written");
    }
}

#[test]
fn other_errors_in_the_early_warning_zone_stop() {
    assert_eq!(after_nospace(Err(libc::EIO), 512, false), EwStep::Stop(Stop::Failed(libc::EIO)));
    assert_eq!(after_nospace(Ok(3), 512, true), EwStep::Stop(Stop::Short(3)));
}

#[test]
fn reads_tell_records_filemarks_and_end_of_data_apart() {
    assert_eq!(read_class(Ok(4096), None), ReadClass::Block(4096));
    assert_eq!(read_class(Ok(0), Some(false)), ReadClass::Filemark);
    assert_eq!(read_class(Ok(0), Some(true)), ReadClass::EndOfData);
    assert_eq!(read_class(Err(libc::EIO), Some(true)), ReadClass::EndOfData);
    assert_eq!(read_class(Err(libc::EIO), Some(false)), ReadClass::Probe);
    // tgt's end of data through st: a "record" with the end of medium reported.
    assert_eq!(read_at_end_of_medium(ReadClass::Block(1 << 20), true), ReadClass::EndOfData);
    assert_eq!(read_at_end_of_medium(ReadClass::Block(4096), false), ReadClass::Block(4096));
    assert_eq!(read_at_end_of_medium(ReadClass::Filemark, true), ReadClass::Filemark);
    assert_eq!(read_class(Err(libc::ENOMEM), None), ReadClass::TooLarge);
    assert_eq!(read_class(Err(libc::ENOMEDIUM), None), ReadClass::Failed(libc::ENOMEDIUM));
}

#[test]
fn space_counts_fit_space6() {
    assert_eq!(space_counts(0).count(), 0);
    assert_eq!(space_counts(5).collect::<Vec<_>>(), vec![5]);
    let big = 3 * MAX_SPACE + 2;
    let counts: Vec<i32> = space_counts(big).collect();
    assert_eq!(counts.len(), 4);
    assert!(counts.iter().all(|&c| c > 0 && c as u64 <= MAX_SPACE));
    assert_eq!(counts.iter().map(|&c| c as u64).sum::<u64>(), big);
}

/// One file of `len` records on a tape, as spacing sees it.
struct SimFile {
    len: u64,
    filemark: bool,
    at: u64,
    past_end: bool,
}

impl SimFile {
    fn count(len: u64, filemark: bool) -> (u64, bool, usize) {
        let mut f = SimFile { len, filemark, at: 0, past_end: false };
        let mut c = FileCounter::new();
        for steps in 1.. {
            match c.next_step().unwrap() {
                CountStep::Space(k) => {
                    assert!(!f.past_end, "spacing from past the end");
                    assert!(k > 0);
                    let p = if f.at + k <= f.len {
                        f.at += k;
                        Probe::Moved
                    } else {
                        f.past_end = true;
                        if f.filemark { Probe::Filemark } else { Probe::EndOfData }
                    };
                    c.record(p).unwrap();
                }
                CountStep::Return { blocks, crossed_filemark } => {
                    assert!(f.past_end);
                    assert_eq!(crossed_filemark, f.filemark);
                    f.past_end = false;
                    f.at = blocks;
                }
                CountStep::Done { blocks, filemark } => {
                    assert!(f.past_end, "done, but not past the end");
                    return (blocks, filemark, steps);
                }
            }
        }
        unreachable!()
    }
}

#[test]
fn file_counter_finds_every_small_count_and_leaves_the_tape_past_the_end() {
    for len in 0..300 {
        for filemark in [true, false] {
            let (n, fm, _) = SimFile::count(len, filemark);
            assert_eq!((n, fm), (len, filemark), "file of {len}");
        }
    }
}

#[test]
fn file_counter_counts_large_files_within_its_step_bound() {
    for len in [1 << 20, (1 << 30) + 12345, 3 * MAX_SPACE + 7, 40_000_000_000] {
        let (n, _, steps) = SimFile::count(len, true);
        assert_eq!(n, len);
        assert!(steps <= MAX_COUNT_STEPS, "{steps} steps for {len}");
    }
}

#[test]
fn file_counter_rejects_contradictions() {
    let mut c = FileCounter::new();
    assert_eq!(c.next_step(), Ok(CountStep::Space(1)));
    c.record(Probe::Moved).unwrap();
    assert_eq!(c.next_step(), Ok(CountStep::Space(2)));
    c.record(Probe::Filemark).unwrap();
    assert_eq!(c.next_step(), Ok(CountStep::Return { blocks: 1, crossed_filemark: true }));
    assert_eq!(c.next_step(), Ok(CountStep::Space(1)));
    assert_eq!(c.record(Probe::EndOfData), Err(Inconsistent));
}

#[test]
fn file_counter_gives_up_on_a_file_larger_than_any_tape() {
    let mut c = FileCounter::new();
    let mut spaced = 0;
    loop {
        match c.next_step() {
            Ok(CountStep::Space(k)) => {
                spaced += k;
                c.record(Probe::Moved).unwrap();
            }
            Ok(other) => panic!("{other:?}"),
            Err(Inconsistent) => break,
        }
    }
    assert!(spaced >= MAX_FILE_RECORDS);
}

#[test]
fn st_nodes_are_told_by_their_minor() {
    let dev = |major: u32, minor: u32| libc::makedev(major, minor);
    assert_eq!(st_rewinding(dev(9, 0)), Some(true));
    assert_eq!(st_rewinding(dev(9, 128)), Some(false));
    assert_eq!(st_rewinding(dev(9, 128 + 3)), Some(false));
    assert_eq!(st_rewinding(dev(1, 3)), None);
}
