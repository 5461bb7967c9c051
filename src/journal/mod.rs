//! The journal: coffer's only state, an append-only log of postcard records with group commit.
//!
//! # What it owns and promises
//!
//! - A record counts once the [`Journal::commit`] that covers it has returned: its bytes and the
//!   head that points past them are then durable (`fdatasync` of both).
//! - A commit is atomic: replay applies all of a group's records or none.
//! - Replay ([`Journal::open`]) hands every committed record, in order, to the caller, which
//!   rebuilds its state from them (see `catalog`). A torn tail after the last durable commit is
//!   cut; anything wrong *before* it makes the open fail with an error naming the file and the
//!   byte offset — never a silent truncation. [`Mode::ReadOnly`] replays up to the damage and
//!   reports it instead, so the service can start read-only.
//! - [`Journal::snapshot`] writes the whole state as a new base segment; replay then starts
//!   there, which bounds replay time. Older segments are deleted.
//!
//! # Files
//!
//! A directory holding `head` and segment files `seg-<id as 16 hex digits>`. Integers are
//! little-endian.
//!
//! Segment: a 64-byte header, then frames.
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! | 0      | 4    | magic `b"CFJS"`                                              |
//! | 4      | 1    | journal version (1)                                          |
//! | 5      | 1    | 1 if the segment starts with a snapshot, else 0              |
//! | 8      | 8    | segment id                                                   |
//! | 16     | 8    | sequence number of the first record                          |
//! | 24     | 8    | final length of the previous segment                         |
//! | 32     | 28   | zero                                                         |
//! | 60     | 4    | CRC-32 of bytes 0..60                                        |
//!
//! Frame: a 20-byte header, then the payload.
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! | 0      | 4    | payload length (at most [`MAX_PAYLOAD`])                     |
//! | 4      | 8    | sequence number: every record's is its predecessor's + 1     |
//! | 12     | 2    | record kind: 0 commit, 1 snapshot end, 2..16 reserved, 16+ the caller's |
//! | 14     | 1    | version of that kind's payload layout                        |
//! | 15     | 1    | zero                                                         |
//! | 16     | 4    | CRC-32 of bytes 0..16 then of the payload                    |
//!
//! A group is one or more records followed by a commit frame whose 8-byte payload is the
//! sequence number of the group's first record. A snapshot segment's first group holds the
//! state's records and ends with a snapshot-end frame (payload: the count of state records).
//!
//! Head: two 512-byte slots at offsets 0 and 512; generation `g` is written to slot `g % 2`,
//! so a torn head write leaves the other slot intact. A slot: magic `b"CFJH"`, version, then
//! at offset 8 generation, 16 base segment, 24 current segment, 32 durable length of the
//! current segment, 40 next sequence number (each u64), zeros, and at 508 a CRC-32 of bytes
//! 0..508. The valid slot with the highest generation is the head.
//!
//! # Commit
//!
//! Write the group at the end of the current segment, `fdatasync` it, write the next head
//! generation naming the new durable length, `fdatasync` the head. Two syncs make damage
//! detectable everywhere: bytes before the head's durable length are committed and must be
//! intact; bytes after it were never acknowledged and are cut when they do not form whole,
//! valid groups. Groups after the durable length that *are* whole and valid (their commit was
//! cut short after the data sync, or the newest head slot was damaged) are kept.
//!
//! # Fault model
//!
//! A crash can come at any write or sync: sectors written since the last sync may be lost,
//! zeroed, or garbled. Media may also rot anywhere. Every byte is covered by a CRC; a failed
//! commit poisons the journal (its on-disk state is unknown until reopened).

mod error;
mod frame;
mod mem;
mod replay;
mod storage;
mod uring_dir;
mod writer;

#[cfg(test)]
mod tests;

pub use error::JournalError;
pub use mem::MemDir;
pub use replay::{Cut, Mode, OpenReport, RawRecord};
pub use storage::{Dir, Storage};
pub use uring_dir::{UringDir, UringFile};
pub use writer::{Entry, Journal};

/// Largest payload of one record.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest group (the bytes of all records awaiting one commit).
pub const MAX_GROUP_BYTES: usize = 64 << 20;
/// A segment that has grown past this after a commit is closed and a new one started.
pub const SEGMENT_TARGET: u64 = 64 << 20;
/// Bytes read from a segment at a time during replay.
pub const READ_WINDOW: usize = 4 << 20;
/// First record kind available to callers; lower kinds are the journal's own.
pub const FIRST_USER_KIND: u16 = 16;

/// Kind of the frame that ends a group.
const KIND_COMMIT: u16 = 0;
/// Kind of the frame that ends a snapshot.
const KIND_SNAPSHOT_END: u16 = 1;
/// Name of the head file.
const HEAD_NAME: &str = "head";

const _: () = assert!(READ_WINDOW >= frame::FRAME_HEADER + MAX_PAYLOAD);
const _: () = assert!(MAX_GROUP_BYTES >= MAX_PAYLOAD + 2 * frame::FRAME_HEADER + 8);
