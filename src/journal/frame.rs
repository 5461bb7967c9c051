//! Byte layouts of the journal: record frames, segment headers and head slots. Pure functions;
//! the layouts are specified in the module docs of [`crate::journal`].

use super::MAX_PAYLOAD;

/// Bytes before a record's payload.
pub const FRAME_HEADER: usize = 20;
/// Bytes of a segment file's header.
pub const SEGMENT_HEADER: usize = 64;
/// Bytes of one head slot; the head file holds two.
pub const SLOT_LEN: usize = 512;

const SEGMENT_MAGIC: [u8; 4] = *b"CFJS";
const HEAD_MAGIC: [u8; 4] = *b"CFJH";
/// Journal layout version written into segment headers and head slots.
pub const JOURNAL_VERSION: u8 = 1;

/// A record frame as found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Record type.
    pub kind: u16,
    /// Version of the record type's layout.
    pub version: u8,
    /// Postcard payload.
    pub payload: &'a [u8],
}

/// Why bytes at an offset are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end inside the frame.
    Incomplete,
    /// The frame is damaged or not a frame.
    Bad(&'static str),
}

/// Appends a frame for `payload` (already written at `out[start + FRAME_HEADER..]`) by filling
/// in the header reserved at `out[start..start + FRAME_HEADER]`.
pub fn seal_frame(out: &mut [u8], seq: u64, kind: u16, version: u8) {
    assert!(out.len() >= FRAME_HEADER);
    let len = out.len() - FRAME_HEADER;
    assert!(len <= MAX_PAYLOAD, "journal payload of {len} bytes over the limit");
    out[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    out[12..14].copy_from_slice(&kind.to_le_bytes());
    out[14] = version;
    out[15] = 0;
    let crc = frame_crc(&out[..16], &out[FRAME_HEADER..]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frame at the start of `buf`; returns it and its total length.
pub fn decode_frame(buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let Some(h) = buf.first_chunk::<FRAME_HEADER>() else {
        return Err(FrameError::Incomplete);
    };
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Bad("record length over the limit"));
    }
    if h[15] != 0 {
        return Err(FrameError::Bad("reserved flags set"));
    }
    let total = FRAME_HEADER + len;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    let crc = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    let payload = &buf[FRAME_HEADER..total];
    if frame_crc(&h[..16], payload) != crc {
        return Err(FrameError::Bad("checksum mismatch"));
    }
    let frame = Frame {
        seq: u64::from_le_bytes(h[4..12].try_into().expect("8 bytes")),
        kind: u16::from_le_bytes(h[12..14].try_into().expect("2 bytes")),
        version: h[14],
        payload,
    };
    Ok((frame, total))
}

fn frame_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// Header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number, as in the file name.
    pub id: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// Final length of the segment before this one (0 for the first).
    pub prev_len: u64,
    /// The segment starts with a full snapshot of the state.
    pub snapshot: bool,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[0..4].copy_from_slice(&SEGMENT_MAGIC);
        b[4] = JOURNAL_VERSION;
        b[5] = self.snapshot as u8;
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.prev_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        let Some(b) = b.first_chunk::<SEGMENT_HEADER>() else {
            return Err("segment shorter than its header");
        };
        if b[0..4] != SEGMENT_MAGIC {
            return Err("not a journal segment (bad magic)");
        }
        if crc32fast::hash(&b[..60]).to_le_bytes() != b[60..64] {
            return Err("segment header checksum mismatch");
        }
        if b[4] != JOURNAL_VERSION {
            return Err("segment written by a journal version this coffer does not read");
        }
        if b[5] > 1 || b[6..8] != [0, 0] || b[32..60].iter().any(|&x| x != 0) {
            return Err("segment header has unknown bits set");
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(SegmentHeader { id: u(8), first_seq: u(16), prev_len: u(24), snapshot: b[5] == 1 })
    }
}

/// One head slot: the durable extent of the journal as of one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSlot {
    /// Incremented by every head write; the valid slot with the highest one wins.
    pub generation: u64,
    /// First segment to replay: it starts with a snapshot.
    pub base: u64,
    /// Segment being appended to.
    pub segment: u64,
    /// Bytes of `segment` that are committed and durable.
    pub durable_len: u64,
    /// Sequence number of the next record.
    pub next_seq: u64,
}

impl HeadSlot {
    /// Byte offset of the slot this generation is written to: slots alternate, so a torn
    /// write of one leaves the other intact.
    pub fn offset(generation: u64) -> u64 {
        (generation % 2) * SLOT_LEN as u64
    }

    /// Encodes the slot.
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..4].copy_from_slice(&HEAD_MAGIC);
        b[4] = JOURNAL_VERSION;
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.base.to_le_bytes());
        b[24..32].copy_from_slice(&self.segment.to_le_bytes());
        b[32..40].copy_from_slice(&self.durable_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.next_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..SLOT_LEN - 4]);
        b[SLOT_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a slot; `None` for a slot never written (all zero).
    pub fn decode(b: &[u8; SLOT_LEN]) -> Result<Option<HeadSlot>, &'static str> {
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if crc32fast::hash(&b[..SLOT_LEN - 4]).to_le_bytes() != b[SLOT_LEN - 4..] {
            return Err("head slot checksum mismatch");
        }
        if b[0..4] != HEAD_MAGIC {
            return Err("not a journal head (bad magic)");
        }
        if b[4] != JOURNAL_VERSION {
            return Err("head written by a journal version this coffer does not read");
        }
        if b[5..8] != [0; 3] || b[48..SLOT_LEN - 4].iter().any(|&x| x != 0) {
            return Err("head slot has unknown bits set");
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let slot =
            HeadSlot { generation: u(8), base: u(16), segment: u(24), durable_len: u(32), next_seq: u(40) };
        if slot.segment < slot.base || slot.durable_len < SEGMENT_HEADER as u64 {
            return Err("head slot names an impossible extent");
        }
        Ok(Some(slot))
    }
}

/// File name of segment `id`.
pub fn segment_name(id: u64) -> String {
    format!("seg-{id:016x}")
}

/// Segment id of a file name, if it names a segment.
pub fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}
