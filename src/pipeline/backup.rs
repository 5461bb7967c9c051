//! Running a backup: the data-plane threads (reader, one pinned compressor per core, writer)
//! and, on the calling thread, the control loop that journals what the writer reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

use super::affinity::{allowed_cores, pin_current_thread};
use super::baseline::{Incremental, IncrementalError, SourceKey, Unchanged};
use super::coord::Coordinator;
use super::mux::LaneSource;
use super::pool::Pool;
use super::reader::{ReadError, Reader};
use super::spool::{Drainer, SpoolSpec};
use super::writer::{Event, Events, Progress, SessionInfo, StreamWriter};
use super::{Cancel, Encoded, EncodedBytes, QUEUE_DEPTH, Unit, compress};
use crate::catalog::{
    MediumAdded, MediumRemoved, MediumState, MediumUpdated, Record, SessionFinished, SessionKind,
    SessionMode, SessionPart, SessionPruned, SessionStarted, StreamCut, object_batches, run_batches,
};
use crate::device::{DeviceError, Mounted, Target};
use crate::format::compress_scratch_len;
use crate::format::records::SessionStatus;
use crate::source::WalkOptions;
use crate::store::{State, StoreError};

/// What to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file tree; `prefix` is put before its paths when several sources share a session.
    Tree {
        /// Its root.
        root: PathBuf,
        /// Path prefix in the session.
        prefix: Option<Vec<u8>>,
    },
    /// A raw volume: block device or image file, one object.
    Volume(PathBuf),
    /// A tree on a backup agent, read there ([`super::remote`]).
    Agent {
        /// The agent's name.
        agent: String,
        /// The tree's root on the agent (absolute).
        root: String,
        /// Path prefix in the session.
        prefix: Option<Vec<u8>>,
    },
}

/// A backup to run.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Description of the sources for people.
    pub description: String,
    /// Unit size.
    pub unit: usize,
    /// Job the session belongs to (0: run by hand).
    pub job: u64,
    /// Stay on the file system of each tree's root.
    pub one_file_system: bool,
    /// Compress the data (LZ4); off stores it as read.
    pub compress: bool,
    /// Agents compress their trees themselves (with `compress`): the box checks and writes
    /// their records as they come.
    pub compress_on_agent: bool,
    /// Cancels the job (and every sub-job of a multistream one).
    pub cancel: Cancel,
    /// Which roots the sources are, recorded so that a later incremental backup finds this one.
    pub source_key: SourceKey,
    /// Back up only regular files new or changed since this baseline (and every other object);
    /// `None`: a full backup.
    pub incremental: Option<Incremental>,
    /// The connected backup agents, for [`Source::Agent`] sources (the service's).
    pub agents: Option<Arc<dyn super::remote::Agents>>,
}

impl BackupRequest {
    /// The master job's number for session `session`: the job's id, or the session's when
    /// the backup was run by hand.
    pub fn job_number(&self, session: u64) -> u64 {
        if self.job == 0 { session } else { self.job }
    }
}

/// How a backup went.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Session id.
    pub session: u64,
    /// The master job's number: its job id, or the session id for a backup run by hand.
    pub job: u64,
    /// How it ended.
    pub status: SessionStatus,
    /// Objects stored.
    pub objects: u64,
    /// Bytes read from the sources.
    pub bytes_in: u64,
    /// Bytes written to the target.
    pub bytes_stored: u64,
    /// Wall time.
    pub seconds: f64,
    /// Files skipped or changed while read.
    pub problems: Vec<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Per stream of a multistream session: its target and how it went.
    pub streams: Vec<StreamSummary>,
    /// What moved off failed devices to the others.
    pub moved: Vec<crate::plan::Moved>,
    /// Regular files an incremental backup left out as unchanged.
    pub unchanged: Unchanged,
}

/// How one stream of a multistream session went.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// Stream number (the sub-job).
    pub stream: u16,
    /// Its target.
    pub target: String,
    /// Objects (and segments) it stored.
    pub objects: u64,
    /// Object bytes it stored.
    pub bytes: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Why a backup could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The state could not be changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target failed before anything was written.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A source cannot be read at all.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The job cannot be spread over the targets (no room, bad device list).
    #[error("cannot plan the job over the targets: {0}")]
    Plan(crate::plan::PlanError),
    /// The sources cannot be backed up incrementally.
    #[error(transparent)]
    Incremental(#[from] IncrementalError),
}

/// Runs a backup of `req` to `targets`, journaling into `store`: one stream to a single
/// target, or a multistream session planned over several ([`super::multi`]). `progress` is
/// called about five times a second with the live counters.
pub fn run(
    req: &BackupRequest,
    targets: Vec<Box<dyn Target>>,
    store: &mut impl State,
    mut on_progress: impl FnMut(&Progress),
) -> Result<BackupSummary, BackupError> {
    assert!(!targets.is_empty(), "a backup needs a target");
    if req.incremental.is_some() {
        super::baseline::check_sources(&req.sources)?;
    }
    for s in &req.sources {
        if let Source::Agent { agent, root, .. } = s {
            let Some(agents) = &req.agents else {
                let why = "agent sources are backed up by the running service, which the agents connect to";
                return Err(BackupError::Read(ReadError::Agent { agent: agent.clone(), why: why.into() }));
            };
            agents.check(agent, root).map_err(|why| ReadError::Agent { agent: agent.clone(), why })?;
        }
    }
    let mut targets = targets;
    for t in &mut targets {
        t.watch_cancel(req.cancel.flag());
    }
    if targets.len() > 1 && req.sources.iter().any(|s| matches!(s, Source::Agent { .. })) {
        // Agents stream as they read: nothing is known in advance to split over devices. The
        // session goes to the first (a library's first free drive).
        tracing::info!(target: "backup", "agent sources: one stream, on {}", targets[0].describe());
        targets.truncate(1);
    }
    if targets.len() > 1 {
        return super::multi::run(req, targets, store, on_progress);
    }
    let target = targets.into_iter().next().expect("one target");
    let t0 = Instant::now();
    let steps = steps(&req.sources, target.multiplex());
    let (session, info) = start_session(req, store, 1)?;
    let progress = Arc::new(Progress::default());
    let (event_tx, events) = bounded::<(u16, Event)>(64);
    let opts = WalkOptions { one_file_system: req.one_file_system };
    let cancel = req.cancel.clone();
    let incremental = req.incremental.clone();
    let (agents, job) = (req.agents.clone(), req.job);
    let agent_compresses = req.compress && req.compress_on_agent;
    // Agents to a tape drive go through the spool, when the board has one.
    let spool = match (&req.agents, target.streams()) {
        (Some(a), true) if steps.iter().any(|s| matches!(s, Step::Agents(_))) => a.spool(),
        _ => None,
    };
    let stream = StreamJob::start(req, target, info, event_tx, progress.clone(), spool, move |reader| {
        reader.cancel = cancel.clone();
        reader.incremental = incremental;
        reader.agent_compresses = agent_compresses;
        for step in &steps {
            if cancel.is_cancelled() {
                break;
            }
            match step {
                Step::Local(Source::Tree { root, prefix }) => {
                    reader.add_tree(root, prefix.as_deref(), opts)?
                }
                Step::Local(Source::Volume(path)) => reader.add_volume(path)?,
                Step::Local(Source::Agent { .. }) => unreachable!("agent sources are grouped"),
                Step::Agents(group) => {
                    let Some(agents) = &agents else {
                        let why = "agent sources are backed up by the running service (`coffer serve`), which the agents connect to";
                        return Err(ReadError::Agent { agent: group[0].agent.clone(), why: why.into() });
                    };
                    reader.add_agents(&**agents, group, job, opts.one_file_system)?
                }
            }
        }
        Ok(())
    });
    let control = control_loop(store, session, &events, &progress, &mut on_progress, None, &req.cancel);
    let (written, read) = stream.join();
    let (objects, stored_raw, stored) = control?.totals;

    // The writer's failure explains a reader that stopped; otherwise the reader's own.
    let (status, error, problems) = match (&written, read) {
        (Ok(_), Ok(problems)) if req.cancel.is_cancelled() => {
            (SessionStatus::Cancelled, Some(CANCELLED.to_owned()), problems)
        }
        (Ok(_), Ok(problems)) => (SessionStatus::Complete, None, problems),
        (Err(e), _) => (SessionStatus::Failed, Some(e.to_string()), Vec::new()),
        (Ok(_), Err(e)) => (SessionStatus::Failed, Some(e.to_string()), Vec::new()),
    };
    let summary = BackupSummary {
        session,
        job: req.job_number(session),
        status,
        objects,
        bytes_in: progress.raw.load(Ordering::Relaxed),
        bytes_stored: progress.stored.load(Ordering::Relaxed),
        seconds: 0.0,
        problems,
        error,
        streams: Vec::new(),
        moved: Vec::new(),
        unchanged: req.incremental.as_ref().map(Incremental::unchanged).unwrap_or_default(),
    };
    finish_session(store, summary, req.incremental.as_ref(), stored_raw, stored, t0)
}

/// What a single-stream backup reads, in order: a local source, or agents read at once.
enum Step {
    Local(Source),
    Agents(Vec<LaneSource>),
}

/// The sources in order, consecutive agent trees grouped by [`super::mux::groups`] to be
/// multiplexed, at most `multiplex` at once.
fn steps(sources: &[Source], multiplex: usize) -> Vec<Step> {
    let mut out = Vec::new();
    let mut run: Vec<LaneSource> = Vec::new();
    let flush = |run: &mut Vec<LaneSource>, out: &mut Vec<Step>| {
        out.extend(super::mux::groups(run, multiplex).into_iter().map(Step::Agents));
        run.clear();
    };
    for s in sources {
        match s {
            Source::Agent { agent, root, prefix } => {
                run.push(LaneSource { agent: agent.clone(), root: root.clone(), prefix: prefix.clone() })
            }
            other => {
                flush(&mut run, &mut out);
                out.push(Step::Local(other.clone()));
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// [`FilesKept`](crate::catalog::FilesKept) records per journal commit: 64 KiB each, 16 MiB a
/// group.
const KEPT_RECORDS_PER_COMMIT: usize = 256;

/// Why a cancelled session ended, for its summary.
pub const CANCELLED: &str = "cancelled: what was read before is written and restorable";

/// Journals the start of a session of `streams` streams; returns its id and the facts its
/// streams write in their headers (stream 0's).
pub(super) fn start_session(
    req: &BackupRequest,
    store: &mut impl State,
    streams: u16,
) -> Result<(u64, SessionInfo), StoreError> {
    let session = store.read(|c| c.next_session_id());
    let started = crate::clock::unix_now();
    let mode = if req.sources.iter().any(|s| matches!(s, Source::Volume(_))) {
        SessionMode::Volume
    } else {
        SessionMode::Files
    };
    let info = SessionInfo {
        session,
        job: req.job,
        host: crate::clock::host_name(),
        source: req.description.clone(),
        started,
        stream: 0,
        streams,
        kind: req
            .incremental
            .as_ref()
            .map_or(SessionKind::Full, |i| SessionKind::Incremental { base: i.base() }),
        source_key: req.source_key.0,
        kept: req.incremental.clone(),
    };
    store.commit(&[Record::from(SessionStarted {
        session,
        job: req.job,
        host: info.host.clone(),
        source: info.source.clone(),
        started,
        streams,
        mode,
        kind: info.kind,
        source_key: req.source_key.0,
    })])?;
    Ok((session, info))
}

/// Journals the end of a session and completes its summary. An incremental session that
/// completed first lists the files it kept (before its end, so that a session read as complete
/// always has its whole list).
pub(super) fn finish_session(
    store: &mut impl State,
    mut summary: BackupSummary,
    incremental: Option<&Incremental>,
    raw_bytes: u64,
    stored_bytes: u64,
    t0: Instant,
) -> Result<BackupSummary, BackupError> {
    if let Some(inc) = incremental.filter(|_| summary.status == SessionStatus::Complete) {
        let kept = inc.kept();
        let records: Vec<Record> =
            crate::catalog::kept_batches(summary.session, kept.iter().map(Vec::as_slice), true)
                .into_iter()
                .map(Record::from)
                .collect();
        // Groups well under the journal's group limit.
        for group in records.chunks(KEPT_RECORDS_PER_COMMIT) {
            store.commit(group)?;
        }
    }
    store.commit(&[Record::from(SessionFinished {
        session: summary.session,
        ended: crate::clock::unix_now(),
        status: summary.status,
        objects: summary.objects,
        raw_bytes,
        stored_bytes,
    })])?;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// How a stream's writer and reader ended (the reader with the problems it met).
pub(super) type StreamEnd = (Result<(), DeviceError>, Result<Vec<String>, ReadError>);

/// One stream's data plane: a reader fed by a closure, one pinned compressor per core, and a
/// writer to one target.
pub(super) struct StreamJob {
    /// The writer's result, and what its spool (if any) says for the summary.
    writer: std::thread::JoinHandle<(Result<(), DeviceError>, Option<String>)>,
    reader: std::thread::JoinHandle<Result<Vec<String>, ReadError>>,
    compressors: Vec<std::thread::JoinHandle<()>>,
}

impl StreamJob {
    /// Starts the threads (unit size, compression and cancelling from `req`); `feed` runs on
    /// the reader thread and adds the stream's objects. With `spool`, the records go through
    /// a disk spool on their way to the target ([`super::spool`]).
    pub(super) fn start(
        req: &BackupRequest,
        target: Box<dyn Target>,
        info: SessionInfo,
        events: Events,
        progress: Arc<Progress>,
        spool: Option<SpoolSpec>,
        feed: impl FnOnce(&mut Reader) -> Result<(), ReadError> + Send + 'static,
    ) -> StreamJob {
        let (unit, compress, cancel) = (req.unit, req.compress, req.cancel.clone());
        let cores = allowed_cores().unwrap_or_else(|_| vec![0]);
        let n = cores.len().max(1);
        let raw_pool = Pool::new(n * (QUEUE_DEPTH + 2) + 3, unit);
        let out_pool = Pool::new(n * (QUEUE_DEPTH + 1) + 1, compress_scratch_len(unit));
        let stream = info.stream;
        let mut unit_txs = Vec::new();
        let mut outs = Vec::new();
        let mut compressors = Vec::new();
        for (i, &core) in cores.iter().enumerate() {
            let (utx, urx) = bounded::<Unit>(QUEUE_DEPTH);
            let (etx, erx) = bounded::<Encoded>(QUEUE_DEPTH);
            let (rp, op) = (raw_pool.clone(), out_pool.clone());
            compressors.push(
                std::thread::Builder::new()
                    .name(format!("compress-{stream}-{i}"))
                    .spawn(move || {
                        // Unpinned is slower, not wrong: carry on if the kernel refuses.
                        let _ = pin_current_thread(core);
                        compress::run(urx, etx, rp, op, compress)
                    })
                    .expect("spawn compressor"),
            );
            unit_txs.push(utx);
            outs.push(erx);
        }
        let writer = std::thread::Builder::new()
            .name(format!("writer-{stream}"))
            .spawn(move || {
                let Some(spec) = spool else {
                    return (write_stream(target, info, outs, events, progress, out_pool, cancel), None);
                };
                spooled_stream(&spec, target, info, outs, events, progress, out_pool, cancel)
            })
            .expect("spawn writer");
        let reader = std::thread::Builder::new()
            .name(format!("reader-{stream}"))
            .spawn(move || {
                let mut reader = Reader::new(raw_pool, unit_txs).map_err(ReadError::Setup)?;
                match feed(&mut reader) {
                    Err(ReadError::Cancelled) => reader
                        .problems
                        .push("the job was cancelled: the object being read then is not stored".into()),
                    r => r?,
                }
                reader.finish()
            })
            .expect("spawn reader");
        StreamJob { writer, reader, compressors }
    }

    /// Waits for the stream's threads; returns how the writer and the reader ended.
    pub(super) fn join(self) -> StreamEnd {
        let (written, note) = self.writer.join().expect("writer thread");
        let mut read = self.reader.join().expect("reader thread");
        if let (Ok(problems), Some(note)) = (&mut read, note) {
            problems.push(note);
        }
        for t in self.compressors {
            t.join().expect("compressor thread");
        }
        (written, read)
    }
}

/// The writer thread: takes encoded records from the compressors in turn and writes them.
/// A failure is also reported as an event, so that the control thread can move the stream's
/// work elsewhere while the other streams go on.
fn write_stream(
    target: Box<dyn Target>,
    info: SessionInfo,
    outs: Vec<Receiver<Encoded>>,
    events: Events,
    progress: Arc<Progress>,
    out_pool: Pool,
    cancel: Cancel,
) -> Result<(), DeviceError> {
    let mut k = 0usize;
    // A closed queue at the compressor whose turn it is means the reader sent no more.
    let next = move || {
        let rec = outs[k % outs.len()].recv().ok();
        k += 1;
        Ok(rec)
    };
    write_records(target, info, next, events, progress, out_pool, cancel)
}

/// The writer thread of a spooled stream: the records go through a spool in `spec.dir` on
/// their way to the target. A spool that cannot be opened or fails is left out, and the note
/// (for the summary's problems) says so.
#[allow(clippy::too_many_arguments)]
fn spooled_stream(
    spec: &SpoolSpec,
    target: Box<dyn Target>,
    info: SessionInfo,
    outs: Vec<Receiver<Encoded>>,
    events: Events,
    progress: Arc<Progress>,
    out_pool: Pool,
    cancel: Cancel,
) -> (Result<(), DeviceError>, Option<String>) {
    let file = match super::spool::open(spec, info.stream) {
        Ok(f) => f,
        Err(why) => {
            tracing::warn!(target: "backup", "{why}: writing without the spool");
            let note = format!("{why}: the backup was written without the spool");
            return (write_stream(target, info, outs, events, progress, out_pool, cancel), Some(note));
        }
    };
    // Two buffers of its own for the records it reads back: the writer returns them there.
    let pool = Pool::new(2, out_pool.buf_size());
    let name = format!("the spool in {}", spec.dir.display());
    let mut drainer = Drainer::start(file, spec.size, name, outs, pool.clone(), out_pool, cancel.clone());
    let written = write_records(target, info, || drainer.take(), events, progress, pool, cancel);
    let report = drainer.finish();
    let line = report.line(&spec.dir);
    tracing::info!(target: "backup", "{line}");
    // A spool that failed midway is the summary's business; one that worked only the log's.
    (written, report.broken.is_some().then_some(line))
}

/// Writes the records `next` gives, in order, until it gives none.
fn write_records(
    target: Box<dyn Target>,
    info: SessionInfo,
    mut next: impl FnMut() -> Result<Option<Encoded>, DeviceError>,
    events: Events,
    progress: Arc<Progress>,
    out_pool: Pool,
    cancel: Cancel,
) -> Result<(), DeviceError> {
    let stream = info.stream;
    let r = (|| {
        let mut w = StreamWriter::start(target, info, events.clone(), progress, out_pool.clone())?;
        while let Some(rec) = next()? {
            if cancel.is_cancelled() {
                // Cancelled: what is still queued is dropped, not written; the objects it
                // would have finished are never journaled. The stream closes at once.
                if let EncodedBytes::Pooled(buf, _) = rec.bytes {
                    out_pool.give(buf);
                }
                continue;
            }
            w.write(rec)?;
        }
        let status = if cancel.is_cancelled() { SessionStatus::Cancelled } else { SessionStatus::Complete };
        w.finish(status, crate::clock::unix_now()).map(|_| ())
    })();
    let last = match &r {
        Ok(()) => Event::Closed,
        Err(e) => Event::Failed(e.to_string()),
    };
    let _ = events.send((stream, last));
    r
}

/// What the control loop saw: objects, raw and stored bytes made durable, and the streams
/// that failed, each with why.
#[derive(Debug, Default)]
pub(super) struct Controlled {
    pub totals: (u64, u64, u64),
    pub failed: Vec<(u16, String)>,
    /// Per stream: objects and object bytes made durable.
    pub per_stream: std::collections::BTreeMap<u16, (u64, u64)>,
}

/// Journals what the writer reports until it hangs up; returns objects, raw and stored bytes
/// made durable. When a commit fails (a full or broken journal disk), the job is cancelled
/// through `cancel` and the events are still taken to the end, unjournaled, so that no writer
/// blocks on a full queue: the error is returned once every stream has stopped.
pub(super) fn control_loop(
    store: &mut impl State,
    session: u64,
    events: &Receiver<(u16, Event)>,
    progress: &Progress,
    on_progress: &mut impl FnMut(&Progress),
    coord: Option<&Coordinator>,
    cancel: &Cancel,
) -> Result<Controlled, StoreError> {
    let mut failed: Option<StoreError> = None;
    let mut out = Controlled::default();
    let mut used = std::collections::HashMap::new();
    loop {
        let ev = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                on_progress(progress);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (stream, ev) = ev;
        let records = match ev {
            Event::Medium(m) => medium_records(store, &m),
            Event::Part { stream, part, start } => vec![Record::from(SessionPart {
                session,
                stream,
                part,
                medium: start.medium,
                position: start.position,
                file_number: start.file_number,
            })],
            Event::Durable { objects, medium, used: u, runs } => {
                used.insert(medium, u);
                out.totals.0 += objects.len() as u64;
                out.totals.1 += objects.iter().map(|o| o.length).sum::<u64>();
                out.totals.2 = progress.stored.load(Ordering::Relaxed);
                let mine = out.per_stream.entry(stream).or_default();
                mine.0 += objects.len() as u64;
                mine.1 += objects.iter().map(|o| o.length).sum::<u64>();
                if let Some(c) = coord {
                    c.journaled(stream.into(), &objects);
                }
                let mut recs: Vec<Record> =
                    object_batches(session, objects).into_iter().map(Record::from).collect();
                if let Some((part, len, runs)) = runs {
                    recs.extend(run_batches(session, stream, part, len, &runs).into_iter().map(Record::from));
                }
                recs.push(Record::from(MediumUpdated { medium, used: u, state: MediumState::Writable }));
                recs
            }
            Event::Evicted { medium, ranges } => evicted_records(store, session, medium, &ranges),
            Event::MediumFull(medium) => {
                let u = used.get(&medium).copied().unwrap_or(0);
                vec![Record::from(MediumUpdated { medium, used: u, state: MediumState::Full })]
            }
            Event::Synced => {
                if let Some(c) = coord {
                    c.synced(stream.into());
                }
                Vec::new()
            }
            Event::Closed => {
                if let Some(c) = coord {
                    let _ = c.closed(stream.into());
                }
                Vec::new()
            }
            Event::Failed(why) => {
                if let Some(c) = coord {
                    // What it had not made durable goes to the others; an error here (no
                    // device left) stops every stream, which the summary reports.
                    let _ = c.failed(stream.into());
                }
                out.failed.push((stream, why));
                vec![Record::from(StreamCut { session, stream })]
            }
        };
        if failed.is_none()
            && let Err(e) = store.commit(&records)
        {
            tracing::error!(target: "backup", "session {session}: the journal refused a commit, stopping the job: {e}");
            cancel.cancel();
            failed = Some(e);
        }
    }
    on_progress(progress);
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Sessions with a part in an overwritten range of a ring medium are gone: prune them. The
/// running session is never among them (a ring does not overwrite what it wrote since it was
/// mounted); a session that never finished cannot be pruned and is reported instead.
fn evicted_records(store: &impl State, running: u64, medium: [u8; 16], ranges: &[(u64, u64)]) -> Vec<Record> {
    let hit = |pos: u64| ranges.iter().any(|&(a, b)| (a..b).contains(&pos));
    store.read(|c| {
        let mut out = Vec::new();
        for s in c.sessions_on(medium) {
            if s.id() == running || !s.parts().any(|p| p.medium == medium && hit(p.position)) {
                continue;
            }
            if s.is_finished() {
                out.push(Record::from(SessionPruned { session: s.id() }));
            } else {
                tracing::warn!(target: "backup", "session {} was overwritten on a ring medium but never finished", s.id());
            }
        }
        out
    })
}

/// Records that make the catalog know a mounted medium. A recycled cartridge (labelled anew,
/// its barcode known under its old label) first takes its old sessions and its old medium out
/// of the catalog: they are gone from the tape.
pub(super) fn medium_records(store: &impl State, m: &Mounted) -> Vec<Record> {
    if store.read(|c| c.medium(m.label.medium).is_some()) {
        return Vec::new();
    }
    let mut out: Vec<Record> = store.read(|c| {
        let Some(old) = c.medium_by_barcode(&m.label.barcode) else { return Vec::new() };
        let mut v: Vec<Record> =
            c.sessions_on(old.id()).map(|s| Record::from(SessionPruned { session: s.id() })).collect();
        tracing::info!(target: "backup", "{}: recycled; {} expired session(s) on it leave the catalog", m.label.barcode, v.len());
        v.push(Record::from(MediumRemoved { medium: old.id() }));
        v
    });
    out.push(Record::from(MediumAdded {
        medium: m.label.medium,
        barcode: m.label.barcode.clone(),
        pool: m.label.pool.clone(),
        kind: m.kind,
        block_size: m.label.block_size,
        capacity: m.capacity,
        created: m.label.created,
        location: m.location.clone(),
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::disk::DiskTarget;
    use crate::store::{Indexes, Store};

    /// A store whose journal refuses every commit after the first `left`.
    struct FailsAfter {
        store: Store,
        left: usize,
    }

    impl State for FailsAfter {
        fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
            if self.left == 0 {
                return Err(StoreError::Poisoned);
            }
            self.left -= 1;
            self.store.commit(records)
        }
        fn read<R>(&self, f: impl FnOnce(&crate::catalog::Catalog) -> R) -> R {
            f(self.store.catalog())
        }
        fn indexes(&self) -> Indexes {
            self.store.indexes()
        }
    }

    #[test]
    fn a_journal_that_fails_mid_backup_stops_the_job_with_its_error_and_nothing_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // Random files over many small volumes: far more writer events than the queue holds.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..48 {
            let bytes: Vec<u8> = (0..1 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(src.join(format!("f{i}")), bytes).unwrap();
        }
        let (store, _) = Store::open(&dir.path().join("state"), crate::journal::Mode::Write).unwrap();
        let mut state = FailsAfter { store, left: 6 };
        let target = DiskTarget::new(&dir.path().join("target"), 2 << 20, "default").unwrap();
        let req = BackupRequest {
            sources: vec![Source::Tree { root: src.clone(), prefix: None }],
            description: src.display().to_string(),
            unit: 256 << 10,
            job: 0,
            one_file_system: false,
            compress: true,
            cancel: super::super::Cancel::default(),
            source_key: SourceKey::of_canonical_roots(&[src.as_path()]),
            incremental: None,
            agents: None,
            compress_on_agent: false,
        };
        let r = run(&req, vec![Box::new(target)], &mut state, |_| {});
        assert!(matches!(r, Err(BackupError::Store(StoreError::Poisoned))), "{r:?}");
        assert!(req.cancel.is_cancelled(), "the job was not stopped");
    }
}
