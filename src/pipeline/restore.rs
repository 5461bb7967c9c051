//! Restore and verify: the backup path backwards. The catalog says where a session's parts are;
//! a reader thread follows them, one decoder per core checks and decompresses, and the calling
//! thread puts objects back on a file system (restore) or checks them (verify), taking records
//! in order. Every byte read back is checked: record CRCs, every object's length and BLAKE3,
//! and in verify also against the catalog and, with `--compare`, against files on disk.
//!
//! Restoring an incremental session restores the source as it was then: every object of the
//! session's chain is taken from the newest session that holds it ([`restore_sources`]), and
//! the sessions are read one after the other, oldest first, into the same root — the session
//! asked for last, so that its directories get their metadata after everything inside them is
//! in place, and its hard links find files restored from older sessions. Verify checks the
//! session's own objects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, bounded};

use super::QUEUE_DEPTH;
use super::affinity::{allowed_cores, pin_current_thread};
use super::baseline::{IncrementalError, restore_sources};
use super::compare::Comparer;
use super::pool::{Recycler, Reused};
use super::readback::{
    Decoded, Item, PartLoc, Place, RawRecord, Span, StreamError, StreamReader, decode_loop,
};
use super::restore_workers::{FileJob, Workers, add_summaries};
use crate::catalog::{Catalog, SessionKind, StoredObject};
use crate::format::records::{ObjectEnd, ObjectKind, ObjectMeta, PackedEntry, SegmentHeader};
use crate::fsrestore::{FsRestorer, RestoreError, RestoreSummary};
use crate::store::Indexes;
use crate::uring::Ring;

/// Threads creating small files in parallel: creating a file is kernel work that waits on the
/// disk, so more threads than cores keep both busy (on 2 cores, 4 measured best: 2 and 3 left
/// the cores idle, 8 spent more on lock contention than it gained).
const FILE_WORKERS: usize = 4;
/// Free record buffers kept for reuse, per kind (encoded, decoded); each is at most a unit.
const RECYCLE_KEEP: usize = 8;

/// Objects not restored that are named one by one; past this they are counted.
const MAX_NAMED_MISSING: usize = 100_000;

/// What to do with what is read.
#[derive(Debug, Clone)]
pub enum Action {
    /// Recreate the objects under this root.
    Restore(PathBuf),
    /// Check them; with a directory, also compare with the files there.
    Verify(Option<PathBuf>),
    /// Send them to be recreated elsewhere (on a backup agent).
    Remote(RemoteTo),
}

/// Where a remote restore sends what it reads, per session read.
pub trait RemoteSink: Send + Sync {
    /// A session's restore begins: its stored objects (for names and what must come back),
    /// and the ones selected (`None`: all).
    fn begin(
        &self,
        session: u64,
        objects: &[StoredObject],
        selected: Option<&HashSet<u64>>,
    ) -> Result<(), String>;
    /// One record read back, in order.
    fn item(&self, item: Item) -> Result<(), String>;
    /// Every record was sent: how the restore went there.
    fn finish(&self) -> Result<RestoreReport, String>;
}

/// A [`RemoteSink`] to restore to.
#[derive(Clone)]
pub struct RemoteTo(pub Arc<dyn RemoteSink>);

impl std::fmt::Debug for RemoteTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteTo")
    }
}

/// A restore or verify to run.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Session.
    pub session: u64,
    /// Paths to select (an object is selected when its path is one of them or lies below one);
    /// empty: everything.
    pub paths: Vec<Vec<u8>>,
    /// Restore or verify.
    pub action: Action,
}

/// How it went.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Objects restored or verified whole.
    pub objects: u64,
    /// Object bytes read back.
    pub bytes: u64,
    /// Everything that went wrong, each naming the object and where.
    pub failures: Vec<String>,
    /// Differences from the compared directory.
    pub differences: Vec<String>,
    /// What the file system side did (restore).
    pub fs: Option<RestoreSummary>,
    /// Wall time.
    pub seconds: f64,
    /// Sessions read, oldest first: the one asked for, or its chain's when it is incremental.
    pub sessions: Vec<u64>,
    /// Demultiplexing (some agents' objects of a multiplexed session): what was read of the
    /// parts holding them.
    pub demux: Option<DemuxRead>,
}

/// What a demultiplexing restore read, against the bytes in the multiplexed parts it read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxRead {
    /// Bytes read from the media.
    pub read: u64,
    /// Bytes in the parts.
    pub parts: u64,
}

/// Why a restore could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No such session.
    #[error("no session {0} in the catalog")]
    NoSession(u64),
    /// The selection matched nothing.
    #[error("no object of session {session} matches {paths}")]
    NothingSelected {
        /// Session.
        session: u64,
        /// The paths given.
        paths: String,
    },
    /// The catalog's parts do not form a stream.
    #[error("session {session}: {what}")]
    Parts {
        /// Session.
        session: u64,
        /// What is missing.
        what: String,
    },
    /// The restore root cannot be used.
    #[error(transparent)]
    Root(#[from] RestoreError),
    /// The session's per-file index cannot be read.
    #[error("the per-file index of session {session} cannot be read: {why}")]
    Index {
        /// Session.
        session: u64,
        /// What went wrong, and what to do.
        why: String,
    },
    /// An incremental session whose chain cannot be followed.
    #[error(transparent)]
    Chain(#[from] IncrementalError),
    /// The remote end of the restore failed.
    #[error("{why}")]
    Remote {
        /// What went wrong there.
        why: String,
    },
}

struct Plan {
    streams: Vec<StreamPlan>,
    selected: Option<HashSet<u64>>,
}

/// What to read of one stream.
struct StreamPlan {
    stream: u16,
    locs: Vec<PartLoc>,
    spans: Vec<Span>,
    /// Demultiplexing: only these lanes' records are wanted, and the parts read hold this many
    /// bytes in all.
    lanes: Option<(BTreeSet<u64>, u64)>,
}

/// The reads of a multiplexed stream that take only the lanes of `sel` (its selected objects):
/// the runs the catalog recorded for them, each read once however many lanes are wanted.
/// `None` when the stream is not multiplexed or an object lies outside every recorded run.
fn demux_reads(
    session: &crate::catalog::Session,
    stream: u16,
    parts: u32,
    sel: &[&StoredObject],
) -> Option<(Vec<Span>, BTreeSet<u64>, u64)> {
    if sel.is_empty() || !session.is_multiplexed() {
        return None;
    }
    let lanes: BTreeSet<u64> =
        sel.iter().map(|o| super::runs::lane_of(o.id, super::mux::LANE_STRIDE)).collect();
    // Every selected object must start in a part whose runs hold its lane. Objects written
    // after a multiplexed group in the same stream (a local tree, say) carry ids past the
    // group's ranges but lie in no run the writer recorded: such a part is read whole.
    let lane_in_part = |o: &&StoredObject| {
        let lane = super::runs::lane_of(o.id, super::mux::LANE_STRIDE);
        session.part_runs(stream, o.part).is_some_and(|(_, runs)| runs.iter().any(|r| r.lane == lane))
    };
    if lanes.contains(&0) || !sel.iter().all(lane_in_part) {
        return None;
    }
    let mut spans = Vec::new();
    let mut total = 0;
    for part in 0..parts {
        let Some((len, runs)) = session.part_runs(stream, part) else { continue };
        total += len;
        let reads = super::runs::reads(runs, &lanes);
        spans.extend(reads.into_iter().map(|(start, end)| Span {
            part,
            offset: start,
            object: None,
            end: Some(end),
        }));
    }
    Some((spans, lanes, total))
}

fn is_selected(path: &[u8], sel: &[Vec<u8>]) -> bool {
    sel.iter().any(|s| {
        s.as_slice() == b"."
            || path == s.as_slice()
            || (path.starts_with(s) && path.get(s.len()) == Some(&b'/'))
    })
}

/// Every object piece of `session`, from its index, in the order they were stored (by stream,
/// part and position).
fn stored_objects(
    catalog: &Catalog,
    indexes: &Indexes,
    session: u64,
) -> Result<Vec<StoredObject>, PlanError> {
    let index_error = |why: String| PlanError::Index { session, why };
    let entries = indexes.session(catalog, session).map_err(|e| index_error(e.to_string()))?;
    let mut objects = entries.objects().map_err(|e| index_error(e.to_string()))?;
    objects.sort_by_key(|o| (o.stream, o.part, o.position, o.segment_offset));
    Ok(objects)
}

/// Works out which parts to read, from where; `only`, when given, narrows the selection to
/// those objects.
fn plan(
    catalog: &Catalog,
    stored: &[StoredObject],
    req: &RestoreRequest,
    only: Option<&BTreeSet<u64>>,
) -> Result<Plan, PlanError> {
    let session = catalog.session(req.session).ok_or(PlanError::NoSession(req.session))?;
    let bad = |what: String| PlanError::Parts { session: req.session, what };
    let mut streams = Vec::new();
    let sel: Vec<&StoredObject> = stored
        .iter()
        .filter(|o| req.paths.is_empty() || is_selected(&o.path, &req.paths))
        .filter(|o| only.is_none_or(|ids| ids.contains(&o.id)))
        .collect();
    let whole = req.paths.is_empty() && only.is_none();
    if sel.is_empty() && !whole {
        let paths =
            req.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(", ");
        return Err(PlanError::NothingSelected { session: req.session, paths });
    }
    for stream in 0..session.start().streams {
        let mut locs = Vec::new();
        while let Some(p) = session.part(stream, locs.len() as u32) {
            let m = catalog
                .medium(p.medium)
                .ok_or_else(|| bad(format!("part {} is on a medium the catalog does not know", p.part)))?;
            locs.push(PartLoc {
                barcode: m.barcode().to_owned(),
                location: m.info().location.clone(),
                position: p.position,
                file_number: p.file_number,
            });
        }
        if locs.is_empty() {
            continue;
        }
        let mine: Vec<&StoredObject> = sel.iter().filter(|o| o.stream == stream).copied().collect();
        let demux = if whole { None } else { demux_reads(session, stream, locs.len() as u32, &mine) };
        let mut lanes = None;
        // A cut stream has no trailer to stop at: read what the catalog holds, object by object.
        let spans = if whole && !session.is_cut(stream) {
            vec![Span { part: 0, offset: 0, object: None, end: None }]
        } else if let Some((spans, wanted, total)) = demux {
            lanes = Some((wanted, total));
            spans
        } else {
            let mut spans: Vec<Span> = mine
                .iter()
                .map(|o| Span { part: o.part, offset: o.position, object: Some(o.id), end: None })
                .collect();
            spans.sort_by_key(|s| (s.part, s.offset));
            spans.dedup_by_key(|s| (s.part, s.offset));
            spans
        };
        streams.push(StreamPlan { stream, locs, spans, lanes });
    }
    let selected = (!whole).then(|| sel.iter().map(|o| o.id).collect());
    Ok(Plan { streams, selected })
}

/// Runs a restore or verify; see the module docs for incremental sessions.
pub fn run(catalog: &Catalog, indexes: &Indexes, req: &RestoreRequest) -> Result<RestoreReport, PlanError> {
    run_watched(catalog, indexes, req, &mut |_| {})
}

/// What was read back so far, as [`run_watched`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Objects restored or verified whole.
    pub objects: u64,
    /// Object bytes read back.
    pub bytes: u64,
}

/// [`run`], calling `progress` after every record read back (of this session; a chain's
/// counts start again with each session): reading back is progress, and a service watching
/// its data plane must see it.
pub fn run_watched(
    catalog: &Catalog,
    indexes: &Indexes,
    req: &RestoreRequest,
    progress: &mut dyn FnMut(ReadBack),
) -> Result<RestoreReport, PlanError> {
    let session = catalog.session(req.session).ok_or(PlanError::NoSession(req.session))?;
    let incremental = matches!(session.start().kind, SessionKind::Incremental { .. });
    if incremental && matches!(req.action, Action::Restore(_) | Action::Remote(_)) {
        return run_chain(catalog, indexes, req, progress);
    }
    let mut report = run_session(catalog, indexes, req, None, progress)?;
    report.sessions = vec![req.session];
    Ok(report)
}

/// Restores an incremental session: each session of its chain in turn, oldest first, with the
/// objects to take from it.
fn run_chain(
    catalog: &Catalog,
    indexes: &Indexes,
    req: &RestoreRequest,
    progress: &mut dyn FnMut(ReadBack),
) -> Result<RestoreReport, PlanError> {
    let t0 = Instant::now();
    let mut picked = Vec::new();
    for (session, ids) in restore_sources(catalog, indexes, req.session)? {
        let objects = stored_objects(catalog, indexes, session)?;
        let ids: BTreeSet<u64> = objects
            .iter()
            .filter(|o| ids.contains(&o.id) && (req.paths.is_empty() || is_selected(&o.path, &req.paths)))
            .map(|o| o.id)
            .collect();
        if !ids.is_empty() {
            picked.push((session, ids));
        }
    }
    if picked.is_empty() && !req.paths.is_empty() {
        let paths =
            req.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(", ");
        return Err(PlanError::NothingSelected { session: req.session, paths });
    }
    let mut total = RestoreReport::default();
    for (session, ids) in picked {
        let one = RestoreRequest { session, paths: Vec::new(), action: req.action.clone() };
        let r = run_session(catalog, indexes, &one, Some(&ids), progress)?;
        total.objects += r.objects;
        total.bytes += r.bytes;
        // Object ids are the session's own: say which session a failure is about.
        let from =
            |f: String| if session == req.session { f } else { format!("from session {session}: {f}") };
        total.failures.extend(r.failures.into_iter().map(from));
        total.differences.extend(r.differences);
        total.fs = match (total.fs, r.fs) {
            (Some(a), Some(b)) => Some(add_summaries(a, &b)),
            (a, b) => a.or(b),
        };
        total.sessions.push(session);
        if let Some(d) = r.demux {
            let t = total.demux.get_or_insert_default();
            (t.read, t.parts) = (t.read + d.read, t.parts + d.parts);
        }
    }
    total.seconds = t0.elapsed().as_secs_f64();
    Ok(total)
}

/// Restores or verifies one session, or only the objects `only` names of it.
fn run_session(
    catalog: &Catalog,
    indexes: &Indexes,
    req: &RestoreRequest,
    only: Option<&BTreeSet<u64>>,
    progress: &mut dyn FnMut(ReadBack),
) -> Result<RestoreReport, PlanError> {
    let t0 = Instant::now();
    let stored = stored_objects(catalog, indexes, req.session)?;
    let stored = stored.as_slice();
    let plan = plan(catalog, stored, req, only)?;
    let mut sink = match &req.action {
        Action::Remote(to) => {
            to.0.begin(req.session, stored, plan.selected.as_ref())
                .map_err(|why| PlanError::Remote { why })?;
            None
        }
        _ => Some(Sink::new(&req.action, stored, plan.selected.clone())?),
    };
    let demuxed: Vec<bool> = plan.streams.iter().map(|p| p.lanes.is_some()).collect();
    let parts_bytes: u64 = plan.streams.iter().filter_map(|p| p.lanes.as_ref().map(|l| l.1)).sum();
    let (mut lanes, threads, readers) = start_lanes(req.session, plan.streams);
    match (&mut sink, &req.action) {
        (Some(sink), _) => take_all(&mut lanes, sink, progress),
        (None, Action::Remote(to)) => {
            let mut sent = ReadBack::default();
            take_all_with(&mut lanes, &mut |item| {
                if let Decoded::Data { data, .. } = &item.decoded {
                    sent.bytes += data.len() as u64;
                }
                let ok = to.0.item(item).is_ok();
                progress(sent);
                ok
            });
        }
        (None, _) => unreachable!("a sink for every local action"),
    }
    drop(lanes);
    let mut stream_errors = Vec::new();
    let mut demux = demuxed.iter().any(|&d| d).then_some(DemuxRead { read: 0, parts: parts_bytes });
    for (r, demuxed) in readers.into_iter().zip(demuxed) {
        let (error, read) = r.join().expect("reader thread");
        stream_errors.extend(error);
        if let Some(d) = demux.as_mut().filter(|_| demuxed) {
            d.read += read;
        }
    }
    for t in threads {
        t.join().expect("decoder thread");
    }
    let mut report = match (sink, &req.action) {
        (Some(sink), _) => {
            let mut sink = sink;
            sink.report.failures.extend(stream_errors.into_iter().map(|e| format!("reading stopped: {e}")));
            sink.finish()
        }
        (None, Action::Remote(to)) => {
            let mut r = to.0.finish().map_err(|why| PlanError::Remote { why })?;
            r.failures.extend(stream_errors.into_iter().map(|e| format!("reading stopped: {e}")));
            r
        }
        (None, _) => unreachable!("a sink for every local action"),
    };
    report.seconds = t0.elapsed().as_secs_f64();
    report.demux = demux;
    Ok(report)
}

/// Starts every stream's reader and decoders (a multistream session's devices are read in
/// parallel): each has a reader and one decoder per core, and a lane takes each stream's
/// records in order.
#[allow(clippy::type_complexity)]
fn start_lanes(
    session: u64,
    streams: Vec<StreamPlan>,
) -> (Vec<Lane>, Vec<std::thread::JoinHandle<()>>, Vec<std::thread::JoinHandle<(Option<String>, u64)>>) {
    let cores = allowed_cores().unwrap_or_else(|_| vec![0]);
    let data_bufs = Recycler::new(RECYCLE_KEEP);
    let raw_bufs = Recycler::new(RECYCLE_KEEP);
    let mut lanes = Vec::new();
    let mut threads = Vec::new();
    let mut readers = Vec::new();
    for StreamPlan { stream, locs, spans, lanes: demux } in streams {
        let mut ins = Vec::new();
        let mut outs = Vec::new();
        for (i, &core) in cores.iter().enumerate() {
            let (rtx, rrx) = bounded::<RawRecord>(QUEUE_DEPTH);
            let (itx, irx) = bounded::<Item>(QUEUE_DEPTH);
            let buffers = data_bufs.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("decode-{stream}-{i}"))
                    .spawn(move || {
                        let _ = pin_current_thread(core);
                        decode_loop(rrx, itx, buffers)
                    })
                    .expect("spawn decoder"),
            );
            ins.push(rtx);
            outs.push(irx);
        }
        let raw_bufs = raw_bufs.clone();
        readers.push(
            std::thread::Builder::new()
                .name(format!("reader-{stream}"))
                .spawn(move || {
                    let mut r =
                        StreamReader::new(session, stream, locs, raw_bufs).keeping(demux.map(|d| d.0));
                    let error = match r.run(&spans, &ins, 0) {
                        Ok(_) | Err(StreamError::Stopped) => None,
                        Err(e) => Some(e.to_string()),
                    };
                    (error, r.bytes_read())
                })
                .expect("spawn reader"),
        );
        lanes.push(Lane { outs, next: 0, done: false });
    }
    (lanes, threads, readers)
}

/// Recreates a session's objects under `root` from records read elsewhere (a backup agent
/// restoring what the box reads): `stored` are the session's objects, `selected` the ones
/// wanted (`None`: all), `items` the records in order. With `compare`, nothing is made: the
/// records are checked and each object compared with the file under `root` (a verify).
pub fn restore_items(
    root: &std::path::Path,
    compare: bool,
    stored: &[StoredObject],
    selected: Option<HashSet<u64>>,
    items: impl Iterator<Item = Item>,
) -> Result<RestoreReport, PlanError> {
    let t0 = Instant::now();
    let action =
        if compare { Action::Verify(Some(root.to_owned())) } else { Action::Restore(root.to_owned()) };
    let mut sink = Sink::new(&action, stored, selected)?;
    for item in items {
        sink.take(item);
    }
    let mut report = sink.finish();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

impl<'c> Sink<'c> {
    /// A sink for `action` over a session's `stored` objects.
    fn new(
        action: &Action,
        stored: &'c [StoredObject],
        selected: Option<HashSet<u64>>,
    ) -> Result<Sink<'c>, PlanError> {
        let fs = match action {
            Action::Restore(root) => Some(FsRestorer::new(root)?),
            _ => None,
        };
        let compare = match action {
            Action::Verify(Some(dir)) => Some(Comparer::new(dir)),
            _ => None,
        };
        let mut pieces: HashMap<u64, u32> = HashMap::new();
        for o in stored {
            *pieces.entry(o.id).or_default() += 1;
        }
        // An object stored in several pieces was split across streams: each is a segment.
        let segments: HashMap<(u64, u64), &StoredObject> =
            stored.iter().filter(|o| pieces[&o.id] > 1).map(|o| ((o.id, o.segment_offset), o)).collect();
        let objects: HashMap<u64, &StoredObject> = stored.iter().rev().map(|o| (o.id, o)).collect();
        let workers = match action {
            Action::Restore(root) => Some(Workers::start(root, FILE_WORKERS)),
            _ => None,
        };
        Ok(Sink {
            ring: Ring::new()
                .map_err(|e| PlanError::Root(RestoreError::Root { path: "io_uring".into(), source: e }))?,
            fs,
            workers,
            compare,
            objects,
            segments,
            open: HashMap::new(),
            segment_next: HashMap::new(),
            split: HashMap::new(),
            done: HashSet::new(),
            deferred_links: Vec::new(),
            report: RestoreReport::default(),
            selected,
            worker_summary: RestoreSummary::default(),
        })
    }
}

/// One stream's decoded records, in order: decoder `next % n` has the next one.
struct Lane {
    outs: Vec<Receiver<Item>>,
    next: usize,
    done: bool,
}

/// Feeds the sink from every stream as records come, each stream in its own order.
fn take_all(lanes: &mut [Lane], sink: &mut Sink<'_>, progress: &mut dyn FnMut(ReadBack)) {
    take_all_with(lanes, &mut |item| {
        sink.take(item);
        progress(ReadBack { objects: sink.report.objects, bytes: sink.report.bytes });
        true
    });
}

/// Gives `take` every stream's records as they come, each stream in its own order, until
/// every stream ended or `take` says stop.
fn take_all_with(lanes: &mut [Lane], take: &mut dyn FnMut(Item) -> bool) {
    loop {
        let live: Vec<usize> = (0..lanes.len()).filter(|&i| !lanes[i].done).collect();
        if live.is_empty() {
            return;
        }
        let turns: Vec<Receiver<Item>> =
            live.iter().map(|&i| lanes[i].outs[lanes[i].next % lanes[i].outs.len()].clone()).collect();
        let mut sel = Select::new();
        for r in &turns {
            sel.recv(r);
        }
        let op = sel.select();
        let at = op.index();
        let got = op.recv(&turns[at]);
        let l = &mut lanes[live[at]];
        match got {
            Ok(item) => {
                l.next += 1;
                if !take(item) {
                    return;
                }
            }
            // The decoder whose turn it is hung up: the stream has ended.
            Err(_) => l.done = true,
        }
    }
}

/// An object (or one segment of a split one) being read back.
struct OpenObject {
    meta: ObjectMeta,
    file: Option<File>,
    hasher: blake3::Hasher,
    length: u64,
    place: Place,
    /// Offset of the segment, when the object was split across streams.
    segment: Option<u64>,
}

/// A split object being restored: the file its segments share, finished when the last one
/// is whole.
struct Split {
    file: Option<File>,
    /// Segments not yet read whole.
    left: u32,
    /// A segment failed: the file is not finished.
    failed: bool,
}

/// Where restored or verified objects go.
struct Sink<'c> {
    ring: Ring,
    fs: Option<FsRestorer>,
    workers: Option<Workers>,
    compare: Option<Comparer>,
    objects: HashMap<u64, &'c StoredObject>,
    /// Segments of split objects, by (object, offset).
    segments: HashMap<(u64, u64), &'c StoredObject>,
    /// Open objects by (stream, object).
    open: HashMap<(u16, u64), OpenObject>,
    /// The segment header just read on a stream, for the metadata that follows it.
    segment_next: HashMap<(u16, u64), SegmentHeader>,
    split: HashMap<u64, Split>,
    done: HashSet<u64>,
    /// Hard links read before their target (it is in another stream): made at the end.
    deferred_links: Vec<(u64, ObjectMeta, Place)>,
    report: RestoreReport,
    selected: Option<HashSet<u64>>,
    worker_summary: RestoreSummary,
}

impl Sink<'_> {
    fn name(&self, id: u64) -> String {
        self.objects.get(&id).map_or_else(
            || format!("object {id}"),
            |o| format!("{} (object {id})", String::from_utf8_lossy(&o.path)),
        )
    }

    fn wanted(&self, id: u64) -> bool {
        self.selected.as_ref().is_none_or(|s| s.contains(&id))
    }

    fn fail(&mut self, what: String) {
        self.report.failures.push(what);
    }

    fn take(&mut self, item: Item) {
        let s = item.place.stream;
        match item.decoded {
            Decoded::Segment(id, h) if self.wanted(id) => {
                self.segment_next.insert((s, id), h);
            }
            Decoded::Meta(id, meta) if self.wanted(id) => self.begin(id, meta, item.place),
            Decoded::Data { id, offset, data } if self.open.contains_key(&(s, id)) => {
                self.data((s, id), offset, &data)
            }
            Decoded::End(id, end) if self.open.contains_key(&(s, id)) => self.end((s, id), end),
            Decoded::Pack { entries, data } => self.pack(entries, Arc::new(data), &item.place),
            Decoded::Bad(e) => {
                let near = self.open.keys().map(|&(_, id)| self.name(id)).collect::<Vec<_>>().join(", ");
                let near = if near.is_empty() { String::new() } else { format!(" (in {near})") };
                self.fail(format!("damaged record on {}{near}: {e}", item.place));
            }
            // Records of objects not selected or already failed.
            _ => {}
        }
    }

    fn pack(&mut self, entries: Vec<(PackedEntry, Range<usize>, bool)>, data: Arc<Reused>, place: &Place) {
        for (entry, range, ok) in entries {
            let id = entry.object_id;
            if !self.wanted(id) {
                continue;
            }
            if !ok {
                let n = self.name(id);
                self.fail(format!("{n} on {place}: contents do not match their digest"));
                continue;
            }
            if let Some(w) = &mut self.workers {
                self.report.failures.extend(w.drain(&mut self.done, &mut self.report.objects));
                if entry.meta.kind == ObjectKind::File {
                    self.report.bytes += entry.length;
                    w.send(FileJob { id, meta: entry.meta, data: data.clone(), range });
                    continue;
                }
                if entry.meta.kind == ObjectKind::Hardlink {
                    // The file it names may still be with a worker.
                    self.report.failures.extend(w.wait_all(&mut self.done, &mut self.report.objects));
                }
            }
            let key = (place.stream, id);
            self.begin(id, entry.meta, place.clone());
            self.data(key, 0, &data[range]);
            self.end(key, ObjectEnd { length: entry.length, digest: entry.digest });
        }
    }

    fn begin(&mut self, id: u64, meta: ObjectMeta, place: Place) {
        let key = (place.stream, id);
        let segment = self.segment_next.remove(&key);
        if !self.objects.contains_key(&id) {
            // Records of an object the catalog does not hold (a cancelled job's last one, or
            // one whose stream failed before it was durable): never whole, never restored.
            return;
        }
        // A volume comes back as an image file named by its device path under the root.
        let meta =
            if meta.kind == ObjectKind::Volume && self.fs.is_some() { volume_image(meta) } else { meta };
        let file = match segment {
            Some(h) => match self.split_file(id, &meta, h.count) {
                Ok(f) => f,
                Err(e) => {
                    self.fail(format!("{}: not restored: {e}", self.name(id)));
                    return;
                }
            },
            None => match self.fs.as_mut().map(|fs| fs.create(&meta)) {
                None => None,
                Some(Ok(f)) => f,
                Some(Err(RestoreError::HardlinkTarget { .. })) if meta.kind == ObjectKind::Hardlink => {
                    // Its file may come in another stream: try again at the end.
                    self.deferred_links.push((id, meta, place));
                    return;
                }
                Some(Err(e)) => {
                    self.fail(format!("{}: not restored: {e}", self.name(id)));
                    return;
                }
            },
        };
        if let Some(c) = &mut self.compare
            && segment.is_none_or(|h| h.index == 0)
        {
            c.metadata(&meta);
        }
        let open = OpenObject {
            meta,
            file,
            hasher: blake3::Hasher::new(),
            length: 0,
            place,
            segment: segment.map(|h| h.offset),
        };
        self.open.insert(key, open);
    }

    /// The file a segment of split object `id` goes into: made by the first segment read,
    /// shared by the others.
    fn split_file(&mut self, id: u64, meta: &ObjectMeta, count: u32) -> Result<Option<File>, RestoreError> {
        if let Some(s) = self.split.get(&id) {
            return Ok(match &s.file {
                Some(f) => Some(f.try_clone().map_err(|source| RestoreError::Create {
                    path: PathBuf::from(String::from_utf8_lossy(&meta.path).into_owned()),
                    source,
                })?),
                None => None,
            });
        }
        let file = match &mut self.fs {
            Some(fs) => fs.create(meta)?,
            None => None,
        };
        let shared = match &file {
            Some(f) => Some(f.try_clone().map_err(|source| RestoreError::Create {
                path: PathBuf::from(String::from_utf8_lossy(&meta.path).into_owned()),
                source,
            })?),
            None => None,
        };
        self.split.insert(id, Split { file: shared, left: count, failed: false });
        Ok(file)
    }

    fn data(&mut self, key: (u16, u64), offset: u64, data: &[u8]) {
        let Some(o) = self.open.get_mut(&key) else {
            return;
        };
        o.hasher.update(data);
        o.length += data.len() as u64;
        self.report.bytes += data.len() as u64;
        if let Some(f) = &o.file
            && let Err(e) = self.ring.write_at(f, offset, data)
        {
            let what = format!("{}: writing failed: {e}", self.name(key.1));
            self.drop_open(key);
            self.fail(what);
            return;
        }
        if let Some(c) = &mut self.compare {
            c.data(&o.meta, offset, data);
        }
    }

    /// Gives up on an open object (a split one is then not finished either).
    fn drop_open(&mut self, key: (u16, u64)) {
        if let Some(o) = self.open.remove(&key)
            && o.segment.is_some()
            && let Some(s) = self.split.get_mut(&key.1)
        {
            s.failed = true;
        }
    }

    fn end(&mut self, key: (u16, u64), end: ObjectEnd) {
        let id = key.1;
        let Some(o) = self.open.remove(&key) else {
            return;
        };
        let digest = *o.hasher.finalize().as_bytes();
        let name = self.name(id);
        let fail_split = |sink: &mut Self| {
            if let Some(s) = o.segment.and_then(|_| sink.split.get_mut(&id)) {
                s.failed = true;
            }
        };
        if o.length != end.length || digest != end.digest {
            fail_split(self);
            self.fail(format!(
                "{name} read from {}: contents do not match the digest written with them",
                o.place
            ));
            return;
        }
        let catalog = match o.segment {
            Some(off) => self.segments.get(&(id, off)),
            None => self.objects.get(&id),
        };
        let catalog_digest = catalog.map(|s| s.digest).filter(|d| *d != [0; 32]);
        if catalog_digest.is_some_and(|d| d != digest) {
            fail_split(self);
            self.fail(format!(
                "{name} read from {}: contents differ from what the catalog recorded",
                o.place
            ));
            return;
        }
        if o.segment.is_some() {
            self.segment_done(id, o.meta, o.file);
            return;
        }
        if let (Some(fs), Some(file)) = (&mut self.fs, o.file)
            && let Err(e) = fs.finish_file(file, &o.meta)
        {
            self.fail(format!("{name}: {e}"));
            return;
        }
        if let Some(c) = &mut self.compare {
            c.end(&o.meta, o.length);
        }
        self.done.insert(id);
        self.report.objects += 1;
    }

    /// One segment of a split object is whole; the last one finishes the file.
    fn segment_done(&mut self, id: u64, meta: ObjectMeta, file: Option<File>) {
        drop(file);
        let Some(s) = self.split.get_mut(&id) else {
            return;
        };
        s.left = s.left.saturating_sub(1);
        if s.left > 0 || s.failed {
            return;
        }
        let s = self.split.remove(&id).expect("present above");
        if let (Some(fs), Some(file)) = (&mut self.fs, s.file)
            && let Err(e) = fs.finish_file(file, &meta)
        {
            let name = self.name(id);
            self.fail(format!("{name}: {e}"));
            return;
        }
        if let Some(c) = &mut self.compare {
            c.end(&meta, meta.size);
        }
        self.done.insert(id);
        self.report.objects += 1;
    }

    fn finish(mut self) -> RestoreReport {
        if let Some(w) = self.workers.take() {
            let (failures, summary) = w.finish(&mut self.done, &mut self.report.objects);
            self.report.failures.extend(failures);
            self.worker_summary = summary;
        }
        for ((_, id), o) in std::mem::take(&mut self.open) {
            let n = self.name(id);
            self.fail(format!("{n}: its end was never read (from {})", o.place));
        }
        for (id, meta, place) in std::mem::take(&mut self.deferred_links) {
            let key = (place.stream, id);
            self.begin(id, meta, place);
            self.end(key, ObjectEnd { length: 0, digest: *blake3::hash(b"").as_bytes() });
        }
        for (id, meta, place) in std::mem::take(&mut self.deferred_links) {
            let target = meta
                .hardlink
                .as_deref()
                .map_or_else(String::new, |t| String::from_utf8_lossy(t).into_owned());
            let n = self.name(id);
            self.fail(format!(
                "{n} (from {place}): not restored: the file it links to, {target}, was not restored"
            ));
        }
        // Every object that did not come back is named, whatever else went wrong.
        let mut missing: Vec<u64> =
            self.objects.keys().copied().filter(|id| self.wanted(*id) && !self.done.contains(id)).collect();
        missing.sort_unstable();
        let named: HashSet<u64> = self.report.failures.iter().flat_map(|f| object_ids(f)).collect();
        for &id in missing.iter().take(MAX_NAMED_MISSING) {
            if !named.contains(&id) {
                let n = self.name(id);
                self.fail(format!("{n}: not restored (its records were not read back whole)"));
            }
        }
        if missing.len() > MAX_NAMED_MISSING {
            let more = missing.len() - MAX_NAMED_MISSING;
            self.fail(format!("… and {more} more objects not restored"));
        }
        if let Some(fs) = self.fs.take() {
            match fs.finish() {
                Ok(s) => self.report.fs = Some(add_summaries(s, &self.worker_summary)),
                Err(e) => self.report.failures.push(format!("setting directory metadata: {e}")),
            }
        }
        if let Some(c) = self.compare.take() {
            self.report.differences = c.finish();
        }
        self.report
    }
}

/// Object ids a failure message names, as "(object N)".
fn object_ids(msg: &str) -> impl Iterator<Item = u64> + '_ {
    msg.match_indices("(object ").filter_map(move |(i, m)| {
        let rest = &msg[i + m.len()..];
        rest[..rest.find(')')?].parse().ok()
    })
}

/// The metadata of the image file a volume is restored as: a regular file at the volume's path
/// without its leading '/', readable by its owner only.
fn volume_image(mut meta: ObjectMeta) -> ObjectMeta {
    let trimmed: Vec<u8> = meta.path.iter().copied().skip_while(|&b| b == b'/').collect();
    meta.path = if trimmed.is_empty() { b"volume.img".to_vec() } else { trimmed };
    meta.kind = ObjectKind::File;
    meta.mode = libc::S_IFREG | 0o600;
    meta.rdev = 0;
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{
        Catalog, LaneRun, MediumAdded, MediumKind, PartRuns, Record, SessionKind, SessionMode, SessionPart,
        SessionStarted,
    };
    use crate::format::records::ObjectKind;
    use crate::pipeline::mux::LANE_STRIDE;

    const MEDIUM: [u8; 16] = [7; 16];

    fn object(id: u64, part: u32) -> StoredObject {
        StoredObject {
            id,
            path: format!("o{id}").into_bytes(),
            kind: ObjectKind::File,
            size: 10,
            mtime: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            segment_offset: 0,
            length: 10,
            stream: 0,
            part,
            position: 0,
            digest: [0; 32],
        }
    }

    /// A session whose part 0 holds lanes 1 and 2 (runs) and, after them, records of a local
    /// tree written next in the same stream; part 1 holds that tree only (no runs).
    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        let records = [
            Record::MediumAdded(MediumAdded {
                medium: MEDIUM,
                barcode: "CFR001".into(),
                pool: "default".into(),
                kind: MediumKind::Tape,
                block_size: 4096,
                capacity: 1 << 40,
                created: 1,
                location: "vlib".into(),
            }),
            Record::SessionStarted(SessionStarted {
                session: 1,
                job: 0,
                host: "box".into(),
                source: "agent:a:/srv agent:b:/srv /etc".into(),
                started: 2,
                streams: 1,
                mode: SessionMode::Files,
                kind: SessionKind::Full,
                source_key: [0; 32],
            }),
            Record::SessionPart(SessionPart {
                session: 1,
                stream: 0,
                part: 0,
                medium: MEDIUM,
                position: 0,
                file_number: 0,
            }),
            Record::SessionPart(SessionPart {
                session: 1,
                stream: 0,
                part: 1,
                medium: MEDIUM,
                position: 900,
                file_number: 1,
            }),
            Record::PartRuns(PartRuns {
                session: 1,
                stream: 0,
                part: 0,
                len: 900,
                runs: vec![
                    LaneRun { lane: LANE_STRIDE, start: 0, end: 300 },
                    LaneRun { lane: 2 * LANE_STRIDE, start: 300, end: 600 },
                ],
            }),
        ];
        for r in &records {
            c.apply(r).unwrap();
        }
        c
    }

    #[test]
    fn a_lane_reads_its_runs_and_an_object_in_no_run_reads_its_part_whole() {
        let c = catalog();
        let session = c.session(1).unwrap();
        let a = object(LANE_STRIDE + 3, 0);
        let (spans, lanes, total) = demux_reads(session, 0, 2, &[&a]).expect("lane 1 has its runs");
        assert_eq!(lanes, BTreeSet::from([LANE_STRIDE]));
        assert_eq!(total, 900);
        assert_eq!(spans.iter().map(|s| (s.part, s.offset, s.end)).collect::<Vec<_>>(), [(0, 0, Some(300))]);
        // The local tree's first object: its id lies past the lanes' ranges, in no run.
        let local = object(3 * LANE_STRIDE, 0);
        assert!(demux_reads(session, 0, 2, &[&local]).is_none());
        assert!(demux_reads(session, 0, 2, &[&a, &local]).is_none());
        // One in a part without runs: read whole too.
        assert!(demux_reads(session, 0, 2, &[&object(3 * LANE_STRIDE + 1, 1)]).is_none());
    }
}
