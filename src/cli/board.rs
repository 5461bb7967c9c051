//! `coffer board check [FILE]`: reads a board file (default: the built-in board) and says what
//! the box has, or what is wrong and where.

use std::path::PathBuf;
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
}

/// Runs `coffer board …`.
pub fn run(ctx: &Ctx, what: BoardCommand) -> anyhow::Result<ExitCode> {
    let BoardCommand::Check { file } = what;
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
