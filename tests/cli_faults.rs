//! Faults through the real binary: damaged and truncated media, a full target, missing sources,
//! media and targets, a damaged journal, unreadable source files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Eight compressible files of about 260 kB: with a 64K unit each is several data records.
fn compressible_tree(src: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..8u64 {
        let name = format!("f{i}.txt");
        let bytes = text_bytes(100 + i, 260_000 + i as usize * 1000);
        write_file(&src.join(&name), &bytes);
        files.push((name, bytes));
    }
    files
}

/// The large objects of a session by position, with where each one's records end (the next
/// object's start): `(path, start, end)` as offsets from the part's start.
fn object_spans(objects: &[serde_json::Value]) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64)> = objects
        .iter()
        .filter(|o| o["kind"] == "file")
        .map(|o| (o["path"].as_str().unwrap().to_owned(), o["position"].as_u64().unwrap()))
        .collect();
    v.sort_by_key(|x| x.1);
    let mut positions: Vec<u64> = objects.iter().map(|o| o["position"].as_u64().unwrap()).collect();
    positions.sort();
    positions.dedup();
    v.iter()
        .map(|(p, start)| {
            let end = positions.iter().copied().find(|x| x > start).expect("another record follows");
            (p.clone(), *start, end)
        })
        .collect()
}

/// Where the first part starts: after the 4096-byte label block.
const PART_START: u64 = 4096;

#[test]
fn a_damaged_byte_on_the_medium_is_found_and_only_its_file_is_lost() {
    let env = Env::new();
    let src = env.path("src");
    let files = compressible_tree(&src);
    let s = env.backup_ok(&src, &["--unit", "64K"]);
    assert!(s["ratio"].as_f64().unwrap() > 2.0, "the files should compress: {s}");
    let vol = env.only_volume();
    let barcode = barcode(&vol);

    // In the middle of the data area: the middle byte of the middle file's records.
    let spans = object_spans(&env.ls_session("latest"));
    assert_eq!(spans.len(), files.len());
    let (victim, start, end) = spans[spans.len() / 2].clone();
    let flipped = PART_START + (start + end) / 2;
    assert!(flipped > 4 * 4096 && flipped < fs::metadata(&vol).unwrap().len() - 4096);
    flip_byte(&vol, flipped);

    let r = env.coffer_json(&["verify", "latest"]);
    r.expect_code(1);
    let j = r.json();
    assert_eq!(j["ok"], false, "{r}");
    let failures = strings(&j["failures"]);
    assert!(!failures.is_empty(), "{r}");
    // Every failure is about the damaged file, and one says where the damage is: on which
    // medium, at which byte (the start of the record holding the flipped byte).
    for f in &failures {
        assert!(f.contains(&victim), "a failure not about {victim}: {f}");
    }
    let located = failures.iter().any(|f| {
        f.contains(&barcode)
            && byte_offsets(f).iter().any(|&at| at <= flipped && flipped - at < (64 << 10) + 4096)
    });
    assert!(located, "no failure names {barcode} and a byte offset near {flipped}: {r}");
    assert_eq!(j["objects"], files.len() as u64, "{r}");

    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(r.json()["ok"], false, "{r}");
    for (name, bytes) in &files {
        if *name == victim {
            continue;
        }
        let got = fs::read(dest.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{r}"));
        assert!(got == *bytes, "{name} was restored with other contents");
    }
}

#[test]
fn a_truncated_medium_is_reported_and_the_journal_stays_intact() {
    let env = Env::new();
    let src = env.path("src");
    let files = compressible_tree(&src);
    env.backup_ok(&src, &["--unit", "64K"]);
    let vol = env.only_volume();
    let barcode = barcode(&vol);
    let len = fs::metadata(&vol).unwrap().len();
    fs::OpenOptions::new().write(true).open(&vol).unwrap().set_len(len / 2).unwrap();

    let r = env.coffer_json(&["verify", "latest"]);
    assert_ne!(r.code, 0, "{r}");
    let j = r.json();
    assert_eq!(j["ok"], false, "{r}");
    let failures = strings(&j["failures"]);
    assert!(
        failures.iter().any(|f| f.contains(&barcode) && f.contains("ends")),
        "no failure says the data of {barcode} ends: {r}"
    );
    // The files wholly before the cut were read back whole.
    let before_cut = object_spans(&env.ls_session("latest"))
        .iter()
        .filter(|(_, _, end)| PART_START + end <= len / 2)
        .count();
    assert!(before_cut > 0);
    assert!(j["objects"].as_u64().unwrap() >= before_cut as u64, "{r}");
    assert!(j["objects"].as_u64().unwrap() < files.len() as u64, "{r}");

    let r = env.coffer_json(&["journal", "check"]);
    r.expect_code(0);
    let j = r.json();
    assert!(j["damage"].is_null(), "{r}");
    assert!(j["torn_tail"].is_null(), "{r}");
    assert_eq!(j["sessions"], 1, "{r}");
    assert_eq!(env.ls_sessions()[0]["status"], "complete");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_owned())),
            Ok(o) => {
                skip_unless_ci(&format!(
                    "cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip_unless_ci(&format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_full_target_fails_the_backup_and_keeps_the_sessions_before() {
    let env = Env::new();
    let Some(_mounted) = Tmpfs::mount(&env.target, "6m") else {
        return;
    };
    let small = env.path("small");
    write_file(&small.join("a.bin"), &random_bytes(1, 700_000));
    write_file(&small.join("b.txt"), &text_bytes(2, 300_000));
    let first = env.backup_ok(&small, &[]);
    let first_id = first["session"].as_u64().unwrap().to_string();

    let big = env.path("big");
    for i in 0..4 {
        write_file(&big.join(format!("r{i}.bin")), &random_bytes(10 + i, 5_000_000));
    }
    let to = env.to();
    let r = env.coffer_json(&["backup", big.to_str().unwrap(), "--to", &to]);
    r.expect_code(2);
    let j = r.json();
    assert_eq!(j["status"], "failed", "{r}");
    let error = j["error"].as_str().unwrap_or_default();
    assert!(error.contains("full"), "the error does not say full: {r}");
    let second_id = j["session"].as_u64().unwrap();

    let r = env.coffer_json(&["verify", &first_id]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], first["objects"], "{r}");
    let dest = env.path("restored");
    env.restore(&first_id, &dest, &[]).expect_code(0);
    assert_same_tree(&snapshot(&small), &snapshot(&dest), Ignore::default());

    let sessions = env.ls_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let second = sessions.iter().find(|s| s["session"] == second_id).expect("the failed session is listed");
    assert_eq!(second["status"], "failed", "{second}");
    assert_eq!(sessions[0]["status"], "complete");
    env.coffer_json(&["journal", "check"]).expect_code(0);
}

#[test]
fn a_missing_source_is_named_and_starts_no_session() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a"), b"a\n");
    env.backup_ok(&src, &[]);

    let missing = env.path("no-such-dir");
    let to = env.to();
    let r = env.coffer_json(&["backup", missing.to_str().unwrap(), "--to", &to]);
    r.expect_code(2);
    assert!(r.all_output().contains(missing.to_str().unwrap()), "the error does not name the source: {r}");
    assert_eq!(env.ls_sessions().len(), 1, "a failed start left a session");
}

#[test]
fn a_missing_volume_file_is_named_by_its_barcode() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a"), &random_bytes(1, 100_000));
    write_file(&src.join("b"), b"b\n");
    env.backup_ok(&src, &[]);
    let vol = env.only_volume();
    let barcode = barcode(&vol);
    fs::remove_file(&vol).unwrap();

    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    assert_ne!(r.code, 0, "{r}");
    let out = r.all_output();
    assert!(out.contains(&barcode), "{r}");
    assert!(
        ["missing", "not found", "does not exist"].iter().any(|w| out.contains(w)),
        "the error does not say the medium is missing: {r}"
    );
    let r = env.coffer_json(&["verify", "latest"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.all_output().contains(&barcode), "{r}");
}

#[test]
fn a_bad_target_spec_is_named() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a"), b"a\n");
    for spec in ["ftp:/x", "disk:", "disk:/x,volume=lots"] {
        let r = env.coffer_json(&["backup", src.to_str().unwrap(), "--to", spec]);
        r.expect_code(2);
        assert!(r.stderr.contains(spec), "the error does not name {spec}: {r}");
    }
    assert!(!Path::new("/x").exists(), "a bad spec created its directory");
    let r = env.coffer_json(&["scan", "ftp:/x"]);
    r.expect_code(2);
    assert!(r.stderr.contains("ftp:/x"), "{r}");
}

/// Every file of a directory with its bytes.
fn dir_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_damaged_journal_is_refused_reported_and_left_alone() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a.txt"), &text_bytes(1, 50_000));
    write_file(&src.join("d/b.bin"), &random_bytes(2, 200_000));
    env.backup_ok(&src, &[]);
    let journal = env.state.join("journal");
    // The newest segment (the session's end took a snapshot into a new one).
    let seg = fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .max()
        .unwrap();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let len = fs::metadata(&seg).unwrap().len();
    let at = len / 2;
    flip_byte(&seg, at);
    let damaged = dir_bytes(&journal);

    let r = env.coffer(&["ls"]);
    r.expect_code(2);
    assert!(r.stderr.contains(&name), "{r}");
    let offsets = byte_offsets(&r.stderr);
    assert!(offsets.iter().any(|&o| o <= at), "no byte offset at or before {at}: {r}");
    // Commands that write refuse too, and change nothing.
    let r = env.coffer_json(&["backup", src.to_str().unwrap(), "--to", &env.to()]);
    r.expect_code(2);
    assert!(r.stderr.contains(&name), "{r}");

    let r = env.coffer_json(&["journal", "check"]);
    r.expect_code(1);
    let j = r.json();
    let damage = j["damage"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(damage.contains(&name), "{r}");
    assert!(!byte_offsets(damage).is_empty(), "{r}");

    assert!(dir_bytes(&journal) == damaged, "opening a damaged journal changed it");

    // Put the byte back: all is as before.
    flip_byte(&seg, at);
    let sessions = env.ls_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["status"], "complete");
    let r = env.coffer_json(&["journal", "check"]);
    r.expect_code(0);
    assert!(r.json()["damage"].is_null(), "{r}");
    env.coffer_json(&["verify", "latest", "--compare", src.to_str().unwrap()]).expect_code(0);
    let s = env.backup_ok(&src, &[]);
    assert_eq!(s["session"], 2, "{s}");
}

#[test]
fn a_test_that_cannot_run_is_skipped_outside_ci_and_fails_under_ci() {
    assert_eq!(skip_verdict(false, "no tmpfs").as_deref(), Ok("skipped: no tmpfs"));
    let failure = skip_verdict(true, "no tmpfs").unwrap_err();
    assert!(failure.contains("under CI") && failure.contains("no tmpfs"), "{failure}");
}

#[test]
fn an_unreadable_source_file_is_reported_and_the_rest_backed_up() {
    if let Err(why) = setpriv_works() {
        skip_unless_ci(&why);
        return;
    }
    let env = Env::new();
    chmod(env.dir.path(), 0o777);
    let src = env.path("src");
    write_file(&src.join("a.txt"), &text_bytes(1, 10_000));
    write_file(&src.join("d/b.bin"), &random_bytes(2, 3_000_000));
    write_file(&src.join("d/secret"), b"not for nobody\n");
    write_file(&src.join("d/big-secret"), &random_bytes(3, 6_000_000));
    write_file(&src.join("e/c"), b"c\n");
    chmod(&src.join("d/secret"), 0o000);
    chmod(&src.join("d/big-secret"), 0o000);
    let secrets = ["d/secret", "d/big-secret"];

    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(COFFER)
        .arg("--state")
        .arg(&env.state)
        .args(["--json", "backup"])
        .arg(&src)
        .args(["--to", &env.to()])
        .env_remove("COFFER_STATE")
        .env_remove("RUST_LOG")
        .env("HOME", env.dir.path());
    let r = run(cmd);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["status"], "complete", "{r}");
    let problems = strings(&j["problems"]);
    for s in secrets {
        assert!(problems.iter().any(|p| p.contains(s)), "problems do not name {s}: {r}");
    }
    assert_eq!(problems.len(), secrets.len(), "{r}");

    let dest = env.path("restored");
    env.restore("latest", &dest, &[]).expect_code(0);
    let mut want = snapshot(&src);
    for s in secrets {
        want.nodes.remove(Path::new(s));
    }
    assert_same_tree(&want, &snapshot(&dest), Ignore::default());
}

/// Asserts every file of `files` was either restored under `dest` with its contents or is
/// named by one of `failures`.
#[track_caller]
fn assert_lost_files_named(files: &[(String, Vec<u8>)], dest: &Path, r: &Run) {
    let failures = strings(&r.json()["failures"]);
    let unnamed: Vec<&str> = files
        .iter()
        .filter(|(name, bytes)| fs::read(dest.join(name)).ok().as_ref() != Some(bytes))
        .map(|(name, _)| name.as_str())
        .filter(|name| !failures.iter().any(|f| f.contains(name)))
        .collect();
    assert!(
        unnamed.is_empty(),
        "{} files were not restored and no failure names them: {unnamed:?}\n{r}",
        unnamed.len()
    );
}

#[test]

fn restore_names_every_file_a_damaged_pack_held() {
    let env = Env::new();
    let src = env.path("src");
    let files: Vec<(String, Vec<u8>)> =
        (0..40u64).map(|i| (format!("s{i:02}"), random_bytes(i, 3000))).collect();
    for (name, bytes) in &files {
        write_file(&src.join(name), bytes);
    }
    env.backup_ok(&src, &["--unit", "64K"]);
    // The first pack: the objects at the lowest position; damage the middle of it.
    let objects = env.ls_session("latest");
    let mut positions: Vec<u64> = objects.iter().map(|o| o["position"].as_u64().unwrap()).collect();
    positions.sort();
    positions.dedup();
    assert!(positions.len() >= 2, "expected two packs: {objects:?}");
    let vol = env.only_volume();
    flip_byte(&vol, PART_START + (positions[0] + positions[1]) / 2);

    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    r.expect_code(1);
    assert_lost_files_named(&files, &dest, &r);
}

#[test]

fn restore_names_the_files_past_a_truncation() {
    let env = Env::new();
    let src = env.path("src");
    let files = compressible_tree(&src);
    env.backup_ok(&src, &["--unit", "64K"]);
    let vol = env.only_volume();
    let len = fs::metadata(&vol).unwrap().len();
    fs::OpenOptions::new().write(true).open(&vol).unwrap().set_len(len / 2).unwrap();
    let dest = env.path("restored");
    let r = env.restore("latest", &dest, &[]);
    r.expect_code(1);
    assert_lost_files_named(&files, &dest, &r);
}

#[test]

fn scan_reports_an_unreadable_volume_and_scans_the_rest() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a"), &random_bytes(1, 300_000));
    write_file(&src.join("b"), b"b\n");
    env.backup_ok(&src, &[]);
    // A volume file whose label is unreadable (damaged, or a stray file).
    let junk = env.target.join("DSK-000000000000.cvol");
    write_file(&junk, &random_bytes(2, 8192));
    fs::remove_dir_all(&env.state).unwrap();

    let r = env.coffer_json(&["scan", &env.to()]);
    r.expect_code(1);
    let j = r.json();
    assert!(strings(&j["problems"]).iter().any(|p| p.contains("DSK-000000000000")), "{r}");
    assert_eq!(j["sessions_added"], 1, "{r}");
    let dest = env.path("restored");
    env.restore("latest", &dest, &[]).expect_code(0);
    assert_same_tree(&snapshot(&src), &snapshot(&dest), Ignore::default());
}

#[test]

fn a_user_can_restore_again_over_a_read_only_directory() {
    if let Err(why) = setpriv_works() {
        skip_unless_ci(&why);
        return;
    }
    let env = Env::new();
    chmod(env.dir.path(), 0o777);
    let src = env.path("src");
    write_file(&src.join("ro/kept"), b"kept\n");
    chmod(&src.join("ro"), 0o555);
    let (src_s, to, dest) =
        (src.to_str().unwrap(), env.to(), env.path("restored").to_str().unwrap().to_owned());
    as_nobody(&env, None, &["--json", "backup", src_s, "--to", &to]).expect_code(0);
    as_nobody(&env, None, &["--json", "restore", "latest", "--to", &dest]).expect_code(0);
    // Again, over the first restore (e.g. after the file was lost or changed).
    fs::write(Path::new(&dest).join("ro/kept"), b"changed\n").unwrap();
    let r = as_nobody(&env, None, &["--json", "restore", "latest", "--to", &dest]);
    r.expect_code(0);
    assert_eq!(fs::read(Path::new(&dest).join("ro/kept")).unwrap(), b"kept\n");
}

#[test]
fn restore_refuses_a_destination_that_is_another_users_symlink() {
    if !is_root() {
        skip_unless_ci("making a symlink owned by another user needs root (lchown)");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("f"), b"restored\n");
    let id = env.backup_ok(&src, &[])["session"].as_u64().unwrap().to_string();
    // Another user planted `shared/dest -> elsewhere` where the restore is to go (a shared
    // /tmp): following it would write where that user chose.
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let planted = env.path("shared/dest");
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(4321), Some(4321)).unwrap();
    for dest in [planted.clone(), PathBuf::from(format!("{}/", planted.display()))] {
        let r = env.restore(&id, &dest, &[]);
        assert_ne!(r.code, 0, "{r}");
        let out = r.all_output();
        assert!(
            out.contains("symbolic link owned by uid 4321") && out.contains("name the real directory"),
            "{r}"
        );
    }
    assert!(fs::read_dir(&elsewhere).unwrap().next().is_none(), "the restore went through the planted link");

    // A link the caller made is theirs to use.
    std::os::unix::fs::lchown(&planted, Some(0), Some(0)).unwrap();
    env.restore(&id, &planted, &[]).expect_code(0);
    assert_eq!(fs::read(elsewhere.join("f")).unwrap(), b"restored\n");
}
