//! Crash sweep: multistream backups killed with SIGKILL at seeded random moments, to two disk
//! targets at once and to the virtual tape library. After every kill the next command recovers
//! the state: the journal checks clean, no session is left `running`, and the killed session
//! (complete if the kill came late, else interrupted) verifies, reading back exactly the
//! objects its writer committed. The torn variant also cuts each disk volume at a random byte
//! of what was written after its last durable point, as a power loss would: committed objects
//! stay intact. Each sweep ends with a backup that restores identical, and every session
//! verifying.
//!
//! The seed is printed; `COFFER_SWEEP_SEED=N` replays a sweep. `COFFER_CHECKPOINT` makes the
//! writers commit every few hundred objects, so that kills land between many commits.

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Kills per sweep.
const KILLS: usize = 50;
/// Objects and bytes between a writer's checkpoints during the sweep.
const CHECKPOINT: &str = "150,4194304";

impl Rng {
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo + 1) }
    }
}

fn seed(name: &str) -> u64 {
    let seed = std::env::var("COFFER_SWEEP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{name}: seed {seed} (COFFER_SWEEP_SEED={seed} replays it)");
    seed
}

/// Real-looking data: a few thousand text files of various sizes in nested directories, and a
/// few incompressible files of some megabytes.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    for i in 0..3000u64 {
        write_file(
            &src.join(format!("d{}/e{}/f{i}.txt", i % 23, i % 7)),
            &text_bytes(i, 300 + (i as usize * 7919) % 9000),
        );
    }
    for i in 0..3u64 {
        write_file(&src.join(format!("big/r{i}.bin")), &random_bytes(900 + i, (3 << 20) + 4097 * i as usize));
    }
    src
}

struct Sweep {
    env: Env,
    src: PathBuf,
    disks: [PathBuf; 2],
    rng: Rng,
    /// Sessions and objects committed, kills that left an interrupted session, volumes torn.
    figures: Figures,
}

#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    complete: usize,
    interrupted: usize,
    objects_committed: u64,
    objects_read_back: u64,
    files_restored: u64,
    torn_volumes: usize,
    torn_bytes: u64,
}

impl Sweep {
    fn new(name: &str) -> Sweep {
        let env = Env::new();
        let src = source(&env);
        let disks = [env.path("diskA"), env.path("diskB")];
        Sweep { env, src, disks, rng: Rng(seed(name)), figures: Figures::default() }
    }

    fn targets(&self, library: bool) -> Vec<String> {
        if library {
            return vec!["library:vlib".into()];
        }
        self.disks.iter().map(|d| format!("disk:{}", d.display())).collect()
    }

    fn backup_command(&self, library: bool) -> std::process::Command {
        let mut args = vec!["--json".to_owned(), "backup".into(), self.src.to_str().unwrap().into()];
        for t in self.targets(library) {
            args.extend(["--to".into(), t]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = self.env.command(&args);
        c.env("COFFER_CHECKPOINT", CHECKPOINT);
        c
    }

    /// A whole backup, timed: how long the kills may wait.
    fn timed_backup(&self, library: bool) -> Duration {
        let t0 = Instant::now();
        let r = run(self.backup_command(library));
        r.expect_code(0);
        assert_eq!(r.json()["status"], "complete", "{r}");
        t0.elapsed()
    }

    fn sessions(&self) -> Vec<Value> {
        let r = self.env.coffer_json(&["ls"]);
        r.expect_code(0);
        r.json().as_array().expect("session rows").clone()
    }

    /// One kill: a backup started, killed after a random wait, the state recovered by the
    /// next command and checked.
    fn kill_once(&mut self, library: bool, longest: Duration, torn: bool) {
        let before = self.sessions().len();
        let wait = Duration::from_millis(self.rng.between(0, longest.as_millis() as u64));
        let mut child = self
            .backup_command(library)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a backup");
        std::thread::sleep(wait);
        child.kill().expect("SIGKILL the backup");
        child.wait().expect("reap the backup");
        self.figures.kills += 1;

        // The first command after the kill takes the state lock and closes what was left open,
        // saying so.
        let first = self.env.coffer_json(&["ls"]);
        first.expect_code(0);
        let sessions = first.json().as_array().expect("session rows").clone();
        assert!(
            sessions.iter().all(|s| s["status"] != "running"),
            "a session is still running after the kill: {sessions:#?}"
        );
        let Some(new) = sessions.get(before) else {
            // Killed before the session started: nothing to check but the journal.
            self.journal_checks();
            return;
        };
        assert_eq!(sessions.len(), before + 1, "one backup, one session: {sessions:#?}");
        let id = new["session"].as_u64().unwrap().to_string();
        match new["status"].as_str() {
            Some("complete") => self.figures.complete += 1,
            Some("interrupted") => {
                let said = format!("session {id} was left running by a coffer process that is gone");
                assert!(first.stderr.contains(&said), "the recovery is not reported: {first}");
                self.figures.interrupted += 1;
                if torn {
                    self.tear_volumes(new);
                }
            }
            other => panic!("session {id} ended {other:?} after a kill: {new}"),
        }
        self.journal_checks();
        self.verifies(&id);
    }

    fn journal_checks(&self) {
        let r = self.env.coffer_json(&["journal", "check"]);
        r.expect_code(0);
    }

    /// Verifies a session; an interrupted one reads back exactly the objects the catalog holds
    /// for it (counted from `ls`, not from verify's own figures), and every fourth one is also
    /// restored, each restored file compared with its source.
    fn verifies(&mut self, id: &str) {
        let r = self.env.coffer_json(&["verify", id]);
        let j = r.json();
        assert_eq!(r.code, 0, "verify {id} failed: {r}");
        assert_eq!(j["ok"], true, "{r}");
        assert!(j["failures"].as_array().unwrap().is_empty(), "{r}");
        if j["interrupted"] != true {
            return;
        }
        let listed = self.env.ls_session(id);
        let ids: std::collections::HashSet<u64> = listed.iter().map(|o| o["id"].as_u64().unwrap()).collect();
        let in_catalog = ids.len() as u64;
        assert_eq!(j["committed"].as_u64(), Some(in_catalog), "committed is what the catalog holds: {r}");
        let read_back = j["objects"].as_u64().unwrap();
        assert_eq!(read_back, in_catalog, "verify read back other than what was committed: {r}");
        self.figures.objects_committed += in_catalog;
        self.figures.objects_read_back += read_back;
        if self.figures.interrupted % 4 == 1 {
            self.restores_identical(id, &listed);
        }
    }

    /// Restores an interrupted session: every committed file comes back with its source's
    /// bytes, and nothing else.
    fn restores_identical(&mut self, id: &str, listed: &[Value]) {
        let out = self.env.path(&format!("restored-{id}"));
        let r = self.env.coffer_json(&["restore", id, "--to", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "restore {id}: {r}");
        let files: std::collections::BTreeSet<&str> =
            listed.iter().filter(|o| o["kind"] == "file").map(|o| o["path"].as_str().unwrap()).collect();
        let restored = snapshot(&out);
        let restored_files: std::collections::BTreeSet<String> = restored
            .nodes
            .iter()
            .filter(|(_, n)| n.content.is_some())
            .map(|(p, _)| p.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            restored_files.iter().map(String::as_str).collect::<std::collections::BTreeSet<_>>(),
            files,
            "restore {id} brought back other files than the session committed"
        );
        for (path, node) in &restored.nodes {
            if let Some(content) = node.content {
                assert_eq!(
                    content,
                    hash_file(&self.src.join(path)),
                    "{} differs from its source",
                    path.display()
                );
            }
        }
        self.figures.files_restored += files.len() as u64;
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// Cuts each disk volume the interrupted session wrote to at a random byte past its
    /// durable end: past what the catalog knows is used, and past the start of the session's
    /// first part there (the sessions before it were synced whole before they were journaled).
    fn tear_volumes(&mut self, session: &Value) {
        let media = self.env.coffer_json(&["ls", "--media"]).json();
        for dir in &self.disks {
            for vol in volume_files(dir) {
                let barcode = barcode(&vol);
                let starts = session["parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["barcode"] == barcode.as_str())
                    .map(|p| p["position"].as_u64().unwrap());
                let Some(first) = starts.min() else { continue };
                let used = media
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["barcode"] == barcode.as_str())
                    .and_then(|m| m["used"].as_u64())
                    .unwrap_or(0);
                let len = std::fs::metadata(&vol).unwrap().len();
                let floor = used.max(first).min(len);
                let cut = self.rng.between(floor, len);
                if cut < len {
                    OpenOptions::new().write(true).open(&vol).unwrap().set_len(cut).unwrap();
                    self.figures.torn_volumes += 1;
                    self.figures.torn_bytes += len - cut;
                }
            }
        }
    }

    /// The end of a sweep: every session verifies, and a new backup restores identical.
    fn finish(&mut self, name: &str, library_too: bool) {
        let ids: Vec<String> = self.sessions().iter().map(|s| s["session"].to_string()).collect();
        for id in &ids {
            let r = self.env.coffer_json(&["verify", id]);
            assert_eq!(r.code, 0, "verify {id} at the end of the sweep: {r}");
        }
        let kinds: &[bool] = if library_too { &[false, true] } else { &[false] };
        for &library in kinds {
            let r = run(self.backup_command(library));
            r.expect_code(0);
            let out = self.env.path(&format!("restored-{library}"));
            self.env.restore("latest", &out, &[]).expect_code(0);
            assert_same_tree(&snapshot(&self.src), &snapshot(&out), Ignore::default());
        }
        let f = &self.figures;
        eprintln!(
            "{name}: {} kills, {} sessions ({} complete, {} interrupted), {} objects committed in \
             interrupted sessions (as the catalog lists them), {} read back by verify, {} lost; {} \
             files restored identical from every fourth; {} volumes torn ({} bytes cut)",
            f.kills,
            ids.len(),
            f.complete,
            f.interrupted,
            f.objects_committed,
            f.objects_read_back,
            f.objects_committed - f.objects_read_back,
            f.files_restored,
            f.torn_volumes,
            f.torn_bytes
        );
        assert_eq!(f.objects_committed, f.objects_read_back);
        assert!(f.interrupted > 0, "no kill landed mid-backup: the sweep showed nothing ({f:?})");
    }
}

fn volume_dirs_exist(dirs: &[PathBuf]) -> bool {
    dirs.iter().all(|d| Path::new(d).is_dir())
}

#[test]
fn kills_at_random_moments_lose_no_committed_object() {
    let mut s = Sweep::new("kills");
    let longest = [s.timed_backup(false), s.timed_backup(true)];
    assert!(volume_dirs_exist(&s.disks));
    for i in 0..KILLS {
        let library = i % 2 == 1;
        s.kill_once(library, longest[library as usize].mul_f64(1.1), false);
    }
    s.finish("kills", true);
}

#[test]
fn torn_volume_tails_after_kills_lose_no_committed_object() {
    let mut s = Sweep::new("torn");
    let longest = s.timed_backup(false);
    for _ in 0..KILLS {
        s.kill_once(false, longest.mul_f64(1.1), true);
    }
    s.finish("torn", false);
    assert!(s.figures.torn_volumes > 0, "no volume was torn: {:?}", s.figures);
}
