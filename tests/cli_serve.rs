//! `coffer serve` as systemd runs it: READY=1 on $NOTIFY_SOCKET once the journal is open, the
//! status endpoint answering over real HTTP (health without a token, the rest only with it),
//! and a clean stop on SIGTERM (STOPPING=1, exit 0).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "test-token-0123456789";

/// One HTTP/1.1 request with a bearer token if given; returns the status code and the body.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let a = http_get(port, path, token.map(|t| format!("Bearer {t}")).as_deref())?;
    Some((a.code, a.body))
}

#[test]
fn the_service_notifies_systemd_serves_status_and_stops_cleanly() {
    let env = Env::new();
    // A session in the catalog, so the status has something to show.
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"hello\n");
    env.backup_ok(&src, &[]);
    let port = free_port();
    let board = env.path("board.toml");
    std::fs::write(
        &board,
        format!("name = \"testbox\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut cmd = env.command(&["serve", "--board", board.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &sock_path);
    let mut child = cmd.spawn().unwrap();

    let mut buf = [0u8; 4096];
    // STATUS= messages (replaying the journal, reading the inventory) come first.
    loop {
        let n = sock.recv(&mut buf).expect("READY=1 arrives on the notify socket");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == "READY=1") {
            break;
        }
        assert!(msg.starts_with("STATUS="), "{msg}");
    }

    let t0 = Instant::now();
    let health = loop {
        if let Some(r) = get(port, "/healthz", None) {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the endpoint never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health, (200, "ok\n".into()));
    let (code, body) = get(port, "/api/status", None).unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("testbox"));
    let (code, body) = get(port, "/api/status", Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["board"], "testbox");
    assert_eq!(v["sessions"], 1);
    let (code, metrics) = get(port, "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(metrics.lines().any(|l| l == "coffer_sessions 1"), "{metrics}");
    let (code, page) = get(port, "/", Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("testbox"));
    assert_eq!(get(port, "/nope", Some(TOKEN)).unwrap().0, 404);
    // A request head far over the limit is refused.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let big = "x".repeat(64 << 10);
    let _ = write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(!text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(80)]);

    // SAFETY: kill has no memory preconditions; the pid is our running child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut stopping = false;
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1");
}
