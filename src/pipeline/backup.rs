//! Running a backup: the data-plane threads (reader, one pinned compressor per core, writer)
//! and, on the calling thread, the control loop that journals what the writer reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

use super::affinity::{allowed_cores, pin_current_thread};
use super::pool::Pool;
use super::reader::{ReadError, Reader};
use super::writer::{Event, Progress, SessionInfo, StreamWriter};
use super::{Encoded, QUEUE_DEPTH, Unit, compress};
use crate::catalog::{
    MediumAdded, MediumState, MediumUpdated, ObjectStored, Record, SessionFinished, SessionMode, SessionPart,
    SessionPruned, SessionStarted,
};
use crate::device::{DeviceError, Mounted, Target};
use crate::format::compress_scratch_len;
use crate::format::records::SessionStatus;
use crate::source::WalkOptions;
use crate::store::{Store, StoreError};

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
}

/// How a backup went.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Session id.
    pub session: u64,
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
}

/// Runs a backup of `req` to `target`, journaling into `store`. `progress` is called about
/// five times a second with the live counters.
pub fn run(
    req: &BackupRequest,
    target: Box<dyn Target>,
    store: &mut Store,
    mut on_progress: impl FnMut(&Progress),
) -> Result<BackupSummary, BackupError> {
    let t0 = Instant::now();
    let session = store.catalog().next_session_id();
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
        streams: 1,
    };
    store.commit(&[Record::from(SessionStarted {
        session,
        job: req.job,
        host: info.host.clone(),
        source: info.source.clone(),
        started,
        streams: 1,
        mode,
    })])?;

    let cores = allowed_cores().unwrap_or_else(|_| vec![0]);
    let n = cores.len().max(1);
    let raw_pool = Pool::new(n * (QUEUE_DEPTH + 2) + 3, req.unit);
    let out_pool = Pool::new(n * (QUEUE_DEPTH + 1) + 1, compress_scratch_len(req.unit));
    let progress = Arc::new(Progress::default());
    let (event_tx, events) = bounded::<Event>(64);

    let mut unit_txs = Vec::new();
    let mut outs = Vec::new();
    let mut threads = Vec::new();
    for (i, &core) in cores.iter().enumerate() {
        let (utx, urx) = bounded::<Unit>(QUEUE_DEPTH);
        let (etx, erx) = bounded::<Encoded>(QUEUE_DEPTH);
        let (rp, op) = (raw_pool.clone(), out_pool.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("compress-{i}"))
                .spawn(move || {
                    // Unpinned is slower, not wrong: carry on if the kernel refuses.
                    let _ = pin_current_thread(core);
                    compress::run(urx, etx, rp, op)
                })
                .expect("spawn compressor"),
        );
        unit_txs.push(utx);
        outs.push(erx);
    }

    let writer = {
        let progress = progress.clone();
        let out_pool = out_pool.clone();
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || write_stream(target, info, outs, event_tx, progress, out_pool))
            .expect("spawn writer")
    };
    let reader = {
        let sources = req.sources.clone();
        let opts = WalkOptions { one_file_system: req.one_file_system };
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || read_sources(&sources, opts, raw_pool, unit_txs))
            .expect("spawn reader")
    };

    let control = control_loop(store, session, &events, &progress, &mut on_progress);
    let written = writer.join().expect("writer thread");
    let read = reader.join().expect("reader thread");
    for t in threads {
        t.join().expect("compressor thread");
    }
    let (objects, stored_raw, stored) = control?;

    // The writer's failure explains a reader that stopped; otherwise the reader's own.
    let (status, error, problems) = match (&written, read) {
        (Ok(_), Ok(problems)) => (SessionStatus::Complete, None, problems),
        (Err(e), _) => (SessionStatus::Failed, Some(e.to_string()), Vec::new()),
        (Ok(_), Err(e)) => (SessionStatus::Failed, Some(e.to_string()), Vec::new()),
    };
    store.commit(&[Record::from(SessionFinished {
        session,
        ended: crate::clock::unix_now(),
        status,
        objects,
        raw_bytes: stored_raw,
        stored_bytes: stored,
    })])?;
    Ok(BackupSummary {
        session,
        status,
        objects,
        bytes_in: progress.raw.load(Ordering::Relaxed),
        bytes_stored: progress.stored.load(Ordering::Relaxed),
        seconds: t0.elapsed().as_secs_f64(),
        problems,
        error,
    })
}

fn read_sources(
    sources: &[Source],
    opts: WalkOptions,
    raw_pool: Pool,
    queues: Vec<crossbeam_channel::Sender<Unit>>,
) -> Result<Vec<String>, ReadError> {
    let mut reader = Reader::new(raw_pool, queues).map_err(ReadError::Setup)?;
    for s in sources {
        match s {
            Source::Tree { root, prefix } => reader.add_tree(root, prefix.as_deref(), opts)?,
            Source::Volume(path) => reader.add_volume(path)?,
        }
    }
    reader.finish()
}

/// The writer thread: takes encoded records from the compressors in turn and writes them.
fn write_stream(
    target: Box<dyn Target>,
    info: SessionInfo,
    outs: Vec<Receiver<Encoded>>,
    events: crossbeam_channel::Sender<Event>,
    progress: Arc<Progress>,
    out_pool: Pool,
) -> Result<(), DeviceError> {
    let mut w = StreamWriter::start(target, info, events, progress, out_pool)?;
    let mut k = 0usize;
    // A closed queue at the compressor whose turn it is means the reader sent no more.
    while let Ok(rec) = outs[k % outs.len()].recv() {
        w.write(rec)?;
        k += 1;
    }
    w.finish(SessionStatus::Complete, crate::clock::unix_now()).map(|_| ())
}

/// Journals what the writer reports until it hangs up; returns objects, raw and stored bytes
/// made durable.
fn control_loop(
    store: &mut Store,
    session: u64,
    events: &Receiver<Event>,
    progress: &Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(u64, u64, u64), StoreError> {
    let mut durable = (0u64, 0u64, 0u64);
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
            Event::Durable { objects, medium, used: u } => {
                used.insert(medium, u);
                durable.0 += objects.len() as u64;
                durable.1 += objects.iter().map(|o| o.length).sum::<u64>();
                durable.2 = progress.stored.load(Ordering::Relaxed);
                let mut recs: Vec<Record> = objects
                    .into_iter()
                    .map(|object| Record::from(ObjectStored { session, object }))
                    .collect();
                recs.push(Record::from(MediumUpdated { medium, used: u, state: MediumState::Writable }));
                recs
            }
            Event::Evicted { medium, ranges } => evicted_records(store, session, medium, &ranges),
            Event::MediumFull(medium) => {
                let u = used.get(&medium).copied().unwrap_or(0);
                vec![Record::from(MediumUpdated { medium, used: u, state: MediumState::Full })]
            }
        };
        store.commit(&records)?;
    }
    on_progress(progress);
    Ok(durable)
}

/// Sessions with a part in an overwritten range of a ring medium are gone: prune them. The
/// running session is never among them (a ring does not overwrite what it wrote since it was
/// mounted); a session that never finished cannot be pruned and is reported instead.
fn evicted_records(store: &Store, running: u64, medium: [u8; 16], ranges: &[(u64, u64)]) -> Vec<Record> {
    let hit = |pos: u64| ranges.iter().any(|&(a, b)| (a..b).contains(&pos));
    let mut out = Vec::new();
    for s in store.catalog().sessions_on(medium) {
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
}

/// Records that make the catalog know a mounted medium.
pub(super) fn medium_records(store: &Store, m: &Mounted) -> Vec<Record> {
    if store.catalog().medium(m.label.medium).is_some() {
        return Vec::new();
    }
    vec![Record::from(MediumAdded {
        medium: m.label.medium,
        barcode: m.label.barcode.clone(),
        pool: m.label.pool.clone(),
        kind: m.kind,
        block_size: m.label.block_size,
        capacity: m.capacity,
        created: m.label.created,
        location: m.location.clone(),
    })]
}
