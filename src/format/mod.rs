//! The on-media format, version 2: what coffer writes to every medium (disk volume files, NVRAM
//! regions, tape cartridges), byte for byte. Sans-io: this module encodes into caller-provided
//! buffers and decodes from slices or `embedded-io` readers; targets only move the bytes.
//!
//! # Stream
//!
//! A medium is one byte stream (a tape writes it in fixed blocks, the last one zero-padded; a
//! disk volume file is the stream itself):
//!
//! ```text
//! medium   := Label part*
//! part     := SessionHeader body* (Kept* Index* Trailer | Continuation)
//! body     := ObjectMeta Segment? Data* ObjectEnd      -- one object (or one segment of it)
//!           | Pack                                     -- many small objects in one unit
//! ```
//!
//! Bodies of different objects may interleave (multiplexing): every record names its object.
//! A session may span media: a part that ends on one medium ends with a `Continuation` naming
//! the part (and, when known, the cartridge) that follows; the final part ends with the index of
//! all of the session's objects and the trailer. On tape, each part is one tape file: a filemark
//! follows it.
//!
//! # Record
//!
//! Every record is a 48-byte header followed by `stored_len` payload bytes. All integers are
//! little-endian.
//!
//! | offset | size | field        | meaning                                                      |
//! |-------:|-----:|--------------|--------------------------------------------------------------|
//! | 0      | 4    | `magic`      | `b"CFFR"`                                                    |
//! | 4      | 1    | `version`    | format version, [`FORMAT_VERSION`]                           |
//! | 5      | 1    | `kind`       | [`Kind`]                                                     |
//! | 6      | 1    | `flags`      | [`Flags`]: bit 0 LZ4, bit 1 RAW, bit 2 LAST; others zero     |
//! | 7      | 1    | `header_len` | 48                                                           |
//! | 8      | 8    | `object_id`  | object the record belongs to (0: session-level records)     |
//! | 16     | 8    | `seq`        | object records: numbered from 1, gapless along the stream;  |
//! |        |      |              | other records: the number the next object record gets       |
//! | 24     | 8    | `offset`     | offset of the payload's first raw byte within the object     |
//! | 32     | 4    | `raw_len`    | payload length after decompression                           |
//! | 36     | 4    | `stored_len` | payload length as stored                                     |
//! | 40     | 4    | reserved     | zero                                                         |
//! | 44     | 4    | `crc32`      | CRC-32 (IEEE) of bytes 0..44 then of the stored payload      |
//!
//! Payload by kind:
//! - `Data` and `Pack` carry bytes, LZ4 block-compressed (flag LZ4, `stored_len < raw_len`) or
//!   stored raw when compression does not shrink them (flag RAW, `stored_len == raw_len`);
//!   exactly one of the two flags is set. `LAST` marks the last `Data` record of an object.
//!   `raw_len` is at most [`MAX_UNIT_LEN`].
//! - `Index` carries a postcard [`records::Index`], flagged LZ4 or RAW like data (an index of
//!   paths compresses well), at most [`MAX_INDEX_LEN`] bytes raw. `Kept` carries a
//!   [`records::Kept`] the same way: the files a complete incremental session left out as
//!   unchanged, written on its stream 0 before the index and counted in that trailer.
//! - Every other kind carries a postcard-encoded struct from [`records`] (no flags,
//!   `raw_len == stored_len`), at most [`MAX_META_LEN`] bytes.
//!
//! Object records (`ObjectMeta`, `Segment`, `Data`, `ObjectEnd`, `Pack`) are numbered along a
//! stream (one device's share of a session, across all its parts) so that a reader notices a
//! lost one; the others (label, session header, index, trailer, continuation) carry the number
//! the next object record gets, and can be added by the writer without renumbering.
//! - A `Pack` payload, once decompressed, is a sequence of entries, each a postcard
//!   [`records::PackedEntry`] (metadata, length and digest of one whole small object) followed
//!   by that object's bytes.
//!
//! # Versioning
//!
//! The version byte is in every header and in the volume label. A reader refuses any version
//! it does not know, with an error naming it; a change to any payload struct is a new version.
//! Records of every version from [`OLDEST_READ_VERSION`] are read, each by its own header's
//! version, so a medium written by an older coffer and appended to by a newer one reads whole.
//!
//! - Version 1: the first.
//! - Version 2: the session header says whether the session is full or incremental (and on
//!   which session) and carries the source key; index entries carry mode, owner and group;
//!   the `Kept` record and the trailer's count of them. With these a catalog rebuilt from the
//!   media (`scan`) restores and continues incremental chains as the lost catalog did. Version-1
//!   payloads decode through [`v1`].
//!
//! # Fault model
//!
//! Media rot, get truncated, or hold something else entirely. Decoding never panics and never
//! allocates more than the limits above, whatever the input: every length is checked against
//! its limit before anything is read or allocated, and every payload against its CRC before it
//! is decoded. Errors name the byte offset in the stream.

mod codec;
mod error;
mod header;
pub mod records;
mod stream;
pub mod v1;

pub use codec::{
    Body, DataEncoding, PackBuilder, PackEntries, Record, decode_record, encode_data, encode_data_as,
    encode_index, encode_kept, encode_meta, encode_pack, encode_pack_as, unpack,
};
pub use error::FormatError;
pub use header::{Flags, HEADER_LEN, Header, Kind, MAGIC, renumber};
pub use stream::{ReadError, RecordReader};

/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format version this build reads.
pub const OLDEST_READ_VERSION: u8 = 1;

/// Largest raw payload of a `Data` or `Pack` record (one unit of data).
pub const MAX_UNIT_LEN: usize = 32 << 20;
/// Largest payload of a metadata record.
pub const MAX_META_LEN: usize = 64 << 10;
/// Largest payload of an `Index` record; an index larger than this spans several records.
pub const MAX_INDEX_LEN: usize = 1 << 20;
/// Largest path (or link target) stored, in bytes: Linux `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;
/// Most entries in one `Index` record.
pub const MAX_INDEX_ENTRIES: usize = 16_384;
/// Largest buffer any single record needs: header plus the LZ4 worst case of a full unit.
pub const MAX_RECORD_LEN: usize = HEADER_LEN + max_stored_len(MAX_UNIT_LEN);

/// Worst-case stored size of `raw` bytes: compression is only kept when it shrinks the data.
pub const fn max_stored_len(raw: usize) -> usize {
    raw
}

/// Buffer size the encoder needs to compress `raw` bytes in place (LZ4's worst case).
pub const fn compress_scratch_len(raw: usize) -> usize {
    HEADER_LEN + lz4_flex::block::get_maximum_output_size(raw)
}

const _: () = assert!(MAX_META_LEN < MAX_INDEX_LEN);
const _: () = assert!(MAX_INDEX_LEN <= MAX_UNIT_LEN);
const _: () = assert!(MAX_UNIT_LEN <= u32::MAX as usize);
const _: () = assert!(MAX_PATH_LEN * 2 + 1024 <= MAX_META_LEN);

#[cfg(test)]
mod tests;
