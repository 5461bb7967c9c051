//! Errors of the on-media format: each names the stream offset where it was found.

use super::Kind;

/// Why bytes could not be encoded or decoded as the on-media format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A damaged record, as reported by the box that read it (a restore on a backup agent).
    #[error("{0}")]
    Reported(String),
    /// The stream ends inside a record.
    #[error("media truncated at byte {offset}: record needs {needed} more bytes")]
    Truncated { offset: u64, needed: u64 },
    /// Not a coffer record at all: another format, blank or overwritten media.
    #[error("no coffer record at byte {offset} (bad magic): blank, foreign or overwritten media")]
    BadMagic { offset: u64 },
    /// Written by a format version this build does not read.
    #[error(
        "record at byte {offset} uses format version {version}; this coffer reads versions {} to {}: \
         upgrade coffer to read this medium",
        super::OLDEST_READ_VERSION,
        super::FORMAT_VERSION
    )]
    UnsupportedVersion { offset: u64, version: u8 },
    /// Unknown record kind.
    #[error("unknown record kind {kind} at byte {offset}")]
    UnknownKind { offset: u64, kind: u8 },
    /// A length over its limit.
    #[error("{kind:?} record at byte {offset} claims {len} bytes, over the limit of {max}")]
    TooLong { offset: u64, kind: Kind, len: u64, max: u64 },
    /// Header or payload damaged.
    #[error(
        "checksum mismatch in {kind:?} record at byte {offset} (object {object_id}, record {seq}): \
         the medium is damaged there"
    )]
    Crc { offset: u64, kind: Kind, object_id: u64, seq: u64 },
    /// A payload that passed its CRC but does not decode as its kind: written by a broken or
    /// foreign writer.
    #[error("{kind:?} record at byte {offset} does not decode: {reason}")]
    Payload { offset: u64, kind: Kind, reason: String },
    /// A structurally valid record that breaks a format rule.
    #[error("invalid record at byte {offset}: {what}")]
    Invalid { offset: u64, what: &'static str },
    /// The encoder refused a record that breaks a format rule (a caller's bug or bad input such
    /// as an over-long path); nothing was written.
    #[error("record refused before writing: {what}")]
    Refused { what: &'static str },
    /// A caller-provided buffer cannot hold the record.
    #[error("buffer of {have} bytes cannot hold a record of {need} bytes")]
    BufferTooSmall { need: usize, have: usize },
}
