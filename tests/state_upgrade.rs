//! A state written before per-session index files (one journal record per object) opens with
//! nothing lost: the first command converts it, once, saying so; listing, verify, restore and an
//! incremental backup on its baseline then read the new index files.
//!
//! The fixture `tests/fixtures/state-v2` was written by coffer as it was before index files: a
//! full backup of a small tree to a disk volume, then an incremental after one file changed and
//! one was deleted. Its catalog names the volume and the source by absolute paths under
//! [`FIXTURE_ROOT`], where the test puts them back.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Where the fixture's volume and source lived when it was written.
const FIXTURE_ROOT: &str = "/tmp/coffer-fixture-state-v2";

/// The fixture's large file: 70,000 bytes of a pattern.
fn big_bin() -> Vec<u8> {
    (0..70_000u32).map(|i| ((i * 7 + i / 251) % 251) as u8).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_state_of_one_record_per_object_is_converted_once_and_reads_the_same() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v2");
    let root = Path::new(FIXTURE_ROOT);
    let _ = fs::remove_dir_all(root);
    copy_dir(&fixture.join("vol"), &root.join("vol"));
    let env = Env::new();
    copy_dir(&fixture.join("journal"), &env.state.join("journal"));

    // The first command converts, and says so.
    let r = env.coffer_json(&["ls"]);
    r.expect_code(0);
    assert!(r.stderr.contains("converted the state to per-session index files: 2 sessions"), "{r}");
    let sessions = r.json();
    let objects: Vec<u64> =
        sessions.as_array().unwrap().iter().map(|s| s["objects"].as_u64().unwrap()).collect();
    assert_eq!(objects, [6, 3], "{r}");
    let index = env.state.join("index");
    let files = fs::read_dir(&index).unwrap().count();
    assert_eq!(files, 2, "one index file per session in {}", index.display());
    // Only once.
    let again = env.coffer_json(&["ls"]);
    again.expect_code(0);
    assert!(!again.stderr.contains("converted"), "{again}");

    // Every object is still listed, now by path.
    let paths: Vec<String> =
        env.ls_session("1").iter().map(|o| o["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(paths, [".", "a.txt", "d.txt", "sub", "sub/big.bin", "sub/c.txt"]);
    let under: Vec<String> = {
        let r = env.coffer_json(&["ls", "1", "sub"]);
        r.expect_code(0);
        r.json().as_array().unwrap().iter().map(|o| o["path"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(under, ["sub", "sub/big.bin", "sub/c.txt"]);
    // "su" is a prefix of "sub" but names nothing.
    let none = env.coffer(&["ls", "1", "su"]);
    assert_ne!(none.code, 0, "{none}");
    assert!(none.stderr.contains("holds no object at or under \"su\""), "{none}");

    for session in ["1", "2"] {
        let v = env.coffer_json(&["verify", session]);
        v.expect_code(0);
    }

    // The incremental restores as its source was: a.txt changed, d.txt gone, the rest from the
    // full session through the kept list.
    let out = env.path("restored");
    env.restore("2", &out, &[]).expect_code(0);
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha changed\n");
    assert_eq!(fs::read(out.join("sub/big.bin")).unwrap(), big_bin());
    assert_eq!(fs::read(out.join("sub/c.txt")).unwrap(), b"gamma\n");
    assert!(!out.join("d.txt").exists(), "deleted before session 2");

    // An incremental of the same source finds its baseline in the converted index files: the
    // restored tree, put back where the source was, is unchanged.
    fs::rename(&out, root.join("src")).unwrap();
    let to = format!("disk:{}/vol", FIXTURE_ROOT);
    let src = format!("{FIXTURE_ROOT}/src");
    let r = env.coffer_json(&["backup", &src, "--to", &to, "--unit", "64K", "--incremental"]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["base"], 2, "{r}");
    assert_eq!(j["unchanged"]["files"], 3, "every file is unchanged: {r}");
    let _ = fs::remove_dir_all(root);
}
