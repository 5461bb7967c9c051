//! A backup the box asked of the agent: the same reader as a local backup walks and reads the
//! tree here, numbering from where the box's session stands; each unit goes to the box as
//! `Units` frames and the end as `Done`. The box compresses and writes.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::format::records::ObjectMeta;
use crate::format::{compress_scratch_len, encode_data_as, encode_pack_as};
use crate::net::frame::{MAX_CHUNK, MAX_PROBLEMS, MAX_REASON, Message};
use crate::pipeline::baseline::Skipper;
use crate::pipeline::pool::Pool;
use crate::pipeline::reader::Reader;
use crate::pipeline::remote::WireUnit;
use crate::pipeline::{Cancel, QUEUE_DEPTH, Unit, Work};
use crate::source::WalkOptions;

/// What the box asked.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The job, echoed in every frame.
    pub job: u64,
    /// The tree.
    pub root: PathBuf,
    /// The name its paths go under, if any.
    pub prefix: Option<Vec<u8>>,
    /// The first record number and object id.
    pub first_seq: u64,
    /// See `first_seq`.
    pub first_object: u64,
    /// Unit size.
    pub unit: usize,
    /// Stay on the root's file system.
    pub one_file_system: bool,
    /// Leave out what the box judges unchanged (it holds the baseline): ask it in `Judge`.
    pub incremental: bool,
    /// Compress here: data and packs go to the box as encoded records.
    pub compress: bool,
}

/// Entries of the walk asked about in one `Judge` (fewer when their metadata would not fit a
/// frame).
const JUDGE_BATCH: usize = 512;
/// How long the walk waits for the box's `Judged`.
const JUDGE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The box, asked which walked entries an incremental backup leaves out.
#[derive(Debug)]
struct AskBox {
    job: u64,
    out: mpsc::Sender<Message>,
    answers: std::sync::Mutex<std::sync::mpsc::Receiver<Vec<u8>>>,
}

impl AskBox {
    /// One `Judge` of `metas` (they fit a frame) and the box's answer; all kept when it does
    /// not answer as it must (the backup then fails on the connection, or stores more).
    fn ask(&self, metas: &[&ObjectMeta]) -> Vec<bool> {
        let kept = vec![false; metas.len()];
        let Ok(bytes) = postcard::to_allocvec(metas) else { return kept };
        if self.out.blocking_send(Message::Judge { job: self.job, bytes }).is_err() {
            return kept;
        }
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        match answers.recv_timeout(JUDGE_WAIT) {
            Ok(bits) if bits.len() == metas.len().div_ceil(8) => {
                (0..metas.len()).map(|i| bits[i / 8] & (1 << (i % 8)) != 0).collect()
            }
            Ok(bits) => {
                tracing::warn!(target: "agent", "the box judged {} entries with {} bytes: keeping them", metas.len(), bits.len());
                kept
            }
            Err(_) => kept,
        }
    }
}

impl Skipper for AskBox {
    fn skip_all(&self, metas: &[&ObjectMeta]) -> Vec<bool> {
        let mut out = Vec::with_capacity(metas.len());
        let mut from = 0;
        let mut size = 0;
        for (i, m) in metas.iter().enumerate() {
            let n = postcard::experimental::serialized_size(m).unwrap_or(MAX_CHUNK);
            if i > from && size + n + 16 > MAX_CHUNK {
                out.extend(self.ask(&metas[from..i]));
                (from, size) = (i, 0);
            }
            size += n;
        }
        if from < metas.len() {
            out.extend(self.ask(&metas[from..]));
        }
        out
    }

    fn batch(&self) -> usize {
        JUDGE_BATCH
    }
}

/// Raw buffers the agent's reader fills: enough to keep it busy while units cross the network.
const RAW_BUFFERS: usize = QUEUE_DEPTH + 3;

/// Runs the backup on threads of its own; its frames go to `out`, the last one `Done`.
/// `cancel` stops the walk (the box asked, or the connection went). Returns where the box's
/// `Judged` answers go (an incremental backup). When no thread can be started, the `Done`
/// saying so is returned for the caller to send.
pub fn start(
    asked: Asked,
    out: mpsc::Sender<Message>,
    cancel: Cancel,
) -> Result<Option<std::sync::mpsc::Sender<Vec<u8>>>, Message> {
    let (job, numbers) = (asked.job, (asked.first_seq, asked.first_object));
    let (answers_tx, answers) = std::sync::mpsc::channel();
    let skipper = asked.incremental.then(|| {
        std::sync::Arc::new(AskBox { job, out: out.clone(), answers: std::sync::Mutex::new(answers) })
            as std::sync::Arc<dyn Skipper>
    });
    let judged = skipper.is_some().then_some(answers_tx);
    std::thread::Builder::new()
        .name(format!("backup-{job}"))
        .spawn(move || run(asked, out, cancel, skipper))
        .map(|_| judged)
        .map_err(|e| done(job, numbers, Vec::new(), format!("the agent cannot start the backup: {e}")))
}

fn run(
    asked: Asked,
    out: mpsc::Sender<Message>,
    cancel: Cancel,
    skipper: Option<std::sync::Arc<dyn Skipper>>,
) {
    let job = asked.job;
    let pool = Pool::new(RAW_BUFFERS, asked.unit);
    let (tx, rx) = crossbeam_channel::bounded::<Unit>(QUEUE_DEPTH);
    let relay = {
        let (out, pool) = (out.clone(), pool.clone());
        let compress = asked.compress;
        std::thread::Builder::new()
            .name(format!("relay-{job}"))
            .spawn(move || relay(job, rx, out, pool, compress))
    };
    let relay = match relay {
        Ok(r) => r,
        Err(e) => {
            let _ = out.blocking_send(done(
                job,
                (asked.first_seq, asked.first_object),
                Vec::new(),
                e.to_string(),
            ));
            return;
        }
    };
    let walked = (|| {
        let mut reader = Reader::new(pool, vec![tx])
            .map_err(|e| e.to_string())?
            .numbered_from(asked.first_seq, asked.first_object);
        reader.cancel = cancel.clone();
        reader.skipper = skipper;
        let opts = WalkOptions { one_file_system: asked.one_file_system };
        let r = reader.add_tree(&asked.root, asked.prefix.as_deref(), opts);
        match r {
            Ok(()) => reader.finish_numbered().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })();
    // The reader is dropped: the relay sees its queue close once every unit is sent.
    let relayed = relay.join().unwrap_or(false);
    let message = match walked {
        Ok((problems, numbers)) if relayed => done(job, numbers, problems, String::new()),
        Ok((problems, numbers)) => done(job, numbers, problems, "the connection to the box failed".into()),
        Err(e) if cancel.is_cancelled() => done(job, (0, 0), Vec::new(), format!("cancelled: {e}")),
        Err(e) => done(job, (0, 0), Vec::new(), e),
    };
    tracing::info!(target: "agent", "backup for job {job} of {} ended", asked.root.display());
    let _ = out.blocking_send(message);
}

/// The `Done` frame: problems cut to what one frame carries.
fn done(job: u64, (next_seq, next_object): (u64, u64), mut problems: Vec<String>, error: String) -> Message {
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - (MAX_PROBLEMS - 1);
        problems.truncate(MAX_PROBLEMS - 1);
        problems.push(format!("and {more} more problems (see the agent's log)"));
    }
    problems.iter_mut().for_each(cut);
    let mut error = error;
    cut(&mut error);
    Message::Done { job, next_seq, next_object, problems, error }
}

/// Cuts `s` to what a frame's text field takes, at a character boundary, without NULs.
pub(super) fn cut(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "?");
    }
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// A unit's data or pack as its record, LZ4-compressed (stored raw when that does not
/// shrink it), its buffer back to `pool`; other work as it is.
fn encoded(seq: u64, work: Work, scratch: &mut Vec<u8>, pool: &Pool) -> Work {
    match work {
        Work::Data { object, offset, last, buf, len } => {
            scratch.resize(compress_scratch_len(len), 0);
            let (n, _) = encode_data_as(object, seq, offset, &buf[..len], last, true, scratch)
                .expect("a unit fits its record");
            pool.give(buf);
            Work::Encoded(scratch[..n].to_vec())
        }
        Work::Pack { first, buf, len } => {
            scratch.resize(compress_scratch_len(len), 0);
            let (n, _) =
                encode_pack_as(first, seq, &buf[..len], true, scratch).expect("a pack fits its record");
            pool.give(buf);
            Work::Encoded(scratch[..n].to_vec())
        }
        other => other,
    }
}

/// Sends each unit the reader makes as `Units` frames, returning its buffers to the pool;
/// with `compress`, its data and packs as the records they make (LZ4 here, not on the box).
/// Returns whether every unit was sent.
fn relay(
    job: u64,
    rx: crossbeam_channel::Receiver<Unit>,
    out: mpsc::Sender<Message>,
    pool: Pool,
    compress: bool,
) -> bool {
    let mut scratch = Vec::new();
    for mut unit in rx {
        if compress {
            unit.work = encoded(unit.seq, unit.work, &mut scratch, &pool);
        }
        let bytes = WireUnit::of(&unit).encode();
        match unit.work {
            Work::Data { buf, .. } | Work::Pack { buf, .. } => pool.give(buf),
            Work::Encoded(_) | Work::Sync => {}
        }
        let mut pieces = bytes.chunks(MAX_CHUNK).peekable();
        while let Some(piece) = pieces.next() {
            let m = Message::Units { job, last: pieces.peek().is_none(), bytes: piece.to_vec() };
            if out.blocking_send(m).is_err() {
                // Dropping the queue stops the reader.
                return false;
            }
        }
    }
    true
}
