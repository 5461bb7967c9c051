//! The SCSI command layer: what coffer says to tape drives and media changers, as data.
//!
//! - [`cdb`] builds command descriptor blocks (SPC, SSC, SMC) as plain values: bytes, data
//!   direction, transfer length and a timeout class.
//! - [`sense`] decodes sense data (fixed and descriptor formats) into a typed [`sense::Sense`]
//!   and classifies it into an [`sense::Outcome`] callers branch on (filemark, early warning,
//!   end of data, not ready, unit attention, unsupported command…).
//! - [`pages`] decodes (and, for the simulator, encodes) response data: INQUIRY, VPD serial,
//!   READ BLOCK LIMITS, READ POSITION, MODE SENSE, element status, TapeAlert.
//! - [`transport`] is the boundary: the [`transport::Transport`] trait, and
//!   [`transport::issue`], the only function that sends a command and turns its completion into
//!   a result or a typed [`transport::ScsiError`].
//! - [`sg`] is the Linux SG_IO transport on `/dev/sgN` or `/dev/nstN`; the only `unsafe` code of
//!   this layer lives there.
//!
//! Everything but [`sg`] is pure and tested on hand-built bytes. Decoders take `&[u8]` from a
//! device and never panic on any input: a device (or a simulator fault) may send short,
//! truncated or garbage responses, and those are typed errors.
//!
//! Fault model of the third-party target used in HIL tests (`tgt`): LOCATE, ERASE, LOG SENSE,
//! SPACE(16) and MODE SELECT are refused (ILLEGAL REQUEST, invalid operation code), READ
//! POSITION answers zeros, READ ELEMENT STATUS is refused above
//! [`cdb::MAX_ELEMENT_STATUS_ALLOC`] bytes, the first command after MOVE MEDIUM to a drive gets
//! a UNIT ATTENTION, and no early warning is given before the end of a cartridge.

mod bytes;
pub mod cdb;
pub mod pages;
pub mod sense;
pub mod sg;
pub mod transport;

pub use cdb::Cdb;
pub use sense::{Outcome, Sense};
pub use transport::{DataBuf, Response, ScsiError, Transport, issue};
