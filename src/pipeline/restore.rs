//! Restore and verify: the backup path backwards. The catalog says where a session's parts are;
//! a reader thread follows them, one decoder per core checks and decompresses, and the calling
//! thread puts objects back on a file system (restore) or checks them (verify), taking records
//! in order. Every byte read back is checked: record CRCs, every object's length and BLAKE3,
//! and in verify also against the catalog and, with `--compare`, against files on disk.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::bounded;

use super::QUEUE_DEPTH;
use super::affinity::{allowed_cores, pin_current_thread};
use super::compare::Comparer;
use super::pool::{Recycler, Reused};
use super::readback::{
    Decoded, Item, PartLoc, Place, RawRecord, Span, StreamError, StreamReader, decode_loop,
};
use super::restore_workers::{FileJob, Workers, add_summaries};
use crate::catalog::{Catalog, StoredObject};
use crate::format::records::{ObjectEnd, ObjectKind, ObjectMeta, PackedEntry};
use crate::fsrestore::{FsRestorer, RestoreError, RestoreSummary};
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
}

struct Plan {
    streams: Vec<(u16, Vec<PartLoc>, Vec<Span>)>,
    selected: Option<HashSet<u64>>,
}

fn is_selected(path: &[u8], sel: &[Vec<u8>]) -> bool {
    sel.iter().any(|s| {
        s.as_slice() == b"."
            || path == s.as_slice()
            || (path.starts_with(s) && path.get(s.len()) == Some(&b'/'))
    })
}

/// Works out which parts to read, from where.
fn plan(catalog: &Catalog, req: &RestoreRequest) -> Result<Plan, PlanError> {
    let session = catalog.session(req.session).ok_or(PlanError::NoSession(req.session))?;
    let bad = |what: String| PlanError::Parts { session: req.session, what };
    let mut streams = Vec::new();
    let sel: Vec<&StoredObject> = session
        .objects()
        .iter()
        .filter(|o| req.paths.is_empty() || is_selected(&o.path, &req.paths))
        .collect();
    if sel.is_empty() && !req.paths.is_empty() {
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
            });
        }
        if locs.is_empty() {
            continue;
        }
        let spans = if req.paths.is_empty() {
            vec![Span { part: 0, offset: 0, object: None }]
        } else {
            let mut spans: Vec<Span> = sel
                .iter()
                .filter(|o| o.stream == stream)
                .map(|o| Span { part: o.part, offset: o.position, object: Some(o.id) })
                .collect();
            spans.sort_by_key(|s| (s.part, s.offset));
            spans.dedup_by_key(|s| (s.part, s.offset));
            spans
        };
        streams.push((stream, locs, spans));
    }
    let selected = (!req.paths.is_empty()).then(|| sel.iter().map(|o| o.id).collect());
    Ok(Plan { streams, selected })
}

/// Runs a restore or verify.
pub fn run(catalog: &Catalog, req: &RestoreRequest) -> Result<RestoreReport, PlanError> {
    let t0 = Instant::now();
    let plan = plan(catalog, req)?;
    let fs = match &req.action {
        Action::Restore(root) => Some(FsRestorer::new(root)?),
        Action::Verify(_) => None,
    };
    let compare = match &req.action {
        Action::Verify(Some(dir)) => Some(Comparer::new(dir)),
        _ => None,
    };
    let objects: HashMap<u64, &StoredObject> =
        catalog.objects(req.session).unwrap_or(&[]).iter().map(|o| (o.id, o)).collect();
    let workers = match &req.action {
        Action::Restore(root) => Some(Workers::start(root, FILE_WORKERS)),
        Action::Verify(_) => None,
    };
    let mut sink = Sink {
        ring: Ring::new()
            .map_err(|e| PlanError::Root(RestoreError::Root { path: "io_uring".into(), source: e }))?,
        fs,
        workers,
        compare,
        objects,
        open: HashMap::new(),
        done: HashSet::new(),
        report: RestoreReport::default(),
        selected: plan.selected.clone(),
        worker_summary: RestoreSummary::default(),
    };

    let cores = allowed_cores().unwrap_or_else(|_| vec![0]);
    let data_bufs = Recycler::new(RECYCLE_KEEP);
    let raw_bufs = Recycler::new(RECYCLE_KEEP);
    let mut ins = Vec::new();
    let mut outs = Vec::new();
    let mut threads = Vec::new();
    for (i, &core) in cores.iter().enumerate() {
        let (rtx, rrx) = bounded::<RawRecord>(QUEUE_DEPTH);
        let (itx, irx) = bounded::<Item>(QUEUE_DEPTH);
        let buffers = data_bufs.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || {
                    let _ = pin_current_thread(core);
                    decode_loop(rrx, itx, buffers)
                })
                .expect("spawn decoder"),
        );
        ins.push(rtx);
        outs.push(irx);
    }
    let session = req.session;
    let reader = std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            let mut k = 0;
            let mut errors = Vec::new();
            for (stream, locs, spans) in plan.streams {
                match StreamReader::new(session, stream, locs, raw_bufs.clone()).run(&spans, &ins, k) {
                    Ok(next) => k = next,
                    Err(StreamError::Stopped) => break,
                    Err(e) => {
                        errors.push(e.to_string());
                        break;
                    }
                }
            }
            errors
        })
        .expect("spawn reader");

    let mut k = 0;
    while let Ok(item) = outs[k % outs.len()].recv() {
        sink.take(item);
        k += 1;
    }
    drop(outs);
    let stream_errors = reader.join().expect("reader thread");
    for t in threads {
        t.join().expect("decoder thread");
    }
    for e in stream_errors {
        sink.report.failures.push(format!("reading stopped: {e}"));
    }
    let mut report = sink.finish();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// An object being read back.
struct OpenObject {
    meta: ObjectMeta,
    file: Option<File>,
    hasher: blake3::Hasher,
    length: u64,
    place: Place,
}

/// Where restored or verified objects go.
struct Sink<'c> {
    ring: Ring,
    fs: Option<FsRestorer>,
    workers: Option<Workers>,
    compare: Option<Comparer>,
    objects: HashMap<u64, &'c StoredObject>,
    open: HashMap<u64, OpenObject>,
    done: HashSet<u64>,
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
        match item.decoded {
            Decoded::Meta(id, meta) if self.wanted(id) => self.begin(id, meta, item.place),
            Decoded::Data { id, offset, data } if self.open.contains_key(&id) => self.data(id, offset, &data),
            Decoded::End(id, end) if self.open.contains_key(&id) => self.end(id, end),
            Decoded::Pack { entries, data } => self.pack(entries, Arc::new(data), &item.place),
            Decoded::Bad(e) => {
                let near = self.open.keys().map(|&id| self.name(id)).collect::<Vec<_>>().join(", ");
                let near = if near.is_empty() { String::new() } else { format!(" (in {near})") };
                self.fail(format!("damaged record on {}{near}: {e}", item.place));
            }
            // Segments, and records of objects not selected or already failed.
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
            self.begin(id, entry.meta, place.clone());
            self.data(id, 0, &data[range]);
            self.end(id, ObjectEnd { length: entry.length, digest: entry.digest });
        }
    }

    fn begin(&mut self, id: u64, meta: ObjectMeta, place: Place) {
        // A volume comes back as an image file named by its device path under the root.
        let meta =
            if meta.kind == ObjectKind::Volume && self.fs.is_some() { volume_image(meta) } else { meta };
        let file = match &mut self.fs {
            Some(fs) => match fs.create(&meta) {
                Ok(f) => f,
                Err(e) => {
                    self.fail(format!("{}: not restored: {e}", self.name(id)));
                    return;
                }
            },
            None => None,
        };
        if let Some(c) = &mut self.compare {
            c.metadata(&meta);
        }
        self.open.insert(id, OpenObject { meta, file, hasher: blake3::Hasher::new(), length: 0, place });
    }

    fn data(&mut self, id: u64, offset: u64, data: &[u8]) {
        let Some(o) = self.open.get_mut(&id) else {
            return;
        };
        o.hasher.update(data);
        o.length += data.len() as u64;
        self.report.bytes += data.len() as u64;
        if let Some(f) = &o.file
            && let Err(e) = self.ring.write_at(f, offset, data)
        {
            let what = format!("{}: writing failed: {e}", self.name(id));
            self.open.remove(&id);
            self.fail(what);
            return;
        }
        if let Some(c) = &mut self.compare {
            c.data(&o.meta, offset, data);
        }
    }

    fn end(&mut self, id: u64, end: ObjectEnd) {
        let Some(o) = self.open.remove(&id) else {
            return;
        };
        let digest = *o.hasher.finalize().as_bytes();
        let name = self.name(id);
        if o.length != end.length || digest != end.digest {
            self.fail(format!(
                "{name} read from {}: contents do not match the digest written with them",
                o.place
            ));
            return;
        }
        let catalog_digest = self.objects.get(&id).map(|s| s.digest).filter(|d| *d != [0; 32]);
        if catalog_digest.is_some_and(|d| d != digest) {
            self.fail(format!(
                "{name} read from {}: contents differ from what the catalog recorded",
                o.place
            ));
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

    fn finish(mut self) -> RestoreReport {
        if let Some(w) = self.workers.take() {
            let (failures, summary) = w.finish(&mut self.done, &mut self.report.objects);
            self.report.failures.extend(failures);
            self.worker_summary = summary;
        }
        for (id, o) in std::mem::take(&mut self.open) {
            let n = self.name(id);
            self.fail(format!("{n}: its end was never read (from {})", o.place));
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

/// Path of an object under a root.
pub fn under(root: &Path, path: &[u8]) -> PathBuf {
    if path == b"." { root.to_owned() } else { root.join(std::ffi::OsStr::from_bytes(path)) }
}
