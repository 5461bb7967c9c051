//! Incremental backups end to end through the real binary: a full backup, changes to the
//! source, `backup --incremental` storing only what changed, and restores of each session
//! giving back the source exactly as it was when that session ran (deleted files and changed
//! modes included).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Regular files of the tree [`make_tree`] builds (the second name of the hard-linked file is a
/// hard link, not a file).
const TREE_FILES: u64 = 8;

/// A tree of small and large files (the unit is 64K: files over 16K are not packed), nested
/// directories, a symlink and a hard-linked file, every mtime set well in the past.
fn make_tree(src: &Path) {
    write_file(&src.join("top.txt"), &text_bytes(1, 3000));
    write_file(&src.join("big.bin"), &random_bytes(2, 300_000));
    write_file(&src.join("sub/a.txt"), &text_bytes(3, 20_000));
    write_file(&src.join("sub/b.bin"), &random_bytes(4, 900));
    write_file(&src.join("sub/deep/c.txt"), b"deep\n");
    write_file(&src.join("sub/deep/large.bin"), &random_bytes(5, 150_000));
    write_file(&src.join("other/x"), &random_bytes(6, 100));
    write_file(&src.join("links/first"), b"two names, one file\n");
    fs::hard_link(src.join("links/first"), src.join("links/second")).unwrap();
    std::os::unix::fs::symlink("sub/a.txt", src.join("to-a")).unwrap();
    age(src);
}

/// Sets every mtime in the tree to a time in the past that depends on the path alone, so that
/// an unchanged file keeps its time however the tree around it changed; children before
/// parents (a directory's mtime moves when its entries change). Past times keep a file from
/// looking as if it changed in the second its backup started.
fn age(src: &Path) {
    let mut all = walk_paths(src);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &all {
        let h = blake3::hash(p.strip_prefix(src).unwrap().as_os_str().as_encoded_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
        set_mtime(p, 1_650_000_000 + (n % 10_000_000) as i64, (n % 1_000_000_000) as i64);
    }
}

fn backup(env: &Env, src: &Path, to: &[String], extra: &[&str]) -> Value {
    let mut args = vec!["backup", src.to_str().unwrap()];
    for t in to {
        args.extend(["--to", t.as_str()]);
    }
    args.extend(["--unit", "64K"]);
    args.extend_from_slice(extra);
    let r = env.coffer_json(&args);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    assert!(j["problems"].as_array().is_some_and(Vec::is_empty), "{r}");
    j
}

/// Paths of the regular files a session stored, as `ls SESSION` lists them.
fn stored_files(env: &Env, session: &Value) -> BTreeSet<String> {
    env.ls_session(&session.to_string())
        .iter()
        .filter(|o| o["kind"] == "file")
        .map(|o| o["path"].as_str().unwrap().to_owned())
        .collect()
}

/// Restores `session` into a fresh directory and asserts it is the tree `want`.
fn assert_restores(env: &Env, session: &Value, dest: &str, want: &Snapshot) -> Value {
    let dest = env.path(dest);
    let r = env.restore(&session.to_string(), &dest, &[]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["ok"], true, "{r}");
    let ignore = Ignore { owners: !is_root(), ..Ignore::default() };
    assert_same_tree(want, &snapshot(&dest), ignore);
    j
}

/// A test environment, the tree [`make_tree`] builds in it, and its disk target.
fn env_and_tree() -> (Env, PathBuf, [String; 1]) {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let to = [env.to()];
    (env, src, to)
}

/// A full backup of `src`; then a file deleted beside files that stay and a file whose mode
/// alone changes, and an incremental backup. Returns the full one, the tree after the change
/// and the incremental one.
fn full_then_delete_and_chmod(env: &Env, src: &Path, to: &[String]) -> (Value, Snapshot, Value) {
    let f = backup(env, src, to, &[]);
    fs::remove_file(src.join("sub/b.bin")).unwrap();
    chmod(&src.join("sub/a.txt"), 0o600);
    age(src);
    let state = snapshot(src);
    let i = backup(env, src, to, &["--incremental"]);
    (f, state, i)
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

#[test]
fn incremental_stores_only_new_and_changed_files_and_restores_the_source() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let before = snapshot(&src);
    let to = [env.to()];

    let f = backup(&env, &src, &to, &[]);
    assert_eq!((f["kind"].as_str(), f["base"].as_u64()), (Some("full"), None), "{f}");
    assert_eq!(f["unchanged"]["files"], 0, "{f}");

    // Change one file (a large one, other size), add one, leave the rest.
    write_file(&src.join("sub/deep/large.bin"), &random_bytes(50, 160_000));
    write_file(&src.join("sub/new.txt"), &text_bytes(51, 5000));
    age(&src);
    let after = snapshot(&src);

    let i = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i["kind"], "incremental", "{i}");
    assert_eq!(i["base"], f["session"], "{i}");
    let unchanged = TREE_FILES - 1;
    let unchanged_bytes: u64 =
        ["top.txt", "big.bin", "sub/a.txt", "sub/b.bin", "sub/deep/c.txt", "other/x", "links/first"]
            .iter()
            .map(|p| fs::metadata(src.join(p)).unwrap().len())
            .sum();
    assert_eq!(i["unchanged"]["files"], unchanged, "{i}");
    assert_eq!(i["unchanged"]["bytes"], unchanged_bytes, "{i}");
    // Every object but the unchanged files: directories, the link, the hard link, two files.
    assert_eq!(i["objects"], after.nodes.len() as u64 - unchanged, "{i}");
    assert_eq!(stored_files(&env, &i["session"]), set(&["sub/deep/large.bin", "sub/new.txt"]));
    assert_eq!(stored_files(&env, &f["session"]).len() as u64, TREE_FILES);

    let sessions = env.ls_sessions();
    let last = sessions.last().unwrap();
    assert_eq!((&last["kind"], &last["base"]), (&Value::from("incremental"), &f["session"]));

    // The incremental session restores the source as it is now, from both sessions; the full
    // one still restores it as it was.
    let j = assert_restores(&env, &i["session"], "restored-incr", &after);
    assert_eq!(j["sessions"], serde_json::json!([f["session"], i["session"]]), "{j}");
    assert_eq!(j["objects"], after.nodes.len() as u64, "{j}");
    assert_restores(&env, &f["session"], "restored-full", &before);

    // One unchanged file of the incremental session: it comes from the full one.
    let one = env.path("one");
    let r = env.restore(&i["session"].to_string(), &one, &["sub/a.txt"]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], 1, "{r}");
    assert_eq!(fs::read(one.join("sub/a.txt")).unwrap(), fs::read(src.join("sub/a.txt")).unwrap());

    // Verify checks the incremental session's own objects.
    let v = env.coffer_json(&["verify", &i["session"].to_string()]);
    v.expect_code(0);
    assert_eq!(v.json()["objects"], i["objects"], "{v}");

    // Nothing changed since: the next incremental stores no file at all.
    let again = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(again["base"], i["session"], "{again}");
    assert_eq!(again["unchanged"]["files"], TREE_FILES + 1, "{again}");
    assert!(stored_files(&env, &again["session"]).is_empty());
    assert_restores(&env, &again["session"], "restored-again", &after);
}

#[test]
fn a_chain_of_incrementals_restores_each_state_and_drops_removed_directories() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let to = [env.to()];
    let f = backup(&env, &src, &to, &[]);

    write_file(&src.join("top.txt"), &text_bytes(60, 3100));
    age(&src);
    let state1 = snapshot(&src);
    let i1 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i1["base"], f["session"], "{i1}");

    // The second builds on the first: a file changed in the first and not since comes from it.
    write_file(&src.join("sub/b.bin"), &random_bytes(61, 1200));
    fs::remove_dir_all(src.join("other")).unwrap();
    fs::remove_file(src.join("to-a")).unwrap();
    std::os::unix::fs::symlink("big.bin", src.join("to-a")).unwrap();
    age(&src);
    let state2 = snapshot(&src);
    let i2 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i2["base"], i1["session"], "{i2}");
    assert_eq!(stored_files(&env, &i2["session"]), set(&["sub/b.bin"]));

    let j = assert_restores(&env, &i2["session"], "at-2", &state2);
    assert_eq!(j["sessions"], serde_json::json!([f["session"], i1["session"], i2["session"]]), "{j}");
    assert!(!env.path("at-2/other").exists());
    assert_restores(&env, &i1["session"], "at-1", &state1);
}

#[test]
fn a_deleted_file_stays_deleted_and_a_changed_mode_is_stored() {
    let (env, src, to) = env_and_tree();
    let (f, state1, i1) = full_then_delete_and_chmod(&env, &src, &to);
    assert_eq!(i1["base"], f["session"], "{i1}");
    assert_eq!(stored_files(&env, &i1["session"]), set(&["sub/a.txt"]), "the chmod stores the file again");
    assert_eq!(i1["unchanged"]["files"], TREE_FILES - 2, "{i1}");
    assert_restores(&env, &i1["session"], "at-1", &state1);
    assert!(!env.path("at-1/sub/b.bin").exists(), "the deleted file came back");

    // Nothing changes: the next one keeps the list, and still restores without the file.
    let i2 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i2["base"], i1["session"], "{i2}");
    assert!(stored_files(&env, &i2["session"]).is_empty());
    assert_restores(&env, &i2["session"], "at-2", &state1);
    // The file made again with its old size and time is new to the chain: it is stored.
    write_file(&src.join("sub/b.bin"), &random_bytes(4, 900));
    age(&src);
    let i3 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(stored_files(&env, &i3["session"]), set(&["sub/b.bin"]), "{i3}");
    assert_restores(&env, &i3["session"], "at-3", &snapshot(&src));
}

#[test]
fn scan_rebuilds_an_incremental_chain_that_restores_and_continues() {
    let (env, src, to) = env_and_tree();
    let (f, state1, i1) = full_then_delete_and_chmod(&env, &src, &to);
    write_file(&src.join("other/y"), b"new\n");
    age(&src);
    let state2 = snapshot(&src);
    let i2 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!((i1["base"].clone(), i2["base"].clone()), (f["session"].clone(), i1["session"].clone()));
    let journaled = env.ls_sessions();
    let objects: Vec<Vec<Value>> =
        journaled.iter().map(|s| env.ls_session(&s["session"].to_string())).collect();

    // The catalog is lost; the media alone bring the chain back.
    fs::remove_dir_all(&env.state).unwrap();
    let r = env.coffer_json(&["scan", &to[0]]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], 3, "{r}");
    let scanned = env.ls_sessions();
    for (s, old) in scanned.iter().zip(&journaled) {
        for key in ["session", "kind", "base", "status", "objects"] {
            assert_eq!(s[key], old[key], "{key}: journaled {old}, scanned {s}");
        }
    }
    let rescanned: Vec<Vec<Value>> =
        scanned.iter().map(|s| env.ls_session(&s["session"].to_string())).collect();
    assert_eq!(rescanned, objects);

    // Each incremental restores whole; the file deleted before the first stays deleted (its
    // directory is still there: only the list of kept files tells).
    assert_restores(&env, &i1["session"], "at-1", &state1);
    assert!(!env.path("at-1/sub/b.bin").exists(), "the deleted file came back after the scan");
    assert_restores(&env, &i2["session"], "at-2", &state2);

    // The next incremental builds on the rebuilt chain and finds nothing changed: sizes,
    // times, modes and owners all came back from the media.
    let i3 = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i3["base"], i2["session"], "{i3}");
    assert!(stored_files(&env, &i3["session"]).is_empty(), "{i3}");
    assert_eq!(i3["unchanged"]["files"], TREE_FILES, "{i3}");
    assert_restores(&env, &i3["session"], "at-3", &state2);
}

#[test]
fn scan_waits_for_the_base_of_an_incremental_on_other_media() {
    let (env, src, full_to) = env_and_tree();
    let inc_to = [format!("disk:{}", env.path("second").display())];
    let f = backup(&env, &src, &full_to, &[]);
    write_file(&src.join("other/y"), b"new\n");
    age(&src);
    let state = snapshot(&src);
    let i = backup(&env, &src, &inc_to, &["--incremental"]);
    assert_eq!(i["base"], f["session"], "{i}");

    // The incremental's media alone: it is not merged, and the report says what to scan.
    fs::remove_dir_all(&env.state).unwrap();
    let r = env.coffer_json(&["scan", &inc_to[0]]);
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j["sessions_added"], 0, "{r}");
    let problems = strings(&j["problems"]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("incremental on session {}", f["session"]))
                && p.contains("not merged")),
        "{r}"
    );
    assert!(env.ls_sessions().is_empty());

    // The base's media, then the incremental's again: the chain is whole and restores.
    env.coffer_json(&["scan", &full_to[0]]).expect_code(0);
    let r = env.coffer_json(&["scan", &inc_to[0]]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], 1, "{r}");
    assert_restores(&env, &i["session"], "restored", &state);
}

#[test]
fn incremental_without_a_baseline_runs_a_full_backup_and_says_so() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let to = [env.to()];
    let first = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(first["kind"], "full", "{first}");
    assert!(first["full_because"].as_str().is_some_and(|w| w.contains("no complete backup")), "{first}");
    assert_eq!(stored_files(&env, &first["session"]).len() as u64, TREE_FILES);

    // The same root named another way is the same source; another root is not.
    let other_name = env.path("src/../src");
    let second = backup(&env, &other_name, &to, &["--incremental"]);
    assert_eq!(second["base"], first["session"], "{second}");
    let sub = backup(&env, &src.join("sub"), &to, &["--incremental"]);
    assert_eq!(sub["kind"], "full", "{sub}");

    // For people too.
    let r = env.coffer(&["backup", src.to_str().unwrap(), "--to", &to[0], "--incremental"]);
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("incremental on session {}", second["session"])), "{r}");
    let r = env.coffer(&["backup", env.path("src/other").to_str().unwrap(), "--to", &to[0], "--incremental"]);
    r.expect_code(0);
    assert!(r.stdout.contains("full backup: no complete backup of these sources"), "{r}");
}

#[test]
fn incremental_over_two_targets_stores_only_the_changes() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let to: Vec<String> = (0..2).map(|i| format!("disk:{}", env.path(&format!("t{i}")).display())).collect();
    let f = backup(&env, &src, &to, &[]);
    write_file(&src.join("big.bin"), &random_bytes(70, 310_000));
    age(&src);
    let after = snapshot(&src);
    let i = backup(&env, &src, &to, &["--incremental"]);
    assert_eq!(i["base"], f["session"], "{i}");
    assert_eq!(i["unchanged"]["files"], TREE_FILES - 1, "{i}");
    assert_eq!(stored_files(&env, &i["session"]), set(&["big.bin"]));
    assert_restores(&env, &i["session"], "restored", &after);
}

#[test]
fn a_volume_cannot_be_backed_up_incrementally() {
    let env = Env::new();
    let img = env.path("disk.img");
    write_file(&img, &random_bytes(1, 256 << 10));
    let r = env.coffer_json(&[
        "backup",
        img.to_str().unwrap(),
        "--to",
        &env.to(),
        "--mode",
        "volume",
        "--incremental",
    ]);
    r.expect_code(2);
    assert!(r.all_output().contains("cannot be incremental"), "{r}");
    assert!(env.volume_files().is_empty(), "nothing may be written");
}
