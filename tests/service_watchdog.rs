//! `coffer serve` under a watchdog, the way systemd runs it (`NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, every notification read): a box whose journal and library fail at
//! start keeps pinging, says it is degraded, and turns healthy once both come back; a job
//! whose verify reads back for longer than `stall_seconds` is progress, not a stall. Both
//! read the service's log, which says what it does without `RUST_LOG`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "watchdog-test-token-0123";
/// Generous: a deadline for a condition, never a measure of speed.
const DEADLINE: Duration = Duration::from_secs(120);

/// Notifications as they arrive, each with when.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notes {
    /// Reads `sock` on a thread of its own until the test ends.
    fn listen(sock: UnixDatagram) -> Notes {
        let notes = Notes::default();
        let n = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(len) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
                n.0.lock().unwrap().push((Instant::now(), msg));
            }
        });
        notes
    }

    /// Times of WATCHDOG=1 at or after `since`.
    fn pings_since(&self, since: Instant) -> Vec<Instant> {
        let v = self.0.lock().unwrap();
        v.iter()
            .filter(|(t, m)| *t >= since && m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Every STATUS= sent so far.
    fn statuses(&self) -> Vec<String> {
        let v = self.0.lock().unwrap();
        v.iter()
            .flat_map(|(_, m)| m.lines().filter_map(|l| l.strip_prefix("STATUS=")).map(str::to_owned))
            .collect()
    }

    fn ready(&self) -> bool {
        self.0.lock().unwrap().iter().any(|(_, m)| m.lines().any(|l| l == "READY=1"))
    }
}

/// A running service: the process, its notifications, its log so far.
struct Served {
    child: Child,
    notes: Notes,
    log: Arc<Mutex<String>>,
    /// Reads the log until the service's stderr closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        // A failed test leaves no service behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `coffer serve` on `board` with a watchdog of `watchdog`, its log at the default level.
    fn start(env: &Env, board: &Path, watchdog: Duration) -> Served {
        let sock_path = env.path("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let notes = Notes::listen(sock);
        let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let served = Served { child, notes, log, reader: Some(reader) };
        served.wait("READY=1", || served.notes.ready());
        served
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `f` holds.
    #[track_caller]
    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < DEADLINE, "never {what}; the service's log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the service (SIGTERM) and expects a clean exit.
    fn stop(mut self) -> String {
        terminate(&self.child);
        let st = self.child.wait().unwrap();
        // The whole log: the reader ends when the pipe closes.
        self.reader.take().unwrap().join().unwrap();
        assert!(st.success(), "{st}: {}", self.log());
        self.log()
    }
}

fn status(port: u16) -> Option<Value> {
    let a = http_get(port, "/api/status", Some(&format!("Bearer {TOKEN}")))?;
    serde_json::from_str(&a.body).ok()
}

fn health(port: u16) -> Option<(u16, String)> {
    http_get(port, "/healthz", None).map(|a| (a.code, a.body))
}

fn board(env: &Env, port: u16, jobs: &str, library: &str) -> std::path::PathBuf {
    let path = env.path("board.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"dogbox\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [jobs]\nscan_seconds = 1\n{jobs}\n\
             [[library]]\nname = \"vlib\"\nkind = \"virtual\"\nslots = 8\ncartridges = 4\n\
             capacity = \"256M\"\n{library}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_degraded_box_keeps_pinging_says_so_and_recovers_part_by_part() {
    let env = Env::new();
    let port = free_port();
    let board = board(&env, port, "", "drives = 2");
    // The library's door is open, and another process holds the state: at start the journal
    // cannot be written and the library's inventory fails.
    let door = env.state.join("library/vlib/door-open");
    std::fs::create_dir_all(door.parent().unwrap()).unwrap();
    std::fs::write(&door, b"").unwrap();
    let holder = std::fs::File::create(env.state.join("lock")).unwrap();
    holder.try_lock().unwrap();
    let svc = Served::start(&env, &board, Duration::from_secs(1));

    // Degraded, not dead: it pings, and says why everywhere.
    let t0 = Instant::now();
    svc.wait("pinged while degraded", || svc.notes.pings_since(t0).len() >= 3);
    assert_eq!(health(port), Some((503, "degraded\n".into())));
    let s = status(port).unwrap();
    assert_eq!(s["healthy"], false, "{s:#}");
    let activity = s["activity"].as_str().unwrap();
    assert!(activity.starts_with("DEGRADED: "), "{activity}");
    assert!(activity.contains("journal not writable") && activity.contains("library vlib"), "{activity}");
    assert_eq!(s["journal"]["writable"], false, "{s:#}");
    assert!(s["panel"][0].as_str().unwrap().starts_with("DEGR"), "{s:#}");
    assert!(svc.notes.statuses().iter().any(|m| m.starts_with("DEGRADED: ")), "{:?}", svc.notes.statuses());

    // The other process lets go of the state: the journal is retried and jobs can be taken.
    drop(holder);
    svc.wait("journal writable again", || status(port).is_some_and(|s| s["journal"]["writable"] == true));
    let list = env.coffer_json(&["job", "list"]);
    list.expect_code(0);
    let s = status(port).unwrap();
    assert_eq!(s["healthy"], false, "the library still fails: {s:#}");
    assert!(!s["activity"].as_str().unwrap().contains("journal"), "{s:#}");

    // The door is closed: the library is inventoried again and the box is healthy.
    std::fs::remove_file(&door).unwrap();
    svc.wait("healthy", || health(port) == Some((200, "ok\n".into())));
    let s = status(port).unwrap();
    assert_eq!(
        (s["healthy"].clone(), s["activity"].clone()),
        (Value::Bool(true), Value::from("idle")),
        "{s:#}"
    );
    assert_eq!(s["drives"].as_array().unwrap().len(), 2, "the library's drives are shown: {s:#}");
    let t1 = Instant::now();
    svc.wait("pinged when healthy", || !svc.notes.pings_since(t1).is_empty());

    // The log says what failed, what was done about it, and when it came back.
    let log = svc.stop();
    for line in [
        "journal not writable, serving read-only",
        "library vlib: inventory failed",
        "trying again in",
        "the journal is writable again",
        "library vlib is back",
    ] {
        assert!(log.contains(line), "no '{line}' in the log:\n{log}");
    }
}

#[test]
fn a_long_verify_reads_back_under_the_watchdog_and_the_log_tells_the_job() {
    let env = Env::new();
    let src = env.path("src");
    // 48 MiB read back at 8 MiB/s: the verify lasts far longer than the 2 s stall limit,
    // each read (16 blocks of 256 KiB) well within it.
    for i in 0..48u64 {
        write_file(&src.join(format!("d{}/f{i:03}", i % 4)), &random_bytes(i, 1 << 20));
    }
    let port = free_port();
    let board = board(&env, port, "stall_seconds = 2", "drives = 1\ndrive_read_rate = \"8M\"");
    let job_file = env.path("job.toml");
    std::fs::write(
        &job_file,
        format!("name = \"checked\"\nverify = true\nsources = [\"{}\"]\n", src.display()),
    )
    .unwrap();
    let watchdog = Duration::from_secs(4);
    let svc = Served::start(&env, &board, watchdog);
    let submit = env.coffer_json(&["job", "submit", job_file.to_str().unwrap()]);
    submit.expect_code(0);
    assert!(submit.stderr.is_empty(), "a command run by a person logs nothing at info: {submit}");

    // Watch the job to its end: it reads back for seconds, and never counts as stalled.
    let (mut verifying_since, mut stalled) = (None, None);
    let t0 = Instant::now();
    let done = loop {
        let s = status(port).unwrap_or(Value::Null);
        let activity = s["activity"].as_str().unwrap_or("").to_owned();
        if activity.starts_with("verify: job 1") && verifying_since.is_none() {
            verifying_since = Some(Instant::now());
        }
        if activity.starts_with("STALLED") {
            stalled.get_or_insert(activity);
        }
        let job = &s["jobs"][0];
        if job["state"] != "active" && job["state"] != "ready" && !job.is_null() {
            break s;
        }
        assert!(t0.elapsed() < DEADLINE, "the job never ended: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let verifying_since = verifying_since.expect("the verify was seen running");
    assert_eq!(stalled, None, "reading back is progress");
    assert_eq!(done["jobs"][0]["state"], "done", "{done:#}");
    assert!(done["jobs"][0]["last"].as_str().unwrap().contains("; verified "), "{done:#}");
    // The watchdog was fed all along the verify: systemd would not have killed the service.
    let mut pings = svc.notes.pings_since(verifying_since);
    pings.insert(0, verifying_since);
    // Pings went on while the verify ran: at least two after it began (no timing is asserted;
    // a stalled box would have stopped them, and the status would have said STALLED).
    assert!(pings.len() >= 3, "pings during the verify: {pings:?}");

    let log = svc.stop();
    for line in [
        "board dogbox: vlib: virtual library, 1 drives".to_owned(),
        "library vlib: 1 drives (drive 0 empty), 4 cartridges".to_owned(),
        format!("status endpoint on http://127.0.0.1:{port}/"),
        "READY: idle (watchdog 4000 ms".to_owned(),
        "job 1 (checked) started".to_owned(),
        "job 1 (checked) done: session 1: ".to_owned(),
        "stopping".to_owned(),
    ] {
        assert!(log.contains(&line), "no '{line}' in the log:\n{log}");
    }
    assert!(!log.contains("stalled"), "{log}");
}
