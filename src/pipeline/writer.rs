//! The stream writer: puts encoded records on a target in order, opens and closes session
//! parts (at checkpoints, when a medium fills, at the end), builds the session index, and tells
//! the control thread what became durable.
//!
//! Durability: objects are reported in [`Event::Durable`] only after the part holding their
//! last record was closed by [`Target::end_part`] (synced). The control thread journals them
//! then; a crash loses at most the objects since the last checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;

use super::baseline::Incremental;
use super::runs::RunsBuilder;
use super::{Encoded, EncodedBytes, Track};
use crate::catalog::{LaneRun, StoredObject};
use crate::device::{DeviceError, Mounted, PartStart, Target};
use crate::format::records::{
    Continuation, Index, IndexEntry, Kept, PartRef, SessionHeader, SessionKind, SessionStatus, Trailer,
};
use crate::format::{
    FormatError, HEADER_LEN, MAX_INDEX_LEN, MAX_META_LEN, compress_scratch_len, encode_index, encode_kept,
    encode_meta,
};

/// Bytes written between checkpoints (a part closes and the objects in it are journaled).
pub const CHECKPOINT_BYTES: u64 = 1 << 30;
/// Objects finished between checkpoints.
pub const CHECKPOINT_OBJECTS: usize = 16_384;
/// How often a stream checkpoints: objects and bytes. [`CHECKPOINT_OBJECTS`] and
/// [`CHECKPOINT_BYTES`], unless `$COFFER_CHECKPOINT` says `OBJECTS,BYTES` (the crash tests
/// checkpoint often, so that a kill lands between many commits; a box has no reason to).
fn checkpoint_every() -> (usize, u64) {
    static EVERY: std::sync::OnceLock<(usize, u64)> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| {
        let set = std::env::var("COFFER_CHECKPOINT").ok().and_then(|v| {
            let (o, b) = v.split_once(',')?;
            Some((o.trim().parse::<usize>().ok()?.max(1), b.trim().parse::<u64>().ok()?.max(1)))
        });
        set.unwrap_or((CHECKPOINT_OBJECTS, CHECKPOINT_BYTES))
    })
}

/// Index entries per index record (and a byte budget under [`MAX_INDEX_LEN`]).
const INDEX_BATCH: usize = 8_192;
const INDEX_BYTES: usize = MAX_INDEX_LEN / 2;

/// What the writer tells the control thread, in order.
#[derive(Debug)]
pub enum Event {
    /// A medium was mounted (journal it if new).
    Medium(Mounted),
    /// A part was opened.
    Part {
        /// Stream.
        stream: u16,
        /// Part number.
        part: u32,
        /// Where it starts.
        start: PartStart,
    },
    /// These objects are durable; the medium is used up to `used` bytes.
    Durable {
        /// Objects whose last record is now durable.
        objects: Vec<StoredObject>,
        /// Medium written.
        medium: [u8; 16],
        /// Bytes of it in use.
        used: u64,
        /// The part that closed, when it holds multiplexed records: its number, length and
        /// where its lanes lie.
        runs: Option<(u32, u64, Vec<LaneRun>)>,
    },
    /// The medium is full; the stream continues on the next.
    MediumFull([u8; 16]),
    /// Parts in these position ranges of a ring medium were overwritten.
    Evicted {
        /// The medium.
        medium: [u8; 16],
        /// `[start, end)` position ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// A sync point was reached: everything before it is durable (and reported).
    Synced,
    /// The stream failed (sent by the writer thread, last).
    Failed(String),
    /// The stream ended cleanly (sent by the writer thread, last).
    Closed,
}

/// Events, each with the stream that sent it.
pub type Events = Sender<(u16, Event)>;

/// Counters the control thread reads for progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Object bytes read and written.
    pub raw: AtomicU64,
    /// Bytes written to the target.
    pub stored: AtomicU64,
    /// Objects finished.
    pub objects: AtomicU64,
}

/// Fixed facts of the session, for its headers and trailer.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id.
    pub session: u64,
    /// Job id.
    pub job: u64,
    /// Host name.
    pub host: String,
    /// Source, for people.
    pub source: String,
    /// Start time.
    pub started: u64,
    /// This writer's stream.
    pub stream: u16,
    /// Streams in the session.
    pub streams: u16,
    /// Full or incremental (on which session).
    pub kind: SessionKind,
    /// Which roots the session reads.
    pub source_key: [u8; 32],
    /// The incremental backup whose list of kept files this stream writes at its end when the
    /// session completes: stream 0's, `None` on the others and on full sessions. The list is
    /// whole by then: the walk that fills it ends before the stream's input does.
    pub kept: Option<Incremental>,
}

/// Writes one stream of a session.
pub struct StreamWriter {
    target: Box<dyn Target>,
    info: SessionInfo,
    events: Events,
    progress: Arc<Progress>,
    medium: Mounted,
    part: u32,
    part_start: PartStart,
    /// Bytes written in the current part.
    part_len: u64,
    /// Sequence number the next object record carries (session records carry it too).
    next_seq: u64,
    starts: HashMap<u64, (u32, u64)>,
    pending: Vec<StoredObject>,
    index: Vec<IndexEntry>,
    since_checkpoint: u64,
    objects: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    scratch: Vec<u8>,
    out_pool: super::pool::Pool,
    /// Where the lanes of the current part lie (multiplexed records only).
    runs: RunsBuilder,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter").field("target", &self.target.describe()).finish_non_exhaustive()
    }
}

impl StreamWriter {
    /// Mounts a medium and opens the stream's first part.
    pub fn start(
        mut target: Box<dyn Target>,
        info: SessionInfo,
        events: Events,
        progress: Arc<Progress>,
        out_pool: super::pool::Pool,
    ) -> Result<StreamWriter, DeviceError> {
        let medium = target.mount()?;
        let _ = events.send((info.stream, Event::Medium(medium.clone())));
        let part_start = target.begin_part()?;
        let mut w = StreamWriter {
            target,
            info,
            events,
            progress,
            medium,
            part: 0,
            part_start,
            part_len: 0,
            next_seq: 1,
            starts: HashMap::new(),
            pending: Vec::new(),
            index: Vec::new(),
            since_checkpoint: 0,
            objects: 0,
            raw_bytes: 0,
            stored_bytes: 0,
            scratch: vec![0u8; compress_scratch_len(MAX_INDEX_LEN)],
            out_pool,
            runs: RunsBuilder::default(),
        };
        w.open_part(None)?;
        Ok(w)
    }

    /// Announces the part just begun and writes its header.
    fn open_part(&mut self, continues: Option<PartRef>) -> Result<(), DeviceError> {
        self.emit(Event::Part { stream: self.info.stream, part: self.part, start: self.part_start });
        let header = SessionHeader {
            session_id: self.info.session,
            job_id: self.info.job,
            host: self.info.host.clone(),
            started: self.info.started,
            source: self.info.source.clone(),
            part: self.part,
            stream: self.info.stream,
            streams: self.info.streams,
            continues,
            kind: self.info.kind,
            source_key: self.info.source_key,
        };
        self.session_record(&header)
    }

    /// Encodes and writes a session-level record (not numbered).
    fn session_record<T: crate::format::records::Payload>(&mut self, p: &T) -> Result<(), DeviceError> {
        let mut buf = vec![0u8; HEADER_LEN + MAX_META_LEN];
        let n = encode_meta(0, self.next_seq, p, &mut buf).expect("session records are valid");
        self.put(&buf[..n])
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        self.target.write(bytes)?;
        self.report_evictions();
        self.part_len += bytes.len() as u64;
        self.stored_bytes += bytes.len() as u64;
        self.progress.stored.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Room a part needs at its end: a continuation record and a block of padding.
    fn end_reserve(&self) -> u64 {
        (HEADER_LEN + MAX_META_LEN + self.target.block_size()) as u64
    }

    fn emit(&self, ev: Event) {
        // The control thread outlives the writers; a send fails only when it stopped on an
        // error of its own, which it reports.
        let _ = self.events.send((self.info.stream, ev));
    }

    /// Writes the next record of the stream (or, for a sync point, makes everything durable).
    pub fn write(&mut self, rec: Encoded) -> Result<(), DeviceError> {
        if matches!(rec.track, Track::Sync) {
            self.checkpoint()?;
            self.emit(Event::Synced);
            return Ok(());
        }
        let len = rec.bytes.as_slice().len() as u64;
        if self.target.remaining() < len + self.end_reserve() {
            if self.medium.capacity < len + 2 * self.end_reserve() {
                return Err(DeviceError::Full {
                    what: self.target.describe(),
                    detail: format!("a record of {len} bytes does not fit on an empty medium"),
                });
            }
            self.change_medium()?;
        }
        let position = self.part_len;
        self.put(rec.bytes.as_slice())?;
        self.runs.record(rec.lane, position, position + len);
        self.next_seq += 1;
        self.raw_bytes += rec.raw;
        self.progress.raw.fetch_add(rec.raw, Ordering::Relaxed);
        self.since_checkpoint += len;
        match rec.track {
            Track::Nothing => {}
            Track::Starts(id) => {
                self.starts.insert(id, (self.part, position));
            }
            Track::Ends(f) => {
                let at = self.starts.remove(&f.id).unwrap_or((self.part, position));
                self.finished(*f, at);
            }
            Track::Packed(objs) => {
                for f in objs {
                    self.finished(f, (self.part, position));
                }
            }
            Track::Sync => unreachable!("sync points are handled above"),
        }
        if let EncodedBytes::Pooled(buf, _) = rec.bytes {
            self.out_pool.give(buf);
        }
        let (objects, bytes) = checkpoint_every();
        if self.since_checkpoint >= bytes || self.pending.len() >= objects {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn finished(&mut self, mut f: StoredObject, (part, position): (u32, u64)) {
        self.objects += 1;
        self.progress.objects.fetch_add(1, Ordering::Relaxed);
        (f.stream, f.part, f.position) = (self.info.stream, part, position);
        self.index.push(IndexEntry {
            object_id: f.id,
            path: f.path.clone(),
            kind: f.kind,
            size: f.size,
            mtime: f.mtime,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
            segment_offset: f.segment_offset,
            length: f.length,
            stream: f.stream,
            part,
            position,
        });
        self.pending.push(f);
    }

    /// Closes the current part with a continuation (to `next_medium`, or this medium when
    /// `None`), making everything in it durable.
    fn close_continuing(&mut self, next_medium: Option<String>) -> Result<(), DeviceError> {
        let cont = Continuation {
            session_id: self.info.session,
            part: self.part,
            next_part: self.part + 1,
            next_medium: Some(next_medium.unwrap_or_else(|| self.medium.label.barcode.clone())),
            records: self.next_seq - 1,
        };
        self.session_record(&cont)?;
        self.close_part()
    }

    /// Tells the control thread about parts a ring medium overwrote.
    fn report_evictions(&mut self) {
        let ranges = self.target.take_evicted();
        if !ranges.is_empty() {
            self.emit(Event::Evicted { medium: self.medium.label.medium, ranges });
        }
    }

    fn close_part(&mut self) -> Result<(), DeviceError> {
        self.target.end_part()?;
        self.report_evictions();
        let used = self.part_start.position + self.part_len;
        let objects = std::mem::take(&mut self.pending);
        let runs = self.runs.take_part().map(|runs| (self.part, self.part_len, runs));
        self.emit(Event::Durable { objects, medium: self.medium.label.medium, used, runs });
        self.since_checkpoint = 0;
        Ok(())
    }

    /// Ends the part here and goes on in a new one on the same medium.
    pub fn checkpoint(&mut self) -> Result<(), DeviceError> {
        self.close_continuing(None)?;
        self.next_part()
    }

    fn next_part(&mut self) -> Result<(), DeviceError> {
        let prev = PartRef { medium: self.medium.label.medium, part: self.part };
        self.part += 1;
        self.part_start = self.target.begin_part()?;
        self.part_len = 0;
        self.open_part(Some(prev))
    }

    fn change_medium(&mut self) -> Result<(), DeviceError> {
        // The next medium is chosen after this part closes; the continuation names none.
        let cont = Continuation {
            session_id: self.info.session,
            part: self.part,
            next_part: self.part + 1,
            next_medium: None,
            records: self.next_seq - 1,
        };
        self.session_record(&cont)?;
        self.close_part()?;
        if !self.target.is_ring() {
            self.emit(Event::MediumFull(self.medium.label.medium));
        }
        let prev = PartRef { medium: self.medium.label.medium, part: self.part };
        self.medium = self.target.next_medium()?;
        self.report_evictions();
        self.emit(Event::Medium(self.medium.clone()));
        self.part += 1;
        self.part_start = self.target.begin_part()?;
        self.part_len = 0;
        self.open_part(Some(prev))
    }

    /// Writes the list of kept files (a complete incremental session's stream 0), the index and
    /// the trailer, and closes the last part. Returns the trailer.
    pub fn finish(mut self, status: SessionStatus, ended: u64) -> Result<Trailer, DeviceError> {
        let kept_records = match self.info.kept.take() {
            Some(inc) if status == SessionStatus::Complete => self.kept_records(&inc)?,
            _ => 0,
        };
        let index = std::mem::take(&mut self.index);
        let mut records = 0u32;
        for entries in list_batches(index, |e| e.path.len() + 48) {
            let seq = self.next_seq;
            self.listing_record(|out| encode_index(seq, &Index { entries }, out))?;
            records += 1;
        }
        let trailer = Trailer {
            session_id: self.info.session,
            part: self.part,
            objects: self.objects,
            records: self.next_seq - 1,
            raw_bytes: self.raw_bytes,
            stored_bytes: self.stored_bytes,
            ended,
            status,
            index_records: records,
            kept_records,
        };
        self.session_record(&trailer)?;
        self.close_part()?;
        Ok(trailer)
    }

    /// Writes the files `inc` kept in records like the index's; returns how many records.
    fn kept_records(&mut self, inc: &Incremental) -> Result<u32, DeviceError> {
        let mut records = 0u32;
        let seq = self.next_seq;
        for batch in list_batches(inc.kept(), |p| p.len() + 8) {
            let kept = Kept { paths: batch.into_iter().map(serde_bytes::ByteBuf::from).collect() };
            self.listing_record(|out| encode_kept(seq, &kept, out))?;
            records += 1;
        }
        Ok(records)
    }

    /// Encodes a session-level list record into the scratch buffer and writes it, on the next
    /// medium when it does not fit on this one.
    fn listing_record(
        &mut self,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, FormatError>,
    ) -> Result<(), DeviceError> {
        let n = encode(&mut self.scratch).expect("list records are built within their limits");
        if self.target.remaining() < n as u64 + self.end_reserve() {
            self.change_medium()?;
        }
        let bytes = std::mem::take(&mut self.scratch);
        let r = self.put(&bytes[..n]);
        self.scratch = bytes;
        r
    }

    /// Bytes stored so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }
}

/// Splits a session-level list (index entries, kept paths) into records of at most
/// [`INDEX_BATCH`] items and about [`INDEX_BYTES`] bytes, `cost` estimating an item's.
fn list_batches<T>(items: Vec<T>, cost: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        bytes += cost(&item);
        batch.push(item);
        if batch.len() == INDEX_BATCH || bytes >= INDEX_BYTES {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}
