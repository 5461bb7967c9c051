//! The agents' disk spool (seed 002): between the compressors and a tape drive, a ring file on
//! a disk of the box that fills as the agents deliver and drains into the drive at once.
//!
//! Agents over a network often deliver, together, less than a drive streams. Fed directly, the
//! drive's buffer runs dry again and again and the tape stops and repositions each time
//! (shoe-shine), which is slow and wears tape and heads. Through the spool the writer waits
//! until the spool is full (or the agents are done), then drains it while it keeps filling:
//! the drive writes at full speed or not at all, and stops once per spool's worth rather than
//! once per drive buffer's worth.
//!
//! Every record keeps its place in the stream: the spool is first in, first out. Each frame is
//! checked (CRC-32) when read back, so a spool disk that returns other bytes fails the stream
//! rather than writing them to tape. A spool that cannot be written (its disk full or broken)
//! is drained and then bypassed: the records go straight to the drive, and the summary says so.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use super::pool::Pool;
use super::{Cancel, Encoded, EncodedBytes, Track};
use crate::catalog::StoredObject;
use crate::device::DeviceError;

/// Where a spool lives and the most it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSpec {
    /// A directory on a disk of the box.
    pub dir: PathBuf,
    /// Bytes the ring file takes (reserved at start).
    pub size: u64,
}

/// When the drive is fed. Pure: the filler and the drainer tell it what they see.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Gate {
    draining: bool,
    /// Times the drive was started from a full spool (or for the last records).
    pub bursts: u64,
}

impl Gate {
    /// Whether the drainer takes the next record, with `held` bytes in the spool; `full`: the
    /// filler waits for room (or cannot spool any more); `ended`: no more records come.
    pub fn drain(&mut self, held: u64, full: bool, ended: bool) -> bool {
        if held == 0 {
            // Empty: the drive stops until the spool is full again.
            self.draining = false;
            return false;
        }
        if !self.draining && (full || ended) {
            self.draining = true;
            self.bursts += 1;
        }
        self.draining
    }
}

/// A record's track, as the spool stores it.
#[derive(Debug, Serialize, Deserialize)]
enum Tracked {
    Nothing,
    Starts(u64),
    Ends(Box<StoredObject>),
    Packed(Vec<StoredObject>),
    Sync,
}

impl From<Track> for Tracked {
    fn from(t: Track) -> Tracked {
        match t {
            Track::Nothing => Tracked::Nothing,
            Track::Starts(a) => Tracked::Starts(a),
            Track::Ends(o) => Tracked::Ends(o),
            Track::Packed(v) => Tracked::Packed(v),
            Track::Sync => Tracked::Sync,
        }
    }
}

impl From<Tracked> for Track {
    fn from(t: Tracked) -> Track {
        match t {
            Tracked::Nothing => Track::Nothing,
            Tracked::Starts(a) => Track::Starts(a),
            Tracked::Ends(o) => Track::Ends(o),
            Tracked::Packed(v) => Track::Packed(v),
            Tracked::Sync => Track::Sync,
        }
    }
}

/// What a frame says besides the record's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct FrameMeta {
    raw: u64,
    lane: u64,
    track: Tracked,
}

/// Frame header: meta length, bytes length, CRC-32 of meta and bytes (little-endian u32s).
const FRAME_HEADER: usize = 12;
/// Records below this size are read back into allocations of their own, not pool buffers.
const SMALL: usize = 64 << 10;

/// Encodes a frame's header and meta; the record's bytes follow them in the ring.
fn frame_head(meta: &FrameMeta, bytes: &[u8]) -> Vec<u8> {
    let meta = postcard::to_allocvec(meta).expect("frame meta encodes");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&meta);
    crc.update(bytes);
    let mut head = Vec::with_capacity(FRAME_HEADER + meta.len());
    head.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    head.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    head.extend_from_slice(&crc.finalize().to_le_bytes());
    head.extend_from_slice(&meta);
    head
}

/// The ring file: logical offsets grow without end; byte `at` lives at `at % cap`.
#[derive(Debug)]
struct Ring {
    file: File,
    cap: u64,
    name: String,
}

impl Ring {
    /// Calls `io` for the pieces of `[at, at + len)` as they lie in the file.
    fn pieces(
        &self,
        at: u64,
        len: usize,
        mut io: impl FnMut(u64, std::ops::Range<usize>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut done = 0;
        while done < len {
            let pos = (at + done as u64) % self.cap;
            let n = (len - done).min((self.cap - pos) as usize);
            io(pos, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    fn put(&self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.pieces(at, bytes.len(), |pos, r| self.file.write_all_at(&bytes[r], pos))
    }

    fn get(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len();
        self.pieces(at, len, |pos, r| self.file.read_exact_at(&mut buf[r], pos))
    }
}

/// What the filler and the drainer share.
#[derive(Debug, Default)]
struct Level {
    /// Bytes ever put in and taken out: the spool holds `head - tail`.
    head: u64,
    tail: u64,
    /// The filler waits for room.
    waiting: bool,
    /// The filler sends no more.
    ended: bool,
    /// Why the spool is bypassed, once it is.
    broken: Option<String>,
    gate: Gate,
    spooled: u64,
    /// The writer stopped taking records.
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    ring: Ring,
    level: Mutex<Level>,
    /// Signalled when records come or the filler waits or ends.
    data: Condvar,
    /// Signalled when records leave.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Level> {
        self.level.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a spool went, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolReport {
    /// Record bytes that went through it.
    pub bytes: u64,
    /// Times the drive was started from it.
    pub bursts: u64,
    /// Why it was bypassed, when it was.
    pub broken: Option<String>,
}

impl SpoolReport {
    /// One line for the summary's notes.
    pub fn line(&self, dir: &Path) -> String {
        let mut s = format!(
            "spool {}: {} went through it, the drive started {} time(s) from it",
            dir.display(),
            crate::human::bytes(self.bytes),
            self.bursts
        );
        if let Some(why) = &self.broken {
            s.push_str(&format!("; then it failed ({why}) and the rest went straight to the drive"));
        }
        s
    }
}

/// Opens a spool in `spec.dir` for one stream, reserving its whole size on disk (so a disk
/// that cannot hold it is known before the backup, not in the middle). The file has no name:
/// it is gone with the stream, and a crash leaves nothing behind.
pub fn open(spec: &SpoolSpec, stream: u16) -> Result<File, String> {
    let what = format!("the spool {}", spec.dir.display());
    std::fs::create_dir_all(&spec.dir).map_err(|e| format!("cannot create {what}: {e}"))?;
    let path = spec.dir.join(format!(".coffer-spool-{}-{stream}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("cannot create a file in {what}: {e}"))?;
    let _ = std::fs::remove_file(&path);
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, spec.size).map_err(|e| {
        format!(
            "cannot reserve {} in {what}: {e}; free space there or lower agents.spool_size",
            crate::human::bytes(spec.size)
        )
    })?;
    Ok(file)
}

/// The spool's two ends: a filler thread takes the compressors' records in turn and puts them
/// in; [`Drainer::take`] hands them to the writer.
#[derive(Debug)]
pub struct Drainer {
    shared: Arc<Shared>,
    /// Records that came after the spool broke, straight from the filler.
    direct: Receiver<Encoded>,
    /// Buffers for records read back (the writer returns them here).
    pool: Pool,
    /// The compressors' buffers (records that came direct are copied, their buffers returned).
    out_pool: Pool,
    filler: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    /// Starts filling `file` (of `size` bytes) from `outs`, taken in turn as the writer would.
    /// `pool` must be a pool of its own with at least two buffers; `out_pool` is the
    /// compressors'.
    pub fn start(
        file: File,
        size: u64,
        name: String,
        outs: Vec<Receiver<Encoded>>,
        pool: Pool,
        out_pool: Pool,
        cancel: Cancel,
    ) -> Drainer {
        let shared = Arc::new(Shared {
            ring: Ring { file, cap: size, name },
            level: Mutex::new(Level::default()),
            data: Condvar::new(),
            room: Condvar::new(),
        });
        let (direct_tx, direct) = bounded::<Encoded>(1);
        let (s, op) = (shared.clone(), out_pool.clone());
        let filler = std::thread::Builder::new()
            .name("spool-fill".into())
            .spawn(move || fill(&s, &outs, &direct_tx, &op, &cancel))
            .expect("spawn spool filler");
        Drainer { shared, direct, pool, out_pool, filler: Some(filler) }
    }

    /// The next record in stream order, once the gate lets it through; `None` at the end.
    pub fn take(&mut self) -> Result<Option<Encoded>, DeviceError> {
        let s = &*self.shared;
        let mut l = s.lock();
        loop {
            let held = l.head - l.tail;
            let (full, ended) = (l.waiting || l.broken.is_some(), l.ended);
            if l.gate.drain(held, full, ended) {
                let at = l.tail;
                drop(l);
                let (rec, len) = self.read_frame(at)?;
                let mut l = s.lock();
                l.tail += len;
                s.room.notify_one();
                return Ok(Some(rec));
            }
            if held == 0 && l.broken.is_some() {
                drop(l);
                return Ok(self.direct.recv().ok().map(|r| self.copied(r)));
            }
            if held == 0 && ended {
                return Ok(None);
            }
            l = s.data.wait(l).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reads and checks the frame at `at`; returns the record and the frame's length.
    fn read_frame(&self, at: u64) -> Result<(Encoded, u64), DeviceError> {
        let ring = &self.shared.ring;
        let io = |source| DeviceError::Io { op: "read back", what: ring.name.clone(), source };
        let bad = |detail: String| DeviceError::BadMedium { what: ring.name.clone(), detail };
        let mut h = [0u8; FRAME_HEADER];
        ring.get(at, &mut h).map_err(io)?;
        let word = |i: usize| u32::from_le_bytes(h[i * 4..i * 4 + 4].try_into().expect("4 bytes")) as usize;
        let (meta_len, len, crc) = (word(0), word(1), word(2) as u32);
        let frame = (FRAME_HEADER + meta_len + len) as u64;
        if frame > ring.cap {
            return Err(bad(format!(
                "the frame at byte {at} claims {frame} bytes: the spool disk returned other bytes"
            )));
        }
        let mut meta = vec![0u8; meta_len];
        ring.get(at + FRAME_HEADER as u64, &mut meta).map_err(io)?;
        let mut bytes = if len < SMALL || len > self.pool.buf_size() {
            EncodedBytes::Small(vec![0u8; len])
        } else {
            EncodedBytes::Pooled(self.pool.take(), len)
        };
        let body = match &mut bytes {
            EncodedBytes::Small(v) => &mut v[..],
            EncodedBytes::Pooled(b, n) => &mut b[..*n],
        };
        ring.get(at + (FRAME_HEADER + meta_len) as u64, body).map_err(io)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&meta);
        hasher.update(body);
        let meta: Option<FrameMeta> = postcard::from_bytes(&meta).ok();
        let (true, Some(meta)) = (hasher.finalize() == crc, meta) else {
            if let EncodedBytes::Pooled(b, _) = bytes {
                self.pool.give(b);
            }
            return Err(bad(format!(
                "the record spooled at byte {at} fails its check when read back: the spool disk returned other bytes"
            )));
        };
        Ok((Encoded { bytes, track: meta.track.into(), raw: meta.raw, lane: meta.lane }, frame))
    }

    /// A record that came direct, in a buffer of this drainer's pool.
    fn copied(&self, mut rec: Encoded) -> Encoded {
        if let EncodedBytes::Pooled(buf, n) = rec.bytes {
            let mut mine = self.pool.take();
            mine[..n].copy_from_slice(&buf[..n]);
            self.out_pool.give(buf);
            rec.bytes = EncodedBytes::Pooled(mine, n);
        }
        rec
    }

    /// Ends the spool and says how it went. After the last record the filler has ended; a
    /// writer that stops early (a failed device) tells it to stop taking records, so that the
    /// compressors and the reader stop as they do without a spool.
    pub fn finish(mut self) -> SpoolReport {
        let filler = self.filler.take().expect("filler");
        let report = {
            let mut l = self.shared.lock();
            l.stopped = true;
            self.shared.room.notify_all();
            SpoolReport { bytes: l.spooled, bursts: l.gate.bursts, broken: l.broken.clone() }
        };
        if filler.is_finished() {
            let _ = filler.join();
        }
        report
    }
}

/// The filler: takes records from the compressors in turn and puts them in the spool, waiting
/// for room when it is full. Once it cannot write (or a record would not fit in the whole
/// spool), records go to `direct` after those spooled.
fn fill(s: &Shared, outs: &[Receiver<Encoded>], direct: &Sender<Encoded>, out_pool: &Pool, cancel: &Cancel) {
    let give = |rec: Encoded| {
        if let EncodedBytes::Pooled(buf, _) = rec.bytes {
            out_pool.give(buf);
        }
    };
    let mut k = 0usize;
    while let Ok(rec) = outs[k % outs.len()].recv() {
        k += 1;
        if s.lock().stopped {
            // The writer stopped: dropping the queues tells the compressors.
            give(rec);
            return;
        }
        if cancel.is_cancelled() {
            // The writer drops what comes after a cancel: there is no need to spool it.
            give(rec);
            continue;
        }
        // Bypassed, it goes direct: the drainer takes it once the spool is empty.
        if let Some(rec) = spool_one(s, rec, out_pool)
            && let Err(e) = direct.send(rec)
        {
            give(e.0);
            return;
        }
    }
    let mut l = s.lock();
    l.ended = true;
    s.data.notify_all();
}

/// Puts `rec` in the spool; gives it back when the spool is bypassed.
fn spool_one(s: &Shared, rec: Encoded, out_pool: &Pool) -> Option<Encoded> {
    let Encoded { bytes, track, raw, lane } = rec;
    let meta = FrameMeta { raw, lane, track: track.into() };
    let head = frame_head(&meta, bytes.as_slice());
    let len = (head.len() + bytes.as_slice().len()) as u64;
    let back = |meta: FrameMeta, bytes| Some(Encoded { bytes, track: meta.track.into(), raw, lane });
    let mut l = s.lock();
    if l.broken.is_none() && len > s.ring.cap {
        l.broken = Some(format!("a record of {len} bytes is larger than the spool"));
        s.data.notify_all();
    }
    while l.broken.is_none() && !l.stopped && l.head + len - l.tail > s.ring.cap {
        l.waiting = true;
        s.data.notify_all();
        l = s.room.wait(l).unwrap_or_else(|e| e.into_inner());
    }
    l.waiting = false;
    if l.broken.is_some() || l.stopped {
        return back(meta, bytes);
    }
    let at = l.head;
    drop(l);
    // [head, head + len) is free: the drainer reads only below head.
    let wrote = s.ring.put(at, &head).and_then(|()| s.ring.put(at + head.len() as u64, bytes.as_slice()));
    let mut l = s.lock();
    if let Err(e) = wrote {
        l.broken = Some(format!("writing {} failed: {e}", s.ring.name));
        s.data.notify_all();
        return back(meta, bytes);
    }
    l.head += len;
    l.spooled += len;
    s.data.notify_all();
    drop(l);
    if let EncodedBytes::Pooled(buf, _) = bytes {
        out_pool.give(buf);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_starts_the_drive_only_from_a_full_spool_and_runs_it_dry() {
        let mut g = Gate::default();
        // Filling: nothing goes to the drive.
        assert!(!g.drain(10, false, false));
        assert!(!g.drain(90, false, false));
        // Full: drain, and keep draining while records keep coming, until empty.
        assert!(g.drain(100, true, false));
        assert!(g.drain(60, false, false));
        assert!(g.drain(5, false, false));
        assert!(!g.drain(0, false, false));
        assert!(!g.drain(40, false, false));
        // The end drains what is left even when the spool is not full.
        assert!(g.drain(40, false, true));
        assert!(!g.drain(0, false, true));
        assert_eq!(g.bursts, 2);
    }

    /// Records of `sizes` bytes (each filled with its number), dealt to two "compressors" in
    /// turn as the reader deals units; the last one ends an object.
    fn feed(sizes: &[usize], out_pool: &Pool) -> Vec<Receiver<Encoded>> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| bounded::<Encoded>(2)).unzip();
        let sizes = sizes.to_vec();
        let pool = out_pool.clone();
        std::thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                let bytes = if n >= SMALL {
                    let mut b = pool.take();
                    b[..n].fill(i as u8);
                    EncodedBytes::Pooled(b, n)
                } else {
                    EncodedBytes::Small(vec![i as u8; n])
                };
                let track = if i + 1 == sizes.len() { Track::Starts(i as u64) } else { Track::Nothing };
                let rec = Encoded { bytes, track, raw: n as u64 * 2, lane: 1 << 40 };
                if txs[i % 2].send(rec).is_err() {
                    return;
                }
            }
        });
        rxs
    }

    /// A drainer of a spool `file` of `cap` bytes, fed records of `sizes` (see [`feed`]).
    fn started(file: File, cap: u64, name: &str, sizes: &[usize]) -> Drainer {
        let out_pool = Pool::new(8, 256 << 10);
        let outs = feed(sizes, &out_pool);
        let pool = Pool::new(2, 256 << 10);
        Drainer::start(file, cap, name.into(), outs, pool, out_pool, Cancel::default())
    }

    fn spool_file(size: u64) -> File {
        let dir = std::env::temp_dir().join(format!("coffer-spool-unit-{}", std::process::id()));
        open(&SpoolSpec { dir, size }, 0).unwrap()
    }

    /// Takes every record from the drainer, checking each against what `feed` made.
    fn drain_all(d: &mut Drainer, sizes: &[usize]) -> Result<usize, DeviceError> {
        let mut got = 0;
        while let Some(rec) = d.take()? {
            let i = got;
            assert_eq!(rec.bytes.as_slice().len(), sizes[i], "record {i}");
            assert!(rec.bytes.as_slice().iter().all(|&b| b == i as u8), "record {i}'s bytes");
            assert_eq!((rec.raw, rec.lane), (sizes[i] as u64 * 2, 1 << 40));
            let last = i + 1 == sizes.len();
            assert!(
                matches!(rec.track, Track::Starts(n) if last && n == i as u64)
                    || (!last && matches!(rec.track, Track::Nothing))
            );
            if let EncodedBytes::Pooled(b, _) = rec.bytes {
                d.pool.give(b);
            }
            got += 1;
        }
        Ok(got)
    }

    #[test]
    fn records_come_out_in_order_and_whole_through_a_small_ring() {
        // Sizes that do not divide the ring, so frames wrap around its end.
        let sizes: Vec<usize> = (0..60).map(|i| [100_000, 70_001, 300, 250_000][i % 4]).collect();
        let (cap, total) = (1u64 << 20, sizes.iter().sum::<usize>() as u64);
        let mut d = started(spool_file(cap), cap, "t", &sizes);
        assert_eq!(drain_all(&mut d, &sizes).unwrap(), sizes.len());
        let r = d.finish();
        assert_eq!(r.broken, None);
        assert!(r.bytes > total, "every record went through the spool, framed");
        // Every burst but the last started from a full spool and ran it dry.
        let per_burst = cap - 260_000;
        assert!(r.bursts >= 2 && r.bursts <= r.bytes / per_burst + 1, "{} bursts", r.bursts);
    }

    #[test]
    fn a_spool_that_cannot_be_written_is_bypassed_in_order() {
        let sizes: Vec<usize> = (0..20).map(|i| if i % 3 == 0 { 100_000 } else { 500 }).collect();
        // A file open only for reading: every write fails as on a broken disk.
        let path = std::env::temp_dir().join(format!("coffer-spool-ro-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let ro = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut d = started(ro, 1 << 20, "t", &sizes);
        assert_eq!(drain_all(&mut d, &sizes).unwrap(), sizes.len());
        let r = d.finish();
        assert!(r.broken.as_deref().is_some_and(|w| w.contains("writing t failed")), "{r:?}");
        assert!(r.line(Path::new("/s")).contains("went straight to the drive"));
    }

    #[test]
    fn a_spool_disk_returning_other_bytes_fails_the_stream() {
        let sizes = vec![100_000usize; 30];
        let file = spool_file(1 << 20);
        let spy = file.try_clone().unwrap();
        let mut d = started(file, 1 << 20, "the spool in /s", &sizes);
        // Wait until the spool is full (the first burst starts), then spoil a byte of the
        // second frame's bytes.
        let first = d.take().unwrap().unwrap();
        drop(first);
        spy.write_all_at(&[0xEE], 100_000 + 2 * 200).unwrap();
        let e = (0..sizes.len()).find_map(|_| d.take().err()).expect("the spoiled record is refused");
        assert!(e.to_string().contains("fails its check when read back"), "{e}");
        assert!(e.to_string().contains("the spool in /s"), "{e}");
        d.finish();
    }

    #[test]
    fn frames_wrap_around_the_ring() {
        let dir = std::env::temp_dir().join(format!("coffer-spool-test-{}", std::process::id()));
        let spec = SpoolSpec { dir: dir.clone(), size: 1000 };
        let file = open(&spec, 0).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the spool file has no name");
        let ring = Ring { file, cap: 1000, name: "t".into() };
        let data: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        ring.put(600, &data).unwrap();
        let mut back = vec![0u8; 700];
        ring.get(600, &mut back).unwrap();
        assert_eq!(back, data);
        let _ = std::fs::remove_dir(&dir);
    }
}
