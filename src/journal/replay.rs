//! Opening a journal: find the head, check every segment from the base on, decide what is
//! committed, what is a torn tail and what is damage, then hand the committed records to the
//! caller and repair the tail.

use std::collections::BTreeMap;

use super::frame::{
    FRAME_HEADER, Frame, FrameError, HeadSlot, SEGMENT_HEADER, SLOT_LEN, SegmentHeader, decode_frame,
    segment_id, segment_name,
};
use super::storage::{Dir, Storage, read_exact_at};
use super::writer::Journal;
use super::{
    FIRST_USER_KIND, HEAD_NAME, JournalError, KIND_COMMIT, KIND_SNAPSHOT_END, MAX_PAYLOAD, READ_WINDOW,
};

/// How to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Repair the tail and accept appends; fail on damage.
    Write,
    /// Change nothing; replay up to any damage and report it.
    ReadOnly,
}

/// A committed record handed to the caller during replay.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Record kind (at least [`FIRST_USER_KIND`]).
    pub kind: u16,
    /// Layout version of the kind.
    pub version: u8,
    /// Postcard payload.
    pub payload: &'a [u8],
}

/// A torn tail that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Segment file.
    pub file: String,
    /// Where the cut was made.
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// What was found there.
    pub reason: String,
}

/// What opening found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Records handed to the caller.
    pub records: u64,
    /// Segments replayed.
    pub segments: usize,
    /// Committed bytes of the segments replayed (headers and frames, up to each one's valid
    /// end): the journal's size once a torn tail is cut.
    pub bytes: u64,
    /// Uncommitted tail removed (or, read-only, that would be removed).
    pub cut: Option<Cut>,
    /// Things found and mended that lost nothing (a damaged head slot, stale files).
    pub warnings: Vec<String>,
    /// Read-only mode: the damage replay stopped at.
    pub damage: Option<JournalError>,
}

/// Result of checking one segment's frames.
#[derive(Debug)]
struct Scan {
    header: SegmentHeader,
    file_len: u64,
    /// End of the last whole, valid group.
    valid_end: u64,
    /// Sequence number after the last whole group.
    next_seq: u64,
    /// Where checking stopped early, and why.
    stop: Option<(u64, &'static str)>,
    /// A whole group holding a snapshot end was seen.
    snapshot_complete: bool,
}

/// Reads a segment's frames through a bounded window.
struct Window<'f, S> {
    file: &'f mut S,
    len: u64,
    buf: Vec<u8>,
    start: u64,
    filled: usize,
}

impl<'f, S: Storage> Window<'f, S> {
    fn new(file: &'f mut S, len: u64) -> Self {
        Window { file, len, buf: vec![0; READ_WINDOW], start: 0, filled: 0 }
    }

    /// Makes `[pos, pos + n)` (or up to the end of the file) present in the buffer.
    fn ensure(&mut self, pos: u64, n: usize) -> std::io::Result<()> {
        let want_end = (pos + n as u64).min(self.len);
        if pos >= self.start && want_end <= self.start + self.filled as u64 {
            return Ok(());
        }
        let keep_from = pos.max(self.start).min(self.start + self.filled as u64);
        let keep = (self.start + self.filled as u64 - keep_from) as usize;
        let shift = (keep_from - self.start) as usize;
        if pos >= self.start && keep > 0 {
            self.buf.copy_within(shift..shift + keep, 0);
            self.start = keep_from;
            self.filled = keep;
        } else {
            self.start = pos;
            self.filled = 0;
        }
        let end = (self.start + READ_WINDOW as u64).min(self.len);
        let need = (end - self.start) as usize;
        while self.filled < need {
            let got = self.file.read_at(self.start + self.filled as u64, &mut self.buf[self.filled..need])?;
            if got == 0 {
                break;
            }
            self.filled += got;
        }
        Ok(())
    }

    /// The frame at `pos`; `Ok(None)` exactly at the end of the file.
    fn frame(&mut self, pos: u64) -> std::io::Result<Option<Result<(Frame<'_>, usize), FrameError>>> {
        if pos >= self.len {
            return Ok(None);
        }
        self.ensure(pos, FRAME_HEADER)?;
        let at = (pos - self.start) as usize;
        let avail = &self.buf[at..self.filled];
        if avail.len() >= 4 {
            let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
            if len <= MAX_PAYLOAD {
                self.ensure(pos, FRAME_HEADER + len)?;
            }
        }
        let at = (pos - self.start) as usize;
        Ok(Some(decode_frame(&self.buf[at..self.filled])))
    }
}

fn io_err<T>(file: &str, op: &'static str, r: std::io::Result<T>) -> Result<T, JournalError> {
    r.map_err(JournalError::io(file, op))
}

/// Checks a segment's frames and groups.
fn scan<S: Storage>(file: &mut S, name: &str) -> Result<Scan, JournalError> {
    let file_len = io_err(name, "size", file.len())?;
    let mut hb = [0u8; SEGMENT_HEADER];
    let header = match read_exact_at(file, 0, &mut hb) {
        Ok(()) => SegmentHeader::decode(&hb),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err("segment shorter than its header"),
        Err(e) => return Err(JournalError::io(name, "read")(e)),
    };
    let header = header.map_err(|r| damaged(name, 0, r))?;
    let mut groups = Groups::new(&header);
    let mut stop = None;
    let mut w = Window::new(file, file_len);
    let mut pos = SEGMENT_HEADER as u64;
    loop {
        let (f, total) = match io_err(name, "read", w.frame(pos))? {
            None if groups.open() => {
                stop = Some((groups.valid_end, "group without its commit at the end"));
                break;
            }
            None => break,
            Some(Err(FrameError::Incomplete)) => {
                stop = Some((pos, "record cut short"));
                break;
            }
            Some(Err(FrameError::Bad(why))) => {
                stop = Some((pos, why));
                break;
            }
            Some(Ok(x)) => x,
        };
        if let Err(why) = groups.feed(pos, &f, total) {
            stop = Some((pos, why));
            break;
        }
        pos += total as u64;
    }
    Ok(Scan {
        header,
        file_len,
        valid_end: groups.valid_end,
        next_seq: groups.next_seq,
        stop,
        snapshot_complete: groups.snapshot_complete,
    })
}

/// The rules a segment's frames follow, checked one frame at a time: gapless sequence
/// numbers, groups closed by a matching commit, snapshot ends only in snapshot segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Groups {
    snapshot_segment: bool,
    expect: u64,
    group_first: Option<u64>,
    group_snap_end: bool,
    /// End of the last whole group.
    pub(super) valid_end: u64,
    /// Sequence number after the last whole group.
    pub(super) next_seq: u64,
    /// A whole group holding a snapshot end was seen.
    pub(super) snapshot_complete: bool,
}

impl Groups {
    pub(super) fn new(header: &SegmentHeader) -> Groups {
        Groups {
            snapshot_segment: header.snapshot,
            expect: header.first_seq,
            group_first: None,
            group_snap_end: false,
            valid_end: SEGMENT_HEADER as u64,
            next_seq: header.first_seq,
            snapshot_complete: false,
        }
    }

    /// Whether a group is open (records seen since the last commit).
    pub(super) fn open(&self) -> bool {
        self.group_first.is_some()
    }

    /// Checks the next frame, found at `pos` and `total` bytes long.
    pub(super) fn feed(&mut self, pos: u64, f: &Frame<'_>, total: usize) -> Result<(), &'static str> {
        if f.seq != self.expect {
            return Err("sequence number out of order");
        }
        if f.kind == KIND_COMMIT {
            let first = f.payload.try_into().ok().map(u64::from_le_bytes);
            if first.is_none() || first != self.group_first {
                return Err("commit does not match its group");
            }
            self.valid_end = pos + total as u64;
            self.next_seq = f.seq + 1;
            self.snapshot_complete |= self.group_snap_end;
            self.group_first = None;
            self.group_snap_end = false;
        } else if f.kind == KIND_SNAPSHOT_END && !self.snapshot_segment {
            return Err("snapshot end in a segment that holds no snapshot");
        } else if f.kind != KIND_SNAPSHOT_END && f.kind < FIRST_USER_KIND {
            return Err("reserved record kind");
        } else {
            self.group_first.get_or_insert(f.seq);
            self.group_snap_end |= f.kind == KIND_SNAPSHOT_END;
        }
        self.expect += 1;
        Ok(())
    }
}

/// Whether the segments are what an unfinished [`Journal::create`] leaves: at most segment 1,
/// holding nothing past the empty base snapshot.
fn interrupted_creation<D: Dir>(dir: &D, segments: &BTreeMap<u64, String>) -> Result<bool, JournalError> {
    match segments.keys().copied().collect::<Vec<_>>()[..] {
        [] => Ok(true),
        [1] => {
            let name = &segments[&1];
            let Some(mut f) = io_err(name, "open", dir.open(name))? else {
                return Ok(true);
            };
            match scan(&mut f, name) {
                Ok(s) => Ok(s.next_seq <= super::writer::FIRST_RECORD_SEQ),
                Err(e) if e.is_damage() => Ok(true),
                Err(e) => Err(e),
            }
        }
        _ => Ok(false),
    }
}

fn damaged(file: &str, offset: u64, reason: &str) -> JournalError {
    JournalError::Damaged { file: file.to_owned(), offset, reason: reason.to_owned() }
}

/// Reads the head: the valid slot with the highest generation, and warnings for damaged slots.
fn read_head<D: Dir>(dir: &D) -> Result<(Option<HeadSlot>, Vec<String>), JournalError> {
    let Some(mut f) = io_err(HEAD_NAME, "open", dir.open(HEAD_NAME))? else {
        return Ok((None, Vec::new()));
    };
    let mut bytes = [0u8; 2 * SLOT_LEN];
    let len = io_err(HEAD_NAME, "size", f.len())?;
    let n = (len as usize).min(bytes.len());
    io_err(HEAD_NAME, "read", read_exact_at(&mut f, 0, &mut bytes[..n]))?;
    let mut best: Option<HeadSlot> = None;
    let mut warnings = Vec::new();
    let mut bad = 0;
    for (i, chunk) in bytes.chunks_exact(SLOT_LEN).enumerate() {
        match HeadSlot::decode(chunk.try_into().expect("slot")) {
            Ok(Some(s)) if best.is_none_or(|b| s.generation > b.generation) => best = Some(s),
            Ok(_) => {}
            Err(why) => {
                bad += 1;
                warnings.push(format!("journal head slot {i} unreadable ({why}); the other slot was used"));
            }
        }
    }
    if best.is_none() && bad > 0 {
        warnings.push("no head slot is readable".into());
    }
    if let Some(b) = best
        && HeadSlot::offset(b.generation) as usize / SLOT_LEN >= 2
    {
        return Err(damaged(HEAD_NAME, 0, "head slot out of place"));
    }
    Ok((best, warnings))
}

impl<D: Dir> Journal<D> {
    /// Opens the journal in `dir` (creating an empty one there in [`Mode::Write`] if there is
    /// none) and hands every committed record, in order, to `apply`. An error from `apply`
    /// stops the open with [`JournalError::Apply`].
    pub fn open<F>(dir: D, mode: Mode, mut apply: F) -> Result<(Journal<D>, OpenReport), JournalError>
    where
        F: FnMut(RawRecord<'_>) -> Result<(), String>,
    {
        let (head, warnings) = read_head(&dir)?;
        let mut segments = BTreeMap::new();
        for name in io_err(".", "list", dir.list())? {
            if let Some(id) = segment_id(&name) {
                segments.insert(id, name);
            }
        }
        let Some(head) = head else {
            // No head: either there never was a journal, or its creation was cut short before
            // the first head write, when nothing had been committed yet.
            if !interrupted_creation(&dir, &segments)? {
                let why = warnings.last().map_or("head missing while segments exist", |w| w.as_str());
                return Err(damaged(HEAD_NAME, 0, why));
            }
            if mode == Mode::ReadOnly {
                return Err(JournalError::Missing { dir: "journal".into() });
            }
            for name in segments.values() {
                io_err(name, "remove", dir.remove(name))?;
            }
            return Journal::create(dir).map(|j| (j, OpenReport::default()));
        };
        let mut report = OpenReport { warnings, ..OpenReport::default() };
        let plan = plan_replay(&dir, &head, &segments, &mut report)?;
        let mut damage = None;
        let mut last_good = None;
        let mut plan = plan;
        for (i, seg) in plan.iter_mut().enumerate() {
            let Some(file) = io_err(&seg.name, "open", dir.open(&seg.name))? else {
                return Err(damaged(&seg.name, 0, "segment vanished during open"));
            };
            let mut file = file;
            let (end, stop) = (seg.scan.valid_end, seg.damage.take());
            replay_segment(&mut file, &seg.name, end, &mut apply, &mut report)?;
            report.segments += 1;
            report.bytes += end;
            last_good = Some(i);
            if let Some(e) = stop {
                damage = Some(e);
                break;
            }
        }
        let last = &plan[last_good.expect("at least the base segment")];
        if let Some(e) = damage {
            if mode == Mode::Write {
                return Err(e);
            }
            report.damage = Some(e);
        }
        if last.scan.file_len > last.scan.valid_end {
            let (offset, reason) =
                last.scan.stop.unwrap_or((last.scan.valid_end, "bytes after the last commit"));
            report.cut = Some(Cut {
                file: last.name.clone(),
                offset: last.scan.valid_end,
                bytes: last.scan.file_len - last.scan.valid_end,
                reason: format!("{reason} at byte {offset}"),
            });
        }
        let journal = Journal::resume(dir, mode, &head, &plan[0], last, &segments, &mut report)?;
        Ok((journal, report))
    }
}

/// A segment to replay, checked.
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) id: u64,
    pub(super) name: String,
    scan: Scan,
    /// Damage found in this segment (replay stops after its valid part).
    damage: Option<JournalError>,
}

impl Planned {
    pub(super) fn valid_end(&self) -> u64 {
        self.scan.valid_end
    }
    pub(super) fn next_seq(&self) -> u64 {
        self.scan.next_seq
    }
}

/// Chooses the segments to replay and checks each: the newest complete snapshot at or after
/// the head's base, then every segment after it, each continuing the one before.
fn plan_replay<D: Dir>(
    dir: &D,
    head: &HeadSlot,
    segments: &BTreeMap<u64, String>,
    report: &mut OpenReport,
) -> Result<Vec<Planned>, JournalError> {
    let mut scans = Vec::new();
    for (&id, name) in segments.range(head.base..) {
        if scans.last().is_some_and(|p: &Planned| p.id + 1 != id) {
            return Err(damaged(name, 0, "segment numbers have a gap before this one"));
        }
        let Some(mut f) = io_err(name, "open", dir.open(name))? else {
            continue;
        };
        let scan = match scan(&mut f, name) {
            Ok(s) => s,
            // A segment past the head's whose header is unreadable: a rotation or snapshot
            // that a crash cut short before the head moved to it. It and any later are stale.
            Err(e) if e.is_damage() && id > head.segment => break,
            Err(e) => return Err(e),
        };
        if scan.header.id != id {
            return Err(damaged(name, 0, "segment header names another segment"));
        }
        scans.push(Planned { id, name: name.clone(), scan, damage: None });
    }
    if scans.first().is_none_or(|p| p.id != head.base) || scans.last().is_none_or(|p| p.id < head.segment) {
        return Err(damaged(HEAD_NAME, 0, "a segment the head names is missing"));
    }
    // A newer complete snapshot than the base (its head update was lost) supersedes it.
    let start =
        scans.iter().rposition(|p| p.scan.header.snapshot && p.scan.snapshot_complete).ok_or_else(|| {
            damaged(&scans[0].name, SEGMENT_HEADER as u64, "base segment holds no complete snapshot")
        })?;
    if start > 0 {
        report.warnings.push(format!("replay starts at the newer snapshot in {}", scans[start].name));
    }
    let mut plan: Vec<Planned> = scans.drain(start..).collect();
    // A snapshot segment that is not the start is one whose writing a crash cut short: it and
    // anything after it were never acknowledged.
    if let Some(i) = plan.iter().skip(1).position(|p| p.scan.header.snapshot).map(|i| i + 1) {
        if plan[i..].iter().any(|p| p.id <= head.segment) {
            return Err(damaged(&plan[i].name, 0, "unfinished snapshot inside the committed journal"));
        }
        plan.truncate(i);
    }
    let mut cut_at = None;
    for i in 0..plan.len() {
        let required = match plan[i].id {
            id if id < head.segment => plan[i].scan.file_len,
            id if id == head.segment => head.durable_len,
            _ => SEGMENT_HEADER as u64,
        };
        let s = &plan[i].scan;
        if i > 0 {
            let prev = &plan[i - 1].scan;
            if s.header.first_seq != prev.next_seq || s.header.prev_len != prev.valid_end {
                plan[i].damage =
                    Some(damaged(&plan[i].name, 0, "segment does not continue the one before it"));
                cut_at.get_or_insert(i);
                break;
            }
        }
        if s.valid_end < required {
            let (offset, why) = s.stop.unwrap_or((s.valid_end, "committed records missing"));
            let why = if s.valid_end < s.file_len || s.stop.is_some() {
                why.to_owned()
            } else {
                "segment ends before its committed length".to_owned()
            };
            plan[i].damage = Some(damaged(&plan[i].name, offset, &why));
            cut_at.get_or_insert(i);
            break;
        }
        if s.valid_end < s.file_len {
            cut_at.get_or_insert(i);
            break;
        }
    }
    let last = plan.last().expect("plan starts with the base");
    if last.id == head.segment
        && last.scan.valid_end == head.durable_len
        && last.scan.next_seq != head.next_seq
    {
        return Err(damaged(HEAD_NAME, 0, "head and segment disagree on the next sequence number"));
    }
    if let Some(i) = cut_at {
        // Whatever follows a damaged or torn segment must hold no committed record.
        let records_follow = plan[i + 1..].iter().any(|l| l.scan.valid_end > SEGMENT_HEADER as u64);
        if records_follow && plan[i].damage.is_none() {
            let e = damaged(&plan[i].name, plan[i].scan.valid_end, "records follow a torn tail");
            plan[i].damage = Some(e);
        }
        plan.truncate(i + 1);
    }
    Ok(plan)
}

/// Hands the records of `[header, end)` of one segment to `apply`.
fn replay_segment<S: Storage, F>(
    file: &mut S,
    name: &str,
    end: u64,
    apply: &mut F,
    report: &mut OpenReport,
) -> Result<(), JournalError>
where
    F: FnMut(RawRecord<'_>) -> Result<(), String>,
{
    let mut w = Window::new(file, end);
    let mut pos = SEGMENT_HEADER as u64;
    while pos < end {
        let (f, total) = match io_err(name, "read", w.frame(pos))? {
            Some(Ok(x)) => x,
            // The file changed between the check and the replay.
            _ => return Err(damaged(name, pos, "segment changed while being replayed")),
        };
        if f.kind >= FIRST_USER_KIND {
            let rec = RawRecord { seq: f.seq, kind: f.kind, version: f.version, payload: f.payload };
            apply(rec).map_err(|reason| JournalError::Apply {
                file: name.to_owned(),
                offset: pos,
                seq: f.seq,
                reason,
            })?;
            report.records += 1;
        }
        pos += total as u64;
    }
    Ok(())
}

/// Names of segments that are not part of the replay plan and may be removed.
pub(super) fn stale_segments(
    segments: &BTreeMap<u64, String>,
    first: u64,
    last: u64,
) -> impl Iterator<Item = &String> {
    segments.iter().filter(move |(id, _)| **id < first || **id > last).map(|(_, n)| n)
}

/// Name of segment `id` (re-exported for the writer).
pub(super) fn name_of(id: u64) -> String {
    segment_name(id)
}
