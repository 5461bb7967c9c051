//! The main jobs end to end through the real binary: back up real trees, restore them (whole
//! and in part), list them, rebuild the catalog from the media alone, and back up a raw volume.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;

/// Builds the full tree, or says why this test cannot run here.
fn full_tree_or_skip(src: &Path) -> Option<FullTree> {
    if !is_root() {
        skip_unless_ci("the full tree needs root (chown, mknod)");
        return None;
    }
    let t = build_full_tree(src);
    if !t.has_chardev {
        eprintln!("note: mknod of a char device was refused here: the tree has none");
    }
    Some(t)
}

#[test]
fn round_trip_of_every_kind_keeps_every_attribute() {
    let env = Env::new();
    let src = env.path("src");
    let Some(_) = full_tree_or_skip(&src) else {
        return;
    };
    let before = snapshot(&src);
    // The source really is sparse, else the check below proves nothing.
    assert!(before.allocated[Path::new("sparse.img")] < 1 << 20);

    let summary = env.backup_ok(&src, &["--unit", "64K"]);
    assert_eq!(summary["objects"], before.nodes.len() as u64, "{summary}");
    assert!(summary["problems"].as_array().is_some_and(Vec::is_empty), "{summary}");

    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["ok"], true, "{r}");
    assert_eq!(j["objects"], before.nodes.len() as u64, "{r}");
    assert_eq!(j["ownership_failures"], 0, "{r}");

    let after = snapshot(&dest);
    assert_same_tree(&before, &after, Ignore::default());
    let sparse = after.allocated[Path::new("sparse.img")];
    assert!(sparse < 1 << 20, "the restored sparse file has {sparse} bytes allocated: its holes were filled");
    // The large hard-link pair: one inode, two names.
    let a = fs::metadata(dest.join("links/large-a")).unwrap();
    let b = fs::metadata(dest.join("links2/large-b")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));

    let src_s = src.to_str().unwrap();
    env.coffer_json(&["verify", "latest", "--compare", src_s]).expect_code(0);
    // The source is unchanged by the backup.
    assert_same_tree(&before, &snapshot(&src), Ignore::default());
}

#[test]
fn verify_compare_finds_a_changed_source_file() {
    // The other side of `verify --compare`: it must be able to say no.
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a.txt"), &text_bytes(1, 100_000));
    write_file(&src.join("b/c.bin"), &random_bytes(2, 3000));
    env.backup_ok(&src, &["--unit", "64K"]);
    let src_s = src.to_str().unwrap();
    env.coffer_json(&["verify", "latest", "--compare", src_s]).expect_code(0);

    // Same size, one byte different, mtime put back.
    let path = src.join("a.txt");
    let md = fs::metadata(&path).unwrap();
    flip_byte(&path, 70_000);
    set_mtime(&path, md.mtime(), md.mtime_nsec());
    let r = env.coffer_json(&["verify", "latest", "--compare", src_s]);
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j["ok"], false, "{r}");
    let diffs = strings(&j["differences"]);
    assert!(diffs.iter().any(|d| d.contains("a.txt")), "{r}");
    assert!(!diffs.iter().any(|d| d.contains("c.bin")), "{r}");
}

/// A tree for the selective restores: `sub/dir/file` among siblings and cousins.
fn selective_tree(src: &Path) {
    write_file(&src.join("top.txt"), b"top\n");
    write_file(&src.join("sub/dir/file"), b"the one file\n");
    write_file(&src.join("sub/dir/sibling"), &text_bytes(1, 50_000));
    write_file(&src.join("sub/dir/big"), &random_bytes(2, 300_000));
    write_file(&src.join("sub/other/x"), &random_bytes(3, 100));
    write_file(&src.join("subway/not-sub"), b"a prefix of the name, not below it\n");
    write_file(&src.join("zzz/big"), &random_bytes(4, 200_000));
    std::os::unix::fs::symlink("dir/file", src.join("sub/link")).unwrap();
    chmod(&src.join("sub/dir"), 0o750);
    chmod(&src.join("sub"), 0o711);
    for (i, p) in walk_paths(src).iter().rev().enumerate() {
        set_mtime(p, 1_650_000_000 + i as i64, 500 + i as i64);
    }
}

#[test]
fn selective_restore_restores_only_what_was_asked() {
    let env = Env::new();
    let src = env.path("src");
    selective_tree(&src);
    env.backup_ok(&src, &["--unit", "64K"]);
    let source = snapshot(&src);

    // One file: it and the directories it needs, nothing else.
    let d2 = env.path("d2");
    let r = env.restore("latest", &d2, &["sub/dir/file"]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], 1, "{r}");
    let got: Vec<PathBuf> = snapshot(&d2).nodes.into_keys().collect();
    let want: Vec<PathBuf> = ["", "sub", "sub/dir", "sub/dir/file"].iter().map(PathBuf::from).collect();
    assert_eq!(got, want);
    assert_eq!(fs::read(d2.join("sub/dir/file")).unwrap(), b"the one file\n");
    let f = snapshot(&d2).nodes[Path::new("sub/dir/file")].clone();
    assert_eq!(f, source.nodes[Path::new("sub/dir/file")]);

    // A large file alone (its records, not a pack).
    let d2b = env.path("d2b");
    env.restore("latest", &d2b, &["sub/dir/big/"]).expect_code(0);
    assert_eq!(hash_file(&d2b.join("sub/dir/big")), source.nodes[Path::new("sub/dir/big")].content.unwrap());
    assert!(!d2b.join("sub/dir/file").exists());

    // A subtree: exactly the source's subtree, with every attribute; not `subway`.
    let d3 = env.path("d3");
    let r = env.restore("latest", &d3, &["sub"]);
    r.expect_code(0);
    let top: Vec<String> =
        fs::read_dir(&d3).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(top, ["sub"]);
    assert_same_tree(&snapshot(&src.join("sub")), &snapshot(&d3.join("sub")), Ignore::default());

    // A path that matches nothing: an error naming it, and nothing restored.
    let d4 = env.path("d4");
    let r = env.restore("latest", &d4, &["sub/nope"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.all_output().contains("sub/nope"), "{r}");
    assert!(!d4.join("sub").exists(), "a restore that matched nothing created files");
}

#[test]
fn ls_lists_the_session_and_every_object() {
    let env = Env::new();
    let src = env.path("src");
    let Some(_) = full_tree_or_skip(&src) else {
        return;
    };
    let tree = snapshot(&src);
    env.backup_ok(&src, &[]);

    // People: a header and a line for the session, naming its source.
    let r = env.coffer(&["ls"]);
    r.expect_code(0);
    let line = r
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no line for session 1:\n{r}"));
    assert!(line.contains("complete"), "{line}");
    assert!(line.contains(src.to_str().unwrap()), "{line}");

    let sessions = env.ls_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["session"], 1);
    assert_eq!(sessions[0]["status"], "complete");
    assert_eq!(sessions[0]["objects"], tree.nodes.len() as u64);

    let objects = env.ls_session("latest");
    assert_eq!(objects, env.ls_session("1"));
    assert_eq!(objects.len(), tree.nodes.len());
    let kinds = ls_kinds(&objects);
    let mut want: BTreeMap<String, String> =
        tree.nodes.iter().map(|(p, n)| (ls_path(p), n.kind.ls_name().to_owned())).collect();
    // The second name of each hard-link group is stored as a hard link to the first.
    for g in &tree.link_groups {
        for p in &g[1..] {
            want.insert(ls_path(p), "hardlink".into());
        }
    }
    assert_eq!(kinds, want);
    for o in &objects {
        let path = o["path"].as_str().unwrap();
        let node = &tree.nodes[Path::new(if path == "." { "" } else { path })];
        if o["kind"] == "file" {
            assert_eq!(o["size"], node.size, "{o}");
            assert_eq!(o["mtime"], node.mtime, "{o}");
        }
    }
    let ids: std::collections::BTreeSet<u64> = objects.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), objects.len(), "object ids are not unique");

    // People again: one line per object.
    let r = env.coffer(&["ls", "latest"]);
    r.expect_code(0);
    assert_eq!(r.stdout.lines().count(), tree.nodes.len(), "{r}");

    // No such session.
    let r = env.coffer_json(&["ls", "7"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains('7'), "{r}");
}

/// Two trees of different shapes for the scan test.
fn two_trees(env: &Env) -> (PathBuf, PathBuf) {
    let a = env.path("a");
    write_file(&a.join("one.txt"), &text_bytes(1, 20_000));
    write_file(&a.join("d/two.bin"), &random_bytes(2, 5_000_000));
    write_file(&a.join("d/e/three"), b"3\n");
    std::os::unix::fs::symlink("d/e/three", a.join("link")).unwrap();
    let b = env.path("b");
    write_file(&b.join("x/y/z.txt"), &text_bytes(3, 9_000_000));
    write_file(&b.join("empty"), b"");
    fs::hard_link(b.join("empty"), b.join("empty-too")).unwrap();
    for root in [&a, &b] {
        for (i, p) in walk_paths(root).iter().rev().enumerate() {
            set_mtime(p, 1_700_000_000 + i as i64, 999_999_999 - i as i64);
        }
    }
    (a, b)
}

#[test]
fn scan_rebuilds_the_catalog_from_the_media_alone() {
    let env = Env::new();
    let (a, b) = two_trees(&env);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    env.backup_ok(&a, &[]);
    env.backup_ok(&b, &["--unit", "1M"]);
    let journaled = env.ls_sessions();
    let journaled_objects = [env.ls_session("1"), env.ls_session("2")];

    fs::remove_dir_all(&env.state).unwrap();
    let to = env.to();
    let r = env.coffer_json(&["scan", &to]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["sessions_added"], 2, "{r}");
    assert_eq!(j["sessions_known"], 0, "{r}");
    assert_eq!(j["objects_added"], (sa.nodes.len() + sb.nodes.len()) as u64, "{r}");
    assert_eq!(j["media"], 1, "{r}");
    assert!(strings(&j["problems"]).is_empty(), "{r}");

    let sessions = env.ls_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for (s, (tree, old)) in sessions.iter().zip([(&sa, &journaled[0]), (&sb, &journaled[1])]) {
        assert_eq!(s["session"], old["session"]);
        assert_eq!(s["objects"], tree.nodes.len() as u64, "{s}");
        assert_eq!(s["status"], "complete", "{s}");
        assert_eq!(s["source"], old["source"], "{s}");
        assert_eq!(s["started"], old["started"], "{s}");
        assert_eq!(s["bytes_in"], old["bytes_in"], "{s}");
    }
    // Every object as the journal had it: path, kind, size, mtime, place.
    assert_eq!([env.ls_session("1"), env.ls_session("2")], journaled_objects);

    for (session, src, tree) in [("1", &a, &sa), ("2", &b, &sb)] {
        let dest = env.path(&format!("restored-{session}"));
        let r = env.restore(session, &dest, &[]);
        r.expect_code(0);
        assert_same_tree(tree, &snapshot(&dest), Ignore::default());
        let src_s = src.to_str().unwrap();
        env.coffer_json(&["verify", session, "--compare", src_s]).expect_code(0);
    }

    // Scanning again adds nothing.
    let r = env.coffer_json(&["scan", &to]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["sessions_added"], 0, "{r}");
    assert_eq!(j["sessions_known"], 2, "{r}");
    assert_eq!(j["objects_added"], 0, "{r}");
    assert_eq!(env.ls_sessions().len(), 2);

    // And the rebuilt catalog takes new sessions.
    let s = env.backup_ok(&a, &[]);
    assert_eq!(s["session"], 3, "{s}");
}

#[test]

fn scan_rebuilds_the_session_totals_the_journal_had() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a"), &random_bytes(1, 300_000));
    write_file(&src.join("b"), b"b\n");
    env.backup_ok(&src, &[]);
    let journaled = env.ls_sessions();
    fs::remove_dir_all(&env.state).unwrap();
    env.coffer_json(&["scan", &env.to()]).expect_code(0);
    let scanned = env.ls_sessions();
    for key in ["objects", "bytes_in", "bytes_stored", "status"] {
        assert_eq!(scanned[0][key], journaled[0][key], "{key}: journaled {journaled:?}, scanned {scanned:?}");
    }
}

/// A 32 MiB image with real content at offsets (pieces of system libraries, else random
/// bytes) and holes between them.
fn make_image(path: &Path) -> Vec<u8> {
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/bin"] {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if pieces.len() == 5 {
                break;
            }
            let Ok(md) = fs::metadata(&f) else { continue };
            if md.is_file() && md.len() > 300_000 {
                let Ok(bytes) = fs::read(&f) else { continue };
                pieces.push(bytes[..bytes.len().min(1_500_000)].to_vec());
            }
        }
    }
    while pieces.len() < 5 {
        pieces.push(random_bytes(pieces.len() as u64, 1_000_000));
    }
    let img = fs::File::create(path).unwrap();
    img.set_len(32 << 20).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        // Offsets off block boundaries too.
        let at = i as u64 * (6 << 20) + 12_345 * i as u64;
        img.write_all_at(piece, at).unwrap();
    }
    img.write_all_at(b"the last bytes of the image", (32 << 20) - 27).unwrap();
    drop(img);
    fs::read(path).unwrap()
}

#[test]
fn volume_mode_backs_up_and_verifies_an_image_file() {
    let env = Env::new();
    let img = env.path("disk.img");
    let bytes = make_image(&img);
    let img_s = img.to_str().unwrap();
    let s = env.backup_ok(&img, &["--mode", "volume"]);
    assert_eq!(s["objects"], 1, "{s}");

    let objects = env.ls_session("latest");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["kind"], "volume");
    assert_eq!(objects[0]["size"], bytes.len() as u64);
    assert_eq!(objects[0]["path"], img_s);

    let r = env.coffer_json(&["verify", "latest"]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], 1, "{r}");

    // Verify reads the data back: damage inside the image's data is found.
    let vol = env.only_volume();
    let len = fs::metadata(&vol).unwrap().len();
    flip_byte(&vol, len / 2);
    let r = env.coffer_json(&["verify", "latest"]);
    r.expect_code(1);
    assert!(strings(&r.json()["failures"]).iter().any(|f| f.contains(img_s)), "{r}");
}

#[test]
fn volume_mode_restore_writes_the_image_under_the_restore_root() {
    let env = Env::new();
    let img = env.path("disk.img");
    let bytes = make_image(&img);
    env.backup_ok(&img, &["--mode", "volume"]);
    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    r.expect_code(0);
    let landed = dest.join(img.strip_prefix("/").unwrap());
    let got = fs::read(&landed).unwrap_or_else(|e| panic!("{}: {e}\n{r}", landed.display()));
    assert!(got == bytes, "the restored image differs from the original");
}
