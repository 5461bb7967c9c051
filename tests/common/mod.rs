//! Shared helpers of the command-line integration tests: running the real `coffer` binary,
//! reading its JSON, building trees of real files, and comparing trees entry by entry.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod agents;
pub mod netns;
pub mod terminal;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub const COFFER: &str = env!("CARGO_BIN_EXE_coffer");

/// A run that takes longer than this is a hang: it is killed and the test fails. A guard
/// against hanging the suite, not an assertion on speed.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// What one run of a command did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub what: String,
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The JSON document on standard output (`--json` prints one line).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: stdout is not one JSON document ({e}):\n{self}", self.what))
    }

    /// Asserts the exit status, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "{}: expected exit status {code}:\n{self}", self.what);
        self
    }

    /// Standard output and standard error together, for searching messages.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A `coffer` command with an environment that cannot leak into the test (no `$COFFER_STATE`,
/// default logging).
pub fn coffer_command() -> Command {
    let mut c = Command::new(COFFER);
    c.env_remove("COFFER_STATE").env_remove("RUST_LOG").env_remove("XDG_STATE_HOME");
    c
}

/// Runs a command to its end and collects its output.
pub fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(HANG_GUARD) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) with a pid this test started and has not reaped (its waiting
            // thread is still blocked in wait), so the pid cannot have been reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{what} did not finish within {HANG_GUARD:?}: killed as hung");
        }
    }
    .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    Run {
        what,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One test's world: a temporary directory holding its own state directory and disk target.
#[derive(Debug)]
pub struct Env {
    /// Holds everything; removed when the test ends.
    pub dir: tempfile::TempDir,
    /// `--state` directory.
    pub state: PathBuf,
    /// Directory of the `disk:` target.
    pub target: PathBuf,
}

impl Env {
    /// A fresh world (state and target directories are not created: coffer creates them).
    pub fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("coffer-it-").tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let target = dir.path().join("target");
        Env { dir, state, target }
    }

    /// A path inside the world.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `disk:<target>`.
    pub fn to(&self) -> String {
        format!("disk:{}", self.target.display())
    }

    /// `coffer --state <state> ARGS...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = coffer_command();
        c.arg("--state").arg(&self.state).args(args);
        c
    }

    /// Runs `coffer --state <state> ARGS...`.
    pub fn coffer(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Runs `coffer --state <state> --json ARGS...`.
    pub fn coffer_json(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.coffer(&all)
    }

    /// Backs `src` up to this world's target (with `extra` arguments) and expects success;
    /// returns the summary.
    #[track_caller]
    pub fn backup_ok(&self, src: &Path, extra: &[&str]) -> Value {
        let src = src.to_str().expect("utf-8 path");
        let to = self.to();
        let mut args = vec!["backup", src, "--to", to.as_str()];
        args.extend_from_slice(extra);
        let r = self.coffer_json(&args);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(j["status"], "complete", "{r}");
        assert!(j["error"].is_null(), "{r}");
        j
    }

    /// Restores `session` (and only `paths`, if any) into `dest`; returns the run.
    pub fn restore(&self, session: &str, dest: &Path, paths: &[&str]) -> Run {
        let dest = dest.to_str().expect("utf-8 path");
        let mut args = vec!["restore", session, "--to", dest];
        args.extend_from_slice(paths);
        self.coffer_json(&args)
    }

    /// The objects of a session, as `ls SESSION --json` lists them.
    #[track_caller]
    pub fn ls_session(&self, session: &str) -> Vec<Value> {
        let r = self.coffer_json(&["ls", session]);
        r.expect_code(0);
        r.json().as_array().expect("ls SESSION lists objects").clone()
    }

    /// The sessions, as `ls --json` lists them.
    #[track_caller]
    pub fn ls_sessions(&self) -> Vec<Value> {
        let r = self.coffer_json(&["ls"]);
        r.expect_code(0);
        r.json().as_array().expect("ls lists sessions").clone()
    }

    /// The volume files of the target.
    pub fn volume_files(&self) -> Vec<PathBuf> {
        volume_files(&self.target)
    }

    /// The one volume file of the target.
    #[track_caller]
    pub fn only_volume(&self) -> PathBuf {
        let v = self.volume_files();
        assert_eq!(v.len(), 1, "expected one volume file: {v:?}");
        v.into_iter().next().expect("one")
    }
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

/// The `*.cvol` files of a target directory, sorted.
pub fn volume_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cvol"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The barcode of a volume file (its name without `.cvol`).
pub fn barcode(volume: &Path) -> String {
    volume.file_stem().and_then(|s| s.to_str()).expect("volume file name").to_owned()
}

/// Flips the bits of one byte of a file in place; returns its old value.
pub fn flip_byte(path: &Path, offset: u64) -> u8 {
    let f = OpenOptions::new().read(true).write(true).open(path).expect("open to damage");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    f.write_all_at(&[!b[0]], offset).expect("write byte");
    f.sync_all().expect("sync");
    b[0]
}

/// Every `at byte N` in a message.
pub fn byte_offsets(msg: &str) -> Vec<u64> {
    msg.match_indices("at byte ")
        .filter_map(|(i, m)| {
            let rest = &msg[i + m.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Strings of a JSON array (e.g. `failures`), joined for searching.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A TCP port on 127.0.0.1 that was free when asked (the test binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP answer as [`http_get`] reads it.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub code: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (the server sends a Content-Length body and closes).
    pub body: String,
}

impl HttpAnswer {
    /// The value of the first header field named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET on 127.0.0.1:`port` with an `Authorization` header if given; `None` when
/// nothing answers (yet).
pub fn http_get(port: u16, path: &str, authorization: Option<&str>) -> Option<HttpAnswer> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpAnswer { code, headers, body: body.to_owned() })
}

// ---------------------------------------------------------------------------------------------
// Data and trees

/// `len` pseudo-random bytes (incompressible), the same for the same seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(b"coffer integration test data");
    h.update(&seed.to_le_bytes());
    let mut out = vec![0u8; len];
    h.finalize_xof().fill(&mut out);
    out
}

/// `len` bytes of compressible text, the same for the same seed.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "backup", "restore", "verify", "tape", "volume", "journal", "catalog", "session", "medium", "record",
        "segment", "checksum", "the", "of", "and", "a",
    ];
    let noise = random_bytes(seed, len / 4 + 16);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        let w = words[(noise[i % noise.len()] & 15) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if i % 11 == 10 { b'\n' } else { b' ' });
        i += 1;
    }
    out.truncate(len);
    out
}

/// Writes a file, creating its parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("create parents");
    }
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).expect("write");
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// Sets the mtime (seconds and nanoseconds) of `path` itself, never following a symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let c = c_path(path);
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: sec, tv_nsec: nsec },
    ];
    // SAFETY: `c` is a NUL-terminated path and `times` two timespecs, both alive for the call.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Creates a FIFO.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = c_path(path);
    // SAFETY: `c` is a NUL-terminated path alive for the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(r, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Creates a character device node; `false` when the system refuses (no CAP_MKNOD).
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> bool {
    let c = c_path(path);
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a NUL-terminated path alive for the call; the rest are integers.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) };
    r == 0
}

/// Sets permission bits.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `setpriv` that can drop to nobody, or why not.
pub fn setpriv_works() -> Result<(), String> {
    if !is_root() {
        return Err("not running as root (setpriv to another user)".into());
    }
    match Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/true"])
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("setpriv exited with {s}")),
        Err(e) => Err(format!("cannot run setpriv: {e}")),
    }
}

/// `coffer --state <state> ARGS...` as the user nobody, in the supplementary group `group`
/// (none: no group at all).
pub fn as_nobody(env: &Env, group: Option<u32>, args: &[&str]) -> Run {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    match group {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.arg(COFFER).arg("--state").arg(&env.state).args(args);
    cmd.env_remove("COFFER_STATE").env_remove("RUST_LOG").env("HOME", env.dir.path());
    run(cmd)
}

/// The id of the group `name`.
pub fn group_id(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("a group name");
    // SAFETY: getgrnam takes a NUL-terminated string; the entry it returns is read at once,
    // before any other getgr* call.
    let entry = unsafe { libc::getgrnam(c.as_ptr()) };
    assert!(!entry.is_null(), "no group {name} on this machine");
    // SAFETY: non-null: a valid entry until the next getgr* call.
    unsafe { (*entry).gr_gid }
}

/// The one rule for a test that cannot run on this machine (not root, no tmpfs, no loop
/// device, no setpriv): outside CI it prints "skipped: <why>" and the caller returns; under CI
/// (`$CI` set) the machine is meant to run every test, so a skip would hide a test that never
/// ran, and this fails the test instead.
pub fn skip_unless_ci(why: &str) {
    match skip_verdict(std::env::var_os("CI").is_some(), why) {
        Ok(note) => eprintln!("{note}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// What [`skip_unless_ci`] does, as data: the note to print (Ok) or the failure (Err).
pub fn skip_verdict(under_ci: bool, why: &str) -> Result<String, String> {
    if under_ci {
        Err(format!("cannot run here, and under CI every test must run: {why}"))
    } else {
        Ok(format!("skipped: {why}"))
    }
}

/// Builds the tree of every kind under `root` (created); returns the relative path of the
/// sparse file, the large file and the hard-link pairs. Needs root (chown, mknod).
///
/// - regular files: compressible text, random bytes, an empty file, files around the pack
///   limit and the 64K unit, a 1 MiB file spanning many 64K units;
/// - a sparse file (64 MiB, 4 KiB of data at 32 MiB);
/// - two hard-link pairs (a small and a large file);
/// - a relative, an absolute and a dangling symlink; a FIFO; a char device 1:3;
/// - directories with modes 0750, 0700 and 0555 (the last holding a file), a setuid file;
/// - files, a directory and a symlink owned by 1234:5678;
/// - every entry's mtime set with nanoseconds.
pub fn build_full_tree(root: &Path) -> FullTree {
    fs::create_dir_all(root).expect("root");
    let p = |rel: &str| root.join(rel);
    write_file(&p("text.txt"), &text_bytes(1, 40_000));
    write_file(&p("random.bin"), &random_bytes(2, 12_345));
    write_file(&p("empty"), b"");
    write_file(&p("small/one"), b"1");
    write_file(&p("small/pack-limit"), &random_bytes(3, 16 << 10));
    write_file(&p("small/pack-limit+1"), &random_bytes(4, (16 << 10) + 1));
    write_file(&p("small/unit"), &text_bytes(5, 64 << 10));
    write_file(&p("small/unit+1"), &random_bytes(6, (64 << 10) + 1));
    // Larger than the unit: many data records, part text, part random.
    let mut big = text_bytes(7, 600_000);
    big.extend_from_slice(&random_bytes(8, 448_577));
    write_file(&p("sub/dir/big.dat"), &big);
    write_file(&p("sub/dir/file"), b"the file a selective restore asks for\n");
    write_file(&p("sub/other.txt"), &text_bytes(9, 3000));
    write_file(&p("sub/deeper/a/b/c/leaf"), &random_bytes(10, 777));

    // Sparse: 64 MiB, 4 KiB of data at 32 MiB.
    let sparse = p("sparse.img");
    {
        let f = File::create(&sparse).expect("sparse");
        f.set_len(64 << 20).expect("set_len");
        f.write_all_at(&random_bytes(11, 4096), 32 << 20).expect("write at 32M");
    }

    // Hard links: a small pair and a large pair, in different directories.
    write_file(&p("links/small-a"), b"linked small file\n");
    fs::hard_link(p("links/small-a"), p("links/small-b")).expect("hard link");
    write_file(&p("links/large-a"), &random_bytes(12, 200_000));
    fs::create_dir_all(p("links2")).expect("links2");
    fs::hard_link(p("links/large-a"), p("links2/large-b")).expect("hard link");

    // Symlinks.
    std::os::unix::fs::symlink("text.txt", p("rel-link")).expect("symlink");
    std::os::unix::fs::symlink("../sub/dir/file", p("links/rel-up-link")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", p("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", p("dangling")).expect("symlink");

    // Special files.
    mkfifo(&p("fifo"), 0o640);
    let has_chardev = mknod_char(&p("null-dev"), 0o666, 1, 3);

    // Owners, modes.
    write_file(&p("owned/file"), &text_bytes(13, 5000));
    write_file(&p("owned/setuid"), b"#!/bin/sh\n");
    std::os::unix::fs::chown(p("owned/file"), Some(1234), Some(5678)).expect("chown");
    std::os::unix::fs::chown(p("owned/setuid"), Some(1234), Some(5678)).expect("chown");
    chmod(&p("owned/setuid"), 0o4755);
    std::os::unix::fs::lchown(p("dangling"), Some(1234), Some(5678)).expect("lchown");
    std::os::unix::fs::chown(p("owned"), Some(1234), Some(5678)).expect("chown");
    fs::create_dir_all(p("modes/m750/inner")).expect("dirs");
    write_file(&p("modes/m700/secret"), b"secret\n");
    write_file(&p("modes/ro555/kept"), b"in a read-only directory\n");
    chmod(&p("modes/m700/secret"), 0o600);
    chmod(&p("text.txt"), 0o644);
    chmod(&p("random.bin"), 0o640);
    chmod(&p("empty"), 0o400);

    // Mtimes with nanoseconds, children before parents (a directory's mtime moves when it
    // changes, not when its children's times do); then the read-only mode, which must come
    // after everything inside is in place.
    let mut all: Vec<PathBuf> = walk_paths(root);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        let sec = 1_600_000_000 + (i as i64) * 3_601;
        let nsec = 123_456_789 + (i as i64) * 7;
        set_mtime(path, sec, nsec);
    }
    chmod(&p("modes/m750"), 0o750);
    chmod(&p("modes/m700"), 0o700);
    chmod(&p("modes/ro555"), 0o555);
    // chmod does not move mtimes.
    FullTree { has_chardev }
}

/// What [`build_full_tree`] could build.
#[derive(Debug, Clone, Copy)]
pub struct FullTree {
    /// The char device node was created (the system allows mknod).
    pub has_chardev: bool,
}

/// Every path under `root` (not following symlinks), `root` included.
pub fn walk_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            let mut names: Vec<PathBuf> = fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("list {}: {e}", p.display()))
                .map(|e| e.expect("entry").path())
                .collect();
            names.sort();
            out.extend(names);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Snapshots and comparison

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// FIFO.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Socket.
    Socket,
}

impl Kind {
    /// The name `coffer ls --json` gives the kind.
    pub fn ls_name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::CharDevice => "chardevice",
            Kind::BlockDevice => "blockdevice",
            Kind::Socket => "socket",
        }
    }
}

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Kind.
    pub kind: Kind,
    /// Permission bits (0o7777).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mtime seconds.
    pub mtime: i64,
    /// Mtime nanoseconds.
    pub mtime_nsec: i64,
    /// Size (files only; 0 otherwise).
    pub size: u64,
    /// BLAKE3 of a file's content.
    pub content: Option<[u8; 32]>,
    /// A symlink's target.
    pub target: Option<PathBuf>,
    /// Device number of device nodes.
    pub rdev: u64,
}

/// A tree: every entry by relative path ("" is the root), and the hard-link groups.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Entries.
    pub nodes: BTreeMap<PathBuf, Node>,
    /// Regular files sharing an inode, each group sorted.
    pub link_groups: BTreeSet<Vec<PathBuf>>,
    /// Bytes allocated to each regular file.
    pub allocated: BTreeMap<PathBuf, u64>,
}

/// BLAKE3 of a file's content.
pub fn hash_file(path: &Path) -> [u8; 32] {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    *h.finalize().as_bytes()
}

/// Reads a tree.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut nodes = BTreeMap::new();
    let mut allocated = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for path in walk_paths(root) {
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else if ft.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::Socket
        };
        if kind == Kind::File {
            inodes.entry((md.dev(), md.ino())).or_default().push(rel.clone());
            allocated.insert(rel.clone(), md.blocks() * 512);
        }
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            size: if kind == Kind::File { md.size() } else { 0 },
            content: (kind == Kind::File).then(|| hash_file(&path)),
            target: (kind == Kind::Symlink).then(|| fs::read_link(&path).expect("readlink")),
            rdev: if matches!(kind, Kind::CharDevice | Kind::BlockDevice) { md.rdev() } else { 0 },
        };
        nodes.insert(rel, node);
    }
    let link_groups = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    Snapshot { nodes, link_groups, allocated }
}

/// What to leave out of a comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignore {
    /// The root directory's own metadata.
    pub root_meta: bool,
    /// Owners (a restore by an unprivileged user keeps its own).
    pub owners: bool,
    /// Mtimes of directories.
    pub dir_mtimes: bool,
}

/// Asserts two trees are the same entry by entry: kind, mode, owner, mtime (seconds and
/// nanoseconds), size, content, symlink targets, device numbers, and hard-link groups.
#[track_caller]
pub fn assert_same_tree(expected: &Snapshot, actual: &Snapshot, ignore: Ignore) {
    let want: BTreeSet<&PathBuf> = expected.nodes.keys().collect();
    let got: BTreeSet<&PathBuf> = actual.nodes.keys().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "trees differ in entries: missing {missing:?}, extra {extra:?}"
    );
    let mut diffs = Vec::new();
    for (path, e) in &expected.nodes {
        let a = &actual.nodes[path];
        let mut e = e.clone();
        let mut a = a.clone();
        if path.as_os_str().is_empty() && ignore.root_meta {
            continue;
        }
        if ignore.owners {
            (e.uid, e.gid, a.uid, a.gid) = (0, 0, 0, 0);
        }
        if ignore.dir_mtimes && e.kind == Kind::Dir {
            (e.mtime, e.mtime_nsec, a.mtime, a.mtime_nsec) = (0, 0, 0, 0);
        }
        if e != a {
            diffs.push(format!("{}:\n  expected {e:?}\n  actual   {a:?}", path.display()));
        }
    }
    assert!(diffs.is_empty(), "{} entries differ:\n{}", diffs.len(), diffs.join("\n"));
    assert_eq!(expected.link_groups, actual.link_groups, "hard-link groups differ");
}

/// `ls --json` kind names by path (relative paths; "." for the root).
pub fn ls_kinds(objects: &[Value]) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|o| (o["path"].as_str().expect("path").to_owned(), o["kind"].as_str().expect("kind").to_owned()))
        .collect()
}

/// The path `ls` shows for a snapshot entry.
pub fn ls_path(rel: &Path) -> String {
    if rel.as_os_str().is_empty() { ".".to_owned() } else { rel.to_str().expect("utf-8 path").to_owned() }
}

/// A running `coffer serve` and the socket its systemd notifications arrive on.
pub struct Service {
    /// The process.
    pub child: std::process::Child,
    /// Its NOTIFY_SOCKET.
    pub sock: std::os::unix::net::UnixDatagram,
}

impl Drop for Service {
    /// A test that fails leaves no service behind (it would hold its port and directory).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `coffer serve` on `board` and waits for READY=1.
pub fn start_service(env: &Env, board: &Path) -> Service {
    try_start_service(env, board, false).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `coffer serve` on `board` (its output dropped when `quiet`) and waits for READY=1.
pub fn try_start_service(env: &Env, board: &Path, quiet: bool) -> Result<Service, String> {
    let sock_path = env.path("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
    cmd.env("NOTIFY_SOCKET", &sock_path);
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| format!("coffer serve: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no READY=1 from coffer serve: {e}"));
            }
        }
    }
    Ok(Service { child, sock })
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &std::process::Child) {
    // SAFETY: kill has no memory preconditions; the pid is our running child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

/// Where test artifacts go: `test-artifacts/` in the cargo target directory.
pub fn artifacts() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(manifest.join("target"), |t| manifest.join(t));
    let dir = target.join("test-artifacts");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// SplitMix64: a small seeded generator, the same everywhere, so a test replays from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
