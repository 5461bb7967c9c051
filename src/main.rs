//! The `coffer` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// coffer: back up file trees and raw volumes to disks, NVRAM and tape; restore, verify, scan.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, long_about = None)]
pub struct Args {
    /// State directory (journal and catalog). Default: $COFFER_STATE, else the per-user state
    /// directory ($XDG_STATE_HOME/coffer or ~/.local/state/coffer).
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The board file: what the box has (tape libraries, named targets, console, status
    /// endpoint). Default: $COFFER_BOARD, else the built-in board (one virtual library).
    #[arg(long, global = true, value_name = "FILE", env = "COFFER_BOARD")]
    pub board: Option<PathBuf>,
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up file trees or raw volumes.
    Backup(cli::backup::BackupArgs),
    /// Restore a session, or selected paths of it, into a directory.
    Restore(cli::restore::RestoreArgs),
    /// Read a session back and check every checksum and digest.
    Verify(cli::restore::VerifyArgs),
    /// List sessions, or the objects of one.
    Ls(cli::ls::LsArgs),
    /// Move finished sessions from a staging target (NVRAM) to a slower one.
    Drain(cli::drain::DrainArgs),
    /// Rebuild the catalog from the media of a target alone, or read one session's pruned
    /// index back from its media (--session N).
    Scan(cli::scan::ScanArgs),
    /// Check a board file (what the box has: libraries, targets, console, status endpoint).
    Board {
        #[command(subcommand)]
        what: cli::board::BoardCommand,
    },
    /// Tape library: inventory, load, unload, label, move cartridges; drives online/offline.
    Media(cli::media::MediaArgs),
    /// Media pools: retention, cartridges, and which sessions are kept or expired.
    Pool {
        #[command(subcommand)]
        what: cli::pool::PoolCommand,
    },
    /// Run the appliance service (systemd notifications, job queue, control socket, status
    /// endpoint).
    Serve(cli::serve::ServeArgs),
    /// The serial console on a tty: log in with the board's PIN, then status, jobs, run,
    /// hold, release, cancel, inventory, load, unload, eject, drive online/offline, log.
    Console(cli::console::ConsoleArgs),
    /// Jobs of the running service: submit, list, show, hold, release, run, cancel, resubmit,
    /// reschedule, delete, log.
    Job(cli::job::JobArgs),
    /// The running service at a glance.
    Status,
    /// Backup agents: add, list, show, revoke (on the box); enroll, run (on a client).
    Agent(cli::agent::AgentArgs),
    /// The catalog: prune the per-file index of old sessions now.
    Catalog {
        #[command(subcommand)]
        what: cli::catalog::CatalogCommand,
    },
    /// Inspect the journal.
    Journal {
        #[command(subcommand)]
        what: cli::journal::JournalCommand,
    },
}

fn main() -> ExitCode {
    // `coffer ls | head` should end quietly when the pipe closes, as other tools do.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // The arguments as given, for a command run through the service (None: one is not UTF-8).
    let argv: Option<Vec<String>> = std::env::args_os().skip(1).map(|a| a.into_string().ok()).collect();
    let args = Args::parse();
    cli::init_tracing(cli::default_log_level(&args.command));
    match cli::run(args, argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer: {e:#}");
            ExitCode::from(2)
        }
    }
}
