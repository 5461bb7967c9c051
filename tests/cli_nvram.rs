//! The NVRAM ring target end to end: sessions land in a mapped file, a full ring wraps and
//! overwrites the oldest sessions, which leave the catalog; the newest still restore whole.

mod common;

use std::fs;

use common::*;

#[test]
fn a_wrapping_ring_prunes_the_overwritten_sessions_and_keeps_the_newest() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // Incompressible, so each session takes its size on the ring.
    for i in 0..4 {
        fs::write(src.join(format!("f{i}.bin")), random_bytes(i, 100_000)).unwrap();
    }
    let ring = env.path("ring.nvr");
    let to = format!("nvram:{},size=1M", ring.display());
    let src_s = src.to_str().unwrap();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let r = env.coffer_json(&["backup", src_s, "--to", &to]);
        r.expect_code(0);
        sessions.push(r.json()["session"].as_u64().unwrap());
    }
    assert_eq!(fs::metadata(&ring).unwrap().len(), 1 << 20, "the ring keeps its size");
    let listed: Vec<u64> = env.ls_sessions().iter().map(|s| s["session"].as_u64().unwrap()).collect();
    // Each session is ~400 kB of a 1 MiB ring: the fourth wrapped over the first ones.
    assert!(listed.len() < 4, "overwritten sessions left the catalog: {listed:?}");
    assert!(listed.contains(&sessions[3]), "the newest session is kept: {listed:?}");
    let last = sessions[3].to_string();
    let dest = env.path("out");
    env.restore(&last, &dest, &[]).expect_code(0);
    for i in 0..4 {
        let name = format!("f{i}.bin");
        assert_eq!(fs::read(dest.join(&name)).unwrap(), fs::read(src.join(&name)).unwrap(), "{name}");
    }
    env.coffer_json(&["verify", &last]).expect_code(0);
    // A pruned session is gone from the catalog, not silently unreadable.
    let pruned = sessions[0].to_string();
    let r = env.coffer_json(&["verify", &pruned]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.all_output().contains("no session"), "{r}");

    // The wrapped ring, scanned with no catalog, gives back exactly the live sessions.
    let objects: Vec<_> = listed.iter().map(|s| env.ls_session(&s.to_string())).collect();
    fs::remove_dir_all(&env.state).unwrap();
    let r = env.coffer_json(&["scan", &to]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], listed.len() as u64, "{r}");
    let rescanned: Vec<u64> = env.ls_sessions().iter().map(|s| s["session"].as_u64().unwrap()).collect();
    assert_eq!(rescanned, listed);
    let again: Vec<_> = listed.iter().map(|s| env.ls_session(&s.to_string())).collect();
    assert_eq!(again, objects);
    env.coffer_json(&["verify", &last, "--compare", src_s]).expect_code(0);
}

/// Sessions staged on a ring and drained to disk live on the disk: they survive the ring
/// wrapping over them, and even the ring's loss.
#[test]
fn staged_sessions_drain_to_disk_and_outlive_the_ring() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(10 + i, 100_000));
    }
    write_file(&src.join("notes.txt"), &text_bytes(3, 50_000));
    let ring = env.path("ring.nvr");
    let stage = format!("nvram:{},size=1M", ring.display());
    let src_s = src.to_str().unwrap();
    let disk = env.to();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let r = env.coffer_json(&["backup", src_s, "--stage", &stage, "--to", &disk]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(j["drained"]["sessions"], serde_json::json!([j["session"]]), "{r}");
        assert!(j["drained"]["bytes"].as_u64().unwrap() > 400_000, "{r}");
        sessions.push(j["session"].as_u64().unwrap());
    }
    // The ring wrapped, but every session had left it: none was pruned.
    let listed: Vec<u64> = env.ls_sessions().iter().map(|s| s["session"].as_u64().unwrap()).collect();
    assert_eq!(listed, sessions);
    // Nothing left to drain.
    let r = env.coffer_json(&["drain", "--from", &stage, "--to", &disk]);
    r.expect_code(0);
    assert_eq!(r.json()["parts"], 0, "{r}");
    fs::remove_file(&ring).unwrap();
    for s in &sessions {
        env.coffer_json(&["verify", &s.to_string(), "--compare", src_s]).expect_code(0);
    }
    // A stage that is gone is an error that says so.
    let r = env.coffer_json(&["drain", "--from", &stage, "--to", &disk]);
    r.expect_code(2);
    assert!(r.stderr.contains("does not exist"), "{r}");
}

/// A staged part that is damaged is not copied: its session stays on the ring, named, and the
/// others drain.
#[test]
fn a_damaged_staged_part_stays_and_is_named() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 60_000));
    let ring = env.path("ring.nvr");
    let stage = format!("nvram:{},size=4M", ring.display());
    let src_s = src.to_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = env.coffer_json(&["backup", src_s, "--to", &stage]);
        r.expect_code(0);
        ids.push(r.json()["session"].as_u64().unwrap());
    }
    // Flip a byte inside the first session's data (its file's bytes are incompressible).
    let bytes = fs::read(&ring).unwrap();
    let needle = &random_bytes(1, 60_000)[1000..1032];
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the file's bytes are on the ring");
    flip_byte(&ring, at as u64);
    let r = env.coffer_json(&["drain", "--from", &stage, "--to", &env.to()]);
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j["sessions"], serde_json::json!([ids[1]]), "{r}");
    let problems = strings(&j["problems"]);
    assert_eq!(problems.len(), 1, "{r}");
    assert!(problems[0].contains(&format!("session {}", ids[0])), "{r}");
    assert!(problems[0].contains("stays on the staging medium"), "{r}");
    // The drained one reads from disk; the damaged one is still found on the ring by verify.
    env.coffer_json(&["verify", &ids[1].to_string(), "--compare", src_s]).expect_code(0);
    let r = env.coffer_json(&["verify", &ids[0].to_string()]);
    r.expect_code(1);
}
