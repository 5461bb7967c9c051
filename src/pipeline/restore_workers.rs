//! Restore workers: threads that create, fill and finish small files from packs in parallel,
//! while the restore's consumer thread keeps the order-sensitive work (directories, links,
//! large files). Each worker has its own [`FsRestorer`] on the same root; directories they
//! write into were created by the consumer before the files were handed out.

use std::collections::HashSet;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::pool::Reused;
use crate::format::records::ObjectMeta;
use crate::fsrestore::{FsRestorer, RestoreSummary};

/// Files waiting per worker.
const JOB_QUEUE: usize = 64;

/// A small file to restore: its metadata and its bytes within a shared pack.
#[derive(Debug)]
pub struct FileJob {
    /// Object id.
    pub id: u64,
    /// Its metadata.
    pub meta: ObjectMeta,
    /// The pack's bytes.
    pub data: Arc<Reused>,
    /// Where the file's bytes are in them.
    pub range: Range<usize>,
}

/// How a job went.
#[derive(Debug)]
enum Ack {
    Done(u64),
    Failed(String),
}

/// The worker threads.
#[derive(Debug)]
pub struct Workers {
    jobs: Vec<Sender<FileJob>>,
    acks: Receiver<Ack>,
    threads: Vec<JoinHandle<RestoreSummary>>,
    in_flight: usize,
    next: usize,
}

impl Workers {
    /// Starts `n` workers restoring under `root`.
    pub fn start(root: &Path, n: usize) -> Workers {
        let (ack_tx, acks) = bounded(n * (JOB_QUEUE + 2));
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (tx, rx) = bounded(JOB_QUEUE);
            let root = root.to_owned();
            let ack_tx = ack_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("restore-{i}"))
                    .spawn(move || work(&root, rx, ack_tx))
                    .expect("spawn restore worker"),
            );
            jobs.push(tx);
        }
        Workers { jobs, acks, threads, in_flight: 0, next: 0 }
    }

    /// Hands a file to the next worker in turn (measured faster than keeping a directory's
    /// files with one worker: large directories then had one worker only).
    pub fn send(&mut self, job: FileJob) {
        let tx = &self.jobs[self.next % self.jobs.len()];
        self.next += 1;
        self.in_flight += 1;
        tx.send(job).expect("restore workers outlive the restore");
    }

    /// Collects the acknowledgements that arrived; returns failures.
    pub fn drain(&mut self, done: &mut HashSet<u64>, objects: &mut u64) -> Vec<String> {
        let mut failures = Vec::new();
        while let Ok(a) = self.acks.try_recv() {
            self.record(a, done, objects, &mut failures);
        }
        failures
    }

    /// Waits until every file handed out is finished; returns failures.
    pub fn wait_all(&mut self, done: &mut HashSet<u64>, objects: &mut u64) -> Vec<String> {
        let mut failures = Vec::new();
        while self.in_flight > 0 {
            let a = self.acks.recv().expect("workers acknowledge every job");
            self.record(a, done, objects, &mut failures);
        }
        failures
    }

    fn record(&mut self, a: Ack, done: &mut HashSet<u64>, objects: &mut u64, failures: &mut Vec<String>) {
        self.in_flight -= 1;
        match a {
            Ack::Done(id) => {
                done.insert(id);
                *objects += 1;
            }
            Ack::Failed(f) => failures.push(f),
        }
    }

    /// Waits for all files and stops the workers; returns failures and what they did.
    pub fn finish(mut self, done: &mut HashSet<u64>, objects: &mut u64) -> (Vec<String>, RestoreSummary) {
        let failures = self.wait_all(done, objects);
        self.jobs.clear();
        let mut summary = RestoreSummary::default();
        for t in self.threads {
            summary = add_summaries(summary, &t.join().expect("restore worker"));
        }
        (failures, summary)
    }
}

fn work(root: &Path, jobs: Receiver<FileJob>, acks: Sender<Ack>) -> RestoreSummary {
    let mut fs = match FsRestorer::new(root) {
        Ok(fs) => fs,
        Err(e) => {
            for j in jobs {
                let _ = acks.send(Ack::Failed(format!("{}: not restored: {e}", object_name(&j))));
            }
            return RestoreSummary::default();
        }
    };
    for j in jobs {
        let name = || object_name(&j);
        let data = &j.data[j.range.clone()];
        // pwrite, not io_uring: buffered writes through io_uring are handed to kernel worker
        // threads here, which measured twice the system time for many small files.
        let ack = match fs.create_verified(&j.meta) {
            Ok(f) => match f.write_all_at(data, 0) {
                Ok(()) => match fs.finish_verified(f, &j.meta, data.len() as u64) {
                    Ok(()) => Ack::Done(j.id),
                    Err(e) => Ack::Failed(format!("{}: {e}", name())),
                },
                Err(e) => Ack::Failed(format!("{}: writing failed: {e}", name())),
            },
            Err(e) => Ack::Failed(format!("{}: not restored: {e}", name())),
        };
        let _ = acks.send(ack);
    }
    fs.finish().unwrap_or_default()
}

/// How failures name a file: as the restore's other messages do.
fn object_name(j: &FileJob) -> String {
    format!("{} (object {})", String::from_utf8_lossy(&j.meta.path), j.id)
}

/// The sum of two summaries.
pub fn add_summaries(a: RestoreSummary, b: &RestoreSummary) -> RestoreSummary {
    RestoreSummary {
        dirs: a.dirs + b.dirs,
        files: a.files + b.files,
        links: a.links + b.links,
        specials: a.specials + b.specials,
        skipped_sockets: a.skipped_sockets + b.skipped_sockets,
        ownership_failures: a.ownership_failures + b.ownership_failures,
    }
}
