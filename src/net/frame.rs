//! The agent wire protocol: frames, the messages they carry, a sans-io [`Decoder`] and async
//! read/write helpers. Runs inside the mutual-TLS stream between the box and a backup agent.
//!
//! # Frame
//!
//! Every message travels as one frame: a fixed header, then a payload.
//!
//! | offset | size  | field    | value                                                        |
//! |--------|-------|----------|--------------------------------------------------------------|
//! | 0      | 4     | magic    | `b"CFAG"`                                                    |
//! | 4      | 1     | version  | [`PROTOCOL_VERSION`] (2)                                     |
//! | 5      | 1     | kind     | the message kind, see below                                  |
//! | 6      | 2     | reserved | zero; anything else is refused                               |
//! | 8      | 4     | len      | payload length, u32 little-endian, at most [`MAX_PAYLOAD`]   |
//! | 12     | `len` | payload  | the postcard encoding of the message's body                  |
//!
//! The body of a kind is the struct of its fields in the order listed below; postcard writes a
//! struct as its fields back to back: a string or byte field as a varint length and the bytes,
//! a `u64` as a varint. The payload is exactly the body: trailing bytes are an error.
//!
//! # Messages
//!
//! Kinds are grouped in blocks of 16 so each stage of a conversation has room to grow; 0 is
//! never a kind.
//!
//! | kind   | message    | direction      | body                                        |
//! |--------|------------|----------------|---------------------------------------------|
//! | `0x01` | `Enroll`   | agent → box    | `name: str, token: str, csr_der: bytes`     |
//! | `0x02` | `Enrolled` | box → agent    | `cert_der: bytes, ca_der: bytes`            |
//! | `0x10` | `Hello`    | agent → box    | `name: str, version: str`                   |
//! | `0x11` | `Welcome`  | box → agent    | `box_name: str`                             |
//! | `0x20` | `Ping`     | either         | `seq: u64`                                  |
//! | `0x21` | `Pong`     | either         | `seq: u64`                                  |
//! | `0x30` | `Refused`  | either         | `reason: str`                               |
//! | `0x40` | `Backup`   | box → agent    | `job: u64, root: str, prefix: bytes, first_seq: u64, first_object: u64, unit: u64, one_file_system: bool, incremental: bool, compress: bool` |
//! | `0x41` | `Units`    | agent → box    | `job: u64, last: bool, bytes: bytes`        |
//! | `0x42` | `Done`     | agent → box    | `job: u64, next_seq: u64, next_object: u64, problems: [str], error: str` |
//! | `0x43` | `Cancel`   | box → agent    | `job: u64`                                  |
//! | `0x44` | `Judge`    | agent → box    | `job: u64, bytes: bytes`                    |
//! | `0x45` | `Judged`   | box → agent    | `job: u64, skip: bytes`                     |
//! | `0x50` | `Restore`  | box → agent    | `job: u64, session: u64, root: str, all: bool, compare: bool` |
//! | `0x51` | `Objects`  | box → agent    | `job: u64, bytes: bytes`                    |
//! | `0x52` | `Items`    | box → agent    | `job: u64, last: bool, bytes: bytes`        |
//! | `0x53` | `Finish`   | box → agent    | `job: u64`                                  |
//! | `0x54` | `Restored` | agent → box    | `job: u64, objects: u64, bytes: u64, failures: [str], more: u64` |
//!
//! A backup is one conversation: the box asks `Backup` of the tree at `root`, the agent walks
//! and reads it as a local backup would (numbering records from `first_seq` and objects from
//! `first_object`, every path after `prefix`), and sends each pipeline unit as the postcard
//! bytes of a [`crate::pipeline::remote::WireUnit`], cut into `Units` frames of at most
//! [`MAX_CHUNK`] bytes (`last` on a unit's final piece). `Done` ends it with the next free
//! numbers and what could not be read (`error` empty when the walk ended well). `Cancel`
//! asks the agent to stop; it still ends with `Done`. An `incremental` backup leaves out the
//! regular files unchanged since the box's baseline, which stays on the box: the agent sends
//! the metadata of the entries it walked in `Judge` frames (postcard `[ObjectMeta]`, at most
//! [`MAX_CHUNK`] bytes), each answered by `Judged`: one bit per entry, in order (bit `i % 8`
//! of byte `i / 8`), set for the entries to leave out.
//!
//! With `compress`, the agent compresses: its data and packs cross as the encoded records
//! (LZ4 or raw, checksummed), which the box checks record by record and writes as they are.
//!
//! Version 2 added `incremental` and `compress` to `Backup`, `Judge` and `Judged`, and
//! `compare` to `Restore`.
//!
//! A restore onto the agent is the other way round: `Restore` names the directory, `Objects`
//! carry the session's stored objects (postcard `[(StoredObject, selected: bool)]`, in
//! pieces of at most [`MAX_CHUNK`] bytes), `Items` the records the box reads back (each the
//! postcard of a [`crate::pipeline::remote::WireItem`], cut like units), `Finish` says every
//! record was sent, and the agent answers `Restored`: what it recreated, and the first
//! [`MAX_PROBLEMS`] failures (`more` counts the rest). With `compare` (a `verify --compare`
//! of the agent's files) the agent recreates nothing: it checks every record as a verify does
//! and compares each object with the file under `root`, each difference a failure.
//!
//! Field rules, checked by [`Message::validate`] before a message is encoded and again after
//! one is decoded:
//!
//! | field                                 | rule                                                   |
//! |---------------------------------------|--------------------------------------------------------|
//! | `name`, `box_name`                    | 1..=64 bytes of `A-Z a-z 0-9 . _ -`                    |
//! | `token`                               | 16..=128 bytes of URL-safe base64 (`A-Z a-z 0-9 - _`), at most two `=` of padding at the end |
//! | `csr_der`, `cert_der`, `ca_der`       | 1..=16 KiB                                             |
//! | `version`                             | 1..=64 bytes of printable ASCII without spaces         |
//! | `reason`                              | at most 4096 bytes of UTF-8, no NUL                    |
//! | `root`                                | an absolute path of at most 4096 bytes, no NUL         |
//! | `prefix`                              | at most 255 bytes, no `/` or NUL                       |
//! | `unit`                                | 64 KiB to 64 MiB                                       |
//! | `bytes` (`Units`)                     | 1 to [`MAX_CHUNK`] bytes                               |
//! | `problems`, `error`                   | at most [`MAX_PROBLEMS`] problems; each, and `error`, at most 4096 bytes of UTF-8 |
//!
//! # Fault model
//!
//! The peer is untrusted until its certificate is checked, and possibly broken after. Nothing
//! it sends makes this module panic or allocate more than a bound: the header is checked
//! (magic, then version, reserved bytes, length, kind) before a single payload byte is
//! buffered, so a length over [`MAX_PAYLOAD`] is refused from the header alone. Every error is
//! fatal to the connection: the caller logs it with the peer's address, may send `Refused`, and
//! closes. There is no version negotiation; a peer of another version gets a clear refusal.

use serde::de::DeserializeOwned;
use serde_bytes::{ByteBuf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CFAG";
/// The protocol version this build speaks, written in every header.
pub const PROTOCOL_VERSION: u8 = 2;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 12;
/// Largest payload of a frame: a 1 MiB data chunk plus room for its fields.
pub const MAX_PAYLOAD: usize = (1 << 20) + 4096;
/// Most unread bytes a [`Decoder`] holds: one whole frame left over plus one more pushed. A
/// caller that takes every message with [`Decoder::next`] after each push of at most
/// `HEADER_LEN + MAX_PAYLOAD` bytes never reaches it.
pub const MAX_BUFFERED: usize = 2 * (HEADER_LEN + MAX_PAYLOAD);
/// Longest agent or box name, in bytes.
pub const MAX_NAME: usize = 64;
/// Shortest enrollment token, in bytes.
pub const MIN_TOKEN: usize = 16;
/// Longest enrollment token, in bytes.
pub const MAX_TOKEN: usize = 128;
/// Largest DER certificate or certificate request.
pub const MAX_DER: usize = 16 * 1024;
/// Largest piece of a unit in one `Units` frame.
pub const MAX_CHUNK: usize = 1 << 20;
/// Most problems one `Done` reports; more are counted in the last one.
pub const MAX_PROBLEMS: usize = 64;
/// Longest backup root, in bytes.
pub const MAX_ROOT: usize = 4096;
/// Smallest and largest unit a backup may ask for.
pub const UNIT_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(64 << 20);
/// Longest version string, in bytes.
pub const MAX_VERSION: usize = 64;
/// Longest reason in `Refused`, in bytes.
pub const MAX_REASON: usize = 4096;
/// A decoder whose buffer empties gives back capacity above this, so an idle connection does
/// not keep a megabyte that one large frame needed.
const IDLE_CAPACITY: usize = 64 * 1024;
/// Longest postcard varint (a u64).
const MAX_VARINT: usize = 10;

const _: () = assert!(MAX_PAYLOAD <= u32::MAX as usize);
// The largest valid message fits a frame with room to spare: frames never need more than one
// bound, and the bound is about data chunks, not these.
const _: () = assert!(MAX_NAME + MAX_TOKEN + MAX_DER + 3 * MAX_VARINT <= MAX_PAYLOAD / 4);
const _: () = assert!(2 * (MAX_DER + MAX_VARINT) <= MAX_PAYLOAD / 4);
const _: () = assert!(MAX_REASON + MAX_VARINT <= MAX_PAYLOAD / 4);
const _: () = assert!(IDLE_CAPACITY < MAX_BUFFERED);
const _: () = assert!(MAX_CHUNK + 4 * MAX_VARINT <= MAX_PAYLOAD);
const _: () = assert!((MAX_PROBLEMS + 1) * (MAX_REASON + MAX_VARINT) + 4 * MAX_VARINT <= MAX_PAYLOAD);
const _: () = assert!(MAX_ROOT + 255 + 8 * MAX_VARINT <= MAX_PAYLOAD / 4);

/// Message kinds as written in the header.
pub mod kind {
    /// [`super::Message::Enroll`].
    pub const ENROLL: u8 = 0x01;
    /// [`super::Message::Enrolled`].
    pub const ENROLLED: u8 = 0x02;
    /// [`super::Message::Hello`].
    pub const HELLO: u8 = 0x10;
    /// [`super::Message::Welcome`].
    pub const WELCOME: u8 = 0x11;
    /// [`super::Message::Ping`].
    pub const PING: u8 = 0x20;
    /// [`super::Message::Pong`].
    pub const PONG: u8 = 0x21;
    /// [`super::Message::Refused`].
    pub const REFUSED: u8 = 0x30;
    /// [`super::Message::Backup`].
    pub const BACKUP: u8 = 0x40;
    /// [`super::Message::Units`].
    pub const UNITS: u8 = 0x41;
    /// [`super::Message::Done`].
    pub const DONE: u8 = 0x42;
    /// [`super::Message::Cancel`].
    pub const CANCEL: u8 = 0x43;
    /// [`super::Message::Judge`].
    pub const JUDGE: u8 = 0x44;
    /// [`super::Message::Judged`].
    pub const JUDGED: u8 = 0x45;
    /// [`super::Message::Restore`].
    pub const RESTORE: u8 = 0x50;
    /// [`super::Message::Objects`].
    pub const OBJECTS: u8 = 0x51;
    /// [`super::Message::Items`].
    pub const ITEMS: u8 = 0x52;
    /// [`super::Message::Finish`].
    pub const FINISH: u8 = 0x53;
    /// [`super::Message::Restored`].
    pub const RESTORED: u8 = 0x54;
    /// Every kind this build knows.
    pub const ALL: [u8; 18] = [
        ENROLL, ENROLLED, HELLO, WELCOME, PING, PONG, REFUSED, BACKUP, UNITS, DONE, CANCEL, JUDGE, JUDGED,
        RESTORE, OBJECTS, ITEMS, FINISH, RESTORED,
    ];
}

/// The message name of a kind this build knows, `None` for any other byte.
pub fn kind_name(k: u8) -> Option<&'static str> {
    Some(match k {
        kind::ENROLL => "Enroll",
        kind::ENROLLED => "Enrolled",
        kind::HELLO => "Hello",
        kind::WELCOME => "Welcome",
        kind::PING => "Ping",
        kind::PONG => "Pong",
        kind::REFUSED => "Refused",
        kind::BACKUP => "Backup",
        kind::UNITS => "Units",
        kind::DONE => "Done",
        kind::CANCEL => "Cancel",
        kind::JUDGE => "Judge",
        kind::JUDGED => "Judged",
        kind::RESTORE => "Restore",
        kind::OBJECTS => "Objects",
        kind::ITEMS => "Items",
        kind::FINISH => "Finish",
        kind::RESTORED => "Restored",
        _ => return None,
    })
}

fn kind_label(k: &u8) -> &'static str {
    kind_name(*k).unwrap_or("unknown")
}

/// Why a frame could not be read, decoded or encoded. Each message reads well after the
/// caller's "agent 192.0.2.7:50412: ".
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first bytes are not `CFAG`: not a coffer agent, or a stream out of step.
    #[error(
        "peer sent something that is not a coffer agent frame (bad magic): it is not a coffer \
         agent, or it is pointed at the wrong port"
    )]
    BadMagic,
    /// The header carries another protocol version.
    #[error(
        "peer speaks agent protocol version {found}; this coffer speaks {PROTOCOL_VERSION}: \
         upgrade the older side"
    )]
    Version { found: u8 },
    /// A kind this build does not know.
    #[error(
        "peer sent a message of unknown kind {kind:#04x}: it is a newer or broken agent; upgrade \
         the older side"
    )]
    UnknownKind { kind: u8 },
    /// A payload length over [`MAX_PAYLOAD`], refused before any of it was read.
    #[error(
        "frame of {len} payload bytes is over the limit of {MAX_PAYLOAD}: refused unread; the \
         sender is broken or not a coffer agent"
    )]
    TooLong { len: usize },
    /// A header with reserved bytes set, or a payload that does not decode as its kind.
    #[error(
        "malformed {} message (kind {kind:#04x}): {why}; the sender is broken or not a coffer agent",
        kind_label(.kind)
    )]
    Malformed { kind: u8, why: String },
    /// A well-formed message that breaks a field rule: refused before sending or after
    /// receiving.
    #[error("message refused: {what}")]
    Invalid { what: String },
    /// [`Decoder::push`] would hold more than [`MAX_BUFFERED`] unread bytes: the caller pushed
    /// without taking messages out.
    #[error(
        "frame decoder holds {buffered} unread bytes and was given {pushed} more, over its bound \
         of {MAX_BUFFERED}: take messages with next() between pushes (a bug in coffer)"
    )]
    Overfull { buffered: usize, pushed: usize },
    /// The connection failed under the async helpers.
    #[error("agent connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between frames.
    #[error("peer closed the connection")]
    Closed,
    /// The connection ended inside a frame.
    #[error(
        "connection ended in the middle of a frame: the peer stopped or the network failed \
         mid-message"
    )]
    Truncated,
}

/// One message of the agent protocol. `Debug` shows byte fields as lengths and never shows
/// the enrollment token, so a message can be logged.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// Agent → box: asks for a client certificate, proving itself with a one-time token.
    Enroll { name: String, token: String, csr_der: Vec<u8> },
    /// Box → agent: the signed client certificate and the box's CA certificate.
    Enrolled { cert_der: Vec<u8>, ca_der: Vec<u8> },
    /// Agent → box, first after mutual TLS: who it is and which coffer build it runs.
    Hello { name: String, version: String },
    /// Box → agent: the answer to `Hello`.
    Welcome { box_name: String },
    /// Either side: are you there?
    Ping { seq: u64 },
    /// Either side: the answer to `Ping` with its `seq`.
    Pong { seq: u64 },
    /// Either side, just before closing: why.
    Refused { reason: String },
    /// Box → agent: back up the tree at `root` (see the module docs).
    Backup {
        job: u64,
        root: String,
        prefix: Vec<u8>,
        first_seq: u64,
        first_object: u64,
        unit: u64,
        one_file_system: bool,
        incremental: bool,
        compress: bool,
    },
    /// Agent → box: a piece of one pipeline unit.
    Units { job: u64, last: bool, bytes: Vec<u8> },
    /// Agent → box: the backup ended.
    Done { job: u64, next_seq: u64, next_object: u64, problems: Vec<String>, error: String },
    /// Box → agent: stop the backup.
    Cancel { job: u64 },
    /// Agent → box: which of these walked entries to leave out (an incremental backup).
    Judge { job: u64, bytes: Vec<u8> },
    /// Box → agent: the answer to `Judge`, a bit per entry.
    Judged { job: u64, skip: Vec<u8> },
    /// Box → agent: recreate a session's objects under `root`.
    Restore { job: u64, session: u64, root: String, all: bool, compare: bool },
    /// Box → agent: a piece of the session's stored objects.
    Objects { job: u64, bytes: Vec<u8> },
    /// Box → agent: a piece of one record read back.
    Items { job: u64, last: bool, bytes: Vec<u8> },
    /// Box → agent: every record was sent.
    Finish { job: u64 },
    /// Agent → box: how the restore went.
    Restored { job: u64, objects: u64, bytes: u64, failures: Vec<String>, more: u64 },
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Shows a byte field as its length.
        struct Len(usize);
        impl std::fmt::Debug for Len {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "<{} bytes>", self.0)
            }
        }
        match self {
            Message::Enroll { name, token, csr_der } => f
                .debug_struct("Enroll")
                .field("name", name)
                .field("token", &format_args!("<redacted, {} bytes>", token.len()))
                .field("csr_der", &Len(csr_der.len()))
                .finish(),
            Message::Enrolled { cert_der, ca_der } => f
                .debug_struct("Enrolled")
                .field("cert_der", &Len(cert_der.len()))
                .field("ca_der", &Len(ca_der.len()))
                .finish(),
            Message::Hello { name, version } => {
                f.debug_struct("Hello").field("name", name).field("version", version).finish()
            }
            Message::Welcome { box_name } => f.debug_struct("Welcome").field("box_name", box_name).finish(),
            Message::Ping { seq } => f.debug_struct("Ping").field("seq", seq).finish(),
            Message::Pong { seq } => f.debug_struct("Pong").field("seq", seq).finish(),
            Message::Refused { reason } => f.debug_struct("Refused").field("reason", reason).finish(),
            Message::Backup { job, root, first_seq, first_object, .. } => f
                .debug_struct("Backup")
                .field("job", job)
                .field("root", root)
                .field("first_seq", first_seq)
                .field("first_object", first_object)
                .finish_non_exhaustive(),
            Message::Judge { job, bytes } => {
                f.debug_struct("Judge").field("job", job).field("bytes", &Len(bytes.len())).finish()
            }
            Message::Judged { job, skip } => {
                f.debug_struct("Judged").field("job", job).field("skip", &Len(skip.len())).finish()
            }
            Message::Units { job, last, bytes } => f
                .debug_struct("Units")
                .field("job", job)
                .field("last", last)
                .field("bytes", &Len(bytes.len()))
                .finish(),
            Message::Done { job, next_seq, next_object, problems, error } => f
                .debug_struct("Done")
                .field("job", job)
                .field("next_seq", next_seq)
                .field("next_object", next_object)
                .field("problems", &problems.len())
                .field("error", error)
                .finish(),
            Message::Cancel { job } => f.debug_struct("Cancel").field("job", job).finish(),
            Message::Restore { job, session, root, all, compare } => f
                .debug_struct("Restore")
                .field("job", job)
                .field("session", session)
                .field("root", root)
                .field("all", all)
                .field("compare", compare)
                .finish(),
            Message::Objects { job, bytes } => {
                f.debug_struct("Objects").field("job", job).field("bytes", &Len(bytes.len())).finish()
            }
            Message::Items { job, last, bytes } => f
                .debug_struct("Items")
                .field("job", job)
                .field("last", last)
                .field("bytes", &Len(bytes.len()))
                .finish(),
            Message::Finish { job } => f.debug_struct("Finish").field("job", job).finish(),
            Message::Restored { job, objects, bytes, failures, more } => f
                .debug_struct("Restored")
                .field("job", job)
                .field("objects", objects)
                .field("bytes", bytes)
                .field("failures", &failures.len())
                .field("more", more)
                .finish(),
        }
    }
}

impl Message {
    /// The kind byte written in the header.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Enroll { .. } => kind::ENROLL,
            Message::Enrolled { .. } => kind::ENROLLED,
            Message::Hello { .. } => kind::HELLO,
            Message::Welcome { .. } => kind::WELCOME,
            Message::Ping { .. } => kind::PING,
            Message::Pong { .. } => kind::PONG,
            Message::Refused { .. } => kind::REFUSED,
            Message::Backup { .. } => kind::BACKUP,
            Message::Units { .. } => kind::UNITS,
            Message::Done { .. } => kind::DONE,
            Message::Judge { .. } => kind::JUDGE,
            Message::Judged { .. } => kind::JUDGED,
            Message::Cancel { .. } => kind::CANCEL,
            Message::Restore { .. } => kind::RESTORE,
            Message::Objects { .. } => kind::OBJECTS,
            Message::Items { .. } => kind::ITEMS,
            Message::Finish { .. } => kind::FINISH,
            Message::Restored { .. } => kind::RESTORED,
        }
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        kind_label(&self.kind())
    }

    /// Checks the field rules in the module docs.
    pub fn validate(&self) -> Result<(), FrameError> {
        match self {
            Message::Enroll { name, token, csr_der } => {
                check_name("Enroll name", name)?;
                check_token(token)?;
                check_der("Enroll certificate request", csr_der)
            }
            Message::Enrolled { cert_der, ca_der } => {
                check_der("Enrolled certificate", cert_der)?;
                check_der("Enrolled CA certificate", ca_der)
            }
            Message::Hello { name, version } => {
                check_name("Hello name", name)?;
                check_version(version)
            }
            Message::Welcome { box_name } => check_name("Welcome box name", box_name),
            Message::Ping { .. } | Message::Pong { .. } => Ok(()),
            Message::Refused { reason } => check_reason(reason),
            Message::Backup { root, prefix, unit, .. } => {
                if !root.starts_with('/') || root.len() > MAX_ROOT || root.contains('\0') {
                    return Err(invalid(format!(
                        "Backup root must be an absolute path of at most {MAX_ROOT} bytes without NUL"
                    )));
                }
                if prefix.len() > 255 || prefix.iter().any(|&b| b == b'/' || b == 0) {
                    return Err(invalid("Backup prefix must be one name of at most 255 bytes".into()));
                }
                if !UNIT_RANGE.contains(unit) {
                    return Err(invalid(format!("Backup unit of {unit} bytes is outside 64 KiB to 64 MiB")));
                }
                Ok(())
            }
            Message::Units { bytes, .. }
            | Message::Objects { bytes, .. }
            | Message::Items { bytes, .. }
            | Message::Judge { bytes, .. }
            | Message::Judged { skip: bytes, .. } => {
                if bytes.is_empty() || bytes.len() > MAX_CHUNK {
                    return Err(invalid(format!(
                        "{} carries {} bytes; 1 to {MAX_CHUNK}",
                        self.name(),
                        bytes.len()
                    )));
                }
                Ok(())
            }
            Message::Restore { root, .. } => {
                if !root.starts_with('/') || root.len() > MAX_ROOT || root.contains('\0') {
                    return Err(invalid(format!(
                        "Restore root must be an absolute path of at most {MAX_ROOT} bytes without NUL"
                    )));
                }
                Ok(())
            }
            Message::Restored { failures, .. } => {
                if failures.len() > MAX_PROBLEMS {
                    return Err(invalid(format!(
                        "Restored reports {} failures; at most {MAX_PROBLEMS}",
                        failures.len()
                    )));
                }
                failures.iter().try_for_each(|p| check_reason(p))
            }
            Message::Finish { .. } => Ok(()),
            Message::Done { problems, error, .. } => {
                if problems.len() > MAX_PROBLEMS {
                    return Err(invalid(format!(
                        "Done reports {} problems; at most {MAX_PROBLEMS}",
                        problems.len()
                    )));
                }
                problems.iter().chain(std::iter::once(error)).try_for_each(|p| check_reason(p))
            }
            Message::Cancel { .. } => Ok(()),
        }
    }
}

fn invalid(what: String) -> FrameError {
    FrameError::Invalid { what }
}

fn check_name(field: &str, name: &str) -> Result<(), FrameError> {
    let rule = format!("a name is 1 to {MAX_NAME} bytes of A-Z a-z 0-9 . _ -");
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid(format!("{field} is {} bytes; {rule}", name.len())));
    }
    if let Some(at) = name.bytes().position(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(&b))) {
        return Err(invalid(format!("{field} has a character outside the allowed set at byte {at}; {rule}")));
    }
    Ok(())
}

/// URL-safe base64 (RFC 4648 §5), with or without `=` padding. The token is never quoted.
fn check_token(token: &str) -> Result<(), FrameError> {
    let rule = format!(
        "an enrollment token is {MIN_TOKEN} to {MAX_TOKEN} characters of URL-safe base64: copy it \
         again from the box"
    );
    if !(MIN_TOKEN..=MAX_TOKEN).contains(&token.len()) {
        return Err(invalid(format!("Enroll token is {} bytes; {rule}", token.len())));
    }
    let body = token.trim_end_matches('=');
    let padding = token.len() - body.len();
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if padding > 2 || !body.bytes().all(alphabet) {
        return Err(invalid(format!("Enroll token has characters outside URL-safe base64; {rule}")));
    }
    Ok(())
}

fn check_der(field: &str, der: &[u8]) -> Result<(), FrameError> {
    if der.is_empty() || der.len() > MAX_DER {
        return Err(invalid(format!(
            "{field} is {} bytes; it must be 1 to {MAX_DER} bytes of DER",
            der.len()
        )));
    }
    Ok(())
}

fn check_version(version: &str) -> Result<(), FrameError> {
    let rule = format!("a version is 1 to {MAX_VERSION} bytes of printable ASCII without spaces");
    if version.is_empty() || version.len() > MAX_VERSION {
        return Err(invalid(format!("Hello version is {} bytes; {rule}", version.len())));
    }
    if !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!("Hello version has a character outside printable ASCII; {rule}")));
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), FrameError> {
    if reason.len() > MAX_REASON {
        return Err(invalid(format!(
            "Refused reason is {} bytes; a reason is at most {MAX_REASON} bytes",
            reason.len()
        )));
    }
    if reason.contains('\0') {
        return Err(invalid("Refused reason contains a NUL byte".to_string()));
    }
    Ok(())
}

/// Encodes a message as one frame, header and payload. Refuses a message that breaks a field
/// rule: nothing invalid leaves this side.
pub fn encode(m: &Message) -> Result<Vec<u8>, FrameError> {
    m.validate()?;
    let out = write_body(m, vec![0; HEADER_LEN]).expect("postcard writes strings, bytes and u64 to a Vec");
    let len = out.len() - HEADER_LEN;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len });
    }
    let mut out = out;
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = PROTOCOL_VERSION;
    out[5] = m.kind();
    out[6..8].copy_from_slice(&[0, 0]);
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Appends the postcard body of `m` to `out`: a tuple of the fields, which postcard writes
/// exactly as the struct of those fields.
fn write_body(m: &Message, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    match m {
        Message::Enroll { name, token, csr_der } => {
            postcard::to_extend(&(name, token, Bytes::new(csr_der)), out)
        }
        Message::Enrolled { cert_der, ca_der } => {
            postcard::to_extend(&(Bytes::new(cert_der), Bytes::new(ca_der)), out)
        }
        Message::Hello { name, version } => postcard::to_extend(&(name, version), out),
        Message::Welcome { box_name } => postcard::to_extend(box_name, out),
        Message::Ping { seq } | Message::Pong { seq } => postcard::to_extend(seq, out),
        Message::Refused { reason } => postcard::to_extend(reason, out),
        Message::Backup {
            job,
            root,
            prefix,
            first_seq,
            first_object,
            unit,
            one_file_system,
            incremental,
            compress,
        } => postcard::to_extend(
            &(
                job,
                root,
                Bytes::new(prefix),
                first_seq,
                first_object,
                unit,
                one_file_system,
                incremental,
                compress,
            ),
            out,
        ),
        Message::Judge { job, bytes } => postcard::to_extend(&(job, Bytes::new(bytes)), out),
        Message::Judged { job, skip } => postcard::to_extend(&(job, Bytes::new(skip)), out),
        Message::Units { job, last, bytes } => postcard::to_extend(&(job, last, Bytes::new(bytes)), out),
        Message::Done { job, next_seq, next_object, problems, error } => {
            postcard::to_extend(&(job, next_seq, next_object, problems, error), out)
        }
        Message::Cancel { job } | Message::Finish { job } => postcard::to_extend(job, out),
        Message::Restore { job, session, root, all, compare } => {
            postcard::to_extend(&(job, session, root, all, compare), out)
        }
        Message::Objects { job, bytes } => postcard::to_extend(&(job, Bytes::new(bytes)), out),
        Message::Items { job, last, bytes } => postcard::to_extend(&(job, last, Bytes::new(bytes)), out),
        Message::Restored { job, objects, bytes, failures, more } => {
            postcard::to_extend(&(job, objects, bytes, failures, more), out)
        }
    }
}

/// Checks a frame header; returns the message kind and the payload length. Checks magic,
/// version, reserved bytes, length and kind in that order, so a peer of another version is
/// told so whatever else its header holds.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<(u8, usize), FrameError> {
    if b[0..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if b[4] != PROTOCOL_VERSION {
        return Err(FrameError::Version { found: b[4] });
    }
    let kind = b[5];
    if b[6..8] != [0, 0] {
        let why = format!("reserved header bytes are {:#04x} {:#04x}, not zero", b[6], b[7]);
        return Err(FrameError::Malformed { kind, why });
    }
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len });
    }
    if kind_name(kind).is_none() {
        return Err(FrameError::UnknownKind { kind });
    }
    Ok((kind, len))
}

/// Decodes and validates the payload of a frame of `kind`. The payload must be exactly one
/// body.
pub fn decode_body(kind: u8, payload: &[u8]) -> Result<Message, FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len: payload.len() });
    }
    let m = match kind {
        kind::ENROLL => {
            let (name, token, csr_der): (String, String, ByteBuf) = body(kind, payload)?;
            Message::Enroll { name, token, csr_der: csr_der.into_vec() }
        }
        kind::ENROLLED => {
            let (cert_der, ca_der): (ByteBuf, ByteBuf) = body(kind, payload)?;
            Message::Enrolled { cert_der: cert_der.into_vec(), ca_der: ca_der.into_vec() }
        }
        kind::HELLO => {
            let (name, version) = body(kind, payload)?;
            Message::Hello { name, version }
        }
        kind::WELCOME => Message::Welcome { box_name: body(kind, payload)? },
        kind::PING => Message::Ping { seq: body(kind, payload)? },
        kind::PONG => Message::Pong { seq: body(kind, payload)? },
        kind::REFUSED => Message::Refused { reason: body(kind, payload)? },
        kind::BACKUP => {
            let (job, root, prefix, first_seq, first_object, unit, one_file_system, incremental, compress): (
                u64,
                String,
                ByteBuf,
                u64,
                u64,
                u64,
                bool,
                bool,
                bool,
            ) = body(kind, payload)?;
            Message::Backup {
                job,
                root,
                prefix: prefix.into_vec(),
                first_seq,
                first_object,
                unit,
                one_file_system,
                incremental,
                compress,
            }
        }
        kind::JUDGE => {
            let (job, bytes): (u64, ByteBuf) = body(kind, payload)?;
            Message::Judge { job, bytes: bytes.into_vec() }
        }
        kind::JUDGED => {
            let (job, skip): (u64, ByteBuf) = body(kind, payload)?;
            Message::Judged { job, skip: skip.into_vec() }
        }
        kind::UNITS => {
            let (job, last, bytes): (u64, bool, ByteBuf) = body(kind, payload)?;
            Message::Units { job, last, bytes: bytes.into_vec() }
        }
        kind::DONE => {
            let (job, next_seq, next_object, problems, error) = body(kind, payload)?;
            Message::Done { job, next_seq, next_object, problems, error }
        }
        kind::CANCEL => Message::Cancel { job: body(kind, payload)? },
        kind::RESTORE => {
            let (job, session, root, all, compare) = body(kind, payload)?;
            Message::Restore { job, session, root, all, compare }
        }
        kind::OBJECTS => {
            let (job, bytes): (u64, ByteBuf) = body(kind, payload)?;
            Message::Objects { job, bytes: bytes.into_vec() }
        }
        kind::ITEMS => {
            let (job, last, bytes): (u64, bool, ByteBuf) = body(kind, payload)?;
            Message::Items { job, last, bytes: bytes.into_vec() }
        }
        kind::FINISH => Message::Finish { job: body(kind, payload)? },
        kind::RESTORED => {
            let (job, objects, bytes, failures, more) = body(kind, payload)?;
            Message::Restored { job, objects, bytes, failures, more }
        }
        _ => return Err(FrameError::UnknownKind { kind }),
    };
    m.validate()?;
    Ok(m)
}

/// Decodes one `T` that must fill the payload exactly.
fn body<T: DeserializeOwned>(kind: u8, payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|e| FrameError::Malformed { kind, why: format!("body does not decode ({e})") })?;
    if !rest.is_empty() {
        let why = format!("{} trailing bytes after the body", rest.len());
        return Err(FrameError::Malformed { kind, why });
    }
    Ok(value)
}

/// Sans-io: feed bytes, take whole messages.
///
/// Holds at most [`MAX_BUFFERED`] unread bytes and never allocates from a header's length. A
/// header error leaves its bytes unread, so `next` keeps returning it; after any error the
/// caller closes the connection.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already taken as messages; compacted on the next push.
    start: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Unread bytes held: at the end of the stream, zero is a clean close and anything else a
    /// truncated frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends bytes from the stream. Refuses (and keeps nothing of `bytes`) when the unread
    /// bytes would exceed [`MAX_BUFFERED`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        let buffered = self.buffered();
        if buffered + bytes.len() > MAX_BUFFERED {
            return Err(FrameError::Overfull { buffered, pushed: bytes.len() });
        }
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next whole message, `None` if more bytes are needed. A bad header is reported as
    /// soon as its 12 bytes are in, before any of its payload.
    #[allow(clippy::should_implement_trait)] // fallible: an Iterator would hide the errors
    pub fn next(&mut self) -> Result<Option<Message>, FrameError> {
        let unread = &self.buf[self.start..];
        let Some(header) = unread.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let (kind, len) = decode_header(header)?;
        let Some(payload) = unread.get(HEADER_LEN..HEADER_LEN + len) else { return Ok(None) };
        let message = decode_body(kind, payload);
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > IDLE_CAPACITY {
                self.buf = Vec::new();
            }
        }
        message.map(Some)
    }
}

/// Reads exactly one frame: the header, then exactly its payload, allocating at most
/// [`MAX_PAYLOAD`] bytes and only after the header passed. [`FrameError::Closed`] if the stream
/// ends before any header byte, [`FrameError::Truncated`] if it ends inside the frame.
///
/// Not cancel-safe: dropped mid-frame (say by a timeout), the stream is out of step and must
/// be closed.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]).await {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // An unclean end (TLS without close_notify) before any byte keeps the I/O error,
            // which says so; inside the frame it is a truncation.
            Err(e) if got > 0 && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::Truncated);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = decode_header(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    decode_body(kind, &payload)
}

/// Bytes asked of the stream per read by [`FrameReader`].
const READ_CHUNK: usize = 64 * 1024;

/// Reads messages through a [`Decoder`]. Unlike [`read_message`] it is cancel-safe: its only
/// await is one read, whose bytes (once read) are kept in the decoder, so it can race other
/// work in a `select!` (a revocation, a message to send) without losing its place.
#[derive(Debug)]
pub struct FrameReader {
    decoder: Decoder,
    chunk: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader { decoder: Decoder::new(), chunk: vec![0; READ_CHUNK] }
    }
}

impl FrameReader {
    /// A reader with nothing buffered.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// The next message from `r`: [`FrameError::Closed`] at a clean end between frames,
    /// [`FrameError::Truncated`] inside one.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Message, FrameError> {
        loop {
            if let Some(m) = self.decoder.next()? {
                return Ok(m);
            }
            let n = match r.read(&mut self.chunk).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.decoder.buffered() > 0 => {
                    return Err(FrameError::Truncated);
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(if self.decoder.buffered() == 0 {
                    FrameError::Closed
                } else {
                    FrameError::Truncated
                });
            }
            self.decoder.push(&self.chunk[..n])?;
        }
    }
}

/// Encodes one message, writes it and flushes. Refuses an invalid message before writing
/// anything.
pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, m: &Message) -> Result<(), FrameError> {
    let frame = encode(m)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
