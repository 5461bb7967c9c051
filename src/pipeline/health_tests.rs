//! Health findings into records: counts from the catalog, retirement once, damage at the limit.

use super::*;
use crate::board::HealthLimits;
use crate::catalog::{MediumAdded, MediumKind, SessionKind, SessionMode, SessionPart, SessionStarted};

const TAPE: [u8; 16] = [7; 16];

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    let records = [
        Record::from(MediumAdded {
            medium: TAPE,
            barcode: "CFR0001L8".into(),
            pool: "default".into(),
            kind: MediumKind::Tape,
            block_size: 256 << 10,
            capacity: 1 << 30,
            created: 1,
            location: "library:vlib".into(),
        }),
        Record::from(SessionStarted {
            session: 7,
            job: 1,
            host: "h".into(),
            source: "/srv".into(),
            started: 10,
            streams: 1,
            mode: SessionMode::Files,
            kind: SessionKind::Full,
            source_key: [0; 32],
        }),
        Record::from(SessionPart {
            session: 7,
            stream: 0,
            part: 0,
            medium: TAPE,
            position: 0,
            file_number: 1,
        }),
        Record::from(CleaningUsed {
            library: "vlib".into(),
            barcode: "CLN001L1".into(),
            drive: 0,
            at: 5,
            uses: 1,
        }),
    ];
    for r in &records {
        c.apply(r).unwrap();
    }
    c
}

fn report(events: Vec<HealthEvent>) -> HealthReport {
    HealthReport {
        library: "vlib".into(),
        location: "library:vlib".into(),
        limits: HealthLimits { cleaning_uses: 2, hard_error_limit: 3, medium_error_limit: 2 },
        events,
    }
}

fn apply_all(c: &mut Catalog, records: &[Record]) {
    for r in records {
        c.apply(r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
}

fn log_text(c: &Catalog) -> Vec<String> {
    c.log().map(|e| e.message.clone()).collect()
}

#[test]
fn a_cleaning_is_counted_from_the_catalog_and_retires_the_cartridge_at_its_limit() {
    let mut c = catalog();
    // The library's own count (1) is stale: the catalog says one use already.
    let cleaned = HealthEvent::Cleaned { drive: 1, barcode: "CLN001L1".into(), uses: 1 };
    let r = health_records(&c, &report(vec![cleaned.clone()]), &[], 100);
    apply_all(&mut c, &r);
    let (_, k) = c.cleaning_cartridges("vlib").next().unwrap();
    assert_eq!((k.uses, k.last), (2, Some((100, 1))));
    assert!(k.retired.as_ref().is_some_and(|(_, why)| why.contains("cleaning_uses is 2")), "{k:?}");
    let log = log_text(&c);
    assert!(log.iter().any(|m| m.contains("drive 1 cleaned with CLN001L1 (use 2)")), "{log:?}");
    assert!(log.iter().any(|m| m.contains("CLN001L1 retired")), "{log:?}");
    // A further use of the retired cartridge, and retiring it again, make no record.
    let again = vec![cleaned, HealthEvent::CleaningRetired { barcode: "CLN001L1".into(), why: "x".into() }];
    assert!(health_records(&c, &report(again), &[], 200).is_empty());
}

#[test]
fn an_expired_cartridge_a_missing_one_and_an_offline_drive_are_reported() {
    let mut c = catalog();
    let events = vec![
        HealthEvent::CleaningRetired { barcode: "CLN002L1".into(), why: "expired".into() },
        HealthEvent::NoCleaningCartridge { drive: 0 },
        HealthEvent::DriveOffline { drive: 0, why: "it still asks".into() },
        HealthEvent::DriveErrors { drive: 0, hard_errors: 2 },
    ];
    let r = health_records(&c, &report(events), &[], 100);
    apply_all(&mut c, &r);
    assert!(c.cleaning_cartridges("vlib").any(|(b, k)| b == "CLN002L1" && k.retired.is_some()));
    assert_eq!(c.drive_hard_errors("vlib", 0), 2);
    let log: Vec<(LogLevel, String)> = c.log().map(|e| (e.level, e.message.clone())).collect();
    assert!(log.iter().any(|(l, m)| *l == LogLevel::Warning && m.contains("no usable cleaning cartridge")));
    assert!(
        log.iter().any(|(l, m)| *l == LogLevel::Error && m.contains("drive 0 taken offline: it still asks"))
    );
}

#[test]
fn medium_errors_add_up_and_mark_the_cartridge_damaged_listing_its_sessions() {
    let mut c = catalog();
    let error = |write| HealthEvent::MediumError { barcode: "CFR0001L8".into(), write };
    let r = health_records(&c, &report(vec![error(true)]), &[], 100);
    apply_all(&mut c, &r);
    assert_eq!(c.medium(TAPE).unwrap().errors(), (0, 1));
    assert_eq!(c.medium(TAPE).unwrap().state(), MediumState::Writable, "one error is under the limit");
    let r = health_records(&c, &report(vec![error(false)]), &[], 100);
    apply_all(&mut c, &r);
    assert_eq!(c.medium(TAPE).unwrap().errors(), (1, 1));
    assert_eq!(c.medium(TAPE).unwrap().state(), MediumState::Error);
    let log = log_text(&c);
    let damaged = log.iter().find(|m| m.contains("CFR0001L8 is damaged")).expect("reported");
    assert!(damaged.contains("copy its unexpired sessions to other media: 7"), "{damaged}");
    // Already damaged: counted, not reported again.
    let r = health_records(&c, &report(vec![error(false)]), &[], 100);
    assert_eq!(r, vec![Record::from(MediumErrors { medium: TAPE, read: 2, write: 1 })]);
    // A cartridge the catalog does not hold is skipped.
    let other = HealthEvent::MediumError { barcode: "CFR0009L8".into(), write: true };
    assert!(health_records(&c, &report(vec![other]), &[], 100).is_empty());
}
