//! The board file: what one box has and how the service uses it — its tape libraries (virtual
//! or real SCSI), disk and NVRAM targets, the cores to pin, the serial console and the remote
//! status endpoint (`board/*.toml`, read by `coffer serve --board FILE` and checked by
//! `coffer board check FILE`).
//!
//! Parsing is strict: unknown keys are refused (serde `deny_unknown_fields`), every value is
//! checked, and an error names the key and says what is expected. The embedded default
//! ([`DEFAULT_BOARD`], `board/default.toml`) is a box with the built-in virtual library.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::device::spec::parse_size;

/// The board the appliance uses when none is given: the built-in virtual library.
pub const DEFAULT_BOARD: &str = include_str!("../board/default.toml");

/// Shortest bearer token accepted for the status endpoint.
pub const MIN_TOKEN_LEN: usize = 16;
/// Shortest bearer token accepted for an endpoint that listens beyond loopback, where anyone
/// on the network may guess at it (`coffer board secrets` makes 43 characters).
pub const MIN_PUBLIC_TOKEN_LEN: usize = 24;
/// The token the example boards ship with: documented, so known to everyone.
pub const EXAMPLE_TOKEN: &str = "change-this-token-on-a-real-box";
/// The PIN the example boards ship with.
pub const EXAMPLE_PIN: &str = "2468";
/// Most drives, slots or import/export slots in one virtual library.
pub const MAX_ELEMENTS: u32 = 4096;
/// Longest reposition a virtual drive may be given, in milliseconds.
pub const MAX_REPOSITION_MS: i64 = 60_000;

/// A whole board file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The box's name, for people (status page, front panel).
    pub name: String,
    /// Where the service keeps its state (journal, virtual cartridges by default).
    #[serde(default = "default_state")]
    pub state: String,
    /// Cores the data plane is pinned to; empty: every core the service may use.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// The serial/front-panel console.
    pub console: Option<Console>,
    /// The remote status endpoint.
    pub status: Option<Status>,
    /// Tape libraries.
    #[serde(default, rename = "library")]
    pub libraries: Vec<Library>,
    /// Disk and NVRAM targets, as `coffer backup --to` takes them.
    #[serde(default, rename = "target")]
    pub targets: Vec<NamedTarget>,
    /// How long a finished session keeps its per-file index in the state directory, e.g.
    /// "30d" (default [`crate::lifecycle::index_prune::DEFAULT_CATALOG_KEEP`]); older ones are
    /// pruned (the session stays, and its index can be read back from its media).
    pub catalog_keep: Option<String>,
    /// Media pools: their cartridges and how long they keep sessions.
    #[serde(default, rename = "pool")]
    pub pools: Vec<crate::lifecycle::pools::PoolSpec>,
    /// The job queue.
    #[serde(default)]
    pub jobs: Jobs,
    /// The control socket.
    #[serde(default)]
    pub control: Control,
    /// Backup agents: where the box listens for them.
    pub agents: Option<Agents>,
}

/// Where the box listens for its backup agents (TCP with mutual TLS, the box's own CA).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    /// Address and port, e.g. "0.0.0.0:8471".
    pub listen: String,
    /// A directory on a disk of the box where agents' backups to tape are spooled, so that a
    /// drive the agents together cannot keep streaming writes at full speed or not at all.
    pub spool: Option<String>,
    /// The most the spool may hold, e.g. "8G" (default [`DEFAULT_SPOOL_SIZE`]).
    pub spool_size: Option<String>,
}

/// What an agents' spool holds at most when the board names no size.
pub const DEFAULT_SPOOL_SIZE: u64 = 4 << 30;
/// The least a spool may hold: a few units, or it could not smooth anything.
const MIN_SPOOL_SIZE: u64 = 16 << 20;

impl Agents {
    /// The address to listen on.
    pub fn addr(&self) -> Result<SocketAddr, BoardError> {
        self.listen.parse().map_err(|_| bad("agents.listen", "an address and port, e.g. 0.0.0.0:8471"))
    }

    /// The spool's directory and size, when the board names one.
    pub fn spool(&self) -> Result<Option<(std::path::PathBuf, u64)>, BoardError> {
        let size = match &self.spool_size {
            Some(v) => size("agents.spool_size", v, MIN_SPOOL_SIZE)?,
            None => DEFAULT_SPOOL_SIZE,
        };
        match &self.spool {
            None if self.spool_size.is_some() => {
                Err(bad("agents.spool_size", "set with agents.spool, the directory it sizes"))
            }
            None => Ok(None),
            Some(d) if !d.starts_with('/') => {
                Err(bad("agents.spool", "an absolute directory, e.g. /var/lib/coffer/spool"))
            }
            Some(d) => Ok(Some((d.into(), size))),
        }
    }
}

/// Who may use the control socket (`<state>/control.sock`, mode 0660): root, and the members
/// of `group` when the board names one. Whoever may use it runs the box: jobs, restores to any
/// directory, the library.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The group given the socket (e.g. "backup"); absent: the service's own group.
    pub group: Option<String>,
}

/// The job queue's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// Seconds between queue scans (1–999).
    #[serde(default = "default_scan")]
    pub scan_seconds: u64,
    /// Hours a finished one-off job is kept before it is deleted (0–999).
    #[serde(default = "default_keep")]
    pub keep_done_hours: u64,
    /// Seconds a running job's data plane may make no progress before the service counts it
    /// stalled and stops the systemd watchdog pings (2–86400; a library move or a slow
    /// source can take minutes).
    #[serde(default = "default_stall")]
    pub stall_seconds: u64,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs { scan_seconds: default_scan(), keep_done_hours: default_keep(), stall_seconds: default_stall() }
    }
}

fn default_scan() -> u64 {
    crate::jobs::queue::DEFAULT_SCAN_SECONDS
}

fn default_keep() -> u64 {
    crate::jobs::queue::DEFAULT_KEEP_DONE_HOURS
}

fn default_stall() -> u64 {
    600
}

/// Allowed stall limit, seconds.
pub const STALL_SECONDS: std::ops::RangeInclusive<u64> = 2..=86_400;

fn default_state() -> String {
    "/var/lib/coffer".into()
}

/// The serial console.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Its tty, e.g. /dev/ttyS0.
    pub tty: String,
    /// Line speed.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// PIN a person enters to log in: 4 to 8 digits.
    pub pin: String,
}

fn default_baud() -> u32 {
    115_200
}

/// The remote status endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Address to listen on, e.g. 127.0.0.1:8470 (loopback unless the board says otherwise).
    pub listen: String,
    /// Bearer token for everything but /healthz.
    pub token: String,
    /// Serve HTTPS (default: on every address but loopback, where plain HTTP is served).
    /// Plain HTTP (`false`) is refused beyond loopback: the token would cross the network in
    /// clear.
    pub tls: Option<bool>,
    /// The certificate chain (PEM) to serve; with `key`. None: the service makes a
    /// self-signed certificate at first start and keeps it in `<state>/tls/`.
    pub cert: Option<String>,
    /// The certificate's private key (PEM); with `cert`.
    pub key: Option<String>,
}

/// A tape library: virtual (built in) or real.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
// A board names a few libraries, read once: boxing the larger variant would gain nothing.
#[allow(clippy::large_enum_variant)]
pub enum Library {
    /// The built-in virtual library: cartridges are files.
    Virtual(VirtualLibrary),
    /// A SCSI library: a changer and its drives.
    Scsi(ScsiLibrary),
}

/// The built-in virtual library.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualLibrary {
    /// Its name: targets say `library:NAME`.
    pub name: String,
    /// Tape drives.
    pub drives: u32,
    /// Storage slots.
    pub slots: u32,
    /// Import/export slots.
    #[serde(default)]
    pub import_export: u32,
    /// Cartridges, barcoded `PREFIX0001L8`…, one in each slot at first.
    pub cartridges: u32,
    /// Barcode prefix (letters and digits, 1 to 4).
    #[serde(default = "default_prefix")]
    pub barcode_prefix: String,
    /// Cleaning cartridges (barcoded `CLN…`), in the last slots.
    #[serde(default)]
    pub cleaning: u32,
    /// Capacity of each cartridge, e.g. "8G".
    pub capacity: String,
    /// Directory of the cartridge files; default: `<state>/library/<name>`.
    pub dir: Option<String>,
    /// Each drive's streaming rate, e.g. "300M" (bytes per second); none: as fast as it goes.
    pub drive_rate: Option<String>,
    /// Each drive's buffer, e.g. "256M" (the default).
    pub drive_buffer: Option<String>,
    /// Each drive's read rate, e.g. "100M" (bytes per second); none: reads go as fast as the
    /// cartridge files (a slow read-back, for tests of long verifies and restores).
    pub drive_read_rate: Option<String>,
    /// Milliseconds a drive takes to reposition when its buffer ran dry while streaming
    /// (0 to [`MAX_REPOSITION_MS`]; default 1000); only with `drive_rate`.
    pub drive_reposition_ms: Option<i64>,
    /// Drives answer READ POSITION and LOCATE; `false` refuses them as Linux `tgt` does, so
    /// that positioning by SPACE is exercised.
    #[serde(default = "yes", deserialize_with = "positioning")]
    pub positioning: bool,
    /// Faults to inject, for tests and demonstrations.
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// Agents' backups each drive takes at once, multiplexed (1 to 64; default 4).
    pub multiplex: Option<u32>,
    /// How long a job waits for a cartridge it can write (WAITING MEDIA) before it fails,
    /// e.g. "1h" (default), "0s" to fail at once.
    pub media_wait: Option<String>,
    /// Uses after which coffer retires a cleaning cartridge (1 to 100000; default 50).
    pub cleaning_uses: Option<u32>,
    /// Checks in a row finding a drive's hard-error TapeAlert flags after which the drive is
    /// taken offline (1 to 100; default 3).
    pub hard_error_limit: Option<u32>,
    /// Medium errors (reading and writing) after which a cartridge is marked damaged (1 to
    /// 1000; default 3).
    pub medium_error_limit: Option<u32>,
    /// Bytes a drive writes before it asks for routine cleaning (TapeAlert clean periodic),
    /// e.g. "200G"; none: it never asks by itself.
    pub clean_every: Option<String>,
    /// Uses each virtual cleaning cartridge has before it reports itself expired (1 to
    /// 100000; default 50).
    pub cleaning_life: Option<u32>,
    /// Milliseconds a cleaning cycle takes (0 to 600000; default 3000).
    pub cleaning_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

/// `positioning`, refused by name: inside a tagged `[[library]]` serde's own type errors do
/// not say which key.
fn positioning<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool::deserialize(d).map_err(|_| serde::de::Error::custom("positioning: true or false"))
}

fn default_prefix() -> String {
    "CFR".into()
}

/// A real SCSI library.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScsiLibrary {
    /// Its name: targets say `library:NAME`.
    pub name: String,
    /// The changer's generic device, e.g. /dev/sg2.
    pub changer: String,
    /// The drives, in data transfer element order, e.g. ["/dev/nst0", "/dev/nst1"].
    pub drives: Vec<String>,
    /// Agents' backups each drive takes at once, multiplexed (1 to 64; default 4).
    pub multiplex: Option<u32>,
    /// How long a job waits for a cartridge it can write (WAITING MEDIA) before it fails,
    /// e.g. "1h" (default), "0s" to fail at once.
    pub media_wait: Option<String>,
    /// Uses after which coffer retires a cleaning cartridge (1 to 100000; default 50).
    pub cleaning_uses: Option<u32>,
    /// Checks in a row finding a drive's hard-error TapeAlert flags after which the drive is
    /// taken offline (1 to 100; default 3).
    pub hard_error_limit: Option<u32>,
    /// Medium errors (reading and writing) after which a cartridge is marked damaged (1 to
    /// 1000; default 3).
    pub medium_error_limit: Option<u32>,
}

/// A fault the virtual library injects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// A medium error reading or writing block `block` of the cartridge in drive `drive`.
    MediumError {
        /// Drive number.
        drive: u32,
        /// Block number on the cartridge.
        block: u64,
    },
    /// Drive `drive` goes offline after `after` bytes written.
    DriveOffline {
        /// Drive number.
        drive: u32,
        /// Bytes, e.g. "2G".
        after: String,
    },
    /// A unit attention (reset) on drive `drive` after `after` bytes written.
    UnitAttention {
        /// Drive number.
        drive: u32,
        /// Bytes, e.g. "100M".
        after: String,
    },
    /// MOVE MEDIUM fails (`timeout`: never answers in time) on move number `move_number`.
    MoveFailure {
        /// Which move, counting from 1.
        move_number: u32,
        /// Time out rather than fail.
        #[serde(default)]
        timeout: bool,
    },
    /// Slot `slot` holds a cartridge whose label is not its barcode.
    WrongCartridge {
        /// Slot number, from 1.
        slot: u32,
    },
    /// The cartridge with this barcode is write-protected.
    WriteProtected {
        /// Its barcode.
        barcode: String,
    },
    /// Drive `drive` asks for cleaning (TapeAlert) after `after` bytes.
    CleaningRequired {
        /// Drive number.
        drive: u32,
        /// Bytes, e.g. "4G".
        after: String,
    },
    /// Cleaning does not clear drive `drive`'s cleaning flags: it asks again at once.
    DirtyDrive {
        /// Drive number.
        drive: u32,
    },
}

/// Default of `cleaning_uses`.
pub const DEFAULT_CLEANING_USES: u32 = 50;
/// Default of `hard_error_limit`.
pub const DEFAULT_HARD_ERROR_LIMIT: u32 = 3;
/// Default of `medium_error_limit`.
pub const DEFAULT_MEDIUM_ERROR_LIMIT: u32 = 3;
/// Default of a virtual library's `cleaning_life`.
pub const DEFAULT_CLEANING_LIFE: u32 = 50;
/// Default of a virtual library's `cleaning_ms`.
pub const DEFAULT_CLEANING_MS: i64 = 3000;
/// Longest cleaning cycle a virtual library may be given.
pub const MAX_CLEANING_MS: i64 = 600_000;

/// A library's limits for cleaning and errors, with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthLimits {
    /// Uses after which a cleaning cartridge is retired.
    pub cleaning_uses: u32,
    /// Checks in a row with hard errors after which a drive is taken offline.
    pub hard_error_limit: u32,
    /// Medium errors after which a cartridge is damaged.
    pub medium_error_limit: u32,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits {
            cleaning_uses: DEFAULT_CLEANING_USES,
            hard_error_limit: DEFAULT_HARD_ERROR_LIMIT,
            medium_error_limit: DEFAULT_MEDIUM_ERROR_LIMIT,
        }
    }
}

/// A disk or NVRAM target with a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTarget {
    /// Its name.
    pub name: String,
    /// The target, e.g. `disk:/srv/backup` or `nvram:/dev/pmem0`.
    pub target: String,
}

/// Why a board file is refused.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// Not TOML of the board's shape (an unknown key, a wrong type…).
    #[error("{0}")]
    Syntax(String),
    /// A value that cannot be used.
    #[error("{key}: {what}")]
    Value {
        /// Which key.
        key: String,
        /// What is wrong and what is expected.
        what: String,
    },
}

fn bad(key: impl Into<String>, what: impl Into<String>) -> BoardError {
    BoardError::Value { key: key.into(), what: what.into() }
}

impl Board {
    /// Parses and checks a board file's text.
    pub fn parse(text: &str) -> Result<Board, BoardError> {
        let board: Board = toml::from_str(text).map_err(|e| BoardError::Syntax(e.to_string()))?;
        board.check()?;
        Ok(board)
    }

    /// Where backups go when they name no target: the board's first library, else a disk
    /// target in the state directory `state`.
    pub fn default_target(
        &self,
        state: &std::path::Path,
    ) -> Result<crate::device::TargetSpec, crate::device::DeviceError> {
        match self.libraries.first() {
            Some(l) => format!("library:{}", l.name()).parse(),
            None => format!("disk:{}", state.join("media").display()).parse(),
        }
    }

    /// Seconds a finished session keeps its per-file index: `catalog_keep`, or the default.
    pub fn catalog_keep(&self) -> Result<u64, BoardError> {
        match &self.catalog_keep {
            None => Ok(crate::lifecycle::index_prune::DEFAULT_CATALOG_KEEP),
            Some(t) => crate::lifecycle::pools::parse_duration(t).map_err(|e| bad("catalog_keep", e)),
        }
    }

    /// The embedded default board.
    pub fn default_board() -> Board {
        Board::parse(DEFAULT_BOARD).expect("the embedded default board is valid")
    }

    fn check(&self) -> Result<(), BoardError> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(bad("name", "1 to 64 characters"));
        }
        if !self.state.starts_with('/') {
            return Err(bad("state", "an absolute directory, e.g. /var/lib/coffer"));
        }
        let mut cores = HashSet::new();
        if let Some(c) = self.cores.iter().find(|&&c| !cores.insert(c) || c >= 1024) {
            return Err(bad("cores", format!("core {c} is listed twice or is over 1023")));
        }
        if let Some(c) = &self.console {
            c.check()?;
        }
        if let Some(s) = &self.status {
            s.check()?;
        }
        if let Some(a) = &self.agents {
            a.addr()?;
            a.spool()?;
        }
        let mut names = HashSet::new();
        let all = self
            .libraries
            .iter()
            .map(|l| ("library", l.name()))
            .chain(self.targets.iter().map(|t| ("target", &t.name)));
        for (what, name) in all {
            if !name_ok(name) {
                return Err(bad(
                    format!("{what}.name"),
                    format!("'{name}': 1 to 32 letters, digits, '-' or '_'"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(bad(format!("{what}.name"), format!("'{name}' names two devices")));
            }
        }
        for l in &self.libraries {
            l.check()?;
        }
        self.catalog_keep()?;
        let libraries: Vec<&str> = self.libraries.iter().map(|l| l.name().as_str()).collect();
        crate::lifecycle::pools::check_all(&self.pools, &libraries).map_err(|(key, what)| bad(key, what))?;
        if !crate::jobs::queue::SCAN_SECONDS.contains(&self.jobs.scan_seconds) {
            return Err(bad("jobs.scan_seconds", "seconds between queue scans, 1 to 999"));
        }
        if !crate::jobs::queue::KEEP_DONE_HOURS.contains(&self.jobs.keep_done_hours) {
            return Err(bad("jobs.keep_done_hours", "hours to keep finished jobs, 0 to 999"));
        }
        if !STALL_SECONDS.contains(&self.jobs.stall_seconds) {
            return Err(bad(
                "jobs.stall_seconds",
                "seconds without progress before a job counts as stalled, 2 to 86400",
            ));
        }
        for t in &self.targets {
            t.target
                .parse::<crate::device::TargetSpec>()
                .map_err(|e| bad(format!("target.{}.target", t.name), e.to_string()))?;
        }
        Ok(())
    }
}

pub(crate) fn name_ok(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Console {
    fn check(&self) -> Result<(), BoardError> {
        if !self.tty.starts_with("/dev/") {
            return Err(bad("console.tty", "a device under /dev, e.g. /dev/ttyS0"));
        }
        const BAUDS: [u32; 8] = [9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600];
        if !BAUDS.contains(&self.baud) {
            return Err(bad("console.baud", format!("one of {BAUDS:?}")));
        }
        if !(4..=8).contains(&self.pin.len()) || !self.pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("console.pin", "4 to 8 digits"));
        }
        Ok(())
    }
}

impl Status {
    /// The address to listen on.
    pub fn addr(&self) -> Result<SocketAddr, BoardError> {
        self.listen.parse().map_err(|_| bad("status.listen", "an address and port, e.g. 127.0.0.1:8470"))
    }

    /// Whether the endpoint listens on a loopback address only.
    pub fn is_loopback(&self) -> bool {
        self.addr().is_ok_and(|a| a.ip().is_loopback())
    }

    /// Whether the endpoint serves HTTPS.
    pub fn uses_tls(&self) -> bool {
        self.tls.unwrap_or(!self.is_loopback())
    }

    fn check(&self) -> Result<(), BoardError> {
        let addr = self.addr()?;
        if self.token.len() < MIN_TOKEN_LEN || !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "status.token",
                format!("at least {MIN_TOKEN_LEN} printable characters without spaces"),
            ));
        }
        if !self.is_loopback() {
            if self.tls == Some(false) {
                return Err(bad(
                    "status.tls",
                    format!(
                        "plain HTTP is served on loopback only, and {addr} is not loopback: the \
                         token would cross the network in clear. Remove `tls = false` (HTTPS, with \
                         a self-signed certificate unless cert and key are given), or listen on \
                         127.0.0.1"
                    ),
                ));
            }
            if self.token == EXAMPLE_TOKEN {
                return Err(bad(
                    "status.token",
                    format!(
                        "the documented example token on {addr}, which is not loopback: anyone may \
                         know it. Make a new one with `coffer board secrets FILE`"
                    ),
                ));
            }
            if self.token.len() < MIN_PUBLIC_TOKEN_LEN {
                return Err(bad(
                    "status.token",
                    format!(
                        "{} characters on {addr}, which is not loopback: at least \
                         {MIN_PUBLIC_TOKEN_LEN} there. Make one with `coffer board secrets FILE`",
                        self.token.len()
                    ),
                ));
            }
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(bad("status.key", "the private key of status.cert (a PEM file)")),
            (None, Some(_)) => return Err(bad("status.cert", "the certificate of status.key (a PEM file)")),
            _ => {}
        }
        for (k, v) in [("status.cert", &self.cert), ("status.key", &self.key)] {
            if v.as_ref().is_some_and(|p| !p.starts_with('/')) {
                return Err(bad(k, "an absolute path, e.g. /etc/coffer/tls/cert.pem"));
            }
        }
        if (self.cert.is_some() || self.tls == Some(true)) && !self.uses_tls() {
            return Err(bad("status.cert", "a certificate with `tls = false`: remove one of them"));
        }
        Ok(())
    }
}

/// A wait such as `1h`, or zero (`0s`, `0`): fail at once.
fn parse_wait(text: &str) -> Result<u64, String> {
    let digits = text.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if digits.trim().parse::<u64>() == Ok(0) {
        return Ok(0);
    }
    crate::lifecycle::pools::parse_duration(text)
}

/// How long a job waits for a cartridge by default: an hour, time for a person to bring one.
pub const DEFAULT_MEDIA_WAIT: u64 = 3600;

impl Library {
    /// Its name.
    pub fn name(&self) -> &String {
        match self {
            Library::Virtual(v) => &v.name,
            Library::Scsi(s) => &s.name,
        }
    }

    /// Agents' backups each of its drives takes at once.
    pub fn multiplex(&self) -> usize {
        let set = match self {
            Library::Virtual(v) => v.multiplex,
            Library::Scsi(s) => s.multiplex,
        };
        set.map_or(crate::pipeline::mux::DEFAULT_MULTIPLEX, |m| m as usize)
    }

    /// How long a job waits for a cartridge it can write before it fails.
    pub fn media_wait(&self) -> std::time::Duration {
        let set = match self {
            Library::Virtual(v) => v.media_wait.as_deref(),
            Library::Scsi(s) => s.media_wait.as_deref(),
        };
        let secs = set.map_or(Ok(DEFAULT_MEDIA_WAIT), parse_wait);
        std::time::Duration::from_secs(secs.unwrap_or(DEFAULT_MEDIA_WAIT))
    }

    /// Its limits for cleaning and errors.
    pub fn health_limits(&self) -> HealthLimits {
        let (uses, hard, medium) = match self {
            Library::Virtual(v) => (v.cleaning_uses, v.hard_error_limit, v.medium_error_limit),
            Library::Scsi(s) => (s.cleaning_uses, s.hard_error_limit, s.medium_error_limit),
        };
        let d = HealthLimits::default();
        HealthLimits {
            cleaning_uses: uses.unwrap_or(d.cleaning_uses),
            hard_error_limit: hard.unwrap_or(d.hard_error_limit),
            medium_error_limit: medium.unwrap_or(d.medium_error_limit),
        }
    }

    fn check(&self) -> Result<(), BoardError> {
        let key = |k: &str| format!("library.{}.{k}", self.name());
        let max = crate::pipeline::mux::MAX_MULTIPLEX;
        if !(1..=max).contains(&self.multiplex()) {
            return Err(bad(key("multiplex"), format!("1 to {max} agents at once per drive")));
        }
        let wait = match self {
            Library::Virtual(v) => v.media_wait.as_deref(),
            Library::Scsi(s) => s.media_wait.as_deref(),
        };
        if let Some(w) = wait
            && let Err(e) = parse_wait(w)
        {
            return Err(bad(key("media_wait"), e));
        }
        let limits = self.health_limits();
        for (k, n, max) in [
            ("cleaning_uses", limits.cleaning_uses, crate::catalog::MAX_CLEANING_USES),
            ("hard_error_limit", limits.hard_error_limit, 100),
            ("medium_error_limit", limits.medium_error_limit, 1000),
        ] {
            if !(1..=max).contains(&n) {
                return Err(bad(key(k), format!("{n}: 1 to {max}")));
            }
        }
        match self {
            Library::Scsi(s) => {
                if !s.changer.starts_with("/dev/") {
                    return Err(bad(key("changer"), "a device under /dev, e.g. /dev/sg2"));
                }
                if s.drives.is_empty() || s.drives.iter().any(|d| !d.starts_with("/dev/")) {
                    return Err(bad(key("drives"), "one or more devices under /dev, e.g. [\"/dev/nst0\"]"));
                }
                Ok(())
            }
            Library::Virtual(v) => v.check(&key),
        }
    }
}

impl VirtualLibrary {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), BoardError> {
        for (k, n, min) in
            [("drives", self.drives, 1), ("slots", self.slots, 1), ("import_export", self.import_export, 0)]
        {
            if n < min || n > MAX_ELEMENTS {
                return Err(bad(key(k), format!("{min} to {MAX_ELEMENTS}")));
            }
        }
        if self.cartridges + self.cleaning > self.slots {
            return Err(bad(
                key("cartridges"),
                format!(
                    "{} data and cleaning cartridges do not fit {} slots",
                    self.cartridges + self.cleaning,
                    self.slots
                ),
            ));
        }
        let p = &self.barcode_prefix;
        if !(1..=4).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(bad(key("barcode_prefix"), "1 to 4 capital letters or digits"));
        }
        size(&key("capacity"), &self.capacity, 1 << 20)?;
        for (k, v) in [
            ("drive_rate", &self.drive_rate),
            ("drive_buffer", &self.drive_buffer),
            ("drive_read_rate", &self.drive_read_rate),
        ] {
            if let Some(v) = v {
                size(&key(k), v, 1)?;
            }
        }
        if let Some(v) = &self.clean_every {
            size(&key("clean_every"), v, 1 << 20)?;
        }
        if let Some(n) = self.cleaning_life
            && !(1..=crate::catalog::MAX_CLEANING_USES).contains(&n)
        {
            return Err(bad(
                key("cleaning_life"),
                format!("{n}: 1 to {}", crate::catalog::MAX_CLEANING_USES),
            ));
        }
        if let Some(ms) = self.cleaning_ms
            && !(0..=MAX_CLEANING_MS).contains(&ms)
        {
            return Err(bad(
                key("cleaning_ms"),
                format!("{ms}: 0 to {MAX_CLEANING_MS} milliseconds, e.g. 3000"),
            ));
        }
        match self.drive_reposition_ms {
            Some(ms) if !(0..=MAX_REPOSITION_MS).contains(&ms) => {
                return Err(bad(
                    key("drive_reposition_ms"),
                    format!("{ms}: 0 to {MAX_REPOSITION_MS} milliseconds, e.g. 1500"),
                ));
            }
            Some(_) if self.drive_rate.is_none() => {
                return Err(bad(
                    key("drive_reposition_ms"),
                    "only means something with drive_rate: set drive_rate or remove it",
                ));
            }
            _ => {}
        }
        for f in &self.faults {
            let drive = match f {
                Fault::MediumError { drive, .. } | Fault::DirtyDrive { drive } => Some(*drive),
                Fault::DriveOffline { drive, after }
                | Fault::UnitAttention { drive, after }
                | Fault::CleaningRequired { drive, after } => {
                    size(&key("fault.after"), after, 0)?;
                    Some(*drive)
                }
                Fault::WrongCartridge { slot } if *slot == 0 || *slot > self.slots => {
                    return Err(bad(key("fault.slot"), format!("a slot from 1 to {}", self.slots)));
                }
                _ => None,
            };
            if drive.is_some_and(|d| d >= self.drives) {
                return Err(bad(key("fault.drive"), format!("a drive from 0 to {}", self.drives - 1)));
            }
        }
        Ok(())
    }

    /// Capacity of each cartridge, in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        parse_size(&self.capacity).expect("checked when parsed")
    }
}

/// Parses a size like "8G", at least `min` bytes.
fn size(key: &str, v: &str, min: u64) -> Result<u64, BoardError> {
    match parse_size(v) {
        Some(n) if n >= min => Ok(n),
        _ => Err(bad(key, format!("'{v}': a size like 512M or 8G, at least {min} bytes"))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_default_board_is_a_virtual_library() {
        let b = Board::default_board();
        let Library::Virtual(v) = &b.libraries[0] else { panic!("{b:?}") };
        assert_eq!((v.drives, v.cartridges), (2, 16));
        assert_eq!((v.drive_reposition_ms, v.positioning), (Some(1000), true));
        assert!(b.status.as_ref().unwrap().addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn the_agents_spool_is_an_absolute_directory_with_a_size() {
        let agents = |extra: &str| {
            Board::parse(&format!("name = \"b\"\n[agents]\nlisten = \"0.0.0.0:8471\"\n{extra}"))
        };
        let b = agents("").unwrap();
        assert_eq!(b.agents.unwrap().spool().unwrap(), None);
        let b = agents("spool = \"/var/spool/coffer\"").unwrap();
        assert_eq!(
            b.agents.unwrap().spool().unwrap(),
            Some(("/var/spool/coffer".into(), DEFAULT_SPOOL_SIZE))
        );
        let b = agents("spool = \"/s\"\nspool_size = \"1G\"").unwrap();
        assert_eq!(b.agents.unwrap().spool().unwrap(), Some(("/s".into(), 1 << 30)));
        for (extra, key) in [
            ("spool = \"spool\"", "agents.spool"),
            ("spool = \"/s\"\nspool_size = \"1M\"", "agents.spool_size"),
            ("spool = \"/s\"\nspool_size = \"lots\"", "agents.spool_size"),
            ("spool_size = \"1G\"", "agents.spool_size"),
        ] {
            let e = agents(extra).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let base = DEFAULT_BOARD;
        let cases = [
            (base.replace("name = \"coffer\"", "name = \"coffer\"\ncolour = \"red\""), "colour"),
            (base.replace("drives = 2", "drives = 0"), "library.vlib.drives"),
            (base.replace("capacity = \"8G\"", "capacity = \"lots\""), "library.vlib.capacity"),
            (base.replace("listen = \"127.0.0.1:8470\"", "listen = \"localhost\""), "status.listen"),
            (base.replace("pin = \"2468\"", "pin = \"12\""), "console.pin"),
            (base.replace("cartridges = 16", "cartridges = 40"), "library.vlib.cartridges"),
            (format!("{base}\n[[target]]\nname = \"vlib\"\ntarget = \"disk:/srv\"\n"), "names two devices"),
            (format!("{base}\n[[target]]\nname = \"d\"\ntarget = \"ftp:/x\"\n"), "target.d.target"),
            (
                format!("{base}\n[[library.fault]]\nat = \"medium_error\"\ndrive = 7\nblock = 3\n"),
                "library.vlib.fault.drive",
            ),
            (format!("{base}\n[[library.fault]]\nat = \"gremlins\"\n"), "gremlins"),
            (
                base.replace("drive_reposition_ms = 1000", "drive_reposition_ms = 90000"),
                "library.vlib.drive_reposition_ms",
            ),
            (base.replace("drive_rate = \"300M\"\n", ""), "library.vlib.drive_reposition_ms"),
            (
                base.replace("drive_reposition_ms = 1000", "drive_reposition_ms = -1"),
                "library.vlib.drive_reposition_ms",
            ),
            (base.replace("positioning = true", "positioning = \"no\""), "positioning"),
            (base.replace("drives = 2", "drives = 2\ncolour = 1"), "colour"),
            (
                format!("{base}\n[[library.fault]]\nat = \"move_failure\"\nmove_number = 1\nwhen = 2\n"),
                "when",
            ),
        ];
        for (text, key) in cases {
            let e = Board::parse(&text).expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn an_endpoint_beyond_loopback_needs_tls_and_a_token_of_its_own() {
        let public = |status: &str| format!("name = \"b\"\n[status]\n{status}\n");
        let good = "token = \"0123456789abcdef0123456789\"";
        let ok = Board::parse(&public(&format!("listen = \"0.0.0.0:8470\"\n{good}"))).unwrap();
        assert!(ok.status.as_ref().unwrap().uses_tls(), "HTTPS by default beyond loopback");
        let local =
            Board::parse(&public("listen = \"127.0.0.1:8470\"\ntoken = \"0123456789abcdef\"")).unwrap();
        assert!(!local.status.as_ref().unwrap().uses_tls(), "plain HTTP on loopback");
        let example = format!("token = \"{EXAMPLE_TOKEN}\"");
        assert!(Board::parse(&public(&format!("listen = \"127.0.0.1:1\"\n{example}"))).is_ok());
        let cases = [
            (format!("listen = \"0.0.0.0:8470\"\n{good}\ntls = false"), "status.tls: plain HTTP"),
            (format!("listen = \"[::]:8470\"\n{good}\ntls = false"), "status.tls"),
            (format!("listen = \"0.0.0.0:8470\"\n{example}"), "status.token: the documented example"),
            (format!("listen = \"10.0.0.1:8470\"\ntoken = \"{}\"", "x".repeat(23)), "status.token: 23"),
            (format!("listen = \"0.0.0.0:8470\"\n{good}\ncert = \"/c.pem\""), "status.key"),
            (format!("listen = \"0.0.0.0:8470\"\n{good}\nkey = \"/k.pem\""), "status.cert"),
            (format!("listen = \"0.0.0.0:8470\"\n{good}\ncert = \"c.pem\"\nkey = \"/k\""), "status.cert"),
        ];
        for (status, want) in cases {
            let e = Board::parse(&public(&status)).expect_err(want).to_string();
            assert!(e.starts_with(want), "{want}: {e}");
        }
        let named = format!("listen = \"0.0.0.0:8470\"\n{good}\ncert = \"/c.pem\"\nkey = \"/k.pem\"");
        assert!(Board::parse(&public(&named)).is_ok());
    }

    #[test]
    fn a_scsi_library_and_faults_parse() {
        let text = r#"
            name = "box1"
            [[library]]
            name = "lto"
            kind = "scsi"
            changer = "/dev/sg2"
            drives = ["/dev/nst0", "/dev/nst1"]
            [[library]]
            name = "test"
            kind = "virtual"
            drives = 1
            slots = 4
            cartridges = 3
            cleaning = 1
            capacity = "64M"
            [[library.fault]]
            at = "write_protected"
            barcode = "CFR0002L8"
            [[library.fault]]
            at = "drive_offline"
            drive = 0
            after = "10M"
        "#;
        let b = Board::parse(text).unwrap();
        assert_eq!(b.libraries.len(), 2);
        let Library::Virtual(v) = &b.libraries[1] else { panic!() };
        assert_eq!(v.faults.len(), 2);
        assert!(v.positioning && v.drive_reposition_ms.is_none());
        let tgt = text.replace("capacity = \"64M\"", "capacity = \"64M\"\npositioning = false");
        let Library::Virtual(v) = Board::parse(&tgt).unwrap().libraries.remove(1) else { panic!() };
        assert!(!v.positioning);
        assert_eq!(v.capacity_bytes(), 64 << 20);
    }

    #[test]
    fn catalog_keep_defaults_to_30_days_and_a_bad_one_is_named() {
        assert_eq!(Board::default_board().catalog_keep().unwrap(), 30 * 86_400);
        let b = Board::parse("name = \"box1\"\ncatalog_keep = \"8w\"").unwrap();
        assert_eq!(b.catalog_keep().unwrap(), 8 * 7 * 86_400);
        for bad in ["30", "0d", "thirty days"] {
            let e =
                Board::parse(&format!("name = \"box1\"\ncatalog_keep = \"{bad}\"")).unwrap_err().to_string();
            assert!(e.starts_with("catalog_keep"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn any_text_is_refused_or_accepted_without_panic(s in "\\PC{0,400}") {
            let _ = Board::parse(&s);
        }

        #[test]
        fn mangled_default_boards_never_panic(at in 0usize..2000, junk in "[=\\[\\]\"a-z0-9 \n]{0,12}") {
            let mut text = DEFAULT_BOARD.to_owned();
            let at = at.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &junk);
            }
            let _ = Board::parse(&text);
        }
    }
}
