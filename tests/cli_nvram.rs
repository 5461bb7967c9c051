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
}
