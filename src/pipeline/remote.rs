//! Trees read on a backup agent: the units of the agent's reader, carried over the network
//! and fed into the box's pipeline as if read here.
//!
//! The agent runs the same [`Reader`] as a local backup (same walk, same object kinds, same
//! packing), numbering records and objects from where the box's session stands. Each unit
//! crosses the wire as a [`WireUnit`]; the box checks it ([`WireUnit::into_unit`]) and hands it
//! to its compressors: the data is compressed once, on the box's pinned cores. Nothing an
//! agent sends is trusted: records must be in sequence, objects the agent's own (numbered from
//! what the box gave it), encoded records must decode, and paths must be relative.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::pool::{Pool, Recycler};
use super::readback::{Decoded, Item, Place};
use super::reader::{ReadError, Reader};
use super::{Track, Unit, Work};
use crate::catalog::StoredObject;
use crate::format::decode_record;
use crate::format::records::{ObjectEnd, ObjectMeta, PackedEntry, SegmentHeader};
use crate::format::{Body, FormatError, PackEntries};

/// One pipeline unit as it crosses the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUnit {
    /// Record sequence number the agent gave it (a sync point's is the next record's).
    pub seq: u64,
    /// What to encode.
    pub work: WireWork,
    /// What the writer records.
    pub track: WireTrack,
}

/// [`Work`] with its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireWork {
    /// Object bytes at `offset`.
    Data { object: u64, offset: u64, last: bool, bytes: ByteBuf },
    /// A pack's raw bytes.
    Pack { first: u64, bytes: ByteBuf },
    /// A record the agent's reader encoded (metadata, segment headers, object ends).
    Encoded(ByteBuf),
    /// A sync point.
    Sync,
}

/// [`Track`] as it crosses the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireTrack {
    /// A middle data record.
    Nothing,
    /// An object's first record.
    Starts(u64),
    /// An object's last record.
    Ends(StoredObject),
    /// A pack's objects.
    Packed(Vec<StoredObject>),
    /// A sync point.
    Sync,
}

/// Why a unit from an agent is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unit {seq} from the agent is refused: {why}")]
pub struct Refused {
    /// The unit's sequence number as sent.
    pub seq: u64,
    /// What is wrong with it.
    pub why: String,
}

impl WireUnit {
    /// The wire form of a unit the agent's reader made.
    pub fn of(u: &Unit) -> WireUnit {
        let work = match &u.work {
            Work::Data { object, offset, last, buf, len } => WireWork::Data {
                object: *object,
                offset: *offset,
                last: *last,
                bytes: ByteBuf::from(buf[..*len].to_vec()),
            },
            Work::Pack { first, buf, len } => {
                WireWork::Pack { first: *first, bytes: ByteBuf::from(buf[..*len].to_vec()) }
            }
            Work::Encoded(b) => WireWork::Encoded(ByteBuf::from(b.clone())),
            Work::Sync => WireWork::Sync,
        };
        let track = match &u.track {
            Track::Nothing => WireTrack::Nothing,
            Track::Starts(id) => WireTrack::Starts(*id),
            Track::Ends(o) => WireTrack::Ends((**o).clone()),
            Track::Packed(v) => WireTrack::Packed(v.clone()),
            Track::Sync => WireTrack::Sync,
        };
        WireUnit { seq: u.seq, work, track }
    }

    /// Its postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a unit serializes to a Vec")
    }

    /// Decodes postcard bytes that must hold exactly one unit.
    pub fn decode(bytes: &[u8]) -> Result<WireUnit, String> {
        match postcard::take_from_bytes::<WireUnit>(bytes) {
            Ok((u, [])) => Ok(u),
            Ok((_, rest)) => Err(format!("{} bytes after the unit", rest.len())),
            Err(e) => Err(format!("not a unit ({e})")),
        }
    }

    /// Decodes a unit's bytes and checks it as [`WireUnit::into_unit`] does; the error says
    /// what was wrong, for the agent's failure.
    pub fn accept(
        bytes: &[u8],
        next_seq: u64,
        check: &mut UnitCheck,
        pool: &Pool,
    ) -> Result<(Work, Track), String> {
        let unit = WireUnit::decode(bytes).map_err(|e| format!("a malformed unit: {e}"))?;
        unit.into_unit(next_seq, check, pool).map_err(|e| e.to_string())
    }

    /// Checks the unit against where the box's stream stands (`next_seq`, and what `check`
    /// has seen of this agent's objects) and makes it a pipeline unit, its bytes in a buffer
    /// of `pool`. Returns the work and track; the reader gives the sequence number. Everything
    /// is checked before a buffer is taken: a refused unit keeps none.
    pub fn into_unit(
        self,
        next_seq: u64,
        check: &mut UnitCheck,
        pool: &Pool,
    ) -> Result<(Work, Track), Refused> {
        let seq = self.seq;
        let refuse = |why: String| Refused { seq, why };
        if seq != next_seq {
            return Err(refuse(format!("out of sequence: the box expected {next_seq}")));
        }
        // A sync point closes a part (a filemark on tape, journal commits): the box's to
        // decide, never an agent's (its walk makes none).
        if matches!(self.work, WireWork::Sync) || matches!(self.track, WireTrack::Sync) {
            return Err(refuse("a sync point is not the agent's to ask".into()));
        }
        // Each object begins once, with an id of the agent's; data and ends belong to one
        // already begun.
        let begun = |id: u64, what: &str, c: &UnitCheck| {
            if c.has_begun(id) {
                Ok(())
            } else {
                Err(refuse(format!("{what} names object {id}, which this agent has not begun")))
            }
        };
        let begins = |id: u64, c: &mut UnitCheck| c.begin(id).map_err(refuse);
        let track = match self.track {
            WireTrack::Nothing => Track::Nothing,
            WireTrack::Starts(id) => {
                begins(id, check)?;
                Track::Starts(id)
            }
            WireTrack::Ends(o) => {
                check.object(&o).map_err(refuse)?;
                begun(o.id, "an end", check)?;
                Track::Ends(Box::new(o))
            }
            WireTrack::Packed(v) => {
                for o in &v {
                    check.object(o).map_err(refuse)?;
                    begins(o.id, check)?;
                }
                Track::Packed(v)
            }
            WireTrack::Sync => unreachable!("refused above"),
        };
        let fits = |b: &ByteBuf| {
            if b.is_empty() || b.len() > pool.buf_size() {
                Err(refuse(format!("{} data bytes; a unit holds 1 to {}", b.len(), pool.buf_size())))
            } else {
                Ok(())
            }
        };
        let work = match self.work {
            WireWork::Data { object, offset, last, bytes } => {
                begun(object, "data", check)?;
                fits(&bytes)?;
                if offset.checked_add(bytes.len() as u64).is_none_or(|end| end > i64::MAX as u64) {
                    return Err(refuse(format!("data at offset {offset} ends past the largest offset")));
                }
                if !matches!(track, Track::Nothing | Track::Ends(_)) {
                    return Err(refuse("data that begins an object".into()));
                }
                let mut buf = pool.take();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Work::Data { object, offset, last, buf, len: bytes.len() }
            }
            WireWork::Pack { first: id, bytes } => {
                fits(&bytes)?;
                let Track::Packed(objects) = &track else {
                    return Err(refuse("a pack without its objects".into()));
                };
                check.pack(id, &bytes, objects).map_err(refuse)?;
                let mut buf = pool.take();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Work::Pack { first: id, buf, len: bytes.len() }
            }
            WireWork::Encoded(bytes) => {
                let (record, used) =
                    decode_record(&bytes, 0).map_err(|e| refuse(format!("a bad record: {e}")))?;
                let h = &record.header;
                if used != bytes.len() {
                    return Err(refuse(format!("{} bytes after its record", bytes.len() - used)));
                }
                if h.seq != seq {
                    return Err(refuse(format!("its record says sequence {}", h.seq)));
                }
                match (&record.body, &track) {
                    (Body::ObjectMeta(meta), Track::Starts(id)) if *id == h.object_id => {
                        check.path(&meta.path).map_err(refuse)?;
                    }
                    (Body::ObjectEnd(_), Track::Ends(o)) if o.id == h.object_id => {}
                    // Compressed on the agent: checked as the box would have made it.
                    (Body::Data(_), Track::Nothing | Track::Ends(_)) => {
                        begun(h.object_id, "data", check)?;
                        if let Track::Ends(o) = &track
                            && o.id != h.object_id
                        {
                            return Err(refuse(format!(
                                "data of object {} ending object {}",
                                h.object_id, o.id
                            )));
                        }
                        if h.raw_len == 0 || h.raw_len as usize > pool.buf_size() {
                            return Err(refuse(format!(
                                "{} data bytes; a unit holds 1 to {}",
                                h.raw_len,
                                pool.buf_size()
                            )));
                        }
                        if h.offset.checked_add(u64::from(h.raw_len)).is_none_or(|end| end > i64::MAX as u64)
                        {
                            return Err(refuse(format!(
                                "data at offset {} ends past the largest offset",
                                h.offset
                            )));
                        }
                    }
                    (Body::Pack(stored), Track::Packed(objects)) => {
                        if h.raw_len as usize > pool.buf_size() {
                            return Err(refuse(format!(
                                "a pack of {} bytes; a unit holds {}",
                                h.raw_len,
                                pool.buf_size()
                            )));
                        }
                        let mut raw = vec![0u8; h.raw_len as usize];
                        let raw = match crate::format::unpack(h, stored, &mut raw, 0) {
                            Ok(_) if h.flags.contains(crate::format::Flags::RAW) => stored.to_vec(),
                            Ok(_) => raw,
                            Err(e) => return Err(refuse(format!("a pack that does not decompress: {e}"))),
                        };
                        check.pack(h.object_id, &raw, objects).map_err(refuse)?;
                    }
                    _ => {
                        return Err(refuse(format!(
                            "a {:?} record of object {} that its track does not match",
                            h.kind, h.object_id
                        )));
                    }
                }
                Work::Encoded(bytes.into_vec())
            }
            WireWork::Sync => unreachable!("refused above"),
        };
        Ok((work, track))
    }
}

/// What the box has seen of one agent's backup, to check each unit against: the agent may
/// only add objects of its own, each begun once, with ids from the first the box gave it,
/// under its source's prefix, each as its catalog entry says.
///
/// The agent's reader numbers objects densely in walk order, but they need not arrive in
/// order (a pack of small files is sent after a large file that came later in the walk), so
/// which ids were begun is kept as a bit set, one bit per id from the first: ids may run ahead
/// of the objects begun by at most [`ID_SLACK`] (files that vanished after being numbered),
/// which bounds the set by the objects actually sent.
#[derive(Debug, Clone)]
pub struct UnitCheck {
    /// The first object id the agent may give.
    pub first_object: u64,
    /// The name every path must be under (several sources share the session), if any.
    pub prefix: Option<Vec<u8>>,
    /// Bit `id - first_object` is set once that object began.
    begun: Vec<u64>,
    /// Objects begun.
    count: u64,
    /// The largest id begun.
    largest: Option<u64>,
}

/// How far ids may run ahead of the objects begun.
const ID_SLACK: u64 = 1 << 20;

impl UnitCheck {
    /// Checks for a backup numbering objects from `first_object`.
    pub fn new(first_object: u64, prefix: Option<Vec<u8>>) -> UnitCheck {
        UnitCheck { first_object, prefix, begun: Vec::new(), count: 0, largest: None }
    }

    /// Records that object `id` begins: an id of the agent's, not begun before.
    fn begin(&mut self, id: u64) -> Result<(), String> {
        let off = id.checked_sub(self.first_object).filter(|&o| o < self.count + ID_SLACK);
        let Some(off) = off else {
            return Err(format!("object {id} is not an id this agent was given"));
        };
        let (word, bit) = ((off / 64) as usize, 1u64 << (off % 64));
        if word >= self.begun.len() {
            self.begun.resize(word + 1, 0);
        }
        if self.begun[word] & bit != 0 {
            return Err(format!("object {id} begins a second time"));
        }
        self.begun[word] |= bit;
        self.count += 1;
        self.largest = Some(self.largest.map_or(id, |l| l.max(id)));
        Ok(())
    }

    /// Whether object `id` has begun.
    fn has_begun(&self, id: u64) -> bool {
        id.checked_sub(self.first_object)
            .and_then(|off| self.begun.get((off / 64) as usize).map(|w| w & (1 << (off % 64)) != 0))
            .unwrap_or(false)
    }

    /// Whether the agent's `Done` may say the next free id is `next`: past every object it
    /// began, within bounds.
    pub fn next_object_ok(&self, next: u64) -> bool {
        next >= self.largest.map_or(self.first_object, |m| m + 1)
            && next - self.first_object <= self.count + ID_SLACK
    }

    /// Whether the agent's `Done` (next record `next_seq`, next object `next_object`) agrees
    /// with what the box counted: `counted` records, and the objects begun.
    pub fn ended_at(&self, counted: u64, next_seq: u64, next_object: u64) -> Result<(), String> {
        if next_seq != counted || !self.next_object_ok(next_object) {
            return Err(format!(
                "it ended at record {next_seq} and object {next_object}, which its units do not bear out (the box counted record {counted})"
            ));
        }
        Ok(())
    }

    /// A path is relative, clean and under the prefix.
    fn path(&self, p: &[u8]) -> Result<(), String> {
        path_under(p, self.prefix.as_deref())
    }

    /// A catalog entry as the catalog would take it, with a path of this source.
    fn object(&self, o: &StoredObject) -> Result<(), String> {
        o.validate().map_err(|why| format!("object {}: {why}", o.id))?;
        self.path(&o.path)
    }

    /// A pack's entries are its catalog entries, in order, each with its bytes.
    fn pack(&self, first: u64, raw: &[u8], objects: &[StoredObject]) -> Result<(), String> {
        if objects.first().map(|o| o.id) != Some(first) {
            return Err(format!("a pack from object {first} whose objects begin elsewhere"));
        }
        let mut entries = PackEntries::new(raw, 0);
        for o in objects {
            let (e, _) = entries
                .next()
                .ok_or_else(|| format!("the pack ends before object {}", o.id))?
                .map_err(|e| format!("a bad pack: {e}"))?;
            if e.object_id != o.id || e.meta.path != o.path || e.length != o.length || e.digest != o.digest {
                return Err(format!("pack entry {} differs from its catalog entry", e.object_id));
            }
        }
        if entries.next().is_some() {
            return Err("a pack holds more objects than its catalog entries".into());
        }
        Ok(())
    }
}

/// A path an agent sent is relative, clean and under its source's `prefix` (if any).
fn path_under(p: &[u8], prefix: Option<&[u8]>) -> Result<(), String> {
    check_path(p)?;
    match prefix {
        Some(prefix) if !(p == prefix || (p.starts_with(prefix) && p.get(prefix.len()) == Some(&b'/'))) => {
            Err(format!(
                "the path {:?} is outside this source's {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(prefix)
            ))
        }
        _ => Ok(()),
    }
}

/// A path is relative and clean: it cannot name anything outside the restore directory.
fn check_path(p: &[u8]) -> Result<(), String> {
    let clean = !p.is_empty()
        && p.len() <= crate::format::MAX_PATH_LEN
        && p[0] != b'/'
        && !p.contains(&0)
        && p.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b".." && (c != b"." || p == b"."));
    if clean {
        Ok(())
    } else {
        Err(format!("the path {:?} is not clean and relative", String::from_utf8_lossy(p)))
    }
}

/// A record read back, as it crosses to the agent a restore writes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireItem {
    /// Where it was read: medium, stream, part, offset in the part, offset on the medium.
    pub place: (String, u16, u32, u64, u64),
    /// Its sequence number.
    pub seq: u64,
    /// What it holds.
    pub decoded: WireDecoded,
}

/// [`Decoded`] with its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireDecoded {
    /// An object's metadata.
    Meta(u64, ObjectMeta),
    /// The segment that follows.
    Segment(u64, SegmentHeader),
    /// Object bytes.
    Data { id: u64, offset: u64, data: ByteBuf },
    /// End of an object.
    End(u64, ObjectEnd),
    /// Small objects: entries, where their bytes lie in `data`, whether they match.
    Pack { entries: Vec<(PackedEntry, u64, u64, bool)>, data: ByteBuf },
    /// A damaged record.
    Bad(String),
}

impl WireItem {
    /// The wire form of a record the box read back.
    pub fn of(item: &Item) -> WireItem {
        let p = &item.place;
        let decoded = match &item.decoded {
            Decoded::Meta(id, m) => WireDecoded::Meta(*id, m.clone()),
            Decoded::Segment(id, h) => WireDecoded::Segment(*id, *h),
            Decoded::Data { id, offset, data } => {
                WireDecoded::Data { id: *id, offset: *offset, data: ByteBuf::from(data.to_vec()) }
            }
            Decoded::End(id, e) => WireDecoded::End(*id, *e),
            Decoded::Pack { entries, data } => WireDecoded::Pack {
                entries: entries
                    .iter()
                    .map(|(e, r, ok)| (e.clone(), r.start as u64, r.end as u64, *ok))
                    .collect(),
                data: ByteBuf::from(data.to_vec()),
            },
            Decoded::Bad(e) => WireDecoded::Bad(e.to_string()),
        };
        WireItem {
            place: (p.barcode.to_string(), p.stream, p.part, p.offset, p.absolute),
            seq: item.seq,
            decoded,
        }
    }

    /// Its postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an item serializes to a Vec")
    }

    /// Decodes postcard bytes that must hold exactly one item, and makes it a record for the
    /// restore's sink, its bytes in buffers of `buffers`. Pack ranges must lie in the pack.
    pub fn decode(bytes: &[u8], buffers: &Recycler) -> Result<Item, String> {
        let w = match postcard::take_from_bytes::<WireItem>(bytes) {
            Ok((w, [])) => w,
            Ok((_, rest)) => return Err(format!("{} bytes after the record", rest.len())),
            Err(e) => return Err(format!("not a record ({e})")),
        };
        let copy = |b: &[u8]| {
            let mut r = buffers.take(b.len());
            r.copy_from_slice(b);
            r
        };
        let decoded = match w.decoded {
            WireDecoded::Meta(id, m) => Decoded::Meta(id, m),
            WireDecoded::Segment(id, h) => Decoded::Segment(id, h),
            WireDecoded::Data { id, offset, data } => Decoded::Data { id, offset, data: copy(&data) },
            WireDecoded::End(id, e) => Decoded::End(id, e),
            WireDecoded::Pack { entries, data } => {
                let len = data.len() as u64;
                if entries.iter().any(|(_, a, b, _)| a > b || *b > len) {
                    return Err("a packed object lies outside its pack".into());
                }
                let entries =
                    entries.into_iter().map(|(e, a, b, ok)| (e, a as usize..b as usize, ok)).collect();
                Decoded::Pack { entries, data: copy(&data) }
            }
            WireDecoded::Bad(e) => Decoded::Bad(FormatError::Reported(e)),
        };
        let (barcode, stream, part, offset, absolute) = w.place;
        let place = Place { barcode: barcode.into(), stream, part, offset, absolute };
        Ok(Item { place, seq: w.seq, decoded })
    }
}

/// What an agent's backup stream delivers to the reader.
#[derive(Debug)]
pub enum Delivery {
    /// A unit's postcard bytes.
    Unit(Vec<u8>),
    /// The agent finished: the next free numbers, what it could not read, and why it stopped
    /// early (if it did).
    Done { next_seq: u64, next_object: u64, problems: Vec<String>, error: Option<String> },
    /// The connection was lost or broke the protocol.
    Lost(String),
}

/// What the box asks of an agent.
#[derive(Debug, Clone)]
pub struct RemoteAsk {
    /// The job (0: by hand), for the agent's log.
    pub job: u64,
    /// The tree on the agent.
    pub root: String,
    /// The name its paths go under when several sources share the session.
    pub prefix: Option<Vec<u8>>,
    /// The first record number and object id the agent gives.
    pub first_seq: u64,
    /// See `first_seq`.
    pub first_object: u64,
    /// Unit size.
    pub unit: usize,
    /// Stay on the root's file system.
    pub one_file_system: bool,
    /// The job's cancel: the connection tells the agent to stop when it is set.
    pub cancel: super::Cancel,
    /// An incremental backup's baseline: the agent asks which walked entries to leave out
    /// ([`RemoteAsk::judge`]), and what it leaves out is counted and listed here.
    pub incremental: Option<super::baseline::Incremental>,
    /// The agent compresses: its data and packs arrive as encoded records.
    pub compress: bool,
}

/// Most entries one `Judge` may ask about.
pub const MAX_JUDGED: usize = 4096;

impl RemoteAsk {
    /// The answer to an agent's `Judge`: the postcard `[ObjectMeta]` it walked, each path
    /// under its source's prefix; one bit per entry, set for an unchanged regular file to
    /// leave out. Anything else is refused.
    pub fn judge(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let Some(inc) = &self.incremental else {
            return Err("asked what to leave out of a full backup".into());
        };
        let metas: Vec<ObjectMeta> = match postcard::take_from_bytes::<Vec<ObjectMeta>>(bytes) {
            Ok((m, [])) => m,
            Ok((_, rest)) => return Err(format!("{} bytes after the entries to judge", rest.len())),
            Err(e) => return Err(format!("entries to judge that do not decode ({e})")),
        };
        if metas.is_empty() || metas.len() > MAX_JUDGED {
            return Err(format!("{} entries to judge; 1 to {MAX_JUDGED}", metas.len()));
        }
        for m in &metas {
            path_under(&m.path, self.prefix.as_deref())?;
        }
        let mut bits = vec![0u8; metas.len().div_ceil(8)];
        for (i, m) in metas.iter().enumerate() {
            if inc.skip(m) {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        Ok(bits)
    }
}

/// The agents a backup may read from: the service's connections.
pub trait Agents: Send + Sync + std::fmt::Debug {
    /// Whether agent `agent` may be backed up at `root` and is connected now: checked before
    /// a session starts, so that a backup refused outright leaves no session behind.
    fn check(&self, agent: &str, root: &str) -> Result<(), String>;

    /// Starts backing up `ask.root` on agent `agent`, after checking the agent may be backed
    /// up there. Deliveries arrive on the receiver; dropping it cancels the backup.
    fn backup(&self, agent: &str, ask: RemoteAsk) -> Result<tokio::sync::mpsc::Receiver<Delivery>, String>;

    /// Where agents' backups to a streaming drive are spooled, if anywhere.
    fn spool(&self) -> Option<super::spool::SpoolSpec> {
        None
    }
}

impl Reader {
    /// Adds the tree `root` of agent `agent`, read there and delivered by `agents`.
    pub fn add_agent(
        &mut self,
        agents: &dyn Agents,
        agent: &str,
        root: &str,
        prefix: Option<&[u8]>,
        job: u64,
        one_file_system: bool,
    ) -> Result<(), ReadError> {
        // The agent numbers from here: what this reader packed so far goes first.
        self.flush_pack()?;
        let (first_seq, first_object) = self.next_numbers();
        let ask = RemoteAsk {
            job,
            root: root.to_owned(),
            prefix: prefix.map(<[u8]>::to_vec),
            first_seq,
            first_object,
            unit: self.unit_size(),
            one_file_system,
            cancel: self.cancel.clone(),
            incremental: self.incremental.clone(),
            compress: self.agent_compresses,
        };
        let mut check = UnitCheck::new(first_object, prefix.map(<[u8]>::to_vec));
        let failed = |why: String| ReadError::Agent { agent: agent.to_owned(), why };
        let mut rx = agents.backup(agent, ask).map_err(failed)?;
        loop {
            if self.cancel.is_cancelled() {
                // Dropping the receiver tells the agent to stop.
                return Err(ReadError::Cancelled);
            }
            let Some(d) = rx.blocking_recv() else {
                if self.cancel.is_cancelled() {
                    return Err(ReadError::Cancelled);
                }
                return Err(failed("the connection ended before the backup did".into()));
            };
            match d {
                Delivery::Unit(bytes) => {
                    let (next_seq, _) = self.next_numbers();
                    let (work, track) =
                        WireUnit::accept(&bytes, next_seq, &mut check, self.raw_pool()).map_err(failed)?;
                    self.send_remote(0, work, track)?;
                }
                Delivery::Done { next_seq, next_object, problems, error } => {
                    let name = |p: String| format!("agent {agent}: {p}");
                    if let Some(e) = error {
                        self.problems.extend(problems.into_iter().map(name));
                        return Err(failed(e));
                    }
                    let (seq, _) = self.next_numbers();
                    check.ended_at(seq, next_seq, next_object).map_err(failed)?;
                    self.skip_objects_to(next_object);
                    self.problems.extend(problems.into_iter().map(name));
                    return Ok(());
                }
                Delivery::Lost(why) => return Err(failed(why)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::{ObjectKind, ObjectMeta, PackedEntry};
    use crate::format::{PackBuilder, encode_meta};

    fn meta(path: &[u8], kind: ObjectKind, size: u64) -> ObjectMeta {
        ObjectMeta {
            path: path.to_vec(),
            kind,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            mtime_nsec: 0,
            size,
            rdev: 0,
            symlink: None,
            hardlink: None,
        }
    }

    fn pool() -> Pool {
        Pool::new(2, 64 << 10)
    }

    /// A real pack of files with these ids and paths (3 bytes each), and its catalog entries.
    fn pack(seq: u64, files: &[(u64, &[u8])]) -> WireUnit {
        let mut b = PackBuilder::new(vec![0u8; 64 << 10]);
        let mut objects = Vec::new();
        for &(id, path) in files {
            let m = meta(path, ObjectKind::File, 3);
            let digest = *blake3::hash(b"abc").as_bytes();
            assert!(
                b.push(&PackedEntry { object_id: id, meta: m.clone(), length: 3, digest }, b"abc").unwrap()
            );
            objects.push(crate::pipeline::stored(id, &m, 3, digest));
        }
        let first = files[0].0;
        WireUnit {
            seq,
            work: WireWork::Pack { first, bytes: ByteBuf::from(b.bytes().to_vec()) },
            track: WireTrack::Packed(objects),
        }
    }

    /// The metadata record that begins large file `id`.
    fn begins(seq: u64, id: u64, path: &[u8]) -> WireUnit {
        let mut buf = vec![0u8; 8192];
        let n = encode_meta(id, seq, &meta(path, ObjectKind::File, 1 << 20), &mut buf).unwrap();
        buf.truncate(n);
        WireUnit { seq, work: WireWork::Encoded(ByteBuf::from(buf)), track: WireTrack::Starts(id) }
    }

    fn data(seq: u64, object: u64, offset: u64) -> WireUnit {
        let work = WireWork::Data { object, offset, last: false, bytes: ByteBuf::from(vec![1u8; 100]) };
        WireUnit { seq, work, track: WireTrack::Nothing }
    }

    #[test]
    fn a_full_backup_judges_nothing() {
        let ask = RemoteAsk {
            job: 1,
            root: "/srv".into(),
            prefix: None,
            first_seq: 1,
            first_object: 1,
            unit: 1 << 20,
            one_file_system: false,
            cancel: super::super::Cancel::default(),
            incremental: None,
            compress: false,
        };
        let bytes = postcard::to_allocvec(&vec![meta(b"a", ObjectKind::File, 1)]).unwrap();
        let e = ask.judge(&bytes).unwrap_err();
        assert!(e.contains("full backup"), "{e}");
    }

    #[test]
    fn judged_paths_lie_under_the_prefix() {
        assert!(path_under(b"db1:srv/a", Some(b"db1:srv")).is_ok());
        assert!(path_under(b"db1:srv", Some(b"db1:srv")).is_ok());
        for bad in [&b"db1:srvx/a"[..], b"other/a", b"/etc/passwd", b"db1:srv/../x"] {
            assert!(path_under(bad, Some(b"db1:srv")).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn units_in_sequence_of_the_agents_own_objects_are_taken() {
        let p = pool();
        let mut c = UnitCheck::new(10, Some(b"db1:srv".to_vec()));
        let u = pack(5, &[(10, b"db1:srv"), (11, b"db1:srv/a")]);
        let back = WireUnit::decode(&u.encode()).unwrap();
        assert_eq!(back, u);
        let (work, track) = back.into_unit(5, &mut c, &p).unwrap();
        assert!(matches!(work, Work::Pack { first: 10, .. }));
        assert!(matches!(track, Track::Packed(v) if v.len() == 2));
        drop(work);
        begins(6, 12, b"db1:srv/big").into_unit(6, &mut c, &p).unwrap();
        data(7, 12, 0).into_unit(7, &mut c, &pool()).unwrap();
        assert!(c.next_object_ok(13) && !c.next_object_ok(12) && !c.next_object_ok(u64::MAX));
    }

    #[test]
    fn units_that_are_not_the_agents_own_or_do_not_hold_together_are_refused() {
        let cases: Vec<(WireUnit, &str)> = vec![
            (pack(6, &[(10, b"a")]), "out of sequence"),
            (pack(5, &[(9, b"a")]), "not an id this agent was given"),
            (pack(5, &[(10 + (1 << 20), b"a")]), "not an id this agent was given"),
            (pack(5, &[(11, b"a"), (11, b"b")]), "a second time"),
            (pack(5, &[(10, b"../etc/passwd")]), "not clean"),
            (pack(5, &[(10, b"/etc/passwd")]), "not clean"),
            (pack(5, &[(10, b"a//b")]), "not clean"),
            (
                {
                    let mut u = pack(5, &[(10, b"a"), (11, b"b")]);
                    let WireTrack::Packed(v) = &mut u.track else { unreachable!() };
                    v[1].path = b"c".to_vec();
                    u
                },
                "differs from its catalog entry",
            ),
            (
                {
                    let mut u = pack(5, &[(10, b"a")]);
                    u.work = WireWork::Pack { first: 10, bytes: ByteBuf::from(vec![7u8; 100]) };
                    u
                },
                "a bad pack",
            ),
            (data(5, 10, 0), "has not begun"),
            (
                WireUnit {
                    seq: 5,
                    work: WireWork::Encoded(ByteBuf::from(vec![1, 2, 3])),
                    track: WireTrack::Starts(10),
                },
                "bad record",
            ),
            (WireUnit { seq: 5, work: WireWork::Sync, track: WireTrack::Sync }, "sync point"),
            (
                {
                    let mut u = begins(5, 10, b"a");
                    u.track = WireTrack::Starts(11);
                    u
                },
                "does not match",
            ),
        ];
        for (u, why) in cases {
            let mut c = UnitCheck::new(10, None);
            let e = u.clone().into_unit(5, &mut c, &pool()).unwrap_err();
            assert!(e.why.contains(why), "{u:?}: {e}");
        }
        // Data of a begun object: at an offset that overflows, or too large for a unit.
        let mut c = UnitCheck::new(10, None);
        begins(5, 10, b"big").into_unit(5, &mut c, &pool()).unwrap();
        let e = data(6, 10, u64::MAX - 10).into_unit(6, &mut c, &pool()).unwrap_err();
        assert!(e.why.contains("largest offset"), "{e}");
        let huge = WireUnit {
            seq: 6,
            work: WireWork::Data {
                object: 10,
                offset: 0,
                last: true,
                bytes: ByteBuf::from(vec![0u8; (64 << 10) + 1]),
            },
            track: WireTrack::Nothing,
        };
        assert!(huge.into_unit(6, &mut c, &pool()).unwrap_err().why.contains("a unit holds"));
        // Outside the source's prefix.
        let mut c = UnitCheck::new(10, Some(b"db1:srv".to_vec()));
        let e = pack(5, &[(10, b"www/index.php")]).into_unit(5, &mut c, &pool()).unwrap_err();
        assert!(e.why.contains("outside this source"), "{e}");
        assert!(WireUnit::decode(&[0xff; 3]).is_err());
        let mut bytes = pack(5, &[(10, b"a")]).encode();
        bytes.push(0);
        assert!(WireUnit::decode(&bytes).unwrap_err().contains("after the unit"));
    }
}
