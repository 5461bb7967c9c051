//! Round trips, damage detection and decoder robustness of the on-media format.

use proptest::prelude::*;

use super::records::*;
use super::*;

fn meta_strategy() -> impl Strategy<Value = ObjectMeta> {
    let path = proptest::collection::vec(1u8..=255, 1..300);
    (path, 0u8..9, any::<(u32, u32, u32, i64)>(), 0u32..1_000_000_000, any::<u64>(), any::<u64>()).prop_map(
        |(path, k, (mode, uid, gid, mtime), mtime_nsec, size, rdev)| {
            let kind = [
                ObjectKind::File,
                ObjectKind::Dir,
                ObjectKind::Symlink,
                ObjectKind::Hardlink,
                ObjectKind::Fifo,
                ObjectKind::CharDevice,
                ObjectKind::BlockDevice,
                ObjectKind::Socket,
                ObjectKind::Volume,
            ][k as usize];
            let target = Some(serde_bytes::ByteBuf::from(path.iter().rev().copied().collect::<Vec<_>>()));
            ObjectMeta {
                symlink: if kind == ObjectKind::Symlink { target.clone() } else { None },
                hardlink: if kind == ObjectKind::Hardlink { target } else { None },
                size: if kind.has_data() { size } else { 0 },
                path,
                kind,
                mode,
                uid,
                gid,
                mtime,
                mtime_nsec,
                rdev,
            }
        },
    )
}

fn label() -> VolumeLabel {
    VolumeLabel {
        format_version: FORMAT_VERSION,
        medium: *b"0123456789abcdef",
        barcode: "HIL004L6".into(),
        pool: "default".into(),
        block_size: 256 << 10,
        created: 1_790_000_000,
        host: "coffer-1".into(),
    }
}

fn session(part: u32) -> SessionHeader {
    SessionHeader {
        session_id: 7,
        job_id: 12,
        host: "coffer-1".into(),
        started: 1_790_000_100,
        source: "/srv/data".into(),
        part,
        stream: 1,
        streams: 2,
        continues: (part > 0).then(|| PartRef { medium: [9; 16], part: part - 1 }),
        kind: SessionKind::Incremental { base: 5 },
        source_key: [0xab; 32],
    }
}

/// Writes records back to back with consecutive sequence numbers.
struct TestWriter {
    out: Vec<u8>,
    n: usize,
    seq: u64,
}

impl TestWriter {
    fn meta<T: Payload>(&mut self, id: u64, p: &T) {
        self.n += encode_meta(id, self.seq, p, &mut self.out[self.n..]).unwrap();
        self.seq += 1;
    }
    fn bytes(&mut self, id: u64, data: &[u8], pack: bool) -> DataEncoding {
        let (l, enc) = if pack {
            encode_pack(id, self.seq, data, &mut self.out[self.n..]).unwrap()
        } else {
            encode_data(id, self.seq, 0, data, true, &mut self.out[self.n..]).unwrap()
        };
        self.n += l;
        self.seq += 1;
        enc
    }
}

/// One record of every kind, encoded back to back: a small but complete session.
fn sample_stream() -> Vec<u8> {
    let mut w = TestWriter { out: vec![0u8; 1 << 20], n: 0, seq: 0 };
    let meta = ObjectMeta {
        path: b"etc/hosts".to_vec(),
        kind: ObjectKind::File,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_nsec: 5,
        size: 3000,
        rdev: 0,
        symlink: None,
        hardlink: None,
    };
    let data: Vec<u8> = b"127.0.0.1 localhost\n".iter().copied().cycle().take(3000).collect();
    w.meta(0, &label());
    w.meta(0, &session(0));
    w.meta(1, &meta);
    w.meta(1, &SegmentHeader { object_id: 1, offset: 0, size: 3000, index: 0, count: 1 });
    assert_eq!(w.bytes(1, &data, false), DataEncoding::Lz4);
    w.meta(1, &ObjectEnd { length: 3000, digest: *blake3::hash(&data).as_bytes() });
    let mut pack_buf = vec![0u8; 4096];
    let mut pack = PackBuilder::new(&mut pack_buf[..]);
    let small = PackedEntry {
        object_id: 2,
        meta: ObjectMeta { path: b"etc/motd".to_vec(), size: 4, ..meta.clone() },
        length: 4,
        digest: *blake3::hash(b"hi!\n").as_bytes(),
    };
    assert!(pack.push(&small, b"hi!\n").unwrap());
    let raw = pack.bytes().to_vec();
    w.bytes(2, &raw, true);
    let entry = IndexEntry {
        object_id: 1,
        path: b"etc/hosts".to_vec(),
        kind: ObjectKind::File,
        size: 3000,
        mtime: 1_700_000_000,
        mode: 0o100644,
        uid: 1000,
        gid: 100,
        segment_offset: 0,
        length: 3000,
        stream: 1,
        part: 0,
        position: 200,
    };
    let kept = Kept { paths: vec![b"etc/passwd".to_vec().into(), b"etc/group".to_vec().into()] };
    let n = encode_kept(w.seq, &kept, &mut w.out[w.n..]).unwrap();
    w.n += n;
    w.seq += 1;
    let n = encode_index(w.seq, &Index { entries: vec![entry] }, &mut w.out[w.n..]).unwrap();
    w.n += n;
    w.seq += 1;
    let records = w.seq;
    w.meta(
        0,
        &Continuation { session_id: 7, part: 0, next_part: 1, next_medium: Some("HIL005L6".into()), records },
    );
    let records = w.seq;
    w.meta(
        0,
        &Trailer {
            session_id: 7,
            part: 0,
            objects: 2,
            records,
            raw_bytes: 3004,
            stored_bytes: 100,
            ended: 1_790_000_200,
            status: SessionStatus::Complete,
            index_records: 1,
            kept_records: 1,
        },
    );
    w.out.truncate(w.n);
    w.out
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Kind>, FormatError> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (rec, used) = decode_record(&bytes[at..], at as u64)?;
        if let Body::Pack(p) = rec.body {
            let mut out = vec![0u8; rec.header.raw_len as usize];
            let raw = unpack(&rec.header, p, &mut out, at as u64)?;
            for e in PackEntries::new(raw, at as u64) {
                e?;
            }
        }
        kinds.push(rec.header.kind);
        at += used;
    }
    Ok(kinds)
}

#[test]
fn sample_stream_round_trips_every_kind() {
    let bytes = sample_stream();
    let kinds = decode_all(&bytes).unwrap();
    assert_eq!(kinds.len(), 11);
    for k in 1..=11 {
        assert!(kinds.contains(&Kind::from_u8(k).unwrap()), "kind {k} missing");
    }
    // The same stream through the embedded-io reader, with positions.
    let mut reader = RecordReader::new(&bytes[..], 0);
    let mut buf = vec![0u8; 1 << 20];
    let mut seqs = Vec::new();
    while let Some((rec, _at)) = reader.next(&mut buf).unwrap() {
        seqs.push(rec.header.seq);
    }
    assert_eq!(seqs, (0..11).collect::<Vec<_>>());
    assert_eq!(reader.position(), bytes.len() as u64);
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = sample_stream();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(decode_all(&damaged).is_err(), "flip of bit {bit} went unnoticed");
    }
}

#[test]
fn truncation_is_reported_with_its_offset() {
    let bytes = sample_stream();
    let first = decode_record(&bytes, 0).unwrap().1;
    for cut in [first + 1, first + HEADER_LEN, first + HEADER_LEN + 3] {
        let mut reader = RecordReader::new(&bytes[..cut], 0);
        let mut buf = vec![0u8; 1 << 16];
        assert!(reader.next(&mut buf).unwrap().is_some());
        match reader.next(&mut buf) {
            Err(ReadError::Format(FormatError::Truncated { offset, .. })) => {
                assert_eq!(offset, first as u64)
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn incompressible_data_is_stored_raw_and_compressible_shrinks() {
    let mut random = vec![0u8; 100_000];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut out = vec![0u8; compress_scratch_len(random.len())];
    let (n, enc) = encode_data(5, 1, 0, &random, false, &mut out).unwrap();
    assert_eq!(enc, DataEncoding::Raw);
    assert_eq!(n, HEADER_LEN + random.len());
    let (rec, _) = decode_record(&out[..n], 0).unwrap();
    let Body::Data(p) = rec.body else { panic!() };
    let mut scratch = vec![0u8; random.len()];
    assert_eq!(unpack(&rec.header, p, &mut scratch, 0).unwrap(), &random[..]);

    let text = b"all work and no play makes jack a dull boy ".repeat(2000);
    let mut out = vec![0u8; compress_scratch_len(text.len())];
    let (n, enc) = encode_data(5, 2, 100_000, &text, true, &mut out).unwrap();
    assert_eq!(enc, DataEncoding::Lz4);
    assert!(n < text.len() / 10);
    let (rec, _) = decode_record(&out[..n], 0).unwrap();
    assert!(rec.header.flags.contains(Flags::LAST));
    assert_eq!(rec.header.offset, 100_000);
    let Body::Data(p) = rec.body else { panic!() };
    let mut scratch = vec![0u8; text.len()];
    assert_eq!(unpack(&rec.header, p, &mut scratch, 0).unwrap(), &text[..]);

    // Compression off: the same text is stored as read, and reads back the same.
    let (n, enc) = encode_data_as(5, 3, 0, &text, true, false, &mut out).unwrap();
    assert_eq!((enc, n), (DataEncoding::Raw, HEADER_LEN + text.len()));
    let (rec, _) = decode_record(&out[..n], 0).unwrap();
    let Body::Data(p) = rec.body else { panic!() };
    assert_eq!(unpack(&rec.header, p, &mut scratch, 0).unwrap(), &text[..]);
}

#[test]
fn encoder_refuses_invalid_records_and_small_buffers() {
    let mut out = vec![0u8; 1 << 16];
    let mut bad = label();
    bad.barcode = "has space".into();
    assert!(matches!(encode_meta(0, 0, &bad, &mut out), Err(FormatError::Refused { .. })));
    bad = label();
    bad.block_size = 1000;
    assert!(matches!(encode_meta(0, 0, &bad, &mut out), Err(FormatError::Refused { .. })));
    assert!(matches!(encode_meta(0, 0, &label(), &mut out[..60]), Err(FormatError::BufferTooSmall { .. })));
    assert!(matches!(
        encode_data(1, 0, 0, &[1, 2, 3], false, &mut out[..40]),
        Err(FormatError::BufferTooSmall { .. })
    ));
    assert!(matches!(encode_data(1, 0, 0, &[], false, &mut out), Err(FormatError::Refused { .. })));
}

#[test]
fn reader_refuses_a_record_larger_than_its_buffer_before_reading_it() {
    let bytes = sample_stream();
    let mut reader = RecordReader::new(&bytes[..], 0);
    let mut buf = vec![0u8; HEADER_LEN + 4];
    assert!(matches!(reader.next(&mut buf), Err(ReadError::Format(FormatError::BufferTooSmall { .. }))));
}

/// A record as a coffer of format version 1 wrote it: `payload` postcard-encoded behind a
/// version-1 header (lists flagged RAW, as an incompressible one was).
fn v1_record<T: serde::Serialize>(kind: Kind, seq: u64, payload: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(payload).unwrap();
    let flags = if kind.compressible() { Flags::RAW } else { Flags::default() };
    let h = Header {
        version: 1,
        kind,
        flags,
        object_id: 0,
        seq,
        offset: 0,
        raw_len: body.len() as u32,
        stored_len: body.len() as u32,
    };
    let mut head = [0u8; HEADER_LEN];
    h.encode(&body, &mut head);
    [&head[..], &body].concat()
}

#[test]
fn version_1_media_read_with_the_new_fields_unknown() {
    let mut l = label();
    l.format_version = 1;
    let header = v1::SessionHeader {
        session_id: 7,
        job_id: 12,
        host: "coffer-1".into(),
        started: 1_790_000_100,
        source: "/srv/data".into(),
        part: 0,
        stream: 0,
        streams: 1,
        continues: None,
    };
    let entry = v1::IndexEntry {
        object_id: 1,
        path: b"etc/hosts".to_vec(),
        kind: ObjectKind::File,
        size: 3000,
        mtime: 1_700_000_000,
        segment_offset: 0,
        length: 3000,
        stream: 0,
        part: 0,
        position: 200,
    };
    let trailer = v1::Trailer {
        session_id: 7,
        part: 0,
        objects: 1,
        records: 3,
        raw_bytes: 3000,
        stored_bytes: 100,
        ended: 1_790_000_200,
        status: SessionStatus::Complete,
        index_records: 1,
    };
    let stream = [
        v1_record(Kind::Label, 1, &l),
        v1_record(Kind::SessionHeader, 1, &header),
        v1_record(Kind::Index, 3, &v1::Index { entries: vec![entry] }),
        v1_record(Kind::Trailer, 3, &trailer),
    ]
    .concat();
    let mut bodies = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let (rec, used) = decode_record(&stream[at..], at as u64).unwrap();
        assert_eq!(rec.header.version, 1);
        bodies.push(rec.body);
        at += used;
    }
    let [Body::Label(l), Body::SessionHeader(h), Body::Index(ix), Body::Trailer(t)] = &bodies[..] else {
        panic!("{bodies:?}");
    };
    assert_eq!(l.format_version, 1);
    assert_eq!((h.session_id, h.kind, h.source_key), (7, SessionKind::Full, [0; 32]));
    let e = &ix.entries[0];
    assert_eq!((e.path.as_slice(), e.size, e.position), (&b"etc/hosts"[..], 3000, 200));
    assert_eq!((e.mode, e.uid, e.gid), (0, 0, 0));
    assert_eq!((t.index_records, t.kept_records, t.status), (1, 0, SessionStatus::Complete));
}

#[test]
fn a_version_2_payload_behind_a_version_1_header_is_refused() {
    // Version 2's session header is longer: read as version 1 it leaves bytes over.
    let rec = v1_record(Kind::SessionHeader, 1, &session(0));
    assert!(
        matches!(decode_record(&rec, 0), Err(FormatError::Payload { .. })),
        "{:?}",
        decode_record(&rec, 0)
    );
    let kept = Kept { paths: vec![b"a".to_vec().into()] };
    let rec = v1_record(Kind::Kept, 1, &kept);
    assert_eq!(decode_record(&rec, 0).unwrap_err(), FormatError::UnknownKind { offset: 0, kind: 11 });
}

#[test]
fn an_unknown_version_is_refused_naming_the_versions_read() {
    let mut rec = sample_stream();
    for v in [0, FORMAT_VERSION + 1] {
        rec[4] = v;
        reseal(&mut rec);
        let e = decode_record(&rec, 0).unwrap_err();
        assert_eq!(e, FormatError::UnsupportedVersion { offset: 0, version: v });
        assert!(e.to_string().contains(&format!("reads versions 1 to {FORMAT_VERSION}")), "{e}");
    }
}

#[test]
fn a_renumbered_record_decodes_with_its_new_number_and_nothing_else_changed() {
    let meta = ObjectMeta {
        path: b"srv/a".to_vec(),
        kind: ObjectKind::File,
        mode: 0o100644,
        uid: 1,
        gid: 2,
        mtime: 5,
        mtime_nsec: 6,
        size: 3,
        rdev: 0,
        symlink: None,
        hardlink: None,
    };
    let mut buf = vec![0u8; HEADER_LEN + MAX_META_LEN];
    let n = encode_meta(9, 4, &meta, &mut buf).unwrap();
    let mut rec = buf[..n].to_vec();
    assert!(renumber(&mut rec, 77));
    let (r, used) = decode_record(&rec, 0).unwrap();
    assert_eq!((used, r.header.seq, r.header.object_id), (n, 77, 9));
    assert!(matches!(r.body, Body::ObjectMeta(m) if m == meta));
    // A record cut short is left alone.
    let mut short = rec[..10].to_vec();
    assert!(!renumber(&mut short, 1));
    assert_eq!(short, rec[..10]);
}

/// Re-seals a header's CRC so that damaged payloads reach the payload decoders.
fn reseal(record: &mut [u8]) {
    let stored = u32::from_le_bytes(record[36..40].try_into().unwrap()) as usize;
    let end = (HEADER_LEN + stored).min(record.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&record[..44]);
    h.update(&record[HEADER_LEN..end]);
    let crc = h.finalize();
    record[44..48].copy_from_slice(&crc.to_le_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&bytes);
        let mut buf = vec![0u8; 1024];
        let mut r = RecordReader::new(&bytes[..], 0);
        while let Ok(Some(_)) = r.next(&mut buf) {}
    }

    #[test]
    fn garbage_payload_behind_a_valid_header_never_panics(
        version in OLDEST_READ_VERSION..=FORMAT_VERSION,
        kind in 1u8..=11,
        flags in 0u8..8,
        payload in proptest::collection::vec(any::<u8>(), 0..400),
        raw_len in 0u32..2000,
    ) {
        let mut rec = vec![0u8; HEADER_LEN];
        rec[0..4].copy_from_slice(&MAGIC);
        rec[4] = version;
        rec[5] = kind;
        rec[6] = flags;
        rec[7] = HEADER_LEN as u8;
        let stored = payload.len() as u32;
        let raw = if Kind::from_u8(kind).unwrap().compressible() { raw_len } else { stored };
        rec[32..36].copy_from_slice(&raw.to_le_bytes());
        rec[36..40].copy_from_slice(&stored.to_le_bytes());
        rec.extend_from_slice(&payload);
        reseal(&mut rec);
        let _ = decode_all(&rec);
    }

    #[test]
    fn object_meta_round_trips(meta in meta_strategy(), id in any::<u64>(), seq in any::<u64>()) {
        let mut out = vec![0u8; MAX_META_LEN + HEADER_LEN];
        let n = encode_meta(id, seq, &meta, &mut out).unwrap();
        let (rec, used) = decode_record(&out[..n], 0).unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(rec.header.object_id, id);
        prop_assert_eq!(rec.header.seq, seq);
        prop_assert_eq!(rec.body, Body::ObjectMeta(meta));
    }

    #[test]
    fn packs_round_trip(metas in proptest::collection::vec(meta_strategy(), 1..20)) {
        let mut buf = vec![0u8; 1 << 20];
        let mut pack = PackBuilder::new(&mut buf[..]);
        let mut want = Vec::new();
        for (i, mut meta) in metas.into_iter().enumerate() {
            let data: Vec<u8> = if meta.kind.has_data() { vec![i as u8; i * 7] } else { vec![] };
            meta.size = data.len() as u64;
            let e = PackedEntry {
                object_id: i as u64 + 1,
                meta,
                length: data.len() as u64,
                digest: *blake3::hash(&data).as_bytes(),
            };
            prop_assert!(pack.push(&e, &data).unwrap());
            want.push((e, data));
        }
        let raw = pack.bytes().to_vec();
        let mut out = vec![0u8; compress_scratch_len(raw.len())];
        let (n, _) = encode_pack(1, 3, &raw, &mut out).unwrap();
        let (rec, _) = decode_record(&out[..n], 0).unwrap();
        let Body::Pack(p) = rec.body else { panic!("not a pack") };
        let mut scratch = vec![0u8; rec.header.raw_len as usize];
        let got: Vec<_> = PackEntries::new(unpack(&rec.header, p, &mut scratch, 0).unwrap(), 0)
            .map(|r| r.map(|(e, d)| (e, d.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn garbage_packs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for e in PackEntries::new(&bytes, 0) {
            let _ = e;
        }
    }

    #[test]
    fn lz4_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 1..600), raw in 601u32..5000) {
        let h = Header {
            version: FORMAT_VERSION,
            kind: Kind::Data,
            flags: Flags::LZ4,
            object_id: 1,
            seq: 0,
            offset: 0,
            raw_len: raw,
            stored_len: bytes.len() as u32,
        };
        let mut out = vec![0u8; raw as usize];
        let _ = unpack(&h, &bytes, &mut out, 0);
    }
}
