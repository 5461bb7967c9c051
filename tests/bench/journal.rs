//! Journal benchmark: append + group-commit throughput, replay speed and snapshot cost, on the
//! real file system through io_uring, with the real catalog records and apply.
//!
//! Run: `cargo bench --bench journal` (set `COFFER_BENCH_DIR` to choose where the journal
//! goes; default /var/tmp). Prints a table; asserts nothing about time.
//!
//! `cargo bench --bench journal -- lock-hold` measures only how long the store's lock is held
//! while [`LOCK_HOLD_RECORDS`] records are committed through a shared store (the snapshots
//! every `SNAPSHOT_EVERY` records are the long holds), and how long a reader that takes the
//! lock meanwhile waits: what the service's control plane would wait if it took the lock.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffer::catalog::{
    MediumAdded, MediumKind, ObjectStored, Record, SessionKind, SessionMode, SessionPart, SessionStarted,
    StoredObject,
};
use coffer::format::records::ObjectKind;
use coffer::journal::{Journal, Mode, UringDir};
use coffer::store::{SNAPSHOT_EVERY, SharedStore, Store};

/// Records replayed in the replay measurement.
const REPLAY_RECORDS: u64 = 1_000_000;
/// Records committed in the lock-hold measurement: two snapshots' worth.
const LOCK_HOLD_RECORDS: u64 = 2 * SNAPSHOT_EVERY;
/// Records per commit in the lock-hold measurement (a backup commits about this many).
const LOCK_HOLD_GROUP: u64 = 1000;
/// How often the reader of the lock-hold measurement takes the lock (the service's refresh
/// took it once a second; faster here, to meet every long hold).
const PROBE_EVERY: Duration = Duration::from_millis(5);

fn object(i: u64) -> Record {
    Record::from(ObjectStored {
        session: 1,
        object: StoredObject {
            id: i,
            path: format!("usr/src/linux-source-6.1/drivers/net/ethernet/intel/e1000e/file_{i}.c")
                .into_bytes(),
            kind: ObjectKind::File,
            size: 10_000 + i % 5000,
            mtime: 1_700_000_000 + i as i64,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            segment_offset: 0,
            length: 10_000 + i % 5000,
            stream: 0,
            part: 0,
            position: i * 4_000,
            digest: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        },
    })
}

fn preamble() -> Vec<Record> {
    vec![
        Record::from(MediumAdded {
            medium: [7; 16],
            barcode: "BENCH001".into(),
            pool: "default".into(),
            kind: MediumKind::Disk,
            block_size: 4096,
            capacity: 1 << 40,
            created: 1_790_000_000,
            location: "disk:/var/tmp/bench".into(),
        }),
        Record::from(SessionStarted {
            session: 1,
            job: 1,
            host: "bench".into(),
            source: "/usr/src".into(),
            started: 1_790_000_000,
            streams: 1,
            mode: SessionMode::Files,
            kind: SessionKind::Full,
            source_key: [0; 32],
        }),
        Record::from(SessionPart {
            session: 1,
            stream: 0,
            part: 0,
            medium: [7; 16],
            position: 0,
            file_number: 0,
        }),
    ]
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Appends `n` object records through the store (catalog apply + journal), committing every
/// `group`; returns records per second.
fn append(base: &Path, n: u64, group: u64) -> (f64, u64) {
    let dir = base.join(format!("append-{group}"));
    let (mut store, _) = Store::open(&dir, Mode::Write).unwrap();
    store.commit(&preamble()).unwrap();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(group as usize);
    for i in 0..n {
        batch.push(object(i));
        if batch.len() as u64 == group {
            store.commit(&batch).unwrap();
            batch.clear();
        }
    }
    store.commit(&batch).unwrap();
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, dir_size(&dir.join("journal")))
}

/// Commits [`LOCK_HOLD_RECORDS`] records through a shared store while a reader takes the
/// lock every [`PROBE_EVERY`]; prints the longest holds and the reader's longest wait.
fn lock_hold(base: &Path) {
    let dir = base.join("lock-hold");
    let (store, _) = Store::open(&dir, Mode::Write).unwrap();
    let shared = SharedStore::new(store);
    shared.lock().commit(&preamble()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (longest_wait, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (shared, stop, longest_wait, busy) =
            (shared.clone(), stop.clone(), longest_wait.clone(), busy.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // What the service's refresh does now: try, and keep the last values if busy.
                if shared.try_lock().is_none() {
                    busy.fetch_add(1, Ordering::Relaxed);
                }
                // What it did before: wait for the lock.
                let t = Instant::now();
                drop(shared.lock());
                longest_wait.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                std::thread::sleep(PROBE_EVERY);
            }
        })
    };
    let mut holds: Vec<(Duration, u64)> = Vec::new();
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(LOCK_HOLD_GROUP as usize);
    for i in 0..LOCK_HOLD_RECORDS {
        batch.push(object(i));
        if batch.len() as u64 == LOCK_HOLD_GROUP || i + 1 == LOCK_HOLD_RECORDS {
            let mut g = shared.lock();
            let t = Instant::now();
            g.commit(&batch).unwrap();
            holds.push((t.elapsed(), i + 1));
            drop(g);
            batch.clear();
        }
    }
    let total = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let mut sorted: Vec<Duration> = holds.iter().map(|h| h.0).collect();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    holds.sort_by_key(|h| std::cmp::Reverse(h.0));
    println!(
        "lock hold: {LOCK_HOLD_RECORDS} object records, {LOCK_HOLD_GROUP} per commit, a snapshot every {SNAPSHOT_EVERY}: {} commits in {:.1} s",
        sorted.len(),
        total.as_secs_f64()
    );
    println!("  median hold per commit: {:.3} ms", median.as_secs_f64() * 1e3);
    for (d, at) in holds.iter().take(3) {
        println!("  long hold: {:.3} s (the commit ending at record {at})", d.as_secs_f64());
    }
    println!(
        "  a reader taking the lock every {} ms waited at most {:.3} s; try_lock found it busy {} times",
        PROBE_EVERY.as_millis(),
        longest_wait.load(Ordering::Relaxed) as f64 / 1e6,
        busy.load(Ordering::Relaxed)
    );
}

fn main() {
    let base_dir = std::env::var("COFFER_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let tmp = tempfile::tempdir_in(&base_dir).unwrap();
    let base = tmp.path();
    if std::env::args().any(|a| a == "lock-hold") {
        lock_hold(base);
        return;
    }
    println!("journal benchmark in {} ({} records replayed)", base.display(), REPLAY_RECORDS);
    println!();
    println!("{:<44} {:>14} {:>12}", "append + commit (store: catalog + journal)", "records/s", "journal MB");
    for (n, group) in
        [(20_000u64, 1u64), (200_000, 10), (1_000_000, 100), (1_000_000, 1000), (1_000_000, 10_000)]
    {
        let (rate, bytes) = append(base, n, group);
        let label = format!("{n} records, {group} per commit");
        println!("{label:<44} {rate:>14.0} {:>12.1}", bytes as f64 / 1e6);
    }

    // Raw journal append without the catalog, for comparison.
    let raw = base.join("raw");
    let (mut j, _) = Journal::open(UringDir::new(&raw).unwrap(), Mode::Write, |_| Ok(())).unwrap();
    let records: Vec<Record> = (0..REPLAY_RECORDS).map(object).collect();
    let t = Instant::now();
    for chunk in records.chunks(1000) {
        for r in chunk {
            j.append(r).unwrap();
        }
        j.commit().unwrap();
    }
    let rate = REPLAY_RECORDS as f64 / t.elapsed().as_secs_f64();
    println!("{:<44} {rate:>14.0}", "journal only, 1000 per commit");
    drop(j);

    println!();
    println!("{:<44} {:>14} {:>12}", "replay of 1,000,000 records", "seconds", "records/s");
    let dir = base.join("append-1000");
    for cold in [false, true] {
        if cold && !drop_caches() {
            println!("(cold-cache replay skipped: cannot write /proc/sys/vm/drop_caches)");
            continue;
        }
        let t = Instant::now();
        let (store, report) = Store::open(&dir, Mode::Write).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(store.catalog().session(1).unwrap().pieces(), REPLAY_RECORDS);
        let label = format!("store open: replay + decode + apply ({})", if cold { "cold" } else { "warm" });
        println!("{label:<44} {secs:>14.3} {:>12.0}", report.records as f64 / secs);
    }
    let t = Instant::now();
    let (_, report) = Journal::open(UringDir::new(&raw).unwrap(), Mode::Write, |_| Ok(())).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<44} {secs:>14.3} {:>12.0}",
        "journal only: frames checked, no decode",
        report.records as f64 / secs
    );

    println!();
    let (mut store, _) = Store::open(&dir, Mode::Write).unwrap();
    let t = Instant::now();
    store.snapshot().unwrap();
    let snap = t.elapsed().as_secs_f64();
    drop(store);
    let t = Instant::now();
    let (store, _) = Store::open(&dir, Mode::Write).unwrap();
    let reopen = t.elapsed().as_secs_f64();
    assert_eq!(store.catalog().session(1).unwrap().pieces(), REPLAY_RECORDS);
    println!("snapshot of 1,000,000 objects: {snap:.3} s; open from the snapshot: {reopen:.3} s");
}
