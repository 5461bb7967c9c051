//! Backup agents benchmark: the same data backed up locally (the peer) and through backup agents,
//! in the same run. Corpora c2 (large files) and c1 (source tree) are split into four quarters,
//! one per agent (`$COFFER_BENCH_DIR/agentK`: c2's bigK.bin and a quarter of c1 by bytes, copied
//! once and reused). For K = 1, 2, 4 (the first K quarters):
//!
//! - local: `coffer backup agent0 … agentK-1 --to disk:DIR`, run directly, no service;
//! - agents → disk: a fresh `coffer serve` (its board has `[agents] listen` on 127.0.0.1), K
//!   agents added, enrolled and run as processes of their own, then K `coffer backup
//!   agent:aK:… --to disk:DIR` started at the same time, timed until all have ended;
//! - agents → tape: the same into a virtual library of one drive streaming at 300 MB/s
//!   (`--to library:vlib`), with the drive's repositions from `coffer status --json`;
//! - agents → tape+spool: the same with the board's `[agents] spool` (2 GiB, in the work
//!   directory), so the drive is fed from the spool at full speed or not at all.
//!
//! The service runs one job at a time: the K backups started together are queued and run one
//! after another (the output says so). So each row has two times: the wall clock (with the
//! queue's waits: a finished job is reaped, and the next started, at the next queue scan, 1 s
//! here) and the backups' own durations added up (from each job's message).
//!
//! For each: MB/s of input bytes (from the sessions), local MB/s over this MB/s, the box's
//! (`coffer serve`'s) peak RSS (VmHWM; each configuration gets a fresh service, so it is the
//! peak of that configuration: start, enrolments, backups) and CPU time (utime+stime delta over
//! the backups), the agents' CPU time and peak RSS. Then the box's RSS with 8 agents connected
//! and idle. Caches are dropped before every timed run (when root), as in the backup bench.
//!
//! Run: `cargo bench --bench agents`. Prints the conditions and two tables (throughput,
//! resources); asserts nothing about time (it exits non-zero only when a run fails). The
//! service and agents are plain processes on loopback (no network namespaces); every child
//! dies with the bench (PR_SET_PDEATHSIG), whatever ends it.
//!
//! Environment:
//! - `COFFER_CORPUS` (default /var/tmp/corpus): where corpora c1 and c2 are; a missing one is
//!   built with `tests/bench/make-corpora.sh` (that corpus only) unless
//!   `COFFER_BENCH_NO_BUILD=1`.
//! - `COFFER_BENCH_DIR` (default /var/tmp/coffer-bench-agents): the agents' quarters (kept,
//!   listed in `agents.done`: remove it to make them again) and a work directory (removed at
//!   the end of a run that went well; kept with the logs of one that failed).
//! - `COFFER_BENCH_AGENTS` (default `1,2,4`): agent counts, 1 to 4.
//! - `COFFER_BENCH_IDLE_AGENTS` (default 8): agents connected for the idle RSS; 0 skips it.
//! - `COFFER_BENCH_RUNS` (default 1): rounds; the best time of each configuration is kept.
//! - `COFFER_BENCH_DRIVE_RATE` (default 300M): the virtual drive's streaming rate.
//! - `COFFER_BENCH_GUARD` (default 1800): seconds one configuration's backups may take.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::*;

/// Quarters: most agents backed up at once.
const QUARTERS: usize = 4;
/// Name of the box (its board).
const BOX_NAME: &str = "benchbox";
/// Bound on the service starting (READY=1) or stopping after SIGTERM.
const SERVICE_GUARD: Duration = Duration::from_secs(60);
/// Bound on the agents being listed connected, and on one enrolment.
const CONNECT_GUARD: Duration = Duration::from_secs(60);
/// Bound on a short command to the service (agent add, ls, status).
const COMMAND_GUARD: Duration = Duration::from_secs(120);
/// Version of the quarters' layout: a marker of another version is rebuilt.
const LAYOUT: &str = "agents-quarters 1";
/// The virtual drive's buffer and reposition time (the library's defaults, named here).
const DRIVE_BUFFER: &str = "256M";
const DRIVE_BUFFER_BYTES: u64 = 256 << 20;
const DRIVE_REPOSITION_MS: u64 = 1000;
/// The spool of the spooled tape runs.
const SPOOL_SIZE: &str = "2G";
/// The service's queue scan, seconds (a queued job starts within one scan of the last ending).
const SCAN_SECONDS: u64 = 1;

// ---------------------------------------------------------------------------------------------
// Processes

/// Pids of the long-lived children (service, agents, backups) not reaped yet: the panic hook
/// kills them. Every child also gets SIGKILL when the bench dies (PR_SET_PDEATHSIG).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `cmd`'s child die with the bench, however the bench ends (panic = "abort" in the
/// release profile runs no destructors).
fn dies_with_bench(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec; it calls only prctl and
    // getppid, which are async-signal-safe, and allocates nothing (an OS error is no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The bench died before the prctl: nobody would kill this child.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// A child with its output in files of the logs directory. Dropping it kills it if it runs.
#[derive(Debug)]
struct Proc {
    what: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    reaped: Option<ExitStatus>,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command, logs: &Path, label: &str) -> Res<Proc> {
        let out = logs.join(format!("{label}.out"));
        let err = logs.join(format!("{label}.err"));
        let o = File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let e = File::create(&err).map_err(|e| format!("{}: {e}", err.display()))?;
        dies_with_bench(&mut cmd).stdin(Stdio::null()).stdout(o).stderr(e);
        let child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
        children().push(child.id());
        Ok(Proc { what: what.into(), child, out, err, reaped: None })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn reap(&mut self, status: ExitStatus) -> ExitStatus {
        let pid = self.child.id();
        children().retain(|&p| p != pid);
        self.reaped = Some(status);
        status
    }

    /// Its exit status once it has exited.
    fn exited(&mut self) -> Res<Option<ExitStatus>> {
        if let Some(s) = self.reaped {
            return Ok(Some(s));
        }
        match self.child.try_wait() {
            Ok(Some(s)) => Ok(Some(self.reap(s))),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("waiting for {}: {e}", self.what)),
        }
    }

    /// Waits at most `guard` for it to exit; kills it past that.
    fn wait_exit(&mut self, guard: Duration) -> Res<ExitStatus> {
        let deadline = Instant::now() + guard;
        loop {
            if let Some(s) = self.exited()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("{} did not end within {guard:?} (killed)\n{}", self.what, self.tail()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, at most `grace` to end, then SIGKILL. Whether it ended by itself, successfully.
    fn stop(&mut self, grace: Duration) -> bool {
        if self.reaped.is_some() {
            return self.reaped.is_some_and(|s| s.success());
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child, not reaped
        // yet (checked above), so it names no other process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.exited() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// SIGKILL, and reaps it.
    fn kill(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.reap(s);
            }
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The last lines of its output, for an error message.
    fn tail(&self) -> String {
        let last = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(12)..].join("\n")
        };
        format!(
            "--- {} (stdout {}, stderr {}):\n{}\n{}",
            self.what,
            self.out.display(),
            self.err.display(),
            last(self.stdout()),
            last(self.stderr())
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `coffer --state STATE ARGS...`, with an environment that cannot leak into the run.
fn coffer_cmd(coffer: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(coffer);
    c.arg("--state").arg(state).args(args);
    c.env_remove("COFFER_STATE")
        .env_remove("RUST_LOG")
        .env_remove("XDG_STATE_HOME")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Runs a short command to its end (at most `guard`); its stdout, or an error naming it.
fn short(what: &str, cmd: Command, logs: &Path, label: &str, guard: Duration) -> Res<String> {
    let mut p = Proc::spawn(what, cmd, logs, label)?;
    let status = p.wait_exit(guard)?;
    if !status.success() {
        return Err(format!("{what}: {status}\n{}", p.tail()));
    }
    Ok(p.stdout())
}

fn json_of(what: &str, text: &str) -> Res<Value> {
    text.lines().rev().find_map(|l| serde_json::from_str(l).ok()).ok_or_else(|| {
        format!("{what}: no JSON in its output: {}", text.chars().take(400).collect::<String>())
    })
}

// ---------------------------------------------------------------------------------------------
// /proc

/// A `Vm…:` line of /proc/PID/status, KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, seconds (/proc/PID/stat fields 14 and 15).
fn cpu_secs(pid: u32) -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields after it start past its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / tck
}

/// CPU time of the reaped children of the bench, seconds (getrusage RUSAGE_CHILDREN).
fn children_cpu_secs() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `u` is valid for writes of a rusage for the duration of the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, u.as_mut_ptr()) };
    if r != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so it filled the rusage (which started zeroed anyway).
    let u = unsafe { u.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// Corpora and quarters

/// Whether a corpus without its marker is whole anyway: c1 holds files, c2 its four files of
/// 512 MiB.
fn looks_whole(root: &Path, name: &str) -> bool {
    let dir = root.join(name);
    match name {
        "c2" => (0..4)
            .all(|i| std::fs::metadata(dir.join(format!("big{i}.bin"))).is_ok_and(|m| m.len() == 512 << 20)),
        _ => std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()),
    }
}

/// Makes sure corpus `name` is in `root`: as support's `ensure_corpus`, with make-corpora.sh,
/// but building that corpus only (in `scratch`, where the others' markers stand in for them, then
/// moved into `root`): the script would otherwise build every corpus whose marker is missing,
/// and remove a c1 that is there without one. Returns a line saying what is used.
fn ensure_only(root: &Path, no_build: bool, name: &str, scratch: &Path) -> Res<String> {
    let marker = root.join(format!("{name}.done"));
    let dir = root.join(name);
    if marker.is_file() && dir.is_dir() {
        let m = std::fs::read_to_string(&marker).unwrap_or_default();
        return Ok(format!("{} ({})", dir.display(), words(&m)));
    }
    if !marker.is_file() && looks_whole(root, name) {
        return Ok(format!("{} (no {name}.done marker: used as found)", dir.display()));
    }
    if no_build {
        return Err(format!("{name}: not in {} and COFFER_BENCH_NO_BUILD=1", root.display()));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bench/make-corpora.sh");
    println!("{name}: missing in {}: building it (only it) with {}", root.display(), script.display());
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    for other in ["c1", "c2", "c3"].iter().filter(|&&o| o != name) {
        std::fs::write(scratch.join(format!("{other}.done")), "not built here\n")
            .map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("CORPUS", scratch);
    let status =
        dies_with_bench(&mut cmd).status().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let (built, built_marker) = (scratch.join(name), scratch.join(format!("{name}.done")));
    if !status.success() || !built.is_dir() {
        return Err(format!("{name}: make-corpora.sh failed ({status})"));
    }
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot remove the partial {}: {e}", dir.display()))?;
    }
    std::fs::rename(&built, &dir)
        .and_then(|()| std::fs::rename(&built_marker, &marker))
        .map_err(|e| format!("cannot move {} to {}: {e}", built.display(), dir.display()))?;
    let _ = std::fs::remove_dir_all(scratch);
    let m = std::fs::read_to_string(&marker).unwrap_or_default();
    Ok(format!("{} (built now: {})", dir.display(), words(&m)))
}

/// One entry of a tree, in walk order.
#[derive(Debug)]
enum Node {
    Dir,
    File(u64),
    Link,
}

/// Every entry under `root` (not `root` itself), depth first, names sorted by bytes.
fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Node)>) -> Res<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for n in names {
        let r = rel.join(&n);
        let m = std::fs::symlink_metadata(root.join(&r)).map_err(|e| format!("{}: {e}", r.display()))?;
        if m.is_dir() {
            out.push((r.clone(), Node::Dir));
            walk(root, &r, out)?;
        } else if m.is_file() {
            out.push((r, Node::File(m.len())));
        } else if m.file_type().is_symlink() {
            out.push((r, Node::Link));
        }
    }
    Ok(())
}

/// One agent's quarter: its directory, files and bytes.
#[derive(Debug, Clone, Default)]
struct Quarter {
    dir: PathBuf,
    files: u64,
    bytes: u64,
}

/// The quarters in `dir` (`agentK`, marker `agents.done`): made once from c2 (bigK.bin) and c1
/// (cut in four by bytes in walk order, so each quarter is a run of neighbouring directories),
/// copied (hard links would change the corpus's link counts, which the backup bench checks).
fn quarters(dir: &Path, c1: &Path, c2: &Path) -> Res<(Vec<Quarter>, String)> {
    let marker = dir.join("agents.done");
    let text = std::fs::read_to_string(&marker).unwrap_or_default();
    let mut lines = text.lines();
    if lines.next() == Some(LAYOUT) {
        let qs: Vec<Quarter> = lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f[..] {
                    [name, "files", n, "bytes", b] => {
                        Some(Quarter { dir: dir.join(name), files: n.parse().ok()?, bytes: b.parse().ok()? })
                    }
                    _ => None,
                }
            })
            .collect();
        if qs.len() == QUARTERS && qs.iter().all(|q| q.dir.is_dir()) {
            return Ok((qs, format!("{} (made earlier; {marker:?} lists them)", dir.display())));
        }
    }
    println!("making the agents' quarters in {} (once: copies of c1 and c2)", dir.display());
    let _ = std::fs::remove_file(&marker);
    let mut qs: Vec<Quarter> =
        (0..QUARTERS).map(|k| Quarter { dir: dir.join(format!("agent{k}")), ..Quarter::default() }).collect();
    for q in &qs {
        if q.dir.exists() {
            std::fs::remove_dir_all(&q.dir).map_err(|e| format!("cannot remove {}: {e}", q.dir.display()))?;
        }
        std::fs::create_dir_all(q.dir.join("c1")).map_err(|e| format!("{}: {e}", q.dir.display()))?;
        std::fs::create_dir_all(q.dir.join("c2")).map_err(|e| format!("{}: {e}", q.dir.display()))?;
    }
    let copy = |from: &Path, to: &Path| -> Res<u64> {
        std::fs::copy(from, to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
    };
    for (k, q) in qs.iter_mut().enumerate() {
        let name = format!("big{k}.bin");
        q.bytes += copy(&c2.join(&name), &q.dir.join("c2").join(&name))?;
        q.files += 1;
    }
    let mut nodes = Vec::new();
    walk(c1, Path::new(""), &mut nodes)?;
    let total: u64 = nodes.iter().map(|(_, n)| if let Node::File(s) = n { *s } else { 0 }).sum();
    let mut before = 0u64;
    for (rel, node) in &nodes {
        let k = ((before as u128 * QUARTERS as u128 / total.max(1) as u128) as usize).min(QUARTERS - 1);
        let q = &mut qs[k];
        let to = q.dir.join("c1").join(rel);
        let parent = to.parent().expect("below the quarter's directory");
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        match node {
            Node::Dir => std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?,
            Node::File(s) => {
                copy(&c1.join(rel), &to)?;
                q.files += 1;
                q.bytes += s;
                before += s;
            }
            Node::Link => {
                let target =
                    std::fs::read_link(c1.join(rel)).map_err(|e| format!("{}: {e}", rel.display()))?;
                symlink(&target, &to).map_err(|e| format!("{}: {e}", to.display()))?;
            }
        }
    }
    let _ = Command::new("sync").status();
    let mut m = format!("{LAYOUT}\n");
    for q in &qs {
        let name = q.dir.file_name().expect("agentK").to_string_lossy();
        let _ = writeln!(m, "{name} files {} bytes {}", q.files, q.bytes);
    }
    std::fs::write(&marker, m).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok((qs, format!("{} (made now)", dir.display())))
}

// ---------------------------------------------------------------------------------------------
// The box

/// Where the configuration writes: disk, or the virtual library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Disk,
    Tape,
    /// The tape, through the board's agents spool ([`SPOOL_SIZE`] in the work directory).
    Spooled,
}

/// A running `coffer serve` in a fresh state directory.
#[derive(Debug)]
struct TheBox {
    coffer: PathBuf,
    state: PathBuf,
    port: u16,
    logs: PathBuf,
    service: Proc,
    /// Commands run so far (for unique log names).
    n: usize,
}

/// A free TCP port on loopback (bound and let go: another process could take it meanwhile).
fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl TheBox {
    /// Writes a board (agents on 127.0.0.1:PORT, `library` when given) in `dir` and starts the
    /// service; waits for READY=1.
    fn start(coffer: &Path, dir: &Path, library: Option<&str>) -> Res<TheBox> {
        let state = dir.join("box");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let port = free_port()?;
        let board = dir.join("board.toml");
        let text = format!(
            "name = \"{BOX_NAME}\"\nstate = \"{}\"\n[jobs]\nscan_seconds = {SCAN_SECONDS}\n[agents]\nlisten = \"127.0.0.1:{port}\"\n{}",
            state.display(),
            library.unwrap_or("")
        );
        std::fs::write(&board, text).map_err(|e| format!("{}: {e}", board.display()))?;
        let sock_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).map_err(|e| format!("notify socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
        let board_s = board.display().to_string();
        let mut cmd = coffer_cmd(coffer, &state, &["--board", &board_s, "serve"]);
        cmd.env("NOTIFY_SOCKET", &sock_path);
        let mut service = Proc::spawn("coffer serve (the box)", cmd, &logs, "serve")?;
        let deadline = Instant::now() + SERVICE_GUARD;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1")
            {
                break;
            }
            if let Some(s) = service.exited()? {
                return Err(format!("the service ended ({s}) before READY=1\n{}", service.tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the service sent no READY=1 within {SERVICE_GUARD:?}\n{}",
                    service.tail()
                ));
            }
        }
        drop(sock);
        let _ = std::fs::remove_file(&sock_path);
        Ok(TheBox { coffer: coffer.into(), state, port, logs, service, n: 0 })
    }

    fn pid(&self) -> u32 {
        self.service.pid()
    }

    /// `coffer --state BOX --json ARGS` through the service, to its end; its JSON.
    fn json(&mut self, args: &[&str]) -> Res<Value> {
        self.n += 1;
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let what = format!("coffer {}", all.join(" "));
        let out = short(
            &what,
            coffer_cmd(&self.coffer, &self.state, &all),
            &self.logs,
            &format!("cmd-{}", self.n),
            COMMAND_GUARD,
        )?;
        json_of(&what, &out)
    }

    /// Adds agent `name` (backed up under `paths`), enrols it from its own state directory
    /// and starts `agent run`; returns the running agent.
    fn agent(&mut self, name: &str, paths: &Path, dir: &Path) -> Res<Proc> {
        let j = self.json(&["agent", "add", name, "--paths", &paths.display().to_string()])?;
        let (Some(token), Some(fp)) = (j["token"].as_str(), j["fingerprint"].as_str()) else {
            return Err(format!("agent add {name}: no token or fingerprint in {j}"));
        };
        let state = dir.join(format!("agent-{name}"));
        let server = format!("127.0.0.1:{}", self.port);
        let enroll = ["agent", "enroll", "--server", &server, "--token", token, "--fingerprint", fp];
        short(
            &format!("coffer agent enroll ({name})"),
            coffer_cmd(&self.coffer, &state, &enroll),
            &self.logs,
            &format!("enroll-{name}"),
            CONNECT_GUARD,
        )?;
        Proc::spawn(
            &format!("coffer agent run ({name})"),
            coffer_cmd(&self.coffer, &state, &["agent", "run"]),
            &self.logs,
            &format!("agent-{name}"),
        )
    }

    /// Waits until `agent list` shows every one of `agents` connected.
    fn wait_connected(&mut self, agents: &mut [(String, Proc)]) -> Res<()> {
        let deadline = Instant::now() + CONNECT_GUARD;
        loop {
            let list = self.json(&["agent", "list"])?;
            let rows = list.as_array().cloned().unwrap_or_default();
            let up = |n: &str| rows.iter().any(|r| r["agent"] == n && r["connected"].is_object());
            if agents.iter().all(|(n, _)| up(n)) {
                return Ok(());
            }
            for (n, p) in agents.iter_mut() {
                if let Some(s) = p.exited()? {
                    return Err(format!("agent {n} ended ({s}) before it connected\n{}", p.tail()));
                }
            }
            if Instant::now() > deadline {
                let down: Vec<&str> =
                    agents.iter().filter(|(n, _)| !up(n)).map(|(n, _)| n.as_str()).collect();
                return Err(format!(
                    "agents {down:?} not listed connected within {CONNECT_GUARD:?}: {list}\n{}",
                    self.service.tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Each drive's repositions in library `vlib`, as `coffer status --json` shows them.
    fn repositions(&mut self) -> Res<Vec<u64>> {
        let s = self.json(&["status"])?;
        Ok(s["drives"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["library"] == "vlib")
            .map(|d| d["repositions"].as_u64().unwrap_or(0))
            .collect())
    }

    /// SIGTERM, and its end.
    fn stop(mut self) -> Res<()> {
        if self.service.stop(SERVICE_GUARD) {
            Ok(())
        } else {
            Err(format!("the service did not end cleanly after SIGTERM\n{}", self.service.tail()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// One configuration's measurements.
#[derive(Debug, Clone, Default)]
struct Outcome {
    secs: f64,
    bytes_in: u64,
    bytes_stored: u64,
    /// The box's (or the local backup's) peak RSS, KiB.
    rss_kib: u64,
    /// The box's VmHWM just before the backups (after start and enrolments), KiB.
    rss_before_kib: u64,
    /// The box's (or the local backup's) CPU seconds.
    cpu: f64,
    /// The agents' CPU seconds over the backups, all together.
    agents_cpu: f64,
    /// The largest agent peak RSS, KiB.
    agent_rss_kib: u64,
    /// Each drive's repositions during the backups (tape only).
    repositions: Option<Vec<u64>>,
    /// Each backup's job and session.
    sessions: Vec<(u64, u64)>,
    /// The backups' own durations, added up: each job's (the `… s` ending its message) or the
    /// local backup's (`seconds`); the wall clock less this is queueing and polling.
    job_secs: f64,
    /// Parts written (the sessions' `parts`), all sessions together.
    parts: u64,
    /// Restoring agent a0's tree alone from a multiplexed session: bytes read, bytes in the
    /// multiplexed parts.
    demux: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Config {
    coffer: PathBuf,
    work: PathBuf,
    quarters: Vec<Quarter>,
    drop_caches: bool,
    drive_rate: String,
    guard: Duration,
}

impl Config {
    /// The library of the tape runs: one drive at the drive rate, cartridges as files in `dir`,
    /// one cartridge large enough for every quarter.
    fn library(&self, dir: &Path) -> String {
        let total: u64 = self.quarters.iter().map(|q| q.bytes).sum();
        let gib = (total >> 30) + 2;
        format!(
            "[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 4\ncartridges = 2\n\
             capacity = \"{gib}G\"\ndir = \"{}\"\ndrive_rate = \"{}\"\ndrive_buffer = \"{DRIVE_BUFFER}\"\n\
             drive_reposition_ms = {DRIVE_REPOSITION_MS}\n",
            dir.display(),
            self.drive_rate
        )
    }
}

/// A fresh directory.
fn fresh(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// `coffer backup agent0 … agentK-1 --to disk:DIR`, no service.
fn local_run(cfg: &Config, k: usize) -> Res<Outcome> {
    let w = cfg.work.join("local");
    fresh(&w)?;
    let logs = w.join("logs");
    fresh(&logs)?;
    let target = format!("disk:{}", w.join("target").display());
    let mut cmd = coffer_cmd(&cfg.coffer, &w.join("state"), &["--json", "backup"]);
    cmd.args(cfg.quarters[..k].iter().map(|q| &q.dir)).args(["--to", &target]);
    dies_with_bench(&mut cmd);
    let cpu0 = children_cpu_secs();
    let r = timed(cfg.drop_caches, &mut cmd, &logs, &format!("local-{k}"))?;
    let cpu = children_cpu_secs() - cpu0;
    if !r.status.success() {
        return Err(format!("local backup of {k} quarters: {}\n{}\n{}", r.status, r.stdout, r.stderr));
    }
    let j = json_of("local backup", &r.stdout)?;
    if j["status"] != "complete" {
        return Err(format!("local backup of {k} quarters: not complete: {j}"));
    }
    let o = Outcome {
        secs: r.secs,
        job_secs: j["seconds"].as_f64().unwrap_or(0.0),
        parts: local_parts(cfg, &w, &logs)?,
        bytes_in: j["bytes_in"].as_u64().unwrap_or(0),
        bytes_stored: j["bytes_stored"].as_u64().unwrap_or(0),
        rss_kib: r.rss_kib,
        cpu,
        ..Outcome::default()
    };
    fresh(&w)?;
    std::fs::remove_dir(&w).map_err(|e| format!("{}: {e}", w.display()))?;
    Ok(o)
}

/// The parts of the local backup's session (`coffer ls --json`, no service).
fn local_parts(cfg: &Config, w: &Path, logs: &Path) -> Res<u64> {
    let cmd = coffer_cmd(&cfg.coffer, &w.join("state"), &["--json", "ls"]);
    let rows = json_of("coffer ls", &short("coffer ls (local)", cmd, logs, "ls", COMMAND_GUARD)?)?;
    Ok(rows.as_array().into_iter().flatten().map(|r| r["parts"].as_array().map_or(0, Vec::len) as u64).sum())
}

/// A fresh box, K agents, K backups at once through it to `dest`.
fn agents_run(cfg: &Config, k: usize, dest: Dest) -> Res<Outcome> {
    let w = cfg.work.join("box");
    fresh(&w)?;
    let library = match dest {
        Dest::Disk => None,
        Dest::Tape => Some(cfg.library(&w.join("library"))),
        // The board's lines follow `[agents] listen`: the spool's go first, still in [agents].
        Dest::Spooled => Some(format!(
            "spool = \"{}\"\nspool_size = \"{SPOOL_SIZE}\"\n{}",
            w.join("spool").display(),
            cfg.library(&w.join("library"))
        )),
    };
    let mut the_box = TheBox::start(&cfg.coffer, &w, library.as_deref())?;
    let mut agents = Vec::new();
    for (i, q) in cfg.quarters[..k].iter().enumerate() {
        let name = format!("a{i}");
        let p = the_box.agent(&name, &q.dir, &w)?;
        agents.push((name, p));
    }
    the_box.wait_connected(&mut agents)?;
    let reps0 = if dest == Dest::Disk { None } else { Some(the_box.repositions()?) };
    let target = match dest {
        Dest::Disk => format!("disk:{}", w.join("target").display()),
        Dest::Tape | Dest::Spooled => "library:vlib".to_string(),
    };
    let rss_before_kib = vm_kib(the_box.pid(), "VmHWM");
    drop_caches(cfg.drop_caches);
    let cpu0 = cpu_secs(the_box.pid());
    let agents_cpu0: f64 = agents.iter().map(|(_, p)| cpu_secs(p.pid())).sum();

    let start = Instant::now();
    // One backup of the K agents' trees: multiplexed onto the one target, all at once.
    let sources: Vec<String> = cfg.quarters[..k]
        .iter()
        .enumerate()
        .map(|(i, q)| format!("agent:a{i}:{}", q.dir.display()))
        .collect();
    let mut args = vec!["--json", "backup"];
    args.extend(sources.iter().map(String::as_str));
    args.extend(["--to", target.as_str()]);
    let cmd = coffer_cmd(&cfg.coffer, &the_box.state, &args);
    let mut backups =
        [Proc::spawn(&format!("coffer backup {}", sources.join(" ")), cmd, &the_box.logs, "backup")?];
    let deadline = start + cfg.guard;
    let mut ended: Vec<Option<ExitStatus>> = vec![None; backups.len()];
    while ended.iter().any(Option::is_none) {
        for (b, e) in backups.iter_mut().zip(ended.iter_mut()) {
            if e.is_none() {
                *e = b.exited()?;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the backups did not all end within {:?}\n{}",
                cfg.guard,
                the_box.service.tail()
            ));
        }
        for (n, p) in agents.iter_mut() {
            if let Some(s) = p.exited()? {
                return Err(format!("agent {n} ended ({s}) during the backups\n{}", p.tail()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(the_box.pid()) - cpu0;
    let agents_cpu = agents.iter().map(|(_, p)| cpu_secs(p.pid())).sum::<f64>() - agents_cpu0;
    let agent_rss_kib = agents.iter().map(|(_, p)| vm_kib(p.pid(), "VmHWM")).max().unwrap_or(0);
    let rss_kib = vm_kib(the_box.pid(), "VmHWM");

    let mut sessions = Vec::new();
    let mut job_secs = 0.0;
    for (b, status) in backups.iter().zip(&ended) {
        let j = json_of(&b.what, &b.stdout())?;
        if !status.is_some_and(|s| s.success()) || j["state"] != "done" {
            return Err(format!("{}: {:?}: {j}\n{}\n{}", b.what, status, b.tail(), the_box.service.tail()));
        }
        let (Some(job), Some(session)) = (j["job"].as_u64(), j["session"].as_u64()) else {
            return Err(format!("{}: no job or session in {j}", b.what));
        };
        sessions.push((job, session));
        job_secs += job_duration(j["message"].as_str().unwrap_or(""))
            .ok_or_else(|| format!("{}: no duration ending the message of {j}", b.what))?;
    }
    let rows = the_box.json(&["ls"])?;
    let (mut bytes_in, mut bytes_stored, mut parts) = (0, 0, 0);
    for (_, s) in &sessions {
        let row = rows
            .as_array()
            .and_then(|a| a.iter().find(|r| r["session"] == *s))
            .ok_or_else(|| format!("session {s} is not listed: {rows}"))?;
        if row["status"] != "complete" {
            return Err(format!("session {s} is not complete: {row}"));
        }
        bytes_in += row["bytes_in"].as_u64().unwrap_or(0);
        bytes_stored += row["bytes_stored"].as_u64().unwrap_or(0);
        parts += row["parts"].as_array().map_or(0, |a| a.len() as u64);
    }
    // The status is refreshed every second: the last counts after the backups, read a few
    // times (they only grow), less those before.
    let repositions = match reps0 {
        Some(before) => {
            let mut after = Vec::new();
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(700));
                let now = the_box.repositions()?;
                after = if after.is_empty() {
                    now
                } else {
                    after.iter().zip(&now).map(|(a, b): (&u64, &u64)| *a.max(b)).collect()
                };
            }
            Some(after.iter().enumerate().map(|(i, a)| a - before.get(i).copied().unwrap_or(0)).collect())
        }
        None => None,
    };
    // Demultiplexing: agent a0's tree alone, restored on the box from the K agents' session.
    let demux = if k > 1 {
        let (_, session) = sessions[0];
        let last =
            cfg.quarters[0].dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dest = w.join("demux-restore");
        let dest_s = dest.display().to_string();
        let j = the_box.json(&["restore", &session.to_string(), "--to", &dest_s, &format!("a0:{last}")])?;
        if j["ok"] != true {
            return Err(format!("the restore of a0's tree failed: {j}"));
        }
        let (Some(read), Some(parts)) =
            (j["demux"]["read_bytes"].as_u64(), j["demux"]["part_bytes"].as_u64())
        else {
            return Err(format!("the restore of a0's tree did not demultiplex: {j}"));
        };
        Some((read, parts))
    } else {
        None
    };
    for (_, p) in agents.iter_mut() {
        p.stop(Duration::from_secs(10));
    }
    the_box.stop()?;
    fresh(&w)?;
    std::fs::remove_dir(&w).map_err(|e| format!("{}: {e}", w.display()))?;
    Ok(Outcome {
        secs,
        bytes_in,
        bytes_stored,
        rss_kib,
        rss_before_kib,
        cpu,
        agents_cpu,
        agent_rss_kib,
        repositions,
        sessions,
        job_secs,
        parts,
        demux,
    })
}

/// The duration ending a job's message: `session S: … bytes stored, 12.3 s`.
fn job_duration(message: &str) -> Option<f64> {
    message.trim_end().strip_suffix(" s")?.rsplit(", ").next()?.parse().ok()
}

/// The box's RSS with `n` agents connected and idle.
#[derive(Debug)]
struct Idle {
    n: usize,
    rss_ready_kib: u64,
    hwm_ready_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    settle: Duration,
}

fn idle_run(cfg: &Config, n: usize) -> Res<Idle> {
    let w = cfg.work.join("idle");
    fresh(&w)?;
    let mut the_box = TheBox::start(&cfg.coffer, &w, None)?;
    std::thread::sleep(Duration::from_secs(1));
    let (rss_ready_kib, hwm_ready_kib) = (vm_kib(the_box.pid(), "VmRSS"), vm_kib(the_box.pid(), "VmHWM"));
    let mut agents = Vec::new();
    for i in 0..n {
        let name = format!("idle{i}");
        let q = &cfg.quarters[i % cfg.quarters.len()];
        let p = the_box.agent(&name, &q.dir, &w)?;
        agents.push((name, p));
    }
    the_box.wait_connected(&mut agents)?;
    let settle = Duration::from_secs(5);
    std::thread::sleep(settle);
    the_box.wait_connected(&mut agents)?;
    let (rss_kib, hwm_kib) = (vm_kib(the_box.pid(), "VmRSS"), vm_kib(the_box.pid(), "VmHWM"));
    for (_, p) in agents.iter_mut() {
        p.stop(Duration::from_secs(10));
    }
    the_box.stop()?;
    fresh(&w)?;
    std::fs::remove_dir(&w).map_err(|e| format!("{}: {e}", w.display()))?;
    Ok(Idle { n, rss_ready_kib, hwm_ready_kib, rss_kib, hwm_kib, settle })
}

// ---------------------------------------------------------------------------------------------
// Report

/// Rows aligned: the first column to the left, the others to the right.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &[String]| {
        for (i, c) in cells.iter().enumerate() {
            let pad = " ".repeat(width[i] - c.chars().count());
            if i == 0 {
                let _ = write!(s, "{c}{pad}");
            } else {
                let _ = write!(s, "  {pad}{c}");
            }
        }
        s.push('\n');
    };
    line(&mut s, &header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    line(&mut s, &width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in rows {
        line(&mut s, row);
    }
    s
}

fn mib(kib: u64) -> String {
    if kib == 0 { "-".into() } else { format!("{:.0}", kib as f64 / 1024.0) }
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 { bytes as f64 / secs / 1e6 } else { 0.0 }
}

/// Keeps the better of two outcomes of one configuration: the shorter time; peaks are the
/// largest of both.
fn better(a: Option<Outcome>, b: Outcome) -> Outcome {
    match a {
        None => b,
        Some(a) => {
            let (rss, before, agent) = (
                a.rss_kib.max(b.rss_kib),
                a.rss_before_kib.max(b.rss_before_kib),
                a.agent_rss_kib.max(b.agent_rss_kib),
            );
            let mut best = if b.secs < a.secs { b } else { a };
            best.rss_kib = rss;
            best.rss_before_kib = before;
            best.agent_rss_kib = agent;
            best
        }
    }
}

fn main() -> ExitCode {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        for &pid in children().iter() {
            // SAFETY: kill(2) has no memory-safety preconditions; these are our unreaped
            // children, so the pids name no other process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        default(info);
    }));
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agents bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Res<()> {
    let corpus_root = PathBuf::from(env_or("COFFER_CORPUS", "/var/tmp/corpus"));
    let no_build = std::env::var("COFFER_BENCH_NO_BUILD").is_ok_and(|v| v == "1");
    let dir = PathBuf::from(env_or("COFFER_BENCH_DIR", "/var/tmp/coffer-bench-agents"));
    let counts: Vec<usize> = env_or("COFFER_BENCH_AGENTS", "1,2,4")
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .ok()
                .filter(|k| (1..=QUARTERS).contains(k))
                .ok_or_else(|| format!("COFFER_BENCH_AGENTS: '{n}' is not a number from 1 to {QUARTERS}"))
        })
        .collect::<Res<_>>()?;
    let idle: usize = env_or("COFFER_BENCH_IDLE_AGENTS", "8")
        .parse()
        .map_err(|_| "COFFER_BENCH_IDLE_AGENTS: not a number".to_string())?;
    let runs: usize = env_or("COFFER_BENCH_RUNS", "1")
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or("COFFER_BENCH_RUNS must be a positive number")?;
    let guard: u64 = env_or("COFFER_BENCH_GUARD", "1800")
        .parse()
        .map_err(|_| "COFFER_BENCH_GUARD: not a number of seconds")?;
    let drive_rate = env_or("COFFER_BENCH_DRIVE_RATE", "300M");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    let c1_note = ensure_only(&corpus_root, no_build, "c1", &dir.join("corpus-build"))?;
    let c2_note = ensure_only(&corpus_root, no_build, "c2", &dir.join("corpus-build"))?;
    let (qs, q_note) = quarters(&dir, &corpus_root.join("c1"), &corpus_root.join("c2"))?;

    // A private copy of the binary, so that a rebuild of target/release/coffer meanwhile does
    // not change what is measured half-way.
    let built = locate_coffer()?;
    let work = dir.join("work");
    fresh(&work)?;
    let coffer = work.join("coffer");
    std::fs::copy(&built, &coffer).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    let drop_ok = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let cfg = Config {
        coffer,
        work: work.clone(),
        quarters: qs,
        drop_caches: drop_ok,
        drive_rate,
        guard: Duration::from_secs(guard),
    };

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(String::new(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let manifest = env!("CARGO_MANIFEST_DIR");
    let head = capture("git", &["-C", manifest, "rev-parse", "--short", "HEAD"]);
    let dirty = capture("git", &["-C", manifest, "status", "--porcelain", "--", "src"]).lines().count();
    let built_at = mtime(&built)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| capture("date", &["-u", "-d", &format!("@{}", d.as_secs()), "+%Y-%m-%d %H:%M:%S UTC"]))
        .unwrap_or_default();
    let fs = words(&capture("findmnt", &["-no", "FSTYPE,SOURCE", "-T", &dir.display().to_string()]));
    let loadavg = || {
        let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    let load_start = loadavg();

    let mut env = String::new();
    let _ = writeln!(
        env,
        "backup agents benchmark: local backup (the peer) vs K agents through the box, same run"
    );
    let _ = writeln!(env, "  nproc:      {nproc} ({cpu}), memory {mem}; kernel {kernel}");
    let _ = writeln!(
        env,
        "  coffer:     {} (copy of {}, built {built_at}; HEAD {head}, {dirty} changed files under src/)",
        cfg.coffer.display(),
        built.display()
    );
    let _ = writeln!(env, "  corpora:    c1 {c1_note}");
    let _ = writeln!(env, "              c2 {c2_note}");
    let _ = writeln!(env, "  quarters:   {q_note}, {fs}:");
    for q in &cfg.quarters {
        let _ = writeln!(
            env,
            "              {}: {} files, {:.1} MB (c2/bigK.bin + a quarter of c1 by bytes)",
            q.dir.display(),
            q.files,
            q.bytes as f64 / 1e6
        );
    }
    let _ = writeln!(
        env,
        "  box:        a fresh `coffer serve` (fresh state) per configuration, [agents] listen 127.0.0.1:PORT \
         (loopback TCP, mutual TLS), [jobs] scan_seconds = {SCAN_SECONDS}; agents enrolled and run as processes of \
         their own on this machine"
    );
    let _ = writeln!(
        env,
        "  tape:       virtual library, 1 drive, drive_rate {} B/s, drive_buffer {DRIVE_BUFFER}, drive_reposition_ms \
         {DRIVE_REPOSITION_MS}; cartridges are files in the work directory ({fs}); tape+spool: the same with \
         [agents] spool in the work directory, spool_size {SPOOL_SIZE}",
        cfg.drive_rate
    );
    let _ = writeln!(
        env,
        "  caches:     {}",
        if cfg.drop_caches {
            "`sync; echo 3 > /proc/sys/vm/drop_caches` before every timed run (after the box and its agents are up)"
        } else {
            "WARM: cannot write /proc/sys/vm/drop_caches (not root?): runs with warm caches"
        }
    );
    let _ =
        writeln!(env, "  runs:       {runs} round(s), best time kept; agents {counts:?}; idle agents {idle}");
    let _ =
        writeln!(env, "  load avg:   {load_start} (1/5/15 min, at start; other work may share the machine)");
    print!("{env}");
    println!();

    let mut local: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut disk: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut tape: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut spooled: BTreeMap<usize, Outcome> = BTreeMap::new();
    for round in 1..=runs {
        for &k in &counts {
            let o = local_run(&cfg, k)?;
            println!(
                "  round {round}, {k} quarter(s): local          {:>7.2} s wall  {:>6.1} s backup  {:>6.0} MB/s",
                o.secs,
                o.job_secs,
                mbps(o.bytes_in, o.secs)
            );
            let prev = local.remove(&k);
            local.insert(k, better(prev, o));
            for (dest, map, what) in [
                (Dest::Disk, &mut disk, "agents -> disk"),
                (Dest::Tape, &mut tape, "agents -> tape"),
                (Dest::Spooled, &mut spooled, "agents -> tape+spool"),
            ] {
                let o = agents_run(&cfg, k, dest)?;
                println!(
                    "  round {round}, {k} agent(s):   {what} {:>7.2} s wall  {:>6.1} s backup  {:>6.0} MB/s  sessions {:?}{}",
                    o.secs,
                    o.job_secs,
                    mbps(o.bytes_in, o.secs),
                    o.sessions.iter().map(|s| s.1).collect::<Vec<_>>(),
                    o.repositions.as_ref().map_or(String::new(), |r| format!("  repositions {r:?}"))
                );
                let prev = map.remove(&k);
                map.insert(k, better(prev, o));
            }
        }
    }
    let idle_result = if idle > 0 { Some(idle_run(&cfg, idle)?) } else { None };
    let load_end = loadavg();
    let _ = std::fs::remove_dir_all(&work);

    println!();
    println!("{}", "=".repeat(100));
    print!("{env}");
    println!("  load avg:   {load_end} (at end)");
    println!(
        "  RSS floor:  {:.1} MiB: the bench's own peak RSS, charged by Linux to each local backup it spawns",
        RSS_FLOOR_KIB.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!();
    let root = dir.display();
    let c = cfg.coffer.display();
    println!("Commands (K = 1, 2, 4; quarter k is {root}/agentk):");
    println!(
        "  local:          {c} --state S --json backup {root}/agent0 … {root}/agentK-1 --to disk:DIR   (no service)"
    );
    println!("  box:            {c} --state BOX --board BOARD serve   (NOTIFY_SOCKET: waited for READY=1)");
    println!("  each agent k:   {c} --state BOX --json agent add ak --paths {root}/agentk");
    println!(
        "                  {c} --state Ak agent enroll --server 127.0.0.1:PORT --token T --fingerprint F"
    );
    println!("                  {c} --state Ak agent run");
    println!(
        "  backup:         {c} --state BOX --json backup agent:a0:{root}/agent0 … agent:aK-1:{root}/agentK-1 --to disk:DIR | library:vlib   (multiplexed)"
    );
    println!("  demultiplexing: {c} --state BOX --json restore SESSION --to DIR a0:agent0   (K > 1)");
    println!(
        "  bytes:          {c} --state BOX --json ls (bytes_in, bytes_stored of the K sessions); repositions: status --json drives[].repositions"
    );
    println!();
    println!(
        "NOTE: the K agents' trees are one job and one session, multiplexed onto the target (up to 4 agents at \
         once, the default); the job starts at the next queue scan, within {SCAN_SECONDS} s, and the client polls \
         every 0.5 s."
    );
    println!(
        "wall s: from starting the K backups to the last one's end (local: spawn to exit), so it holds the queue's \
         waits; backup s: the backups' own durations added up (each job's `… s` ending its message; local: its \
         `seconds`), 0.1 s resolution. MB in = bytes_in of the sessions; local/this = the local MB/s over this row's \
         for the same quarters."
    );
    println!(
        "peak RSS: VmHWM of `coffer serve`, fresh per configuration (its start, K enrolments, the backups); 'before' \
         is VmHWM right before the backups. Local rows: the backup process's peak RSS (wait4) and CPU (rusage)."
    );
    println!(
        "CPU: utime+stime over the backups (/proc/PID/stat deltas) of the box, and of the K agents together \
         (agents and box share this machine's {nproc} cores). repositions: drives[].repositions of `coffer status \
         --json`, after less before; parts: the sessions' parts (`ls --json`)."
    );
    println!();
    let mut speed = Vec::new();
    let mut cost = Vec::new();
    let per_gb = |cpu: f64, bytes: u64| {
        if bytes > 0 { format!("{:.1}", cpu / (bytes as f64 / 1e9)) } else { "-".into() }
    };
    for &k in &counts {
        let Some(l) = local.get(&k) else { continue };
        let (l_rate, l_job_rate) = (mbps(l.bytes_in, l.secs), mbps(l.bytes_in, l.job_secs));
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        let mut runs: Vec<(String, &Outcome)> = vec![(format!("local, {k} quarter(s)"), l)];
        for (what, map) in [("disk", &disk), ("tape", &tape), ("tape+spool", &spooled)] {
            if let Some(o) = map.get(&k) {
                runs.push((format!("{k} agent(s) -> {what}"), o));
            }
        }
        for (name, o) in runs {
            let (rate, job_rate) = (mbps(o.bytes_in, o.secs), mbps(o.bytes_in, o.job_secs));
            speed.push(vec![
                name.clone(),
                format!("{:.0}", o.bytes_in as f64 / 1e6),
                format!("{:.0}", o.bytes_stored as f64 / 1e6),
                format!("{:.2}", o.secs),
                format!("{rate:.0}"),
                ratio(l_rate, rate),
                format!("{:.1}", o.job_secs),
                format!("{job_rate:.0}"),
                ratio(l_job_rate, job_rate),
                format!("{:.0}", mbps(o.bytes_stored, o.secs)),
                o.parts.to_string(),
                o.repositions
                    .as_ref()
                    .map_or("-".into(), |r| r.iter().map(u64::to_string).collect::<Vec<_>>().join("/")),
            ]);
            let local_row = o.sessions.is_empty();
            cost.push(vec![
                name,
                mib(o.rss_kib),
                if local_row { "-".into() } else { mib(o.rss_before_kib) },
                format!("{:.1}", o.cpu),
                if local_row { "-".into() } else { format!("{:.1}", o.agents_cpu) },
                if local_row { "-".into() } else { mib(o.agent_rss_kib) },
                per_gb(o.cpu + o.agents_cpu, o.bytes_in),
            ]);
        }
    }
    println!("Throughput (MB = 10^6 bytes; 'local/…' > 1: local is faster):");
    print!(
        "{}",
        table(
            &[
                "configuration",
                "MB in",
                "MB stored",
                "wall s",
                "MB/s in",
                "local/this",
                "backup s",
                "MB/s in (backup s)",
                "local/this (backup s)",
                "MB/s stored",
                "parts",
                "repositions",
            ],
            &speed
        )
    );
    println!();
    println!("Resources (the box = `coffer serve`; for local rows, the backup process):");
    print!(
        "{}",
        table(
            &[
                "configuration",
                "peak RSS MiB",
                "box RSS before MiB",
                "CPU s",
                "agents CPU s",
                "agent peak RSS MiB",
                "CPU s per GB in (box+agents)",
            ],
            &cost
        )
    );
    let calm: Vec<&Outcome> =
        tape.values().filter(|o| o.repositions.as_ref().is_some_and(|r| r.iter().all(|&n| n == 0))).collect();
    if let Some(largest) = calm.iter().map(|o| o.bytes_stored / o.parts.max(1)).max() {
        let why = if largest < DRIVE_BUFFER_BYTES {
            format!(
                "the parts here average at most {:.0} MB stored, less than the buffer: a part that fits the \
                 buffer reaches the tape at its filemark without the tape ever streaming",
                largest as f64 / 1e6
            )
        } else {
            "the host kept the buffer from running dry between filemarks".to_string()
        };
        println!();
        println!(
            "No repositions: the virtual drive counts one only when its buffer runs dry while the tape streams. \
             The tape starts streaming once the buffer ({DRIVE_BUFFER}) is full, and each part ends with a \
             synchronous filemark that waits for the buffer to reach the tape and stops the drive (no backhitch \
             is modelled there); {why}."
        );
    }
    for (what, map) in [("disk", &disk), ("tape", &tape)] {
        for (k, o) in map.iter() {
            if let Some((read, parts)) = o.demux {
                println!(
                    "Demultiplexing, {k} agents -> {what}: restoring a0's tree alone read {:.0} of the {:.0} MB in the \
                     multiplexed parts ({:.1}%)",
                    read as f64 / 1e6,
                    parts as f64 / 1e6,
                    100.0 * read as f64 / parts.max(1) as f64
                );
            }
        }
    }
    if let Some(i) = idle_result {
        println!();
        println!(
            "Box with {} agents connected, idle ({} s after the last connected): VmRSS {} MiB, VmHWM {} MiB \
             (VmHWM includes their enrolment); the same box ready with no agent: VmRSS {} MiB, VmHWM {} MiB.",
            i.n,
            i.settle.as_secs(),
            mib(i.rss_kib),
            mib(i.hwm_kib),
            mib(i.rss_ready_kib),
            mib(i.hwm_ready_kib)
        );
    }
    Ok(())
}
