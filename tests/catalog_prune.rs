//! Catalog pruning through the command line and the service, in simulated time (`COFFER_NOW`):
//! a session older than `catalog_keep` loses its per-file index once a newer backup of its
//! source is the next baseline (the service prunes after the job), `ls` says so and how to get
//! it back, the session restores whole and identical, a single path is refused naming the
//! scan to run, `coffer scan --session N` reads the index back from the medium (bad input
//! refused, nothing changed), and then one path restores identical. Prints the bytes the index
//! and journal directories hold before and after pruning.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const T0: &str = "2027-01-01T00:00:00Z";
/// 35 days on: past a `catalog_keep` of 30 days.
const T35: &str = "2027-02-05T00:00:00Z";

/// Starts `coffer serve` with its clock at `now` and waits for READY=1.
fn serve_at(env: &Env, board: &Path, now: &str) -> Service {
    let sock_path = env.path("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
    cmd.env("NOTIFY_SOCKET", &sock_path).env("COFFER_NOW", now).stdout(Stdio::null());
    let child = cmd.spawn().unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("READY=1 from coffer serve");
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
            break;
        }
    }
    Service { child, sock }
}

/// Bytes the files under `dir` take.
fn dir_bytes(dir: &Path) -> u64 {
    walk_paths(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `ls --json`: whether session `id`'s index is pruned.
fn pruned(env: &Env, id: u64) -> bool {
    let r = env.coffer_json(&["ls"]);
    r.expect_code(0);
    let rows = r.json();
    let row = rows.as_array().unwrap().iter().find(|s| s["session"] == id).cloned();
    row.unwrap_or_else(|| panic!("no session {id}: {r}"))["index_pruned"].as_bool().unwrap()
}

fn index_file(env: &Env, id: u64) -> PathBuf {
    env.state.join(format!("index/session-{id:016x}.idx"))
}

#[test]
fn an_old_sessions_index_is_pruned_restores_whole_and_comes_back_from_its_medium() {
    let env = Env::new();
    let board = env.path("board.toml");
    fs::write(&board, "name = \"t\"\ncatalog_keep = \"30d\"\n[jobs]\nscan_seconds = 1\n").unwrap();
    let b = board.to_str().unwrap();
    // Many small files (packed) and a few large ones (objects of their own), in directories.
    let src = env.path("src");
    for d in 0..6u64 {
        for f in 0..60u64 {
            write_file(
                &src.join(format!("dir{d}/file{f:03}.txt")),
                &text_bytes(d * 100 + f, 200 + (f as usize) * 37),
            );
        }
    }
    write_file(&src.join("big/one.bin"), &random_bytes(1, 3 << 20));
    write_file(&src.join("big/two.bin"), &random_bytes(2, 5 << 20));
    std::os::unix::fs::symlink("dir1/file007.txt", src.join("link")).unwrap();
    let want = snapshot(&src);
    let to = env.to();
    let s = src.to_str().unwrap();

    // Session 1 at T0, with the service stopped.
    let mut first = env.command(&["--json", "--board", b, "backup", s, "--to", &to]);
    first.env("COFFER_NOW", T0);
    let r = run(first);
    r.expect_code(0);
    assert_eq!(r.json()["session"], 1, "{r}");
    let original = fs::read(index_file(&env, 1)).unwrap();

    // 35 days on the service starts: session 1 is old, but it is the source's only backup, the
    // baseline of its next incremental, so its index stays.
    let mut svc = serve_at(&env, &board, T35);
    assert_eq!(env.ls_session("1").len(), want.nodes.len(), "session 1 still lists its files");
    assert!(!pruned(&env, 1));

    // Session 2 through the service, as a job: after it, session 1's index is pruned.
    let r = env.coffer_json(&["--board", b, "backup", s, "--to", &to]);
    r.expect_code(0);
    assert_eq!(r.json()["session"], 2, "{r}");
    let index_dir = env.state.join("index");
    let journal_dir = env.state.join("journal");
    let t0 = Instant::now();
    while !pruned(&env, 1) {
        assert!(t0.elapsed() < Duration::from_secs(60), "session 1's index was never pruned");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!index_file(&env, 1).exists(), "the pruned index file is deleted");
    assert!(index_file(&env, 2).exists() && !pruned(&env, 2), "the young session keeps its index");
    let (index_after, journal_after) = (dir_bytes(&index_dir), dir_bytes(&journal_dir));

    // `ls` says so and how to get it back.
    let r = env.coffer(&["ls", "1"]);
    r.expect_code(2);
    assert!(r.stderr.contains("index of session 1 was pruned"), "{r}");
    assert!(r.stderr.contains("coffer scan --session 1"), "{r}");
    let r = env.coffer(&["ls"]);
    let line = r.stdout.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("{r}"));
    assert!(line.contains("[index pruned]"), "{r}");
    let activity = env.coffer_json(&["job", "log"]);
    assert!(activity.stdout.contains("pruned the per-file index of sessions 1"), "{activity}");

    // Restored whole, it is the source as it was.
    let whole = env.path("whole");
    let r = env.restore("1", &whole, &[]);
    r.expect_code(0);
    assert_eq!(r.json()["ok"], true, "{r}");
    assert_same_tree(&want, &snapshot(&whole), Ignore { root_meta: true, ..Ignore::default() });
    // A verify reads it back whole too.
    env.coffer_json(&["verify", "1"]).expect_code(0);

    // One path is refused, naming the scan to run; nothing is restored.
    let one = env.path("one");
    let r = env.restore("1", &one, &["dir3/file042.txt"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("single paths cannot be found") && r.stderr.contains("`coffer scan --session 1`"),
        "{r}"
    );
    assert!(!one.join("dir3").exists());

    // Bad input to `scan --session`: each refused by name, nothing changed.
    let r = env.coffer(&["scan", "--session", "9"]);
    r.expect_code(2);
    assert!(r.stderr.contains("no session 9"), "{r}");
    let r = env.coffer(&["scan", "--session", "2"]);
    r.expect_code(2);
    assert!(r.stderr.contains("session 2's index was not pruned"), "{r}");
    let r = env.coffer(&["scan", "--session", "1", &to]);
    r.expect_code(2);
    let moved = env.path("moved-away");
    fs::rename(&env.target, &moved).unwrap();
    let r = env.coffer(&["scan", "--session", "1"]);
    fs::rename(&moved, &env.target).unwrap();
    r.expect_code(2);
    assert!(r.stderr.contains("cannot read part 0 of stream 0 of session 1 on medium"), "{r}");
    assert!(pruned(&env, 1) && !index_file(&env, 1).exists(), "a failed read-back changes nothing");

    // Read back from the medium: listed and restored file by file again.
    let r = env.coffer_json(&["scan", "--session", "1"]);
    r.expect_code(0);
    assert_eq!(r.json()["entries"].as_u64(), Some(env.ls_session("2").len() as u64), "{r}");
    assert!(!pruned(&env, 1) && index_file(&env, 1).exists());
    let index_back = dir_bytes(&index_dir);
    assert!(
        fs::read(index_file(&env, 1)).unwrap() == original,
        "the index read back is the file that was pruned, digests and all"
    );
    assert_eq!(env.ls_session("1").len(), want.nodes.len());
    let r = env.restore("1", &one, &["dir3/file042.txt"]);
    r.expect_code(0);
    assert_eq!(
        fs::read(one.join("dir3/file042.txt")).unwrap(),
        fs::read(src.join("dir3/file042.txt")).unwrap()
    );
    assert_eq!(walk_paths(&one).iter().filter(|p| p.is_file()).count(), 1, "only the one file");
    let r = env.coffer(&["scan", "--session", "1"]);
    r.expect_code(2);
    assert!(r.stderr.contains("was not pruned"), "{r}");

    // `coffer catalog prune` through the service prunes it again (its clock is 35 days on).
    let r = env.coffer_json(&["--board", b, "catalog", "prune"]);
    r.expect_code(0);
    assert_eq!(r.json()["pruned"], serde_json::json!([1]), "{r}");
    assert!(pruned(&env, 1) && !index_file(&env, 1).exists());
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());

    // After a restart (replay) it is still pruned, and the command with the service stopped
    // finds nothing more to prune.
    let mut again = env.command(&["--json", "--board", b, "catalog", "prune"]);
    again.env("COFFER_NOW", T35);
    let r = run(again);
    r.expect_code(0);
    assert_eq!(r.json()["pruned"], serde_json::json!([]), "{r}");
    assert!(pruned(&env, 1));

    // What pruning saved. The service prunes in the same queue scan that ends the job, so the
    // directory as it was before is measured with the index read back (byte for byte the
    // file that was pruned, checked above).
    let index_before = index_back;
    println!(
        "catalog pruning: index directory {index_before} bytes with both sessions' indexes, {index_after} after pruning session 1; journal directory {journal_after} bytes after pruning (pruning adds one record, it frees nothing there)"
    );
    assert!(index_after < index_before, "{index_after} < {index_before}");
}
