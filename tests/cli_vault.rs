//! Vaulting through the virtual library's mail slots, by the command line: `media list` shows
//! each cartridge's pool and status; `media export --pool` fills the mail slots, marks what
//! left offsite and asks for the rest; a cartridge in a drive is refused with nothing moved;
//! `media import` brings this box's cartridges back (their sessions restore) and refuses one
//! labelled by another box, leaving it in its mail slot.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

/// A library of 6 cartridges and 2 mail slots; a pool that starts each session on a cartridge
/// of its own, so three backups fill three cartridges.
fn board(prefix: &str) -> String {
    format!(
        "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 8\n\
         import_export = 2\ncartridges = 6\ncleaning = 1\nbarcode_prefix = \"{prefix}\"\n\
         capacity = \"64M\"\n[[pool]]\nname = \"weekly\"\nkeep = \"8w\"\nallocation = \"new\"\n"
    )
}

struct World {
    env: Env,
    board: std::path::PathBuf,
}

const NOW: &str = "2027-04-04T02:00:00Z";

impl World {
    fn new(prefix: &str) -> World {
        let env = Env::new();
        let board = env.path("board.toml");
        fs::write(&board, board_text(prefix)).unwrap();
        World { env, board }
    }

    /// `coffer --json ARGS`.
    fn json(&self, args: &[&str]) -> Run {
        let mut c: Command = self.env.command(&[&["--json"], args].concat());
        c.env("COFFER_BOARD", &self.board).env("COFFER_NOW", NOW);
        run(c)
    }

    /// A backup of `src` to pool weekly; its session.
    fn backup(&self, src: &std::path::Path) -> u64 {
        let r = self.json(&["backup", src.to_str().unwrap(), "--to", "library:vlib,pool=weekly,drives=1"]);
        r.expect_code(0);
        r.json()["session"].as_u64().unwrap()
    }

    /// `media list`: barcode → (status, pool, where).
    fn media(&self) -> Vec<(String, String, String, Value)> {
        let r = self.json(&["media", "list"]);
        r.expect_code(0);
        r.json()
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|m| {
                (
                    m["barcode"].as_str().unwrap().to_owned(),
                    m["status"].as_str().unwrap().to_owned(),
                    m["pool"].as_str().unwrap().to_owned(),
                    m["library"].clone(),
                )
            })
            .collect()
    }

    fn status_of(&self, barcode: &str) -> String {
        self.media().into_iter().find(|m| m.0 == barcode).map(|m| m.1).unwrap_or_default()
    }

    /// The barcodes of pool weekly's cartridges.
    fn weekly(&self) -> Vec<String> {
        self.media().into_iter().filter(|m| m.2 == "weekly").map(|m| m.0).collect()
    }
}

fn board_text(prefix: &str) -> String {
    board(prefix)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

#[test]
fn cartridges_go_to_the_vault_in_batches_and_come_back_restorable() {
    let w = World::new("VLT");
    let src = w.env.path("src");
    let mut sessions = Vec::new();
    for k in 0..3u64 {
        write_file(&src.join("data.bin"), &random_bytes(k, 1 << 20));
        sessions.push(w.backup(&src));
    }
    let weekly = w.weekly();
    assert_eq!(weekly.len(), 3, "{:?}", w.media());
    let listed = w.media();
    assert!(
        listed.iter().filter(|m| m.2 == "weekly").all(|m| m.1 == "writable" && m.3 == "vlib"),
        "{listed:?}"
    );
    assert_eq!(listed.iter().filter(|m| m.1 == "scratch").count(), 3, "the blank ones: {listed:?}");
    assert_eq!(listed.iter().filter(|m| m.1 == "cleaning").count(), 1, "{listed:?}");

    // A cartridge in a drive is not exported, and nothing else moves with it.
    w.json(&["media", "load", &weekly[0]]).expect_code(0);
    let r = w.json(&["media", "export", "--pool", "weekly"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains(&format!("cartridge {} is in drive 0", weekly[0])), "{r}");
    assert!(r.stderr.contains("nothing was moved"), "{r}");
    assert!(weekly.iter().all(|b| w.status_of(b) == "writable"));
    w.json(&["media", "unload"]).expect_code(0);

    // Two mail slots: two go, the third waits for them.
    let r = w.json(&["media", "export", "--pool", "weekly"]);
    r.expect_code(0);
    let sent: Vec<String> =
        r.json()["sent"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap().into()).collect();
    assert_eq!(sent, weekly[..2], "{r}");
    assert_eq!(strs(&r.json()["waiting"]), weekly[2..], "{r}");
    assert_eq!(w.status_of(&weekly[0]), "offsite");
    assert_eq!(w.status_of(&weekly[2]), "writable");
    // The mail slots are full: the next run moves nothing and still asks.
    let r = w.json(&["media", "export", "--pool", "weekly"]);
    r.expect_code(0);
    assert!(r.json()["sent"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(strs(&r.json()["waiting"]), weekly[2..], "{r}");
    // A person empties the mail slots; the next run sends the third.
    let r = w.json(&["media", "take-out"]);
    r.expect_code(0);
    let r = w.json(&["media", "export", "--pool", "weekly"]);
    r.expect_code(0);
    assert_eq!(r.json()["sent"][0][0], weekly[2].as_str(), "{r}");
    assert!(r.json()["waiting"].as_array().unwrap().is_empty(), "{r}");
    w.json(&["media", "take-out"]).expect_code(0);
    let listed = w.media();
    for b in &weekly {
        let m = listed.iter().find(|m| &m.0 == b).unwrap();
        assert_eq!((m.1.as_str(), &m.3), ("offsite", &Value::Null), "{listed:?}");
    }
    // The inventory no longer holds them.
    let r = w.json(&["media", "inventory"]);
    for b in &weekly {
        assert!(!r.stdout.contains(b.as_str()), "{b} still in the library: {r}");
    }

    // The first comes back from the vault: taken in, online again, and its session restores.
    w.json(&["media", "put-in", &weekly[0]]).expect_code(0);
    let r = w.json(&["media", "import"]);
    r.expect_code(0);
    let a = &r.json()[0];
    assert_eq!((a["barcode"].as_str(), a["taken"].as_bool()), (Some(weekly[0].as_str()), Some(true)), "{r}");
    assert!(a["what"].as_str().unwrap().contains("back from the vault"), "{r}");
    assert_eq!(w.status_of(&weekly[0]), "writable");
    let dest = w.env.path("restored");
    let r = w.json(&["restore", &sessions[0].to_string(), "--to", dest.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(fs::read(dest.join("data.bin")).unwrap(), random_bytes(0, 1 << 20));
    w.json(&["journal", "check"]).expect_code(0);
}

#[test]
fn a_cartridge_labelled_by_another_box_is_not_taken_in() {
    // Another box labels and writes a cartridge of its own.
    let other = World::new("OTH");
    let src = other.env.path("src");
    write_file(&src.join("x.bin"), &random_bytes(9, 1 << 16));
    other.backup(&src);
    let theirs = other.weekly().remove(0);
    let here = World::new("HRE");
    // Its cartridge file travels to this box's library, as the cartridge would in a person's
    // hand, and goes into a mail slot.
    here.json(&["media", "inventory"]).expect_code(0);
    let lib = |w: &World| w.env.state.join("library").join("vlib");
    fs::copy(lib(&other).join(format!("{theirs}.tape")), lib(&here).join(format!("{theirs}.tape"))).unwrap();
    here.json(&["media", "put-in", &theirs]).expect_code(0);
    let before = here.media();
    let r = here.json(&["media", "import"]);
    assert_eq!(r.code, 1, "refused: {r}");
    let a = &r.json()[0];
    assert_eq!(a["taken"], false, "{r}");
    let what = a["what"].as_str().unwrap();
    assert!(
        what.contains(&format!("cartridge {theirs} is labelled by another box"))
            && what.contains("pool weekly"),
        "{r}"
    );
    assert_eq!(a["place"], "mail slot 1", "it stays where the person put it: {r}");
    // Nothing changed: the catalog does not know it, and no job may write it.
    let after = here.media();
    assert_eq!(
        before.iter().filter(|m| m.0 != theirs).collect::<Vec<_>>(),
        after.iter().filter(|m| m.0 != theirs).collect::<Vec<_>>()
    );
    assert!(after.iter().all(|m| m.2 != "weekly"), "{after:?}");
    let src = here.env.path("src");
    write_file(&src.join("y.bin"), &random_bytes(3, 1 << 16));
    here.backup(&src);
    assert!(!here.weekly().contains(&theirs), "a job wrote the foreign cartridge: {:?}", here.media());
    // Bad names are refused, naming them.
    let r = here.json(&["media", "export", "--pool", "monthly"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no pool 'monthly'"), "{r}");
    let r = here.json(&["media", "put-in", "HRE0001L8"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("HRE0001L8 is in library vlib already"), "{r}");
}

/// A library of one cartridge and one mail slot whose jobs wait `wait` for a cartridge.
fn one_cartridge(env: &Env, wait: &str) -> std::path::PathBuf {
    let board = env.path("board.toml");
    fs::write(
        &board,
        format!(
            "name = \"t\"\n[jobs]\nscan_seconds = 1\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\n\
             drives = 1\nslots = 4\nimport_export = 1\ncartridges = 1\ncapacity = \"64M\"\n\
             media_wait = \"{wait}\"\n[[pool]]\nname = \"weekly\"\nallocation = \"new\"\n"
        ),
    )
    .unwrap();
    board
}

#[test]
fn a_job_without_a_cartridge_waits_for_one_and_goes_on_when_one_is_brought() {
    let env = Env::new();
    let board = one_cartridge(&env, "5m");
    let b = board.to_str().unwrap();
    let src = env.path("src");
    write_file(&src.join("data.bin"), &random_bytes(7, 1 << 20));
    let s = src.to_str().unwrap();
    let mut svc = start_service(&env, &board);
    let backup = ["--board", b, "--json", "backup", s, "--to", "library:vlib,pool=weekly,drives=1"];
    env.coffer(&backup).expect_code(0);
    // The second session wants a cartridge of its own: there is none.
    let second = env.command(&backup).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let st = env.coffer(&["--board", b, "--json", "status"]).json();
        if st["asks"].as_array().is_some_and(|a| !a.is_empty()) {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "no WAITING MEDIA within 60 s: {st}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let ask = status["asks"][0].as_str().unwrap();
    assert!(
        ask.starts_with("WAITING MEDIA: library:vlib writer 0 needs a cartridge for pool 'weekly'"),
        "{status}"
    );
    assert!(status["activity"].as_str().unwrap().contains("WAITING MEDIA"), "{status}");
    assert!(status["panel"][0].as_str().unwrap().starts_with("WAIT J"), "{status}");
    assert!(status["healthy"].as_bool().unwrap(), "a waiting job is not a stalled one: {status}");
    // A person brings a blank cartridge: the job takes it and finishes.
    env.coffer(&["--board", b, "media", "put-in", "NEW001L8"]).expect_code(0);
    env.coffer(&["--board", b, "media", "import"]).expect_code(0);
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["state"], "done", "{summary}");
    let st = env.coffer(&["--board", b, "--json", "status"]).json();
    assert!(st["asks"].as_array().unwrap().is_empty(), "the ask is gone: {st}");
    let session = summary["session"].as_u64().unwrap().to_string();
    let r = env.coffer(&["--board", b, "--json", "ls", "--media"]);
    assert!(r.stdout.contains("NEW001L8"), "the new cartridge holds the session: {r}");
    let dest = env.path("restored");
    env.coffer(&["--board", b, "restore", &session, "--to", dest.to_str().unwrap()]).expect_code(0);
    assert_eq!(fs::read(dest.join("data.bin")).unwrap(), random_bytes(7, 1 << 20));
    terminate(&svc.child);
    assert!(svc.child.wait().unwrap().success());
}

#[test]
fn a_job_that_waits_past_media_wait_fails_saying_so() {
    let env = Env::new();
    let board = one_cartridge(&env, "2s");
    let b = board.to_str().unwrap();
    let src = env.path("src");
    write_file(&src.join("data.bin"), &random_bytes(7, 1 << 16));
    let backup = [
        "--board",
        b,
        "--json",
        "backup",
        src.to_str().unwrap(),
        "--to",
        "library:vlib,pool=weekly,drives=1",
    ];
    env.coffer(&backup).expect_code(0);
    let r = env.coffer(&backup);
    assert_ne!(r.code, 0, "{r}");
    let all = r.all_output();
    assert!(
        all.contains("no cartridge left to write for pool 'weekly'")
            && all.contains("waited 2 s for one (media_wait)"),
        "{r}"
    );
    // A bad wait is refused naming the key.
    let bad = one_cartridge(&env, "soon");
    let r = env.coffer(&["--board", bad.to_str().unwrap(), "media", "list"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("library.vlib.media_wait"), "{r}");
}
