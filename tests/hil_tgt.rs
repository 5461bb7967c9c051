//! The tgt tier of the hardware-in-the-loop tests, run by `hil/run` (not by `cargo test`: it
//! needs tgt, QEMU and the appliance image). For every scenario of `hil/scenarios/` whose
//! `tiers` include "tgt": a tgtd library is built to the scenario's layout
//! (`hil/tgt-library`), the appliance image boots in QEMU with its LUNs as virtio-scsi
//! scsi-generic devices and a board naming them (`hil/guest`), coffer.service comes up READY
//! under systemd, and the steps run in the guest through the harness's command agent, the
//! status endpoint being read through QEMU's port forward. The console log, the journal, the
//! status JSON and tgtd's log of each scenario are kept in the artifacts directory. A summary
//! table of scenario, result, time and bytes ends the run; the exit status is 1 when a
//! scenario failed.
//!
//! Environment: `COFFER_HIL_IMAGE` (the image, built by `image/build --hil`),
//! `COFFER_HIL_ARTIFACTS` (default target/hil-artifacts), `COFFER_HIL_ISCSI_PORT` (13260).
//! Arguments: scenario names to run (default: all of the tier).

mod common;
mod scenario;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use common::terminal::Terminal;
use scenario::{Appliance, CONSOLE_PIN, Out, Report, Scenario, Tier};
use serde_json::Value;

const TOKEN: &str = "hil-tgt-status-token-0123";
/// Longest a boot may take to bring coffer.service to READY (TCG is slow).
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// How long a KVM guest has to print its first kernel line before TCG is used instead.
const KVM_PROBE: Duration = Duration::from_secs(30);
/// Longest one agent command may take (a backup or a restore under TCG).
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one of the harness's scripts; its output goes to ours.
fn script(name: &str, args: &[&str]) -> Result<(), String> {
    let st = Command::new(repo().join("hil").join(name))
        .args(args)
        .status()
        .map_err(|e| format!("hil/{name}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("hil/{name} {}: {st}", args.join(" "))) }
}

/// The agent on the guest's virtio-serial port (protocol in image/hil/coffer-hil-agent).
struct Agent {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next: u64,
}

impl Agent {
    fn connect(sock: &Path) -> Result<Agent, String> {
        let s = UnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Agent { reader: BufReader::new(s), writer, next: 1 })
    }

    /// Runs a bash script in the guest; `None` when no answer came within `limit`.
    fn run(&mut self, script: &str, limit: Duration) -> Result<Option<Out>, String> {
        let id = self.next;
        self.next += 1;
        self.reader.get_ref().set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
        writeln!(self.writer, "{id} {}", b64_encode(script.as_bytes())).map_err(|e| format!("agent: {e}"))?;
        let t0 = Instant::now();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err("the agent's port closed".into()),
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(format!("agent: {e}")),
            }
            let mut f = line.trim_end().splitn(3, ' ');
            let (Some(got), Some(code), out) = (f.next(), f.next(), f.next().unwrap_or("")) else { continue };
            // Answers to earlier commands that timed out are passed over.
            if got != id.to_string() {
                if t0.elapsed() > limit {
                    return Ok(None);
                }
                continue;
            }
            let out = b64_decode(out).ok_or("the agent's answer is not base64")?;
            let code = code.parse().map_err(|_| format!("agent: bad exit status '{code}'"))?;
            return Ok(Some(Out {
                code,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::new(),
            }));
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            s.push(if k <= c.len() { B64[(n >> (18 - 6 * k)) as usize & 63] as char } else { '=' });
        }
    }
    s
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.bytes().filter(|&b| b != b'=') {
        acc = (acc << 6) | B64.iter().position(|&x| x == b)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Single-quotes an argument for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether the guest's kernel has started (its first line is on the console).
fn kernel_started(run: &Path) -> bool {
    std::fs::read(run.join("console.log")).is_ok_and(|b| b.windows(13).any(|w| w == b"Linux version"))
}

/// The appliance image booted on a tgt library.
struct Guest {
    dir: PathBuf,
    drives: u32,
    http_port: u16,
    agent: Agent,
    fresh: Vec<(String, u64)>,
    /// Seconds from QEMU's start to coffer.service READY.
    boot: f64,
}

impl Guest {
    fn boot(s: &Scenario, image: &Path, artifacts: &Path, iscsi_port: u16) -> Result<Guest, String> {
        let dir = artifacts.join(&s.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let l = &s.library;
        let lib = dir.join("library");
        let port = iscsi_port.to_string();
        let n = |v: u32| v.to_string();
        let cap = l.capacity_mib().expect("checked").to_string();
        script(
            "tgt-library",
            &[
                "start",
                lib.to_str().unwrap(),
                "--drives",
                &n(l.drives),
                "--slots",
                &n(l.slots),
                "--import-export",
                &n(l.import_export),
                "--cartridges",
                &n(l.cartridges),
                "--cleaning",
                &n(l.cleaning),
                "--prefix",
                &l.barcode_prefix,
                "--capacity-mb",
                &cap,
                "--port",
                &port,
            ],
        )?;
        let fresh = std::fs::read_dir(lib.join("media"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
            .collect();
        let board = dir.join("board.toml");
        let drives: Vec<String> = (0..l.drives).map(|d| format!("\"/dev/nst{d}\"")).collect();
        std::fs::write(
            &board,
            format!(
                "name = \"coffer-hil\"\nstate = \"/var/lib/coffer\"\n\n[console]\ntty = \"/dev/ttyS0\"\npin = \"{CONSOLE_PIN}\"\n\n\
                 [status]\nlisten = \"0.0.0.0:8470\"\ntoken = \"{TOKEN}\"\n\n[jobs]\nscan_seconds = 1\n\n\
                 [[library]]\nname = \"lto\"\nkind = \"scsi\"\nchanger = \"/dev/sg{}\"\ndrives = [{}]\n",
                l.drives,
                drives.join(", ")
            ),
        )
        .map_err(|e| e.to_string())?;
        let http_port = common::free_port();
        let run = dir.join("guest");
        let args = [
            "start",
            run.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--drives",
            &n(l.drives),
            "--iscsi-port",
            &port,
            "--http-port",
            &http_port.to_string(),
            "--board",
            board.to_str().unwrap(),
        ];
        let mut t0 = Instant::now();
        let started = script("guest", &args);
        // KVM that cannot run the kernel (a nested PVM, say) fails or prints nothing: TCG then.
        let kvm = std::fs::read_to_string(run.join("accel")).unwrap_or_default().trim() == "kvm";
        if !kvm {
            started?;
        } else {
            while started.is_ok() && t0.elapsed() < KVM_PROBE && !kernel_started(&run) {
                std::thread::sleep(Duration::from_millis(500));
            }
            if started.is_err() || !kernel_started(&run) {
                println!(
                    "hil_tgt: the kernel did not start under KVM within {KVM_PROBE:?}: falling back to TCG"
                );
                script("guest", &["stop", run.to_str().unwrap()])?;
                let st = Command::new(repo().join("hil/guest"))
                    .args(args)
                    .env("COFFER_HIL_ACCEL", "tcg")
                    .status()
                    .map_err(|e| format!("hil/guest: {e}"))?;
                if !st.success() {
                    return Err(format!("hil/guest start (TCG): {st}"));
                }
                t0 = Instant::now();
            }
        }
        let mut agent = None;
        while agent.is_none() {
            if t0.elapsed() > BOOT_LIMIT {
                return Err(format!(
                    "the guest's agent did not answer within {BOOT_LIMIT:?}: see {}/console.log",
                    run.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
            if let Ok(mut a) = Agent::connect(&run.join("agent.sock"))
                && a.run("true", Duration::from_secs(5))?.is_some()
            {
                agent = Some(a);
            }
        }
        let mut g = Guest { dir, drives: l.drives, http_port, agent: agent.expect("set"), fresh, boot: 0.0 };
        // Type=notify: active means READY=1 came.
        loop {
            let st = g.sh("systemctl is-active coffer.service || true")?;
            match st.stdout.trim() {
                "active" => break,
                "failed" => {
                    return Err(format!(
                        "coffer.service failed to start: {}",
                        g.sh("journalctl -u coffer -b --no-pager | tail -20")?.stdout
                    ));
                }
                _ if t0.elapsed() > BOOT_LIMIT => {
                    return Err(format!("coffer.service not READY within {BOOT_LIMIT:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        g.boot = t0.elapsed().as_secs_f64();
        let accel = std::fs::read_to_string(run.join("accel")).unwrap_or_default();
        println!(
            "hil_tgt: {}: coffer.service READY {:.1} s after QEMU started ({})",
            s.name,
            g.boot,
            accel.trim()
        );
        Ok(g)
    }

    /// Keeps what the scenario left: the journal, the status JSON, mtx status; then powers off
    /// and takes the library down.
    fn finish(mut self) {
        let keep = |g: &mut Guest, file: &str, script: &str| {
            if let Ok(o) = g.sh(script) {
                let _ = std::fs::write(g.dir.join(file), o.stdout);
            }
        };
        keep(&mut self, "journal.txt", "journalctl -b --no-pager -o short-precise");
        let mtx = format!("mtx -f /dev/sg{} status", self.drives);
        keep(&mut self, "mtx-status.txt", &mtx);
        // The endpoint as the scenario left the box (the service started if a step stopped it).
        let _ = self.sh("systemctl start coffer.service");
        match self.status() {
            Ok(st) => {
                let _ = std::fs::write(self.dir.join("status.json"), format!("{st:#}\n"));
            }
            Err(e) => eprintln!("hil_tgt: no status JSON kept: {e}"),
        }
        keep(&mut self, "journal-coffer.txt", "journalctl -u coffer -b --no-pager -o short-precise");
        let run = self.dir.join("guest");
        let _ = script("guest", &["stop", run.to_str().unwrap()]);
        // The overlay holds the guest's writes (restores): large, and of no use afterwards.
        let _ = std::fs::remove_file(run.join("disk.qcow2"));
        let _ = script("tgt-library", &["stop", self.dir.join("library").to_str().unwrap()]);
        // The cartridges too (tgtd's log stays).
        let _ = std::fs::remove_dir_all(self.dir.join("library/media"));
    }

    fn status_once(&self) -> Result<Value, String> {
        // The guest's board listens on 0.0.0.0, so the endpoint speaks HTTPS with the
        // certificate the guest made at its first boot. Any certificate is accepted on
        // purpose: the harness reaches a throwaway guest through its own local port forward
        // and checks what the box answers, not who it is (tests/status_endpoint.rs checks the
        // fingerprint).
        let auth = format!("Bearer {TOKEN}");
        let trust = common::tls::Trust::AnyCertificate;
        let a = common::tls::https_get(self.http_port, "/api/status", Some(&auth), &trust)
            .map_err(|e| format!("the status endpoint does not answer over HTTPS: {e}"))?
            .http;
        if a.code != 200 {
            return Err(format!("/api/status: HTTP {}: {}", a.code, a.body));
        }
        serde_json::from_str(&a.body).map_err(|e| format!("/api/status: {e}: {}", a.body))
    }
}

impl Appliance for Guest {
    fn tier(&self) -> Tier {
        Tier::Tgt
    }

    fn coffer(&mut self, args: &[&str]) -> Result<Out, String> {
        let line: Vec<String> = args.iter().map(|a| quote(a)).collect();
        // Standard error apart, so that standard output is the JSON alone.
        let r = self.sh(&format!("coffer --json {} 2>/run/coffer-hil.err; rc=$?; echo; echo '--stderr--'; cat /run/coffer-hil.err; exit $rc", line.join(" ")))?;
        let (out, err) = r.stdout.rsplit_once("\n--stderr--\n").unwrap_or((&r.stdout, ""));
        Ok(Out { code: r.code, stdout: out.to_owned(), stderr: err.to_owned() })
    }

    fn sh(&mut self, script: &str) -> Result<Out, String> {
        self.agent
            .run(script, COMMAND_LIMIT)?
            .ok_or_else(|| format!("no answer within {COMMAND_LIMIT:?} to: {script}"))
    }

    fn scratch(&self) -> String {
        "/srv/coffer/hil".into()
    }

    fn library(&self) -> String {
        "lto".into()
    }

    fn random_source(&mut self, _: &str, _: u32, _: u64, _: u64) -> Result<(), String> {
        Err("generated sources are for the virtual tier (the scenario check refuses them)".into())
    }

    fn start_service(&mut self) -> Result<(), String> {
        let r = self.sh("systemctl start coffer.service")?;
        if r.code != 0 {
            return Err(format!("systemctl start coffer.service: {r}"));
        }
        self.status().map(|_| ())
    }

    fn stop_service(&mut self) -> Result<(), String> {
        let r = self.sh("systemctl stop coffer.service; systemctl is-active coffer.service || true")?;
        match r.stdout.trim() {
            "inactive" => Ok(()),
            s => Err(format!("coffer.service is {s} after systemctl stop: {r}")),
        }
    }

    fn throttle_reads(&mut self, path: &str, rate: &str) -> Result<(), String> {
        // systemd finds the block device under `path` and writes the cgroup's io.max; dropping
        // the page cache makes the next reads of the source go to that device.
        let r = self.sh(&format!(
            "set -e\nsystemctl set-property --runtime coffer.service 'IOReadBandwidthMax={path} {rate}'\n\
             sync\necho 3 >/proc/sys/vm/drop_caches\nsystemctl show -P IOReadBandwidthMax coffer.service\n"
        ))?;
        if r.code != 0 || r.stdout.trim().is_empty() {
            return Err(format!("holding coffer.service's reads of {path} to {rate}: {r}"));
        }
        Ok(())
    }

    fn crash_service(&mut self) -> Result<(), String> {
        // SIGKILL: systemd sees the service die and restarts it (Restart=on-failure).
        let before =
            self.sh("systemctl show -P NRestarts coffer.service")?.stdout.trim().parse::<u64>().unwrap_or(0);
        self.sh("systemctl kill -s KILL coffer.service")?;
        let t0 = Instant::now();
        loop {
            let r = self.sh(
                "systemctl show -P NRestarts coffer.service; systemctl is-active coffer.service || true",
            )?;
            let mut l = r.stdout.lines();
            let restarts: u64 = l.next().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
            if restarts > before && l.next() == Some("active") {
                return self.status().map(|_| ());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                return Err(format!("systemd did not restart coffer.service: {r}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn status(&mut self) -> Result<Value, String> {
        let t0 = Instant::now();
        loop {
            match self.status_once() {
                Ok(v) => return Ok(v),
                Err(e) if t0.elapsed() > Duration::from_secs(60) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    fn service_running(&mut self) -> Result<bool, String> {
        Ok(self.sh("systemctl is-active coffer.service || true")?.stdout.trim() == "active")
    }

    fn cartridge_bytes(&self, barcode: &str) -> Option<(u64, u64)> {
        let fresh = self.fresh.iter().find(|(b, _)| b == barcode)?.1;
        let now = std::fs::metadata(self.dir.join("library/media").join(barcode)).ok()?.len();
        Some((now, fresh))
    }

    fn console(&mut self, commands: &[&str]) -> Result<Vec<String>, String> {
        // ttyS0 through QEMU's socket (console.log keeps what it says); the coffer console
        // runs there under systemd (coffer-console@ttyS0).
        let sock = self.dir.join("guest/console.sock");
        let line = UnixStream::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        scenario::console_session(&mut Terminal::new(line), commands)
    }

    fn devices(&self) -> Option<(String, Vec<String>)> {
        Some((format!("/dev/sg{}", self.drives), (0..self.drives).map(|d| format!("/dev/nst{d}")).collect()))
    }
}

fn main() -> ExitCode {
    let image = std::env::var_os("COFFER_HIL_IMAGE").map(PathBuf::from);
    let Some(image) = image.filter(|i| i.join("image.env").is_file()) else {
        eprintln!("hil_tgt: COFFER_HIL_IMAGE does not name an image built by image/build --hil: run hil/run");
        return ExitCode::from(2);
    };
    let artifacts = std::env::var_os("COFFER_HIL_ARTIFACTS")
        .map_or_else(|| repo().join("target/hil-artifacts"), PathBuf::from);
    let iscsi_port: u16 =
        std::env::var("COFFER_HIL_ISCSI_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(13260);
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = match scenario::load_dir(&repo().join("hil/scenarios")) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hil_tgt: {e}");
            return ExitCode::from(2);
        }
    };
    let mine: Vec<&Scenario> = all
        .iter()
        .filter(|s| s.tiers.contains(&Tier::Tgt) && (wanted.is_empty() || wanted.contains(&s.name)))
        .collect();
    if mine.is_empty() {
        eprintln!("hil_tgt: no tgt scenario matches {wanted:?}");
        return ExitCode::from(2);
    }
    let mut rows = Vec::new();
    let mut failed = 0;
    for s in mine {
        println!("hil_tgt: == {} ({})", s.name, s.description);
        let t0 = Instant::now();
        let mut report = Report::default();
        let (result, boot) = match Guest::boot(s, &image, &artifacts, iscsi_port) {
            Ok(mut g) => {
                let r = scenario::run(s, &mut g, &mut report);
                let boot = g.boot;
                g.finish();
                (r, boot)
            }
            Err(e) => {
                let dir = artifacts.join(&s.name);
                let _ = script("guest", &["stop", dir.join("guest").to_str().unwrap()]);
                let _ = script("tgt-library", &["stop", dir.join("library").to_str().unwrap()]);
                (Err(format!("{}: boot: {e}", s.name)), 0.0)
            }
        };
        for l in &report.steps {
            println!("hil_tgt:   {l}");
        }
        if let Err(e) = &result {
            failed += 1;
            println!("hil_tgt: FAIL {e}");
        }
        rows.push(format!(
            "{:<16} {:<5} {:>7.1} s {:>6.1} s {:>12} B",
            s.name,
            if result.is_ok() { "pass" } else { "FAIL" },
            t0.elapsed().as_secs_f64(),
            boot,
            report.bytes
        ));
    }
    println!("\nscenario         result    time     boot        stored");
    for r in &rows {
        println!("{r}");
    }
    println!("{} passed, {failed} failed", rows.len() - failed);
    println!("artifacts: {}", artifacts.display());
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
