//! The catalog: the state that journal replay rebuilds, and the typed journal records that
//! change it.
//!
//! # What it owns
//!
//! - [`Record`]: every change to the appliance's durable state, as a typed journal record with
//!   a stable `kind` (a `u16` from [`FIRST_KIND`] up; kinds below it belong to the journal's own
//!   framing records) and a `version`. A payload is the postcard encoding of the record's
//!   struct, at most [`MAX_PAYLOAD_LEN`] bytes.
//! - [`Catalog`]: the in-memory state those records build: media (by UUID and by barcode),
//!   sessions (start, parts on media, totals of their objects, how they ended, whether their
//!   per-file index file is durable, or was pruned and must be read back from the media), jobs (saved
//!   definition and a bounded state history), backup agents (enrolment and revocation), the
//!   activity log (the last [`LOG_KEEP`]
//!   entries), the console's latest login (wrong PINs in a row, for the lockout), and the next
//!   free session and job ids, cleaning cartridges' uses, and drives' hard errors in a row.
//!
//! What it does not hold: where each object lives. A session's per-file entries (its objects'
//! pieces, and the files an incremental kept) go to its index file (see `index`); the catalog
//! keeps their totals, so what replay builds is O(sessions + media + jobs + log). The store
//! spools the entries of the records it commits and writes the index file when the session
//! ends.
//!
//! Nothing here does I/O: the journal frames, stores and replays the bytes; this module only
//! encodes, decodes, checks and applies.
//!
//! # Invariants
//!
//! - [`Catalog::apply`] is pure and all-or-nothing: it checks the record against the rules and
//!   the current state first, and on error the state is exactly as before.
//! - Every record a catalog accepted validates, so it encodes and decodes back to itself.
//! - Session and job ids only grow: an id below [`Catalog::next_session_id`] (or
//!   [`Catalog::next_job_id`]) is never used again, even after its session is pruned or its job
//!   deleted. The [`IdsReserved`] record carries the high-water marks through snapshots.
//! - Every session part lies on a medium in the catalog (a medium holding parts cannot be
//!   removed), every object lies in a recorded part, and a finished session takes no more
//!   parts or objects.
//! - Only a running incremental session takes a list of kept files, until a batch says the
//!   list is complete.
//! - [`Catalog::snapshot_records`] applied in order to an empty catalog builds an equal one;
//!   it may only be taken when every session holding entries is indexed
//!   ([`Catalog::snapshot_ready`]), since the catalog no longer holds the entries themselves.
//!
//! # Versioning
//!
//! A change to a record's struct (a field, or a variant of an enum it holds) is a new version
//! of that kind. [`Record::decode`] keeps decoding every older version it ever knew and
//! upgrades it into the current struct; it refuses kinds and versions it does not know, since
//! they were written by a newer coffer, rather than guessing.
//!
//! # Fault model
//!
//! Journal payloads passed CRC checks before they get here, but may still come from a newer
//! coffer or a broken one: decoding never panics, allocates no more than the payload's size,
//! rejects trailing bytes, and validates every record. A record that decodes but contradicts
//! the state (an object of an unknown session, say) is refused by `apply` with an error naming
//! both; the caller decides whether that stops replay.

mod health;
mod old;
mod record;
mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

pub use health::{
    CleaningCartridge, CleaningRetired, CleaningUsed, DriveErrors, MAX_CLEANING_USES, MediumErrors,
};
pub use record::{
    AgentAdded, AgentEnrolled, AgentRevoked, ConsoleLogin, FIRST_KIND, FilesKept, IdsReserved, IndexPruned,
    JobDeleted, JobSaved, JobState, JobStateChanged, LaneRun, LogEntry, LogLevel, MAX_AGENT_NAME_LEN,
    MAX_AGENT_PATHS, MAX_DEFINITION_LEN, MAX_KEPT_BYTES, MAX_MESSAGE_LEN, MAX_OBJECTS_BYTES, MAX_PAYLOAD_LEN,
    MAX_RUNS, MAX_TTY_LEN, MediumAdded, MediumKind, MediumRemoved, MediumState, MediumUpdated, MediumVaulted,
    ObjectStored, ObjectsStored, PartMoved, PartRuns, PoolDefined, Record, RecordBody, SessionFinished,
    SessionIndexed, SessionKind, SessionMode, SessionPart, SessionPruned, SessionStarted, StoredObject,
    StreamCut, agent_name_ok, kept_batches, kept_cost, object_batches, object_cost, run_batches,
};
pub use state::{Agent, AgentState, Catalog, JOB_HISTORY_KEEP, Job, LOG_KEEP, Medium, Session};

use uuid::Uuid;

/// Why a journal record could not be decoded or applied to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A record kind this build does not know.
    #[error(
        "journal record kind {kind} is unknown: the journal was written by a newer coffer; \
         upgrade coffer to read it"
    )]
    UnknownKind { kind: u16 },
    /// A version of a known record kind this build does not know.
    #[error(
        "journal record {name} (kind {kind}) has version {version}, but this coffer reads up to \
         version {known}: the journal was written by a newer coffer; upgrade coffer to read it"
    )]
    UnknownVersion { kind: u16, name: &'static str, version: u8, known: u8 },
    /// A payload that does not decode as its kind and version.
    #[error(
        "journal record kind {kind} version {version} does not decode: {reason}; the journal \
         is damaged or was written by a broken coffer"
    )]
    Decode { kind: u16, version: u8, reason: String },
    /// A record that breaks a rule of its own (an over-long name, a NUL in a path...).
    #[error("{record} record refused: {what}")]
    Invalid { record: &'static str, what: &'static str },
    /// A medium UUID the catalog does not hold.
    #[error("no medium {medium} in the catalog: it was never added or has been removed")]
    UnknownMedium { medium: Uuid },
    /// A medium added twice.
    #[error("medium {medium} is already in the catalog: remove it before adding it again")]
    MediumExists { medium: Uuid },
    /// Two media with one barcode.
    #[error(
        "barcode {barcode} already names medium {medium}: remove that medium or choose another \
         barcode"
    )]
    BarcodeInUse { barcode: String, medium: Uuid },
    /// A medium that still holds session parts cannot be removed.
    #[error("medium {medium} holds parts of session {session}: prune that session first")]
    MediumInUse { medium: Uuid, session: u64 },
    /// A session id the catalog does not hold.
    #[error("no session {session} in the catalog: it was never started or has been pruned")]
    UnknownSession { session: u64 },
    /// A session started twice.
    #[error("session {session} has already been started")]
    SessionExists { session: u64 },
    /// An id below the high-water mark: it was used before and must never be reused.
    #[error(
        "{what} id {id} was used before (the next free one is {next}): allocate ids from the \
         catalog's next id"
    )]
    StaleId { what: &'static str, id: u64, next: u64 },
    /// A list of kept files for a session that cannot have one.
    #[error("session {session} takes no list of kept files: {why}")]
    KeptList { session: u64, why: &'static str },
    /// A part or object for a session that has finished.
    #[error("session {session} has already finished: it takes no more parts, objects or end record")]
    SessionFinished { session: u64 },
    /// Pruning a session that has not finished.
    #[error("session {session} is still running: finish it (as failed, if need be) first")]
    SessionRunning { session: u64 },
    /// A stream number outside the session's streams.
    #[error("session {session} has {streams} streams; stream {stream} is not one of them")]
    UnknownStream { session: u64, stream: u16, streams: u16 },
    /// A part that does not follow the stream's last part.
    #[error(
        "part {part} of session {session} stream {stream} is out of order: the stream's next \
         part is {expected}"
    )]
    PartOutOfOrder { session: u64, stream: u16, part: u32, expected: u32 },
    /// An object placed in a part the session has not recorded.
    #[error(
        "object {object} of session {session} lies in part {part} of stream {stream}, which the \
         session has not recorded: record the part first"
    )]
    UnknownPart { session: u64, object: u64, stream: u16, part: u32 },
    /// Runs of a part the session has not recorded, or out of order.
    #[error("session {session}, part {part} of stream {stream}: cannot take its runs: {why}")]
    Runs { session: u64, stream: u16, part: u32, why: &'static str },
    /// Moving a part the session does not have.
    #[error("session {session} has no part {part} on stream {stream} to move")]
    NoSuchPart { session: u64, stream: u16, part: u32 },
    /// An index file for a session that is running, indexed already, or holds other entries
    /// than the journal recorded.
    #[error("session {session} cannot take index file {crc:08x}: {why}")]
    Index { session: u64, crc: u32, why: &'static str },
    /// Pruning the index of a session that cannot have it pruned.
    #[error("the index of session {session} cannot be pruned: {why}")]
    IndexPrune { session: u64, why: &'static str },
    /// An agent record that does not fit the agent's state.
    #[error("agent {name}: {why}")]
    Agent { name: String, why: &'static str },
    /// A health record (cleaning, errors) that does not fit what the catalog holds.
    #[error("{what}: {why}")]
    Health { what: String, why: &'static str },
    /// A job id the catalog does not hold.
    #[error("no job {job} in the catalog: it was never saved or has been deleted")]
    UnknownJob { job: u64 },
    /// Deleting a job that is running.
    #[error("job {job} is active: cancel it before deleting it")]
    JobActive { job: u64 },
}

impl CatalogError {
    /// Whether the error comes from bytes that are not a record this build can read, as opposed
    /// to a record that contradicts the state.
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            CatalogError::UnknownKind { .. }
                | CatalogError::UnknownVersion { .. }
                | CatalogError::Decode { .. }
        )
    }

    /// Whether a newer coffer wrote the record: upgrading coffer, not repairing the journal, is
    /// the fix.
    pub fn is_newer_writer(&self) -> bool {
        matches!(self, CatalogError::UnknownKind { .. } | CatalogError::UnknownVersion { .. })
    }
}
