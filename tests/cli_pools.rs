//! Media pools and retention through the command line, in simulated time (`COFFER_NOW`):
//! sessions kept by age, kept because a kept incremental needs them, kept as the newest set,
//! and expired; a volume whose sessions all expired shows as expired; bad pools are refused
//! naming the pool.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

const BOARD: &str = "name = \"t\"\n\
                     [[pool]]\nname = \"daily\"\nkeep = \"2d\"\n\
                     [[pool]]\nname = \"weekly\"\nkeep_sets = 1\n";

struct World {
    env: Env,
    board: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        World::with(BOARD)
    }

    /// A world whose board is `text`.
    fn with(text: &str) -> World {
        let env = Env::new();
        let board = env.path("board.toml");
        fs::write(&board, text).unwrap();
        World { env, board }
    }

    /// `coffer --json ARGS` at `now`.
    fn at(&self, now: &str, args: &[&str]) -> Run {
        let mut c: Command = self.env.command(&[&["--json"], args].concat());
        c.env("COFFER_BOARD", &self.board).env("COFFER_NOW", now);
        run(c)
    }

    /// A backup of `src` to the disk volume directory `dir` in `pool` at `now`; its session.
    fn backup(&self, now: &str, src: &std::path::Path, dir: &str, pool: &str, incremental: bool) -> u64 {
        let to = format!("disk:{},pool={pool}", self.env.path(dir).display());
        let src = src.to_str().unwrap();
        let mut args = vec!["backup", src, "--to", &to];
        if incremental {
            args.push("--incremental");
        }
        let r = self.at(now, &args);
        r.expect_code(0);
        r.json()["session"].as_u64().unwrap_or_else(|| panic!("no session: {r}"))
    }

    /// `pool show NAME` at `now`: session → (expired, why); cartridge statuses.
    fn show(&self, now: &str, pool: &str) -> (Vec<(u64, bool, String)>, Vec<String>) {
        let r = self.at(now, &["pool", "show", pool]);
        r.expect_code(0);
        let j = r.json();
        let sessions = j["sessions"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|s| {
                (
                    s["session"].as_u64().unwrap(),
                    s["expired"].as_bool().unwrap(),
                    s["why"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let carts = j["cartridges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .collect();
        (sessions, carts)
    }
}

fn tree(root: &std::path::Path, day: u32) {
    write_file(&root.join("a.txt"), &text_bytes(1, 20_000));
    write_file(&root.join(format!("day-{day}.txt")), format!("day {day}\n").as_bytes());
}

#[test]
fn sessions_expire_by_age_and_sets_but_never_while_a_kept_one_needs_them() {
    let w = World::new();
    let src = w.env.path("src");
    tree(&src, 1);
    // Pool daily (keep 2d): a full on Jan 1, incrementals on Jan 2 and Jan 5.
    let s1 = w.backup("2027-01-01T02:00:00Z", &src, "daily", "daily", false);
    tree(&src, 2);
    let s2 = w.backup("2027-01-02T02:00:00Z", &src, "daily", "daily", true);
    tree(&src, 5);
    let s3 = w.backup("2027-01-05T02:00:00Z", &src, "daily", "daily", true);
    let r = w.at("2027-01-06T00:00:00Z", &["ls"]);
    let rows: Vec<Value> = r.json().as_array().unwrap().clone();
    assert_eq!(rows[1]["base"], s1, "{r}");
    assert_eq!(rows[2]["base"], s2, "{r}");

    // Jan 6: the Jan 5 incremental is young; the two before are older than 2 days but its
    // restore chain needs them.
    let (v, carts) = w.show("2027-01-06T00:00:00Z", "daily");
    assert_eq!(
        v,
        vec![
            (s1, false, format!("needed by session {s3}")),
            (s2, false, format!("needed by session {s3}")),
            (s3, false, "kept until 2027-01-07 02:00:00".to_owned()),
        ]
    );
    assert_eq!(carts, ["writable"]);

    // A new full on Jan 10, on a volume of its own: on Jan 11 it is young, the old chain needed
    // by nothing: all three expired, and their volume with them.
    tree(&src, 10);
    let s4 = w.backup("2027-01-10T02:00:00Z", &src, "daily2", "daily", false);
    let (v, carts) = w.show("2027-01-11T00:00:00Z", "daily");
    let expired: Vec<u64> = v.iter().filter(|s| s.1).map(|s| s.0).collect();
    assert_eq!(expired, [s1, s2, s3], "{v:?}");
    assert!(!v[3].1 && v[3].0 == s4, "{v:?}");
    let mut carts = carts;
    carts.sort();
    assert_eq!(carts, ["expired", "writable"]);

    // Pool weekly (keep_sets 1): the older full expires once a newer one is there, whatever
    // its age.
    let w1 = w.backup("2027-01-03T02:00:00Z", &src, "weekly", "weekly", false);
    let (v, _) = w.show("2027-06-01T00:00:00Z", "weekly");
    assert_eq!(v, vec![(w1, false, "kept (one of the newest sets)".to_owned())]);
    let w2 = w.backup("2027-01-10T03:00:00Z", &src, "weekly", "weekly", false);
    let (v, carts) = w.show("2027-06-01T00:00:00Z", "weekly");
    assert_eq!(v.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), [(w1, true), (w2, false)]);
    assert_eq!(carts, ["writable"], "a volume with a kept session is not expired");

    // The list: each pool once, with its retention.
    let r = w.at("2027-01-11T00:00:00Z", &["pool", "list"]);
    r.expect_code(0);
    let names: Vec<String> =
        r.json().as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["daily", "weekly"]);
    let mut c = w.env.command(&["pool", "list"]);
    c.env("COFFER_BOARD", &w.board).env("COFFER_NOW", "2027-01-11T00:00:00Z");
    let text = run(c);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("pool daily: keep 2d; 2 cartridge(s) (1 expired, 1 writable); 4 session(s), 3 expired"),
        "{text}"
    );
    assert!(text.stdout.contains("pool weekly: keep_sets 1;"), "{text}");
}

#[test]
fn bad_pools_and_a_bad_time_are_refused_naming_them() {
    let w = World::new();
    let overlapping = "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 4\n\
                       cartridges = 2\ncapacity = \"64M\"\n\
                       [[pool]]\nname = \"daily\"\nbarcodes = [\"CFR0001L8-CFR0008L8\"]\n\
                       [[pool]]\nname = \"weekly\"\nbarcodes = [\"CFR0008L8-CFR0012L8\"]\n";
    let missing = "name = \"t\"\n[[pool]]\nname = \"daily\"\nlibrary = \"vlib\"\n";
    for (text, want) in [
        (
            overlapping,
            "pool 'weekly'.barcodes: 'CFR0008L8-CFR0012L8' overlaps 'CFR0001L8-CFR0008L8' of pool 'daily'",
        ),
        (missing, "pool 'daily'.library: 'vlib' is no library of this board"),
    ] {
        let f = w.env.path("bad.toml");
        fs::write(&f, text).unwrap();
        let r = w.env.coffer(&["board", "check", f.to_str().unwrap()]);
        assert_ne!(r.code, 0, "{r}");
        assert!(r.all_output().contains(want), "{want}: {r}");
    }
    let r = w.at("2027-01-01T00:00:00Z", &["pool", "show", "monthly"]);
    r.expect_code(2);
    assert!(r.stderr.contains("no pool 'monthly'"), "{r}");
    let r = w.at("next tuesday", &["pool", "list"]);
    r.expect_code(2);
    assert!(r.stderr.contains("COFFER_NOW=\"next tuesday\": an RFC 3339 time"), "{r}");
}

#[test]
fn cartridges_whose_sessions_all_expired_are_recycled_and_their_sessions_leave_the_catalog() {
    // Three cartridges, a pool that keeps a day, a backup each night for eight nights.
    let w = World::with(
        "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 6\n\
         cartridges = 3\ncapacity = \"64M\"\n[[pool]]\nname = \"daily\"\nlibrary = \"vlib\"\nkeep = \"1d\"\n",
    );
    let src = w.env.path("src");
    let mut sessions = Vec::new();
    for day in 1..=8u32 {
        write_file(&src.join("data.bin"), &random_bytes(u64::from(day), 1 << 20));
        write_file(&src.join("day.txt"), format!("night {day}\n").as_bytes());
        let now = format!("2027-02-{day:02}T02:00:00Z");
        let r = w.at(&now, &["backup", src.to_str().unwrap(), "--to", "library:vlib,pool=daily,drives=1"]);
        r.expect_code(0);
        assert_eq!(r.json()["status"], "complete", "night {day}: {r}");
        sessions.push(r.json()["session"].as_u64().unwrap());
    }
    // Each night from the fourth recycled the cartridge of a night whose session had expired:
    // the catalog holds the last three nights, one per cartridge.
    let now = "2027-02-08T03:00:00Z";
    let r = w.at(now, &["ls"]);
    let listed: Vec<u64> =
        r.json().as_array().unwrap().iter().map(|s| s["session"].as_u64().unwrap()).collect();
    assert_eq!(listed, sessions[5..], "{r}");
    let r = w.at(now, &["ls", "--media"]);
    let media = r.json();
    let media = media.as_array().unwrap();
    assert_eq!(media.len(), 3, "{r}");
    assert!(
        media.iter().all(|m| m["pool"] == "daily" && m["sessions"].as_array().unwrap().len() == 1),
        "{r}"
    );
    let (v, carts) = w.show(now, "daily");
    assert_eq!(
        v.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(sessions[5], true), (sessions[6], true), (sessions[7], false)]
    );
    assert_eq!(carts.iter().filter(|c| *c == "expired").count(), 2, "{carts:?}");
    // What is left restores, the expired night too, and the journal is sound.
    for (k, s) in [(5usize, sessions[5]), (7, sessions[7])] {
        let dest = w.env.path(&format!("restored-{k}"));
        let r = w.at(now, &["restore", &s.to_string(), "--to", dest.to_str().unwrap()]);
        r.expect_code(0);
        assert_eq!(fs::read(dest.join("data.bin")).unwrap(), random_bytes(k as u64 + 1, 1 << 20));
    }
    w.at(now, &["journal", "check"]).expect_code(0);
}

#[test]
fn a_pool_of_new_cartridges_starts_each_session_on_one_of_its_own() {
    let w = World::with(
        "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 6\n\
         cartridges = 3\ncapacity = \"64M\"\nmedia_wait = \"0s\"\n[[pool]]\nname = \"monthly\"\nallocation = \"new\"\n\
         [[pool]]\nname = \"daily\"\n",
    );
    let src = w.env.path("src");
    tree(&src, 1);
    let now = "2027-03-01T02:00:00Z";
    let backup = |pool: &str| {
        let to = format!("library:vlib,pool={pool},drives=1");
        let r = w.at(now, &["backup", src.to_str().unwrap(), "--to", &to]);
        r.expect_code(0);
        r.json()["session"].as_u64().unwrap()
    };
    // Two sessions of an appending pool share a cartridge; two of a `new` pool do not.
    let (d1, d2) = (backup("daily"), backup("daily"));
    let (m1, m2) = (backup("monthly"), backup("monthly"));
    let r = w.at(now, &["ls", "--media"]);
    let media = r.json();
    let on = |pool: &str| -> Vec<Vec<u64>> {
        media
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["pool"] == pool)
            .map(|m| m["sessions"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect())
            .collect()
    };
    assert_eq!(on("daily"), [vec![d1, d2]], "{r}");
    let mut monthly = on("monthly");
    monthly.sort();
    assert_eq!(monthly, [vec![m1], vec![m2]], "{r}");
    // All three cartridges are taken now: a third `new` session finds none and says so.
    let r = w.at(now, &["backup", src.to_str().unwrap(), "--to", "library:vlib,pool=monthly,drives=1"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.all_output().contains("no cartridge left to write for pool 'monthly'"), "{r}");
}

#[test]
fn a_pool_with_a_set_per_week_starts_a_cartridge_each_sunday_and_appends_within_the_week() {
    let w = World::with(
        "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 6\n\
         cartridges = 4\ncapacity = \"64M\"\nmedia_wait = \"0s\"\n[[pool]]\nname = \"daily\"\n\
         allocation = \"weekly sun\"\n",
    );
    let src = w.env.path("src");
    tree(&src, 1);
    // 2027-03-01 is a Monday.
    let nights = ["2027-03-01", "2027-03-02", "2027-03-07", "2027-03-08", "2027-03-13", "2027-03-14"];
    let mut sessions = Vec::new();
    for day in nights {
        let now = format!("{day}T02:00:00Z");
        let r = w.at(&now, &["backup", src.to_str().unwrap(), "--to", "library:vlib,pool=daily,drives=1"]);
        r.expect_code(0);
        sessions.push(r.json()["session"].as_u64().unwrap());
    }
    let r = w.at("2027-03-14T03:00:00Z", &["ls", "--media"]);
    let mut sets: Vec<Vec<u64>> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sessions"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect())
        .collect();
    sets.sort();
    // Mon and Tue share one; Sunday the 7th starts one that Monday the 8th and Saturday the
    // 13th append to; Sunday the 14th starts the next.
    assert_eq!(
        sets,
        [vec![sessions[0], sessions[1]], vec![sessions[2], sessions[3], sessions[4]], vec![sessions[5]]],
        "{r}"
    );
}

#[test]
fn pools_made_by_command_keep_their_sessions_as_told_and_bad_ones_change_nothing() {
    let w = World::with(
        "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 6\n\
         cartridges = 4\ncapacity = \"64M\"\n[[pool]]\nname = \"daily\"\nbarcodes = [\"CFR0001L8-CFR0002L8\"]\n",
    );
    let now = "2027-05-01T02:00:00Z";
    let r = w
        .at(now, &["pool", "create", "monthly", "--keep", "60d", "--allocation", "new", "--library", "vlib"]);
    r.expect_code(0);
    assert_eq!(r.json()["keep"], 60 * 86_400, "{r}");
    // Refused, naming what is wrong; nothing changes.
    let refused = [
        (&["pool", "create", "monthly"][..], "pool 'monthly' exists"),
        (&["pool", "create", "daily"][..], "pool 'daily' is defined in the board file"),
        (&["pool", "modify", "daily", "--keep", "1d"][..], "pool 'daily' is defined in the board file"),
        (&["pool", "modify", "yearly", "--keep", "1d"][..], "no pool 'yearly' made by command"),
        (&["pool", "create", "spare", "--barcodes", "CFR0002L8-CFR0003L8"][..], "CFR0002L8"),
        (&["pool", "create", "late", "--keep", "soon"][..], "pool 'late'.keep"),
        (&["pool", "create", "odd", "--allocation", "fortnightly"][..], "pool 'odd'.allocation"),
        (&["pool", "create", "far", "--library", "elsewhere"][..], "pool 'far'.library"),
        (&["pool", "modify", "monthly", "--unset", "colour"][..], "--unset colour"),
    ];
    for (args, says) in refused {
        let r = w.at(now, args);
        assert_ne!(r.code, 0, "{args:?}: {r}");
        assert!(r.stderr.contains(says), "{args:?}: {r}");
    }
    let r = w.at(now, &["pool", "list"]);
    let names: Vec<String> =
        r.json().as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["daily", "monthly"], "{r}");
    // A session in the new pool is kept as it says, and as it says once changed.
    let src = w.env.path("src");
    tree(&src, 1);
    let r = w.at(now, &["backup", src.to_str().unwrap(), "--to", "library:vlib,pool=monthly,drives=1"]);
    r.expect_code(0);
    let later = "2027-05-20T02:00:00Z";
    let (v, _) = w.show(later, "monthly");
    assert!(!v[0].1 && v[0].2.starts_with("kept until 2027-06-30"), "{v:?}");
    w.at(later, &["pool", "modify", "monthly", "--keep", "7d"]).expect_code(0);
    let (v, carts) = w.show(later, "monthly");
    assert!(v[0].1, "expired once the pool keeps 7 days: {v:?}");
    assert_eq!(carts, ["expired"]);
    w.at(later, &["pool", "modify", "monthly", "--unset", "keep"]).expect_code(0);
    let (v, _) = w.show(later, "monthly");
    assert_eq!(v[0].2, "kept (the pool keeps everything)", "{v:?}");
    w.at(later, &["journal", "check"]).expect_code(0);
}
