//! The status endpoint of a real `coffer serve`: the journal's figures are those `coffer
//! journal check` reports, and they follow the journal as it grows.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "endpoint-test-token-0123456789";
const PIN: &str = "97531";

/// A board with the status endpoint on `listen` and a small, quick virtual library.
fn board(env: &Env, name: &str, status: &str) -> std::path::PathBuf {
    let path = env.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\n[status]\n{status}\n[jobs]\nscan_seconds = 1\n\
             [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 8\ncartridges = 6\n\
             capacity = \"64M\"\n"
        ),
    )
    .unwrap();
    path
}

fn status_json(port: u16) -> Value {
    let a = http_get(port, "/api/status", Some(&format!("Bearer {TOKEN}"))).expect("the endpoint answers");
    assert_eq!(a.code, 200, "{}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// `coffer --json job ...`, which must succeed.
fn job(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["job"];
    all.extend_from_slice(args);
    let r = env.coffer_json(&all);
    r.expect_code(0);
    r.json()
}

/// Submits a one-off backup job of `src` and waits until it is done.
fn backup_job(env: &Env, src: &Path, name: &str) -> Value {
    let job_file = env.path(&format!("{name}.job.toml"));
    std::fs::write(&job_file, format!("name = \"{name}\"\nsources = [\"{}\"]\n", src.display())).unwrap();
    let id = job(env, &["submit", job_file.to_str().unwrap()])["job"].to_string();
    let t0 = Instant::now();
    loop {
        let j = job(env, &["show", &id]);
        match j["state"].as_str() {
            Some("done") => return j,
            Some("failed" | "cancelled") => panic!("job {id} did not complete: {j:#}"),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "job {id} never completed: {j:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn journal_figures_are_those_journal_check_reports() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..20 {
        write_file(&src.join(format!("f{i:02}")), &random_bytes(i, 4096));
    }
    let port = free_port();
    let board = board(&env, "journalbox", &format!("listen = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\""));
    let mut svc = start_service(&env, &board);
    let before = status_json(port)["journal"].clone();

    backup_job(&env, &src, "first");
    // The snapshot is refreshed every second: wait until it shows the job's records and holds
    // still (nothing else writes to the journal of an idle service).
    let t0 = Instant::now();
    let mut last = Value::Null;
    let shown = loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = status_json(port)["journal"].clone();
        if now["records"].as_u64() > before["records"].as_u64() && now == last {
            break now;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the journal figures never settled: {now} {before}");
        last = now;
    };
    let a = http_get(port, "/metrics", Some(&format!("Bearer {TOKEN}"))).unwrap();
    for (metric, key) in [("coffer_journal_records", "records"), ("coffer_journal_bytes", "bytes")] {
        let line = format!("{metric} {}", shown[key]);
        assert!(a.body.lines().any(|l| l == line), "no '{line}' in /metrics:\n{}", a.body);
    }
    let page = http_get(port, "/", Some(&format!("Bearer {TOKEN}"))).unwrap();
    assert!(page.body.contains(&format!("{} records", shown["records"])), "{}", page.body);
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());

    let check = env.coffer_json(&["journal", "check"]);
    check.expect_code(0);
    let check = check.json();
    assert!(check["records"].as_u64().unwrap() > 0 && check["bytes"].as_u64().unwrap() > 0, "{check}");
    assert_eq!(shown["records"], check["records"], "shown {shown}, journal check {check}");
    assert_eq!(shown["bytes"], check["bytes"], "shown {shown}, journal check {check}");
    let len: u64 = std::fs::read_dir(env.path("state/journal"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(Some(len), check["bytes"].as_u64(), "the segments' size on disk");
}

#[test]
fn beyond_loopback_the_endpoint_speaks_tls_with_the_fingerprint_shown() {
    use common::tls::{Trust, https_get};
    let env = Env::new();
    let port = free_port();
    // 0.0.0.0 is not loopback: the service must serve HTTPS there (reached via 127.0.0.1).
    let status = format!(
        "listen = \"0.0.0.0:{port}\"\ntoken = \"{TOKEN}\"\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{PIN}\""
    );
    let board = board(&env, "tlsbox", &status);
    let mut svc = start_service(&env, &board);
    let health = https_get(port, "/healthz", None, &Trust::AnyCertificate).expect("HTTPS answers");
    assert_eq!((health.http.code, health.http.body.as_str()), (200, "ok\n"));
    let served = health.fingerprint;

    // The fingerprint `coffer status` shows is the served certificate's.
    let status = env.coffer(&["status"]);
    status.expect_code(0);
    assert!(status.stdout.contains(&format!("certificate SHA-256 {served}")), "{status}");
    assert!(status.stdout.contains(&format!("status endpoint https://0.0.0.0:{port}/")), "{status}");
    // So does the serial console's `status`, 16 bytes a line.
    let (mut term, tty) = common::terminal::open_pty();
    let mut con = env
        .command(&["--board", board.to_str().unwrap(), "console", "--tty", &tty])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    term.login(PIN).unwrap();
    let shown = term.until("status", "certificate SHA-256").unwrap();
    let halves: Vec<&str> = served.splitn(17, ':').collect();
    let (first, second) = (halves[..16].join(":"), halves[16]);
    assert!(shown.contains(&first) && shown.contains(second), "{served} not in:\n{shown}");
    term.logout().unwrap();
    drop(term);
    let _ = con.wait();
    // A client that pins it gets the status; one that pins another certificate gets nothing.
    let auth = format!("Bearer {TOKEN}");
    let pinned = https_get(port, "/api/status", Some(&auth), &Trust::Fingerprint(served.clone())).unwrap();
    assert_eq!(pinned.http.code, 200, "{}", pinned.http.body);
    let v: Value = serde_json::from_str(&pinned.http.body).unwrap();
    assert_eq!(v["endpoint"]["fingerprint"], served.as_str());
    let other =
        Trust::Fingerprint(served.replace(&served[..2], if &served[..2] == "00" { "01" } else { "00" }));
    assert!(https_get(port, "/api/status", Some(&auth), &other).is_err(), "a wrong pin must fail");
    // Plain HTTP gets no answer.
    let plain = http_get(port, "/healthz", None);
    assert!(plain.as_ref().is_none_or(|a| a.code != 200), "plain HTTP answered: {plain:?}");

    // The self-signed certificate and its key are kept in the state directory, the key 0600.
    let cert = std::fs::read(env.state.join("tls/cert.pem")).unwrap();
    let der = rustls::pki_types::pem::PemObject::pem_slice_iter(&cert)
        .next()
        .map(|c: Result<rustls::pki_types::CertificateDer<'static>, _>| c.unwrap())
        .unwrap();
    assert_eq!(common::tls::fingerprint(&der), served);
    let mode = std::fs::metadata(env.state.join("tls/key.pem")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
    // The next start serves the same certificate.
    let mut svc = start_service(&env, &board);
    let again =
        https_get(port, "/healthz", None, &Trust::Fingerprint(served.clone())).expect("same certificate");
    assert_eq!(again.http.code, 200);
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
}

#[test]
fn plain_http_beyond_loopback_is_refused_naming_the_key() {
    let env = Env::new();
    let port = free_port();
    let board =
        board(&env, "plainbox", &format!("listen = \"0.0.0.0:{port}\"\ntoken = \"{TOKEN}\"\ntls = false"));
    let path = board.to_str().unwrap();
    for args in [vec!["board", "check", path], vec!["--board", path, "serve"]] {
        let r = env.coffer(&args);
        assert_ne!(r.code, 0, "{args:?} accepted plain HTTP on 0.0.0.0: {r}");
        assert!(r.stderr.contains("status.tls") && r.stderr.contains("plain HTTP"), "{args:?}: {r}");
    }
    assert!(http_get(port, "/healthz", None).is_none(), "nothing listens");
}

/// Raises this process's soft limit on open files to its hard limit; the limit now.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit write to and read from a valid rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// Idle connections the flood test holds open, as in the report it reproduces (1,100 were
/// enough against a service with 1,024 descriptors).
const IDLE_CONNECTIONS: usize = 5000;

#[test]
fn five_thousand_idle_connections_starve_neither_health_nor_jobs() {
    let limit = raise_nofile();
    if limit < IDLE_CONNECTIONS as u64 + 200 {
        skip_unless_ci(&format!(
            "the open files hard limit is {limit}, under {IDLE_CONNECTIONS} + 200 (raise it to 8192)"
        ));
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    for i in 0..8 {
        write_file(&src.join(format!("f{i}")), &random_bytes(i, 64 << 10));
    }
    let port = free_port();
    let board = board(&env, "floodbox", &format!("listen = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\""));
    // The service starts with the soft limit most services get (1,024); raising it is its job.
    let mut cmd = env.command(&["--board", board.to_str().unwrap(), "serve"]);
    let sock_path = env.path("flood-notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    cmd.env("NOTIFY_SOCKET", &sock_path);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe, on a local value.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let lim = libc::rlimit { rlim_cur: 1024, rlim_max: limit as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("READY=1 from coffer serve");
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
            break;
        }
    }

    // Every connection sends half a request and then nothing.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connection {i} of {IDLE_CONNECTIONS}: {e}"));
        let _ = std::io::Write::write_all(&mut s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        idle.push(s);
    }
    let t0 = Instant::now();
    let health = loop {
        if let Some(a) = http_get(port, "/healthz", None) {
            break a;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "/healthz never answered under the flood");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((health.code, health.body.as_str()), (200, "ok\n"));
    // A backup job completes while the connections are still held open.
    let done = backup_job(&env, &src, "flooded");
    assert_eq!(done["state"], "done", "{done:#}");
    let v = status_json(port);
    let refused = v["endpoint"]["refused"].as_u64().unwrap();
    assert!(refused > 0, "the connection cap never closed one: {v:#}");
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections: {refused} closed at once by the cap, {} open now",
        v["endpoint"]["connections"]
    );
    drop(idle);
    terminate(&child.0);
    assert!(child.0.wait().unwrap().success());
}

/// A service this test started, killed if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
