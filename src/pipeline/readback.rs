//! Reading a session stream back: the stream reader follows a stream's parts across media from
//! the positions the catalog recorded and deals object records to decoder threads, which check
//! and decompress them in parallel; the consumer takes them back in order (as the writer does
//! when backing up).

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::pool::{Recycler, Reused};
use crate::device::{DeviceError, Media, PartReader, open_media};
use crate::format::records::{ObjectEnd, ObjectMeta, PackedEntry, SegmentHeader};
use crate::format::{Body, FormatError, HEADER_LEN, Header, Kind, PackEntries, decode_record, unpack};

/// Where a record was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Medium barcode.
    pub barcode: Arc<str>,
    /// Stream.
    pub stream: u16,
    /// Part.
    pub part: u32,
    /// Byte offset from the part's start.
    pub offset: u64,
    /// Byte offset on the medium.
    pub absolute: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "medium {} at byte {} (stream {}, part {})",
            self.barcode, self.absolute, self.stream, self.part
        )
    }
}

/// A part of a stream, as the catalog recorded it.
#[derive(Debug, Clone)]
pub struct PartLoc {
    /// Medium barcode.
    pub barcode: String,
    /// Target location of the medium.
    pub location: String,
    /// Where the part starts on it.
    pub position: u64,
    /// Its tape file number (0 elsewhere).
    pub file_number: u32,
}

/// A stretch of a stream to read: from `offset` in `part`, to the trailer or, for one object,
/// to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Part to start in.
    pub part: u32,
    /// Offset from the part's start.
    pub offset: u64,
    /// Read only this object (its first record is at the offset).
    pub object: Option<u64>,
    /// Stop at this offset of the part (a run of a multiplexed part), not at the trailer.
    pub end: Option<u64>,
}

/// A record read from the medium, still encoded.
#[derive(Debug)]
pub struct RawRecord {
    /// Header and payload.
    pub bytes: Reused,
    /// Where it was read.
    pub place: Place,
}

/// A decoded object record.
#[derive(Debug)]
pub enum Decoded {
    /// An object's metadata.
    Meta(u64, ObjectMeta),
    /// The segment of a large object that follows.
    Segment(u64, SegmentHeader),
    /// Object bytes at an offset.
    Data {
        /// Object id.
        id: u64,
        /// Offset within the object.
        offset: u64,
        /// The bytes.
        data: Reused,
    },
    /// End of an object.
    End(u64, ObjectEnd),
    /// Small objects: each entry, where its bytes are in `data`, and whether they match its
    /// digest.
    Pack {
        /// Entries.
        entries: Vec<(PackedEntry, Range<usize>, bool)>,
        /// Their bytes.
        data: Reused,
    },
    /// The record is damaged.
    Bad(FormatError),
}

/// A decoded record and where it came from.
#[derive(Debug)]
pub struct Item {
    /// Where it was read.
    pub place: Place,
    /// Its sequence number.
    pub seq: u64,
    /// What it holds.
    pub decoded: Decoded,
}

/// Why a stream could not be read on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A medium could not be opened or read.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The stream is damaged or not what the catalog says.
    #[error("{place}: {what}")]
    Damaged {
        /// Where.
        place: Place,
        /// What is wrong.
        what: String,
    },
    /// The consumer stopped.
    #[error("stopped")]
    Stopped,
}

/// Reads spans of one stream and deals its object records to `queues` in turn.
#[derive(Debug)]
pub struct StreamReader {
    session: u64,
    stream: u16,
    parts: Vec<PartLoc>,
    media: HashMap<String, Box<dyn Media>>,
    buffers: Recycler,
    /// Deal only the records of these lanes (a demultiplexing restore); `None`: every one.
    lanes: Option<BTreeSet<u64>>,
    /// Bytes read from the media, records of every kind.
    read: u64,
}

impl std::fmt::Debug for dyn Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Media")
    }
}

struct Open {
    reader: Box<dyn PartReader>,
    place: Place,
}

impl StreamReader {
    /// A reader of `stream` of `session`, whose parts are `parts` (indexed by part number).
    /// Record buffers come from `buffers`.
    pub fn new(session: u64, stream: u16, parts: Vec<PartLoc>, buffers: Recycler) -> StreamReader {
        StreamReader { session, stream, parts, media: HashMap::new(), buffers, lanes: None, read: 0 }
    }

    /// Deals only the records of `lanes` (see [`super::runs`]), when given.
    pub fn keeping(mut self, lanes: Option<BTreeSet<u64>>) -> StreamReader {
        self.lanes = lanes;
        self
    }

    /// Bytes read from the media so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn open(&mut self, part: u32, offset: u64) -> Result<Open, StreamError> {
        let loc = self.parts.get(part as usize).cloned().ok_or_else(|| StreamError::Damaged {
            place: Place { barcode: "?".into(), stream: self.stream, part, offset: 0, absolute: 0 },
            what: format!("the catalog knows no part {part} of this stream"),
        })?;
        if !self.media.contains_key(&loc.location) {
            self.media.insert(loc.location.clone(), open_media(&loc.location)?);
        }
        let media = self.media.get_mut(&loc.location).expect("inserted above");
        let reader = media.open_part(&loc.barcode, loc.position, loc.file_number, offset)?;
        let place = Place {
            barcode: loc.barcode.as_str().into(),
            stream: self.stream,
            part,
            offset,
            absolute: loc.position + offset,
        };
        Ok(Open { reader, place })
    }

    /// Reads `spans` in order, dealing object records to `queues[k % n]`; `k` continues from
    /// `next`. Returns the next `k`.
    pub fn run(
        &mut self,
        spans: &[Span],
        queues: &[Sender<RawRecord>],
        mut next: usize,
    ) -> Result<usize, StreamError> {
        for span in spans {
            let mut cur = self.open(span.part, span.offset)?;
            let mut first = true;
            loop {
                if span.end.is_some_and(|end| cur.place.offset >= end) {
                    break;
                }
                let (header, bytes) = read_record(&mut cur, &self.buffers)?;
                self.read += bytes.len() as u64;
                let place = cur.place.clone();
                cur.place.offset += bytes.len() as u64;
                cur.place.absolute += bytes.len() as u64;
                let kind = header.kind;
                if !kind.is_object_record() {
                    match self.session_record(&bytes, &place)? {
                        Flow::Next => continue,
                        Flow::Part(p) => {
                            cur = self.open(p, 0)?;
                            continue;
                        }
                        Flow::End => break,
                    }
                }
                let wanted = match span.object {
                    None => self.lanes.as_ref().is_none_or(|l| {
                        l.contains(&super::runs::lane_of(header.object_id, super::mux::LANE_STRIDE))
                    }),
                    Some(id) => header.object_id == id || (first && kind == Kind::Pack),
                };
                let done = span.object.is_some()
                    && wanted
                    && (kind == Kind::Pack
                        || (kind == Kind::ObjectEnd && Some(header.object_id) == span.object));
                first = false;
                if wanted {
                    let q = &queues[next % queues.len()];
                    next += 1;
                    q.send(RawRecord { bytes, place }).map_err(|_| StreamError::Stopped)?;
                }
                if done {
                    break;
                }
            }
        }
        Ok(next)
    }

    /// Checks a session-level record and says where the stream goes next.
    fn session_record(&self, bytes: &[u8], place: &Place) -> Result<Flow, StreamError> {
        let damaged = |what: String| StreamError::Damaged { place: place.clone(), what };
        let (rec, _) = decode_record(bytes, place.absolute).map_err(|e| damaged(e.to_string()))?;
        match rec.body {
            Body::SessionHeader(h) if h.session_id == self.session && h.part == place.part => Ok(Flow::Next),
            Body::SessionHeader(h) => Err(damaged(format!(
                "found session {} part {}, expected session {} part {}",
                h.session_id, h.part, self.session, place.part
            ))),
            Body::Index(_) | Body::Kept(_) => Ok(Flow::Next),
            Body::Continuation(c) if c.session_id == self.session => Ok(Flow::Part(c.next_part)),
            Body::Trailer(t) if t.session_id == self.session => Ok(Flow::End),
            _ => Err(damaged(format!("unexpected {:?} record in the session stream", rec.header.kind))),
        }
    }
}

enum Flow {
    Next,
    Part(u32),
    End,
}

/// Reads one whole record (header validated, payload unchecked: the decoders check CRCs).
fn read_record(cur: &mut Open, buffers: &Recycler) -> Result<(Header, Reused), StreamError> {
    let damaged = |what: String| StreamError::Damaged { place: cur.place.clone(), what };
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut *cur.reader, &mut head)?;
    if got < HEADER_LEN {
        return Err(damaged("the medium's data ends before the session's trailer".into()));
    }
    let (header, _) = Header::decode(&head, cur.place.absolute).map_err(|e| damaged(e.to_string()))?;
    let total = HEADER_LEN + header.stored_len as usize;
    let mut bytes = buffers.take(total);
    bytes[..HEADER_LEN].copy_from_slice(&head);
    if read_full(&mut *cur.reader, &mut bytes[HEADER_LEN..])? < total - HEADER_LEN {
        return Err(damaged("the medium's data ends inside a record".into()));
    }
    Ok((header, bytes))
}

fn read_full(r: &mut dyn PartReader, buf: &mut [u8]) -> Result<usize, DeviceError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A decoder thread: checks and decodes records in the order it gets them.
pub fn decode_loop(input: Receiver<RawRecord>, output: Sender<Item>, buffers: Recycler) {
    for raw in input {
        let at = raw.place.absolute;
        let (seq, decoded) = match decode(&raw.bytes, at, &buffers) {
            Ok(x) => x,
            Err(e) => (0, Decoded::Bad(e)),
        };
        if output.send(Item { place: raw.place, seq, decoded }).is_err() {
            return;
        }
    }
}

fn decode(bytes: &[u8], at: u64, buffers: &Recycler) -> Result<(u64, Decoded), FormatError> {
    let (rec, _) = decode_record(bytes, at)?;
    let h = rec.header;
    let d = match rec.body {
        Body::ObjectMeta(m) => Decoded::Meta(h.object_id, m),
        Body::Segment(s) => Decoded::Segment(h.object_id, s),
        Body::ObjectEnd(e) => Decoded::End(h.object_id, e),
        Body::Data(p) => {
            let mut data = buffers.take(h.raw_len as usize);
            let n = unpack(&h, p, &mut data, at)?.len();
            if h.flags.contains(crate::format::Flags::RAW) {
                data.copy_from_slice(p);
            }
            debug_assert_eq!(n, data.len());
            Decoded::Data { id: h.object_id, offset: h.offset, data }
        }
        Body::Pack(p) => {
            let mut data = buffers.take(h.raw_len as usize);
            unpack(&h, p, &mut data, at)?;
            if h.flags.contains(crate::format::Flags::RAW) {
                data.copy_from_slice(p);
            }
            let mut entries = Vec::new();
            let base = data.as_ptr() as usize;
            for e in PackEntries::new(&data, at) {
                let (entry, bytes) = e?;
                let start = bytes.as_ptr() as usize - base;
                let ok = *blake3::hash(bytes).as_bytes() == entry.digest;
                entries.push((entry, start..start + bytes.len(), ok));
            }
            Decoded::Pack { entries, data }
        }
        _ => {
            return Err(FormatError::Invalid { offset: at, what: "session record among object records" });
        }
    };
    Ok((h.seq, d))
}
