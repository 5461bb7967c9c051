//! The typed journal records: one struct per kind of change, postcard-encoded.
//!
//! | kind | record            | version |
//! |-----:|-------------------|--------:|
//! | 16   | `MediumAdded`     | 1       |
//! | 17   | `MediumUpdated`   | 1       |
//! | 18   | `MediumRemoved`   | 1       |
//! | 20   | `CleaningUsed`    | 1       |
//! | 21   | `CleaningRetired` | 1       |
//! | 22   | `MediumErrors`    | 1       |
//! | 23   | `DriveErrors`     | 1       |
//! | 32   | `SessionStarted`  | 2       |
//! | 33   | `SessionPart`     | 1       |
//! | 34   | `ObjectStored`    | 2       |
//! | 35   | `SessionFinished` | 1       |
//! | 36   | `SessionPruned`   | 1       |
//! | 37   | `PartMoved`       | 1       |
//! | 38   | `StreamCut`       | 1       |
//! | 39   | `FilesKept`       | 1       |
//! | 40   | `ObjectsStored`   | 1       |
//! | 41   | `SessionIndexed`  | 1       |
//! | 42   | `PartRuns`        | 1       |
//! | 43   | `IndexPruned`     | 1       |
//! | 48   | `JobSaved`        | 1       |
//! | 49   | `JobStateChanged` | 2       |
//! | 50   | `JobDeleted`      | 1       |
//! | 64   | `LogEntry`        | 1       |
//! | 80   | `IdsReserved`     | 1       |
//! | 96   | `ConsoleLogin`    | 1       |
//! | 112  | `AgentAdded`      | 1       |
//! | 113  | `AgentEnrolled`   | 1       |
//! | 114  | `AgentRevoked`    | 1       |
//!
//! Kinds are grouped by subsystem, with room in each group. A kind number is never reused;
//! changing a struct (or an enum it holds) bumps its version, and [`Record::decode`] keeps an
//! arm that reads the old version and upgrades it (the old structs live in `old.rs`).
//!
//! History: `SessionStarted` version 2 added `kind` (full, or incremental on a base session)
//! and `source_key`; version 1 records read as full sessions without a key. `ObjectStored`
//! version 2 added the object's `mode`, `uid` and `gid` (version 1 reads with all three 0: not
//! recorded). `FilesKept` (kind 39) came with incremental sessions that list what they kept.
//! `ConsoleLogin` (kind 96) came with the console's PIN lockout that survives restarts.
//! `AgentAdded`, `AgentEnrolled` and `AgentRevoked` (kinds 112 to 114) came with backup agents.
//! `ObjectsStored` (kind 40) and `SessionIndexed` (kind 41) came with per-session index files:
//! objects are journaled in batches, and only until the session's index file is durable;
//! `ObjectStored` (kind 34, one object per record) is still read from older journals.
//! `PartRuns` (kind 42) came with multiplexing: where each agent's records lie in a part.
//! `IndexPruned` (kind 43) came with catalog pruning: a session's index file was dropped (the
//! session stays); a later `SessionIndexed` for it says the index was read back from its media.
//! `CleaningUsed`, `CleaningRetired`, `MediumErrors` and `DriveErrors` (kinds 20 to 23, defined
//! in `health.rs`) came with drive cleaning and media error counts.

use serde::{Deserialize, Serialize};

use super::CatalogError;
use super::health::{CleaningRetired, CleaningUsed, DriveErrors, MediumErrors};
use super::old;
use crate::format::MAX_PATH_LEN;
use crate::format::records::{
    MAX_BARCODE_LEN, MAX_BLOCK_SIZE, MAX_NAME_LEN, MIN_BLOCK_SIZE, ObjectKind, SessionStatus,
};

/// Smallest kind a catalog record may use; kinds below it are the journal's own records.
pub const FIRST_KIND: u16 = 16;
/// Largest job definition (the job file's text), in bytes.
pub const MAX_DEFINITION_LEN: usize = 64 << 10;
/// Largest log or job state message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Longest console tty name in a [`ConsoleLogin`], in bytes.
pub const MAX_TTY_LEN: usize = 256;
/// Largest encoded payload of any record: the journal may size its frames by it.
pub const MAX_PAYLOAD_LEN: usize = MAX_DEFINITION_LEN + 1024;

// The largest records (a job definition with its name, an object with its path, a medium with
// its location) fit with room for their integer fields (at most 10 bytes each as varints).
const _: () = assert!(MAX_DEFINITION_LEN + MAX_NAME_LEN + 64 <= MAX_PAYLOAD_LEN);
const _: () = assert!(MAX_PATH_LEN + 2 * MAX_NAME_LEN + 256 <= MAX_PAYLOAD_LEN);
const _: () = assert!(MAX_MESSAGE_LEN + 64 <= MAX_PAYLOAD_LEN);

/// A record struct: its stable kind, its current version and the rules a valid one obeys.
pub trait RecordBody: Serialize + for<'de> Deserialize<'de> + Into<Record> {
    /// Journal record kind, at least [`FIRST_KIND`], never reused.
    const KIND: u16;
    /// Version of the struct as this build writes it.
    const VERSION: u8;
    /// Checks the rules of a valid record (before writing and after reading).
    fn validate(&self) -> Result<(), &'static str>;
}

/// What a medium is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediumKind {
    /// A disk volume file or raw block device.
    Disk,
    /// A tape cartridge.
    Tape,
    /// A persistent-memory region or file.
    Nvram,
}

/// Whether a medium takes more data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediumState {
    /// Takes more sessions.
    Writable,
    /// Reached its end; readable.
    Full,
    /// Protected by a person or the write-protect tab; readable.
    ReadOnly,
    /// Taken out of service; its sessions may still be read.
    Retired,
    /// Failed; reads may fail too.
    Error,
}

/// How a session reads its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionMode {
    /// A file tree, file by file.
    Files,
    /// A raw volume, block by block.
    Volume,
}

/// Whether a session holds its whole source or only what changed since an earlier one: the
/// same enum the media's session headers carry (postcard writes both alike).
pub use crate::format::records::SessionKind;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
// Names in JSON (the control protocol) are lower case; postcard writes the variant index.
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its time and a device.
    Ready,
    /// Held by a person: does not run until released.
    Hold,
    /// Running.
    Active,
    /// Ran to completion.
    Done,
    /// Ran and failed.
    Failed,
    /// Cancelled by a person.
    Cancelled,
}

/// How much an activity log entry matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
// Names in JSON (the control protocol) are lower case; postcard writes the variant index.
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something needs attention.
    Warning,
    /// Something worth knowing happened.
    Note,
    /// Detail for diagnosis.
    Debug,
}

/// A medium was labelled or imported into the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediumAdded {
    /// Medium UUID, as in its volume label.
    pub medium: [u8; 16],
    /// Cartridge barcode, or the name of a disk volume or NVRAM region.
    pub barcode: String,
    /// Media pool.
    pub pool: String,
    /// What the medium is.
    pub kind: MediumKind,
    /// Block size it is written with.
    pub block_size: u32,
    /// Capacity in bytes, as known when added (tape: native capacity).
    pub capacity: u64,
    /// When it was labelled, seconds since the Unix epoch.
    pub created: u64,
    /// Target it lives on, such as `disk:/var/lib/coffer/vol1` or `library:virtual`.
    pub location: String,
}

/// A medium's fill level or state changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediumUpdated {
    /// Medium UUID.
    pub medium: [u8; 16],
    /// Bytes written to it.
    pub used: u64,
    /// Its state now.
    pub state: MediumState,
}

/// A medium left the catalog (exported, erased or relabelled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediumRemoved {
    /// Medium UUID.
    pub medium: [u8; 16],
}

/// A cartridge left the library for the vault (exported through a mail slot), or came back
/// (imported). Its sessions stay in the catalog either way: an offsite cartridge is still
/// restorable once it is brought back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediumVaulted {
    /// Medium UUID.
    pub medium: [u8; 16],
    /// True: offsite now; false: back in the library.
    pub offsite: bool,
    /// When, seconds since the Unix epoch.
    pub at: u64,
}

/// A backup session started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStarted {
    /// Session id: the catalog's next free one.
    pub session: u64,
    /// Job that runs it.
    pub job: u64,
    /// Host name of the appliance.
    pub host: String,
    /// What is backed up, for people.
    pub source: String,
    /// Start time, seconds since the Unix epoch.
    pub started: u64,
    /// Number of streams (one per device).
    pub streams: u16,
    /// How the source is read.
    pub mode: SessionMode,
    /// Full, or incremental on a base session (version 2).
    pub kind: SessionKind,
    /// Which sources it read, for finding the last backup of the same ones: BLAKE3 of their
    /// sorted canonical paths (see `pipeline::baseline::SourceKey`); all zeros when unknown
    /// (version 1 records, sessions rebuilt from media). Version 2.
    pub source_key: [u8; 32],
}

/// A session part was opened on a medium: where a stream's bytes went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPart {
    /// Session id.
    pub session: u64,
    /// Stream the part belongs to.
    pub stream: u16,
    /// Part number on that stream, from 0.
    pub part: u32,
    /// Medium it is written on.
    pub medium: [u8; 16],
    /// Where the part starts: byte offset on disk and NVRAM, block number on tape.
    pub position: u64,
    /// Tape file number of the part (0 on other media).
    pub file_number: u32,
}

/// Where one object, or one segment of a large one, lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Object id within the session.
    pub id: u64,
    /// Path relative to the source root (volumes: the device path), as raw bytes.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// What it is.
    pub kind: ObjectKind,
    /// Size of the whole object.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Permission and type bits (`st_mode`); 0 when not recorded (version 1: a real object's
    /// mode always has its type bits).
    pub mode: u32,
    /// Owner (version 2).
    pub uid: u32,
    /// Group (version 2).
    pub gid: u32,
    /// Offset of this piece within the object (non-zero for later segments).
    pub segment_offset: u64,
    /// Bytes of the object in this piece.
    pub length: u64,
    /// Stream the piece was written to.
    pub stream: u16,
    /// Part it starts in.
    pub part: u32,
    /// Byte position of the piece's first record from the start of that part.
    pub position: u64,
    /// BLAKE3 of the piece's bytes.
    pub digest: [u8; 32],
}

/// An object, or one segment of it, was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStored {
    /// Session id.
    pub session: u64,
    /// The object and where it lives.
    pub object: StoredObject,
}

/// Objects (or segments) a session made durable, as one batch: what a checkpoint of one of its
/// streams committed. Kept in the journal only until the session's index file is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectsStored {
    /// Session id (a session still open).
    pub session: u64,
    /// The objects and where they live, in the order they were stored.
    pub objects: Vec<StoredObject>,
}

/// What one object adds to an [`ObjectsStored`] record at most: its path and its length, the
/// digest, and its integer fields as varints of at most 10 bytes each.
pub fn object_cost(o: &StoredObject) -> usize {
    o.path.len() + 2 + 32 + 13 * 10
}

/// Most [`object_cost`] one [`ObjectsStored`] record carries.
pub const MAX_OBJECTS_BYTES: usize = MAX_DEFINITION_LEN - 1024;

// A full batch (objects, their count, the session id) fits a payload.
const _: () = assert!(MAX_OBJECTS_BYTES + 32 <= MAX_PAYLOAD_LEN);

/// The [`ObjectsStored`] records that carry `objects` for `session`, each as full as it may
/// be, in order; none for no objects.
pub fn object_batches(session: u64, objects: Vec<StoredObject>) -> Vec<ObjectsStored> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for o in objects {
        if bytes + object_cost(&o) > MAX_OBJECTS_BYTES {
            out.push(ObjectsStored { session, objects: std::mem::take(&mut batch) });
            bytes = 0;
        }
        bytes += object_cost(&o);
        batch.push(o);
    }
    if !batch.is_empty() {
        out.push(ObjectsStored { session, objects: batch });
    }
    out
}

/// A finished session's per-file index file is durable in the state directory, holding
/// `entries` entries (its objects' pieces and the files it kept): the journal's records of them
/// are needed no longer. Snapshots carry this record in their place, with the totals replay
/// would otherwise have counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIndexed {
    /// Session id (a finished session).
    pub session: u64,
    /// Entries in the index file: object pieces and kept files.
    pub entries: u64,
    /// Objects, each once however many segments it was split into.
    pub objects: u64,
    /// Object bytes before compression (the pieces' lengths).
    pub raw_bytes: u64,
    /// Kept files among the entries.
    pub kept: u64,
    /// Whether the session's list of kept files is the whole walk's.
    pub kept_complete: bool,
    /// CRC-32 of the index file's directory: which file this is.
    pub crc: u32,
}

/// A finished session's per-file index file was dropped to keep the state small (it is older
/// than the board's `catalog_keep`). The session stays: its parts on their media, its totals and
/// the [`SessionIndexed`] record of the file that was (entries, CRC). The index is written on
/// the session's media too, so it can be read back (`coffer scan --session N`), which journals
/// a new [`SessionIndexed`] for the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPruned {
    /// Session id (a finished, indexed session whose every stream ended with its trailer).
    pub session: u64,
    /// When, seconds since the Unix epoch.
    pub at: u64,
}

/// A session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFinished {
    /// Session id.
    pub session: u64,
    /// End time, seconds since the Unix epoch.
    pub ended: u64,
    /// How it ended.
    pub status: SessionStatus,
    /// Objects written.
    pub objects: u64,
    /// Object bytes before compression.
    pub raw_bytes: u64,
    /// Bytes as stored.
    pub stored_bytes: u64,
}

/// A session left the catalog (expired or deleted); its media may be reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPruned {
    /// Session id.
    pub session: u64,
}

/// A job was saved, or its definition replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSaved {
    /// Job id: the catalog's next free one for a new job.
    pub job: u64,
    /// Name people know it by.
    pub name: String,
    /// Text of the job file.
    pub definition: String,
}

/// A job changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStateChanged {
    /// Job id.
    pub job: u64,
    /// Its state now.
    pub state: JobState,
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// Why, for people (may be empty).
    pub message: String,
    /// When a `Ready` job is next due, seconds since the Unix epoch; `None` when it waits for
    /// nothing but a device (v1 records upgrade to `None`).
    pub run_at: Option<u64>,
}

/// A media pool was made or changed by command (`coffer pool create|modify`): its whole
/// definition, as a `[[pool]]` table of the board would say it. The newest one counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDefined {
    /// The pool's name.
    pub name: String,
    /// Its keys in TOML (`keep = "14d"` …), without the name.
    pub definition: String,
}

/// A job was deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDeleted {
    /// Job id.
    pub job: u64,
}

/// An entry of the activity log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// How much it matters.
    pub level: LogLevel,
    /// Job it concerns, if any (the job may since have been deleted).
    pub job: Option<u64>,
    /// What happened.
    pub message: String,
}

/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME_LEN: usize = 64;
/// Most paths an agent may be backed up under, or restore into.
pub const MAX_AGENT_PATHS: usize = 64;
/// Most bytes of an agent's paths and restore paths together.
pub const MAX_AGENT_PATH_BYTES: usize = 16 << 10;

// An AgentAdded record (name, paths with their lengths and counts, token digest, times) fits.
const _: () =
    assert!(MAX_AGENT_NAME_LEN + MAX_AGENT_PATH_BYTES + 8 * MAX_AGENT_PATHS + 96 <= MAX_PAYLOAD_LEN);

/// Whether `name` may name an agent: 1 to [`MAX_AGENT_NAME_LEN`] bytes of letters, digits, `.`,
/// `_` and `-`, not starting with `.` or `-` (it becomes a certificate's common name and a
/// source's `agent:NAME:` prefix).
pub fn agent_name_ok(name: &str) -> bool {
    (1..=MAX_AGENT_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with(['.', '-'])
}

/// An agent was added on the box (or given a new enrolment token): who it is, where it may be
/// backed up and restored to, and the digest of its one-time token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAdded {
    /// Its name: the certificate's common name, and `agent:NAME:` in sources.
    pub name: String,
    /// Absolute paths on the agent it may be backed up under.
    pub paths: Vec<String>,
    /// Absolute paths on the agent its data may be restored into.
    pub restore_to: Vec<String>,
    /// SHA-256 of the enrolment token (the token itself is shown once, never kept).
    pub token_sha256: [u8; 32],
    /// When it was added, seconds since the epoch.
    pub added: u64,
    /// When the token stops being accepted.
    pub expires: u64,
}

/// An agent enrolled: its token was used (once) and the box signed its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEnrolled {
    /// The agent.
    pub name: String,
    /// SHA-256 of the certificate the box signed: only this certificate is accepted.
    pub cert_sha256: [u8; 32],
    /// When, seconds since the epoch.
    pub at: u64,
}

/// An agent was revoked: its certificate is refused from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRevoked {
    /// The agent.
    pub name: String,
    /// When, seconds since the epoch.
    pub at: u64,
}

/// A PIN was entered at the serial console and checked by the service. Only the latest one
/// matters to the state: it carries the count of wrong PINs in a row, from which the lockout
/// is computed, so the lockout survives a restart and a snapshot keeps it with one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLogin {
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// The console's tty.
    pub tty: String,
    /// Whether the PIN was right.
    pub ok: bool,
    /// Wrong PINs in a row, this one included: 0 after a right one.
    pub wrong_in_a_row: u32,
}

/// A finished session's part was copied byte for byte to another medium (a staging ring
/// drained to a slower target) and is read from there from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMoved {
    /// Session.
    pub session: u64,
    /// Stream.
    pub stream: u16,
    /// Part number.
    pub part: u32,
    /// Medium it now lies on.
    pub medium: [u8; 16],
    /// Where it starts there.
    pub position: u64,
    /// Tape file number there (0 elsewhere).
    pub file_number: u32,
}

/// A run of one lane's records in a part of a multiplexed stream (see `pipeline::runs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneRun {
    /// The lane: the first object id of its range.
    pub lane: u64,
    /// First byte, from the part's start.
    pub start: u64,
    /// Byte after the last.
    pub end: u64,
}

/// Most runs in one [`PartRuns`] record (a part with more has several records).
pub const MAX_RUNS: usize = 2048;

// Three varints of at most 10 bytes each per run, and the other fields.
const _: () = assert!(MAX_RUNS * 30 + 64 <= MAX_PAYLOAD_LEN);

/// Where the lanes of a multiplexed stream lie in one of its parts, journaled with the objects
/// that part made durable; a restore of some lanes reads only their runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRuns {
    /// Session.
    pub session: u64,
    /// Stream.
    pub stream: u16,
    /// Part number.
    pub part: u32,
    /// The part's length in bytes, from its start to the end of its last record.
    pub len: u64,
    /// Runs, in order of their starts, each within `len`.
    pub runs: Vec<LaneRun>,
}

/// The [`PartRuns`] records that carry a part's `runs` (in order of their starts), at most
/// [`MAX_RUNS`] each, in order; none for no runs.
pub fn run_batches(session: u64, stream: u16, part: u32, len: u64, runs: &[LaneRun]) -> Vec<PartRuns> {
    runs.chunks(MAX_RUNS).map(|c| PartRuns { session, stream, part, len, runs: c.to_vec() }).collect()
}

/// A stream of a running session ended without its trailer (its device failed): what it
/// holds is read object by object, from the places the catalog recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCut {
    /// Session.
    pub session: u64,
    /// Stream.
    pub stream: u16,
}

/// Regular files an incremental session left out as unchanged since its base: the paths it
/// walked and did not store. Written in batches once the walk is over, the last batch with
/// `complete` set; a session with a complete list is restored as exactly what it walked (a file
/// deleted since the base does not come back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesKept {
    /// Session id (an incremental session, still open).
    pub session: u64,
    /// Paths relative to the source root, as raw bytes.
    pub paths: Vec<serde_bytes::ByteBuf>,
    /// Whether this is the last batch: the list is the whole walk's.
    pub complete: bool,
}

/// Most encoded path bytes one [`FilesKept`] record carries (see [`kept_cost`]).
pub const MAX_KEPT_BYTES: usize = MAX_DEFINITION_LEN - 1024;

/// What one path adds to a [`FilesKept`] record: its bytes and its length (a varint of at
/// most 2 bytes for paths up to 4096 bytes).
pub fn kept_cost(path: &[u8]) -> usize {
    path.len() + 2
}

// A full FilesKept record (paths, their count, the session id, the flag) fits a payload.
const _: () = assert!(MAX_KEPT_BYTES + 32 <= MAX_PAYLOAD_LEN);

/// The [`FilesKept`] records that list `paths` for `session`, each as full as it may be; the
/// last has `complete` as given. No paths and `complete` is one empty record (the list is
/// known to be empty); no paths otherwise is none.
pub fn kept_batches<'a>(
    session: u64,
    paths: impl IntoIterator<Item = &'a [u8]>,
    complete: bool,
) -> Vec<FilesKept> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for p in paths {
        if bytes + kept_cost(p) > MAX_KEPT_BYTES {
            out.push(FilesKept { session, paths: std::mem::take(&mut batch), complete: false });
            bytes = 0;
        }
        bytes += kept_cost(p);
        batch.push(serde_bytes::ByteBuf::from(p.to_vec()));
    }
    if !batch.is_empty() || complete {
        out.push(FilesKept { session, paths: batch, complete: false });
    }
    if let Some(last) = out.last_mut() {
        last.complete = complete;
    }
    out
}

/// The next free session and job ids, when they are above what the catalog's sessions and jobs
/// imply (after pruning and deletion): snapshots carry them so ids are never reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdsReserved {
    /// Next free session id.
    pub next_session: u64,
    /// Next free job id.
    pub next_job: u64,
}

impl RecordBody for MediumAdded {
    const KIND: u16 = 16;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if self.medium == [0; 16] {
            return Err("medium UUID is nil");
        }
        if self.barcode.is_empty()
            || self.barcode.len() > MAX_BARCODE_LEN
            || !self.barcode.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("barcode must be 1 to 32 printable ASCII characters without spaces");
        }
        if !text_ok(&self.pool, 1, MAX_NAME_LEN) {
            return Err("pool name empty, over 256 bytes or holding a NUL");
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) || !self.block_size.is_power_of_two()
        {
            return Err("block size must be a power of two from 512 B to 8 MiB");
        }
        if !text_ok(&self.location, 1, MAX_PATH_LEN) {
            return Err("location empty, over 4096 bytes or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for MediumUpdated {
    const KIND: u16 = 17;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for MediumRemoved {
    const KIND: u16 = 18;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for MediumVaulted {
    const KIND: u16 = 19;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for SessionStarted {
    const KIND: u16 = 32;
    const VERSION: u8 = 2;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id must be from 1 to 2^64 - 2")?;
        if let SessionKind::Incremental { base } = self.kind
            && (base == 0 || base >= self.session)
        {
            return Err("an incremental session's base must be an earlier session");
        }
        if !text_ok(&self.host, 0, MAX_NAME_LEN) {
            return Err("host name over 256 bytes or holding a NUL");
        }
        if !text_ok(&self.source, 0, MAX_PATH_LEN) {
            return Err("source description over 4096 bytes or holding a NUL");
        }
        if self.streams == 0 {
            return Err("a session has at least one stream");
        }
        Ok(())
    }
}

impl RecordBody for SessionPart {
    const KIND: u16 = 33;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for ObjectStored {
    const KIND: u16 = 34;
    const VERSION: u8 = 2;
    fn validate(&self) -> Result<(), &'static str> {
        self.object.validate()
    }
}

impl StoredObject {
    /// Checks the rules of a valid object (in a record, or read from an index file).
    pub fn validate(&self) -> Result<(), &'static str> {
        let o = self;
        if o.path.is_empty() || o.path.len() > MAX_PATH_LEN || o.path.contains(&0) {
            return Err("path empty, over 4096 bytes or holding a NUL");
        }
        if !o.kind.has_data() && (o.size != 0 || o.length != 0 || o.segment_offset != 0) {
            return Err("object without data claims a size or a piece of data");
        }
        if o.segment_offset.checked_add(o.length).is_none() {
            return Err("piece ends past the largest offset");
        }
        Ok(())
    }
}

impl RecordBody for ObjectsStored {
    const KIND: u16 = 40;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id 0 or the largest")?;
        if self.objects.is_empty() {
            return Err("a batch holds at least one object");
        }
        self.objects.iter().try_for_each(StoredObject::validate)?;
        if self.objects.iter().map(object_cost).sum::<usize>() > MAX_OBJECTS_BYTES {
            return Err("the objects are over what one record holds");
        }
        Ok(())
    }
}

impl RecordBody for SessionIndexed {
    const KIND: u16 = 41;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id 0 or the largest")?;
        if self.objects.saturating_add(self.kept) > self.entries {
            return Err("more objects and kept files than entries");
        }
        Ok(())
    }
}

impl RecordBody for PartRuns {
    const KIND: u16 = 42;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id 0 or the largest")?;
        if self.runs.len() > MAX_RUNS {
            return Err("more runs than a record holds");
        }
        let mut last = 0;
        for r in &self.runs {
            if r.lane == 0 || r.start >= r.end || r.end > self.len || r.start < last {
                return Err("a run of lane 0, empty, past the part's end or out of order");
            }
            last = r.start;
        }
        Ok(())
    }
}

impl RecordBody for IndexPruned {
    const KIND: u16 = 43;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id 0 or the largest")
    }
}

impl RecordBody for SessionFinished {
    const KIND: u16 = 35;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for SessionPruned {
    const KIND: u16 = 36;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for PartMoved {
    const KIND: u16 = 37;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for StreamCut {
    const KIND: u16 = 38;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for FilesKept {
    const KIND: u16 = 39;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.session, "session id 0 or the largest")?;
        if self.paths.iter().any(|p| p.is_empty() || p.len() > MAX_PATH_LEN || p.contains(&0)) {
            return Err("path empty, over 4096 bytes or holding a NUL");
        }
        if self.paths.iter().map(|p| kept_cost(p)).sum::<usize>() > MAX_KEPT_BYTES {
            return Err("the paths are over what one record holds");
        }
        Ok(())
    }
}

impl RecordBody for PoolDefined {
    const KIND: u16 = 24;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !crate::board::name_ok(&self.name) {
            return Err("pool name must be 1 to 32 letters, digits, '-' or '_'");
        }
        if !text_ok(&self.definition, 0, MAX_DEFINITION_LEN) {
            return Err("pool definition over 64 KiB or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for JobSaved {
    const KIND: u16 = 48;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        check_id(self.job, "job id must be from 1 to 2^64 - 2")?;
        if !text_ok(&self.name, 1, MAX_NAME_LEN) {
            return Err("job name empty, over 256 bytes or holding a NUL");
        }
        if !text_ok(&self.definition, 0, MAX_DEFINITION_LEN) {
            return Err("job definition over 64 KiB or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for JobStateChanged {
    const KIND: u16 = 49;
    const VERSION: u8 = 2;
    fn validate(&self) -> Result<(), &'static str> {
        if !text_ok(&self.message, 0, MAX_MESSAGE_LEN) {
            return Err("job state message over 4096 bytes or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for JobDeleted {
    const KIND: u16 = 50;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl RecordBody for LogEntry {
    const KIND: u16 = 64;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !text_ok(&self.message, 0, MAX_MESSAGE_LEN) {
            return Err("log message over 4096 bytes or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for ConsoleLogin {
    const KIND: u16 = 96;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !text_ok(&self.tty, 1, MAX_TTY_LEN) {
            return Err("console tty name empty, over 256 bytes or holding a NUL");
        }
        if self.ok != (self.wrong_in_a_row == 0) {
            return Err("a right PIN ends the wrong ones in a row; a wrong one counts at least itself");
        }
        Ok(())
    }
}

/// Whether `p` is an absolute path people may give an agent: `/` then components without
/// `.`, `..`, empty ones or a NUL, at most [`MAX_PATH_LEN`] bytes.
fn agent_path_ok(p: &str) -> bool {
    p.len() <= MAX_PATH_LEN
        && p.starts_with('/')
        && !p.contains('\0')
        && (p == "/" || p[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

impl RecordBody for AgentAdded {
    const KIND: u16 = 112;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !agent_name_ok(&self.name) {
            return Err(
                "agent name must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            );
        }
        if self.paths.len() > MAX_AGENT_PATHS || self.restore_to.len() > MAX_AGENT_PATHS {
            return Err("over 64 paths");
        }
        if self.paths.iter().chain(&self.restore_to).map(String::len).sum::<usize>() > MAX_AGENT_PATH_BYTES {
            return Err("the paths are over 16 KiB together");
        }
        if !self.paths.iter().chain(&self.restore_to).all(|p| agent_path_ok(p)) {
            return Err("an agent's paths are absolute, without '.', '..' or empty components");
        }
        if self.expires < self.added {
            return Err("the token expires before it was made");
        }
        Ok(())
    }
}

impl RecordBody for AgentEnrolled {
    const KIND: u16 = 113;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !agent_name_ok(&self.name) {
            return Err("agent name must be 1 to 64 letters, digits, '.', '_' or '-'");
        }
        Ok(())
    }
}

impl RecordBody for AgentRevoked {
    const KIND: u16 = 114;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !agent_name_ok(&self.name) {
            return Err("agent name must be 1 to 64 letters, digits, '.', '_' or '-'");
        }
        Ok(())
    }
}

impl RecordBody for IdsReserved {
    const KIND: u16 = 80;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if self.next_session == 0 || self.next_job == 0 {
            return Err("ids start at 1");
        }
        Ok(())
    }
}

/// Whether `s` has `min..=max` bytes and no NUL.
fn text_ok(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && !s.contains('\0')
}

/// Ids start at 1 (0 means none) and stop short of `u64::MAX` so the next one exists.
fn check_id(id: u64, what: &'static str) -> Result<(), &'static str> {
    if id == 0 || id == u64::MAX {
        return Err(what);
    }
    Ok(())
}

/// Defines [`Record`] over the record structs, with the per-variant dispatch.
macro_rules! records {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A typed journal record: one change to the catalog.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Record {
            $($(#[$doc])* $name($name),)*
        }

        $(impl From<$name> for Record {
            fn from(body: $name) -> Record {
                Record::$name(body)
            }
        })*

        /// Every kind this build knows: kind, current version, name.
        pub(super) const KNOWN: &[(u16, u8, &str)] =
            &[$((<$name as RecordBody>::KIND, <$name as RecordBody>::VERSION, stringify!($name)),)*];

        impl Record {
            /// Journal record kind.
            pub fn kind(&self) -> u16 {
                match self {
                    $(Record::$name(_) => <$name as RecordBody>::KIND,)*
                }
            }

            /// Version of the record's struct as this build writes it.
            pub fn version(&self) -> u8 {
                match self {
                    $(Record::$name(_) => <$name as RecordBody>::VERSION,)*
                }
            }

            /// Name of the record, for messages.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Record::$name(_) => stringify!($name),)*
                }
            }

            /// Checks the record's own rules; callers check before handing a record to the
            /// journal, and decoding checks again.
            pub fn validate(&self) -> Result<(), CatalogError> {
                let checked = match self {
                    $(Record::$name(body) => body.validate(),)*
                };
                checked.map_err(|what| CatalogError::Invalid { record: self.name(), what })
            }

            fn write_payload(&self, out: &mut Vec<u8>) -> postcard::Result<()> {
                match self {
                    $(Record::$name(body) => postcard::to_io(body, out).map(drop),)*
                }
            }
        }
    };
}

records! {
    /// Kind 16.
    MediumAdded,
    /// Kind 17.
    MediumUpdated,
    /// Kind 18.
    MediumRemoved,
    /// Kind 19.
    MediumVaulted,
    /// Kind 20.
    CleaningUsed,
    /// Kind 21.
    CleaningRetired,
    /// Kind 22.
    MediumErrors,
    /// Kind 23.
    DriveErrors,
    /// Kind 24.
    PoolDefined,
    /// Kind 32.
    SessionStarted,
    /// Kind 33.
    SessionPart,
    /// Kind 34.
    ObjectStored,
    /// Kind 35.
    SessionFinished,
    /// Kind 36.
    SessionPruned,
    /// Kind 37.
    PartMoved,
    /// Kind 38.
    StreamCut,
    /// Kind 39.
    FilesKept,
    /// Kind 40.
    ObjectsStored,
    /// Kind 41.
    SessionIndexed,
    /// Kind 42.
    PartRuns,
    /// Kind 43.
    IndexPruned,
    /// Kind 48.
    JobSaved,
    /// Kind 49.
    JobStateChanged,
    /// Kind 50.
    JobDeleted,
    /// Kind 64.
    LogEntry,
    /// Kind 80.
    IdsReserved,
    /// Kind 96.
    ConsoleLogin,
    /// Kind 112.
    AgentAdded,
    /// Kind 113.
    AgentEnrolled,
    /// Kind 114.
    AgentRevoked,
}

// Kinds are unique, outside the journal's reserved range, and versions start at 1.
const _: () = {
    let mut i = 0;
    while i < KNOWN.len() {
        assert!(KNOWN[i].0 >= FIRST_KIND && KNOWN[i].1 >= 1);
        let mut j = i + 1;
        while j < KNOWN.len() {
            assert!(KNOWN[i].0 != KNOWN[j].0);
            j += 1;
        }
        i += 1;
    }
};

impl Record {
    /// Appends the record's postcard payload to `out`.
    ///
    /// # Panics
    /// If the record breaks its rules: a record that cannot be decoded must never reach the
    /// journal, so callers [`validate`](Self::validate) input first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Err(e) = self.validate() {
            panic!("encoding an invalid journal record (validate before encoding): {e}");
        }
        let start = out.len();
        // Serializing plain structs into a Vec has no failure mode.
        self.write_payload(out).expect("postcard serialization into a Vec failed");
        assert!(out.len() - start <= MAX_PAYLOAD_LEN);
    }

    /// Decodes a payload of the given kind and version, upgrading older versions into the
    /// current structs, and validates the result.
    pub fn decode(kind: u16, version: u8, payload: &[u8]) -> Result<Record, CatalogError> {
        let fail = |reason: String| CatalogError::Decode { kind, version, reason };
        if kind < FIRST_KIND {
            return Err(fail("the kind is reserved for the journal's own records".into()));
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(fail(format!(
                "payload of {} bytes is over the limit of {MAX_PAYLOAD_LEN}",
                payload.len()
            )));
        }
        // One arm per (kind, version) ever written. When a struct changes, its old version keeps
        // an arm that decodes the old struct and upgrades it:
        // `(SessionPart::KIND, 1) => body::<old::SessionPartV1>(..)?.upgrade().into(),`
        let record: Record = match (kind, version) {
            (MediumAdded::KIND, 1) => body::<MediumAdded>(payload).map_err(fail)?.into(),
            (MediumUpdated::KIND, 1) => body::<MediumUpdated>(payload).map_err(fail)?.into(),
            (MediumRemoved::KIND, 1) => body::<MediumRemoved>(payload).map_err(fail)?.into(),
            (MediumVaulted::KIND, 1) => body::<MediumVaulted>(payload).map_err(fail)?.into(),
            (CleaningUsed::KIND, 1) => body::<CleaningUsed>(payload).map_err(fail)?.into(),
            (CleaningRetired::KIND, 1) => body::<CleaningRetired>(payload).map_err(fail)?.into(),
            (MediumErrors::KIND, 1) => body::<MediumErrors>(payload).map_err(fail)?.into(),
            (DriveErrors::KIND, 1) => body::<DriveErrors>(payload).map_err(fail)?.into(),
            (PoolDefined::KIND, 1) => body::<PoolDefined>(payload).map_err(fail)?.into(),
            (SessionStarted::KIND, 1) => {
                body::<old::SessionStartedV1>(payload).map_err(fail)?.upgrade().into()
            }
            (SessionStarted::KIND, 2) => body::<SessionStarted>(payload).map_err(fail)?.into(),
            (SessionPart::KIND, 1) => body::<SessionPart>(payload).map_err(fail)?.into(),
            (ObjectStored::KIND, 1) => body::<old::ObjectStoredV1>(payload).map_err(fail)?.upgrade().into(),
            (ObjectStored::KIND, 2) => body::<ObjectStored>(payload).map_err(fail)?.into(),
            (SessionFinished::KIND, 1) => body::<SessionFinished>(payload).map_err(fail)?.into(),
            (SessionPruned::KIND, 1) => body::<SessionPruned>(payload).map_err(fail)?.into(),
            (PartMoved::KIND, 1) => body::<PartMoved>(payload).map_err(fail)?.into(),
            (StreamCut::KIND, 1) => body::<StreamCut>(payload).map_err(fail)?.into(),
            (FilesKept::KIND, 1) => body::<FilesKept>(payload).map_err(fail)?.into(),
            (ObjectsStored::KIND, 1) => body::<ObjectsStored>(payload).map_err(fail)?.into(),
            (SessionIndexed::KIND, 1) => body::<SessionIndexed>(payload).map_err(fail)?.into(),
            (PartRuns::KIND, 1) => body::<PartRuns>(payload).map_err(fail)?.into(),
            (IndexPruned::KIND, 1) => body::<IndexPruned>(payload).map_err(fail)?.into(),
            (JobSaved::KIND, 1) => body::<JobSaved>(payload).map_err(fail)?.into(),
            (JobStateChanged::KIND, 1) => {
                body::<old::JobStateChangedV1>(payload).map_err(fail)?.upgrade().into()
            }
            (JobStateChanged::KIND, 2) => body::<JobStateChanged>(payload).map_err(fail)?.into(),
            (JobDeleted::KIND, 1) => body::<JobDeleted>(payload).map_err(fail)?.into(),
            (LogEntry::KIND, 1) => body::<LogEntry>(payload).map_err(fail)?.into(),
            (IdsReserved::KIND, 1) => body::<IdsReserved>(payload).map_err(fail)?.into(),
            (ConsoleLogin::KIND, 1) => body::<ConsoleLogin>(payload).map_err(fail)?.into(),
            (AgentAdded::KIND, 1) => body::<AgentAdded>(payload).map_err(fail)?.into(),
            (AgentEnrolled::KIND, 1) => body::<AgentEnrolled>(payload).map_err(fail)?.into(),
            (AgentRevoked::KIND, 1) => body::<AgentRevoked>(payload).map_err(fail)?.into(),
            _ => return Err(unknown(kind, version)),
        };
        record.validate()?;
        Ok(record)
    }
}

/// Decodes one struct, refusing trailing bytes.
fn body<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, String> {
    let (v, rest) = postcard::take_from_bytes::<T>(payload).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the payload", rest.len()));
    }
    Ok(v)
}

/// The error for a (kind, version) pair no arm decodes.
fn unknown(kind: u16, version: u8) -> CatalogError {
    match KNOWN.iter().find(|k| k.0 == kind) {
        None => CatalogError::UnknownKind { kind },
        Some(&(_, known, name)) if version > known => {
            CatalogError::UnknownVersion { kind, name, version, known }
        }
        Some(_) => CatalogError::Decode { kind, version, reason: "no coffer ever wrote this version".into() },
    }
}

impl crate::journal::Entry for Record {
    fn kind(&self) -> u16 {
        Record::kind(self)
    }
    fn version(&self) -> u8 {
        Record::version(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        Record::encode(self, out)
    }
}
