//! Backup to the virtual tape library through the command line: two drives, cartridges small
//! enough to span, restore, single-file restore by LOCATE, scan, and the board's faults.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// Block size of the tape target (the default).
const BLOCK: u64 = 256 << 10;

/// A world with a board file describing a virtual library `vlib` (2 drives, 10 cartridges of
/// `capacity`, kept in `carts/` so that a second state directory sees the same library) and
/// `extra` lines (faults).
struct Tape {
    env: Env,
    board: PathBuf,
}

impl Tape {
    fn new(capacity: &str, extra: &str) -> Tape {
        let env = Env::new();
        let board = env.path("board.toml");
        let text = format!(
            "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 12\n\
             import_export = 1\ncartridges = 10\ncapacity = \"{capacity}\"\ndir = \"{}\"\n{extra}",
            env.path("carts").display()
        );
        fs::write(&board, text).unwrap();
        Tape { env, board }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(args);
        c.env("COFFER_BOARD", &self.board);
        c
    }

    fn json(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        run(self.command(&all))
    }

    /// [`Tape::json`] against the catalog in `state` (the same library).
    fn json_in(&self, state: &Path, args: &[&str]) -> Run {
        let mut c = self.command(&[&["--json"], args].concat());
        c.args(["--state", state.to_str().unwrap()]);
        run(c)
    }

    /// Cartridge files holding more than a label.
    fn written_cartridges(&self) -> Vec<String> {
        let dir = self.env.path("carts");
        let mut v: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                (name.ends_with(".tape") && e.metadata().ok()?.len() > 2 * BLOCK).then_some(name)
            })
            .collect();
        v.sort();
        v
    }
}

/// The project's own source tree plus incompressible files, so that two streams each fill
/// more than one 16 MiB cartridge.
fn source_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["src", "tests"] {
        copy_tree(&repo.join(dir), &src.join(dir));
    }
    for i in 0..5u64 {
        write_file(&src.join(format!("data/blob{i}.bin")), &random_bytes(70 + i, 9_000_000));
    }
    write_file(&src.join("data/middle.bin"), &random_bytes(99, 3_000_000));
    src
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_real_tree_spans_cartridges_on_two_drives_restores_identical_and_one_file_is_found_by_its_block() {
    let t = Tape::new("16M", "");
    let src = source_tree(&t.env);
    let before = snapshot(&src);
    let r = t.json(&["backup", src.to_str().unwrap()]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    assert_eq!(j["streams"].as_array().map(Vec::len), Some(2), "one stream per drive: {r}");
    let carts = t.written_cartridges();
    assert!(carts.len() >= 4, "two streams of ~25 MB on 16 MiB cartridges span at least 4: {carts:?}");

    // Whole restore, byte-identical.
    let dest = t.env.path("restored");
    let r = t.json(&["restore", "latest", "--to", dest.to_str().unwrap()]);
    r.expect_code(0);
    assert_same_tree(&before, &snapshot(&dest), Ignore { root_meta: true, ..Ignore::default() });

    // One file: a seek to its block, then only the blocks its records span.
    let objects = t.json(&["ls", "latest"]).json();
    let o =
        objects.as_array().unwrap().iter().find(|o| o["path"] == "data/middle.bin").expect("listed").clone();
    let (position, size) = (o["position"].as_u64().unwrap(), o["size"].as_u64().unwrap());
    let one = t.env.path("one");
    let r = t.json(&["restore", "latest", "--to", one.to_str().unwrap(), "data/middle.bin"]);
    r.expect_code(0);
    assert_eq!(
        fs::read(one.join("data/middle.bin")).unwrap(),
        fs::read(src.join("data/middle.bin")).unwrap()
    );
    let tape = &r.json()["tape"][0];
    let (seeks, read) = (tape["seeks"].as_u64().unwrap(), tape["blocks_read"].as_u64().unwrap());
    // Its records: metadata, data (stored as is: random bytes do not compress), end.
    let spanned = (position % BLOCK + size + 64 * 1024).div_ceil(BLOCK);
    eprintln!("single-file restore: {seeks} seeks, {read} blocks read, object spans ≤ {spanned} blocks");
    assert!(seeks <= 2, "a seek (and one more if the file continues on the next cartridge): {tape}");
    assert!(read <= spanned + 2, "read {read} blocks for an object spanning {spanned}: {tape}");
    assert!(read >= size / BLOCK, "{tape}");

    // The catalog rebuilt from the cartridges alone lists the same objects.
    let fresh = t.env.path("state2");
    t.json_in(&fresh, &["scan", "library:vlib"]).expect_code(0);
    let rebuilt = t.json_in(&fresh, &["ls", "latest"]).json();
    assert_eq!(rebuilt.as_array().map(Vec::len), objects.as_array().map(Vec::len));
}

#[test]
fn a_write_protected_cartridge_is_passed_over_and_never_written() {
    let t = Tape::new("64M", "[[library.fault]]\nat = \"write_protected\"\nbarcode = \"CFR0001L8\"\n");
    let src = t.env.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 2_000_000));
    let r = t.json(&["backup", src.to_str().unwrap(), "--to", "library:vlib,drives=1"]);
    r.expect_code(0);
    assert!(!t.written_cartridges().contains(&"CFR0001L8.tape".to_owned()), "{:?}", t.written_cartridges());
    t.json(&["verify", "latest", "--compare", src.to_str().unwrap()]).expect_code(0);
}

#[test]
fn a_drive_going_offline_mid_job_hands_its_work_to_the_other() {
    let t = Tape::new("64M", "[[library.fault]]\nat = \"drive_offline\"\ndrive = 0\nafter = \"6M\"\n");
    let src = t.env.path("src");
    for i in 0..6u64 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(10 + i, 4_000_000));
    }
    let before = snapshot(&src);
    let r = t.json(&["backup", src.to_str().unwrap()]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    let errors: Vec<&Value> =
        j["streams"].as_array().unwrap().iter().filter(|s| !s["error"].is_null()).collect();
    assert_eq!(errors.len(), 1, "drive 0's stream failed and was taken over: {r}");
    let dest = t.env.path("restored");
    t.json(&["restore", "latest", "--to", dest.to_str().unwrap()]).expect_code(0);
    assert_same_tree(&before, &snapshot(&dest), Ignore { root_meta: true, ..Ignore::default() });
    // The library knows the drive is gone.
    let inv = t.json(&["media", "inventory"]).json();
    assert!(inv["drives"][0]["offline"].is_string(), "{inv}");
}

#[test]
fn media_commands_move_load_label_and_refuse_what_they_must() {
    let t = Tape::new("64M", "");
    let inv = t.json(&["media", "inventory"]).json();
    let places = inv["places"].as_array().unwrap();
    assert_eq!(places.len(), 2 + 12 + 1, "{inv}");
    assert_eq!(places[2]["barcode"], "CFR0001L8");
    t.json(&["media", "move", "CFR0003L8", "mail 1"]).expect_code(0);
    let inv = t.json(&["media", "load", "CFR0002L8", "--drive", "1"]).json();
    assert_eq!(inv["drives"][1]["barcode"], "CFR0002L8", "{inv}");
    assert_eq!(inv["places"].as_array().unwrap().last().unwrap()["barcode"], "CFR0003L8", "{inv}");
    t.json(&["media", "label", "CFR0004L8", "--pool", "weekly"]).expect_code(0);
    let r = t.json(&["media", "label", "CFR0004L8"]);
    r.expect_code(2);
    assert!(r.all_output().contains("already labelled"), "{r}");
    let r = t.json(&["media", "move", "CFR0005L8", "slot 1"]);
    r.expect_code(2);
    assert!(r.all_output().contains("not empty"), "{r}");
    // A drive taken offline stays so for the next command, and backups go around it.
    t.json(&["media", "drive", "1", "offline"]).expect_code(0);
    let src = t.env.path("src");
    write_file(&src.join("a.bin"), &random_bytes(2, 100_000));
    let j = t.json(&["backup", src.to_str().unwrap()]).json();
    assert_eq!(j["target"], "library:vlib writer 0", "one writer: {j}");
}

#[test]
fn a_catalog_rebuilt_by_scan_restores_from_drives_that_cannot_locate() {
    // Drives that refuse LOCATE (as Linux tgt does) reach a part by spacing over filemarks:
    // the rebuilt catalog must know which tape file each part is.
    let t = Tape::new("16M", "positioning = false\n");
    let src = t.env.path("src");
    for i in 0..4u64 {
        write_file(&src.join(format!("data/blob{i}.bin")), &random_bytes(30 + i, 9_000_000));
    }
    // Split between the drives: each piece ends with its own digest.
    write_file(&src.join("huge.bin"), &random_bytes(40, 24_000_000));
    write_file(&src.join("small.txt"), b"small\n");
    let before = snapshot(&src);
    let r = t.json(&["backup", src.to_str().unwrap()]);
    r.expect_code(0);
    assert!(t.written_cartridges().len() >= 3, "spans: {:?}", t.written_cartridges());
    // Pieces by object and offset: the journal lists them as they became durable, a scan in
    // index order.
    let by_id = |v: Value| {
        let mut v = v.as_array().cloned().unwrap_or_default();
        v.sort_by_key(|o| (o["id"].as_u64(), o["segment_offset"].as_u64()));
        v
    };
    let journaled = by_id(t.json(&["ls", "latest"]).json());
    let pieces = journaled.iter().filter(|o| o["path"] == "huge.bin").count();
    assert!(pieces >= 2, "huge.bin is split: {journaled:?}");

    let fresh = t.env.path("state2");
    let in_fresh = |args: &[&str]| t.json_in(&fresh, args);
    let r = in_fresh(&["scan", "library:vlib"]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], 1, "{r}");
    assert_eq!(by_id(in_fresh(&["ls", "latest"]).json()), journaled);
    let dest = t.env.path("restored");
    let r = in_fresh(&["restore", "latest", "--to", dest.to_str().unwrap()]);
    r.expect_code(0);
    assert_same_tree(&before, &snapshot(&dest), Ignore { root_meta: true, ..Ignore::default() });
    // One file alone, spacing to its part.
    let one = t.env.path("one");
    in_fresh(&["restore", "latest", "--to", one.to_str().unwrap(), "data/blob3.bin"]).expect_code(0);
    assert_eq!(fs::read(one.join("data/blob3.bin")).unwrap(), fs::read(src.join("data/blob3.bin")).unwrap());
}
