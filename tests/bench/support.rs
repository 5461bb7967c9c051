//! What the benchmarks share: timing a child with its peak RSS, dropping caches, the corpora,
//! and finding (or building) the release binary.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

/// A result whose error is a message for the bench's output.
pub type Res<T> = Result<T, String>;

/// One timed child process.
#[derive(Debug)]
pub struct Run {
    pub secs: f64,
    /// `sync` right after the run: the time to make its writes durable.
    pub sync_secs: f64,
    /// Peak resident set of the child (and its reaped children), KiB.
    pub rss_kib: u64,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.into())
}

/// Quotes for sh.
pub fn q(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:=".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Output of a short command, trimmed; empty if it cannot run.
pub fn capture(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The words of `s` joined by single spaces.
pub fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The bench process's own peak RSS (VmHWM, KiB) when it last spawned a measured child. Linux
/// charges a posix_spawn/vfork parent's peak RSS to the child at exec, so no child's ru_maxrss
/// is reported below it: the bench keeps itself small, and says what the floor was.
pub static RSS_FLOOR_KIB: AtomicU64 = AtomicU64::new(0);

pub fn own_peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`.
pub fn drop_caches(drop_them: bool) {
    let _ = Command::new("sync").status();
    if drop_them {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    }
}

/// Runs `cmd` with stdout and stderr to files in `logs`, reaps it with `wait4` for its peak RSS,
/// then times a `sync`.
pub fn timed(drop_them: bool, cmd: &mut Command, logs: &Path, label: &str) -> Res<Run> {
    drop_caches(drop_them);
    let out_path = logs.join(format!("{label}.out"));
    let err_path = logs.join(format!("{label}.err"));
    let out = File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    RSS_FLOOR_KIB.fetch_max(own_peak_rss_kib(), Ordering::Relaxed);
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // SAFETY: `pid` is our child, not yet reaped (`Child` is never waited on); `status` and
        // `usage` are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 on {label}: {e}"));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    drop(child);
    // SAFETY: wait4 returned the pid, so it filled in the rusage (and it started zeroed, which is
    // a valid rusage anyway).
    let usage = unsafe { usage.assume_init() };
    let t = Instant::now();
    let _ = Command::new("sync").status();
    let sync_secs = t.elapsed().as_secs_f64();
    Ok(Run {
        secs,
        sync_secs,
        rss_kib: usage.ru_maxrss.max(0) as u64,
        status: ExitStatus::from_raw(status),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// A shell pipeline, run by bash with `pipefail` so that a failing `tar` is not hidden by `lz4`.
pub fn shell(cmd: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", &format!("set -o pipefail; {cmd}")]);
    c
}

/// Total size of the `*.cvol` files under `dir`.
/// Makes sure the corpus is there; builds it with make-corpora.sh if allowed.
pub fn ensure_corpus(root: &Path, no_build: bool, name: &str) -> Result<(), String> {
    let present = |n: &str| root.join(format!("{n}.done")).is_file() && root.join(n).is_dir();
    if present(name) {
        return Ok(());
    }
    if no_build {
        return Err(format!("{name}: not in {} and COFFER_BENCH_NO_BUILD=1: skipped", root.display()));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bench/make-corpora.sh");
    println!("{name}: missing in {}: building it with {}", root.display(), script.display());
    let status = Command::new("bash")
        .arg(&script)
        .env("CORPUS", root)
        .status()
        .map_err(|e| format!("{name}: cannot run {}: {e}", script.display()))?;
    if !status.success() || !present(name) {
        return Err(format!("{name}: make-corpora.sh failed ({status}): skipped"));
    }
    Ok(())
}

/// Finds target/release/coffer next to the bench executable; builds it if missing or older.
pub fn locate_coffer() -> Res<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{}: no target directory above it", exe.display()))?;
    let bin = release.join("coffer");
    let stale = match (mtime(&bin), mtime(&exe)) {
        (Some(b), Some(e)) => b < e,
        _ => true,
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        println!("{} is missing or older than the bench: cargo build --release --bin coffer", bin.display());
        let status = Command::new(&cargo)
            .args(["build", "--release", "--bin", "coffer"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() || !bin.is_file() {
            return Err(format!("cargo build --release --bin coffer failed ({status})"));
        }
    }
    Ok(bin)
}

/// Every file at the top of the corpus is in `out` with the same bytes (`cmp`).
pub fn same_files(corpus: &Path, out: &Path) -> Res<()> {
    for e in std::fs::read_dir(corpus).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.is_file() {
            let name = p.file_name().expect("a file has a name");
            let status =
                Command::new("cmp").arg(&p).arg(out.join(name)).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("{}: restored file differs", p.display()));
            }
        }
    }
    Ok(())
}
