//! The data path: sources read into units, units compressed on every core, records written in
//! order to a target — and the same path backwards for restore and verify.
//!
//! ```text
//! reader ──unit k──► compressor k mod N (pinned) ──► writer (takes k = 0, 1, 2 … in turn) ──► target
//! ```
//!
//! Every unit becomes exactly one record. The reader numbers them and deals unit `k` to
//! compressor `k mod N`; each compressor keeps its units in order, so the writer restores the
//! global order by taking from the compressors in turn — no reorder buffer. All queues are
//! bounded and every large buffer comes from a [`pool::Pool`] allocated at start, so memory does
//! not grow with the data.

pub mod affinity;
pub mod backup;
pub mod baseline;
pub mod compare;
pub mod compress;
pub mod coord;
pub mod drain;
pub mod fetch;
pub mod health;
pub mod multi;
pub mod mux;
pub mod pool;
pub mod readback;
pub mod reader;
pub mod reindex;
pub mod remote;
pub mod restore;
pub mod restore_workers;
pub mod runs;
pub mod scan;
pub mod sources;
pub mod spool;
pub mod writer;

use crate::catalog::StoredObject;
use crate::device::aligned::AlignedBuf;
use crate::format::records::ObjectMeta;

/// Default unit size: how much of a file one record carries (chosen by benchmark).
pub const DEFAULT_UNIT: usize = 4 << 20;
/// Units waiting per compressor, in and out.
pub const QUEUE_DEPTH: usize = 2;
/// Files up to this fraction of the unit size are packed with others rather than given
/// records of their own.
pub const SMALL_FILE_DIVISOR: usize = 4;

const _: () = assert!(DEFAULT_UNIT <= crate::format::MAX_UNIT_LEN);
const _: () = assert!(DEFAULT_UNIT.is_multiple_of(crate::device::aligned::ALIGN));

/// Where an object (or a piece of one) lives, as far as the reader knows it: the writer fills
/// in the stream, part and position when it writes the object's first record.
pub fn stored(id: u64, meta: &ObjectMeta, length: u64, digest: [u8; 32]) -> StoredObject {
    StoredObject {
        id,
        path: meta.path.clone(),
        kind: meta.kind,
        size: meta.size,
        mtime: meta.mtime,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        segment_offset: 0,
        length,
        stream: 0,
        part: 0,
        position: 0,
        digest,
    }
}

/// A job's cancel switch, shared by whoever may cancel it (a signal, the job engine) and the
/// threads that stop for it. Cancelling stops reading; what was read is written, made durable
/// and closed with a trailer saying the session was cancelled.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// Cancels the job.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag itself, for signal handlers.
    pub fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.0.clone()
    }
}

/// What the writer must know about a record besides its bytes.
#[derive(Debug)]
pub enum Track {
    /// Nothing: a middle data record.
    Nothing,
    /// The first record of an object: where it starts is where restore seeks to.
    Starts(u64),
    /// The last record of an object: it is whole once this is written.
    Ends(Box<StoredObject>),
    /// A pack: every object in it starts and ends here.
    Packed(Vec<StoredObject>),
    /// Not a record: close the part so that everything before is durable, and say so.
    Sync,
}

/// Work for a compressor: one record to encode.
#[derive(Debug)]
pub enum Work {
    /// Object bytes `buf[..len]` at `offset` within `object`.
    Data {
        /// Object id.
        object: u64,
        /// Offset within the object.
        offset: u64,
        /// Last data record of the object.
        last: bool,
        /// The bytes.
        buf: AlignedBuf,
        /// How many of them.
        len: usize,
    },
    /// A pack whose raw bytes are `buf[..len]`.
    Pack {
        /// Its first object.
        first: u64,
        /// The bytes.
        buf: AlignedBuf,
        /// How many of them.
        len: usize,
    },
    /// A record the reader encoded itself (metadata, object ends).
    Encoded(Vec<u8>),
    /// No record: a sync point, passed on in order.
    Sync,
}

/// A unit on its way through the pipeline.
#[derive(Debug)]
pub struct Unit {
    /// Record sequence number.
    pub seq: u64,
    /// What to encode.
    pub work: Work,
    /// What the writer must record.
    pub track: Track,
    /// The multiplexed stream (lane) the record belongs to: the first object id of the agent's
    /// range ([`mux`]); 0 when it belongs to none.
    pub lane: u64,
}

/// An encoded record on its way to the writer.
#[derive(Debug)]
pub struct Encoded {
    /// The record's bytes.
    pub bytes: EncodedBytes,
    /// What the writer must record.
    pub track: Track,
    /// Object bytes the record carries, before compression.
    pub raw: u64,
    /// Its unit's lane.
    pub lane: u64,
}

/// Where an encoded record's bytes are.
#[derive(Debug)]
pub enum EncodedBytes {
    /// In a pooled buffer, the first `len` bytes.
    Pooled(AlignedBuf, usize),
    /// In a small allocation of its own.
    Small(Vec<u8>),
}

impl EncodedBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            EncodedBytes::Pooled(b, n) => &b[..*n],
            EncodedBytes::Small(v) => v,
        }
    }
}
