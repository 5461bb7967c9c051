//! Response data of SCSI commands: pure decoders from `&[u8]`, and encoders the simulator
//! answers with (and tests build fixtures with).
//!
//! - [`inquiry`]: standard INQUIRY data, VPD page 0x80 (serial number), READ BLOCK LIMITS and
//!   READ POSITION (long form).
//! - [`mode`]: mode parameter headers (6 and 10 byte forms), the block descriptor (block size,
//!   write protect), the data compression page (0x0F) and the element address assignment page
//!   (0x1D) of changers.
//! - [`element`]: READ ELEMENT STATUS responses, paged.
//! - [`tape_alert`]: the TapeAlert log page (0x2E).
//!
//! Fault model: responses come from devices, drivers and simulator faults; they may be short,
//! truncated at the allocation length, or garbage. Decoders never panic; they return
//! [`PageError`] naming the response and the offending offset. Callers pass only the bytes the
//! transport reports as received, not the whole buffer.

pub mod element;
pub mod inquiry;
pub mod mode;
pub mod tape_alert;

pub use element::{Element, ElementStatus, encode_element_status};
pub use inquiry::{BlockLimits, Inquiry, Position, decode_serial, encode_serial};
pub use mode::{
    BlockDescriptor, CompressionPage, ElementAddresses, ElementRange, ModeForm, ModeParams, iter_pages,
};
pub use tape_alert::TapeAlert;

/// VPD page code of the unit serial number.
pub const VPD_SERIAL: u8 = 0x80;
/// Log page code of TapeAlert.
pub const TAPE_ALERT_PAGE: u8 = 0x2E;
/// Mode page code of data compression (SSC).
pub const COMPRESSION_PAGE: u8 = 0x0F;
/// Mode page code of the element address assignment page (SMC).
pub const ELEMENT_ADDRESS_PAGE: u8 = 0x1D;
/// Mode page code asking for all pages.
pub const ALL_PAGES: u8 = 0x3F;

/// Why response data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The response ends before a field the decoder needs.
    #[error("{what}: response too short: needs {needed} bytes, got {got}")]
    Short {
        /// Which response.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: invalid data at byte {offset}: {detail}")]
    Invalid {
        /// Which response.
        what: &'static str,
        /// Offset of the field.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

/// `Ok` if `buf` holds at least `needed` bytes.
pub(crate) fn need(what: &'static str, buf: &[u8], needed: usize) -> Result<(), PageError> {
    if buf.len() < needed { Err(PageError::Short { what, needed, got: buf.len() }) } else { Ok(()) }
}

#[cfg(test)]
mod element_tests;
#[cfg(test)]
mod tests;
