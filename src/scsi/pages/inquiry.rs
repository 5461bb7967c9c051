//! Identification and position data: standard INQUIRY, VPD page 0x80 (unit serial number),
//! READ BLOCK LIMITS and READ POSITION (long form).

use super::{PageError, VPD_SERIAL, need};
use crate::scsi::bytes::{ascii_field, put_ascii, u16_at, u24_at, u32_at, u64_at};

/// Peripheral device type of tape drives (sequential access).
pub const DEVICE_TYPE_TAPE: u8 = 0x01;
/// Peripheral device type of media changers.
pub const DEVICE_TYPE_CHANGER: u8 = 0x08;
/// Length of standard INQUIRY data up to the revision field.
pub const INQUIRY_LEN: usize = 36;

/// Standard INQUIRY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    /// Peripheral qualifier: 0 when a device is connected at this LUN.
    pub qualifier: u8,
    /// Peripheral device type ([`DEVICE_TYPE_TAPE`], [`DEVICE_TYPE_CHANGER`]…).
    pub device_type: u8,
    /// Removable medium (RMB).
    pub removable: bool,
    /// The SPC version the device claims.
    pub version: u8,
    /// T10 vendor identification, trimmed.
    pub vendor: String,
    /// Product identification, trimmed.
    pub product: String,
    /// Product revision level, trimmed.
    pub revision: String,
}

impl Inquiry {
    /// Decodes standard INQUIRY data (at least [`INQUIRY_LEN`] bytes).
    pub fn decode(buf: &[u8]) -> Result<Inquiry, PageError> {
        need("INQUIRY", buf, INQUIRY_LEN)?;
        Ok(Inquiry {
            qualifier: buf[0] >> 5,
            device_type: buf[0] & 0x1F,
            removable: buf[1] & 0x80 != 0,
            version: buf[2],
            vendor: ascii_field(&buf[8..16]),
            product: ascii_field(&buf[16..32]),
            revision: ascii_field(&buf[32..36]),
        })
    }

    /// Encodes as a device answers (SPC-4 version, response data format 2, 36 bytes). Text
    /// fields are cut to their width.
    pub fn encode(&self) -> [u8; INQUIRY_LEN] {
        let mut b = [0u8; INQUIRY_LEN];
        b[0] = (self.qualifier << 5) | (self.device_type & 0x1F);
        b[1] = if self.removable { 0x80 } else { 0 };
        b[2] = self.version;
        b[3] = 0x02;
        b[4] = (INQUIRY_LEN - 5) as u8;
        put_ascii(&mut b[8..16], &self.vendor);
        put_ascii(&mut b[16..32], &self.product);
        put_ascii(&mut b[32..36], &self.revision);
        b
    }

    /// A device is present at this LUN.
    pub fn is_present(&self) -> bool {
        self.qualifier == 0
    }

    /// It is a tape drive.
    pub fn is_tape(&self) -> bool {
        self.is_present() && self.device_type == DEVICE_TYPE_TAPE
    }

    /// It is a media changer.
    pub fn is_changer(&self) -> bool {
        self.is_present() && self.device_type == DEVICE_TYPE_CHANGER
    }
}

/// Decodes VPD page 0x80: the unit serial number, trimmed.
pub fn decode_serial(buf: &[u8]) -> Result<String, PageError> {
    const WHAT: &str = "VPD serial number page";
    need(WHAT, buf, 4)?;
    if buf[1] != VPD_SERIAL {
        let detail = format!("page code {:#04x}, expected {VPD_SERIAL:#04x}", buf[1]);
        return Err(PageError::Invalid { what: WHAT, offset: 1, detail });
    }
    let len = usize::from(u16_at(buf, 2).unwrap_or(0));
    need(WHAT, buf, 4 + len)?;
    Ok(ascii_field(&buf[4..4 + len]))
}

/// Encodes VPD page 0x80 for a device of `device_type`.
///
/// # Panics
/// If `serial` is longer than a page can hold (65535 bytes).
pub fn encode_serial(device_type: u8, serial: &str) -> Vec<u8> {
    let len = u16::try_from(serial.len()).expect("serial fits a VPD page");
    let mut b = vec![device_type & 0x1F, VPD_SERIAL];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(serial.as_bytes());
    b
}

/// READ BLOCK LIMITS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    /// Block lengths must be multiples of 2^granularity.
    pub granularity: u8,
    /// Largest block in bytes (0: not specified).
    pub max_block_len: u32,
    /// Smallest block in bytes.
    pub min_block_len: u16,
}

impl BlockLimits {
    /// Decodes the 6-byte response.
    pub fn decode(buf: &[u8]) -> Result<BlockLimits, PageError> {
        need("READ BLOCK LIMITS", buf, 6)?;
        Ok(BlockLimits {
            granularity: buf[0] & 0x1F,
            max_block_len: u24_at(buf, 1).unwrap_or(0),
            min_block_len: u16_at(buf, 4).unwrap_or(0),
        })
    }

    /// Encodes the 6-byte response.
    ///
    /// # Panics
    /// If `max_block_len` does not fit 24 bits.
    pub fn encode(&self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b[0] = self.granularity & 0x1F;
        crate::scsi::bytes::put_u24(&mut b, 1, self.max_block_len);
        b[4..6].copy_from_slice(&self.min_block_len.to_be_bytes());
        b
    }

    /// Whether a block of `len` bytes is within the limits.
    pub fn accepts(&self, len: u32) -> bool {
        let granular = len.trailing_zeros() >= u32::from(self.granularity);
        len >= u32::from(self.min_block_len)
            && (self.max_block_len == 0 || len <= self.max_block_len)
            && granular
    }
}

/// READ POSITION long form data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// At the beginning of the partition.
    pub bop: bool,
    /// Past the early-warning point, at the end of the partition.
    pub eop: bool,
    /// MPU: the file and set numbers are not known.
    pub mark_position_unknown: bool,
    /// LONU: the partition and block numbers are not known.
    pub object_unknown: bool,
    /// Partition number.
    pub partition: u32,
    /// Logical object (block) number: blocks and filemarks from the beginning of the
    /// partition.
    pub block: u64,
    /// Logical file identifier: filemarks from the beginning of the partition.
    pub file: u64,
}

impl Position {
    /// Decodes the 32-byte long form.
    pub fn decode(buf: &[u8]) -> Result<Position, PageError> {
        need("READ POSITION (long form)", buf, 32)?;
        Ok(Position {
            bop: buf[0] & 0x80 != 0,
            eop: buf[0] & 0x40 != 0,
            mark_position_unknown: buf[0] & 0x08 != 0,
            object_unknown: buf[0] & 0x04 != 0,
            partition: u32_at(buf, 4).unwrap_or(0),
            block: u64_at(buf, 8).unwrap_or(0),
            file: u64_at(buf, 16).unwrap_or(0),
        })
    }

    /// Encodes the 32-byte long form.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = (u8::from(self.bop) << 7)
            | (u8::from(self.eop) << 6)
            | (u8::from(self.mark_position_unknown) << 3)
            | (u8::from(self.object_unknown) << 2);
        b[4..8].copy_from_slice(&self.partition.to_be_bytes());
        b[8..16].copy_from_slice(&self.block.to_be_bytes());
        b[16..24].copy_from_slice(&self.file.to_be_bytes());
        b
    }
}
