//! The serial console through a pty, as a person at a dumb terminal uses it: wrong PINs and
//! line noise are refused, the right PIN logs in; a job submitted held is released from the
//! console and watched running (the front panel shows it); the library is inventoried, a
//! cartridge loaded, unloaded and ejected, a drive taken offline and back; the log is read;
//! garbage commands get clear errors and change nothing. Everything the console sends is
//! plain ASCII in lines of less than 80 columns, without one escape code.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::process::Child;

use common::terminal::open_pty;
use common::*;

const PIN: &str = "2468";

fn has(answer: &str, want: &str) {
    assert!(answer.contains(want), "wanted {want:?} in:\n{answer}");
}

fn console(env: &Env, board: &std::path::Path, tty: &str) -> Child {
    env.command(&["--board", board.to_str().unwrap(), "console", "--tty", tty]).spawn().unwrap()
}

#[test]
fn a_person_runs_the_box_from_the_serial_console() {
    let env = Env::new();
    let board = env.path("board.toml");
    std::fs::write(
        &board,
        format!(
            "name = \"consolebox\"\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{PIN}\"\n\
             [jobs]\nscan_seconds = 1\n\
             [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 12\nimport_export = 2\n\
             cartridges = 8\ncapacity = \"64M\"\ndrive_rate = \"4M\"\ndrive_buffer = \"1M\"\n\
             drive_reposition_ms = 10\n"
        ),
    )
    .unwrap();
    let src = env.path("src");
    for i in 0..24u64 {
        write_file(&src.join(format!("f{i:02}")), &random_bytes(i, 1 << 20));
    }
    let job_file = env.path("job.toml");
    std::fs::write(&job_file, format!("name = \"nightly\"\nsources = [\"{}\"]\n", src.display())).unwrap();

    let mut svc = start_service(&env, &board);
    let (mut term, tty) = open_pty();
    let mut con = console(&env, &board, &tty);
    term.expect("coffer console of consolebox");
    term.expect("PIN: ");

    // Line noise, arrow keys and a wrong PIN are refused; the PIN is never echoed.
    term.send(b"\x1b[A\x00\xff\xfe\x07noise\r").unwrap();
    term.expect("wrong PIN");
    term.send(b"1357\r").unwrap();
    let answer = term.expect("wrong PIN");
    assert!(answer.contains("****") && !answer.contains("1357"), "{answer}");
    term.send(format!("{PIN}\r").as_bytes()).unwrap();
    term.expect("logged in: type help for the commands");
    term.expect("coffer> ");

    let help = term.command("help");
    for verb in ["status", "jobs", "run N", "hold N", "release N", "cancel N", "inventory", "load BARCODE"] {
        assert!(help.contains(verb), "help lacks {verb}: {help}");
    }
    for verb in ["unload", "eject BARCODE", "drive N online|offline", "log", "logout"] {
        assert!(help.contains(verb), "help lacks {verb}: {help}");
    }
    let status = term.command("status");
    assert!(status.contains("consolebox healthy, up"), "{status}");
    assert!(status.contains("panel: |IDLE 0/2"), "{status}");
    assert!(status.contains("drive vlib/1: online"), "{status}");

    // Garbage gets clear errors.
    has(&term.command("frobnicate all"), "unknown command 'frobnicate': type help");
    has(&term.command("run"), "usage: run N");
    has(&term.command("run 99"), "refused: no job 99");
    term.send(b"hold \x1b[D\x1b[D1x\r").unwrap();
    term.expect("usage: hold N");
    term.expect("coffer> ");

    // A job submitted held is released at the console and watched while it runs.
    env.coffer(&["job", "submit", job_file.to_str().unwrap(), "--hold"]).expect_code(0);
    let jobs = term.command("jobs");
    assert!(jobs.contains("   1  HOLD") && jobs.contains("nightly"), "{jobs}");
    // Due now, it may have started by the time the answer is written.
    let released = term.command("release 1");
    assert!(
        released.contains("job 1 (nightly): READY") || released.contains("job 1 (nightly): ACTIVE"),
        "{released}"
    );
    let running = term.until("status", "job 1 (nightly): session").unwrap();
    assert!(running.contains("panel: |BKP J1 "), "{running}");
    let panel = term.command("panel");
    assert!(panel.contains("+--------------------+"), "{panel}");
    let done = term.until("jobs", "DONE").unwrap();
    assert!(done.contains("   1  DONE"), "{done}");
    let log = term.command("log 1");
    assert!(log.contains("job 1:"), "{log}");
    // A finished job cannot be cancelled or held; it stays DONE.
    has(&term.command("hold 1"), "refused: cannot hold a job that is DONE");

    // The library by hand.
    let inv = term.command("inventory");
    assert!(inv.contains("library vlib"), "{inv}");
    let barcode = inv
        .split_whitespace()
        .find(|w| w.starts_with("CFR") && w.len() == 9)
        .unwrap_or_else(|| panic!("no cartridge in the inventory: {inv}"))
        .to_owned();
    let load = term.command(&format!("load {barcode} 1"));
    assert!(load.contains(&format!("drive 1: {barcode}")), "{load}");
    let unload = term.command("unload 1");
    assert!(unload.contains("drive 1: empty"), "{unload}");
    let offline = term.command("drive 1 offline");
    assert!(offline.contains("drive 1: empty OFFLINE"), "{offline}");
    term.until("status", "drive vlib/1: OFFLINE").unwrap();
    has(&term.command("drive 1 online"), "drive 1: empty online");
    let eject = term.command(&format!("eject {barcode}"));
    assert!(eject.contains(&format!("mail slot 1 {barcode}")), "{eject}");
    assert!(term.command("load CFR;rm").contains("not a barcode"));

    // Nothing the garbage asked for happened: one job, DONE.
    let list = env.coffer_json(&["job", "list"]);
    let jobs = list.json();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    assert_eq!(jobs[0]["state"], "done");

    // The console outlives the service: it says the service does not answer.
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
    has(&term.command("status"), "no answer from the service");

    term.send(b"logout\r").unwrap();
    term.expect("logged out");
    term.expect("PIN: ");

    std::fs::write(artifacts().join("console-transcript.txt"), &term.transcript).unwrap();
    // A dumb terminal got plain ASCII: no escape code, lines under 80 columns.
    let text = String::from_utf8_lossy(&term.transcript).into_owned();
    assert!(!term.transcript.contains(&0x1b), "an escape code was sent");
    for line in text.split("\r\n") {
        assert!(line.len() < 80, "line of {} columns: {line}", line.len());
        assert!(line.bytes().all(|b| (0x20..=0x7e).contains(&b) || b == 0x08 || b == 0x07), "{line:?}");
    }

    // Hanging up ends the console cleanly.
    drop(term);
    assert!(con.wait().unwrap().success());
}

/// Types a PIN and returns the answer, up to the next PIN prompt (at the start of a line: the
/// answer "wrong PIN: locked …" holds "PIN: " too).
fn pin_answer(term: &mut common::terminal::Terminal<std::fs::File>, pin: &str) -> String {
    term.send(format!("{pin}\r").as_bytes()).unwrap();
    term.expect("\r\nPIN: ")
}

/// Seconds in "locked for N s" (the first such figure in `answer`).
fn locked_secs(answer: &str) -> u64 {
    let rest = answer.split("locked for ").nth(1).unwrap_or_else(|| panic!("not locked: {answer}"));
    rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no figure: {answer}"))
}

#[test]
fn wrong_pins_lock_the_console_longer_each_time_and_across_restarts() {
    let env = Env::new();
    let board = env.path("board.toml");
    std::fs::write(&board, format!("name = \"lockbox\"\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{PIN}\"\n"))
        .unwrap();
    let mut svc = start_service(&env, &board);
    let (mut term, tty) = open_pty();
    let mut con = console(&env, &board, &tty);
    term.expect("\r\nPIN: ");

    // Two typos are free; the third wrong PIN locks the console for 30 s.
    assert!(pin_answer(&mut term, "1111").contains("wrong PIN\r\n"));
    assert!(pin_answer(&mut term, "2222").contains("wrong PIN\r\n"));
    let third = pin_answer(&mut term, "3333");
    assert!(third.contains("wrong PIN: locked for 30 s"), "{third}");
    let locked_at = std::time::Instant::now();
    // Even the right PIN is not checked while locked.
    let refused = pin_answer(&mut term, PIN);
    assert!(locked_secs(&refused) <= 30 && !refused.contains("logged in"), "{refused}");

    // Neither a new service nor a new console process gives fresh tries.
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
    svc = start_service(&env, &board);
    // The test holds the line open meanwhile: a pty whose every user has gone answers its
    // other end with EIO.
    let held =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&tty).unwrap();
    terminate(&con);
    con.wait().unwrap();
    con = console(&env, &board, &tty);
    term.expect("\r\nPIN: ");
    drop(held);
    let after_restart = pin_answer(&mut term, PIN);
    assert!(locked_secs(&after_restart) <= 30 && !after_restart.contains("logged in"), "{after_restart}");

    // When the lock has run out, the next wrong PIN locks for twice as long.
    std::thread::sleep(std::time::Duration::from_secs(32).saturating_sub(locked_at.elapsed()));
    let fourth = pin_answer(&mut term, "4444");
    assert!(fourth.contains("wrong PIN: locked for 60 s"), "{fourth}");

    // Every wrong PIN is in the activity log, with the tty, at warning level.
    let log = env.coffer(&["job", "log"]);
    log.expect_code(0);
    let wrong: Vec<&str> = log.stdout.lines().filter(|l| l.contains("wrong PIN")).collect();
    assert_eq!(wrong.len(), 4, "{log}");
    for (n, line) in wrong.iter().enumerate() {
        assert!(line.contains("warning") && line.contains(&tty), "{line}");
        assert!(line.contains(&format!("({} in a row)", n + 1)), "{line}");
    }
    assert!(wrong[3].contains("locked for 60 s"), "{log}");

    drop(term);
    con.wait().unwrap();
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
}
