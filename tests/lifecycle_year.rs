//! The year test of issue 19: a year of nights in simulated time (`COFFER_NOW`), through the
//! command line, against a virtual library of 24 cartridges and two drives that ask for
//! cleaning.
//!
//! A seeded generator changes a tree of a few thousand small files each day (adds, deletes,
//! modifies, renames). Each night at 02:00 UTC from 2027-01-01: a full to pool `weekly` (keep
//! 8 weeks) on Sundays (and on the first night, when there is nothing to chain onto), an
//! incremental to pool `daily` (keep 14 days) on the other nights. Every 30 days a person
//! fetches from the vault the weekly cartridges whose sessions all expired (so they can be
//! recycled) and sends the weekly cartridges still kept to the vault.
//!
//! After 365 nights it asserts: no backup failed (for lack of media or anything else); 20
//! restore points chosen by the seed among the sessions kept at the end restore identical to
//! the tree as it was that night; the verdict of every session still in the catalog is the one
//! an independent model of the retention rules gives, every session that model keeps is still
//! there, and the catalog holds nothing from the first half of the year; every cleaning the
//! drives asked for was done; the journal stays bounded. It prints a table of what the year
//! did.
//!
//! Where it differs from the wording (each said again where it happens):
//! - backups run as `coffer backup` commands, not through the service's job engine;
//! - pool `weekly` uses `allocation = "weekly sun"` (a new cartridge for the first session
//!   after each Sunday 00:00), which with one full a week is a cartridge per full (night 0's
//!   full, on a Friday, has one of its own too); pool `daily` appends, so its cartridges fill
//!   over a few weeks and expire as a whole;
//! - the monthly export sends the weekly cartridges still kept, by barcode: `media export
//!   --pool weekly` would also send the expired ones waiting to be recycled (and the ones just
//!   fetched back for that);
//! - before the restores a person fetches back every cartridge in the vault: a restore needs
//!   its chain's cartridges in the library.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The seed of the generator and of the choice of restore points.
const SEED: u64 = 0x19_2027;
/// Nights simulated.
const DAYS: u64 = 365;
/// 2027-01-01 00:00:00 UTC, a Friday.
const START: u64 = 1_798_761_600;
const DAY: u64 = 86_400;
/// Each night's backup runs at 02:00.
const BACKUP_AT: u64 = 2 * 3600;
/// Night 2 (2027-01-03) is the first Sunday.
const FIRST_SUNDAY: u64 = 2;
/// Restore points checked at the end.
const RESTORE_POINTS: usize = 20;
/// Every this many nights, the vault round (fetch back, send out).
const VAULT_EVERY: u64 = 30;
/// Trees are kept (as snapshots) for the restore points from this night on: every session
/// kept at the end started in the last 8 weeks and a few days.
const SNAPSHOTS_FROM: u64 = DAYS - 70;

/// Files in the first tree, and the day's changes.
const FILES: usize = 2_500;
const DIRS: u64 = 40;
const MODIFIED_A_DAY: usize = 30;
const ADDED_A_DAY: usize = 20;
const DELETED_A_DAY: usize = 20;
const RENAMED_A_DAY: usize = 6;
/// Sizes of the small files.
const MIN_FILE: u64 = 100;
const MAX_FILE: u64 = 3_000;

/// Pools' retention, as the board says it.
const DAILY_KEEP: u64 = 14 * DAY;
const WEEKLY_KEEP: u64 = 56 * DAY;
/// Mail slots of the library.
const MAIL_SLOTS: usize = 4;
/// Bytes a drive writes before it asks for cleaning (`clean_every`): its wear carries over
/// from night to night, so each drive asks every few nights.
const CLEAN_EVERY: u64 = 2 << 20;
/// What a drive says when it asks for cleaning (a warning on standard error).
const ASKS_FOR_CLEANING: &str = "the drive asks for cleaning";

fn board_text() -> String {
    format!(
        "name = \"year\"\n\
         [[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 30\n\
         import_export = {MAIL_SLOTS}\ncartridges = 24\ncleaning = 2\ncapacity = \"16M\"\n\
         media_wait = \"0s\"\nclean_every = \"{}M\"\ncleaning_ms = 5\n\
         [[pool]]\nname = \"daily\"\nlibrary = \"vlib\"\nkeep = \"14d\"\nallocation = \"append\"\n\
         [[pool]]\nname = \"weekly\"\nlibrary = \"vlib\"\nkeep = \"8w\"\nallocation = \"weekly sun\"\n",
        CLEAN_EVERY >> 20
    )
}

/// The tree being backed up: the generator's model of it (path → content seed) and the files.
struct Tree {
    root: PathBuf,
    files: BTreeMap<String, u64>,
    rng: Rng,
    next_name: u64,
}

impl Tree {
    fn new(root: PathBuf, seed: u64) -> Tree {
        let mut t = Tree { root, files: BTreeMap::new(), rng: Rng(seed), next_name: 0 };
        for _ in 0..FILES {
            t.add(START);
        }
        t
    }

    /// Writes `rel` with the content of `seed`, its mtime `at` (the simulated day: the
    /// incremental finds it changed whatever the wall clock says).
    fn write(&self, rel: &str, seed: u64, at: u64) {
        let path = self.root.join(rel);
        let len = MIN_FILE + seed % (MAX_FILE - MIN_FILE);
        write_file(&path, &text_bytes(seed, len as usize));
        set_mtime(&path, at as i64, (seed % 1_000_000_000) as i64);
    }

    fn add(&mut self, at: u64) {
        let dir = self.rng.below(DIRS);
        let rel = format!("d{dir:02}/f{:06}.txt", self.next_name);
        self.next_name += 1;
        let seed = self.rng.next_u64();
        self.write(&rel, seed, at);
        self.files.insert(rel, seed);
    }

    /// A file chosen at random.
    fn pick(&mut self) -> String {
        let i = self.rng.below(self.files.len() as u64) as usize;
        self.files.keys().nth(i).expect("a file").clone()
    }

    /// One day's changes, at simulated time `at`.
    fn change(&mut self, at: u64) {
        for _ in 0..MODIFIED_A_DAY {
            let rel = self.pick();
            let seed = self.rng.next_u64();
            self.write(&rel, seed, at);
            self.files.insert(rel, seed);
        }
        for _ in 0..DELETED_A_DAY {
            let rel = self.pick();
            fs::remove_file(self.root.join(&rel)).unwrap();
            self.files.remove(&rel);
        }
        for _ in 0..RENAMED_A_DAY {
            let from = self.pick();
            let dir = self.rng.below(DIRS);
            let to = format!("d{dir:02}/r{:06}.txt", self.next_name);
            self.next_name += 1;
            fs::create_dir_all(self.root.join(format!("d{dir:02}"))).unwrap();
            fs::rename(self.root.join(&from), self.root.join(&to)).unwrap();
            let seed = self.files.remove(&from).unwrap();
            self.files.insert(to, seed);
        }
        for _ in 0..ADDED_A_DAY {
            self.add(at);
        }
    }
}

/// Night `day`'s backup time, as `COFFER_NOW` takes it.
fn rfc3339(t: u64) -> String {
    format!("{}Z", coffer::jobs::calendar::format(t).replace(' ', "T"))
}

fn night(day: u64) -> u64 {
    START + day * DAY + BACKUP_AT
}

fn is_sunday(day: u64) -> bool {
    day % 7 == FIRST_SUNDAY
}

/// One backup, as the test saw it.
#[derive(Debug, Clone)]
struct Backup {
    day: u64,
    session: u64,
    base: Option<u64>,
    pool: &'static str,
    started: u64,
}

struct World {
    env: Env,
    board: PathBuf,
}

impl World {
    /// `coffer --json ARGS` at `now`.
    fn at(&self, now: u64, args: &[&str]) -> Run {
        let mut c: Command = self.env.command(&[&["--json"], args].concat());
        c.env("COFFER_BOARD", &self.board).env("COFFER_NOW", rfc3339(now));
        run(c)
    }

    /// `ARGS` at `now`, expected to succeed; its JSON.
    #[track_caller]
    fn ok(&self, now: u64, args: &[&str]) -> Value {
        let r = self.at(now, args);
        r.expect_code(0);
        r.json()
    }

    /// The catalog and the journal's size as a replay finds them.
    fn catalog(&self) -> (coffer::catalog::Catalog, u64) {
        let (store, report) =
            coffer::store::Store::open(&self.env.state, coffer::journal::Mode::ReadOnly).unwrap();
        (store.catalog().clone(), report.bytes)
    }

    /// `media list`: barcode → its line.
    fn media(&self, now: u64) -> BTreeMap<String, Value> {
        let j = self.ok(now, &["media", "list"]);
        j.as_array().unwrap().iter().map(|m| (m["barcode"].as_str().unwrap().to_owned(), m.clone())).collect()
    }

    /// `pool show NAME`.
    fn pool(&self, now: u64, name: &str) -> Value {
        self.ok(now, &["pool", "show", name])
    }
}

/// The barcodes of `pool`'s cartridges (from `pool show`) with status `status` or not.
fn cartridges(pool: &Value, status: &str, with: bool) -> Vec<String> {
    pool["cartridges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| (c["status"] == status) == with)
        .map(|c| c["barcode"].as_str().unwrap().to_owned())
        .collect()
}

/// A person brings `barcodes` back from the vault, a mail slot's worth at a time, and
/// coffer takes them in.
fn fetch_back(w: &World, now: u64, barcodes: &[String]) {
    for batch in barcodes.chunks(MAIL_SLOTS) {
        for b in batch {
            w.ok(now, &["media", "put-in", b]);
        }
        let r = w.at(now, &["media", "import"]);
        r.expect_code(0);
        let arrived = r.json();
        let taken: BTreeSet<&str> = arrived
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["taken"] == true)
            .map(|a| a["barcode"].as_str().unwrap())
            .collect();
        assert_eq!(taken, batch.iter().map(String::as_str).collect(), "{r}");
    }
}

/// The vault round: the weekly cartridges whose sessions all expired come back (so they can
/// be recycled); the weekly cartridges still kept and on site go out, the mail slots emptied
/// by a person as often as needed. Returns (fetched back, sent out).
fn vault_round(w: &World, now: u64) -> (usize, usize) {
    let media = w.media(now);
    let weekly = w.pool(now, "weekly");
    let offsite = |b: &String| !media[b]["offsite"].is_null();
    let back: Vec<String> = cartridges(&weekly, "expired", true).into_iter().filter(offsite).collect();
    fetch_back(w, now, &back);
    let out: Vec<String> =
        cartridges(&weekly, "expired", false).into_iter().filter(|b| !offsite(b)).collect();
    let mut sent = 0;
    if !out.is_empty() {
        let mut args = vec!["media", "export"];
        args.extend(out.iter().map(String::as_str));
        for _ in 0..=out.len() / MAIL_SLOTS + 1 {
            let j = w.ok(now, &args);
            sent += j["sent"].as_array().unwrap().len();
            w.ok(now, &["media", "take-out"]);
            if j["waiting"].as_array().unwrap().is_empty() {
                break;
            }
        }
    }
    assert_eq!(sent, out.len(), "every kept weekly cartridge went to the vault: {out:?}");
    let media = w.media(now);
    assert!(out.iter().all(|b| !media[b]["offsite"].is_null() && media[b]["library"].is_null()), "{media:?}");
    (back.len(), sent)
}

/// Whether the retention rules keep each backup at `now`: a session is kept while younger
/// than its pool's `keep`, or while a kept incremental chains onto it.
fn model_kept(backups: &[Backup], now: u64) -> BTreeSet<u64> {
    let mut kept: BTreeSet<u64> = backups
        .iter()
        .filter(|b| {
            let keep = if b.pool == "daily" { DAILY_KEEP } else { WEEKLY_KEEP };
            now < b.started + keep
        })
        .map(|b| b.session)
        .collect();
    // Newest first: a base always has a smaller id than what chains onto it.
    for b in backups.iter().rev() {
        if kept.contains(&b.session)
            && let Some(base) = b.base
        {
            kept.insert(base);
        }
    }
    kept
}

/// What the year did, night by night.
#[derive(Default)]
struct Year {
    backups: Vec<Backup>,
    /// The tree as each night's session saw it, for the nights that may be restore points.
    trees: BTreeMap<u64, Snapshot>,
    /// Journal bytes after each night.
    journal: Vec<u64>,
    /// Cartridges labelled anew for a pool (a barcode seen under a new medium id).
    recycled: usize,
    /// Bytes the cartridges took, summed over every session written (recycled ones too).
    written: u64,
    /// The most one night wrote.
    most_a_night: u64,
    /// Times a drive asked for cleaning, as the commands warned.
    cleaning_asked: u64,
    /// Wall time spent in backups, in the rest of the night (tree, catalog read).
    in_backups: Duration,
    in_rest: Duration,
    fetched_back: usize,
    sent_out: usize,
    /// barcode → (medium id, bytes used) as last seen.
    seen: BTreeMap<String, ([u8; 16], u64)>,
}

impl Year {
    /// Reads the catalog after a night: journal size, recycled cartridges, bytes written.
    fn after_night(&mut self, w: &World) {
        let (c, bytes) = w.catalog();
        self.journal.push(bytes);
        let mut tonight = 0;
        for m in c.media() {
            let was = self.seen.insert(m.barcode().to_owned(), (m.id(), m.used()));
            let before = match was {
                Some((id, used)) if id == m.id() => used,
                Some(_) => {
                    self.recycled += 1;
                    0
                }
                None => 0,
            };
            tonight += m.used().saturating_sub(before);
        }
        self.written += tonight;
        self.most_a_night = self.most_a_night.max(tonight);
    }
}

/// Runs night `day`: the day's changes, then its backup. Panics when the backup fails.
fn run_night(w: &World, tree: &mut Tree, year: &mut Year, day: u64) {
    let now = night(day);
    if day > 0 {
        tree.change(now - BACKUP_AT);
    }
    // The first night has nothing to chain onto: a full, as on Sundays.
    let full = day == 0 || is_sunday(day);
    let pool = if full { "weekly" } else { "daily" };
    let to = format!("library:vlib,pool={pool},drives=1");
    let src = tree.root.to_str().unwrap();
    let mut args = vec!["backup", src, "--to", &to];
    if !full {
        args.push("--incremental");
    }
    let t = Instant::now();
    let r = w.at(now, &args);
    year.in_backups += t.elapsed();
    let t = Instant::now();
    assert_eq!(r.code, 0, "night {day} ({}): the backup failed:\n{r}", rfc3339(now));
    year.cleaning_asked += r.stderr.matches(ASKS_FOR_CLEANING).count() as u64;
    let j = r.json();
    assert_eq!(j["status"], "complete", "night {day}: {r}");
    assert_eq!(j["kind"], if full { "full" } else { "incremental" }, "night {day}: {r}");
    let session = j["session"].as_u64().unwrap();
    let base = j["base"].as_u64();
    if let Some(prev) = year.backups.last() {
        assert_eq!(base.is_some(), !full, "night {day}: {r}");
        if !full {
            assert_eq!(base, Some(prev.session), "night {day}: chains onto the night before: {r}");
        }
    }
    year.backups.push(Backup { day, session, base, pool, started: now });
    if day >= SNAPSHOTS_FROM {
        year.trees.insert(session, snapshot(&tree.root));
    }
    year.after_night(w);
    year.in_rest += t.elapsed();
}

#[test]
fn a_year_of_nights_keeps_what_it_must_recycles_the_rest_and_stays_bounded() {
    let wall = Instant::now();
    let env = Env::new();
    let board = env.path("board.toml");
    fs::write(&board, board_text()).unwrap();
    let w = World { env, board };
    let mut tree = Tree::new(w.env.path("src"), SEED);
    let mut year = Year::default();
    for day in 0..DAYS {
        run_night(&w, &mut tree, &mut year, day);
        if day % VAULT_EVERY == VAULT_EVERY - 1 {
            let (back, out) = vault_round(&w, night(day) + 3600);
            year.fetched_back += back;
            year.sent_out += out;
        }
    }
    let end = night(DAYS - 1) + 3600;
    let nights = wall.elapsed();
    let sessions_listed = check_retention(&w, &year, end);
    let t = Instant::now();
    let restored = check_restores(&w, &year, end);
    println!("{:<44} {:>12.1}", "time for the 365 nights, s", nights.as_secs_f64());
    println!("{:<44} {:>12.1}", "time for the restores, s", t.elapsed().as_secs_f64());
    let cleanings = check_cleaning(&w, &year, end);
    check_journal(&year);
    let replay = Instant::now();
    let check = w.ok(end, &["journal", "check"]);
    let replay = replay.elapsed();
    assert!(check["damage"].is_null() && check["index_files"]["problems"].as_array().unwrap().is_empty());
    print_table(&year, sessions_listed, restored, cleanings, &check, replay, wall.elapsed());
}

/// Every session still in the catalog has the verdict the model gives it, every session the
/// model keeps is there, and nothing from the first half of the year is left. Returns the
/// number of sessions listed.
fn check_retention(w: &World, year: &Year, end: u64) -> usize {
    let kept = model_kept(&year.backups, end);
    let by_session: BTreeMap<u64, &Backup> = year.backups.iter().map(|b| (b.session, b)).collect();
    let mut listed = BTreeMap::new();
    for pool in ["daily", "weekly"] {
        let j = w.pool(end, pool);
        for s in j["sessions"].as_array().unwrap() {
            let id = s["session"].as_u64().unwrap();
            assert_eq!(by_session[&id].pool, pool, "{s}");
            listed.insert(id, (s["expired"].as_bool().unwrap(), s["why"].as_str().unwrap().to_owned()));
        }
    }
    for (id, (expired, why)) in &listed {
        assert_eq!(
            *expired,
            !kept.contains(id),
            "session {id} ({why}): the model says kept={}",
            kept.contains(id)
        );
    }
    let lost: Vec<&u64> = kept.iter().filter(|s| !listed.contains_key(s)).collect();
    assert!(lost.is_empty(), "sessions within retention gone from the catalog: {lost:?}");
    // Expired sessions stay listed until their cartridge is written again, which happens when
    // a pool needs one: when exactly is not a rule, but 24 cartridges cannot hold half a year
    // of sessions, so none from the first half may be left.
    let oldest = listed.keys().map(|s| by_session[s].day).min().unwrap();
    let lingering = listed.values().filter(|(expired, _)| *expired).count();
    println!("oldest session in the catalog: night {oldest}; expired sessions still listed: {lingering}");
    assert!(
        oldest >= DAYS / 2,
        "night {oldest}'s session is still in the catalog: its cartridge was never recycled"
    );
    listed.len()
}

/// Every cartridge comes back from the vault; 20 restore points chosen by the seed among the
/// sessions kept at the end restore identical to the tree of their night. Returns how many.
fn check_restores(w: &World, year: &Year, end: u64) -> usize {
    let media = w.media(end);
    let away: Vec<String> =
        media.iter().filter(|(_, m)| !m["offsite"].is_null()).map(|(b, _)| b.clone()).collect();
    fetch_back(w, end, &away);
    let mut candidates: Vec<u64> = model_kept(&year.backups, end).into_iter().collect();
    assert!(
        candidates.iter().all(|s| year.trees.contains_key(s)),
        "a session kept at the end is older than the trees kept ({SNAPSHOTS_FROM} nights on): {candidates:?}"
    );
    assert!(candidates.len() >= RESTORE_POINTS, "{candidates:?}");
    let mut rng = Rng(SEED ^ 0x5e55_1025);
    for i in (1..candidates.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        candidates.swap(i, j);
    }
    candidates.truncate(RESTORE_POINTS);
    candidates.sort();
    for s in &candidates {
        let dest = w.env.path(&format!("restored-{s}"));
        let r = w.at(end, &["restore", &s.to_string(), "--to", dest.to_str().unwrap()]);
        assert_eq!(r.code, 0, "session {s}: {r}");
        assert_same_tree(&year.trees[s], &snapshot(&dest), Ignore::default());
        fs::remove_dir_all(&dest).unwrap();
    }
    candidates.len()
}

/// Every cleaning the drives asked for was done with a cleaning cartridge and counted, none
/// refused, no drive taken offline. Returns the cleanings.
fn check_cleaning(w: &World, year: &Year, end: u64) -> u64 {
    let (c, _) = w.catalog();
    let log: Vec<String> = c.log().map(|e| e.message.clone()).collect();
    let cleaned = log.iter().filter(|m| m.contains(" cleaned with CLN")).count() as u64;
    let uses: u64 = w.media(end).values().filter_map(|m| m["cleaning_uses"].as_u64()).sum();
    assert_eq!(cleaned, uses, "every cleaning in the log is a use counted on a cartridge: {log:?}");
    for bad in ["no usable cleaning cartridge", "taken offline"] {
        let found: Vec<&String> = log.iter().filter(|m| m.contains(bad)).collect();
        assert!(found.is_empty(), "{bad}: {found:?}");
    }
    // Each time a drive asked, it was cleaned once, after that night's job.
    assert!(year.cleaning_asked > 0, "no drive asked for cleaning all year");
    assert_eq!(cleaned, year.cleaning_asked, "cleanings and requests: {log:?}");
    // The wear carries over between runs: between two cleanings a drive writes at most
    // CLEAN_EVERY and one night's bytes, so the drives asked at least this often.
    let least = (year.written / (CLEAN_EVERY + year.most_a_night)).saturating_sub(1);
    assert!(
        cleaned >= least,
        "{cleaned} cleanings for {} bytes written: at least {least} expected",
        year.written
    );
    cleaned
}

/// The journal stays bounded: snapshots drop what the catalog no longer holds, so its size in
/// the last month is within a small factor of its size in the third month, when the pools
/// reached their steady state (eight weeks of weekly fulls kept).
fn check_journal(year: &Year) {
    let max = |r: std::ops::Range<usize>| year.journal[r].iter().copied().max().unwrap();
    let third_month = max(60..90);
    let last_month = max(DAYS as usize - 30..DAYS as usize);
    assert!(
        last_month <= 2 * third_month,
        "journal bytes: at most {third_month} in nights 60..90, {last_month} in the last 30 nights"
    );
}

fn print_table(
    year: &Year,
    sessions_listed: usize,
    restored: usize,
    cleanings: u64,
    check: &Value,
    replay: Duration,
    wall: Duration,
) {
    let at = |d: usize| year.journal[d];
    println!("year test (seed {SEED:#x}): {DAYS} nights from {}", rfc3339(START));
    println!("{:<44} {:>12}", "sessions written", year.backups.len());
    println!("{:<44} {:>12}", "sessions in the catalog at the end", sessions_listed);
    println!("{:<44} {:>12}", "restore points restored identical", restored);
    println!("{:<44} {:>12}", "cartridges recycled", year.recycled);
    println!("{:<44} {:>12}", "cartridges sent to the vault", year.sent_out);
    println!("{:<44} {:>12}", "cartridges fetched back from the vault", year.fetched_back);
    println!("{:<44} {:>12}", "bytes written to cartridges", year.written);
    println!("{:<44} {:>12}", "cleanings", cleanings);
    for d in [30usize, 60, 90, 180, 270, DAYS as usize - 1] {
        println!("{:<44} {:>12}", format!("journal bytes after night {d}"), at(d));
    }
    println!("{:<44} {:>12}", "journal bytes (journal check)", check["bytes"]);
    println!("{:<44} {:>12}", "journal records (journal check)", check["records"]);
    println!("{:<44} {:>12.3}", "replay time, s (journal check)", replay.as_secs_f64());
    println!("{:<44} {:>12.1}", "time in backups, s", year.in_backups.as_secs_f64());
    println!("{:<44} {:>12.1}", "time in the rest of the nights, s", year.in_rest.as_secs_f64());
    println!("{:<44} {:>12.1}", "wall time, s", wall.as_secs_f64());
}
