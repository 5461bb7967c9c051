//! Multistream backups: one session spread over several targets at once (seed 000), a
//! target that fills up mid-job handing its work to the others, and restore reading every
//! target and putting split files back together.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A tree of real files (the system's documentation; made up of text files where a machine
/// has too little of it) next to large files of random bytes, as two sources of one backup.
fn real_tree_and_large_files(env: &Env) -> (PathBuf, PathBuf) {
    let big = env.path("big");
    for (i, mb) in [41u64, 23, 17, 9].iter().enumerate() {
        write_file(
            &big.join(format!("f{i}.bin")),
            &random_bytes(100 + i as u64, (mb << 20) as usize + 12_345),
        );
    }
    write_file(&big.join("notes.txt"), &text_bytes(7, 300_000));
    let doc = PathBuf::from("/usr/share/doc");
    if walk_paths(&doc).len() >= 1000 {
        return (doc, big);
    }
    let doc = env.path("doc");
    for i in 0..3000u64 {
        write_file(
            &doc.join(format!("d{}/f{i}.txt", i % 50)),
            &text_bytes(i, 200 + (i as usize * 7919) % 40_000),
        );
    }
    (doc, big)
}

fn targets(env: &Env, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("disk:{}", env.path(&format!("t{i}")).display())).collect()
}

fn backup_to(env: &Env, sources: &[&Path], to: &[String]) -> Run {
    let mut args: Vec<String> = vec!["backup".into()];
    args.extend(sources.iter().map(|p| p.to_str().unwrap().to_owned()));
    for t in to {
        args.push("--to".into());
        args.push(t.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.coffer_json(&args)
}

fn stream_bytes(summary: &Value) -> Vec<u64> {
    summary["streams"].as_array().unwrap().iter().map(|s| s["bytes"].as_u64().unwrap()).collect()
}

/// Restores the latest session and compares it with both sources, then verifies it.
fn restores_identical(env: &Env, doc: &Path, big: &Path) {
    let out = env.path("out");
    let r = env.restore("latest", &out, &[]);
    r.expect_code(0);
    for src in [doc, big] {
        let name = src.file_name().unwrap();
        assert_same_tree(&snapshot(src), &snapshot(&out.join(name)), Ignore::default());
    }
    env.coffer_json(&["verify", "latest"]).expect_code(0);
}

#[test]
fn three_disks_carry_equal_shares_and_restore_whole() {
    let env = Env::new();
    let (doc, big) = real_tree_and_large_files(&env);
    let to = targets(&env, 3);
    let r = backup_to(&env, &[&doc, &big], &to);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    let bytes = stream_bytes(&j);
    assert_eq!(bytes.len(), 3, "{r}");
    let mean = bytes.iter().sum::<u64>() as f64 / 3.0;
    for b in &bytes {
        let off = (*b as f64 - mean).abs() / mean;
        assert!(off <= 0.01, "stream bytes {bytes:?} differ from their mean {mean} by {:.2}%", off * 100.0);
    }
    for t in 0..3 {
        assert!(!volume_files(&env.path(&format!("t{t}"))).is_empty());
    }
    restores_identical(&env, &doc, &big);
}

#[test]
fn a_file_larger_than_a_share_is_split_and_put_back_together() {
    let env = Env::new();
    let src = env.path("src");
    let big = random_bytes(9, 30_000_000);
    write_file(&src.join("big.bin"), &big);
    write_file(&src.join("a.txt"), &text_bytes(1, 10_000));
    let to = targets(&env, 3);
    backup_to(&env, &[&src], &to).expect_code(0);
    let objects = env.ls_session("latest");
    let pieces: Vec<&Value> = objects.iter().filter(|o| o["path"] == "big.bin").collect();
    assert_eq!(pieces.len(), 3, "{objects:?}");
    let streams: std::collections::BTreeSet<u64> =
        pieces.iter().map(|o| o["stream"].as_u64().unwrap()).collect();
    assert_eq!(streams.len(), 3, "the segments went to different targets: {pieces:?}");
    let mut spans: Vec<(u64, u64)> = pieces
        .iter()
        .map(|o| (o["segment_offset"].as_u64().unwrap(), o["length"].as_u64().unwrap()))
        .collect();
    spans.sort();
    assert_eq!(spans[0].0, 0);
    for w in spans.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "segments leave a gap or overlap: {spans:?}");
    }
    assert_eq!(spans[2].0 + spans[2].1, big.len() as u64);
    // Whole restore, and the one file alone.
    let out = env.path("out");
    env.restore("latest", &out, &[]).expect_code(0);
    assert_same_tree(&snapshot(&src), &snapshot(&out), Ignore::default());
    let one = env.path("one");
    env.restore("latest", &one, &["big.bin"]).expect_code(0);
    assert!(fs::read(one.join("big.bin")).unwrap() == big);
    env.coffer_json(&["verify", "latest", "--compare", src.to_str().unwrap()]).expect_code(0);
    // A byte flipped in one segment is found and named.
    let t1 = volume_files(&env.path(&format!("t{}", pieces[1]["stream"])));
    let vol = &t1[0];
    let pos = pieces[1]["position"].as_u64().unwrap() + 100_000;
    flip_byte(vol, pos);
    let r = env.coffer_json(&["verify", "latest"]);
    r.expect_code(1);
    assert!(r.all_output().contains("big.bin"), "{r}");
}

#[test]
fn the_plan_can_be_printed_without_writing() {
    let env = Env::new();
    let (_, big) = real_tree_and_large_files(&env);
    let to = targets(&env, 2);
    let r =
        env.coffer_json(&["backup", big.to_str().unwrap(), "--to", &to[0], "--to", &to[1], "--plan-only"]);
    r.expect_code(0);
    let j = r.json();
    let devices = j["plan"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{r}");
    let threshold = j["plan"]["threshold"].as_u64().unwrap();
    let mut per_item: std::collections::BTreeMap<u64, u64> = Default::default();
    for d in devices {
        for p in d["pieces"].as_array().unwrap() {
            assert!(p["len"].as_u64().unwrap() <= threshold, "{p}");
            *per_item.entry(p["item"].as_u64().unwrap()).or_default() += p["len"].as_u64().unwrap();
        }
    }
    // Every byte of every file is placed once.
    let paths = j["paths"].as_array().unwrap();
    for (item, total) in per_item {
        let path = paths[(item - 1) as usize].as_str().unwrap();
        let size =
            fs::symlink_metadata(big.join(path)).map(|m| if m.is_file() { m.len() } else { 0 }).unwrap();
        assert_eq!(total, size, "{path}");
    }
    for t in 0..2 {
        assert!(volume_files(&env.path(&format!("t{t}"))).is_empty(), "--plan-only wrote a volume");
    }
    assert!(!env.state.exists(), "--plan-only changed the state");
}

#[test]
fn a_target_that_fills_up_hands_its_work_to_the_others() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(200 + i, 12_000_000));
    }
    for i in 0..40u64 {
        write_file(&src.join(format!("small/s{i}.txt")), &text_bytes(i, 3_000 + 500 * i as usize));
    }
    // A raw disk of 6 MiB: far less than its share of about 12 MB.
    let small = env.path("small.img");
    fs::File::create(&small).unwrap().set_len(6 << 20).unwrap();
    let mut to = targets(&env, 2);
    to.push(format!("disk:{},raw", small.display()));
    let r = backup_to(&env, &[&src], &to);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    let streams = j["streams"].as_array().unwrap();
    assert!(streams[2]["error"].as_str().unwrap().contains("full"), "{r}");
    assert!(streams[0]["error"].is_null() && streams[1]["error"].is_null(), "{r}");
    let moved = j["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{r}");
    assert_eq!(moved[0]["from"], 2, "{r}");
    assert!(moved[0]["bytes"].as_u64().unwrap() > 0, "{r}");
    let problems = strings(&j["problems"]);
    assert!(problems.iter().any(|p| p.contains("moved to the others")), "{r}");
    // Everything is back, byte for byte, from the three targets together.
    let out = env.path("out");
    env.restore("latest", &out, &[]).expect_code(0);
    assert_same_tree(&snapshot(&src), &snapshot(&out), Ignore::default());
    env.coffer_json(&["verify", "latest", "--compare", src.to_str().unwrap()]).expect_code(0);
    // What the full disk did make durable is read from it, not written twice.
    let on_small = env.ls_session("latest").iter().filter(|o| o["stream"] == 2).count();
    let ids: Vec<(u64, u64)> = env
        .ls_session("latest")
        .iter()
        .map(|o| (o["id"].as_u64().unwrap(), o["segment_offset"].as_u64().unwrap()))
        .collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a piece was stored twice");
    eprintln!("objects left on the full disk: {on_small}");
}

#[test]
fn when_every_target_fails_the_session_fails_and_keeps_what_was_durable() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(300 + i, 5_000_000));
    }
    let imgs: Vec<PathBuf> = (0..2).map(|i| env.path(&format!("d{i}.img"))).collect();
    for img in &imgs {
        fs::File::create(img).unwrap().set_len(4 << 20).unwrap();
    }
    let to: Vec<String> = imgs.iter().map(|i| format!("disk:{},raw", i.display())).collect();
    let r = backup_to(&env, &[&src], &to);
    r.expect_code(2);
    let j = r.json();
    assert_eq!(j["status"], "failed", "{r}");
    assert!(j["error"].as_str().unwrap().contains("could not finish"), "{r}");
    // The session is in the catalog as failed; whatever it journaled verifies.
    let sessions = env.ls_sessions();
    assert_eq!(sessions[0]["status"], "failed");
    assert_eq!(env.ls_session("latest").len() as u64, j["objects"].as_u64().unwrap(), "{r}");
    env.coffer_json(&["verify", "latest"]).expect_code(0);
}

/// Runs a backup and sends it SIGINT after `after`; returns its exit status and JSON summary.
fn backup_interrupted(env: &Env, src: &Path, to: &[String], after: std::time::Duration) -> (i32, Value) {
    let mut cmd = env.command(&["--json", "backup", src.to_str().unwrap()]);
    for t in to {
        cmd.arg("--to").arg(t);
    }
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(after);
    // SAFETY: kill has no memory preconditions; the pid is our child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let j: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.code().unwrap_or(-1), j)
}

#[test]
fn cancelling_a_multistream_job_closes_every_stream_and_keeps_what_was_written() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..6u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(400 + i, 8_000_000));
    }
    // Slow targets (2 MB/s each): the job would take about 12 s.
    let to: Vec<String> = targets(&env, 2).iter().map(|t| format!("{t},rate=2M")).collect();
    let (code, j) = backup_interrupted(&env, &src, &to, std::time::Duration::from_millis(1500));
    assert_eq!(code, 130, "{j}");
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(j["objects"].as_u64().unwrap() < 6, "{j}");
    assert_eq!(env.ls_sessions()[0]["status"], "cancelled");
    // What was journaled is whole and restorable, from both targets.
    env.coffer_json(&["verify", "latest"]).expect_code(0);
    let out = env.path("out");
    env.restore("latest", &out, &[]).expect_code(0);
    for o in env.ls_session("latest") {
        let p = o["path"].as_str().unwrap();
        if o["kind"] == "file" {
            assert!(fs::read(out.join(p)).unwrap() == fs::read(src.join(p)).unwrap(), "{p}");
        }
    }
}

#[test]
fn cancelling_a_single_stream_job_keeps_what_was_written() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(500 + i, 6_000_000));
    }
    let to = vec![format!("{},rate=3M", env.to())];
    let (code, j) = backup_interrupted(&env, &src, &to, std::time::Duration::from_millis(1500));
    assert_eq!(code, 130, "{j}");
    assert_eq!(j["status"], "cancelled", "{j}");
    let files = env.ls_session("latest").iter().filter(|o| o["kind"] == "file").count();
    assert!(files < 4, "{j}");
    env.coffer_json(&["verify", "latest"]).expect_code(0);
    let out = env.path("out");
    env.restore("latest", &out, &[]).expect_code(0);
    let restored = fs::read_dir(&out).unwrap().count();
    assert_eq!(restored, files, "only whole files come back");
}

#[test]
fn a_disk_and_an_nvram_ring_share_a_job() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("big.bin"), &random_bytes(600, 9_000_000));
    for i in 0..30u64 {
        write_file(&src.join(format!("t/{i}.txt")), &text_bytes(i, 20_000));
    }
    let to = vec![env.to(), format!("nvram:{},size=64M", env.path("ring.nvr").display())];
    let r = backup_to(&env, &[&src], &to);
    r.expect_code(0);
    let streams = r.json()["streams"].as_array().unwrap().clone();
    assert!(streams.iter().all(|s| s["objects"].as_u64().unwrap() > 0), "{r}");
    let out = env.path("out");
    env.restore("latest", &out, &[]).expect_code(0);
    assert_same_tree(&snapshot(&src), &snapshot(&out), Ignore::default());
}

#[test]
fn a_faster_target_gets_more_and_a_measured_one_is_planned_by_its_speed() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..12u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(700 + i, 2_000_000 + 100_000 * i as usize));
    }
    let (fast, slow) = (env.path("fast"), env.path("slow"));
    let to_fast = format!("disk:{},rate=40M", fast.display());
    let to_slow = format!("disk:{},rate=20M", slow.display());
    let r = env.coffer_json(&[
        "backup",
        src.to_str().unwrap(),
        "--to",
        &to_fast,
        "--to",
        &to_slow,
        "--plan-only",
    ]);
    r.expect_code(0);
    let j = r.json();
    let bytes: Vec<f64> =
        j["plan"]["devices"].as_array().unwrap().iter().map(|d| d["bytes"].as_f64().unwrap()).collect();
    let share = bytes[0] / (bytes[0] + bytes[1]);
    assert!((share - 2.0 / 3.0).abs() < 0.05, "the 2x faster target got {:.1}% of the bytes", share * 100.0);
    // A measured target: the plan runs (the rate is whatever this disk does).
    let m = format!("disk:{},measure", env.path("m").display());
    env.coffer_json(&["backup", src.to_str().unwrap(), "--to", &m, "--to", &to_slow, "--plan-only"])
        .expect_code(0);
    assert!(!env.path("m/.coffer-rate-probe").exists(), "the probe file was left behind");
}
