//! Tape benchmark: coffer backs up corpus c2 (large files of real data) to the virtual tape
//! library, whose drives stream at a fixed rate (300 MB/s, a 256 MiB buffer, 1 s per
//! reposition, in real time), through 1 drive and through 2 drives at once, and with 256 KiB
//! and 1 MiB blocks. It reports aggregate throughput and how often each drive ran dry and had
//! to reposition (shoe-shine), then restores the 2-drive session and checks every file
//! against the corpus byte for byte.
//!
//! Run: `cargo bench --bench tape`. Prints a table; asserts nothing about time (it exits
//! non-zero only when a run fails or a restored file differs).
//!
//! Environment:
//! - `COFFER_CORPUS` (default /var/tmp/corpus): where corpus c2 is (built by
//!   `tests/bench/make-corpora.sh` when missing, unless `COFFER_BENCH_NO_BUILD=1`).
//! - `COFFER_BENCH_DRIVE_RATE` (default 300M): each drive's streaming rate.
//! - `COFFER_BENCH_RUNS` (default 2): runs per configuration, best kept.
//! - `COFFER_BENCH_DIR` (default /var/tmp/coffer-bench-tape): work directory (cartridge
//!   files are written there).

#[path = "support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::Value;
use support::*;

struct Outcome {
    drives: usize,
    block: &'static str,
    secs: f64,
    bytes_in: u64,
    bytes_stored: u64,
    repositions: Vec<u64>,
    restore_secs: Option<f64>,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tape bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Res<()> {
    let corpus_root = PathBuf::from(env_or("COFFER_CORPUS", "/var/tmp/corpus"));
    let no_build = std::env::var("COFFER_BENCH_NO_BUILD").is_ok_and(|v| v == "1");
    ensure_corpus(&corpus_root, no_build, "c2")?;
    let corpus = corpus_root.join("c2");
    let rate = env_or("COFFER_BENCH_DRIVE_RATE", "300M");
    let runs: usize =
        env_or("COFFER_BENCH_RUNS", "2").parse().map_err(|_| "COFFER_BENCH_RUNS: not a number")?;
    let dir = PathBuf::from(env_or("COFFER_BENCH_DIR", "/var/tmp/coffer-bench-tape"));
    let coffer = locate_coffer()?;
    let drop_them = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    println!(
        "tape bench: corpus {} to the virtual library, drives at {rate}/s, best of {runs}; caches {}",
        corpus.display(),
        if drop_them { "dropped before every run" } else { "NOT dropped (needs root)" }
    );
    let mut results = Vec::new();
    for (drives, block, restore) in [(1, "256K", false), (2, "256K", true), (2, "1M", false)] {
        let mut best: Option<Outcome> = None;
        for run in 1..=runs {
            let o = one_run(&coffer, &corpus, &dir, drives, block, &rate, drop_them, restore)?;
            println!(
                "  {drives} drive(s), {block} blocks, run {run}/{runs}: {:.2} s, repositions {:?}",
                o.secs, o.repositions
            );
            if best.as_ref().is_none_or(|b| o.secs < b.secs) {
                best = Some(o);
            }
        }
        results.extend(best);
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&results, &rate);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    coffer: &Path,
    corpus: &Path,
    dir: &Path,
    drives: usize,
    block: &'static str,
    rate: &str,
    drop_them: bool,
    restore: bool,
) -> Res<Outcome> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let board = dir.join("board.toml");
    let text = format!(
        "name = \"bench\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 8\n\
         cartridges = 6\ncapacity = \"8G\"\ndir = \"{}\"\ndrive_rate = \"{rate}\"\n\
         drive_buffer = \"256M\"\ndrive_reposition_ms = 1000\n",
        dir.join("carts").display()
    );
    std::fs::write(&board, text).map_err(|e| e.to_string())?;
    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(coffer);
    cmd.env("COFFER_BOARD", &board).arg("--state").arg(&state).args(["--json", "backup"]).arg(corpus);
    cmd.arg("--to").arg(format!("library:vlib,drives={drives},block={block}"));
    let b = timed(drop_them, &mut cmd, &logs, &format!("backup-{drives}-{block}"))?;
    if !b.status.success() {
        return Err(format!("backup through {drives} drives failed: {}\n{}", b.stdout, b.stderr));
    }
    let j: Value = serde_json::from_str(b.stdout.trim()).map_err(|e| format!("backup output: {e}"))?;
    let repositions = j["tape"][0]["repositions"]
        .as_array()
        .map(|a| a.iter().take(drives).map(|v| v.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let mut restore_secs = None;
    if restore {
        let out = dir.join("out");
        let mut cmd = Command::new(coffer);
        cmd.env("COFFER_BOARD", &board)
            .arg("--state")
            .arg(&state)
            .args(["--json", "restore", "latest", "--to"]);
        cmd.arg(&out);
        let r = timed(drop_them, &mut cmd, &logs, "restore")?;
        if !r.status.success() {
            return Err(format!("restore failed: {}\n{}", r.stdout, r.stderr));
        }
        same_files(corpus, &out)?;
        restore_secs = Some(r.secs);
    }
    Ok(Outcome {
        drives,
        block,
        secs: b.secs,
        bytes_in: j["bytes_in"].as_u64().unwrap_or(0),
        bytes_stored: j["bytes_stored"].as_u64().unwrap_or(0),
        repositions,
        restore_secs,
    })
}

fn print_table(results: &[Outcome], rate: &str) {
    let Some(one) = results.first() else { return };
    println!();
    println!(
        "drives  block  backup s  MB/s in  MB/s to tape  vs 1 drive  of {rate}/s × drives  repositions  restore s"
    );
    // The same size syntax the board uses.
    let per_drive = coffer::device::spec::parse_size(rate).unwrap_or(0) as f64;
    for o in results {
        let stored = o.bytes_stored as f64 / o.secs / 1e6;
        println!(
            "{:>6}  {:>5}  {:>8.2}  {:>7.0}  {:>12.0}  {:>9.2}x  {:>19.0}%  {:>11}  {:>9}",
            o.drives,
            o.block,
            o.secs,
            o.bytes_in as f64 / o.secs / 1e6,
            stored,
            one.secs / o.secs,
            100.0 * stored * 1e6 / (per_drive * o.drives as f64),
            format!("{:?}", o.repositions),
            o.restore_secs.map_or("-".into(), |s| format!("{s:.2}")),
        );
    }
}
