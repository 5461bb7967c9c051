//! Draining a staging target: the parts of finished sessions that landed on a fast medium (an
//! NVRAM ring) are copied, part by part and byte for byte, to a slower target, and the catalog
//! is told where each part lies now. Object positions are relative to their part's start, so a
//! part copied whole stays valid wherever it lands; only the part's medium and position change.
//!
//! Every record is decoded (header and payload CRC) as it is read and the part must be the one
//! the catalog names, so damage on the staging medium stops that session's drain instead of
//! being copied. A part counts as moved only once the target made it durable and the move was
//! journaled: a crash at any point leaves every part readable from one place or the other.

use std::collections::HashSet;

use crate::catalog::{Catalog, MediumState, MediumUpdated, PartMoved, Record, SessionPart};
use crate::device::aligned::round_up;
use crate::device::{DeviceError, EmbeddedReader, Media, Mounted, Target, open_media};
use crate::format::{Body, MAX_RECORD_LEN, RecordReader};
use crate::store::{State, StoreError};

use super::backup::medium_records;

/// What a drain did.
#[derive(Debug, Default)]
pub struct DrainReport {
    /// Sessions whose parts all left the staging media.
    pub sessions: Vec<u64>,
    /// Parts moved.
    pub parts: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Sessions left on the staging media, each with why.
    pub problems: Vec<String>,
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The staging media or the target failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The catalog could not be changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A part to move: where it is now.
struct Staged {
    part: SessionPart,
    barcode: String,
}

/// Moves every finished session's parts from the media at `from` to `target`, oldest session
/// first. A session still running, or one whose staged data is damaged, stays where it is and
/// is reported.
pub fn drain(store: &mut impl State, from: &str, target: &mut dyn Target) -> Result<DrainReport, DrainError> {
    let mut media = open_media(from)?;
    let staging: HashSet<[u8; 16]> = media.labels()?.iter().map(|l| l.medium).collect();
    let mut report = DrainReport::default();
    let mut mounted: Option<Mounted> = None;
    let mut buf = vec![0u8; MAX_RECORD_LEN];
    let staged = store.read(|c| staged_sessions(c, &staging, &mut report));
    for (session, parts) in staged {
        let mut ok = true;
        for s in parts {
            let len = match copy_part(&mut *media, &s, &mut buf, None) {
                Ok(len) => len,
                Err(CopyError::Target(e)) => return Err(e.into()),
                Err(CopyError::Staged(what)) => {
                    report.problems.push(format!(
                        "session {session}: part {} of stream {} on {}: {what}; the session stays \
                         on the staging medium",
                        s.part.part, s.part.stream, s.barcode
                    ));
                    ok = false;
                    break;
                }
            };
            let m = mount_for(store, target, &mut mounted, len)?;
            let start = target.begin_part()?;
            copy_part(&mut *media, &s, &mut buf, Some(target)).map_err(|e| match e {
                CopyError::Target(e) => e,
                CopyError::Staged(what) => DeviceError::BadMedium {
                    what: s.barcode.clone(),
                    detail: format!("changed while it was drained: {what}"),
                },
            })?;
            target.end_part()?;
            let used = start.position + round_up(len, target.block_size() as u64);
            store.commit(&[
                Record::from(PartMoved {
                    session,
                    stream: s.part.stream,
                    part: s.part.part,
                    medium: start.medium,
                    position: start.position,
                    file_number: start.file_number,
                }),
                Record::from(MediumUpdated { medium: m, used, state: MediumState::Writable }),
            ])?;
            report.parts += 1;
            report.bytes += len;
        }
        if ok {
            report.sessions.push(session);
        }
    }
    Ok(report)
}

/// Finished sessions with parts on `staging`, oldest first, each with those parts in order.
fn staged_sessions(
    catalog: &Catalog,
    staging: &HashSet<[u8; 16]>,
    report: &mut DrainReport,
) -> Vec<(u64, Vec<Staged>)> {
    let mut out = Vec::new();
    for s in catalog.sessions() {
        let parts: Vec<Staged> = s
            .parts()
            .filter(|p| staging.contains(&p.medium))
            .map(|p| Staged {
                part: p.clone(),
                barcode: catalog.medium(p.medium).map_or_else(String::new, |m| m.barcode().to_owned()),
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        if !s.is_finished() {
            report.problems.push(format!("session {}: still running; drain it once it has finished", s.id()));
            continue;
        }
        out.push((s.id(), parts));
    }
    out
}

/// Makes sure the target has a medium with room for a part of `len` bytes, moving to the next
/// medium when the mounted one has not; journals new media. Returns the medium's UUID.
fn mount_for(
    store: &mut impl State,
    target: &mut dyn Target,
    mounted: &mut Option<Mounted>,
    len: u64,
) -> Result<[u8; 16], DrainError> {
    let mut m = match mounted.take() {
        Some(m) => m,
        None => target.mount()?,
    };
    store.commit(&medium_records(store, &m))?;
    if target.remaining() < len {
        let full = m.label.medium;
        let used = store.read(|c| c.medium(full).map_or(0, |x| x.used()));
        store.commit(&[Record::from(MediumUpdated { medium: full, used, state: MediumState::Full })])?;
        m = target.next_medium()?;
        store.commit(&medium_records(store, &m))?;
        if target.remaining() < len {
            return Err(DeviceError::Full {
                what: target.describe(),
                detail: format!("a part of {len} bytes does not fit on an empty medium; use larger volumes"),
            }
            .into());
        }
    }
    let id = m.label.medium;
    *mounted = Some(m);
    Ok(id)
}

/// Why a part could not be copied.
enum CopyError {
    /// The staged part is damaged or not the one the catalog names.
    Staged(String),
    /// The target failed.
    Target(DeviceError),
}

/// Reads the staged part `s` record by record, checking each, and writes it to `sink` when
/// given. Returns the part's length up to the end of its last record (trailer or
/// continuation).
fn copy_part(
    media: &mut dyn Media,
    s: &Staged,
    buf: &mut [u8],
    mut sink: Option<&mut dyn Target>,
) -> Result<u64, CopyError> {
    let p = &s.part;
    let bad = CopyError::Staged;
    let reader = media.open(&s.barcode, p.position).map_err(|e| bad(e.to_string()))?;
    let mut records = RecordReader::new(EmbeddedReader(reader), 0);
    let mut first = true;
    loop {
        let (last, len) = {
            let Some((rec, at)) = records.next(buf).map_err(|e| bad(e.to_string()))? else {
                return Err(bad("the data ends before the part's end".into()));
            };
            let last = match rec.body {
                Body::SessionHeader(h) if first => {
                    if (h.session_id, h.stream, h.part) != (p.session, p.stream, p.part) {
                        return Err(bad(format!(
                            "it holds part {} of stream {} of session {}, not the part the catalog names",
                            h.part, h.stream, h.session_id
                        )));
                    }
                    false
                }
                _ if first => return Err(bad("no session header where the part starts".into())),
                Body::Trailer(_) | Body::Continuation(_) => true,
                _ => false,
            };
            (last, (records.position() - at) as usize)
        };
        first = false;
        if let Some(t) = sink.as_deref_mut() {
            t.write(&buf[..len]).map_err(CopyError::Target)?;
        }
        if last {
            return Ok(records.position());
        }
    }
}
