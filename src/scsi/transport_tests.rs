//! `issue` against a scripted transport: what reaches the transport, and how every kind of
//! completion becomes a response or an error.

use proptest::prelude::*;

use super::*;
use crate::scsi::cdb;
use crate::scsi::sense::{IllegalRequestReason, NotReadyReason, SenseKey, UnitAttentionReason};

/// Answers every command with one scripted result, filling data-in buffers with 0xAB, and
/// records what it was given.
struct Scripted {
    answer: Option<Result<Completion, TransportError>>,
    seen: Vec<(Vec<u8>, Direction, usize)>,
}

impl Scripted {
    fn new(answer: Result<Completion, TransportError>) -> Scripted {
        Scripted { answer: Some(answer), seen: Vec::new() }
    }
}

impl Transport for Scripted {
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
        self.seen.push((cdb.bytes().to_vec(), data.direction(), data.len()));
        if let DataBuf::In(b) = data {
            b.fill(0xAB);
        }
        self.answer.take().expect("one command per script")
    }
}

fn run(answer: Result<Completion, TransportError>, cdb: &Cdb) -> Result<Response, ScsiError> {
    let mut buf = vec![0u8; cdb.transfer_len()];
    let data = match cdb.direction() {
        Direction::None => DataBuf::None,
        Direction::FromDevice => DataBuf::In(&mut buf),
        Direction::ToDevice => DataBuf::Out(&buf),
    };
    issue(&mut Scripted::new(answer), cdb, data)
}

#[test]
fn the_transport_gets_exactly_the_transfer_length() {
    let mut t = Scripted::new(Ok(Completion::good(0)));
    let mut buf = [0u8; 100];
    let c = cdb::inquiry(36);
    let r = issue(&mut t, &c, DataBuf::In(&mut buf)).unwrap();
    assert_eq!(r, Response { transferred: 36, sense: None });
    assert_eq!(t.seen, [(vec![0x12, 0, 0, 0, 36, 0], Direction::FromDevice, 36)]);
    assert!(buf[..36].iter().all(|&b| b == 0xAB) && buf[36..].iter().all(|&b| b == 0));
    // A zero-length read moves no data even when given a buffer.
    let mut t = Scripted::new(Ok(Completion::good(0)));
    issue(&mut t, &cdb::read6_fixed(0, 512), DataBuf::In(&mut buf)).unwrap();
    assert_eq!(t.seen[0].1, Direction::None);
}

#[test]
fn residual_reduces_the_transfer() {
    let r = run(Ok(Completion::good(65536 - 512)), &cdb::read6_variable(65536, true)).unwrap();
    assert_eq!(r.transferred, 512);
    // A residual larger than the transfer (a confused driver) is not an underflow.
    let r = run(Ok(Completion::good(99)), &cdb::inquiry(36)).unwrap();
    assert_eq!(r.transferred, 0);
}

#[test]
fn check_condition_with_a_filemark() {
    let sense = Sense::new(SenseKey::NoSense, 0, 1).with_filemark().with_information(5).encode();
    let e = run(Ok(Completion::check(sense, 5 * 512)), &cdb::read6_fixed(8, 512)).unwrap_err();
    assert_eq!(e.outcome(), Some(Outcome::Filemark { residual: Some(5) }));
    assert_eq!(e.transferred(), 3 * 512);
    assert!(!e.is_retryable() && !e.is_unsupported());
    assert_eq!(
        e.to_string(),
        "READ(6): NO SENSE (ASC/ASCQ 00/01: filemark detected) [filemark] information 5"
    );
}

#[test]
fn informational_sense_completes_the_command() {
    let cleaning = Sense::new(SenseKey::NoSense, 0x00, 0x17).encode();
    let r = run(Ok(Completion::check(cleaning, 0)), &cdb::write6_variable(1024)).unwrap();
    assert_eq!(r.transferred, 1024);
    assert_eq!(r.sense.map(|s| (s.asc, s.ascq)), Some((0x00, 0x17)));
    let recovered = Sense::new(SenseKey::RecoveredError, 0x17, 0x01).descriptor().encode();
    let r = run(Ok(Completion::check(recovered, 0)), &cdb::test_unit_ready()).unwrap();
    assert_eq!(r.sense.unwrap().key, SenseKey::RecoveredError);
}

#[test]
fn errors_callers_branch_on() {
    let check =
        |key, asc, ascq, c: &Cdb| run(Ok(Completion::check(Sense::new(key, asc, ascq).encode(), 0)), c);
    let ua = check(SenseKey::UnitAttention, 0x29, 0x00, &cdb::test_unit_ready()).unwrap_err();
    assert_eq!(ua.outcome(), Some(Outcome::UnitAttention(UnitAttentionReason::Reset)));
    assert!(ua.is_retryable());
    let locate = check(SenseKey::IllegalRequest, 0x20, 0x00, &cdb::locate16(9, None, false)).unwrap_err();
    assert!(locate.is_unsupported() && !locate.is_retryable());
    assert_eq!(locate.outcome(), Some(Outcome::IllegalRequest(IllegalRequestReason::UnsupportedCommand)));
    assert!(locate.to_string().starts_with("LOCATE(16): ILLEGAL REQUEST"));
    let no_medium = check(SenseKey::NotReady, 0x3A, 0x00, &cdb::test_unit_ready()).unwrap_err();
    assert_eq!(no_medium.outcome(), Some(Outcome::NotReady(NotReadyReason::NoMedium)));
    assert!(!no_medium.is_retryable());
    let eod = check(SenseKey::BlankCheck, 0x00, 0x05, &cdb::read6_variable(512, false)).unwrap_err();
    assert_eq!(eod.outcome(), Some(Outcome::EndOfData));
    assert_eq!(eod.sense().map(|s| s.key), Some(SenseKey::BlankCheck));
}

#[test]
fn unusable_sense_and_other_statuses() {
    let c = cdb::test_unit_ready();
    let e = run(Ok(Completion::check(Vec::new(), 0)), &c).unwrap_err();
    assert!(matches!(e, ScsiError::BadSense { source: SenseError::Empty, .. }));
    assert!(!e.is_retryable() && e.outcome().is_none());
    let e = run(Ok(Completion::check(vec![0x55; 18], 0)), &c).unwrap_err();
    assert!(matches!(e, ScsiError::BadSense { source: SenseError::ResponseCode(0x55), .. }));
    let status = |s| Completion { status: s, sense: Vec::new(), residual: 0 };
    let busy = run(Ok(status(Status::Busy)), &c).unwrap_err();
    assert!(matches!(busy, ScsiError::Busy { .. }) && busy.is_retryable());
    assert!(run(Ok(status(Status::TaskSetFull)), &c).unwrap_err().is_retryable());
    let rc = run(Ok(status(Status::ReservationConflict)), &c).unwrap_err();
    assert!(matches!(rc, ScsiError::ReservationConflict { .. }) && !rc.is_retryable());
    assert!(rc.to_string().contains("reserved the device"));
    assert!(run(Ok(status(Status::TaskAborted)), &c).unwrap_err().is_retryable());
    let odd = run(Ok(status(Status::Other(0x22))), &c).unwrap_err();
    assert!(matches!(odd, ScsiError::Status { status: Status::Other(0x22), .. }) && !odd.is_retryable());
    assert_eq!(run(Ok(status(Status::ConditionMet)), &c).unwrap().transferred, 0);
}

#[test]
fn transport_failures() {
    let c = cdb::rewind(false);
    let reset = run(Err(TransportError::Host { code: 0x08, meaning: "reset" }), &c).unwrap_err();
    assert!(matches!(reset, ScsiError::Transport { .. }) && reset.is_retryable());
    let gone = run(Err(TransportError::Host { code: 0x01, meaning: "no connection" }), &c).unwrap_err();
    assert!(!gone.is_retryable());
    let timeout = run(Err(TransportError::Timeout { timeout: c.timeout() }), &c).unwrap_err();
    assert!(!timeout.is_retryable());
    assert!(timeout.to_string().starts_with("REWIND: no answer within"));
}

#[test]
#[should_panic(expected = "buffer")]
fn a_short_buffer_is_a_bug() {
    let mut buf = [0u8; 10];
    let _ = issue(&mut Scripted::new(Ok(Completion::good(0))), &cdb::inquiry(36), DataBuf::In(&mut buf));
}

#[test]
#[should_panic(expected = "buffer")]
fn a_buffer_going_the_wrong_way_is_a_bug() {
    let buf = [0u8; 36];
    let _ = issue(&mut Scripted::new(Ok(Completion::good(0))), &cdb::inquiry(36), DataBuf::Out(&buf));
}

#[test]
fn status_bytes_round_trip() {
    for b in 0..=255u8 {
        assert_eq!(Status::from_byte(b).to_byte(), b);
    }
    assert_eq!(Status::from_byte(0x02), Status::CheckCondition);
}

proptest! {
    /// Any completion a transport reports is interpreted without panicking, and never claims
    /// more bytes than the command asked for.
    #[test]
    fn interpret_takes_any_completion(
        status in any::<u8>(),
        sense in proptest::collection::vec(any::<u8>(), 0..64),
        residual in any::<usize>(),
        len in 0u32..4096,
    ) {
        let c = cdb::read6_variable(len, false);
        let completion = Completion { status: Status::from_byte(status), sense, residual };
        match interpret(&c, &completion) {
            Ok(r) => prop_assert!(r.transferred <= c.transfer_len()),
            Err(e) => {
                prop_assert!(e.transferred() <= c.transfer_len());
                let _ = (e.is_retryable(), e.to_string());
            }
        }
    }
}
