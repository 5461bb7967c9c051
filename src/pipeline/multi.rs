//! A backup over several targets at once (seed 000; seed 001's multiple streaming): the master
//! job walks the sources first, plans which bytes go to which target ([`crate::plan`]), and
//! runs one sub-job per target, each a whole stream of the session (reader, compressors,
//! writer) that pulls its pieces from the shared [`Coordinator`]. Files over the plan's
//! threshold are cut into segments, each written with a segment header before its metadata.
//!
//! Object ids are fixed by the walk (the n-th entry is object n), so every stream agrees on
//! them, and a piece moved to another stream after a failure keeps its id.
//!
//! Memory: the walk is held whole (one entry per object) because the plan needs every size
//! before the first byte is placed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::bounded;

use super::backup::{
    BackupError, BackupRequest, BackupSummary, Source, StreamJob, StreamSummary, control_loop,
    finish_session, start_session,
};
use super::coord::{Coordinator, Pull};
use super::reader::{ReadError, prefix_path, volume_meta};
use super::writer::{Event, Progress};
use crate::device::Target;
use crate::format::records::{ObjectKind, ObjectMeta, SessionStatus};
use crate::plan::{Balancer, Device, Item, Options, Piece, Plan, plan};
use crate::source::{Placed, SegmentOf, TreeEntry, TreeWalker, WalkOptions};
use crate::store::State;

/// The walked sources and the plan over the targets.
#[derive(Debug)]
pub struct Planned {
    /// Entry `i` is object `i + 1`.
    pub entries: Vec<TreeEntry>,
    /// Entries the walk had to skip.
    pub problems: Vec<String>,
    /// The targets, as the planner saw them.
    pub devices: Vec<Device>,
    /// Which pieces go where.
    pub plan: Plan,
}

/// Walks the sources and plans the job over `targets` (nothing is written).
pub fn make_plan(req: &BackupRequest, targets: &[Box<dyn Target>]) -> Result<Planned, BackupError> {
    let (entries, problems) = walk_all(req)?;
    let items: Vec<Item> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Item { id: i as u64 + 1, size: if has_data(&e.meta) { e.meta.size } else { 0 } })
        .collect();
    let devices: Vec<Device> = targets
        .iter()
        .enumerate()
        .map(|(id, t)| Device { id, capacity: t.free_space(), rate: t.rate() })
        .collect();
    let options = Options { align: req.unit as u64, refine: true, ..Options::default() };
    let mut problems = problems;
    let (plan, devices) = match plan(&items, &devices, &options) {
        Ok(p) => (p, devices),
        // Free space is counted against the bytes before compression; when they do not fit
        // that way they may still fit compressed: plan without limits, and let a target that
        // fills up hand its work on.
        Err(e) if e.is_lack_of_room() => {
            problems.push(format!(
                "the targets' free space is less than the {} bytes to back up before compression \
                 ({e}); planning without space limits: a target that fills up hands its work to \
                 the others",
                items.iter().map(|i| i.size).sum::<u64>()
            ));
            let open: Vec<Device> = devices.iter().map(|d| Device { capacity: None, ..*d }).collect();
            (plan(&items, &open, &options).map_err(BackupError::Plan)?, open)
        }
        Err(e) => return Err(BackupError::Plan(e)),
    };
    Ok(Planned { entries, problems, devices, plan })
}

fn has_data(meta: &ObjectMeta) -> bool {
    matches!(meta.kind, ObjectKind::File | ObjectKind::Volume)
}

/// Every entry of every source, in walk order.
fn walk_all(req: &BackupRequest) -> Result<(Vec<TreeEntry>, Vec<String>), ReadError> {
    let opts = WalkOptions { one_file_system: req.one_file_system };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for s in &req.sources {
        match s {
            Source::Tree { root, prefix } => {
                for item in TreeWalker::new(root, opts)? {
                    match item {
                        Ok(mut e) => {
                            if let Some(p) = prefix {
                                prefix_path(&mut e.meta, p);
                            }
                            if req.incremental.as_ref().is_some_and(|i| i.skip(&e.meta)) {
                                continue;
                            }
                            entries.push(e);
                        }
                        Err(p) => problems.push(p.to_string()),
                    }
                }
            }
            Source::Volume(path) => entries.push(volume_entry(path)?),
            Source::Agent { agent, .. } => {
                let why = "an agent's tree is written to one target".to_owned();
                return Err(ReadError::Agent { agent: agent.clone(), why });
            }
        }
    }
    Ok((entries, problems))
}

/// A raw volume as a walk entry: one object of the device's (or image's) size.
fn volume_entry(path: &std::path::Path) -> Result<TreeEntry, ReadError> {
    let err = |source| ReadError::Volume { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let md = file.metadata().map_err(err)?;
    let meta = volume_meta(path, &file, &md).map_err(err)?;
    let size = meta.size;
    let allocated = if md.is_file() { md.blocks() * 512 } else { size };
    Ok(TreeEntry { meta, source: path.to_owned(), dev: md.dev(), ino: md.ino(), allocated, placed: None })
}

/// The walk entries and how split files were cut, shared by the sub-jobs.
struct Catalogue {
    entries: Vec<TreeEntry>,
    /// (object, offset) of each segment of a split file: its number and the count.
    segments: HashMap<(u64, u64), (u32, u32)>,
}

impl Catalogue {
    fn new(entries: Vec<TreeEntry>, plan: &Plan) -> Catalogue {
        let mut segments = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let id = i as u64 + 1;
            let mut pieces: Vec<Piece> = plan.pieces_of(id).into_iter().map(|(_, p)| p).collect();
            if pieces.len() < 2 || !has_data(&e.meta) {
                continue;
            }
            pieces.sort_by_key(|p| p.offset);
            let count = pieces.len() as u32;
            for (index, p) in pieces.iter().enumerate() {
                segments.insert((id, p.offset), (index as u32, count));
            }
        }
        Catalogue { entries, segments }
    }

    /// The entry a piece reads: the whole object, or one segment of it.
    fn entry(&self, p: Piece) -> TreeEntry {
        let mut e = self.entries[(p.item - 1) as usize].clone();
        let whole = p.offset == 0 && p.len == e.meta.size;
        let segment = (!whole).then(|| {
            let (index, count) = self.segments.get(&(p.item, p.offset)).copied().unwrap_or((0, 1));
            SegmentOf { offset: p.offset, len: p.len, index, count }
        });
        e.placed = Some(Placed { id: p.item, segment });
        e
    }
}

/// Runs a multistream backup: one sub-job (stream) per target.
pub fn run(
    req: &BackupRequest,
    targets: Vec<Box<dyn Target>>,
    store: &mut impl State,
    mut on_progress: impl FnMut(&Progress),
) -> Result<BackupSummary, BackupError> {
    let t0 = Instant::now();
    let planned = make_plan(req, &targets)?;
    let bal = Balancer::new(&planned.plan, &planned.devices).map_err(BackupError::Plan)?;
    let streams =
        u16::try_from(targets.len()).map_err(|_| BackupError::Plan(crate::plan::PlanError::NoDevices))?;
    let (session, info) = start_session(req, store, streams)?;
    let coord = Arc::new(Coordinator::new(bal, targets.len(), req.cancel.clone()));
    let catalogue = Arc::new(Catalogue::new(planned.entries, &planned.plan));
    let progress = Arc::new(Progress::default());
    let (event_tx, events) = bounded::<(u16, Event)>(64 * targets.len());
    let names: Vec<String> = targets.iter().map(|t| t.describe()).collect();
    let mut jobs = Vec::new();
    for (d, target) in targets.into_iter().enumerate() {
        let mut info = info.clone();
        info.stream = d as u16;
        if d > 0 {
            // Stream 0 alone lists the kept files on the media.
            info.kept = None;
        }
        let (coord, catalogue) = (coord.clone(), catalogue.clone());
        let feed = move |reader: &mut super::reader::Reader| {
            reader.add_dealt(move |mut dealer| {
                loop {
                    let more = match coord.pull(d) {
                        Pull::Piece(p) => dealer.add(catalogue.entry(p)),
                        Pull::Sync => dealer.sync(),
                        Pull::End => break,
                    };
                    if !more {
                        return;
                    }
                }
                dealer.finish();
            })
        };
        jobs.push(StreamJob::start(req, target, info, event_tx.clone(), progress.clone(), None, feed));
    }
    drop(event_tx);
    let control =
        control_loop(store, session, &events, &progress, &mut on_progress, Some(&coord), &req.cancel);
    let ended: Vec<_> = jobs.into_iter().map(StreamJob::join).collect();
    let control = control?;
    let job = req.job_number(session);
    summarize((session, job), &names, ended, control, &coord, planned.problems, &progress).and_then(
        |(mut summary, raw, stored)| {
            summary.unchanged = req.incremental.as_ref().map(|i| i.unchanged()).unwrap_or_default();
            finish_session(store, summary, req.incremental.as_ref(), raw, stored, t0)
        },
    )
}

/// The session's outcome from its streams': complete when every piece found a durable home
/// (some streams may have failed and handed their work on), failed otherwise.
fn summarize(
    (session, job): (u64, u64),
    names: &[String],
    ended: Vec<super::backup::StreamEnd>,
    control: super::backup::Controlled,
    coord: &Coordinator,
    mut problems: Vec<String>,
    progress: &Progress,
) -> Result<(BackupSummary, u64, u64), BackupError> {
    let cancelled = coord.cancelled();
    let mut streams = Vec::new();
    let mut reader_error = None;
    for (d, (written, read)) in ended.into_iter().enumerate() {
        let (objects, bytes) = control.per_stream.get(&(d as u16)).copied().unwrap_or_default();
        let error = written.err().map(|e| e.to_string());
        match read {
            Ok(p) => problems.extend(p),
            // A reader stopped by its own writer's failure says nothing new.
            Err(ReadError::Stopped) => {}
            Err(e) => reader_error = Some(format!("stream {d}: {e}")),
        }
        streams.push(StreamSummary { stream: d as u16, target: names[d].clone(), objects, bytes, error });
    }
    for s in &streams {
        if let Some(e) = &s.error {
            problems.push(format!(
                "stream {} on {} failed: {e}; its unfinished work moved to the others",
                s.stream, s.target
            ));
        }
    }
    let error = coord
        .stopped()
        .filter(|_| !cancelled)
        .map(|why| format!("the job could not finish on the remaining devices: {why}"))
        .or(reader_error);
    let (status, error) = match error {
        Some(e) => (SessionStatus::Failed, Some(e)),
        None if cancelled => (SessionStatus::Cancelled, Some(super::backup::CANCELLED.to_owned())),
        None => (SessionStatus::Complete, None),
    };
    let (objects, raw, stored) = control.totals;
    let summary = BackupSummary {
        session,
        job,
        status,
        objects,
        bytes_in: progress.raw.load(Ordering::Relaxed),
        bytes_stored: progress.stored.load(Ordering::Relaxed),
        seconds: 0.0,
        problems,
        error,
        streams,
        moved: coord.moved(),
        unchanged: Default::default(),
    };
    Ok((summary, raw, stored))
}
