//! The service runs a recurring job from a job file on the virtual library; it is watched
//! through the status endpoint, the control socket and the serial console; the service is
//! killed mid-job (the job is marked failed, its committed parts restorable, and it is queued
//! again) and stopped mid-job with SIGTERM (the session closes cleanly, and the job runs again
//! at the next start, to a session that restores byte for byte).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::terminal::open_pty;
use common::*;
use serde_json::Value;

const TOKEN: &str = "service-test-token-0123";
const PIN: &str = "1357";
const FILES: u64 = 48;
const FILE_LEN: usize = 1 << 20;

fn get_json(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

fn job(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["job"];
    all.extend_from_slice(args);
    let r = env.coffer_json(&all);
    r.expect_code(0);
    r.json()
}

/// Polls job 1 until `f` holds of it.
fn wait_job(env: &Env, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let j = job(env, &["show", "1"]);
        if f(&j) {
            return j;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "job 1 never {what}: {j:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the endpoint until the running session has committed objects; returns the status.
fn wait_committed(port: u16) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(v) = get_json(port, "/api/status")
            && v["latest"]["status"] == "running"
            && v["latest"]["objects"].as_u64().unwrap_or(0) > 0
        {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no session ever committed objects");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn history_states(j: &Value) -> Vec<String> {
    j["history"].as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap().to_owned()).collect()
}

/// Every restored file is the source's file, byte for byte; returns how many there are.
fn restored_files_match(src: &Path, dest: &Path) -> u64 {
    let mut n = 0;
    for p in walk_paths(dest) {
        if p.is_file() {
            let rel = p.strip_prefix(dest).unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(src.join(rel)).unwrap(),
                "{}",
                rel.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn a_recurring_job_survives_a_crash_and_a_stop_mid_run() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..FILES {
        write_file(&src.join(format!("d{}/f{i:03}", i % 4)), &random_bytes(i, FILE_LEN));
    }
    let port = free_port();
    let board = env.path("board.toml");
    // Slow drives and small cartridges: the job takes seconds, and spans cartridges, so
    // parts are closed and committed while it runs.
    std::fs::write(
        &board,
        format!(
            "name = \"jobbox\"\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{PIN}\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [jobs]\nscan_seconds = 1\n\
             [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 24\ncartridges = 20\n\
             capacity = \"16M\"\ndrive_rate = \"5M\"\ndrive_buffer = \"1M\"\ndrive_reposition_ms = 10\n"
        ),
    )
    .unwrap();
    let job_file = env.path("job.toml");
    std::fs::write(
        &job_file,
        format!(
            "name = \"nightly\"\nsources = [\"{}\"]\n[schedule]\nstart = \"now\"\nevery = \"1h\"\n",
            src.display()
        ),
    )
    .unwrap();

    // 1. Submit; watch it run through the endpoint; kill the service mid-job.
    let mut svc = start_service(&env, &board);
    let submitted = job(&env, &["submit", job_file.to_str().unwrap()]);
    assert_eq!(submitted["job"], 1, "{submitted}");
    let seen = wait_committed(port);
    assert!(seen["activity"].as_str().unwrap().starts_with("backup: job 1 (nightly) session 1,"), "{seen:#}");
    // And at the serial console: the job in the status, the front panel backing up.
    let (mut term, tty) = open_pty();
    let mut con = env
        .command(&["--board", board.to_str().unwrap(), "console", "--tty", &tty])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    term.login(PIN).unwrap();
    let status = term.until("status", "job 1 (nightly): session 1").unwrap();
    assert!(status.contains("panel: |BKP J1 "), "{status}");
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    // The console outlives the service and says so.
    assert!(term.command("jobs").contains("no answer from the service"), "{}", term.since());

    // 2. The next start fails the job, closes its session, and queues the job again.
    let mut svc = start_service(&env, &board);
    let j = job(&env, &["show", "1"]);
    let states = history_states(&j);
    assert_eq!(states[states.len() - 2..], ["failed", "ready"], "{j:#}");
    let failed = &j["history"].as_array().unwrap()[states.len() - 2];
    assert!(failed["message"].as_str().unwrap().contains("session 1 closed as interrupted"), "{failed}");
    let next = j["next_run"].as_u64().unwrap();
    let at = failed["at"].as_u64().unwrap();
    assert!(next > at + 3000, "the next run is the next hourly one: {j:#}");
    let status = get_json(port, "/api/status").unwrap();
    assert_eq!(status["latest"]["id"], 1);
    assert_eq!(status["latest"]["status"], "interrupted");
    // The console, still logged in, sees the restarted service: the job queued again.
    let jobs = term.command("jobs");
    assert!(jobs.contains("   1  READY") && jobs.contains("nightly"), "{jobs}");
    term.logout().unwrap();
    drop(term);
    assert!(con.wait().unwrap().success(), "the console ends cleanly on hangup");

    // 3. Run it by hand and stop the service (SIGTERM) mid-job: exit 0, session cancelled.
    job(&env, &["run", "1"]);
    wait_committed(port);
    // SAFETY: kill has no memory preconditions; the pid is our running child.
    assert_eq!(unsafe { libc::kill(svc.child.id() as i32, libc::SIGTERM) }, 0);
    let st = svc.child.wait().unwrap();
    assert!(st.success(), "a stop mid-job exits cleanly: {st}");
    let mut stopping = false;
    svc.sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = svc.sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1");

    // What both interrupted sessions committed restores, file for file (the service is down,
    // so the command line has the state and the library).
    let ls = env.coffer_json(&["ls"]);
    let sessions = ls.json();
    let by_id = |id: u64| {
        let all = sessions.as_array().unwrap();
        all.iter().find(|s| s["session"] == id).cloned().unwrap_or_else(|| panic!("no session {id}: {ls}"))
    };
    assert_eq!(by_id(1)["status"], "interrupted", "{ls}");
    assert_eq!(by_id(2)["status"], "cancelled", "{ls}");
    for s in ["1", "2"] {
        let out = env.path(&format!("out{s}"));
        let r = env.restore(s, &out, &[]);
        assert!(r.code == 0, "session {s}: {r}");
        let n = restored_files_match(&src, &out);
        assert!(n > 0, "session {s} restored nothing");
    }

    // 4. The next start runs the interrupted job again, to completion, and queues it hourly.
    let mut svc = start_service(&env, &board);
    let j = wait_job(&env, "completed", |j| history_states(j).ends_with(&["done".into(), "ready".into()]));
    let states = history_states(&j);
    let interrupted = j["history"].as_array().unwrap().iter().any(|h| {
        h["state"] == "ready" && h["message"].as_str().unwrap().contains("interrupted by a service stop")
    });
    assert!(interrupted, "{j:#}");
    assert!(!states.contains(&"cancelled".to_owned()), "a stop is not a cancel: {j:#}");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(svc.child.id() as i32, libc::SIGTERM) }, 0);
    assert!(svc.child.wait().unwrap().success());
    let out = env.path("out3");
    let r = env.restore("latest", &out, &[]);
    assert!(r.code == 0, "{r}");
    assert_eq!(restored_files_match(&src, &out), FILES, "the completed run restores every file");
}

/// Reads the notify socket for at most `window`; whether a WATCHDOG=1 came.
fn pinged_within(sock: &UnixDatagram, window: Duration) -> bool {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < window {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "WATCHDOG=1")
        {
            return true;
        }
    }
    false
}

#[test]
fn a_stalled_writer_stops_the_watchdog_pings() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("big"), &random_bytes(7, 8 << 20));
    let port = free_port();
    let board = env.path("board.toml");
    // A drive so slow that writing the label block takes 16 s and the first batch minutes:
    // the job makes no progress for longer than the 2 s stall limit.
    std::fs::write(
        &board,
        format!(
            "name = \"stallbox\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [jobs]\nscan_seconds = 1\nstall_seconds = 2\n\
             [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 4\ncartridges = 2\n\
             capacity = \"64M\"\ndrive_rate = \"16K\"\ndrive_buffer = \"16K\"\n"
        ),
    )
    .unwrap();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
    cmd.env("NOTIFY_SOCKET", &sock_path).env("WATCHDOG_USEC", "400000");
    let mut child = cmd.spawn().unwrap();
    assert!(pinged_within(&sock, Duration::from_secs(30)), "an idle healthy service pings");

    let job_file = env.path("job.toml");
    std::fs::write(&job_file, format!("name = \"slow\"\nsources = [\"{}\"]\n", src.display())).unwrap();
    job(&env, &["submit", job_file.to_str().unwrap()]);
    let t0 = Instant::now();
    let status = loop {
        let v = get_json(port, "/api/status").unwrap_or_else(|| {
            eprintln!("no answer from the endpoint");
            Value::Null
        });
        if v["activity"].as_str().unwrap_or("").starts_with("STALLED: job 1") {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the stall was never seen: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["healthy"], false, "{status}");
    // Pings sent before the stall may still sit in the socket (the test did not read it
    // meanwhile) or in the service's queue behind it: read until it has been quiet a while.
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while sock.recv(&mut buf).is_ok() {}
    assert!(!pinged_within(&sock, Duration::from_secs(2)), "a stalled data plane must not ping");
    let after = get_json(port, "/api/status").unwrap();
    assert!(after["activity"].as_str().unwrap().starts_with("STALLED: job 1"), "still stalled: {after}");
    child.kill().unwrap();
    child.wait().unwrap();
}
