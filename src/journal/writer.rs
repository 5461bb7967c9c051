//! Appending, committing, rotating and snapshotting.

use std::collections::BTreeMap;

use super::frame::{FRAME_HEADER, HeadSlot, SEGMENT_HEADER, SegmentHeader, seal_frame};
use super::replay::{Mode, OpenReport, Planned, name_of, stale_segments};
use super::storage::{Dir, Storage};
use super::{
    FIRST_USER_KIND, HEAD_NAME, JournalError, KIND_COMMIT, KIND_SNAPSHOT_END, MAX_GROUP_BYTES, MAX_PAYLOAD,
    SEGMENT_TARGET,
};

/// Sequence number of the first record appended to a new journal (1 and 2 are the empty base
/// snapshot's end and commit).
pub(super) const FIRST_RECORD_SEQ: u64 = 3;

/// A typed record the journal can store.
pub trait Entry {
    /// Record kind, at least [`FIRST_USER_KIND`].
    fn kind(&self) -> u16;
    /// Layout version of the kind.
    fn version(&self) -> u8;
    /// Appends the postcard payload to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

impl<T: Entry + ?Sized> Entry for &T {
    fn kind(&self) -> u16 {
        (**self).kind()
    }
    fn version(&self) -> u8 {
        (**self).version()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out)
    }
}

/// An open journal.
#[derive(Debug)]
pub struct Journal<D: Dir> {
    dir: D,
    seg: D::File,
    seg_id: u64,
    seg_name: String,
    head: D::File,
    generation: u64,
    base: u64,
    /// End of the last durable commit in the current segment.
    durable_len: u64,
    /// Sequence number of the next record appended.
    next_seq: u64,
    /// Frames awaiting commit.
    pending: Vec<u8>,
    pending_first: Option<u64>,
    /// Caller's records in `pending`.
    pending_records: u64,
    /// Caller's records that replay would hand over now (those after the base snapshot's
    /// start, the snapshot's own included): what [`OpenReport::records`] would say.
    records: u64,
    /// Committed bytes of every live segment: what [`OpenReport::bytes`] would say.
    bytes: u64,
    poisoned: bool,
    read_only: bool,
    segment_target: u64,
}

fn io<T>(file: &str, op: &'static str, r: std::io::Result<T>) -> Result<T, JournalError> {
    r.map_err(JournalError::io(file, op))
}

impl<D: Dir> Journal<D> {
    /// Creates an empty journal in an empty directory: a base segment holding the snapshot of
    /// the empty state, and a head naming it.
    pub(super) fn create(dir: D) -> Result<Journal<D>, JournalError> {
        let name = name_of(1);
        let mut seg = io(&name, "create", dir.create(&name))?;
        let header = SegmentHeader { id: 1, first_seq: 1, prev_len: 0, snapshot: true };
        let mut buf = header.encode().to_vec();
        push_frame(&mut buf, 1, KIND_SNAPSHOT_END, 1, &0u64.to_le_bytes());
        push_frame(&mut buf, 2, KIND_COMMIT, 1, &1u64.to_le_bytes());
        io(&name, "write", seg.write_at(0, &buf))?;
        io(&name, "sync", seg.sync())?;
        let head = io(HEAD_NAME, "create", dir.create(HEAD_NAME))?;
        let mut j = Journal {
            dir,
            seg,
            seg_id: 1,
            seg_name: name,
            head,
            generation: 0,
            base: 1,
            durable_len: buf.len() as u64,
            next_seq: FIRST_RECORD_SEQ,
            pending: Vec::new(),
            pending_first: None,
            pending_records: 0,
            records: 0,
            bytes: buf.len() as u64,
            poisoned: false,
            read_only: false,
            segment_target: SEGMENT_TARGET,
        };
        j.write_head()?;
        Ok(j)
    }

    /// Continues a replayed journal: cuts the torn tail, removes stale segments and writes a
    /// new head (nothing of that in read-only mode).
    pub(super) fn resume(
        dir: D,
        mode: Mode,
        head: &HeadSlot,
        first: &Planned,
        last: &Planned,
        segments: &BTreeMap<u64, String>,
        report: &mut OpenReport,
    ) -> Result<Journal<D>, JournalError> {
        let open = |name: &str| match dir.open(name) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(JournalError::Damaged {
                file: name.to_owned(),
                offset: 0,
                reason: "file vanished during open".into(),
            }),
            Err(e) => Err(JournalError::io(name, "open")(e)),
        };
        let mut seg = open(&last.name)?;
        let head_file = open(HEAD_NAME)?;
        if mode == Mode::Write && report.cut.is_some() {
            io(&last.name, "truncate", seg.truncate(last.valid_end()))?;
            io(&last.name, "sync", seg.sync())?;
        }
        let mut j = Journal {
            dir,
            seg,
            seg_id: last.id,
            seg_name: last.name.clone(),
            head: head_file,
            generation: head.generation,
            base: first.id,
            durable_len: last.valid_end(),
            next_seq: last.next_seq(),
            pending: Vec::new(),
            pending_first: None,
            pending_records: 0,
            records: report.records,
            bytes: report.bytes,
            poisoned: false,
            read_only: mode == Mode::ReadOnly,
            segment_target: SEGMENT_TARGET,
        };
        if mode == Mode::Write {
            // The head moves first: until it does, the stale segments may still be named by it.
            j.write_head()?;
            for name in stale_segments(segments, first.id, last.id) {
                match j.dir.remove(name) {
                    Ok(()) => report.warnings.push(format!("removed stale journal segment {name}")),
                    Err(e) => report.warnings.push(format!("could not remove stale segment {name}: {e}")),
                }
            }
        }
        Ok(j)
    }

    /// Adds a record to the current group; it counts once [`Journal::commit`] returns.
    /// Returns its sequence number.
    pub fn append(&mut self, e: &impl Entry) -> Result<u64, JournalError> {
        assert!(e.kind() >= FIRST_USER_KIND, "record kind {} is reserved", e.kind());
        self.check_writable()?;
        let start = self.pending.len();
        self.pending.resize(start + FRAME_HEADER, 0);
        e.encode(&mut self.pending);
        let len = self.pending.len() - start - FRAME_HEADER;
        if len > MAX_PAYLOAD {
            self.pending.truncate(start);
            return Err(JournalError::TooLarge { what: "record", len, max: MAX_PAYLOAD });
        }
        if self.pending.len() + FRAME_HEADER + 8 > MAX_GROUP_BYTES {
            self.pending.truncate(start);
            return Err(JournalError::TooLarge { what: "group", len: start + len, max: MAX_GROUP_BYTES });
        }
        let seq = self.next_seq;
        seal_frame(&mut self.pending[start..], seq, e.kind(), e.version());
        self.pending_first.get_or_insert(seq);
        self.pending_records += 1;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Makes every appended record durable, as one atomic group: write, sync, head, sync.
    /// Returns the sequence number of the last record now committed (that of the commit
    /// frame). With nothing appended it writes nothing.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        self.check_writable()?;
        let Some(first) = self.pending_first else {
            return Ok(self.next_seq - 1);
        };
        let seq = self.next_seq;
        push_frame(&mut self.pending, seq, KIND_COMMIT, 1, &first.to_le_bytes());
        self.next_seq += 1;
        // Any failure from here leaves the files in an unknown state: poison until reopened.
        self.poisoned = true;
        io(&self.seg_name, "write", self.seg.write_at(self.durable_len, &self.pending))?;
        io(&self.seg_name, "sync", self.seg.sync())?;
        self.durable_len += self.pending.len() as u64;
        self.write_head()?;
        self.poisoned = false;
        self.records += self.pending_records;
        self.bytes += self.pending.len() as u64;
        self.pending.clear();
        self.pending_first = None;
        self.pending_records = 0;
        if self.durable_len >= self.segment_target {
            self.rotate()?;
        }
        Ok(seq)
    }

    /// Replaces the journal's history with `state`: the records that rebuild the current
    /// state. Written to a new base segment; once it is durable the head moves to it and the
    /// old segments are removed. Appended records not yet committed are refused.
    pub fn snapshot<E: Entry>(&mut self, state: impl IntoIterator<Item = E>) -> Result<(), JournalError> {
        self.check_writable()?;
        assert!(self.pending_first.is_none(), "commit before taking a snapshot");
        let id = self.seg_id + 1;
        let name = name_of(id);
        let first_seq = self.next_seq;
        self.poisoned = true;
        let mut seg = io(&name, "create", self.dir.create(&name))?;
        let header = SegmentHeader { id, first_seq, prev_len: self.durable_len, snapshot: true };
        let mut buf = header.encode().to_vec();
        let mut written = 0u64;
        let mut seq = first_seq;
        let mut count = 0u64;
        for e in state {
            let start = buf.len();
            buf.resize(start + FRAME_HEADER, 0);
            e.encode(&mut buf);
            let len = buf.len() - start - FRAME_HEADER;
            if len > MAX_PAYLOAD {
                return Err(JournalError::TooLarge { what: "record", len, max: MAX_PAYLOAD });
            }
            seal_frame(&mut buf[start..], seq, e.kind(), e.version());
            seq += 1;
            count += 1;
            if buf.len() >= super::READ_WINDOW {
                io(&name, "write", seg.write_at(written, &buf))?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        push_frame(&mut buf, seq, KIND_SNAPSHOT_END, 1, &count.to_le_bytes());
        push_frame(&mut buf, seq + 1, KIND_COMMIT, 1, &first_seq.to_le_bytes());
        io(&name, "write", seg.write_at(written, &buf))?;
        io(&name, "sync", seg.sync())?;
        let old = (self.base, self.seg_id);
        self.seg = seg;
        self.seg_id = id;
        self.seg_name = name;
        self.base = id;
        self.durable_len = written + buf.len() as u64;
        self.next_seq = seq + 2;
        self.write_head()?;
        self.poisoned = false;
        self.records = count;
        self.bytes = self.durable_len;
        for old_id in old.0..=old.1 {
            // A segment left behind is removed at the next open.
            let _ = self.dir.remove(&name_of(old_id));
        }
        Ok(())
    }

    /// Closes the current segment and continues in a new one.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let id = self.seg_id + 1;
        let name = name_of(id);
        self.poisoned = true;
        let mut seg = io(&name, "create", self.dir.create(&name))?;
        let header =
            SegmentHeader { id, first_seq: self.next_seq, prev_len: self.durable_len, snapshot: false };
        io(&name, "write", seg.write_at(0, &header.encode()))?;
        io(&name, "sync", seg.sync())?;
        self.seg = seg;
        self.seg_id = id;
        self.seg_name = name;
        self.durable_len = SEGMENT_HEADER as u64;
        self.write_head()?;
        self.poisoned = false;
        self.bytes += SEGMENT_HEADER as u64;
        Ok(())
    }

    /// Writes and syncs the next head generation.
    fn write_head(&mut self) -> Result<(), JournalError> {
        let slot = HeadSlot {
            generation: self.generation + 1,
            base: self.base,
            segment: self.seg_id,
            durable_len: self.durable_len,
            next_seq: self.next_seq,
        };
        let bytes = slot.encode();
        io(HEAD_NAME, "write", self.head.write_at(HeadSlot::offset(slot.generation), &bytes))?;
        io(HEAD_NAME, "sync", self.head.sync())?;
        self.generation = slot.generation;
        Ok(())
    }

    fn check_writable(&self) -> Result<(), JournalError> {
        if self.read_only {
            Err(JournalError::ReadOnly)
        } else if self.poisoned {
            Err(JournalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Sets the size after which a segment is closed (default [`SEGMENT_TARGET`]); tests use
    /// small segments to exercise rotation.
    pub fn set_segment_target(&mut self, bytes: u64) {
        self.segment_target = bytes.max(SEGMENT_HEADER as u64 + 1);
    }

    /// Sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes appended and not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Committed records and bytes: what replaying the journal now would report
    /// ([`OpenReport::records`], [`OpenReport::bytes`]).
    pub fn committed(&self) -> (u64, u64) {
        (self.records, self.bytes)
    }

    /// Durable length of the current segment.
    pub fn segment_len(&self) -> u64 {
        self.durable_len
    }

    /// The directory.
    pub fn dir(&self) -> &D {
        &self.dir
    }
}

/// Appends a whole frame for `payload` to `buf`.
fn push_frame(buf: &mut Vec<u8>, seq: u64, kind: u16, version: u8, payload: &[u8]) {
    let start = buf.len();
    buf.resize(start + FRAME_HEADER, 0);
    buf.extend_from_slice(payload);
    seal_frame(&mut buf[start..], seq, kind, version);
}
