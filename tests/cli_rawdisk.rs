//! A raw disk as the target: a block device (a loop device, when the machine lets the test
//! make one) or an image file given `,raw`. One medium: label, end-of-data marks, parts.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn image(path: &Path, len: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

fn tree(src: &Path, seed: u64) {
    write_file(&src.join("big.bin"), &random_bytes(seed, 3_000_000));
    write_file(&src.join("text/a.txt"), &text_bytes(seed, 200_000));
    write_file(&src.join("text/b.txt"), b"b\n");
}

/// Backs up two trees to `to`, restores and compares both, then rebuilds the catalog from the
/// disk alone and compares again.
fn two_sessions_round_trip(env: &Env, to: &str) {
    let (a, b) = (env.path("a"), env.path("b"));
    tree(&a, 1);
    tree(&b, 2);
    for src in [&a, &b] {
        let r = env.coffer_json(&["backup", src.to_str().unwrap(), "--to", to]);
        r.expect_code(0);
        assert_eq!(r.json()["target"], to, "{r}");
    }
    let check = |tag: &str| {
        for (session, src) in [("1", &a), ("2", &b)] {
            let dest = env.path(&format!("out-{tag}-{session}"));
            env.restore(session, &dest, &[]).expect_code(0);
            assert_same_tree(&snapshot(src), &snapshot(&dest), Ignore::default());
            env.coffer_json(&["verify", session, "--compare", src.to_str().unwrap()]).expect_code(0);
        }
    };
    check("journal");
    let objects = [env.ls_session("1"), env.ls_session("2")];
    fs::remove_dir_all(&env.state).unwrap();
    let r = env.coffer_json(&["scan", to]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], 2, "{r}");
    assert_eq!([env.ls_session("1"), env.ls_session("2")], objects);
    check("scan");
    // The rebuilt catalog appends after what is on the disk.
    let r = env.coffer_json(&["backup", a.to_str().unwrap(), "--to", to]);
    r.expect_code(0);
    env.coffer_json(&["verify", "1"]).expect_code(0);
    env.coffer_json(&["verify", "3", "--compare", a.to_str().unwrap()]).expect_code(0);
}

#[test]
fn an_image_file_as_a_raw_disk_holds_sessions_and_scans() {
    let env = Env::new();
    let img = env.path("disk.img");
    image(&img, 64 << 20);
    two_sessions_round_trip(&env, &format!("disk:{},raw", img.display()));
}

#[test]
fn a_full_raw_disk_fails_the_backup_and_keeps_the_earlier_session() {
    let env = Env::new();
    let img = env.path("disk.img");
    image(&img, 5 << 20);
    let to = format!("disk:{},raw", img.display());
    let small = env.path("small");
    write_file(&small.join("s.bin"), &random_bytes(5, 1_000_000));
    let r = env.coffer_json(&["backup", small.to_str().unwrap(), "--to", &to]);
    r.expect_code(0);
    let big = env.path("big");
    write_file(&big.join("b.bin"), &random_bytes(6, 6_000_000));
    let r = env.coffer_json(&["backup", big.to_str().unwrap(), "--to", &to]);
    r.expect_code(2);
    assert!(r.json()["error"].as_str().unwrap().contains("full"), "{r}");
    env.coffer_json(&["verify", "1", "--compare", small.to_str().unwrap()]).expect_code(0);
}

#[test]
fn a_disk_holding_other_data_is_never_written() {
    let env = Env::new();
    let img = env.path("disk.img");
    image(&img, 8 << 20);
    // Something that is not coffer's at the start, as a file system's superblock would be.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"\x53\xef not coffer", 1080).unwrap();
    let before = fs::read(&img).unwrap();
    let src = env.path("src");
    write_file(&src.join("x"), b"x\n");
    let r =
        env.coffer_json(&["backup", src.to_str().unwrap(), "--to", &format!("disk:{},raw", img.display())]);
    r.expect_code(2);
    assert!(r.all_output().contains("not a coffer disk"), "{r}");
    assert!(fs::read(&img).unwrap() == before, "the foreign disk was changed");
}

/// A real block device: a loop device over an image file. Needs root and loop support; without
/// them it is skipped, and fails under CI (`skip_unless_ci`).
#[test]
fn a_loop_device_is_a_raw_disk() {
    let env = Env::new();
    let img = env.path("loop.img");
    image(&img, 64 << 20);
    let out = Command::new("losetup").args(["-f", "--show"]).arg(&img).output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap().trim().to_owned(),
        other => {
            skip_unless_ci(&format!(
                "cannot attach a loop device here (needs root and loop support): {other:?}"
            ));
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    two_sessions_round_trip(&env, &format!("disk:{dev}"));
}
