//! Cartridge stores: the index over the file, cuts, torn tails, reopening.

use std::fs;
use std::io::Write;

use proptest::prelude::*;

use super::*;

/// Record `i` of the test tapes: its length and bytes vary with `i`.
fn record(i: usize) -> Vec<u8> {
    (0..(i * 37) % 3000).map(|k| (k + i) as u8).collect()
}

/// Writes `n` records with a filemark after every tenth, through `tape`.
fn fill(tape: &mut Tape, n: usize) {
    for i in 0..n {
        tape.write_records(tape.len(), &[&record(i)]).unwrap();
        if i % 10 == 9 {
            tape.write_filemarks(tape.len(), 1).unwrap();
        }
    }
    tape.sync().unwrap();
}

fn index(t: &Tape) -> Vec<(Option<Object>, u64, u64)> {
    (0..=t.len()).map(|k| (t.object(k), t.bytes_before(k), t.filemarks_before(k))).collect()
}

#[test]
fn a_file_cartridge_with_many_records_reopens_with_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let mut t = store.load("CFR0001L8").unwrap();
    fill(&mut t, 2000);
    assert_eq!(t.len(), 2200);
    let before = index(&t);
    drop(t);
    let t = store.load("CFR0001L8").unwrap();
    assert_eq!(index(&t), before);
    assert_eq!(t.filemark(0), Some(10));
    assert_eq!(t.filemark(199), Some(2199));
    assert_eq!(t.filemark(200), None);
    // Record 1234 is object 1234 + 123 filemarks before it.
    let k = 1234 + 123;
    let Some(Object::Record(len)) = t.object(k) else { panic!("{:?}", t.object(k)) };
    let mut buf = vec![0u8; len as usize];
    t.read_record(k, &mut buf).unwrap();
    assert_eq!(buf, record(1234));
    let file_len = fs::metadata(store.path("CFR0001L8")).unwrap().len();
    assert_eq!(file_len, 8 + 5 * 2200 + t.bytes_before(t.len()));
}

#[test]
fn a_write_in_the_middle_cuts_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let mut t = store.load("CFR0002L8").unwrap();
    fill(&mut t, 30);
    assert_eq!((t.len(), t.filemarks_before(t.len())), (33, 3));
    // Overwrite object 12 (the second record of the second file).
    t.write_records(12, &[b"new"]).unwrap();
    t.sync().unwrap();
    assert_eq!((t.len(), t.filemarks_before(t.len())), (13, 1));
    assert_eq!(t.object(12), Some(Object::Record(3)));
    assert_eq!(t.object(13), None);
    let expected = 8 + 5 * 13 + t.bytes_before(13);
    assert_eq!(fs::metadata(store.path("CFR0002L8")).unwrap().len(), expected);
    drop(t);
    let mut t = store.load("CFR0002L8").unwrap();
    assert_eq!(t.len(), 13);
    let mut buf = [0u8; 3];
    t.read_record(12, &mut buf).unwrap();
    assert_eq!(&buf, b"new");
    // Filemarks too cut what follows; so does a cut at the end of data (nothing to cut).
    t.write_filemarks(5, 2).unwrap();
    assert_eq!((t.len(), t.filemark(0), t.filemark(1)), (7, Some(5), Some(6)));
    t.truncate(9).unwrap();
    assert_eq!(t.len(), 7);
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let path = store.path("CFR0003L8");
    let mut t = store.load("CFR0003L8").unwrap();
    fill(&mut t, 10);
    let whole = fs::metadata(&path).unwrap().len();
    drop(t);
    // A record header promising 1000 bytes, of which 10 arrived.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0, 0xE8, 0x03, 0, 0]).unwrap();
    f.write_all(&[9; 10]).unwrap();
    drop(f);
    let t = store.load("CFR0003L8").unwrap();
    assert_eq!(t.len(), 11);
    assert_eq!(fs::metadata(&path).unwrap().len(), whole);
    drop(t);
    // A header cut after three bytes.
    fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0, 1, 0]).unwrap();
    assert_eq!(store.load("CFR0003L8").unwrap().len(), 11);
    // Six bytes short: the closing filemark and the last byte of the record before it go.
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(whole - 6).unwrap();
    let t = store.load("CFR0003L8").unwrap();
    assert_eq!((t.len(), t.filemarks_before(9)), (9, 0));
    assert_eq!(t.object(8), Some(Object::Record(8 * 37)));
}

#[test]
fn bad_magic_or_a_bad_object_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    fs::write(store.path("BAD001L8"), b"NOTATAPE and more").unwrap();
    let e = store.load("BAD001L8").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("BAD001L8.tape") && e.to_string().contains("magic"), "{e}");
    fs::write(store.path("BAD002L8"), b"CFRSIM01\x07\0\0\0\0").unwrap();
    let e = store.load("BAD002L8").unwrap_err();
    assert!(e.to_string().contains("BAD002L8.tape") && e.to_string().contains("tag 7"), "{e}");
    // A file shorter than the magic that is not its start is not a cartridge either.
    fs::write(store.path("BAD003L8"), b"XY").unwrap();
    assert_eq!(store.load("BAD003L8").unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    // A magic cut short (a crash while creating the file) is a blank cartridge.
    fs::write(store.path("NEW001L8"), b"CFRS").unwrap();
    assert!(store.load("NEW001L8").unwrap().is_empty());
}

#[test]
fn memory_holds_the_index_not_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path()).unwrap();
    let mut t = store.load("CFR0004L8").unwrap();
    let block = vec![5u8; 64 << 10];
    for _ in 0..32 {
        t.write_records(t.len(), &[&block[..]; 8]).unwrap();
    }
    t.write_filemarks(t.len(), 1).unwrap();
    let data = t.bytes_before(t.len());
    assert_eq!(data, 256 * (64 << 10));
    // Eight bytes an object (and a filemark's number), with room to grow.
    assert!(t.index_bytes() <= 32 * (t.len() + 2), "{} bytes of index", t.index_bytes());
    assert!((t.index_bytes() as u64) * 1000 < data);
}

#[test]
fn a_memory_store_keeps_tapes_between_loads_and_clones_share_nothing() {
    let mut store = MemoryStore::default();
    let mut t = store.load("CFR0001L8").unwrap();
    fill(&mut t, 5);
    let copy = store.clone();
    t.write_records(0, &[b"x"]).unwrap();
    assert_eq!(store.load("CFR0001L8").unwrap().len(), 1);
    assert_eq!(copy.clone().load("CFR0001L8").unwrap().len(), 5);
}

/// One step of a random session: write `n` records or filemarks at a position.
#[derive(Debug, Clone)]
enum Step {
    Records { at: usize, lens: Vec<u16> },
    Filemarks { at: usize, n: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..40, proptest::collection::vec(0u16..600, 0..4))
            .prop_map(|(at, lens)| Step::Records { at, lens }),
        (0usize..40, 0u32..3).prop_map(|(at, n)| Step::Filemarks { at, n }),
    ]
}

proptest! {
    /// Any session leaves an index that a reopen rebuilds, and any cut of the file (a crash
    /// while writing) opens as the objects that ended before the cut.
    #[test]
    fn reopen_and_any_cut_agree_with_the_live_index(steps in proptest::collection::vec(step(), 1..12),
                                                  cut in 0u64..20_000) {
        let mut store = MemoryStore::default();
        let mut t = store.load("P").unwrap();
        let mut model: Vec<Option<Vec<u8>>> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Records { at, lens } => {
                    let at = (*at).min(t.len());
                    let recs: Vec<Vec<u8>> = lens.iter().map(|&l| vec![i as u8; l as usize]).collect();
                    let refs: Vec<&[u8]> = recs.iter().map(|r| &r[..]).collect();
                    t.write_records(at, &refs).unwrap();
                    model.truncate(at);
                    model.extend(recs.into_iter().map(Some));
                }
                Step::Filemarks { at, n } => {
                    let at = (*at).min(t.len());
                    t.write_filemarks(at, *n).unwrap();
                    model.truncate(at);
                    model.extend((0..*n).map(|_| None));
                }
            }
        }
        prop_assert_eq!(t.len(), model.len());
        for (k, o) in model.iter().enumerate() {
            match o {
                None => prop_assert_eq!(t.object(k), Some(Object::Filemark)),
                Some(r) => {
                    let mut buf = vec![0u8; r.len()];
                    t.read_record(k, &mut buf).unwrap();
                    prop_assert_eq!(&buf, r);
                }
            }
        }
        let live = index(&t);
        drop(t);
        let mut bytes = store.contents("P").unwrap();
        prop_assert_eq!(index(&store.load("P").unwrap()), live.clone());
        // Cut anywhere past the magic: the whole objects before the cut remain.
        let size = bytes.len() as u64;
        let cut = 8 + cut % (size - 7);
        bytes.truncate(cut as usize);
        let whole = (0..=model.len()).rev().find(|&k| 8 + 5 * k as u64 + live[k].1 <= cut).unwrap();
        let torn = Tape::open(Box::new(MemoryMedium::new(bytes)), "torn").unwrap();
        prop_assert_eq!(torn.len(), whole);
        prop_assert_eq!(&index(&torn)[..whole], &live[..whole]);
        prop_assert_eq!(torn.bytes_before(whole), live[whole].1);
        prop_assert_eq!(torn.filemarks_before(whole), live[whole].2);
    }
}
