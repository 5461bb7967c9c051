//! Volume labels on media: making a new one, and reading one back. The label is the first
//! record of a medium, alone in its first block (zero-padded).

use crate::format::records::VolumeLabel;
use crate::format::{Body, FORMAT_VERSION, HEADER_LEN, MAX_META_LEN, decode_record, encode_meta};

use super::DeviceError;

/// Bytes to read to be sure of holding a whole label record.
pub const LABEL_READ_LEN: usize = 4096;

/// A fresh label for a new medium.
pub fn new_label(barcode: String, pool: &str, block_size: u32) -> VolumeLabel {
    VolumeLabel {
        format_version: FORMAT_VERSION,
        medium: *uuid::Uuid::new_v4().as_bytes(),
        barcode,
        pool: pool.to_owned(),
        block_size,
        created: crate::clock::unix_now(),
        host: crate::clock::host_name(),
    }
}

/// The label as the medium's first block (`block_size` bytes, zero-padded).
pub fn label_block(label: &VolumeLabel, block_size: usize) -> Vec<u8> {
    let mut block = vec![0u8; block_size.max(HEADER_LEN + MAX_META_LEN)];
    let n = encode_meta(0, 0, label, &mut block).expect("labels made by new_label are valid");
    block.truncate(super::aligned::round_up(n as u64, block_size as u64) as usize);
    block
}

/// Reads the label from a medium's first bytes; `what` names the medium in errors.
pub fn parse_label(bytes: &[u8], what: &str) -> Result<VolumeLabel, DeviceError> {
    let bad = |detail: String| DeviceError::BadMedium { what: what.to_owned(), detail };
    if bytes.iter().all(|&b| b == 0) {
        return Err(bad("blank: no volume label".into()));
    }
    match decode_record(bytes, 0) {
        Ok((rec, _)) => match rec.body {
            Body::Label(l) => Ok(l),
            _ => Err(bad("first record is not a volume label".into())),
        },
        Err(e) => Err(bad(format!("no readable coffer volume label ({e})"))),
    }
}
