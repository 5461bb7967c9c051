//! Fetching small files ahead of the reader: the walker groups entries into batches and deals
//! them to fetch threads in turn; each fetch thread reads its batches' files through its own
//! io_uring (opens, reads and stats all in flight at once) into a pooled buffer; the reader
//! takes the filled batches back in the same turn order, so walk order is kept while several
//! batches are on the disk at once.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use crossbeam_channel::{Receiver, Sender};

use super::pool::Pool;
use crate::device::aligned::{ALIGN, AlignedBuf, round_up};
use crate::format::records::ObjectKind;
use crate::source::TreeEntry;
use crate::uring::{FileRead, FileReadResult, Ring};

/// Small files read in one io_uring batch.
pub const BATCH_FILES: usize = 64;
/// Bytes of buffer for one batch.
pub const BATCH_BYTES: usize = 4 << 20;
/// Fetch threads: batches on the disk at once.
pub const FETCHERS: usize = 3;

/// Buffer room for a small file: one byte more than its size (to see it grow), in whole blocks.
pub fn slot_len(size: usize) -> usize {
    round_up(size as u64 + 1, ALIGN as u64) as usize
}

/// What the walker deals out, in walk order.
#[derive(Debug)]
pub enum Deal {
    /// Small files and metadata-only objects, read together.
    Batch(Vec<TreeEntry>),
    /// A file too large for a batch: the reader streams it itself.
    Large(TreeEntry),
    /// An entry the walker had to skip.
    Problem(String),
    /// Everything dealt before must be made durable before the reader goes on (a
    /// multi-device sub-job ran out of work).
    Sync,
}

/// A batch whose files were read.
#[derive(Debug)]
pub enum Fetched {
    /// The entries, what reading each file gave (`None` for objects without data) and where in
    /// `buf` its bytes are.
    Batch {
        /// Entries in walk order.
        entries: Vec<(TreeEntry, Option<FileReadResult>, usize)>,
        /// Their bytes.
        buf: AlignedBuf,
    },
    /// Passed through.
    Large(TreeEntry),
    /// Passed through.
    Problem(String),
    /// Passed through.
    Sync,
}

/// A fetch thread: reads the files of each batch it gets, in order.
pub fn fetch_loop(input: Receiver<Deal>, output: Sender<Fetched>, pool: Pool, open_flags: i32) {
    let mut ring = match Ring::with_capacity(4 * BATCH_FILES as u32) {
        Ok(r) => r,
        Err(e) => {
            let _ = output.send(Fetched::Problem(format!("cannot set up io_uring for reading: {e}")));
            return;
        }
    };
    for w in input {
        let out = match w {
            Deal::Batch(entries) => fetch(&mut ring, entries, pool.take(), open_flags),
            Deal::Large(e) => Fetched::Large(e),
            Deal::Problem(p) => Fetched::Problem(p),
            Deal::Sync => Fetched::Sync,
        };
        if output.send(out).is_err() {
            return;
        }
    }
}

fn fetch(ring: &mut Ring, entries: Vec<TreeEntry>, mut buf: AlignedBuf, open_flags: i32) -> Fetched {
    let paths: Vec<Option<CString>> = entries
        .iter()
        .map(|e| {
            let is_file = e.meta.kind == ObjectKind::File;
            is_file.then(|| CString::new(e.source.as_os_str().as_bytes()).ok()).flatten()
        })
        .collect();
    let mut offsets = Vec::with_capacity(entries.len());
    let mut results = Vec::new();
    {
        let mut rest: &mut [u8] = &mut buf;
        let mut at = 0;
        let mut reads = Vec::new();
        for (e, p) in entries.iter().zip(&paths) {
            offsets.push(at);
            if e.meta.kind == ObjectKind::File {
                let len = slot_len(e.meta.size as usize);
                let (slot, tail) = rest.split_at_mut(len);
                rest = tail;
                at += len;
                if let Some(path) = p {
                    reads.push(FileRead { path, buf: slot });
                }
            }
        }
        if !reads.is_empty() {
            results = ring.read_files(&mut reads, open_flags);
        }
    }
    let mut results = results.into_iter();
    let entries = entries
        .into_iter()
        .zip(paths)
        .zip(offsets)
        .map(|((e, p), off)| {
            let r = match (e.meta.kind == ObjectKind::File, p) {
                (false, _) => None,
                (true, Some(_)) => Some(results.next().expect("one result per read")),
                (true, None) => {
                    Some(FileReadResult { len: Err(std::io::Error::other("path holds a NUL")), stat: None })
                }
            };
            (e, r, off)
        })
        .collect();
    Fetched::Batch { entries, buf }
}

/// Groups walked entries into batches and deals them to the fetchers in turn.
#[derive(Debug)]
pub struct Dealer {
    outs: Vec<Sender<Deal>>,
    next: usize,
    batch: Vec<TreeEntry>,
    bytes: usize,
    small_max: usize,
}

impl Dealer {
    /// Deals to `outs`; files over `small_max` go out on their own.
    pub fn new(outs: Vec<Sender<Deal>>, small_max: usize) -> Dealer {
        Dealer { outs, next: 0, batch: Vec::new(), bytes: 0, small_max }
    }

    fn send(&mut self, w: Deal) -> bool {
        let q = &self.outs[self.next % self.outs.len()];
        self.next += 1;
        q.send(w).is_ok()
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.bytes = 0;
        let b = std::mem::take(&mut self.batch);
        self.send(Deal::Batch(b))
    }

    /// Adds an entry; `false` when the reader has stopped.
    pub fn add(&mut self, e: TreeEntry) -> bool {
        let size = e.meta.size as usize;
        let segment = e.placed.is_some_and(|p| p.segment.is_some());
        let large = e.meta.kind == ObjectKind::File && (size > self.small_max || segment);
        if large || e.meta.kind == ObjectKind::Volume {
            return self.flush() && self.send(Deal::Large(e));
        }
        if e.meta.kind == ObjectKind::File {
            self.bytes += slot_len(size);
        }
        self.batch.push(e);
        if self.batch.len() == BATCH_FILES || self.bytes + slot_len(self.small_max) > BATCH_BYTES {
            return self.flush();
        }
        true
    }

    /// Passes a problem on, in order.
    pub fn problem(&mut self, p: String) -> bool {
        self.flush() && self.send(Deal::Problem(p))
    }

    /// Asks for everything dealt so far to be made durable.
    pub fn sync(&mut self) -> bool {
        self.flush() && self.send(Deal::Sync)
    }

    /// Sends the last batch.
    pub fn finish(mut self) {
        self.flush();
    }
}
