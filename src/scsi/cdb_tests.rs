//! CDB builders against byte layouts written out from SPC-4, SSC-4 and SMC-3.

use super::*;
use Direction::{FromDevice, ToDevice};

const NO_DATA: Direction = Direction::None;

fn check(c: Cdb, bytes: &[u8], dir: Direction, len: usize, timeout: TimeoutClass) {
    assert_eq!(c.bytes(), bytes, "{}", c.name());
    assert_eq!(c.direction(), dir, "{}", c.name());
    assert_eq!(c.transfer_len(), len, "{}", c.name());
    assert_eq!(c.timeout_class(), timeout, "{}", c.name());
}

#[test]
fn spc_commands() {
    use TimeoutClass::Quick;
    check(test_unit_ready(), &[0, 0, 0, 0, 0, 0], NO_DATA, 0, Quick);
    check(request_sense(252), &[0x03, 0, 0, 0, 252, 0], FromDevice, 252, Quick);
    check(inquiry(96), &[0x12, 0, 0, 0, 96, 0], FromDevice, 96, Quick);
    check(inquiry(0x0123), &[0x12, 0, 0, 0x01, 0x23, 0], FromDevice, 0x123, Quick);
    check(inquiry_serial(64), &[0x12, 0x01, 0x80, 0, 64, 0], FromDevice, 64, Quick);
    check(
        mode_sense6(0x0F, 0, PageControl::Current, false, 255),
        &[0x1A, 0, 0x0F, 0, 255, 0],
        FromDevice,
        255,
        Quick,
    );
    check(
        mode_sense6(0x3F, 0, PageControl::Default, true, 64),
        &[0x1A, 0x08, 0xBF, 0, 64, 0],
        FromDevice,
        64,
        Quick,
    );
    check(
        mode_sense10(0x1D, 0, PageControl::Saved, true, 0x0102),
        &[0x5A, 0x08, 0xDD, 0, 0, 0, 0, 0x01, 0x02, 0],
        FromDevice,
        0x102,
        Quick,
    );
    check(mode_select6(12, false), &[0x15, 0x10, 0, 0, 12, 0], ToDevice, 12, Quick);
    check(mode_select6(28, true), &[0x15, 0x11, 0, 0, 28, 0], ToDevice, 28, Quick);
    check(mode_select10(0x0120, false), &[0x55, 0x10, 0, 0, 0, 0, 0, 0x01, 0x20, 0], ToDevice, 0x120, Quick);
    check(log_sense_tape_alert(512), &[0x4D, 0, 0x6E, 0, 0, 0, 0, 0x02, 0x00, 0], FromDevice, 512, Quick);
}

#[test]
fn ssc_data_commands() {
    use TimeoutClass::Io;
    check(read6_fixed(8, 512), &[0x08, 0x01, 0, 0, 8, 0], FromDevice, 4096, Io);
    check(read6_variable(0x040000, false), &[0x08, 0, 0x04, 0, 0, 0], FromDevice, 0x40000, Io);
    check(read6_variable(0x123456, true), &[0x08, 0x02, 0x12, 0x34, 0x56, 0], FromDevice, 0x123456, Io);
    check(write6_fixed(3, 0x10000), &[0x0A, 0x01, 0, 0, 3, 0], ToDevice, 0x30000, Io);
    check(write6_variable(0xFFFFFF), &[0x0A, 0, 0xFF, 0xFF, 0xFF, 0], ToDevice, 0xFFFFFF, Io);
    check(write_filemarks6(1, false), &[0x10, 0, 0, 0, 1, 0], NO_DATA, 0, Io);
    check(write_filemarks6(2, true), &[0x10, 0x01, 0, 0, 2, 0], NO_DATA, 0, Io);
    check(write_filemarks6(0, false), &[0x10, 0, 0, 0, 0, 0], NO_DATA, 0, Io);
}

#[test]
fn ssc_positioning_commands() {
    use TimeoutClass::*;
    check(space6(Space::Filemarks(1)), &[0x11, 0x01, 0, 0, 1, 0], NO_DATA, 0, Long);
    check(space6(Space::Filemarks(-1)), &[0x11, 0x01, 0xFF, 0xFF, 0xFF, 0], NO_DATA, 0, Long);
    check(space6(Space::Blocks(-0x800000)), &[0x11, 0, 0x80, 0, 0, 0], NO_DATA, 0, Long);
    check(space6(Space::Blocks(0x7FFFFF)), &[0x11, 0, 0x7F, 0xFF, 0xFF, 0], NO_DATA, 0, Long);
    check(space6(Space::EndOfData), &[0x11, 0x03, 0, 0, 0, 0], NO_DATA, 0, Long);
    check(
        space16(Space::Blocks(-2)),
        &[0x91, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 0, 0],
        NO_DATA,
        0,
        Long,
    );
    check(
        space16(Space::Filemarks(0x0102_0304_0506)),
        &[0x91, 0x01, 0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0, 0, 0, 0],
        NO_DATA,
        0,
        Long,
    );
    check(rewind(false), &[0x01, 0, 0, 0, 0, 0], NO_DATA, 0, Long);
    check(rewind(true), &[0x01, 0x01, 0, 0, 0, 0], NO_DATA, 0, Long);
    check(load(false), &[0x1B, 0, 0, 0, 0x01, 0], NO_DATA, 0, Long);
    check(unload(true), &[0x1B, 0x01, 0, 0, 0, 0], NO_DATA, 0, Long);
    check(read_position_long(), &[0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0], FromDevice, 32, Quick);
    check(
        locate16(0x0000_0001_0000_0002, None, false),
        &[0x92, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0x02, 0, 0, 0, 0],
        NO_DATA,
        0,
        Long,
    );
    check(
        locate16(7, Some(1), true),
        &[0x92, 0x03, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0],
        NO_DATA,
        0,
        Long,
    );
    check(locate10(0x0102_0304, true), &[0x2B, 0x01, 0, 1, 2, 3, 4, 0, 0, 0], NO_DATA, 0, Long);
    check(read_block_limits(), &[0x05, 0, 0, 0, 0, 0], FromDevice, 6, Quick);
    check(erase_long(false), &[0x19, 0x01, 0, 0, 0, 0], NO_DATA, 0, Erase);
    check(erase_long(true), &[0x19, 0x03, 0, 0, 0, 0], NO_DATA, 0, Erase);
}

#[test]
fn smc_commands() {
    use TimeoutClass::*;
    check(
        read_element_status(Some(ElementType::Storage), 0x03E8, 8, true, 4096),
        &[0xB8, 0x12, 0x03, 0xE8, 0, 8, 0, 0, 0x10, 0, 0, 0],
        FromDevice,
        4096,
        Io,
    );
    check(
        read_element_status(None, 0, 0xFFFF, false, 1024),
        &[0xB8, 0x00, 0, 0, 0xFF, 0xFF, 0, 0, 0x04, 0, 0, 0],
        FromDevice,
        1024,
        Io,
    );
    check(
        read_element_status(Some(ElementType::DataTransfer), 1, 2, true, 300),
        &[0xB8, 0x14, 0, 1, 0, 2, 0, 0, 0x01, 0x2C, 0, 0],
        FromDevice,
        300,
        Io,
    );
    check(
        move_medium(0, 0x03E9, 0x0001),
        &[0xA5, 0, 0, 0, 0x03, 0xE9, 0, 0x01, 0, 0, 0, 0],
        NO_DATA,
        0,
        Long,
    );
    check(initialize_element_status(), &[0x07, 0, 0, 0, 0, 0], NO_DATA, 0, Long);
}

#[test]
fn element_type_codes_round_trip() {
    for t in
        [ElementType::Transport, ElementType::Storage, ElementType::ImportExport, ElementType::DataTransfer]
    {
        assert_eq!(ElementType::from_code(t.code()), Some(t));
    }
    assert_eq!(ElementType::from_code(0), None);
    assert_eq!(ElementType::from_code(5), None);
}

#[test]
fn names_and_timeouts() {
    assert_eq!(read_position_long().name(), "READ POSITION");
    assert_eq!(move_medium(0, 1, 2).name(), "MOVE MEDIUM");
    assert_eq!(opcode_name(0xEE), "unknown command");
    assert_eq!(test_unit_ready().timeout(), QUICK_TIMEOUT);
    assert_eq!(erase_long(false).timeout(), ERASE_TIMEOUT);
    assert_eq!(rewind(false).timeout(), LONG_TIMEOUT);
    assert_eq!(read6_variable(1, false).timeout(), IO_TIMEOUT);
}

#[test]
fn zero_length_transfers_have_no_data_phase() {
    let c = read6_fixed(0, 512);
    assert_eq!(c.direction(), Direction::None);
    assert_eq!(c.transfer_len(), 0);
    let c = mode_select6(0, false);
    assert_eq!(c.direction(), Direction::None);
}

#[test]
#[should_panic(expected = "does not fit 24 bits")]
fn space6_refuses_wide_counts() {
    space6(Space::Blocks(0x80_0000));
}

#[test]
#[should_panic(expected = "does not fit a 6-byte CDB")]
fn read6_refuses_wide_lengths() {
    read6_variable(0x0100_0000, false);
}

#[test]
#[should_panic(expected = "above the maximum")]
fn element_status_allocation_is_bounded() {
    read_element_status(None, 0, 1, false, MAX_ELEMENT_STATUS_ALLOC + 1);
}

#[test]
#[should_panic(expected = "6 to 16 bytes")]
fn raw_cdbs_have_a_valid_length() {
    Cdb::new(&[0; 17], Direction::None, 0, TimeoutClass::Quick);
}

#[test]
#[should_panic(expected = "data direction")]
fn raw_cdbs_with_data_need_a_direction() {
    Cdb::new(&[0; 6], Direction::None, 4, TimeoutClass::Quick);
}
