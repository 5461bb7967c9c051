//! The status endpoint as its readers see it, over real HTTP from a real `coffer serve` with a
//! session in its catalog: /metrics read by a Prometheus text parser (the `prometheus-parse`
//! crate), and the page rendered by headless Chromium, which logs in the way a person's browser
//! does: the page answers 401 with a Basic challenge and the browser retries with the user and
//! password of the URL (`http://coffer:TOKEN@host/`).
//!
//! promtool (Debian `prometheus`) lints /metrics as well; like Chromium it is needed under CI.
//!
//! Chromium is a system package (`chromium` on Debian). When it is missing the browser test says
//! so and passes, except under CI (`$CI` set, where `.ci/run` installs it): there it fails. The
//! screenshot is kept as `test-artifacts/status-page.png` in the cargo target directory.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use prometheus_parse::{Scrape, Value};

const TOKEN: &str = "browser-token-0123456789";
const BOARD: &str = "statusbox";
const CONTENT: &[u8] = b"status page test data\n";

/// A Chromium run that takes longer than this is hung: its process group is killed and the test
/// fails. A guard against hanging the suite, not an assertion on speed.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);

/// `coffer serve` on a free port with one backup session in its catalog; stopped when dropped.
struct Served {
    env: Env,
    port: u16,
    child: Child,
    /// The backup's summary (`--json`).
    backup: serde_json::Value,
}

impl Served {
    fn start() -> Served {
        let env = Env::new();
        let src = env.path("src");
        write_file(&src.join("data.txt"), CONTENT);
        let backup = env.backup_ok(&src, &[]);
        let port = free_port();
        let board = env.path("board.toml");
        let text =
            format!("name = \"{BOARD}\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n");
        std::fs::write(&board, text).unwrap();
        let log = std::fs::File::create(env.path("serve.log")).unwrap();
        let mut cmd = env.command(&["serve", "--board", board.to_str().unwrap()]);
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let child = cmd.spawn().expect("start coffer serve");
        let served = Served { env, port, child, backup };
        let t0 = Instant::now();
        while http_get(port, "/healthz", None).is_none() {
            let log = std::fs::read_to_string(served.env.path("serve.log")).unwrap_or_default();
            assert!(t0.elapsed() < Duration::from_secs(30), "the status endpoint never answered:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    fn url(&self, credentials: &str) -> String {
        format!("http://{credentials}127.0.0.1:{}/", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the one sample of `name` with exactly `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    let hits: Vec<&Value> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| &s.value)
        .collect();
    assert_eq!(hits.len(), 1, "{name}{labels:?}: {hits:?}");
    hits[0]
}

#[test]
fn metrics_are_read_by_a_prometheus_parser() {
    let s = Served::start();
    let objects = s.backup["objects"].as_f64().expect("the backup counts its objects");
    assert!(objects >= 1.0);

    let refused = http_get(s.port, "/metrics", None).unwrap();
    assert_eq!(refused.code, 401, "{}", refused.body);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer realm=\"coffer\""));
    assert!(!refused.body.contains(BOARD));

    let a = http_get(s.port, "/metrics", Some(&format!("Bearer {TOKEN}"))).unwrap();
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(a.header("content-type").is_some_and(|t| t.contains("version=0.0.4")), "{:?}", a.headers);
    let scrape = Scrape::parse(a.body.lines().map(|l| Ok(l.to_owned()))).expect("the text parses");

    assert_eq!(sample(&scrape, "coffer_up", &[]), &Value::Gauge(1.0));
    assert_eq!(sample(&scrape, "coffer_sessions", &[]), &Value::Gauge(1.0));
    assert_eq!(sample(&scrape, "coffer_media", &[]), &Value::Gauge(1.0));
    assert_eq!(sample(&scrape, "coffer_latest_session_objects", &[]), &Value::Gauge(objects));
    assert_eq!(sample(&scrape, "coffer_latest_session_bytes", &[]), &Value::Gauge(CONTENT.len() as f64));
    assert!(matches!(sample(&scrape, "coffer_uptime_seconds", &[]), Value::Gauge(_)));
    for state in ["ready", "hold", "active", "done", "failed", "cancelled"] {
        assert!(matches!(sample(&scrape, "coffer_jobs", &[("state", state)]), Value::Gauge(_)), "{state}");
    }
    assert!(matches!(sample(&scrape, "coffer_bytes_in_total", &[]), Value::Counter(_)));
    assert!(matches!(sample(&scrape, "coffer_bytes_stored_total", &[]), Value::Counter(_)));
    for g in [
        "coffer_throughput_in_bytes_per_second",
        "coffer_throughput_stored_bytes_per_second",
        "coffer_journal_records",
        "coffer_journal_bytes",
    ] {
        assert!(matches!(sample(&scrape, g, &[]), Value::Gauge(_)), "{g}");
    }
    // Every family is documented once, those without samples on this board too.
    for family in [
        "coffer_up",
        "coffer_jobs",
        "coffer_job_bytes_in",
        "coffer_drive_online",
        "coffer_drive_loaded",
        "coffer_drive_repositions_total",
        "coffer_cartridges",
        "coffer_journal_bytes",
    ] {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
        let help = format!("# HELP {family} ");
        assert_eq!(a.body.lines().filter(|l| l.starts_with(&help)).count(), 1, "{family}");
        let kind = format!("# TYPE {family} ");
        assert_eq!(a.body.lines().filter(|l| l.starts_with(&kind)).count(), 1, "{family}");
    }
    promtool_accepts(&a.body);
}

/// The Prometheus project's own linter, `promtool check metrics` (Debian `prometheus`), finds
/// nothing to say about `text`. Without promtool: skipped outside CI, a failure under CI.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            skip_unless_ci(&format!(
                "promtool cannot run ({e}; apt-get install prometheus): metrics not linted"
            ));
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", out.status);
}

/// The Chromium binary on `$PATH`.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile; returns its
/// standard output. Killed (its whole process group) after [`CHROMIUM_LIMIT`].
fn chromium(bin: &Path, home: &Path, extra: &[&str], url: &str) -> String {
    let profile = tempfile::Builder::new().prefix("profile-").tempdir_in(home).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1024,900"])
        // Containers often have a small /dev/shm, which crashes renderers.
        .arg("--disable-dev-shm-usage")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hung browser is killed with all its helpers.
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(CHROMIUM_LIMIT) {
        Ok(out) => out.expect("wait for chromium"),
        Err(_) => {
            // SAFETY: kill(2) on the process group led by a child this test started and has
            // not reaped (its waiting thread is still blocked), so the group id is still ours.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("chromium {extra:?} {url} did not finish within {CHROMIUM_LIMIT:?}: killed as hung");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium {extra:?} failed: {}\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_page_renders_in_headless_chromium_after_basic_auth() {
    let Some(bin) = find_chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed, and CI must run the browser test: install it \
             (apt-get install chromium; .ci/run does)"
        );
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium); the browser test did not run"
        );
        return;
    };
    let s = Served::start();
    let home = s.env.path("browser");
    std::fs::create_dir_all(&home).unwrap();

    // The page challenges for Basic auth, so that a browser sends the URL's credentials or asks.
    let refused = http_get(s.port, "/", None).unwrap();
    assert_eq!(refused.code, 401);
    assert!(
        refused.header("www-authenticate").is_some_and(|c| c.starts_with("Basic realm=\"coffer\"")),
        "{:?}",
        refused.headers
    );

    let dom = chromium(&bin, &home, &["--dump-dom"], &s.url(&format!("coffer:{TOKEN}@")));
    assert!(dom.contains(&format!("<span id=\"board\">{BOARD}</span>")), "{dom}");
    assert!(dom.contains("<span id=\"health\" class=\"ok\">healthy</span>"), "{dom}");
    assert!(dom.contains("<span id=\"sessions\">1</span>"), "{dom}");
    for id in ["panel", "jobs", "drives", "cartridges", "throughput", "journal", "latest"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in {dom}");
    }

    let shot = artifacts().join("status-page.png");
    // A stale screenshot must not pass for this run's.
    let _ = std::fs::remove_file(&shot);
    chromium(
        &bin,
        &home,
        &[&format!("--screenshot={}", shot.display())],
        &s.url(&format!("coffer:{TOKEN}@")),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {}", shot.display());
    assert_eq!(&png[12..16], b"IHDR");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1024, 900), "the window size");
    // A blank page of this size compresses to a few kB; text and tables take far more.
    assert!(png.len() > 15_000, "a {}-byte screenshot is too small to show the page", png.len());
    eprintln!("screenshot: {}", shot.display());

    // Without credentials, or with a wrong password, the browser gets nothing of the page.
    for credentials in ["", "coffer:wrong-token-0123456789@"] {
        let dom = chromium(&bin, &home, &["--dump-dom"], &s.url(credentials));
        assert!(!dom.contains(BOARD) && !dom.contains("id=\"health\""), "{credentials}: {dom}");
    }
}
