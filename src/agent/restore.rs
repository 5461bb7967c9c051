//! A restore the box runs onto the agent: the box reads the session back and sends its stored
//! objects, then its records in order; the agent recreates the objects under the directory the
//! box named, with the same sink, fidelity and safety rules as a local restore, and answers
//! with what it made and what failed.

use std::collections::HashSet;
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::catalog::StoredObject;
use crate::net::frame::{MAX_PROBLEMS, Message};
use crate::pipeline::pool::Recycler;
use crate::pipeline::readback::Item;
use crate::pipeline::remote::WireItem;
use crate::pipeline::restore::restore_items;

/// Record buffers kept for reuse.
const RECYCLE_KEEP: usize = 8;
/// Most bytes of one record as it crosses (a unit's data plus a pack's entries).
const MAX_ITEM_BYTES: usize = 256 << 20;

/// Runs the restore on a thread of its own: `from` brings the box's `Objects`, `Items` and
/// `Finish`; the answer (`Restored`) goes to `out`. When no thread can be started, the answer
/// saying so is returned for the caller to send.
pub fn start(
    job: u64,
    root: PathBuf,
    all: bool,
    compare: bool,
    from: mpsc::Receiver<Message>,
    out: mpsc::Sender<Message>,
) -> Result<(), Message> {
    std::thread::Builder::new()
        .name(format!("restore-{job}"))
        .spawn(move || {
            let answer = run(job, &root, all, compare, from);
            tracing::info!(target: "agent", "restore for job {job} into {} ended", root.display());
            let _ = out.blocking_send(answer);
        })
        .map(drop)
        .map_err(|e| restored(job, 0, 0, vec![format!("the agent cannot start the restore: {e}")]))
}

fn run(
    job: u64,
    root: &std::path::Path,
    all: bool,
    compare: bool,
    mut from: mpsc::Receiver<Message>,
) -> Message {
    let mut objects: Vec<StoredObject> = Vec::new();
    let mut selected: HashSet<u64> = HashSet::new();
    let mut first = None;
    // The stored objects come first, then the records.
    while let Some(m) = from.blocking_recv() {
        match m {
            Message::Objects { bytes, .. } => match postcard::from_bytes::<Vec<(StoredObject, bool)>>(&bytes)
            {
                Ok(batch) => {
                    for (o, wanted) in batch {
                        if wanted {
                            selected.insert(o.id);
                        }
                        objects.push(o);
                    }
                }
                Err(e) => {
                    return restored(
                        job,
                        0,
                        0,
                        vec![format!("the box sent objects that do not decode: {e}")],
                    );
                }
            },
            m => {
                first = Some(m);
                break;
            }
        }
    }
    let mut items = Items { from, first, buffers: Recycler::new(RECYCLE_KEEP), failure: None };
    let selected = (!all).then_some(selected);
    let report = restore_items(root, compare, &objects, selected, &mut items);
    let mut failures = match report {
        Ok(r) => {
            let mut f = r.failures;
            // A difference from the agent's files is what a compare reports.
            f.extend(r.differences.into_iter().map(|d| format!("differs: {d}")));
            f.extend(items.failure.take());
            return restored(job, r.objects, r.bytes, f);
        }
        Err(e) => vec![e.to_string()],
    };
    failures.extend(items.failure.take());
    restored(job, 0, 0, failures)
}

/// The box's records, assembled from `Items` pieces, until `Finish`.
struct Items {
    from: mpsc::Receiver<Message>,
    first: Option<Message>,
    buffers: Recycler,
    /// Why the records stopped early.
    failure: Option<String>,
}

impl Iterator for Items {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        let mut bytes = Vec::new();
        loop {
            let m = match self.first.take() {
                Some(m) => m,
                None => match self.from.blocking_recv() {
                    Some(m) => m,
                    None => {
                        self.failure = Some("the connection to the box ended during the restore".into());
                        return None;
                    }
                },
            };
            match m {
                Message::Items { last, bytes: piece, .. } => {
                    if bytes.len() + piece.len() > MAX_ITEM_BYTES {
                        self.failure = Some("the box sent a record over its bound".into());
                        return None;
                    }
                    bytes.extend_from_slice(&piece);
                    if last {
                        return match WireItem::decode(&bytes, &self.buffers) {
                            Ok(item) => Some(item),
                            Err(e) => {
                                self.failure =
                                    Some(format!("the box sent a record that does not decode: {e}"));
                                None
                            }
                        };
                    }
                }
                Message::Finish { .. } => return None,
                other => {
                    self.failure = Some(format!("the box sent {} in a restore", other.name()));
                    return None;
                }
            }
        }
    }
}

/// The answer: failures cut to what one frame carries.
fn restored(job: u64, objects: u64, bytes: u64, mut failures: Vec<String>) -> Message {
    let more = failures.len().saturating_sub(MAX_PROBLEMS) as u64;
    failures.truncate(MAX_PROBLEMS);
    failures.iter_mut().for_each(super::backup::cut);
    Message::Restored { job, objects, bytes, failures, more }
}
