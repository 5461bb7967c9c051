//! Round trips, refusals, decoder robustness and the async helpers of the agent wire protocol.

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::collection::vec;
use proptest::prelude::*;
use serde_bytes::Bytes;

use super::*;

const GOOD_TOKEN: &str = "dGhpcyBpcyBhIHRva2VuIQ";

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{16,126}={0,2}"
}

/// Any valid message, byte fields of 1..=`max_der` bytes.
fn message(max_der: usize) -> BoxedStrategy<Message> {
    let der = move || vec(any::<u8>(), 1..=max_der);
    prop_oneof![
        (name(), token(), der()).prop_map(|(name, token, csr_der)| Message::Enroll { name, token, csr_der }),
        (der(), der()).prop_map(|(cert_der, ca_der)| Message::Enrolled { cert_der, ca_der }),
        (name(), "[!-~]{1,64}").prop_map(|(name, version)| Message::Hello { name, version }),
        name().prop_map(|box_name| Message::Welcome { box_name }),
        any::<u64>().prop_map(|seq| Message::Ping { seq }),
        any::<u64>().prop_map(|seq| Message::Pong { seq }),
        "[^\\x00]{0,300}".prop_map(|reason| Message::Refused { reason }),
        (
            any::<u64>(),
            "/[^\\x00]{0,200}",
            "[^/\\x00]{0,40}",
            any::<u64>(),
            any::<u64>(),
            UNIT_RANGE,
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(
                    job,
                    root,
                    prefix,
                    first_seq,
                    first_object,
                    unit,
                    one_file_system,
                    incremental,
                    compress,
                )| {
                    Message::Backup {
                        job,
                        root,
                        prefix: prefix.into_bytes(),
                        first_seq,
                        first_object,
                        unit,
                        one_file_system,
                        incremental,
                        compress,
                    }
                }
            ),
        (any::<u64>(), der()).prop_map(|(job, bytes)| Message::Judge { job, bytes }),
        (any::<u64>(), der()).prop_map(|(job, skip)| Message::Judged { job, skip }),
        (any::<u64>(), any::<bool>(), der()).prop_map(|(job, last, bytes)| Message::Units {
            job,
            last,
            bytes
        }),
        (any::<u64>(), any::<u64>(), any::<u64>(), vec("[^\\x00]{0,40}", 0..4), "[^\\x00]{0,40}").prop_map(
            |(job, next_seq, next_object, problems, error)| Message::Done {
                job,
                next_seq,
                next_object,
                problems,
                error
            }
        ),
        any::<u64>().prop_map(|job| Message::Cancel { job }),
        (any::<u64>(), any::<u64>(), "/[^\\x00]{0,200}", any::<bool>(), any::<bool>()).prop_map(
            |(job, session, root, all, compare)| Message::Restore { job, session, root, all, compare }
        ),
        (any::<u64>(), der()).prop_map(|(job, bytes)| Message::Objects { job, bytes }),
        (any::<u64>(), any::<bool>(), der()).prop_map(|(job, last, bytes)| Message::Items {
            job,
            last,
            bytes
        }),
        any::<u64>().prop_map(|job| Message::Finish { job }),
        (any::<u64>(), any::<u64>(), any::<u64>(), vec("[^\\x00]{0,40}", 0..4), any::<u64>()).prop_map(
            |(job, objects, bytes, failures, more)| Message::Restored { job, objects, bytes, failures, more }
        ),
    ]
    .boxed()
}

/// A frame with any header fields and payload, unchecked.
fn raw_frame(version: u8, kind: u8, reserved: [u8; 2], len: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(&[version, kind, reserved[0], reserved[1]]);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A well-formed frame of `kind` around `payload`, unchecked.
fn frame_of(kind: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(PROTOCOL_VERSION, kind, [0, 0], payload.len() as u32, payload)
}

fn header(frame: &[u8]) -> &[u8; HEADER_LEN] {
    frame.first_chunk().unwrap()
}

/// Decodes a whole frame through the header and body functions.
fn decode_frame(frame: &[u8]) -> Result<Message, FrameError> {
    let (kind, len) = decode_header(header(frame))?;
    assert_eq!(len, frame.len() - HEADER_LEN, "test frame length");
    decode_body(kind, &frame[HEADER_LEN..])
}

/// Pushes `bytes` in pieces of the sizes in `cuts` (the rest at once), taking messages after
/// each push; stops at the first error.
fn feed(d: &mut Decoder, bytes: &[u8], cuts: &[usize]) -> (Vec<Message>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut cuts = cuts.iter();
    while !rest.is_empty() {
        let n = cuts.next().map_or(rest.len(), |&c| c.min(rest.len()));
        if let Err(e) = d.push(&rest[..n]) {
            return (out, Some(e));
        }
        rest = &rest[n..];
        loop {
            match d.next() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn assert_invalid(m: Message) {
    let err = encode(&m).unwrap_err();
    assert!(matches!(err, FrameError::Invalid { .. }), "{m:?}: {err:?}");
    // The same message from a peer that skips validation is refused after decoding.
    let payload = write_body(&m, Vec::new()).unwrap();
    let err = decode_body(m.kind(), &payload).unwrap_err();
    assert!(matches!(err, FrameError::Invalid { .. }), "{m:?} decoded: {err:?}");
}

fn enroll(name: &str, token: &str, csr_len: usize) -> Message {
    Message::Enroll { name: name.into(), token: token.into(), csr_der: vec![0x30; csr_len] }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_kind_round_trips(m in message(2000)) {
        let frame = encode(&m).unwrap();
        prop_assert_eq!(&frame[0..4], b"CFAG");
        prop_assert_eq!(frame[4], PROTOCOL_VERSION);
        prop_assert_eq!(frame[5], m.kind());
        prop_assert_eq!(&frame[6..8], &[0, 0]);
        prop_assert_eq!(decode_header(header(&frame)).unwrap(), (m.kind(), frame.len() - HEADER_LEN));
        prop_assert_eq!(decode_frame(&frame).unwrap(), m.clone());
        prop_assert_eq!(kind_name(m.kind()), Some(m.name()));
        let mut d = Decoder::new();
        d.push(&frame).unwrap();
        prop_assert_eq!(d.next().unwrap(), Some(m));
        prop_assert!(d.next().unwrap().is_none());
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn streams_in_any_chunking_decode_the_same(
        ms in vec(message(3000), 1..6),
        cuts in vec(1usize..700, 0..40),
    ) {
        let stream: Vec<u8> = ms.iter().flat_map(|m| encode(m).unwrap()).collect();
        let mut d = Decoder::new();
        let (out, err) = feed(&mut d, &stream, &cuts);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(out, ms);
        prop_assert_eq!(d.buffered(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_frames_split_at_every_byte_decode_the_same(ms in vec(message(48), 1..4)) {
        let stream: Vec<u8> = ms.iter().flat_map(|m| encode(m).unwrap()).collect();
        for at in 0..=stream.len() {
            let mut d = Decoder::new();
            let (out, err) = feed(&mut d, &stream, &[at, stream.len()]);
            prop_assert!(err.is_none(), "split at {}: {:?}", at, err);
            prop_assert_eq!(&out, &ms, "split at {}", at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024), cuts in vec(1usize..64, 0..64)) {
        let mut d = Decoder::new();
        let _ = feed(&mut d, &bytes, &cuts);
        prop_assert!(d.buffered() <= bytes.len());
        for k in kind::ALL {
            let _ = decode_body(k, &bytes);
        }
        if let Some(h) = bytes.first_chunk::<HEADER_LEN>() {
            let _ = decode_header(h);
        }
    }

    #[test]
    fn garbage_behind_a_valid_header_never_panics(
        k in prop_oneof![proptest::sample::select(kind::ALL.to_vec()), any::<u8>()],
        payload in vec(any::<u8>(), 0..512),
        cuts in vec(1usize..64, 0..16),
    ) {
        let _ = decode_body(k, &payload);
        let mut d = Decoder::new();
        let (out, _) = feed(&mut d, &frame_of(k, &payload), &cuts);
        // Whatever gets through is a valid message.
        for m in out {
            prop_assert!(m.validate().is_ok(), "{:?}", m);
        }
    }

    #[test]
    fn damaged_frames_never_panic_and_never_yield_invalid_messages(
        m in message(64),
        damage in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cuts in vec(1usize..32, 0..8),
    ) {
        let mut frame = encode(&m).unwrap();
        for (at, byte) in damage {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let mut d = Decoder::new();
        let (out, _) = feed(&mut d, &frame, &cuts);
        for m in out {
            prop_assert!(m.validate().is_ok(), "{:?}", m);
        }
    }
}

#[test]
fn every_kind_round_trips_at_its_bounds() {
    let big = "x".repeat(MAX_NAME);
    let messages = [
        enroll(&big, &"A".repeat(MAX_TOKEN), MAX_DER),
        enroll("a", &"-".repeat(MIN_TOKEN), 1),
        enroll("agent-1.example_org", "dGhpcyBpcyBhIHRva2VuISE=", 300),
        enroll("agent-1", "dGhpcyBpcyBhIHRva2VuIQ==", 300),
        Message::Enrolled { cert_der: vec![1; MAX_DER], ca_der: vec![2; MAX_DER] },
        Message::Hello { name: big.clone(), version: "v".repeat(MAX_VERSION) },
        Message::Hello { name: "n".into(), version: "0.1.0+git.abc-dirty".into() },
        Message::Welcome { box_name: big },
        Message::Ping { seq: 0 },
        Message::Pong { seq: u64::MAX },
        Message::Refused { reason: String::new() },
        Message::Refused { reason: "é".repeat(MAX_REASON / 2) },
        Message::Refused { reason: "line one\nline two\t\u{1b}[0m".into() },
    ];
    for m in messages {
        let frame = encode(&m).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(decode_frame(&frame).unwrap(), m);
    }
}

#[test]
fn kinds_are_distinct_and_named() {
    let mut seen = std::collections::BTreeSet::new();
    for k in kind::ALL {
        assert!(seen.insert(k), "kind {k:#04x} twice");
        assert!(k != 0 && kind_name(k).is_some());
    }
    assert_eq!(kind_name(0), None);
    assert_eq!(Message::Ping { seq: 1 }.name(), "Ping");
}

#[test]
fn bad_magic_is_refused() {
    let mut frame = encode(&Message::Ping { seq: 1 }).unwrap();
    frame[0] = b'X';
    assert!(matches!(decode_header(header(&frame)), Err(FrameError::BadMagic)));
    let mut d = Decoder::new();
    d.push(b"GET / HTTP/1.1\r\nHost: box\r\n\r\n").unwrap();
    assert!(matches!(d.next(), Err(FrameError::BadMagic)));
    // A header error leaves its bytes: the decoder keeps saying so.
    assert!(matches!(d.next(), Err(FrameError::BadMagic)));
}

#[test]
fn another_version_is_refused_with_the_fix() {
    // Version 1, before incremental backups of agent trees.
    let frame = raw_frame(1, kind::PING, [0, 0], 1, &[7]);
    let err = decode_header(header(&frame)).unwrap_err();
    assert!(matches!(err, FrameError::Version { found: 1 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "peer speaks agent protocol version 1; this coffer speaks 2: upgrade the older side"
    );
    // The version is checked before anything a later version may change.
    let frame = raw_frame(3, 0xee, [1, 2], u32::MAX, &[]);
    assert!(matches!(decode_header(header(&frame)), Err(FrameError::Version { found: 3 })));
    let mut d = Decoder::new();
    d.push(&raw_frame(0, kind::PING, [0, 0], 1, &[7])).unwrap();
    assert!(matches!(d.next(), Err(FrameError::Version { found: 0 })));
}

#[test]
fn unknown_kinds_are_refused() {
    for k in [0u8, 0x03, 0x12, 0x22, 0x31, 0xff] {
        let frame = frame_of(k, &[0]);
        assert!(matches!(decode_header(header(&frame)), Err(FrameError::UnknownKind { kind }) if kind == k));
        assert!(matches!(decode_body(k, &[0]), Err(FrameError::UnknownKind { kind }) if kind == k));
    }
}

#[test]
fn reserved_bytes_must_be_zero() {
    for reserved in [[1, 0], [0, 0x80], [0xff, 0xff]] {
        let frame = raw_frame(PROTOCOL_VERSION, kind::PING, reserved, 1, &[7]);
        let err = decode_header(header(&frame)).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { kind: kind::PING, .. }), "{err:?}");
        assert!(err.to_string().contains("reserved header bytes"), "{err}");
    }
}

#[test]
fn length_over_the_bound_is_refused_from_the_header() {
    let at_bound = raw_frame(PROTOCOL_VERSION, kind::PING, [0, 0], MAX_PAYLOAD as u32, &[]);
    assert_eq!(decode_header(header(&at_bound)).unwrap(), (kind::PING, MAX_PAYLOAD));
    for len in [MAX_PAYLOAD as u32 + 1, u32::MAX] {
        let frame = raw_frame(PROTOCOL_VERSION, kind::PING, [0, 0], len, &[]);
        let err = decode_header(header(&frame)).unwrap_err();
        assert!(matches!(err, FrameError::TooLong { len: l } if l == len as usize), "{err:?}");
        // The decoder refuses it with only the header in hand.
        let mut d = Decoder::new();
        d.push(&frame).unwrap();
        assert!(matches!(d.next(), Err(FrameError::TooLong { .. })));
        assert_eq!(d.buffered(), HEADER_LEN);
        // read_message asks for nothing past the header, so it allocates nothing for the payload.
        let mut r = Recording { data: frame, pos: 0, largest_read: 0, read_past: false };
        let err = block_on(read_message(&mut r)).unwrap_err();
        assert!(matches!(err, FrameError::TooLong { .. }), "{err:?}");
        assert!(!r.read_past && r.largest_read <= HEADER_LEN, "read past the header");
    }
    let err = decode_body(kind::REFUSED, &vec![0; MAX_PAYLOAD + 1]).unwrap_err();
    assert!(matches!(err, FrameError::TooLong { .. }), "{err:?}");
}

#[test]
fn payload_must_be_exactly_one_body() {
    let mut payload = postcard::to_stdvec(&5u64).unwrap();
    payload.push(0);
    let err = decode_frame(&frame_of(kind::PING, &payload)).unwrap_err();
    assert!(matches!(err, FrameError::Malformed { kind: kind::PING, .. }), "{err:?}");
    assert!(err.to_string().contains("1 trailing bytes"), "{err}");
    let mut payload = postcard::to_stdvec("box-1").unwrap();
    payload.extend_from_slice(b"xyz");
    let err = decode_frame(&frame_of(kind::WELCOME, &payload)).unwrap_err();
    assert!(matches!(err, FrameError::Malformed { kind: kind::WELCOME, .. }), "{err:?}");
    // Short, empty or not UTF-8.
    let enroll = encode(&enroll("a", GOOD_TOKEN, 40)).unwrap();
    let short = &enroll[HEADER_LEN..enroll.len() - 1];
    assert!(matches!(decode_body(kind::ENROLL, short), Err(FrameError::Malformed { .. })));
    assert!(matches!(decode_body(kind::PONG, &[]), Err(FrameError::Malformed { .. })));
    let not_utf8 = postcard::to_stdvec(&Bytes::new(b"\xff\xfe")).unwrap();
    assert!(matches!(decode_body(kind::WELCOME, &not_utf8), Err(FrameError::Malformed { .. })));
    // The decoder takes a malformed frame's bytes and moves on to the next frame.
    let mut d = Decoder::new();
    d.push(&frame_of(kind::PING, &[])).unwrap();
    d.push(&encode(&Message::Pong { seq: 9 }).unwrap()).unwrap();
    assert!(matches!(d.next(), Err(FrameError::Malformed { .. })));
    assert_eq!(d.next().unwrap(), Some(Message::Pong { seq: 9 }));
}

#[test]
fn invalid_names_are_refused() {
    for bad in ["", &"x".repeat(MAX_NAME + 1), "a b", "a/b", "a\0b", "é", "agent:1", "a\nb"] {
        assert_invalid(enroll(bad, GOOD_TOKEN, 10));
        assert_invalid(Message::Hello { name: bad.into(), version: "1".into() });
        assert_invalid(Message::Welcome { box_name: bad.into() });
    }
}

#[test]
fn invalid_tokens_are_refused_without_quoting_them() {
    let bad = [
        "A".repeat(MIN_TOKEN - 1),
        "A".repeat(MAX_TOKEN + 1),
        "abcdefghijklmnop+".into(),
        "abcdefghijklmnop/".into(),
        "abcdefgh=ijklmnop".into(),
        "abcdefghijklmnop===".into(),
        "abcdefghijklmnop ".into(),
        "abcdefghijklmnopé".into(),
    ];
    for token in bad {
        let err = encode(&enroll("a", &token, 10)).unwrap_err();
        assert!(!err.to_string().contains(token.trim_end_matches('=')), "{err}");
        assert_invalid(enroll("a", &token, 10));
    }
}

#[test]
fn debug_never_shows_the_token() {
    let shown = format!("{:?}", enroll("agent-1", GOOD_TOKEN, 5000));
    assert!(!shown.contains(GOOD_TOKEN), "{shown}");
    assert!(shown.contains("agent-1") && shown.contains("<5000 bytes>"), "{shown}");
}

#[test]
fn oversize_and_empty_fields_are_refused() {
    assert_invalid(enroll("a", GOOD_TOKEN, MAX_DER + 1));
    assert_invalid(enroll("a", GOOD_TOKEN, 0));
    assert_invalid(Message::Enrolled { cert_der: vec![1; MAX_DER + 1], ca_der: vec![1] });
    assert_invalid(Message::Enrolled { cert_der: vec![1], ca_der: vec![1; MAX_DER + 1] });
    assert_invalid(Message::Enrolled { cert_der: vec![], ca_der: vec![1] });
    for version in [String::new(), "v".repeat(MAX_VERSION + 1), "1.0 beta".into(), "1.0\0".into()] {
        assert_invalid(Message::Hello { name: "a".into(), version });
    }
    assert_invalid(Message::Refused { reason: "r".repeat(MAX_REASON + 1) });
    assert_invalid(Message::Refused { reason: "no\0thanks".into() });
}

#[test]
fn decoder_holds_a_bounded_backlog() {
    let mut d = Decoder::new();
    let err = d.push(&vec![0; MAX_BUFFERED + 1]).unwrap_err();
    assert!(matches!(err, FrameError::Overfull { buffered: 0, pushed } if pushed == MAX_BUFFERED + 1));
    assert_eq!(d.buffered(), 0);
    // A caller that drains after each push never reaches the bound: a largest frame one byte
    // short, then a push of a whole largest frame's worth.
    let largest = raw_frame(PROTOCOL_VERSION, kind::PING, [0, 0], MAX_PAYLOAD as u32, &vec![0; MAX_PAYLOAD]);
    d.push(&largest[..largest.len() - 1]).unwrap();
    assert!(d.next().unwrap().is_none());
    let mut second = largest[largest.len() - 1..].to_vec();
    second.extend_from_slice(&largest[..largest.len() - 1]);
    d.push(&second).unwrap();
    // Its payload is a 0 followed by zeros: not one Ping body.
    assert!(matches!(d.next(), Err(FrameError::Malformed { kind: kind::PING, .. })));
    assert!(d.next().unwrap().is_none());
    assert_eq!(d.buffered(), largest.len() - 1);
    let err = d.push(&vec![0; MAX_BUFFERED - d.buffered() + 1]).unwrap_err();
    assert!(matches!(err, FrameError::Overfull { .. }), "{err:?}");
    assert_eq!(d.buffered(), largest.len() - 1);
}

/// Hands out `data`, then end of stream; notes how much each read asked for and whether any
/// read came after the data.
struct Recording {
    data: Vec<u8>,
    pos: usize,
    largest_read: usize,
    read_past: bool,
}

impl tokio::io::AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.largest_read = this.largest_read.max(buf.remaining());
        if this.pos == this.data.len() {
            this.read_past = true;
        }
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[test]
fn async_write_then_read() {
    let messages = vec![
        enroll("agent-1", GOOD_TOKEN, 3000),
        Message::Enrolled { cert_der: vec![7; 2000], ca_der: vec![8; 1500] },
        Message::Hello { name: "agent-1".into(), version: "0.1.0".into() },
        Message::Welcome { box_name: "box".into() },
        Message::Ping { seq: 1 },
        Message::Pong { seq: 1 },
        Message::Refused { reason: "bye".into() },
    ];
    // A small pipe: frames cross it in many pieces while both sides run.
    let (mut client, mut server) = tokio::io::duplex(64);
    let received = block_on(async {
        let write = async {
            for m in &messages {
                write_message(&mut client, m).await.unwrap();
            }
            drop(client);
        };
        let read = async {
            let mut got = Vec::new();
            loop {
                match read_message(&mut server).await {
                    Ok(m) => got.push(m),
                    Err(FrameError::Closed) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::join!(write, read).1
    });
    assert_eq!(received, messages);
}

/// What `read_message` says of a stream of exactly `bytes`, then end of stream.
fn read_after(bytes: &[u8]) -> Result<Message, FrameError> {
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    block_on(async {
        tokio::io::AsyncWriteExt::write_all(&mut client, bytes).await.unwrap();
        drop(client);
        read_message(&mut server).await
    })
}

#[test]
fn async_end_of_stream_before_a_header_is_closed_and_inside_a_frame_truncated() {
    let frame = encode(&enroll("agent-1", GOOD_TOKEN, 100)).unwrap();
    assert!(matches!(read_after(&[]), Err(FrameError::Closed)));
    assert_eq!(read_after(&frame).unwrap(), enroll("agent-1", GOOD_TOKEN, 100));
    for cut in [1, 5, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 1, frame.len() - 1] {
        let err = read_after(&frame[..cut]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "cut at {cut}: {err:?}");
    }
}

#[test]
fn async_refusals() {
    // An invalid message is refused before a byte is written.
    let (mut client, mut server) = tokio::io::duplex(1024);
    block_on(async {
        let bad = Message::Welcome { box_name: "no spaces please".into() };
        let err = write_message(&mut client, &bad).await.unwrap_err();
        assert!(matches!(err, FrameError::Invalid { .. }), "{err:?}");
        drop(client);
        assert!(matches!(read_message(&mut server).await, Err(FrameError::Closed)));
    });
    assert!(matches!(read_after(b"HTTP/1.1 400 Bad Request\r\n"), Err(FrameError::BadMagic)));
    let v3 = raw_frame(3, kind::HELLO, [0, 0], 0, &[]);
    assert!(matches!(read_after(&v3), Err(FrameError::Version { found: 3 })));
}
