//! Command-line front end: argument types, the state directory, output for people and for
//! scripts. Each command lives in its own module and calls the library; errors get their
//! context here, at the edge.

pub mod agent;
pub mod backup;
pub mod board;
pub mod catalog;
pub mod console;
pub mod drain;
pub mod job;
pub mod journal;
pub mod ls;
pub mod media;
pub mod pool;
pub mod restore;
pub mod scan;
pub mod serve;
pub mod through;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use coffer::journal::Mode;
use coffer::store::Store;

use crate::{Args, Command};

/// Sets up logging to stderr, filtered by `RUST_LOG` (default: `default_level`).
pub fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only for a person at a terminal: journald stores the escape codes as text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The log level of `command` when `RUST_LOG` does not say: the service tells journald what
/// it does (info); a command a person runs prints its result and only warnings besides.
pub fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) => "info",
        Command::Agent(a) if matches!(a.what, agent::AgentCommand::Run) => "info",
        _ => "warn",
    }
}

/// Runs a command; the exit code says how it went (0 ok, 1 a finding such as a mismatch,
/// 2 an error). While the service holds the state, a command that needs it runs through the
/// service's control socket instead ([`through`]).
pub fn run(args: Args, argv: Option<Vec<String>>) -> anyhow::Result<ExitCode> {
    coffer::clock::check_env().map_err(anyhow::Error::msg)?;
    let ctx = Ctx::new(state_dir(args.state)?, args.json, args.board);
    if through::needs_state(&args.command) && through::service_holds(&ctx.state) {
        return match args.command {
            Command::Backup(a) => through::backup(&ctx, a),
            _ => through::forward(&ctx, argv),
        };
    }
    // Tape libraries are opened from the board on first use; a bad board file is reported
    // by the commands that need it.
    if let Ok(board) = ctx.board() {
        coffer::library::configure(board, ctx.state.clone());
    }
    dispatch(&ctx, args.command)
}

/// Runs one command with `ctx`: in this process, or in the service for a client.
pub fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Backup(a) => backup::run(ctx, a),
        Command::Restore(a) => restore::run_restore(ctx, a),
        Command::Verify(a) => restore::run_verify(ctx, a),
        Command::Ls(a) => ls::run(ctx, a),
        Command::Scan(a) => scan::run(ctx, a),
        Command::Drain(a) => drain::run(ctx, a),
        Command::Journal { what } => journal::run(ctx, what),
        Command::Catalog { what } => catalog::run(ctx, what),
        Command::Board { what } => board::run(ctx, what),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Console(a) => console::run(ctx, a),
        Command::Media(a) => media::run(ctx, a),
        Command::Pool { what } => pool::run(ctx, what),
        Command::Job(a) => job::run(ctx, a),
        Command::Status => job::status(ctx),
        Command::Agent(a) => agent::run(ctx, a),
    }
}

/// What every command knows.
pub struct Ctx {
    /// The state directory.
    pub state: PathBuf,
    /// Output JSON.
    pub json: bool,
    /// The board file given, if any.
    pub board_file: Option<PathBuf>,
    /// Where results go: stdout, or the control socket when the service runs the command for
    /// a client.
    pub out: std::cell::RefCell<Box<dyn std::io::Write>>,
    /// The service's state, when the service runs the command.
    pub shared: Option<coffer::store::SharedStore>,
    /// The service's connected agents, when the service runs the command.
    pub agents: Option<coffer::service::agents::Connected>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("state", &self.state).field("json", &self.json).finish_non_exhaustive()
    }
}

/// Writes a line of a command's results to [`Ctx::out`].
#[macro_export]
macro_rules! outln {
    ($ctx:expr) => {{
        use std::io::Write as _;
        let _ = writeln!($ctx.out.borrow_mut());
    }};
    ($ctx:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($ctx.out.borrow_mut(), $($arg)*);
    }};
}

/// The state as a command holds it: opened by this process, or the service's.
pub enum Held {
    /// Opened here, under the state lock.
    Own(Box<Store>),
    /// The running service's, shared with its job engine.
    Shared(coffer::store::SharedStore),
}

impl Held {
    /// The catalog to read: this process's, or a copy of the service's taken at once, so that
    /// a long restore never holds the service's store (its jobs commit meanwhile).
    pub fn catalog(&self) -> std::borrow::Cow<'_, coffer::catalog::Catalog> {
        match self {
            Held::Own(s) => std::borrow::Cow::Borrowed(s.catalog()),
            Held::Shared(s) => std::borrow::Cow::Owned(s.lock().catalog().clone()),
        }
    }
}

impl coffer::store::State for Held {
    fn commit(&mut self, records: &[coffer::catalog::Record]) -> Result<(), coffer::store::StoreError> {
        match self {
            Held::Own(s) => s.commit(records),
            Held::Shared(s) => s.commit(records),
        }
    }
    fn read<R>(&self, f: impl FnOnce(&coffer::catalog::Catalog) -> R) -> R {
        match self {
            Held::Own(s) => f(s.catalog()),
            Held::Shared(s) => s.read(f),
        }
    }
    fn indexes(&self) -> coffer::store::Indexes {
        match self {
            Held::Own(s) => s.indexes(),
            Held::Shared(s) => s.indexes(),
        }
    }
}

impl Ctx {
    /// A command's context writing to stdout.
    pub fn new(state: PathBuf, json: bool, board_file: Option<PathBuf>) -> Ctx {
        Ctx {
            state,
            json,
            board_file,
            out: std::cell::RefCell::new(Box::new(std::io::stdout())),
            shared: None,
            agents: None,
        }
    }

    /// The state to work on: the service's when the service runs the command, else opened
    /// here for writing.
    pub fn hold_state(&self) -> anyhow::Result<Held> {
        match &self.shared {
            Some(s) => Ok(Held::Shared(s.clone())),
            None => self.open_store().map(|s| Held::Own(Box::new(s))),
        }
    }

    /// The board: the file given, or the built-in one.
    pub fn board(&self) -> anyhow::Result<coffer::board::Board> {
        match &self.board_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read board file {}", f.display()))?;
                coffer::board::Board::parse(&text)
                    .with_context(|| format!("{} is not a usable board file", f.display()))
            }
            None => Ok(coffer::board::Board::default_board()),
        }
    }

    /// Opens the state for writing.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let (store, report) = Store::open(&self.state, Mode::Write).with_context(|| {
            format!(
                "cannot open the state in {} (inspect it with `coffer journal check`; a damaged \
                 journal can be rebuilt from the media with `coffer scan TARGET`)",
                self.state.display()
            )
        })?;
        for w in &report.warnings {
            tracing::warn!(target: "journal", "{w}");
        }
        if let Some(cut) = &report.cut {
            tracing::warn!(target: "journal", "cut {} uncommitted bytes from {} ({})", cut.bytes, cut.file, cut.reason);
        }
        Ok(store)
    }

    /// Whether to draw progress (a person is watching).
    pub fn interactive(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }
}

/// The state directory: the flag, `$COFFER_STATE`, `$XDG_STATE_HOME/coffer`, or
/// `~/.local/state/coffer`.
fn state_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag.or_else(|| std::env::var_os("COFFER_STATE").map(PathBuf::from)) {
        return Ok(p);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("coffer"));
    }
    let home =
        std::env::var_os("HOME").context("no --state, $COFFER_STATE or $HOME: say where the state goes")?;
    Ok(PathBuf::from(home).join(".local/state/coffer"))
}

/// Bytes for people: 1.3 GB, 512 MB, 4.0 kB.
pub use coffer::human::bytes as human_bytes;

/// Parses a session argument: a number or `latest`.
pub fn session_arg(catalog: &coffer::catalog::Catalog, s: &str) -> anyhow::Result<u64> {
    if s == "latest" {
        return catalog
            .latest_session()
            .map(|x| x.id())
            .context("no sessions in the catalog yet: run `coffer backup` first");
    }
    let id: u64 = s.parse().with_context(|| format!("'{s}' is not a session id (a number, or 'latest')"))?;
    catalog.session(id).with_context(|| format!("no session {id} in the catalog: `coffer ls` lists them"))?;
    Ok(id)
}

/// Prints a value as one line of JSON.
pub fn print_json(ctx: &Ctx, v: &serde_json::Value) {
    outln!(ctx, "{v}");
}
