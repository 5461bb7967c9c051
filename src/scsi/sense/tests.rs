//! Sense decoding and classification on hand-built sense data (as LTO drives, libraries and
//! `tgt` send it), and property tests: no input panics, and encode → decode round-trips.

use proptest::prelude::*;

use super::*;

/// Fixed sense, 18 bytes, with `flags_key` in byte 2 and ASC/ASCQ.
fn fixed(flags_key: u8, asc: u8, ascq: u8) -> [u8; 18] {
    let mut b = [0u8; 18];
    b[0] = 0x70;
    b[2] = flags_key;
    b[7] = 10;
    b[12] = asc;
    b[13] = ascq;
    b
}

fn outcome_of(b: &[u8]) -> Outcome {
    decode(b).unwrap().outcome()
}

#[test]
fn fixed_sense_with_filemark_and_residual() {
    // READ(6) of 8 fixed blocks met a filemark after 3: VALID, FILEMARK, NO SENSE, info 5, 00/01.
    let b = [0xF0, 0, 0x80, 0, 0, 0, 5, 0x0A, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0];
    let s = decode(&b).unwrap();
    assert_eq!(s.format, SenseFormat::Fixed);
    assert_eq!(s.key, SenseKey::NoSense);
    assert!(s.filemark && !s.eom && !s.ili && !s.deferred);
    assert_eq!(s.information, Some(5));
    assert_eq!((s.asc, s.ascq), (0x00, 0x01));
    assert_eq!(s.outcome(), Outcome::Filemark { residual: Some(5) });
    assert!(s.outcome().is_position() && !s.outcome().is_retryable());
}

#[test]
fn descriptor_sense_with_information_and_stream_descriptors() {
    // Variable READ(6) of 65536 bytes met a 512-byte block: ILI, residual 65024.
    let b = [
        0x72, 0x00, 0x00, 0x00, 0, 0, 0, 0x10, // header, 16 bytes of descriptors
        0x00, 0x0A, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0xFE, 0x00, // information, VALID
        0x04, 0x02, 0x00, 0x20, // stream commands: ILI
    ];
    let s = decode(&b).unwrap();
    assert_eq!(s.format, SenseFormat::Descriptor);
    assert!(s.ili && !s.filemark && !s.eom);
    assert_eq!(s.information, Some(65024));
    assert_eq!(s.outcome(), Outcome::IncorrectLength { residual: Some(65024) });
}

#[test]
fn negative_residual_means_a_longer_block() {
    // Fixed sense, ILI, information 0xFFFFFE00: the block was 512 bytes longer than asked for.
    let mut b = fixed(0x20, 0, 0);
    b[0] |= 0x80;
    b[3..7].copy_from_slice(&[0xFF, 0xFF, 0xFE, 0x00]);
    assert_eq!(outcome_of(&b), Outcome::IncorrectLength { residual: Some(-512) });
    // Information without VALID is not reported.
    b[0] &= 0x7F;
    assert_eq!(decode(&b).unwrap().information, None);
}

#[test]
fn end_of_medium_conditions() {
    assert_eq!(outcome_of(&fixed(0x40, 0x00, 0x02)), Outcome::EarlyWarning);
    assert_eq!(outcome_of(&fixed(0x41, 0x00, 0x00)), Outcome::EarlyWarning);
    assert_eq!(outcome_of(&fixed(0x40, 0x00, 0x07)), Outcome::EarlyWarning);
    assert_eq!(outcome_of(&fixed(0x4D, 0x00, 0x02)), Outcome::EndOfMedium);
    assert_eq!(outcome_of(&fixed(0x0D, 0x00, 0x00)), Outcome::EndOfMedium);
    assert_eq!(outcome_of(&fixed(0x43, 0x00, 0x02)), Outcome::EndOfMedium);
    // EOM with a hardware error is still a hardware error.
    assert_eq!(outcome_of(&fixed(0x44, 0x44, 0x00)), Outcome::HardwareError);
}

#[test]
fn end_and_beginning_of_data() {
    // SSC: BLANK CHECK 00/05.
    assert_eq!(outcome_of(&fixed(0x08, 0x00, 0x05)), Outcome::EndOfData);
    // tgt reading at EOD: EOM | BLANK CHECK, 00/00.
    assert_eq!(outcome_of(&fixed(0x48, 0x00, 0x00)), Outcome::EndOfData);
    // tgt spacing into EOD: NO SENSE 00/05.
    assert_eq!(outcome_of(&fixed(0x00, 0x00, 0x05)), Outcome::EndOfData);
    // Spacing back onto BOT, with and without EOM.
    assert_eq!(outcome_of(&fixed(0x40, 0x00, 0x04)), Outcome::BeginningOfMedium);
    assert_eq!(outcome_of(&fixed(0x00, 0x00, 0x04)), Outcome::BeginningOfMedium);
}

#[test]
fn not_ready_reasons_and_retries() {
    let br = outcome_of(&fixed(0x02, 0x04, 0x01));
    assert_eq!(br, Outcome::NotReady(NotReadyReason::BecomingReady));
    assert!(br.is_retryable());
    let nm = outcome_of(&fixed(0x02, 0x3A, 0x00));
    assert_eq!(nm, Outcome::NotReady(NotReadyReason::NoMedium));
    assert!(!nm.is_retryable());
    assert_eq!(outcome_of(&fixed(0x02, 0x3A, 0x02)), Outcome::NotReady(NotReadyReason::NoMedium));
    assert_eq!(outcome_of(&fixed(0x02, 0x04, 0x07)), Outcome::NotReady(NotReadyReason::InProgress));
    assert_eq!(
        outcome_of(&fixed(0x02, 0x04, 0x02)),
        Outcome::NotReady(NotReadyReason::InitializationRequired)
    );
    assert_eq!(outcome_of(&fixed(0x02, 0x30, 0x03)), Outcome::NotReady(NotReadyReason::CleaningCartridge));
    assert_eq!(outcome_of(&fixed(0x02, 0x04, 0x00)), Outcome::NotReady(NotReadyReason::Other));
}

#[test]
fn unit_attention_data_protect_and_errors() {
    let reset = outcome_of(&fixed(0x06, 0x29, 0x00));
    assert_eq!(reset, Outcome::UnitAttention(UnitAttentionReason::Reset));
    assert!(reset.is_retryable());
    assert_eq!(
        outcome_of(&fixed(0x06, 0x28, 0x00)),
        Outcome::UnitAttention(UnitAttentionReason::MediumChanged)
    );
    assert_eq!(
        outcome_of(&fixed(0x06, 0x2A, 0x01)),
        Outcome::UnitAttention(UnitAttentionReason::ParametersChanged)
    );
    assert_eq!(outcome_of(&fixed(0x07, 0x27, 0x00)), Outcome::DataProtect { write_protected: true });
    assert_eq!(outcome_of(&fixed(0x07, 0x30, 0x05)), Outcome::DataProtect { write_protected: false });
    assert_eq!(outcome_of(&fixed(0x03, 0x11, 0x00)), Outcome::MediumError);
    assert_eq!(outcome_of(&fixed(0x04, 0x44, 0x00)), Outcome::HardwareError);
    let aborted = outcome_of(&fixed(0x0B, 0x47, 0x00));
    assert_eq!(aborted, Outcome::Aborted);
    assert!(aborted.is_retryable());
    assert_eq!(outcome_of(&fixed(0x0E, 0x1D, 0x00)), Outcome::Other);
    assert_eq!(outcome_of(&fixed(0x00, 0x00, 0x00)), Outcome::NoSense);
    assert_eq!(outcome_of(&fixed(0x01, 0x00, 0x17)), Outcome::Recovered);
    assert!(Outcome::Recovered.is_success() && !Outcome::MediumError.is_success());
}

#[test]
fn illegal_requests() {
    let unsupported = outcome_of(&fixed(0x05, 0x20, 0x00));
    assert_eq!(unsupported, Outcome::IllegalRequest(IllegalRequestReason::UnsupportedCommand));
    assert!(unsupported.is_unsupported() && !unsupported.is_retryable());
    // Invalid field in CDB with a field pointer: SKSV, C/D (in the CDB), byte 1.
    let mut b = fixed(0x05, 0x24, 0x00);
    b[15..18].copy_from_slice(&[0xC0, 0x00, 0x01]);
    let s = decode(&b).unwrap();
    assert_eq!(s.sense_key_specific, Some([0x40, 0x00, 0x01]));
    assert_eq!(s.outcome(), Outcome::IllegalRequest(IllegalRequestReason::InvalidFieldInCdb));
    assert!(!s.outcome().is_unsupported());
    for (asc, ascq, reason) in [
        (0x26, 0x00, IllegalRequestReason::InvalidFieldInParameters),
        (0x21, 0x01, IllegalRequestReason::InvalidElementAddress),
        (0x3B, 0x0E, IllegalRequestReason::SourceEmpty),
        (0x3B, 0x0D, IllegalRequestReason::DestinationFull),
        (0x53, 0x02, IllegalRequestReason::RemovalPrevented),
        (0x55, 0x00, IllegalRequestReason::Other),
    ] {
        assert_eq!(outcome_of(&fixed(0x05, asc, ascq)), Outcome::IllegalRequest(reason));
    }
}

#[test]
fn deferred_errors_are_flagged() {
    let mut b = fixed(0x03, 0x0C, 0x00);
    b[0] = 0x71;
    let s = decode(&b).unwrap();
    assert!(s.deferred);
    assert_eq!(s.outcome(), Outcome::MediumError);
    assert!(s.to_string().contains("deferred"));
}

#[test]
fn short_and_bad_buffers() {
    assert_eq!(decode(&[]), Err(SenseError::Empty));
    assert_eq!(decode(&[0x70, 0]), Err(SenseError::Short { got: 2, needed: 3, format: "fixed" }));
    assert_eq!(decode(&[0x72, 0, 0]), Err(SenseError::Short { got: 3, needed: 4, format: "descriptor" }));
    assert_eq!(decode(&[0x12, 0, 0, 0, 0]), Err(SenseError::ResponseCode(0x12)));
    // Three bytes carry a key and nothing else.
    let s = decode(&[0x70, 0, 0x03]).unwrap();
    assert_eq!((s.key, s.asc, s.ascq, s.information), (SenseKey::MediumError, 0, 0, None));
}

#[test]
fn additional_length_bounds_the_fields() {
    // The additional length says only 4 bytes follow the header: ASC/ASCQ are not valid.
    let mut b = fixed(0x03, 0x11, 0x00);
    b[7] = 4;
    let s = decode(&b).unwrap();
    assert_eq!((s.asc, s.ascq), (0, 0));
    // A descriptor cut by the additional length is ignored, the one before it kept.
    let b = [
        0x72, 0x00, 0x00, 0x00, 0, 0, 0, 0x0A, // 10 bytes of descriptors claimed
        0x04, 0x02, 0x00, 0x80, // stream: FILEMARK
        0x00, 0x0A, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 7, // information, cut at 6 of 12 bytes
    ];
    let s = decode(&b).unwrap();
    assert!(s.filemark);
    assert_eq!(s.information, None);
}

#[test]
fn display_says_what_happened() {
    let s = decode(&fixed(0x03, 0x11, 0x00)).unwrap();
    assert_eq!(s.to_string(), "MEDIUM ERROR (ASC/ASCQ 11/00: unrecovered read error)");
    let s = Sense::new(SenseKey::NoSense, 0, 1).with_filemark().with_information(3);
    assert_eq!(s.to_string(), "NO SENSE (ASC/ASCQ 00/01: filemark detected) [filemark] information 3");
    assert_eq!(
        Sense::new(SenseKey::VendorSpecific, 0x80, 0x01).to_string(),
        "VENDOR SPECIFIC (ASC/ASCQ 80/01)"
    );
}

#[test]
fn encoders_write_the_spec_layouts() {
    let f = Sense::new(SenseKey::NoSense, 0, 1).with_filemark().with_information(5).encode();
    assert_eq!(f, [0xF0, 0, 0x80, 0, 0, 0, 5, 0x0A, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0]);
    let d = Sense::new(SenseKey::NoSense, 0, 0).with_ili().with_information(65024).descriptor().encode();
    assert_eq!(
        d,
        [
            0x72, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xFE, 0x00, 0x04, 0x02, 0,
            0x20
        ]
    );
}

#[test]
#[should_panic(expected = "fits 32 bits")]
fn fixed_format_cannot_carry_wide_information() {
    Sense::new(SenseKey::NoSense, 0, 0).with_information(i64::from(i32::MAX) + 1).encode();
}

fn arb_sense() -> impl Strategy<Value = Sense> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..16,
        any::<(u8, u8)>(),
        any::<(bool, bool, bool)>(),
        proptest::option::of(any::<i64>()),
        any::<u64>(),
        proptest::option::of(any::<[u8; 3]>()),
    )
        .prop_map(|(descriptor, deferred, key, (asc, ascq), (filemark, eom, ili), info, csi, sks)| {
            let fixed = !descriptor;
            Sense {
                format: if fixed { SenseFormat::Fixed } else { SenseFormat::Descriptor },
                deferred,
                key: SenseKey::from_code(key),
                asc,
                ascq,
                filemark,
                eom,
                ili,
                information: info.map(|i| if fixed { i64::from(i as i32) } else { i }),
                command_specific: if fixed { csi & 0xFFFF_FFFF } else { csi },
                sense_key_specific: sks.map(|[a, b, c]| [a & 0x7F, b, c]),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes decode or fail cleanly, and any decoded sense classifies and prints.
    #[test]
    fn decode_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(s) = decode(&bytes) {
            let _ = s.outcome().is_retryable();
            let _ = s.to_string();
        }
    }

    /// Bytes that look like sense (a valid response code) decode without panicking.
    #[test]
    fn decode_takes_arbitrary_sense_shaped_bytes(
        code in 0x70u8..0x74,
        valid in any::<bool>(),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = vec![code | if valid { 0x80 } else { 0 }];
        b.extend_from_slice(&rest);
        match decode(&b) {
            Ok(s) => { let _ = s.outcome(); }
            Err(e) => prop_assert!(matches!(e, SenseError::Short { .. }), "{e}"),
        }
    }

    /// Encoding then decoding gives back the same sense, in both formats.
    #[test]
    fn encode_decode_round_trips(s in arb_sense()) {
        let bytes = s.encode();
        prop_assert!(bytes.len() <= MAX_SENSE_LEN);
        prop_assert_eq!(decode(&bytes).unwrap(), s);
    }
}
