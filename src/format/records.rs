//! Payloads of the metadata records, postcard-encoded. Changing any of these structs changes the
//! format: bump [`super::FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

use super::{Kind, MAX_INDEX_ENTRIES, MAX_PATH_LEN};

/// A metadata payload: a struct with its record kind and the rules a valid one obeys.
pub trait Payload: Serialize + for<'de> Deserialize<'de> {
    /// Record kind that carries this payload.
    const KIND: Kind;
    /// Checks the rules of a valid payload (before writing and after reading).
    fn validate(&self) -> Result<(), &'static str>;
}

/// Largest barcode (SMC volume tags are 32 characters).
pub const MAX_BARCODE_LEN: usize = 32;
/// Largest pool name, host name or source description.
pub const MAX_NAME_LEN: usize = 256;
/// Smallest and largest block size a medium may use.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size (tape drives commonly cap fixed blocks near 8 MiB).
pub const MAX_BLOCK_SIZE: u32 = 8 << 20;

/// Identifies a medium on its own: the first record on every disk volume, NVRAM region and tape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLabel {
    /// Format version the medium was written with.
    pub format_version: u8,
    /// Medium UUID, unique for every labelling.
    pub medium: [u8; 16],
    /// Barcode of a cartridge, or the name of a disk volume.
    pub barcode: String,
    /// Media pool the medium belongs to.
    pub pool: String,
    /// Block size the medium is written with (disks: the I/O alignment).
    pub block_size: u32,
    /// When the medium was labelled, seconds since the Unix epoch.
    pub created: u64,
    /// Host name of the appliance that labelled it.
    pub host: String,
}

impl Payload for VolumeLabel {
    const KIND: Kind = Kind::Label;
    fn validate(&self) -> Result<(), &'static str> {
        if !(super::OLDEST_READ_VERSION..=super::FORMAT_VERSION).contains(&self.format_version) {
            return Err("label names a format version this coffer does not read");
        }
        if self.barcode.is_empty() || self.barcode.len() > MAX_BARCODE_LEN {
            return Err("barcode must be 1 to 32 characters");
        }
        if !self.barcode.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("barcode must be printable ASCII without spaces");
        }
        check_name(&self.pool)?;
        check_name(&self.host)?;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) || !self.block_size.is_power_of_two()
        {
            return Err("block size must be a power of two from 512 B to 8 MiB");
        }
        Ok(())
    }
}

/// Names a session part on a medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// UUID of the medium holding the part.
    pub medium: [u8; 16],
    /// Part number.
    pub part: u32,
}

/// Start of one part of a session on one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHeader {
    /// Session id, unique on the appliance.
    pub session_id: u64,
    /// Job that made the session.
    pub job_id: u64,
    /// Host name of the appliance.
    pub host: String,
    /// Start time, seconds since the Unix epoch.
    pub started: u64,
    /// What was backed up, for people.
    pub source: String,
    /// Part number on this stream, from 0; a part continues the one before it.
    pub part: u32,
    /// Stream number (one per device in a multistream session).
    pub stream: u16,
    /// Number of streams in the session.
    pub streams: u16,
    /// The part this one continues, on another medium.
    pub continues: Option<PartRef>,
    /// Whole source, or what changed since an earlier session (version 2).
    pub kind: SessionKind,
    /// Which roots were backed up (BLAKE3 of the canonical roots; zero when unknown), so that a
    /// catalog rebuilt from the media still finds the base of the next incremental (version 2).
    pub source_key: [u8; 32],
}

/// Whether a session holds its whole source or only what changed since an earlier one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKind {
    /// Every object of the source.
    #[default]
    Full,
    /// The objects of the source that are new or changed since session `base` (of the same
    /// source key), plus every directory, link and special file: the tree's shape. Restoring
    /// it takes the chain of bases down to a full session.
    Incremental {
        /// The session it builds on: complete, same source key, lower id.
        base: u64,
    },
}

impl Payload for SessionHeader {
    const KIND: Kind = Kind::SessionHeader;
    fn validate(&self) -> Result<(), &'static str> {
        check_name(&self.host)?;
        if self.source.len() > super::MAX_PATH_LEN {
            return Err("source description longer than 4096 bytes");
        }
        if self.streams == 0 || self.stream >= self.streams {
            return Err("stream number outside the session's streams");
        }
        if (self.part == 0) != self.continues.is_none() {
            return Err("part 0 continues nothing; every later part names the part it continues");
        }
        if let Some(c) = self.continues
            && c.part + 1 != self.part
        {
            return Err("a part must continue the part just before it");
        }
        if let SessionKind::Incremental { base } = self.kind
            && base >= self.session_id
        {
            return Err("an incremental session builds on an earlier session");
        }
        Ok(())
    }
}

/// What kind of thing an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// Regular file: data follows.
    File,
    /// Directory: metadata only.
    Dir,
    /// Symbolic link: the target is in the metadata.
    Symlink,
    /// Another name of a file stored earlier in the session.
    Hardlink,
    /// Named pipe.
    Fifo,
    /// Character device node.
    CharDevice,
    /// Block device node.
    BlockDevice,
    /// Unix socket (recorded, not restorable as a live socket).
    Socket,
    /// A raw volume read as one object: data follows.
    Volume,
}

impl ObjectKind {
    /// Whether objects of this kind carry data.
    pub fn has_data(self) -> bool {
        matches!(self, ObjectKind::File | ObjectKind::Volume)
    }
}

/// A file's or volume's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Path relative to the session's source root (volumes: the device path), as raw bytes.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// What it is.
    pub kind: ObjectKind,
    /// Permission and type bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Size in bytes of the data (0 for kinds without data).
    pub size: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Target of a symbolic link.
    pub symlink: Option<serde_bytes::ByteBuf>,
    /// Path of the file a hard link names, stored earlier in the session.
    pub hardlink: Option<serde_bytes::ByteBuf>,
}

impl Payload for ObjectMeta {
    const KIND: Kind = Kind::ObjectMeta;
    fn validate(&self) -> Result<(), &'static str> {
        check_path(&self.path)?;
        if let Some(t) = &self.symlink
            && (t.is_empty() || t.len() > MAX_PATH_LEN || t.contains(&0))
        {
            return Err("symlink target empty, over 4096 bytes or holding a NUL");
        }
        if let Some(t) = &self.hardlink {
            check_path(t)?;
        }
        if (self.kind == ObjectKind::Symlink) != self.symlink.is_some() {
            return Err("a symlink target belongs to symlinks only, and every symlink has one");
        }
        if (self.kind == ObjectKind::Hardlink) != self.hardlink.is_some() {
            return Err("a hardlink target belongs to hard links only, and every one has one");
        }
        if !self.kind.has_data() && self.size != 0 {
            return Err("object without data claims a size");
        }
        if self.mtime_nsec >= 1_000_000_000 {
            return Err("mtime nanoseconds out of range");
        }
        Ok(())
    }
}

/// The piece of a large object that the following data records carry (seed 000's segment
/// header): on a multistream session, each device holds some segments of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// Object the segment belongs to.
    pub object_id: u64,
    /// Offset of the segment within the object.
    pub offset: u64,
    /// Length of the segment.
    pub size: u64,
    /// Segment number, from 0.
    pub index: u32,
    /// Number of segments of the object.
    pub count: u32,
}

impl Payload for SegmentHeader {
    const KIND: Kind = Kind::Segment;
    fn validate(&self) -> Result<(), &'static str> {
        if self.count == 0 || self.index >= self.count {
            return Err("segment number outside the object's segments");
        }
        if self.size == 0 || self.offset.checked_add(self.size).is_none() {
            return Err("segment empty or past the largest offset");
        }
        Ok(())
    }
}

/// End of an object, or of a segment when one was opened: what a reader must have seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEnd {
    /// Bytes of the object (or segment).
    pub length: u64,
    /// BLAKE3 of those bytes.
    pub digest: [u8; 32],
}

impl Payload for ObjectEnd {
    const KIND: Kind = Kind::ObjectEnd;
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// One whole small object inside a `Pack` record; its bytes follow the entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedEntry {
    /// Object id.
    pub object_id: u64,
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Bytes that follow the entry.
    pub length: u64,
    /// BLAKE3 of those bytes.
    pub digest: [u8; 32],
}

impl PackedEntry {
    /// Checks the entry's rules.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.meta.validate()?;
        if self.meta.kind.has_data() && self.meta.size != self.length {
            return Err("packed object's length differs from its size");
        }
        if !self.meta.kind.has_data() && self.length != 0 {
            return Err("packed object without data carries bytes");
        }
        Ok(())
    }
}

/// Where an object of the session lives: enough to restore one file without reading the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Object id.
    pub object_id: u64,
    /// Path, as in its metadata.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// What it is.
    pub kind: ObjectKind,
    /// Size of the whole object.
    pub size: u64,
    /// Modification time, seconds since the epoch (what `ls` shows after a scan).
    pub mtime: i64,
    /// Permission and type bits (version 2: an incremental backup compares them).
    pub mode: u32,
    /// Owner (version 2).
    pub uid: u32,
    /// Group (version 2).
    pub gid: u32,
    /// Offset of the piece this entry locates (non-zero for later segments).
    pub segment_offset: u64,
    /// Bytes of the object in this piece.
    pub length: u64,
    /// Stream the piece was written to.
    pub stream: u16,
    /// Part it starts in.
    pub part: u32,
    /// Byte position of the piece's first record from the start of that part.
    pub position: u64,
}

/// Part of the session's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Entries, in object order.
    #[serde(deserialize_with = "bounded_vec")]
    pub entries: Vec<IndexEntry>,
}

impl Payload for Index {
    const KIND: Kind = Kind::Index;
    fn validate(&self) -> Result<(), &'static str> {
        if self.entries.is_empty() || self.entries.len() > MAX_INDEX_ENTRIES {
            return Err("index record with no entries or too many");
        }
        self.entries.iter().try_for_each(|e| check_path(&e.path))
    }
}

/// Part of the list of files an incremental session left out as unchanged: with its own
/// objects, they are the tree as it was when the session ran (a file in neither was deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Paths, as in the objects' metadata.
    #[serde(deserialize_with = "bounded_vec")]
    pub paths: Vec<serde_bytes::ByteBuf>,
}

impl Payload for Kept {
    const KIND: Kind = Kind::Kept;
    fn validate(&self) -> Result<(), &'static str> {
        if self.paths.is_empty() || self.paths.len() > MAX_INDEX_ENTRIES {
            return Err("kept-files record with no paths or too many");
        }
        self.paths.iter().try_for_each(|p| check_path(p))
    }
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Every object was written.
    Complete,
    /// Cancelled: the objects before the trailer are whole and restorable.
    Cancelled,
    /// Failed: the objects before the trailer are whole and restorable.
    Failed,
    /// Never on a medium: the catalog's word for a session whose writing process died (a
    /// crash, `kill -9`, power loss). It has no trailer; the objects the journal committed
    /// are whole and restorable, nothing after them counts.
    Interrupted,
}

/// End of a session's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// Session id, as in the header.
    pub session_id: u64,
    /// Part the trailer ends.
    pub part: u32,
    /// Objects written on this stream.
    pub objects: u64,
    /// Records written on this stream before the trailer, across all parts.
    pub records: u64,
    /// Object bytes before compression.
    pub raw_bytes: u64,
    /// Payload bytes as stored.
    pub stored_bytes: u64,
    /// End time, seconds since the Unix epoch.
    pub ended: u64,
    /// How the session ended.
    pub status: SessionStatus,
    /// Index records just before the trailer.
    pub index_records: u32,
    /// Kept-files records just before the index (version 2): a complete incremental session
    /// lists the files it left out as unchanged on its stream 0.
    pub kept_records: u32,
}

impl Payload for Trailer {
    const KIND: Kind = Kind::Trailer;
    fn validate(&self) -> Result<(), &'static str> {
        // A session whose source failed before its first record (an agent that refused or went
        // away) ends with its header's bytes and no records; a complete one has records.
        if self.stored_bytes > 0 && self.records == 0 && self.status == SessionStatus::Complete {
            return Err("trailer counts bytes but no records");
        }
        if self.status == SessionStatus::Interrupted {
            return Err("trailer of an interrupted session (an interrupted session has none)");
        }
        Ok(())
    }
}

/// End of a part whose session goes on on another medium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    /// Session id.
    pub session_id: u64,
    /// The part that ends here.
    pub part: u32,
    /// The part that follows (always `part + 1`).
    pub next_part: u32,
    /// Barcode of the medium the next part is written to, when chosen before this one closed.
    pub next_medium: Option<String>,
    /// Records written on this stream so far, this one excluded.
    pub records: u64,
}

impl Payload for Continuation {
    const KIND: Kind = Kind::Continuation;
    fn validate(&self) -> Result<(), &'static str> {
        if self.part.checked_add(1) != Some(self.next_part) {
            return Err("continuation must name the part just after it");
        }
        if let Some(b) = &self.next_medium
            && (b.is_empty() || b.len() > MAX_BARCODE_LEN)
        {
            return Err("next medium's barcode must be 1 to 32 characters");
        }
        Ok(())
    }
}

fn check_name(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_NAME_LEN || s.contains('\0') {
        return Err("name over 256 bytes or holding a NUL");
    }
    Ok(())
}

fn check_path(p: &[u8]) -> Result<(), &'static str> {
    if p.is_empty() || p.len() > MAX_PATH_LEN || p.contains(&0) {
        return Err("path empty, over 4096 bytes or holding a NUL");
    }
    Ok(())
}

/// Deserializes a sequence, refusing more than [`MAX_INDEX_ENTRIES`] elements before they are
/// allocated.
pub(super) fn bounded_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX_INDEX_ENTRIES} entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let n = seq.size_hint().unwrap_or(0);
            if n > MAX_INDEX_ENTRIES {
                return Err(serde::de::Error::invalid_length(n, &self));
            }
            let mut v = Vec::with_capacity(n);
            while let Some(x) = seq.next_element()? {
                if v.len() == MAX_INDEX_ENTRIES {
                    return Err(serde::de::Error::invalid_length(v.len() + 1, &self));
                }
                v.push(x);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Bounded(std::marker::PhantomData))
}
