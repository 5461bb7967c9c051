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
use crate::format::{FormatError, Kind};

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

    /// Checks the unit against where the box's stream stands (`next_seq`, and objects from
    /// `first_object` on) and makes it a pipeline unit, its bytes in a buffer of `pool`.
    /// Returns the work and track; the reader gives the sequence number.
    pub fn into_unit(self, next_seq: u64, first_object: u64, pool: &Pool) -> Result<(Work, Track), Refused> {
        let seq = self.seq;
        let refuse = |why: String| Refused { seq, why };
        let is_record = !matches!(self.work, WireWork::Sync);
        if seq != next_seq {
            return Err(refuse(format!("out of sequence: the box expected {next_seq}")));
        }
        let own = |id: u64, what: &str| {
            if id < first_object {
                Err(refuse(format!(
                    "{what} names object {id}, which is not this agent's (its first is {first_object})"
                )))
            } else {
                Ok(())
            }
        };
        let fits = |b: &ByteBuf| {
            if b.is_empty() || b.len() > pool.buf_size() {
                Err(refuse(format!("{} data bytes; a unit holds 1 to {}", b.len(), pool.buf_size())))
            } else {
                Ok(())
            }
        };
        // Everything is checked before a buffer is taken from the pool: a refused unit must
        // not keep one.
        let track = match self.track {
            WireTrack::Nothing => Track::Nothing,
            WireTrack::Starts(id) => {
                own(id, "a start")?;
                Track::Starts(id)
            }
            WireTrack::Ends(o) => {
                check_object(&o).map_err(refuse)?;
                own(o.id, "an end")?;
                Track::Ends(Box::new(o))
            }
            WireTrack::Packed(v) => {
                for o in &v {
                    check_object(o).map_err(refuse)?;
                    own(o.id, "a packed object")?;
                }
                Track::Packed(v)
            }
            WireTrack::Sync => Track::Sync,
        };
        if is_record == matches!(track, Track::Sync) {
            return Err(refuse("a sync point must come alone".into()));
        }
        let work = match self.work {
            WireWork::Data { object, offset, last, bytes } => {
                own(object, "data")?;
                fits(&bytes)?;
                let mut buf = pool.take();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Work::Data { object, offset, last, buf, len: bytes.len() }
            }
            WireWork::Pack { first, bytes } => {
                own(first, "a pack")?;
                fits(&bytes)?;
                let mut buf = pool.take();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Work::Pack { first, buf, len: bytes.len() }
            }
            WireWork::Encoded(bytes) => {
                let (record, used) =
                    decode_record(&bytes, 0).map_err(|e| refuse(format!("a bad record: {e}")))?;
                let h = &record.header;
                if used != bytes.len() {
                    return Err(refuse(format!("{} bytes after its record", bytes.len() - used)));
                }
                if !matches!(h.kind, Kind::ObjectMeta | Kind::Segment | Kind::ObjectEnd) {
                    return Err(refuse(format!("a {:?} record is not the agent's to write", h.kind)));
                }
                if h.seq != seq {
                    return Err(refuse(format!("its record says sequence {}", h.seq)));
                }
                own(h.object_id, "a record")?;
                Work::Encoded(bytes.into_vec())
            }
            WireWork::Sync => Work::Sync,
        };
        Ok((work, track))
    }
}

/// A stored object's path is relative and clean: it cannot name anything outside the restore
/// directory.
fn check_object(o: &StoredObject) -> Result<(), String> {
    let p = &o.path;
    let clean = !p.is_empty()
        && p.len() <= crate::format::MAX_PATH_LEN
        && p[0] != b'/'
        && !p.contains(&0)
        && p.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b".." && (c != b"." || p == b"."));
    if clean { Ok(()) } else { Err(format!("object {} has the path {:?}", o.id, String::from_utf8_lossy(p))) }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// The agents a backup may read from: the service's connections.
pub trait Agents: Send + Sync + std::fmt::Debug {
    /// Whether agent `agent` may be backed up at `root` and is connected now: checked before
    /// a session starts, so that a backup refused outright leaves no session behind.
    fn check(&self, agent: &str, root: &str) -> Result<(), String>;

    /// Starts backing up `ask.root` on agent `agent`, after checking the agent may be backed
    /// up there. Deliveries arrive on the receiver; dropping it cancels the backup.
    fn backup(&self, agent: &str, ask: RemoteAsk) -> Result<tokio::sync::mpsc::Receiver<Delivery>, String>;
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
        };
        let failed = |why: String| ReadError::Agent { agent: agent.to_owned(), why };
        let mut rx = agents.backup(agent, ask).map_err(failed)?;
        loop {
            if self.cancel.is_cancelled() {
                // Dropping the receiver tells the agent to stop.
                return Err(ReadError::Cancelled);
            }
            let Some(d) = rx.blocking_recv() else {
                return Err(failed("the connection ended before the backup did".into()));
            };
            match d {
                Delivery::Unit(bytes) => {
                    let unit =
                        WireUnit::decode(&bytes).map_err(|e| failed(format!("a malformed unit: {e}")))?;
                    let (next_seq, _) = self.next_numbers();
                    let (work, track) = unit
                        .into_unit(next_seq, first_object, self.raw_pool())
                        .map_err(|e| failed(e.to_string()))?;
                    self.send_remote(work, track)?;
                }
                Delivery::Done { next_seq, next_object, problems, error } => {
                    let (seq, object) = self.next_numbers();
                    if next_seq != seq || next_object < object {
                        return Err(failed(format!(
                            "it ended at record {next_seq} and object {next_object}; the box counted {seq} and {object}"
                        )));
                    }
                    self.skip_objects_to(next_object);
                    let name = |p: String| format!("agent {agent}: {p}");
                    self.problems.extend(problems.into_iter().map(name));
                    return match error {
                        None => Ok(()),
                        Some(e) => Err(failed(e)),
                    };
                }
                Delivery::Lost(why) => return Err(failed(why)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::ObjectKind;

    fn object(id: u64, path: &[u8]) -> StoredObject {
        StoredObject {
            id,
            path: path.to_vec(),
            kind: ObjectKind::File,
            size: 3,
            mtime: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            segment_offset: 0,
            length: 3,
            stream: 0,
            part: 0,
            position: 0,
            digest: [0; 32],
        }
    }

    fn pool() -> Pool {
        Pool::new(2, 64 << 10)
    }

    fn pack(seq: u64, first: u64, objects: Vec<StoredObject>) -> WireUnit {
        WireUnit {
            seq,
            work: WireWork::Pack { first, bytes: ByteBuf::from(vec![7u8; 100]) },
            track: WireTrack::Packed(objects),
        }
    }

    #[test]
    fn a_unit_in_sequence_of_its_own_objects_is_taken() {
        let u = pack(5, 10, vec![object(10, b"a/b"), object(11, b".")]);
        let back = WireUnit::decode(&u.encode()).unwrap();
        assert_eq!(back, u);
        let (work, track) = back.into_unit(5, 10, &pool()).unwrap();
        assert!(matches!(work, Work::Pack { first: 10, len: 100, .. }));
        assert!(matches!(track, Track::Packed(v) if v.len() == 2));
    }

    #[test]
    fn units_out_of_sequence_of_other_objects_or_with_bad_paths_are_refused() {
        let p = pool();
        let cases = [
            (pack(6, 10, vec![object(10, b"a")]), "out of sequence"),
            (pack(5, 9, vec![object(10, b"a")]), "not this agent's"),
            (pack(5, 10, vec![object(3, b"a")]), "not this agent's"),
            (pack(5, 10, vec![object(10, b"../etc/passwd")]), "has the path"),
            (pack(5, 10, vec![object(10, b"/etc/passwd")]), "has the path"),
            (pack(5, 10, vec![object(10, b"a//b")]), "has the path"),
            (
                WireUnit {
                    seq: 5,
                    work: WireWork::Encoded(ByteBuf::from(vec![1, 2, 3])),
                    track: WireTrack::Nothing,
                },
                "bad record",
            ),
            (WireUnit { seq: 5, work: WireWork::Sync, track: WireTrack::Nothing }, "sync point"),
            (
                WireUnit {
                    seq: 5,
                    work: WireWork::Pack { first: 10, bytes: ByteBuf::from(vec![0u8; (64 << 10) + 1]) },
                    track: WireTrack::Nothing,
                },
                "a unit holds",
            ),
        ];
        for (u, why) in cases {
            let e = u.clone().into_unit(5, 10, &p).unwrap_err();
            assert!(e.why.contains(why), "{u:?}: {e}");
        }
        assert!(WireUnit::decode(&[0xff; 3]).is_err());
        let mut bytes = pack(5, 10, vec![]).encode();
        bytes.push(0);
        assert!(WireUnit::decode(&bytes).unwrap_err().contains("after the unit"));
    }
}
