//! The status endpoint of a real `coffer serve`: the journal's figures are those `coffer
//! journal check` reports, and they follow the journal as it grows.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "endpoint-test-token-0123456789";

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
    let len = std::fs::read_dir(env.path("state/journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
                .map(|e| e.metadata().unwrap().len())
                .sum::<u64>()
        })
        .ok();
    if let Some(len) = len {
        assert_eq!(Some(len), check["bytes"].as_u64(), "the segments' size on disk");
    }
}
