//! Multistream benchmark: coffer backs up corpus c2 (large files of real data) to N disk
//! targets at once, each throttled to the same fixed write rate, for N = 1, 2, 3: throughput
//! should grow with N until the CPU (compression) or the source is the bottleneck. Then it
//! restores each session, reading all N targets at once, and checks every restored file
//! against the corpus byte for byte.
//!
//! Run: `cargo bench --bench multi`. Prints a table; asserts nothing about time (it exits
//! non-zero only when a run fails or a restored file differs).
//!
//! Environment:
//! - `COFFER_CORPUS` (default /var/tmp/corpus): where corpus c2 is (built by
//!   `tests/bench/make-corpora.sh` when missing, unless `COFFER_BENCH_NO_BUILD=1`).
//! - `COFFER_BENCH_RATE` (default 100M): write rate of each target, bytes per second.
//! - `COFFER_BENCH_TARGETS` (default `1,2,3`): the target counts to run.
//! - `COFFER_BENCH_RUNS` (default 3): runs per count, best kept.
//! - `COFFER_BENCH_DIR` (default /var/tmp/coffer-bench-multi): work directory.

#[path = "support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::Value;
use support::*;

struct Outcome {
    targets: usize,
    backup_secs: f64,
    restore_secs: f64,
    bytes_in: u64,
    bytes_stored: u64,
    per_target: Vec<u64>,
    rss_kib: u64,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multi bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Res<()> {
    let corpus_root = PathBuf::from(env_or("COFFER_CORPUS", "/var/tmp/corpus"));
    let no_build = std::env::var("COFFER_BENCH_NO_BUILD").is_ok_and(|v| v == "1");
    ensure_corpus(&corpus_root, no_build, "c2")?;
    let corpus = corpus_root.join("c2");
    let rate = env_or("COFFER_BENCH_RATE", "100M");
    let counts: Vec<usize> = env_or("COFFER_BENCH_TARGETS", "1,2,3")
        .split(',')
        .map(|n| n.trim().parse().map_err(|_| format!("COFFER_BENCH_TARGETS: '{n}' is not a number")))
        .collect::<Res<_>>()?;
    let runs: usize =
        env_or("COFFER_BENCH_RUNS", "3").parse().map_err(|_| "COFFER_BENCH_RUNS: not a number")?;
    let dir = PathBuf::from(env_or("COFFER_BENCH_DIR", "/var/tmp/coffer-bench-multi"));
    let coffer = locate_coffer()?;
    let drop_them = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    println!(
        "multistream bench: corpus {} to 1..N disk targets at {rate}/s each, best of {runs}; caches {}",
        corpus.display(),
        if drop_them { "dropped before every run" } else { "NOT dropped (needs root)" }
    );
    let mut results = Vec::new();
    for &n in &counts {
        let mut best: Option<Outcome> = None;
        for run in 1..=runs {
            let o = one_run(&coffer, &corpus, &dir, n, &rate, drop_them)?;
            println!(
                "  {n} target(s), run {run}/{runs}: backup {:.2} s, restore {:.2} s, per target {:?} MB",
                o.backup_secs,
                o.restore_secs,
                o.per_target.iter().map(|b| b / 1_000_000).collect::<Vec<_>>()
            );
            if best.as_ref().is_none_or(|b| o.backup_secs < b.backup_secs) {
                best = Some(o);
            }
        }
        results.extend(best);
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&results);
    Ok(())
}

fn one_run(coffer: &Path, corpus: &Path, dir: &Path, n: usize, rate: &str, drop_them: bool) -> Res<Outcome> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(coffer);
    cmd.arg("--state").arg(&state).args(["--json", "backup"]).arg(corpus);
    for t in 0..n {
        cmd.arg("--to").arg(format!("disk:{},rate={rate}", dir.join(format!("t{t}")).display()));
    }
    let b = timed(drop_them, &mut cmd, &logs, &format!("backup-{n}"))?;
    if !b.status.success() {
        return Err(format!("backup to {n} targets failed: {}\n{}", b.stdout, b.stderr));
    }
    let j: Value = serde_json::from_str(b.stdout.trim()).map_err(|e| format!("backup output: {e}"))?;
    let per_target: Vec<u64> = match j["streams"].as_array() {
        Some(a) if !a.is_empty() => a.iter().map(|s| s["bytes"].as_u64().unwrap_or(0)).collect(),
        _ => vec![j["bytes_in"].as_u64().unwrap_or(0)],
    };
    let out = dir.join("out");
    let mut cmd = Command::new(coffer);
    cmd.arg("--state").arg(&state).args(["--json", "restore", "latest", "--to"]).arg(&out);
    let r = timed(drop_them, &mut cmd, &logs, &format!("restore-{n}"))?;
    if !r.status.success() {
        return Err(format!("restore from {n} targets failed: {}\n{}", r.stdout, r.stderr));
    }
    same_files(corpus, &out)?;
    Ok(Outcome {
        targets: n,
        backup_secs: b.secs + b.sync_secs,
        restore_secs: r.secs + r.sync_secs,
        bytes_in: j["bytes_in"].as_u64().unwrap_or(0),
        bytes_stored: j["bytes_stored"].as_u64().unwrap_or(0),
        per_target,
        rss_kib: b.rss_kib.max(r.rss_kib),
    })
}

fn print_table(results: &[Outcome]) {
    let Some(one) = results.iter().find(|o| o.targets == 1).or(results.first()) else {
        return;
    };
    println!();
    println!(
        "targets  backup+sync s  MB/s in  stored MB/s  speed-up vs {}  restore+sync s  largest/smallest target  peak RSS MiB",
        one.targets
    );
    for o in results {
        let mb_in = o.bytes_in as f64 / o.backup_secs / 1e6;
        let mb_st = o.bytes_stored as f64 / o.backup_secs / 1e6;
        let (lo, hi) = (
            o.per_target.iter().min().copied().unwrap_or(0),
            o.per_target.iter().max().copied().unwrap_or(0),
        );
        println!(
            "{:>7}  {:>13.2}  {:>7.0}  {:>11.0}  {:>14.2}x  {:>14.2}  {:>23.4}  {:>12}",
            o.targets,
            o.backup_secs,
            mb_in,
            mb_st,
            one.backup_secs / o.backup_secs,
            o.restore_secs,
            if lo > 0 { hi as f64 / lo as f64 } else { 0.0 },
            o.rss_kib / 1024
        );
    }
}
