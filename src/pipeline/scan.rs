//! `scan`: rebuilds catalog entries from media alone (seed 001's scan and merge). Each medium is
//! walked part by part, reading record headers and skipping data payloads; sessions are put
//! together from their headers, parts, object end records, index and trailer, and the ones the
//! catalog lacks are added. A part torn by a crash is reported and skipped: the walk finds the
//! next part at a following block boundary.
//!
//! Media of format version 2 say whether a session was incremental, on which session, with
//! which source key, and list the files a complete incremental kept: a rebuilt catalog restores
//! an incremental session whole and bases the next incremental on it. Version-1 media say none
//! of that: their sessions come back as full ones without a source key (never a base).
//!
//! Multiplexed sessions get their runs back: each record walked goes, with its place in its
//! part, to a [`RunsBuilder`] as the writer's did, its lane read from its header
//! ([`lane_of_record`]); a part walked to its end that holds multiplexed records is journaled
//! with its runs (`PartRuns`), so that a restore of one agent's trees reads only their runs.
//! A torn part has none: it is read whole.

use std::collections::BTreeMap;
use std::ops::Range;

use super::runs::{RunsBuilder, lane_of_record};
use crate::catalog::{
    Catalog, LaneRun, MediumAdded, MediumState, MediumUpdated, Record, SessionFinished, SessionKind,
    SessionMode, SessionPart, SessionStarted, StoredObject, StreamCut, kept_batches, object_batches,
    object_cost, run_batches,
};
use crate::device::aligned::round_up;
use crate::device::{DeviceError, Media, PartRange, PartReader};
use crate::format::records::{IndexEntry, ObjectKind, SessionHeader, SessionStatus, Trailer, VolumeLabel};
use crate::format::{Body, HEADER_LEN, Header, Kind, PackEntries, decode_record, unpack};
use crate::store::{State, StoreError};

/// Payloads larger than this are skipped by reopening past them rather than read through.
const SKIP_BY_SEEK: u32 = 256 << 10;
/// Estimated journal bytes per commit of a rebuilt session, well under the journal's group
/// limit: a session of many objects is committed in several groups.
const COMMIT_BYTES: usize = 16 << 20;

/// What a scan found and did.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Media read.
    pub media: usize,
    /// Sessions added to the catalog.
    pub sessions_added: usize,
    /// Sessions the catalog already had.
    pub sessions_known: usize,
    /// Objects added.
    pub objects_added: usize,
    /// Torn parts, unreadable media, conflicts.
    pub problems: Vec<String>,
}

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The media could not be listed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The catalog could not be changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session as pieced together from the media.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) header: Option<SessionHeader>,
    /// (medium, position, tape file number) of each (stream, part).
    parts: BTreeMap<(u16, u32), ([u8; 16], u64, u32)>,
    /// The length and runs of each (stream, part) walked to its end that holds multiplexed
    /// records.
    runs: BTreeMap<(u16, u32), (u64, Vec<LaneRun>)>,
    index: Vec<IndexEntry>,
    /// Each piece's digest, by (object, segment offset): the pieces of a split file each end
    /// with their own.
    digests: BTreeMap<(u64, u64), [u8; 32]>,
    /// The segment each stream's objects are in, until their end record (a piece may go on
    /// in the stream's next part).
    segment_at: BTreeMap<(u16, u64), u64>,
    /// Each stream's trailer, by stream.
    pub(super) trailers: BTreeMap<u16, Trailer>,
    /// The files a complete incremental kept, from stream 0, and how many records held them.
    kept: Vec<Vec<u8>>,
    kept_records: u32,
}

/// Scans every medium of `media` (at `location`) into `store`.
pub fn scan(media: &mut dyn Media, location: &str, store: &mut impl State) -> Result<ScanReport, ScanError> {
    let mut report = ScanReport::default();
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    let labels = media.labels()?;
    report.problems.extend(media.unreadable());
    for label in &labels {
        report.media += 1;
        let used = match walk_medium(media, label, &mut found) {
            Ok((used, problems)) => {
                report.problems.extend(problems);
                used
            }
            Err(e) => {
                report.problems.push(format!("medium {}: {e}", label.barcode));
                0
            }
        };
        if store.read(|c| c.medium(label.medium).is_none()) {
            let added = MediumAdded {
                medium: label.medium,
                barcode: label.barcode.clone(),
                pool: label.pool.clone(),
                kind: media.kind(),
                block_size: label.block_size,
                capacity: used,
                created: label.created,
                location: location.to_owned(),
            };
            let upd = MediumUpdated { medium: label.medium, used, state: MediumState::Writable };
            store.commit(&[Record::from(added), Record::from(upd)])?;
        }
    }
    for (id, f) in found {
        match store.read(|c| session_records(c, id, f)) {
            Ok(Some(records)) => {
                let objects: usize = records
                    .iter()
                    .map(|r| match r {
                        Record::ObjectsStored(b) => b.objects.len(),
                        _ => 0,
                    })
                    .sum();
                for group in groups(&records) {
                    store.commit(group)?;
                }
                report.sessions_added += 1;
                report.objects_added += objects;
            }
            Ok(None) => report.sessions_known += 1,
            Err(p) => report.problems.push(p),
        }
    }
    Ok(report)
}

/// Splits a session's records into commit groups of about [`COMMIT_BYTES`] each. A failure
/// between groups leaves the session started and unfinished, as a crash mid-backup does: the
/// next command that takes the state lock closes it as interrupted, and what was committed
/// restores.
fn groups(records: &[Record]) -> Vec<&[Record]> {
    let cost = |r: &Record| match r {
        Record::ObjectsStored(b) => b.objects.iter().map(object_cost).sum::<usize>(),
        // Three varints per run.
        Record::PartRuns(b) => b.runs.len() * 30 + 64,
        Record::FilesKept(k) => k.paths.iter().map(|p| p.len() + 2).sum::<usize>() + 64,
        _ => 256,
    };
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        if bytes + cost(r) > COMMIT_BYTES && i > start {
            out.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost(r);
    }
    out.push(&records[start..]);
    out
}

/// The records that add a found session, `None` if the catalog has it.
fn session_records(catalog: &Catalog, id: u64, mut f: Found) -> Result<Option<Vec<Record>>, String> {
    let Some(h) = f.header.take() else {
        return Err(format!("session {id}: its first part was not found"));
    };
    if let Some(known) = catalog.session(id) {
        if known.start().started == h.started && known.start().host == h.host {
            return Ok(None);
        }
        return Err(format!("session {id} on the media differs from catalog session {id}: not merged"));
    }
    if id < catalog.next_session_id() {
        return Err(format!("session {id}: the catalog has used that id for another session: not merged"));
    }
    // Restoring an incremental takes its base; once a later id is in, the base cannot be
    // merged any more, so it waits for its base rather than going in without it.
    if let SessionKind::Incremental { base } = h.kind
        && catalog.session(base).is_none()
    {
        return Err(format!(
            "session {id} is incremental on session {base}, which neither the catalog nor these media \
             hold: not merged; scan the media holding session {base} (with these, or first)"
        ));
    }
    let mode = if f.index.iter().any(|e| e.kind == ObjectKind::Volume) {
        SessionMode::Volume
    } else {
        SessionMode::Files
    };
    let mut recs = vec![Record::from(SessionStarted {
        session: id,
        job: h.job_id,
        host: h.host.clone(),
        source: h.source.clone(),
        started: h.started,
        streams: h.streams,
        mode,
        // Version-1 media read as full without a key: never a later incremental's base.
        kind: h.kind,
        source_key: h.source_key,
    })];
    for (&(stream, part), &(medium, position, file_number)) in &f.parts {
        recs.push(Record::from(SessionPart { session: id, stream, part, medium, position, file_number }));
    }
    // Each part's runs follow its part: the catalog takes runs of parts it knows.
    for (&(stream, part), (len, runs)) in &f.runs {
        recs.extend(run_batches(id, stream, part, *len, runs).into_iter().map(Record::from));
    }
    let objects = found_objects(&f);
    recs.extend(object_batches(id, objects).into_iter().map(Record::from));
    // A stream without a trailer ended in a crash or a device failure: it is cut, and the
    // session is recorded as failed (what the other streams hold stays restorable).
    for stream in 0..h.streams {
        if !f.trailers.contains_key(&stream) {
            recs.push(Record::from(StreamCut { session: id, stream }));
        }
    }
    let status = found_status(&f, h.streams);
    if let Some(kept) = found_kept(&mut f, h.kind, status) {
        recs.extend(kept_batches(id, kept.iter().map(Vec::as_slice), true).into_iter().map(Record::from));
    }
    let whole = f.trailers.len() == usize::from(h.streams);
    let sum = |get: fn(&Trailer) -> u64| f.trailers.values().map(get).sum::<u64>();
    let finished = SessionFinished {
        session: id,
        ended: f.trailers.values().map(|t| t.ended).max().unwrap_or(h.started),
        status,
        objects: if whole { sum(|t| t.objects) } else { f.index.len() as u64 },
        raw_bytes: sum(|t| t.raw_bytes),
        stored_bytes: sum(|t| t.stored_bytes),
    };
    recs.push(Record::from(finished));
    Ok(Some(recs))
}

/// How a found session ended: as its trailers say when every stream has one, else failed.
pub(super) fn found_status(f: &Found, streams: u16) -> SessionStatus {
    let whole = f.trailers.len() == usize::from(streams);
    match f.trailers.values().next() {
        Some(t) if whole => t.status,
        _ => SessionStatus::Failed,
    }
}

/// The files a complete incremental kept, sorted, when every record of the list was read;
/// otherwise `None` (restore falls back to the directories the session holds).
pub(super) fn found_kept(f: &mut Found, kind: SessionKind, status: SessionStatus) -> Option<Vec<Vec<u8>>> {
    let kept_whole = f.trailers.get(&0).is_some_and(|t| t.kept_records == f.kept_records);
    if status != SessionStatus::Complete || !matches!(kind, SessionKind::Incremental { .. }) || !kept_whole {
        return None;
    }
    let mut kept = std::mem::take(&mut f.kept);
    kept.sort_unstable();
    kept.dedup();
    Some(kept)
}

/// The object pieces of a found session's index, with the digests its object end records hold.
pub(super) fn found_objects(f: &Found) -> Vec<StoredObject> {
    let mut objects = Vec::with_capacity(f.index.len());
    for e in &f.index {
        let object = StoredObject {
            id: e.object_id,
            path: e.path.clone(),
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
            // Zero from version-1 media: an incremental on such a session stores those again.
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            segment_offset: e.segment_offset,
            length: e.length,
            stream: e.stream,
            part: e.part,
            position: e.position,
            // Packed objects' digests are inside their packs: verify checks them there.
            digest: f.digests.get(&(e.object_id, e.segment_offset)).copied().unwrap_or([0; 32]),
        };
        objects.push(object);
    }
    objects
}

/// A sequential reader that can also jump forward by reopening.
pub(super) struct Cursor<'m> {
    pub(super) media: &'m mut dyn Media,
    pub(super) barcode: String,
    pub(super) reader: Box<dyn PartReader>,
    /// The tape file being walked (its first byte and number), so that a drive that cannot
    /// LOCATE reaches a position in it by spacing; `None` before the first range.
    pub(super) file: Option<(u64, u32)>,
}

impl Cursor<'_> {
    fn seek(&mut self, pos: u64) -> Result<(), DeviceError> {
        self.reader = match self.file {
            Some((start, number)) if pos >= start => {
                self.media.open_part(&self.barcode, start, number, pos - start)?
            }
            _ => self.media.open(&self.barcode, pos)?,
        };
        Ok(())
    }

    fn pos(&self) -> u64 {
        self.reader.position()
    }

    /// Reads exactly `buf.len()` bytes; `false` at the end of the data.
    pub(super) fn fill(&mut self, buf: &mut [u8]) -> Result<bool, DeviceError> {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..])? {
                0 => return Ok(false),
                n => got += n,
            }
        }
        Ok(true)
    }
}

/// Walks one medium; returns the end of its data and the problems met.
fn walk_medium(
    media: &mut dyn Media,
    label: &VolumeLabel,
    found: &mut BTreeMap<u64, Found>,
) -> Result<(u64, Vec<String>), DeviceError> {
    let block = label.block_size as u64;
    let ranges = media.part_ranges(&label.barcode)?;
    let reader = media.open(&label.barcode, 0)?;
    let mut c = Cursor { media, barcode: label.barcode.clone(), reader, file: None };
    let mut problems = Vec::new();
    let mut head = [0u8; HEADER_LEN];
    // The label's record, then parts on block boundaries.
    if !c.fill(&mut head)? {
        return Ok((0, problems));
    }
    let first = round_up(
        HEADER_LEN as u64 + Header::decode(&head, 0).map(|(h, _)| h.stored_len as u64).unwrap_or(0),
        block,
    );
    let ranges = ranges.unwrap_or_else(|| vec![PartRange::bytes(first..u64::MAX)]);
    let mut end = first;
    for range in ranges {
        c.file = Some((range.bytes.start, range.file_number));
        end = walk_range(&mut c, range.bytes, label, found, &mut problems)?;
    }
    Ok((end, problems))
}

/// Walks the parts that lie in `range` (from its start to the end of the data, a blank block,
/// or the range's end); returns where the last whole part ends.
fn walk_range(
    c: &mut Cursor<'_>,
    range: Range<u64>,
    label: &VolumeLabel,
    found: &mut BTreeMap<u64, Found>,
    problems: &mut Vec<String>,
) -> Result<u64, DeviceError> {
    let block = label.block_size as u64;
    let mut head = [0u8; HEADER_LEN];
    let mut pos = range.start;
    let mut end = pos;
    while pos < range.end {
        c.seek(pos)?;
        if !c.fill(&mut head)? || head.iter().all(|&b| b == 0) {
            break;
        }
        match walk_part(c, &mut head, label.medium, found, false) {
            Ok(part_end) => {
                end = round_up(part_end, block);
                pos = end;
            }
            Err(what) => {
                problems.push(format!(
                    "medium {} at byte {pos}: {what}; looking for the next part",
                    label.barcode
                ));
                match next_part(c, pos + block, block)? {
                    Some(p) => pos = p,
                    None => break,
                }
            }
        }
    }
    Ok(end)
}

/// Finds the next block that starts with a session header, from `from`.
fn next_part(c: &mut Cursor<'_>, from: u64, block: u64) -> Result<Option<u64>, DeviceError> {
    c.seek(from)?;
    let mut buf = vec![0u8; block as usize];
    let mut at = from;
    while c.fill(&mut buf)? {
        let head: &[u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().expect("block holds a header");
        if Header::decode(head, at).is_ok_and(|(h, _)| h.kind == Kind::SessionHeader) {
            return Ok(Some(at));
        }
        at += block;
    }
    Ok(None)
}

/// Walks one part whose first header is in `head`; returns where its last record ends.
///
/// With `packs`, packs are read through and unpacked for the digests of the small objects in
/// them (a session's index read back then holds every digest it had); otherwise they are
/// skipped like data.
pub(super) fn walk_part(
    c: &mut Cursor<'_>,
    head: &mut [u8; HEADER_LEN],
    medium: [u8; 16],
    found: &mut BTreeMap<u64, Found>,
    packs: bool,
) -> Result<u64, String> {
    let start = c.pos() - HEADER_LEN as u64;
    let mut at = start;
    let mut session: Option<(u64, u16, u32)> = None;
    let mut runs = RunsBuilder::default();
    loop {
        let (h, _) = Header::decode(head, at).map_err(|e| e.to_string())?;
        let total = HEADER_LEN as u64 + h.stored_len as u64;
        runs.record(lane_of_record(&h), at - start, at - start + total);
        let meta_needed = !h.kind.carries_data() || (packs && h.kind == Kind::Pack);
        if meta_needed || h.stored_len < SKIP_BY_SEEK {
            let mut bytes = head.to_vec();
            bytes.resize(total as usize, 0);
            if !c.fill(&mut bytes[HEADER_LEN..]).map_err(|e| e.to_string())? {
                return Err("the data ends inside a record (a part torn by a crash)".into());
            }
            let (rec, _) = decode_record(&bytes, at).map_err(|e| e.to_string())?;
            match rec.body {
                Body::Pack(payload) if packs => {
                    if let Some((id, ..)) = session {
                        let f = found.entry(id).or_default();
                        pack_digests(&h, payload, at, &mut f.digests)?;
                    }
                }
                Body::SessionHeader(s) if session.is_none() => {
                    session = Some((s.session_id, s.stream, s.part));
                    let f = found.entry(s.session_id).or_default();
                    let file_number = c.file.map_or(0, |(_, n)| n);
                    f.parts.insert((s.stream, s.part), (medium, start, file_number));
                    if s.part == 0 {
                        f.header = Some(s);
                    }
                }
                Body::Segment(seg) => {
                    if let Some((id, stream, _)) = session {
                        found.entry(id).or_default().segment_at.insert((stream, h.object_id), seg.offset);
                    }
                }
                Body::ObjectEnd(e) => {
                    if let Some((id, stream, _)) = session {
                        let f = found.entry(id).or_default();
                        let offset = f.segment_at.remove(&(stream, h.object_id)).unwrap_or(0);
                        f.digests.insert((h.object_id, offset), e.digest);
                    }
                }
                Body::Index(ix) => {
                    if let Some((id, ..)) = session {
                        found.entry(id).or_default().index.extend(ix.entries);
                    }
                }
                Body::Kept(k) => {
                    if let Some((id, 0, _)) = session {
                        let f = found.entry(id).or_default();
                        f.kept.extend(k.paths.into_iter().map(|p| p.into_vec()));
                        f.kept_records += 1;
                    }
                }
                Body::Trailer(mut t) => {
                    // The trailer counts the bytes before itself; the journal counted it too.
                    t.stored_bytes += total;
                    let stream = session.map_or(0, |(_, stream, _)| stream);
                    found.entry(t.session_id).or_default().trailers.insert(stream, t);
                    part_walked(found, session, at + total - start, &mut runs);
                    return Ok(at + total);
                }
                Body::Continuation(_) => {
                    part_walked(found, session, at + total - start, &mut runs);
                    return Ok(at + total);
                }
                _ if session.is_none() => {
                    return Err("a part that does not start with a session header".into());
                }
                _ => {}
            }
        } else {
            c.seek(at + total).map_err(|e| e.to_string())?;
        }
        at += total;
        if !c.fill(head).map_err(|e| e.to_string())? {
            return Err("the data ends before the part's end (a part torn by a crash)".into());
        }
    }
}

/// Records the digest of every object in a pack, by (object, segment offset 0).
fn pack_digests(
    h: &Header,
    payload: &[u8],
    at: u64,
    digests: &mut BTreeMap<(u64, u64), [u8; 32]>,
) -> Result<(), String> {
    // The header's raw length was checked against the unit limit when it was decoded.
    let mut buf = vec![0u8; h.raw_len as usize];
    let raw = unpack(h, payload, &mut buf, at).map_err(|e| e.to_string())?;
    for entry in PackEntries::new(raw, at) {
        let (entry, _) = entry.map_err(|e| e.to_string())?;
        digests.insert((entry.object_id, 0), entry.digest);
    }
    Ok(())
}

/// Keeps the runs of a part walked to its end (`len` bytes long), when it holds multiplexed
/// records.
fn part_walked(
    found: &mut BTreeMap<u64, Found>,
    session: Option<(u64, u16, u32)>,
    len: u64,
    runs: &mut RunsBuilder,
) {
    if let (Some((id, stream, part)), Some(runs)) = (session, runs.take_part()) {
        found.entry(id).or_default().runs.insert((stream, part), (len, runs));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::device::disk::{DiskMedia, DiskTarget};
    use crate::format::encode_data_as;
    use crate::pipeline::mux::LANE_STRIDE;
    use crate::pipeline::pool::Pool;
    use crate::pipeline::writer::{Event, Progress, SessionInfo, StreamWriter};
    use crate::pipeline::{Encoded, EncodedBytes, Track};
    use crate::store::Store;

    const KB: usize = 1 << 10;

    /// A data record of `len` raw bytes of object `id`, as the writer gets it from lane `lane`.
    fn data(id: u64, seq: u64, len: usize, lane: u64) -> Encoded {
        let raw: Vec<u8> = (0..len).map(|i| (i * 7 + id as usize) as u8).collect();
        let mut out = vec![0u8; crate::format::compress_scratch_len(len)];
        let (n, _) = encode_data_as(id, seq, 0, &raw, true, false, &mut out).unwrap();
        out.truncate(n);
        Encoded { bytes: EncodedBytes::Small(out), track: Track::Nothing, raw: len as u64, lane }
    }

    #[test]
    fn runs_rebuilt_from_the_media_are_the_runs_the_writer_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let target = DiskTarget::new(&dir.path().join("target"), 64 << 20, "default").unwrap();
        let (tx, events) = crossbeam_channel::unbounded();
        let info = SessionInfo {
            session: 7,
            job: 0,
            host: "box".into(),
            source: "two agents".into(),
            started: 1,
            stream: 0,
            streams: 1,
            kind: crate::format::records::SessionKind::Full,
            source_key: [0; 32],
            kept: None,
        };
        let progress = Arc::new(Progress::default());
        let mut w = StreamWriter::start(Box::new(target), info, tx, progress, Pool::new(1, 4 * KB)).unwrap();
        let (a, b) = (LANE_STRIDE, 2 * LANE_STRIDE);
        // Per part: (lane, records, bytes each). Records of 400 KiB are skipped by seeking,
        // records of 200 KiB read through; gaps below and above the merge gap; a part of no
        // lane (no runs) between two multiplexed ones.
        let parts: [&[(u64, usize, usize)]; 3] = [
            &[(0, 1, 200), (a, 4, 400), (b, 3, 200), (a, 1, 200), (b, 8, 400), (a, 1, 400)],
            &[(0, 3, 400)],
            &[(b, 2, 200), (0, 1, 200), (a, 2, 400), (b, 1, 200)],
        ];
        let mut seq = 1;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                w.checkpoint().unwrap();
            }
            for &(lane, records, kb) in *part {
                for _ in 0..records {
                    w.write(data(lane + seq, seq, kb * KB, lane)).unwrap();
                    seq += 1;
                }
            }
        }
        w.finish(SessionStatus::Complete, 2).unwrap();
        let written: BTreeMap<u32, (u64, Vec<LaneRun>)> = events
            .try_iter()
            .filter_map(|(_, ev)| match ev {
                Event::Durable { runs: Some((part, len, runs)), .. } => Some((part, (len, runs))),
                _ => None,
            })
            .collect();
        assert_eq!(written.keys().copied().collect::<Vec<_>>(), [0, 2], "{written:?}");
        assert!(written[&0].1.len() >= 3, "runs that merge and part: {written:?}");

        let (mut store, _) = Store::open(&dir.path().join("state"), crate::journal::Mode::Write).unwrap();
        let report = scan(&mut DiskMedia::new(&dir.path().join("target")), "here", &mut store).unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(report.sessions_added, 1, "{report:?}");
        let catalog = store.catalog();
        let session = catalog.session(7).expect("session 7 rebuilt");
        assert!(session.is_multiplexed());
        for part in 0..3 {
            assert!(session.part(0, part).is_some(), "part {part}");
            let scanned = session.part_runs(0, part);
            let journaled = written.get(&part).map(|(len, runs)| (*len, runs.as_slice()));
            assert_eq!(scanned, journaled, "part {part}");
        }
    }
}
