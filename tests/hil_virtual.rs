//! The fast tier of the hardware-in-the-loop tests: every scenario of `hil/scenarios/` whose
//! `tiers` include "virtual" runs here on the built-in virtual library, its drives refusing
//! READ POSITION and LOCATE as Linux tgt does (`positioning = false`), so that positioning by
//! SPACE is what restores use. The same files drive the tgt tier (`tests/hil_tgt.rs`, run by
//! `hil/run`). The steps and their checks are in `tests/scenario/`; a summary table of
//! scenario, result, time and bytes ends the run.

mod common;
mod scenario;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::terminal::open_pty;
use common::*;
use scenario::{Appliance, CONSOLE_PIN, Out, Report, Scenario, Tier};
use serde_json::Value;

const TOKEN: &str = "hil-virtual-token-0123";

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hil/scenarios")
}

/// A box with the virtual library: the coffer binary, a board and a state directory of its
/// own, and the service when a step wants it.
struct Local {
    env: Env,
    board: PathBuf,
    carts: PathBuf,
    port: u16,
    service: Option<Service>,
}

impl Local {
    fn new(s: &Scenario) -> Local {
        let env = Env::new();
        let carts = env.path("carts");
        let board = env.path("board.toml");
        let port = free_port();
        let l = &s.library;
        let mut lib = toml::Table::new();
        for (k, v) in [
            ("name", "vlib"),
            ("kind", "virtual"),
            ("capacity", &l.capacity),
            ("barcode_prefix", &l.barcode_prefix),
        ] {
            lib.insert(k.into(), toml::Value::String(v.into()));
        }
        for (k, v) in [
            ("drives", l.drives),
            ("slots", l.slots),
            ("import_export", l.import_export),
            ("cartridges", l.cartridges),
            ("cleaning", l.cleaning),
        ] {
            lib.insert(k.into(), toml::Value::Integer(v.into()));
        }
        lib.insert("positioning".into(), toml::Value::Boolean(false));
        lib.insert("dir".into(), toml::Value::String(carts.display().to_string()));
        if let Some(rate) = &l.virtual_drive_rate {
            lib.insert("drive_rate".into(), toml::Value::String(rate.clone()));
            lib.insert("drive_buffer".into(), toml::Value::String("1M".into()));
            lib.insert("drive_reposition_ms".into(), toml::Value::Integer(10));
        }
        if !l.faults.is_empty() {
            lib.insert("fault".into(), toml::Value::Array(l.faults.clone()));
        }
        let text = format!(
            "name = \"hil\"\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{CONSOLE_PIN}\"\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[jobs]\nscan_seconds = 1\n\n{}",
            toml::to_string(&toml::Table::from_iter([(
                "library".to_owned(),
                toml::Value::Array(vec![toml::Value::Table(lib)]),
            )]))
            .unwrap()
        );
        std::fs::write(&board, text).unwrap();
        Local { env, board, carts, port, service: None }
    }

    fn out(r: Run) -> Out {
        Out { code: r.code, stdout: r.stdout, stderr: r.stderr }
    }
}

impl Appliance for Local {
    fn tier(&self) -> Tier {
        Tier::Virtual
    }

    fn coffer(&mut self, args: &[&str]) -> Result<Out, String> {
        let mut c = self.env.command(&["--json", "--board", self.board.to_str().unwrap()]);
        c.args(args);
        Ok(Local::out(run(c)))
    }

    fn sh(&mut self, script: &str) -> Result<Out, String> {
        let mut c = std::process::Command::new("bash");
        c.arg("-c").arg(script);
        Ok(Local::out(run(c)))
    }

    fn scratch(&self) -> String {
        self.env.path("scratch").display().to_string()
    }

    fn library(&self) -> String {
        "vlib".into()
    }

    fn random_source(&mut self, dir: &str, files: u32, size: u64, seed: u64) -> Result<(), String> {
        let dir = Path::new(dir);
        let _ = std::fs::remove_dir_all(dir);
        for i in 0..u64::from(files) {
            write_file(&dir.join(format!("f{i}.bin")), &random_bytes(seed + i, size as usize));
        }
        Ok(())
    }

    fn start_service(&mut self) -> Result<(), String> {
        self.service = Some(try_start_service(&self.env, &self.board, true)?);
        Ok(())
    }

    fn stop_service(&mut self) -> Result<(), String> {
        if let Some(mut svc) = self.service.take() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(svc.child.id() as i32, libc::SIGTERM) };
            let st = svc.child.wait().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("coffer serve exited with {st} on SIGTERM"));
            }
        }
        Ok(())
    }

    fn throttle_reads(&mut self, _path: &str, _rate: &str) -> Result<(), String> {
        // The virtual drives are paced by `library.virtual_drive_rate`.
        Ok(())
    }

    fn crash_service(&mut self) -> Result<(), String> {
        if let Some(mut svc) = self.service.take() {
            svc.child.kill().map_err(|e| e.to_string())?;
            svc.child.wait().map_err(|e| e.to_string())?;
        }
        self.start_service()
    }

    fn status(&mut self) -> Result<Value, String> {
        let t0 = Instant::now();
        loop {
            if let Some(a) = http_get(self.port, "/api/status", Some(&format!("Bearer {TOKEN}")))
                && a.code == 200
            {
                return serde_json::from_str(&a.body).map_err(|e| format!("/api/status: {e}: {}", a.body));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!("the status endpoint on port {} does not answer", self.port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn service_running(&mut self) -> Result<bool, String> {
        Ok(self.service.is_some())
    }

    fn cartridge_bytes(&self, barcode: &str) -> Option<(u64, u64)> {
        // Cartridges are files once written; a fresh one has none.
        Some((std::fs::metadata(self.carts.join(format!("{barcode}.tape"))).map_or(0, |m| m.len()), 0))
    }

    fn devices(&self) -> Option<(String, Vec<String>)> {
        None
    }

    fn console(&mut self, commands: &[&str]) -> Result<Vec<String>, String> {
        // `coffer console` on a pty of its own, as a serial line; hanging up ends it.
        let (mut term, tty) = open_pty();
        let mut con = self
            .env
            .command(&["--board", self.board.to_str().unwrap(), "console", "--tty", &tty])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("coffer console: {e}"))?;
        let answers = scenario::console_session(&mut term, commands);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env.path("console.log"))
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut log, &term.transcript).map_err(|e| e.to_string())?;
        drop(term);
        let st = con.wait().map_err(|e| e.to_string())?;
        let answers = answers?;
        if !st.success() {
            return Err(format!("coffer console exited with {st} on hangup"));
        }
        Ok(answers)
    }
}

#[test]
fn every_scenario_on_the_virtual_library() {
    let all = scenario::load_dir(&scenarios_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mine: Vec<&Scenario> = all.iter().filter(|s| s.tiers.contains(&Tier::Virtual)).collect();
    assert!(mine.len() >= 14, "scenarios missing: {} for the virtual tier", mine.len());
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for s in mine {
        let mut report = Report::default();
        let t0 = Instant::now();
        let result = scenario::run(s, &mut Local::new(s), &mut report);
        let secs = t0.elapsed().as_secs_f64();
        rows.push(format!(
            "{:<20} {:<5} {:>7.2} s {:>12} B",
            s.name,
            if result.is_ok() { "pass" } else { "FAIL" },
            secs,
            report.bytes
        ));
        for l in &report.steps {
            println!("  {}: {l}", s.name);
        }
        if let Err(e) = result {
            failures.push(e);
        }
    }
    println!("scenario             result    time          stored");
    for r in rows {
        println!("{r}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn malformed_scenarios_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("colour = 1\ndescription = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"verify\"\n", "colour"),
        ("description = \"x\"\ntiers = [\"qemu\"]\n[[step]]\ndo = \"verify\"\n", "qemu"),
        ("description = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"dance\"\n", "dance"),
        (
            "description = \"x\"\ntiers = [\"virtual\"]\n[library]\ndrives = 0\n[[step]]\ndo = \"verify\"\n",
            "library.drives",
        ),
        (
            "description = \"x\"\ntiers = [\"virtual\"]\n[library]\ncapacity = \"lots\"\n[[step]]\ndo = \"verify\"\n",
            "library.capacity",
        ),
        (
            "description = \"x\"\ntiers = [\"tgt\"]\n[[library.fault]]\nat = \"medium_error\"\ndrive = 0\nblock = 1\n[[step]]\ndo = \"verify\"\n",
            "library.fault",
        ),
        (
            "description = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"load\"\nbarcode = \"CFR0001L8\"\ndrive = 5\n",
            "step 1 (load).drive",
        ),
        (
            "description = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"backup\"\nsource = { tree = \"/usr\", random = 3 }\n",
            "step 1 (backup).source",
        ),
        (
            "description = \"x\"\ntiers = [\"tgt\"]\n[[step]]\ndo = \"backup\"\nsource = { random = 3, size = 9 }\n",
            "source.random",
        ),
        ("description = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"crosscheck\"\n", "crosscheck"),
        ("description = \"x\"\ntiers = [\"virtual\"]\n[[step]]\ndo = \"verify\"\nextra = 1\n", "extra"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let e = scenario::load(&p).expect_err(key);
        assert!(
            e.contains(&format!("bad{i}.toml")) && e.contains(key),
            "case {i} should name the file and '{key}': {e}"
        );
    }
}

#[test]
fn mtx_status_is_read_as_mtx_prints_it() {
    let text = "  Storage Changer /dev/sg2:2 Drives, 10 Slots ( 2 Import/Export )\n\
        Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag = HIL0001L8                       \n\
        Data Transfer Element 1:Empty\n\
              Storage Element 1:Empty:VolumeTag=\n\
              Storage Element 2:Full :VolumeTag=HIL0002L8                       \n\
              Storage Element 3 IMPORT/EXPORT:Empty:VolumeTag=                                \n";
    let m = scenario::parse_mtx(text);
    assert_eq!(m.drives, [Some("HIL0001L8".to_owned()), None]);
    assert_eq!(m.slots, [None, Some("HIL0002L8".to_owned()), None]);
}
