//! The fixed 48-byte record header (layout in the module docs of [`crate::format`]).

use super::{FORMAT_VERSION, FormatError, MAX_INDEX_LEN, MAX_META_LEN, MAX_UNIT_LEN, OLDEST_READ_VERSION};

/// Size of every record header.
pub const HEADER_LEN: usize = 48;
/// First four bytes of every record.
pub const MAGIC: [u8; 4] = *b"CFFR";

/// Byte range of the CRC inside the header; the CRC covers everything before it.
const CRC_AT: usize = 44;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Volume label: the first record of every medium.
    Label = 1,
    /// Start of a session part.
    SessionHeader = 2,
    /// A file's or volume's metadata.
    ObjectMeta = 3,
    /// The piece of a large object the following data belongs to.
    Segment = 4,
    /// A unit of object data.
    Data = 5,
    /// End of an object (or segment): length and BLAKE3 digest.
    ObjectEnd = 6,
    /// Many small whole objects in one unit.
    Pack = 7,
    /// Part of the session's index of objects.
    Index = 8,
    /// End of the session.
    Trailer = 9,
    /// End of a part that continues on another medium.
    Continuation = 10,
    /// Part of the list of files an incremental session kept (version 2).
    Kept = 11,
}

impl Kind {
    /// Decodes a kind byte.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Label,
            2 => Kind::SessionHeader,
            3 => Kind::ObjectMeta,
            4 => Kind::Segment,
            5 => Kind::Data,
            6 => Kind::ObjectEnd,
            7 => Kind::Pack,
            8 => Kind::Index,
            9 => Kind::Trailer,
            10 => Kind::Continuation,
            11 => Kind::Kept,
            _ => return None,
        })
    }

    /// Whether the payload is object bytes rather than a postcard struct.
    pub fn carries_data(self) -> bool {
        matches!(self, Kind::Data | Kind::Pack)
    }

    /// Whether the payload is stored LZ4-compressed or raw (flagged), rather than plain.
    pub fn compressible(self) -> bool {
        matches!(self, Kind::Data | Kind::Pack | Kind::Index | Kind::Kept)
    }

    /// Whether the record belongs to an object (and so takes the next sequence number), as
    /// opposed to the medium or the session.
    pub fn is_object_record(self) -> bool {
        matches!(self, Kind::ObjectMeta | Kind::Segment | Kind::Data | Kind::ObjectEnd | Kind::Pack)
    }

    /// Largest raw payload allowed for this kind.
    pub fn max_raw_len(self) -> usize {
        match self {
            Kind::Data | Kind::Pack => MAX_UNIT_LEN,
            Kind::Index | Kind::Kept => MAX_INDEX_LEN,
            _ => MAX_META_LEN,
        }
    }
}

/// Record flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// Payload is one LZ4 block.
    pub const LZ4: Flags = Flags(1);
    /// Payload is stored uncompressed.
    pub const RAW: Flags = Flags(2);
    /// Last data record of its object or segment.
    pub const LAST: Flags = Flags(4);
    const KNOWN: u8 = 0b111;

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union of two flag sets.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// A decoded, validated record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version the record was written with: [`FORMAT_VERSION`] for everything this
    /// build writes; older ones are read (their payloads decode through [`super::v1`]).
    pub version: u8,
    /// What the record holds.
    pub kind: Kind,
    /// Compression and end-of-object flags.
    pub flags: Flags,
    /// Object the record belongs to; 0 for session-level records.
    pub object_id: u64,
    /// Record number within the stream.
    pub seq: u64,
    /// Offset of the payload's first raw byte within its object.
    pub offset: u64,
    /// Payload length after decompression.
    pub raw_len: u32,
    /// Payload length as stored.
    pub stored_len: u32,
}

impl Header {
    /// Checks the rules every header obeys; both the encoder and the decoder call it.
    pub fn validate(&self, at: u64) -> Result<(), FormatError> {
        let bad = |what: &'static str| Err(FormatError::Invalid { offset: at, what });
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(FormatError::UnsupportedVersion { offset: at, version: self.version });
        }
        if self.kind == Kind::Kept && self.version < 2 {
            return Err(FormatError::UnknownKind { offset: at, kind: Kind::Kept as u8 });
        }
        if self.flags.0 & !Flags::KNOWN != 0 {
            return bad("unknown flag bits set");
        }
        let max = self.kind.max_raw_len();
        if self.raw_len as usize > max || self.stored_len as usize > max {
            return Err(FormatError::TooLong {
                offset: at,
                kind: self.kind,
                len: self.raw_len.max(self.stored_len) as u64,
                max: max as u64,
            });
        }
        let lz4 = self.flags.contains(Flags::LZ4);
        let raw = self.flags.contains(Flags::RAW);
        if self.kind.compressible() {
            match (lz4, raw) {
                (true, false) if self.stored_len < self.raw_len => {}
                (false, true) if self.stored_len == self.raw_len => {}
                (true, false) => return bad("LZ4 payload not smaller than its raw length"),
                (false, true) => return bad("raw payload length differs from its stored length"),
                _ => return bad("data record must be flagged either LZ4 or RAW"),
            }
            if self.kind != Kind::Data && self.raw_len == 0 {
                return bad("empty pack or index");
            }
        } else {
            if self.flags.0 != 0 {
                return bad("flags set on a metadata record");
            }
            if self.raw_len != self.stored_len {
                return bad("metadata record with differing raw and stored lengths");
            }
        }
        if self.offset.checked_add(self.raw_len as u64).is_none() {
            return bad("object offset overflows");
        }
        Ok(())
    }

    /// Writes the header into `out[..HEADER_LEN]`, the CRC covering it and `payload`.
    pub fn encode(&self, payload: &[u8], out: &mut [u8; HEADER_LEN]) {
        assert_eq!(payload.len(), self.stored_len as usize);
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = self.version;
        out[5] = self.kind as u8;
        out[6] = self.flags.0;
        out[7] = HEADER_LEN as u8;
        out[8..16].copy_from_slice(&self.object_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.offset.to_le_bytes());
        out[32..36].copy_from_slice(&self.raw_len.to_le_bytes());
        out[36..40].copy_from_slice(&self.stored_len.to_le_bytes());
        out[40..44].copy_from_slice(&[0; 4]);
        let crc = crc_of(out, payload);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and validates a header found at stream offset `at`. The payload CRC is checked
    /// separately by [`Header::check_crc`] once the payload has been read.
    pub fn decode(b: &[u8; HEADER_LEN], at: u64) -> Result<(Header, u32), FormatError> {
        if b[0..4] != MAGIC {
            return Err(FormatError::BadMagic { offset: at });
        }
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&b[4]) {
            return Err(FormatError::UnsupportedVersion { offset: at, version: b[4] });
        }
        if b[7] as usize != HEADER_LEN {
            return Err(FormatError::Invalid { offset: at, what: "header length is not 48" });
        }
        let kind = Kind::from_u8(b[5]).ok_or(FormatError::UnknownKind { offset: at, kind: b[5] })?;
        if b[40..44] != [0; 4] {
            return Err(FormatError::Invalid { offset: at, what: "reserved header bytes set" });
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let h = Header {
            version: b[4],
            kind,
            flags: Flags(b[6]),
            object_id: u64_at(8),
            seq: u64_at(16),
            offset: u64_at(24),
            raw_len: u32_at(32),
            stored_len: u32_at(36),
        };
        h.validate(at)?;
        Ok((h, u32_at(CRC_AT)))
    }

    /// Checks the CRC read from the header against the header bytes and the payload.
    pub fn check_crc(
        &self,
        bytes: &[u8; HEADER_LEN],
        crc: u32,
        payload: &[u8],
        at: u64,
    ) -> Result<(), FormatError> {
        if crc_of(bytes, payload) == crc {
            Ok(())
        } else {
            Err(FormatError::Crc { offset: at, kind: self.kind, object_id: self.object_id, seq: self.seq })
        }
    }
}

/// Gives the whole, already checked record `record` (header and payload) the sequence number
/// `seq`, its CRC made again: a box multiplexing agents' streams numbers their records in the
/// order it writes them. Returns `false`, leaving the bytes alone, when `record` is shorter than
/// a header.
pub fn renumber(record: &mut [u8], seq: u64) -> bool {
    if record.len() < HEADER_LEN {
        return false;
    }
    let (head, payload) = record.split_at_mut(HEADER_LEN);
    let head: &mut [u8; HEADER_LEN] = head.try_into().expect("HEADER_LEN bytes");
    head[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc_of(head, payload);
    head[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    true
}

fn crc_of(header: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..CRC_AT]);
    h.update(payload);
    h.finalize()
}
