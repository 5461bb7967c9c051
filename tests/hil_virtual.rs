//! The fault scenarios of `hil/scenarios/` on the virtual tape library (the fast tier): each
//! file names faults for the library and what must come of a backup through both drives.
//! For every scenario: the job completes or fails with the error it names; whatever the
//! catalog holds verifies; a completed job restores byte-identical; a failed one restores
//! only files identical to their sources; cartridges named `never_written` hold nothing;
//! drives named `offline_drives` are reported offline. A summary table ends the run.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;

struct Scenario {
    name: String,
    spec: toml::Table,
}

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hil/scenarios");
    let mut v: Vec<Scenario> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Scenario {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            spec: fs::read_to_string(&p).unwrap().parse().unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Board text for the scenario: 2 drives, 10 cartridges of 64M in `carts`, its faults.
fn board(s: &Scenario, carts: &Path) -> String {
    let mut lib = toml::Table::new();
    for (k, v) in [("name", "vlib"), ("kind", "virtual"), ("capacity", "64M")] {
        lib.insert(k.into(), toml::Value::String(v.into()));
    }
    for (k, v) in [("drives", 2), ("slots", 12), ("cartridges", 10)] {
        lib.insert(k.into(), toml::Value::Integer(v));
    }
    lib.insert("dir".into(), toml::Value::String(carts.display().to_string()));
    if let Some(f) = s.spec.get("faults") {
        lib.insert("fault".into(), f.clone());
    }
    let mut top = toml::Table::new();
    top.insert("name".into(), toml::Value::String("hil".into()));
    top.insert("library".into(), toml::Value::Array(vec![toml::Value::Table(lib)]));
    toml::to_string(&top).unwrap()
}

fn strs(s: &Scenario, key: &str) -> Vec<String> {
    s.spec.get(key).and_then(|v| v.as_array()).map_or_else(Vec::new, |a| {
        a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect()
    })
}

/// Runs one scenario; returns (result, seconds, bytes stored).
fn run_scenario(s: &Scenario) -> (String, f64, u64) {
    let env = Env::new();
    let carts = env.path("carts");
    let board_file = env.path("board.toml");
    fs::write(&board_file, board(s, &carts)).unwrap();
    let coffer = |args: &[&str]| {
        let mut c = env.command(args);
        c.env("COFFER_BOARD", &board_file);
        run(c)
    };
    let src = env.path("src");
    for i in 0..8u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(500 + i, 4_000_000));
    }
    let before = snapshot(&src);
    let t0 = Instant::now();
    let r = coffer(&["--json", "backup", src.to_str().unwrap()]);
    let secs = t0.elapsed().as_secs_f64();
    let j = r.json();
    let expect = s.spec["expect"].as_str().unwrap();
    assert_eq!(j["status"], expect, "{}: {r}", s.name);
    if expect == "complete" {
        r.expect_code(0);
    } else {
        r.expect_code(2);
        let want = s.spec["error"].as_str().unwrap();
        assert!(
            j["error"].as_str().is_some_and(|e| e.contains(want)),
            "{}: error should say '{want}': {r}",
            s.name
        );
    }
    if let Some(n) = s.spec.get("failed_streams").and_then(|v| v.as_integer()) {
        let failed =
            j["streams"].as_array().map_or(0, |a| a.iter().filter(|x| !x["error"].is_null()).count());
        assert_eq!(failed as i64, n, "{}: {r}", s.name);
    }
    if let Some(w) = s.spec.get("warns").and_then(|v| v.as_str()) {
        assert!(r.all_output().contains(w), "{}: should warn '{w}': {r}", s.name);
    }
    // What the catalog holds verifies and restores as it was.
    coffer(&["--json", "verify", "latest"]).expect_code(0);
    let dest = env.path("restored");
    let rr = coffer(&["--json", "restore", "latest", "--to", dest.to_str().unwrap()]);
    rr.expect_code(0);
    if expect == "complete" {
        assert_same_tree(&before, &snapshot(&dest), Ignore { root_meta: true, ..Ignore::default() });
    } else {
        for e in fs::read_dir(&dest).into_iter().flatten() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap();
            assert!(fs::read(&p).unwrap() == fs::read(src.join(name)).unwrap(), "{}: {p:?} differs", s.name);
        }
    }
    for barcode in strs(s, "never_written") {
        let f: PathBuf = carts.join(format!("{barcode}.tape"));
        // At most what was there: nothing, or a foreign label block and its filemark.
        let len = fs::metadata(&f).map_or(0, |m| m.len());
        assert!(len <= 300_000, "{}: {barcode} was written ({len} bytes)", s.name);
    }
    let offline = strs(s, "offline_drives");
    if !offline.is_empty() {
        let inv = coffer(&["--json", "media", "inventory"]).json();
        for d in offline {
            let i: usize = d.parse().unwrap();
            assert!(
                inv["drives"][i]["offline"].is_string(),
                "{}: drive {i} should be offline: {inv}",
                s.name
            );
        }
    }
    (expect.to_owned(), secs, j["bytes_stored"].as_u64().unwrap_or(0))
}

#[test]
fn every_fault_scenario_on_the_virtual_library() {
    let all = scenarios();
    assert!(all.len() >= 9, "scenarios missing: {}", all.len());
    let mut rows = Vec::new();
    for s in &all {
        let (result, secs, bytes) = run_scenario(s);
        rows.push(format!("{:<20} {:<9} {:>6.2} s {:>12} B", s.name, result, secs, bytes));
    }
    println!("scenario             result      time        stored");
    for r in rows {
        println!("{r}");
    }
}
