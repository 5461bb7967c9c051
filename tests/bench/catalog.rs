//! Catalog benchmark: a state of 1M, 10M and 50M objects (realistic paths and metadata, no
//! data), built through the real store (journal batches, spool, index files), then measured as
//! a person uses it: opening the state, `coffer ls`, finding one path in a 10M-object session,
//! listing one directory, and an incremental baseline over a 10M-file session.
//!
//! Run: `cargo bench --bench catalog` (`COFFER_BENCH_DIR` chooses where the states go, default
//! /var/tmp; `COFFER_BENCH_SCALES=1M,10M` limits the scales). Commands run as child processes of
//! the real binary under GNU time, which reports their peak RSS; in-process figures read the
//! process's own peak (VmHWM, reset through /proc/self/clear_refs). Prints a table; asserts
//! nothing about time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use coffer::catalog::{
    MediumAdded, MediumKind, ObjectStored, Record, SessionFinished, SessionKind, SessionMode, SessionPart,
    SessionStarted, StoredObject, object_batches,
};
use coffer::format::records::{ObjectKind, ObjectMeta, SessionStatus};
use coffer::journal::Mode;
use coffer::pipeline::baseline::Baseline;
use coffer::store::Store;

/// Most objects in one session: larger scales are several sessions of this many.
const SESSION_OBJECTS: u64 = 10_000_000;
/// Objects handed to the store per commit (a backup's checkpoint commits about this many).
const COMMIT_OBJECTS: usize = 4096;
/// Files per leaf directory of the synthetic tree.
const FILES_PER_DIR: u64 = 40;
/// When every object was modified: well before the sessions started.
const MTIME: i64 = 1_650_000_000;
const STARTED: u64 = 1_800_000_000;
const MEDIUM: [u8; 16] = [3; 16];

const WORDS: [&str; 20] = [
    "drivers", "net", "ethernet", "intel", "fs", "ext4", "arch", "x86", "kernel", "mm", "include", "linux",
    "sound", "soc", "tools", "perf", "lib", "crypto", "block", "security",
];
const EXTS: [&str; 5] = ["c", "h", "S", "txt", "rst"];

/// The synthetic tree, walked depth first with sorted names as coffer walks: four levels of
/// directories under `linux-6.1`, [`FILES_PER_DIR`] files in each leaf. Yields each object's
/// path and kind.
fn tree(objects: u64) -> impl Iterator<Item = (Vec<u8>, ObjectKind)> {
    let dir = |level: usize, i: u64| format!("{}{:02}", WORDS[(i as usize + level * 7) % WORDS.len()], i);
    let mut out = Vec::new();
    let mut emitted = 0u64;
    // Generated lazily, a leaf directory at a time.
    let mut leaf = 0u64;
    std::iter::from_fn(move || {
        loop {
            if emitted >= objects {
                return None;
            }
            if let Some(x) = out.pop() {
                emitted += 1;
                return Some(x);
            }
            let (a, b, c, d) = (leaf / 8000, leaf / 400 % 20, leaf / 20 % 20, leaf % 20);
            let mut batch: Vec<(Vec<u8>, ObjectKind)> = Vec::new();
            let parts = [dir(0, a), dir(1, b), dir(2, c), dir(3, d)];
            // A directory's own entry comes when it is first entered.
            let first_of = [
                leaf == 0,
                leaf.is_multiple_of(8000),
                leaf.is_multiple_of(400),
                leaf.is_multiple_of(20),
                true,
            ];
            let mut path = String::from("linux-6.1");
            if leaf == 0 {
                batch.push((path.clone().into_bytes(), ObjectKind::Dir));
            }
            for (level, p) in parts.iter().enumerate() {
                path = format!("{path}/{p}");
                if first_of[level + 1] {
                    batch.push((path.clone().into_bytes(), ObjectKind::Dir));
                }
            }
            let mut files: Vec<String> = (0..FILES_PER_DIR)
                .map(|f| {
                    format!(
                        "{path}/{}_{f:02}.{}",
                        WORDS[(f as usize * 3) % WORDS.len()],
                        EXTS[f as usize % 5]
                    )
                })
                .collect();
            files.sort();
            batch.extend(files.into_iter().map(|f| (f.into_bytes(), ObjectKind::File)));
            batch.reverse();
            out = batch;
            leaf += 1;
        }
    })
}

fn stored(id: u64, path: Vec<u8>, kind: ObjectKind) -> StoredObject {
    let size = if kind == ObjectKind::File { 2_000 + id * 7919 % 60_000 } else { 0 };
    StoredObject {
        id,
        path,
        kind,
        size,
        mtime: MTIME + (id % 100_000) as i64,
        mode: if kind == ObjectKind::File { 0o100644 } else { 0o040755 },
        uid: 1000,
        gid: 1000,
        segment_offset: 0,
        length: size,
        stream: (id % 2) as u16,
        part: 0,
        position: id * 4_096,
        digest: *blake3::hash(&id.to_le_bytes()).as_bytes(),
    }
}

/// What building a state cost.
struct Built {
    seconds: f64,
    /// Journal bytes the sessions' object batches took before their index files.
    batch_bytes: u64,
    /// What one journal record per object (as coffer wrote before index files) would take.
    per_object_bytes: u64,
}

/// Builds `sessions` sessions of `per_session` objects each in `dir`.
fn build(dir: &Path, sessions: u64, per_session: u64) -> Built {
    let _ = std::fs::remove_dir_all(dir);
    let (mut store, _) = Store::open(dir, Mode::Write).unwrap();
    store
        .commit(&[Record::from(MediumAdded {
            medium: MEDIUM,
            barcode: "BENCH001".into(),
            pool: "default".into(),
            kind: MediumKind::Disk,
            block_size: 4096,
            capacity: 1 << 50,
            created: STARTED,
            location: "disk:/nowhere".into(),
        })])
        .unwrap();
    let t0 = Instant::now();
    let (mut batch_bytes, mut per_object_bytes) = (0, 0);
    for s in 1..=sessions {
        let start = SessionStarted {
            session: s,
            job: 0,
            host: "bench".into(),
            source: "/usr/src".into(),
            started: STARTED + s * 86_400,
            streams: 2,
            mode: SessionMode::Files,
            kind: SessionKind::Full,
            source_key: [9; 32],
        };
        let parts = (0..2).map(|stream| {
            Record::from(SessionPart {
                session: s,
                stream,
                part: 0,
                medium: MEDIUM,
                position: 0,
                file_number: 0,
            })
        });
        let mut first = vec![Record::from(start)];
        first.extend(parts);
        store.commit(&first).unwrap();
        let before = store.journal_size().1;
        let mut objects = tree(per_session).enumerate().map(|(i, (p, k))| stored(i as u64 + 1, p, k));
        loop {
            let chunk: Vec<StoredObject> = objects.by_ref().take(COMMIT_OBJECTS).collect();
            if chunk.is_empty() {
                break;
            }
            for o in &chunk {
                let mut one = Vec::new();
                Record::from(ObjectStored { session: s, object: o.clone() }).encode(&mut one);
                per_object_bytes += one.len() as u64 + 20;
            }
            let records: Vec<Record> = object_batches(s, chunk).into_iter().map(Record::from).collect();
            store.commit(&records).unwrap();
        }
        batch_bytes += store.journal_size().1 - before;
        let finish = SessionFinished {
            session: s,
            ended: STARTED + s * 86_400 + 3600,
            status: SessionStatus::Complete,
            objects: per_session,
            raw_bytes: 0,
            stored_bytes: 0,
        };
        // Ending the session writes its index file and snapshots the journal.
        store.commit(&[Record::from(finish)]).unwrap();
    }
    Built { seconds: t0.elapsed().as_secs_f64(), batch_bytes, per_object_bytes }
}

/// Bytes under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

/// Runs `coffer --state STATE ARGS` to the end under GNU time (`apt-get install time`), which
/// reports the child's own peak RSS: a child's rusage counts what the process that forked it
/// held, and this benchmark holds far more than `coffer ls` does. Returns seconds, peak RSS in
/// MiB and stdout.
fn coffer(state: &Path, args: &[&str]) -> (f64, f64, String) {
    let tmp = std::env::temp_dir();
    let out = tmp.join(format!("coffer-bench-catalog-{}.out", std::process::id()));
    let rss = tmp.join(format!("coffer-bench-catalog-{}.rss", std::process::id()));
    let t0 = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .expect("GNU time is needed to measure a command's peak RSS: apt-get install time");
    let secs = t0.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let kib: f64 = std::fs::read_to_string(&rss).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&rss);
    assert!(status.success(), "coffer {args:?}: {status}");
    (secs, kib / 1024.0, stdout)
}

/// This process's peak RSS in MiB since the last [`reset_peak`].
fn peak_rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn scales() -> Vec<(String, u64)> {
    let spec = std::env::var("COFFER_BENCH_SCALES").unwrap_or_else(|_| "1M,10M,50M".into());
    spec.split(',')
        .map(|s| {
            let n: u64 = s.trim().trim_end_matches('M').parse().expect("COFFER_BENCH_SCALES: like 1M,10M");
            (format!("{n}M"), n * 1_000_000)
        })
        .collect()
}

fn row(what: &str, secs: f64, rss: f64) {
    println!("  {what:<52} {:>10.1} ms {rss:>9.1} MiB", secs * 1000.0);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = PathBuf::from(std::env::var("COFFER_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .join("coffer-bench-catalog");
    for (name, objects) in scales() {
        let per_session = objects.min(SESSION_OBJECTS);
        let sessions = objects.div_ceil(per_session);
        let dir = base.join(&name);
        println!("== {name} objects: {sessions} sessions of {per_session}");
        let built = build(&dir, sessions, per_session);
        let index_bytes = du(&dir.join("index"));
        let journal_bytes = du(&dir.join("journal"));
        println!(
            "  built through the store in {:.1} s; state {:.1} MB (journal {:.1} MB, index files {:.1} MB)",
            built.seconds,
            (index_bytes + journal_bytes) as f64 / 1e6,
            journal_bytes as f64 / 1e6,
            index_bytes as f64 / 1e6
        );
        println!(
            "  bytes per object: index file {:.1}, journal batches {:.1} (dropped once indexed), one record per object {:.1}",
            index_bytes as f64 / objects as f64,
            built.batch_bytes as f64 / objects as f64,
            built.per_object_bytes as f64 / objects as f64
        );
        let (s, rss, _) = coffer(&dir, &["journal", "check"]);
        row("coffer journal check (reads every index file through)", s, rss);
        let (s, rss, out) = coffer(&dir, &["ls"]);
        assert_eq!(out.lines().count() as u64, sessions + 1, "{out}");
        row("coffer ls (opens the state: replay)", s, rss);
        // One file and one leaf directory in the middle of the last session.
        let mid = tree(per_session).nth(per_session as usize / 2).unwrap().0;
        let mid = String::from_utf8(mid).unwrap();
        let parent = mid.rsplit_once('/').unwrap().0.to_owned();
        let last = sessions.to_string();
        let (s, rss, out) = coffer(&dir, &["ls", &last, &mid]);
        assert_eq!(out.lines().count(), 1, "{out}");
        row(&format!("coffer ls {last} PATH (one of {per_session})"), s, rss);
        let (s, rss, out) = coffer(&dir, &["ls", &last, &parent]);
        assert_eq!(out.lines().count() as u64, FILES_PER_DIR + 1, "{out}");
        row("coffer ls SESSION DIR (one directory)", s, rss);

        // In process: one path found, the state open and the index opened.
        let probes: Vec<Vec<u8>> =
            tree(per_session).step_by((per_session / 100).max(1) as usize).map(|(p, _)| p).collect();
        reset_peak();
        let (store, _) = Store::open(&dir, Mode::ReadOnly).unwrap();
        let entries = store.entries(sessions).unwrap();
        let t0 = Instant::now();
        for p in &probes {
            assert_eq!(entries.find(p).unwrap().len(), 1);
        }
        let each = t0.elapsed().as_secs_f64() / probes.len() as f64;
        row(&format!("find one path, index open ({} paths)", probes.len()), each, peak_rss());

        // The baseline of an incremental over the whole session, walked in walk order.
        drop(entries);
        reset_peak();
        let before = peak_rss();
        let t0 = Instant::now();
        let baseline = Baseline::of_session(store.catalog(), &store.indexes(), sessions).unwrap();
        let mut unchanged = 0u64;
        for (i, (path, kind)) in tree(per_session).enumerate() {
            let o = stored(i as u64 + 1, path, kind);
            let meta = ObjectMeta {
                path: o.path,
                kind: o.kind,
                mode: o.mode,
                uid: o.uid,
                gid: o.gid,
                mtime: o.mtime,
                mtime_nsec: 0,
                size: o.size,
                rdev: 0,
                symlink: None,
                hardlink: None,
            };
            unchanged += u64::from(baseline.is_unchanged(&meta));
        }
        let files = tree(per_session).filter(|(_, k)| *k == ObjectKind::File).count() as u64;
        assert_eq!(unchanged, files, "every file of the walk is unchanged");
        row(
            &format!("incremental baseline over {per_session} objects (RSS before {before:.0} MiB)"),
            t0.elapsed().as_secs_f64(),
            peak_rss(),
        );
        drop(baseline);
        drop(store);
        println!();
    }
}
