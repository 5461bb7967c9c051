//! `coffer serve [--board FILE]`: runs the appliance service (see [`coffer::service`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use coffer::board::Board;

use super::Ctx;

/// Arguments of `coffer serve`.
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {
    /// The board file (default: the built-in board).
    #[arg(long)]
    pub board: Option<PathBuf>,
}

/// Runs `coffer serve` until SIGTERM or SIGINT.
pub fn run(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let board = match &a.board {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read board file {}", f.display()))?;
            Board::parse(&text).with_context(|| format!("{} is not a usable board file", f.display()))?
        }
        None => Board::default_board(),
    };
    coffer::service::serve(board, &ctx.state)?;
    Ok(ExitCode::SUCCESS)
}
