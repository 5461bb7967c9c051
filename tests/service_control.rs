//! The control socket refuses bad requests plainly and changes nothing: garbage, unknown
//! requests, an over-long line, a malformed job file, a job that does not exist, a hold of a
//! finished job. The command line says the service is not running when it is not.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ask(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &[u8]) -> Option<Value> {
    stream.write_all(line).ok()?;
    stream.write_all(b"\n").ok()?;
    let mut answer = String::new();
    reader.read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let env = Env::new();
    let r = env.coffer(&["job", "list"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no coffer service answers") && r.stderr.contains("coffer serve"), "{r}");

    let board = env.path("board.toml");
    std::fs::write(&board, "name = \"ctlbox\"\n[jobs]\nscan_seconds = 1\n").unwrap();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
    cmd.env("NOTIFY_SOCKET", &sock_path);
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap();
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }

    let mut stream = UnixStream::connect(env.state.join("control.sock")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let bad: [&[u8]; 6] = [
        b"hello",
        b"{\"request\":\"format_all_tapes\"}",
        b"{\"request\":\"hold\"}",
        b"{\"request\":\"list\",\"job\":1}",
        b"\xff\xfe\x00\x1b[2J",
        b"{\"request\":\"submit\",\"definition\":\"name = 3\"}",
    ];
    for line in bad {
        let v = ask(&mut stream, &mut reader, line).expect("a reply");
        assert_eq!(v["ok"], false, "{}: {v}", String::from_utf8_lossy(line));
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let v = ask(&mut stream, &mut reader, br#"{"request":"show","job":99}"#).unwrap();
    assert!(v["error"].as_str().unwrap().contains("no job 99"), "{v}");
    // A line over the limit is refused, and the connection closed.
    let mut big = UnixStream::connect(env.state.join("control.sock")).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut big_reader = BufReader::new(big.try_clone().unwrap());
    let _ = big.write_all(&vec![b'x'; 300 << 10]);
    let mut answer = String::new();
    big_reader.read_line(&mut answer).unwrap();
    assert!(answer.contains("refused"), "{answer}");

    // The command line: a malformed job file is named, with the key.
    let jf = env.path("bad.toml");
    std::fs::write(&jf, "name = \"x\"\nsources = [\"/srv\"]\n[schedule]\nevery = \"7 fortnights\"\n")
        .unwrap();
    let r = env.coffer(&["job", "submit", jf.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("schedule.every"), "{r}");
    let r = env.coffer(&["job", "submit", env.path("missing.toml").to_str().unwrap()]);
    assert!(r.code == 2 && r.stderr.contains("cannot read job file"), "{r}");

    // Nothing was saved; a good job is, and a hold of it after it ran is refused.
    let v = ask(&mut stream, &mut reader, br#"{"request":"list"}"#).unwrap();
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    let src = env.path("src");
    write_file(&src.join("a"), b"a");
    let good = env.path("good.toml");
    std::fs::write(&good, format!("name = \"one\"\nsources = [\"{}\"]\n", src.display())).unwrap();
    let r = env.coffer(&["job", "submit", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r}");
    let t0 = std::time::Instant::now();
    loop {
        let v = ask(&mut stream, &mut reader, br#"{"request":"show","job":1}"#).unwrap();
        if v["data"]["state"] == "done" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = env.coffer(&["job", "hold", "1"]);
    assert!(r.code == 2 && r.stderr.contains("cannot hold a job that is DONE"), "{r}");

    // SAFETY: kill has no memory preconditions; the pid is our running child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
}
