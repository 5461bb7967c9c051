//! Response decoders on hand-built responses shaped like those of LTO drives, tape libraries
//! and `tgt`, and property tests: arbitrary bytes never panic, encoders round-trip.

use proptest::prelude::*;

use super::inquiry::{DEVICE_TYPE_CHANGER, DEVICE_TYPE_TAPE};
use super::mode::{ElementRange, iter_pages};
use super::tape_alert::{self, HARD_ERROR, flag_name};
use super::*;
use crate::scsi::cdb::ElementType;

/// `text` left-aligned in a field of `width` bytes padded with spaces.
fn field(text: &str, width: usize) -> Vec<u8> {
    let mut f = text.as_bytes().to_vec();
    f.resize(width, b' ');
    f
}

#[test]
fn lto_drive_inquiry() {
    // IBM LTO-8 drive: sequential access, removable, SPC-4, 56 bytes.
    let mut b = vec![0x01, 0x80, 0x06, 0x02, 0x33, 0x00, 0x00, 0x30];
    b.extend(field("IBM", 8));
    b.extend(field("ULT3580-TD8", 16));
    b.extend(field("Q4A3", 4));
    b.resize(56, 0);
    let i = Inquiry::decode(&b).unwrap();
    assert_eq!((i.qualifier, i.device_type, i.removable, i.version), (0, DEVICE_TYPE_TAPE, true, 6));
    assert_eq!((i.vendor.as_str(), i.product.as_str(), i.revision.as_str()), ("IBM", "ULT3580-TD8", "Q4A3"));
    assert!(i.is_tape() && !i.is_changer());
    assert_eq!(Inquiry::decode(&i.encode()).unwrap(), i);
}

#[test]
fn changer_inquiry_and_absent_lun() {
    let mut b = vec![0x08, 0x80, 0x05, 0x02, 0x1F, 0, 0, 0];
    b.extend(field("HP", 8));
    b.extend(field("MSL G3 Series", 16));
    b.extend(field("9.10", 4));
    let i = Inquiry::decode(&b).unwrap();
    assert!(i.is_changer());
    assert_eq!(i.product, "MSL G3 Series");
    // Peripheral qualifier 3: no device at this LUN.
    b[0] = 0x7F;
    let i = Inquiry::decode(&b).unwrap();
    assert!(!i.is_present() && !i.is_changer());
    assert_eq!(Inquiry::decode(&b[..35]), Err(PageError::Short { what: "INQUIRY", needed: 36, got: 35 }));
}

#[test]
fn serial_number_page() {
    let mut b = vec![0x01, 0x80, 0x00, 0x0C];
    b.extend_from_slice(b"  1068123456");
    assert_eq!(decode_serial(&b).unwrap(), "1068123456");
    // Cut by the allocation length.
    assert!(matches!(decode_serial(&b[..10]), Err(PageError::Short { needed: 16, got: 10, .. })));
    // Another VPD page.
    b[1] = 0x83;
    assert!(matches!(decode_serial(&b), Err(PageError::Invalid { offset: 1, .. })));
    assert_eq!(decode_serial(&encode_serial(DEVICE_TYPE_CHANGER, "MXA123ABC")).unwrap(), "MXA123ABC");
}

#[test]
fn block_limits() {
    // LTO: any length from 1 byte to 8 MiB.
    let l = BlockLimits::decode(&[0x00, 0x80, 0x00, 0x00, 0x00, 0x01]).unwrap();
    assert_eq!(l, BlockLimits { granularity: 0, max_block_len: 0x80_0000, min_block_len: 1 });
    assert!(l.accepts(1) && l.accepts(0x80_0000) && !l.accepts(0x80_0001) && !l.accepts(0));
    // tgt, fixed 512-byte blocks, granularity 9.
    let t = BlockLimits::decode(&[0x09, 0x00, 0x02, 0x00, 0x02, 0x00]).unwrap();
    assert!(t.accepts(512) && !t.accepts(513) && !t.accepts(1024));
    assert_eq!(BlockLimits::decode(&t.encode()).unwrap(), t);
    assert!(BlockLimits::decode(&[0; 5]).is_err());
}

#[test]
fn read_position_long_form() {
    let mut b = [0u8; 32];
    b[0] = 0x80;
    let p = Position::decode(&b).unwrap();
    assert!(p.bop && !p.eop && !p.object_unknown);
    assert_eq!((p.partition, p.block, p.file), (0, 0, 0));
    // Partition 1, block 2^32 + 2, file 3, past early warning.
    let mut b = [0u8; 32];
    b[0] = 0x40;
    b[7] = 1;
    b[8..16].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    b[23] = 3;
    let p = Position::decode(&b).unwrap();
    assert!(!p.bop && p.eop);
    assert_eq!((p.partition, p.block, p.file), (1, 0x1_0000_0002, 3));
    assert_eq!(Position::decode(&p.encode()).unwrap(), p);
    // tgt answers 32 in byte 0 and zeros: decodes, position 0.
    let mut t = [0u8; 32];
    t[0] = 32;
    assert_eq!(Position::decode(&t).unwrap().block, 0);
    b[0] = 0x0C;
    let p = Position::decode(&b).unwrap();
    assert!(p.mark_position_unknown && p.object_unknown);
    assert!(Position::decode(&b[..31]).is_err());
}

/// MODE SENSE(6) of an LTO drive: buffered mode 1, a block descriptor (density 0x58,
/// variable blocks) and the data compression page with DCE, DCC, DDE.
fn lto_mode_sense6(dsp: u8) -> Vec<u8> {
    let mut b = vec![27, 0x00, dsp, 8, 0x58, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&[0x0F, 0x0E, 0xC0, 0x80, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    b
}

#[test]
fn mode_sense6_with_block_descriptor_and_compression() {
    let m = ModeParams::decode(&lto_mode_sense6(0x10), ModeForm::Six).unwrap();
    assert_eq!(m.block_descriptor, Some(BlockDescriptor { density: 0x58, blocks: 0, block_len: 0 }));
    assert!(!m.write_protected());
    assert_eq!(m.buffered_mode(), 1);
    let c = CompressionPage::decode(m.page(COMPRESSION_PAGE).unwrap()).unwrap();
    assert!(c.dce && c.dcc && c.dde);
    assert_eq!((c.compression_algorithm, c.decompression_algorithm), (1, 1));
    assert!(m.page(ELEMENT_ADDRESS_PAGE).is_none());
    let wp = ModeParams::decode(&lto_mode_sense6(0x90), ModeForm::Six).unwrap();
    assert!(wp.write_protected());
    assert_eq!(ModeParams::decode(&m.encode_sense(ModeForm::Six), ModeForm::Six).unwrap(), m);
}

#[test]
fn mode_sense_cut_by_allocation() {
    let b = lto_mode_sense6(0x10);
    // Only the header and block descriptor came: the page is missing, the length says more.
    let m = ModeParams::decode(&b[..14], ModeForm::Six).unwrap();
    assert_eq!(ModeForm::Six.available(&b[..14]), Some(28));
    assert!(m.page(COMPRESSION_PAGE).is_none());
    assert_eq!(m.block_descriptor.unwrap().density, 0x58);
    // The block descriptor itself cut: an error.
    assert!(matches!(ModeParams::decode(&b[..10], ModeForm::Six), Err(PageError::Short { needed: 12, .. })));
    // A block descriptor length that is not a multiple of 8.
    let mut bad = b.clone();
    bad[3] = 5;
    assert!(matches!(ModeParams::decode(&bad, ModeForm::Six), Err(PageError::Invalid { offset: 3, .. })));
}

#[test]
fn mode_select_data_sets_block_size_and_compression() {
    let page = CompressionPage { dce: false, ..CompressionPage::decode(&lto_mode_sense6(0)[12..]).unwrap() };
    let mut pages = page.encode().to_vec();
    pages[0] |= 0x80; // as read back with PS set
    let m = ModeParams {
        medium_type: 0,
        device_specific: 0x90,
        block_descriptor: Some(BlockDescriptor::block_size(0x40000)),
        pages,
    };
    let s = m.encode_select(ModeForm::Six);
    assert_eq!(s[..12], [0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0x04, 0x00, 0x00]);
    assert_eq!(s[12..16], [0x0F, 0x0E, 0x40, 0x80]);
    assert_eq!(s.len(), 28);
    let s10 = m.encode_select(ModeForm::Ten);
    assert_eq!(s10[..8], [0, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(s10[16], 0x0F);
}

#[test]
fn changer_mode_sense10_element_addresses() {
    // 1 robot at 1, 8 slots from 1000, 2 mail slots from 16, 2 drives from 500; PS set.
    let mut b = vec![0x00, 0x1A, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&[0x9D, 0x12, 0, 1, 0, 1, 0x03, 0xE8, 0, 8, 0, 0x10, 0, 2, 0x01, 0xF4, 0, 2, 0, 0]);
    let m = ModeParams::decode(&b, ModeForm::Ten).unwrap();
    assert_eq!(m.block_descriptor, None);
    let a = ElementAddresses::decode(m.page(ELEMENT_ADDRESS_PAGE).unwrap()).unwrap();
    assert_eq!(a.transport, ElementRange { first: 1, count: 1 });
    assert_eq!(a.range(ElementType::Storage), ElementRange { first: 1000, count: 8 });
    assert_eq!(a.import_export, ElementRange { first: 16, count: 2 });
    assert_eq!(a.data_transfer, ElementRange { first: 500, count: 2 });
    assert!(a.storage.contains(1007) && !a.storage.contains(1008) && !a.storage.contains(999));
    assert_eq!(ElementAddresses::decode(&a.encode()).unwrap(), a);
    assert!(ElementAddresses::decode(&b[8..18]).is_err());
    assert!(matches!(CompressionPage::decode(&b[8..]), Err(PageError::Invalid { offset: 0, .. })));
    // Long LBA descriptors are refused.
    b[4] = 1;
    assert!(ModeParams::decode(&b, ModeForm::Ten).is_err());
}

#[test]
fn page_lists_with_subpages() {
    // Page 0x10 (2+2 bytes), a subpage-format page 0x1C/01 (4+4 bytes), then a cut page.
    let pages = [0x10, 2, 0xAA, 0xBB, 0x5C, 0x01, 0x00, 0x04, 1, 2, 3, 4, 0x0F, 0x0E, 0];
    let found: Vec<&[u8]> = iter_pages(&pages).collect();
    assert_eq!(found, [&pages[0..4], &pages[4..12]]);
    let m = ModeParams { medium_type: 0, device_specific: 0, block_descriptor: None, pages: pages.to_vec() };
    assert_eq!(m.page(0x10), Some(&pages[0..4]));
    assert_eq!(m.page(0x1C), None, "subpages are not page 0x1C itself");
    assert_eq!(m.page(0x0F), None, "a cut page is not returned");
}

// -- TapeAlert ----------------------------------------------------------------------------------

#[test]
fn tape_alert_page() {
    // Parameters 0x0003 (set), 0x0014 (set), 0x0015 (clear), 0x0100 (out of range, set), then a
    // parameter cut short.
    let mut b = vec![0x2E, 0, 0, 0];
    for (code, v) in [(0x0003u16, 1u8), (0x0014, 1), (0x0015, 0), (0x0100, 1)] {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(&[0x03, 1, v]);
    }
    b.extend_from_slice(&[0, 0x1E, 0x03, 1]);
    let len = (b.len() - 4) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    let t = TapeAlert::decode(&b).unwrap();
    assert_eq!(t.flags().collect::<Vec<_>>(), [HARD_ERROR, tape_alert::CLEAN_NOW]);
    assert!(t.cleaning_required() && !t.cleaning_requested() && t.hard_error());
    assert_eq!(flag_name(0x14), Some("clean now"));
    let periodic = TapeAlert::default().with(tape_alert::CLEAN_PERIODIC);
    assert!(periodic.cleaning_requested() && !periodic.hard_error() && !periodic.is_empty());
    assert_eq!(TapeAlert::decode(&periodic.encode()).unwrap(), periodic);
    assert!(TapeAlert::default().with(0).is_empty() && TapeAlert::default().with(65).is_empty());
    // Bytes past the page length are not parameters, even when a parameter header is inside.
    let cut = [0x2E, 0, 0, 4, 0, 0x03, 0x03, 1, 1];
    assert!(TapeAlert::decode(&cut).unwrap().is_empty());
    b[0] = 0x2F;
    assert!(TapeAlert::decode(&b).is_err());
}

// -- properties ---------------------------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Every decoder takes arbitrary bytes without panicking.
    #[test]
    fn decoders_take_arbitrary_bytes(b in bytes(600)) {
        let _ = Inquiry::decode(&b);
        let _ = decode_serial(&b);
        let _ = BlockLimits::decode(&b);
        let _ = Position::decode(&b);
        for form in [ModeForm::Six, ModeForm::Ten] {
            if let Ok(m) = ModeParams::decode(&b, form) {
                let _ = m.page(COMPRESSION_PAGE).map(CompressionPage::decode);
                let _ = m.page(ELEMENT_ADDRESS_PAGE).map(ElementAddresses::decode);
                let _ = iter_pages(&m.pages).count();
            }
        }
        let _ = CompressionPage::decode(&b);
        let _ = ElementAddresses::decode(&b);
        let _ = TapeAlert::decode(&b);
        if let Ok(s) = ElementStatus::decode(&b) {
            let _ = s.next_start();
            prop_assert!(s.elements.len() * 12 <= b.len());
        }
    }

    /// Fixed-layout pages round-trip.
    #[test]
    fn fixed_pages_round_trip(
        pos in any::<(bool, bool, bool, bool, u32, u64, u64)>(),
        limits in (0u8..32, 0u32..0x100_0000, any::<u16>()),
        comp in any::<(bool, bool, bool, u8, u32, u32)>(),
        addrs in any::<[(u16, u16); 4]>(),
        alerts in any::<u64>(),
    ) {
        let p = Position { bop: pos.0, eop: pos.1, mark_position_unknown: pos.2, object_unknown: pos.3, partition: pos.4, block: pos.5, file: pos.6 };
        prop_assert_eq!(Position::decode(&p.encode()).unwrap(), p);
        let l = BlockLimits { granularity: limits.0, max_block_len: limits.1, min_block_len: limits.2 };
        prop_assert_eq!(BlockLimits::decode(&l.encode()).unwrap(), l);
        let c = CompressionPage { dce: comp.0, dcc: comp.1, dde: comp.2, red: comp.3 & 3, compression_algorithm: comp.4, decompression_algorithm: comp.5 };
        prop_assert_eq!(CompressionPage::decode(&c.encode()).unwrap(), c);
        let r = |(first, count)| ElementRange { first, count };
        let a = ElementAddresses { transport: r(addrs[0]), storage: r(addrs[1]), import_export: r(addrs[2]), data_transfer: r(addrs[3]) };
        prop_assert_eq!(ElementAddresses::decode(&a.encode()).unwrap(), a);
        let t = (1..=64u8).filter(|f| alerts & (1 << (f - 1)) != 0).fold(TapeAlert::default(), TapeAlert::with);
        prop_assert_eq!(TapeAlert::decode(&t.encode()).unwrap(), t);
    }

    /// INQUIRY, serial and mode data round-trip.
    #[test]
    fn identification_and_mode_round_trip(
        qualifier in 0u8..8,
        device_type in 0u8..32,
        text in ("[A-Z]{1,8}", "[A-Z0-9]([A-Z0-9 -]{0,13}[A-Z0-9])?", "[0-9A-Z]{4}"),
        serial in "[A-Z0-9]{1,40}",
        medium_type in any::<u8>(),
        device_specific in any::<u8>(),
        bd in proptest::option::of((any::<u8>(), 0u32..0x100_0000, 0u32..0x100_0000)),
        pages in bytes(200),
    ) {
        let i = Inquiry { qualifier, device_type, removable: true, version: 6, vendor: text.0, product: text.1, revision: text.2 };
        prop_assert_eq!(Inquiry::decode(&i.encode()).unwrap(), i);
        prop_assert_eq!(decode_serial(&encode_serial(device_type, &serial)).unwrap(), serial);
        let block_descriptor = bd.map(|(density, blocks, block_len)| BlockDescriptor { density, blocks, block_len });
        let m = ModeParams { medium_type, device_specific, block_descriptor, pages };
        for form in [ModeForm::Six, ModeForm::Ten] {
            let b = m.encode_sense(form);
            prop_assert_eq!(form.available(&b), Some(b.len()));
            prop_assert_eq!(ModeParams::decode(&b, form).unwrap(), m.clone());
        }
    }
}
