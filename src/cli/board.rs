//! `coffer board check [FILE]`: reads a board file (default: the built-in board) and says what
//! the box has, or what is wrong and where. `coffer board secrets FILE`: replaces the example
//! status token and console PIN with random ones, in place, and shows them once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use coffer::board::{Board, DEFAULT_BOARD, Library};
use serde_json::json;

use super::Ctx;

/// `coffer board …`.
#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// Check a board file (default: the built-in board) and list what it describes.
    Check {
        /// The board file.
        file: Option<PathBuf>,
    },
    /// Replace the board's example status token and console PIN with random ones (a 43-character
    /// token, a 6-digit PIN), rewriting FILE in place (atomically, mode 0600), and print them
    /// once. A board whose token is already its own is left alone unless --force.
    Secrets {
        /// The board file.
        file: PathBuf,
        /// Make new secrets even when the board's are not the example's.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `coffer board …`.
pub fn run(ctx: &Ctx, what: BoardCommand) -> anyhow::Result<ExitCode> {
    let file = match what {
        BoardCommand::Check { file } => file,
        BoardCommand::Secrets { file, force } => return secrets(ctx, &file, force),
    };
    let (text, name) = match &file {
        Some(f) => (
            std::fs::read_to_string(f).with_context(|| format!("cannot read board file {}", f.display()))?,
            f.display().to_string(),
        ),
        None => (DEFAULT_BOARD.to_owned(), "the built-in board".to_owned()),
    };
    let board = Board::parse(&text).with_context(|| format!("{name} is not a usable board file"))?;
    let libraries: Vec<String> = board
        .libraries
        .iter()
        .map(|l| match l {
            Library::Virtual(v) => format!(
                "{}: virtual, {} drives, {} slots, {} cartridges of {}",
                v.name, v.drives, v.slots, v.cartridges, v.capacity
            ),
            Library::Scsi(s) => {
                format!("{}: SCSI, changer {}, drives {}", s.name, s.changer, s.drives.join(" "))
            }
        })
        .collect();
    let targets: Vec<String> = board.targets.iter().map(|t| format!("{}: {}", t.name, t.target)).collect();
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "board": name, "name": board.name, "state": board.state, "libraries": libraries,
                "targets": targets, "console": board.console.as_ref().map(|c| &c.tty),
                "status": board.status.as_ref().map(|s| &s.listen),
            }),
        );
    } else {
        println!("{name}: box {} (state in {})", board.name, board.state);
        for l in libraries.iter().chain(&targets) {
            println!("  {l}");
        }
        if let Some(c) = &board.console {
            println!("  console on {} at {} baud", c.tty, c.baud);
        }
        if let Some(s) = &board.status {
            println!("  status endpoint on {}", s.listen);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `coffer board secrets FILE [--force]`.
fn secrets(ctx: &Ctx, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read board file {}", file.display()))?;
    let example = coffer::secrets::holds_example(&text).with_context(|| format!("{}", file.display()))?;
    if !example && !force {
        if ctx.json {
            super::print_json(ctx, &json!({"board": file, "changed": false}));
        } else {
            println!(
                "{}: its status token is not the example's: nothing changed (--force makes new secrets)",
                file.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let new = coffer::secrets::Secrets::generate()?;
    let out = coffer::secrets::rewrite(&text, &new).with_context(|| format!("{}", file.display()))?;
    coffer::atomic::write_whole(file, out.as_bytes(), 0o600)
        .with_context(|| format!("cannot write board file {}", file.display()))?;
    let board = Board::parse(&out)?;
    let (token, pin) = (board.status.map(|s| s.token), board.console.map(|c| c.pin));
    if ctx.json {
        super::print_json(ctx, &json!({"board": file, "changed": true, "token": token, "pin": pin}));
    } else {
        println!("{}: new secrets for this box, shown this once: write them down.", file.display());
        if let Some(t) = token {
            println!("  status endpoint token: {t}");
        }
        if let Some(p) = pin {
            println!("  console PIN:           {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
