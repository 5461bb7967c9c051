//! Encoding records into caller-provided buffers and decoding them from slices.

use super::records::{
    Continuation, Index, Kept, ObjectEnd, ObjectMeta, PackedEntry, Payload, SegmentHeader, SessionHeader,
    Trailer, VolumeLabel,
};
use super::{
    FORMAT_VERSION, Flags, FormatError, HEADER_LEN, Header, Kind, MAX_INDEX_LEN, MAX_UNIT_LEN,
    compress_scratch_len, v1,
};

/// A decoded record: its header and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// The validated header.
    pub header: Header,
    /// The decoded payload.
    pub body: Body<'a>,
}

/// The payload of a record, decoded by kind. Data payloads borrow the input as stored; use
/// [`unpack`] to get their raw bytes.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Body<'a> {
    Label(VolumeLabel),
    SessionHeader(SessionHeader),
    ObjectMeta(ObjectMeta),
    Segment(SegmentHeader),
    Data(&'a [u8]),
    ObjectEnd(ObjectEnd),
    Pack(&'a [u8]),
    Index(Index),
    Trailer(Trailer),
    Continuation(Continuation),
    Kept(Kept),
}

/// How a data payload ended up stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncoding {
    /// LZ4 block.
    Lz4,
    /// Uncompressed: LZ4 did not shrink it.
    Raw,
}

/// Encodes a metadata record into `out`, returning the bytes used. The payload is validated
/// first: an invalid one is refused and nothing is written.
pub fn encode_meta<T: Payload>(
    object_id: u64,
    seq: u64,
    payload: &T,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    payload.validate().map_err(|what| FormatError::Refused { what })?;
    if out.len() < HEADER_LEN {
        return Err(FormatError::BufferTooSmall { need: HEADER_LEN, have: out.len() });
    }
    let max = T::KIND.max_raw_len();
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    let room = rest.len().min(max);
    let n = match postcard::to_slice(payload, &mut rest[..room]) {
        Ok(used) => used.len(),
        Err(postcard::Error::SerializeBufferFull) if room == max => {
            return Err(FormatError::Refused { what: "metadata payload over its record limit" });
        }
        Err(postcard::Error::SerializeBufferFull) => {
            return Err(FormatError::BufferTooSmall { need: HEADER_LEN + max, have: out.len() });
        }
        Err(_) => {
            return Err(FormatError::Refused { what: "payload does not serialize" });
        }
    };
    let header = Header {
        version: FORMAT_VERSION,
        kind: T::KIND,
        flags: Flags::default(),
        object_id,
        seq,
        offset: 0,
        raw_len: n as u32,
        stored_len: n as u32,
    };
    header.validate(0)?;
    header.encode(&rest[..n], head.try_into().expect("header slice"));
    Ok(HEADER_LEN + n)
}

/// Encodes one unit of object data at `offset` within its object, LZ4-compressed or raw when
/// that does not shrink it. `out` must hold [`compress_scratch_len`]`(raw.len())` bytes.
pub fn encode_data(
    object_id: u64,
    seq: u64,
    offset: u64,
    raw: &[u8],
    last: bool,
    out: &mut [u8],
) -> Result<(usize, DataEncoding), FormatError> {
    encode_data_as(object_id, seq, offset, raw, last, true, out)
}

/// [`encode_data`], LZ4-compressed only when `compress` (a job may turn compression off for
/// data it knows does not compress, and save the CPU).
pub fn encode_data_as(
    object_id: u64,
    seq: u64,
    offset: u64,
    raw: &[u8],
    last: bool,
    compress: bool,
    out: &mut [u8],
) -> Result<(usize, DataEncoding), FormatError> {
    let flags = if last { Flags::LAST } else { Flags::default() };
    encode_bytes(Kind::Data, flags, object_id, seq, offset, raw, compress, out)
}

/// Encodes a pack (built by [`PackBuilder`]) whose first object is `first_object_id`.
pub fn encode_pack(
    first_object_id: u64,
    seq: u64,
    raw: &[u8],
    out: &mut [u8],
) -> Result<(usize, DataEncoding), FormatError> {
    encode_pack_as(first_object_id, seq, raw, true, out)
}

/// [`encode_pack`], LZ4-compressed only when `compress`.
pub fn encode_pack_as(
    first_object_id: u64,
    seq: u64,
    raw: &[u8],
    compress: bool,
    out: &mut [u8],
) -> Result<(usize, DataEncoding), FormatError> {
    encode_bytes(Kind::Pack, Flags::default(), first_object_id, seq, 0, raw, compress, out)
}

/// Encodes an index record, LZ4-compressed when that shrinks it. `out` must hold
/// [`compress_scratch_len`]`(`[`MAX_INDEX_LEN`]`)` bytes.
pub fn encode_index(seq: u64, index: &Index, out: &mut [u8]) -> Result<usize, FormatError> {
    encode_listing(seq, index, out)
}

/// Encodes a kept-files record, like an index record.
pub fn encode_kept(seq: u64, kept: &Kept, out: &mut [u8]) -> Result<usize, FormatError> {
    encode_listing(seq, kept, out)
}

/// Encodes a session-level list (index, kept files): postcard, then LZ4 when that shrinks it.
fn encode_listing<T: Payload>(seq: u64, list: &T, out: &mut [u8]) -> Result<usize, FormatError> {
    list.validate().map_err(|what| FormatError::Refused { what })?;
    let plain =
        postcard::to_stdvec(list).map_err(|_| FormatError::Refused { what: "list does not serialize" })?;
    if plain.len() > MAX_INDEX_LEN {
        return Err(FormatError::Refused { what: "index or kept-files record over its limit: split it" });
    }
    encode_bytes(T::KIND, Flags::default(), 0, seq, 0, &plain, true, out).map(|(n, _)| n)
}

// The record's fields are its header's fields: a struct for them would only be unpacked here.
#[allow(clippy::too_many_arguments)]
fn encode_bytes(
    kind: Kind,
    flags: Flags,
    object_id: u64,
    seq: u64,
    offset: u64,
    raw: &[u8],
    compress: bool,
    out: &mut [u8],
) -> Result<(usize, DataEncoding), FormatError> {
    if raw.is_empty() || raw.len() > kind.max_raw_len() {
        return Err(FormatError::Refused { what: "data unit empty or over the unit limit" });
    }
    let need = compress_scratch_len(raw.len());
    if out.len() < need {
        return Err(FormatError::BufferTooSmall { need, have: out.len() });
    }
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    let compressed = if compress {
        lz4_flex::block::compress_into(raw, &mut rest[..need - HEADER_LEN])
            .expect("output sized for LZ4's worst case")
    } else {
        usize::MAX
    };
    let (stored, enc) = if compressed < raw.len() {
        (compressed, DataEncoding::Lz4)
    } else {
        rest[..raw.len()].copy_from_slice(raw);
        (raw.len(), DataEncoding::Raw)
    };
    let enc_flag = if enc == DataEncoding::Lz4 { Flags::LZ4 } else { Flags::RAW };
    let header = Header {
        version: FORMAT_VERSION,
        kind,
        flags: flags.with(enc_flag),
        object_id,
        seq,
        offset,
        raw_len: raw.len() as u32,
        stored_len: stored as u32,
    };
    header.validate(0)?;
    header.encode(&rest[..stored], head.try_into().expect("header slice"));
    Ok((HEADER_LEN + stored, enc))
}

/// Decodes the record at the start of `buf`, found at stream offset `at`; returns it and the
/// bytes it used. Checks the header, the CRC, and the payload's own rules.
pub fn decode_record(buf: &[u8], at: u64) -> Result<(Record<'_>, usize), FormatError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(FormatError::Truncated { offset: at, needed: (HEADER_LEN - buf.len()) as u64 });
    };
    let (header, crc) = Header::decode(head, at)?;
    let total = HEADER_LEN + header.stored_len as usize;
    if buf.len() < total {
        return Err(FormatError::Truncated { offset: at, needed: (total - buf.len()) as u64 });
    }
    let payload = &buf[HEADER_LEN..total];
    header.check_crc(head, crc, payload, at)?;
    let body = match header.kind {
        Kind::Label => Body::Label(decode_payload(&header, payload, at)?),
        Kind::SessionHeader if header.version == 1 => {
            Body::SessionHeader(decode_as::<v1::SessionHeader, _>(&header, payload, at)?)
        }
        Kind::SessionHeader => Body::SessionHeader(decode_payload(&header, payload, at)?),
        Kind::ObjectMeta => Body::ObjectMeta(decode_payload(&header, payload, at)?),
        Kind::Segment => {
            let s: SegmentHeader = decode_payload(&header, payload, at)?;
            if s.object_id != header.object_id {
                return Err(FormatError::Invalid { offset: at, what: "segment of another object" });
            }
            Body::Segment(s)
        }
        Kind::Data => Body::Data(payload),
        Kind::ObjectEnd => Body::ObjectEnd(decode_payload(&header, payload, at)?),
        Kind::Pack => Body::Pack(payload),
        Kind::Index | Kind::Kept => {
            let mut raw = vec![0u8; header.raw_len as usize];
            let plain = unpack(&header, payload, &mut raw, at)?;
            match header.kind {
                Kind::Kept => Body::Kept(decode_payload(&header, plain, at)?),
                _ if header.version == 1 => Body::Index(decode_as::<v1::Index, _>(&header, plain, at)?),
                _ => Body::Index(decode_payload(&header, plain, at)?),
            }
        }
        Kind::Trailer if header.version == 1 => {
            Body::Trailer(decode_as::<v1::Trailer, _>(&header, payload, at)?)
        }
        Kind::Trailer => Body::Trailer(decode_payload(&header, payload, at)?),
        Kind::Continuation => Body::Continuation(decode_payload(&header, payload, at)?),
    };
    Ok((Record { header, body }, total))
}

fn decode_payload<T: Payload>(h: &Header, payload: &[u8], at: u64) -> Result<T, FormatError> {
    decode_as::<T, T>(h, payload, at)
}

/// Decodes a payload written as `W` (an older version's struct, or `T` itself), converts it to
/// `T` and checks `T`'s rules.
fn decode_as<W, T>(h: &Header, payload: &[u8], at: u64) -> Result<T, FormatError>
where
    W: serde::de::DeserializeOwned + Into<T>,
    T: Payload,
{
    let bad = |reason: String| FormatError::Payload { offset: at, kind: h.kind, reason };
    let (v, rest) = postcard::take_from_bytes::<W>(payload).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the payload", rest.len())));
    }
    let v: T = v.into();
    v.validate().map_err(|what| FormatError::Invalid { offset: at, what })?;
    Ok(v)
}

/// The raw bytes of a `Data` or `Pack` payload: the payload itself when stored raw, else
/// decompressed into `out`, which must hold `header.raw_len` bytes.
pub fn unpack<'a>(
    header: &Header,
    payload: &'a [u8],
    out: &'a mut [u8],
    at: u64,
) -> Result<&'a [u8], FormatError> {
    assert!(header.kind.compressible());
    if header.flags.contains(Flags::RAW) {
        return Ok(payload);
    }
    let raw = header.raw_len as usize;
    if out.len() < raw {
        return Err(FormatError::BufferTooSmall { need: raw, have: out.len() });
    }
    match lz4_flex::block::decompress_into(payload, &mut out[..raw]) {
        Ok(n) if n == raw => Ok(&out[..raw]),
        Ok(n) => Err(FormatError::Payload {
            offset: at,
            kind: header.kind,
            reason: format!("LZ4 block holds {n} bytes, header says {raw}"),
        }),
        Err(e) => Err(FormatError::Payload { offset: at, kind: header.kind, reason: e.to_string() }),
    }
}

/// Builds the raw contents of a pack: entries each followed by their object's bytes, in a
/// buffer the builder owns until [`PackBuilder::into_inner`].
#[derive(Debug)]
pub struct PackBuilder<B> {
    buf: B,
    cap: usize,
    len: usize,
    count: usize,
    first: Option<u64>,
}

impl<B: std::ops::DerefMut<Target = [u8]>> PackBuilder<B> {
    /// A builder filling `buf` (at most [`MAX_UNIT_LEN`] bytes of it are used).
    pub fn new(buf: B) -> Self {
        let cap = buf.len().min(MAX_UNIT_LEN);
        PackBuilder { buf, cap, len: 0, count: 0, first: None }
    }

    /// Appends an object; returns `Ok(false)` (and leaves the pack unchanged) when it does not
    /// fit, so the caller closes this pack and starts another.
    pub fn push(&mut self, entry: &PackedEntry, data: &[u8]) -> Result<bool, FormatError> {
        entry.validate().map_err(|what| FormatError::Refused { what })?;
        if entry.length != data.len() as u64 {
            return Err(FormatError::Refused { what: "packed entry length differs from its data" });
        }
        let rest = &mut self.buf[self.len..self.cap];
        let Ok(used) = postcard::to_slice(entry, rest) else {
            return Ok(false);
        };
        let n = used.len();
        if rest.len() - n < data.len() {
            return Ok(false);
        }
        rest[n..n + data.len()].copy_from_slice(data);
        self.len += n + data.len();
        self.count += 1;
        self.first.get_or_insert(entry.object_id);
        Ok(true)
    }

    /// The pack's raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Objects in the pack.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Id of the first object, the pack record's object id.
    pub fn first_object(&self) -> Option<u64> {
        self.first
    }

    /// The buffer and the length of the pack in it.
    pub fn into_inner(self) -> (B, usize) {
        (self.buf, self.len)
    }
}

/// Iterates over the objects in a pack's raw bytes, validating each entry.
#[derive(Debug)]
pub struct PackEntries<'a> {
    rest: &'a [u8],
    at: u64,
}

impl<'a> PackEntries<'a> {
    /// Entries of the raw pack `raw` taken from the record at stream offset `at`.
    pub fn new(raw: &'a [u8], at: u64) -> Self {
        PackEntries { rest: raw, at }
    }
}

impl<'a> Iterator for PackEntries<'a> {
    type Item = Result<(PackedEntry, &'a [u8]), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let at = self.at;
        let bad = |reason: String| FormatError::Payload { offset: at, kind: Kind::Pack, reason };
        let item = match postcard::take_from_bytes::<PackedEntry>(self.rest) {
            Err(e) => Err(bad(e.to_string())),
            Ok((e, tail)) => match e.validate() {
                Err(what) => Err(FormatError::Invalid { offset: at, what }),
                Ok(()) if e.length > tail.len() as u64 => {
                    Err(bad(format!("entry of {} bytes overruns the pack", e.length)))
                }
                Ok(()) => {
                    let (data, next) = tail.split_at(e.length as usize);
                    self.rest = next;
                    Ok((e, data))
                }
            },
        };
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}
