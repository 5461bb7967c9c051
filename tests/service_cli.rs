//! The box's own command line while the service runs: `ls`, `verify`, `restore`, `scan`,
//! `journal check`, `media inventory`, `media list` and `backup` go through the control socket
//! and answer as they do with the service stopped: the same output (less timings and counters of the
//! process that ran them) and the same exit codes, `--json` or not.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn board(env: &Env) -> std::path::PathBuf {
    let board = env.path("board.toml");
    std::fs::write(
        &board,
        "name = \"clibox\"\n[jobs]\nscan_seconds = 1\n\
         [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 12\ncartridges = 10\ncapacity = \"64M\"\n",
    )
    .unwrap();
    board
}

/// The commands compared, each as its arguments.
fn commands(out: &Path) -> Vec<Vec<String>> {
    let out = out.to_str().unwrap();
    [
        vec!["ls"],
        vec!["--json", "ls"],
        vec!["--json", "ls", "1"],
        vec!["--json", "ls", "--media"],
        vec!["verify", "1"],
        vec!["--json", "verify", "latest"],
        vec!["--json", "verify", "7"],
        vec!["--json", "restore", "1", "--to", out],
        vec!["--json", "scan", "library:vlib"],
        vec!["--json", "journal", "check"],
        vec!["--json", "media", "inventory"],
        vec!["media", "inventory"],
        vec!["--json", "media", "list"],
        vec!["media"],
        vec!["--json", "pool", "list"],
        vec!["pool", "show", "default"],
    ]
    .into_iter()
    .map(|a| a.into_iter().map(str::to_owned).collect())
    .collect()
}

/// What is compared of a run: the exit code and the output, with what depends on the process
/// or the moment taken out (timings, rates, tape counters since the process started).
fn comparable(r: &Run) -> (i32, String) {
    let text = match serde_json::from_str::<Value>(r.stdout.trim()) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                for k in ["seconds", "mb_per_s", "tape"] {
                    o.remove(k);
                }
                // The journal grows between the runs (the service journals as it starts and
                // stops): its size is not compared, what it holds is.
                if o.remove("records").is_some() {
                    o.remove("segments");
                    o.remove("bytes");
                }
                // Restores and verifies move cartridges: which drive holds which one differs
                // from run to run; the cartridges the library holds do not.
                if let Some(places) = o.remove("places") {
                    o.remove("drives");
                    let mut held: Vec<String> = places
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|p| p["barcode"].as_str().map(str::to_owned))
                        .collect();
                    held.sort();
                    o.insert("cartridges".into(), held.into());
                }
            }
            v.to_string()
        }
        Err(_) => r
            .stdout
            .lines()
            .filter(|l| !l.trim_start().starts_with("tape:"))
            .filter(|l| !l.starts_with("  drive ") && !l.starts_with("  slot "))
            .map(|l| {
                l.split(", ")
                    .filter(|f| !f.ends_with(" s") && !f.ends_with("MB/s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    (r.code, text)
}

fn run_all(env: &Env, board: &Path, out: &Path) -> Vec<(Vec<String>, Run)> {
    let _ = std::fs::remove_dir_all(out);
    commands(out)
        .into_iter()
        .map(|args| {
            let mut all = vec!["--board".to_owned(), board.to_str().unwrap().to_owned()];
            all.extend(args.iter().cloned());
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let r = env.coffer(&all);
            (args, r)
        })
        .collect()
}

#[test]
fn every_state_command_works_through_the_running_service_as_without_it() {
    let env = Env::new();
    let board = board(&env);
    let b = board.to_str().unwrap();
    let src = env.path("src");
    for i in 0..300u64 {
        write_file(
            &src.join(format!("d{}/f{i}.txt", i % 9)),
            &text_bytes(i, 500 + (i as usize * 131) % 20_000),
        );
    }
    let s = src.to_str().unwrap();
    env.coffer(&["--board", b, "backup", s]).expect_code(0);

    // With the service running: the commands go through it.
    let mut svc = start_service(&env, &board);
    let direct_refused = {
        // The state is the service's: a second writer is kept out (the lock), so every command
        // that ran above went through the socket.
        let lock = std::fs::File::options().write(true).open(env.state.join("lock")).unwrap();
        matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    };
    assert!(direct_refused, "the service does not hold the state lock");
    let through = run_all(&env, &board, &env.path("out-through"));
    // A bad command through the service fails as it does here.
    let nowhere = env.path("nowhere");
    let bad = env.coffer(&["--board", b, "restore", "99", "--to", nowhere.to_str().unwrap()]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("no session 99"), "{bad}");
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());

    // The same commands with the service stopped, run here.
    let direct = run_all(&env, &board, &env.path("out-direct"));
    for ((args, t), (_, d)) in through.iter().zip(&direct) {
        assert_eq!(comparable(t), comparable(d), "{args:?}: through the service {t}\ndirect {d}");
    }
    let missing = through.iter().find(|(args, _)| args.ends_with(&["verify".to_owned(), "7".to_owned()]));
    let missing = &missing.expect("verify of session 7 is among the commands").1;
    assert_eq!(missing.code, 2, "verify of a missing session fails: {missing}");
    assert_same_tree(
        &snapshot(&env.path("out-through")),
        &snapshot(&env.path("out-direct")),
        Ignore::default(),
    );

    // A backup while the service runs is a job of its queue; it restores identical.
    let mut svc = start_service(&env, &board);
    let r = env.coffer(&["--board", b, "--json", "backup", s]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["state"], "done", "{r}");
    let session = j["session"].as_u64().expect("the backup names its session").to_string();
    let out = env.path("out-job");
    env.coffer(&["--board", b, "restore", &session, "--to", out.to_str().unwrap()]).expect_code(0);
    assert_same_tree(&snapshot(&src), &snapshot(&out), Ignore::default());
    let jobs = env.coffer(&["--json", "job", "list"]).json();
    assert!(
        jobs.as_array().unwrap().iter().any(|x| x["name"] == "backup-by-hand" && x["state"] == "done"),
        "the backup is not a job of the queue: {jobs}"
    );
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
}

#[test]
fn the_socket_group_decides_who_may_and_ctrl_c_cancels_a_backup_run_through_the_service() {
    if let Err(why) = setpriv_works() {
        skip_unless_ci(&why);
        return;
    }
    let env = Env::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let board = env.path("board.toml");
    // Slow drives: the backup runs long enough to be interrupted.
    std::fs::write(
        &board,
        "name = \"clibox\"\n[control]\ngroup = \"users\"\n[jobs]\nscan_seconds = 1\n\
         [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 12\ncartridges = 10\n\
         capacity = \"256M\"\ndrive_rate = \"2M\"\ndrive_buffer = \"1M\"\n",
    )
    .unwrap();
    let b = board.to_str().unwrap();
    let src = env.path("src");
    for i in 0..8u64 {
        write_file(&src.join(format!("r{i}.bin")), &random_bytes(i, 3 << 20));
    }
    let mut svc = start_service(&env, &board);
    std::fs::set_permissions(&env.state, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A member of the board's group may; another user may not, and is told why.
    let users = as_nobody(&env, Some(group_id("users")), &["--json", "ls"]);
    assert_eq!(users.code, 0, "{users}");
    assert_eq!(users.json(), serde_json::json!([]), "{users}");
    let other = as_nobody(&env, None, &["ls"]);
    assert_eq!(other.code, 2, "{other}");
    assert!(other.stderr.contains("you may not use the coffer service's control socket"), "{other}");

    // Ctrl-C cancels the job the backup became: exit 130, the job CANCELLED, its session
    // closed as cancelled.
    let child = env
        .command(&["--board", b, "backup", src.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    // The job is running and its session open (not only loading a cartridge).
    loop {
        let jobs = env.coffer(&["--json", "job", "list"]).json();
        let sessions = env.coffer(&["--json", "ls"]).json();
        let active = jobs.as_array().unwrap().iter().any(|j| j["state"] == "active");
        if active && sessions.as_array().unwrap().iter().any(|s| s["status"] == "running") {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the backup never became a running job with an open session: {jobs} {sessions}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill has no memory preconditions; the pid is our running child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CANCELLED"), "{stdout}");
    let sessions = env.coffer(&["--json", "ls"]).json();
    assert_eq!(sessions[0]["status"], "cancelled", "{sessions}");
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
}
