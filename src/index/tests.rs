//! Tests of the index file: round trips and searches against a linear filter, merges, damage
//! of every kind, and the decoders fed arbitrary bytes.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::select;

use super::test_trees::kernel_like;
use super::writer::write_sorted_in;
use super::*;
use crate::catalog::StoredObject;
use crate::format::records::ObjectKind;

/// Raw bytes after which test writers end a block: a few entries each, so that a few hundred
/// entries span many blocks and runs of one path cross block boundaries.
const SMALL_BLOCK: usize = 200;
/// Session id of the files tests write.
const SESSION: u64 = 7;

// ---------------------------------------------------------------------------------------------
// Entries: random (proptest) and realistic (a seeded generator)

const KINDS: [ObjectKind; 9] = [
    ObjectKind::File,
    ObjectKind::Dir,
    ObjectKind::Symlink,
    ObjectKind::Hardlink,
    ObjectKind::Fifo,
    ObjectKind::CharDevice,
    ObjectKind::BlockDevice,
    ObjectKind::Socket,
    ObjectKind::Volume,
];

/// Paths from a few shared components (so prefixes and blocks share paths) and some bytes.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let component = prop_oneof![
        6 => select(&["a", "b", "dir", "dir2", "src", "x.c", "x.h", "ab", "a-b", "a.b", "\u{e9}"][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        2 => proptest::collection::vec(1u8..=255, 1..12),
    ];
    prop_oneof![
        50 => proptest::collection::vec(component, 1..5).prop_map(|cs| cs.join(&b'/')),
        1 => proptest::collection::vec(1u8..=255, MAX_PATH_LEN - 2..=MAX_PATH_LEN),
    ]
}

/// A number small (short varints, equal neighbours) or anything (long varints, wrapping).
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, 0u64..100_000, any::<u64>()]
}

fn object(path: Vec<u8>) -> impl Strategy<Value = StoredObject> {
    let a = (number(), select(&KINDS[..]), number(), any::<i64>(), any::<u32>(), 0u32..3, 0u32..3);
    let b = (number(), number(), any::<u16>(), 0u32..4, number(), any::<[u8; 32]>());
    (a, b).prop_map(move |((id, kind, size, mtime, mode, uid, gid), b)| {
        let (segment_offset, length, stream, part, position, digest) = b;
        StoredObject {
            id,
            path: path.clone(),
            kind,
            size,
            mtime,
            mode,
            uid,
            gid,
            segment_offset,
            length,
            stream,
            part,
            position,
            digest,
        }
    })
}

/// The segments of one large file: one path, several pieces.
fn segments() -> impl Strategy<Value = Vec<Entry>> {
    (path().prop_flat_map(object), 2u64..6, 1u64..1 << 40).prop_map(|(o, count, piece)| {
        (0..count)
            .map(|i| {
                let segment_offset = i * piece;
                Entry::Object(StoredObject {
                    segment_offset,
                    length: piece,
                    size: count * piece,
                    ..o.clone()
                })
            })
            .collect()
    })
}

/// Up to `max` groups of entries: objects, kept paths, segments of one file.
fn entries(max: usize) -> impl Strategy<Value = Vec<Entry>> {
    let group = prop_oneof![
        4 => path().prop_flat_map(object).prop_map(|o| vec![Entry::Object(o)]),
        2 => path().prop_map(|p| vec![Entry::Kept(p)]),
        1 => segments(),
    ];
    proptest::collection::vec(group, 0..max).prop_map(|groups| groups.concat())
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(Entry::order);
    entries
}

fn write_small(path: &Path, entries: Vec<Entry>) -> IndexSummary {
    let out = IndexWriter::with_block_target(path, SESSION, SMALL_BLOCK).unwrap();
    write_sorted_in(out, entries).unwrap()
}

fn read_all(f: &IndexFile) -> Vec<Entry> {
    f.iter().collect::<Result<_, _>>().unwrap()
}

fn linear_prefix(sorted: &[Entry], prefix: &[u8]) -> Vec<Entry> {
    sorted.iter().filter(|e| e.path().starts_with(prefix)).cloned().collect()
}

fn linear_find(sorted: &[Entry], path: &[u8]) -> Vec<Entry> {
    sorted.iter().filter(|e| e.path() == path).cloned().collect()
}

/// Paths to search for: every entry's path and its directories, every prefix of every block's
/// first path (the block boundaries), and `extra`.
fn probes(f: &IndexFile, sorted: &[Entry], extra: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut probes = extra;
    for e in sorted {
        let p = e.path();
        probes.push(p.to_vec());
        probes.extend(p.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(i, _)| p[..=i].to_vec()));
    }
    for b in f.directory() {
        probes.extend((0..=b.first_path.len()).map(|n| b.first_path[..n].to_vec()));
        let mut past = b.first_path.clone();
        past.push(0xff);
        probes.push(past);
    }
    probes.sort();
    probes.dedup();
    probes
}

// ---------------------------------------------------------------------------------------------
// Round trips, searches, merges

proptest! {
    #[test]
    fn written_entries_read_back_in_order_and_are_found(
        entries in entries(60),
        misses in proptest::collection::vec(path(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.idx");
        let expected = sorted(entries.clone());
        let summary = write_small(&path, entries);
        let f = IndexFile::open(&path).unwrap();
        prop_assert_eq!(read_all(&f), expected.clone());
        prop_assert_eq!((f.session(), f.entries(), f.crc()), (SESSION, expected.len() as u64, summary.crc));
        let objects = expected.iter().filter(|e| e.is_whole_object()).count() as u64;
        prop_assert_eq!((summary.entries, summary.objects, f.objects()), (expected.len() as u64, objects, objects));
        prop_assert_eq!(summary.bytes, fs::metadata(&path).unwrap().len());
        for p in probes(&f, &expected, misses) {
            prop_assert_eq!(f.find(&p).unwrap(), linear_find(&expected, &p), "find {:?}", p);
            let found: Vec<Entry> = f.prefix(&p).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(found, linear_prefix(&expected, &p), "prefix {:?}", p);
        }
    }

    #[test]
    fn a_merge_of_runs_equals_the_sorted_union(runs in proptest::collection::vec(entries(25), 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<IndexFile> = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let path = dir.path().join(format!("run{i}.idx"));
                write_small(&path, run.clone());
                IndexFile::open(&path).unwrap()
            })
            .collect();
        let out_path = dir.path().join("merged.idx");
        let out = IndexWriter::with_block_target(&out_path, SESSION, SMALL_BLOCK).unwrap();
        let summary = merge(files.iter().map(IndexFile::iter).collect(), out).unwrap();
        let expected = sorted(runs.concat());
        let merged = IndexFile::open(&out_path).unwrap();
        prop_assert_eq!(summary.entries, expected.len() as u64);
        prop_assert_eq!(read_all(&merged), expected);
    }
}

#[test]
fn full_size_blocks_hold_a_kernel_tree_and_find_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.idx");
    let entries = kernel_like(40_000, 1);
    let expected = sorted(entries.clone());
    write_sorted(&path, SESSION, entries).unwrap();
    let f = IndexFile::open(&path).unwrap();
    assert!(f.directory().len() > 10, "{} blocks", f.directory().len());
    assert!(f.directory().iter().all(|b| b.raw_len as usize <= BLOCK_TARGET_RAW + MAX_ENTRY_RAW));
    assert_eq!(read_all(&f), expected);
    for e in expected.iter().step_by(97) {
        assert_eq!(f.find(e.path()).unwrap(), linear_find(&expected, e.path()));
    }
    // A top directory of the tree, such as "src/linux-6.0/drivers/".
    let middle = expected[expected.len() / 2].path();
    let top = &middle[..=middle.iter().enumerate().filter(|(_, b)| **b == b'/').nth(2).unwrap().0];
    let under: Vec<Entry> = f.prefix(top).collect::<Result<_, _>>().unwrap();
    assert!(under.len() > 100, "{} entries under {}", under.len(), String::from_utf8_lossy(top));
    assert_eq!(under, linear_prefix(&expected, top));
}

#[test]
fn merge_reads_any_sorted_iterators_and_keeps_equal_entries_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let kept = |p: &str| Entry::Kept(p.as_bytes().to_vec());
    let inputs = vec![
        vec![Ok(kept("a")), Ok(kept("c"))].into_iter(),
        vec![].into_iter(),
        vec![Ok(kept("b")), Ok(kept("c")), Ok(kept("d"))].into_iter(),
    ];
    let path = dir.path().join("m.idx");
    let summary = merge(inputs, IndexWriter::create(&path, SESSION).unwrap()).unwrap();
    assert_eq!((summary.entries, summary.objects), (5, 0));
    let f = IndexFile::open(&path).unwrap();
    assert_eq!(read_all(&f), ["a", "b", "c", "c", "d"].map(kept));
}

#[test]
fn a_failing_or_unsorted_merge_input_fails_the_merge_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.idx");
    let kept = |p: &str| Entry::Kept(p.as_bytes().to_vec());
    let damaged = IndexError::Corrupt { file: "run.idx".into(), offset: 64, what: "test".into() };
    let failing = vec![vec![Ok(kept("a")), Err(damaged)].into_iter()];
    let err = merge(failing, IndexWriter::create(&path, SESSION).unwrap()).unwrap_err();
    assert!(err.is_damage(), "{err}");
    let unsorted = vec![vec![Ok(kept("b")), Ok(kept("a"))].into_iter()];
    let err = merge(unsorted, IndexWriter::create(&path, SESSION).unwrap()).unwrap_err();
    assert!(matches!(err, IndexError::OutOfOrder { .. }), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "a file or a .tmp was left");
}

// ---------------------------------------------------------------------------------------------
// The writer's rules

#[test]
fn an_empty_index_is_a_header_a_footer_and_nothing_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.idx");
    let summary = write_sorted(&path, SESSION, Vec::new()).unwrap();
    assert_eq!(summary.bytes, 2 * FRAME_LEN as u64);
    assert_eq!((summary.entries, summary.objects), (0, 0));
    let f = IndexFile::open(&path).unwrap();
    assert_eq!((f.entries(), f.objects(), f.session()), (0, 0, SESSION));
    assert_eq!(f.iter().count(), 0);
    assert_eq!(f.prefix(b"").count(), 0);
    assert!(f.find(b"a").unwrap().is_empty());
}

#[test]
fn an_out_of_order_push_is_refused_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.idx");
    let mut w = IndexWriter::create(&path, SESSION).unwrap();
    let object = |path: &str, segment_offset: u64| {
        Entry::Object(StoredObject {
            id: 1,
            path: path.as_bytes().to_vec(),
            kind: ObjectKind::File,
            size: 10,
            mtime: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            segment_offset,
            length: 5,
            stream: 0,
            part: 0,
            position: 0,
            digest: [1; 32],
        })
    };
    w.push(&object("b", 5)).unwrap();
    for refused in [Entry::Kept(b"a".to_vec()), Entry::Kept(b"b".to_vec()), object("b", 0)] {
        let err = w.push(&refused).unwrap_err();
        assert!(matches!(err, IndexError::OutOfOrder { .. }), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
    }
    w.push(&object("b", 5)).unwrap();
    w.push(&Entry::Kept(b"c".to_vec())).unwrap();
    let summary = w.finish().unwrap();
    assert_eq!((summary.entries, summary.objects), (3, 0));
    let f = IndexFile::open(&path).unwrap();
    assert_eq!(read_all(&f), [object("b", 5), object("b", 5), Entry::Kept(b"c".to_vec())]);
    assert!(!dir.path().join("o.idx.tmp").exists());
}

#[test]
fn paths_the_format_cannot_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.idx");
    let mut w = IndexWriter::create(&path, SESSION).unwrap();
    for bad in [Vec::new(), b"a\0b".to_vec(), vec![b'a'; MAX_PATH_LEN + 1]] {
        let err = w.push(&Entry::Kept(bad)).unwrap_err();
        assert!(matches!(err, IndexError::Invalid { .. }), "{err}");
    }
    w.push(&Entry::Kept(vec![b'a'; MAX_PATH_LEN])).unwrap();
    assert_eq!(w.finish().unwrap().entries, 1);
    assert_eq!(read_all(&IndexFile::open(&path).unwrap()), [Entry::Kept(vec![b'a'; MAX_PATH_LEN])]);
}

#[test]
fn a_dropped_writer_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::create(&dir.path().join("d.idx"), SESSION).unwrap();
    w.push(&Entry::Kept(b"a".to_vec())).unwrap();
    assert!(dir.path().join("d.idx.tmp").exists());
    drop(w);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Damage

/// A small file of many blocks, its entries in order, and its bytes.
fn small_file(dir: &Path) -> (Vec<Entry>, Vec<u8>) {
    let path = dir.join("good.idx");
    let mut entries = kernel_like(60, 3);
    entries.push(Entry::Kept(b"src/linux-6.0/kept".to_vec()));
    let expected = sorted(entries.clone());
    write_small(&path, entries);
    (expected, fs::read(&path).unwrap())
}

/// Checks that the file at `path` (damaged) gives an error, from `open` or while reading it,
/// and that whatever it gives before the error, and whatever a search gives, is right.
fn assert_refused(path: &Path, expected: &[Entry], what: &str) {
    let f = match IndexFile::open(path) {
        Err(e) => {
            assert!(e.is_damage(), "{what}: {e}");
            return;
        }
        Ok(f) => f,
    };
    let mut read = Vec::new();
    let mut failed = false;
    for e in f.iter() {
        match e {
            Ok(e) => read.push(e),
            Err(e) => {
                assert!(e.is_damage(), "{what}: {e}");
                failed = true;
            }
        }
    }
    assert!(failed, "{what}: read without an error");
    assert_eq!(read, expected[..read.len()], "{what}: wrong entries before the error");
    for e in expected.iter().step_by(7) {
        if let Ok(found) = f.find(e.path()) {
            assert_eq!(found, linear_find(expected, e.path()), "{what}: wrong entries found");
        }
    }
}

#[test]
fn every_flipped_byte_is_an_error_never_a_wrong_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, bytes) = small_file(dir.path());
    let bad = dir.path().join("bad.idx");
    let blocks = IndexFile::open(&dir.path().join("good.idx")).unwrap().directory().len();
    assert!(blocks > 5, "{blocks} blocks");
    // Every byte of header, blocks, directory and footer, with one bit or all of them flipped.
    for at in 0..bytes.len() {
        for mask in [1u8 << (at % 8), 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            fs::write(&bad, &damaged).unwrap();
            assert_refused(&bad, &expected, &format!("byte {at} ^ {mask:#x}"));
        }
    }
}

#[test]
fn flipped_bytes_of_full_size_blocks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.idx");
    let entries = kernel_like(5_000, 4);
    let expected = sorted(entries.clone());
    write_sorted(&path, SESSION, entries).unwrap();
    let bytes = fs::read(&path).unwrap();
    let bad = dir.path().join("bad.idx");
    for at in (0..bytes.len()).step_by(bytes.len() / 300).chain(bytes.len() - 200..bytes.len()) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        fs::write(&bad, &damaged).unwrap();
        assert_refused(&bad, &expected, &format!("byte {at}"));
    }
}

#[test]
fn truncated_or_extended_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, bytes) = small_file(dir.path());
    let bad = dir.path().join("bad.idx");
    let n = bytes.len();
    for len in [0, 1, 63, 64, 65, 127, 128, n / 2, n - 65, n - 64, n - 63, n - 1] {
        fs::write(&bad, &bytes[..len]).unwrap();
        assert_refused(&bad, &expected, &format!("cut to {len} bytes"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    fs::write(&bad, &longer).unwrap();
    assert_refused(&bad, &expected, "one byte added");
}

#[test]
fn a_newer_version_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = small_file(dir.path());
    let bad = dir.path().join("new.idx");
    for frame_at in [0, bytes.len() - FRAME_LEN] {
        let mut newer = bytes.clone();
        let frame = &mut newer[frame_at..frame_at + FRAME_LEN];
        frame[4..6].copy_from_slice(&(INDEX_VERSION + 1).to_le_bytes());
        let crc = crc32fast::hash(&frame[..60]);
        frame[60..].copy_from_slice(&crc.to_le_bytes());
        fs::write(&bad, &newer).unwrap();
        let err = IndexFile::open(&bad).unwrap_err();
        assert!(matches!(err, IndexError::NewerVersion { version: 2, .. }), "{err}");
        assert!(err.to_string().contains("written by a newer coffer; upgrade"), "{err}");
    }
}

#[test]
fn a_file_of_another_kind_is_not_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other");
    fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = IndexFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a coffer index"), "{err}");
    let err = IndexFile::open(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, IndexError::Io { op: "open", .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Decoders on arbitrary bytes

/// A valid block (raw and stored) and directory to mutate.
struct Samples {
    raw: Vec<u8>,
    stored: Vec<u8>,
    info: BlockInfo,
    directory: Vec<u8>,
    footer: Footer,
}

fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut entries = sorted(kernel_like(40, 5));
        entries.insert(3, Entry::Kept(entries[3].path().to_vec()));
        let (stored, info) = encode_block(&entries, FRAME_LEN as u64);
        let mut raw = vec![0; info.raw_len as usize];
        lz4_flex::block::decompress_into(&stored, &mut raw).unwrap();
        assert_eq!(decode_block(&stored, &info).unwrap(), entries);
        let mut directory = Vec::new();
        encode_directory_record(&info, &mut directory);
        let (_, second) = encode_block(&entries[20..], FRAME_LEN as u64 + u64::from(info.stored_len));
        encode_directory_record(&second, &mut directory);
        let footer = Footer {
            session: SESSION,
            directory_offset: second.offset + u64::from(second.stored_len),
            directory_len: directory.len() as u64,
            blocks: 2,
            entries: u64::from(info.entries + second.entries),
            objects: u64::from(info.objects + second.objects),
            directory_crc: crc32fast::hash(&directory),
        };
        assert_eq!(decode_directory(&directory, &footer).unwrap(), [info.clone(), second]);
        Samples { raw, stored, info, directory, footer }
    })
}

/// Applies `(index, byte)` changes to a copy of `bytes`.
fn mutated(bytes: &[u8], changes: &[(prop::sample::Index, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (i, b) in changes {
        let i = i.index(out.len());
        out[i] = *b;
    }
    out
}

fn changes() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn header_and_footer_decoders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        fields in proptest::collection::vec(any::<u8>(), 56),
        file_len in prop_oneof![any::<u64>(), 0u64..4096],
    ) {
        let _ = Header::decode(&bytes);
        if let Ok(f) = Footer::decode(&bytes) {
            let _ = f.check_layout(&Header { session: f.session }, file_len);
        }
        // Past the magic, version and CRC: the fields' own checks.
        for magic in [HEADER_MAGIC, FOOTER_MAGIC] {
            let mut frame = [0u8; FRAME_LEN];
            frame[..4].copy_from_slice(&magic);
            frame[4..6].copy_from_slice(&INDEX_VERSION.to_le_bytes());
            frame[8..60].copy_from_slice(&fields[4..]);
            let crc = crc32fast::hash(&frame[..60]);
            frame[60..].copy_from_slice(&crc.to_le_bytes());
            let _ = Header::decode(&frame);
            if let Ok(f) = Footer::decode(&frame) {
                let _ = f.check_layout(&Header { session: f.session }, file_len);
            }
        }
    }

    #[test]
    fn the_directory_decoder_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        blocks in 0u64..20,
        changes in changes(),
    ) {
        let s = samples();
        let footer = Footer {
            directory_len: bytes.len() as u64,
            directory_crc: crc32fast::hash(&bytes),
            blocks,
            ..s.footer
        };
        let _ = decode_directory(&bytes, &footer);
        // A valid directory with a few bytes changed, its CRC made right.
        let changed = mutated(&s.directory, &changes);
        let footer = Footer { directory_crc: crc32fast::hash(&changed), ..s.footer };
        if let Ok(blocks) = decode_directory(&changed, &footer) {
            prop_assert_eq!(blocks.len(), 2);
        }
    }

    #[test]
    fn the_block_decoders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        count in prop_oneof![0u32..50, any::<u32>()],
        raw_len in prop_oneof![0u32..2000, 0u32..(MAX_BLOCK_RAW as u32 + 10)],
        changes in changes(),
    ) {
        let s = samples();
        let _ = decode_block_raw(&bytes, count);
        let info = BlockInfo {
            stored_len: bytes.len() as u32,
            raw_len,
            entries: count,
            crc: crc32fast::hash(&bytes),
            ..s.info.clone()
        };
        let _ = decode_block(&bytes, &info);
        // A valid block's raw bytes, and its stored bytes (CRC made right), with a few changed.
        if let Ok(entries) = decode_block_raw(&mutated(&s.raw, &changes), s.info.entries) {
            prop_assert_eq!(entries.len(), s.info.entries as usize);
        }
        let stored = mutated(&s.stored, &changes);
        let info = BlockInfo { crc: crc32fast::hash(&stored), ..s.info.clone() };
        let _ = decode_block(&stored, &info);
    }
}

// ---------------------------------------------------------------------------------------------
// Size

/// Bytes per entry of an index of `n` kernel-like entries, and of the postcard payloads of the
/// journal records the same objects take (without the journal's framing).
fn bytes_per_entry(n: usize) -> (f64, f64) {
    let entries = kernel_like(n, 2);
    let journal: usize = entries
        .iter()
        .map(|e| match e {
            Entry::Object(o) => {
                let record = crate::catalog::ObjectStored { session: SESSION, object: o.clone() };
                postcard::to_stdvec(&record).unwrap().len()
            }
            Entry::Kept(_) => 0,
        })
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let summary = write_sorted(&dir.path().join("s.idx"), SESSION, entries).unwrap();
    (summary.bytes as f64 / n as f64, journal as f64 / n as f64)
}

#[test]
fn a_kernel_like_session_takes_under_60_bytes_an_entry() {
    let (index, journal) = bytes_per_entry(100_000);
    assert!(index < 60.0, "{index:.1} bytes an entry (journal payloads: {journal:.1})");
}

#[test]
#[ignore = "a measurement: cargo test --release --lib index::tests::bytes_per -- --ignored --nocapture"]
fn bytes_per_entry_of_a_million_kernel_like_entries() {
    let (index, journal) = bytes_per_entry(1_000_000);
    println!("1M kernel-like entries: index {index:.2} bytes an entry, journal payloads {journal:.2}");
}
