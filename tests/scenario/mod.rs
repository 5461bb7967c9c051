//! The scenarios of `hil/scenarios/*.toml`, one description read by both tiers of the
//! hardware-in-the-loop tests: the fast tier (`tests/hil_virtual.rs`, the virtual library,
//! inside `cargo test --release`) and the tgt tier (`tests/hil_tgt.rs`, run by `hil/run`: a
//! Linux tgt library reached from the appliance image booted in QEMU).
//!
//! A scenario names the tiers it runs on, a library layout and steps; [`run`] carries the
//! steps out on an [`Appliance`] (the tier's box) and checks each one's expectations. Parsing
//! is strict: an unknown key, a value of the wrong type or a step a tier cannot take is an
//! error naming the file and the key. The format is documented in `hil/README.md`.

// Each tier uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// The tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The built-in virtual library, drives refusing LOCATE and READ POSITION like tgt.
    Virtual,
    /// Linux tgt through the guest's st, sg and ch drivers.
    Tgt,
}

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// For people.
    pub description: String,
    /// Where it runs.
    pub tiers: Vec<Tier>,
    /// The library.
    #[serde(default)]
    pub library: Layout,
    /// What is done, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// The file's stem.
    #[serde(skip)]
    pub name: String,
}

/// A library's layout: what tgt is set up with and what the virtual library is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Drives.
    #[serde(default = "two")]
    pub drives: u32,
    /// Storage slots.
    #[serde(default = "twelve")]
    pub slots: u32,
    /// Import/export slots.
    #[serde(default)]
    pub import_export: u32,
    /// Data cartridges, barcoded PREFIX0001L8…, in the first slots.
    #[serde(default = "ten")]
    pub cartridges: u32,
    /// Cleaning cartridges, barcoded CLN001L1…, in the last slots.
    #[serde(default)]
    pub cleaning: u32,
    /// Barcode prefix.
    #[serde(default = "prefix")]
    pub barcode_prefix: String,
    /// Each cartridge's size, in MiB units ("64M"); tgt refuses writes past it (ENOSPC).
    #[serde(default = "capacity")]
    pub capacity: String,
    /// Faults the virtual library injects (as a board's `[[library.fault]]`); virtual tier only.
    #[serde(default, rename = "fault")]
    pub faults: Vec<toml::Value>,
    /// The virtual library's drive speed ("8M" a second), so that a job runs long enough to
    /// be interrupted; tgt's speed is whatever tgt and QEMU give.
    pub virtual_drive_rate: Option<String>,
}

fn two() -> u32 {
    2
}
fn twelve() -> u32 {
    12
}
fn ten() -> u32 {
    10
}
fn prefix() -> String {
    "CFR".into()
}
fn capacity() -> String {
    "64M".into()
}

impl Default for Layout {
    fn default() -> Layout {
        toml::from_str("").expect("every layout key has a default")
    }
}

impl Layout {
    /// Capacity in MiB.
    pub fn capacity_mib(&self) -> Option<u64> {
        self.capacity.strip_suffix('M')?.parse().ok().filter(|&n| n >= 1)
    }

    /// Barcode of data cartridge `i` (from 1).
    pub fn barcode(&self, i: u32) -> String {
        format!("{}{i:04}L8", self.barcode_prefix)
    }

    /// Barcode of cleaning cartridge `i` (from 1).
    pub fn cleaning_barcode(i: u32) -> String {
        format!("CLN{i:03}L1")
    }

    /// What slot `s` (from 1) holds at the start.
    pub fn slot(&self, s: u32) -> Option<String> {
        if s <= self.cartridges {
            Some(self.barcode(s))
        } else if s > self.slots - self.cleaning {
            Some(Self::cleaning_barcode(s - (self.slots - self.cleaning)))
        } else {
            None
        }
    }
}

/// A backup's source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A real tree on the box: its regular files, in path order, up to `limit` bytes, are
    /// copied to a scratch directory and backed up from there.
    pub tree: Option<String>,
    /// With `tree`: at most this many bytes ("24M").
    pub limit: Option<String>,
    /// Generated files of random bytes (virtual tier only): how many.
    pub random: Option<u32>,
    /// With `random`: each file's size in bytes.
    pub size: Option<u64>,
    /// With `random`: the first file's seed (file i has seed + i).
    #[serde(default)]
    pub seed: u64,
}

/// How a backup must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every stream finished.
    Complete,
    /// The session failed.
    Failed,
}

/// How a restore compares with the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Every file, byte for byte, and nothing else.
    Identical,
    /// What was restored is identical to its source; some files may be missing.
    Partial,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
// Steps without keys are written `{}` so that unknown keys are refused for them too.
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `coffer media inventory` shows the layout: barcodes in their slots, empty drives and
    /// mail slots.
    Inventory {},
    /// The running service's status endpoint: healthy, the library's drives and cartridges.
    Status {},
    /// `coffer backup SOURCE --to library:NAME`.
    Backup {
        /// What.
        source: Source,
        /// Compress (default true).
        #[serde(default = "yes")]
        compression: bool,
        /// How it must end (default complete).
        #[serde(default = "complete")]
        expect: Outcome,
        /// For `failed`: text the error must contain.
        error: Option<String>,
        /// How many streams must end with an error.
        failed_streams: Option<u64>,
        /// Text the run must print.
        warns: Option<String>,
        /// At least this many streams must write bytes.
        streams_used: Option<u64>,
        /// At least this many session parts (a stream that changes cartridges starts a new
        /// part: more parts than streams is spanning).
        min_parts: Option<u64>,
    },
    /// `coffer verify latest` finds every byte.
    Verify {},
    /// `coffer restore latest` into a fresh directory, compared with the last source.
    Restore {
        /// How it must compare.
        compare: Compare,
        /// At least this many files must be restored (default 0; `identical` checks all).
        #[serde(default)]
        min_files: u64,
    },
    /// The catalog is lost: `coffer scan library:NAME` rebuilds one in a fresh state directory
    /// from the cartridges alone, and `restore latest` from it must compare like `restore`
    /// (on tgt, every part is reached by spacing over filemarks).
    Scan {
        /// How the restore from the rebuilt catalog must compare.
        compare: Compare,
    },
    /// Every loaded drive is unloaded (`coffer media unload --drive N`).
    Unload {},
    /// `coffer media load BARCODE --drive N`.
    Load {
        /// The cartridge.
        barcode: String,
        /// The drive.
        drive: u32,
    },
    /// After-the-fact checks of the library.
    Check {
        /// Cartridges that must not have been written.
        #[serde(default)]
        never_written: Vec<String>,
        /// Drives that must be reported offline.
        #[serde(default)]
        offline_drives: Vec<u32>,
    },
    /// A command typed at the box's serial console (logged in with [`CONSOLE_PIN`]; starts
    /// the service like `status`): its answer must hold every text of `expect`.
    Console {
        /// The line typed.
        command: String,
        /// Texts the answer must hold.
        #[serde(default)]
        expect: Vec<String>,
    },
    /// `mtx status` and `mt status` on the box agree with `coffer media inventory` (tgt only:
    /// the virtual library has no device nodes).
    Crosscheck {},
    /// A job run by the service; once it has committed at least `crash_after` bytes the service
    /// is killed (SIGKILL) and started again: the job must end failed (its committed part
    /// restorable) or done.
    Job {
        /// What.
        source: Source,
        /// Compress (default true).
        #[serde(default = "yes")]
        compression: bool,
        /// Bytes stored before the crash ("72M"); the session must also have committed objects
        /// (the status endpoint's latest session shows them).
        crash_after: String,
        /// On the appliance, the service's reads of the source are held to this rate ("8M") by
        /// the kernel (cgroup `io.max` through systemd), so that the job lasts long enough to be
        /// interrupted however fast the library is; the virtual tier paces the job with
        /// `library.virtual_drive_rate` instead.
        #[serde(default)]
        read_rate: Option<String>,
    },
}

fn yes() -> bool {
    true
}
fn complete() -> Outcome {
    Outcome::Complete
}

impl Step {
    /// Its name in messages and the summary.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Inventory {} => "inventory",
            Step::Status {} => "status",
            Step::Backup { .. } => "backup",
            Step::Verify {} => "verify",
            Step::Restore { .. } => "restore",
            Step::Scan { .. } => "scan",
            Step::Unload {} => "unload",
            Step::Load { .. } => "load",
            Step::Check { .. } => "check",
            Step::Console { .. } => "console",
            Step::Crosscheck {} => "crosscheck",
            Step::Job { .. } => "job",
        }
    }
}

/// Parses sizes like "24M", "512K", "3G" or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Reads and checks one scenario file; the error names the file and the key.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let mut s: Scenario = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    s.name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    s.check().map_err(|(key, what)| format!("{file}: {key}: {what}"))?;
    Ok(s)
}

/// Every scenario in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

type Bad = (String, String);

fn bad(key: impl Into<String>, what: impl Into<String>) -> Bad {
    (key.into(), what.into())
}

impl Scenario {
    fn check(&self) -> Result<(), Bad> {
        if self.tiers.is_empty() {
            return Err(bad("tiers", "name at least one tier: \"virtual\", \"tgt\""));
        }
        if self.steps.is_empty() {
            return Err(bad("step", "a scenario needs at least one [[step]]"));
        }
        let l = &self.library;
        let tgt = self.tiers.contains(&Tier::Tgt);
        if !(1..=16).contains(&l.drives) {
            return Err(bad("library.drives", "1 to 16"));
        }
        if !(1..=512).contains(&l.slots) {
            return Err(bad("library.slots", "1 to 512"));
        }
        if l.import_export > 64 {
            return Err(bad("library.import_export", "0 to 64"));
        }
        if l.cartridges + l.cleaning > l.slots {
            return Err(bad(
                "library.cartridges",
                "the cartridges and cleaning cartridges do not fit the slots",
            ));
        }
        let p = &l.barcode_prefix;
        if !(1..=4).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(bad("library.barcode_prefix", "1 to 4 capital letters or digits"));
        }
        if l.capacity_mib().is_none_or(|m| m < 16) {
            return Err(bad("library.capacity", format!("'{}': whole MiB, at least 16M", l.capacity)));
        }
        if tgt && !l.faults.is_empty() {
            return Err(bad(
                "library.fault",
                "tgt cannot inject faults: such a scenario runs on tiers = [\"virtual\"]",
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let key = |k: &str| format!("step {} ({}).{k}", i + 1, step.name());
            match step {
                Step::Backup { source, .. } | Step::Job { source, .. } => source.check(&key, tgt)?,
                Step::Load { barcode, drive } => {
                    if *drive >= l.drives {
                        return Err(bad(key("drive"), format!("the library has {} drives", l.drives)));
                    }
                    if !(1..=l.slots).any(|s| l.slot(s).as_deref() == Some(barcode.as_str())) {
                        return Err(bad(key("barcode"), format!("{barcode} is not in the library")));
                    }
                }
                Step::Check { offline_drives, .. } => {
                    if let Some(d) = offline_drives.iter().find(|&&d| d >= l.drives) {
                        return Err(bad(
                            key("offline_drives"),
                            format!("drive {d}: the library has {} drives", l.drives),
                        ));
                    }
                }
                Step::Console { command, .. }
                    if command.trim().is_empty() || !command.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
                {
                    return Err(bad(key("command"), "a line of printable ASCII"));
                }
                Step::Crosscheck {} if self.tiers.contains(&Tier::Virtual) => {
                    return Err(bad(
                        key("do"),
                        "crosscheck needs mtx and mt on device nodes: tiers = [\"tgt\"]",
                    ));
                }
                _ => {}
            }
            if let Step::Job { crash_after, .. } = step
                && parse_size(crash_after).is_none()
            {
                return Err(bad(key("crash_after"), format!("'{crash_after}': a size like 8M")));
            }
            if let Step::Job { read_rate: Some(rate), .. } = step
                && parse_size(rate).is_none()
            {
                return Err(bad(key("read_rate"), format!("'{rate}': a rate like 8M")));
            }
        }
        Ok(())
    }
}

impl Source {
    fn check(&self, key: &dyn Fn(&str) -> String, tgt: bool) -> Result<(), Bad> {
        match (&self.tree, self.random) {
            (Some(t), None) => {
                if !t.starts_with('/') {
                    return Err(bad(key("source.tree"), format!("'{t}': an absolute path")));
                }
                if self.size.is_some() {
                    return Err(bad(key("source.size"), "only with random"));
                }
                if let Some(l) = &self.limit
                    && parse_size(l).is_none()
                {
                    return Err(bad(key("source.limit"), format!("'{l}': a size like 24M")));
                }
                Ok(())
            }
            (None, Some(n)) => {
                if tgt {
                    return Err(bad(
                        key("source.random"),
                        "generated sources are for the virtual tier: use a tree",
                    ));
                }
                if n == 0 || self.size.is_none_or(|s| s == 0) {
                    return Err(bad(
                        key("source.size"),
                        "random needs a count and a size of at least 1 byte",
                    ));
                }
                Ok(())
            }
            _ => Err(bad(key("source"), "give either tree (and limit) or random (and size)")),
        }
    }
}

/// What a command did on the box.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Its JSON (`--json` prints one document).
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(self.stdout.trim()).map_err(|e| format!("not JSON ({e}): {self}"))
    }

    fn ok(self, what: &str) -> Result<Out, String> {
        if self.code == 0 { Ok(self) } else { Err(format!("{what}: {self}")) }
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit status {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// One tier's box.
pub trait Appliance {
    /// Which tier.
    fn tier(&self) -> Tier;
    /// `coffer --json ARGS` on the box.
    fn coffer(&mut self, args: &[&str]) -> Result<Out, String>;
    /// A bash script on the box.
    fn sh(&mut self, script: &str) -> Result<Out, String>;
    /// A directory on the box for this scenario's trees.
    fn scratch(&self) -> String;
    /// The library's name in the box's board.
    fn library(&self) -> String;
    /// Generated source files (virtual tier).
    fn random_source(&mut self, dir: &str, files: u32, size: u64, seed: u64) -> Result<(), String>;
    /// Starts the service; returns once it is READY.
    fn start_service(&mut self) -> Result<(), String>;
    /// Stops the service (SIGTERM) and waits for it to exit.
    fn stop_service(&mut self) -> Result<(), String>;
    /// Kills the service (SIGKILL) and starts it again; returns once it is READY.
    fn crash_service(&mut self) -> Result<(), String>;
    /// Holds the service's reads of the file system under `path` to `rate` bytes a second from
    /// the next read on (the file data is dropped from the page cache first). The virtual tier
    /// does nothing: its drives are paced by their own rate.
    fn throttle_reads(&mut self, path: &str, rate: &str) -> Result<(), String>;
    /// The status endpoint's `/api/status`.
    fn status(&mut self) -> Result<Value, String>;
    /// Whether the service runs now (on the appliance it starts at boot).
    fn service_running(&mut self) -> Result<bool, String>;
    /// Bytes in a cartridge's backing file now, and when the library was made.
    fn cartridge_bytes(&self, barcode: &str) -> Option<(u64, u64)>;
    /// The changer's and the drives' device nodes on the box (tgt tier).
    fn devices(&self) -> Option<(String, Vec<String>)>;
    /// Types `commands` at the serial console, logged in with [`CONSOLE_PIN`]; their answers.
    fn console(&mut self, commands: &[&str]) -> Result<Vec<String>, String>;
}

/// The console PIN of both tiers' boards.
pub const CONSOLE_PIN: &str = "2468";

/// Logs in on `term`, types each command, logs out: the answers.
pub fn console_session<T: std::io::Read + std::io::Write + std::os::fd::AsFd>(
    term: &mut crate::common::terminal::Terminal<T>,
    commands: &[&str],
) -> Result<Vec<String>, String> {
    term.login(CONSOLE_PIN)?;
    let answers = commands.iter().map(|c| term.ask(c)).collect::<Result<Vec<_>, _>>()?;
    term.logout()?;
    Ok(answers)
}

/// What a scenario did, for the summary.
#[derive(Debug, Default)]
pub struct Report {
    /// Bytes stored by its backups.
    pub bytes: u64,
    /// A line per step: name, seconds, what it saw.
    pub steps: Vec<String>,
}

/// What the steps remember between them.
#[derive(Default)]
struct Ctx {
    source: Option<String>,
    restores: u32,
    service: bool,
}

/// Runs every step of `s` on `a`; the error names the step.
pub fn run(s: &Scenario, a: &mut dyn Appliance, report: &mut Report) -> Result<(), String> {
    let mut ctx = Ctx { service: a.service_running()?, ..Ctx::default() };
    for (i, step) in s.steps.iter().enumerate() {
        let t0 = Instant::now();
        let seen = run_step(s, a, step, &mut ctx, report)
            .map_err(|e| format!("{}: step {} ({}): {e}", s.name, i + 1, step.name()))?;
        report.steps.push(format!("{:<10} {:>6.1} s  {seen}", step.name(), t0.elapsed().as_secs_f64()));
    }
    if ctx.service {
        a.stop_service()?;
    }
    Ok(())
}

fn run_step(
    s: &Scenario,
    a: &mut dyn Appliance,
    step: &Step,
    ctx: &mut Ctx,
    report: &mut Report,
) -> Result<String, String> {
    // Steps by hand need the library: the service holds it while it runs.
    if ctx.service && !matches!(step, Step::Status {} | Step::Console { .. }) {
        a.stop_service()?;
        ctx.service = false;
    }
    match step {
        Step::Inventory {} => {
            let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
            inventory_matches(&s.library, &inv)?;
            Ok(format!("{} places as laid out", inv["places"].as_array().map_or(0, Vec::len)))
        }
        Step::Status {} => {
            if !ctx.service {
                a.start_service()?;
                ctx.service = true;
            }
            let st = a.status()?;
            status_matches(&s.library, &st)?;
            Ok(format!("READY and healthy: {}", st["devices"]))
        }
        Step::Backup {
            source,
            compression,
            expect,
            error,
            failed_streams,
            warns,
            streams_used,
            min_parts,
        } => {
            let src = prepare_source(a, source, ctx)?;
            let to = format!("library:{}", a.library());
            let mut args = vec!["backup", src.as_str(), "--to", to.as_str()];
            if !compression {
                args.push("--no-compression");
            }
            let r = a.coffer(&args)?;
            let j = r.json()?;
            report.bytes += j["bytes_stored"].as_u64().unwrap_or(0);
            check_backup(
                &j,
                &r,
                *expect,
                error.as_deref(),
                *failed_streams,
                warns.as_deref(),
                *streams_used,
            )?;
            let parts = if let Some(min) = min_parts {
                let n = session_parts(a)?;
                if n < *min {
                    return Err(format!(
                        "the session has {n} parts, expected at least {min} (spanning): {r}"
                    ));
                }
                format!(", {n} parts")
            } else {
                String::new()
            };
            Ok(format!(
                "{}: {} B in, {} B stored on {} streams{parts}",
                j["status"].as_str().unwrap_or("?"),
                j["bytes_in"],
                j["bytes_stored"],
                j["streams"].as_array().map_or(0, Vec::len)
            ))
        }
        Step::Verify {} => {
            let j = a.coffer(&["verify", "latest"])?.ok("coffer verify latest")?.json()?;
            Ok(format!("{} objects verified", j["objects"]))
        }
        Step::Restore { compare, min_files } => {
            let src = ctx.source.clone().ok_or("restore needs a backup or job step before it")?;
            ctx.restores += 1;
            let dest = format!("{}/restore-{}", a.scratch(), ctx.restores);
            let r = a.coffer(&["restore", "latest", "--to", &dest])?.ok("coffer restore latest")?;
            let n = compare_trees(a, &src, &dest, *compare)?;
            if n < *min_files {
                return Err(format!("{n} files restored, expected at least {min_files}"));
            }
            let j = r.json().unwrap_or(Value::Null);
            Ok(format!("{n} files identical ({compare:?}), {} seeks", j["tape"][0]["seeks"]))
        }
        Step::Scan { compare } => {
            let src = ctx.source.clone().ok_or("scan needs a backup or job step before it")?;
            ctx.restores += 1;
            let state = format!("{}/scanned-state-{}", a.scratch(), ctx.restores);
            let lib = format!("library:{}", a.library());
            let r = a.coffer(&["scan", &lib, "--state", &state])?.ok("coffer scan")?;
            let j = r.json()?;
            if j["sessions_added"].as_u64().unwrap_or(0) == 0 {
                return Err(format!("the scan added no session: {r}"));
            }
            let dest = format!("{}/restore-{}", a.scratch(), ctx.restores);
            a.coffer(&["restore", "latest", "--to", &dest, "--state", &state])?
                .ok("coffer restore latest from the rebuilt catalog")?;
            let n = compare_trees(a, &src, &dest, *compare)?;
            Ok(format!(
                "{} media, {} sessions, {} objects; {n} files restored ({compare:?})",
                j["media"], j["sessions_added"], j["objects_added"]
            ))
        }
        Step::Unload {} => {
            let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
            let mut n = 0;
            for d in inv["drives"].as_array().into_iter().flatten() {
                if d["barcode"].is_string() {
                    let drive = d["drive"].to_string();
                    a.coffer(&["media", "unload", "--drive", &drive])?.ok("coffer media unload")?;
                    n += 1;
                }
            }
            let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
            if let Some(d) = inv["drives"].as_array().into_iter().flatten().find(|d| !d["barcode"].is_null())
            {
                return Err(format!("drive {} still holds {} after the unload", d["drive"], d["barcode"]));
            }
            Ok(format!("{n} drives unloaded"))
        }
        Step::Load { barcode, drive } => {
            let d = drive.to_string();
            a.coffer(&["media", "load", barcode, "--drive", &d])?.ok("coffer media load")?;
            let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
            if inv["drives"][*drive as usize]["barcode"] != barcode.as_str() {
                return Err(format!("drive {drive} should hold {barcode}: {inv}"));
            }
            Ok(format!("{barcode} in drive {drive}"))
        }
        Step::Check { never_written, offline_drives } => {
            for b in never_written {
                let (now, fresh) =
                    a.cartridge_bytes(b).ok_or_else(|| format!("no cartridge file for {b}"))?;
                // At most a foreign label block and its filemark besides what was there.
                if now > fresh + 300_000 {
                    return Err(format!("{b} was written ({fresh} bytes at first, {now} now)"));
                }
            }
            if !offline_drives.is_empty() {
                let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
                for d in offline_drives {
                    if !inv["drives"][*d as usize]["offline"].is_string() {
                        return Err(format!("drive {d} should be offline: {inv}"));
                    }
                }
            }
            Ok(format!("{} never written, {} offline", never_written.len(), offline_drives.len()))
        }
        Step::Console { command, expect } => {
            if !ctx.service {
                a.start_service()?;
                ctx.service = true;
            }
            let answer = a.console(&[command])?.remove(0);
            if let Some(missing) = expect.iter().find(|e| !answer.contains(e.as_str())) {
                return Err(format!("the console's answer to `{command}` lacks {missing:?}:\n{answer}"));
            }
            let first = answer.lines().map(str::trim).find(|l| !l.is_empty() && *l != command.trim());
            Ok(format!("`{command}`: {}", first.unwrap_or("(nothing)")))
        }
        Step::Crosscheck {} => crosscheck(a),
        Step::Job { source, compression, crash_after, read_rate } => {
            let (r, stored) = job_with_crash(a, source, *compression, crash_after, read_rate, ctx)?;
            report.bytes += stored;
            ctx.service = true;
            Ok(r)
        }
    }
}

/// The inventory shows the layout: drives empty and online, data cartridges in the first
/// slots, cleaning ones in the last, mail slots empty.
pub fn inventory_matches(l: &Layout, inv: &Value) -> Result<(), String> {
    let places = inv["places"].as_array().ok_or_else(|| format!("no places: {inv}"))?;
    let named = |prefix: &str| -> Vec<&Value> {
        places.iter().filter(|p| p["element"].as_str().is_some_and(|e| e.starts_with(prefix))).collect()
    };
    let (drives, slots, mail) = (named("drive "), named("slot "), named("mail slot "));
    let want = (l.drives as usize, l.slots as usize, l.import_export as usize);
    if (drives.len(), slots.len(), mail.len()) != want {
        return Err(format!(
            "{} drives, {} slots, {} mail slots; the layout has {want:?}: {inv}",
            drives.len(),
            slots.len(),
            mail.len()
        ));
    }
    for (i, p) in slots.iter().enumerate() {
        let want = l.slot(i as u32 + 1);
        if p["element"] != format!("slot {}", i + 1)
            || p["barcode"].as_str() != want.as_deref()
            || p["full"] != want.is_some()
        {
            return Err(format!("slot {}: {p}, expected {want:?}", i + 1));
        }
    }
    if let Some(p) = drives.iter().chain(&mail).find(|p| p["full"] != false) {
        return Err(format!("{} should be empty: {p}", p["element"]));
    }
    let online = inv["drives"].as_array().map_or(0, |d| d.iter().filter(|d| d["offline"].is_null()).count());
    if online != l.drives as usize {
        return Err(format!("{online} drives online, expected {}: {inv}", l.drives));
    }
    Ok(())
}

/// The status endpoint of a service that is READY with the library: healthy, the library
/// listed with its drives (and, where the snapshot lists drives one by one, every drive).
pub fn status_matches(l: &Layout, st: &Value) -> Result<(), String> {
    if st["healthy"] != true {
        return Err(format!("the service is not healthy: {st}"));
    }
    let want = format!("{} drives", l.drives);
    let listed = st["devices"]
        .as_array()
        .is_some_and(|d| d.iter().any(|d| d.as_str().is_some_and(|d| d.contains(&want))));
    if !listed {
        return Err(format!("the status lists no library with {want}: {st}"));
    }
    let drives = st["drives"].as_array().map_or(0, Vec::len);
    if drives != 0 && drives != l.drives as usize {
        return Err(format!("{drives} drives in the status, expected {}: {st}", l.drives));
    }
    Ok(())
}

fn check_backup(
    j: &Value,
    r: &Out,
    expect: Outcome,
    error: Option<&str>,
    failed_streams: Option<u64>,
    warns: Option<&str>,
    streams_used: Option<u64>,
) -> Result<(), String> {
    let want = if expect == Outcome::Complete { ("complete", 0) } else { ("failed", 2) };
    if j["status"] != want.0 || r.code != want.1 {
        return Err(format!("expected {} (exit status {}): {r}", want.0, want.1));
    }
    if let Some(e) = error
        && !j["error"].as_str().is_some_and(|x| x.contains(e))
    {
        return Err(format!("the error should say '{e}': {r}"));
    }
    let streams = j["streams"].as_array().cloned().unwrap_or_default();
    if let Some(n) = failed_streams {
        let failed = streams.iter().filter(|s| !s["error"].is_null()).count() as u64;
        if failed != n {
            return Err(format!("{failed} streams failed, expected {n}: {r}"));
        }
    }
    if let Some(w) = warns
        && !format!("{}\n{}", r.stdout, r.stderr).contains(w)
    {
        return Err(format!("should warn '{w}': {r}"));
    }
    if let Some(n) = streams_used {
        let used = streams.iter().filter(|s| s["bytes"].as_u64().unwrap_or(0) > 0).count() as u64;
        if used < n {
            return Err(format!("{used} streams wrote bytes, expected at least {n}: {r}"));
        }
    }
    Ok(())
}

/// Distinct (stream, part) pairs of the latest session's objects.
fn session_parts(a: &mut dyn Appliance) -> Result<u64, String> {
    let ls = a.coffer(&["ls", "latest"])?.ok("coffer ls latest")?.json()?;
    let parts: BTreeSet<(u64, u64)> = ls
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| Some((o["stream"].as_u64()?, o["part"].as_u64()?)))
        .collect();
    Ok(parts.len() as u64)
}

/// Makes the source on the box; returns its path.
fn prepare_source(a: &mut dyn Appliance, s: &Source, ctx: &mut Ctx) -> Result<String, String> {
    let dir = format!("{}/source", a.scratch());
    if let Some(n) = s.random {
        a.random_source(&dir, n, s.size.unwrap_or(0), s.seed)?;
    } else {
        let tree = s.tree.as_deref().expect("checked: tree or random");
        let limit = s.limit.as_deref().and_then(parse_size).unwrap_or(u64::MAX / 2);
        // Regular files in path order while they fit the limit, copied with their paths.
        let script = format!(
            "set -euo pipefail\nrm -rf '{dir}'; mkdir -p '{dir}'\ncd '{tree}'\n\
             find . -xdev -type f -printf '%s %P\\n' | LC_ALL=C sort -k2 | \
             awk -v limit={limit} '$1 <= limit - total {{ total += $1; print substr($0, index($0, \" \") + 1) }}' | \
             tr '\\n' '\\0' | xargs -0 -r cp --parents -p -t '{dir}'\n\
             find '{dir}' -type f | wc -l; du -sb '{dir}' | cut -f1\n"
        );
        let r = a.sh(&script)?.ok(&format!("copying {tree} into {dir}"))?;
        let files: u64 = r.stdout.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if files < 2 {
            return Err(format!("{tree} gave {files} files: a tree of at least 2 files is needed"));
        }
    }
    ctx.source = Some(dir.clone());
    Ok(dir)
}

/// A manifest of a tree on the box (type, mode, size, digest, path of every entry); compares
/// `dest` with `src`. Returns the number of regular files compared.
fn compare_trees(a: &mut dyn Appliance, src: &str, dest: &str, how: Compare) -> Result<u64, String> {
    let manifest = |dir: &str| {
        format!(
            "(cd '{dir}' && find . -mindepth 1 \\( -type d -printf '%y %m - %P\\n' \\) -o -printf '%y %m %s %P\\n' && \
             find . -type f -print0 | xargs -0 -r sha256sum)"
        )
    };
    let script = format!(
        "set -euo pipefail\necho '== source'\n{}\necho '== restored'\n{}\n",
        manifest(src),
        manifest(dest)
    );
    let r = a.sh(&script)?.ok("listing the trees")?;
    let (s, d) = r.stdout.split_once("== restored\n").ok_or("no manifests")?;
    let s: BTreeSet<&str> = s.lines().skip(1).collect();
    let d: BTreeSet<&str> = d.lines().collect();
    let files = d.iter().filter(|l| l.starts_with("f ")).count() as u64;
    match how {
        Compare::Identical => {
            if s != d {
                let mut msg = String::from("restored tree differs from the source:\n");
                for l in s.symmetric_difference(&d).take(20) {
                    let side = if s.contains(l) { "only in source" } else { "only restored" };
                    let _ = writeln!(msg, "  {side}: {l}");
                }
                return Err(msg);
            }
        }
        Compare::Partial => {
            // Every restored file's line (size, digest) is the source's; directories may
            // differ in what they hold.
            if let Some(l) = d.iter().find(|l| !l.starts_with("d ") && !s.contains(*l)) {
                return Err(format!("restored entry not as in the source: {l}"));
            }
        }
    }
    Ok(files)
}

/// `mtx status` and `mt status` agree with coffer's inventory.
fn crosscheck(a: &mut dyn Appliance) -> Result<String, String> {
    let (changer, drives) = a.devices().ok_or("this tier has no device nodes")?;
    let inv = a.coffer(&["media", "inventory"])?.ok("coffer media inventory")?.json()?;
    let mtx = a.sh(&format!("mtx -f {changer} status"))?.ok("mtx status")?;
    let seen = parse_mtx(&mtx.stdout);
    let places = inv["places"].as_array().cloned().unwrap_or_default();
    let ours = |prefix: &str| -> Vec<Option<String>> {
        places
            .iter()
            .filter(|p| p["element"].as_str().is_some_and(|e| e.starts_with(prefix)))
            .map(|p| p["barcode"].as_str().map(str::to_owned).filter(|_| p["full"] == true))
            .collect()
    };
    let (our_drives, mut our_slots) = (ours("drive "), ours("slot "));
    our_slots.extend(ours("mail slot "));
    if seen.drives != our_drives || seen.slots != our_slots {
        return Err(format!(
            "mtx and coffer disagree:\n mtx drives {:?}\n coffer    {our_drives:?}\n mtx slots  {:?}\n coffer     {our_slots:?}\n{}",
            seen.drives, seen.slots, mtx.stdout
        ));
    }
    let mut loaded = 0;
    for (i, dev) in drives.iter().enumerate() {
        let mt = a.sh(&format!("mt -f {dev} status"))?;
        let online = mt.stdout.contains("ONLINE");
        let open = mt.stdout.contains("DR_OPEN");
        let full = our_drives.get(i).is_some_and(Option::is_some);
        if full != online || full == open {
            return Err(format!(
                "{dev}: coffer says {}, mt status says:\n{mt}",
                if full { "loaded" } else { "empty" }
            ));
        }
        loaded += usize::from(full);
    }
    Ok(format!(
        "mtx: {} drives, {} slots agree; mt: {loaded} loaded, {} empty agree",
        seen.drives.len(),
        seen.slots.len(),
        drives.len() - loaded
    ))
}

/// What `mtx status` shows.
#[derive(Debug, Default, PartialEq)]
pub struct MtxStatus {
    /// Each data transfer element's barcode, if full.
    pub drives: Vec<Option<String>>,
    /// Each storage element's (mail slots last, as mtx numbers them).
    pub slots: Vec<Option<String>>,
}

/// Parses `mtx status`: `Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag = X`,
/// `Storage Element 3:Full :VolumeTag=X`, `... IMPORT/EXPORT:Empty`.
pub fn parse_mtx(text: &str) -> MtxStatus {
    let tag = |l: &str| -> Option<String> {
        if !l.contains(":Full") {
            return None;
        }
        l.split_once("VolumeTag")
            .map(|(_, t)| t.trim_start_matches([' ', '=']).trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let mut m = MtxStatus::default();
    for l in text.lines().map(str::trim) {
        if l.starts_with("Data Transfer Element") {
            m.drives.push(tag(l).or_else(|| l.contains(":Full").then(String::new)));
        } else if l.starts_with("Storage Element") {
            m.slots.push(tag(l));
        }
    }
    m
}

/// Runs a job through the service and crashes the service once it has stored `crash_after`
/// bytes and committed objects; the job must end failed (its session closed as interrupted), or
/// done. Returns what it saw and the bytes stored at the crash.
fn job_with_crash(
    a: &mut dyn Appliance,
    source: &Source,
    compression: bool,
    crash_after: &str,
    read_rate: &Option<String>,
    ctx: &mut Ctx,
) -> Result<(String, u64), String> {
    let src = prepare_source(a, source, ctx)?;
    if let Some(rate) = read_rate {
        a.throttle_reads(&src, rate)?;
    }
    let crash_at = parse_size(crash_after).expect("checked");
    let job_file = format!("{}/job.toml", a.scratch());
    let lib = a.library();
    a.sh(&format!(
        "cat >'{job_file}' <<'EOF'\nname = \"hil\"\nsources = [\"{src}\"]\nto = [\"library:{lib}\"]\ncompression = {compression}\nEOF\n"
    ))?
    .ok("writing the job file")?;
    a.start_service()?;
    let submitted = a.coffer(&["job", "submit", &job_file])?.ok("coffer job submit")?.json()?;
    let id = submitted["job"].to_string();
    let t0 = Instant::now();
    let mut watched = false;
    let stored = loop {
        let st = a.status()?;
        // The running job's progress, as the endpoint shows it.
        let stored = st["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["state"] == "active")
            .filter_map(|j| j["progress"]["bytes_stored"].as_u64())
            .max()
            .unwrap_or(0);
        // And objects committed: the crash must leave something to restore.
        let committed =
            st["latest"]["status"] == "running" && st["latest"]["objects"].as_u64().unwrap_or(0) > 0;
        if stored >= crash_at && committed {
            break stored;
        }
        // Once, while the job runs: the console shows it, and the front panel says so.
        if stored > 0 && !watched {
            let answer = a.console(&["status"])?.remove(0);
            let (job, panel) = (format!("job {id} (hil)"), format!("panel: |BKP J{id} "));
            if !answer.contains(&job) || !answer.contains(&panel) {
                return Err(format!(
                    "the console's status during job {id} lacks {job:?} or {panel:?}:\n{answer}"
                ));
            }
            watched = true;
        }
        let job = a.coffer(&["job", "show", &id])?.json()?;
        if job["state"] != "active" && job["state"] != "ready" {
            return Err(format!(
                "the job ended before {crash_after} were stored: the source is too small: {job}"
            ));
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(format!("the job never stored {crash_after}: {st}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    a.crash_service()?;
    let t0 = Instant::now();
    let job = loop {
        let job = a.coffer(&["job", "show", &id])?.ok("coffer job show")?.json()?;
        if job["state"] == "failed" || job["state"] == "done" {
            break job;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(format!("the job neither failed nor finished after the restart: {job}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let state = job["state"].as_str().unwrap_or("?").to_owned();
    if state == "failed" {
        let why = job["history"]
            .as_array()
            .and_then(|h| h.iter().rev().find(|e| e["state"] == "failed"))
            .map(|e| e["message"].clone());
        // The crash lands mid-session (closed as interrupted) or, when the job was quicker
        // than the crash, after its session ended while the job still ran (unloading).
        let said = |m: &str| m.contains("closed as interrupted") || m.contains("had ended complete");
        if !why.as_ref().and_then(Value::as_str).is_some_and(said) {
            return Err(format!(
                "a job failed by the crash should say its session was closed as interrupted, or had \
                 ended before: {job}"
            ));
        }
    }
    Ok((format!("crashed at {stored} B stored; job {id} {state}"), stored))
}
