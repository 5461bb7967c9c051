//! READ ELEMENT STATUS decoding on hand-built reports of a 2-drive, 8-slot, 2-mail-slot
//! library (and `tgt`'s quirks), and property tests: corrupted or cut reports never panic,
//! cuts decode to a prefix, the encoder round-trips.

use proptest::prelude::*;

use super::element::Element;
use super::*;
use crate::scsi::cdb::ElementType;

/// `text` left-aligned in a field of `width` bytes padded with spaces.
fn field(text: &str, width: usize) -> Vec<u8> {
    let mut f = text.as_bytes().to_vec();
    f.resize(width, b' ');
    f
}

// -- element status ---------------------------------------------------------------------------

/// An element descriptor of `len` bytes written out by SMC-3 offsets.
fn desc(len: usize, addr: u16, flags: u8, src: Option<u16>, tag: Option<&str>) -> Vec<u8> {
    let mut d = vec![0u8; len];
    d[0..2].copy_from_slice(&addr.to_be_bytes());
    d[2] = flags;
    if let Some(s) = src {
        d[9] = 0x80;
        d[10..12].copy_from_slice(&s.to_be_bytes());
    }
    if let Some(t) = tag {
        d[12..44].copy_from_slice(&field(t, 32));
    }
    d
}

/// An element status page of `kind` with primary volume tags if `voltag`.
fn page(kind: u8, voltag: bool, desc_len: u16, descs: &[Vec<u8>]) -> Vec<u8> {
    let bytes: usize = descs.iter().map(Vec::len).sum();
    let mut p = vec![kind, if voltag { 0x80 } else { 0 }];
    p.extend_from_slice(&desc_len.to_be_bytes());
    p.extend_from_slice(&(bytes as u32).to_be_bytes());
    descs.iter().for_each(|d| p.extend_from_slice(d));
    p
}

fn report(first: u16, count: u16, pages: &[Vec<u8>]) -> Vec<u8> {
    let bytes: usize = pages.iter().map(Vec::len).sum();
    let mut r = first.to_be_bytes().to_vec();
    r.extend_from_slice(&count.to_be_bytes());
    r.extend_from_slice(&(bytes as u32).to_be_bytes());
    pages.iter().for_each(|p| r.extend_from_slice(p));
    r
}

const FULL: u8 = 0x09; // FULL | ACCESS
const EMPTY: u8 = 0x08; // ACCESS

/// Storage slots 1000..1008 of a library: slot 1003 is empty (its cartridge is in drive 500),
/// slot 1006 holds a cartridge without a label. Descriptors are 52 bytes, as tgt sends them.
fn storage_page() -> Vec<u8> {
    let descs: Vec<Vec<u8>> = (0..8u16)
        .map(|i| match i {
            3 => desc(52, 1000 + i, EMPTY, None, None),
            6 => desc(52, 1000 + i, FULL, None, None),
            _ => desc(52, 1000 + i, FULL, None, Some(&format!("A0000{i}L8"))),
        })
        .collect();
    page(2, true, 52, &descs)
}

#[test]
fn whole_library_report() {
    // 2 drives, 8 slots, 2 import/export slots, one robot; all with volume tags.
    let transport = page(1, true, 48, &[desc(48, 1, 0, None, None)]);
    let mail = page(
        3,
        true,
        48,
        &[desc(48, 16, FULL | 0x02, None, Some("CLN001L1")), desc(48, 17, EMPTY, None, None)],
    );
    let drives = page(
        4,
        true,
        48,
        &[desc(48, 500, FULL, Some(1003), Some("A00003L8")), desc(48, 501, 0x0C, None, None)],
    );
    let mut drives = drives;
    drives[8 + 48 + 4..8 + 48 + 6].copy_from_slice(&[0x04, 0x02]); // drive 501: except, 04/02
    let r = report(1, 13, &[transport, storage_page(), mail, drives]);
    let s = ElementStatus::decode(&r).unwrap();
    assert!(s.is_complete());
    assert_eq!(s.next_start(), None);
    assert_eq!((s.available, s.received, s.first_address), (r.len(), r.len(), 1));
    assert_eq!(s.elements.len(), 13);
    let e = |addr: u16| s.elements.iter().find(|e| e.address == addr).unwrap();
    assert_eq!(e(1).kind, ElementType::Transport);
    assert!(!e(1).full);
    assert_eq!(e(1000).volume_tag.as_deref(), Some("A00000L8"));
    assert!(e(1000).full && e(1000).access && !e(1000).except);
    assert!(!e(1003).full && e(1003).volume_tag.is_none());
    assert!(e(1006).full && e(1006).volume_tag.is_none());
    assert_eq!(
        (e(16).kind, e(16).import_export, e(16).volume_tag.as_deref()),
        (ElementType::ImportExport, true, Some("CLN001L1"))
    );
    assert_eq!(
        (e(500).kind, e(500).source, e(500).volume_tag.as_deref()),
        (ElementType::DataTransfer, Some(1003), Some("A00003L8"))
    );
    assert!(e(501).except && !e(501).full);
    assert_eq!((e(501).asc, e(501).ascq), (0x04, 0x02));
}

#[test]
fn report_cut_by_allocation_pages_on() {
    let r = report(1000, 8, &[storage_page()]);
    // Three whole descriptors and 20 bytes of the fourth.
    let cut = &r[..16 + 3 * 52 + 20];
    let s = ElementStatus::decode(cut).unwrap();
    assert_eq!(s.elements.len(), 3);
    assert!(!s.is_complete());
    assert_eq!(s.next_start(), Some(1003));
    assert_eq!((s.available, s.received), (r.len(), cut.len()));
    // Not even one descriptor: a larger allocation is needed.
    let s = ElementStatus::decode(&r[..40]).unwrap();
    assert!(s.elements.is_empty() && !s.is_complete() && s.next_start().is_none());
}

#[test]
fn tgt_short_report_is_complete() {
    // tgt sends 8 bytes less than the report: the last descriptor loses its vendor tail only.
    let r = report(1000, 8, &[storage_page()]);
    let s = ElementStatus::decode(&r[..r.len() - 8]).unwrap();
    assert!(s.is_complete());
    assert_eq!(s.elements.len(), 8);
    assert_eq!(s.elements[7].volume_tag.as_deref(), Some("A00007L8"));
}

#[test]
fn tgt_report_of_no_elements_is_empty() {
    // tgt, asked for the import/export elements of a library without any: no elements, and a
    // zeroed page header after the element status header.
    let mut r = report(0, 0, &[]);
    r[7] = 8;
    r.extend_from_slice(&[0; 8]);
    let s = ElementStatus::decode(&r).unwrap();
    assert!(s.elements.is_empty() && s.is_complete() && s.next_start().is_none());
}

#[test]
fn report_without_volume_tags() {
    let descs = [desc(16, 500, FULL, Some(1001), None), desc(16, 501, EMPTY, None, None)];
    let r = report(500, 2, &[page(4, false, 16, &descs)]);
    let s = ElementStatus::decode(&r).unwrap();
    assert_eq!(s.elements.len(), 2);
    assert_eq!(s.elements[0].source, Some(1001));
    assert!(s.elements.iter().all(|e| e.volume_tag.is_none()));
}

#[test]
fn malformed_reports() {
    assert!(matches!(ElementStatus::decode(&[0; 7]), Err(PageError::Short { .. })));
    let empty = ElementStatus::decode(&report(0, 0, &[])).unwrap();
    assert!(empty.is_complete() && empty.elements.is_empty());
    let bad_type = report(1, 1, &[page(7, false, 12, &[desc(12, 1, 0, None, None)])]);
    assert!(matches!(ElementStatus::decode(&bad_type), Err(PageError::Invalid { offset: 8, .. })));
    // Volume tags announced but descriptors too short to hold one.
    let short = report(1, 1, &[page(2, true, 16, &[desc(16, 1, 0, None, None)])]);
    assert!(matches!(ElementStatus::decode(&short), Err(PageError::Invalid { offset: 10, .. })));
}

#[test]
fn element_status_encoder_matches_the_layout() {
    let mut slot = Element::empty(ElementType::Storage, 1000);
    slot.full = true;
    slot.volume_tag = Some("A00000L8".into());
    let mut drive = Element::empty(ElementType::DataTransfer, 500);
    drive.source = Some(1003);
    let b = encode_element_status(&[slot.clone(), drive.clone()], true);
    let expected = report(
        1000,
        2,
        &[
            page(2, true, 48, &[desc(48, 1000, FULL, None, Some("A00000L8"))]),
            page(4, true, 48, &[desc(48, 500, EMPTY, Some(1003), Some(""))]),
        ],
    );
    assert_eq!(b, expected);
    assert_eq!(ElementStatus::decode(&b).unwrap().elements, [slot, drive]);
}

fn arb_element() -> impl Strategy<Value = Element> {
    (
        1u8..=4,
        any::<u16>(),
        any::<(bool, bool, bool, bool)>(),
        any::<(u8, u8)>(),
        any::<Option<u16>>(),
        proptest::option::of("[A-Z0-9]{6}L[5-9]"),
    )
        .prop_map(
            |(kind, address, (full, except, access, import_export), (asc, ascq), source, volume_tag)| {
                Element {
                    kind: ElementType::from_code(kind).unwrap(),
                    address,
                    full,
                    except,
                    access,
                    import_export,
                    asc,
                    ascq,
                    source,
                    volume_tag,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Element status reports with random corruption decode or fail without panicking.
    #[test]
    fn element_status_takes_corrupted_reports(
        elements in proptest::collection::vec(arb_element(), 0..20),
        voltag in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = encode_element_status(&elements, voltag);
        for (at, v) in flips {
            let i = at.index(b.len());
            b[i] = v;
        }
        let len = cut.index(b.len() + 1);
        let _ = ElementStatus::decode(&b[..len]);
    }

    /// Any cut of a report decodes to a prefix of its elements, and a whole one to all of them;
    /// paging from `next_start` never goes backwards.
    #[test]
    fn element_status_round_trips_and_pages(
        mut elements in proptest::collection::vec(arb_element(), 0..30),
        cut in any::<prop::sample::Index>(),
    ) {
        elements.sort_by_key(|e| (e.kind, e.address));
        let b = encode_element_status(&elements, true);
        let whole = ElementStatus::decode(&b).unwrap();
        prop_assert_eq!(&whole.elements, &elements);
        prop_assert!(whole.is_complete());
        let len = 8 + cut.index(b.len() - 7);
        let part = ElementStatus::decode(&b[..len]).unwrap();
        prop_assert_eq!(&part.elements[..], &elements[..part.elements.len()]);
        if let (Some(next), Some(last)) = (part.next_start(), part.elements.last()) {
            prop_assert!(next > last.address);
        }
        let no_tags = ElementStatus::decode(&encode_element_status(&elements, false)).unwrap();
        prop_assert!(no_tags.elements.iter().all(|e| e.volume_tag.is_none()));
        prop_assert_eq!(no_tags.elements.len(), elements.len());
    }
}
