//! The reader: turns sources into numbered units for the compressors. Small files and
//! metadata-only objects are packed together; larger files get a metadata record, data records
//! of one unit each (holes of sparse files skipped), and an end record with their BLAKE3.
//!
//! Problems with single files (vanished, unreadable, changed while read) are collected for the
//! session summary and do not stop the backup.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use super::baseline::{Incremental, Skipper};
use super::fetch::{BATCH_BYTES, Deal, Dealer, FETCHERS, Fetched, fetch_loop};
use super::pool::Pool;
use super::{SMALL_FILE_DIVISOR, Track, Unit, Work, stored};
use crate::catalog::StoredObject;
use crate::device::aligned::{ALIGN, AlignedBuf, round_up};
use crate::format::records::{ObjectEnd, ObjectKind, ObjectMeta, PackedEntry, Payload, SegmentHeader};
use crate::format::{HEADER_LEN, MAX_META_LEN, PackBuilder, encode_meta};
use crate::source::{SourceError, TreeEntry, TreeWalker, WalkOptions, changed_during_read, data_extents};
use crate::uring::{FileReadResult, Ring};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The downstream stages stopped (the writer failed or the job was cancelled).
    #[error("the backup stopped downstream")]
    Stopped,
    /// The job was cancelled while an object was read: it is not stored.
    #[error("cancelled")]
    Cancelled,
    /// A source root cannot be read at all.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The kernel refused io_uring.
    #[error(transparent)]
    Setup(std::io::Error),
    /// A backup agent's tree could not be read whole.
    #[error("agent {agent}: {why}")]
    Agent {
        /// The agent.
        agent: String,
        /// What went wrong.
        why: String,
    },
    /// A volume cannot be read.
    #[error("cannot read volume {path}: {source}")]
    Volume {
        /// The volume.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Reads sources into units.
pub struct Reader {
    unit: usize,
    small_max: usize,
    raw_pool: Pool,
    queues: Vec<Sender<Unit>>,
    next_unit: usize,
    next_seq: u64,
    next_object: u64,
    /// The lane the units sent now belong to (0: none; see [`super::mux`]).
    lane: u64,
    pack: Option<PackBuilder<AlignedBuf>>,
    packed: Vec<StoredObject>,
    ring: Ring,
    open_flags: i32,
    /// Paths of files that could not be read, each with the later link stored in its place.
    unread: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Problems met, for the summary.
    pub problems: Vec<String>,
    /// Stops reading (between files, and between units of a large one).
    pub cancel: super::Cancel,
    /// Leaves out regular files unchanged since this baseline (an incremental backup).
    pub incremental: Option<Incremental>,
    /// Leaves out what this says to (an agent's incremental backup, judged by the box); takes
    /// the place of `incremental`.
    pub skipper: Option<std::sync::Arc<dyn Skipper>>,
    /// Agents read by this reader compress their data themselves.
    pub agent_compresses: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("unit", &self.unit).finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

impl Reader {
    /// A reader dealing units of `raw_pool`'s buffer size to `queues` in turn.
    pub fn new(raw_pool: Pool, queues: Vec<Sender<Unit>>) -> std::io::Result<Reader> {
        let unit = raw_pool.buf_size();
        Ok(Reader {
            unit,
            small_max: unit / SMALL_FILE_DIVISOR,
            raw_pool,
            queues,
            next_unit: 0,
            next_seq: 1,
            next_object: 1,
            lane: 0,
            pack: None,
            packed: Vec::new(),
            ring: Ring::new()?,
            // Reading must not change access times; only the owner or root may ask for that.
            open_flags: if is_root() { libc::O_NOATIME } else { 0 },
            unread: HashMap::new(),
            problems: Vec::new(),
            cancel: super::Cancel::default(),
            incremental: None,
            skipper: None,
            agent_compresses: false,
        })
    }

    /// Starts numbering records at `seq` and objects at `object`: an agent's reader continues
    /// the box's session.
    pub fn numbered_from(mut self, seq: u64, object: u64) -> Reader {
        self.next_seq = seq;
        self.next_object = object;
        self
    }

    /// The next record number and object id this reader gives.
    pub fn next_numbers(&self) -> (u64, u64) {
        (self.next_seq, self.next_object)
    }

    /// The unit size.
    pub fn unit_size(&self) -> usize {
        self.unit
    }

    /// The pool units' bytes are taken from.
    pub(super) fn raw_pool(&self) -> &Pool {
        &self.raw_pool
    }

    /// Objects below `next` are taken (an agent numbered them).
    pub(super) fn skip_objects_to(&mut self, next: u64) {
        self.next_object = self.next_object.max(next);
    }

    /// Passes on a unit an agent made (checked by the caller), as part of lane `lane` (0: not
    /// multiplexed). A record the agent encoded takes this stream's sequence number: agents
    /// multiplexed onto one stream number their own records from 1.
    pub(super) fn send_remote(&mut self, lane: u64, mut work: Work, track: Track) -> Result<(), ReadError> {
        if let Work::Encoded(bytes) = &mut work {
            crate::format::renumber(bytes, self.next_seq);
        }
        self.lane = lane;
        let sent = self.send(work, track);
        self.lane = 0;
        sent
    }

    fn send(&mut self, work: Work, track: Track) -> Result<(), ReadError> {
        // A sync point is no record: it takes no sequence number.
        let is_record = !matches!(work, Work::Sync);
        let unit = Unit { seq: self.next_seq, work, track, lane: self.lane };
        self.next_seq += u64::from(is_record);
        let q = &self.queues[self.next_unit % self.queues.len()];
        self.next_unit += 1;
        q.send(unit).map_err(|_| ReadError::Stopped)
    }

    fn encoded<T: Payload>(&mut self, id: u64, p: &T, track: Track) -> Result<(), ReadError> {
        let mut buf = vec![0u8; HEADER_LEN + MAX_META_LEN];
        let n = encode_meta(id, self.next_seq, p, &mut buf).expect("metadata from the walker is valid");
        buf.truncate(n);
        self.send(Work::Encoded(buf), track)
    }

    /// Adds every object under `root`; `prefix` (if any) is put before each path. A walker
    /// thread lists and stats the tree and deals batches to fetch threads that read the small
    /// files; this thread packs them in walk order and streams the large ones. With a baseline
    /// ([`Reader::incremental`]), the walker leaves out unchanged regular files: never opened.
    pub fn add_tree(
        &mut self,
        root: &Path,
        prefix: Option<&[u8]>,
        opts: WalkOptions,
    ) -> Result<(), ReadError> {
        let walker = TreeWalker::new(root, opts)?;
        let prefix = prefix.map(<[u8]>::to_vec);
        let cancel = self.cancel.clone();
        let skipper = self.skipper.clone().or_else(|| {
            self.incremental.clone().map(|i| std::sync::Arc::new(i) as std::sync::Arc<dyn Skipper>)
        });
        self.add_dealt(move |dealer| deal(walker, dealer, prefix, skipper, &cancel))
    }

    /// Adds the entries that `source`, run on a thread of its own, gives the [`Dealer`] (a
    /// walk, or the pieces a multi-device plan hands this stream). Fetch threads read the small
    /// files; this thread packs them in the order dealt and streams the large ones.
    pub fn add_dealt(&mut self, source: impl FnOnce(Dealer) + Send) -> Result<(), ReadError> {
        // Each fetcher holds at most one buffer in hand and one queued, the reader one: with
        // 2F + 1 a fetcher never waits for a buffer, so stopping never deadlocks.
        let pool = Pool::new(2 * FETCHERS + 1, BATCH_BYTES);
        let (mut work_txs, mut fetched_rxs, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..FETCHERS {
            let (wtx, wrx) = crossbeam_channel::bounded::<Deal>(1);
            let (ftx, frx) = crossbeam_channel::bounded::<Fetched>(1);
            work_txs.push(wtx);
            fetched_rxs.push(frx);
            ends.push((wrx, ftx));
        }
        let (small_max, open_flags) = (self.small_max, self.open_flags);
        std::thread::scope(|scope| {
            for (i, (wrx, ftx)) in ends.into_iter().enumerate() {
                let pool = pool.clone();
                std::thread::Builder::new()
                    .name(format!("fetch-{i}"))
                    .spawn_scoped(scope, move || fetch_loop(wrx, ftx, pool, open_flags))
                    .expect("spawn fetcher");
            }
            std::thread::Builder::new()
                .name("walker".into())
                .spawn_scoped(scope, move || source(Dealer::new(work_txs, small_max)))
                .expect("spawn walker");
            let fetched_rxs = fetched_rxs;
            let mut k = 0;
            let result = loop {
                let Ok(f) = fetched_rxs[k % FETCHERS].recv() else { break Ok(()) };
                k += 1;
                let r = match f {
                    Fetched::Batch { entries, buf } => {
                        let r = self.pack_batch(entries, &buf);
                        pool.give(buf);
                        r
                    }
                    Fetched::Large(e) => self.large_file(&e).map(|_| ()),
                    Fetched::Problem(p) => {
                        self.problems.push(p);
                        Ok(())
                    }
                    Fetched::Sync => self.flush_pack().and_then(|()| self.send(Work::Sync, Track::Sync)),
                };
                if let Err(e) = r {
                    break Err(e);
                }
            };
            // Hanging up stops the fetchers, whose hanging up stops the walker.
            drop(fetched_rxs);
            result
        })
    }

    /// The id of the object `e` becomes: the plan's, or the next free one.
    fn id_for(&mut self, e: &TreeEntry) -> u64 {
        match e.placed {
            Some(p) => p.id,
            None => self.object_id(),
        }
    }

    fn object_id(&mut self) -> u64 {
        self.next_object += 1;
        self.next_object - 1
    }

    /// Packs a fetched batch in walk order (a hard link after the file it names).
    fn pack_batch(
        &mut self,
        entries: Vec<(TreeEntry, Option<FileReadResult>, usize)>,
        buf: &[u8],
    ) -> Result<(), ReadError> {
        for (e, r, offset) in entries {
            match r {
                None => self.meta_only(e)?,
                Some(r) => self.packed_file(e, r, &buf[offset..])?,
            }
        }
        Ok(())
    }

    /// Packs an object without data (a hard link to a file that could not be read is skipped).
    fn meta_only(&mut self, mut e: TreeEntry) -> Result<(), ReadError> {
        if let Some(target) = e.meta.hardlink.clone()
            && let Some(stored_as) = self.unread.get(target.as_slice())
        {
            match stored_as.clone() {
                // An earlier link stood in for the unreadable first one: name it instead.
                Some(p) => e.meta.hardlink = Some(serde_bytes::ByteBuf::from(p)),
                None => return self.link_as_file(e, target.into_vec()),
            }
        }
        let id = self.id_for(&e);
        self.pack_object(id, e.meta, &[])
    }

    /// A hard link whose first name could not be read (it vanished, say) is read as the file
    /// itself under this name, and later links name it instead.
    fn link_as_file(&mut self, mut e: TreeEntry, first: Vec<u8>) -> Result<(), ReadError> {
        let md = match std::fs::symlink_metadata(&e.source) {
            Ok(md) if md.is_file() => md,
            Ok(_) => {
                let why = "it is a hard link to a file that could not be read, and is no file now";
                self.problems.push(format!("{}: not backed up: {why}", e.source.display()));
                return Ok(());
            }
            Err(err) => {
                self.problems.push(format!("{}: not backed up: {err}", e.source.display()));
                return Ok(());
            }
        };
        e.meta.kind = ObjectKind::File;
        e.meta.hardlink = None;
        e.meta.size = md.len();
        e.allocated = md.blocks() * 512;
        let stored = if e.meta.size as usize <= self.small_max {
            match std::fs::read(&e.source) {
                Ok(data) => {
                    let mut meta = e.meta.clone();
                    meta.size = data.len() as u64;
                    let id = self.id_for(&e);
                    self.pack_object(id, meta, &data)?;
                    true
                }
                Err(err) => {
                    self.problems.push(format!("{}: not backed up: {err}", e.source.display()));
                    false
                }
            }
        } else {
            self.large_file(&e)?
        };
        if stored {
            self.unread.insert(first, Some(e.meta.path));
        }
        Ok(())
    }

    /// Packs one small file whose bytes start `data`.
    fn packed_file(&mut self, e: TreeEntry, r: FileReadResult, data: &[u8]) -> Result<(), ReadError> {
        let n = match r.len {
            Ok(n) => n,
            Err(err) => {
                self.problems.push(format!("{}: not backed up: {err}", e.source.display()));
                self.unread.insert(e.meta.path.clone(), None);
                return Ok(());
            }
        };
        let id = self.id_for(&e);
        let mut meta = e.meta;
        let changed = r.stat.is_none_or(|st| {
            st.stx_size != meta.size
                || st.stx_ino != e.ino
                || st.stx_mtime.tv_sec != meta.mtime
                || st.stx_mtime.tv_nsec != meta.mtime_nsec
        });
        if changed || n as u64 != meta.size {
            self.problems.push(format!("{}: changed while being read", e.source.display()));
            meta.size = n as u64;
        }
        self.pack_object(id, meta, &data[..n])
    }

    fn pack_object(&mut self, id: u64, meta: ObjectMeta, data: &[u8]) -> Result<(), ReadError> {
        let f = stored(id, &meta, data.len() as u64, digest(data));
        let entry = PackedEntry { object_id: id, meta, length: data.len() as u64, digest: f.digest };
        for attempt in 0..2 {
            if self.pack.is_none() {
                self.pack = Some(PackBuilder::new(self.raw_pool.take()));
            }
            let pack = self.pack.as_mut().expect("pack just made");
            if pack.push(&entry, data).expect("entries from the walker are valid") {
                self.packed.push(f);
                return Ok(());
            }
            assert_eq!(attempt, 0, "a small object does not fit an empty pack");
            self.flush_pack()?;
        }
        unreachable!("second attempt returns or asserts")
    }

    pub(super) fn flush_pack(&mut self) -> Result<(), ReadError> {
        let Some(pack) = self.pack.take() else {
            return Ok(());
        };
        let Some(first) = pack.first_object() else {
            self.raw_pool.give(pack.into_inner().0);
            return Ok(());
        };
        let (buf, len) = pack.into_inner();
        let objs = std::mem::take(&mut self.packed);
        self.send(Work::Pack { first, buf, len }, Track::Packed(objs))
    }

    /// Reads a file in units. `Ok(false)` when it could not be opened.
    fn large_file(&mut self, entry: &TreeEntry) -> Result<bool, ReadError> {
        let file = match open_source(&entry.source) {
            Ok(f) => f,
            Err(e) => {
                self.problems.push(format!("{}: not backed up: {e}", entry.source.display()));
                self.unread.insert(entry.meta.path.clone(), None);
                return Ok(false);
            }
        };
        let size = entry.meta.size;
        let mut extents = if entry.allocated < size {
            data_extents(&file, size).unwrap_or_else(|_| vec![(0, size)])
        } else {
            vec![(0, size)]
        };
        let id = self.id_for(entry);
        let segment = entry.placed.and_then(|p| p.segment);
        if let Some(seg) = segment {
            extents = clip_extents(&extents, seg.offset, seg.offset + seg.len);
            let header = SegmentHeader {
                object_id: id,
                offset: seg.offset,
                size: seg.len,
                index: seg.index,
                count: seg.count,
            };
            // The segment header comes first: restore knows before the metadata that the file
            // is written in pieces, possibly from several streams.
            self.encoded(id, &header, Track::Starts(id))?;
        }
        let starts = if segment.is_some() { Track::Nothing } else { Track::Starts(id) };
        let (length, digest, short) = self.stream_object(id, &entry.meta, &file, &extents, starts)?;
        // A block device's metadata says nothing of its contents.
        let is_file = entry.meta.kind == ObjectKind::File;
        let changed = is_file && file.metadata().map(|m| changed_during_read(entry, &m)).unwrap_or(true);
        if changed || short {
            self.problems.push(format!("{}: changed while being read", entry.source.display()));
        }
        let mut f = stored(id, &entry.meta, length, digest);
        f.segment_offset = segment.map_or(0, |s| s.offset);
        self.encoded(id, &ObjectEnd { length, digest }, Track::Ends(Box::new(f)))?;
        Ok(true)
    }

    /// Sends an object's metadata and data records; returns bytes stored, their digest, and
    /// whether the file ended early.
    fn stream_object(
        &mut self,
        id: u64,
        meta: &ObjectMeta,
        file: &File,
        extents: &[(u64, u64)],
        starts: Track,
    ) -> Result<(u64, [u8; 32], bool), ReadError> {
        self.encoded(id, meta, starts)?;
        let mut hasher = blake3::Hasher::new();
        let mut held: Option<(u64, AlignedBuf, usize)> = None;
        let mut length = 0;
        let mut short = false;
        'extents: for &(start, len) in extents {
            let mut pos = start;
            while pos < start + len {
                if self.cancel.is_cancelled() {
                    // Not ended: the writer never reports it durable, the catalog never has it.
                    if let Some((_, b, _)) = held.take() {
                        self.raw_pool.give(b);
                    }
                    return Err(ReadError::Cancelled);
                }
                let want = (start + len - pos).min(self.unit as u64) as usize;
                let mut buf = self.raw_pool.take();
                // Direct I/O reads whole blocks: ask for the aligned length, keep what is wanted.
                let aligned = (round_up(want as u64, ALIGN as u64) as usize).min(buf.len());
                let got = read_full(&mut self.ring, file, pos, &mut buf[..aligned]).min(want);
                if got == 0 {
                    self.raw_pool.give(buf);
                    short = true;
                    break 'extents;
                }
                hasher.update(&buf[..got]);
                length += got as u64;
                if let Some((off, b, n)) = held.replace((pos, buf, got)) {
                    self.send(
                        Work::Data { object: id, offset: off, last: false, buf: b, len: n },
                        Track::Nothing,
                    )?;
                }
                pos += got as u64;
                if got < want {
                    short = true;
                    break 'extents;
                }
            }
        }
        if let Some((off, b, n)) = held {
            self.send(Work::Data { object: id, offset: off, last: true, buf: b, len: n }, Track::Nothing)?;
        }
        Ok((length, *hasher.finalize().as_bytes(), short))
    }

    fn end_object(
        &mut self,
        id: u64,
        meta: &ObjectMeta,
        length: u64,
        digest: [u8; 32],
    ) -> Result<(), ReadError> {
        let f = stored(id, meta, length, digest);
        self.encoded(id, &ObjectEnd { length, digest }, Track::Ends(Box::new(f)))
    }

    /// Adds a raw volume (block device or image file) as one object named by `path`.
    pub fn add_volume(&mut self, path: &Path) -> Result<(), ReadError> {
        let vol_err = |source| ReadError::Volume { path: path.to_owned(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .or_else(|_| File::open(path))
            .map_err(vol_err)?;
        let md = file.metadata().map_err(vol_err)?;
        let meta = volume_meta(path, &file, &md).map_err(vol_err)?;
        let size = meta.size;
        let extents = if md.is_file() && md.blocks() * 512 < size {
            data_extents(&file, size).unwrap_or_else(|_| vec![(0, size)])
        } else {
            vec![(0, size)]
        };
        let id = self.object_id();
        let (length, digest, short) = self.stream_object(id, &meta, &file, &extents, Track::Starts(id))?;
        if short {
            self.problems.push(format!("{}: ended before its size", path.display()));
        }
        self.end_object(id, &meta, length, digest)
    }

    /// [`Reader::finish`], also giving the next free record number and object id.
    pub fn finish_numbered(mut self) -> Result<(Vec<String>, (u64, u64)), ReadError> {
        self.flush_pack()?;
        let numbers = self.next_numbers();
        Ok((std::mem::take(&mut self.problems), numbers))
    }

    /// Sends the last pack; the compressors see their queues close when this is dropped.
    pub fn finish(mut self) -> Result<Vec<String>, ReadError> {
        self.flush_pack()?;
        Ok(std::mem::take(&mut self.problems))
    }
}

/// The walker thread: lists the tree and deals its entries out in batches, leaving out the
/// regular files `incremental` finds unchanged.
fn deal(
    walker: TreeWalker,
    mut dealer: Dealer,
    prefix: Option<Vec<u8>>,
    skipper: Option<std::sync::Arc<dyn Skipper>>,
    cancel: &super::Cancel,
) {
    let batch = skipper.as_ref().map_or(1, |s| s.batch().max(1));
    // Entries waiting for the skipper's word, in walk order.
    let mut held: Vec<TreeEntry> = Vec::new();
    for item in walker {
        if cancel.is_cancelled() {
            break;
        }
        let more = match item {
            Ok(mut e) => {
                if let Some(p) = &prefix {
                    prefix_path(&mut e.meta, p);
                }
                match &skipper {
                    None => dealer.add(e),
                    // Asked one at a time (the box's own baseline): no batch to hold.
                    Some(s) if batch == 1 => s.skip_one(&e.meta) || dealer.add(e),
                    Some(s) => {
                        held.push(e);
                        held.len() < batch || judged(&mut held, &**s, &mut dealer)
                    }
                }
            }
            Err(p) => dealer.problem(p.to_string()),
        };
        if !more {
            return;
        }
    }
    if let Some(s) = &skipper
        && !cancel.is_cancelled()
        && !judged(&mut held, &**s, &mut dealer)
    {
        return;
    }
    dealer.finish();
}

/// Deals the held entries the skipper keeps; false when the dealer wants no more.
fn judged(held: &mut Vec<TreeEntry>, skipper: &dyn Skipper, dealer: &mut Dealer) -> bool {
    if held.is_empty() {
        return true;
    }
    let metas: Vec<&ObjectMeta> = held.iter().map(|e| &e.meta).collect();
    let skip = skipper.skip_all(&metas);
    // An answer short of the entries keeps the rest: storing a file is never wrong.
    let mut skip = skip.into_iter();
    for e in held.drain(..) {
        if !skip.next().unwrap_or(false) && !dealer.add(e) {
            return false;
        }
    }
    true
}

/// The metadata of a raw volume (block device or image file) stored as one object named by
/// its path: a block device's size is where its end is, not what `stat` says.
pub(super) fn volume_meta(path: &Path, file: &File, md: &std::fs::Metadata) -> std::io::Result<ObjectMeta> {
    let size = if md.file_type().is_block_device() {
        std::io::Seek::seek(&mut &*file, std::io::SeekFrom::End(0))?
    } else {
        md.len()
    };
    Ok(ObjectMeta {
        path: path.as_os_str().as_encoded_bytes().to_vec(),
        kind: ObjectKind::Volume,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec() as u32,
        size,
        rdev: md.rdev(),
        symlink: None,
        hardlink: None,
    })
}

/// The parts of `extents` (offset, length) that lie in `[start, end)`.
fn clip_extents(extents: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    extents
        .iter()
        .filter_map(|&(o, l)| {
            let (a, b) = (o.max(start), (o + l).min(end));
            (a < b).then_some((a, b - a))
        })
        .collect()
}

/// Opens a large file to back up: direct I/O (it is read once; the page cache would only be
/// copied through and evicted), without touching its access time where allowed, falling back
/// where the file system or the caller's rights refuse either.
fn open_source(path: &Path) -> std::io::Result<File> {
    let mut last = None;
    for flags in [libc::O_DIRECT | libc::O_NOATIME, libc::O_DIRECT, libc::O_NOATIME, 0] {
        match std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => last = Some(e),
            r => return r,
        }
    }
    Err(last.expect("tried at least once"))
}

/// Reads until `buf` is full or the file ends; a read error counts as the end (reported by
/// the caller as a short file).
fn read_full(ring: &mut Ring, file: &File, mut pos: u64, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match ring.read_at(file, pos, &mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                pos += n as u64;
            }
        }
    }
    got
}

/// Puts `prefix/` before a path (the root "." becomes the prefix itself).
pub(super) fn prefix_path(meta: &mut ObjectMeta, prefix: &[u8]) {
    let join = |p: &[u8]| {
        if p == b"." { prefix.to_vec() } else { [prefix, b"/", p].concat() }
    };
    meta.path = join(&meta.path);
    if let Some(h) = &mut meta.hardlink {
        *h = serde_bytes::ByteBuf::from(join(h));
    }
}
